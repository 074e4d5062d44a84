/*
 * test_crypto.c - known answers and failure statuses of the primitives in
 * libmp/mp_crypto.h, and the status texts of libmp/mp_status.h.
 *
 * Vectors: RFC 4231 (HMAC-SHA256), FIPS 180-2 appendix B (SHA-256),
 * RFC 8032 section 7.1 (Ed25519).
 */
#include <string.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/x509.h>
#include "tests.h"

static size_t hex(const char *h, uint8_t *out, size_t cap)
{
    long n = t_hex_decode(h, out, cap);

    CU_ASSERT_FATAL(n >= 0);
    return (size_t)n;
}

static int hash_eq_hex(const uint8_t *got, size_t n, const char *want_hex)
{
    char h[2 * MP_SIG_MAX + 1];

    t_hex_encode(got, n, h);
    if (strcmp(h, want_hex) != 0) {
        fprintf(stderr, "\n  got  %s\n  want %s\n", h, want_hex);
        return 0;
    }
    return 1;
}

/* ---- HMAC-SHA256: RFC 4231 section 4 --------------------------------------------- */

typedef struct {
    uint8_t key[131];
    size_t key_len;
    uint8_t data[160];
    size_t data_len;
    const char *mac;     /* hex; case 5 gives only the first 128 bits */
} hmac_case;

static size_t rfc4231_cases(hmac_case c[7])
{
    static const char *const t6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    static const char *const t7 =
        "This is a test using a larger than block-size key and a larger than block-size "
        "data. The key needs to be hashed before being used by the HMAC algorithm.";
    size_t i;

    memset(c, 0, 7 * sizeof *c);
    /* 1 */
    memset(c[0].key, 0x0b, 20);
    c[0].key_len = 20;
    memcpy(c[0].data, "Hi There", 8);
    c[0].data_len = 8;
    c[0].mac = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";
    /* 2: key shorter than the output */
    memcpy(c[1].key, "Jefe", 4);
    c[1].key_len = 4;
    c[1].data_len = strlen("what do ya want for nothing?");
    memcpy(c[1].data, "what do ya want for nothing?", c[1].data_len);
    c[1].mac = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    /* 3: combined length of key and data larger than 64 bytes */
    memset(c[2].key, 0xaa, 20);
    c[2].key_len = 20;
    memset(c[2].data, 0xdd, 50);
    c[2].data_len = 50;
    c[2].mac = "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe";
    /* 4 */
    for (i = 0; i < 25; i++)
        c[3].key[i] = (uint8_t)(i + 1);
    c[3].key_len = 25;
    memset(c[3].data, 0xcd, 50);
    c[3].data_len = 50;
    c[3].mac = "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b";
    /* 5: truncation to 128 bits */
    memset(c[4].key, 0x0c, 20);
    c[4].key_len = 20;
    memcpy(c[4].data, "Test With Truncation", 20);
    c[4].data_len = 20;
    c[4].mac = "a3b6167473100ee06e0c796c2955552b";
    /* 6: key larger than the block size */
    memset(c[5].key, 0xaa, 131);
    c[5].key_len = 131;
    c[5].data_len = strlen(t6);
    memcpy(c[5].data, t6, c[5].data_len);
    c[5].mac = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54";
    /* 7: key and data larger than the block size */
    memset(c[6].key, 0xaa, 131);
    c[6].key_len = 131;
    c[6].data_len = strlen(t7);
    CU_ASSERT_FATAL(c[6].data_len <= sizeof c[6].data);
    memcpy(c[6].data, t7, c[6].data_len);
    c[6].mac = "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2";
    return 7;
}

/* Compares a full MAC to the case's (possibly truncated) answer. */
static int mac_matches(const hmac_case *c, const uint8_t mac[MP_HASH_LEN])
{
    return hash_eq_hex(mac, strlen(c->mac) / 2, c->mac);
}

static void test_hmac_oneshot(void)
{
    hmac_case c[7];
    size_t n = rfc4231_cases(c), i;

    for (i = 0; i < n; i++) {
        uint8_t mac[MP_HASH_LEN];

        MP_ASSERT_OK(mp_hmac(c[i].key, c[i].key_len, c[i].data, c[i].data_len, mac));
        CU_ASSERT(mac_matches(&c[i], mac));
    }
}

/* The data cut into up to 8 parts at several places, with empty parts. */
static void test_hmac_iov(void)
{
    hmac_case c[7];
    size_t n = rfc4231_cases(c), i, cut;

    for (i = 0; i < n; i++) {
        const uint8_t *d = c[i].data;
        size_t len = c[i].data_len;
        uint8_t mac[MP_HASH_LEN], again[MP_HASH_LEN];
        mp_mac *m = NULL;
        mp_iov iov[8];
        int bad = 0;

        MP_ASSERT_OK(mp_mac_new(c[i].key, c[i].key_len, &m));
        CU_ASSERT_FATAL(m != NULL);
        /* one part */
        iov[0].p = d;
        iov[0].len = len;
        MP_ASSERT_OK(mp_mac_compute(m, iov, 1, mac));
        CU_ASSERT(mac_matches(&c[i], mac));
        /* every two-part split, the context reused each time */
        for (cut = 0; cut <= len; cut++) {
            iov[0].p = d;
            iov[0].len = cut;
            iov[1].p = d + cut;
            iov[1].len = len - cut;
            MP_ASSERT_OK(mp_mac_compute(m, iov, 2, again));
            bad |= memcmp(again, mac, MP_HASH_LEN) != 0;
        }
        CU_ASSERT(!bad);
        /* eight uneven parts, empty ones included (a NULL pointer with
         * length 0 is allowed) */
        {
            size_t b[9] = { 0, 0, 1, 3, len / 3, len / 3, len / 2, len - 1, len }, k;

            for (k = 0; k < 8; k++) {
                if (b[k] > b[k + 1])
                    b[k + 1] = b[k];
                iov[k].p = b[k + 1] == b[k] ? NULL : d + b[k];
                iov[k].len = b[k + 1] - b[k];
            }
            iov[0].p = d;      /* a non-NULL empty part, too */
            MP_ASSERT_OK(mp_mac_compute(m, iov, 8, again));
            CU_ASSERT(memcmp(again, mac, MP_HASH_LEN) == 0);
        }
        /* one byte per part over the first 8 bytes and the rest lost: a
         * different message, a different MAC */
        if (len > 8) {
            size_t k;

            for (k = 0; k < 8; k++) {
                iov[k].p = d + k;
                iov[k].len = 1;
            }
            MP_ASSERT_OK(mp_mac_compute(m, iov, 8, again));
            CU_ASSERT(memcmp(again, mac, MP_HASH_LEN) != 0);
        }
        mp_mac_free(m);
    }
}

