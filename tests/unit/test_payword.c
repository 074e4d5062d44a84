/*
 * test_payword.c - PayWord certificates, commitments, payments,
 * acceptance, redemption and the decoders' refusals.
 */
#include <stdlib.h>
#include <string.h>
#include "tests.h"

#define NOW        1700000000ULL
#define CERT_EXP   (NOW + 30 * 86400ULL)
#define COMMIT_EXP (NOW + 86400ULL)
#define UNIT       100ULL          /* 0.001 USD per word */
#define LIMIT      1000000ULL      /* 10 USD */
#define N          20u

/* Big records live here rather than on the stack. */
static mp_pw_cert g_cert;
static mp_pw_commit g_commit, g_commit2;
static mp_pw_payment g_pay, g_pay2;
static mp_pw_redeem g_red, g_red2;
static uint8_t g_buf[MP_WIRE_MAX + 16];
static uint8_t g_words[N + 1][MP_HASH_LEN];

static void set_amount(mp_amount *a, uint64_t units, const char *cur)
{
    a->units = units;
    memcpy(a->cur, cur, 4);
}

static void fill_cert(mp_pw_cert *c, const char *broker, mp_signer *user,
                      uint64_t expiry, uint64_t limit)
{
    memset(c, 0, sizeof *c);
    strcpy(c->broker, broker);
    strcpy(c->user, "alice@example.org");
    CU_ASSERT_EQUAL_FATAL(mp_signer_pubkey(user, &c->user_key), MP_OK);
    c->expiry = expiry;
    set_amount(&c->credit_limit, limit, "USD");
    c->serial = 42;
}

static void make_cert(mp_pw_cert *c, const char *broker, mp_signer *bk,
                      uint64_t expiry, uint64_t limit)
{
    fill_cert(c, broker, t_user_key(), expiry, limit);
    MP_ASSERT_OK(mp_pw_cert_sign(c, bk));
}

static void make_trust(mp_pw_trust *t, const char *name, mp_signer *key)
{
    memset(t, 0, sizeof *t);
    t->n = 1;
    strcpy(t->b[0].name, name);
    CU_ASSERT_EQUAL_FATAL(mp_signer_pubkey(key, &t->b[0].key), MP_OK);
}

/* The chain behind every commitment: w_n fixed, w_{i-1} = H(w_i). */
static void make_words(void)
{
    uint64_t state = 77;
    uint32_t i;
    size_t k;

    for (k = 0; k < MP_HASH_LEN; k++)
        g_words[N][k] = (uint8_t)t_rand(&state);
    for (i = N; i > 0; i--)
        CU_ASSERT_EQUAL_FATAL(mp_sha256(g_words[i], MP_HASH_LEN, g_words[i - 1]), MP_OK);
}

static void fill_commit(mp_pw_commit *c, const mp_pw_cert *cert, uint64_t date,
                        uint64_t expiry, uint64_t unit, const char *cur, uint32_t n)
{
    memset(c, 0, sizeof *c);
    strcpy(c->vendor, "news.example");
    c->cert = *cert;
    memcpy(c->w0, g_words[0], MP_HASH_LEN);
    c->date = date;
    c->expiry = expiry;
    set_amount(&c->unit, unit, cur);
    c->n = n;
}

/* A valid, trusted cert in g_cert and a commitment over g_words in c. */
static void make_commit(mp_pw_commit *c, mp_pw_trust *trust)
{
    make_words();
    make_cert(&g_cert, "broker.example", t_broker_key(), CERT_EXP, LIMIT);
    make_trust(trust, "broker.example", t_broker_key());
    fill_commit(c, &g_cert, NOW, COMMIT_EXP, UNIT, "USD", N);
    MP_ASSERT_OK(mp_pw_commit_sign(c, t_user_key()));
}

/* Every proper prefix of a record must fail as truncated. */
typedef mp_status (*decode_fn)(const uint8_t *in, size_t len);

static mp_status dec_cert(const uint8_t *in, size_t len)
{
    static mp_pw_cert c;
    return mp_pw_cert_decode(in, len, &c);
}

static mp_status dec_commit(const uint8_t *in, size_t len)
{
    static mp_pw_commit c;
    return mp_pw_commit_decode(in, len, &c);
}

static mp_status dec_payment(const uint8_t *in, size_t len)
{
    static mp_pw_payment p;
    return mp_pw_payment_decode(in, len, &p);
}

static mp_status dec_redeem(const uint8_t *in, size_t len)
{
    static mp_pw_redeem r;
    return mp_pw_redeem_decode(in, len, &r);
}

static void check_framing(decode_fn dec, const uint8_t *enc, size_t len, uint8_t type)
{
    static uint8_t copy[MP_WIRE_MAX + 1];
    size_t l, bad = 0;

    CU_ASSERT_FATAL(len < sizeof copy);
    MP_ASSERT_OK(dec(enc, len));
    for (l = 0; l < len; l++) {
        mp_status st = dec(enc, l);
        if (st != MP_ERR_TRUNCATED) {
            if (bad++ == 0)
                fprintf(stderr, "\n  prefix %zu of %zu: %s\n", l, len, mp_strerror(st));
        }
    }
    CU_ASSERT_EQUAL(bad, 0);

    memcpy(copy, enc, len);
    copy[len] = 0;
    MP_ASSERT_ST(dec(copy, len + 1), MP_ERR_TRAILING);
    copy[0] = MP_WIRE_VERSION + 1;
    MP_ASSERT_ST(dec(copy, len), MP_ERR_VERSION);
    copy[0] = MP_WIRE_VERSION;
    copy[1] = type == MP_T_PW_CERT ? MP_T_PW_COMMIT : MP_T_PW_CERT;
    MP_ASSERT_ST(dec(copy, len), MP_ERR_TYPE);
    MP_ASSERT_ST(dec(NULL, len), MP_ERR_ARG);
}

/* ---- certificates ---------------------------------------------------------- */

