/*
 * test_amount.c - parsing, formatting and checked arithmetic of amounts
 * (libmp/mp_amount.h). Every failing call is also checked to leave its
 * output exactly as it was (filled with a sentinel beforehand).
 */
#include <string.h>
#include "tests.h"

#define SENTINEL 0xa5

static void fill(mp_amount *a)
{
    memset(a, SENTINEL, sizeof *a);
}

static int untouched(const mp_amount *a)
{
    mp_amount ref;

    fill(&ref);
    return memcmp(a, &ref, sizeof ref) == 0;
}

static mp_amount amt(uint64_t units, const char *cur)
{
    mp_amount a;

    size_t n = strlen(cur);

    memset(&a, 0, sizeof a);
    a.units = units;
    memcpy(a.cur, cur, n < sizeof a.cur ? n + 1 : sizeof a.cur);
    return a;
}

static int amount_eq(const mp_amount *a, uint64_t units, const char *cur)
{
    return a->units == units && memcmp(a->cur, cur, 4) == 0;
}

/* ---- parse: accepted forms --------------------------------------------------- */

static void test_parse_forms(void)
{
    static const struct {
        const char *text;
        uint64_t units;
        const char *cur;
    } ok[] = {
        { "0.005 USD", 500, "USD" },
        { "USD 0.005", 500, "USD" },
        { "1 EUR", 100000, "EUR" },
        { "0.00001usd", 1, "USD" },
        { "USD0.005", 500, "USD" },
        { "0.005USD", 500, "USD" },
        { "10000000000 USD", MP_AMOUNT_MAX, "USD" },
        { "10000000000.00000 USD", MP_AMOUNT_MAX, "USD" },
        { "USD 10000000000", MP_AMOUNT_MAX, "USD" },
        { "9999999999.99999 USD", MP_AMOUNT_MAX - 1, "USD" },
        { "0 USD", 0, "USD" },
        { "0.00000 USD", 0, "USD" },
        { "12.34 EUR", 1234000, "EUR" },
        { "eur 12.34", 1234000, "EUR" },
        { "UsD 1.5", 150000, "USD" },
        { "1.5 gBp", 150000, "GBP" },
        { "0.1 USD", 10000, "USD" },
        { "0.12345 USD", 12345, "USD" },
        { "1.00000 USD", 100000, "USD" },
        { "123 JPY", 12300000, "JPY" },
    };
    size_t i;

    for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        mp_amount a;

        fill(&a);
        MP_ASSERT_OK(mp_amount_parse(ok[i].text, strlen(ok[i].text), &a));
        if (!amount_eq(&a, ok[i].units, ok[i].cur))
            fprintf(stderr, "\n  parse \"%s\": got %llu %.3s\n", ok[i].text,
                    (unsigned long long)a.units, a.cur);
        CU_ASSERT(amount_eq(&a, ok[i].units, ok[i].cur));
    }
}

/* The text is len bytes and needs no NUL: bytes beyond len are ignored. */
static void test_parse_len_bounded(void)
{
    mp_amount a;

    fill(&a);
    MP_ASSERT_OK(mp_amount_parse("1 USDXYZ", 5, &a));
    CU_ASSERT(amount_eq(&a, 100000, "USD"));
    MP_ASSERT_OK(mp_amount_parse("USD 2.5 and more", 7, &a));
    CU_ASSERT(amount_eq(&a, 250000, "USD"));
    MP_ASSERT_OK(mp_amount_parse("0.005 USD", 9, &a));
    CU_ASSERT(amount_eq(&a, 500, "USD"));
    /* one byte short is a different, invalid text */
    fill(&a);
    MP_ASSERT_ST(mp_amount_parse("0.005 USD", 8, &a), MP_ERR_CURRENCY);
    CU_ASSERT(untouched(&a));
}

/* ---- parse: rejections ------------------------------------------------------- */

