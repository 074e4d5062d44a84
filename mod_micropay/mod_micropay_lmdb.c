/*
 * mod_micropay_lmdb.c - the LMDB plumbing of the vendor and broker stores
 * (the contract is in mod_micropay_lmdb.h).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include "mod_micropay_lmdb.h"

#define PATH_BUF 4096

/* ---- messages --------------------------------------------------------------------- */

static __thread char errbuf[MPL_SLOTS][MPL_MSG_MAX];
static __thread unsigned char full[MPL_SLOTS];

__attribute__((format(printf, 3, 0)))
static void vmsg(const mpl_spec *sp, int is_full, const char *fmt, va_list ap)
{
    vsnprintf(errbuf[sp->slot], sizeof errbuf[sp->slot], fmt, ap);
    full[sp->slot] = (unsigned char)is_full;
}

__attribute__((format(printf, 3, 4)))
static void msg(const mpl_spec *sp, int is_full, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vmsg(sp, is_full, fmt, ap);
    va_end(ap);
}

void mpl_msg(const mpl_spec *sp, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vmsg(sp, 0, fmt, ap);
    va_end(ap);
}

void mpl_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

mp_status mpl_fail(const mpl_spec *sp, const char *what, int rc)
{
    if (rc == MDB_MAP_FULL)
        msg(sp, 1, "%s full (%s)", sp->name, what);
    else
        msg(sp, 0, "%s %s: %s", sp->name, what, mdb_strerror(rc));
    return MP_ERR_STORE;
}

mp_status mpl_corrupt(const mpl_spec *sp, const char *what)
{
    msg(sp, 0, "%s: corrupt %s", sp->name, what);
    return MP_ERR_STORE;
}

mp_status mpl_bad_arg(const mpl_spec *sp, const char *what)
{
    msg(sp, 0, "%s: invalid %s", sp->name, what);
    return MP_ERR_ARG;
}

const char *mpl_errmsg(const mpl_spec *sp)
{
    return errbuf[sp->slot][0] ? errbuf[sp->slot] : NULL;
}

int mpl_full(const mpl_spec *sp)
{
    return full[sp->slot];
}

/* ---- creating ------------------------------------------------------------------------ */

static int data_path(char *buf, const char *dir, const char *file)
{
    int n = snprintf(buf, PATH_BUF, "%s/%s", dir, file);
    return n > 0 && n < PATH_BUF;
}

static unsigned max_readers = MPL_MAX_READERS;

unsigned mpl_set_max_readers(unsigned n)
{
    max_readers = n < MPL_MAX_READERS ? MPL_MAX_READERS
                : n > MPL_MAX_READERS_MAX ? MPL_MAX_READERS_MAX : n;
    return max_readers;
}

/* A new environment handle sized for sp (tables, map, reader slots):
 * what create and open share. */
static int env_new(const mpl_spec *sp, size_t map_size, MDB_env **env)
{
    int rc;

    *env = NULL;
    if ((rc = mdb_env_create(env)) != 0) {
        *env = NULL;
        return rc;
    }
    if ((rc = mdb_env_set_maxdbs(*env, (MDB_dbi)sp->ndbs)) != 0
        || (rc = mdb_env_set_mapsize(*env, map_size)) != 0
        || (rc = mdb_env_set_maxreaders(*env, max_readers)) != 0) {
        mdb_env_close(*env);
        *env = NULL;
    }
    return rc;
}

