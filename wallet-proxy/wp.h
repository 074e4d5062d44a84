/*
 * wp.h - what every part of wallet-proxy shares: the configuration, logging
 * and the (name, value) header pairs passed between the proxy core, the
 * payment engine and the UI.
 *
 * Threading: the daemon runs one thread per browser connection (see
 * docs/WALLET-DESIGN.md). Everything declared here is safe to call from any
 * thread; the configuration is read-only after wp_config_load() except the
 * policy, which lives in the wallet store (wp_wallet.h).
 */
#ifndef WP_H
#define WP_H

#include <stddef.h>
#include <stdint.h>

#define WP_MAX_ALLOW        16
#define WP_MAX_CONNECT_PORTS 16
#define WP_MAX_RESOLVE      16

/* One header field. Strings are owned by whoever built the array. */
typedef struct {
    const char *name;
    const char *value;
} wp_hdr;

/* An answer the wallet itself makes (UI, PAC, confirmation and error pages).
 * All strings are malloc'ed and owned by the struct; wp_page_clear() frees. */
typedef struct {
    int status;              /* 0 = no page */
    char *content_type;      /* e.g. "text/html; charset=utf-8" */
    char *location;          /* Location header or NULL */
    char *extra_headers;     /* further "Name: value\r\n" lines or NULL */
    char *body;              /* body bytes (may contain NUL: use body_len) */
    size_t body_len;
} wp_page;

void wp_page_clear(wp_page *p);
/* Fills p (freeing what it held) with a copy of body; returns 0, -1 on ENOMEM. */
int wp_page_set(wp_page *p, int status, const char *ctype, const char *body, size_t len);

/* IPv4/IPv6 network for the Allow list. */
typedef struct {
    int family;              /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
} wp_net;

typedef struct {
    /* listening */
    char listen_addr[64];    /* default "127.0.0.1" */
    unsigned listen_port;    /* default 8402; 0 = pick a free port */
    char port_file[512];     /* write the bound port here once listening ("" = none) */
    char pid_file[512];
    wp_net allow[WP_MAX_ALLOW]; size_t nallow;   /* default 127.0.0.0/8 and ::1 */
    unsigned connect_ports[WP_MAX_CONNECT_PORTS]; size_t nconnect_ports; /* default 443 */
    char resolve[WP_MAX_RESOLVE][256]; size_t nresolve; /* curl --resolve "host:port:addr" */
    /* limits */
    unsigned max_clients;          /* default 256 concurrent connections */
    size_t max_header_bytes;       /* request line + headers, default 65536 */
    size_t max_request_body;       /* buffered request bodies, default 8 MiB */
    unsigned upstream_timeout;     /* seconds to connect / between bytes, default 60 */
    /* the wallet */
    char state_dir[512];     /* wallet.lmdb, ui.token live here; 0700 */
    char broker_url[512];    /* base URL of the broker, e.g. https://broker.example/mp */
    char broker_ca_file[512];/* CA bundle for the broker ("" = system default) */
    char account[65];        /* customer account id at the broker */
    char account_key_file[512]; /* 0600 file: base64url of the 32-byte account key */
    size_t store_size;       /* LMDB map size, default 64 MiB */
    /* policy defaults; the store's copy wins once the user edits it */
    char threshold[48];      /* auto-pay at or below this per request, "0.01 USD" */
    char site_budget[48];    /* per site per day, "0.50 USD" */
    char daily_budget[48];   /* all sites per day, "2.00 USD" */
    char topup[48];          /* broker scrip bought when low, "1.00 USD" */
    int payword_over_http;   /* PayWordOverHTTP: pay PayWord on plain http (default off) */
    int log_level;           /* 0 error .. 3 debug; default 2 (info) */
    char log_file[512];      /* "" = stderr */
} wp_config;

/* Defaults, then the file (if path != NULL), then nothing else: command-line
 * options are applied by wp_main.c with wp_config_set(). Errors are written
 * to err (file:line: message) and return -1. */
void wp_config_defaults(wp_config *c);
int wp_config_load(wp_config *c, const char *path, char *err, size_t errlen);
int wp_config_set(wp_config *c, const char *key, const char *value, char *err, size_t errlen);

/* Logging. Every message starts with a stable id "WP0nnnn". Never log
 * secrets, credentials or scrip. Safe from any thread. */
enum { WP_LOG_ERROR = 0, WP_LOG_WARN = 1, WP_LOG_INFO = 2, WP_LOG_DEBUG = 3 };
void wp_log_init(int level, const char *file);
void wp_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The wallet's own origin, "http://127.0.0.1:PORT", set once listening. */
const char *wp_self_origin(void);
void wp_set_self_origin(const char *host, unsigned port);

#endif
