/*
 * mpadmin_redeem.c - collect the vendor's earnings at its broker
 * (docs/PROTOCOL.md 8.6, POST <broker>/redeem).
 *
 * What is claimed comes from the vendor's store:
 *   Millicent  every spend not yet deposited (mps_mc_list_undeposited): the
 *              mc_payment as the customer sent it and the request it paid for
 *   PayWord    every tracker whose highest accepted word l is above the word
 *              last redeemed (mps_pw_list): a redeem record {commitment, l, w_l}
 *
 * Safe to run again after any failure:
 *   - items are sorted and cut into requests deterministically, and each
 *     request_id is derived from its items (the first 16 bytes of SHA-256
 *     over them), so a re-run with the same items sends the same request
 *     and the broker answers it from its idempotency record, crediting
 *     nothing twice;
 *   - the broker itself credits each scrip id once and each commitment only
 *     above the highest word it has credited, so a re-run with other items
 *     (new payments meanwhile) is harmless too;
 *   - the store is marked only after a 200 answer that parses completely,
 *     and only for the items the broker answered "ok"; nothing is marked
 *     for a request that failed.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <curl/curl.h>
#include <jansson.h>
#include "mpadmin.h"
#include "mod_micropay_store.h"

#define REDEEM_ITEMS_MAX 1000                  /* per request, PROTOCOL.md 8.6 */
#define BODY_MAX         (1024 * 1024)         /* request and response bodies */
#define BODY_BUDGET      (BODY_MAX - 4096)     /* room left for the envelope */
#define KIND_MC 0
#define KIND_PW 1

typedef struct {
    int       kind;
    char     *key;          /* canonical text: sort order and request id */
    char     *rec;          /* base64url payment or redeem record */
    char     *method, *host, *target;   /* Millicent */
    uint64_t  scrip_id;                 /* Millicent */
    uint8_t   commit_id[MP_HASH_LEN];   /* PayWord */
    uint32_t  last;                     /* PayWord: l claimed */
    mp_amount claim;        /* what we expect: scrip value, or new words x unit */
    size_t    json_len;     /* bound on its size in the body */
    /* per request */
    int       index;        /* in its kind's array */
    int       answered, ok;
    char      status[32];
} item;

typedef struct {
    const char *vendor;
    const char *broker_name;        /* PayWord: only this broker's certificates */
    const uint8_t *delegated;       /* Millicent: only these series (NULL: all) */
    item   *items;
    size_t  n, cap;
    size_t  bad_records, not_delegated, other_broker, other_vendor;
    int     failed;
    mp_pw_commit *commit;           /* scratch */
    mp_pw_redeem *redeem;           /* scratch */
    uint8_t *buf;                   /* scratch: MP_WIRE_MAX */
    mp_mc_payment *pay;             /* scratch */
} collect;

/* ---- collecting -------------------------------------------------------------------- */

static void item_free(item *it)
{
    free(it->key);
    free(it->rec);
    free(it->method);
    free(it->host);
    free(it->target);
}

static item *new_item(collect *c)
{
    item *it;

    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        item *ni = realloc(c->items, cap * sizeof *ni);
        if (ni == NULL)
            return NULL;
        c->items = ni;
        c->cap = cap;
    }
    it = &c->items[c->n];
    memset(it, 0, sizeof *it);
    return it;
}

static char *b64_dup(const uint8_t *p, size_t n)
{
    size_t cap = mp_b64url_len(n) + 1;
    char *t = malloc(cap);

    if (t != NULL && mpa_b64(p, n, t, cap) != 0) {
        free(t);
        t = NULL;
    }
    return t;
}

/* Bytes a JSON string of s takes at most, quotes included. */
static size_t json_len(const char *s)
{
    return 2 * strlen(s) + 2;
}

