/*
 * Known-answer vectors: fixed keys, secrets and seeds to the exact bytes of
 * every record (tests/vectors/libmp.txt). The file is the reference other
 * implementations test against; tests/check-vectors.sh re-derives
 * its MACs, hashes and signatures with the openssl command line tool, so
 * the vectors are not merely our code agreeing with itself.
 *
 * Two tests. The first recomputes every entry from the constants below and
 * requires the file to hold exactly the same set of entries. The second
 * reads the file alone: it rebuilds the receipts, the offer, the /exchange
 * payment and the wrapped account key from their input lines through
 * libmp's encoders and compares them with the stored bytes, as an
 * implementer working from the file would. To regenerate after a
 * deliberate format change:
 *   MP_WRITE_VECTORS=tests/vectors/libmp.txt build/release/tests/unit/mp_unit
 */
#include <stdlib.h>
#include <string.h>
#include "tests.h"

#define NOW     1800000000ULL
#define SERIES1 ((uint64_t)1 << 48)
#define MAXV    192

typedef struct { char section[24]; char name[40]; char value[2 * MP_WIRE_MAX + 1]; } entry;
static entry *got;
static size_t ngot;

static void put(const char *section, const char *name, const char *value)
{
    if (ngot == MAXV)
        return;
    snprintf(got[ngot].section, sizeof got[ngot].section, "%s", section);
    snprintf(got[ngot].name, sizeof got[ngot].name, "%s", name);
    snprintf(got[ngot].value, sizeof got[ngot].value, "%s", value);
    ngot++;
}

static void put_hex(const char *section, const char *name, const uint8_t *p, size_t n)
{
    static char h[2 * MP_WIRE_MAX + 1];
    t_hex_encode(p, n, h);
    put(section, name, h);
}

static void put_u64(const char *section, const char *name, uint64_t v)
{
    char b[24];
    snprintf(b, sizeof b, "%llu", (unsigned long long)v);
    put(section, name, b);
}

static void put_b64(const char *section, const char *name, const uint8_t *p, size_t n)
{
    static char t[MP_WIRE_TEXT_MAX + 1];
    if (mp_b64url_encode(p, n, t, sizeof t, NULL) == MP_OK)
        put(section, name, t);
}

static mp_amount amt(const char *s)
{
    mp_amount a;
    memset(&a, 0, sizeof a);
    CU_ASSERT_FATAL(mp_amount_parse(s, strlen(s), &a) == MP_OK);
    return a;
}

