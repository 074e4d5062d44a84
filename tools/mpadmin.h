/*
 * mpadmin.h - the admin tool's shared pieces.
 *
 * Exit codes (documented in docs/mpadmin.md and `mpadmin --help`):
 *   0 success, 1 the operation failed (store, file or crypto error),
 *   2 usage error (unknown subcommand, bad argument), 3 not found.
 */
#ifndef MPADMIN_H
#define MPADMIN_H

#include <stdio.h>
#include "mp.h"

#define MPA_OK       0
#define MPA_FAIL     1
#define MPA_USAGE    2
#define MPA_NOTFOUND 3

typedef struct {
    int json;                 /* --json: machine-readable output */
} mpa_opts;

typedef int (*mpa_cmd_fn)(const mpa_opts *o, int argc, char **argv);

typedef struct {
    const char *group;        /* "store", "keys", "price", ... */
    const char *name;         /* "init", "set", ... */
    const char *args;         /* usage line after the names */
    const char *help;         /* one paragraph */
    mpa_cmd_fn  fn;
} mpa_cmd;

/* mpadmin_util.c */
void mpa_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mpa_json_str(FILE *f, const char *s);
int mpa_write_secret_file(const char *path, const char *data, size_t len);
int mpa_parse_amount(const char *s, mp_amount *out);

/* one table per file */
extern const mpa_cmd mpa_store_cmds[];
extern const mpa_cmd mpa_keys_cmds[];
extern const mpa_cmd mpa_price_cmds[];

#endif
