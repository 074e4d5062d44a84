/*
 * test_keyfile.c - the vendor secrets file (parse, format, apply) and the
 * PEM form of public keys (trusted broker keys in the configuration).
 */
#include <string.h>
#include "tests.h"

#define NOW     1800000000ULL
#define RETIRE  1900000000ULL
#define SERIES(s) ((uint64_t)(s) << 48)

/* Hex secrets: minimum, typical and maximum lengths, one in upper case. */
static char S1[65], S2[33], C1[129], R3[65], R5[65], R7[65];
static char text[MP_KEYFILE_MAX + 2];

static void repeat(char *out, const char *unit, size_t times)
{
    size_t n = strlen(unit), j;

    for (j = 0; j < times; j++)
        memcpy(out + j * n, unit, n);
    out[times * n] = '\0';
}

static int setup(void)
{
    repeat(S1, "11", 32);
    repeat(S2, "22", 16);
    repeat(C1, "3c", 64);
    repeat(R3, "44", 32);
    repeat(R5, "55", 32);
    repeat(R7, "AbCd", 16);
    return 0;
}

static void bytes_of(const char *hex, uint8_t *out, size_t *len)
{
    long n = t_hex_decode(hex, out, 64);
    CU_ASSERT_FATAL(n > 0);
    *len = (size_t)n;
}

/* Appends to text; returns the new length. */
static size_t add(size_t len, const char *s)
{
    size_t n = strlen(s);

    CU_ASSERT_FATAL(len + n < sizeof text);
    memcpy(text + len, s, n);
    text[len + n] = '\0';
    return len + n;
}

static size_t valid_file(void)
{
    size_t n = 0;

    n = add(n, "# vendor secrets\n\nscrip 1 ");
    n = add(n, S1);
    n = add(n, " retire=1900000000\r\n  scrip\t2\t");
    n = add(n, S2);
    n = add(n, "  \ncustomer 1 ");
    n = add(n, C1);
    n = add(n, "\n\t# indented comment\n   \nreceipt 3 ");
    n = add(n, R3);
    n = add(n, "\nreceipt 7 ");
    n = add(n, R7);
    n = add(n, "\r\nreceipt 5 ");
    n = add(n, R5);                         /* no final newline */
    return n;
}

static int entries_equal(const mp_keyfile_entry *a, const mp_keyfile_entry *b)
{
    return a->kind == b->kind && a->series == b->series && a->len == b->len
        && memcmp(a->secret, b->secret, a->len) == 0 && a->retire_at == b->retire_at;
}

static void check_entry(const mp_keyfile_entry *e, uint8_t kind, uint16_t series,
                        const char *hex, uint64_t retire)
{
    uint8_t want[64];
    size_t len = 0;

    bytes_of(hex, want, &len);
    CU_ASSERT_EQUAL(e->kind, kind);
    CU_ASSERT_EQUAL(e->series, series);
    CU_ASSERT_EQUAL(e->len, len);
    CU_ASSERT(memcmp(e->secret, want, len) == 0);
    CU_ASSERT_EQUAL(e->retire_at, retire);
}

/* ---- parse -------------------------------------------------------------------- */

static void test_parse_valid(void)
{
    static mp_keyfile kf;
    size_t len = valid_file(), line = 99;

    MP_ASSERT_OK(mp_keyfile_parse(text, len, &kf, &line));
    CU_ASSERT_EQUAL(line, 0);
    CU_ASSERT_EQUAL_FATAL(kf.n, 6);
    check_entry(&kf.e[0], MP_KEY_SCRIP, 1, S1, RETIRE);
    check_entry(&kf.e[1], MP_KEY_SCRIP, 2, S2, 0);
    check_entry(&kf.e[2], MP_KEY_CUSTOMER, 1, C1, 0);
    check_entry(&kf.e[3], MP_KEY_RECEIPT, 3, R3, 0);
    check_entry(&kf.e[4], MP_KEY_RECEIPT, 7, R7, 0);
    check_entry(&kf.e[5], MP_KEY_RECEIPT, 5, R5, 0);
    mp_keyfile_wipe(&kf);
    CU_ASSERT_EQUAL(kf.n, 0);
    CU_ASSERT_EQUAL(kf.e[0].secret[0], 0);

    /* the extremes: series 0 and 65535, the latest retirement, the line
     * pointer may be NULL, a final newline */
    len = 0;
    len = add(len, "scrip 0 ");
    len = add(len, S1);
    len = add(len, " retire=18446744073709551615\nscrip 65535 ");
    len = add(len, S1);
    len = add(len, "\ncustomer 00007 ");
    len = add(len, S2);
    len = add(len, "\n");
    MP_ASSERT_OK(mp_keyfile_parse(text, len, &kf, NULL));
    CU_ASSERT_EQUAL_FATAL(kf.n, 3);
    CU_ASSERT_EQUAL(kf.e[0].retire_at, UINT64_MAX);
    CU_ASSERT_EQUAL(kf.e[1].series, 65535);
    CU_ASSERT_EQUAL(kf.e[2].series, 7);
    mp_keyfile_wipe(&kf);
}