mp_status mpl_create(const mpl_spec *sp, const char *dir, long uid, long gid,
                     unsigned env_flags, char *err, size_t errlen)
{
    char data[PATH_BUF], lock[PATH_BUF];
    struct stat sb;
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_val k = mpl_val("format", 6), v = mpl_val(sp->format, strlen(sp->format));
    uid_t u = uid >= 0 ? (uid_t)uid : (uid_t)-1;
    gid_t g = gid >= 0 ? (gid_t)gid : (gid_t)-1;
    int fd, made = 0, lock_existed = 1, rc = 0;
    size_t i;
    mp_status st = MP_ERR_STORE;

    if (dir == NULL || !data_path(data, dir, "data.mdb") || !data_path(lock, dir, "lock.mdb")) {
        mpl_err(err, errlen, "invalid %s directory", sp->name);
        st = MP_ERR_ARG;
        goto out;
    }
    if (stat(dir, &sb) != 0) {
        mpl_err(err, errlen, "%s directory %s: %s", sp->name, dir, strerror(errno));
        goto out;
    }
    if (!S_ISDIR(sb.st_mode)) {
        mpl_err(err, errlen, "%s directory %s: not a directory", sp->name, dir);
        goto out;
    }
    lock_existed = stat(lock, &sb) == 0;
    /* O_EXCL claims the name atomically: of two concurrent creates, one
     * fails here instead of both initialising the same file. LMDB takes an
     * empty data file for a new environment. */
    fd = open(data, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            mpl_err(err, errlen, "%s %s already exists", sp->name, dir);
        else
            mpl_err(err, errlen, "%s %s: %s", sp->name, data, strerror(errno));
        goto out;
    }
    made = 1;
    close(fd);
    if ((rc = env_new(sp, MPL_MAP_SIZE_DEFAULT, &env)) != 0
        || (rc = mdb_env_open(env, dir, MDB_NOTLS | env_flags, 0600)) != 0
        || (rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0) {
        txn = NULL;
        mpl_err(err, errlen, "%s %s: %s", sp->name, dir, mdb_strerror(rc));
        goto out;
    }
    for (i = 0; i < sp->ndbs; i++) {
        if ((rc = mdb_dbi_open(txn, sp->dbs[i], MDB_CREATE, &dbi)) != 0)
            break;
        if (i == 0 && (rc = mdb_put(txn, dbi, &k, &v, 0)) != 0)
            break;
    }
    if (rc != 0) {
        mpl_err(err, errlen, "%s %s: %s", sp->name, dir, mdb_strerror(rc));
        goto out;
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0) {
        mpl_err(err, errlen, "%s %s: %s", sp->name, dir, mdb_strerror(rc));
        goto out;
    }
    mdb_env_close(env);
    env = NULL;
    if ((uid >= 0 || gid >= 0) && (chown(data, u, g) != 0 || chown(lock, u, g) != 0)) {
        mpl_err(err, errlen, "%s %s: chown: %s", sp->name, dir, strerror(errno));
        goto out;
    }
    /* The new directory entries must survive a power loss too. */
    if ((fd = open(dir, O_RDONLY | O_CLOEXEC)) >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    st = MP_OK;
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    if (env != NULL)
        mdb_env_close(env);
    /* A half-made store would block the retry with "already exists", and
     * nothing can be in it yet. */
    if (st != MP_OK && made) {
        unlink(data);
        if (!lock_existed)
            unlink(lock);
    }
    return st;
}

/* ---- opening ----------------------------------------------------------------------- */

/*
 * Opens the environment with eflags and refuses a data file shorter than
 * its data: reading a page past the end of the file through the map
 * faults (SIGBUS). LMDB writes the pages up to last_pgno before the meta
 * page that names it, so the size is taken after the meta page was read (a
 * size seen before opening may predate another process's commits).
 * *file_size gets that size. A WRITEMAP open sets the file to the map size
 * before this can look, which is why mpl_open checks such a store with a
 * read-only open first.
 */
static mp_status open_env(const mpl_spec *sp, const char *dir, const char *data,
                          unsigned eflags, size_t map_size, MDB_env **out,
                          uint64_t *file_size, char *err, size_t errlen)
{
    MDB_env *env = NULL;
    MDB_envinfo info;
    MDB_stat est;
    mdb_filehandle_t fd;
    struct stat sb;
    int rc;

    if ((rc = env_new(sp, map_size, &env)) != 0
        || (rc = mdb_env_open(env, dir, eflags, 0600)) != 0
        || (rc = mdb_env_info(env, &info)) != 0
        || (rc = mdb_env_stat(env, &est)) != 0
        || (rc = mdb_env_get_fd(env, &fd)) != 0)
        mpl_err(err, errlen, "%s %s: %s", sp->name, dir, mdb_strerror(rc));
    else if (fstat(fd, &sb) != 0)
        mpl_err(err, errlen, "%s %s: %s", sp->name, data, strerror(errno));
    else if ((uint64_t)info.me_last_pgno + 1 > (uint64_t)sb.st_size / est.ms_psize)
        mpl_err(err, errlen, "%s %s: %s is truncated", sp->name, dir, data);
    else {
        *file_size = (uint64_t)sb.st_size;
        *out = env;
        return MP_OK;
    }
    if (env != NULL)
        mdb_env_close(env);
    return MP_ERR_STORE;
}

/* The larger of the wanted map size and the file's size (see mpl_open). */
static size_t map_for(size_t wanted, uint64_t file_size)
{
    size_t size = wanted ? wanted : MPL_MAP_SIZE_DEFAULT;

    if (file_size > (uint64_t)SIZE_MAX)
        return SIZE_MAX;
    return (size_t)file_size > size ? (size_t)file_size : size;
}

/* Opens the tables by name in a read transaction: the format must match,
 * the first nrequired tables must exist. Never MDB_CREATE here: a foreign
 * LMDB file must stay untouched. A format of an older version named in o
 * is refused with o->old_hint. */
static mp_status open_tables(const mpl_spec *sp, const char *dir, const mpl_open_opts *o,
                             MDB_env *env, MDB_dbi *const dbis[], int *complete, char *err,
                             size_t errlen)
{
    const char *format = o->format != NULL ? o->format : sp->format;
    char old[64] = "";
    MDB_txn *txn = NULL;
    MDB_val k = mpl_val("format", 6), v;
    size_t i, flen = strlen(format);
    int rc, dead;

    *complete = 1;
    /* Apache children die holding reader slots; free them now. */
    if ((rc = mdb_reader_check(env, &dead)) != 0
        || (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0) {
        mpl_err(err, errlen, "%s %s: %s", sp->name, dir, mdb_strerror(rc));
        return MP_ERR_STORE;
    }
    rc = mdb_dbi_open(txn, sp->dbs[0], 0, dbis[0]);
    if (rc == 0)
        rc = mdb_get(txn, *dbis[0], &k, &v);
    if (rc == 0 && (v.mv_size != flen || memcmp(v.mv_data, format, flen) != 0)) {
        for (i = 0; i < o->nold; i++)
            if (v.mv_size == strlen(o->old_formats[i])
                && memcmp(v.mv_data, o->old_formats[i], v.mv_size) == 0)
                snprintf(old, sizeof old, "%s", o->old_formats[i]);
        rc = MDB_NOTFOUND;
    }
    for (i = 1; rc == 0 && i < sp->nrequired; i++)
        rc = mdb_dbi_open(txn, sp->dbs[i], 0, dbis[i]);
    /* The later tables: a store without them is still ours. */
    for (i = sp->nrequired; rc == 0 && i < sp->ndbs; i++) {
        rc = mdb_dbi_open(txn, sp->dbs[i], 0, dbis[i]);
        if (rc == MDB_NOTFOUND) {
            *complete = 0;
            rc = 0;
        }
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        if (old[0])
            mpl_err(err, errlen, "%s %s is in the older format %s; %s %s", sp->name, dir, old,
                    o->old_hint ? o->old_hint : "upgrade it first:", dir);
        else if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE)
            mpl_err(err, errlen, "%s %s: not a %s or wrong version", sp->name, dir, sp->kind);
        else
            mpl_err(err, errlen, "%s %s: %s", sp->name, dir, mdb_strerror(rc));
        return MP_ERR_STORE;
    }
    /* Committing a read transaction is what makes its dbi handles usable
     * by later transactions. */
    if ((rc = mdb_txn_commit(txn)) != 0) {
        mpl_err(err, errlen, "%s %s: %s", sp->name, dir, mdb_strerror(rc));
        return MP_ERR_STORE;
    }
    return MP_OK;
}

/* Upgrade in place: the format is checked, so this is our store. Apache
 * children may race here; LMDB serialises the write transactions and
 * MDB_CREATE opens a table that another one created. */
static mp_status add_tables(const mpl_spec *sp, const char *dir, MDB_env *env,
                            MDB_dbi *const dbis[], char *err, size_t errlen)
{
    MDB_txn *txn = NULL;
    size_t i;
    int rc;

    if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0) {
        mpl_err(err, errlen, "%s %s: %s", sp->name, dir, mdb_strerror(rc));
        return MP_ERR_STORE;
    }
    for (i = sp->nrequired; rc == 0 && i < sp->ndbs; i++)
        rc = mdb_dbi_open(txn, sp->dbs[i], MDB_CREATE, dbis[i]);
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    if (rc != 0) {
        mpl_err(err, errlen, "%s %s: adding %s: %s", sp->name, dir,
                sp->added ? sp->added : "tables", mdb_strerror(rc));
        return MP_ERR_STORE;
    }
    return MP_OK;
}

/* The first problem a check reports, for a message. */
typedef struct {
    char first[MPL_MSG_MAX];
} first_problem;

static void keep_first(void *ctx, const char *table, const MDB_val *key, const char *what)
{
    first_problem *f = ctx;

    (void)key;
    if (f->first[0] == 0)
        snprintf(f->first, sizeof f->first, "%s: %s", table, what);
}

/* The meta and root pages of env, read from the file: 0 when they are
 * sound, 1 when damaged (the first problem in err), -1 when they could not
 * be read. */
static int roots_damaged(const mpl_spec *sp, const char *dir, MDB_env *env, char *err,
                         size_t errlen)
{
    first_problem f;
    mpl_check_stats cs;
    MDB_txn *txn = NULL;
    int rc, tries;
    mp_status st = MP_ERR_BUSY;

    f.first[0] = 0;
    for (tries = 0; tries < 100 && st == MP_ERR_BUSY; tries++) {
        if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0) {
            mpl_err(err, errlen, "%s %s: %s", sp->name, dir, mdb_strerror(rc));
            return -1;
        }
        st = mpl_check(sp, env, txn, MPL_CHECK_ROOTS, 0, NULL, keep_first, &f, &cs);
        mdb_txn_abort(txn);
    }
    if (st != MP_OK) {
        mpl_err(err, errlen, "%s %s: checking its pages: %s", sp->name, dir,
                st == MP_ERR_BUSY ? "too many concurrent commits" : mpl_errmsg(sp));
        return -1;
    }
    if (cs.problems == 0)
        return 0;
    mpl_err(err, errlen, "%s %s is damaged: %s", sp->name, dir, f.first);
    return 1;
}

