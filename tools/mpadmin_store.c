/* mpadmin_store.c - creating and inspecting a vendor's payment store. */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "mpadmin.h"
#include "mod_micropay_store.h"

static int store_init(const mpa_opts *o, int argc, char **argv)
{
    const char *dir = NULL, *owner = NULL;
    struct passwd *pw;
    long uid = -1, gid = -1;
    char err[256] = "";
    int i;

    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--owner") == 0 && i + 1 < argc)
            owner = argv[++i];
        else if (dir == NULL && argv[i][0] != '-')
            dir = argv[i];
        else {
            mpa_err("store init: unexpected argument '%s'", argv[i]);
            return MPA_USAGE;
        }
    }
    if (dir == NULL) {
        mpa_err("store init: which directory?");
        return MPA_USAGE;
    }
    if (owner != NULL) {
        if ((pw = getpwnam(owner)) == NULL) {
            mpa_err("store init: no user '%s'", owner);
            return MPA_USAGE;
        }
        uid = (long)pw->pw_uid;
        gid = (long)pw->pw_gid;
    }
    /* The directory holds only the store; the Apache user must be able to
     * create LMDB's lock file in it. */
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        mpa_err("store init: cannot create %s: %s", dir, strerror(errno));
        return MPA_FAIL;
    }
    if (uid >= 0 && chown(dir, (uid_t)uid, (gid_t)gid) != 0) {
        mpa_err("store init: cannot chown %s: %s", dir, strerror(errno));
        return MPA_FAIL;
    }
    if (mps_create(dir, uid, gid, err, sizeof err) != MP_OK) {
        mpa_err("store init: %s", err);
        return MPA_FAIL;
    }
    if (o->json) {
        printf("{\"store\": ");
        mpa_json_str(stdout, dir);
        printf(", \"created\": true}\n");
    } else {
        printf("created payment store %s\n", dir);
    }
    return MPA_OK;
}

static int store_stat(const mpa_opts *o, int argc, char **argv)
{
    mps *s = NULL;
    mps_stats st;
    char err[256] = "";

    if (argc != 1) {
        mpa_err("store stat: give the store directory");
        return MPA_USAGE;
    }
    if (mps_open(argv[0], MPS_RDONLY, 0, &s, err, sizeof err) != MP_OK) {
        mpa_err("%s", err);
        return MPA_FAIL;
    }
    if (mps_stat(s, &st) != MP_OK) {
        mpa_err("store stat: %s", mps_errmsg(s));
        mps_close(s);
        return MPA_FAIL;
    }
    mps_close(s);
    if (o->json)
        printf("{\"spent_scrip\": %zu, \"payword_commitments\": %zu, \"prices\": %zu, "
               "\"ledger_lines\": %zu, \"expiring\": %zu, \"payword_retries\": %zu}\n",
               st.spent, st.pw, st.prices, st.ledger, st.expiry_index, st.retry);
    else
        printf("spent scrip          %zu\npayword commitments  %zu\nprices               %zu\n"
               "ledger lines         %zu\nrecords that expire  %zu\npayword retries      %zu\n",
               st.spent, st.pw, st.prices, st.ledger, st.expiry_index, st.retry);
    return MPA_OK;
}

static int store_compact(const mpa_opts *o, int argc, char **argv)
{
    mps *s = NULL;
    char err[256] = "";
    size_t removed = 0, total = 0;
    uint64_t now = (uint64_t)time(NULL);
    mp_status st;

    if (argc != 1) {
        mpa_err("store compact: give the store directory");
        return MPA_USAGE;
    }
    if (mps_open(argv[0], 0, 0, &s, err, sizeof err) != MP_OK) {
        mpa_err("%s", err);
        return MPA_FAIL;
    }
    /* Bounded transactions, so a large backlog never holds the write lock
     * long enough to stall payments. */
    do {
        st = mps_compact(s, now, 10000, &removed);
        total += removed;
    } while (st == MP_OK && removed == 10000);
    if (st != MP_OK) {
        mpa_err("store compact: %s", mps_errmsg(s));
        mps_close(s);
        return MPA_FAIL;
    }
    mps_close(s);
    if (o->json)
        printf("{\"removed\": %zu}\n", total);
    else
        printf("removed %zu expired records\n", total);
    return MPA_OK;
}

