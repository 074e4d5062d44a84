/*
 * mod_micropay_bstore.c - the broker's accounts in LMDB (the contract is
 * in mod_micropay_bstore.h).
 *
 * Records (integers big-endian, so keys sort by number):
 *   meta      "format" -> "mod_micropay-broker-store-1"
 *   account   id -> u8 kind | 3 currency | u64 balance | u64 reserved
 *                   | 32 key_enc | u64 created | u8 vendor_len | vendor
 *                   [| u16 key series: absent in records made before it was kept]
 *   idem      account NUL request_id -> u64 expiry | 32 body hash
 *                   | u16 status | body
 *   counter   name -> u64 next value to hand out
 *   custid    account NUL vendor -> u64 customer id
 *   spent     issuer NUL u64 scrip id -> u64 expiry (no longer written: scrip is
 *             spent through its issued record; older entries are compacted away)
 *   redeemed  32 commitment id -> u32 last | u64 keep_until [| 32 w_last: absent in
 *             records written before the word was kept]
 *   cert      u64 serial -> u8 released | 3 currency | u64 credit | u64 redeemed
 *                   | u64 expiry | u64 release_at | u8 account_len | account
 *   certdue   u64 release_at | u64 serial -> empty, while not released
 *   expiry    u64 time | u8 kind | key of the record -> empty
 *   issued    issuer NUL u64 id -> u8 kind | u8 used | 3 currency | u64 value
 *                   | u64 expiry | u64 use_until | u64 release_at | u8 account_len
 *                   | account
 *   issuedue  u64 release_at | issuer NUL u64 id -> empty, while the record exists
 *   totals    3 currency | NUL | name -> u64 units
 * One currency is stored per account: balance and reserved must agree, and
 * a record in which they could disagree would be one more thing to check.
 * The expiry index starts with the time so that compaction reads only the
 * records that are due, from the front; the record's own time (expiry or
 * keep_until) is compared before deleting, so an index entry left behind
 * by a rewrite can never remove a newer record.
 * certdue is kept exact instead (mpb_cert_put deletes the old entry with
 * the write that makes it stale), and is never compacted: releasing a
 * certificate is a money movement, not a deletion.
 * Creating, opening, the expiry index and its compaction are the plumbing
 * shared with the vendor store (mod_micropay_lmdb.c).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "mod_micropay_lmdb.h"
#include "mod_micropay_bstore.h"

#define FORMAT          "mod_micropay-broker-store-1"
#define NDBS            13
#define NDBS_V1         8               /* tables every store has; the others are added */
#define KIND_IDEM       1
#define KIND_SPENT      2
#define KIND_REDEEMED   3
#define ACCT_FIXED      (1 + 3 + 8 + 8 + MP_SECRET_LEN + 8 + 1)
#define IDEM_HDR        (8 + MP_HASH_LEN + 2)
#define IDEM_KEY_MAX    (MPB_ACCOUNT_MAX + 1 + MPB_REQID_MAX)
#define CUSTID_KEY_MAX  (MPB_ACCOUNT_MAX + 1 + MP_NAME_MAX)
#define SPENT_KEY_MAX   (MP_NAME_MAX + 1 + 8)
#define REDEEMED_LEN    (4 + 8)
#define REDEEMED_WLEN   (REDEEMED_LEN + MP_HASH_LEN)
#define EXPIRY_KEY_MAX  (8 + 1 + IDEM_KEY_MAX)
#define CERT_FIXED      (1 + 3 + 8 + 8 + 8 + 8 + 1)
#define CERTDUE_KEY     (8 + 8)
#define RELEASE_MAX     100000
#define ISSUED_KEY_MAX  (MP_NAME_MAX + 1 + 8)
#define ISSUED_FIXED    (1 + 1 + 3 + 8 + 8 + 8 + 8 + 1)
#define ISSUEDUE_KEY_MAX (8 + ISSUED_KEY_MAX)
#define TOTAL_NAME_MAX  16
#define TOTAL_KEY_MAX   (3 + 1 + TOTAL_NAME_MAX)
/* Counter names embed issuer names and series numbers; well below LMDB's
 * 511-byte key limit. */
#define COUNTER_NAME_MAX 256

struct mpb {
    MDB_env *env;
    MDB_dbi  meta, account, idem, counter, custid, spent, redeemed, expiry, cert, certdue;
    MDB_dbi  issued, issuedue, totals;
    int      rdonly;
    int      certs;          /* the later tables exist (only a read-only open of an
                              * older store lacks them) */
};

struct mpb_txn {
    mpb     *b;
    MDB_txn *txn;
    int      rdonly;
    /* Set when a call failed with MP_ERR_STORE: LMDB may have applied half
     * of that call's writes, and a caller that carried on and committed
     * would store a debit without its idempotency record, or the reverse. */
    int      broken;
};

static const char *const db_names[NDBS] = {
    "meta", "account", "idem", "counter", "custid", "spent", "redeemed", "expiry",
    "cert", "certdue", "issued", "issuedue", "totals"
};

static const mpl_spec SPEC = {
    MPL_SLOT_BROKER, "broker store", "mod_micropay broker store", "create it first",
    FORMAT, db_names, NDBS, NDBS_V1, "the certificate, issued-scrip and ledger tables"
};

/* The shared messages, under this store's name. */
#define set_msg(...)        mpl_msg(&SPEC, __VA_ARGS__)
#define lmdb_fail(what, rc) mpl_fail(&SPEC, what, rc)
#define corrupt(what)       mpl_corrupt(&SPEC, what)
#define bad_arg(what)       mpl_bad_arg(&SPEC, what)

/* Every function working in a caller's transaction leaves through here. */
static mp_status txn_result(mpb_txn *t, mp_status st)
{
    if (st == MP_ERR_STORE && t != NULL && !t->rdonly)
        t->broken = 1;
    return st;
}

/* ---- field checks --------------------------------------------------------------- */

static int account_char(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e && c != '"' && c != '\\';
}

static int reqid_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
        || c == '-' || c == '_';
}

static int name_char(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e;
}

/* Length of s when it is min..max bytes accepted by ok, else (size_t)-1.
 * Reads at most max + 1 bytes, so s need not be terminated beyond that. */
static size_t text_len(const char *s, size_t min, size_t max, int (*ok)(unsigned char))
{
    size_t i;

    if (s == NULL)
        return (size_t)-1;
    for (i = 0; i <= max && s[i] != '\0'; i++)
        if (!ok((unsigned char)s[i]))
            return (size_t)-1;
    return i >= min && i <= max ? i : (size_t)-1;
}

/* The same checks on a length-delimited byte string read back from a record. */
static int bytes_ok(const uint8_t *p, size_t n, size_t min, size_t max, int (*ok)(unsigned char))
{
    size_t i;

    if (n < min || n > max)
        return 0;
    for (i = 0; i < n; i++)
        if (!ok(p[i]))
            return 0;
    return 1;
}

static size_t account_len(const char *id)
{
    return text_len(id, 1, MPB_ACCOUNT_MAX, account_char);
}

static int amount_valid(const mp_amount *a)
{
    return mp_currency_valid(a->cur) && a->units <= MP_AMOUNT_MAX;
}

/* "a NUL b": the key shape of idem and custid records. */
static size_t pair_key(uint8_t *key, const char *a, size_t alen, const char *b, size_t blen)
{
    memcpy(key, a, alen);
    key[alen] = 0;
    if (blen)
        memcpy(key + alen + 1, b, blen);
    return alen + 1 + blen;
}

/* ---- the ledger's start ------------------------------------------------------------ */

static mp_status account_decode(const MDB_val *k, const MDB_val *v, mpb_account *out);

static size_t total_key(uint8_t key[TOTAL_KEY_MAX], const char *cur, const char *name)
{
    size_t n = strlen(name);

    memcpy(key, cur, 3);
    key[3] = 0;
    memcpy(key + 4, name, n);
    return 4 + n;
}

/* Adds units to a total inside txn (raw LMDB: also used before any mpb_txn). */
static mp_status total_add(MDB_txn *txn, MDB_dbi dbi, const char *cur, const char *name,
                           uint64_t units)
{
    uint8_t key[TOTAL_KEY_MAX], buf[8];
    MDB_val k, v;
    uint64_t have = 0;
    int rc;

    k = mpl_val(key, total_key(key, cur, name));
    rc = mdb_get(txn, dbi, &k, &v);
    if (rc == 0) {
        if (v.mv_size != 8 || (have = mpl_get_u64(v.mv_data)) > MP_AMOUNT_MAX)
            return corrupt("ledger total");
    } else if (rc != MDB_NOTFOUND) {
        return lmdb_fail("ledger read", rc);
    }
    if (units > MP_AMOUNT_MAX - have) {
        set_msg("broker store: the ledger total %s of %.3s would exceed the largest amount",
                name, cur);
        return MP_ERR_OVERFLOW;
    }
    mpl_put_u64(buf, have + units);
    v = mpl_val(buf, 8);
    if ((rc = mdb_put(txn, dbi, &k, &v, 0)) != 0)
        return lmdb_fail("ledger write", rc);
    return MP_OK;
}