/* Parses text[0..len) expecting want at line want_line, output untouched. */
static void expect_parse(size_t len, mp_status want, size_t want_line)
{
    static mp_keyfile kf, sentinel;
    size_t line = 12345;

    memset(&kf, 0x5a, sizeof kf);
    memcpy(&sentinel, &kf, sizeof kf);
    MP_ASSERT_ST(mp_keyfile_parse(text, len, &kf, &line), want);
    if (line != want_line)
        fprintf(stderr, "\n  line %zu, want %zu: \"%.60s\"\n", line, want_line, text);
    CU_ASSERT_EQUAL(line, want_line);
    CU_ASSERT(memcmp(&kf, &sentinel, sizeof kf) == 0);
}

static void test_parse_refusals(void)
{
    static const struct {
        const char *line;      /* %S is replaced by a valid secret */
        int         nul;       /* a NUL byte ends the line */
        mp_status   want;
    } cases[] = {
        { "scripp 1 %S", 0, MP_ERR_MALFORMED },
        { "Scrip 2 %S", 0, MP_ERR_MALFORMED },
        { "receipts 2 %S", 0, MP_ERR_MALFORMED },
        { "scrip +2 %S", 0, MP_ERR_MALFORMED },
        { "scrip -2 %S", 0, MP_ERR_MALFORMED },
        { "scrip 65536 %S", 0, MP_ERR_MALFORMED },
        { "scrip 2a %S", 0, MP_ERR_MALFORMED },
        { "scrip 0x2 %S", 0, MP_ERR_MALFORMED },
        { "scrip 99999999999999999999999 %S", 0, MP_ERR_MALFORMED },
        { "scrip 2", 0, MP_ERR_MALFORMED },
        { "scrip", 0, MP_ERR_MALFORMED },
        { "scrip %S", 0, MP_ERR_MALFORMED },
        { "scrip 2 111111111111111111111111111111111111111111111111111111111111111", 0,
          MP_ERR_MALFORMED },                                     /* odd length */
        { "scrip 2 111111111111111111111111111111", 0, MP_ERR_MALFORMED },   /* 30 digits */
        { "scrip 2 1111111111111111111111111111111111111111111111111111111111111111"
          "111111111111111111111111111111111111111111111111111111111111111111", 0,
          MP_ERR_MALFORMED },                                     /* 130 digits */
        { "scrip 2 11111111111111111111111111111111111111111111111111111111111111g1", 0,
          MP_ERR_MALFORMED },
        { "scrip 2 0x111111111111111111111111111111111111111111111111111111111111", 0,
          MP_ERR_MALFORMED },
        { "customer 2 %S retire=5", 0, MP_ERR_MALFORMED },
        { "receipt 2 %S delegated", 0, MP_ERR_MALFORMED },
        { "receipt 2 %S retire=0", 0, MP_ERR_MALFORMED },
        { "receipt 2 %S retire=5 retire=6", 0, MP_ERR_MALFORMED },
        { "scrip 2 %S retire=0", 0, MP_ERR_MALFORMED },
        { "scrip 2 %S retire=", 0, MP_ERR_MALFORMED },
        { "scrip 2 %S retire=x", 0, MP_ERR_MALFORMED },
        { "scrip 2 %S retire=-5", 0, MP_ERR_MALFORMED },
        { "scrip 2 %S retire=+5", 0, MP_ERR_MALFORMED },
        { "scrip 2 %S retire=18446744073709551616", 0, MP_ERR_MALFORMED },
        { "scrip 2 %S retired=5", 0, MP_ERR_MALFORMED },
        { "scrip 2 %S retire=5 x", 0, MP_ERR_MALFORMED },
        { "scrip 2 %S # a comment", 0, MP_ERR_MALFORMED },
        { "scrip 1 %S", 0, MP_ERR_MALFORMED },                   /* duplicate */
        { "customer 1 %S", 0, MP_ERR_MALFORMED },                /* duplicate */
        { "scrip 2 %S", 1, MP_ERR_CHARSET },
        { "# caf\xc3\xa9", 0, MP_ERR_CHARSET },
        { "scrip 2\r%S", 0, MP_ERR_CHARSET },
        { "scrip 2 %S\r\r", 0, MP_ERR_CHARSET },
        { "scrip 2 %S\v", 0, MP_ERR_CHARSET },
        { "# \x7f", 0, MP_ERR_CHARSET },
        { "\x80", 0, MP_ERR_CHARSET },
    };
    size_t c, len;
    const char *p;

    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        /* two good lines, the bad one, a good one after it */
        len = 0;
        len = add(len, "scrip 1 ");
        len = add(len, S1);
        len = add(len, "\r\ncustomer 1 ");
        len = add(len, C1);
        len = add(len, "\n");
        for (p = cases[c].line; *p != '\0'; p++) {
            if (p[0] == '%' && p[1] == 'S') {
                len = add(len, S2);
                p++;
            } else {
                text[len++] = *p;
            }
        }
        if (cases[c].nul)
            text[len++] = '\0';
        text[len] = '\0';
        len = add(len, "\nreceipt 1 ");
        len = add(len, R3);
        len = add(len, "\n");
        expect_parse(len, cases[c].want, 3);
    }

    /* at most MP_MAX_SERIES of a kind: the 17th scrip line is line 18 */
    len = add(0, "customer 1 ");
    len = add(len, C1);
    len = add(len, "\n");
    for (c = 0; c <= MP_MAX_SERIES; c++) {
        char num[32];
        snprintf(num, sizeof num, "scrip %zu ", c);
        len = add(len, num);
        len = add(len, S1);
        len = add(len, "\n");
    }
    expect_parse(len, MP_ERR_MALFORMED, MP_MAX_SERIES + 2);

    /* a whole file's faults are at line 0 */
    len = add(0, "customer 1 ");
    len = add(len, C1);
    len = add(len, "\nreceipt 1 ");
    len = add(len, R3);
    expect_parse(len, MP_ERR_MALFORMED, 0);    /* no scrip */
    len = add(0, "scrip 1 ");
    len = add(len, S1);
    len = add(len, "\n");
    expect_parse(len, MP_ERR_MALFORMED, 0);    /* no customer */
    len = add(0, "# nothing\n\n");
    expect_parse(len, MP_ERR_MALFORMED, 0);
    expect_parse(0, MP_ERR_MALFORMED, 0);

    MP_ASSERT_ST(mp_keyfile_parse(NULL, 5, NULL, NULL), MP_ERR_ARG);
}

