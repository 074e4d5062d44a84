/*
 * mpwallet - the command-line face of wallet-proxy: balances, history,
 * budgets, top-up and held payments, through the daemon's JSON API (the
 * same API the web UI uses; docs/wallet-proxy.md, "Web UI and CLI").
 *
 *   mpwallet [--json] [-d STATE_DIR] [-u URL] COMMAND [ARGS]
 *
 * It reads the session token the daemon wrote to STATE_DIR/ui.token and
 * sends it as X-Wallet-Token, with Origin set to the wallet's origin. It
 * links only libcurl and jansson: everything it knows comes from the daemon.
 * Exit codes: 0 success, 1 the daemon answered an error, 2 usage error,
 * 3 the daemon cannot be reached (or its token cannot be read).
 */
#define _DEFAULT_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include <jansson.h>

#define EXIT_OK          0
#define EXIT_FAILED      1
#define EXIT_USAGE       2
#define EXIT_UNREACHABLE 3

#define DEFAULT_URL      "http://127.0.0.1:8402"
#define MAX_ANSWER       (16 * 1024 * 1024)
#define MAX_TOKEN        256

typedef struct {
    int json;
    const char *state_dir;     /* NULL: $MPWALLET_STATE_DIR or ~/.mpwallet */
    const char *url;           /* NULL: $MPWALLET_URL or DEFAULT_URL */
    char origin[512];          /* scheme://host[:port] of url */
    char token[MAX_TOKEN];
} opts;

typedef int (*cmd_fn)(opts *o, int argc, char **argv);

typedef struct {
    const char *name;
    const char *args;
    const char *help;
    cmd_fn run;
} cmd;

