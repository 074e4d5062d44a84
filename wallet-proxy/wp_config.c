/*
 * wp_config.c - the daemon's configuration (wp_config in wp.h): defaults,
 * the "Key value" file (tinyproxy/Apache style) and single settings from the
 * command line (-D KEY=VALUE). Every value is validated here, with messages
 * naming what is accepted, so that `wallet-proxy -t` catches every mistake
 * before the daemon starts.
 *
 * Lists (Allow, ConnectPort, Resolve): wp_config_set() appends. Within one
 * file the first Allow or ConnectPort replaces the default list; wp_main.c
 * does the same for the first -D of each.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <curl/curl.h>
#include "mp_amount.h"
#include "wp.h"
#include "wp_config.h"

#define WP_CONF_LINE_MAX 4096

static const char *const known_keys =
    "Listen, PortFile, PidFile, Allow, ConnectPort, Resolve, MaxClients, MaxHeaderSize, "
    "MaxRequestBody, UpstreamTimeout, StateDir, BrokerURL, BrokerCAFile, Account, "
    "AccountKeyFile, StoreSize, Threshold, SiteBudget, DailyBudget, Topup, PayWordOverHTTP, LogLevel, LogFile";

static int set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Parses a CIDR ("10.0.0.0/8", "::1", "fe80::/10") into n. 0 or -1. */
static int parse_net(const char *s, wp_net *n)
{
    char buf[80];
    const char *slash = strchr(s, '/');
    size_t alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
    unsigned long prefix;
    unsigned max;
    wp_net out;
    char *end;

    memset(&out, 0, sizeof(out));
    if (alen == 0 || alen >= sizeof(buf))
        return -1;
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    if (inet_pton(AF_INET, buf, out.addr) == 1) {
        out.family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, out.addr) == 1) {
        out.family = AF_INET6;
        max = 128;
    } else {
        return -1;
    }
    prefix = max;
    if (slash != NULL) {
        if (!isdigit((unsigned char)slash[1]))
            return -1;
        errno = 0;
        prefix = strtoul(slash + 1, &end, 10);
        if (errno != 0 || *end != '\0' || prefix > max)
            return -1;
    }
    out.prefix = (unsigned)prefix;
    *n = out;
    return 0;
}

/* Unsigned decimal in [lo, hi], with an optional k/M/G (binary) suffix when
 * allow_suffix. 0 or -1. */
static int parse_num(const char *s, unsigned long long lo, unsigned long long hi,
                     int allow_suffix, unsigned long long *out)
{
    unsigned long long v, mul = 1;
    char *end;

    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0)
        return -1;
    if (allow_suffix && *end != '\0' && end[1] == '\0') {
        switch (*end) {
        case 'k': case 'K': mul = 1024ULL; break;
        case 'm': case 'M': mul = 1024ULL * 1024; break;
        case 'g': case 'G': mul = 1024ULL * 1024 * 1024; break;
        default: return -1;
        }
        end++;
    }
    if (*end != '\0' || (v != 0 && mul > ~0ULL / v))
        return -1;
    v *= mul;
    if (v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_port(const char *s, unsigned lo, unsigned *out)
{
    unsigned long long v;

    if (parse_num(s, lo, 65535, 0, &v) != 0)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* "addr:port", "[v6]:port" or "port". Sets only what is given. */
static int parse_listen(const char *s, wp_config *c)
{
    char addr[64];
    unsigned char tmp[16];
    const char *colon, *portstr;
    size_t alen;
    unsigned port;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (close == NULL || close[1] != ':')
            return -1;
        alen = (size_t)(close - s - 1);
        if (alen == 0 || alen >= sizeof(addr))
            return -1;
        memcpy(addr, s + 1, alen);
        addr[alen] = '\0';
        portstr = close + 2;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            if (parse_port(s, 0, &port) != 0)
                return -1;
            c->listen_port = port;
            return 0;
        }
        if (strchr(s, ':') != colon)
            return -1;      /* a bare IPv6 address needs brackets */
        alen = (size_t)(colon - s);
        if (alen == 0 || alen >= sizeof(addr))
            return -1;
        memcpy(addr, s, alen);
        addr[alen] = '\0';
        portstr = colon + 1;
    }
    if (inet_pton(strchr(addr, ':') != NULL ? AF_INET6 : AF_INET, addr, tmp) != 1)
        return -1;
    if (parse_port(portstr, 0, &port) != 0)
        return -1;
    memcpy(c->listen_addr, addr, alen + 1);
    c->listen_port = port;
    return 0;
}