/* A store made before the ledger existed starts it with what its accounts
 * hold: that money came in by credits the ledger never saw. Scrip such a
 * store issued has no records and is not accepted any more, and its stored
 * answers, kept in clear, are deleted (docs/mpadmin.md, upgrading). Runs
 * once, on the first writable open: the start mark is written in the same
 * transaction. */
static mp_status ledger_start(mpb *b, char *err, size_t errlen)
{
    static const char mark[] = "ledger-start";
    uint8_t key[TOTAL_KEY_MAX], buf[8];
    MDB_txn *txn = NULL;
    MDB_cursor *c = NULL;
    MDB_val k, v, ak, av;
    mpb_account a;
    int rc;
    mp_status st;

    if ((st = mpl_begin(&SPEC, b->env, 0, &txn)) != MP_OK)
        goto out;
    k = mpl_val(key, total_key(key, "---", mark));
    if ((rc = mdb_get(txn, b->totals, &k, &v)) == 0) {
        st = MP_OK;                        /* started before */
        goto out;
    }
    if (rc != MDB_NOTFOUND) {
        st = lmdb_fail("ledger read", rc);
        goto out;
    }
    if ((rc = mdb_cursor_open(txn, b->account, &c)) != 0) {
        c = NULL;
        st = lmdb_fail("account listing", rc);
        goto out;
    }
    for (rc = mdb_cursor_get(c, &ak, &av, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &ak, &av, MDB_NEXT)) {
        if ((st = account_decode(&ak, &av, &a)) != MP_OK
            || (st = total_add(txn, b->totals, a.balance.cur, MPB_TOTAL_CREDITED,
                               a.balance.units)) != MP_OK
            || (st = total_add(txn, b->totals, a.balance.cur, MPB_TOTAL_CREDITED,
                               a.reserved.units)) != MP_OK)
            goto out;
    }
    if ((st = mpl_walk_end(&SPEC, "account listing", rc)) != MP_OK)
        goto out;
    mdb_cursor_close(c);
    c = NULL;
    /* Answers stored before they were sealed hold scrip and customer
     * secrets in clear, and could not be opened any more anyway: gone.
     * (Their expiry index entries then name nothing, which compaction
     * drops; LMDB keeps freed pages' bytes until reused: `mdb_copy -c`
     * writes a copy without them, docs/mpadmin.md.) */
    if ((rc = mdb_drop(txn, b->idem, 0)) != 0) {
        st = lmdb_fail("idempotency purge", rc);
        goto out;
    }
    mpl_put_u64(buf, (uint64_t)time(NULL));
    v = mpl_val(buf, 8);
    if ((rc = mdb_put(txn, b->totals, &k, &v, 0)) != 0) {
        st = lmdb_fail("ledger write", rc);
        goto out;
    }
    st = mpl_commit(&SPEC, &txn);
out:
    if (c != NULL)
        mdb_cursor_close(c);
    if (txn != NULL)
        mdb_txn_abort(txn);
    if (st != MP_OK)
        mpl_err(err, errlen, "%s", mpb_errmsg());
    return st;
}

/* ---- open, create, close --------------------------------------------------------- */

mp_status mpb_create(const char *dir, long uid, long gid, char *err, size_t errlen)
{
    mpb *b = NULL;
    mp_status st = mpl_create(&SPEC, dir, uid, gid, 0, err, errlen);

    /* A new store's ledger starts empty, now: its first open is the one
     * that writes the start mark (both files exist and are owned already). */
    if (st == MP_OK && (st = mpb_open(dir, 0, 0, &b, err, errlen)) == MP_OK)
        mpb_close(b);
    return st;
}

mp_status mpb_open(const char *dir, int rdonly, size_t map_size, mpb **out, char *err,
                   size_t errlen)
{
    mpb *b = NULL;
    mp_status st;

    if (dir == NULL || out == NULL) {
        mpl_err(err, errlen, "invalid broker store arguments");
        return MP_ERR_ARG;
    }
    if ((b = calloc(1, sizeof *b)) == NULL) {
        mpl_err(err, errlen, "broker store %s: out of memory", dir);
        return MP_ERR_NOMEM;
    }
    b->rdonly = rdonly != 0;
    {
        MDB_dbi *const dbis[NDBS] = {
            &b->meta, &b->account, &b->idem, &b->counter, &b->custid, &b->spent,
            &b->redeemed, &b->expiry, &b->cert, &b->certdue, &b->issued, &b->issuedue,
            &b->totals
        };

        /* No MDB_WRITEMAP: a stray pointer write in an Apache process must
         * not be able to land in the accounts; and without NOSYNC or
         * NOMETASYNC every commit is on disk before it returns. */
        st = mpl_open(&SPEC, dir, b->rdonly, 0, map_size, &b->env, dbis, &b->certs, err,
                      errlen);
    }
    if (st == MP_OK && !b->rdonly)
        st = ledger_start(b, err, errlen);
    if (st != MP_OK) {
        if (b->env != NULL)
            mdb_env_close(b->env);
        free(b);
        return st;
    }
    *out = b;
    return MP_OK;
}

void mpb_close(mpb *b)
{
    if (b == NULL)
        return;
    mdb_env_close(b->env);
    free(b);
}

const char *mpb_errmsg(void)
{
    const char *m = mpl_errmsg(&SPEC);

    return m != NULL ? m : "no broker store error";
}

/* ---- the broker it belongs to ---------------------------------------------------- */

mp_status mpb_bind(mpb *b, const char *name, uint64_t redeem_deadline)
{
    static const char key[] = "broker";
    uint8_t buf[MP_NAME_MAX + 8];
    MDB_txn *txn = NULL;
    MDB_val k = mpl_val(key, sizeof key - 1), v;
    size_t n;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (b == NULL || b->rdonly || (n = text_len(name, 1, MP_NAME_MAX, name_char)) == (size_t)-1) {
        st = bad_arg("broker binding");
        goto out;
    }
    memcpy(buf, name, n);
    mpl_put_u64(buf + n, redeem_deadline);
    if ((st = mpl_begin(&SPEC, b->env, 0, &txn)) != MP_OK)
        goto out;
    rc = mdb_get(txn, b->meta, &k, &v);
    if (rc == 0) {
        if (v.mv_size != n + 8 || memcmp(v.mv_data, buf, n + 8) != 0) {
            set_msg("broker store: it belongs to broker %.*s with redemption deadline %llu s; "
                    "one store serves one broker name and deadline",
                    v.mv_size >= 8 ? (int)(v.mv_size - 8) : 0, (const char *)v.mv_data,
                    v.mv_size >= 8 ? (unsigned long long)mpl_get_u64((const uint8_t *)v.mv_data
                                                                     + v.mv_size - 8) : 0ULL);
            st = MP_ERR_ARG;
            goto out;
        }
        st = MP_OK;
        goto out;
    }
    if (rc != MDB_NOTFOUND) {
        st = lmdb_fail("meta read", rc);
        goto out;
    }
    v = mpl_val(buf, n + 8);
    if ((rc = mdb_put(txn, b->meta, &k, &v, 0)) != 0) {
        st = lmdb_fail("meta write", rc);
        goto out;
    }
    st = mpl_commit(&SPEC, &txn);
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    return st;
}

/* ---- transactions ---------------------------------------------------------------- */

mp_status mpb_begin(mpb *b, int rdonly, mpb_txn **out)
{
    mpb_txn *t = NULL;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (b == NULL || out == NULL) {
        st = bad_arg("transaction arguments");
        goto out;
    }
    if (!rdonly && b->rdonly) {
        st = bad_arg("write transaction on a read-only store");
        goto out;
    }
    if ((t = calloc(1, sizeof *t)) == NULL) {
        set_msg("broker store: out of memory");
        st = MP_ERR_NOMEM;
        goto out;
    }
    t->b = b;
    t->rdonly = rdonly != 0;
    if ((rc = mdb_txn_begin(b->env, NULL, t->rdonly ? MDB_RDONLY : 0, &t->txn)) != 0) {
        st = lmdb_fail("begin", rc);
        goto out;
    }
    *out = t;
    t = NULL;
    st = MP_OK;
out:
    free(t);
    return st;
}

