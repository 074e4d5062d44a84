/*
 * test_sign.c - which public keys libmp takes as keys that can sign
 * (issue 9, finding 5): the full check (mp_pubkey_check, the broker's
 * /certify) and the cheap one every verification runs
 * (mp_pubkey_check_fast, inside mp_verify and mp_pw_cert_verify), over
 * tests/vectors/weak-keys.txt and over keys computed here; and the attack
 * that started it, a certified small-order key with a trivial signature.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include "tests.h"
#include "mp_edpoint.h"

#define NOW      1700000000ULL
#define CERT_EXP (NOW + 30 * 86400ULL)

static const char *const rfc8032_pub[] = {
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",   /* TEST 1 */
    "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",   /* TEST 2 */
    "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",   /* TEST 3 */
    "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",   /* TEST 1024 */
    "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",   /* TEST SHA(abc) */
};

/* The 8 points of small order, canonical encodings (RFC 8032 bytes). */
static const char *const small_order_hex[8] = {
    "0100000000000000000000000000000000000000000000000000000000000000",   /* identity */
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",   /* (0, -1) */
    "0000000000000000000000000000000000000000000000000000000000000000",   /* order 4 */
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",   /* order 8 */
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
};

static mp_pubkey ed_key(const uint8_t raw[32])
{
    mp_pubkey pk;

    memset(&pk, 0, sizeof pk);
    pk.alg = MP_KEY_ED25519;
    pk.len = 32;
    memcpy(pk.key, raw, 32);
    return pk;
}

static mp_pubkey ed_key_hex(const char *hex)
{
    uint8_t raw[32];

    CU_ASSERT_EQUAL_FATAL(t_hex_decode(hex, raw, sizeof raw), 32);
    return ed_key(raw);
}

/* The test RSA-2048 key's modulus with public exponent e, as the DER
 * SubjectPublicKeyInfo that travels in certs. */
static int rsa_key_with_e(const BIGNUM *e, mp_pubkey *out)
{
    mp_pubkey base;
    const unsigned char *p;
    unsigned char *der = NULL;
    EVP_PKEY *orig = NULL, *pkey = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    BIGNUM *n = NULL;
    int dlen, ok = 0;

    if (mp_signer_pubkey(t_rsa_broker_key(), &base) != MP_OK)
        goto done;
    p = base.key;
    if ((orig = d2i_PUBKEY(NULL, &p, base.len)) == NULL
        || EVP_PKEY_get_bn_param(orig, OSSL_PKEY_PARAM_RSA_N, &n) != 1)
        goto done;
    if ((bld = OSSL_PARAM_BLD_new()) == NULL
        || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1
        || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1
        || (params = OSSL_PARAM_BLD_to_param(bld)) == NULL)
        goto done;
    if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL
        || EVP_PKEY_fromdata_init(ctx) != 1
        || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto done;
    dlen = i2d_PUBKEY(pkey, &der);
    if (dlen <= 0 || dlen > MP_PUBKEY_MAX)
        goto done;
    memset(out, 0, sizeof *out);
    out->alg = MP_KEY_RSA;
    out->len = (uint16_t)dlen;
    memcpy(out->key, der, (size_t)dlen);
    ok = 1;
done:
    OPENSSL_free(der);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    EVP_PKEY_free(orig);
    return ok;
}

static mp_status verdict(const char *word)
{
    return strcmp(word, "ok") == 0 ? MP_OK : MP_ERR_KEY;
}

/* Every line of weak-keys.txt: both checks give the recorded verdicts, a
 * key the cheap check refuses is refused by mp_verify too, and nothing the
 * cheap check refuses gets past the full one. */
