/*
 * wp_main.c - the wallet-proxy daemon: options, configuration, start-up in
 * a fixed order (log, curl, UI token, wallet, crash recovery, listening,
 * own origin, port and pid files), the accept loop and a clean stop on
 * SIGTERM/SIGINT. Connections are served by wp_conn.c, one thread each.
 *
 * Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error
 * (-t: 0 when the configuration is valid, 1 when not).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <curl/curl.h>
#include "wp_conn.h"
#include "wp_ui.h"
#include "wp_wallet.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define WP_STOP_WAIT_S 10      /* how long a stop waits for running requests */

static int sig_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
    int saved = errno;
    char b = (char)sig;

    if (write(sig_pipe[1], &b, 1) < 0) {
        /* the pipe is full: a stop is already pending */
    }
    errno = saved;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: wallet-proxy [-c FILE] [-p PORT] [-d STATE_DIR] [--port-file F] [--pid-file F]\n"
            "                    [-D KEY=VALUE ...] [-t] [--version] [--help]\n"
            "  -c FILE          configuration file (\"Key value\" lines, see docs/wallet-proxy.md)\n"
            "  -p PORT          listen on PORT (0 = any free port; see --port-file)\n"
            "  -d STATE_DIR     the wallet's state directory (StateDir)\n"
            "  --port-file F    write the bound port to F once listening (PortFile)\n"
            "  --pid-file F     write the process id to F (PidFile)\n"
            "  -D KEY=VALUE     set one configuration key after the file, e.g.\n"
            "                   -D Resolve=news.example:8080:127.0.0.1 (repeatable)\n"
            "  -t               check the configuration and exit (0 valid, 1 not)\n"
            "  --version        print the version\n"
            "  --help           this text\n");
}

/* Writes text to path (mode 0644), replacing it. 0 or -1. */
static int write_small_file(const char *path, const char *text)
{
    char tmp[600];
    int fd, rv = -1;
    size_t len = strlen(text);

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return -1;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (write(fd, text, len) == (ssize_t)len && close(fd) == 0) {
        fd = -1;
        rv = rename(tmp, path);
    }
    if (fd >= 0)
        close(fd);
    if (rv != 0)
        unlink(tmp);
    return rv;
}

/* Binds and listens on cfg's address; the socket, -1 with msg. */
static int open_listener(const wp_config *cfg, unsigned *bound, char *msg, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    int fd = -1, one = 1, rv = -1;

    memset(&ss, 0, sizeof(ss));
    if (strchr(cfg->listen_addr, ':') != NULL) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)cfg->listen_port);
        inet_pton(AF_INET6, cfg->listen_addr, &in6->sin6_addr);
        sslen = sizeof(*in6);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;

        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)cfg->listen_port);
        inet_pton(AF_INET, cfg->listen_addr, &in->sin_addr);
        sslen = sizeof(*in);
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto out;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0 || listen(fd, 128) != 0)
        goto out;
    sslen = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) != 0)
        goto out;
    *bound = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                      : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    rv = fd;