mp_status mpb_commit(mpb_txn *t)
{
    int rc;
    mp_status st = MP_ERR_ARG;

    if (t == NULL) {
        st = bad_arg("transaction");
        goto out;
    }
    if (t->broken) {
        mdb_txn_abort(t->txn);
        set_msg("broker store: a call in this transaction failed; nothing committed");
        st = MP_ERR_STORE;
        goto out;
    }
    /* LMDB frees the transaction whether the commit succeeds or not. */
    if ((rc = mdb_txn_commit(t->txn)) != 0) {
        st = lmdb_fail("commit", rc);
        goto out;
    }
    st = MP_OK;
out:
    free(t);
    return st;
}

void mpb_abort(mpb_txn *t)
{
    if (t == NULL)
        return;
    mdb_txn_abort(t->txn);
    free(t);
}

static mp_status need_write(const mpb_txn *t, const char *what)
{
    if (t->rdonly) {
        set_msg("broker store: %s needs a write transaction", what);
        return MP_ERR_ARG;
    }
    return MP_OK;
}

/* ---- accounts ------------------------------------------------------------------ */

static mp_status account_decode(const MDB_val *k, const MDB_val *v, mpb_account *out)
{
    const uint8_t *p = v->mv_data;
    mpb_account a;
    size_t vlen;

    if (!bytes_ok(k->mv_data, k->mv_size, 1, MPB_ACCOUNT_MAX, account_char)
        || v->mv_size < ACCT_FIXED)
        return corrupt("account");
    vlen = p[ACCT_FIXED - 1];
    if ((v->mv_size != ACCT_FIXED + vlen && v->mv_size != ACCT_FIXED + vlen + 2)
        || (p[0] != MPB_CUSTOMER && p[0] != MPB_VENDOR)
        || (p[0] == MPB_VENDOR) != (vlen > 0)
        || !bytes_ok(p + ACCT_FIXED, vlen, 0, MP_NAME_MAX, name_char))
        return corrupt("account");
    memset(&a, 0, sizeof a);
    memcpy(a.id, k->mv_data, k->mv_size);
    a.kind = p[0];
    memcpy(a.balance.cur, p + 1, 3);
    memcpy(a.reserved.cur, p + 1, 3);
    a.balance.units = mpl_get_u64(p + 4);
    a.reserved.units = mpl_get_u64(p + 12);
    memcpy(a.key_enc, p + 20, MP_SECRET_LEN);
    a.created = mpl_get_u64(p + 20 + MP_SECRET_LEN);
    memcpy(a.vendor, p + ACCT_FIXED, vlen);
    a.key_series = v->mv_size == ACCT_FIXED + vlen + 2 ? mpl_get_u16(p + ACCT_FIXED + vlen) : -1;
    if (!amount_valid(&a.balance) || !amount_valid(&a.reserved))
        return corrupt("account");
    memcpy(out, &a, sizeof a);
    return MP_OK;
}

mp_status mpb_account_get(mpb_txn *t, const char *id, mpb_account *out, int *found)
{
    mpb_account a;
    MDB_val k, v;
    size_t n;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (t == NULL || id == NULL || out == NULL || found == NULL) {
        st = bad_arg("account lookup");
        goto out;
    }
    /* The id comes from a client's Authorization header: one that cannot
     * be an account is simply not one. */
    if ((n = account_len(id)) == (size_t)-1) {
        *found = 0;
        st = MP_OK;
        goto out;
    }
    k = mpl_val(id, n);
    rc = mdb_get(t->txn, t->b->account, &k, &v);
    if (rc == MDB_NOTFOUND) {
        *found = 0;
        st = MP_OK;
        goto out;
    }
    if (rc != 0) {
        st = lmdb_fail("account read", rc);
        goto out;
    }
    if ((st = account_decode(&k, &v, &a)) != MP_OK)
        goto out;
    memcpy(out, &a, sizeof a);
    *found = 1;
out:
    return txn_result(t, st);
}

mp_status mpb_account_put(mpb_txn *t, const mpb_account *a)
{
    uint8_t buf[ACCT_FIXED + MP_NAME_MAX + 2], *p = buf;
    MDB_val k, v;
    size_t n, vlen;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (t == NULL || a == NULL) {
        st = bad_arg("account");
        goto out;
    }
    if ((st = need_write(t, "account put")) != MP_OK)
        goto out;
    if ((n = account_len(a->id)) == (size_t)-1) {
        st = bad_arg("account id");
        goto out;
    }
    if (a->kind != MPB_CUSTOMER && a->kind != MPB_VENDOR) {
        st = bad_arg("account kind");
        goto out;
    }
    /* A vendor name on a customer account would be read back as a binding
     * that was never made. */
    vlen = text_len(a->vendor, a->kind == MPB_VENDOR ? 1 : 0,
                    a->kind == MPB_VENDOR ? MP_NAME_MAX : 0, name_char);
    if (vlen == (size_t)-1) {
        st = bad_arg("account vendor name");
        goto out;
    }
    if (!amount_valid(&a->balance) || !amount_valid(&a->reserved)
        || memcmp(a->balance.cur, a->reserved.cur, 3) != 0) {
        st = bad_arg("account amounts");
        goto out;
    }
    if (a->key_series < -1 || a->key_series > 65535) {
        st = bad_arg("account key series");
        goto out;
    }
    p[0] = a->kind;
    memcpy(p + 1, a->balance.cur, 3);
    mpl_put_u64(p + 4, a->balance.units);
    mpl_put_u64(p + 12, a->reserved.units);
    memcpy(p + 20, a->key_enc, MP_SECRET_LEN);
    mpl_put_u64(p + 20 + MP_SECRET_LEN, a->created);
    p[ACCT_FIXED - 1] = (uint8_t)vlen;
    memcpy(p + ACCT_FIXED, a->vendor, vlen);
    if (a->key_series >= 0)
        mpl_put_u16(p + ACCT_FIXED + vlen, (uint16_t)a->key_series);
    k = mpl_val(a->id, n);
    v = mpl_val(buf, ACCT_FIXED + vlen + (a->key_series >= 0 ? 2 : 0));
    if ((rc = mdb_put(t->txn, t->b->account, &k, &v, 0)) != 0) {
        st = lmdb_fail("account write", rc);
        goto out;
    }
    st = MP_OK;
out:
    return txn_result(t, st);
}

mp_status mpb_account_list(mpb_txn *t, mpb_account_cb cb, void *ctx)
{
    mpb_account a;
    MDB_cursor *c = NULL;
    MDB_val k, v;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (t == NULL || cb == NULL) {
        st = bad_arg("account listing");
        goto out;
    }
    if ((rc = mdb_cursor_open(t->txn, t->b->account, &c)) != 0) {
        c = NULL;
        st = lmdb_fail("account listing", rc);
        goto out;
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if ((st = account_decode(&k, &v, &a)) != MP_OK)
            goto out;
        if (cb(ctx, &a) != 0)
            break;
    }
    st = mpl_walk_end(&SPEC, "account listing", rc);
out:
    if (c != NULL)
        mdb_cursor_close(c);
    return txn_result(t, st);
}

/* ---- idempotency ----------------------------------------------------------------- */

static size_t idem_key(uint8_t key[IDEM_KEY_MAX], const char *account, const char *request_id)
{
    size_t alen = account_len(account);
    size_t rlen = text_len(request_id, 1, MPB_REQID_MAX, reqid_char);

    if (alen == (size_t)-1 || rlen == (size_t)-1)
        return 0;
    return pair_key(key, account, alen, request_id, rlen);
}

/* A stored status is an HTTP status; anything else was not written by us. */
static int status_valid(int status)
{
    return status >= 100 && status <= 599;
}

mp_status mpb_idem_get(mpb_txn *t, const char *account, const char *request_id,
                       const uint8_t body_hash[MP_HASH_LEN], int *found, int *status,
                       char **body, size_t *body_len)
{
    uint8_t key[IDEM_KEY_MAX];
    const uint8_t *p;
    MDB_val k, v;
    size_t klen, n;
    char *copy;
    int rc, code;
    mp_status st = MP_ERR_ARG;

    if (t == NULL || body_hash == NULL || found == NULL || status == NULL || body == NULL
        || body_len == NULL || (klen = idem_key(key, account, request_id)) == 0) {
        st = bad_arg("idempotency lookup");
        goto out;
    }
    k = mpl_val(key, klen);
    rc = mdb_get(t->txn, t->b->idem, &k, &v);
    if (rc == MDB_NOTFOUND) {
        *found = 0;
        st = MP_OK;
        goto out;
    }
    if (rc != 0) {
        st = lmdb_fail("idempotency read", rc);
        goto out;
    }
    p = v.mv_data;
    if (v.mv_size < IDEM_HDR || (n = v.mv_size - IDEM_HDR) > MPB_BODY_MAX
        || !status_valid(code = mpl_get_u16(p + 8 + MP_HASH_LEN))) {
        st = corrupt("idempotency record");
        goto out;
    }
    if (memcmp(p + 8, body_hash, MP_HASH_LEN) != 0) {
        set_msg("broker store: request id %s reused with another body", request_id);
        st = MP_ERR_MALFORMED;
        goto out;
    }
    /* One byte more and a NUL: the body is JSON, which callers handle as text. */
    if ((copy = malloc(n + 1)) == NULL) {
        set_msg("broker store: out of memory");
        st = MP_ERR_NOMEM;
        goto out;
    }
    memcpy(copy, p + IDEM_HDR, n);
    copy[n] = '\0';
    *body = copy;
    *body_len = n;
    *status = code;
    *found = 1;
    st = MP_OK;
out:
    return txn_result(t, st);
}

