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
#include "mod_micropay_lmdb.h"
#include "mod_micropay_store.h"
#include "store_util.h"

/* Any fixed request tag: these tests are about storage, not retries. */
static const uint8_t store_tag0[MP_PW_TAG_LEN] = { 0x7a };

#define NOW    1800000000ULL
/* Retries judged at NOW, window 60, the empty body's digest (any 32 bytes
 * serve: the store compares them). */
static const uint8_t body0[MP_HASH_LEN] = { 0xe3, 0xb0 };
static const mps_retry RT = { NOW, 60, body0 };
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

/* The checksum a format-3 record of table carries after its value:
 * CRC-32C of the table's name, a NUL, the key's length (u16), the key and
 * the value (mod_micropay_store.c). */
static uint32_t record_crc(const char *table, const void *k, size_t kn, const void *v,
                           size_t vn)
{
    uint8_t l[2] = { (uint8_t)(kn >> 8), (uint8_t)kn };
    uint32_t c = mpl_crc32c(0, table, strlen(table) + 1);

    c = mpl_crc32c(c, l, 2);
    c = mpl_crc32c(c, k, kn);
    return mpl_crc32c(c, v, vn);
}

/* Writes v with its checksum, as the store would: a record that is wrong
 * inside but whole, so that the store's own checks of it are reached. */
static int raw_put_sealed(raw *r, const char *table, const void *k, size_t kn, const void *v,
                          size_t vn)
{
    static uint8_t buf[32768];
    uint32_t c = record_crc(table, k, kn, v, vn);

    if (vn + 4 > sizeof buf)
        return 0;
    memcpy(buf, v, vn);
    buf[vn] = (uint8_t)(c >> 24);
    buf[vn + 1] = (uint8_t)(c >> 16);
    buf[vn + 2] = (uint8_t)(c >> 8);
    buf[vn + 3] = (uint8_t)c;
    return raw_put(r, k, kn, buf, vn + 4);
}

/* ---- fixtures ----------------------------------------------------------------- */

/* mps_verify finds nothing in d, reading all of it (below). */
static void assert_clean(const char *d);

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

/* The store's clock (mps_test_clock): before every expiry the tests use,
 * unless a test moves it. */
static uint64_t fake_now = NOW - 100;

static int suite_init(void)
{
    int i;

    mps_test_clock(&fake_now);
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

    memset(&q, 0, sizeof q);
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
    char reply[32], pay[32];
    size_t out_len = 0;
    int r = -1;
    mp_status st;

    /* Another salt is another payment record (another req_sig in it). */
    sig_for(sig, id, salt);
    snprintf(reply, sizeof reply, "reply-%llu", (unsigned long long)id);
    snprintf(pay, sizeof pay, "payment-%u", salt);
    st = mps_mc_spend(s, vendor, id, expiry, expiry, sig, (const uint8_t *)pay, strlen(pay), &q,
                      (const uint8_t *)reply, strlen(reply), e, &RT, &r, out, &out_len);
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
    CU_ASSERT(raw_put(&r, "format", 6, "mod_micropay-store-4", 20));
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
                          &RT, &retry, out, &out_len);
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
        "mod_micropay-store-1", "mod_micropay-store-5", "mod_micropay-store-", ""
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
    /* format 3 (no retry records), format 2 (records without checksums)
     * and a stopped upgrade: refused with the command that converts them */
    for (i = 0; i < 3; i++) {
        static const char *const old[3] = {
            "mod_micropay-store-2", "mod_micropay-store-2-3", "mod_micropay-store-3"
        };

        CU_ASSERT_FATAL(raw_open(&r, st, "meta"));
        CU_ASSERT(raw_put(&r, "format", 6, old[i], strlen(old[i])));
        CU_ASSERT_FATAL(raw_close(&r));
        err[0] = 0;
        ASSERT_ST(mps_open(st, MPS_RDONLY, 0, &s, err, sizeof err), MP_ERR_STORE);
        CU_ASSERT(strstr(err, "older format") != NULL
                  && strstr(err, "mpadmin store upgrade") != NULL && strstr(err, st) != NULL);
    }
    CU_ASSERT_FATAL(raw_open(&r, st, "meta"));
    CU_ASSERT(raw_put(&r, "format", 6, "mod_micropay-store-4", 20));
    CU_ASSERT_FATAL(raw_close(&r));
    s = open_store(st, 0);
    CU_ASSERT(s != NULL);
    mps_close(s);
}

/* ---- Millicent ----------------------------------------------------------------- */

/* mps_mc_spend with the common arguments of test_spend. */
#define SPEND(s_, v_, id_, sig_, reply_, rlen_, e_) \
    mps_mc_spend(s_, v_, id_, NOW, NOW, sig_, pay0, sizeof pay0 - 1, &q, reply_, rlen_, e_, \
                 &RT, &retry, out, &out_len)

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
        { "GET", 3, NULL, 1, "/", 1, NULL }, { NULL, 0, "h", 1, "/", 1, NULL },
        { "GET", 3, "h", 1, NULL, 1, NULL },
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
    ASSERT_ST(mps_mc_spend(s, VENDOR, 46, NOW, NOW, sig, NULL, 0, &q, NULL, 0, NULL, &RT, &retry,
                           out, &out_len), MP_ERR_ARG);
    ASSERT_ST(mps_mc_spend(s, VENDOR, 46, NOW, NOW, sig, pay0, 0, &q, NULL, 0, NULL, &RT, &retry,
                           out, &out_len), MP_ERR_ARG);
    ASSERT_ST(mps_mc_spend(s, VENDOR, 46, NOW, NOW, sig, big, MP_WIRE_MAX + 1, &q, NULL, 0, NULL,
                           &RT, &retry, out, &out_len), MP_ERR_ARG);
    ASSERT_ST(mps_mc_spend(s, VENDOR, 46, NOW, NOW, sig, pay0, 1, NULL, NULL, 0, NULL, &RT, &retry,
                           out, &out_len), MP_ERR_ARG);
    for (i = 0; i < sizeof bad_reqs / sizeof bad_reqs[0]; i++) {
        q = bad_reqs[i];
        ASSERT_ST(mps_mc_spend(s, VENDOR, 46, NOW, NOW, sig, pay0, 1, &q, NULL, 0, NULL, &RT, &retry,
                               out, &out_len), MP_ERR_ARG);
    }
    memset(ltarget, 'x', sizeof ltarget);
    ltarget[0] = '/';
    q = req_of("GET", "h", "/");
    q.target = ltarget;
    q.target_len = MP_TARGET_MAX + 1;
    ASSERT_ST(mps_mc_spend(s, VENDOR, 46, NOW, NOW, sig, pay0, 1, &q, NULL, 0, NULL, &RT, &retry,
                           out, &out_len), MP_ERR_ARG);
    /* the largest record of all: every field at its limit */
    q.target_len = MP_TARGET_MAX;
    memset(lhost, 'h', sizeof lhost);
    q.host = lhost;
    q.host_len = MP_HOST_MAX;
    q.method = "ABCDEFGHIJKLMNOP";
    q.method_len = MP_METHOD_MAX;
    ASSERT_OK(mps_mc_spend(s, VENDOR, 46, NOW, NOW, sig, big, MP_WIRE_MAX, &q, big, MP_WIRE_MAX,
                           NULL, &RT, &retry, out, &out_len));
    CU_ASSERT(retry == 0);
    ASSERT_OK(mps_mc_spend(s, VENDOR, 46, NOW, NOW, sig, big, MP_WIRE_MAX, &q, big, MP_WIRE_MAX,
                           NULL, &RT, &retry, out, &out_len));
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
                      (const uint8_t *)"r", 1, NULL, &RT, &r, out, &out_len);
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
                           &RT, &retry, out, &out_len), MP_ERR_SPENT);
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

    /* compaction: deposited spends go at expiry + MPS_MARGIN, undeposited
     * ones at keep_until (at least that) */
    s = open_store(d, 0);
    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(mps_compact(s, NOW + 10 + MPS_MARGIN - 1, 100, &removed));
    CU_ASSERT(removed == 0);
    ASSERT_OK(mps_compact(s, NOW + 10 + MPS_MARGIN, 100, &removed));
    CU_ASSERT(removed == 2);                                /* ids 1 and 3 */
    ASSERT_OK(mps_compact(s, NOW + 20 + MPS_MARGIN, 100, &removed));
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
    assert_clean(d);
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
    /* Each damage is sealed with a good checksum, so that the record's own
     * checks are what refuses it; the last variant is a flipped bit, which
     * its checksum catches. */
    for (variant = 0; variant < 6; variant++) {
        CU_ASSERT_FATAL(raw_open(&r, d, "spent"));
        k.mv_size = sizeof key;
        k.mv_data = key;
        CU_ASSERT_FATAL(mdb_get(r.txn, r.dbi, &k, &v) == 0 && v.mv_size <= sizeof buf);
        n = v.mv_size - 4;
        memcpy(buf, v.mv_data, n);
        switch (variant) {
        case 0: buf[16] = 4; break;                  /* unknown flag */
        case 1: n--; break;                          /* body digest cut short */
        case 2: buf[n - 41] = ' '; break;            /* target byte not visible */
        case 3: buf[8] ^= 0x40; break;               /* time before expiry */
        case 4: n = 20; break;                       /* header cut short */
        default: buf[20] ^= 0x10; break;             /* a bit of req_sig, unsealed */
        }
        if (variant < 5) {
            CU_ASSERT(raw_put_sealed(&r, "spent", key, sizeof key, buf, n));
        } else {
            memcpy(buf + n, (const uint8_t *)v.mv_data + n, 4);
            CU_ASSERT(raw_put(&r, key, sizeof key, buf, n + 4));
        }
        CU_ASSERT_FATAL(raw_close(&r));
        s = open_store(d, 0);
        CU_ASSERT_FATAL(s != NULL);
        memset(&l, 0, sizeof l);
        ASSERT_ST(mps_mc_list_undeposited(s, VENDOR, dep_cb, &l), MP_ERR_STORE);
        CU_ASSERT(strstr(mps_errmsg(s), variant < 5 ? "corrupt spent record"
                         : "damaged record in table spent") != NULL);
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
    assert_clean(d);
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
    CU_ASSERT(raw_put_sealed(&r, "ids", key, sizeof key, v, 8));
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

/* The payment (i, k) of words[] accepted on t, hashing with h: an mp_sha
 * is one thread's (the threaded tests pass their own). */
static mp_status pay_h(mp_sha *h, const mp_pw_track *t, uint32_t i, uint32_t k,
                       mp_pw_track *next)
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
    return mp_pw_track_accept(h, t, &p, store_tag0, &price, NOW, next, &retry);
}

static mp_status pay(const mp_pw_track *t, uint32_t i, uint32_t k, mp_pw_track *next)
{
    return pay_h(sha, t, i, k, next);
}

static int track_equal(const mp_pw_track *a, const mp_pw_track *b)
{
    uint8_t ea[MP_PW_TRACK_MAX], eb[MP_PW_TRACK_MAX];
    size_t na, nb;

    return mp_pw_track_encode(a, ea, sizeof ea, &na) == MP_OK
        && mp_pw_track_encode(b, eb, sizeof eb, &nb) == MP_OK
        && na == nb && memcmp(ea, eb, na) == 0;
}

/* Records a payment decided outside the lock on version v (first: the
 * commitment it registers when unknown). */
static mp_status pw_write(mps *s, const mp_pw_commit *first, uint64_t keep, uint64_t v,
                          const mp_pw_track *next, const mps_earning *e)
{
    return mps_pw_update(s, first, keep, v, next, NULL, NULL, e, NULL, NULL);
}

/* Registers c with its first payment, words 1..k: a commitment is stored
 * only with a payment. */
static mp_status pw_register(mps *s, const mp_pw_commit *c, uint32_t k, uint64_t keep)
{
    mp_pw_track fresh, next;
    mp_status st;

    if ((st = mp_pw_track_init(c, &fresh)) != MP_OK || (st = pay(&fresh, k, k, &next)) != MP_OK)
        return st;
    return pw_write(s, c, keep, fresh.version, &next, NULL);
}

/* A decision under the store's lock: the payment (i, k) of words[]. */
typedef struct {
    uint32_t i, k;
    uint64_t now;            /* the clock it was called with */
    int calls;
    mp_status fail;          /* returned instead, when not MP_OK */
    mp_sha *h;               /* NULL: the suite's (one thread only) */
} pw_decider;

