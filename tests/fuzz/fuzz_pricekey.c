/*
 * libFuzzer target for the price table's keys (mod_micropay/
 * mod_micropay_pricekey.c): mpk_from_path (Apache's decoded path, any
 * bytes), mpk_normalise (a path as written in a URL, what mpadmin takes)
 * and mpk_is_canonical.
 *
 * Properties checked beyond "no crash, no out-of-bounds access" (every
 * output buffer is a heap block of exactly cap bytes, so ASan sees a write
 * one past it):
 *  - an accepted key is NUL-terminated at *len, at most MPK_MAX and cap - 1
 *    bytes, visible ASCII, starts with '/', has no empty, "." or ".."
 *    segment, every '%' is followed by two upper-case hex digits naming a
 *    byte that is not kept literal, every other byte is a pchar or '/';
 *  - it is the key of a plain reference model (segments on a stack, then
 *    encoded), which refuses what the header documents: a NUL, no leading
 *    '/', a ".." above the root; a key the model says fits is accepted, one
 *    longer than the buffer or MPK_MAX is MP_ERR_TOO_LARGE (when what is
 *    built before a ".." takes it back is longer than the buffer, either
 *    answer is fine);
 *  - idempotence: the decoded form of a key gives the same key again,
 *    mpk_normalise of the key is the key, mpk_is_canonical says 1;
 *  - a buffer of len + 1 bytes is enough, len bytes is not;
 *  - mpk_normalise is the input decoded once, through mpk_from_path, and
 *    refuses a bad '%', %00, %2F, '?' and '#'; mpk_is_canonical(s) says
 *    whether mpk_normalise(s) is s;
 *  - a refusal is MP_ERR_ARG or MP_ERR_TOO_LARGE with a reason in *why,
 *    and leaves *len alone.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mod_micropay_pricekey.h"

static int is_literal(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
        || (c != '\0' && strchr("-._~!$&'()*+,;=:@", c) != NULL);
}

static int hexdigit(unsigned char c, int upper_only)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (!upper_only && c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL)
        abort();
    return p;
}

/* ---- the reference model of mpk_from_path ---------------------------------- */

typedef struct {
    int ok;         /* 0: refused (NUL, not absolute, above the root) */
    char *key;      /* malloc'ed when ok */
    size_t len;     /* strlen(key) */
    size_t peak;    /* the longest "/seg/seg" built on the way */
} model;

static void model_key(const unsigned char *p, size_t n, model *m)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t *start = xmalloc((n + 1) * sizeof *start), *raw = xmalloc((n + 1) * sizeof *raw);
    size_t *enc = xmalloc((n + 1) * sizeof *enc);
    size_t depth = 0, cur = 0, i = 0, s, e, k, o;
    int slash = 0;

    m->ok = 0;
    m->key = NULL;
    m->len = m->peak = 0;
    if (n == 0 || p[0] != '/' || memchr(p, '\0', n) != NULL)
        goto out;
    while (i < n) {
        s = i + 1;
        for (e = s; e < n && p[e] != '/'; e++)
            ;
        i = e;
        slash = 1;
        if (e == s || (e - s == 1 && p[s] == '.'))
            continue;
        if (e - s == 2 && p[s] == '.' && p[s + 1] == '.') {
            if (depth == 0)
                goto out;
            cur -= enc[--depth];
            continue;
        }
        slash = 0;
        start[depth] = s;
        raw[depth] = e - s;
        enc[depth] = 1;
        for (k = s; k < e; k++)
            enc[depth] += is_literal(p[k]) ? 1 : 3;
        cur += enc[depth++];
        if (cur > m->peak)
            m->peak = cur;
    }
    m->len = cur + ((depth == 0 || slash) ? 1 : 0);
    m->key = xmalloc(m->len + 1);
    o = 0;
    for (k = 0; k < depth; k++) {
        m->key[o++] = '/';
        for (i = start[k]; i < start[k] + raw[k]; i++) {
            if (is_literal(p[i])) {
                m->key[o++] = (char)p[i];
            } else {
                m->key[o++] = '%';
                m->key[o++] = hex[p[i] >> 4];
                m->key[o++] = hex[p[i] & 15];
            }
        }
    }
    if (depth == 0 || slash)
        m->key[o++] = '/';
    m->key[o] = '\0';
    if (o != m->len)
        abort();
    m->ok = 1;
