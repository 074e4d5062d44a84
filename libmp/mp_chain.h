/*
 * mp_chain.h - PayWord hash chain generation in O(sqrt n) memory.
 *
 * w_n is the secret start (random, or derived by the wallet); w_{i-1} =
 * SHA-256(w_i); w0 is what the commitment publishes. Payments reveal
 * w_1, w_2, ... in increasing order, the reverse of the order they are
 * computed in. Keeping all n words (32 MB for n = 10^6) is wasteful, so the
 * generator keeps one checkpoint every s = ceil(sqrt n) words and the
 * current segment of s words: 2 * sqrt(n) * 32 bytes (64 KB for 10^6),
 * n hashes to set up and about one more hash per word produced.
 *
 * A chain object owns a copy of w_n and wipes it, its checkpoints and its
 * segment on free. Not thread-safe.
 */
#ifndef MP_CHAIN_H
#define MP_CHAIN_H

#include <stdint.h>
#include "mp_status.h"
#include "mp_crypto.h"

typedef struct mp_chain mp_chain;

/* Builds the chain of length n (1..MP_CHAIN_MAX) from w_n. Position 0:
 * the next word produced is w_1. MP_ERR_ARG, MP_ERR_NOMEM, MP_ERR_CRYPTO. */
mp_status mp_chain_new(const uint8_t wn[MP_HASH_LEN], uint32_t n, mp_chain **out);
void mp_chain_free(mp_chain *c);

uint32_t mp_chain_length(const mp_chain *c);
/* Index of the last word produced (0 before the first). */
uint32_t mp_chain_position(const mp_chain *c);
void mp_chain_w0(const mp_chain *c, uint8_t out[MP_HASH_LEN]);

/* Produces the next word w_i, i = position + 1; *i gets its index.
 * MP_ERR_EXHAUSTED after w_n. */
mp_status mp_chain_next(mp_chain *c, uint32_t *i, uint8_t w[MP_HASH_LEN]);

/* Any word w_i, 0 <= i <= n, without moving the position: at most
 * s hashes. MP_ERR_ARG for i > n. */
mp_status mp_chain_word(mp_chain *c, uint32_t i, uint8_t w[MP_HASH_LEN]);

/* Moves the position so that the next word is w_{i+1} (a wallet that
 * restarts after having paid up to w_i). MP_ERR_ARG for i > n. */
mp_status mp_chain_seek(mp_chain *c, uint32_t i);

/* Bytes of memory the chain holds (for tests of the O(sqrt n) bound). */
size_t mp_chain_memory(const mp_chain *c);

#endif
