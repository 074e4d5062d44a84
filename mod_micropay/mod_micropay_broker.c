/*
 * mod_micropay_broker.c - the broker handler (SetHandler micropay-broker):
 * docs/PROTOCOL.md section 8, POST <location>/buy, /exchange, /certify,
 * /redeem.
 *
 * Order of work on a request:
 *   1. refuse plain HTTP (unless MicropayBrokerRequireTLS off), unknown
 *      endpoints (404) and methods other than POST (405);
 *   2. read the body (at most 1 MiB) and hash it;
 *   3. authenticate the account (MP1-HMAC, 8.2) in a read transaction;
 *   4. parse the JSON and check every member this endpoint knows;
 *      /redeem also verifies its items here, outside the store's single
 *      writer lock (a PayWord item can cost a million hashes);
 *   5. one write transaction: the account again, the idempotency record
 *      (a known request_id answers with the stored response), the effects,
 *      the new idempotency record, commit (fsync'ed by the store).
 * Only successful responses are stored: a refused request has no effect,
 * so a retry is simply decided again.
 *
 * Thread safety: libmp's keyed objects are not thread-safe. Each request
 * duplicates the templates it needs (issuers, account master) under
 * bc->lock and frees the copies with the request pool; certificate signing
 * uses the shared signer under bc->lock.
 *
 * Money: every sum goes through mp_amount_* (overflow and currency
 * checked); a balance never goes below zero; nothing is credited that was
 * not taken from somewhere (a PayWord redemption the customer cannot
 * cover is credited only as far as it is covered, and the rest reported).
 */
#include <string.h>
#include <jansson.h>
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"
#include "apr_atomic.h"
#include "apr_hash.h"
#include "apr_thread_mutex.h"
#if AP_MODULE_MAGIC_AT_LEAST(20120211, 104)
#include "http_ssl.h"
#endif
#include "mod_micropay.h"

APLOG_USE_MODULE(micropay);

#define IDEM_KEEP      (25 * 3600)     /* 24 h required, one more of margin */
#define AMOUNTS_MAX    16
#define REDEEM_MAX     1000
/* Words a /redeem request may hash, all its PayWord items together (about
 * half a second of SHA-256): each item is proven from the last word the
 * broker credited, so honest items cost the words they add; the budget
 * bounds what forged or repeated ones can make the broker do. */
#define REDEEM_HASH_BUDGET 2000000u
#define ID_LOW_MAX     ((uint64_t)1 << 48)
#define COMPACT_EVERY  3600
#define RELEASE_BATCH  1000           /* records per write transaction */
/* Housekeeping runs hourly in whichever request finds it due, in batches
 * of one write transaction each, until nothing is due or this much time
 * went on it; the next request in the hour goes on where it stopped. */
#define HOUSEKEEPING_USEC (500 * 1000)

typedef enum { EP_BUY, EP_EXCHANGE, EP_CERTIFY, EP_REDEEM } endpoint;

/* One redemption item, verified before the write transaction. */
typedef struct {
    mp_status st;                  /* MP_OK: apply it in the transaction */
    /* PayWord */
    uint8_t   commit_id[MP_HASH_LEN];
    uint32_t  last;
    uint8_t   w_last[MP_HASH_LEN];
    mp_amount unit;
    char      user[MP_NAME_MAX + 1];
    uint64_t  serial;              /* the certificate's: its reservation record */
    uint64_t  cert_expiry;
    mp_amount credit;
    /* Millicent */
    uint64_t  scrip_id;
    mp_amount value;
    uint64_t  expiry;              /* the scrip's */
    uint64_t  commit_expiry;       /* PayWord: the commitment's */
    uint64_t  keep_until;
} rd_item;

typedef struct {
    request_rec     *r;
    mpx_broker_conf *bc;
    endpoint         ep;
    const char      *ep_name;
    uint64_t         now;
    const char      *target;
    const char      *body;
    apr_size_t       body_len;
    uint8_t          body_hash[MP_HASH_LEN];
    uint8_t          idem_hash[MP_HASH_LEN];  /* H(endpoint || 0 || body hash) */
    mpb_account      acct;
    json_t          *json;
    const char      *request_id;
    /* failure */
    const char      *reason;
    const char      *message;
    /* success: the audit log line, written only once the effects committed,
     * so that the log never tells of an operation the store does not hold */
    const char      *outcome;
    const char      *shortfalls;   /* /redeem: words customers did not cover */
    /* per-request crypto copies */
    mp_mc_issuer    *issuer;                           /* broker scrip */
    mp_mc_issuer    *viss[MPX_BROKER_VENDORS_MAX];     /* vendor scrip */
    mp_mac          *scratch;
    mp_sha          *sha;
    /* parsed request */
    mp_amount        amount;                           /* buy: amount; certify: credit */
    int              vendor;                           /* exchange: index in bc->vendors */
    int              namounts;
    mp_amount        amounts[AMOUNTS_MAX];
    mp_mc_payment   *payment;
    mp_pubkey        key;
    uint64_t         expiry;
    int              npw, nmc;
    rd_item         *items;                            /* npw PayWord, then nmc Millicent */
    uint64_t         hashed;                           /* /redeem: words hashed so far */
    int              forged;                           /* /redeem: a forged item seen */
    int              changed;                          /* /redeem: a record advanced */
    apr_hash_t      *seen;                             /* /redeem: commitment ids so far */
    uint8_t         *rec;                              /* scratch: one decoded record */
    mp_mc_payment   *pay, *again;                      /* scratch: Millicent deposits */
} bx;

/* ---- small helpers ---------------------------------------------------------------- */

static int visible(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

/* The request target exactly as sent (path and query, not decoded): the
 * account signature covers these bytes, as does an /exchange req_sig. */
static const char *request_target(request_rec *r)
{
    const char *u = r->unparsed_uri ? r->unparsed_uri : "/", *p;

    if (u[0] != '/' && (p = strstr(u, "://")) != NULL) {
        p = strchr(p + 3, '/');
        u = p ? p : "/";
    }
    return apr_pstrmemdup(r->pool, u, strcspn(u, "#"));
}

static const char *b64(apr_pool_t *p, const uint8_t *bin, size_t len)
{
    size_t cap = mp_b64url_len(len) + 1;
    char *t = apr_palloc(p, cap);

    return mp_b64url_encode(bin, len, t, cap, NULL) == MP_OK ? t : NULL;
}

static const char *human(apr_pool_t *p, const mp_amount *a)
{
    char buf[MP_AMOUNT_STRMAX];

    return mp_amount_format(a, buf, sizeof buf) == MP_OK ? apr_pstrdup(p, buf) : NULL;
}

static const char *u64s(apr_pool_t *p, uint64_t v)
{
    return apr_psprintf(p, "%" APR_UINT64_T_FMT, (apr_uint64_t)v);
}

static uint64_t now_sec(void)
{
    return (uint64_t)apr_time_sec(apr_time_now());
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static int fail(bx *x, int status, const char *reason, const char *message)
{
    x->reason = reason;
    x->message = message;
    return status;
}

/* A libmp status as a request failure (8.2): client reasons are 400 or 422. */
static int fail_st(bx *x, mp_status st, const char *message)
{
    int status = mpx_http_status(st, MPX_PARTY_BROKER);

    if (status == HTTP_INTERNAL_SERVER_ERROR || st == MP_OK) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, x->r, "MP00121: broker %s: %s failed: %s",
                      x->bc->name, x->ep_name, mp_strerror(st));
        return fail(x, HTTP_INTERNAL_SERVER_ERROR, "internal", "internal error");
    }
    return fail(x, status, mp_reason(st), message ? message : mp_strerror(st));
}

static int store_failed(bx *x)
{
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, x->r, "MP00120: broker store %s error: %s",
                  x->bc->store_dir, mpb_errmsg());
    return fail(x, HTTP_INTERNAL_SERVER_ERROR, "internal", "broker store error");
}

/* ---- responses ------------------------------------------------------------------- */

static int send_body(request_rec *r, int status, const char *body, size_t len)
{
    r->status = status;
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_type(r, "application/json");
    ap_set_content_length(r, (apr_off_t)len);
    if (!r->header_only)
        ap_rwrite(body, (int)len, r);
    return OK;
}

/* Serialises obj (consumed) into pool memory; NULL on failure. */
static char *dump(apr_pool_t *p, json_t *obj, size_t *len)
{
    char *s = json_dumps(obj, JSON_ENSURE_ASCII), *out = NULL;

    json_decref(obj);
    if (s != NULL) {
        *len = strlen(s);
        out = apr_pstrmemdup(p, s, *len + 1);
        out[*len] = '\n';
        (*len)++;
        free(s);
    }
    return out;
}

static const char *quoted(apr_pool_t *p, const char *s)
{
    size_t n = strlen(s), i, o = 0;
    char *out = apr_palloc(p, 2 * n + 3);

    out[o++] = '"';
    for (i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            out[o++] = '\\';
        out[o++] = s[i];
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

static int send_error(request_rec *r, mpx_broker_conf *bc, int status, const char *reason,
                      const char *message)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "error", "request_failed", "reason", reason,
                          "message", message ? message : reason);
    size_t len = 0;
    char *body = o ? dump(r->pool, o, &len) : NULL;

    if (status == HTTP_UNAUTHORIZED)
        apr_table_setn(r->err_headers_out, "WWW-Authenticate",
                       apr_pstrcat(r->pool, "MP1-HMAC realm=",
                                   quoted(r->pool, bc && bc->name ? bc->name : "broker"), NULL));
    if (body == NULL) {
        body = apr_pstrdup(r->pool, "{\"error\": \"request_failed\", \"reason\": \"internal\"}\n");
        len = strlen(body);
    }
    if (status >= 500)
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "MP00131: broker %s: %d %s", r->uri,
                      status, reason);
    else
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "MP00130: broker request %s refused: %d "
                      "%s (%s)", r->uri, status, reason, message ? message : "-");
    return send_body(r, status, body, len);
}

/* ---- per-request crypto copies ---------------------------------------------------- */