mp_status mpb_idem_put(mpb_txn *t, const char *account, const char *request_id,
                       const uint8_t body_hash[MP_HASH_LEN], int status,
                       const char *body, size_t body_len, uint64_t expiry)
{
    uint8_t key[IDEM_KEY_MAX], *p;
    MDB_val k, v;
    size_t klen;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (t == NULL || body_hash == NULL || (body == NULL && body_len != 0)
        || body_len > MPB_BODY_MAX || !status_valid(status)
        || (klen = idem_key(key, account, request_id)) == 0) {
        st = bad_arg("idempotency record");
        goto out;
    }
    if ((st = need_write(t, "idempotency put")) != MP_OK)
        goto out;
    k = mpl_val(key, klen);
    v = mpl_val(NULL, IDEM_HDR + body_len);
    /* Never replaced: a second response stored for one request id means the
     * request ran twice, which mpb_idem_get in the same transaction exists
     * to prevent. */
    rc = mdb_put(t->txn, t->b->idem, &k, &v, MDB_NOOVERWRITE | MDB_RESERVE);
    if (rc == MDB_KEYEXIST) {
        set_msg("broker store: request id %s already has a stored response", request_id);
        st = MP_ERR_ARG;
        goto out;
    }
    if (rc != 0) {
        st = lmdb_fail("idempotency write", rc);
        goto out;
    }
    p = v.mv_data;
    mpl_put_u64(p, expiry);
    memcpy(p + 8, body_hash, MP_HASH_LEN);
    mpl_put_u16(p + 8 + MP_HASH_LEN, (uint16_t)status);
    if (body_len)
        memcpy(p + IDEM_HDR, body, body_len);
    st = mpl_expiry_add(&SPEC, t->txn, t->b->expiry, expiry, KIND_IDEM, key, klen);
out:
    return txn_result(t, st);
}

/* ---- counters and customer ids --------------------------------------------------- */

mp_status mpb_counter_next(mpb_txn *t, const char *name, uint64_t *out)
{
    uint8_t buf[8];
    MDB_val k, v;
    uint64_t next = 1;
    size_t n;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (t == NULL || out == NULL
        || (n = text_len(name, 1, COUNTER_NAME_MAX, name_char)) == (size_t)-1) {
        st = bad_arg("counter");
        goto out;
    }
    if ((st = need_write(t, "counter")) != MP_OK)
        goto out;
    k = mpl_val(name, n);
    rc = mdb_get(t->txn, t->b->counter, &k, &v);
    if (rc == 0) {
        if (v.mv_size != 8 || (next = mpl_get_u64(v.mv_data)) == 0) {
            st = corrupt("counter");
            goto out;
        }
    } else if (rc != MDB_NOTFOUND) {
        st = lmdb_fail("counter read", rc);
        goto out;
    }
    /* Wrapping would hand out serials and scrip ids a second time. */
    if (next == UINT64_MAX) {
        set_msg("broker store: counter %s exhausted", name);
        st = MP_ERR_STORE;
        goto out;
    }
    mpl_put_u64(buf, next + 1);
    v = mpl_val(buf, 8);
    if ((rc = mdb_put(t->txn, t->b->counter, &k, &v, 0)) != 0) {
        st = lmdb_fail("counter write", rc);
        goto out;
    }
    *out = next;
    st = MP_OK;
out:
    return txn_result(t, st);
}

static size_t custid_key(uint8_t key[CUSTID_KEY_MAX], const char *account, const char *vendor)
{
    size_t alen = account_len(account);
    size_t vlen = text_len(vendor, 0, MP_NAME_MAX, name_char);

    if (alen == (size_t)-1 || vlen == (size_t)-1)
        return 0;
    return pair_key(key, account, alen, vendor, vlen);
}

/* *id = 0 when absent. */
static mp_status custid_read(mpb_txn *t, MDB_val *k, uint64_t *id)
{
    MDB_val v;
    int rc;

    rc = mdb_get(t->txn, t->b->custid, k, &v);
    if (rc == MDB_NOTFOUND) {
        *id = 0;
        return MP_OK;
    }
    if (rc != 0)
        return lmdb_fail("customer id read", rc);
    if (v.mv_size != 8 || (*id = mpl_get_u64(v.mv_data)) == 0)
        return corrupt("customer id");
    return MP_OK;
}

mp_status mpb_custid_get(mpb_txn *t, const char *account, const char *vendor,
                         uint64_t *out, int *found)
{
    uint8_t key[CUSTID_KEY_MAX];
    MDB_val k;
    uint64_t id = 0;
    size_t klen;
    mp_status st = MP_ERR_ARG;

    if (t == NULL || out == NULL || found == NULL
        || (klen = custid_key(key, account, vendor)) == 0) {
        st = bad_arg("customer id lookup");
        goto out;
    }
    k = mpl_val(key, klen);
    if ((st = custid_read(t, &k, &id)) != MP_OK)
        goto out;
    if (id != 0)
        *out = id;
    *found = id != 0;
out:
    return txn_result(t, st);
}

mp_status mpb_custid_put(mpb_txn *t, const char *account, const char *vendor, uint64_t id)
{
    uint8_t key[CUSTID_KEY_MAX], buf[8];
    MDB_val k, v;
    size_t klen;
    int rc;
    mp_status st = MP_ERR_ARG;

    /* 0 is what "none assigned" would be read back as. Replacing is
     * allowed: the broker moves a customer to a new series that way. */
    if (t == NULL || id == 0 || (klen = custid_key(key, account, vendor)) == 0) {
        st = bad_arg("customer id");
        goto out;
    }
    if ((st = need_write(t, "customer id put")) != MP_OK)
        goto out;
    k = mpl_val(key, klen);
    mpl_put_u64(buf, id);
    v = mpl_val(buf, 8);
    if ((rc = mdb_put(t->txn, t->b->custid, &k, &v, 0)) != 0) {
        st = lmdb_fail("customer id write", rc);
        goto out;
    }
    st = MP_OK;
out:
    return txn_result(t, st);
}

/* ---- spent scrip and redeemed commitments ----------------------------------------- */

/* *last = 0 when absent; word (may be NULL) gets the stored word, *have
 * whether there is one. */
static mp_status redeemed_read(mpb_txn *t, MDB_val *k, uint32_t *last, uint64_t *keep_until,
                               uint8_t *word, int *have)
{
    MDB_val v;
    int rc;

    *have = 0;
    rc = mdb_get(t->txn, t->b->redeemed, k, &v);
    if (rc == MDB_NOTFOUND) {
        *last = 0;
        *keep_until = 0;
        return MP_OK;
    }
    if (rc != 0)
        return lmdb_fail("redeemed read", rc);
    if ((v.mv_size != REDEEMED_LEN && v.mv_size != REDEEMED_WLEN)
        || (*last = mpl_get_u32(v.mv_data)) == 0 || *last > MP_CHAIN_MAX)
        return corrupt("redeemed record");
    *keep_until = mpl_get_u64((const uint8_t *)v.mv_data + 4);
    if (v.mv_size == REDEEMED_WLEN) {
        *have = 1;
        if (word != NULL)
            memcpy(word, (const uint8_t *)v.mv_data + REDEEMED_LEN, MP_HASH_LEN);
    }
    return MP_OK;
}

mp_status mpb_redeemed_get(mpb_txn *t, const uint8_t commit_id[MP_HASH_LEN], uint32_t *last,
                           uint8_t *word, int *have_word)
{
    uint8_t w[MP_HASH_LEN];
    MDB_val k;
    uint64_t keep;
    uint32_t l;
    int have = 0;
    mp_status st = MP_ERR_ARG;

    if (t == NULL || commit_id == NULL || last == NULL) {
        st = bad_arg("redeemed lookup");
        goto out;
    }
    k = mpl_val(commit_id, MP_HASH_LEN);
    if ((st = redeemed_read(t, &k, &l, &keep, w, &have)) != MP_OK)
        goto out;
    *last = l;
    if (word != NULL && have)
        memcpy(word, w, MP_HASH_LEN);
    if (have_word != NULL)
        *have_word = have;
out:
    return txn_result(t, st);
}

