/*
 * mod_micropay_store.h - the vendor's durable state in LMDB.
 *
 * Why LMDB: an embedded, memory-mapped ACID store with no server, shared by
 * every Apache process through one file and a robust lock (a child killed
 * while it holds the write lock does not wedge the others), readers that
 * never block, and copy-on-write commits, so a crash never leaves a torn
 * record. It is Debian's liblmdb.
 *
 * Durability: commits land in the shared file mapping (MDB_WRITEMAP) the
 * moment commit returns, so they survive the death of any process (kill
 * -9, graceful or full restarts). By default the data pages of a commit
 * are flushed to disk before its meta page is written (MDB_NOMETASYNC):
 * an operating system crash or power loss can undo the last commit (its
 * meta page is flushed by the next one), never leave a torn store; one
 * flush per commit (about 0.8 ms a payment on the test VM's disk;
 * docs/mod_micropay.md has the figures). MPS_SYNC flushes the meta page
 * too (two flushes): nothing committed is lost. MDB_NOSYNC is not
 * offered: without the ordered flush, a crash can write a meta page
 * naming pages that never reached the disk.
 *
 * Damage: every record's value carries a CRC-32C of the table, the key
 * and the value, checked on every read; a lookup that finds nothing also
 * checks the records either side of the key, where a record whose key was
 * damaged still sits, so damage fails the call (MP_ERR_STORE, the message
 * names the table) instead of making spent scrip look unspent. Compaction
 * checks before it deletes. Every open reads the file's meta and root
 * pages itself before LMDB follows them; mps_verify walks everything.
 *
 * Time: a payment is decided at the clock read inside the write
 * transaction that records it, never at an earlier one (a request whose
 * body is slow would otherwise be decided at a time long gone): scrip or
 * a commitment whose expiry has passed by then is refused (MP_ERR_EXPIRED).
 * What makes a payment spent (a spent mark, a PayWord tracker) is kept at
 * least until its expiry + MPS_MARGIN, whatever the redemption grace says;
 * the grace only lengthens that.
 *
 * What is stored (each record carries its expiry, and an expiry index lets
 * compaction delete it later):
 *   spent Millicent scrip   vendor, scrip id -> expiry, req_sig, reply, and for the
 *                           deposit at the broker the payment, its request and a
 *                           "deposited" flag; for retries the time it was accepted
 *                           and the SHA-256 of the request body
 *   PayWord trackers        commitment id    -> mp_pw_track record + commitment record
 *                                               + highest word redeemed at the broker
 *   PayWord retry records   commitment id, i -> k, w_i, request tag, accepted time:
 *                           every accepted payment, for MPS_RETRY_KEEP seconds
 *   earnings ledger         day, scheme, path -> units, count
 *   price table             vendor, path     -> amount (mpadmin writes it)
 *   id blocks               change-id counter per vendor and series
 *
 * Format 4 (format 3 plus the retry records and the spends' accepted time
 * and body digest; format 3 added the checksums to format 2); mps_open
 * refuses formats 3 and 2 with the command that converts them
 * (mps_upgrade, mpadmin store upgrade), and format 1 as "wrong version".
 *
 * The store is never created implicitly: a missing store must fail
 * closed, because a fresh empty store would accept replays of everything
 * already spent. mps_create() (mpadmin store init) makes it.
 *
 * Thread safety: an mps handle may be used by several threads at once
 * (LMDB's MDB_NOTLS is set); it must be opened after fork (child_init),
 * never inherited across fork. A process opens a store once: opening the
 * same directory again, however spelled (device and inode decide), gives
 * the same handle, and each mps_open needs its mps_close. A handle adopts
 * a map that another process grew (MDB_MAP_RESIZED).
 *
 * Plain C + LMDB + libmp: no APR, so mpadmin links it too. Errors are
 * mp_status values; MP_ERR_STORE (reason "internal", HTTP 500) covers every
 * store failure, with a message in the handle (mps_errmsg()).
 */
#ifndef MOD_MICROPAY_STORE_H
#define MOD_MICROPAY_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "mp.h"

typedef struct mps mps;

#define MPS_RDONLY 0x01    /* mpadmin reporting */
#define MPS_SYNC   0x02    /* flush the meta page of every commit too */

#define MPS_MAP_SIZE_DEFAULT (1024UL * 1024 * 1024)   /* 1 GiB of address space */

