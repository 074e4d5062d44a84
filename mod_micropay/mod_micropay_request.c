/*
 * mod_micropay_request.c - the payment path: decide, in the fixups hook,
 * whether a request to a paid location may proceed.
 *
 * Everything uncertain means "not paid" (fail closed): an unreadable
 * credential, a store that cannot be read or written, a configuration
 * that cannot name a price. The scheme checks are libmp's; this file
 * only gathers the request's facts, calls libmp and the store, and hands
 * the outcome to mod_micropay_response.c, the one place that turns
 * outcomes into HTTP.
 */
#include <string.h>
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"
#include "apr_atomic.h"
#include "mod_micropay.h"

APLOG_USE_MODULE(micropay);

/* ---- per-connection crypto objects -------------------------------------------- */

/* libmp's keyed contexts are not thread-safe, and a connection is served
 * by one thread at a time: each connection gets its own copies, made on
 * its first paid request and freed with the connection. Keyed by the
 * server config because name-based virtual hosts can share a connection. */
#define MPX_CONN_SLOTS 4
typedef struct {
    int n;
    struct { mpx_server_conf *sc; mpx_thread_crypto tc; } e[MPX_CONN_SLOTS];
} mpx_conn_crypto;

static void crypto_free(mpx_thread_crypto *tc)
{
    mp_mc_issuer_free(tc->issuer);
    mp_mac_free(tc->scratch);
    mp_mac_free(tc->receipt_key);
    mp_mac_free(tc->receipt_prev);
    mp_sha_free(tc->sha);
    memset(tc, 0, sizeof *tc);
}

static apr_status_t conn_crypto_cleanup(void *data)
{
    mpx_conn_crypto *cc = data;
    int i;

    for (i = 0; i < cc->n; i++)
        crypto_free(&cc->e[i].tc);
    cc->n = 0;
    return APR_SUCCESS;
}

mpx_thread_crypto *mpx_crypto_for(request_rec *r, mpx_server_conf *sc)
{
    conn_rec *c = r->connection;
    mpx_conn_crypto *cc = ap_get_module_config(c->conn_config, &micropay_module);
    mpx_thread_crypto tc;
    uint8_t dummy[MP_SECRET_LEN];
    int i;

    if (cc == NULL) {
        cc = apr_pcalloc(c->pool, sizeof *cc);
        ap_set_module_config(c->conn_config, &micropay_module, cc);
        apr_pool_cleanup_register(c->pool, cc, conn_crypto_cleanup, apr_pool_cleanup_null);
    }
    for (i = 0; i < cc->n; i++)
        if (cc->e[i].sc == sc)
            return &cc->e[i].tc;
    memset(&tc, 0, sizeof tc);
    /* The scratch context is re-keyed per payment; its first key is irrelevant. */
    memset(dummy, 0x5a, sizeof dummy);
    if (mp_mc_issuer_dup(sc->issuer, &tc.issuer) != MP_OK
        || mp_mac_new(dummy, sizeof dummy, &tc.scratch) != MP_OK
        || (sc->receipt_key != NULL && mp_mac_dup(sc->receipt_key, &tc.receipt_key) != MP_OK)
        || (sc->receipt_prev != NULL && mp_mac_dup(sc->receipt_prev, &tc.receipt_prev) != MP_OK)
        || mp_sha_new(&tc.sha) != MP_OK) {
        crypto_free(&tc);
        return NULL;
    }
    if (cc->n == MPX_CONN_SLOTS) {
        crypto_free(&cc->e[0].tc);
        memmove(&cc->e[0], &cc->e[1], sizeof cc->e[0] * (MPX_CONN_SLOTS - 1));
        cc->n--;
    }
    cc->e[cc->n].sc = sc;
    cc->e[cc->n].tc = tc;
    return &cc->e[cc->n++].tc;
}

/* ---- small helpers ---------------------------------------------------------------- */

/* Change ids come from blocks reserved in the store, so a payment needs no
 * extra write for its change and ids never repeat across processes. */
#define MPX_ID_BLOCK 256

