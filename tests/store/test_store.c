/*
 * test_store.c - the vendor's LMDB store (mod_micropay_store.h): opening
 * and refusing stores, spends and retries, deposits (listing, marking,
 * compaction by deposit state), the ledger, id blocks, PayWord trackers
 * and their redemption marks, prices, compaction and persistence, then several
 * processes spending the same scrip at once, and a writer killed with
 * SIGKILL in the middle of its spends.
 *
 * Every store lives in its own mkdtemp directory under /tmp, removed at
 * the end. Exits non-zero when anything failed.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
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
#include "mod_micropay_store.h"
#include "store_util.h"

/* Any fixed request tag: these tests are about storage, not retries. */
static const uint8_t store_tag0[MP_PW_TAG_LEN] = { 0x7a };

#define NOW    1800000000ULL
#define VENDOR "news.example"
#define CHAIN_N 100

/* ---- directories ------------------------------------------------------------ */

/* A fresh store: its directory, or NULL. */
static const char *new_store(void)
{
    char err[256];
    const char *d = su_new_dir("mps");

    if (d == NULL || mps_create(d, -1, -1, err, sizeof err) != MP_OK) {
        fprintf(stderr, "cannot create a store: %s\n", d ? err : strerror(errno));
        return NULL;
    }
    return d;
}

static mps *open_store(const char *d, unsigned flags)
{
    char err[256];
    mps *s = NULL;

    if (d == NULL || mps_open(d, flags, 0, &s, err, sizeof err) != MP_OK) {
        fprintf(stderr, "cannot open %s: %s\n", d ? d : "(null)", err);
        return NULL;
    }
    return s;
}

/* ---- raw LMDB access, to damage a store as a bug or a disk would ------------- */

typedef struct {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
} raw;

