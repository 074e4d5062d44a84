/*
 * mod_micropay_store.c - the vendor's durable state in LMDB (the contract
 * is in mod_micropay_store.h).
 *
 * Records (integers big-endian, so keys sort by number; every value but
 * the format ends in the record's checksum, see "checksums" below):
 *   meta    "format" -> "mod_micropay-store-4"; "last_compact" -> u64
 *   spent   vendor NUL u64 id       -> u64 time | u64 expiry | u8 flags | 32 req_sig
 *                                      | u16 reply_len | reply
 *                                      | u16 payment_len | payment
 *                                      | u8 method_len | method | u8 host_len | host
 *                                      | u16 target_len | target
 *                                      [| u64 accepted_at | 32 body_digest]
 *           time is when compaction may drop the record: keep_until while
 *           undeposited, expiry once flags has SPENT_DEPOSITED; the bracketed
 *           part is there when flags has SPENT_RETRYABLE (every spend of
 *           format 4; a spend of format 3 has no accepted time and is never
 *           answered as a retry); flags bits 2-3 count the retries answered
 *           (at most MPS_RETRY_MAX)
 *   retry   32 commitment id | u32 i -> u64 time | u64 accepted_at | u32 k | 32 w_i
 *                                      | 16 request tag | u8 retries answered
 *           one accepted PayWord payment, for retries of it; time is when
 *           compaction drops it (accepted_at + MPS_RETRY_KEEP)
 *   pw      32 commitment id        -> u64 keep_until | u32 redeemed | u16 track_len
 *                                      | track | commitment
 *   ledger  u32 day | u8 scheme | 3 currency | 16 SHA-256(path) prefix
 *                                   -> u64 units | u64 count | path
 *           path "*": the day's paths beyond MPS_LEDGER_DAY_LINES, and
 *           every path of a day rolled up by compaction
 *   prices  vendor NUL path         -> 3 currency | u64 units
 *   ids     vendor NUL u16 series   -> u64 next sequence
 *   expiry  u64 time | u8 kind | key of the record -> (the checksum only)
 * The expiry index starts with the time so that compaction reads only the
 * records that are due, from the front.
 * Creating, opening, the expiry index and its compaction, and the check of
 * the file's pages are the plumbing shared with the broker store
 * (mod_micropay_lmdb.c).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include "mod_micropay_lmdb.h"
#include "mod_micropay_store.h"

#define FORMAT          "mod_micropay-store-4"
#define FORMAT_3        "mod_micropay-store-3"
#define FORMAT_2        "mod_micropay-store-2"
#define FORMAT_UPGRADE  "mod_micropay-store-2-3"   /* mps_upgrade under way */
#define NDBS            8
#define NDBS_V3         7                          /* format 3 had no retry table */
#define KIND_SPENT      1
#define KIND_PW         2
#define KIND_RETRY      3
#define CRC_LEN         4
#define SPENT_HDR       (8 + 8 + 1 + MP_HASH_LEN)
#define SPENT_DEPOSITED 0x01
#define SPENT_RETRYABLE 0x02
#define SPENT_RETRIES   0x0c    /* retries answered so far, 0..MPS_RETRY_MAX */
#define SPENT_RETRY_ONE 0x04
#define SPENT_RETRY_LEN (8 + MP_HASH_LEN)
/* The largest spent record: header, reply, payment, method, host, target,
 * accepted time and body digest. */
#define SPENT_REC_MAX   (SPENT_HDR + 2 + MP_WIRE_MAX + 2 + MP_WIRE_MAX + 1 + MP_METHOD_MAX \
                         + 1 + MP_HOST_MAX + 2 + MP_TARGET_MAX + SPENT_RETRY_LEN)
#define RETRY_KEY_LEN   (MP_HASH_LEN + 4)
#define RETRY_VAL_LEN   (8 + 8 + 4 + MP_HASH_LEN + MP_PW_TAG_LEN + 1)   /* + retries answered */
#define SPENT_KEY_MAX   (MP_NAME_MAX + 1 + 8)
#define PW_HDR          (8 + 4 + 2)
#define PW_REC_MAX      (PW_HDR + MP_PW_TRACK_MAX + MP_PW_COMMIT_MAX)
#define EXPIRY_KEY_MAX  (8 + 1 + SPENT_KEY_MAX)
#define LEDGER_KEY_LEN  (4 + 1 + 3 + 16)
#define LEDGER_HDR      (8 + 8)
#define PRICE_VAL_LEN   (3 + 8)
#define IDS_KEY_MAX     (MP_NAME_MAX + 1 + 2)
#define SEQ_LIMIT       ((uint64_t)1 << 48)
/* mps_maybe_compact runs on the request path: a bounded batch keeps one
 * unlucky request from paying for a large backlog. */
#define COMPACT_BATCH   MPS_COMPACT_BATCH
/* mps_upgrade converts this many records per transaction. */
#define UPGRADE_BATCH   2000
#define MAX2(a, b)      ((a) > (b) ? (a) : (b))
#define UPGRADE_VAL_MAX MAX2(MAX2(SPENT_REC_MAX, PW_REC_MAX), LEDGER_HDR + MP_TARGET_MAX)

/* The tables, in the order of db_names. */
enum { T_META, T_SPENT, T_PW, T_LEDGER, T_PRICES, T_IDS, T_EXPIRY, T_RETRY };

struct mps {
    MDB_env         *env;
    MDB_dbi          meta, spent, pw, ledger, prices, ids, expiry, retry;
    int              rdonly;
    size_t           maxkey;
    /* Every transaction holds it shared; adopting a map another process
     * grew (mdb_env_set_mapsize) holds it exclusively, since LMDB remaps
     * and no transaction of this process may be running then. */
    pthread_rwlock_t map_lock;
    /* The process's open stores, by the directory's device and inode: LMDB
     * must not open one environment twice in a process (closing one copy
     * drops the other's file locks). */
    dev_t            dev;
    ino_t            ino;
    pid_t            pid;
    unsigned         refs;
    unsigned         flags;
    struct mps      *next;
};

static const char *const db_names[NDBS] = {
    "meta", "spent", "pw", "ledger", "prices", "ids", "expiry", "retry"
};

static const mpl_spec SPEC = {
    MPL_SLOT_VENDOR, "store", "mod_micropay store", "create it with mpadmin store init",
    FORMAT, db_names, NDBS, NDBS_V3, "the retry table"
};

static const char *const old_formats[] = { FORMAT_3, FORMAT_2, FORMAT_UPGRADE };

/* The shared messages, under this store's name. */
#define set_msg(...)        mpl_msg(&SPEC, __VA_ARGS__)
#define lmdb_fail(what, rc) mpl_fail(&SPEC, what, rc)
#define corrupt(what)       mpl_corrupt(&SPEC, what)
#define bad_arg(what)       mpl_bad_arg(&SPEC, what)

static MDB_dbi dbi_of(const mps *s, unsigned t)
{
    switch (t) {
    case T_META:   return s->meta;
    case T_SPENT:  return s->spent;
    case T_PW:     return s->pw;
    case T_LEDGER: return s->ledger;
    case T_PRICES: return s->prices;
    case T_IDS:    return s->ids;
    case T_RETRY:  return s->retry;
    default:       return s->expiry;
    }
}

/* ---- checksums ------------------------------------------------------------------------ */

/*
 * Every value but the format ends in CRC-32C over the table's name, a NUL,
 * the key's length (u16), the key and the value before it. A checksum,
 * not a MAC: it is there for disks, kernels and stray writes, and whoever
 * can write the file can as well delete records, so a key would buy
 * nothing (and mpadmin, which writes prices, holds none). CRC-32C detects
 * every error of up to three bits, and every burst of up to 32, in records
 * of our sizes, where a truncated hash only makes them improbable, and it
 * costs no crypto context on the request path. Because the key is
 * covered, a record whose key was damaged fails its check when read at
 * its new place, and a lookup of the key it had reads it too (get_rec),
 * so a damaged record fails the lookup instead of letting the scrip look
 * unspent. Several damaged records in one page, and damage to LMDB's own
 * pages, are for the check at start and mpadmin store verify.
 */
static uint32_t rec_crc(unsigned t, const uint8_t *k, size_t klen, const uint8_t *v,
                        size_t vlen)
{
    uint8_t l[2];
    uint32_t c = mpl_crc32c(0, db_names[t], strlen(db_names[t]) + 1);

    mpl_put_u16(l, (uint16_t)klen);
    c = mpl_crc32c(c, l, 2);
    c = mpl_crc32c(c, k, klen);
    return vlen ? mpl_crc32c(c, v, vlen) : c;
}

/* 1 when v (checksum included) is the record of k in table t. */
static int sealed_ok(unsigned t, const MDB_val *k, const MDB_val *v)
{
    const uint8_t *p = v->mv_data;

    return v->mv_size >= CRC_LEN && k->mv_size <= UINT16_MAX
        && mpl_get_u32(p + v->mv_size - CRC_LEN)
           == rec_crc(t, k->mv_data, k->mv_size, p, v->mv_size - CRC_LEN);
}

/* The format record is the one without a checksum: every open compares
 * it whole. */
static int is_format(unsigned t, const MDB_val *k)
{
    return t == T_META && k->mv_size == 6 && memcmp(k->mv_data, "format", 6) == 0;
}

static mp_status damaged(unsigned t)
{
    set_msg("store: damaged record in table %s (checksum mismatch); run mpadmin store "
            "verify, and restore the store from a backup", db_names[t]);
    return MP_ERR_STORE;
}

/* LMDB's key order (mdb_cmp_memn). */
static int key_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    int r = memcmp(a, b, an < bn ? an : bn);

    return r != 0 ? r : an < bn ? -1 : an > bn;
}

/* ---- transactions ------------------------------------------------------------------------ */

/* Maps as much as the file now holds (LMDB rounds up to the data): another
 * process with a larger map has written past ours (MDB_MAP_RESIZED). */
static int adopt_map(mps *s)
{
    MDB_envinfo info;
    mdb_filehandle_t fd;
    struct stat sb;
    size_t size;
    int rc;

    pthread_rwlock_wrlock(&s->map_lock);
    if ((rc = mdb_env_get_fd(s->env, &fd)) == 0 && (rc = mdb_env_info(s->env, &info)) == 0) {
        size = info.me_mapsize;
        if (fstat(fd, &sb) == 0 && (uint64_t)sb.st_size > (uint64_t)size
            && (uint64_t)sb.st_size <= (uint64_t)SIZE_MAX)
            size = (size_t)sb.st_size;
        rc = mdb_env_set_mapsize(s->env, size);
    }
    pthread_rwlock_unlock(&s->map_lock);
    return rc;
}

/*
 * Begins a transaction holding map_lock shared until it ends (commit or
 * end). A map another process grew is adopted, and the reader slots of
 * dead processes are freed when the table of them is full, then the
 * begin is tried again.
 */
static mp_status begin(mps *s, unsigned flags, MDB_txn **txn)
{
    int rc, dead, tries;

    for (tries = 0;; tries++) {
        pthread_rwlock_rdlock(&s->map_lock);
        if ((rc = mdb_txn_begin(s->env, NULL, flags, txn)) == 0)
            return MP_OK;
        pthread_rwlock_unlock(&s->map_lock);
        *txn = NULL;
        if (tries == 3)
            break;
        if (rc == MDB_MAP_RESIZED) {
            if ((rc = adopt_map(s)) != 0)
                break;
        } else if (rc == MDB_READERS_FULL) {
            if (mdb_reader_check(s->env, &dead) != 0 || dead == 0)
                break;
        } else {
            break;
        }
    }
    return lmdb_fail("begin", rc);
}

/* Aborts *txn if it is still open; *txn is NULL afterwards. */
static void end(mps *s, MDB_txn **txn)
{
    if (*txn == NULL)
        return;
    mdb_txn_abort(*txn);
    *txn = NULL;
    pthread_rwlock_unlock(&s->map_lock);
}

/* Commits *txn; *txn is NULL afterwards, whatever the outcome. */
static mp_status commit(mps *s, MDB_txn **txn)
{
    int rc = mdb_txn_commit(*txn);

    *txn = NULL;
    pthread_rwlock_unlock(&s->map_lock);
    return rc != 0 ? lmdb_fail("commit", rc) : MP_OK;
}

/* A read transaction with a cursor on table t; on failure both stay NULL. */
static mp_status read_cursor(mps *s, unsigned t, MDB_txn **txn, MDB_cursor **cur)
{
    int rc;
    mp_status st;

    *cur = NULL;
    if ((st = begin(s, MDB_RDONLY, txn)) != MP_OK)
        return st;
    if ((rc = mdb_cursor_open(*txn, dbi_of(s, t), cur)) != 0) {
        *cur = NULL;
        end(s, txn);
        return lmdb_fail("begin", rc);
    }
    return MP_OK;
}

/* ---- records --------------------------------------------------------------------------- */

#define REC_FOUND  0
#define REC_ABSENT 1

/*
 * Looks key up in table t. Found: REC_FOUND, with *out the value without
 * its checksum, which was checked. Absent: REC_ABSENT, after checking the
 * records on either side of where key would be: a record whose key was
 * damaged stays in its place in the page, which a lookup of its old key
 * reaches (binary search lands on it or just after it), so damage makes
 * a lookup fail instead of answering "absent". Else -1 with *st set.
 */
