/*
 * mp_millicent.c - Millicent scrip: encoding, minting, validation, paying
 * and the vendor's reply.
 *
 * Every MAC is computed over the canonical encoding, never over the
 * struct, so the bytes that are stamped are exactly the bytes that travel
 * and a decoder/encoder pair cannot disagree about what was signed.
 *
 * The vendor path (mp_mc_accept) works in fixed stack buffers and keyed
 * mp_mac objects: it runs once per paid request and must not allocate.
 */
#include <stdlib.h>
#include <string.h>
#include "mp_millicent.h"
#include "mp_wire.h"

/* Longest scrip record: header 2, vendor 1+64, value 3+8, id, customer id
 * and expiry 3*8, props 1+128, stamp 32. */
#define SCRIP_ENC_MAX   (2 + 1 + MP_NAME_MAX + 11 + 24 + 1 + MP_PROPS_MAX + MP_HASH_LEN)
/* Wire limit of a scrip carried as a blob (payment, change). Checked before
 * the inner decode so an absurd length is refused without looking at it. */
#define SCRIP_BLOB_MAX  512
/* Longest reply: header, flag, blob16 change, charged, req_sig, mac. */
#define REPLY_ENC_MAX   (2 + 1 + 2 + SCRIP_ENC_MAX + 11 + 2 * MP_HASH_LEN)
#define PAY_ENC_MAX     (2 + 2 + SCRIP_ENC_MAX + 11 + MP_HASH_LEN)

static const char customer_label[12] = { 'M','P','1',' ','c','u','s','t','o','m','e','r' };
static const char request_label[11]  = { 'M','P','1',' ','r','e','q','u','e','s','t' };

typedef struct {
    uint16_t  series;
    uint64_t  retire_at;      /* scrip secrets only; 0: never */
    mp_mac   *mac;            /* keyed once with the master secret */
} mc_slot;

struct mp_mc_issuer {
    char    name[MP_NAME_MAX + 1];
    size_t  nscrip, ncust;
    mc_slot scrip[MP_MAX_SERIES];
    mc_slot cust[MP_MAX_SERIES];
};

/* ---- helpers -------------------------------------------------------------- */

/* 1 when s is a NUL-terminated visible-ASCII string of min..max bytes.
 * Reads at most max + 1 bytes, so fixed struct arrays without a NUL are
 * refused instead of overrun. */
static int text_ok(const char *s, size_t min, size_t max)
{
    size_t i;

    if (s == NULL)
        return 0;
    for (i = 0; i <= max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\0')
            return i >= min;
        if (c < 0x21 || c > 0x7e)
            return 0;
    }
    return 0;
}

/* A valid amount; positive when required. */
static int amount_ok(const mp_amount *a, int positive)
{
    return a != NULL && mp_currency_valid(a->cur) && a->units <= MP_AMOUNT_MAX
        && (!positive || a->units > 0);
}

static void put_be64(uint8_t b[8], uint64_t v)
{
    int i;

    for (i = 7; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}

static mc_slot *find_slot(mc_slot *slots, size_t n, uint16_t series)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (slots[i].series == series)
            return &slots[i];
    return NULL;
}

/* Copies a record built in a local buffer to the caller's, so that a
 * failing encode leaves the caller's buffer untouched. */
static mp_status copy_out(const mp_wbuf *w, uint8_t *buf, size_t cap, size_t *len)
{
    if (w->err != MP_OK)
        return w->err;
    if (w->len > cap)
        return MP_ERR_BUFFER;
    memcpy(buf, w->buf, w->len);
    *len = w->len;
    return MP_OK;
}

/* ---- scrip record --------------------------------------------------------- */

/* Writes header..props: the stamped part. */
static mp_status scrip_body(const mp_scrip *s, mp_wbuf *w)
{
    if (!text_ok(s->vendor, 1, MP_NAME_MAX) || !text_ok(s->props, 0, MP_PROPS_MAX)
        || !amount_ok(&s->value, 1) || s->expiry == 0)
        return MP_ERR_ARG;
    mp_w_header(w, MP_T_SCRIP);
    mp_w_str8(w, s->vendor);
    mp_w_amount(w, &s->value);
    mp_w_u64(w, s->id);
    mp_w_u64(w, s->customer_id);
    mp_w_u64(w, s->expiry);
    mp_w_str8(w, s->props);
    return w->err;
}

