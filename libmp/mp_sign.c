/*
 * mp_sign.c - Ed25519 and RSA signatures through EVP_PKEY / EVP_DigestSign.
 *
 * Ed25519 is the scheme we issue (fast signing, 64-byte signatures, no
 * parameters to get wrong). RSA (PKCS#1 v1.5, SHA-256, 2048..4096 bits)
 * is accepted for verification because existing brokers sign with it.
 * Public keys are rebuilt per verification: the rebuild costs about a
 * microsecond against 100 us for the Ed25519 verify itself, and it keeps
 * mp_pubkey plain copyable data.
 *
 * Key checks: every public key we rebuild passes the cheap check (the
 * small-order and non-canonical Ed25519 encodings, RSA e = 65537), so no
 * verification can use a key that lets anyone sign; the full Ed25519 order
 * check (mp_edpoint.c) and OpenSSL's RSA modulus validation (no prime n,
 * no prime factor below 2^16, no prime power) are mp_pubkey_check's alone.
 * mp_crypto.h says which runs where.
 */
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/x509.h>
#include <openssl/rsa.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include "mp_crypto.h"
#include "mp_edpoint.h"

struct mp_signer {
    EVP_PKEY *pkey;
    uint8_t   alg;
};

/* e = 1 makes s = m a signature of everything; a small e such as 3 is
 * sound only behind a strict PKCS#1 v1.5 parser (Bleichenbacher's 2006
 * forgeries hit lax ones). Every key generator uses 65537: allowing only
 * that leaves nothing to reason about. MP_ERR_KEY, MP_ERR_CRYPTO. */
static mp_status rsa_exponent_check(const EVP_PKEY *p)
{
    BIGNUM *e = NULL;
    mp_status st = MP_ERR_CRYPTO;

    if (EVP_PKEY_get_bn_param(p, OSSL_PKEY_PARAM_RSA_E, &e) != 1)
        goto done;
    st = BN_is_word(e, RSA_F4) ? MP_OK : MP_ERR_KEY;
done:
    BN_free(e);
    return st;
}

/* The cheap check (see mp_pubkey_check_fast) and the EVP_PKEY to verify
 * with; *out is the caller's to free. */
static mp_status pkey_from_pub(const mp_pubkey *pk, EVP_PKEY **out)
{
    EVP_PKEY *p = NULL;
    const unsigned char *der;
    int bits;
    mp_status st;

    if (pk->alg == MP_KEY_ED25519) {
        if (pk->len != MP_ED25519_PUB_LEN || mp_edpoint_check_fast(pk->key) != MP_OK)
            return MP_ERR_KEY;
        p = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, pk->key, pk->len);
        if (p == NULL)
            return MP_ERR_KEY;
    } else if (pk->alg == MP_KEY_RSA) {
        if (pk->len == 0 || pk->len > MP_PUBKEY_MAX)
            return MP_ERR_KEY;
        der = pk->key;
        p = d2i_PUBKEY(NULL, &der, pk->len);
        /* The DER must be exactly the key: no trailing bytes, no other type. */
        if (p == NULL || der != pk->key + pk->len || EVP_PKEY_get_base_id(p) != EVP_PKEY_RSA) {
            EVP_PKEY_free(p);
            return MP_ERR_KEY;
        }
        bits = EVP_PKEY_get_bits(p);
        if (bits < 2048 || bits > 4096) {
            EVP_PKEY_free(p);
            return MP_ERR_KEY;
        }
        if ((st = rsa_exponent_check(p)) != MP_OK) {
            EVP_PKEY_free(p);
            return st;
        }
    } else {
        return MP_ERR_KEY;
    }
    *out = p;
    return MP_OK;
}

mp_status mp_pubkey_check_fast(const mp_pubkey *pk)
{
    EVP_PKEY *p = NULL;
    mp_status st;

    if (pk == NULL)
        return MP_ERR_ARG;
    if ((st = pkey_from_pub(pk, &p)) == MP_OK)
        EVP_PKEY_free(p);
    return st;
}