static void err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void err(const char *fmt, ...)
{
    va_list ap;

    fputs("mpwallet: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- talking to the daemon --------------------------------------------- */

typedef struct {
    char *p;
    size_t len;
    int too_big;
} answer_buf;

static size_t on_data(char *data, size_t size, size_t nmemb, void *arg)
{
    answer_buf *b = arg;
    size_t n = size * nmemb;
    char *np;

    if (b->len + n > MAX_ANSWER) {
        b->too_big = 1;
        return 0;
    }
    if ((np = realloc(b->p, b->len + n + 1)) == NULL)
        return 0;
    b->p = np;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

/* The wallet URL from -u, $MPWALLET_URL or the default, reduced to its
 * origin in o->origin. Returns 0, or EXIT_USAGE after a message. */
static int set_origin(opts *o)
{
    const char *url = o->url;
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    int rv = EXIT_USAGE, n;

    if (url == NULL)
        url = getenv("MPWALLET_URL");
    if (url == NULL || url[0] == '\0')
        url = DEFAULT_URL;
    if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        err("%s: not a URL (give -u http://127.0.0.1:PORT)", url);
        goto out;
    }
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        err("%s: the wallet URL must be http:// (give -u http://127.0.0.1:PORT)", url);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
        port = NULL;
    n = snprintf(o->origin, sizeof o->origin, "%s://%s%s%s", scheme, host, port ? ":" : "",
                 port ? port : "");
    if (n < 0 || (size_t)n >= sizeof o->origin) {
        err("%s: URL too long", url);
        goto out;
    }
    rv = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rv;
}

/* Reads STATE_DIR/ui.token into o->token. Returns 0, or EXIT_UNREACHABLE
 * after a message. */
static int load_token(opts *o)
{
    char path[4096];
    const char *dir = o->state_dir, *home;
    FILE *f;
    size_t n;
    int rv = EXIT_UNREACHABLE;

    if (dir == NULL)
        dir = getenv("MPWALLET_STATE_DIR");
    if (dir != NULL && dir[0] != '\0') {
        n = (size_t)snprintf(path, sizeof path, "%s/ui.token", dir);
    } else {
        home = getenv("HOME");
        n = (size_t)snprintf(path, sizeof path, "%s/.mpwallet/ui.token", home ? home : ".");
    }
    if (n >= sizeof path) {
        err("state directory path too long");
        return EXIT_USAGE;
    }
    if ((f = fopen(path, "r")) == NULL) {
        err("cannot read %s: %s (is wallet-proxy running with this state directory? "
            "see -d)", path, strerror(errno));
        return rv;
    }
    n = fread(o->token, 1, sizeof o->token - 1, f);
    fclose(f);
    while (n > 0 && isspace((unsigned char)o->token[n - 1]))
        n--;
    o->token[n] = '\0';
    if (n == 0 || n == sizeof o->token - 1) {
        err("%s does not hold a wallet token", path);
        goto out;
    }
    rv = 0;
out:
    if (rv != 0)
        explicit_bzero(o->token, sizeof o->token);
    return rv;
}

/* Sends method path (with body as JSON when not NULL) and parses the JSON
 * answer into *out. Returns EXIT_OK, EXIT_FAILED (the daemon answered an
 * error: message printed) or EXIT_UNREACHABLE. */
static int call(opts *o, const char *method, const char *path, const json_t *body, json_t **out)
{
    CURL *c = NULL;
    struct curl_slist *h = NULL;
    answer_buf b = { 0 };
    char url[1024], line[MAX_TOKEN + 32], cerr[CURL_ERROR_SIZE] = "";
    char *payload = NULL;
    json_t *j = NULL;
    json_error_t jerr;
    const char *msg;
    long status = 0;
    CURLcode rc;
    int rv = EXIT_UNREACHABLE;

    if ((size_t)snprintf(url, sizeof url, "%s%s", o->origin, path) >= sizeof url) {
        err("URL too long");
        rv = EXIT_USAGE;
        goto out;
    }
    if ((c = curl_easy_init()) == NULL) {
        err("cannot start libcurl");
        goto out;
    }
    snprintf(line, sizeof line, "X-Wallet-Token: %s", o->token);
    h = curl_slist_append(h, line);
    explicit_bzero(line, sizeof line);
    snprintf(line, sizeof line, "Origin: %.*s", (int)(sizeof line - 9), o->origin);
    h = curl_slist_append(h, line);
    h = curl_slist_append(h, "Accept: application/json");
    if (body != NULL) {
        h = curl_slist_append(h, "Content-Type: application/json");
        if ((payload = json_dumps(body, JSON_COMPACT)) == NULL) {
            err("out of memory");
            rv = EXIT_FAILED;
            goto out;
        }
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
    }
    if (h == NULL) {
        err("out of memory");
        rv = EXIT_FAILED;
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_PROXY, "");          /* never via http_proxy */
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);      /* a top-up waits for the broker */
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    if ((rc = curl_easy_perform(c)) != CURLE_OK) {
        if (b.too_big) {
            err("the wallet's answer is larger than %d bytes", MAX_ANSWER);
            rv = EXIT_FAILED;
        } else {
            err("cannot reach the wallet at %s: %s", o->origin,
                cerr[0] ? cerr : curl_easy_strerror(rc));
        }
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    rv = EXIT_FAILED;
    j = b.p != NULL ? json_loadb(b.p, b.len, 0, &jerr) : NULL;
    if (status < 200 || status > 299) {
        msg = json_string_value(json_object_get(j, "message"));
        if (msg == NULL)
            msg = json_string_value(json_object_get(j, "error"));
        err("the wallet refused: %s (HTTP %ld)", msg ? msg : "no reason given", status);
        goto out;
    }
    if (j == NULL) {
        err("the wallet's answer is not JSON (is %s the wallet?)", o->origin);
        goto out;
    }
    *out = j;
    j = NULL;
    rv = EXIT_OK;
out:
    json_decref(j);
    free(b.p);
    free(payload);
    curl_slist_free_all(h);
    if (c != NULL)
        curl_easy_cleanup(c);
    return rv;
}

/* ---- output ------------------------------------------------------------ */

static void print_json(const json_t *j)
{
    json_dumpf(j, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
}

/* A cell's text: strings as given, numbers in decimal, "time" members as
 * local time. */
static json_t *cell(const json_t *obj, const char *key, int is_time)
{
    const json_t *v = json_object_get(obj, key);
    char buf[64];
    struct tm tm;
    time_t t;

    if (json_is_string(v))
        return json_string(json_string_value(v));
    if (json_is_integer(v)) {
        if (is_time) {
            t = (time_t)json_integer_value(v);
            if (localtime_r(&t, &tm) != NULL && strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S",
                                                         &tm) > 0)
                return json_string(buf);
        }
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return json_string(buf);
    }
    return json_string("");
}

/* Prints rows (an array of objects) as a table: one column per key, titled
 * by head; keys starting with '@' are times. */
static void print_table(const json_t *rows, const char *const *head, const char *const *keys,
                        size_t ncols)
{
    size_t w[16] = { 0 }, i, k, len;
    json_t *cells = json_array(), *row, *r;
    const json_t *obj;

    if (cells == NULL || ncols > 16)
        goto out;
    for (k = 0; k < ncols; k++)
        w[k] = strlen(head[k]);
    json_array_foreach(rows, i, obj) {
        if ((row = json_array()) == NULL)
            goto out;
        for (k = 0; k < ncols; k++) {
            json_array_append_new(row, cell(obj, keys[k][0] == '@' ? keys[k] + 1 : keys[k],
                                            keys[k][0] == '@'));
            len = strlen(json_string_value(json_array_get(row, k)) ?
                         json_string_value(json_array_get(row, k)) : "");
            if (len > w[k])
                w[k] = len;
        }
        json_array_append_new(cells, row);
    }
    for (k = 0; k < ncols; k++) {
        if (k + 1 < ncols)
            printf("%-*s  ", (int)w[k], head[k]);
        else
            printf("%s\n", head[k]);
    }
    json_array_foreach(cells, i, r) {
        for (k = 0; k < ncols; k++) {
            const char *s = json_string_value(json_array_get(r, k));

            if (k + 1 < ncols)
                printf("%-*s  ", (int)w[k], s ? s : "");
            else
                printf("%s\n", s ? s : "");
        }
    }
out:
    json_decref(cells);
}

static const char *str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s != NULL ? s : "-";
}

static void print_balance(const json_t *b)
{
    static const char *const vhead[] = { "VENDOR", "HOST", "SCRIP", "PIECES" };
    static const char *const vkeys[] = { "vendor", "host", "scrip", "pieces" };
    static const char *const chead[] = { "VENDOR", "HOST", "WORD VALUE", "WORDS LEFT", "OF",
                                         "EXPIRES" };
    static const char *const ckeys[] = { "vendor", "host", "unit", "words_left", "n", "@expires" };
    const json_t *broker = json_object_get(b, "broker");
    const json_t *vendors = json_object_get(b, "vendors"), *chains = json_object_get(b, "chains");

    printf("Broker scrip  %s", str(broker, "scrip"));
    if (json_is_integer(json_object_get(broker, "pieces"))) {
        json_int_t np = json_integer_value(json_object_get(broker, "pieces"));

        printf(" (%" JSON_INTEGER_FORMAT " piece%s)", np, np == 1 ? "" : "s");
    }
    printf("\n");
    if (json_is_string(json_object_get(broker, "account")))
        printf("Account       %s at %s\n", str(broker, "account"), str(broker, "url"));
    printf("Spent today   %s\n", str(b, "spent_today"));
    printf("In flight     %" JSON_INTEGER_FORMAT "\n",
           json_integer_value(json_object_get(b, "in_flight")));
    printf("\nVendor scrip\n");
    if (json_array_size(vendors) == 0)
        printf("  (none)\n");
    else
        print_table(vendors, vhead, vkeys, 4);
    printf("\nPayWord chains\n");
    if (json_array_size(chains) == 0)
        printf("  (none)\n");
    else
        print_table(chains, chead, ckeys, 6);
}

static void print_policy(const json_t *p)
{
    static const struct {
        const char *key, *label, *what;
    } rows[] = {
        { "threshold", "threshold", "pay without asking up to this per request" },
        { "site_budget", "site budget", "per site per day" },
        { "daily_budget", "daily budget", "all sites per day" },
        { "topup", "top-up", "broker scrip bought when it runs low" },
        { "prefer", "prefer", "scheme used when a site offers both" },
    };
    size_t i;

    for (i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (json_object_get(p, rows[i].key) != NULL)
            printf("%-13s %-12s %s\n", rows[i].label, str(p, rows[i].key), rows[i].what);
}

/* ---- commands ---------------------------------------------------------- */

static int is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

static int cmd_balance(opts *o, int argc, char **argv)
{
    json_t *j = NULL;
    int rv;

    (void)argv;
    if (argc != 0) {
        err("balance takes no arguments");
        return EXIT_USAGE;
    }
    if ((rv = call(o, "GET", "/api/balance", NULL, &j)) != EXIT_OK)
        return rv;
    if (o->json)
        print_json(j);
    else
        print_balance(j);
    json_decref(j);
    return EXIT_OK;
}

static int cmd_history(opts *o, int argc, char **argv)
{
    static const char *const head[] = { "TIME", "SITE", "METHOD", "PRICE", "SCHEME", "STATUS",
                                        "URL" };
    static const char *const keys[] = { "@time", "site", "method", "price", "scheme", "status",
                                        "url" };
    unsigned long n = 50;
    char path[64], *end;
    json_t *j = NULL;
    int rv, i;

    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            errno = 0;
            n = strtoul(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || n < 1 || n > 1000 || argv[i][0] == '-') {
                err("-n wants a number from 1 to 1000");
                return EXIT_USAGE;
            }
        } else {
            err("history: unexpected argument %s", argv[i]);
            return EXIT_USAGE;
        }
    }
    snprintf(path, sizeof path, "/api/history?limit=%lu", n);
    if ((rv = call(o, "GET", path, NULL, &j)) != EXIT_OK)
        return rv;
    if (o->json)
        print_json(j);
    else if (json_array_size(j) == 0)
        printf("No payments yet.\n");
    else
        print_table(j, head, keys, 7);
    json_decref(j);
    return EXIT_OK;
}