/* Encodes s into enc (SCRIP_ENC_MAX bytes) and computes its stamp under
 * m; enc then holds the full record carrying that stamp (not s->stamp). */
static mp_status scrip_stamp(mp_mac *m, const mp_scrip *s, uint8_t enc[SCRIP_ENC_MAX],
                             size_t *enc_len, uint8_t stamp[MP_HASH_LEN])
{
    mp_wbuf w;
    mp_iov part;
    mp_status st;

    mp_w_init(&w, enc, SCRIP_ENC_MAX);
    if ((st = scrip_body(s, &w)) != MP_OK)
        return st;
    part.p = enc;
    part.len = w.len;
    if ((st = mp_mac_compute(m, &part, 1, stamp)) != MP_OK)
        return st;
    mp_w_bytes(&w, stamp, MP_HASH_LEN);
    if (w.err != MP_OK)
        return w.err;
    *enc_len = w.len;
    return MP_OK;
}

/* The full record of s as given, stamp included. */
static mp_status scrip_record(const mp_scrip *s, uint8_t enc[SCRIP_ENC_MAX], size_t *enc_len)
{
    mp_wbuf w;
    mp_status st;

    mp_w_init(&w, enc, SCRIP_ENC_MAX);
    if ((st = scrip_body(s, &w)) != MP_OK)
        return st;
    mp_w_bytes(&w, s->stamp, MP_HASH_LEN);
    if (w.err != MP_OK)
        return w.err;
    *enc_len = w.len;
    return MP_OK;
}

mp_status mp_scrip_encode(const mp_scrip *s, uint8_t *buf, size_t cap, size_t *len)
{
    uint8_t tmp[SCRIP_ENC_MAX];
    size_t n;
    mp_status st;

    if (s == NULL || buf == NULL || len == NULL)
        return MP_ERR_ARG;
    if ((st = scrip_record(s, tmp, &n)) != MP_OK)
        return st;
    if (n > cap)
        return MP_ERR_BUFFER;
    memcpy(buf, tmp, n);
    *len = n;
    return MP_OK;
}

mp_status mp_scrip_decode(const uint8_t *in, size_t len, mp_scrip *out)
{
    mp_scrip s;
    mp_rbuf r;
    mp_status st;

    if (out == NULL)
        return MP_ERR_ARG;
    memset(&s, 0, sizeof s);
    mp_r_init(&r, in, len);
    mp_r_header(&r, MP_T_SCRIP);
    mp_r_str8(&r, s.vendor, MP_NAME_MAX, 0);
    mp_r_amount(&r, &s.value);
    s.id = mp_r_u64(&r);
    s.customer_id = mp_r_u64(&r);
    s.expiry = mp_r_u64(&r);
    mp_r_str8(&r, s.props, MP_PROPS_MAX, 1);
    mp_r_bytes(&r, s.stamp, MP_HASH_LEN);
    if ((st = mp_r_end(&r)) != MP_OK)
        goto done;
    /* The encoder never makes these, so there is exactly one encoding. */
    if (s.value.units == 0 || s.expiry == 0) {
        st = MP_ERR_MALFORMED;
        goto done;
    }
    *out = s;
done:
    return st;
}

/* ---- payment record ------------------------------------------------------- */

mp_status mp_mc_payment_encode(const mp_mc_payment *p, uint8_t *buf, size_t cap, size_t *len)
{
    uint8_t senc[SCRIP_ENC_MAX], tmp[PAY_ENC_MAX];
    size_t slen;
    mp_wbuf w;
    mp_status st;

    if (p == NULL || buf == NULL || len == NULL)
        return MP_ERR_ARG;
    if ((st = scrip_record(&p->scrip, senc, &slen)) != MP_OK)
        goto done;
    if (!amount_ok(&p->price, 0)) {
        st = MP_ERR_ARG;
        goto done;
    }
    mp_w_init(&w, tmp, sizeof tmp);
    mp_w_header(&w, MP_T_MC_PAYMENT);
    mp_w_blob16(&w, senc, slen);
    mp_w_amount(&w, &p->price);
    mp_w_bytes(&w, p->req_sig, MP_HASH_LEN);
    st = copy_out(&w, buf, cap, len);
done:
    return st;
}