static void test_parse_size(void)
{
    static mp_keyfile kf;
    size_t len, line = 7;

    /* exactly MP_KEYFILE_MAX bytes: padded with comment lines */
    len = add(0, "scrip 1 ");
    len = add(len, S1);
    len = add(len, "\ncustomer 1 ");
    len = add(len, C1);
    len = add(len, "\n");
    for (; len < MP_KEYFILE_MAX; len++)
        text[len] = len % 80 == 0 || len == MP_KEYFILE_MAX - 1 ? '\n' : '#';
    CU_ASSERT_EQUAL(len, MP_KEYFILE_MAX);
    MP_ASSERT_OK(mp_keyfile_parse(text, len, &kf, &line));
    CU_ASSERT_EQUAL(kf.n, 2);
    mp_keyfile_wipe(&kf);
    text[len++] = '\n';
    expect_parse(len, MP_ERR_TOO_LARGE, 0);
    expect_parse((size_t)-1, MP_ERR_TOO_LARGE, 0);
}

/* ---- format ------------------------------------------------------------------- */

static void test_format(void)
{
    static mp_keyfile kf, back, bad;
    static char buf[MP_KEYFILE_MAX + 1], buf2[MP_KEYFILE_MAX + 1], line[256];
    size_t len = 0, len2 = 0, j;
    static const char header[] = "# mod_micropay vendor secrets (0600, readable by root only)\n";

    MP_ASSERT_OK(mp_keyfile_parse(text, valid_file(), &kf, NULL));
    MP_ASSERT_OK(mp_keyfile_format(&kf, buf, sizeof buf, &len));
    CU_ASSERT_EQUAL(strlen(buf), len);
    CU_ASSERT(strncmp(buf, header, strlen(header)) == 0);
    snprintf(line, sizeof line, "\nscrip 1 %s retire=1900000000\n", S1);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, line));
    snprintf(line, sizeof line, "\nscrip 2 %s\n", S2);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, line));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\nreceipt 7 abcdabcd"));   /* lower case */
    CU_ASSERT_EQUAL(buf[len - 1], '\n');

    MP_ASSERT_OK(mp_keyfile_parse(buf, len, &back, NULL));
    CU_ASSERT_EQUAL_FATAL(back.n, kf.n);
    for (j = 0; j < kf.n; j++)
        CU_ASSERT(entries_equal(&back.e[j], &kf.e[j]));
    MP_ASSERT_OK(mp_keyfile_format(&back, buf2, sizeof buf2, &len2));
    CU_ASSERT(len2 == len && memcmp(buf2, buf, len) == 0);

    /* a short buffer receives nothing, not even part of a secret */
    memset(buf, 'Z', sizeof buf);
    MP_ASSERT_ST(mp_keyfile_format(&kf, buf, len, &len2), MP_ERR_BUFFER);
    for (j = 0; j < sizeof buf && buf[j] == 'Z'; j++)
        ;
    CU_ASSERT_EQUAL(j, sizeof buf);
    MP_ASSERT_OK(mp_keyfile_format(&kf, buf, len + 1, &len2));

    /* never a file the parser would refuse */
    bad = kf;
    bad.e[1].kind = 9;
    MP_ASSERT_ST(mp_keyfile_format(&bad, buf, sizeof buf, &len2), MP_ERR_ARG);
    bad = kf;
    bad.e[2].retire_at = 5;                   /* on a customer secret */
    MP_ASSERT_ST(mp_keyfile_format(&bad, buf, sizeof buf, &len2), MP_ERR_ARG);
    bad = kf;
    bad.e[4].series = 3;                      /* duplicate receipt 3 */
    MP_ASSERT_ST(mp_keyfile_format(&bad, buf, sizeof buf, &len2), MP_ERR_ARG);
    bad = kf;
    bad.e[1].len = 15;
    MP_ASSERT_ST(mp_keyfile_format(&bad, buf, sizeof buf, &len2), MP_ERR_ARG);
    bad = kf;
    bad.e[2].kind = MP_KEY_RECEIPT;           /* no customer left */
    MP_ASSERT_ST(mp_keyfile_format(&bad, buf, sizeof buf, &len2), MP_ERR_ARG);
    bad = kf;
    bad.n = 3 * MP_MAX_SERIES + 1;
    MP_ASSERT_ST(mp_keyfile_format(&bad, buf, sizeof buf, &len2), MP_ERR_ARG);
    MP_ASSERT_ST(mp_keyfile_format(NULL, buf, sizeof buf, &len2), MP_ERR_ARG);

    /* the largest set: 16 of each kind with the longest lines */
    memset(&bad, 0, sizeof bad);
    for (j = 0; j < 3 * MP_MAX_SERIES; j++) {
        bad.e[j].kind = (uint8_t)(1 + j / MP_MAX_SERIES);
        bad.e[j].series = (uint16_t)(65535 - j);
        bad.e[j].len = 64;
        memset(bad.e[j].secret, (int)j, 64);
        bad.e[j].retire_at = bad.e[j].kind == MP_KEY_SCRIP ? UINT64_MAX - j : 0;
    }
    bad.n = 3 * MP_MAX_SERIES;
    MP_ASSERT_OK(mp_keyfile_format(&bad, buf, sizeof buf, &len));
    MP_ASSERT_OK(mp_keyfile_parse(buf, len, &back, NULL));
    CU_ASSERT_EQUAL_FATAL(back.n, bad.n);
    for (j = 0; j < bad.n; j++)
        CU_ASSERT(entries_equal(&back.e[j], &bad.e[j]));

    mp_keyfile_wipe(&kf);
    mp_keyfile_wipe(&back);
    mp_keyfile_wipe(&bad);
    mp_wipe(buf, sizeof buf);
    mp_wipe(buf2, sizeof buf2);
}

