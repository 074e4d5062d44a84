/*
 * mp_pwtrack.c - PayWord payments accepted in any arrival order
 * (docs/PROTOCOL.md 7.5; see mp_pwtrack.h).
 *
 * The tracker is the store's record, so every function that takes one
 * checks its invariants first: a corrupt or hand-built tracker is refused
 * instead of steering the placement logic, which relies on sorted,
 * disjoint gaps below l.
 */
#include <string.h>
#include "mp_pwtrack.h"

static int hash_equal(const uint8_t a[MP_HASH_LEN], const uint8_t b[MP_HASH_LEN])
{
    return mp_ct_equal(a, MP_HASH_LEN, b, MP_HASH_LEN);
}

/* ---- invariants, shared by encode, decode and accept ----------------------- */

static int unit_valid(const mp_amount *a)
{
    return mp_currency_valid(a->cur) && a->units >= 1 && a->units <= MP_AMOUNT_MAX;
}

/* prev is the gap before g, NULL for the first. */
static int gap_valid(const mp_pw_gap *g, const mp_pw_gap *prev, uint32_t last)
{
    return g->a < g->b && g->b <= last && (prev == NULL || prev->b <= g->a);
}

static int recent_valid(const mp_pw_recent *r, uint32_t last)
{
    return r->k >= 1 && r->k <= r->i && r->i <= last;
}

static int track_valid(const mp_pw_track *t)
{
    size_t j;

    if (t->n < 1 || t->n > MP_CHAIN_MAX || !unit_valid(&t->unit) || t->last > t->n
        || t->ngaps > MP_PW_GAPS_MAX || t->nrecent > MP_PW_RECENT_MAX
        || t->vendor[0] == '\0' || strnlen(t->vendor, sizeof t->vendor) > MP_NAME_MAX)
        return 0;
    for (j = 0; j < t->ngaps; j++)
        if (!gap_valid(&t->gaps[j], j ? &t->gaps[j - 1] : NULL, t->last))
            return 0;
    for (j = 0; j < t->nrecent; j++)
        if (!recent_valid(&t->recent[j], t->last))
            return 0;
    return 1;
}

/* ---- init ---------------------------------------------------------------------- */

mp_status mp_pw_track_init(const mp_pw_commit *c, mp_pw_track *out)
{
    mp_status st = MP_ERR_ARG;

    /* enc_len = 0 means sign or decode never ran, so c->id is not the id. */
    if (c == NULL || out == NULL || c->enc_len == 0 || c->n < 1 || c->n > MP_CHAIN_MAX
        || !unit_valid(&c->unit))
        goto out;
    memset(out, 0, sizeof *out);
    memcpy(out->commit_id, c->id, MP_HASH_LEN);
    out->n = c->n;
    out->unit = c->unit;
    out->expiry = c->expiry;
    memcpy(out->w_last, c->w0, MP_HASH_LEN);
    memcpy(out->vendor, c->vendor, sizeof out->vendor);
    st = MP_OK;
out:
    return st;
}

/* ---- accept -------------------------------------------------------------------- */

/* Checks k * unit against the price: the wallet agreed to pay exactly the
 * price, so more is a disagreement about it rather than a gift. */
static mp_status check_value(const mp_amount *unit, uint32_t k, const mp_amount *price)
{
    mp_amount v;
    int cmp = 0;

    if (strcmp(unit->cur, price->cur) != 0)
        return MP_ERR_INSUFFICIENT;
    /* With a valid unit only the range can fail, and that is above any price. */
    if (mp_amount_mul(unit, k, &v) != MP_OK)
        return MP_ERR_PRICE;
    if (mp_amount_cmp(&v, price, &cmp) != MP_OK)
        return MP_ERR_ARG;
    if (cmp < 0)
        return MP_ERR_INSUFFICIENT;
    return cmp > 0 ? MP_ERR_PRICE : MP_OK;
}

/*
 * Puts the gaps of t with gap g replaced by repl[0..nrepl) into nt (gap g
 * = t->ngaps with nrepl = 1 appends). One split can make 65 gaps; the
 * lowest is then forfeited, because it is the oldest: gaps only open
 * above all others and split in place.
 */
