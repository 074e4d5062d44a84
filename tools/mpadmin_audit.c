/*
 * mpadmin_audit.c - broker audit STORE: is every unit accounted for?
 *
 * Reads the whole broker store in one read transaction (a consistent
 * picture while the broker runs) and prints, per currency, the ledger
 * (credited from outside, withdrawn, credited to vendors by /redeem) and
 * where the money is now (customer balances, reserved PayWord credit,
 * vendor balances, outstanding broker scrip, outstanding vendor scrip the
 * broker issued), and whether
 *   credited - withdrawn = customer balances + reserved + vendor balances
 *                          + outstanding broker scrip + outstanding vendor scrip
 * holds to the unit. Exit 0 when every currency balances, 1 when one does
 * not (or the store cannot be read).
 */
#include <stdio.h>
#include <string.h>
#include "mpadmin.h"
#include "mod_micropay_bstore.h"

static void show_units(const char *cur, uint64_t units, char *buf, size_t cap)
{
    mp_amount a;

    if (mp_amount_set(&a, units, cur) != MP_OK || mp_amount_format(&a, buf, cap) != MP_OK)
        snprintf(buf, cap, "%llu units", (unsigned long long)units);
}

static void print_row(const mpa_opts *o, const mpb_audit_row *r, int first)
{
    static const char *const names[] = { "credited", "withdrawn", "redeemed",
                                         "customer_balance", "reserved", "vendor_balance",
                                         "broker_scrip", "vendor_scrip" };
    const uint64_t vals[] = { r->credited, r->withdrawn, r->redeemed, r->customer_balance,
                              r->reserved, r->vendor_balance, r->broker_scrip, r->vendor_scrip };
    char buf[MP_AMOUNT_STRMAX];
    size_t i;

    if (o->json) {
        printf("%s{\"currency\": \"%s\"", first ? "" : ",\n  ", r->cur);
        for (i = 0; i < sizeof vals / sizeof vals[0]; i++) {
            show_units(r->cur, vals[i], buf, sizeof buf);
            printf(", \"%s\": \"%s\", \"%s_units\": %llu", names[i], buf, names[i],
                   (unsigned long long)vals[i]);
        }
        printf(", \"broker_scrip_count\": %llu, \"vendor_scrip_count\": %llu, \"balanced\": %s}",
               (unsigned long long)r->broker_scrip_n, (unsigned long long)r->vendor_scrip_n,
               r->balanced ? "true" : "false");
        return;
    }
    printf("%s%s\n", first ? "" : "\n", r->cur);
    for (i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        show_units(r->cur, vals[i], buf, sizeof buf);
        printf("  %-18s %s\n", names[i], buf);
    }
    printf("  %-18s %llu broker, %llu vendor\n", "scrip outstanding",
           (unsigned long long)r->broker_scrip_n, (unsigned long long)r->vendor_scrip_n);
    printf("  %s\n", r->balanced ? "balanced: credited - withdrawn = balances + reserved + "
                                   "outstanding scrip"
                                 : "NOT BALANCED: credited - withdrawn differs from balances + "
                                   "reserved + outstanding scrip");
}

static int broker_audit(const mpa_opts *o, int argc, char **argv)
{
    mpb_audit_row rows[MPB_AUDIT_CURRENCIES];
    char err[256] = "";
    mpb *b = NULL;
    mpb_txn *t = NULL;
    size_t n = 0, i;
    int balanced = 1, rc = MPA_FAIL;

    if (argc != 1 || argv[0][0] == '-') {
        mpa_err("broker audit: BROKER_STORE");
        return MPA_USAGE;
    }
    if (mpb_open(argv[0], 1, 0, &b, err, sizeof err) != MP_OK) {
        mpa_err("broker audit: %s", err[0] ? err : "cannot open the broker store");
        return MPA_FAIL;
    }
    if (mpb_begin(b, 1, &t) != MP_OK || mpb_audit(t, rows, &n) != MP_OK) {
        mpa_err("broker audit: %s", mpb_errmsg());
        goto done;
    }
    for (i = 0; i < n; i++)
        balanced &= rows[i].balanced;
    if (o->json) {
        printf("{\"store\": ");
        mpa_json_str(stdout, argv[0]);
        printf(", \"balanced\": %s, \"currencies\": [", balanced ? "true" : "false");
        for (i = 0; i < n; i++)
            print_row(o, &rows[i], i == 0);
        printf("]}\n");
    } else {
        for (i = 0; i < n; i++)
            print_row(o, &rows[i], i == 0);
        if (n == 0)
            printf("no money in the store\n");
    }
    if (!balanced)
        mpa_err("broker audit: %s does not balance", argv[0]);
    rc = balanced ? MPA_OK : MPA_FAIL;
done:
    mpb_abort(t);
    mpb_close(b);
    return rc;
}

const mpa_cmd mpa_audit_cmds[] = {
    { "broker", "audit", "BROKER_STORE",
      "Checks conservation, to the unit, per currency: money credited into accounts\n"
      "(accounts credit) minus money withdrawn (accounts debit) must equal customer\n"
      "balances + reserved PayWord credit + vendor balances + outstanding broker scrip +\n"
      "outstanding vendor scrip the broker issued. Prints every term and the total\n"
      "credited to vendors by /redeem. One read transaction: safe while the broker runs.\n"
      "Exit 0 when every currency balances, 1 when one does not.", broker_audit },
    { NULL, NULL, NULL, NULL, NULL }
};
