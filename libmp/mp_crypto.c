/*
 * mp_crypto.c - SHA-256 and HMAC-SHA256 through OpenSSL 3 EVP.
 *
 * Each object fetches its algorithm once and keeps its context: in
 * OpenSSL 3 the implicit fetch behind EVP_sha256() or HMAC() costs more
 * than hashing 32 bytes, and chain verification and scrip validation
 * are dominated by exactly such short inputs.
 */
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include "mp_crypto.h"

int mp_ct_equal(const void *a, size_t a_len, const void *b, size_t b_len)
{
    if (a == NULL || b == NULL || a_len != b_len)
        return 0;
    return CRYPTO_memcmp(a, b, a_len) == 0;
}

void mp_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        OPENSSL_cleanse(p, n);
}

mp_status mp_random(void *buf, size_t n)
{
    if (buf == NULL || n > 0x7fffffff)
        return MP_ERR_ARG;
    return RAND_bytes(buf, (int)n) == 1 ? MP_OK : MP_ERR_CRYPTO;
}

/* ---- SHA-256 -------------------------------------------------------------- */

struct mp_sha {
    EVP_MD     *md;
    EVP_MD_CTX *ctx;
};

mp_status mp_sha_new(mp_sha **out)
{
    mp_sha *h;
    mp_status st = MP_ERR_NOMEM;

    if (out == NULL)
        return MP_ERR_ARG;
    if ((h = calloc(1, sizeof *h)) == NULL)
        goto done;
    st = MP_ERR_CRYPTO;
    if ((h->md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL
        || (h->ctx = EVP_MD_CTX_new()) == NULL)
        goto done;
    *out = h;
    h = NULL;
    st = MP_OK;
done:
    mp_sha_free(h);
    return st;
}

void mp_sha_free(mp_sha *h)
{
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->ctx);
    EVP_MD_free(h->md);
    free(h);
}

mp_status mp_sha_digest(mp_sha *h, const void *data, size_t len, uint8_t out[MP_HASH_LEN])
{
    uint8_t tmp[MP_HASH_LEN];
    unsigned int n = 0;
    mp_status st = MP_ERR_CRYPTO;

    if (h == NULL || out == NULL || (data == NULL && len > 0))
        return MP_ERR_ARG;
    if (EVP_DigestInit_ex2(h->ctx, h->md, NULL) != 1
        || EVP_DigestUpdate(h->ctx, data, len) != 1
        || EVP_DigestFinal_ex(h->ctx, tmp, &n) != 1 || n != MP_HASH_LEN)
        goto done;
    memcpy(out, tmp, MP_HASH_LEN);
    st = MP_OK;
done:
    return st;
}

mp_status mp_sha_iterate(mp_sha *h, const uint8_t in[MP_HASH_LEN], uint32_t times,
                         uint8_t out[MP_HASH_LEN])
{
    uint8_t cur[MP_HASH_LEN];
    unsigned int n = 0;
    uint32_t i;
    mp_status st = MP_ERR_CRYPTO;

    if (h == NULL || in == NULL || out == NULL)
        return MP_ERR_ARG;
    memcpy(cur, in, MP_HASH_LEN);
    for (i = 0; i < times; i++) {
        /* Init with NULL type reuses the fetched digest without a lookup. */
        if ((i == 0 ? EVP_DigestInit_ex2(h->ctx, h->md, NULL)
                    : EVP_DigestInit_ex2(h->ctx, NULL, NULL)) != 1
            || EVP_DigestUpdate(h->ctx, cur, MP_HASH_LEN) != 1
            || EVP_DigestFinal_ex(h->ctx, cur, &n) != 1 || n != MP_HASH_LEN)
            goto done;
    }
    memcpy(out, cur, MP_HASH_LEN);
    st = MP_OK;
done:
    mp_wipe(cur, sizeof cur);
    return st;
}

/* One-shot hashing is on some per-request paths (record ids, ledger keys):
 * the digest is fetched once per process, since a fetch per call costs more
 * than hashing a short input. The fetched EVP_MD is immutable and may be
 * shared by threads; it lives until the process exits. */
static EVP_MD *sha256_md;
static CRYPTO_ONCE sha256_once = CRYPTO_ONCE_STATIC_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

mp_status mp_sha256(const void *data, size_t len, uint8_t out[MP_HASH_LEN])
{
    uint8_t tmp[MP_HASH_LEN];
    unsigned int n = 0;

    if (out == NULL || (data == NULL && len > 0))
        return MP_ERR_ARG;
    if (!CRYPTO_THREAD_run_once(&sha256_once, sha256_fetch) || sha256_md == NULL)
        return MP_ERR_CRYPTO;
    if (EVP_Digest(data, len, tmp, &n, sha256_md, NULL) != 1 || n != MP_HASH_LEN)
        return MP_ERR_CRYPTO;
    memcpy(out, tmp, MP_HASH_LEN);
    return MP_OK;
}

