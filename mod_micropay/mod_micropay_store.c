/*
 * mod_micropay_store.c - the vendor's durable state in LMDB (the contract
 * is in mod_micropay_store.h).
 *
 * Records (integers big-endian, so keys sort by number):
 *   meta    "format" -> "mod_micropay-store-2"; "last_compact" -> u64
 *   spent   vendor NUL u64 id       -> u64 time | u64 expiry | u8 flags | 32 req_sig
 *                                      | u16 reply_len | reply
 *                                      | u16 payment_len | payment
 *                                      | u8 method_len | method | u8 host_len | host
 *                                      | u16 target_len | target
 *           time is when compaction may drop the record: keep_until while
 *           undeposited, expiry once flags has SPENT_DEPOSITED
 *   pw      32 commitment id        -> u64 keep_until | u32 redeemed | u16 track_len
 *                                      | track | commitment
 *   ledger  u32 day | u8 scheme | 3 currency | 16 SHA-256(path) prefix
 *                                   -> u64 units | u64 count | path
 *   prices  vendor NUL path         -> 3 currency | u64 units
 *   ids     vendor NUL u16 series   -> u64 next sequence
 *   expiry  u64 time | u8 kind | key of the record -> empty
 * The expiry index starts with the time so that compaction reads only the
 * records that are due, from the front.
 * Creating, opening, the expiry index and its compaction are the plumbing
 * shared with the broker store (mod_micropay_lmdb.c).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include "mod_micropay_lmdb.h"
#include "mod_micropay_store.h"

#define FORMAT          "mod_micropay-store-2"
#define NDBS            7
#define KIND_SPENT      1
#define KIND_PW         2
#define SPENT_HDR       (8 + 8 + 1 + MP_HASH_LEN)
#define SPENT_DEPOSITED 0x01
/* The largest spent record: header, reply, payment, method, host, target. */
#define SPENT_REC_MAX   (SPENT_HDR + 2 + MP_WIRE_MAX + 2 + MP_WIRE_MAX + 1 + MP_METHOD_MAX \
                         + 1 + MP_HOST_MAX + 2 + MP_TARGET_MAX)
#define SPENT_KEY_MAX   (MP_NAME_MAX + 1 + 8)
#define PW_HDR          (8 + 4 + 2)
#define EXPIRY_KEY_MAX  (8 + 1 + SPENT_KEY_MAX)
#define LEDGER_KEY_LEN  (4 + 1 + 3 + 16)
#define LEDGER_HDR      (8 + 8)
#define PRICE_VAL_LEN   (3 + 8)
#define IDS_KEY_MAX     (MP_NAME_MAX + 1 + 2)
#define SEQ_LIMIT       ((uint64_t)1 << 48)
/* mps_maybe_compact runs on the request path: a bounded batch keeps one
 * unlucky request from paying for a large backlog. */
#define COMPACT_BATCH   1000

struct mps {
    MDB_env *env;
    MDB_dbi  meta, spent, pw, ledger, prices, ids, expiry;
    int      rdonly;
    size_t   maxkey;
};

static const char *const db_names[NDBS] = {
    "meta", "spent", "pw", "ledger", "prices", "ids", "expiry"
};

static const mpl_spec SPEC = {
    MPL_SLOT_VENDOR, "store", "mod_micropay store", "create it with mpadmin store init",
    FORMAT, db_names, NDBS, NDBS, NULL
};

/* The shared messages, under this store's name. */
#define set_msg(...)        mpl_msg(&SPEC, __VA_ARGS__)
#define lmdb_fail(what, rc) mpl_fail(&SPEC, what, rc)
#define corrupt(what)       mpl_corrupt(&SPEC, what)
#define bad_arg(what)       mpl_bad_arg(&SPEC, what)

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

