/*
 * tests.h - shared helpers of the libmp CUnit suites.
 *
 * Each test_<area>.c defines one register function listed in
 * test_main.c; it adds its suite(s) with CU_add_suite/CU_add_test and
 * returns 0, or -1 when CUnit could not register them.
 */
#ifndef MP_TESTS_H
#define MP_TESTS_H

#include <stddef.h>
#include <stdint.h>
#include <CUnit/CUnit.h>
#include "mp.h"

int register_amount_tests(void);
int register_crypto_tests(void);
int register_sign_tests(void);
int register_wire_tests(void);
int register_millicent_tests(void);
int register_payword_tests(void);
int register_chain_tests(void);
int register_offer_tests(void);
int register_vector_tests(void);
int register_mutation_tests(void);
int register_pwtrack_tests(void);
int register_keyfile_tests(void);
int register_seal_tests(void);
int register_reject_tests(void);

/* Asserts that expression e returns status s, printing both names when
 * it does not. */
#define MP_ASSERT_ST(e, s) do { \
        mp_status st_ = (e); \
        if (st_ != (s)) \
            fprintf(stderr, "\n  %s:%d: got %s, want %s\n", __FILE__, __LINE__, \
                    mp_strerror(st_), mp_strerror(s)); \
        CU_ASSERT_EQUAL(st_, (s)); \
    } while (0)
#define MP_ASSERT_OK(e) MP_ASSERT_ST(e, MP_OK)

/* Hex <-> bytes for vectors. hex_decode returns the byte count or -1. */
long t_hex_decode(const char *hex, uint8_t *out, size_t cap);
void t_hex_encode(const uint8_t *in, size_t n, char *out /* 2n+1 */);

/* Deterministic xorshift PRNG for reproducible randomized tests. */
uint64_t t_rand(uint64_t *state);

/* Fixed test keys, derived from constant seeds (see test_util.c). */
mp_signer *t_broker_key(void);   /* Ed25519, owned by test_util, freed at exit */
mp_signer *t_user_key(void);
mp_signer *t_rsa_broker_key(void); /* RSA-2048, generated once per run */

#include <stdio.h>
#endif