static void test_vector_file(void)
{
    static const uint8_t msg[] = "weak keys";
    const char *path = MP_VECTORS_DIR "/weak-keys.txt";
    char line[512], kind[16], full[8], fast[8], value[80];
    unsigned n_ed = 0, n_rsa = 0, n_ed_refused = 0, n_mixed = 0;
    uint8_t sig[MP_SIG_MAX];
    size_t sig_len = 0;
    mp_pubkey pk;
    BIGNUM *e = NULL;
    FILE *f;

    f = fopen(path, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    MP_ASSERT_OK(mp_sign(t_rsa_broker_key(), msg, sizeof msg, sig, &sig_len));
    while (fgets(line, sizeof line, f) != NULL) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%15s %7s %7s %79s", kind, full, fast, value) != 4) {
            fprintf(stderr, "\n  %s: bad line: %s", path, line);
            CU_FAIL("bad vector line");
            continue;
        }
        if (strcmp(kind, "ed25519") == 0) {
            pk = ed_key_hex(value);
            n_ed++;
            n_ed_refused += strcmp(full, "key") == 0;
            n_mixed += strcmp(full, "key") == 0 && strcmp(fast, "ok") == 0;
            MP_ASSERT_ST(mp_edpoint_check(pk.key), verdict(full));
            MP_ASSERT_ST(mp_edpoint_check_fast(pk.key), verdict(fast));
        } else if (strcmp(kind, "rsa_e") == 0) {
            CU_ASSERT_FATAL(BN_dec2bn(&e, value) > 0);
            CU_ASSERT_FATAL(rsa_key_with_e(e, &pk));
            n_rsa++;
            /* The modulus is the signer's: only the exponent decides. */
            MP_ASSERT_ST(mp_verify(&pk, msg, sizeof msg, sig, sig_len),
                         verdict(fast) == MP_OK ? MP_OK : MP_ERR_KEY);
        } else {
            CU_FAIL("unknown vector kind");
            continue;
        }
        if (mp_pubkey_check(&pk) != verdict(full) || mp_pubkey_check_fast(&pk) != verdict(fast))
            fprintf(stderr, "\n  weak-keys.txt: %s %s", kind, value);
        MP_ASSERT_ST(mp_pubkey_check(&pk), verdict(full));
        MP_ASSERT_ST(mp_pubkey_check_fast(&pk), verdict(fast));
        CU_ASSERT(!(verdict(fast) == MP_ERR_KEY && verdict(full) == MP_OK));
        if (verdict(fast) == MP_ERR_KEY && pk.alg == MP_KEY_ED25519)
            MP_ASSERT_ST(mp_verify(&pk, msg, sizeof msg, sig, 64), MP_ERR_KEY);
    }
    fclose(f);
    BN_free(e);
    /* A truncated file must not pass for a good one. */
    CU_ASSERT(n_ed >= 40);
    CU_ASSERT(n_ed_refused >= 30);
    CU_ASSERT(n_mixed >= 10);
    CU_ASSERT(n_rsa >= 6);
}

/* All 8 small-order points, each with and without the sign bit and (for
 * y = 0 and 1) their y + p forms: refused by both checks. */
static void test_small_order(void)
{
    uint8_t raw[32];
    mp_pubkey pk;
    size_t i;
    int sign;

    for (i = 0; i < 8; i++) {
        CU_ASSERT_EQUAL_FATAL(t_hex_decode(small_order_hex[i], raw, 32), 32);
        for (sign = 0; sign < 2; sign++) {
            raw[31] = (uint8_t)((raw[31] & 0x7f) | (sign << 7));
            pk = ed_key(raw);
            MP_ASSERT_ST(mp_pubkey_check(&pk), MP_ERR_KEY);
            MP_ASSERT_ST(mp_pubkey_check_fast(&pk), MP_ERR_KEY);
        }
    }
    /* The report's key: 32 bytes, all zero but the first (the identity). */
    memset(raw, 0, sizeof raw);
    raw[0] = 1;
    pk = ed_key(raw);
    MP_ASSERT_ST(mp_pubkey_check(&pk), MP_ERR_KEY);
    MP_ASSERT_ST(mp_pubkey_check_fast(&pk), MP_ERR_KEY);
    MP_ASSERT_ST(mp_edpoint_check(NULL), MP_ERR_ARG);
    MP_ASSERT_ST(mp_edpoint_check_fast(NULL), MP_ERR_ARG);
}