static void test_hmac_dup_rekey(void)
{
    hmac_case c[7];
    size_t n = rfc4231_cases(c), i;
    uint8_t other[MP_SECRET_LEN];
    mp_mac *shared = NULL;
    mp_iov iov;

    memset(other, 0x42, sizeof other);
    MP_ASSERT_OK(mp_mac_new(other, sizeof other, &shared));
    CU_ASSERT_FATAL(shared != NULL);
    for (i = 0; i < n; i++) {
        uint8_t mac[MP_HASH_LEN], want[MP_HASH_LEN], key[131];
        mp_mac *m = NULL, *d = NULL;

        iov.p = c[i].data;
        iov.len = c[i].data_len;
        MP_ASSERT_OK(mp_hmac(c[i].key, c[i].key_len, c[i].data, c[i].data_len, want));

        /* dup of a fresh and of a used context; the copy is independent */
        memcpy(key, c[i].key, c[i].key_len);
        MP_ASSERT_OK(mp_mac_new(key, c[i].key_len, &m));
        mp_wipe(key, sizeof key);          /* the object keeps its own copy */
        MP_ASSERT_OK(mp_mac_dup(m, &d));
        MP_ASSERT_OK(mp_mac_compute(d, &iov, 1, mac));
        CU_ASSERT(memcmp(mac, want, MP_HASH_LEN) == 0);
        MP_ASSERT_OK(mp_mac_compute(m, &iov, 1, mac));
        CU_ASSERT(memcmp(mac, want, MP_HASH_LEN) == 0);
        mp_mac_free(d);
        d = NULL;
        MP_ASSERT_OK(mp_mac_dup(m, &d));
        mp_mac_free(m);                     /* the copy outlives the original */
        MP_ASSERT_OK(mp_mac_compute(d, &iov, 1, mac));
        CU_ASSERT(memcmp(mac, want, MP_HASH_LEN) == 0);
        /* rekeying the copy does not touch a second copy */
        MP_ASSERT_OK(mp_mac_dup(d, &m));
        MP_ASSERT_OK(mp_mac_rekey(d, other, sizeof other));
        MP_ASSERT_OK(mp_mac_compute(m, &iov, 1, mac));
        CU_ASSERT(memcmp(mac, want, MP_HASH_LEN) == 0);
        MP_ASSERT_OK(mp_mac_compute(d, &iov, 1, mac));
        CU_ASSERT(memcmp(mac, want, MP_HASH_LEN) != 0);
        mp_mac_free(m);
        mp_mac_free(d);

        /* one long-lived context re-keyed from vector to vector */
        MP_ASSERT_OK(mp_mac_rekey(shared, c[i].key, c[i].key_len));
        MP_ASSERT_OK(mp_mac_compute(shared, &iov, 1, mac));
        CU_ASSERT(mac_matches(&c[i], mac));
        MP_ASSERT_OK(mp_mac_compute(shared, &iov, 1, mac));
        CU_ASSERT(mac_matches(&c[i], mac));
    }
    mp_mac_free(shared);
}

static void test_hmac_args(void)
{
    uint8_t key[MP_SECRET_MAX + 1], mac[MP_HASH_LEN], ref[MP_HASH_LEN], empty[MP_HASH_LEN];
    mp_mac *m = NULL;
    mp_iov iov[9];
    size_t i;

    memset(key, 0x11, sizeof key);
    MP_ASSERT_ST(mp_mac_new(key, 0, &m), MP_ERR_ARG);
    MP_ASSERT_ST(mp_mac_new(key, MP_SECRET_MAX + 1, &m), MP_ERR_ARG);
    MP_ASSERT_ST(mp_mac_new(NULL, 32, &m), MP_ERR_ARG);
    MP_ASSERT_ST(mp_hmac(key, 0, "x", 1, mac), MP_ERR_ARG);
    CU_ASSERT(m == NULL);
    MP_ASSERT_OK(mp_mac_new(key, MP_SECRET_MAX, &m));
    CU_ASSERT_FATAL(m != NULL);
    MP_ASSERT_ST(mp_mac_rekey(m, key, 0), MP_ERR_ARG);
    MP_ASSERT_ST(mp_mac_rekey(m, key, MP_SECRET_MAX + 1), MP_ERR_ARG);
    MP_ASSERT_ST(mp_mac_rekey(NULL, key, 1), MP_ERR_ARG);

    /* no parts: the MAC of the empty message */
    MP_ASSERT_OK(mp_hmac(key, MP_SECRET_MAX, NULL, 0, ref));
    MP_ASSERT_OK(mp_mac_compute(m, NULL, 0, empty));
    CU_ASSERT(memcmp(ref, empty, MP_HASH_LEN) == 0);
    for (i = 0; i < 9; i++) {
        iov[i].p = "";
        iov[i].len = 0;
    }
    MP_ASSERT_OK(mp_mac_compute(m, iov, 8, mac));
    CU_ASSERT(memcmp(mac, empty, MP_HASH_LEN) == 0);

    memset(mac, 0x5a, sizeof mac);
    memcpy(ref, mac, sizeof ref);
    MP_ASSERT_ST(mp_mac_compute(m, iov, 9, mac), MP_ERR_ARG);
    MP_ASSERT_ST(mp_mac_compute(m, NULL, 1, mac), MP_ERR_ARG);
    iov[3].p = NULL;
    iov[3].len = 1;
    MP_ASSERT_ST(mp_mac_compute(m, iov, 4, mac), MP_ERR_ARG);
    CU_ASSERT(memcmp(mac, ref, sizeof ref) == 0);
    MP_ASSERT_ST(mp_mac_compute(NULL, iov, 1, mac), MP_ERR_ARG);
    MP_ASSERT_ST(mp_mac_dup(NULL, &m), MP_ERR_ARG);
    /* the context still works after refused calls */
    MP_ASSERT_OK(mp_mac_compute(m, NULL, 0, mac));
    CU_ASSERT(memcmp(mac, empty, MP_HASH_LEN) == 0);
    mp_mac_free(m);
    mp_mac_free(NULL);
}

/* ---- SHA-256 ------------------------------------------------------------------------- */

