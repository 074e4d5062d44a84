/*
 * mpadmin_earnings.c - the vendor's earnings, from the ledger that every
 * accepted payment adds to in its own store transaction (per UTC day,
 * scheme, currency and URL path). Retries of accepted payments are not
 * counted; nothing here says whether the broker has paid yet (see
 * mpadmin redeem).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "mpadmin.h"
#include "mod_micropay_store.h"

typedef enum { BY_DAY, BY_PATH, BY_SCHEME } by_mode;

typedef struct {
    char     *key;          /* day, path or scheme */
    char      cur[4];
    uint64_t  units, count;
} row;

typedef struct {
    by_mode mode;
    row    *rows;
    size_t  n, cap;
    int     failed;
} collect;

static const char *scheme_name(uint8_t scheme)
{
    return scheme == MP_SCHEME_MILLICENT ? "millicent"
         : scheme == MP_SCHEME_PAYWORD ? "payword" : "unknown";
}

static int collect_line(void *ctx, uint32_t day, uint8_t scheme, const char *path,
                        uint64_t units, const char *cur, uint64_t count)
{
    collect *c = ctx;
    char daybuf[16];
    const char *key;
    time_t t;
    struct tm tm;
    row *r;

    switch (c->mode) {
    case BY_PATH:
        key = path;
        break;
    case BY_SCHEME:
        key = scheme_name(scheme);
        break;
    default:
        t = (time_t)day * 86400;
        if (gmtime_r(&t, &tm) == NULL
            || strftime(daybuf, sizeof daybuf, "%Y-%m-%d", &tm) == 0)
            snprintf(daybuf, sizeof daybuf, "day-%lu", (unsigned long)day);
        key = daybuf;
        break;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 256;
        row *nr = realloc(c->rows, cap * sizeof *nr);
        if (nr == NULL) {
            c->failed = 1;
            return 1;
        }
        c->rows = nr;
        c->cap = cap;
    }
    r = &c->rows[c->n];
    if ((r->key = strdup(key)) == NULL) {
        c->failed = 1;
        return 1;
    }
    memcpy(r->cur, cur, 4);
    r->units = units;
    r->count = count;
    c->n++;
    return 0;
}

static int row_cmp(const void *a, const void *b)
{
    const row *x = a, *y = b;
    int d = strcmp(x->key, y->key);

    return d != 0 ? d : strcmp(x->cur, y->cur);
}

static int cur_cmp(const void *a, const void *b)
{
    const row *x = a, *y = b;

    return strcmp(x->cur, y->cur);
}

/* Adds b into a (same currency): -1 when the sum leaves the amount range. */
static int add_row(row *a, const row *b)
{
    if (b->units > MP_AMOUNT_MAX - a->units || b->count > UINT64_MAX - a->count)
        return -1;
    a->units += b->units;
    a->count += b->count;
    return 0;
}

/* Merges adjacent rows with equal keys (cmp) in place; returns the new count. */
static size_t merge(row *rows, size_t n, int (*cmp)(const void *, const void *), int *overflow)
{
    size_t i, m = 0;

    for (i = 0; i < n; i++) {
        if (m > 0 && cmp(&rows[m - 1], &rows[i]) == 0) {
            if (add_row(&rows[m - 1], &rows[i]) != 0)
                *overflow = 1;
            free(rows[i].key);
            rows[i].key = NULL;
        } else {
            rows[m++] = rows[i];
        }
    }
    return m;
}

static void print_rows(const mpa_opts *o, const char *label, const row *rows, size_t n,
                       int totals)
{
    char amt[MP_AMOUNT_STRMAX];
    mp_amount a;
    size_t i;

    for (i = 0; i < n; i++) {
        a.units = rows[i].units;
        memcpy(a.cur, rows[i].cur, 4);
        if (mp_amount_format(&a, amt, sizeof amt) != MP_OK)
            strcpy(amt, "?");
        if (o->json) {
            printf("%s\n    {", i ? "," : "");
            if (!totals) {
                printf("\"%s\": ", label);
                mpa_json_str(stdout, rows[i].key);
                printf(", ");
            }
            printf("\"currency\": \"%s\", \"amount\": \"%s\", \"units\": %llu, \"count\": %llu}",
                   rows[i].cur, amt, (unsigned long long)rows[i].units,
                   (unsigned long long)rows[i].count);
        } else {
            printf("%-40s %-20s %llu\n", totals ? "total" : rows[i].key, amt,
                   (unsigned long long)rows[i].count);
        }
    }
}