/* ---- HMAC-SHA256 ------------------------------------------------------------ */

struct mp_mac {
    EVP_MAC     *mac;
    EVP_MAC_CTX *ctx;
};

/* The digest is set once when the context is made; re-keying passes no
 * parameters, because naming the digest again makes OpenSSL fetch it again,
 * which costs more than the MAC of a short message. The keyed context is
 * kept: later EVP_MAC_init(ctx, NULL, 0, NULL) calls restart from the
 * stored key state without re-deriving it. */
static mp_status mac_set_key(mp_mac *m, const uint8_t *key, size_t key_len)
{
    if (key == NULL || key_len == 0 || key_len > MP_SECRET_MAX)
        return MP_ERR_ARG;
    if (EVP_MAC_init(m->ctx, key, key_len, NULL) != 1)
        return MP_ERR_CRYPTO;
    return MP_OK;
}

mp_status mp_mac_new(const uint8_t *key, size_t key_len, mp_mac **out)
{
    OSSL_PARAM params[2];
    mp_mac *m;
    mp_status st = MP_ERR_NOMEM;

    if (out == NULL || key == NULL || key_len == 0 || key_len > MP_SECRET_MAX)
        return MP_ERR_ARG;
    if ((m = calloc(1, sizeof *m)) == NULL)
        goto done;
    st = MP_ERR_CRYPTO;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if ((m->mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL
        || (m->ctx = EVP_MAC_CTX_new(m->mac)) == NULL
        || EVP_MAC_CTX_set_params(m->ctx, params) != 1)
        goto done;
    if ((st = mac_set_key(m, key, key_len)) != MP_OK)
        goto done;
    *out = m;
    m = NULL;
    st = MP_OK;
done:
    mp_mac_free(m);
    return st;
}

mp_status mp_mac_dup(const mp_mac *m, mp_mac **out)
{
    mp_mac *d;
    mp_status st = MP_ERR_NOMEM;

    if (m == NULL || out == NULL)
        return MP_ERR_ARG;
    if ((d = calloc(1, sizeof *d)) == NULL)
        goto done;
    st = MP_ERR_CRYPTO;
    if (EVP_MAC_up_ref(m->mac) != 1)
        goto done;
    d->mac = m->mac;
    if ((d->ctx = EVP_MAC_CTX_dup(m->ctx)) == NULL)
        goto done;
    *out = d;
    d = NULL;
    st = MP_OK;
done:
    mp_mac_free(d);
    return st;
}

mp_status mp_mac_rekey(mp_mac *m, const uint8_t *key, size_t key_len)
{
    if (m == NULL)
        return MP_ERR_ARG;
    return mac_set_key(m, key, key_len);
}

void mp_mac_free(mp_mac *m)
{
    if (m == NULL)
        return;
    /* EVP_MAC_CTX_free cleanses the HMAC key state it holds. */
    EVP_MAC_CTX_free(m->ctx);
    EVP_MAC_free(m->mac);
    free(m);
}

mp_status mp_mac_compute(mp_mac *m, const mp_iov *parts, size_t nparts,
                         uint8_t out[MP_HASH_LEN])
{
    uint8_t tmp[MP_HASH_LEN];
    size_t n = 0, i;
    mp_status st = MP_ERR_CRYPTO;

    if (m == NULL || out == NULL || (parts == NULL && nparts > 0) || nparts > 8)
        return MP_ERR_ARG;
    for (i = 0; i < nparts; i++)
        if (parts[i].p == NULL && parts[i].len > 0)
            return MP_ERR_ARG;
    if (EVP_MAC_init(m->ctx, NULL, 0, NULL) != 1)
        goto done;
    for (i = 0; i < nparts; i++)
        if (parts[i].len > 0 && EVP_MAC_update(m->ctx, parts[i].p, parts[i].len) != 1)
            goto done;
    if (EVP_MAC_final(m->ctx, tmp, &n, sizeof tmp) != 1 || n != MP_HASH_LEN)
        goto done;
    memcpy(out, tmp, MP_HASH_LEN);
    st = MP_OK;
done:
    mp_wipe(tmp, sizeof tmp);
    return st;
}

mp_status mp_hmac(const uint8_t *key, size_t key_len, const void *data, size_t len,
                  uint8_t out[MP_HASH_LEN])
{
    mp_mac *m = NULL;
    mp_iov iov;
    mp_status st;

    if ((st = mp_mac_new(key, key_len, &m)) != MP_OK)
        return st;
    iov.p = data;
    iov.len = len;
    st = mp_mac_compute(m, &iov, 1, out);
    mp_mac_free(m);
    return st;
}
