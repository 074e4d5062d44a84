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
 *   spent       (no longer written; older stores' entries are compacted away)
 *   redeemed    32 commitment id -> u32 last word credited | u64 keep_until [| 32 word]
 *   cert        u64 serial -> the credit a PayWord certificate reserved (mpb_cert)
 *   certdue     index of the unreleased certificates by release time
 *   expiry      index for compaction, as in the vendor store
 *   issued      issuer NUL u64 scrip id -> every scrip the broker minted (mpb_issued)
 *   issuedue    index of the issued records by release time
 *   totals      currency NUL name -> u64 units: the ledger's running totals
 * A store made before the later tables existed gets them on its first
 * writable open; opened read-only, it simply has no records in them.
 *
 * Money is created only by mpb_total_add(.., MPB_TOTAL_CREDITED, ..) with
 * the account credit in the same transaction: every other movement takes
 * from one place what it puts in another. Scrip is money only while its
 * issued record is outstanding: the broker accepts (exchanges, credits on
 * deposit) no scrip without one, whatever its stamp says, because the
 * stamping secrets of delegated series are also held by the vendor.
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
    int       key_series;                 /* the account secret series key_enc is wrapped
                                           * under, 0..65535; -1 for accounts made before
                                           * the series was recorded (try each) */
    uint64_t  created;
} mpb_account;

mp_status mpb_create(const char *dir, long uid, long gid, char *err, size_t errlen);
/* map_size: bytes of address space the store may fill, 0 for the default
 * (1 GiB); never less than its data file already is. */
mp_status mpb_open(const char *dir, int rdonly, size_t map_size, mpb **out, char *err,
                   size_t errlen);
void mpb_close(mpb *b);
const char *mpb_errmsg(void);

/* Binds the store to one broker: the first call records name and the
 * redemption deadline in the store, later calls must give the same.
 * Customer ids, stored answers and certificate release times are the
 * store's, so two brokers (or one renamed, or with another deadline) on
 * one store would hand one account's secrets to another or release
 * credit early. MP_ERR_ARG on a mismatch (mpb_errmsg says what is
 * recorded), MP_ERR_STORE. */
mp_status mpb_bind(mpb *b, const char *name, uint64_t redeem_deadline);

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

/*
 * Issued scrip. The broker writes one record for every scrip it mints
 * (broker scrip at /buy and as /exchange change, vendor scrip at
 * /exchange), in the transaction that debits what paid for it. The record,
 * not the stamp, is what makes scrip worth something at the broker.
 */
#define MPB_MARGIN (3600)   /* seconds records outlive the last moment they can be used:
                             * clock steps between processes and hosts, and the spec's
                             * SKEW, many times over */

typedef enum { MPB_SCRIP_BROKER = 1, MPB_SCRIP_VENDOR = 2 } mpb_scrip_kind;

typedef struct {
    char      issuer[MP_NAME_MAX + 1];     /* the scrip's vendor field */
    uint64_t  id;                          /* the scrip id */
    uint8_t   kind;                        /* mpb_scrip_kind */
    uint8_t   used;                        /* 0 outstanding, 1 exchanged or deposited */
    char      account[MPB_ACCOUNT_MAX + 1];/* whom it was sold to: a lapse goes back there */
    mp_amount value;                       /* the scrip's value, > 0 */
    uint64_t  expiry;                      /* the scrip's expiry */
    uint64_t  use_until;                   /* usable (exchanged, deposited) while
                                            * now < use_until; >= expiry */
    uint64_t  release_at;                  /* use_until + MPB_MARGIN: the record goes,
                                            * an outstanding value back to account */
} mpb_issued;

/* Writes a new record (copied). MP_ERR_ARG, writing nothing, for an
 * invalid one (empty issuer, value 0, use_until < expiry, release_at <
 * use_until + MPB_MARGIN, used set) or when issuer and id already have a
 * record: ids are never reused, so that would be a minting bug. */
mp_status mpb_issued_put(mpb_txn *t, const mpb_issued *s);

/* *found = 0 when there is no record (never issued by this broker, or
 * released). MP_ERR_STORE for a damaged record. */
mp_status mpb_issued_get(mpb_txn *t, const char *issuer, uint64_t id, mpb_issued *out,
                         int *found);