/* Every y >= p (p = 2^255 - 19: 19 values), either sign: not canonical. */
static void test_noncanonical(void)
{
    uint8_t raw[32];
    mp_pubkey pk;
    unsigned y;
    int sign, bad_full = 0, bad_fast = 0;

    for (y = 0xed; y <= 0xff; y++) {
        for (sign = 0; sign < 2; sign++) {
            memset(raw, 0xff, sizeof raw);
            raw[0] = (uint8_t)y;
            raw[31] = (uint8_t)(0x7f | (sign << 7));
            pk = ed_key(raw);
            bad_full |= mp_pubkey_check(&pk) != MP_ERR_KEY;
            bad_fast |= mp_pubkey_check_fast(&pk) != MP_ERR_KEY;
        }
    }
    CU_ASSERT_FALSE(bad_full);
    CU_ASSERT_FALSE(bad_fast);
    /* p - 2 is canonical: the cheap check has no reason to refuse it. */
    memset(raw, 0xff, sizeof raw);
    raw[0] = 0xeb;
    raw[31] = 0x7f;
    pk = ed_key(raw);
    MP_ASSERT_OK(mp_pubkey_check_fast(&pk));
}

/* P + (0, -1) = (-x, -y): encoded as y' = p - y with the sign bit
 * flipped (x != 0 for a full-order point). Computed with BIGNUM, apart
 * from mp_edpoint.c's arithmetic. */
static void add_order2(const uint8_t in[32], uint8_t out[32])
{
    uint8_t le[32];
    BIGNUM *p = BN_new(), *y = BN_new();

    CU_ASSERT_FATAL(p != NULL && y != NULL);
    memcpy(le, in, 32);
    le[31] &= 0x7f;
    CU_ASSERT_FATAL(BN_set_bit(p, 255) && BN_sub_word(p, 19));
    CU_ASSERT_FATAL(BN_lebin2bn(le, 32, y) != NULL);
    CU_ASSERT_FATAL(BN_sub(y, p, y));
    CU_ASSERT_FATAL(BN_bn2lebinpad(y, out, 32) == 32);
    out[31] = (uint8_t)((out[31] & 0x7f) | ((in[31] ^ 0x80) & 0x80));
    BN_free(p);
    BN_free(y);
}

/* Keys of real signers are accepted by both checks, their negations too
 * (the sign bit alone), and the same keys plus the order-2 point are
 * refused by the full check: mixed order. */
static void test_generated_and_mixed(void)
{
    uint8_t raw[32], mixed[32];
    mp_signer *s = NULL;
    mp_pubkey pk;
    size_t i;
    int bad = 0;

    for (i = 0; i < 24 + sizeof rfc8032_pub / sizeof rfc8032_pub[0]; i++) {
        if (i < sizeof rfc8032_pub / sizeof rfc8032_pub[0]) {
            pk = ed_key_hex(rfc8032_pub[i]);
        } else {
            MP_ASSERT_OK(mp_signer_generate(&s));
            MP_ASSERT_OK(mp_signer_pubkey(s, &pk));
            mp_signer_free(s);
            s = NULL;
        }
        memcpy(raw, pk.key, 32);
        bad |= mp_pubkey_check(&pk) != MP_OK;
        bad |= mp_pubkey_check_fast(&pk) != MP_OK;
        pk.key[31] ^= 0x80;                       /* -P: full order as well */
        bad |= mp_pubkey_check(&pk) != MP_OK;
        add_order2(raw, mixed);
        pk = ed_key(mixed);
        bad |= mp_pubkey_check(&pk) != MP_ERR_KEY;
        /* A curve point: only the full check sees its order. */
        bad |= mp_pubkey_check_fast(&pk) != MP_OK;
        if (bad) {
            fprintf(stderr, "\n  key %zu went wrong", i);
            break;
        }
    }
    CU_ASSERT_FALSE(bad);
}

/* The full check is for /certify: measured here, bounded loosely so that
 * a regression by an order of magnitude fails (sanitizers included). */
static void test_full_check_cost(void)
{
    enum { ROUNDS = 50 };
    struct timespec t0, t1;
    mp_pubkey pk = ed_key_hex(rfc8032_pub[0]);
    long long ns;
    int i, bad = 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < ROUNDS; i++)
        bad |= mp_pubkey_check(&pk) != MP_OK;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ns = ((long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec)) / ROUNDS;
    CU_ASSERT_FALSE(bad);
    fprintf(stderr, "\n  mp_pubkey_check (Ed25519, full): %lld us per key ", ns / 1000);
    CU_ASSERT(ns < 100LL * 1000 * 1000);
}

/* ---- the attack --------------------------------------------------------- */

