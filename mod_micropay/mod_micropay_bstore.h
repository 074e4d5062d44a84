/*
 * mod_micropay_bstore.h - the broker's accounts in LMDB.
 *
 * The broker holds real money: every request that changes state runs in
 * one LMDB write transaction together with its idempotency record, so a
 * request either happens completely, with its response stored, or not at
 * all; a retry with the same request id gets the stored response. LMDB
 * serialises write transactions across all Apache processes, so two
 * concurrent requests on one account cannot both spend its balance.
 * Commits are fsync'ed (money, unlike spent-scrip marks, must survive power
 * loss; broker requests are rare next to page views).
 *
 * Like the vendor store: plain C + LMDB + libmp, no APR (mpadmin links it),
 * never created implicitly (mpb_create), MP_ERR_STORE for every failure
 * with a per-thread message (mpb_errmsg()), opened after fork.
 *
 * Records:
 *   account     id -> mpb_account
 *   idem        account NUL request_id -> u64 expiry | 32 body hash | u16 status | body
 *   counter     name -> u64 next value (scrip ids per series, cert serials, customer ids)
 *   custid      account NUL vendor -> u64 customer id (stable per pair)
 *   spent       issuer NUL u64 scrip id -> u64 expiry   (broker scrip exchanged,
 *                                                       vendor scrip deposited)
 *   redeemed    32 commitment id -> u32 last word credited | u64 keep_until
 *   cert        u64 serial -> the credit a PayWord certificate reserved (mpb_cert)
 *   certdue     index of the unreleased certificates by release time
 *   expiry      index for compaction, as in the vendor store
 * A store made before the cert tables existed gets them on its first
 * writable open; opened read-only, it simply has no certificate records.
 */
#ifndef MOD_MICROPAY_BSTORE_H
#define MOD_MICROPAY_BSTORE_H

#include <stddef.h>
#include <stdint.h>
#include "mp.h"

typedef struct mpb mpb;
typedef struct mpb_txn mpb_txn;

#define MPB_ACCOUNT_MAX 64          /* account id: 1..64 visible ASCII, no '"' or '\' */
#define MPB_REQID_MAX   64          /* request id: 1..64 of A-Z a-z 0-9 - _ */
#define MPB_BODY_MAX    (1024 * 1024)

typedef enum { MPB_CUSTOMER = 1, MPB_VENDOR = 2 } mpb_kind;

typedef struct {
    char      id[MPB_ACCOUNT_MAX + 1];
    uint8_t   kind;                       /* mpb_kind */
    char      vendor[MP_NAME_MAX + 1];    /* vendor accounts: the vendor name */
    mp_amount balance;                    /* spendable; never below zero */
    mp_amount reserved;                   /* PayWord credit held for certificates */
    uint8_t   key_enc[MP_SECRET_LEN];     /* account key, encrypted by the caller */
    uint64_t  created;
} mpb_account;

mp_status mpb_create(const char *dir, long uid, long gid, char *err, size_t errlen);
/* map_size: bytes of address space the store may fill, 0 for the default
 * (1 GiB); never less than its data file already is. */
mp_status mpb_open(const char *dir, int rdonly, size_t map_size, mpb **out, char *err,
                   size_t errlen);
void mpb_close(mpb *b);
const char *mpb_errmsg(void);

/* Write transactions (rdonly = 0) take the store's single writer lock;
 * read transactions never block. Every function below works inside one. */
mp_status mpb_begin(mpb *b, int rdonly, mpb_txn **out);
mp_status mpb_commit(mpb_txn *t);        /* frees t, also on failure */
void mpb_abort(mpb_txn *t);              /* frees t; NULL is fine */

/* Accounts. get: MP_ERR_ARG-free lookup, *found = 0 when absent. put
 * replaces. Amount invariants (balance, reserved >= 0, same currency) are
 * the caller's; put refuses records that break them (MP_ERR_ARG). */
mp_status mpb_account_get(mpb_txn *t, const char *id, mpb_account *out, int *found);
mp_status mpb_account_put(mpb_txn *t, const mpb_account *a);
typedef int (*mpb_account_cb)(void *ctx, const mpb_account *a);
mp_status mpb_account_list(mpb_txn *t, mpb_account_cb cb, void *ctx);

/* Idempotency: a stored response for (account, request_id).
 *   absent                          -> MP_OK, *found = 0
 *   present, same body hash         -> MP_OK, *found = 1, status and a
 *                                      malloc'ed copy of the body (caller frees)
 *   present, another body hash      -> MP_ERR_MALFORMED (HTTP 409)        */
mp_status mpb_idem_get(mpb_txn *t, const char *account, const char *request_id,
                       const uint8_t body_hash[MP_HASH_LEN], int *found, int *status,
                       char **body, size_t *body_len);