static mp_status next_change_id(mpx_server_conf *sc, uint64_t *id)
{
    mp_status st = MP_OK;
    uint64_t first, now;
    uint16_t old;

    apr_thread_mutex_lock(sc->ids_lock);
    /* The series chosen at start retires while the server runs: change
     * moves to the newest one still in service, with fresh id blocks
     * (read after the payment's own clock, so never an older choice). */
    now = (uint64_t)apr_time_sec(apr_time_now());
    if (sc->change_retire != 0 && now >= sc->change_retire) {
        old = sc->change_series;
        if (mpx_choose_change_series(sc, now)) {
            sc->ids_next = sc->ids_end = 0;
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, sc->server, "MP00150: vendor %s: change "
                         "series %u retired; change is minted in series %u from now on",
                         sc->vendor, old, sc->change_series);
        } else {
            /* Said once per process; payments paying the exact price still
             * work, those that need change fail in mp_mc_accept (500). */
            sc->change_retire = 0;
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, sc->server, "MP00151: vendor %s: every "
                         "scrip series of MicropaySecretsFile %s has retired: payments that "
                         "need change answer 500; add one (mpadmin keys rotate) and reload",
                         sc->vendor, sc->secrets_file);
        }
    }
    if (sc->ids_next == sc->ids_end) {
        st = mps_reserve_ids(sc->store, sc->vendor, sc->change_series, MPX_ID_BLOCK, &first);
        if (st == MP_OK) {
            sc->ids_next = first;
            sc->ids_end = first + MPX_ID_BLOCK;
        }
    }
    if (st == MP_OK)
        *id = sc->ids_next++;
    apr_thread_mutex_unlock(sc->ids_lock);
    return st;
}

static int visible(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

typedef struct {
    const char *value;
    int count;
} header_count;

static int count_header(void *ctx, const char *key, const char *value)
{
    header_count *hc = ctx;

    (void)key;
    hc->count++;
    hc->value = value;
    return 1;
}

/* "Payment <token68>": returns the token, NULL when v is not of scheme
 * Payment; *bad = 1 for a Payment credential that is not well formed. */
static const char *payment_token(apr_pool_t *p, const char *v, int *bad, size_t *len)
{
    const char *t, *e;

    while (*v == ' ' || *v == '\t')
        v++;
    if (strncasecmp(v, "Payment", 7) != 0 || (v[7] != ' ' && v[7] != '\t' && v[7] != '\0'))
        return NULL;
    t = v + 7;
    while (*t == ' ' || *t == '\t')
        t++;
    for (e = t; *e && *e != ' ' && *e != '\t' && *e != ','; e++)
        ;
    *len = (size_t)(e - t);
    while (*e == ' ' || *e == '\t')
        e++;
    if (*len == 0 || *e != '\0' || *len > MP_WIRE_TEXT_MAX) {
        *bad = 1;
        return NULL;
    }
    return apr_pstrmemdup(p, t, *len);
}

/* The credential, from Payment-Authorization first (so that HTTP
 * authentication keeps Authorization), else from Authorization. */
static const char *find_credential(request_rec *r, int *bad, size_t *len)
{
    header_count hc = { NULL, 0 };
    const char *tok;

    *bad = 0;
    apr_table_do(count_header, &hc, r->headers_in, "Payment-Authorization", NULL);
    if (hc.count > 1) {
        *bad = 1;
        return NULL;
    }
    if (hc.count == 1) {
        tok = payment_token(r->pool, hc.value, bad, len);
        if (tok == NULL)
            *bad = 1;
        return tok;
    }
    hc.count = 0;
    apr_table_do(count_header, &hc, r->headers_in, "Authorization", NULL);
    if (hc.count == 0)
        return NULL;
    return payment_token(r->pool, hc.value, bad, len);
}

/* The request target exactly as the client sent it (path and query, not
 * decoded, not normalised): req_sig, offers and receipts are bound to these
 * bytes, which is all a client can sign. Apache normalises parsed_uri in
 * place, so the request line's own text is used. An absolute-form target
 * (a request through a proxy) contributes its path and query. */
static const char *request_target(request_rec *r)
{
    const char *u = r->unparsed_uri ? r->unparsed_uri : "/", *p;
    size_t n;

    if (u[0] != '/' && (p = strstr(u, "://")) != NULL) {
        /* The authority ends at the first '/', '?' or '#': a '/' inside the
         * query must not be taken for the path. */
        p += 3;
        p += strcspn(p, "/?#");
        if (*p == '/')
            u = p;
        else if (*p == '?')
            return apr_pstrcat(r->pool, "/", apr_pstrmemdup(r->pool, p, strcspn(p, "#")), NULL);
        else
            u = "/";
    }
    n = strcspn(u, "#");
    return apr_pstrmemdup(r->pool, u, n);
}

static void set_env(request_rec *r, const char *scheme, uint64_t units, const mp_amount *price,
                    const char *payer, const char *result)
{
    char buf[MP_AMOUNT_STRMAX];

    apr_table_setn(r->subprocess_env, "MICROPAY_SCHEME", scheme);
    apr_table_setn(r->subprocess_env, "MICROPAY_UNITS",
                   apr_psprintf(r->pool, "%" APR_UINT64_T_FMT, (apr_uint64_t)units));
    if (mp_amount_format(price, buf, sizeof buf) == MP_OK)
        apr_table_setn(r->subprocess_env, "MICROPAY_PRICE", apr_pstrdup(r->pool, buf));
    apr_table_setn(r->subprocess_env, "MICROPAY_PAYER", payer);
    apr_table_setn(r->subprocess_env, "MICROPAY_RESULT", result);
}

static const char *hex32(apr_pool_t *p, const uint8_t *b)
{
    static const char d[] = "0123456789abcdef";
    char *s = apr_palloc(p, 2 * MP_HASH_LEN + 1);
    int i;

    for (i = 0; i < MP_HASH_LEN; i++) {
        s[2 * i] = d[b[i] >> 4];
        s[2 * i + 1] = d[b[i] & 15];
    }
    s[2 * MP_HASH_LEN] = '\0';
    return s;
}

static const char *b64(apr_pool_t *p, const uint8_t *bin, size_t len)
{
    size_t cap = mp_b64url_len(len) + 1;
    char *t = apr_palloc(p, cap);

    return mp_b64url_encode(bin, len, t, cap, NULL) == MP_OK ? t : NULL;
}

/* Compaction runs from request processing, at most once a minute per
 * process and only when the store says it is due, so no extra thread or
 * cron job is needed to keep the store bounded. */
static volatile apr_uint32_t last_compact_check;

static void maybe_compact(request_rec *r, mpx_server_conf *sc, uint64_t now)
{
    apr_uint32_t last = apr_atomic_read32(&last_compact_check);
    size_t removed = 0;

    if ((apr_uint32_t)now - last < 60
        || apr_atomic_cas32(&last_compact_check, (apr_uint32_t)now, last) != last)
        return;
    if (mps_maybe_compact(sc->store, now, 300, &removed) != MP_OK)
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, "MP00012: store compaction failed: %s",
                      mps_errmsg(sc->store));
    else if (removed > 0)
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "MP00011: store compaction removed %lu "
                      "expired records", (unsigned long)removed);
    /* A full batch leaves a backlog (every payment adds a record, PayWord a
     * retry record too): go on a second later, not a minute, so removal
     * keeps up with up to a batch a second per process. */
    if (removed >= MPS_COMPACT_BATCH)
        apr_atomic_set32(&last_compact_check, (apr_uint32_t)now - 59);
}