/* Uses the record of (issuer, id) at time now, the clock read inside this
 * write transaction: MP_ERR_FORGED when there is none (the broker never
 * issued it, whatever its stamp), MP_ERR_EXPIRED when now >= use_until,
 * MP_ERR_SPENT when it was used; otherwise marks it used and copies it to
 * *out. The transaction stays usable after any of these refusals. */
mp_status mpb_issued_use(mpb_txn *t, const char *issuer, uint64_t id, uint64_t now,
                         mpb_issued *out);

/* One record released by mpb_issued_release. */
typedef struct {
    char      account[MPB_ACCOUNT_MAX + 1];
    uint8_t   kind;
    mp_amount returned;                    /* the value of outstanding scrip, now back in
                                            * the account's balance; 0 for used scrip */
} mpb_lapse;

/* Releases up to max records due at now (release_at <= now) in one write
 * transaction of its own: an outstanding record's value goes back to its
 * account's balance, then the record and its index entry are deleted. A
 * record whose value cannot go back (no such account, another currency,
 * a balance at MP_AMOUNT_MAX) stays, so that nothing is destroyed, and is
 * tried again a day later (it never blocks the records behind it). out
 * (may be NULL) gets one entry per record released; *n their number, 0
 * unless everything committed; *more (may be NULL) = 1 when max index
 * entries were read, so more may be due. */
mp_status mpb_issued_release(mpb *b, uint64_t now, mpb_lapse *out, size_t max, size_t *n,
                             int *more);

/*
 * The ledger's running totals, per currency, in units.
 *   MPB_TOTAL_CREDITED  money put into accounts from outside (mpadmin accounts credit,
 *                       and at the upgrade of an older store what it held then)
 *   MPB_TOTAL_WITHDRAWN money paid out of accounts (mpadmin accounts debit)
 *   MPB_TOTAL_REDEEMED  credited to vendor accounts by /redeem (a flow, for the report)
 */
#define MPB_TOTAL_CREDITED  "credited"
#define MPB_TOTAL_WITHDRAWN "withdrawn"
#define MPB_TOTAL_REDEEMED  "redeemed"
/* Adds a to the total (MP_ERR_OVERFLOW above MP_AMOUNT_MAX, writing nothing). */
mp_status mpb_total_add(mpb_txn *t, const char *name, const mp_amount *a);

/* Conservation, per currency (mpadmin broker audit):
 *   credited - withdrawn = customer balances + reserved + vendor balances
 *                          + outstanding broker scrip + outstanding vendor scrip */
typedef struct {
    char     cur[4];
    uint64_t credited, withdrawn, redeemed;
    uint64_t customer_balance, reserved, vendor_balance;
    uint64_t broker_scrip, vendor_scrip;         /* issued, outstanding */
    uint64_t broker_scrip_n, vendor_scrip_n;     /* how many such records */
    int      balanced;                           /* the equation holds exactly */
} mpb_audit_row;
#define MPB_AUDIT_CURRENCIES 16
/* Reads the whole store in one read (or write) transaction: a consistent
 * picture. rows: room for MPB_AUDIT_CURRENCIES; *n rows filled, sorted by
 * currency. MP_ERR_OVERFLOW when a sum leaves 64 bits or more currencies
 * appear; MP_ERR_STORE for damage. */
mp_status mpb_audit(mpb_txn *t, mpb_audit_row *rows, size_t *n);

/* Highest PayWord word credited for a commitment: *last = 0 when none.
 * word (may be NULL) gets that word when the record holds it (*have_word,
 * may be NULL, = 1): the next redemption is proven from it, so a vendor
 * pays in hashing only for the words it adds. Records written before the
 * word was kept hold none. */
mp_status mpb_redeemed_get(mpb_txn *t, const uint8_t commit_id[MP_HASH_LEN], uint32_t *last,
                           uint8_t *word, int *have_word);
/* word: w_last, the proven word at last (may be NULL: none kept). */
mp_status mpb_redeemed_put(mpb_txn *t, const uint8_t commit_id[MP_HASH_LEN], uint32_t last,
                           const uint8_t *word, uint64_t keep_until);

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
