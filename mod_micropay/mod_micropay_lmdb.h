/*
 * mod_micropay_lmdb.h - the LMDB plumbing the vendor store
 * (mod_micropay_store.c) and the broker store (mod_micropay_bstore.c)
 * share: per-thread error messages, big-endian record encoding, creating
 * and opening a store safely, transactions, prefix cursors and the
 * expiry index with its compaction.
 *
 * What differs between the stores is a parameter, never a branch in here:
 * the mpl_spec (message prefix, format key, tables) and, at the call, the
 * durability flags and the map size. The on-disk layout of every record
 * stays the stores' own business.
 *
 * Plain C + LMDB + libmp, no APR (mpadmin links it). Internal to
 * libmpstore: nothing outside the two store files includes it.
 */
#ifndef MOD_MICROPAY_LMDB_H
#define MOD_MICROPAY_LMDB_H

#include <stddef.h>
#include <stdint.h>
#include <lmdb.h>
#include "mp.h"

#define MPL_MAP_SIZE_DEFAULT ((size_t)1024 * 1024 * 1024)  /* 1 GiB of address space */
#define MPL_MAX_READERS      1024    /* the least reader table mpl_set_max_readers keeps */
#define MPL_MAX_READERS_MAX  1048576 /* 64 MiB of lock file */
#define MPL_KEY_MAX          511     /* LMDB's default key size limit */
#define MPL_MSG_MAX          256

/* Reader slots of every environment this process opens or creates from now
 * on: n, at least MPL_MAX_READERS, at most MPL_MAX_READERS_MAX. Set once,
 * before any store is opened (Apache's parent, before it forks); returns
 * the value in force. A lock file is grown to it by the first process that
 * opens the store while nobody else has it open, never shrunk. */
unsigned mpl_set_max_readers(unsigned n);

/* Each store keeps its own per-thread message, as before they shared code. */
enum { MPL_SLOT_VENDOR, MPL_SLOT_BROKER, MPL_SLOTS };

/* What one kind of store is. Static and constant in each store file. */
typedef struct {
    unsigned           slot;        /* MPL_SLOT_*: whose message buffer */
    const char        *name;        /* "store", "broker store": starts every message */
    const char        *kind;        /* "mod_micropay store": "not a <kind> or wrong version" */
    const char        *create_hint; /* "create it with ...": for a missing store */
    const char        *format;      /* the value of "format" in dbs[0] */
    const char *const *dbs;         /* table names; dbs[0] is the meta table */
    size_t             ndbs;
    size_t             nrequired;   /* dbs[nrequired..ndbs) came later: an older store
                                     * lacks them, and a writable open adds them */
    const char        *added;       /* what those tables are, for messages ("the
                                     * certificate tables"); NULL when there are none */
} mpl_spec;

/* ---- messages --------------------------------------------------------------------- */

/* Per thread rather than per handle: threads share a handle, and a message
 * must belong to the failure the calling thread is about to log. */
__attribute__((format(printf, 2, 3)))
void mpl_msg(const mpl_spec *sp, const char *fmt, ...);
/* The caller's buffer (open and create report there); err may be NULL. */
__attribute__((format(printf, 3, 4)))
void mpl_err(char *err, size_t errlen, const char *fmt, ...);
/* "<name> full (what)" for MDB_MAP_FULL, else "<name> what: <LMDB's reason>". */
mp_status mpl_fail(const mpl_spec *sp, const char *what, int rc);      /* MP_ERR_STORE */
mp_status mpl_corrupt(const mpl_spec *sp, const char *what);           /* MP_ERR_STORE */
mp_status mpl_bad_arg(const mpl_spec *sp, const char *what);           /* MP_ERR_ARG */
/* The calling thread's last message of this kind of store; NULL when none. */
const char *mpl_errmsg(const mpl_spec *sp);
/* 1 when that last failure was the map being full (MDB_MAP_FULL). */
int mpl_full(const mpl_spec *sp);

/* ---- encoding: integers big-endian, so keys sort by number ----------------------- */

static inline void mpl_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void mpl_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void mpl_put_u64(uint8_t *p, uint64_t v)
{
    mpl_put_u32(p, (uint32_t)(v >> 32));
    mpl_put_u32(p + 4, (uint32_t)v);
}

static inline uint16_t mpl_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t mpl_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t mpl_get_u64(const uint8_t *p)
{
    return (uint64_t)mpl_get_u32(p) << 32 | mpl_get_u32(p + 4);
}

static inline MDB_val mpl_val(const void *p, size_t n)
{
    MDB_val v;

    v.mv_size = n;
    v.mv_data = (void *)p;
    return v;
}

/* ---- creating and opening ----------------------------------------------------------- */

/*
 * Creates an empty store in dir (which must exist): every table of sp and
 * the format key. MP_ERR_STORE when one is already there (the data file is
 * claimed with O_EXCL, so of two concurrent creates one fails), and a
 * half-made store is removed again. env_flags: MDB_WRITEMAP or 0, as the
 * store is opened later. uid/gid (-1: unchanged) become the owner of the
 * files; the directory entry is fsync'ed.
 */