static mp_pw_cert g_cert;
static mp_pw_commit g_commit, g_forged;
static mp_pw_redeem g_red;
static uint8_t g_enc[MP_PW_COMMIT_MAX];

/* A cert the broker signed (as before the fix, when /certify let the key
 * through) for user key raw. */
static void certify(const uint8_t raw[32])
{
    memset(&g_cert, 0, sizeof g_cert);
    strcpy(g_cert.broker, "broker.example");
    strcpy(g_cert.user, "mallory");
    g_cert.user_key = ed_key(raw);
    g_cert.expiry = CERT_EXP;
    g_cert.credit_limit.units = 1000000;
    memcpy(g_cert.credit_limit.cur, "USD", 4);
    g_cert.serial = 7;
    MP_ASSERT_OK(mp_pw_cert_sign(&g_cert, t_broker_key()));
}

/* A commitment under g_cert with date `date`, its signature replaced by
 * R || S with S = 0, decoded from the bytes as a vendor would get them. */
static mp_status forge(uint64_t date, const uint8_t R[32], const uint8_t w0[32])
{
    size_t len;

    memset(&g_commit, 0, sizeof g_commit);
    strcpy(g_commit.vendor, "news.example");
    g_commit.cert = g_cert;
    memcpy(g_commit.w0, w0, 32);
    g_commit.date = date;
    g_commit.expiry = date + 86400;
    g_commit.unit.units = 100;
    memcpy(g_commit.unit.cur, "USD", 4);
    g_commit.n = 1000;
    /* Any signer fills the layout; the signature bytes are then ours. */
    MP_ASSERT_OK(mp_pw_commit_sign(&g_commit, t_user_key()));
    MP_ASSERT_OK(mp_pw_commit_encode(&g_commit, g_enc, sizeof g_enc, &len));
    CU_ASSERT_FATAL(g_commit.sig_len == 64 && len == (size_t)g_commit.signed_len + 2 + 64);
    memcpy(g_enc + len - 64, R, 32);
    memset(g_enc + len - 32, 0, 32);
    return mp_pw_commit_decode(g_enc, len, &g_forged);
}

/* What OpenSSL alone says of the forged signature under the weak key. */
static int raw_ed25519_verifies(const uint8_t pub[32], const mp_pw_commit *c)
{
    EVP_PKEY *p = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, pub, 32);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = 0;

    if (p != NULL && ctx != NULL
        && EVP_DigestVerifyInit_ex(ctx, NULL, NULL, NULL, NULL, p, NULL) == 1)
        ok = EVP_DigestVerify(ctx, c->sig, c->sig_len, c->enc, c->signed_len) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(p);
    return ok;
}

/*
 * For each small-order user key: find a commitment whose trivial
 * signature (R a small-order point, S = 0) OpenSSL's verify accepts, i.e.
 * R = -[k]A, which one of the 8 R does for about one message in ord(A).
 * Then the vendor's first-contact check, the cert check and the broker's
 * redemption check must all refuse it, for the key, before any signature.
 */
