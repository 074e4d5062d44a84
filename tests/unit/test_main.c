/* Runs every libmp suite; exits non-zero when any assertion failed or a
 * suite could not be set up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <CUnit/Basic.h>
#include "tests.h"

int main(int argc, char **argv)
{
    static int (*const reg[])(void) = {
        register_amount_tests, register_crypto_tests, register_sign_tests, register_wire_tests,
        register_millicent_tests, register_payword_tests, register_chain_tests,
        register_offer_tests, register_vector_tests, register_mutation_tests,
        register_pwtrack_tests, register_keyfile_tests, register_seal_tests,
        register_reject_tests,
    };
    unsigned failures;
    size_t i;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    for (i = 0; i < sizeof reg / sizeof reg[0]; i++) {
        if (reg[i]() != 0) {
            fprintf(stderr, "suite registration failed: %s\n", CU_get_error_msg());
            CU_cleanup_registry();
            return 2;
        }
    }
    CU_basic_set_mode(argc > 1 && strcmp(argv[1], "-v") == 0 ? CU_BRM_VERBOSE : CU_BRM_NORMAL);
    if (CU_basic_run_tests() != CUE_SUCCESS) {
        CU_cleanup_registry();
        return 2;
    }
    failures = CU_get_number_of_failures() + CU_get_number_of_suites_failed()
             + CU_get_number_of_tests_failed();
    printf("\n%u passed, %u failed\n",
           CU_get_number_of_tests_run() - CU_get_number_of_tests_failed(),
           CU_get_number_of_tests_failed());
    CU_cleanup_registry();
    return failures ? 1 : 0;
}
