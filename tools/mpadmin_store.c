/* mpadmin_store.c - creating and inspecting a vendor's payment store. */
#include <errno.h>
#include <pwd.h>
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
               "\"ledger_lines\": %zu, \"expiring\": %zu}\n",
               st.spent, st.pw, st.prices, st.ledger, st.expiry_index);
    else
        printf("spent scrip          %zu\npayword commitments  %zu\nprices               %zu\n"
               "ledger lines         %zu\nrecords that expire  %zu\n",
               st.spent, st.pw, st.prices, st.ledger, st.expiry_index);
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

const mpa_cmd mpa_store_cmds[] = {
    { "store", "init", "DIR [--owner USER]",
      "Creates an empty payment store in DIR (created 0700 if missing). --owner makes USER\n"
      "(the Apache user, e.g. www-data) own it. mod_micropay never creates a store itself:\n"
      "a missing store makes paid locations answer 500 rather than forget what was spent.",
      store_init },
    { "store", "stat", "DIR", "Counts the records in the store.", store_stat },
    { "store", "compact", "DIR",
      "Deletes expired records now (Apache also does it in the background).", store_compact },
    { NULL, NULL, NULL, NULL, NULL }
};
