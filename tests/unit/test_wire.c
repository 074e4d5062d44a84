/*
 * test_wire.c - the base64url text form and the bounded record
 * writer/reader of libmp/mp_wire.h.
 */
#include <string.h>
#include "tests.h"

#define FILL 0xa5

static int all_fill(const uint8_t *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (p[i] != FILL)
            return 0;
    return 1;
}

static int bytes_eq_hex(const uint8_t *got, size_t n, const char *want_hex)
{
    char h[2 * 256 + 1];

    if (2 * n + 1 > sizeof h)
        return 0;
    t_hex_encode(got, n, h);
    if (strcmp(h, want_hex) != 0) {
        fprintf(stderr, "\n  got  %s\n  want %s\n", h, want_hex);
        return 0;
    }
    return 1;
}

/* ---- base64url ------------------------------------------------------------------------ */

static const struct {
    const char *raw, *text;
} rfc4648[] = {
    { "", "" },
    { "f", "Zg" },
    { "fo", "Zm8" },
    { "foo", "Zm9v" },
    { "foob", "Zm9vYg" },
    { "fooba", "Zm9vYmE" },
    { "foobar", "Zm9vYmFy" },
};

static void test_b64_vectors(void)
{
    size_t i;

    for (i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
        const char *raw = rfc4648[i].raw, *text = rfc4648[i].text;
        size_t n = strlen(raw), tn = strlen(text), len = 999;
        char out[32];
        uint8_t bin[32];

        CU_ASSERT_EQUAL(mp_b64url_len(n), tn);
        memset(out, 'Z', sizeof out);
        MP_ASSERT_OK(mp_b64url_encode((const uint8_t *)raw, n, out, sizeof out, &len));
        CU_ASSERT_EQUAL(len, tn);
        CU_ASSERT_STRING_EQUAL(out, text);
        /* exactly enough room: text and NUL */
        memset(out, 'Z', sizeof out);
        MP_ASSERT_OK(mp_b64url_encode((const uint8_t *)raw, n, out, tn + 1, NULL));
        CU_ASSERT_STRING_EQUAL(out, text);
        CU_ASSERT_EQUAL(out[tn + 1], 'Z');

        len = 999;
        memset(bin, FILL, sizeof bin);
        MP_ASSERT_OK(mp_b64url_decode(text, tn, bin, sizeof bin, &len));
        CU_ASSERT_EQUAL(len, n);
        CU_ASSERT(memcmp(bin, raw, n) == 0);
        CU_ASSERT(all_fill(bin + n, sizeof bin - n));
        /* exactly enough room */
        MP_ASSERT_OK(mp_b64url_decode(text, tn, bin, n, &len));
        CU_ASSERT_EQUAL(len, n);
    }
    /* the two letters that differ from standard base64: '-' (62), '_' (63) */
    {
        static const uint8_t raw[] = { 0xfb, 0xff, 0xbf, 0xfb, 0xef };
        char out[16];
        uint8_t bin[8];
        size_t len = 0;

        MP_ASSERT_OK(mp_b64url_encode(raw, sizeof raw, out, sizeof out, &len));
        CU_ASSERT_STRING_EQUAL(out, "-_-_--8");
        MP_ASSERT_OK(mp_b64url_decode(out, len, bin, sizeof bin, &len));
        CU_ASSERT(len == sizeof raw && memcmp(bin, raw, sizeof raw) == 0);
    }
    /* the decoder reads len bytes and needs no NUL */
    {
        uint8_t bin[8];
        size_t len = 0;

        MP_ASSERT_OK(mp_b64url_decode("Zm9vYmFy!!", 4, bin, sizeof bin, &len));
        CU_ASSERT(len == 3 && memcmp(bin, "foo", 3) == 0);
    }
}

static void test_b64_reject(void)
{
    static const struct {
        const char *text;
        size_t len;          /* 0: strlen */
    } bad[] = {
        { "Zg==", 0 }, { "Zg=", 0 }, { "Zm8=", 0 }, { "=Zm9", 0 }, { "Zm9v====", 0 },
        { "+w", 0 }, { "/w", 0 }, { "Zm+v", 0 }, { "Zm/v", 0 },
        { " Zm9v", 0 }, { "Zm9v ", 0 }, { "Zm 9v", 0 }, { "Zm9v\n", 0 }, { "Zm9v\nYg", 0 },
        { "Zm9v\r\nYg", 0 }, { "Zm9\tv", 0 }, { "Zm.v", 0 }, { "Zm*v", 0 },
        { "Zm9v\0Yg", 7 }, { "\0\0\0\0", 4 }, { "Zm9\xc3", 0 }, { "Zm9\x80", 0 },
        { "Zm9\xff", 0 },
        /* impossible lengths: len % 4 == 1 */
        { "Z", 0 }, { "Zm9vY", 0 }, { "Zm9vYmFyZ", 0 },
        /* non-zero unused bits */
        { "Zh", 0 }, { "Zv", 0 }, { "Z_", 0 }, { "Zm9", 0 }, { "Zm_", 0 }, { "Zm9vYh", 0 },
        { "Zm9vYmF", 0 },
    };
    uint8_t out[16];
    size_t i, len;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = bad[i].len ? bad[i].len : strlen(bad[i].text);
        mp_status got;

        memset(out, FILL, sizeof out);
        len = 777;
        got = mp_b64url_decode(bad[i].text, n, out, sizeof out, &len);
        if (got != MP_ERR_BASE64)
            fprintf(stderr, "\n  decode case %zu: got %s\n", i, mp_strerror(got));
        CU_ASSERT_EQUAL(got, MP_ERR_BASE64);
        CU_ASSERT(all_fill(out, sizeof out));
        CU_ASSERT_EQUAL(len, 777);
    }
    /* the canonical neighbours of the refused short groups are accepted */
    MP_ASSERT_OK(mp_b64url_decode("Zg", 2, out, sizeof out, &len));
    CU_ASSERT(len == 1 && out[0] == 'f');
    MP_ASSERT_OK(mp_b64url_decode("Zm8", 3, out, sizeof out, &len));
    CU_ASSERT(len == 2 && memcmp(out, "fo", 2) == 0);
}

/* Exhaustive over the last character of a short final group: exactly the
 * characters whose unused low bits are zero are accepted. */