mp_status mpb_redeemed_put(mpb_txn *t, const uint8_t commit_id[MP_HASH_LEN], uint32_t last,
                           const uint8_t *word, uint64_t keep_until)
{
    uint8_t buf[REDEEMED_WLEN], ekey[EXPIRY_KEY_MAX];
    MDB_val k, v, ek;
    uint64_t old_keep;
    uint32_t old_last;
    int rc, have = 0;
    mp_status st = MP_ERR_ARG;

    if (t == NULL || commit_id == NULL || last == 0 || last > MP_CHAIN_MAX) {
        st = bad_arg("redeemed record");
        goto out;
    }
    if ((st = need_write(t, "redeemed put")) != MP_OK)
        goto out;
    k = mpl_val(commit_id, MP_HASH_LEN);
    if ((st = redeemed_read(t, &k, &old_last, &old_keep, NULL, &have)) != MP_OK)
        goto out;
    /* Going back would let the words in between be credited again. */
    if (last < old_last) {
        set_msg("broker store: redeemed word %lu below the stored %lu",
                (unsigned long)last, (unsigned long)old_last);
        st = MP_ERR_ARG;
        goto out;
    }
    if (old_last != 0) {
        ek = mpl_val(ekey, mpl_expiry_key(ekey, old_keep, KIND_REDEEMED, commit_id, MP_HASH_LEN));
        rc = mdb_del(t->txn, t->b->expiry, &ek, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND) {
            st = lmdb_fail("expiry index delete", rc);
            goto out;
        }
    }
    mpl_put_u32(buf, last);
    mpl_put_u64(buf + 4, keep_until);
    if (word != NULL)
        memcpy(buf + REDEEMED_LEN, word, MP_HASH_LEN);
    v = mpl_val(buf, word != NULL ? REDEEMED_WLEN : REDEEMED_LEN);
    if ((rc = mdb_put(t->txn, t->b->redeemed, &k, &v, 0)) != 0) {
        st = lmdb_fail("redeemed write", rc);
        goto out;
    }
    st = mpl_expiry_add(&SPEC, t->txn, t->b->expiry, keep_until, KIND_REDEEMED, commit_id,
                        MP_HASH_LEN);
out:
    return txn_result(t, st);
}

/* ---- certificates ----------------------------------------------------------------- */

static mp_status no_cert_tables(void)
{
    set_msg("broker store: no certificate tables (open the store writable once)");
    return MP_ERR_ARG;
}

/* A record as the caller may write it; the amounts' currencies must agree. */
static int cert_valid(const mpb_cert *c)
{
    return c->serial != 0 && account_len(c->account) != (size_t)-1
        && amount_valid(&c->credit) && amount_valid(&c->redeemed)
        && memcmp(c->credit.cur, c->redeemed.cur, 3) == 0
        && c->redeemed.units <= c->credit.units && c->release_at >= c->expiry
        && (c->released == 0 || c->released == 1);
}

static mp_status cert_decode(const MDB_val *k, const MDB_val *v, mpb_cert *out)
{
    const uint8_t *p = v->mv_data;
    mpb_cert c;
    size_t alen;

    if (k->mv_size != 8 || v->mv_size < CERT_FIXED)
        return corrupt("certificate record");
    alen = p[CERT_FIXED - 1];
    if (v->mv_size != CERT_FIXED + alen
        || !bytes_ok(p + CERT_FIXED, alen, 1, MPB_ACCOUNT_MAX, account_char))
        return corrupt("certificate record");
    memset(&c, 0, sizeof c);
    c.serial = mpl_get_u64(k->mv_data);
    c.released = p[0];
    memcpy(c.credit.cur, p + 1, 3);
    memcpy(c.redeemed.cur, p + 1, 3);
    c.credit.units = mpl_get_u64(p + 4);
    c.redeemed.units = mpl_get_u64(p + 12);
    c.expiry = mpl_get_u64(p + 20);
    c.release_at = mpl_get_u64(p + 28);
    memcpy(c.account, p + CERT_FIXED, alen);
    if (!cert_valid(&c))
        return corrupt("certificate record");
    memcpy(out, &c, sizeof c);
    return MP_OK;
}

/* *found = 0 when absent. k must stay valid. */
static mp_status cert_read(mpb_txn *t, MDB_val *k, mpb_cert *out, int *found)
{
    MDB_val v;
    int rc = mdb_get(t->txn, t->b->cert, k, &v);

    if (rc == MDB_NOTFOUND) {
        *found = 0;
        return MP_OK;
    }
    if (rc != 0)
        return lmdb_fail("certificate read", rc);
    *found = 1;
    return cert_decode(k, &v, out);
}

static MDB_val certdue_key(uint8_t key[CERTDUE_KEY], uint64_t release_at, uint64_t serial)
{
    mpl_put_u64(key, release_at);
    mpl_put_u64(key + 8, serial);
    return mpl_val(key, CERTDUE_KEY);
}

mp_status mpb_cert_get(mpb_txn *t, uint64_t serial, mpb_cert *out, int *found)
{
    uint8_t key[8];
    MDB_val k;
    mpb_cert c;
    int f = 0;
    mp_status st = MP_ERR_ARG;

    if (t == NULL || out == NULL || found == NULL) {
        st = bad_arg("certificate lookup");
        goto out;
    }
    if (!t->b->certs || serial == 0) {
        *found = 0;
        st = MP_OK;
        goto out;
    }
    mpl_put_u64(key, serial);
    k = mpl_val(key, 8);
    if ((st = cert_read(t, &k, &c, &f)) != MP_OK)
        goto out;
    if (f)
        memcpy(out, &c, sizeof c);
    *found = f;
out:
    return txn_result(t, st);
}

mp_status mpb_cert_put(mpb_txn *t, const mpb_cert *c)
{
    uint8_t key[8], dkey[CERTDUE_KEY], buf[CERT_FIXED + MPB_ACCOUNT_MAX], *p = buf;
    MDB_val k, v, dk, dv = mpl_val("", 0);
    mpb_cert old;
    size_t alen;
    int found = 0, rc;
    mp_status st = MP_ERR_ARG;

    if (t == NULL || c == NULL) {
        st = bad_arg("certificate record");
        goto out;
    }
    if ((st = need_write(t, "certificate put")) != MP_OK)
        goto out;
    if (!t->b->certs) {
        st = no_cert_tables();
        goto out;
    }
    if (!cert_valid(c)) {
        st = bad_arg("certificate record");
        goto out;
    }
    mpl_put_u64(key, c->serial);
    k = mpl_val(key, 8);
    if ((st = cert_read(t, &k, &old, &found)) != MP_OK)
        goto out;
    if (found && (strcmp(old.account, c->account) != 0
                  || memcmp(old.credit.cur, c->credit.cur, 3) != 0
                  || old.credit.units != c->credit.units || old.expiry != c->expiry
                  || old.release_at != c->release_at || c->redeemed.units < old.redeemed.units
                  || c->released < old.released)) {
        set_msg("broker store: certificate %llu may only redeem more or be released",
                (unsigned long long)c->serial);
        st = MP_ERR_ARG;
        goto out;
    }
    alen = account_len(c->account);
    p[0] = c->released;
    memcpy(p + 1, c->credit.cur, 3);
    mpl_put_u64(p + 4, c->credit.units);
    mpl_put_u64(p + 12, c->redeemed.units);
    mpl_put_u64(p + 20, c->expiry);
    mpl_put_u64(p + 28, c->release_at);
    p[CERT_FIXED - 1] = (uint8_t)alen;
    memcpy(p + CERT_FIXED, c->account, alen);
    v = mpl_val(buf, CERT_FIXED + alen);
    if ((rc = mdb_put(t->txn, t->b->cert, &k, &v, 0)) != 0) {
        st = lmdb_fail("certificate write", rc);
        goto out;
    }
    /* The index holds exactly the unreleased records; release_at never
     * changes, so only a release removes an entry. */
    dk = certdue_key(dkey, c->release_at, c->serial);
    if (c->released && found && !old.released) {
        rc = mdb_del(t->txn, t->b->certdue, &dk, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND) {
            st = lmdb_fail("certificate index delete", rc);
            goto out;
        }
    } else if (!c->released && !found) {
        if ((rc = mdb_put(t->txn, t->b->certdue, &dk, &dv, 0)) != 0) {
            st = lmdb_fail("certificate index write", rc);
            goto out;
        }
    }
    st = MP_OK;
out:
    return txn_result(t, st);
}

/* The walk behind mpb_cert_due; drop deletes index entries that name no
 * unreleased record of their time (write transactions only). */
