/*
 * test_seal.c - libmp/mp_seal.h: AES-256-GCM known answers, round trips up
 * to past 1 MiB, every way a sealed record is refused, and the key
 * derivation against the openssl command line tool.
 *
 * Vectors: McGrew and Viega, "The Galois/Counter Mode of Operation (GCM)",
 * test cases 13-16 (256-bit key, 96-bit IV; 16 adds AAD and a partial final
 * block). They live here, not in tests/vectors/libmp.txt, because
 * test_vectors.c recomputes exactly the entries of that file and would
 * reject a section it does not compute.
 */
#include <stdlib.h>
#include <string.h>
#include "tests.h"

#define MIB (1024 * 1024)

typedef struct {
    const char *name, *key, *iv, *aad, *pt, *ct, *tag;
} gcm_case;

#define TC15_KEY "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
#define TC15_PT  "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72" \
                 "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
#define TC15_CT  "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa" \
                 "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"

static const gcm_case gcm_cases[] = {
    { "13: empty plaintext, no aad",
      "0000000000000000000000000000000000000000000000000000000000000000",
      "000000000000000000000000", "", "", "",
      "530f8afbc74536b9a963b4f1c4cb738b" },
    { "14: one zero block",
      "0000000000000000000000000000000000000000000000000000000000000000",
      "000000000000000000000000", "",
      "00000000000000000000000000000000", "cea7403d4d606b6e074ec5d3baf39d18",
      "d0d1c8a799996bf0265b98b5d48ab919" },
    { "15: four blocks, no aad", TC15_KEY, "cafebabefacedbaddecaf888", "",
      TC15_PT "1aafd255", TC15_CT "898015ad", "b094dac5d93471bdec1a502270e3cc6c" },
    { "16: 60 bytes, 20 bytes of aad", TC15_KEY, "cafebabefacedbaddecaf888",
      "feedfacedeadbeeffeedfacedeadbeefabaddad2",
      TC15_PT, TC15_CT, "76fc6ece0f4e1768cddf8853bb2d551b" },
};

static size_t hex(const char *h, uint8_t *out, size_t cap)
{
    long n = t_hex_decode(h, out, cap);

    CU_ASSERT_FATAL(n >= 0);
    return (size_t)n;
}

