/*
 * broker_client.c - the broker (docs/PROTOCOL.md section 8) through a real
 * Apache, driven by tests/integration/run_broker.sh, which sets everything
 * up with mpadmin and starts one Apache serving:
 *   http://broker.example:$MP_BT_BPORT/mp/   SetHandler micropay-broker
 *   http://news.example:$MP_BT_PORT/         vendor news.example
 *   http://shop.example:$MP_BT_PORT/         vendor shop.example
 * (all three names resolve to 127.0.0.1 through CURLOPT_RESOLVE).
 *
 * Environment: MP_BT_PORT, MP_BT_BPORT, MP_BT_DIR (account keys
 * <account>.key as written by `mpadmin accounts create --key-out`; the
 * client keeps its wallet in wallet.json and writes holdings there).
 * Accounts: customers alice, bob, carol (carol holds little money), vendor
 * accounts v-news (news.example) and v-shop (shop.example).
 *
 * Modes:
 *   run            every endpoint, every rejection path, a workload of both
 *                  customers with both schemes at both vendors
 *   pw-before-rotate  pays PayWord words under a certificate of the signing
 *                  key about to be retired (redeemed after the rotation)
 *   after-rotate   after `mpadmin keys rotate` and a graceful restart: spends
 *                  scrip held from before, buys and pays with new scrip
 * after-rotate counts the first run's spends as deposited: run_broker.sh
 * runs it only after mpadmin redeem, whose conservation check proved it.
 * Both write $MP_BT_DIR/holdings (units of 0.00001) for the conservation
 * check of run_broker.sh:
 *   broker_unspent  broker scrip the client holds unspent (change included)
 *   vendor_unspent  broker-minted vendor scrip the client holds unspent
 *   undeposited     broker-minted vendor scrip spent at a vendor and not yet
 *                   deposited at the broker by this client (mpadmin redeem
 *                   deposits the rest)
 * Vendor-minted change is not counted anywhere: it is the vendor's own
 * liability (PROTOCOL.md 8.6), funded by the deposit of the broker-minted
 * scrip it was change of, which the broker credits at full value. PayWord
 * words need no term either: until redeemed their value is still in the
 * customer's reserved credit, and /redeem moves it to the vendor account.
 * For run_broker.sh's check of `mpadmin accounts release`, both modes also
 * append to $MP_BT_DIR/payword (run starts it afresh), one line per event:
 *   cert SERIAL ACCOUNT CREDIT_UNITS EXPIRY   a certificate /certify issued
 *   paid SERIAL UNITS                         a PayWord payment a vendor
 *                                             accepted (200) under it
 *
 * Output: CUnit's verbose run, then "N passed, M failed"; exit 1 on failure.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <strings.h>
#include <unistd.h>
#include <time.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <CUnit/CUnit.h>
#include <CUnit/Basic.h>
#include "mp.h"

#define BROKER "broker.example"
#define NEWS   "news.example"
#define SHOP   "shop.example"
#define CUR    "USD"

/* ---- small helpers ------------------------------------------------------------------------ */

static const char *g_dir;
static const char *g_sign_body;     /* when set, bpost signs this instead of the body */
static int g_port, g_bport;
static char g_news_host[96], g_shop_host[96], g_broker_host[96];
static CURL *g_easy;
static struct curl_slist *g_resolve;
static mp_mac *g_mac;
static mp_sha *g_sha;
static unsigned g_rid;

static uint64_t now_s(void)
{
    return (uint64_t)time(NULL);
}

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "broker_client: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
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

/* Failure with a diagnostic line; the test goes on (non-fatal). */
#define EXPECT(cond, ...) do { \
        int ok_ = !!(cond); \
        if (!ok_) { \
            fprintf(stderr, "\n    FAIL %s:%d: ", __func__, __LINE__); \
            fprintf(stderr, __VA_ARGS__); \
            fputc('\n', stderr); \
        } \
        CU_assertImplementation(ok_ ? CU_TRUE : CU_FALSE, __LINE__, #cond, __FILE__, "", CU_FALSE); \
    } while (0)

#define OKST(e) do { \
        mp_status st_ = (e); \
        EXPECT(st_ == MP_OK, "%s: %s", #e, mp_strerror(st_)); \
    } while (0)

static char *b64(const uint8_t *p, size_t n)
{
    size_t cap = mp_b64url_len(n) + 1, len;
    char *s = malloc(cap);

    if (s == NULL || mp_b64url_encode(p, n, s, cap, &len) != MP_OK)
        die("b64");
    return s;
}

/* Decodes base64url into buf (cap bytes); 0 on failure. */
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

static const char *fmt_amt(const mp_amount *a)
{
    static char buf[4][MP_AMOUNT_STRMAX];
    static int k;
    char *b = buf[k++ & 3];

    if (mp_amount_format(a, b, MP_AMOUNT_STRMAX) != MP_OK)
        snprintf(b, MP_AMOUNT_STRMAX, "?");
    return b;
}

static uint64_t units_of(const char *s)
{
    mp_amount a;

    if (s == NULL || mp_amount_parse(s, strlen(s), &a) != MP_OK)
        return UINT64_MAX;
    return a.units;
}

/* A fresh request_id. */
static char *rid(void)
{
    return xasprintf("bt%ld-%u-%llu", (long)getpid(), ++g_rid, (unsigned long long)now_s());
}

/* A fresh request_id in a static ring (for inline use). */
static const char *rid_s(void)
{
    static char ring[8][64];
    static unsigned k;
    char *id = rid(), *out = ring[k++ & 7];

    snprintf(out, sizeof ring[0], "%s", id);
    free(id);
    return out;
}

/* ---- HTTP --------------------------------------------------------------------------------- */

