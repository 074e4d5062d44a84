/* store_util.c - helpers shared by the store suites (see store_util.h). */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
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
