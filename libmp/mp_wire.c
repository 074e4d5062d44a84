/*
 * mp_wire.c - bounded reader/writer of the canonical record format and its
 * base64url text form. Every access is checked against the buffer length
 * before it happens; the first error latches and later calls do nothing,
 * so callers check once after a sequence of fields.
 */
#include <string.h>
#include "mp_wire.h"

/* ---- base64url ------------------------------------------------------------ */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* 0..63 for alphabet bytes, 0xff otherwise. */
static const uint8_t b64_value[256] = {
#define X 0xff
    X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X, X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,
    X,X,X,X,X,X,X,X,X,X,X,X,X,62,X,X, 52,53,54,55,56,57,58,59,60,61,X,X,X,X,X,X,
    X,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14, 15,16,17,18,19,20,21,22,23,24,25,X,X,X,X,63,
    X,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40, 41,42,43,44,45,46,47,48,49,50,51,X,X,X,X,X,
    X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X, X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,
    X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X, X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,
    X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X, X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,
    X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X, X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,X,
#undef X
};

size_t mp_b64url_len(size_t n)
{
    return (n / 3) * 4 + (n % 3 ? n % 3 + 1 : 0);
}

mp_status mp_b64url_encode(const uint8_t *in, size_t n, char *out, size_t cap,
                           size_t *out_len)
{
    size_t need, i, o = 0;

    if ((in == NULL && n > 0) || out == NULL || n > MP_WIRE_MAX)
        return MP_ERR_ARG;
    need = mp_b64url_len(n);
    if (cap < need + 1)
        return MP_ERR_BUFFER;
    for (i = 0; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    if (out_len)
        *out_len = o;
    return MP_OK;
}

mp_status mp_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap,
                           size_t *out_len)
{
    size_t i, o = 0, need, rem;
    uint32_t v;

    if ((in == NULL && len > 0) || out == NULL)
        return MP_ERR_ARG;
    if (len > MP_WIRE_TEXT_MAX)
        return MP_ERR_TOO_LARGE;
    rem = len % 4;
    if (rem == 1)
        return MP_ERR_BASE64;
    need = (len / 4) * 3 + (rem ? rem - 1 : 0);
    if (cap < need)
        return MP_ERR_BUFFER;
    /* Validate everything before writing: outputs only on success. */
    for (i = 0; i < len; i++)
        if (b64_value[(uint8_t)in[i]] == 0xff)
            return MP_ERR_BASE64;
    /* Canonical form: the bits a short final group does not use are zero. */
    if (rem == 2 && (b64_value[(uint8_t)in[len - 1]] & 0x0f))
        return MP_ERR_BASE64;
    if (rem == 3 && (b64_value[(uint8_t)in[len - 1]] & 0x03))
        return MP_ERR_BASE64;
    for (i = 0; i + 4 <= len; i += 4) {
        v = (uint32_t)b64_value[(uint8_t)in[i]] << 18
          | (uint32_t)b64_value[(uint8_t)in[i + 1]] << 12
          | (uint32_t)b64_value[(uint8_t)in[i + 2]] << 6
          | b64_value[(uint8_t)in[i + 3]];
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    if (rem >= 2) {
        v = (uint32_t)b64_value[(uint8_t)in[i]] << 18
          | (uint32_t)b64_value[(uint8_t)in[i + 1]] << 12;
        if (rem == 3)
            v |= (uint32_t)b64_value[(uint8_t)in[i + 2]] << 6;
        out[o++] = (uint8_t)(v >> 16);
        if (rem == 3)
            out[o++] = (uint8_t)(v >> 8);
    }
    if (out_len)
        *out_len = o;
    return MP_OK;
}

mp_status mp_wire_peek_type(const uint8_t *in, size_t len, uint8_t *type)
{
    if (in == NULL || type == NULL)
        return MP_ERR_ARG;
    if (len < 2)
        return MP_ERR_TRUNCATED;
    if (len > MP_WIRE_MAX)
        return MP_ERR_TOO_LARGE;
    if (in[0] != MP_WIRE_VERSION)
        return MP_ERR_VERSION;
    *type = in[1];
    return MP_OK;
}

/* ---- writer --------------------------------------------------------------- */

void mp_w_init(mp_wbuf *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap > MP_WIRE_MAX ? MP_WIRE_MAX : cap;
    w->len = 0;
    w->err = buf ? MP_OK : MP_ERR_ARG;
}

static int w_room(mp_wbuf *w, size_t n)
{
    if (w->err != MP_OK)
        return 0;
    if (n > w->cap - w->len) {
        w->err = MP_ERR_BUFFER;
        return 0;
    }
    return 1;
}

void mp_w_bytes(mp_wbuf *w, const void *p, size_t n)
{
    if (n == 0 || !w_room(w, n))
        return;
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

/* The fixed-size puts reserve their room once and store bytes directly:
 * they run several times per scrip stamp on the payment path. */
static uint8_t *w_reserve(mp_wbuf *w, size_t n)
{
    uint8_t *p;

    if (!w_room(w, n))
        return NULL;
    p = w->buf + w->len;
    w->len += n;
    return p;
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
    int i;

    for (i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

void mp_w_u8(mp_wbuf *w, uint8_t v)
{
    uint8_t *p = w_reserve(w, 1);
    if (p)
        p[0] = v;
}

void mp_w_u16(mp_wbuf *w, uint16_t v)
{
    uint8_t *p = w_reserve(w, 2);
    if (p)
        put_be(p, v, 2);
}

void mp_w_u32(mp_wbuf *w, uint32_t v)
{
    uint8_t *p = w_reserve(w, 4);
    if (p)
        put_be(p, v, 4);
}

void mp_w_u64(mp_wbuf *w, uint64_t v)
{
    uint8_t *p = w_reserve(w, 8);
    if (p)
        put_be(p, v, 8);
}

/* Text fields are visible ASCII only; an encoder must never emit what the
 * decoder would refuse. */
static int visible(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

void mp_w_str8(mp_wbuf *w, const char *s)
{
    size_t n;
    uint8_t *p;

    if (w->err != MP_OK)
        return;
    if (s == NULL || (n = strnlen(s, 256)) > 255 || !visible(s, n)) {
        w->err = MP_ERR_ARG;
        return;
    }
    if ((p = w_reserve(w, 1 + n)) != NULL) {
        p[0] = (uint8_t)n;
        memcpy(p + 1, s, n);
    }
}

void mp_w_str16(mp_wbuf *w, const char *s, size_t n)
{
    uint8_t *p;

    if (w->err != MP_OK)
        return;
    if ((s == NULL && n > 0) || n > 0xffff || (n > 0 && !visible(s, n))) {
        w->err = MP_ERR_ARG;
        return;
    }
    if ((p = w_reserve(w, 2 + n)) != NULL) {
        put_be(p, n, 2);
        if (n > 0)
            memcpy(p + 2, s, n);
    }
}

void mp_w_blob16(mp_wbuf *w, const void *b, size_t n)
{
    uint8_t *p;

    if (w->err != MP_OK)
        return;
    if ((b == NULL && n > 0) || n > 0xffff) {
        w->err = MP_ERR_ARG;
        return;
    }
    if ((p = w_reserve(w, 2 + n)) != NULL) {
        put_be(p, n, 2);
        if (n > 0)
            memcpy(p + 2, b, n);
    }
}

void mp_w_amount(mp_wbuf *w, const mp_amount *a)
{
    uint8_t *p;

    if (w->err != MP_OK)
        return;
    if (a == NULL || !mp_currency_valid(a->cur) || a->units > MP_AMOUNT_MAX) {
        w->err = MP_ERR_ARG;
        return;
    }
    if ((p = w_reserve(w, 11)) != NULL) {
        memcpy(p, a->cur, 3);
        put_be(p + 3, a->units, 8);
    }
}

void mp_w_header(mp_wbuf *w, uint8_t type)
{
    mp_w_u8(w, MP_WIRE_VERSION);
    mp_w_u8(w, type);
}

/* ---- reader --------------------------------------------------------------- */

void mp_r_init(mp_rbuf *r, const uint8_t *buf, size_t len)
{
    r->buf = buf;
    r->len = len;
    r->off = 0;
    r->err = MP_OK;
    if (buf == NULL)
        r->err = MP_ERR_ARG;
    else if (len > MP_WIRE_MAX)
        r->err = MP_ERR_TOO_LARGE;
}

void mp_r_fail(mp_rbuf *r, mp_status e)
{
    if (r->err == MP_OK)
        r->err = e;
}

/* Returns a pointer to the next n input bytes and consumes them, or NULL
 * (with MP_ERR_TRUNCATED latched) when fewer are left. */
static const uint8_t *r_take(mp_rbuf *r, size_t n)
{
    const uint8_t *p;

    if (r->err != MP_OK)
        return NULL;
    if (n > r->len - r->off) {
        r->err = MP_ERR_TRUNCATED;
        return NULL;
    }
    p = r->buf + r->off;
    r->off += n;
    return p;
}

uint8_t mp_r_u8(mp_rbuf *r)
{
    const uint8_t *p = r_take(r, 1);
    return p ? p[0] : 0;
}

uint16_t mp_r_u16(mp_rbuf *r)
{
    const uint8_t *p = r_take(r, 2);
    return p ? (uint16_t)(p[0] << 8 | p[1]) : 0;
}

uint32_t mp_r_u32(mp_rbuf *r)
{
    const uint8_t *p = r_take(r, 4);
    return p ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3] : 0;
}

uint64_t mp_r_u64(mp_rbuf *r)
{
    const uint8_t *p = r_take(r, 8);
    uint64_t v = 0;
    int i;

    if (p == NULL)
        return 0;
    for (i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

void mp_r_bytes(mp_rbuf *r, void *out, size_t n)
{
    const uint8_t *p = r_take(r, n);

    if (p != NULL && n > 0)
        memcpy(out, p, n);
}

/* Copies a text field of n bytes into out (NUL-terminated), checking the
 * limit before the charset so an over-long field reports TOO_LARGE. */
static void r_text(mp_rbuf *r, size_t n, char *out, size_t max, int allow_empty)
{
    const uint8_t *p;

    if (r->err != MP_OK)
        return;
    if (n > max) {
        r->err = MP_ERR_TOO_LARGE;
        return;
    }
    if (n == 0 && !allow_empty) {
        r->err = MP_ERR_MALFORMED;
        return;
    }
    if ((p = r_take(r, n)) == NULL)
        return;
    if (!visible((const char *)p, n)) {
        r->err = MP_ERR_CHARSET;
        return;
    }
    if (n > 0)
        memcpy(out, p, n);
    out[n] = '\0';
}

void mp_r_str8(mp_rbuf *r, char *out, size_t max, int allow_empty)
{
    size_t n = mp_r_u8(r);
    r_text(r, n, out, max, allow_empty);
}

void mp_r_str16(mp_rbuf *r, char *out, size_t max, size_t *n, int allow_empty)
{
    size_t len = mp_r_u16(r);

    r_text(r, len, out, max, allow_empty);
    if (r->err == MP_OK && n != NULL)
        *n = len;
}

const uint8_t *mp_r_blob16(mp_rbuf *r, size_t max, size_t *n)
{
    size_t len = mp_r_u16(r);
    const uint8_t *p;

    if (r->err != MP_OK)
        return NULL;
    if (len > max) {
        r->err = MP_ERR_TOO_LARGE;
        return NULL;
    }
    if ((p = r_take(r, len)) == NULL)
        return NULL;
    *n = len;
    return p;
}

void mp_r_amount(mp_rbuf *r, mp_amount *a)
{
    char cur[4];
    uint64_t units;

    mp_r_bytes(r, cur, 3);
    units = mp_r_u64(r);
    if (r->err != MP_OK)
        return;
    cur[3] = '\0';
    if (!mp_currency_valid(cur)) {
        r->err = MP_ERR_CURRENCY;
        return;
    }
    if (units > MP_AMOUNT_MAX) {
        r->err = MP_ERR_OVERFLOW;
        return;
    }
    memcpy(a->cur, cur, 4);
    a->units = units;
}

void mp_r_header(mp_rbuf *r, uint8_t type)
{
    uint8_t v = mp_r_u8(r), t = mp_r_u8(r);

    if (r->err != MP_OK)
        return;
    if (v != MP_WIRE_VERSION)
        r->err = MP_ERR_VERSION;
    else if (t != type)
        r->err = MP_ERR_TYPE;
}

mp_status mp_r_end(mp_rbuf *r)
{
    if (r->err == MP_OK && r->off != r->len)
        r->err = MP_ERR_TRAILING;
    return r->err;
}