static apr_status_t free_crypto(void *data)
{
    bx *x = data;
    int i;

    mp_mc_issuer_free(x->issuer);
    for (i = 0; i < MPX_BROKER_VENDORS_MAX; i++)
        mp_mc_issuer_free(x->viss[i]);
    mp_mac_free(x->scratch);
    mp_sha_free(x->sha);
    x->issuer = NULL;
    memset(x->viss, 0, sizeof x->viss);
    x->scratch = NULL;
    x->sha = NULL;
    return APR_SUCCESS;
}

static mp_status dup_issuer(bx *x, const mp_mc_issuer *tmpl, mp_mc_issuer **out)
{
    mp_status st;

    if (*out != NULL)
        return MP_OK;
    apr_thread_mutex_lock(x->bc->lock);
    st = mp_mc_issuer_dup(tmpl, out);
    apr_thread_mutex_unlock(x->bc->lock);
    return st;
}

static mp_status vendor_issuer(bx *x, int v, mp_mc_issuer **out)
{
    mp_status st = dup_issuer(x, x->bc->vendors[v].issuer, &x->viss[v]);

    *out = x->viss[v];
    return st;
}

static int find_vendor(const mpx_broker_conf *bc, const char *name)
{
    int i;

    for (i = 0; i < bc->nvendors; i++)
        if (strcmp(bc->vendors[i].name, name) == 0)
            return i;
    return -1;
}

/* ---- authentication (8.2) ----------------------------------------------------------- */

/* Authorization: MP1-HMAC account="..", ts="..", sig=".." (auth-params in
 * any order, token or quoted-string values, unknown ones ignored). */
static int parse_auth(apr_pool_t *p, const char *v, const char **account, uint64_t *ts,
                      uint8_t sig[MP_HASH_LEN])
{
    const char *name, *val;
    size_t nlen, vlen, sig_len = 0;
    int have_a = 0, have_t = 0, have_s = 0;
    char *vcopy;
    uint64_t t;
    size_t i;

    while (*v == ' ' || *v == '\t')
        v++;
    if (strncasecmp(v, "MP1-HMAC", 8) != 0 || (v[8] != ' ' && v[8] != '\t'))
        return 0;
    v += 8;
    for (;;) {
        while (*v == ' ' || *v == '\t')
            v++;
        name = v;
        while ((*v >= 'a' && *v <= 'z') || (*v >= 'A' && *v <= 'Z') || (*v >= '0' && *v <= '9')
               || *v == '-' || *v == '_')
            v++;
        nlen = (size_t)(v - name);
        while (*v == ' ' || *v == '\t')
            v++;
        if (nlen == 0 || *v++ != '=')
            return 0;
        while (*v == ' ' || *v == '\t')
            v++;
        if (*v == '"') {
            val = ++v;
            /* No value of ours needs escaping: a backslash is an error. */
            while (*v != '"' && *v != '\0' && *v != '\\')
                v++;
            if (*v != '"')
                return 0;
            vlen = (size_t)(v - val);
            v++;
        } else {
            val = v;
            while (*v != '\0' && *v != ',' && *v != ' ' && *v != '\t')
                v++;
            vlen = (size_t)(v - val);
        }
        vcopy = apr_pstrmemdup(p, val, vlen);
        if (nlen == 7 && strncasecmp(name, "account", 7) == 0) {
            if (have_a++ || vlen == 0 || vlen > MPB_ACCOUNT_MAX || !visible(val, vlen)
                || memchr(val, '"', vlen) != NULL || memchr(val, '\\', vlen) != NULL)
                return 0;
            *account = vcopy;
        } else if (nlen == 2 && strncasecmp(name, "ts", 2) == 0) {
            if (have_t++ || vlen == 0 || vlen > 20)
                return 0;
            for (t = 0, i = 0; i < vlen; i++) {
                if (val[i] < '0' || val[i] > '9' || t > (UINT64_MAX - 9) / 10)
                    return 0;
                t = t * 10 + (uint64_t)(val[i] - '0');
            }
            *ts = t;
        } else if (nlen == 3 && strncasecmp(name, "sig", 3) == 0) {
            if (have_s++ || mp_b64url_decode(vcopy, vlen, sig, MP_HASH_LEN, &sig_len) != MP_OK
                || sig_len != MP_HASH_LEN)
                return 0;
        }
        while (*v == ' ' || *v == '\t')
            v++;
        if (*v == '\0')
            break;
        if (*v++ != ',')
            return 0;
    }
    return have_a == 1 && have_t == 1 && have_s == 1;
}

static int authenticate(bx *x)
{
    request_rec *r = x->r;
    const char *hdr = apr_table_get(r->headers_in, "Authorization"), *account = NULL;
    uint8_t sig[MP_HASH_LEN], key[MP_SECRET_LEN];
    mp_mac *master = NULL;
    mpb_txn *t = NULL;
    uint64_t ts = 0;
    int found = 0, i, tried = 0;
    mp_status st, kst;

    if (hdr == NULL || !parse_auth(r->pool, hdr, &account, &ts, sig))
        return fail(x, HTTP_UNAUTHORIZED, "unauthorized",
                    "missing or malformed Authorization: MP1-HMAC account, ts, sig");
    if (mpb_begin(x->bc->store, 1, &t) != MP_OK)
        return store_failed(x);
    st = mpb_account_get(t, account, &x->acct, &found);
    mpb_abort(t);
    if (st != MP_OK)
        return store_failed(x);
    if (!found)
        return fail(x, HTTP_UNAUTHORIZED, "unknown-account", "no such account");
    x->now = now_sec();
    /* The series the key was wrapped under; an account made before the
     * store recorded it may be under any series still held. */
    st = MP_ERR_FORGED;
    for (i = 0; i < x->bc->naccount && st == MP_ERR_FORGED; i++) {
        if (x->acct.key_series >= 0 && x->bc->account[i].series != x->acct.key_series)
            continue;
        tried++;
        apr_thread_mutex_lock(x->bc->lock);
        kst = mp_mac_dup(x->bc->account[i].master, &master);
        apr_thread_mutex_unlock(x->bc->lock);
        if (kst == MP_OK)
            kst = mp_account_key_wrap(master, x->acct.id, x->acct.key_enc, key);
        mp_mac_free(master);
        master = NULL;
        if (kst != MP_OK) {
            mp_wipe(key, sizeof key);
            return fail_st(x, kst == MP_ERR_ARG ? MP_ERR_CRYPTO : kst, NULL);
        }
        st = mp_broker_sig_check(key, x->acct.id, "POST", x->target, strlen(x->target), ts,
                                 x->now, x->body_hash, sig, sizeof sig);
    }
    mp_wipe(key, sizeof key);
    if (tried == 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "MP00129: broker %s: the key of account %s "
                      "is wrapped under account secret series %d, which "
                      "MicropayBrokerSecretsFile no longer holds; put it back", x->bc->name,
                      x->acct.id, x->acct.key_series);
        return fail(x, HTTP_INTERNAL_SERVER_ERROR, "internal", "account key unavailable");
    }
    if (st == MP_ERR_EXPIRED)
        return fail(x, HTTP_UNAUTHORIZED, "unauthorized",
                    "timestamp more than 300 seconds from the broker's clock");
    if (st != MP_OK)
        return fail(x, HTTP_UNAUTHORIZED, "unauthorized", "wrong signature");
    return OK;
}

/* ---- JSON members --------------------------------------------------------------------- */

static int json_amount(bx *x, json_t *v, const char *what, mp_amount *out)
{
    if (!json_is_string(v) || mp_amount_parse(json_string_value(v), json_string_length(v), out)
        != MP_OK || out->units == 0)
        return fail(x, HTTP_BAD_REQUEST, "malformed",
                    apr_psprintf(x->r->pool, "%s: not an amount above zero such as \"1.00 USD\"",
                                 what));
    return OK;
}

/* A base64url record member, decoded into rec (MP_WIRE_MAX bytes). */
static int json_record(bx *x, json_t *v, const char *what, uint8_t *rec, size_t *len)
{
    if (!json_is_string(v) || mp_b64url_decode(json_string_value(v), json_string_length(v), rec,
                                                MP_WIRE_MAX, len) != MP_OK)
        return fail(x, HTTP_BAD_REQUEST, "malformed",
                    apr_psprintf(x->r->pool, "%s: not a base64url record", what));
    return OK;
}

static int request_id_ok(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > MPB_REQID_MAX)
        return 0;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
              || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
            return 0;
    return 1;
}

/* ---- store helpers (inside the write transaction) --------------------------------------- */

/* (series << 48) | the next value of counter name; MP_ERR_ARG when the
 * series has no ids left (rotate it). */
static mp_status next_id(bx *x, mpb_txn *t, const char *name, uint16_t series, uint64_t *out)
{
    uint64_t n = 0;
    mp_status st = mpb_counter_next(t, name, &n);

    if (st != MP_OK)
        return st;
    if (n == 0 || n >= ID_LOW_MAX) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, x->r, "MP00122: broker %s: counter %s has no "
                      "ids left; add a new series", x->bc->name, name);
        return MP_ERR_ARG;
    }
    *out = ((uint64_t)series << 48) | n;
    return MP_OK;
}

/* The customer id of this account at issuer (vendor "" = broker scrip):
 * assigned once per account and customer series. */
static mp_status customer_id(bx *x, mpb_txn *t, const char *vendor_key, const char *issuer,
                             uint16_t series, uint64_t *out)
{
    uint64_t id = 0;
    int found = 0;
    mp_status st = mpb_custid_get(t, x->acct.id, vendor_key, &id, &found);

    if (st != MP_OK)
        return st;
    if (found && MP_SERIES(id) == series) {
        *out = id;
        return MP_OK;
    }
    if ((st = next_id(x, t, apr_psprintf(x->r->pool, "customer:%s:%u", issuer, series), series,
                      &id)) != MP_OK
        || (st = mpb_custid_put(t, x->acct.id, vendor_key, id)) != MP_OK)
        return st;
    *out = id;
    return MP_OK;
}