/* curl --resolve syntax "host:port:addr[,addr...]", addresses numeric. */
static int valid_resolve(const char *s)
{
    const char *p1 = strchr(s, ':'), *p2, *a;
    char port[8], addr[64];
    unsigned char tmp[16];
    unsigned v;
    size_t i;

    if (p1 == NULL || p1 == s)
        return -1;
    for (i = 0; s + i < p1; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (!isalnum(ch) && ch != '.' && ch != '-' && ch != '_')
            return -1;
    }
    p2 = strchr(p1 + 1, ':');
    if (p2 == NULL || (size_t)(p2 - p1 - 1) >= sizeof(port) || p2 == p1 + 1)
        return -1;
    memcpy(port, p1 + 1, (size_t)(p2 - p1 - 1));
    port[p2 - p1 - 1] = '\0';
    if (parse_port(port, 1, &v) != 0)
        return -1;
    a = p2 + 1;
    for (;;) {
        const char *comma = strchr(a, ',');
        size_t len = comma != NULL ? (size_t)(comma - a) : strlen(a);

        if (len >= 2 && a[0] == '[' && a[len - 1] == ']') {
            a++;
            len -= 2;
        }
        if (len == 0 || len >= sizeof(addr))
            return -1;
        memcpy(addr, a, len);
        addr[len] = '\0';
        if (inet_pton(AF_INET, addr, tmp) != 1 && inet_pton(AF_INET6, addr, tmp) != 1)
            return -1;
        if (comma == NULL)
            break;
        a = comma + 1;
    }
    return 0;
}

static int set_str(char *dst, size_t cap, const char *key, const char *value,
                   char *err, size_t errlen)
{
    size_t len = strlen(value);

    if (len == 0 || len >= cap)
        return set_err(err, errlen, "%s must be 1..%zu characters", key, cap - 1);
    memcpy(dst, value, len + 1);
    return 0;
}

static int set_amount(char *dst, size_t cap, const char *key, const char *value,
                      char *err, size_t errlen)
{
    mp_amount a;
    char buf[MP_AMOUNT_STRMAX];

    if (mp_amount_parse(value, strlen(value), &a) != MP_OK ||
        mp_amount_format(&a, buf, sizeof(buf)) != MP_OK || strlen(buf) >= cap)
        return set_err(err, errlen,
                       "%s must be an amount such as \"0.01 USD\" (up to 5 decimals, "
                       "3-letter currency), not \"%s\"", key, value);
    memcpy(dst, buf, strlen(buf) + 1);
    return 0;
}

void wp_config_defaults(wp_config *c)
{
    const char *home = getenv("HOME");

    memset(c, 0, sizeof(*c));
    snprintf(c->listen_addr, sizeof(c->listen_addr), "127.0.0.1");
    c->listen_port = 8402;
    parse_net("127.0.0.0/8", &c->allow[0]);
    parse_net("::1", &c->allow[1]);
    c->nallow = 2;
    c->connect_ports[0] = 443;
    c->nconnect_ports = 1;
    c->max_clients = 256;
    c->max_header_bytes = 65536;
    c->max_request_body = 8u * 1024 * 1024;
    c->upstream_timeout = 60;
    if (home != NULL && home[0] == '/' && strlen(home) + sizeof("/.mpwallet") <= sizeof(c->state_dir))
        snprintf(c->state_dir, sizeof(c->state_dir), "%s/.mpwallet", home);
    else
        snprintf(c->state_dir, sizeof(c->state_dir), ".mpwallet");
    c->store_size = 64u * 1024 * 1024;
    snprintf(c->threshold, sizeof(c->threshold), "0.01 USD");
    snprintf(c->site_budget, sizeof(c->site_budget), "0.50 USD");
    snprintf(c->daily_budget, sizeof(c->daily_budget), "2.00 USD");
    snprintf(c->topup, sizeof(c->topup), "1.00 USD");
    c->log_level = WP_LOG_INFO;
}