static int get_rec(mps *s, MDB_txn *txn, unsigned t, const uint8_t *key, size_t klen,
                   MDB_val *out, mp_status *st)
{
    MDB_cursor *c = NULL;
    MDB_val k = mpl_val(key, klen), v;
    int rc, ret = -1;

    if ((rc = mdb_cursor_open(txn, dbi_of(s, t), &c)) != 0) {
        *st = lmdb_fail("read", rc);
        return -1;
    }
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && k.mv_size == klen && memcmp(k.mv_data, key, klen) == 0) {
        if (!sealed_ok(t, &k, &v)) {
            *st = damaged(t);
            goto out;
        }
        out->mv_data = v.mv_data;
        out->mv_size = v.mv_size - CRC_LEN;
        ret = REC_FOUND;
        goto out;
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        *st = lmdb_fail("read", rc);
        goto out;
    }
    if (rc == 0) {
        if ((!sealed_ok(t, &k, &v) && !is_format(t, &k))
            || key_cmp(k.mv_data, k.mv_size, key, klen) <= 0) {
            *st = damaged(t);
            goto out;
        }
        rc = mdb_cursor_get(c, &k, &v, MDB_PREV);
    } else {
        rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    }
    if (rc == 0) {
        if ((!sealed_ok(t, &k, &v) && !is_format(t, &k))
            || key_cmp(k.mv_data, k.mv_size, key, klen) >= 0) {
            *st = damaged(t);
            goto out;
        }
    } else if (rc != MDB_NOTFOUND) {
        *st = lmdb_fail("read", rc);
        goto out;
    }
    ret = REC_ABSENT;
out:
    mdb_cursor_close(c);
    return ret;
}

/* Writes v[0..vlen) and its checksum under key in table t (mdb_put flags
 * as given, MDB_RESERVE added); LMDB's code, or 0. v must not point into
 * the map. */
static int put_rec(mps *s, MDB_txn *txn, unsigned t, const uint8_t *key, size_t klen,
                   const uint8_t *v, size_t vlen, unsigned flags)
{
    MDB_val k = mpl_val(key, klen), val;
    int rc;

    val.mv_size = vlen + CRC_LEN;
    val.mv_data = NULL;
    if ((rc = mdb_put(txn, dbi_of(s, t), &k, &val, flags | MDB_RESERVE)) != 0)
        return rc;
    if (vlen)
        memcpy(val.mv_data, v, vlen);
    mpl_put_u32((uint8_t *)val.mv_data + vlen, rec_crc(t, key, klen, v, vlen));
    return 0;
}

/* A value of table t read by a cursor: checked, without its checksum. */
static mp_status cursor_rec(unsigned t, const MDB_val *k, MDB_val *v)
{
    if (!sealed_ok(t, k, v))
        return damaged(t);
    v->mv_size -= CRC_LEN;
    return MP_OK;
}

/* ---- encoding ------------------------------------------------------------------ */

/* Writes "vendor NUL", the prefix of every per-vendor key; 0 when vendor
 * is not a usable name. */
static size_t vendor_prefix(const char *vendor, uint8_t *key)
{
    size_t n;

    if (vendor == NULL)
        return 0;
    n = strnlen(vendor, MP_NAME_MAX + 1);
    if (n == 0 || n > MP_NAME_MAX)
        return 0;
    memcpy(key, vendor, n);
    key[n] = 0;
    return n + 1;
}

static int price_path_valid(const char *path, size_t len)
{
    size_t i;

    if (path == NULL || len == 0 || len > MP_TARGET_MAX || path[0] != '/')
        return 0;
    for (i = 0; i < len; i++)
        if ((unsigned char)path[i] < 0x21 || (unsigned char)path[i] > 0x7e)
            return 0;
    return 1;
}

static int amount_valid(const mp_amount *a)
{
    return mp_currency_valid(a->cur) && a->units <= MP_AMOUNT_MAX;
}

/* 3 currency | u64 units, as prices keep it. */
static mp_status amount_decode(const MDB_val *v, mp_amount *out)
{
    const uint8_t *p = v->mv_data;
    mp_amount a;

    if (v->mv_size != PRICE_VAL_LEN)
        return corrupt("price");
    memcpy(a.cur, p, 3);
    a.cur[3] = 0;
    a.units = mpl_get_u64(p + 3);
    if (!amount_valid(&a))
        return corrupt("price");
    *out = a;
    return MP_OK;
}

/* ---- ledger -------------------------------------------------------------------- */

/* Validates e and derives its key. Done before the write transaction
 * because it hashes. */
static mp_status ledger_key(const mps_earning *e, uint8_t key[LEDGER_KEY_LEN])
{
    uint8_t h[MP_HASH_LEN];
    uint64_t day;
    mp_status st = MP_ERR_ARG;

    if ((e->scheme != MP_SCHEME_MILLICENT && e->scheme != MP_SCHEME_PAYWORD)
        || (e->path == NULL && e->path_len != 0) || e->path_len > MP_TARGET_MAX
        || !amount_valid(&e->amount)) {
        st = bad_arg("earning");
        goto out;
    }
    day = e->time / 86400;
    if (day > UINT32_MAX) {
        st = bad_arg("earning time");
        goto out;
    }
    if ((st = mp_sha256(e->path != NULL ? e->path : "", e->path_len, h)) != MP_OK) {
        set_msg("store: cannot hash the ledger path");
        goto out;
    }
    mpl_put_u32(key, (uint32_t)day);
    key[4] = e->scheme;
    memcpy(key + 5, e->amount.cur, 3);
    memcpy(key + 8, h, 16);
out:
    return st;
}

/* The key of the "*" line of key's day, scheme and currency. */
static mp_status other_key(const uint8_t key[LEDGER_KEY_LEN], uint8_t out[LEDGER_KEY_LEN])
{
    uint8_t h[MP_HASH_LEN];

    if (mp_sha256(MPS_LEDGER_OTHER, 1, h) != MP_OK) {
        set_msg("store: cannot hash the ledger path");
        return MP_ERR_CRYPTO;
    }
    memcpy(out, key, 8);
    memcpy(out + 8, h, 16);
    return MP_OK;
}

/* *full = 1 when key's day holds MPS_LEDGER_DAY_LINES lines already. Its
 * "*" line for okey's scheme and currency exists only once that happened
 * (or for a day rolled up): then no count is needed. */
static mp_status day_full(mps *s, MDB_txn *txn, const uint8_t key[LEDGER_KEY_LEN],
                          const uint8_t okey[LEDGER_KEY_LEN], int *full)
{
    uint8_t start[LEDGER_KEY_LEN];
    MDB_cursor *c = NULL;
    MDB_val k, v;
    size_t n = 0;
    int rc;
    mp_status st = MP_ERR_STORE;

    if ((rc = get_rec(s, txn, T_LEDGER, okey, LEDGER_KEY_LEN, &v, &st)) < 0)
        goto out;
    if (rc == REC_FOUND) {
        *full = 1;
        st = MP_OK;
        goto out;
    }
    if ((rc = mdb_cursor_open(txn, s->ledger, &c)) != 0) {
        c = NULL;
        st = lmdb_fail("read", rc);
        goto out;
    }
    memset(start, 0, sizeof start);
    memcpy(start, key, 4);
    k = mpl_val(start, LEDGER_KEY_LEN);
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && n < MPS_LEDGER_DAY_LINES;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != LEDGER_KEY_LEN || memcmp(k.mv_data, key, 4) != 0)
            break;
        n++;
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        st = lmdb_fail("read", rc);
        goto out;
    }
    *full = n >= MPS_LEDGER_DAY_LINES;
    st = MP_OK;
out:
    if (c != NULL)
        mdb_cursor_close(c);
    return st;
}

static mp_status ledger_add(mps *s, MDB_txn *txn, const uint8_t key[LEDGER_KEY_LEN],
                            const mps_earning *e)
{
    uint8_t buf[LEDGER_HDR + MP_TARGET_MAX], okey[LEDGER_KEY_LEN];
    uint64_t units = 0, count = 0;
    const char *path = e->path;
    size_t path_len = e->path_len;
    MDB_val v;
    mp_status st = MP_ERR_STORE;
    int rc, full = 0;

    rc = get_rec(s, txn, T_LEDGER, key, LEDGER_KEY_LEN, &v, &st);
    if (rc < 0)
        goto out;
    /* A new path on a day that has its lines already is counted under "*". */
    if (rc == REC_ABSENT) {
        if ((st = other_key(key, okey)) != MP_OK || (st = day_full(s, txn, key, okey, &full)) != MP_OK)
            goto out;
        if (full) {
            key = okey;
            path = MPS_LEDGER_OTHER;
            path_len = 1;
            if ((rc = get_rec(s, txn, T_LEDGER, key, LEDGER_KEY_LEN, &v, &st)) < 0)
                goto out;
        }
    }
    if (rc == REC_FOUND) {
        if (v.mv_size < LEDGER_HDR) {
            st = corrupt("ledger line");
            goto out;
        }
        units = mpl_get_u64(v.mv_data);
        count = mpl_get_u64((const uint8_t *)v.mv_data + 8);
    }
    if (units > MP_AMOUNT_MAX - e->amount.units || count == UINT64_MAX) {
        set_msg("store: ledger line overflows");
        st = MP_ERR_OVERFLOW;
        goto out;
    }
    mpl_put_u64(buf, units + e->amount.units);
    mpl_put_u64(buf + 8, count + 1);
    if (path_len)
        memcpy(buf + LEDGER_HDR, path, path_len);
    if ((rc = put_rec(s, txn, T_LEDGER, key, LEDGER_KEY_LEN, buf, LEDGER_HDR + path_len,
                      0)) != 0) {
        st = lmdb_fail("ledger write", rc);
        goto out;
    }
    st = MP_OK;
out:
    return st;
}

/* An expiry index entry: its value is its checksum alone. */
static mp_status expiry_add(mps *s, MDB_txn *txn, uint64_t time, uint8_t kind,
                            const uint8_t *rkey, size_t rlen)
{
    uint8_t key[MPL_KEY_MAX];
    size_t klen;
    int rc;

    if (rlen > MPL_KEY_MAX - 9)
        return bad_arg("expiry index key");
    klen = mpl_expiry_key(key, time, kind, rkey, rlen);
    if ((rc = put_rec(s, txn, T_EXPIRY, key, klen, NULL, 0, 0)) != 0)
        return lmdb_fail("expiry index write", rc);
    return MP_OK;
}

/* ---- open, create, close --------------------------------------------------------- */

static mps *registry;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

mp_status mps_create(const char *dir, long uid, long gid, char *err, size_t errlen)
{
    return mpl_create(&SPEC, dir, uid, gid, MDB_WRITEMAP, err, errlen);
}

/* A lock file that root's open just made belongs to the owner of the
 * data file, or Apache's children could not open the store after it. */
static void own_lock_file(const char *dir, int lock_existed)
{
    char data[4096], lock[4096];
    struct stat sb;

    if (lock_existed || geteuid() != 0
        || snprintf(data, sizeof data, "%s/data.mdb", dir) >= (int)sizeof data
        || snprintf(lock, sizeof lock, "%s/lock.mdb", dir) >= (int)sizeof lock
        || stat(data, &sb) != 0 || sb.st_uid == 0)
        return;
    (void)chown(lock, sb.st_uid, sb.st_gid);
}

/*
 * Opens dir as a new handle (no registry). format: NULL for this version's
 * (older ones refused with the upgrade command), else the one to accept.
 * *dmg (may be NULL) is set when the open failed because the file's meta
 * or root pages are damaged.
 */
static mp_status open_handle(const char *dir, unsigned flags, size_t map_size, const char *format,
                             mps **out, int *dmg, char *err, size_t errlen)
{
    char lock[4096];
    struct stat sb;
    mpl_open_opts o;
    mps *s;
    int lock_existed;
    mp_status st;

    if ((s = calloc(1, sizeof *s)) == NULL) {
        mpl_err(err, errlen, "store %s: out of memory", dir);
        return MP_ERR_NOMEM;
    }
    s->rdonly = (flags & MPS_RDONLY) != 0;
    s->flags = flags;
    memset(&o, 0, sizeof o);
    o.rdonly = s->rdonly;
    /* Commits land in the shared map at once (WRITEMAP) and survive any
     * process's death. The data pages are flushed before the meta page
     * that makes them the store (no NOSYNC), so an operating system crash
     * or a power loss cannot leave a torn store; without MPS_SYNC the meta
     * page itself is flushed with the next commit (NOMETASYNC), so such a
     * crash can undo the last commit. */
    o.env_flags = MDB_WRITEMAP | (flags & MPS_SYNC ? 0 : MDB_NOMETASYNC);
    o.map_size = map_size;
    o.map_file = map_size == 0;
    o.check_roots = 1;
    o.format = format;
    if (format == NULL) {
        o.old_formats = old_formats;
        o.nold = sizeof old_formats / sizeof old_formats[0];
        o.old_hint = "convert it (with Apache stopped) by: mpadmin store upgrade";
    }
    lock_existed = snprintf(lock, sizeof lock, "%s/lock.mdb", dir) >= (int)sizeof lock
                   || stat(lock, &sb) == 0;
    {
        MDB_dbi *const dbis[NDBS] = {
            &s->meta, &s->spent, &s->pw, &s->ledger, &s->prices, &s->ids, &s->expiry,
            &s->retry
        };

        st = mpl_open_ex(&SPEC, dir, &o, &s->env, dbis, NULL, dmg, err, errlen);
    }
    if (st != MP_OK) {
        free(s);
        return st;
    }
    own_lock_file(dir, lock_existed);
    if (pthread_rwlock_init(&s->map_lock, NULL) != 0) {
        mdb_env_close(s->env);
        free(s);
        mpl_err(err, errlen, "store %s: cannot make a lock", dir);
        return MP_ERR_NOMEM;
    }
    s->maxkey = (size_t)mdb_env_get_maxkeysize(s->env);
    s->pid = getpid();
    s->refs = 1;
    *out = s;
    return MP_OK;
}