static uint64_t redeem_deadline(const mpx_broker_conf *bc)
{
    return (uint64_t)(bc->redeem_deadline >= 0 ? bc->redeem_deadline : MPX_DEFAULT_REDEEM_DEADLINE);
}

/* Records scrip s, just minted for this account, as issued: in the
 * transaction that took what pays for it. Only what has such a record is
 * ever exchanged or credited (mpb_issued_use). use_until: the last moment
 * it can be used at the broker (exchange: its expiry; deposit: expiry +
 * the redemption deadline). */
static mp_status record_issued(bx *x, mpb_txn *t, const mp_scrip *s, mpb_scrip_kind kind,
                               uint64_t use_until)
{
    mpb_issued rec;

    memset(&rec, 0, sizeof rec);
    apr_cpystrn(rec.issuer, s->vendor, sizeof rec.issuer);
    apr_cpystrn(rec.account, x->acct.id, sizeof rec.account);
    rec.id = s->id;
    rec.kind = (uint8_t)kind;
    rec.value = s->value;
    rec.expiry = s->expiry;
    rec.use_until = use_until;
    rec.release_at = add_sat(use_until, MPB_MARGIN);
    return mpb_issued_put(t, &rec);
}

/* A store or id failure inside the transaction: 500. */
static int txn_failed(bx *x, mp_status st)
{
    if (st == MP_ERR_STORE)
        return store_failed(x);
    return fail_st(x, mp_status_class(st) == MP_CLASS_INTERNAL ? st : MP_ERR_ARG, NULL);
}

static const char *scrip_b64(bx *x, const mp_scrip *s)
{
    uint8_t enc[MP_WIRE_MAX];
    size_t len = 0;

    return mp_scrip_encode(s, enc, sizeof enc, &len) == MP_OK ? b64(x->r->pool, enc, len) : NULL;
}

/* ---- POST /buy (8.3) ----------------------------------------------------------------------- */

static int parse_buy(bx *x)
{
    return json_amount(x, json_object_get(x->json, "amount"), "amount", &x->amount);
}

static int apply_buy(bx *x, mpb_txn *t, json_t **resp)
{
    mpx_broker_conf *bc = x->bc;
    uint8_t csec[MP_HASH_LEN];
    uint64_t cid = 0, sid = 0;
    const char *scrip, *bal;
    mp_amount nb;
    mp_scrip s;
    mp_status st;

    if (strcmp(x->amount.cur, x->acct.balance.cur) != 0)
        return fail(x, HTTP_BAD_REQUEST, "malformed",
                    apr_psprintf(x->r->pool, "amount: the account is in %s", x->acct.balance.cur));
    if (mp_amount_sub(&x->acct.balance, &x->amount, &nb) != MP_OK)
        return fail(x, HTTP_CONFLICT, "overdraft", "the balance is below the amount");
    if ((st = dup_issuer(x, bc->issuer, &x->issuer)) != MP_OK
        || (st = customer_id(x, t, "", bc->name, bc->customer_series, &cid)) != MP_OK
        || (st = next_id(x, t, apr_psprintf(x->r->pool, "scrip:%s:%u", bc->name, bc->scrip_series),
                         bc->scrip_series, &sid)) != MP_OK)
        return txn_failed(x, st);
    if ((st = mp_mc_mint(x->issuer, &x->amount, sid, cid,
                         x->now + (uint64_t)(bc->scrip_lifetime >= 0 ? bc->scrip_lifetime
                                                                     : MPX_DEFAULT_SCRIP_LIFETIME),
                         NULL, &s)) != MP_OK
        || (st = mp_mc_customer_secret(x->issuer, cid, csec)) != MP_OK)
        return txn_failed(x, st == MP_ERR_UNKNOWN_SERIES ? MP_ERR_ARG : st);
    if ((st = record_issued(x, t, &s, MPB_SCRIP_BROKER, s.expiry)) != MP_OK) {
        mp_wipe(csec, sizeof csec);
        return txn_failed(x, st);
    }
    x->acct.balance = nb;
    if ((st = mpb_account_put(t, &x->acct)) != MP_OK)
        return txn_failed(x, st);
    scrip = scrip_b64(x, &s);
    bal = human(x->r->pool, &nb);
    *resp = json_pack("{s:s, s:s?, s:s, s:s?, s:s?}", "request_id", x->request_id,
                      "scrip", scrip, "customer_id", u64s(x->r->pool, cid),
                      "customer_secret", b64(x->r->pool, csec, sizeof csec), "balance", bal);
    mp_wipe(csec, sizeof csec);
    if (scrip == NULL || bal == NULL)
        return txn_failed(x, MP_ERR_ARG);
    x->outcome = apr_psprintf(x->r->pool, "MP00140: broker %s: account %s bought %s of scrip "
                              "%" APR_UINT64_T_FMT " (customer %" APR_UINT64_T_FMT ")", bc->name,
                              x->acct.id, human(x->r->pool, &x->amount), (apr_uint64_t)sid,
                              (apr_uint64_t)cid);
    return HTTP_OK;
}

/* ---- POST /exchange (8.4) -------------------------------------------------------------------- */

static int parse_exchange(bx *x)
{
    json_t *vendor = json_object_get(x->json, "vendor"), *amounts, *v;
    uint8_t *rec = apr_palloc(x->r->pool, MP_WIRE_MAX);
    size_t len = 0, i;
    mp_status st;
    int rc;

    if (!json_is_string(vendor))
        return fail(x, HTTP_BAD_REQUEST, "malformed", "vendor: a vendor name is required");
    amounts = json_object_get(x->json, "amounts");
    if (!json_is_array(amounts) || json_array_size(amounts) < 1
        || json_array_size(amounts) > AMOUNTS_MAX)
        return fail(x, HTTP_BAD_REQUEST, "malformed", "amounts: an array of 1 to 16 amounts");
    json_array_foreach(amounts, i, v) {
        if ((rc = json_amount(x, v, "amounts", &x->amounts[i])) != OK)
            return rc;
        if (strcmp(x->amounts[i].cur, x->amounts[0].cur) != 0)
            return fail(x, HTTP_BAD_REQUEST, "malformed", "amounts: all in one currency");
        if (i == 0)
            x->amount = x->amounts[0];
        else if (mp_amount_add(&x->amount, &x->amounts[i], &x->amount) != MP_OK)
            return fail(x, HTTP_BAD_REQUEST, "malformed", "amounts: the sum is too large");
    }
    x->namounts = (int)json_array_size(amounts);
    if ((rc = json_record(x, json_object_get(x->json, "payment"), "payment", rec, &len)) != OK)
        return rc;
    x->payment = apr_palloc(x->r->pool, sizeof *x->payment);
    if ((st = mp_mc_payment_decode(rec, len, x->payment)) != MP_OK)
        return fail_st(x, st, "payment: not an mc_payment record");
    /* A vendor this broker does not sell for. */
    if ((x->vendor = find_vendor(x->bc, json_string_value(vendor))) < 0)
        return fail(x, HTTP_UNPROCESSABLE_ENTITY, "wrong-vendor",
                    "this broker does not sell scrip of that vendor");
    return OK;
}

static int apply_exchange(bx *x, mpb_txn *t, json_t **resp)
{
    mpx_broker_conf *bc = x->bc;
    mpx_broker_vendor *v = &bc->vendors[x->vendor];
    request_rec *r = x->r;
    const char *host = apr_table_get(r->headers_in, "Host");
    uint64_t change_id = 0, cid = 0, sid = 0, expiry;
    uint8_t csec[MP_HASH_LEN], enc[MP_WIRE_MAX];
    mp_mc_reply *reply = apr_palloc(r->pool, sizeof *reply);
    mp_mc_issuer *viss = NULL;
    const char *text, *scrip_counter;
    mpb_issued used;
    json_t *list;
    mp_request req;
    size_t len = 0;
    mp_scrip s;
    mp_status st;
    int i;

    /* Scrip in the account's currency only: the change and the vendor scrip
     * are recorded as the account's, and their value must be able to go
     * back to its balance when they lapse. */
    if (strcmp(x->amount.cur, x->acct.balance.cur) != 0)
        return fail(x, HTTP_BAD_REQUEST, "malformed",
                    apr_psprintf(r->pool, "amounts: the account is in %s", x->acct.balance.cur));
    if (host == NULL || strlen(host) > MP_HOST_MAX || !visible(host, strlen(host)))
        host = r->hostname ? r->hostname : "";
    req.method = "POST";
    req.method_len = 4;
    req.host = host;
    req.host_len = strlen(host);
    req.target = x->target;
    req.target_len = strlen(x->target);
    if ((st = dup_issuer(x, bc->issuer, &x->issuer)) != MP_OK
        || (st = vendor_issuer(x, x->vendor, &viss)) != MP_OK
        || (st = next_id(x, t, apr_psprintf(r->pool, "scrip:%s:%u", bc->name, bc->scrip_series),
                         bc->scrip_series, &change_id)) != MP_OK)
        return txn_failed(x, st);
    /* The broker scrip is checked exactly as a vendor checks its own. */
    if ((st = mp_mc_accept(x->issuer, x->scratch, x->payment, &req, &x->amount, x->now,
                           change_id, reply)) != MP_OK) {
        if (st == MP_ERR_CURRENCY)
            st = MP_ERR_INSUFFICIENT;
        return fail_st(x, st, apr_psprintf(r->pool, "payment: %s", mp_strerror(st)));
    }
    /* The stamp says the broker's key made it; only the issued record says
     * the broker sold it and nobody has exchanged it yet. */
    if ((st = mpb_issued_use(t, bc->name, x->payment->scrip.id, x->now, &used)) != MP_OK) {
        if (st == MP_ERR_STORE)
            return txn_failed(x, st);
        return fail_st(x, st, st == MP_ERR_SPENT ? "payment: scrip already spent"
                              : st == MP_ERR_EXPIRED ? "payment: scrip expired"
                              : "payment: scrip this broker did not issue");
    }
    if (used.kind != MPB_SCRIP_BROKER || used.value.units != x->payment->scrip.value.units
        || strcmp(used.value.cur, x->payment->scrip.value.cur) != 0) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, "MP00127: broker %s: scrip %"
                      APR_UINT64_T_FMT " carries a valid stamp but not the value the broker "
                      "issued it with; refused", bc->name, (apr_uint64_t)x->payment->scrip.id);
        return fail_st(x, MP_ERR_FORGED, "payment: scrip this broker did not issue");
    }
    if (reply->has_change
        && (st = record_issued(x, t, &reply->change, MPB_SCRIP_BROKER, reply->change.expiry))
           != MP_OK)
        return txn_failed(x, st);
    if ((st = customer_id(x, t, v->name, v->name, v->customer_series, &cid)) != MP_OK)
        return txn_failed(x, st);
    list = json_array();
    scrip_counter = apr_psprintf(r->pool, "scrip:%s:%u", v->name, v->series);
    expiry = x->now + (uint64_t)(bc->scrip_lifetime >= 0 ? bc->scrip_lifetime
                                                         : MPX_DEFAULT_SCRIP_LIFETIME);
    for (i = 0; i < x->namounts; i++) {
        if ((st = next_id(x, t, scrip_counter, v->series, &sid)) != MP_OK
            || (st = mp_mc_mint(viss, &x->amounts[i], sid, cid, expiry, NULL, &s)) != MP_OK
            || (st = record_issued(x, t, &s, MPB_SCRIP_VENDOR,
                                   add_sat(expiry, redeem_deadline(bc)))) != MP_OK
            || (text = scrip_b64(x, &s)) == NULL) {
            json_decref(list);
            return txn_failed(x, st == MP_OK || st == MP_ERR_UNKNOWN_SERIES ? MP_ERR_ARG : st);
        }
        json_array_append_new(list, json_string(text));
    }
    if ((st = mp_mc_customer_secret(viss, cid, csec)) != MP_OK
        || (st = mp_mc_reply_encode(reply, enc, sizeof enc, &len)) != MP_OK) {
        json_decref(list);
        return txn_failed(x, st == MP_ERR_UNKNOWN_SERIES ? MP_ERR_ARG : st);
    }
    *resp = json_pack("{s:s, s:s, s:o, s:s, s:s?, s:s?}", "request_id", x->request_id,
                      "vendor", v->name, "scrip", list, "customer_id", u64s(r->pool, cid),
                      "customer_secret", b64(r->pool, csec, sizeof csec),
                      "change", b64(r->pool, enc, len));
    mp_wipe(csec, sizeof csec);
    x->outcome = apr_psprintf(r->pool, "MP00141: broker %s: account %s exchanged %s of broker "
                              "scrip %" APR_UINT64_T_FMT " for %d scrip of %s (customer %"
                              APR_UINT64_T_FMT ")", bc->name, x->acct.id,
                              human(r->pool, &x->amount), (apr_uint64_t)x->payment->scrip.id,
                              x->namounts, v->name, (apr_uint64_t)cid);
    return HTTP_OK;
}