typedef struct {
    long status;
    char *body;
    size_t len;
    char *hdrs;         /* "name: value\n" lines */
    size_t hlen;
    json_t *json;       /* the body parsed, or NULL */
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

/* Value of the last response field name (static copy), or NULL. */
static const char *rh(const resp *r, const char *name)
{
    static char val[4][9000];
    static int k;
    const char *p = r->hdrs, *found = NULL, *e;
    size_t nl = strlen(name), n;
    char *out;

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
    e = found;
    while (*e && *e != '\r' && *e != '\n')
        e++;
    n = (size_t)(e - found) < sizeof val[0] - 1 ? (size_t)(e - found) : sizeof val[0] - 1;
    out = val[k++ & 3];
    memcpy(out, found, n);
    out[n] = '\0';
    return out;
}

/* When set, http() holds a body's last bytes back, one every few seconds
 * (Apache's Timeout must not end the read), and sends the final one only
 * once the clock has passed this time: a request line and headers that
 * arrive long before the decision. */
static uint64_t g_slow_until;

typedef struct {
    const char *p;
    size_t len, off;
} slow_body;

#define SLOW_HELD 24         /* bytes held back; one every SLOW_STEP seconds */
#define SLOW_STEP 6

static size_t slow_read(char *buf, size_t size, size_t nitems, void *ud)
{
    slow_body *b = ud;
    size_t room = size * nitems, n;

    if (b->off >= b->len || room == 0)
        return 0;
    if (b->off + SLOW_HELD < b->len) {
        n = b->len - SLOW_HELD - b->off;
        n = n < room ? n : room;
    } else if (now_s() <= g_slow_until && b->off + 1 < b->len) {
        sleep(SLOW_STEP);
        n = 1;
    } else {
        while (now_s() <= g_slow_until)
            sleep(1);
        n = b->len - b->off < room ? b->len - b->off : room;
    }
    memcpy(buf, b->p + b->off, n);
    b->off += n;
    return n;
}

/* One request; body may be NULL; hdrs NULL-terminated (may be NULL). */
static void http(const char *method, const char *url, const char *const *hdrs, const char *body,
                 size_t body_len, resp *r)
{
    struct curl_slist *h = NULL;
    CURLcode cc;
    size_t i;

    memset(r, 0, sizeof *r);
    curl_easy_reset(g_easy);
    curl_easy_setopt(g_easy, CURLOPT_URL, url);
    curl_easy_setopt(g_easy, CURLOPT_RESOLVE, g_resolve);
    curl_easy_setopt(g_easy, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(g_easy, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(g_easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(g_easy, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(g_easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(g_easy, CURLOPT_WRITEDATA, r);
    h = curl_slist_append(h, "Expect:");
    h = curl_slist_append(h, "Accept: application/json");
    for (i = 0; hdrs != NULL && hdrs[i] != NULL; i++)
        h = curl_slist_append(h, hdrs[i]);
    curl_easy_setopt(g_easy, CURLOPT_HTTPHEADER, h);
    slow_body sb = { body, body_len, 0 };

    if (body != NULL && g_slow_until != 0) {
        curl_easy_setopt(g_easy, CURLOPT_POST, 1L);
        curl_easy_setopt(g_easy, CURLOPT_READFUNCTION, slow_read);
        curl_easy_setopt(g_easy, CURLOPT_READDATA, &sb);
        curl_easy_setopt(g_easy, CURLOPT_POSTFIELDSIZE, (long)body_len);
        curl_easy_setopt(g_easy, CURLOPT_TIMEOUT, 300L);
    } else if (body != NULL) {
        curl_easy_setopt(g_easy, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(g_easy, CURLOPT_POSTFIELDSIZE, (long)body_len);
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(g_easy, CURLOPT_CUSTOMREQUEST, method);
    else if (strcmp(method, "GET") == 0 && body == NULL)
        curl_easy_setopt(g_easy, CURLOPT_HTTPGET, 1L);
    cc = curl_easy_perform(g_easy);
    curl_slist_free_all(h);
    if (cc != CURLE_OK) {
        fprintf(stderr, "\n    note: %s %s: %s\n", method, url, curl_easy_strerror(cc));
        r->status = -1;
        return;
    }
    curl_easy_getinfo(g_easy, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->body != NULL)
        r->json = json_loadb(r->body, r->len, 0, NULL);
}

static const char *js(const resp *r, const char *member)
{
    json_t *v = r->json ? json_object_get(r->json, member) : NULL;

    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* ---- broker requests ---------------------------------------------------------------------- */

typedef struct {
    const char *id;
    uint8_t key[MP_SECRET_LEN];
} account;

static account A_ALICE = { "alice", {0} }, A_BOB = { "bob", {0} }, A_CAROL = { "carol", {0} },
               A_NEWS = { "v-news", {0} }, A_SHOP = { "v-shop", {0} }, A_ERIN = { "erin", {0} },
               A_FRANK = { "frank", {0} }, A_GINA = { "gina", {0} };

static void load_key(account *a)
{
    char *path = xasprintf("%s/%s.key", g_dir, a->id), line[256];
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL || fgets(line, sizeof line, f) == NULL)
        die("cannot read %s", path);
    fclose(f);
    n = strcspn(line, "\r\n");
    line[n] = '\0';
    if (unb64(line, a->key, sizeof a->key) != MP_SECRET_LEN)
        die("%s: not a base64url 32-byte key", path);
    free(path);
}

/* POST /mp/<ep> as account a (key: a->key unless key given), ts = now + ts_off.
 * acct_name overrides the account named in the header (NULL: a->id). */
static void bpost_x(const account *a, const char *acct_name, const uint8_t *key, long ts_off,
                    const char *ep, const char *body, resp *r)
{
    char *target = xasprintf("/mp/%s", ep), *url, *auth, *sig64;
    uint8_t bh[MP_HASH_LEN], sig[MP_HASH_LEN];
    uint64_t ts = (uint64_t)((long long)now_s() + ts_off);
    const char *name = acct_name ? acct_name : a->id;
    const char *hdrs[3];

    const char *signed_body = g_sign_body ? g_sign_body : body;

    if (mp_sha256(signed_body, strlen(signed_body), bh) != MP_OK
        || mp_broker_sig(key ? key : a->key, name, "POST", target, strlen(target), ts, bh, sig)
           != MP_OK)
        die("mp_broker_sig");
    sig64 = b64(sig, sizeof sig);
    auth = xasprintf("Authorization: MP1-HMAC account=\"%s\", ts=\"%llu\", sig=\"%s\"", name,
                     (unsigned long long)ts, sig64);
    url = xasprintf("http://%s%s", g_broker_host, target);
    hdrs[0] = auth;
    hdrs[1] = "Content-Type: application/json";
    hdrs[2] = NULL;
    http("POST", url, hdrs, body, strlen(body), r);
    free(target);
    free(url);
    free(auth);
    free(sig64);
}

static void bpost(const account *a, const char *ep, const char *body, resp *r)
{
    bpost_x(a, NULL, NULL, 0, ep, body, r);
}

/* A JSON object to text (the caller frees); takes the reference. */
static char *jtext(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);

    json_decref(o);
    if (s == NULL)
        die("json_dumps");
    return s;
}

/* A broker failure: status, the errors body and Cache-Control. */
#define EXPECT_BFAIL(r, st, why) expect_bfail_(__func__, __LINE__, (r), (st), (why))
static void expect_bfail_(const char *fn, int line, const resp *r, long status, const char *reason)
{
    const char *err = js(r, "error"), *rs = js(r, "reason"), *cc = rh(r, "Cache-Control");
    int ok = r->status == status && err != NULL && strcmp(err, "request_failed") == 0 && rs != NULL
             && strcmp(rs, reason) == 0 && cc != NULL && strstr(cc, "no-store") != NULL;

    if (ok && status == 401) {
        const char *wa = rh(r, "WWW-Authenticate");

        ok = wa != NULL && strncasecmp(wa, "MP1-HMAC", 8) == 0 && strstr(wa, "realm=\"" BROKER "\"");
    }
    if (!ok)
        fprintf(stderr, "\n    FAIL %s:%d: expected %ld %s, got %ld %.300s (Cache-Control %s, "
                "WWW-Authenticate %s)\n", fn, line, status, reason, r->status,
                r->body ? r->body : "", cc ? cc : "-", rh(r, "WWW-Authenticate") ?: "-");
    CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, (unsigned)line, "broker failure", __FILE__, "",
                            CU_FALSE);
}

#define EXPECT_B200(r) expect_b200_(__func__, __LINE__, (r))
static int expect_b200_(const char *fn, int line, const resp *r)
{
    const char *cc = rh(r, "Cache-Control"), *ct = rh(r, "Content-Type");
    int ok = r->status == 200 && r->json != NULL && json_is_object(r->json) && cc != NULL
             && strstr(cc, "no-store") != NULL && ct != NULL
             && strncasecmp(ct, "application/json", 16) == 0;

    if (!ok)
        fprintf(stderr, "\n    FAIL %s:%d: expected 200 JSON no-store, got %ld %.300s\n", fn, line,
                r->status, r->body ? r->body : "");
    CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, (unsigned)line, "broker 200", __FILE__, "",
                            CU_FALSE);
    return ok;
}

/* ---- the wallet --------------------------------------------------------------------------- */

enum { K_BROKER = 1, K_VENDOR = 2, K_CHANGE = 3 };  /* broker scrip, broker-minted vendor scrip,
                                                       vendor-minted change */
typedef struct {
    const account *who;
    int kind;
    mp_scrip s;
    uint8_t csec[MP_HASH_LEN];
    int spent;                  /* accepted by its issuer (vendor or broker) */
    int deposited;              /* K_VENDOR: deposited at the broker by this client */
    /* K_VENDOR spent at the vendor: the payment and its request (for /redeem) */
    char *pay_b64;
    char host[96];
    char target[128];
} coin;

#define COINS_MAX 512
static coin g_coins[COINS_MAX];
static int g_ncoins;

static coin *coin_add(const account *who, int kind, const mp_scrip *s, const uint8_t csec[MP_HASH_LEN])
{
    coin *c;

    if (g_ncoins == COINS_MAX)
        die("wallet full");
    c = &g_coins[g_ncoins++];
    memset(c, 0, sizeof *c);
    c->who = who;
    c->kind = kind;
    c->s = *s;
    memcpy(c->csec, csec, MP_HASH_LEN);
    return c;
}

static const account *account_by_id(const char *id)
{
    const account *all[] = { &A_ALICE, &A_BOB, &A_CAROL, &A_NEWS, &A_SHOP };
    size_t i;

    for (i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->id, id) == 0)
            return all[i];
    return NULL;
}

static char *scrip_b64(const mp_scrip *s)
{
    uint8_t buf[MP_WIRE_MAX];
    size_t len;

    if (mp_scrip_encode(s, buf, sizeof buf, &len) != MP_OK)
        die("scrip encode");
    return b64(buf, len);
}

static int scrip_unb64(const char *t, mp_scrip *s)
{
    uint8_t buf[MP_WIRE_MAX];
    size_t len = unb64(t, buf, sizeof buf);

    return len > 0 && mp_scrip_decode(buf, len, s) == MP_OK;
}

/* The wallet survives between modes (run, after-rotate) in wallet.json. */
static void wallet_save(void)
{
    json_t *a = json_array();
    char *path = xasprintf("%s/wallet.json", g_dir);
    int i;

    for (i = 0; i < g_ncoins; i++) {
        coin *c = &g_coins[i];
        char *s = scrip_b64(&c->s), *k = b64(c->csec, MP_HASH_LEN);

        json_array_append_new(a, json_pack("{s:s, s:i, s:s, s:s, s:b, s:b, s:s?, s:s, s:s}",
                                           "who", c->who->id, "kind", c->kind, "scrip", s,
                                           "csec", k, "spent", c->spent, "deposited", c->deposited,
                                           "pay", c->pay_b64, "host", c->host, "target", c->target));
        free(s);
        free(k);
    }
    if (json_dump_file(a, path, JSON_INDENT(1)) != 0)
        die("cannot write %s", path);
    json_decref(a);
    free(path);
}

static void wallet_load(void)
{
    char *path = xasprintf("%s/wallet.json", g_dir);
    json_error_t err;
    json_t *a = json_load_file(path, 0, &err), *v;
    size_t i;

    if (!json_is_array(a))
        die("%s: %s", path, err.text);
    json_array_foreach(a, i, v) {
        const char *who = json_string_value(json_object_get(v, "who"));
        const char *pay = json_string_value(json_object_get(v, "pay"));
        const char *host = json_string_value(json_object_get(v, "host"));
        const char *target = json_string_value(json_object_get(v, "target"));
        uint8_t k[MP_HASH_LEN];
        mp_scrip s;
        coin *c;

        if (who == NULL || account_by_id(who) == NULL
            || !scrip_unb64(json_string_value(json_object_get(v, "scrip")), &s)
            || unb64(json_string_value(json_object_get(v, "csec")), k, sizeof k) != MP_HASH_LEN)
            die("%s: bad entry %zu", path, i);
        c = coin_add(account_by_id(who), (int)json_integer_value(json_object_get(v, "kind")), &s, k);
        c->spent = json_is_true(json_object_get(v, "spent"));
        c->deposited = json_is_true(json_object_get(v, "deposited"));
        c->pay_b64 = pay ? strdup(pay) : NULL;
        snprintf(c->host, sizeof c->host, "%s", host ? host : "");
        snprintf(c->target, sizeof c->target, "%s", target ? target : "");
    }
    json_decref(a);
    free(path);
}

static void holdings_write(void)
{
    uint64_t bu = 0, vu = 0, und = 0;
    char *path = xasprintf("%s/holdings", g_dir);
    FILE *f;
    int i;

    for (i = 0; i < g_ncoins; i++) {
        const coin *c = &g_coins[i];

        if (c->kind == K_BROKER && !c->spent)
            bu += c->s.value.units;
        else if (c->kind == K_VENDOR && !c->spent)
            vu += c->s.value.units;
        else if (c->kind == K_VENDOR && c->spent && !c->deposited)
            und += c->s.value.units;
    }
    if ((f = fopen(path, "w")) == NULL)
        die("cannot write %s", path);
    fprintf(f, "broker_unspent %llu\nvendor_unspent %llu\nundeposited %llu\n",
            (unsigned long long)bu, (unsigned long long)vu, (unsigned long long)und);
    fclose(f);
    printf("holdings: broker_unspent %llu vendor_unspent %llu undeposited %llu (units)\n",
           (unsigned long long)bu, (unsigned long long)vu, (unsigned long long)und);
    free(path);
}

/* ---- Millicent at the broker ---------------------------------------------------------------- */

/* mc_payment of c for (method, host, target) at price, base64url; p gets it. */
static char *mc_cred(const coin *c, const uint8_t *csec, const char *method, const char *host,
                     const char *target, const mp_amount *price, mp_mc_payment *p)
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
    if (mp_mc_pay(g_mac, &c->s, csec ? csec : c->csec, &req, price, p) != MP_OK
        || mp_mc_payment_encode(p, buf, sizeof buf, &len) != MP_OK)
        die("mc_pay");
    return b64(buf, len);
}

/* POST /buy of amount for a; on success the coin (else NULL); *balance the
 * balance reported (units). */
static coin *buy(const account *a, const char *amount, uint64_t *balance)
{
    char *id = rid();
    char *body = jtext(json_pack("{s:s, s:s}", "request_id", id, "amount", amount));
    uint8_t csec[MP_HASH_LEN];
    const char *cid;
    coin *c = NULL;
    mp_scrip s;
    resp r;

    bpost(a, "buy", body, &r);
    if (EXPECT_B200(&r)) {
        cid = js(&r, "customer_id");
        EXPECT(scrip_unb64(js(&r, "scrip"), &s), "buy: scrip does not decode");
        EXPECT(unb64(js(&r, "customer_secret"), csec, sizeof csec) == MP_HASH_LEN,
               "buy: customer_secret");
        EXPECT(strcmp(s.vendor, BROKER) == 0, "buy: issuer %s", s.vendor);
        EXPECT(s.value.units == units_of(amount) && strcmp(s.value.cur, CUR) == 0,
               "buy: value %s for %s", fmt_amt(&s.value), amount);
        EXPECT(cid != NULL && strtoull(cid, NULL, 10) == s.customer_id,
               "buy: customer_id %s vs scrip %llu", cid ? cid : "-",
               (unsigned long long)s.customer_id);
        EXPECT(s.expiry > now_s(), "buy: scrip already expired");
        EXPECT(js(&r, "request_id") && strcmp(js(&r, "request_id"), id) == 0,
               "buy: request_id not echoed");
        if (balance)
            *balance = units_of(js(&r, "balance"));
        c = coin_add(a, K_BROKER, &s, csec);
    }
    resp_free(&r);
    free(body);
    free(id);
    return c;
}

/* POST /exchange of broker coin bc (its full value spent unless price given)
 * for vendor scrip of amounts[0..n-1]; out[] the new coins; 1 on success. */
static int exchange(const account *a, coin *bc, const char *vendor, const char *const *amounts,
                    int n, coin **out)
{
    json_t *list = json_array(), *sl;
    mp_amount sum, one;
    mp_mc_payment p;
    mp_mc_reply rep;
    uint8_t csec[MP_HASH_LEN], buf[MP_WIRE_MAX];
    char *pay, *body, *id = rid();
    size_t len;
    int i, ok = 0;
    resp r;

    mp_amount_set(&sum, 0, CUR);
    for (i = 0; i < n; i++) {
        one = amt(amounts[i]);
        mp_amount_add(&sum, &one, &sum);
        json_array_append_new(list, json_string(amounts[i]));
    }
    pay = mc_cred(bc, NULL, "POST", g_broker_host, "/mp/exchange", &sum, &p);
    body = jtext(json_pack("{s:s, s:s, s:o, s:s}", "request_id", id, "vendor", vendor,
                           "amounts", list, "payment", pay));
    bpost(a, "exchange", body, &r);
    if (EXPECT_B200(&r)) {
        sl = json_object_get(r.json, "scrip");
        EXPECT(js(&r, "vendor") && strcmp(js(&r, "vendor"), vendor) == 0, "exchange: vendor");
        EXPECT(json_is_array(sl) && json_array_size(sl) == (size_t)n, "exchange: %d scrip wanted",
               n);
        EXPECT(unb64(js(&r, "customer_secret"), csec, sizeof csec) == MP_HASH_LEN,
               "exchange: customer_secret");
        bc->spent = 1;
        ok = 1;
        for (i = 0; i < n && i < (int)json_array_size(sl); i++) {
            mp_scrip s;
            const char *cid = js(&r, "customer_id");

            if (!scrip_unb64(json_string_value(json_array_get(sl, (size_t)i)), &s)) {
                EXPECT(0, "exchange: scrip %d does not decode", i);
                ok = 0;
                continue;
            }
            EXPECT(strcmp(s.vendor, vendor) == 0, "exchange: issuer %s", s.vendor);
            EXPECT(s.value.units == units_of(amounts[i]), "exchange: value %s for %s",
                   fmt_amt(&s.value), amounts[i]);
            EXPECT(cid && strtoull(cid, NULL, 10) == s.customer_id, "exchange: customer_id");
            out[i] = coin_add(a, K_VENDOR, &s, csec);
        }
        /* The broker's change: an mc_reply under the broker customer secret. */
        len = unb64(js(&r, "change"), buf, sizeof buf);
        if (len == 0 || mp_mc_reply_decode(buf, len, &rep) != MP_OK) {
            EXPECT(0, "exchange: change is not an mc_reply");
            ok = 0;
        } else {
            OKST(mp_mc_reply_check(g_mac, &rep, &p, bc->csec));
            EXPECT(rep.charged.units == sum.units, "exchange: charged %s, not %s",
                   fmt_amt(&rep.charged), fmt_amt(&sum));
            EXPECT(rep.has_change == (bc->s.value.units > sum.units), "exchange: has_change");
            if (rep.has_change) {
                EXPECT(strcmp(rep.change.vendor, BROKER) == 0, "exchange: change issuer");
                coin_add(a, K_BROKER, &rep.change, bc->csec);
            }
        }
    }
    resp_free(&r);
    free(pay);
    free(body);
    free(id);
    return ok;
}

/* ---- paying vendors ----------------------------------------------------------------------------- */

static const char *vhost(const char *vendor)
{
    return strcmp(vendor, NEWS) == 0 ? g_news_host : g_shop_host;
}

static void vget(const char *vendor, const char *target, const char *cred, resp *r)
{
    char *url = xasprintf("http://%s%s", vhost(vendor), target), *auth = NULL;
    const char *hdrs[2] = { NULL, NULL };

    if (cred != NULL) {
        auth = xasprintf("Authorization: Payment %s", cred);
        hdrs[0] = auth;
    }
    http("GET", url, hdrs, NULL, 0, r);
    free(url);
    free(auth);
}

/* Pays GET target at the coin's vendor with Millicent at price; the status.
 * On 200: the coin is spent, its change (checked) joins the wallet. */
static long pay_mc(coin *c, const char *target, const char *price)
{
    mp_amount pr = amt(price);
    mp_mc_payment p;
    mp_mc_reply rep;
    uint8_t buf[MP_WIRE_MAX];
    const char *pc;
    char *cred = mc_cred(c, NULL, "GET", vhost(c->s.vendor), target, &pr, &p);
    size_t len;
    long status;
    resp r;

    vget(c->s.vendor, target, cred, &r);
    status = r.status;
    if (r.status == 200) {
        c->spent = 1;
        {
            c->pay_b64 = strdup(cred);
            snprintf(c->host, sizeof c->host, "%s", vhost(c->s.vendor));
            snprintf(c->target, sizeof c->target, "%s", target);
        }
        pc = rh(&r, "Payment-Change");
        len = pc ? unb64(pc, buf, sizeof buf) : 0;
        if (len == 0 || mp_mc_reply_decode(buf, len, &rep) != MP_OK) {
            EXPECT(0, "pay %s%s: no valid Payment-Change", c->s.vendor, target);
        } else {
            OKST(mp_mc_reply_check(g_mac, &rep, &p, c->csec));
            if (rep.has_change)
                coin_add(c->who, K_CHANGE, &rep.change, c->csec);
        }
    }
    resp_free(&r);
    free(cred);
    return status;
}

/* A payment the vendor must refuse with 402 and reason. */
#define EXPECT_402(r, why) expect_402_(__func__, __LINE__, (r), (why))
static void expect_402_(const char *fn, int line, const resp *r, const char *reason)
{
    const char *pe = rh(r, "Payment-Error");
    int ok = r->status == 402 && pe != NULL && strcmp(pe, reason) == 0;

    if (!ok)
        fprintf(stderr, "\n    FAIL %s:%d: expected 402 %s, got %ld Payment-Error %s\n", fn, line,
                reason, r->status, pe ? pe : "-");
    CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, (unsigned)line, "vendor 402", __FILE__, "",
                            CU_FALSE);
}

/* ---- PayWord ------------------------------------------------------------------------------------ */

/* Appends one line to $MP_BT_DIR/payword (see the top of the file). */
static void pw_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void pw_log(const char *fmt, ...)
{
    char *path = xasprintf("%s/payword", g_dir);
    va_list ap;
    FILE *f;

    if ((f = fopen(path, "a")) == NULL)
        die("cannot append to %s", path);
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    if (fclose(f) != 0)
        die("cannot write %s", path);
    free(path);
}

/* A certificate the broker issued: its reservation, for the release check. */
static void cert_log(const mp_pw_cert *c)
{
    pw_log("cert %llu %s %llu %llu", (unsigned long long)c->serial, c->user,
           (unsigned long long)c->credit_limit.units, (unsigned long long)c->expiry);
}

typedef struct {
    const account *who;
    mp_pw_commit c;
    mp_chain *chain;
    uint32_t l;                 /* highest word paid */
} pwc;

/* POST /certify: a fresh Ed25519 user key, credit_limit, expiry (0: none).
 * On success *cert and *signer are set and 1 returned. */
static int certify(const account *a, const char *limit, uint64_t expiry, mp_pw_cert *cert,
                   mp_signer **signer)
{
    mp_pubkey pk;
    uint8_t buf[MP_WIRE_MAX];
    char *k, *body, *id = rid();
    const char *serial;
    json_t *o;
    size_t len;
    int ok = 0;
    resp r;

    if (mp_signer_generate(signer) != MP_OK || mp_signer_pubkey(*signer, &pk) != MP_OK)
        die("signer");
    k = b64(pk.key, pk.len);
    o = json_pack("{s:s, s:{s:s, s:s}, s:s}", "request_id", id, "key", "alg", "ed25519", "key", k,
                  "credit_limit", limit);
    if (expiry)
        json_object_set_new(o, "expiry", json_integer((json_int_t)expiry));
    body = jtext(o);
    bpost(a, "certify", body, &r);
    if (EXPECT_B200(&r)) {
        len = unb64(js(&r, "cert"), buf, sizeof buf);
        memset(cert, 0, sizeof *cert);
        if (len == 0 || mp_pw_cert_decode(buf, len, cert) != MP_OK) {
            EXPECT(0, "certify: cert does not decode");
        } else {
            serial = js(&r, "serial");
            EXPECT(strcmp(cert->broker, BROKER) == 0, "certify: broker %s", cert->broker);
            EXPECT(strcmp(cert->user, a->id) == 0 && js(&r, "user")
                   && strcmp(js(&r, "user"), a->id) == 0, "certify: user %s", cert->user);
            EXPECT(cert->user_key.alg == MP_KEY_ED25519 && cert->user_key.len == pk.len
                   && memcmp(cert->user_key.key, pk.key, pk.len) == 0, "certify: user key");
            EXPECT(cert->credit_limit.units == units_of(limit), "certify: credit %s",
                   fmt_amt(&cert->credit_limit));
            EXPECT(serial && strtoull(serial, NULL, 10) == cert->serial, "certify: serial");
            EXPECT(json_integer_value(json_object_get(r.json, "expires")) == (json_int_t)cert->expiry,
                   "certify: expires");
            if (expiry)
                EXPECT(cert->expiry == expiry, "certify: expiry %llu, asked %llu",
                       (unsigned long long)cert->expiry, (unsigned long long)expiry);
            else
                EXPECT(cert->expiry > now_s() + 3600, "certify: expiry too short");
            cert_log(cert);
            ok = 1;
        }
    }
    resp_free(&r);
    free(k);
    free(body);
    free(id);
    return ok;
}

/* Every commitment the client makes lives until the end of the run (tests
 * refer to them across suites); they are freed together, so that the
 * sanitizer build's leak check stays meaningful. */
#define PW_MAX 64
static pwc *pw_all[PW_MAX];
static size_t pw_n;

static void pw_free_all(void)
{
    while (pw_n > 0) {
        pwc *w = pw_all[--pw_n];

        mp_chain_free(w->chain);
        free(w);
    }
}

/* A commitment to a fresh chain: date now unless given, expiry the cert's unless given. */
static pwc *pw_new_d(const account *who, const mp_pw_cert *cert, mp_signer *signer,
                     const char *vendor, const char *unit, uint32_t n, uint64_t date, uint64_t expiry)
{
    pwc *w = calloc(1, sizeof *w);
    uint8_t wn[MP_HASH_LEN];

    if (w == NULL || pw_n == PW_MAX || mp_random(wn, sizeof wn) != MP_OK
        || mp_chain_new(wn, n, &w->chain) != MP_OK)
        die("chain");
    pw_all[pw_n++] = w;
    w->who = who;
    snprintf(w->c.vendor, sizeof w->c.vendor, "%s", vendor);
    w->c.cert = *cert;
    mp_chain_w0(w->chain, w->c.w0);
    w->c.date = date ? date : now_s();
    w->c.expiry = expiry ? expiry : cert->expiry;
    w->c.unit = amt(unit);
    w->c.n = n;
    if (mp_pw_commit_sign(&w->c, signer) != MP_OK)
        die("commit sign");
    return w;
}

static pwc *pw_new(const account *who, const mp_pw_cert *cert, mp_signer *signer,
                   const char *vendor, const char *unit, uint32_t n, uint64_t expiry)
{
    return pw_new_d(who, cert, signer, vendor, unit, n, 0, expiry);
}

/* Pays GET target at vendor (NULL: the commitment's) with k words; the status.
 * out (if given) gets the response. */
static long pay_pw_at(pwc *w, uint32_t k, const char *vendor, const char *target, resp *out)
{
    mp_pw_payment p;
    uint8_t buf[MP_WIRE_MAX];
    size_t len;
    char *cred;
    long status;
    resp r;

    memset(&p, 0, sizeof p);
    memcpy(p.commit_id, w->c.id, MP_HASH_LEN);
    p.i = w->l + k;
    p.k = k;
    if (mp_chain_word(w->chain, p.i, p.w) != MP_OK)
        die("chain word");
    p.has_commit = w->l == 0 || vendor != NULL;   /* first contact at that vendor */
    if (p.has_commit)
        p.commit = w->c;
    if (mp_pw_payment_encode(&p, buf, sizeof buf, &len) != MP_OK)
        die("pw encode");
    cred = b64(buf, len);
    vget(vendor ? vendor : w->c.vendor, target, cred, &r);
    status = r.status;
    if (status == 200) {
        w->l = p.i;
        pw_log("paid %llu %llu", (unsigned long long)w->c.cert.serial,
               (unsigned long long)k * w->c.unit.units);
    }
    if (out)
        *out = r;
    else
        resp_free(&r);
    free(cred);
    return status;
}

static long pay_pw(pwc *w, uint32_t k, const char *target, resp *out)
{
    return pay_pw_at(w, k, NULL, target, out);
}

/* A redeem record of w up to word last (w_last from the chain unless word). */
static char *pw_redeem_rec(pwc *w, uint32_t last, const uint8_t *word)
{
    static mp_pw_redeem rd;
    uint8_t buf[MP_WIRE_MAX];
    size_t len;

    memset(&rd, 0, sizeof rd);
    rd.commit = w->c;
    rd.last = last <= w->c.n ? last : w->c.n;
    if (word)
        memcpy(rd.w_last, word, MP_HASH_LEN);
    else if (mp_chain_word(w->chain, last, rd.w_last) != MP_OK)
        die("chain word %u", last);
    if (mp_pw_redeem_encode(&rd, buf, sizeof buf, &len) != MP_OK)
        die("redeem encode");
    if (last > w->c.n) {
        /* The encoder refuses last > n: patch the u32 (big-endian) before w_last. */
        buf[len - 36] = (uint8_t)(last >> 24);
        buf[len - 35] = (uint8_t)(last >> 16);
        buf[len - 34] = (uint8_t)(last >> 8);
        buf[len - 33] = (uint8_t)last;
    }
    return b64(buf, len);
}

/* ---- test data shared between tests -------------------------------------------------------------- */

#define NEWS_PRICE "0.01 USD"       /* run_broker.sh: news.example /paid/, PayWord unit 0.005 */
#define NEWS_UNIT  "0.005 USD"
#define SHOP_PRICE "0.02 USD"       /* shop.example /paid/, PayWord unit 0.01 */
#define SHOP_UNIT  "0.01 USD"

static pwc *g_pw_news, *g_pw_shop, *g_pw_short;
static unsigned g_page;

/* A fresh paid target, so receipts never get in the way. */
static const char *page(void)
{
    static char t[4][64];
    char *s = t[g_page & 3];

    snprintf(s, sizeof t[0], "/paid/p%u.html", ++g_page % 8);
    return s;
}


/* A spendable coin of who and kind at issuer with value >= min units. */
static coin *find_coin(const account *who, int kind, const char *issuer, uint64_t min)
{
    int i;

    for (i = 0; i < g_ncoins; i++) {
        coin *c = &g_coins[i];

        if (c->who == who && c->kind == kind && !c->spent && strcmp(c->s.vendor, issuer) == 0
            && c->s.value.units >= min && c->s.expiry > now_s() + 60)
            return c;
    }
    return NULL;
}

/* The balance of a (units) as /buy reports it, at the cost of a 0.01 buy. */
static uint64_t balance_probe(const account *a)
{
    uint64_t b = UINT64_MAX;

    buy(a, "0.01 USD", &b);
    return b;
}

/* ---- authentication (8.2) ----------------------------------------------------------------------- */

static void t_auth(void)
{
    char *body = jtext(json_pack("{s:s, s:s}", "request_id", rid_s(), "amount", "0.01 USD"));
    const char *hdrs[3] = { "Content-Type: application/json", NULL, NULL };
    char *url = xasprintf("http://%s/mp/buy", g_broker_host);
    uint64_t b0 = balance_probe(&A_ALICE), b1;
    uint8_t zero[MP_SECRET_LEN];
    resp r;

    bpost_x(&A_ALICE, "nobody", NULL, 0, "buy", body, &r);
    EXPECT_BFAIL(&r, 401, "unknown-account");
    resp_free(&r);
    bpost_x(&A_ALICE, NULL, A_BOB.key, 0, "buy", body, &r);     /* another account's key */
    EXPECT_BFAIL(&r, 401, "unauthorized");
    resp_free(&r);
    memset(zero, 0, sizeof zero);
    bpost_x(&A_ALICE, NULL, zero, 0, "buy", body, &r);
    EXPECT_BFAIL(&r, 401, "unauthorized");
    resp_free(&r);
    bpost_x(&A_ALICE, NULL, NULL, -(MP_BROKER_SKEW + 100), "buy", body, &r);
    EXPECT_BFAIL(&r, 401, "unauthorized");
    resp_free(&r);
    bpost_x(&A_ALICE, NULL, NULL, MP_BROKER_SKEW + 100, "buy", body, &r);
    EXPECT_BFAIL(&r, 401, "unauthorized");
    resp_free(&r);
    g_sign_body = "{\"request_id\":\"other\",\"amount\":\"0.01 USD\"}";  /* sig over another body */
    bpost(&A_ALICE, "buy", body, &r);
    g_sign_body = NULL;
    EXPECT_BFAIL(&r, 401, "unauthorized");
    resp_free(&r);
    http("POST", url, hdrs, body, strlen(body), &r);              /* no Authorization */
    EXPECT_BFAIL(&r, 401, "unauthorized");
    resp_free(&r);
    hdrs[1] = "Authorization: MP1-HMAC account=\"alice\", ts=\"1\"";
    http("POST", url, hdrs, body, strlen(body), &r);
    EXPECT_BFAIL(&r, 401, "unauthorized");
    resp_free(&r);
    hdrs[1] = "Authorization: Basic YWxpY2U6eA==";
    http("POST", url, hdrs, body, strlen(body), &r);
    EXPECT_BFAIL(&r, 401, "unauthorized");
    resp_free(&r);
    /* A timestamp inside the skew is fine. */
    bpost_x(&A_ALICE, NULL, NULL, -(MP_BROKER_SKEW - 60), "buy", body, &r);
    if (EXPECT_B200(&r)) {
        mp_scrip s;
        uint8_t k[MP_HASH_LEN];

        if (scrip_unb64(js(&r, "scrip"), &s) && unb64(js(&r, "customer_secret"), k, sizeof k))
            coin_add(&A_ALICE, K_BROKER, &s, k);
        else
            EXPECT(0, "buy: scrip or customer_secret");
    }
    resp_free(&r);
    /* Only the accepted requests were charged: 0.01 (skew) + 0.01 (probe). */
    b1 = balance_probe(&A_ALICE);
    EXPECT(b1 == b0 - 2000, "alice: balance %llu after rejected requests, expected %llu",
           (unsigned long long)b1, (unsigned long long)(b0 - 2000));
    free(body);
    free(url);
}

/* ---- malformed requests (8.1, 8.2) ----------------------------------------------------------- */

static void bad(const account *a, const char *ep, const char *body, long status, const char *reason)
{
    resp r;

    bpost(a, ep, body, &r);
    if (r.status != status)
        fprintf(stderr, "\n    note: %s %s\n", ep, body);
    EXPECT_BFAIL(&r, status, reason);
    resp_free(&r);
}

static void t_malformed(void)
{
    const char *longid = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"; /* 65 */
    char *url, *body, *scrip, *k31, *many;
    uint8_t raw[31];
    uint64_t b0 = balance_probe(&A_ALICE), b1;
    coin *c = buy(&A_ALICE, "0.05 USD", NULL);
    const char *hdrs[2] = { NULL, NULL };
    int i;
    resp r;

    bad(&A_ALICE, "buy", "not json", 400, "malformed");
    bad(&A_ALICE, "buy", "[\"request_id\", \"x\"]", 400, "malformed");
    bad(&A_ALICE, "buy", "", 400, "malformed");
    bad(&A_ALICE, "buy", "{\"amount\": \"0.01 USD\"}", 400, "malformed");
    bad(&A_ALICE, "buy", "{\"request_id\": \"a b\", \"amount\": \"0.01 USD\"}", 400, "malformed");
    bad(&A_ALICE, "buy", "{\"request_id\": 7, \"amount\": \"0.01 USD\"}", 400, "malformed");
    body = xasprintf("{\"request_id\": \"%s\", \"amount\": \"0.01 USD\"}", longid);
    bad(&A_ALICE, "buy", body, 400, "malformed");
    free(body);
    bad(&A_ALICE, "buy", "{\"request_id\": \"m1\", \"amount\": \"abc\"}", 400, "malformed");
    bad(&A_ALICE, "buy", "{\"request_id\": \"m2\", \"amount\": \"0.00 USD\"}", 400, "malformed");
    bad(&A_ALICE, "buy", "{\"request_id\": \"m3\", \"amount\": \"-1.00 USD\"}", 400, "malformed");
    bad(&A_ALICE, "buy", "{\"request_id\": \"m4\", \"amount\": 1}", 400, "malformed");
    bad(&A_ALICE, "buy", "{\"request_id\": \"m5\"}", 400, "malformed");
    bad(&A_ALICE, "buy", "{\"request_id\": \"m6\", \"amount\": \"0.01 EUR\"}", 400, "malformed");
    bad(&A_ALICE, "buy", "{\"request_id\": \"m7\", \"amount\": \"0.01 USD\", \"amount\": \"0.02 USD\"}",
        400, "malformed");
    bad(&A_ALICE, "buy", "{\"request_id\": \"m8\", \"amount\": \"0.000001 USD\"}", 400, "malformed");

    /* /exchange members */
    if (c != NULL) {
        mp_mc_payment p;
        mp_amount sum = amt("0.02 USD");
        char *pay = mc_cred(c, NULL, "POST", g_broker_host, "/mp/exchange", &sum, &p);

        body = xasprintf("{\"request_id\": \"x1\", \"amounts\": [\"0.02 USD\"], \"payment\": \"%s\"}", pay);
        bad(&A_ALICE, "exchange", body, 400, "malformed");                 /* no vendor */
        free(body);
        body = xasprintf("{\"request_id\": \"x2\", \"vendor\": \"%s\", \"amounts\": [], "
                         "\"payment\": \"%s\"}", NEWS, pay);
        bad(&A_ALICE, "exchange", body, 400, "malformed");
        free(body);
        body = xasprintf("{\"request_id\": \"x3\", \"vendor\": \"%s\", \"amounts\": \"0.02 USD\", "
                         "\"payment\": \"%s\"}", NEWS, pay);
        bad(&A_ALICE, "exchange", body, 400, "malformed");
        free(body);
        many = strdup("");
        for (i = 0; i < 17; i++) {
            char *m = xasprintf("%s%s\"0.01 USD\"", many, i ? ", " : "");

            free(many);
            many = m;
        }
        body = xasprintf("{\"request_id\": \"x4\", \"vendor\": \"%s\", \"amounts\": [%s], "
                         "\"payment\": \"%s\"}", NEWS, many, pay);
        bad(&A_ALICE, "exchange", body, 400, "malformed");                 /* 17 amounts */
        free(body);
        free(many);
        body = xasprintf("{\"request_id\": \"x5\", \"vendor\": \"%s\", \"amounts\": [\"0.01 USD\", "
                         "\"0.01 EUR\"], \"payment\": \"%s\"}", NEWS, pay);
        bad(&A_ALICE, "exchange", body, 400, "malformed");                 /* two currencies */
        free(body);
        body = xasprintf("{\"request_id\": \"x6\", \"vendor\": \"%s\", \"amounts\": [\"0 USD\"], "
                         "\"payment\": \"%s\"}", NEWS, pay);
        bad(&A_ALICE, "exchange", body, 400, "malformed");
        free(body);
        body = xasprintf("{\"request_id\": \"x7\", \"vendor\": \"%s\", \"amounts\": [\"0.02 USD\"], "
                         "\"payment\": \"not base64!\"}", NEWS);
        bad(&A_ALICE, "exchange", body, 400, "malformed");
        free(body);
        scrip = scrip_b64(&c->s);                                          /* a scrip, not a payment */
        body = xasprintf("{\"request_id\": \"x8\", \"vendor\": \"%s\", \"amounts\": [\"0.02 USD\"], "
                         "\"payment\": \"%s\"}", NEWS, scrip);
        bad(&A_ALICE, "exchange", body, 400, "malformed");
        free(body);
        body = xasprintf("{\"request_id\": \"x9\", \"vendor\": \"%s\", \"amounts\": [\"0.02 USD\"]}",
                         NEWS);
        bad(&A_ALICE, "exchange", body, 400, "malformed");                 /* no payment */
        free(body);
        free(scrip);
        free(pay);
    }

    /* /certify members */
    memset(raw, 7, sizeof raw);
    k31 = b64(raw, sizeof raw);
    body = xasprintf("{\"request_id\": \"c1\", \"key\": {\"alg\": \"ed25519\", \"key\": \"%s\"}, "
                     "\"credit_limit\": \"0.10 USD\"}", k31);
    bad(&A_ALICE, "certify", body, 400, "malformed");                      /* 31-byte key */
    free(body);
    bad(&A_ALICE, "certify", "{\"request_id\": \"c2\", \"credit_limit\": \"0.10 USD\"}", 400,
        "malformed");                                                      /* no key */
    {
        mp_signer *sg;
        mp_pubkey pk;
        char *k;

        if (mp_signer_generate(&sg) != MP_OK || mp_signer_pubkey(sg, &pk) != MP_OK)
            die("signer");
        k = b64(pk.key, pk.len);
        body = xasprintf("{\"request_id\": \"c3\", \"key\": {\"alg\": \"dsa\", \"key\": \"%s\"}, "
                         "\"credit_limit\": \"0.10 USD\"}", k);
        bad(&A_ALICE, "certify", body, 400, "malformed");
        free(body);
        body = xasprintf("{\"request_id\": \"c4\", \"key\": {\"alg\": \"rsa\", \"key\": \"%s\"}, "
                         "\"credit_limit\": \"0.10 USD\"}", k);
        bad(&A_ALICE, "certify", body, 400, "malformed");                  /* not an RSA SPKI */
        free(body);
        body = xasprintf("{\"request_id\": \"c5\", \"key\": {\"alg\": \"ed25519\", \"key\": \"%s\"}, "
                         "\"credit_limit\": \"lots\"}", k);
        bad(&A_ALICE, "certify", body, 400, "malformed");
        free(body);
        body = xasprintf("{\"request_id\": \"c6\", \"key\": {\"alg\": \"ed25519\", \"key\": \"%s\"}, "
                         "\"credit_limit\": \"0.10 USD\", \"expiry\": 1000}", k);
        bad(&A_ALICE, "certify", body, 400, "malformed");                  /* expiry in the past */
        free(body);
        body = xasprintf("{\"request_id\": \"c7\", \"key\": {\"alg\": \"ed25519\", \"key\": \"%s\"}, "
                         "\"credit_limit\": \"0.10 USD\", \"expiry\": \"soon\"}", k);
        bad(&A_ALICE, "certify", body, 400, "malformed");
        free(body);
        body = xasprintf("{\"request_id\": \"c8\", \"key\": {\"alg\": \"ed25519\", \"key\": \"%s\"}, "
                         "\"credit_limit\": \"0.10 EUR\"}", k);
        bad(&A_ALICE, "certify", body, 400, "malformed");                  /* not the account's */
        free(body);
        free(k);
        mp_signer_free(sg);
    }
    free(k31);

    /* /redeem members (a vendor account) */
    bad(&A_NEWS, "redeem", "{\"request_id\": \"r1\", \"payword\": \"x\"}", 400, "malformed");
    bad(&A_NEWS, "redeem", "{\"request_id\": \"r2\", \"millicent\": [\"x\"]}", 400, "malformed");
    bad(&A_NEWS, "redeem", "{\"request_id\": \"r3\", \"payword\": [7]}", 400, "malformed");

    /* Method and endpoint */
    url = xasprintf("http://%s/mp/buy", g_broker_host);
    http("GET", url, NULL, NULL, 0, &r);
    EXPECT(r.status == 405 && rh(&r, "Allow") && strstr(rh(&r, "Allow"), "POST"),
           "GET /mp/buy: %ld, Allow %s", r.status, rh(&r, "Allow") ?: "-");
    resp_free(&r);
    free(url);
    url = xasprintf("http://%s/mp/sell", g_broker_host);
    hdrs[0] = "Content-Type: application/json";
    http("POST", url, hdrs, "{}", 2, &r);
    EXPECT(r.status == 404, "POST /mp/sell: %ld", r.status);
    resp_free(&r);
    free(url);

    /* Nothing of this was charged: 0.05 bought, 0.01 probe. */
    b1 = balance_probe(&A_ALICE);
    EXPECT(b1 == b0 - 6000, "alice: balance %llu after malformed requests, expected %llu",
           (unsigned long long)b1, (unsigned long long)(b0 - 6000));
}

/* ---- idempotency (8.2) ------------------------------------------------------------------------------ */

static void t_idempotency(void)
{
    char *id = rid();
    char *b1 = jtext(json_pack("{s:s, s:s}", "request_id", id, "amount", "0.02 USD"));
    char *b2 = jtext(json_pack("{s:s, s:s}", "request_id", id, "amount", "0.03 USD"));
    uint64_t bal = UINT64_MAX, after;
    resp r1, r2, r3;
    mp_scrip s;
    uint8_t k[MP_HASH_LEN];

    bpost(&A_ALICE, "buy", b1, &r1);
    if (EXPECT_B200(&r1)) {
        bal = units_of(js(&r1, "balance"));
        if (scrip_unb64(js(&r1, "scrip"), &s) && unb64(js(&r1, "customer_secret"), k, sizeof k))
            coin_add(&A_ALICE, K_BROKER, &s, k);
    }
    sleep(1);                   /* another ts, the same body: a retry */
    bpost(&A_ALICE, "buy", b1, &r2);
    EXPECT_B200(&r2);
    EXPECT(r1.len == r2.len && r1.body && r2.body && memcmp(r1.body, r2.body, r1.len) == 0,
           "replay: another response\n%s\n%s", r1.body ?: "", r2.body ?: "");
    bpost(&A_ALICE, "buy", b2, &r3);                 /* the same id, another body */
    EXPECT_BFAIL(&r3, 409, "malformed");
    resp_free(&r3);
    /* the same id and body at another endpoint, where the body is not even
     * valid: 409 (PROTOCOL.md 8.2: the lookup comes before the members) */
    bpost(&A_ALICE, "certify", b1, &r3);
    EXPECT_BFAIL(&r3, 409, "malformed");
    after = balance_probe(&A_ALICE);
    EXPECT(after == bal - 1000, "balance %llu after replay, expected %llu (one debit)",
           (unsigned long long)after, (unsigned long long)(bal - 1000));
    /* The same request_id is another request for another account. */
    resp_free(&r3);
    bpost(&A_BOB, "buy", b1, &r3);
    if (EXPECT_B200(&r3)) {
        EXPECT(strcmp(js(&r3, "scrip") ?: "", js(&r1, "scrip") ?: "") != 0,
               "bob got alice's stored answer");
        if (scrip_unb64(js(&r3, "scrip"), &s) && unb64(js(&r3, "customer_secret"), k, sizeof k))
            coin_add(&A_BOB, K_BROKER, &s, k);
    }
    resp_free(&r1);
    resp_free(&r2);
    resp_free(&r3);
    free(b1);
    free(b2);
    free(id);
}

/* ---- overdraft (8.3, 8.5) --------------------------------------------------------------------------- */

static void t_overdraft(void)
{
    mp_pw_cert cert;
    mp_signer *sg = NULL, *sg2 = NULL;
    char *body, *k;
    mp_pubkey pk;
    uint64_t bal = UINT64_MAX;
    resp r;

    /* carol has 0.50 USD */
    body = jtext(json_pack("{s:s, s:s}", "request_id", rid_s(), "amount", "0.60 USD"));
    bad(&A_CAROL, "buy", body, 409, "overdraft");
    free(body);
    if (mp_signer_generate(&sg) != MP_OK || mp_signer_pubkey(sg, &pk) != MP_OK)
        die("signer");
    k = b64(pk.key, pk.len);
    body = jtext(json_pack("{s:s, s:{s:s, s:s}, s:s}", "request_id", rid_s(), "key", "alg", "ed25519",
                           "key", k, "credit_limit", "0.51 USD"));
    bad(&A_CAROL, "certify", body, 409, "overdraft");
    free(body);
    free(k);
    mp_signer_free(sg);
    /* Nothing was taken: 0.10 leaves 0.40. */
    EXPECT(buy(&A_CAROL, "0.10 USD", &bal) != NULL && bal == 40000, "carol: balance %llu, not 0.40",
           (unsigned long long)bal);
    /* The reservation of a certificate leaves the balance. */
    if (certify(&A_CAROL, "0.40 USD", 0, &cert, &sg2)) {
        body = jtext(json_pack("{s:s, s:s}", "request_id", rid_s(), "amount", "0.01 USD"));
        bpost(&A_CAROL, "buy", body, &r);
        EXPECT_BFAIL(&r, 409, "overdraft");
        resp_free(&r);
        free(body);
    }
    mp_signer_free(sg2);
}

/* ---- /exchange (8.4) and paying the vendor ----------------------------------------------------------- */

static void t_exchange(void)
{
    const char *na[] = { "0.05 USD", "0.05 USD", "0.10 USD" }, *sa[] = { "0.30 USD" };
    coin *bc = buy(&A_ALICE, "1.00 USD", NULL), *nv[3] = { 0 }, *sv[1] = { 0 }, *ch, *bc2;
    int i;

    if (bc == NULL)
        return;
    EXPECT(exchange(&A_ALICE, bc, NEWS, na, 3, nv), "exchange for news");
    bc2 = find_coin(&A_ALICE, K_BROKER, BROKER, 80000);            /* the 0.80 change */
    EXPECT(bc2 != NULL && bc2->s.value.units == 80000, "no 0.80 broker change");
    if (bc2 != NULL)
        EXPECT(exchange(&A_ALICE, bc2, SHOP, sa, 1, sv), "exchange change for shop");
    /* The change of the change: spend it all on one exact exchange. */
    if ((bc2 = find_coin(&A_ALICE, K_BROKER, BROKER, 50000)) != NULL && bc2->s.value.units == 50000) {
        const char *exact[] = { "0.25 USD", "0.25 USD" };
        coin *ev[2];

        EXPECT(exchange(&A_ALICE, bc2, NEWS, exact, 2, ev), "exact exchange (no change)");
    } else {
        EXPECT(0, "no 0.50 broker change");
    }
    /* 16 amounts, the most one /exchange takes; the same customer ids again */
    if ((bc2 = buy(&A_ALICE, "0.16 USD", NULL)) != NULL) {
        const char *sixteen[16];
        coin *v16[16] = { 0 };

        EXPECT(bc2->s.customer_id == bc->s.customer_id, "broker customer_id changed: %llu, %llu",
               (unsigned long long)bc2->s.customer_id, (unsigned long long)bc->s.customer_id);
        for (i = 0; i < 16; i++)
            sixteen[i] = "0.01 USD";
        EXPECT(exchange(&A_ALICE, bc2, NEWS, sixteen, 16, v16), "16 amounts");
        if (v16[15] && nv[0])
            EXPECT(v16[15]->s.customer_id == nv[0]->s.customer_id,
                   "news customer_id of alice changed");
        for (i = 0; i < 16; i++)
            if (v16[i] && nv[0])
                EXPECT(v16[i]->s.id != nv[0]->s.id, "a scrip id twice");
    }
    /* Pay the vendors with the vendor scrip, then with the vendor's change. */
    for (i = 0; i < 3; i++)
        if (nv[i] != NULL)
            EXPECT(pay_mc(nv[i], page(), NEWS_PRICE) == 200, "news: pay with scrip %d", i);
    if (sv[0] != NULL)
        EXPECT(pay_mc(sv[0], page(), SHOP_PRICE) == 200, "shop: pay");
    if ((ch = find_coin(&A_ALICE, K_CHANGE, NEWS, 1000)) != NULL)
        EXPECT(pay_mc(ch, page(), NEWS_PRICE) == 200, "news: pay with vendor change");
    else
        EXPECT(0, "no news change");
    if ((ch = find_coin(&A_ALICE, K_CHANGE, SHOP, 2000)) != NULL)
        EXPECT(pay_mc(ch, page(), SHOP_PRICE) == 200, "shop: pay with vendor change");
    else
        EXPECT(0, "no shop change");
}

/* An /exchange body paying with c (req_sig over method/host/target, price),
 * amounts as JSON text; rid given or fresh. */
static char *ex_body(const coin *c, const char *reqid, const char *vendor, const char *amounts,
                     const char *price, const char *host, const char *target, const uint8_t *csec)
{
    mp_amount pr = amt(price);
    mp_mc_payment p;
    char *pay = mc_cred(c, csec, "POST", host, target, &pr, &p), *id = reqid ? strdup(reqid) : rid();
    char *body = xasprintf("{\"request_id\": \"%s\", \"vendor\": \"%s\", \"amounts\": %s, "
                           "\"payment\": \"%s\"}", id, vendor, amounts, pay);

    free(pay);
    free(id);
    return body;
}

static void t_exchange_reject(void)
{
    coin *bc = buy(&A_BOB, "0.50 USD", NULL), forged, *sv[2] = { 0 };
    uint64_t b0, b1;
    uint8_t other[MP_HASH_LEN];
    char *body, *id;
    resp r1, r2;

    if (bc == NULL)
        return;
    b0 = balance_probe(&A_BOB);
    forged = *bc;                                   /* a forged stamp */
    forged.s.stamp[0] ^= 1;
    body = ex_body(&forged, NULL, NEWS, "[\"0.05 USD\"]", "0.05 USD", g_broker_host, "/mp/exchange", NULL);
    bad(&A_BOB, "exchange", body, 422, "forged");
    free(body);
    forged = *bc;                                   /* a raised value */
    forged.s.value.units *= 2;
    body = ex_body(&forged, NULL, NEWS, "[\"0.05 USD\"]", "0.05 USD", g_broker_host, "/mp/exchange", NULL);
    bad(&A_BOB, "exchange", body, 422, "forged");
    free(body);
    memset(other, 9, sizeof other);                 /* without the customer secret */
    body = ex_body(bc, NULL, NEWS, "[\"0.05 USD\"]", "0.05 USD", g_broker_host, "/mp/exchange", other);
    bad(&A_BOB, "exchange", body, 422, "forged");
    free(body);
    body = ex_body(bc, NULL, NEWS, "[\"0.05 USD\"]", "0.05 USD", g_broker_host, "/mp/buy", NULL);
    bad(&A_BOB, "exchange", body, 422, "forged");   /* req_sig over another target */
    free(body);
    body = ex_body(bc, NULL, NEWS, "[\"0.05 USD\"]", "0.05 USD", "evil.example", "/mp/exchange", NULL);
    bad(&A_BOB, "exchange", body, 422, "forged");   /* ... another host */
    free(body);
    body = ex_body(bc, NULL, "nobody.example", "[\"0.05 USD\"]", "0.05 USD", g_broker_host,
                   "/mp/exchange", NULL);
    bad(&A_BOB, "exchange", body, 422, "wrong-vendor");
    free(body);
    body = ex_body(bc, NULL, NEWS, "[\"0.05 USD\", \"0.05 USD\"]", "0.20 USD", g_broker_host,
                   "/mp/exchange", NULL);
    bad(&A_BOB, "exchange", body, 422, "price-mismatch");
    free(body);
    body = ex_body(bc, NULL, NEWS, "[\"0.05 USD\"]", "0.04 USD", g_broker_host, "/mp/exchange", NULL);
    bad(&A_BOB, "exchange", body, 422, "price-mismatch");
    free(body);
    body = ex_body(bc, NULL, NEWS, "[\"0.30 USD\", \"0.30 USD\"]", "0.60 USD", g_broker_host,
                   "/mp/exchange", NULL);
    bad(&A_BOB, "exchange", body, 422, "insufficient");
    free(body);
    /* None of that spent the scrip: it exchanges now, once. */
    id = rid();
    body = ex_body(bc, id, SHOP, "[\"0.10 USD\", \"0.10 USD\"]", "0.20 USD", g_broker_host,
                   "/mp/exchange", NULL);
    bpost(&A_BOB, "exchange", body, &r1);
    if (EXPECT_B200(&r1)) {
        json_t *sl = json_object_get(r1.json, "scrip");
        uint8_t csec[MP_HASH_LEN], buf[MP_WIRE_MAX];
        mp_mc_reply rep;
        size_t i, len;

        bc->spent = 1;
        unb64(js(&r1, "customer_secret"), csec, sizeof csec);
        for (i = 0; i < json_array_size(sl) && i < 2; i++) {
            mp_scrip s;

            if (scrip_unb64(json_string_value(json_array_get(sl, i)), &s))
                sv[i] = coin_add(&A_BOB, K_VENDOR, &s, csec);
        }
        len = unb64(js(&r1, "change"), buf, sizeof buf);
        if (len && mp_mc_reply_decode(buf, len, &rep) == MP_OK && rep.has_change)
            coin_add(&A_BOB, K_BROKER, &rep.change, bc->csec);
        else
            EXPECT(0, "no change from 0.50 for 0.20");
    }
    /* The retry gets the same answer; the same scrip in a new request is spent. */
    bpost(&A_BOB, "exchange", body, &r2);
    EXPECT(r2.status == 200 && r1.len == r2.len && memcmp(r1.body, r2.body, r1.len) == 0,
           "exchange retry: %ld, another answer", r2.status);
    resp_free(&r2);
    free(body);
    body = ex_body(bc, NULL, SHOP, "[\"0.10 USD\", \"0.10 USD\"]", "0.20 USD", g_broker_host,
                   "/mp/exchange", NULL);
    bad(&A_BOB, "exchange", body, 422, "already-spent");
    free(body);
    /* Vendor scrip is not broker scrip. */
    if (sv[0] != NULL) {
        body = ex_body(sv[0], NULL, NEWS, "[\"0.10 USD\"]", "0.10 USD", g_broker_host,
                       "/mp/exchange", NULL);
        bad(&A_BOB, "exchange", body, 422, "wrong-vendor");
        free(body);
    }
    /* One debit for the probe only; the exchange itself moved no balance. */
    b1 = balance_probe(&A_BOB);
    EXPECT(b1 == b0 - 1000, "bob: balance %llu, expected %llu", (unsigned long long)b1,
           (unsigned long long)(b0 - 1000));
    resp_free(&r1);
    free(id);
}

/* ---- the vendor and broker-minted scrip --------------------------------------------------------------- */

static void t_vendor(void)
{
    coin *bc = buy(&A_BOB, "0.20 USD", NULL), *sv[2] = { 0 }, *nv[2] = { 0 }, copy;
    const char *a2[] = { "0.05 USD", "0.05 USD" };
    mp_amount pr;
    mp_mc_payment p;
    char *cred;
    const char *t;
    resp r;

    /* The 402 offer names the vendor of the vhost and its price. */
    vget(NEWS, "/paid/p0.html", NULL, &r);
    EXPECT(r.status == 402 && js(&r, "vendor") && strcmp(js(&r, "vendor"), NEWS) == 0
           && js(&r, "price") && units_of(js(&r, "price")) == units_of(NEWS_PRICE),
           "news offer: %ld %.200s", r.status, r.body ?: "");
    resp_free(&r);
    vget(SHOP, "/paid/p0.html", NULL, &r);
    EXPECT(r.status == 402 && js(&r, "vendor") && strcmp(js(&r, "vendor"), SHOP) == 0
           && js(&r, "price") && units_of(js(&r, "price")) == units_of(SHOP_PRICE),
           "shop offer: %ld %.200s", r.status, r.body ?: "");
    resp_free(&r);
    if (bc == NULL || !exchange(&A_BOB, bc, NEWS, a2, 2, nv))
        return;
    if ((bc = find_coin(&A_BOB, K_BROKER, BROKER, 10000)) == NULL || !exchange(&A_BOB, bc, SHOP, a2, 2, sv))
        return;
    /* news scrip at shop */
    pr = amt(SHOP_PRICE);
    cred = mc_cred(nv[0], NULL, "GET", g_shop_host, "/paid/p1.html", &pr, &p);
    vget(SHOP, "/paid/p1.html", cred, &r);
    EXPECT_402(&r, "wrong-vendor");
    resp_free(&r);
    free(cred);
    /* forged vendor scrip: raised value, broken stamp */
    copy = *nv[0];
    copy.s.value.units = 100000;
    pr = amt(NEWS_PRICE);
    cred = mc_cred(&copy, NULL, "GET", g_news_host, "/paid/p1.html", &pr, &p);
    vget(NEWS, "/paid/p1.html", cred, &r);
    EXPECT_402(&r, "forged");
    resp_free(&r);
    free(cred);
    /* without the customer secret */
    {
        uint8_t other[MP_HASH_LEN];

        memset(other, 3, sizeof other);
        cred = mc_cred(nv[0], other, "GET", g_news_host, "/paid/p1.html", &pr, &p);
        vget(NEWS, "/paid/p1.html", cred, &r);
        EXPECT_402(&r, "forged");
        resp_free(&r);
        free(cred);
    }
    /* spent once, then refused for another page */
    t = page();
    EXPECT(pay_mc(nv[0], t, NEWS_PRICE) == 200, "news: pay");
    cred = mc_cred(nv[0], NULL, "GET", g_news_host, "/paid/p2.html", &pr, &p);
    vget(NEWS, "/paid/p2.html", cred, &r);
    EXPECT_402(&r, "already-spent");
    resp_free(&r);
    free(cred);
    EXPECT(pay_mc(sv[0], page(), SHOP_PRICE) == 200, "shop: pay");
    /* nv[1], sv[1] stay unspent in bob's wallet. */
}

/* ---- PayWord: /certify, commitments, payments (8.5, 7.5) ----------------------------------------------- */

static void t_payword(void)
{
    mp_pw_cert cert, rogue;
    mp_signer *sg = NULL, *other = NULL;
    uint64_t b0 = balance_probe(&A_ALICE), b1;
    pwc *w;
    int i;
    resp r;

    if (!certify(&A_ALICE, "1.00 USD", 0, &cert, &sg))
        return;
    b1 = balance_probe(&A_ALICE);
    EXPECT(b1 == b0 - 1000 - 100000, "alice: balance %llu after certify 1.00, expected %llu",
           (unsigned long long)b1, (unsigned long long)(b0 - 101000));
    g_pw_news = pw_new(&A_ALICE, &cert, sg, NEWS, NEWS_UNIT, 100, 0);
    g_pw_shop = pw_new(&A_ALICE, &cert, sg, SHOP, SHOP_UNIT, 50, 0);
    for (i = 0; i < 3; i++)
        EXPECT(pay_pw(g_pw_news, 2, page(), NULL) == 200, "news: PayWord payment %d", i);
    for (i = 0; i < 2; i++)
        EXPECT(pay_pw(g_pw_shop, 2, page(), NULL) == 200, "shop: PayWord payment %d", i);
    EXPECT(g_pw_news->l == 6 && g_pw_shop->l == 4, "words paid: news %u, shop %u", g_pw_news->l,
           g_pw_shop->l);
    pay_pw(g_pw_news, 1, page(), &r);                  /* 0.005 for a 0.01 page */
    EXPECT_402(&r, "insufficient");
    resp_free(&r);
    pay_pw(g_pw_news, 3, page(), &r);                  /* 0.015 for a 0.01 page */
    EXPECT_402(&r, "price-mismatch");
    resp_free(&r);
    pay_pw_at(g_pw_news, 2, SHOP, page(), &r);         /* news' commitment at shop */
    EXPECT_402(&r, "wrong-vendor");
    resp_free(&r);
    w = pw_new(&A_ALICE, &cert, sg, SHOP, SHOP_UNIT, 200, 0);   /* 2.00 > the 1.00 credit */
    pay_pw(w, 2, page(), &r);
    /* the record alone shows it: a decode check (PROTOCOL 3.2, 5.5) */
    EXPECT(r.status == 400 && rh(&r, "Payment-Error") != NULL
           && strcmp(rh(&r, "Payment-Error"), "malformed") == 0,
           "commitment worth more than its cert's credit: %ld %s, want 400 malformed", r.status,
           rh(&r, "Payment-Error") ? rh(&r, "Payment-Error") : "-");
    resp_free(&r);
    if (mp_signer_generate(&other) != MP_OK)
        die("signer");
    w = pw_new(&A_ALICE, &cert, other, SHOP, SHOP_UNIT, 10, 0); /* not the cert's key */
    pay_pw(w, 2, page(), &r);
    EXPECT_402(&r, "forged");
    resp_free(&r);
    rogue = cert;                                      /* a cert the broker never signed */
    rogue.serial += 1000;
    OKST(mp_pw_cert_sign(&rogue, other));
    w = pw_new(&A_ALICE, &rogue, sg, SHOP, SHOP_UNIT, 10, 0);
    pay_pw(w, 2, page(), &r);
    EXPECT_402(&r, "forged");
    resp_free(&r);
    mp_signer_free(other);
    mp_signer_free(sg);
}

/* An expired certificate at the vendor: /certify with a short expiry, one
 * payment while it is valid, then after it: refused with "expired", both on
 * the commitment the vendor knows and on a new one under the same cert.
 * (A commitment cannot outlive its cert, 5.5 step 3, so the commitment has
 * expired too; the cert check, step 2, comes first.) */
static void t_cert_shortened(void)
{
    mp_pw_cert cert;
    mp_signer *sg = NULL;
    char *k, *body;
    mp_pubkey pk;
    uint8_t buf[MP_WIRE_MAX];
    size_t len;
    uint64_t far = now_s() + 400 * 86400ULL;
    resp r;

    /* An expiry beyond MicropayBrokerCertLifetime (default 30 days) is shortened. */
    if (mp_signer_generate(&sg) != MP_OK || mp_signer_pubkey(sg, &pk) != MP_OK)
        die("signer");
    k = b64(pk.key, pk.len);
    body = jtext(json_pack("{s:s, s:{s:s, s:s}, s:s, s:I}", "request_id", rid_s(), "key", "alg",
                           "ed25519", "key", k, "credit_limit", "0.01 USD", "expiry", (json_int_t)far));
    bpost(&A_BOB, "certify", body, &r);
    if (EXPECT_B200(&r)) {
        len = unb64(js(&r, "cert"), buf, sizeof buf);
        if (len == 0 || mp_pw_cert_decode(buf, len, &cert) != MP_OK) {
            EXPECT(0, "cert does not decode");
        } else {
            EXPECT(cert.expiry <= now_s() + 30 * 86400ULL + 5 && cert.expiry > now_s() + 29 * 86400ULL,
                   "cert expiry %llu not shortened to 30 days", (unsigned long long)cert.expiry);
            cert_log(&cert);
        }
    }
    resp_free(&r);
    free(body);
    free(k);
    mp_signer_free(sg);
}

static void t_cert_expired(void)
{
    mp_pw_cert cert;
    mp_signer *sg = NULL;
    uint64_t t = now_s() + 4;
    pwc *w;
    resp r;

    char *cid = rid();
    char *cbody = NULL, *k;
    mp_signer *sg2 = NULL;
    mp_pubkey pk;
    resp first, again;

    if (!certify(&A_BOB, "0.10 USD", t, &cert, &sg))
        return;
    /* A /certify whose answer is lost, retried once its expiry has passed:
     * the first answer, not a 400 for an expiry in the past. */
    if (mp_signer_generate(&sg2) != MP_OK || mp_signer_pubkey(sg2, &pk) != MP_OK)
        die("signer");
    k = b64(pk.key, pk.len);
    cbody = jtext(json_pack("{s:s, s:{s:s, s:s}, s:s, s:I}", "request_id", cid, "key", "alg",
                            "ed25519", "key", k, "credit_limit", "0.01 USD", "expiry",
                            (json_int_t)t));
    bpost(&A_BOB, "certify", cbody, &first);
    if (EXPECT_B200(&first)) {
        uint8_t buf[MP_WIRE_MAX];
        size_t len = unb64(js(&first, "cert"), buf, sizeof buf);
        mp_pw_cert c2;

        if (len > 0 && mp_pw_cert_decode(buf, len, &c2) == MP_OK)
            cert_log(&c2);
    }
    g_pw_short = pw_new(&A_BOB, &cert, sg, NEWS, NEWS_UNIT, 10, cert.expiry);
    EXPECT(pay_pw(g_pw_short, 2, page(), NULL) == 200, "news: payment under a valid cert");
    while (now_s() <= cert.expiry)
        sleep(1);
    pay_pw(g_pw_short, 2, page(), &r);
    EXPECT_402(&r, "expired");
    resp_free(&r);
    bpost(&A_BOB, "certify", cbody, &again);
    EXPECT(again.status == 200 && first.len == again.len && first.body != NULL
           && memcmp(first.body, again.body, first.len) == 0,
           "certify retried after its expiry: %ld %.200s", again.status, again.body ?: "");
    resp_free(&first);
    resp_free(&again);
    free(cbody);
    free(cid);
    free(k);
    mp_signer_free(sg2);
    w = pw_new_d(&A_BOB, &cert, sg, NEWS, NEWS_UNIT, 10, cert.expiry - 2, cert.expiry);
    pay_pw(w, 2, page(), &r);
    EXPECT_402(&r, "expired");
    resp_free(&r);
    mp_signer_free(sg);
}

/* ---- /redeem (8.6) --------------------------------------------------------------------------------------- */

static json_t *mc_item(const coin *c, const char *pay, const char *target)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "payment", pay ? pay : c->pay_b64, "method", "GET",
                     "host", c->host, "target", target ? target : c->target);
}

