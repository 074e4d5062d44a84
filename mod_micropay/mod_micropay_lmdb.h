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
#define MPL_MAX_READERS      1024
#define MPL_KEY_MAX          511     /* LMDB's default key size limit */
#define MPL_MSG_MAX          256

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

#endif