static mp_status decide_cb(void *ctx, const mp_pw_track *cur, uint64_t now, mp_pw_track *out,
                           int *retry)
{
    pw_decider *dd = ctx;
    mp_pw_payment p;
    mp_amount price;

    dd->calls++;
    dd->now = now;
    if (dd->fail != MP_OK)
        return dd->fail;
    memset(&p, 0, sizeof p);
    memcpy(p.commit_id, cur->commit_id, MP_HASH_LEN);
    p.i = dd->i;
    p.k = dd->k;
    memcpy(p.w, words[dd->i], MP_HASH_LEN);
    if (mp_amount_mul(&cur->unit, dd->k, &price) != MP_OK)
        return MP_ERR_ARG;
    return mp_pw_track_accept(dd->h != NULL ? dd->h : sha, cur, &p, store_tag0, &price, now,
                              out, retry);
}

static void test_pw(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    mp_pw_track fresh, got, next, next2, first;
    mps_earning e;
    pw_decider dd;
    uint8_t unknown[MP_HASH_LEN];
    raw r;
    MDB_val k, v;
    ledger_sum ls;
    int retry;

    CU_ASSERT_FATAL(s != NULL);
    e = earning("/pw", MP_SCHEME_PAYWORD, NOW, &unit7);
    ASSERT_OK(mp_pw_track_init(&commit, &fresh));
    ASSERT_ST(mps_pw_get(s, commit.id, &got), MP_ERR_UNKNOWN_COMMITMENT);
    /* registered with its first payment, in one transaction */
    ASSERT_OK(pay(&fresh, 3, 3, &first));
    CU_ASSERT(first.version == 1);
    ASSERT_OK(pw_write(s, &commit, NOW + 86400 * 31, 0, &first, &e));
    ASSERT_OK(mps_pw_get(s, commit.id, &got));
    CU_ASSERT(track_equal(&got, &first));
    CU_ASSERT(stats(s).pw == 1 && stats(s).expiry_index == 1);

    /* a second first payment, decided on the fresh tracker: the commitment
     * is known now, so it is decided again (BUSY), and nothing changes */
    ASSERT_OK(pay(&fresh, 5, 2, &next));
    ASSERT_ST(pw_write(s, &commit, NOW + 1, 0, &next, &e), MP_ERR_BUSY);
    ASSERT_OK(mps_pw_get(s, commit.id, &got));
    CU_ASSERT(track_equal(&got, &first) && got.version == 1);
    CU_ASSERT(stats(s).pw == 1 && stats(s).expiry_index == 1);
    ASSERT_ST(pw_write(s, &commit2, NOW, 0, &next, NULL), MP_ERR_ARG);   /* tracker of another */

    /* optimistic update: the right version wins, a stale one is BUSY */
    ASSERT_OK(mps_pw_get(s, commit.id, &got));
    ASSERT_OK(pay(&got, 5, 2, &next));
    CU_ASSERT(next.version == 2);
    ASSERT_OK(pw_write(s, NULL, 0, 1, &next, &e));
    ASSERT_OK(pay(&got, 4, 1, &next2));                 /* decided on the old tracker */
    ASSERT_ST(pw_write(s, NULL, 0, 1, &next2, &e), MP_ERR_BUSY);
    ASSERT_OK(mps_pw_get(s, commit.id, &got));
    CU_ASSERT(track_equal(&got, &next) && got.version == 2 && got.last == 5);
    ASSERT_ST(pw_write(s, NULL, 0, 2, &next, &e), MP_ERR_ARG);            /* version not moving */

    /* the same stale decision, with decide: taken again under the lock, at
     * the transaction's clock, on the stored tracker */
    memset(&dd, 0, sizeof dd);
    dd.i = 7;
    dd.k = 2;
    ASSERT_OK(mps_pw_update(s, NULL, 0, 1, &next2, decide_cb, &dd, &e, NULL, &retry));
    CU_ASSERT(dd.calls == 1 && dd.now == fake_now && retry == 0);
    ASSERT_OK(mps_pw_get(s, commit.id, &got));
    CU_ASSERT(got.version == 3 && got.last == 7 && got.units_paid == 7);
    /* a retry decided under the lock writes nothing */
    dd.calls = 0;
    ASSERT_OK(mps_pw_update(s, NULL, 0, 0, &next2, decide_cb, &dd, &e, NULL, &retry));
    CU_ASSERT(dd.calls == 1 && retry == 1);
    ASSERT_OK(mps_pw_get(s, commit.id, &got));
    CU_ASSERT(got.version == 3);
    /* its refusals are returned as they are, writing nothing */
    dd.i = 6;
    dd.k = 1;
    ASSERT_ST(mps_pw_update(s, NULL, 0, 0, &next2, decide_cb, &dd, &e, NULL, &retry), MP_ERR_SPENT);
    dd.fail = MP_ERR_FORGED;
    ASSERT_ST(mps_pw_update(s, NULL, 0, 0, &next2, decide_cb, &dd, &e, NULL, &retry), MP_ERR_FORGED);
    ASSERT_ST(mps_pw_update(s, NULL, 0, 0, &next2, decide_cb, &dd, &e, NULL, NULL), MP_ERR_ARG);
    ASSERT_ST(mps_pw_update(s, NULL, 0, 0, NULL, decide_cb, &dd, &e, NULL, &retry), MP_ERR_ARG);
    ASSERT_OK(mps_pw_get(s, commit.id, &got));
    CU_ASSERT(got.version == 3);
    ls = ledger_total(s, "/pw");
    CU_ASSERT(ls.count == 3 && ls.units == 21);

    memset(unknown, 0x99, sizeof unknown);
    memcpy(next.commit_id, unknown, MP_HASH_LEN);
    ASSERT_ST(mps_pw_get(s, unknown, &got), MP_ERR_UNKNOWN_COMMITMENT);
    ASSERT_ST(pw_write(s, NULL, 0, 0, &next, NULL), MP_ERR_UNKNOWN_COMMITMENT);
    mps_close(s);

    /* the commitment record is kept, unchanged, behind the tracker */
    CU_ASSERT_FATAL(raw_open(&r, d, "pw"));
    k.mv_size = MP_HASH_LEN;
    k.mv_data = commit.id;
    CU_ASSERT(mdb_get(r.txn, r.dbi, &k, &v) == 0 && v.mv_size > (size_t)commit.enc_len + 4
              && memcmp((uint8_t *)v.mv_data + v.mv_size - 4 - commit.enc_len, commit.enc,
                        commit.enc_len) == 0);
    mdb_txn_abort(r.txn);
    mdb_env_close(r.env);
    assert_clean(d);
}

/*
 * Finding 3 of issue 10, as the attack: with the redemption grace at 0
 * (MicropayPayWordGrace 0), spent marks and trackers used to go at the
 * expiry itself, and a payment decided just before it (its request still
 * being read) was written after compaction: the same scrip, the same
 * words, spent twice. Now the decision is taken again at the clock read
 * inside the write transaction, and the records outlive expiry by
 * MPS_MARGIN whatever the grace.
 */
static void test_decision_clock(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    const uint64_t ce = commit.expiry;
    uint8_t sig[MP_HASH_LEN], out[MP_WIRE_MAX];
    mp_request q = req_of("GET", "news.example", "/a");
    mp_pw_track fresh, next, got;
    pw_decider dd;
    size_t out_len, removed;
    const mps_retry nort = { NOW, 0, body0 };
    int retry;

    CU_ASSERT_FATAL(s != NULL);
    fake_now = NOW - 100;
    /* no retry window: every second spend is refused, as the attack needs */
    /* Millicent: spent with keep_until = expiry (grace 0) */
    sig_for(sig, 7, 1);
    ASSERT_OK(mps_mc_spend(s, VENDOR, 7, NOW, NOW, sig, pay0, 1, &q, NULL, 0, NULL, &nort, &retry, out,
                           &out_len));
    ASSERT_OK(mps_compact(s, NOW, 100, &removed));
    CU_ASSERT(removed == 0);                                /* not at expiry: the margin */
    sig_for(sig, 7, 2);                                     /* another request, decided early */
    ASSERT_ST(mps_mc_spend(s, VENDOR, 7, NOW, NOW, sig, pay0, 1, &q, NULL, 0, NULL, &nort, &retry, out,
                           &out_len), MP_ERR_SPENT);
    ASSERT_OK(mps_compact(s, NOW + MPS_MARGIN - 1, 100, &removed));
    CU_ASSERT(removed == 0);
    ASSERT_OK(mps_compact(s, NOW + MPS_MARGIN, 100, &removed));
    CU_ASSERT(removed == 1);
    /* once the mark is gone, the clock of the write has long passed expiry */
    fake_now = NOW + MPS_MARGIN;
    ASSERT_ST(mps_mc_spend(s, VENDOR, 7, NOW, NOW, sig, pay0, 1, &q, NULL, 0, NULL, &nort, &retry, out,
                           &out_len), MP_ERR_EXPIRED);
    /* and a spend decided before expiry but written at it is refused */
    fake_now = NOW;
    sig_for(sig, 8, 1);
    ASSERT_ST(mps_mc_spend(s, VENDOR, 8, NOW, NOW, sig, pay0, 1, &q, NULL, 0, NULL, &nort, &retry, out,
                           &out_len), MP_ERR_EXPIRED);
    CU_ASSERT(stats(s).spent == 0 && stats(s).expiry_index == 0);

    /* PayWord: registered with words 1..5, kept with grace 0 */
    fake_now = NOW - 100;
    ASSERT_OK(mp_pw_track_init(&commit, &fresh));
    ASSERT_OK(pay(&fresh, 5, 5, &next));
    ASSERT_OK(pw_write(s, &commit, ce, 0, &next, NULL));
    ASSERT_OK(mps_compact(s, ce, 100, &removed));
    CU_ASSERT(removed == 0);
    /* registered "again" with words 2..5 (for another request): known,
     * decided again, already spent */
    fake_now = ce - 1;
    memset(&dd, 0, sizeof dd);
    dd.i = 5;
    dd.k = 4;
    ASSERT_ST(pw_write(s, &commit, ce, 0, &next, NULL), MP_ERR_BUSY);
    ASSERT_ST(mps_pw_update(s, &commit, ce, 0, &next, decide_cb, &dd, NULL, NULL, &retry),
              MP_ERR_SPENT);
    ASSERT_OK(mps_compact(s, ce + MPS_MARGIN - 1, 100, &removed));
    CU_ASSERT(removed == 0);
    ASSERT_OK(mps_compact(s, ce + MPS_MARGIN, 100, &removed));
    CU_ASSERT(removed == 1);
    /* the tracker is gone: registering again is refused by the clock */
    fake_now = ce + MPS_MARGIN;
    ASSERT_ST(pw_write(s, &commit, ce, 0, &next, NULL), MP_ERR_EXPIRED);
    ASSERT_ST(mps_pw_update(s, &commit, ce, 0, &next, decide_cb, &dd, NULL, NULL, &retry),
              MP_ERR_EXPIRED);
    /* a first payment decided before expiry, written at it */
    fake_now = ce;
    ASSERT_OK(mp_pw_track_init(&commit2, &fresh));
    ASSERT_OK(pay(&fresh, 5, 5, &next));
    ASSERT_ST(pw_write(s, &commit2, ce, 0, &next, NULL), MP_ERR_EXPIRED);
    ASSERT_ST(mps_pw_get(s, commit2.id, &got), MP_ERR_UNKNOWN_COMMITMENT);
    CU_ASSERT(stats(s).pw == 0 && stats(s).expiry_index == 0);
    fake_now = NOW - 100;
    mps_close(s);
    assert_clean(d);
}

/* The fallback of the vendor's optimistic loop: threads paying disjoint
 * intervals of one commitment, each deciding first on a tracker that is
 * stale by then, and under the lock when it lost: every payment is
 * accepted exactly once, none is lost to contention. */
enum { LOCK_THREADS = 6, LOCK_EACH = 8, LOCK_K = 2 };   /* words up to 98 of CHAIN_N */

typedef struct {
    mps *s;
    int idx, ok, fail;
} lock_arg;