/* A full store fails every paid request alike: one line a second per
 * process says so (with how many were held back); each request still gets
 * its 500. Other store errors are logged every time. */
static volatile apr_uint64_t last_full_log;
static volatile apr_uint32_t full_suppressed;

static void log_store_error(request_rec *r, mpx_server_conf *sc, const char *uri)
{
    apr_uint64_t now, last;
    apr_uint32_t held = 0;

    if (mps_full(sc->store)) {
        now = (apr_uint64_t)apr_time_now();
        last = apr_atomic_read64(&last_full_log);
        if ((now >= last && now - last < APR_USEC_PER_SEC)
            || apr_atomic_cas64(&last_full_log, now, last) != last) {
            apr_atomic_inc32(&full_suppressed);
            return;
        }
        held = apr_atomic_xchg32(&full_suppressed, 0);
    }
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "MP00022: payment store error%s%s: %s%s",
                  uri != NULL ? " for " : "", uri != NULL ? uri : "", mps_errmsg(sc->store),
                  held ? apr_psprintf(r->pool, " (%u more not logged)", held) : "");
}

/* ---- the schemes -------------------------------------------------------------------- */

typedef struct {
    request_rec     *r;
    mpx_server_conf *sc;
    mpx_thread_crypto *tc;
    mp_request       req;
    const char      *target;
    const char      *path;       /* URL path as sent, no query: the earnings ledger */
    mp_amount        price;
    mp_amount        unit;       /* MicropayPayWordUnit in force (units 0: no PayWord) */
    uint8_t          schemes;
    uint32_t         window;     /* receipt window, 0 = none */
    uint32_t         retry_window; /* MicropayRetryWindow in force, 0 = no retries */
    uint8_t          body_digest[MP_HASH_LEN];
    uint64_t         now;
    /* results */
    const char      *scheme_name;
    const char      *payer;
    const char      *result;     /* paid | retry | receipt */
    uint64_t         units;
    const char      *change_b64;
    uint8_t          receipt_scheme;
    uint64_t         receipt_customer;
    const uint8_t   *receipt_commit;
} mpx_pay;