static void test_parse_reject(void)
{
    static const struct {
        const char *text;
        size_t len;          /* 0: strlen(text) */
        mp_status want;
    } bad[] = {
        { "", 0, MP_ERR_AMOUNT },
        { "USD", 0, MP_ERR_AMOUNT },
        { "USD ", 0, MP_ERR_AMOUNT },
        { " USD", 0, MP_ERR_AMOUNT },
        { "1", 0, MP_ERR_AMOUNT },
        { "0.000001 USD", 0, MP_ERR_AMOUNT },        /* finer than one unit */
        { "USD 0.000001", 0, MP_ERR_AMOUNT },
        { "1.000000 USD", 0, MP_ERR_AMOUNT },
        { "-1 USD", 0, MP_ERR_AMOUNT },
        { "USD -1", 0, MP_ERR_AMOUNT },
        { "+1 USD", 0, MP_ERR_AMOUNT },
        { "1e3 USD", 0, MP_ERR_AMOUNT },
        { "1E3 USD", 0, MP_ERR_AMOUNT },
        { "0x10 USD", 0, MP_ERR_AMOUNT },
        { "1,000 USD", 0, MP_ERR_AMOUNT },
        { "1'000 USD", 0, MP_ERR_AMOUNT },
        { "1,5 USD", 0, MP_ERR_AMOUNT },
        { " 1 USD", 0, MP_ERR_AMOUNT },
        { "1 USD ", 0, MP_ERR_CURRENCY },            /* last three bytes "SD " */
        { " USD 1", 0, MP_ERR_CURRENCY },           /* last three bytes "D 1" */
        { "USD 1 ", 0, MP_ERR_AMOUNT },
        { "1  USD", 0, MP_ERR_AMOUNT },
        { "USD  1", 0, MP_ERR_AMOUNT },
        { "1\tUSD", 0, MP_ERR_AMOUNT },
        { "1. USD", 0, MP_ERR_AMOUNT },
        { "1.USD", 0, MP_ERR_AMOUNT },
        { ".5 USD", 0, MP_ERR_AMOUNT },
        { "USD .5", 0, MP_ERR_AMOUNT },
        { "1.2.3 USD", 0, MP_ERR_AMOUNT },
        { "1..2 USD", 0, MP_ERR_AMOUNT },
        { "1.5 US", 0, MP_ERR_CURRENCY },
        { "1.5 US1", 0, MP_ERR_CURRENCY },
        { "1.5 U$D", 0, MP_ERR_CURRENCY },
        { "1.5 \xc3\x9cSD", 0, MP_ERR_CURRENCY },
        { "1234", 0, MP_ERR_CURRENCY },
        { "1 USD EUR", 0, MP_ERR_AMOUNT },
        { "USD 1 EUR", 0, MP_ERR_AMOUNT },
        { "USDEUR", 0, MP_ERR_AMOUNT },
        /* NUL inside the text */
        { "1\0 USD", 6, MP_ERR_AMOUNT },
        { "\0 USD", 5, MP_ERR_AMOUNT },
        { "1 U\0D", 5, MP_ERR_CURRENCY },
        { "USD\0 1", 6, MP_ERR_AMOUNT },
        { "USD 1\0", 6, MP_ERR_AMOUNT },
        /* above MP_AMOUNT_MAX */
        { "10000000000.00001 USD", 0, MP_ERR_OVERFLOW },
        { "10000000001 USD", 0, MP_ERR_OVERFLOW },
        { "USD 10000000000.00001", 0, MP_ERR_OVERFLOW },
        { "99999999999 USD", 0, MP_ERR_OVERFLOW },
        { "18446744073709551616 USD", 0, MP_ERR_OVERFLOW },
        { "99999999999999999999999999999999999999 USD", 0, MP_ERR_OVERFLOW },
        { "99999999999999999999999999999999999999.5 USD", 0, MP_ERR_OVERFLOW },
        { "USD 184467440737095516160000", 0, MP_ERR_OVERFLOW },
    };
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mp_amount a;
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].text);
        mp_status got;

        fill(&a);
        got = mp_amount_parse(bad[i].text, len, &a);
        if (got != bad[i].want)
            fprintf(stderr, "\n  parse case %zu \"%s\": got %s, want %s\n", i, bad[i].text,
                    mp_strerror(got), mp_strerror(bad[i].want));
        CU_ASSERT_EQUAL(got, bad[i].want);
        CU_ASSERT(untouched(&a));
    }
}