static int collect_mc(void *ctx, uint64_t scrip_id, const uint8_t *payment, size_t payment_len,
                      const char *method, const char *host, const char *target)
{
    collect *c = ctx;
    mp_mc_payment *p = c->pay;
    item *it;
    size_t klen;

    if (mp_mc_payment_decode(payment, payment_len, p) != MP_OK || p->scrip.id != scrip_id) {
        c->bad_records++;
        return 0;
    }
    if (strcmp(p->scrip.vendor, c->vendor) != 0) {
        c->other_vendor++;
        return 0;
    }
    /* Scrip the vendor minted itself (change) is its own liability: the
     * broker pays only for scrip of the series it was delegated. */
    if (c->delegated != NULL && !(c->delegated[MP_SERIES(scrip_id) / 8] & (1u << (MP_SERIES(scrip_id) % 8)))) {
        c->not_delegated++;
        return 0;
    }
    if ((it = new_item(c)) == NULL)
        goto nomem;
    it->kind = KIND_MC;
    it->scrip_id = scrip_id;
    it->claim = p->scrip.value;
    if ((it->rec = b64_dup(payment, payment_len)) == NULL || (it->method = strdup(method)) == NULL
        || (it->host = strdup(host)) == NULL || (it->target = strdup(target)) == NULL)
        goto nomem_item;
    /* Fields hold no spaces (visible ASCII), so this text is unambiguous. */
    klen = 2 + strlen(it->rec) + 1 + strlen(method) + 1 + strlen(host) + 1 + strlen(target) + 1;
    if ((it->key = malloc(klen)) == NULL)
        goto nomem_item;
    snprintf(it->key, klen, "m %s %s %s %s", it->rec, method, host, target);
    it->json_len = 64 + strlen(it->rec) + json_len(method) + json_len(host) + json_len(target);
    c->n++;
    return 0;
nomem_item:
    item_free(it);
nomem:
    c->failed = 1;
    return 1;
}

static int collect_pw(void *ctx, const uint8_t *commit, size_t commit_len, uint32_t last,
                      const uint8_t w_last[MP_HASH_LEN], uint32_t redeemed)
{
    collect *c = ctx;
    mp_pw_redeem *r = c->redeem;
    item *it;
    size_t len = 0;

    if (last <= redeemed)
        return 0;                       /* nothing new since the last redemption */
    if (mp_pw_commit_decode(commit, commit_len, c->commit) != MP_OK) {
        c->bad_records++;
        return 0;
    }
    if (strcmp(c->commit->vendor, c->vendor) != 0) {
        c->other_vendor++;
        return 0;
    }
    if (c->broker_name != NULL && strcmp(c->commit->cert.broker, c->broker_name) != 0) {
        c->other_broker++;
        return 0;
    }
    memcpy(&r->commit, c->commit, sizeof r->commit);
    r->last = last;
    memcpy(r->w_last, w_last, MP_HASH_LEN);
    if (mp_pw_redeem_encode(r, c->buf, MP_WIRE_MAX, &len) != MP_OK) {
        c->bad_records++;
        return 0;
    }
    if ((it = new_item(c)) == NULL)
        goto nomem;
    it->kind = KIND_PW;
    memcpy(it->commit_id, c->commit->id, MP_HASH_LEN);
    it->last = last;
    if (mp_amount_mul(&c->commit->unit, last - redeemed, &it->claim) != MP_OK)
        mp_amount_set(&it->claim, 0, c->commit->unit.cur);
    if ((it->rec = b64_dup(c->buf, len)) == NULL
        || (it->key = malloc(strlen(it->rec) + 3)) == NULL)
        goto nomem_item;
    snprintf(it->key, strlen(it->rec) + 3, "p %s", it->rec);
    it->json_len = 8 + strlen(it->rec);
    c->n++;
    return 0;
nomem_item:
    item_free(it);
nomem:
    c->failed = 1;
    return 1;
}

static int item_cmp(const void *a, const void *b)
{
    return strcmp(((const item *)a)->key, ((const item *)b)->key);
}

/* ---- the request ----------------------------------------------------------------------- */

typedef struct {
    const char *url;                /* base URL as given */
    char        full[MP_URL_MAX + 16];
    char        target[MP_TARGET_MAX + 1];
    const char *account;
    uint8_t     key[MP_SECRET_LEN];
    const char *cacert;
    long        timeout;
} broker;

/* Splits the broker URL into the request URL and target of /redeem.
 * https always; http only to a loopback host (tests, a broker with
 * MicropayBrokerRequireTLS off). */