static mp_status pay_millicent(mpx_pay *x, const uint8_t *rec, size_t len)
{
    request_rec *r = x->r;
    mp_mc_payment *p = apr_palloc(r->pool, sizeof *p);
    mp_mc_reply *reply = apr_palloc(r->pool, sizeof *reply);
    uint8_t *enc = apr_palloc(r->pool, MP_WIRE_MAX), *stored = apr_palloc(r->pool, MP_WIRE_MAX);
    size_t enc_len = 0, stored_len = 0;
    apr_int64_t grace = x->sc->pw_grace >= 0 ? x->sc->pw_grace : MPX_DEFAULT_PW_GRACE;
    uint64_t change_id, keep_until;
    mps_earning earn;
    mps_retry rt;
    int retry = 0;
    mp_status st;

    if ((st = mp_mc_payment_decode(rec, len, p)) != MP_OK)
        return st;
    rt.now = x->now;
    rt.window = x->retry_window;
    rt.body_digest = x->body_digest;
    /* The retry test comes first: a retry recovers the answer of a payment
     * accepted when it was made, with its change, whatever the price, the
     * schemes or the clock say now. Any other use of a spent id falls
     * through to the checks, and the spend refuses it. */
    if ((st = mps_mc_find(x->sc->store, x->sc->vendor, p->scrip.id, rec, len, &x->req, &rt,
                          &retry, stored, &stored_len)) != MP_OK && st != MP_ERR_SPENT)
        return st;
    if (st == MP_OK && retry)
        goto done;
    if (!(x->schemes & MP_SCHEME_MILLICENT))
        return MP_ERR_PRICE;
    if ((st = next_change_id(x->sc, &change_id)) != MP_OK)
        return st;
    if ((st = mp_mc_accept(x->tc->issuer, x->tc->scratch, p, &x->req, &x->price, x->now,
                           change_id, reply)) != MP_OK)
        return st;
    if ((st = mp_mc_reply_encode(reply, enc, MP_WIRE_MAX, &enc_len)) != MP_OK)
        return st;
    earn.time = x->now;
    earn.scheme = MP_SCHEME_MILLICENT;
    earn.path = x->path;
    earn.path_len = strlen(x->path);
    earn.amount = x->price;
    /* The spend is kept, with the payment and its request, until the broker
     * has been asked to credit it (mpadmin redeem), at most until the
     * redemption grace after expiry; the decoded record is canonical, so rec
     * is exactly the payment the customer signed. */
    keep_until = p->scrip.expiry > UINT64_MAX - (uint64_t)grace ? UINT64_MAX
                                                                : p->scrip.expiry + (uint64_t)grace;
    st = mps_mc_spend(x->sc->store, x->sc->vendor, p->scrip.id, p->scrip.expiry, keep_until,
                      p->req_sig, rec, len, &x->req, enc, enc_len, &earn, &rt, &retry, stored,
                      &stored_len);
    if (st != MP_OK)
        return st;
done:
    /* A retry gets the change it was given the first time, not new change. */
    x->change_b64 = retry ? b64(r->pool, stored, stored_len) : b64(r->pool, enc, enc_len);
    x->scheme_name = "millicent";
    x->payer = apr_psprintf(r->pool, "%" APR_UINT64_T_FMT, (apr_uint64_t)p->scrip.customer_id);
    x->result = retry ? "retry" : "paid";
    x->units = retry ? 0 : x->price.units;
    x->receipt_scheme = MP_SCHEME_MILLICENT;
    x->receipt_customer = p->scrip.customer_id;
    return MP_OK;
}

/* Words of another value than the offer's unit are not what was offered
 * (MicropayPayWordUnit is checked against the commitment, PROTOCOL.md
 * 7.5): price-mismatch. Another currency is left to the value check,
 * which calls it insufficient. */
static mp_status unit_check(const mpx_pay *x, const mp_amount *unit)
{
    if (memcmp(unit->cur, x->unit.cur, 3) == 0 && unit->units != x->unit.units)
        return MP_ERR_PRICE;
    return MP_OK;
}

/* Races lost to other payments with the same commitment before the
 * decision moves under the store's write lock. Optimistic attempts hash
 * outside the lock, so that one busy commitment does not stall every
 * other payment; the last attempt hashes under it (at most
 * MP_PW_SKIP_RATIO words a paid word), so a good payment is never refused
 * for contention. */
#define MPX_PW_OPTIMISTIC 4

typedef struct {
    mpx_pay             *x;
    const mp_pw_payment *p;
    const uint8_t       *tag;
} pw_decision;

static mp_status pw_decide(void *ctx, const mp_pw_track *cur, uint64_t now, mp_pw_track *out,
                           int *retry)
{
    pw_decision *d = ctx;

    return mp_pw_track_accept(d->x->tc->sha, cur, d->p, d->tag, &d->x->price, now, out, retry);
}