static int all_zero(const uint8_t *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

static void test_known_answers(void)
{
    size_t i;

    for (i = 0; i < sizeof gcm_cases / sizeof gcm_cases[0]; i++) {
        const gcm_case *c = &gcm_cases[i];
        uint8_t key[32], iv[12], aad[32], pt[64], want[128], out[128], back[64];
        size_t aad_len, pt_len, n, len = 12345, back_len = 12345;

        CU_ASSERT_FATAL(hex(c->key, key, sizeof key) == MP_SEAL_KEY_LEN);
        CU_ASSERT_FATAL(hex(c->iv, iv, sizeof iv) == MP_SEAL_NONCE_LEN);
        aad_len = hex(c->aad, aad, sizeof aad);
        pt_len = hex(c->pt, pt, sizeof pt);
        /* The sealed form is the vector's IV || C || T. */
        memcpy(want, iv, 12);
        n = 12 + hex(c->ct, want + 12, sizeof want - 12);
        CU_ASSERT_FATAL(n == 12 + pt_len);
        n += hex(c->tag, want + n, sizeof want - n);
        CU_ASSERT_FATAL(n == pt_len + MP_SEAL_OVERHEAD);

        MP_ASSERT_OK(mp_seal_with_nonce(key, iv, aad_len ? aad : NULL, aad_len, pt_len ? pt : NULL,
                                        pt_len, out, sizeof out, &len));
        CU_ASSERT_EQUAL(len, n);
        if (len != n || memcmp(out, want, n) != 0) {
            char h[2 * sizeof out + 1];
            t_hex_encode(out, len <= sizeof out ? len : 0, h);
            fprintf(stderr, "\n  GCM test case %s\n  got %s\n", c->name, h);
            CU_FAIL("sealed bytes differ from the vector");
        }
        MP_ASSERT_OK(mp_unseal(key, aad_len ? aad : NULL, aad_len, want, n, back, sizeof back,
                               &back_len));
        CU_ASSERT_EQUAL(back_len, pt_len);
        CU_ASSERT(memcmp(back, pt, pt_len) == 0);
    }
}

/* Seals and opens sizes around the 1 MiB of the largest stored body, with
 * and without aad; two seals of one input must differ (fresh nonces). */
static void test_round_trips(void)
{
    static const size_t sizes[] = { 0, 1, 15, 16, 17, MIB, MIB + 4099 };
    static const uint8_t aad[] = "broker idem/account 7/request b1";
    uint8_t key[MP_SEAL_KEY_LEN];
    uint64_t rs = 0x5eedf00dULL;
    size_t i, j, cap = MIB + 4099 + MP_SEAL_OVERHEAD;
    uint8_t *pt = malloc(cap), *s1 = malloc(cap), *s2 = malloc(cap), *back = malloc(cap);

    CU_ASSERT_FATAL(pt && s1 && s2 && back);
    for (j = 0; j < cap; j++)
        pt[j] = (uint8_t)t_rand(&rs);
    MP_ASSERT_OK(mp_random(key, sizeof key));
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i], l1 = 0, l2 = 0, lb = 0;
        int with_aad = (int)(i % 2);
        const uint8_t *a = with_aad ? aad : NULL;
        size_t a_len = with_aad ? sizeof aad - 1 : 0;

        MP_ASSERT_OK(mp_seal(key, a, a_len, pt, n, s1, n + MP_SEAL_OVERHEAD, &l1));
        MP_ASSERT_OK(mp_seal(key, a, a_len, pt, n, s2, cap, &l2));
        CU_ASSERT_EQUAL(l1, n + MP_SEAL_OVERHEAD);
        CU_ASSERT_EQUAL(l2, n + MP_SEAL_OVERHEAD);
        CU_ASSERT(memcmp(s1, s2, MP_SEAL_NONCE_LEN) != 0);
        if (n >= 16)
            CU_ASSERT(memcmp(s1 + MP_SEAL_NONCE_LEN, pt, n) != 0);
        MP_ASSERT_OK(mp_unseal(key, a, a_len, s1, l1, back, n, &lb));
        CU_ASSERT_EQUAL(lb, n);
        CU_ASSERT(memcmp(back, pt, n) == 0);
        lb = 0;
        MP_ASSERT_OK(mp_unseal(key, a, a_len, s2, l2, back, cap, &lb));
        CU_ASSERT_EQUAL(lb, n);
        CU_ASSERT(memcmp(back, pt, n) == 0);
    }
    /* A zero-length aad given as a non-NULL pointer equals no aad. */
    {
        size_t l = 0, lb = 0;
        MP_ASSERT_OK(mp_seal(key, aad, 0, pt, 5, s1, cap, &l));
        MP_ASSERT_OK(mp_unseal(key, NULL, 0, s1, l, back, cap, &lb));
        CU_ASSERT_EQUAL(lb, 5);
    }
    mp_wipe(key, sizeof key);
    free(pt);
    free(s1);
    free(s2);
    free(back);
}

/* A forged record: FORGED, out holds no plaintext, *out_len untouched. */
static void expect_forged(const uint8_t *key, const uint8_t *aad, size_t aad_len,
                          const uint8_t *rec, size_t rec_len, size_t pt_len)
{
    uint8_t out[256];
    size_t len = 777;

    memset(out, 0xaa, sizeof out);
    MP_ASSERT_ST(mp_unseal(key, aad, aad_len, rec, rec_len, out, sizeof out, &len),
                 MP_ERR_FORGED);
    CU_ASSERT_EQUAL(len, 777);
    CU_ASSERT(all_zero(out, pt_len));
}