static int broker_url(broker *b)
{
    const char *u = b->url, *auth, *path, *end;
    char host[256];
    size_t alen, plen, hlen, i;
    int https;

    if (strncasecmp(u, "https://", 8) == 0) {
        https = 1;
        auth = u + 8;
    } else if (strncasecmp(u, "http://", 7) == 0) {
        https = 0;
        auth = u + 7;
    } else {
        mpa_err("redeem: --broker takes an https:// URL");
        return -1;
    }
    for (i = 0; u[i]; i++)
        if ((unsigned char)u[i] < 0x21 || (unsigned char)u[i] > 0x7e || u[i] == '?' || u[i] == '#'
            || u[i] == '"' || u[i] == '\\') {
            mpa_err("redeem: the broker URL has a character it cannot have (query, fragment, "
                    "space or quote)");
            return -1;
        }
    path = strchr(auth, '/');
    end = path ? path : auth + strlen(auth);
    alen = (size_t)(end - auth);
    if (alen == 0 || memchr(auth, '@', alen) != NULL) {
        mpa_err("redeem: the broker URL needs a host (and no user name)");
        return -1;
    }
    /* host without port: [v6] or up to ':' */
    if (auth[0] == '[') {
        const char *rb = memchr(auth, ']', alen);
        if (rb == NULL) {
            mpa_err("redeem: bad IPv6 address in the broker URL");
            return -1;
        }
        hlen = (size_t)(rb - auth) + 1;
    } else {
        const char *colon = memchr(auth, ':', alen);
        hlen = colon ? (size_t)(colon - auth) : alen;
    }
    if (hlen >= sizeof host) {
        mpa_err("redeem: broker host name too long");
        return -1;
    }
    memcpy(host, auth, hlen);
    host[hlen] = 0;
    if (!https && strcasecmp(host, "localhost") != 0 && strcmp(host, "[::1]") != 0
        && strncmp(host, "127.", 4) != 0) {
        mpa_err("redeem: plain http is for a broker on this machine only (127.0.0.1, [::1], "
                "localhost); use https");
        return -1;
    }
    plen = path ? strlen(path) : 0;
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    if (plen + 7 > MP_TARGET_MAX || (size_t)(end - u) + plen + 8 > sizeof b->full) {
        mpa_err("redeem: broker URL too long");
        return -1;
    }
    if (plen)
        memcpy(b->target, path, plen);
    memcpy(b->target + plen, "/redeem", 8);
    memcpy(b->full, u, (size_t)(end - u));
    memcpy(b->full + (end - u), b->target, plen + 8);
    return 0;
}

static int load_key(const char *path, uint8_t key[MP_SECRET_LEN])
{
    char text[256];
    size_t len = 0, n = 0;
    int rc = -1;

    if (mpa_read_file(path, text, sizeof text, &len) != 0)
        goto done;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '
                       || text[len - 1] == '\t'))
        len--;
    if (mp_b64url_decode(text, len, key, MP_SECRET_LEN, &n) != MP_OK || n != MP_SECRET_LEN) {
        mpa_err("redeem: %s does not hold an account key (32 bytes, base64url, as accounts "
                "create wrote it)", path);
        goto done;
    }
    rc = 0;
done:
    mp_wipe(text, sizeof text);
    return rc;
}

typedef struct {
    char  *buf;
    size_t len;
    int    too_big;
} body;

static size_t on_data(char *p, size_t size, size_t nmemb, void *ctx)
{
    body *b = ctx;
    size_t n = size * nmemb;
    char *nb;

    if (n > BODY_MAX - b->len) {
        b->too_big = 1;
        return 0;
    }
    if ((nb = realloc(b->buf, b->len + n + 1)) == NULL)
        return 0;
    b->buf = nb;
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    b->buf[b->len] = 0;
    return n;
}

/* POSTs body to the broker, signed; *status and *resp (malloc'ed) on a
 * completed exchange. -1 when none completed. */
static int post(const broker *b, const char *req, size_t req_len, long *status, body *resp)
{
    uint8_t hash[MP_HASH_LEN], sig[MP_HASH_LEN];
    char sig_b64[64], auth[256], err[CURL_ERROR_SIZE] = "";
    struct curl_slist *h = NULL, *nh;
    uint64_t ts = (uint64_t)time(NULL);
    CURL *curl = NULL;
    CURLcode cc;
    int rc = -1;

    if (mp_sha256(req, req_len, hash) != MP_OK
        || mp_broker_sig(b->key, b->account, "POST", b->target, strlen(b->target), ts, hash,
                         sig) != MP_OK
        || mpa_b64(sig, sizeof sig, sig_b64, sizeof sig_b64) != 0) {
        mpa_err("redeem: cannot sign the request");
        goto done;
    }
    snprintf(auth, sizeof auth, "Authorization: MP1-HMAC account=\"%s\", ts=\"%llu\", sig=\"%s\"",
             b->account, (unsigned long long)ts, sig_b64);
    if ((curl = curl_easy_init()) == NULL) {
        mpa_err("redeem: cannot start libcurl");
        goto done;
    }
    if ((nh = curl_slist_append(h, auth)) == NULL)
        goto nomem;
    h = nh;
    if ((nh = curl_slist_append(h, "Content-Type: application/json")) == NULL)
        goto nomem;
    h = nh;
    if ((nh = curl_slist_append(h, "Accept: application/json")) == NULL)
        goto nomem;
    h = nh;
    if ((nh = curl_slist_append(h, "Expect:")) == NULL)
        goto nomem;
    h = nh;
    curl_easy_setopt(curl, CURLOPT_URL, b->full);
    /* The signature covers the target as sent: no dot-segment squashing. */
    curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req_len);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "mpadmin");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, b->timeout);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, b->timeout < 30 ? b->timeout : 30L);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (b->cacert != NULL)
        curl_easy_setopt(curl, CURLOPT_CAINFO, b->cacert);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, err);
    if ((cc = curl_easy_perform(curl)) != CURLE_OK) {
        mpa_err("redeem: %s: %s", b->full,
                resp->too_big ? "answer larger than 1 MiB" : err[0] ? err : curl_easy_strerror(cc));
        goto done;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
    rc = 0;
    goto done;
nomem:
    mpa_err("redeem: out of memory");
done:
    curl_slist_free_all(h);
    if (curl != NULL)
        curl_easy_cleanup(curl);
    mp_wipe(auth, sizeof auth);
    return rc;
}

