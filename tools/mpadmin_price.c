/*
 * mpadmin_price.c - the per-path price table in the vendor's store.
 * mod_micropay reads it on every paid request (one LMDB lookup), so a
 * change takes effect at once, without a restart.
 */
#include <string.h>
#include "mpadmin.h"
#include "mod_micropay_store.h"

static int open_store(const char *dir, unsigned flags, mps **s)
{
    char err[256] = "";

    if (mps_open(dir, flags, 0, s, err, sizeof err) != MP_OK) {
        mpa_err("%s", err);
        return -1;
    }
    return 0;
}

static int price_set(const mpa_opts *o, int argc, char **argv)
{
    mps *s = NULL;
    mp_amount a;
    char buf[MP_AMOUNT_STRMAX];
    mp_status st;

    if (argc != 4) {
        mpa_err("price set: STORE VENDOR PATH AMOUNT");
        return MPA_USAGE;
    }
    if (argv[2][0] != '/') {
        mpa_err("price set: the path must start with '/' (a trailing '/' prices a whole tree)");
        return MPA_USAGE;
    }
    if (mpa_parse_amount(argv[3], &a) != 0)
        return MPA_USAGE;
    if (open_store(argv[0], 0, &s) != 0)
        return MPA_FAIL;
    st = mps_price_set(s, argv[1], argv[2], &a);
    if (st != MP_OK) {
        mpa_err("price set: %s", st == MP_ERR_ARG ? "vendor or path not acceptable" : mps_errmsg(s));
        mps_close(s);
        return st == MP_ERR_ARG ? MPA_USAGE : MPA_FAIL;
    }
    mps_close(s);
    mp_amount_format(&a, buf, sizeof buf);
    if (o->json) {
        printf("{\"vendor\": ");
        mpa_json_str(stdout, argv[1]);
        printf(", \"path\": ");
        mpa_json_str(stdout, argv[2]);
        printf(", \"price\": \"%s\", \"units\": %llu}\n", buf, (unsigned long long)a.units);
    } else {
        printf("%s %s now costs %s\n", argv[1], argv[2], buf);
    }
    return MPA_OK;
}

static int price_rm(const mpa_opts *o, int argc, char **argv)
{
    mps *s = NULL;
    mp_status st;

    if (argc != 3) {
        mpa_err("price rm: STORE VENDOR PATH");
        return MPA_USAGE;
    }
    if (open_store(argv[0], 0, &s) != 0)
        return MPA_FAIL;
    st = mps_price_del(s, argv[1], argv[2]);
    mps_close(s);
    if (st == MP_ERR_ARG) {
        mpa_err("price rm: %s has no price for %s", argv[1], argv[2]);
        return MPA_NOTFOUND;
    }
    if (st != MP_OK) {
        mpa_err("price rm: %s", mp_strerror(st));
        return MPA_FAIL;
    }
    if (o->json)
        printf("{\"removed\": true}\n");
    else
        printf("removed the price of %s %s\n", argv[1], argv[2]);
    return MPA_OK;
}

typedef struct {
    const mpa_opts *o;
    int n;
} list_ctx;

static int print_price(void *ctx, const char *path, const mp_amount *a)
{
    list_ctx *l = ctx;
    char buf[MP_AMOUNT_STRMAX];

    mp_amount_format(a, buf, sizeof buf);
    if (l->o->json) {
        printf("%s\n  {\"path\": ", l->n ? "," : "");
        mpa_json_str(stdout, path);
        printf(", \"price\": \"%s\", \"units\": %llu}", buf, (unsigned long long)a->units);
    } else {
        printf("%-40s %s\n", path, buf);
    }
    l->n++;
    return 0;
}

static int price_list(const mpa_opts *o, int argc, char **argv)
{
    mps *s = NULL;
    list_ctx l = { o, 0 };
    mp_status st;

    if (argc != 2) {
        mpa_err("price list: STORE VENDOR");
        return MPA_USAGE;
    }
    if (open_store(argv[0], MPS_RDONLY, &s) != 0)
        return MPA_FAIL;
    if (o->json)
        printf("[");
    st = mps_price_list(s, argv[1], print_price, &l);
    if (o->json)
        printf("%s]\n", l.n ? "\n" : "");
    if (st != MP_OK) {
        mpa_err("price list: %s", mps_errmsg(s));
        mps_close(s);
        return MPA_FAIL;
    }
    mps_close(s);
    return MPA_OK;
}

const mpa_cmd mpa_price_cmds[] = {
    { "price", "set", "STORE VENDOR PATH AMOUNT",
      "Sets the price of PATH (exact) or of a whole tree (PATH ending in '/') for VENDOR,\n"
      "e.g. mpadmin price set /var/lib/micropay/news news.example /articles/ \"0.002 USD\".\n"
      "It overrides MicropayPrice and takes effect at once.", price_set },
    { "price", "list", "STORE VENDOR", "Lists VENDOR's price table.", price_list },
    { "price", "rm", "STORE VENDOR PATH",
      "Removes a price; MicropayPrice applies again. Exit 3 when there was none.", price_rm },
    { NULL, NULL, NULL, NULL, NULL }
};