static int earnings(const mpa_opts *o, int argc, char **argv)
{
    static const char *const labels[] = { "day", "path", "scheme" };
    collect c;
    const char *dir = NULL;
    row *tot = NULL;
    size_t ntot = 0, i;
    char err[256] = "";
    mps *s = NULL;
    int overflow = 0, rc = MPA_FAIL, a;
    mp_status st;

    memset(&c, 0, sizeof c);
    c.mode = BY_DAY;
    for (a = 0; a < argc; a++) {
        if (strcmp(argv[a], "--by") == 0 && a + 1 < argc) {
            a++;
            if (strcmp(argv[a], "day") == 0)
                c.mode = BY_DAY;
            else if (strcmp(argv[a], "path") == 0)
                c.mode = BY_PATH;
            else if (strcmp(argv[a], "scheme") == 0)
                c.mode = BY_SCHEME;
            else {
                mpa_err("earnings: --by takes day, path or scheme");
                return MPA_USAGE;
            }
        } else if (dir == NULL && argv[a][0] != '-') {
            dir = argv[a];
        } else {
            mpa_err("earnings: unexpected argument '%s'", argv[a]);
            return MPA_USAGE;
        }
    }
    if (dir == NULL) {
        mpa_err("earnings: give the vendor's store directory");
        return MPA_USAGE;
    }
    if (mps_open(dir, MPS_RDONLY, 0, &s, err, sizeof err) != MP_OK) {
        mpa_err("%s", err);
        return MPA_FAIL;
    }
    st = mps_ledger_list(s, collect_line, &c);
    if (st != MP_OK || c.failed) {
        mpa_err("earnings: %s", c.failed ? "out of memory" : mps_errmsg(s));
        goto done;
    }
    if (c.n > 0)
        qsort(c.rows, c.n, sizeof *c.rows, row_cmp);
    c.n = merge(c.rows, c.n, row_cmp, &overflow);
    if (c.n > 0 && (tot = malloc(c.n * sizeof *tot)) == NULL) {
        mpa_err("earnings: out of memory");
        goto done;
    }
    for (i = 0; i < c.n; i++) {
        tot[i] = c.rows[i];
        tot[i].key = NULL;
    }
    if (c.n > 0)
        qsort(tot, c.n, sizeof *tot, cur_cmp);
    ntot = merge(tot, c.n, cur_cmp, &overflow);
    if (overflow) {
        mpa_err("earnings: a sum exceeds the largest amount");
        goto done;
    }
    if (o->json) {
        printf("{\"by\": \"%s\", \"rows\": [", labels[c.mode]);
        print_rows(o, labels[c.mode], c.rows, c.n, 0);
        printf("%s], \"totals\": [", c.n ? "\n  " : "");
        print_rows(o, labels[c.mode], tot, ntot, 1);
        printf("%s]}\n", ntot ? "\n  " : "");
    } else if (c.n == 0) {
        printf("no earnings recorded\n");
    } else {
        printf("%-40s %-20s %s\n", labels[c.mode], "amount", "payments");
        print_rows(o, labels[c.mode], c.rows, c.n, 0);
        print_rows(o, labels[c.mode], tot, ntot, 1);
    }
    rc = MPA_OK;
done:
    for (i = 0; i < c.n; i++)
        free(c.rows[i].key);
    free(c.rows);
    free(tot);
    mps_close(s);
    return rc;
}

const mpa_cmd mpa_earnings_cmds[] = {
    { "earnings", "", "VENDOR_STORE [--by day|path|scheme]",
      "Sums the vendor's earnings ledger (every accepted payment, retries not counted) per\n"
      "UTC day (default), per URL path or per scheme, each with its currency and number of\n"
      "payments, then totals per currency. Amounts are what customers paid; what the broker\n"
      "has credited so far is mpadmin redeem's business.", earnings },
    { NULL, NULL, NULL, NULL, NULL }
};
