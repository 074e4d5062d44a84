/*
 * test_bstore.c - the broker's LMDB store (mod_micropay_bstore.h): opening
 * and refusing stores, accounts and their refusals, idempotency records,
 * counters, customer ids, spent scrip, redeemed commitments, certificate
 * records and the release of their credit, damaged records, compaction and persistence, then processes debiting one account
 * at once, and a writer killed with SIGKILL in the middle of its debits.
 *
 * Every store lives in its own mkdtemp directory under /tmp, removed at
 * the end. Exits non-zero when anything failed.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <CUnit/Basic.h>
#include <lmdb.h>
#include "mod_micropay_bstore.h"
#include "store_util.h"

#define NOW       1800000000ULL
#define ACCT      "acct-42"
#define VENDOR    "news.example"
#define START     1000          /* units on the contended account */
#define DEBIT     7
#define CHILDREN  8
#define ATTEMPTS  200

static int verbose;

/* ---- directories ------------------------------------------------------------ */

static int exists(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0;
}

/* A fresh store: its directory, or NULL. */
static const char *new_store(void)
{
    char err[256];
    const char *d = su_new_dir("mpb");

    if (d == NULL || mpb_create(d, -1, -1, err, sizeof err) != MP_OK) {
        fprintf(stderr, "cannot create a store: %s\n", d ? err : strerror(errno));
        return NULL;
    }
    return d;
}

static mpb *open_store(const char *d, int rdonly)
{
    char err[256];
    mpb *b = NULL;

    if (d == NULL || mpb_open(d, rdonly, 0, &b, err, sizeof err) != MP_OK) {
        fprintf(stderr, "cannot open %s: %s\n", d ? d : "(null)", err);
        return NULL;
    }
    return b;
}

static mp_status open_err(const char *d, char *err, size_t errlen)
{
    mpb *b = NULL;
    mp_status st = mpb_open(d, 0, 0, &b, err, errlen);

    mpb_close(b);
    return st;
}

/* ---- raw LMDB access, to damage a store as a bug or a disk would ------------- */

typedef struct {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
} raw;

static int raw_open(raw *r, const char *d, const char *db, unsigned create)
{
    memset(r, 0, sizeof *r);
    if (mdb_env_create(&r->env) != 0)
        return 0;
    if (mdb_env_set_maxdbs(r->env, 16) != 0
        || mdb_env_set_mapsize(r->env, (size_t)1 << 30) != 0
        || mdb_env_open(r->env, d, MDB_NOTLS, 0600) != 0
        || mdb_txn_begin(r->env, NULL, 0, &r->txn) != 0) {
        mdb_env_close(r->env);
        return 0;
    }
    if (mdb_dbi_open(r->txn, db, create, &r->dbi) != 0) {
        mdb_txn_abort(r->txn);
        mdb_env_close(r->env);
        return 0;
    }
    return 1;
}

static int raw_close(raw *r)
{
    int rc = mdb_txn_commit(r->txn);

    mdb_env_close(r->env);
    return rc == 0;
}

static int raw_put(raw *r, const void *k, size_t kn, const void *v, size_t vn)
{
    MDB_val key = { kn, (void *)k }, val = { vn, (void *)v };

    return mdb_put(r->txn, r->dbi, &key, &val, 0) == 0;
}

/* Entries of one database of a closed store; (size_t)-1 on failure. */
static size_t raw_count(const char *d, const char *db)
{
    raw r;
    MDB_stat ms;
    size_t n = (size_t)-1;

    if (!raw_open(&r, d, db, 0))
        return n;
    if (mdb_stat(r.txn, r.dbi, &ms) == 0)
        n = ms.ms_entries;
    mdb_txn_abort(r.txn);
    mdb_env_close(r.env);
    return n;
}

/* ---- fixtures ----------------------------------------------------------------- */

static mpb_account account(const char *id, uint8_t kind, const char *vendor, uint64_t units)
{
    mpb_account a;

    memset(&a, 0, sizeof a);
    snprintf(a.id, sizeof a.id, "%s", id);
    a.kind = kind;
    snprintf(a.vendor, sizeof a.vendor, "%s", vendor);
    mp_amount_set(&a.balance, units, "USD");
    mp_amount_set(&a.reserved, 0, "USD");
    memset(a.key_enc, 0xa5, sizeof a.key_enc);
    a.key_enc[0] = (uint8_t)units;
    a.created = NOW;
    return a;
}

static mp_status put_account(mpb *b, const mpb_account *a)
{
    mpb_txn *t = NULL;
    mp_status st;

    if ((st = mpb_begin(b, 0, &t)) != MP_OK)
        return st;
    if ((st = mpb_account_put(t, a)) != MP_OK) {
        mpb_abort(t);
        return st;
    }
    return mpb_commit(t);
}

/* The account's balance in units, or -1 when it cannot be read. */
static long long balance(mpb *b, const char *id)
{
    mpb_txn *t = NULL;
    mpb_account a;
    int found = 0;
    long long units = -1;

    if (mpb_begin(b, 1, &t) != MP_OK)
        return -1;
    if (mpb_account_get(t, id, &a, &found) == MP_OK && found)
        units = (long long)a.balance.units;
    mpb_abort(t);
    return units;
}

static void hash_of(const char *s, uint8_t h[MP_HASH_LEN])
{
    memset(h, 0, MP_HASH_LEN);
    mp_sha256(s, strlen(s), h);
}

/* The counter's next value without taking it. */
static uint64_t peek_counter(mpb *b, const char *name)
{
    mpb_txn *t = NULL;
    uint64_t v = 0;

    if (mpb_begin(b, 0, &t) != MP_OK)
        return 0;
    if (mpb_counter_next(t, name, &v) != MP_OK)
        v = 0;
    mpb_abort(t);
    return v;
}

/* ---- opening and refusing ------------------------------------------------------- */

static void test_create_open(void)
{
    char err[256];
    const char *d = new_store();
    mpb *b, *ro;
    mpb_txn *t = NULL;
    struct stat sb;

    CU_ASSERT_FATAL(d != NULL);
    CU_ASSERT(stat(su_file_in(d, "data.mdb"), &sb) == 0 && (sb.st_mode & 077) == 0);
    /* never twice, and never over something else */
    ASSERT_ST(mpb_create(d, -1, -1, err, sizeof err), MP_ERR_STORE);
    CU_ASSERT(strstr(err, "already exists") != NULL);
    ASSERT_ST(mpb_create(su_file_in(d, "data.mdb"), -1, -1, err, sizeof err), MP_ERR_STORE);
    ASSERT_ST(mpb_create("/nonexistent/mpb", -1, -1, err, sizeof err), MP_ERR_STORE);
    ASSERT_ST(mpb_create(NULL, -1, -1, err, sizeof err), MP_ERR_ARG);

    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(put_account(b, (mpb_account[]){ account(ACCT, MPB_CUSTOMER, "", 500) }));
    mpb_close(b);

    ro = open_store(d, 1);
    CU_ASSERT_FATAL(ro != NULL);
    CU_ASSERT(balance(ro, ACCT) == 500);
    ASSERT_ST(mpb_begin(ro, 0, &t), MP_ERR_ARG);
    CU_ASSERT(t == NULL);
    ASSERT_ST(mpb_compact(ro, NOW, 10, (size_t[]){ 0 }), MP_ERR_ARG);
    mpb_close(ro);
    mpb_close(NULL);
    mpb_abort(NULL);
    ASSERT_ST(mpb_commit(NULL), MP_ERR_ARG);
}

static void test_open_missing(void)
{
    char err[256];
    const char *d = su_new_dir("mpb");

    CU_ASSERT_FATAL(d != NULL);
    ASSERT_ST(open_err(d, err, sizeof err), MP_ERR_STORE);
    CU_ASSERT(strstr(err, "does not exist") != NULL);
    /* opening must not have made an empty store that would then open */
    CU_ASSERT(!exists(su_file_in(d, "data.mdb")));
    ASSERT_ST(open_err("/nonexistent/mpb", err, sizeof err), MP_ERR_STORE);
    ASSERT_ST(mpb_open(NULL, 0, 0, (mpb *[]){ NULL }, err, sizeof err), MP_ERR_ARG);
}

static void test_open_garbage(void)
{
    char err[256], junk[16384];
    const char *d = su_new_dir("mpb");
    size_t i;

    CU_ASSERT_FATAL(d != NULL);
    CU_ASSERT_FATAL(su_write_file(su_file_in(d, "data.mdb"), "", 0));
    ASSERT_ST(open_err(d, err, sizeof err), MP_ERR_STORE);
    CU_ASSERT(strstr(err, "empty") != NULL);
    {
        struct stat sb;
        CU_ASSERT(stat(su_file_in(d, "data.mdb"), &sb) == 0 && sb.st_size == 0);
    }
    for (i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 131 + 7);
    CU_ASSERT_FATAL(su_write_file(su_file_in(d, "data.mdb"), junk, sizeof junk));
    ASSERT_ST(open_err(d, err, sizeof err), MP_ERR_STORE);
    unlink(su_file_in(d, "data.mdb"));
    CU_ASSERT_FATAL(mkdir(su_file_in(d, "data.mdb"), 0700) == 0);
    ASSERT_ST(open_err(d, err, sizeof err), MP_ERR_STORE);
    CU_ASSERT(strstr(err, "not a regular file") != NULL);
    rmdir(su_file_in(d, "data.mdb"));
}

static void test_open_truncated(void)
{
    char err[256], id[32];
    const char *d = new_store();
    mpb *b;
    mpb_txn *t = NULL;
    mpb_account a;
    int i;

    CU_ASSERT_FATAL(d != NULL);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_begin(b, 0, &t));
    for (i = 0; i < 2000; i++) {
        snprintf(id, sizeof id, "acct-%05d", i);
        a = account(id, MPB_CUSTOMER, "", (uint64_t)i);
        ASSERT_OK(mpb_account_put(t, &a));
    }
    ASSERT_OK(mpb_commit(t));
    mpb_close(b);
    CU_ASSERT_FATAL(truncate(su_file_in(d, "data.mdb"), 4 * 4096) == 0);
    ASSERT_ST(open_err(d, err, sizeof err), MP_ERR_STORE);
    CU_ASSERT(strstr(err, "truncated") != NULL);
    /* read-only is where the short map would have faulted */
    ASSERT_ST(mpb_open(d, 1, 0, (mpb *[]){ NULL }, err, sizeof err), MP_ERR_STORE);
}

/* The map size: the store holds what fits in it ("full" past that), keeps
 * it, and takes more once opened with a larger map. */
static void test_map_size(void)
{
    static char body[256 * 1024];
    const size_t mib = (size_t)1 << 20;
    uint8_t h[MP_HASH_LEN];
    char err[256], reqid[16];
    const char *d = new_store();
    mpb_txn *t = NULL;
    mpb *b = NULL;
    mp_status st = MP_OK;
    int i, n = 0;

    CU_ASSERT_FATAL(d != NULL);
    memset(body, 'b', sizeof body);
    memset(h, 7, sizeof h);
    ASSERT_OK(mpb_open(d, 0, 16 * mib, &b, err, sizeof err));
    CU_ASSERT_FATAL(b != NULL);
    for (i = 0; i < 1000 && st == MP_OK; i++) {
        snprintf(reqid, sizeof reqid, "r%d", i);
        ASSERT_OK(mpb_begin(b, 0, &t));
        st = mpb_idem_put(t, ACCT, reqid, h, 200, body, sizeof body, NOW);
        if (st == MP_OK)
            st = mpb_commit(t);
        else
            mpb_abort(t);
        n += st == MP_OK;
    }
    ASSERT_ST(st, MP_ERR_STORE);
    CU_ASSERT(n > 30 && n < 64);
    CU_ASSERT(strstr(mpb_errmsg(), "broker store full") != NULL);
    mpb_close(b);
    b = NULL;
    ASSERT_OK(mpb_open(d, 0, 64 * mib, &b, err, sizeof err));
    CU_ASSERT_FATAL(b != NULL);
    snprintf(reqid, sizeof reqid, "r%d", n - 1);
    {
        char *got = NULL;
        size_t got_len = 0;
        int found = 0, code = 0;

        ASSERT_OK(mpb_begin(b, 1, &t));
        ASSERT_OK(mpb_idem_get(t, ACCT, reqid, h, &found, &code, &got, &got_len));
        CU_ASSERT(found && code == 200 && got_len == sizeof body);
        free(got);
        mpb_abort(t);
    }
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_idem_put(t, ACCT, "more", h, 200, body, sizeof body, NOW));
    ASSERT_OK(mpb_commit(t));
    mpb_close(b);
}