static void test_parse_too_large(void)
{
    char buf[MP_AMOUNT_PARSEMAX + 2];
    mp_amount a;

    /* MP_AMOUNT_PARSEMAX bytes are looked at (and here overflow)... */
    memset(buf, '9', sizeof buf);
    memcpy(buf + MP_AMOUNT_PARSEMAX - 4, " USD", 4);
    fill(&a);
    MP_ASSERT_ST(mp_amount_parse(buf, MP_AMOUNT_PARSEMAX, &a), MP_ERR_OVERFLOW);
    CU_ASSERT(untouched(&a));
    /* ...one more is refused before parsing */
    memcpy(buf + MP_AMOUNT_PARSEMAX - 3, " USD", 4);
    MP_ASSERT_ST(mp_amount_parse(buf, MP_AMOUNT_PARSEMAX + 1, &a), MP_ERR_TOO_LARGE);
    CU_ASSERT(untouched(&a));
    /* even when a valid amount is a prefix */
    memset(buf, ' ', sizeof buf);
    memcpy(buf, "1 USD", 5);
    MP_ASSERT_ST(mp_amount_parse(buf, MP_AMOUNT_PARSEMAX + 1, &a), MP_ERR_TOO_LARGE);
    MP_ASSERT_ST(mp_amount_parse(buf, (size_t)-1, &a), MP_ERR_TOO_LARGE);
    CU_ASSERT(untouched(&a));
}

static void test_parse_args(void)
{
    mp_amount a;

    fill(&a);
    MP_ASSERT_ST(mp_amount_parse(NULL, 5, &a), MP_ERR_ARG);
    CU_ASSERT(untouched(&a));
    MP_ASSERT_ST(mp_amount_parse("1 USD", 5, NULL), MP_ERR_ARG);
}

/* ---- format ------------------------------------------------------------------ */

static void test_format(void)
{
    static const struct {
        uint64_t units;
        const char *cur;
        const char *text;
    } v[] = {
        { 500, "USD", "0.005 USD" },
        { 100000, "USD", "1.00 USD" },
        { 1, "USD", "0.00001 USD" },
        { 1234000, "EUR", "12.34 EUR" },
        { MP_AMOUNT_MAX, "USD", "10000000000.00 USD" },
        { MP_AMOUNT_MAX - 1, "USD", "9999999999.99999 USD" },
        { 0, "USD", "0.00 USD" },
        { 10, "USD", "0.0001 USD" },
        { 1000, "USD", "0.01 USD" },
        { 10000, "GBP", "0.10 GBP" },
        { 12345, "USD", "0.12345 USD" },
        { 99999, "USD", "0.99999 USD" },
        { 150000, "USD", "1.50 USD" },
        { 150010, "USD", "1.5001 USD" },
        { 1000000000, "JPY", "10000.00 JPY" },
    };
    char buf[MP_AMOUNT_STRMAX];
    size_t i;

    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        mp_amount a = amt(v[i].units, v[i].cur);

        memset(buf, 'Z', sizeof buf);
        MP_ASSERT_OK(mp_amount_format(&a, buf, sizeof buf));
        if (strcmp(buf, v[i].text) != 0)
            fprintf(stderr, "\n  format %llu: got \"%s\", want \"%s\"\n",
                    (unsigned long long)v[i].units, buf, v[i].text);
        CU_ASSERT_STRING_EQUAL(buf, v[i].text);
    }
    /* the longest output fits MP_AMOUNT_STRMAX with room to spare */
    CU_ASSERT(strlen("9999999999.99999 USD") < MP_AMOUNT_STRMAX);
}

static void test_format_buffer(void)
{
    static const uint64_t units[] = { 0, 500, 1, MP_AMOUNT_MAX, MP_AMOUNT_MAX - 1 };
    char buf[MP_AMOUNT_STRMAX + 8], ref[MP_AMOUNT_STRMAX], want[MP_AMOUNT_STRMAX];
    size_t i, n;

    for (i = 0; i < sizeof units / sizeof units[0]; i++) {
        mp_amount a = amt(units[i], "USD");

        MP_ASSERT_OK(mp_amount_format(&a, want, sizeof want));
        n = strlen(want);
        /* exactly enough: text and NUL */
        memset(buf, 'Z', sizeof buf);
        MP_ASSERT_OK(mp_amount_format(&a, buf, n + 1));
        CU_ASSERT_STRING_EQUAL(buf, want);
        CU_ASSERT_EQUAL(buf[n + 1], 'Z');
        /* one short, and much too short: buffer untouched */
        memset(buf, 'Z', sizeof buf);
        memset(ref, 'Z', sizeof ref);
        MP_ASSERT_ST(mp_amount_format(&a, buf, n), MP_ERR_BUFFER);
        CU_ASSERT(memcmp(buf, ref, sizeof ref) == 0);
        MP_ASSERT_ST(mp_amount_format(&a, buf, 1), MP_ERR_BUFFER);
        MP_ASSERT_ST(mp_amount_format(&a, buf, 0), MP_ERR_BUFFER);
        CU_ASSERT(memcmp(buf, ref, sizeof ref) == 0);
    }
}