mp_status mp_mc_payment_decode(const uint8_t *in, size_t len, mp_mc_payment *out)
{
    mp_mc_payment p;
    mp_rbuf r;
    const uint8_t *blob;
    size_t blen = 0;
    mp_status st;

    if (out == NULL)
        return MP_ERR_ARG;
    memset(&p, 0, sizeof p);
    mp_r_init(&r, in, len);
    mp_r_header(&r, MP_T_MC_PAYMENT);
    blob = mp_r_blob16(&r, SCRIP_BLOB_MAX, &blen);
    if (blob != NULL && (st = mp_scrip_decode(blob, blen, &p.scrip)) != MP_OK)
        mp_r_fail(&r, st);
    mp_r_amount(&r, &p.price);
    mp_r_bytes(&r, p.req_sig, MP_HASH_LEN);
    if ((st = mp_r_end(&r)) != MP_OK)
        goto done;
    *out = p;
done:
    return st;
}

/* ---- reply record --------------------------------------------------------- */

/* Writes header..req_sig: the MACed part. */
/* change_enc, when not NULL, is rp->change already encoded (the vendor
 * has it from stamping): encoding it again would be pure waste on the
 * payment path. */
static mp_status reply_body(const mp_mc_reply *rp, const uint8_t *change_enc, size_t change_len,
                            mp_wbuf *w)
{
    uint8_t senc[SCRIP_ENC_MAX];
    size_t slen = 0;
    mp_status st;

    if (rp->has_change > 1 || !amount_ok(&rp->charged, 0))
        return MP_ERR_ARG;
    if (rp->has_change && change_enc == NULL) {
        if ((st = scrip_record(&rp->change, senc, &slen)) != MP_OK)
            return st;
        change_enc = senc;
        change_len = slen;
    }
    mp_w_header(w, MP_T_MC_REPLY);
    mp_w_u8(w, rp->has_change);
    if (rp->has_change)
        mp_w_blob16(w, change_enc, change_len);
    mp_w_amount(w, &rp->charged);
    mp_w_bytes(w, rp->req_sig, MP_HASH_LEN);
    return w->err;
}

/* mac over the body of rp under the already keyed m. */
static mp_status reply_mac(mp_mac *m, const mp_mc_reply *rp, const uint8_t *change_enc,
                           size_t change_len, uint8_t mac[MP_HASH_LEN])
{
    uint8_t tmp[REPLY_ENC_MAX];
    mp_wbuf w;
    mp_iov part;
    mp_status st;

    mp_w_init(&w, tmp, sizeof tmp);
    if ((st = reply_body(rp, change_enc, change_len, &w)) != MP_OK)
        return st;
    part.p = tmp;
    part.len = w.len;
    return mp_mac_compute(m, &part, 1, mac);
}

mp_status mp_mc_reply_encode(const mp_mc_reply *r, uint8_t *buf, size_t cap, size_t *len)
{
    uint8_t tmp[REPLY_ENC_MAX];
    mp_wbuf w;
    mp_status st;

    if (r == NULL || buf == NULL || len == NULL)
        return MP_ERR_ARG;
    mp_w_init(&w, tmp, sizeof tmp);
    if ((st = reply_body(r, NULL, 0, &w)) != MP_OK)
        goto done;
    mp_w_bytes(&w, r->mac, MP_HASH_LEN);
    st = copy_out(&w, buf, cap, len);
done:
    return st;
}

mp_status mp_mc_reply_decode(const uint8_t *in, size_t len, mp_mc_reply *out)
{
    mp_mc_reply rp;
    mp_rbuf r;
    const uint8_t *blob;
    size_t blen = 0;
    mp_status st;

    if (out == NULL)
        return MP_ERR_ARG;
    memset(&rp, 0, sizeof rp);
    mp_r_init(&r, in, len);
    mp_r_header(&r, MP_T_MC_REPLY);
    rp.has_change = mp_r_u8(&r);
    /* The flag decides the layout of what follows: stop at a bad one. */
    if (r.err == MP_OK && rp.has_change > 1)
        mp_r_fail(&r, MP_ERR_MALFORMED);
    if (rp.has_change == 1) {
        blob = mp_r_blob16(&r, SCRIP_BLOB_MAX, &blen);
        if (blob != NULL && (st = mp_scrip_decode(blob, blen, &rp.change)) != MP_OK)
            mp_r_fail(&r, st);
    }
    mp_r_amount(&r, &rp.charged);
    mp_r_bytes(&r, rp.req_sig, MP_HASH_LEN);
    mp_r_bytes(&r, rp.mac, MP_HASH_LEN);
    if ((st = mp_r_end(&r)) != MP_OK)
        goto done;
    *out = rp;
done:
    return st;
}