static void test_open_foreign(void)
{
    char err[256];
    const char *d1 = su_new_dir("mpb"), *d2 = su_new_dir("mpb");
    raw r;

    CU_ASSERT_FATAL(d1 != NULL && d2 != NULL);
    /* the vendor store's format key */
    CU_ASSERT_FATAL(raw_open(&r, d1, "meta", MDB_CREATE));
    CU_ASSERT(raw_put(&r, "format", 6, "mod_micropay-store-1", 20));
    CU_ASSERT_FATAL(raw_close(&r));
    ASSERT_ST(open_err(d1, err, sizeof err), MP_ERR_STORE);
    CU_ASSERT(strstr(err, "not a mod_micropay broker store") != NULL);
    /* a later version of ours */
    CU_ASSERT_FATAL(raw_open(&r, d1, "meta", MDB_CREATE));
    CU_ASSERT(raw_put(&r, "format", 6, "mod_micropay-broker-store-2", 27));
    CU_ASSERT_FATAL(raw_close(&r));
    ASSERT_ST(open_err(d1, err, sizeof err), MP_ERR_STORE);
    /* some other program's LMDB file, without our databases */
    CU_ASSERT_FATAL(raw_open(&r, d2, "other", MDB_CREATE));
    CU_ASSERT(raw_put(&r, "k", 1, "v", 1));
    CU_ASSERT_FATAL(raw_close(&r));
    ASSERT_ST(open_err(d2, err, sizeof err), MP_ERR_STORE);
    CU_ASSERT(raw_count(d2, "account") == (size_t)-1);   /* left untouched */
}

/* ---- accounts ------------------------------------------------------------------ */

typedef struct {
    int n, stop_at;
    char ids[8][MPB_ACCOUNT_MAX + 1];
} list_ctx;

static int list_cb(void *ctx, const mpb_account *a)
{
    list_ctx *c = ctx;

    if (c->n < 8)
        snprintf(c->ids[c->n], sizeof c->ids[0], "%s", a->id);
    c->n++;
    return c->n == c->stop_at;
}

static void test_accounts(void)
{
    const char *d = new_store();
    char long_id[MPB_ACCOUNT_MAX + 2];
    mpb *b;
    mpb_txn *t = NULL;
    mpb_account a, v, got;
    list_ctx lc;
    int found = -1;
    size_t i;
    static const char *const bad_ids[] = {
        "", "a b", "quo\"te", "back\\slash", "tab\t", "del\x7f", "caf\xc3\xa9"
    };

    CU_ASSERT_FATAL(d != NULL);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);

    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_account_get(t, ACCT, &got, &found));
    CU_ASSERT(found == 0);
    a = account(ACCT, MPB_CUSTOMER, "", 12345);
    mp_amount_set(&a.reserved, 500, "USD");
    ASSERT_OK(mpb_account_put(t, &a));
    v = account("vendor-1", MPB_VENDOR, VENDOR, 0);
    ASSERT_OK(mpb_account_put(t, &v));
    ASSERT_OK(mpb_account_get(t, ACCT, &got, &found));
    CU_ASSERT(found == 1 && memcmp(&got, &a, sizeof a) == 0);
    ASSERT_OK(mpb_commit(t));

    /* every field round-trips, after a reopen too */
    mpb_close(b);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_begin(b, 1, &t));
    found = 0;
    ASSERT_OK(mpb_account_get(t, ACCT, &got, &found));
    CU_ASSERT(found == 1);
    CU_ASSERT(strcmp(got.id, ACCT) == 0 && got.kind == MPB_CUSTOMER && got.vendor[0] == 0);
    CU_ASSERT(got.balance.units == 12345 && strcmp(got.balance.cur, "USD") == 0);
    CU_ASSERT(got.reserved.units == 500 && strcmp(got.reserved.cur, "USD") == 0);
    CU_ASSERT(memcmp(got.key_enc, a.key_enc, MP_SECRET_LEN) == 0 && got.created == NOW);
    found = 0;
    ASSERT_OK(mpb_account_get(t, "vendor-1", &got, &found));
    CU_ASSERT(found == 1 && got.kind == MPB_VENDOR && strcmp(got.vendor, VENDOR) == 0);
    /* the id comes from a client: one that cannot exist is not found */
    for (i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        found = -1;
        ASSERT_OK(mpb_account_get(t, bad_ids[i], &got, &found));
        CU_ASSERT(found == 0);
    }
    ASSERT_ST(mpb_account_get(t, NULL, &got, &found), MP_ERR_ARG);
    /* put needs a write transaction */
    ASSERT_ST(mpb_account_put(t, &a), MP_ERR_ARG);
    mpb_abort(t);

    /* put replaces */
    a.balance.units = 1;
    ASSERT_OK(put_account(b, &a));
    CU_ASSERT(balance(b, ACCT) == 1);

    /* refusals */
    ASSERT_OK(mpb_begin(b, 0, &t));
    for (i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        v = account(bad_ids[i], MPB_CUSTOMER, "", 1);
        ASSERT_ST(mpb_account_put(t, &v), MP_ERR_ARG);
    }
    memset(long_id, 'x', sizeof long_id);
    long_id[MPB_ACCOUNT_MAX] = 0;
    v = account(long_id, MPB_CUSTOMER, "", 1);           /* 64: the longest */
    ASSERT_OK(mpb_account_put(t, &v));
    memset(v.id, 'y', sizeof v.id);                      /* no NUL within the array */
    ASSERT_ST(mpb_account_put(t, &v), MP_ERR_ARG);
    v = account("c", MPB_CUSTOMER, "", 1);
    mp_amount_set(&v.reserved, 0, "EUR");
    ASSERT_ST(mpb_account_put(t, &v), MP_ERR_ARG);       /* mismatched currencies */
    v = account("c", MPB_CUSTOMER, "", 1);
    v.balance.units = MP_AMOUNT_MAX + 1;
    ASSERT_ST(mpb_account_put(t, &v), MP_ERR_ARG);
    v = account("c", MPB_CUSTOMER, "", 1);
    v.reserved.units = MP_AMOUNT_MAX + 1;
    ASSERT_ST(mpb_account_put(t, &v), MP_ERR_ARG);
    v = account("c", MPB_CUSTOMER, "", MP_AMOUNT_MAX);
    v.reserved.units = MP_AMOUNT_MAX;
    ASSERT_OK(mpb_account_put(t, &v));                   /* the limit itself is fine */
    v = account("c", MPB_CUSTOMER, "", 1);
    memcpy(v.balance.cur, "usd", 4);
    memcpy(v.reserved.cur, "usd", 4);
    ASSERT_ST(mpb_account_put(t, &v), MP_ERR_ARG);       /* invalid currency */
    memcpy(v.balance.cur, "US", 3);
    memcpy(v.reserved.cur, "US", 3);
    ASSERT_ST(mpb_account_put(t, &v), MP_ERR_ARG);
    v = account("c", 0, "", 1);
    ASSERT_ST(mpb_account_put(t, &v), MP_ERR_ARG);       /* unknown kind */
    v = account("c", 3, "", 1);
    ASSERT_ST(mpb_account_put(t, &v), MP_ERR_ARG);
    v = account("v", MPB_VENDOR, "", 1);
    ASSERT_ST(mpb_account_put(t, &v), MP_ERR_ARG);       /* vendor without a name */
    v = account("v", MPB_VENDOR, "bad name", 1);
    ASSERT_ST(mpb_account_put(t, &v), MP_ERR_ARG);
    v = account("v", MPB_CUSTOMER, VENDOR, 1);
    ASSERT_ST(mpb_account_put(t, &v), MP_ERR_ARG);       /* customer bound to a vendor */
    ASSERT_ST(mpb_account_put(t, NULL), MP_ERR_ARG);
    ASSERT_OK(mpb_commit(t));

    /* listing: in key order, and the callback can stop it */
    ASSERT_OK(mpb_begin(b, 1, &t));
    memset(&lc, 0, sizeof lc);
    ASSERT_OK(mpb_account_list(t, list_cb, &lc));
    CU_ASSERT(lc.n == 4);
    CU_ASSERT(strcmp(lc.ids[0], ACCT) == 0 && strcmp(lc.ids[1], "c") == 0
              && strcmp(lc.ids[2], "vendor-1") == 0 && strcmp(lc.ids[3], long_id) == 0);
    memset(&lc, 0, sizeof lc);
    lc.stop_at = 2;
    ASSERT_OK(mpb_account_list(t, list_cb, &lc));
    CU_ASSERT(lc.n == 2);
    ASSERT_ST(mpb_account_list(t, NULL, NULL), MP_ERR_ARG);
    ASSERT_OK(mpb_commit(t));                   /* a read transaction commits too */
    mpb_close(b);
}

/* A reader keeps its snapshot while a writer changes the account, and an
 * aborted write leaves nothing. */
static void test_isolation(void)
{
    const char *d = new_store();
    mpb *b;
    mpb_txn *r = NULL, *w = NULL;
    mpb_account a, got;
    int found = 0;

    CU_ASSERT_FATAL(d != NULL);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    a = account(ACCT, MPB_CUSTOMER, "", 100);
    ASSERT_OK(put_account(b, &a));
    ASSERT_OK(mpb_begin(b, 1, &r));
    ASSERT_OK(mpb_begin(b, 0, &w));
    a.balance.units = 50;
    ASSERT_OK(mpb_account_put(w, &a));
    ASSERT_OK(mpb_commit(w));
    ASSERT_OK(mpb_account_get(r, ACCT, &got, &found));
    CU_ASSERT(found && got.balance.units == 100);
    mpb_abort(r);
    CU_ASSERT(balance(b, ACCT) == 50);
    ASSERT_OK(mpb_begin(b, 0, &w));
    a.balance.units = 1;
    ASSERT_OK(mpb_account_put(w, &a));
    mpb_abort(w);
    CU_ASSERT(balance(b, ACCT) == 50);
    mpb_close(b);
}

/* ---- idempotency ----------------------------------------------------------------- */