static void test_forgeries(void)
{
    static const uint8_t pt[] = "scrip 0101...: spendable; customer secret 8279...";
    static const uint8_t aad[] = "idem:acct-7:b1";
    uint8_t key[MP_SEAL_KEY_LEN], key2[MP_SEAL_KEY_LEN], rec[256], bad[256];
    size_t pt_len = sizeof pt - 1, len = 0, i, n;

    memset(key, 0x42, sizeof key);
    MP_ASSERT_OK(mp_seal(key, aad, sizeof aad - 1, pt, pt_len, rec, sizeof rec, &len));
    CU_ASSERT_FATAL(len == pt_len + MP_SEAL_OVERHEAD);

    /* One flipped bit anywhere: nonce, first and last ciphertext byte,
     * first and last tag byte; then every byte in turn. */
    {
        const size_t at[] = { 0, 11, 12, 12 + pt_len - 1, 12 + pt_len, len - 1 };
        for (i = 0; i < sizeof at / sizeof at[0]; i++) {
            memcpy(bad, rec, len);
            bad[at[i]] ^= 0x01;
            expect_forged(key, aad, sizeof aad - 1, bad, len, pt_len);
        }
        for (i = 0; i < len; i++) {
            memcpy(bad, rec, len);
            bad[i] ^= 0x80;
            expect_forged(key, aad, sizeof aad - 1, bad, len, pt_len);
        }
    }
    /* Other aad: changed byte, shorter, longer, none. */
    {
        uint8_t a2[sizeof aad + 1];
        memcpy(a2, aad, sizeof aad);
        a2[0] ^= 0x20;
        expect_forged(key, a2, sizeof aad - 1, rec, len, pt_len);
        expect_forged(key, aad, sizeof aad - 2, rec, len, pt_len);
        expect_forged(key, aad, sizeof aad, rec, len, pt_len);
        expect_forged(key, NULL, 0, rec, len, pt_len);
    }
    /* Another key, differing in one bit. */
    memcpy(key2, key, sizeof key);
    key2[31] ^= 0x01;
    expect_forged(key2, aad, sizeof aad - 1, rec, len, pt_len);
    /* Dropped or added bytes shift the tag: still only FORGED. */
    expect_forged(key, aad, sizeof aad - 1, rec, len - 1, pt_len - 1);
    memcpy(bad, rec, len);
    bad[len] = 0;
    expect_forged(key, aad, sizeof aad - 1, bad, len + 1, pt_len + 1);
    /* An empty record with a tag made for another nonce. */
    MP_ASSERT_OK(mp_seal(key, NULL, 0, NULL, 0, bad, sizeof bad, &n));
    CU_ASSERT_EQUAL(n, MP_SEAL_OVERHEAD);
    bad[0] ^= 1;
    expect_forged(key, NULL, 0, bad, n, 0);
    /* The untouched record still opens. */
    {
        uint8_t out[256];
        size_t ol = 0;
        MP_ASSERT_OK(mp_unseal(key, aad, sizeof aad - 1, rec, len, out, sizeof out, &ol));
        CU_ASSERT_EQUAL(ol, pt_len);
        CU_ASSERT(memcmp(out, pt, pt_len) == 0);
    }
}

