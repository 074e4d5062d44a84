/*
 * mpadmin_broker.c - the broker's account store.
 *
 *   broker init DIR [--owner USER]
 *   accounts create STORE ID --customer|--vendor NAME --currency CUR --secrets FILE [--key-out FILE]
 *   accounts credit STORE ID AMOUNT
 *   accounts debit STORE ID AMOUNT
 *   accounts show STORE [ID]
 *   accounts release STORE [--now UNIX_TIME]
 *   broker audit STORE
 *
 * Account keys are 32 random bytes, handed out once and kept in the store
 * only wrapped (mp_account_key_wrap) under the newest "account" secret of
 * the broker's secrets file; the record names that series, and the broker
 * unwraps with it.
 *
 * credit and debit are the only ways money enters or leaves the broker:
 * each writes the ledger total beside the balance, in one transaction, and
 * broker audit checks that everything the store holds adds up to them.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "mpadmin.h"
#include "mod_micropay_bstore.h"

static int broker_init(const mpa_opts *o, int argc, char **argv)
{
    const char *dir = NULL, *owner = NULL;
    long uid = -1, gid = -1;
    char err[256] = "";
    int i;

    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--owner") == 0 && i + 1 < argc)
            owner = argv[++i];
        else if (dir == NULL && argv[i][0] != '-')
            dir = argv[i];
        else {
            mpa_err("broker init: unexpected argument '%s'", argv[i]);
            return MPA_USAGE;
        }
    }
    if (dir == NULL) {
        mpa_err("broker init: which directory?");
        return MPA_USAGE;
    }
    if (owner != NULL && mpa_user_ids(owner, &uid, &gid) != 0)
        return MPA_USAGE;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        mpa_err("broker init: cannot create %s: %s", dir, strerror(errno));
        return MPA_FAIL;
    }
    if (uid >= 0 && chown(dir, (uid_t)uid, (gid_t)gid) != 0) {
        mpa_err("broker init: cannot chown %s: %s", dir, strerror(errno));
        return MPA_FAIL;
    }
    if (mpb_create(dir, uid, gid, err, sizeof err) != MP_OK) {
        mpa_err("broker init: %s", err);
        return MPA_FAIL;
    }
    if (o->json) {
        printf("{\"store\": ");
        mpa_json_str(stdout, dir);
        printf(", \"created\": true}\n");
    } else {
        printf("created broker store %s\n", dir);
    }
    return MPA_OK;
}

/* ---- accounts --------------------------------------------------------------------- */

static int account_id_ok(const char *id)
{
    size_t i, n = strlen(id);

    if (n == 0 || n > MPB_ACCOUNT_MAX)
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x21 || (unsigned char)id[i] > 0x7e || id[i] == '"'
            || id[i] == '\\')
            return 0;
    return 1;
}

static int open_broker(const char *dir, int rdonly, mpb **b)
{
    char err[256] = "";

    if (mpb_open(dir, rdonly, 0, b, err, sizeof err) != MP_OK) {
        mpa_err("%s", err[0] ? err : "cannot open the broker store");
        return -1;
    }
    return 0;
}

static const char *kind_name(uint8_t kind)
{
    return kind == MPB_VENDOR ? "vendor" : kind == MPB_CUSTOMER ? "customer" : "?";
}

static void print_account(const mpa_opts *o, const mpb_account *a, int first)
{
    char bal[MP_AMOUNT_STRMAX] = "?", res[MP_AMOUNT_STRMAX] = "?";

    mp_amount_format(&a->balance, bal, sizeof bal);
    mp_amount_format(&a->reserved, res, sizeof res);
    if (o->json) {
        printf("%s{\"account\": ", first ? "" : ",\n ");
        mpa_json_str(stdout, a->id);
        printf(", \"kind\": \"%s\", \"vendor\": ", kind_name(a->kind));
        if (a->kind == MPB_VENDOR)
            mpa_json_str(stdout, a->vendor);
        else
            printf("null");
        printf(", \"currency\": \"%s\", \"balance\": \"%s\", \"balance_units\": %llu, "
               "\"reserved\": \"%s\", \"reserved_units\": %llu, \"created\": %llu, "
               "\"key_series\": %d}",
               a->balance.cur, bal, (unsigned long long)a->balance.units, res,
               (unsigned long long)a->reserved.units, (unsigned long long)a->created,
               a->key_series);
    } else {
        printf("%-24s %-8s %-20s balance %-18s reserved %s\n", a->id, kind_name(a->kind),
               a->kind == MPB_VENDOR ? a->vendor : "-", bal, res);
    }
}

