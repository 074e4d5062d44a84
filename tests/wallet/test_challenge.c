/* The WWW-Authenticate Payment challenge parser (wp_challenge.h): tokens
 * and quoted strings, escapes, several challenges in one field, other
 * schemes, missing and oversized values, case, duplicates, header walking. */
#include <stdlib.h>
#include <string.h>
#include "wp_challenge.h"
#include "wp_tests.h"

static char realm[MP_NAME_MAX + 1], offer[MP_WIRE_TEXT_MAX + 1];

/* Parses v; returns the result with realm/offer pre-filled with "-". */
static int parse(const char *v)
{
    strcpy(realm, "-");
    strcpy(offer, "-");
    return wp_challenge_parse(v, realm, offer);
}

#define FOUND(v, r, o) do { \
        CU_ASSERT_EQUAL(parse(v), 1); \
        CU_ASSERT_STRING_EQUAL(realm, r); \
        CU_ASSERT_STRING_EQUAL(offer, o); \
    } while (0)
#define NONE(v) do { \
        CU_ASSERT_EQUAL(parse(v), 0); \
        CU_ASSERT_STRING_EQUAL(realm, "-");     /* outputs untouched */ \
        CU_ASSERT_STRING_EQUAL(offer, "-"); \
    } while (0)

static void test_basic_forms(void)
{
    FOUND("Payment realm=\"news.example\", offer=\"AAEC_-x\"", "news.example", "AAEC_-x");
    FOUND("Payment realm=news, offer=abc", "news", "abc");
    FOUND("Payment offer=abc, realm=news", "news", "abc");
    FOUND("  Payment   realm = \"v\" ,  offer =  o  ", "v", "o");
    FOUND("Payment realm=v,,, offer=o,", "v", "o");
    FOUND("Payment realm=\"\", offer=o", "", "o");    /* empty realm: the vendor check refuses */
    FOUND("Payment realm=v, offer=o, x=\"y\", ext=1", "v", "o");
}

static void test_quoted_escapes(void)
{
    FOUND("Payment realm=\"a\\\"b\\\\c\", offer=\"x\\y\"", "a\"b\\c", "xy");
    FOUND("Payment realm=\"a, b=c\", offer=\"o\"", "a, b=c", "o");
    NONE("Payment realm=\"v, offer=o");                  /* unterminated */
    NONE("Payment realm=\"v\", offer=\"o\\");
}

static void test_several_challenges(void)
{
    FOUND("Basic realm=\"b\", Payment realm=\"v\", offer=\"o\"", "v", "o");
    FOUND("Payment realm=v1, offer=o1, Payment realm=v2, offer=o2", "v1", "o1");
    FOUND("Payment realm=v1, Payment realm=v2, offer=o2", "v2", "o2");
    FOUND("Negotiate abc==, Payment realm=v, offer=o", "v", "o");
    FOUND("Bearer, Payment realm=v, offer=o, Basic realm=x", "v", "o");
    /* the Basic realm is not the Payment challenge's */
    NONE("Basic realm=\"b\", Payment offer=\"o\"");
    NONE("Payment realm=v, Basic offer=o");
    NONE("Basic realm=v, offer=o");
    NONE("Payments realm=v, offer=o");
    NONE("XPayment realm=v, offer=o");
}

static void test_missing(void)
{
    NONE("");
    NONE("Payment");
    NONE("Payment realm=v");
    NONE("Payment offer=o");
    NONE("Payment realm=v, offer=\"\"");
    NONE("Payment realm=v, offer=");
    NONE("realm=v, offer=o");
    NONE(",,, \t ");
    NONE("\"Payment\" realm=v, offer=o");
}

static void test_case(void)
{
    FOUND("PAYMENT REALM=\"v\", OFFER=\"o\"", "v", "o");
    FOUND("payment Realm=v, oFFer=O", "v", "O");    /* values keep their case */
}

static void test_duplicates(void)
{
    /* within one challenge the last of a repeated parameter counts */
    FOUND("Payment realm=a, realm=b, offer=o", "b", "o");
    FOUND("Payment realm=a, offer=o1, offer=o2", "a", "o2");
}