static void close_handle(mps *s)
{
    mdb_env_close(s->env);
    pthread_rwlock_destroy(&s->map_lock);
    free(s);
}

/* mps_open, with *dmg (may be NULL) set when the file's meta or root pages
 * are damaged. */
static mp_status open_shared(const char *dir, unsigned flags, size_t map_size, mps **out,
                             int *dmg, char *err, size_t errlen)
{
    struct stat sb;
    mps *s = NULL;
    int keyed;
    mp_status st;

    if (dmg != NULL)
        *dmg = 0;
    if (dir == NULL || out == NULL || (flags & ~(unsigned)(MPS_RDONLY | MPS_SYNC)) != 0) {
        mpl_err(err, errlen, "invalid store arguments");
        return MP_ERR_ARG;
    }
    keyed = stat(dir, &sb) == 0;
    pthread_mutex_lock(&registry_lock);
    /* The same directory, however spelled, is one environment. */
    for (s = keyed ? registry : NULL; s != NULL; s = s->next)
        if (s->dev == sb.st_dev && s->ino == sb.st_ino && s->pid == getpid())
            break;
    if (s != NULL) {
        if (s->rdonly && !(flags & MPS_RDONLY)) {
            pthread_mutex_unlock(&registry_lock);
            mpl_err(err, errlen, "store %s is open read-only in this process already", dir);
            return MP_ERR_STORE;
        }
        /* The stronger durability applies to every user of the handle. */
        if ((flags & MPS_SYNC) && !(s->flags & MPS_SYNC) && !s->rdonly) {
            if (mdb_env_set_flags(s->env, MDB_NOMETASYNC, 0) != 0) {
                pthread_mutex_unlock(&registry_lock);
                mpl_err(err, errlen, "store %s: cannot make its commits synchronous", dir);
                return MP_ERR_STORE;
            }
            s->flags |= MPS_SYNC;
        }
        s->refs++;
        pthread_mutex_unlock(&registry_lock);
        *out = s;
        return MP_OK;
    }
    st = open_handle(dir, flags, map_size, NULL, &s, dmg, err, errlen);
    if (st == MP_OK) {
        if (keyed) {
            s->dev = sb.st_dev;
            s->ino = sb.st_ino;
        } else {
            s->pid = 0;             /* found by no later open */
        }
        s->next = registry;
        registry = s;
        *out = s;
    }
    pthread_mutex_unlock(&registry_lock);
    return st;
}

mp_status mps_open(const char *dir, unsigned flags, size_t map_size, mps **out, char *err,
                   size_t errlen)
{
    return open_shared(dir, flags, map_size, out, NULL, err, errlen);
}

unsigned mps_set_max_readers(unsigned n)
{
    return mpl_set_max_readers(n);
}

void mps_close(mps *s)
{
    mps **pp;

    if (s == NULL)
        return;
    pthread_mutex_lock(&registry_lock);
    if (s->refs > 1) {
        s->refs--;
        pthread_mutex_unlock(&registry_lock);
        return;
    }
    for (pp = &registry; *pp != NULL; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    pthread_mutex_unlock(&registry_lock);
    close_handle(s);
}

const char *mps_errmsg(const mps *s)
{
    const char *m = mpl_errmsg(&SPEC);

    (void)s;
    return m != NULL ? m : "no store error";
}

int mps_full(const mps *s)
{
    (void)s;
    return mpl_full(&SPEC);
}

mp_status mps_sync(mps *s)
{
    int rc;

    if (s == NULL)
        return bad_arg("handle");
    if (s->rdonly)
        return MP_OK;
    pthread_rwlock_rdlock(&s->map_lock);
    rc = mdb_env_sync(s->env, 1);
    pthread_rwlock_unlock(&s->map_lock);
    if (rc != 0)
        return lmdb_fail("sync", rc);
    return MP_OK;
}

/* ---- the clock of a decision --------------------------------------------------- */

static const uint64_t *volatile test_clock;

void mps_test_clock(const uint64_t *now)
{
    test_clock = now;
}

/* Read inside the write transaction that records a payment: a decision is
 * taken at the moment it is written, under the lock every other decision
 * on the same record waits for. */
static uint64_t clock_now(void)
{
    const uint64_t *t = test_clock;
    time_t now;

    if (t != NULL)
        return *t;
    now = time(NULL);
    return now < 0 ? 0 : (uint64_t)now;
}

/* The earliest a record that makes a payment spent may go. */
static uint64_t kept_until(uint64_t expiry, uint64_t keep_until)
{
    uint64_t least = expiry > UINT64_MAX - MPS_MARGIN ? UINT64_MAX : expiry + MPS_MARGIN;

    return keep_until < least ? least : keep_until;
}

/* ---- Millicent ----------------------------------------------------------------- */

/* A spent record split into its fields (pointers into the value). */
typedef struct {
    uint64_t       time, expiry;
    uint8_t        flags;
    uint64_t       accepted_at;     /* with SPENT_RETRYABLE only */
    const uint8_t *body_digest;     /* with SPENT_RETRYABLE only, else NULL */
    const uint8_t *req_sig;
    const uint8_t *reply, *payment, *method, *host, *target;
    size_t         reply_len, payment_len, method_len, host_len, target_len;
} spent_rec;

static int visible_ascii(const uint8_t *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (p[i] < 0x21 || p[i] > 0x7e)
            return 0;
    return 1;
}

/* Reads a length-prefixed field of lbytes (1 or 2) length bytes at *off;
 * 0 when it does not fit in n or exceeds max. */
static int spent_field(const uint8_t *p, size_t n, size_t *off, size_t lbytes, size_t max,
                       const uint8_t **out, size_t *len)
{
    size_t l;

    if (n - *off < lbytes)
        return 0;
    l = lbytes == 1 ? p[*off] : mpl_get_u16(p + *off);
    *off += lbytes;
    if (l > max || n - *off < l)
        return 0;
    *out = p + *off;
    *len = l;
    *off += l;
    return 1;
}

static mp_status spent_parse(const MDB_val *v, spent_rec *r)
{
    const uint8_t *p = v->mv_data;
    size_t n = v->mv_size, off = SPENT_HDR;

    if (n < SPENT_HDR || n > SPENT_REC_MAX)
        return corrupt("spent record");
    r->time = mpl_get_u64(p);
    r->expiry = mpl_get_u64(p + 8);
    r->flags = p[16];
    r->req_sig = p + 17;
    r->accepted_at = 0;
    r->body_digest = NULL;
    if ((r->flags & ~(SPENT_DEPOSITED | SPENT_RETRYABLE | SPENT_RETRIES)) != 0
        || (r->flags & SPENT_RETRIES) / SPENT_RETRY_ONE > MPS_RETRY_MAX
        || ((r->flags & SPENT_RETRIES) && !(r->flags & SPENT_RETRYABLE)) || r->time < r->expiry
        || !spent_field(p, n, &off, 2, MP_WIRE_MAX, &r->reply, &r->reply_len)
        || !spent_field(p, n, &off, 2, MP_WIRE_MAX, &r->payment, &r->payment_len)
        || !spent_field(p, n, &off, 1, MP_METHOD_MAX, &r->method, &r->method_len)
        || !spent_field(p, n, &off, 1, MP_HOST_MAX, &r->host, &r->host_len)
        || !spent_field(p, n, &off, 2, MP_TARGET_MAX, &r->target, &r->target_len))
        return corrupt("spent record");
    if (r->flags & SPENT_RETRYABLE) {
        if (n - off < SPENT_RETRY_LEN)
            return corrupt("spent record");
        r->accepted_at = mpl_get_u64(p + off);
        r->body_digest = p + off + 8;
        off += SPENT_RETRY_LEN;
    }
    if (off != n || r->payment_len == 0 || r->method_len == 0 || r->target_len == 0
        || !visible_ascii(r->method, r->method_len) || !visible_ascii(r->host, r->host_len)
        || !visible_ascii(r->target, r->target_len))
        return corrupt("spent record");
    return MP_OK;
}

static int request_valid(const mp_request *q)
{
    return q != NULL && q->method != NULL && q->method_len >= 1 && q->method_len <= MP_METHOD_MAX
        && (q->host != NULL || q->host_len == 0) && q->host_len <= MP_HOST_MAX
        && q->target != NULL && q->target_len >= 1 && q->target_len <= MP_TARGET_MAX
        && visible_ascii((const uint8_t *)q->method, q->method_len)
        && (q->host_len == 0 || visible_ascii((const uint8_t *)q->host, q->host_len))
        && visible_ascii((const uint8_t *)q->target, q->target_len);
}

/* Writes a spent record into rec (sized by spent_size()). */
static size_t spent_size(size_t reply_len, size_t payment_len, const mp_request *q)
{
    return SPENT_HDR + 2 + reply_len + 2 + payment_len + 1 + q->method_len + 1 + q->host_len
        + 2 + q->target_len + SPENT_RETRY_LEN;
}

static void spent_write(uint8_t *rec, uint64_t time, uint64_t expiry,
                        const uint8_t req_sig[MP_HASH_LEN], const uint8_t *reply,
                        size_t reply_len, const uint8_t *payment, size_t payment_len,
                        const mp_request *q, const mps_retry *rt)
{
    size_t o = 0;

    mpl_put_u64(rec, time);
    mpl_put_u64(rec + 8, expiry);
    rec[16] = SPENT_RETRYABLE;
    memcpy(rec + 17, req_sig, MP_HASH_LEN);
    o = SPENT_HDR;
    mpl_put_u16(rec + o, (uint16_t)reply_len);
    o += 2;
    if (reply_len)
        memcpy(rec + o, reply, reply_len);
    o += reply_len;
    mpl_put_u16(rec + o, (uint16_t)payment_len);
    o += 2;
    memcpy(rec + o, payment, payment_len);
    o += payment_len;
    rec[o++] = (uint8_t)q->method_len;
    memcpy(rec + o, q->method, q->method_len);
    o += q->method_len;
    rec[o++] = (uint8_t)q->host_len;
    if (q->host_len)
        memcpy(rec + o, q->host, q->host_len);
    o += q->host_len;
    mpl_put_u16(rec + o, (uint16_t)q->target_len);
    o += 2;
    memcpy(rec + o, q->target, q->target_len);
    o += q->target_len;
    mpl_put_u64(rec + o, rt->now);
    memcpy(rec + o + 8, rt->body_digest, MP_HASH_LEN);
}

/* 1 when field a[0..an) equals b[0..bn) (b may be NULL when bn is 0). */
static int field_eq(const uint8_t *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (bn == 0 || memcmp(a, b, bn) == 0);
}

/*
 * 1 when the payment that spent sr is being sent again for the same
 * request within the retry window in force now: the byte-identical
 * mc_payment record, the same method, host and target (the record alone
 * proves nothing about the request it comes with: req_sig is checked only
 * on the first spend), the same body, before accepted_at + window. A
 * spend without an accepted time (format 3) never is: fail closed.
 */
static int spent_is_retry(const spent_rec *sr, const uint8_t *payment, size_t payment_len,
                          const mp_request *req, const mps_retry *rt)
{
    if (!(sr->flags & SPENT_RETRYABLE) || rt->window == 0 || rt->now < sr->accepted_at
        || rt->now - sr->accepted_at >= (uint64_t)rt->window
        || !field_eq(sr->method, sr->method_len, req->method, req->method_len)
        || !field_eq(sr->host, sr->host_len, req->host, req->host_len)
        || !field_eq(sr->target, sr->target_len, req->target, req->target_len))
        return 0;
    return mp_ct_equal(sr->payment, sr->payment_len, payment, payment_len)
        && mp_ct_equal(sr->body_digest, MP_HASH_LEN, rt->body_digest, MP_HASH_LEN);
}

/* A spend record found for a payment, in the write transaction txn: its
 * retry (the stored reply copied out, *retry = 1, the record's retry count
 * raised in txn) or MP_ERR_SPENT, also once MPS_RETRY_MAX retries were
 * answered; MP_ERR_STORE when it does not parse or cannot be written. */
static mp_status spent_found(mps *s, MDB_txn *txn, const uint8_t *key, size_t klen,
                             const MDB_val *v, const uint8_t *payment, size_t payment_len,
                             const mp_request *req, const mps_retry *rt, int *retry,
                             uint8_t *reply_out, size_t *reply_out_len)
{
    spent_rec sr;
    uint8_t *rec;
    int rc;
    mp_status st;

    if ((st = spent_parse(v, &sr)) != MP_OK)
        return st;
    if (!spent_is_retry(&sr, payment, payment_len, req, rt)
        || (sr.flags & SPENT_RETRIES) / SPENT_RETRY_ONE >= MPS_RETRY_MAX)
        return MP_ERR_SPENT;
    if (sr.reply_len)
        memcpy(reply_out, sr.reply, sr.reply_len);
    *reply_out_len = sr.reply_len;
    /* Copied out before the put: the value may live in a page the put
     * rewrites (its reply was copied out above for the same reason). */
    if ((rec = malloc(v->mv_size)) == NULL) {
        set_msg("store: out of memory");
        return MP_ERR_NOMEM;
    }
    memcpy(rec, v->mv_data, v->mv_size);
    rec[16] = (uint8_t)(sr.flags + SPENT_RETRY_ONE);
    rc = put_rec(s, txn, T_SPENT, key, klen, rec, v->mv_size, 0);
    free(rec);
    if (rc != 0)
        return lmdb_fail("spent retry count", rc);
    *retry = 1;
    return MP_OK;
}

mp_status mps_mc_spend(mps *s, const char *vendor, uint64_t scrip_id, uint64_t expiry,
                       uint64_t keep_until, const uint8_t req_sig[MP_HASH_LEN],
                       const uint8_t *payment, size_t payment_len, const mp_request *req,
                       const uint8_t *reply, size_t reply_len, const mps_earning *earn,
                       const mps_retry *rt, int *retry, uint8_t *reply_out,
                       size_t *reply_out_len)
{
    uint8_t key[SPENT_KEY_MAX], lkey[LEDGER_KEY_LEN];
    MDB_txn *txn = NULL;
    MDB_val k, v;
    size_t klen;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || req_sig == NULL || (reply == NULL && reply_len != 0)
        || reply_len > MP_WIRE_MAX || payment == NULL || payment_len == 0
        || payment_len > MP_WIRE_MAX || !request_valid(req) || rt == NULL
        || rt->body_digest == NULL || retry == NULL || reply_out == NULL
        || reply_out_len == NULL) {
        st = bad_arg("spend arguments");
        goto out;
    }
    if ((klen = vendor_prefix(vendor, key)) == 0) {
        st = bad_arg("vendor");
        goto out;
    }
    mpl_put_u64(key + klen, scrip_id);
    klen += 8;
    keep_until = kept_until(expiry, keep_until);
    if (earn != NULL && (st = ledger_key(earn, lkey)) != MP_OK)
        goto out;
    if ((st = begin(s, 0, &txn)) != MP_OK)
        goto out;
    /* A damaged record, or a record beside the key whose key was damaged,
     * fails here: never is a spent scrip found "not spent". */
    if ((rc = get_rec(s, txn, T_SPENT, key, klen, &v, &st)) < 0)
        goto out;
    if (rc == 0) {
        /* Two identical requests that raced past mps_mc_find: the loser
         * is a retry of the winner under the same rule, and counts. */
        if ((st = spent_found(s, txn, key, klen, &v, payment, payment_len, req, rt, retry,
                              reply_out, reply_out_len)) == MP_OK)
            st = commit(s, &txn);
        goto out;
    }
    if (clock_now() >= expiry) {
        set_msg("store: scrip expired before its spend was written");
        st = MP_ERR_EXPIRED;
        goto out;
    }
    /* Reserved in place: the record is written straight into the map. */
    k = mpl_val(key, klen);
    v.mv_size = spent_size(reply_len, payment_len, req) + CRC_LEN;
    v.mv_data = NULL;
    if ((rc = mdb_put(txn, s->spent, &k, &v, MDB_NOOVERWRITE | MDB_RESERVE)) != 0) {
        st = lmdb_fail("spent write", rc);
        goto out;
    }
    spent_write(v.mv_data, keep_until, expiry, req_sig, reply, reply_len, payment, payment_len,
                req, rt);
    mpl_put_u32((uint8_t *)v.mv_data + v.mv_size - CRC_LEN,
                rec_crc(T_SPENT, key, klen, v.mv_data, v.mv_size - CRC_LEN));
    if ((st = expiry_add(s, txn, keep_until, KIND_SPENT, key, klen)) != MP_OK
        || (earn != NULL && (st = ledger_add(s, txn, lkey, earn)) != MP_OK))
        goto out;
    if ((st = commit(s, &txn)) != MP_OK)
        goto out;
    *retry = 0;
    st = MP_OK;
out:
    end(s, &txn);
    return st;
}