static void test_idem(void)
{
    const char *d = new_store();
    uint8_t h1[MP_HASH_LEN], h2[MP_HASH_LEN];
    char *body = NULL, *big, reqid[MPB_REQID_MAX + 2];
    size_t len = 0;
    int found = -1, status = 0;
    mpb *b;
    mpb_txn *t = NULL;
    static const char resp[] = "{\"request_id\":\"b7Jq0\",\"balance\":\"4.00 USD\"}";
    static const char *const bad_reqids[] = { "", "a.b", "a b", "a/b", "a+b", "\xc3\xa9" };
    size_t i;

    CU_ASSERT_FATAL(d != NULL);
    hash_of("body one", h1);
    hash_of("body two", h2);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);

    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_idem_get(t, ACCT, "b7Jq0", h1, &found, &status, &body, &len));
    CU_ASSERT(found == 0 && body == NULL);
    ASSERT_OK(mpb_idem_put(t, ACCT, "b7Jq0", h1, 200, resp, strlen(resp), NOW + 86400));
    /* a second response for one request id would mean it ran twice */
    ASSERT_ST(mpb_idem_put(t, ACCT, "b7Jq0", h1, 200, resp, strlen(resp), NOW + 86400),
              MP_ERR_ARG);
    ASSERT_OK(mpb_idem_put(t, ACCT, "empty_1", h2, 409, NULL, 0, NOW + 86400));
    ASSERT_OK(mpb_idem_put(t, "other", "b7Jq0", h2, 201, "x", 1, NOW + 86400));
    /* refusals */
    for (i = 0; i < sizeof bad_reqids / sizeof bad_reqids[0]; i++) {
        ASSERT_ST(mpb_idem_put(t, ACCT, bad_reqids[i], h1, 200, "", 0, NOW), MP_ERR_ARG);
        ASSERT_ST(mpb_idem_get(t, ACCT, bad_reqids[i], h1, &found, &status, &body, &len),
                  MP_ERR_ARG);
    }
    memset(reqid, 'r', sizeof reqid);
    reqid[MPB_REQID_MAX + 1] = 0;
    ASSERT_ST(mpb_idem_put(t, ACCT, reqid, h1, 200, "", 0, NOW), MP_ERR_ARG);
    reqid[MPB_REQID_MAX] = 0;
    ASSERT_OK(mpb_idem_put(t, ACCT, reqid, h1, 200, "", 0, NOW));
    ASSERT_ST(mpb_idem_put(t, "bad\"acct", "r1", h1, 200, "", 0, NOW), MP_ERR_ARG);
    ASSERT_ST(mpb_idem_put(t, "", "r1", h1, 200, "", 0, NOW), MP_ERR_ARG);
    ASSERT_ST(mpb_idem_get(t, "a b", "r1", h1, &found, &status, &body, &len), MP_ERR_ARG);
    ASSERT_ST(mpb_idem_put(t, ACCT, "r1", h1, 99, "", 0, NOW), MP_ERR_ARG);
    ASSERT_ST(mpb_idem_put(t, ACCT, "r1", h1, 600, "", 0, NOW), MP_ERR_ARG);
    ASSERT_ST(mpb_idem_put(t, ACCT, "r1", h1, 200, NULL, 5, NOW), MP_ERR_ARG);
    ASSERT_ST(mpb_idem_put(t, ACCT, "r1", h1, 200, "x", (size_t)MPB_BODY_MAX + 1, NOW),
              MP_ERR_ARG);
    ASSERT_OK(mpb_commit(t));

    /* the largest body, in its own transaction */
    big = malloc(MPB_BODY_MAX);
    CU_ASSERT_FATAL(big != NULL);
    for (i = 0; i < MPB_BODY_MAX; i++)
        big[i] = (char)('a' + i % 26);
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_idem_put(t, ACCT, "big", h2, 200, big, MPB_BODY_MAX, NOW + 86400));
    ASSERT_OK(mpb_commit(t));

    /* an aborted put leaves nothing */
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_idem_put(t, ACCT, "gone", h1, 200, "x", 1, NOW + 86400));
    mpb_abort(t);
    mpb_close(b);

    /* after a reopen */
    b = open_store(d, 1);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_begin(b, 1, &t));
    found = 0;
    ASSERT_OK(mpb_idem_get(t, ACCT, "b7Jq0", h1, &found, &status, &body, &len));
    CU_ASSERT(found == 1 && status == 200 && len == strlen(resp));
    CU_ASSERT(body != NULL && memcmp(body, resp, strlen(resp)) == 0 && body[len] == 0);
    free(body);
    body = NULL;
    /* another body under a known id: 409, outputs untouched */
    found = -1;
    status = -1;
    ASSERT_ST(mpb_idem_get(t, ACCT, "b7Jq0", h2, &found, &status, &body, &len),
              MP_ERR_MALFORMED);
    CU_ASSERT(found == -1 && status == -1 && body == NULL);
    /* request ids are per account */
    ASSERT_OK(mpb_idem_get(t, "other", "b7Jq0", h2, &found, &status, &body, &len));
    CU_ASSERT(found == 1 && status == 201 && len == 1 && body != NULL && body[0] == 'x');
    free(body);
    body = NULL;
    ASSERT_OK(mpb_idem_get(t, ACCT, "empty_1", h2, &found, &status, &body, &len));
    CU_ASSERT(found == 1 && status == 409 && len == 0 && body != NULL && body[0] == 0);
    free(body);
    body = NULL;
    ASSERT_OK(mpb_idem_get(t, ACCT, "big", h2, &found, &status, &body, &len));
    CU_ASSERT(found == 1 && len == MPB_BODY_MAX && body != NULL
              && memcmp(body, big, MPB_BODY_MAX) == 0);
    free(body);
    body = NULL;
    ASSERT_OK(mpb_idem_get(t, ACCT, "gone", h1, &found, &status, &body, &len));
    CU_ASSERT(found == 0);
    ASSERT_ST(mpb_idem_put(t, ACCT, "new", h1, 200, "", 0, NOW), MP_ERR_ARG); /* read txn */
    mpb_abort(t);
    mpb_close(b);
    free(big);
}

/* ---- counters, customer ids ------------------------------------------------------ */

static void test_counters(void)
{
    const char *d = new_store();
    mpb *b;
    mpb_txn *t = NULL;
    uint64_t v = 0, prev = 0;
    char name[300];
    int i, mono = 1;

    CU_ASSERT_FATAL(d != NULL);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_counter_next(t, "serial", &v));
    CU_ASSERT(v == 1);
    ASSERT_OK(mpb_counter_next(t, "serial", &v));
    CU_ASSERT(v == 2);
    ASSERT_OK(mpb_counter_next(t, "scrip:broker.example:1", &v));
    CU_ASSERT(v == 1);
    ASSERT_ST(mpb_counter_next(t, "", &v), MP_ERR_ARG);
    ASSERT_ST(mpb_counter_next(t, "with space", &v), MP_ERR_ARG);
    ASSERT_ST(mpb_counter_next(t, NULL, &v), MP_ERR_ARG);
    memset(name, 'n', sizeof name);
    name[sizeof name - 1] = 0;
    ASSERT_ST(mpb_counter_next(t, name, &v), MP_ERR_ARG);
    ASSERT_OK(mpb_commit(t));

    /* what an aborted transaction took was never handed out */
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_counter_next(t, "serial", &v));
    CU_ASSERT(v == 3);
    mpb_abort(t);
    mpb_close(b);

    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_begin(b, 1, &t));
    ASSERT_ST(mpb_counter_next(t, "serial", &v), MP_ERR_ARG);   /* read txn */
    mpb_abort(t);
    prev = 2;
    for (i = 0; i < 20; i++) {
        ASSERT_OK(mpb_begin(b, 0, &t));
        ASSERT_OK(mpb_counter_next(t, "serial", &v));
        ASSERT_OK(mpb_commit(t));
        if (v != prev + 1)
            mono = 0;
        prev = v;
        if (i == 9) {
            mpb_close(b);
            b = open_store(d, 0);
            CU_ASSERT_FATAL(b != NULL);
        }
    }
    CU_ASSERT(mono && prev == 22);
    mpb_close(b);
}

static void test_custid(void)
{
    const char *d = new_store();
    mpb *b;
    mpb_txn *t = NULL;
    uint64_t id = 0;
    int found = -1;

    CU_ASSERT_FATAL(d != NULL);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_custid_get(t, ACCT, VENDOR, &id, &found));
    CU_ASSERT(found == 0 && id == 0);
    ASSERT_OK(mpb_custid_put(t, ACCT, VENDOR, 562949953421313ULL));
    ASSERT_OK(mpb_custid_put(t, ACCT, "", 281474976710657ULL));     /* broker scrip */
    /* a new customer series replaces the id */
    ASSERT_OK(mpb_custid_put(t, ACCT, VENDOR, 844424930131969ULL));
    ASSERT_OK(mpb_custid_get(t, ACCT, VENDOR, &id, &found));
    CU_ASSERT(found == 1 && id == 844424930131969ULL);
    ASSERT_OK(mpb_custid_put(t, ACCT, VENDOR, 562949953421313ULL));
    ASSERT_ST(mpb_custid_put(t, ACCT, "x", 0), MP_ERR_ARG);
    ASSERT_ST(mpb_custid_put(t, ACCT, "bad vendor", 5), MP_ERR_ARG);
    ASSERT_ST(mpb_custid_put(t, "bad\\acct", VENDOR, 5), MP_ERR_ARG);
    ASSERT_ST(mpb_custid_get(t, ACCT, NULL, &id, &found), MP_ERR_ARG);
    ASSERT_OK(mpb_commit(t));
    mpb_close(b);

    b = open_store(d, 1);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_begin(b, 1, &t));
    ASSERT_OK(mpb_custid_get(t, ACCT, VENDOR, &id, &found));
    CU_ASSERT(found == 1 && id == 562949953421313ULL);
    ASSERT_OK(mpb_custid_get(t, ACCT, "", &id, &found));
    CU_ASSERT(found == 1 && id == 281474976710657ULL);
    ASSERT_OK(mpb_custid_get(t, "other", VENDOR, &id, &found));
    CU_ASSERT(found == 0);
    ASSERT_ST(mpb_custid_put(t, "other", VENDOR, 9), MP_ERR_ARG);   /* read txn */
    mpb_abort(t);
    mpb_close(b);
}

/* ---- spent scrip, redeemed commitments ------------------------------------------- */

static mpb_issued issued(const char *issuer, uint64_t id, uint8_t kind, const char *acct,
                         uint64_t units, uint64_t use_until)
{
    mpb_issued s;

    memset(&s, 0, sizeof s);
    snprintf(s.issuer, sizeof s.issuer, "%s", issuer);
    snprintf(s.account, sizeof s.account, "%s", acct);
    s.id = id;
    s.kind = kind;
    mp_amount_set(&s.value, units, "USD");
    s.expiry = use_until;
    s.use_until = use_until;
    s.release_at = use_until + MPB_MARGIN;
    return s;
}

/* Scrip is worth something at the broker only through its issued record:
 * absent means forged whatever the stamp, each record is used once, and
 * only before use_until at the caller's clock. */
