/*
 * wp_tunnel.c - CONNECT: a byte-for-byte relay between the browser and an
 * allowed port (connect_ports, 443 by default) of the named host, used for
 * https:// sites. The wallet never sees inside the tunnel, so it cannot pay
 * for https:// pages; see docs/wallet-proxy.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "wp_conn.h"

#define WP_TUNNEL_BUF 16384

/* Splits "host:port" / "[v6]:port". 0 or -1. */
static int split_authority(const char *s, char *host, size_t cap, unsigned *port)
{
    const char *colon, *h = s;
    size_t hlen;
    unsigned long v = 0;
    const char *p;

    if (*s == '[') {
        const char *close = strchr(s, ']');

        if (close == NULL || close[1] != ':')
            return -1;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        hlen = (size_t)(colon - s);
        if (memchr(s, ':', hlen) != NULL)
            return -1;
    }
    if (hlen == 0 || hlen >= cap)
        return -1;
    for (p = colon + 1; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || p - colon > 5)
            return -1;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (p == colon + 1 || v == 0 || v > 65535)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (unsigned)v;
    return 0;
}

/* The address list for host:port: a Resolve entry if one matches, else DNS.
 * Returns getaddrinfo's status; *res to be freed with freeaddrinfo. */
static int resolve(const wp_config *cfg, const char *host, unsigned port, struct addrinfo **res)
{
    struct addrinfo hints;
    char portstr[8];
    size_t i;

    snprintf(portstr, sizeof(portstr), "%u", port);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    for (i = 0; i < cfg->nresolve; i++) {
        const char *e = cfg->resolve[i];
        const char *c1 = strchr(e, ':');
        const char *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;
        char addr[64];
        size_t alen;

        if (c2 == NULL || (size_t)(c1 - e) != strlen(host) ||
            strncasecmp(e, host, (size_t)(c1 - e)) != 0 ||
            (unsigned)strtoul(c1 + 1, NULL, 10) != port)
            continue;
        /* the first address of the entry */
        e = c2 + 1;
        alen = strcspn(e, ",");
        if (alen >= 2 && e[0] == '[' && e[alen - 1] == ']') {
            e++;
            alen -= 2;
        }
        if (alen >= sizeof(addr))
            continue;
        memcpy(addr, e, alen);
        addr[alen] = '\0';
        hints.ai_flags = AI_NUMERICHOST;
        return getaddrinfo(addr, portstr, &hints, res);
    }
    return getaddrinfo(host, portstr, &hints, res);
}

/* Connects to one address within timeout seconds; the socket (blocking) or
 * -1 with errno (ETIMEDOUT on timeout). */
static int connect_one(const struct addrinfo *ai, unsigned timeout)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    int flags, err = 0, one = 1, rv = -1;
    socklen_t elen = sizeof(err);
    struct pollfd pfd;

    if (fd < 0)
        return -1;
    flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        int r;

        if (errno != EINPROGRESS)
            goto out;
        pfd.fd = fd;
        pfd.events = POLLOUT;
        pfd.revents = 0;
        do
            r = poll(&pfd, 1, (int)timeout * 1000);
        while (r < 0 && errno == EINTR);
        if (r == 0) {
            errno = ETIMEDOUT;
            goto out;
        }
        if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
            goto out;
        if (err != 0) {
            errno = err;
            goto out;
        }
    }
    fcntl(fd, F_SETFL, flags);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    rv = fd;
out:
    if (rv < 0) {
        err = errno;
        close(fd);
        errno = err;
    }
    return rv;
}

