/*
 * wp_tests.h - the wallet-proxy CUnit suites (wp_unit): the configuration,
 * the Payment challenge parser, the request parser and wp_page, tested
 * through their public entry points (wp.h, wp_config.h, wp_challenge.h,
 * wp_conn.h). Each test_<area>.c defines one register function listed in
 * wp_test_main.c; it returns 0, or -1 when CUnit could not register.
 */
#ifndef WP_TESTS_H
#define WP_TESTS_H

#include <CUnit/CUnit.h>

int register_config_tests(void);
int register_challenge_tests(void);
int register_request_tests(void);
int register_page_tests(void);

#endif
