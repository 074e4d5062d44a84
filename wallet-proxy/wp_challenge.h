/*
 * wp_challenge.h - reading the Payment challenge of a 402 answer
 * (docs/PROTOCOL.md: WWW-Authenticate: Payment realm="<vendor>",
 * offer="<base64url offer>"). Pure text parsing on its own, so that it can
 * be fuzzed and unit-tested without a store or a wallet: the payment engine
 * (wp_pay.c) decodes and checks the offer text it returns.
 *
 * Limits: field values longer than WP_CHALLENGE_VALUE_MAX bytes are not
 * looked at; a realm longer than MP_NAME_MAX or holding a control
 * character, or an offer longer than MP_WIRE_TEXT_MAX, does not count.
 * Thread-safe; no allocation.
 */
#ifndef WP_CHALLENGE_H
#define WP_CHALLENGE_H

#include <stddef.h>
#include "mp_limits.h"
#include "mp_wire.h"
#include "wp.h"

#define WP_CHALLENGE_VALUE_MAX 16384   /* longest WWW-Authenticate value looked at */

/* Finds the first Payment challenge (scheme and parameter names compared
 * without case) that has both a realm and a non-empty offer in one field
 * value; other challenges and unknown parameters are skipped, and when a
 * parameter repeats within a challenge the last one counts. Parameter values
 * are tokens or quoted strings (backslash escapes removed). Returns 1 with
 * realm and offer set (NUL-terminated), 0 with both untouched when there is
 * none. value must be NUL-terminated. */
int wp_challenge_parse(const char *value, char realm[MP_NAME_MAX + 1],
                       char offer[MP_WIRE_TEXT_MAX + 1]);

/* The same over the n header fields h (entries with a NULL name or value are
 * skipped): the first WWW-Authenticate field of at most
 * WP_CHALLENGE_VALUE_MAX bytes holding such a challenge. 1 found (outputs
 * set), 0 none (outputs untouched). */
int wp_challenge_find(const wp_hdr *h, size_t n, char realm[MP_NAME_MAX + 1],
                      char offer[MP_WIRE_TEXT_MAX + 1]);

#endif