static int accounts_create(const mpa_opts *o, int argc, char **argv)
{
    static mp_keyfile kf;
    const char *pos[2] = { NULL, NULL }, *vendor = NULL, *cur = NULL, *secrets = NULL;
    const char *key_out = NULL;
    const mp_keyfile_entry *acct = NULL;
    uint8_t key[MP_SECRET_LEN];
    char key_b64[64], key_line[66];
    mpb_account a, old;
    mpb *b = NULL;
    mpb_txn *t = NULL;
    mp_mac *master = NULL;
    int customer = 0, np = 0, found = 0, wrote_key = 0, rc = MPA_FAIL, i;
    size_t j;
    mp_status st;
    FILE *f;

    memset(&a, 0, sizeof a);
    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--customer") == 0)
            customer = 1;
        else if (strcmp(argv[i], "--vendor") == 0 && i + 1 < argc)
            vendor = argv[++i];
        else if (strcmp(argv[i], "--currency") == 0 && i + 1 < argc)
            cur = argv[++i];
        else if (strcmp(argv[i], "--secrets") == 0 && i + 1 < argc)
            secrets = argv[++i];
        else if (strcmp(argv[i], "--key-out") == 0 && i + 1 < argc)
            key_out = argv[++i];
        else if (np < 2 && argv[i][0] != '-')
            pos[np++] = argv[i];
        else {
            mpa_err("accounts create: unexpected argument '%s'", argv[i]);
            return MPA_USAGE;
        }
    }
    if (np != 2 || customer == (vendor != NULL) || cur == NULL || secrets == NULL) {
        mpa_err("accounts create: STORE ID --customer|--vendor NAME --currency CUR "
                "--secrets BROKER_SECRETS [--key-out FILE]");
        return MPA_USAGE;
    }
    if (!account_id_ok(pos[1])) {
        mpa_err("accounts create: an account id is 1..%d visible ASCII characters, "
                "without '\"' or '\\'", MPB_ACCOUNT_MAX);
        return MPA_USAGE;
    }
    if (strlen(cur) != 3 || !mp_currency_valid(cur)) {
        mpa_err("accounts create: --currency takes a code of three capital letters, e.g. USD");
        return MPA_USAGE;
    }
    if (vendor != NULL) {
        for (j = 0; vendor[j]; j++)
            if ((unsigned char)vendor[j] < 0x21 || (unsigned char)vendor[j] > 0x7e)
                break;
        if (j == 0 || j > MP_NAME_MAX || vendor[j] != '\0') {
            mpa_err("accounts create: a vendor name is 1..%d visible ASCII characters",
                    MP_NAME_MAX);
            return MPA_USAGE;
        }
    }
    if (key_out != NULL && (f = fopen(key_out, "r")) != NULL) {
        fclose(f);
        mpa_err("accounts create: %s exists; not overwriting it", key_out);
        return MPA_FAIL;
    }

    if (mpa_load_keyfile(secrets, &kf) != 0)
        goto done;
    for (j = 0; j < kf.n; j++)
        if (kf.e[j].kind == MP_KEY_ACCOUNT && (acct == NULL || kf.e[j].series > acct->series))
            acct = &kf.e[j];
    if (acct == NULL) {
        mpa_err("accounts create: %s has no account secret (is it the broker's secrets file? "
                "mpadmin keys broker-secrets makes one)", secrets);
        goto done;
    }
    strcpy(a.id, pos[1]);
    a.kind = customer ? MPB_CUSTOMER : MPB_VENDOR;
    a.key_series = acct->series;
    if (vendor != NULL)
        strcpy(a.vendor, vendor);
    if (mp_amount_set(&a.balance, 0, cur) != MP_OK || mp_amount_set(&a.reserved, 0, cur) != MP_OK
        || mp_random(key, sizeof key) != MP_OK
        || mp_mac_new(acct->secret, acct->len, &master) != MP_OK
        || mp_account_key_wrap(master, a.id, key, a.key_enc) != MP_OK
        || mpa_b64(key, sizeof key, key_b64, sizeof key_b64) != 0) {
        mpa_err("accounts create: cannot make the account key");
        goto done;
    }
    a.created = (uint64_t)time(NULL);

    if (open_broker(pos[0], 0, &b) != 0)
        goto done;
    if ((st = mpb_begin(b, 0, &t)) != MP_OK
        || (st = mpb_account_get(t, a.id, &old, &found)) != MP_OK) {
        mpa_err("accounts create: %s", mpb_errmsg());
        goto done;
    }
    if (found) {
        mpa_err("accounts create: account '%s' exists", a.id);
        goto done;
    }
    if ((st = mpb_account_put(t, &a)) != MP_OK) {
        mpa_err("accounts create: %s", mpb_errmsg());
        rc = st == MP_ERR_ARG ? MPA_USAGE : MPA_FAIL;
        goto done;
    }
    /* The key file before the commit: a committed account whose key was
     * lost could never be used; a key file whose commit failed is removed. */
    if (key_out != NULL) {
        snprintf(key_line, sizeof key_line, "%s\n", key_b64);
        if (mpa_write_new_secret_file(key_out, key_line, strlen(key_line)) != 0)
            goto done;
        wrote_key = 1;
    }
    st = mpb_commit(t);
    t = NULL;
    if (st != MP_OK) {
        mpa_err("accounts create: %s", mpb_errmsg());
        goto done;
    }
    wrote_key = 0;
    if (o->json) {
        printf("{\"account\": ");
        mpa_json_str(stdout, a.id);
        printf(", \"kind\": \"%s\", \"vendor\": ", kind_name(a.kind));
        if (vendor != NULL)
            mpa_json_str(stdout, vendor);
        else
            printf("null");
        printf(", \"currency\": \"%s\", ", cur);
        if (key_out != NULL) {
            printf("\"key_file\": ");
            mpa_json_str(stdout, key_out);
        } else {
            printf("\"key\": \"%s\"", key_b64);
        }
        printf("}\n");
    } else if (key_out != NULL) {
        printf("created %s account %s; its key is in %s (mode 0600)\n", kind_name(a.kind), a.id,
               key_out);
    } else {
        printf("created %s account %s; its key (shown once, give it to the account holder):\n%s\n",
               kind_name(a.kind), a.id, key_b64);
    }
    rc = MPA_OK;