/* The JSON body of items[0..n-1] (sorted) with its request id; malloc'ed. */
static char *make_body(item *items, size_t n, char reqid[32])
{
    uint8_t h[MP_HASH_LEN];
    json_t *root = NULL, *pw, *mc, *o;
    mp_sha *sha = NULL;
    char *text = NULL, *all = NULL;
    size_t i, total = 16, off = 0, len;
    int npw = 0, nmc = 0;

    /* request_id: SHA-256 over the items' canonical text, one per line. */
    for (i = 0; i < n; i++)
        total += strlen(items[i].key) + 1;
    if ((all = malloc(total)) == NULL)
        goto done;
    memcpy(all, "MP1 redeem\n", 11);
    off = 11;
    for (i = 0; i < n; i++) {
        len = strlen(items[i].key);
        memcpy(all + off, items[i].key, len);
        off += len;
        all[off++] = '\n';
    }
    if (mp_sha_new(&sha) != MP_OK || mp_sha_digest(sha, all, off, h) != MP_OK
        || mpa_b64(h, 16, reqid, 32) != 0)
        goto done;
    if ((root = json_object()) == NULL || (pw = json_array()) == NULL
        || json_object_set_new(root, "request_id", json_string(reqid)) != 0
        || json_object_set_new(root, "payword", pw) != 0 || (mc = json_array()) == NULL
        || json_object_set_new(root, "millicent", mc) != 0)
        goto done;
    for (i = 0; i < n; i++) {
        if (items[i].kind == KIND_PW) {
            items[i].index = npw++;
            if (json_array_append_new(pw, json_string(items[i].rec)) != 0)
                goto done;
        } else {
            items[i].index = nmc++;
            if ((o = json_object()) == NULL || json_array_append_new(mc, o) != 0
                || json_object_set_new(o, "payment", json_string(items[i].rec)) != 0
                || json_object_set_new(o, "method", json_string(items[i].method)) != 0
                || json_object_set_new(o, "host", json_string(items[i].host)) != 0
                || json_object_set_new(o, "target", json_string(items[i].target)) != 0)
                goto done;
        }
        items[i].answered = items[i].ok = 0;
        items[i].status[0] = 0;
    }
    text = json_dumps(root, JSON_COMPACT);
done:
    json_decref(root);
    mp_sha_free(sha);
    free(all);
    return text;
}

/* Finds the item of kind and index in items[0..n-1]. */
static item *find_item(item *items, size_t n, int kind, json_int_t index)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (items[i].kind == kind && items[i].index == index)
            return &items[i];
    return NULL;
}

static int parse_amount_member(json_t *obj, const char *name, mp_amount *out, int required)
{
    json_t *v = json_object_get(obj, name);
    const char *s;

    if (v == NULL)
        return required ? -1 : 1;
    if (!json_is_string(v))
        return -1;
    s = json_string_value(v);
    return mp_amount_parse(s, strlen(s), out) == MP_OK ? 0 : -1;
}

/* Checks a 200 answer completely before anything is marked: request id,
 * one result per item at most, known kinds and indexes, amounts in one
 * currency. Fills the items' answers, *credited and *balance. */