static void *lock_main(void *p)
{
    lock_arg *la = p;
    mp_pw_track t, next;
    pw_decider dd;
    mp_sha *h = NULL;
    int j, retry;

    if (mp_sha_new(&h) != MP_OK) {
        la->fail = LOCK_EACH;
        return NULL;
    }
    for (j = 0; j < LOCK_EACH; j++) {
        memset(&dd, 0, sizeof dd);
        dd.h = h;
        dd.k = LOCK_K;
        dd.i = (uint32_t)((j * LOCK_THREADS + la->idx + 2) * LOCK_K);
        if (mps_pw_get(la->s, commit.id, &t) != MP_OK) {
            la->fail++;
            continue;
        }
        /* the optimistic decision, then the one under the lock */
        if (pay_h(h, &t, dd.i, dd.k, &next) == MP_OK
            && mps_pw_update(la->s, NULL, 0, t.version, &next, decide_cb, &dd, NULL, NULL, &retry)
                   == MP_OK
            && retry == 0)
            la->ok++;
        else
            la->fail++;
    }
    mp_sha_free(h);
    return NULL;
}

static void test_pw_locked(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    pthread_t th[LOCK_THREADS];
    lock_arg la[LOCK_THREADS];
    mp_pw_track got;
    int i, ok = 0, fail = 0;

    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(pw_register(s, &commit, LOCK_K, NOW + 86400));
    for (i = 0; i < LOCK_THREADS; i++) {
        la[i].s = s;
        la[i].idx = i;
        la[i].ok = la[i].fail = 0;
        CU_ASSERT_FATAL(pthread_create(&th[i], NULL, lock_main, &la[i]) == 0);
    }
    for (i = 0; i < LOCK_THREADS; i++) {
        pthread_join(th[i], NULL);
        ok += la[i].ok;
        fail += la[i].fail;
    }
    CU_ASSERT(ok == LOCK_THREADS * LOCK_EACH && fail == 0);
    ASSERT_OK(mps_pw_get(s, commit.id, &got));
    CU_ASSERT(got.version == 1 + LOCK_THREADS * LOCK_EACH);
    CU_ASSERT(got.units_paid == (uint64_t)LOCK_K * (1 + LOCK_THREADS * LOCK_EACH));
    CU_ASSERT(got.last == (uint32_t)((LOCK_EACH * LOCK_THREADS + 1) * LOCK_K));
    mps_close(s);
    assert_clean(d);
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
    /* registered with their first payments, words 1..1; the grace of
     * commit is below the margin, commit2's above it */
    ASSERT_OK(pw_register(s, &commit, 1, NOW + 500));
    ASSERT_OK(pw_register(s, &commit2, 1, commit2.expiry + MPS_MARGIN + 600));

    /* l = 1, w_l = w1, nothing redeemed */
    CU_ASSERT_FATAL(pw_find(s, &l, &commit, &i) && l.n == 2);
    CU_ASSERT(l.last[i] == 1 && l.redeemed[i] == 0 && memcmp(l.w_last[i], words[1], MP_HASH_LEN) == 0);
    ASSERT_ST(mps_pw_mark_redeemed(s, commit.id, 2), MP_ERR_ARG);     /* above l */
    ASSERT_OK(mps_pw_mark_redeemed(s, commit.id, 0));

    /* payments up to 5 (a gap below 3), then the marks only grow */
    ASSERT_OK(mps_pw_get(s, commit.id, &t));
    ASSERT_OK(pay(&t, 5, 2, &next));
    ASSERT_OK(pw_write(s, NULL, 0, t.version, &next, &e));
    CU_ASSERT_FATAL(pw_find(s, &l, &commit, &i));
    CU_ASSERT(l.last[i] == 5 && l.redeemed[i] == 0 && memcmp(l.w_last[i], words[5], MP_HASH_LEN) == 0);
    ASSERT_OK(mps_pw_mark_redeemed(s, commit.id, 4));
    ASSERT_OK(mps_pw_mark_redeemed(s, commit.id, 2));
    ASSERT_ST(mps_pw_mark_redeemed(s, commit.id, 6), MP_ERR_ARG);
    CU_ASSERT_FATAL(pw_find(s, &l, &commit, &i));
    CU_ASSERT(l.redeemed[i] == 4);
    CU_ASSERT(pw_find(s, &l, &commit2, &i) && l.redeemed[i] == 0 && l.last[i] == 1);

    /* later payments keep the mark, and the tracker moves on */
    ASSERT_OK(mps_pw_get(s, commit.id, &t));
    ASSERT_OK(pay(&t, 3, 1, &next));                   /* into the gap */
    ASSERT_OK(pw_write(s, NULL, 0, t.version, &next, &e));
    ASSERT_OK(mps_pw_get(s, commit.id, &t));
    ASSERT_OK(pay(&t, 9, 4, &next));
    ASSERT_OK(pw_write(s, NULL, 0, t.version, &next, &e));
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
    /* compaction keeps trackers until keep_until, never before expiry +
     * MPS_MARGIN */
    ASSERT_OK(mps_compact(s, commit.expiry + MPS_MARGIN - 1, 100, &removed));
    CU_ASSERT(removed == 0);
    ASSERT_OK(mps_compact(s, commit.expiry + MPS_MARGIN, 100, &removed));
    CU_ASSERT(removed == 1);
    ASSERT_ST(mps_pw_mark_redeemed(s, commit.id, 9), MP_ERR_UNKNOWN_COMMITMENT);
    CU_ASSERT(pw_find(s, &l, &commit2, &i) && l.n == 1);
    mps_close(s);
    assert_clean(d);
}