done:
    if (wrote_key)
        unlink(key_out);
    mpb_abort(t);
    mpb_close(b);
    mp_mac_free(master);
    mp_wipe(key, sizeof key);
    mp_wipe(key_b64, sizeof key_b64);
    mp_wipe(key_line, sizeof key_line);
    mp_wipe(&a, sizeof a);
    mp_wipe(&old, sizeof old);
    mp_keyfile_wipe(&kf);
    return rc;
}

/* accounts credit and accounts debit: the balance and the ledger total
 * in one write transaction, so the read and the new balance cannot
 * interleave with a purchase and the ledger never misses a movement. */
static int move_money(const mpa_opts *o, int argc, char **argv, int debit)
{
    const char *cmd = debit ? "accounts debit" : "accounts credit";
    char buf[MP_AMOUNT_STRMAX] = "?", add[MP_AMOUNT_STRMAX] = "?";
    mpb_account a;
    mp_amount amt, sum;
    mpb *b = NULL;
    mpb_txn *t = NULL;
    int found = 0, rc = MPA_FAIL;
    mp_status st;

    if (argc != 3) {
        mpa_err("%s: STORE ID AMOUNT", cmd);
        return MPA_USAGE;
    }
    if (!account_id_ok(argv[1])) {
        mpa_err("%s: '%s' is not an account id", cmd, argv[1]);
        return MPA_USAGE;
    }
    if (mpa_parse_amount(argv[2], &amt) != 0)
        return MPA_USAGE;
    if (open_broker(argv[0], 0, &b) != 0)
        return MPA_FAIL;
    if ((st = mpb_begin(b, 0, &t)) != MP_OK || (st = mpb_account_get(t, argv[1], &a, &found)) != MP_OK) {
        mpa_err("%s: %s", cmd, mpb_errmsg());
        goto done;
    }
    if (!found) {
        mpa_err("%s: no account '%s'", cmd, argv[1]);
        rc = MPA_NOTFOUND;
        goto done;
    }
    if (memcmp(a.balance.cur, amt.cur, 4) != 0) {
        mpa_err("%s: account %s is in %s, not %s", cmd, a.id, a.balance.cur, amt.cur);
        rc = MPA_USAGE;
        goto done;
    }
    st = debit ? mp_amount_sub(&a.balance, &amt, &sum) : mp_amount_add(&a.balance, &amt, &sum);
    if (st != MP_OK) {
        mpa_err(debit ? "%s: the balance of %s is below the amount" :
                "%s: the balance of %s would exceed the largest amount", cmd, a.id);
        goto done;
    }
    a.balance = sum;
    if ((st = mpb_account_put(t, &a)) != MP_OK
        || (st = mpb_total_add(t, debit ? MPB_TOTAL_WITHDRAWN : MPB_TOTAL_CREDITED, &amt)) != MP_OK) {
        mpa_err("%s: %s", cmd, mpb_errmsg());
        goto done;
    }
    st = mpb_commit(t);
    t = NULL;
    if (st != MP_OK) {
        mpa_err("%s: %s", cmd, mpb_errmsg());
        goto done;
    }
    mp_amount_format(&a.balance, buf, sizeof buf);
    mp_amount_format(&amt, add, sizeof add);
    if (o->json) {
        printf("{\"account\": ");
        mpa_json_str(stdout, a.id);
        printf(", \"%s\": \"%s\", \"balance\": \"%s\", \"balance_units\": %llu}\n",
               debit ? "debited" : "credited", add, buf, (unsigned long long)a.balance.units);
    } else {
        printf("%s %s %s %s; balance %s\n", debit ? "debited" : "credited", add,
               debit ? "from" : "to", a.id, buf);
    }
    rc = MPA_OK;
done:
    mpb_abort(t);
    mpb_close(b);
    mp_wipe(&a, sizeof a);
    return rc;
}