static int cmd_budget(opts *o, int argc, char **argv)
{
    static const struct {
        const char *opt, *key;
    } sets[] = {
        { "--threshold", "threshold" }, { "--site-budget", "site_budget" },
        { "--daily-budget", "daily_budget" }, { "--topup", "topup" }, { "--prefer", "prefer" },
    };
    json_t *changes = NULL, *j = NULL;
    const char *val, *eq;
    size_t k, olen;
    int rv = EXIT_USAGE, i;

    if (argc == 0) {
        if ((rv = call(o, "GET", "/api/policy", NULL, &j)) != EXIT_OK)
            return rv;
        goto print;
    }
    if (strcmp(argv[0], "set") != 0) {
        err("budget: unknown subcommand %s (budget, or budget set OPTIONS)", argv[0]);
        return EXIT_USAGE;
    }
    if ((changes = json_object()) == NULL)
        return EXIT_FAILED;
    for (i = 1; i < argc; i++) {
        eq = strchr(argv[i], '=');
        olen = eq != NULL ? (size_t)(eq - argv[i]) : strlen(argv[i]);
        for (k = 0; k < sizeof sets / sizeof sets[0]; k++)
            if (strlen(sets[k].opt) == olen && strncmp(argv[i], sets[k].opt, olen) == 0)
                break;
        if (k == sizeof sets / sizeof sets[0]) {
            err("budget set: unknown option %s", argv[i]);
            goto out;
        }
        if (eq != NULL) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            err("budget set: %s needs a value", sets[k].opt);
            goto out;
        }
        if (strcmp(sets[k].key, "prefer") == 0 && strcmp(val, "millicent") != 0 &&
            strcmp(val, "payword") != 0) {
            err("budget set: --prefer is millicent or payword");
            goto out;
        }
        json_object_set_new(changes, sets[k].key, json_string(val));
    }
    if (json_object_size(changes) == 0) {
        err("budget set: give at least one of --threshold, --site-budget, --daily-budget, "
            "--topup, --prefer");
        goto out;
    }
    if ((rv = call(o, "POST", "/api/policy", changes, &j)) != EXIT_OK)
        goto out;