static void check_cert_roundtrip(const mp_pw_cert *c)
{
    static mp_pw_cert d;
    uint8_t small[16];
    size_t len = 0;

    MP_ASSERT_OK(mp_pw_cert_encode(c, g_buf, sizeof g_buf, &len));
    CU_ASSERT_EQUAL(len, c->enc_len);
    CU_ASSERT(len <= MP_PW_CERT_MAX);
    MP_ASSERT_ST(mp_pw_cert_encode(c, small, sizeof small, &len), MP_ERR_BUFFER);
    MP_ASSERT_OK(mp_pw_cert_decode(g_buf, c->enc_len, &d));
    CU_ASSERT_STRING_EQUAL(d.broker, c->broker);
    CU_ASSERT_STRING_EQUAL(d.user, c->user);
    CU_ASSERT_EQUAL(d.user_key.alg, c->user_key.alg);
    CU_ASSERT_EQUAL(d.user_key.len, c->user_key.len);
    CU_ASSERT(memcmp(d.user_key.key, c->user_key.key, c->user_key.len) == 0);
    CU_ASSERT_EQUAL(d.expiry, c->expiry);
    CU_ASSERT_EQUAL(d.credit_limit.units, c->credit_limit.units);
    CU_ASSERT_STRING_EQUAL(d.credit_limit.cur, c->credit_limit.cur);
    CU_ASSERT_EQUAL(d.serial, c->serial);
    CU_ASSERT_EQUAL(d.sig_len, c->sig_len);
    CU_ASSERT(memcmp(d.sig, c->sig, c->sig_len) == 0);
    CU_ASSERT_EQUAL(d.signed_len, c->signed_len);
    CU_ASSERT_EQUAL(d.enc_len, c->enc_len);
    CU_ASSERT_EQUAL((size_t)d.signed_len + 2 + d.sig_len, d.enc_len);
}

static void test_cert_ed25519(void)
{
    static mp_pw_cert d;
    mp_pw_trust trust;
    size_t len = 0;

    make_cert(&g_cert, "broker.example", t_broker_key(), CERT_EXP, LIMIT);
    CU_ASSERT_EQUAL(g_cert.sig_len, MP_ED25519_SIG_LEN);
    make_trust(&trust, "broker.example", t_broker_key());
    MP_ASSERT_OK(mp_pw_cert_verify(&g_cert, &trust, NOW));
    check_cert_roundtrip(&g_cert);
    MP_ASSERT_OK(mp_pw_cert_decode(g_cert.enc, g_cert.enc_len, &d));
    MP_ASSERT_OK(mp_pw_cert_verify(&d, &trust, NOW));
    check_framing(dec_cert, g_cert.enc, g_cert.enc_len, MP_T_PW_CERT);

    /* A flipped bit anywhere in the signed part breaks the signature. */
    memcpy(g_buf, g_cert.enc, g_cert.enc_len);
    g_buf[g_cert.enc_len - 2 - 64 - 1] ^= 1;   /* last byte of the serial */
    MP_ASSERT_OK(mp_pw_cert_decode(g_buf, g_cert.enc_len, &d));
    MP_ASSERT_ST(mp_pw_cert_verify(&d, &trust, NOW), MP_ERR_FORGED);
    MP_ASSERT_OK(mp_pw_cert_encode(&g_cert, g_buf, sizeof g_buf, &len));
    g_buf[len - 1] ^= 1;                        /* the signature itself */
    MP_ASSERT_OK(mp_pw_cert_decode(g_buf, len, &d));
    MP_ASSERT_ST(mp_pw_cert_verify(&d, &trust, NOW), MP_ERR_FORGED);
}

static void test_cert_rsa(void)
{
    static mp_pw_cert d;
    mp_pw_trust trust;

    make_cert(&g_cert, "rsa-broker", t_rsa_broker_key(), CERT_EXP, LIMIT);
    CU_ASSERT_EQUAL(g_cert.sig_len, 256);
    make_trust(&trust, "rsa-broker", t_rsa_broker_key());
    MP_ASSERT_OK(mp_pw_cert_verify(&g_cert, &trust, NOW));
    check_cert_roundtrip(&g_cert);
    MP_ASSERT_OK(mp_pw_cert_decode(g_cert.enc, g_cert.enc_len, &d));
    MP_ASSERT_OK(mp_pw_cert_verify(&d, &trust, NOW));

    /* An RSA user key travels as DER and is checked as usable. */
    fill_cert(&g_cert, "broker.example", t_rsa_broker_key(), CERT_EXP, LIMIT);
    CU_ASSERT_EQUAL(g_cert.user_key.alg, MP_KEY_RSA);
    MP_ASSERT_OK(mp_pw_cert_sign(&g_cert, t_broker_key()));
    make_trust(&trust, "broker.example", t_broker_key());
    MP_ASSERT_OK(mp_pw_cert_verify(&g_cert, &trust, NOW));
    check_framing(dec_cert, g_cert.enc, g_cert.enc_len, MP_T_PW_CERT);
}

static void test_cert_trust(void)
{
    mp_pw_trust trust;

    make_cert(&g_cert, "broker.example", t_broker_key(), CERT_EXP, LIMIT);

    make_trust(&trust, "other-broker", t_broker_key());
    MP_ASSERT_ST(mp_pw_cert_verify(&g_cert, &trust, NOW), MP_ERR_UNTRUSTED);
    trust.n = 0;
    MP_ASSERT_ST(mp_pw_cert_verify(&g_cert, &trust, NOW), MP_ERR_UNTRUSTED);

    /* The right name with another key is a forgery, not a stranger. */
    make_trust(&trust, "broker.example", t_user_key());
    MP_ASSERT_ST(mp_pw_cert_verify(&g_cert, &trust, NOW), MP_ERR_FORGED);
    make_trust(&trust, "broker.example", t_rsa_broker_key());
    MP_ASSERT_ST(mp_pw_cert_verify(&g_cert, &trust, NOW), MP_ERR_FORGED);

    /* Rotation: old and new key under one name, either entry matches. */
    trust.n = 2;
    strcpy(trust.b[1].name, "broker.example");
    MP_ASSERT_OK(mp_signer_pubkey(t_broker_key(), &trust.b[1].key));
    MP_ASSERT_OK(mp_pw_cert_verify(&g_cert, &trust, NOW));

    trust.n = MP_PW_TRUST_MAX + 1;
    MP_ASSERT_ST(mp_pw_cert_verify(&g_cert, &trust, NOW), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pw_cert_verify(NULL, &trust, NOW), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pw_cert_verify(&g_cert, NULL, NOW), MP_ERR_ARG);
}

static void test_cert_expiry_and_key(void)
{
    mp_pw_trust trust;

    make_trust(&trust, "broker.example", t_broker_key());
    make_cert(&g_cert, "broker.example", t_broker_key(), NOW, LIMIT);
    MP_ASSERT_ST(mp_pw_cert_verify(&g_cert, &trust, NOW), MP_ERR_EXPIRED);
    MP_ASSERT_ST(mp_pw_cert_verify(&g_cert, &trust, NOW + 1000), MP_ERR_EXPIRED);
    MP_ASSERT_OK(mp_pw_cert_verify(&g_cert, &trust, NOW - 1));

    /* Well-formed on the wire but not a usable RSA key. */
    fill_cert(&g_cert, "broker.example", t_user_key(), CERT_EXP, LIMIT);
    g_cert.user_key.alg = MP_KEY_RSA;
    g_cert.user_key.len = 5;
    memcpy(g_cert.user_key.key, "\x30\x03\x02\x01\x01", 5);
    MP_ASSERT_OK(mp_pw_cert_sign(&g_cert, t_broker_key()));
    MP_ASSERT_ST(mp_pw_cert_verify(&g_cert, &trust, NOW), MP_ERR_KEY);
}

