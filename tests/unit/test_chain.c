/*
 * test_chain.c - mp_chain against a naive full recomputation, and the
 * O(sqrt n) memory bound at MP_CHAIN_MAX.
 */
#include <stdlib.h>
#include <string.h>
#include "tests.h"

static void seed_wn(uint32_t n, uint8_t wn[MP_HASH_LEN])
{
    uint64_t state = 0x9e3779b97f4a7c15ULL ^ n;
    size_t k;

    for (k = 0; k < MP_HASH_LEN; k++)
        wn[k] = (uint8_t)t_rand(&state);
}

/* All words w_0..w_n, the obvious way. */
static uint8_t (*naive_chain(uint32_t n, const uint8_t wn[MP_HASH_LEN]))[MP_HASH_LEN]
{
    uint8_t (*w)[MP_HASH_LEN] = calloc((size_t)n + 1, MP_HASH_LEN);
    uint32_t i;

    if (w == NULL)
        return NULL;
    memcpy(w[n], wn, MP_HASH_LEN);
    for (i = n; i > 0; i--)
        if (mp_sha256(w[i], MP_HASH_LEN, w[i - 1]) != MP_OK) {
            free(w);
            return NULL;
        }
    return w;
}

static void check_chain(uint32_t n)
{
    uint8_t wn[MP_HASH_LEN], got[MP_HASH_LEN];
    uint8_t (*w)[MP_HASH_LEN];
    mp_chain *c = NULL;
    uint32_t i, idx = 0, seeks[] = { 0, 1, 2, 0, 0, 0 };
    size_t s;

    seed_wn(n, wn);
    w = naive_chain(n, wn);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    MP_ASSERT_OK(mp_chain_new(wn, n, &c));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(mp_chain_length(c), n);
    CU_ASSERT_EQUAL(mp_chain_position(c), 0);
    mp_chain_w0(c, got);
    CU_ASSERT(memcmp(got, w[0], MP_HASH_LEN) == 0);

    /* next() in increasing order, then exhaustion */
    for (i = 1; i <= n; i++) {
        memset(got, 0, sizeof got);
        MP_ASSERT_OK(mp_chain_next(c, &idx, got));
        CU_ASSERT_EQUAL(idx, i);
        CU_ASSERT_EQUAL(mp_chain_position(c), i);
        if (memcmp(got, w[i], MP_HASH_LEN) != 0) {
            CU_FAIL("next() word differs from naive chain");
            break;
        }
    }
    idx = 12345;
    MP_ASSERT_ST(mp_chain_next(c, &idx, got), MP_ERR_EXHAUSTED);
    CU_ASSERT_EQUAL(idx, 12345);
    CU_ASSERT_EQUAL(mp_chain_position(c), n);

    /* word(i) for every i, without moving the position */
    for (i = 0; i <= n; i++) {
        MP_ASSERT_OK(mp_chain_word(c, i, got));
        if (memcmp(got, w[i], MP_HASH_LEN) != 0) {
            CU_FAIL("word(i) differs from naive chain");
            break;
        }
    }
    CU_ASSERT_EQUAL(mp_chain_position(c), n);
    MP_ASSERT_ST(mp_chain_word(c, n + 1, got), MP_ERR_ARG);

    /* seek, then continue from there across segment boundaries */
    seeks[3] = n / 2;
    seeks[4] = n - 1;
    seeks[5] = n;
    for (s = 0; s < sizeof seeks / sizeof seeks[0]; s++) {
        uint32_t at = seeks[s] > n ? n : seeks[s];
        MP_ASSERT_OK(mp_chain_seek(c, at));
        CU_ASSERT_EQUAL(mp_chain_position(c), at);
        for (i = at + 1; i <= n && i <= at + 40; i++) {
            MP_ASSERT_OK(mp_chain_next(c, &idx, got));
            CU_ASSERT_EQUAL(idx, i);
            CU_ASSERT(memcmp(got, w[i], MP_HASH_LEN) == 0);
        }
        if (at == n)
            MP_ASSERT_ST(mp_chain_next(c, &idx, got), MP_ERR_EXHAUSTED);
    }
    MP_ASSERT_ST(mp_chain_seek(c, n + 1), MP_ERR_ARG);
    CU_ASSERT(mp_chain_memory(c) > 0);

    mp_chain_free(c);
    free(w);
}

static void test_chain_small(void)
{
    static const uint32_t ns[] = { 1, 2, 3, 4, 5, 15, 16, 17, 26, 99, 100, 101 };
    size_t k;

    for (k = 0; k < sizeof ns / sizeof ns[0]; k++)
        check_chain(ns[k]);
}

static void test_chain_1000(void)
{
    check_chain(1000);
    check_chain(1001);
    check_chain(1024);   /* s*s with s = 32 */
    check_chain(1025);   /* s*s + 1 */
}