static void test_pw_corrupt(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    mp_pw_track fresh, first, got, next;
    uint8_t buf[16000];
    size_t n, tlen;
    raw r;
    MDB_val k, v;
    int variant;

    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(mp_pw_track_init(&commit, &fresh));
    ASSERT_OK(pay(&fresh, 1, 1, &first));
    ASSERT_OK(pw_write(s, &commit, NOW + 86400, 0, &first, NULL));
    ASSERT_OK(pay(&first, 2, 1, &next));
    mps_close(s);
    /* Sealed with a good checksum (the tracker's own checks refuse it),
     * except the last variant, a flipped bit that its checksum catches. */
    for (variant = 0; variant < 5; variant++) {
        CU_ASSERT_FATAL(raw_open(&r, d, "pw"));
        k.mv_size = MP_HASH_LEN;
        k.mv_data = commit.id;
        CU_ASSERT_FATAL(mdb_get(r.txn, r.dbi, &k, &v) == 0 && v.mv_size <= sizeof buf);
        n = v.mv_size - 4;
        memcpy(buf, v.mv_data, v.mv_size);
        tlen = (size_t)buf[12] << 8 | buf[13];
        switch (variant) {
        case 0: buf[14 + 1] ^= 0xff; break;                     /* record type */
        case 1: buf[14 + tlen - 1] ^= 0x01; break;              /* last tracker byte */
        case 2: buf[12] = 0xff; break;                          /* length past the end */
        case 3: n = 5; break;                                   /* cut short */
        default: buf[14 + tlen - 1] ^= 0x01; break;             /* unsealed */
        }
        if (variant < 4) {
            CU_ASSERT(raw_put_sealed(&r, "pw", commit.id, MP_HASH_LEN, buf, n));
        } else {
            CU_ASSERT(raw_put(&r, commit.id, MP_HASH_LEN, buf, n + 4));
        }
        CU_ASSERT_FATAL(raw_close(&r));

        s = open_store(d, 0);
        CU_ASSERT_FATAL(s != NULL);
        if (variant == 1) {
            /* a last byte flip may still decode; it must then not be accepted as is */
            mp_status st = mps_pw_get(s, commit.id, &got);
            CU_ASSERT(st == MP_ERR_STORE || (st == MP_OK && !track_equal(&got, &first)));
        } else {
            ASSERT_ST(mps_pw_get(s, commit.id, &got), MP_ERR_STORE);
            CU_ASSERT(strstr(mps_errmsg(s), variant < 4 ? "corrupt tracker"
                             : "damaged record in table pw") != NULL);
            ASSERT_ST(pw_write(s, NULL, 0, 1, &next, NULL), MP_ERR_STORE);
            /* and a damaged tracker is never replaced by a fresh one */
            ASSERT_ST(pw_write(s, &commit, NOW + 86400, 0, &first, NULL), MP_ERR_STORE);
            ASSERT_ST(mps_pw_get(s, commit.id, &got), MP_ERR_STORE);
        }
        mps_close(s);

        /* put the good record back for the next variant */
        CU_ASSERT_FATAL(raw_open(&r, d, "pw"));
        CU_ASSERT(mdb_del(r.txn, r.dbi, &k, NULL) == 0);
        CU_ASSERT_FATAL(raw_close(&r));
        s = open_store(d, 0);
        CU_ASSERT_FATAL(s != NULL);
        ASSERT_OK(pw_write(s, &commit, NOW + 86400, 0, &first, NULL));
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
    assert_clean(d);
}

/* ---- compaction and persistence ------------------------------------------------------ */

/* Totals per (day, scheme, currency), and the lines and "*" lines of each. */
#define GROUPS_MAX 16
typedef struct {
    struct { uint32_t day; uint8_t scheme; char cur[4]; uint64_t units, count; size_t lines, other; } g[GROUPS_MAX];
    size_t n;
} ledger_groups;

static int group_cb(void *ctx, uint32_t day, uint8_t scheme, const char *path,
                    uint64_t units, const char *cur, uint64_t count)
{
    ledger_groups *lg = ctx;
    size_t i;

    for (i = 0; i < lg->n; i++)
        if (lg->g[i].day == day && lg->g[i].scheme == scheme && strcmp(lg->g[i].cur, cur) == 0)
            break;
    if (i == lg->n) {
        if (lg->n == GROUPS_MAX)
            return 1;
        memset(&lg->g[i], 0, sizeof lg->g[i]);
        lg->g[i].day = day;
        lg->g[i].scheme = scheme;
        snprintf(lg->g[i].cur, sizeof lg->g[i].cur, "%s", cur);
        lg->n++;
    }
    lg->g[i].units += units;
    lg->g[i].count += count;
    lg->g[i].lines++;
    lg->g[i].other += strcmp(path, MPS_LEDGER_OTHER) == 0;
    return 0;
}

static ledger_groups groups(mps *s)
{
    ledger_groups lg;

    memset(&lg, 0, sizeof lg);
    ASSERT_OK(mps_ledger_list(s, group_cb, &lg));
    return lg;
}

/* Days older than MPS_LEDGER_KEEP_DAYS are rolled up by compaction into
 * one "*" line per (day, scheme, currency): every total and count kept. */
static void test_ledger_rollup(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    uint64_t old = NOW - 40 * 86400, kept = NOW - 10 * 86400, id = 1;
    uint32_t old_day = (uint32_t)(old / 86400);
    ledger_groups before, after;
    mp_amount eur;
    mps_earning e;
    char path[32];
    size_t removed, i, j, lines_before;
    int k;

    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(mp_amount_set(&eur, 11, "EUR"));
    for (k = 0; k < 50; k++) {             /* 50 paths, every fifth paid twice */
        snprintf(path, sizeof path, "/old/%d", k);
        e = earning(path, MP_SCHEME_MILLICENT, old, &unit7);
        ASSERT_OK(spend(s, VENDOR, id++, 1, NOW + 100 * 86400, &e, NULL));
        if (k % 5 == 0)
            ASSERT_OK(spend(s, VENDOR, id++, 1, NOW + 100 * 86400, &e, NULL));
    }
    for (k = 0; k < 20; k++) {
        snprintf(path, sizeof path, "/pw/%d", k);
        e = earning(path, MP_SCHEME_PAYWORD, old + 3600, &unit7);
        ASSERT_OK(spend(s, VENDOR, id++, 1, NOW + 100 * 86400, &e, NULL));
    }
    for (k = 0; k < 10; k++) {
        snprintf(path, sizeof path, "/eur/%d", k);
        e = earning(path, MP_SCHEME_MILLICENT, old, &eur);
        ASSERT_OK(spend(s, VENDOR, id++, 1, NOW + 100 * 86400, &e, NULL));
    }
    for (k = 0; k < 5; k++) {              /* a day still kept per path */
        snprintf(path, sizeof path, "/new/%d", k);
        e = earning(path, MP_SCHEME_MILLICENT, kept, &unit7);
        ASSERT_OK(spend(s, VENDOR, id++, 1, NOW + 100 * 86400, &e, NULL));
    }
    before = groups(s);
    CU_ASSERT(before.n == 4);
    lines_before = stats(s).ledger;
    CU_ASSERT(lines_before == 85);

    /* batches of 30 lines: three compactions roll the 80 old lines up */
    for (k = 0; k < 4; k++)
        ASSERT_OK(mps_compact(s, NOW, 30, &removed));
    after = groups(s);
    CU_ASSERT_FATAL(after.n == before.n);
    for (i = 0; i < before.n; i++) {
        for (j = 0; j < after.n; j++)
            if (after.g[j].day == before.g[i].day && after.g[j].scheme == before.g[i].scheme
                && strcmp(after.g[j].cur, before.g[i].cur) == 0)
                break;
        CU_ASSERT_FATAL(j < after.n);
        CU_ASSERT(after.g[j].units == before.g[i].units && after.g[j].count == before.g[i].count);
        if (before.g[i].day == old_day) {
            CU_ASSERT(after.g[j].lines == 1 && after.g[j].other == 1);
        } else {
            CU_ASSERT(after.g[j].lines == 5 && after.g[j].other == 0);
        }
    }
    CU_ASSERT(stats(s).ledger == 3 + 5);
    CU_ASSERT(ledger_total(s, MPS_LEDGER_OTHER).count == 50 + 10 + 20 + 10);
    CU_ASSERT(ledger_total(s, MPS_LEDGER_OTHER).units == (50 + 10 + 20) * 7 + 10 * 11);
    /* again: nothing left to roll up, nothing changes */
    ASSERT_OK(mps_maybe_compact(s, NOW + 86400, 60, &removed));
    CU_ASSERT(stats(s).ledger == 3 + 5);
    CU_ASSERT(ledger_total(s, NULL).count == 50 + 10 + 20 + 10 + 5);
    mps_close(s);
    assert_clean(d);
}

/* A day keeps at most MPS_LEDGER_DAY_LINES lines: paths beyond (any string
 * a client puts in path info) count under "*", so the ledger stays bounded. */
static void test_ledger_day_cap(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    mps_earning e;
    ledger_sum all, other;
    char path[32];
    uint64_t id;

    CU_ASSERT_FATAL(s != NULL);
    for (id = 1; id <= MPS_LEDGER_DAY_LINES + 25; id++) {
        snprintf(path, sizeof path, "/x/%llu", (unsigned long long)id);
        e = earning(path, id % 2 ? MP_SCHEME_MILLICENT : MP_SCHEME_PAYWORD, NOW, &unit7);
        ASSERT_OK(spend(s, VENDOR, id, 1, NOW + 86400, &e, NULL));
    }
    /* a path of the day that has its line still adds to it */
    e = earning("/x/1", MP_SCHEME_MILLICENT, NOW, &unit7);
    ASSERT_OK(spend(s, VENDOR, id++, 1, NOW + 86400, &e, NULL));
    all = ledger_total(s, NULL);
    other = ledger_total(s, MPS_LEDGER_OTHER);
    CU_ASSERT(all.count == MPS_LEDGER_DAY_LINES + 26 && all.units == 7 * (MPS_LEDGER_DAY_LINES + 26));
    CU_ASSERT(other.lines == 2 && other.count == 25);   /* one per scheme */
    CU_ASSERT(all.lines == MPS_LEDGER_DAY_LINES + 2);
    CU_ASSERT(ledger_total(s, "/x/1").count == 2);
    /* the next day starts afresh */
    e = earning("/y", MP_SCHEME_MILLICENT, NOW + 86400, &unit7);
    ASSERT_OK(spend(s, VENDOR, id++, 1, NOW + 2 * 86400, &e, NULL));
    CU_ASSERT(ledger_total(s, "/y").count == 1);
    mps_close(s);
    assert_clean(d);
}

static void test_compact(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    const uint64_t m = MPS_MARGIN, pw_end = commit.expiry + MPS_MARGIN;
    mp_pw_track got;
    mps_stats z;
    size_t removed = 999;
    uint64_t id;
    int retry;

    CU_ASSERT_FATAL(s != NULL);
    for (id = 1; id <= 10; id++)
        ASSERT_OK(spend(s, VENDOR, id, 1, NOW + 10, NULL, NULL));
    for (id = 11; id <= 20; id++)
        ASSERT_OK(spend(s, VENDOR, id, 1, NOW + 1000, NULL, NULL));
    ASSERT_OK(pw_register(s, &commit, 1, NOW + 100));         /* a grace below the margin */
    ASSERT_OK(pw_register(s, &commit2, 1, pw_end + 5000));
    z = stats(s);
    CU_ASSERT(z.spent == 20 && z.pw == 2 && z.expiry_index == 22);

    ASSERT_OK(mps_compact(s, NOW + 10, 100, &removed));       /* not at expiry */
    CU_ASSERT(removed == 0);
    ASSERT_OK(mps_compact(s, NOW + 9 + m, 100, &removed));
    CU_ASSERT(removed == 0);
    ASSERT_OK(mps_compact(s, NOW + 10 + m, 100, &removed));   /* due at expiry + margin */
    CU_ASSERT(removed == 10);
    z = stats(s);
    CU_ASSERT(z.spent == 10 && z.pw == 2 && z.expiry_index == 12);
    ASSERT_ST(spend(s, VENDOR, 11, 2, NOW + 1000, NULL, NULL), MP_ERR_SPENT);
    ASSERT_OK(mps_compact(s, NOW + 1000 + m, 0, &removed));
    CU_ASSERT(removed == 0);
    ASSERT_OK(mps_compact(s, NOW + 1000 + m, 3, &removed));
    CU_ASSERT(removed == 3);
    z = stats(s);
    CU_ASSERT(z.spent == 7 && z.pw == 2 && z.expiry_index == 9);

    /* maybe_compact: due at first, then not within the interval */
    ASSERT_OK(mps_maybe_compact(s, NOW + 1000 + m, 3600, &removed));
    CU_ASSERT(removed == 7);
    ASSERT_OK(spend(s, VENDOR, 100, 1, NOW + 1100, NULL, NULL));
    ASSERT_OK(mps_maybe_compact(s, NOW + 2000 + m, 3600, &removed));
    CU_ASSERT(removed == 0);
    CU_ASSERT(stats(s).spent == 1);
    ASSERT_OK(mps_maybe_compact(s, NOW + 1000 + m + 3600, 3600, &removed));
    CU_ASSERT(removed == 1);
    z = stats(s);
    CU_ASSERT(z.spent == 0 && z.pw == 2 && z.expiry_index == 2);

    /* trackers: at expiry + margin when the grace is shorter */
    ASSERT_OK(mps_compact(s, pw_end - 1, 100, &removed));
    CU_ASSERT(removed == 0);
    ASSERT_OK(mps_compact(s, pw_end, 100, &removed));
    CU_ASSERT(removed == 1);
    ASSERT_ST(mps_pw_get(s, commit.id, &got), MP_ERR_UNKNOWN_COMMITMENT);
    ASSERT_OK(mps_pw_get(s, commit2.id, &got));

    /* a record spent again after compaction is kept until its own time */
    ASSERT_OK(spend(s, VENDOR, 5, 3, NOW + 9000, NULL, &retry));
    CU_ASSERT(retry == 0);
    ASSERT_OK(mps_compact(s, NOW + 9000 + m - 1, 100, &removed));
    CU_ASSERT(removed == 0);
    ASSERT_ST(spend(s, VENDOR, 5, 4, NOW + 9000, NULL, NULL), MP_ERR_SPENT);
    /* and at keep_until when the grace is longer */
    ASSERT_OK(mps_compact(s, pw_end + 4999, 100, &removed));
    CU_ASSERT(removed == 1);                                   /* id 5 */
    ASSERT_OK(mps_compact(s, pw_end + 5000, 100, &removed));
    CU_ASSERT(removed == 1);                                   /* commit2 */
    z = stats(s);
    CU_ASSERT(z.spent == 0 && z.pw == 0 && z.expiry_index == 0);
    mps_close(s);
    assert_clean(d);
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
    ASSERT_OK(pay(&t, 4, 4, &next));
    ASSERT_OK(pw_write(s, &commit, NOW + 500, 0, &next, &e));
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
    assert_clean(d);
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
        /* identical payments: one spend, MPS_RETRY_MAX retries at most,
         * counted exactly under the race, the rest refused */
        if (j < CONC_IDS / 2
            && (retry[j] != (CHILDREN - 1 < MPS_RETRY_MAX ? CHILDREN - 1 : MPS_RETRY_MAX)
                || spent[j] != CHILDREN - 1 - retry[j]))
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
    assert_clean(d);
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
    assert_clean(d);
}

/* ---- damage: checksums, the file's pages, verify ------------------------------------ */

/* What mps_verify reported. */
typedef struct {
    size_t n, spent, pw, expiry, file;
    char first[256];
} damage_log;

static void damage_cb(void *ctx, const char *table, const uint8_t *key, size_t key_len,
                      const char *what)
{
    damage_log *l = ctx;

    (void)key;
    (void)key_len;
    if (l->n++ == 0)
        snprintf(l->first, sizeof l->first, "%s: %s", table, what);
    if (strcmp(table, "spent") == 0)
        l->spent++;
    else if (strcmp(table, "pw") == 0)
        l->pw++;
    else if (strcmp(table, "expiry") == 0)
        l->expiry++;
    else if (strcmp(table, "file") == 0)
        l->file++;
    if (verbose)
        printf("\n    damage: %s: %s", table, what);
}

/* mps_verify of d: its problems (-1 when it could not run), the log. */
static long long verify(const char *d, uint64_t budget, damage_log *l, mps_report *rep)
{
    char err[256] = "";
    mps_report r;
    damage_log dl;

    memset(&dl, 0, sizeof dl);
    memset(&r, 0, sizeof r);
    if (l != NULL)
        *l = dl;
    if (rep != NULL)
        *rep = r;
    if (mps_verify(d, budget, damage_cb, &dl, &r, err, sizeof err) != MP_OK) {
        fprintf(stderr, "\n  verify %s: %s\n", d, err);
        return -1;
    }
    if (l != NULL)
        *l = dl;
    if (rep != NULL)
        *rep = r;
    return (long long)r.problems;
}

/* A store that must verify clean, completely. */
static void assert_clean(const char *d)
{
    damage_log l;
    mps_report r;
    long long n = verify(d, 0, &l, &r);

    if (n != 0)
        fprintf(stderr, "\n  %s: %lld problems, first %s\n", d, n, l.first);
    CU_ASSERT(n == 0 && r.complete == 1 && r.pages_read > 0);
}

/* A compacted copy of the store at from (mdb_copy -c): each record once,
 * in the pages in use, so that a byte pattern found in the file is the
 * record LMDB reads. NULL on failure. */
static const char *compact_copy(const char *from)
{
    const char *to = su_new_dir("mps");
    MDB_env *env = NULL;
    int ok = to != NULL && mdb_env_create(&env) == 0;

    if (ok) {
        ok = mdb_env_set_maxdbs(env, 16) == 0
             && mdb_env_set_mapsize(env, MPS_MAP_SIZE_DEFAULT) == 0
             && mdb_env_open(env, from, MDB_NOTLS | MDB_RDONLY, 0600) == 0
             && mdb_env_copy2(env, to, MDB_CP_COMPACT) == 0;
        mdb_env_close(env);
    }
    return ok ? to : NULL;
}

#define SPENT_KLEN (sizeof VENDOR + 8)

static void spent_key(uint8_t key[SPENT_KLEN], uint64_t id)
{
    int i;

    memcpy(key, VENDOR, sizeof VENDOR);
    for (i = 0; i < 8; i++)
        key[sizeof VENDOR + i] = (uint8_t)(id >> (56 - 8 * i));
}

/* Where in d's data.mdb the leaf node of spent id keeps its key: the node
 * header ends in its flags (0) and the key's size (little-endian), then
 * the key; in the expiry index the same bytes follow a kind byte instead. */
static long long spent_key_at(const char *d, uint64_t id)
{
    uint8_t pat[4 + SPENT_KLEN];
    long long off;

    pat[0] = 0;
    pat[1] = 0;
    pat[2] = (uint8_t)SPENT_KLEN;
    pat[3] = 0;
    spent_key(pat + 4, id);
    off = su_find_in_file(su_file_in(d, "data.mdb"), pat, sizeof pat, 0, 64LL << 20);
    return off < 0 ? -1 : off + 4;
}

#define DMG_N    7
#define DMG_FILL 200

/* Seven spent scrip ids with nine fillers around them; bytes all non-zero
 * and far apart, so that no flipped bit makes one the other. */
static uint64_t dmg_id(int i)
{
    return 0x1111111111110000ULL + (uint64_t)(i + 1) * 0x1000;
}

/* A store with the DMG_N spent ids and their neighbours, and fill more
 * (DMG_FILL: enough that the spent table's root is a branch page, and
 * damage in a leaf is read by no open). */
static const char *spent_store_of(int fill)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    mps_earning e = earning("/k", MP_SCHEME_MILLICENT, NOW, &unit7);
    int i;

    if (s == NULL)
        return NULL;
    for (i = 0; i < DMG_N; i++) {
        ASSERT_OK(spend(s, VENDOR, dmg_id(i), 1, NOW + 1000, &e, NULL));
        ASSERT_OK(spend(s, VENDOR, dmg_id(i) + 0x800, 1, NOW + 1000, &e, NULL));
    }
    ASSERT_OK(spend(s, VENDOR, 1, 1, NOW + 1000, &e, NULL));
    ASSERT_OK(spend(s, VENDOR, UINT64_MAX, 1, NOW + 1000, &e, NULL));
    for (i = 0; i < fill; i++)
        ASSERT_OK(spend(s, VENDOR, 0x2222222222220000ULL + (uint64_t)i, 1, NOW + 1000, NULL,
                        NULL));
    mps_close(s);
    return d;
}