static void test_oversized(void)
{
    char *v = malloc(MP_WIRE_TEXT_MAX + 64);
    char name[MP_NAME_MAX + 2];

    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    memset(name, 'n', sizeof name);
    name[MP_NAME_MAX] = '\0';                     /* MP_NAME_MAX: fits */
    snprintf(v, MP_WIRE_TEXT_MAX + 64, "Payment realm=\"%s\", offer=o", name);
    CU_ASSERT_EQUAL(parse(v), 1);
    CU_ASSERT_EQUAL(strlen(realm), MP_NAME_MAX);
    name[MP_NAME_MAX] = 'n';
    name[MP_NAME_MAX + 1] = '\0';                 /* one more: the realm does not count */
    snprintf(v, MP_WIRE_TEXT_MAX + 64, "Payment realm=\"%s\", offer=o", name);
    NONE(v);
    snprintf(v, MP_WIRE_TEXT_MAX + 64, "Payment realm=%s, offer=o", name);
    NONE(v);
    /* offer of MP_WIRE_TEXT_MAX fits, one more does not */
    strcpy(v, "Payment realm=v, offer=");
    memset(v + strlen(v), 'A', MP_WIRE_TEXT_MAX);
    v[23 + MP_WIRE_TEXT_MAX] = '\0';
    CU_ASSERT_EQUAL(parse(v), 1);
    CU_ASSERT_EQUAL(strlen(offer), MP_WIRE_TEXT_MAX);
    strcat(v, "A");
    NONE(v);
    free(v);
}

static void test_control_chars(void)
{
    NONE("Payment realm=\"a\x01" "b\", offer=o");
    NONE("Payment realm=\"a\tb\", offer=o");
    NONE("Payment realm=\"a\x7f\", offer=o");
    NONE("Payment realm=\"a\\\x1b\", offer=o");
    FOUND("Payment realm=\"caf\xc3\xa9\", offer=o", "caf\xc3\xa9", "o");
}

static void test_find(void)
{
    wp_hdr h[5] = {
        { "Content-Type", "text/html" },
        { "WWW-Authenticate", "Basic realm=\"x\"" },
        { "Proxy-Authenticate", "Payment realm=p, offer=p" },
        { NULL, NULL },
        { "www-authenticate", "Payment realm=v, offer=o" },
    };
    char *big;

    strcpy(realm, "-");
    strcpy(offer, "-");
    CU_ASSERT_EQUAL(wp_challenge_find(h, 5, realm, offer), 1);
    CU_ASSERT_STRING_EQUAL(realm, "v");
    CU_ASSERT_STRING_EQUAL(offer, "o");
    strcpy(realm, "-");
    CU_ASSERT_EQUAL(wp_challenge_find(h, 3, realm, offer), 0);
    CU_ASSERT_STRING_EQUAL(realm, "-");
    CU_ASSERT_EQUAL(wp_challenge_find(h, 0, realm, offer), 0);
    h[3].name = "WWW-Authenticate";               /* a NULL value is skipped */
    CU_ASSERT_EQUAL(wp_challenge_find(h, 5, realm, offer), 1);

    /* values longer than WP_CHALLENGE_VALUE_MAX are not looked at */
    big = malloc(WP_CHALLENGE_VALUE_MAX + 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memset(big, ' ', WP_CHALLENGE_VALUE_MAX + 1);
    memcpy(big, "Payment realm=w, offer=q", 24);
    big[WP_CHALLENGE_VALUE_MAX] = '\0';
    h[1].value = big;
    CU_ASSERT_EQUAL(wp_challenge_find(h, 5, realm, offer), 1);
    CU_ASSERT_STRING_EQUAL(realm, "w");
    big[WP_CHALLENGE_VALUE_MAX] = ' ';
    big[WP_CHALLENGE_VALUE_MAX + 1] = '\0';
    CU_ASSERT_EQUAL(wp_challenge_find(h, 5, realm, offer), 1);
    CU_ASSERT_STRING_EQUAL(realm, "v");
    free(big);
}

int register_challenge_tests(void)
{
    CU_pSuite s = CU_add_suite("wp_challenge", NULL, NULL);

    if (s == NULL || CU_add_test(s, "token and quoted forms", test_basic_forms) == NULL
        || CU_add_test(s, "quoted strings with escapes", test_quoted_escapes) == NULL
        || CU_add_test(s, "several challenges in one field", test_several_challenges) == NULL
        || CU_add_test(s, "missing realm or offer", test_missing) == NULL
        || CU_add_test(s, "scheme and names without case", test_case) == NULL
        || CU_add_test(s, "duplicate parameters", test_duplicates) == NULL
        || CU_add_test(s, "oversized values", test_oversized) == NULL
        || CU_add_test(s, "control characters in the realm", test_control_chars) == NULL
        || CU_add_test(s, "walking header fields", test_find) == NULL)
        return -1;
    return 0;
}