static int accounts_credit(const mpa_opts *o, int argc, char **argv)
{
    return move_money(o, argc, argv, 0);
}

static int accounts_debit(const mpa_opts *o, int argc, char **argv)
{
    return move_money(o, argc, argv, 1);
}

typedef struct {
    const mpa_opts *o;
    int n;
} show_ctx;

static int show_one(void *ctx, const mpb_account *a)
{
    show_ctx *c = ctx;

    print_account(c->o, a, c->n++ == 0);
    return 0;
}

static int accounts_show(const mpa_opts *o, int argc, char **argv)
{
    show_ctx c = { o, 0 };
    mpb_account a;
    mpb *b = NULL;
    mpb_txn *t = NULL;
    int found = 0, rc = MPA_FAIL;
    mp_status st;

    if (argc != 1 && argc != 2) {
        mpa_err("accounts show: STORE [ID]");
        return MPA_USAGE;
    }
    if (open_broker(argv[0], 1, &b) != 0)
        return MPA_FAIL;
    if ((st = mpb_begin(b, 1, &t)) != MP_OK) {
        mpa_err("accounts show: %s", mpb_errmsg());
        goto done;
    }
    if (argc == 2) {
        if ((st = mpb_account_get(t, argv[1], &a, &found)) != MP_OK) {
            mpa_err("accounts show: %s", st == MP_ERR_ARG ? "not an account id" : mpb_errmsg());
            rc = st == MP_ERR_ARG ? MPA_USAGE : MPA_FAIL;
            goto done;
        }
        if (!found) {
            mpa_err("accounts show: no account '%s'", argv[1]);
            rc = MPA_NOTFOUND;
            goto done;
        }
        print_account(o, &a, 1);
        if (o->json)
            printf("\n");
    } else {
        if (o->json)
            printf("[");
        st = mpb_account_list(t, show_one, &c);
        if (o->json)
            printf("]\n");
        if (st != MP_OK) {
            mpa_err("accounts show: %s", mpb_errmsg());
            goto done;
        }
        if (!o->json && c.n == 0)
            printf("no accounts\n");
    }
    rc = MPA_OK;
done:
    mpb_abort(t);
    mpb_close(b);
    mp_wipe(&a, sizeof a);
    return rc;
}

