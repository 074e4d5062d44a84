/*
 * mp_amount.c - parsing, formatting and checked arithmetic of amounts.
 * Integer only: the decimal point is handled as a shift by
 * MP_FRACTION_DIGITS digits, never through a double.
 */
#include <string.h>
#include "mp_amount.h"

int mp_currency_valid(const char *cur)
{
    return cur != NULL
        && cur[0] >= 'A' && cur[0] <= 'Z'
        && cur[1] >= 'A' && cur[1] <= 'Z'
        && cur[2] >= 'A' && cur[2] <= 'Z'
        && cur[3] == '\0';
}

mp_status mp_amount_set(mp_amount *out, uint64_t units, const char *cur)
{
    if (out == NULL)
        return MP_ERR_ARG;
    if (!mp_currency_valid(cur))
        return MP_ERR_CURRENCY;
    if (units > MP_AMOUNT_MAX)
        return MP_ERR_OVERFLOW;
    out->units = units;
    memcpy(out->cur, cur, 4);
    return MP_OK;
}

static int is_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Parses "I[.F]" exactly filling [s, s+len): integer digits, optional
 * point with 1..MP_FRACTION_DIGITS digits. */
static mp_status parse_number(const char *s, size_t len, uint64_t *units)
{
    uint64_t major = 0, frac = 0;
    size_t i = 0, nint = 0, nfrac = 0;
    mp_status st = MP_ERR_AMOUNT;

    while (i < len && is_digit(s[i])) {
        /* 10^10 major units is the ceiling; more digits cannot fit. */
        if (major > MP_AMOUNT_MAX / MP_UNITS_PER_MAJOR) {
            st = MP_ERR_OVERFLOW;
            goto done;
        }
        major = major * 10 + (uint64_t)(s[i] - '0');
        i++;
        nint++;
    }
    if (nint == 0)
        goto done;
    if (i < len) {
        if (s[i] != '.')
            goto done;
        i++;
        while (i < len && is_digit(s[i])) {
            if (nfrac == MP_FRACTION_DIGITS)
                goto done;        /* finer than the smallest unit */
            frac = frac * 10 + (uint64_t)(s[i] - '0');
            i++;
            nfrac++;
        }
        if (nfrac == 0 || i != len)
            goto done;
    }
    for (; nfrac < MP_FRACTION_DIGITS; nfrac++)
        frac *= 10;
    if (major > MP_AMOUNT_MAX / MP_UNITS_PER_MAJOR
        || major * MP_UNITS_PER_MAJOR > MP_AMOUNT_MAX - frac) {
        st = MP_ERR_OVERFLOW;
        goto done;
    }
    *units = major * MP_UNITS_PER_MAJOR + frac;
    st = MP_OK;
done:
    return st;
}

mp_status mp_amount_parse(const char *s, size_t len, mp_amount *out)
{
    const char *num, *code;
    size_t nlen, i;
    char cur[4];
    uint64_t units;
    mp_status st = MP_ERR_AMOUNT;

    if (s == NULL || out == NULL)
        return MP_ERR_ARG;
    if (len > MP_AMOUNT_PARSEMAX)
        return MP_ERR_TOO_LARGE;
    if (len < 4)
        goto done;
    if (is_alpha(s[0])) {
        /* "USD 0.005" or "USD0.005" */
        code = s;
        num = s + 3;
        nlen = len - 3;
        if (nlen > 0 && num[0] == ' ') {
            num++;
            nlen--;
        }
    } else {
        /* "0.005 USD" or "0.005USD" */
        code = s + len - 3;
        num = s;
        nlen = len - 3;
        if (nlen > 0 && num[nlen - 1] == ' ')
            nlen--;
    }
    for (i = 0; i < 3; i++) {
        if (!is_alpha(code[i])) {
            st = MP_ERR_CURRENCY;
            goto done;
        }
        cur[i] = (char)(code[i] >= 'a' ? code[i] - ('a' - 'A') : code[i]);
    }
    cur[3] = '\0';
    if ((st = parse_number(num, nlen, &units)) != MP_OK)
        goto done;
    out->units = units;
    memcpy(out->cur, cur, 4);
done:
    return st;
}