/* ---- apply -------------------------------------------------------------------- */

static void test_apply(void)
{
    static mp_keyfile kf;
    mp_mc_issuer *iss = NULL, *ref = NULL;
    mp_mac *rk = NULL, *want = NULL;
    mp_scrip s, r;
    mp_amount value;
    uint8_t key[64], a[MP_HASH_LEN], b[MP_HASH_LEN], msg[20];
    size_t klen = 0;
    mp_iov iov = { "receipt body", 12 };
    int dummy;

    MP_ASSERT_OK(mp_keyfile_parse(text, valid_file(), &kf, NULL));
    MP_ASSERT_OK(mp_mc_issuer_new("news.example", &iss));
    MP_ASSERT_OK(mp_keyfile_apply(&kf, iss, &rk));
    CU_ASSERT_PTR_NOT_NULL_FATAL(rk);
    MP_ASSERT_OK(mp_amount_parse("0.01 USD", 8, &value));

    /* scrip the issuer mints verifies, and carries the stamp of exactly the
     * file's secret */
    MP_ASSERT_OK(mp_mc_mint(iss, &value, SERIES(1) | 5, SERIES(1) | 7, 2000000000ULL, NULL, &s));
    MP_ASSERT_OK(mp_mc_check_scrip(iss, &s, NOW));
    bytes_of(S1, key, &klen);
    MP_ASSERT_OK(mp_mc_issuer_new("news.example", &ref));
    MP_ASSERT_OK(mp_mc_issuer_add_scrip_secret(ref, 1, key, klen, 0));
    MP_ASSERT_OK(mp_mc_mint(ref, &value, SERIES(1) | 5, SERIES(1) | 7, 2000000000ULL, NULL, &r));
    CU_ASSERT(memcmp(s.stamp, r.stamp, MP_HASH_LEN) == 0);
    mp_mc_issuer_free(ref);
    ref = NULL;
    MP_ASSERT_OK(mp_mc_mint(iss, &value, SERIES(2) | 5, SERIES(1) | 7, 2000000000ULL, NULL, &s));
    MP_ASSERT_OK(mp_mc_check_scrip(iss, &s, NOW));
    MP_ASSERT_OK(mp_mc_check_scrip(iss, &s, RETIRE));
    MP_ASSERT_ST(mp_mc_mint(iss, &value, SERIES(3) | 5, SERIES(1) | 7, 2000000000ULL, NULL, &s),
                 MP_ERR_UNKNOWN_SERIES);
    /* retire= retires the series */
    MP_ASSERT_OK(mp_mc_mint(iss, &value, SERIES(1) | 6, SERIES(1) | 7, 2000000000ULL, NULL, &s));
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &s, RETIRE), MP_ERR_EXPIRED);

    /* the customer master: customer_secret = HMAC(C1, "MP1 customer" || u64 id) */
    bytes_of(C1, key, &klen);
    memcpy(msg, "MP1 customer", 12);
    memcpy(msg + 12, "\x00\x01\x00\x00\x00\x00\x00\x07", 8);
    MP_ASSERT_OK(mp_hmac(key, klen, msg, sizeof msg, a));
    MP_ASSERT_OK(mp_mc_customer_secret(iss, SERIES(1) | 7, b));
    CU_ASSERT(memcmp(a, b, MP_HASH_LEN) == 0);

    /* the receipt key is the highest series (7), not the last line (5) */
    MP_ASSERT_OK(mp_mac_compute(rk, &iov, 1, a));
    bytes_of(R7, key, &klen);
    MP_ASSERT_OK(mp_mac_new(key, klen, &want));
    MP_ASSERT_OK(mp_mac_compute(want, &iov, 1, b));
    CU_ASSERT(memcmp(a, b, MP_HASH_LEN) == 0);
    mp_mac_free(want);
    bytes_of(R5, key, &klen);
    MP_ASSERT_OK(mp_mac_new(key, klen, &want));
    MP_ASSERT_OK(mp_mac_compute(want, &iov, 1, b));
    CU_ASSERT(memcmp(a, b, MP_HASH_LEN) != 0);
    mp_mac_free(want);
    mp_mac_free(rk);
    rk = NULL;

    /* Applying again clashes with the series now held: refused, and the
     * issuer keeps no part of the second file. */
    MP_ASSERT_ST(mp_keyfile_apply(&kf, iss, &rk), MP_ERR_ARG);
    CU_ASSERT_PTR_NULL(rk);
    mp_mc_issuer_free(iss);
    MP_ASSERT_OK(mp_mc_issuer_new("news.example", &iss));
    MP_ASSERT_OK(mp_mc_issuer_add_scrip_secret(iss, 2, key, klen, 0));
    rk = (mp_mac *)&dummy;
    MP_ASSERT_ST(mp_keyfile_apply(&kf, iss, &rk), MP_ERR_ARG);
    CU_ASSERT(rk == (mp_mac *)&dummy);
    MP_ASSERT_ST(mp_mc_customer_secret(iss, SERIES(1) | 7, b), MP_ERR_UNKNOWN_SERIES);
    MP_ASSERT_ST(mp_mc_mint(iss, &value, SERIES(1) | 5, SERIES(1) | 7, 2000000000ULL, NULL, &s),
                 MP_ERR_UNKNOWN_SERIES);
    mp_mc_issuer_free(iss);

    /* without receipt lines there is no receipt key */
    kf.n = 3;
    MP_ASSERT_OK(mp_mc_issuer_new("news.example", &iss));
    MP_ASSERT_OK(mp_keyfile_apply(&kf, iss, &rk));
    CU_ASSERT_PTR_NULL(rk);
    MP_ASSERT_ST(mp_keyfile_apply(NULL, iss, &rk), MP_ERR_ARG);
    MP_ASSERT_ST(mp_keyfile_apply(&kf, NULL, &rk), MP_ERR_ARG);
    MP_ASSERT_ST(mp_keyfile_apply(&kf, iss, NULL), MP_ERR_ARG);
    kf.n = 2;                                   /* no customer */
    MP_ASSERT_ST(mp_keyfile_apply(&kf, iss, &rk), MP_ERR_ARG);
    mp_mc_issuer_free(iss);
    mp_keyfile_wipe(&kf);
    mp_wipe(key, sizeof key);
}