static void test_cert_sign_args(void)
{
    static mp_pw_cert c;
    size_t len;

    fill_cert(&c, "broker.example", t_user_key(), CERT_EXP, LIMIT);
    MP_ASSERT_ST(mp_pw_cert_encode(&c, g_buf, sizeof g_buf, &len), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pw_cert_sign(&c, NULL), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pw_cert_sign(NULL, t_broker_key()), MP_ERR_ARG);

    strcpy(c.broker, "");
    MP_ASSERT_ST(mp_pw_cert_sign(&c, t_broker_key()), MP_ERR_ARG);
    strcpy(c.broker, "two words");
    MP_ASSERT_ST(mp_pw_cert_sign(&c, t_broker_key()), MP_ERR_ARG);
    memset(c.broker, 'b', MP_NAME_MAX);
    c.broker[MP_NAME_MAX] = '\0';
    MP_ASSERT_OK(mp_pw_cert_sign(&c, t_broker_key()));    /* 64 is fine */
    c.broker[MP_NAME_MAX] = 'b';                          /* no NUL within 65 */
    MP_ASSERT_ST(mp_pw_cert_sign(&c, t_broker_key()), MP_ERR_ARG);
    strcpy(c.broker, "broker.example");
    strcpy(c.user, "caf\xc3\xa9");
    MP_ASSERT_ST(mp_pw_cert_sign(&c, t_broker_key()), MP_ERR_ARG);
    strcpy(c.user, "alice");

    c.user_key.len = 31;
    MP_ASSERT_ST(mp_pw_cert_sign(&c, t_broker_key()), MP_ERR_ARG);
    c.user_key.len = 32;
    c.user_key.alg = 3;
    MP_ASSERT_ST(mp_pw_cert_sign(&c, t_broker_key()), MP_ERR_ARG);
    c.user_key.alg = MP_KEY_RSA;
    c.user_key.len = MP_PUBKEY_MAX + 1;
    MP_ASSERT_ST(mp_pw_cert_sign(&c, t_broker_key()), MP_ERR_ARG);
    c.user_key.alg = MP_KEY_ED25519;
    c.user_key.len = 32;

    set_amount(&c.credit_limit, LIMIT, "usd");
    MP_ASSERT_ST(mp_pw_cert_sign(&c, t_broker_key()), MP_ERR_ARG);
    set_amount(&c.credit_limit, MP_AMOUNT_MAX + 1, "USD");
    MP_ASSERT_ST(mp_pw_cert_sign(&c, t_broker_key()), MP_ERR_ARG);
    set_amount(&c.credit_limit, LIMIT, "USD");
    c.enc_len = 0;
    MP_ASSERT_OK(mp_pw_cert_sign(&c, t_broker_key()));
    CU_ASSERT(c.enc_len > 0);
}

/* A certificate record built field by field, to reach shapes that sign
 * refuses to produce. */
static size_t raw_cert(uint8_t *buf, size_t cap, uint8_t alg, size_t key_len, size_t sig_len)
{
    static uint8_t junk[MP_PUBKEY_MAX + MP_SIG_MAX + 2];
    mp_amount lim;
    mp_wbuf w;

    memset(junk, 0x5a, sizeof junk);
    set_amount(&lim, LIMIT, "USD");
    mp_w_init(&w, buf, cap);
    mp_w_header(&w, MP_T_PW_CERT);
    mp_w_str8(&w, "broker.example");
    mp_w_str8(&w, "alice");
    mp_w_u8(&w, alg);
    mp_w_blob16(&w, junk, key_len);
    mp_w_u64(&w, CERT_EXP);
    mp_w_amount(&w, &lim);
    mp_w_u64(&w, 1);
    mp_w_blob16(&w, junk, sig_len);
    CU_ASSERT_EQUAL(w.err, MP_OK);
    return w.len;
}

static void test_cert_decode_refusals(void)
{
    static mp_pw_cert d;
    size_t len, alg_off;

    len = raw_cert(g_buf, sizeof g_buf, 1, 32, 64);
    MP_ASSERT_OK(mp_pw_cert_decode(g_buf, len, &d));
    len = raw_cert(g_buf, sizeof g_buf, 1, 31, 64);
    MP_ASSERT_ST(mp_pw_cert_decode(g_buf, len, &d), MP_ERR_MALFORMED);
    len = raw_cert(g_buf, sizeof g_buf, 1, 33, 64);
    MP_ASSERT_ST(mp_pw_cert_decode(g_buf, len, &d), MP_ERR_MALFORMED);
    len = raw_cert(g_buf, sizeof g_buf, 2, 300, 256);
    MP_ASSERT_OK(mp_pw_cert_decode(g_buf, len, &d));
    len = raw_cert(g_buf, sizeof g_buf, 2, MP_PUBKEY_MAX + 1, 256);
    MP_ASSERT_ST(mp_pw_cert_decode(g_buf, len, &d), MP_ERR_TOO_LARGE);
    len = raw_cert(g_buf, sizeof g_buf, 1, 32, 0);
    MP_ASSERT_ST(mp_pw_cert_decode(g_buf, len, &d), MP_ERR_MALFORMED);
    len = raw_cert(g_buf, sizeof g_buf, 1, 32, MP_SIG_MAX);
    MP_ASSERT_OK(mp_pw_cert_decode(g_buf, len, &d));
    len = raw_cert(g_buf, sizeof g_buf, 1, 32, MP_SIG_MAX + 1);
    MP_ASSERT_ST(mp_pw_cert_decode(g_buf, len, &d), MP_ERR_TOO_LARGE);

    /* Algorithm byte of a signed cert: only 1 and 2 exist. */
    make_cert(&g_cert, "broker.example", t_broker_key(), CERT_EXP, LIMIT);
    alg_off = 2 + 1 + strlen(g_cert.broker) + 1 + strlen(g_cert.user);
    CU_ASSERT_EQUAL(g_cert.enc[alg_off], MP_KEY_ED25519);
    memcpy(g_buf, g_cert.enc, g_cert.enc_len);
    g_buf[alg_off] = 0;
    MP_ASSERT_ST(mp_pw_cert_decode(g_buf, g_cert.enc_len, &d), MP_ERR_MALFORMED);
    g_buf[alg_off] = 3;
    MP_ASSERT_ST(mp_pw_cert_decode(g_buf, g_cert.enc_len, &d), MP_ERR_MALFORMED);
    g_buf[alg_off] = MP_KEY_RSA;        /* 32 bytes of "DER" decode, then fail as a key */
    MP_ASSERT_OK(mp_pw_cert_decode(g_buf, g_cert.enc_len, &d));
    MP_ASSERT_ST(mp_pw_cert_decode(g_buf, MP_PW_CERT_MAX + 1, &d), MP_ERR_TOO_LARGE);

    /* Failed decodes leave the output alone. */
    memset(&d, 0xa5, sizeof d);
    g_buf[alg_off] = 9;
    MP_ASSERT_ST(mp_pw_cert_decode(g_buf, g_cert.enc_len, &d), MP_ERR_MALFORMED);
    CU_ASSERT_EQUAL(d.enc_len, 0xa5a5);
}