/* ---- accounts release ---------------------------------------------------------- */

#define RELEASE_BATCH 1000

typedef struct {
    char      account[MPB_ACCOUNT_MAX + 1];
    mp_amount amount, uncovered;
    uint64_t  certs;
} release_sum;

static int release_cmp(const void *a, const void *b)
{
    return strcmp(((const release_sum *)a)->account, ((const release_sum *)b)->account);
}

/* Sums rows of one account into one (sorted first); a sum that would
 * exceed MP_AMOUNT_MAX stays a row of its own. Returns the new count. */
static size_t release_merge(release_sum *s, size_t n)
{
    mp_amount a, u;
    size_t i, m = 0;

    if (n == 0)
        return 0;
    qsort(s, n, sizeof *s, release_cmp);
    for (i = 1; i < n; i++) {
        if (strcmp(s[m].account, s[i].account) == 0
            && mp_amount_add(&s[m].amount, &s[i].amount, &a) == MP_OK
            && mp_amount_add(&s[m].uncovered, &s[i].uncovered, &u) == MP_OK) {
            s[m].amount = a;
            s[m].uncovered = u;
            s[m].certs += s[i].certs;
        } else {
            s[++m] = s[i];
        }
    }
    return m + 1;
}

static void print_release(const mpa_opts *o, const release_sum *s, int first)
{
    char amt[MP_AMOUNT_STRMAX] = "?", unc[MP_AMOUNT_STRMAX] = "?";

    mp_amount_format(&s->amount, amt, sizeof amt);
    mp_amount_format(&s->uncovered, unc, sizeof unc);
    if (o->json) {
        printf("%s{\"account\": ", first ? "" : ",\n  ");
        mpa_json_str(stdout, s->account);
        printf(", \"currency\": \"%s\", \"released\": \"%s\", \"released_units\": %llu, "
               "\"certificates\": %llu, \"uncovered\": \"%s\", \"uncovered_units\": %llu}",
               s->amount.cur, amt, (unsigned long long)s->amount.units,
               (unsigned long long)s->certs, unc, (unsigned long long)s->uncovered.units);
    } else {
        printf("%-24s released %-18s (%llu certificate%s)", s->account, amt,
               (unsigned long long)s->certs, s->certs == 1 ? "" : "s");
        if (s->uncovered.units > 0)
            printf("; %s no longer reserved, not released", unc);
        printf("\n");
    }
}