print:
    if (o->json)
        print_json(j);
    else
        print_policy(j);
    rv = EXIT_OK;
out:
    json_decref(changes);
    json_decref(j);
    return rv;
}

static int cmd_topup(opts *o, int argc, char **argv)
{
    char amount[128] = "";
    json_t *body = NULL, *j = NULL;
    int rv = EXIT_USAGE, i;

    /* "topup 1.00 USD" and "topup '1.00 USD'" both work. */
    for (i = 0; i < argc; i++) {
        if (strlen(amount) + strlen(argv[i]) + 2 > sizeof amount) {
            err("topup: amount too long");
            return EXIT_USAGE;
        }
        if (i > 0)
            strcat(amount, " ");
        strcat(amount, argv[i]);
    }
    if (amount[0] == '\0') {
        err("topup: give an amount, e.g. mpwallet topup 1.00 USD");
        return EXIT_USAGE;
    }
    if ((body = json_pack("{s:s}", "amount", amount)) == NULL)
        return EXIT_FAILED;
    if ((rv = call(o, "POST", "/api/topup", body, &j)) != EXIT_OK)
        goto out;
    if (o->json) {
        print_json(j);
    } else {
        printf("Bought %s of broker scrip.\n\n", amount);
        print_balance(j);
    }
out:
    json_decref(body);
    json_decref(j);
    return rv;
}

