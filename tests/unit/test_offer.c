/*
 * test_offer.c - the 402 offer and the receipt: round trips, the
 * invariants both encoder and decoder enforce, and receipt checking.
 */
#include <string.h>
#include "tests.h"

#define NOW     1700000000ULL
#define VENDOR  "shop.example"
#define TARGET  "/article/1"

static char big_text[MP_TARGET_MAX + 8];   /* 'x' bytes, for over-long fields */

static mp_amount usd(uint64_t units)
{
    mp_amount a;

    a.units = units;
    memcpy(a.cur, "USD", 4);
    return a;
}

static void put64(uint8_t *b, uint64_t v)
{
    int i;

    for (i = 7; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}

static int amount_eq(const mp_amount *a, const mp_amount *b)
{
    return a->units == b->units && memcmp(a->cur, b->cur, 4) == 0;
}

typedef mp_status (*dec_fn)(const uint8_t *in, size_t len);

/* Every proper prefix TRUNCATED, an extra byte TRAILING, other version
 * VERSION, other type TYPE. */
static void check_structure(dec_fn dec, const uint8_t *enc, size_t len)
{
    static uint8_t buf[MP_WIRE_MAX];
    size_t i, bad = 0;

    CU_ASSERT_FATAL(len + 1 <= sizeof buf);
    MP_ASSERT_OK(dec(enc, len));
    for (i = 0; i < len; i++)
        if (dec(enc, i) != MP_ERR_TRUNCATED) {
            if (bad++ == 0)
                fprintf(stderr, "\n  prefix of %zu bytes not TRUNCATED\n", i);
        }
    CU_ASSERT_EQUAL(bad, 0);
    memcpy(buf, enc, len);
    buf[len] = 0;
    MP_ASSERT_ST(dec(buf, len + 1), MP_ERR_TRAILING);
    buf[0] = 0x02;
    MP_ASSERT_ST(dec(buf, len), MP_ERR_VERSION);
    buf[0] = MP_WIRE_VERSION;
    buf[1] = MP_T_SCRIP;
    MP_ASSERT_ST(dec(buf, len), MP_ERR_TYPE);
}

/* ---- offer ------------------------------------------------------------------ */

static mp_offer mk_offer(void)
{
    mp_offer o;

    memset(&o, 0, sizeof o);
    strcpy(o.vendor, VENDOR);
    strcpy(o.method, "GET");
    strcpy(o.target, "/article/1?lang=en");
    o.target_len = strlen(o.target);
    o.price = usd(500);
    o.schemes = MP_SCHEME_MILLICENT | MP_SCHEME_PAYWORD;
    o.pw_unit = usd(100);
    strcpy(o.broker_url, "https://broker.example/mp");
    o.receipt_window = 600;
    o.expiry = NOW + 3600;
    return o;
}

static int offer_eq(const mp_offer *a, const mp_offer *b)
{
    return strcmp(a->vendor, b->vendor) == 0 && strcmp(a->method, b->method) == 0
        && a->target_len == b->target_len && memcmp(a->target, b->target, a->target_len) == 0
        && amount_eq(&a->price, &b->price) && a->schemes == b->schemes
        && amount_eq(&a->pw_unit, &b->pw_unit) && strcmp(a->broker_url, b->broker_url) == 0
        && a->receipt_window == b->receipt_window && a->expiry == b->expiry;
}

static mp_status dec_offer(const uint8_t *in, size_t len)
{
    static mp_offer o;
    return mp_offer_decode(in, len, &o);
}

static void test_offer_roundtrip(void)
{
    static uint8_t enc[MP_WIRE_MAX], enc2[MP_WIRE_MAX];
    static mp_offer o, d;
    size_t n = 0, n2 = 0;

    o = mk_offer();
    MP_ASSERT_OK(mp_offer_encode(&o, enc, sizeof enc, &n));
    CU_ASSERT_EQUAL(n, 2 + 13 + 4 + 2 + 18 + 11 + 1 + 11 + 2 + 25 + 4 + 8);
    CU_ASSERT_EQUAL(enc[0], MP_WIRE_VERSION);
    CU_ASSERT_EQUAL(enc[1], MP_T_OFFER);
    MP_ASSERT_OK(mp_offer_decode(enc, n, &d));
    CU_ASSERT(offer_eq(&o, &d));
    CU_ASSERT_EQUAL(d.target[d.target_len], '\0');
    MP_ASSERT_OK(mp_offer_encode(&d, enc2, sizeof enc2, &n2));
    CU_ASSERT(n == n2 && memcmp(enc, enc2, n) == 0);
    check_structure(dec_offer, enc, n);

    /* one scheme, no broker, no receipts, price equal to the unit */
    o = mk_offer();
    o.schemes = MP_SCHEME_PAYWORD;
    o.broker_url[0] = '\0';
    o.receipt_window = 0;
    o.price = usd(100);
    MP_ASSERT_OK(mp_offer_encode(&o, enc, sizeof enc, &n));
    MP_ASSERT_OK(mp_offer_decode(enc, n, &d));
    CU_ASSERT(offer_eq(&o, &d));
    o.schemes = MP_SCHEME_MILLICENT;
    o.pw_unit = usd(0);             /* no PayWord: no unit */
    MP_ASSERT_OK(mp_offer_encode(&o, enc, sizeof enc, &n));
    MP_ASSERT_OK(mp_offer_decode(enc, n, &d));
    CU_ASSERT(offer_eq(&o, &d));

    /* every text field at its limit */
    o = mk_offer();
    memset(o.vendor, 'v', MP_NAME_MAX); o.vendor[MP_NAME_MAX] = '\0';
    memset(o.method, 'M', MP_METHOD_MAX); o.method[MP_METHOD_MAX] = '\0';
    memset(o.target, 't', MP_TARGET_MAX); o.target[0] = '/';
    o.target_len = MP_TARGET_MAX;
    memset(o.broker_url, 'u', MP_URL_MAX); o.broker_url[MP_URL_MAX] = '\0';
    o.price = usd(MP_AMOUNT_MAX);
    o.pw_unit = usd(1);
    o.receipt_window = UINT32_MAX;
    o.expiry = UINT64_MAX;
    MP_ASSERT_OK(mp_offer_encode(&o, enc, sizeof enc, &n));
    CU_ASSERT_EQUAL(n, 2 + 65 + 17 + 4098 + 11 + 1 + 11 + 514 + 4 + 8);
    MP_ASSERT_OK(mp_offer_decode(enc, n, &d));
    CU_ASSERT(offer_eq(&o, &d));
}

static void test_offer_encode_rejects(void)
{
    static uint8_t enc[MP_WIRE_MAX], keep[MP_WIRE_MAX];
    static mp_offer o, b;
    size_t n = 55;

    o = mk_offer();
    memset(keep, 0x42, sizeof keep);
    memcpy(enc, keep, sizeof enc);
#define REJECT(stmt) do { b = o; stmt; \
        MP_ASSERT_ST(mp_offer_encode(&b, enc, sizeof enc, &n), MP_ERR_ARG); } while (0)
    REJECT(b.price = usd(0));
    REJECT(b.pw_unit = usd(0));
    REJECT(b.price = usd(550));                      /* not a multiple of 100 */
    REJECT(b.price = usd(50));
    REJECT(memcpy(b.pw_unit.cur, "EUR", 4));
    REJECT(memcpy(b.price.cur, "usd", 4));
    REJECT(b.price = usd(MP_AMOUNT_MAX + 100));
    REJECT(b.schemes = 0);
    REJECT(b.schemes = 0x04);
    REJECT(b.schemes = 0x07);
    REJECT(b.schemes = 0x80 | MP_SCHEME_MILLICENT);
    REJECT(b.schemes = MP_SCHEME_MILLICENT);         /* unit without PayWord */
    REJECT(b.schemes = MP_SCHEME_MILLICENT; memcpy(b.pw_unit.cur, "EUR", 4); b.pw_unit.units = 0);
    REJECT(b.target_len = 0);
    REJECT(strcpy(b.target, "article/1"); b.target_len = 9);
    REJECT(strcpy(b.target, "*"); b.target_len = 1);
    REJECT(strcpy(b.target, "/a b"); b.target_len = 4);
    REJECT(b.target_len = MP_TARGET_MAX + 1);
    REJECT(b.vendor[0] = '\0');
    REJECT(memset(b.vendor, 'v', sizeof b.vendor));
    REJECT(b.vendor[3] = '\t');
    REJECT(b.method[0] = '\0');
    REJECT(memset(b.method, 'M', sizeof b.method));
    REJECT(memset(b.broker_url, 'u', sizeof b.broker_url));
    REJECT(b.broker_url[4] = ' ');
#undef REJECT
    MP_ASSERT_ST(mp_offer_encode(NULL, enc, sizeof enc, &n), MP_ERR_ARG);
    MP_ASSERT_ST(mp_offer_encode(&o, enc, 30, &n), MP_ERR_BUFFER);
    CU_ASSERT(memcmp(enc, keep, sizeof enc) == 0);
    CU_ASSERT_EQUAL(n, 55);
}