static int send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static long long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Relays until both directions are closed, an error, or idle timeout. */
static void relay(wp_conn *c, int up)
{
    char *buf = malloc(WP_TUNNEL_BUF);
    int fds[2] = { c->fd, up };
    int open_in[2] = { 1, 1 };     /* still reading from fds[i] */
    long long idle_until = mono_ms() + (long long)c->cfg->upstream_timeout * 1000;
    struct timeval tv;

    if (buf == NULL)
        return;
    tv.tv_sec = c->cfg->upstream_timeout;
    tv.tv_usec = 0;
    setsockopt(up, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    while (open_in[0] || open_in[1]) {
        struct pollfd pfd[2];
        int i, r;

        for (i = 0; i < 2; i++) {
            pfd[i].fd = open_in[i] ? fds[i] : -1;
            pfd[i].events = POLLIN;
            pfd[i].revents = 0;
        }
        r = poll(pfd, 2, 1000);
        if (r < 0 && errno != EINTR)
            break;
        if (r <= 0) {
            if (mono_ms() > idle_until || wp_conn_stopping())
                break;
            continue;
        }
        for (i = 0; i < 2; i++) {
            ssize_t n;

            if (pfd[i].revents == 0)
                continue;
            n = recv(fds[i], buf, WP_TUNNEL_BUF, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                /* one side is done: pass the half-close on */
                open_in[i] = 0;
                shutdown(fds[1 - i], SHUT_WR);
                if (n < 0)
                    goto out;
                continue;
            }
            if (send_all(fds[1 - i], buf, (size_t)n) != 0)
                goto out;
            idle_until = mono_ms() + (long long)c->cfg->upstream_timeout * 1000;
        }
    }
out:
    free(buf);
}

int wp_tunnel(wp_conn *c)
{
    static const char established[] = "HTTP/1.1 200 Connection Established\r\n\r\n";
    char host[300], msg[512];
    struct addrinfo *res = NULL, *ai;
    unsigned port;
    size_t i;
    int up = -1, gai, err = 0, rv = -1;

    if (split_authority(c->url, host, sizeof(host), &port) != 0) {
        wp_log(WP_LOG_INFO, "WP00009 %s: bad CONNECT target %.512s", c->peer, c->url);
        c->keep_alive = 0;
        wp_conn_send_error(c, 400, "CONNECT needs a host:port target.");
        goto out;
    }
    for (i = 0; i < c->cfg->nconnect_ports; i++)
        if (c->cfg->connect_ports[i] == port)
            break;
    if (i == c->cfg->nconnect_ports) {
        wp_log(WP_LOG_INFO, "WP00010 %s: CONNECT to %s refused: port %u not in ConnectPort",
               c->peer, c->url, port);
        snprintf(msg, sizeof(msg), "The wallet tunnels only to the ports its ConnectPort "
                 "setting names; %u is not one of them.", port);
        rv = wp_conn_send_error(c, 403, msg);
        goto out;
    }
    gai = resolve(c->cfg, host, port, &res);
    if (gai != 0) {
        wp_log(WP_LOG_WARN, "WP00012 %s: CONNECT %s: cannot resolve: %s", c->peer, c->url,
               gai_strerror(gai));
        snprintf(msg, sizeof(msg), "The wallet could not resolve %s: %s", host, gai_strerror(gai));
        rv = wp_conn_send_error(c, 502, msg);
        goto out;
    }
    for (ai = res; ai != NULL && up < 0; ai = ai->ai_next) {
        up = connect_one(ai, c->cfg->upstream_timeout);
        if (up < 0)
            err = errno;
    }
    if (up < 0) {
        wp_log(WP_LOG_WARN, "WP00012 %s: CONNECT %s: %s", c->peer, c->url, strerror(err));
        snprintf(msg, sizeof(msg), "The wallet could not connect to %s: %s", c->url, strerror(err));
        rv = wp_conn_send_error(c, err == ETIMEDOUT ? 504 : 502, msg);
        goto out;
    }
    if (wp_conn_send(c, established, sizeof(established) - 1) != 0)
        goto out;
    /* bytes the browser sent after the CONNECT head belong to the tunnel */
    if (c->in_off < c->in_len) {
        if (send_all(up, c->in + c->in_off, c->in_len - c->in_off) != 0)
            goto out;
        c->in_off = c->in_len = 0;
    }
    relay(c, up);
out:
    if (res != NULL)
        freeaddrinfo(res);
    if (up >= 0)
        close(up);
    if (up >= 0 || rv != 0)
        c->keep_alive = 0;
    return up >= 0 ? -1 : rv;
}