static mp_status ledger_add(mps *s, MDB_txn *txn, const uint8_t key[LEDGER_KEY_LEN],
                            const mps_earning *e)
{
    uint8_t buf[LEDGER_HDR + MP_TARGET_MAX];
    uint64_t units = 0, count = 0;
    MDB_val k = mpl_val(key, LEDGER_KEY_LEN), v;
    mp_status st = MP_ERR_STORE;
    int rc;

    rc = mdb_get(txn, s->ledger, &k, &v);
    if (rc == 0) {
        if (v.mv_size < LEDGER_HDR) {
            st = corrupt("ledger line");
            goto out;
        }
        units = mpl_get_u64(v.mv_data);
        count = mpl_get_u64((const uint8_t *)v.mv_data + 8);
    } else if (rc != MDB_NOTFOUND) {
        st = lmdb_fail("ledger read", rc);
        goto out;
    }
    if (units > MP_AMOUNT_MAX - e->amount.units || count == UINT64_MAX) {
        set_msg("store: ledger line overflows");
        st = MP_ERR_OVERFLOW;
        goto out;
    }
    mpl_put_u64(buf, units + e->amount.units);
    mpl_put_u64(buf + 8, count + 1);
    if (e->path_len)
        memcpy(buf + LEDGER_HDR, e->path, e->path_len);
    v = mpl_val(buf, LEDGER_HDR + e->path_len);
    if ((rc = mdb_put(txn, s->ledger, &k, &v, 0)) != 0) {
        st = lmdb_fail("ledger write", rc);
        goto out;
    }
    st = MP_OK;
out:
    return st;
}

static mp_status expiry_add(mps *s, MDB_txn *txn, uint64_t time, uint8_t kind,
                            const uint8_t *rkey, size_t rlen)
{
    return mpl_expiry_add(&SPEC, txn, s->expiry, time, kind, rkey, rlen);
}

/* ---- open, create, close --------------------------------------------------------- */

mp_status mps_create(const char *dir, long uid, long gid, char *err, size_t errlen)
{
    return mpl_create(&SPEC, dir, uid, gid, MDB_WRITEMAP, err, errlen);
}

mp_status mps_open(const char *dir, unsigned flags, size_t map_size, mps **out, char *err,
                   size_t errlen)
{
    mps *s = NULL;
    mp_status st;

    if (dir == NULL || out == NULL || (flags & ~(unsigned)(MPS_RDONLY | MPS_SYNC)) != 0) {
        mpl_err(err, errlen, "invalid store arguments");
        return MP_ERR_ARG;
    }
    if ((s = calloc(1, sizeof *s)) == NULL) {
        mpl_err(err, errlen, "store %s: out of memory", dir);
        return MP_ERR_NOMEM;
    }
    s->rdonly = (flags & MPS_RDONLY) != 0;
    {
        MDB_dbi *const dbis[NDBS] = {
            &s->meta, &s->spent, &s->pw, &s->ledger, &s->prices, &s->ids, &s->expiry
        };

        /* Commits land in the shared map at once (WRITEMAP) and survive any
         * process's death; MPS_SYNC also fsyncs each one. */
        st = mpl_open(&SPEC, dir, s->rdonly,
                      MDB_WRITEMAP | (flags & MPS_SYNC ? 0 : MDB_NOSYNC | MDB_NOMETASYNC),
                      map_size ? map_size : MPS_MAP_SIZE_DEFAULT, &s->env, dbis, NULL, err,
                      errlen);
    }
    if (st != MP_OK) {
        free(s);
        return st;
    }
    s->maxkey = (size_t)mdb_env_get_maxkeysize(s->env);
    *out = s;
    return MP_OK;
}

void mps_close(mps *s)
{
    if (s == NULL)
        return;
    mdb_env_close(s->env);
    free(s);
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
    if ((rc = mdb_env_sync(s->env, 1)) != 0)
        return lmdb_fail("sync", rc);
    return MP_OK;
}

/* ---- Millicent ----------------------------------------------------------------- */

