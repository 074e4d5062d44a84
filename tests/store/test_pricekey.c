/*
 * test_pricekey.c - the price table's keys (mod_micropay_pricekey.c): the
 * canonical form of a decoded path (what the module looks up) and of a path
 * as written in a URL (what mpadmin price set stores) must be the same
 * bytes for every spelling of one path, and anything that cannot be a key
 * must be refused, never passed on as some other key.
 */
#include <stdio.h>
#include <string.h>
#include <CUnit/CUnit.h>
#include <CUnit/Basic.h>
#include "mod_micropay_pricekey.h"

static char out[MPK_MAX + 1];

/* mpk_normalise(in) is want (NULL: refused with st). */
static void norm(const char *in, const char *want, mp_status st)
{
    const char *why = NULL;
    size_t len = 0;
    mp_status got = mpk_normalise(in, out, sizeof out, &len, &why);

    if (want != NULL) {
        if (got != MP_OK || strcmp(out, want) != 0)
            fprintf(stderr, "\n  normalise(%s): %s \"%s\" (%s), want \"%s\"\n", in, mp_strerror(got),
                    got == MP_OK ? out : "", why ? why : "", want);
        CU_ASSERT_EQUAL(got, MP_OK);
        CU_ASSERT_STRING_EQUAL(out, want);
        CU_ASSERT_EQUAL(len, strlen(want));
        CU_ASSERT(mpk_is_canonical(want));
    } else {
        if (got != st)
            fprintf(stderr, "\n  normalise(%s): %s \"%s\", want %s\n", in, mp_strerror(got),
                    got == MP_OK ? out : "", mp_strerror(st));
        CU_ASSERT_EQUAL(got, st);
        CU_ASSERT_PTR_NOT_NULL(why);
    }
}

/* mpk_from_path of the decoded bytes p[0..n) is want. */
static void decoded(const char *p, size_t n, const char *want)
{
    size_t len = 0;
    mp_status got = mpk_from_path(p, n, out, sizeof out, &len, NULL);

    CU_ASSERT_EQUAL(got, MP_OK);
    if (got != MP_OK || strcmp(out, want) != 0)
        fprintf(stderr, "\n  from_path(%.*s): %s \"%s\", want \"%s\"\n", (int)n, p, mp_strerror(got),
                got == MP_OK ? out : "", want);
    CU_ASSERT_STRING_EQUAL(out, want);
}

/* Every spelling of /api/echo.cgi in the finding is one key. */
static void t_spellings(void)
{
    static const char *const sp[] = {
        "/api/echo.cgi", "/api/./echo.cgi", "/%61pi/echo.cgi", "/api//echo.cgi", "//api///echo.cgi",
        "/api/x/../echo.cgi", "/api/echo%2ecgi", "/api/echo%2Ecgi", "/%2e/api/echo.cgi",
        "/api/%2e%2e/api/echo.cgi", "/api/echo.cgi/.", "/api/echo.cgi/x/.."
    };
    size_t i;

    for (i = 0; i < sizeof sp / sizeof sp[0]; i++) {
        /* the last two end in a directory form: they name /api/echo.cgi/ */
        norm(sp[i], i >= 10 ? "/api/echo.cgi/" : "/api/echo.cgi", MP_OK);
    }
    norm("/api/", "/api/", MP_OK);
    norm("/api", "/api", MP_OK);
    norm("/", "/", MP_OK);
    norm("//", "/", MP_OK);
    norm("/.", "/", MP_OK);
    norm("/api/..", "/", MP_OK);
    norm("/api/.", "/api/", MP_OK);
}

/* One encoding: pchar literal, everything else %XX upper case. */
static void t_encoding(void)
{
    norm("/a%20b", "/a%20b", MP_OK);
    norm("/a b", "/a%20b", MP_OK);                   /* raw bytes are accepted and encoded */
    norm("/caf\xc3\xa9/", "/caf%C3%A9/", MP_OK);
    norm("/caf%c3%a9/", "/caf%C3%A9/", MP_OK);
    norm("/%7e%7Euser/", "/~~user/", MP_OK);           /* unreserved: literal */
    norm("/echo.cgi;x=1", "/echo.cgi;x=1", MP_OK);    /* ';' belongs to its segment */
    norm("/echo.cgi%3Bx=1", "/echo.cgi;x=1", MP_OK);
    norm("/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,=", MP_OK);
    norm("/%3F%23%25%22%3C%3E%5B%5D%5C%5E%60%7B%7D%7C", "/%3F%23%25%22%3C%3E%5B%5D%5C%5E%60%7B%7D%7C", MP_OK);
    norm("/a%252Fb", "/a%252Fb", MP_OK);             /* a literal "%2F" in a name */
    norm("/%2e%2e%2e/", "/.../", MP_OK);             /* "..." is a name */
    norm("/a/%01%7f%ff", "/a/%01%7F%FF", MP_OK);
}