static int cmd_pending(opts *o, int argc, char **argv)
{
    static const char *const head[] = { "ID", "SITE", "METHOD", "PRICE", "REASON", "HELD AT",
                                        "URL" };
    static const char *const keys[] = { "id", "site", "method", "price", "reason", "@created",
                                        "url" };
    json_t *j = NULL;
    int rv;

    (void)argv;
    if (argc != 0) {
        err("pending takes no arguments");
        return EXIT_USAGE;
    }
    if ((rv = call(o, "GET", "/api/pending", NULL, &j)) != EXIT_OK)
        return rv;
    if (o->json)
        print_json(j);
    else if (json_array_size(j) == 0)
        printf("No payments waiting.\n");
    else
        print_table(j, head, keys, 7);
    json_decref(j);
    return EXIT_OK;
}

static int decide(opts *o, int argc, char **argv, int approve)
{
    char path[160];
    json_t *body = NULL, *j = NULL;
    size_t n;
    int rv;

    if (argc != 1) {
        err("%s: give one ID (see mpwallet pending)", approve ? "approve" : "decline");
        return EXIT_USAGE;
    }
    n = strlen(argv[0]);
    if (n == 0 || n > 64 ||
        strspn(argv[0], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != n) {
        err("%s: %s is not a payment ID", approve ? "approve" : "decline", argv[0]);
        return EXIT_USAGE;
    }
    snprintf(path, sizeof path, "/api/pending/%s/%s", argv[0], approve ? "approve" : "decline");
    if ((body = json_object()) == NULL)
        return EXIT_FAILED;
    rv = call(o, "POST", path, body, &j);
    if (rv == EXIT_OK) {
        if (o->json)
            print_json(j);
        else if (approve)
            printf("Approved %s: the next request for %s pays.\n", argv[0], str(j, "url"));
        else
            printf("Declined %s.\n", argv[0]);
    }
    json_decref(body);
    json_decref(j);
    return rv;
}

static int cmd_approve(opts *o, int argc, char **argv)
{
    return decide(o, argc, argv, 1);
}

static int cmd_decline(opts *o, int argc, char **argv)
{
    return decide(o, argc, argv, 0);
}

static const cmd cmds[] = {
    { "balance", "", "Broker scrip, vendor scrip per vendor, PayWord chains with the words\n"
      "left, what was spent today and payments in flight.", cmd_balance },
    { "history", "[-n N]", "The last N payments (default 50, at most 1000), newest first:\n"
      "time, site, method, price, scheme, status and URL.", cmd_history },
    { "budget", "[set [--threshold A] [--site-budget A] [--daily-budget A] [--topup A]\n"
      "               [--prefer millicent|payword]]",
      "Without set: shows the policy. With set: changes the given members (amounts\n"
      "like \"0.05 USD\"; quote them) and shows the new policy. The wallet checks\n"
      "every value before it changes any.", cmd_budget },
    { "topup", "AMOUNT", "Buys AMOUNT (e.g. 1.00 USD) of broker scrip from the account at the\n"
      "broker and shows the new balance.", cmd_topup },
    { "pending", "", "Payments held for confirmation (above the threshold or a budget).",
      cmd_pending },
    { "approve", "ID", "Approves held payment ID: the next request for its URL within 10\n"
      "minutes pays.", cmd_approve },
    { "decline", "ID", "Declines held payment ID.", cmd_decline },
    { NULL, NULL, NULL, NULL }
};

static void usage(FILE *f)
{
    const cmd *c;

    fprintf(f, "usage: mpwallet [--json] [-d STATE_DIR] [-u URL] COMMAND [ARGS]\n"
               "       mpwallet COMMAND --help\n\ncommands:\n");
    for (c = cmds; c->name; c++)
        fprintf(f, "  %s%s%s\n", c->name, c->args[0] ? " " : "", c->args);
    fprintf(f, "\noptions:\n"
               "  --json         print the daemon's JSON answer\n"
               "  -d STATE_DIR   the daemon's state directory, for ui.token\n"
               "                 (default $MPWALLET_STATE_DIR, else ~/.mpwallet)\n"
               "  -u URL         the wallet (default $MPWALLET_URL, else " DEFAULT_URL ")\n"
               "\nExit codes: 0 success, 1 the wallet answered an error, 2 usage error,\n"
               "3 the wallet cannot be reached. See docs/wallet-proxy.md.\n");
}

int main(int argc, char **argv)
{
    opts o;
    char *rest[64];
    int n = 0, i, rv;
    const cmd *c;

    memset(&o, 0, sizeof o);
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            o.json = 1;
        } else if (n == 0 && (strcmp(argv[i], "-d") == 0 || strcmp(argv[i], "-u") == 0)) {
            if (i + 1 >= argc) {
                err("%s needs a value", argv[i]);
                return EXIT_USAGE;
            }
            if (argv[i][1] == 'd')
                o.state_dir = argv[++i];
            else
                o.url = argv[++i];
        } else if (n == 0 && is_help(argv[i])) {
            usage(stdout);
            return EXIT_OK;
        } else if (n == 0 && argv[i][0] == '-') {
            err("unknown option %s", argv[i]);
            usage(stderr);
            return EXIT_USAGE;
        } else if (n < 64) {
            rest[n++] = argv[i];
        } else {
            err("too many arguments");
            return EXIT_USAGE;
        }
    }
    if (n == 0) {
        usage(stderr);
        return EXIT_USAGE;
    }
    for (c = cmds; c->name && strcmp(c->name, rest[0]) != 0; c++)
        ;
    if (c->name == NULL) {
        err("unknown command %s", rest[0]);
        usage(stderr);
        return EXIT_USAGE;
    }
    for (i = 1; i < n; i++)
        if (is_help(rest[i])) {
            printf("usage: mpwallet [--json] %s%s%s\n\n%s\n", c->name, c->args[0] ? " " : "",
                   c->args, c->help);
            return EXIT_OK;
        }
    if ((rv = set_origin(&o)) != 0)
        return rv;
    if ((rv = load_token(&o)) != 0)
        return rv;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        err("cannot start libcurl");
        return EXIT_FAILED;
    }
    rv = c->run(&o, n - 1, rest + 1);
    curl_global_cleanup();
    explicit_bzero(o.token, sizeof o.token);
    return rv;
}