static mp_status cert_due(mpb_txn *t, uint64_t now, mpb_cert *out, size_t max, size_t *n,
                          int drop)
{
    uint8_t key[8];
    MDB_cursor *c = NULL;
    MDB_val k, v, rk;
    const uint8_t *p;
    size_t seen = 0, got = 0;
    uint64_t at = 0;
    int rc, found = 0, live;
    mp_status st = MP_ERR_STORE;

    if ((rc = mdb_cursor_open(t->txn, t->b->certdue, &c)) != 0) {
        c = NULL;
        st = lmdb_fail("certificate index", rc);
        goto out;
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && seen < max;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        p = k.mv_data;
        /* An entry that cannot be parsed names nothing; as in compaction,
         * it must not block the entries behind it. */
        live = k.mv_size == CERTDUE_KEY && mpl_get_u64(p + 8) != 0;
        if (live && (at = mpl_get_u64(p)) > now)
            break;
        seen++;
        if (live) {
            memcpy(key, p + 8, 8);
            rk = mpl_val(key, 8);
            if ((st = cert_read(t, &rk, &out[got], &found)) != MP_OK)
                goto out;
            live = found && !out[got].released && out[got].release_at == at;
        }
        if (live)
            got++;
        else if (drop && (rc = mdb_cursor_del(c, 0)) != 0) {
            st = lmdb_fail("certificate index delete", rc);
            goto out;
        }
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        st = lmdb_fail("certificate index", rc);
        goto out;
    }
    *n = got;
    st = MP_OK;
out:
    if (c != NULL)
        mdb_cursor_close(c);
    return st;
}

mp_status mpb_cert_due(mpb_txn *t, uint64_t now, mpb_cert *out, size_t max, size_t *n)
{
    mp_status st = MP_ERR_ARG;

    if (t == NULL || n == NULL || (out == NULL && max > 0)) {
        st = bad_arg("certificate listing");
        goto out;
    }
    *n = 0;
    if (!t->b->certs || max == 0) {
        st = MP_OK;
        goto out;
    }
    st = cert_due(t, now, out, max, n, !t->rdonly);
out:
    return txn_result(t, st);
}

/* Gives one certificate's unused credit back; fills *r. */
static mp_status release_one(mpb_txn *t, mpb_cert *c, mpb_release *r)
{
    mpb_account a;
    mp_amount rest, take, nb;
    int found = 0;
    mp_status st;

    memset(r, 0, sizeof *r);
    r->serial = c->serial;
    memcpy(r->account, c->account, sizeof r->account);
    /* cert_valid: same currency, redeemed <= credit. */
    if ((st = mp_amount_sub(&c->credit, &c->redeemed, &rest)) != MP_OK)
        return corrupt("certificate record");
    mp_amount_set(&r->amount, 0, rest.cur);
    r->uncovered = rest;
    if ((st = mpb_account_get(t, c->account, &a, &found)) != MP_OK)
        return st;
    if (found && rest.units > 0 && memcmp(a.reserved.cur, rest.cur, 3) == 0) {
        take = a.reserved.units < rest.units ? a.reserved : rest;
        if (mp_amount_add(&a.balance, &take, &nb) == MP_OK) {
            if ((st = mp_amount_sub(&a.reserved, &take, &a.reserved)) != MP_OK
                || (st = mp_amount_sub(&rest, &take, &r->uncovered)) != MP_OK)
                return st;
            a.balance = nb;
            r->amount = take;
            if ((st = mpb_account_put(t, &a)) != MP_OK)
                return st;
        }
    }
    c->released = 1;
    return mpb_cert_put(t, c);
}

mp_status mpb_cert_release(mpb *b, uint64_t now, mpb_release *out, size_t max, size_t *n)
{
    mpb_cert *due = NULL;
    mpb_txn *t = NULL;
    size_t i, got = 0;
    mp_status st = MP_ERR_ARG;

    if (b == NULL || out == NULL || n == NULL || max == 0 || max > RELEASE_MAX) {
        st = bad_arg("release arguments");
        goto out;
    }
    *n = 0;
    if (b->rdonly) {
        st = bad_arg("release on a read-only store");
        goto out;
    }
    if ((due = malloc(max * sizeof *due)) == NULL) {
        set_msg("broker store: out of memory");
        st = MP_ERR_NOMEM;
        goto out;
    }
    if ((st = mpb_begin(b, 0, &t)) != MP_OK)
        goto out;
    if ((st = mpb_cert_due(t, now, due, max, &got)) != MP_OK)
        goto out;
    for (i = 0; i < got; i++)
        if ((st = release_one(t, &due[i], &out[i])) != MP_OK)
            goto out;
    st = mpb_commit(t);
    t = NULL;
    if (st != MP_OK)
        goto out;
    *n = got;
out:
    mpb_abort(t);
    free(due);
    return st;
}

/* ---- issued scrip ------------------------------------------------------------------ */

static size_t issued_key(uint8_t key[ISSUED_KEY_MAX], const char *issuer, uint64_t id)
{
    size_t n = text_len(issuer, 1, MP_NAME_MAX, name_char);

    if (n == (size_t)-1)
        return 0;
    memcpy(key, issuer, n);
    key[n] = 0;
    mpl_put_u64(key + n + 1, id);
    return n + 1 + 8;
}

static MDB_val issuedue_key(uint8_t key[ISSUEDUE_KEY_MAX], uint64_t release_at,
                            const uint8_t *ikey, size_t ilen)
{
    mpl_put_u64(key, release_at);
    memcpy(key + 8, ikey, ilen);
    return mpl_val(key, 8 + ilen);
}

/* A record as it may be written; used = 0 or 1. */
static int issued_valid(const mpb_issued *s)
{
    return text_len(s->issuer, 1, MP_NAME_MAX, name_char) != (size_t)-1
        && account_len(s->account) != (size_t)-1
        && (s->kind == MPB_SCRIP_BROKER || s->kind == MPB_SCRIP_VENDOR)
        && (s->used == 0 || s->used == 1)
        && amount_valid(&s->value) && s->value.units > 0
        && s->use_until >= s->expiry && s->use_until <= UINT64_MAX - MPB_MARGIN
        && s->release_at >= s->use_until + MPB_MARGIN;
}

static mp_status issued_decode(const MDB_val *k, const MDB_val *v, mpb_issued *out)
{
    const uint8_t *kp = k->mv_data, *p = v->mv_data;
    mpb_issued s;
    size_t ilen, alen;

    if (k->mv_size < 1 + 1 + 8 || k->mv_size > ISSUED_KEY_MAX || v->mv_size < ISSUED_FIXED)
        return corrupt("issued record");
    ilen = k->mv_size - 9;
    alen = p[ISSUED_FIXED - 1];
    if (kp[ilen] != 0 || !bytes_ok(kp, ilen, 1, MP_NAME_MAX, name_char)
        || v->mv_size != ISSUED_FIXED + alen
        || !bytes_ok(p + ISSUED_FIXED, alen, 1, MPB_ACCOUNT_MAX, account_char))
        return corrupt("issued record");
    memset(&s, 0, sizeof s);
    memcpy(s.issuer, kp, ilen);
    s.id = mpl_get_u64(kp + ilen + 1);
    s.kind = p[0];
    s.used = p[1];
    memcpy(s.value.cur, p + 2, 3);
    s.value.units = mpl_get_u64(p + 5);
    s.expiry = mpl_get_u64(p + 13);
    s.use_until = mpl_get_u64(p + 21);
    s.release_at = mpl_get_u64(p + 29);
    memcpy(s.account, p + ISSUED_FIXED, alen);
    if (!issued_valid(&s))
        return corrupt("issued record");
    memcpy(out, &s, sizeof s);
    return MP_OK;
}

static mp_status issued_write(mpb_txn *t, const mpb_issued *s, const uint8_t *key, size_t klen,
                              unsigned flags)
{
    uint8_t buf[ISSUED_FIXED + MPB_ACCOUNT_MAX], *p = buf;
    size_t alen = account_len(s->account);
    MDB_val k = mpl_val(key, klen), v;
    int rc;

    p[0] = s->kind;
    p[1] = s->used;
    memcpy(p + 2, s->value.cur, 3);
    mpl_put_u64(p + 5, s->value.units);
    mpl_put_u64(p + 13, s->expiry);
    mpl_put_u64(p + 21, s->use_until);
    mpl_put_u64(p + 29, s->release_at);
    p[ISSUED_FIXED - 1] = (uint8_t)alen;
    memcpy(p + ISSUED_FIXED, s->account, alen);
    v = mpl_val(buf, ISSUED_FIXED + alen);
    rc = mdb_put(t->txn, t->b->issued, &k, &v, flags);
    if (rc == MDB_KEYEXIST) {
        set_msg("broker store: scrip %llu of %s was issued before (ids are never reused)",
                (unsigned long long)s->id, s->issuer);
        return MP_ERR_ARG;
    }
    return rc == 0 ? MP_OK : lmdb_fail("issued write", rc);
}

