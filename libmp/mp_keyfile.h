/*
 * mp_keyfile.h - the vendor secrets file (MicropaySecretsFile).
 *
 * Text, one secret per line, '#' comments and blank lines ignored:
 *
 *   scrip    <series> <hex secret> [retire=<unix time>] [delegated]
 *   customer <series> <hex secret>
 *   receipt  <series> <hex secret> [retire=<unix time>]
 *   account  <series> <hex secret>        (broker files: wraps account keys)
 *
 * "delegated" marks a scrip series the vendor gave a broker to mint in
 * (Millicent's licensed broker): the vendor accepts scrip stamped under it
 * but never mints change there, so the two never issue the same id.
 *
 * series is 0..65535 (the top 16 bits of scrip and customer ids); a secret
 * is 16..64 bytes (32..128 hex digits). Fields are separated by spaces or
 * tabs. At most MP_MAX_SERIES entries of each kind, no duplicate (kind,
 * series), at least one scrip and one customer entry; receipt entries are
 * optional (the newest, highest series, stamps receipts; the one before it
 * is still accepted, until its retire time if it has one, so that
 * receipts stamped before a rotation keep working for their window). The
 * file is at most MP_KEYFILE_MAX bytes.
 *
 * The parser is fed from a file only root should read, but a config file
 * is still input: it is bounded, never reads past len, and says which line
 * is wrong. The caller must mp_keyfile_wipe() the result.
 */
#ifndef MP_KEYFILE_H
#define MP_KEYFILE_H

#include <stddef.h>
#include <stdint.h>
#include "mp_status.h"
#include "mp_millicent.h"

#define MP_KEYFILE_MAX  65536
#define MP_KEY_SCRIP    1
#define MP_KEY_CUSTOMER 2
#define MP_KEY_RECEIPT  3
#define MP_KEY_ACCOUNT  4

typedef struct {
    uint8_t  kind;            /* MP_KEY_* */
    uint16_t series;
    uint8_t  len;
    uint8_t  secret[64];
    uint64_t retire_at;       /* scrip and receipt only; 0 = none */
    uint8_t  delegated;       /* scrip only: minted by a broker, not by us */
} mp_keyfile_entry;

typedef struct {
    size_t n;
    mp_keyfile_entry e[3 * MP_MAX_SERIES];
} mp_keyfile;

/* Parses text of len bytes. On error *line (if not NULL) gets the 1-based
 * line at fault (0 for whole-file errors such as a missing kind):
 * MP_ERR_TOO_LARGE, MP_ERR_MALFORMED, MP_ERR_CHARSET. */
mp_status mp_keyfile_parse(const char *text, size_t len, mp_keyfile *out, size_t *line);

/* Writes the file text for kf (with a header comment) into buf. */
mp_status mp_keyfile_format(const mp_keyfile *kf, char *buf, size_t cap, size_t *len);

/* Loads every scrip and customer entry into iss (account entries are the
 * broker's business and are skipped); *receipt_key gets an HMAC
 * context keyed with the highest-series receipt entry, or NULL when the
 * file has none. */
mp_status mp_keyfile_apply(const mp_keyfile *kf, mp_mc_issuer *iss, mp_mac **receipt_key);

/* The receipt secret before the newest (the second-highest receipt
 * series): *prev gets an HMAC context keyed with it, NULL when the file
 * has fewer than two receipt entries, and *retire_at its retire time (0:
 * none). */
mp_status mp_keyfile_receipt_prev(const mp_keyfile *kf, mp_mac **prev, uint64_t *retire_at);

void mp_keyfile_wipe(mp_keyfile *kf);

#endif