/* ---- commitments ----------------------------------------------------------- */

static void test_commit_roundtrip(void)
{
    static mp_pw_commit d;
    mp_pw_trust trust;
    uint8_t id[MP_HASH_LEN];
    size_t len = 0;

    make_commit(&g_commit, &trust);
    MP_ASSERT_OK(mp_pw_commit_verify(&g_commit, &trust, "news.example", NOW));
    MP_ASSERT_OK(mp_sha256(g_commit.enc, g_commit.enc_len, id));
    CU_ASSERT(memcmp(id, g_commit.id, MP_HASH_LEN) == 0);

    MP_ASSERT_OK(mp_pw_commit_encode(&g_commit, g_buf, sizeof g_buf, &len));
    CU_ASSERT_EQUAL(len, g_commit.enc_len);
    MP_ASSERT_ST(mp_pw_commit_encode(&g_commit, g_buf, len - 1, &len), MP_ERR_BUFFER);
    MP_ASSERT_OK(mp_pw_commit_decode(g_commit.enc, g_commit.enc_len, &d));
    CU_ASSERT_STRING_EQUAL(d.vendor, "news.example");
    CU_ASSERT_EQUAL(d.cert.enc_len, g_cert.enc_len);
    CU_ASSERT(memcmp(d.cert.enc, g_cert.enc, g_cert.enc_len) == 0);
    CU_ASSERT_STRING_EQUAL(d.cert.user, g_cert.user);
    CU_ASSERT(memcmp(d.w0, g_words[0], MP_HASH_LEN) == 0);
    CU_ASSERT_EQUAL(d.date, NOW);
    CU_ASSERT_EQUAL(d.expiry, COMMIT_EXP);
    CU_ASSERT_EQUAL(d.unit.units, UNIT);
    CU_ASSERT_STRING_EQUAL(d.unit.cur, "USD");
    CU_ASSERT_EQUAL(d.n, N);
    CU_ASSERT(memcmp(d.id, g_commit.id, MP_HASH_LEN) == 0);
    CU_ASSERT_EQUAL(d.signed_len, g_commit.signed_len);
    MP_ASSERT_OK(mp_pw_commit_verify(&d, &trust, "news.example", NOW));
    check_framing(dec_commit, g_commit.enc, g_commit.enc_len, MP_T_PW_COMMIT);

    /* An RSA user with an RSA-signed cert: the largest common shape. */
    fill_cert(&g_cert, "rsa-broker", t_rsa_broker_key(), CERT_EXP, LIMIT);
    MP_ASSERT_OK(mp_pw_cert_sign(&g_cert, t_rsa_broker_key()));
    make_trust(&trust, "rsa-broker", t_rsa_broker_key());
    fill_commit(&g_commit2, &g_cert, NOW, COMMIT_EXP, UNIT, "USD", N);
    MP_ASSERT_OK(mp_pw_commit_sign(&g_commit2, t_rsa_broker_key()));
    MP_ASSERT_OK(mp_pw_commit_verify(&g_commit2, &trust, "news.example", NOW));
    MP_ASSERT_OK(mp_pw_commit_decode(g_commit2.enc, g_commit2.enc_len, &d));
    MP_ASSERT_OK(mp_pw_commit_verify(&d, &trust, "news.example", NOW));
}

static void test_commit_checks(void)
{
    mp_pw_trust trust, other;

    make_commit(&g_commit, &trust);
    MP_ASSERT_ST(mp_pw_commit_verify(&g_commit, &trust, "other.example", NOW),
                 MP_ERR_WRONG_VENDOR);
    MP_ASSERT_ST(mp_pw_commit_verify(&g_commit, &trust, NULL, NOW), MP_ERR_ARG);
    /* vendor is checked before the cert */
    make_trust(&other, "nobody", t_broker_key());
    MP_ASSERT_ST(mp_pw_commit_verify(&g_commit, &other, "other.example", NOW),
                 MP_ERR_WRONG_VENDOR);
    MP_ASSERT_ST(mp_pw_commit_verify(&g_commit, &other, "news.example", NOW),
                 MP_ERR_UNTRUSTED);

    /* expiry */
    MP_ASSERT_OK(mp_pw_commit_verify(&g_commit, &trust, "news.example", COMMIT_EXP - 1));
    MP_ASSERT_ST(mp_pw_commit_verify(&g_commit, &trust, "news.example", COMMIT_EXP),
                 MP_ERR_EXPIRED);
    MP_ASSERT_ST(mp_pw_commit_verify(&g_commit, &trust, "news.example", CERT_EXP),
                 MP_ERR_EXPIRED);

    /* a commitment outliving its cert, or ending before it starts */
    fill_commit(&g_commit2, &g_cert, NOW, CERT_EXP + 1, UNIT, "USD", N);
    MP_ASSERT_OK(mp_pw_commit_sign(&g_commit2, t_user_key()));
    MP_ASSERT_ST(mp_pw_commit_verify(&g_commit2, &trust, "news.example", NOW),
                 MP_ERR_MALFORMED);
    fill_commit(&g_commit2, &g_cert, NOW, CERT_EXP, UNIT, "USD", N);
    MP_ASSERT_OK(mp_pw_commit_sign(&g_commit2, t_user_key()));
    MP_ASSERT_OK(mp_pw_commit_verify(&g_commit2, &trust, "news.example", NOW));
    fill_commit(&g_commit2, &g_cert, NOW, NOW, UNIT, "USD", N);
    MP_ASSERT_OK(mp_pw_commit_sign(&g_commit2, t_user_key()));
    MP_ASSERT_ST(mp_pw_commit_verify(&g_commit2, &trust, "news.example", NOW - 10),
                 MP_ERR_MALFORMED);

    /* dated in the future: tolerated up to MP_PW_SKEW */
    fill_commit(&g_commit2, &g_cert, NOW + MP_PW_SKEW, COMMIT_EXP, UNIT, "USD", N);
    MP_ASSERT_OK(mp_pw_commit_sign(&g_commit2, t_user_key()));
    MP_ASSERT_OK(mp_pw_commit_verify(&g_commit2, &trust, "news.example", NOW));
    fill_commit(&g_commit2, &g_cert, NOW + MP_PW_SKEW + 1, COMMIT_EXP, UNIT, "USD", N);
    MP_ASSERT_OK(mp_pw_commit_sign(&g_commit2, t_user_key()));
    MP_ASSERT_ST(mp_pw_commit_verify(&g_commit2, &trust, "news.example", NOW),
                 MP_ERR_EXPIRED);
    MP_ASSERT_OK(mp_pw_commit_verify(&g_commit2, &trust, "news.example", NOW + 1));
}