static coin *spent_coin(const account *who, int kind, const char *vendor)
{
    int i;

    for (i = 0; i < g_ncoins; i++)
        if (g_coins[i].who == who && g_coins[i].kind == kind && g_coins[i].spent
            && !g_coins[i].deposited && g_coins[i].pay_b64 != NULL
            && strcmp(g_coins[i].s.vendor, vendor) == 0)
            return &g_coins[i];
    return NULL;
}

/* Checks results[i] of a /redeem answer. */
#define EXPECT_ITEM(r, i, kind, status, units) expect_item_(__LINE__, (r), (i), (kind), (status), (units))
static void expect_item_(int line, const resp *r, size_t i, const char *kind, const char *status,
                         uint64_t units)
{
    json_t *it = json_array_get(json_object_get(r->json, "results"), i);
    const char *k = json_string_value(json_object_get(it, "kind"));
    const char *s = json_string_value(json_object_get(it, "status"));
    const char *c = json_string_value(json_object_get(it, "credited"));
    int ok = k && s && c && strcmp(k, kind) == 0 && strcmp(s, status) == 0 && units_of(c) == units;

    if (!ok)
        fprintf(stderr, "\n    FAIL line %d: result %zu: expected %s %s %llu, got %s %s %s\n", line,
                i, kind, status, (unsigned long long)units, k ?: "-", s ?: "-", c ?: "-");
    CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, (unsigned)line, "redeem item", __FILE__, "",
                            CU_FALSE);
}