/* Trial division of n by every prime below MP_RSA_TRIAL_BOUND. OpenSSL's
 * validation divides only by the primes up to 751; past that its
 * Miller-Rabin finds a factor f only when a random base shares it (about
 * one run in f / 5), so n = 757q passed one check and failed the next. A
 * verdict that depends on the dice is no verdict: every factor below the
 * bound is refused, every time. No bound proves n hard to factor (the
 * elliptic curve method finds 30-digit factors in minutes); the bound
 * fixes what is checked, the checks of SP 800-56B the rest. About 0.3 ms
 * for 2048 bits. MP_ERR_KEY, MP_ERR_NOMEM, MP_ERR_CRYPTO. */
#define MP_RSA_TRIAL_BOUND 65536u
static mp_status rsa_trial_division(const EVP_PKEY *p)
{
    uint8_t composite[MP_RSA_TRIAL_BOUND / 8];
    BIGNUM *n = NULL;
    mp_status st = MP_ERR_CRYPTO;
    BN_ULONG r;
    unsigned d, m;

    if (EVP_PKEY_get_bn_param(p, OSSL_PKEY_PARAM_RSA_N, &n) != 1)
        goto done;
    memset(composite, 0, sizeof composite);
    st = MP_ERR_KEY;
    if (!BN_is_odd(n))
        goto done;
    for (d = 3; d < MP_RSA_TRIAL_BOUND; d += 2) {
        if (composite[d / 8] & (1u << (d % 8)))
            continue;
        for (m = d * d; m < MP_RSA_TRIAL_BOUND; m += 2 * d)
            composite[m / 8] |= (uint8_t)(1u << (m % 8));
        /* BN_mod_word returns (BN_ULONG)-1 on error, never a remainder
         * of a divisor below 2^16: an error fails the key. */
        r = BN_mod_word(n, d);
        if (r == (BN_ULONG)-1) {
            st = MP_ERR_CRYPTO;
            goto done;
        }
        if (r == 0)
            goto done;
    }
    st = MP_OK;
done:
    BN_free(n);
    return st;
}

/* OpenSSL's public-key validation of an RSA key (SP 800-56Br1 6.4.2.2
 * partial validation, OpenSSL 3's rsa_sp800_56b_check.c): n odd, no prime
 * factor up to 751, composite and not a prime power (enhanced
 * Miller-Rabin), e odd and in range; our trial division first, to 2^16.
 * Anyone who sees a prime n, or one with a small factor, computes d: such
 * a key signs for everyone. EVP_PKEY_public_check returns 1, 0 for a bad
 * key, < 0 when it cannot check. MP_ERR_KEY, MP_ERR_NOMEM, MP_ERR_CRYPTO. */
static mp_status rsa_modulus_check(EVP_PKEY *p)
{
    EVP_PKEY_CTX *ctx = NULL;
    mp_status st;
    int rc;

    if ((st = rsa_trial_division(p)) != MP_OK)
        goto done;
    st = MP_ERR_NOMEM;
    if ((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, p, NULL)) == NULL)
        goto done;
    rc = EVP_PKEY_public_check(ctx);
    st = rc == 1 ? MP_OK : rc == 0 ? MP_ERR_KEY : MP_ERR_CRYPTO;
done:
    EVP_PKEY_CTX_free(ctx);
    return st;
}

mp_status mp_pubkey_check(const mp_pubkey *pk)
{
    EVP_PKEY *p = NULL;
    mp_status st = MP_ERR_ARG;

    if (pk == NULL)
        goto done;
    /* The cheap check first: it parses and bounds the key, so the costly
     * checks below only see well-formed keys of the right size. */
    if ((st = pkey_from_pub(pk, &p)) != MP_OK)
        goto done;
    if (pk->alg == MP_KEY_ED25519)
        st = mp_edpoint_check(pk->key);
    else
        st = rsa_modulus_check(p);
done:
    EVP_PKEY_free(p);
    return st;
}