/* Computes every vector; returns 0 when all operations succeeded. */
static int compute(void)
{
    static mp_scrip scrip;
    static mp_mc_payment pay;
    static mp_mc_reply reply;
    static mp_pw_cert cert;
    static mp_pw_commit commit;
    static mp_pw_payment pw;
    static mp_pw_redeem red;
    static mp_receipt rc;
    static mp_offer offer;
    static uint8_t rec[MP_WIRE_MAX];
    uint8_t s1[32], s2[32], s3[32], wn[32], csecret[32], w[32], seed[32];
    mp_mc_issuer *iss = NULL;
    mp_mac *mac = NULL, *rkey = NULL;
    mp_chain *ch = NULL;
    mp_pubkey pk;
    mp_amount price = amt("0.002 USD"), value = amt("0.01 USD");
    mp_request req = { "GET", 3, "news.example", 12, "/a/b.html", 9, NULL };
    size_t len;
    int bad = 1;

    memset(s1, 0x11, 32);
    memset(s2, 0x22, 32);
    memset(s3, 0x33, 32);
    memset(wn, 0x77, 32);

    memset(seed, 0xb0, 32);
    put_hex("keys", "broker_ed25519_seed", seed, 32);
    if (mp_signer_pubkey(t_broker_key(), &pk) != MP_OK) goto done;
    put_hex("keys", "broker_ed25519_public", pk.key, pk.len);
    memset(seed, 0x05, 32);
    put_hex("keys", "user_ed25519_seed", seed, 32);
    if (mp_signer_pubkey(t_user_key(), &pk) != MP_OK) goto done;
    put_hex("keys", "user_ed25519_public", pk.key, pk.len);

    /* Millicent */
    put("millicent", "vendor", "news.example");
    put_hex("millicent", "scrip_secret_series_1", s1, 32);
    put_hex("millicent", "customer_master_series_1", s2, 32);
    put_u64("millicent", "scrip_id", SERIES1 | 1);
    put_u64("millicent", "customer_id", SERIES1 | 7);
    put("millicent", "value", "0.01 USD");
    put_u64("millicent", "expiry", NOW + 3600);
    put("millicent", "props", "co=us");
    if (mp_mc_issuer_new("news.example", &iss) != MP_OK
        || mp_mc_issuer_add_scrip_secret(iss, 1, s1, 32, 0) != MP_OK
        || mp_mc_issuer_add_customer_secret(iss, 1, s2, 32) != MP_OK
        || mp_mac_new(s1, 32, &mac) != MP_OK
        || mp_mc_mint(iss, &value, SERIES1 | 1, SERIES1 | 7, NOW + 3600, "co=us", &scrip) != MP_OK
        || mp_scrip_encode(&scrip, rec, sizeof rec, &len) != MP_OK)
        goto done;
    put_hex("millicent", "scrip", rec, len);
    put_b64("millicent", "scrip_base64url", rec, len);
    if (mp_mc_customer_secret(iss, SERIES1 | 7, csecret) != MP_OK) goto done;
    put_hex("millicent", "customer_secret", csecret, 32);
    put("millicent", "request_method", "GET");
    put("millicent", "request_host", "news.example");
    put("millicent", "request_target", "/a/b.html");
    put("millicent", "price", "0.002 USD");
    if (mp_mc_pay(mac, &scrip, csecret, &req, &price, &pay) != MP_OK
        || mp_mc_payment_encode(&pay, rec, sizeof rec, &len) != MP_OK)
        goto done;
    put_hex("millicent", "req_sig", pay.req_sig, 32);
    put_hex("millicent", "payment", rec, len);
    put_u64("millicent", "now", NOW);
    put_u64("millicent", "change_id", SERIES1 | 2);
    if (mp_mc_accept(iss, mac, &pay, &req, &price, NOW, SERIES1 | 2, &reply) != MP_OK
        || mp_mc_reply_encode(&reply, rec, sizeof rec, &len) != MP_OK)
        goto done;
    put_hex("millicent", "reply", rec, len);
    if (mp_scrip_encode(&reply.change, rec, sizeof rec, &len) != MP_OK) goto done;
    put_hex("millicent", "change_scrip", rec, len);

    /* PayWord */
    memset(&cert, 0, sizeof cert);
    strcpy(cert.broker, "broker.example");
    strcpy(cert.user, "alice");
    if (mp_signer_pubkey(t_user_key(), &cert.user_key) != MP_OK) goto done;
    cert.expiry = NOW + 30 * 86400;
    cert.credit_limit = amt("10 USD");
    cert.serial = 9;
    if (mp_pw_cert_sign(&cert, t_broker_key()) != MP_OK
        || mp_pw_cert_encode(&cert, rec, sizeof rec, &len) != MP_OK)
        goto done;
    put("payword", "cert_broker", "broker.example");
    put("payword", "cert_user", "alice");
    put_u64("payword", "cert_expiry", cert.expiry);
    put("payword", "cert_credit_limit", "10 USD");
    put_u64("payword", "cert_serial", 9);
    put_hex("payword", "cert", rec, len);

    put_hex("payword", "chain_wn", wn, 32);
    put_u64("payword", "chain_n", 100);
    if (mp_chain_new(wn, 100, &ch) != MP_OK) goto done;
    mp_chain_w0(ch, w);
    put_hex("payword", "chain_w0", w, 32);
    if (mp_chain_word(ch, 1, w) != MP_OK) goto done;
    put_hex("payword", "chain_w1", w, 32);
    if (mp_chain_word(ch, 3, w) != MP_OK) goto done;
    put_hex("payword", "chain_w3", w, 32);
    if (mp_chain_word(ch, 99, w) != MP_OK) goto done;
    put_hex("payword", "chain_w99", w, 32);

    memset(&commit, 0, sizeof commit);
    strcpy(commit.vendor, "news.example");
    commit.cert = cert;
    mp_chain_w0(ch, commit.w0);
    commit.date = NOW - 10;
    commit.expiry = NOW + 86400;
    commit.unit = amt("0.001 USD");
    commit.n = 100;
    if (mp_pw_commit_sign(&commit, t_user_key()) != MP_OK
        || mp_pw_commit_encode(&commit, rec, sizeof rec, &len) != MP_OK)
        goto done;
    put("payword", "commit_vendor", "news.example");
    put_u64("payword", "commit_date", commit.date);
    put_u64("payword", "commit_expiry", commit.expiry);
    put("payword", "commit_unit", "0.001 USD");
    put_hex("payword", "commitment", rec, len);
    put_hex("payword", "commitment_id", commit.id, 32);

    memset(&pw, 0, sizeof pw);
    memcpy(pw.commit_id, commit.id, 32);
    pw.i = 1;
    pw.k = 1;
    if (mp_chain_word(ch, 1, pw.w) != MP_OK) goto done;
    pw.has_commit = 1;
    pw.commit = commit;
    if (mp_pw_payment_encode(&pw, rec, sizeof rec, &len) != MP_OK) goto done;
    put_hex("payword", "payment_1_first", rec, len);
    pw.i = 3;
    pw.k = 2;
    pw.has_commit = 0;
    if (mp_chain_word(ch, 3, pw.w) != MP_OK
        || mp_pw_payment_encode(&pw, rec, sizeof rec, &len) != MP_OK)
        goto done;
    put_hex("payword", "payment_3_k2", rec, len);
    red.commit = commit;
    red.last = 3;
    memcpy(red.w_last, pw.w, 32);
    if (mp_pw_redeem_encode(&red, rec, sizeof rec, &len) != MP_OK) goto done;
    put_hex("payword", "redeem_3", rec, len);
    /* The request tag a vendor keeps for retries (7.5): it covers the body */
    {
        static const char body[] = "customer=alice&order=1";
        uint8_t digest[32], tag[MP_PW_TAG_LEN];
        mp_request tq = { "POST", 4, "news.example", 12, "/cgi/echo", 9, NULL };
        mp_sha *sh = NULL;

        put("payword", "tag_method", "POST");
        put("payword", "tag_host", "news.example");
        put("payword", "tag_target", "/cgi/echo");
        put("payword", "tag_body", body);
        if (mp_sha256(body, sizeof body - 1, digest) != MP_OK)
            goto done;
        put_hex("payword", "tag_body_digest", digest, 32);
        tq.body_digest = digest;
        if (mp_sha_new(&sh) != MP_OK || mp_request_tag(sh, &tq, tag) != MP_OK) {
            mp_sha_free(sh);
            goto done;
        }
        mp_sha_free(sh);
        put_hex("payword", "request_tag", tag, MP_PW_TAG_LEN);
    }

    /* Receipt and offer: the input fields, then the records */
    put_hex("receipt", "receipt_key", s3, 32);
    put("receipt", "millicent_vendor", "news.example");
    put("receipt", "millicent_target", "/a/b.html");
    put_u64("receipt", "millicent_scheme", MP_SCHEME_MILLICENT);
    put_u64("receipt", "millicent_payer", SERIES1 | 7);
    put("receipt", "millicent_price", "0.002 USD");
    put_u64("receipt", "millicent_issued", NOW);
    put_u64("receipt", "millicent_expiry", NOW + 600);
    memset(&rc, 0, sizeof rc);
    strcpy(rc.vendor, "news.example");
    strcpy(rc.target, "/a/b.html");
    rc.target_len = 9;
    rc.scheme = MP_SCHEME_MILLICENT;
    rc.customer_id = SERIES1 | 7;
    rc.price = price;
    rc.issued = NOW;
    rc.expiry = NOW + 600;
    if (mp_mac_new(s3, 32, &rkey) != MP_OK || mp_receipt_stamp(rkey, &rc) != MP_OK
        || mp_receipt_encode(&rc, rec, sizeof rec, &len) != MP_OK)
        goto done;
    put_hex("receipt", "receipt_millicent", rec, len);
    put("receipt", "payword_vendor", "news.example");
    put("receipt", "payword_target", "/a/b.html");
    put_u64("receipt", "payword_scheme", MP_SCHEME_PAYWORD);
    put_hex("receipt", "payword_payer", commit.id, 32);
    put("receipt", "payword_price", "0.002 USD");
    put_u64("receipt", "payword_issued", NOW);
    put_u64("receipt", "payword_expiry", NOW + 600);
    rc.scheme = MP_SCHEME_PAYWORD;
    rc.customer_id = 0;
    memcpy(rc.commit_id, commit.id, 32);
    if (mp_receipt_stamp(rkey, &rc) != MP_OK || mp_receipt_encode(&rc, rec, sizeof rec, &len) != MP_OK)
        goto done;
    put_hex("receipt", "receipt_payword", rec, len);

    put("offer", "vendor", "news.example");
    put("offer", "method", "GET");
    put("offer", "target", "/a/b.html");
    put("offer", "price", "0.002 USD");
    put_u64("offer", "schemes", MP_SCHEME_MILLICENT | MP_SCHEME_PAYWORD);
    put("offer", "pw_unit", "0.001 USD");
    put("offer", "broker_url", "https://broker.example/mp/");
    put_u64("offer", "receipt_window", 600);
    put_u64("offer", "expiry", NOW + 300);
    memset(&offer, 0, sizeof offer);
    strcpy(offer.vendor, "news.example");
    strcpy(offer.method, "GET");
    strcpy(offer.target, "/a/b.html");
    offer.target_len = 9;
    offer.price = price;
    offer.schemes = MP_SCHEME_MILLICENT | MP_SCHEME_PAYWORD;
    offer.pw_unit = amt("0.001 USD");
    strcpy(offer.broker_url, "https://broker.example/mp/");
    offer.receipt_window = 600;
    offer.expiry = NOW + 300;
    if (mp_offer_encode(&offer, rec, sizeof rec, &len) != MP_OK) goto done;
    put_hex("offer", "offer", rec, len);
    put_b64("offer", "offer_base64url", rec, len);

    /* Broker request signature and account-key wrapping (PROTOCOL.md 8.2) */
    {
        static const char body[] = "{\"request_id\": \"b1\", \"amount\": \"1.00 USD\"}";
        uint8_t akey[32], master[32], bh[32], sig[32], wrapped[32];
        mp_mac *mm = NULL;

        memset(akey, 0x44, 32);
        memset(master, 0x55, 32);
        put_hex("broker", "account_key", akey, 32);
        put("broker", "account", "acct-42");
        put("broker", "method", "POST");
        put("broker", "target", "/mp/buy");
        put_u64("broker", "ts", NOW);
        put("broker", "body", body);
        if (mp_sha256(body, strlen(body), bh) != MP_OK
            || mp_broker_sig(akey, "acct-42", "POST", "/mp/buy", 7, NOW, bh, sig) != MP_OK)
            goto done;
        put_hex("broker", "body_sha256", bh, 32);
        put_hex("broker", "sig", sig, 32);
        put_hex("broker", "account_secret", master, 32);
        if (mp_mac_new(master, 32, &mm) != MP_OK
            || mp_account_key_wrap(mm, "acct-42", akey, wrapped) != MP_OK) {
            mp_mac_free(mm);
            goto done;
        }
        mp_mac_free(mm);
        put_hex("broker", "account_key_wrapped", wrapped, 32);
    }

    /* /exchange (PROTOCOL.md 8.4): broker scrip paid at the broker; req_sig
     * binds POST, the broker's authority (port included) and the target. */
    {
        static const char host[] = "broker.example:8443", target[] = "/mp/exchange";
        mp_request xreq = { "POST", 4, host, sizeof host - 1, target, sizeof target - 1, NULL };
        mp_amount xvalue = amt("0.25 USD"), xprice = amt("0.10 USD");
        uint8_t bs[32], bm[32], bcs[32];
        mp_mc_issuer *bi = NULL;
        mp_scrip bscrip;
        mp_mc_payment xpay;
        mp_status st;

        memset(bs, 0x66, 32);
        memset(bm, 0x88, 32);
        put("broker", "exchange_broker", "broker.example");
        put_hex("broker", "exchange_scrip_secret_series_1", bs, 32);
        put_hex("broker", "exchange_customer_master_series_1", bm, 32);
        put("broker", "exchange_value", "0.25 USD");
        put_u64("broker", "exchange_scrip_id", SERIES1 | 5);
        put_u64("broker", "exchange_customer_id", SERIES1 | 1);
        put_u64("broker", "exchange_expiry", NOW + 86400);
        st = mp_mc_issuer_new("broker.example", &bi);
        if (st == MP_OK)
            st = mp_mc_issuer_add_scrip_secret(bi, 1, bs, 32, 0);
        if (st == MP_OK)
            st = mp_mc_issuer_add_customer_secret(bi, 1, bm, 32);
        if (st == MP_OK)
            st = mp_mc_mint(bi, &xvalue, SERIES1 | 5, SERIES1 | 1, NOW + 86400, NULL, &bscrip);
        if (st == MP_OK)
            st = mp_scrip_encode(&bscrip, rec, sizeof rec, &len);
        if (st == MP_OK)
            put_hex("broker", "exchange_scrip", rec, len);
        if (st == MP_OK)
            st = mp_mc_customer_secret(bi, SERIES1 | 1, bcs);
        mp_mc_issuer_free(bi);
        if (st != MP_OK)
            goto done;
        put_hex("broker", "exchange_customer_secret", bcs, 32);
        put("broker", "exchange_method", "POST");
        put("broker", "exchange_host", host);
        put("broker", "exchange_target", target);
        put("broker", "exchange_price", "0.10 USD");
        st = mp_mc_pay(mac, &bscrip, bcs, &xreq, &xprice, &xpay);
        mp_wipe(bcs, sizeof bcs);
        if (st != MP_OK || mp_mc_payment_encode(&xpay, rec, sizeof rec, &len) != MP_OK)
            goto done;
        put_hex("broker", "exchange_req_sig", xpay.req_sig, 32);
        put_hex("broker", "exchange_payment", rec, len);
    }
    bad = 0;
done:
    mp_wipe(csecret, sizeof csecret);
    mp_chain_free(ch);
    mp_mc_issuer_free(iss);
    mp_mac_free(mac);
    mp_mac_free(rkey);
    return bad;
}

