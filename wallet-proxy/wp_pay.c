/*
 * wp_pay.c - the payment engine as the proxy core drives it (wp_pay.h):
 * reading 402 challenges, checking offers against the request, asking the
 * policy, choosing a scheme, paying up front, presenting receipts, settling
 * every sent credential in the store, and the wallet's own pages for held,
 * declined, refused and unanswered payments. Also the helpers the engine's
 * files share (wp_engine.h).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <openssl/crypto.h>
#include "wp_challenge.h"
#include "wp_engine.h"

/* ---- shared helpers ------------------------------------------------------------------- */

uint64_t wp_now(void)
{
    return (uint64_t)time(NULL);
}

void wp_day(uint64_t t, char out[11])
{
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
}

const char *wp_amt(const mp_amount *a, char buf[MP_AMOUNT_STRMAX])
{
    if (mp_amount_format(a, buf, MP_AMOUNT_STRMAX) != MP_OK)
        snprintf(buf, MP_AMOUNT_STRMAX, "?");
    return buf;
}

int wp_b64(const uint8_t *p, size_t n, char *out, size_t cap)
{
    size_t len;

    return mp_b64url_encode(p, n, out, cap, &len) == MP_OK ? 0 : -1;
}

int wp_unb64(const char *t, uint8_t *out, size_t cap, size_t *n)
{
    if (t == NULL)
        return -1;
    return mp_b64url_decode(t, strlen(t), out, cap, n) == MP_OK ? 0 : -1;
}

