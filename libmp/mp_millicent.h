/*
 * mp_millicent.h - Millicent scrip (Glassman et al. 1995).
 *
 * Scrip is a token {vendor, value, id, customer id, expiry, properties}
 * stamped with HMAC-SHA256 under a master scrip secret that only the
 * issuer (a vendor, or a broker for broker scrip, or a broker the vendor
 * delegated an id range to) holds. The secret is selected by the id's
 * series, the id's top 16 bits, so secrets can rotate: a new series is
 * added, the old one stays until the scrip stamped under it has expired.
 *
 *   stamp           = HMAC(scrip_secret[series(id)], body)
 *   customer_secret = HMAC(customer_master[series(customer_id)],
 *                          "MP1 customer" || u64 customer_id)
 *
 * Paying (the "secure without encryption" variant): the customer sends the
 * scrip, the price it agrees to, and
 *   req_sig = HMAC(customer_secret, "MP1 request" || scrip record ||
 *                  str8 method || str8 host || str16 target || amount price)
 * The vendor recomputes customer_secret from the customer id inside the
 * scrip, checks req_sig, and answers with a reply carrying change scrip
 * (new id, same customer id, value - price) stamped with
 *   reply.mac = HMAC(customer_secret, reply body)
 * so the customer knows the change came from the vendor and belongs to
 * this request. Nobody without customer_secret can spend intercepted
 * scrip, because they cannot make req_sig.
 *
 * Double spending is NOT detected here: the caller records spent ids in
 * its store (mod_micropay) after a successful mp_mc_accept().
 *
 * Issuer objects are not thread-safe; mp_mc_issuer_dup() one per thread.
 */
#ifndef MP_MILLICENT_H
#define MP_MILLICENT_H

#include <stddef.h>
#include <stdint.h>
#include "mp_status.h"
#include "mp_amount.h"
#include "mp_crypto.h"
#include "mp_limits.h"

#define MP_SERIES(id)        ((uint16_t)((uint64_t)(id) >> 48))
#define MP_MAX_SERIES        16     /* secrets one issuer holds per kind */

typedef struct {
    char      vendor[MP_NAME_MAX + 1];  /* issuer: vendor or broker name */
    mp_amount value;
    uint64_t  id;
    uint64_t  customer_id;
    uint64_t  expiry;                   /* Unix seconds; valid while now < expiry */
    char      props[MP_PROPS_MAX + 1];  /* may be empty */
    uint8_t   stamp[MP_HASH_LEN];
} mp_scrip;

/* Wire type MP_T_SCRIP. Encode writes at most MP_WIRE_MAX bytes. */
mp_status mp_scrip_encode(const mp_scrip *s, uint8_t *buf, size_t cap, size_t *len);
mp_status mp_scrip_decode(const uint8_t *in, size_t len, mp_scrip *out);

/* The HTTP request a payment is bound to. Strings need not be
 * NUL-terminated; lengths are checked against mp_limits.h. */
typedef struct {
    const char *method;  size_t method_len;
    const char *host;    size_t host_len;
    const char *target;  size_t target_len;
    /* SHA-256 of the request body as received (the vendor computes it; a
     * request without a body has the digest of the empty string). NULL is
     * the empty body. Bound into the PayWord request tag, not into req_sig. */
    const uint8_t *body_digest;
} mp_request;

typedef struct {
    mp_scrip  scrip;
    mp_amount price;                 /* what the customer agrees to pay */
    uint8_t   req_sig[MP_HASH_LEN];
} mp_mc_payment;

mp_status mp_mc_payment_encode(const mp_mc_payment *p, uint8_t *buf, size_t cap, size_t *len);
mp_status mp_mc_payment_decode(const uint8_t *in, size_t len, mp_mc_payment *out);

typedef struct {
    uint8_t   has_change;            /* 0 when value == price */
    mp_scrip  change;
    mp_amount charged;
    uint8_t   req_sig[MP_HASH_LEN];  /* echo: binds the reply to the request */
    uint8_t   mac[MP_HASH_LEN];      /* HMAC(customer_secret, body) */
} mp_mc_reply;

mp_status mp_mc_reply_encode(const mp_mc_reply *r, uint8_t *buf, size_t cap, size_t *len);
mp_status mp_mc_reply_decode(const uint8_t *in, size_t len, mp_mc_reply *out);

