/*
 * wp_log.c - the daemon's log (wp_log in wp.h) and its own origin
 * (wp_self_origin). One line per message, "TIME [level] WP0nnnn text", made
 * in a local buffer and written with one write() so that lines from the
 * connection threads never interleave. Control characters in messages
 * (request URLs and header values end up here) are replaced by '?' so a
 * client cannot forge log lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "wp.h"

#define WP_LOG_LINE_MAX 2048

/* Set by wp_log_init before any thread starts; read-only afterwards. */
static int log_level = WP_LOG_INFO;
static int log_fd = 2;

static char self_origin[128] = "http://127.0.0.1:8402";

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void wp_log_init(int level, const char *file)
{
    if (level < WP_LOG_ERROR)
        level = WP_LOG_ERROR;
    if (level > WP_LOG_DEBUG)
        level = WP_LOG_DEBUG;
    log_level = level;
    if (file != NULL && file[0] != '\0') {
        int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);

        if (fd < 0) {
            fprintf(stderr, "wallet-proxy: cannot open log file %s: %s; logging to stderr\n",
                    file, strerror(errno));
            return;
        }
        if (log_fd > 2)
            close(log_fd);
        log_fd = fd;
    }
}

void wp_log(int level, const char *fmt, ...)
{
    char line[WP_LOG_LINE_MAX];
    struct timeval tv;
    struct tm tm;
    va_list ap;
    size_t n, i, start;
    int k;

    if (level > log_level || level < WP_LOG_ERROR)
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    k = snprintf(line + n, sizeof(line) - n, ".%03ldZ [%s] ", (long)(tv.tv_usec / 1000),
                 level_names[level]);
    if (k < 0)
        return;
    n += (size_t)k;
    start = n;
    va_start(ap, fmt);
    k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (k < 0)
        return;
    n += (size_t)k;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;   /* truncated: keep the room for '\n' */
    for (i = start; i < n; i++) {
        unsigned char ch = (unsigned char)line[i];

        if (ch < 0x20 || ch == 0x7f)
            line[i] = '?';
    }
    line[n++] = '\n';
    while (write(log_fd, line, n) < 0 && errno == EINTR)
        ;
}

const char *wp_self_origin(void)
{
    return self_origin;
}

void wp_set_self_origin(const char *host, unsigned port)
{
    const char *h = host;

    /* A wildcard listener is reached through loopback by the local browser. */
    if (h == NULL || h[0] == '\0' || strcmp(h, "0.0.0.0") == 0)
        h = "127.0.0.1";
    else if (strcmp(h, "::") == 0)
        h = "::1";
    if (strchr(h, ':') != NULL)
        snprintf(self_origin, sizeof(self_origin), "http://[%s]:%u", h, port);
    else
        snprintf(self_origin, sizeof(self_origin), "http://%s:%u", h, port);
}