mp_status mp_pubkey_id(const mp_pubkey *pk, uint8_t out[MP_HASH_LEN])
{
    uint8_t buf[1 + MP_PUBKEY_MAX];

    if (pk == NULL || out == NULL || pk->len > MP_PUBKEY_MAX)
        return MP_ERR_ARG;
    buf[0] = pk->alg;
    memcpy(buf + 1, pk->key, pk->len);
    return mp_sha256(buf, 1 + (size_t)pk->len, out);
}

mp_status mp_pubkey_from_pem(const char *pem, size_t len, mp_pubkey *out)
{
    BIO *bio = NULL;
    EVP_PKEY *p = NULL;
    unsigned char *der = NULL;
    mp_pubkey pk;
    size_t n = MP_ED25519_PUB_LEN;
    int dlen, bits;
    mp_status st = MP_ERR_ARG;

    if (pem == NULL || out == NULL || len == 0 || len > 16384)
        goto done;
    st = MP_ERR_NOMEM;
    if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL)
        goto done;
    st = MP_ERR_KEY;
    if ((p = PEM_read_bio_PUBKEY_ex(bio, NULL, NULL, NULL, NULL, NULL)) == NULL)
        goto done;
    memset(&pk, 0, sizeof pk);
    /* The same forms mp_signer_pubkey produces, so that a key read from a
     * file and one taken from the signer compare (and hash to key ids)
     * equal. */
    switch (EVP_PKEY_get_base_id(p)) {
    case EVP_PKEY_ED25519:
        if (EVP_PKEY_get_raw_public_key(p, pk.key, &n) != 1 || n != MP_ED25519_PUB_LEN)
            goto done;
        pk.alg = MP_KEY_ED25519;
        pk.len = (uint16_t)n;
        break;
    case EVP_PKEY_RSA:
        bits = EVP_PKEY_get_bits(p);
        if (bits < 2048 || bits > 4096)
            goto done;
        dlen = i2d_PUBKEY(p, &der);
        if (dlen <= 0 || dlen > MP_PUBKEY_MAX)
            goto done;
        memcpy(pk.key, der, (size_t)dlen);
        pk.alg = MP_KEY_RSA;
        pk.len = (uint16_t)dlen;
        break;
    default:
        goto done;
    }
    /* A key no verification would use is refused when it is read, not at
     * the first payment. */
    if ((st = mp_pubkey_check_fast(&pk)) != MP_OK)
        goto done;
    *out = pk;
done:
    OPENSSL_free(der);
    EVP_PKEY_free(p);
    BIO_free(bio);
    return st;
}

mp_status mp_pubkey_to_pem(const mp_pubkey *pk, char *buf, size_t cap, size_t *len)
{
    BIO *bio = NULL;
    EVP_PKEY *p = NULL;
    char *data = NULL;
    long n;
    mp_status st = MP_ERR_ARG;

    if (pk == NULL || buf == NULL || len == NULL)
        goto done;
    if ((st = pkey_from_pub(pk, &p)) != MP_OK)
        goto done;
    st = MP_ERR_NOMEM;
    if ((bio = BIO_new(BIO_s_mem())) == NULL)
        goto done;
    st = MP_ERR_CRYPTO;
    if (PEM_write_bio_PUBKEY(bio, p) != 1)
        goto done;
    n = BIO_get_mem_data(bio, &data);
    if (n <= 0 || data == NULL)
        goto done;
    st = MP_ERR_BUFFER;
    if ((size_t)n + 1 > cap)
        goto done;
    memcpy(buf, data, (size_t)n);
    buf[n] = '\0';
    *len = (size_t)n;
    st = MP_OK;
done:
    EVP_PKEY_free(p);
    BIO_free(bio);
    return st;
}

