/*
 * libFuzzer target for the WWW-Authenticate Payment challenge parser
 * (wallet-proxy/wp_challenge.c), which reads what any web server sends.
 *
 * The input is one or more header field values separated by '\n'; each is
 * parsed alone (wp_challenge_parse) and all together as header fields
 * (wp_challenge_find, every other one named WWW-Authenticate). Properties
 * checked beyond "no crash, no out-of-bounds access":
 *  - found: realm and offer are NUL-terminated within their buffers, the
 *    realm at most MP_NAME_MAX bytes without control characters, the offer
 *    1..MP_WIRE_TEXT_MAX bytes;
 *  - not found: both outputs are left untouched;
 *  - the parse of a single value does not depend on what follows its NUL.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "wp_challenge.h"

#define MAX_FIELDS 8

static char realm[MP_NAME_MAX + 1], offer[MP_WIRE_TEXT_MAX + 1];

static void fill(void)
{
    memset(realm, 0x5a, sizeof realm);
    memset(offer, 0x5a, sizeof offer);
}

static int untouched(void)
{
    size_t i;

    for (i = 0; i < sizeof realm; i++)
        if (realm[i] != 0x5a)
            return 0;
    for (i = 0; i < sizeof offer; i++)
        if (offer[i] != 0x5a)
            return 0;
    return 1;
}

static void check(int found)
{
    const char *e;
    size_t rl, ol, i;

    if (!found) {
        if (!untouched())
            abort();
        return;
    }
    e = memchr(realm, '\0', sizeof realm);
    if (e == NULL)
        abort();
    rl = (size_t)(e - realm);
    e = memchr(offer, '\0', sizeof offer);
    if (e == NULL)
        abort();
    ol = (size_t)(e - offer);
    if (rl > MP_NAME_MAX || ol == 0 || ol > MP_WIRE_TEXT_MAX)
        abort();
    for (i = 0; i < rl; i++)
        if ((unsigned char)realm[i] < 0x20 || realm[i] == 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[2] = { "WWW-Authenticate", "www-authenticate" };
    char *buf = malloc(size + 1), *p, *nl;
    wp_hdr h[MAX_FIELDS];
    char r1[MP_NAME_MAX + 1], o1[MP_WIRE_TEXT_MAX + 1];
    size_t n = 0, i;
    int found, any = 0;

    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    /* the whole input as one value (up to its first NUL) */
    fill();
    found = wp_challenge_parse(buf, realm, offer);
    check(found);
    /* split into fields at '\n' */
    for (p = buf; n < MAX_FIELDS; p = nl + 1) {
        nl = strchr(p, '\n');
        if (nl != NULL)
            *nl = '\0';
        h[n].name = n % 2 == 0 ? names[n / 2 % 2] : "Proxy-Authenticate";
        h[n].value = p;
        n++;
        if (nl == NULL)
            break;
    }
    fill();
    found = wp_challenge_find(h, n, realm, offer);
    check(found);
    if (found) {
        memcpy(r1, realm, sizeof r1);
        memcpy(o1, offer, sizeof o1);
    }
    /* the first WWW-Authenticate field that parses alone is the one found */
    for (i = 0; i < n && !any; i += 2) {
        fill();
        if (strlen(h[i].value) <= WP_CHALLENGE_VALUE_MAX
            && wp_challenge_parse(h[i].value, realm, offer)) {
            any = 1;
            if (!found || strcmp(realm, r1) != 0 || strcmp(offer, o1) != 0)
                abort();
        }
    }
    if (found && !any)
        abort();
    free(buf);
    return 0;
}