mp_status mpl_open(const mpl_spec *sp, const char *dir, int rdonly, unsigned env_flags,
                   size_t map_size, MDB_env **out, MDB_dbi *const dbis[], int *complete,
                   char *err, size_t errlen)
{
    mpl_open_opts o;

    memset(&o, 0, sizeof o);
    o.rdonly = rdonly;
    o.env_flags = env_flags;
    o.map_size = map_size;
    return mpl_open_ex(sp, dir, &o, out, dbis, complete, NULL, err, errlen);
}

mp_status mpl_open_ex(const mpl_spec *sp, const char *dir, const mpl_open_opts *o,
                      MDB_env **out, MDB_dbi *const dbis[], int *complete, int *damaged,
                      char *err, size_t errlen)
{
    char data[PATH_BUF];
    struct stat sb;
    MDB_env *env = NULL;
    unsigned eflags = MDB_NOTLS | MDB_NORDAHEAD;
    uint64_t size = 0;
    size_t map_size;
    int all = 1, dmg;
    mp_status st = MP_ERR_STORE;

    if (damaged != NULL)
        *damaged = 0;
    if (o == NULL || dir == NULL || out == NULL || dbis == NULL
        || !data_path(data, dir, "data.mdb")) {
        mpl_err(err, errlen, "invalid %s arguments", sp->name);
        st = MP_ERR_ARG;
        goto out;
    }
    /* mdb_env_open would create a missing file, and an empty store would
     * accept every replay (and forget every account): look first. */
    if (stat(data, &sb) != 0) {
        if (errno == ENOENT)
            mpl_err(err, errlen, "%s %s does not exist; %s", sp->name, dir, sp->create_hint);
        else
            mpl_err(err, errlen, "%s %s: %s", sp->name, data, strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size == 0) {
        /* LMDB would initialise an empty file as a new store. */
        mpl_err(err, errlen, "%s %s: %s is %s", sp->name, dir, data,
                S_ISREG(sb.st_mode) ? "empty" : "not a regular file");
        goto out;
    }
    size = (uint64_t)sb.st_size;
    /* A tool maps what the file is: a larger map would grow the file of a
     * WRITEMAP store past the map of the servers using it. */
    map_size = o->map_file ? (size > (uint64_t)SIZE_MAX ? SIZE_MAX : (size_t)size)
                           : o->map_size;
    if (o->rdonly)
        eflags |= MDB_RDONLY;
    else
        eflags |= o->env_flags;
    /* A WRITEMAP open grows the file to the map size at once, zero-filling
     * what a truncated file lacks, so the check runs on a read-only open
     * first, which changes nothing. */
    if (eflags & MDB_WRITEMAP) {
        if ((st = open_env(sp, dir, data, MDB_NOTLS | MDB_NORDAHEAD | MDB_RDONLY,
                           map_for(map_size, size), &env, &size, err, errlen)) != MP_OK)
            goto out;
        mdb_env_close(env);
        env = NULL;
        if (o->map_file)
            map_size = size > (uint64_t)SIZE_MAX ? SIZE_MAX : (size_t)size;
    }
    if ((st = open_env(sp, dir, data, eflags, map_for(map_size, size), &env, &size, err,
                       errlen)) != MP_OK)
        goto out;
    if (o->check_roots && (dmg = roots_damaged(sp, dir, env, err, errlen)) != 0) {
        if (damaged != NULL)
            *damaged = dmg > 0;
        st = MP_ERR_STORE;
        goto out;
    }
    if ((st = open_tables(sp, dir, o, env, dbis, &all, err, errlen)) != MP_OK)
        goto out;
    if (!all && !o->rdonly) {
        if ((st = add_tables(sp, dir, env, dbis, err, errlen)) != MP_OK)
            goto out;
        all = 1;
    }
    if (complete != NULL)
        *complete = all;
    *out = env;
    env = NULL;
    st = MP_OK;
out:
    if (env != NULL)
        mdb_env_close(env);
    return st;
}

/* ---- transactions and cursors ------------------------------------------------------- */

mp_status mpl_begin(const mpl_spec *sp, MDB_env *env, unsigned flags, MDB_txn **txn)
{
    int rc;

    if ((rc = mdb_txn_begin(env, NULL, flags, txn)) != 0) {
        *txn = NULL;
        return mpl_fail(sp, "begin", rc);
    }
    return MP_OK;
}

mp_status mpl_commit(const mpl_spec *sp, MDB_txn **txn)
{
    int rc = mdb_txn_commit(*txn);

    *txn = NULL;
    return rc != 0 ? mpl_fail(sp, "commit", rc) : MP_OK;
}

mp_status mpl_read_cursor(const mpl_spec *sp, MDB_env *env, MDB_dbi dbi, MDB_txn **txn,
                          MDB_cursor **cur)
{
    int rc;

    *txn = NULL;
    *cur = NULL;
    if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, txn)) != 0) {
        *txn = NULL;
        return mpl_fail(sp, "begin", rc);
    }
    if ((rc = mdb_cursor_open(*txn, dbi, cur)) != 0) {
        *cur = NULL;
        mdb_txn_abort(*txn);
        *txn = NULL;
        return mpl_fail(sp, "begin", rc);
    }
    return MP_OK;
}