/* ---- PEM public keys ------------------------------------------------------------ */

static const char rsa1024_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCyI/D3nih332OVeir/MU/CAXYZ\n"
    "UlaiXoHv/IUEsIteDejpxOvcQDvpPTFuGcpTTGX1vpAliBDZvgkLraZHG9U4lVvF\n"
    "YFRrX6jlMz2BYZLbTPi0KrxzCavGY1RT45GF4xVKl+Yj9Lu/Uzl46RoovX70/gjF\n"
    "g3uaxty1vbTajC85vwIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

static const char p256_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEbpk/BjHOtDT9NAhuo6aNrgNI/ok3\n"
    "M/Z+Ipz7QT7AN3SR7rQISOvXpqW1UNZzbmdIGkEUEHCvlgRmSbaHTiKpmA==\n"
    "-----END PUBLIC KEY-----\n";

static const char rsa_pss_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIDALBgkqhkiG9w0BAQoDggEPADCCAQoCggEBAMkeeP7DrUUSk2yHBnS7bJC6\n"
    "XCJ5HELrcm9m/HfJIbgEM8HbQUyZ4jNZqfk9q+4a20V99RebtAitIuCR3iUIdAiW\n"
    "nvwj/GjFud8giKl3/SqOc9HK4E1wiWFezW6IKVvDROnkjQyJgTdrUYYX9SZWa7mJ\n"
    "3CL4Ofi+uhWtd36iWrYUWSHx0IsVEOiu64q9XGS2ve27jpJkqe7zD3L6Ymwl6mLB\n"
    "zxrfiBuLFrHpWxrR1pK5hIIaCOd9DKfVtlzo+n+a5uWmE0VhWWmqUVllH/RcA0ha\n"
    "Y7797iBQGe7XP77v34zWORhGLwBZ54e7Br6YxEs/Dc1nT+ZwB7ptiAYjBPedyoUC\n"
    "AwEAAQ==\n"
    "-----END PUBLIC KEY-----\n";

