/*
 * wp_store.h - the wallet store: one LMDB environment in
 * <state_dir>/wallet.lmdb (directory 0700, files 0600), fully synced
 * (every commit reaches the disk before it returns), because it holds money.
 *
 * Records are JSON objects (compact text) under binary keys; the record
 * layouts are the engine's business (docs/wallet-proxy.md, "Wallet store and
 * recovery"). This file knows tables, keys and transactions only.
 *
 * Threading: the store handle is shared by all threads (MDB_NOTLS). A
 * transaction belongs to the thread that began it. LMDB serialises write
 * transactions itself; the engine additionally holds its wallet mutex around
 * every read-modify-write (wp_engine.h).
 *
 * Errors: functions return -1 and leave a message for the calling thread in
 * wp_store_error() (never containing record contents).
 */
#ifndef WP_STORE_H
#define WP_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

typedef struct wp_store wp_store;
typedef struct wp_txn wp_txn;

/* The tables. Keys are described in wp_engine.h next to each record. */
enum {
    WPS_META = 0,  /* format, counters, policy, PayWord key and certificate */
    WPS_SCRIP,     /* broker and vendor scrip pieces */
    WPS_SECRET,    /* customer secrets per (issuer, customer_id) */
    WPS_CHAIN,     /* PayWord chains and their commitments */
    WPS_INFLIGHT,  /* payments whose credential may have been sent */
    WPS_BREQ,      /* broker requests written before they are sent */
    WPS_RECEIPT,   /* receipts per (host, target) */
    WPS_OFFER,     /* offers kept for paying up front */
    WPS_HOLD,      /* held, approved and declined payments */
    WPS_HISTORY,   /* payment attempts by sequence number */
    WPS_SPENT,     /* spent-per-day counters */
    WPS_NTABLES
};

/* Opens (creating the directory and tables on first use) the store.
 * map_size 0 means 64 MiB. *out on success; -1 with err otherwise. */
int wp_store_open(const char *state_dir, size_t map_size, wp_store **out, char *err,
                  size_t errlen);
void wp_store_close(wp_store *s);

/* Transactions. commit and abort free t whatever happens; commit returns 0
 * only when the data is on disk. */
int wp_store_begin(wp_store *s, int rdonly, wp_txn **out);
int wp_store_commit(wp_txn *t);
void wp_store_abort(wp_txn *t);

/* *out gets a new reference. 0 found, 1 absent, -1 error (a record that is
 * not a JSON object counts as an error). */
int wp_store_get(wp_txn *t, int table, const void *key, size_t klen, json_t **out);
/* Writes val (a JSON object). The text buffer is wiped after use, since
 * records may hold secrets. 0 or -1. */
int wp_store_put(wp_txn *t, int table, const void *key, size_t klen, const json_t *val);
/* Deletes; an absent key is not an error. 0 or -1. */
int wp_store_del(wp_txn *t, int table, const void *key, size_t klen);

/* Calls fn for every record whose key starts with prefix (plen 0: all), in
 * key order; val is borrowed for the call. fn returns 0 to go on, 1 to stop,
 * -1 for an error that ends the scan with -1. A record that does not parse
 * ends the scan with -1. reverse != 0 walks backwards (prefix must then be
 * empty). Returns 0 or -1. */
/* Number of records in table (O(1): LMDB keeps the count). 0 or -1. */
int wp_store_count(wp_txn *t, int table, size_t *out);

typedef int (*wp_store_visit)(void *ctx, const uint8_t *key, size_t klen, json_t *val);
int wp_store_scan(wp_txn *t, int table, const void *prefix, size_t plen, int reverse,
                  wp_store_visit fn, void *ctx);

/* A fresh number from a persistent counter (starts at 1) in WPS_META under
 * name. Part of t: it is only used up if t commits. */
int wp_store_next(wp_txn *t, const char *name, uint64_t *out);

/* The calling thread's last store failure ("" when none). */
const char *wp_store_error(void);

#endif
