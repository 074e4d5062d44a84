/*
 * libFuzzer target for the vendor secrets file parser (the module reads it
 * at startup, so a malformed file must be refused, never crash a server).
 * Property: whatever parses formats to text that parses back to the same
 * entries, and the formatted text stays within the parser's size limit.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same_entries(const mp_keyfile *a, const mp_keyfile *b)
{
    size_t j;

    if (a->n != b->n)
        return 0;
    for (j = 0; j < a->n; j++) {
        const mp_keyfile_entry *x = &a->e[j], *y = &b->e[j];
        if (x->kind != y->kind || x->series != y->series || x->len != y->len
            || memcmp(x->secret, y->secret, x->len) != 0 || x->retire_at != y->retire_at)
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static mp_keyfile a, b;
    static char buf[MP_KEYFILE_MAX + 1];
    size_t line = 0, len = 0;

    if (mp_keyfile_parse((const char *)data, size, &a, &line) == MP_OK) {
        if (line != 0 || a.n == 0 || a.n > 3 * MP_MAX_SERIES)
            abort();
        if (mp_keyfile_format(&a, buf, sizeof buf, &len) != MP_OK || len > MP_KEYFILE_MAX
            || buf[len] != '\0')
            abort();
        if (mp_keyfile_parse(buf, len, &b, &line) != MP_OK || !same_entries(&a, &b))
            abort();
    }
    mp_keyfile_wipe(&a);
    mp_keyfile_wipe(&b);
    return 0;
}