int mpl_prefix_get(MDB_cursor *cur, int first, const uint8_t *prefix, size_t n, MDB_val *k,
                   MDB_val *v)
{
    int rc;

    if (first)
        *k = mpl_val(prefix, n);
    if ((rc = mdb_cursor_get(cur, k, v, first ? MDB_SET_RANGE : MDB_NEXT)) != 0)
        return rc;
    if (k->mv_size < n || memcmp(k->mv_data, prefix, n) != 0)
        return MDB_NOTFOUND;
    return 0;
}

mp_status mpl_walk_end(const mpl_spec *sp, const char *what, int rc)
{
    return rc == 0 || rc == MDB_NOTFOUND ? MP_OK : mpl_fail(sp, what, rc);
}

/* ---- the expiry index ---------------------------------------------------------------- */

size_t mpl_expiry_key(uint8_t *key, uint64_t when, uint8_t kind, const uint8_t *rkey,
                      size_t rlen)
{
    mpl_put_u64(key, when);
    key[8] = kind;
    memcpy(key + 9, rkey, rlen);
    return 9 + rlen;
}

mp_status mpl_expiry_add(const mpl_spec *sp, MDB_txn *txn, MDB_dbi index, uint64_t when,
                         uint8_t kind, const uint8_t *rkey, size_t rlen)
{
    uint8_t key[MPL_KEY_MAX];
    MDB_val k, v = mpl_val("", 0);
    int rc;

    if (rlen > MPL_KEY_MAX - 9)
        return mpl_bad_arg(sp, "expiry index key");
    k = mpl_val(key, mpl_expiry_key(key, when, kind, rkey, rlen));
    if ((rc = mdb_put(txn, index, &k, &v, 0)) != 0)
        return mpl_fail(sp, "expiry index write", rc);
    return MP_OK;
}

mp_status mpl_compact(const mpl_spec *sp, MDB_txn *txn, MDB_dbi index, const mpl_kind *kinds,
                      size_t nkinds, size_t key_max, uint64_t now, size_t max, size_t *removed,
                      int *more)
{
    return mpl_compact_checked(sp, txn, index, kinds, nkinds, key_max, now, max, removed, more,
                               NULL, NULL);
}

mp_status mpl_compact_checked(const mpl_spec *sp, MDB_txn *txn, MDB_dbi index,
                              const mpl_kind *kinds, size_t nkinds, size_t key_max,
                              uint64_t now, size_t max, size_t *removed, int *more,
                              mpl_compact_check_fn check, void *ctx)
{
    uint8_t rkey[MPL_KEY_MAX];
    MDB_cursor *c = NULL;
    MDB_val k, v, rk, rv;
    const uint8_t *p;
    const mpl_kind *kd;
    size_t done = 0, n = 0, rlen;
    uint64_t when;
    int rc;
    mp_status st = MP_ERR_STORE;

    if (more != NULL)
        *more = 0;
    if (key_max > MPL_KEY_MAX)
        key_max = MPL_KEY_MAX;
    if ((rc = mdb_cursor_open(txn, index, &c)) != 0) {
        c = NULL;
        st = mpl_fail(sp, "compaction", rc);
        goto out;
    }
    for (;;) {
        /* Every processed entry is deleted, so the next is always first. */
        rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
        if (rc == MDB_NOTFOUND)
            break;
        if (rc != 0) {
            st = mpl_fail(sp, "compaction read", rc);
            goto out;
        }
        p = k.mv_data;
        if (k.mv_size >= 9 && mpl_get_u64(p) > now)
            break;
        if (done == max) {
            if (more != NULL)
                *more = 1;
            break;
        }
        /* A damaged entry stops compaction rather than delete by it. */
        if (check != NULL && check(ctx, 0, &k, &v) != 0)
            goto out;
        kd = k.mv_size > 9 && k.mv_size <= key_max && p[8] >= 1 && (size_t)p[8] <= nkinds
            ? &kinds[p[8] - 1] : NULL;
        if (kd != NULL) {
            when = mpl_get_u64(p);
            rlen = k.mv_size - 9;
            /* LMDB promises returned data only until the next write. */
            memcpy(rkey, p + 9, rlen);
            rk = mpl_val(rkey, rlen);
            rc = mdb_get(txn, kd->dbi, &rk, &rv);
            /* The record's time decides: it must be the record's own. */
            if (rc == 0 && check != NULL && check(ctx, p[8], &rk, &rv) != 0)
                goto out;
            if (rc == 0 && rv.mv_size >= kd->time_off + 8
                && mpl_get_u64((const uint8_t *)rv.mv_data + kd->time_off) == when) {
                if ((rc = mdb_del(txn, kd->dbi, &rk, NULL)) != 0) {
                    st = mpl_fail(sp, "compaction delete", rc);
                    goto out;
                }
                n++;
            } else if (rc != 0 && rc != MDB_NOTFOUND) {
                st = mpl_fail(sp, "compaction read", rc);
                goto out;
            }
        }
        if ((rc = mdb_cursor_del(c, 0)) != 0) {
            st = mpl_fail(sp, "compaction delete", rc);
            goto out;
        }
        done++;
    }
    *removed = n;
    st = MP_OK;
out:
    if (c != NULL)
        mdb_cursor_close(c);
    return st;
}

/* ---- checksums -------------------------------------------------------------------------- */

/* Slicing by 8 (the reflected Castagnoli polynomial 0x82F63B78): tables
 * made once per process. */
static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    uint32_t c;
    unsigned n, k;

    for (n = 0; n < 256; n++) {
        c = n;
        for (k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78U : c >> 1;
        crc_tab[0][n] = c;
    }
    for (n = 0; n < 256; n++)
        for (k = 1; k < 8; k++)
            crc_tab[k][n] = (crc_tab[k - 1][n] >> 8) ^ crc_tab[0][crc_tab[k - 1][n] & 0xff];
}