/* Seconds a spent mark or a PayWord tracker outlives its expiry: covers
 * requests still being read when the mark would go, clock steps between
 * processes and the spec's clock skew, many times over (the broker's
 * MPB_MARGIN is the same). docs/PROTOCOL.md 6.3 and 7.5. */
#define MPS_MARGIN (3600)

/* Test-only: every handle of this process reads *now instead of the
 * system clock for the decisions above while now is not NULL (the tests'
 * fake clock); NULL restores the system clock. mod_micropay and mpadmin
 * never call it. */
void mps_test_clock(const uint64_t *now);

/* Creates an empty store in dir (which must exist), format version 4;
 * MP_ERR_STORE if one is already there. uid/gid (-1: unchanged) become
 * the owner of the files so the Apache user can write them. Its file is
 * MPS_MAP_SIZE_DEFAULT (sparse). */
mp_status mps_create(const char *dir, long uid, long gid, char *err, size_t errlen);

/* Opens an existing store. A missing, unreadable, foreign, older-format
 * or damaged (meta or root pages) store gives MP_ERR_STORE with the
 * reason in err. map_size: bytes of address space the store may fill;
 * never less than its file already is, since a writer's map sets the
 * file's size and a smaller one would cut it under the other processes.
 * 0: the file's size, for tools: the servers' map size stays what they
 * set (a tool's larger map would grow the file past theirs). */
mp_status mps_open(const char *dir, unsigned flags, size_t map_size, mps **out, char *err,
                   size_t errlen);
void mps_close(mps *s);
/* LMDB reader slots of every store, vendor or broker, this process opens
 * from now on (each concurrent read transaction takes one): n, at least
 * 1024. Call before the first open (Apache: in the parent, before the
 * children fork). Returns the value in force. */
unsigned mps_set_max_readers(unsigned n);
const char *mps_errmsg(const mps *s);      /* last failure, for logs */
/* 1 when the calling thread's last failure was the store being full (its
 * map size reached), for callers that log that more sparingly. */
int mps_full(const mps *s);
mp_status mps_sync(mps *s);

/* ---- Millicent ------------------------------------------------------------ */

/* One earnings ledger line, added in the same transaction as a spend. */
typedef struct {
    uint64_t    time;        /* request time; the ledger keeps per UTC day */
    uint8_t     scheme;      /* MP_SCHEME_MILLICENT or MP_SCHEME_PAYWORD */
    const char *path;        /* URL path (no query), <= MP_TARGET_MAX */
    size_t      path_len;
    mp_amount   amount;
} mps_earning;

/* What a retry is judged by (docs/PROTOCOL.md 6.3, 7.5): the clock of
 * the decision, the retry window in force for the location now (0: no
 * retries; at most MPS_RETRY_WINDOW_MAX) and the SHA-256 of the request's
 * body (of the empty string for a request without one). */
typedef struct {
    uint64_t       now;
    uint32_t       window;
    const uint8_t *body_digest;     /* MP_HASH_LEN bytes */
} mps_retry;

#define MPS_RETRY_WINDOW_MAX 3600
/* Retries answered per payment at most: a retry runs the handler again,
 * so one payment runs it at most 1 + MPS_RETRY_MAX times. A lost answer
 * needs one; a few cover a flaky network. */
#define MPS_RETRY_MAX 3
/* Retry records outlive the longest window by a margin, so that a window
 * raised since never finds one already gone. */
#define MPS_RETRY_KEEP       (MPS_RETRY_WINDOW_MAX + 300)

/*
 * Spends scrip id of vendor atomically, recording its req_sig and the
 * encoded reply (so a retry gets the same change), what the vendor needs
 * to deposit the scrip at its broker later (docs/PROTOCOL.md 8.6), and
 * the earning, all in one write transaction.
 *   expiry        the scrip's expiry: a new spend is refused
 *                 (MP_ERR_EXPIRED) when the clock read in the write
 *                 transaction has reached it; the record answers retries
 *                 and refuses double spending until expiry + MPS_MARGIN
 *   keep_until    while the spend is not deposited, compaction keeps it
 *                 until this time (expiry + the redemption grace; a value
 *                 below expiry + MPS_MARGIN counts as that); once deposited
 *                 (mps_mc_mark_deposited) it goes at expiry + MPS_MARGIN
 *   payment       the encoded mc_payment record as received, 1..MP_WIRE_MAX bytes
 *   req           the request the payment was made for: method 1..MP_METHOD_MAX,
 *                 host 0..MP_HOST_MAX, target 1..MP_TARGET_MAX bytes of visible
 *                 ASCII, as bound into req_sig (the broker re-checks req_sig)
 *   rt            rt->now is recorded as the time of acceptance, with the body
 *                 digest; rt also judges a spend found already there
 * Outcomes:
 *   not spent before            -> MP_OK, *retry = 0
 *   spent, and this is a retry  -> MP_OK, *retry = 1, stored reply copied
 *   of it (see mps_mc_find)        into reply_out (the retry counted)
 *   spent otherwise             -> MP_ERR_SPENT
 *   not spent, expired by now   -> MP_ERR_EXPIRED (nothing recorded)
 *   store failure               -> MP_ERR_STORE
 * reply_out has room for MP_WIRE_MAX bytes; *reply_out_len is set on retry.
 */