mp_status mpl_create(const mpl_spec *sp, const char *dir, long uid, long gid,
                     unsigned env_flags, char *err, size_t errlen);

/*
 * Opens an existing store, never making one: a missing, empty, irregular,
 * truncated, foreign or other-format data file is refused (MP_ERR_STORE,
 * the reason in err), with nothing written to it. Then frees the reader
 * slots of dead processes and opens the tables by name (never with
 * MDB_CREATE, except the later ones of a writable open, see mpl_spec).
 *   rdonly      MDB_RDONLY; env_flags is ignored
 *   env_flags   durability of a writable open: MDB_WRITEMAP, MDB_NOSYNC,
 *               MDB_NOMETASYNC, or 0 for fully synced commits
 *   map_size    bytes of address space, 0 for MPL_MAP_SIZE_DEFAULT. Never
 *               less than the data file already is: a WRITEMAP environment
 *               sets the file to its map size, and a smaller map would cut
 *               the file under processes mapping more of it.
 *   dbis        where the handles of sp->dbs go, in order
 *   complete    may be NULL: 1 when every table is open (0 only for a
 *               read-only open of a store without the later tables)
 * MDB_NOTLS is always set: handles may be shared by threads.
 */
mp_status mpl_open(const mpl_spec *sp, const char *dir, int rdonly, unsigned env_flags,
                   size_t map_size, MDB_env **env, MDB_dbi *const dbis[], int *complete,
                   char *err, size_t errlen);

/* Options of mpl_open_ex; mpl_open is mpl_open_ex with all of them zero
 * but rdonly, env_flags and map_size. */
typedef struct {
    int                rdonly;      /* as mpl_open */
    unsigned           env_flags;   /* as mpl_open */
    size_t             map_size;    /* as mpl_open; see also map_file */
    int                map_file;    /* 1: map the data file's current size (its data when
                                     * smaller), never growing or shrinking it: for tools
                                     * opening a store a server maps at its own size */
    int                check_roots; /* 1: the meta page and the root pages are read from
                                     * the file and checked (mpl_check, MPL_CHECK_ROOTS)
                                     * before LMDB follows a pointer in them */
    const char *const *old_formats; /* format values of older versions this code
                                     * cannot use: refused with old_hint */
    size_t             nold;
    const char        *old_hint;    /* the command that converts such a store; the
                                     * directory is appended: "... mpadmin store upgrade" */
    const char        *format;      /* NULL: sp->format; else the format to accept
                                     * instead (an upgrade opening an old store) */
} mpl_open_opts;

/*
 * mpl_open with options. *damaged (may be NULL) is set to 1 when the open
 * failed because check_roots found the file damaged (the reason in err),
 * 0 for any other outcome.
 */
mp_status mpl_open_ex(const mpl_spec *sp, const char *dir, const mpl_open_opts *o,
                      MDB_env **env, MDB_dbi *const dbis[], int *complete, int *damaged,
                      char *err, size_t errlen);

/* ---- checksums -------------------------------------------------------------------------- */

/* CRC-32C (Castagnoli), continuing crc (0 to start): what a store that
 * wants its records checked stores with them. */
uint32_t mpl_crc32c(uint32_t crc, const void *p, size_t n);

/* ---- checking the file ------------------------------------------------------------------- */

/*
 * mpl_check reads the pages of a store from its file, never through LMDB's
 * pointers, and checks what LMDB relies on without checking: the meta
 * page of the transaction, that every page reachable from it lies inside
 * the file, has the header of what points to it (branch, leaf, overflow)
 * and its own number, is reached once, holds nodes inside the page with
 * keys in order and within the bounds its parent routes to it, leaves all
 * at the tree's depth, overflow chains inside the file; that the counts in
 * each table's record match the tree; that the free list names pages
 * inside the file that nothing uses. A store that passes can be walked by
 * LMDB without a wild read.
 *
 *   MPL_CHECK_ROOTS   the meta page, the main table (the names of the
 *                     tables) and the root page of every table: a few reads,
 *                     for every open
 *   MPL_CHECK_SAMPLE  every branch page, and leaf pages spread evenly up to
 *                     leaf_budget; their records go to rec
 *   MPL_CHECK_FULL    every page and record (leaf_budget is ignored)
 *
 * Works in txn (a read transaction of env, which pins its pages); the meta
 * page of txn must still be in the file: MP_ERR_BUSY when writers have
 * replaced it meanwhile (begin a new transaction and call again).
 * Problems go to dmg (table: one of sp->dbs, or "file" for LMDB's own pages
 * and free list; key: of the record concerned, or NULL) and are counted in
 * st->problems; MP_OK means the check ran, whatever it found. MP_ERR_STORE
 * when it could not (reading the file failed, out of memory).
 */
enum { MPL_CHECK_ROOTS, MPL_CHECK_SAMPLE, MPL_CHECK_FULL };
#define MPL_TABLES_MAX 16

