/*
 * wp_conn.c - one thread per browser connection: the Allow list and the
 * client limit at accept time, reading requests (parsed under hard limits
 * by wp_request.c: header bytes, URL length, buffered body), keep-alive and
 * pipelining, routing (CONNECT to wp_tunnel.c, http:// to wp_forward.c, the
 * wallet's own origin to wp_ui_handle) and writing the wallet's own pages.
 *
 * Blocking I/O throughout (like tinyproxy): a thread waits on its own
 * sockets only, so a slow browser or server holds one thread, nothing else.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "wp_conn.h"
#include "wp_ui.h"

#define WP_MAX_REFUSING    32        /* threads answering 403/503 at once */
#define WP_LINGER_MS       2000
#define WP_LINGER_BYTES    (1024 * 1024)
#define WP_THREAD_STACK    (2u * 1024 * 1024)

/* Server state: cfg and w are set once before accepting; the counters and
 * the stop flag are guarded by lock. */
static const wp_config *srv_cfg;
static wp_wallet *srv_w;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cond = PTHREAD_COND_INITIALIZER;
static unsigned active, refusing;
static int stopping;

typedef struct {
    int fd;
    int refuse;            /* 0 serve, else the status to refuse with */
    char peer[64];
} conn_start;

/* ---- status phrases and pages ---- */

const char *wp_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 508: return "Loop Detected";
    default: return "Unknown";
    }
}

const char *wp_conn_connection_line(const wp_conn *c)
{
    if (!c->keep_alive)
        return "Connection: close\r\n";
    if (c->http_major == 1 && c->http_minor == 0)
        return "Connection: keep-alive\r\n";
    return "";
}