static mp_status pay_payword(mpx_pay *x, const uint8_t *rec, size_t len)
{
    request_rec *r = x->r;
    mp_pw_payment *p = apr_palloc(r->pool, sizeof *p);
    mp_pw_track *t = apr_palloc(r->pool, sizeof *t), *next = apr_palloc(r->pool, sizeof *next);
    apr_int64_t grace = x->sc->pw_grace >= 0 ? x->sc->pw_grace : MPX_DEFAULT_PW_GRACE;
    const mp_pw_commit *first = NULL;
    uint8_t tag[MP_PW_TAG_LEN];
    pw_decision d;
    mps_earning earn;
    mps_pw_paid paid;
    uint64_t keep_until;
    int retry = 0, attempt, locked;
    mp_status st;

    if ((st = mp_pw_payment_decode(rec, len, p)) != MP_OK)
        return st;
    if ((st = mp_request_tag(x->tc->sha, &x->req, tag)) != MP_OK)
        return st;
    /* The retry test comes first (before the scheme, unit, expiry and
     * price checks), from the store's retry records, which keep every
     * payment of the retry window: a retry recovers the answer of a
     * payment accepted when it was made. The commitment must still be
     * this vendor's. */
    st = mps_pw_get(x->sc->store, p->commit_id, t);
    if (st == MP_OK) {
        if (strcmp(t->vendor, x->sc->vendor) != 0)
            return MP_ERR_WRONG_VENDOR;
        if ((st = mps_pw_retry_find(x->sc->store, p->commit_id, p->i, p->k, p->w, tag, x->now,
                                    x->retry_window, &retry)) != MP_OK)
            return st;
        if (retry)
            goto done;
    }
    if (!(x->schemes & MP_SCHEME_PAYWORD))
        return MP_ERR_PRICE;
    if (st == MP_ERR_UNKNOWN_COMMITMENT && p->has_commit) {
        /* First contact: the two signature checks run outside any store
         * transaction; the commitment is stored only in the transaction
         * of a payment that is accepted with it, so unpaid traffic leaves
         * no state. One in another unit than the offer's is not used. */
        if ((st = mp_pw_commit_verify(&p->commit, &x->sc->pw_trust, x->sc->vendor, x->now)) != MP_OK
            || (st = unit_check(x, &p->commit.unit)) != MP_OK
            || (st = mp_pw_track_init(&p->commit, t)) != MP_OK)
            return st;
        first = &p->commit;
    }
    if (st != MP_OK && first == NULL)
        return st;
    /* Vendors sharing a store share its trackers: a commitment pays only
     * the vendor it names. */
    if (strcmp(t->vendor, x->sc->vendor) != 0)
        return MP_ERR_WRONG_VENDOR;
    if ((st = unit_check(x, &t->unit)) != MP_OK)
        return st;
    earn.time = x->now;
    earn.scheme = MP_SCHEME_PAYWORD;
    earn.path = x->path;
    earn.path_len = strlen(x->path);
    earn.amount = x->price;
    keep_until = t->expiry > UINT64_MAX - (uint64_t)grace ? UINT64_MAX : t->expiry + (uint64_t)grace;
    d.x = x;
    d.p = p;
    d.tag = tag;
    paid.i = p->i;
    paid.k = p->k;
    paid.w = p->w;
    paid.tag = tag;
    paid.accepted_at = x->now;
    /* Optimistic: hash outside the store's write lock, write back only if
     * nobody changed the tracker meanwhile, else decide again. */
    for (attempt = 1;; attempt++) {
        if ((st = mp_pw_track_accept(x->tc->sha, t, p, tag, &x->price, x->now, next, &retry)) != MP_OK)
            return st;
        if (retry)
            break;
        locked = attempt >= MPX_PW_OPTIMISTIC;
        st = mps_pw_update(x->sc->store, first, keep_until, t->version, next,
                           locked ? pw_decide : NULL, &d, &earn, &paid, &retry);
        if (st != MP_ERR_BUSY || locked)
            break;
        if ((st = mps_pw_get(x->sc->store, p->commit_id, t)) != MP_OK)
            return st;
    }
    if (st != MP_OK)
        return st;
    /* The tracker's own memory of recent payments is no authority: the
     * retry records decide, read again since an identical request may
     * have been accepted meanwhile. */
    if (retry) {
        if ((st = mps_pw_retry_find(x->sc->store, p->commit_id, p->i, p->k, p->w, tag,
                                    x->now, x->retry_window, &retry)) != MP_OK)
            return st;
        if (!retry)
            return MP_ERR_SPENT;
    }
done:
    x->scheme_name = "payword";
    x->payer = hex32(r->pool, p->commit_id);
    x->result = retry ? "retry" : "paid";
    x->units = retry ? 0 : x->price.units;
    x->receipt_scheme = MP_SCHEME_PAYWORD;
    x->receipt_commit = apr_pmemdup(r->pool, p->commit_id, MP_HASH_LEN);
    return MP_OK;
}

