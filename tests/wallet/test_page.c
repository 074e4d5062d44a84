/* wp_page_set / wp_page_clear (wp.h): copies, NUL termination, replacing,
 * freeing (leaks show under the sanitizer build). */
#include <stdlib.h>
#include <string.h>
#include "wp.h"
#include "wp_tests.h"

static void test_set_copies(void)
{
    wp_page p;
    char body[] = "a\0b<";

    memset(&p, 0, sizeof p);
    CU_ASSERT_EQUAL(wp_page_set(&p, 404, "text/html", body, 4), 0);
    CU_ASSERT_EQUAL(p.status, 404);
    CU_ASSERT_STRING_EQUAL(p.content_type, "text/html");
    CU_ASSERT_EQUAL(p.body_len, 4);
    CU_ASSERT(p.body != body);
    CU_ASSERT_EQUAL(memcmp(p.body, "a\0b<", 4), 0);
    CU_ASSERT_EQUAL(p.body[4], '\0');
    CU_ASSERT_PTR_NULL(p.location);
    CU_ASSERT_PTR_NULL(p.extra_headers);
    body[0] = 'z';
    CU_ASSERT_EQUAL(p.body[0], 'a');
    wp_page_clear(&p);
}

static void test_set_defaults(void)
{
    wp_page p;

    memset(&p, 0, sizeof p);
    CU_ASSERT_EQUAL(wp_page_set(&p, 200, NULL, NULL, 0), 0);
    CU_ASSERT_STRING_EQUAL(p.content_type, "text/plain; charset=utf-8");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p.body);
    CU_ASSERT_STRING_EQUAL(p.body, "");
    CU_ASSERT_EQUAL(p.body_len, 0);
    wp_page_clear(&p);
}

static void test_set_replaces(void)
{
    wp_page p;

    memset(&p, 0, sizeof p);
    CU_ASSERT_EQUAL(wp_page_set(&p, 302, "text/plain", "one", 3), 0);
    p.location = strdup("/there");
    p.extra_headers = strdup("X-A: b\r\n");
    CU_ASSERT_EQUAL(wp_page_set(&p, 200, "application/json", "{}", 2), 0);
    CU_ASSERT_EQUAL(p.status, 200);
    CU_ASSERT_STRING_EQUAL(p.content_type, "application/json");
    CU_ASSERT_STRING_EQUAL(p.body, "{}");
    CU_ASSERT_PTR_NULL(p.location);          /* freed with the old content */
    CU_ASSERT_PTR_NULL(p.extra_headers);
    wp_page_clear(&p);
}

static void test_clear(void)
{
    wp_page p;

    memset(&p, 0, sizeof p);
    CU_ASSERT_EQUAL(wp_page_set(&p, 500, "text/plain", "x", 1), 0);
    p.location = strdup("/l");
    p.extra_headers = strdup("X: y\r\n");
    wp_page_clear(&p);
    CU_ASSERT_EQUAL(p.status, 0);
    CU_ASSERT_PTR_NULL(p.content_type);
    CU_ASSERT_PTR_NULL(p.location);
    CU_ASSERT_PTR_NULL(p.extra_headers);
    CU_ASSERT_PTR_NULL(p.body);
    CU_ASSERT_EQUAL(p.body_len, 0);
    wp_page_clear(&p);                        /* twice is harmless */
    wp_page_clear(NULL);
}

int register_page_tests(void)
{
    CU_pSuite s = CU_add_suite("wp_page", NULL, NULL);

    if (s == NULL || CU_add_test(s, "set copies the body", test_set_copies) == NULL
        || CU_add_test(s, "set defaults", test_set_defaults) == NULL
        || CU_add_test(s, "set replaces and frees", test_set_replaces) == NULL
        || CU_add_test(s, "clear", test_clear) == NULL)
        return -1;
    return 0;
}