int wp_conn_send(wp_conn *c, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            c->keep_alive = 0;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* True when extra (CRLF-separated "Name: value" lines) has a header name. */
static int has_header_line(const char *extra, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = extra;

    while (p != NULL && *p != '\0') {
        if (strncasecmp(p, name, nlen) == 0 && p[nlen] == ':')
            return 1;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return 0;
}

/* No CR or LF: safe inside one header line. */
static int header_safe(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

int wp_conn_send_page(wp_conn *c, const wp_page *pg)
{
    const char *ctype = pg->content_type != NULL ? pg->content_type : "text/plain; charset=utf-8";
    const char *extra = pg->extra_headers != NULL ? pg->extra_headers : "";
    size_t elen = strlen(extra);
    size_t cap = 512 + strlen(ctype) + elen + (pg->location != NULL ? strlen(pg->location) : 0);
    int status = pg->status >= 100 && pg->status <= 999 ? pg->status : 500;
    int no_body = (c->method != NULL && strcmp(c->method, "HEAD") == 0) ||
                  status == 204 || status == 304;
    char *head = malloc(cap);
    int n, rv = -1;

    if (head == NULL)
        goto out;
    if (!header_safe(ctype))
        ctype = "application/octet-stream";
    n = snprintf(head, cap, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n",
                 status, wp_status_reason(status), ctype, pg->body_len);
    if (n < 0 || (size_t)n >= cap)
        goto out;
    if (pg->location != NULL && header_safe(pg->location))
        n += snprintf(head + n, cap - (size_t)n, "Location: %s\r\n", pg->location);
    if (elen > 0) {
        memcpy(head + n, extra, elen);
        n += (int)elen;
        if (extra[elen - 1] != '\n')
            n += snprintf(head + n, cap - (size_t)n, "\r\n");
    }
    if (!has_header_line(extra, "Cache-Control"))
        n += snprintf(head + n, cap - (size_t)n, "Cache-Control: no-store\r\n");
    n += snprintf(head + n, cap - (size_t)n, "%s\r\n", wp_conn_connection_line(c));
    if (wp_conn_send(c, head, (size_t)n) != 0)
        goto out;
    if (!no_body && pg->body_len > 0 && wp_conn_send(c, pg->body, pg->body_len) != 0)
        goto out;
    rv = 0;
out:
    free(head);
    return rv;
}

/* Appends s HTML-escaped to buf (cap bytes, NUL kept). */
static size_t html_escape(char *buf, size_t cap, size_t n, const char *s)
{
    for (; *s != '\0' && n + 7 < cap; s++) {
        const char *rep = NULL;

        switch (*s) {
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '&': rep = "&amp;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: break;
        }
        if (rep != NULL) {
            memcpy(buf + n, rep, strlen(rep));
            n += strlen(rep);
        } else {
            buf[n++] = *s;
        }
    }
    buf[n] = '\0';
    return n;
}

int wp_conn_send_error(wp_conn *c, int status, const char *msg)
{
    char body[2048];
    const char *reason = wp_status_reason(status);
    wp_page pg;
    size_t n;
    int rv;

    memset(&pg, 0, sizeof(pg));
    n = (size_t)snprintf(body, sizeof(body),
                         "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%d %s</title>"
                         "</head>\n<body><h1>%d %s</h1>\n<p>", status, reason, status, reason);
    n = html_escape(body, sizeof(body) - 64, n, msg != NULL ? msg : "");
    n += (size_t)snprintf(body + n, sizeof(body) - n,
                          "</p>\n<hr><address>wallet-proxy</address></body></html>\n");
    if (wp_page_set(&pg, status, "text/html; charset=utf-8", body, n) != 0)
        return -1;
    rv = wp_conn_send_page(c, &pg);
    wp_page_clear(&pg);
    return rv;
}

/* ---- reading the browser's requests (parsing: wp_request.c) ---- */

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads and parses one request. 1: a complete request; 0: the browser
 * closed, went idle or the daemon stops (nothing to answer); -1: refused
 * with an error page already sent (the connection must close). */
static int read_request(wp_conn *c)
{
    long long deadline = now_ms() + (long long)c->cfg->upstream_timeout * 1000;

    wp_request_reset(c);
    for (;;) {
        struct pollfd pfd;
        ssize_t n;
        int status = 0, rc = wp_request_parse(c, &status);

        if (c->want_continue) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

            c->want_continue = 0;
            if (wp_conn_send(c, cont, sizeof(cont) - 1) != 0)
                return 0;
        }
        if (rc == 1)
            return 1;
        if (rc < 0) {
            wp_log(WP_LOG_INFO, "WP00004 %s: request refused with %d: %s", c->peer, status,
                   c->err_status != 0 ? wp_status_reason(status) :
                   http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
            wp_conn_send_error(c, status,
                               status == 431 ? "The request's header section is too large." :
                               status == 414 ? "The request target is too long." :
                               status == 413 ? "The request body is larger than the wallet "
                                               "buffers (MaxRequestBody)." :
                               "The wallet could not parse this request.");
            return -1;
        }
        pfd.fd = c->fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        n = poll(&pfd, 1, 1000);
        if (n < 0 && errno != EINTR)
            return 0;
        if (n <= 0) {
            int fresh = c->head_bytes == 0 && c->parser.nread == 0;

            if (now_ms() > deadline || (fresh && wp_conn_stopping()))
                return 0;
            continue;
        }
        n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        c->in_len += (size_t)n;
        deadline = now_ms() + (long long)c->cfg->upstream_timeout * 1000;
    }
}

/* ---- routing ---- */

/* True when a Via header names our pseudonym as a received-by. */
static int via_loop(const wp_conn *c)
{
    size_t i;

    for (i = 0; i < c->nhdrs; i++) {
        const char *v = c->hdrs[i].value;

        if (strcasecmp(c->hdrs[i].name, "Via") != 0)
            continue;
        while (*v != '\0') {
            /* one member: protocol SP received-by [SP comment] */
            const char *end = strchr(v, ',');
            const char *sp, *rb;
            size_t mlen = end != NULL ? (size_t)(end - v) : strlen(v);

            while (mlen > 0 && (*v == ' ' || *v == '\t')) {
                v++;
                mlen--;
            }
            sp = memchr(v, ' ', mlen);
            if (sp != NULL) {
                size_t rlen;

                rb = sp;
                while (rb < v + mlen && *rb == ' ')
                    rb++;
                rlen = 0;
                while (rb + rlen < v + mlen && rb[rlen] != ' ' && rb[rlen] != '\t')
                    rlen++;
                if (rlen == strlen(WP_VIA_PSEUDONYM) &&
                    strncasecmp(rb, WP_VIA_PSEUDONYM, rlen) == 0)
                    return 1;
            }
            if (end == NULL)
                break;
            v = end + 1;
        }
    }
    return 0;
}

/* True when host (as wp_split_http_url gives it) is the wallet itself: its
 * own origin, or a loopback name (127.0.0.1, localhost, [::1]) with its port. */
static int is_self(const char *host)
{
    static const char *const loopback[] = { "127.0.0.1", "localhost", "[::1]" };
    char self[300], alt[320];
    char *t = NULL;
    const char *port;
    size_t i;
    int rv = 0;

    if (wp_split_http_url(wp_self_origin(), self, sizeof(self), &t) != 0)
        goto out;
    if (strcasecmp(host, self) == 0) {
        rv = 1;
        goto out;
    }
    port = self[0] == '[' ? strchr(self, ']') : strchr(self, ':');
    if (port != NULL && *port == ']')
        port++;
    for (i = 0; i < sizeof(loopback) / sizeof(loopback[0]) && !rv; i++) {
        snprintf(alt, sizeof(alt), "%s%s", loopback[i], port != NULL ? port : "");
        rv = strcasecmp(host, alt) == 0;
    }
out:
    free(t);
    return rv;
}

static int serve_ui(wp_conn *c, const char *target)
{
    wp_page pg;
    int rv;

    memset(&pg, 0, sizeof(pg));
    wp_ui_handle(c->w, c->method, target, c->hdrs, c->nhdrs, c->body, c->body_len, &pg);
    if (pg.status == 0)
        rv = wp_conn_send_error(c, 500, "The wallet could not answer this request.");
    else
        rv = wp_conn_send_page(c, &pg);
    wp_page_clear(&pg);
    return rv;
}

/* Answers the current request. 0: the connection may carry on; -1: close. */
static int handle_request(wp_conn *c)
{
    wp_log(WP_LOG_DEBUG, "WP00020 %s: %s %.512s HTTP/%u.%u", c->peer, c->method, c->url,
           c->http_major, c->http_minor);
    if (via_loop(c)) {
        wp_log(WP_LOG_INFO, "WP00008 %s: request loop (Via names %s): %s %.512s", c->peer,
               WP_VIA_PSEUDONYM, c->method, c->url);
        return wp_conn_send_error(c, 508, "This request has already passed through this "
                                  "wallet: the proxy configuration loops.");
    }
    if (strcmp(c->method, "CONNECT") == 0)
        return wp_tunnel(c);
    if (c->url[0] == '/')
        return serve_ui(c, c->url);
    if (strncasecmp(c->url, "http://", 7) == 0) {
        char host[300];
        char *target = NULL;
        int rv;

        if (wp_split_http_url(c->url, host, sizeof(host), &target) != 0) {
            wp_log(WP_LOG_INFO, "WP00009 %s: bad request target %.512s", c->peer, c->url);
            return wp_conn_send_error(c, 400, "The request target is not a valid http:// URL.");
        }
        if (is_self(host))
            rv = serve_ui(c, target);
        else
            rv = wp_forward(c);
        free(target);
        return rv;
    }
    wp_log(WP_LOG_INFO, "WP00009 %s: unsupported request target %.512s", c->peer, c->url);
    if (strncasecmp(c->url, "https://", 8) == 0)
        return wp_conn_send_error(c, 400, "https:// URLs must be requested through CONNECT; "
                                  "configure the wallet as the browser's HTTPS proxy as well.");
    return wp_conn_send_error(c, 400, "The wallet forwards only http:// URLs and CONNECT.");
}

/* Half-closes and reads what the browser still sends for a short while, so
 * that the kernel does not reset the connection under our last answer. */
static void lingering_close(int fd)
{
    long long end = now_ms() + WP_LINGER_MS;
    size_t total = 0;
    char buf[4096];

    if (shutdown(fd, SHUT_WR) == 0) {
        while (total < WP_LINGER_BYTES) {
            struct pollfd pfd;
            long long left = end - now_ms();
            ssize_t n;

            if (left <= 0)
                break;
            pfd.fd = fd;
            pfd.events = POLLIN;
            pfd.revents = 0;
            if (poll(&pfd, 1, (int)left) <= 0)
                break;
            n = recv(fd, buf, sizeof(buf), 0);
            if (n <= 0)
                break;
            total += (size_t)n;
        }
    }
    close(fd);
}

static void set_timeouts(int fd, unsigned seconds)
{
    struct timeval tv;
    int one = 1;

    tv.tv_sec = seconds;
    tv.tv_usec = 0;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void conn_done(int was_refusal)
{
    pthread_mutex_lock(&lock);
    if (was_refusal)
        refusing--;
    else
        active--;
    if (active == 0 && refusing == 0)
        pthread_cond_broadcast(&idle_cond);
    pthread_mutex_unlock(&lock);
}

/* 403 (not in Allow) or 503 (too many clients): reads the request head for
 * up to 2 s so the answer is not lost to a reset, answers, closes. */
static void refuse(conn_start *cs)
{
    wp_conn c;
    char buf[8192];
    size_t got = 0;
    long long end = now_ms() + 2000;

    memset(&c, 0, sizeof(c));
    c.fd = cs->fd;
    c.cfg = srv_cfg;
    c.method = "GET";
    c.http_major = 1;
    c.http_minor = 1;
    set_timeouts(cs->fd, 5);
    while (got < sizeof(buf) - 1) {
        struct pollfd pfd = { .fd = cs->fd, .events = POLLIN, .revents = 0 };
        long long left = end - now_ms();
        ssize_t n;

        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            break;
        n = recv(cs->fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL || strstr(buf, "\n\n") != NULL)
            break;
    }
    if (cs->refuse == 403)
        wp_conn_send_error(&c, 403, "This wallet serves only the clients its Allow list names.");
    else
        wp_conn_send_error(&c, 503, "The wallet is serving as many clients as it may "
                           "(MaxClients); try again shortly.");
    lingering_close(cs->fd);
}

static void *conn_thread(void *arg)
{
    conn_start *cs = arg;
    wp_conn *c = NULL;
    int refusal = cs->refuse != 0;

    if (refusal) {
        refuse(cs);
        goto out;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(cs->fd);
        goto out;
    }
    c->fd = cs->fd;
    memcpy(c->peer, cs->peer, sizeof(c->peer));
    c->cfg = srv_cfg;
    c->w = srv_w;
    if (wp_request_alloc(c) != 0) {
        close(c->fd);
        goto out;
    }
    set_timeouts(c->fd, srv_cfg->upstream_timeout);
    for (;;) {
        if (read_request(c) != 1)
            break;
        if (handle_request(c) != 0 || !c->keep_alive)
            break;
    }
    lingering_close(c->fd);
out:
    if (c != NULL) {
        wp_forward_cleanup(c);
        wp_request_free(c);
        free(c);
    }
    free(cs);
    conn_done(refusal);
    return NULL;
}

/* ---- accepting ---- */

void wp_conn_server_init(const wp_config *cfg, wp_wallet *w)
{
    srv_cfg = cfg;
    srv_w = w;
    wp_request_global_init(cfg);
}

static int net_match(const wp_net *n, int family, const uint8_t *addr)
{
    unsigned full, rest;

    if (n->family != family)
        return 0;
    full = n->prefix / 8;
    rest = n->prefix % 8;
    if (memcmp(n->addr, addr, full) != 0)
        return 0;
    if (rest != 0) {
        uint8_t mask = (uint8_t)(0xff << (8 - rest));

        if ((n->addr[full] & mask) != (addr[full] & mask))
            return 0;
    }
    return 1;
}

static int peer_allowed(const struct sockaddr *sa, char *peer, size_t cap)
{
    uint8_t addr[16];
    char ip[INET6_ADDRSTRLEN];
    int family, port;
    size_t i;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;

        family = AF_INET;
        memcpy(addr, &in->sin_addr, 4);
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;

        port = ntohs(in6->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            family = AF_INET;
            memcpy(addr, in6->sin6_addr.s6_addr + 12, 4);
        } else {
            family = AF_INET6;
            memcpy(addr, in6->sin6_addr.s6_addr, 16);
        }
    } else {
        snprintf(peer, cap, "?");
        return 0;
    }
    inet_ntop(family, addr, ip, sizeof(ip));
    snprintf(peer, cap, family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
    for (i = 0; i < srv_cfg->nallow; i++)
        if (net_match(&srv_cfg->allow[i], family, addr))
            return 1;
    return 0;
}

void wp_conn_accepted(int fd, const struct sockaddr *peer, socklen_t peerlen)
{
    conn_start *cs = calloc(1, sizeof(*cs));
    pthread_attr_t attr;
    pthread_t tid;
    sigset_t block, old;
    int allowed, kind = -1;      /* -1 drop, 0 serve, 403/503 refuse */

    (void)peerlen;
    if (cs == NULL) {
        close(fd);
        return;
    }
    cs->fd = fd;
    allowed = peer_allowed(peer, cs->peer, sizeof(cs->peer));
    pthread_mutex_lock(&lock);
    if (allowed && active < srv_cfg->max_clients) {
        active++;
        kind = 0;
    } else if (refusing < WP_MAX_REFUSING) {
        refusing++;
        kind = allowed ? 503 : 403;
    }
    pthread_mutex_unlock(&lock);
    if (!allowed)
        wp_log(WP_LOG_INFO, "WP00002 %s: client refused (not in Allow)", cs->peer);
    else if (kind != 0)
        wp_log(WP_LOG_WARN, "WP00003 %s: client refused: %u clients already (MaxClients)",
               cs->peer, srv_cfg->max_clients);
    if (kind < 0) {
        close(fd);
        free(cs);
        return;
    }
    cs->refuse = kind;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, WP_THREAD_STACK);
    /* Signals are for the accept loop; threads inherit this mask. */
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    if (pthread_create(&tid, &attr, conn_thread, cs) != 0) {
        wp_log(WP_LOG_ERROR, "WP00015 %s: cannot start a connection thread", cs->peer);
        close(fd);
        free(cs);
        conn_done(kind != 0);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
}

int wp_conn_stopping(void)
{
    int s;

    pthread_mutex_lock(&lock);
    s = stopping;
    pthread_mutex_unlock(&lock);
    return s;
}

unsigned wp_conn_shutdown(unsigned seconds)
{
    struct timespec until;
    unsigned left;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += seconds;
    pthread_mutex_lock(&lock);
    stopping = 1;
    while (active + refusing > 0)
        if (pthread_cond_timedwait(&idle_cond, &lock, &until) == ETIMEDOUT)
            break;
    left = active + refusing;
    pthread_mutex_unlock(&lock);
    return left;
}