out:
    free(start);
    free(raw);
    free(enc);
}

/* ---- the functions under test, into buffers of exactly cap bytes --------- */

static void check_key(const char *key, size_t len, size_t cap)
{
    size_t i;

    if (len > MPK_MAX || len + 1 > cap || key[len] != '\0' || strlen(key) != len || key[0] != '/')
        abort();
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];

        if (c < 0x21 || c > 0x7e)
            abort();
        if (c == '/') {
            /* no "//", "/./", "/../", nor a trailing "/." or "/.." */
            const char *seg = key + i + 1;
            size_t sl = strcspn(seg, "/");

            if (i + 1 < len && (sl == 0 || (sl == 1 && seg[0] == '.')
                                || (sl == 2 && seg[0] == '.' && seg[1] == '.')))
                abort();
        } else if (c == '%') {
            int hi, lo;

            if (i + 2 >= len)
                abort();
            hi = hexdigit((unsigned char)key[i + 1], 1);
            lo = hexdigit((unsigned char)key[i + 2], 1);
            /* not a byte written literally, not '/', not NUL */
            if (hi < 0 || lo < 0 || is_literal((unsigned char)(hi << 4 | lo))
                || (hi << 4 | lo) == '/' || (hi << 4 | lo) == 0)
                abort();
            i += 2;
        } else if (!is_literal(c)) {
            abort();
        }
    }
}

static void check_outcome(mp_status st, const char *why, const char *out, size_t len, size_t cap)
{
    if (st == MP_OK) {
        if (why != NULL)
            abort();
        check_key(out, len, cap);
    } else if ((st != MP_ERR_ARG && st != MP_ERR_TOO_LARGE) || why == NULL || why[0] == '\0'
               || len != (size_t)-1) {
        abort();
    }
}

static mp_status from_path(const unsigned char *p, size_t n, size_t cap, char **out, size_t *len)
{
    const char *why = "unset";
    mp_status st;

    *out = xmalloc(cap);
    *len = (size_t)-1;
    st = mpk_from_path((const char *)p, n, *out, cap, len, &why);
    check_outcome(st, why, *out, *len, cap);
    return st;
}

static mp_status normalise(const char *in, size_t cap, char **out, size_t *len)
{
    const char *why = "unset";
    mp_status st;

    *out = xmalloc(cap);
    *len = (size_t)-1;
    st = mpk_normalise(in, *out, cap, len, &why);
    check_outcome(st, why, *out, *len, cap);
    return st;
}

/* mpk_from_path(p, n) into cap bytes agrees with the model m of p; the key
 * (malloc'ed, also on refusal) in *key. */
static mp_status check_from_path(const unsigned char *p, size_t n, size_t cap, const model *m,
                                 char **key, size_t *klen)
{
    size_t limit = cap == 0 ? 0 : (cap - 1 < MPK_MAX ? cap - 1 : MPK_MAX);
    mp_status st = from_path(p, n, cap, key, klen);

    if (cap == 0 || !m->ok) {
        if (st == MP_OK)
            abort();
        return st;
    }
    if (st == MP_ERR_ARG)
        abort();                               /* nothing wrong but perhaps the size */
    if (m->len > limit) {
        if (st != MP_ERR_TOO_LARGE)
            abort();
    } else if (m->peak <= limit && st != MP_OK) {
        abort();
    }
    if (st == MP_OK && (*klen != m->len || memcmp(*key, m->key, m->len + 1) != 0))
        abort();
    return st;
}