static void write_file(const char *path)
{
    FILE *f = fopen(path, "w");
    const char *sec = "";
    size_t i;

    CU_ASSERT_FATAL(f != NULL);
    fprintf(f, "# libmp known-answer vectors (docs/PROTOCOL.md). name = value;\n"
               "# byte strings in lower-case hex, numbers in decimal, text as is.\n"
               "# Regenerate only after a deliberate wire change (see test_vectors.c).\n");
    for (i = 0; i < ngot; i++) {
        if (strcmp(sec, got[i].section) != 0) {
            sec = got[i].section;
            fprintf(f, "\n[%s]\n", sec);
        }
        fprintf(f, "%s = %s\n", got[i].name, got[i].value);
    }
    fclose(f);
}

/* Reads the vector file (PROTOCOL.md 10) into out (room for MAXV); returns
 * the number of entries, or -1 when the file cannot be read or a line is
 * neither blank, a comment, a [section] nor "name = value". */
static long read_file(entry *out)
{
    static char line[2 * MP_WIRE_MAX + 128];
    char sec[24] = "", *eq, *nl;
    long n = 0;
    FILE *f = fopen(MP_VECTORS_DIR "/libmp.txt", "r");

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if ((nl = strchr(line, '\n')) != NULL)
            *nl = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        if (line[0] == '[') {
            snprintf(sec, sizeof sec, "%.*s", (int)strcspn(line + 1, "]"), line + 1);
            continue;
        }
        if ((eq = strstr(line, " = ")) == NULL || n == MAXV
            || (size_t)(eq - line) >= sizeof out[n].name
            || strlen(eq + 3) >= sizeof out[n].value) {
            fprintf(stderr, "\n  vector line not understood: %.80s\n", line);
            n = -1;
            break;
        }
        *eq = '\0';
        memcpy(out[n].section, sec, sizeof sec);
        memcpy(out[n].name, line, (size_t)(eq - line) + 1);
        memcpy(out[n].value, eq + 3, strlen(eq + 3) + 1);
        n++;
    }
    fclose(f);
    return n;
}

