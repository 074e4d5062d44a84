/*
 * test_sign.c - which public keys libmp takes as keys that can sign
 * (issue 9, finding 5): the full check (mp_pubkey_check, the broker's
 * /certify) and the cheap one every verification runs
 * (mp_pubkey_check_fast, inside mp_verify and mp_pw_cert_verify), over
 * tests/vectors/weak-keys.txt and over keys computed here; and the attack
 * that started it, a certified small-order key with a trivial signature.
 * Then RSA moduli anyone can factor (a prime n, a small factor, a prime
 * power): the full check refuses them, the cheap one does not look, and
 * a cert with a prime n, had it been signed, lets anyone sign for its
 * user.
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

#define RSA_E 65537

/* The RSA key (n, e), as the DER SubjectPublicKeyInfo that travels in
 * certs; with d, *priv (when not NULL) gets a key that signs with it (no
 * factors needed: plain m^d mod n). */
static int rsa_key(const BIGNUM *n, const BIGNUM *e, const BIGNUM *d, mp_pubkey *out,
                   EVP_PKEY **priv)
{
    unsigned char *der = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    int dlen, ok = 0;

    if ((bld = OSSL_PARAM_BLD_new()) == NULL
        || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1
        || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1
        || (d != NULL && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d) != 1)
        || (params = OSSL_PARAM_BLD_to_param(bld)) == NULL)
        goto done;
    if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL
        || EVP_PKEY_fromdata_init(ctx) != 1
        || EVP_PKEY_fromdata(ctx, &pkey, d != NULL ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY,
                             params) != 1)
        goto done;
    dlen = i2d_PUBKEY(pkey, &der);
    if (dlen <= 0 || dlen > MP_PUBKEY_MAX)
        goto done;
    memset(out, 0, sizeof *out);
    out->alg = MP_KEY_RSA;
    out->len = (uint16_t)dlen;
    memcpy(out->key, der, (size_t)dlen);
    if (priv != NULL) {
        *priv = pkey;
        pkey = NULL;
    }
    ok = 1;
done:
    OPENSSL_free(der);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return ok;
}

/* The test RSA-2048 key's modulus with public exponent e. */
static int rsa_key_with_e(const BIGNUM *e, mp_pubkey *out)
{
    mp_pubkey base;
    const unsigned char *p;
    EVP_PKEY *orig = NULL;
    BIGNUM *n = NULL;
    int ok = 0;

    if (mp_signer_pubkey(t_rsa_broker_key(), &base) != MP_OK)
        goto done;
    p = base.key;
    if ((orig = d2i_PUBKEY(NULL, &p, base.len)) == NULL
        || EVP_PKEY_get_bn_param(orig, OSSL_PKEY_PARAM_RSA_N, &n) != 1)
        goto done;
    ok = rsa_key(n, e, NULL, out, NULL);
done:
    BN_free(n);
    EVP_PKEY_free(orig);
    return ok;
}

/*
 * Primes for the moduli of the rsa_n vectors and the attack, generated
 * once per run (BN_generate_prime_ex2: a 2048-bit prime takes about half
 * a second) and freed by the suite's cleanup. Each is != 1 mod 65537, so
 * that e has an inverse mod phi(n) for every shape built from them.
 * OpenSSL sets a generated prime's top two bits, so every product below
 * has exactly 2048 bits (asserted).
 */
enum { PR_P1024, PR_Q1024, PR_P2048, PR_Q2046, PR_Q2038, PR_Q2032, PR_Q2016, PR_N };
static BIGNUM *g_prime[PR_N];

static const BIGNUM *prime(int which)
{
    static const int bits[PR_N] = { 1024, 1024, 2048, 2046, 2038, 2032, 2016 };
    BN_CTX *ctx;
    BIGNUM *p;

    if (g_prime[which] != NULL)
        return g_prime[which];
    ctx = BN_CTX_new();
    p = BN_new();
    CU_ASSERT_FATAL(ctx != NULL && p != NULL);
    do {
        CU_ASSERT_FATAL(BN_generate_prime_ex2(p, bits[which], 0, NULL, NULL, NULL, ctx) == 1);
    } while (BN_mod_word(p, RSA_E) == 1
           || (which == PR_Q1024 && BN_cmp(p, prime(PR_P1024)) == 0));
    BN_CTX_free(ctx);
    return g_prime[which] = p;
}