mp_status mps_mc_find(mps *s, const char *vendor, uint64_t scrip_id, const uint8_t *payment,
                      size_t payment_len, const mp_request *req, const mps_retry *rt,
                      int *retry, uint8_t *reply_out, size_t *reply_out_len)
{
    uint8_t key[SPENT_KEY_MAX];
    MDB_txn *txn = NULL;
    MDB_val v;
    size_t klen;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || payment == NULL || payment_len == 0 || payment_len > MP_WIRE_MAX
        || !request_valid(req) || rt == NULL || rt->body_digest == NULL || retry == NULL
        || reply_out == NULL || reply_out_len == NULL) {
        st = bad_arg("spent lookup arguments");
        goto out;
    }
    if ((klen = vendor_prefix(vendor, key)) == 0) {
        st = bad_arg("vendor");
        goto out;
    }
    mpl_put_u64(key + klen, scrip_id);
    klen += 8;
    /* Most payments find nothing: a read. Only a record found is looked at
     * again in a write transaction, which counts the retry it answers. */
    if ((st = begin(s, MDB_RDONLY, &txn)) != MP_OK)
        goto out;
    if ((rc = get_rec(s, txn, T_SPENT, key, klen, &v, &st)) < 0)
        goto out;
    end(s, &txn);
    if (rc == REC_ABSENT) {
        *retry = 0;
        st = MP_OK;
        goto out;
    }
    if ((st = begin(s, 0, &txn)) != MP_OK)
        goto out;
    if ((rc = get_rec(s, txn, T_SPENT, key, klen, &v, &st)) < 0)
        goto out;
    if (rc == REC_ABSENT) {         /* compacted meanwhile */
        *retry = 0;
        st = MP_OK;
        goto out;
    }
    if ((st = spent_found(s, txn, key, klen, &v, payment, payment_len, req, rt, retry,
                          reply_out, reply_out_len)) == MP_OK)
        st = commit(s, &txn);
out:
    end(s, &txn);
    return st;
}

mp_status mps_mc_list_undeposited(mps *s, const char *vendor, mps_deposit_cb cb, void *ctx)
{
    uint8_t prefix[MP_NAME_MAX + 1];
    char method[MP_METHOD_MAX + 1], host[MP_HOST_MAX + 1], target[MP_TARGET_MAX + 1];
    spent_rec sr;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    size_t vlen;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || cb == NULL || (vlen = vendor_prefix(vendor, prefix)) == 0) {
        st = bad_arg("deposit listing");
        goto out;
    }
    if ((st = read_cursor(s, T_SPENT, &txn, &cur)) != MP_OK)
        goto out;
    for (rc = mpl_prefix_get(cur, 1, prefix, vlen, &k, &v); rc == 0;
         rc = mpl_prefix_get(cur, 0, prefix, vlen, &k, &v)) {
        if ((st = cursor_rec(T_SPENT, &k, &v)) != MP_OK)
            goto out;
        if (k.mv_size != vlen + 8) {
            st = corrupt("spent key");
            goto out;
        }
        if ((st = spent_parse(&v, &sr)) != MP_OK)
            goto out;
        if (sr.flags & SPENT_DEPOSITED)
            continue;
        memcpy(method, sr.method, sr.method_len);
        method[sr.method_len] = 0;
        if (sr.host_len)
            memcpy(host, sr.host, sr.host_len);
        host[sr.host_len] = 0;
        memcpy(target, sr.target, sr.target_len);
        target[sr.target_len] = 0;
        if (cb(ctx, mpl_get_u64((const uint8_t *)k.mv_data + vlen), sr.payment, sr.payment_len,
               method, host, target) != 0)
            break;
    }
    st = mpl_walk_end(&SPEC, "deposit listing", rc);
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    end(s, &txn);
    return st;
}

mp_status mps_mc_mark_deposited(mps *s, const char *vendor, const uint64_t *ids, size_t n)
{
    uint8_t key[SPENT_KEY_MAX], *rec = NULL;
    spent_rec sr;
    MDB_txn *txn = NULL;
    MDB_val v;
    uint64_t gone;
    size_t klen, i, len;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || (ids == NULL && n != 0) || (klen = vendor_prefix(vendor, key)) == 0) {
        st = bad_arg("deposit marks");
        goto out;
    }
    if (n == 0) {
        st = MP_OK;
        goto out;
    }
    if ((rec = malloc(SPENT_REC_MAX)) == NULL) {
        set_msg("store: out of memory");
        st = MP_ERR_NOMEM;
        goto out;
    }
    if ((st = begin(s, 0, &txn)) != MP_OK)
        goto out;
    for (i = 0; i < n; i++) {
        mpl_put_u64(key + klen, ids[i]);
        if ((rc = get_rec(s, txn, T_SPENT, key, klen + 8, &v, &st)) < 0)
            goto out;
        if (rc == REC_ABSENT)
            continue;           /* compacted, or never spent here: nothing to mark */
        if ((st = spent_parse(&v, &sr)) != MP_OK)
            goto out;
        if (sr.flags & SPENT_DEPOSITED)
            continue;
        /* Copied out before the put: a value read in a write transaction
         * may live in a page the put rewrites. The record now goes at the
         * scrip's expiry + MPS_MARGIN; the index entry at keep_until no
         * longer matches its time and is dropped by compaction without
         * touching it. */
        len = v.mv_size;
        memcpy(rec, v.mv_data, len);
        gone = kept_until(sr.expiry, 0);
        mpl_put_u64(rec, gone);
        rec[16] = sr.flags | SPENT_DEPOSITED;
        if ((rc = put_rec(s, txn, T_SPENT, key, klen + 8, rec, len, 0)) != 0) {
            st = lmdb_fail("spent write", rc);
            goto out;
        }
        if (sr.time != gone
            && (st = expiry_add(s, txn, gone, KIND_SPENT, key, klen + 8)) != MP_OK)
            goto out;
    }
    st = commit(s, &txn);
out:
    end(s, &txn);
    free(rec);
    return st;
}

mp_status mps_reserve_ids(mps *s, const char *vendor, uint16_t series, uint32_t count,
                          uint64_t *first)
{
    uint8_t key[IDS_KEY_MAX], buf[8];
    MDB_txn *txn = NULL;
    MDB_val v;
    uint64_t next = 1;
    size_t klen;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || count == 0 || first == NULL || (klen = vendor_prefix(vendor, key)) == 0) {
        st = bad_arg("id reservation");
        goto out;
    }
    mpl_put_u16(key + klen, series);
    if ((st = begin(s, 0, &txn)) != MP_OK)
        goto out;
    /* A damaged counter must not restart at 1: ids would repeat. */
    if ((rc = get_rec(s, txn, T_IDS, key, klen + 2, &v, &st)) < 0)
        goto out;
    if (rc == 0) {
        if (v.mv_size != 8 || (next = mpl_get_u64(v.mv_data)) == 0) {
            st = corrupt("id counter");
            goto out;
        }
    }
    if (next > SEQ_LIMIT || count > SEQ_LIMIT - next) {
        set_msg("store: change ids of series %u exhausted", (unsigned)series);
        st = MP_ERR_STORE;
        goto out;
    }
    mpl_put_u64(buf, next + count);
    if ((rc = put_rec(s, txn, T_IDS, key, klen + 2, buf, 8, 0)) != 0) {
        st = lmdb_fail("ids write", rc);
        goto out;
    }
    if ((st = commit(s, &txn)) != MP_OK)
        goto out;
    *first = (uint64_t)series << 48 | next;
    st = MP_OK;
out:
    end(s, &txn);
    return st;
}

/* ---- PayWord ------------------------------------------------------------------- */

/* Splits a pw record; the tracker must decode and belong to its key. */
static mp_status pw_parse(const MDB_val *v, const uint8_t id[MP_HASH_LEN], mp_pw_track *t,
                          size_t *track_len)
{
    const uint8_t *p = v->mv_data;
    size_t n;

    if (v->mv_size < PW_HDR)
        return corrupt("tracker");
    n = mpl_get_u16(p + 12);
    if (n > v->mv_size - PW_HDR || n > MP_PW_TRACK_MAX
        || v->mv_size - PW_HDR - n > MP_PW_COMMIT_MAX
        || mp_pw_track_decode(p + PW_HDR, n, t) != MP_OK
        || memcmp(t->commit_id, id, MP_HASH_LEN) != 0)
        return corrupt("tracker");
    *track_len = n;
    return MP_OK;
}

mp_status mps_pw_get(mps *s, const uint8_t commit_id[MP_HASH_LEN], mp_pw_track *out)
{
    mp_pw_track t;
    MDB_txn *txn = NULL;
    MDB_val v;
    size_t tlen;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || commit_id == NULL || out == NULL) {
        st = bad_arg("tracker lookup");
        goto out;
    }
    if ((st = begin(s, MDB_RDONLY, &txn)) != MP_OK)
        goto out;
    /* "Unknown" registers a fresh tracker: damage must not answer that. */
    if ((rc = get_rec(s, txn, T_PW, commit_id, MP_HASH_LEN, &v, &st)) < 0)
        goto out;
    if (rc == REC_ABSENT) {
        st = MP_ERR_UNKNOWN_COMMITMENT;
        goto out;
    }
    if ((st = pw_parse(&v, commit_id, &t, &tlen)) != MP_OK)
        goto out;
    memcpy(out, &t, sizeof t);