/* The key's bytes decoded (its '%' are all valid: check_key said so). */
static unsigned char *decode_key(const char *key, size_t len, size_t *n)
{
    unsigned char *d = xmalloc(len + 1);
    size_t i, o = 0;

    for (i = 0; i < len; i++) {
        if (key[i] == '%') {
            d[o++] = (unsigned char)(hexdigit((unsigned char)key[i + 1], 1) << 4
                                     | hexdigit((unsigned char)key[i + 2], 1));
            i += 2;
        } else {
            d[o++] = (unsigned char)key[i];
        }
    }
    *n = o;
    return d;
}

/* Whatever key came out: idempotence both ways, canonical. */
static void check_idempotent(const char *key, size_t len)
{
    unsigned char *d;
    char *again;
    size_t n, alen;
    model m;

    d = decode_key(key, len, &n);
    model_key(d, n, &m);
    if (check_from_path(d, n, len + 1, &m, &again, &alen) != MP_OK || alen != len
        || strcmp(again, key) != 0)
        abort();
    free(again);
    free(m.key);
    free(d);
    if (normalise(key, MPK_MAX + 1, &again, &alen) != MP_OK || alen != len || strcmp(again, key) != 0)
        abort();
    free(again);
    if (!mpk_is_canonical(key))
        abort();
}

/* The bytes as Apache's decoded path. */
static void check_decoded(const unsigned char *p, size_t n, size_t cap)
{
    char *key, *k2;
    size_t klen, l2;
    model m;
    mp_status st;

    model_key(p, n, &m);
    if (check_from_path(p, n, MPK_MAX + 1, &m, &key, &klen) == MP_OK) {
        check_idempotent(key, klen);
        /* len + 1 bytes are enough (unless a ".." took back more), len are not */
        st = check_from_path(p, n, klen + 1, &m, &k2, &l2);
        if (m.peak <= klen && st != MP_OK)
            abort();
        free(k2);
        if (check_from_path(p, n, klen, &m, &k2, &l2) != MP_ERR_TOO_LARGE)
            abort();
        free(k2);
    }
    free(key);
    if (check_from_path(p, n, cap, &m, &key, &klen) == MP_OK)
        check_idempotent(key, klen);
    free(key);
    free(m.key);
}

/* The NUL-terminated s as a path written in a URL, decoded once here. */
static void check_written(const char *s, size_t cap)
{
    size_t sl = strlen(s), i, n = 0, klen, plen;
    unsigned char *d = xmalloc(sl + 1);
    int bad = s[0] != '/';
    char *key, *pkey;
    mp_status st;

    for (i = 0; i < sl && !bad; i++) {
        int hi, lo;

        if (s[i] == '?' || s[i] == '#') {
            bad = 1;
        } else if (s[i] != '%') {
            d[n++] = (unsigned char)s[i];
        } else if ((hi = hexdigit((unsigned char)s[i + 1], 0)) < 0
                   || (lo = hexdigit((unsigned char)s[i + 2], 0)) < 0
                   || (hi << 4 | lo) == 0 || (hi << 4 | lo) == '/') {
            bad = 1;
        } else {
            d[n++] = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
    }
    st = normalise(s, cap, &key, &klen);
    if (bad || n > MPK_MAX) {
        if (st == MP_OK)
            abort();
    } else {
        /* exactly mpk_from_path of the decoded bytes (checked by the model) */
        if (from_path(d, n, cap, &pkey, &plen) != st
            || (st == MP_OK && (klen != plen || strcmp(key, pkey) != 0)))
            abort();
        free(pkey);
    }
    if (st == MP_OK) {
        check_idempotent(key, klen);
        if (!mpk_is_canonical(s) != !(klen == sl && strcmp(key, s) == 0))
            abort();
    } else if (cap > MPK_MAX && mpk_is_canonical(s)) {
        abort();
    }
    free(key);
    free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t h = 0, i, cap;
    char *str;

    /* a capacity that varies with the input, for the short-buffer paths */
    for (i = 0; i < size; i++)
        h = h * 31 + data[i];
    cap = h % (3 * size + 3);

    check_decoded(data, size, cap);
    str = xmalloc(size + 1);
    memcpy(str, data, size);
    str[size] = '\0';
    check_written(str, MPK_MAX + 1);
    check_written(str, cap);
    free(str);
    return 0;
}
