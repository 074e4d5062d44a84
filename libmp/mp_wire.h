/*
 * mp_wire.h - the canonical binary encoding and its text form.
 *
 * Every object that crosses HTTP is one binary record (docs/PROTOCOL.md,
 * "Encoding"): a version byte MP_WIRE_VERSION, a type byte, then its
 * fields in a fixed order:
 *   u8 / u16 / u32 / u64   unsigned, big-endian
 *   str8                   u8 length, then that many bytes of visible ASCII
 *                          (0x21..0x7e)
 *   str16                  u16 length, then visible ASCII
 *   bytes32                32 raw bytes
 *   blob16                 u16 length, then raw bytes
 *   amount                 3 bytes currency A-Z, then u64 units
 * No field is optional unless its type's layout says so with a u8 flag.
 * There is exactly one encoding of each object; decoders reject anything
 * else (trailing bytes, truncation, out-of-range values).
 *
 * On HTTP the record is carried as unpadded base64url (RFC 4648 section 5),
 * which is a valid token68 for Authorization and safe in any header.
 *
 * The writer and reader below never touch memory outside their buffer;
 * they latch the first error so a sequence of puts/gets can be checked
 * once at the end.
 */
#ifndef MP_WIRE_H
#define MP_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include "mp_status.h"
#include "mp_amount.h"

#define MP_WIRE_VERSION 0x01

/* Hard limit for any one encoded object, and for its text form. */
#define MP_WIRE_MAX      6144
#define MP_WIRE_TEXT_MAX 8192   /* >= 4 * ceil(MP_WIRE_MAX / 3) */

/* Object types (the second byte). */
enum {
    MP_T_SCRIP        = 0x01,
    MP_T_MC_PAYMENT   = 0x02,
    MP_T_MC_REPLY     = 0x03,
    MP_T_PW_CERT      = 0x10,
    MP_T_PW_COMMIT    = 0x11,
    MP_T_PW_PAYMENT   = 0x12,
    MP_T_PW_REDEEM    = 0x13,
    MP_T_PW_TRACK     = 0x14,   /* vendor storage only, never on HTTP */
    MP_T_RECEIPT      = 0x20,
    MP_T_OFFER        = 0x30
};

/* ---- base64url text form ------------------------------------------------ */

/* Length of the unpadded base64url text of n bytes (no NUL). */
size_t mp_b64url_len(size_t n);

/* Encodes; writes a NUL after the text. MP_ERR_BUFFER when cap is less
 * than mp_b64url_len(n) + 1. */
mp_status mp_b64url_encode(const uint8_t *in, size_t n, char *out, size_t cap,
                           size_t *out_len);

/* Decodes canonical unpadded base64url: rejects '=', '+', '/', white
 * space, any other byte, an impossible length (len % 4 == 1) and non-zero
 * unused bits (MP_ERR_BASE64). MP_ERR_TOO_LARGE when len >
 * MP_WIRE_TEXT_MAX, MP_ERR_BUFFER when cap is too small. */
mp_status mp_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap,
                           size_t *out_len);

/* Reads the version and type of an encoded object without decoding the
 * rest: MP_ERR_TRUNCATED, MP_ERR_VERSION. */
mp_status mp_wire_peek_type(const uint8_t *in, size_t len, uint8_t *type);

/* ---- writer ------------------------------------------------------------ */

typedef struct {
    uint8_t  *buf;
    size_t    cap;
    size_t    len;
    mp_status err;   /* first error, MP_OK while none */
} mp_wbuf;

void mp_w_init(mp_wbuf *w, uint8_t *buf, size_t cap);
void mp_w_u8(mp_wbuf *w, uint8_t v);
void mp_w_u16(mp_wbuf *w, uint16_t v);
void mp_w_u32(mp_wbuf *w, uint32_t v);
void mp_w_u64(mp_wbuf *w, uint64_t v);
void mp_w_bytes(mp_wbuf *w, const void *p, size_t n);   /* raw, no length */
void mp_w_str8(mp_wbuf *w, const char *s);               /* NUL-terminated */
void mp_w_str16(mp_wbuf *w, const char *s, size_t n);
void mp_w_blob16(mp_wbuf *w, const void *p, size_t n);
void mp_w_amount(mp_wbuf *w, const mp_amount *a);
/* Version byte and type byte. */
void mp_w_header(mp_wbuf *w, uint8_t type);

/* ---- reader ------------------------------------------------------------ */

typedef struct {
    const uint8_t *buf;
    size_t         len;
    size_t         off;
    mp_status      err;
} mp_rbuf;

void mp_r_init(mp_rbuf *r, const uint8_t *buf, size_t len);
uint8_t  mp_r_u8(mp_rbuf *r);
uint16_t mp_r_u16(mp_rbuf *r);
uint32_t mp_r_u32(mp_rbuf *r);
uint64_t mp_r_u64(mp_rbuf *r);
void mp_r_bytes(mp_rbuf *r, void *out, size_t n);
/* Reads a str8 into out (cap bytes including the NUL); MP_ERR_TOO_LARGE
 * when it is longer than max (max < cap), MP_ERR_CHARSET for bytes outside
 * 0x21..0x7e, MP_ERR_MALFORMED for an empty string when !allow_empty. */
void mp_r_str8(mp_rbuf *r, char *out, size_t max, int allow_empty);
/* Reads a str16; *n gets its length; out is NUL-terminated. */
void mp_r_str16(mp_rbuf *r, char *out, size_t max, size_t *n, int allow_empty);
/* Reads a blob16 of at most max bytes. Returns a pointer into the input
 * (valid while the input is) and its length in *n; NULL on error. */
const uint8_t *mp_r_blob16(mp_rbuf *r, size_t max, size_t *n);
void mp_r_amount(mp_rbuf *r, mp_amount *a);
/* Checks version and type (MP_ERR_VERSION, MP_ERR_TYPE). */
void mp_r_header(mp_rbuf *r, uint8_t type);
/* Latches MP_ERR_TRAILING when input is left; returns the latched status. */
mp_status mp_r_end(mp_rbuf *r);
/* Latches e if no error is latched yet. */
void mp_r_fail(mp_rbuf *r, mp_status e);

#endif
