/*
 * mod_micropay_pricekey.c - the keys of the price table (the contract is in
 * mod_micropay_pricekey.h). Pure functions over bytes: no APR, no I/O.
 */
#include <string.h>
#include "mod_micropay_pricekey.h"

/* RFC 3986 pchar less pct-encoded, plus '/': kept as they are in a key. */
static int literal(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("-._~!$&'()*+,;=:@/", c) != NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static mp_status fail(mp_status st, const char **why, const char *msg)
{
    if (why != NULL)
        *why = msg;
    return st;
}

mp_status mpk_from_path(const char *p, size_t n, char *out, size_t cap, size_t *len,
                        const char **why)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t limit, o = 0, i = 0, s, e, k;
    int slash = 0;

    if (why != NULL)
        *why = NULL;
    if (p == NULL || out == NULL || cap == 0)
        return fail(MP_ERR_ARG, why, "no path");
    if (n == 0 || p[0] != '/')
        return fail(MP_ERR_ARG, why, "not an absolute path");
    if (memchr(p, '\0', n) != NULL)
        return fail(MP_ERR_ARG, why, "a NUL byte in the path");
    limit = cap - 1 < MPK_MAX ? cap - 1 : MPK_MAX;
    /* Segment by segment: each one after a '/', up to the next '/'. out
     * holds "/seg/seg" (no trailing '/'); slash says whether the path ends
     * with one (its last segment is empty, "." or ".."). */
    while (i < n) {
        s = ++i;                                   /* past the '/' */
        for (e = s; e < n && p[e] != '/'; e++)
            ;
        i = e;
        slash = 0;
        if (e == s || (e - s == 1 && p[s] == '.')) {
            slash = 1;                             /* "//" or "/./": nothing to add */
            continue;
        }
        if (e - s == 2 && p[s] == '.' && p[s + 1] == '.') {
            if (o == 0)
                return fail(MP_ERR_ARG, why, "a \"..\" segment above the root");
            while (o > 0 && out[o - 1] != '/')
                o--;
            o--;                                   /* and its '/' */
            slash = 1;
            continue;
        }
        if (o + 1 > limit)
            return fail(MP_ERR_TOO_LARGE, why, "too long for the price table");
        out[o++] = '/';
        for (k = s; k < e; k++) {
            unsigned char c = (unsigned char)p[k];

            if (literal(c)) {
                if (o + 1 > limit)
                    return fail(MP_ERR_TOO_LARGE, why, "too long for the price table");
                out[o++] = (char)c;
            } else {
                if (o + 3 > limit)
                    return fail(MP_ERR_TOO_LARGE, why, "too long for the price table");
                out[o++] = '%';
                out[o++] = hex[c >> 4];
                out[o++] = hex[c & 15];
            }
        }
    }
    if (o == 0 || slash) {
        if (o + 1 > limit)
            return fail(MP_ERR_TOO_LARGE, why, "too long for the price table");
        out[o++] = '/';
    }
    out[o] = '\0';
    if (len != NULL)
        *len = o;
    return MP_OK;
}

mp_status mpk_normalise(const char *in, char *out, size_t cap, size_t *len, const char **why)
{
    char dec[MPK_MAX + 1];
    size_t n = 0, i;
    int hi, lo;

    if (why != NULL)
        *why = NULL;
    if (in == NULL || in[0] != '/')
        return fail(MP_ERR_ARG, why, "a path must start with '/'");
    for (i = 0; in[i] != '\0'; i++) {
        char c = in[i];

        if (n == MPK_MAX)
            return fail(MP_ERR_TOO_LARGE, why, "too long for the price table");
        if (c == '?' || c == '#')
            return fail(MP_ERR_ARG, why, "a query or fragment ('?', '#') is not part of a path");
        if (c != '%') {
            dec[n++] = c;
            continue;
        }
        if ((hi = hexval(in[i + 1])) < 0 || (lo = hexval(in[i + 2])) < 0)
            return fail(MP_ERR_ARG, why, "a '%' not followed by two hex digits");
        c = (char)(hi << 4 | lo);
        if (c == '\0')
            return fail(MP_ERR_ARG, why, "an encoded NUL (%00)");
        if (c == '/')
            return fail(MP_ERR_ARG, why, "an encoded slash (%2F): Apache refuses it or, with "
                        "AllowEncodedSlashes On, decodes it; write '/'");
        dec[n++] = c;
        i += 2;
    }
    return mpk_from_path(dec, n, out, cap, len, why);
}

int mpk_is_canonical(const char *key)
{
    char out[MPK_MAX + 1];
    size_t len = 0;

    return key != NULL && mpk_normalise(key, out, sizeof out, &len, NULL) == MP_OK
        && strcmp(out, key) == 0;
}
