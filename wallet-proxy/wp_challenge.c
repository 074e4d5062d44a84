/*
 * wp_challenge.c - the WWW-Authenticate Payment challenge parser (see
 * wp_challenge.h). Kept apart from the payment engine because it reads what
 * any web server sends: it has its own fuzz target (tests/fuzz/
 * fuzz_challenge.c) and unit tests, and needs nothing but the text.
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <string.h>
#include <strings.h>
#include "wp_challenge.h"

/* RFC 9110 tchar. */
static int is_tchar(int c)
{
    return c > 0 && (isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* True when s holds no control character (C0 or DEL). */
static int no_ctl(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* Reads an auth-param value (token or quoted-string) at p into out (cap,
 * NUL-terminated); *ok = 0 when it did not fit or was malformed. Returns the
 * position after it. */
static const char *read_value(const char *p, char *out, size_t cap, int *ok)
{
    size_t n = 0;

    *ok = 1;
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++) {
            if (*p == '\\' && p[1] != '\0')
                p++;
            if (n + 1 >= cap) {
                *ok = 0;
                continue;
            }
            out[n++] = *p;
        }
        if (*p != '"')
            *ok = 0;
        else
            p++;
    } else {
        for (; is_tchar((unsigned char)*p); p++) {
            if (n + 1 >= cap) {
                *ok = 0;
                continue;
            }
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    return p;
}

int wp_challenge_parse(const char *value, char realm[MP_NAME_MAX + 1],
                       char offer[MP_WIRE_TEXT_MAX + 1])
{
    char val[MP_WIRE_TEXT_MAX + 1], r[MP_NAME_MAX + 1], o[MP_WIRE_TEXT_MAX + 1];
    const char *p = value, *t0, *q;
    size_t tl;
    int in_pay = 0, got_r = 0, got_o = 0, ok, found = 0;

    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        t0 = p;
        while (is_tchar((unsigned char)*p))
            p++;
        tl = (size_t)(p - t0);
        if (tl == 0) {      /* not a token (token68 rest, junk): skip to the next comma */
            while (*p && *p != ',')
                p++;
            continue;
        }
        q = skip_ws(p);
        if (*q == '=') {
            q = skip_ws(q + 1);
            p = read_value(q, val, sizeof val, &ok);
            if (in_pay && ok && tl == 5 && strncasecmp(t0, "realm", 5) == 0
                && strlen(val) <= MP_NAME_MAX && no_ctl(val)) {
                memcpy(r, val, strlen(val) + 1);
                got_r = 1;
            } else if (in_pay && ok && tl == 5 && strncasecmp(t0, "offer", 5) == 0 && val[0]) {
                memcpy(o, val, strlen(val) + 1);
                got_o = 1;
            }
            p = skip_ws(p);
            if (*p != ',' && *p != '\0')
                while (*p && *p != ',')
                    p++;
        } else {
            /* a new challenge starts with its scheme */
            if (in_pay && got_r && got_o)
                break;
            in_pay = tl == 7 && strncasecmp(t0, "Payment", 7) == 0;
            got_r = got_o = 0;
            p = q;
        }
    }
    found = in_pay && got_r && got_o;
    if (found) {
        memcpy(realm, r, strlen(r) + 1);
        memcpy(offer, o, strlen(o) + 1);
    }
    return found;
}

int wp_challenge_find(const wp_hdr *h, size_t n, char realm[MP_NAME_MAX + 1],
                      char offer[MP_WIRE_TEXT_MAX + 1])
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (h[i].name == NULL || h[i].value == NULL || strcasecmp(h[i].name, "WWW-Authenticate")
            || strnlen(h[i].value, WP_CHALLENGE_VALUE_MAX + 1) > WP_CHALLENGE_VALUE_MAX)
            continue;
        if (wp_challenge_parse(h[i].value, realm, offer))
            return 1;
    }
    return 0;
}