mp_status mps_mc_spend(mps *s, const char *vendor, uint64_t scrip_id, uint64_t expiry,
                       uint64_t keep_until, const uint8_t req_sig[MP_HASH_LEN],
                       const uint8_t *payment, size_t payment_len, const mp_request *req,
                       const uint8_t *reply, size_t reply_len, const mps_earning *earn,
                       const mps_retry *rt, int *retry, uint8_t *reply_out,
                       size_t *reply_out_len);

/*
 * The retry test of a Millicent payment, before any other check (a retry
 * recovers the answer of a payment accepted when it was made, whatever
 * the price or the clock says now). A read, and a write only to count a
 * retry it answers (MPS_RETRY_MAX at most); the spend re-checks.
 *   scrip id not spent             -> MP_OK, *retry = 0
 *   spent by the byte-identical    -> MP_OK, *retry = 1, the stored reply in
 *   payment for the same method,      reply_out (room for MP_WIRE_MAX bytes)
 *   host, target (req) and body
 *   digest, rt->now < accepted
 *   time + rt->window
 *   spent otherwise (another        -> MP_ERR_SPENT
 *   payment, request or body, past
 *   the window, MPS_RETRY_MAX retries
 *   answered, a spend of format 3)
 */
mp_status mps_mc_find(mps *s, const char *vendor, uint64_t scrip_id, const uint8_t *payment,
                      size_t payment_len, const mp_request *req, const mps_retry *rt,
                      int *retry, uint8_t *reply_out, size_t *reply_out_len);

/* Calls cb for every spend of vendor not yet deposited, in scrip id order,
 * with the stored payment record and its request (NUL-terminated; host may
 * be empty). The pointers are valid during the call only. A non-zero
 * return from cb stops the listing (MP_OK). Runs in one read transaction. */
typedef int (*mps_deposit_cb)(void *ctx, uint64_t scrip_id, const uint8_t *payment,
                              size_t payment_len, const char *method, const char *host,
                              const char *target);
mp_status mps_mc_list_undeposited(mps *s, const char *vendor, mps_deposit_cb cb, void *ctx);

/* Marks the spends ids[0..n-1] of vendor as deposited, in one write
 * transaction: they leave mps_mc_list_undeposited and compaction may drop
 * them at the scrip's expiry + MPS_MARGIN. Idempotent: ids already deposited, or no
 * longer stored, are skipped. */
mp_status mps_mc_mark_deposited(mps *s, const char *vendor, const uint64_t *ids, size_t n);

/* Reserves count consecutive change ids in series for vendor: *first is
 * the first; ids never repeat, even across restarts. */
mp_status mps_reserve_ids(mps *s, const char *vendor, uint16_t series, uint32_t count,
                          uint64_t *first);

/* ---- PayWord ---------------------------------------------------------------- */

/* The tracker of a commitment: MP_ERR_UNKNOWN_COMMITMENT when absent. */
mp_status mps_pw_get(mps *s, const uint8_t commit_id[MP_HASH_LEN], mp_pw_track *out);

/* An accepted PayWord payment, kept for its retries. */
typedef struct {
    uint32_t       i, k;
    const uint8_t *w;               /* w_i, MP_HASH_LEN bytes */
    const uint8_t *tag;             /* mp_request_tag(), MP_PW_TAG_LEN bytes */
    uint64_t       accepted_at;
} mps_pw_paid;