static void test_issued(void)
{
    const char *d = new_store();
    mpb_issued s, got, bad;
    char name[MP_NAME_MAX + 2];
    int found = 0;
    mpb *b;
    mpb_txn *t = NULL;

    CU_ASSERT_FATAL(d != NULL);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_begin(b, 0, &t));
    s = issued("broker.example", 42, MPB_SCRIP_BROKER, ACCT, 500, NOW + 100);
    ASSERT_OK(mpb_issued_put(t, &s));
    ASSERT_ST(mpb_issued_put(t, &s), MP_ERR_ARG);              /* ids are never reused */
    s = issued(VENDOR, 42, MPB_SCRIP_VENDOR, ACCT, 7, NOW + 100);
    ASSERT_OK(mpb_issued_put(t, &s));                           /* ids are per issuer */
    /* refusals of records that could not have been minted */
    bad = issued("", 1, MPB_SCRIP_BROKER, ACCT, 1, NOW);
    ASSERT_ST(mpb_issued_put(t, &bad), MP_ERR_ARG);
    bad = issued("a b", 1, MPB_SCRIP_BROKER, ACCT, 1, NOW);
    ASSERT_ST(mpb_issued_put(t, &bad), MP_ERR_ARG);
    memset(name, 'n', sizeof name);
    name[MP_NAME_MAX + 1] = 0;
    bad = issued("x", 1, MPB_SCRIP_BROKER, ACCT, 1, NOW);
    memcpy(bad.issuer, name, sizeof bad.issuer - 1);
    bad.issuer[sizeof bad.issuer - 1] = 'n';                    /* not terminated in time */
    ASSERT_ST(mpb_issued_put(t, &bad), MP_ERR_ARG);
    bad = issued("x", 1, MPB_SCRIP_BROKER, ACCT, 0, NOW);       /* value 0 */
    ASSERT_ST(mpb_issued_put(t, &bad), MP_ERR_ARG);
    bad = issued("x", 1, 3, ACCT, 1, NOW);                      /* kind */
    ASSERT_ST(mpb_issued_put(t, &bad), MP_ERR_ARG);
    bad = issued("x", 1, MPB_SCRIP_BROKER, ACCT, 1, NOW);
    bad.release_at = bad.use_until;                             /* no margin */
    ASSERT_ST(mpb_issued_put(t, &bad), MP_ERR_ARG);
    bad = issued("x", 1, MPB_SCRIP_BROKER, ACCT, 1, NOW);
    bad.use_until = bad.expiry - 1;
    ASSERT_ST(mpb_issued_put(t, &bad), MP_ERR_ARG);
    bad = issued("x", 1, MPB_SCRIP_BROKER, ACCT, 1, NOW);
    bad.used = 1;                                               /* born used */
    ASSERT_ST(mpb_issued_put(t, &bad), MP_ERR_ARG);
    bad = issued("x", 1, MPB_SCRIP_BROKER, "a\"b", 1, NOW);
    ASSERT_ST(mpb_issued_put(t, &bad), MP_ERR_ARG);
    ASSERT_OK(mpb_commit(t));                                   /* refusals wrote nothing */
    mpb_close(b);

    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_begin(b, 0, &t));
    /* a valid stamp on scrip the broker never recorded: forged */
    ASSERT_ST(mpb_issued_use(t, "broker.example", 43, NOW, &got), MP_ERR_FORGED);
    ASSERT_ST(mpb_issued_use(t, "no such issuer", 42, NOW, &got), MP_ERR_FORGED);
    ASSERT_ST(mpb_issued_use(t, "a b", 42, NOW, &got), MP_ERR_FORGED);
    /* at use_until, by the clock given: expired, and still unused */
    ASSERT_ST(mpb_issued_use(t, "broker.example", 42, NOW + 100, &got), MP_ERR_EXPIRED);
    ASSERT_OK(mpb_issued_use(t, "broker.example", 42, NOW + 99, &got));
    CU_ASSERT(got.used == 1 && got.value.units == 500 && got.kind == MPB_SCRIP_BROKER
              && strcmp(got.account, ACCT) == 0);
    ASSERT_ST(mpb_issued_use(t, "broker.example", 42, NOW, &got), MP_ERR_SPENT);
    ASSERT_OK(mpb_commit(t));
    ASSERT_OK(mpb_begin(b, 1, &t));
    ASSERT_OK(mpb_issued_get(t, "broker.example", 42, &got, &found));
    CU_ASSERT(found == 1 && got.used == 1);
    ASSERT_OK(mpb_issued_get(t, VENDOR, 42, &got, &found));
    CU_ASSERT(found == 1 && got.used == 0 && got.value.units == 7);
    ASSERT_OK(mpb_issued_get(t, VENDOR, 43, &got, &found));
    CU_ASSERT(found == 0);
    ASSERT_ST(mpb_issued_use(t, VENDOR, 42, NOW, &got), MP_ERR_ARG);    /* read txn */
    mpb_abort(t);
    mpb_close(b);
    CU_ASSERT(raw_count(d, "issued") == 2 && raw_count(d, "issuedue") == 2);
}

/* Lapsed scrip: the value of an unused record goes back to its account,
 * a used one just goes; a record whose value has nowhere to go stays. */
static void test_issued_release(void)
{
    const char *d = new_store();
    mpb_lapse out[8];
    mpb_issued s, got;
    size_t n = 99;
    int found = 1;
    mpb *b;
    mpb_txn *t = NULL;

    CU_ASSERT_FATAL(d != NULL);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(put_account(b, (mpb_account[]){ account(ACCT, MPB_CUSTOMER, "", 10) }));
    ASSERT_OK(mpb_begin(b, 0, &t));
    s = issued("broker.example", 1, MPB_SCRIP_BROKER, ACCT, 300, NOW);
    ASSERT_OK(mpb_issued_put(t, &s));
    s = issued("broker.example", 2, MPB_SCRIP_BROKER, ACCT, 40, NOW);
    ASSERT_OK(mpb_issued_put(t, &s));
    s = issued(VENDOR, 3, MPB_SCRIP_VENDOR, ACCT, 5, NOW + 50);
    ASSERT_OK(mpb_issued_put(t, &s));
    s = issued(VENDOR, 4, MPB_SCRIP_VENDOR, "gone", 6, NOW);    /* no such account */
    ASSERT_OK(mpb_issued_put(t, &s));
    ASSERT_OK(mpb_issued_use(t, "broker.example", 2, NOW - 1, &got));
    ASSERT_OK(mpb_commit(t));

    /* before the margin has passed: nothing */
    ASSERT_OK(mpb_issued_release(b, NOW + MPB_MARGIN - 1, out, 8, &n, NULL));
    CU_ASSERT(n == 0);
    CU_ASSERT(balance(b, ACCT) == 10);
    ASSERT_OK(mpb_issued_release(b, NOW + MPB_MARGIN, out, 8, &n, NULL));
    CU_ASSERT(n == 2);                  /* 1 returned, 2 used; 4 has nowhere to go */
    CU_ASSERT(n == 2 && out[0].returned.units + out[1].returned.units == 300);
    CU_ASSERT(balance(b, ACCT) == 310);
    ASSERT_OK(mpb_begin(b, 1, &t));
    ASSERT_OK(mpb_issued_get(t, "broker.example", 1, &got, &found));
    CU_ASSERT(found == 0);
    ASSERT_OK(mpb_issued_get(t, VENDOR, 4, &got, &found));
    CU_ASSERT(found == 1);
    mpb_abort(t);
    /* a released record is no longer money: using it is refused */
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_ST(mpb_issued_use(t, "broker.example", 1, NOW - 1, &got), MP_ERR_FORGED);
    mpb_abort(t);
    ASSERT_OK(mpb_issued_release(b, NOW + 50 + MPB_MARGIN, NULL, 8, &n, NULL));
    CU_ASSERT(n == 1);
    CU_ASSERT(balance(b, ACCT) == 315);
    ASSERT_ST(mpb_issued_release(b, NOW, out, 0, &n, NULL), MP_ERR_ARG);
    mpb_close(b);
    CU_ASSERT(raw_count(d, "issued") == 1 && raw_count(d, "issuedue") == 1);
}

/* The ledger: credited - withdrawn must equal everything the store holds;
 * a unit moved anywhere without its counterpart shows. */
static void test_audit(void)
{
    const char *d = new_store();
    mpb_audit_row rows[MPB_AUDIT_CURRENCIES];
    mpb_account a;
    mpb_issued s, got;
    mp_amount amt;
    size_t n = 0;
    mpb *b;
    mpb_txn *t = NULL;

    CU_ASSERT_FATAL(d != NULL);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_begin(b, 1, &t));
    ASSERT_OK(mpb_audit(t, rows, &n));
    CU_ASSERT(n == 0);
    mpb_abort(t);
    /* a credit of 1000, as mpadmin accounts credit writes it */
    a = account(ACCT, MPB_CUSTOMER, "", 1000);
    mp_amount_set(&amt, 1000, "USD");
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_account_put(t, &a));
    ASSERT_OK(mpb_account_put(t, (mpb_account[]){ account("v", MPB_VENDOR, VENDOR, 0) }));
    ASSERT_OK(mpb_total_add(t, MPB_TOTAL_CREDITED, &amt));
    ASSERT_OK(mpb_commit(t));
    /* /buy of 300: balance 700 + scrip 300 */
    a.balance.units = 700;
    s = issued("broker.example", 1, MPB_SCRIP_BROKER, ACCT, 300, NOW);
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_account_put(t, &a));
    ASSERT_OK(mpb_issued_put(t, &s));
    ASSERT_OK(mpb_commit(t));
    /* /exchange: broker scrip 300 -> vendor scrip 200 + change 100 */
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_issued_use(t, "broker.example", 1, NOW - 1, &got));
    s = issued(VENDOR, 2, MPB_SCRIP_VENDOR, ACCT, 200, NOW);
    ASSERT_OK(mpb_issued_put(t, &s));
    s = issued("broker.example", 3, MPB_SCRIP_BROKER, ACCT, 100, NOW);
    ASSERT_OK(mpb_issued_put(t, &s));
    ASSERT_OK(mpb_commit(t));
    ASSERT_OK(mpb_begin(b, 1, &t));
    ASSERT_OK(mpb_audit(t, rows, &n));
    mpb_abort(t);
    CU_ASSERT_FATAL(n == 1);
    CU_ASSERT(strcmp(rows[0].cur, "USD") == 0 && rows[0].credited == 1000
              && rows[0].customer_balance == 700 && rows[0].broker_scrip == 100
              && rows[0].vendor_scrip == 200 && rows[0].broker_scrip_n == 1
              && rows[0].vendor_scrip_n == 1 && rows[0].balanced == 1);
    /* the attack the ledger exists for: a vendor's balance grows with
     * nothing taken from anywhere */
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_account_put(t, (mpb_account[]){ account("v", MPB_VENDOR, VENDOR, 51) }));
    ASSERT_OK(mpb_commit(t));
    ASSERT_OK(mpb_begin(b, 1, &t));
    ASSERT_OK(mpb_audit(t, rows, &n));
    mpb_abort(t);
    CU_ASSERT(n == 1 && rows[0].vendor_balance == 51 && rows[0].balanced == 0);
    /* a withdrawal of those 51 units as mpadmin accounts debit writes it */
    mp_amount_set(&amt, 51, "USD");
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_account_put(t, (mpb_account[]){ account("v", MPB_VENDOR, VENDOR, 0) }));
    ASSERT_OK(mpb_total_add(t, MPB_TOTAL_WITHDRAWN, &amt));
    ASSERT_OK(mpb_commit(t));
    ASSERT_OK(mpb_begin(b, 1, &t));
    ASSERT_OK(mpb_audit(t, rows, &n));
    mpb_abort(t);
    CU_ASSERT(n == 1 && rows[0].withdrawn == 51 && rows[0].balanced == 0);   /* 51 short */
    /* overflowing totals are refused, writing nothing */
    mp_amount_set(&amt, MP_AMOUNT_MAX, "USD");
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_ST(mpb_total_add(t, MPB_TOTAL_CREDITED, &amt), MP_ERR_OVERFLOW);
    ASSERT_ST(mpb_total_add(t, "", &amt), MP_ERR_ARG);
    mpb_abort(t);
    mpb_close(b);
}

/* One store, one broker: the first binding is kept, another name or
 * deadline is refused, whatever path opened the store. */
static void test_bind(void)
{
    const char *d = new_store();
    mpb *b, *ro;

    CU_ASSERT_FATAL(d != NULL);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_bind(b, "broker.example", 2592000));
    ASSERT_OK(mpb_bind(b, "broker.example", 2592000));
    ASSERT_ST(mpb_bind(b, "evil.example", 2592000), MP_ERR_ARG);
    CU_ASSERT(strstr(mpb_errmsg(), "broker.example") != NULL);
    ASSERT_ST(mpb_bind(b, "broker.example", 60), MP_ERR_ARG);
    ASSERT_ST(mpb_bind(b, "a b", 60), MP_ERR_ARG);
    mpb_close(b);
    b = open_store(d, 0);                          /* kept across opens */
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_ST(mpb_bind(b, "evil.example", 60), MP_ERR_ARG);
    ASSERT_OK(mpb_bind(b, "broker.example", 2592000));
    mpb_close(b);
    ro = open_store(d, 1);
    CU_ASSERT_FATAL(ro != NULL);
    ASSERT_ST(mpb_bind(ro, "broker.example", 2592000), MP_ERR_ARG);   /* read-only */
    mpb_close(ro);
}

/* A store made before the ledger: its first writable open starts the
 * ledger with what the accounts hold, once. */