mp_status mpb_issued_put(mpb_txn *t, const mpb_issued *s)
{
    uint8_t key[ISSUED_KEY_MAX], dkey[ISSUEDUE_KEY_MAX];
    MDB_val dk, dv = mpl_val("", 0);
    size_t klen;
    int rc;
    mp_status st = MP_ERR_ARG;

    if (t == NULL || s == NULL || !issued_valid(s) || s->used
        || (klen = issued_key(key, s->issuer, s->id)) == 0) {
        st = bad_arg("issued record");
        goto out;
    }
    if ((st = need_write(t, "issued put")) != MP_OK)
        goto out;
    if (!t->b->certs) {
        st = no_cert_tables();
        goto out;
    }
    if ((st = issued_write(t, s, key, klen, MDB_NOOVERWRITE)) != MP_OK)
        goto out;
    dk = issuedue_key(dkey, s->release_at, key, klen);
    if ((rc = mdb_put(t->txn, t->b->issuedue, &dk, &dv, 0)) != 0) {
        st = lmdb_fail("issued index write", rc);
        goto out;
    }
    st = MP_OK;
out:
    return txn_result(t, st);
}

/* *found = 0 when absent; key must hold the record's key. */
static mp_status issued_read(mpb_txn *t, const uint8_t *key, size_t klen, mpb_issued *out,
                             int *found)
{
    MDB_val k = mpl_val(key, klen), v;
    int rc;

    *found = 0;
    if (!t->b->certs)
        return MP_OK;
    rc = mdb_get(t->txn, t->b->issued, &k, &v);
    if (rc == MDB_NOTFOUND)
        return MP_OK;
    if (rc != 0)
        return lmdb_fail("issued read", rc);
    *found = 1;
    return issued_decode(&k, &v, out);
}

mp_status mpb_issued_get(mpb_txn *t, const char *issuer, uint64_t id, mpb_issued *out,
                         int *found)
{
    uint8_t key[ISSUED_KEY_MAX];
    mpb_issued s;
    size_t klen;
    int f = 0;
    mp_status st = MP_ERR_ARG;

    if (t == NULL || out == NULL || found == NULL) {
        st = bad_arg("issued lookup");
        goto out;
    }
    /* An issuer name no record can have (it comes from a client's scrip). */
    if ((klen = issued_key(key, issuer, id)) == 0) {
        *found = 0;
        st = MP_OK;
        goto out;
    }
    if ((st = issued_read(t, key, klen, &s, &f)) != MP_OK)
        goto out;
    if (f)
        memcpy(out, &s, sizeof s);
    *found = f;
out:
    return txn_result(t, st);
}

mp_status mpb_issued_use(mpb_txn *t, const char *issuer, uint64_t id, uint64_t now,
                         mpb_issued *out)
{
    uint8_t key[ISSUED_KEY_MAX];
    mpb_issued s;
    size_t klen;
    int found = 0;
    mp_status st = MP_ERR_ARG;

    if (t == NULL || out == NULL) {
        st = bad_arg("issued use");
        goto out;
    }
    if ((st = need_write(t, "issued use")) != MP_OK)
        goto out;
    if ((klen = issued_key(key, issuer, id)) == 0) {
        st = MP_ERR_FORGED;
        goto out;
    }
    if ((st = issued_read(t, key, klen, &s, &found)) != MP_OK)
        goto out;
    /* No record: whatever stamp it carries, the broker did not sell it (or
     * sold it so long ago that its record is released, and its value with
     * it). Refusing is what keeps a deleted record from meaning "unused". */
    if (!found) {
        set_msg("broker store: scrip %llu of %s has no issued record",
                (unsigned long long)id, issuer);
        st = MP_ERR_FORGED;
        goto out;
    }
    if (now >= s.use_until) {
        st = MP_ERR_EXPIRED;
        goto out;
    }
    if (s.used) {
        st = MP_ERR_SPENT;
        goto out;
    }
    s.used = 1;
    if ((st = issued_write(t, &s, key, klen, 0)) != MP_OK)
        goto out;
    memcpy(out, &s, sizeof s);
    st = MP_OK;
out:
    return txn_result(t, st);
}

/* Gives one due record's outstanding value back and deletes it (and its
 * index entry, under the cursor). *gone = 0 when it must stay. */
static mp_status issued_release_one(mpb_txn *t, const mpb_issued *s, const uint8_t *ikey,
                                    size_t ilen, mpb_lapse *l, int *gone)
{
    MDB_val k = mpl_val(ikey, ilen);
    mpb_account a;
    mp_amount nb;
    int found = 0, rc;
    mp_status st;

    *gone = 0;
    memset(l, 0, sizeof *l);
    memcpy(l->account, s->account, sizeof l->account);
    l->kind = s->kind;
    mp_amount_set(&l->returned, 0, s->value.cur);
    if (!s->used) {
        if ((st = mpb_account_get(t, s->account, &a, &found)) != MP_OK)
            return st;
        if (!found || memcmp(a.balance.cur, s->value.cur, 3) != 0
            || mp_amount_add(&a.balance, &s->value, &nb) != MP_OK)
            return MP_OK;                 /* kept: its value has nowhere to go */
        a.balance = nb;
        if ((st = mpb_account_put(t, &a)) != MP_OK)
            return st;
        l->returned = s->value;
    }
    if ((rc = mdb_del(t->txn, t->b->issued, &k, NULL)) != 0)
        return lmdb_fail("issued delete", rc);
    *gone = 1;
    return MP_OK;
}

mp_status mpb_issued_release(mpb *b, uint64_t now, mpb_lapse *out, size_t max, size_t *n,
                             int *more)
{
    mpb_txn *t = NULL;
    MDB_cursor *c = NULL;
    MDB_val k, v;
    mpb_issued s;
    mpb_lapse l;
    uint8_t key[ISSUEDUE_KEY_MAX];
    struct kept_s { mpb_issued s; uint8_t key[ISSUED_KEY_MAX]; size_t klen; } *kept = NULL, *keep;
    size_t got = 0, seen = 0, klen, nkept = 0, i;
    MDB_val dk, dv = mpl_val("", 0);
    uint64_t at;
    int rc, found = 0, gone = 0;
    mp_status st = MP_ERR_ARG;

    if (b == NULL || n == NULL || max == 0 || max > RELEASE_MAX) {
        st = bad_arg("release arguments");
        goto out;
    }
    *n = 0;
    if (b->rdonly) {
        st = bad_arg("release on a read-only store");
        goto out;
    }
    if (!b->certs) {
        st = MP_OK;
        goto out;
    }
    if ((st = mpb_begin(b, 0, &t)) != MP_OK)
        goto out;
    if ((rc = mdb_cursor_open(t->txn, b->issuedue, &c)) != 0) {
        c = NULL;
        st = lmdb_fail("issued index", rc);
        goto out;
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && seen < max;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        /* A copy: LMDB's pointers die with the next write. */
        klen = k.mv_size <= ISSUEDUE_KEY_MAX ? k.mv_size : 0;
        memcpy(key, k.mv_data, klen);
        at = klen >= 8 + 10 ? mpl_get_u64(key) : 0;
        if (klen >= 8 + 10 && at > now)
            break;
        seen++;
        found = 0;
        if (klen >= 8 + 10 && (st = issued_read(t, key + 8, klen - 8, &s, &found)) != MP_OK)
            goto out;
        /* An entry naming no record of its time names nothing: dropped. */
        if (found && s.release_at == at) {
            if ((st = issued_release_one(t, &s, key + 8, klen - 8, &l, &gone)) != MP_OK)
                goto out;
            if (gone) {
                if (out != NULL)
                    out[got] = l;
                got++;
            } else {
                /* Kept: tried again a day later, so that records whose value
                 * cannot go back never block the ones behind them. */
                if ((keep = realloc(kept, (nkept + 1) * sizeof *kept)) == NULL) {
                    set_msg("broker store: out of memory");
                    st = MP_ERR_NOMEM;
                    goto out;
                }
                kept = keep;
                kept[nkept].s = s;
                kept[nkept].s.release_at = now + 86400 > s.release_at ? now + 86400
                                                                      : s.release_at;
                memcpy(kept[nkept].key, key + 8, klen - 8);
                kept[nkept++].klen = klen - 8;
            }
        }
        if ((rc = mdb_cursor_del(c, 0)) != 0) {
            st = lmdb_fail("issued index delete", rc);
            goto out;
        }
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        st = lmdb_fail("issued index", rc);
        goto out;
    }
    mdb_cursor_close(c);
    c = NULL;
    for (i = 0; i < nkept; i++) {
        dk = issuedue_key(key, kept[i].s.release_at, kept[i].key, kept[i].klen);
        if ((st = issued_write(t, &kept[i].s, kept[i].key, kept[i].klen, 0)) != MP_OK)
            goto out;
        if ((rc = mdb_put(t->txn, b->issuedue, &dk, &dv, 0)) != 0) {
            st = lmdb_fail("issued index write", rc);
            goto out;
        }
    }
    st = mpb_commit(t);
    t = NULL;
    if (st != MP_OK)
        goto out;
    *n = got;
    if (more != NULL)
        *more = seen == max;
out:
    if (c != NULL)
        mdb_cursor_close(c);
    mpb_abort(t);
    free(kept);
    return st;
}