out:
    if (rv < 0) {
        snprintf(msg, cap, "cannot listen on %s port %u: %s", cfg->listen_addr,
                 cfg->listen_port, strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    return rv;
}

/* -D KEY=VALUE: the first -D of a list key replaces the list. */
static int apply_define(wp_config *cfg, const char *def, int *allow_seen, int *ports_seen,
                        char *err, size_t errlen)
{
    char key[64];
    const char *eq = strchr(def, '=');
    size_t klen = eq != NULL ? (size_t)(eq - def) : 0;

    if (eq == NULL || klen == 0 || klen >= sizeof(key)) {
        snprintf(err, errlen, "-D needs KEY=VALUE, not \"%s\"", def);
        return -1;
    }
    memcpy(key, def, klen);
    key[klen] = '\0';
    if (strcasecmp(key, "Allow") == 0 && !*allow_seen) {
        *allow_seen = 1;
        cfg->nallow = 0;
    } else if (strcasecmp(key, "ConnectPort") == 0 && !*ports_seen) {
        *ports_seen = 1;
        cfg->nconnect_ports = 0;
    }
    return wp_config_set(cfg, key, eq + 1, err, errlen);
}

/* True for the options that take a value. */
static int takes_value(const char *a)
{
    return strcmp(a, "-c") == 0 || strcmp(a, "-p") == 0 || strcmp(a, "-d") == 0 ||
           strcmp(a, "--port-file") == 0 || strcmp(a, "--pid-file") == 0 || strcmp(a, "-D") == 0;
}

/* Options into cfg. 0 ok, 1 exit 0 (help/version), 2 usage/config error. */
static int parse_args(int argc, char **argv, wp_config *cfg, int *check_only)
{
    const char *conf = NULL;
    char err[1024];
    int i, allow_seen = 0, ports_seen = 0;

    /* the file first, whatever the option order, then the other options */
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(a, "--version") == 0) {
            printf("wallet-proxy %s\n", PACKAGE_VERSION);
            return 1;
        }
        if (strcmp(a, "-t") == 0) {
            *check_only = 1;
        } else if (takes_value(a)) {
            if (i + 1 >= argc) {
                fprintf(stderr, "wallet-proxy: %s needs a value\n", a);
                usage(stderr);
                return 2;
            }
            if (strcmp(a, "-c") == 0)
                conf = argv[i + 1];
            i++;
        } else if (strncmp(a, "-D", 2) != 0 || a[2] == '\0') {
            fprintf(stderr, "wallet-proxy: unknown option \"%s\"\n", a);
            usage(stderr);
            return 2;
        }
    }
    wp_config_defaults(cfg);
    if (wp_config_load(cfg, conf, err, sizeof(err)) != 0)
        goto out;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        int rv;

        if (strcmp(a, "-t") == 0)
            continue;
        if (!takes_value(a)) {         /* -DKEY=VALUE */
            if (apply_define(cfg, a + 2, &allow_seen, &ports_seen, err, sizeof(err)) != 0)
                goto out;
            continue;
        }
        i++;
        if (strcmp(a, "-c") == 0)
            rv = 0;
        else if (strcmp(a, "-D") == 0)
            rv = apply_define(cfg, v, &allow_seen, &ports_seen, err, sizeof(err));
        else if (strcmp(a, "-p") == 0 && (v[0] == '\0' || strspn(v, "0123456789") != strlen(v))) {
            snprintf(err, sizeof(err), "-p must be a port 0..65535, not \"%s\"", v);
            rv = -1;
        } else {
            rv = wp_config_set(cfg, strcmp(a, "-p") == 0 ? "Listen" :
                               strcmp(a, "-d") == 0 ? "StateDir" :
                               strcmp(a, "--port-file") == 0 ? "PortFile" : "PidFile",
                               v, err, sizeof(err));
        }
        if (rv != 0)
            goto out;
    }
    return 0;
out:
    fprintf(stderr, "wallet-proxy: %s\n", err);
    return 2;
}

static int install_signals(void)
{
    struct sigaction sa;
    int i;

    if (pipe(sig_pipe) != 0)
        return -1;
    for (i = 0; i < 2; i++) {
        fcntl(sig_pipe[i], F_SETFD, FD_CLOEXEC);
        fcntl(sig_pipe[i], F_SETFL, fcntl(sig_pipe[i], F_GETFL) | O_NONBLOCK);
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        return -1;
    return 0;
}

/* Accepts until a stop signal. 0 on a signal, -1 on a fatal error. */
static int accept_loop(int lfd)
{
    for (;;) {
        struct pollfd pfd[2];
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd;

        pfd[0].fd = lfd;
        pfd[0].events = POLLIN;
        pfd[0].revents = 0;
        pfd[1].fd = sig_pipe[0];
        pfd[1].events = POLLIN;
        pfd[1].revents = 0;
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            wp_log(WP_LOG_ERROR, "WP00014 poll on the listening socket: %s", strerror(errno));
            return -1;
        }
        if (pfd[1].revents != 0)
            return 0;
        if (pfd[0].revents == 0)
            continue;
        fd = accept(lfd, (struct sockaddr *)&peer, &plen);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN)
                continue;
            wp_log(WP_LOG_ERROR, "WP00014 accept: %s", strerror(errno));
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                sleep(1);       /* out of descriptors: let connections finish */
                continue;
            }
            return -1;
        }
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        wp_conn_accepted(fd, (struct sockaddr *)&peer, plen);
    }
}