static void set_gaps(const mp_pw_track *t, size_t g, const mp_pw_gap *repl, size_t nrepl,
                     mp_pw_track *nt)
{
    mp_pw_gap all[MP_PW_GAPS_MAX + 1];
    size_t n = 0, j, drop;

    for (j = 0; j < g; j++)
        all[n++] = t->gaps[j];
    for (j = 0; j < nrepl; j++)
        all[n++] = repl[j];
    for (j = g + 1; j < t->ngaps; j++)
        all[n++] = t->gaps[j];
    drop = n > MP_PW_GAPS_MAX ? n - MP_PW_GAPS_MAX : 0;
    /* Unused slots stay zero so that equal trackers compare equal. */
    memset(nt->gaps, 0, sizeof nt->gaps);
    memcpy(nt->gaps, all + drop, (n - drop) * sizeof all[0]);
    nt->ngaps = (uint8_t)(n - drop);
}

mp_status mp_pw_track_accept(mp_sha *h, const mp_pw_track *t, const mp_pw_payment *p,
                             const uint8_t tag[MP_PW_TAG_LEN],
                             const mp_amount *price, uint64_t now,
                             mp_pw_track *next, int *retry)
{
    mp_pw_track nt;
    mp_pw_gap repl[2];
    uint8_t w[MP_HASH_LEN], back[MP_HASH_LEN];
    const uint8_t *w_anchor;
    uint32_t i, k, lo, anchor;
    size_t j, g = 0, nrepl = 0;
    mp_status st = MP_ERR_ARG;

    if (h == NULL || t == NULL || p == NULL || tag == NULL || price == NULL || next == NULL
        || retry == NULL)
        goto out;
    if (!track_valid(t) || !hash_equal(p->commit_id, t->commit_id)
        || !mp_currency_valid(price->cur) || price->units > MP_AMOUNT_MAX)
        goto out;
    i = p->i;
    k = p->k;
    if (k < 1 || k > i) {
        st = MP_ERR_MALFORMED;
        goto out;
    }
    memcpy(w, p->w, MP_HASH_LEN);

    /* A retry must be answered even after expiry or a price change: the
     * payment was accepted when it was made, only its response was lost. */
    for (j = 0; j < t->nrecent; j++) {
        if (t->recent[j].i == i && t->recent[j].k == k && hash_equal(t->recent[j].w, w)) {
            /* The same words for another resource would be a second
             * purchase with one payment. */
            if (!mp_ct_equal(t->recent[j].tag, MP_PW_TAG_LEN, tag, MP_PW_TAG_LEN)) {
                st = MP_ERR_SPENT;
                goto out;
            }
            if (next != t)
                memcpy(next, t, sizeof *t);
            *retry = 1;
            st = MP_OK;
            goto out;
        }
    }

    if (now >= t->expiry) {
        st = MP_ERR_EXPIRED;
        goto out;
    }
    if (i > t->n) {
        st = MP_ERR_EXHAUSTED;
        goto out;
    }
    if ((st = check_value(&t->unit, k, price)) != MP_OK)
        goto out;

    lo = i - k;
    if (lo >= t->last) {
        anchor = t->last;
        w_anchor = t->w_last;
    } else {
        /* Gaps lie below l, so an interval reaching above l finds none. */
        for (g = 0; g < t->ngaps; g++)
            if (t->gaps[g].a <= lo && i <= t->gaps[g].b)
                break;
        if (g == t->ngaps) {
            st = MP_ERR_SPENT;
            goto out;
        }
        anchor = t->gaps[g].a;
        w_anchor = t->gaps[g].w_a;
    }
    if ((uint64_t)(i - anchor) > (uint64_t)k * MP_PW_SKIP_RATIO) {
        st = MP_ERR_FORGED;
        goto out;
    }
    if ((st = mp_sha_iterate(h, w, i - anchor, back)) != MP_OK)
        goto out;
    if (!hash_equal(back, w_anchor)) {
        st = MP_ERR_FORGED;
        goto out;
    }

    memcpy(&nt, t, sizeof nt);
    if (lo >= t->last) {
        if (lo > t->last) {
            repl[0].a = t->last;
            repl[0].b = lo;
            memcpy(repl[0].w_a, t->w_last, MP_HASH_LEN);
            set_gaps(t, t->ngaps, repl, 1, &nt);
        }
        nt.last = i;
        memcpy(nt.w_last, w, MP_HASH_LEN);
    } else {
        if (lo > t->gaps[g].a) {
            repl[nrepl].a = t->gaps[g].a;
            repl[nrepl].b = lo;
            memcpy(repl[nrepl].w_a, t->gaps[g].w_a, MP_HASH_LEN);
            nrepl++;
        }
        /* The upper rest starts at i, whose word this payment revealed. */
        if (t->gaps[g].b > i) {
            repl[nrepl].a = i;
            repl[nrepl].b = t->gaps[g].b;
            memcpy(repl[nrepl].w_a, w, MP_HASH_LEN);
            nrepl++;
        }
        set_gaps(t, g, repl, nrepl, &nt);
    }

    if (nt.nrecent == MP_PW_RECENT_MAX) {
        memmove(nt.recent, nt.recent + 1, (MP_PW_RECENT_MAX - 1) * sizeof nt.recent[0]);
        nt.nrecent--;
    }
    nt.recent[nt.nrecent].i = i;
    nt.recent[nt.nrecent].k = k;
    memcpy(nt.recent[nt.nrecent].w, w, MP_HASH_LEN);
    memcpy(nt.recent[nt.nrecent].tag, tag, MP_PW_TAG_LEN);
    nt.nrecent++;
    nt.units_paid += k;
    nt.version++;

    memcpy(next, &nt, sizeof nt);
    *retry = 0;
out:
    return st;
}