static mp_status pay_receipt(mpx_pay *x, const uint8_t *rec, size_t len)
{
    request_rec *r = x->r;
    mp_receipt *rc = apr_palloc(r->pool, sizeof *rc);
    mp_status st;

    if ((st = mp_receipt_decode(rec, len, rc)) != MP_OK)
        return st;
    if (x->tc->receipt_key == NULL)
        return MP_ERR_FORGED;        /* this server issues no receipts */
    st = mp_receipt_check(x->tc->receipt_key, rc, x->sc->vendor, x->target, strlen(x->target),
                          x->now);
    /* Stamped before the receipt secret was rotated: the one before it is
     * accepted until it retires (PROTOCOL.md 9), and only when its line
     * says when (retire=): without an end, whoever holds an old secret
     * would forge receipts for any page at any price for ever. */
    if (st == MP_ERR_FORGED && x->tc->receipt_prev != NULL && x->sc->receipt_prev_retire != 0
        && x->now < x->sc->receipt_prev_retire)
        st = mp_receipt_check(x->tc->receipt_prev, rc, x->sc->vendor, x->target,
                              strlen(x->target), x->now);
    if (st != MP_OK)
        return st;
    /* The window in force here now, not only the one stamped in: a location
     * set to MicropayReceiptWindow 0 (or a shorter window) takes no older
     * receipts either. */
    if (x->window == 0 || x->now >= rc->issued + (uint64_t)x->window)
        return MP_ERR_EXPIRED;
    /* A receipt re-reads what was bought; it does not run other methods,
     * and it does not open a resource that costs more than was paid (a
     * price raised since, or another site of the same vendor). */
    if (r->method_number != M_GET)
        return MP_ERR_WRONG_TARGET;
    if (memcmp(rc->price.cur, x->price.cur, 3) != 0 || rc->price.units < x->price.units)
        return MP_ERR_WRONG_TARGET;
    x->scheme_name = rc->scheme == MP_SCHEME_MILLICENT ? "millicent" : "payword";
    x->payer = rc->scheme == MP_SCHEME_MILLICENT
        ? apr_psprintf(r->pool, "%" APR_UINT64_T_FMT, (apr_uint64_t)rc->customer_id)
        : hex32(r->pool, rc->commit_id);
    x->result = "receipt";
    x->units = 0;
    return MP_OK;
}

static const char *make_receipt(mpx_pay *x)
{
    mp_receipt rc;
    uint8_t enc[MP_WIRE_MAX];
    size_t len;

    /* A retry recovers a lost answer; a fresh receipt would stretch one
     * payment's re-reading window for ever, one retry at a time. */
    if (x->window == 0 || x->tc->receipt_key == NULL || strcmp(x->result, "paid") != 0
        || x->r->method_number != M_GET)
        return NULL;
    memset(&rc, 0, sizeof rc);
    apr_cpystrn(rc.vendor, x->sc->vendor, sizeof rc.vendor);
    memcpy(rc.target, x->target, strlen(x->target) + 1);
    rc.target_len = strlen(x->target);
    rc.scheme = x->receipt_scheme;
    rc.customer_id = x->receipt_customer;
    if (x->receipt_commit)
        memcpy(rc.commit_id, x->receipt_commit, MP_HASH_LEN);
    rc.price = x->price;
    rc.issued = x->now;
    rc.expiry = x->now + x->window;
    if (mp_receipt_stamp(x->tc->receipt_key, &rc) != MP_OK
        || mp_receipt_encode(&rc, enc, sizeof enc, &len) != MP_OK)
        return NULL;
    return b64(x->r->pool, enc, len);
}

/* ---- the hook ------------------------------------------------------------------------ */

static int copy_env(void *to, const char *key, const char *value)
{
    apr_table_setn(to, key, value);
    return 1;
}

/* Requests that continue one already decided by us (internal redirects:
 * ErrorDocument, a CGI's local Location, per-directory rewrites).
 * CONT_ANSWERED: it follows our own 402/400/500 answer, never to be charged.
 * CONT_PAID: it follows a payment; *paid_prev is that request. */
enum { CONT_NONE, CONT_ANSWERED, CONT_PAID };

static int continued(request_rec *r, request_rec **paid_prev)
{
    request_rec *prev;

    for (prev = r->prev; prev != NULL; prev = prev->prev) {
        if (apr_table_get(prev->notes, "micropay-answered") != NULL)
            return CONT_ANSWERED;
        if (apr_table_get(prev->notes, "micropay-paid") != NULL) {
            *paid_prev = prev;
            return CONT_PAID;
        }
    }
    return CONT_NONE;
}

/* The payment of prev covers r when it paid at least r's price: the new
 * target of an internal redirect must not be dearer than what was bought. */
