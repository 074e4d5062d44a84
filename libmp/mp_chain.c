/*
 * mp_chain.c - PayWord hash chain with sqrt-decomposition.
 *
 * With s = ceil(sqrt n), ck[j] holds w_{j*s} for j = 0 .. n/s, and wn
 * holds w_n. Segment j covers w_{j*s+1} .. w_{min((j+1)*s, n)}: it is
 * recomputed from the word just above it (ck[j+1], or w_n for the last,
 * partial segment) with one hash per word, and kept until the position
 * leaves it. Any word lies below a stored word by fewer than s steps.
 */
#include <stdlib.h>
#include <string.h>
#include "mp_chain.h"
#include "mp_limits.h"

#define NO_SEGMENT UINT32_MAX

struct mp_chain {
    mp_sha   *h;
    uint32_t  n;
    uint32_t  s;
    uint32_t  pos;
    uint32_t  nck;              /* n / s + 1 checkpoints */
    uint32_t  seg_idx;          /* segment held in seg, or NO_SEGMENT */
    uint8_t   wn[MP_HASH_LEN];
    uint8_t (*ck)[MP_HASH_LEN];
    uint8_t (*seg)[MP_HASH_LEN];
};

static uint32_t ceil_sqrt(uint32_t n)
{
    uint64_t s = 1;

    while (s * s < n)
        s++;
    return (uint32_t)s;
}

/* The word the segment containing index i (>= 1) is computed from, and
 * its index. */
static const uint8_t *anchor_above(const mp_chain *c, uint32_t i, uint32_t *at)
{
    uint32_t j = (i + c->s - 1) / c->s;   /* ceil(i / s) */

    if (j < c->nck && (uint64_t)j * c->s <= c->n) {
        *at = j * c->s;
        return c->ck[j];
    }
    *at = c->n;
    return c->wn;
}

static mp_status load_segment(mp_chain *c, uint32_t idx)
{
    uint32_t first = idx * c->s + 1;
    uint32_t top = first + c->s - 1 > c->n ? c->n : first + c->s - 1;
    uint32_t at, t;
    const uint8_t *src = anchor_above(c, top, &at);
    mp_status st = MP_OK;

    /* Invalidate first: a failure halfway leaves no stale segment behind. */
    c->seg_idx = NO_SEGMENT;
    t = top - first;
    memcpy(c->seg[t], src, MP_HASH_LEN);
    while (t > 0) {
        if ((st = mp_sha_digest(c->h, c->seg[t], MP_HASH_LEN, c->seg[t - 1])) != MP_OK)
            goto out;
        t--;
    }
    c->seg_idx = idx;
out:
    return st;
}

mp_status mp_chain_new(const uint8_t wn[MP_HASH_LEN], uint32_t n, mp_chain **out)
{
    mp_chain *c = NULL;
    mp_status st = MP_ERR_ARG;
    uint32_t j;

    if (wn == NULL || out == NULL || n < 1 || n > MP_CHAIN_MAX)
        goto out;
    st = MP_ERR_NOMEM;
    if ((c = calloc(1, sizeof *c)) == NULL)
        goto out;
    c->n = n;
    c->s = ceil_sqrt(n);
    c->nck = n / c->s + 1;
    c->seg_idx = NO_SEGMENT;
    memcpy(c->wn, wn, MP_HASH_LEN);
    if ((c->ck = calloc(c->nck, MP_HASH_LEN)) == NULL
        || (c->seg = calloc(c->s, MP_HASH_LEN)) == NULL)
        goto out;
    if ((st = mp_sha_new(&c->h)) != MP_OK)
        goto out;

    /* The one full pass, w_n down to w_0. */
    j = c->nck - 1;
    if ((st = mp_sha_iterate(c->h, c->wn, n - j * c->s, c->ck[j])) != MP_OK)
        goto out;
    while (j > 0) {
        if ((st = mp_sha_iterate(c->h, c->ck[j], c->s, c->ck[j - 1])) != MP_OK)
            goto out;
        j--;
    }
    *out = c;
    c = NULL;
out:
    mp_chain_free(c);
    return st;
}

void mp_chain_free(mp_chain *c)
{
    if (c == NULL)
        return;
    mp_wipe(c->wn, sizeof c->wn);
    if (c->ck != NULL)
        mp_wipe(c->ck, (size_t)c->nck * MP_HASH_LEN);
    if (c->seg != NULL)
        mp_wipe(c->seg, (size_t)c->s * MP_HASH_LEN);
    free(c->ck);
    free(c->seg);
    mp_sha_free(c->h);
    free(c);
}

uint32_t mp_chain_length(const mp_chain *c)
{
    return c ? c->n : 0;
}

uint32_t mp_chain_position(const mp_chain *c)
{
    return c ? c->pos : 0;
}

void mp_chain_w0(const mp_chain *c, uint8_t out[MP_HASH_LEN])
{
    if (c != NULL && out != NULL)
        memcpy(out, c->ck[0], MP_HASH_LEN);
}

mp_status mp_chain_next(mp_chain *c, uint32_t *i, uint8_t w[MP_HASH_LEN])
{
    uint32_t idx, k;
    mp_status st = MP_ERR_ARG;

    if (c == NULL || i == NULL || w == NULL)
        goto out;
    if (c->pos >= c->n) {
        st = MP_ERR_EXHAUSTED;
        goto out;
    }
    k = c->pos + 1;
    idx = (k - 1) / c->s;
    if (c->seg_idx != idx && (st = load_segment(c, idx)) != MP_OK)
        goto out;
    memcpy(w, c->seg[(k - 1) - idx * c->s], MP_HASH_LEN);
    *i = k;
    c->pos = k;
    st = MP_OK;
out:
    return st;
}

mp_status mp_chain_word(mp_chain *c, uint32_t i, uint8_t w[MP_HASH_LEN])
{
    const uint8_t *src;
    uint32_t at;
    mp_status st = MP_ERR_ARG;

    if (c == NULL || w == NULL || i > c->n)
        goto out;
    if (i == 0) {
        memcpy(w, c->ck[0], MP_HASH_LEN);
        st = MP_OK;
        goto out;
    }
    if (c->seg_idx != NO_SEGMENT && (i - 1) / c->s == c->seg_idx) {
        memcpy(w, c->seg[(i - 1) - c->seg_idx * c->s], MP_HASH_LEN);
        st = MP_OK;
        goto out;
    }
    src = anchor_above(c, i, &at);
    st = mp_sha_iterate(c->h, src, at - i, w);
out:
    return st;
}

mp_status mp_chain_seek(mp_chain *c, uint32_t i)
{
    if (c == NULL || i > c->n)
        return MP_ERR_ARG;
    /* The segment is loaded lazily by the next mp_chain_next(). */
    c->pos = i;
    return MP_OK;
}

size_t mp_chain_memory(const mp_chain *c)
{
    if (c == NULL)
        return 0;
    return sizeof *c + ((size_t)c->nck + c->s) * MP_HASH_LEN;
}