/* The vendor account's balance through an empty /redeem. */
static uint64_t vendor_balance(const account *v)
{
    char *body = jtext(json_pack("{s:s, s:[], s:[]}", "request_id", rid_s(), "payword", "millicent"));
    uint64_t b = UINT64_MAX;
    resp r;

    bpost(v, "redeem", body, &r);
    if (EXPECT_B200(&r)) {
        EXPECT(units_of(js(&r, "credited")) == 0, "empty redeem credited %s", js(&r, "credited"));
        b = units_of(js(&r, "balance"));
    }
    resp_free(&r);
    free(body);
    return b;
}

static void t_redeem(void)
{
    coin *dep = spent_coin(&A_ALICE, K_VENDOR, NEWS), *chg = spent_coin(&A_ALICE, K_CHANGE, NEWS);
    coin *sdep = spent_coin(&A_ALICE, K_VENDOR, SHOP);
    uint8_t buf[MP_WIRE_MAX], junk[MP_HASH_LEN];
    mp_mc_payment p;
    uint64_t v0, v1, unit = units_of(NEWS_UNIT);
    char *forged, *body, *body1, *rec2, *recbad, *recw, *recshop, *recshort, *recrogue;
    json_t *mc;
    size_t len;
    resp r, r2;

    if (dep == NULL || chg == NULL || sdep == NULL || g_pw_news == NULL || g_pw_shop == NULL) {
        EXPECT(0, "nothing to redeem (earlier tests failed)");
        return;
    }
    v0 = vendor_balance(&A_NEWS);
    /* a deposit with its req_sig changed */
    len = unb64(dep->pay_b64, buf, sizeof buf);
    if (len == 0 || mp_mc_payment_decode(buf, len, &p) != MP_OK)
        die("payment");
    p.req_sig[5] ^= 0x40;
    if (mp_mc_payment_encode(&p, buf, sizeof buf, &len) != MP_OK)
        die("payment");
    forged = b64(buf, len);
    rec2 = pw_redeem_rec(g_pw_news, 2, NULL);
    /* bob's commitment under the expired cert: redeemable after expiry (8.6) */
    recshort = g_pw_short && g_pw_short->l >= 2 ? pw_redeem_rec(g_pw_short, 2, NULL) : strdup("x");
    mc = json_array();
    json_array_append_new(mc, mc_item(dep, NULL, NULL));            /* ok, full value */
    json_array_append_new(mc, mc_item(dep, forged, NULL));          /* forged req_sig */
    json_array_append_new(mc, mc_item(dep, NULL, "/paid/other.html")); /* another request */
    json_array_append_new(mc, mc_item(chg, NULL, NULL));            /* the vendor's own change */
    body1 = jtext(json_pack("{s:s, s:[s,s], s:o}", "request_id", rid_s(), "payword", rec2, recshort,
                            "millicent", mc));
    free(recshort);
    bpost(&A_NEWS, "redeem", body1, &r);
    if (EXPECT_B200(&r)) {
        EXPECT(json_array_size(json_object_get(r.json, "results")) == 6, "6 results");
        EXPECT_ITEM(&r, 0, "payword", "ok", 2 * unit);
        EXPECT_ITEM(&r, 1, "payword", "ok", 2 * unit);
        EXPECT_ITEM(&r, 2, "millicent", "ok", dep->s.value.units);
        /* the same scrip twice more in one request: malformed, unexamined */
        EXPECT_ITEM(&r, 3, "millicent", "malformed", 0);
        EXPECT_ITEM(&r, 4, "millicent", "malformed", 0);
        EXPECT_ITEM(&r, 5, "millicent", "forged", 0);
        EXPECT(units_of(js(&r, "credited")) == 4 * unit + dep->s.value.units, "credited %s",
               js(&r, "credited"));
        EXPECT(units_of(js(&r, "balance")) == v0 + 4 * unit + dep->s.value.units, "balance %s",
               js(&r, "balance"));
        dep->deposited = 1;
    }
    /* The same request again: the same answer, nothing more. */
    bpost(&A_NEWS, "redeem", body1, &r2);
    EXPECT(r2.status == 200 && r.len == r2.len && memcmp(r.body, r2.body, r.len) == 0,
           "redeem retry: %ld, another answer", r2.status);
    resp_free(&r);
    resp_free(&r2);
    /* The scrip alone, with its req_sig changed, and for another request:
     * only its customer could have made req_sig, for that request */
    {
        const char *pays[2] = { forged, NULL };
        const char *targets[2] = { NULL, "/paid/other.html" };
        int k;

        for (k = 0; k < 2; k++) {
            mc = json_array();
            json_array_append_new(mc, mc_item(dep, pays[k], targets[k]));
            body = jtext(json_pack("{s:s, s:o}", "request_id", rid_s(), "millicent", mc));
            bpost(&A_NEWS, "redeem", body, &r);
            if (EXPECT_B200(&r))
                EXPECT_ITEM(&r, 0, "millicent", "forged", 0);
            resp_free(&r);
            free(body);
        }
    }
    /* Double redemption in a new request: ok, 0.00; and the other refusals. */
    mp_random(junk, sizeof junk);
    recbad = pw_redeem_rec(g_pw_news, 4, junk);                     /* a wrong word */
    recw = pw_redeem_rec(g_pw_news, 101, junk);                     /* last > n */
    recshop = pw_redeem_rec(g_pw_shop, 2, NULL);                    /* shop's, to v-news */
    {
        /* a commitment under a certificate another key signed in the broker's name */
        mp_signer *user = NULL, *rogue = NULL;
        mp_pw_cert cert;
        pwc *w;

        if (mp_signer_generate(&user) != MP_OK || mp_signer_generate(&rogue) != MP_OK)
            die("signer");
        cert = g_pw_news->c.cert;
        OKST(mp_signer_pubkey(user, &cert.user_key));
        OKST(mp_pw_cert_sign(&cert, rogue));
        w = pw_new(&A_ALICE, &cert, user, NEWS, NEWS_UNIT, 10, 0);
        recrogue = pw_redeem_rec(w, 5, NULL);
        mp_signer_free(user);
        mp_signer_free(rogue);
    }
    mc = json_array();
    json_array_append_new(mc, mc_item(dep, NULL, NULL));
    json_array_append_new(mc, mc_item(sdep, NULL, NULL));           /* shop's scrip, to v-news */
    body = jtext(json_pack("{s:s, s:[s,s,s,s,s], s:o}", "request_id", rid_s(), "payword", rec2, recbad,
                           recw, recshop, recrogue, "millicent", mc));
    bpost(&A_NEWS, "redeem", body, &r);
    if (EXPECT_B200(&r)) {
        EXPECT_ITEM(&r, 0, "payword", "ok", 0);
        /* one item per commitment and request: the second is not hashed */
        EXPECT_ITEM(&r, 1, "payword", "malformed", 0);
        EXPECT_ITEM(&r, 2, "payword", "malformed", 0);
        EXPECT_ITEM(&r, 3, "payword", "wrong-vendor", 0);
        EXPECT_ITEM(&r, 4, "payword", "forged", 0);
        EXPECT_ITEM(&r, 5, "millicent", "ok", 0);
        EXPECT_ITEM(&r, 6, "millicent", "wrong-vendor", 0);
        EXPECT(units_of(js(&r, "credited")) == 0, "credited %s", js(&r, "credited"));
    }
    resp_free(&r);
    free(body);
    /* a wrong word above the last one credited, alone in its request */
    body = jtext(json_pack("{s:s, s:[s]}", "request_id", rid_s(), "payword", recbad));
    bpost(&A_NEWS, "redeem", body, &r);
    if (EXPECT_B200(&r))
        EXPECT_ITEM(&r, 0, "payword", "forged", 0);
    resp_free(&r);
    free(body);
    /* more than 1000 items: the request fails as a whole */
    {
        json_t *many = json_array();
        int i;

        for (i = 0; i < 1001; i++)
            json_array_append_new(many, json_string(rec2));
        body = jtext(json_pack("{s:s, s:o}", "request_id", rid_s(), "payword", many));
        bad(&A_NEWS, "redeem", body, 400, "malformed");
        free(body);
    }
    v1 = vendor_balance(&A_NEWS);
    EXPECT(v1 == v0 + 4 * unit + dep->s.value.units, "v-news balance %llu", (unsigned long long)v1);
    /* Customers do not redeem, vendors do not buy. */
    body = jtext(json_pack("{s:s, s:[s]}", "request_id", rid_s(), "payword", rec2));
    bpost(&A_ALICE, "redeem", body, &r);
    EXPECT(r.status >= 400 && r.status < 500 && js(&r, "reason") != NULL,
           "customer /redeem: %ld %.200s", r.status, r.body ?: "");
    if (r.status != 422)
        fprintf(stderr, "\n    note: customer /redeem answered %ld\n", r.status);
    resp_free(&r);
    free(body);
    body = jtext(json_pack("{s:s, s:s}", "request_id", rid_s(), "amount", "0.01 USD"));
    bpost(&A_NEWS, "buy", body, &r);
    EXPECT(r.status >= 400 && r.status < 500, "vendor /buy: %ld", r.status);
    resp_free(&r);
    free(body);
    EXPECT(vendor_balance(&A_NEWS) == v1, "v-news balance changed");
    free(body1);
    free(forged);
    free(rec2);
    free(recbad);
    free(recw);
    free(recshop);
    free(recrogue);
}