static int covers(request_rec *r, request_rec *prev, const mp_amount *price)
{
    if (!mpx_paid_covers(prev, price))
        return 0;
    apr_table_setn(r->notes, "micropay-paid", apr_table_get(prev->notes, "micropay-paid"));
    apr_table_do(copy_env, r->subprocess_env, prev->subprocess_env, "MICROPAY_SCHEME",
                 "MICROPAY_UNITS", "MICROPAY_PRICE", "MICROPAY_PAYER", "MICROPAY_RESULT", NULL);
    return 1;
}

int mpx_fixups(request_rec *r)
{
    request_rec *paid_prev = NULL;
    int cont;
    mpx_dir_conf *dc;
    mpx_server_conf *sc;
    mpx_answer a;
    mpx_pay x;
    mp_amount unit;
    const char *cred, *host;
    uint8_t *rec;
    size_t cred_len = 0, rec_len = 0;
    uint8_t type = 0;
    int bad = 0;
    mp_status st;

    if (r->main != NULL)
        return DECLINED;               /* subrequests: the main request decides */
    dc = ap_get_module_config(r->per_dir_config, &micropay_module);
    if (dc == NULL || dc->enabled != 1 || (cont = continued(r, &paid_prev)) == CONT_ANSWERED)
        return DECLINED;
    /* CORS preflights cannot carry a credential, so OPTIONS is free where
     * the core answers it (static files); CGI and proxied backends would
     * see the request and may answer with content, so there it is paid. */
    if (r->method_number == M_OPTIONS && !r->proxyreq
        && (r->handler == NULL || strcmp(r->handler, "default-handler") == 0))
        return DECLINED;
    /* A file that does not exist, served by the default handler, can only
     * be a 404: nobody pays for that. Handlers that make their own content
     * (CGI, proxies, modules) are charged, since only they know. */
    if (r->finfo.filetype == APR_NOFILE && r->filename != NULL
        && strncmp(r->filename, "proxy:", 6) != 0
        && (r->handler == NULL || strcmp(r->handler, "default-handler") == 0))
        return DECLINED;

    memset(&a, 0, sizeof a);
    memset(&x, 0, sizeof x);
    sc = ap_get_module_config(r->server->module_config, &micropay_module);
    if (sc->vendor == NULL || sc->issuer == NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "MP00020: Micropay is on for %s but this "
                      "server has no MicropayVendor; refusing to serve it", r->uri);
        a.status = MP_ERR_ARG;
        return mpx_respond(r, MPX_OUT_ERROR, &a);
    }
    if (sc->store == NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "MP00021: payment store %s unavailable (%s); "
                      "refusing paid request for %s", sc->store_dir,
                      sc->store_error ? sc->store_error : "not open", r->uri);
        a.status = MP_ERR_STORE;
        return mpx_respond(r, MPX_OUT_ERROR, &a);
    }

    x.r = r;
    x.sc = sc;
    /* The clock of the decision, not of the request line: headers can be
     * trickled for as long as the server lets them, past an expiry. */
    x.now = (uint64_t)apr_time_sec(apr_time_now());
    x.target = request_target(r);
    x.path = r->parsed_uri.path ? r->parsed_uri.path : "/";
    if (strlen(x.target) > MP_TARGET_MAX) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "MP00034: request target of a paid location "
                      "is longer than %d bytes", MP_TARGET_MAX);
        return HTTP_REQUEST_URI_TOO_LARGE;
    }
    /* 414 says "too long"; bytes no payment can bind (PROTOCOL 3.1: targets
     * are visible ASCII) make the request itself bad. */
    if (!visible(x.target, strlen(x.target))) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "MP00037: request target of a paid location "
                      "has bytes outside visible ASCII: 400");
        return HTTP_BAD_REQUEST;
    }
    if (strlen(r->method) > MP_METHOD_MAX)
        return HTTP_NOT_IMPLEMENTED;
    host = apr_table_get(r->headers_in, "Host");
    if (host == NULL || *host == '\0' || strlen(host) > MP_HOST_MAX || !visible(host, strlen(host)))
        host = r->hostname ? r->hostname : "";
    x.req.method = r->method;
    x.req.method_len = strlen(r->method);
    x.req.host = host;
    x.req.host_len = strlen(host);
    x.req.target = x.target;
    x.req.target_len = strlen(x.target);

    if ((st = mpx_price_for(r, sc, dc, &x.price, &x.schemes, &unit)) != MP_OK) {
        if (st == MP_ERR_STORE)
            log_store_error(r, sc, NULL);
        a.status = st;
        return mpx_respond(r, MPX_OUT_ERROR, &a);
    }
    /* After a payment, the redirected request is free if that payment
     * covers its price; otherwise it is offered (the credential was spent). */
    if (cont == CONT_PAID && covers(r, paid_prev, &x.price))
        return DECLINED;
    if ((x.tc = mpx_crypto_for(r, sc)) == NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "MP00026: cannot set up crypto contexts");
        a.status = MP_ERR_CRYPTO;
        return mpx_respond(r, MPX_OUT_ERROR, &a);
    }
    x.window = sc->receipt_key == NULL ? 0
        : (uint32_t)(dc->receipt_window >= 0 ? dc->receipt_window : MPX_DEFAULT_RECEIPT_WINDOW);

    /* The offer goes out with a 402 and with every refusal. */
    apr_cpystrn(a.offer.vendor, sc->vendor, sizeof a.offer.vendor);
    apr_cpystrn(a.offer.method, r->method, sizeof a.offer.method);
    memcpy(a.offer.target, x.target, x.req.target_len + 1);
    a.offer.target_len = x.req.target_len;
    a.offer.price = x.price;
    a.offer.schemes = x.schemes;
    a.offer.pw_unit = unit;
    x.unit = unit;
    if (sc->broker_url)
        apr_cpystrn(a.offer.broker_url, sc->broker_url, sizeof a.offer.broker_url);
    a.offer.receipt_window = x.window;
    a.offer.expiry = x.now + (uint64_t)(dc->offer_lifetime >= 0 ? dc->offer_lifetime
                                                               : MPX_DEFAULT_OFFER_LIFETIME);

    cred = find_credential(r, &bad, &cred_len);
    if (cred == NULL && !bad)
        return mpx_respond(r, MPX_OUT_OFFER, &a);

    st = MP_ERR_MALFORMED;
    if (!bad) {
        /* A payment is bound to the request's body: read it whole (kept
         * for the handler) before deciding, and decide with the clock of
         * after the read, when a slow body has crossed expiries. Nothing
         * is read for a request without a credential. */
        int hs = mpx_body_take(r, sc->max_body >= 0 ? (apr_off_t)sc->max_body
                                                    : (apr_off_t)MPX_DEFAULT_MAX_BODY,
                               x.body_digest);

        if (hs != OK)
            return hs;
        x.req.body_digest = x.body_digest;
        x.retry_window = (uint32_t)(dc->retry_window >= 0 ? dc->retry_window
                                                          : MPX_DEFAULT_RETRY_WINDOW);
        x.now = (uint64_t)apr_time_sec(apr_time_now());
        rec = apr_palloc(r->pool, MP_WIRE_MAX);
        st = mp_b64url_decode(cred, cred_len, rec, MP_WIRE_MAX, &rec_len);
        if (st == MP_ERR_BUFFER)
            st = MP_ERR_TOO_LARGE;
        if (st == MP_OK)
            st = mp_wire_peek_type(rec, rec_len, &type);
        if (st == MP_OK) {
            switch (type) {
            case MP_T_MC_PAYMENT: st = pay_millicent(&x, rec, rec_len); break;
            case MP_T_PW_PAYMENT: st = pay_payword(&x, rec, rec_len); break;
            case MP_T_RECEIPT:    st = pay_receipt(&x, rec, rec_len); break;
            default:              st = MP_ERR_TYPE; break;
            }
        }
    }
    if (st != MP_OK) {
        a.status = st;
        if (st == MP_ERR_STORE) {
            log_store_error(r, sc, r->uri);
            return mpx_respond(r, MPX_OUT_ERROR, &a);
        }
        if (mp_status_class(st) == MP_CLASS_INTERNAL) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "MP00028: payment for %s failed: %s",
                          r->uri, mp_strerror(st));
            return mpx_respond(r, MPX_OUT_ERROR, &a);
        }
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "MP00030: payment refused for %s %s: %s (%s)",
                      r->method, r->uri, mp_reason(st), mp_strerror(st));
        return mpx_respond(r, MPX_OUT_FAILED, &a);
    }

    /* Paid. The credential is spent: backends (CGI, proxies) need not see it. */
    apr_table_unset(r->headers_in, "Payment-Authorization");
    if ((cred = apr_table_get(r->headers_in, "Authorization")) != NULL
        && strncasecmp(cred, "Payment", 7) == 0)
        apr_table_unset(r->headers_in, "Authorization");
    /* A retry runs the handler again: backends behind a proxy learn it
     * from a header the client cannot set (CGI from MICROPAY_RESULT). */
    apr_table_setn(r->headers_in, "Micropay-Result", x.result);
    set_env(r, x.scheme_name, x.units, &x.price, x.payer, x.result);
    a.change_b64 = x.change_b64;
    a.receipt_b64 = make_receipt(&x);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "MP00031: %s %s: %s by %s (%s)", r->method, r->uri,
                  x.result, x.scheme_name, x.payer);
    maybe_compact(r, sc, x.now);
    return mpx_respond(r, MPX_OUT_PAID, &a);
}