/* ---- POST /certify (8.5) ---------------------------------------------------------------------- */

static int parse_certify(bx *x)
{
    json_t *key = json_object_get(x->json, "key"), *alg, *kv, *exp;
    apr_int64_t lifetime = x->bc->cert_lifetime >= 0 ? x->bc->cert_lifetime
                                                     : MPX_DEFAULT_CERT_LIFETIME;
    uint64_t longest = x->now + (uint64_t)lifetime;
    size_t len = 0;
    int rc;

    alg = json_object_get(key, "alg");
    kv = json_object_get(key, "key");
    if (!json_is_object(key) || !json_is_string(alg) || !json_is_string(kv))
        return fail(x, HTTP_BAD_REQUEST, "malformed",
                    "key: an object with alg (\"ed25519\" or \"rsa\") and key (base64url)");
    memset(&x->key, 0, sizeof x->key);
    if (strcmp(json_string_value(alg), "ed25519") == 0)
        x->key.alg = MP_KEY_ED25519;
    else if (strcmp(json_string_value(alg), "rsa") == 0)
        x->key.alg = MP_KEY_RSA;
    else
        return fail(x, HTTP_BAD_REQUEST, "malformed", "key.alg: \"ed25519\" or \"rsa\"");
    if (mp_b64url_decode(json_string_value(kv), json_string_length(kv), x->key.key,
                         sizeof x->key.key, &len) != MP_OK
        || len == 0 || (x->key.alg == MP_KEY_ED25519 && len != MP_ED25519_PUB_LEN))
        return fail(x, HTTP_BAD_REQUEST, "malformed", "key.key: base64url of 32 raw bytes "
                    "(ed25519) or of a DER SubjectPublicKeyInfo of at most 600 bytes (rsa)");
    x->key.len = (uint16_t)len;
    if (mp_pubkey_check(&x->key) != MP_OK)
        return fail(x, HTTP_BAD_REQUEST, "malformed",
                    "key: not a usable Ed25519 or RSA 2048-4096 bit public key");
    if ((rc = json_amount(x, json_object_get(x->json, "credit_limit"), "credit_limit",
                          &x->amount)) != OK)
        return rc;
    x->expiry = longest;
    if ((exp = json_object_get(x->json, "expiry")) != NULL && !json_is_null(exp)) {
        if (!json_is_integer(exp) || json_integer_value(exp) <= 0
            || (uint64_t)json_integer_value(exp) <= x->now)
            return fail(x, HTTP_BAD_REQUEST, "malformed",
                        "expiry: Unix seconds in the future, if given");
        if ((uint64_t)json_integer_value(exp) < longest)
            x->expiry = (uint64_t)json_integer_value(exp);
    }
    return OK;
}

static int apply_certify(bx *x, mpb_txn *t, json_t **resp)
{
    mpx_broker_conf *bc = x->bc;
    apr_int64_t deadline = bc->redeem_deadline >= 0 ? bc->redeem_deadline
                                                    : MPX_DEFAULT_REDEEM_DEADLINE;
    mp_pw_cert *c = apr_pcalloc(x->r->pool, sizeof *c);
    mpb_cert rec;
    mp_amount nb, nr;
    uint64_t serial = 0;
    const char *text;
    mp_status st;

    if (strcmp(x->amount.cur, x->acct.balance.cur) != 0)
        return fail(x, HTTP_BAD_REQUEST, "malformed",
                    apr_psprintf(x->r->pool, "credit_limit: the account is in %s",
                                 x->acct.balance.cur));
    /* The credit is reserved: it leaves the spendable balance. */
    if (mp_amount_sub(&x->acct.balance, &x->amount, &nb) != MP_OK
        || mp_amount_add(&x->acct.reserved, &x->amount, &nr) != MP_OK)
        return fail(x, HTTP_CONFLICT, "overdraft", "the balance is below the credit limit");
    if ((st = mpb_counter_next(t, "serial", &serial)) != MP_OK)
        return txn_failed(x, st);
    apr_cpystrn(c->broker, bc->name, sizeof c->broker);
    apr_cpystrn(c->user, x->acct.id, sizeof c->user);
    c->user_key = x->key;
    c->expiry = x->expiry;
    c->credit_limit = x->amount;
    c->serial = serial;
    apr_thread_mutex_lock(bc->lock);
    st = mp_pw_cert_sign(c, bc->signer);
    apr_thread_mutex_unlock(bc->lock);
    if (st != MP_OK)
        return txn_failed(x, st == MP_ERR_ARG ? MP_ERR_CRYPTO : st);
    x->acct.balance = nb;
    x->acct.reserved = nr;
    if ((st = mpb_account_put(t, &x->acct)) != MP_OK)
        return txn_failed(x, st);
    /* What was reserved, so that the unused rest can go back to the
     * balance once no redemption can come any more. */
    memset(&rec, 0, sizeof rec);
    rec.serial = serial;
    apr_cpystrn(rec.account, x->acct.id, sizeof rec.account);
    rec.credit = x->amount;
    mp_amount_set(&rec.redeemed, 0, x->amount.cur);
    rec.expiry = x->expiry;
    /* The margin as for issued scrip: a clock step back must not return the
     * credit while a redemption can still be decided. */
    rec.release_at = add_sat(add_sat(x->expiry, (uint64_t)deadline), MPB_MARGIN);
    if ((st = mpb_cert_put(t, &rec)) != MP_OK)
        return txn_failed(x, st);
    if ((text = b64(x->r->pool, c->enc, c->enc_len)) == NULL)
        return txn_failed(x, MP_ERR_ARG);
    *resp = json_pack("{s:s, s:s, s:s, s:s, s:I}", "request_id", x->request_id, "cert", text,
                      "user", x->acct.id, "serial", u64s(x->r->pool, serial),
                      "expires", (json_int_t)x->expiry);
    x->outcome = apr_psprintf(x->r->pool, "MP00142: broker %s: account %s certified, serial %"
                              APR_UINT64_T_FMT ", credit %s reserved", bc->name, x->acct.id,
                              (apr_uint64_t)serial, human(x->r->pool, &x->amount));
    return HTTP_OK;
}

/* ---- POST /redeem (8.6) ------------------------------------------------------------------------ */

static void item_fail(rd_item *it, mp_status st)
{
    it->st = st == MP_ERR_CURRENCY ? MP_ERR_MALFORMED : st;
}

/* A PayWord redemption record, verified without the write lock: the
 * commitment's signatures, then the chain from the last word credited
 * (read in t), within the request's hashing budget. */
