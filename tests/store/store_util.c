/* store_util.c - helpers shared by the store suites (see store_util.h). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "store_util.h"

#define MAX_DIRS 64
static char dirs[MAX_DIRS][64];
static size_t ndirs;

const char *su_new_dir(const char *tag)
{
    char *d;

    if (ndirs == MAX_DIRS)
        return NULL;
    d = dirs[ndirs];
    snprintf(d, sizeof dirs[0], "/tmp/%.16s-test-XXXXXX", tag);
    if (mkdtemp(d) == NULL)
        return NULL;
    ndirs++;
    return d;
}

static void remove_dir(const char *d)
{
    char p[600];
    struct dirent *e;
    DIR *dh = opendir(d);

    if (dh == NULL)
        return;
    while ((e = readdir(dh)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", d, e->d_name);
        unlink(p);
    }
    closedir(dh);
    rmdir(d);
}

void su_remove_dirs(void)
{
    while (ndirs > 0)
        remove_dir(dirs[--ndirs]);
}

const char *su_file_in(const char *d, const char *name)
{
    static char p[256];

    snprintf(p, sizeof p, "%s/%s", d, name);
    return p;
}

int su_write_file(const char *path, const void *buf, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int ok = fd >= 0 && write(fd, buf, n) == (ssize_t)n;

    if (fd >= 0)
        close(fd);
    return ok;
}

double su_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

long long su_find_in_file(const char *path, const void *pat, size_t n, long long from,
                          long long limit)
{
    static unsigned char buf[1 << 16];
    long long base = from, found = -1;
    size_t have = 0, i;
    ssize_t r;
    int fd = open(path, O_RDONLY);

    if (fd < 0 || n == 0 || n > sizeof buf / 2)
        goto out;
    while (base + (long long)have < limit) {
        size_t want = sizeof buf - have;

        if ((long long)want > limit - base - (long long)have)
            want = (size_t)(limit - base - (long long)have);
        r = pread(fd, buf + have, want, (off_t)(base + (long long)have));
        if (r <= 0)
            break;
        have += (size_t)r;
        for (i = 0; i + n <= have; i++)
            if (memcmp(buf + i, pat, n) == 0) {
                found = base + (long long)i;
                goto out;
            }
        /* keep the last n - 1 bytes: a match may straddle the reads */
        memmove(buf, buf + have - (n - 1), n - 1);
        base += (long long)(have - (n - 1));
        have = n - 1;
    }
out:
    if (fd >= 0)
        close(fd);
    return found;
}

int su_pread(const char *path, void *buf, size_t n, long long off)
{
    int fd = open(path, O_RDONLY);
    int ok = fd >= 0 && pread(fd, buf, n, (off_t)off) == (ssize_t)n;

    if (fd >= 0)
        close(fd);
    return ok;
}

int su_pwrite(const char *path, const void *buf, size_t n, long long off)
{
    int fd = open(path, O_WRONLY);
    int ok = fd >= 0 && pwrite(fd, buf, n, (off_t)off) == (ssize_t)n;

    if (fd >= 0)
        close(fd);
    return ok;
}

int su_flip(const char *path, long long off, unsigned char mask)
{
    unsigned char b;

    return su_pread(path, &b, 1, off) && (b ^= mask, su_pwrite(path, &b, 1, off));
}

/* Reads fd until its end into buf (cap, NUL-terminated; may be NULL),
 * dropping what does not fit. */
static void drain(int fd, char *buf, size_t cap)
{
    char scratch[4096];
    size_t len = 0;
    ssize_t r;

    for (;;) {
        if (buf != NULL && len + 1 < cap)
            r = read(fd, buf + len, cap - 1 - len);
        else
            r = read(fd, scratch, sizeof scratch);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (buf != NULL && len + 1 < cap)
            len += (size_t)r;
    }
    if (buf != NULL && cap > 0)
        buf[len] = 0;
}

int su_run(char *const argv[], char *out, size_t cap, char *err, size_t errcap)
{
    int po[2], pe[2], status;
    pid_t pid;

    if (pipe(po) != 0)
        return -1;
    if (pipe(pe) != 0) {
        close(po[0]);
        close(po[1]);
        return -1;
    }
    fflush(NULL);
    if ((pid = fork()) < 0)
        return -1;
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]);
        close(pe[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    /* stderr is small: read stdout to its end, then stderr */
    drain(po[0], out, cap);
    drain(pe[0], err, errcap);
    close(po[0]);
    close(pe[0]);
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

const char *su_built(const char *rel)
{
    static char p[4096];
    char self[4096], *slash;
    const char *top = getenv("top_builddir");
    ssize_t n;
    int i;

    if (top != NULL && snprintf(p, sizeof p, "%s/%s", top, rel) < (int)sizeof p
        && access(p, X_OK) == 0)
        return p;
    /* tests/store/<test> -> the build directory is two levels up */
    if ((n = readlink("/proc/self/exe", self, sizeof self - 1)) <= 0)
        return NULL;
    self[n] = 0;
    for (i = 0; i < 3; i++) {
        if ((slash = strrchr(self, '/')) == NULL)
            return NULL;
        *slash = 0;
    }
    if (snprintf(p, sizeof p, "%s/%s", self, rel) >= (int)sizeof p || access(p, X_OK) != 0)
        return NULL;
    return p;
}