/* Opens db in the environment at d, creating it when create is set. */
static int raw_open_db(raw *r, const char *d, const char *db, unsigned create)
{
    memset(r, 0, sizeof *r);
    if (mdb_env_create(&r->env) != 0)
        return 0;
    if (mdb_env_set_maxdbs(r->env, 16) != 0
        || mdb_env_set_mapsize(r->env, MPS_MAP_SIZE_DEFAULT) != 0
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

static int raw_open(raw *r, const char *d, const char *db)
{
    return raw_open_db(r, d, db, MDB_CREATE);
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

/* ---- fixtures ----------------------------------------------------------------- */

static int verbose;
static mp_signer *broker_key, *user_key;
static mp_sha *sha;
static mp_pw_commit commit, commit2;
static uint8_t words[CHAIN_N + 1][MP_HASH_LEN];
static mp_amount unit7;                /* 7 USD units: every test earning */

static int make_commit(mp_pw_commit *c, uint64_t date)
{
    mp_pw_cert cert;

    memset(&cert, 0, sizeof cert);
    strcpy(cert.broker, "broker.example");
    strcpy(cert.user, "alice");
    if (mp_signer_pubkey(user_key, &cert.user_key) != MP_OK)
        return -1;
    cert.expiry = NOW + 86400 * 30;
    if (mp_amount_parse("10 USD", 6, &cert.credit_limit) != MP_OK)
        return -1;
    cert.serial = 3;
    if (mp_pw_cert_sign(&cert, broker_key) != MP_OK)
        return -1;
    memset(c, 0, sizeof *c);
    strcpy(c->vendor, VENDOR);
    c->cert = cert;
    memcpy(c->w0, words[0], MP_HASH_LEN);
    c->date = date;
    c->expiry = NOW + 86400;
    if (mp_amount_parse("0.001 USD", 9, &c->unit) != MP_OK)
        return -1;
    c->n = CHAIN_N;
    return mp_pw_commit_sign(c, user_key) == MP_OK ? 0 : -1;
}

static int suite_init(void)
{
    int i;

    if (mp_signer_generate(&broker_key) != MP_OK || mp_signer_generate(&user_key) != MP_OK
        || mp_sha_new(&sha) != MP_OK || mp_amount_set(&unit7, 7, "USD") != MP_OK)
        return -1;
    memset(words[CHAIN_N], 0x3e, MP_HASH_LEN);
    for (i = CHAIN_N; i > 0; i--)
        if (mp_sha256(words[i], MP_HASH_LEN, words[i - 1]) != MP_OK)
            return -1;
    return make_commit(&commit, NOW - 10) == 0 && make_commit(&commit2, NOW - 20) == 0 ? 0 : -1;
}

static int suite_clean(void)
{
    mp_signer_free(broker_key);
    mp_signer_free(user_key);
    mp_sha_free(sha);
    su_remove_dirs();
    return 0;
}

static mps_earning earning(const char *path, uint8_t scheme, uint64_t time, const mp_amount *a)
{
    mps_earning e;

    e.time = time;
    e.scheme = scheme;
    e.path = path;
    e.path_len = strlen(path);
    e.amount = *a;
    return e;
}

static void sig_for(uint8_t sig[MP_HASH_LEN], uint64_t id, unsigned salt)
{
    memset(sig, 0, MP_HASH_LEN);
    memcpy(sig, &id, sizeof id);
    sig[31] = (uint8_t)salt;
    sig[30] = (uint8_t)(salt >> 8);
}

/* The request every test spend is bound to, unless a test says otherwise. */
static mp_request req_of(const char *method, const char *host, const char *target)
{
    mp_request q;

    q.method = method;
    q.method_len = strlen(method);
    q.host = host;
    q.host_len = host ? strlen(host) : 0;
    q.target = target;
    q.target_len = strlen(target);
    return q;
}

static const uint8_t pay0[] = "payment";

/* Spends id with a req_sig made from salt and the reply "reply-<id>",
 * kept until its expiry. */
static mp_status spend(mps *s, const char *vendor, uint64_t id, unsigned salt, uint64_t expiry,
                       const mps_earning *e, int *retry)
{
    uint8_t sig[MP_HASH_LEN], out[MP_WIRE_MAX];
    mp_request q = req_of("GET", "news.example", "/a");
    char reply[32];
    size_t out_len = 0;
    int r = -1;
    mp_status st;

    sig_for(sig, id, salt);
    snprintf(reply, sizeof reply, "reply-%llu", (unsigned long long)id);
    st = mps_mc_spend(s, vendor, id, expiry, expiry, sig, pay0, sizeof pay0 - 1, &q,
                      (const uint8_t *)reply, strlen(reply), e, &r, out, &out_len);
    if (st == MP_OK && r == 1 && (out_len != strlen(reply) || memcmp(out, reply, out_len) != 0))
        return MP_ERR_MALFORMED;           /* a retry must get the stored reply */
    if (retry != NULL)
        *retry = r;
    return st;
}

/* Sums of the ledger, optionally for one path only. */
typedef struct {
    const char *path;
    uint64_t units, count;
    size_t lines;
} ledger_sum;

static int sum_cb(void *ctx, uint32_t day, uint8_t scheme, const char *path,
                  uint64_t units, const char *cur, uint64_t count)
{
    ledger_sum *ls = ctx;

    (void)day;
    (void)scheme;
    (void)cur;
    if (ls->path == NULL || strcmp(ls->path, path) == 0) {
        ls->units += units;
        ls->count += count;
        ls->lines++;
    }
    return 0;
}

static ledger_sum ledger_total(mps *s, const char *path)
{
    ledger_sum ls = { path, 0, 0, 0 };

    ASSERT_OK(mps_ledger_list(s, sum_cb, &ls));
    return ls;
}

static mps_stats stats(mps *s)
{
    mps_stats r;

    memset(&r, 0xff, sizeof r);
    ASSERT_OK(mps_stat(s, &r));
    return r;
}

/* ---- opening and refusing ------------------------------------------------------ */

static void test_create_open_close(void)
{
    char err[256];
    const char *d = su_new_dir("mps");
    struct stat sb;
    mps_stats z;
    mps *s = NULL;

    CU_ASSERT_FATAL(d != NULL);
    ASSERT_OK(mps_create(d, (long)getuid(), (long)getgid(), err, sizeof err));
    CU_ASSERT(stat(su_file_in(d, "data.mdb"), &sb) == 0 && (sb.st_mode & 0777) == 0600);
    CU_ASSERT(stat(su_file_in(d, "lock.mdb"), &sb) == 0 && (sb.st_mode & 0077) == 0);
    CU_ASSERT(sb.st_uid == getuid() && sb.st_gid == getgid());

    /* a second create is refused and leaves the first store alone */
    err[0] = 0;
    ASSERT_ST(mps_create(d, -1, -1, err, sizeof err), MP_ERR_STORE);
    CU_ASSERT(strstr(err, "already exists") != NULL);

    ASSERT_OK(mps_open(d, 0, 0, &s, err, sizeof err));
    CU_ASSERT_FATAL(s != NULL);
    z = stats(s);
    CU_ASSERT(z.spent == 0 && z.pw == 0 && z.prices == 0 && z.ledger == 0 && z.expiry_index == 0);
    ASSERT_OK(mps_sync(s));
    mps_close(s);
    mps_close(NULL);

    s = NULL;
    ASSERT_OK(mps_open(d, MPS_SYNC, 0, &s, err, sizeof err));
    ASSERT_OK(spend(s, VENDOR, 1, 1, NOW, NULL, NULL));
    mps_close(s);
    s = NULL;
    ASSERT_OK(mps_open(d, MPS_RDONLY, 0, &s, err, sizeof err));
    CU_ASSERT(stats(s).spent == 1);
    /* a read-only handle refuses writes as a store failure, with a reason */
    ASSERT_ST(spend(s, VENDOR, 2, 1, NOW, NULL, NULL), MP_ERR_STORE);
    CU_ASSERT(strlen(mps_errmsg(s)) > 0);
    mps_close(s);

    ASSERT_ST(mps_create("/nonexistent/mps", -1, -1, err, sizeof err), MP_ERR_STORE);
    ASSERT_ST(mps_open(d, 0x80, 0, &s, err, sizeof err), MP_ERR_ARG);
}

static void test_open_missing(void)
{
    char err[256] = "";
    const char *d = su_new_dir("mps");
    struct stat sb;
    mps *s = NULL;

    CU_ASSERT_FATAL(d != NULL);
    ASSERT_ST(mps_open(d, 0, 0, &s, err, sizeof err), MP_ERR_STORE);
    CU_ASSERT(s == NULL);
    CU_ASSERT(strstr(err, "does not exist") != NULL && strstr(err, "mpadmin store init") != NULL);
    /* opening must not have made an empty store that accepts replays */
    CU_ASSERT(stat(su_file_in(d, "data.mdb"), &sb) != 0 && errno == ENOENT);
    ASSERT_ST(mps_open("/nonexistent/mps", 0, 0, &s, err, sizeof err), MP_ERR_STORE);
    ASSERT_ST(mps_open(d, MPS_RDONLY, 0, &s, err, sizeof err), MP_ERR_STORE);
}

static void test_open_garbage(void)
{
    static uint8_t junk[20000];
    static const size_t sizes[] = { 1, 100, 4096, 8192, sizeof junk };
    char err[256];
    const char *d = su_new_dir("mps");
    unsigned flags;
    size_t i;
    mps *s = NULL;

    CU_ASSERT_FATAL(d != NULL);
    /* an empty data.mdb would be taken by LMDB as a new environment */
    CU_ASSERT_FATAL(su_write_file(su_file_in(d, "data.mdb"), "", 0));
    err[0] = 0;
    ASSERT_ST(mps_open(d, 0, 0, &s, err, sizeof err), MP_ERR_STORE);
    CU_ASSERT(strstr(err, "empty") != NULL);
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (flags = 0; flags <= MPS_RDONLY; flags++) {
            CU_ASSERT_FATAL(mp_random(junk, sizeof junk) == MP_OK);
            CU_ASSERT_FATAL(su_write_file(su_file_in(d, "data.mdb"), junk, sizes[i]));
            err[0] = 0;
            s = NULL;
            ASSERT_ST(mps_open(d, flags, 0, &s, err, sizeof err), MP_ERR_STORE);
            CU_ASSERT(s == NULL && err[0] != 0);
        }
    }
    memset(junk, 0xa5, sizeof junk);
    CU_ASSERT_FATAL(su_write_file(su_file_in(d, "data.mdb"), junk, sizeof junk));
    ASSERT_ST(mps_open(d, 0, 0, &s, err, sizeof err), MP_ERR_STORE);
}

static void test_open_truncated(void)
{
    static const off_t sizes[] = { 5000, 8192, 12288, 40960 };
    char err[256];
    const char *d = new_store();
    mps *s = open_store(d, 0);
    struct stat sb;
    size_t i;
    uint64_t id;

    CU_ASSERT_FATAL(s != NULL);
    for (id = 1; id <= 3000; id++)
        if (spend(s, VENDOR, id, 1, NOW, NULL, NULL) != MP_OK)
            break;
    CU_ASSERT(id == 3001);
    mps_close(s);
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        CU_ASSERT_FATAL(truncate(su_file_in(d, "data.mdb"), sizes[i]) == 0);
        s = NULL;
        err[0] = 0;
        ASSERT_ST(mps_open(d, MPS_RDONLY, 0, &s, err, sizeof err), MP_ERR_STORE);
        CU_ASSERT(err[0] != 0);
        ASSERT_ST(mps_open(d, 0, 0, &s, err, sizeof err), MP_ERR_STORE);
        CU_ASSERT(s == NULL);
        /* refused before a writable map could zero-fill the missing pages */
        CU_ASSERT(stat(su_file_in(d, "data.mdb"), &sb) == 0 && sb.st_size == sizes[i]);
    }
}

/* The map size: a larger one grows the file (a WRITEMAP writer keeps it at
 * its map size), the default or a smaller one never shrinks it. A store
 * whose map is full refuses writes as "full" (mps_full), keeps what it
 * holds, and takes more once opened with a larger map. */
static void test_map_size(void)
{
    static const char *const tables[] = { "spent", "pw", "ledger", "prices", "ids", "expiry" };
    static uint8_t big[MP_WIRE_MAX];
    const size_t mib = (size_t)1 << 20;
    mp_request q = req_of("GET", "news.example", "/a");
    uint8_t sig[MP_HASH_LEN], out[MP_WIRE_MAX];
    char err[256];
    const char *d = new_store(), *small = su_new_dir("mps");
    struct stat sb;
    size_t i, out_len;
    uint64_t id;
    MDB_dbi dbi;
    mp_status st = MP_OK;
    raw r;
    int retry;
    mps *s = NULL;

    CU_ASSERT_FATAL(d != NULL && small != NULL);
    ASSERT_OK(mps_open(d, 0, 2048 * mib, &s, err, sizeof err));
    mps_close(s);
    CU_ASSERT(stat(su_file_in(d, "data.mdb"), &sb) == 0 && (size_t)sb.st_size == 2048 * mib);
    s = open_store(d, 0);
    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(spend(s, VENDOR, 1, 1, NOW, NULL, NULL));
    mps_close(s);
    s = NULL;
    ASSERT_OK(mps_open(d, 0, 16 * mib, &s, err, sizeof err));
    mps_close(s);
    CU_ASSERT(stat(su_file_in(d, "data.mdb"), &sb) == 0 && (size_t)sb.st_size == 2048 * mib);
    s = open_store(d, MPS_RDONLY);
    CU_ASSERT_FATAL(s != NULL);
    CU_ASSERT(stats(s).spent == 1);
    mps_close(s);

    /* A store written without WRITEMAP is only as large as its data, so a
     * 16 MiB map is what it gets. */
    CU_ASSERT_FATAL(raw_open(&r, small, "meta"));
    CU_ASSERT(raw_put(&r, "format", 6, "mod_micropay-store-2", 20));
    for (i = 0; i < sizeof tables / sizeof tables[0]; i++)
        CU_ASSERT(mdb_dbi_open(r.txn, tables[i], MDB_CREATE, &dbi) == 0);
    CU_ASSERT_FATAL(raw_close(&r));
    s = NULL;
    ASSERT_OK(mps_open(small, 0, 16 * mib, &s, err, sizeof err));
    CU_ASSERT_FATAL(s != NULL);
    CU_ASSERT(stat(su_file_in(small, "data.mdb"), &sb) == 0 && (size_t)sb.st_size == 16 * mib);
    CU_ASSERT(!mps_full(s));
    memset(big, 'p', sizeof big);
    for (id = 1; id < 100000 && st == MP_OK; id++) {
        sig_for(sig, id, 1);
        st = mps_mc_spend(s, VENDOR, id, NOW, NOW, sig, big, sizeof big, &q, NULL, 0, NULL,
                          &retry, out, &out_len);
    }
    ASSERT_ST(st, MP_ERR_STORE);
    CU_ASSERT(id > 1000);
    CU_ASSERT(mps_full(s) && strstr(mps_errmsg(s), "store full") != NULL);
    /* reads go on, and a failure of another kind is not "full" */
    CU_ASSERT(stats(s).spent == id - 2);
    ASSERT_ST(mps_price_set(s, "", "/x", &unit7), MP_ERR_ARG);
    CU_ASSERT(!mps_full(s));
    mps_close(s);
    s = NULL;
    ASSERT_OK(mps_open(small, 0, 64 * mib, &s, err, sizeof err));
    CU_ASSERT_FATAL(s != NULL);
    CU_ASSERT(stats(s).spent == id - 2);
    ASSERT_OK(spend(s, VENDOR, id, 1, NOW, NULL, NULL));
    mps_close(s);
}

static void test_open_foreign(void)
{
    static const char *const formats[] = {
        "mod_micropay-store-1", "mod_micropay-store-3", "mod_micropay-store-", ""
    };
    char err[256];
    const char *d = su_new_dir("mps"), *st;
    raw r;
    size_t i;
    mps *s = NULL;

    /* another application's LMDB environment, left as it was */
    CU_ASSERT_FATAL(d != NULL && raw_open(&r, d, "things"));
    CU_ASSERT(raw_put(&r, "k", 1, "v", 1));
    CU_ASSERT_FATAL(raw_close(&r));
    err[0] = 0;
    ASSERT_ST(mps_open(d, 0, 0, &s, err, sizeof err), MP_ERR_STORE);
    CU_ASSERT(strstr(err, "not a mod_micropay store") != NULL);
    ASSERT_ST(mps_open(d, MPS_RDONLY, 0, &s, err, sizeof err), MP_ERR_STORE);
    /* refusing it created none of the store's tables */
    CU_ASSERT(!raw_open_db(&r, d, "meta", 0) && !raw_open_db(&r, d, "spent", 0));
    CU_ASSERT_FATAL(raw_open_db(&r, d, "things", 0));
    CU_ASSERT_FATAL(raw_close(&r));

    /* a store of another format version, or with the format key gone */
    st = new_store();
    CU_ASSERT_FATAL(st != NULL);
    for (i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        CU_ASSERT_FATAL(raw_open(&r, st, "meta"));
        CU_ASSERT(raw_put(&r, "format", 6, formats[i], strlen(formats[i])));
        CU_ASSERT_FATAL(raw_close(&r));
        err[0] = 0;
        ASSERT_ST(mps_open(st, 0, 0, &s, err, sizeof err), MP_ERR_STORE);
        CU_ASSERT(strstr(err, "not a mod_micropay store or wrong version") != NULL);
    }
    CU_ASSERT_FATAL(raw_open(&r, st, "meta"));
    {
        MDB_val k = { 6, "format" };
        CU_ASSERT(mdb_del(r.txn, r.dbi, &k, NULL) == 0);
    }
    CU_ASSERT_FATAL(raw_close(&r));
    ASSERT_ST(mps_open(st, 0, 0, &s, err, sizeof err), MP_ERR_STORE);
    CU_ASSERT_FATAL(raw_open(&r, st, "meta"));
    CU_ASSERT(raw_put(&r, "format", 6, "mod_micropay-store-2", 20));
    CU_ASSERT_FATAL(raw_close(&r));
    s = open_store(st, 0);
    CU_ASSERT(s != NULL);
    mps_close(s);
}

/* ---- Millicent ----------------------------------------------------------------- */

/* mps_mc_spend with the common arguments of test_spend. */
#define SPEND(s_, v_, id_, sig_, reply_, rlen_, e_) \
    mps_mc_spend(s_, v_, id_, NOW, NOW, sig_, pay0, sizeof pay0 - 1, &q, reply_, rlen_, e_, \
                 &retry, out, &out_len)

static void test_spend(void)
{
    static uint8_t big[MP_WIRE_MAX + 2];
    static char ltarget[MP_TARGET_MAX + 1], lhost[MP_HOST_MAX];
    const char *d = new_store();
    mps *s = open_store(d, 0);
    uint8_t sig[MP_HASH_LEN], out[MP_WIRE_MAX];
    char vlong[MP_NAME_MAX + 2];
    mps_earning e = earning("/a", MP_SCHEME_MILLICENT, NOW, &unit7);
    mp_request q = req_of("GET", "news.example", "/a");
    const mp_request bad_reqs[] = {
        req_of("", "h", "/"), req_of("ABCDEFGHIJKLMNOPQ", "h", "/"), req_of("GET", "h", ""),
        req_of("G T", "h", "/"), req_of("GET", "h st", "/"), req_of("GET", "h", "/a\x7f"),
        { "GET", 3, NULL, 1, "/", 1 }, { NULL, 0, "h", 1, "/", 1 }, { "GET", 3, "h", 1, NULL, 1 },
    };
    mps_stats z;
    size_t out_len = 12345, i;
    int retry = -1;

    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(spend(s, VENDOR, 42, 1, NOW + 100, &e, &retry));
    CU_ASSERT(retry == 0);
    ASSERT_OK(spend(s, VENDOR, 42, 1, NOW + 100, &e, &retry));
    CU_ASSERT(retry == 1);
    ASSERT_ST(spend(s, VENDOR, 42, 2, NOW + 100, &e, &retry), MP_ERR_SPENT);
    /* the same id at another vendor is another piece of scrip */
    ASSERT_OK(spend(s, "other.example", 42, 2, NOW + 100, &e, &retry));
    CU_ASSERT(retry == 0);
    z = stats(s);
    CU_ASSERT(z.spent == 2 && z.expiry_index == 2 && z.ledger == 1);
    CU_ASSERT(ledger_total(s, NULL).count == 2);

    /* an empty reply is a reply too */
    sig_for(sig, 43, 1);
    ASSERT_OK(SPEND(s, VENDOR, 43, sig, NULL, 0, NULL));
    CU_ASSERT(retry == 0 && out_len == 12345);
    ASSERT_OK(SPEND(s, VENDOR, 43, sig, NULL, 0, NULL));
    CU_ASSERT(retry == 1 && out_len == 0);

    memset(big, 1, sizeof big);
    ASSERT_ST(SPEND(s, VENDOR, 44, sig, big, sizeof big, NULL), MP_ERR_ARG);
    ASSERT_OK(SPEND(s, VENDOR, 44, sig, big, MP_WIRE_MAX, NULL));
    ASSERT_OK(SPEND(s, VENDOR, 44, sig, big, MP_WIRE_MAX, NULL));
    CU_ASSERT(retry == 1 && out_len == MP_WIRE_MAX && memcmp(out, big, MP_WIRE_MAX) == 0);
    ASSERT_ST(SPEND(s, "", 45, sig, NULL, 0, NULL), MP_ERR_ARG);
    memset(vlong, 'v', sizeof vlong - 1);
    vlong[sizeof vlong - 1] = 0;
    ASSERT_ST(SPEND(s, vlong, 45, sig, NULL, 0, NULL), MP_ERR_ARG);
    vlong[MP_NAME_MAX] = 0;
    ASSERT_OK(SPEND(s, vlong, 45, sig, NULL, 0, NULL));
    e.scheme = 9;
    ASSERT_ST(SPEND(s, VENDOR, 45, sig, NULL, 0, &e), MP_ERR_ARG);

    /* the deposit needs the payment and a request within the wire limits */
    ASSERT_ST(mps_mc_spend(s, VENDOR, 46, NOW, NOW, sig, NULL, 0, &q, NULL, 0, NULL, &retry,
                           out, &out_len), MP_ERR_ARG);
    ASSERT_ST(mps_mc_spend(s, VENDOR, 46, NOW, NOW, sig, pay0, 0, &q, NULL, 0, NULL, &retry,
                           out, &out_len), MP_ERR_ARG);
    ASSERT_ST(mps_mc_spend(s, VENDOR, 46, NOW, NOW, sig, big, MP_WIRE_MAX + 1, &q, NULL, 0, NULL,
                           &retry, out, &out_len), MP_ERR_ARG);
    ASSERT_ST(mps_mc_spend(s, VENDOR, 46, NOW, NOW, sig, pay0, 1, NULL, NULL, 0, NULL, &retry,
                           out, &out_len), MP_ERR_ARG);
    for (i = 0; i < sizeof bad_reqs / sizeof bad_reqs[0]; i++) {
        q = bad_reqs[i];
        ASSERT_ST(mps_mc_spend(s, VENDOR, 46, NOW, NOW, sig, pay0, 1, &q, NULL, 0, NULL, &retry,
                               out, &out_len), MP_ERR_ARG);
    }
    memset(ltarget, 'x', sizeof ltarget);
    ltarget[0] = '/';
    q = req_of("GET", "h", "/");
    q.target = ltarget;
    q.target_len = MP_TARGET_MAX + 1;
    ASSERT_ST(mps_mc_spend(s, VENDOR, 46, NOW, NOW, sig, pay0, 1, &q, NULL, 0, NULL, &retry,
                           out, &out_len), MP_ERR_ARG);
    /* the largest record of all: every field at its limit */
    q.target_len = MP_TARGET_MAX;
    memset(lhost, 'h', sizeof lhost);
    q.host = lhost;
    q.host_len = MP_HOST_MAX;
    q.method = "ABCDEFGHIJKLMNOP";
    q.method_len = MP_METHOD_MAX;
    ASSERT_OK(mps_mc_spend(s, VENDOR, 46, NOW, NOW, sig, big, MP_WIRE_MAX, &q, big, MP_WIRE_MAX,
                           NULL, &retry, out, &out_len));
    CU_ASSERT(retry == 0);
    ASSERT_OK(mps_mc_spend(s, VENDOR, 46, NOW, NOW, sig, big, MP_WIRE_MAX, &q, big, MP_WIRE_MAX,
                           NULL, &retry, out, &out_len));
    CU_ASSERT(retry == 1 && out_len == MP_WIRE_MAX);
    CU_ASSERT(stats(s).spent == 6);
    mps_close(s);
}

/* ---- deposits ------------------------------------------------------------------- */

#define DEP_MAX 32

typedef struct {
    size_t n, stop_after;
    uint64_t ids[DEP_MAX];
    char pay[DEP_MAX][32], method[DEP_MAX][20], host[DEP_MAX][64], target[DEP_MAX][64];
} dep_list;

static int dep_cb(void *ctx, uint64_t id, const uint8_t *payment, size_t payment_len,
                  const char *method, const char *host, const char *target)
{
    dep_list *l = ctx;

    if (l->n < DEP_MAX) {
        l->ids[l->n] = id;
        snprintf(l->pay[l->n], sizeof l->pay[0], "%.*s", (int)payment_len, (const char *)payment);
        snprintf(l->method[l->n], sizeof l->method[0], "%s", method);
        snprintf(l->host[l->n], sizeof l->host[0], "%s", host);
        snprintf(l->target[l->n], sizeof l->target[0], "%s", target);
    }
    l->n++;
    return l->stop_after != 0 && l->n == l->stop_after;
}

static dep_list undeposited(mps *s, const char *vendor)
{
    dep_list l;

    memset(&l, 0, sizeof l);
    ASSERT_OK(mps_mc_list_undeposited(s, vendor, dep_cb, &l));
    return l;
}

/* Spends id with the payment text "pay-<id>" for the given request,
 * kept until keep. */
static mp_status spend_req(mps *s, const char *vendor, uint64_t id, uint64_t expiry, uint64_t keep,
                           const mp_request *q, int *retry)
{
    uint8_t sig[MP_HASH_LEN], out[MP_WIRE_MAX];
    char pay[32];
    size_t out_len = 0;
    int r = -1;
    mp_status st;

    sig_for(sig, id, 1);
    snprintf(pay, sizeof pay, "pay-%llu", (unsigned long long)id);
    st = mps_mc_spend(s, vendor, id, expiry, keep, sig, (const uint8_t *)pay, strlen(pay), q,
                      (const uint8_t *)"r", 1, NULL, &r, out, &out_len);
    if (retry != NULL)
        *retry = r;
    return st;
}

static void test_deposits(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    mp_request get = req_of("GET", "news.example:8080", "/a/b.html?x=1");
    mp_request head = req_of("HEAD", NULL, "/");
    const uint64_t late = NOW + 86400 * 30;
    uint64_t marks[] = { 3, 1, 3, 999 };
    uint8_t sig[MP_HASH_LEN], out[MP_WIRE_MAX];
    size_t removed = 0, out_len;
    dep_list l;
    int retry;

    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(spend_req(s, VENDOR, 3, NOW + 10, late, &get, NULL));
    ASSERT_OK(spend_req(s, VENDOR, 1, NOW + 10, late, &head, NULL));
    ASSERT_OK(spend_req(s, VENDOR, 2, NOW + 10, late, &get, NULL));
    ASSERT_OK(spend_req(s, "other.example", 1, NOW + 10, late, &get, NULL));
    ASSERT_OK(spend_req(s, VENDOR, 4, NOW + 20, NOW, &get, NULL));   /* keep below expiry */

    /* every undeposited spend of the vendor, in id order, as stored */
    l = undeposited(s, VENDOR);
    CU_ASSERT_FATAL(l.n == 4);
    CU_ASSERT(l.ids[0] == 1 && l.ids[1] == 2 && l.ids[2] == 3 && l.ids[3] == 4);
    CU_ASSERT(strcmp(l.pay[0], "pay-1") == 0 && strcmp(l.pay[2], "pay-3") == 0);
    CU_ASSERT(strcmp(l.method[0], "HEAD") == 0 && strcmp(l.host[0], "") == 0
              && strcmp(l.target[0], "/") == 0);
    CU_ASSERT(strcmp(l.method[1], "GET") == 0 && strcmp(l.host[1], "news.example:8080") == 0
              && strcmp(l.target[1], "/a/b.html?x=1") == 0);
    CU_ASSERT(undeposited(s, "other.example").n == 1 && undeposited(s, "nobody").n == 0);
    memset(&l, 0, sizeof l);
    l.stop_after = 2;
    ASSERT_OK(mps_mc_list_undeposited(s, VENDOR, dep_cb, &l));
    CU_ASSERT(l.n == 2);
    ASSERT_ST(mps_mc_list_undeposited(s, "", dep_cb, &l), MP_ERR_ARG);
    ASSERT_ST(mps_mc_list_undeposited(s, VENDOR, NULL, &l), MP_ERR_ARG);

    /* marking: duplicates and unknown ids are fine, and it is idempotent */
    ASSERT_OK(mps_mc_mark_deposited(s, VENDOR, marks, 4));
    l = undeposited(s, VENDOR);
    CU_ASSERT(l.n == 2 && l.ids[0] == 2 && l.ids[1] == 4);
    ASSERT_OK(mps_mc_mark_deposited(s, VENDOR, marks, 4));
    ASSERT_OK(mps_mc_mark_deposited(s, VENDOR, NULL, 0));
    ASSERT_ST(mps_mc_mark_deposited(s, VENDOR, NULL, 1), MP_ERR_ARG);
    ASSERT_ST(mps_mc_mark_deposited(s, "", marks, 1), MP_ERR_ARG);
    CU_ASSERT(undeposited(s, VENDOR).n == 2 && undeposited(s, "other.example").n == 1);

    /* a deposited spend still answers its retry and refuses a double spend */
    ASSERT_OK(spend_req(s, VENDOR, 3, NOW + 10, late, &get, &retry));
    CU_ASSERT(retry == 1);
    sig_for(sig, 3, 2);
    ASSERT_ST(mps_mc_spend(s, VENDOR, 3, NOW + 10, late, sig, pay0, 1, &get, NULL, 0, NULL,
                           &retry, out, &out_len), MP_ERR_SPENT);
    CU_ASSERT(undeposited(s, VENDOR).n == 2);
    CU_ASSERT(stats(s).spent == 5 && stats(s).expiry_index == 7);
    mps_close(s);

    /* the flag survives reopening; read-only handles list but cannot mark */
    s = open_store(d, MPS_RDONLY);
    CU_ASSERT_FATAL(s != NULL);
    l = undeposited(s, VENDOR);
    CU_ASSERT(l.n == 2 && l.ids[0] == 2);
    ASSERT_ST(mps_mc_mark_deposited(s, VENDOR, marks, 1), MP_ERR_STORE);
    mps_close(s);

    /* compaction: deposited spends go at expiry, undeposited ones at
     * keep_until (at least expiry) */
    s = open_store(d, 0);
    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(mps_compact(s, NOW + 9, 100, &removed));
    CU_ASSERT(removed == 0);
    ASSERT_OK(mps_compact(s, NOW + 10, 100, &removed));
    CU_ASSERT(removed == 2);                                /* ids 1 and 3 */
    ASSERT_OK(mps_compact(s, NOW + 20, 100, &removed));
    CU_ASSERT(removed == 1);                                /* id 4 */
    CU_ASSERT(stats(s).spent == 2 && undeposited(s, VENDOR).n == 1);
    ASSERT_OK(mps_compact(s, late - 1, 100, &removed));
    CU_ASSERT(removed == 0);
    /* marking after expiry lets the next compaction take it */
    marks[0] = 2;
    ASSERT_OK(mps_mc_mark_deposited(s, VENDOR, marks, 1));
    ASSERT_OK(mps_compact(s, late - 1, 100, &removed));
    CU_ASSERT(removed == 1);
    CU_ASSERT(undeposited(s, VENDOR).n == 0 && undeposited(s, "other.example").n == 1);
    ASSERT_OK(mps_compact(s, late, 100, &removed));
    CU_ASSERT(removed == 1);
    CU_ASSERT(stats(s).spent == 0 && stats(s).expiry_index == 0);
    mps_close(s);
}

static void test_spent_corrupt(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    mp_request get = req_of("GET", "h", "/x");
    uint8_t key[sizeof VENDOR + 8], buf[512];
    uint64_t id = 7;
    size_t n;
    dep_list l;
    raw r;
    MDB_val k, v;
    int variant, i;

    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(spend_req(s, VENDOR, id, NOW, NOW, &get, NULL));
    mps_close(s);
    memcpy(key, VENDOR, sizeof VENDOR);
    for (i = 0; i < 8; i++)
        key[sizeof VENDOR + i] = (uint8_t)(id >> (56 - 8 * i));
    for (variant = 0; variant < 5; variant++) {
        CU_ASSERT_FATAL(raw_open(&r, d, "spent"));
        k.mv_size = sizeof key;
        k.mv_data = key;
        CU_ASSERT_FATAL(mdb_get(r.txn, r.dbi, &k, &v) == 0 && v.mv_size <= sizeof buf);
        n = v.mv_size;
        memcpy(buf, v.mv_data, n);
        switch (variant) {
        case 0: buf[16] = 2; break;                  /* unknown flag */
        case 1: n--; break;                          /* target cut short */
        case 2: buf[n - 1] = ' '; break;             /* target byte not visible */
        case 3: buf[15] ^= 1; break;                 /* time before expiry */
        default: n = 20; break;                      /* header cut short */
        }
        v.mv_size = n;
        v.mv_data = buf;
        CU_ASSERT(mdb_put(r.txn, r.dbi, &k, &v, 0) == 0);
        CU_ASSERT_FATAL(raw_close(&r));
        s = open_store(d, 0);
        CU_ASSERT_FATAL(s != NULL);
        memset(&l, 0, sizeof l);
        ASSERT_ST(mps_mc_list_undeposited(s, VENDOR, dep_cb, &l), MP_ERR_STORE);
        CU_ASSERT(strstr(mps_errmsg(s), "corrupt spent record") != NULL);
        ASSERT_ST(spend_req(s, VENDOR, id, NOW, NOW, &get, NULL), MP_ERR_STORE);
        ASSERT_ST(mps_mc_mark_deposited(s, VENDOR, &id, 1), MP_ERR_STORE);
        mps_close(s);
        /* the good record back */
        CU_ASSERT_FATAL(raw_open(&r, d, "spent"));
        CU_ASSERT(mdb_del(r.txn, r.dbi, &k, NULL) == 0);
        CU_ASSERT_FATAL(raw_close(&r));
        s = open_store(d, 0);
        CU_ASSERT_FATAL(s != NULL);
        ASSERT_OK(spend_req(s, VENDOR, id, NOW, NOW, &get, NULL));
        CU_ASSERT(undeposited(s, VENDOR).n == 1);
        mps_close(s);
    }
}

static void test_ledger(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    mp_amount eur, max;
    mps_earning e;
    ledger_sum ls;
    char longpath[MP_TARGET_MAX + 1];
    int retry;

    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(mp_amount_set(&eur, 11, "EUR"));
    ASSERT_OK(mp_amount_set(&max, MP_AMOUNT_MAX, "USD"));
    e = earning("/a", MP_SCHEME_MILLICENT, NOW, &unit7);
    ASSERT_OK(spend(s, VENDOR, 1, 1, NOW, &e, NULL));
    ASSERT_OK(spend(s, VENDOR, 2, 1, NOW, &e, NULL));
    ASSERT_OK(spend(s, VENDOR, 2, 1, NOW, &e, NULL));       /* retry: not counted */
    e = earning("/a", MP_SCHEME_MILLICENT, NOW + 86400, &unit7);   /* next day */
    ASSERT_OK(spend(s, VENDOR, 3, 1, NOW, &e, NULL));
    e = earning("/a", MP_SCHEME_MILLICENT, NOW, &eur);              /* other currency */
    ASSERT_OK(spend(s, VENDOR, 4, 1, NOW, &e, NULL));
    e = earning("/b", MP_SCHEME_MILLICENT, NOW, &unit7);
    ASSERT_OK(spend(s, VENDOR, 5, 1, NOW, &e, NULL));
    e = earning("/a", MP_SCHEME_PAYWORD, NOW, &unit7);
    ASSERT_OK(spend(s, VENDOR, 6, 1, NOW, &e, NULL));
    /* a path of any length up to the target limit: keys hold its hash */
    memset(longpath, 'x', MP_TARGET_MAX);
    longpath[0] = '/';
    longpath[MP_TARGET_MAX] = 0;
    e = earning(longpath, MP_SCHEME_MILLICENT, NOW, &unit7);
    ASSERT_OK(spend(s, VENDOR, 7, 1, NOW, &e, NULL));
    ASSERT_OK(spend(s, VENDOR, 8, 1, NOW, &e, NULL));
    e.path_len = MP_TARGET_MAX + 1;
    ASSERT_ST(spend(s, VENDOR, 9, 1, NOW, &e, NULL), MP_ERR_ARG);

    ls = ledger_total(s, NULL);
    CU_ASSERT(ls.lines == 6 && ls.count == 8 && ls.units == 7 * 7 + 11);
    ls = ledger_total(s, "/a");
    CU_ASSERT(ls.lines == 4 && ls.count == 5 && ls.units == 4 * 7 + 11);
    ls = ledger_total(s, longpath);
    CU_ASSERT(ls.lines == 1 && ls.count == 2 && ls.units == 14);
    CU_ASSERT(stats(s).ledger == 6);

    /* an overflowing ledger line aborts the whole spend */
    e = earning("/max", MP_SCHEME_MILLICENT, NOW, &max);
    ASSERT_OK(spend(s, VENDOR, 10, 1, NOW, &e, NULL));
    ASSERT_ST(spend(s, VENDOR, 11, 1, NOW, &e, NULL), MP_ERR_OVERFLOW);
    e = earning("/max", MP_SCHEME_MILLICENT, NOW, &unit7);
    ASSERT_ST(spend(s, VENDOR, 11, 1, NOW, &e, NULL), MP_ERR_OVERFLOW);
    e = earning("/c", MP_SCHEME_MILLICENT, NOW, &unit7);
    ASSERT_OK(spend(s, VENDOR, 11, 2, NOW, &e, &retry));
    CU_ASSERT(retry == 0);
    ls = ledger_total(s, "/max");
    CU_ASSERT(ls.count == 1 && ls.units == MP_AMOUNT_MAX);
    mps_close(s);
}

static void test_ids(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    const uint64_t s3 = (uint64_t)3 << 48;
    uint64_t first = 0, counter;
    raw r;
    uint8_t key[sizeof VENDOR + 2], v[8];

    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(mps_reserve_ids(s, VENDOR, 3, 10, &first));
    CU_ASSERT(first == (s3 | 1));
    ASSERT_OK(mps_reserve_ids(s, VENDOR, 3, 5, &first));
    CU_ASSERT(first == (s3 | 11));
    ASSERT_OK(mps_reserve_ids(s, VENDOR, 4, 1, &first));
    CU_ASSERT(first == (((uint64_t)4 << 48) | 1));
    ASSERT_OK(mps_reserve_ids(s, "other.example", 3, 1, &first));
    CU_ASSERT(first == (s3 | 1));
    ASSERT_ST(mps_reserve_ids(s, VENDOR, 3, 0, &first), MP_ERR_ARG);
    mps_close(s);

    s = open_store(d, 0);
    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(mps_reserve_ids(s, VENDOR, 3, 0xffffffffu, &first));
    CU_ASSERT(first == (s3 | 16));
    ASSERT_OK(mps_reserve_ids(s, VENDOR, 3, 1, &first));
    CU_ASSERT(first == (s3 | (16 + 0xffffffffULL)));
    mps_close(s);

    /* the last sequences of a series, then exhaustion */
    memcpy(key, VENDOR, sizeof VENDOR);
    key[sizeof VENDOR] = 0;
    key[sizeof VENDOR + 1] = 3;
    counter = ((uint64_t)1 << 48) - 3;
    for (int i = 0; i < 8; i++)
        v[i] = (uint8_t)(counter >> (56 - 8 * i));
    CU_ASSERT_FATAL(raw_open(&r, d, "ids"));
    CU_ASSERT(raw_put(&r, key, sizeof key, v, 8));
    CU_ASSERT_FATAL(raw_close(&r));
    s = open_store(d, 0);
    CU_ASSERT_FATAL(s != NULL);
    ASSERT_ST(mps_reserve_ids(s, VENDOR, 3, 4, &first), MP_ERR_STORE);
    ASSERT_OK(mps_reserve_ids(s, VENDOR, 3, 3, &first));
    CU_ASSERT(first == (s3 | counter) && (first & 0xffffffffffffULL) + 2 == 0xffffffffffffULL);
    ASSERT_ST(mps_reserve_ids(s, VENDOR, 3, 1, &first), MP_ERR_STORE);
    CU_ASSERT(strstr(mps_errmsg(s), "exhausted") != NULL);
    ASSERT_OK(mps_reserve_ids(s, VENDOR, 4, 1, &first));
    CU_ASSERT(first == (((uint64_t)4 << 48) | 2));
    mps_close(s);
}

/* ---- PayWord ------------------------------------------------------------------- */

static mp_status pay(const mp_pw_track *t, uint32_t i, uint32_t k, mp_pw_track *next)
{
    mp_pw_payment p;
    mp_amount price;
    int retry;

    memset(&p, 0, sizeof p);
    memcpy(p.commit_id, t->commit_id, MP_HASH_LEN);
    p.i = i;
    p.k = k;
    memcpy(p.w, words[i], MP_HASH_LEN);
    if (mp_amount_mul(&t->unit, k, &price) != MP_OK)
        return MP_ERR_ARG;
    return mp_pw_track_accept(sha, t, &p, store_tag0, &price, NOW, next, &retry);
}

static int track_equal(const mp_pw_track *a, const mp_pw_track *b)
{
    uint8_t ea[MP_PW_TRACK_MAX], eb[MP_PW_TRACK_MAX];
    size_t na, nb;

    return mp_pw_track_encode(a, ea, sizeof ea, &na) == MP_OK
        && mp_pw_track_encode(b, eb, sizeof eb, &nb) == MP_OK
        && na == nb && memcmp(ea, eb, na) == 0;
}

static void test_pw(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    mp_pw_track fresh, other, got, next, next2;
    mps_earning e;
    uint8_t unknown[MP_HASH_LEN];
    raw r;
    MDB_val k, v;
    ledger_sum ls;

    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(mp_pw_track_init(&commit, &fresh));
    ASSERT_ST(mps_pw_get(s, commit.id, &got), MP_ERR_UNKNOWN_COMMITMENT);
    ASSERT_OK(mps_pw_register(s, &commit, &fresh, NOW + 86400 * 31));
    ASSERT_OK(mps_pw_get(s, commit.id, &got));
    CU_ASSERT(track_equal(&got, &fresh));

    /* registering again changes nothing, not even with another tracker */
    ASSERT_OK(pay(&fresh, 5, 5, &other));
    ASSERT_OK(mps_pw_register(s, &commit, &other, NOW + 1));
    ASSERT_OK(mps_pw_get(s, commit.id, &got));
    CU_ASSERT(track_equal(&got, &fresh) && got.version == 0);
    CU_ASSERT(stats(s).pw == 1 && stats(s).expiry_index == 1);
    ASSERT_ST(mps_pw_register(s, &commit2, &fresh, NOW), MP_ERR_ARG);   /* tracker of another */

    /* optimistic update: the right version wins, a stale one is BUSY */
    e = earning("/pw", MP_SCHEME_PAYWORD, NOW, &unit7);
    ASSERT_OK(pay(&got, 3, 3, &next));
    CU_ASSERT(next.version == 1);
    ASSERT_OK(mps_pw_update(s, 0, &next, &e));
    ASSERT_OK(pay(&got, 2, 2, &next2));                 /* decided on the old tracker */
    ASSERT_ST(mps_pw_update(s, 0, &next2, &e), MP_ERR_BUSY);
    ASSERT_OK(mps_pw_get(s, commit.id, &got));
    CU_ASSERT(track_equal(&got, &next) && got.version == 1 && got.last == 3);
    ASSERT_OK(pay(&got, 5, 2, &next2));
    ASSERT_OK(mps_pw_update(s, 1, &next2, &e));
    ASSERT_OK(mps_pw_get(s, commit.id, &got));
    CU_ASSERT(got.version == 2 && got.last == 5 && got.units_paid == 5);
    ASSERT_ST(mps_pw_update(s, 2, &next2, &e), MP_ERR_ARG);            /* version not moving */
    ls = ledger_total(s, "/pw");
    CU_ASSERT(ls.count == 2 && ls.units == 14);

    memset(unknown, 0x99, sizeof unknown);
    memcpy(next.commit_id, unknown, MP_HASH_LEN);
    ASSERT_ST(mps_pw_get(s, unknown, &got), MP_ERR_UNKNOWN_COMMITMENT);
    ASSERT_ST(mps_pw_update(s, 0, &next, NULL), MP_ERR_UNKNOWN_COMMITMENT);
    mps_close(s);

    /* the commitment record is kept, unchanged, behind the tracker */
    CU_ASSERT_FATAL(raw_open(&r, d, "pw"));
    k.mv_size = MP_HASH_LEN;
    k.mv_data = commit.id;
    CU_ASSERT(mdb_get(r.txn, r.dbi, &k, &v) == 0 && v.mv_size > commit.enc_len
              && memcmp((uint8_t *)v.mv_data + v.mv_size - commit.enc_len, commit.enc,
                        commit.enc_len) == 0);
    mdb_txn_abort(r.txn);
    mdb_env_close(r.env);
}

typedef struct {
    size_t n;
    uint8_t commit[2][MP_PW_COMMIT_MAX];
    size_t commit_len[2];
    uint32_t last[2], redeemed[2];
    uint8_t w_last[2][MP_HASH_LEN];
} pw_listing;

static int pw_list_cb(void *ctx, const uint8_t *c, size_t clen, uint32_t last,
                      const uint8_t w_last[MP_HASH_LEN], uint32_t redeemed)
{
    pw_listing *l = ctx;

    if (l->n < 2 && clen <= MP_PW_COMMIT_MAX) {
        memcpy(l->commit[l->n], c, clen);
        l->commit_len[l->n] = clen;
        l->last[l->n] = last;
        l->redeemed[l->n] = redeemed;
        memcpy(l->w_last[l->n], w_last, MP_HASH_LEN);
    }
    l->n++;
    return 0;
}

/* Lists the trackers into l; *i gets the entry of commitment c (1 when found). */
static int pw_find(mps *s, pw_listing *l, const mp_pw_commit *c, size_t *i)
{
    memset(l, 0, sizeof *l);
    ASSERT_OK(mps_pw_list(s, pw_list_cb, l));
    for (*i = 0; *i < l->n && *i < 2; (*i)++)
        if (l->commit_len[*i] == c->enc_len && memcmp(l->commit[*i], c->enc, c->enc_len) == 0)
            return 1;
    return 0;
}

static void test_pw_redeem(void)
{
    static pw_listing l;
    const char *d = new_store();
    mps *s = open_store(d, 0);
    mp_pw_track t, next;
    mps_earning e = earning("/pw", MP_SCHEME_PAYWORD, NOW, &unit7);
    uint8_t unknown[MP_HASH_LEN];
    size_t i, removed;

    CU_ASSERT_FATAL(s != NULL);
    CU_ASSERT(!pw_find(s, &l, &commit, &i) && l.n == 0);
    ASSERT_ST(mps_pw_list(s, NULL, &l), MP_ERR_ARG);
    ASSERT_OK(mp_pw_track_init(&commit, &t));
    ASSERT_OK(mps_pw_register(s, &commit, &t, NOW + 500));
    ASSERT_OK(mp_pw_track_init(&commit2, &t));
    ASSERT_OK(mps_pw_register(s, &commit2, &t, NOW + 600));

    /* fresh: l = 0, w_l = w0, nothing redeemed */
    CU_ASSERT_FATAL(pw_find(s, &l, &commit, &i) && l.n == 2);
    CU_ASSERT(l.last[i] == 0 && l.redeemed[i] == 0 && memcmp(l.w_last[i], words[0], MP_HASH_LEN) == 0);
    ASSERT_ST(mps_pw_mark_redeemed(s, commit.id, 1), MP_ERR_ARG);     /* above l */
    ASSERT_OK(mps_pw_mark_redeemed(s, commit.id, 0));

    /* payments up to 5 (a gap below 3), then the marks only grow */
    ASSERT_OK(mps_pw_get(s, commit.id, &t));
    ASSERT_OK(pay(&t, 5, 2, &next));
    ASSERT_OK(mps_pw_update(s, t.version, &next, &e));
    CU_ASSERT_FATAL(pw_find(s, &l, &commit, &i));
    CU_ASSERT(l.last[i] == 5 && l.redeemed[i] == 0 && memcmp(l.w_last[i], words[5], MP_HASH_LEN) == 0);
    ASSERT_OK(mps_pw_mark_redeemed(s, commit.id, 4));
    ASSERT_OK(mps_pw_mark_redeemed(s, commit.id, 2));
    ASSERT_ST(mps_pw_mark_redeemed(s, commit.id, 6), MP_ERR_ARG);
    CU_ASSERT_FATAL(pw_find(s, &l, &commit, &i));
    CU_ASSERT(l.redeemed[i] == 4);
    CU_ASSERT(pw_find(s, &l, &commit2, &i) && l.redeemed[i] == 0 && l.last[i] == 0);

    /* later payments keep the mark, and the tracker moves on */
    ASSERT_OK(mps_pw_get(s, commit.id, &t));
    ASSERT_OK(pay(&t, 3, 1, &next));                   /* into the gap */
    ASSERT_OK(mps_pw_update(s, t.version, &next, &e));
    ASSERT_OK(mps_pw_get(s, commit.id, &t));
    ASSERT_OK(pay(&t, 9, 4, &next));
    ASSERT_OK(mps_pw_update(s, t.version, &next, &e));
    CU_ASSERT_FATAL(pw_find(s, &l, &commit, &i));
    CU_ASSERT(l.last[i] == 9 && l.redeemed[i] == 4 && memcmp(l.w_last[i], words[9], MP_HASH_LEN) == 0);
    ASSERT_OK(mps_pw_mark_redeemed(s, commit.id, 9));
    mps_close(s);

    s = open_store(d, MPS_RDONLY);
    CU_ASSERT_FATAL(s != NULL);
    CU_ASSERT(pw_find(s, &l, &commit, &i) && l.redeemed[i] == 9);
    ASSERT_ST(mps_pw_mark_redeemed(s, commit.id, 9), MP_ERR_STORE);   /* read-only */
    mps_close(s);

    s = open_store(d, 0);
    CU_ASSERT_FATAL(s != NULL);
    memset(unknown, 0x42, sizeof unknown);
    ASSERT_ST(mps_pw_mark_redeemed(s, unknown, 1), MP_ERR_UNKNOWN_COMMITMENT);
    ASSERT_ST(mps_pw_mark_redeemed(s, NULL, 1), MP_ERR_ARG);
    /* compaction still keeps trackers until keep_until */
    ASSERT_OK(mps_compact(s, NOW + 500, 100, &removed));
    CU_ASSERT(removed == 1);
    ASSERT_ST(mps_pw_mark_redeemed(s, commit.id, 9), MP_ERR_UNKNOWN_COMMITMENT);
    CU_ASSERT(pw_find(s, &l, &commit2, &i) && l.n == 1);
    mps_close(s);
}

static void test_pw_corrupt(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    mp_pw_track fresh, got, next;
    uint8_t buf[16000];
    size_t n, tlen;
    raw r;
    MDB_val k, v;
    int variant;

    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(mp_pw_track_init(&commit, &fresh));
    ASSERT_OK(mps_pw_register(s, &commit, &fresh, NOW + 86400));
    ASSERT_OK(pay(&fresh, 1, 1, &next));
    mps_close(s);
    for (variant = 0; variant < 4; variant++) {
        CU_ASSERT_FATAL(raw_open(&r, d, "pw"));
        k.mv_size = MP_HASH_LEN;
        k.mv_data = commit.id;
        CU_ASSERT_FATAL(mdb_get(r.txn, r.dbi, &k, &v) == 0 && v.mv_size <= sizeof buf);
        n = v.mv_size;
        memcpy(buf, v.mv_data, n);
        tlen = (size_t)buf[12] << 8 | buf[13];
        switch (variant) {
        case 0: buf[14 + 1] ^= 0xff; break;                     /* record type */
        case 1: buf[14 + tlen - 1] ^= 0x01; break;              /* last tracker byte */
        case 2: buf[12] = 0xff; break;                          /* length past the end */
        default: n = 5; break;                                  /* cut short */
        }
        v.mv_size = n;
        v.mv_data = buf;
        CU_ASSERT(mdb_put(r.txn, r.dbi, &k, &v, 0) == 0);
        CU_ASSERT_FATAL(raw_close(&r));

        s = open_store(d, 0);
        CU_ASSERT_FATAL(s != NULL);
        if (variant == 1) {
            /* a last byte flip may still decode; it must then not be accepted as is */
            mp_status st = mps_pw_get(s, commit.id, &got);
            CU_ASSERT(st == MP_ERR_STORE || (st == MP_OK && !track_equal(&got, &fresh)));
        } else {
            ASSERT_ST(mps_pw_get(s, commit.id, &got), MP_ERR_STORE);
            CU_ASSERT(strstr(mps_errmsg(s), "corrupt tracker") != NULL);
            ASSERT_ST(mps_pw_update(s, 0, &next, NULL), MP_ERR_STORE);
        }
        mps_close(s);

        /* put the good record back for the next variant */
        CU_ASSERT_FATAL(raw_open(&r, d, "pw"));
        CU_ASSERT(mdb_del(r.txn, r.dbi, &k, NULL) == 0);
        CU_ASSERT_FATAL(raw_close(&r));
        s = open_store(d, 0);
        CU_ASSERT_FATAL(s != NULL);
        ASSERT_OK(mps_pw_register(s, &commit, &fresh, NOW + 86400));
        mps_close(s);
    }
}

/* ---- prices -------------------------------------------------------------------- */

typedef struct {
    char paths[16][64];
    uint64_t units[16];
    size_t n;
} price_list;

static int list_cb(void *ctx, const char *path, const mp_amount *a)
{
    price_list *pl = ctx;

    if (pl->n < 16) {
        snprintf(pl->paths[pl->n], sizeof pl->paths[0], "%s", path);
        pl->units[pl->n] = a->units;
        pl->n++;
    }
    return 0;
}

static uint64_t price_of(mps *s, const char *vendor, const char *path)
{
    mp_amount a;
    int found = -1;

    a.units = 0;
    ASSERT_OK(mps_price_get(s, vendor, path, strlen(path), &a, &found));
    return found == 1 ? a.units : found == 0 ? 0 : 999999;
}

static void test_prices(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    mp_amount a;
    price_list pl;
    int found;
    char vlong[MP_NAME_MAX + 1], plong[MP_TARGET_MAX + 2];
    static const struct { const char *path; uint64_t units; } set[] = {
        { "/", 1 }, { "/a/", 2 }, { "/a/b/", 3 }, { "/a/b.html", 5 }, { "/a", 7 },
    };
    size_t i;

    CU_ASSERT_FATAL(s != NULL);
    for (i = 0; i < sizeof set / sizeof set[0]; i++) {
        ASSERT_OK(mp_amount_set(&a, set[i].units, "USD"));
        ASSERT_OK(mps_price_set(s, VENDOR, set[i].path, &a));
    }
    CU_ASSERT(price_of(s, VENDOR, "/a/b.html") == 5);      /* exact */
    CU_ASSERT(price_of(s, VENDOR, "/a/c.html") == 2);      /* prefix */
    CU_ASSERT(price_of(s, VENDOR, "/a/b/c/d.html") == 3);  /* longest prefix */
    CU_ASSERT(price_of(s, VENDOR, "/a/b/") == 3);
    CU_ASSERT(price_of(s, VENDOR, "/a/b") == 2);           /* "/a/b/" is not a prefix */
    CU_ASSERT(price_of(s, VENDOR, "/a") == 7);
    CU_ASSERT(price_of(s, VENDOR, "/ab") == 1);            /* "/a" only matches exactly */
    CU_ASSERT(price_of(s, VENDOR, "/x/y") == 1);
    CU_ASSERT(price_of(s, "other.example", "/a/b.html") == 0);

    /* longer than an LMDB key: found through a stored prefix */
    memset(plong, 'p', sizeof plong);
    plong[0] = '/';
    plong[1000] = '/';
    plong[MP_TARGET_MAX] = 0;
    CU_ASSERT(price_of(s, VENDOR, plong) == 1);
    ASSERT_ST(mps_price_set(s, VENDOR, plong, &a), MP_ERR_ARG);
    plong[MP_TARGET_MAX] = 'p';
    plong[MP_TARGET_MAX + 1] = 0;
    ASSERT_ST(mps_price_get(s, VENDOR, plong, strlen(plong), &a, &found), MP_ERR_ARG);
    memset(vlong, 'v', MP_NAME_MAX);
    vlong[MP_NAME_MAX] = 0;
    plong[511 - MP_NAME_MAX - 1] = 0;                     /* exactly the key limit */
    ASSERT_OK(mps_price_set(s, vlong, plong, &a));
    CU_ASSERT(price_of(s, vlong, plong) == 7);
    plong[511 - MP_NAME_MAX - 1] = 'p';
    plong[511 - MP_NAME_MAX] = 0;
    ASSERT_ST(mps_price_set(s, vlong, plong, &a), MP_ERR_ARG);
    ASSERT_ST(mps_price_del(s, vlong, plong), MP_ERR_ARG);
    plong[511 - MP_NAME_MAX - 1] = 0;
    ASSERT_OK(mps_price_del(s, vlong, plong));
    ASSERT_ST(mps_price_del(s, vlong, plong), MP_ERR_ARG);
    ASSERT_ST(mps_price_del(s, vlong, "/"), MP_ERR_ARG);

    ASSERT_ST(mps_price_set(s, VENDOR, "a/b", &a), MP_ERR_ARG);
    ASSERT_ST(mps_price_set(s, VENDOR, "/a b", &a), MP_ERR_ARG);
    ASSERT_ST(mps_price_set(s, VENDOR, "/\x80", &a), MP_ERR_ARG);
    ASSERT_ST(mps_price_set(s, VENDOR, "", &a), MP_ERR_ARG);
    ASSERT_ST(mps_price_get(s, VENDOR, "/a\tb", 4, &a, &found), MP_ERR_ARG);
    a.cur[0] = 'u';
    ASSERT_ST(mps_price_set(s, VENDOR, "/z", &a), MP_ERR_ARG);

    /* overwrite, delete, list */
    ASSERT_OK(mp_amount_set(&a, 9, "EUR"));
    ASSERT_OK(mps_price_set(s, VENDOR, "/a/", &a));
    ASSERT_OK(mps_price_get(s, VENDOR, "/a/q", 4, &a, &found));
    CU_ASSERT(found == 1 && a.units == 9 && strcmp(a.cur, "EUR") == 0);
    ASSERT_OK(mps_price_del(s, VENDOR, "/a/"));
    CU_ASSERT(price_of(s, VENDOR, "/a/c.html") == 1);
    ASSERT_ST(mps_price_del(s, VENDOR, "/a/"), MP_ERR_ARG);
    ASSERT_OK(mp_amount_set(&a, 4, "USD"));
    ASSERT_OK(mps_price_set(s, "news.exampl", "/other", &a));  /* a vendor name's prefix */
    memset(&pl, 0, sizeof pl);
    ASSERT_OK(mps_price_list(s, VENDOR, list_cb, &pl));
    CU_ASSERT(pl.n == 4);
    CU_ASSERT(pl.n == 4 && strcmp(pl.paths[0], "/") == 0 && strcmp(pl.paths[1], "/a") == 0
              && strcmp(pl.paths[2], "/a/b.html") == 0 && strcmp(pl.paths[3], "/a/b/") == 0
              && pl.units[2] == 5);
    memset(&pl, 0, sizeof pl);
    ASSERT_OK(mps_price_list(s, "news.exampl", list_cb, &pl));
    CU_ASSERT(pl.n == 1 && strcmp(pl.paths[0], "/other") == 0);
    memset(&pl, 0, sizeof pl);
    ASSERT_OK(mps_price_list(s, "nobody", list_cb, &pl));
    CU_ASSERT(pl.n == 0);
    CU_ASSERT(stats(s).prices == 5);
    mps_close(s);
}

/* ---- compaction and persistence ------------------------------------------------------ */

static void test_compact(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    mp_pw_track t1, t2, got;
    mps_stats z;
    size_t removed = 999;
    uint64_t id;
    int retry;

    CU_ASSERT_FATAL(s != NULL);
    for (id = 1; id <= 10; id++)
        ASSERT_OK(spend(s, VENDOR, id, 1, NOW + 10, NULL, NULL));
    for (id = 11; id <= 20; id++)
        ASSERT_OK(spend(s, VENDOR, id, 1, NOW + 1000, NULL, NULL));
    ASSERT_OK(mp_pw_track_init(&commit, &t1));
    ASSERT_OK(mp_pw_track_init(&commit2, &t2));
    ASSERT_OK(mps_pw_register(s, &commit, &t1, NOW + 100));
    ASSERT_OK(mps_pw_register(s, &commit2, &t2, NOW + 5000));
    z = stats(s);
    CU_ASSERT(z.spent == 20 && z.pw == 2 && z.expiry_index == 22);

    ASSERT_OK(mps_compact(s, NOW + 9, 100, &removed));
    CU_ASSERT(removed == 0);
    ASSERT_OK(mps_compact(s, NOW + 10, 100, &removed));   /* due at its expiry */
    CU_ASSERT(removed == 10);
    z = stats(s);
    CU_ASSERT(z.spent == 10 && z.pw == 2 && z.expiry_index == 12);
    ASSERT_ST(spend(s, VENDOR, 11, 2, NOW + 1000, NULL, NULL), MP_ERR_SPENT);
    ASSERT_OK(mps_compact(s, NOW + 100, 0, &removed));
    CU_ASSERT(removed == 0);
    ASSERT_OK(mps_compact(s, NOW + 100, 100, &removed));
    CU_ASSERT(removed == 1);
    ASSERT_ST(mps_pw_get(s, commit.id, &got), MP_ERR_UNKNOWN_COMMITMENT);
    ASSERT_OK(mps_pw_get(s, commit2.id, &got));
    ASSERT_OK(mps_compact(s, NOW + 1000, 3, &removed));
    CU_ASSERT(removed == 3);
    z = stats(s);
    CU_ASSERT(z.spent == 7 && z.pw == 1 && z.expiry_index == 8);

    /* maybe_compact: due at first, then not within the interval */
    ASSERT_OK(mps_maybe_compact(s, NOW + 1000, 3600, &removed));
    CU_ASSERT(removed == 7);
    ASSERT_OK(spend(s, VENDOR, 100, 1, NOW + 1100, NULL, NULL));
    ASSERT_OK(mps_maybe_compact(s, NOW + 2000, 3600, &removed));
    CU_ASSERT(removed == 0);
    CU_ASSERT(stats(s).spent == 1);
    ASSERT_OK(mps_maybe_compact(s, NOW + 1000 + 3600, 3600, &removed));
    CU_ASSERT(removed == 1);
    z = stats(s);
    CU_ASSERT(z.spent == 0 && z.pw == 1 && z.expiry_index == 1);

    /* a record spent again after compaction is kept until its own time */
    ASSERT_OK(spend(s, VENDOR, 5, 3, NOW + 9000, NULL, &retry));
    CU_ASSERT(retry == 0);
    ASSERT_OK(mps_compact(s, NOW + 8999, 100, &removed));
    CU_ASSERT(removed == 1);                              /* commit2 at NOW + 5000 */
    ASSERT_ST(spend(s, VENDOR, 5, 4, NOW + 9000, NULL, NULL), MP_ERR_SPENT);
    mps_close(s);
}

static void test_persistence(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    mp_pw_track t, got, next;
    mps_earning e = earning("/p", MP_SCHEME_MILLICENT, NOW, &unit7);
    mp_amount a;
    uint64_t first;
    size_t removed = 1;
    int retry, found;

    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(spend(s, VENDOR, 77, 1, NOW + 50, &e, NULL));
    ASSERT_OK(mp_pw_track_init(&commit, &t));
    ASSERT_OK(mps_pw_register(s, &commit, &t, NOW + 500));
    ASSERT_OK(pay(&t, 4, 4, &next));
    ASSERT_OK(mps_pw_update(s, 0, &next, &e));
    ASSERT_OK(mp_amount_set(&a, 123, "USD"));
    ASSERT_OK(mps_price_set(s, VENDOR, "/p/", &a));
    ASSERT_OK(mps_reserve_ids(s, VENDOR, 1, 100, &first));
    ASSERT_OK(mps_maybe_compact(s, NOW, 60, &removed));
    CU_ASSERT(removed == 0);
    mps_close(s);

    for (int ro = 0; ro < 2; ro++) {
        s = open_store(d, ro ? MPS_RDONLY : 0);
        CU_ASSERT_FATAL(s != NULL);
        ASSERT_OK(mps_pw_get(s, commit.id, &got));
        CU_ASSERT(track_equal(&got, &next));
        ASSERT_OK(mps_price_get(s, VENDOR, "/p/q", 4, &a, &found));
        CU_ASSERT(found == 1 && a.units == 123);
        CU_ASSERT(ledger_total(s, "/p").count == 2 && ledger_total(s, "/p").units == 14);
        CU_ASSERT(stats(s).spent == 1 && stats(s).expiry_index == 2);
        if (!ro) {
            ASSERT_ST(spend(s, VENDOR, 77, 2, NOW + 50, &e, NULL), MP_ERR_SPENT);
            ASSERT_OK(spend(s, VENDOR, 77, 1, NOW + 50, &e, &retry));
            CU_ASSERT(retry == 1);
            ASSERT_OK(mps_reserve_ids(s, VENDOR, 1, 1, &first));
            CU_ASSERT(first == (((uint64_t)1 << 48) | 101));
        }
        mps_close(s);
    }
}

/* ---- several threads on one handle ------------------------------------------------- */

#define THREADS 4
#define THREAD_IDS 300

typedef struct {
    mps *s;
    int n;
    int fresh, retries, spent, errors;
} thread_arg;

static void *thread_main(void *p)
{
    thread_arg *ta = p;
    mps_earning e = earning("/t", MP_SCHEME_MILLICENT, NOW, &unit7);
    uint64_t id;
    int retry;
    mp_status st;

    for (id = 1; id <= THREAD_IDS; id++) {
        st = spend(ta->s, VENDOR, id, id % 2 ? 1 : 100 + (unsigned)ta->n, NOW, &e, &retry);
        if (st == MP_OK && retry == 0)
            ta->fresh++;
        else if (st == MP_OK)
            ta->retries++;
        else if (st == MP_ERR_SPENT)
            ta->spent++;
        else
            ta->errors++;
    }
    return NULL;
}

static void test_threads(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    pthread_t th[THREADS];
    thread_arg ta[THREADS];
    int i, fresh = 0, retries = 0, spent = 0, errors = 0;
    ledger_sum ls;

    CU_ASSERT_FATAL(s != NULL);
    for (i = 0; i < THREADS; i++) {
        memset(&ta[i], 0, sizeof ta[i]);
        ta[i].s = s;
        ta[i].n = i;
        CU_ASSERT_FATAL(pthread_create(&th[i], NULL, thread_main, &ta[i]) == 0);
    }
    for (i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        fresh += ta[i].fresh;
        retries += ta[i].retries;
        spent += ta[i].spent;
        errors += ta[i].errors;
    }
    CU_ASSERT(fresh == THREAD_IDS && errors == 0);
    CU_ASSERT(retries == (THREADS - 1) * THREAD_IDS / 2 && spent == (THREADS - 1) * THREAD_IDS / 2);
    ls = ledger_total(s, "/t");
    CU_ASSERT(ls.count == THREAD_IDS && ls.units == 7 * THREAD_IDS);
    mps_close(s);
}

/* ---- several processes ------------------------------------------------------------ */

#define CHILDREN 8
#define CONC_IDS 200

enum { R_FRESH, R_RETRY, R_SPENT, R_ERROR };

typedef struct { uint32_t id; int32_t code; } conc_result;

/* Child k: spends all ids, in its own rotation of the order; ids below
 * half use one req_sig for everybody (retries), the rest one per child. */
static void conc_child(const char *d, int k, int go_fd, int res_fd)
{
    conc_result res[CONC_IDS];
    mps_earning e = earning("/conc", MP_SCHEME_MILLICENT, NOW, &unit7);
    char c, err[256];
    mps *s = NULL;
    int j, retry;
    uint32_t id;
    mp_status st;

    if (read(go_fd, &c, 1) < 0 || mps_open(d, 0, 0, &s, err, sizeof err) != MP_OK)
        _exit(10);
    for (j = 0; j < CONC_IDS; j++) {
        id = (uint32_t)(k % 2 ? (j + k * 25) % CONC_IDS : CONC_IDS - 1 - (j + k * 25) % CONC_IDS);
        st = spend(s, VENDOR, id + 1, id < CONC_IDS / 2 ? 1 : 1000 + (unsigned)k, NOW, &e, &retry);
        res[j].id = id;
        res[j].code = st == MP_OK ? (retry ? R_RETRY : R_FRESH) : st == MP_ERR_SPENT ? R_SPENT : R_ERROR;
    }
    mps_close(s);
    _exit(write(res_fd, res, sizeof res) == (ssize_t)sizeof res ? 0 : 11);
}

static void test_processes(void)
{
    const char *d = new_store();
    int go[2], res[CHILDREN][2], k, j, status, ok_exit = 0;
    pid_t pid[CHILDREN];
    conc_result r[CONC_IDS];
    int fresh[CONC_IDS] = { 0 }, retry[CONC_IDS] = { 0 }, spent[CONC_IDS] = { 0 }, errors = 0;
    int good = 1;
    size_t got;
    ssize_t n;
    mps *s;
    ledger_sum ls;

    CU_ASSERT_FATAL(d != NULL && pipe(go) == 0);
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
        for (got = 0; got < sizeof r; got += (size_t)n)
            if ((n = read(res[k][0], (char *)r + got, sizeof r - got)) <= 0)
                break;
        close(res[k][0]);
        if (waitpid(pid[k], &status, 0) == pid[k] && WIFEXITED(status) && WEXITSTATUS(status) == 0)
            ok_exit++;
        if (got != sizeof r)
            continue;
        for (j = 0; j < CONC_IDS; j++) {
            if (r[j].id >= CONC_IDS) {
                errors++;
                continue;
            }
            switch (r[j].code) {
            case R_FRESH: fresh[r[j].id]++; break;
            case R_RETRY: retry[r[j].id]++; break;
            case R_SPENT: spent[r[j].id]++; break;
            default: errors++; break;
            }
        }
    }
    CU_ASSERT(ok_exit == CHILDREN);
    CU_ASSERT(errors == 0);
    for (j = 0; j < CONC_IDS; j++) {
        if (fresh[j] != 1)
            good = 0;
        if (j < CONC_IDS / 2 && (retry[j] != CHILDREN - 1 || spent[j] != 0))
            good = 0;
        if (j >= CONC_IDS / 2 && (spent[j] != CHILDREN - 1 || retry[j] != 0))
            good = 0;
    }
    CU_ASSERT(good);
    s = open_store(d, 0);
    CU_ASSERT_FATAL(s != NULL);
    ls = ledger_total(s, "/conc");
    CU_ASSERT(ls.lines == 1 && ls.count == CONC_IDS && ls.units == 7 * CONC_IDS);
    CU_ASSERT(stats(s).spent == CONC_IDS);
    mps_close(s);
}

