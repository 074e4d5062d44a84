/*
 * mp_seal.c - AES-256-GCM sealing of records at rest, through OpenSSL 3 EVP.
 *
 * Each call gets its own EVP_CIPHER_CTX, so the functions need no locking;
 * only the algorithm is fetched once per process (see gcm_fetch). The key
 * schedule lives inside the context, and freeing the context makes the
 * provider cleanse it, so no key material outlives a call.
 */
#include <stdint.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include "mp_crypto.h"
#include "mp_seal.h"

#define LABEL_MAX 64

/* The derived key is an HMAC-SHA256 output taken whole: refuse to build if
 * the two lengths ever drift apart (C99 has no _Static_assert). */
typedef char mp_seal_key_is_a_mac[(MP_SEAL_KEY_LEN == MP_HASH_LEN) ? 1 : -1];

/* An implicit fetch per call (EVP_aes_256_gcm()) costs about as much as
 * sealing a short record, so the cipher is fetched once. A fetched
 * EVP_CIPHER is immutable and may be shared by threads; it lives until the
 * process exits. */
static EVP_CIPHER *gcm_cipher;
static CRYPTO_ONCE gcm_once = CRYPTO_ONCE_STATIC_INIT;

static void gcm_fetch(void)
{
    gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

static const EVP_CIPHER *gcm(void)
{
    if (!CRYPTO_THREAD_run_once(&gcm_once, gcm_fetch))
        return NULL;
    return gcm_cipher;
}

/* OpenSSL refuses partially overlapping buffers only deep inside an update
 * (as a generic failure); saying so up front gives the caller MP_ERR_ARG. */
static int overlaps(const void *a, size_t a_len, const void *b, size_t b_len)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;

    if (a_len == 0 || b_len == 0)
        return 0;
    return x < y + b_len && y < x + a_len;
}

/* The argument rules of mp_seal() and mp_seal_with_nonce(), in one place
 * so that mp_seal() can check them before it draws a nonce. The size
 * bounds keep every length within the int that EVP updates take, and make
 * in_len + MP_SEAL_OVERHEAD unable to wrap. */
static int seal_args_ok(const uint8_t *key, const uint8_t *aad, size_t aad_len,
                        const uint8_t *in, size_t in_len, const uint8_t *out, size_t out_cap,
                        const size_t *out_len)
{
    return key != NULL && out != NULL && out_len != NULL
        && (aad != NULL || aad_len == 0) && (in != NULL || in_len == 0)
        && aad_len <= MP_SEAL_MAX && in_len <= MP_SEAL_MAX
        && out_cap >= in_len + MP_SEAL_OVERHEAD
        && !overlaps(in, in_len, out, in_len + MP_SEAL_OVERHEAD);
}

mp_status mp_seal_with_nonce(const uint8_t key[MP_SEAL_KEY_LEN],
                             const uint8_t nonce[MP_SEAL_NONCE_LEN],
                             const uint8_t *aad, size_t aad_len,
                             const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                             size_t *out_len)
{
    EVP_CIPHER_CTX *ctx = NULL;
    const EVP_CIPHER *cipher;
    uint8_t iv[MP_SEAL_NONCE_LEN];
    uint8_t *ct, *tag;
    int n = 0, fin = 0;
    mp_status st = MP_ERR_CRYPTO;

    if (nonce == NULL || !seal_args_ok(key, aad, aad_len, in, in_len, out, out_cap, out_len))
        return MP_ERR_ARG;
    /* Copied first: a nonce that points into out would otherwise change
     * under the cipher once out is written. */
    memcpy(iv, nonce, sizeof iv);
    ct = out + MP_SEAL_NONCE_LEN;
    tag = ct + in_len;

    if ((cipher = gcm()) == NULL || (ctx = EVP_CIPHER_CTX_new()) == NULL)
        goto done;
    /* GCM's default IV length is the 96 bits used here, for which the
     * counter starts from the nonce directly (no GHASH of the IV). */
    if (EVP_EncryptInit_ex2(ctx, cipher, key, iv, NULL) != 1)
        goto done;
    if (aad_len > 0 && EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1)
        goto done;
    if (in_len > 0 && (EVP_EncryptUpdate(ctx, ct, &n, in, (int)in_len) != 1
                       || (size_t)n != in_len))
        goto done;
    /* GCM is a stream mode: Final emits no bytes, it only completes the tag. */
    if (EVP_EncryptFinal_ex(ctx, tag, &fin) != 1 || fin != 0
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, MP_SEAL_TAG_LEN, tag) != 1)
        goto done;
    memcpy(out, iv, sizeof iv);
    *out_len = in_len + MP_SEAL_OVERHEAD;
    st = MP_OK;
