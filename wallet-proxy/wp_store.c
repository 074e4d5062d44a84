/*
 * wp_store.c - the wallet store on LMDB (contract in wp_store.h).
 *
 * Why not mod_micropay_lmdb.c: its message slots and spec are the vendor's
 * and the broker's, and the wallet needs a handful of calls only: open a
 * private synced environment, JSON records, prefix scans, a counter. Safety
 * rules kept from it: no MDB_NOSYNC, MDB_NOTLS, files 0600, a format key.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <lmdb.h>
#include <openssl/crypto.h>
#include "wp_store.h"

#define WPS_FORMAT   "mp-wallet-1"
#define WPS_PATH_MAX 1024
#define WPS_DEFAULT_MAP ((size_t)64 * 1024 * 1024)

static const char *const table_names[WPS_NTABLES] = {
    "meta", "scrip", "secret", "chain", "inflight", "breq", "receipt", "offer", "hold",
    "history", "spent"
};

struct wp_store {
    MDB_env *env;
    MDB_dbi dbi[WPS_NTABLES];
};

struct wp_txn {
    wp_store *s;
    MDB_txn *txn;
};

static __thread char errbuf[256];

__attribute__((format(printf, 1, 2)))
static void set_err(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
}

const char *wp_store_error(void)
{
    return errbuf;
}

/* Makes dir (0700) if missing; tightens an existing one to 0700. */
static int private_dir(const char *dir, char *err, size_t errlen)
{
    struct stat sb;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "wallet store %s: %s", dir, strerror(errno));
        return -1;
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "wallet store %s: not a directory", dir);
        return -1;
    }
    if ((sb.st_mode & 0077) != 0 && chmod(dir, 0700) != 0) {
        snprintf(err, errlen, "wallet store %s: chmod 0700: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

int wp_store_open(const char *state_dir, size_t map_size, wp_store **out, char *err,
                  size_t errlen)
{
    char dir[WPS_PATH_MAX], file[WPS_PATH_MAX + 16];
    wp_store *s = NULL;
    MDB_txn *txn = NULL;
    MDB_val k, v;
    int rc, i, n, fd, rv = -1;

    n = snprintf(dir, sizeof dir, "%s/wallet.lmdb", state_dir);
    if (state_dir == NULL || state_dir[0] == '\0' || n < 0 || (size_t)n >= sizeof dir) {
        snprintf(err, errlen, "wallet store: invalid state directory");
        goto out;
    }
    if (private_dir(state_dir, err, errlen) != 0 || private_dir(dir, err, errlen) != 0)
        goto out;
    if ((s = calloc(1, sizeof *s)) == NULL) {
        snprintf(err, errlen, "wallet store: out of memory");
        goto out;
    }
    if ((rc = mdb_env_create(&s->env)) != 0) {
        s->env = NULL;
        snprintf(err, errlen, "wallet store %s: %s", dir, mdb_strerror(rc));
        goto out;
    }
    /* No MDB_NOSYNC / MDB_NOMETASYNC: a commit is durable when it returns. */
    if ((rc = mdb_env_set_maxdbs(s->env, WPS_NTABLES)) != 0
        || (rc = mdb_env_set_mapsize(s->env, map_size ? map_size : WPS_DEFAULT_MAP)) != 0
        || (rc = mdb_env_set_maxreaders(s->env, 512)) != 0
        || (rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0600)) != 0) {
        snprintf(err, errlen, "wallet store %s: %s", dir, mdb_strerror(rc));
        goto out;
    }
    /* Files made by an earlier version with a looser umask get 0600. */
    snprintf(file, sizeof file, "%s/data.mdb", dir);
    (void)chmod(file, 0600);
    snprintf(file, sizeof file, "%s/lock.mdb", dir);
    (void)chmod(file, 0600);
    if ((rc = mdb_reader_check(s->env, &i)) != 0
        || (rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0) {
        txn = NULL;
        snprintf(err, errlen, "wallet store %s: %s", dir, mdb_strerror(rc));
        goto out;
    }
    for (i = 0; i < WPS_NTABLES; i++)
        if ((rc = mdb_dbi_open(txn, table_names[i], MDB_CREATE, &s->dbi[i])) != 0) {
            snprintf(err, errlen, "wallet store %s: %s", dir, mdb_strerror(rc));
            goto out;
        }
    k.mv_data = (void *)"format";
    k.mv_size = 6;
    rc = mdb_get(txn, s->dbi[WPS_META], &k, &v);
    if (rc == MDB_NOTFOUND) {
        v.mv_data = (void *)WPS_FORMAT;
        v.mv_size = strlen(WPS_FORMAT);
        rc = mdb_put(txn, s->dbi[WPS_META], &k, &v, 0);
    } else if (rc == 0 && (v.mv_size != strlen(WPS_FORMAT)
                           || memcmp(v.mv_data, WPS_FORMAT, v.mv_size) != 0)) {
        snprintf(err, errlen, "wallet store %s: not a wallet store or wrong version", dir);
        goto out;
    }
    if (rc != 0) {
        snprintf(err, errlen, "wallet store %s: %s", dir, mdb_strerror(rc));
        goto out;
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0) {
        snprintf(err, errlen, "wallet store %s: %s", dir, mdb_strerror(rc));
        goto out;
    }
    if ((fd = open(dir, O_RDONLY | O_CLOEXEC)) >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    *out = s;
    s = NULL;
    rv = 0;
out:
    if (txn != NULL)
        mdb_txn_abort(txn);
    if (s != NULL) {
        if (s->env != NULL)
            mdb_env_close(s->env);
        free(s);
    }
    return rv;
}

void wp_store_close(wp_store *s)
{
    if (s == NULL)
        return;
    mdb_env_close(s->env);
    free(s);
}

int wp_store_begin(wp_store *s, int rdonly, wp_txn **out)
{
    wp_txn *t = calloc(1, sizeof *t);
    int rc;

    if (t == NULL) {
        set_err("wallet store: out of memory");
        return -1;
    }
    t->s = s;
    if ((rc = mdb_txn_begin(s->env, NULL, rdonly ? MDB_RDONLY : 0, &t->txn)) != 0) {
        set_err("wallet store begin: %s", mdb_strerror(rc));
        free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int wp_store_commit(wp_txn *t)
{
    int rc;

    if (t == NULL)
        return -1;
    rc = mdb_txn_commit(t->txn);
    free(t);
    if (rc != 0) {
        set_err(rc == MDB_MAP_FULL ? "wallet store full (raise store_size)"
                                   : "wallet store commit: %s", mdb_strerror(rc));
        return -1;
    }
    return 0;
}

void wp_store_abort(wp_txn *t)
{
    if (t == NULL)
        return;
    mdb_txn_abort(t->txn);
    free(t);
}

static json_t *parse(const MDB_val *v)
{
    json_t *j = json_loadb(v->mv_data, v->mv_size, JSON_REJECT_DUPLICATES, NULL);

    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

int wp_store_get(wp_txn *t, int table, const void *key, size_t klen, json_t **out)
{
    MDB_val k, v;
    json_t *j;
    int rc;

    k.mv_data = (void *)key;
    k.mv_size = klen;
    rc = mdb_get(t->txn, t->s->dbi[table], &k, &v);
    if (rc == MDB_NOTFOUND)
        return 1;
    if (rc != 0) {
        set_err("wallet store read %s: %s", table_names[table], mdb_strerror(rc));
        return -1;
    }
    if ((j = parse(&v)) == NULL) {
        set_err("wallet store: corrupt record in %s", table_names[table]);
        return -1;
    }
    *out = j;
    return 0;
}

int wp_store_put(wp_txn *t, int table, const void *key, size_t klen, const json_t *val)
{
    char *text = json_dumps(val, JSON_COMPACT);
    MDB_val k, v;
    int rc;

    if (text == NULL) {
        set_err("wallet store: out of memory");
        return -1;
    }
    k.mv_data = (void *)key;
    k.mv_size = klen;
    v.mv_data = text;
    v.mv_size = strlen(text);
    rc = mdb_put(t->txn, t->s->dbi[table], &k, &v, 0);
    OPENSSL_cleanse(text, v.mv_size);
    free(text);
    if (rc != 0) {
        set_err(rc == MDB_MAP_FULL ? "wallet store full (raise store_size)"
                                   : "wallet store write %s: %s", table_names[table],
                mdb_strerror(rc));
        return -1;
    }
    return 0;
}

int wp_store_del(wp_txn *t, int table, const void *key, size_t klen)
{
    MDB_val k;
    int rc;

    k.mv_data = (void *)key;
    k.mv_size = klen;
    rc = mdb_del(t->txn, t->s->dbi[table], &k, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        set_err("wallet store delete %s: %s", table_names[table], mdb_strerror(rc));
        return -1;
    }
    return 0;
}

int wp_store_count(wp_txn *t, int table, size_t *out)
{
    MDB_stat st;
    int rc = mdb_stat(t->txn, t->s->dbi[table], &st);

    if (rc != 0) {
        snprintf(errbuf, sizeof errbuf, "mdb_stat: %s", mdb_strerror(rc));
        return -1;
    }
    *out = st.ms_entries;
    return 0;
}

int wp_store_scan(wp_txn *t, int table, const void *prefix, size_t plen, int reverse,
                  wp_store_visit fn, void *ctx)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    json_t *j;
    int rc, r, rv = -1;

    if ((rc = mdb_cursor_open(t->txn, t->s->dbi[table], &cur)) != 0) {
        set_err("wallet store cursor %s: %s", table_names[table], mdb_strerror(rc));
        return -1;
    }
    if (reverse) {
        plen = 0;
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    } else if (plen > 0) {
        k.mv_data = (void *)prefix;
        k.mv_size = plen;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    } else {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    while (rc == 0) {
        if (plen > 0 && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0))
            break;
        if ((j = parse(&v)) == NULL) {
            set_err("wallet store: corrupt record in %s", table_names[table]);
            goto out;
        }
        r = fn(ctx, k.mv_data, k.mv_size, j);
        json_decref(j);
        if (r < 0)
            goto out;
        if (r > 0)
            break;
        rc = mdb_cursor_get(cur, &k, &v, reverse ? MDB_PREV : MDB_NEXT);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        set_err("wallet store scan %s: %s", table_names[table], mdb_strerror(rc));
        goto out;
    }
    rv = 0;
out:
    mdb_cursor_close(cur);
    return rv;
}

int wp_store_next(wp_txn *t, const char *name, uint64_t *out)
{
    char key[64];
    json_t *j = NULL, *n;
    uint64_t v = 0;
    int rc, rv = -1;

    snprintf(key, sizeof key, "seq:%s", name);
    rc = wp_store_get(t, WPS_META, key, strlen(key), &j);
    if (rc < 0)
        goto out;
    if (rc == 0 && json_is_integer(json_object_get(j, "n")))
        v = (uint64_t)json_integer_value(json_object_get(j, "n"));
    v++;
    json_decref(j);
    j = NULL;
    if ((n = json_pack("{s:I}", "n", (json_int_t)v)) == NULL) {
        set_err("wallet store: out of memory");
        goto out;
    }
    rc = wp_store_put(t, WPS_META, key, strlen(key), n);
    json_decref(n);
    if (rc != 0)
        goto out;
    *out = v;
    rv = 0;
out:
    json_decref(j);
    return rv;
}
