/*
 * mod_micropay_lmdb.c - the LMDB plumbing of the vendor and broker stores
 * (the contract is in mod_micropay_lmdb.h).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
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
        || (rc = mdb_env_set_maxreaders(*env, MPL_MAX_READERS)) != 0) {
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
 * LMDB file must stay untouched. */
static mp_status open_tables(const mpl_spec *sp, const char *dir, MDB_env *env,
                             MDB_dbi *const dbis[], int *complete, char *err, size_t errlen)
{
    MDB_txn *txn = NULL;
    MDB_val k = mpl_val("format", 6), v;
    size_t i, flen = strlen(sp->format);
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
    if (rc == 0 && (v.mv_size != flen || memcmp(v.mv_data, sp->format, flen) != 0))
        rc = MDB_NOTFOUND;
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
        if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE)
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

mp_status mpl_open(const mpl_spec *sp, const char *dir, int rdonly, unsigned env_flags,
                   size_t map_size, MDB_env **out, MDB_dbi *const dbis[], int *complete,
                   char *err, size_t errlen)
{
    char data[PATH_BUF];
    struct stat sb;
    MDB_env *env = NULL;
    unsigned eflags = MDB_NOTLS | MDB_NORDAHEAD;
    uint64_t size = 0;
    int all = 1;
    mp_status st = MP_ERR_STORE;

    if (dir == NULL || out == NULL || dbis == NULL || !data_path(data, dir, "data.mdb")) {
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
    if (rdonly)
        eflags |= MDB_RDONLY;
    else
        eflags |= env_flags;
    /* A WRITEMAP open grows the file to the map size at once, zero-filling
     * what a truncated file lacks, so the check runs on a read-only open
     * first, which changes nothing. */
    if (eflags & MDB_WRITEMAP) {
        if ((st = open_env(sp, dir, data, MDB_NOTLS | MDB_NORDAHEAD | MDB_RDONLY,
                           map_for(map_size, size), &env, &size, err, errlen)) != MP_OK)
            goto out;
        mdb_env_close(env);
        env = NULL;
    }
    if ((st = open_env(sp, dir, data, eflags, map_for(map_size, size), &env, &size, err,
                       errlen)) != MP_OK
        || (st = open_tables(sp, dir, env, dbis, &all, err, errlen)) != MP_OK)
        goto out;
    if (!all && !rdonly) {
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
        kd = k.mv_size > 9 && k.mv_size <= key_max && p[8] >= 1 && (size_t)p[8] <= nkinds
            ? &kinds[p[8] - 1] : NULL;
        if (kd != NULL) {
            when = mpl_get_u64(p);
            rlen = k.mv_size - 9;
            /* LMDB promises returned data only until the next write. */
            memcpy(rkey, p + 9, rlen);
            rk = mpl_val(rkey, rlen);
            rc = mdb_get(txn, kd->dbi, &rk, &rv);
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
