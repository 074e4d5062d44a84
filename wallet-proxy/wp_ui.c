/*
 * wp_ui.c - the wallet's own origin (wp_ui.h): the UI page, its JSON API,
 * the PAC file and the confirmation pages of held payments, with the checks
 * that keep other web pages from using any of it.
 *
 * Why the checks are what they are (docs/wallet-proxy.md, "Web UI and CLI"):
 * - Host (or the absolute-form authority) must be one of the wallet's own
 *   names, so a DNS-rebound name cannot make another site same-origin with
 *   the wallet.
 * - Every /api request needs the session token in X-Wallet-Token. The token
 *   is only in the wallet's own pages (which other origins cannot read) and
 *   in <state_dir>/ui.token (0600) for the CLI.
 * - Every POST also needs Origin equal to the wallet's origin and a JSON
 *   Content-Type (which a cross-site form cannot send), and a foreign Origin
 *   or Sec-Fetch-Site is refused on any /api request.
 * - Every answer forbids framing, caching and sniffing and sets a strict
 *   Content-Security-Policy; scripts and styles come from /ui.js, /ui.css and
 *   /confirm.js so no inline code is needed.
 * A page on a paid site therefore can neither read the confirmation page nor
 * frame it nor post its Pay button, so it cannot approve its own payment.
 *
 * Threading: g_token is written once by wp_ui_init() before the daemon starts
 * its connection threads and only read afterwards; everything else works on
 * per-call data, so wp_ui_handle() is safe from any thread.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include "mp_amount.h"
#include "wp_ui.h"
#include "wp_ui_page.h"

#define UI_TOKEN_BYTES     32
#define UI_TOKEN_LEN       43          /* base64url of 32 bytes, no padding */
#define UI_MAX_BODY        (64 * 1024)
#define UI_MAX_PATH        8192
#define UI_MAX_ID          64
#define UI_MAX_POLICY_STR  47          /* wp_config policy fields are char[48] */
#define UI_HISTORY_DEFAULT 50
#define UI_HISTORY_MAX     1000
#define UI_LOG_MAX         200         /* bytes of request data quoted in a log line */

#define UI_SEC_HEADERS \
    "Cache-Control: no-store\r\n" \
    "X-Frame-Options: DENY\r\n" \
    "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'; base-uri 'none'; " \
    "form-action 'self'\r\n" \
    "X-Content-Type-Options: nosniff\r\n" \
    "Referrer-Policy: no-referrer\r\n"

#define CT_HTML "text/html; charset=utf-8"
#define CT_JSON "application/json"
#define JSON_NOMEM "{\"error\":\"internal\",\"message\":\"out of memory\"}\n"

static char g_token[UI_TOKEN_LEN + 1];

/* One request being answered. */
typedef struct {
    wp_wallet *w;
    const char *method;
    const wp_hdr *hdrs;
    size_t nhdrs;
    const char *body;
    size_t len;
    wp_page *page;
    int head;                  /* HEAD: answered as GET (the core drops the body) */
    int api;                   /* under /api/: errors are JSON */
    char path[UI_MAX_PATH + 1];
    const char *query;         /* after '?', or "" */
} ui_req;

/* ---- small text helpers ------------------------------------------------ */

