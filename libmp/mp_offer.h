/*
 * mp_offer.h - the 402 offer and the receipt.
 *
 * Offer: what a paid location asks for, sent in
 *   WWW-Authenticate: Payment realm="<vendor>", offer="<base64url record>"
 * and mirrored in the 402 body. Not authenticated: a wallet checks it
 * against its own policy and never pays more than its price.
 *
 * Receipt: the vendor's statement that payer paid for target, stamped
 * with HMAC under the vendor's receipt secret; presented again as a
 * credential within its window so reloads do not charge twice.
 */
#ifndef MP_OFFER_H
#define MP_OFFER_H

#include <stddef.h>
#include <stdint.h>
#include "mp_status.h"
#include "mp_amount.h"
#include "mp_crypto.h"
#include "mp_limits.h"

#define MP_SCHEME_MILLICENT 0x01
#define MP_SCHEME_PAYWORD   0x02

typedef struct {
    char      vendor[MP_NAME_MAX + 1];
    char      method[MP_METHOD_MAX + 1];
    char      target[MP_TARGET_MAX + 1];
    size_t    target_len;
    mp_amount price;                     /* > 0 */
    uint8_t   schemes;                   /* MP_SCHEME_* bits, at least one */
    mp_amount pw_unit;                   /* PayWord word value the vendor
                                            accepts; price is a multiple;
                                            0 units (same currency) when
                                            PayWord is not offered */
    char      broker_url[MP_URL_MAX + 1];/* may be empty */
    uint32_t  receipt_window;            /* seconds; 0: no receipts */
    uint64_t  expiry;                    /* offer valid while now < expiry */
} mp_offer;

mp_status mp_offer_encode(const mp_offer *o, uint8_t *buf, size_t cap, size_t *len);
/* Also checks the invariants above (MP_ERR_MALFORMED, MP_ERR_CURRENCY). */
mp_status mp_offer_decode(const uint8_t *in, size_t len, mp_offer *out);

typedef struct {
    char      vendor[MP_NAME_MAX + 1];
    char      target[MP_TARGET_MAX + 1];
    size_t    target_len;
    uint8_t   scheme;                    /* MP_SCHEME_MILLICENT or _PAYWORD */
    uint64_t  customer_id;               /* Millicent payer (0 for PayWord) */
    uint8_t   commit_id[MP_HASH_LEN];    /* PayWord payer (zero for Millicent) */
    mp_amount price;
    uint64_t  issued;
    uint64_t  expiry;
    uint8_t   mac[MP_HASH_LEN];
} mp_receipt;

/* Fills r->mac with HMAC(receipt key, body). */
mp_status mp_receipt_stamp(mp_mac *key, mp_receipt *r);
mp_status mp_receipt_encode(const mp_receipt *r, uint8_t *buf, size_t cap, size_t *len);
mp_status mp_receipt_decode(const uint8_t *in, size_t len, mp_receipt *out);
/* Checks vendor (MP_ERR_WRONG_VENDOR), target (MP_ERR_WRONG_TARGET), now < expiry (MP_ERR_EXPIRED) and the MAC
 * (MP_ERR_FORGED). */
mp_status mp_receipt_check(mp_mac *key, const mp_receipt *r, const char *vendor,
                           const char *target, size_t target_len, uint64_t now);

#endif