/* ---- storage form -------------------------------------------------------------- */

mp_status mp_pw_track_encode(const mp_pw_track *t, uint8_t *buf, size_t cap, size_t *len)
{
    uint8_t tmp[MP_PW_TRACK_MAX];
    mp_wbuf w;
    size_t j;
    mp_status st = MP_ERR_ARG;

    /* Never write what the decoder would refuse. */
    if (t == NULL || buf == NULL || len == NULL || !track_valid(t))
        goto out;
    mp_w_init(&w, tmp, sizeof tmp);
    mp_w_header(&w, MP_T_PW_TRACK);
    mp_w_bytes(&w, t->commit_id, MP_HASH_LEN);
    mp_w_u32(&w, t->n);
    mp_w_amount(&w, &t->unit);
    mp_w_u64(&w, t->expiry);
    mp_w_u64(&w, t->version);
    mp_w_u32(&w, t->last);
    mp_w_bytes(&w, t->w_last, MP_HASH_LEN);
    mp_w_u64(&w, t->units_paid);
    mp_w_u8(&w, t->ngaps);
    for (j = 0; j < t->ngaps; j++) {
        mp_w_u32(&w, t->gaps[j].a);
        mp_w_u32(&w, t->gaps[j].b);
        mp_w_bytes(&w, t->gaps[j].w_a, MP_HASH_LEN);
    }
    mp_w_u8(&w, t->nrecent);
    for (j = 0; j < t->nrecent; j++) {
        mp_w_u32(&w, t->recent[j].i);
        mp_w_u32(&w, t->recent[j].k);
        mp_w_bytes(&w, t->recent[j].w, MP_HASH_LEN);
        mp_w_bytes(&w, t->recent[j].tag, MP_PW_TAG_LEN);
    }
    mp_w_str8(&w, t->vendor);
    /* tmp holds the largest tracker, so any error here is a bad field. */
    if (w.err != MP_OK)
        goto out;
    if (cap < w.len) {
        st = MP_ERR_BUFFER;
        goto out;
    }
    memcpy(buf, tmp, w.len);
    *len = w.len;
    st = MP_OK;
out:
    return st;
}