typedef void (*mpl_damage_fn)(void *ctx, const char *table, const MDB_val *key,
                              const char *what);
/* A record of table sp->dbs[t]: NULL when good, else what is wrong (a
 * static string). */
typedef const char *(*mpl_record_fn)(void *ctx, size_t t, const MDB_val *key,
                                     const MDB_val *val);

typedef struct {
    uint64_t pages;              /* the file's pages in use by the transaction: last + 1 */
    uint64_t pages_read;         /* tree and overflow pages read */
    uint64_t pages_free;         /* pages the free list names */
    uint64_t pages_unaccounted;  /* neither reachable nor free (complete checks only):
                                  * space lost, not damage */
    uint64_t records[MPL_TABLES_MAX];   /* records read, per table of sp->dbs */
    uint64_t bad_records[MPL_TABLES_MAX]; /* of them, refused by rec */
    uint64_t entries[MPL_TABLES_MAX];   /* records each table's header counts */
    uint64_t problems;           /* everything reported to dmg */
    int      complete;           /* every page and record was read */
} mpl_check_stats;

mp_status mpl_check(const mpl_spec *sp, MDB_env *env, MDB_txn *txn, int level,
                    uint64_t leaf_budget, mpl_record_fn rec, mpl_damage_fn dmg, void *ctx,
                    mpl_check_stats *st);

/* ---- transactions and cursors ------------------------------------------------------- */

/* mdb_txn_begin; *txn is NULL on failure ("<name> begin: ..."). */
mp_status mpl_begin(const mpl_spec *sp, MDB_env *env, unsigned flags, MDB_txn **txn);
/* mdb_txn_commit; *txn is NULL afterwards, whatever the outcome. */
mp_status mpl_commit(const mpl_spec *sp, MDB_txn **txn);
/* A read transaction with a cursor on dbi; on failure both stay NULL. */
mp_status mpl_read_cursor(const mpl_spec *sp, MDB_env *env, MDB_dbi dbi, MDB_txn **txn,
                          MDB_cursor **cur);

/* The first (first != 0) or next record whose key starts with prefix[0..n):
 * 0, or MDB_NOTFOUND past the last one, or LMDB's error. */
int mpl_prefix_get(MDB_cursor *cur, int first, const uint8_t *prefix, size_t n, MDB_val *k,
                   MDB_val *v);
/* How a cursor walk ended, from the last mdb_cursor_get (or mpl_prefix_get)
 * code: MP_OK when it ran out (MDB_NOTFOUND) or was stopped (0), else the
 * failure ("<name> what: ..."). */
mp_status mpl_walk_end(const mpl_spec *sp, const char *what, int rc);

/* ---- the expiry index: u64 time | u8 kind | key of the record -> empty ------------------ */

/* Writes an index key into key (room for 9 + rlen bytes); its length. */
size_t mpl_expiry_key(uint8_t *key, uint64_t when, uint8_t kind, const uint8_t *rkey,
                      size_t rlen);
/* Adds the entry to the index table (rlen at most MPL_KEY_MAX - 9). */
mp_status mpl_expiry_add(const mpl_spec *sp, MDB_txn *txn, MDB_dbi index, uint64_t when,
                         uint8_t kind, const uint8_t *rkey, size_t rlen);

/* Where the records of one kind live: kinds[i] describes kind i + 1. Their
 * value holds the u64 time they are indexed under at time_off. */
typedef struct {
    MDB_dbi dbi;
    size_t  time_off;
} mpl_kind;

/*
 * Deletes, inside txn, the records indexed as due at now (index time <=
 * now), up to max index entries, and those entries. A record whose own
 * time differs from its entry was written again later under the same key
 * and is kept; an entry that cannot be parsed (shorter than 10 bytes,
 * longer than key_max, or of no known kind) is dropped so that it cannot
 * block compaction for ever. *removed gets the records deleted; *more (may
 * be NULL) is set when max stopped it with due entries left.
 */
mp_status mpl_compact(const mpl_spec *sp, MDB_txn *txn, MDB_dbi index, const mpl_kind *kinds,
                      size_t nkinds, size_t key_max, uint64_t now, size_t max, size_t *removed,
                      int *more);

/*
 * mpl_compact for a store whose records carry checksums: check is called
 * with each due index entry (kind 0: the entry's key and value) and with
 * the record it names (its kind) before anything of either is trusted;
 * a non-zero return stops the compaction with MP_ERR_STORE, the callback
 * having set the message (mpl_msg). check NULL is mpl_compact.
 */
typedef int (*mpl_compact_check_fn)(void *ctx, uint8_t kind, const MDB_val *k,
                                    const MDB_val *v);
mp_status mpl_compact_checked(const mpl_spec *sp, MDB_txn *txn, MDB_dbi index,
                              const mpl_kind *kinds, size_t nkinds, size_t key_max,
                              uint64_t now, size_t max, size_t *removed, int *more,
                              mpl_compact_check_fn check, void *ctx);

#endif