static void test_format_invalid(void)
{
    char buf[MP_AMOUNT_STRMAX], ref[MP_AMOUNT_STRMAX];
    mp_amount a;

    memset(buf, 'Z', sizeof buf);
    memset(ref, 'Z', sizeof ref);
    a = amt(MP_AMOUNT_MAX + 1, "USD");
    MP_ASSERT_ST(mp_amount_format(&a, buf, sizeof buf), MP_ERR_ARG);
    a = amt(UINT64_MAX, "USD");
    MP_ASSERT_ST(mp_amount_format(&a, buf, sizeof buf), MP_ERR_ARG);
    a = amt(1, "usd");
    MP_ASSERT_ST(mp_amount_format(&a, buf, sizeof buf), MP_ERR_ARG);
    a = amt(1, "US");
    MP_ASSERT_ST(mp_amount_format(&a, buf, sizeof buf), MP_ERR_ARG);
    CU_ASSERT(memcmp(buf, ref, sizeof ref) == 0);
    a = amt(1, "USD");
    MP_ASSERT_ST(mp_amount_format(NULL, buf, sizeof buf), MP_ERR_ARG);
    MP_ASSERT_ST(mp_amount_format(&a, NULL, sizeof buf), MP_ERR_ARG);
    CU_ASSERT(memcmp(buf, ref, sizeof ref) == 0);
}

/* ---- round trip ----------------------------------------------------------------- */

static uint64_t rand_units(uint64_t *seed)
{
    uint64_t r = t_rand(seed);

    /* mix the full range with small prices and round values */
    switch (r % 5) {
    case 0:  return t_rand(seed) % (MP_AMOUNT_MAX + 1);
    case 1:  return t_rand(seed) % 100000;
    case 2:  return (t_rand(seed) % 10000001) * 1000;
    case 3:  return MP_AMOUNT_MAX - t_rand(seed) % 1000;
    default: return t_rand(seed) % 1000;
    }
}

static void rand_cur(uint64_t *seed, char cur[4])
{
    int i;

    for (i = 0; i < 3; i++)
        cur[i] = (char)('A' + t_rand(seed) % 26);
    cur[3] = '\0';
}

static void test_round_trip(void)
{
    uint64_t seed = 0x616d6f756e74ULL;
    char text[MP_AMOUNT_STRMAX], text2[MP_AMOUNT_STRMAX], alt[MP_AMOUNT_PARSEMAX + 1];
    int i, fails = 0;

    for (i = 0; i < 20000; i++) {
        mp_amount x, y, z;
        char cur[4], *sp;
        size_t n;

        rand_cur(&seed, cur);
        MP_ASSERT_OK(mp_amount_set(&x, rand_units(&seed), cur));
        MP_ASSERT_OK(mp_amount_format(&x, text, sizeof text));
        fill(&y);
        MP_ASSERT_OK(mp_amount_parse(text, strlen(text), &y));
        if (!amount_eq(&y, x.units, x.cur) && fails++ < 5)
            fprintf(stderr, "\n  round trip %llu %s -> \"%s\" -> %llu\n",
                    (unsigned long long)x.units, cur, text, (unsigned long long)y.units);
        CU_ASSERT(amount_eq(&y, x.units, x.cur));
        /* format(parse(t)) == t: the canonical text is a fixed point */
        MP_ASSERT_OK(mp_amount_format(&y, text2, sizeof text2));
        CU_ASSERT_STRING_EQUAL(text, text2);
        /* the other accepted forms of the same text parse to the same amount:
         * "CUR number", "CURnumber", "numberCUR", lower-case code */
        sp = strchr(text, ' ');
        CU_ASSERT_FATAL(sp != NULL);
        n = (size_t)(sp - text);
        snprintf(alt, sizeof alt, "%s %.*s", cur, (int)n, text);
        MP_ASSERT_OK(mp_amount_parse(alt, strlen(alt), &z));
        CU_ASSERT(amount_eq(&z, x.units, x.cur));
        snprintf(alt, sizeof alt, "%s%.*s", cur, (int)n, text);
        MP_ASSERT_OK(mp_amount_parse(alt, strlen(alt), &z));
        CU_ASSERT(amount_eq(&z, x.units, x.cur));
        snprintf(alt, sizeof alt, "%.*s%c%c%c", (int)n, text, cur[0] + 32, cur[1] + 32, cur[2] + 32);
        MP_ASSERT_OK(mp_amount_parse(alt, strlen(alt), &z));
        CU_ASSERT(amount_eq(&z, x.units, x.cur));
    }
}