int wp_config_set(wp_config *c, const char *key, const char *value, char *err, size_t errlen)
{
    unsigned long long v;

    if (value == NULL || value[0] == '\0')
        return set_err(err, errlen, "%s needs a value", key);
    if (strcasecmp(key, "Listen") == 0) {
        if (parse_listen(value, c) != 0)
            return set_err(err, errlen, "%s must be ADDR:PORT, [IPv6]:PORT or PORT "
                           "(numeric address, port 0..65535; 0 = any free port), not \"%s\"",
                           key, value);
    } else if (strcasecmp(key, "PortFile") == 0) {
        return set_str(c->port_file, sizeof(c->port_file), key, value, err, errlen);
    } else if (strcasecmp(key, "PidFile") == 0) {
        return set_str(c->pid_file, sizeof(c->pid_file), key, value, err, errlen);
    } else if (strcasecmp(key, "Allow") == 0) {
        wp_net n;

        if (parse_net(value, &n) != 0)
            return set_err(err, errlen, "%s must be an IPv4 or IPv6 address or network "
                           "(\"127.0.0.0/8\", \"::1\"), not \"%s\"", key, value);
        if (c->nallow >= WP_MAX_ALLOW)
            return set_err(err, errlen, "%s may be given at most %d times", key, 16);
        c->allow[c->nallow++] = n;
    } else if (strcasecmp(key, "ConnectPort") == 0) {
        unsigned port;

        if (parse_port(value, 1, &port) != 0)
            return set_err(err, errlen, "%s must be 1..65535, not \"%s\"", key, value);
        if (c->nconnect_ports >= WP_MAX_CONNECT_PORTS)
            return set_err(err, errlen, "%s may be given at most %d times", key, 16);
        c->connect_ports[c->nconnect_ports++] = port;
    } else if (strcasecmp(key, "Resolve") == 0) {
        if (strlen(value) >= sizeof(c->resolve[0]) || valid_resolve(value) != 0)
            return set_err(err, errlen, "%s must be HOST:PORT:ADDR with a numeric address "
                           "(\"news.example:8080:127.0.0.1\"), not \"%s\"", key, value);
        if (c->nresolve >= WP_MAX_RESOLVE)
            return set_err(err, errlen, "%s may be given at most %d times", key, 16);
        memcpy(c->resolve[c->nresolve++], value, strlen(value) + 1);
    } else if (strcasecmp(key, "MaxClients") == 0) {
        if (parse_num(value, 1, 4096, 0, &v) != 0)
            return set_err(err, errlen, "%s must be 1..4096, not \"%s\"", key, value);
        c->max_clients = (unsigned)v;
    } else if (strcasecmp(key, "MaxHeaderSize") == 0) {
        if (parse_num(value, 1024, 1024 * 1024, 1, &v) != 0)
            return set_err(err, errlen, "%s must be 1024..1048576 bytes (or 1K..1024K), "
                           "not \"%s\"", key, value);
        c->max_header_bytes = (size_t)v;
    } else if (strcasecmp(key, "MaxRequestBody") == 0) {
        if (parse_num(value, 0, 1024ULL * 1024 * 1024, 1, &v) != 0)
            return set_err(err, errlen, "%s must be 0..1073741824 bytes (or up to 1G), "
                           "not \"%s\"", key, value);
        c->max_request_body = (size_t)v;
    } else if (strcasecmp(key, "UpstreamTimeout") == 0) {
        if (parse_num(value, 1, 3600, 0, &v) != 0)
            return set_err(err, errlen, "%s must be 1..3600 seconds, not \"%s\"", key, value);
        c->upstream_timeout = (unsigned)v;
    } else if (strcasecmp(key, "StateDir") == 0) {
        return set_str(c->state_dir, sizeof(c->state_dir), key, value, err, errlen);
    } else if (strcasecmp(key, "BrokerURL") == 0) {
        CURLU *u = curl_url();
        int bad = u == NULL ||
                  (strncasecmp(value, "https://", 8) != 0 && strncasecmp(value, "http://", 7) != 0) ||
                  curl_url_set(u, CURLUPART_URL, value, 0) != CURLUE_OK;

        curl_url_cleanup(u);
        if (bad || strlen(value) >= sizeof(c->broker_url))
            return set_err(err, errlen, "%s must be an http:// or https:// URL of at most "
                           "511 characters, not \"%s\"", key, value);
        memcpy(c->broker_url, value, strlen(value) + 1);
    } else if (strcasecmp(key, "BrokerCAFile") == 0) {
        return set_str(c->broker_ca_file, sizeof(c->broker_ca_file), key, value, err, errlen);
    } else if (strcasecmp(key, "Account") == 0) {
        size_t i, len = strlen(value);

        for (i = 0; i < len; i++)
            if (value[i] < 0x21 || value[i] > 0x7e || value[i] == '"' || value[i] == '\\')
                break;
        if (len > 64 || i < len)
            return set_err(err, errlen, "%s must be 1..64 visible ASCII characters without "
                           "'\"' or '\\', not \"%s\"", key, value);
        memcpy(c->account, value, len + 1);
    } else if (strcasecmp(key, "AccountKeyFile") == 0) {
        return set_str(c->account_key_file, sizeof(c->account_key_file), key, value, err, errlen);
    } else if (strcasecmp(key, "StoreSize") == 0) {
        if (parse_num(value, 1024ULL * 1024, 1024ULL * 1024 * 1024 * 1024, 1, &v) != 0 ||
            v > (unsigned long long)(size_t)-1)
            return set_err(err, errlen, "%s must be 1M..1024G bytes (suffix K, M or G), "
                           "not \"%s\"", key, value);
        c->store_size = (size_t)v;
    } else if (strcasecmp(key, "Threshold") == 0) {
        return set_amount(c->threshold, sizeof(c->threshold), key, value, err, errlen);
    } else if (strcasecmp(key, "SiteBudget") == 0) {
        return set_amount(c->site_budget, sizeof(c->site_budget), key, value, err, errlen);
    } else if (strcasecmp(key, "DailyBudget") == 0) {
        return set_amount(c->daily_budget, sizeof(c->daily_budget), key, value, err, errlen);
    } else if (strcasecmp(key, "Topup") == 0) {
        return set_amount(c->topup, sizeof(c->topup), key, value, err, errlen);
    } else if (strcasecmp(key, "PayWordOverHTTP") == 0) {
        if (strcasecmp(value, "on") == 0)
            c->payword_over_http = 1;
        else if (strcasecmp(value, "off") == 0)
            c->payword_over_http = 0;
        else
            return set_err(err, errlen, "%s must be on or off, not \"%s\"", key, value);
    } else if (strcasecmp(key, "LogLevel") == 0) {
        static const char *const names[] = { "error", "warn", "info", "debug" };
        int i;

        for (i = 0; i < 4; i++)
            if (strcasecmp(value, names[i]) == 0)
                break;
        if (i == 4)
            return set_err(err, errlen, "%s must be error, warn, info or debug, not \"%s\"",
                           key, value);
        c->log_level = i;
    } else if (strcasecmp(key, "LogFile") == 0) {
        return set_str(c->log_file, sizeof(c->log_file), key, value, err, errlen);
    } else {
        return set_err(err, errlen, "unknown key \"%s\" (known: %s)", key, known_keys);
    }
    return 0;
}