/* ---- attacks on the broker's money (issue 9) ------------------------------------------------------------ */

/* The vendor holds the secrets of the series it delegated to the broker:
 * it mints scrip of its own choosing there and deposits it as if the
 * broker had sold it. The broker must credit nothing: only scrip it
 * recorded issuing is money. Also a real scrip id the broker did issue,
 * re-stamped at a hundred times its value. */
static void t_vendor_mints(void)
{
    const char *path = getenv("MP_BT_DELEG");
    static mp_keyfile kf;
    mp_mc_issuer *iss = NULL;
    mp_mac *receipt = NULL;
    uint8_t csec[MP_HASH_LEN], buf[MP_WIRE_MAX];
    char text[4096], *pay, *pay2, *body;
    mp_mc_payment p;
    mp_request req;
    mp_amount value, price;
    mp_scrip s;
    coin *real = find_coin(&A_ALICE, K_VENDOR, NEWS, 1);
    uint64_t v0 = vendor_balance(&A_NEWS);
    size_t len, line = 0;
    json_t *mc;
    FILE *f;
    resp r;

    if (path == NULL || (f = fopen(path, "r")) == NULL)
        die("MP_BT_DELEG: the vendor's delegation file");
    len = fread(text, 1, sizeof text, f);
    fclose(f);
    if (mp_keyfile_parse(text, len, &kf, &line) != MP_OK || mp_mc_issuer_new(NEWS, &iss) != MP_OK
        || mp_keyfile_apply(&kf, iss, &receipt) != MP_OK)
        die("delegation file %s", path);
    mp_keyfile_wipe(&kf);
    mp_wipe(text, sizeof text);
    memset(&s, 0, sizeof s);
    req.method = "GET";
    req.method_len = 3;
    req.host = g_news_host;
    req.host_len = strlen(g_news_host);
    req.target = "/paid/p0.html";
    req.target_len = strlen(req.target);
    value = amt("51000.00 USD");
    price = amt(NEWS_PRICE);
    /* scrip of 51,000 USD in the delegated series (2), an id the broker has
     * not reached, for a customer id the vendor picks */
    OKST(mp_mc_mint(iss, &value, ((uint64_t)2 << 48) | 999999, ((uint64_t)1 << 48) | 4242,
                    now_s() + 3600, NULL, &s));
    OKST(mp_mc_customer_secret(iss, s.customer_id, csec));
    OKST(mp_mc_pay(g_mac, &s, csec, &req, &price, &p));
    OKST(mp_mc_payment_encode(&p, buf, sizeof buf, &len));
    pay = b64(buf, len);
    pay2 = NULL;
    if (real != NULL) {
        /* a real id, customer and expiry, a hundred times the value */
        value = real->s.value;
        value.units *= 100;
        OKST(mp_mc_mint(iss, &value, real->s.id, real->s.customer_id, real->s.expiry, NULL, &s));
        OKST(mp_mc_customer_secret(iss, s.customer_id, csec));
        OKST(mp_mc_pay(g_mac, &s, csec, &req, &price, &p));
        OKST(mp_mc_payment_encode(&p, buf, sizeof buf, &len));
        pay2 = b64(buf, len);
    }
    mp_wipe(csec, sizeof csec);
    mc = json_array();
    json_array_append_new(mc, json_pack("{s:s, s:s, s:s, s:s}", "payment", pay, "method", "GET",
                                        "host", g_news_host, "target", "/paid/p0.html"));
    if (pay2 != NULL)
        json_array_append_new(mc, json_pack("{s:s, s:s, s:s, s:s}", "payment", pay2, "method",
                                            "GET", "host", g_news_host, "target", "/paid/p0.html"));
    body = jtext(json_pack("{s:s, s:o}", "request_id", rid_s(), "millicent", mc));
    bpost(&A_NEWS, "redeem", body, &r);
    if (EXPECT_B200(&r)) {
        EXPECT_ITEM(&r, 0, "millicent", "forged", 0);
        if (pay2 != NULL)
            EXPECT_ITEM(&r, 1, "millicent", "forged", 0);
        EXPECT(units_of(js(&r, "credited")) == 0, "vendor-minted scrip credited %s",
               js(&r, "credited"));
    }
    EXPECT(real != NULL, "alice holds no news scrip to copy");
    EXPECT(vendor_balance(&A_NEWS) == v0, "v-news balance %llu -> %llu", (unsigned long long)v0,
           (unsigned long long)vendor_balance(&A_NEWS));
    resp_free(&r);
    free(body);
    free(pay);
    free(pay2);
    mp_mac_free(receipt);
    mp_mc_issuer_free(iss);
}