void wp_hex(const uint8_t *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int wp_unhex(const char *t, uint8_t *out, size_t cap, size_t *n)
{
    size_t len = t ? strlen(t) : 1, i;
    int hi, lo;

    if (len % 2 != 0 || len / 2 > cap)
        return -1;
    for (i = 0; i < len / 2; i++) {
        if ((hi = hexval(t[2 * i])) < 0 || (lo = hexval(t[2 * i + 1])) < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    *n = len / 2;
    return 0;
}

size_t wp_hkey(uint8_t key[33], char tag, const char *const *parts, size_t nparts)
{
    uint8_t h[MP_HASH_LEN];
    char *buf;
    size_t len = 0, i, off = 0;

    for (i = 0; i < nparts; i++)
        len += strlen(parts[i]) + 1;
    key[0] = (uint8_t)tag;
    if ((buf = malloc(len + 1)) == NULL) {
        memset(key + 1, 0, MP_HASH_LEN);
        return 33;
    }
    for (i = 0; i < nparts; i++) {
        size_t l = strlen(parts[i]);

        memcpy(buf + off, parts[i], l);
        buf[off + l] = '\0';
        off += l + 1;
    }
    if (mp_sha256(buf, off, h) != MP_OK)
        memset(h, 0, sizeof h);
    memcpy(key + 1, h, MP_HASH_LEN);
    free(buf);
    return 33;
}

const char *wp_jstr(const json_t *o, const char *name)
{
    const char *s = json_string_value(json_object_get(o, name));

    return s ? s : "";
}

uint64_t wp_ju64(const json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);

    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

const char *wp_hdr_get(const wp_hdr *h, size_t n, const char *name)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (h[i].name != NULL && h[i].value != NULL && strcasecmp(h[i].name, name) == 0)
            return h[i].value;
    return NULL;
}

int wp_resv_add(wp_wallet *w, uint64_t id)
{
    uint64_t *n;

    if (w->nresv == w->capresv) {
        size_t cap = w->capresv ? 2 * w->capresv : 32;

        if ((n = realloc(w->resv, cap * sizeof *n)) == NULL)
            return -1;
        w->resv = n;
        w->capresv = cap;
    }
    w->resv[w->nresv++] = id;
    return 0;
}

void wp_resv_del(wp_wallet *w, uint64_t id)
{
    size_t i;

    for (i = 0; i < w->nresv; i++)
        if (w->resv[i] == id) {
            w->resv[i] = w->resv[--w->nresv];
            return;
        }
}

int wp_resv_has(const wp_wallet *w, uint64_t id)
{
    size_t i;

    for (i = 0; i < w->nresv; i++)
        if (w->resv[i] == id)
            return 1;
    return 0;
}

static void u64key(uint8_t k[8], uint64_t v)
{
    for (int i = 0; i < 8; i++)
        k[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* ---- pages ---------------------------------------------------------------------------- */

typedef struct {
    char *b;
    size_t len, cap;
    int fail;
} sbuf;

static void sb_put(sbuf *s, const char *p, size_t n)
{
    char *nb;

    if (s->fail)
        return;
    if (s->len + n + 1 > s->cap) {
        size_t cap = (s->len + n + 1) * 2;

        if ((nb = realloc(s->b, cap)) == NULL) {
            s->fail = 1;
            return;
        }
        s->b = nb;
        s->cap = cap;
    }
    memcpy(s->b + s->len, p, n);
    s->len += n;
    s->b[s->len] = '\0';
}

static void sb_add(sbuf *s, const char *p)
{
    sb_put(s, p, strlen(p));
}

static void sb_esc(sbuf *s, const char *p)
{
    for (; p && *p; p++) {
        switch (*p) {
        case '<': sb_add(s, "&lt;"); break;
        case '>': sb_add(s, "&gt;"); break;
        case '&': sb_add(s, "&amp;"); break;
        case '"': sb_add(s, "&quot;"); break;
        case '\'': sb_add(s, "&#39;"); break;
        default: sb_put(s, p, 1);
        }
    }
}

/* A small HTML page: title, then text parts alternating plain HTML (even
 * index) and escaped text (odd index), NULL-terminated. */
static void page_html(wp_page *pg, int status, const char *title, ...)
{
    sbuf s = { NULL, 0, 0, 0 };
    const char *part;
    va_list ap;
    int i = 0;

    sb_add(&s, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    sb_esc(&s, title);
    sb_add(&s, "</title></head>\n<body><h1>");
    sb_esc(&s, title);
    sb_add(&s, "</h1>\n<p>");
    va_start(ap, title);
    while ((part = va_arg(ap, const char *)) != NULL) {
        if (i++ % 2 == 0)
            sb_add(&s, part);
        else
            sb_esc(&s, part);
    }
    va_end(ap);
    sb_add(&s, "</p>\n<p><a href=\"");
    sb_esc(&s, wp_self_origin());
    sb_add(&s, "/\">Open the wallet</a></p></body></html>\n");
    if (!s.fail)
        (void)wp_page_set(pg, status, "text/html; charset=utf-8", s.b, s.len);
    else
        (void)wp_page_set(pg, 500, "text/plain; charset=utf-8", "out of memory\n", 14);
    if (pg->status != 0 && pg->extra_headers == NULL)
        pg->extra_headers = strdup("Cache-Control: no-store\r\n");
    free(s.b);
}

/* The offer of the 402 answer: 0 found (o set), 1 none, -1 malformed (why). */
static int find_offer(const wp_hdr *h, size_t n, mp_offer *o, char *offer_text, const char **why)
{
    char realm[MP_NAME_MAX + 1];
    uint8_t buf[MP_WIRE_MAX];
    size_t len;

    if (!wp_challenge_find(h, n, realm, offer_text))
        return 1;
    if (wp_unb64(offer_text, buf, sizeof buf, &len) != 0 || mp_offer_decode(buf, len, o) != MP_OK) {
        *why = "the offer in the 402 answer does not decode";
        return -1;
    }
    if (strcmp(o->vendor, realm) != 0) {
        *why = "the offer names another vendor than the realm of the challenge";
        return -1;
    }
    return 0;
}

/* ---- the handle ---------------------------------------------------------------------- */

enum { C_NONE = 0, C_RECEIPT, C_PAY };

struct wp_pay {
    wp_wallet *w;
    wp_reqinfo ri;
    char *method, *host, *target, *url;
    int sends;               /* requests sent upstream so far */
    int cur;                 /* what the last request carried */
    uint64_t id;             /* in-flight id (C_PAY) */
    int spec;
    mp_amount rprice;        /* the price a presented receipt records (C_RECEIPT) */
    char hdrname[32];
    char value[MP_WIRE_TEXT_MAX + 16];
};

static wp_pay null_pay;     /* handed out when even allocation failed: sends unpaid */

static void set_cred(wp_pay *p, int kind, const char *cred, wp_cred *out)
{
    snprintf(p->hdrname, sizeof p->hdrname, "%s",
             p->ri.has_authorization ? "Payment-Authorization" : "Authorization");
    snprintf(p->value, sizeof p->value, "Payment %s", cred);
    p->cur = kind;
    out->name = p->hdrname;
    out->value = p->value;
}

static void set_paid(wp_pay *p, const wp_ready *r, int spec, wp_cred *out)
{
    p->id = r->id;
    p->spec = spec;
    set_cred(p, C_PAY, r->cred, out);
}

/* ---- history ------------------------------------------------------------------------- */

static int hist_add(wp_txn *t, const wp_reqinfo *ri, const mp_amount *price, const char *scheme,
                    const char *status, uint64_t *seq_out)
{
    char a[MP_AMOUNT_STRMAX];
    uint8_t key[8];
    uint64_t seq;
    json_t *h;
    int rc;

    if (wp_store_next(t, "hist", &seq) != 0)
        return -1;
    h = json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "time", (json_int_t)wp_now(),
                  "site", ri->host, "url", ri->url ? ri->url : "", "method", ri->method, "price",
                  wp_amt(price, a), "price_units", (json_int_t)price->units, "charged_units",
                  (json_int_t)0, "scheme", scheme, "status", status);
    if (h == NULL)
        return -1;
    u64key(key, seq);
    rc = wp_store_put(t, WPS_HISTORY, key, 8, h);
    json_decref(h);
    if (rc == 0 && seq > WP_HISTORY_KEEP) {
        u64key(key, seq - WP_HISTORY_KEEP);
        rc = wp_store_del(t, WPS_HISTORY, key, 8);
    }
    if (rc == 0 && seq_out != NULL)
        *seq_out = seq;
    return rc;
}

static int hist_set(wp_txn *t, uint64_t seq, const char *status, uint64_t charged, int remove)
{
    uint8_t key[8];
    json_t *h = NULL;
    int rc;

    u64key(key, seq);
    if (remove)
        return wp_store_del(t, WPS_HISTORY, key, 8);
    rc = wp_store_get(t, WPS_HISTORY, key, 8, &h);
    if (rc != 0)
        return rc < 0 ? -1 : 0;   /* pruned meanwhile */
    json_object_set_new(h, "status", json_string(status));
    json_object_set_new(h, "charged_units", json_integer((json_int_t)charged));
    rc = wp_store_put(t, WPS_HISTORY, key, 8, h);
    json_decref(h);
    return rc;
}

/* ---- receipts and offers kept ------------------------------------------------------ */

static size_t receipt_key(uint8_t key[33], const char *host, const char *target)
{
    const char *parts[2] = { host, target };

    return wp_hkey(key, 'R', parts, 2);
}

static int receipt_put(wp_txn *t, const char *host, const char *target, const char *text)
{
    uint8_t key[33], buf[MP_WIRE_MAX];
    size_t len;
    mp_receipt r;
    json_t *j;
    int rc;

    if (strlen(text) > MP_WIRE_TEXT_MAX || wp_unb64(text, buf, sizeof buf, &len) != 0
        || mp_receipt_decode(buf, len, &r) != MP_OK || r.target_len != strlen(target)
        || strcmp(r.target, target) != 0)
        return 0;   /* not a receipt for this target: not kept */
    j = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "host", host, "target", target, "rec", text,
                  "expiry", (json_int_t)r.expiry, "price", (json_int_t)r.price.units,
                  "cur", r.price.cur);
    if (j == NULL)
        return -1;
    rc = wp_store_put(t, WPS_RECEIPT, key, receipt_key(key, host, target), j);
    json_decref(j);
    return rc;
}

static void receipt_drop(wp_wallet *w, const char *host, const char *target)
{
    uint8_t key[33];
    wp_txn *t = NULL;

    pthread_mutex_lock(&w->mu);
    if (wp_store_begin(w->st, 0, &t) == 0) {
        if (wp_store_del(t, WPS_RECEIPT, key, receipt_key(key, host, target)) == 0)
            (void)wp_store_commit(t);
        else
            wp_store_abort(t);
    }
    pthread_mutex_unlock(&w->mu);
}

/* The directory of a target: its path up to and including the last '/'. */
static void dir_prefix(const char *target, char *out, size_t cap)
{
    size_t n = strcspn(target, "?#"), i, last = 0;

    for (i = 0; i < n; i++)
        if (target[i] == '/')
            last = i + 1;
    if (last >= cap)
        last = cap - 1;
    memcpy(out, target, last);
    out[last] = '\0';
}

static void offer_remember(wp_wallet *w, const wp_reqinfo *ri, const mp_offer *o,
                           const char *text)
{
    char prefix[MP_TARGET_MAX + 1];
    const char *ek[3] = { ri->host, ri->method, ri->target }, *pk[2] = { ri->host, prefix };
    uint8_t key[33];
    json_t *e, *pj = NULL;
    wp_txn *t = NULL;
    int rc = -1;

    dir_prefix(ri->target, prefix, sizeof prefix);
    e = json_pack("{s:s, s:s, s:s, s:s, s:I}", "host", ri->host, "method", ri->method, "target",
                  ri->target, "offer", text, "expiry", (json_int_t)o->expiry);
    if (o->schemes & MP_SCHEME_MILLICENT)
        pj = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:I}", "host", ri->host, "prefix", prefix,
                       "method", ri->method, "vendor", o->vendor, "price",
                       (json_int_t)o->price.units, "cur", o->price.cur, "expiry",
                       (json_int_t)o->expiry);
    pthread_mutex_lock(&w->mu);
    if (e != NULL && wp_store_begin(w->st, 0, &t) == 0) {
        rc = wp_store_put(t, WPS_OFFER, key, wp_hkey(key, 'E', ek, 3), e);
        if (rc == 0 && pj != NULL)
            rc = wp_store_put(t, WPS_OFFER, key, wp_hkey(key, 'P', pk, 2), pj);
        if (rc == 0)
            rc = wp_store_commit(t);
        else
            wp_store_abort(t);
    }
    pthread_mutex_unlock(&w->mu);
    if (rc != 0)
        wp_log(WP_LOG_WARN, "WP00121 cannot keep the offer of %s: %s", ri->host,
               wp_store_error());
    json_decref(e);
    json_decref(pj);
}

/* ---- recording a payment in flight, settling it ---------------------------------------- */

int wp_inflight_write(wp_wallet *w, wp_txn *t, const wp_reqinfo *ri, const char *vendor,
                      const char *scheme, const mp_amount *price, const char *cred, int spec,
                      json_t *rec, wp_ready *r)
{
    const char *hdr = ri->has_authorization ? "Payment-Authorization" : "Authorization";
    char day[11];
    uint8_t key[8];
    uint64_t id, hist;
    int rc = -1;

    (void)w;
    wp_day(wp_now(), day);
    if (strlen(cred) >= sizeof r->cred || wp_store_next(t, "pay", &id) != 0
        || hist_add(t, ri, price, scheme, "in-flight", &hist) != 0)
        return -1;
    if (json_object_set_new(rec, "id", json_integer((json_int_t)id)) != 0
        || json_object_set_new(rec, "scheme", json_string(scheme)) != 0
        || json_object_set_new(rec, "vendor", json_string(vendor)) != 0
        || json_object_set_new(rec, "method", json_string(ri->method)) != 0
        || json_object_set_new(rec, "url", json_string(ri->url ? ri->url : "")) != 0
        || json_object_set_new(rec, "host", json_string(ri->host)) != 0
        || json_object_set_new(rec, "target", json_string(ri->target)) != 0
        || json_object_set_new(rec, "hdr", json_string(hdr)) != 0
        || json_object_set_new(rec, "cred", json_string(cred)) != 0
        || json_object_set_new(rec, "price", json_integer((json_int_t)price->units)) != 0
        || json_object_set_new(rec, "cur", json_string(price->cur)) != 0
        || json_object_set_new(rec, "day", json_string(day)) != 0
        || json_object_set_new(rec, "hist", json_integer((json_int_t)hist)) != 0
        || json_object_set_new(rec, "spec", json_boolean(spec)) != 0
        || json_object_set_new(rec, "created", json_integer((json_int_t)wp_now())) != 0)
        return -1;
    u64key(key, id);
    /* the spent counters already hold the price: the policy decision
     * claimed it (policy_claim), and wp_settle gives it back if unpaid */
    if (wp_store_put(t, WPS_INFLIGHT, key, 8, rec) != 0)
        return rc;
    r->id = id;
    snprintf(r->hdr, sizeof r->hdr, "%s", hdr);
    snprintf(r->cred, sizeof r->cred, "%s", cred);
    return 0;
}

int wp_settle(wp_wallet *w, uint64_t id, long status, const wp_hdr *hdrs, size_t n,
              wp_outcome *out, char *reason, size_t rlen, wp_ready *resend)
{
    const char *pe = wp_hdr_get(hdrs, n, "Payment-Error"), *rc_text;
    char why[48] = "", st[64];
    uint8_t key[8];
    mp_amount charged;
    json_t *inf = NULL;
    wp_txn *t = NULL;
    wp_outcome o = WP_OUT_KEEP;
    uint64_t price;
    int rv = -1, spec;

    if (pe != NULL && strlen(pe) < sizeof why)
        snprintf(why, sizeof why, "%s", pe);
    if (reason != NULL)
        snprintf(reason, rlen, "%s", why);
    u64key(key, id);
    pthread_mutex_lock(&w->mu);
    if (wp_store_begin(w->st, 0, &t) != 0 || wp_store_get(t, WPS_INFLIGHT, key, 8, &inf) != 0)
        goto out;
    memset(&charged, 0, sizeof charged);
    if (strcmp(wp_jstr(inf, "scheme"), "payword") == 0)
        o = wp_pw_settle(w, t, inf, status, why, &charged);
    else
        o = wp_mc_settle(w, t, inf, status, hdrs, n, why, &charged);
    spec = json_is_true(json_object_get(inf, "spec"));
    price = wp_ju64(inf, "price");
    if (o == WP_OUT_KEEP) {
        rv = 0;
        goto out;          /* nothing changes: abort below */
    }
    if (o == WP_OUT_RESEND) {
        if (wp_store_put(t, WPS_INFLIGHT, key, 8, inf) != 0)
            goto out;
        resend->id = id;
        snprintf(resend->hdr, sizeof resend->hdr, "%s", wp_jstr(inf, "hdr"));
        snprintf(resend->cred, sizeof resend->cred, "%s", wp_jstr(inf, "cred"));
    } else {
        if (o == WP_OUT_PAID)
            snprintf(st, sizeof st, "paid");
        else if (o == WP_OUT_FORGED)
            snprintf(st, sizeof st, "refused:forged-reply");
        else if (o == WP_OUT_NOT_CHARGED)
            snprintf(st, sizeof st, "refused:not-charged");
        else
            snprintf(st, sizeof st, "refused:%s", status == 400 ? "malformed" : why[0] ? why
                                                                               : "unknown");
        if (wp_store_del(t, WPS_INFLIGHT, key, 8) != 0
            || hist_set(t, wp_ju64(inf, "hist"), st,
                        o == WP_OUT_PAID || o == WP_OUT_FORGED ? charged.units : 0,
                        spec && o != WP_OUT_PAID && o != WP_OUT_FORGED) != 0)
            goto out;
        /* the budgets count what was charged */
        if (o == WP_OUT_PAID && charged.units < price
            && wp_spent_add(t, wp_jstr(inf, "day"), wp_jstr(inf, "host"), price - charged.units,
                            -1) != 0)
            goto out;
        /* a piece written off (a vendor kept it without change) counts whole */
        if (o == WP_OUT_FORGED && charged.units > price
            && wp_spent_add(t, wp_jstr(inf, "day"), wp_jstr(inf, "host"), charged.units - price,
                            1) != 0)
            goto out;
        if ((o == WP_OUT_NOT_CHARGED || o == WP_OUT_REFUSED)
            && wp_spent_add(t, wp_jstr(inf, "day"), wp_jstr(inf, "host"), price, -1) != 0)
            goto out;
        rc_text = wp_hdr_get(hdrs, n, "Payment-Receipt");
        if ((o == WP_OUT_PAID || o == WP_OUT_FORGED) && rc_text != NULL
            && receipt_put(t, wp_jstr(inf, "host"), wp_jstr(inf, "target"), rc_text) != 0)
            goto out;
        if (o == WP_OUT_REFUSED)
            wp_log(WP_LOG_INFO, "WP00105 %s payment for %s%s refused: %s", wp_jstr(inf, "scheme"),
                   wp_jstr(inf, "host"), wp_jstr(inf, "target"), st + 8);
    }
    rv = wp_store_commit(t);
    t = NULL;
    if (rv == 0)
        *out = o;
out:
    if (t != NULL)
        wp_store_abort(t);
    if (rv == 0 && o == WP_OUT_KEEP)
        *out = o;
    pthread_mutex_unlock(&w->mu);
    if (rv != 0)
        wp_log(WP_LOG_ERROR, "WP00110 cannot settle payment %llu: %s (it stays in flight)",
               (unsigned long long)id, wp_store_error());
    json_decref(inf);
    return rv;
}

/* ---- paying ---------------------------------------------------------------------------- */

/* Pays o with the preferred scheme it offers, else the other. 0 / -1 (err). */
static int pay_offer(wp_pay *p, const mp_offer *o, int may_buy, wp_cred *cred, char *err,
                     size_t errlen)
{
    wp_wallet *w = p->w;
    uint8_t order[2];
    wp_ready r;
    int i, rc = -1;

    pthread_mutex_lock(&w->mu);
    order[0] = w->pol.prefer;
    pthread_mutex_unlock(&w->mu);
    order[1] = order[0] == MP_SCHEME_PAYWORD ? MP_SCHEME_MILLICENT : MP_SCHEME_PAYWORD;
    err[0] = '\0';
    for (i = 0; i < 2 && rc != 0; i++) {
        if (!(o->schemes & order[i]))
            continue;
        if (order[i] == MP_SCHEME_MILLICENT)
            rc = wp_mc_pay(w, &p->ri, o->vendor, &o->price, 0, may_buy, &r, err, errlen);
        else if (!w->cfg->payword_over_http) {
            /* PROTOCOL.md 9: words are bearer tokens, so PayWord only over
             * TLS; this wallet sees plain http only (CONNECT is opaque) */
            if (err[0] == '\0')     /* keep the reason Millicent failed, if it did */
                snprintf(err, errlen, "PayWord words are bearer tokens and are sent only over "
                         "TLS (PROTOCOL.md 9); this page is plain http (PayWordOverHTTP is off)");
            rc = -1;
            continue;
        } else
            rc = wp_pw_pay(w, &p->ri, o, &r, err, errlen);
        if (rc != 0)
            wp_log(WP_LOG_WARN, "WP00122 cannot pay %s%s with %s: %s", p->ri.host, p->ri.target,
                   order[i] == MP_SCHEME_MILLICENT ? "Millicent" : "PayWord", err);
    }
    if (rc != 0)
        return -1;
    set_paid(p, &r, 0, cred);
    return 0;
}

/* Checks an offer against the request (PROTOCOL.md 7.2). NULL if fine. */
static const char *offer_mismatch(const wp_pay *p, const mp_offer *o, const char *cur)
{
    if (strcmp(o->method, p->ri.method) != 0)
        return "the offer is for another method than the request";
    if (o->target_len != strlen(p->ri.target) || strcmp(o->target, p->ri.target) != 0)
        return "the offer is for another resource than the request";
    if (o->expiry <= wp_now())
        return "the offer has expired";
    if (strcmp(o->price.cur, cur) != 0)
        return "the offer is in another currency than the wallet's";
    return NULL;
}

/* Security (budgets under concurrency): deciding and paying are two
 * transactions (paying may call the broker, so w->mu cannot be held across
 * both). Two threads could both pass the budget check before either counted,
 * and both could use one approval. So the decision claims, in its own
 * transaction, what it relied on: the price goes into today's spent
 * counters, and an approval is marked used (one approval pays one request).
 * That count is the payment's: wp_inflight_write adds nothing, wp_settle
 * gives the price back when the vendor did not take it, and policy_release
 * gives it back (and restores the approval) when no payment was made. A
 * crash in between leaves the price counted for the day: the budgets err on
 * the safe side. Call inside t, w->mu held. */
static int policy_claim(wp_pay *p, wp_txn *t, wp_pol_verdict v, const mp_amount *price,
                        const char *hold_id, char day[11])
{
    wp_day(wp_now(), day);
    if (v != WP_POL_PAY && v != WP_POL_APPROVED)
        return 0;
    if (v == WP_POL_APPROVED && wp_hold_used(p->w, t, hold_id) != 0)
        return -1;
    return wp_spent_add(t, day, p->ri.host, price->units, 1);
}

/* Undoes policy_claim when no payment was made (paid = 0); a payment made
 * keeps the claim as its own count, so then there is nothing to write. */
static void policy_release(wp_pay *p, wp_pol_verdict v, const mp_amount *price, const char *day,
                           const char *hold_id, int paid)
{
    wp_txn *t = NULL;
    json_t *h = NULL;
    int rc = -1;

    if (paid || (v != WP_POL_PAY && v != WP_POL_APPROVED))
        return;
    pthread_mutex_lock(&p->w->mu);
    if (wp_store_begin(p->w->st, 0, &t) == 0) {
        rc = wp_spent_add(t, day, p->ri.host, price->units, -1);
        if (rc == 0 && v == WP_POL_APPROVED) {
            rc = wp_store_get(t, WPS_HOLD, hold_id, strlen(hold_id), &h);
            if (rc == 0 && strcmp(wp_jstr(h, "state"), "used") == 0) {
                json_object_set_new(h, "state", json_string("approved"));
                rc = wp_store_put(t, WPS_HOLD, hold_id, strlen(hold_id), h);
            } else if (rc > 0) {
                rc = 0;
            }
        }
        if (rc == 0)
            rc = wp_store_commit(t);
        else
            wp_store_abort(t);
    }
    pthread_mutex_unlock(&p->w->mu);
    json_decref(h);
    if (rc != 0)
        wp_log(WP_LOG_WARN, "WP00123 cannot release the budget claim for %s: %s", p->ri.host,
               wp_store_error());
}

/* Policy for paying up front: no hold is made; a verdict to pay is claimed
 * (policy_claim) in the same transaction. Anything else: WP_POL_HOLD. */
static wp_pol_verdict quick_policy(wp_pay *p, const mp_amount *price, char hold_id[32],
                                   char day[11])
{
    const char *reason;
    wp_pol_verdict v = WP_POL_HOLD;
    wp_txn *t = NULL;

    pthread_mutex_lock(&p->w->mu);
    if (wp_store_begin(p->w->st, 0, &t) == 0) {
        v = wp_policy_check(p->w, t, p->ri.host, p->ri.method, p->ri.target, price, &reason,
                            hold_id);
        if (v != WP_POL_PAY && v != WP_POL_APPROVED)
            wp_store_abort(t);
        else if (policy_claim(p, t, v, price, hold_id, day) != 0) {
            wp_store_abort(t);
            v = WP_POL_HOLD;
        } else if (wp_store_commit(t) != 0)
            v = WP_POL_HOLD;
    }
    pthread_mutex_unlock(&p->w->mu);
    return v;
}

typedef struct {
    const wp_wallet *w;
    const wp_reqinfo *ri;
    json_t *found;
} orphan_find;

static int orphan_visit(void *ctx, const uint8_t *key, size_t klen, json_t *inf)
{
    orphan_find *f = ctx;

    (void)key;
    (void)klen;
    if (strcmp(wp_jstr(inf, "host"), f->ri->host) != 0
        || strcmp(wp_jstr(inf, "method"), f->ri->method) != 0
        || strcmp(wp_jstr(inf, "target"), f->ri->target) != 0
        || wp_resv_has(f->w, wp_ju64(inf, "id")))
        return 0;
    f->found = json_incref(inf);
    return 1;
}

/* A payment left in flight for this very request (transport failure, crash):
 * sent again with the same credential. */
static int replay_orphan(wp_pay *p, wp_cred *cred)
{
    orphan_find f = { p->w, &p->ri, NULL };
    wp_txn *t = NULL;
    wp_ready r;
    size_t n = 1;
    int rv = 0;

    /* Every request comes here: almost always nothing is in flight, and then
     * neither the scan nor the wallet-wide mutex is needed. A payment written
     * in flight after this look belongs to a request still running, not an
     * orphan. */
    if (wp_store_begin(p->w->st, 1, &t) == 0) {
        if (wp_store_count(t, WPS_INFLIGHT, &n) != 0)
            n = 1;
        wp_store_abort(t);
        t = NULL;
    }
    if (n == 0)
        return 0;
    pthread_mutex_lock(&p->w->mu);
    if (wp_store_begin(p->w->st, 1, &t) == 0) {
        if (wp_store_scan(t, WPS_INFLIGHT, NULL, 0, 0, orphan_visit, &f) == 0 && f.found != NULL
            && wp_resv_add(p->w, wp_ju64(f.found, "id")) == 0) {
            r.id = wp_ju64(f.found, "id");
            snprintf(r.cred, sizeof r.cred, "%s", wp_jstr(f.found, "cred"));
            set_paid(p, &r, json_is_true(json_object_get(f.found, "spec")), cred);
            /* the header name is the one written with it */
            snprintf(p->hdrname, sizeof p->hdrname, "%s", wp_jstr(f.found, "hdr"));
            rv = 1;
        }
        wp_store_abort(t);
    }
    pthread_mutex_unlock(&p->w->mu);
    if (rv)
        wp_log(WP_LOG_INFO, "WP00106 sending in-flight payment %llu again for %s%s",
               (unsigned long long)p->id, p->ri.host, p->ri.target);
    json_decref(f.found);
    return rv;
}

static int use_receipt(wp_pay *p, wp_cred *cred)
{
    uint8_t key[33];
    json_t *r = NULL;
    wp_txn *t = NULL;
    int rv = 0;

    if (strcmp(p->ri.method, "GET") != 0 && strcmp(p->ri.method, "HEAD") != 0)
        return 0;
    if (wp_store_begin(p->w->st, 1, &t) != 0)
        return 0;
    if (wp_store_get(t, WPS_RECEIPT, key, receipt_key(key, p->ri.host, p->ri.target), &r) == 0
        && wp_ju64(r, "expiry") > wp_now() + 2) {
        if (mp_amount_set(&p->rprice, wp_ju64(r, "price"), wp_jstr(r, "cur")) != MP_OK)
            mp_amount_set(&p->rprice, 0, "XXX");
        set_cred(p, C_RECEIPT, wp_jstr(r, "rec"), cred);
        rv = 1;
    }
    wp_store_abort(t);
    json_decref(r);
    return rv;
}

/* Pays up front with a kept offer: the exact one for (host, method, target),
 * else (GET, Millicent) the newest price seen under the same directory. */
static int pay_up_front(wp_pay *p, wp_cred *cred)
{
    char prefix[MP_TARGET_MAX + 1], hold_id[32], err[256], day[11];
    const char *ek[3] = { p->ri.host, p->ri.method, p->ri.target }, *pk[2] = { p->ri.host, prefix };
    uint8_t key[33], buf[MP_WIRE_MAX];
    json_t *e = NULL, *pj = NULL;
    wp_txn *t = NULL;
    mp_offer o;
    mp_amount price;
    wp_pol_verdict v;
    wp_ready r;
    size_t len;
    int rv = 0, have = 0;

    dir_prefix(p->ri.target, prefix, sizeof prefix);
    if (wp_store_begin(p->w->st, 1, &t) != 0)
        return 0;
    if (wp_store_get(t, WPS_OFFER, key, wp_hkey(key, 'E', ek, 3), &e) == 0
        && wp_ju64(e, "expiry") > wp_now() + 5 && wp_unb64(wp_jstr(e, "offer"), buf, sizeof buf,
                                                          &len) == 0
        && mp_offer_decode(buf, len, &o) == MP_OK && offer_mismatch(p, &o, o.price.cur) == NULL)
        have = 1;
    else if (strcmp(p->ri.method, "GET") == 0
             && wp_store_get(t, WPS_OFFER, key, wp_hkey(key, 'P', pk, 2), &pj) == 0
             && wp_ju64(pj, "expiry") > wp_now() + 5
             && strcmp(wp_jstr(pj, "method"), "GET") == 0
             && mp_amount_set(&price, wp_ju64(pj, "price"), wp_jstr(pj, "cur")) == MP_OK
             && price.units > 0)
        have = 2;
    wp_store_abort(t);
    if (have == 0)
        goto out;
    if (have == 2)
        o.price = price;            /* the price claimed and released below */
    v = quick_policy(p, &o.price, hold_id, day);
    if (v != WP_POL_PAY && v != WP_POL_APPROVED)
        goto out;
    if (have == 1) {
        rv = pay_offer(p, &o, 1, cred, err, sizeof err) == 0;
    } else if (wp_mc_pay(p->w, &p->ri, wp_jstr(pj, "vendor"), &price, 1, 0, &r, err,
                         sizeof err) == 0) {
        set_paid(p, &r, 1, cred);
        rv = 1;
    }
    policy_release(p, v, &o.price, day, hold_id, rv);
out:
    json_decref(e);
    json_decref(pj);
    return rv;
}

wp_pay *wp_pay_begin(wp_wallet *w, const wp_reqinfo *ri, wp_cred *cred)
{
    wp_pay *p;

    cred->name = NULL;
    cred->value = NULL;
    if (w == NULL || ri == NULL || ri->method == NULL || ri->host == NULL || ri->target == NULL
        || (p = calloc(1, sizeof *p)) == NULL)
        return &null_pay;
    p->w = w;
    p->method = strdup(ri->method);
    p->host = strdup(ri->host);
    p->target = strdup(ri->target);
    p->url = strdup(ri->url ? ri->url : "");
    if (p->method == NULL || p->host == NULL || p->target == NULL || p->url == NULL) {
        p->w = NULL;       /* unpaid */
        return p;
    }
    p->ri.method = p->method;
    p->ri.host = p->host;
    p->ri.target = p->target;
    p->ri.url = p->url;
    p->ri.has_authorization = ri->has_authorization;
    p->sends = 1;
    /* Requests the protocol cannot carry are sent unpaid. */
    if (strlen(p->method) > MP_METHOD_MAX || strlen(p->host) > MP_HOST_MAX
        || strlen(p->target) > MP_TARGET_MAX || p->target[0] != '/') {
        p->w = NULL;
        return p;
    }
    if (!replay_orphan(p, cred) && !use_receipt(p, cred))
        pay_up_front(p, cred);
    return p;
}

/* The answer to a 402 with an offer (after any credential was settled). */
/* Security: an offer's vendor name is not authenticated, and the wallet keeps
 * Millicent scrip (and customer secrets) per vendor name. The first host a
 * vendor name is paid at is remembered; an offer naming that vendor from
 * another host is refused, so one site cannot collect payments made from
 * another vendor's scrip (and replay them to that vendor). A vendor moving
 * to another host therefore needs a new wallet entry (documented).
 * 0 fine (pinned now or before), 1 pinned elsewhere (pinned gets the host),
 * -1 store failure. */
static int vendor_pin(wp_wallet *w, const char *vendor, const char *host, char *pinned,
                      size_t cap)
{
    char key[8 + MP_NAME_MAX + 1];
    size_t klen = (size_t)snprintf(key, sizeof key, "vhost:%s", vendor);
    json_t *j = NULL;
    wp_txn *t = NULL;
    int rv = -1, rc;

    pthread_mutex_lock(&w->mu);
    if (klen >= sizeof key || wp_store_begin(w->st, 0, &t) != 0)
        goto out;
    rc = wp_store_get(t, WPS_META, key, klen, &j);
    if (rc == 0) {
        rv = strcmp(wp_jstr(j, "host"), host) == 0 ? 0 : 1;
        if (rv == 1)
            snprintf(pinned, cap, "%s", wp_jstr(j, "host"));
        goto out;
    }
    if (rc < 0 || (j = json_pack("{s:s}", "host", host)) == NULL
        || wp_store_put(t, WPS_META, key, klen, j) != 0)
        goto out;
    rv = wp_store_commit(t) == 0 ? 0 : -1;
    t = NULL;
out:
    if (t != NULL)
        wp_store_abort(t);
    pthread_mutex_unlock(&w->mu);
    json_decref(j);
    return rv;
}

static wp_pay_action on_offer(wp_pay *p, const wp_hdr *hdrs, size_t n, wp_cred *cred,
                              wp_page *page)
{
    wp_wallet *w = p->w;
    char offer_text[MP_WIRE_TEXT_MAX + 1], hold_id[32], err[256], a[MP_AMOUNT_STRMAX];
    char cur[4], loc[600], day[11], pin_msg[MP_NAME_MAX + 400];
    const char *why = NULL, *reason = "";
    wp_pol_verdict v = WP_POL_HOLD;
    wp_txn *t = NULL;
    mp_offer o;
    int rc;

    rc = find_offer(hdrs, n, &o, offer_text, &why);
    if (rc == 1)
        return WP_PAY_DELIVER;     /* a 402 that is not ours to answer */
    pthread_mutex_lock(&w->mu);
    memcpy(cur, w->pol.threshold.cur, sizeof cur);
    pthread_mutex_unlock(&w->mu);
    if (rc == 0)
        why = offer_mismatch(p, &o, cur);
    if (why == NULL) {
        char pinned[300];

        rc = vendor_pin(w, o.vendor, p->ri.host, pinned, sizeof pinned);
        if (rc < 0)
            why = "the wallet's store failed";
        else if (rc == 1) {
            snprintf(pin_msg, sizeof pin_msg, "the offer names the vendor %s, which this wallet "
                     "pays at %s only", o.vendor, pinned);
            why = pin_msg;
        }
    }
    if (why != NULL) {
        wp_log(WP_LOG_WARN, "WP00108 not paying %s%s: %s", p->ri.host, p->ri.target, why);
        page_html(page, 402, "Payment not made", "The site ", p->ri.host,
                  " asked for a payment the wallet will not make: ", why,
                  ". Nothing was paid.", NULL);
        return WP_PAY_PAGE;
    }
    offer_remember(w, &p->ri, &o, offer_text);
    wp_amt(&o.price, a);
    if (p->sends >= WP_PAY_MAX_ROUNDS) {
        page_html(page, 402, "Payment not completed", "The site ", p->ri.host,
                  " kept refusing the wallet's payments for ", p->ri.url,
                  "; the wallet stopped after several attempts. See the wallet's history.", NULL);
        return WP_PAY_PAGE;
    }
    pthread_mutex_lock(&w->mu);
    if (wp_store_begin(w->st, 0, &t) == 0) {
        v = wp_policy_check(w, t, p->ri.host, p->ri.method, p->ri.target, &o.price, &reason,
                            hold_id);
        rc = 0;
        if (v == WP_POL_HOLD)
            rc = wp_hold_create(w, t, &p->ri, &o.price, reason, hold_id);
        else if (v == WP_POL_DECLINED)
            rc = hist_add(t, &p->ri, &o.price, "millicent", "declined", NULL);
        else
            rc = policy_claim(p, t, v, &o.price, hold_id, day);   /* see policy_claim */
        if (rc != 0 || wp_store_commit(t) != 0) {
            t = NULL;
            v = WP_POL_HOLD;
            hold_id[0] = '\0';
        }
        t = NULL;
    } else {
        hold_id[0] = '\0';
    }
    pthread_mutex_unlock(&w->mu);
    if (v == WP_POL_DECLINED) {
        page_html(page, 402, "Payment declined", "You declined to pay ", a, " to ", p->ri.host,
                  " for ", p->ri.url, ". The wallet will not pay it for ten minutes.", NULL);
        return WP_PAY_PAGE;
    }
    if (v == WP_POL_HOLD) {
        if (hold_id[0] == '\0') {
            page_html(page, 500, "Wallet error", "The wallet cannot record the payment: ",
                      wp_store_error(), "", NULL);
            return WP_PAY_PAGE;
        }
        snprintf(loc, sizeof loc, "%s/confirm/%s", wp_self_origin(), hold_id);
        page_html(page, 303, "Payment needs your approval", "<a href=\"", loc,
                  "\">Approve or decline</a> paying ", a, " to ", p->ri.host, " for ", p->ri.url,
                  " (", reason, ").", NULL);
        if (page->status == 303)
            page->location = strdup(loc);
        return WP_PAY_PAGE;
    }
    if (pay_offer(p, &o, 1, cred, err, sizeof err) != 0) {
        policy_release(p, v, &o.price, day, hold_id, 0);
        page_html(page, 402, "Payment failed", "The wallet could not pay ", a, " to ",
                  p->ri.host, ": ", err, ".", NULL);
        return WP_PAY_PAGE;
    }
    policy_release(p, v, &o.price, day, hold_id, 1);
    p->sends++;
    return WP_PAY_RETRY;
}

/* The handle lets go of its payment (which may stay in flight). */
static void unreserve(wp_pay *p)
{
    pthread_mutex_lock(&p->w->mu);
    wp_resv_del(p->w, p->id);
    pthread_mutex_unlock(&p->w->mu);
}

/* A request a kept receipt opened: in the history as scheme "receipt",
 * charged nothing. A store failure only loses this history line. */
static void receipt_used(wp_pay *p)
{
    wp_txn *t = NULL;

    pthread_mutex_lock(&p->w->mu);
    if (wp_store_begin(p->w->st, 0, &t) == 0) {
        if (hist_add(t, &p->ri, &p->rprice, "receipt", "paid", NULL) == 0)
            wp_store_commit(t);
        else
            wp_store_abort(t);
    }
    pthread_mutex_unlock(&p->w->mu);
}

static void in_flight_page(wp_pay *p, wp_page *page, const char *what)
{
    page_html(page, 502, "Payment awaiting an answer", "The payment for ", p->ri.url,
              " was sent, but ", what, ". It is kept and sent again (without paying twice) when "
              "you reload the page or when the wallet restarts.", NULL);
}

wp_pay_action wp_pay_response(wp_pay *p, int status, const wp_hdr *hdrs, size_t nhdrs,
                              wp_cred *cred, wp_page *page)
{
    char reason[48];
    wp_outcome o = WP_OUT_KEEP;
    wp_ready r;
    int cur;

    cred->name = NULL;
    cred->value = NULL;
    if (p == NULL || p->w == NULL)
        return WP_PAY_DELIVER;
    cur = p->cur;
    p->cur = C_NONE;
    if (cur == C_RECEIPT) {
        if (status != 402) {
            receipt_used(p);
            return WP_PAY_DELIVER;
        }
        receipt_drop(p->w, p->ri.host, p->ri.target);
    } else if (cur == C_PAY) {
        if (wp_settle(p->w, p->id, status, hdrs, nhdrs, &o, reason, sizeof reason, &r) != 0)
            o = WP_OUT_KEEP;
        if (o == WP_OUT_RESEND && p->sends < WP_PAY_MAX_ROUNDS) {
            set_cred(p, C_PAY, r.cred, cred);
            p->sends++;
            return WP_PAY_RETRY;
        }
        unreserve(p);
        if (o == WP_OUT_KEEP || o == WP_OUT_RESEND) {
            in_flight_page(p, page, status >= 500 ? "the site answered with a server error"
                                                  : "the answer could not be settled");
            return WP_PAY_PAGE;
        }
        if (o == WP_OUT_PAID || o == WP_OUT_FORGED || o == WP_OUT_NOT_CHARGED)
            return WP_PAY_DELIVER;
        if (status == 400) {
            page_html(page, 402, "Payment refused", "The site ", p->ri.host,
                      " could not read the wallet's payment (malformed); nothing was charged.",
                      "", NULL);
            return WP_PAY_PAGE;
        }
    }
    if (status != 402)
        return WP_PAY_DELIVER;
    return on_offer(p, hdrs, nhdrs, cred, page);
}

void wp_pay_transport_failed(wp_pay *p, const char *why, wp_page *page)
{
    if (p != NULL && p->w != NULL && p->cur == C_PAY) {
        wp_log(WP_LOG_WARN, "WP00106 no answer from %s for payment %llu (%s): kept in flight",
               p->ri.host, (unsigned long long)p->id, why ? why : "transport error");
        unreserve(p);
        p->cur = C_NONE;
        in_flight_page(p, page, "no answer came");
        return;
    }
    if (p != NULL)
        p->cur = C_NONE;
    page_html(page, 502, "Site unreachable", "The wallet could not reach ",
              p != NULL && p->w != NULL ? p->ri.host : "the site", ": ",
              why ? why : "transport error", ".", NULL);
}

void wp_pay_end(wp_pay *p)
{
    if (p == NULL || p == &null_pay)
        return;
    if (p->w != NULL && p->cur == C_PAY) {
        /* sent, never answered: stays in flight for a later replay */
        unreserve(p);
    }
    free(p->method);
    free(p->host);
    free(p->target);
    free(p->url);
    if (p->value[0] != '\0')    /* a credential was made: wipe what it used */
        OPENSSL_cleanse(p->value, strnlen(p->value, sizeof p->value));
    free(p);
}