/* A spent record split into its fields (pointers into the value). */
typedef struct {
    uint64_t       time, expiry;
    uint8_t        flags;
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
    if ((r->flags & ~SPENT_DEPOSITED) != 0 || r->time < r->expiry
        || !spent_field(p, n, &off, 2, MP_WIRE_MAX, &r->reply, &r->reply_len)
        || !spent_field(p, n, &off, 2, MP_WIRE_MAX, &r->payment, &r->payment_len)
        || !spent_field(p, n, &off, 1, MP_METHOD_MAX, &r->method, &r->method_len)
        || !spent_field(p, n, &off, 1, MP_HOST_MAX, &r->host, &r->host_len)
        || !spent_field(p, n, &off, 2, MP_TARGET_MAX, &r->target, &r->target_len)
        || off != n || r->payment_len == 0 || r->method_len == 0 || r->target_len == 0
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
        + 2 + q->target_len;
}

static void spent_write(uint8_t *rec, uint64_t time, uint64_t expiry,
                        const uint8_t req_sig[MP_HASH_LEN], const uint8_t *reply,
                        size_t reply_len, const uint8_t *payment, size_t payment_len,
                        const mp_request *q)
{
    size_t o = 0;

    mpl_put_u64(rec, time);
    mpl_put_u64(rec + 8, expiry);
    rec[16] = 0;
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
}

mp_status mps_mc_spend(mps *s, const char *vendor, uint64_t scrip_id, uint64_t expiry,
                       uint64_t keep_until, const uint8_t req_sig[MP_HASH_LEN],
                       const uint8_t *payment, size_t payment_len, const mp_request *req,
                       const uint8_t *reply, size_t reply_len, const mps_earning *earn,
                       int *retry, uint8_t *reply_out, size_t *reply_out_len)
{
    uint8_t key[SPENT_KEY_MAX], lkey[LEDGER_KEY_LEN];
    spent_rec sr;
    MDB_txn *txn = NULL;
    MDB_val k, v;
    size_t klen;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || req_sig == NULL || (reply == NULL && reply_len != 0)
        || reply_len > MP_WIRE_MAX || payment == NULL || payment_len == 0
        || payment_len > MP_WIRE_MAX || !request_valid(req) || retry == NULL
        || reply_out == NULL || reply_out_len == NULL) {
        st = bad_arg("spend arguments");
        goto out;
    }
    if ((klen = vendor_prefix(vendor, key)) == 0) {
        st = bad_arg("vendor");
        goto out;
    }
    mpl_put_u64(key + klen, scrip_id);
    klen += 8;
    if (keep_until < expiry)
        keep_until = expiry;
    if (earn != NULL && (st = ledger_key(earn, lkey)) != MP_OK)
        goto out;
    if ((st = mpl_begin(&SPEC, s->env, 0, &txn)) != MP_OK)
        goto out;
    k = mpl_val(key, klen);
    rc = mdb_get(txn, s->spent, &k, &v);
    if (rc == 0) {
        if ((st = spent_parse(&v, &sr)) != MP_OK)
            goto out;
        if (!mp_ct_equal(sr.req_sig, MP_HASH_LEN, req_sig, MP_HASH_LEN)) {
            st = MP_ERR_SPENT;
            goto out;
        }
        if (sr.reply_len)
            memcpy(reply_out, sr.reply, sr.reply_len);
        *reply_out_len = sr.reply_len;
        *retry = 1;
        st = MP_OK;
        goto out;               /* a retry writes nothing: the abort below ends it */
    }
    if (rc != MDB_NOTFOUND) {
        st = lmdb_fail("spent read", rc);
        goto out;
    }
    /* Reserved in place: the record is written straight into the map. */
    v.mv_size = spent_size(reply_len, payment_len, req);
    v.mv_data = NULL;
    if ((rc = mdb_put(txn, s->spent, &k, &v, MDB_NOOVERWRITE | MDB_RESERVE)) != 0) {
        st = lmdb_fail("spent write", rc);
        goto out;
    }
    spent_write(v.mv_data, keep_until, expiry, req_sig, reply, reply_len, payment, payment_len,
                req);
    if ((st = expiry_add(s, txn, keep_until, KIND_SPENT, key, klen)) != MP_OK
        || (earn != NULL && (st = ledger_add(s, txn, lkey, earn)) != MP_OK))
        goto out;
    if ((st = mpl_commit(&SPEC, &txn)) != MP_OK)
        goto out;
    *retry = 0;
    st = MP_OK;
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
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
    if ((st = mpl_read_cursor(&SPEC, s->env, s->spent, &txn, &cur)) != MP_OK)
        goto out;
    for (rc = mpl_prefix_get(cur, 1, prefix, vlen, &k, &v); rc == 0;
         rc = mpl_prefix_get(cur, 0, prefix, vlen, &k, &v)) {
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
    if (txn != NULL)
        mdb_txn_abort(txn);
    return st;
}

mp_status mps_mc_mark_deposited(mps *s, const char *vendor, const uint64_t *ids, size_t n)
{
    uint8_t key[SPENT_KEY_MAX], *rec = NULL;
    spent_rec sr;
    MDB_txn *txn = NULL;
    MDB_val k, v;
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
    if ((st = mpl_begin(&SPEC, s->env, 0, &txn)) != MP_OK)
        goto out;
    for (i = 0; i < n; i++) {
        mpl_put_u64(key + klen, ids[i]);
        k = mpl_val(key, klen + 8);
        rc = mdb_get(txn, s->spent, &k, &v);
        if (rc == MDB_NOTFOUND)
            continue;           /* compacted, or never spent here: nothing to mark */
        if (rc != 0) {
            st = lmdb_fail("spent read", rc);
            goto out;
        }
        if ((st = spent_parse(&v, &sr)) != MP_OK)
            goto out;
        if (sr.flags & SPENT_DEPOSITED)
            continue;
        /* Copied out before the put: a value read in a write transaction
         * may live in a page the put rewrites. The record now goes at the
         * scrip's expiry; the index entry at keep_until no longer matches
         * its time and is dropped by compaction without touching it. */
        len = v.mv_size;
        memcpy(rec, v.mv_data, len);
        mpl_put_u64(rec, sr.expiry);
        rec[16] = sr.flags | SPENT_DEPOSITED;
        v = mpl_val(rec, len);
        if ((rc = mdb_put(txn, s->spent, &k, &v, 0)) != 0) {
            st = lmdb_fail("spent write", rc);
            goto out;
        }
        if (sr.time != sr.expiry
            && (st = expiry_add(s, txn, sr.expiry, KIND_SPENT, key, klen + 8)) != MP_OK)
            goto out;
    }
    st = mpl_commit(&SPEC, &txn);
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    free(rec);
    return st;
}

mp_status mps_reserve_ids(mps *s, const char *vendor, uint16_t series, uint32_t count,
                          uint64_t *first)
{
    uint8_t key[IDS_KEY_MAX], buf[8];
    MDB_txn *txn = NULL;
    MDB_val k, v;
    uint64_t next = 1;
    size_t klen;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || count == 0 || first == NULL || (klen = vendor_prefix(vendor, key)) == 0) {
        st = bad_arg("id reservation");
        goto out;
    }
    mpl_put_u16(key + klen, series);
    k = mpl_val(key, klen + 2);
    if ((st = mpl_begin(&SPEC, s->env, 0, &txn)) != MP_OK)
        goto out;
    rc = mdb_get(txn, s->ids, &k, &v);
    if (rc == 0) {
        if (v.mv_size != 8 || (next = mpl_get_u64(v.mv_data)) == 0) {
            st = corrupt("id counter");
            goto out;
        }
    } else if (rc != MDB_NOTFOUND) {
        st = lmdb_fail("ids read", rc);
        goto out;
    }
    if (next > SEQ_LIMIT || count > SEQ_LIMIT - next) {
        set_msg("store: change ids of series %u exhausted", (unsigned)series);
        st = MP_ERR_STORE;
        goto out;
    }
    mpl_put_u64(buf, next + count);
    v = mpl_val(buf, 8);
    if ((rc = mdb_put(txn, s->ids, &k, &v, 0)) != 0) {
        st = lmdb_fail("ids write", rc);
        goto out;
    }
    if ((st = mpl_commit(&SPEC, &txn)) != MP_OK)
        goto out;
    *first = (uint64_t)series << 48 | next;
    st = MP_OK;
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
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
    MDB_val k, v;
    size_t tlen;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || commit_id == NULL || out == NULL) {
        st = bad_arg("tracker lookup");
        goto out;
    }
    if ((st = mpl_begin(&SPEC, s->env, MDB_RDONLY, &txn)) != MP_OK)
        goto out;
    k = mpl_val(commit_id, MP_HASH_LEN);
    rc = mdb_get(txn, s->pw, &k, &v);
    if (rc == MDB_NOTFOUND) {
        st = MP_ERR_UNKNOWN_COMMITMENT;
        goto out;
    }
    if (rc != 0) {
        st = lmdb_fail("tracker read", rc);
        goto out;
    }
    if ((st = pw_parse(&v, commit_id, &t, &tlen)) != MP_OK)
        goto out;
    memcpy(out, &t, sizeof t);
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    return st;
}

