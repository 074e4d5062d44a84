/*
 * mpadmin - the admin tool of mod_micropay.
 *
 *   mpadmin [--json] GROUP COMMAND [ARGS]     mpadmin GROUP COMMAND --help
 *
 * Dispatch only: each group lives in its own mpadmin_<group>.c.
 */
#include <stdio.h>
#include <string.h>
#include "mpadmin.h"

static const mpa_cmd *const tables[] = { mpa_store_cmds, mpa_keys_cmds, mpa_price_cmds };

static void usage(FILE *f)
{
    size_t t;
    const mpa_cmd *c;

    fprintf(f, "usage: mpadmin [--json] GROUP COMMAND [ARGS]\n"
               "       mpadmin GROUP COMMAND --help\n\ncommands:\n");
    for (t = 0; t < sizeof tables / sizeof tables[0]; t++)
        for (c = tables[t]; c->group; c++)
            fprintf(f, "  %s %s %s\n", c->group, c->name, c->args);
    fprintf(f, "\n--json prints machine-readable JSON on standard output.\n"
               "Exit codes: 0 success, 1 operation failed, 2 usage error, 3 not found.\n");
}

static void cmd_help(const mpa_cmd *c)
{
    printf("usage: mpadmin [--json] %s %s %s\n\n%s\n", c->group, c->name, c->args, c->help);
}

int main(int argc, char **argv)
{
    mpa_opts o = { 0 };
    char *rest[64];
    int n = 0, i;
    size_t t;
    const mpa_cmd *c;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            o.json = 1;
        else if (n < 64)
            rest[n++] = argv[i];
        else {
            mpa_err("too many arguments");
            return MPA_USAGE;
        }
    }
    if (n == 0 || strcmp(rest[0], "--help") == 0 || strcmp(rest[0], "-h") == 0
        || strcmp(rest[0], "help") == 0) {
        usage(n == 0 ? stderr : stdout);
        return n == 0 ? MPA_USAGE : MPA_OK;
    }
    for (t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        for (c = tables[t]; c->group; c++) {
            if (strcmp(c->group, rest[0]) != 0 || n < 2 || strcmp(c->name, rest[1]) != 0)
                continue;
            for (i = 2; i < n; i++) {
                if (strcmp(rest[i], "--help") == 0 || strcmp(rest[i], "-h") == 0) {
                    cmd_help(c);
                    return MPA_OK;
                }
            }
            return c->fn(&o, n - 2, rest + 2);
        }
    }
    mpa_err("unknown command '%s%s%s'; see mpadmin --help", rest[0], n > 1 ? " " : "",
            n > 1 ? rest[1] : "");
    return MPA_USAGE;
}