/* ---- issuer --------------------------------------------------------------- */

mp_status mp_mc_issuer_new(const char *name, mp_mc_issuer **out)
{
    mp_mc_issuer *iss;

    if (out == NULL || !text_ok(name, 1, MP_NAME_MAX))
        return MP_ERR_ARG;
    if ((iss = calloc(1, sizeof *iss)) == NULL)
        return MP_ERR_NOMEM;
    memcpy(iss->name, name, strlen(name) + 1);
    *out = iss;
    return MP_OK;
}

mp_status mp_mc_issuer_dup(const mp_mc_issuer *iss, mp_mc_issuer **out)
{
    mp_mc_issuer *n = NULL;
    mp_status st = MP_OK;
    size_t i;

    if (iss == NULL || out == NULL)
        return MP_ERR_ARG;
    if ((n = calloc(1, sizeof *n)) == NULL)
        return MP_ERR_NOMEM;
    memcpy(n->name, iss->name, sizeof n->name);
    /* Counts grow with each duplicated context so that a failure half-way
     * frees exactly what this copy owns, never the original's contexts. */
    for (i = 0; i < iss->nscrip; i++) {
        n->scrip[i] = iss->scrip[i];
        if ((st = mp_mac_dup(iss->scrip[i].mac, &n->scrip[i].mac)) != MP_OK)
            goto done;
        n->nscrip++;
    }
    for (i = 0; i < iss->ncust; i++) {
        n->cust[i] = iss->cust[i];
        if ((st = mp_mac_dup(iss->cust[i].mac, &n->cust[i].mac)) != MP_OK)
            goto done;
        n->ncust++;
    }
    *out = n;
    n = NULL;
done:
    mp_mc_issuer_free(n);
    return st;
}

void mp_mc_issuer_free(mp_mc_issuer *iss)
{
    size_t i;

    if (iss == NULL)
        return;
    for (i = 0; i < iss->nscrip; i++)
        mp_mac_free(iss->scrip[i].mac);
    for (i = 0; i < iss->ncust; i++)
        mp_mac_free(iss->cust[i].mac);
    mp_wipe(iss, sizeof *iss);
    free(iss);
}

static mp_status add_secret(mc_slot *slots, size_t *n, uint16_t series,
                            const uint8_t *secret, size_t len, uint64_t retire_at)
{
    mp_mac *m = NULL;
    mp_status st;

    /* 16 bytes is the least that still resists guessing the master. */
    if (secret == NULL || len < 16 || len > MP_SECRET_MAX
        || find_slot(slots, *n, series) != NULL || *n >= MP_MAX_SERIES)
        return MP_ERR_ARG;
    if ((st = mp_mac_new(secret, len, &m)) != MP_OK)
        return st;
    slots[*n].series = series;
    slots[*n].retire_at = retire_at;
    slots[*n].mac = m;
    (*n)++;
    return MP_OK;
}

mp_status mp_mc_issuer_add_scrip_secret(mp_mc_issuer *iss, uint16_t series,
                                        const uint8_t *secret, size_t len,
                                        uint64_t retire_at)
{
    if (iss == NULL)
        return MP_ERR_ARG;
    return add_secret(iss->scrip, &iss->nscrip, series, secret, len, retire_at);
}

mp_status mp_mc_issuer_add_customer_secret(mp_mc_issuer *iss, uint16_t series,
                                           const uint8_t *secret, size_t len)
{
    if (iss == NULL)
        return MP_ERR_ARG;
    return add_secret(iss->cust, &iss->ncust, series, secret, len, 0);
}

mp_status mp_mc_issuer_remove_scrip_secret(mp_mc_issuer *iss, uint16_t series)
{
    mc_slot *sl;

    if (iss == NULL)
        return MP_ERR_ARG;
    if ((sl = find_slot(iss->scrip, iss->nscrip, series)) == NULL)
        return MP_ERR_UNKNOWN_SERIES;
    mp_mac_free(sl->mac);
    /* Slot order carries no meaning: fill the hole with the last one. */
    *sl = iss->scrip[iss->nscrip - 1];
    memset(&iss->scrip[iss->nscrip - 1], 0, sizeof iss->scrip[0]);
    iss->nscrip--;
    return MP_OK;
}