mp_status mp_verify(const mp_pubkey *pk, const void *msg, size_t msg_len,
                    const uint8_t *sig, size_t sig_len)
{
    EVP_PKEY *p = NULL;
    EVP_MD_CTX *ctx = NULL;
    mp_status st;
    int rc;

    if (pk == NULL || (msg == NULL && msg_len > 0) || sig == NULL)
        return MP_ERR_ARG;
    if ((st = pkey_from_pub(pk, &p)) != MP_OK)
        goto done;
    /* A signature of the wrong size is a forgery, not an API misuse. */
    st = MP_ERR_FORGED;
    if (sig_len == 0 || sig_len > MP_SIG_MAX
        || (pk->alg == MP_KEY_ED25519 && sig_len != MP_ED25519_SIG_LEN)
        || (pk->alg == MP_KEY_RSA && sig_len != (size_t)EVP_PKEY_get_size(p)))
        goto done;
    st = MP_ERR_CRYPTO;
    if ((ctx = EVP_MD_CTX_new()) == NULL)
        goto done;
    if (EVP_DigestVerifyInit_ex(ctx, NULL, pk->alg == MP_KEY_RSA ? "SHA256" : NULL,
                                NULL, NULL, p, NULL) != 1)
        goto done;
    rc = EVP_DigestVerify(ctx, sig, sig_len, msg, msg_len);
    st = rc == 1 ? MP_OK : MP_ERR_FORGED;
done:
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(p);
    return st;
}

static mp_status signer_wrap(EVP_PKEY *p, mp_signer **out)
{
    mp_signer *s;
    int id = EVP_PKEY_get_base_id(p);

    if (id != EVP_PKEY_ED25519 && id != EVP_PKEY_RSA)
        return MP_ERR_KEY;
    if (id == EVP_PKEY_RSA && (EVP_PKEY_get_bits(p) < 2048 || EVP_PKEY_get_bits(p) > 4096))
        return MP_ERR_KEY;
    if ((s = calloc(1, sizeof *s)) == NULL)
        return MP_ERR_NOMEM;
    s->pkey = p;
    s->alg = id == EVP_PKEY_ED25519 ? MP_KEY_ED25519 : MP_KEY_RSA;
    *out = s;
    return MP_OK;
}

mp_status mp_signer_generate(mp_signer **out)
{
    EVP_PKEY *p;
    mp_status st;

    if (out == NULL)
        return MP_ERR_ARG;
    if ((p = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")) == NULL)
        return MP_ERR_CRYPTO;
    if ((st = signer_wrap(p, out)) != MP_OK)
        EVP_PKEY_free(p);
    return st;
}

mp_status mp_signer_generate_rsa(unsigned bits, mp_signer **out)
{
    EVP_PKEY *p;
    mp_status st;

    if (out == NULL || bits < 2048 || bits > 4096)
        return MP_ERR_ARG;
    if ((p = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits)) == NULL)
        return MP_ERR_CRYPTO;
    if ((st = signer_wrap(p, out)) != MP_OK)
        EVP_PKEY_free(p);
    return st;
}

mp_status mp_signer_from_seed(const uint8_t seed[32], mp_signer **out)
{
    EVP_PKEY *p;
    mp_status st;

    if (seed == NULL || out == NULL)
        return MP_ERR_ARG;
    if ((p = EVP_PKEY_new_raw_private_key_ex(NULL, "ED25519", NULL, seed, 32)) == NULL)
        return MP_ERR_CRYPTO;
    if ((st = signer_wrap(p, out)) != MP_OK)
        EVP_PKEY_free(p);
    return st;
}

mp_status mp_signer_from_pem(const char *pem, size_t len, mp_signer **out)
{
    BIO *bio = NULL;
    EVP_PKEY *p = NULL;
    mp_status st = MP_ERR_ARG;

    if (pem == NULL || out == NULL || len == 0 || len > 16384)
        goto done;
    st = MP_ERR_NOMEM;
    if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL)
        goto done;
    st = MP_ERR_KEY;
    /* No passphrase callback: encrypted keys are refused, never prompted. */
    if ((p = PEM_read_bio_PrivateKey_ex(bio, NULL, NULL, (void *)"", NULL, NULL)) == NULL)
        goto done;
    if ((st = signer_wrap(p, out)) == MP_OK)
        p = NULL;
done:
    EVP_PKEY_free(p);
    BIO_free(bio);
    return st;
}