/* ---- store verify ------------------------------------------------------------------ */

#define LISTED_MAX 1000

typedef struct {
    char  table[16];
    char *key;          /* hex, or NULL */
    char  what[256];
} damage;

typedef struct {
    damage items[LISTED_MAX];
    size_t n;           /* listed */
} damage_list;

static void on_damage(void *ctx, const char *table, const uint8_t *key, size_t key_len,
                      const char *what)
{
    static const char hex[] = "0123456789abcdef";
    damage_list *l = ctx;
    damage *d;
    size_t i;

    if (l->n == LISTED_MAX)
        return;
    d = &l->items[l->n++];
    snprintf(d->table, sizeof d->table, "%s", table);
    snprintf(d->what, sizeof d->what, "%s", what);
    d->key = NULL;
    if (key != NULL && (d->key = malloc(2 * key_len + 1)) != NULL) {
        for (i = 0; i < key_len; i++) {
            d->key[2 * i] = hex[key[i] >> 4];
            d->key[2 * i + 1] = hex[key[i] & 15];
        }
        d->key[2 * key_len] = 0;
    }
}

static int store_verify(const mpa_opts *o, int argc, char **argv)
{
    const char *dir = NULL;
    static damage_list l;
    mps_report r;
    uint64_t budget = 0;
    char err[512] = "";
    size_t i;
    int rc;

    for (i = 0; i < (size_t)argc; i++) {
        if (strcmp(argv[i], "--sample") == 0 && i + 1 < (size_t)argc) {
            if (mpa_parse_u64(argv[++i], UINT64_MAX, &budget) != 0 || budget == 0) {
                mpa_err("store verify: --sample takes a number of leaf pages above 0");
                return MPA_USAGE;
            }
        } else if (dir == NULL && argv[i][0] != '-') {
            dir = argv[i];
        } else {
            mpa_err("store verify: unexpected argument '%s'", argv[i]);
            return MPA_USAGE;
        }
    }
    if (dir == NULL) {
        mpa_err("store verify: give the store directory");
        return MPA_USAGE;
    }
    l.n = 0;
    if (mps_verify(dir, budget, on_damage, &l, &r, err, sizeof err) != MP_OK) {
        mpa_err("store verify: %s", err);
        return MPA_FAIL;
    }
    rc = r.problems == 0 ? MPA_OK : MPA_FAIL;
    if (o->json) {
        printf("{\"store\": ");
        mpa_json_str(stdout, dir);
        printf(", \"ok\": %s, \"complete\": %s, \"problems\": %llu, \"tables\": [",
               r.problems == 0 ? "true" : "false", r.complete ? "true" : "false",
               (unsigned long long)r.problems);
        for (i = 0; i < MPS_NTABLES; i++)
            printf("%s{\"table\": \"%s\", \"records\": %llu, \"damaged\": %llu}", i ? ", " : "",
                   r.tables[i].name, (unsigned long long)r.tables[i].records,
                   (unsigned long long)r.tables[i].damaged);
        printf("], \"pages\": {\"in_use\": %llu, \"read\": %llu, \"free\": %llu, "
               "\"unaccounted\": %llu}, \"damage\": [", (unsigned long long)r.pages,
               (unsigned long long)r.pages_read, (unsigned long long)r.pages_free,
               (unsigned long long)r.pages_unaccounted);
        for (i = 0; i < l.n; i++) {
            printf("%s{\"table\": ", i ? ", " : "");
            mpa_json_str(stdout, l.items[i].table);
            printf(", \"key\": ");
            if (l.items[i].key != NULL)
                mpa_json_str(stdout, l.items[i].key);
            else
                printf("null");
            printf(", \"what\": ");
            mpa_json_str(stdout, l.items[i].what);
            printf("}");
        }
        printf("], \"damage_listed\": %zu}\n", l.n);
    } else {
        if (r.problems == 0)
            printf("store %s: clean (%s)\n", dir, r.complete ? "every page and record read"
                   : "a sample of the leaf pages read: --sample");
        else
            printf("store %s: DAMAGED, %llu problem%s (%s)\n", dir,
                   (unsigned long long)r.problems, r.problems == 1 ? "" : "s",
                   r.complete ? "every page and record read" : "a sample of the leaf pages read");
        printf("%-8s %12s %10s\n", "table", "records", "damaged");
        for (i = 0; i < MPS_NTABLES; i++)
            printf("%-8s %12llu %10llu\n", r.tables[i].name,
                   (unsigned long long)r.tables[i].records,
                   (unsigned long long)r.tables[i].damaged);
        printf("pages: %llu in use, %llu read, %llu free", (unsigned long long)r.pages,
               (unsigned long long)r.pages_read, (unsigned long long)r.pages_free);
        if (r.complete)
            printf(", %llu unaccounted", (unsigned long long)r.pages_unaccounted);
        printf("\n");
        if (r.problems > 0) {
            for (i = 0; i < l.n; i++)
                printf("  %s%s%s: %s\n", l.items[i].table, l.items[i].key ? " " : "",
                       l.items[i].key ? l.items[i].key : "", l.items[i].what);
            if (r.problems > l.n)
                printf("  ... %llu more\n", (unsigned long long)(r.problems - l.n));
            printf("repair: stop Apache (paid locations refuse a damaged store anyway), "
                   "restore the store from a backup, and run this again\n");
        }
    }
    for (i = 0; i < l.n; i++)
        free(l.items[i].key);
    return rc;
}