static int accounts_release(const mpa_opts *o, int argc, char **argv)
{
    const char *dir = NULL;
    uint64_t now = (uint64_t)time(NULL), certs = 0;
    mpb_release *out = NULL;
    release_sum *sums = NULL, *grown;
    size_t nsums = 0, cap = 0, n = 0, i;
    mpb *b = NULL;
    int rc = MPA_FAIL, a, force = 0;
    mp_status st = MP_OK;

    for (a = 0; a < argc; a++) {
        if (strcmp(argv[a], "--force") == 0) {
            force = 1;
        } else if (strcmp(argv[a], "--now") == 0 && a + 1 < argc) {
            if (mpa_parse_u64(argv[++a], (uint64_t)INT64_MAX, &now) != 0) {
                mpa_err("accounts release: --now: Unix seconds, not '%s'", argv[a]);
                return MPA_USAGE;
            }
        } else if (dir == NULL && argv[a][0] != '-') {
            dir = argv[a];
        } else {
            mpa_err("accounts release: unexpected argument '%s'", argv[a]);
            return MPA_USAGE;
        }
    }
    if (dir == NULL) {
        mpa_err("accounts release: BROKER_STORE [--now UNIX_TIME [--force]]");
        return MPA_USAGE;
    }
    /* A time to come, on a store the broker serves, would hand back credit
     * that vendors can still redeem words against. */
    if (now > (uint64_t)time(NULL) + 60 && !force) {
        mpa_err("accounts release: --now %llu is later than the clock; that returns credit "
                "vendors may still redeem against: only on a copy of a store, with --force",
                (unsigned long long)now);
        return MPA_USAGE;
    }
    if ((out = malloc(RELEASE_BATCH * sizeof *out)) == NULL) {
        mpa_err("accounts release: out of memory");
        return MPA_FAIL;
    }
    if (open_broker(dir, 0, &b) != 0)
        goto done;
    /* One write transaction per batch: the broker keeps running meanwhile. */
    do {
        if ((st = mpb_cert_release(b, now, out, RELEASE_BATCH, &n)) != MP_OK)
            break;
        if (nsums + n > cap) {
            cap = (nsums + n) * 2;
            if ((grown = realloc(sums, cap * sizeof *sums)) == NULL) {
                st = MP_ERR_NOMEM;
                break;
            }
            sums = grown;
        }
        for (i = 0; i < n; i++, nsums++) {
            memcpy(sums[nsums].account, out[i].account, sizeof sums[nsums].account);
            sums[nsums].amount = out[i].amount;
            sums[nsums].uncovered = out[i].uncovered;
            sums[nsums].certs = 1;
        }
        certs += n;
    } while (n == RELEASE_BATCH);
    /* What committed is reported even when a later batch failed. */
    nsums = release_merge(sums, nsums);
    if (o->json) {
        printf("{\"now\": %llu, \"certificates\": %llu, \"accounts\": [",
               (unsigned long long)now, (unsigned long long)certs);
        for (i = 0; i < nsums; i++)
            print_release(o, &sums[i], i == 0);
        printf("]}\n");
    } else {
        for (i = 0; i < nsums; i++)
            print_release(o, &sums[i], i == 0);
        if (certs == 0 && st == MP_OK)
            printf("nothing to release\n");
        else
            printf("%llu certificate%s released\n", (unsigned long long)certs,
                   certs == 1 ? "" : "s");
    }
    if (st != MP_OK) {
        mpa_err("accounts release: %s", st == MP_ERR_NOMEM ? "out of memory" : mpb_errmsg());
        goto done;
    }
    rc = MPA_OK;
done:
    mpb_close(b);
    free(out);
    free(sums);
    return rc;
}

/* ---- broker compact ---------------------------------------------------------- */

/* What the broker's hourly housekeeping does, at once and to the end: for
 * an idle broker, a store near full, or after an outage. */
static int broker_compact(const mpa_opts *o, int argc, char **argv)
{
    mpb_release *rel = NULL;
    mpb_lapse *lap = NULL;
    uint64_t now = (uint64_t)time(NULL), removed = 0, certs = 0, lapsed = 0;
    size_t n = 0, i;
    mpb *b = NULL;
    int more = 0, rc = MPA_FAIL;
    mp_status st = MP_OK;

    if (argc != 1 || argv[0][0] == '-') {
        mpa_err("broker compact: BROKER_STORE");
        return MPA_USAGE;
    }
    if ((rel = malloc(RELEASE_BATCH * sizeof *rel)) == NULL
        || (lap = malloc(RELEASE_BATCH * sizeof *lap)) == NULL) {
        mpa_err("broker compact: out of memory");
        goto done;
    }
    if (open_broker(argv[0], 0, &b) != 0)
        goto done;
    do {
        if ((st = mpb_compact(b, now, RELEASE_BATCH, &n)) != MP_OK)
            break;
        removed += n;
    } while (n == RELEASE_BATCH);
    while (st == MP_OK) {
        if ((st = mpb_cert_release(b, now, rel, RELEASE_BATCH, &n)) != MP_OK)
            break;
        certs += n;
        if (n < RELEASE_BATCH)
            break;
    }
    while (st == MP_OK) {
        if ((st = mpb_issued_release(b, now, lap, RELEASE_BATCH, &n, &more)) != MP_OK)
            break;
        for (i = 0; i < n; i++)
            if (lap[i].returned.units > 0)
                lapsed++;
        if (!more)
            break;
    }
    if (st != MP_OK) {
        mpa_err("broker compact: %s", mpb_errmsg());
        goto done;
    }
    if (o->json) {
        printf("{\"store\": ");
        mpa_json_str(stdout, argv[0]);
        printf(", \"removed\": %llu, \"certificates_released\": %llu, \"scrip_returned\": "
               "%llu}\n", (unsigned long long)removed, (unsigned long long)certs,
               (unsigned long long)lapsed);
    } else
        printf("removed %llu expired records; released %llu certificates; returned %llu "
               "lapsed scrip to their buyers\n", (unsigned long long)removed,
               (unsigned long long)certs, (unsigned long long)lapsed);
    rc = MPA_OK;
done:
    mpb_close(b);
    free(rel);
    free(lap);
    return rc;
}