/* ---- issuer (vendor, broker) ---------------------------------------- */

typedef struct mp_mc_issuer mp_mc_issuer;

/* name: the vendor field this issuer stamps and accepts (1..MP_NAME_MAX
 * visible ASCII). */
mp_status mp_mc_issuer_new(const char *name, mp_mc_issuer **out);
mp_status mp_mc_issuer_dup(const mp_mc_issuer *iss, mp_mc_issuer **out);
void mp_mc_issuer_free(mp_mc_issuer *iss);   /* wipes all secrets */

/* Adds the master scrip secret of a series (16..MP_SECRET_MAX bytes).
 * Scrip of this series is accepted while now < retire_at (0: no limit).
 * MP_ERR_ARG for a duplicate series or more than MP_MAX_SERIES. */
mp_status mp_mc_issuer_add_scrip_secret(mp_mc_issuer *iss, uint16_t series,
                                        const uint8_t *secret, size_t len,
                                        uint64_t retire_at);
/* Adds the master customer secret of a series. */
mp_status mp_mc_issuer_add_customer_secret(mp_mc_issuer *iss, uint16_t series,
                                           const uint8_t *secret, size_t len);
/* Drops a scrip-secret series (rotation finished). MP_ERR_UNKNOWN_SERIES. */
mp_status mp_mc_issuer_remove_scrip_secret(mp_mc_issuer *iss, uint16_t series);

const char *mp_mc_issuer_name(const mp_mc_issuer *iss);

/* Mints scrip: value > 0, expiry > 0, props NULL or a visible-ASCII string.
 * MP_ERR_UNKNOWN_SERIES when no secret for MP_SERIES(id). */
mp_status mp_mc_mint(mp_mc_issuer *iss, const mp_amount *value, uint64_t id,
                     uint64_t customer_id, uint64_t expiry, const char *props,
                     mp_scrip *out);

/* customer_secret for a customer id (the broker gives it to the customer
 * with its first scrip; the vendor recomputes it). */
mp_status mp_mc_customer_secret(mp_mc_issuer *iss, uint64_t customer_id,
                                uint8_t out[MP_HASH_LEN]);

/* Checks issuer name (MP_ERR_WRONG_VENDOR), expiry (MP_ERR_EXPIRED),
 * series (MP_ERR_UNKNOWN_SERIES, retired: MP_ERR_EXPIRED) and stamp
 * (MP_ERR_FORGED). */
mp_status mp_mc_check_scrip(mp_mc_issuer *iss, const mp_scrip *s, uint64_t now);

/* ---- customer side ------------------------------------------------------ */

/* Computes req_sig for paying price with scrip on req. mac is any mp_mac;
 * it is re-keyed with customer_secret. */
mp_status mp_mc_pay(mp_mac *mac, const mp_scrip *scrip,
                    const uint8_t customer_secret[MP_HASH_LEN],
                    const mp_request *req, const mp_amount *price,
                    mp_mc_payment *out);

/* Checks a vendor's reply to payment p: MAC under customer_secret, echo of
 * p's req_sig, change customer id and value == p.scrip.value - charged,
 * charged <= p.price. MP_ERR_FORGED otherwise. */
mp_status mp_mc_reply_check(mp_mac *mac, const mp_mc_reply *r,
                            const mp_mc_payment *p,
                            const uint8_t customer_secret[MP_HASH_LEN]);

/* ---- vendor side -------------------------------------------------------- */

/*
 * Validates payment p for request req whose current price is price, at
 * time now, and on success mints the change (id change_id, which the
 * caller allocates in a series it holds; expiry of the spent scrip) and
 * the stamped reply.
 * Order of checks, so the reason is deterministic: scrip (see
 * mp_mc_check_scrip), price agreement (MP_ERR_PRICE unless p->price ==
 * price), value (MP_ERR_INSUFFICIENT when scrip value < price, currency
 * mismatch included), req_sig (MP_ERR_FORGED).
 * mac is a scratch context (re-keyed per call).
 */
mp_status mp_mc_accept(mp_mc_issuer *iss, mp_mac *mac, const mp_mc_payment *p,
                       const mp_request *req, const mp_amount *price,
                       uint64_t now, uint64_t change_id, mp_mc_reply *out);

#endif