/*
 * Records an accepted PayWord payment: the tracker next replaces the
 * stored one, with the earning, in one write transaction, when the stored
 * tracker still has version expect_version; else MP_ERR_BUSY (the caller
 * re-reads and decides again, or passes decide). MP_ERR_SPENT is never
 * returned here for a stale version.
 *   first       NULL, or the verified commitment the payment carried: when
 *               its id is not stored yet, this transaction registers it
 *               (tracker, commitment record, kept until keep_until, below
 *               expiry + MPS_MARGIN counting as that) with its first
 *               payment, and expect_version is the fresh tracker's
 *               (mp_pw_track_init). A commitment is stored only with a
 *               payment that was accepted: a failed one leaves nothing.
 *               NULL and unknown: MP_ERR_UNKNOWN_COMMITMENT.
 *   next        the tracker after the payment (its commit_id names the
 *               commitment), decided against version expect_version
 *   decide      NULL, or decides under the store's write lock when the
 *               stored version is not expect_version:
 *               called with the stored (or fresh) tracker and the clock of
 *               the transaction, it fills *out and *retry as
 *               mp_pw_track_accept does; an error is returned as is, and a
 *               retry writes nothing (MP_OK, *retry = 1)
 *   paid        NULL, or the payment accepted, whose retry record is written
 *               in the same transaction and kept until paid->accepted_at +
 *               MPS_RETRY_KEEP (not when decide finds a retry)
 *   retry       may be NULL when decide is NULL; set on success
 * The payment is refused (MP_ERR_EXPIRED, nothing written) when the clock
 * read in the transaction has reached the commitment's expiry.
 */
typedef mp_status (*mps_pw_decide_fn)(void *ctx, const mp_pw_track *cur, uint64_t now,
                                      mp_pw_track *out, int *retry);
mp_status mps_pw_update(mps *s, const mp_pw_commit *first, uint64_t keep_until,
                        uint64_t expect_version, const mp_pw_track *next,
                        mps_pw_decide_fn decide, void *ctx, const mps_earning *earn,
                        const mps_pw_paid *paid, int *retry);

/*
 * The retry test of a PayWord payment (i, k, w) of commitment commit_id
 * for the request whose tag is tag, from the retry records alone:
 *   word i never accepted (or its   -> MP_OK, *retry = 0
 *   record compacted)
 *   the same i, k, w and tag, now < -> MP_OK, *retry = 1, the retry
 *   accepted time + window, fewer      counted in a write transaction
 *   than MPS_RETRY_MAX retries
 *   answered before
 *   word i accepted otherwise       -> MP_ERR_SPENT
 */
mp_status mps_pw_retry_find(mps *s, const uint8_t commit_id[MP_HASH_LEN], uint32_t i,
                            uint32_t k, const uint8_t w[MP_HASH_LEN],
                            const uint8_t tag[MP_PW_TAG_LEN], uint64_t now, uint32_t window,
                            int *retry);

/* Calls cb for every PayWord tracker: the commitment record as registered,
 * the highest accepted word l and w_l (what a redeem record claims) and
 * the highest word already redeemed at the broker (0 when none). Pointers
 * are valid during the call only; a non-zero return stops the listing.
 * Runs in one read transaction. */
typedef int (*mps_pw_list_cb)(void *ctx, const uint8_t *commit, size_t commit_len,
                              uint32_t last, const uint8_t w_last[MP_HASH_LEN],
                              uint32_t redeemed_last);
mp_status mps_pw_list(mps *s, mps_pw_list_cb cb, void *ctx);

/* Records that the broker credited the commitment's words up to last; the
 * stored value only grows (a smaller last is MP_OK and changes nothing).
 * MP_ERR_UNKNOWN_COMMITMENT when absent (e.g. compacted), MP_ERR_ARG when
 * last is above the tracker's l (words never accepted cannot be redeemed). */
mp_status mps_pw_mark_redeemed(mps *s, const uint8_t commit_id[MP_HASH_LEN], uint32_t last);

/* ---- prices ------------------------------------------------------------------ */

/* The price of path for vendor: an exact entry, else the longest entry
 * that ends in '/' and is a prefix of path. *found = 0 when none. */
mp_status mps_price_get(mps *s, const char *vendor, const char *path, size_t path_len,
                        mp_amount *out, int *found);
mp_status mps_price_set(mps *s, const char *vendor, const char *path, const mp_amount *a);
/* MP_ERR_ARG when there is no such entry. */
mp_status mps_price_del(mps *s, const char *vendor, const char *path);
typedef int (*mps_price_cb)(void *ctx, const char *path, const mp_amount *a);
mp_status mps_price_list(mps *s, const char *vendor, mps_price_cb cb, void *ctx);

/* ---- ledger and maintenance --------------------------------------------------- */