static int parse_answer(const char *text, size_t len, const char *reqid, item *items, size_t n,
                        mp_amount *credited, mp_amount *balance, int *have_balance)
{
    json_error_t je;
    json_t *root, *results, *r, *v;
    mp_amount a, sum;
    item *it;
    size_t i;
    int kind, rc = -1, got;
    const char *s;

    if ((root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je)) == NULL || !json_is_object(root)) {
        mpa_err("redeem: the broker's answer is not a JSON object");
        goto done;
    }
    v = json_object_get(root, "request_id");
    if (!json_is_string(v) || strcmp(json_string_value(v), reqid) != 0) {
        mpa_err("redeem: the broker answered another request id");
        goto done;
    }
    results = json_object_get(root, "results");
    if (!json_is_array(results)) {
        mpa_err("redeem: the broker's answer has no results");
        goto done;
    }
    mp_amount_set(&sum, 0, "USD");
    got = 0;
    json_array_foreach(results, i, r) {
        if (!json_is_object(r) || !json_is_string(json_object_get(r, "kind"))
            || !json_is_integer(json_object_get(r, "index"))
            || !json_is_string(json_object_get(r, "status")))
            goto bad;
        s = json_string_value(json_object_get(r, "kind"));
        kind = strcmp(s, "payword") == 0 ? KIND_PW : strcmp(s, "millicent") == 0 ? KIND_MC : -1;
        if (kind < 0 || (it = find_item(items, n, kind, json_integer_value(json_object_get(r, "index")))) == NULL
            || it->answered)
            goto bad;
        it->answered = 1;
        s = json_string_value(json_object_get(r, "status"));
        snprintf(it->status, sizeof it->status, "%s", s);
        it->ok = strcmp(s, "ok") == 0;
        if (parse_amount_member(r, "credited", &a, it->ok) < 0)
            goto bad;
        if (it->ok) {
            if (!got) {
                sum = a;
                got = 1;
            } else if (mp_amount_add(&sum, &a, &sum) != MP_OK) {
                goto bad;
            }
        }
    }
    /* Only reported: refusing the answer for its total would refuse the
     * same replayed answer on every later run. */
    if (parse_amount_member(root, "credited", &a, 0) == 0 && got
        && (memcmp(a.cur, sum.cur, 4) != 0 || a.units != sum.units))
        mpa_err("redeem: warning: the broker's total differs from the sum of its results; "
                "reporting the sum");
    if (!got)
        mp_amount_set(&sum, 0, items[0].claim.cur);
    *have_balance = parse_amount_member(root, "balance", balance, 0) == 0;
    *credited = sum;
    rc = 0;
    goto done;
bad:
    mpa_err("redeem: the broker's answer has a result that does not fit the request");
    for (i = 0; i < n; i++)
        items[i].answered = items[i].ok = 0;
done:
    json_decref(root);
    return rc;
}

static void report_error(long status, const body *resp)
{
    json_t *root = resp->buf ? json_loadb(resp->buf, resp->len, 0, NULL) : NULL;
    json_t *reason = root ? json_object_get(root, "reason") : NULL;
    json_t *msg = root ? json_object_get(root, "message") : NULL;

    mpa_err("redeem: the broker refused the request: HTTP %ld%s%s%s%s", status,
            json_is_string(reason) ? " " : "", json_is_string(reason) ? json_string_value(reason) : "",
            json_is_string(msg) ? ": " : "", json_is_string(msg) ? json_string_value(msg) : "");
    json_decref(root);
}

/* Marks the items the broker answered "ok". */
static int mark(mps *s, const char *vendor, item *items, size_t n)
{
    uint64_t *ids = NULL;
    size_t i, nids = 0;
    mp_status st;
    int rc = -1;

    if ((ids = malloc((n ? n : 1) * sizeof *ids)) == NULL) {
        mpa_err("redeem: out of memory");
        return -1;
    }
    for (i = 0; i < n; i++)
        if (items[i].ok && items[i].kind == KIND_MC)
            ids[nids++] = items[i].scrip_id;
    if ((st = mps_mc_mark_deposited(s, vendor, ids, nids)) != MP_OK) {
        mpa_err("redeem: cannot mark the deposited scrip: %s", mps_errmsg(s));
        goto done;
    }
    for (i = 0; i < n; i++) {
        if (!items[i].ok || items[i].kind != KIND_PW)
            continue;
        st = mps_pw_mark_redeemed(s, items[i].commit_id, items[i].last);
        /* compacted meanwhile: nothing left to mark */
        if (st != MP_OK && st != MP_ERR_UNKNOWN_COMMITMENT) {
            mpa_err("redeem: cannot mark a redeemed commitment: %s", mps_errmsg(s));
            goto done;
        }
    }
    (void)mps_sync(s);
    rc = 0;
done:
    free(ids);
    return rc;
}

static void hex(const uint8_t *b, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = 0;
}