/* ---- the ledger ------------------------------------------------------------------- */

mp_status mpb_total_add(mpb_txn *t, const char *name, const mp_amount *a)
{
    mp_status st = MP_ERR_ARG;

    if (t == NULL || a == NULL || !amount_valid(a)
        || text_len(name, 1, TOTAL_NAME_MAX, name_char) == (size_t)-1) {
        st = bad_arg("ledger total");
        goto out;
    }
    if ((st = need_write(t, "ledger total")) != MP_OK)
        goto out;
    if (!t->b->certs) {
        st = no_cert_tables();
        goto out;
    }
    st = total_add(t->txn, t->b->totals, a->cur, name, a->units);
out:
    return txn_result(t, st);
}

/* The row of cur, added when new. NULL when there is no room. */
static mpb_audit_row *audit_row(mpb_audit_row *rows, size_t *n, const char *cur)
{
    size_t i;

    for (i = 0; i < *n; i++)
        if (memcmp(rows[i].cur, cur, 3) == 0)
            return &rows[i];
    if (*n >= MPB_AUDIT_CURRENCIES)
        return NULL;
    memset(&rows[*n], 0, sizeof rows[*n]);
    memcpy(rows[*n].cur, cur, 3);
    return &rows[(*n)++];
}

static int add_to(uint64_t *sum, uint64_t v)
{
    if (v > UINT64_MAX - *sum)
        return -1;
    *sum += v;
    return 0;
}

static int audit_cmp(const void *a, const void *b)
{
    return memcmp(((const mpb_audit_row *)a)->cur, ((const mpb_audit_row *)b)->cur, 3);
}

mp_status mpb_audit(mpb_txn *t, mpb_audit_row *rows, size_t *n)
{
    MDB_cursor *c = NULL;
    MDB_val k, v;
    mpb_account a;
    mpb_issued s;
    mpb_audit_row *r;
    const uint8_t *p;
    size_t m = 0, i, nlen;
    uint64_t held, net;
    int rc, bad = 0;
    mp_status st = MP_ERR_ARG;

    if (t == NULL || rows == NULL || n == NULL) {
        st = bad_arg("audit");
        goto out;
    }
    if (!t->b->certs) {
        set_msg("broker store: no ledger tables yet (open the store writable once)");
        st = MP_ERR_ARG;
        goto out;
    }
    if ((rc = mdb_cursor_open(t->txn, t->b->account, &c)) != 0) {
        c = NULL;
        st = lmdb_fail("account listing", rc);
        goto out;
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if ((st = account_decode(&k, &v, &a)) != MP_OK)
            goto out;
        if ((r = audit_row(rows, &m, a.balance.cur)) == NULL)
            bad = 1;
        else if (a.kind == MPB_VENDOR)
            bad |= add_to(&r->vendor_balance, a.balance.units)
                 | add_to(&r->reserved, a.reserved.units);
        else
            bad |= add_to(&r->customer_balance, a.balance.units)
                 | add_to(&r->reserved, a.reserved.units);
    }
    if ((st = mpl_walk_end(&SPEC, "account listing", rc)) != MP_OK)
        goto out;
    mdb_cursor_close(c);
    if ((rc = mdb_cursor_open(t->txn, t->b->issued, &c)) != 0) {
        c = NULL;
        st = lmdb_fail("issued listing", rc);
        goto out;
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if ((st = issued_decode(&k, &v, &s)) != MP_OK)
            goto out;
        if (s.used)
            continue;
        if ((r = audit_row(rows, &m, s.value.cur)) == NULL)
            bad = 1;
        else if (s.kind == MPB_SCRIP_BROKER)
            bad |= add_to(&r->broker_scrip, s.value.units) | add_to(&r->broker_scrip_n, 1);
        else
            bad |= add_to(&r->vendor_scrip, s.value.units) | add_to(&r->vendor_scrip_n, 1);
    }
    if ((st = mpl_walk_end(&SPEC, "issued listing", rc)) != MP_OK)
        goto out;
    mdb_cursor_close(c);
    if ((rc = mdb_cursor_open(t->txn, t->b->totals, &c)) != 0) {
        c = NULL;
        st = lmdb_fail("ledger listing", rc);
        goto out;
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        p = k.mv_data;
        if (k.mv_size < 5 || k.mv_size > TOTAL_KEY_MAX || p[3] != 0 || v.mv_size != 8) {
            st = corrupt("ledger total");
            goto out;
        }
        if (memcmp(p, "---", 3) == 0)
            continue;                      /* the start mark */
        nlen = k.mv_size - 4;
        if ((r = audit_row(rows, &m, (const char *)p)) == NULL) {
            bad = 1;
            continue;
        }
        if (nlen == strlen(MPB_TOTAL_CREDITED) && memcmp(p + 4, MPB_TOTAL_CREDITED, nlen) == 0)
            r->credited = mpl_get_u64(v.mv_data);
        else if (nlen == strlen(MPB_TOTAL_WITHDRAWN)
                 && memcmp(p + 4, MPB_TOTAL_WITHDRAWN, nlen) == 0)
            r->withdrawn = mpl_get_u64(v.mv_data);
        else if (nlen == strlen(MPB_TOTAL_REDEEMED)
                 && memcmp(p + 4, MPB_TOTAL_REDEEMED, nlen) == 0)
            r->redeemed = mpl_get_u64(v.mv_data);
    }
    if ((st = mpl_walk_end(&SPEC, "ledger listing", rc)) != MP_OK)
        goto out;
    if (bad) {
        set_msg("broker store: audit sums out of range (or more than %d currencies)",
                MPB_AUDIT_CURRENCIES);
        st = MP_ERR_OVERFLOW;
        goto out;
    }
    for (i = 0; i < m; i++) {
        r = &rows[i];
        held = 0;
        bad = add_to(&held, r->customer_balance) | add_to(&held, r->reserved)
            | add_to(&held, r->vendor_balance) | add_to(&held, r->broker_scrip)
            | add_to(&held, r->vendor_scrip);
        net = r->credited >= r->withdrawn ? r->credited - r->withdrawn : 0;
        r->balanced = !bad && r->credited >= r->withdrawn && held == net;
    }
    qsort(rows, m, sizeof *rows, audit_cmp);
    *n = m;
    st = MP_OK;
out:
    if (c != NULL)
        mdb_cursor_close(c);
    return txn_result(t, st);
}

/* ---- compaction ------------------------------------------------------------------ */

/* Deletes the records indexed as due at now, up to max index entries
 * (mpl_compact: the record's own time is compared first, so an entry left
 * behind by a rewrite never removes a newer record). */
mp_status mpb_compact(mpb *b, uint64_t now, size_t max, size_t *removed)
{
    mpl_kind kinds[3];
    MDB_txn *txn = NULL;
    size_t n = 0;
    mp_status st = MP_ERR_ARG;

    if (b == NULL || removed == NULL) {
        st = bad_arg("compaction arguments");
        goto out;
    }
    if (b->rdonly) {
        st = bad_arg("compaction on a read-only store");
        goto out;
    }
    /* Where each kind's time is: an expiry leads idem and spent records, a
     * redeemed record has it after the u32 last word. */
    kinds[KIND_IDEM - 1] = (mpl_kind){ b->idem, 0 };
    kinds[KIND_SPENT - 1] = (mpl_kind){ b->spent, 0 };
    kinds[KIND_REDEEMED - 1] = (mpl_kind){ b->redeemed, 4 };
    if ((st = mpl_begin(&SPEC, b->env, 0, &txn)) != MP_OK
        || (st = mpl_compact(&SPEC, txn, b->expiry, kinds, 3, EXPIRY_KEY_MAX, now, max, &n,
                             NULL)) != MP_OK
        || (st = mpl_commit(&SPEC, &txn)) != MP_OK)
        goto out;
    *removed = n;
    st = MP_OK;
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    return st;
}