out:
    end(s, &txn);
    return st;
}

/* The retry record of one accepted payment, with its expiry index entry. */
static mp_status retry_put(mps *s, MDB_txn *txn, const uint8_t commit_id[MP_HASH_LEN],
                           const mps_pw_paid *pd)
{
    uint8_t key[RETRY_KEY_LEN], val[RETRY_VAL_LEN];
    uint64_t drop = pd->accepted_at > UINT64_MAX - MPS_RETRY_KEEP ? UINT64_MAX
                                                                  : pd->accepted_at + MPS_RETRY_KEEP;
    int rc;

    memcpy(key, commit_id, MP_HASH_LEN);
    mpl_put_u32(key + MP_HASH_LEN, pd->i);
    mpl_put_u64(val, drop);
    mpl_put_u64(val + 8, pd->accepted_at);
    mpl_put_u32(val + 16, pd->k);
    memcpy(val + 20, pd->w, MP_HASH_LEN);
    memcpy(val + 20 + MP_HASH_LEN, pd->tag, MP_PW_TAG_LEN);
    val[RETRY_VAL_LEN - 1] = 0;
    /* A word is accepted once, so (commitment, i) is new: an existing
     * record means the tracker and the records disagree. */
    if ((rc = put_rec(s, txn, T_RETRY, key, RETRY_KEY_LEN, val, RETRY_VAL_LEN,
                      MDB_NOOVERWRITE)) != 0)
        return rc == MDB_KEYEXIST ? corrupt("retry record of a word accepted twice")
                                  : lmdb_fail("retry write", rc);
    return expiry_add(s, txn, drop, KIND_RETRY, key, RETRY_KEY_LEN);
}

/* The retry test against the retry record of word i in txn; with write
 * set (a write transaction), a retry it answers is counted there. */
static mp_status pw_retry_check(mps *s, MDB_txn *txn, const uint8_t *key, uint32_t k,
                                const uint8_t w[MP_HASH_LEN], const uint8_t tag[MP_PW_TAG_LEN],
                                uint64_t now, uint32_t window, int write, int *found,
                                int *retry)
{
    uint8_t val[RETRY_VAL_LEN];
    const uint8_t *p;
    MDB_val v;
    uint64_t at;
    int rc;
    mp_status st = MP_OK;

    /* Damage must not answer "no record" either: the payment would then be
     * decided by the tracker, which may still remember it. */
    if ((rc = get_rec(s, txn, T_RETRY, key, RETRY_KEY_LEN, &v, &st)) < 0)
        return st;
    *found = rc != REC_ABSENT;
    if (rc == REC_ABSENT) {
        *retry = 0;
        return MP_OK;
    }
    if (v.mv_size != RETRY_VAL_LEN)
        return corrupt("retry record");
    p = v.mv_data;
    at = mpl_get_u64(p + 8);
    /* Word i was accepted: only the same payment for the same request,
     * within the window in force now, is its retry, MPS_RETRY_MAX times
     * at most (each runs the handler again); anything else with that word
     * overlaps an accepted interval. */
    if (window == 0 || now < at || now - at >= (uint64_t)window
        || mpl_get_u32(p + 16) != k
        || !mp_ct_equal(p + 20, MP_HASH_LEN, w, MP_HASH_LEN)
        || !mp_ct_equal(p + 20 + MP_HASH_LEN, MP_PW_TAG_LEN, tag, MP_PW_TAG_LEN)
        || p[RETRY_VAL_LEN - 1] >= MPS_RETRY_MAX)
        return MP_ERR_SPENT;
    if (write) {
        memcpy(val, p, RETRY_VAL_LEN);
        val[RETRY_VAL_LEN - 1]++;
        if ((rc = put_rec(s, txn, T_RETRY, key, RETRY_KEY_LEN, val, RETRY_VAL_LEN, 0)) != 0)
            return lmdb_fail("retry count", rc);
    }
    *retry = 1;
    return MP_OK;
}

mp_status mps_pw_retry_find(mps *s, const uint8_t commit_id[MP_HASH_LEN], uint32_t i,
                            uint32_t k, const uint8_t w[MP_HASH_LEN],
                            const uint8_t tag[MP_PW_TAG_LEN], uint64_t now, uint32_t window,
                            int *retry)
{
    uint8_t key[RETRY_KEY_LEN];
    MDB_txn *txn = NULL;
    int found = 0, r = 0;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || commit_id == NULL || w == NULL || tag == NULL || retry == NULL) {
        st = bad_arg("retry lookup");
        goto out;
    }
    memcpy(key, commit_id, MP_HASH_LEN);
    mpl_put_u32(key + MP_HASH_LEN, i);
    /* A read first (most payments find nothing, or a refusal); a retry it
     * would answer is decided again in a write transaction that counts it. */
    if ((st = begin(s, MDB_RDONLY, &txn)) != MP_OK)
        goto out;
    st = pw_retry_check(s, txn, key, k, w, tag, now, window, 0, &found, &r);
    end(s, &txn);
    if (st != MP_OK || !r)
        goto done;
    if ((st = begin(s, 0, &txn)) != MP_OK)
        goto out;
    if ((st = pw_retry_check(s, txn, key, k, w, tag, now, window, 1, &found, &r)) == MP_OK && r)
        st = commit(s, &txn);
done:
    if (st == MP_OK)
        *retry = r;
out:
    end(s, &txn);
    return st;
}

mp_status mps_pw_update(mps *s, const mp_pw_commit *first, uint64_t keep_until,
                        uint64_t expect_version, const mp_pw_track *next,
                        mps_pw_decide_fn decide, void *ctx, const mps_earning *earn,
                        const mps_pw_paid *paid, int *retry)
{
    uint8_t rec[PW_HDR + MP_PW_TRACK_MAX + MP_PW_COMMIT_MAX], lkey[LEDGER_KEY_LEN];
    const uint8_t *id, *p, *crec;
    mp_pw_track *cur = NULL, *mine = NULL;
    const mp_pw_track *nx = next;
    MDB_txn *txn = NULL;
    MDB_val v;
    uint64_t now, keep, old_keep = 0;
    size_t tlen, old_tlen = 0, clen;
    int rc, fresh = 0, again = 0;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || next == NULL || (decide != NULL && retry == NULL)
        || (first != NULL && (first->enc_len == 0 || first->enc_len > MP_PW_COMMIT_MAX
                              || memcmp(first->id, next->commit_id, MP_HASH_LEN) != 0))) {
        st = bad_arg("tracker update");
        goto out;
    }
    id = next->commit_id;
    if (earn != NULL && (st = ledger_key(earn, lkey)) != MP_OK)
        goto out;
    /* Two trackers (about 4 KiB each): off the stack of a server thread. */
    if ((cur = malloc(2 * sizeof *cur)) == NULL) {
        set_msg("store: out of memory");
        st = MP_ERR_NOMEM;
        goto out;
    }
    mine = cur + 1;
    if ((st = begin(s, 0, &txn)) != MP_OK)
        goto out;
    now = clock_now();
    /* Damage must not read as "unknown": that would register afresh. */
    if ((rc = get_rec(s, txn, T_PW, id, MP_HASH_LEN, &v, &st)) < 0)
        goto out;
    if (rc == REC_ABSENT) {
        if (first == NULL) {
            st = MP_ERR_UNKNOWN_COMMITMENT;
            goto out;
        }
        if ((st = mp_pw_track_init(first, cur)) != MP_OK) {
            set_msg("store: commitment gives no tracker: %s", mp_strerror(st));
            goto out;
        }
        fresh = 1;
    } else if ((st = pw_parse(&v, id, cur, &old_tlen)) != MP_OK) {
        goto out;
    }
    if (cur->version != expect_version) {
        if (decide == NULL) {
            set_msg("store: tracker changed concurrently");
            st = MP_ERR_BUSY;
            goto out;
        }
        /* Decided at this transaction's clock, on the tracker as stored. */
        if ((st = decide(ctx, cur, now, mine, &again)) != MP_OK)
            goto out;
        if (again) {
            st = MP_OK;         /* nothing to write: the abort below ends it */
            goto out;
        }
        nx = mine;
    }
    /* A version that does not move would let a stale writer overwrite a
     * newer tracker unnoticed. */
    if (nx->version <= cur->version || memcmp(nx->commit_id, id, MP_HASH_LEN) != 0) {
        st = bad_arg("tracker update");
        goto out;
    }
    /* The decision outside the lock was taken at an earlier clock. */
    if (now >= cur->expiry) {
        set_msg("store: commitment expired before its payment was written");
        st = MP_ERR_EXPIRED;
        goto out;
    }
    if ((st = mp_pw_track_encode(nx, rec + PW_HDR, MP_PW_TRACK_MAX, &tlen)) != MP_OK) {
        set_msg("store: tracker does not encode: %s", mp_strerror(st));
        goto out;
    }
    if (fresh) {
        keep = kept_until(cur->expiry, keep_until);
        mpl_put_u64(rec, keep);
        mpl_put_u32(rec + 8, 0);            /* nothing redeemed yet */
        crec = first->enc;
        clen = first->enc_len;
    } else {
        /* Copied out before the put: a value read in a write transaction
         * may live in a page the put rewrites. keep_until and the redeemed
         * word stay, but a tracker stored before MPS_MARGIN existed is
         * kept that long from now on. */
        p = v.mv_data;
        old_keep = mpl_get_u64(p);
        keep = kept_until(cur->expiry, old_keep);
        memcpy(rec, p, 12);
        mpl_put_u64(rec, keep);
        crec = p + PW_HDR + old_tlen;
        clen = v.mv_size - PW_HDR - old_tlen;
    }
    mpl_put_u16(rec + 12, (uint16_t)tlen);
    memmove(rec + PW_HDR + tlen, crec, clen);
    if ((rc = put_rec(s, txn, T_PW, id, MP_HASH_LEN, rec, PW_HDR + tlen + clen,
                      fresh ? MDB_NOOVERWRITE : 0)) != 0) {
        st = lmdb_fail("tracker write", rc);
        goto out;
    }
    if ((fresh || keep != old_keep)
        && (st = expiry_add(s, txn, keep, KIND_PW, id, MP_HASH_LEN)) != MP_OK)
        goto out;
    if (earn != NULL && (st = ledger_add(s, txn, lkey, earn)) != MP_OK)
        goto out;
    if (paid != NULL && (st = retry_put(s, txn, next->commit_id, paid)) != MP_OK)
        goto out;
    st = commit(s, &txn);
out:
    end(s, &txn);
    free(cur);
    if (st == MP_OK && retry != NULL)
        *retry = again;
    return st;
}

mp_status mps_pw_list(mps *s, mps_pw_list_cb cb, void *ctx)
{
    mp_pw_track *t = NULL;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    size_t tlen;
    const uint8_t *p;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || cb == NULL) {
        st = bad_arg("tracker listing");
        goto out;
    }
    if ((t = malloc(sizeof *t)) == NULL) {
        set_msg("store: out of memory");
        st = MP_ERR_NOMEM;
        goto out;
    }
    if ((st = read_cursor(s, T_PW, &txn, &cur)) != MP_OK)
        goto out;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if ((st = cursor_rec(T_PW, &k, &v)) != MP_OK)
            goto out;
        if (k.mv_size != MP_HASH_LEN) {
            st = corrupt("tracker key");
            goto out;
        }
        if ((st = pw_parse(&v, k.mv_data, t, &tlen)) != MP_OK)
            goto out;
        p = v.mv_data;
        if (v.mv_size - PW_HDR - tlen == 0) {
            st = corrupt("tracker");
            goto out;
        }
        if (cb(ctx, p + PW_HDR + tlen, v.mv_size - PW_HDR - tlen, t->last, t->w_last,
               mpl_get_u32(p + 8)) != 0)
            break;
    }
    st = mpl_walk_end(&SPEC, "tracker listing", rc);
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    end(s, &txn);
    free(t);
    return st;
}

mp_status mps_pw_mark_redeemed(mps *s, const uint8_t commit_id[MP_HASH_LEN], uint32_t last)
{
    uint8_t rec[PW_HDR + MP_PW_TRACK_MAX + MP_PW_COMMIT_MAX];
    mp_pw_track *t = NULL;
    MDB_txn *txn = NULL;
    MDB_val v;
    size_t tlen;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || commit_id == NULL) {
        st = bad_arg("redeem mark");
        goto out;
    }
    if ((t = malloc(sizeof *t)) == NULL) {
        set_msg("store: out of memory");
        st = MP_ERR_NOMEM;
        goto out;
    }
    if ((st = begin(s, 0, &txn)) != MP_OK)
        goto out;
    if ((rc = get_rec(s, txn, T_PW, commit_id, MP_HASH_LEN, &v, &st)) < 0)
        goto out;
    if (rc == REC_ABSENT) {
        st = MP_ERR_UNKNOWN_COMMITMENT;
        goto out;
    }
    if ((st = pw_parse(&v, commit_id, t, &tlen)) != MP_OK)
        goto out;
    if (last > t->last) {
        st = bad_arg("redeem mark: above the last accepted word");
        goto out;
    }
    if (last <= mpl_get_u32((const uint8_t *)v.mv_data + 8)) {
        st = MP_OK;             /* the stored mark only grows; nothing to write */
        goto out;
    }
    /* pw_parse bounds the record by PW_HDR + tracker + commitment maxima. */
    memcpy(rec, v.mv_data, v.mv_size);
    mpl_put_u32(rec + 8, last);
    if ((rc = put_rec(s, txn, T_PW, commit_id, MP_HASH_LEN, rec, v.mv_size, 0)) != 0) {
        st = lmdb_fail("tracker write", rc);
        goto out;
    }
    st = commit(s, &txn);