/* ---- store upgrade --------------------------------------------------------------- */

static int store_upgrade(const mpa_opts *o, int argc, char **argv)
{
    char err[512] = "";
    uint64_t n = 0;
    int already = 0;

    if (argc != 1) {
        mpa_err("store upgrade: give the store directory");
        return MPA_USAGE;
    }
    if (mps_upgrade(argv[0], &n, &already, err, sizeof err) != MP_OK) {
        mpa_err("store upgrade: %s", err);
        return MPA_FAIL;
    }
    if (o->json) {
        printf("{\"store\": ");
        mpa_json_str(stdout, argv[0]);
        printf(", \"upgraded\": %s, \"records\": %llu}\n", already ? "false" : "true",
               (unsigned long long)n);
    } else if (already) {
        printf("store %s is format 4 already: nothing to do\n", argv[0]);
    } else {
        printf("store %s upgraded to format 4: %llu records converted or checked\n", argv[0],
               (unsigned long long)n);
    }
    return MPA_OK;
}

const mpa_cmd mpa_store_cmds[] = {
    { "store", "init", "DIR [--owner USER]",
      "Creates an empty payment store in DIR (created 0700 if missing). --owner makes USER\n"
      "(the Apache user, e.g. www-data) own it. mod_micropay never creates a store itself:\n"
      "a missing store makes paid locations answer 500 rather than forget what was spent.",
      store_init },
    { "store", "stat", "DIR", "Counts the records in the store.", store_stat },
    { "store", "compact", "DIR",
      "Deletes expired records now (Apache also does it in the background).", store_compact },
    { "store", "verify", "DIR [--sample LEAF_PAGES]",
      "Reads the whole store (safe while Apache runs): LMDB's pages as LMDB would follow\n"
      "them, every record's checksum and format, the expiry index. Exit 0 when clean, 1 when\n"
      "damaged (each damaged record is listed with its table and key) or when it cannot be\n"
      "read. --sample reads about that many leaf pages, spread evenly, for large stores.",
      store_verify },
    { "store", "upgrade", "DIR",
      "Converts a format-3 store (made before retry records) or a format-2 store (made before\n"
      "record checksums) to format 4, in place, with Apache stopped: refused while any process\n"
      "has the store open, and refused for a store whose records do not parse. Spends of\n"
      "format 3 are never answered as retries. A run that stopped goes on where it was.",
      store_upgrade },
    { NULL, NULL, NULL, NULL, NULL }
};