static void test_ledger_upgrade(void)
{
    const char *d = new_store();
    mpb_audit_row rows[MPB_AUDIT_CURRENCIES];
    mpb_account a;
    size_t n = 0;
    raw r;
    mpb *b;
    mpb_txn *t = NULL;

    CU_ASSERT_FATAL(d != NULL);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    a = account(ACCT, MPB_CUSTOMER, "", 250);
    a.reserved.units = 50;
    ASSERT_OK(put_account(b, &a));
    /* an answer stored in clear, as older versions did */
    {
        uint8_t h[MP_HASH_LEN];

        hash_of("x", h);
        ASSERT_OK(mpb_begin(b, 0, &t));
        ASSERT_OK(mpb_idem_put(t, ACCT, "old", h, 200, "{\"customer_secret\": \"s\"}", 24,
                               NOW + 100));
        ASSERT_OK(mpb_commit(t));
    }
    mpb_close(b);
    /* as an older version left it: no ledger tables */
    CU_ASSERT_FATAL(raw_open(&r, d, "totals", 0));
    CU_ASSERT(mdb_drop(r.txn, r.dbi, 1) == 0);
    CU_ASSERT_FATAL(raw_close(&r));
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    mpb_close(b);
    b = open_store(d, 0);                 /* twice: started once */
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_begin(b, 1, &t));
    ASSERT_OK(mpb_audit(t, rows, &n));
    mpb_abort(t);
    CU_ASSERT(n == 1 && rows[0].credited == 300 && rows[0].balanced == 1);
    mpb_close(b);
    CU_ASSERT(raw_count(d, "idem") == 0);           /* the clear answers are gone */
}

static void test_redeemed(void)
{
    const char *d = new_store();
    uint8_t c1[MP_HASH_LEN], c2[MP_HASH_LEN];
    uint32_t last = 99;
    mpb *b;
    mpb_txn *t = NULL;

    CU_ASSERT_FATAL(d != NULL);
    memset(c1, 1, sizeof c1);
    memset(c2, 2, sizeof c2);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_redeemed_get(t, c1, &last, NULL, NULL));
    CU_ASSERT(last == 0);
    ASSERT_OK(mpb_redeemed_put(t, c1, 5, NULL, NOW + 100));
    ASSERT_OK(mpb_redeemed_get(t, c1, &last, NULL, NULL));
    CU_ASSERT(last == 5);
    ASSERT_OK(mpb_redeemed_put(t, c2, 1, NULL, NOW + 100));
    ASSERT_ST(mpb_redeemed_put(t, c1, 0, NULL, NOW), MP_ERR_ARG);
    ASSERT_ST(mpb_redeemed_put(t, c1, MP_CHAIN_MAX + 1, NULL, NOW), MP_ERR_ARG);
    ASSERT_ST(mpb_redeemed_put(t, NULL, 3, NULL, NOW), MP_ERR_ARG);
    ASSERT_OK(mpb_commit(t));
    mpb_close(b);

    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_redeemed_get(t, c1, &last, NULL, NULL));
    CU_ASSERT(last == 5);
    /* going back would credit the words in between again */
    ASSERT_ST(mpb_redeemed_put(t, c1, 4, NULL, NOW + 100), MP_ERR_ARG);
    ASSERT_OK(mpb_redeemed_put(t, c1, 5, NULL, NOW + 150));
    ASSERT_OK(mpb_redeemed_put(t, c1, 9, NULL, NOW + 200));
    ASSERT_OK(mpb_redeemed_get(t, c1, &last, NULL, NULL));
    CU_ASSERT(last == 9);
    /* the proven word is kept with the record: the next redemption is
     * proven from it, not from w0 */
    {
        uint8_t w[MP_HASH_LEN], got[MP_HASH_LEN];
        int have = 9;

        ASSERT_OK(mpb_redeemed_get(t, c1, &last, got, &have));
        CU_ASSERT(have == 0);                       /* none given */
        memset(w, 0x77, sizeof w);
        ASSERT_OK(mpb_redeemed_put(t, c1, 11, w, NOW + 200));
        memset(got, 0, sizeof got);
        ASSERT_OK(mpb_redeemed_get(t, c1, &last, got, &have));
        CU_ASSERT(last == 11 && have == 1 && memcmp(got, w, sizeof w) == 0);
        ASSERT_OK(mpb_redeemed_get(t, c2, &last, got, &have));
        CU_ASSERT(last == 1 && have == 0);
    }
    ASSERT_OK(mpb_commit(t));
    ASSERT_OK(mpb_begin(b, 1, &t));
    ASSERT_ST(mpb_redeemed_put(t, c1, 12, NULL, NOW), MP_ERR_ARG);      /* read txn */
    mpb_abort(t);
    mpb_close(b);
    /* re-puts move the index entry instead of adding one */
    CU_ASSERT(raw_count(d, "redeemed") == 2 && raw_count(d, "expiry") == 2);
}

/* ---- certificate records and releasing their credit ----------------------------- */

static mpb_cert cert(uint64_t serial, const char *acct, uint64_t credit, uint64_t redeemed,
                     uint64_t release_at)
{
    mpb_cert c;

    memset(&c, 0, sizeof c);
    c.serial = serial;
    snprintf(c.account, sizeof c.account, "%s", acct);
    mp_amount_set(&c.credit, credit, "USD");
    mp_amount_set(&c.redeemed, redeemed, "USD");
    c.expiry = release_at >= 100 ? release_at - 100 : 0;
    c.release_at = release_at;
    return c;
}

static mp_status put_cert(mpb *b, const mpb_cert *c)
{
    mpb_txn *t = NULL;
    mp_status st;

    if ((st = mpb_begin(b, 0, &t)) != MP_OK)
        return st;
    if ((st = mpb_cert_put(t, c)) != MP_OK) {
        mpb_abort(t);
        return st;
    }
    return mpb_commit(t);
}

/* A customer account that reserved `reserved` of its money for certificates. */
static mp_status put_reserved(mpb *b, const char *id, uint64_t bal, uint64_t reserved)
{
    mpb_account a = account(id, MPB_CUSTOMER, "", bal);

    a.reserved.units = reserved;
    return put_account(b, &a);
}

/* balance and reserved of id; -1, -1 when unreadable. */
static void amounts(mpb *b, const char *id, long long *bal, long long *res)
{
    mpb_txn *t = NULL;
    mpb_account a;
    int found = 0;

    *bal = *res = -1;
    if (mpb_begin(b, 1, &t) != MP_OK)
        return;
    if (mpb_account_get(t, id, &a, &found) == MP_OK && found) {
        *bal = (long long)a.balance.units;
        *res = (long long)a.reserved.units;
    }
    mpb_abort(t);
}

static mpb_cert get_cert(mpb *b, uint64_t serial, int *found)
{
    mpb_txn *t = NULL;
    mpb_cert c;

    memset(&c, 0, sizeof c);
    *found = -1;
    if (mpb_begin(b, 1, &t) != MP_OK)
        return c;
    if (mpb_cert_get(t, serial, &c, found) != MP_OK)
        *found = -1;
    mpb_abort(t);
    return c;
}

static void test_certs(void)
{
    const char *d = new_store();
    mpb_cert c = cert(7, ACCT, 500, 0, NOW + 1000), got, bad, list[4];
    mpb *b, *ro;
    mpb_txn *t = NULL;
    size_t n = 99;
    int found = 9;

    CU_ASSERT_FATAL(d != NULL);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_cert_get(t, 7, &got, &found));
    CU_ASSERT(found == 0);
    ASSERT_OK(mpb_cert_get(t, 0, &got, &found));
    CU_ASSERT(found == 0);
    ASSERT_OK(mpb_cert_put(t, &c));
    memset(&got, 0x5a, sizeof got);
    ASSERT_OK(mpb_cert_get(t, 7, &got, &found));
    CU_ASSERT(found == 1 && got.serial == 7 && strcmp(got.account, ACCT) == 0);
    CU_ASSERT(got.credit.units == 500 && strcmp(got.credit.cur, "USD") == 0);
    CU_ASSERT(got.redeemed.units == 0 && strcmp(got.redeemed.cur, "USD") == 0);
    CU_ASSERT(got.expiry == NOW + 900 && got.release_at == NOW + 1000 && got.released == 0);
    /* invalid records write nothing and leave the transaction usable */
    bad = c; bad.serial = 0;
    ASSERT_ST(mpb_cert_put(t, &bad), MP_ERR_ARG);
    bad = c; bad.serial = 8; bad.redeemed.units = 501;
    ASSERT_ST(mpb_cert_put(t, &bad), MP_ERR_ARG);
    bad = c; bad.serial = 8; memcpy(bad.redeemed.cur, "EUR", 4);
    ASSERT_ST(mpb_cert_put(t, &bad), MP_ERR_ARG);
    bad = c; bad.serial = 8; bad.release_at = bad.expiry - 1;
    ASSERT_ST(mpb_cert_put(t, &bad), MP_ERR_ARG);
    bad = c; bad.serial = 8; bad.released = 2;
    ASSERT_ST(mpb_cert_put(t, &bad), MP_ERR_ARG);
    bad = c; bad.serial = 8; strcpy(bad.account, "a\"b");
    ASSERT_ST(mpb_cert_put(t, &bad), MP_ERR_ARG);
    bad = c; bad.serial = 8; bad.credit.units = MP_AMOUNT_MAX + 1;
    ASSERT_ST(mpb_cert_put(t, &bad), MP_ERR_ARG);
    ASSERT_ST(mpb_cert_put(t, NULL), MP_ERR_ARG);
    ASSERT_ST(mpb_cert_get(t, 7, NULL, &found), MP_ERR_ARG);
    /* rewrites: only redeemed upwards and released 0 -> 1 */
    bad = c; bad.credit.units = 600;
    ASSERT_ST(mpb_cert_put(t, &bad), MP_ERR_ARG);
    bad = c; strcpy(bad.account, "other");
    ASSERT_ST(mpb_cert_put(t, &bad), MP_ERR_ARG);
    bad = c; bad.release_at += 1;
    ASSERT_ST(mpb_cert_put(t, &bad), MP_ERR_ARG);
    c.redeemed.units = 120;
    ASSERT_OK(mpb_cert_put(t, &c));
    bad = c; bad.redeemed.units = 119;
    ASSERT_ST(mpb_cert_put(t, &bad), MP_ERR_ARG);
    ASSERT_OK(mpb_cert_put(t, &c));                      /* the same again */
    ASSERT_OK(mpb_commit(t));
    ASSERT_OK(put_cert(b, (mpb_cert[]){ cert(3, ACCT, 10, 0, NOW + 500) }));
    ASSERT_OK(put_cert(b, (mpb_cert[]){ cert(9, "other", 10, 0, NOW + 2000) }));
    mpb_close(b);

    /* persisted; the due list in release order, bounded by max */
    ro = open_store(d, 1);
    CU_ASSERT_FATAL(ro != NULL);
    got = get_cert(ro, 7, &found);
    CU_ASSERT(found == 1 && memcmp(&got, &c, sizeof c) == 0);
    ASSERT_OK(mpb_begin(ro, 1, &t));
    ASSERT_OK(mpb_cert_due(t, NOW + 499, list, 4, &n));
    CU_ASSERT(n == 0);
    ASSERT_OK(mpb_cert_due(t, NOW + 1000, list, 4, &n));
    CU_ASSERT(n == 2 && list[0].serial == 3 && list[1].serial == 7);
    ASSERT_OK(mpb_cert_due(t, UINT64_MAX, list, 1, &n));
    CU_ASSERT(n == 1 && list[0].serial == 3);
    ASSERT_OK(mpb_cert_due(t, UINT64_MAX, list, 4, &n));
    CU_ASSERT(n == 3 && list[2].serial == 9);
    ASSERT_ST(mpb_cert_put(t, &c), MP_ERR_ARG);          /* read txn */
    mpb_abort(t);
    mpb_close(ro);

    /* released: out of the due list, and it stays released */
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    c.released = 1;
    ASSERT_OK(put_cert(b, &c));
    bad = c; bad.released = 0;
    ASSERT_ST(put_cert(b, &bad), MP_ERR_ARG);
    ASSERT_OK(mpb_begin(b, 1, &t));
    ASSERT_OK(mpb_cert_due(t, UINT64_MAX, list, 4, &n));
    CU_ASSERT(n == 2 && list[0].serial == 3 && list[1].serial == 9);
    mpb_abort(t);
    mpb_close(b);
    CU_ASSERT(raw_count(d, "cert") == 3 && raw_count(d, "certdue") == 2);
}

