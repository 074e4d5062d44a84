/*
 * Known-answer vectors: fixed keys, secrets and seeds to the exact bytes of
 * every record (tests/vectors/libmp.txt). The file is the reference other
 * implementations test against; tests/check-vectors.sh re-derives
 * its MACs, hashes and signatures with the openssl command line tool, so
 * the vectors are not merely our code agreeing with itself.
 *
 * The test recomputes every entry and requires the file to hold exactly
 * the same set of entries. To regenerate after a deliberate format change:
 *   MP_WRITE_VECTORS=tests/vectors/libmp.txt build/release/tests/unit/mp_unit
 */
#include <stdlib.h>
#include <string.h>
#include "tests.h"

#define NOW     1800000000ULL
#define SERIES1 ((uint64_t)1 << 48)
#define MAXV    128

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
    mp_request req = { "GET", 3, "news.example", 12, "/a/b.html", 9 };
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

    /* Receipt and offer */
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
    put_hex("receipt", "receipt_key", s3, 32);
    put_hex("receipt", "receipt_millicent", rec, len);
    rc.scheme = MP_SCHEME_PAYWORD;
    rc.customer_id = 0;
    memcpy(rc.commit_id, commit.id, 32);
    if (mp_receipt_stamp(rkey, &rc) != MP_OK || mp_receipt_encode(&rc, rec, sizeof rec, &len) != MP_OK)
        goto done;
    put_hex("receipt", "receipt_payword", rec, len);

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

static void test_vectors_match(void)
{
    static char line[2 * MP_WIRE_MAX + 128];
    char sec[24] = "", *eq, *nl;
    const char *path = MP_VECTORS_DIR "/libmp.txt";
    const char *wr = getenv("MP_WRITE_VECTORS");
    size_t i, seen = 0, matched = 0;
    FILE *f;

    got = calloc(MAXV, sizeof *got);
    CU_ASSERT_FATAL(got != NULL);
    ngot = 0;
    CU_ASSERT_FATAL(compute() == 0);
    CU_ASSERT(ngot > 40 && ngot < MAXV);
    if (wr != NULL) {
        write_file(wr);
        printf("\n    wrote %zu vectors to %s", ngot, wr);
    }
    f = fopen(path, "r");
    CU_ASSERT_FATAL(f != NULL);
    while (fgets(line, sizeof line, f) != NULL) {
        if ((nl = strchr(line, '\n')) != NULL)
            *nl = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        if (line[0] == '[') {
            snprintf(sec, sizeof sec, "%.*s", (int)strcspn(line + 1, "]"), line + 1);
            continue;
        }
        if ((eq = strstr(line, " = ")) == NULL) {
            CU_FAIL("vector line without ' = '");
            continue;
        }
        *eq = '\0';
        seen++;
        for (i = 0; i < ngot; i++) {
            if (strcmp(got[i].section, sec) == 0 && strcmp(got[i].name, line) == 0) {
                if (strcmp(got[i].value, eq + 3) == 0)
                    matched++;
                else
                    fprintf(stderr, "\n  vector [%s] %s:\n    file %s\n    computed %s\n",
                            sec, line, eq + 3, got[i].value);
                break;
            }
        }
        if (i == ngot)
            fprintf(stderr, "\n  vector [%s] %s is in the file but not computed\n", sec, line);
    }
    fclose(f);
    CU_ASSERT_EQUAL(seen, ngot);
    CU_ASSERT_EQUAL(matched, ngot);
    free(got);
    got = NULL;
}

int register_vector_tests(void)
{
    CU_pSuite s = CU_add_suite("vectors", NULL, NULL);

    if (s == NULL || CU_add_test(s, "every record matches tests/vectors/libmp.txt", test_vectors_match) == NULL)
        return -1;
    return 0;
}