mp_status mp_signer_to_pem(const mp_signer *s, char *buf, size_t cap, size_t *len)
{
    BIO *bio = NULL;
    char *data = NULL;
    long n;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || buf == NULL || len == NULL)
        goto done;
    st = MP_ERR_NOMEM;
    if ((bio = BIO_new(BIO_s_secmem())) == NULL)
        goto done;
    st = MP_ERR_CRYPTO;
    if (PEM_write_bio_PKCS8PrivateKey(bio, s->pkey, NULL, NULL, 0, NULL, NULL) != 1)
        goto done;
    n = BIO_get_mem_data(bio, &data);
    if (n <= 0 || data == NULL)
        goto done;
    st = MP_ERR_BUFFER;
    if ((size_t)n + 1 > cap)
        goto done;
    memcpy(buf, data, (size_t)n);
    buf[n] = '\0';
    *len = (size_t)n;
    st = MP_OK;
done:
    BIO_free(bio);   /* secure-heap BIO: cleansed on free */
    return st;
}

mp_status mp_signer_pubkey(const mp_signer *s, mp_pubkey *out)
{
    mp_pubkey pk;
    size_t n = MP_PUBKEY_MAX;
    unsigned char *der = NULL;
    int dlen;

    if (s == NULL || out == NULL)
        return MP_ERR_ARG;
    memset(&pk, 0, sizeof pk);
    pk.alg = s->alg;
    if (s->alg == MP_KEY_ED25519) {
        n = MP_ED25519_PUB_LEN;
        if (EVP_PKEY_get_raw_public_key(s->pkey, pk.key, &n) != 1 || n != MP_ED25519_PUB_LEN)
            return MP_ERR_CRYPTO;
        pk.len = (uint16_t)n;
    } else {
        dlen = i2d_PUBKEY(s->pkey, &der);
        if (dlen <= 0 || dlen > MP_PUBKEY_MAX) {
            OPENSSL_free(der);
            return MP_ERR_CRYPTO;
        }
        memcpy(pk.key, der, (size_t)dlen);
        pk.len = (uint16_t)dlen;
        OPENSSL_free(der);
    }
    *out = pk;
    return MP_OK;
}

mp_status mp_sign(const mp_signer *s, const void *msg, size_t msg_len,
                  uint8_t sig[MP_SIG_MAX], size_t *sig_len)
{
    EVP_MD_CTX *ctx = NULL;
    uint8_t tmp[MP_SIG_MAX];
    size_t n = sizeof tmp;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || (msg == NULL && msg_len > 0) || sig == NULL || sig_len == NULL)
        goto done;
    st = MP_ERR_CRYPTO;
    if ((ctx = EVP_MD_CTX_new()) == NULL)
        goto done;
    if (EVP_DigestSignInit_ex(ctx, NULL, s->alg == MP_KEY_RSA ? "SHA256" : NULL,
                              NULL, NULL, s->pkey, NULL) != 1
        || EVP_DigestSign(ctx, tmp, &n, msg, msg_len) != 1)
        goto done;
    memcpy(sig, tmp, n);
    *sig_len = n;
    st = MP_OK;
done:
    EVP_MD_CTX_free(ctx);
    return st;
}

void mp_signer_free(mp_signer *s)
{
    if (s == NULL)
        return;
    EVP_PKEY_free(s->pkey);   /* frees and cleanses the private key */
    free(s);
}