/* A raw offer record, bypassing the encoder's checks. */
typedef struct {
    const char *vendor; size_t vlen;
    const char *method; size_t mlen;
    const char *target; size_t tlen;
    const char *pcur; uint64_t punits;
    uint8_t schemes;
    const char *ucur; uint64_t uunits;
    const char *url; size_t ulen;
} raw_offer;

static raw_offer raw_default(void)
{
    raw_offer f;

    f.vendor = VENDOR; f.vlen = strlen(VENDOR);
    f.method = "GET"; f.mlen = 3;
    f.target = TARGET; f.tlen = strlen(TARGET);
    f.pcur = "USD"; f.punits = 500;
    f.schemes = 3;
    f.ucur = "USD"; f.uunits = 100;
    f.url = ""; f.ulen = 0;
    return f;
}

static mp_status raw_offer_dec(const raw_offer *f)
{
    static uint8_t buf[MP_WIRE_MAX];
    mp_wbuf w;

    mp_w_init(&w, buf, sizeof buf);
    mp_w_header(&w, MP_T_OFFER);
    mp_w_u8(&w, (uint8_t)f->vlen);  mp_w_bytes(&w, f->vendor, f->vlen);
    mp_w_u8(&w, (uint8_t)f->mlen);  mp_w_bytes(&w, f->method, f->mlen);
    mp_w_u16(&w, (uint16_t)f->tlen); mp_w_bytes(&w, f->target, f->tlen);
    mp_w_bytes(&w, f->pcur, 3);     mp_w_u64(&w, f->punits);
    mp_w_u8(&w, f->schemes);
    mp_w_bytes(&w, f->ucur, 3);     mp_w_u64(&w, f->uunits);
    mp_w_u16(&w, (uint16_t)f->ulen); mp_w_bytes(&w, f->url, f->ulen);
    mp_w_u32(&w, 600);
    mp_w_u64(&w, NOW);
    CU_ASSERT_EQUAL(w.err, MP_OK);
    return dec_offer(buf, w.len);
}