done:
    if (st != MP_OK)
        mp_wipe(out, in_len + MP_SEAL_OVERHEAD);
    EVP_CIPHER_CTX_free(ctx);
    return st;
}

mp_status mp_seal(const uint8_t key[MP_SEAL_KEY_LEN], const uint8_t *aad, size_t aad_len,
                  const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                  size_t *out_len)
{
    uint8_t nonce[MP_SEAL_NONCE_LEN];
    mp_status st;

    /* Checked before drawing a nonce, so that bad arguments are reported as
     * such and do not consume randomness. */
    if (!seal_args_ok(key, aad, aad_len, in, in_len, out, out_cap, out_len))
        return MP_ERR_ARG;
    if ((st = mp_random(nonce, sizeof nonce)) != MP_OK)
        goto done;
    st = mp_seal_with_nonce(key, nonce, aad, aad_len, in, in_len, out, out_cap, out_len);
done:
    return st;
}

mp_status mp_unseal(const uint8_t key[MP_SEAL_KEY_LEN], const uint8_t *aad, size_t aad_len,
                    const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                    size_t *out_len)
{
    EVP_CIPHER_CTX *ctx = NULL;
    const EVP_CIPHER *cipher;
    uint8_t tag[MP_SEAL_TAG_LEN];
    size_t ct_len;
    int n = 0, fin = 0;
    mp_status st;

    if (key == NULL || in == NULL || out == NULL || out_len == NULL
        || (aad == NULL && aad_len > 0) || aad_len > MP_SEAL_MAX)
        return MP_ERR_ARG;
    if (in_len < MP_SEAL_OVERHEAD)
        return MP_ERR_TRUNCATED;
    ct_len = in_len - MP_SEAL_OVERHEAD;
    if (ct_len > MP_SEAL_MAX || out_cap < ct_len || overlaps(in, in_len, out, ct_len))
        return MP_ERR_ARG;
    /* SET_TAG takes a non-const pointer; a copy keeps in read-only. */
    memcpy(tag, in + MP_SEAL_NONCE_LEN + ct_len, sizeof tag);

    st = MP_ERR_CRYPTO;
    if ((cipher = gcm()) == NULL || (ctx = EVP_CIPHER_CTX_new()) == NULL)
        goto done;
    if (EVP_DecryptInit_ex2(ctx, cipher, key, in, NULL) != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, MP_SEAL_TAG_LEN, tag) != 1)
        goto done;
    if (aad_len > 0 && EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1)
        goto done;
    /* The plaintext reaches out before the tag is checked (OpenSSL has no
     * verify-then-decrypt for GCM); it is wiped below if the tag fails. */
    if (ct_len > 0 && (EVP_DecryptUpdate(ctx, out, &n, in + MP_SEAL_NONCE_LEN, (int)ct_len) != 1
                       || (size_t)n != ct_len))
        goto done;
    /* With the tag set, Final fails only when it does not verify. */
    if (EVP_DecryptFinal_ex(ctx, out + ct_len, &fin) != 1) {
        st = MP_ERR_FORGED;
        goto done;
    }
    if (fin != 0)
        goto done;
    *out_len = ct_len;
    st = MP_OK;
done:
    if (st != MP_OK)
        mp_wipe(out, ct_len);
    EVP_CIPHER_CTX_free(ctx);
    return st;
}

mp_status mp_seal_key_derive(const uint8_t *secret, size_t secret_len, const char *label,
                             uint8_t out[MP_SEAL_KEY_LEN])
{
    uint8_t tmp[MP_HASH_LEN];
    size_t n;
    mp_status st = MP_ERR_ARG;

    if (secret == NULL || secret_len == 0 || secret_len > MP_SECRET_MAX
        || label == NULL || out == NULL)
        return MP_ERR_ARG;
    /* Bounded scan: the label is a constant of the caller's code, and a
     * missing terminator must not send us reading far past it. */
    for (n = 0; n <= LABEL_MAX && label[n] != '\0'; n++)
        if (label[n] < 0x20 || label[n] > 0x7e)
            goto done;
    if (n == 0 || n > LABEL_MAX)
        goto done;
    if ((st = mp_hmac(secret, secret_len, label, n, tmp)) != MP_OK)
        goto done;
    memcpy(out, tmp, MP_SEAL_KEY_LEN);
    st = MP_OK;
done:
    mp_wipe(tmp, sizeof tmp);
    return st;
}