static void test_commit_money(void)
{
    mp_pw_trust trust;

    make_commit(&g_commit, &trust);
    /* exactly the credit limit */
    fill_commit(&g_commit2, &g_cert, NOW, COMMIT_EXP, LIMIT / 1000, "USD", 1000);
    MP_ASSERT_OK(mp_pw_commit_sign(&g_commit2, t_user_key()));
    MP_ASSERT_OK(mp_pw_commit_verify(&g_commit2, &trust, "news.example", NOW));
    /* one unit over */
    fill_commit(&g_commit2, &g_cert, NOW, COMMIT_EXP, LIMIT / 1000, "USD", 1001);
    MP_ASSERT_OK(mp_pw_commit_sign(&g_commit2, t_user_key()));
    MP_ASSERT_ST(mp_pw_commit_verify(&g_commit2, &trust, "news.example", NOW),
                 MP_ERR_CREDIT);
    /* n * unit beyond MP_AMOUNT_MAX */
    fill_commit(&g_commit2, &g_cert, NOW, COMMIT_EXP, MP_AMOUNT_MAX, "USD", 2);
    MP_ASSERT_OK(mp_pw_commit_sign(&g_commit2, t_user_key()));
    MP_ASSERT_ST(mp_pw_commit_verify(&g_commit2, &trust, "news.example", NOW),
                 MP_ERR_CREDIT);
    /* unit in another currency than the credit limit */
    fill_commit(&g_commit2, &g_cert, NOW, COMMIT_EXP, UNIT, "EUR", N);
    MP_ASSERT_OK(mp_pw_commit_sign(&g_commit2, t_user_key()));
    MP_ASSERT_ST(mp_pw_commit_verify(&g_commit2, &trust, "news.example", NOW),
                 MP_ERR_CURRENCY);
}

static void test_commit_forged(void)
{
    static mp_pw_commit d;
    mp_pw_trust trust;

    make_commit(&g_commit, &trust);
    /* signed by someone other than the certified user */
    fill_commit(&g_commit2, &g_cert, NOW, COMMIT_EXP, UNIT, "USD", N);
    MP_ASSERT_OK(mp_pw_commit_sign(&g_commit2, t_broker_key()));
    MP_ASSERT_ST(mp_pw_commit_verify(&g_commit2, &trust, "news.example", NOW),
                 MP_ERR_FORGED);

    /* a different w0 under the original signature */
    memcpy(g_buf, g_commit.enc, g_commit.enc_len);
    g_buf[g_commit.signed_len - 4 - 11 - 16 - 1] ^= 0x80;   /* last byte of w0 */
    MP_ASSERT_OK(mp_pw_commit_decode(g_buf, g_commit.enc_len, &d));
    CU_ASSERT(memcmp(d.w0, g_commit.w0, MP_HASH_LEN) != 0);
    MP_ASSERT_ST(mp_pw_commit_verify(&d, &trust, "news.example", NOW), MP_ERR_FORGED);

    /* a commitment under an expired cert */
    make_cert(&g_cert, "broker.example", t_broker_key(), NOW, LIMIT);
    fill_commit(&g_commit2, &g_cert, NOW - 100, NOW, UNIT, "USD", N);
    MP_ASSERT_OK(mp_pw_commit_sign(&g_commit2, t_user_key()));
    MP_ASSERT_ST(mp_pw_commit_verify(&g_commit2, &trust, "news.example", NOW),
                 MP_ERR_EXPIRED);
}

static void test_commit_sign_args(void)
{
    mp_pw_trust trust;
    size_t len;

    make_commit(&g_commit, &trust);
    fill_commit(&g_commit2, &g_cert, NOW, COMMIT_EXP, UNIT, "USD", N);
    MP_ASSERT_ST(mp_pw_commit_encode(&g_commit2, g_buf, sizeof g_buf, &len), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pw_commit_verify(&g_commit2, &trust, "news.example", NOW), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pw_commit_sign(&g_commit2, NULL), MP_ERR_ARG);

    g_commit2.unit.units = 0;
    MP_ASSERT_ST(mp_pw_commit_sign(&g_commit2, t_user_key()), MP_ERR_ARG);
    g_commit2.unit.units = UNIT;
    g_commit2.n = 0;
    MP_ASSERT_ST(mp_pw_commit_sign(&g_commit2, t_user_key()), MP_ERR_ARG);
    g_commit2.n = MP_CHAIN_MAX + 1;
    MP_ASSERT_ST(mp_pw_commit_sign(&g_commit2, t_user_key()), MP_ERR_ARG);
    g_commit2.n = MP_CHAIN_MAX;
    strcpy(g_commit2.vendor, "");
    MP_ASSERT_ST(mp_pw_commit_sign(&g_commit2, t_user_key()), MP_ERR_ARG);
    strcpy(g_commit2.vendor, "news.example");
    strcpy(g_commit2.unit.cur, "US");
    MP_ASSERT_ST(mp_pw_commit_sign(&g_commit2, t_user_key()), MP_ERR_ARG);
    strcpy(g_commit2.unit.cur, "USD");

    /* the cert must be signed, and its stored bytes must decode */
    g_commit2.cert.enc_len = 0;
    MP_ASSERT_ST(mp_pw_commit_sign(&g_commit2, t_user_key()), MP_ERR_ARG);
    g_commit2.cert.enc_len = (uint16_t)(g_cert.enc_len + 1);
    g_commit2.cert.enc[g_cert.enc_len] = 0;
    MP_ASSERT_ST(mp_pw_commit_sign(&g_commit2, t_user_key()), MP_ERR_ARG);
    g_commit2.cert.enc_len = g_cert.enc_len;
    MP_ASSERT_OK(mp_pw_commit_sign(&g_commit2, t_user_key()));
    CU_ASSERT(g_commit2.enc_len <= MP_PW_COMMIT_MAX);
}

