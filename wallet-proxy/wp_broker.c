/*
 * wp_broker.c - the wallet's own HTTP client: MP1-HMAC signed JSON POSTs to
 * the broker and the replay of in-flight payments during recovery
 * (contract in wp_broker.h). Kept apart from the proxy's upstream code
 * because these requests carry the account key's signature and answers with
 * secrets, and go to the configured broker only.
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include "mp.h"
#include "wp_broker.h"

#define BROKER_TIMEOUT 30L
#define REPLAY_HDR_MAX 100
#define REPLAY_HDR_BYTES (64 * 1024)

struct wp_broker {
    const wp_config *cfg;
    uint8_t key[MP_SECRET_LEN];
    char scheme[8];
    char authority[300];
    char path[600];          /* base path without trailing '/' ("" or "/mp") */
};

int wp_broker_new(const wp_config *cfg, const uint8_t key[32], wp_broker **out, char *err,
                  size_t errlen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *q = NULL, *user = NULL;
    wp_broker *b = NULL;
    size_t i, plen;
    int rv = -1;

    if (u == NULL || (b = calloc(1, sizeof *b)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (cfg->broker_url[0] == '\0'
        || curl_url_set(u, CURLUPART_URL, cfg->broker_url, 0) != CURLUE_OK
        || curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK
        || curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK
        || curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
        snprintf(err, errlen, "broker_url: not an absolute http(s) URL");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_QUERY, &q, 0) == CURLUE_OK
        || curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        snprintf(err, errlen, "broker_url: no query or user name allowed");
        goto out;
    }
    if (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0) {
        snprintf(err, errlen, "broker_url: scheme must be https (or http for tests)");
        goto out;
    }
    (void)curl_url_get(u, CURLUPART_PORT, &port, CURLU_NO_DEFAULT_PORT);
    snprintf(b->scheme, sizeof b->scheme, "%s", scheme);
    if ((size_t)snprintf(b->authority, sizeof b->authority, "%s%s%s", host, port ? ":" : "",
                         port ? port : "") >= sizeof b->authority
        || strlen(b->authority) > MP_HOST_MAX) {
        snprintf(err, errlen, "broker_url: host too long");
        goto out;
    }
    for (i = 0; b->authority[i]; i++)
        b->authority[i] = (char)tolower((unsigned char)b->authority[i]);
    plen = strlen(path);
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    if (plen + 16 > sizeof b->path) {
        snprintf(err, errlen, "broker_url: path too long");
        goto out;
    }
    memcpy(b->path, path, plen);
    b->path[plen] = '\0';
    memcpy(b->key, key, MP_SECRET_LEN);
    b->cfg = cfg;
    *out = b;
    b = NULL;
    rv = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(q);
    curl_free(user);
    curl_url_cleanup(u);
    free(b);
    return rv;
}

void wp_broker_free(wp_broker *b)
{
    if (b == NULL)
        return;
    OPENSSL_cleanse(b->key, sizeof b->key);
    free(b);
}

const char *wp_broker_authority(const wp_broker *b)
{
    return b->authority;
}

int wp_broker_target(const wp_broker *b, const char *ep, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s/%s", b->path, ep);

    return n > 0 && (size_t)n < cap ? 0 : -1;
}

int wp_request_id(char out[WP_REQUEST_ID_LEN + 1])
{
    uint8_t rnd[16];
    size_t n;

    if (mp_random(rnd, sizeof rnd) != MP_OK
        || mp_b64url_encode(rnd, sizeof rnd, out, WP_REQUEST_ID_LEN + 1, &n) != MP_OK)
        return -1;
    return 0;
}

void wp_bresp_clear(wp_bresp *r)
{
    if (r == NULL)
        return;
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

typedef struct {
    char *buf;
    size_t len;
    size_t max;
    int too_big;
} sink;

static size_t on_body(char *p, size_t size, size_t nmemb, void *ctx)
{
    sink *s = ctx;
    size_t n = size * nmemb;
    char *nb;

    if (n > s->max - s->len) {
        s->too_big = 1;
        return 0;
    }
    if ((nb = realloc(s->buf, s->len + n + 1)) == NULL)
        return 0;
    s->buf = nb;
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    s->buf[s->len] = '\0';
    return n;
}

static struct curl_slist *resolve_list(const wp_config *cfg)
{
    struct curl_slist *l = NULL, *n;
    size_t i;

    for (i = 0; i < cfg->nresolve; i++) {
        if ((n = curl_slist_append(l, cfg->resolve[i])) == NULL)
            break;
        l = n;
    }
    return l;
}

static struct curl_slist *add_hdr(struct curl_slist *h, const char *line, int *fail)
{
    struct curl_slist *n = curl_slist_append(h, line);

    if (n == NULL) {
        *fail = 1;
        return h;
    }
    return n;
}

int wp_broker_post(wp_broker *b, const char *ep, const char *body, wp_bresp *r)
{
    char target[700], url[1100], sig64[64], auth[400], cerr[CURL_ERROR_SIZE] = "";
    uint8_t hash[MP_HASH_LEN], sig[MP_HASH_LEN];
    struct curl_slist *h = NULL, *res = NULL;
    uint64_t ts = (uint64_t)time(NULL);
    sink s = { NULL, 0, WP_BROKER_BODY_MAX, 0 };
    CURL *c = NULL;
    CURLcode cc;
    json_t *j, *reason, *msg;
    size_t n;
    int fail = 0, rv = -1;

    memset(r, 0, sizeof *r);
    if (wp_broker_target(b, ep, target, sizeof target) != 0
        || (size_t)snprintf(url, sizeof url, "%s://%s%s", b->scheme, b->authority, target)
           >= sizeof url) {
        snprintf(r->msg, sizeof r->msg, "broker URL too long");
        goto out;
    }
    if (mp_sha256(body, strlen(body), hash) != MP_OK
        || mp_broker_sig(b->key, b->cfg->account, "POST", target, strlen(target), ts, hash, sig)
           != MP_OK
        || mp_b64url_encode(sig, sizeof sig, sig64, sizeof sig64, &n) != MP_OK) {
        snprintf(r->msg, sizeof r->msg, "cannot sign the broker request (account id?)");
        goto out;
    }
    snprintf(auth, sizeof auth, "Authorization: MP1-HMAC account=\"%s\", ts=\"%llu\", sig=\"%s\"",
             b->cfg->account, (unsigned long long)ts, sig64);
    h = add_hdr(h, auth, &fail);
    h = add_hdr(h, "Content-Type: application/json", &fail);
    h = add_hdr(h, "Accept: application/json", &fail);
    h = add_hdr(h, "Expect:", &fail);
    res = resolve_list(b->cfg);
    if (fail || (c = curl_easy_init()) == NULL) {
        snprintf(r->msg, sizeof r->msg, "out of memory");
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);   /* the signature covers the target as sent */
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_RESOLVE, res);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "wallet-proxy");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, BROKER_TIMEOUT);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (b->cfg->broker_ca_file[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, b->cfg->broker_ca_file);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    if ((cc = curl_easy_perform(c)) != CURLE_OK) {
        snprintf(r->msg, sizeof r->msg, "broker %.64s: %.160s", b->authority,
                 s.too_big ? "answer larger than 1 MiB" : cerr[0] ? cerr : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    j = s.buf ? json_loadb(s.buf, s.len, 0, NULL) : NULL;
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    r->json = j;
    if (r->status != 200) {
        reason = json_object_get(j, "reason");
        msg = json_object_get(j, "message");
        if (json_is_string(reason))
            snprintf(r->reason, sizeof r->reason, "%s", json_string_value(reason));
        snprintf(r->msg, sizeof r->msg, "broker %s answered %ld%s%s%s%s", ep, r->status,
                 r->reason[0] ? " " : "", r->reason, json_is_string(msg) ? ": " : "",
                 json_is_string(msg) ? json_string_value(msg) : "");
    } else if (j == NULL) {
        snprintf(r->msg, sizeof r->msg, "broker %s answered 200 without a JSON object", ep);
    }
    rv = 0;
out:
    curl_slist_free_all(h);
    curl_slist_free_all(res);
    if (c != NULL)
        curl_easy_cleanup(c);
    if (s.buf != NULL) {
        OPENSSL_cleanse(s.buf, s.len);   /* answers carry customer secrets */
        free(s.buf);
    }
    OPENSSL_cleanse(auth, sizeof auth);
    return rv;
}

/* ---- replays ---------------------------------------------------------------------------- */

typedef struct {
    wp_hdr *h;
    size_t n;
    size_t bytes;
    int fail;
} hdrsink;

void wp_hdrs_free(wp_hdr *hdrs, size_t n)
{
    size_t i;

    if (hdrs == NULL)
        return;
    for (i = 0; i < n; i++) {
        free((char *)hdrs[i].name);
        free((char *)hdrs[i].value);
    }
    free(hdrs);
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ctx)
{
    hdrsink *hs = ctx;
    size_t n = size * nmemb, nl, vs, ve;
    char *name, *value, *colon;
    wp_hdr *nh;

    hs->bytes += n;
    if (hs->bytes > REPLAY_HDR_BYTES)
        return 0;
    if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        /* a new response (after 1xx): forget the fields of the last */
        wp_hdrs_free(hs->h, hs->n);
        hs->h = NULL;
        hs->n = 0;
        return n;
    }
    colon = memchr(p, ':', n);
    if (colon == NULL || hs->n >= REPLAY_HDR_MAX)
        return n;
    nl = (size_t)(colon - p);
    vs = nl + 1;
    ve = n;
    while (vs < ve && (p[vs] == ' ' || p[vs] == '\t'))
        vs++;
    while (ve > vs && (p[ve - 1] == '\r' || p[ve - 1] == '\n' || p[ve - 1] == ' '
                       || p[ve - 1] == '\t'))
        ve--;
    name = strndup(p, nl);
    value = strndup(p + vs, ve - vs);
    nh = realloc(hs->h, (hs->n + 1) * sizeof *nh);
    if (name == NULL || value == NULL || nh == NULL) {
        free(name);
        free(value);
        if (nh != NULL)
            hs->h = nh;
        hs->fail = 1;
        return 0;
    }
    hs->h = nh;
    hs->h[hs->n].name = name;
    hs->h[hs->n].value = value;
    hs->n++;
    return n;
}

/* The body is not wanted: stop at its first byte. */
static size_t on_drop(char *p, size_t size, size_t nmemb, void *ctx)
{
    (void)p;
    (void)size;
    (void)nmemb;
    (void)ctx;
    return 0;
}

int wp_http_replay(const wp_config *cfg, const char *method, const char *url,
                   const char *name, const char *value, long *status, wp_hdr **hdrs,
                   size_t *nhdrs, char *msg, size_t msglen)
{
    char line[MP_WIRE_TEXT_MAX + 128], cerr[CURL_ERROR_SIZE] = "";
    struct curl_slist *h = NULL, *res = NULL;
    hdrsink hs = { NULL, 0, 0, 0 };
    CURL *c = NULL;
    CURLcode cc;
    long code = 0;
    int fail = 0, rv = -1;

    if ((size_t)snprintf(line, sizeof line, "%s: %s", name, value) >= sizeof line) {
        snprintf(msg, msglen, "credential too long");
        goto out;
    }
    h = add_hdr(h, line, &fail);
    h = add_hdr(h, "Expect:", &fail);
    res = resolve_list(cfg);
    if (fail || (c = curl_easy_init()) == NULL) {
        snprintf(msg, msglen, "out of memory");
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);  /* req_sig binds the target byte for byte */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") != 0) {
        /* other methods: the same method with an empty body (the original body
         * is not kept; docs/wallet-proxy.md) */
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_RESOLVE, res);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "wallet-proxy");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)(cfg->upstream_timeout ? cfg->upstream_timeout : 60));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &hs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_drop);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    /* A write error is our own stop at the body: the header was complete. */
    if ((cc != CURLE_OK && cc != CURLE_WRITE_ERROR) || code == 0 || hs.fail) {
        snprintf(msg, msglen, "%s", cerr[0] ? cerr : curl_easy_strerror(cc));
        goto out;
    }
    *status = code;
    *hdrs = hs.h;
    *nhdrs = hs.n;
    hs.h = NULL;
    hs.n = 0;
    rv = 0;
out:
    wp_hdrs_free(hs.h, hs.n);
    curl_slist_free_all(h);
    curl_slist_free_all(res);
    if (c != NULL)
        curl_easy_cleanup(c);
    OPENSSL_cleanse(line, sizeof line);
    return rv;
}