/* A growing string; on ENOMEM it sets bad and ignores further appends. */
typedef struct {
    char *p;
    size_t len, cap;
    int bad;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    char *np;
    size_t ncap;

    if (b->bad)
        return;
    if (b->len + n + 1 > b->cap) {
        ncap = b->cap ? b->cap : 1024;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        if ((np = realloc(b->p, ncap)) == NULL) {
            b->bad = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* Appends s HTML-escaped (safe in text and in quoted attributes). */
static void sb_esc(sbuf *b, const char *s)
{
    const char *rep;

    for (; *s; s++) {
        switch (*s) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: rep = NULL; break;
        }
        if (rep != NULL)
            sb_str(b, rep);
        else
            sb_add(b, s, 1);
    }
}

typedef struct {
    const char *key;
    const char *val;
} tvar;

/* tmpl with every "{{key}}" replaced by its value, HTML-escaped (unknown keys
 * by nothing). Returns a malloc'ed string and its length in *len, or NULL. */
static char *expand(const char *tmpl, const tvar *v, size_t nv, size_t *len)
{
    sbuf b = { 0 };
    const char *s = tmpl, *open, *close;
    size_t i, klen;

    while ((open = strstr(s, "{{")) != NULL && (close = strstr(open + 2, "}}")) != NULL) {
        sb_add(&b, s, (size_t)(open - s));
        klen = (size_t)(close - open - 2);
        for (i = 0; i < nv; i++)
            if (strlen(v[i].key) == klen && memcmp(v[i].key, open + 2, klen) == 0) {
                sb_esc(&b, v[i].val != NULL ? v[i].val : "");
                break;
            }
        s = close + 2;
    }
    sb_str(&b, s);
    if (b.bad || b.p == NULL) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

/* Copies up to UI_LOG_MAX bytes of s into dst with anything but printable
 * ASCII replaced by '?', for log lines. */
static void log_safe(char *dst, size_t cap, const char *s)
{
    size_t i;

    for (i = 0; s != NULL && s[i] != '\0' && i + 1 < cap && i < UI_LOG_MAX; i++)
        dst[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    dst[i] = '\0';
}

/* ---- answers ----------------------------------------------------------- */

/* Fills the page; on ENOMEM leaves a bare 500. */
static void answer(ui_req *r, int status, const char *ctype, const char *body, size_t len,
                   const char *more_headers)
{
    sbuf h = { 0 };

    sb_str(&h, UI_SEC_HEADERS);
    if (more_headers != NULL)
        sb_str(&h, more_headers);
    if (h.bad || wp_page_set(r->page, status, ctype, body, len) != 0) {
        free(h.p);
        wp_page_clear(r->page);
        r->page->status = 500;
        wp_log(WP_LOG_ERROR, "WP00290: out of memory answering %s", r->method);
        return;
    }
    r->page->extra_headers = h.p;
}

/* Answers with j (a reference this function takes over). */
static void answer_json(ui_req *r, int status, json_t *j)
{
    char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    size_t n;

    json_decref(j);
    if (s == NULL) {
        answer(r, 500, CT_JSON, JSON_NOMEM, sizeof JSON_NOMEM - 1, NULL);
        return;
    }
    n = strlen(s);
    s[n] = '\n';    /* json_dumps' NUL becomes the final newline */
    answer(r, status, CT_JSON, s, n + 1, NULL);
    free(s);
}

static void answer_html_error(ui_req *r, int status, const char *title, const char *message,
                              const char *more_headers)
{
    tvar v[] = { { "title", title }, { "message", message } };
    size_t len = 0;
    char *html = expand(wp_ui_error_html, v, 2, &len);

    if (html == NULL) {
        answer(r, 500, "text/plain; charset=utf-8", "out of memory\n", 14, NULL);
        return;
    }
    answer(r, status, CT_HTML, html, len, more_headers);
    free(html);
}

/* An error in the form the request expects: JSON under /api/, HTML elsewhere. */
static void fail(ui_req *r, int status, const char *error, const char *message,
                 const char *more_headers)
{
    json_t *j;
    char *s;

    if (!r->api) {
        answer_html_error(r, status, status == 404 ? "Not found" :
                          status == 403 ? "Forbidden" : "Error", message, more_headers);
        return;
    }
    j = json_pack("{s:s, s:s}", "error", error, "message", message);
    if (j != NULL && status == 403)
        json_object_set_new(j, "reason", json_string(message));
    s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s == NULL) {
        answer(r, 500, CT_JSON, JSON_NOMEM, sizeof JSON_NOMEM - 1, NULL);
        return;
    }
    answer(r, status, CT_JSON, s, strlen(s), more_headers);
    free(s);
}

/* Refuses a request that did not pass the security checks, and logs it. */
static void forbid(ui_req *r, const char *reason)
{
    char m[64], p[UI_LOG_MAX + 1];

    log_safe(m, sizeof m, r->method);
    log_safe(p, sizeof p, r->path);
    wp_log(WP_LOG_INFO, "WP00200: refused %s %s: %s", m, p, reason);
    fail(r, 403, "forbidden", reason, NULL);
}

/* ---- who is asking ----------------------------------------------------- */

/* The value of header name (case-insensitive), NULL when absent; *dup is set
 * when it occurs more than once. */
static const char *hdr_get(const ui_req *r, const char *name, int *dup)
{
    const char *v = NULL;
    size_t i;

    *dup = 0;
    for (i = 0; i < r->nhdrs; i++)
        if (r->hdrs[i].name != NULL && strcasecmp(r->hdrs[i].name, name) == 0) {
            if (v != NULL)
                *dup = 1;
            v = r->hdrs[i].value != NULL ? r->hdrs[i].value : "";
        }
    return v;
}

/* The port of wp_self_origin(), 0 when it is not set. */
static unsigned self_port(void)
{
    const char *o = wp_self_origin(), *c;
    unsigned long port;
    char *end;

    if (o == NULL || strncmp(o, "http://", 7) != 0 || (c = strrchr(o + 7, ':')) == NULL)
        return 0;
    errno = 0;
    port = strtoul(c + 1, &end, 10);
    if (errno != 0 || *end != '\0' || end == c + 1 || port == 0 || port > 65535)
        return 0;
    return (unsigned)port;
}

/* True when the len bytes at a name the wallet itself: its own origin's
 * authority or 127.0.0.1, localhost or [::1] with its port. */
static int authority_ok(const char *a, size_t len)
{
    static const char *const names[] = { "127.0.0.1", "localhost", "[::1]" };
    const char *o = wp_self_origin();
    unsigned port = self_port();
    char want[300];
    size_t i;
    int n;

    if (port == 0)
        return 0;
    if (len == strlen(o + 7) && strncasecmp(a, o + 7, len) == 0)
        return 1;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        n = snprintf(want, sizeof want, "%s:%u", names[i], port);
        if (n > 0 && (size_t)n == len && strncasecmp(a, want, len) == 0)
            return 1;
        /* Browsers leave out the default port. */
        if (port == 80 && len == strlen(names[i]) && strncasecmp(a, names[i], len) == 0)
            return 1;
    }
    return 0;
}

static int origin_ok(const char *origin)
{
    return strncmp(origin, "http://", 7) == 0 && authority_ok(origin + 7, strlen(origin + 7));
}

/* Constant-time comparison with the session token, after a length check. */
static int token_ok(const char *t)
{
    if (t == NULL || strlen(g_token) != UI_TOKEN_LEN || strlen(t) != UI_TOKEN_LEN)
        return 0;
    return CRYPTO_memcmp(t, g_token, UI_TOKEN_LEN) == 0;
}

/* The checks every /api request must pass; answers 403 and returns -1 when
 * one fails. State-changing methods also need a matching Origin. */
static int api_allowed(ui_req *r, int changes_state)
{
    const char *origin, *site, *tok;
    int dup_o, dup_s, dup_t;

    origin = hdr_get(r, "Origin", &dup_o);
    site = hdr_get(r, "Sec-Fetch-Site", &dup_s);
    tok = hdr_get(r, "X-Wallet-Token", &dup_t);
    if (dup_o || dup_s || dup_t) {
        forbid(r, "repeated Origin, Sec-Fetch-Site or X-Wallet-Token header");
        return -1;
    }
    if (origin != NULL && !origin_ok(origin)) {
        forbid(r, "Origin is not the wallet's origin");
        return -1;
    }
    if (site != NULL && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0) {
        forbid(r, "cross-site request");
        return -1;
    }
    if (!token_ok(tok)) {
        forbid(r, tok == NULL ? "missing X-Wallet-Token" : "wrong X-Wallet-Token");
        return -1;
    }
    if (changes_state && origin == NULL) {
        forbid(r, "missing Origin");
        return -1;
    }
    return 0;
}

/* The JSON object in a POST body: Content-Type application/json, at most
 * UI_MAX_BODY bytes. An empty body gives an empty object when allow_empty.
 * Answers the error and returns NULL otherwise. */
static json_t *post_object(ui_req *r, int allow_empty)
{
    const char *ct;
    json_t *j;
    json_error_t jerr;
    size_t n;
    int dup;

    ct = hdr_get(r, "Content-Type", &dup);
    if (ct != NULL)
        while (*ct == ' ' || *ct == '\t')
            ct++;
    n = ct != NULL ? strcspn(ct, "; \t") : 0;
    if (ct == NULL || dup || n != strlen(CT_JSON) || strncasecmp(ct, CT_JSON, n) != 0) {
        fail(r, 415, "unsupported_media_type", "Content-Type must be application/json", NULL);
        return NULL;
    }
    if (r->len > UI_MAX_BODY) {
        fail(r, 413, "too_large", "request body is larger than 64 KiB", NULL);
        return NULL;
    }
    if (r->len == 0 && allow_empty)
        return json_object();
    j = json_loadb(r->body != NULL ? r->body : "", r->len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(j)) {
        char m[220] = "the body must be a JSON object";

        if (j == NULL)
            snprintf(m, sizeof m, "invalid JSON: %s", jerr.text);
        json_decref(j);
        fail(r, 400, "bad_request", m, NULL);
        return NULL;
    }
    return j;
}

/* ---- the API ----------------------------------------------------------- */

static void api_history(ui_req *r)
{
    const char *q = r->query, *v;
    unsigned long limit = UI_HISTORY_DEFAULT;
    size_t n;
    json_t *h;

    while (*q != '\0') {
        n = strcspn(q, "&");
        if (n > 6 && strncmp(q, "limit=", 6) == 0) {
            v = q + 6;
            if (strspn(v, "0123456789") != n - 6) {
                fail(r, 400, "bad_request", "limit must be a number from 1 to 1000", NULL);
                return;
            }
            /* Longer than 9 digits is more than the maximum anyway. */
            limit = n - 6 > 9 ? UI_HISTORY_MAX : strtoul(v, NULL, 10);
        } else if (n == 6 && strncmp(q, "limit=", 6) == 0) {
            fail(r, 400, "bad_request", "limit must be a number from 1 to 1000", NULL);
            return;
        }
        q += n;
        if (*q == '&')
            q++;
    }
    if (limit == 0) {
        fail(r, 400, "bad_request", "limit must be a number from 1 to 1000", NULL);
        return;
    }
    if (limit > UI_HISTORY_MAX)
        limit = UI_HISTORY_MAX;
    if ((h = wp_wallet_history(r->w, (size_t)limit)) == NULL) {
        fail(r, 500, "internal", "cannot read the history", NULL);
        return;
    }
    answer_json(r, 200, h);
}

/* Answers a wallet view, or 500 when the wallet gives none. */
static void api_view(ui_req *r, json_t *view, const char *what)
{
    char m[128];

    if (view == NULL) {
        snprintf(m, sizeof m, "cannot read the %s", what);
        fail(r, 500, "internal", m, NULL);
        return;
    }
    answer_json(r, 200, view);
}

/* NULL when the policy members in j are acceptable, else a message (static
 * text or written into m). The wallet validates again; this keeps unknown
 * members and non-strings from reaching it. */
static const char *policy_check(const json_t *j, char *m, size_t mlen)
{
    static const char *const amounts[] = { "threshold", "site_budget", "daily_budget", "topup" };
    const char *key, *s;
    json_t *v;
    mp_amount a;
    size_t i;
    int known;

    if (json_object_size(j) == 0)
        return "nothing to change: give threshold, site_budget, daily_budget, topup or prefer";
    json_object_foreach((json_t *)j, key, v) {
        if (!json_is_string(v) || json_string_length(v) > UI_MAX_POLICY_STR) {
            snprintf(m, mlen, "%.40s must be a string of at most %d characters", key,
                     UI_MAX_POLICY_STR);
            return m;
        }
        s = json_string_value(v);
        if (strcmp(key, "prefer") == 0) {
            if (strcmp(s, "millicent") != 0 && strcmp(s, "payword") != 0)
                return "prefer must be millicent or payword";
            continue;
        }
        for (known = 0, i = 0; i < sizeof amounts / sizeof amounts[0]; i++)
            known |= strcmp(key, amounts[i]) == 0;
        if (!known) {
            snprintf(m, mlen, "unknown policy member \"%.40s\"", key);
            return m;
        }
        if (mp_amount_parse(s, strlen(s), &a) != MP_OK) {
            snprintf(m, mlen, "%s: \"%.40s\" is not an amount (e.g. 0.05 USD)", key, s);
            return m;
        }
    }
    return NULL;
}

static void api_set_policy(ui_req *r)
{
    json_t *j = post_object(r, 0), *v;
    const char *bad, *key;
    char m[256], err[256] = "", names[128] = "";

    if (j == NULL)
        return;
    if ((bad = policy_check(j, m, sizeof m)) != NULL) {
        fail(r, 400, "bad_request", bad, NULL);
        goto out;
    }
    if (wp_wallet_set_policy(r->w, j, err, sizeof err) != 0) {
        fail(r, 400, "invalid_policy", err[0] ? err : "the wallet refused the policy", NULL);
        goto out;
    }
    json_object_foreach(j, key, v) {
        if (strlen(names) + strlen(key) + 2 < sizeof names) {
            if (names[0])
                strcat(names, " ");
            strcat(names, key);
        }
    }
    wp_log(WP_LOG_INFO, "WP00201: policy changed from the UI: %s", names);
    api_view(r, wp_wallet_policy(r->w), "policy");
out:
    json_decref(j);
}

static void api_topup(ui_req *r)
{
    json_t *j = post_object(r, 0), *bal;
    const char *amount;
    mp_amount a;
    char err[256] = "";

    if (j == NULL)
        return;
    amount = json_string_value(json_object_get(j, "amount"));
    if (amount == NULL || json_object_size(j) != 1 ||
        mp_amount_parse(amount, strlen(amount), &a) != MP_OK || a.units == 0) {
        fail(r, 400, "bad_request", "give {\"amount\": \"1.00 USD\"}: a positive amount", NULL);
        goto out;
    }
    wp_log(WP_LOG_INFO, "WP00202: top-up of %s requested from the UI", amount);
    if ((bal = wp_wallet_topup(r->w, amount, err, sizeof err)) == NULL) {
        wp_log(WP_LOG_INFO, "WP00203: top-up of %s failed: %s", amount, err);
        fail(r, 500, "topup_failed", err[0] ? err : "the top-up failed", NULL);
        goto out;
    }
    answer_json(r, 200, bal);
out:
    json_decref(j);
}

/* True when id looks like a held payment's id: [A-Za-z0-9_-]{1,64}. */
static int id_ok(const char *id, size_t len)
{
    return len > 0 && len <= UI_MAX_ID &&
           strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") >= len;
}

static void api_decide(ui_req *r, const char *id, int approve)
{
    json_t *j = post_object(r, 1), *held = NULL, *res;
    char err[256] = "", m[160];

    if (j == NULL)
        return;
    if ((held = wp_wallet_pending_get(r->w, id)) == NULL) {
        snprintf(m, sizeof m, "no held payment %s (decided already, expired or unknown)", id);
        fail(r, 404, "not_found", m, NULL);
        goto out;
    }
    if (wp_wallet_decide(r->w, id, approve, err, sizeof err) != 0) {
        fail(r, 409, "conflict", err[0] ? err : "the payment cannot be decided now", NULL);
        goto out;
    }
    wp_log(WP_LOG_INFO, "WP00204: held payment %s %s", id, approve ? "approved" : "declined");
    res = json_pack("{s:s, s:s, s:O?}", "id", id, "decision", approve ? "approved" : "declined",
                    "url", json_object_get(held, "url"));
    answer_json(r, 200, res);
out:
    json_decref(held);
    json_decref(j);
}

static void api_route(ui_req *r, const char *sub)
{
    int get = strcmp(r->method, "GET") == 0 || r->head;
    int post = strcmp(r->method, "POST") == 0;
    const char *id, *slash;
    size_t idlen;

    if (api_allowed(r, !get) != 0)
        return;
    if (strcmp(sub, "/balance") == 0 || strcmp(sub, "/history") == 0 ||
        strcmp(sub, "/pending") == 0) {
        if (!get) {
            fail(r, 405, "method_not_allowed", "use GET", "Allow: GET, HEAD\r\n");
        } else if (sub[1] == 'b') {
            api_view(r, wp_wallet_balance(r->w), "balance");
        } else if (sub[1] == 'h') {
            api_history(r);
        } else {
            api_view(r, wp_wallet_pending(r->w), "pending payments");
        }
        return;
    }
    if (strcmp(sub, "/policy") == 0) {
        if (get)
            api_view(r, wp_wallet_policy(r->w), "policy");
        else if (post)
            api_set_policy(r);
        else
            fail(r, 405, "method_not_allowed", "use GET or POST", "Allow: GET, HEAD, POST\r\n");
        return;
    }
    if (strcmp(sub, "/topup") == 0) {
        if (post)
            api_topup(r);
        else
            fail(r, 405, "method_not_allowed", "use POST", "Allow: POST\r\n");
        return;
    }
    if (strncmp(sub, "/pending/", 9) == 0 && (slash = strchr(sub + 9, '/')) != NULL &&
        (strcmp(slash, "/approve") == 0 || strcmp(slash, "/decline") == 0)) {
        id = sub + 9;
        idlen = (size_t)(slash - id);
        if (!id_ok(id, idlen)) {
            fail(r, 404, "not_found", "no such held payment", NULL);
        } else if (!post) {
            fail(r, 405, "method_not_allowed", "use POST", "Allow: POST\r\n");
        } else {
            char idbuf[UI_MAX_ID + 1];

            memcpy(idbuf, id, idlen);
            idbuf[idlen] = '\0';
            api_decide(r, idbuf, slash[1] == 'a');
        }
        return;
    }
    fail(r, 404, "not_found", "no such API endpoint", NULL);
}

/* ---- pages ------------------------------------------------------------- */

static void page_index(ui_req *r)
{
    tvar v[] = { { "token", g_token } };
    size_t len = 0;
    char *html = expand(wp_ui_index_html, v, 1, &len);

    if (html == NULL) {
        fail(r, 500, "internal", "out of memory", NULL);
        return;
    }
    answer(r, 200, CT_HTML, html, len, NULL);
    free(html);
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s != NULL ? s : "";
}

static void page_confirm(ui_req *r, const char *id)
{
    json_t *p = id_ok(id, strlen(id)) ? wp_wallet_pending_get(r->w, id) : NULL;
    const char *method, *url, *back = "";
    char created[32] = "";
    size_t len = 0;
    char *html;

    if (p == NULL) {
        fail(r, 404, "not_found", "No payment with this id is waiting: it was decided "
             "already, it expired, or it never existed.", NULL);
        return;
    }
    method = jstr(p, "method");
    url = jstr(p, "url");
    /* Navigating back repeats a GET; other methods must be resent by the
     * site. Only http(s) URLs are ever navigated to. */
    if ((strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) &&
        (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0))
        back = url;
    if (json_is_integer(json_object_get(p, "created")))
        snprintf(created, sizeof created, "%" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(p, "created")));
    {
        tvar v[] = {
            { "token", g_token }, { "id", id }, { "site", jstr(p, "site") }, { "url", url },
            { "method", method }, { "price", jstr(p, "price") }, { "reason", jstr(p, "reason") },
            { "created", created }, { "return", back }
        };

        html = expand(wp_ui_confirm_html, v, sizeof v / sizeof v[0], &len);
    }
    json_decref(p);
    if (html == NULL) {
        fail(r, 500, "internal", "out of memory", NULL);
        return;
    }
    answer(r, 200, CT_HTML, html, len, NULL);
    free(html);
}

static void page_pac(ui_req *r)
{
    const char *o = wp_self_origin();
    sbuf b = { 0 };

    if (self_port() == 0) {
        fail(r, 500, "internal", "the wallet is not listening yet", NULL);
        return;
    }
    sb_str(&b, "// wallet-proxy: send every URL through the wallet at ");
    sb_str(&b, o + 7);
    sb_str(&b, ".\n// It pays for http:// pages; https:// URLs reach it as CONNECT tunnels,\n"
               "// which it passes through untouched.\n"
               "function FindProxyForURL(url, host) {\n  return \"PROXY ");
    sb_str(&b, o + 7);
    sb_str(&b, "\";\n}\n");
    if (b.bad) {
        free(b.p);
        fail(r, 500, "internal", "out of memory", NULL);
        return;
    }
    answer(r, 200, "application/x-ns-proxy-autoconfig", b.p, b.len, NULL);
    free(b.p);
}

static void page_static(ui_req *r, const char *ctype, const char *text)
{
    answer(r, 200, ctype, text, strlen(text), NULL);
}

/* ---- entry points ------------------------------------------------------ */

/* Splits the target into r->path and r->query and checks the authority it
 * was sent to. Answers and returns -1 on failure. */
static int parse_target(ui_req *r, const char *target)
{
    const char *path = target, *auth, *host;
    size_t alen, plen;
    char *q;
    int dup;
    char safe[UI_LOG_MAX + 1];

    if (target == NULL) {
        fail(r, 400, "bad_request", "no request target", NULL);
        return -1;
    }
    if (strncasecmp(target, "http://", 7) == 0) {
        auth = target + 7;
        alen = strcspn(auth, "/?#");
        path = auth + alen;
    } else if (target[0] == '/') {
        host = hdr_get(r, "Host", &dup);
        if (host == NULL || dup) {
            fail(r, 400, "bad_request", "exactly one Host header is needed", NULL);
            return -1;
        }
        auth = host;
        alen = strlen(host);
    } else {
        fail(r, 400, "bad_request", "unsupported request target", NULL);
        return -1;
    }
    plen = strcspn(path, "#");
    if (plen > UI_MAX_PATH) {
        fail(r, 414, "uri_too_long", "the request target is too long", NULL);
        return -1;
    }
    if (plen == 0 || path[0] != '/') {
        r->path[0] = '/';
        memcpy(r->path + 1, path, plen < UI_MAX_PATH ? plen : UI_MAX_PATH - 1);
        r->path[1 + (plen < UI_MAX_PATH ? plen : UI_MAX_PATH - 1)] = '\0';
    } else {
        memcpy(r->path, path, plen);
        r->path[plen] = '\0';
    }
    if ((q = strchr(r->path, '?')) != NULL) {
        *q = '\0';
        r->query = q + 1;
    } else {
        r->query = "";
    }
    r->api = strncmp(r->path, "/api/", 5) == 0;
    if (memchr(auth, '@', alen) != NULL || !authority_ok(auth, alen)) {
        log_safe(safe, sizeof safe, auth);
        if (strlen(safe) > alen)
            safe[alen] = '\0';
        wp_log(WP_LOG_INFO, "WP00205: refused a request for host \"%s\": not the wallet's own "
               "name (DNS rebinding?)", safe);
        fail(r, 403, "forbidden", "this is not a name of the wallet; use its own address",
             NULL);
        return -1;
    }
    return 0;
}

void wp_ui_handle(wp_wallet *w, const char *method, const char *target,
                  const wp_hdr *hdrs, size_t nhdrs, const char *body, size_t len,
                  wp_page *page)
{
    ui_req *r = calloc(1, sizeof *r);   /* path is 8 KiB: keep it off the thread stack */
    int get;

    if (r == NULL) {
        wp_page_clear(page);
        page->status = 500;
        return;
    }
    r->w = w;
    r->method = method != NULL ? method : "";
    r->hdrs = hdrs;
    r->nhdrs = hdrs != NULL ? nhdrs : 0;
    r->body = body;
    r->len = body != NULL ? len : 0;
    r->page = page;
    r->head = strcmp(r->method, "HEAD") == 0;
    r->query = "";
    if (parse_target(r, target) != 0)
        goto out;
    if (r->api) {
        api_route(r, r->path + 4);
        goto out;
    }
    get = strcmp(r->method, "GET") == 0 || r->head;
    if (strcmp(r->path, "/favicon.ico") == 0 && get) {
        answer(r, 204, "image/x-icon", "", 0, NULL);   /* none, and no 404 noise */
    } else if (strcmp(r->path, "/") != 0 && strcmp(r->path, "/ui.css") != 0 &&
        strcmp(r->path, "/ui.js") != 0 && strcmp(r->path, "/confirm.js") != 0 &&
        strcmp(r->path, "/proxy.pac") != 0 && strncmp(r->path, "/confirm/", 9) != 0) {
        fail(r, 404, "not_found", "There is no such page in the wallet.", NULL);
    } else if (!get) {
        fail(r, 405, "method_not_allowed", "Only GET and HEAD work here.",
             "Allow: GET, HEAD\r\n");
    } else if (strcmp(r->path, "/") == 0) {
        page_index(r);
    } else if (strcmp(r->path, "/ui.css") == 0) {
        page_static(r, "text/css; charset=utf-8", wp_ui_css);
    } else if (strcmp(r->path, "/ui.js") == 0) {
        page_static(r, "text/javascript; charset=utf-8", wp_ui_js);
    } else if (strcmp(r->path, "/confirm.js") == 0) {
        page_static(r, "text/javascript; charset=utf-8", wp_ui_confirm_js);
    } else if (strcmp(r->path, "/proxy.pac") == 0) {
        page_pac(r);
    } else {
        page_confirm(r, r->path + 9);
    }
out:
    free(r);
}

/* Writes token + "\n" to path through a 0600 temporary file and a rename. */
static int write_token_file(const char *path, const char *token, char *err, size_t errlen)
{
    char tmp[600];
    char line[UI_TOKEN_LEN + 2];
    size_t n = strlen(token);
    int fd = -1, rv = -1;

    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        snprintf(err, errlen, "%s: path too long", path);
        goto out;
    }
    memcpy(line, token, n);
    line[n] = '\n';
    (void)unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || fchmod(fd, 0600) != 0 || write(fd, line, n + 1) != (ssize_t)(n + 1) ||
        fsync(fd) != 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    rv = 0;
out:
    if (fd >= 0)
        close(fd);
    if (rv != 0)
        (void)unlink(tmp);
    OPENSSL_cleanse(line, sizeof line);
    return rv;
}