const char *mp_mc_issuer_name(const mp_mc_issuer *iss)
{
    return iss ? iss->name : NULL;
}

mp_status mp_mc_mint(mp_mc_issuer *iss, const mp_amount *value, uint64_t id,
                     uint64_t customer_id, uint64_t expiry, const char *props,
                     mp_scrip *out)
{
    uint8_t enc[SCRIP_ENC_MAX];
    size_t enc_len;
    mp_scrip s;
    mc_slot *sl;
    mp_status st;

    if (iss == NULL || out == NULL || !amount_ok(value, 1) || expiry == 0
        || (props != NULL && !text_ok(props, 0, MP_PROPS_MAX)))
        return MP_ERR_ARG;
    if ((sl = find_slot(iss->scrip, iss->nscrip, MP_SERIES(id))) == NULL)
        return MP_ERR_UNKNOWN_SERIES;
    memset(&s, 0, sizeof s);
    memcpy(s.vendor, iss->name, sizeof s.vendor);
    s.value = *value;
    s.id = id;
    s.customer_id = customer_id;
    s.expiry = expiry;
    if (props != NULL)
        memcpy(s.props, props, strlen(props) + 1);
    if ((st = scrip_stamp(sl->mac, &s, enc, &enc_len, s.stamp)) != MP_OK)
        goto done;
    *out = s;
done:
    return st;
}

/* customer_secret into out; the caller wipes it. */
static mp_status derive_customer_secret(mp_mc_issuer *iss, uint64_t customer_id,
                                        uint8_t out[MP_HASH_LEN])
{
    uint8_t idb[8];
    mp_iov parts[2];
    mc_slot *sl;

    if ((sl = find_slot(iss->cust, iss->ncust, MP_SERIES(customer_id))) == NULL)
        return MP_ERR_UNKNOWN_SERIES;
    put_be64(idb, customer_id);
    parts[0].p = customer_label;
    parts[0].len = sizeof customer_label;
    parts[1].p = idb;
    parts[1].len = sizeof idb;
    return mp_mac_compute(sl->mac, parts, 2, out);
}

mp_status mp_mc_customer_secret(mp_mc_issuer *iss, uint64_t customer_id,
                                uint8_t out[MP_HASH_LEN])
{
    uint8_t sec[MP_HASH_LEN];
    mp_status st;

    if (iss == NULL || out == NULL)
        return MP_ERR_ARG;
    if ((st = derive_customer_secret(iss, customer_id, sec)) != MP_OK)
        goto done;
    memcpy(out, sec, MP_HASH_LEN);
done:
    mp_wipe(sec, sizeof sec);
    return st;
}

/* mp_mc_check_scrip, also handing back the verified record, which the
 * request signature covers. */
static mp_status check_scrip(mp_mc_issuer *iss, const mp_scrip *s, uint64_t now,
                             uint8_t enc[SCRIP_ENC_MAX], size_t *enc_len)
{
    uint8_t stamp[MP_HASH_LEN];
    mc_slot *sl;
    mp_status st;

    if (strncmp(s->vendor, iss->name, sizeof s->vendor) != 0)
        return MP_ERR_WRONG_VENDOR;
    if (now >= s->expiry)
        return MP_ERR_EXPIRED;
    if ((sl = find_slot(iss->scrip, iss->nscrip, MP_SERIES(s->id))) == NULL)
        return MP_ERR_UNKNOWN_SERIES;
    if (sl->retire_at != 0 && now >= sl->retire_at)
        return MP_ERR_EXPIRED;
    if ((st = scrip_stamp(sl->mac, s, enc, enc_len, stamp)) != MP_OK)
        return st;
    if (!mp_ct_equal(stamp, sizeof stamp, s->stamp, sizeof s->stamp))
        return MP_ERR_FORGED;
    return MP_OK;
}