/* ---- set / currency --------------------------------------------------------------- */

static void test_set(void)
{
    mp_amount a;

    CU_ASSERT_EQUAL(mp_currency_valid("USD"), 1);
    CU_ASSERT_EQUAL(mp_currency_valid("ZZZ"), 1);
    CU_ASSERT_EQUAL(mp_currency_valid("usd"), 0);
    CU_ASSERT_EQUAL(mp_currency_valid("UsD"), 0);
    CU_ASSERT_EQUAL(mp_currency_valid("US"), 0);
    CU_ASSERT_EQUAL(mp_currency_valid(""), 0);
    CU_ASSERT_EQUAL(mp_currency_valid("USDX"), 0);
    CU_ASSERT_EQUAL(mp_currency_valid("U1D"), 0);
    CU_ASSERT_EQUAL(mp_currency_valid("US "), 0);
    CU_ASSERT_EQUAL(mp_currency_valid("@[`"), 0);
    CU_ASSERT_EQUAL(mp_currency_valid(NULL), 0);

    fill(&a);
    MP_ASSERT_OK(mp_amount_set(&a, 500, "USD"));
    CU_ASSERT(amount_eq(&a, 500, "USD"));
    MP_ASSERT_OK(mp_amount_set(&a, MP_AMOUNT_MAX, "EUR"));
    CU_ASSERT(amount_eq(&a, MP_AMOUNT_MAX, "EUR"));
    MP_ASSERT_OK(mp_amount_set(&a, 0, "EUR"));
    CU_ASSERT(amount_eq(&a, 0, "EUR"));

    fill(&a);
    MP_ASSERT_ST(mp_amount_set(&a, MP_AMOUNT_MAX + 1, "USD"), MP_ERR_OVERFLOW);
    MP_ASSERT_ST(mp_amount_set(&a, UINT64_MAX, "USD"), MP_ERR_OVERFLOW);
    MP_ASSERT_ST(mp_amount_set(&a, 1, "usd"), MP_ERR_CURRENCY);
    MP_ASSERT_ST(mp_amount_set(&a, 1, "USDX"), MP_ERR_CURRENCY);
    MP_ASSERT_ST(mp_amount_set(&a, 1, NULL), MP_ERR_CURRENCY);
    CU_ASSERT(untouched(&a));
    MP_ASSERT_ST(mp_amount_set(NULL, 1, "USD"), MP_ERR_ARG);
}

/* ---- arithmetic ---------------------------------------------------------------------- */

