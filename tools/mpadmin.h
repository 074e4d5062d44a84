/*
 * mpadmin.h - the admin tool's shared pieces.
 *
 * Exit codes (documented in docs/mpadmin.md and `mpadmin --help`):
 *   0 success, 1 the operation failed (store, file, crypto or network
 *   error; a refused broker request), 2 usage error (unknown subcommand,
 *   bad argument), 3 not found.
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
    const char *name;         /* "init", "set", ...; "" for a group that is one command */
    const char *args;         /* usage line after the names */
    const char *help;         /* one paragraph */
    mpa_cmd_fn  fn;
} mpa_cmd;

/* mpadmin_util.c */
void mpa_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mpa_json_str(FILE *f, const char *s);
/* Writes a secret file: created 0600 under a temporary name, fsync'ed,
 * then renamed over path. The _new variant refuses (-1, with a message)
 * when path exists, atomically (link, not rename). 0 on success. */
int mpa_write_secret_file(const char *path, const char *data, size_t len);
int mpa_write_new_secret_file(const char *path, const char *data, size_t len);
int mpa_parse_amount(const char *s, mp_amount *out);
/* Parses a decimal number 0..max (no sign, no space); 0 on success. */
int mpa_parse_u64(const char *s, uint64_t max, uint64_t *out);
/* Reads at most cap bytes of a regular file; -1 (with a message) when it
 * cannot be read or is larger than cap. */
int mpa_read_file(const char *path, char *buf, size_t cap, size_t *len);
/* Reads and parses a secrets file (mp_keyfile format); -1 with a message.
 * The caller wipes kf. */
int mpa_load_keyfile(const char *path, mp_keyfile *kf);
/* Formats kf and writes it with mpa_write_secret_file (excl: the _new
 * variant); -1 with a message. */
int mpa_save_keyfile(const mp_keyfile *kf, const char *path, int excl);
/* uid and gid of user; -1 (with a message) when there is no such user. */
int mpa_user_ids(const char *user, long *uid, long *gid);
/* Base64url text of n bytes into out (cap >= mp_b64url_len(n) + 1). */
int mpa_b64(const uint8_t *in, size_t n, char *out, size_t cap);

/* one table per file */
extern const mpa_cmd mpa_store_cmds[];
extern const mpa_cmd mpa_keys_cmds[];
extern const mpa_cmd mpa_price_cmds[];
extern const mpa_cmd mpa_broker_cmds[];     /* broker init, accounts ... */
extern const mpa_cmd mpa_audit_cmds[];      /* broker audit */
extern const mpa_cmd mpa_earnings_cmds[];
extern const mpa_cmd mpa_redeem_cmds[];

#endif