static int free_primes(void)
{
    size_t i;

    for (i = 0; i < PR_N; i++) {
        BN_free(g_prime[i]);
        g_prime[i] = NULL;
    }
    return 0;
}

/*
 * An RSA-2048 key with e = 65537 whose modulus has the shape named (the
 * rsa_n lines of weak-keys.txt), its SubjectPublicKeyInfo in *out and in
 * *priv a key signing with d = e^-1 mod phi(n), which whoever knows the
 * factors computes (for every shape but pq, anyone: the factors are
 * found by a primality test, trial division or a square root).
 *   prime  n a 2048-bit prime                 phi = n - 1
 *   pq     p, q 1024-bit primes               phi = (p - 1)(q - 1)
 *   p2     p^2, p a 1024-bit prime            phi = p(p - 1)
 *   3q     3q, q a 2046-bit prime             phi = 2(q - 1)
 *   751q   751q, q a 2038-bit prime           phi = 750(q - 1)
 *   757q   757q, the same q                   phi = 756(q - 1)
 *   65521q 65521q, q a 2032-bit prime         phi = 65520(q - 1)
 *   4294967291q  that prime times a 2016-bit q (the largest 32-bit prime)
 */
static int rsa_shaped(const char *shape, mp_pubkey *out, EVP_PKEY **priv)
{
    BN_CTX *ctx = BN_CTX_new();
    BIGNUM *n = BN_new(), *phi = BN_new(), *t = BN_new(), *e = BN_new(), *d = BN_new();
    unsigned long small = 0;
    int ok = 0;

    CU_ASSERT_FATAL(ctx != NULL && n != NULL && phi != NULL && t != NULL && e != NULL
                    && d != NULL && BN_set_word(e, RSA_E));
    if (strcmp(shape, "prime") == 0) {
        CU_ASSERT_FATAL(BN_copy(n, prime(PR_P2048)) && BN_sub(phi, n, BN_value_one()));
    } else if (strcmp(shape, "pq") == 0) {
        CU_ASSERT_FATAL(BN_mul(n, prime(PR_P1024), prime(PR_Q1024), ctx)
                        && BN_sub(phi, prime(PR_P1024), BN_value_one())
                        && BN_sub(t, prime(PR_Q1024), BN_value_one())
                        && BN_mul(phi, phi, t, ctx));
    } else if (strcmp(shape, "p2") == 0) {
        CU_ASSERT_FATAL(BN_sqr(n, prime(PR_P1024), ctx)
                        && BN_sub(t, prime(PR_P1024), BN_value_one())
                        && BN_mul(phi, prime(PR_P1024), t, ctx));
    } else if (strcmp(shape, "3q") == 0) {
        small = 3;
        CU_ASSERT_FATAL(BN_copy(t, prime(PR_Q2046)) != NULL);
    } else if (strcmp(shape, "751q") == 0 || strcmp(shape, "757q") == 0) {
        small = strtoul(shape, NULL, 10);
        CU_ASSERT_FATAL(BN_copy(t, prime(PR_Q2038)) != NULL);
    } else if (strcmp(shape, "65521q") == 0) {
        small = 65521;
        CU_ASSERT_FATAL(BN_copy(t, prime(PR_Q2032)) != NULL);
    } else if (strcmp(shape, "4294967291q") == 0) {
        small = 4294967291UL;
        CU_ASSERT_FATAL(BN_copy(t, prime(PR_Q2016)) != NULL);
    } else {
        goto done;
    }
    if (small != 0)     /* n = small * t, phi = (small - 1)(t - 1) */
        CU_ASSERT_FATAL(BN_copy(n, t) && BN_mul_word(n, small)
                        && BN_sub(phi, t, BN_value_one()) && BN_mul_word(phi, small - 1));
    CU_ASSERT_EQUAL_FATAL(BN_num_bits(n), 2048);
    CU_ASSERT_FATAL(BN_mod_inverse(d, e, phi, ctx) != NULL);
    ok = rsa_key(n, e, d, out, priv);
done:
    BN_free(d);
    BN_free(e);
    BN_free(t);
    BN_free(phi);
    BN_free(n);
    BN_CTX_free(ctx);
    return ok;
}