static void test_bad_arguments(void)
{
    static const uint8_t pt[40] = { 1, 2, 3 };
    uint8_t key[MP_SEAL_KEY_LEN], nonce[MP_SEAL_NONCE_LEN], rec[128], out[128];
    size_t len = 0, keep = 999, rl;

    memset(key, 7, sizeof key);
    memset(nonce, 9, sizeof nonce);
    MP_ASSERT_OK(mp_seal(key, pt, 3, pt, sizeof pt, rec, sizeof rec, &len));
    rl = len;

    /* Truncated: shorter than nonce and tag, down to nothing. */
    MP_ASSERT_ST(mp_unseal(key, pt, 3, rec, MP_SEAL_OVERHEAD - 1, out, sizeof out, &keep),
                 MP_ERR_TRUNCATED);
    MP_ASSERT_ST(mp_unseal(key, pt, 3, rec, 0, out, sizeof out, &keep), MP_ERR_TRUNCATED);

    /* Output too small, by one byte. */
    MP_ASSERT_ST(mp_seal(key, NULL, 0, pt, sizeof pt, out, sizeof pt + MP_SEAL_OVERHEAD - 1,
                         &keep), MP_ERR_ARG);
    MP_ASSERT_ST(mp_seal_with_nonce(key, nonce, NULL, 0, pt, sizeof pt, out,
                                    sizeof pt + MP_SEAL_OVERHEAD - 1, &keep), MP_ERR_ARG);
    MP_ASSERT_ST(mp_unseal(key, pt, 3, rec, rl, out, sizeof pt - 1, &keep), MP_ERR_ARG);
    MP_ASSERT_ST(mp_seal(key, NULL, 0, NULL, 0, out, MP_SEAL_OVERHEAD - 1, &keep), MP_ERR_ARG);

    /* NULL arguments, one at a time. */
    MP_ASSERT_ST(mp_seal(NULL, NULL, 0, pt, 3, out, sizeof out, &keep), MP_ERR_ARG);
    MP_ASSERT_ST(mp_seal(key, NULL, 1, pt, 3, out, sizeof out, &keep), MP_ERR_ARG);
    MP_ASSERT_ST(mp_seal(key, NULL, 0, NULL, 3, out, sizeof out, &keep), MP_ERR_ARG);
    MP_ASSERT_ST(mp_seal(key, NULL, 0, pt, 3, NULL, sizeof out, &keep), MP_ERR_ARG);
    MP_ASSERT_ST(mp_seal(key, NULL, 0, pt, 3, out, sizeof out, NULL), MP_ERR_ARG);
    MP_ASSERT_ST(mp_seal_with_nonce(key, NULL, NULL, 0, pt, 3, out, sizeof out, &keep),
                 MP_ERR_ARG);
    MP_ASSERT_ST(mp_seal_with_nonce(NULL, nonce, NULL, 0, pt, 3, out, sizeof out, &keep),
                 MP_ERR_ARG);
    MP_ASSERT_ST(mp_unseal(NULL, pt, 3, rec, rl, out, sizeof out, &keep), MP_ERR_ARG);
    MP_ASSERT_ST(mp_unseal(key, NULL, 3, rec, rl, out, sizeof out, &keep), MP_ERR_ARG);
    MP_ASSERT_ST(mp_unseal(key, pt, 3, NULL, rl, out, sizeof out, &keep), MP_ERR_ARG);
    MP_ASSERT_ST(mp_unseal(key, pt, 3, rec, rl, NULL, sizeof out, &keep), MP_ERR_ARG);
    MP_ASSERT_ST(mp_unseal(key, pt, 3, rec, rl, out, sizeof out, NULL), MP_ERR_ARG);

    /* Above the size cap: refused before a byte is read. */
    MP_ASSERT_ST(mp_seal(key, NULL, 0, pt, MP_SEAL_MAX + 1, out, (size_t)-1, &keep), MP_ERR_ARG);
    MP_ASSERT_ST(mp_seal(key, pt, MP_SEAL_MAX + 1, pt, 3, out, sizeof out, &keep), MP_ERR_ARG);
    MP_ASSERT_ST(mp_unseal(key, NULL, 0, rec, MP_SEAL_MAX + MP_SEAL_OVERHEAD + 1, out,
                           (size_t)-1, &keep), MP_ERR_ARG);
    MP_ASSERT_ST(mp_unseal(key, pt, MP_SEAL_MAX + 1, rec, rl, out, sizeof out, &keep),
                 MP_ERR_ARG);

    /* Overlapping in and out (in place, or shifted by the nonce). */
    memcpy(out, pt, sizeof pt);
    MP_ASSERT_ST(mp_seal(key, NULL, 0, out, sizeof pt, out, sizeof out, &keep), MP_ERR_ARG);
    memcpy(out, rec, rl);
    MP_ASSERT_ST(mp_unseal(key, pt, 3, out, rl, out + MP_SEAL_NONCE_LEN, sizeof pt, &keep),
                 MP_ERR_ARG);

    CU_ASSERT_EQUAL(keep, 999);
}

/* Expected keys computed with OpenSSL's command line tool, e.g.
 *   printf 'MP1 seal idempotency' | openssl mac -digest SHA256 \
 *       -macopt hexkey:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f HMAC
 *   printf 'x' | openssl mac -digest SHA256 -macopt hexkey:42 HMAC
 * (also `openssl dgst -sha256 -mac HMAC -macopt hexkey:...`). */