static void pem_round_trip(mp_signer *s, uint8_t alg)
{
    static char pem[4096];
    mp_pubkey pk, back;
    size_t len = 0, len2 = 0;

    MP_ASSERT_OK(mp_signer_pubkey(s, &pk));
    MP_ASSERT_OK(mp_pubkey_to_pem(&pk, pem, sizeof pem, &len));
    CU_ASSERT_EQUAL(strlen(pem), len);
    CU_ASSERT(strncmp(pem, "-----BEGIN PUBLIC KEY-----\n", 27) == 0);
    memset(&back, 0xee, sizeof back);
    MP_ASSERT_OK(mp_pubkey_from_pem(pem, len, &back));
    CU_ASSERT_EQUAL(back.alg, alg);
    CU_ASSERT_EQUAL(back.len, pk.len);
    CU_ASSERT(memcmp(back.key, pk.key, pk.len) == 0);
    MP_ASSERT_OK(mp_pubkey_check(&back));
    /* the exact fit, and one byte short (the NUL needs room too) */
    MP_ASSERT_OK(mp_pubkey_to_pem(&pk, pem, len + 1, &len2));
    MP_ASSERT_ST(mp_pubkey_to_pem(&pk, pem, len, &len2), MP_ERR_BUFFER);
}

/* The receipt secret before the newest stays accepted after a rotation
 * (PROTOCOL.md 9), until its retire= time when it has one. */