static void test_cert_release(void)
{
    const char *d = new_store();
    mpb_release out[4];
    mpb_cert c;
    long long bal, res;
    size_t n = 99;
    int found = 0;
    mpb *b, *ro;

    CU_ASSERT_FATAL(d != NULL);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    /* alice certified twice (300 + 200 reserved of her 1000) and 100 of the
     * first was redeemed: 400 reserved, 500 balance */
    ASSERT_OK(put_reserved(b, "alice", 500, 400));
    ASSERT_OK(put_cert(b, (mpb_cert[]){ cert(1, "alice", 300, 100, NOW + 10) }));
    ASSERT_OK(put_cert(b, (mpb_cert[]){ cert(2, "alice", 200, 0, NOW + 20) }));
    ASSERT_OK(mpb_cert_release(b, NOW + 9, out, 4, &n));
    CU_ASSERT(n == 0);
    ASSERT_OK(mpb_cert_release(b, NOW + 10, out, 4, &n));
    CU_ASSERT(n == 1 && out[0].serial == 1 && strcmp(out[0].account, "alice") == 0);
    CU_ASSERT(out[0].amount.units == 200 && strcmp(out[0].amount.cur, "USD") == 0);
    CU_ASSERT(out[0].uncovered.units == 0);
    amounts(b, "alice", &bal, &res);
    CU_ASSERT(bal == 700 && res == 200);
    /* idempotent: released once, however often it runs */
    ASSERT_OK(mpb_cert_release(b, NOW + 10, out, 4, &n));
    CU_ASSERT(n == 0);
    ASSERT_OK(mpb_cert_release(b, NOW + 19, out, 4, &n));
    CU_ASSERT(n == 0);
    amounts(b, "alice", &bal, &res);
    CU_ASSERT(bal == 700 && res == 200);
    c = get_cert(b, 1, &found);
    CU_ASSERT(found == 1 && c.released == 1 && c.redeemed.units == 100);
    ASSERT_OK(mpb_cert_release(b, NOW + 20, out, 4, &n));
    CU_ASSERT(n == 1 && out[0].serial == 2 && out[0].amount.units == 200);
    ASSERT_OK(mpb_cert_release(b, UINT64_MAX, out, 4, &n));
    CU_ASSERT(n == 0);
    amounts(b, "alice", &bal, &res);
    CU_ASSERT(bal == 900 && res == 0);                   /* 1000 - the 100 redeemed */

    /* never more than reserved holds; a vanished account gets nothing */
    ASSERT_OK(put_reserved(b, "bob", 5, 50));
    ASSERT_OK(put_cert(b, (mpb_cert[]){ cert(3, "bob", 100, 0, NOW + 30) }));
    ASSERT_OK(put_cert(b, (mpb_cert[]){ cert(4, "gone", 70, 20, NOW + 30) }));
    ASSERT_OK(put_cert(b, (mpb_cert[]){ cert(5, "bob", 100, 100, NOW + 30) }));
    ASSERT_OK(mpb_cert_release(b, NOW + 30, out, 4, &n));
    CU_ASSERT_FATAL(n == 3);
    CU_ASSERT(out[0].serial == 3 && out[0].amount.units == 50 && out[0].uncovered.units == 50);
    CU_ASSERT(out[1].serial == 4 && out[1].amount.units == 0 && out[1].uncovered.units == 50);
    CU_ASSERT(out[2].serial == 5 && out[2].amount.units == 0 && out[2].uncovered.units == 0);
    amounts(b, "bob", &bal, &res);
    CU_ASSERT(bal == 55 && res == 0);
    c = get_cert(b, 4, &found);
    CU_ASSERT(found == 1 && c.released == 1);

    /* bounded batches */
    for (n = 0; n < 5; n++)
        ASSERT_OK(put_cert(b, (mpb_cert[]){ cert(10 + n, "carol", 1, 0, NOW + 40 + n) }));
    ASSERT_OK(put_reserved(b, "carol", 0, 5));
    ASSERT_OK(mpb_cert_release(b, NOW + 100, out, 2, &n));
    CU_ASSERT(n == 2 && out[0].serial == 10 && out[1].serial == 11);
    ASSERT_OK(mpb_cert_release(b, NOW + 100, out, 2, &n));
    CU_ASSERT(n == 2 && out[0].serial == 12);
    ASSERT_OK(mpb_cert_release(b, NOW + 100, out, 2, &n));
    CU_ASSERT(n == 1 && out[0].serial == 14);
    amounts(b, "carol", &bal, &res);
    CU_ASSERT(bal == 5 && res == 0);
    ASSERT_ST(mpb_cert_release(b, NOW, out, 0, &n), MP_ERR_ARG);
    ASSERT_ST(mpb_cert_release(b, NOW, NULL, 4, &n), MP_ERR_ARG);
    ASSERT_ST(mpb_cert_release(NULL, NOW, out, 4, &n), MP_ERR_ARG);
    mpb_close(b);
    CU_ASSERT(raw_count(d, "certdue") == 0);
    ro = open_store(d, 1);
    CU_ASSERT_FATAL(ro != NULL);
    ASSERT_ST(mpb_cert_release(ro, UINT64_MAX, out, 4, &n), MP_ERR_ARG);
    mpb_close(ro);
}

/* Processes releasing at once give each certificate back once. */
static void test_cert_release_processes(void)
{
    enum { CERTS = 300, PROCS = 4 };
    const char *d = new_store();
    mpb_release out[16];
    int k, status, ok_exit = 0, res[PROCS][2];
    long long bal, resv, total = 0;
    pid_t pid[PROCS];
    size_t n, got;
    uint64_t i;
    mpb *b;

    CU_ASSERT_FATAL(d != NULL);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(put_reserved(b, "shared", 0, CERTS * 3));
    for (i = 1; i <= CERTS; i++)
        ASSERT_OK(put_cert(b, (mpb_cert[]){ cert(i, "shared", 3, i % 3, NOW + i) }));
    mpb_close(b);
    fflush(NULL);
    for (k = 0; k < PROCS; k++) {
        CU_ASSERT_FATAL(pipe(res[k]) == 0);
        pid[k] = fork();
        CU_ASSERT_FATAL(pid[k] >= 0);
        if (pid[k] == 0) {
            long long sum = 0;
            mpb *cb = open_store(d, 0);

            close(res[k][0]);
            if (cb == NULL)
                _exit(2);
            do {
                if (mpb_cert_release(cb, UINT64_MAX, out, 16, &got) != MP_OK)
                    _exit(3);
                for (n = 0; n < got; n++)
                    sum += (long long)out[n].amount.units;
            } while (got == 16);
            mpb_close(cb);
            if (write(res[k][1], &sum, sizeof sum) != sizeof sum)
                _exit(4);
            _exit(0);
        }
        close(res[k][1]);
    }
    for (k = 0; k < PROCS; k++) {
        long long sum = -1;

        if (read(res[k][0], &sum, sizeof sum) == sizeof sum)
            total += sum;
        close(res[k][0]);
        if (waitpid(pid[k], &status, 0) == pid[k] && WIFEXITED(status)
            && WEXITSTATUS(status) == 0)
            ok_exit++;
    }
    CU_ASSERT(ok_exit == PROCS);
    /* 3 each, less what was redeemed: 0, 1 or 2 by serial mod 3 */
    CU_ASSERT(total == CERTS * 3 - CERTS);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    amounts(b, "shared", &bal, &resv);
    CU_ASSERT(bal == total && resv == CERTS);
    mpb_close(b);
    CU_ASSERT(raw_count(d, "certdue") == 0);
}

static void test_cert_corrupt(void)
{
    const char *d = new_store();
    uint8_t key[16], v[37 + 5];
    mpb_release out[4];
    mpb_cert got, list[4];
    long long bal, res;
    size_t n = 0;
    int found = 0;
    mpb *b;
    mpb_txn *t = NULL;
    raw r;

    CU_ASSERT_FATAL(d != NULL);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(put_reserved(b, "alice", 0, 100));
    ASSERT_OK(put_cert(b, (mpb_cert[]){ cert(1, "alice", 100, 0, NOW + 10) }));
    mpb_close(b);

    /* a valid record to damage: serial 2, 100 USD of alice */
    memset(v, 0, sizeof v);
    memcpy(v + 1, "USD", 3);
    v[11] = 100;                                         /* credit, big-endian */
    v[27] = 1;                                           /* expiry 1 */
    v[35] = 2;                                           /* release_at 2 */
    v[36] = 5;
    memcpy(v + 37, "alice", 5);
    CU_ASSERT_FATAL(raw_open(&r, d, "cert", 0));
    memset(key, 0, 8);
    key[7] = 2;
    CU_ASSERT(raw_put(&r, key, 8, v, sizeof v));         /* sound */
    key[7] = 3;
    CU_ASSERT(raw_put(&r, key, 8, v, 20));               /* short */
    v[0] = 2;                                            /* released: 0 or 1 */
    key[7] = 4;
    CU_ASSERT(raw_put(&r, key, 8, v, sizeof v));
    v[0] = 0;
    v[19] = 101;                                         /* redeemed above credit */
    key[7] = 5;
    CU_ASSERT(raw_put(&r, key, 8, v, sizeof v));
    v[19] = 0;
    memcpy(v + 1, "usd", 3);                             /* not a currency */
    key[7] = 6;
    CU_ASSERT(raw_put(&r, key, 8, v, sizeof v));
    memcpy(v + 1, "USD", 3);
    v[36] = 6;                                           /* length beyond the value */
    key[7] = 7;
    CU_ASSERT(raw_put(&r, key, 8, v, sizeof v));
    v[36] = 5;
    v[35] = 0;                                           /* release_at before expiry */
    key[7] = 8;
    CU_ASSERT(raw_put(&r, key, 8, v, sizeof v));
    CU_ASSERT_FATAL(raw_close(&r));

    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_begin(b, 1, &t));
    ASSERT_OK(mpb_cert_get(t, 2, &got, &found));
    CU_ASSERT(found == 1 && got.credit.units == 100 && got.expiry == 1 && got.release_at == 2);
    for (n = 3; n <= 8; n++) {
        ASSERT_ST(mpb_cert_get(t, n, &got, &found), MP_ERR_STORE);
        CU_ASSERT(strstr(mpb_errmsg(), "corrupt certificate") != NULL);
    }
    mpb_abort(t);
    ASSERT_OK(mpb_begin(b, 0, &t));
    got = cert(4, "alice", 100, 0, NOW + 10);
    ASSERT_ST(mpb_cert_put(t, &got), MP_ERR_STORE);      /* reads the old record */
    ASSERT_ST(mpb_commit(t), MP_ERR_STORE);
    mpb_close(b);

    /* index entries: garbage is skipped, then dropped by a release; one that
     * names a damaged record stops the release, which then moves nothing */
    CU_ASSERT_FATAL(raw_open(&r, d, "certdue", 0));
    CU_ASSERT(raw_put(&r, "junk", 4, "", 0));
    memset(key, 0, sizeof key);
    key[7] = 1;                                          /* release at 1: first */
    key[15] = 99;                                        /* no such record */
    CU_ASSERT(raw_put(&r, key, 16, "", 0));
    CU_ASSERT_FATAL(raw_close(&r));
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_begin(b, 1, &t));
    ASSERT_OK(mpb_cert_due(t, NOW + 10, list, 4, &n));
    CU_ASSERT(n == 1 && list[0].serial == 1);
    mpb_abort(t);
    ASSERT_OK(mpb_cert_release(b, NOW + 10, out, 4, &n));
    CU_ASSERT(n == 1 && out[0].serial == 1 && out[0].amount.units == 100);
    amounts(b, "alice", &bal, &res);
    CU_ASSERT(bal == 100 && res == 0);
    mpb_close(b);
    CU_ASSERT(raw_count(d, "certdue") == 0);
    CU_ASSERT_FATAL(raw_open(&r, d, "certdue", 0));
    key[7] = 2;
    key[15] = 5;                                         /* the damaged serial 5 */
    CU_ASSERT(raw_put(&r, key, 16, "", 0));
    CU_ASSERT_FATAL(raw_close(&r));
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(put_reserved(b, "alice", 0, 100));
    ASSERT_OK(put_cert(b, (mpb_cert[]){ cert(20, "alice", 100, 0, NOW + 10) }));
    ASSERT_ST(mpb_cert_release(b, NOW + 10, out, 4, &n), MP_ERR_STORE);
    CU_ASSERT(n == 0);
    amounts(b, "alice", &bal, &res);
    CU_ASSERT(bal == 0 && res == 100);
    mpb_close(b);
}