/* A vendor account makes the broker hash: PayWord items with the longest
 * chains (10^6 words) and forged last words. The broker proves each item
 * from the last word it credited, takes one item per commitment and
 * request, and stops hashing at the request's budget (2,000,000 words):
 * the third long item is not hashed ("exhausted"), and a second item of
 * one commitment is refused unhashed. */
static void t_redeem_budget(void)
{
    mp_pw_cert cert;
    mp_signer *sg = NULL;
    uint8_t junk[MP_HASH_LEN];
    char *rec[3], *body;
    pwc *w[3];
    resp r;
    int i;

    if (!certify(&A_FRANK, "10.00 USD", 0, &cert, &sg))
        return;
    mp_random(junk, sizeof junk);
    for (i = 0; i < 3; i++) {
        w[i] = pw_new(&A_FRANK, &cert, sg, NEWS, "0.00001 USD", 1000000, 0);
        rec[i] = pw_redeem_rec(w[i], 1000000, junk);
    }
    body = jtext(json_pack("{s:s, s:[s,s,s,s]}", "request_id", rid_s(), "payword", rec[0], rec[0],
                           rec[1], rec[2]));
    bpost(&A_NEWS, "redeem", body, &r);
    if (EXPECT_B200(&r)) {
        EXPECT_ITEM(&r, 0, "payword", "forged", 0);
        EXPECT_ITEM(&r, 1, "payword", "malformed", 0);        /* the same commitment again */
        /* after a forged item the request hashes no more */
        EXPECT_ITEM(&r, 2, "payword", "exhausted", 0);
        EXPECT_ITEM(&r, 3, "payword", "exhausted", 0);
    }
    resp_free(&r);
    free(body);
    /* the second commitment, never hashed above, alone in its request */
    body = jtext(json_pack("{s:s, s:[s]}", "request_id", rid_s(), "payword", rec[1]));
    bpost(&A_NEWS, "redeem", body, &r);
    if (EXPECT_B200(&r))
        EXPECT_ITEM(&r, 0, "payword", "forged", 0);
    resp_free(&r);
    free(body);
    /* 1000 junk items: every one refused, nothing advanced, so the answer
     * is not stored (it would fill the store): the same request id then
     * takes another body, where a stored answer would give 409 */
    {
        json_t *items = json_array();
        char *id = rid(), *b2;

        for (i = 0; i < 1000; i++)
            json_array_append_new(items, json_string(""));
        body = jtext(json_pack("{s:s, s:o}", "request_id", id, "payword", items));
        bpost(&A_NEWS, "redeem", body, &r);
        if (EXPECT_B200(&r))
            EXPECT_ITEM(&r, 999, "payword", "malformed", 0);
        resp_free(&r);
        b2 = jtext(json_pack("{s:s, s:[s]}", "request_id", id, "payword", ""));
        bpost(&A_NEWS, "redeem", b2, &r);
        EXPECT(r.status == 200, "a junk /redeem's request id taken again: %ld (stored?)", r.status);
        resp_free(&r);
        free(b2);
        free(body);
        free(id);
    }
    for (i = 0; i < 3; i++)
        free(rec[i]);
    mp_signer_free(sg);
}

