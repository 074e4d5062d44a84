/*
 * mp_pwtrack.h - a vendor's bookkeeping of one PayWord commitment when
 * payments arrive concurrently and out of order (docs/PROTOCOL.md 7.5).
 *
 * mp_pw_accept() alone is sequential: it refuses any word at or below the
 * highest one accepted. A browser fetches a page's parts in parallel, so a
 * wallet hands out intervals (i-k, i] in increasing order and they arrive
 * in any order. The tracker keeps, besides (l, w_l), the gaps below l that
 * no payment has used yet (each anchored at a known word w_a), and the last
 * accepted payments so that a retry of an accepted payment is recognised
 * and answered without charging twice.
 *
 * A tracker is plain data (no pointers): the store keeps it as the record
 * mp_pw_track_encode() writes, and a process updates it optimistically:
 * read, mp_pw_track_accept() outside any lock (hashing can take a while),
 * then write back only if the stored version is still the one read.
 */
#ifndef MP_PWTRACK_H
#define MP_PWTRACK_H

#include <stddef.h>
#include <stdint.h>
#include "mp_status.h"
#include "mp_amount.h"
#include "mp_crypto.h"
#include "mp_payword.h"
#include "mp_wire.h"
#include "mp_millicent.h"

#define MP_PW_GAPS_MAX    64   /* beyond this the lowest gap is forfeited */
#define MP_PW_RECENT_MAX  32   /* accepted payments remembered for retries */
/* A payment of k words is hashed over at most MP_PW_SKIP_RATIO * k words
 * (its own and the gap it opens below it): the work one request makes the
 * vendor do is bounded by what it pays. Wallets hand out intervals in
 * order and a page's parallel fetches open far smaller gaps. */
#define MP_PW_SKIP_RATIO  256
/* Largest encoded tracker. */
#define MP_PW_TRACK_MAX   (2 + 32 + 4 + 11 + 8 + 8 + 4 + 32 + 8 + 1 + MP_PW_GAPS_MAX * 40 \
                           + 1 + MP_PW_RECENT_MAX * (40 + MP_PW_TAG_LEN) + 1 + MP_NAME_MAX)

typedef struct {
    uint32_t a, b;                 /* the gap is words a+1 .. b */
    uint8_t  w_a[MP_HASH_LEN];     /* known word at a (w0 when a = 0) */
} mp_pw_gap;

#define MP_PW_TAG_LEN 16    /* request tag: binds a remembered payment to its request */

typedef struct {
    uint32_t i, k;
    uint8_t  w[MP_HASH_LEN];
    uint8_t  tag[MP_PW_TAG_LEN];   /* mp_request_tag() of the request it paid for */
} mp_pw_recent;

typedef struct {
    uint8_t   commit_id[MP_HASH_LEN];
    uint32_t  n;
    mp_amount unit;
    uint64_t  expiry;              /* commitment expiry */
    uint64_t  version;             /* +1 on every accepted payment */
    uint32_t  last;                /* l */
    uint8_t   w_last[MP_HASH_LEN]; /* w_l */
    uint64_t  units_paid;          /* sum of k over accepted payments */
    uint8_t   ngaps;
    mp_pw_gap gaps[MP_PW_GAPS_MAX];       /* ascending, disjoint, below l */
    uint8_t   nrecent;
    mp_pw_recent recent[MP_PW_RECENT_MAX]; /* oldest first */
    /* The vendor the commitment names: a store shared by several vendors
     * (virtual hosts) must not let one vendor's commitment pay another. */
    char      vendor[MP_NAME_MAX + 1];
} mp_pw_track;

/* A fresh tracker for a verified commitment: l = 0, w_l = w0. */
mp_status mp_pw_track_init(const mp_pw_commit *c, mp_pw_track *out);

/* The tag of a request: the first MP_PW_TAG_LEN bytes of SHA-256 over
 * "MP1 request-tag" || str8 method || str8 host || str16 target
 * || bytes32 body_digest (req->body_digest, NULL: the empty body). A retry
 * of a PayWord payment is recognised only for the same request, body
 * included, so that re-sending a word cannot buy a different resource or
 * a different POST. */
mp_status mp_request_tag(mp_sha *h, const mp_request *req, uint8_t out[MP_PW_TAG_LEN]);

/*
 * Decides payment p (already decoded; its commit_id must equal t's, else
 * MP_ERR_ARG) made for the request whose tag is tag, for a resource whose
 * price is price, at time now, following docs/PROTOCOL.md 7.5 in this order:
 *   retry of a remembered payment (same i, k, w       -> MP_OK, *retry = 1,
 *   and request tag)                                     *next = *t
 *   a remembered payment for another request          -> MP_ERR_SPENT
 *   now >= expiry                                     -> MP_ERR_EXPIRED
 *   i > n                                             -> MP_ERR_EXHAUSTED
 *   k*unit in another currency or below price         -> MP_ERR_INSUFFICIENT
 *   k*unit above price                                -> MP_ERR_PRICE
 *   interval overlaps used or forfeited words         -> MP_ERR_SPENT
 *   i - anchor > MP_PW_SKIP_RATIO * k                 -> MP_ERR_FORGED, unhashed
 *   w does not hash to the anchor below the interval  -> MP_ERR_FORGED
 * On acceptance *retry = 0 and *next is the updated tracker (version + 1).
 * next may alias t only if the caller does not need t afterwards.
 */
mp_status mp_pw_track_accept(mp_sha *h, const mp_pw_track *t, const mp_pw_payment *p,
                             const uint8_t tag[MP_PW_TAG_LEN],
                             const mp_amount *price, uint64_t now,
                             mp_pw_track *next, int *retry);

/* Storage form: a record of type MP_T_PW_TRACK holding only the used gap
 * and recent entries. Decode checks every invariant (ordering, bounds,
 * counts) and rejects a corrupt record with MP_ERR_MALFORMED. */
mp_status mp_pw_track_encode(const mp_pw_track *t, uint8_t *buf, size_t cap, size_t *len);
mp_status mp_pw_track_decode(const uint8_t *in, size_t len, mp_pw_track *out);

#endif