int main(int argc, char **argv)
{
    static wp_config cfg;
    wp_wallet *w = NULL;
    char err[1024], buf[64];
    unsigned port = 0, left;
    int check_only = 0, lfd = -1, rc = 1, r;
    int curl_ok = 0, wrote_pid = 0, wrote_port = 0;

    r = parse_args(argc, argv, &cfg, &check_only);
    if (r == 1)
        return 0;
    if (r != 0)
        return check_only ? 1 : 2;
    if (check_only) {
        fprintf(stderr, "Syntax OK\n");
        return 0;
    }
    wp_log_init(cfg.log_level, cfg.log_file);
    if (install_signals() != 0) {
        fprintf(stderr, "wallet-proxy: cannot install signal handlers: %s\n", strerror(errno));
        goto out;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "wallet-proxy: libcurl initialisation failed\n");
        goto out;
    }
    curl_ok = 1;
    if (wp_ui_init(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "wallet-proxy: %s\n", err);
        wp_log(WP_LOG_ERROR, "WP00016 UI start-up failed: %s", err);
        goto out;
    }
    if (wp_wallet_open(&cfg, &w, err, sizeof(err)) != 0) {
        fprintf(stderr, "wallet-proxy: %s\n", err);
        wp_log(WP_LOG_ERROR, "WP00017 cannot open the wallet: %s", err);
        goto out;
    }
    r = wp_wallet_recover(w);
    if (r < 0) {
        fprintf(stderr, "wallet-proxy: crash recovery failed (see the log)\n");
        wp_log(WP_LOG_ERROR, "WP00018 crash recovery failed; not starting");
        goto out;
    }
    if (r > 0)
        wp_log(WP_LOG_INFO, "WP00019 replayed %d payment(s) left in flight", r);
    lfd = open_listener(&cfg, &port, err, sizeof(err));
    if (lfd < 0) {
        fprintf(stderr, "wallet-proxy: %s\n", err);
        wp_log(WP_LOG_ERROR, "WP00014 %s", err);
        goto out;
    }
    wp_set_self_origin(cfg.listen_addr, port);
    wp_conn_server_init(&cfg, w);
    if (cfg.port_file[0] != '\0') {
        snprintf(buf, sizeof(buf), "%u\n", port);
        if (write_small_file(cfg.port_file, buf) != 0) {
            fprintf(stderr, "wallet-proxy: cannot write %s: %s\n", cfg.port_file, strerror(errno));
            goto out;
        }
        wrote_port = 1;
    }
    if (cfg.pid_file[0] != '\0') {
        snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
        if (write_small_file(cfg.pid_file, buf) != 0) {
            fprintf(stderr, "wallet-proxy: cannot write %s: %s\n", cfg.pid_file, strerror(errno));
            goto out;
        }
        wrote_pid = 1;
    }
    wp_log(WP_LOG_INFO, "WP00001 listening on %s port %u (%s)", cfg.listen_addr, port,
           wp_self_origin());
    if (accept_loop(lfd) != 0)
        goto out;
    rc = 0;
out:
    if (lfd >= 0)
        close(lfd);
    left = wp_conn_shutdown(WP_STOP_WAIT_S);
    if (rc == 0)
        wp_log(WP_LOG_INFO, "WP00023 stopped%s", left > 0 ? " with connections still open" : "");
    if (wrote_pid)
        unlink(cfg.pid_file);
    if (wrote_port)
        unlink(cfg.port_file);
    if (left > 0) {
        /* threads still use the wallet: leave it to the kernel (the store
         * survives an exit mid-payment like a kill -9) */
        fflush(NULL);
        _exit(rc);
    }
    if (w != NULL)
        wp_wallet_close(w);
    if (curl_ok)
        curl_global_cleanup();
    return rc;
}