/* gina (EUR) buys broker scrip and hands it to bob (USD), who exchanges
 * it for EUR vendor scrip: records in a currency bob's balance cannot take
 * back would sit unreleasable at the front of the lapse queue. Refused
 * (400), and gina's scrip stays hers. */
static void t_exchange_currency(void)
{
    char *id = rid(), *body = jtext(json_pack("{s:s, s:s}", "request_id", id, "amount",
                                              "0.50 EUR"));
    uint8_t csec[MP_HASH_LEN];
    mp_amount price = amt("0.01 EUR");
    mp_mc_payment p;
    mp_scrip sc;
    coin c;
    char *pay, *ex;
    resp r;

    bpost(&A_GINA, "buy", body, &r);
    if (!EXPECT_B200(&r) || !scrip_unb64(js(&r, "scrip"), &sc)
        || unb64(js(&r, "customer_secret"), csec, sizeof csec) != MP_HASH_LEN) {
        resp_free(&r);
        free(body);
        free(id);
        return;
    }
    resp_free(&r);
    memset(&c, 0, sizeof c);
    c.s = sc;
    memcpy(c.csec, csec, sizeof csec);
    pay = mc_cred(&c, NULL, "POST", g_broker_host, "/mp/exchange", &price, &p);
    ex = jtext(json_pack("{s:s, s:s, s:[s], s:s}", "request_id", rid_s(), "vendor", NEWS,
                         "amounts", "0.01 EUR", "payment", pay));
    bpost(&A_BOB, "exchange", ex, &r);
    EXPECT_BFAIL(&r, 400, "malformed");
    resp_free(&r);
    free(pay);
    free(ex);
    free(body);
    free(id);
}

/* An RSA public key (DER SubjectPublicKeyInfo) with exponent e and a real
 * 2048-bit modulus: anyone can "sign" for e = 1. */
static char *rsa_key_with_e(unsigned e)
{
    EVP_PKEY *gen = EVP_RSA_gen(2048), *weak = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    BIGNUM *n = NULL, *bn_e = BN_new();
    unsigned char *der = NULL;
    char *out;
    int len;

    if (gen == NULL || bld == NULL || bn_e == NULL || !BN_set_word(bn_e, e)
        || !EVP_PKEY_get_bn_param(gen, OSSL_PKEY_PARAM_RSA_N, &n)
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n)
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e)
        || (params = OSSL_PARAM_BLD_to_param(bld)) == NULL
        || (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL
        || EVP_PKEY_fromdata_init(ctx) <= 0
        || EVP_PKEY_fromdata(ctx, &weak, EVP_PKEY_PUBLIC_KEY, params) <= 0
        || (len = i2d_PUBKEY(weak, &der)) <= 0)
        die("rsa key with e=%u", e);
    out = b64(der, (size_t)len);
    OPENSSL_free(der);
    EVP_PKEY_free(weak);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(bn_e);
    EVP_PKEY_free(gen);
    return out;
}

/* Keys that cannot sign are not certified: with such a certificate anyone
 * who has seen it (it travels in clear) could spend against the account. */
static void t_weak_keys(void)
{
    static const char *const small[] = {
        "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",    /* 01 00..00: the identity */
        "7P_______________________________________38",    /* order 2 */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",    /* order 4 */
        "JuiVj8KyJ7BFw_SJ8u-Y8NXfrAXTxjM5sTgCiG1T_AU",    /* order 8 */
    };
    uint64_t before = balance_probe(&A_BOB);
    char *k, *body;
    size_t i;
    unsigned e;

    for (i = 0; i < sizeof small / sizeof small[0]; i++) {
        body = jtext(json_pack("{s:s, s:{s:s, s:s}, s:s}", "request_id", rid_s(), "key", "alg",
                               "ed25519", "key", small[i], "credit_limit", "0.10 USD"));
        bad(&A_BOB, "certify", body, 400, "malformed");
        free(body);
    }
    for (e = 1; e <= 3; e += 2) {
        k = rsa_key_with_e(e);
        body = jtext(json_pack("{s:s, s:{s:s, s:s}, s:s}", "request_id", rid_s(), "key", "alg",
                               "rsa", "key", k, "credit_limit", "0.10 USD"));
        bad(&A_BOB, "certify", body, 400, "malformed");
        free(body);
        free(k);
    }
    /* the same with e = 65537 is certified: the refusals are about e */
    k = rsa_key_with_e(65537);
    body = jtext(json_pack("{s:s, s:{s:s, s:s}, s:s}", "request_id", rid_s(), "key", "alg", "rsa",
                           "key", k, "credit_limit", "0.01 USD"));
    {
        resp r;

        bpost(&A_BOB, "certify", body, &r);
        if (EXPECT_B200(&r)) {
            uint8_t buf[MP_WIRE_MAX];
            size_t len = unb64(js(&r, "cert"), buf, sizeof buf);
            mp_pw_cert cert;

            if (len > 0 && mp_pw_cert_decode(buf, len, &cert) == MP_OK)
                cert_log(&cert);
        }
        resp_free(&r);
    }
    free(body);
    free(k);
    EXPECT(balance_probe(&A_BOB) == before - 2 * units_of("0.01 USD"),
           "bob's balance: only the good key's credit reserved (and the probe)");
}

/* ---- the workload: several customers, both vendors, both schemes -------------------------------------------- */

static void spend_changes(const account *who)
{
    coin *c;

    while ((c = find_coin(who, K_CHANGE, NEWS, units_of(NEWS_PRICE))) != NULL && c->s.value.units < 5000)
        EXPECT(pay_mc(c, page(), NEWS_PRICE) == 200, "news: pay with change");
    if ((c = find_coin(who, K_CHANGE, SHOP, units_of(SHOP_PRICE))) != NULL)
        EXPECT(pay_mc(c, page(), SHOP_PRICE) == 200, "shop: pay with change");
}