static void item_name(const item *it, char *buf, size_t cap)
{
    char h[2 * MP_HASH_LEN + 1];

    if (it->kind == KIND_MC) {
        snprintf(buf, cap, "millicent scrip %llu", (unsigned long long)it->scrip_id);
    } else {
        hex(it->commit_id, MP_HASH_LEN, h);
        snprintf(buf, cap, "payword commitment %s up to word %u", h, it->last);
    }
}

/* ---- the command ------------------------------------------------------------------------ */

static int redeem(const mpa_opts *o, int argc, char **argv)
{
    static mp_keyfile kf;
    static uint8_t delegated[65536 / 8];
    collect c;
    broker b;
    body resp = { NULL, 0, 0 };
    const char *dir = NULL, *key_file = NULL, *secrets = NULL;
    char err[256] = "", reqid[32], name[128], amt[MP_AMOUNT_STRMAX], bal[MP_AMOUNT_STRMAX] = "";
    char *req = NULL;
    uint64_t max = UINT64_MAX, timeout = 60;
    mp_amount credited, total, balance;
    mps *s = NULL;
    size_t i, start, end, size, nsend, nreq = 0, nok = 0, nrefused = 0, npw = 0, nmc = 0;
    int a, dry = 0, have_balance = 0, have_total = 0, first, rc = MPA_FAIL;
    long status = 0;

    memset(&c, 0, sizeof c);
    memset(&b, 0, sizeof b);
    for (a = 0; a < argc; a++) {
        const char *v = a + 1 < argc ? argv[a + 1] : NULL;
        if (strcmp(argv[a], "--vendor") == 0 && v) {
            c.vendor = v;
            a++;
        } else if (strcmp(argv[a], "--broker") == 0 && v) {
            b.url = v;
            a++;
        } else if (strcmp(argv[a], "--account") == 0 && v) {
            b.account = v;
            a++;
        } else if (strcmp(argv[a], "--key-file") == 0 && v) {
            key_file = v;
            a++;
        } else if (strcmp(argv[a], "--max") == 0 && v) {
            if (mpa_parse_u64(v, UINT64_MAX, &max) != 0 || max == 0) {
                mpa_err("redeem: --max takes a number of items above 0");
                return MPA_USAGE;
            }
            a++;
        } else if (strcmp(argv[a], "--timeout") == 0 && v) {
            if (mpa_parse_u64(v, 3600, &timeout) != 0 || timeout == 0) {
                mpa_err("redeem: --timeout takes 1..3600 seconds");
                return MPA_USAGE;
            }
            a++;
        } else if (strcmp(argv[a], "--secrets") == 0 && v) {
            secrets = v;
            a++;
        } else if (strcmp(argv[a], "--broker-name") == 0 && v) {
            c.broker_name = v;
            a++;
        } else if (strcmp(argv[a], "--cacert") == 0 && v) {
            b.cacert = v;
            a++;
        } else if (strcmp(argv[a], "--dry-run") == 0) {
            dry = 1;
        } else if (dir == NULL && argv[a][0] != '-') {
            dir = argv[a];
        } else {
            mpa_err("redeem: unexpected argument '%s'", argv[a]);
            return MPA_USAGE;
        }
    }
    if (dir == NULL || c.vendor == NULL
        || (!dry && (b.url == NULL || b.account == NULL || key_file == NULL))) {
        mpa_err("redeem: VENDOR_STORE --vendor NAME --broker URL --account ID --key-file FILE");
        return MPA_USAGE;
    }
    b.timeout = (long)timeout;
    if (!dry) {
        if (broker_url(&b) != 0)
            return MPA_USAGE;
        if (strlen(b.account) == 0 || strlen(b.account) > MP_ACCOUNT_MAX
            || strpbrk(b.account, "\"\\ ") != NULL) {
            mpa_err("redeem: '%s' is not an account id", b.account);
            return MPA_USAGE;
        }
        if (load_key(key_file, b.key) != 0)
            return MPA_FAIL;
    }
    if (secrets != NULL) {
        int any = 0;
        if (mpa_load_keyfile(secrets, &kf) != 0)
            goto done;
        memset(delegated, 0, sizeof delegated);
        for (i = 0; i < kf.n; i++)
            if (kf.e[i].kind == MP_KEY_SCRIP && kf.e[i].delegated) {
                delegated[kf.e[i].series / 8] |= (uint8_t)(1u << (kf.e[i].series % 8));
                any = 1;
            }
        mp_keyfile_wipe(&kf);
        if (!any)
            mpa_err("redeem: warning: %s has no delegated scrip series; no Millicent spends "
                    "will be sent", secrets);
        c.delegated = delegated;
    }

    if (mps_open(dir, dry ? MPS_RDONLY : 0, 0, &s, err, sizeof err) != MP_OK) {
        mpa_err("%s", err);
        goto done;
    }
    c.commit = malloc(sizeof *c.commit);
    c.redeem = malloc(sizeof *c.redeem);
    c.pay = malloc(sizeof *c.pay);
    c.buf = malloc(MP_WIRE_MAX);
    if (c.commit == NULL || c.redeem == NULL || c.pay == NULL || c.buf == NULL) {
        mpa_err("redeem: out of memory");
        goto done;
    }
    if (mps_mc_list_undeposited(s, c.vendor, collect_mc, &c) != MP_OK
        || (!c.failed && mps_pw_list(s, collect_pw, &c) != MP_OK)) {
        mpa_err("redeem: %s", mps_errmsg(s));
        goto done;
    }
    if (c.failed) {
        mpa_err("redeem: out of memory");
        goto done;
    }
    if (c.bad_records)
        mpa_err("redeem: warning: %zu stored records could not be decoded and are skipped",
                c.bad_records);
    if (c.n > 0)
        qsort(c.items, c.n, sizeof *c.items, item_cmp);
    nsend = c.n < max ? c.n : (size_t)max;
    for (i = 0; i < nsend; i++) {
        if (c.items[i].kind == KIND_PW)
            npw++;
        else
            nmc++;
    }
    if (!dry)
        curl_global_init(CURL_GLOBAL_DEFAULT);

    if (o->json)
        printf("{\"dry_run\": %s, \"requests\": [", dry ? "true" : "false");
    /* Requests of consecutive items, cut where the next item would pass
     * 1000 items or the body limit: the same items give the same cuts. */
    for (start = 0; start < nsend; start = end) {
        size = 0;
        for (end = start; end < nsend && end - start < REDEEM_ITEMS_MAX
             && (end == start || size + c.items[end].json_len <= BODY_BUDGET); end++)
            size += c.items[end].json_len;
        free(req);
        if ((req = make_body(c.items + start, end - start, reqid)) == NULL) {
            mpa_err("redeem: cannot build the request");
            goto fail;
        }
        if (strlen(req) > BODY_MAX) {
            mpa_err("redeem: an item is too large for a request");
            goto fail;
        }
        nreq++;
        if (dry) {
            if (o->json)
                printf("%s\n  {\"request_id\": \"%s\", \"items\": %zu, \"bytes\": %zu}",
                       nreq > 1 ? "," : "", reqid, end - start, strlen(req));
            else
                printf("request %s: %zu items, %zu bytes\n", reqid, end - start, strlen(req));
            for (i = start; i < end; i++) {
                item_name(&c.items[i], name, sizeof name);
                if (mp_amount_format(&c.items[i].claim, amt, sizeof amt) != MP_OK)
                    strcpy(amt, "?");
                if (!o->json)
                    printf("  %s: %s\n", name, amt);
            }
            continue;
        }
        free(resp.buf);
        memset(&resp, 0, sizeof resp);
        status = 0;
        if (post(&b, req, strlen(req), &status, &resp) != 0)
            goto fail;
        if (status != 200) {
            report_error(status, &resp);
            goto fail;
        }
        if (parse_answer(resp.buf ? resp.buf : "", resp.len, reqid, c.items + start, end - start,
                         &credited, &balance, &have_balance) != 0)
            goto fail;
        if (mark(s, c.vendor, c.items + start, end - start) != 0) {
            mpa_err("redeem: the broker has credited request %s; running redeem again is safe "
                    "(it credits nothing twice)", reqid);
            goto fail;
        }
        if (!have_total) {
            total = credited;
            have_total = 1;
        } else if (mp_amount_add(&total, &credited, &total) != MP_OK) {
            have_total = 0;         /* another currency: reported per request only */
        }
        if (have_balance)
            mp_amount_format(&balance, bal, sizeof bal);
        mp_amount_format(&credited, amt, sizeof amt);
        if (o->json)
            printf("%s\n  {\"request_id\": \"%s\", \"items\": %zu, \"credited\": \"%s\", "
                   "\"refused\": [", nreq > 1 ? "," : "", reqid, end - start, amt);
        first = 1;
        for (i = start; i < end; i++) {
            if (c.items[i].ok) {
                nok++;
                continue;
            }
            nrefused++;
            item_name(&c.items[i], name, sizeof name);
            if (o->json) {
                printf("%s{\"kind\": \"%s\", ", first ? "" : ", ",
                       c.items[i].kind == KIND_MC ? "millicent" : "payword");
                if (c.items[i].kind == KIND_MC) {
                    printf("\"scrip_id\": \"%llu\"", (unsigned long long)c.items[i].scrip_id);
                } else {
                    char h[2 * MP_HASH_LEN + 1];
                    hex(c.items[i].commit_id, MP_HASH_LEN, h);
                    printf("\"commitment\": \"%s\", \"last\": %u", h, c.items[i].last);
                }
                printf(", \"status\": ");
                mpa_json_str(stdout, c.items[i].answered ? c.items[i].status : "no-result");
                printf("}");
            } else {
                printf("refused: %s: %s\n", name,
                       c.items[i].answered ? c.items[i].status : "no result");
            }
            first = 0;
        }
        if (o->json)
            printf("]}");
    }
    rc = MPA_OK;
    goto report;
fail:
    rc = MPA_FAIL;
report:
    if (o->json) {
        printf("%s], \"payword\": %zu, \"millicent\": %zu, \"left\": %zu, \"ok\": %zu, "
               "\"refused\": %zu, ", nreq ? "\n" : "", npw, nmc, c.n - nsend, nok, nrefused);
        if (have_total && mp_amount_format(&total, amt, sizeof amt) == MP_OK)
            printf("\"credited\": \"%s\", ", amt);
        else
            printf("\"credited\": null, ");
        if (bal[0])
            printf("\"balance\": \"%s\", ", bal);
        else
            printf("\"balance\": null, ");
        printf("\"skipped\": {\"not_delegated\": %zu, \"other_broker\": %zu, "
               "\"other_vendor\": %zu, \"undecodable\": %zu}, \"complete\": %s}\n",
               c.not_delegated, c.other_broker, c.other_vendor, c.bad_records,
               rc == MPA_OK ? "true" : "false");
    } else if (nsend == 0 && rc == MPA_OK) {
        printf("nothing to redeem\n");
    } else if (rc == MPA_OK) {
        printf("%s %zu items (%zu payword, %zu millicent) in %zu request%s%s\n",
               dry ? "would send" : "sent", nsend, npw, nmc, nreq, nreq == 1 ? "" : "s",
               c.n > nsend ? "; more remain (--max)" : "");
        if (!dry) {
            if (have_total && mp_amount_format(&total, amt, sizeof amt) == MP_OK)
                printf("credited %s", amt);
            else
                printf("credited (see above)");
            if (bal[0])
                printf("; account balance %s", bal);
            printf("\n");
            if (nrefused)
                printf("%zu item%s refused: they stay in the store for another run\n", nrefused,
                       nrefused == 1 ? "" : "s");
        }
    }
    if (!o->json && (c.not_delegated || c.other_broker))
        printf("skipped %zu spends of scrip the vendor minted itself and %zu commitments "
               "certified by another broker\n", c.not_delegated, c.other_broker);
    if (!dry)
        curl_global_cleanup();
done:
    for (i = 0; i < c.n; i++)
        item_free(&c.items[i]);
    free(c.items);
    free(c.commit);
    free(c.redeem);
    free(c.pay);
    free(c.buf);
    free(req);
    free(resp.buf);
    mps_close(s);
    mp_wipe(&b, sizeof b);
    return rc;
}