/* Strips leading/trailing blanks in place; returns the start. */
static char *trim(char *s)
{
    size_t n;

    while (*s == ' ' || *s == '\t')
        s++;
    n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* The lines of f (named name in messages) into c. 0, or -1 with err. */
static int parse_stream(wp_config *c, FILE *f, const char *name, char *err, size_t errlen)
{
    char line[WP_CONF_LINE_MAX + 2];
    char msg[768];
    unsigned lineno = 0;
    int allow_seen = 0, ports_seen = 0;

    while (fgets(line, sizeof(line), f) != NULL) {
        char *key, *value, *p;
        size_t vlen;

        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "%s:%u: line longer than %d characters", name, lineno,
                         WP_CONF_LINE_MAX);
            return -1;
        }
        key = trim(line);
        if (key[0] == '\0' || key[0] == '#')
            continue;
        for (p = key; *p != '\0' && *p != ' ' && *p != '\t'; p++)
            ;
        value = p;
        if (*p != '\0') {
            *p = '\0';
            value = trim(p + 1);
        }
        vlen = strlen(value);
        if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
            value[vlen - 1] = '\0';
            value++;
        }
        if (strcasecmp(key, "Allow") == 0 && !allow_seen) {
            allow_seen = 1;
            c->nallow = 0;
        } else if (strcasecmp(key, "ConnectPort") == 0 && !ports_seen) {
            ports_seen = 1;
            c->nconnect_ports = 0;
        }
        if (wp_config_set(c, key, value, msg, sizeof(msg)) != 0) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "%s:%u: %s", name, lineno, msg);
            return -1;
        }
    }
    if (ferror(f)) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: read error", name);
        return -1;
    }
    return 0;
}

int wp_config_load(wp_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = NULL;
    int rv = -1;

    if (path == NULL)
        return 0;
    f = fopen(path, "r");
    if (f == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto out;
    }
    rv = parse_stream(c, f, path, err, errlen);
out:
    if (f != NULL)
        fclose(f);
    return rv;
}

int wp_config_parse_buffer(wp_config *c, const char *name, const char *buf, size_t len,
                           char *err, size_t errlen)
{
    FILE *f;
    int rv;

    if (len == 0)
        return 0;
    f = fmemopen((void *)(uintptr_t)buf, len, "r");
    if (f == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: cannot read: %s", name, strerror(errno));
        return -1;
    }
    rv = parse_stream(c, f, name, err, errlen);
    fclose(f);
    return rv;
}
