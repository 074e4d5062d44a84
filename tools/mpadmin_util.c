/* mpadmin_util.c - output and file helpers shared by the subcommands. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
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
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* The directory part of path, for fsync after a rename. */
static void sync_parent(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t n;
    int fd;

    if (slash == NULL) {
        strcpy(dir, ".");
    } else {
        n = slash == path ? 1 : (size_t)(slash - path);
        if (n >= sizeof dir)
            return;
        memcpy(dir, path, n);
        dir[n] = 0;
    }
    if ((fd = open(dir, O_RDONLY | O_CLOEXEC)) >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Secrets are written to a new file created 0600 (never widened by the
 * umask race of fopen + chmod) and moved into place, so a crash leaves
 * either the old file or the new one, never half of it. excl moves with
 * link(2), which fails when path exists: no check-then-write race. */
static int write_secret(const char *path, const char *data, size_t len, int excl)
{
    char tmp[4096];
    int fd = -1, rc = -1;
    size_t off = 0;
    ssize_t n;

    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        mpa_err("%s: path too long", path);
        return -1;
    }
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
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
    if (excl) {
        if (link(tmp, path) != 0) {
            if (errno == EEXIST)
                mpa_err("%s exists; not overwriting it", path);
            else
                mpa_err("cannot create %s: %s", path, strerror(errno));
            goto done;
        }
    } else if (rename(tmp, path) != 0) {
        mpa_err("cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto done;
    }
    sync_parent(path);
    rc = 0;
done:
    if (fd >= 0)
        close(fd);
    if (rc != 0 || excl)
        unlink(tmp);
    return rc;
}

int mpa_write_secret_file(const char *path, const char *data, size_t len)
{
    return write_secret(path, data, len, 0);
}

int mpa_write_new_secret_file(const char *path, const char *data, size_t len)
{
    return write_secret(path, data, len, 1);
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

int mpa_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t i, n = strlen(s);

    if (n == 0 || n > 20)
        return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (max - (uint64_t)(s[i] - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

int mpa_read_file(const char *path, char *buf, size_t cap, size_t *len)
{
    struct stat sb;
    size_t off = 0;
    ssize_t n;
    int fd;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        mpa_err("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        mpa_err("%s is not a regular file", path);
        close(fd);
        return -1;
    }
    for (;;) {
        if (off == cap) {
            char c;
            n = read(fd, &c, 1);
            if (n == 0)
                break;
            mpa_err("%s is larger than %zu bytes", path, cap);
            close(fd);
            return -1;
        }
        n = read(fd, buf + off, cap - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            mpa_err("cannot read %s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        off += (size_t)n;
    }
    close(fd);
    *len = off;
    return 0;
}

static char kf_text[MP_KEYFILE_MAX];

int mpa_load_keyfile(const char *path, mp_keyfile *kf)
{
    size_t len = 0, line = 0;
    mp_status st;
    int rc = -1;

    if (mpa_read_file(path, kf_text, sizeof kf_text, &len) != 0)
        goto done;
    if ((st = mp_keyfile_parse(kf_text, len, kf, &line)) != MP_OK) {
        if (line)
            mpa_err("%s line %zu: %s", path, line, mp_strerror(st));
        else
            mpa_err("%s: %s (it needs a scrip and a customer secret)", path, mp_strerror(st));
        goto done;
    }
    rc = 0;
done:
    mp_wipe(kf_text, sizeof kf_text);
    return rc;
}

int mpa_save_keyfile(const mp_keyfile *kf, const char *path, int excl)
{
    size_t len = 0;
    int rc = -1;

    if (mp_keyfile_format(kf, kf_text, sizeof kf_text, &len) != MP_OK) {
        mpa_err("cannot format %s (too many series of one kind? at most %d)", path,
                MP_MAX_SERIES);
        goto done;
    }
    rc = excl ? mpa_write_new_secret_file(path, kf_text, len)
              : mpa_write_secret_file(path, kf_text, len);
done:
    mp_wipe(kf_text, sizeof kf_text);
    return rc;
}

int mpa_user_ids(const char *user, long *uid, long *gid)
{
    struct passwd *pw = getpwnam(user);

    if (pw == NULL) {
        mpa_err("no user '%s'", user);
        return -1;
    }
    *uid = (long)pw->pw_uid;
    *gid = (long)pw->pw_gid;
    return 0;
}

int mpa_b64(const uint8_t *in, size_t n, char *out, size_t cap)
{
    return mp_b64url_encode(in, n, out, cap, NULL) == MP_OK ? 0 : -1;
}
