/*
 * store_util.h - what the two store suites (test_store.c, test_bstore.c)
 * share: status assertions, scratch directories under /tmp that are
 * removed at the end, small file helpers and a clock.
 */
#ifndef STORE_UTIL_H
#define STORE_UTIL_H

#include <stdio.h>
#include <stddef.h>
#include <CUnit/CUnit.h>
#include "mp.h"

#define ASSERT_ST(e, s) do { \
        mp_status st_ = (e); \
        if (st_ != (s)) \
            fprintf(stderr, "\n  %s:%d: got %s, want %s\n", __FILE__, __LINE__, \
                    mp_strerror(st_), mp_strerror(s)); \
        CU_ASSERT_EQUAL(st_, (s)); \
    } while (0)
#define ASSERT_OK(e) ASSERT_ST(e, MP_OK)

/* A new empty directory /tmp/<tag>-test-XXXXXX, or NULL; at most 64. */
const char *su_new_dir(const char *tag);
/* Removes every directory su_new_dir made (and the files in them). */
void su_remove_dirs(void);
/* "<d>/<name>" in a static buffer, valid until the next call. */
const char *su_file_in(const char *d, const char *name);
/* Writes n bytes of buf to path (created 0600, truncated); 1 on success. */
int su_write_file(const char *path, const void *buf, size_t n);
/* Monotonic milliseconds. */
double su_now_ms(void);

/* ---- damaging files, as a disk or a stray write would --------------------- */

/* Offset of the first n-byte occurrence of pat in path at or after from,
 * within its first limit bytes; -1 when there is none. */
long long su_find_in_file(const char *path, const void *pat, size_t n, long long from,
                          long long limit);
/* XORs mask into the byte of path at off; 1 on success. */
int su_flip(const char *path, long long off, unsigned char mask);
/* Reads or writes n bytes of path at off; 1 on success. */
int su_pread(const char *path, void *buf, size_t n, long long off);
int su_pwrite(const char *path, const void *buf, size_t n, long long off);

/* ---- running a program ------------------------------------------------------ */

/* Runs argv (argv[0] a path) with its standard output into out (cap bytes,
 * NUL-terminated) and its standard error into err (may be NULL); its exit
 * status, or -1 when it could not run or died of a signal. */
int su_run(char *const argv[], char *out, size_t cap, char *err, size_t errcap);
/* A program of the build tree (top_builddir, as make check exports it,
 * else from the test's own path), e.g. "tools/mpadmin"; NULL when absent. */
const char *su_built(const char *rel);

#endif