static void test_vectors_match(void)
{
    const char *wr = getenv("MP_WRITE_VECTORS");
    size_t i, j, matched = 0;
    entry *file;
    long nfile;

    got = calloc(MAXV, sizeof *got);
    file = calloc(MAXV, sizeof *file);
    CU_ASSERT_FATAL(got != NULL && file != NULL);
    ngot = 0;
    CU_ASSERT_FATAL(compute() == 0);
    CU_ASSERT(ngot > 40 && ngot < MAXV);
    if (wr != NULL) {
        write_file(wr);
        printf("\n    wrote %zu vectors to %s", ngot, wr);
    }
    nfile = read_file(file);
    CU_ASSERT_FATAL(nfile >= 0);
    for (j = 0; j < (size_t)nfile; j++) {
        for (i = 0; i < ngot; i++) {
            if (strcmp(got[i].section, file[j].section) == 0
                && strcmp(got[i].name, file[j].name) == 0) {
                if (strcmp(got[i].value, file[j].value) == 0)
                    matched++;
                else
                    fprintf(stderr, "\n  vector [%s] %s:\n    file %s\n    computed %s\n",
                            file[j].section, file[j].name, file[j].value, got[i].value);
                break;
            }
        }
        if (i == ngot)
            fprintf(stderr, "\n  vector [%s] %s is in the file but not computed\n",
                    file[j].section, file[j].name);
    }
    CU_ASSERT_EQUAL((size_t)nfile, ngot);
    CU_ASSERT_EQUAL(matched, ngot);
    free(file);
    free(got);
    got = NULL;
}

