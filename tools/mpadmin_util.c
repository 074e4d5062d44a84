/* mpadmin_util.c - output and file helpers shared by the subcommands. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "mpadmin.h"

void mpa_err(const char *fmt, ...)
{
    va_list ap;

    fputs("mpadmin: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void mpa_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* Secrets are written to a new file created 0600 (never widened by the
 * umask race of fopen + chmod) and renamed into place, so a crash leaves
 * either the old file or the new one, never half of it. */
int mpa_write_secret_file(const char *path, const char *data, size_t len)
{
    char tmp[4096];
    int fd = -1, rc = -1;
    size_t off = 0;
    ssize_t n;

    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        mpa_err("%s: path too long", path);
        return -1;
    }
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600)) < 0) {
        mpa_err("cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    while (off < len) {
        if ((n = write(fd, data + off, len - off)) < 0) {
            if (errno == EINTR)
                continue;
            mpa_err("cannot write %s: %s", tmp, strerror(errno));
            goto done;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        mpa_err("cannot write %s: %s", tmp, strerror(errno));
        fd = -1;
        goto done;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        mpa_err("cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    if (fd >= 0)
        close(fd);
    if (rc != 0)
        unlink(tmp);
    return rc;
}

int mpa_parse_amount(const char *s, mp_amount *out)
{
    mp_status st = mp_amount_parse(s, strlen(s), out);

    if (st != MP_OK || out->units == 0) {
        mpa_err("'%s' is not an amount above zero such as \"0.005 USD\" (%s)", s,
                st == MP_OK ? "zero" : mp_strerror(st));
        return -1;
    }
    return 0;
}
