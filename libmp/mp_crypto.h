/*
 * mp_crypto.h - the primitives libmp builds on, through OpenSSL 3 EVP.
 *
 * Performance rule: algorithms are fetched once per object and contexts
 * are reused, because in OpenSSL 3 a per-call lookup costs more than a
 * hash of 32 bytes. The objects below are therefore long-lived and NOT
 * thread-safe: give each thread its own (mp_mac_dup() is cheap).
 *
 * Every object owns its OpenSSL state and wipes its key material on
 * free. Free functions accept NULL.
 */
#ifndef MP_CRYPTO_H
#define MP_CRYPTO_H

#include <stddef.h>
#include <stdint.h>
#include "mp_status.h"

#define MP_HASH_LEN    32     /* SHA-256 and HMAC-SHA256 output */
#define MP_SECRET_LEN  32     /* every symmetric secret libmp makes */
#define MP_SECRET_MAX  256    /* longest HMAC key libmp accepts (RFC 4231 uses 131) */

/* Constant-time comparison: 1 when the a_len bytes of a equal the b_len
 * bytes of b (lengths compared first, in the open), else 0. */
int mp_ct_equal(const void *a, size_t a_len, const void *b, size_t b_len);

/* Wipes n bytes at p so that the compiler cannot elide it. */
void mp_wipe(void *p, size_t n);

/* Fills buf with n bytes from OpenSSL's CSPRNG. MP_ERR_CRYPTO. */
mp_status mp_random(void *buf, size_t n);

/* ---- SHA-256 ---------------------------------------------------------- */

typedef struct mp_sha mp_sha;

/* Creates a reusable SHA-256 hasher. MP_ERR_NOMEM, MP_ERR_CRYPTO. */
mp_status mp_sha_new(mp_sha **out);
void mp_sha_free(mp_sha *h);

/* out = SHA-256(data). */
mp_status mp_sha_digest(mp_sha *h, const void *data, size_t len,
                        uint8_t out[MP_HASH_LEN]);

/* out = SHA-256^times(in) (times >= 0; times = 0 copies in). Used for
 * hash chains: the intermediate values never leave this function. */
mp_status mp_sha_iterate(mp_sha *h, const uint8_t in[MP_HASH_LEN],
                         uint32_t times, uint8_t out[MP_HASH_LEN]);

/* One-shot SHA-256 for cold paths (fetches the digest per call). */
mp_status mp_sha256(const void *data, size_t len, uint8_t out[MP_HASH_LEN]);

/* ---- HMAC-SHA256 (EVP_MAC) ------------------------------------------- */

typedef struct mp_mac mp_mac;

/* Creates an HMAC-SHA256 context keyed with key (1..MP_SECRET_MAX bytes).
 * The object keeps its own copy of the key state; the caller may wipe
 * key afterwards. MP_ERR_ARG, MP_ERR_NOMEM, MP_ERR_CRYPTO. */
mp_status mp_mac_new(const uint8_t *key, size_t key_len, mp_mac **out);

/* A fresh, independent copy (for another thread). */
mp_status mp_mac_dup(const mp_mac *m, mp_mac **out);

/* Re-keys an existing context (cheaper than free + new for per-message
 * keys such as a customer secret). */
mp_status mp_mac_rekey(mp_mac *m, const uint8_t *key, size_t key_len);

void mp_mac_free(mp_mac *m);

/* out = HMAC(key, part[0] || part[1] || ... ) over nparts parts; parts
 * with len 0 are allowed. nparts <= 8. */
typedef struct { const void *p; size_t len; } mp_iov;
mp_status mp_mac_compute(mp_mac *m, const mp_iov *parts, size_t nparts,
                         uint8_t out[MP_HASH_LEN]);

/* One-shot HMAC-SHA256 for cold paths and tests. */
mp_status mp_hmac(const uint8_t *key, size_t key_len, const void *data,
                  size_t len, uint8_t out[MP_HASH_LEN]);

/* ---- Signatures ------------------------------------------------------- */

typedef enum {
    MP_KEY_ED25519 = 1,   /* sign and verify */
    MP_KEY_RSA     = 2    /* RSASSA-PKCS1-v1_5 with SHA-256, 2048..4096 bits:
                             verify (and sign, for tests and old brokers) */
} mp_key_alg;

#define MP_ED25519_PUB_LEN 32
#define MP_ED25519_SIG_LEN 64
#define MP_PUBKEY_MAX      600   /* DER SubjectPublicKeyInfo of RSA-4096 is 550 */
#define MP_SIG_MAX         512   /* RSA-4096 signature */

/* A public key as it travels: raw 32 bytes for Ed25519, DER
 * SubjectPublicKeyInfo for RSA. Plain data, copyable. */