static void test_receipt_prev(void)
{
    mp_keyfile kf;
    mp_mac *prev = NULL, *want = NULL;
    uint64_t retire = 99;
    uint8_t key[64], a[MP_HASH_LEN], b[MP_HASH_LEN];
    size_t klen = 0, n;
    mp_iov iov = { "receipt body", 12 };

    /* receipt 3, 7 and 5: the one before the newest (7) is 5, not the last line */
    MP_ASSERT_OK(mp_keyfile_parse(text, valid_file(), &kf, NULL));
    MP_ASSERT_OK(mp_keyfile_receipt_prev(&kf, &prev, &retire));
    CU_ASSERT_PTR_NOT_NULL_FATAL(prev);
    CU_ASSERT_EQUAL(retire, 0);
    MP_ASSERT_OK(mp_mac_compute(prev, &iov, 1, a));
    bytes_of(R5, key, &klen);
    MP_ASSERT_OK(mp_mac_new(key, klen, &want));
    MP_ASSERT_OK(mp_mac_compute(want, &iov, 1, b));
    CU_ASSERT(memcmp(a, b, MP_HASH_LEN) == 0);
    mp_mac_free(want);
    mp_mac_free(prev);
    prev = NULL;
    mp_keyfile_wipe(&kf);

    /* retire= on a receipt line: parsed, kept by format, handed out */
    n = add(valid_file(), " retire=1900000000\n");
    MP_ASSERT_OK(mp_keyfile_parse(text, n, &kf, NULL));
    MP_ASSERT_OK(mp_keyfile_receipt_prev(&kf, &prev, &retire));
    CU_ASSERT_PTR_NOT_NULL(prev);
    CU_ASSERT_EQUAL(retire, 1900000000ULL);
    mp_mac_free(prev);
    prev = NULL;
    {
        char out[4096];
        size_t len = 0;

        MP_ASSERT_OK(mp_keyfile_format(&kf, out, sizeof out, &len));
        CU_ASSERT_PTR_NOT_NULL(strstr(out, " retire=1900000000\n"));
    }

    /* one receipt line: no previous secret */
    kf.n = 4;                                   /* scrip 1, 2, customer 1, receipt 3 */
    retire = 99;
    MP_ASSERT_OK(mp_keyfile_receipt_prev(&kf, &prev, &retire));
    CU_ASSERT_PTR_NULL(prev);
    CU_ASSERT_EQUAL(retire, 0);
    MP_ASSERT_ST(mp_keyfile_receipt_prev(NULL, &prev, &retire), MP_ERR_ARG);
    MP_ASSERT_ST(mp_keyfile_receipt_prev(&kf, NULL, &retire), MP_ERR_ARG);
    mp_keyfile_wipe(&kf);
}