static void test_chain_args(void)
{
    uint8_t wn[MP_HASH_LEN] = { 1 }, w[MP_HASH_LEN];
    mp_chain *c = NULL;
    uint32_t i;

    MP_ASSERT_ST(mp_chain_new(wn, 0, &c), MP_ERR_ARG);
    MP_ASSERT_ST(mp_chain_new(wn, MP_CHAIN_MAX + 1, &c), MP_ERR_ARG);
    MP_ASSERT_ST(mp_chain_new(NULL, 4, &c), MP_ERR_ARG);
    MP_ASSERT_ST(mp_chain_new(wn, 4, NULL), MP_ERR_ARG);
    CU_ASSERT_PTR_NULL(c);
    MP_ASSERT_ST(mp_chain_next(NULL, &i, w), MP_ERR_ARG);
    MP_ASSERT_ST(mp_chain_word(NULL, 0, w), MP_ERR_ARG);
    MP_ASSERT_ST(mp_chain_seek(NULL, 0), MP_ERR_ARG);
    CU_ASSERT_EQUAL(mp_chain_memory(NULL), 0);
    mp_chain_free(NULL);

    /* n = 1: w_1 = w_n, w_0 = H(w_n) */
    MP_ASSERT_OK(mp_chain_new(wn, 1, &c));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    MP_ASSERT_OK(mp_chain_next(c, &i, w));
    CU_ASSERT_EQUAL(i, 1);
    CU_ASSERT(memcmp(w, wn, MP_HASH_LEN) == 0);
    MP_ASSERT_ST(mp_chain_next(c, &i, w), MP_ERR_EXHAUSTED);
    mp_chain_free(c);
}

/* MP_CHAIN_MAX words: memory stays O(sqrt n), words are still right. */
static void test_chain_million(void)
{
    const uint32_t n = 1000000;
    uint8_t wn[MP_HASH_LEN], w0[MP_HASH_LEN], w[MP_HASH_LEN], back[MP_HASH_LEN];
    uint8_t w1[MP_HASH_LEN], prev[MP_HASH_LEN];
    mp_chain *c = NULL;
    mp_sha *h = NULL;
    uint32_t i, idx;

    CU_ASSERT_EQUAL(n, MP_CHAIN_MAX);
    seed_wn(n, wn);
    MP_ASSERT_OK(mp_sha_new(&h));
    MP_ASSERT_OK(mp_chain_new(wn, n, &c));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    CU_ASSERT(mp_chain_memory(c) < 200 * 1024);
    CU_ASSERT(mp_chain_memory(c) >= 2 * 1000 * MP_HASH_LEN);

    mp_chain_w0(c, w0);
    MP_ASSERT_OK(mp_sha_iterate(h, wn, n, back));
    CU_ASSERT(memcmp(back, w0, MP_HASH_LEN) == 0);

    MP_ASSERT_OK(mp_chain_next(c, &idx, w1));
    CU_ASSERT_EQUAL(idx, 1);
    MP_ASSERT_OK(mp_sha_iterate(h, w1, 1, back));
    CU_ASSERT(memcmp(back, w0, MP_HASH_LEN) == 0);
    MP_ASSERT_OK(mp_sha_iterate(h, wn, n - 1, back));
    CU_ASSERT(memcmp(back, w1, MP_HASH_LEN) == 0);

    MP_ASSERT_OK(mp_chain_word(c, 500000, w));
    MP_ASSERT_OK(mp_sha_iterate(h, w, 500000, back));
    CU_ASSERT(memcmp(back, w0, MP_HASH_LEN) == 0);
    MP_ASSERT_OK(mp_sha_iterate(h, wn, n - 500000, back));
    CU_ASSERT(memcmp(back, w, MP_HASH_LEN) == 0);

    MP_ASSERT_OK(mp_chain_word(c, n, w));
    CU_ASSERT(memcmp(w, wn, MP_HASH_LEN) == 0);
    CU_ASSERT_EQUAL(mp_chain_position(c), 1);

    /* A walk across segment boundaries links up: H(w_i) == w_{i-1}. */
    MP_ASSERT_OK(mp_chain_seek(c, 498990));
    MP_ASSERT_OK(mp_chain_word(c, 498990, prev));
    for (i = 498991; i <= 501010; i++) {
        MP_ASSERT_OK(mp_chain_next(c, &idx, w));
        MP_ASSERT_OK(mp_sha_iterate(h, w, 1, back));
        if (idx != i || memcmp(back, prev, MP_HASH_LEN) != 0) {
            CU_FAIL("chain walk broken");
            break;
        }
        memcpy(prev, w, MP_HASH_LEN);
    }
    MP_ASSERT_OK(mp_chain_seek(c, n - 1));
    MP_ASSERT_OK(mp_chain_next(c, &idx, w));
    CU_ASSERT_EQUAL(idx, n);
    CU_ASSERT(memcmp(w, wn, MP_HASH_LEN) == 0);
    MP_ASSERT_ST(mp_chain_next(c, &idx, w), MP_ERR_EXHAUSTED);

    mp_chain_free(c);
    mp_sha_free(h);
}

int register_chain_tests(void)
{
    CU_pSuite s = CU_add_suite("chain", NULL, NULL);

    if (s == NULL
        || CU_add_test(s, "words match naive chain, small n", test_chain_small) == NULL
        || CU_add_test(s, "words match naive chain, n ~ 1000", test_chain_1000) == NULL
        || CU_add_test(s, "arguments and n = 1", test_chain_args) == NULL
        || CU_add_test(s, "n = 10^6: memory and words", test_chain_million) == NULL)
        return -1;
    return 0;
}
