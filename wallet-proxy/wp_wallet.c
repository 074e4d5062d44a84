/*
 * wp_wallet.c - the wallet as a whole (wp_wallet.h): opening the store with
 * the account key, crash recovery (pending broker requests and in-flight
 * payments are sent again identically), the balance and history views,
 * top-up, and the durable broker requests every acquisition goes through
 * (written to the store before they are sent, settled in one transaction
 * with their effects).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include "wp_engine.h"

#define RECOVER_MAX 10000   /* in-flight payments looked at per recovery */

/* ---- account key --------------------------------------------------------------------- */

static int read_key(const char *path, uint8_t key[MP_SECRET_LEN], char *err, size_t errlen)
{
    char text[256];
    struct stat sb;
    ssize_t got;
    size_t len, n = 0;
    int fd = -1, rv = -1;

    if (path == NULL || path[0] == '\0') {
        snprintf(err, errlen, "account_key_file is not set");
        goto out;
    }
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0 || fstat(fd, &sb) != 0) {
        snprintf(err, errlen, "account key %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode) || (sb.st_mode & 0077) != 0) {
        snprintf(err, errlen, "account key %s: must be a regular file with mode 0600", path);
        goto out;
    }
    got = read(fd, text, sizeof text - 1);
    if (got <= 0) {
        snprintf(err, errlen, "account key %s: empty or unreadable", path);
        goto out;
    }
    len = (size_t)got;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '
                       || text[len - 1] == '\t'))
        len--;
    if (mp_b64url_decode(text, len, key, MP_SECRET_LEN, &n) != MP_OK || n != MP_SECRET_LEN) {
        snprintf(err, errlen, "account key %s: not base64url of 32 bytes", path);
        goto out;
    }
    rv = 0;
out:
    if (fd >= 0)
        close(fd);
    OPENSSL_cleanse(text, sizeof text);
    return rv;
}

int wp_wallet_open(const wp_config *cfg, wp_wallet **out, char *err, size_t errlen)
{
    uint8_t key[MP_SECRET_LEN];
    wp_wallet *w = NULL;
    int rv = -1, curl_up = 0;

    if ((w = calloc(1, sizeof *w)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    w->cfg = cfg;
    pthread_mutex_init(&w->mu, NULL);
    pthread_mutex_init(&w->buy_mu, NULL);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "libcurl cannot start");
        goto out;
    }
    curl_up = 1;
    if (cfg->account[0] == '\0') {
        snprintf(err, errlen, "account is not set");
        goto out;
    }
    if (read_key(cfg->account_key_file, key, err, errlen) != 0
        || wp_broker_new(cfg, key, &w->broker, err, errlen) != 0
        || wp_store_open(cfg->state_dir, cfg->store_size, &w->st, err, errlen) != 0
        || wp_policy_load(w, err, errlen) != 0)
        goto out;
    if (strncmp(cfg->broker_url, "http://", 7) == 0)
        wp_log(WP_LOG_WARN, "WP00111 broker_url is plain http: customer secrets travel in the "
               "clear (tests only)");
    wp_log(WP_LOG_INFO, "WP00100 wallet store %s/wallet.lmdb open for account %s",
           cfg->state_dir, cfg->account);
    *out = w;
    w = NULL;
    curl_up = 0;
    rv = 0;
out:
    OPENSSL_cleanse(key, sizeof key);
    if (w != NULL) {
        wp_broker_free(w->broker);
        wp_store_close(w->st);
        pthread_mutex_destroy(&w->mu);
        pthread_mutex_destroy(&w->buy_mu);
        free(w);
    }
    if (curl_up)
        curl_global_cleanup();
    return rv;
}

void wp_wallet_close(wp_wallet *w)
{
    if (w == NULL)
        return;
    wp_broker_free(w->broker);
    wp_store_close(w->st);
    pthread_mutex_destroy(&w->mu);
    pthread_mutex_destroy(&w->buy_mu);
    free(w->resv);
    free(w);
    curl_global_cleanup();
}

/* ---- durable broker requests --------------------------------------------------------- */