static void test_offer_decode_rejects(void)
{
    raw_offer f;

    f = raw_default();
    MP_ASSERT_OK(raw_offer_dec(&f));
    /* invariants */
    f = raw_default(); f.punits = 550;
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_MALFORMED);
    f = raw_default(); f.punits = 0;
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_MALFORMED);
    f = raw_default(); f.uunits = 0;
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_MALFORMED);
    f = raw_default(); f.schemes = 0;
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_MALFORMED);
    f = raw_default(); f.schemes = 4;
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_MALFORMED);
    f = raw_default(); f.schemes = 0xff;
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_MALFORMED);
    f = raw_default(); f.target = "article/1"; f.tlen = 9;
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_MALFORMED);
    f = raw_default(); f.ucur = "EUR";
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_CURRENCY);
    f = raw_default(); f.pcur = "EU1";
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_CURRENCY);
    f = raw_default(); f.punits = MP_AMOUNT_MAX + 1;
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_OVERFLOW);
    /* fields */
    f = raw_default(); f.vendor = big_text; f.vlen = MP_NAME_MAX + 1;
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_TOO_LARGE);
    f = raw_default(); f.vlen = 0;
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_MALFORMED);
    f = raw_default(); f.method = big_text; f.mlen = MP_METHOD_MAX;
    MP_ASSERT_OK(raw_offer_dec(&f));
    f.mlen = MP_METHOD_MAX + 1;
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_TOO_LARGE);
    f = raw_default(); f.mlen = 0;
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_MALFORMED);
    f = raw_default(); f.method = "G T"; f.mlen = 3;
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_CHARSET);
    f = raw_default(); f.tlen = 0;
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_MALFORMED);
    big_text[0] = '/';
    f = raw_default(); f.target = big_text; f.tlen = MP_TARGET_MAX;
    MP_ASSERT_OK(raw_offer_dec(&f));
    f.tlen = MP_TARGET_MAX + 1;
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_TOO_LARGE);
    big_text[0] = 'x';
    f = raw_default(); f.target = "/a\x01"; f.tlen = 3;
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_CHARSET);
    f = raw_default(); f.url = big_text; f.ulen = MP_URL_MAX;
    MP_ASSERT_OK(raw_offer_dec(&f));
    f.ulen = MP_URL_MAX + 1;
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_TOO_LARGE);
    f = raw_default(); f.url = "https://b\xc3\xa9"; f.ulen = 11;
    MP_ASSERT_ST(raw_offer_dec(&f), MP_ERR_CHARSET);
    MP_ASSERT_ST(mp_offer_decode((const uint8_t *)"\x01\x30", 2, NULL), MP_ERR_ARG);
}