/* A store made before certificate records: readable as it is, upgraded by
 * its first writable open. */
static void test_cert_upgrade(void)
{
    const char *d = new_store();
    mpb_cert got, list[2];
    size_t n = 9;
    int found = 9;
    mpb *b;
    mpb_txn *t = NULL;
    raw r;

    CU_ASSERT_FATAL(d != NULL);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(put_reserved(b, "alice", 10, 100));
    mpb_close(b);
    CU_ASSERT_FATAL(raw_open(&r, d, "cert", 0));
    CU_ASSERT(mdb_drop(r.txn, r.dbi, 1) == 0);
    CU_ASSERT_FATAL(raw_close(&r));
    CU_ASSERT_FATAL(raw_open(&r, d, "certdue", 0));
    CU_ASSERT(mdb_drop(r.txn, r.dbi, 1) == 0);
    CU_ASSERT_FATAL(raw_close(&r));
    CU_ASSERT(raw_count(d, "cert") == (size_t)-1);

    b = open_store(d, 1);
    CU_ASSERT_FATAL(b != NULL);
    CU_ASSERT(balance(b, "alice") == 10);
    ASSERT_OK(mpb_begin(b, 1, &t));
    ASSERT_OK(mpb_cert_get(t, 1, &got, &found));
    CU_ASSERT(found == 0);
    ASSERT_OK(mpb_cert_due(t, UINT64_MAX, list, 2, &n));
    CU_ASSERT(n == 0);
    mpb_abort(t);
    mpb_close(b);
    CU_ASSERT(raw_count(d, "cert") == (size_t)-1);       /* read-only: untouched */

    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(put_cert(b, (mpb_cert[]){ cert(1, "alice", 100, 0, NOW) }));
    mpb_close(b);
    CU_ASSERT(raw_count(d, "cert") == 1 && raw_count(d, "certdue") == 1);
}

/* ---- damaged records ------------------------------------------------------------- */

static void test_corrupt(void)
{
    const char *d = new_store();
    uint8_t h[MP_HASH_LEN], c[MP_HASH_LEN], acct_val[200];
    uint8_t idem_bad[8 + MP_HASH_LEN + 2];
    char *body = NULL;
    size_t len = 0;
    int found = 0, status = 0;
    uint64_t v = 0;
    uint32_t last = 0;
    mpb *b;
    mpb_txn *t = NULL;
    mpb_account a, got;
    mpb_issued is;
    list_ctx lc;
    raw r;

    CU_ASSERT_FATAL(d != NULL);
    hash_of("x", h);
    memset(c, 7, sizeof c);
    memset(acct_val, 0, sizeof acct_val);
    memset(idem_bad, 0, sizeof idem_bad);
    memcpy(idem_bad + 8, h, MP_HASH_LEN);          /* status 0: not an HTTP status */

    CU_ASSERT_FATAL(raw_open(&r, d, "account", 0));
    CU_ASSERT(raw_put(&r, "short", 5, "xx", 2));
    acct_val[0] = MPB_CUSTOMER;                    /* currency "\0\0\0" */
    CU_ASSERT(raw_put(&r, "nocur", 5, acct_val, 61));
    CU_ASSERT(raw_put(&r, "bad key", 7, acct_val, 61));
    CU_ASSERT_FATAL(raw_close(&r));
    CU_ASSERT_FATAL(raw_open(&r, d, "idem", 0));
    CU_ASSERT(raw_put(&r, ACCT "\0r1", sizeof ACCT + 2, "tiny", 4));
    CU_ASSERT(raw_put(&r, ACCT "\0r2", sizeof ACCT + 2, idem_bad, sizeof idem_bad));
    CU_ASSERT_FATAL(raw_close(&r));
    CU_ASSERT_FATAL(raw_open(&r, d, "counter", 0));
    CU_ASSERT(raw_put(&r, "serial", 6, "abc", 3));
    CU_ASSERT_FATAL(raw_close(&r));
    CU_ASSERT_FATAL(raw_open(&r, d, "custid", 0));
    CU_ASSERT(raw_put(&r, ACCT "\0", sizeof ACCT, "\0\0\0\0\0\0\0\0", 8));
    CU_ASSERT_FATAL(raw_close(&r));
    CU_ASSERT_FATAL(raw_open(&r, d, "redeemed", 0));
    CU_ASSERT(raw_put(&r, c, sizeof c, "12345", 5));
    CU_ASSERT_FATAL(raw_close(&r));

    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_begin(b, 1, &t));
    ASSERT_ST(mpb_account_get(t, "short", &got, &found), MP_ERR_STORE);
    CU_ASSERT(strstr(mpb_errmsg(), "corrupt") != NULL);
    ASSERT_ST(mpb_account_get(t, "nocur", &got, &found), MP_ERR_STORE);
    memset(&lc, 0, sizeof lc);
    ASSERT_ST(mpb_account_list(t, list_cb, &lc), MP_ERR_STORE);
    ASSERT_ST(mpb_idem_get(t, ACCT, "r1", h, &found, &status, &body, &len), MP_ERR_STORE);
    ASSERT_ST(mpb_idem_get(t, ACCT, "r2", h, &found, &status, &body, &len), MP_ERR_STORE);
    CU_ASSERT(body == NULL);
    ASSERT_ST(mpb_custid_get(t, ACCT, "", &v, &found), MP_ERR_STORE);
    ASSERT_ST(mpb_redeemed_get(t, c, &last, NULL, NULL), MP_ERR_STORE);
    mpb_abort(t);

    /* a write transaction that met a failure cannot commit its other writes */
    a = account(ACCT, MPB_CUSTOMER, "", 77);
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_account_put(t, &a));
    ASSERT_ST(mpb_counter_next(t, "serial", &v), MP_ERR_STORE);
    ASSERT_ST(mpb_commit(t), MP_ERR_STORE);
    CU_ASSERT(balance(b, ACCT) == -1);
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_ST(mpb_redeemed_put(t, c, 3, NULL, NOW), MP_ERR_STORE);
    ASSERT_ST(mpb_commit(t), MP_ERR_STORE);
    /* argument errors and MP_ERR_SPENT wrote nothing: the transaction commits */
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_account_put(t, &a));
    ASSERT_OK(mpb_issued_put(t, (mpb_issued[]){ issued(VENDOR, 1, MPB_SCRIP_VENDOR, ACCT, 1,
                                                        NOW) }));
    ASSERT_OK(mpb_issued_use(t, VENDOR, 1, NOW - 1, &is));
    ASSERT_ST(mpb_issued_use(t, VENDOR, 1, NOW - 1, &is), MP_ERR_SPENT);
    ASSERT_ST(mpb_issued_use(t, VENDOR, 2, NOW - 1, &is), MP_ERR_FORGED);
    ASSERT_ST(mpb_counter_next(t, "", &v), MP_ERR_ARG);
    ASSERT_OK(mpb_commit(t));
    CU_ASSERT(balance(b, ACCT) == 77);
    mpb_close(b);
}

/* ---- compaction ------------------------------------------------------------------ */

static void test_compact(void)
{
    const char *d = new_store();
    uint8_t h[MP_HASH_LEN], c1[MP_HASH_LEN], c2[MP_HASH_LEN], ekey[9 + MP_HASH_LEN];
    char *body = NULL;
    size_t len = 0, removed = 99;
    int found = 0, status = 0;
    uint32_t last = 0;
    mpb *b;
    mpb_txn *t = NULL;
    raw r;
    int i;

    CU_ASSERT_FATAL(d != NULL);
    hash_of("x", h);
    memset(c1, 1, sizeof c1);
    memset(c2, 2, sizeof c2);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_idem_put(t, ACCT, "old", h, 200, "a", 1, NOW + 100));
    ASSERT_OK(mpb_idem_put(t, ACCT, "older", h, 200, "a", 1, NOW + 50));
    ASSERT_OK(mpb_idem_put(t, ACCT, "new", h, 200, "a", 1, NOW + 1000));
    ASSERT_OK(mpb_idem_put(t, ACCT, "s1", h, 200, "a", 1, NOW + 100));
    ASSERT_OK(mpb_idem_put(t, ACCT, "s2", h, 200, "a", 1, NOW + 1000));
    ASSERT_OK(mpb_redeemed_put(t, c1, 3, NULL, NOW + 100));
    ASSERT_OK(mpb_redeemed_put(t, c1, 4, NULL, NOW + 1000));      /* kept longer now */
    ASSERT_OK(mpb_redeemed_put(t, c2, 3, NULL, NOW + 100));
    ASSERT_OK(mpb_account_put(t, (mpb_account[]){ account(ACCT, MPB_CUSTOMER, "", 5) }));
    for (i = 0; i < 5; i++) {
        char rid[8];

        snprintf(rid, sizeof rid, "bulk%d", i);
        ASSERT_OK(mpb_idem_put(t, "bulk", rid, h, 200, "a", 1, NOW + 10));
    }
    ASSERT_OK(mpb_commit(t));
    mpb_close(b);
    CU_ASSERT(raw_count(d, "expiry") == 12);

    /* an index entry older than its record, as a rewrite by an older
     * version could leave: the entry goes, the record stays */
    memset(ekey, 0, 8);
    ekey[7] = 1;                                    /* time 1 */
    ekey[8] = 3;                                    /* redeemed */
    memcpy(ekey + 9, c1, MP_HASH_LEN);
    CU_ASSERT_FATAL(raw_open(&r, d, "expiry", 0));
    CU_ASSERT(raw_put(&r, ekey, sizeof ekey, "", 0));
    CU_ASSERT(raw_put(&r, "\0\0\0\0\0\0\0\2\x09zz", 11, "", 0));   /* unknown kind */
    CU_ASSERT_FATAL(raw_close(&r));

    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    /* bounded: the two damaged entries, then three of the bulk */
    ASSERT_OK(mpb_compact(b, NOW + 100, 5, &removed));
    CU_ASSERT(removed == 3);
    ASSERT_OK(mpb_compact(b, NOW + 100, 1000, &removed));
    CU_ASSERT(removed == 6);              /* 2 bulk, older, old, s1, c2 */
    ASSERT_OK(mpb_compact(b, NOW + 100, 1000, &removed));
    CU_ASSERT(removed == 0);
    ASSERT_ST(mpb_compact(b, NOW, 1, NULL), MP_ERR_ARG);

    ASSERT_OK(mpb_begin(b, 0, &t));
    ASSERT_OK(mpb_idem_get(t, ACCT, "old", h, &found, &status, &body, &len));
    CU_ASSERT(found == 0);
    ASSERT_OK(mpb_idem_get(t, ACCT, "new", h, &found, &status, &body, &len));
    CU_ASSERT(found == 1);
    free(body);
    ASSERT_OK(mpb_redeemed_get(t, c1, &last, NULL, NULL));
    CU_ASSERT(last == 4);
    ASSERT_OK(mpb_redeemed_get(t, c2, &last, NULL, NULL));
    CU_ASSERT(last == 0);
    ASSERT_OK(mpb_idem_get(t, ACCT, "s1", h, &found, &status, &body, &len));
    CU_ASSERT(found == 0);
    ASSERT_OK(mpb_idem_get(t, ACCT, "s2", h, &found, &status, &body, &len));
    CU_ASSERT(found == 1);
    free(body);
    mpb_abort(t);
    CU_ASSERT(balance(b, ACCT) == 5);                   /* accounts never expire */
    ASSERT_OK(mpb_compact(b, NOW + 1000, 1000, &removed));
    CU_ASSERT(removed == 3);
    mpb_close(b);
    CU_ASSERT(raw_count(d, "expiry") == 0 && raw_count(d, "idem") == 0
              && raw_count(d, "idem") == 0 && raw_count(d, "redeemed") == 0
              && raw_count(d, "account") == 1);
}

