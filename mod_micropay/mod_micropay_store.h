/*
 * mod_micropay_store.h - the vendor's durable state in LMDB.
 *
 * Why LMDB: an embedded, memory-mapped ACID store with no server, shared by
 * every Apache process through one file and a robust lock (a child killed
 * while it holds the write lock does not wedge the others), readers that
 * never block, and copy-on-write commits, so a crash never leaves a torn
 * record. It is Debian's liblmdb.
 *
 * Durability: by default commits are not fsync'ed (MDB_NOSYNC|MDB_WRITEMAP):
 * a committed transaction is in the shared file mapping the moment commit
 * returns, so it survives the death of any process (kill -9, graceful or
 * full restarts); only an OS crash or power loss can lose the last
 * seconds, and mps_sync() (run periodically) bounds that. MPS_SYNC makes
 * every commit durable against power loss too, at ~200 us a payment.
 *
 * What is stored (each record carries its expiry, and an expiry index lets
 * compaction delete it later):
 *   spent Millicent scrip   vendor, scrip id -> expiry, req_sig, reply
 *   PayWord trackers        commitment id    -> mp_pw_track record + commitment record
 *   earnings ledger         day, scheme, path -> units, count
 *   price table             vendor, path     -> amount (mpadmin writes it)
 *   id blocks               change-id counter per vendor and series
 *
 * The store is never created implicitly: a missing store must fail
 * closed, because a fresh empty store would accept replays of everything
 * already spent. mps_create() (mpadmin store init) makes it.
 *
 * Thread safety: an mps handle may be used by several threads at once
 * (LMDB's MDB_NOTLS is set); it must be opened after fork (child_init),
 * never inherited across fork.
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
#define MPS_SYNC   0x02    /* fsync every commit */

#define MPS_MAP_SIZE_DEFAULT (1024UL * 1024 * 1024)   /* 1 GiB of address space */

/* Creates an empty store in dir (which must exist), format version 1;
 * MP_ERR_STORE if one is already there. uid/gid (-1: unchanged) become
 * the owner of the files so the Apache user can write them. */
mp_status mps_create(const char *dir, long uid, long gid, char *err, size_t errlen);

/* Opens an existing store. A missing, unreadable, foreign or corrupt
 * store gives MP_ERR_STORE with the reason in err. */
mp_status mps_open(const char *dir, unsigned flags, mps **out, char *err, size_t errlen);
void mps_close(mps *s);
const char *mps_errmsg(const mps *s);      /* last failure, for logs */
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

/*
 * Spends scrip id of vendor atomically, recording its req_sig and the
 * encoded reply (so a retry gets the same change) and the earning.
 *   not spent before            -> MP_OK, *retry = 0
 *   spent with the same req_sig -> MP_OK, *retry = 1, stored reply copied
 *                                  into reply_out (nothing recorded again)
 *   spent with another req_sig  -> MP_ERR_SPENT
 *   store failure               -> MP_ERR_STORE
 * reply_out has room for MP_WIRE_MAX bytes; *reply_out_len is set on retry.
 */
mp_status mps_mc_spend(mps *s, const char *vendor, uint64_t scrip_id, uint64_t expiry,
                       const uint8_t req_sig[MP_HASH_LEN],
                       const uint8_t *reply, size_t reply_len, const mps_earning *earn,
                       int *retry, uint8_t *reply_out, size_t *reply_out_len);

/* Reserves count consecutive change ids in series for vendor: *first is
 * the first; ids never repeat, even across restarts. */
mp_status mps_reserve_ids(mps *s, const char *vendor, uint16_t series, uint32_t count,
                          uint64_t *first);

/* ---- PayWord ---------------------------------------------------------------- */

/* The tracker of a commitment: MP_ERR_UNKNOWN_COMMITMENT when absent. */
mp_status mps_pw_get(mps *s, const uint8_t commit_id[MP_HASH_LEN], mp_pw_track *out);

/* Registers a verified commitment with a fresh tracker; a no-op (MP_OK)
 * when it is already known. Keeps the commitment record for redemption. */
mp_status mps_pw_register(mps *s, const mp_pw_commit *c, const mp_pw_track *fresh,
                          uint64_t keep_until);

/* Replaces the tracker if the stored one still has version
 * expect_version: MP_ERR_SPENT is never returned here; a changed version
 * gives MP_ERR_BUSY (the caller re-reads and re-decides). The earning is
 * recorded in the same transaction. */
mp_status mps_pw_update(mps *s, uint64_t expect_version, const mp_pw_track *next,
                        const mps_earning *earn);

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

typedef int (*mps_ledger_cb)(void *ctx, uint32_t day, uint8_t scheme, const char *path,
                             uint64_t units, const char *cur, uint64_t count);
mp_status mps_ledger_list(mps *s, mps_ledger_cb cb, void *ctx);

/* Deletes up to max records whose time has come: spent scrip at its
 * expiry, PayWord trackers and their commitments at keep_until (which
 * leaves time to redeem them). *removed gets the count. */
mp_status mps_compact(mps *s, uint64_t now, size_t max, size_t *removed);

/* Runs mps_compact when the last compaction (recorded in the store) is
 * older than interval seconds; cheap (one read) otherwise. */
mp_status mps_maybe_compact(mps *s, uint64_t now, uint64_t interval, size_t *removed);

/* Counts of records, for tests and mpadmin. */
typedef struct { size_t spent, pw, prices, ledger, expiry_index; } mps_stats;
mp_status mps_stat(mps *s, mps_stats *out);

#endif