/* ---- receipt ---------------------------------------------------------------- */

static mp_mac *mk_key(uint8_t seed, uint8_t raw[32])
{
    mp_mac *m = NULL;
    size_t i;

    for (i = 0; i < 32; i++)
        raw[i] = (uint8_t)(seed + 13 * i);
    return mp_mac_new(raw, 32, &m) == MP_OK ? m : NULL;
}

static mp_receipt mk_receipt(uint8_t scheme)
{
    mp_receipt r;
    size_t i;

    memset(&r, 0, sizeof r);
    strcpy(r.vendor, VENDOR);
    strcpy(r.target, TARGET);
    r.target_len = strlen(TARGET);
    r.scheme = scheme;
    if (scheme == MP_SCHEME_MILLICENT)
        r.customer_id = 0x0001000000000042ULL;
    else
        for (i = 0; i < 32; i++)
            r.commit_id[i] = (uint8_t)(0xc0 ^ i);
    r.price = usd(500);
    r.issued = NOW;
    r.expiry = NOW + 600;
    return r;
}

static int receipt_eq(const mp_receipt *a, const mp_receipt *b)
{
    return strcmp(a->vendor, b->vendor) == 0 && a->target_len == b->target_len
        && memcmp(a->target, b->target, a->target_len) == 0 && a->scheme == b->scheme
        && a->customer_id == b->customer_id && memcmp(a->commit_id, b->commit_id, 32) == 0
        && amount_eq(&a->price, &b->price) && a->issued == b->issued
        && a->expiry == b->expiry && memcmp(a->mac, b->mac, 32) == 0;
}

static mp_status dec_receipt(const uint8_t *in, size_t len)
{
    static mp_receipt r;
    return mp_receipt_decode(in, len, &r);
}