static void t_workload(void)
{
    const account *who[] = { &A_ALICE, &A_BOB };
    const char *na[] = { "0.05 USD", "0.02 USD", "0.01 USD" }, *sa[] = { "0.10 USD" };
    const char *keep[] = { "0.07 USD" };
    mp_pw_cert cert;
    mp_signer *sg = NULL;
    coin *nv[3], *sv[1], *kv[1], *c;
    pwc *w;
    int round, j, i;

    for (round = 0; round < 3; round++) {
        for (j = 0; j < 2; j++) {
            memset(nv, 0, sizeof nv);
            memset(sv, 0, sizeof sv);
            if ((c = buy(who[j], "0.40 USD", NULL)) == NULL || !exchange(who[j], c, NEWS, na, 3, nv))
                continue;
            if ((c = find_coin(who[j], K_BROKER, BROKER, 32000)) == NULL
                || !exchange(who[j], c, SHOP, sa, 1, sv))
                continue;
            for (i = 0; i < 3; i++)
                if (nv[i])
                    EXPECT(pay_mc(nv[i], page(), NEWS_PRICE) == 200, "news: pay");
            if (sv[0])
                EXPECT(pay_mc(sv[0], page(), SHOP_PRICE) == 200, "shop: pay");
            spend_changes(who[j]);
            /* A little more broker scrip and vendor scrip kept unspent. */
            if (round == 1 && (c = find_coin(who[j], K_BROKER, BROKER, 7000)) != NULL)
                exchange(who[j], c, NEWS, keep, 1, kv);
        }
        if (g_pw_news != NULL)
            EXPECT(pay_pw(g_pw_news, 2, page(), NULL) == 200, "news: PayWord");
        if (g_pw_shop != NULL)
            EXPECT(pay_pw(g_pw_shop, 2, page(), NULL) == 200, "shop: PayWord");
    }
    /* bob's PayWord at shop */
    if (certify(&A_BOB, "0.50 USD", 0, &cert, &sg)) {
        w = pw_new(&A_BOB, &cert, sg, SHOP, SHOP_UNIT, 20, 0);
        for (i = 0; i < 3; i++)
            EXPECT(pay_pw(w, 2, page(), NULL) == 200, "shop: bob's PayWord %d", i);
        /* paid twice for the same page (both accepted, both charged) */
        EXPECT(pay_pw(w, 2, "/paid/p1.html", NULL) == 200 && pay_pw(w, 2, "/paid/p1.html", NULL) == 200,
               "shop: the same page twice");
    }
    mp_signer_free(sg);
}

/* ---- main ------------------------------------------------------------------------------------------- */

/* After `mpadmin keys rotate` of the broker's and news.example's secrets and a
 * graceful restart: scrip from before still spends, new broker scrip and
 * news' change come from the newer series. */
static void t_rotate(void)
{
    const account *who[] = { &A_ALICE, &A_BOB };
    const char *one[] = { "0.01 USD" }, *na[] = { "0.05 USD" }, *sa[] = { "0.10 USD" };
    uint16_t bser = 0, cser = 0;
    mp_pw_cert cert;
    mp_signer *sg = NULL;
    coin *c, *nv[1], *sv[1];
    int i, j, n0 = g_ncoins;
    pwc *w;

    for (i = 0; i < g_ncoins; i++) {
        if (g_coins[i].kind == K_BROKER && MP_SERIES(g_coins[i].s.id) > bser)
            bser = MP_SERIES(g_coins[i].s.id);
        if (g_coins[i].kind == K_CHANGE && strcmp(g_coins[i].s.vendor, NEWS) == 0
            && MP_SERIES(g_coins[i].s.id) > cser)
            cser = MP_SERIES(g_coins[i].s.id);
    }
    EXPECT(bser > 0 && cser > 0, "the wallet from before holds broker scrip and news change");
    for (j = 0; j < 2; j++) {
        /* held from before the rotation */
        if ((c = find_coin(who[j], K_VENDOR, NEWS, units_of(NEWS_PRICE))) != NULL)
            EXPECT(pay_mc(c, page(), NEWS_PRICE) == 200, "news: old vendor scrip after rotation");
        else
            EXPECT(0, "%s holds no news scrip", who[j]->id);
        if ((c = find_coin(who[j], K_BROKER, BROKER, 1000)) != NULL && MP_SERIES(c->s.id) <= bser)
            EXPECT(exchange(who[j], c, NEWS, one, 1, nv), "exchange of old broker scrip");
        else
            EXPECT(0, "%s holds no broker scrip", who[j]->id);
        /* new */
        if ((c = buy(who[j], "0.30 USD", NULL)) == NULL)
            continue;
        EXPECT(MP_SERIES(c->s.id) > bser, "new broker scrip in series %u, not above %u",
               MP_SERIES(c->s.id), bser);
        if (exchange(who[j], c, NEWS, na, 1, nv) && nv[0] != NULL)
            EXPECT(pay_mc(nv[0], page(), NEWS_PRICE) == 200, "news: pay after rotation");
        if ((c = find_coin(who[j], K_BROKER, BROKER, 10000)) != NULL && exchange(who[j], c, SHOP, sa, 1, sv)
            && sv[0] != NULL)
            EXPECT(pay_mc(sv[0], page(), SHOP_PRICE) == 200, "shop: pay after rotation");
    }
    for (i = n0; i < g_ncoins; i++)
        if (g_coins[i].kind == K_CHANGE && strcmp(g_coins[i].s.vendor, NEWS) == 0)
            EXPECT(MP_SERIES(g_coins[i].s.id) > cser, "news change in series %u, not above %u",
                   MP_SERIES(g_coins[i].s.id), cser);
    /* PayWord after the restart */
    if (certify(&A_ALICE, "0.20 USD", 0, &cert, &sg)) {
        w = pw_new(&A_ALICE, &cert, sg, NEWS, NEWS_UNIT, 10, 0);
        EXPECT(pay_pw(w, 2, page(), NULL) == 200 && pay_pw(w, 2, page(), NULL) == 200,
               "news: PayWord after rotation");
    }
    mp_signer_free(sg);
}

/* The slow body (issue 9, finding 2): at a broker whose scrip lives 60 s,
 * erin's /exchange request line and headers arrive while her broker scrip
 * is valid, the body's last byte only after it expired. Deciding at the
 * request line's time would exchange expired scrip (and, once compaction
 * dropped its spent mark, the same scrip twice). The broker decides at the
 * clock of the decision: 422 expired, and the scrip stays hers (it goes
 * back to her balance when it lapses). */
static void t_slow_body(void)
{
    const char *short_port = getenv("MP_BT_SHORT_PORT");
    mp_amount price = amt("0.05 USD");
    mp_mc_payment p;
    char *pay, *body;
    coin *c;
    resp r;

    if (short_port == NULL)
        die("MP_BT_SHORT_PORT: the short-lived broker's port");
    snprintf(g_broker_host, sizeof g_broker_host, "%s:%s", BROKER, short_port);
    {
        char *res = xasprintf("%s:127.0.0.1", g_broker_host);

        g_resolve = curl_slist_append(g_resolve, res);
        free(res);
    }
    if ((c = buy(&A_ERIN, "0.10 USD", NULL)) == NULL)
        return;
    EXPECT(c->s.expiry <= now_s() + 61, "the short broker's scrip lives %llu s",
           (unsigned long long)(c->s.expiry - now_s()));
    pay = mc_cred(c, NULL, "POST", g_broker_host, "/mp/exchange", &price, &p);
    body = jtext(json_pack("{s:s, s:s, s:[s], s:s}", "request_id", rid_s(), "vendor", NEWS,
                           "amounts", "0.05 USD", "payment", pay));
    g_slow_until = c->s.expiry + 1;
    bpost(&A_ERIN, "exchange", body, &r);
    g_slow_until = 0;
    EXPECT(now_s() > c->s.expiry, "the body arrived after the expiry");
    EXPECT_BFAIL(&r, 422, "expired");
    resp_free(&r);
    free(pay);
    free(body);
}

static CU_TestInfo slow_tests[] = {
    { "attack: /exchange with a body trickled across the scrip's expiry", t_slow_body },
    CU_TEST_INFO_NULL,
};

/* Words paid under a certificate of the signing key run_broker.sh retires
 * next: mpadmin redeem sends them only after the rotation. */
static void t_pw_before_rotate(void)
{
    mp_pw_cert cert;
    mp_signer *sg = NULL;
    pwc *w;

    if (certify(&A_ALICE, "0.05 USD", 0, &cert, &sg)) {
        w = pw_new(&A_ALICE, &cert, sg, NEWS, NEWS_UNIT, 10, 0);
        EXPECT(pay_pw(w, 2, page(), NULL) == 200 && pay_pw(w, 2, page(), NULL) == 200,
               "news: PayWord under the signing key about to be retired");
    }
    mp_signer_free(sg);
}

static CU_TestInfo pre_rotate_tests[] = {
    { "PayWord under the signing key about to be retired", t_pw_before_rotate },
    CU_TEST_INFO_NULL,
};

static CU_TestInfo rotate_tests[] = {
    { "after keys rotate + graceful restart: old and new scrip", t_rotate },
    CU_TEST_INFO_NULL,
};

static CU_TestInfo run_tests[] = {
    { "authentication: 401 unknown-account, bad sig, skewed ts, no header", t_auth },
    { "malformed JSON, members, amounts, keys: 400", t_malformed },
    { "idempotency: replay same body, 409 for another body", t_idempotency },
    { "overdraft: 409 on /buy and /certify", t_overdraft },
    { "exchange: amounts, change, customer_secret; pay both vendors", t_exchange },
    { "exchange rejections: forged, wrong-vendor, price-mismatch, already-spent", t_exchange_reject },
    { "vendors and broker-minted scrip: wrong-vendor, forged, already-spent", t_vendor },
    { "certify, commit, PayWord at both vendors; forged and insufficient", t_payword },
    { "certify: a too distant expiry is shortened", t_cert_shortened },
    { "expired certificate refused at the vendor", t_cert_expired },
    { "redeem: deposits, PayWord, double redemption credits 0, refusals", t_redeem },
    { "attack: the vendor mints scrip in its delegated series and deposits it", t_vendor_mints },
    { "attack: certify keys that cannot sign (small order, RSA e=1, e=3)", t_weak_keys },
    { "attack: /redeem items that make the broker hash", t_redeem_budget },
    { "attack: exchange scrip of another currency than the account's", t_exchange_currency },
    { "workload: two customers, two vendors, both schemes, change", t_workload },
    CU_TEST_INFO_NULL,
};

static unsigned g_summary_pass, g_summary_fail;

static int run_suites(const char *name, CU_TestInfo *tests)
{
    CU_SuiteInfo suites[2];
    unsigned run, failed, fails;

    memset(suites, 0, sizeof suites);
    suites[0].pName = (char *)name;
    suites[0].pTests = tests;
    if (CU_initialize_registry() != CUE_SUCCESS || CU_register_suites(suites) != CUE_SUCCESS)
        die("CUnit: %s", CU_get_error_msg());
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    run = CU_get_number_of_tests_run();
    failed = CU_get_number_of_tests_failed();
    fails = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
    CU_cleanup_registry();
    pw_free_all();
    g_summary_pass = run - failed;
    g_summary_fail = failed;
    return fails || failed ? 1 : 0;
}

static int env_int(const char *name)
{
    const char *v = getenv(name);

    if (v == NULL || atoi(v) <= 0)
        die("%s is not set", name);
    return atoi(v);
}

int main(int argc, char **argv)
{
    uint8_t dummy[MP_SECRET_LEN];
    char *res;
    int rc, i;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 2 || (strcmp(argv[1], "run") != 0 && strcmp(argv[1], "after-rotate") != 0
                      && strcmp(argv[1], "pw-before-rotate") != 0
                      && strcmp(argv[1], "slow-body") != 0)) {
        fprintf(stderr, "usage: broker_client run | pw-before-rotate | after-rotate | slow-body "
                "(MP_BT_PORT, MP_BT_BPORT, MP_BT_DIR; slow-body: MP_BT_SHORT_PORT)\n");
        return 2;
    }
    g_port = env_int("MP_BT_PORT");
    g_bport = env_int("MP_BT_BPORT");
    if ((g_dir = getenv("MP_BT_DIR")) == NULL)
        die("MP_BT_DIR is not set");
    snprintf(g_news_host, sizeof g_news_host, "%s:%d", NEWS, g_port);
    snprintf(g_shop_host, sizeof g_shop_host, "%s:%d", SHOP, g_port);
    snprintf(g_broker_host, sizeof g_broker_host, "%s:%d", BROKER, g_bport);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || (g_easy = curl_easy_init()) == NULL)
        die("curl");
    res = xasprintf("%s:127.0.0.1", g_news_host);
    g_resolve = curl_slist_append(g_resolve, res);
    free(res);
    res = xasprintf("%s:127.0.0.1", g_shop_host);
    g_resolve = curl_slist_append(g_resolve, res);
    free(res);
    res = xasprintf("%s:127.0.0.1", g_broker_host);
    g_resolve = curl_slist_append(g_resolve, res);
    free(res);
    memset(dummy, 0x5a, sizeof dummy);
    if (mp_mac_new(dummy, sizeof dummy, &g_mac) != MP_OK || mp_sha_new(&g_sha) != MP_OK)
        die("crypto");
    load_key(&A_ALICE);
    load_key(&A_BOB);
    load_key(&A_CAROL);
    load_key(&A_NEWS);
    load_key(&A_SHOP);
    load_key(&A_FRANK);
    load_key(&A_GINA);
    if (strcmp(argv[1], "slow-body") == 0) {
        /* erin's own: no wallet, no holdings (run_broker.sh counts her apart) */
        load_key(&A_ERIN);
        rc = run_suites("slow-body", slow_tests);
        printf("\n%u passed, %u failed\n", g_summary_pass, g_summary_fail);
        curl_easy_cleanup(g_easy);
        curl_slist_free_all(g_resolve);
        curl_global_cleanup();
        return rc;
    }
    if (strcmp(argv[1], "run") == 0) {
        res = xasprintf("%s/payword", g_dir);
        unlink(res);                            /* the log starts afresh */
        free(res);
        rc = run_suites("broker", run_tests);
    } else if (strcmp(argv[1], "pw-before-rotate") == 0) {
        wallet_load();
        rc = run_suites("pw-before-rotate", pre_rotate_tests);
    } else {
        wallet_load();
        /* run_broker.sh runs this mode after mpadmin redeem has deposited
         * every spend of the first run (its conservation check "after
         * mpadmin redeem" proved it): only this run's spends are undeposited. */
        for (i = 0; i < g_ncoins; i++)
            if (g_coins[i].kind == K_VENDOR && g_coins[i].spent)
                g_coins[i].deposited = 1;
        rc = run_suites("after-rotate", rotate_tests);
    }
    wallet_save();
    holdings_write();
    printf("\n%u passed, %u failed\n", g_summary_pass, g_summary_fail);
    fflush(stdout);
    curl_easy_cleanup(g_easy);
    curl_slist_free_all(g_resolve);
    curl_global_cleanup();
    return rc;
}
