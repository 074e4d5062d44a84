/*
 * mpadmin_price.c - the per-path price table in the vendor's store.
 * mod_micropay reads it on every paid request (one LMDB lookup), so a
 * change takes effect at once, without a restart.
 *
 * Paths are stored as keys (mod_micropay_pricekey.h): what the admin types
 * is percent-decoded once, its dot segments and double slashes resolved and
 * encoded canonically, the very form the module derives from the resource a
 * request serves, so that "/%61pi/" and "/api/" are one entry.
 */
#include <string.h>
#include "mpadmin.h"
#include "mod_micropay_store.h"
#include "mod_micropay_pricekey.h"

/* PATH as a key into key (MPK_MAX + 1 bytes); prints why and returns -1
 * when it cannot be one. */
static int path_key(const char *cmd, const char *vendor, const char *path, char *key)
{
    const char *why = NULL;
    size_t len = 0, room;

    if (mpk_normalise(path, key, MPK_MAX + 1, &len, &why) != MP_OK) {
        mpa_err("%s: %s: %s", cmd, path, why ? why : "not a path");
        return -1;
    }
    room = MPK_STORE_KEY_MAX - (strlen(vendor) + 1);
    if (strlen(vendor) + 1 < MPK_STORE_KEY_MAX && len > room) {
        mpa_err("%s: %s is %lu bytes as a key; the price table holds paths of at most %lu bytes "
                "for %s (price its directory instead)", cmd, key, (unsigned long)len,
                (unsigned long)room, vendor);
        return -1;
    }
    return 0;
}

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
    char buf[MP_AMOUNT_STRMAX], key[MPK_MAX + 1];
    mp_status st;

    if (argc != 4) {
        mpa_err("price set: STORE VENDOR PATH AMOUNT");
        return MPA_USAGE;
    }
    if (argv[2][0] != '/') {
        mpa_err("price set: the path must start with '/' (a trailing '/' prices a whole tree)");
        return MPA_USAGE;
    }
    if (path_key("price set", argv[1], argv[2], key) != 0)
        return MPA_USAGE;
    if (mpa_parse_amount(argv[3], &a) != 0)
        return MPA_USAGE;
    if (open_store(argv[0], 0, &s) != 0)
        return MPA_FAIL;
    st = mps_price_set(s, argv[1], key, &a);
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
        mpa_json_str(stdout, key);
        printf(", \"price\": \"%s\", \"units\": %llu}\n", buf, (unsigned long long)a.units);
    } else {
        printf("%s %s now costs %s\n", argv[1], key, buf);
    }
    return MPA_OK;
}

static int price_rm(const mpa_opts *o, int argc, char **argv)
{
    mps *s = NULL;
    char key[MPK_MAX + 1];
    const char *why = NULL;
    int canon;
    mp_status st;

    if (argc != 3) {
        mpa_err("price rm: STORE VENDOR PATH");
        return MPA_USAGE;
    }
    canon = mpk_normalise(argv[2], key, sizeof key, NULL, &why) == MP_OK;
    if (open_store(argv[0], 0, &s) != 0)
        return MPA_FAIL;
    /* The entry of PATH's key; else an entry stored byte for byte as typed
     * (one written before keys were normalised, which never matches). */
    st = canon ? mps_price_del(s, argv[1], key) : MP_ERR_ARG;
    if (st == MP_ERR_ARG && (!canon || strcmp(key, argv[2]) != 0)) {
        st = mps_price_del(s, argv[1], argv[2]);
        snprintf(key, sizeof key, "%s", argv[2]);
    }
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
        printf("removed the price of %s %s\n", argv[1], key);
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
    /* An entry that is not a canonical key (written by an older mpadmin)
     * matches no request: say so, so that it is set again. */
    if (l->o->json) {
        printf("%s\n  {\"path\": ", l->n ? "," : "");
        mpa_json_str(stdout, path);
        printf(", \"price\": \"%s\", \"units\": %llu%s}", buf, (unsigned long long)a->units,
               mpk_is_canonical(path) ? "" : ", \"matches\": false");
    } else {
        printf("%-40s %s%s\n", path, buf,
               mpk_is_canonical(path) ? "" : "   (not a normalised path: matches nothing; rm it "
               "and set it again)");
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
      "It overrides MicropayPrice and takes effect at once. PATH is the resource's URL\n"
      "path below the DocumentRoot (or an Alias's URL outside it); it is stored\n"
      "normalised: percent-decoded once, \".\", \"..\" and \"//\" resolved, re-encoded\n"
      "canonically (the stored form is printed). %2F, '?', '#' and a bad '%' are refused.", price_set },
    { "price", "list", "STORE VENDOR", "Lists VENDOR's price table.", price_list },
    { "price", "rm", "STORE VENDOR PATH",
      "Removes a price (PATH normalised as by price set); MicropayPrice applies again.\n"
      "Exit 3 when there was none.", price_rm },
    { NULL, NULL, NULL, NULL, NULL }
};