static void test_receipt_roundtrip(void)
{
    static uint8_t enc[MP_WIRE_MAX], enc2[MP_WIRE_MAX];
    static mp_receipt r, d;
    uint8_t raw[32], want[32];
    mp_mac *key = mk_key(1, raw);
    size_t n = 0, n2 = 0;
    uint8_t scheme;

    CU_ASSERT_FATAL(key != NULL);
    for (scheme = 1; scheme <= 2; scheme++) {
        r = mk_receipt(scheme);
        MP_ASSERT_OK(mp_receipt_stamp(key, &r));
        MP_ASSERT_OK(mp_receipt_encode(&r, enc, sizeof enc, &n));
        CU_ASSERT_EQUAL(n, 2 + 13 + 12 + 1 + (scheme == 1 ? 8 : 32) + 11 + 16 + 32);
        CU_ASSERT_EQUAL(enc[1], MP_T_RECEIPT);
        /* mac = HMAC(receipt key, record before the mac) */
        MP_ASSERT_OK(mp_hmac(raw, sizeof raw, enc, n - 32, want));
        CU_ASSERT(memcmp(want, r.mac, 32) == 0);
        MP_ASSERT_OK(mp_receipt_decode(enc, n, &d));
        CU_ASSERT(receipt_eq(&r, &d));
        MP_ASSERT_OK(mp_receipt_encode(&d, enc2, sizeof enc2, &n2));
        CU_ASSERT(n == n2 && memcmp(enc, enc2, n) == 0);
        MP_ASSERT_OK(mp_receipt_check(key, &d, VENDOR, TARGET, strlen(TARGET), NOW));
        check_structure(dec_receipt, enc, n);
    }
    /* a Millicent receipt ignores a stray PayWord payer: it is not on the wire */
    r = mk_receipt(MP_SCHEME_MILLICENT);
    MP_ASSERT_OK(mp_receipt_stamp(key, &r));
    d = r;
    d.commit_id[0] = 1;
    MP_ASSERT_OK(mp_receipt_check(key, &d, VENDOR, TARGET, strlen(TARGET), NOW));

    /* longest target */
    memset(r.target, 't', MP_TARGET_MAX);
    r.target[0] = '/';
    r.target_len = MP_TARGET_MAX;
    MP_ASSERT_OK(mp_receipt_stamp(key, &r));
    MP_ASSERT_OK(mp_receipt_encode(&r, enc, sizeof enc, &n));
    MP_ASSERT_OK(mp_receipt_decode(enc, n, &d));
    CU_ASSERT(receipt_eq(&r, &d));
    MP_ASSERT_OK(mp_receipt_check(key, &d, VENDOR, r.target, MP_TARGET_MAX, NOW));
    mp_mac_free(key);
}