static const char *spent_store(void)
{
    return spent_store_of(DMG_FILL);
}

/* The attack of the review: one bit flipped in the key of each of seven
 * spent records, in the file. Spending them again, with another request
 * or as a retry, must fail as damage; never be accepted (charged). */
static void test_damaged_keys(void)
{
    const char *d = spent_store(), *c;
    uint8_t key[SPENT_KLEN];
    long long off;
    damage_log l;
    mps_report rep;
    int i, j, accepted = 0, refused = 0, retry;
    mp_status st;
    mps *s = NULL;
    char err[256];

    CU_ASSERT_FATAL(d != NULL);
    assert_clean(d);
    c = compact_copy(d);
    CU_ASSERT_FATAL(c != NULL);
    assert_clean(c);
    for (i = 0; i < DMG_N; i++) {
        off = spent_key_at(c, dmg_id(i));
        CU_ASSERT_FATAL(off >= 0);
        /* the id's low bytes, or the vendor's name */
        j = i % 2 ? i : (int)SPENT_KLEN - 1 - i / 2;
        spent_key(key, dmg_id(i));
        CU_ASSERT_FATAL(su_flip(su_file_in(c, "data.mdb"), off + j, (uint8_t)(1u << (i % 7))));
    }
    if (mps_open(c, 0, 64 << 20, &s, err, sizeof err) != MP_OK)
        fprintf(stderr, "\n  %s\n", err);
    CU_ASSERT_FATAL(s != NULL);
    for (i = 0; i < DMG_N; i++) {
        for (j = 1; j <= 2; j++) {          /* another request, then a retry */
            st = spend(s, VENDOR, dmg_id(i), j == 1 ? 2 : 1, NOW + 1000, NULL, &retry);
            if (st == MP_OK && retry == 0)
                accepted++;
            else if (st == MP_ERR_STORE && strstr(mps_errmsg(s), "damaged record in table spent"))
                refused++;
        }
    }
    if (accepted)
        fprintf(stderr, "\n  %d spends of damaged spent records accepted\n", accepted);
    CU_ASSERT(accepted == 0);
    CU_ASSERT(refused == 2 * DMG_N);
    mps_close(s);

    /* verify names them all, in the spent table */
    CU_ASSERT(verify(c, 0, &l, &rep) >= DMG_N);
    CU_ASSERT(l.spent >= DMG_N && rep.tables[1].damaged >= DMG_N);
    CU_ASSERT(rep.tables[1].name != NULL && strcmp(rep.tables[1].name, "spent") == 0);
    CU_ASSERT(rep.tables[1].records >= 2 * DMG_N);
}

/* A flipped bit in the value of a spent record: its checksum refuses it,
 * for a retry, a listing, a deposit mark and compaction. */
static void test_damaged_values(void)
{
    static const int at[4] = { 3, 20, 60, 0 };      /* time, req_sig, payment, checksum */
    const char *d = spent_store(), *c;
    uint8_t key[SPENT_KLEN];
    long long off;
    uint64_t id;
    size_t removed = 0, vlen;
    damage_log l;
    dep_list dl;
    uint8_t hdr[2];
    int i, retry;
    mps *s = NULL;
    char err[256];

    CU_ASSERT_FATAL(d != NULL);
    c = compact_copy(d);
    CU_ASSERT_FATAL(c != NULL);
    for (i = 0; i < 4; i++) {
        off = spent_key_at(c, dmg_id(i));
        CU_ASSERT_FATAL(off >= 0);
        /* the value follows the key; its size is the node's lo half */
        CU_ASSERT_FATAL(su_pread(su_file_in(c, "data.mdb"), hdr, 2, off - 8));
        vlen = (size_t)hdr[0] | (size_t)hdr[1] << 8;
        CU_ASSERT_FATAL(vlen > 64);
        CU_ASSERT_FATAL(su_flip(su_file_in(c, "data.mdb"),
                                off + (long long)SPENT_KLEN + (i == 3 ? (long long)vlen - 1 : at[i]),
                                0x04));
    }
    spent_key(key, 0);
    CU_ASSERT_FATAL(mps_open(c, 0, 64 << 20, &s, err, sizeof err) == MP_OK);
    for (i = 0; i < 4; i++) {
        ASSERT_ST(spend(s, VENDOR, dmg_id(i), 1, NOW + 1000, NULL, &retry), MP_ERR_STORE);
        CU_ASSERT(strstr(mps_errmsg(s), "damaged record in table spent") != NULL);
        id = dmg_id(i);
        ASSERT_ST(mps_mc_mark_deposited(s, VENDOR, &id, 1), MP_ERR_STORE);
    }
    memset(&dl, 0, sizeof dl);
    ASSERT_ST(mps_mc_list_undeposited(s, VENDOR, dep_cb, &dl), MP_ERR_STORE);
    /* every record is due: compaction stops at the first damaged one and
     * deletes nothing */
    ASSERT_ST(mps_compact(s, NOW + 2000 + MPS_MARGIN, 1000, &removed), MP_ERR_STORE);
    CU_ASSERT(strstr(mps_errmsg(s), "compaction stopped") != NULL);
    CU_ASSERT(stats(s).spent == 2 * DMG_N + 2 + DMG_FILL);
    /* the background compaction says so once an interval, not per request */
    ASSERT_ST(mps_maybe_compact(s, NOW + 2000 + MPS_MARGIN, 300, &removed), MP_ERR_STORE);
    ASSERT_OK(mps_maybe_compact(s, NOW + 2001 + MPS_MARGIN, 300, &removed));
    CU_ASSERT(removed == 0);
    /* the undamaged ones still work */
    ASSERT_OK(spend(s, VENDOR, dmg_id(6), 1, NOW + 1000, NULL, &retry));
    CU_ASSERT(retry == 1);
    mps_close(s);
    CU_ASSERT(verify(c, 0, &l, NULL) >= 4);
    CU_ASSERT(l.spent >= 4);
}

/* A flipped bit in the key of an expiry index entry: nothing reads it
 * until compaction, so verify must: the record has no entry any more. */
static void test_damaged_index(void)
{
    const char *d = spent_store(), *c;
    uint8_t pat[1 + SPENT_KLEN];
    long long off;
    damage_log l;

    CU_ASSERT_FATAL(d != NULL);
    c = compact_copy(d);
    CU_ASSERT_FATAL(c != NULL);
    pat[0] = 1;                         /* KIND_SPENT, then the spent key */
    spent_key(pat + 1, dmg_id(2));
    off = su_find_in_file(su_file_in(c, "data.mdb"), pat, sizeof pat, 0, 64LL << 20);
    CU_ASSERT_FATAL(off >= 0);
    CU_ASSERT_FATAL(su_flip(su_file_in(c, "data.mdb"), off + sizeof pat - 1, 0x01));
    CU_ASSERT(verify(c, 0, &l, NULL) >= 1);
    CU_ASSERT(l.expiry >= 1);
}

/* Writes a branch page in place of the page at off whose node points far
 * past the file: LMDB would follow it into unmapped memory. */
static int forge_root(const char *path, long long pgno, size_t psize)
{
    uint8_t page[65536];

    if (psize > sizeof page)
        return 0;
    memset(page, 0, psize);
    memcpy(page, &pgno, 8);                     /* its own number */
    page[10] = 0x01;                            /* P_BRANCH */
    page[12] = 16 + 4;                          /* lower: two nodes */
    page[14] = (uint8_t)((psize - 32) & 0xff);  /* upper */
    page[15] = (uint8_t)((psize - 32) >> 8);
    page[16] = page[14];                        /* node 0 at psize - 32 */
    page[17] = page[15];
    page[18] = (uint8_t)((psize - 16) & 0xff);  /* node 1 at psize - 16 */
    page[19] = (uint8_t)((psize - 16) >> 8);
    memset(page + psize - 32, 0x7f, 6);         /* child page 0x7f7f7f7f7f7f */
    memset(page + psize - 16, 0x7f, 6);
    page[psize - 16 + 6] = 1;                   /* a one-byte key */
    page[psize - 16 + 8] = 'z';
    return su_pwrite(path, page, psize, pgno * (long long)psize);
}

/* An overwritten page (the review: an overwritten root page crashed
 * children): the root page of the spent table forged into a branch page
 * pointing past the file, or zeroed, and a leaf page forged the same way.
 * A damaged root is refused by the open; a damaged leaf by the lookups
 * that reach it; never a crash (the child's status says), never accepted. */