static void test_sha_kat(void)
{
    static const struct {
        const char *msg;
        const char *hash;
    } v[] = {
        { "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
        { "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
        { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
    };
    static uint8_t million[1000000];
    mp_sha *h = NULL;
    uint8_t out[MP_HASH_LEN];
    size_t i;
    int round;

    MP_ASSERT_OK(mp_sha_new(&h));
    CU_ASSERT_FATAL(h != NULL);
    /* twice round: the hasher is reused across messages */
    for (round = 0; round < 2; round++) {
        for (i = 0; i < sizeof v / sizeof v[0]; i++) {
            MP_ASSERT_OK(mp_sha_digest(h, v[i].msg, strlen(v[i].msg), out));
            CU_ASSERT(hash_eq_hex(out, MP_HASH_LEN, v[i].hash));
            memset(out, 0, sizeof out);
            MP_ASSERT_OK(mp_sha256(v[i].msg, strlen(v[i].msg), out));
            CU_ASSERT(hash_eq_hex(out, MP_HASH_LEN, v[i].hash));
        }
    }
    /* the empty message may come as NULL */
    MP_ASSERT_OK(mp_sha_digest(h, NULL, 0, out));
    CU_ASSERT(hash_eq_hex(out, MP_HASH_LEN, v[1].hash));
    MP_ASSERT_OK(mp_sha256(NULL, 0, out));
    CU_ASSERT(hash_eq_hex(out, MP_HASH_LEN, v[1].hash));
    /* FIPS 180-2 B.3: one million 'a' */
    memset(million, 'a', sizeof million);
    MP_ASSERT_OK(mp_sha_digest(h, million, sizeof million, out));
    CU_ASSERT(hash_eq_hex(out, MP_HASH_LEN,
                          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));

    memset(out, 0x5a, sizeof out);
    MP_ASSERT_ST(mp_sha_digest(h, NULL, 1, out), MP_ERR_ARG);
    MP_ASSERT_ST(mp_sha_digest(NULL, "abc", 3, out), MP_ERR_ARG);
    MP_ASSERT_ST(mp_sha256(NULL, 1, out), MP_ERR_ARG);
    for (i = 0; i < sizeof out; i++)
        CU_ASSERT_EQUAL(out[i], 0x5a);
    mp_sha_free(h);
    mp_sha_free(NULL);
}

static void test_sha_iterate(void)
{
    static const uint32_t times[] = { 0, 1, 2, 3, 1000, 17, 0, 1 };
    mp_sha *h = NULL, *ref = NULL;
    uint8_t seed[MP_HASH_LEN], want[MP_HASH_LEN], got[MP_HASH_LEN];
    size_t i;
    uint32_t k;

    MP_ASSERT_OK(mp_sha_new(&h));
    MP_ASSERT_OK(mp_sha_new(&ref));
    CU_ASSERT_FATAL(h != NULL && ref != NULL);
    MP_ASSERT_OK(mp_sha256("abc", 3, seed));
    for (i = 0; i < sizeof times / sizeof times[0]; i++) {
        memcpy(want, seed, MP_HASH_LEN);
        for (k = 0; k < times[i]; k++)
            MP_ASSERT_OK(mp_sha_digest(ref, want, MP_HASH_LEN, want));
        memset(got, 0, sizeof got);
        MP_ASSERT_OK(mp_sha_iterate(h, seed, times[i], got));
        if (memcmp(got, want, MP_HASH_LEN) != 0)
            fprintf(stderr, "\n  iterate %u differs\n", (unsigned)times[i]);
        CU_ASSERT(memcmp(got, want, MP_HASH_LEN) == 0);
        /* the same hasher still hashes correctly after iterating */
        MP_ASSERT_OK(mp_sha_digest(h, "abc", 3, got));
        CU_ASSERT(hash_eq_hex(got, MP_HASH_LEN,
                              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    }
    /* one step is SHA-256 of the 32 bytes: a known answer */
    MP_ASSERT_OK(mp_sha_iterate(h, seed, 1, got));
    MP_ASSERT_OK(mp_sha256(seed, MP_HASH_LEN, want));
    CU_ASSERT(memcmp(got, want, MP_HASH_LEN) == 0);
    /* 1000 = 600 + 400 */
    MP_ASSERT_OK(mp_sha_iterate(h, seed, 600, got));
    MP_ASSERT_OK(mp_sha_iterate(h, got, 400, got));
    MP_ASSERT_OK(mp_sha_iterate(h, seed, 1000, want));
    CU_ASSERT(memcmp(got, want, MP_HASH_LEN) == 0);

    memset(got, 0x5a, sizeof got);
    memset(want, 0x5a, sizeof want);
    MP_ASSERT_ST(mp_sha_iterate(NULL, seed, 1, got), MP_ERR_ARG);
    MP_ASSERT_ST(mp_sha_iterate(h, NULL, 1, got), MP_ERR_ARG);
    MP_ASSERT_ST(mp_sha_iterate(h, seed, 1, NULL), MP_ERR_ARG);
    CU_ASSERT(memcmp(got, want, MP_HASH_LEN) == 0);
    mp_sha_free(h);
    mp_sha_free(ref);
}

/* ---- Ed25519: RFC 8032 section 7.1 ------------------------------------------------------ */

static const struct {
    const char *name, *secret, *pub, *msg, *sig;
} rfc8032[] = {
    { "TEST 1",
      "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
      "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
      "",
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
      "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b" },
    { "TEST 2",
      "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
      "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
      "72",
      "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
      "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00" },
    { "TEST 3",
      "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
      "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
      "af82",
      "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
      "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a" },
    { "TEST SHA(abc)",
      "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
      "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
      "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
      "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
      "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
      "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704" },
};

static void test_ed25519_rfc8032(void)
{
    size_t i;

    for (i = 0; i < sizeof rfc8032 / sizeof rfc8032[0]; i++) {
        uint8_t seed[32], msg[64], want_sig[64], sig[MP_SIG_MAX];
        size_t msg_len, sig_len = 0;
        mp_signer *s = NULL;
        mp_pubkey pk, rfc_pk;

        CU_ASSERT_EQUAL(hex(rfc8032[i].secret, seed, sizeof seed), 32);
        msg_len = hex(rfc8032[i].msg, msg, sizeof msg);
        CU_ASSERT_EQUAL(hex(rfc8032[i].sig, want_sig, sizeof want_sig), 64);

        MP_ASSERT_OK(mp_signer_from_seed(seed, &s));
        CU_ASSERT_FATAL(s != NULL);
        MP_ASSERT_OK(mp_signer_pubkey(s, &pk));
        CU_ASSERT_EQUAL(pk.alg, MP_KEY_ED25519);
        CU_ASSERT_EQUAL(pk.len, MP_ED25519_PUB_LEN);
        if (!hash_eq_hex(pk.key, pk.len, rfc8032[i].pub))
            fprintf(stderr, "  (%s public key)\n", rfc8032[i].name);
        CU_ASSERT(hash_eq_hex(pk.key, MP_ED25519_PUB_LEN, rfc8032[i].pub));
        MP_ASSERT_OK(mp_pubkey_check(&pk));

        MP_ASSERT_OK(mp_sign(s, msg, msg_len, sig, &sig_len));
        CU_ASSERT_EQUAL(sig_len, MP_ED25519_SIG_LEN);
        if (!hash_eq_hex(sig, MP_ED25519_SIG_LEN, rfc8032[i].sig))
            fprintf(stderr, "  (%s signature)\n", rfc8032[i].name);
        CU_ASSERT(memcmp(sig, want_sig, 64) == 0);
        MP_ASSERT_OK(mp_verify(&pk, msg, msg_len, sig, sig_len));

        /* a public key built from the RFC bytes, not from the signer */
        memset(&rfc_pk, 0, sizeof rfc_pk);
        rfc_pk.alg = MP_KEY_ED25519;
        rfc_pk.len = (uint16_t)hex(rfc8032[i].pub, rfc_pk.key, sizeof rfc_pk.key);
        MP_ASSERT_OK(mp_verify(&rfc_pk, msg, msg_len, want_sig, 64));
        if (msg_len == 0) {
            MP_ASSERT_OK(mp_verify(&rfc_pk, NULL, 0, want_sig, 64));
            MP_ASSERT_OK(mp_sign(s, NULL, 0, sig, &sig_len));
            CU_ASSERT(memcmp(sig, want_sig, 64) == 0);
        }
        mp_signer_free(s);
    }
}

static void test_ed25519_forged(void)
{
    size_t i, bit;

    for (i = 0; i < sizeof rfc8032 / sizeof rfc8032[0]; i++) {
        uint8_t msg[65], sig[64], bad[64];
        size_t msg_len;
        mp_pubkey pk, badpk;
        int wrong;

        memset(&pk, 0, sizeof pk);
        pk.alg = MP_KEY_ED25519;
        pk.len = (uint16_t)hex(rfc8032[i].pub, pk.key, sizeof pk.key);
        msg_len = hex(rfc8032[i].msg, msg, sizeof msg - 1);
        hex(rfc8032[i].sig, sig, sizeof sig);
        MP_ASSERT_OK(mp_verify(&pk, msg, msg_len, sig, 64));

        /* message: every bit flipped in turn, one byte more, one less */
        wrong = 0;
        for (bit = 0; bit < 8 * msg_len; bit++) {
            msg[bit / 8] ^= (uint8_t)(1u << bit % 8);
            wrong |= mp_verify(&pk, msg, msg_len, sig, 64) != MP_ERR_FORGED;
            msg[bit / 8] ^= (uint8_t)(1u << bit % 8);
        }
        CU_ASSERT(!wrong);
        msg[msg_len] = 0;
        MP_ASSERT_ST(mp_verify(&pk, msg, msg_len + 1, sig, 64), MP_ERR_FORGED);
        if (msg_len > 0)
            MP_ASSERT_ST(mp_verify(&pk, msg, msg_len - 1, sig, 64), MP_ERR_FORGED);

        /* signature: every one of the 512 bits */
        wrong = 0;
        for (bit = 0; bit < 512; bit++) {
            memcpy(bad, sig, 64);
            bad[bit / 8] ^= (uint8_t)(1u << bit % 8);
            wrong |= mp_verify(&pk, msg, msg_len, bad, 64) != MP_ERR_FORGED;
        }
        CU_ASSERT(!wrong);

        /* key: every one of the 256 bits (some give no valid point: still
         * just a signature that does not verify) */
        wrong = 0;
        for (bit = 0; bit < 256; bit++) {
            badpk = pk;
            badpk.key[bit / 8] ^= (uint8_t)(1u << bit % 8);
            wrong |= mp_verify(&badpk, msg, msg_len, sig, 64) != MP_ERR_FORGED;
        }
        CU_ASSERT(!wrong);

        /* wrong signature sizes are forgeries, not argument errors */
        MP_ASSERT_ST(mp_verify(&pk, msg, msg_len, sig, 63), MP_ERR_FORGED);
        MP_ASSERT_ST(mp_verify(&pk, msg, msg_len, sig, 0), MP_ERR_FORGED);
        MP_ASSERT_ST(mp_verify(&pk, msg, msg_len, sig, 1), MP_ERR_FORGED);
        {
            uint8_t longer[65];

            memcpy(longer, sig, 64);
            longer[64] = 0;
            MP_ASSERT_ST(mp_verify(&pk, msg, msg_len, longer, 65), MP_ERR_FORGED);
        }
        /* a signature made by another test vector's key */
        if (i > 0) {
            uint8_t other[64];

            hex(rfc8032[i - 1].sig, other, sizeof other);
            MP_ASSERT_ST(mp_verify(&pk, msg, msg_len, other, 64), MP_ERR_FORGED);
        }
    }
}

static void test_ed25519_key(void)
{
    uint8_t sig[64] = { 0 };
    mp_pubkey pk;

    memset(&pk, 0, sizeof pk);
    pk.alg = MP_KEY_ED25519;
    pk.len = (uint16_t)hex(rfc8032[0].pub, pk.key, sizeof pk.key);
    hex(rfc8032[0].sig, sig, sizeof sig);
    MP_ASSERT_OK(mp_pubkey_check(&pk));

    pk.len = 31;
    MP_ASSERT_ST(mp_verify(&pk, NULL, 0, sig, 64), MP_ERR_KEY);
    MP_ASSERT_ST(mp_pubkey_check(&pk), MP_ERR_KEY);
    pk.len = 33;
    MP_ASSERT_ST(mp_verify(&pk, NULL, 0, sig, 64), MP_ERR_KEY);
    MP_ASSERT_ST(mp_pubkey_check(&pk), MP_ERR_KEY);
    pk.len = 0;
    MP_ASSERT_ST(mp_verify(&pk, NULL, 0, sig, 64), MP_ERR_KEY);
    /* the key check comes before the signature size check */
    pk.len = 31;
    MP_ASSERT_ST(mp_verify(&pk, NULL, 0, sig, 63), MP_ERR_KEY);
    /* unknown algorithms */
    pk.len = 32;
    pk.alg = 0;
    MP_ASSERT_ST(mp_verify(&pk, NULL, 0, sig, 64), MP_ERR_KEY);
    MP_ASSERT_ST(mp_pubkey_check(&pk), MP_ERR_KEY);
    pk.alg = 3;
    MP_ASSERT_ST(mp_verify(&pk, NULL, 0, sig, 64), MP_ERR_KEY);
    /* a raw Ed25519 key labelled RSA is no DER */
    pk.alg = MP_KEY_RSA;
    MP_ASSERT_ST(mp_verify(&pk, NULL, 0, sig, 64), MP_ERR_KEY);
    MP_ASSERT_ST(mp_pubkey_check(&pk), MP_ERR_KEY);

    pk.alg = MP_KEY_ED25519;
    MP_ASSERT_ST(mp_verify(NULL, NULL, 0, sig, 64), MP_ERR_ARG);
    MP_ASSERT_ST(mp_verify(&pk, NULL, 1, sig, 64), MP_ERR_ARG);
    MP_ASSERT_ST(mp_verify(&pk, NULL, 0, NULL, 64), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pubkey_check(NULL), MP_ERR_ARG);
}

static void test_ed25519_generate(void)
{
    mp_signer *a = NULL, *b = NULL;
    mp_pubkey pa, pb;
    uint8_t sig[MP_SIG_MAX];
    size_t sig_len = 0;
    static const char msg[] = "generated key";

    MP_ASSERT_OK(mp_signer_generate(&a));
    MP_ASSERT_OK(mp_signer_generate(&b));
    CU_ASSERT_FATAL(a != NULL && b != NULL);
    MP_ASSERT_OK(mp_signer_pubkey(a, &pa));
    MP_ASSERT_OK(mp_signer_pubkey(b, &pb));
    CU_ASSERT(memcmp(pa.key, pb.key, 32) != 0);
    MP_ASSERT_OK(mp_sign(a, msg, sizeof msg, sig, &sig_len));
    CU_ASSERT_EQUAL(sig_len, 64);
    MP_ASSERT_OK(mp_verify(&pa, msg, sizeof msg, sig, sig_len));
    MP_ASSERT_ST(mp_verify(&pb, msg, sizeof msg, sig, sig_len), MP_ERR_FORGED);
    MP_ASSERT_ST(mp_sign(NULL, msg, 1, sig, &sig_len), MP_ERR_ARG);
    MP_ASSERT_ST(mp_sign(a, NULL, 1, sig, &sig_len), MP_ERR_ARG);
    MP_ASSERT_ST(mp_sign(a, msg, 1, NULL, &sig_len), MP_ERR_ARG);
    MP_ASSERT_ST(mp_sign(a, msg, 1, sig, NULL), MP_ERR_ARG);
    MP_ASSERT_ST(mp_signer_pubkey(NULL, &pa), MP_ERR_ARG);
    MP_ASSERT_ST(mp_signer_generate(NULL), MP_ERR_ARG);
    MP_ASSERT_ST(mp_signer_from_seed(NULL, &b), MP_ERR_ARG);
    mp_signer_free(a);
    mp_signer_free(b);
    mp_signer_free(NULL);
}

/* ---- RSA ------------------------------------------------------------------------------ */

/* DER SubjectPublicKeyInfo of an OpenSSL key into pk; 0 on failure. */
static int der_pubkey(EVP_PKEY *p, uint8_t alg, mp_pubkey *pk)
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(p, &der);

    memset(pk, 0, sizeof *pk);
    if (n <= 0 || n > MP_PUBKEY_MAX) {
        OPENSSL_free(der);
        return 0;
    }
    pk->alg = alg;
    pk->len = (uint16_t)n;
    memcpy(pk->key, der, (size_t)n);
    OPENSSL_free(der);
    return 1;
}

static void test_rsa_sign_verify(void)
{
    static const char msg[] = "a PayWord certificate, signed by an RSA broker";
    mp_signer *s = t_rsa_broker_key();
    uint8_t sig[MP_SIG_MAX], sig2[MP_SIG_MAX], bad[MP_SIG_MAX];
    size_t sig_len = 0, sig2_len = 0, bit;
    mp_pubkey pk, badpk;
    uint8_t tampered[sizeof msg];
    int wrong;

    MP_ASSERT_OK(mp_signer_pubkey(s, &pk));
    CU_ASSERT_EQUAL(pk.alg, MP_KEY_RSA);
    CU_ASSERT(pk.len > 256 && pk.len <= MP_PUBKEY_MAX);
    MP_ASSERT_OK(mp_pubkey_check(&pk));
    MP_ASSERT_OK(mp_sign(s, msg, sizeof msg, sig, &sig_len));
    CU_ASSERT_EQUAL(sig_len, 256);
    MP_ASSERT_OK(mp_verify(&pk, msg, sizeof msg, sig, sig_len));
    /* PKCS#1 v1.5 is deterministic */
    MP_ASSERT_OK(mp_sign(s, msg, sizeof msg, sig2, &sig2_len));
    CU_ASSERT(sig2_len == sig_len && memcmp(sig, sig2, sig_len) == 0);
    /* empty message */
    MP_ASSERT_OK(mp_sign(s, NULL, 0, sig2, &sig2_len));
    MP_ASSERT_OK(mp_verify(&pk, NULL, 0, sig2, sig2_len));
    MP_ASSERT_ST(mp_verify(&pk, msg, sizeof msg, sig2, sig2_len), MP_ERR_FORGED);

    /* tampered message */
    memcpy(tampered, msg, sizeof msg);
    tampered[5] ^= 0x20;
    MP_ASSERT_ST(mp_verify(&pk, tampered, sizeof tampered, sig, sig_len), MP_ERR_FORGED);
    MP_ASSERT_ST(mp_verify(&pk, msg, sizeof msg - 1, sig, sig_len), MP_ERR_FORGED);
    /* tampered signature: a spread of bit positions, top byte included */
    wrong = 0;
    for (bit = 0; bit < 8 * sig_len; bit += 61) {
        memcpy(bad, sig, sig_len);
        bad[bit / 8] ^= (uint8_t)(1u << bit % 8);
        wrong |= mp_verify(&pk, msg, sizeof msg, bad, sig_len) != MP_ERR_FORGED;
    }
    memcpy(bad, sig, sig_len);
    bad[0] ^= 0x80;            /* most likely above the modulus */
    wrong |= mp_verify(&pk, msg, sizeof msg, bad, sig_len) != MP_ERR_FORGED;
    memset(bad, 0xff, sig_len);
    wrong |= mp_verify(&pk, msg, sizeof msg, bad, sig_len) != MP_ERR_FORGED;
    memset(bad, 0, sig_len);
    wrong |= mp_verify(&pk, msg, sizeof msg, bad, sig_len) != MP_ERR_FORGED;
    CU_ASSERT(!wrong);
    /* wrong sizes */
    MP_ASSERT_ST(mp_verify(&pk, msg, sizeof msg, sig, sig_len - 1), MP_ERR_FORGED);
    MP_ASSERT_ST(mp_verify(&pk, msg, sizeof msg, sig, 64), MP_ERR_FORGED);
    MP_ASSERT_ST(mp_verify(&pk, msg, sizeof msg, sig, 0), MP_ERR_FORGED);
    memset(sig2, 0, sizeof sig2);
    memcpy(sig2 + 1, sig, sig_len);    /* leading zero: 257 bytes */
    MP_ASSERT_ST(mp_verify(&pk, msg, sizeof msg, sig2, sig_len + 1), MP_ERR_FORGED);
    /* a different key's signature */
    {
        mp_pubkey edpk;

        MP_ASSERT_OK(mp_signer_pubkey(t_broker_key(), &edpk));
        MP_ASSERT_ST(mp_verify(&edpk, msg, sizeof msg, sig, sig_len), MP_ERR_FORGED);
    }
    /* a modulus byte changed: still a parseable 2048-bit key, wrong one */
    badpk = pk;
    badpk.key[badpk.len - 40] ^= 0x01;
    MP_ASSERT_ST(mp_verify(&badpk, msg, sizeof msg, sig, sig_len), MP_ERR_FORGED);
}

static void test_rsa_bad_keys(void)
{
    static const char msg[] = "m";
    mp_signer *s = t_rsa_broker_key();
    uint8_t sig[MP_SIG_MAX], raw[32];
    size_t sig_len = 0;
    mp_pubkey pk, bad;
    EVP_PKEY *small = NULL, *ed = NULL;

    MP_ASSERT_OK(mp_signer_pubkey(s, &pk));
    MP_ASSERT_OK(mp_sign(s, msg, sizeof msg, sig, &sig_len));

    /* truncated DER, by one byte and by half */
    bad = pk;
    bad.len = (uint16_t)(pk.len - 1);
    MP_ASSERT_ST(mp_verify(&bad, msg, sizeof msg, sig, sig_len), MP_ERR_KEY);
    MP_ASSERT_ST(mp_pubkey_check(&bad), MP_ERR_KEY);
    bad.len = (uint16_t)(pk.len / 2);
    MP_ASSERT_ST(mp_verify(&bad, msg, sizeof msg, sig, sig_len), MP_ERR_KEY);
    bad.len = 0;
    MP_ASSERT_ST(mp_verify(&bad, msg, sizeof msg, sig, sig_len), MP_ERR_KEY);
    bad.len = MP_PUBKEY_MAX + 1;
    MP_ASSERT_ST(mp_pubkey_check(&bad), MP_ERR_KEY);
    /* a trailing byte after the DER */
    bad = pk;
    bad.key[bad.len++] = 0;
    MP_ASSERT_ST(mp_verify(&bad, msg, sizeof msg, sig, sig_len), MP_ERR_KEY);
    MP_ASSERT_ST(mp_pubkey_check(&bad), MP_ERR_KEY);
    /* the DER tag broken */
    bad = pk;
    bad.key[0] ^= 0x01;
    MP_ASSERT_ST(mp_verify(&bad, msg, sizeof msg, sig, sig_len), MP_ERR_KEY);
    /* RSA DER labelled Ed25519 */
    bad = pk;
    bad.alg = MP_KEY_ED25519;
    MP_ASSERT_ST(mp_verify(&bad, msg, sizeof msg, sig, sig_len), MP_ERR_KEY);

    /* RSA-1024 is below the floor */
    small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    CU_ASSERT_FATAL(small != NULL);
    CU_ASSERT_FATAL(der_pubkey(small, MP_KEY_RSA, &bad));
    MP_ASSERT_ST(mp_pubkey_check(&bad), MP_ERR_KEY);
    MP_ASSERT_ST(mp_verify(&bad, msg, sizeof msg, sig, 128), MP_ERR_KEY);
    MP_ASSERT_ST(mp_verify(&bad, msg, sizeof msg, sig, sig_len), MP_ERR_KEY);
    /* ...also as a private key in PEM */
    {
        BIO *bio = BIO_new(BIO_s_mem());
        char *pem = NULL;
        long n;
        mp_signer *weak = NULL;

        CU_ASSERT_FATAL(bio != NULL);
        CU_ASSERT_FATAL(PEM_write_bio_PKCS8PrivateKey(bio, small, NULL, NULL, 0, NULL, NULL) == 1);
        n = BIO_get_mem_data(bio, &pem);
        CU_ASSERT_FATAL(n > 0);
        MP_ASSERT_ST(mp_signer_from_pem(pem, (size_t)n, &weak), MP_ERR_KEY);
        CU_ASSERT(weak == NULL);
        BIO_free(bio);
    }
    MP_ASSERT_ST(mp_signer_generate_rsa(1024, &s), MP_ERR_ARG);
    MP_ASSERT_ST(mp_signer_generate_rsa(8192, &s), MP_ERR_ARG);
    EVP_PKEY_free(small);

    /* a well-formed SubjectPublicKeyInfo of another algorithm */
    hex(rfc8032[0].pub, raw, sizeof raw);
    ed = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, raw, sizeof raw);
    CU_ASSERT_FATAL(ed != NULL);
    CU_ASSERT_FATAL(der_pubkey(ed, MP_KEY_RSA, &bad));
    MP_ASSERT_ST(mp_pubkey_check(&bad), MP_ERR_KEY);
    MP_ASSERT_ST(mp_verify(&bad, msg, sizeof msg, sig, sig_len), MP_ERR_KEY);
    EVP_PKEY_free(ed);
}

/* ---- PEM ---------------------------------------------------------------------------------- */

static void pem_round_trip(mp_signer *s)
{
    static const char msg[] = "pem round trip";
    char pem[4096], small[64];
    size_t len = 0, len2 = 0;
    mp_signer *back = NULL;
    mp_pubkey a, b;
    uint8_t sa[MP_SIG_MAX], sb[MP_SIG_MAX];
    size_t la = 0, lb = 0;

    MP_ASSERT_OK(mp_signer_to_pem(s, pem, sizeof pem, &len));
    CU_ASSERT(len > 0 && len < sizeof pem);
    CU_ASSERT_EQUAL(strlen(pem), len);
    CU_ASSERT(strncmp(pem, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
    MP_ASSERT_OK(mp_signer_from_pem(pem, len, &back));
    CU_ASSERT_FATAL(back != NULL);
    MP_ASSERT_OK(mp_signer_pubkey(s, &a));
    MP_ASSERT_OK(mp_signer_pubkey(back, &b));
    CU_ASSERT(a.alg == b.alg && a.len == b.len && memcmp(a.key, b.key, a.len) == 0);
    /* both algorithms sign deterministically: the same signature */
    MP_ASSERT_OK(mp_sign(s, msg, sizeof msg, sa, &la));
    MP_ASSERT_OK(mp_sign(back, msg, sizeof msg, sb, &lb));
    CU_ASSERT(la == lb && memcmp(sa, sb, la) == 0);
    MP_ASSERT_OK(mp_verify(&a, msg, sizeof msg, sb, lb));
    mp_signer_free(back);

    /* exactly enough room (text and NUL), then one byte less */
    {
        char exact[4096];

        MP_ASSERT_OK(mp_signer_to_pem(s, exact, len + 1, &len2));
        CU_ASSERT_EQUAL(len2, len);
        len2 = 12345;
        MP_ASSERT_ST(mp_signer_to_pem(s, exact, len, &len2), MP_ERR_BUFFER);
        CU_ASSERT_EQUAL(len2, 12345);
    }
    memset(small, 'Z', sizeof small);
    MP_ASSERT_ST(mp_signer_to_pem(s, small, sizeof small, &len2), MP_ERR_BUFFER);
    mp_wipe(pem, sizeof pem);
}

static void test_pem(void)
{
    static const char *const garbage[] = {
        "not a pem at all",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\n",
        /* an Ed25519 public key (RFC 8410 section 10.1) is no private key */
        "-----BEGIN PUBLIC KEY-----\n"
        "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
        "-----END PUBLIC KEY-----\n",
    };
    char pem[4096];
    size_t i, len = 0;
    mp_signer *s = NULL, *k = NULL;
    uint8_t seed[32];

    hex(rfc8032[1].secret, seed, sizeof seed);
    MP_ASSERT_OK(mp_signer_from_seed(seed, &s));
    pem_round_trip(s);
    pem_round_trip(t_rsa_broker_key());

    for (i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        k = NULL;
        MP_ASSERT_ST(mp_signer_from_pem(garbage[i], strlen(garbage[i]), &k), MP_ERR_KEY);
        CU_ASSERT(k == NULL);
    }
    /* a real PEM cut short, and one with a damaged body */
    MP_ASSERT_OK(mp_signer_to_pem(s, pem, sizeof pem, &len));
    MP_ASSERT_ST(mp_signer_from_pem(pem, len / 2, &k), MP_ERR_KEY);
    pem[40] = pem[40] == 'A' ? 'B' : 'A';
    pem[41] = '*';
    MP_ASSERT_ST(mp_signer_from_pem(pem, len, &k), MP_ERR_KEY);
    CU_ASSERT(k == NULL);
    MP_ASSERT_ST(mp_signer_from_pem(pem, 0, &k), MP_ERR_ARG);
    MP_ASSERT_ST(mp_signer_from_pem(NULL, 10, &k), MP_ERR_ARG);
    MP_ASSERT_ST(mp_signer_to_pem(NULL, pem, sizeof pem, &len), MP_ERR_ARG);
    mp_wipe(pem, sizeof pem);
    mp_signer_free(s);
}

/* ---- key id, ct_equal, random ------------------------------------------------------------ */

static void test_pubkey_id(void)
{
    mp_pubkey a, b, c;
    uint8_t id1[MP_HASH_LEN], id2[MP_HASH_LEN], want[MP_HASH_LEN], buf[1 + MP_PUBKEY_MAX];

    MP_ASSERT_OK(mp_signer_pubkey(t_broker_key(), &a));
    MP_ASSERT_OK(mp_pubkey_id(&a, id1));
    MP_ASSERT_OK(mp_pubkey_id(&a, id2));
    CU_ASSERT(memcmp(id1, id2, MP_HASH_LEN) == 0);
    /* the same key from another object: the same id */
    MP_ASSERT_OK(mp_signer_pubkey(t_broker_key(), &b));
    MP_ASSERT_OK(mp_pubkey_id(&b, id2));
    CU_ASSERT(memcmp(id1, id2, MP_HASH_LEN) == 0);
    /* documented construction: SHA-256(alg || key) */
    buf[0] = a.alg;
    memcpy(buf + 1, a.key, a.len);
    MP_ASSERT_OK(mp_sha256(buf, 1 + (size_t)a.len, want));
    CU_ASSERT(memcmp(id1, want, MP_HASH_LEN) == 0);
    /* bytes beyond len do not count */
    b.key[b.len] ^= 0xff;
    MP_ASSERT_OK(mp_pubkey_id(&b, id2));
    CU_ASSERT(memcmp(id1, id2, MP_HASH_LEN) == 0);
    /* another key, or the same bytes under another algorithm */
    MP_ASSERT_OK(mp_signer_pubkey(t_user_key(), &c));
    MP_ASSERT_OK(mp_pubkey_id(&c, id2));
    CU_ASSERT(memcmp(id1, id2, MP_HASH_LEN) != 0);
    b = a;
    b.alg = MP_KEY_RSA;
    MP_ASSERT_OK(mp_pubkey_id(&b, id2));
    CU_ASSERT(memcmp(id1, id2, MP_HASH_LEN) != 0);
    /* RSA keys have ids too */
    MP_ASSERT_OK(mp_signer_pubkey(t_rsa_broker_key(), &c));
    MP_ASSERT_OK(mp_pubkey_id(&c, id1));
    MP_ASSERT_OK(mp_pubkey_id(&c, id2));
    CU_ASSERT(memcmp(id1, id2, MP_HASH_LEN) == 0);

    b.len = MP_PUBKEY_MAX + 1;
    MP_ASSERT_ST(mp_pubkey_id(&b, id2), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pubkey_id(NULL, id2), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pubkey_id(&a, NULL), MP_ERR_ARG);
}

static void test_ct_equal(void)
{
    uint8_t a[40], b[40];
    size_t i;
    int wrong = 0;

    for (i = 0; i < sizeof a; i++)
        a[i] = b[i] = (uint8_t)(i * 7 + 1);
    CU_ASSERT_EQUAL(mp_ct_equal(a, sizeof a, b, sizeof b), 1);
    CU_ASSERT_EQUAL(mp_ct_equal(a, sizeof a, a, sizeof a), 1);
    CU_ASSERT_EQUAL(mp_ct_equal(a, 0, b, 0), 1);
    for (i = 0; i < sizeof a; i++) {
        b[i] ^= 0x80;
        wrong |= mp_ct_equal(a, sizeof a, b, sizeof b) != 0;
        b[i] ^= 0x81;
        wrong |= mp_ct_equal(a, sizeof a, b, sizeof b) != 0;
        b[i] ^= 0x01;
    }
    CU_ASSERT(!wrong);
    CU_ASSERT_EQUAL(mp_ct_equal(a, sizeof a, b, sizeof b), 1);
    /* a prefix is not equal */
    CU_ASSERT_EQUAL(mp_ct_equal(a, sizeof a - 1, b, sizeof b), 0);
    CU_ASSERT_EQUAL(mp_ct_equal(a, sizeof a, b, sizeof b - 1), 0);
    CU_ASSERT_EQUAL(mp_ct_equal(a, 0, b, 1), 0);
    CU_ASSERT_EQUAL(mp_ct_equal(NULL, 0, b, 0), 0);
    CU_ASSERT_EQUAL(mp_ct_equal(a, 0, NULL, 0), 0);
}

static void test_random(void)
{
    uint8_t a[64], b[64], zero[64], ones[64];

    memset(a, 0, sizeof a);
    memset(b, 0xff, sizeof b);
    memset(zero, 0, sizeof zero);
    memset(ones, 0xff, sizeof ones);
    MP_ASSERT_OK(mp_random(a, sizeof a));
    MP_ASSERT_OK(mp_random(b, sizeof b));
    CU_ASSERT(memcmp(a, b, sizeof a) != 0);
    /* the whole buffer is written: the last 16 bytes are no longer the
     * fill (2^-128 odds of a false alarm) */
    CU_ASSERT(memcmp(a + 48, zero, 16) != 0);
    CU_ASSERT(memcmp(b + 48, ones, 16) != 0);
    CU_ASSERT(memcmp(a, zero, 16) != 0);
    /* n = 0 writes nothing */
    memset(a, 0x33, sizeof a);
    MP_ASSERT_OK(mp_random(a, 0));
    CU_ASSERT_EQUAL(a[0], 0x33);
    /* n bytes and not one more */
    memset(a, 0x33, sizeof a);
    MP_ASSERT_OK(mp_random(a, 1));
    CU_ASSERT_EQUAL(a[1], 0x33);
    MP_ASSERT_ST(mp_random(NULL, 1), MP_ERR_ARG);

    /* wipe */
    memset(a, 0x77, sizeof a);
    mp_wipe(a, 10);
    CU_ASSERT(memcmp(a, zero, 10) == 0);
    CU_ASSERT_EQUAL(a[10], 0x77);
    mp_wipe(NULL, 10);
    mp_wipe(a, 0);
}

/* ---- status texts ------------------------------------------------------------------------------ */

static void test_status_texts(void)
{
    static const char *const tokens[] = {
        "ok", "malformed", "forged", "wrong-vendor", "wrong-resource", "expired",
        "already-spent", "insufficient", "price-mismatch", "unknown-commitment",
        "exhausted", "internal",
    };
    static const struct {
        mp_status st;
        const char *reason;
    } map[] = {
        { MP_OK, "ok" },
        { MP_ERR_ARG, "internal" },
        { MP_ERR_NOMEM, "internal" },
        { MP_ERR_CRYPTO, "internal" },
        { MP_ERR_BUFFER, "internal" },
        { MP_ERR_MALFORMED, "malformed" },
        { MP_ERR_TRUNCATED, "malformed" },
        { MP_ERR_TRAILING, "malformed" },
        { MP_ERR_TOO_LARGE, "malformed" },
        { MP_ERR_VERSION, "malformed" },
        { MP_ERR_TYPE, "malformed" },
        { MP_ERR_CHARSET, "malformed" },
        { MP_ERR_BASE64, "malformed" },
        { MP_ERR_AMOUNT, "malformed" },
        { MP_ERR_CURRENCY, "malformed" },
        { MP_ERR_OVERFLOW, "malformed" },
        { MP_ERR_KEY, "malformed" },
        { MP_ERR_FORGED, "forged" },
        { MP_ERR_UNTRUSTED, "forged" },
        { MP_ERR_UNKNOWN_SERIES, "forged" },
        { MP_ERR_WRONG_VENDOR, "wrong-vendor" },
        { MP_ERR_WRONG_TARGET, "wrong-resource" },
        { MP_ERR_EXPIRED, "expired" },
        { MP_ERR_SPENT, "already-spent" },
        { MP_ERR_INSUFFICIENT, "insufficient" },
        { MP_ERR_PRICE, "price-mismatch" },
        { MP_ERR_UNKNOWN_COMMITMENT, "unknown-commitment" },
        { MP_ERR_EXHAUSTED, "exhausted" },
        { MP_ERR_CREDIT, "malformed" },
        { MP_ERR_STORE, "internal" },
        { MP_ERR_BUSY, "internal" },
    };
    int i, j;
    size_t k;

    for (i = 0; i < MP_STATUS_COUNT; i++) {
        const char *msg = mp_strerror((mp_status)i), *why = mp_reason((mp_status)i);
        int known = 0;

        CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
        CU_ASSERT_PTR_NOT_NULL_FATAL(why);
        CU_ASSERT(msg[0] != '\0');
        CU_ASSERT(strcmp(msg, "unknown status") != 0);
        for (k = 0; k < sizeof tokens / sizeof tokens[0]; k++)
            known |= strcmp(why, tokens[k]) == 0;
        if (!known)
            fprintf(stderr, "\n  status %d: reason \"%s\" is no protocol token\n", i, why);
        CU_ASSERT(known);
        /* only success reads "ok" */
        CU_ASSERT_EQUAL(strcmp(why, "ok") == 0, i == MP_OK);
        /* every status has its own sentence */
        for (j = 0; j < i; j++)
            CU_ASSERT(strcmp(msg, mp_strerror((mp_status)j)) != 0);
    }
    for (k = 0; k < sizeof map / sizeof map[0]; k++) {
        if (strcmp(mp_reason(map[k].st), map[k].reason) != 0)
            fprintf(stderr, "\n  %s: reason \"%s\", want \"%s\"\n", mp_strerror(map[k].st),
                    mp_reason(map[k].st), map[k].reason);
        CU_ASSERT_STRING_EQUAL(mp_reason(map[k].st), map[k].reason);
    }
    /* the table above covers every status */
    CU_ASSERT_EQUAL(sizeof map / sizeof map[0], (size_t)MP_STATUS_COUNT);

    CU_ASSERT_STRING_EQUAL(mp_strerror(MP_STATUS_COUNT), "unknown status");
    CU_ASSERT_STRING_EQUAL(mp_reason(MP_STATUS_COUNT), "internal");
    CU_ASSERT_STRING_EQUAL(mp_strerror((mp_status)(MP_STATUS_COUNT + 100)), "unknown status");
    CU_ASSERT_STRING_EQUAL(mp_reason((mp_status)(MP_STATUS_COUNT + 100)), "internal");
    CU_ASSERT_STRING_EQUAL(mp_strerror((mp_status)-1), "unknown status");
    CU_ASSERT_STRING_EQUAL(mp_reason((mp_status)-1), "internal");
}

int register_crypto_tests(void)
{
    static const struct {
        const char *name;
        CU_TestFunc fn;
    } tests[] = {
        { "HMAC RFC 4231 one-shot", test_hmac_oneshot },
        { "HMAC RFC 4231 split into parts", test_hmac_iov },
        { "HMAC dup and rekey", test_hmac_dup_rekey },
        { "HMAC arguments", test_hmac_args },
        { "SHA-256 FIPS 180-2", test_sha_kat },
        { "SHA-256 iterate", test_sha_iterate },
        { "Ed25519 RFC 8032 7.1", test_ed25519_rfc8032 },
        { "Ed25519 forgeries", test_ed25519_forged },
        { "Ed25519 unusable keys", test_ed25519_key },
        { "Ed25519 generated keys", test_ed25519_generate },
        { "RSA sign and verify", test_rsa_sign_verify },
        { "RSA unusable keys", test_rsa_bad_keys },
        { "PEM round trip and garbage", test_pem },
        { "pubkey id", test_pubkey_id },
        { "ct_equal", test_ct_equal },
        { "random and wipe", test_random },
        { "status texts and reasons", test_status_texts },
    };
    CU_pSuite s = CU_add_suite("crypto", NULL, NULL);
    size_t i;

    if (s == NULL)
        return -1;
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (CU_add_test(s, tests[i].name, tests[i].fn) == NULL)
            return -1;
    return 0;
}