static void test_receipt_check(void)
{
    static mp_receipt r, f;
    uint8_t raw[32];
    mp_mac *key = mk_key(1, raw), *other = mk_key(2, raw);
    size_t tl = strlen(TARGET);

    CU_ASSERT_FATAL(key != NULL && other != NULL);
    r = mk_receipt(MP_SCHEME_MILLICENT);
    MP_ASSERT_OK(mp_receipt_stamp(key, &r));
    MP_ASSERT_OK(mp_receipt_check(key, &r, VENDOR, TARGET, tl, NOW));
    MP_ASSERT_OK(mp_receipt_check(key, &r, VENDOR, TARGET, tl, NOW + 599));
    MP_ASSERT_OK(mp_receipt_check(key, &r, VENDOR, TARGET, tl, 0));

    MP_ASSERT_ST(mp_receipt_check(key, &r, "other.example", TARGET, tl, NOW), MP_ERR_WRONG_VENDOR);
    MP_ASSERT_ST(mp_receipt_check(key, &r, "shop.exampl", TARGET, tl, NOW), MP_ERR_WRONG_VENDOR);
    MP_ASSERT_ST(mp_receipt_check(key, &r, "shop.example.", TARGET, tl, NOW), MP_ERR_WRONG_VENDOR);
    MP_ASSERT_ST(mp_receipt_check(key, &r, VENDOR, "/article/2", tl, NOW), MP_ERR_WRONG_TARGET);
    MP_ASSERT_ST(mp_receipt_check(key, &r, VENDOR, "/article/10", tl + 1, NOW), MP_ERR_WRONG_TARGET);
    MP_ASSERT_ST(mp_receipt_check(key, &r, VENDOR, TARGET, tl - 1, NOW), MP_ERR_WRONG_TARGET);
    MP_ASSERT_ST(mp_receipt_check(key, &r, VENDOR, "", 0, NOW), MP_ERR_WRONG_TARGET);
    MP_ASSERT_ST(mp_receipt_check(key, &r, VENDOR, TARGET, tl, NOW + 600), MP_ERR_EXPIRED);
    MP_ASSERT_ST(mp_receipt_check(key, &r, VENDOR, TARGET, tl, UINT64_MAX), MP_ERR_EXPIRED);

    /* forged: any field changed after stamping, or another key */
    MP_ASSERT_ST(mp_receipt_check(other, &r, VENDOR, TARGET, tl, NOW), MP_ERR_FORGED);
    f = r; f.mac[31] ^= 1;
    MP_ASSERT_ST(mp_receipt_check(key, &f, VENDOR, TARGET, tl, NOW), MP_ERR_FORGED);
    f = r; f.price.units = 1;
    MP_ASSERT_ST(mp_receipt_check(key, &f, VENDOR, TARGET, tl, NOW), MP_ERR_FORGED);
    f = r; f.customer_id++;
    MP_ASSERT_ST(mp_receipt_check(key, &f, VENDOR, TARGET, tl, NOW), MP_ERR_FORGED);
    f = r; f.expiry += 86400;
    MP_ASSERT_ST(mp_receipt_check(key, &f, VENDOR, TARGET, tl, NOW + 700), MP_ERR_FORGED);
    f = r; f.issued--;
    MP_ASSERT_ST(mp_receipt_check(key, &f, VENDOR, TARGET, tl, NOW), MP_ERR_FORGED);
    f = r; f.scheme = MP_SCHEME_PAYWORD;
    MP_ASSERT_ST(mp_receipt_check(key, &f, VENDOR, TARGET, tl, NOW), MP_ERR_FORGED);
    /* the same MAC moved to a receipt for another resource */
    f = r; strcpy(f.target, "/article/2");
    MP_ASSERT_ST(mp_receipt_check(key, &f, VENDOR, "/article/2", tl, NOW), MP_ERR_FORGED);

    /* order: vendor, target, expiry, MAC */
    f = r; f.mac[0] ^= 1;
    MP_ASSERT_ST(mp_receipt_check(key, &f, "x", "/y", 2, NOW + 600), MP_ERR_WRONG_VENDOR);
    MP_ASSERT_ST(mp_receipt_check(key, &f, VENDOR, "/y", 2, NOW + 600), MP_ERR_WRONG_TARGET);
    MP_ASSERT_ST(mp_receipt_check(key, &f, VENDOR, TARGET, tl, NOW + 600), MP_ERR_EXPIRED);
    MP_ASSERT_ST(mp_receipt_check(NULL, &r, VENDOR, TARGET, tl, NOW), MP_ERR_ARG);
    MP_ASSERT_ST(mp_receipt_check(key, &r, NULL, TARGET, tl, NOW), MP_ERR_ARG);
    MP_ASSERT_ST(mp_receipt_check(key, &r, VENDOR, NULL, tl, NOW), MP_ERR_ARG);

    /* PayWord payer */
    r = mk_receipt(MP_SCHEME_PAYWORD);
    MP_ASSERT_OK(mp_receipt_stamp(key, &r));
    MP_ASSERT_OK(mp_receipt_check(key, &r, VENDOR, TARGET, tl, NOW));
    f = r; f.commit_id[17] ^= 4;
    MP_ASSERT_ST(mp_receipt_check(key, &f, VENDOR, TARGET, tl, NOW), MP_ERR_FORGED);
    mp_mac_free(key);
    mp_mac_free(other);
}

static void test_receipt_codec_rejects(void)
{
    static uint8_t enc[MP_WIRE_MAX], keep[MP_WIRE_MAX];
    static mp_receipt r, b, kr;
    uint8_t raw[32];
    mp_mac *key = mk_key(1, raw);
    size_t n = 0, n2 = 9, at;

    CU_ASSERT_FATAL(key != NULL);
    r = mk_receipt(MP_SCHEME_MILLICENT);
    MP_ASSERT_OK(mp_receipt_stamp(key, &r));

    /* encoder and stamp refuse what the decoder would; r->mac untouched */
    memset(keep, 0x24, sizeof keep);
    memcpy(enc, keep, sizeof enc);
#define REJECT(stmt) do { b = r; stmt; kr = b; \
        MP_ASSERT_ST(mp_receipt_encode(&b, enc, sizeof enc, &n2), MP_ERR_ARG); \
        MP_ASSERT_ST(mp_receipt_stamp(key, &b), MP_ERR_ARG); \
        CU_ASSERT(memcmp(&b, &kr, sizeof b) == 0); } while (0)
    REJECT(b.scheme = 0);
    REJECT(b.scheme = 3);
    REJECT(b.expiry = b.issued);
    REJECT(b.expiry = b.issued - 1);
    REJECT(b.target_len = 0);
    REJECT(b.target_len = MP_TARGET_MAX + 1);
    REJECT(b.target[1] = '\n');
    REJECT(b.vendor[0] = '\0');
    REJECT(memset(b.vendor, 'v', sizeof b.vendor));
    REJECT(memcpy(b.price.cur, "U$D", 4));
    REJECT(b.price.units = MP_AMOUNT_MAX + 1);