/* ---- processes debiting one account ------------------------------------------------ */

typedef struct {
    int successes, errors;
} conc_result;

/* One broker request: debit the account in one write transaction with its
 * idempotency record, as the broker does. 1 debited, 0 short, -1 error;
 * a balance above START could only be a negative one that wrapped. */
static int debit(mpb *b, const char *id, const char *reqid, uint64_t *seq)
{
    static const uint8_t h[MP_HASH_LEN] = { 1 };
    mpb_txn *t = NULL;
    mpb_account a;
    int found = 0, r = -1;

    if (mpb_begin(b, 0, &t) != MP_OK)
        return -1;
    if (mpb_account_get(t, id, &a, &found) != MP_OK || !found || a.balance.units > START)
        goto out;
    if (a.balance.units < DEBIT) {
        r = 0;
        goto out;
    }
    a.balance.units -= DEBIT;
    if (mpb_account_put(t, &a) != MP_OK
        || mpb_idem_put(t, id, reqid, h, 200, "{}", 2, NOW + 86400) != MP_OK
        || (seq != NULL && mpb_counter_next(t, "debits", seq) != MP_OK))
        goto out;
    r = mpb_commit(t) == MP_OK ? 1 : -1;
    t = NULL;
out:
    mpb_abort(t);
    return r;
}

static void conc_child(const char *d, int k, int go_fd, int res_fd)
{
    conc_result res = { 0, 0 };
    char c, err[256], reqid[32];
    mpb *b = NULL;
    int i, r;

    if (read(go_fd, &c, 1) < 0)
        _exit(10);
    if (mpb_open(d, 0, 0, &b, err, sizeof err) != MP_OK) {
        fprintf(stderr, "\n  child %d: %s\n", k, err);
        _exit(10);
    }
    for (i = 0; i < ATTEMPTS; i++) {
        /* Apache children open while others commit: opening must not take
         * a store that grows meanwhile for a damaged one */
        if (i % 5 == 4) {
            mpb_close(b);
            b = NULL;
            if (mpb_open(d, 0, 0, &b, err, sizeof err) != MP_OK) {
                fprintf(stderr, "\n  child %d: %s\n", k, err);
                _exit(13);
            }
        }
        snprintf(reqid, sizeof reqid, "c%d-%d", k, i);
        r = debit(b, "shared", reqid, NULL);
        if (r > 0)
            res.successes++;
        else if (r < 0)
            res.errors++;
    }
    mpb_close(b);
    _exit(write(res_fd, &res, sizeof res) == (ssize_t)sizeof res ? 0 : 11);
}

static void test_processes(void)
{
    const char *d = new_store();
    int go[2], res[CHILDREN][2], k, status, ok_exit = 0, successes = 0, errors = 0;
    pid_t pid[CHILDREN];
    conc_result r;
    double t0 = su_now_ms();
    mpb *b;

    CU_ASSERT_FATAL(d != NULL);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(put_account(b, (mpb_account[]){ account("shared", MPB_CUSTOMER, "", START) }));
    /* LMDB handles do not survive fork: every child opens its own */
    mpb_close(b);
    CU_ASSERT_FATAL(pipe(go) == 0);
    fflush(NULL);
    for (k = 0; k < CHILDREN; k++) {
        CU_ASSERT_FATAL(pipe(res[k]) == 0);
        pid[k] = fork();
        CU_ASSERT_FATAL(pid[k] >= 0);
        if (pid[k] == 0) {
            close(go[1]);
            close(res[k][0]);
            conc_child(d, k, go[0], res[k][1]);
        }
        close(res[k][1]);
    }
    close(go[0]);
    close(go[1]);                       /* every child's read returns: go */
    for (k = 0; k < CHILDREN; k++) {
        if (read(res[k][0], &r, sizeof r) == (ssize_t)sizeof r) {
            successes += r.successes;
            errors += r.errors;
        } else {
            errors++;
        }
        close(res[k][0]);
        if (waitpid(pid[k], &status, 0) == pid[k] && WIFEXITED(status) && WEXITSTATUS(status) == 0)
            ok_exit++;
    }
    CU_ASSERT(ok_exit == CHILDREN);
    CU_ASSERT(errors == 0);
    CU_ASSERT(successes == START / DEBIT);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    CU_ASSERT(balance(b, "shared") == START - DEBIT * (long long)successes);
    CU_ASSERT(balance(b, "shared") == START % DEBIT);
    mpb_close(b);
    CU_ASSERT(raw_count(d, "idem") == (size_t)successes);
    if (verbose)
        printf("\n  %d processes x %d attempts: %d debits, %.0f ms\n", CHILDREN, ATTEMPTS,
               successes, su_now_ms() - t0);
}

/* ---- a writer killed in the middle ------------------------------------------------- */

#define CRASH_ROUNDS 8

/* Debits until killed, writing the store's debit count to fd after each
 * commit returned. */
static void crash_child(const char *d, int round, int fd)
{
    char err[256], reqid[32];
    mpb *b = NULL;
    uint64_t seq = 0;
    int i, r;

    if (mpb_open(d, 0, 0, &b, err, sizeof err) != MP_OK)
        _exit(10);
    for (i = 0;; i++) {
        snprintf(reqid, sizeof reqid, "k%d-%d", round, i);
        if ((r = debit(b, "crash", reqid, &seq)) < 0)
            _exit(11);
        if (r == 0)
            pause();                    /* money gone: wait for the kill */
        else if (write(fd, &seq, sizeof seq) != (ssize_t)sizeof seq)
            _exit(12);
    }
}

static void test_crash(void)
{
    const char *d = new_store();
    int p[2], status, round, killed = 0, ok = 0, consistent = 0;
    uint64_t acked = 0, seq = 0, committed, want;
    ssize_t n;
    struct pollfd pfd;
    double deadline;
    struct timespec pause_ns;
    pid_t pid;
    mpb *b;
    long long bal;
    char reqid[32];

    CU_ASSERT_FATAL(d != NULL);
    b = open_store(d, 0);
    CU_ASSERT_FATAL(b != NULL);
    ASSERT_OK(put_account(b, (mpb_account[]){ account("crash", MPB_CUSTOMER, "", START) }));
    mpb_close(b);
    for (round = 0; round < CRASH_ROUNDS; round++) {
        CU_ASSERT_FATAL(pipe(p) == 0);
        fflush(NULL);
        pid = fork();
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            crash_child(d, round, p[1]);
        }
        close(p[1]);
        /* kill a little after an acknowledgement, a different little each
         * round, to land at different points of the next transaction */
        want = acked + 5 + (uint64_t)round;
        deadline = su_now_ms() + 5000;
        while (acked < want && su_now_ms() < deadline) {
            pfd.fd = p[0];
            pfd.events = POLLIN;
            if (poll(&pfd, 1, 100) <= 0)
                continue;
            if ((n = read(p[0], &seq, sizeof seq)) != (ssize_t)sizeof seq)
                break;
            acked = seq;
        }
        pause_ns.tv_sec = 0;
        pause_ns.tv_nsec = 150000L * round;
        nanosleep(&pause_ns, NULL);
        kill(pid, SIGKILL);
        if (waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
            killed++;
        while (read(p[0], &seq, sizeof seq) == (ssize_t)sizeof seq)
            acked = seq;
        close(p[0]);

        /* the store opens after the dead writer, agrees with what was
         * acknowledged, and takes writes */
        b = open_store(d, 0);
        CU_ASSERT_FATAL(b != NULL);
        committed = peek_counter(b, "debits") - 1;
        bal = balance(b, "crash");
        /* one commit may have landed without its acknowledgement */
        if ((committed == acked || committed == acked + 1)
            && bal == START - DEBIT * (long long)committed)
            consistent++;
        if (verbose || committed < acked || committed > acked + 1
            || bal != START - DEBIT * (long long)committed)
            fprintf(stderr, "\n  round %d: acked %llu, committed %llu, balance %lld\n", round,
                    (unsigned long long)acked, (unsigned long long)committed, bal);
        mpb_close(b);
        CU_ASSERT(raw_count(d, "idem") == committed);
        b = open_store(d, 0);
        CU_ASSERT_FATAL(b != NULL);
        snprintf(reqid, sizeof reqid, "after-%d", round);
        if (debit(b, "crash", reqid, &seq) == 1 && seq == committed + 1)
            ok++;
        acked = seq;
        mpb_close(b);
    }
    CU_ASSERT(killed == CRASH_ROUNDS);
    CU_ASSERT(consistent == CRASH_ROUNDS);
    CU_ASSERT(ok == CRASH_ROUNDS);
    if (verbose)
        printf("\n  %llu debits acknowledged over %d kills\n", (unsigned long long)acked,
               CRASH_ROUNDS);
}

/* ---- main ------------------------------------------------------------------------- */

static int suite_clean(void)
{
    su_remove_dirs();
    return 0;
}

int main(int argc, char **argv)
{
    static const struct { const char *name; void (*fn)(void); } tests[] = {
        { "create, open, read-only", test_create_open },
        { "open a missing store", test_open_missing },
        { "open garbage and empty files", test_open_garbage },
        { "open a truncated store", test_open_truncated },
        { "open a foreign or other-version store", test_open_foreign },
        { "map size", test_map_size },
        { "accounts", test_accounts },
        { "transaction isolation", test_isolation },
        { "idempotency", test_idem },
        { "counters", test_counters },
        { "customer ids", test_custid },
        { "issued scrip", test_issued },
        { "lapsed scrip goes back", test_issued_release },
        { "the ledger and its audit", test_audit },
        { "a store from before the ledger", test_ledger_upgrade },
        { "one store, one broker", test_bind },
        { "redeemed commitments", test_redeemed },
        { "certificate records", test_certs },
        { "releasing certificate credit", test_cert_release },
        { "processes releasing at once", test_cert_release_processes },
        { "damaged certificate records", test_cert_corrupt },
        { "store without certificate tables", test_cert_upgrade },
        { "damaged records", test_corrupt },
        { "compaction", test_compact },
        { "processes debiting one account", test_processes },
        { "writer killed with SIGKILL", test_crash },
    };
    CU_pSuite suite;
    unsigned failures;
    size_t i;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    suite = CU_add_suite("broker store", NULL, suite_clean);
    if (suite == NULL)
        goto fail;
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (CU_add_test(suite, tests[i].name, tests[i].fn) == NULL)
            goto fail;
    verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
    CU_basic_set_mode(verbose ? CU_BRM_VERBOSE : CU_BRM_NORMAL);
    if (CU_basic_run_tests() != CUE_SUCCESS)
        goto fail;
    failures = CU_get_number_of_failures() + CU_get_number_of_suites_failed()
             + CU_get_number_of_tests_failed();
    printf("\n%u passed, %u failed\n",
           CU_get_number_of_tests_run() - CU_get_number_of_tests_failed(),
           CU_get_number_of_tests_failed());
    CU_cleanup_registry();
    return failures ? 1 : 0;
fail:
    fprintf(stderr, "CUnit: %s\n", CU_get_error_msg());
    CU_cleanup_registry();
    su_remove_dirs();
    return 2;
}