static void test_add(void)
{
    mp_amount a = amt(500, "USD"), b = amt(250, "USD"), c = amt(1, "EUR"), out, max, one;

    MP_ASSERT_OK(mp_amount_add(&a, &b, &out));
    CU_ASSERT(amount_eq(&out, 750, "USD"));
    max = amt(MP_AMOUNT_MAX - 1, "USD");
    one = amt(1, "USD");
    MP_ASSERT_OK(mp_amount_add(&max, &one, &out));
    CU_ASSERT(amount_eq(&out, MP_AMOUNT_MAX, "USD"));
    MP_ASSERT_OK(mp_amount_add(&out, &(mp_amount){ 0, "USD" }, &out));
    CU_ASSERT(amount_eq(&out, MP_AMOUNT_MAX, "USD"));

    /* failures leave out alone */
    max = amt(MP_AMOUNT_MAX, "USD");
    fill(&out);
    MP_ASSERT_ST(mp_amount_add(&max, &one, &out), MP_ERR_OVERFLOW);
    MP_ASSERT_ST(mp_amount_add(&one, &max, &out), MP_ERR_OVERFLOW);
    MP_ASSERT_ST(mp_amount_add(&max, &max, &out), MP_ERR_OVERFLOW);
    MP_ASSERT_ST(mp_amount_add(&a, &c, &out), MP_ERR_CURRENCY);
    MP_ASSERT_ST(mp_amount_add(&c, &a, &out), MP_ERR_CURRENCY);
    b = amt(1, "usd");
    MP_ASSERT_ST(mp_amount_add(&a, &b, &out), MP_ERR_CURRENCY);
    b = amt(MP_AMOUNT_MAX + 1, "USD");   /* invalid operand, even + 0 */
    a = amt(0, "USD");
    MP_ASSERT_ST(mp_amount_add(&a, &b, &out), MP_ERR_OVERFLOW);
    MP_ASSERT_ST(mp_amount_add(NULL, &a, &out), MP_ERR_ARG);
    MP_ASSERT_ST(mp_amount_add(&a, NULL, &out), MP_ERR_ARG);
    CU_ASSERT(untouched(&out));
    MP_ASSERT_ST(mp_amount_add(&a, &a, NULL), MP_ERR_ARG);

    /* aliasing: out == a, out == b, all three the same */
    a = amt(500, "USD");
    b = amt(250, "USD");
    MP_ASSERT_OK(mp_amount_add(&a, &b, &a));
    CU_ASSERT(amount_eq(&a, 750, "USD"));
    MP_ASSERT_OK(mp_amount_add(&a, &b, &b));
    CU_ASSERT(amount_eq(&b, 1000, "USD"));
    MP_ASSERT_OK(mp_amount_add(&a, &a, &a));
    CU_ASSERT(amount_eq(&a, 1500, "USD"));
    /* aliased and failing: still untouched */
    max = amt(MP_AMOUNT_MAX, "USD");
    MP_ASSERT_ST(mp_amount_add(&max, &max, &max), MP_ERR_OVERFLOW);
    CU_ASSERT(amount_eq(&max, MP_AMOUNT_MAX, "USD"));
}

static void test_sub(void)
{
    mp_amount a = amt(500, "USD"), b = amt(200, "USD"), c = amt(1, "EUR"), out, max;

    MP_ASSERT_OK(mp_amount_sub(&a, &b, &out));
    CU_ASSERT(amount_eq(&out, 300, "USD"));
    MP_ASSERT_OK(mp_amount_sub(&a, &a, &out));
    CU_ASSERT(amount_eq(&out, 0, "USD"));
    max = amt(MP_AMOUNT_MAX, "USD");
    MP_ASSERT_OK(mp_amount_sub(&max, &max, &out));
    CU_ASSERT(amount_eq(&out, 0, "USD"));
    MP_ASSERT_OK(mp_amount_sub(&max, &(mp_amount){ 0, "USD" }, &out));
    CU_ASSERT(amount_eq(&out, MP_AMOUNT_MAX, "USD"));

    fill(&out);
    MP_ASSERT_ST(mp_amount_sub(&b, &a, &out), MP_ERR_OVERFLOW);     /* negative */
    MP_ASSERT_ST(mp_amount_sub(&(mp_amount){ 0, "USD" }, &(mp_amount){ 1, "USD" }, &out),
                 MP_ERR_OVERFLOW);
    MP_ASSERT_ST(mp_amount_sub(&a, &max, &out), MP_ERR_OVERFLOW);
    MP_ASSERT_ST(mp_amount_sub(&a, &c, &out), MP_ERR_CURRENCY);
    MP_ASSERT_ST(mp_amount_sub(&(mp_amount){ MP_AMOUNT_MAX + 1, "USD" }, &b, &out),
                 MP_ERR_OVERFLOW);
    MP_ASSERT_ST(mp_amount_sub(NULL, &b, &out), MP_ERR_ARG);
    CU_ASSERT(untouched(&out));

    MP_ASSERT_OK(mp_amount_sub(&a, &b, &a));
    CU_ASSERT(amount_eq(&a, 300, "USD"));
    a = amt(500, "USD");
    MP_ASSERT_OK(mp_amount_sub(&a, &b, &b));
    CU_ASSERT(amount_eq(&b, 300, "USD"));
    MP_ASSERT_OK(mp_amount_sub(&a, &a, &a));
    CU_ASSERT(amount_eq(&a, 0, "USD"));
    b = amt(1, "USD");
    MP_ASSERT_ST(mp_amount_sub(&a, &b, &a), MP_ERR_OVERFLOW);
    CU_ASSERT(amount_eq(&a, 0, "USD"));
}

