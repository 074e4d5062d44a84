/*
 * broker_load.c - concurrent load on the broker (docs/PROTOCOL.md section 8)
 * for tests/integration/run_broker_kill.sh, which kills Apache children
 * with SIGKILL while several of these processes run. One Apache serves:
 *   http://broker.example:$MP_BT_BPORT/mp/   SetHandler micropay-broker
 *   http://news.example:$MP_BT_PORT/paid/    vendor news.example, price
 *                                            0.01 USD, PayWord unit 0.005
 * (both names resolve to 127.0.0.1 through CURLOPT_RESOLVE).
 *
 * Modes:
 *   customer ACCOUNT SECONDS  loops for SECONDS: /buy 0.03, /exchange of its
 *                             oldest broker scrip (change comes back while
 *                             the value exceeds the amounts), /certify 0.02
 *                             with a fresh key, then pays a news page with
 *                             Millicent (broker-minted vendor scrip) and
 *                             another with PayWord (2 words), appending what
 *                             the vendor needs to redeem to $MP_BL_OUT/deposits
 *   vendor ACCOUNT            /redeem of the new lines of deposits in batches
 *                             until $MP_BL_OUT/stop exists, then of the rest
 *   buy ACCOUNT AMOUNT        one /buy (the final phase without kills)
 *
 * Every broker request has a fresh request_id. When it gets no answer (the
 * connection dies with its child, a 5xx, a timeout) the same request_id
 * and body go again, signed with a fresh ts, until a definitive answer
 * (PROTOCOL.md 8.2); a vendor payment likewise goes again with the same
 * credential (7.7: the vendor recognises the retry of an accepted payment).
 * Each connection is used for one request only: curl silently re-sends a
 * request that died on a reused connection, which would hide the retries
 * this test is about.
 *
 * Output in $MP_BL_OUT:
 *   ok.<pid>       "<endpoint> <request_id>" per request that got 200
 *   <pid>.sum      "key value" lines (units of 0.00001 for money):
 *                  account, bought, certified, mc_paid, pw_paid,
 *                  broker_unspent, vendor_unspent (customers); credited,
 *                  items, refused_items (vendor); request and retry counts
 *   deposits       "mc PAYMENT HOST TARGET" and "pw REDEEM" lines (base64url)
 * and one summary line on stdout. Keys: $MP_BT_DIR/<account>.key.
 * Exit 0 when every request got a definitive and expected answer, 1 when one
 * was refused unexpectedly or never answered, 2 on usage or setup errors.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <strings.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <time.h>
#include <sys/stat.h>
#include <curl/curl.h>
#include <jansson.h>
#include "mp.h"

#define BROKER "broker.example"
#define NEWS   "news.example"
#define CUR    "USD"

#define BUY_AMOUNT    "0.03 USD"
#define CERT_CREDIT   "0.02 USD"
#define PAGE_PRICE    "0.01 USD"   /* run_broker_kill.sh: news.example /paid/ */
#define PW_UNIT       "0.005 USD"
#define PW_WORDS      4            /* chain length: n * unit = the cert's credit */
#define GIVE_UP_S     90           /* a request unanswered this long fails the run */
#define REDEEM_BATCH  200          /* items per /redeem (the broker takes 1000) */

static const char *g_dir, *g_out;
static char g_news_host[96], g_broker_host[96];
static CURL *g_easy;
static struct curl_slist *g_resolve;
static mp_mac *g_mac;
static unsigned g_rid;
static FILE *g_okf;
static int g_bad;                   /* an unexpected answer: exit 1 */

typedef struct {
    char id[MP_ACCOUNT_MAX + 1];
    uint8_t key[MP_SECRET_LEN];
} account;

/* What one process did; written to <pid>.sum. */
static struct {
    unsigned long buy, exchange, certify, redeem;    /* 200s */
    unsigned long pay_mc, pay_pw;                    /* vendor 200s */
    unsigned long attempts, no_answer, http5xx;      /* every try, broker and vendor */
    unsigned long retried;                           /* requests that needed more than one try */
    unsigned long recovered;                         /* ... and then got 200 */
    unsigned long refused;                           /* definitive refusals (unexpected here) */
    uint64_t bought, certified, mc_paid, pw_paid;    /* units */
    uint64_t credited, items, refused_items;         /* vendor */
} S;

/* ---- small helpers ------------------------------------------------------------------------ */

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "broker_load: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* An unexpected answer: noted, and the process exits 1 at the end. */
static void bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void bad(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    g_bad = 1;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        die("out of memory");
    va_end(ap);
    return s;
}