typedef struct {
    uint8_t  alg;                 /* mp_key_alg */
    uint16_t len;
    uint8_t  key[MP_PUBKEY_MAX];
} mp_pubkey;

/* Key id: SHA-256 over alg byte || key bytes. Names a key in files and
 * logs without exposing anything secret. */
mp_status mp_pubkey_id(const mp_pubkey *pk, uint8_t out[MP_HASH_LEN]);

/* Reads a PEM SubjectPublicKeyInfo ("BEGIN PUBLIC KEY") of an Ed25519 or
 * RSA (2048..4096 bit) key that passes mp_pubkey_check_fast. MP_ERR_KEY
 * for anything else. */
mp_status mp_pubkey_from_pem(const char *pem, size_t len, mp_pubkey *out);
/* Writes pk as PEM SubjectPublicKeyInfo; *len gets its length. */
mp_status mp_pubkey_to_pem(const mp_pubkey *pk, char *buf, size_t cap, size_t *len);

/*
 * Key checks: is pk a key that can sign, one whose signatures nobody can
 * make without its private key?
 *
 * mp_pubkey_check is the full check, for where a key enters the system:
 * the broker's /certify and its own signing key at startup. Ed25519: a
 * canonical encoding of a point of prime order L (mp_edpoint_check: no
 * small-order, no mixed-order point, nothing off the curve), about a
 * millisecond. RSA: DER SubjectPublicKeyInfo of exactly the key, modulus
 * 2048..4096 bits, public exponent exactly 65537, and OpenSSL's public key
 * validation (EVP_PKEY_public_check, SP 800-56B partial validation): n
 * odd, composite, not a prime power, and (our trial division) no prime
 * factor below 2^16, every time. A prime or small-factor n lets anyone who sees it compute d and sign. About 5
 * ms for a 2048-bit n = pq, 25 ms at 4096 bits; a prime n, the costliest
 * (every Miller-Rabin round), 12..20 ms and about 100 ms.
 *
 * mp_pubkey_check_fast is the cheap check, for everywhere a key is used
 * to verify: mp_verify runs it on every key it is given (so vendors at
 * first contact and the broker at redemption refuse a weak user key even
 * in a cert some broker signed), and mp_pw_cert_verify runs it on the
 * user key. Ed25519: not a non-canonical y and not one of the encodings
 * of the 8 small-order points (mp_edpoint_check_fast, nanoseconds); these
 * are the keys that give forgeries for free. RSA: the full check's DER,
 * size and exponent rules (the exponent is one BIGNUM read), not the
 * modulus validation: a prime or small-factor n passes here, so a key
 * must have passed mp_pubkey_check where it entered (the broker certifies
 * only keys that did).
 *
 * Both: MP_OK; MP_ERR_KEY for a key that cannot sign or is not a key;
 * MP_ERR_ARG for pk == NULL; MP_ERR_NOMEM or MP_ERR_CRYPTO when OpenSSL
 * failed (the key is then not known to be good: refuse it).
 */
mp_status mp_pubkey_check(const mp_pubkey *pk);
mp_status mp_pubkey_check_fast(const mp_pubkey *pk);

/* Verifies sig over msg with pk. MP_ERR_FORGED when the signature does not
 * verify, MP_ERR_KEY for a key mp_pubkey_check_fast refuses. */
mp_status mp_verify(const mp_pubkey *pk, const void *msg, size_t msg_len,
                    const uint8_t *sig, size_t sig_len);

typedef struct mp_signer mp_signer;

/* A new random Ed25519 key. */
mp_status mp_signer_generate(mp_signer **out);
/* A new RSA key of bits (2048..4096): for tests and RSA-signing brokers. */
mp_status mp_signer_generate_rsa(unsigned bits, mp_signer **out);
/* An Ed25519 key from its 32-byte RFC 8032 private seed (vectors, wallets
 * that derive keys). */
mp_status mp_signer_from_seed(const uint8_t seed[32], mp_signer **out);
/* A private key from PEM (PKCS#8, unencrypted), Ed25519 or RSA. */
mp_status mp_signer_from_pem(const char *pem, size_t len, mp_signer **out);
/* Writes the PEM (PKCS#8) of the private key into buf; *len gets its length.
 * The caller must wipe buf. MP_ERR_BUFFER. */
mp_status mp_signer_to_pem(const mp_signer *s, char *buf, size_t cap, size_t *len);
mp_status mp_signer_pubkey(const mp_signer *s, mp_pubkey *out);
/* Signs msg; *sig_len gets the signature length (<= MP_SIG_MAX). */
mp_status mp_sign(const mp_signer *s, const void *msg, size_t msg_len,
                  uint8_t sig[MP_SIG_MAX], size_t *sig_len);
void mp_signer_free(mp_signer *s);

#endif