static void test_pem(void)
{
    static char pem[16385];
    mp_pubkey pk, sentinel;
    size_t len = 0;

    pem_round_trip(t_broker_key(), MP_KEY_ED25519);
    pem_round_trip(t_rsa_broker_key(), MP_KEY_RSA);

    memset(&pk, 0x42, sizeof pk);
    sentinel = pk;
    /* a private key is no public key */
    MP_ASSERT_OK(mp_signer_to_pem(t_broker_key(), pem, sizeof pem, &len));
    MP_ASSERT_ST(mp_pubkey_from_pem(pem, len, &pk), MP_ERR_KEY);
    mp_wipe(pem, sizeof pem);
    MP_ASSERT_ST(mp_pubkey_from_pem(rsa1024_pem, strlen(rsa1024_pem), &pk), MP_ERR_KEY);
    MP_ASSERT_ST(mp_pubkey_from_pem(p256_pem, strlen(p256_pem), &pk), MP_ERR_KEY);
    MP_ASSERT_ST(mp_pubkey_from_pem(rsa_pss_pem, strlen(rsa_pss_pem), &pk), MP_ERR_KEY);
    MP_ASSERT_ST(mp_pubkey_from_pem("garbage", 7, &pk), MP_ERR_KEY);
    /* a damaged base64 body */
    MP_ASSERT_ST(mp_pubkey_from_pem(p256_pem, 60, &pk), MP_ERR_KEY);
    CU_ASSERT(memcmp(&pk, &sentinel, sizeof pk) == 0);

    MP_ASSERT_ST(mp_pubkey_from_pem("x", 0, &pk), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pubkey_from_pem(pem, 16385, &pk), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pubkey_from_pem(NULL, 5, &pk), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pubkey_from_pem(p256_pem, strlen(p256_pem), NULL), MP_ERR_ARG);

    /* to_pem rebuilds the key as a verifier would, and refuses what it would */
    memset(&pk, 0, sizeof pk);
    pk.alg = 9;
    pk.len = 32;
    MP_ASSERT_ST(mp_pubkey_to_pem(&pk, pem, sizeof pem, &len), MP_ERR_KEY);
    pk.alg = MP_KEY_RSA;
    MP_ASSERT_ST(mp_pubkey_to_pem(&pk, pem, sizeof pem, &len), MP_ERR_KEY);
    MP_ASSERT_ST(mp_pubkey_to_pem(NULL, pem, sizeof pem, &len), MP_ERR_ARG);
}

int register_keyfile_tests(void)
{
    static const struct {
        const char *name;
        CU_TestFunc fn;
    } tests[] = {
        { "parse: a valid file", test_parse_valid },
        { "parse: refusals with their line", test_parse_refusals },
        { "parse: size limit", test_parse_size },
        { "format: round trip and refusals", test_format },
        { "apply: issuer and receipt key", test_apply },
        { "receipt secret before the newest", test_receipt_prev },
        { "PEM public keys", test_pem },
    };
    CU_pSuite s = CU_add_suite("keyfile", setup, NULL);
    size_t i;

    if (s == NULL)
        return -1;
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (CU_add_test(s, tests[i].name, tests[i].fn) == NULL)
            return -1;
    return 0;
}
