/*
 * mpadmin - the admin tool of mod_micropay.
 *
 *   mpadmin [--json] GROUP [COMMAND] [ARGS]     mpadmin GROUP [COMMAND] --help
 *
 * Dispatch only: each group lives in its own mpadmin_<group>.c. A table
 * entry with an empty name is a group that is a single command
 * (`mpadmin earnings STORE`).
 */
#include <stdio.h>
#include <string.h>
#include "mpadmin.h"

static const mpa_cmd *const tables[] = {
    mpa_store_cmds, mpa_keys_cmds, mpa_price_cmds, mpa_broker_cmds, mpa_audit_cmds, mpa_earnings_cmds,
    mpa_redeem_cmds
};
#define NTABLES (sizeof tables / sizeof tables[0])

static void print_cmd(FILE *f, const mpa_cmd *c)
{
    fprintf(f, "  %s%s%s %s\n", c->group, c->name[0] ? " " : "", c->name, c->args);
}

static void usage(FILE *f)
{
    size_t t;
    const mpa_cmd *c;

    fprintf(f, "usage: mpadmin [--json] GROUP [COMMAND] [ARGS]\n"
               "       mpadmin GROUP [COMMAND] --help\n\ncommands:\n");
    for (t = 0; t < NTABLES; t++)
        for (c = tables[t]; c->group; c++)
            print_cmd(f, c);
    fprintf(f, "\n--json prints machine-readable JSON on standard output.\n"
               "Exit codes: 0 success, 1 operation failed, 2 usage error, 3 not found.\n"
               "See docs/mpadmin.md.\n");
}

static void cmd_help(const mpa_cmd *c)
{
    printf("usage: mpadmin [--json] %s%s%s %s\n\n%s\n", c->group, c->name[0] ? " " : "",
           c->name, c->args, c->help);
}

static int is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* The commands of group, for "mpadmin GROUP" and "mpadmin GROUP --help". */
static int group_usage(const char *group, FILE *f)
{
    size_t t;
    const mpa_cmd *c;
    int n = 0;

    for (t = 0; t < NTABLES; t++)
        for (c = tables[t]; c->group; c++)
            if (strcmp(c->group, group) == 0) {
                if (n++ == 0)
                    fprintf(f, "%s commands (mpadmin %s COMMAND --help for each):\n", group, group);
                print_cmd(f, c);
            }
    return n;
}

int main(int argc, char **argv)
{
    mpa_opts o = { 0 };
    char *rest[64];
    int n = 0, i, skip;
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
    if (n == 0 || is_help(rest[0]) || strcmp(rest[0], "help") == 0) {
        usage(n == 0 ? stderr : stdout);
        return n == 0 ? MPA_USAGE : MPA_OK;
    }
    for (t = 0; t < NTABLES; t++) {
        for (c = tables[t]; c->group; c++) {
            if (strcmp(c->group, rest[0]) != 0)
                continue;
            if (c->name[0] == '\0')
                skip = 1;
            else if (n >= 2 && strcmp(c->name, rest[1]) == 0)
                skip = 2;
            else
                continue;
            for (i = skip; i < n; i++) {
                if (is_help(rest[i])) {
                    cmd_help(c);
                    return MPA_OK;
                }
            }
            return c->fn(&o, n - skip, rest + skip);
        }
    }
    if (n == 1 || (n == 2 && is_help(rest[1]))) {
        if (group_usage(rest[0], n == 1 ? stderr : stdout) > 0)
            return n == 1 ? MPA_USAGE : MPA_OK;
    } else if (group_usage(rest[0], stderr) > 0) {
        mpa_err("unknown command '%s %s'", rest[0], rest[1]);
        return MPA_USAGE;
    }
    mpa_err("unknown command '%s%s%s'; see mpadmin --help", rest[0], n > 1 ? " " : "",
            n > 1 ? rest[1] : "");
    return MPA_USAGE;
}