static uint64_t now_s(void)
{
    return (uint64_t)time(NULL);
}

/* Seconds on a clock that does not step: the run's deadline. */
static uint64_t mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static char *b64(const uint8_t *p, size_t n)
{
    size_t cap = mp_b64url_len(n) + 1, len;
    char *s = malloc(cap);

    if (s == NULL || mp_b64url_encode(p, n, s, cap, &len) != MP_OK)
        die("b64");
    return s;
}

static size_t unb64(const char *t, uint8_t *buf, size_t cap)
{
    size_t len = 0;

    if (t == NULL || mp_b64url_decode(t, strlen(t), buf, cap, &len) != MP_OK)
        return 0;
    return len;
}

static mp_amount amt(const char *s)
{
    mp_amount a;

    if (mp_amount_parse(s, strlen(s), &a) != MP_OK)
        die("amount %s", s);
    return a;
}

static uint64_t units_of(const char *s)
{
    mp_amount a;

    if (s == NULL || mp_amount_parse(s, strlen(s), &a) != MP_OK)
        return UINT64_MAX;
    return a.units;
}

static char *jtext(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);

    json_decref(o);
    if (s == NULL)
        die("json_dumps");
    return s;
}

/* A fresh request_id, unique over the run: account, pid, counter. */
static char *rid(const account *a)
{
    return xasprintf("%s-%ld-%u", a->id, (long)getpid(), ++g_rid);
}

static void ok_log(const char *ep, const char *id)
{
    fprintf(g_okf, "%s %s\n", ep, id);
    fflush(g_okf);
}

/* Appends line (with its newline) to deposits in one write(2): O_APPEND
 * writes of a regular file do not interleave, so the customers share one file. */
static void deposit_line(const char *line)
{
    char *path = xasprintf("%s/deposits", g_out);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    size_t n = strlen(line);

    if (fd < 0 || write(fd, line, n) != (ssize_t)n || close(fd) != 0)
        die("cannot append to %s", path);
    free(path);
}

/* ---- HTTP --------------------------------------------------------------------------------- */

typedef struct {
    long status;            /* -1: no answer (err says why) */
    CURLcode err;
    char *body;
    size_t len;
    char *hdrs;
    size_t hlen;
    json_t *json;
} resp;