#undef REJECT
    MP_ASSERT_ST(mp_receipt_encode(&r, enc, 40, &n2), MP_ERR_BUFFER);
    CU_ASSERT(memcmp(enc, keep, sizeof enc) == 0);
    CU_ASSERT_EQUAL(n2, 9);

    /* decoder: patch a valid record */
    MP_ASSERT_OK(mp_receipt_encode(&r, enc, sizeof enc, &n));
    at = 2 + 1 + strlen(VENDOR) + 2 + strlen(TARGET);   /* scheme byte */
    CU_ASSERT_EQUAL(enc[at], MP_SCHEME_MILLICENT);
    enc[at] = 0;
    MP_ASSERT_ST(dec_receipt(enc, n), MP_ERR_MALFORMED);
    enc[at] = 3;
    MP_ASSERT_ST(dec_receipt(enc, n), MP_ERR_MALFORMED);
    enc[at] = MP_SCHEME_PAYWORD;     /* the other scheme's layout does not fit */
    CU_ASSERT(dec_receipt(enc, n) != MP_OK);
    enc[at] = MP_SCHEME_MILLICENT;
    at += 1 + 8 + 11;                 /* issued */
    put64(enc + at + 8, NOW);        /* expiry == issued */
    MP_ASSERT_ST(dec_receipt(enc, n), MP_ERR_MALFORMED);
    put64(enc + at + 8, NOW - 1);
    MP_ASSERT_ST(dec_receipt(enc, n), MP_ERR_MALFORMED);
    put64(enc + at + 8, NOW + 1);
    MP_ASSERT_OK(dec_receipt(enc, n));
    enc[2 + 1 + strlen(VENDOR) + 2] = '?';   /* target no longer starts with '/' */
    MP_ASSERT_OK(dec_receipt(enc, n));
    enc[2 + 1 + strlen(VENDOR) + 2] = 0x7f;
    MP_ASSERT_ST(dec_receipt(enc, n), MP_ERR_CHARSET);
    enc[2 + 1 + strlen(VENDOR) + 1] = 0;      /* target length low byte: empty */
    MP_ASSERT_ST(dec_receipt(enc, n), MP_ERR_MALFORMED);
    enc[2 + 1 + strlen(VENDOR)] = 0x10;       /* length 4096 + 0 */
    enc[2 + 1 + strlen(VENDOR) + 1] = 0x01;   /* 4097 */
    MP_ASSERT_ST(dec_receipt(enc, n), MP_ERR_TOO_LARGE);
    MP_ASSERT_ST(mp_receipt_decode(enc, n, NULL), MP_ERR_ARG);
    mp_mac_free(key);
}

int register_offer_tests(void)
{
    CU_pSuite s = CU_add_suite("offer", NULL, NULL);

    memset(big_text, 'x', sizeof big_text);
    if (s == NULL
        || !CU_add_test(s, "offer round trip and structure", test_offer_roundtrip)
        || !CU_add_test(s, "offer encoder refuses invalid", test_offer_encode_rejects)
        || !CU_add_test(s, "offer decoder refuses invalid", test_offer_decode_rejects)
        || !CU_add_test(s, "receipt round trip and MAC", test_receipt_roundtrip)
        || !CU_add_test(s, "receipt check", test_receipt_check)
        || !CU_add_test(s, "receipt codec rejections", test_receipt_codec_rejects))
        return -1;
    return 0;
}