/* Paid paths are any string (path info): the ledger keeps at most
 * MPS_LEDGER_DAY_LINES lines a UTC day, and counts further paths of that
 * day under the path "*" (one line per scheme and currency); compaction
 * rolls every day more than MPS_LEDGER_KEEP_DAYS days before now up into
 * those "*" lines. Totals and counts per day, scheme and currency stay
 * exact through both. */
#define MPS_LEDGER_DAY_LINES 10000
#define MPS_LEDGER_KEEP_DAYS 31
#define MPS_LEDGER_OTHER     "*"
typedef int (*mps_ledger_cb)(void *ctx, uint32_t day, uint8_t scheme, const char *path,
                             uint64_t units, const char *cur, uint64_t count);
mp_status mps_ledger_list(mps *s, mps_ledger_cb cb, void *ctx);

/* Deletes up to max records whose time has come: spent scrip at its
 * keep_until, or at its expiry + MPS_MARGIN once deposited; PayWord
 * trackers and their commitments at keep_until (which leaves time to
 * redeem them). *removed gets the count. Also rolls up to max ledger
 * lines of old days (see MPS_LEDGER_KEEP_DAYS; not counted in *removed). */
mp_status mps_compact(mps *s, uint64_t now, size_t max, size_t *removed);

/* Records one mps_maybe_compact removes at most, in one write
 * transaction: *removed equal to it means a backlog is left, and the next
 * call (due at once) goes on with it. */
#define MPS_COMPACT_BATCH 1000

/* Runs mps_compact when the last compaction (recorded in the store) is
 * older than interval seconds; cheap (one read) otherwise. */
mp_status mps_maybe_compact(mps *s, uint64_t now, uint64_t interval, size_t *removed);

/* Counts of records, for tests and mpadmin. */
typedef struct { size_t spent, pw, prices, ledger, expiry_index, retry; } mps_stats;
mp_status mps_stat(mps *s, mps_stats *out);

/* ---- checking and upgrading -------------------------------------------------------- */

#define MPS_NTABLES 8       /* meta, spent, pw, ledger, prices, ids, expiry, retry */

typedef struct {
    const char *name;
    uint64_t    records;    /* records read */
    uint64_t    damaged;    /* of them: checksum mismatch, unparsable, no index entry */
} mps_table_report;

typedef struct {
    mps_table_report tables[MPS_NTABLES];
    uint64_t problems;          /* everything found, LMDB's pages included; 0: clean */
    uint64_t pages;             /* pages of the file in use (last + 1) */
    uint64_t pages_read;
    uint64_t pages_free;
    uint64_t pages_unaccounted; /* neither used nor free: lost space, not damage */
    int      complete;          /* every page and record was read */
} mps_report;

/* A problem: its table ("file" for LMDB's pages and free list), the key
 * of the record (NULL when none) and what is wrong. */
typedef void (*mps_damage_cb)(void *ctx, const char *table, const uint8_t *key,
                              size_t key_len, const char *what);

/*
 * Checks the store in dir, read-only, in one read transaction (safe while
 * Apache runs): the pages of the file as LMDB would follow them (meta,
 * branch, leaf and overflow pages inside the file and of their kind, keys
 * in order and within what their parents route to them, counts, the free
 * list), then every record's checksum and format, and that every spent
 * record and tracker has its expiry index entry. leaf_budget 0 reads
 * everything; else at most about that many leaf pages, spread evenly
 * (every branch page still), and out->complete is 0 when it sampled.
 * MP_OK when the check ran: out->problems says what it found (a store
 * whose meta or root pages are damaged gives one problem, the reason).
 * MP_ERR_STORE (reason in err) when it could not run: missing, foreign,
 * older format.
 */
mp_status mps_verify(const char *dir, uint64_t leaf_budget, mps_damage_cb cb, void *ctx,
                     mps_report *out, char *err, size_t errlen);

/*
 * Converts a format-3 or format-2 store to format 4 in place. Format 3:
 * the pages and every record are checked, the retry table is added and
 * the format changes in one commit (its spends have no accepted time and
 * are never answered as retries); *converted counts the records checked.
 * Format 2: every record gets its checksum, in transactions of 2000
 * records; the format says "2-3" while it runs, which every version
 * refuses, and a run that stopped goes on where it was. Refused
 * (MP_ERR_BUSY) while any process has the store open; refused
 * (MP_ERR_STORE) when a record does not parse or the pages do not hold,
 * since checksums would bless the damage. *already = 1 for a format-4
 * store (nothing done); *converted counts the records.
 */
mp_status mps_upgrade(const char *dir, uint64_t *converted, int *already, char *err,
                      size_t errlen);

#endif