out:
    end(s, &txn);
    free(t);
    return st;
}

/* ---- prices -------------------------------------------------------------------- */

/* Builds "vendor NUL path"; 0 when either is invalid or the key would
 * exceed LMDB's limit. */
static size_t price_key(const mps *s, const char *vendor, const char *path, uint8_t *key)
{
    size_t vlen, plen;

    if ((vlen = vendor_prefix(vendor, key)) == 0 || path == NULL)
        return 0;
    plen = strnlen(path, MP_TARGET_MAX + 1);
    if (!price_path_valid(path, plen) || vlen + plen > s->maxkey)
        return 0;
    memcpy(key + vlen, path, plen);
    return vlen + plen;
}

mp_status mps_price_get(mps *s, const char *vendor, const char *path, size_t path_len,
                        mp_amount *out, int *found)
{
    uint8_t key[MP_NAME_MAX + 1 + MP_TARGET_MAX];
    MDB_txn *txn = NULL;
    MDB_val v;
    size_t vlen, len;
    mp_amount a;
    int rc, hit = 0;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || out == NULL || found == NULL || (vlen = vendor_prefix(vendor, key)) == 0
        || !price_path_valid(path, path_len)) {
        st = bad_arg("price lookup");
        goto out;
    }
    memcpy(key + vlen, path, path_len);
    if ((st = begin(s, MDB_RDONLY, &txn)) != MP_OK)
        goto out;
    /* The exact path, then each prefix ending in '/', longest first. A
     * key above the LMDB limit cannot have been stored: skip it. */
    len = path_len;
    do {
        if (vlen + len <= s->maxkey) {
            if ((rc = get_rec(s, txn, T_PRICES, key, vlen + len, &v, &st)) < 0)
                goto out;
            if (rc == 0) {
                if ((st = amount_decode(&v, &a)) != MP_OK)
                    goto out;
                hit = 1;
                break;
            }
        }
        while (--len > 0 && path[len - 1] != '/')
            ;
    } while (len > 0);
    if (hit)
        *out = a;
    *found = hit;
    st = MP_OK;
out:
    end(s, &txn);
    return st;
}

mp_status mps_price_set(mps *s, const char *vendor, const char *path, const mp_amount *a)
{
    uint8_t key[MP_NAME_MAX + 1 + MP_TARGET_MAX], buf[PRICE_VAL_LEN];
    MDB_txn *txn = NULL;
    size_t klen;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || a == NULL || !amount_valid(a)
        || (klen = price_key(s, vendor, path, key)) == 0) {
        st = bad_arg("price entry");
        goto out;
    }
    memcpy(buf, a->cur, 3);
    mpl_put_u64(buf + 3, a->units);
    if ((st = begin(s, 0, &txn)) != MP_OK)
        goto out;
    if ((rc = put_rec(s, txn, T_PRICES, key, klen, buf, sizeof buf, 0)) != 0) {
        st = lmdb_fail("price write", rc);
        goto out;
    }
    st = commit(s, &txn);
out:
    end(s, &txn);
    return st;
}

mp_status mps_price_del(mps *s, const char *vendor, const char *path)
{
    uint8_t key[MP_NAME_MAX + 1 + MP_TARGET_MAX];
    MDB_txn *txn = NULL;
    MDB_val k;
    size_t klen;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || (klen = price_key(s, vendor, path, key)) == 0) {
        st = bad_arg("price entry");
        goto out;
    }
    k = mpl_val(key, klen);
    if ((st = begin(s, 0, &txn)) != MP_OK)
        goto out;
    rc = mdb_del(txn, s->prices, &k, NULL);
    if (rc == MDB_NOTFOUND) {
        st = bad_arg("price entry: none for this path");
        goto out;
    }
    if (rc != 0) {
        st = lmdb_fail("price delete", rc);
        goto out;
    }
    st = commit(s, &txn);
out:
    end(s, &txn);
    return st;
}

mp_status mps_price_list(mps *s, const char *vendor, mps_price_cb cb, void *ctx)
{
    uint8_t prefix[MP_NAME_MAX + 1];
    char path[MP_TARGET_MAX + 1];
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    size_t vlen, plen;
    mp_amount a;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || cb == NULL || (vlen = vendor_prefix(vendor, prefix)) == 0) {
        st = bad_arg("price listing");
        goto out;
    }
    if ((st = read_cursor(s, T_PRICES, &txn, &cur)) != MP_OK)
        goto out;
    for (rc = mpl_prefix_get(cur, 1, prefix, vlen, &k, &v); rc == 0;
         rc = mpl_prefix_get(cur, 0, prefix, vlen, &k, &v)) {
        if ((st = cursor_rec(T_PRICES, &k, &v)) != MP_OK)
            goto out;
        plen = k.mv_size - vlen;
        if (plen == 0 || plen > MP_TARGET_MAX) {
            st = corrupt("price key");
            goto out;
        }
        if ((st = amount_decode(&v, &a)) != MP_OK)
            goto out;
        memcpy(path, (const uint8_t *)k.mv_data + vlen, plen);
        path[plen] = 0;
        if (cb(ctx, path, &a) != 0)
            break;
    }
    st = mpl_walk_end(&SPEC, "price listing", rc);
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    end(s, &txn);
    return st;
}

/* ---- ledger and maintenance ------------------------------------------------------- */

mp_status mps_ledger_list(mps *s, mps_ledger_cb cb, void *ctx)
{
    char path[MP_TARGET_MAX + 1], cur[4];
    MDB_txn *txn = NULL;
    MDB_cursor *c = NULL;
    MDB_val k, v;
    const uint8_t *kp, *vp;
    size_t plen;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || cb == NULL) {
        st = bad_arg("ledger listing");
        goto out;
    }
    if ((st = read_cursor(s, T_LEDGER, &txn, &c)) != MP_OK)
        goto out;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if ((st = cursor_rec(T_LEDGER, &k, &v)) != MP_OK)
            goto out;
        kp = k.mv_data;
        vp = v.mv_data;
        if (k.mv_size != LEDGER_KEY_LEN || v.mv_size < LEDGER_HDR
            || (plen = v.mv_size - LEDGER_HDR) > MP_TARGET_MAX) {
            st = corrupt("ledger line");
            goto out;
        }
        memcpy(cur, kp + 5, 3);
        cur[3] = 0;
        memcpy(path, vp + LEDGER_HDR, plen);
        path[plen] = 0;
        if (cb(ctx, mpl_get_u32(kp), kp[4], path, mpl_get_u64(vp), cur, mpl_get_u64(vp + 8)) != 0)
            break;
    }
    st = mpl_walk_end(&SPEC, "ledger listing", rc);
out:
    if (c != NULL)
        mdb_cursor_close(c);
    end(s, &txn);
    return st;
}

/* Compaction trusts neither an index entry nor the time of a record it
 * would delete before their checksums: a damaged time could otherwise
 * drop a spent record early, and its scrip would be accepted again. */
static int compact_check(void *ctx, uint8_t kind, const MDB_val *k, const MDB_val *v)
{
    unsigned t = kind == 0 ? T_EXPIRY : kind == KIND_SPENT ? T_SPENT
                 : kind == KIND_PW ? T_PW : T_RETRY;

    (void)ctx;
    if (sealed_ok(t, k, v))
        return 0;
    set_msg("store: damaged record in table %s (checksum mismatch): compaction stopped; run "
            "mpadmin store verify, and restore the store from a backup", db_names[t]);
    return 1;
}

/* Compaction of the records indexed as due at now (mpl_compact), inside
 * txn; *more is set when max stopped it. */
static mp_status compact_txn(mps *s, MDB_txn *txn, uint64_t now, size_t max,
                             size_t *removed, int *more)
{
    const mpl_kind kinds[] = {          /* KIND_SPENT, KIND_PW, KIND_RETRY: the time leads */
        { s->spent, 0 }, { s->pw, 0 }, { s->retry, 0 }
    };

    return mpl_compact_checked(&SPEC, txn, s->expiry, kinds, 3, EXPIRY_KEY_MAX, now, max,
                               removed, more, compact_check, NULL);
}

/* One batch of the ledger's roll-up, inside txn: up to max lines of days
 * more than MPS_LEDGER_KEEP_DAYS before now's are each added into their
 * day's "*" line of the same scheme and currency, and deleted; *more is
 * set when max stopped it. A line whose sum would overflow stays as it
 * is (its totals are exact either way). */
static mp_status ledger_rollup(mps *s, MDB_txn *txn, uint64_t now, size_t max, int *more)
{
    typedef struct { uint8_t key[LEDGER_KEY_LEN]; uint64_t units, count; } old_line;
    old_line *b = NULL;
    uint8_t okey[LEDGER_KEY_LEN], buf[LEDGER_HDR + 1];
    uint64_t units, count, day = now / 86400;
    MDB_cursor *c = NULL;
    MDB_val k, v;
    size_t n = 0, i;
    int rc;
    mp_status st = MP_OK;

    if (day <= MPS_LEDGER_KEEP_DAYS || max == 0)
        goto out;
    day -= MPS_LEDGER_KEEP_DAYS;          /* the first day kept per path */
    if ((b = calloc(max, sizeof *b)) == NULL) {
        set_msg("store: out of memory");
        st = MP_ERR_NOMEM;
        goto out;
    }
    if ((st = other_key(b[0].key, okey)) != MP_OK)  /* for okey + 8, the "*" hash */
        goto out;
    if ((rc = mdb_cursor_open(txn, s->ledger, &c)) != 0) {
        c = NULL;
        st = lmdb_fail("read", rc);
        goto out;
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if ((st = cursor_rec(T_LEDGER, &k, &v)) != MP_OK)
            goto out;
        if (k.mv_size != LEDGER_KEY_LEN || v.mv_size < LEDGER_HDR) {
            st = corrupt("ledger line");
            goto out;
        }
        if (mpl_get_u32(k.mv_data) >= day)
            break;
        if (memcmp((const uint8_t *)k.mv_data + 8, okey + 8, 16) == 0)
            continue;                     /* a "*" line already */
        if (n == max) {
            *more = 1;
            break;
        }
        memcpy(b[n].key, k.mv_data, LEDGER_KEY_LEN);
        b[n].units = mpl_get_u64(v.mv_data);
        b[n].count = mpl_get_u64((const uint8_t *)v.mv_data + 8);
        n++;
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        st = lmdb_fail("read", rc);
        goto out;
    }
    mdb_cursor_close(c);
    c = NULL;
    for (i = 0; i < n; i++) {
        if ((st = other_key(b[i].key, okey)) != MP_OK)
            goto out;
        units = count = 0;
        if ((rc = get_rec(s, txn, T_LEDGER, okey, LEDGER_KEY_LEN, &v, &st)) < 0)
            goto out;
        if (rc == REC_FOUND) {
            if (v.mv_size < LEDGER_HDR) {
                st = corrupt("ledger line");
                goto out;
            }
            units = mpl_get_u64(v.mv_data);
            count = mpl_get_u64((const uint8_t *)v.mv_data + 8);
        }
        if (units > MP_AMOUNT_MAX - b[i].units || count > UINT64_MAX - b[i].count)
            continue;
        mpl_put_u64(buf, units + b[i].units);
        mpl_put_u64(buf + 8, count + b[i].count);
        buf[LEDGER_HDR] = MPS_LEDGER_OTHER[0];
        k = mpl_val(b[i].key, LEDGER_KEY_LEN);
        if ((rc = put_rec(s, txn, T_LEDGER, okey, LEDGER_KEY_LEN, buf, sizeof buf, 0)) != 0
            || (rc = mdb_del(txn, s->ledger, &k, NULL)) != 0) {
            st = lmdb_fail("ledger roll-up", rc);
            goto out;
        }
    }
    st = MP_OK;
out:
    if (c != NULL)
        mdb_cursor_close(c);
    free(b);
    return st;
}

/* Frees the reader slots of dead processes (an Apache child killed inside
 * a read transaction holds one, and with it every page freed since). */
static void clear_stale_readers(mps *s)
{
    int dead;

    (void)mdb_reader_check(s->env, &dead);
}

mp_status mps_compact(mps *s, uint64_t now, size_t max, size_t *removed)
{
    MDB_txn *txn = NULL;
    size_t n = 0;
    int more;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || removed == NULL) {
        st = bad_arg("compaction arguments");
        goto out;
    }
    clear_stale_readers(s);
    if ((st = begin(s, 0, &txn)) != MP_OK)
        goto out;
    if ((st = compact_txn(s, txn, now, max, &n, &more)) != MP_OK
        || (st = ledger_rollup(s, txn, now, max, &more)) != MP_OK)
        goto out;
    if ((st = commit(s, &txn)) != MP_OK)
        goto out;
    *removed = n;