static void verify_payword(bx *x, mpb_txn *t, json_t *v, mp_pw_redeem *rd, rd_item *it)
{
    uint8_t w_prev[MP_HASH_LEN];
    uint32_t prev = 0;
    int have = 0;
    apr_int64_t deadline = x->bc->redeem_deadline >= 0 ? x->bc->redeem_deadline
                                                       : MPX_DEFAULT_REDEEM_DEADLINE;
    size_t len = 0;
    mp_amount value;
    mp_status st;

    if (mp_b64url_decode(json_string_value(v), json_string_length(v), x->rec, MP_WIRE_MAX, &len)
        != MP_OK || mp_pw_redeem_decode(x->rec, len, rd) != MP_OK) {
        item_fail(it, MP_ERR_MALFORMED);
        return;
    }
    if (strcmp(rd->commit.vendor, x->acct.vendor) != 0) {
        item_fail(it, MP_ERR_WRONG_VENDOR);
        return;
    }
    /* The deadline before the hash chain, which can cost a million hashes. */
    if (x->now >= add_sat(rd->commit.expiry, (uint64_t)deadline)) {
        item_fail(it, MP_ERR_EXPIRED);
        return;
    }
    /* What was credited is remembered for the longest deadline the broker
     * can be configured with, not the current one: a deadline raised later
     * must not revive words whose record compaction already dropped. */
    it->keep_until = add_sat(add_sat(rd->commit.expiry, (uint64_t)MPX_REDEEM_DEADLINE_MAX),
                             MPB_MARGIN);
    it->commit_expiry = rd->commit.expiry;
    /* One item per commitment and request: a second adds nothing but work. */
    if (apr_hash_get(x->seen, rd->commit.id, MP_HASH_LEN) != NULL) {
        item_fail(it, MP_ERR_MALFORMED);
        return;
    }
    apr_hash_set(x->seen, apr_pmemdup(x->r->pool, rd->commit.id, MP_HASH_LEN), MP_HASH_LEN, "");
    if (mpb_redeemed_get(t, rd->commit.id, &prev, w_prev, &have) != MP_OK) {
        item_fail(it, MP_ERR_STORE);
        return;
    }
    memcpy(it->commit_id, rd->commit.id, MP_HASH_LEN);
    it->last = rd->last;
    memcpy(it->w_last, rd->w_last, MP_HASH_LEN);
    it->unit = rd->commit.unit;
    if (rd->last <= prev) {
        /* Credited before (PROTOCOL.md 8.6: ok, 0.00): these exact bytes,
         * the commitment id being their hash, were proven then. */
        it->st = MP_OK;
        return;
    }
    if (!have)
        prev = 0;                    /* a record from before words were kept: from w0 */
    /* An honest vendor's words always verify: after a forged item the
     * request hashes no more. (A pause per commitment across requests
     * would let one forged item hold up the honest words of the same
     * commitment; what a vendor account can make the broker hash is
     * bounded per request instead.) */
    if (x->forged || x->hashed + (rd->last - prev) > REDEEM_HASH_BUDGET) {
        item_fail(it, MP_ERR_EXHAUSTED);
        return;
    }
    x->hashed += rd->last - prev;
    /* Our own certificates only: the trust list holds this broker's keys. */
    if ((st = mp_pw_redeem_verify_from(x->sha, rd, &x->bc->self_trust, prev,
                                       prev > 0 ? w_prev : NULL, &value)) != MP_OK) {
        if (st == MP_ERR_FORGED)
            x->forged = 1;
        item_fail(it, st == MP_ERR_KEY ? MP_ERR_MALFORMED : st);
        return;
    }
    it->unit = rd->commit.unit;
    apr_cpystrn(it->user, rd->commit.cert.user, sizeof it->user);
    it->serial = rd->commit.cert.serial;
    it->cert_expiry = rd->commit.cert.expiry;
    it->credit = rd->commit.cert.credit_limit;
    it->st = MP_OK;
}

static int req_field(json_t *o, const char *name, size_t max, int slash, const char **out,
                     size_t *len)
{
    json_t *v = json_object_get(o, name);
    const char *s;

    if (!json_is_string(v))
        return 0;
    s = json_string_value(v);
    *len = json_string_length(v);
    *out = s;
    return *len >= 1 && *len <= max && visible(s, *len) && (!slash || s[0] == '/');
}

/* A Millicent deposit: scrip this broker minted for the account's vendor,
 * spent by its customer on the request given. */
static void verify_millicent(bx *x, json_t *o, rd_item *it)
{
    apr_int64_t deadline = x->bc->redeem_deadline >= 0 ? x->bc->redeem_deadline
                                                       : MPX_DEFAULT_REDEEM_DEADLINE;
    mp_mc_payment *p = x->pay, *again = x->again;
    uint8_t csec[MP_HASH_LEN];
    mp_mc_issuer *viss = NULL;
    mp_request req;
    size_t len = 0;
    uint64_t at;
    mp_status st;
    int v;

    if (json_record(x, json_object_get(o, "payment"), "payment", x->rec, &len) != OK
        || mp_mc_payment_decode(x->rec, len, p) != MP_OK
        || !req_field(o, "method", MP_METHOD_MAX, 0, &req.method, &req.method_len)
        || !req_field(o, "host", MP_HOST_MAX, 0, &req.host, &req.host_len)
        || !req_field(o, "target", MP_TARGET_MAX, 1, &req.target, &req.target_len)) {
        x->reason = x->message = NULL;      /* an item failure, not the request's */
        item_fail(it, MP_ERR_MALFORMED);
        return;
    }
    /* One item per scrip and request, as per commitment: repeats only add
     * work and answer bytes. */
    {
        char *key = apr_psprintf(x->r->pool, "mc %s %" APR_UINT64_T_FMT, p->scrip.vendor,
                                 (apr_uint64_t)p->scrip.id);

        if (apr_hash_get(x->seen, key, APR_HASH_KEY_STRING) != NULL) {
            item_fail(it, MP_ERR_MALFORMED);
            return;
        }
        apr_hash_set(x->seen, key, APR_HASH_KEY_STRING, "");
    }
    /* Only scrip stamped in a series delegated to us is our liability: the
     * vendor's issuer here holds exactly those series (the newest and the
     * older ones kept for deposits), so anything else, the vendor's own
     * change included, fails its stamp check below as forged. */
    if ((v = find_vendor(x->bc, p->scrip.vendor)) < 0) {
        item_fail(it, MP_ERR_FORGED);
        return;
    }
    if ((st = vendor_issuer(x, v, &viss)) != MP_OK) {
        item_fail(it, st);
        return;
    }
    /* Deposits are accepted after expiry, until the deadline: the stamp is
     * checked at a time inside the scrip's validity, the deadline here. */
    at = x->now < p->scrip.expiry ? x->now : p->scrip.expiry - 1;
    if ((st = mp_mc_check_scrip(viss, &p->scrip, at)) != MP_OK) {
        item_fail(it, st);
        return;
    }
    if (strcmp(p->scrip.vendor, x->acct.vendor) != 0) {
        item_fail(it, MP_ERR_WRONG_VENDOR);
        return;
    }
    if (x->now >= add_sat(p->scrip.expiry, (uint64_t)deadline)) {
        item_fail(it, MP_ERR_EXPIRED);
        return;
    }
    /* req_sig: only the holder of customer_secret can have made it. */
    if ((st = mp_mc_customer_secret(viss, p->scrip.customer_id, csec)) != MP_OK
        || (st = mp_mc_pay(x->scratch, &p->scrip, csec, &req, &p->price, again)) != MP_OK) {
        mp_wipe(csec, sizeof csec);
        item_fail(it, st == MP_ERR_ARG ? MP_ERR_MALFORMED : st);
        return;
    }
    mp_wipe(csec, sizeof csec);
    if (!mp_ct_equal(again->req_sig, MP_HASH_LEN, p->req_sig, MP_HASH_LEN)) {
        item_fail(it, MP_ERR_FORGED);
        return;
    }
    it->scrip_id = p->scrip.id;
    it->value = p->scrip.value;
    it->expiry = p->scrip.expiry;
    it->st = MP_OK;
}

static int parse_redeem(bx *x)
{
    json_t *pw = json_object_get(x->json, "payword"), *mc = json_object_get(x->json, "millicent");
    json_t *v;
    mp_pw_redeem *rd;
    mpb_txn *t = NULL;
    size_t i;

    if ((pw != NULL && !json_is_array(pw)) || (mc != NULL && !json_is_array(mc)))
        return fail(x, HTTP_BAD_REQUEST, "malformed", "payword and millicent: arrays");
    x->npw = pw ? (int)json_array_size(pw) : 0;
    x->nmc = mc ? (int)json_array_size(mc) : 0;
    if (x->npw + x->nmc > REDEEM_MAX)
        return fail(x, HTTP_BAD_REQUEST, "malformed", "at most 1000 items in one request");
    json_array_foreach(pw, i, v)
        if (!json_is_string(v))
            return fail(x, HTTP_BAD_REQUEST, "malformed", "payword: an array of redeem records");
    json_array_foreach(mc, i, v)
        if (!json_is_object(v))
            return fail(x, HTTP_BAD_REQUEST, "malformed",
                        "millicent: an array of {payment, method, host, target}");
    x->items = apr_pcalloc(x->r->pool, sizeof *x->items * (size_t)(x->npw + x->nmc + 1));
    rd = apr_palloc(x->r->pool, sizeof *rd);
    x->rec = apr_palloc(x->r->pool, MP_WIRE_MAX);
    x->pay = apr_palloc(x->r->pool, sizeof *x->pay);
    x->again = apr_palloc(x->r->pool, sizeof *x->again);
    x->seen = apr_hash_make(x->r->pool);
    if (x->npw > 0) {
        if (mpb_begin(x->bc->store, 1, &t) != MP_OK)
            return store_failed(x);
        json_array_foreach(pw, i, v)
            verify_payword(x, t, v, rd, &x->items[i]);
        mpb_abort(t);
        for (i = 0; i < (size_t)x->npw; i++)
            if (x->items[i].st == MP_ERR_STORE)
                return store_failed(x);
    }
    json_array_foreach(mc, i, v)
        verify_millicent(x, v, &x->items[x->npw + (int)i]);
    return OK;
}

/* Moves up to want from the customer who was certified to the vendor:
 * first from what the certificate reserved and has not yet given (its
 * record: credit - redeemed, nothing once released), then from the
 * balance; *moved gets what was covered. A certificate without a record
 * of its own (issued before records existed) draws on all of reserved. */