static void resp_free(resp *r)
{
    free(r->body);
    free(r->hdrs);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

static size_t on_data(char *buf, size_t size, size_t nitems, void *ud, int hdr)
{
    resp *r = ud;
    size_t n = size * nitems;
    char **p = hdr ? &r->hdrs : &r->body;
    size_t *l = hdr ? &r->hlen : &r->len;
    char *nb = realloc(*p, *l + n + 1);

    if (nb == NULL)
        return 0;
    memcpy(nb + *l, buf, n);
    *l += n;
    nb[*l] = '\0';
    *p = nb;
    return n;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud)
{
    return on_data(buf, size, nitems, ud, 1);
}

static size_t on_body(char *buf, size_t size, size_t nitems, void *ud)
{
    return on_data(buf, size, nitems, ud, 0);
}

/* The value of response field name (static copy), or NULL. */
static const char *rh(const resp *r, const char *name)
{
    static char val[9000];
    const char *p = r->hdrs, *found = NULL, *e;
    size_t nl = strlen(name), n;

    while (p != NULL && *p) {
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':')
            found = p + nl + 1;
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    if (found == NULL)
        return NULL;
    while (*found == ' ' || *found == '\t')
        found++;
    for (e = found; *e && *e != '\r' && *e != '\n'; e++)
        ;
    n = (size_t)(e - found) < sizeof val - 1 ? (size_t)(e - found) : sizeof val - 1;
    memcpy(val, found, n);
    val[n] = '\0';
    return val;
}

static void http(const char *url, const char *auth, const char *body, resp *r)
{
    struct curl_slist *h = NULL;

    memset(r, 0, sizeof *r);
    curl_easy_reset(g_easy);
    curl_easy_setopt(g_easy, CURLOPT_URL, url);
    curl_easy_setopt(g_easy, CURLOPT_RESOLVE, g_resolve);
    curl_easy_setopt(g_easy, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(g_easy, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(g_easy, CURLOPT_TIMEOUT, 15L);
    /* one request per connection: see the top of the file */
    curl_easy_setopt(g_easy, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(g_easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(g_easy, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(g_easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(g_easy, CURLOPT_WRITEDATA, r);
    h = curl_slist_append(h, "Expect:");
    h = curl_slist_append(h, "Accept: application/json");
    if (auth != NULL)
        h = curl_slist_append(h, auth);
    if (body != NULL) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(g_easy, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(g_easy, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else {
        curl_easy_setopt(g_easy, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(g_easy, CURLOPT_HTTPHEADER, h);
    S.attempts++;
    if ((r->err = curl_easy_perform(g_easy)) != CURLE_OK) {
        r->status = -1;
    } else {
        curl_easy_getinfo(g_easy, CURLINFO_RESPONSE_CODE, &r->status);
        if (r->body != NULL)
            r->json = json_loadb(r->body, r->len, 0, NULL);
    }
    curl_slist_free_all(h);
}

static const char *js(const resp *r, const char *member)
{
    json_t *v = r->json ? json_object_get(r->json, member) : NULL;

    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* No answer, or the server failed (5xx): the request may or may not have
 * taken effect, so it must go again unchanged. Noted with the wall-clock
 * time, which run_broker_kill.sh lines up with its kills as evidence. */
static int no_answer(const char *what, const resp *r)
{
    struct timespec ts;
    char why[64];

    if (r->status >= 0 && r->status < 500)
        return 0;
    if (r->status < 0)
        S.no_answer++;
    else
        S.http5xx++;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (r->status < 0)
        snprintf(why, sizeof why, "%s", curl_easy_strerror(r->err));
    else
        snprintf(why, sizeof why, "HTTP %ld", r->status);
    fprintf(stderr, "note: %lld.%06ld %s: no answer: %s\n", (long long)ts.tv_sec,
            ts.tv_nsec / 1000, what, why);
    return 1;
}

/* Runs try(ctx, r) until a definitive answer; the status (-1: given up). */
static long until_answered(const char *what, void (*try)(void *ctx, resp *r), void *ctx, resp *r)
{
    uint64_t t0 = mono_s();
    long pause = 20;
    int tries = 0;

    for (;;) {
        try(ctx, r);
        tries++;
        if (!no_answer(what, r))
            break;
        if (mono_s() - t0 > GIVE_UP_S) {
            bad("%s: no answer after %d tries in %d s (last status %ld)", what, tries, GIVE_UP_S,
                r->status);
            if (tries > 1)
                S.retried++;
            return -1;
        }
        resp_free(r);
        sleep_ms(pause);
        pause = pause < 400 ? pause * 2 : 400;
    }
    if (tries > 1) {
        S.retried++;
        if (r->status == 200)
            S.recovered++;
    }
    return r->status;
}

/* ---- broker requests ---------------------------------------------------------------------- */

static void load_key(account *a)
{
    char *path = xasprintf("%s/%s.key", g_dir, a->id), line[256];
    FILE *f = fopen(path, "r");

    if (f == NULL || fgets(line, sizeof line, f) == NULL)
        die("cannot read %s", path);
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    if (unb64(line, a->key, sizeof a->key) != MP_SECRET_LEN)
        die("%s: not a base64url 32-byte key", path);
    free(path);
}

typedef struct {
    const account *a;
    const char *ep;
    const char *body;
} bcall_ctx;

/* One try of POST /mp/<ep>, signed now: a retry carries a current ts. */
static void bpost_try(void *ctx, resp *r)
{
    const bcall_ctx *c = ctx;
    char *target = xasprintf("/mp/%s", c->ep), *url, *auth, *sig64;
    uint8_t bh[MP_HASH_LEN], sig[MP_HASH_LEN];
    uint64_t ts = now_s();

    if (mp_sha256(c->body, strlen(c->body), bh) != MP_OK
        || mp_broker_sig(c->a->key, c->a->id, "POST", target, strlen(target), ts, bh, sig) != MP_OK)
        die("mp_broker_sig");
    sig64 = b64(sig, sizeof sig);
    auth = xasprintf("Authorization: MP1-HMAC account=\"%s\", ts=\"%llu\", sig=\"%s\"", c->a->id,
                     (unsigned long long)ts, sig64);
    url = xasprintf("http://%s%s", g_broker_host, target);
    http(url, auth, c->body, r);
    free(target);
    free(url);
    free(auth);
    free(sig64);
}

/* POST /mp/<ep> until a definitive answer. A 200 is logged to ok.<pid>
 * under id and returned with its JSON; anything else is unexpected in this
 * test (every request is valid and funded) and returns 0. */
static int bcall(const account *a, const char *ep, const char *id, const char *body, resp *r)
{
    bcall_ctx c = { a, ep, body };
    char *what = xasprintf("%s %s", ep, id);
    long st = until_answered(what, bpost_try, &c, r);
    int ok = 0;

    if (st == 200 && r->json != NULL && json_is_object(r->json) && js(r, "request_id") != NULL
        && strcmp(js(r, "request_id"), id) == 0) {
        ok_log(ep, id);
        ok = 1;
    } else if (st >= 0) {
        S.refused++;
        bad("%s: %ld %.300s", what, st, r->body ? r->body : "");
    }
    free(what);
    return ok;
}

/* ---- the customer ------------------------------------------------------------------------- */

typedef struct {
    mp_scrip s;
    uint8_t csec[MP_HASH_LEN];
    int spent;
} coin;

typedef struct {
    coin *v;
    size_t n, cap, next;        /* next: the oldest that may be unspent */
} coins;

static coin *coin_add(coins *cs, const mp_scrip *s, const uint8_t csec[MP_HASH_LEN])
{
    coin *c;

    if (cs->n == cs->cap) {
        cs->cap = cs->cap ? 2 * cs->cap : 64;
        if ((cs->v = realloc(cs->v, cs->cap * sizeof *cs->v)) == NULL)
            die("out of memory");
    }
    c = &cs->v[cs->n++];
    memset(c, 0, sizeof *c);
    c->s = *s;
    memcpy(c->csec, csec, MP_HASH_LEN);
    return c;
}

/* The oldest unspent coin (coins are spent oldest first), or NULL. */
static coin *coin_oldest(coins *cs)
{
    while (cs->next < cs->n && cs->v[cs->next].spent)
        cs->next++;
    return cs->next < cs->n ? &cs->v[cs->next] : NULL;
}

static uint64_t coins_unspent(const coins *cs)
{
    uint64_t u = 0;
    size_t i;

    for (i = 0; i < cs->n; i++)
        if (!cs->v[i].spent)
            u += cs->v[i].s.value.units;
    return u;
}

static int scrip_unb64(const char *t, mp_scrip *s)
{
    uint8_t buf[MP_WIRE_MAX];
    size_t len = unb64(t, buf, sizeof buf);

    return len > 0 && mp_scrip_decode(buf, len, s) == MP_OK;
}

static coins g_broker_coins, g_vendor_coins;

static int do_buy(const account *a, const char *amount)
{
    char *id = rid(a), *body = jtext(json_pack("{s:s, s:s}", "request_id", id, "amount", amount));
    uint8_t csec[MP_HASH_LEN];
    mp_scrip s;
    int ok = 0;
    resp r;

    if (bcall(a, "buy", id, body, &r)) {
        if (!scrip_unb64(js(&r, "scrip"), &s) || strcmp(s.vendor, BROKER) != 0
            || s.value.units != units_of(amount)
            || unb64(js(&r, "customer_secret"), csec, sizeof csec) != MP_HASH_LEN) {
            bad("buy %s: the answer holds no scrip of %s: %.300s", id, amount, r.body);
        } else {
            coin_add(&g_broker_coins, &s, csec);
            S.buy++;
            S.bought += s.value.units;
            ok = 1;
        }
    }
    resp_free(&r);
    free(body);
    free(id);
    return ok;
}

/* mc_payment of c for (method, host, target) at price, base64url. */
static char *mc_cred(const coin *c, const char *method, const char *host, const char *target,
                     const mp_amount *price, mp_mc_payment *p)
{
    uint8_t buf[MP_WIRE_MAX];
    mp_request req;
    size_t len;

    req.method = method;
    req.method_len = strlen(method);
    req.host = host;
    req.host_len = strlen(host);
    req.target = target;
    req.target_len = strlen(target);
    if (mp_mc_pay(g_mac, &c->s, c->csec, &req, price, p) != MP_OK
        || mp_mc_payment_encode(p, buf, sizeof buf, &len) != MP_OK)
        die("mc_pay");
    return b64(buf, len);
}

/* /exchange of the oldest broker scrip for one or two 0.01 news scrip; the
 * change (value - amounts) joins the broker coins. */
static int do_exchange(const account *a)
{
    coin *bc = coin_oldest(&g_broker_coins);
    mp_amount one = amt(PAGE_PRICE), sum;
    mp_mc_payment p;
    mp_mc_reply rep;
    uint8_t csec[MP_HASH_LEN], bcsec[MP_HASH_LEN], buf[MP_WIRE_MAX];
    char *pay, *body, *id;
    json_t *list, *sl;
    size_t i, k, len;
    int ok = 0;
    resp r;

    if (bc == NULL || bc->s.value.units < one.units)
        return 0;
    k = bc->s.value.units >= 2 * one.units ? 2 : 1;
    list = json_array();
    mp_amount_set(&sum, 0, CUR);
    for (i = 0; i < k; i++) {
        json_array_append_new(list, json_string(PAGE_PRICE));
        mp_amount_add(&sum, &one, &sum);
    }
    id = rid(a);
    pay = mc_cred(bc, "POST", g_broker_host, "/mp/exchange", &sum, &p);
    body = jtext(json_pack("{s:s, s:s, s:o, s:s}", "request_id", id, "vendor", NEWS, "amounts", list,
                           "payment", pay));
    if (bcall(a, "exchange", id, body, &r)) {
        /* the broker took the scrip: spent, whatever the rest of the answer says */
        bc->spent = 1;
        S.exchange++;
        sl = json_object_get(r.json, "scrip");
        len = unb64(js(&r, "change"), buf, sizeof buf);
        if (!json_is_array(sl) || json_array_size(sl) != k
            || unb64(js(&r, "customer_secret"), csec, sizeof csec) != MP_HASH_LEN || len == 0
            || mp_mc_reply_decode(buf, len, &rep) != MP_OK
            || mp_mc_reply_check(g_mac, &rep, &p, bc->csec) != MP_OK
            || rep.has_change != (bc->s.value.units > sum.units)) {
            bad("exchange %s: a bad answer: %.300s", id, r.body);
        } else {
            for (i = 0; i < k; i++) {
                mp_scrip s;

                if (!scrip_unb64(json_string_value(json_array_get(sl, i)), &s)
                    || strcmp(s.vendor, NEWS) != 0 || s.value.units != one.units)
                    bad("exchange %s: scrip %zu is no 0.01 news scrip", id, i);
                else
                    coin_add(&g_vendor_coins, &s, csec);
            }
            /* a copy: coin_add may move the array bc points into */
            memcpy(bcsec, bc->csec, sizeof bcsec);
            if (rep.has_change)
                coin_add(&g_broker_coins, &rep.change, bcsec);
            ok = 1;
        }
    }
    resp_free(&r);
    free(pay);
    free(body);
    free(id);
    return ok;
}

typedef struct {
    const char *target;
    const char *cred;
} vget_ctx;

static void vget_try(void *ctx, resp *r)
{
    const vget_ctx *c = ctx;
    char *url = xasprintf("http://%s%s", g_news_host, c->target);
    char *auth = xasprintf("Authorization: Payment %s", c->cred);

    http(url, auth, NULL, r);
    free(url);
    free(auth);
}

/* GET target at news with credential cred until a definitive answer. */
static long vpay(const char *target, const char *cred, resp *r)
{
    vget_ctx c = { target, cred };
    char *what = xasprintf("GET %s", target);
    long st = until_answered(what, vget_try, &c, r);

    if (st >= 0 && st != 200) {
        S.refused++;
        bad("%s: %ld Payment-Error %s", what, st, rh(r, "Payment-Error") ?: "-");
    }
    free(what);
    return st;
}

static const char *page(void)
{
    static char t[64];
    static unsigned n;

    snprintf(t, sizeof t, "/paid/p%u.html", n++ % 8);
    return t;
}

/* Pays a page with the oldest news scrip (exactly the price: no change). */
static void do_pay_mc(void)
{
    coin *c = coin_oldest(&g_vendor_coins);
    mp_amount price = amt(PAGE_PRICE);
    mp_mc_payment p;
    mp_mc_reply rep;
    uint8_t buf[MP_WIRE_MAX];
    const char *pc, *target;
    char *cred, *line;
    size_t len;
    resp r;

    if (c == NULL)
        return;
    target = page();
    cred = mc_cred(c, "GET", g_news_host, target, &price, &p);
    if (vpay(target, cred, &r) == 200) {
        c->spent = 1;
        S.pay_mc++;
        S.mc_paid += c->s.value.units;
        pc = rh(&r, "Payment-Change");
        len = pc ? unb64(pc, buf, sizeof buf) : 0;
        if (len == 0 || mp_mc_reply_decode(buf, len, &rep) != MP_OK
            || mp_mc_reply_check(g_mac, &rep, &p, c->csec) != MP_OK || rep.has_change)
            bad("GET %s: no valid Payment-Change without change", target);
        /* the deposit: the payment and the request it was for (8.6) */
        line = xasprintf("mc %s %s %s\n", cred, g_news_host, target);
        deposit_line(line);
        free(line);
    }
    resp_free(&r);
    free(cred);
}

/* /certify of CERT_CREDIT with a fresh key, then one page paid with the
 * first two words of a commitment under it; the vendor gets its redeem record. */
static void do_certify_and_pay_pw(const account *a)
{
    mp_signer *sg = NULL;
    mp_pubkey pk;
    mp_pw_commit *cm = NULL;
    mp_pw_payment *pp = NULL;
    mp_pw_redeem *rd = NULL;
    mp_chain *chain = NULL;
    uint8_t buf[MP_WIRE_MAX], wn[MP_HASH_LEN];
    char *k, *body, *id = rid(a), *cred = NULL, *rec, *line;
    const char *target;
    size_t len;
    resp r;

    if (mp_signer_generate(&sg) != MP_OK || mp_signer_pubkey(sg, &pk) != MP_OK)
        die("signer");
    k = b64(pk.key, pk.len);
    body = jtext(json_pack("{s:s, s:{s:s, s:s}, s:s}", "request_id", id, "key", "alg", "ed25519",
                           "key", k, "credit_limit", CERT_CREDIT));
    if (!bcall(a, "certify", id, body, &r))
        goto out;
    if ((cm = calloc(1, sizeof *cm)) == NULL || (pp = calloc(1, sizeof *pp)) == NULL
        || (rd = calloc(1, sizeof *rd)) == NULL)
        die("out of memory");
    len = unb64(js(&r, "cert"), buf, sizeof buf);
    if (len == 0 || mp_pw_cert_decode(buf, len, &cm->cert) != MP_OK
        || cm->cert.credit_limit.units != units_of(CERT_CREDIT) || strcmp(cm->cert.user, a->id) != 0) {
        bad("certify %s: a bad answer: %.300s", id, r.body);
        goto out;
    }
    S.certify++;
    S.certified += cm->cert.credit_limit.units;
    /* the commitment: n words of unit, worth exactly the credit */
    if (mp_random(wn, sizeof wn) != MP_OK || mp_chain_new(wn, PW_WORDS, &chain) != MP_OK)
        die("chain");
    snprintf(cm->vendor, sizeof cm->vendor, "%s", NEWS);
    mp_chain_w0(chain, cm->w0);
    cm->date = now_s();
    cm->expiry = cm->cert.expiry;
    cm->unit = amt(PW_UNIT);
    cm->n = PW_WORDS;
    if (mp_pw_commit_sign(cm, sg) != MP_OK)
        die("commit sign");
    memcpy(pp->commit_id, cm->id, MP_HASH_LEN);
    pp->i = 2;
    pp->k = 2;
    pp->has_commit = 1;
    pp->commit = *cm;
    if (mp_chain_word(chain, pp->i, pp->w) != MP_OK
        || mp_pw_payment_encode(pp, buf, sizeof buf, &len) != MP_OK)
        die("pw payment");
    cred = b64(buf, len);
    target = page();
    resp_free(&r);
    if (vpay(target, cred, &r) == 200) {
        S.pay_pw++;
        S.pw_paid += (uint64_t)pp->k * cm->unit.units;
        rd->commit = *cm;
        rd->last = pp->i;
        memcpy(rd->w_last, pp->w, MP_HASH_LEN);
        if (mp_pw_redeem_encode(rd, buf, sizeof buf, &len) != MP_OK)
            die("redeem encode");
        rec = b64(buf, len);
        line = xasprintf("pw %s\n", rec);
        deposit_line(line);
        free(line);
        free(rec);
    }
out:
    resp_free(&r);
    mp_chain_free(chain);
    mp_signer_free(sg);
    free(cm);
    free(pp);
    free(rd);
    free(cred);
    free(k);
    free(body);
    free(id);
}

static void customer(const account *a, unsigned seconds)
{
    uint64_t end = mono_s() + seconds;

    while (mono_s() < end && !g_bad) {
        do_buy(a, BUY_AMOUNT);
        do_exchange(a);
        do_certify_and_pay_pw(a);
        do_pay_mc();
    }
}

/* ---- the vendor --------------------------------------------------------------------------- */

/* New complete lines of deposits from *off on (a line being written is left
 * for the next call); NULL when there are none. */
static char *read_new(off_t *off)
{
    char *path = xasprintf("%s/deposits", g_out), *buf = NULL, *nl;
    struct stat sb;
    ssize_t got;
    size_t want;
    int fd = open(path, O_RDONLY);

    free(path);
    if (fd < 0 || fstat(fd, &sb) != 0 || sb.st_size <= *off) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    want = (size_t)(sb.st_size - *off);
    if ((buf = malloc(want + 1)) == NULL)
        die("out of memory");
    got = pread(fd, buf, want, *off);
    close(fd);
    if (got <= 0) {
        free(buf);
        return NULL;
    }
    buf[got] = '\0';
    if ((nl = strrchr(buf, '\n')) == NULL) {
        free(buf);
        return NULL;
    }
    nl[1] = '\0';
    *off += (off_t)(nl + 1 - buf);
    return buf;
}

/* One /redeem of up to REDEEM_BATCH lines from *lines on (each ends in
 * '\n'); *lines advances past them. */
static void redeem_batch(const account *a, char **lines)
{
    json_t *pw = json_array(), *mc = json_array(), *res, *it;
    char *id = rid(a), *body, *line, *nl, *sp, *kind, *x, *host, *target;
    uint64_t credited = 0, n = 0;
    size_t i;
    resp r;

    while (n < REDEEM_BATCH && **lines != '\0') {
        line = *lines;
        if ((nl = strchr(line, '\n')) == NULL)
            die("deposits: a line without its end");
        *nl = '\0';
        *lines = nl + 1;
        kind = strtok_r(line, " ", &sp);
        x = strtok_r(NULL, " ", &sp);
        if (kind != NULL && strcmp(kind, "pw") == 0 && x != NULL) {
            json_array_append_new(pw, json_string(x));
        } else if (kind != NULL && strcmp(kind, "mc") == 0 && x != NULL
                   && (host = strtok_r(NULL, " ", &sp)) != NULL
                   && (target = strtok_r(NULL, " ", &sp)) != NULL) {
            json_array_append_new(mc, json_pack("{s:s, s:s, s:s, s:s}", "payment", x, "method",
                                                "GET", "host", host, "target", target));
        } else {
            die("deposits: a bad line");
        }
        n++;
    }
    body = jtext(json_pack("{s:s, s:o, s:o}", "request_id", id, "payword", pw, "millicent", mc));
    if (bcall(a, "redeem", id, body, &r)) {
        S.redeem++;
        res = json_object_get(r.json, "results");
        json_array_foreach(res, i, it) {
            const char *st = json_string_value(json_object_get(it, "status"));
            uint64_t c = units_of(json_string_value(json_object_get(it, "credited")));

            S.items++;
            if (st == NULL || strcmp(st, "ok") != 0 || c == UINT64_MAX) {
                char *t = json_dumps(it, JSON_COMPACT);

                S.refused_items++;
                bad("redeem %s: item %zu: %s", id, i, t ? t : "?");
                free(t);
            } else {
                credited += c;
            }
        }
        if (json_array_size(res) != n || units_of(js(&r, "credited")) != credited)
            bad("redeem %s: %zu results for %llu items, credited %s, items sum to %llu", id,
                json_array_size(res), (unsigned long long)n, js(&r, "credited") ?: "-",
                (unsigned long long)credited);
        S.credited += credited;
    }
    resp_free(&r);
    free(body);
    free(id);
}

static void vendor(const account *a)
{
    char *stop = xasprintf("%s/stop", g_out), *buf, *p;
    off_t off = 0;
    int stopping;

    for (;;) {
        /* stop is made after the last customer exited: every line is there */
        stopping = access(stop, F_OK) == 0;
        if ((buf = read_new(&off)) == NULL) {
            if (stopping)
                break;
            sleep_ms(200);
            continue;
        }
        for (p = buf; *p != '\0';)
            redeem_batch(a, &p);
        free(buf);
    }
    free(stop);
}

/* ---- main --------------------------------------------------------------------------------- */

static int env_int(const char *name)
{
    const char *v = getenv(name);

    if (v == NULL || atoi(v) <= 0)
        die("%s is not set", name);
    return atoi(v);
}

static void write_sum(const char *mode, const account *a)
{
    char *path = xasprintf("%s/%ld.sum", g_out, (long)getpid());
    FILE *f = fopen(path, "w");

    if (f == NULL)
        die("cannot write %s", path);
    fprintf(f, "mode %s\naccount %s\n", mode, a->id);
    fprintf(f, "buy %lu\nexchange %lu\ncertify %lu\nredeem %lu\npay_mc %lu\npay_pw %lu\n", S.buy,
            S.exchange, S.certify, S.redeem, S.pay_mc, S.pay_pw);
    fprintf(f, "attempts %lu\nno_answer %lu\nhttp5xx %lu\nretried %lu\nrecovered %lu\nrefused %lu\n",
            S.attempts, S.no_answer, S.http5xx, S.retried, S.recovered, S.refused);
    fprintf(f, "bought %llu\ncertified %llu\nmc_paid %llu\npw_paid %llu\n",
            (unsigned long long)S.bought, (unsigned long long)S.certified,
            (unsigned long long)S.mc_paid, (unsigned long long)S.pw_paid);
    fprintf(f, "broker_unspent %llu\nvendor_unspent %llu\n",
            (unsigned long long)coins_unspent(&g_broker_coins),
            (unsigned long long)coins_unspent(&g_vendor_coins));
    fprintf(f, "credited %llu\nitems %llu\nrefused_items %llu\n", (unsigned long long)S.credited,
            (unsigned long long)S.items, (unsigned long long)S.refused_items);
    if (fclose(f) != 0)
        die("cannot write %s", path);
    free(path);
    printf("%s %s: buy %lu, exchange %lu, certify %lu, redeem %lu (%llu items), paid mc %lu pw %lu; "
           "%lu tries, %lu unanswered, %lu 5xx, %lu requests retried (%lu then 200), %lu refused\n",
           mode, a->id, S.buy, S.exchange, S.certify, S.redeem, (unsigned long long)S.items,
           S.pay_mc, S.pay_pw, S.attempts, S.no_answer, S.http5xx, S.retried, S.recovered,
           S.refused);
}

int main(int argc, char **argv)
{
    uint8_t dummy[MP_SECRET_LEN];
    account a;
    char *res, *path;
    const char *mode = argc > 1 ? argv[1] : "";

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!((argc == 4 && strcmp(mode, "customer") == 0 && atoi(argv[3]) > 0)
          || (argc == 3 && strcmp(mode, "vendor") == 0)
          || (argc == 4 && strcmp(mode, "buy") == 0))) {
        fprintf(stderr, "usage: broker_load customer ACCOUNT SECONDS | vendor ACCOUNT | "
                "buy ACCOUNT AMOUNT\n  (MP_BT_PORT, MP_BT_BPORT, MP_BT_DIR, MP_BL_OUT)\n");
        return 2;
    }
    if ((g_dir = getenv("MP_BT_DIR")) == NULL || (g_out = getenv("MP_BL_OUT")) == NULL)
        die("MP_BT_DIR or MP_BL_OUT is not set");
    snprintf(g_news_host, sizeof g_news_host, "%s:%d", NEWS, env_int("MP_BT_PORT"));
    snprintf(g_broker_host, sizeof g_broker_host, "%s:%d", BROKER, env_int("MP_BT_BPORT"));
    if (strlen(argv[2]) > MP_ACCOUNT_MAX - 24)
        die("account id too long for request ids");
    memset(&a, 0, sizeof a);
    snprintf(a.id, sizeof a.id, "%s", argv[2]);
    load_key(&a);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || (g_easy = curl_easy_init()) == NULL)
        die("curl");
    res = xasprintf("%s:127.0.0.1", g_news_host);
    g_resolve = curl_slist_append(g_resolve, res);
    free(res);
    res = xasprintf("%s:127.0.0.1", g_broker_host);
    g_resolve = curl_slist_append(g_resolve, res);
    free(res);
    memset(dummy, 0x5a, sizeof dummy);
    if (mp_mac_new(dummy, sizeof dummy, &g_mac) != MP_OK)
        die("crypto");
    path = xasprintf("%s/ok.%ld", g_out, (long)getpid());
    if ((g_okf = fopen(path, "a")) == NULL)
        die("cannot write %s", path);
    free(path);

    if (strcmp(mode, "customer") == 0)
        customer(&a, (unsigned)atoi(argv[3]));
    else if (strcmp(mode, "vendor") == 0)
        vendor(&a);
    else
        do_buy(&a, argv[3]);
    write_sum(mode, &a);

    fclose(g_okf);
    free(g_broker_coins.v);
    free(g_vendor_coins.v);
    mp_mac_free(g_mac);
    curl_easy_cleanup(g_easy);
    curl_slist_free_all(g_resolve);
    curl_global_cleanup();
    return g_bad ? 1 : 0;
}