mp_status mp_amount_format(const mp_amount *a, char *buf, size_t cap)
{
    char tmp[MP_AMOUNT_STRMAX];
    uint64_t major, frac;
    char digits[MP_FRACTION_DIGITS + 1];
    char intpart[24];
    size_t n = 0, ndig, ni = 0, keep, j;
    int i;

    if (a == NULL || buf == NULL || !mp_currency_valid(a->cur) || a->units > MP_AMOUNT_MAX)
        return MP_ERR_ARG;
    major = a->units / MP_UNITS_PER_MAJOR;
    frac = a->units % MP_UNITS_PER_MAJOR;
    do {
        intpart[ni++] = (char)('0' + major % 10);
        major /= 10;
    } while (major > 0);
    for (i = MP_FRACTION_DIGITS - 1; i >= 0; i--, frac /= 10)
        digits[i] = (char)('0' + frac % 10);
    /* Keep at least two decimals (cents), drop zeros beyond them. */
    keep = MP_FRACTION_DIGITS;
    while (keep > 2 && digits[keep - 1] == '0')
        keep--;
    while (ni > 0)
        tmp[n++] = intpart[--ni];
    tmp[n++] = '.';
    for (j = 0; j < keep; j++)
        tmp[n++] = digits[j];
    tmp[n++] = ' ';
    memcpy(tmp + n, a->cur, 3);
    n += 3;
    ndig = n;
    if (cap < ndig + 1)
        return MP_ERR_BUFFER;
    memcpy(buf, tmp, ndig);
    buf[ndig] = '\0';
    return MP_OK;
}

static mp_status check_pair(const mp_amount *a, const mp_amount *b)
{
    if (a == NULL || b == NULL)
        return MP_ERR_ARG;
    if (!mp_currency_valid(a->cur) || !mp_currency_valid(b->cur)
        || memcmp(a->cur, b->cur, 3) != 0)
        return MP_ERR_CURRENCY;
    if (a->units > MP_AMOUNT_MAX || b->units > MP_AMOUNT_MAX)
        return MP_ERR_OVERFLOW;
    return MP_OK;
}

mp_status mp_amount_add(const mp_amount *a, const mp_amount *b, mp_amount *out)
{
    mp_status st;

    if (out == NULL)
        return MP_ERR_ARG;
    if ((st = check_pair(a, b)) != MP_OK)
        return st;
    /* Both <= MP_AMOUNT_MAX < 2^62, so the sum cannot wrap. */
    if (a->units + b->units > MP_AMOUNT_MAX)
        return MP_ERR_OVERFLOW;
    out->units = a->units + b->units;
    memmove(out->cur, a->cur, 4);
    return MP_OK;
}

mp_status mp_amount_sub(const mp_amount *a, const mp_amount *b, mp_amount *out)
{
    mp_status st;

    if (out == NULL)
        return MP_ERR_ARG;
    if ((st = check_pair(a, b)) != MP_OK)
        return st;
    if (b->units > a->units)
        return MP_ERR_OVERFLOW;
    out->units = a->units - b->units;
    memmove(out->cur, a->cur, 4);
    return MP_OK;
}

mp_status mp_amount_mul(const mp_amount *a, uint64_t k, mp_amount *out)
{
    if (a == NULL || out == NULL)
        return MP_ERR_ARG;
    if (!mp_currency_valid(a->cur))
        return MP_ERR_CURRENCY;
    if (a->units > MP_AMOUNT_MAX)
        return MP_ERR_OVERFLOW;
    if (k != 0 && a->units > MP_AMOUNT_MAX / k)
        return MP_ERR_OVERFLOW;
    out->units = a->units * k;
    memmove(out->cur, a->cur, 4);
    return MP_OK;
}

mp_status mp_amount_cmp(const mp_amount *a, const mp_amount *b, int *cmp)
{
    mp_status st;

    if (cmp == NULL)
        return MP_ERR_ARG;
    if ((st = check_pair(a, b)) != MP_OK)
        return st;
    *cmp = a->units < b->units ? -1 : a->units > b->units ? 1 : 0;
    return MP_OK;
}