static void test_commit_decode_refusals(void)
{
    static mp_pw_commit d;
    mp_pw_trust trust;
    size_t n_off, unit_off;

    make_commit(&g_commit, &trust);
    n_off = g_commit.signed_len - 4u;
    unit_off = n_off - 8u;                 /* the units of the amount */

    memcpy(g_buf, g_commit.enc, g_commit.enc_len);
    memset(g_buf + n_off, 0, 4);
    MP_ASSERT_ST(mp_pw_commit_decode(g_buf, g_commit.enc_len, &d), MP_ERR_MALFORMED);
    g_buf[n_off + 1] = 0x0f;               /* 0x000f4241 = MP_CHAIN_MAX + 1 */
    g_buf[n_off + 2] = 0x42;
    g_buf[n_off + 3] = 0x41;
    MP_ASSERT_ST(mp_pw_commit_decode(g_buf, g_commit.enc_len, &d), MP_ERR_MALFORMED);
    /* MP_CHAIN_MAX itself is in range; these words are then worth more
     * than the cert's credit, which the record alone shows too */
    g_buf[n_off + 3] = 0x40;
    MP_ASSERT_ST(mp_pw_commit_decode(g_buf, g_commit.enc_len, &d), MP_ERR_CREDIT);

    memcpy(g_buf, g_commit.enc, g_commit.enc_len);
    memset(g_buf + unit_off, 0, 8);
    MP_ASSERT_ST(mp_pw_commit_decode(g_buf, g_commit.enc_len, &d), MP_ERR_MALFORMED);

    /* the embedded cert's own refusals come through */
    memcpy(g_buf, g_commit.enc, g_commit.enc_len);
    g_buf[2 + 1 + strlen(g_commit.vendor) + 2 + 1] = MP_T_PW_COMMIT;
    MP_ASSERT_ST(mp_pw_commit_decode(g_buf, g_commit.enc_len, &d), MP_ERR_TYPE);
    MP_ASSERT_ST(mp_pw_commit_decode(g_buf, MP_PW_COMMIT_MAX + 1, &d), MP_ERR_TOO_LARGE);
}

/* ---- payments -------------------------------------------------------------- */

static void fill_payment(mp_pw_payment *p, const mp_pw_commit *c, uint32_t i, uint32_t k,
                         int with_commit)
{
    memset(p, 0, sizeof *p);
    memcpy(p->commit_id, c->id, MP_HASH_LEN);
    p->i = i;
    p->k = k;
    if (i <= N)
        memcpy(p->w, g_words[i], MP_HASH_LEN);
    p->has_commit = (uint8_t)(with_commit != 0);
    if (with_commit)
        p->commit = *c;
}

static void test_payment_roundtrip(void)
{
    mp_pw_trust trust;
    size_t len = 0;

    make_commit(&g_commit, &trust);

    fill_payment(&g_pay, &g_commit, 5, 2, 0);
    MP_ASSERT_OK(mp_pw_payment_encode(&g_pay, g_buf, sizeof g_buf, &len));
    CU_ASSERT_EQUAL(len, 2 + 32 + 4 + 4 + 32 + 1);
    MP_ASSERT_OK(mp_pw_payment_decode(g_buf, len, &g_pay2));
    CU_ASSERT(memcmp(g_pay2.commit_id, g_commit.id, MP_HASH_LEN) == 0);
    CU_ASSERT_EQUAL(g_pay2.i, 5);
    CU_ASSERT_EQUAL(g_pay2.k, 2);
    CU_ASSERT(memcmp(g_pay2.w, g_words[5], MP_HASH_LEN) == 0);
    CU_ASSERT_EQUAL(g_pay2.has_commit, 0);
    check_framing(dec_payment, g_buf, len, MP_T_PW_PAYMENT);
    MP_ASSERT_ST(mp_pw_payment_encode(&g_pay, g_buf, len - 1, &len), MP_ERR_BUFFER);

    fill_payment(&g_pay, &g_commit, 1, 1, 1);
    MP_ASSERT_OK(mp_pw_payment_encode(&g_pay, g_buf, sizeof g_buf, &len));
    CU_ASSERT_EQUAL(len, 2 + 32 + 4 + 4 + 32 + 1 + 2 + (size_t)g_commit.enc_len);
    MP_ASSERT_OK(mp_pw_payment_decode(g_buf, len, &g_pay2));
    CU_ASSERT_EQUAL(g_pay2.has_commit, 1);
    CU_ASSERT_EQUAL(g_pay2.commit.enc_len, g_commit.enc_len);
    CU_ASSERT(memcmp(g_pay2.commit.id, g_commit.id, MP_HASH_LEN) == 0);
    MP_ASSERT_OK(mp_pw_commit_verify(&g_pay2.commit, &trust, "news.example", NOW));
    check_framing(dec_payment, g_buf, len, MP_T_PW_PAYMENT);
}