static void test_key_derive(void)
{
    static const char label[] = "MP1 seal idempotency";
    uint8_t secret[MP_SECRET_MAX + 1], key[MP_SEAL_KEY_LEN], key2[MP_SEAL_KEY_LEN],
        want[MP_SEAL_KEY_LEN], untouched[MP_SEAL_KEY_LEN], one = 0x42;
    char h[2 * MP_SEAL_KEY_LEN + 1], longl[66];
    size_t i, len = 0, ol = 0;
    uint8_t rec[64], out[64];

    for (i = 0; i < 32; i++)
        secret[i] = (uint8_t)i;
    MP_ASSERT_OK(mp_seal_key_derive(secret, 32, label, key));
    t_hex_encode(key, sizeof key, h);
    CU_ASSERT_STRING_EQUAL(h, "04a51ee97fb8107bd7e8a21d02aad73c7c47a119f668e3a41ceb623ed4c30014");
    MP_ASSERT_OK(mp_seal_key_derive(&one, 1, "x", key2));
    hex("dece3f7d06caa51cb2d863af3786e506389fff1ae8bbdedda094ffda3b54c5f7", want, sizeof want);
    CU_ASSERT(memcmp(key2, want, sizeof want) == 0);

    /* Keys of two labels do not open each other's records. */
    MP_ASSERT_OK(mp_seal_key_derive(secret, 32, "MP1 seal other", key2));
    CU_ASSERT(memcmp(key, key2, sizeof key) != 0);
    MP_ASSERT_OK(mp_seal(key, NULL, 0, (const uint8_t *)"abc", 3, rec, sizeof rec, &len));
    MP_ASSERT_ST(mp_unseal(key2, NULL, 0, rec, len, out, sizeof out, &ol), MP_ERR_FORGED);

    /* Longest label and longest secret are accepted. */
    memset(longl, 'L', sizeof longl);
    longl[64] = '\0';
    memset(secret, 0x33, sizeof secret);
    MP_ASSERT_OK(mp_seal_key_derive(secret, MP_SECRET_MAX, longl, key2));

    /* Refusals leave out as it was. */
    memset(untouched, 0x5c, sizeof untouched);
    memcpy(key2, untouched, sizeof key2);
    longl[64] = 'L';
    longl[65] = '\0';
    MP_ASSERT_ST(mp_seal_key_derive(secret, 32, longl, key2), MP_ERR_ARG);
    MP_ASSERT_ST(mp_seal_key_derive(secret, 32, "", key2), MP_ERR_ARG);
    MP_ASSERT_ST(mp_seal_key_derive(secret, 32, "tab\there", key2), MP_ERR_ARG);
    MP_ASSERT_ST(mp_seal_key_derive(secret, 32, "caf\xc3\xa9", key2), MP_ERR_ARG);
    MP_ASSERT_ST(mp_seal_key_derive(secret, 32, NULL, key2), MP_ERR_ARG);
    MP_ASSERT_ST(mp_seal_key_derive(NULL, 32, label, key2), MP_ERR_ARG);
    MP_ASSERT_ST(mp_seal_key_derive(secret, 0, label, key2), MP_ERR_ARG);
    MP_ASSERT_ST(mp_seal_key_derive(secret, MP_SECRET_MAX + 1, label, key2), MP_ERR_ARG);
    MP_ASSERT_ST(mp_seal_key_derive(secret, 32, label, NULL), MP_ERR_ARG);
    CU_ASSERT(memcmp(key2, untouched, sizeof key2) == 0);
    mp_wipe(key, sizeof key);
    mp_wipe(key2, sizeof key2);
}

int register_seal_tests(void)
{
    static const struct { const char *name; CU_TestFunc fn; } tests[] = {
        { "AES-256-GCM known answers (GCM spec cases 13-16)", test_known_answers },
        { "round trips of 0 bytes to past 1 MiB", test_round_trips },
        { "altered records, other aad and other keys are forged", test_forgeries },
        { "truncated records, small outputs, NULL and oversized arguments", test_bad_arguments },
        { "key derivation matches openssl mac", test_key_derive },
    };
    CU_pSuite s = CU_add_suite("seal", NULL, NULL);
    size_t i;

    if (s == NULL)
        return -1;
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (CU_add_test(s, tests[i].name, tests[i].fn) == NULL)
            return -1;
    return 0;
}