int wp_breq_put(wp_txn *t, const char *ep, json_t *body, json_t *ctx,
                char rid[WP_REQUEST_ID_LEN + 1])
{
    json_t *rec = NULL;
    char *text = NULL;
    int rv = -1;

    if (wp_request_id(rid) != 0 || json_object_set_new(body, "request_id", json_string(rid)) != 0
        || (text = json_dumps(body, JSON_COMPACT)) == NULL)
        goto out;
    /* the body is kept as the exact text sent, so a replay is byte-identical */
    rec = json_pack("{s:s, s:s, s:O, s:I}", "ep", ep, "body", text, "ctx", ctx, "created",
                    (json_int_t)wp_now());
    if (rec == NULL)
        goto out;
    rv = wp_store_put(t, WPS_BREQ, rid, strlen(rid), rec);
out:
    if (text != NULL) {
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
    json_decref(rec);
    return rv;
}

/* Applies (ok) or undoes (refused) pending request rid and deletes it. */
static int breq_finish(wp_wallet *w, const char *rid, json_t *rec, json_t *resp, int ok,
                       const char *reason)
{
    const char *ep = wp_jstr(rec, "ep");
    wp_txn *t = NULL;
    int rc, rv = -1;

    pthread_mutex_lock(&w->mu);
    if (wp_store_begin(w->st, 0, &t) != 0)
        goto out;
    if (ok)
        rc = strcmp(ep, "certify") == 0 ? wp_pw_apply(w, t, rec, resp)
                                         : wp_mc_apply(w, t, ep, rec, resp);
    else
        rc = wp_mc_refused(w, t, ep, rec, reason);
    if (rc != 0 || wp_store_del(t, WPS_BREQ, rid, strlen(rid)) != 0)
        goto out;
    rv = wp_store_commit(t);
    t = NULL;
out:
    if (t != NULL)
        wp_store_abort(t);
    pthread_mutex_unlock(&w->mu);
    if (rv != 0)
        wp_log(WP_LOG_ERROR, "WP00110 cannot record the broker's answer to %s: %s (kept "
               "pending)", ep, wp_store_error());
    return rv;
}

int wp_breq_send(wp_wallet *w, const char *rid, char *err, size_t errlen)
{
    json_t *rec = NULL;
    wp_txn *t = NULL;
    wp_bresp r;
    int rc, rv = -1;

    memset(&r, 0, sizeof r);
    if (wp_store_begin(w->st, 1, &t) != 0) {
        snprintf(err, errlen, "%s", wp_store_error());
        goto out;
    }
    rc = wp_store_get(t, WPS_BREQ, rid, strlen(rid), &rec);
    wp_store_abort(t);
    if (rc != 0) {
        snprintf(err, errlen, "broker request %s is gone", rc < 0 ? "unreadable" : "");
        goto out;
    }
    if (wp_broker_post(w->broker, wp_jstr(rec, "ep"), wp_jstr(rec, "body"), &r) != 0) {
        wp_log(WP_LOG_WARN, "WP00102 %s (kept pending, sent again later)", r.msg);
        snprintf(err, errlen, "%s", r.msg);
        goto out;
    }
    if (r.status == 200 && r.json != NULL) {
        rv = breq_finish(w, rid, rec, r.json, 1, NULL);
        if (rv != 0)
            snprintf(err, errlen, "%s", wp_store_error());
        goto out;
    }
    snprintf(err, errlen, "%s", r.msg);
    if (r.status >= 500 || r.status == 200) {
        wp_log(WP_LOG_WARN, "WP00102 %s (kept pending, sent again later)", r.msg);
        goto out;
    }
    /* a refusal had no effect at the broker (PROTOCOL.md 8.2) */
    wp_log(WP_LOG_WARN, "WP00102 %s", r.msg);
    (void)breq_finish(w, rid, rec, NULL, 0, r.reason);
out:
    json_decref(rec);
    wp_bresp_clear(&r);
    return rv;
}

static int collect_key(void *ctx, const uint8_t *key, size_t klen, json_t *v)
{
    json_t *list = ctx;

    (void)v;
    if (json_array_size(list) >= RECOVER_MAX)
        return 1;
    json_array_append_new(list, json_stringn((const char *)key, klen));
    return 0;
}

int wp_breq_replay(wp_wallet *w)
{
    char err[256];
    json_t *list = json_array();
    wp_txn *t = NULL;
    size_t i;
    int n = 0;

    if (list == NULL || wp_store_begin(w->st, 1, &t) != 0) {
        json_decref(list);
        return -1;
    }
    if (wp_store_scan(t, WPS_BREQ, NULL, 0, 0, collect_key, list) != 0)
        n = -1;
    wp_store_abort(t);
    for (i = 0; n >= 0 && i < json_array_size(list); i++) {
        if (wp_breq_send(w, json_string_value(json_array_get(list, i)), err, sizeof err) == 0)
            n++;
    }
    json_decref(list);
    return n;
}

/* ---- recovery ------------------------------------------------------------------------ */

typedef struct {
    const wp_wallet *w;
    json_t *list;
} inf_collect;

static int collect_inflight(void *ctx, const uint8_t *key, size_t klen, json_t *inf)
{
    inf_collect *c = ctx;

    (void)key;
    (void)klen;
    if (json_array_size(c->list) >= RECOVER_MAX)
        return 1;
    if (!wp_resv_has(c->w, wp_ju64(inf, "id")))
        json_array_append(c->list, inf);
    return 0;
}

/* Sends one in-flight payment again as it was sent; 1 settled, 0 still in
 * flight. GET and HEAD go as they were; other methods go with an empty body. */
static int replay_one(wp_wallet *w, json_t *inf)
{
    char url[MP_HOST_MAX + MP_TARGET_MAX + 16], msg[256], value[MP_WIRE_TEXT_MAX + 16];
    const char *method = wp_jstr(inf, "method");
    uint64_t id = wp_ju64(inf, "id");
    wp_outcome o = WP_OUT_KEEP;
    wp_hdr *hdrs = NULL;
    size_t n = 0;
    long status = 0;
    wp_ready r;
    int round, rv = 0;

    snprintf(url, sizeof url, "http://%s%s", wp_jstr(inf, "host"), wp_jstr(inf, "target"));
    snprintf(value, sizeof value, "Payment %s", wp_jstr(inf, "cred"));
    for (round = 0; round < 2; round++) {
        if (wp_http_replay(w->cfg, method, url, wp_jstr(inf, "hdr"), value, &status, &hdrs, &n,
                           msg, sizeof msg) != 0) {
            wp_log(WP_LOG_WARN, "WP00107 in-flight payment %llu to %s: no answer (%s); kept",
                   (unsigned long long)id, wp_jstr(inf, "host"), msg);
            break;
        }
        rv = wp_settle(w, id, status, hdrs, n, &o, NULL, 0, &r) == 0 && o != WP_OUT_KEEP;
        wp_hdrs_free(hdrs, n);
        hdrs = NULL;
        if (o != WP_OUT_RESEND)
            break;
        rv = 0;
        snprintf(value, sizeof value, "Payment %s", r.cred);
    }
    if (rv)
        wp_log(WP_LOG_INFO, "WP00107 in-flight payment %llu to %s%s settled after %ld",
               (unsigned long long)id, wp_jstr(inf, "host"), wp_jstr(inf, "target"), status);
    OPENSSL_cleanse(value, sizeof value);
    return rv;
}

int wp_wallet_recover(wp_wallet *w)
{
    inf_collect c = { w, json_array() };
    wp_txn *t = NULL;
    size_t i;
    int n = 0, b;

    if (c.list == NULL)
        return -1;
    pthread_mutex_lock(&w->buy_mu);
    b = wp_breq_replay(w);
    pthread_mutex_unlock(&w->buy_mu);
    if (b < 0) {
        json_decref(c.list);
        return -1;
    }
    pthread_mutex_lock(&w->mu);
    if (wp_store_begin(w->st, 1, &t) != 0
        || wp_store_scan(t, WPS_INFLIGHT, NULL, 0, 0, collect_inflight, &c) != 0)
        n = -1;
    /* reserve them, so that no browser request replays them meanwhile */
    for (i = 0; n == 0 && i < json_array_size(c.list); i++)
        if (wp_resv_add(w, wp_ju64(json_array_get(c.list, i), "id")) != 0)
            n = -1;
    if (n < 0)
        for (; i > 0; i--)
            wp_resv_del(w, wp_ju64(json_array_get(c.list, i - 1), "id"));
    wp_store_abort(t);
    pthread_mutex_unlock(&w->mu);
    for (i = 0; n >= 0 && i < json_array_size(c.list); i++) {
        json_t *inf = json_array_get(c.list, i);

        n += replay_one(w, inf);
        pthread_mutex_lock(&w->mu);
        wp_resv_del(w, wp_ju64(inf, "id"));
        pthread_mutex_unlock(&w->mu);
    }
    if (n >= 0 && (b > 0 || json_array_size(c.list) > 0))
        wp_log(WP_LOG_INFO, "WP00107 recovery: %d broker request(s) and %d of %zu in-flight "
               "payment(s) settled", b, n, json_array_size(c.list));
    json_decref(c.list);
    return n;
}

/* ---- views --------------------------------------------------------------------------- */

typedef struct {
    json_t *vendors;          /* vendor -> {units, inflight, pieces, cur} */
    uint64_t b_units, b_inflight, b_pieces;
    char cur[4];
} bal;

static int bal_visit(void *ctx, const uint8_t *key, size_t klen, json_t *p)
{
    bal *b = ctx;
    const char *state = wp_jstr(p, "state");
    uint64_t v = wp_ju64(p, "value");
    json_t *e;

    (void)klen;
    if (strcmp(state, "dead") == 0)
        return 0;
    if (key[0] == 'b') {
        if (strcmp(state, "free") == 0) {
            b->b_units += v;
            b->b_pieces++;
        } else {
            b->b_inflight += v;
        }
        return 0;
    }
    e = json_object_get(b->vendors, wp_jstr(p, "issuer"));
    if (e == NULL) {
        e = json_pack("{s:I, s:I, s:I, s:s}", "units", (json_int_t)0, "inflight", (json_int_t)0,
                      "pieces", (json_int_t)0, "cur", wp_jstr(p, "cur"));
        if (e == NULL || json_object_set_new(b->vendors, wp_jstr(p, "issuer"), e) != 0)
            return -1;
    }
    if (strcmp(state, "free") == 0) {
        json_object_set_new(e, "units", json_integer((json_int_t)(wp_ju64(e, "units") + v)));
        json_object_set_new(e, "pieces", json_integer((json_int_t)(wp_ju64(e, "pieces") + 1)));
    } else {
        json_object_set_new(e, "inflight", json_integer((json_int_t)(wp_ju64(e, "inflight") + v)));
    }
    return 0;
}

typedef struct {
    json_t *chains;
    json_t *hosts;            /* vendor -> host, from chains and in-flight records */
    size_t inflight;
} bal2;

static int chain_view(void *ctx, const uint8_t *key, size_t klen, json_t *c)
{
    bal2 *b = ctx;
    char a[MP_AMOUNT_STRMAX];
    mp_amount unit;
    uint64_t n = wp_ju64(c, "n"), next = wp_ju64(c, "next");

    (void)key;
    (void)klen;
    if (json_is_true(json_object_get(c, "dead")) || wp_ju64(c, "expiry") <= wp_now())
        return 0;
    if (mp_amount_set(&unit, wp_ju64(c, "unit"), wp_jstr(c, "cur")) != MP_OK)
        return 0;
    json_object_set_new(b->hosts, wp_jstr(c, "vendor"), json_string(wp_jstr(c, "host")));
    json_array_append_new(b->chains,
                          json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "vendor",
                                    wp_jstr(c, "vendor"), "host", wp_jstr(c, "host"), "unit",
                                    wp_amt(&unit, a), "n", (json_int_t)n, "used",
                                    (json_int_t)next, "words_left",
                                    (json_int_t)(n > next ? n - next : 0), "expires",
                                    (json_int_t)wp_ju64(c, "expiry")));
    return 0;
}