static void test_payment_refusals(void)
{
    mp_pw_trust trust;
    size_t len = 0, base;

    make_commit(&g_commit, &trust);

    /* encoder refuses what the decoder would */
    fill_payment(&g_pay, &g_commit, 5, 6, 0);
    MP_ASSERT_ST(mp_pw_payment_encode(&g_pay, g_buf, sizeof g_buf, &len), MP_ERR_ARG);
    g_pay.k = 0;
    MP_ASSERT_ST(mp_pw_payment_encode(&g_pay, g_buf, sizeof g_buf, &len), MP_ERR_ARG);
    g_pay.i = 0;
    MP_ASSERT_ST(mp_pw_payment_encode(&g_pay, g_buf, sizeof g_buf, &len), MP_ERR_ARG);
    fill_payment(&g_pay, &g_commit, 5, 1, 0);
    g_pay.has_commit = 2;
    MP_ASSERT_ST(mp_pw_payment_encode(&g_pay, g_buf, sizeof g_buf, &len), MP_ERR_ARG);
    fill_payment(&g_pay, &g_commit, 5, 1, 1);
    g_pay.commit_id[0] ^= 1;
    MP_ASSERT_ST(mp_pw_payment_encode(&g_pay, g_buf, sizeof g_buf, &len), MP_ERR_ARG);

    /* decoder: offsets 34 i, 38 k, 74 has_commit */
    fill_payment(&g_pay, &g_commit, 5, 2, 0);
    MP_ASSERT_OK(mp_pw_payment_encode(&g_pay, g_buf, sizeof g_buf, &base));
    g_buf[37] = 0;                                         /* i = 0 */
    MP_ASSERT_ST(mp_pw_payment_decode(g_buf, base, &g_pay2), MP_ERR_MALFORMED);
    g_buf[37] = 5;
    g_buf[41] = 6;                                         /* k > i */
    MP_ASSERT_ST(mp_pw_payment_decode(g_buf, base, &g_pay2), MP_ERR_MALFORMED);
    g_buf[41] = 0;                                         /* k = 0 */
    MP_ASSERT_ST(mp_pw_payment_decode(g_buf, base, &g_pay2), MP_ERR_MALFORMED);
    g_buf[41] = 5;                                         /* k = i */
    MP_ASSERT_OK(mp_pw_payment_decode(g_buf, base, &g_pay2));
    /* i above the longest chain (10^6 = 0x000f4240): malformed at decode,
     * before any store lookup or hashing */
    g_buf[34] = 0x00; g_buf[35] = 0x0f; g_buf[36] = 0x42; g_buf[37] = 0x41;
    MP_ASSERT_ST(mp_pw_payment_decode(g_buf, base, &g_pay2), MP_ERR_MALFORMED);
    g_buf[37] = 0x40;                                      /* i = 10^6 */
    MP_ASSERT_OK(mp_pw_payment_decode(g_buf, base, &g_pay2));
    g_buf[34] = 0xff;                                      /* i near 2^32 */
    MP_ASSERT_ST(mp_pw_payment_decode(g_buf, base, &g_pay2), MP_ERR_MALFORMED);
    g_buf[34] = 0; g_buf[35] = 0; g_buf[36] = 0; g_buf[37] = 5;
    g_buf[74] = 2;
    MP_ASSERT_ST(mp_pw_payment_decode(g_buf, base, &g_pay2), MP_ERR_MALFORMED);

    /* an included commitment that is not the one named */
    fill_payment(&g_pay, &g_commit, 5, 2, 1);
    MP_ASSERT_OK(mp_pw_payment_encode(&g_pay, g_buf, sizeof g_buf, &len));
    g_buf[2] ^= 1;
    MP_ASSERT_ST(mp_pw_payment_decode(g_buf, len, &g_pay2), MP_ERR_MALFORMED);
    g_buf[2] ^= 1;
    g_buf[len - 1] ^= 1;       /* changes the commitment, hence its id */
    MP_ASSERT_ST(mp_pw_payment_decode(g_buf, len, &g_pay2), MP_ERR_MALFORMED);
    g_buf[len - 1] ^= 1;
    g_buf[75 + 2] = 0x7f;      /* version inside the commitment */
    MP_ASSERT_ST(mp_pw_payment_decode(g_buf, len, &g_pay2), MP_ERR_VERSION);
}

/* ---- acceptance ------------------------------------------------------------ */

static mp_status pay(mp_sha *h, mp_pw_state *st, uint32_t i, uint32_t k)
{
    fill_payment(&g_pay, &g_commit, i, k, 0);
    return mp_pw_accept(h, st, &g_pay, st);
}

static void test_accept(void)
{
    mp_pw_trust trust;
    mp_pw_state st, before;
    mp_sha *h = NULL;
    uint32_t i;

    make_commit(&g_commit, &trust);
    MP_ASSERT_OK(mp_sha_new(&h));
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    MP_ASSERT_OK(mp_pw_state_init(&g_commit, &st));
    CU_ASSERT_EQUAL(st.n, N);
    CU_ASSERT_EQUAL(st.last, 0);
    CU_ASSERT(memcmp(st.w_last, g_words[0], MP_HASH_LEN) == 0);

    for (i = 1; i <= 4; i++) {             /* one word at a time */
        MP_ASSERT_OK(pay(h, &st, i, 1));
        CU_ASSERT_EQUAL(st.last, i);
        CU_ASSERT(memcmp(st.w_last, g_words[i], MP_HASH_LEN) == 0);
    }
    MP_ASSERT_OK(pay(h, &st, 7, 3));       /* k = 3: words 5..7 */
    CU_ASSERT_EQUAL(st.last, 7);
    MP_ASSERT_OK(pay(h, &st, 11, 1));      /* 8..10 skipped, never paid */
    CU_ASSERT_EQUAL(st.last, 11);

    before = st;
    MP_ASSERT_ST(pay(h, &st, 11, 1), MP_ERR_SPENT);   /* replay */
    MP_ASSERT_ST(pay(h, &st, 9, 1), MP_ERR_SPENT);
    MP_ASSERT_ST(pay(h, &st, 13, 3), MP_ERR_SPENT);   /* 11..13 overlaps 11 */
    MP_ASSERT_ST(pay(h, &st, 13, 0), MP_ERR_MALFORMED);
    MP_ASSERT_ST(pay(h, &st, 13, 14), MP_ERR_MALFORMED);
    MP_ASSERT_ST(pay(h, &st, N + 1, 1), MP_ERR_EXHAUSTED);

    fill_payment(&g_pay, &g_commit, 13, 1, 0);         /* w_14 claimed as w_13 */
    memcpy(g_pay.w, g_words[14], MP_HASH_LEN);
    MP_ASSERT_ST(mp_pw_accept(h, &st, &g_pay, &st), MP_ERR_FORGED);
    memset(g_pay.w, 0x33, MP_HASH_LEN);
    MP_ASSERT_ST(mp_pw_accept(h, &st, &g_pay, &st), MP_ERR_FORGED);
    CU_ASSERT(memcmp(&before, &st, sizeof st) == 0);   /* untouched on failure */

    MP_ASSERT_OK(pay(h, &st, 13, 2));      /* 12..13 exactly adjoins */
    MP_ASSERT_OK(pay(h, &st, N, N - 13));  /* the rest */
    CU_ASSERT_EQUAL(st.last, N);
    MP_ASSERT_ST(pay(h, &st, N, 1), MP_ERR_EXHAUSTED);
    MP_ASSERT_ST(pay(h, &st, 1, 1), MP_ERR_EXHAUSTED);

    /* a fresh state accepts a jump straight to w_n */
    MP_ASSERT_OK(mp_pw_state_init(&g_commit, &st));
    MP_ASSERT_OK(pay(h, &st, N, N));
    MP_ASSERT_ST(mp_pw_accept(NULL, &st, &g_pay, &st), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pw_state_init(NULL, &st), MP_ERR_ARG);
    mp_sha_free(h);
}

/* ---- redemption ------------------------------------------------------------ */