const mpa_cmd mpa_broker_cmds[] = {
    { "broker", "init", "DIR [--owner USER]",
      "Creates an empty broker account store in DIR (created 0700 if missing). --owner\n"
      "makes USER (the Apache user, e.g. www-data) own it. For MicropayBrokerStore.",
      broker_init },
    { "broker", "compact", "BROKER_STORE",
      "Runs the broker's housekeeping to the end, now: deletes expired records, gives\n"
      "back the credit of certificates past their redemption deadline and the value of\n"
      "scrip that lapsed unused. Safe while the broker runs (one write transaction per\n"
      "1000 records). Use it on an idle broker or a store near full.", broker_compact },
    { "accounts", "create",
      "BROKER_STORE ID --customer|--vendor NAME --currency CUR --secrets BROKER_SECRETS "
      "[--key-out FILE]",
      "Opens account ID at the broker: a customer account (--customer) or a vendor account\n"
      "bound to vendor NAME (--vendor NAME, for mpadmin redeem), with a zero balance in\n"
      "CUR. A random 32-byte account key is made; the store keeps it only wrapped under\n"
      "the newest account secret of BROKER_SECRETS (the broker's MicropayBrokerSecretsFile).\n"
      "The key is printed once as base64url, or with --key-out written to FILE (mode 0600,\n"
      "must not exist) instead. Exit 1 when the account exists.", accounts_create },
    { "accounts", "credit", "BROKER_STORE ID AMOUNT",
      "Adds AMOUNT (e.g. \"5.00 USD\", the account's currency) to the balance of ID in one\n"
      "write transaction. Exit 3 when there is no such account, 2 for another currency.",
      accounts_credit },
    { "accounts", "debit", "BROKER_STORE ID AMOUNT",
      "Takes AMOUNT off the balance of ID, money paid out of the broker (a vendor's\n"
      "earnings sent to its bank, a customer's refund), in one write transaction with\n"
      "the ledger's withdrawn total. Exit 1 when the balance is short, 3 when there is\n"
      "no such account, 2 for another currency.", accounts_debit },
    { "accounts", "show", "BROKER_STORE [ID]",
      "Shows the kind, vendor, balance and reserved PayWord credit of account ID, or of\n"
      "every account. Exit 3 when ID does not exist.", accounts_show },
    { "accounts", "release", "BROKER_STORE [--now UNIX_TIME [--force]]",
      "Gives back the PayWord credit that certificates reserved and vendors did not\n"
      "redeem, once no redemption can come any more (certificate expiry + the broker's\n"
      "redemption deadline at certification, e.g. 30 days): credit - redeemed moves from\n"
      "reserved to the balance, once per certificate, in write transactions of 1000\n"
      "certificates (safe while the broker runs, which also does this hourly). Prints\n"
      "what each account got back. --now judges \"past the deadline\" at UNIX_TIME\n"
      "instead of the clock (tests); a time later than the clock also needs --force,\n"
      "since on a live store it returns credit vendors may still redeem against. Exit\n"
      "1 when the store fails; batches already committed are printed first.", accounts_release },
    { NULL, NULL, NULL, NULL, NULL }
};
