/*
 * mp_amount.h - money as integers.
 *
 * An amount is a count of the smallest unit plus an ISO-4217-style
 * currency code of three upper-case letters. For every currency one unit
 * is 1/100000 of the major unit (1/1000 of a cent for USD), so a price of
 * 0.005 USD is 500 units. No floating point is used anywhere.
 *
 * Amounts never exceed MP_AMOUNT_MAX; arithmetic that would is refused
 * with MP_ERR_OVERFLOW, and so is a subtraction that would go negative.
 * Functions touch their output only on MP_OK.
 */
#ifndef MP_AMOUNT_H
#define MP_AMOUNT_H

#include <stddef.h>
#include <stdint.h>
#include "mp_status.h"

#define MP_UNITS_PER_MAJOR   100000ULL
#define MP_FRACTION_DIGITS   5
/* 10^15 units = 10^10 major units: far above any micropayment balance,
 * far below 2^63 so sums of two valid amounts never wrap. */
#define MP_AMOUNT_MAX        1000000000000000ULL
/* Longest text mp_amount_format() writes, NUL included:
 * "10000000000.00000 USD" is 21 characters. */
#define MP_AMOUNT_STRMAX     32
/* Longest text mp_amount_parse() looks at. */
#define MP_AMOUNT_PARSEMAX   64

typedef struct {
    uint64_t units;   /* 0 .. MP_AMOUNT_MAX */
    char cur[4];      /* three letters A-Z and a NUL */
} mp_amount;

/* True (1) when cur is three ASCII upper-case letters; 0 otherwise. */
int mp_currency_valid(const char *cur);

/* Builds an amount from units and a currency (upper case required).
 * MP_ERR_CURRENCY, MP_ERR_OVERFLOW. */
mp_status mp_amount_set(mp_amount *out, uint64_t units, const char *cur);

/*
 * Parses a human amount of len bytes (no NUL needed). Accepted forms,
 * with one optional space between number and code, code in either case:
 *   "0.005 USD"  "USD 0.005"  "1 EUR"  "0.00001usd"
 * Up to MP_FRACTION_DIGITS decimals; no sign, exponent, thousands
 * separators or surrounding space. MP_ERR_AMOUNT, MP_ERR_CURRENCY,
 * MP_ERR_OVERFLOW, MP_ERR_TOO_LARGE (len > MP_AMOUNT_PARSEMAX).
 */
mp_status mp_amount_parse(const char *s, size_t len, mp_amount *out);

/* Writes the canonical human form "0.005 USD" (at least two decimals,
 * trailing zeros beyond them dropped) into buf. MP_ERR_BUFFER when cap is
 * too small (MP_AMOUNT_STRMAX always suffices), MP_ERR_ARG on an invalid
 * amount. */
mp_status mp_amount_format(const mp_amount *a, char *buf, size_t cap);

/* out = a + b, out = a - b, out = a * k. Currencies must match
 * (MP_ERR_CURRENCY); results outside 0..MP_AMOUNT_MAX give
 * MP_ERR_OVERFLOW. out may alias a or b. */
mp_status mp_amount_add(const mp_amount *a, const mp_amount *b, mp_amount *out);
mp_status mp_amount_sub(const mp_amount *a, const mp_amount *b, mp_amount *out);
mp_status mp_amount_mul(const mp_amount *a, uint64_t k, mp_amount *out);

/* *cmp = -1, 0 or 1 as a <, =, > b. MP_ERR_CURRENCY when they differ. */
mp_status mp_amount_cmp(const mp_amount *a, const mp_amount *b, int *cmp);

#endif
