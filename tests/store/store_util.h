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

#endif