mp_status mps_pw_register(mps *s, const mp_pw_commit *c, const mp_pw_track *fresh,
                          uint64_t keep_until)
{
    uint8_t rec[PW_HDR + MP_PW_TRACK_MAX + MP_PW_COMMIT_MAX];
    MDB_txn *txn = NULL;
    MDB_val k, v;
    size_t tlen;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || c == NULL || fresh == NULL || c->enc_len == 0
        || c->enc_len > MP_PW_COMMIT_MAX
        || memcmp(fresh->commit_id, c->id, MP_HASH_LEN) != 0) {
        st = bad_arg("commitment registration");
        goto out;
    }
    if ((st = mp_pw_track_encode(fresh, rec + PW_HDR, MP_PW_TRACK_MAX, &tlen)) != MP_OK) {
        set_msg("store: tracker does not encode: %s", mp_strerror(st));
        goto out;
    }
    mpl_put_u64(rec, keep_until);
    mpl_put_u32(rec + 8, 0);                /* nothing redeemed yet */
    mpl_put_u16(rec + 12, (uint16_t)tlen);
    memcpy(rec + PW_HDR + tlen, c->enc, c->enc_len);
    k = mpl_val(c->id, MP_HASH_LEN);
    v = mpl_val(rec, PW_HDR + tlen + c->enc_len);
    if ((st = mpl_begin(&SPEC, s->env, 0, &txn)) != MP_OK)
        goto out;
    rc = mdb_put(txn, s->pw, &k, &v, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) {
        st = MP_OK;             /* known already: its tracker must not be reset */
        goto out;
    }
    if (rc != 0) {
        st = lmdb_fail("tracker write", rc);
        goto out;
    }
    if ((st = expiry_add(s, txn, keep_until, KIND_PW, c->id, MP_HASH_LEN)) != MP_OK)
        goto out;
    st = mpl_commit(&SPEC, &txn);
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    return st;
}

