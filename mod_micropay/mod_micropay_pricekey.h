/*
 * mod_micropay_pricekey.h - the keys of the price table (docs/mod_micropay.md,
 * "The price table").
 *
 * A key is a URL path as Apache resolves it: decoded once, no "." or ".."
 * segments, no empty segments ("//"), then written in one canonical
 * percent-encoding: the bytes of RFC 3986's pchar (ALPHA DIGIT - . _ ~
 * ! $ & ' ( ) * + , ; = : @) and '/' as they are, every other byte as %XX
 * with upper-case hex. So each decoded path has exactly one key, and a key
 * is visible ASCII, as the store wants. A ';' is part of its segment (Apache
 * maps "/a.cgi;x=1" to a file named "a.cgi;x=1"); a trailing '/' is kept
 * (a directory, and the form of a tree entry).
 *
 * Shared by the module (mod_micropay_price.c derives the key of the resource a
 * request is served from) and mpadmin (price set/rm normalise what the admin
 * typed the same way), so both write and read the very same bytes: plain C,
 * no APR, in libmpstore with the store.
 */
#ifndef MOD_MICROPAY_PRICEKEY_H
#define MOD_MICROPAY_PRICEKEY_H

#include <stddef.h>
#include "mp.h"

/* The longest key mps_price_get can look up; a longer one is an error. */
#define MPK_MAX MP_TARGET_MAX

/* LMDB's key limit as Debian's liblmdb is built (mdb_env_get_maxkeysize): a
 * price entry's key is "vendor NUL path", so no entry can be longer than
 * MPK_STORE_KEY_MAX - (strlen(vendor) + 1). Longer lookups still find the
 * '/'-terminated prefixes that fit. */
#define MPK_STORE_KEY_MAX 511

/* The key of the decoded path p[0..n) (no query): dot segments resolved,
 * empty segments dropped, canonically encoded into out (cap bytes, NUL
 * terminated), *len its length. MP_ERR_ARG when p does not start with '/',
 * holds a NUL byte or climbs above the root with ".."; MP_ERR_TOO_LARGE
 * when the key is longer than MPK_MAX or cap - 1. *why (may be NULL) says
 * what was wrong. */
mp_status mpk_from_path(const char *p, size_t n, char *out, size_t cap, size_t *len,
                        const char **why);

/* The key of a path as written in a URL (what mpadmin price set/rm take):
 * percent-decoded once, then as mpk_from_path. Also MP_ERR_ARG for a '%'
 * not followed by two hex digits, %00, an encoded slash %2F (write '/'), and
 * a '?' or '#' (a query or fragment is not part of a path). */
mp_status mpk_normalise(const char *in, char *out, size_t cap, size_t *len, const char **why);

/* 1 when key is already canonical, i.e. mpk_normalise(key) == key: an
 * entry that is not can never match a request. */
int mpk_is_canonical(const char *key);

#endif