/* ---- rebuilding records from the file's input lines ------------------------------ */

static entry *fent;
static long nfent;

/* The value of [sec] name in the file; fails the test when it is absent. */
static const char *fv(const char *sec, const char *name)
{
    long i;

    for (i = 0; i < nfent; i++)
        if (strcmp(fent[i].section, sec) == 0 && strcmp(fent[i].name, name) == 0)
            return fent[i].value;
    fprintf(stderr, "\n  vector [%s] %s: missing from the file\n", sec, name);
    CU_FAIL("vector input missing");
    return "";
}

static int fhex(const char *sec, const char *name, uint8_t *out, size_t n)
{
    if (t_hex_decode(fv(sec, name), out, n) != (long)n) {
        fprintf(stderr, "\n  vector [%s] %s: not %zu bytes of hex\n", sec, name, n);
        CU_FAIL("vector input not hex");
        return -1;
    }
    return 0;
}

static uint64_t fu64(const char *sec, const char *name)
{
    const char *v = fv(sec, name);
    char *end = NULL;
    unsigned long long u = strtoull(v, &end, 10);

    if (v[0] < '0' || v[0] > '9' || end == NULL || *end != '\0') {
        fprintf(stderr, "\n  vector [%s] %s: not a decimal number\n", sec, name);
        CU_FAIL("vector input not a number");
        return 0;
    }
    return (uint64_t)u;
}