mp_status mp_mc_check_scrip(mp_mc_issuer *iss, const mp_scrip *s, uint64_t now)
{
    uint8_t enc[SCRIP_ENC_MAX];
    size_t enc_len;

    if (iss == NULL || s == NULL)
        return MP_ERR_ARG;
    return check_scrip(iss, s, now, enc, &enc_len);
}

/* ---- request signature ---------------------------------------------------- */

/* req_sig under the already keyed mac. The request strings are MACed as
 * the wire would frame them (length prefix, bytes) but straight from the
 * caller's memory through an iovec: the target can be 4 KiB and this runs
 * on every paid request. */
static mp_status req_sig_compute(mp_mac *mac, const uint8_t *scrip_enc, size_t scrip_len,
                                 const mp_request *req, const mp_amount *price,
                                 uint8_t out[MP_HASH_LEN])
{
    uint8_t mh[1 + MP_METHOD_MAX + 1], tl[2], amt[11];
    mp_iov parts[7];
    mp_wbuf w;

    if (req->method == NULL || req->method_len == 0 || req->method_len > MP_METHOD_MAX
        || (req->host == NULL && req->host_len > 0) || req->host_len > MP_HOST_MAX
        || req->target == NULL || req->target_len == 0 || req->target_len > MP_TARGET_MAX)
        return MP_ERR_ARG;
    mp_w_init(&w, amt, sizeof amt);
    mp_w_amount(&w, price);
    if (w.err != MP_OK)
        return MP_ERR_ARG;
    /* str8 method and the length byte of str8 host in one part. */
    mh[0] = (uint8_t)req->method_len;
    memcpy(mh + 1, req->method, req->method_len);
    mh[1 + req->method_len] = (uint8_t)req->host_len;
    tl[0] = (uint8_t)(req->target_len >> 8);
    tl[1] = (uint8_t)req->target_len;
    parts[0].p = request_label;  parts[0].len = sizeof request_label;
    parts[1].p = scrip_enc;      parts[1].len = scrip_len;
    parts[2].p = mh;             parts[2].len = req->method_len + 2;
    parts[3].p = req->host;      parts[3].len = req->host_len;
    parts[4].p = tl;             parts[4].len = sizeof tl;
    parts[5].p = req->target;    parts[5].len = req->target_len;
    parts[6].p = amt;            parts[6].len = w.len;
    return mp_mac_compute(mac, parts, 7, out);
}

/* ---- customer side -------------------------------------------------------- */

mp_status mp_mc_pay(mp_mac *mac, const mp_scrip *scrip,
                    const uint8_t customer_secret[MP_HASH_LEN],
                    const mp_request *req, const mp_amount *price,
                    mp_mc_payment *out)
{
    uint8_t enc[SCRIP_ENC_MAX];
    size_t enc_len;
    mp_mc_payment pay;
    mp_status st;

    if (mac == NULL || scrip == NULL || customer_secret == NULL || req == NULL
        || price == NULL || out == NULL)
        return MP_ERR_ARG;
    if ((st = scrip_record(scrip, enc, &enc_len)) != MP_OK)
        goto done;
    if ((st = mp_mac_rekey(mac, customer_secret, MP_HASH_LEN)) != MP_OK)
        goto done;
    if ((st = req_sig_compute(mac, enc, enc_len, req, price, pay.req_sig)) != MP_OK)
        goto done;
    /* Copied last: a wallet may pass scrip from inside *out. */
    pay.scrip = *scrip;
    pay.price = *price;
    *out = pay;
done:
    return st;
}

mp_status mp_mc_reply_check(mp_mac *mac, const mp_mc_reply *r,
                            const mp_mc_payment *p,
                            const uint8_t customer_secret[MP_HASH_LEN])
{
    uint8_t want[MP_HASH_LEN];
    mp_amount rest;
    int cmp;
    mp_status st;

    if (mac == NULL || r == NULL || p == NULL || customer_secret == NULL)
        return MP_ERR_ARG;
    if ((st = mp_mac_rekey(mac, customer_secret, MP_HASH_LEN)) != MP_OK)
        goto done;
    if ((st = reply_mac(mac, r, NULL, 0, want)) != MP_OK)
        goto done;
    st = MP_ERR_FORGED;
    if (!mp_ct_equal(want, sizeof want, r->mac, sizeof r->mac))
        goto done;
    if (!mp_ct_equal(r->req_sig, sizeof r->req_sig, p->req_sig, sizeof p->req_sig))
        goto done;
    /* A vendor may charge less than agreed, never more. */
    if (mp_amount_cmp(&r->charged, &p->price, &cmp) != MP_OK || cmp > 0)
        goto done;
    if (mp_amount_sub(&p->scrip.value, &r->charged, &rest) != MP_OK)
        goto done;
    if (r->has_change) {
        if (r->change.customer_id != p->scrip.customer_id
            || strncmp(r->change.vendor, p->scrip.vendor, sizeof r->change.vendor) != 0
            || mp_amount_cmp(&r->change.value, &rest, &cmp) != MP_OK || cmp != 0)
            goto done;
    } else if (rest.units != 0) {
        goto done;
    }
    st = MP_OK;
done:
    return st;
}