mp_status mp_pw_track_decode(const uint8_t *in, size_t len, mp_pw_track *out)
{
    mp_pw_track t;
    mp_rbuf r;
    size_t j;
    mp_status st = MP_ERR_ARG;

    if (in == NULL || out == NULL)
        goto out;
    memset(&t, 0, sizeof t);
    mp_r_init(&r, in, len);
    mp_r_header(&r, MP_T_PW_TRACK);
    mp_r_bytes(&r, t.commit_id, MP_HASH_LEN);
    t.n = mp_r_u32(&r);
    if (r.err == MP_OK && (t.n < 1 || t.n > MP_CHAIN_MAX))
        mp_r_fail(&r, MP_ERR_MALFORMED);
    mp_r_amount(&r, &t.unit);
    if (r.err == MP_OK && t.unit.units == 0)
        mp_r_fail(&r, MP_ERR_MALFORMED);
    t.expiry = mp_r_u64(&r);
    t.version = mp_r_u64(&r);
    t.last = mp_r_u32(&r);
    if (r.err == MP_OK && t.last > t.n)
        mp_r_fail(&r, MP_ERR_MALFORMED);
    mp_r_bytes(&r, t.w_last, MP_HASH_LEN);
    t.units_paid = mp_r_u64(&r);
    t.ngaps = mp_r_u8(&r);
    /* The count bounds the loop, so it is checked before anything is read. */
    if (r.err == MP_OK && t.ngaps > MP_PW_GAPS_MAX)
        mp_r_fail(&r, MP_ERR_MALFORMED);
    for (j = 0; r.err == MP_OK && j < t.ngaps; j++) {
        t.gaps[j].a = mp_r_u32(&r);
        t.gaps[j].b = mp_r_u32(&r);
        mp_r_bytes(&r, t.gaps[j].w_a, MP_HASH_LEN);
        if (r.err == MP_OK && !gap_valid(&t.gaps[j], j ? &t.gaps[j - 1] : NULL, t.last))
            mp_r_fail(&r, MP_ERR_MALFORMED);
    }
    t.nrecent = mp_r_u8(&r);
    if (r.err == MP_OK && t.nrecent > MP_PW_RECENT_MAX)
        mp_r_fail(&r, MP_ERR_MALFORMED);
    for (j = 0; r.err == MP_OK && j < t.nrecent; j++) {
        t.recent[j].i = mp_r_u32(&r);
        t.recent[j].k = mp_r_u32(&r);
        mp_r_bytes(&r, t.recent[j].w, MP_HASH_LEN);
        mp_r_bytes(&r, t.recent[j].tag, MP_PW_TAG_LEN);
        if (r.err == MP_OK && !recent_valid(&t.recent[j], t.last))
            mp_r_fail(&r, MP_ERR_MALFORMED);
    }
    mp_r_str8(&r, t.vendor, MP_NAME_MAX, 0);
    if ((st = mp_r_end(&r)) != MP_OK)
        goto out;
    memcpy(out, &t, sizeof t);
out:
    return st;
}

mp_status mp_request_tag(mp_sha *h, const mp_request *req, uint8_t out[MP_PW_TAG_LEN])
{
    static const char label[15] = { 'M','P','1',' ','r','e','q','u','e','s','t','-','t','a','g' };
    /* SHA-256 of the empty string: a request without a body. */
    static const uint8_t empty[MP_HASH_LEN] = {
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
        0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55
    };
    uint8_t buf[sizeof label + 1 + MP_METHOD_MAX + 1 + MP_HOST_MAX + 2 + MP_TARGET_MAX
                + MP_HASH_LEN];
    uint8_t digest[MP_HASH_LEN];
    size_t n = 0;
    mp_status st = MP_ERR_ARG;

    if (h == NULL || req == NULL || out == NULL || req->method == NULL
        || req->method_len == 0 || req->method_len > MP_METHOD_MAX
        || (req->host == NULL && req->host_len > 0) || req->host_len > MP_HOST_MAX
        || req->target == NULL || req->target_len == 0 || req->target_len > MP_TARGET_MAX)
        goto out;
    memcpy(buf, label, sizeof label);
    n = sizeof label;
    buf[n++] = (uint8_t)req->method_len;
    memcpy(buf + n, req->method, req->method_len);
    n += req->method_len;
    buf[n++] = (uint8_t)req->host_len;
    if (req->host_len > 0)
        memcpy(buf + n, req->host, req->host_len);
    n += req->host_len;
    buf[n++] = (uint8_t)(req->target_len >> 8);
    buf[n++] = (uint8_t)req->target_len;
    memcpy(buf + n, req->target, req->target_len);
    n += req->target_len;
    memcpy(buf + n, req->body_digest != NULL ? req->body_digest : empty, MP_HASH_LEN);
    n += MP_HASH_LEN;
    if ((st = mp_sha_digest(h, buf, n, digest)) != MP_OK)
        goto out;
    memcpy(out, digest, MP_PW_TAG_LEN);
out:
    return st;
}