static void test_mul(void)
{
    mp_amount a = amt(500, "USD"), out;
    const uint64_t half = MP_AMOUNT_MAX / 2;

    MP_ASSERT_OK(mp_amount_mul(&a, 3, &out));
    CU_ASSERT(amount_eq(&out, 1500, "USD"));
    MP_ASSERT_OK(mp_amount_mul(&a, 0, &out));
    CU_ASSERT(amount_eq(&out, 0, "USD"));
    MP_ASSERT_OK(mp_amount_mul(&a, 1, &out));
    CU_ASSERT(amount_eq(&out, 500, "USD"));
    MP_ASSERT_OK(mp_amount_mul(&(mp_amount){ MP_AMOUNT_MAX, "USD" }, 1, &out));
    CU_ASSERT(amount_eq(&out, MP_AMOUNT_MAX, "USD"));
    MP_ASSERT_OK(mp_amount_mul(&(mp_amount){ 1, "USD" }, MP_AMOUNT_MAX, &out));
    CU_ASSERT(amount_eq(&out, MP_AMOUNT_MAX, "USD"));
    MP_ASSERT_OK(mp_amount_mul(&(mp_amount){ half, "USD" }, 2, &out));
    CU_ASSERT(amount_eq(&out, half * 2, "USD"));
    MP_ASSERT_OK(mp_amount_mul(&(mp_amount){ 0, "USD" }, UINT64_MAX, &out));
    CU_ASSERT(amount_eq(&out, 0, "USD"));
    MP_ASSERT_OK(mp_amount_mul(&(mp_amount){ MP_AMOUNT_MAX, "USD" }, 0, &out));
    CU_ASSERT(amount_eq(&out, 0, "USD"));

    fill(&out);
    MP_ASSERT_ST(mp_amount_mul(&(mp_amount){ MP_AMOUNT_MAX, "USD" }, 2, &out), MP_ERR_OVERFLOW);
    MP_ASSERT_ST(mp_amount_mul(&(mp_amount){ 1, "USD" }, MP_AMOUNT_MAX + 1, &out),
                 MP_ERR_OVERFLOW);
    MP_ASSERT_ST(mp_amount_mul(&(mp_amount){ half + 1, "USD" }, 2, &out), MP_ERR_OVERFLOW);
    MP_ASSERT_ST(mp_amount_mul(&(mp_amount){ 2, "USD" }, UINT64_MAX, &out), MP_ERR_OVERFLOW);
    /* would wrap 2^64 exactly: 2^32 * 2^32 */
    MP_ASSERT_ST(mp_amount_mul(&(mp_amount){ 1ULL << 32, "USD" }, 1ULL << 32, &out),
                 MP_ERR_OVERFLOW);
    MP_ASSERT_ST(mp_amount_mul(&(mp_amount){ MP_AMOUNT_MAX + 1, "USD" }, 0, &out),
                 MP_ERR_OVERFLOW);
    MP_ASSERT_ST(mp_amount_mul(&(mp_amount){ 1, "usd" }, 1, &out), MP_ERR_CURRENCY);
    MP_ASSERT_ST(mp_amount_mul(NULL, 1, &out), MP_ERR_ARG);
    CU_ASSERT(untouched(&out));
    MP_ASSERT_ST(mp_amount_mul(&a, 1, NULL), MP_ERR_ARG);

    MP_ASSERT_OK(mp_amount_mul(&a, 4, &a));
    CU_ASSERT(amount_eq(&a, 2000, "USD"));
    MP_ASSERT_ST(mp_amount_mul(&a, MP_AMOUNT_MAX, &a), MP_ERR_OVERFLOW);
    CU_ASSERT(amount_eq(&a, 2000, "USD"));
}