out:
    end(s, &txn);
    return st;
}

/* *due = 1 when the recorded compaction is interval or more before now
 * (or after it: the clock went back). */
static mp_status compact_due(mps *s, MDB_txn *txn, uint64_t now, uint64_t interval, int *due)
{
    MDB_val v;
    uint64_t last = 0;
    int rc;
    mp_status st = MP_ERR_STORE;

    if ((rc = get_rec(s, txn, T_META, (const uint8_t *)"last_compact", 12, &v, &st)) < 0)
        return st;
    if (rc == 0 && v.mv_size == 8)
        last = mpl_get_u64(v.mv_data);
    *due = last > now || now - last >= interval;
    return MP_OK;
}

static mp_status set_last_compact(mps *s, MDB_txn *txn, uint64_t now)
{
    uint8_t buf[8];
    int rc;

    mpl_put_u64(buf, now);
    if ((rc = put_rec(s, txn, T_META, (const uint8_t *)"last_compact", 12, buf, 8, 0)) != 0)
        return lmdb_fail("meta write", rc);
    return MP_OK;
}

mp_status mps_maybe_compact(mps *s, uint64_t now, uint64_t interval, size_t *removed)
{
    char msg[MPL_MSG_MAX];
    MDB_txn *txn = NULL;
    size_t n = 0;
    int due = 0, more = 0;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || removed == NULL) {
        st = bad_arg("compaction arguments");
        goto out;
    }
    if ((st = begin(s, MDB_RDONLY, &txn)) != MP_OK)
        goto out;
    st = compact_due(s, txn, now, interval, &due);
    end(s, &txn);
    if (st != MP_OK || !due)
        goto out;
    /* The timer of the stale reader slots too: a child killed in a read
     * transaction pins every page freed after it, until this runs. */
    clear_stale_readers(s);
    if ((st = begin(s, 0, &txn)) != MP_OK)
        goto out;
    /* Another process may have compacted while we waited for the lock. */
    if ((st = compact_due(s, txn, now, interval, &due)) != MP_OK || !due)
        goto out;
    if ((st = compact_txn(s, txn, now, COMPACT_BATCH, &n, &more)) != MP_OK
        || (st = ledger_rollup(s, txn, now, COMPACT_BATCH, &more)) != MP_OK) {
        /* Damage stopped it: say so once an interval, not on every request
         * (the time is recorded in a transaction of its own). */
        end(s, &txn);
        snprintf(msg, sizeof msg, "%s", mps_errmsg(s));
        if (begin(s, 0, &txn) == MP_OK && set_last_compact(s, txn, now) == MP_OK)
            (void)commit(s, &txn);
        set_msg("%s", msg);
        goto out;
    }
    /* With a backlog left, the time stays old so the next call continues. */
    if (!more && (st = set_last_compact(s, txn, now)) != MP_OK)
        goto out;
    st = commit(s, &txn);
out:
    end(s, &txn);
    if (st == MP_OK)
        *removed = n;
    return st;
}

mp_status mps_stat(mps *s, mps_stats *out)
{
    MDB_txn *txn = NULL;
    MDB_stat ms;
    mps_stats r;
    MDB_dbi dbis[6];
    size_t *dst[6], i;
    int rc = 0;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || out == NULL) {
        st = bad_arg("stat arguments");
        goto out;
    }
    dbis[0] = s->spent;  dst[0] = &r.spent;
    dbis[1] = s->pw;     dst[1] = &r.pw;
    dbis[2] = s->prices; dst[2] = &r.prices;
    dbis[3] = s->ledger; dst[3] = &r.ledger;
    dbis[4] = s->expiry; dst[4] = &r.expiry_index;
    dbis[5] = s->retry;  dst[5] = &r.retry;
    if ((st = begin(s, MDB_RDONLY, &txn)) != MP_OK)
        goto out;
    for (i = 0; i < 6; i++) {
        if ((rc = mdb_stat(txn, dbis[i], &ms)) != 0) {
            st = lmdb_fail("stat", rc);
            goto out;
        }
        *dst[i] = ms.ms_entries;
    }
    *out = r;
    st = MP_OK;
out:
    end(s, &txn);
    return st;
}

/* ---- verify and upgrade ------------------------------------------------------------ */

static int key_is(const MDB_val *k, const char *s)
{
    return k->mv_size == strlen(s) && memcmp(k->mv_data, s, k->mv_size) == 0;
}

/* "vendor NUL" then rest bytes: the vendor's length, or 0. */
static size_t vendor_key(const MDB_val *k, size_t rest)
{
    const uint8_t *p = k->mv_data;
    size_t n;

    if (k->mv_size < rest + 2)
        return 0;
    n = k->mv_size - rest - 1;
    if (n == 0 || n > MP_NAME_MAX || p[n] != 0 || memchr(p, 0, n) != NULL)
        return 0;
    return n;
}

/* What is wrong with the record k -> v of table t (sealed: its value ends
 * in the checksum), or NULL. */
static const char *record_problem(unsigned t, const MDB_val *k, const MDB_val *val, int sealed)
{
    MDB_val v = *val;
    const uint8_t *kp = k->mv_data, *p;
    uint8_t h[MP_HASH_LEN];
    mp_pw_track *tr;
    spent_rec sr;
    mp_amount a;
    char cur[4];
    size_t n, tlen;
    uint64_t next;
    const char *why = NULL;

    if (is_format(t, k))
        return NULL;            /* compared by every open */
    if (sealed) {
        if (!sealed_ok(t, k, &v))
            return "checksum mismatch: the record or its key is damaged";
        v.mv_size -= CRC_LEN;
    }
    p = v.mv_data;
    switch (t) {
    case T_META:
        if (key_is(k, "last_compact"))
            return v.mv_size == 8 ? NULL : "last compaction time of the wrong size";
        return "unknown meta record";
    case T_SPENT:
        if (vendor_key(k, 8) == 0)
            return "spent key is not vendor NUL scrip id";
        return spent_parse(&v, &sr) == MP_OK ? NULL : "spent record does not parse";
    case T_PW:
        if (k->mv_size != MP_HASH_LEN)
            return "tracker key is not a commitment id";
        if ((tr = malloc(sizeof *tr)) == NULL)
            return "out of memory";
        if (pw_parse(&v, kp, tr, &tlen) != MP_OK || v.mv_size - PW_HDR - tlen == 0)
            why = "tracker does not parse or has no commitment";
        free(tr);
        return why;
    case T_LEDGER:
        if (k->mv_size != LEDGER_KEY_LEN || v.mv_size < LEDGER_HDR
            || v.mv_size - LEDGER_HDR > MP_TARGET_MAX
            || (kp[4] != MP_SCHEME_MILLICENT && kp[4] != MP_SCHEME_PAYWORD))
            return "ledger line does not parse";
        memcpy(cur, kp + 5, 3);
        cur[3] = 0;
        if (!mp_currency_valid(cur) || mpl_get_u64(p) > MP_AMOUNT_MAX)
            return "ledger line has no valid amount";
        if (mp_sha256(p + LEDGER_HDR, v.mv_size - LEDGER_HDR, h) != MP_OK
            || memcmp(h, kp + 8, 16) != 0)
            return "ledger line's path does not match its key";
        return NULL;
    case T_PRICES:
        if ((n = vendor_key(k, 0)) == 0 && k->mv_size > 1)
            for (n = 1; n < k->mv_size && n <= MP_NAME_MAX && kp[n] != 0; n++)
                ;
        if (n == 0 || n > MP_NAME_MAX || n + 1 >= k->mv_size || kp[n] != 0
            || memchr(kp, 0, n) != NULL
            || !price_path_valid((const char *)kp + n + 1, k->mv_size - n - 1))
            return "price key is not vendor NUL path";
        return amount_decode(&v, &a) == MP_OK ? NULL : "price does not parse";
    case T_RETRY:
        if (k->mv_size != RETRY_KEY_LEN || mpl_get_u32(kp + MP_HASH_LEN) == 0)
            return "retry key is not a commitment id and a word index";
        if (v.mv_size != RETRY_VAL_LEN || mpl_get_u32(p + 16) == 0
            || mpl_get_u32(p + 16) > mpl_get_u32(kp + MP_HASH_LEN)
            || p[RETRY_VAL_LEN - 1] > MPS_RETRY_MAX
            || mpl_get_u64(p) < mpl_get_u64(p + 8))
            return "retry record does not parse";
        return NULL;
    case T_IDS:
        if (vendor_key(k, 2) == 0)
            return "id counter key is not vendor NUL series";
        if (v.mv_size != 8 || (next = mpl_get_u64(p)) == 0 || next > SEQ_LIMIT)
            return "id counter out of range";
        return NULL;
    default:
        if (v.mv_size != 0 || k->mv_size < 10 || k->mv_size > EXPIRY_KEY_MAX)
            return "expiry index entry does not parse";
        if (kp[8] == KIND_SPENT)
            return k->mv_size - 9 >= 10 ? NULL : "expiry index entry names no spent key";
        if (kp[8] == KIND_PW)
            return k->mv_size - 9 == MP_HASH_LEN ? NULL : "expiry index entry names no tracker";
        if (kp[8] == KIND_RETRY)
            return k->mv_size - 9 == RETRY_KEY_LEN ? NULL
                                                   : "expiry index entry names no retry record";
        return "expiry index entry of an unknown kind";
    }
}

typedef struct {
    mps_damage_cb cb;
    void         *ctx;
    int           sealed;
    char          first[MPL_MSG_MAX];
} vctx;

static const char *verify_rec(void *ctx, size_t t, const MDB_val *k, const MDB_val *v)
{
    return record_problem((unsigned)t, k, v, ((vctx *)ctx)->sealed);
}

static void verify_dmg(void *ctx, const char *table, const MDB_val *key, const char *what)
{
    vctx *c = ctx;

    if (c->first[0] == 0)
        snprintf(c->first, sizeof c->first, "%s: %s", table, what);
    if (c->cb != NULL)
        c->cb(c->ctx, table, key ? key->mv_data : NULL, key ? key->mv_size : 0, what);
}

/* Every spent record and tracker has its expiry index entry (else a
 * damaged entry would keep it for ever). Only on a store whose pages
 * passed, in the same transaction. */
static mp_status check_index(mps *s, MDB_txn *txn, vctx *vc, mps_report *out)
{
    static const unsigned tables[3] = { T_SPENT, T_PW, T_RETRY };
    static const uint8_t kinds[3] = { KIND_SPENT, KIND_PW, KIND_RETRY };
    uint8_t ekey[MPL_KEY_MAX];
    MDB_cursor *c = NULL;
    MDB_val k, v, ek, ev;
    size_t i;
    int rc;

    for (i = 0; i < 3; i++) {
        if ((rc = mdb_cursor_open(txn, dbi_of(s, tables[i]), &c)) != 0)
            return lmdb_fail("verify", rc);
        for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            if (!sealed_ok(tables[i], &k, &v) || v.mv_size < 8 + CRC_LEN
                || k.mv_size > MPL_KEY_MAX - 9)
                continue;       /* reported by the walk */
            ek = mpl_val(ekey, mpl_expiry_key(ekey, mpl_get_u64(v.mv_data),
                                              kinds[i], k.mv_data,
                                              k.mv_size));
            if ((rc = mdb_get(txn, s->expiry, &ek, &ev)) == 0)
                continue;
            if (rc != MDB_NOTFOUND)
                break;
            out->problems++;
            out->tables[tables[i]].damaged++;
            verify_dmg(vc, db_names[tables[i]], &k, "no expiry index entry: compaction "
                       "would never drop it (the entry's key is damaged)");
        }
        mdb_cursor_close(c);
        c = NULL;
        if (rc != MDB_NOTFOUND)
            return lmdb_fail("verify", rc);
    }
    return MP_OK;
}

/* mpl_check on s in a transaction of its own (taken again while writers
 * replace its meta page); the transaction stays open in *txn on MP_OK. */
static mp_status check_pages(mps *s, int level, uint64_t leaf_budget, vctx *vc,
                             mpl_check_stats *cs, MDB_txn **txn)
{
    int tries;
    mp_status st = MP_ERR_BUSY;

    for (tries = 0; tries < 100 && st == MP_ERR_BUSY; tries++) {
        if ((st = begin(s, MDB_RDONLY, txn)) != MP_OK)
            return st;
        st = mpl_check(&SPEC, s->env, *txn, level, leaf_budget, vc->sealed >= 0 ? verify_rec
                       : NULL, verify_dmg, vc, cs);
        if (st != MP_OK)
            end(s, txn);
    }
    return st;
}