static mp_amount famt(const char *sec, const char *name)
{
    const char *v = fv(sec, name);
    mp_amount a;

    memset(&a, 0, sizeof a);
    if (mp_amount_parse(v, strlen(v), &a) != MP_OK) {
        fprintf(stderr, "\n  vector [%s] %s: not an amount\n", sec, name);
        CU_FAIL("vector input not an amount");
    }
    return a;
}

/* Copies [sec] name into out (cap bytes with the NUL); returns its length. */
static size_t fstr(const char *sec, const char *name, char *out, size_t cap)
{
    const char *v = fv(sec, name);
    size_t n = strlen(v);

    if (n >= cap) {
        CU_FAIL("vector input too long");
        n = cap - 1;
    }
    memcpy(out, v, n);
    out[n] = '\0';
    return n;
}

/* Compares bytes built from the inputs with the stored output [sec] name. */
static void same(const char *sec, const char *name, const uint8_t *p, size_t n)
{
    static char h[2 * MP_WIRE_MAX + 1];

    t_hex_encode(p, n, h);
    if (strcmp(h, fv(sec, name)) != 0)
        fprintf(stderr, "\n  vector [%s] %s rebuilt from its inputs:\n    file    %s\n"
                "    rebuilt %s\n", sec, name, fv(sec, name), h);
    CU_ASSERT_STRING_EQUAL(h, fv(sec, name));
}