static void test_trivial_signature_attack(void)
{
    uint8_t key[32], R[32], w[2][32];
    mp_pw_trust trust;
    mp_amount value;
    mp_sha *h = NULL;
    size_t a, r;
    uint64_t date;
    int found, n_found = 0;

    memset(&trust, 0, sizeof trust);
    trust.n = 1;
    strcpy(trust.b[0].name, "broker.example");
    MP_ASSERT_OK(mp_signer_pubkey(t_broker_key(), &trust.b[0].key));
    memset(w[1], 0x5a, 32);
    MP_ASSERT_OK(mp_sha256(w[1], 32, w[0]));
    MP_ASSERT_OK(mp_sha_new(&h));

    for (a = 0; a < 8; a++) {
        CU_ASSERT_EQUAL_FATAL(t_hex_decode(small_order_hex[a], key, 32), 32);
        certify(key);
        MP_ASSERT_ST(mp_pw_cert_verify(&g_cert, &trust, NOW), MP_ERR_KEY);
        found = 0;
        for (date = NOW; date < NOW + 64 && !found; date++) {
            for (r = 0; r < 8 && !found; r++) {
                CU_ASSERT_EQUAL_FATAL(t_hex_decode(small_order_hex[r], R, 32), 32);
                MP_ASSERT_OK(forge(date, R, w[0]));
                found = raw_ed25519_verifies(key, &g_forged);
            }
        }
        /* OpenSSL (3.0 at least) checks no key order: the forgery is real.
         * If some version refuses it, libmp must still refuse. */
        n_found += found;
        MP_ASSERT_ST(mp_verify(&g_forged.cert.user_key, g_forged.enc, g_forged.signed_len,
                               g_forged.sig, g_forged.sig_len), MP_ERR_KEY);
        MP_ASSERT_ST(mp_pw_commit_verify(&g_forged, &trust, "news.example", g_forged.date),
                     MP_ERR_KEY);
        memset(&g_red, 0, sizeof g_red);
        g_red.commit = g_forged;
        g_red.last = 1;
        memcpy(g_red.w_last, w[1], 32);
        MP_ASSERT_ST(mp_pw_redeem_verify(h, &g_red, &trust, &value), MP_ERR_KEY);
    }
    fprintf(stderr, "\n  trivial signatures OpenSSL alone accepts: %d of 8 small-order keys ",
            n_found);

    /* The same path with a real key works: the refusals above are the key's. */
    CU_ASSERT_FATAL(t_user_key() != NULL);
    {
        mp_pubkey upk;
        MP_ASSERT_OK(mp_signer_pubkey(t_user_key(), &upk));
        certify(upk.key);
        MP_ASSERT_OK(forge(NOW, upk.key, w[0]));   /* layout only */
        MP_ASSERT_OK(mp_pw_commit_verify(&g_commit, &trust, "news.example", NOW));
        memset(&g_red, 0, sizeof g_red);
        g_red.commit = g_commit;
        g_red.last = 1;
        memcpy(g_red.w_last, w[1], 32);
        MP_ASSERT_OK(mp_pw_redeem_verify(h, &g_red, &trust, &value));
        MP_ASSERT_ST(mp_pw_commit_verify(&g_forged, &trust, "news.example", NOW), MP_ERR_FORGED);
    }
    mp_sha_free(h);
}

/* An RSA cert key with e = 3 or e = 1 is refused at the vendor too. */
static void test_rsa_user_key_cert(void)
{
    mp_pw_trust trust;
    BIGNUM *e = BN_new();
    static const unsigned long es[] = { 1, 3, 65537 };
    size_t i;

    CU_ASSERT_FATAL(e != NULL);
    memset(&trust, 0, sizeof trust);
    trust.n = 1;
    strcpy(trust.b[0].name, "broker.example");
    MP_ASSERT_OK(mp_signer_pubkey(t_broker_key(), &trust.b[0].key));
    for (i = 0; i < sizeof es / sizeof es[0]; i++) {
        CU_ASSERT_FATAL(BN_set_word(e, es[i]));
        memset(&g_cert, 0, sizeof g_cert);
        strcpy(g_cert.broker, "broker.example");
        strcpy(g_cert.user, "mallory");
        CU_ASSERT_FATAL(rsa_key_with_e(e, &g_cert.user_key));
        g_cert.expiry = CERT_EXP;
        g_cert.credit_limit.units = 1000000;
        memcpy(g_cert.credit_limit.cur, "USD", 4);
        g_cert.serial = 8;
        MP_ASSERT_OK(mp_pw_cert_sign(&g_cert, t_broker_key()));
        MP_ASSERT_ST(mp_pw_cert_verify(&g_cert, &trust, NOW), es[i] == 65537 ? MP_OK : MP_ERR_KEY);
    }
    BN_free(e);
}

int register_sign_tests(void)
{
    static const struct { const char *name; CU_TestFunc fn; } tests[] = {
        { "weak-keys.txt: full and cheap checks", test_vector_file },
        { "small-order Ed25519 keys refused", test_small_order },
        { "non-canonical y refused", test_noncanonical },
        { "real keys accepted, mixed order refused", test_generated_and_mixed },
        { "full check cost", test_full_check_cost },
        { "trivial signature under a small-order key", test_trivial_signature_attack },
        { "RSA user key exponent at the vendor", test_rsa_user_key_cert },
    };
    CU_pSuite s = CU_add_suite("sign (weak keys)", NULL, NULL);
    size_t i;

    if (s == NULL)
        return -1;
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (CU_add_test(s, tests[i].name, tests[i].fn) == NULL)
            return -1;
    return 0;
}