mp_status mps_pw_update(mps *s, uint64_t expect_version, const mp_pw_track *next,
                        const mps_earning *earn)
{
    uint8_t rec[PW_HDR + MP_PW_TRACK_MAX + MP_PW_COMMIT_MAX], lkey[LEDGER_KEY_LEN];
    const uint8_t *p;
    mp_pw_track cur;
    MDB_txn *txn = NULL;
    MDB_val k, v;
    size_t tlen, old_tlen, clen;
    int rc;
    mp_status st = MP_ERR_ARG;

    /* A version that does not move would let a stale writer overwrite a
     * newer tracker unnoticed. */
    if (s == NULL || next == NULL || next->version <= expect_version) {
        st = bad_arg("tracker update");
        goto out;
    }
    if (earn != NULL && (st = ledger_key(earn, lkey)) != MP_OK)
        goto out;
    if ((st = mp_pw_track_encode(next, rec + PW_HDR, MP_PW_TRACK_MAX, &tlen)) != MP_OK) {
        set_msg("store: tracker does not encode: %s", mp_strerror(st));
        goto out;
    }
    if ((st = mpl_begin(&SPEC, s->env, 0, &txn)) != MP_OK)
        goto out;
    k = mpl_val(next->commit_id, MP_HASH_LEN);
    rc = mdb_get(txn, s->pw, &k, &v);
    if (rc == MDB_NOTFOUND) {
        st = MP_ERR_UNKNOWN_COMMITMENT;
        goto out;
    }
    if (rc != 0) {
        st = lmdb_fail("tracker read", rc);
        goto out;
    }
    if ((st = pw_parse(&v, next->commit_id, &cur, &old_tlen)) != MP_OK)
        goto out;
    if (cur.version != expect_version) {
        set_msg("store: tracker changed concurrently");
        st = MP_ERR_BUSY;
        goto out;
    }
    /* Copied out before the put: a value read in a write transaction may
     * live in a page the put rewrites. */
    p = v.mv_data;
    clen = v.mv_size - PW_HDR - old_tlen;
    memcpy(rec, p, 12);                 /* keep_until and the redeemed word stay */
    mpl_put_u16(rec + 12, (uint16_t)tlen);
    memcpy(rec + PW_HDR + tlen, p + PW_HDR + old_tlen, clen);
    v = mpl_val(rec, PW_HDR + tlen + clen);
    if ((rc = mdb_put(txn, s->pw, &k, &v, 0)) != 0) {
        st = lmdb_fail("tracker write", rc);
        goto out;
    }
    if (earn != NULL && (st = ledger_add(s, txn, lkey, earn)) != MP_OK)
        goto out;
    st = mpl_commit(&SPEC, &txn);
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
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
    if ((st = mpl_read_cursor(&SPEC, s->env, s->pw, &txn, &cur)) != MP_OK)
        goto out;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
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
    if (txn != NULL)
        mdb_txn_abort(txn);
    free(t);
    return st;
}