const mpa_cmd mpa_redeem_cmds[] = {
    { "redeem", "",
      "VENDOR_STORE --vendor NAME --broker URL --account ID --key-file FILE [OPTIONS]",
      "Collects the vendor's earnings at its broker (POST URL/redeem, signed with the\n"
      "vendor account's key from FILE, as accounts create wrote it): every Millicent spend\n"
      "not yet deposited, with the request it paid for, and every PayWord commitment whose\n"
      "highest accepted word is above the one last redeemed. Items the broker answers \"ok\"\n"
      "are marked in the store; refused ones are listed and stay for another run.\n"
      "Safe to run again after any failure: the same items make the same request (its id\n"
      "is derived from them), which the broker answers again without crediting twice.\n"
      "  --max N           send at most N items this run (requests hold up to 1000)\n"
      "  --secrets FILE    the vendor secrets file: send only scrip of delegated series\n"
      "                    (change the vendor minted itself is not the broker's to pay)\n"
      "  --broker-name N   send only commitments whose certificate this broker issued\n"
      "  --cacert FILE     CA certificates to verify the broker with (default: system)\n"
      "  --timeout S       seconds per request (default 60)\n"
      "  --dry-run         list what would be sent; contact nobody, change nothing\n"
      "URL must be https (certificate verified), or http to 127.0.0.1/[::1]/localhost for\n"
      "tests. Exit 1 when a request fails: nothing of that request is marked (earlier\n"
      "requests of the run stay marked).", redeem },
    { NULL, NULL, NULL, NULL, NULL }
};