uint32_t mpl_crc32c(uint32_t crc, const void *buf, size_t n)
{
    const uint8_t *p = buf;

    (void)pthread_once(&crc_once, crc_init);
    crc = ~crc;
    while (n >= 8) {
        crc ^= (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        crc = crc_tab[7][crc & 0xff] ^ crc_tab[6][(crc >> 8) & 0xff]
            ^ crc_tab[5][(crc >> 16) & 0xff] ^ crc_tab[4][crc >> 24]
            ^ crc_tab[3][p[4]] ^ crc_tab[2][p[5]] ^ crc_tab[1][p[6]] ^ crc_tab[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n-- > 0)
        crc = crc_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- checking the file ------------------------------------------------------------------ */

/*
 * LMDB 0.9's file, data version 1 (liblmdb mdb.c: MDB_page, MDB_node,
 * MDB_db, MDB_meta): native byte order; page numbers, transaction ids and
 * counts are size_t. Pages 0 and 1 hold the two meta pages; a page starts
 * with its number, a pad, its flags and the bounds of its free space
 * (lower, upper), or for an overflow page the count of its pages; then
 * the offsets of its nodes. A node is lo, hi, flags, key size, key, data:
 * in a branch page lo | hi << 16 | flags << 32 is the child's page, in a
 * leaf lo | hi << 16 is the data size and the data is inline, or the
 * number of its first overflow page (F_BIGDATA), or a table's MDB_db (in
 * the main table, F_SUBDATA).
 */
#define RW             sizeof(size_t)
#define PG_HDR         (RW + 8)
#define PG_FLAGS       (RW + 2)
#define PG_LOWER       (RW + 4)
#define PG_UPPER       (RW + 6)
#define PG_PAGES       (RW + 4)
#define PF_BRANCH      0x01
#define PF_LEAF        0x02
#define PF_OVERFLOW    0x04
#define PF_META        0x08
#define PF_DIRTY       0x10
#define NODE_HDR       8
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define NODE_LO        2
#define NODE_HI        0
#else
#define NODE_LO        0
#define NODE_HI        2
#endif
#define NODE_FLAGS     4
#define NODE_KSIZE     6
#define NF_BIGDATA     0x01
#define NF_SUBDATA     0x02
#define NF_DUPDATA     0x04
#define DB_SIZE        (8 + 5 * RW)
#define DB_PAD         0
#define DB_FLAGS       4
#define DB_DEPTH       6
#define DB_BRANCH      8
#define DB_LEAF        (8 + RW)
#define DB_OVERFLOW    (8 + 2 * RW)
#define DB_ENTRIES     (8 + 3 * RW)
#define DB_ROOT        (8 + 4 * RW)
#define META_MAGIC     0
#define META_VERSION   4
#define META_DBS       ((8 + sizeof(void *) + RW + RW - 1) / RW * RW)
#define META_LAST      (META_DBS + 2 * DB_SIZE)
#define META_TXNID     (META_LAST + RW)
#define META_END       (META_TXNID + RW)
#define LMDB_MAGIC     0xBEEFC0DEU
#define LMDB_VERSION   1
#define DBF_INTEGERKEY 0x08
#define MAX_DEPTH      32            /* LMDB's cursor stack */
#define NO_PAGE        ((uint64_t)(size_t)~(size_t)0)
#define VALUE_MAX      ((size_t)64 << 20)

enum { TREE_FREE, TREE_MAIN, TREE_TABLE };

typedef struct {
    const mpl_spec  *sp;
    int              fd;
    size_t           psize;
    uint64_t         last;          /* the transaction's last page */
    uint8_t         *seen;          /* a bit per page: reached already */
    uint8_t         *bufs;          /* a page per tree level */
    uint16_t        *offs;          /* its node offsets */
    uint8_t         *ov;            /* an overflow value */
    size_t           ovcap;
    int              level;         /* MPL_CHECK_* */
    uint64_t         stride;        /* sampling: one leaf in stride is read */
    uint64_t         leafno;
    int              sampled;
    mpl_record_fn    rec;
    mpl_damage_fn    dmg;
    void            *ctx;
    mpl_check_stats *st;
    mp_status        io;            /* MP_ERR_STORE once reading failed */
    /* the tree being walked */
    const char      *table;
    size_t           t;
    int              kind;
    int              shallow;       /* the root page only */
    unsigned         depth;
    uint64_t         problems0, n_branch, n_leaf, n_over, n_entries;
    /* the tables' headers, from the main table */
    uint8_t          dbrec[MPL_TABLES_MAX][DB_SIZE];
    int              found[MPL_TABLES_MAX];
} chk;

static uint16_t rd16(const uint8_t *p)
{
    uint16_t v;

    memcpy(&v, p, sizeof v);
    return v;
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof v);
    return v;
}

static uint64_t rdw(const uint8_t *p)
{
    size_t v;

    memcpy(&v, p, sizeof v);
    return (uint64_t)v;
}

__attribute__((format(printf, 3, 4)))
static void problem(chk *c, const MDB_val *key, const char *fmt, ...)
{
    char what[MPL_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    c->st->problems++;
    if (c->dmg != NULL)
        c->dmg(c->ctx, c->table, key, what);
}

static int read_at(chk *c, uint8_t *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    ssize_t r;

    if (c->io != MP_OK)
        return 0;
    while (got < n) {
        r = pread(c->fd, buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            mpl_msg(c->sp, "%s: reading the file at %llu: %s", c->sp->name,
                    (unsigned long long)(off + got), r < 0 ? strerror(errno) : "end of file");
            c->io = MP_ERR_STORE;
            return 0;
        }
        got += (size_t)r;
    }
    return 1;
}

/* 1 when pgno was reached before (and now is). */
static int seen(chk *c, uint64_t pgno)
{
    uint8_t bit = (uint8_t)(1u << (pgno & 7));
    int was = (c->seen[pgno >> 3] & bit) != 0;

    c->seen[pgno >> 3] |= bit;
    return was;
}

/* Keys as the tree orders them: size_t numbers in the free list, else
 * bytes, a prefix first (LMDB's mdb_cmp_memn). */
static int key_cmp(const chk *c, const MDB_val *a, const MDB_val *b)
{
    size_t n = a->mv_size < b->mv_size ? a->mv_size : b->mv_size;
    uint64_t x, y;
    int r;

    if (c->kind == TREE_FREE && a->mv_size == RW && b->mv_size == RW) {
        x = rdw(a->mv_data);
        y = rdw(b->mv_data);
        return x < y ? -1 : x > y;
    }
    r = n ? memcmp(a->mv_data, b->mv_data, n) : 0;
    if (r != 0)
        return r;
    return a->mv_size < b->mv_size ? -1 : a->mv_size > b->mv_size;
}

/* A page number a tree points to: inside the file, past the meta pages,
 * reached once. */
static int page_ok(chk *c, uint64_t pgno, const char *what)
{
    if (pgno < 2 || pgno > c->last) {
        problem(c, NULL, "%s page %llu is outside the file (last page %llu)", what,
                (unsigned long long)pgno, (unsigned long long)c->last);
        return 0;
    }
    if (seen(c, pgno)) {
        problem(c, NULL, "page %llu is reached twice (%s)", (unsigned long long)pgno, what);
        return 0;
    }
    return 1;
}

/* The value of a F_BIGDATA record: its overflow pages, checked, read into
 * c->ov. NULL when damaged or unreadable. */
static const uint8_t *overflow(chk *c, uint64_t pgno, size_t dsize, const MDB_val *key)
{
    uint8_t hdr[PG_HDR];
    uint64_t npages, i;

    if (!page_ok(c, pgno, "overflow"))
        return NULL;
    if (!read_at(c, hdr, sizeof hdr, pgno * c->psize))
        return NULL;
    npages = rd32(hdr + PG_PAGES);
    if (rdw(hdr) != pgno || (rd16(hdr + PG_FLAGS) & ~PF_DIRTY) != PF_OVERFLOW || npages == 0
        || npages > c->last - pgno + 1 || dsize > npages * c->psize - PG_HDR
        || dsize > VALUE_MAX) {
        problem(c, key, "overflow page %llu: bad header (page %llu, flags %#x, %llu pages "
                "for %zu bytes)", (unsigned long long)pgno, (unsigned long long)rdw(hdr),
                (unsigned)rd16(hdr + PG_FLAGS), (unsigned long long)npages, dsize);
        return NULL;
    }
    for (i = 1; i < npages; i++)
        if (seen(c, pgno + i)) {
            problem(c, key, "overflow page %llu is reached twice",
                    (unsigned long long)(pgno + i));
            return NULL;
        }
    c->n_over += npages;
    c->st->pages_read += npages;
    if (c->ovcap < dsize + 1) {
        uint8_t *nb = realloc(c->ov, dsize + 1);

        if (nb == NULL) {
            mpl_msg(c->sp, "%s: out of memory", c->sp->name);
            c->io = MP_ERR_NOMEM;
            return NULL;
        }
        c->ov = nb;
        c->ovcap = dsize + 1;
    }
    if (!read_at(c, c->ov, dsize, pgno * c->psize + PG_HDR))
        return NULL;
    return c->ov;
}

/* One leaf record of the tree being walked. */
static void leaf_record(chk *c, const MDB_val *key, unsigned nflags, const MDB_val *val)
{
    const uint8_t *p = val->mv_data;
    uint64_t n, i, pg;
    size_t t;
    const char *why;

    switch (c->kind) {
    case TREE_FREE:
        if (val->mv_size < RW || val->mv_size % RW != 0
            || (n = rdw(p)) != val->mv_size / RW - 1) {
            problem(c, NULL, "free list record of %zu bytes is not a page list", val->mv_size);
            return;
        }
        for (i = 1; i <= n; i++) {
            pg = rdw(p + i * RW);
            if (pg < 2 || pg > c->last) {
                problem(c, NULL, "free list names page %llu, outside the file",
                        (unsigned long long)pg);
            } else if (seen(c, pg)) {
                problem(c, NULL, "free list names page %llu, which is in use or listed twice",
                        (unsigned long long)pg);
            } else {
                c->st->pages_free++;
            }
        }
        return;
    case TREE_MAIN:
        if (!(nflags & NF_SUBDATA)) {
            if (c->level != MPL_CHECK_ROOTS)
                problem(c, key, "the main table holds a record that is not a table");
            return;
        }
        if (val->mv_size != DB_SIZE) {
            problem(c, key, "table header of %zu bytes", val->mv_size);
            return;
        }
        for (t = 0; t < c->sp->ndbs && t < MPL_TABLES_MAX; t++)
            if (strlen(c->sp->dbs[t]) == key->mv_size
                && memcmp(c->sp->dbs[t], key->mv_data, key->mv_size) == 0)
                break;
        if (t < c->sp->ndbs && t < MPL_TABLES_MAX) {
            memcpy(c->dbrec[t], p, DB_SIZE);
            c->found[t] = 1;
        } else if (c->level != MPL_CHECK_ROOTS) {
            problem(c, key, "unknown table \"%.*s\"", (int)(key->mv_size > 64 ? 64 : key->mv_size),
                    (const char *)key->mv_data);
        }
        return;
    default:
        if (nflags & NF_SUBDATA) {
            problem(c, key, "a record holds a table");
            return;
        }
        c->st->records[c->t]++;
        if (c->rec != NULL && (why = c->rec(c->ctx, c->t, key, val)) != NULL) {
            c->st->bad_records[c->t]++;
            problem(c, key, "%s", why);
        }
        return;
    }
}

/* A record of a table that is damaged before its value could be read. */
static void bad_record(chk *c)
{
    if (c->kind == TREE_TABLE) {
        c->st->records[c->t]++;
        c->st->bad_records[c->t]++;
    }
}

/* Walks the subtree at pgno, left levels deep (1: a leaf); its keys must
 * lie in [lo, hi) (NULL: no bound). */
static void walk(chk *c, uint64_t pgno, unsigned left, const MDB_val *lo, const MDB_val *hi)
{
    uint8_t *buf = c->bufs + (size_t)(c->depth - left) * c->psize;
    uint16_t *off = c->offs + (size_t)(c->depth - left) * (c->psize / 2);
    unsigned want = left > 1 ? PF_BRANCH : PF_LEAF, lower, upper, n, i, nflags, ksize;
    MDB_val key, prev, next, val;
    uint64_t child, dsize;
    const uint8_t *np, *data;

    if (c->io != MP_OK || !page_ok(c, pgno, want == PF_BRANCH ? "branch" : "leaf"))
        return;
    if (!read_at(c, buf, c->psize, pgno * c->psize))
        return;
    c->st->pages_read++;
    if (rdw(buf) != pgno) {
        problem(c, NULL, "page %llu holds page %llu", (unsigned long long)pgno,
                (unsigned long long)rdw(buf));
        return;
    }
    if ((rd16(buf + PG_FLAGS) & ~PF_DIRTY) != want) {
        problem(c, NULL, "page %llu: flags %#x where a %s page belongs",
                (unsigned long long)pgno, (unsigned)rd16(buf + PG_FLAGS),
                want == PF_BRANCH ? "branch" : "leaf");
        return;
    }
    lower = rd16(buf + PG_LOWER);
    upper = rd16(buf + PG_UPPER);
    if (lower < PG_HDR + 2 || (lower - PG_HDR) % 2 != 0 || upper > c->psize || lower > upper) {
        problem(c, NULL, "page %llu: bad bounds (lower %u, upper %u)", (unsigned long long)pgno,
                lower, upper);
        return;
    }
    n = (lower - PG_HDR) / 2;
    if (want == PF_BRANCH)
        c->n_branch++;
    else
        c->n_leaf++;
    /* Every node inside the page, before any is used. */
    for (i = 0; i < n; i++) {
        off[i] = rd16(buf + PG_HDR + 2 * i);
        if (off[i] < upper || off[i] % 2 != 0 || (size_t)off[i] + NODE_HDR > c->psize
            || (size_t)off[i] + NODE_HDR + rd16(buf + off[i] + NODE_KSIZE) > c->psize) {
            problem(c, NULL, "page %llu: node %u lies outside the page", (unsigned long long)pgno,
                    i);
            return;
        }
    }
    for (i = 0; i < n; i++) {
        np = buf + off[i];
        nflags = rd16(np + NODE_FLAGS);
        ksize = rd16(np + NODE_KSIZE);
        key = mpl_val(np + NODE_HDR, ksize);
        if (want == PF_BRANCH) {
            /* Node 0's key is never compared: its subtree starts at lo. */
            if (i > 0 && ((i > 1 && key_cmp(c, &prev, &key) >= 0)
                          || (lo != NULL && key_cmp(c, &key, lo) < 0)
                          || (hi != NULL && key_cmp(c, &key, hi) >= 0))) {
                problem(c, &key, "branch page %llu: key %u out of order",
                        (unsigned long long)pgno, i);
                return;
            }
            if (i > 0)
                prev = key;
            continue;
        }
        if (nflags & ~(unsigned)(NF_BIGDATA | NF_SUBDATA) || ksize == 0
            || (c->kind == TREE_FREE && ksize != RW)) {
            bad_record(c);
            problem(c, &key, "leaf page %llu: record %u has flags %#x and a %u-byte key",
                    (unsigned long long)pgno, i, nflags, ksize);
            continue;
        }
        if ((i > 0 && key_cmp(c, &prev, &key) >= 0) || (lo != NULL && key_cmp(c, &key, lo) < 0)
            || (hi != NULL && key_cmp(c, &key, hi) >= 0)) {
            /* A key moved by damage: no lookup finds it, and it may hide
             * the record it was. */
            bad_record(c);
            problem(c, &key, "leaf page %llu: record %u is out of key order (its key is "
                    "damaged, or its neighbour's)", (unsigned long long)pgno, i);
            prev = key;
            continue;
        }
        prev = key;
        c->n_entries++;
        dsize = (uint64_t)rd16(np + NODE_LO) | (uint64_t)rd16(np + NODE_HI) << 16;
        if (c->shallow)
            continue;
        if (nflags & NF_BIGDATA) {
            if ((size_t)off[i] + NODE_HDR + ksize + RW > c->psize) {
                problem(c, &key, "leaf page %llu: record %u lies outside the page",
                        (unsigned long long)pgno, i);
                continue;
            }
            if ((data = overflow(c, rdw(np + NODE_HDR + ksize), (size_t)dsize, &key)) == NULL)
                continue;
        } else {
            if ((size_t)off[i] + NODE_HDR + ksize + dsize > c->psize) {
                problem(c, &key, "leaf page %llu: record %u lies outside the page",
                        (unsigned long long)pgno, i);
                continue;
            }
            data = np + NODE_HDR + ksize;
        }
        val = mpl_val(data, (size_t)dsize);
        leaf_record(c, &key, nflags, &val);
    }
    if (want != PF_BRANCH || c->shallow)
        return;
    for (i = 0; i < n && c->io == MP_OK; i++) {
        np = buf + off[i];
        child = (uint64_t)rd16(np + NODE_LO) | (uint64_t)rd16(np + NODE_HI) << 16;
        if (RW > 4)
            child |= (uint64_t)rd16(np + NODE_FLAGS) << 32;
        if (i > 0)
            key = mpl_val(np + NODE_HDR, rd16(np + NODE_KSIZE));
        if (i + 1 < n)
            next = mpl_val(buf + off[i + 1] + NODE_HDR, rd16(buf + off[i + 1] + NODE_KSIZE));
        /* Sampling: of the leaves, one in stride is read; the others are
         * only counted as reached. */
        if (left == 2 && c->stride > 1 && c->leafno++ % c->stride != 0) {
            c->sampled = 1;
            if (page_ok(c, child, "leaf"))
                c->n_leaf++;
            continue;
        }
        walk(c, child, left - 1, i > 0 ? &key : lo, i + 1 < n ? &next : hi);
    }
}

/* One tree, from its header db (DB_SIZE bytes). */
static void tree(chk *c, const char *name, size_t t, int kind, const uint8_t *db)
{
    unsigned flags = rd16(db + DB_FLAGS), depth = rd16(db + DB_DEPTH);
    uint64_t root = rdw(db + DB_ROOT), entries = rdw(db + DB_ENTRIES);
    uint64_t branch = rdw(db + DB_BRANCH), leaf = rdw(db + DB_LEAF);
    uint64_t over = rdw(db + DB_OVERFLOW);

    c->table = name;
    c->t = t;
    c->kind = kind;
    c->problems0 = c->st->problems;
    c->n_branch = c->n_leaf = c->n_over = c->n_entries = 0;
    if (kind == TREE_TABLE)
        c->st->entries[t] = entries;
    if (flags != (kind == TREE_FREE ? DBF_INTEGERKEY : 0)) {
        problem(c, NULL, "table flags %#x", flags);
        return;
    }
    if (root == NO_PAGE) {
        if (depth != 0 || entries != 0 || branch != 0 || leaf != 0 || over != 0)
            problem(c, NULL, "an empty table with %llu records in its header",
                    (unsigned long long)entries);
        return;
    }
    if (depth < 1 || depth > MAX_DEPTH) {
        problem(c, NULL, "depth %u", depth);
        return;
    }
    c->depth = depth;
    c->shallow = c->level == MPL_CHECK_ROOTS && kind != TREE_MAIN;
    walk(c, root, depth, NULL, NULL);
    if (c->io != MP_OK || c->shallow || c->sampled || c->st->problems != c->problems0)
        return;
    if (c->n_branch != branch || c->n_leaf != leaf || c->n_over != over
        || c->n_entries != entries)
        problem(c, NULL, "the header counts %llu records on %llu/%llu/%llu branch/leaf/overflow "
                "pages, the tree holds %llu on %llu/%llu/%llu", (unsigned long long)entries,
                (unsigned long long)branch, (unsigned long long)leaf, (unsigned long long)over,
                (unsigned long long)c->n_entries, (unsigned long long)c->n_branch,
                (unsigned long long)c->n_leaf, (unsigned long long)c->n_over);
}

/* The meta page of transaction txnid, copied into meta (META_END bytes):
 * 1, 0 when neither holds it (MP_ERR_BUSY when a later one replaced it),
 * -1 when unreadable. */
static int find_meta(chk *c, uint64_t txnid, uint8_t *meta, mp_status *why)
{
    uint8_t a[PG_HDR + META_END], b[PG_HDR + META_END];
    uint64_t m, later = 0;
    int i;

    for (i = 0; i < 2; i++) {
        /* Read twice: a writer replacing it meanwhile shows as a
         * difference, never as a page of two transactions. */
        if (!read_at(c, a, sizeof a, (uint64_t)i * c->psize)
            || !read_at(c, b, sizeof b, (uint64_t)i * c->psize))
            return -1;
        if (memcmp(a, b, sizeof a) != 0) {
            later = 1;
            continue;
        }
        if (rd32(a + PG_HDR + META_MAGIC) != LMDB_MAGIC
            || rd32(a + PG_HDR + META_VERSION) != LMDB_VERSION
            || (rd16(a + PG_FLAGS) & PF_META) == 0 || rdw(a) != (uint64_t)i) {
            problem(c, NULL, "meta page %d is damaged", i);
            continue;
        }
        m = rdw(a + PG_HDR + META_TXNID);
        if (m == txnid) {
            memcpy(meta, a + PG_HDR, META_END);
            return 1;
        }
        if (m > txnid)
            later = 1;
    }
    *why = later ? MP_ERR_BUSY : MP_OK;
    return 0;
}

mp_status mpl_check(const mpl_spec *sp, MDB_env *env, MDB_txn *txn, int level,
                    uint64_t leaf_budget, mpl_record_fn rec, mpl_damage_fn dmg, void *ctx,
                    mpl_check_stats *st)
{
    uint8_t meta[META_END];
    MDB_stat est;
    struct stat sb;
    mdb_filehandle_t fd;
    chk *c = NULL;
    uint64_t txnid, leaves = 0, used = 0, i;
    size_t t;
    int rc, got;
    mp_status why = MP_OK, ret = MP_ERR_STORE;

    memset(st, 0, sizeof *st);
    if ((c = calloc(1, sizeof *c)) == NULL) {
        mpl_msg(sp, "%s: out of memory", sp->name);
        return MP_ERR_NOMEM;
    }
    c->sp = sp;
    c->level = level;
    c->rec = rec;
    c->dmg = dmg;
    c->ctx = ctx;
    c->st = st;
    c->io = MP_OK;
    c->table = "file";
    c->stride = 1;
    if ((rc = mdb_env_get_fd(env, &fd)) != 0 || (rc = mdb_env_stat(env, &est)) != 0) {
        ret = mpl_fail(sp, "check", rc);
        goto out;
    }
    c->fd = fd;
    c->psize = est.ms_psize;
    if (c->psize < 512 || c->psize > 65536 || fstat(fd, &sb) != 0) {
        mpl_msg(sp, "%s: check: page size %zu", sp->name, c->psize);
        goto out;
    }
    txnid = (uint64_t)mdb_txn_id(txn);
    if ((got = find_meta(c, txnid, meta, &why)) < 0) {
        ret = c->io;
        goto out;
    }
    if (got == 0) {
        if (why == MP_ERR_BUSY) {
            mpl_msg(sp, "%s: check: the transaction's meta page was replaced", sp->name);
            ret = MP_ERR_BUSY;
            goto out;
        }
        problem(c, NULL, "no meta page holds transaction %llu", (unsigned long long)txnid);
        ret = MP_OK;
        goto out;
    }
    c->last = rdw(meta + META_LAST);
    if (rd32(meta + META_DBS + DB_PAD) != c->psize || c->last < 1
        || (c->last + 1) > (uint64_t)sb.st_size / c->psize) {
        problem(c, NULL, "the meta page names page %llu of a %llu-byte file (page size %u)",
                (unsigned long long)c->last, (unsigned long long)sb.st_size,
                (unsigned)rd32(meta + META_DBS + DB_PAD));
        ret = MP_OK;
        goto out;
    }
    st->pages = c->last + 1;
    if ((c->seen = calloc((size_t)(c->last / 8 + 1), 1)) == NULL
        || (c->bufs = malloc((size_t)(MAX_DEPTH + 1) * c->psize)) == NULL
        || (c->offs = malloc((size_t)(MAX_DEPTH + 1) * (c->psize / 2) * sizeof *c->offs))
           == NULL) {
        mpl_msg(sp, "%s: out of memory", sp->name);
        ret = MP_ERR_NOMEM;
        goto out;
    }
    (void)seen(c, 0);
    (void)seen(c, 1);
    /* The main table first: it holds the other tables' headers. */
    tree(c, "file", SIZE_MAX, TREE_MAIN, meta + META_DBS + DB_SIZE);
    if (c->io != MP_OK) {
        ret = c->io;
        goto out;
    }
    for (t = 0; t < sp->ndbs && t < MPL_TABLES_MAX; t++)
        if (c->found[t])
            leaves += rdw(c->dbrec[t] + DB_LEAF);
    if (level == MPL_CHECK_SAMPLE && leaf_budget > 0 && leaves > leaf_budget)
        c->stride = (leaves + leaf_budget - 1) / leaf_budget;
    for (t = 0; t < sp->ndbs && t < MPL_TABLES_MAX && c->io == MP_OK; t++) {
        if (c->found[t]) {
            tree(c, sp->dbs[t], t, TREE_TABLE, c->dbrec[t]);
        } else if (level != MPL_CHECK_ROOTS && t < sp->nrequired) {
            c->table = sp->dbs[t];
            problem(c, NULL, "the table is missing");
        }
    }
    if (c->io == MP_OK)
        tree(c, "file", SIZE_MAX, TREE_FREE, meta + META_DBS);
    if (c->io != MP_OK) {
        ret = c->io;
        goto out;
    }
    st->complete = level != MPL_CHECK_ROOTS && !c->sampled;
    if (st->complete) {
        for (i = 0; i <= c->last; i++)
            used += (c->seen[i >> 3] >> (i & 7)) & 1;
        st->pages_unaccounted = c->last + 1 - used;
    }
    ret = MP_OK;
out:
    if (c != NULL) {
        free(c->seen);
        free(c->bufs);
        free(c->offs);
        free(c->ov);
        free(c);
    }
    return ret;
}
