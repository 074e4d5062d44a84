/*
 * Rejection vectors (tests/vectors/reject.txt): records that break one
 * constraint of docs/PROTOCOL.md section 5 each. The spec decides which
 * checks are decode checks (400 malformed: the record alone tells) and
 * which are verification checks (402: they need a key, the clock, a store
 * or the configuration); these pin the decode side, for every
 * implementation reading the file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tests.h"

static mp_status decode_as(const char *type, const uint8_t *rec, size_t len)
{
    /* Large records: static, the suites run in one thread. */
    static mp_pw_cert cert;
    static mp_pw_commit commit;
    static mp_pw_payment pw;
    static mp_scrip scrip;
    static mp_mc_payment mc;
    static mp_receipt rc;
    static mp_offer offer;

    if (strcmp(type, "cert") == 0)
        return mp_pw_cert_decode(rec, len, &cert);
    if (strcmp(type, "commitment") == 0)
        return mp_pw_commit_decode(rec, len, &commit);
    if (strcmp(type, "pw_payment") == 0)
        return mp_pw_payment_decode(rec, len, &pw);
    if (strcmp(type, "scrip") == 0)
        return mp_scrip_decode(rec, len, &scrip);
    if (strcmp(type, "mc_payment") == 0)
        return mp_mc_payment_decode(rec, len, &mc);
    if (strcmp(type, "receipt") == 0)
        return mp_receipt_decode(rec, len, &rc);
    if (strcmp(type, "offer") == 0)
        return mp_offer_decode(rec, len, &offer);
    return MP_ERR_ARG;
}

static void test_reject_file(void)
{
    static char line[2 * MP_WIRE_MAX + 256];
    static char hex[2 * MP_WIRE_MAX + 2];
    static uint8_t rec[MP_WIRE_MAX];
    char name[64], type[24], reason[24];
    unsigned n = 0;
    size_t len;
    mp_status st;
    FILE *f = fopen(MP_VECTORS_DIR "/reject.txt", "r");

    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    while (fgets(line, sizeof line, f) != NULL) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, "%63s %23s %23s %12289s", name, type, reason, hex) != 4
            || strlen(hex) % 2 != 0 || strlen(hex) / 2 > sizeof rec) {
            fprintf(stderr, "\n  reject.txt: bad line: %s", line);
            CU_FAIL("bad vector line");
            continue;
        }
        len = strlen(hex) / 2;
        CU_ASSERT_FATAL(t_hex_decode(hex, rec, sizeof rec) == (long)len);
        st = decode_as(type, rec, len);
        if (strcmp(mp_reason(st), reason) != 0 || st == MP_OK)
            fprintf(stderr, "\n  reject.txt: %s: got %s, want %s", name, mp_strerror(st), reason);
        CU_ASSERT(st != MP_OK && strcmp(mp_reason(st), reason) == 0);
        n++;
    }
    fclose(f);
    CU_ASSERT(n >= 20);     /* a truncated file must not pass */
}

int register_reject_tests(void)
{
    CU_pSuite s = CU_add_suite("reject vectors", NULL, NULL);

    if (s == NULL || CU_add_test(s, "reject.txt: each record refused for its reason",
                                 test_reject_file) == NULL)
        return -1;
    return 0;
}