static void test_b64_unused_bits(void)
{
    static const char alpha[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char text[8];
    uint8_t out[8];
    size_t len;
    int v, ok2 = 0, ok3 = 0, wrong = 0;

    for (v = 0; v < 64; v++) {
        mp_status st2, st3;

        memcpy(text, "Zm9vA", 5);
        text[5] = alpha[v];
        st2 = mp_b64url_decode(text, 6, out, sizeof out, &len);
        wrong |= st2 != ((v & 0x0f) ? MP_ERR_BASE64 : MP_OK);
        ok2 += st2 == MP_OK;
        memcpy(text, "Zm9vAA", 6);
        text[6] = alpha[v];
        st3 = mp_b64url_decode(text, 7, out, sizeof out, &len);
        wrong |= st3 != ((v & 0x03) ? MP_ERR_BASE64 : MP_OK);
        ok3 += st3 == MP_OK;
    }
    CU_ASSERT(!wrong);
    CU_ASSERT_EQUAL(ok2, 4);
    CU_ASSERT_EQUAL(ok3, 16);
}

static void test_b64_limits(void)
{
    static char text[MP_WIRE_TEXT_MAX + 8];
    static uint8_t bin[MP_WIRE_MAX + 8], raw[MP_WIRE_MAX + 8];
    char small[16];
    size_t len = 0;

    /* the longest text decodes to the longest record */
    memset(text, 'A', sizeof text);
    MP_ASSERT_OK(mp_b64url_decode(text, MP_WIRE_TEXT_MAX, bin, sizeof bin, &len));
    CU_ASSERT_EQUAL(len, MP_WIRE_TEXT_MAX / 4 * 3);
    CU_ASSERT(len >= MP_WIRE_MAX);
    /* one more is refused before anything else */
    memset(bin, FILL, sizeof bin);
    MP_ASSERT_ST(mp_b64url_decode(text, MP_WIRE_TEXT_MAX + 1, bin, sizeof bin, &len),
                 MP_ERR_TOO_LARGE);
    MP_ASSERT_ST(mp_b64url_decode(text, MP_WIRE_TEXT_MAX + 4, bin, sizeof bin, &len),
                 MP_ERR_TOO_LARGE);
    text[0] = '=';
    MP_ASSERT_ST(mp_b64url_decode(text, MP_WIRE_TEXT_MAX + 2, bin, 1, &len), MP_ERR_TOO_LARGE);
    CU_ASSERT(all_fill(bin, 16));

    /* output room */
    MP_ASSERT_ST(mp_b64url_decode("Zm9vYmFy", 8, bin, 5, &len), MP_ERR_BUFFER);
    MP_ASSERT_ST(mp_b64url_decode("Zm9vYmE", 7, bin, 4, &len), MP_ERR_BUFFER);
    MP_ASSERT_ST(mp_b64url_decode("Zg", 2, bin, 0, &len), MP_ERR_BUFFER);
    CU_ASSERT(all_fill(bin, 16));
    MP_ASSERT_OK(mp_b64url_decode("", 0, bin, 0, &len));
    CU_ASSERT_EQUAL(len, 0);

    memset(small, 'Z', sizeof small);
    MP_ASSERT_ST(mp_b64url_encode((const uint8_t *)"foobar", 6, small, 8, &len), MP_ERR_BUFFER);
    MP_ASSERT_ST(mp_b64url_encode((const uint8_t *)"f", 1, small, 2, &len), MP_ERR_BUFFER);
    MP_ASSERT_ST(mp_b64url_encode((const uint8_t *)"", 0, small, 0, &len), MP_ERR_BUFFER);
    CU_ASSERT_EQUAL(small[0], 'Z');
    CU_ASSERT_EQUAL(small[7], 'Z');

    /* encoding is bounded by MP_WIRE_MAX */
    memset(raw, 0x5c, sizeof raw);
    MP_ASSERT_OK(mp_b64url_encode(raw, MP_WIRE_MAX, text, sizeof text, &len));
    CU_ASSERT(len <= MP_WIRE_TEXT_MAX);
    CU_ASSERT_EQUAL(len, mp_b64url_len(MP_WIRE_MAX));
    MP_ASSERT_OK(mp_b64url_decode(text, len, bin, sizeof bin, &len));
    CU_ASSERT(len == MP_WIRE_MAX && memcmp(bin, raw, MP_WIRE_MAX) == 0);
    MP_ASSERT_ST(mp_b64url_encode(raw, MP_WIRE_MAX + 1, text, sizeof text, &len), MP_ERR_ARG);

    MP_ASSERT_ST(mp_b64url_encode(NULL, 1, small, sizeof small, &len), MP_ERR_ARG);
    MP_ASSERT_ST(mp_b64url_encode(raw, 1, NULL, sizeof small, &len), MP_ERR_ARG);
    MP_ASSERT_ST(mp_b64url_decode(NULL, 1, bin, sizeof bin, &len), MP_ERR_ARG);
    MP_ASSERT_ST(mp_b64url_decode("Zg", 2, NULL, sizeof bin, &len), MP_ERR_ARG);
}

static void test_b64_random(void)
{
    static const char alpha[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint64_t seed = 0xb64b64ULL;
    uint8_t raw[400], back[400];
    char text[600];
    int i, bad = 0;

    CU_ASSERT_EQUAL(mp_b64url_len(0), 0);
    CU_ASSERT_EQUAL(mp_b64url_len(1), 2);
    CU_ASSERT_EQUAL(mp_b64url_len(2), 3);
    CU_ASSERT_EQUAL(mp_b64url_len(3), 4);
    CU_ASSERT_EQUAL(mp_b64url_len(MP_WIRE_MAX), 8192);
    for (i = 0; i < 3000; i++) {
        size_t n = (size_t)(t_rand(&seed) % (sizeof raw + 1)), j, tl = 0, bl = 0;

        for (j = 0; j < n; j++)
            raw[j] = (uint8_t)t_rand(&seed);
        if (mp_b64url_encode(raw, n, text, sizeof text, &tl) != MP_OK) {
            bad++;
            continue;
        }
        bad += tl != mp_b64url_len(n) || strlen(text) != tl;
        for (j = 0; j < tl; j++)
            bad += strchr(alpha, text[j]) == NULL;
        bad += mp_b64url_decode(text, tl, back, sizeof back, &bl) != MP_OK;
        bad += bl != n || memcmp(back, raw, n) != 0;
        /* any one character replaced by one outside the alphabet */
        if (tl > 0) {
            size_t at = (size_t)(t_rand(&seed) % tl);
            char keep = text[at];

            text[at] = "=+/ \n.\0~"[t_rand(&seed) % 8];
            bad += mp_b64url_decode(text, tl, back, sizeof back, &bl) != MP_ERR_BASE64;
            text[at] = keep;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
}

/* ---- writer -------------------------------------------------------------------------------- */

static void test_writer_encoding(void)
{
    uint8_t buf[128];
    mp_wbuf w;
    mp_amount a;
    static const uint8_t raw[] = { 0xde, 0xad, 0xbe, 0xef };

    memset(buf, FILL, sizeof buf);
    mp_w_init(&w, buf, sizeof buf);
    CU_ASSERT_EQUAL(w.err, MP_OK);
    CU_ASSERT_EQUAL(w.len, 0);
    mp_w_header(&w, MP_T_OFFER);
    CU_ASSERT(w.len == 2 && bytes_eq_hex(buf, 2, "0130"));

    mp_w_init(&w, buf, sizeof buf);
    mp_w_u8(&w, 0xab);
    CU_ASSERT(bytes_eq_hex(buf, w.len, "ab"));
    mp_w_init(&w, buf, sizeof buf);
    mp_w_u16(&w, 0x1234);
    CU_ASSERT(bytes_eq_hex(buf, w.len, "1234"));
    mp_w_init(&w, buf, sizeof buf);
    mp_w_u32(&w, 0x89abcdefu);
    CU_ASSERT(bytes_eq_hex(buf, w.len, "89abcdef"));
    mp_w_init(&w, buf, sizeof buf);
    mp_w_u64(&w, 0x0123456789abcdefULL);
    CU_ASSERT(bytes_eq_hex(buf, w.len, "0123456789abcdef"));
    mp_w_init(&w, buf, sizeof buf);
    mp_w_u64(&w, UINT64_MAX);
    mp_w_u32(&w, 1);
    mp_w_u16(&w, 0xff00);
    CU_ASSERT(bytes_eq_hex(buf, w.len, "ffffffffffffffff00000001ff00"));
    mp_w_init(&w, buf, sizeof buf);
    mp_w_bytes(&w, raw, sizeof raw);
    mp_w_bytes(&w, raw, 0);
    CU_ASSERT(bytes_eq_hex(buf, w.len, "deadbeef"));
    mp_w_init(&w, buf, sizeof buf);
    mp_w_str8(&w, "abc");
    mp_w_str8(&w, "");
    CU_ASSERT(bytes_eq_hex(buf, w.len, "0361626300"));
    mp_w_init(&w, buf, sizeof buf);
    mp_w_str16(&w, "hi!", 3);
    mp_w_str16(&w, "ignored", 0);
    mp_w_str16(&w, NULL, 0);
    CU_ASSERT(bytes_eq_hex(buf, w.len, "00036869210000" "0000"));
    mp_w_init(&w, buf, sizeof buf);
    mp_w_blob16(&w, raw, sizeof raw);
    mp_w_blob16(&w, "\0 \x7f", 3);        /* blobs are raw bytes */
    mp_w_blob16(&w, NULL, 0);
    CU_ASSERT(bytes_eq_hex(buf, w.len, "0004deadbeef" "000300207f" "0000"));
    mp_w_init(&w, buf, sizeof buf);
    MP_ASSERT_OK(mp_amount_set(&a, 500, "USD"));
    mp_w_amount(&w, &a);
    MP_ASSERT_OK(mp_amount_set(&a, MP_AMOUNT_MAX, "EUR"));
    mp_w_amount(&w, &a);
    CU_ASSERT(bytes_eq_hex(buf, w.len, "55534400000000000001f4" "45555200038d7ea4c68000"));
    CU_ASSERT_EQUAL(w.err, MP_OK);

    /* the whole record in one go */
    mp_w_init(&w, buf, sizeof buf);
    mp_w_header(&w, MP_T_SCRIP);
    mp_w_u8(&w, 7);
    mp_w_u16(&w, 0x0102);
    mp_w_u32(&w, 0x03040506);
    mp_w_u64(&w, 0x0708090a0b0c0d0eULL);
    mp_w_str8(&w, "v1");
    MP_ASSERT_OK(mp_amount_set(&a, 1, "XYZ"));
    mp_w_amount(&w, &a);
    CU_ASSERT_EQUAL(w.err, MP_OK);
    CU_ASSERT(bytes_eq_hex(buf, w.len,
                           "0101" "07" "0102" "03040506" "0708090a0b0c0d0e" "027631"
                           "58595a" "0000000000000001"));
    CU_ASSERT(all_fill(buf + w.len, sizeof buf - w.len));
}

/* Each put that does not fit: BUFFER latched, len kept, no byte written. */
static void test_writer_overflow(void)
{
    uint8_t buf[16];
    mp_wbuf w;
    mp_amount a;
    size_t need, cap;

    MP_ASSERT_OK(mp_amount_set(&a, 1, "USD"));
    for (need = 1; need <= 10; need++) {
        /* a put of `need` bytes into room for need-1 after a 1-byte prefix */
        cap = need;
        memset(buf, FILL, sizeof buf);
        mp_w_init(&w, buf, cap);
        mp_w_u8(&w, 0x11);
        switch (need) {
        case 2: mp_w_u16(&w, 0x2222); break;
        case 4: mp_w_u32(&w, 0x44444444u); break;
        case 8: mp_w_u64(&w, 0x8888888888888888ULL); break;
        default: mp_w_bytes(&w, "0123456789", need); break;
        }
        CU_ASSERT_EQUAL(w.err, MP_ERR_BUFFER);
        CU_ASSERT_EQUAL(w.len, 1);
        CU_ASSERT_EQUAL(buf[0], 0x11);
        CU_ASSERT(all_fill(buf + 1, sizeof buf - 1));
        /* latched: a put that would fit does nothing either */
        mp_w_u8(&w, 0x22);
        mp_w_bytes(&w, "x", 1);
        CU_ASSERT_EQUAL(w.err, MP_ERR_BUFFER);
        CU_ASSERT_EQUAL(w.len, 1);
        CU_ASSERT(all_fill(buf + 1, sizeof buf - 1));
    }
    /* composite fields (amount, length-prefixed text and blobs) that do not
     * fit: BUFFER latched and nothing written beyond cap */
    for (cap = 0; cap < 11; cap++) {
        memset(buf, FILL, sizeof buf);
        mp_w_init(&w, buf, cap);
        mp_w_amount(&w, &a);
        CU_ASSERT_EQUAL(w.err, MP_ERR_BUFFER);
        CU_ASSERT(w.len <= cap);
        CU_ASSERT(all_fill(buf + cap, sizeof buf - cap));
    }
    for (cap = 0; cap < 6; cap++) {
        memset(buf, FILL, sizeof buf);
        mp_w_init(&w, buf, cap);
        mp_w_str8(&w, "abcde");
        CU_ASSERT(w.err == MP_ERR_BUFFER && w.len <= cap);
        CU_ASSERT(all_fill(buf + cap, sizeof buf - cap));
        mp_w_init(&w, buf, cap + 1);
        mp_w_str16(&w, "abcde", 5);
        CU_ASSERT(w.err == MP_ERR_BUFFER && w.len <= cap + 1);
        CU_ASSERT(all_fill(buf + cap + 1, sizeof buf - cap - 1));
        mp_w_init(&w, buf, cap + 1);
        mp_w_blob16(&w, "abcde", 5);
        CU_ASSERT(w.err == MP_ERR_BUFFER && w.len <= cap + 1);
        CU_ASSERT(all_fill(buf + cap + 1, sizeof buf - cap - 1));
    }
    /* filling exactly to cap is fine; one byte more is not */
    memset(buf, FILL, sizeof buf);
    mp_w_init(&w, buf, 8);
    mp_w_u64(&w, 1);
    CU_ASSERT(w.err == MP_OK && w.len == 8);
    mp_w_bytes(&w, "", 0);
    CU_ASSERT(w.err == MP_OK && w.len == 8);
    mp_w_u8(&w, 1);
    CU_ASSERT(w.err == MP_ERR_BUFFER && w.len == 8);
    CU_ASSERT(all_fill(buf + 8, sizeof buf - 8));
    /* length-prefixed fields */
    mp_w_init(&w, buf, 3);
    mp_w_str8(&w, "abc");
    CU_ASSERT_EQUAL(w.err, MP_ERR_BUFFER);
    mp_w_init(&w, buf, 4);
    mp_w_blob16(&w, "abc", 3);
    CU_ASSERT_EQUAL(w.err, MP_ERR_BUFFER);
    mp_w_init(&w, buf, 1);
    mp_w_str16(&w, "", 0);
    CU_ASSERT(w.err == MP_ERR_BUFFER && w.len == 0);
    mp_w_init(&w, buf, 0);
    mp_w_header(&w, MP_T_SCRIP);
    CU_ASSERT(w.err == MP_ERR_BUFFER && w.len == 0);
    /* a capacity above MP_WIRE_MAX is clamped to it */
    {
        static uint8_t big[MP_WIRE_MAX + 16];
        size_t k;

        mp_w_init(&w, big, sizeof big);
        for (k = 0; k < MP_WIRE_MAX / 8; k++)
            mp_w_u64(&w, k);
        CU_ASSERT(w.err == MP_OK && w.len == MP_WIRE_MAX);
        mp_w_u8(&w, 0);
        CU_ASSERT(w.err == MP_ERR_BUFFER && w.len == MP_WIRE_MAX);
    }
    /* no buffer */
    mp_w_init(&w, NULL, 16);
    CU_ASSERT_EQUAL(w.err, MP_ERR_ARG);
    mp_w_u8(&w, 1);
    CU_ASSERT(w.err == MP_ERR_ARG && w.len == 0);
}

static void test_writer_args(void)
{
    char s255[257], s256[258];
    uint8_t buf[600];
    mp_wbuf w;
    mp_amount a;
    static const char *const bad8[] = {
        "a b", " ", "ab\x7f", "\x7f", "tab\t", "nl\n", "\x80", "caf\xc3\xa9", "\x01",
    };
    size_t i;

    memset(s255, 'x', 255);
    s255[255] = '\0';
    memset(s256, 'y', 256);
    s256[256] = '\0';
    mp_w_init(&w, buf, sizeof buf);
    mp_w_str8(&w, s255);
    CU_ASSERT(w.err == MP_OK && w.len == 256 && buf[0] == 255);
    /* visible ASCII edges are fine */
    mp_w_init(&w, buf, sizeof buf);
    mp_w_str8(&w, "!~");
    CU_ASSERT(w.err == MP_OK && bytes_eq_hex(buf, w.len, "02217e"));

    for (i = 0; i < sizeof bad8 / sizeof bad8[0]; i++) {
        memset(buf, FILL, sizeof buf);
        mp_w_init(&w, buf, sizeof buf);
        mp_w_str8(&w, bad8[i]);
        CU_ASSERT_EQUAL(w.err, MP_ERR_ARG);
        CU_ASSERT_EQUAL(w.len, 0);
        CU_ASSERT(all_fill(buf, 8));
        mp_w_init(&w, buf, sizeof buf);
        mp_w_str16(&w, bad8[i], strlen(bad8[i]));
        CU_ASSERT_EQUAL(w.err, MP_ERR_ARG);
        CU_ASSERT_EQUAL(w.len, 0);
    }
    mp_w_init(&w, buf, sizeof buf);
    mp_w_str8(&w, s256);
    CU_ASSERT(w.err == MP_ERR_ARG && w.len == 0);
    mp_w_init(&w, buf, sizeof buf);
    mp_w_str8(&w, NULL);
    CU_ASSERT_EQUAL(w.err, MP_ERR_ARG);
    mp_w_init(&w, buf, sizeof buf);
    mp_w_str16(&w, "a\0b", 3);            /* str16 counts n bytes, NUL included */
    CU_ASSERT_EQUAL(w.err, MP_ERR_ARG);
    mp_w_init(&w, buf, sizeof buf);
    mp_w_str16(&w, NULL, 1);
    CU_ASSERT_EQUAL(w.err, MP_ERR_ARG);
    mp_w_init(&w, buf, sizeof buf);
    mp_w_str16(&w, s256, 0x10000);
    CU_ASSERT_EQUAL(w.err, MP_ERR_ARG);
    mp_w_init(&w, buf, sizeof buf);
    mp_w_blob16(&w, NULL, 1);
    CU_ASSERT_EQUAL(w.err, MP_ERR_ARG);
    mp_w_init(&w, buf, sizeof buf);
    mp_w_blob16(&w, buf, 0x10000);
    CU_ASSERT_EQUAL(w.err, MP_ERR_ARG);
    /* amounts the reader would refuse are never written */
    memset(&a, 0, sizeof a);
    a.units = 1;
    memcpy(a.cur, "usd", 4);
    mp_w_init(&w, buf, sizeof buf);
    mp_w_amount(&w, &a);
    CU_ASSERT(w.err == MP_ERR_ARG && w.len == 0);
    memcpy(a.cur, "USD", 4);
    a.units = MP_AMOUNT_MAX + 1;
    mp_w_init(&w, buf, sizeof buf);
    mp_w_amount(&w, &a);
    CU_ASSERT(w.err == MP_ERR_ARG && w.len == 0);
    mp_w_init(&w, buf, sizeof buf);
    mp_w_amount(&w, NULL);
    CU_ASSERT_EQUAL(w.err, MP_ERR_ARG);
    /* the first error stays */
    mp_w_init(&w, buf, 2);
    mp_w_str8(&w, "a b");
    mp_w_u64(&w, 1);
    CU_ASSERT(w.err == MP_ERR_ARG && w.len == 0);
    mp_w_init(&w, buf, 2);
    mp_w_u64(&w, 1);
    mp_w_str8(&w, "a b");
    CU_ASSERT(w.err == MP_ERR_BUFFER && w.len == 0);
}

/* ---- reader -------------------------------------------------------------------------------- */

/* A record with one field of every kind, as the writer makes it. */
static size_t sample_record(uint8_t *buf, size_t cap)
{
    mp_wbuf w;
    mp_amount a;

    mp_amount_set(&a, 123456789, "EUR");
    mp_w_init(&w, buf, cap);
    mp_w_header(&w, MP_T_PW_CERT);
    mp_w_u8(&w, 0xfe);
    mp_w_u16(&w, 0xfedc);
    mp_w_u32(&w, 0xfedcba98u);
    mp_w_u64(&w, 0xfedcba9876543210ULL);
    mp_w_bytes(&w, "0123456789abcdef0123456789abcdef", 32);
    mp_w_str8(&w, "vendor.example");
    mp_w_str16(&w, "/path?q=1", 9);
    mp_w_blob16(&w, "\x00\x01\x02", 3);
    mp_w_amount(&w, &a);
    return w.err == MP_OK ? w.len : 0;
}

/* Reads sample_record's fields; returns the latched status and checks
 * the values when it is MP_OK. */
static mp_status read_sample(const uint8_t *in, size_t len, int check)
{
    mp_rbuf r;
    uint8_t b32[32];
    char s8[32], s16[32];
    size_t n16 = 0, nblob = 0;
    const uint8_t *blob;
    mp_amount a;
    uint8_t v8;
    uint16_t v16;
    uint32_t v32;
    uint64_t v64;

    memset(&a, 0, sizeof a);
    mp_r_init(&r, in, len);
    mp_r_header(&r, MP_T_PW_CERT);
    v8 = mp_r_u8(&r);
    v16 = mp_r_u16(&r);
    v32 = mp_r_u32(&r);
    v64 = mp_r_u64(&r);
    mp_r_bytes(&r, b32, 32);
    mp_r_str8(&r, s8, sizeof s8 - 1, 0);
    mp_r_str16(&r, s16, sizeof s16 - 1, &n16, 0);
    blob = mp_r_blob16(&r, 16, &nblob);
    mp_r_amount(&r, &a);
    if (mp_r_end(&r) == MP_OK && check) {
        CU_ASSERT_EQUAL(v8, 0xfe);
        CU_ASSERT_EQUAL(v16, 0xfedc);
        CU_ASSERT_EQUAL(v32, 0xfedcba98u);
        CU_ASSERT(v64 == 0xfedcba9876543210ULL);
        CU_ASSERT(memcmp(b32, "0123456789abcdef0123456789abcdef", 32) == 0);
        CU_ASSERT_STRING_EQUAL(s8, "vendor.example");
        CU_ASSERT_STRING_EQUAL(s16, "/path?q=1");
        CU_ASSERT_EQUAL(n16, 9);
        CU_ASSERT(blob != NULL && nblob == 3 && memcmp(blob, "\x00\x01\x02", 3) == 0);
        CU_ASSERT(blob >= in && blob + nblob <= in + len);   /* points into the input */
        CU_ASSERT(a.units == 123456789 && strcmp(a.cur, "EUR") == 0);
    }
    if (r.err != MP_OK) {
        /* latched: the getters return zero and NULL */
        CU_ASSERT_EQUAL(mp_r_u8(&r), 0);
        CU_ASSERT_EQUAL(mp_r_u64(&r), 0);
        CU_ASSERT_PTR_NULL(mp_r_blob16(&r, 16, &nblob));
    }
    return r.err;
}

static void test_reader_fields(void)
{
    uint8_t buf[256];
    size_t len = sample_record(buf, sizeof buf), cut;
    int wrong = 0;

    CU_ASSERT_FATAL(len > 0);
    MP_ASSERT_OK(read_sample(buf, len, 1));
    /* every proper prefix is truncated, whichever field it ends in */
    for (cut = 0; cut < len; cut++) {
        mp_status got = read_sample(buf, cut, 0);

        if (got != MP_ERR_TRUNCATED) {
            fprintf(stderr, "\n  prefix %zu: got %s\n", cut, mp_strerror(got));
            wrong = 1;
        }
    }
    CU_ASSERT(!wrong);
    /* one byte more is trailing */
    buf[len] = 0;
    MP_ASSERT_ST(read_sample(buf, len + 1, 0), MP_ERR_TRAILING);
}

static void test_reader_truncation(void)
{
    static const uint8_t in[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
    uint8_t out[16];
    mp_rbuf r;

    mp_r_init(&r, in, 1);
    CU_ASSERT_EQUAL(mp_r_u16(&r), 0);
    CU_ASSERT_EQUAL(r.err, MP_ERR_TRUNCATED);
    mp_r_init(&r, in, 3);
    CU_ASSERT_EQUAL(mp_r_u32(&r), 0);
    CU_ASSERT_EQUAL(r.err, MP_ERR_TRUNCATED);
    mp_r_init(&r, in, 7);
    CU_ASSERT(mp_r_u64(&r) == 0 && r.err == MP_ERR_TRUNCATED);
    mp_r_init(&r, in, 0);
    CU_ASSERT(mp_r_u8(&r) == 0 && r.err == MP_ERR_TRUNCATED);
    memset(out, FILL, sizeof out);
    mp_r_init(&r, in, 5);
    mp_r_bytes(&r, out, 6);
    CU_ASSERT_EQUAL(r.err, MP_ERR_TRUNCATED);
    CU_ASSERT(all_fill(out, sizeof out));
    /* the latched error stays, a later get of what is there does nothing */
    mp_r_init(&r, in, 5);
    mp_r_u64(&r);
    CU_ASSERT_EQUAL(mp_r_u8(&r), 0);
    CU_ASSERT_EQUAL(r.err, MP_ERR_TRUNCATED);
    CU_ASSERT_EQUAL(r.off, 0);
    CU_ASSERT_EQUAL(mp_r_end(&r), MP_ERR_TRUNCATED);
    /* exact reads */
    mp_r_init(&r, in, 15);
    CU_ASSERT_EQUAL(mp_r_u8(&r), 1);
    CU_ASSERT_EQUAL(mp_r_u16(&r), 0x0203);
    CU_ASSERT_EQUAL(mp_r_u32(&r), 0x04050607u);
    CU_ASSERT(mp_r_u64(&r) == 0x08090a0b0c0d0e0fULL);
    mp_r_bytes(&r, out, 0);
    MP_ASSERT_OK(mp_r_end(&r));
}

static void test_reader_text(void)
{
    char out[16];
    mp_rbuf r;
    size_t n;
    static const uint8_t five[] = { 5, 'h', 'e', 'l', 'l', 'o' };
    static const uint8_t five16[] = { 0, 5, 'h', 'e', 'l', 'l', 'o' };
    static const uint8_t empty8[] = { 0 }, empty16[] = { 0, 0 };

    mp_r_init(&r, five, sizeof five);
    mp_r_str8(&r, out, 5, 0);
    MP_ASSERT_OK(mp_r_end(&r));
    CU_ASSERT_STRING_EQUAL(out, "hello");
    /* above max, with the bytes present and without them */
    memset(out, FILL, sizeof out);
    mp_r_init(&r, five, sizeof five);
    mp_r_str8(&r, out, 4, 0);
    CU_ASSERT_EQUAL(r.err, MP_ERR_TOO_LARGE);
    mp_r_init(&r, five, 3);
    mp_r_str8(&r, out, 4, 0);
    CU_ASSERT_EQUAL(r.err, MP_ERR_TOO_LARGE);
    mp_r_init(&r, five16, sizeof five16);
    mp_r_str16(&r, out, 4, &n, 0);
    CU_ASSERT_EQUAL(r.err, MP_ERR_TOO_LARGE);
    CU_ASSERT(all_fill((const uint8_t *)out, sizeof out));
    mp_r_init(&r, five16, sizeof five16);
    n = 99;
    mp_r_str16(&r, out, 5, &n, 0);
    MP_ASSERT_OK(mp_r_end(&r));
    CU_ASSERT(n == 5 && strcmp(out, "hello") == 0);
    /* truncated inside the text */
    mp_r_init(&r, five, 5);
    mp_r_str8(&r, out, 8, 0);
    CU_ASSERT_EQUAL(r.err, MP_ERR_TRUNCATED);

    /* empty */
    mp_r_init(&r, empty8, sizeof empty8);
    mp_r_str8(&r, out, 8, 0);
    CU_ASSERT_EQUAL(r.err, MP_ERR_MALFORMED);
    mp_r_init(&r, empty16, sizeof empty16);
    n = 99;
    mp_r_str16(&r, out, 8, &n, 0);
    CU_ASSERT_EQUAL(r.err, MP_ERR_MALFORMED);
    CU_ASSERT_EQUAL(n, 99);
    memset(out, FILL, sizeof out);
    mp_r_init(&r, empty8, sizeof empty8);
    mp_r_str8(&r, out, 8, 1);
    MP_ASSERT_OK(mp_r_end(&r));
    CU_ASSERT_STRING_EQUAL(out, "");
    mp_r_init(&r, empty16, sizeof empty16);
    mp_r_str16(&r, out, 8, &n, 1);
    MP_ASSERT_OK(mp_r_end(&r));
    CU_ASSERT(n == 0 && out[0] == '\0');

    /* charset: every byte outside 0x21..0x7e, at the start and the end */
    {
        int c, wrong = 0;

        for (c = 0; c < 256; c++) {
            uint8_t in8[4] = { 3, 'a', 'b', 'c' }, in16[5] = { 0, 3, 'a', 'b', 'c' };
            int visible = c >= 0x21 && c <= 0x7e;

            in8[1] = (uint8_t)c;
            in16[4] = (uint8_t)c;
            memset(out, FILL, sizeof out);
            mp_r_init(&r, in8, sizeof in8);
            mp_r_str8(&r, out, 8, 0);
            wrong |= r.err != (visible ? MP_OK : MP_ERR_CHARSET);
            if (!visible)
                wrong |= !all_fill((const uint8_t *)out, sizeof out);
            mp_r_init(&r, in16, sizeof in16);
            mp_r_str16(&r, out, 8, &n, 0);
            wrong |= r.err != (visible ? MP_OK : MP_ERR_CHARSET);
        }
        CU_ASSERT(!wrong);
    }
    /* the limit is checked before the charset */
    {
        static const uint8_t sp[] = { 3, ' ', ' ', ' ' };

        mp_r_init(&r, sp, sizeof sp);
        mp_r_str8(&r, out, 2, 0);
        CU_ASSERT_EQUAL(r.err, MP_ERR_TOO_LARGE);
    }
}

static void test_reader_blob(void)
{
    static const uint8_t in[] = { 0, 4, 0, ' ', 0x7f, 0xff, 0, 0 };
    mp_rbuf r;
    const uint8_t *p;
    size_t n = 99;

    mp_r_init(&r, in, sizeof in);
    p = mp_r_blob16(&r, 4, &n);
    CU_ASSERT(p == in + 2 && n == 4);
    p = mp_r_blob16(&r, 0, &n);
    CU_ASSERT(p != NULL && n == 0);
    MP_ASSERT_OK(mp_r_end(&r));

    n = 99;
    mp_r_init(&r, in, sizeof in);
    CU_ASSERT_PTR_NULL(mp_r_blob16(&r, 3, &n));
    CU_ASSERT_EQUAL(r.err, MP_ERR_TOO_LARGE);
    CU_ASSERT_EQUAL(n, 99);
    mp_r_init(&r, in, 5);
    CU_ASSERT_PTR_NULL(mp_r_blob16(&r, 4, &n));
    CU_ASSERT_EQUAL(r.err, MP_ERR_TRUNCATED);
    mp_r_init(&r, in, 1);
    CU_ASSERT_PTR_NULL(mp_r_blob16(&r, 4, &n));
    CU_ASSERT_EQUAL(r.err, MP_ERR_TRUNCATED);
    CU_ASSERT_EQUAL(n, 99);
}

static void test_reader_amount(void)
{
    uint8_t in[11];
    mp_rbuf r;
    mp_amount a, fillv;
    static const struct {
        const char *cur;
        uint64_t units;
        mp_status want;
    } v[] = {
        { "USD", 500, MP_OK },
        { "ZZZ", 0, MP_OK },
        { "EUR", MP_AMOUNT_MAX, MP_OK },
        { "usd", 500, MP_ERR_CURRENCY },
        { "Usd", 500, MP_ERR_CURRENCY },
        { "US1", 500, MP_ERR_CURRENCY },
        { "US ", 500, MP_ERR_CURRENCY },
        { "US\0", 500, MP_ERR_CURRENCY },
        { "USD", MP_AMOUNT_MAX + 1, MP_ERR_OVERFLOW },
        { "USD", UINT64_MAX, MP_ERR_OVERFLOW },
    };
    size_t i;
    int k;

    memset(&fillv, FILL, sizeof fillv);
    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        memcpy(in, v[i].cur, 3);
        for (k = 0; k < 8; k++)
            in[3 + k] = (uint8_t)(v[i].units >> (56 - 8 * k));
        memset(&a, FILL, sizeof a);
        mp_r_init(&r, in, sizeof in);
        mp_r_amount(&r, &a);
        if (r.err != v[i].want)
            fprintf(stderr, "\n  amount case %zu: got %s\n", i, mp_strerror(r.err));
        CU_ASSERT_EQUAL(r.err, v[i].want);
        if (v[i].want == MP_OK) {
            CU_ASSERT(a.units == v[i].units && memcmp(a.cur, v[i].cur, 4) == 0);
            MP_ASSERT_OK(mp_r_end(&r));
        } else {
            CU_ASSERT(memcmp(&a, &fillv, sizeof a) == 0);
        }
    }
    /* truncated in the currency and in the units */
    for (k = 0; k < 11; k++) {
        memset(&a, FILL, sizeof a);
        mp_r_init(&r, in, (size_t)k);
        mp_r_amount(&r, &a);
        CU_ASSERT_EQUAL(r.err, MP_ERR_TRUNCATED);
        CU_ASSERT(memcmp(&a, &fillv, sizeof a) == 0);
    }
}

static void test_reader_header(void)
{
    uint8_t in[4] = { MP_WIRE_VERSION, MP_T_MC_PAYMENT, 0, 0 };
    mp_rbuf r;

    mp_r_init(&r, in, 2);
    mp_r_header(&r, MP_T_MC_PAYMENT);
    MP_ASSERT_OK(mp_r_end(&r));
    mp_r_init(&r, in, 2);
    mp_r_header(&r, MP_T_MC_REPLY);
    CU_ASSERT_EQUAL(r.err, MP_ERR_TYPE);
    in[0] = MP_WIRE_VERSION + 1;
    mp_r_init(&r, in, 2);
    mp_r_header(&r, MP_T_MC_PAYMENT);
    CU_ASSERT_EQUAL(r.err, MP_ERR_VERSION);
    /* a wrong version wins over a wrong type */
    mp_r_init(&r, in, 2);
    mp_r_header(&r, MP_T_MC_REPLY);
    CU_ASSERT_EQUAL(r.err, MP_ERR_VERSION);
    in[0] = 0;
    mp_r_init(&r, in, 2);
    mp_r_header(&r, MP_T_MC_PAYMENT);
    CU_ASSERT_EQUAL(r.err, MP_ERR_VERSION);
    in[0] = MP_WIRE_VERSION;
    mp_r_init(&r, in, 1);
    mp_r_header(&r, MP_T_MC_PAYMENT);
    CU_ASSERT_EQUAL(r.err, MP_ERR_TRUNCATED);

    /* trailing bytes after a complete object */
    mp_r_init(&r, in, 3);
    mp_r_header(&r, MP_T_MC_PAYMENT);
    CU_ASSERT_EQUAL(r.err, MP_OK);
    MP_ASSERT_ST(mp_r_end(&r), MP_ERR_TRAILING);
    CU_ASSERT_EQUAL(r.err, MP_ERR_TRAILING);
    /* mp_r_end reports an earlier error rather than trailing */
    mp_r_init(&r, in, 4);
    mp_r_header(&r, MP_T_SCRIP);
    MP_ASSERT_ST(mp_r_end(&r), MP_ERR_TYPE);
    /* mp_r_fail latches only the first */
    mp_r_init(&r, in, 4);
    mp_r_fail(&r, MP_ERR_EXPIRED);
    mp_r_fail(&r, MP_ERR_FORGED);
    CU_ASSERT_EQUAL(r.err, MP_ERR_EXPIRED);
    CU_ASSERT_EQUAL(mp_r_u8(&r), 0);
    MP_ASSERT_ST(mp_r_end(&r), MP_ERR_EXPIRED);
}

static void test_reader_limits(void)
{
    static uint8_t big[MP_WIRE_MAX + 1];
    mp_rbuf r;
    size_t i;

    memset(big, 0, sizeof big);
    mp_r_init(&r, big, MP_WIRE_MAX);
    CU_ASSERT_EQUAL(r.err, MP_OK);
    for (i = 0; i < MP_WIRE_MAX; i++)
        mp_r_u8(&r);
    MP_ASSERT_OK(mp_r_end(&r));
    mp_r_init(&r, big, MP_WIRE_MAX + 1);
    CU_ASSERT_EQUAL(r.err, MP_ERR_TOO_LARGE);
    CU_ASSERT_EQUAL(mp_r_u8(&r), 0);
    CU_ASSERT_EQUAL(r.off, 0);
    MP_ASSERT_ST(mp_r_end(&r), MP_ERR_TOO_LARGE);
    mp_r_init(&r, big, (size_t)-1);
    CU_ASSERT_EQUAL(r.err, MP_ERR_TOO_LARGE);
    mp_r_init(&r, NULL, 0);
    CU_ASSERT_EQUAL(r.err, MP_ERR_ARG);
    CU_ASSERT_EQUAL(mp_r_u8(&r), 0);
}

static void test_peek_type(void)
{
    static uint8_t big[MP_WIRE_MAX + 1];
    uint8_t in[3] = { MP_WIRE_VERSION, MP_T_RECEIPT, 0 }, type = 0x77;

    MP_ASSERT_OK(mp_wire_peek_type(in, 2, &type));
    CU_ASSERT_EQUAL(type, MP_T_RECEIPT);
    type = 0x77;
    MP_ASSERT_OK(mp_wire_peek_type(in, 3, &type));
    CU_ASSERT_EQUAL(type, MP_T_RECEIPT);
    type = 0x77;
    MP_ASSERT_ST(mp_wire_peek_type(in, 1, &type), MP_ERR_TRUNCATED);
    MP_ASSERT_ST(mp_wire_peek_type(in, 0, &type), MP_ERR_TRUNCATED);
    in[0] = MP_WIRE_VERSION + 1;
    MP_ASSERT_ST(mp_wire_peek_type(in, 3, &type), MP_ERR_VERSION);
    CU_ASSERT_EQUAL(type, 0x77);
    big[0] = MP_WIRE_VERSION;
    big[1] = MP_T_OFFER;
    MP_ASSERT_OK(mp_wire_peek_type(big, MP_WIRE_MAX, &type));
    CU_ASSERT_EQUAL(type, MP_T_OFFER);
    type = 0x77;
    MP_ASSERT_ST(mp_wire_peek_type(big, MP_WIRE_MAX + 1, &type), MP_ERR_TOO_LARGE);
    CU_ASSERT_EQUAL(type, 0x77);
    MP_ASSERT_ST(mp_wire_peek_type(NULL, 2, &type), MP_ERR_ARG);
    MP_ASSERT_ST(mp_wire_peek_type(in, 2, NULL), MP_ERR_ARG);
}

/* Random sequences of fields written and read back; then the same bytes
 * through base64url. */
static void test_wire_random(void)
{
    enum { F_U8, F_U16, F_U32, F_U64, F_BYTES, F_STR8, F_STR16, F_BLOB, F_AMOUNT, F_KINDS };
    uint64_t seed = 0x77697265ULL;
    static uint8_t buf[MP_WIRE_MAX];
    static char text[MP_WIRE_TEXT_MAX + 1];
    static uint8_t back[MP_WIRE_MAX];
    int iter, bad = 0;

    for (iter = 0; iter < 300; iter++) {
        struct { int kind; uint64_t v; char s[64]; size_t n; mp_amount a; } f[40];
        size_t nf = 1 + (size_t)(t_rand(&seed) % 40), i, j, tl = 0, bl = 0;
        mp_wbuf w;
        mp_rbuf r;

        for (i = 0; i < nf; i++) {
            f[i].kind = (int)(t_rand(&seed) % F_KINDS);
            f[i].v = t_rand(&seed);
            f[i].n = (size_t)(t_rand(&seed) % 63);
            for (j = 0; j < f[i].n; j++)
                f[i].s[j] = (char)(f[i].kind == F_BYTES || f[i].kind == F_BLOB
                                   ? t_rand(&seed) : 0x21 + t_rand(&seed) % 94);
            f[i].s[f[i].n] = '\0';
            f[i].a.units = t_rand(&seed) % (MP_AMOUNT_MAX + 1);
            for (j = 0; j < 3; j++)
                f[i].a.cur[j] = (char)('A' + t_rand(&seed) % 26);
            f[i].a.cur[3] = '\0';
        }
        mp_w_init(&w, buf, sizeof buf);
        mp_w_header(&w, MP_T_MC_REPLY);
        for (i = 0; i < nf; i++) {
            switch (f[i].kind) {
            case F_U8: mp_w_u8(&w, (uint8_t)f[i].v); break;
            case F_U16: mp_w_u16(&w, (uint16_t)f[i].v); break;
            case F_U32: mp_w_u32(&w, (uint32_t)f[i].v); break;
            case F_U64: mp_w_u64(&w, f[i].v); break;
            case F_BYTES: mp_w_bytes(&w, f[i].s, f[i].n); break;
            case F_STR8: mp_w_str8(&w, f[i].s); break;
            case F_STR16: mp_w_str16(&w, f[i].s, f[i].n); break;
            case F_BLOB: mp_w_blob16(&w, f[i].s, f[i].n); break;
            default: mp_w_amount(&w, &f[i].a); break;
            }
        }
        if (w.err != MP_OK) {
            bad++;
            continue;
        }
        /* through the text form and back */
        bad += mp_b64url_encode(buf, w.len, text, sizeof text, &tl) != MP_OK;
        bad += mp_b64url_decode(text, tl, back, sizeof back, &bl) != MP_OK;
        bad += bl != w.len || memcmp(back, buf, bl) != 0;

        mp_r_init(&r, back, bl);
        mp_r_header(&r, MP_T_MC_REPLY);
        for (i = 0; i < nf && r.err == MP_OK; i++) {
            char s[64];
            uint8_t raw[64];
            const uint8_t *p;
            size_t n = 0;
            mp_amount a;

            switch (f[i].kind) {
            case F_U8: bad += mp_r_u8(&r) != (uint8_t)f[i].v; break;
            case F_U16: bad += mp_r_u16(&r) != (uint16_t)f[i].v; break;
            case F_U32: bad += mp_r_u32(&r) != (uint32_t)f[i].v; break;
            case F_U64: bad += mp_r_u64(&r) != f[i].v; break;
            case F_BYTES:
                mp_r_bytes(&r, raw, f[i].n);
                bad += memcmp(raw, f[i].s, f[i].n) != 0;
                break;
            case F_STR8:
                mp_r_str8(&r, s, sizeof s - 1, 1);
                bad += strcmp(s, f[i].s) != 0;
                break;
            case F_STR16:
                mp_r_str16(&r, s, sizeof s - 1, &n, 1);
                bad += n != f[i].n || strcmp(s, f[i].s) != 0;
                break;
            case F_BLOB:
                p = mp_r_blob16(&r, sizeof s, &n);
                bad += p == NULL || n != f[i].n || memcmp(p, f[i].s, n) != 0;
                break;
            default:
                mp_r_amount(&r, &a);
                bad += a.units != f[i].a.units || strcmp(a.cur, f[i].a.cur) != 0;
                break;
            }
        }
        bad += mp_r_end(&r) != MP_OK;
    }
    CU_ASSERT_EQUAL(bad, 0);
}

int register_wire_tests(void)
{
    static const struct {
        const char *name;
        CU_TestFunc fn;
    } tests[] = {
        { "base64url RFC 4648 vectors", test_b64_vectors },
        { "base64url rejections", test_b64_reject },
        { "base64url unused bits", test_b64_unused_bits },
        { "base64url limits", test_b64_limits },
        { "base64url random round trips", test_b64_random },
        { "writer encodings", test_writer_encoding },
        { "writer overflow latches", test_writer_overflow },
        { "writer refuses bad fields", test_writer_args },
        { "reader fields and prefixes", test_reader_fields },
        { "reader truncation", test_reader_truncation },
        { "reader text fields", test_reader_text },
        { "reader blob16", test_reader_blob },
        { "reader amount", test_reader_amount },
        { "reader header, trailing, fail", test_reader_header },
        { "reader input limit", test_reader_limits },
        { "peek type", test_peek_type },
        { "random records round trip", test_wire_random },
    };
    CU_pSuite s = CU_add_suite("wire", NULL, NULL);
    size_t i;

    if (s == NULL)
        return -1;
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (CU_add_test(s, tests[i].name, tests[i].fn) == NULL)
            return -1;
    return 0;
}
