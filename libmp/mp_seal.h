/*
 * mp_seal.h - authenticated encryption of records kept at rest.
 *
 * The broker keeps response bodies for idempotent replay, and those bodies
 * hold spendable scrip and customer secrets: a copy of the store must not
 * be worth money. mp_seal() encrypts and authenticates such a record under
 * AES-256-GCM with a fresh random nonce; mp_unseal() refuses any record
 * that was altered, sealed under another key, or bound to other aad.
 *
 * Sealed form:  nonce (12 bytes) || ciphertext (in_len bytes) || tag (16 bytes)
 *
 * aad is authenticated but not encrypted and not stored: the caller passes
 * the same bytes (typically the record's key in the store) to both calls,
 * so a sealed value moved to another key no longer opens.
 *
 * Nonces are random, so one key may seal at most 2^32 records (NIST SP
 * 800-38D, 8.3) before a nonce collision becomes a real risk; a key
 * derived per store (mp_seal_key_derive with a store-specific label) keeps
 * each store far below that.
 *
 * Ownership: every buffer belongs to the caller and is only read or written
 * during the call; nothing is kept. in and out must not overlap. The
 * functions are thread-safe (each call has its own OpenSSL context).
 *
 * Errors: MP_ERR_ARG for a NULL pointer (aad and in may be NULL only when
 * their length is 0), a length above MP_SEAL_MAX, overlapping in and out,
 * or an out_cap too small; MP_ERR_CRYPTO when OpenSSL fails. Outputs
 * (*out_len, a derived key) are set only on MP_OK.
 */
#ifndef MP_SEAL_H
#define MP_SEAL_H

#include <stddef.h>
#include <stdint.h>
#include "mp_status.h"

#define MP_SEAL_KEY_LEN   32
#define MP_SEAL_NONCE_LEN 12
#define MP_SEAL_TAG_LEN   16
#define MP_SEAL_OVERHEAD  (MP_SEAL_NONCE_LEN + MP_SEAL_TAG_LEN)
/* Longest plaintext and longest aad: stored bodies are around 1 MiB at
 * most, and the bound keeps every length within OpenSSL's int. */
#define MP_SEAL_MAX       ((size_t)16 * 1024 * 1024)

/* Seals in_len bytes of in into out: nonce (random, 12 bytes) || ciphertext
 * || tag (16 bytes); *out_len gets in_len + MP_SEAL_OVERHEAD. out_cap must
 * be at least in_len + MP_SEAL_OVERHEAD. On failure the bytes written to
 * out are zeroed. MP_ERR_ARG, MP_ERR_CRYPTO. */
mp_status mp_seal(const uint8_t key[MP_SEAL_KEY_LEN], const uint8_t *aad, size_t aad_len,
                  const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                  size_t *out_len);

/* Opens a record made by mp_seal(): verifies the tag over nonce, aad and
 * ciphertext and writes the plaintext to out; *out_len gets
 * in_len - MP_SEAL_OVERHEAD. out_cap must be at least that (out may not be
 * NULL even when it is 0). MP_ERR_TRUNCATED when in_len < MP_SEAL_OVERHEAD,
 * MP_ERR_FORGED when the tag does not verify (altered bytes, another key,
 * other aad), MP_ERR_ARG, MP_ERR_CRYPTO. On any failure no plaintext byte
 * is left in out (what was written there is zeroed) and *out_len is
 * untouched. */
mp_status mp_unseal(const uint8_t key[MP_SEAL_KEY_LEN], const uint8_t *aad, size_t aad_len,
                    const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                    size_t *out_len);

/* For known-answer tests only: mp_seal() with the given nonce. A nonce
 * used twice under one key reveals the XOR of the plaintexts and lets
 * anyone forge tags, so production code must call mp_seal(). */
mp_status mp_seal_with_nonce(const uint8_t key[MP_SEAL_KEY_LEN],
                             const uint8_t nonce[MP_SEAL_NONCE_LEN],
                             const uint8_t *aad, size_t aad_len,
                             const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                             size_t *out_len);

/* out = HMAC-SHA256(secret, label): a sealing key for one purpose from a
 * secret of the secrets file, so the sealing key is never the secret
 * itself and two purposes never share a key. secret is 1..MP_SECRET_MAX
 * bytes (mp_crypto.h); label is 1..64 printable ASCII characters, without
 * its terminating NUL in the MAC. The caller must wipe out after use.
 * MP_ERR_ARG, MP_ERR_NOMEM, MP_ERR_CRYPTO. */
mp_status mp_seal_key_derive(const uint8_t *secret, size_t secret_len, const char *label,
                             uint8_t out[MP_SEAL_KEY_LEN]);

#endif