static void test_redeem(void)
{
    mp_pw_trust trust, other;
    mp_amount value, sentinel;
    mp_sha *h = NULL;
    size_t len = 0;

    make_commit(&g_commit, &trust);
    MP_ASSERT_OK(mp_sha_new(&h));
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);

    memset(&g_red, 0, sizeof g_red);
    g_red.commit = g_commit;
    g_red.last = 13;
    memcpy(g_red.w_last, g_words[13], MP_HASH_LEN);
    MP_ASSERT_OK(mp_pw_redeem_encode(&g_red, g_buf, sizeof g_buf, &len));
    CU_ASSERT_EQUAL(len, 2 + 2 + (size_t)g_commit.enc_len + 4 + 32);
    MP_ASSERT_OK(mp_pw_redeem_decode(g_buf, len, &g_red2));
    CU_ASSERT_EQUAL(g_red2.last, 13);
    CU_ASSERT(memcmp(g_red2.w_last, g_words[13], MP_HASH_LEN) == 0);
    CU_ASSERT(memcmp(g_red2.commit.id, g_commit.id, MP_HASH_LEN) == 0);
    MP_ASSERT_OK(mp_pw_redeem_verify(h, &g_red2, &trust, &value));
    CU_ASSERT_EQUAL(value.units, 13 * UNIT);
    CU_ASSERT_STRING_EQUAL(value.cur, "USD");
    check_framing(dec_redeem, g_buf, len, MP_T_PW_REDEEM);
    MP_ASSERT_ST(mp_pw_redeem_encode(&g_red, g_buf, len - 1, &len), MP_ERR_BUFFER);

    /* the whole chain */
    g_red.last = N;
    memcpy(g_red.w_last, g_words[N], MP_HASH_LEN);
    MP_ASSERT_OK(mp_pw_redeem_verify(h, &g_red, &trust, &value));
    CU_ASSERT_EQUAL(value.units, N * UNIT);

    /* from a word proven before: only the new words are hashed, and the
     * word must be on the chain above it */
    MP_ASSERT_OK(mp_pw_redeem_verify_from(h, &g_red, &trust, 13, g_words[13], &value));
    CU_ASSERT_EQUAL(value.units, N * UNIT);
    MP_ASSERT_OK(mp_pw_redeem_verify_from(h, &g_red, &trust, N - 1, g_words[N - 1], &value));
    MP_ASSERT_ST(mp_pw_redeem_verify_from(h, &g_red, &trust, 13, g_words[12], &value),
                 MP_ERR_FORGED);                              /* w_prev not word 13 */
    MP_ASSERT_ST(mp_pw_redeem_verify_from(h, &g_red, &trust, 12, g_words[13], &value),
                 MP_ERR_FORGED);
    MP_ASSERT_ST(mp_pw_redeem_verify_from(h, &g_red, &trust, N, g_words[N], &value),
                 MP_ERR_ARG);                                 /* nothing new */
    MP_ASSERT_ST(mp_pw_redeem_verify_from(h, &g_red, &trust, 13, NULL, &value), MP_ERR_ARG);

    set_amount(&sentinel, 1, "XXX");
    value = sentinel;
    memcpy(g_red.w_last, g_words[N - 1], MP_HASH_LEN);   /* forged w_last */
    MP_ASSERT_ST(mp_pw_redeem_verify(h, &g_red, &trust, &value), MP_ERR_FORGED);
    CU_ASSERT(memcmp(&value, &sentinel, sizeof value) == 0);
    g_red.last = N + 1;
    MP_ASSERT_ST(mp_pw_redeem_verify(h, &g_red, &trust, &value), MP_ERR_MALFORMED);
    MP_ASSERT_ST(mp_pw_redeem_encode(&g_red, g_buf, sizeof g_buf, &len), MP_ERR_ARG);
    g_red.last = 0;
    MP_ASSERT_ST(mp_pw_redeem_verify(h, &g_red, &trust, &value), MP_ERR_MALFORMED);
    MP_ASSERT_ST(mp_pw_redeem_encode(&g_red, g_buf, sizeof g_buf, &len), MP_ERR_ARG);

    g_red.last = 3;
    memcpy(g_red.w_last, g_words[3], MP_HASH_LEN);
    make_trust(&other, "someone-else", t_broker_key());
    MP_ASSERT_ST(mp_pw_redeem_verify(h, &g_red, &other, &value), MP_ERR_UNTRUSTED);
    g_red.commit.enc[g_red.commit.signed_len - 1] ^= 1;    /* n changed, sig kept */
    MP_ASSERT_ST(mp_pw_redeem_verify(h, &g_red, &trust, &value), MP_ERR_FORGED);
    CU_ASSERT(memcmp(&value, &sentinel, sizeof value) == 0);

    /* decoder checks 1 <= last <= n */
    g_red.commit = g_commit;
    MP_ASSERT_OK(mp_pw_redeem_encode(&g_red, g_buf, sizeof g_buf, &len));
    memset(g_buf + len - 36, 0, 4);
    MP_ASSERT_ST(mp_pw_redeem_decode(g_buf, len, &g_red2), MP_ERR_MALFORMED);
    g_buf[len - 33] = N + 1;
    MP_ASSERT_ST(mp_pw_redeem_decode(g_buf, len, &g_red2), MP_ERR_MALFORMED);
    g_buf[len - 33] = N;
    MP_ASSERT_OK(mp_pw_redeem_decode(g_buf, len, &g_red2));
    mp_sha_free(h);
}

int register_payword_tests(void)
{
    CU_pSuite s = CU_add_suite("payword", NULL, NULL);

    if (s == NULL
        || CU_add_test(s, "cert: Ed25519 broker", test_cert_ed25519) == NULL
        || CU_add_test(s, "cert: RSA-2048 broker and RSA user", test_cert_rsa) == NULL
        || CU_add_test(s, "cert: trust matching", test_cert_trust) == NULL
        || CU_add_test(s, "cert: expiry and unusable user key", test_cert_expiry_and_key) == NULL
        || CU_add_test(s, "cert: sign refuses bad fields", test_cert_sign_args) == NULL
        || CU_add_test(s, "cert: decoder refusals", test_cert_decode_refusals) == NULL
        || CU_add_test(s, "commit: round trip and verify", test_commit_roundtrip) == NULL
        || CU_add_test(s, "commit: vendor, dates, skew", test_commit_checks) == NULL
        || CU_add_test(s, "commit: credit and currency", test_commit_money) == NULL
        || CU_add_test(s, "commit: forged signatures", test_commit_forged) == NULL
        || CU_add_test(s, "commit: sign refuses bad fields", test_commit_sign_args) == NULL
        || CU_add_test(s, "commit: decoder refusals", test_commit_decode_refusals) == NULL
        || CU_add_test(s, "payment: round trips", test_payment_roundtrip) == NULL
        || CU_add_test(s, "payment: refusals", test_payment_refusals) == NULL
        || CU_add_test(s, "accept: words, jumps, replays", test_accept) == NULL
        || CU_add_test(s, "redeem: round trip and verify", test_redeem) == NULL)
        return -1;
    return 0;
}