/* PKCS#1 v1.5 with SHA-256 under k, as mp_sign makes them for RSA. */
static int rsa_sign_with(EVP_PKEY *k, const void *msg, size_t len, uint8_t *sig,
                         size_t *sig_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;

    *sig_len = MP_SIG_MAX;
    ok = ctx != NULL && EVP_DigestSignInit_ex(ctx, NULL, "SHA256", NULL, NULL, k, NULL) == 1
         && EVP_DigestSign(ctx, sig, sig_len, msg, len) == 1;
    EVP_MD_CTX_free(ctx);
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
    unsigned n_ed = 0, n_rsa = 0, n_ed_refused = 0, n_mixed = 0, n_mod = 0, n_mod_refused = 0;
    uint8_t sig[MP_SIG_MAX], sig2[MP_SIG_MAX];
    size_t sig_len = 0, sig2_len = 0;
    mp_pubkey pk;
    EVP_PKEY *priv = NULL;
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
        } else if (strcmp(kind, "rsa_n") == 0) {
            if (!rsa_shaped(value, &pk, &priv)) {
                CU_FAIL("unknown rsa_n shape");
                continue;
            }
            n_mod++;
            n_mod_refused += strcmp(full, "key") == 0;
            /* d from the factors signs, and every verification takes it:
             * the cheap check does not look at n. */
            CU_ASSERT_FATAL(rsa_sign_with(priv, msg, sizeof msg, sig2, &sig2_len));
            EVP_PKEY_free(priv);
            priv = NULL;
            MP_ASSERT_ST(mp_verify(&pk, msg, sizeof msg, sig2, sig2_len),
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
    CU_ASSERT(n_mod >= 8);
    CU_ASSERT(n_mod_refused >= 6);
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

/* ns per call of check(pk) over rounds calls; *bad set when one did not
 * give want. */
static long long check_ns(mp_status (*check)(const mp_pubkey *), const mp_pubkey *pk,
                          int rounds, mp_status want, int *bad)
{
    struct timespec t0, t1;
    int i;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < rounds; i++)
        *bad |= check(pk) != want;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return ((long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec))
           / rounds;
}

/* The full check is for /certify: measured here, bounded loosely so that
 * a regression by an order of magnitude fails (sanitizers included). For
 * RSA a good modulus costs one Miller-Rabin round that finds it
 * composite, a prime one every round (OpenSSL's worst case); the cheap
 * check, which every verification runs, stays a DER parse. */
static void test_full_check_cost(void)
{
    mp_pubkey pk = ed_key_hex(rfc8032_pub[0]);
    EVP_PKEY *priv = NULL;
    long long ns;
    int bad = 0;

    ns = check_ns(mp_pubkey_check, &pk, 50, MP_OK, &bad);
    fprintf(stderr, "\n  mp_pubkey_check (Ed25519, full): %lld us per key ", ns / 1000);
    CU_ASSERT(ns < 100LL * 1000 * 1000);

    MP_ASSERT_OK(mp_signer_pubkey(t_rsa_broker_key(), &pk));
    ns = check_ns(mp_pubkey_check, &pk, 20, MP_OK, &bad);
    fprintf(stderr, "\n  mp_pubkey_check (RSA-2048, n = pq, full): %lld us per key ", ns / 1000);
    CU_ASSERT(ns < 250LL * 1000 * 1000);
    ns = check_ns(mp_pubkey_check_fast, &pk, 200, MP_OK, &bad);
    fprintf(stderr, "\n  mp_pubkey_check_fast (RSA-2048): %lld us per key ", ns / 1000);

    CU_ASSERT_FATAL(rsa_shaped("prime", &pk, &priv));
    EVP_PKEY_free(priv);
    ns = check_ns(mp_pubkey_check, &pk, 10, MP_ERR_KEY, &bad);
    fprintf(stderr, "\n  mp_pubkey_check (RSA-2048, n prime, full): %lld us per key ", ns / 1000);
    CU_ASSERT(ns < 250LL * 1000 * 1000);
    CU_ASSERT_FALSE(bad);
}

/* ---- the attack --------------------------------------------------------- */

static mp_pw_cert g_cert;
static mp_pw_commit g_commit, g_forged;
static mp_pw_redeem g_red;
static uint8_t g_enc[MP_PW_COMMIT_MAX];

/* A cert the broker signed (as before the fix, when /certify let the key
 * through) for user key *key. */
static void certify_key(const mp_pubkey *key)
{
    memset(&g_cert, 0, sizeof g_cert);
    strcpy(g_cert.broker, "broker.example");
    strcpy(g_cert.user, "mallory");
    g_cert.user_key = *key;
    g_cert.expiry = CERT_EXP;
    g_cert.credit_limit.units = 1000000;
    memcpy(g_cert.credit_limit.cur, "USD", 4);
    g_cert.serial = 7;
    MP_ASSERT_OK(mp_pw_cert_sign(&g_cert, t_broker_key()));
}

static void certify(const uint8_t raw[32])
{
    mp_pubkey pk = ed_key(raw);

    certify_key(&pk);
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

/* What an outsider makes of an RSA public key whose n is prime: the
 * private key, d = e^-1 mod (n - 1), from the key's bytes alone. */
static int private_from_prime_n(const mp_pubkey *pub, EVP_PKEY **priv)
{
    const unsigned char *der = pub->key;
    EVP_PKEY *p = NULL;
    BN_CTX *ctx = BN_CTX_new();
    BIGNUM *n = NULL, *e = NULL, *d = BN_new(), *phi = BN_new();
    mp_pubkey again;
    int ok = 0;

    if (ctx == NULL || d == NULL || phi == NULL
        || (p = d2i_PUBKEY(NULL, &der, pub->len)) == NULL
        || EVP_PKEY_get_bn_param(p, OSSL_PKEY_PARAM_RSA_N, &n) != 1
        || EVP_PKEY_get_bn_param(p, OSSL_PKEY_PARAM_RSA_E, &e) != 1
        || BN_check_prime(n, ctx, NULL) != 1      /* anyone can test it */
        || !BN_sub(phi, n, BN_value_one())
        || BN_mod_inverse(d, e, phi, ctx) == NULL)
        goto done;
    if (!rsa_key(n, e, d, &again, priv))
        goto done;
    ok = again.len == pub->len && memcmp(again.key, pub->key, pub->len) == 0;
    if (!ok) {
        EVP_PKEY_free(*priv);
        *priv = NULL;
    }
done:
    BN_free(phi);
    BN_free(d);
    BN_free(e);
    BN_free(n);
    BN_CTX_free(ctx);
    EVP_PKEY_free(p);
    return ok;
}

/*
 * The finding: an RSA user key with a prime modulus. /certify's check
 * (mp_pubkey_check) refuses it. Had the broker certified it (as before
 * the fix), a vendor who reads n in the cert computes d and signs a
 * commitment in the customer's name, and both the vendor's first-contact
 * check and the broker's redemption check take it: they run the cheap
 * check, which does not look at n (by design: it runs on every
 * verification). /certify is the gate; this shows what it keeps out.
 */
static void test_rsa_prime_modulus_attack(void)
{
    mp_pw_trust trust;
    mp_pubkey victim, good;
    EVP_PKEY *unused = NULL, *outsider = NULL;
    mp_amount value;
    mp_sha *h = NULL;
    uint8_t w[2][32], sig[MP_SIG_MAX];
    size_t len, sig_len = 0;

    memset(&trust, 0, sizeof trust);
    trust.n = 1;
    strcpy(trust.b[0].name, "broker.example");
    MP_ASSERT_OK(mp_signer_pubkey(t_broker_key(), &trust.b[0].key));
    memset(w[1], 0xa5, 32);
    MP_ASSERT_OK(mp_sha256(w[1], 32, w[0]));
    MP_ASSERT_OK(mp_sha_new(&h));

    /* The customer's (badly generated) key: what /certify receives. */
    CU_ASSERT_FATAL(rsa_shaped("prime", &victim, &unused));
    EVP_PKEY_free(unused);
    MP_ASSERT_ST(mp_pubkey_check(&victim), MP_ERR_KEY);
    MP_ASSERT_OK(mp_pubkey_check_fast(&victim));

    /* Before the fix the broker signed the cert... */
    certify_key(&victim);
    MP_ASSERT_OK(mp_pw_cert_verify(&g_cert, &trust, NOW));
    /* ...and the cert's own bytes are all a vendor needs. */
    CU_ASSERT_FATAL(private_from_prime_n(&g_cert.user_key, &outsider));

    /* A commitment in the customer's name: the layout from any RSA-2048
     * signer, the signature the outsider's. */
    memset(&g_commit, 0, sizeof g_commit);
    strcpy(g_commit.vendor, "news.example");
    g_commit.cert = g_cert;
    memcpy(g_commit.w0, w[0], 32);
    g_commit.date = NOW;
    g_commit.expiry = NOW + 86400;
    g_commit.unit.units = 100;
    memcpy(g_commit.unit.cur, "USD", 4);
    g_commit.n = 1000;
    MP_ASSERT_OK(mp_pw_commit_sign(&g_commit, t_rsa_broker_key()));
    MP_ASSERT_OK(mp_pw_commit_encode(&g_commit, g_enc, sizeof g_enc, &len));
    CU_ASSERT_FATAL(g_commit.sig_len == 256 && len == (size_t)g_commit.signed_len + 2 + 256);
    /* Under the real user key, the filler signature is no signature. */
    MP_ASSERT_ST(mp_pw_commit_verify(&g_commit, &trust, "news.example", NOW), MP_ERR_FORGED);
    CU_ASSERT_FATAL(rsa_sign_with(outsider, g_enc, g_commit.signed_len, sig, &sig_len));
    CU_ASSERT_FATAL(sig_len == 256);
    memcpy(g_enc + len - 256, sig, 256);
    MP_ASSERT_OK(mp_pw_commit_decode(g_enc, len, &g_forged));

    /* The vendor takes it, and the broker pays for it. */
    MP_ASSERT_OK(mp_pw_commit_verify(&g_forged, &trust, "news.example", NOW));
    memset(&g_red, 0, sizeof g_red);
    g_red.commit = g_forged;
    g_red.last = 1;
    memcpy(g_red.w_last, w[1], 32);
    MP_ASSERT_OK(mp_pw_redeem_verify(h, &g_red, &trust, &value));
    CU_ASSERT_EQUAL(value.units, 100);

    /* The fix: the key in that cert is what /certify now refuses, and a
     * real RSA key is still certified. */
    MP_ASSERT_ST(mp_pubkey_check(&g_forged.cert.user_key), MP_ERR_KEY);
    CU_ASSERT_FATAL(rsa_shaped("pq", &good, &unused));
    EVP_PKEY_free(unused);
    MP_ASSERT_OK(mp_pubkey_check(&good));
    CU_ASSERT(!private_from_prime_n(&good, &unused));

    EVP_PKEY_free(outsider);
    mp_sha_free(h);
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
        { "RSA user key with a prime modulus, end to end", test_rsa_prime_modulus_attack },
    };
    CU_pSuite s = CU_add_suite("sign (weak keys)", NULL, free_primes);
    size_t i;

    if (s == NULL)
        return -1;
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (CU_add_test(s, tests[i].name, tests[i].fn) == NULL)
            return -1;
    return 0;
}