/* ---- a writer killed in the middle ------------------------------------------------- */

#define CRASH_ROUNDS 6
#define MAX_ACKS 400000

static uint64_t acks[MAX_ACKS];

/* Spends ids from base + 1 on, acknowledging each on fd once the store
 * said MP_OK, until it is killed. */
static void crash_child(const char *d, uint64_t base, int fd)
{
    mps_earning e = earning("/crash", MP_SCHEME_MILLICENT, NOW, &unit7);
    char err[256];
    mps *s = NULL;
    uint64_t id;
    int retry;

    if (mps_open(d, 0, 0, &s, err, sizeof err) != MP_OK)
        _exit(10);
    for (id = base + 1;; id++) {
        if (spend(s, VENDOR, id, 1, NOW + 1000, &e, &retry) != MP_OK || retry)
            _exit(11);
        if (write(fd, &id, sizeof id) != (ssize_t)sizeof id)
            _exit(12);
    }
}

static void test_crash(void)
{
    const char *d = new_store();
    int p[2], status, round, killed = 0, fresh_ok = 0;
    size_t nacks = 0, i, missing = 0, have;
    uint8_t buf[8 * 512];
    size_t fill = 0;
    ssize_t n;
    double deadline;
    struct pollfd pfd;
    pid_t pid;
    mps *s;
    int retry;

    CU_ASSERT_FATAL(d != NULL);
    for (round = 0; round < CRASH_ROUNDS; round++) {
        CU_ASSERT_FATAL(pipe(p) == 0);
        fflush(NULL);
        pid = fork();
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            crash_child(d, (uint64_t)(round + 1) << 32, p[1]);
        }
        close(p[1]);
        /* read acknowledgements while the child runs, so it never waits on
         * a full pipe, then kill it wherever it is */
        deadline = su_now_ms() + 50 + 25 * round;
        for (;;) {
            double left = deadline - su_now_ms();
            if (left <= 0)
                break;
            pfd.fd = p[0];
            pfd.events = POLLIN;
            if (poll(&pfd, 1, (int)left + 1) <= 0)
                continue;
            if ((n = read(p[0], buf + fill, sizeof buf - fill)) <= 0)
                break;
            fill += (size_t)n;
            for (have = 0; have + 8 <= fill && nacks < MAX_ACKS; have += 8)
                memcpy(&acks[nacks++], buf + have, 8);
            memmove(buf, buf + have, fill - have);
            fill -= have;
        }
        kill(pid, SIGKILL);
        if (waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
            killed++;
        while ((n = read(p[0], buf + fill, sizeof buf - fill)) > 0) {
            fill += (size_t)n;
            for (have = 0; have + 8 <= fill && nacks < MAX_ACKS; have += 8)
                memcpy(&acks[nacks++], buf + have, 8);
            memmove(buf, buf + have, fill - have);
            fill -= have;
        }
        close(p[0]);
        fill = 0;

        /* the store opens, and takes writes after the dead writer */
        s = open_store(d, 0);
        CU_ASSERT_FATAL(s != NULL);
        if (spend(s, VENDOR, 1000 + (uint64_t)round, 1, NOW, NULL, &retry) == MP_OK && retry == 0)
            fresh_ok++;
        mps_close(s);
    }
    CU_ASSERT(killed == CRASH_ROUNDS);
    CU_ASSERT(fresh_ok == CRASH_ROUNDS);
    CU_ASSERT(nacks > 0);

    s = open_store(d, 0);
    CU_ASSERT_FATAL(s != NULL);
    for (i = 0; i < nacks; i++)
        if (spend(s, VENDOR, acks[i], 2, NOW + 1000, NULL, NULL) != MP_ERR_SPENT)
            missing++;
    CU_ASSERT(missing == 0);
    if (nacks > 0) {
        ASSERT_OK(spend(s, VENDOR, acks[nacks - 1], 1, NOW + 1000, NULL, &retry));
        CU_ASSERT(retry == 1);
    }
    CU_ASSERT(stats(s).spent >= nacks + CRASH_ROUNDS);
    CU_ASSERT(stats(s).expiry_index == stats(s).spent);
    CU_ASSERT(ledger_total(s, "/crash").count == stats(s).spent - CRASH_ROUNDS);
    if (verbose)
        printf("\n  %zu acknowledged spends over %d kills, all present\n", nacks, CRASH_ROUNDS);
    mps_close(s);
}

/* ---- main ------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const struct { const char *name; void (*fn)(void); } tests[] = {
        { "create, open, close", test_create_open_close },
        { "open a missing store", test_open_missing },
        { "open garbage", test_open_garbage },
        { "open a truncated store", test_open_truncated },
        { "open a foreign or other-version store", test_open_foreign },
        { "map size", test_map_size },
        { "spend, retry, spent", test_spend },
        { "deposits: list, mark, compact", test_deposits },
        { "corrupt spent records", test_spent_corrupt },
        { "ledger", test_ledger },
        { "change ids", test_ids },
        { "PayWord trackers", test_pw },
        { "PayWord redemption marks", test_pw_redeem },
        { "corrupt PayWord trackers", test_pw_corrupt },
        { "prices", test_prices },
        { "compaction", test_compact },
        { "persistence", test_persistence },
        { "threads on one handle", test_threads },
        { "processes spending the same scrip", test_processes },
        { "writer killed with SIGKILL", test_crash },
    };
    CU_pSuite suite;
    unsigned failures;
    size_t i;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    suite = CU_add_suite("store", suite_init, suite_clean);
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