static int inflight_count(void *ctx, const uint8_t *key, size_t klen, json_t *inf)
{
    bal2 *b = ctx;

    (void)key;
    (void)klen;
    b->inflight++;
    json_object_set_new(b->hosts, wp_jstr(inf, "vendor"), json_string(wp_jstr(inf, "host")));
    return 0;
}

static int hosts_visit(void *ctx, const uint8_t *key, size_t klen, json_t *o)
{
    bal2 *b = ctx;

    (void)key;
    (void)klen;
    if (wp_jstr(o, "vendor")[0])
        json_object_set_new(b->hosts, wp_jstr(o, "vendor"), json_string(wp_jstr(o, "host")));
    return 0;
}

json_t *wp_wallet_balance(wp_wallet *w)
{
    bal b = { json_object(), 0, 0, 0, "" };
    bal2 b2 = { json_array(), json_object(), 0 };
    char a[MP_AMOUNT_STRMAX], day[11];
    json_t *res = NULL, *vendors = json_array(), *e;
    const char *vname;
    mp_amount x;
    wp_txn *t = NULL;
    uint64_t spent = 0, total;

    if (b.vendors == NULL || b2.chains == NULL || b2.hosts == NULL || vendors == NULL)
        goto out;
    pthread_mutex_lock(&w->mu);
    memcpy(b.cur, w->pol.threshold.cur, sizeof b.cur);
    pthread_mutex_unlock(&w->mu);
    wp_day(wp_now(), day);
    if (wp_store_begin(w->st, 1, &t) != 0 || wp_store_scan(t, WPS_SCRIP, NULL, 0, 0, bal_visit, &b)
        || wp_store_scan(t, WPS_OFFER, "P", 1, 0, hosts_visit, &b2) != 0
        || wp_store_scan(t, WPS_CHAIN, NULL, 0, 0, chain_view, &b2) != 0
        || wp_store_scan(t, WPS_INFLIGHT, NULL, 0, 0, inflight_count, &b2) != 0)
        goto out;
    spent = wp_spent_get(t, day, "");
    total = b.b_units + b.b_inflight;
    json_object_foreach(b.vendors, vname, e) {
        if (mp_amount_set(&x, wp_ju64(e, "units"), wp_jstr(e, "cur")) != MP_OK)
            continue;
        total += wp_ju64(e, "units") + wp_ju64(e, "inflight");
        json_array_append_new(vendors,
                              json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "vendor", vname, "host",
                                        wp_jstr(b2.hosts, vname), "scrip", wp_amt(&x, a),
                                        "scrip_units", (json_int_t)x.units, "pieces",
                                        (json_int_t)wp_ju64(e, "pieces"), "in_flight_units",
                                        (json_int_t)wp_ju64(e, "inflight")));
    }
    if (mp_amount_set(&x, b.b_units, b.cur) != MP_OK)
        goto out;
    res = json_pack("{s:{s:s, s:s, s:s, s:I, s:I, s:I}, s:O, s:O, s:I, s:s, s:I, s:I}", "broker",
                    "url", w->cfg->broker_url, "account", w->cfg->account, "scrip", wp_amt(&x, a),
                    "scrip_units", (json_int_t)b.b_units, "pieces", (json_int_t)b.b_pieces,
                    "in_flight_units", (json_int_t)b.b_inflight, "vendors", vendors, "chains",
                    b2.chains, "in_flight", (json_int_t)b2.inflight, "spent_today", "",
                    "spent_today_units", (json_int_t)spent, "holdings_units", (json_int_t)total);
    if (res != NULL && mp_amount_set(&x, spent, b.cur) == MP_OK)
        json_object_set_new(res, "spent_today", json_string(wp_amt(&x, a)));