/* ---- vendor side ---------------------------------------------------------- */

mp_status mp_mc_accept(mp_mc_issuer *iss, mp_mac *mac, const mp_mc_payment *p,
                       const mp_request *req, const mp_amount *price,
                       uint64_t now, uint64_t change_id, mp_mc_reply *out)
{
    uint8_t enc[SCRIP_ENC_MAX], cenc[SCRIP_ENC_MAX];
    uint8_t csec[MP_HASH_LEN], sig[MP_HASH_LEN];
    size_t enc_len, cenc_len = 0;
    mp_mc_reply rep;
    mc_slot *sl;
    int cmp;
    mp_status st;

    memset(csec, 0, sizeof csec);
    if (iss == NULL || mac == NULL || p == NULL || req == NULL || out == NULL
        || !amount_ok(price, 1)) {
        st = MP_ERR_ARG;
        goto done;
    }
    if ((st = check_scrip(iss, &p->scrip, now, enc, &enc_len)) != MP_OK)
        goto done;
    if (mp_amount_cmp(&p->price, price, &cmp) != MP_OK || cmp != 0) {
        st = MP_ERR_PRICE;
        goto done;
    }
    if (mp_amount_cmp(&p->scrip.value, price, &cmp) != MP_OK || cmp < 0) {
        st = MP_ERR_INSUFFICIENT;
        goto done;
    }
    if ((st = derive_customer_secret(iss, p->scrip.customer_id, csec)) != MP_OK)
        goto done;
    if ((st = mp_mac_rekey(mac, csec, sizeof csec)) != MP_OK)
        goto done;
    if ((st = req_sig_compute(mac, enc, enc_len, req, &p->price, sig)) != MP_OK)
        goto done;
    if (!mp_ct_equal(sig, sizeof sig, p->req_sig, sizeof p->req_sig)) {
        st = MP_ERR_FORGED;
        goto done;
    }

    memset(&rep, 0, sizeof rep);
    if ((st = mp_amount_sub(&p->scrip.value, price, &rep.change.value)) != MP_OK)
        goto done;
    if (rep.change.value.units > 0) {
        if ((sl = find_slot(iss->scrip, iss->nscrip, MP_SERIES(change_id))) == NULL) {
            st = MP_ERR_UNKNOWN_SERIES;
            goto done;
        }
        /* Change stamped under a retired series would be refused at once:
         * the caller allocated change_id badly; the customer did nothing
         * wrong, so this is not reported as expired. */
        if (sl->retire_at != 0 && now >= sl->retire_at) {
            st = MP_ERR_ARG;
            goto done;
        }
        rep.has_change = 1;
        memcpy(rep.change.vendor, iss->name, sizeof rep.change.vendor);
        rep.change.id = change_id;
        rep.change.customer_id = p->scrip.customer_id;
        rep.change.expiry = p->scrip.expiry;
        memcpy(rep.change.props, p->scrip.props, sizeof rep.change.props);
        if ((st = scrip_stamp(sl->mac, &rep.change, cenc, &cenc_len, rep.change.stamp)) != MP_OK)
            goto done;
    } else {
        memset(&rep.change, 0, sizeof rep.change);
    }
    rep.charged = *price;
    memcpy(rep.req_sig, p->req_sig, MP_HASH_LEN);
    /* mac is still keyed with this customer's secret. */
    if ((st = reply_mac(mac, &rep, rep.has_change ? cenc : NULL, cenc_len, rep.mac)) != MP_OK)
        goto done;
    *out = rep;
done:
    mp_wipe(csec, sizeof csec);
    return st;
}