static mp_status pay_from_customer(bx *x, mpb_txn *t, const rd_item *it, const mp_amount *want,
                                   mp_amount *moved)
{
    mpb_account *c = apr_palloc(x->r->pool, sizeof *c);
    mpb_cert *rec = apr_palloc(x->r->pool, sizeof *rec);
    mp_amount take, rest, avail;
    int found = 0, have = 0;
    mp_status st;

    mp_amount_set(moved, 0, want->cur);
    if ((st = mpb_account_get(t, it->user, c, &found)) != MP_OK)
        return st;
    if (!found || c->kind != MPB_CUSTOMER || strcmp(c->id, x->acct.id) == 0
        || strcmp(c->balance.cur, want->cur) != 0)
        return MP_OK;                 /* nothing to take: all of it is shortfall */
    if ((st = mpb_cert_get(t, it->serial, rec, &have)) != MP_OK)
        return st;
    /* The serial is signed by us, so only a store that was made again under
     * the same key can hold another certificate's record for it. */
    if (have && (strcmp(rec->account, c->id) != 0 || rec->expiry != it->cert_expiry
                 || strcmp(rec->credit.cur, it->credit.cur) != 0
                 || strcmp(rec->credit.cur, c->reserved.cur) != 0
                 || rec->credit.units != it->credit.units)) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, x->r, "MP00126: broker %s: the record of "
                      "certificate %" APR_UINT64_T_FMT " is another certificate's; drawing on "
                      "all the reserved credit of %s", x->bc->name, (apr_uint64_t)it->serial,
                      c->id);
        have = 0;
    }
    avail = c->reserved;
    if (have) {
        if (rec->released)
            avail.units = 0;          /* given back: a late word is paid from the balance */
        else if ((st = mp_amount_sub(&rec->credit, &rec->redeemed, &avail)) != MP_OK)
            return st;
        /* lower only if certificates without records drew on it */
        if (avail.units > c->reserved.units)
            avail = c->reserved;
    }
    rest = *want;
    take = avail.units < rest.units ? avail : rest;
    if ((st = mp_amount_sub(&c->reserved, &take, &c->reserved)) != MP_OK
        || (st = mp_amount_sub(&rest, &take, &rest)) != MP_OK
        || (st = mp_amount_add(moved, &take, moved)) != MP_OK)
        return st;
    if (have && take.units > 0) {
        if ((st = mp_amount_add(&rec->redeemed, &take, &rec->redeemed)) != MP_OK
            || (st = mpb_cert_put(t, rec)) != MP_OK)
            return st;
    }
    take = c->balance.units < rest.units ? c->balance : rest;
    if ((st = mp_amount_sub(&c->balance, &take, &c->balance)) != MP_OK
        || (st = mp_amount_add(moved, &take, moved)) != MP_OK)
        return st;
    return mpb_account_put(t, c);
}

/* Credits a Millicent deposit: only scrip whose issued record says the
 * broker sold it, for this vendor, at this value, and nobody deposited it
 * yet. The stamp checked before proves nothing here: the vendor holds the
 * delegated series secret and can stamp whatever it likes. *credited: the
 * recorded value, or 0 for a repeated deposit (MP_OK, as the spec says). */
static mp_status deposit(bx *x, mpb_txn *t, const rd_item *it, mp_amount *credited)
{
    mpb_issued rec;
    int found = 0;
    mp_status st;

    if ((st = mpb_issued_get(t, x->acct.vendor, it->scrip_id, &rec, &found)) != MP_OK)
        return st;
    if (!found || rec.kind != MPB_SCRIP_VENDOR || rec.value.units != it->value.units
        || strcmp(rec.value.cur, it->value.cur) != 0 || rec.expiry != it->expiry) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, x->r, "MP00128: broker %s: vendor account %s "
                      "deposited scrip %" APR_UINT64_T_FMT " that the broker did not issue as "
                      "stamped; refused", x->bc->name, x->acct.id, (apr_uint64_t)it->scrip_id);
        return MP_ERR_FORGED;
    }
    st = mpb_issued_use(t, x->acct.vendor, it->scrip_id, x->now, &rec);
    if (st == MP_ERR_SPENT)
        return MP_OK;                        /* deposited before: ok, nothing more */
    if (st == MP_OK) {
        *credited = rec.value;
        x->changed = 1;
    }
    return st;
}

static int apply_redeem(bx *x, mpb_txn *t, json_t **resp)
{
    request_rec *r = x->r;
    json_t *results = json_array(), *res;
    mp_amount total, credited, want, shortfall, nb;
    const char *kind, *status;
    uint32_t prev;
    rd_item *it;
    mp_status st;
    int i, idx, failed = 0, shorts = 0;

    mp_amount_set(&total, 0, x->acct.balance.cur);
    for (i = 0; i < x->npw + x->nmc; i++) {
        it = &x->items[i];
        kind = i < x->npw ? "payword" : "millicent";
        idx = i < x->npw ? i : i - x->npw;
        mp_amount_set(&credited, 0, x->acct.balance.cur);
        mp_amount_set(&shortfall, 0, x->acct.balance.cur);
        st = it->st;
        if (st == MP_OK && strcmp(i < x->npw ? it->unit.cur : it->value.cur,
                                  x->acct.balance.cur) != 0)
            st = MP_ERR_INSUFFICIENT;        /* not in the vendor account's currency */
        /* The deadline again at the transaction's clock: the check before
         * it only spared the hashing. */
        if (st == MP_OK && i < x->npw
            && x->now >= add_sat(it->commit_expiry, redeem_deadline(x->bc)))
            st = MP_ERR_EXPIRED;
        if (st == MP_OK && i < x->npw) {
            prev = 0;
            if ((st = mpb_redeemed_get(t, it->commit_id, &prev, NULL, NULL)) != MP_OK)
                goto store;
            if (it->last > prev) {
                if ((st = mp_amount_mul(&it->unit, it->last - prev, &want)) != MP_OK
                    || (st = pay_from_customer(x, t, it, &want, &credited)) != MP_OK
                    || (st = mp_amount_sub(&want, &credited, &shortfall)) != MP_OK
                    || (st = mpb_redeemed_put(t, it->commit_id, it->last, it->w_last,
                                              it->keep_until)) != MP_OK)
                    goto store;
                x->changed = 1;
                if (shortfall.units > 0) {
                    shorts++;
                    x->shortfalls = apr_psprintf(r->pool, "%s%s%s %s", x->shortfalls ?
                                                 x->shortfalls : "", x->shortfalls ? ", " : "",
                                                 it->user, human(r->pool, &shortfall));
                }
            }
        } else if (st == MP_OK) {
            if ((st = deposit(x, t, it, &credited)) == MP_ERR_STORE)
                goto store;
        }
        if (st == MP_OK && ((st = mp_amount_add(&x->acct.balance, &credited, &nb)) != MP_OK
                            || (st = mp_amount_add(&total, &credited, &total)) != MP_OK)) {
            json_decref(results);
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "MP00123: broker %s: crediting vendor "
                          "account %s would overflow", x->bc->name, x->acct.id);
            return fail(x, HTTP_INTERNAL_SERVER_ERROR, "internal", "balance out of range");
        }
        if (st == MP_OK)
            x->acct.balance = nb;
        else
            failed++;
        status = st == MP_OK ? "ok" : mp_reason(st);
        res = json_pack("{s:s, s:i, s:s, s:s?}", "kind", kind, "index", idx, "status", status,
                        "credited", human(r->pool, &credited));
        if (res != NULL && shortfall.units > 0)
            json_object_set_new(res, "shortfall", json_string(human(r->pool, &shortfall)));
        if (res == NULL || json_array_append_new(results, res) != 0) {
            json_decref(results);
            return txn_failed(x, MP_ERR_NOMEM);
        }
    }
    if ((st = mpb_account_put(t, &x->acct)) != MP_OK
        || (total.units > 0 && (st = mpb_total_add(t, MPB_TOTAL_REDEEMED, &total)) != MP_OK))
        goto store;
    *resp = json_pack("{s:s, s:o, s:s?, s:s?}", "request_id", x->request_id, "results", results,
                      "credited", human(r->pool, &total), "balance", human(r->pool, &x->acct.balance));
    x->outcome = apr_psprintf(r->pool, "MP00143: broker %s: vendor account %s redeemed %d "
                              "item(s), %d refused, %d short: %s credited", x->bc->name,
                              x->acct.id, x->npw + x->nmc, failed, shorts,
                              human(r->pool, &total));
    return HTTP_OK;
store:
    json_decref(results);
    return txn_failed(x, st);
}

/* ---- stored responses, sealed ------------------------------------------------------------------------ */

/* A stored response holds spendable scrip and customer secrets: in the
 * store it is u16 account series || mp_seal(key of that series, aad =
 * account NUL request_id, u16 outcome length || outcome || body), so a
 * copy of the store alone is worth nothing, and a record moved to another
 * request does not open. The outcome is the audit log line: a child killed
 * between the commit and its log line leaves the line to the retry that
 * gets this answer, so the log names every committed request that any
 * client retried. */
static const uint8_t *stored_aad(bx *x, size_t *len)
{
    size_t a = strlen(x->acct.id), q = strlen(x->request_id);
    uint8_t *p = apr_palloc(x->r->pool, a + 1 + q);

    memcpy(p, x->acct.id, a);
    p[a] = 0;
    memcpy(p + a + 1, x->request_id, q);
    *len = a + 1 + q;
    return p;
}

static mp_status seal_response(bx *x, const char *body, size_t len, char **out, size_t *out_len)
{
    size_t alen = 0, n = 0, olen = x->outcome ? strlen(x->outcome) : 0, plen;
    const uint8_t *aad = stored_aad(x, &alen);
    uint8_t *plain, *buf;
    mp_status st;

    if (olen > 0xffff)
        olen = 0xffff;
    plen = 2 + olen + len;
    plain = apr_palloc(x->r->pool, plen);
    buf = apr_palloc(x->r->pool, 2 + plen + MP_SEAL_OVERHEAD);
    plain[0] = (uint8_t)(olen >> 8);
    plain[1] = (uint8_t)olen;
    memcpy(plain + 2, x->outcome ? x->outcome : "", olen);
    memcpy(plain + 2 + olen, body, len);
    buf[0] = (uint8_t)(x->bc->account[0].series >> 8);
    buf[1] = (uint8_t)x->bc->account[0].series;
    st = mp_seal(x->bc->account[0].seal_key, aad, alen, plain, plen, buf + 2,
                 plen + MP_SEAL_OVERHEAD, &n);
    mp_wipe(plain, plen);
    if (st != MP_OK)
        return st;
    *out = (char *)buf;
    *out_len = 2 + n;
    return MP_OK;
}