mp_status mpb_idem_put(mpb_txn *t, const char *account, const char *request_id,
                       const uint8_t body_hash[MP_HASH_LEN], int status,
                       const char *body, size_t body_len, uint64_t expiry);

/* The next value of a named counter (first value 1); names such as
 * "scrip:<issuer>:<series>", "serial", "customer:<series>". */
mp_status mpb_counter_next(mpb_txn *t, const char *name, uint64_t *out);

/* The customer id of (account, vendor); vendor "" for broker scrip.
 * *found = 0 when none is assigned yet. */
mp_status mpb_custid_get(mpb_txn *t, const char *account, const char *vendor,
                         uint64_t *out, int *found);
mp_status mpb_custid_put(mpb_txn *t, const char *account, const char *vendor, uint64_t id);

/* Marks scrip id of issuer as used (exchanged or deposited): MP_ERR_SPENT
 * when it already was. */
mp_status mpb_spend(mpb_txn *t, const char *issuer, uint64_t scrip_id, uint64_t expiry);

/* Highest PayWord word credited for a commitment: *last = 0 when none. */
mp_status mpb_redeemed_get(mpb_txn *t, const uint8_t commit_id[MP_HASH_LEN], uint32_t *last);
mp_status mpb_redeemed_put(mpb_txn *t, const uint8_t commit_id[MP_HASH_LEN], uint32_t last,
                           uint64_t keep_until);

/*
 * Certificates (8.5). /certify reserves the credit limit (balance ->
 * reserved) and records it here under the certificate's serial, in the same
 * transaction; /redeem draws PayWord redemptions from that reservation
 * first; once no redemption can come any more (release_at), the rest goes
 * back to the balance, once. Records are never deleted: a late redemption
 * must still find that its certificate was released.
 */
typedef struct {
    uint64_t  serial;                        /* the key; >= 1 */
    char      account[MPB_ACCOUNT_MAX + 1];  /* the certified customer (cert.user) */
    mp_amount credit;                        /* the credit limit reserved at /certify */
    mp_amount redeemed;                      /* drawn from that reservation so far:
                                              * 0..credit, same currency */
    uint64_t  expiry;                        /* the certificate's expiry */
    uint64_t  release_at;                    /* expiry + redemption deadline in force at
                                              * /certify; >= expiry */
    uint8_t   released;                      /* 0, or 1 once credit - redeemed went back
                                              * to the balance */
} mpb_cert;

/* *found = 0 when serial has no record. MP_ERR_STORE for a damaged record. */
mp_status mpb_cert_get(mpb_txn *t, uint64_t serial, mpb_cert *out, int *found);

/* Writes c (copied; the caller keeps c) and keeps the release index in step.
 * MP_ERR_ARG, writing nothing, for an invalid record (serial 0, bad account
 * id, redeemed above credit or in another currency, release_at < expiry,
 * released not 0 or 1) and for a rewrite that changes anything but
 * redeemed upwards and released from 0 to 1: going back would let credit
 * be drawn or released twice. */
mp_status mpb_cert_put(mpb_txn *t, const mpb_cert *c);

/* The unreleased certificates due at now (release_at <= now), earliest
 * first, into out[0..max); *n gets how many. Reads at most max index
 * entries, so it is bounded; a full out means more may be due. Works in
 * read transactions too; an index entry that names no unreleased record
 * of that time is skipped (a write transaction deletes it). */
mp_status mpb_cert_due(mpb_txn *t, uint64_t now, mpb_cert *out, size_t max, size_t *n);

/* One released certificate. */
typedef struct {
    uint64_t  serial;
    char      account[MPB_ACCOUNT_MAX + 1];
    mp_amount amount;                        /* moved from reserved to balance */
    mp_amount uncovered;                     /* credit - redeemed that the account could
                                              * not give back: gone, another currency,
                                              * reserved already lower, or a balance at
                                              * MP_AMOUNT_MAX; normally 0 */
} mpb_release;

/* Releases up to max due certificates in one write transaction of its own:
 * for each, credit - redeemed moves from the account's reserved to its
 * balance (never more than reserved holds; the rest is reported as
 * uncovered) and the record is marked released. out[0..max) (the caller's
 * array) gets one entry per certificate released, *n their number, filled
 * only when everything committed (*n = 0 otherwise). *n == max means more
 * may be due: call again. MP_ERR_ARG on a read-only store or for max 0 or
 * above 100000; MP_ERR_NOMEM; MP_ERR_STORE, with nothing released. */
mp_status mpb_cert_release(mpb *b, uint64_t now, mpb_release *out, size_t max, size_t *n);

/* Deletes expired idempotency, spent and redeemed records (up to max). */
mp_status mpb_compact(mpb *b, uint64_t now, size_t max, size_t *removed);

#endif