out:
    wp_store_abort(t);
    json_decref(b.vendors);
    json_decref(b2.chains);
    json_decref(b2.hosts);
    json_decref(vendors);
    return res;
}

typedef struct {
    json_t *list;
    size_t limit;
} hist_ctx;

static int hist_visit(void *ctx, const uint8_t *key, size_t klen, json_t *h)
{
    hist_ctx *hc = ctx;

    (void)key;
    (void)klen;
    if (json_array_size(hc->list) >= hc->limit)
        return 1;
    json_array_append(hc->list, h);
    return 0;
}

json_t *wp_wallet_history(wp_wallet *w, size_t limit)
{
    hist_ctx hc = { json_array(), limit };
    wp_txn *t = NULL;

    if (hc.list == NULL)
        return NULL;
    if (limit > 0 && (wp_store_begin(w->st, 1, &t) != 0
                      || wp_store_scan(t, WPS_HISTORY, NULL, 0, 1, hist_visit, &hc) != 0)) {
        json_decref(hc.list);
        hc.list = NULL;
    }
    wp_store_abort(t);
    return hc.list;
}

json_t *wp_wallet_topup(wp_wallet *w, const char *amount, char *err, size_t errlen)
{
    mp_amount a;
    char cur[4];
    int rc;

    if (amount == NULL || mp_amount_parse(amount, strlen(amount), &a) != MP_OK || a.units == 0) {
        snprintf(err, errlen, "amount: such as \"1.00 USD\"");
        return NULL;
    }
    pthread_mutex_lock(&w->mu);
    memcpy(cur, w->pol.threshold.cur, sizeof cur);
    pthread_mutex_unlock(&w->mu);
    if (strcmp(a.cur, cur) != 0) {
        snprintf(err, errlen, "amount: the wallet's currency is %s", cur);
        return NULL;
    }
    pthread_mutex_lock(&w->buy_mu);
    (void)wp_breq_replay(w);
    rc = wp_mc_buy(w, &a, err, errlen);
    pthread_mutex_unlock(&w->buy_mu);
    if (rc != 0)
        return NULL;
    return wp_wallet_balance(w);
}