static void t_refused(void)
{
    char big[MPK_MAX + 8];

    norm("", NULL, MP_ERR_ARG);
    norm("api/", NULL, MP_ERR_ARG);
    norm("%2Fapi/", NULL, MP_ERR_ARG);
    norm("/a%2Fb", NULL, MP_ERR_ARG);                 /* an encoded slash */
    norm("/a%2fb", NULL, MP_ERR_ARG);
    norm("/a%00b", NULL, MP_ERR_ARG);
    norm("/a%zz", NULL, MP_ERR_ARG);
    norm("/a%4", NULL, MP_ERR_ARG);
    norm("/a%", NULL, MP_ERR_ARG);
    norm("/a?b", NULL, MP_ERR_ARG);
    norm("/a#b", NULL, MP_ERR_ARG);
    norm("/..", NULL, MP_ERR_ARG);
    norm("/a/../../b", NULL, MP_ERR_ARG);
    norm("/%2e%2e/b", NULL, MP_ERR_ARG);
    /* too long: 4096 bytes are fine, not one more; decoded bytes that
     * encode to three each count as three */
    memset(big, 'a', sizeof big);
    big[0] = '/';
    big[MPK_MAX] = '\0';
    norm(big, big, MP_OK);
    big[MPK_MAX] = 'a';
    big[MPK_MAX + 1] = '\0';
    norm(big, NULL, MP_ERR_TOO_LARGE);
    memset(big, ' ', sizeof big);
    big[0] = '/';
    big[1366] = '\0';                                /* 1 + 1365 * 3 = 4096 */
    CU_ASSERT_EQUAL(mpk_normalise(big, out, sizeof out, NULL, NULL), MP_OK);
    CU_ASSERT_EQUAL(strlen(out), (size_t)MPK_MAX);
    big[1366] = ' ';
    big[1367] = '\0';
    CU_ASSERT_EQUAL(mpk_normalise(big, out, sizeof out, NULL, NULL), MP_ERR_TOO_LARGE);
    /* a small buffer is refused, not overrun */
    CU_ASSERT_EQUAL(mpk_normalise("/abcdef", out, 4, NULL, NULL), MP_ERR_TOO_LARGE);
    CU_ASSERT_EQUAL(mpk_normalise("/ab", out, 4, NULL, NULL), MP_OK);
    CU_ASSERT_STRING_EQUAL(out, "/ab");
}

/* What the module hands over: Apache's decoded r->uri, which may hold any
 * byte but NUL, and with AllowEncodedSlashes NoDecode a literal "%2F". */
static void t_decoded(void)
{
    decoded("/api/echo.cgi/ ", 15, "/api/echo.cgi/%20");
    decoded("/api/echo.cgi", 13, "/api/echo.cgi");
    decoded("/api%2Fecho.cgi", 15, "/api%252Fecho.cgi");     /* NoDecode: part of its segment */
    decoded("/a?b#c", 6, "/a%3Fb%23c");
    decoded("/a//b/./c/../d", 14, "/a/b/d");
    decoded("/a/\xc3\xa9", 5, "/a/%C3%A9");
    decoded("/a/echo.cgi/xyz", 11, "/a/echo.cgi");           /* a prefix: the path info left off */
    CU_ASSERT_EQUAL(mpk_from_path("/a\0b", 4, out, sizeof out, NULL, NULL), MP_ERR_ARG);
    CU_ASSERT_EQUAL(mpk_from_path("a", 1, out, sizeof out, NULL, NULL), MP_ERR_ARG);
    CU_ASSERT_EQUAL(mpk_from_path("", 0, out, sizeof out, NULL, NULL), MP_ERR_ARG);
    CU_ASSERT_EQUAL(mpk_from_path("/../a", 5, out, sizeof out, NULL, NULL), MP_ERR_ARG);
    /* every decoded path's key normalises to itself: mpadmin can write it */
    {
        static const char *const p[] = { "/a b/", "/%", "/%25", "/x;y", "/\xff", "/a%2Fb" };
        size_t i;

        for (i = 0; i < sizeof p / sizeof p[0]; i++) {
            CU_ASSERT_EQUAL(mpk_from_path(p[i], strlen(p[i]), out, sizeof out, NULL, NULL), MP_OK);
            CU_ASSERT(mpk_is_canonical(out));
        }
    }
}

static void t_canonical(void)
{
    CU_ASSERT(mpk_is_canonical("/api/"));
    CU_ASSERT(mpk_is_canonical("/caf%C3%A9"));
    CU_ASSERT(!mpk_is_canonical("/caf%c3%a9"));      /* lower-case hex */
    CU_ASSERT(!mpk_is_canonical("/%61pi/"));
    CU_ASSERT(!mpk_is_canonical("/api//x"));
    CU_ASSERT(!mpk_is_canonical("/api/./x"));
    CU_ASSERT(!mpk_is_canonical("/a%2Fb"));
    CU_ASSERT(!mpk_is_canonical("api"));
    CU_ASSERT(!mpk_is_canonical(NULL));
}

int main(void)
{
    static const struct { const char *name; void (*fn)(void); } tests[] = {
        { "every spelling of one path is one key", t_spellings },
        { "one canonical encoding", t_encoding },
        { "what cannot be a key is refused", t_refused },
        { "keys of Apache's decoded paths", t_decoded },
        { "canonical keys", t_canonical },
    };
    CU_pSuite suite;
    unsigned failed;
    size_t i;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    suite = CU_add_suite("pricekey", NULL, NULL);
    if (suite == NULL)
        return 2;
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (CU_add_test(suite, tests[i].name, tests[i].fn) == NULL)
            return 2;
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failed = CU_get_number_of_tests_failed();
    printf("\n%u passed, %u failed\n", CU_get_number_of_tests_run() - failed, failed);
    i = CU_get_number_of_failures();
    CU_cleanup_registry();
    return i == 0 ? 0 : 1;
}