/* MP_ERR_FORGED for a record that does not open (damaged, or sealed under
 * a series no longer held: say which). */
static mp_status open_response(bx *x, const char *stored, size_t len, char **body,
                               size_t *body_len, const char **outcome)
{
    const uint8_t *p = (const uint8_t *)stored;
    size_t alen = 0, n = 0;
    const uint8_t *aad;
    uint16_t series;
    uint8_t *out;
    size_t olen;
    int i;

    if (len < 2 + MP_SEAL_OVERHEAD)
        return MP_ERR_FORGED;
    series = (uint16_t)(p[0] << 8 | p[1]);
    for (i = 0; i < x->bc->naccount; i++)
        if (x->bc->account[i].series == series)
            break;
    if (i == x->bc->naccount) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, x->r, "MP00129: broker %s: a stored response "
                      "is sealed under account secret series %u, which MicropayBrokerSecretsFile "
                      "no longer holds; put it back", x->bc->name, series);
        return MP_ERR_FORGED;
    }
    aad = stored_aad(x, &alen);
    out = apr_palloc(x->r->pool, len - 2 - MP_SEAL_OVERHEAD + 1);
    if (mp_unseal(x->bc->account[i].seal_key, aad, alen, p + 2, len - 2, out,
                  len - 2 - MP_SEAL_OVERHEAD, &n) != MP_OK)
        return MP_ERR_FORGED;
    olen = n >= 2 ? (size_t)(out[0] << 8 | out[1]) : 0;
    if (n < 2 || olen > n - 2)
        return MP_ERR_FORGED;
    out[n] = '\0';
    *outcome = olen ? apr_pstrmemdup(x->r->pool, (const char *)out + 2, olen) : NULL;
    *body = (char *)out + 2 + olen;
    *body_len = n - 2 - olen;
    return MP_OK;
}

/* A retry: the first answer again, with no new effect. Takes stored
 * (malloc'ed by the store) and wipes it. */
static int answer_again(bx *x, char *stored, size_t stored_len, int status)
{
    request_rec *r = x->r;
    const char *outcome = NULL;
    char *body = NULL;
    size_t len = 0;
    mp_status st = open_response(x, stored, stored_len, &body, &len, &outcome);

    mp_wipe(stored, stored_len);
    free(stored);
    if (st != MP_OK) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "MP00120: broker store %s: the stored "
                      "response to request %s of account %s does not open (damaged, or "
                      "sealed under a secret no longer held)", x->bc->store_dir,
                      x->request_id, x->acct.id);
        return fail(x, HTTP_INTERNAL_SERVER_ERROR, "internal", "broker store error");
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "MP00132: broker %s: %s request %s of account "
                  "%s answered again from the store", x->bc->name, x->ep_name, x->request_id,
                  x->acct.id);
    /* The outcome again: its first line may have died with a killed child. */
    if (outcome != NULL)
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "%s; logged again for a retry (request %s)",
                      outcome, x->request_id);
    send_body(r, status, body, len);
    return OK;
}

/* The idempotency lookup (PROTOCOL.md 8.2 step 8), before the endpoint's
 * members are judged: a retry gets its first answer even when a check of
 * its members would now say otherwise (a /certify expiry since passed, a
 * vendor no longer sold). DECLINED when there is no stored answer; the
 * write transaction looks again, for a twin request racing this one. */
static int lookup_first(bx *x)
{
    mpb_txn *t = NULL;
    char *stored = NULL;
    size_t stored_len = 0;
    int found = 0, status = 0;
    mp_status st;

    if (mpb_begin(x->bc->store, 1, &t) != MP_OK)
        return store_failed(x);
    st = mpb_idem_get(t, x->acct.id, x->request_id, x->idem_hash, &found, &status, &stored,
                      &stored_len);
    mpb_abort(t);
    if (st == MP_ERR_MALFORMED)
        return fail(x, HTTP_CONFLICT, "malformed",
                    "request_id already used with another body or at another endpoint");
    if (st != MP_OK)
        return store_failed(x);
    return found ? answer_again(x, stored, stored_len, status) : DECLINED;
}

/* ---- the transaction ------------------------------------------------------------------------------ */


/* The credit of certificates past expiry + redemption deadline, which no
 * vendor can redeem any more, goes back to the customers' balances.
 * 1 when the time ran out with more due. */
static int release_credit(bx *x, apr_time_t until)
{
    mpb_release *out = apr_palloc(x->r->pool, sizeof *out * RELEASE_BATCH);
    size_t i, n = 0;

    do {
        if (mpb_cert_release(x->bc->store, now_sec(), out, RELEASE_BATCH, &n) != MP_OK) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, x->r, "MP00124: broker store: "
                          "releasing expired PayWord credit failed: %s", mpb_errmsg());
            return 0;
        }
        for (i = 0; i < n; i++)
            ap_log_rerror(APLOG_MARK, out[i].uncovered.units > 0 ? APLOG_WARNING : APLOG_INFO,
                          0, x->r, "MP00145: broker %s: certificate %" APR_UINT64_T_FMT " of "
                          "account %s is past its redemption deadline: %s of unused credit "
                          "returned to the balance%s%s", x->bc->name,
                          (apr_uint64_t)out[i].serial, out[i].account,
                          human(x->r->pool, &out[i].amount),
                          out[i].uncovered.units > 0 ? "; not reserved any more, so not "
                                                       "returned: " : "",
                          out[i].uncovered.units > 0 ? human(x->r->pool, &out[i].uncovered)
                                                     : "");
    } while (n == RELEASE_BATCH && apr_time_now() < until);
    return n == RELEASE_BATCH;
}

/* Scrip records past their last use plus the margin go; the value of
 * scrip never used goes back to the account that bought it (a lost /buy
 * answer, scrip a wallet forgot, vendor scrip no vendor deposited in time).
 * 1 when the time ran out with more due. */
static int release_issued(bx *x, apr_time_t until)
{
    mpb_lapse *out = apr_palloc(x->r->pool, sizeof *out * RELEASE_BATCH);
    size_t i, n = 0;
    int more = 0;

    do {
        if (mpb_issued_release(x->bc->store, now_sec(), out, RELEASE_BATCH, &n, &more)
            != MP_OK) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, x->r, "MP00124: broker store: "
                          "releasing lapsed scrip records failed: %s", mpb_errmsg());
            return 0;
        }
        for (i = 0; i < n; i++)
            if (out[i].returned.units > 0)
                ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, x->r, "MP00146: broker %s: %s scrip "
                              "of account %s lapsed unused: %s returned to the balance",
                              x->bc->name, out[i].kind == MPB_SCRIP_BROKER ? "broker" : "vendor",
                              out[i].account, human(x->r->pool, &out[i].returned));
    } while (more && apr_time_now() < until);
    return more;
}

/* Hourly, or again at once while the last run left work: compaction of
 * expired records, then the releases, within HOUSEKEEPING_USEC. */
static void maybe_compact(bx *x)
{
    mpx_broker_conf *bc = x->bc;
    apr_uint32_t last = apr_atomic_read32(&bc->last_compact), now = (apr_uint32_t)now_sec();
    apr_time_t until = apr_time_now() + HOUSEKEEPING_USEC;
    size_t removed = 0, total = 0;
    int more = 0;

    if ((now - last < COMPACT_EVERY && !(apr_atomic_read32(&bc->more_work) && now != last))
        || apr_atomic_cas32(&bc->last_compact, now, last) != last)
        return;
    do {
        if (mpb_compact(x->bc->store, now_sec(), RELEASE_BATCH, &removed) != MP_OK) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, x->r, "MP00124: broker store "
                          "compaction failed: %s", mpb_errmsg());
            break;
        }
        total += removed;
    } while (removed == RELEASE_BATCH && apr_time_now() < until);
    more = removed == RELEASE_BATCH;
    if (total > 0)
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, x->r, "MP00125: broker store compaction "
                      "removed %lu expired records", (unsigned long)total);
    more |= release_credit(x, until);
    more |= release_issued(x, until);
    apr_atomic_set32(&bc->more_work, (apr_uint32_t)more);
}