static void rebuild_receipt(mp_mac *key, const char *which)
{
    static uint8_t rec[MP_WIRE_MAX];
    char name[40];
    mp_receipt rc;
    size_t len = 0;

#define RN(field) (snprintf(name, sizeof name, "%s_%s", which, field), name)
    memset(&rc, 0, sizeof rc);
    fstr("receipt", RN("vendor"), rc.vendor, sizeof rc.vendor);
    rc.target_len = fstr("receipt", RN("target"), rc.target, sizeof rc.target);
    rc.scheme = (uint8_t)fu64("receipt", RN("scheme"));
    if (rc.scheme == MP_SCHEME_MILLICENT)
        rc.customer_id = fu64("receipt", RN("payer"));
    else
        (void)fhex("receipt", RN("payer"), rc.commit_id, 32);
    rc.price = famt("receipt", RN("price"));
    rc.issued = fu64("receipt", RN("issued"));
    rc.expiry = fu64("receipt", RN("expiry"));
#undef RN
    MP_ASSERT_OK(mp_receipt_stamp(key, &rc));
    MP_ASSERT_OK(mp_receipt_encode(&rc, rec, sizeof rec, &len));
    snprintf(name, sizeof name, "receipt_%s", which);
    same("receipt", name, rec, len);
}

static void test_vectors_rebuilt(void)
{
    static uint8_t rec[MP_WIRE_MAX];
    static char text[MP_WIRE_TEXT_MAX + 1];
    uint8_t key[32], secret[32], master[32], bh[32], out[32];
    char account[MP_ACCOUNT_MAX + 1], method[MP_METHOD_MAX + 1], host[MP_HOST_MAX + 1];
    char target[MP_TARGET_MAX + 1], issuer[MP_NAME_MAX + 1];
    mp_mac *m = NULL;
    mp_mc_issuer *bi = NULL;
    mp_offer o;
    mp_scrip s;
    mp_amount value, price;
    mp_mc_payment pay;
    mp_mc_reply reply;
    mp_request req;
    size_t len = 0;

    fent = calloc(MAXV, sizeof *fent);
    CU_ASSERT_FATAL(fent != NULL);
    nfent = read_file(fent);
    CU_ASSERT_FATAL(nfent > 0);

    /* [receipt]: the fields and the receipt key give both records */
    if (fhex("receipt", "receipt_key", key, 32) == 0 && mp_mac_new(key, 32, &m) == MP_OK) {
        rebuild_receipt(m, "millicent");
        rebuild_receipt(m, "payword");
    } else {
        CU_FAIL("receipt key");
    }
    mp_mac_free(m);
    m = NULL;

    /* [offer] */
    memset(&o, 0, sizeof o);
    fstr("offer", "vendor", o.vendor, sizeof o.vendor);
    fstr("offer", "method", o.method, sizeof o.method);
    o.target_len = fstr("offer", "target", o.target, sizeof o.target);
    o.price = famt("offer", "price");
    o.schemes = (uint8_t)fu64("offer", "schemes");
    o.pw_unit = famt("offer", "pw_unit");
    fstr("offer", "broker_url", o.broker_url, sizeof o.broker_url);
    o.receipt_window = (uint32_t)fu64("offer", "receipt_window");
    o.expiry = fu64("offer", "expiry");
    MP_ASSERT_OK(mp_offer_encode(&o, rec, sizeof rec, &len));
    same("offer", "offer", rec, len);
    MP_ASSERT_OK(mp_b64url_encode(rec, len, text, sizeof text, NULL));
    CU_ASSERT_STRING_EQUAL(text, fv("offer", "offer_base64url"));

    /* [broker] request signature and the at-rest form of the account key */
    fstr("broker", "account", account, sizeof account);
    fstr("broker", "method", method, sizeof method);
    len = fstr("broker", "target", target, sizeof target);
    if (fhex("broker", "account_key", key, 32) == 0
        && fhex("broker", "account_secret", secret, 32) == 0) {
        MP_ASSERT_OK(mp_sha256(fv("broker", "body"), strlen(fv("broker", "body")), bh));
        same("broker", "body_sha256", bh, 32);
        MP_ASSERT_OK(mp_broker_sig(key, account, method, target, len, fu64("broker", "ts"), bh,
                                   out));
        same("broker", "sig", out, 32);
        MP_ASSERT_OK(mp_mac_new(secret, 32, &m));
        MP_ASSERT_OK(mp_account_key_wrap(m, account, key, out));
        same("broker", "account_key_wrapped", out, 32);
        /* unwrapping is the same operation */
        MP_ASSERT_OK(mp_account_key_wrap(m, account, out, out));
        CU_ASSERT(memcmp(out, key, 32) == 0);
        mp_mac_free(m);
        m = NULL;
    }

    /* [broker] /exchange: the broker scrip from its fields, the customer
     * secret, then the payment bound to POST, the broker's authority and
     * the target; the broker's own check must accept it. */
    fstr("broker", "exchange_broker", issuer, sizeof issuer);
    value = famt("broker", "exchange_value");
    price = famt("broker", "exchange_price");
    memset(&req, 0, sizeof req);
    req.method = method;
    req.method_len = fstr("broker", "exchange_method", method, sizeof method);
    req.host = host;
    req.host_len = fstr("broker", "exchange_host", host, sizeof host);
    req.target = target;
    req.target_len = fstr("broker", "exchange_target", target, sizeof target);
    if (fhex("broker", "exchange_scrip_secret_series_1", secret, 32) == 0
        && fhex("broker", "exchange_customer_master_series_1", master, 32) == 0) {
        MP_ASSERT_OK(mp_mc_issuer_new(issuer, &bi));
        MP_ASSERT_OK(mp_mc_issuer_add_scrip_secret(bi, 1, secret, 32, 0));
        MP_ASSERT_OK(mp_mc_issuer_add_customer_secret(bi, 1, master, 32));
        MP_ASSERT_OK(mp_mc_mint(bi, &value, fu64("broker", "exchange_scrip_id"),
                                fu64("broker", "exchange_customer_id"),
                                fu64("broker", "exchange_expiry"), NULL, &s));
        MP_ASSERT_OK(mp_scrip_encode(&s, rec, sizeof rec, &len));
        same("broker", "exchange_scrip", rec, len);
        MP_ASSERT_OK(mp_mc_customer_secret(bi, s.customer_id, key));
        same("broker", "exchange_customer_secret", key, 32);
        MP_ASSERT_OK(mp_mac_new(secret, 32, &m));
        MP_ASSERT_OK(mp_mc_pay(m, &s, key, &req, &price, &pay));
        same("broker", "exchange_req_sig", pay.req_sig, 32);
        MP_ASSERT_OK(mp_mc_payment_encode(&pay, rec, sizeof rec, &len));
        same("broker", "exchange_payment", rec, len);
        MP_ASSERT_OK(mp_mc_accept(bi, m, &pay, &req, &price, s.expiry - 1,
                                  fu64("broker", "exchange_scrip_id") + 1, &reply));
        /* the authority without its port is another request */
        req.host_len = strcspn(host, ":");
        MP_ASSERT_ST(mp_mc_accept(bi, m, &pay, &req, &price, s.expiry - 1,
                                  fu64("broker", "exchange_scrip_id") + 1, &reply),
                     MP_ERR_FORGED);
        mp_wipe(key, sizeof key);
    }
    mp_mac_free(m);
    mp_mc_issuer_free(bi);
    free(fent);
    fent = NULL;
}

int register_vector_tests(void)
{
    CU_pSuite s = CU_add_suite("vectors", NULL, NULL);

    if (s == NULL
        || CU_add_test(s, "every record matches tests/vectors/libmp.txt", test_vectors_match) == NULL
        || CU_add_test(s, "records rebuilt from the file's input lines", test_vectors_rebuilt) == NULL)
        return -1;
    return 0;
}