mp_status mps_verify(const char *dir, uint64_t leaf_budget, mps_damage_cb cb, void *ctx,
                     mps_report *out, char *err, size_t errlen)
{
    mpl_check_stats cs;
    MDB_txn *txn = NULL;
    vctx vc;
    mps *s = NULL;
    uint64_t bad = 0;
    size_t t;
    int dmg = 0;
    mp_status st;

    if (out == NULL) {
        mpl_err(err, errlen, "invalid store arguments");
        return MP_ERR_ARG;
    }
    memset(out, 0, sizeof *out);
    for (t = 0; t < NDBS; t++)
        out->tables[t].name = db_names[t];
    memset(&vc, 0, sizeof vc);
    vc.cb = cb;
    vc.ctx = ctx;
    vc.sealed = 1;
    if ((st = open_shared(dir, MPS_RDONLY, 0, &s, &dmg, err, errlen)) != MP_OK) {
        if (!dmg)
            return st;
        /* The meta or a root page: nothing more can be read safely. */
        out->problems = 1;
        if (cb != NULL)
            cb(ctx, "file", NULL, 0, err);
        return MP_OK;
    }
    st = check_pages(s, leaf_budget ? MPL_CHECK_SAMPLE : MPL_CHECK_FULL, leaf_budget, &vc, &cs,
                     &txn);
    if (st != MP_OK) {
        mpl_err(err, errlen, "%s", st == MP_ERR_BUSY ? "store: too many concurrent commits to "
                "check it; try again" : mps_errmsg(s));
        mps_close(s);
        return st;
    }
    for (t = 0; t < NDBS; t++) {
        out->tables[t].records = cs.records[t];
        out->tables[t].damaged = cs.bad_records[t];
        bad += cs.bad_records[t];
    }
    out->problems = cs.problems;
    out->pages = cs.pages;
    out->pages_read = cs.pages_read;
    out->pages_free = cs.pages_free;
    out->pages_unaccounted = cs.pages_unaccounted;
    out->complete = cs.complete;
    /* LMDB walks the tables only once their pages passed. */
    if (cs.problems == bad && cs.complete && (st = check_index(s, txn, &vc, out)) != MP_OK)
        mpl_err(err, errlen, "%s", mps_errmsg(s));
    end(s, &txn);
    mps_close(s);
    return st;
}

/* 1 when a process other than this one has the environment in dir open:
 * LMDB holds a shared lock on the first byte of its lock file while it
 * does (mdb_env_excl_lock). *pid gets one of them. */
static int in_use(const char *dir, long *pid)
{
    char lock[4096];
    struct flock fl;
    int fd, used = 0;

    if (snprintf(lock, sizeof lock, "%s/lock.mdb", dir) >= (int)sizeof lock
        || (fd = open(lock, O_RDWR | O_CLOEXEC)) < 0)
        return 0;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) {
        used = 1;
        *pid = (long)fl.l_pid;
    }
    close(fd);
    return used;
}

/* Reads the upgrade's position: the table it is in and the last key it
 * converted there (*klen 0: none yet). */
static mp_status upgrade_pos(mps *s, MDB_txn *txn, unsigned *t, uint8_t *key, size_t *klen)
{
    MDB_val k = mpl_val("upgrade", 7), v;
    int rc;

    if ((rc = mdb_get(txn, s->meta, &k, &v)) != 0)
        return rc == MDB_NOTFOUND ? corrupt("upgrade position") : lmdb_fail("meta read", rc);
    if (v.mv_size < 1 || v.mv_size > 1 + MPL_KEY_MAX || ((const uint8_t *)v.mv_data)[0] > T_EXPIRY)
        return corrupt("upgrade position");
    *t = ((const uint8_t *)v.mv_data)[0];
    *klen = v.mv_size - 1;
    memcpy(key, (const uint8_t *)v.mv_data + 1, *klen);
    return MP_OK;
}

static mp_status upgrade_set(mps *s, MDB_txn *txn, const char *name, const void *val,
                             size_t len)
{
    MDB_val k = mpl_val(name, strlen(name)), v = mpl_val(val, len);
    int rc;

    if ((rc = mdb_put(txn, s->meta, &k, &v, 0)) != 0)
        return lmdb_fail("meta write", rc);
    return MP_OK;
}

/* One transaction of the upgrade: up to UPGRADE_BATCH records of the
 * table the position names get their checksum; *done when none is left. */
static mp_status upgrade_batch(mps *s, uint8_t *buf, uint64_t *converted, int *done)
{
    uint8_t key[MPL_KEY_MAX], pos[1 + MPL_KEY_MAX];
    MDB_txn *txn = NULL;
    MDB_cursor *c = NULL;
    MDB_val k, v, nv;
    unsigned t = T_META;
    size_t klen = 0, n = 0;
    int rc;
    mp_status st;

    *done = 0;
    if ((st = begin(s, 0, &txn)) != MP_OK)
        return st;
    if ((st = upgrade_pos(s, txn, &t, key, &klen)) != MP_OK)
        goto out;
    if (t == T_META) {
        /* Every other table is done: the meta record, then the format. */
        k = mpl_val("last_compact", 12);
        if ((rc = mdb_get(txn, s->meta, &k, &v)) == 0 && v.mv_size == 8) {
            memcpy(buf, v.mv_data, 8);
            if ((rc = put_rec(s, txn, T_META, k.mv_data, 12, buf, 8, 0)) != 0) {
                st = lmdb_fail("meta write", rc);
                goto out;
            }
        } else if (rc != 0 && rc != MDB_NOTFOUND) {
            st = lmdb_fail("meta read", rc);
            goto out;
        }
        k = mpl_val("upgrade", 7);
        if ((rc = mdb_del(txn, s->meta, &k, NULL)) != 0) {
            st = lmdb_fail("meta write", rc);
            goto out;
        }
        if ((st = upgrade_set(s, txn, "format", FORMAT, strlen(FORMAT))) != MP_OK)
            goto out;
        *done = 1;
        st = commit(s, &txn);
        goto out;
    }
    if ((rc = mdb_cursor_open(txn, dbi_of(s, t), &c)) != 0) {
        st = lmdb_fail("upgrade", rc);
        goto out;
    }
    k = mpl_val(key, klen);
    rc = mdb_cursor_get(c, &k, &v, klen ? MDB_SET_RANGE : MDB_FIRST);
    if (rc == 0 && klen && k.mv_size == klen && memcmp(k.mv_data, key, klen) == 0)
        rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    for (; rc == 0 && n < UPGRADE_BATCH; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), n++) {
        if (k.mv_size > MPL_KEY_MAX || v.mv_size > UPGRADE_VAL_MAX) {
            st = corrupt("record");
            goto out;
        }
        klen = k.mv_size;
        memcpy(key, k.mv_data, klen);
        memcpy(buf, v.mv_data, v.mv_size);
        mpl_put_u32(buf + v.mv_size, rec_crc(t, key, klen, buf, v.mv_size));
        k = mpl_val(key, klen);
        nv = mpl_val(buf, v.mv_size + CRC_LEN);
        if ((rc = mdb_cursor_put(c, &k, &nv, MDB_CURRENT)) != 0) {
            st = lmdb_fail("upgrade write", rc);
            goto out;
        }
        (*converted)++;
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        st = lmdb_fail("upgrade read", rc);
        goto out;
    }
    mdb_cursor_close(c);
    c = NULL;
    if (rc == MDB_NOTFOUND) {           /* the table is done: the next one */
        pos[0] = (uint8_t)(t == T_EXPIRY ? T_META : t + 1);
        klen = 0;
    } else {
        pos[0] = (uint8_t)t;
        memcpy(pos + 1, key, klen);
    }
    if ((st = upgrade_set(s, txn, "upgrade", pos, 1 + klen)) != MP_OK)
        goto out;
    st = commit(s, &txn);
out:
    if (c != NULL)
        mdb_cursor_close(c);
    end(s, &txn);
    return st;
}

/* Format 3 to 4, on a writable handle of a format-3 store (the retry
 * table is there now): the pages and every record are checked as
 * mps_verify checks them, then the format changes in one commit. */
static mp_status upgrade_3(mps *s, const char *dir, uint64_t *converted, char *err,
                           size_t errlen)
{
    mpl_check_stats cs;
    MDB_txn *txn = NULL;
    vctx vc;
    size_t t;
    mp_status st;

    memset(&vc, 0, sizeof vc);
    vc.sealed = 1;
    if ((st = check_pages(s, MPL_CHECK_FULL, 0, &vc, &cs, &txn)) != MP_OK) {
        mpl_err(err, errlen, "%s", mps_errmsg(s));
        goto out;
    }
    end(s, &txn);
    if (cs.problems != 0) {
        mpl_err(err, errlen, "store %s is damaged (%llu problems; the first: %s): not upgraded; "
                "restore it from a backup", dir, (unsigned long long)cs.problems, vc.first);
        st = MP_ERR_STORE;
        goto out;
    }
    if ((st = begin(s, 0, &txn)) != MP_OK
        || (st = upgrade_set(s, txn, "format", FORMAT, strlen(FORMAT))) != MP_OK
        || (st = commit(s, &txn)) != MP_OK) {
        mpl_err(err, errlen, "%s", mps_errmsg(s));
        goto out;
    }
    if (mdb_env_sync(s->env, 1) != 0) {
        mpl_err(err, errlen, "store %s: sync failed", dir);
        st = MP_ERR_STORE;
        goto out;
    }
    for (t = 0; t < NDBS; t++)
        *converted += cs.records[t];
out:
    end(s, &txn);
    return st;
}

mp_status mps_upgrade(const char *dir, uint64_t *converted, int *already, char *err,
                      size_t errlen)
{
    static const uint8_t start[1] = { T_SPENT };
    char other[MPL_MSG_MAX];
    mpl_check_stats cs;
    MDB_txn *txn = NULL;
    uint8_t *buf = NULL;
    struct stat sb;
    vctx vc;
    mps *s = NULL, *r;
    long pid = 0;
    int fresh = 1, done = 0;
    mp_status st;

    if (dir == NULL || converted == NULL || already == NULL) {
        mpl_err(err, errlen, "invalid store arguments");
        return MP_ERR_ARG;
    }
    *converted = 0;
    *already = 0;
    r = NULL;
    if (stat(dir, &sb) == 0) {
        pthread_mutex_lock(&registry_lock);
        for (r = registry; r != NULL; r = r->next)
            if (r->dev == sb.st_dev && r->ino == sb.st_ino && r->pid == getpid())
                break;
        pthread_mutex_unlock(&registry_lock);
    }
    if (r != NULL || in_use(dir, &pid)) {
        mpl_err(err, errlen, "store %s is open in process %ld: stop Apache (and mpadmin) first",
                dir, r != NULL ? (long)getpid() : pid);
        return MP_ERR_BUSY;
    }
    if ((st = open_handle(dir, MPS_RDONLY, 0, NULL, &s, NULL, err, errlen)) == MP_OK) {
        close_handle(s);
        *already = 1;
        return MP_OK;
    }
    /* Format 3 has every record as format 4 reads it: the retry table is
     * added by the writable open, and its spends, which have no accepted
     * time, are never answered as retries. */
    if (open_handle(dir, 0, MPS_MAP_SIZE_DEFAULT, FORMAT_3, &s, NULL, other, sizeof other)
        == MP_OK) {
        st = upgrade_3(s, dir, converted, err, errlen);
        close_handle(s);
        return st;
    }
    /* Nobody else maps it: the records grow by their checksums, and a
     * store restored by mdb_copy has no room to spare, so the map is what
     * mpadmin store init gives (or the file, when larger). */
    if (open_handle(dir, 0, MPS_MAP_SIZE_DEFAULT, FORMAT_2, &s, NULL, other, sizeof other)
        != MP_OK) {
        if (open_handle(dir, 0, MPS_MAP_SIZE_DEFAULT, FORMAT_UPGRADE, &s, NULL, other,
                        sizeof other) != MP_OK)
            return st;          /* not ours, or not there: the first reason says */
        fresh = 0;
    }
    /* A fresh upgrade blesses what is there with checksums: every record
     * must parse first, and the pages must hold. A resumed one checks the
     * pages (its records are half converted). */
    memset(&vc, 0, sizeof vc);
    vc.sealed = fresh ? 0 : -1;
    if ((st = check_pages(s, MPL_CHECK_FULL, 0, &vc, &cs, &txn)) != MP_OK) {
        mpl_err(err, errlen, "%s", mps_errmsg(s));
        goto out;
    }
    end(s, &txn);
    if (cs.problems != 0) {
        mpl_err(err, errlen, "store %s is damaged (%llu problems; the first: %s): not upgraded; "
                "restore it from a backup", dir, (unsigned long long)cs.problems, vc.first);
        st = MP_ERR_STORE;
        goto out;
    }
    if ((buf = malloc(UPGRADE_VAL_MAX + CRC_LEN)) == NULL) {
        mpl_err(err, errlen, "store %s: out of memory", dir);
        st = MP_ERR_NOMEM;
        goto out;
    }
    if (fresh) {
        if ((st = begin(s, 0, &txn)) != MP_OK
            || (st = upgrade_set(s, txn, "format", FORMAT_UPGRADE, strlen(FORMAT_UPGRADE)))
               != MP_OK
            || (st = upgrade_set(s, txn, "upgrade", start, 1)) != MP_OK
            || (st = commit(s, &txn)) != MP_OK) {
            mpl_err(err, errlen, "%s", mps_errmsg(s));
            goto out;
        }
    }
    while (!done)
        if ((st = upgrade_batch(s, buf, converted, &done)) != MP_OK) {
            mpl_err(err, errlen, "%s (run the upgrade again: it goes on where it stopped)",
                    mps_errmsg(s));
            goto out;
        }
    if (mdb_env_sync(s->env, 1) != 0) {
        mpl_err(err, errlen, "store %s: sync failed", dir);
        st = MP_ERR_STORE;
    }
out:
    end(s, &txn);
    free(buf);
    close_handle(s);
    return st;
}