static int run(bx *x)
{
    request_rec *r = x->r;
    mpb_txn *t = NULL;
    json_t *resp = NULL;
    char *stored = NULL, *body, *sealed = NULL;
    size_t stored_len = 0, len = 0, sealed_len = 0;
    int found = 0, status = 0, rc;
    mp_status st;

    if (mpb_begin(x->bc->store, 0, &t) != MP_OK)
        return store_failed(x);
    /* Under the writer lock: every expiry below is judged at this moment,
     * and a record deleted by compaction was deleted before it (records
     * outlive their last use by MPB_MARGIN). */
    x->now = now_sec();
    /* The account as it is now, under the writer lock. */
    if ((st = mpb_account_get(t, x->acct.id, &x->acct, &found)) != MP_OK) {
        mpb_abort(t);
        return store_failed(x);
    }
    if (!found) {
        mpb_abort(t);
        return fail(x, HTTP_UNAUTHORIZED, "unknown-account", "no such account");
    }
    st = mpb_idem_get(t, x->acct.id, x->request_id, x->idem_hash, &found, &status, &stored,
                      &stored_len);
    if (st == MP_ERR_MALFORMED) {
        mpb_abort(t);
        return fail(x, HTTP_CONFLICT, "malformed",
                    "request_id already used with another body or at another endpoint");
    }
    if (st != MP_OK) {
        mpb_abort(t);
        return store_failed(x);
    }
    if (found) {
        mpb_abort(t);
        return answer_again(x, stored, stored_len, status);
    }
    switch (x->ep) {
    case EP_BUY:      rc = apply_buy(x, t, &resp); break;
    case EP_EXCHANGE: rc = apply_exchange(x, t, &resp); break;
    case EP_CERTIFY:  rc = apply_certify(x, t, &resp); break;
    default:          rc = apply_redeem(x, t, &resp); break;
    }
    if (rc == HTTP_OK && (resp == NULL || (body = dump(r->pool, resp, &len)) == NULL)) {
        resp = NULL;
        rc = txn_failed(x, MP_ERR_NOMEM);
    }
    if (rc != HTTP_OK) {
        json_decref(resp);
        mpb_abort(t);
        return rc;
    }
    /* A /redeem that advanced nothing (every item refused, or credited
     * before) had no effect: like a refused request, its answer is not
     * stored, so that junk items cannot fill the store with answers; a
     * retry is decided again, to the same result. */
    if (x->ep == EP_REDEEM && !x->changed) {
        mpb_abort(t);
        if (x->outcome != NULL)
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "%s; nothing to store (request %s)",
                          x->outcome, x->request_id);
        send_body(r, HTTP_OK, body, len);
        return OK;
    }
    if ((st = seal_response(x, body, len, &sealed, &sealed_len)) != MP_OK) {
        mpb_abort(t);
        return txn_failed(x, st);
    }
    if ((st = mpb_idem_put(t, x->acct.id, x->request_id, x->idem_hash, HTTP_OK, sealed,
                           sealed_len, x->now + IDEM_KEEP)) != MP_OK) {
        mpb_abort(t);
        return store_failed(x);
    }
    if (mpb_commit(t) != MP_OK)
        return store_failed(x);
    if (x->outcome != NULL)
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "%s (request %s)", x->outcome, x->request_id);
    if (x->shortfalls != NULL)
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, "MP00144: broker %s: vendor account %s "
                      "redeemed words that the certified accounts do not cover, unpaid (bill "
                      "them): %s", x->bc->name, x->acct.id, x->shortfalls);
    send_body(r, HTTP_OK, body, len);
    maybe_compact(x);
    return OK;
}

/* ---- the handler ------------------------------------------------------------------------------------ */

static int is_tls(conn_rec *c)
{
#if AP_MODULE_MAGIC_AT_LEAST(20120211, 104)
    return ap_ssl_conn_is_ssl(c) || (c->master != NULL && ap_ssl_conn_is_ssl(c->master));
#else
    (void)c;
    return 0;
#endif
}

/* The body, at most MPB_BODY_MAX bytes: OK, or an HTTP status. */
static int read_body(bx *x)
{
    request_rec *r = x->r;
    apr_size_t cap, len = 0, want;
    char tmp[8192], *buf, *bigger;
    long n;
    int rc;

    if ((rc = ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK)) != OK)
        return rc;
    if (r->remaining > MPB_BODY_MAX)
        return fail(x, HTTP_REQUEST_ENTITY_TOO_LARGE, "malformed", "the body exceeds 1 MiB");
    cap = r->remaining > 0 ? (apr_size_t)r->remaining : sizeof tmp;
    buf = apr_palloc(r->pool, cap + 1);
    if (ap_should_client_block(r)) {
        while ((n = ap_get_client_block(r, tmp, sizeof tmp)) != 0) {
            if (n < 0)
                return fail(x, HTTP_BAD_REQUEST, "malformed", "cannot read the request body");
            if ((apr_size_t)n > MPB_BODY_MAX - len)
                return fail(x, HTTP_REQUEST_ENTITY_TOO_LARGE, "malformed",
                            "the body exceeds 1 MiB");
            if (len + (apr_size_t)n > cap) {
                want = len + (apr_size_t)n;
                cap = cap * 2 > want ? cap * 2 : want;
                if (cap > MPB_BODY_MAX)
                    cap = MPB_BODY_MAX;
                bigger = apr_palloc(r->pool, cap + 1);
                memcpy(bigger, buf, len);
                buf = bigger;
            }
            memcpy(buf + len, tmp, (size_t)n);
            len += (apr_size_t)n;
        }
    }
    buf[len] = '\0';
    x->body = buf;
    x->body_len = len;
    return OK;
}

static int handle(bx *x)
{
    request_rec *r = x->r;
    uint8_t dummy[MP_SECRET_LEN];
    json_error_t jerr;
    json_t *rid;
    int rc;

    if ((rc = read_body(x)) != OK)
        return rc;
    if (mp_sha256(x->body, x->body_len, x->body_hash) != MP_OK)
        return fail_st(x, MP_ERR_CRYPTO, NULL);
    {
        /* A request id names one request to one endpoint: the same body sent
         * to another endpoint must not get this one's stored answer. */
        uint8_t buf[1 + 1 + MP_HASH_LEN];

        buf[0] = (uint8_t)x->ep;
        buf[1] = 0;
        memcpy(buf + 2, x->body_hash, MP_HASH_LEN);
        if (mp_sha256(buf, sizeof buf, x->idem_hash) != MP_OK)
            return fail_st(x, MP_ERR_CRYPTO, NULL);
    }
    if ((rc = authenticate(x)) != OK)
        return rc;
    /* Vendor accounts redeem; customer accounts do everything else. */
    if ((x->ep == EP_REDEEM) != (x->acct.kind == MPB_VENDOR))
        return fail(x, HTTP_UNPROCESSABLE_ENTITY, "wrong-vendor", x->ep == EP_REDEEM
                    ? "only vendor accounts redeem" : "vendor accounts only redeem");
    x->json = json_loadb(x->body, x->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (x->json == NULL || !json_is_object(x->json))
        return fail(x, HTTP_BAD_REQUEST, "malformed", x->json == NULL
                    /* Position only: jansson's text can quote the body, and
                     * refusals are logged. */
                    ? apr_psprintf(r->pool, "JSON: syntax error at line %d, column %d",
                                   jerr.line, jerr.column)
                    : "JSON: not an object");
    rid = json_object_get(x->json, "request_id");
    if (!json_is_string(rid) || !request_id_ok(json_string_value(rid), json_string_length(rid)))
        return fail(x, HTTP_BAD_REQUEST, "malformed",
                    "request_id: 1 to 64 characters of A-Z a-z 0-9 - _");
    x->request_id = json_string_value(rid);
    if ((rc = lookup_first(x)) != DECLINED)
        return rc;
    /* The scratch context is re-keyed per use; its first key is irrelevant. */
    memset(dummy, 0x5a, sizeof dummy);
    if (mp_mac_new(dummy, sizeof dummy, &x->scratch) != MP_OK
        || mp_sha_new(&x->sha) != MP_OK)
        return fail_st(x, MP_ERR_CRYPTO, NULL);
    switch (x->ep) {
    case EP_BUY:      rc = parse_buy(x); break;
    case EP_EXCHANGE: rc = parse_exchange(x); break;
    case EP_CERTIFY:  rc = parse_certify(x); break;
    default:          rc = parse_redeem(x); break;
    }
    if (rc != OK)
        return rc;
    return run(x);
}

static apr_status_t free_json(void *data)
{
    bx *x = data;

    json_decref(x->json);
    x->json = NULL;
    return APR_SUCCESS;
}

int mpx_broker_handler(request_rec *r)
{
    static const char *const names[] = { "buy", "exchange", "certify", "redeem" };
    mpx_server_conf *sc;
    mpx_broker_conf *bc;
    const char *seg;
    bx *x;
    int i, rc;

    if (r->handler == NULL || strcmp(r->handler, MPX_BROKER_HANDLER) != 0)
        return DECLINED;
    sc = ap_get_module_config(r->server->module_config, &micropay_module);
    bc = sc ? sc->broker : NULL;
    if (bc == NULL || bc->name == NULL || bc->issuer == NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "MP00110: SetHandler micropay-broker for %s "
                      "in a server without MicropayBrokerName", r->uri);
        ap_discard_request_body(r);
        return send_error(r, bc, HTTP_INTERNAL_SERVER_ERROR, "internal", "not a broker");
    }
    /* Responses carry secrets: never over plain HTTP. */
    if (bc->require_tls != 0 && !is_tls(r->connection)) {
        ap_discard_request_body(r);
        return send_error(r, bc, HTTP_FORBIDDEN, "unauthorized",
                          "the broker answers over HTTPS only");
    }
    seg = strrchr(r->uri, '/');
    seg = seg ? seg + 1 : r->uri;
    for (i = 0; i < 4; i++)
        if (strcmp(seg, names[i]) == 0)
            break;
    if (i == 4) {
        ap_discard_request_body(r);
        return send_error(r, bc, HTTP_NOT_FOUND, "malformed",
                          "endpoints: buy, exchange, certify, redeem");
    }
    if (r->method_number != M_POST) {
        ap_discard_request_body(r);
        apr_table_setn(r->err_headers_out, "Allow", "POST");
        r->allowed = AP_METHOD_BIT << M_POST;
        return send_error(r, bc, HTTP_METHOD_NOT_ALLOWED, "malformed", "POST only");
    }
    if (bc->store == NULL || bc->lock == NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "MP00111: broker store %s unavailable (%s); "
                      "refusing %s", bc->store_dir, bc->store_error ? bc->store_error : "not open",
                      r->uri);
        ap_discard_request_body(r);
        return send_error(r, bc, HTTP_INTERNAL_SERVER_ERROR, "internal", "broker store unavailable");
    }

    x = apr_pcalloc(r->pool, sizeof *x);
    x->r = r;
    x->bc = bc;
    x->ep = (endpoint)i;
    x->ep_name = names[i];
    /* Read again after the body and inside the write transaction: a
     * decision is taken at the clock of that moment, never at the request
     * line's, which a slow body can leave far behind. */
    x->now = now_sec();
    x->target = request_target(r);
    apr_pool_cleanup_register(r->pool, x, free_crypto, apr_pool_cleanup_null);
    apr_pool_cleanup_register(r->pool, x, free_json, apr_pool_cleanup_null);
    rc = handle(x);
    if (rc == OK)
        return OK;
    if (x->reason == NULL) {
        /* An HTTP-level failure from reading the body (e.g. a bad
         * Content-Length): let Apache answer it. */
        return rc;
    }
    return send_error(r, bc, rc, x->reason, x->message);
}