static void test_cmp(void)
{
    mp_amount a = amt(500, "USD"), b = amt(501, "USD"), max = amt(MP_AMOUNT_MAX, "USD");
    int c;

    c = 7;
    MP_ASSERT_OK(mp_amount_cmp(&a, &b, &c));
    CU_ASSERT_EQUAL(c, -1);
    MP_ASSERT_OK(mp_amount_cmp(&b, &a, &c));
    CU_ASSERT_EQUAL(c, 1);
    MP_ASSERT_OK(mp_amount_cmp(&a, &a, &c));
    CU_ASSERT_EQUAL(c, 0);
    MP_ASSERT_OK(mp_amount_cmp(&max, &(mp_amount){ MP_AMOUNT_MAX - 1, "USD" }, &c));
    CU_ASSERT_EQUAL(c, 1);
    MP_ASSERT_OK(mp_amount_cmp(&(mp_amount){ 0, "USD" }, &max, &c));
    CU_ASSERT_EQUAL(c, -1);

    c = 7;
    MP_ASSERT_ST(mp_amount_cmp(&a, &(mp_amount){ 500, "EUR" }, &c), MP_ERR_CURRENCY);
    MP_ASSERT_ST(mp_amount_cmp(&a, &(mp_amount){ 500, "usd" }, &c), MP_ERR_CURRENCY);
    MP_ASSERT_ST(mp_amount_cmp(&a, &(mp_amount){ MP_AMOUNT_MAX + 1, "USD" }, &c),
                 MP_ERR_OVERFLOW);
    MP_ASSERT_ST(mp_amount_cmp(NULL, &a, &c), MP_ERR_ARG);
    CU_ASSERT_EQUAL(c, 7);
    MP_ASSERT_ST(mp_amount_cmp(&a, &b, NULL), MP_ERR_ARG);
}

/* Randomised cross-check of add/sub/mul/cmp against plain 64-bit math
 * (operands <= MP_AMOUNT_MAX < 2^50: the reference sum cannot wrap, and
 * the product is only formed after the division bound says it fits). */
static void test_arith_random(void)
{
    uint64_t seed = 0xa1217ULL;
    int i;

    for (i = 0; i < 20000; i++) {
        mp_amount a = amt(rand_units(&seed), "USD"), b = amt(rand_units(&seed), "USD"), out;
        uint64_t k = t_rand(&seed) % 4 == 0 ? t_rand(&seed) : t_rand(&seed) % 100000;
        int c = 9;

        fill(&out);
        if (a.units + b.units <= MP_AMOUNT_MAX) {
            MP_ASSERT_OK(mp_amount_add(&a, &b, &out));
            CU_ASSERT(amount_eq(&out, a.units + b.units, "USD"));
        } else {
            MP_ASSERT_ST(mp_amount_add(&a, &b, &out), MP_ERR_OVERFLOW);
            CU_ASSERT(untouched(&out));
        }
        fill(&out);
        if (a.units >= b.units) {
            MP_ASSERT_OK(mp_amount_sub(&a, &b, &out));
            CU_ASSERT(amount_eq(&out, a.units - b.units, "USD"));
        } else {
            MP_ASSERT_ST(mp_amount_sub(&a, &b, &out), MP_ERR_OVERFLOW);
            CU_ASSERT(untouched(&out));
        }
        fill(&out);
        if (k == 0 || a.units <= MP_AMOUNT_MAX / k) {
            MP_ASSERT_OK(mp_amount_mul(&a, k, &out));
            CU_ASSERT(amount_eq(&out, a.units * k, "USD"));
        } else {
            MP_ASSERT_ST(mp_amount_mul(&a, k, &out), MP_ERR_OVERFLOW);
            CU_ASSERT(untouched(&out));
        }
        MP_ASSERT_OK(mp_amount_cmp(&a, &b, &c));
        CU_ASSERT_EQUAL(c, a.units < b.units ? -1 : a.units > b.units ? 1 : 0);
    }
}

int register_amount_tests(void)
{
    static const struct {
        const char *name;
        CU_TestFunc fn;
    } tests[] = {
        { "parse accepted forms", test_parse_forms },
        { "parse reads exactly len bytes", test_parse_len_bounded },
        { "parse rejections", test_parse_reject },
        { "parse length limit", test_parse_too_large },
        { "parse arguments", test_parse_args },
        { "format canonical", test_format },
        { "format buffer too small", test_format_buffer },
        { "format invalid amount", test_format_invalid },
        { "parse(format(x)) == x", test_round_trip },
        { "set and currency_valid", test_set },
        { "add", test_add },
        { "sub", test_sub },
        { "mul", test_mul },
        { "cmp", test_cmp },
        { "arithmetic randomised", test_arith_random },
    };
    CU_pSuite s = CU_add_suite("amount", NULL, NULL);
    size_t i;

    if (s == NULL)
        return -1;
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (CU_add_test(s, tests[i].name, tests[i].fn) == NULL)
            return -1;
    return 0;
}