int wp_ui_init(const wp_config *cfg, char *err, size_t errlen)
{
    unsigned char raw[UI_TOKEN_BYTES];
    char b64[4 * ((UI_TOKEN_BYTES + 2) / 3) + 1];
    char path[600];
    struct stat st;
    size_t i;
    int rv = -1;

    if (cfg->state_dir[0] == '\0') {
        snprintf(err, errlen, "no state directory configured");
        goto out;
    }
    if (stat(cfg->state_dir, &st) != 0) {
        if (errno != ENOENT || mkdir(cfg->state_dir, 0700) != 0) {
            snprintf(err, errlen, "%s: %s", cfg->state_dir, strerror(errno));
            goto out;
        }
    } else if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: not a directory", cfg->state_dir);
        goto out;
    }
    if (snprintf(path, sizeof path, "%s/ui.token", cfg->state_dir) >= (int)sizeof path) {
        snprintf(err, errlen, "%s: path too long", cfg->state_dir);
        goto out;
    }
    if (RAND_bytes(raw, sizeof raw) != 1) {
        snprintf(err, errlen, "cannot get random bytes for the UI token");
        goto out;
    }
    EVP_EncodeBlock((unsigned char *)b64, raw, sizeof raw);
    for (i = 0; i < UI_TOKEN_LEN; i++)
        b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
    b64[UI_TOKEN_LEN] = '\0';
    if (write_token_file(path, b64, err, errlen) != 0)
        goto out;
    memcpy(g_token, b64, UI_TOKEN_LEN + 1);
    wp_log(WP_LOG_INFO, "WP00206: UI session token written to %s", path);
    rv = 0;
out:
    OPENSSL_cleanse(raw, sizeof raw);
    OPENSSL_cleanse(b64, sizeof b64);
    return rv;
}
