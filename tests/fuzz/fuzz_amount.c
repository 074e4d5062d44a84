/*
 * libFuzzer target for the human amount parser (configuration files and
 * the admin tool feed it). Property: whatever parses formats to text that
 * parses back to the same amount, and the formatter never overflows.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mp_amount a, b, c;
    char buf[MP_AMOUNT_STRMAX];

    if (mp_amount_parse((const char *)data, size, &a) != MP_OK)
        return 0;
    if (a.units > MP_AMOUNT_MAX || !mp_currency_valid(a.cur))
        abort();
    if (mp_amount_format(&a, buf, sizeof buf) != MP_OK)
        abort();
    if (mp_amount_parse(buf, strlen(buf), &b) != MP_OK || b.units != a.units
        || memcmp(a.cur, b.cur, 4) != 0)
        abort();
    /* arithmetic stays in range or refuses */
    if (mp_amount_add(&a, &b, &c) == MP_OK && c.units > MP_AMOUNT_MAX)
        abort();
    if (mp_amount_mul(&a, 1000003, &c) == MP_OK && c.units > MP_AMOUNT_MAX)
        abort();
    return 0;
}