mp_status mps_pw_mark_redeemed(mps *s, const uint8_t commit_id[MP_HASH_LEN], uint32_t last)
{
    uint8_t rec[PW_HDR + MP_PW_TRACK_MAX + MP_PW_COMMIT_MAX];
    mp_pw_track *t = NULL;
    MDB_txn *txn = NULL;
    MDB_val k, v;
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
    if ((st = mpl_begin(&SPEC, s->env, 0, &txn)) != MP_OK)
        goto out;
    k = mpl_val(commit_id, MP_HASH_LEN);
    rc = mdb_get(txn, s->pw, &k, &v);
    if (rc == MDB_NOTFOUND) {
        st = MP_ERR_UNKNOWN_COMMITMENT;
        goto out;
    }
    if (rc != 0) {
        st = lmdb_fail("tracker read", rc);
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
    v = mpl_val(rec, v.mv_size);
    if ((rc = mdb_put(txn, s->pw, &k, &v, 0)) != 0) {
        st = lmdb_fail("tracker write", rc);
        goto out;
    }
    st = mpl_commit(&SPEC, &txn);
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
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
    MDB_val k, v;
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
    if ((st = mpl_begin(&SPEC, s->env, MDB_RDONLY, &txn)) != MP_OK)
        goto out;
    /* The exact path, then each prefix ending in '/', longest first. A
     * key above the LMDB limit cannot have been stored: skip it. */
    len = path_len;
    do {
        if (vlen + len <= s->maxkey) {
            k = mpl_val(key, vlen + len);
            rc = mdb_get(txn, s->prices, &k, &v);
            if (rc == 0) {
                if ((st = amount_decode(&v, &a)) != MP_OK)
                    goto out;
                hit = 1;
                break;
            }
            if (rc != MDB_NOTFOUND) {
                st = lmdb_fail("price read", rc);
                goto out;
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
    if (txn != NULL)
        mdb_txn_abort(txn);
    return st;
}

mp_status mps_price_set(mps *s, const char *vendor, const char *path, const mp_amount *a)
{
    uint8_t key[MP_NAME_MAX + 1 + MP_TARGET_MAX], buf[PRICE_VAL_LEN];
    MDB_txn *txn = NULL;
    MDB_val k, v;
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
    k = mpl_val(key, klen);
    v = mpl_val(buf, sizeof buf);
    if ((st = mpl_begin(&SPEC, s->env, 0, &txn)) != MP_OK)
        goto out;
    if ((rc = mdb_put(txn, s->prices, &k, &v, 0)) != 0) {
        st = lmdb_fail("price write", rc);
        goto out;
    }
    st = mpl_commit(&SPEC, &txn);
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
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
    if ((st = mpl_begin(&SPEC, s->env, 0, &txn)) != MP_OK)
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
    st = mpl_commit(&SPEC, &txn);
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
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
    if ((st = mpl_read_cursor(&SPEC, s->env, s->prices, &txn, &cur)) != MP_OK)
        goto out;
    for (rc = mpl_prefix_get(cur, 1, prefix, vlen, &k, &v); rc == 0;
         rc = mpl_prefix_get(cur, 0, prefix, vlen, &k, &v)) {
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
    if (txn != NULL)
        mdb_txn_abort(txn);
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
    if ((st = mpl_read_cursor(&SPEC, s->env, s->ledger, &txn, &c)) != MP_OK)
        goto out;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
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
    if (txn != NULL)
        mdb_txn_abort(txn);
    return st;
}

/* Compaction of the records indexed as due at now (mpl_compact), inside
 * txn; *more is set when max stopped it. */
static mp_status compact_txn(mps *s, MDB_txn *txn, uint64_t now, size_t max,
                             size_t *removed, int *more)
{
    const mpl_kind kinds[] = {          /* KIND_SPENT, KIND_PW: the time leads both */
        { s->spent, 0 }, { s->pw, 0 }
    };

    return mpl_compact(&SPEC, txn, s->expiry, kinds, 2, EXPIRY_KEY_MAX, now, max, removed,
                       more);
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
    if ((st = mpl_begin(&SPEC, s->env, 0, &txn)) != MP_OK)
        goto out;
    if ((st = compact_txn(s, txn, now, max, &n, &more)) != MP_OK)
        goto out;
    if ((st = mpl_commit(&SPEC, &txn)) != MP_OK)
        goto out;
    *removed = n;
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    return st;
}

/* *due = 1 when the recorded compaction is interval or more before now
 * (or after it: the clock went back). */
static mp_status compact_due(mps *s, MDB_txn *txn, uint64_t now, uint64_t interval, int *due)
{
    MDB_val k = mpl_val("last_compact", 12), v;
    uint64_t last = 0;
    int rc;

    rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == 0 && v.mv_size == 8)
        last = mpl_get_u64(v.mv_data);
    else if (rc != 0 && rc != MDB_NOTFOUND)
        return lmdb_fail("meta read", rc);
    *due = last > now || now - last >= interval;
    return MP_OK;
}

mp_status mps_maybe_compact(mps *s, uint64_t now, uint64_t interval, size_t *removed)
{
    uint8_t buf[8];
    MDB_txn *txn = NULL;
    MDB_val k = mpl_val("last_compact", 12), v;
    size_t n = 0;
    int rc, due = 0, more = 0;
    mp_status st = MP_ERR_ARG;

    if (s == NULL || removed == NULL) {
        st = bad_arg("compaction arguments");
        goto out;
    }
    if ((st = mpl_begin(&SPEC, s->env, MDB_RDONLY, &txn)) != MP_OK)
        goto out;
    st = compact_due(s, txn, now, interval, &due);
    mdb_txn_abort(txn);
    txn = NULL;
    if (st != MP_OK || !due)
        goto out;
    if ((st = mpl_begin(&SPEC, s->env, 0, &txn)) != MP_OK)
        goto out;
    /* Another process may have compacted while we waited for the lock. */
    if ((st = compact_due(s, txn, now, interval, &due)) != MP_OK || !due)
        goto out;
    if ((st = compact_txn(s, txn, now, COMPACT_BATCH, &n, &more)) != MP_OK)
        goto out;
    /* With a backlog left, the time stays old so the next call continues. */
    if (!more) {
        mpl_put_u64(buf, now);
        v = mpl_val(buf, 8);
        if ((rc = mdb_put(txn, s->meta, &k, &v, 0)) != 0) {
            st = lmdb_fail("meta write", rc);
            goto out;
        }
    }
    st = mpl_commit(&SPEC, &txn);
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    if (st == MP_OK)
        *removed = n;
    return st;
}

mp_status mps_stat(mps *s, mps_stats *out)
{
    MDB_txn *txn = NULL;
    MDB_stat ms;
    mps_stats r;
    MDB_dbi dbis[5];
    size_t *dst[5], i;
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
    if ((st = mpl_begin(&SPEC, s->env, MDB_RDONLY, &txn)) != MP_OK)
        goto out;
    for (i = 0; i < 5; i++) {
        if ((rc = mdb_stat(txn, dbis[i], &ms)) != 0) {
            st = lmdb_fail("stat", rc);
            goto out;
        }
        *dst[i] = ms.ms_entries;
    }
    *out = r;
    st = MP_OK;
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    return st;
}