static void test_damaged_root(void)
{
    static uint8_t zero[65536];
    const char *small = spent_store_of(0), *big = spent_store(), *c;
    size_t psize = (size_t)sysconf(_SC_PAGESIZE);
    long long off, pgno;
    int variant, status, retry;
    damage_log l;
    pid_t pid;

    CU_ASSERT_FATAL(small != NULL && big != NULL);
    for (variant = 0; variant < 3; variant++) {
        c = compact_copy(variant < 2 ? small : big);
        CU_ASSERT_FATAL(c != NULL);
        off = spent_key_at(c, dmg_id(0));
        CU_ASSERT_FATAL(off > 0);
        pgno = off / (long long)psize;
        if (variant == 1) {
            CU_ASSERT_FATAL(su_pwrite(su_file_in(c, "data.mdb"), zero, psize,
                                      pgno * (long long)psize));
        } else {
            CU_ASSERT_FATAL(forge_root(su_file_in(c, "data.mdb"), pgno, psize));
        }
        fflush(NULL);
        pid = fork();
        CU_ASSERT_FATAL(pid >= 0);
        if (pid == 0) {
            char err[256] = "";
            mps *s = NULL;
            mp_status st;

            if (mps_open(c, 0, 64 << 20, &s, err, sizeof err) != MP_OK)
                _exit(strstr(err, "is damaged") != NULL ? 0 : 2);
            st = spend(s, VENDOR, dmg_id(0), 2, NOW + 1000, NULL, &retry);
            _exit(st == MP_OK ? 3 : st == MP_ERR_STORE && variant == 2 ? 0 : 1);
        }
        CU_ASSERT(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fprintf(stderr, "\n  page damage %d: child %s %d\n", variant,
                    WIFSIGNALED(status) ? "killed by signal" : "exited",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CU_ASSERT(verify(c, 0, &l, NULL) >= 1);
        CU_ASSERT(l.n >= 1 && (variant == 2 ? l.spent : l.file) >= 1);
    }
}

/* The checker itself on healthy stores of every shape: overflow records,
 * deep trees, a free list; sampling. */
static void test_verify_clean(void)
{
    static uint8_t big[MP_WIRE_MAX];
    const char *d = new_store();
    mps *s = open_store(d, 0);
    mp_request q = req_of("GET", "news.example", "/a");
    uint8_t sig[MP_HASH_LEN], out[MP_WIRE_MAX];
    mps_earning e = earning("/v", MP_SCHEME_MILLICENT, NOW, &unit7);
    mps_report r;
    size_t out_len, removed;
    uint64_t id, first;
    int retry;

    CU_ASSERT_FATAL(s != NULL);
    assert_clean(d);
    memset(big, 'b', sizeof big);
    for (id = 1; id <= 3000; id++) {
        sig_for(sig, id, 1);
        ASSERT_OK(mps_mc_spend(s, VENDOR, id, NOW + id, NOW + id, sig, big,
                               id % 10 ? 20 : sizeof big, &q, NULL, 0, &e, &RT, &retry, out,
                               &out_len));
    }
    ASSERT_OK(pw_register(s, &commit, 1, NOW + 100));
    ASSERT_OK(mps_price_set(s, VENDOR, "/v/", &unit7));
    ASSERT_OK(mps_reserve_ids(s, VENDOR, 1, 10, &first));
    ASSERT_OK(mps_maybe_compact(s, NOW, 60, &removed));
    mps_close(s);
    assert_clean(d);
    CU_ASSERT(verify(d, 0, NULL, &r) == 0);
    CU_ASSERT(r.tables[1].records == 3000 && r.tables[2].records == 1 && r.tables[4].records == 1
              && r.tables[6].records == 3001 && r.tables[3].records == 1);
    /* half of it compacted: a free list, pages reused */
    s = open_store(d, 0);
    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(mps_compact(s, NOW + 1500 + MPS_MARGIN, 100000, &removed));
    CU_ASSERT(removed == 1500);         /* the tracker stays until its expiry + MPS_MARGIN */
    for (id = 5001; id <= 5500; id++)
        ASSERT_OK(spend(s, VENDOR, id, 1, NOW + 9000, NULL, NULL));
    /* checked while a handle has it open, as Apache would */
    assert_clean(d);
    mps_close(s);
    assert_clean(d);
    CU_ASSERT(verify(d, 0, NULL, &r) == 0 && r.pages_free > 0);
    /* sampling reads fewer leaves and says so */
    CU_ASSERT(verify(d, 4, NULL, &r) == 0 && r.complete == 0);
    CU_ASSERT(r.tables[1].records < 2000);
}

static void test_crc32c(void)
{
    /* the check value of CRC-32C (RFC 3720, B.4) */
    CU_ASSERT(mpl_crc32c(0, "123456789", 9) == 0xE3069283U);
    CU_ASSERT(mpl_crc32c(mpl_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283U);
    CU_ASSERT(mpl_crc32c(0, "", 0) == 0);
}

/* ---- the map, the handle, stale readers --------------------------------------------- */

/* One process maps the store small, another grows it past that map and
 * fills it: the first adopts the larger map (it answered MDB_MAP_RESIZED
 * to every call until a restart before). */
static void test_map_adopt(void)
{
    static uint8_t big[MP_WIRE_MAX];
    const size_t mib = (size_t)1 << 20;
    const char *d = new_store();
    mp_request q = req_of("GET", "news.example", "/a");
    uint8_t sig[MP_HASH_LEN], out[MP_WIRE_MAX];
    size_t out_len;
    int status, retry;
    char err[256];
    pid_t pid;
    mps *s = NULL;

    CU_ASSERT_FATAL(d != NULL);
    /* the data of a new store lies in its first pages */
    CU_ASSERT_FATAL(truncate(su_file_in(d, "data.mdb"), (off_t)mib) == 0);
    ASSERT_OK(mps_open(d, 0, 2 * mib, &s, err, sizeof err));
    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(spend(s, VENDOR, 1, 1, NOW, NULL, NULL));
    fflush(NULL);
    pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        mps *b = NULL;
        uint64_t id;

        memset(big, 'g', sizeof big);
        if (mps_open(d, 0, 64 * mib, &b, err, sizeof err) != MP_OK)
            _exit(10);
        for (id = 100; id < 700; id++) {
            sig_for(sig, id, 1);
            if (mps_mc_spend(b, VENDOR, id, NOW, NOW, sig, big, sizeof big, &q, NULL, 0, NULL,
                             &RT, &retry, out, &out_len) != MP_OK)
                _exit(11);
        }
        mps_close(b);
        _exit(0);
    }
    CU_ASSERT(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* past our 2 MiB now: the next call adopts the map */
    if (spend(s, VENDOR, 2, 1, NOW, NULL, NULL) != MP_OK)
        fprintf(stderr, "\n  after another process grew the map: %s\n", mps_errmsg(s));
    ASSERT_OK(spend(s, VENDOR, 3, 1, NOW, NULL, NULL));
    ASSERT_ST(spend(s, VENDOR, 699, 2, NOW, NULL, NULL), MP_ERR_SPENT);
    CU_ASSERT(stats(s).spent == 3 + 600);
    mps_close(s);
}

/* A tool (map size 0, as mpadmin opens) never changes the map a server
 * set: the file stays at the server's size. */
static void test_tool_map(void)
{
    const size_t mib = (size_t)1 << 20;
    const char *d = new_store(), *mpadmin = su_built("tools/mpadmin");
    char err[256], out[4096];
    struct stat sb;
    size_t removed;
    mps *s = NULL, *t = NULL;
    int status;
    pid_t pid;

    CU_ASSERT_FATAL(d != NULL);
    CU_ASSERT_FATAL(truncate(su_file_in(d, "data.mdb"), (off_t)mib) == 0);
    ASSERT_OK(mps_open(d, 0, 16 * mib, &s, err, sizeof err));     /* "Apache" */
    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(spend(s, VENDOR, 1, 1, NOW, NULL, NULL));
    CU_ASSERT(stat(su_file_in(d, "data.mdb"), &sb) == 0 && (size_t)sb.st_size == 16 * mib);
    fflush(NULL);
    pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        if (mps_open(d, 0, 0, &t, err, sizeof err) != MP_OK
            || mps_compact(t, NOW + MPS_MARGIN, 100, &removed) != MP_OK || removed != 1)
            _exit(1);
        mps_close(t);
        _exit(0);
    }
    CU_ASSERT(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT(stat(su_file_in(d, "data.mdb"), &sb) == 0 && (size_t)sb.st_size == 16 * mib);
    if (mpadmin != NULL) {
        char *const argv[] = { (char *)mpadmin, "store", "compact", (char *)d, NULL };

        CU_ASSERT(su_run(argv, out, sizeof out, NULL, 0) == 0);
        CU_ASSERT(stat(su_file_in(d, "data.mdb"), &sb) == 0 && (size_t)sb.st_size == 16 * mib);
    } else {
        fprintf(stderr, "\n  tools/mpadmin not built: its part skipped\n");
    }
    ASSERT_OK(spend(s, VENDOR, 2, 1, NOW, NULL, NULL));
    mps_close(s);
}

/* The same directory spelled two ways is one environment (LMDB forbids
 * opening one twice in a process: closing either copy would drop the
 * other's locks). */
static void test_same_dir_twice(void)
{
    const char *d = new_store();
    char other[512], link[512], err[256];
    mps *a = NULL, *b = NULL, *c = NULL, *r = NULL;
    int retry;

    CU_ASSERT_FATAL(d != NULL);
    snprintf(other, sizeof other, "/tmp/../tmp/%s//./", d + 5);
    snprintf(link, sizeof link, "%s-link", d);
    CU_ASSERT_FATAL(symlink(d, link) == 0);
    ASSERT_OK(mps_open(d, 0, 0, &a, err, sizeof err));
    ASSERT_OK(mps_open(other, 0, 0, &b, err, sizeof err));
    ASSERT_OK(mps_open(link, MPS_SYNC, 0, &c, err, sizeof err));
    ASSERT_OK(mps_open(d, MPS_RDONLY, 0, &r, err, sizeof err));
    CU_ASSERT(a != NULL && a == b && b == c && c == r);
    ASSERT_OK(spend(a, VENDOR, 1, 1, NOW, NULL, NULL));
    mps_close(a);
    ASSERT_OK(spend(b, VENDOR, 1, 1, NOW, NULL, &retry));      /* still open */
    CU_ASSERT(retry == 1);
    mps_close(b);
    mps_close(c);
    mps_close(r);
    unlink(link);
    /* read-only first: a writer cannot share it */
    ASSERT_OK(mps_open(d, MPS_RDONLY, 0, &r, err, sizeof err));
    ASSERT_ST(mps_open(other, 0, 0, &a, err, sizeof err), MP_ERR_STORE);
    CU_ASSERT(strstr(err, "read-only") != NULL);
    mps_close(r);
    a = open_store(other, 0);
    CU_ASSERT(a != NULL);
    mps_close(a);
}

static int count_line(const char *msg, void *ctx)
{
    (void)msg;
    (*(int *)ctx)++;
    return 0;
}

/* Reader slots of d held by processes (counted in a child: LMDB must not
 * open d twice in this process). */
static int readers_of(const char *d)
{
    int p[2], status, n = -1;
    pid_t pid;

    if (pipe(p) != 0)
        return -1;
    fflush(NULL);
    if ((pid = fork()) == 0) {
        MDB_env *env;
        int lines = 0;

        close(p[0]);
        if (mdb_env_create(&env) != 0 || mdb_env_set_maxreaders(env, 1024) != 0
            || mdb_env_set_mapsize(env, MPS_MAP_SIZE_DEFAULT) != 0
            || mdb_env_open(env, d, MDB_NOTLS | MDB_RDONLY, 0600) != 0
            || mdb_reader_list(env, count_line, &lines) != 0)
            _exit(1);
        lines--;                        /* the header line */
        _exit(write(p[1], &lines, sizeof lines) == (ssize_t)sizeof lines ? 0 : 1);
    }
    close(p[1]);
    if (pid > 0 && read(p[0], &n, sizeof n) != (ssize_t)sizeof n)
        n = -1;
    close(p[0]);
    if (pid > 0)
        waitpid(pid, &status, 0);
    return n;
}

/* A process killed inside a read transaction keeps its reader slot (and
 * every page freed after it) until someone clears it: the periodic
 * compaction does, not only a child's start. */
static void test_stale_readers(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    int p[2], status;
    size_t removed;
    char c;
    pid_t pid;

    CU_ASSERT_FATAL(s != NULL && pipe(p) == 0);
    ASSERT_OK(mps_maybe_compact(s, NOW, 300, &removed));
    fflush(NULL);
    pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        MDB_env *env;
        MDB_txn *txn;

        if (mdb_env_create(&env) != 0 || mdb_env_set_maxreaders(env, 1024) != 0
            || mdb_env_set_mapsize(env, MPS_MAP_SIZE_DEFAULT) != 0
            || mdb_env_open(env, d, MDB_NOTLS | MDB_RDONLY, 0600) != 0
            || mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0)
            _exit(1);
        if (write(p[1], "r", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(p[1]);
    CU_ASSERT(read(p[0], &c, 1) == 1);
    close(p[0]);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    CU_ASSERT(readers_of(d) == 1);
    /* not due yet: nothing runs */
    ASSERT_OK(mps_maybe_compact(s, NOW + 10, 300, &removed));
    CU_ASSERT(readers_of(d) == 1);
    ASSERT_OK(mps_maybe_compact(s, NOW + 300, 300, &removed));
    CU_ASSERT(readers_of(d) == 0);
    mps_close(s);
}

/* ---- format 2 and its upgrade ---------------------------------------------------------- */

/* Rewrites the format-3 store d as format 2 would have it: every value
 * without its checksum, the format "mod_micropay-store-2". */
static int to_format_2(const char *d)
{
    static const char *const tables[] = { "spent", "pw", "ledger", "prices", "ids", "expiry",
                                          "meta" };
    static uint8_t kbuf[512], vbuf[32768];
    MDB_cursor *cur;
    MDB_val k, v;
    size_t i;
    raw r;
    int rc, ok = 1;

    for (i = 0; i < sizeof tables / sizeof tables[0] && ok; i++) {
        if (!raw_open_db(&r, d, tables[i], 0))
            return 0;
        if (mdb_cursor_open(r.txn, r.dbi, &cur) != 0)
            return 0;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && ok;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (k.mv_size == 6 && memcmp(k.mv_data, "format", 6) == 0)
                continue;
            memcpy(kbuf, k.mv_data, k.mv_size);
            memcpy(vbuf, v.mv_data, v.mv_size - 4);
            k.mv_data = kbuf;
            v.mv_data = vbuf;
            v.mv_size -= 4;
            ok = mdb_cursor_put(cur, &k, &v, MDB_CURRENT) == 0;
        }
        mdb_cursor_close(cur);
        if (i == 6)
            ok = ok && raw_put(&r, "format", 6, "mod_micropay-store-2", 20);
        ok = raw_close(&r) && ok;
    }
    return ok;
}

static void test_upgrade(void)
{
    const char *d = spent_store(), *half;
    char err[512] = "";
    uint64_t n = 0, n2 = 0;
    int already = -1, p[2], status, retry;
    mp_pw_track got;
    mps *s = NULL;
    pid_t pid;
    char c;

    CU_ASSERT_FATAL(d != NULL);
    s = open_store(d, 0);
    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(pw_register(s, &commit, 1, NOW + 100));
    ASSERT_OK(mps_price_set(s, VENDOR, "/u/", &unit7));
    mps_close(s);
    half = compact_copy(d);
    CU_ASSERT_FATAL(half != NULL && to_format_2(d) && to_format_2(half));

    /* refused, with the command */
    ASSERT_ST(mps_open(d, 0, 0, &s, err, sizeof err), MP_ERR_STORE);
    CU_ASSERT(strstr(err, "mpadmin store upgrade") != NULL);
    /* refused while another process has it open */
    CU_ASSERT_FATAL(pipe(p) == 0);
    fflush(NULL);
    pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        MDB_env *env;

        if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 16) != 0
            || mdb_env_set_mapsize(env, MPS_MAP_SIZE_DEFAULT) != 0
            || mdb_env_open(env, d, MDB_NOTLS, 0600) != 0 || write(p[1], "o", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(p[1]);
    CU_ASSERT(read(p[0], &c, 1) == 1);
    close(p[0]);
    ASSERT_ST(mps_upgrade(d, &n, &already, err, sizeof err), MP_ERR_BUSY);
    CU_ASSERT(strstr(err, "stop Apache") != NULL);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);

    ASSERT_OK(mps_upgrade(d, &n, &already, err, sizeof err));
    /* spent records and their index entries, a tracker and its entry, a
     * ledger line, a price */
    CU_ASSERT(already == 0 && n == (2 * DMG_N + 2 + DMG_FILL) * 2 + 2 + 1 + 1);
    assert_clean(d);
    s = open_store(d, 0);
    CU_ASSERT_FATAL(s != NULL);
    ASSERT_ST(spend(s, VENDOR, dmg_id(3), 2, NOW + 1000, NULL, NULL), MP_ERR_SPENT);
    ASSERT_OK(spend(s, VENDOR, dmg_id(3), 1, NOW + 1000, NULL, &retry));
    CU_ASSERT(retry == 1);
    ASSERT_OK(mps_pw_get(s, commit.id, &got));
    CU_ASSERT(price_of(s, VENDOR, "/u/x") == 7);
    mps_close(s);
    ASSERT_OK(mps_upgrade(d, &n2, &already, err, sizeof err));
    CU_ASSERT(already == 1 && n2 == 0);

    /* an upgrade that stopped half way goes on where it was: the first
     * spent records converted, the position after the third */
    {
        uint8_t key[SPENT_KLEN], pos[1 + SPENT_KLEN];
        MDB_cursor *cur;
        MDB_val k, v;
        static uint8_t kb[512], vb[32768];
        int i;
        raw r;

        CU_ASSERT_FATAL(raw_open_db(&r, half, "spent", 0));
        CU_ASSERT_FATAL(mdb_cursor_open(r.txn, r.dbi, &cur) == 0);
        for (i = 0, mdb_cursor_get(cur, &k, &v, MDB_FIRST); i < 3; i++,
             mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            memcpy(kb, k.mv_data, k.mv_size);
            memcpy(vb, v.mv_data, v.mv_size);
            CU_ASSERT(raw_put_sealed(&r, "spent", kb, k.mv_size, vb, v.mv_size));
            memcpy(key, kb, k.mv_size);
        }
        mdb_cursor_close(cur);
        CU_ASSERT_FATAL(raw_close(&r));
        CU_ASSERT_FATAL(raw_open_db(&r, half, "meta", 0));
        pos[0] = 1;
        memcpy(pos + 1, key, SPENT_KLEN);
        CU_ASSERT(raw_put(&r, "upgrade", 7, pos, sizeof pos));
        CU_ASSERT(raw_put(&r, "format", 6, "mod_micropay-store-2-3", 22));
        CU_ASSERT_FATAL(raw_close(&r));
    }
    if (mps_upgrade(half, &n2, &already, err, sizeof err) != MP_OK)
        fprintf(stderr, "\n  resumed upgrade: %s\n", err);
    if (already != 0 || n2 != n - 3)
        fprintf(stderr, "\n  resumed: already %d, %llu of %llu\n", already, (unsigned long long)n2, (unsigned long long)n);
    CU_ASSERT(already == 0 && n2 == n - 3);
    assert_clean(half);

    /* a format-2 store with a damaged record is not blessed with checksums */
    d = spent_store();
    CU_ASSERT_FATAL(d != NULL && to_format_2(d));
    {
        raw r;
        uint8_t key[SPENT_KLEN];

        spent_key(key, dmg_id(1));
        CU_ASSERT_FATAL(raw_open_db(&r, d, "spent", 0));
        CU_ASSERT(raw_put(&r, key, sizeof key, "short", 5));
        CU_ASSERT_FATAL(raw_close(&r));
    }
    ASSERT_ST(mps_upgrade(d, &n, &already, err, sizeof err), MP_ERR_STORE);
    CU_ASSERT(strstr(err, "not upgraded") != NULL && strstr(err, "spent") != NULL);
}


/* ---- retries: the window, the body, every payment of the window ----------------------- */

/* The attacks of issue 10: one payment bought many POSTs with other
 * bodies, for ever; a PayWord retry after 32 later payments was refused. */
static void test_mc_retry_window(void)
{
    static const uint8_t body_a[MP_HASH_LEN] = { 0xaa }, body_b[MP_HASH_LEN] = { 0xbb };
    const char *d = new_store();
    mps *s = open_store(d, 0);
    mp_request post = req_of("POST", "news.example", "/cgi/echo");
    uint8_t sig[MP_HASH_LEN], out[MP_WIRE_MAX];
    const uint8_t pay[] = "the payment";
    mps_retry rt = { NOW, 60, body_a };
    size_t out_len = 0;
    int retry = -1, i;

    CU_ASSERT_FATAL(s != NULL);
    sig_for(sig, 9, 1);
    ASSERT_OK(mps_mc_find(s, VENDOR, 9, pay, sizeof pay, &post, &rt, &retry, out, &out_len));
    CU_ASSERT(retry == 0);
    ASSERT_OK(mps_mc_spend(s, VENDOR, 9, NOW + 1000, NOW + 1000, sig, pay, sizeof pay, &post,
                           (const uint8_t *)"chg", 3, NULL, &rt, &retry, out, &out_len));
    CU_ASSERT(retry == 0);
    /* the same payment, the same body, within the window: its change again */
    rt.now = NOW + 59;
    ASSERT_OK(mps_mc_find(s, VENDOR, 9, pay, sizeof pay, &post, &rt, &retry, out, &out_len));
    CU_ASSERT(retry == 1 && out_len == 3 && memcmp(out, "chg", 3) == 0);
    ASSERT_OK(mps_mc_spend(s, VENDOR, 9, NOW + 1000, NOW + 1000, sig, pay, sizeof pay, &post,
                           (const uint8_t *)"new", 3, NULL, &rt, &retry, out, &out_len));
    CU_ASSERT(retry == 1 && out_len == 3 && memcmp(out, "chg", 3) == 0);
    /* another body: a second purchase with one payment */
    rt.body_digest = body_b;
    ASSERT_ST(mps_mc_find(s, VENDOR, 9, pay, sizeof pay, &post, &rt, &retry, out, &out_len),
              MP_ERR_SPENT);
    ASSERT_ST(mps_mc_spend(s, VENDOR, 9, NOW + 1000, NOW + 1000, sig, pay, sizeof pay, &post,
                           NULL, 0, NULL, &rt, &retry, out, &out_len), MP_ERR_SPENT);
    /* the identical record sent with another request: its req_sig was
     * checked for the first request only */
    {
        mp_request other[3];

        other[0] = req_of("POST", "news.example", "/cgi/other");
        other[1] = req_of("PUT", "news.example", "/cgi/echo");
        other[2] = req_of("POST", "evil.example", "/cgi/echo");
        for (i = 0; i < 3; i++) {
            ASSERT_ST(mps_mc_find(s, VENDOR, 9, pay, sizeof pay, &other[i], &rt, &retry, out,
                                  &out_len), MP_ERR_SPENT);
            ASSERT_ST(mps_mc_spend(s, VENDOR, 9, NOW + 1000, NOW + 1000, sig, pay, sizeof pay,
                                   &other[i], NULL, 0, NULL, &rt, &retry, out, &out_len),
                      MP_ERR_SPENT);
        }
    }
    /* another payment record with that scrip id */
    rt.body_digest = body_a;
    ASSERT_ST(mps_mc_find(s, VENDOR, 9, pay, sizeof pay - 1, &post, &rt, &retry, out, &out_len),
              MP_ERR_SPENT);
    /* past the window, and with the window shortened or withdrawn since */
    rt.now = NOW + 60;
    ASSERT_ST(mps_mc_find(s, VENDOR, 9, pay, sizeof pay, &post, &rt, &retry, out, &out_len),
              MP_ERR_SPENT);
    ASSERT_ST(mps_mc_spend(s, VENDOR, 9, NOW + 1000, NOW + 1000, sig, pay, sizeof pay, &post,
                           NULL, 0, NULL, &rt, &retry, out, &out_len), MP_ERR_SPENT);
    rt.now = NOW + 10;
    rt.window = 10;
    ASSERT_ST(mps_mc_find(s, VENDOR, 9, pay, sizeof pay, &post, &rt, &retry, out, &out_len),
              MP_ERR_SPENT);
    rt.window = 0;
    rt.now = NOW;
    ASSERT_ST(mps_mc_find(s, VENDOR, 9, pay, sizeof pay, &post, &rt, &retry, out, &out_len),
              MP_ERR_SPENT);
    ASSERT_ST(mps_mc_find(s, VENDOR, 9, pay, sizeof pay, &post, NULL, &retry, out, &out_len),
              MP_ERR_ARG);
    /* each retry runs the handler again: MPS_RETRY_MAX of them, whichever
     * path answers it (both count), then the payment is spent */
    rt.now = NOW;
    rt.window = 60;
    rt.body_digest = body_a;
    sig_for(sig, 10, 1);
    ASSERT_OK(mps_mc_spend(s, VENDOR, 10, NOW + 1000, NOW + 1000, sig, pay, sizeof pay, &post,
                           (const uint8_t *)"chg", 3, NULL, &rt, &retry, out, &out_len));
    CU_ASSERT(retry == 0);
    ASSERT_OK(mps_mc_spend(s, VENDOR, 10, NOW + 1000, NOW + 1000, sig, pay, sizeof pay, &post,
                           NULL, 0, NULL, &rt, &retry, out, &out_len));
    CU_ASSERT(retry == 1);
    for (i = 1; i < MPS_RETRY_MAX; i++) {
        retry = -1;
        ASSERT_OK(mps_mc_find(s, VENDOR, 10, pay, sizeof pay, &post, &rt, &retry, out,
                              &out_len));
        CU_ASSERT(retry == 1 && out_len == 3 && memcmp(out, "chg", 3) == 0);
    }
    ASSERT_ST(mps_mc_find(s, VENDOR, 10, pay, sizeof pay, &post, &rt, &retry, out, &out_len),
              MP_ERR_SPENT);
    ASSERT_ST(mps_mc_spend(s, VENDOR, 10, NOW + 1000, NOW + 1000, sig, pay, sizeof pay, &post,
                           NULL, 0, NULL, &rt, &retry, out, &out_len), MP_ERR_SPENT);
    CU_ASSERT(stats(s).spent == 2);
    mps_close(s);
    assert_clean(d);
}

static void test_pw_retry_records(void)
{
    static const uint8_t tag_a[MP_PW_TAG_LEN] = { 0x0a }, tag_b[MP_PW_TAG_LEN] = { 0x0b };
    const char *d = new_store();
    mps *s = open_store(d, 0);
    mp_pw_track t, next;
    mps_pw_paid pd;
    size_t removed = 0;
    uint32_t i;
    int retry = -1;

    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(mp_pw_track_init(&commit, &t));
    /* 40 payments of one word each, the first for request a; the first
     * registers the commitment */
    for (i = 1; i <= 40; i++) {
        if (i > 1)
            ASSERT_OK(mps_pw_get(s, commit.id, &t));
        ASSERT_OK(pay(&t, i, 1, &next));
        pd.i = i;
        pd.k = 1;
        pd.w = words[i];
        pd.tag = i == 1 ? tag_a : tag_b;
        pd.accepted_at = NOW + i;
        ASSERT_OK(mps_pw_update(s, i == 1 ? &commit : NULL, NOW + 86400 * 31, t.version, &next,
                                NULL, NULL, NULL, &pd, NULL));
    }
    CU_ASSERT(stats(s).retry == 40 && stats(s).expiry_index == 41);
    /* the first payment is still known after 39 more: a retry, answered
     * MPS_RETRY_MAX times (each runs the handler again), then refused */
    for (i = 0; i < MPS_RETRY_MAX; i++) {
        retry = -1;
        ASSERT_OK(mps_pw_retry_find(s, commit.id, 1, 1, words[1], tag_a, NOW + 30, 60, &retry));
        CU_ASSERT(retry == 1);
    }
    ASSERT_ST(mps_pw_retry_find(s, commit.id, 1, 1, words[1], tag_a, NOW + 30, 60, &retry),
              MP_ERR_SPENT);
    /* another word's record keeps its own count */
    ASSERT_OK(mps_pw_retry_find(s, commit.id, 2, 1, words[2], tag_b, NOW + 30, 60, &retry));
    CU_ASSERT(retry == 1);
    /* the same words for another request, other words, another k */
    ASSERT_ST(mps_pw_retry_find(s, commit.id, 1, 1, words[1], tag_b, NOW + 30, 60, &retry),
              MP_ERR_SPENT);
    ASSERT_ST(mps_pw_retry_find(s, commit.id, 1, 1, words[2], tag_a, NOW + 30, 60, &retry),
              MP_ERR_SPENT);
    ASSERT_ST(mps_pw_retry_find(s, commit.id, 2, 2, words[2], tag_b, NOW + 30, 60, &retry),
              MP_ERR_SPENT);
    /* past the window in force now, and with no window */
    ASSERT_ST(mps_pw_retry_find(s, commit.id, 1, 1, words[1], tag_a, NOW + 61, 60, &retry),
              MP_ERR_SPENT);
    ASSERT_ST(mps_pw_retry_find(s, commit.id, 1, 1, words[1], tag_a, NOW + 2, 0, &retry),
              MP_ERR_SPENT);
    /* a word never accepted: for the tracker to decide */
    ASSERT_OK(mps_pw_retry_find(s, commit.id, 41, 1, words[41], tag_a, NOW, 60, &retry));
    CU_ASSERT(retry == 0);
    /* a retry record is written once: the same word again is damage */
    ASSERT_OK(mps_pw_get(s, commit.id, &t));
    next = t;
    next.version++;
    pd.i = 1;
    pd.w = words[1];
    ASSERT_ST(mps_pw_update(s, NULL, 0, t.version, &next, NULL, NULL, NULL, &pd, NULL),
              MP_ERR_STORE);
    mps_close(s);
    assert_clean(d);
    /* compaction drops them after the longest window and its margin */
    s = open_store(d, 0);
    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(mps_compact(s, NOW + 1 + MPS_RETRY_KEEP - 1, 1000, &removed));
    CU_ASSERT(removed == 0);
    ASSERT_OK(mps_compact(s, NOW + 20 + MPS_RETRY_KEEP, 1000, &removed));
    CU_ASSERT(removed == 20 && stats(s).retry == 20 && stats(s).pw == 1);
    mps_close(s);
    assert_clean(d);
}

/* Format 3 to 4: a spend of format 3 has no accepted time, and is never
 * answered as a retry (fail closed). */
static void test_upgrade_3(void)
{
    const char *d = new_store();
    mps *s = open_store(d, 0);
    mp_request get = req_of("GET", "h", "/x");
    uint8_t key[sizeof VENDOR + 8], buf[1024], out[MP_WIRE_MAX];
    char err[512] = "";
    uint64_t n = 0;
    size_t out_len;
    MDB_val k, v;
    raw r;
    int already = -1, retry = -1, i;

    CU_ASSERT_FATAL(s != NULL);
    ASSERT_OK(spend_req(s, VENDOR, 5, NOW + 100, NOW + 100, &get, NULL));
    mps_close(s);
    memcpy(key, VENDOR, sizeof VENDOR);
    for (i = 0; i < 8; i++)
        key[sizeof VENDOR + i] = (uint8_t)((uint64_t)5 >> (56 - 8 * i));
    /* the record as format 3 wrote it: no flag, no accepted time and digest */
    CU_ASSERT_FATAL(raw_open(&r, d, "spent"));
    k.mv_size = sizeof key;
    k.mv_data = key;
    CU_ASSERT_FATAL(mdb_get(r.txn, r.dbi, &k, &v) == 0 && v.mv_size <= sizeof buf);
    memcpy(buf, v.mv_data, v.mv_size - 4 - 40);
    buf[16] = 0;
    CU_ASSERT(raw_put_sealed(&r, "spent", key, sizeof key, buf, v.mv_size - 4 - 40));
    CU_ASSERT_FATAL(raw_close(&r));
    CU_ASSERT_FATAL(raw_open_db(&r, d, "meta", 0));
    CU_ASSERT(raw_put(&r, "format", 6, "mod_micropay-store-3", 20));
    CU_ASSERT_FATAL(raw_close(&r));
    CU_ASSERT_FATAL(raw_open_db(&r, d, "retry", 0));
    CU_ASSERT(mdb_drop(r.txn, r.dbi, 1) == 0);
    CU_ASSERT_FATAL(raw_close(&r));

    ASSERT_ST(mps_open(d, 0, 0, &s, err, sizeof err), MP_ERR_STORE);
    CU_ASSERT(strstr(err, "older format") != NULL && strstr(err, "mpadmin store upgrade") != NULL);
    ASSERT_OK(mps_upgrade(d, &n, &already, err, sizeof err));
    CU_ASSERT(already == 0 && n >= 2);     /* the spend and its index entry at least */
    assert_clean(d);
    s = open_store(d, 0);
    CU_ASSERT_FATAL(s != NULL);
    {
        const char pay[] = "pay-5";
        mps_retry rt = { NOW, 60, body0 };

        ASSERT_ST(mps_mc_find(s, VENDOR, 5, (const uint8_t *)pay, 5, &get, &rt, &retry, out, &out_len),
                  MP_ERR_SPENT);
    }
    ASSERT_ST(spend_req(s, VENDOR, 5, NOW + 100, NOW + 100, &get, NULL), MP_ERR_SPENT);
    CU_ASSERT(stats(s).spent == 1 && stats(s).retry == 0);
    mps_close(s);
    ASSERT_OK(mps_upgrade(d, &n, &already, err, sizeof err));
    CU_ASSERT(already == 1);
}

/* ---- mpadmin store verify and upgrade -------------------------------------------------- */

static void test_mpadmin_verify(void)
{
    const char *mpadmin = su_built("tools/mpadmin"), *d, *c;
    static char out[65536], err[4096];
    long long off;

    if (mpadmin == NULL) {
        fprintf(stderr, "\n  tools/mpadmin not built: skipped\n");
        return;
    }
    d = spent_store();
    CU_ASSERT_FATAL(d != NULL);
    {
        char *const argv[] = { (char *)mpadmin, "store", "verify", (char *)d, NULL };
        char *const argj[] = { (char *)mpadmin, "--json", "store", "verify", (char *)d, NULL };

        CU_ASSERT(su_run(argv, out, sizeof out, err, sizeof err) == 0);
        CU_ASSERT(strstr(out, "clean") != NULL && strstr(out, "spent") != NULL);
        CU_ASSERT(su_run(argj, out, sizeof out, err, sizeof err) == 0);
        CU_ASSERT(strstr(out, "\"ok\": true") != NULL && strstr(out, "\"complete\": true") != NULL);
    }
    c = compact_copy(d);
    CU_ASSERT_FATAL(c != NULL);
    off = spent_key_at(c, dmg_id(4));
    CU_ASSERT_FATAL(off > 0 && su_flip(su_file_in(c, "data.mdb"), off + SPENT_KLEN - 1, 0x02));
    {
        char *const argv[] = { (char *)mpadmin, "store", "verify", (char *)c, NULL };
        char *const argj[] = { (char *)mpadmin, "--json", "store", "verify", (char *)c, NULL };

        CU_ASSERT(su_run(argv, out, sizeof out, err, sizeof err) == 1);
        CU_ASSERT(strstr(out, "DAMAGED") != NULL && strstr(out, "spent") != NULL
                  && strstr(out, "checksum mismatch") != NULL);
        CU_ASSERT(su_run(argj, out, sizeof out, err, sizeof err) == 1);
        CU_ASSERT(strstr(out, "\"ok\": false") != NULL && strstr(out, "\"table\": \"spent\"") != NULL);
        if (verbose)
            printf("\n%s", out);
    }
    /* upgrade: a format-2 store converted, then verified */
    CU_ASSERT_FATAL(to_format_2(d));
    {
        char *const up[] = { (char *)mpadmin, "store", "upgrade", (char *)d, NULL };
        char *const argv[] = { (char *)mpadmin, "store", "verify", (char *)d, NULL };

        CU_ASSERT(su_run(argv, out, sizeof out, err, sizeof err) == 1);
        CU_ASSERT(strstr(err, "mpadmin store upgrade") != NULL);
        CU_ASSERT(su_run(up, out, sizeof out, err, sizeof err) == 0);
        CU_ASSERT(strstr(out, "upgraded") != NULL);
        CU_ASSERT(su_run(argv, out, sizeof out, err, sizeof err) == 0);
        CU_ASSERT(su_run(up, out, sizeof out, err, sizeof err) == 0);
        CU_ASSERT(strstr(out, "already") != NULL);
    }
}

/* ---- durability ------------------------------------------------------------------------- */

/* What a payment costs in each mode (printed with -v; docs/mod_micropay.md
 * has the figures of a run), and that both modes keep what they said. */
static void test_durability(void)
{
    const char *d = new_store();
    unsigned mode;
    uint64_t id;
    double t0, us[2];
    mps *s;

    CU_ASSERT_FATAL(d != NULL);
    for (mode = 0; mode < 2; mode++) {
        s = open_store(d, mode ? MPS_SYNC : 0);
        CU_ASSERT_FATAL(s != NULL);
        t0 = su_now_ms();
        for (id = 1; id <= 200; id++)
            ASSERT_OK(spend(s, VENDOR, mode * 1000 + id, 1, NOW, NULL, NULL));
        us[mode] = (su_now_ms() - t0) * 1000 / 200;
        mps_close(s);
    }
    if (verbose)
        printf("\n  a spend: %.0f us (data flushed before the meta page), %.0f us "
               "(MPS_SYNC, meta page flushed too)\n", us[0], us[1]);
    s = open_store(d, MPS_RDONLY);
    CU_ASSERT_FATAL(s != NULL);
    CU_ASSERT(stats(s).spent == 400);
    mps_close(s);
    assert_clean(d);
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
        { "ledger roll-up of old days: totals kept", test_ledger_rollup },
        { "ledger lines per day capped", test_ledger_day_cap },
        { "change ids", test_ids },
        { "PayWord trackers", test_pw },
        { "decisions at the clock of the write; grace 0 keeps the margin", test_decision_clock },
        { "PayWord decided under the lock after lost races", test_pw_locked },
        { "PayWord redemption marks", test_pw_redeem },
        { "corrupt PayWord trackers", test_pw_corrupt },
        { "prices", test_prices },
        { "compaction", test_compact },
        { "persistence", test_persistence },
        { "threads on one handle", test_threads },
        { "processes spending the same scrip", test_processes },
        { "writer killed with SIGKILL", test_crash },
        { "CRC-32C", test_crc32c },
        { "verify: healthy stores of every shape", test_verify_clean },
        { "damage: a bit flipped in the keys of spent records", test_damaged_keys },
        { "damage: a bit flipped in the values of spent records", test_damaged_values },
        { "damage: a bit flipped in an expiry index key", test_damaged_index },
        { "damage: an overwritten root page", test_damaged_root },
        { "map: another process grows it", test_map_adopt },
        { "map: a tool keeps the server's size", test_tool_map },
        { "one directory spelled three ways", test_same_dir_twice },
        { "stale readers cleared by the compaction timer", test_stale_readers },
        { "format 2: refused, upgraded, resumed", test_upgrade },
        { "retries: Millicent window, body, payment", test_mc_retry_window },
        { "retries: every PayWord payment of the window", test_pw_retry_records },
        { "format 3: refused, upgraded, never retried", test_upgrade_3 },
        { "mpadmin store verify and upgrade", test_mpadmin_verify },
        { "durability: the cost of a spend", test_durability },
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
