/*
 * test_millicent.c - Millicent scrip, payment and reply: encodings, the
 * MAC definitions (recomputed here independently with mp_hmac), the
 * issuer, and every rejection path with its exact status.
 *
 * All secrets are fixed byte patterns so runs are reproducible.
 */
#include <string.h>
#include "tests.h"

#define NOW        1700000000ULL
#define EXPIRY     (NOW + 3600)
#define SER(s, n)  (((uint64_t)(s) << 48) | (uint64_t)(n))
#define CUST       SER(1, 42)
#define VENDOR     "shop.example"

/* ---- fixtures ------------------------------------------------------------- */

static void pattern(uint8_t *b, size_t n, uint8_t seed)
{
    size_t i;

    for (i = 0; i < n; i++)
        b[i] = (uint8_t)(seed + 7 * i);
}

static void scrip_secret(uint16_t series, uint8_t out[32])
{
    pattern(out, 32, (uint8_t)(0x10 + series));
}

static void customer_master(uint16_t series, uint8_t out[32])
{
    pattern(out, 32, (uint8_t)(0x80 + series));
}

/* An issuer holding scrip series 1 and customer series 1. */
static mp_mc_issuer *mk_issuer(const char *name)
{
    mp_mc_issuer *iss = NULL;
    uint8_t k[32];

    if (mp_mc_issuer_new(name, &iss) != MP_OK)
        return NULL;
    scrip_secret(1, k);
    if (mp_mc_issuer_add_scrip_secret(iss, 1, k, sizeof k, 0) != MP_OK)
        goto fail;
    customer_master(1, k);
    if (mp_mc_issuer_add_customer_secret(iss, 1, k, sizeof k) != MP_OK)
        goto fail;
    return iss;
fail:
    mp_mc_issuer_free(iss);
    return NULL;
}

static mp_mac *mk_mac(void)
{
    mp_mac *m = NULL;
    uint8_t k[32];

    pattern(k, sizeof k, 0x55);
    return mp_mac_new(k, sizeof k, &m) == MP_OK ? m : NULL;
}

static mp_amount usd(uint64_t units)
{
    mp_amount a;

    a.units = units;
    memcpy(a.cur, "USD", 4);
    return a;
}

static mp_amount cur_amount(const char *cur, uint64_t units)
{
    mp_amount a;

    a.units = units;
    memcpy(a.cur, cur, 4);
    return a;
}

static mp_request mk_req(const char *method, const char *host, const char *target)
{
    mp_request r;

    r.method = method;  r.method_len = strlen(method);
    r.host = host;      r.host_len = strlen(host);
    r.target = target;  r.target_len = strlen(target);
    return r;
}

static int amount_eq(const mp_amount *a, const mp_amount *b)
{
    return a->units == b->units && memcmp(a->cur, b->cur, 4) == 0;
}

static int scrip_eq(const mp_scrip *a, const mp_scrip *b)
{
    return strcmp(a->vendor, b->vendor) == 0 && amount_eq(&a->value, &b->value)
        && a->id == b->id && a->customer_id == b->customer_id && a->expiry == b->expiry
        && strcmp(a->props, b->props) == 0 && memcmp(a->stamp, b->stamp, 32) == 0;
}

static void put64(uint8_t *b, uint64_t v)
{
    int i;

    for (i = 7; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}

/* Decoders behind one signature, for the structural loops. */
typedef mp_status (*dec_fn)(const uint8_t *in, size_t len);

static mp_status dec_scrip(const uint8_t *in, size_t len)
{
    mp_scrip s;
    return mp_scrip_decode(in, len, &s);
}

static mp_status dec_pay(const uint8_t *in, size_t len)
{
    mp_mc_payment p;
    return mp_mc_payment_decode(in, len, &p);
}

static mp_status dec_reply(const uint8_t *in, size_t len)
{
    mp_mc_reply r;
    return mp_mc_reply_decode(in, len, &r);
}

/* Every proper prefix is TRUNCATED, one extra byte is TRAILING, another
 * version is VERSION and another type is TYPE. */
static void check_structure(dec_fn dec, const uint8_t *enc, size_t len)
{
    uint8_t buf[600];
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
    buf[0] = 0x00;
    MP_ASSERT_ST(dec(buf, len), MP_ERR_VERSION);
    buf[0] = MP_WIRE_VERSION;
    buf[1] ^= 0x40;
    MP_ASSERT_ST(dec(buf, len), MP_ERR_TYPE);
}

/* A raw scrip record, bypassing the encoder's checks. */
typedef struct {
    const char *vendor; size_t vlen;
    const char *cur; uint64_t units;
    uint64_t id, cid, expiry;
    const char *props; size_t plen;
} raw_scrip;

static raw_scrip raw_default(void)
{
    raw_scrip f;

    f.vendor = VENDOR; f.vlen = strlen(VENDOR);
    f.cur = "USD"; f.units = 1000;
    f.id = SER(1, 1); f.cid = CUST; f.expiry = EXPIRY;
    f.props = "cat=news"; f.plen = 8;
    return f;
}

static size_t raw_scrip_enc(const raw_scrip *f, uint8_t *buf, size_t cap)
{
    mp_wbuf w;
    uint8_t stamp[32];

    memset(stamp, 0x5a, sizeof stamp);
    mp_w_init(&w, buf, cap);
    mp_w_header(&w, MP_T_SCRIP);
    mp_w_u8(&w, (uint8_t)f->vlen);
    mp_w_bytes(&w, f->vendor, f->vlen);
    mp_w_bytes(&w, f->cur, 3);
    mp_w_u64(&w, f->units);
    mp_w_u64(&w, f->id);
    mp_w_u64(&w, f->cid);
    mp_w_u64(&w, f->expiry);
    mp_w_u8(&w, (uint8_t)f->plen);
    mp_w_bytes(&w, f->props, f->plen);
    mp_w_bytes(&w, stamp, sizeof stamp);
    CU_ASSERT_EQUAL(w.err, MP_OK);
    return w.len;
}

static mp_status raw_scrip_dec(const raw_scrip *f)
{
    uint8_t buf[600];
    size_t n = raw_scrip_enc(f, buf, sizeof buf);
    return dec_scrip(buf, n);
}

/* A minted scrip of value units USD in series 1. */
static mp_scrip mint_usd(mp_mc_issuer *iss, uint64_t units)
{
    mp_scrip s;
    mp_amount v = usd(units);

    memset(&s, 0, sizeof s);
    MP_ASSERT_OK(mp_mc_mint(iss, &v, SER(1, 7), CUST, EXPIRY, "cat=news", &s));
    return s;
}

/* Re-encodes r with a MAC computed from customer master bytes, the way a
 * vendor with the right secret but a wrong implementation would. */
static void remac_reply(mp_mc_reply *r, const uint8_t csec[32])
{
    uint8_t enc[600];
    size_t n = 0;

    MP_ASSERT_OK(mp_mc_reply_encode(r, enc, sizeof enc, &n));
    MP_ASSERT_OK(mp_hmac(csec, 32, enc, n - 32, r->mac));
}

/* ---- scrip record --------------------------------------------------------- */

static void test_scrip_roundtrip(void)
{
    mp_mc_issuer *iss = mk_issuer(VENDOR);
    mp_scrip s, d;
    uint8_t enc[600], enc2[600];
    size_t n = 0, n2 = 0;
    char vendor64[65], props128[129];
    mp_amount v = usd(MP_AMOUNT_MAX);

    CU_ASSERT_FATAL(iss != NULL);
    s = mint_usd(iss, 1000);
    MP_ASSERT_OK(mp_scrip_encode(&s, enc, sizeof enc, &n));
    CU_ASSERT_EQUAL(n, 2 + 1 + 12 + 11 + 24 + 1 + 8 + 32);
    CU_ASSERT_EQUAL(enc[0], MP_WIRE_VERSION);
    CU_ASSERT_EQUAL(enc[1], MP_T_SCRIP);
    MP_ASSERT_OK(mp_scrip_decode(enc, n, &d));
    CU_ASSERT(scrip_eq(&s, &d));
    MP_ASSERT_OK(mp_scrip_encode(&d, enc2, sizeof enc2, &n2));
    CU_ASSERT(n == n2 && memcmp(enc, enc2, n) == 0);
    check_structure(dec_scrip, enc, n);

    /* empty props, and every field at its limit */
    MP_ASSERT_OK(mp_mc_mint(iss, &v, UINT64_MAX >> 16 | SER(1, 0), UINT64_MAX,
                            UINT64_MAX, NULL, &s));
    CU_ASSERT_STRING_EQUAL(s.props, "");
    MP_ASSERT_OK(mp_scrip_encode(&s, enc, sizeof enc, &n));
    MP_ASSERT_OK(mp_scrip_decode(enc, n, &d));
    CU_ASSERT(scrip_eq(&s, &d));
    memset(vendor64, 'v', 64); vendor64[64] = '\0';
    memset(props128, 'p', 128); props128[128] = '\0';
    memcpy(d.vendor, vendor64, 65);
    memcpy(d.props, props128, 129);
    MP_ASSERT_OK(mp_scrip_encode(&d, enc, sizeof enc, &n));
    CU_ASSERT_EQUAL(n, 263);
    MP_ASSERT_OK(mp_scrip_decode(enc, n, &s));
    CU_ASSERT(scrip_eq(&s, &d));
    check_structure(dec_scrip, enc, n);
    mp_mc_issuer_free(iss);
}

static void test_scrip_encode_rejects(void)
{
    mp_mc_issuer *iss = mk_issuer(VENDOR);
    mp_scrip s, bad;
    uint8_t enc[600], keep[600];
    size_t n = 1234;

    CU_ASSERT_FATAL(iss != NULL);
    s = mint_usd(iss, 1000);
    bad = s; bad.vendor[0] = '\0';
    MP_ASSERT_ST(mp_scrip_encode(&bad, enc, sizeof enc, &n), MP_ERR_ARG);
    bad = s; memset(bad.vendor, 'a', sizeof bad.vendor);   /* no NUL */
    MP_ASSERT_ST(mp_scrip_encode(&bad, enc, sizeof enc, &n), MP_ERR_ARG);
    bad = s; bad.vendor[2] = ' ';
    MP_ASSERT_ST(mp_scrip_encode(&bad, enc, sizeof enc, &n), MP_ERR_ARG);
    bad = s; bad.value.units = 0;
    MP_ASSERT_ST(mp_scrip_encode(&bad, enc, sizeof enc, &n), MP_ERR_ARG);
    bad = s; bad.value.units = MP_AMOUNT_MAX + 1;
    MP_ASSERT_ST(mp_scrip_encode(&bad, enc, sizeof enc, &n), MP_ERR_ARG);
    bad = s; memcpy(bad.value.cur, "usd", 4);
    MP_ASSERT_ST(mp_scrip_encode(&bad, enc, sizeof enc, &n), MP_ERR_ARG);
    bad = s; bad.expiry = 0;
    MP_ASSERT_ST(mp_scrip_encode(&bad, enc, sizeof enc, &n), MP_ERR_ARG);
    bad = s; memset(bad.props, 'p', sizeof bad.props);     /* 129, no NUL */
    MP_ASSERT_ST(mp_scrip_encode(&bad, enc, sizeof enc, &n), MP_ERR_ARG);
    bad = s; bad.props[1] = '\x7f';
    MP_ASSERT_ST(mp_scrip_encode(&bad, enc, sizeof enc, &n), MP_ERR_ARG);
    MP_ASSERT_ST(mp_scrip_encode(NULL, enc, sizeof enc, &n), MP_ERR_ARG);
    CU_ASSERT_EQUAL(n, 1234);

    /* too small: buffer and length untouched */
    memset(enc, 0xee, sizeof enc);
    memcpy(keep, enc, sizeof enc);
    MP_ASSERT_ST(mp_scrip_encode(&s, enc, 10, &n), MP_ERR_BUFFER);
    CU_ASSERT_EQUAL(n, 1234);
    CU_ASSERT(memcmp(enc, keep, sizeof enc) == 0);
    mp_mc_issuer_free(iss);
}

static void test_scrip_decode_rejects(void)
{
    raw_scrip f;
    char longv[70], longp[140];
    uint8_t big[MP_WIRE_MAX + 1];
    mp_scrip keep, out;

    memset(longv, 'v', sizeof longv);
    memset(longp, 'p', sizeof longp);
    f = raw_default();
    MP_ASSERT_OK(raw_scrip_dec(&f));
    f = raw_default(); f.vendor = longv; f.vlen = 64;
    MP_ASSERT_OK(raw_scrip_dec(&f));
    f.vlen = 65;
    MP_ASSERT_ST(raw_scrip_dec(&f), MP_ERR_TOO_LARGE);
    f = raw_default(); f.vlen = 0;
    MP_ASSERT_ST(raw_scrip_dec(&f), MP_ERR_MALFORMED);
    f = raw_default(); f.vendor = "shop example"; f.vlen = 12;
    MP_ASSERT_ST(raw_scrip_dec(&f), MP_ERR_CHARSET);
    f = raw_default(); f.vendor = "shop\x80"; f.vlen = 5;
    MP_ASSERT_ST(raw_scrip_dec(&f), MP_ERR_CHARSET);
    f = raw_default(); f.props = longp; f.plen = 128;
    MP_ASSERT_OK(raw_scrip_dec(&f));
    f.plen = 129;
    MP_ASSERT_ST(raw_scrip_dec(&f), MP_ERR_TOO_LARGE);
    f = raw_default(); f.props = "a\x7f"; f.plen = 2;
    MP_ASSERT_ST(raw_scrip_dec(&f), MP_ERR_CHARSET);
    f = raw_default(); f.props = ""; f.plen = 0;
    MP_ASSERT_OK(raw_scrip_dec(&f));
    f = raw_default(); f.units = 0;
    MP_ASSERT_ST(raw_scrip_dec(&f), MP_ERR_MALFORMED);
    f = raw_default(); f.expiry = 0;
    MP_ASSERT_ST(raw_scrip_dec(&f), MP_ERR_MALFORMED);
    f = raw_default(); f.units = MP_AMOUNT_MAX + 1;
    MP_ASSERT_ST(raw_scrip_dec(&f), MP_ERR_OVERFLOW);
    f = raw_default(); f.cur = "Usd";
    MP_ASSERT_ST(raw_scrip_dec(&f), MP_ERR_CURRENCY);

    /* input above the hard limit; output untouched on failure */
    memset(big, 0, sizeof big);
    big[0] = MP_WIRE_VERSION; big[1] = MP_T_SCRIP;
    memset(&keep, 0xab, sizeof keep);
    out = keep;
    MP_ASSERT_ST(mp_scrip_decode(big, sizeof big, &out), MP_ERR_TOO_LARGE);
    CU_ASSERT(memcmp(&out, &keep, sizeof out) == 0);
    MP_ASSERT_ST(mp_scrip_decode(big, 2, NULL), MP_ERR_ARG);
}

/* ---- issuer, minting, checking ------------------------------------------- */

static void test_issuer_setup(void)
{
    mp_mc_issuer *iss = NULL, *keep;
    uint8_t k[MP_SECRET_MAX + 1];
    char name[70];
    uint16_t i;

    pattern(k, sizeof k, 3);
    MP_ASSERT_ST(mp_mc_issuer_new("", &iss), MP_ERR_ARG);
    MP_ASSERT_ST(mp_mc_issuer_new("a b", &iss), MP_ERR_ARG);
    MP_ASSERT_ST(mp_mc_issuer_new(NULL, &iss), MP_ERR_ARG);
    memset(name, 'n', sizeof name);
    name[65] = '\0';
    MP_ASSERT_ST(mp_mc_issuer_new(name, &iss), MP_ERR_ARG);
    CU_ASSERT_PTR_NULL(iss);
    name[64] = '\0';
    MP_ASSERT_OK(mp_mc_issuer_new(name, &iss));
    CU_ASSERT_FATAL(iss != NULL);
    CU_ASSERT_STRING_EQUAL(mp_mc_issuer_name(iss), name);
    mp_mc_issuer_free(iss);

    MP_ASSERT_OK(mp_mc_issuer_new(VENDOR, &iss));
    CU_ASSERT_FATAL(iss != NULL);
    keep = iss;
    MP_ASSERT_ST(mp_mc_issuer_add_scrip_secret(iss, 1, k, 15, 0), MP_ERR_ARG);
    MP_ASSERT_ST(mp_mc_issuer_add_scrip_secret(iss, 1, k, MP_SECRET_MAX + 1, 0), MP_ERR_ARG);
    MP_ASSERT_ST(mp_mc_issuer_add_scrip_secret(iss, 1, NULL, 32, 0), MP_ERR_ARG);
    MP_ASSERT_OK(mp_mc_issuer_add_scrip_secret(iss, 1, k, 16, 0));
    MP_ASSERT_ST(mp_mc_issuer_add_scrip_secret(iss, 1, k, 32, 0), MP_ERR_ARG);
    for (i = 2; i <= MP_MAX_SERIES; i++)
        MP_ASSERT_OK(mp_mc_issuer_add_scrip_secret(iss, i, k, MP_SECRET_MAX, 0));
    MP_ASSERT_ST(mp_mc_issuer_add_scrip_secret(iss, 100, k, 32, 0), MP_ERR_ARG);
    /* removing frees a slot */
    MP_ASSERT_OK(mp_mc_issuer_remove_scrip_secret(iss, 5));
    MP_ASSERT_ST(mp_mc_issuer_remove_scrip_secret(iss, 5), MP_ERR_UNKNOWN_SERIES);
    MP_ASSERT_OK(mp_mc_issuer_add_scrip_secret(iss, 100, k, 32, 0));

    MP_ASSERT_ST(mp_mc_issuer_add_customer_secret(iss, 1, k, 15), MP_ERR_ARG);
    MP_ASSERT_OK(mp_mc_issuer_add_customer_secret(iss, 1, k, 32));
    MP_ASSERT_ST(mp_mc_issuer_add_customer_secret(iss, 1, k, 32), MP_ERR_ARG);
    for (i = 2; i <= MP_MAX_SERIES; i++)
        MP_ASSERT_OK(mp_mc_issuer_add_customer_secret(iss, i, k, 32));
    MP_ASSERT_ST(mp_mc_issuer_add_customer_secret(iss, 99, k, 32), MP_ERR_ARG);
    CU_ASSERT_PTR_EQUAL(iss, keep);
    mp_mc_issuer_free(iss);
    mp_mc_issuer_free(NULL);
}

static void test_mint_and_check(void)
{
    mp_mc_issuer *iss = mk_issuer(VENDOR);
    mp_scrip s, keep;
    uint8_t enc[600], k[32], mac[32];
    size_t n = 0;
    mp_amount v = usd(1000), bad;
    char props[140];

    CU_ASSERT_FATAL(iss != NULL);
    MP_ASSERT_OK(mp_mc_mint(iss, &v, SER(1, 7), CUST, EXPIRY, "cat=news", &s));
    CU_ASSERT_STRING_EQUAL(s.vendor, VENDOR);
    CU_ASSERT(amount_eq(&s.value, &v));
    CU_ASSERT_EQUAL(s.id, SER(1, 7));
    CU_ASSERT_EQUAL(s.customer_id, CUST);
    CU_ASSERT_EQUAL(s.expiry, EXPIRY);
    CU_ASSERT_STRING_EQUAL(s.props, "cat=news");

    /* stamp = HMAC(scrip_secret[1], record before the stamp) */
    MP_ASSERT_OK(mp_scrip_encode(&s, enc, sizeof enc, &n));
    scrip_secret(1, k);
    MP_ASSERT_OK(mp_hmac(k, sizeof k, enc, n - 32, mac));
    CU_ASSERT(memcmp(mac, s.stamp, 32) == 0);
    CU_ASSERT(memcmp(enc + n - 32, s.stamp, 32) == 0);

    MP_ASSERT_OK(mp_mc_check_scrip(iss, &s, NOW));
    MP_ASSERT_OK(mp_mc_check_scrip(iss, &s, EXPIRY - 1));
    MP_ASSERT_OK(mp_mc_check_scrip(iss, &s, 0));

    /* argument errors leave out untouched */
    memset(&keep, 0xcd, sizeof keep);
    s = keep;
    bad = usd(0);
    MP_ASSERT_ST(mp_mc_mint(iss, &bad, SER(1, 7), CUST, EXPIRY, NULL, &s), MP_ERR_ARG);
    bad = usd(MP_AMOUNT_MAX + 1);
    MP_ASSERT_ST(mp_mc_mint(iss, &bad, SER(1, 7), CUST, EXPIRY, NULL, &s), MP_ERR_ARG);
    bad = cur_amount("us1", 5);
    MP_ASSERT_ST(mp_mc_mint(iss, &bad, SER(1, 7), CUST, EXPIRY, NULL, &s), MP_ERR_ARG);
    MP_ASSERT_ST(mp_mc_mint(iss, &v, SER(1, 7), CUST, 0, NULL, &s), MP_ERR_ARG);
    MP_ASSERT_ST(mp_mc_mint(iss, &v, SER(1, 7), CUST, EXPIRY, "a b", &s), MP_ERR_ARG);
    memset(props, 'p', sizeof props);
    props[129] = '\0';
    MP_ASSERT_ST(mp_mc_mint(iss, &v, SER(1, 7), CUST, EXPIRY, props, &s), MP_ERR_ARG);
    MP_ASSERT_ST(mp_mc_mint(iss, &v, SER(2, 7), CUST, EXPIRY, NULL, &s), MP_ERR_UNKNOWN_SERIES);
    MP_ASSERT_ST(mp_mc_mint(NULL, &v, SER(1, 7), CUST, EXPIRY, NULL, &s), MP_ERR_ARG);
    CU_ASSERT(memcmp(&s, &keep, sizeof s) == 0);
    props[128] = '\0';
    MP_ASSERT_OK(mp_mc_mint(iss, &v, SER(1, 7), CUST, EXPIRY, props, &s));
    MP_ASSERT_OK(mp_mc_check_scrip(iss, &s, NOW));
    mp_mc_issuer_free(iss);
}

static void test_check_rejects(void)
{
    mp_mc_issuer *iss = mk_issuer(VENDOR), *other = mk_issuer("other.example");
    mp_scrip s, f, d;
    uint8_t enc[600];
    size_t n = 0;

    CU_ASSERT_FATAL(iss != NULL && other != NULL);
    s = mint_usd(iss, 1000);
    /* same secrets, other name: the name alone decides */
    MP_ASSERT_ST(mp_mc_check_scrip(other, &s, NOW), MP_ERR_WRONG_VENDOR);
    f = s; strcpy(f.vendor, "shop.exampl");
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &f, NOW), MP_ERR_WRONG_VENDOR);
    f = s; strcpy(f.vendor, "shop.example2");
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &f, NOW), MP_ERR_WRONG_VENDOR);

    MP_ASSERT_ST(mp_mc_check_scrip(iss, &s, EXPIRY), MP_ERR_EXPIRED);
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &s, UINT64_MAX), MP_ERR_EXPIRED);

    /* forged: each field changed, re-encoded, decoded, never restamped */
    f = s; f.value.units++;
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &f, NOW), MP_ERR_FORGED);
    MP_ASSERT_OK(mp_scrip_encode(&f, enc, sizeof enc, &n));
    MP_ASSERT_OK(mp_scrip_decode(enc, n, &d));
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &d, NOW), MP_ERR_FORGED);
    f = s; memcpy(f.value.cur, "EUR", 4);
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &f, NOW), MP_ERR_FORGED);
    f = s; f.id = SER(1, 8);
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &f, NOW), MP_ERR_FORGED);
    f = s; f.customer_id ^= 1;
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &f, NOW), MP_ERR_FORGED);
    f = s; f.expiry++;
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &f, NOW), MP_ERR_FORGED);
    f = s; strcpy(f.props, "cat=sport");
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &f, NOW), MP_ERR_FORGED);
    f = s; f.props[0] = '\0';
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &f, NOW), MP_ERR_FORGED);
    f = s; f.stamp[31] ^= 1;
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &f, NOW), MP_ERR_FORGED);

    /* a series this issuer does not hold */
    f = s; f.id = SER(2, 7);
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &f, NOW), MP_ERR_UNKNOWN_SERIES);
    /* order: vendor before expiry before series before stamp */
    MP_ASSERT_ST(mp_mc_check_scrip(other, &f, EXPIRY), MP_ERR_WRONG_VENDOR);
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &f, EXPIRY), MP_ERR_EXPIRED);
    f.stamp[0] ^= 1;
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &f, NOW), MP_ERR_UNKNOWN_SERIES);
    MP_ASSERT_ST(mp_mc_check_scrip(NULL, &s, NOW), MP_ERR_ARG);
    MP_ASSERT_ST(mp_mc_check_scrip(iss, NULL, NOW), MP_ERR_ARG);
    mp_mc_issuer_free(iss);
    mp_mc_issuer_free(other);
}

static void test_rotation(void)
{
    mp_mc_issuer *iss = mk_issuer(VENDOR), *dup = NULL;
    mp_scrip old_s, new_s, late;
    mp_amount v = usd(500);
    uint8_t k[32];

    CU_ASSERT_FATAL(iss != NULL);
    MP_ASSERT_OK(mp_mc_mint(iss, &v, SER(1, 1), CUST, EXPIRY, NULL, &old_s));
    scrip_secret(2, k);
    MP_ASSERT_OK(mp_mc_issuer_add_scrip_secret(iss, 2, k, sizeof k, 0));
    MP_ASSERT_OK(mp_mc_mint(iss, &v, SER(2, 1), CUST, EXPIRY, NULL, &new_s));
    CU_ASSERT(memcmp(old_s.stamp, new_s.stamp, 32) != 0);
    MP_ASSERT_OK(mp_mc_check_scrip(iss, &old_s, NOW));
    MP_ASSERT_OK(mp_mc_check_scrip(iss, &new_s, NOW));

    /* a copy for another thread holds both series, independently */
    MP_ASSERT_OK(mp_mc_issuer_dup(iss, &dup));
    CU_ASSERT_FATAL(dup != NULL);
    MP_ASSERT_OK(mp_mc_issuer_remove_scrip_secret(iss, 1));
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &old_s, NOW), MP_ERR_UNKNOWN_SERIES);
    MP_ASSERT_OK(mp_mc_check_scrip(iss, &new_s, NOW));
    MP_ASSERT_ST(mp_mc_issuer_remove_scrip_secret(iss, 1), MP_ERR_UNKNOWN_SERIES);
    MP_ASSERT_ST(mp_mc_mint(iss, &v, SER(1, 2), CUST, EXPIRY, NULL, &late), MP_ERR_UNKNOWN_SERIES);
    mp_mc_issuer_free(iss);
    CU_ASSERT_STRING_EQUAL(mp_mc_issuer_name(dup), VENDOR);
    MP_ASSERT_OK(mp_mc_check_scrip(dup, &old_s, NOW));
    MP_ASSERT_OK(mp_mc_check_scrip(dup, &new_s, NOW));
    mp_mc_issuer_free(dup);
}

static void test_retired_series(void)
{
    mp_mc_issuer *iss = mk_issuer(VENDOR);
    mp_scrip s;
    mp_amount v = usd(500);
    uint8_t k[32];

    CU_ASSERT_FATAL(iss != NULL);
    scrip_secret(3, k);
    MP_ASSERT_OK(mp_mc_issuer_add_scrip_secret(iss, 3, k, sizeof k, NOW + 10));
    MP_ASSERT_OK(mp_mc_mint(iss, &v, SER(3, 1), CUST, EXPIRY, NULL, &s));
    MP_ASSERT_OK(mp_mc_check_scrip(iss, &s, NOW));
    MP_ASSERT_OK(mp_mc_check_scrip(iss, &s, NOW + 9));
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &s, NOW + 10), MP_ERR_EXPIRED);
    /* forged scrip of a retired series is still reported as retired */
    s.stamp[0] ^= 1;
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &s, NOW + 10), MP_ERR_EXPIRED);
    MP_ASSERT_ST(mp_mc_check_scrip(iss, &s, NOW), MP_ERR_FORGED);
    mp_mc_issuer_free(iss);
}

static void test_customer_secret(void)
{
    mp_mc_issuer *iss = mk_issuer(VENDOR);
    uint8_t cs[32], cs2[32], want[32], k[32], msg[20], keep[32];

    CU_ASSERT_FATAL(iss != NULL);
    MP_ASSERT_OK(mp_mc_customer_secret(iss, CUST, cs));
    customer_master(1, k);
    memcpy(msg, "MP1 customer", 12);
    put64(msg + 12, CUST);
    MP_ASSERT_OK(mp_hmac(k, sizeof k, msg, sizeof msg, want));
    CU_ASSERT(memcmp(cs, want, 32) == 0);
    MP_ASSERT_OK(mp_mc_customer_secret(iss, CUST + 1, cs2));
    CU_ASSERT(memcmp(cs, cs2, 32) != 0);
    memset(keep, 0x77, sizeof keep);
    memcpy(cs2, keep, 32);
    MP_ASSERT_ST(mp_mc_customer_secret(iss, SER(2, 42), cs2), MP_ERR_UNKNOWN_SERIES);
    CU_ASSERT(memcmp(cs2, keep, 32) == 0);
    MP_ASSERT_ST(mp_mc_customer_secret(NULL, CUST, cs2), MP_ERR_ARG);
    mp_mc_issuer_free(iss);
}

/* ---- paying ---------------------------------------------------------------- */

static void test_pay_req_sig(void)
{
    mp_mc_issuer *iss = mk_issuer(VENDOR);
    mp_mac *mac = mk_mac();
    mp_scrip s;
    mp_mc_payment p, d, keep;
    mp_request req = mk_req("GET", "shop.example:8443", "/article/1?x=y");
    mp_amount price = usd(300);
    uint8_t cs[32], enc[600], msg[1024], want[32];
    size_t n = 0, m = 0;
    char longs[4200];

    CU_ASSERT_FATAL(iss != NULL && mac != NULL);
    s = mint_usd(iss, 1000);
    MP_ASSERT_OK(mp_mc_customer_secret(iss, CUST, cs));
    MP_ASSERT_OK(mp_mc_pay(mac, &s, cs, &req, &price, &p));
    CU_ASSERT(scrip_eq(&p.scrip, &s));
    CU_ASSERT(amount_eq(&p.price, &price));

    /* req_sig = HMAC(cs, "MP1 request" || scrip || str8 method || str8 host
     *                    || str16 target || amount price) */
    memcpy(msg, "MP1 request", 11); m = 11;
    MP_ASSERT_OK(mp_scrip_encode(&s, msg + m, sizeof msg - m, &n)); m += n;
    msg[m++] = 3; memcpy(msg + m, "GET", 3); m += 3;
    msg[m++] = 17; memcpy(msg + m, "shop.example:8443", 17); m += 17;
    msg[m++] = 0; msg[m++] = 14; memcpy(msg + m, "/article/1?x=y", 14); m += 14;
    memcpy(msg + m, "USD", 3); m += 3;
    put64(msg + m, 300); m += 8;
    MP_ASSERT_OK(mp_hmac(cs, sizeof cs, msg, m, want));
    CU_ASSERT(memcmp(want, p.req_sig, 32) == 0);

    /* payment record */
    MP_ASSERT_OK(mp_mc_payment_encode(&p, enc, sizeof enc, &n));
    CU_ASSERT_EQUAL(n, 2 + 2 + 91 + 11 + 32);
    MP_ASSERT_OK(mp_mc_payment_decode(enc, n, &d));
    CU_ASSERT(scrip_eq(&d.scrip, &p.scrip));
    CU_ASSERT(amount_eq(&d.price, &p.price));
    CU_ASSERT(memcmp(d.req_sig, p.req_sig, 32) == 0);
    check_structure(dec_pay, enc, n);

    /* request limits */
    memset(longs, 'x', sizeof longs);
    longs[0] = '/';
    memset(&keep, 0x3c, sizeof keep);
    d = keep;
    req = mk_req("", "h", "/");
    MP_ASSERT_ST(mp_mc_pay(mac, &s, cs, &req, &price, &d), MP_ERR_ARG);
    req = mk_req("GET", "h", "/");
    req.method = longs; req.method_len = MP_METHOD_MAX + 1;
    MP_ASSERT_ST(mp_mc_pay(mac, &s, cs, &req, &price, &d), MP_ERR_ARG);
    req = mk_req("GET", "h", "/");
    req.host = longs; req.host_len = MP_HOST_MAX + 1;
    MP_ASSERT_ST(mp_mc_pay(mac, &s, cs, &req, &price, &d), MP_ERR_ARG);
    req = mk_req("GET", "h", "");
    MP_ASSERT_ST(mp_mc_pay(mac, &s, cs, &req, &price, &d), MP_ERR_ARG);
    req.target = longs; req.target_len = MP_TARGET_MAX + 1;
    MP_ASSERT_ST(mp_mc_pay(mac, &s, cs, &req, &price, &d), MP_ERR_ARG);
    req = mk_req("GET", "h", "/");
    price = usd(MP_AMOUNT_MAX + 1);
    MP_ASSERT_ST(mp_mc_pay(mac, &s, cs, &req, &price, &d), MP_ERR_ARG);
    price = usd(300);
    s.value.units = 0;
    MP_ASSERT_ST(mp_mc_pay(mac, &s, cs, &req, &price, &d), MP_ERR_ARG);
    CU_ASSERT(memcmp(&d, &keep, sizeof d) == 0);
    /* limits themselves are fine; an empty host too */
    s = mint_usd(iss, 1000);
    req.method = longs; req.method_len = MP_METHOD_MAX;
    req.host = longs; req.host_len = MP_HOST_MAX;
    req.target = longs; req.target_len = MP_TARGET_MAX;
    MP_ASSERT_OK(mp_mc_pay(mac, &s, cs, &req, &price, &d));
    req = mk_req("GET", "", "/");
    MP_ASSERT_OK(mp_mc_pay(mac, &s, cs, &req, &price, &d));
    mp_mac_free(mac);
    mp_mc_issuer_free(iss);
}

static void test_payment_decode_rejects(void)
{
    mp_mc_issuer *iss = mk_issuer(VENDOR);
    mp_scrip s;
    uint8_t senc[600], buf[1200];
    size_t sn = 0;
    mp_wbuf w;
    uint8_t blob[600];

    CU_ASSERT_FATAL(iss != NULL);
    s = mint_usd(iss, 1000);
    MP_ASSERT_OK(mp_scrip_encode(&s, senc, sizeof senc, &sn));

    /* the scrip inside the blob carries a trailing byte */
    memcpy(blob, senc, sn);
    blob[sn] = 0;
    mp_w_init(&w, buf, sizeof buf);
    mp_w_header(&w, MP_T_MC_PAYMENT);
    mp_w_blob16(&w, blob, sn + 1);
    mp_w_bytes(&w, "USD", 3); mp_w_u64(&w, 300);
    mp_w_bytes(&w, blob, 32);
    MP_ASSERT_ST(dec_pay(buf, w.len), MP_ERR_TRAILING);

    /* inner record of another type */
    memcpy(blob, senc, sn);
    blob[1] = MP_T_MC_PAYMENT;
    mp_w_init(&w, buf, sizeof buf);
    mp_w_header(&w, MP_T_MC_PAYMENT);
    mp_w_blob16(&w, blob, sn);
    mp_w_bytes(&w, "USD", 3); mp_w_u64(&w, 300);
    mp_w_bytes(&w, blob, 32);
    MP_ASSERT_ST(dec_pay(buf, w.len), MP_ERR_TYPE);

    /* blob above 512 bytes */
    memset(blob, 0, sizeof blob);
    mp_w_init(&w, buf, sizeof buf);
    mp_w_header(&w, MP_T_MC_PAYMENT);
    mp_w_blob16(&w, blob, 513);
    mp_w_bytes(&w, "USD", 3); mp_w_u64(&w, 300);
    mp_w_bytes(&w, blob, 32);
    MP_ASSERT_ST(dec_pay(buf, w.len), MP_ERR_TOO_LARGE);

    /* empty blob, bad price currency */
    mp_w_init(&w, buf, sizeof buf);
    mp_w_header(&w, MP_T_MC_PAYMENT);
    mp_w_blob16(&w, blob, 0);
    mp_w_bytes(&w, "USD", 3); mp_w_u64(&w, 300);
    mp_w_bytes(&w, blob, 32);
    MP_ASSERT_ST(dec_pay(buf, w.len), MP_ERR_TRUNCATED);
    mp_w_init(&w, buf, sizeof buf);
    mp_w_header(&w, MP_T_MC_PAYMENT);
    mp_w_blob16(&w, senc, sn);
    mp_w_bytes(&w, "US$", 3); mp_w_u64(&w, 300);
    mp_w_bytes(&w, blob, 32);
    MP_ASSERT_ST(dec_pay(buf, w.len), MP_ERR_CURRENCY);
    mp_mc_issuer_free(iss);
}

/* ---- accepting -------------------------------------------------------------- */

typedef struct {
    mp_mc_issuer *iss;
    mp_mac *cmac, *vmac;
    uint8_t cs[32];
    mp_request req;
    mp_amount price;
} world;

static int world_init(world *wd)
{
    memset(wd, 0, sizeof *wd);
    wd->iss = mk_issuer(VENDOR);
    wd->cmac = mk_mac();
    wd->vmac = mk_mac();
    wd->req = mk_req("GET", "shop.example", "/article/1");
    wd->price = usd(300);
    return wd->iss != NULL && wd->cmac != NULL && wd->vmac != NULL
        && mp_mc_customer_secret(wd->iss, CUST, wd->cs) == MP_OK;
}

static void world_free(world *wd)
{
    mp_mc_issuer_free(wd->iss);
    mp_mac_free(wd->cmac);
    mp_mac_free(wd->vmac);
}

static void test_accept_with_change(void)
{
    world wd;
    mp_scrip s;
    mp_mc_payment p, pd;
    mp_mc_reply r, rd;
    mp_amount seven = usd(700);
    uint8_t enc[600], want[32];
    size_t n = 0;

    CU_ASSERT_FATAL(world_init(&wd));
    s = mint_usd(wd.iss, 1000);
    MP_ASSERT_OK(mp_mc_pay(wd.cmac, &s, wd.cs, &wd.req, &wd.price, &p));
    /* over the wire and back */
    MP_ASSERT_OK(mp_mc_payment_encode(&p, enc, sizeof enc, &n));
    MP_ASSERT_OK(mp_mc_payment_decode(enc, n, &pd));
    MP_ASSERT_OK(mp_mc_accept(wd.iss, wd.vmac, &pd, &wd.req, &wd.price, NOW, SER(1, 99), &r));

    CU_ASSERT_EQUAL(r.has_change, 1);
    CU_ASSERT_STRING_EQUAL(r.change.vendor, VENDOR);
    CU_ASSERT_EQUAL(r.change.id, SER(1, 99));
    CU_ASSERT_EQUAL(r.change.customer_id, CUST);
    CU_ASSERT_EQUAL(r.change.expiry, s.expiry);
    CU_ASSERT_STRING_EQUAL(r.change.props, s.props);
    CU_ASSERT(amount_eq(&r.change.value, &seven));
    CU_ASSERT(amount_eq(&r.charged, &wd.price));
    CU_ASSERT(memcmp(r.req_sig, p.req_sig, 32) == 0);
    MP_ASSERT_OK(mp_mc_check_scrip(wd.iss, &r.change, NOW));

    /* mac = HMAC(customer_secret, reply before the mac) */
    MP_ASSERT_OK(mp_mc_reply_encode(&r, enc, sizeof enc, &n));
    CU_ASSERT_EQUAL(n, 2 + 1 + 2 + 91 + 11 + 32 + 32);
    MP_ASSERT_OK(mp_hmac(wd.cs, 32, enc, n - 32, want));
    CU_ASSERT(memcmp(want, r.mac, 32) == 0);
    MP_ASSERT_OK(mp_mc_reply_decode(enc, n, &rd));
    CU_ASSERT_EQUAL(rd.has_change, 1);
    CU_ASSERT(scrip_eq(&rd.change, &r.change));
    CU_ASSERT(memcmp(rd.mac, r.mac, 32) == 0);
    check_structure(dec_reply, enc, n);
    MP_ASSERT_OK(mp_mc_reply_check(wd.cmac, &rd, &p, wd.cs));

    /* the change is spendable in turn */
    MP_ASSERT_OK(mp_mc_pay(wd.cmac, &rd.change, wd.cs, &wd.req, &wd.price, &p));
    MP_ASSERT_OK(mp_mc_accept(wd.iss, wd.vmac, &p, &wd.req, &wd.price, NOW, SER(1, 100), &r));
    seven = usd(400);
    CU_ASSERT(amount_eq(&r.change.value, &seven));
    MP_ASSERT_OK(mp_mc_reply_check(wd.cmac, &r, &p, wd.cs));
    world_free(&wd);
}

static void test_accept_exact(void)
{
    world wd;
    mp_scrip s, zero;
    mp_mc_payment p;
    mp_mc_reply r, rd;
    uint8_t enc[600];
    size_t n = 0;

    CU_ASSERT_FATAL(world_init(&wd));
    s = mint_usd(wd.iss, 300);
    MP_ASSERT_OK(mp_mc_pay(wd.cmac, &s, wd.cs, &wd.req, &wd.price, &p));
    /* no change is minted, so its series does not matter */
    MP_ASSERT_OK(mp_mc_accept(wd.iss, wd.vmac, &p, &wd.req, &wd.price, NOW, SER(9, 1), &r));
    CU_ASSERT_EQUAL(r.has_change, 0);
    memset(&zero, 0, sizeof zero);
    CU_ASSERT(memcmp(&r.change, &zero, sizeof zero) == 0);
    MP_ASSERT_OK(mp_mc_reply_encode(&r, enc, sizeof enc, &n));
    CU_ASSERT_EQUAL(n, 2 + 1 + 11 + 32 + 32);
    MP_ASSERT_OK(mp_mc_reply_decode(enc, n, &rd));
    CU_ASSERT_EQUAL(rd.has_change, 0);
    check_structure(dec_reply, enc, n);
    MP_ASSERT_OK(mp_mc_reply_check(wd.cmac, &rd, &p, wd.cs));
    world_free(&wd);
}

static void test_accept_rejects(void)
{
    world wd;
    mp_mc_issuer *other;
    mp_scrip s, f;
    mp_mc_payment p, q;
    mp_mc_reply r, keep;
    mp_request req;
    mp_amount v, price;
    uint8_t k[32], cs2[32];

    CU_ASSERT_FATAL(world_init(&wd));
    other = mk_issuer("other.example");
    CU_ASSERT_FATAL(other != NULL);
    memset(&keep, 0xa5, sizeof keep);
    r = keep;
    s = mint_usd(wd.iss, 1000);
    MP_ASSERT_OK(mp_mc_pay(wd.cmac, &s, wd.cs, &wd.req, &wd.price, &p));

#define ACCEPT(pay, rq, pr, now) \
    mp_mc_accept(wd.iss, wd.vmac, (pay), (rq), (pr), (now), SER(1, 99), &r)

    MP_ASSERT_ST(mp_mc_accept(other, wd.vmac, &p, &wd.req, &wd.price, NOW, SER(1, 99), &r),
                 MP_ERR_WRONG_VENDOR);
    MP_ASSERT_ST(ACCEPT(&p, &wd.req, &wd.price, EXPIRY), MP_ERR_EXPIRED);
    MP_ASSERT_OK(ACCEPT(&p, &wd.req, &wd.price, EXPIRY - 1));
    r = keep;

    /* forged stamp: a bigger value, signed correctly by the customer */
    f = s; f.value.units = 5000;
    MP_ASSERT_OK(mp_mc_pay(wd.cmac, &f, wd.cs, &wd.req, &wd.price, &q));
    MP_ASSERT_ST(ACCEPT(&q, &wd.req, &wd.price, NOW), MP_ERR_FORGED);
    f = s; f.id = SER(4, 7);
    MP_ASSERT_OK(mp_mc_pay(wd.cmac, &f, wd.cs, &wd.req, &wd.price, &q));
    MP_ASSERT_ST(ACCEPT(&q, &wd.req, &wd.price, NOW), MP_ERR_UNKNOWN_SERIES);

    /* price agreement */
    price = usd(299);
    MP_ASSERT_ST(ACCEPT(&p, &wd.req, &price, NOW), MP_ERR_PRICE);
    price = cur_amount("EUR", 300);
    MP_ASSERT_ST(ACCEPT(&p, &wd.req, &price, NOW), MP_ERR_PRICE);
    /* the customer lowers the agreed price without re-signing */
    q = p; q.price = usd(200); price = usd(200);
    MP_ASSERT_ST(ACCEPT(&q, &wd.req, &price, NOW), MP_ERR_FORGED);

    /* value */
    price = usd(1001);
    MP_ASSERT_OK(mp_mc_pay(wd.cmac, &s, wd.cs, &wd.req, &price, &q));
    MP_ASSERT_ST(ACCEPT(&q, &wd.req, &price, NOW), MP_ERR_INSUFFICIENT);
    price = usd(1000);
    MP_ASSERT_OK(mp_mc_pay(wd.cmac, &s, wd.cs, &wd.req, &price, &q));
    MP_ASSERT_OK(ACCEPT(&q, &wd.req, &price, NOW));
    r = keep;
    v = cur_amount("EUR", 1000);
    MP_ASSERT_OK(mp_mc_mint(wd.iss, &v, SER(1, 8), CUST, EXPIRY, NULL, &f));
    MP_ASSERT_OK(mp_mc_pay(wd.cmac, &f, wd.cs, &wd.req, &wd.price, &q));
    MP_ASSERT_ST(ACCEPT(&q, &wd.req, &wd.price, NOW), MP_ERR_INSUFFICIENT);

    /* req_sig bound to method, host, target, price and the customer */
    req = mk_req("POST", "shop.example", "/article/1");
    MP_ASSERT_ST(ACCEPT(&p, &req, &wd.price, NOW), MP_ERR_FORGED);
    req = mk_req("GET", "evil.example", "/article/1");
    MP_ASSERT_ST(ACCEPT(&p, &req, &wd.price, NOW), MP_ERR_FORGED);
    req = mk_req("GET", "shop.example", "/article/2");
    MP_ASSERT_ST(ACCEPT(&p, &req, &wd.price, NOW), MP_ERR_FORGED);
    req = mk_req("GET", "shop.example", "/article/1?");
    MP_ASSERT_ST(ACCEPT(&p, &req, &wd.price, NOW), MP_ERR_FORGED);
    /* boundaries move between fields: "GET"+"shop" vs "GETs"+"hop" */
    req = mk_req("GETs", "hop.example", "/article/1");
    MP_ASSERT_ST(ACCEPT(&p, &req, &wd.price, NOW), MP_ERR_FORGED);
    memcpy(cs2, wd.cs, 32);
    cs2[0] ^= 1;
    MP_ASSERT_OK(mp_mc_pay(wd.cmac, &s, cs2, &wd.req, &wd.price, &q));
    MP_ASSERT_ST(ACCEPT(&q, &wd.req, &wd.price, NOW), MP_ERR_FORGED);
    q = p; q.req_sig[5] ^= 0x10;
    MP_ASSERT_ST(ACCEPT(&q, &wd.req, &wd.price, NOW), MP_ERR_FORGED);
    /* another customer's secret over this customer's scrip */
    MP_ASSERT_OK(mp_mc_customer_secret(wd.iss, CUST + 1, cs2));
    MP_ASSERT_OK(mp_mc_pay(wd.cmac, &s, cs2, &wd.req, &wd.price, &q));
    MP_ASSERT_ST(ACCEPT(&q, &wd.req, &wd.price, NOW), MP_ERR_FORGED);

    /* customer series not held */
    MP_ASSERT_OK(mp_mc_mint(wd.iss, &s.value, SER(1, 9), SER(3, 1), EXPIRY, NULL, &f));
    MP_ASSERT_OK(mp_mc_pay(wd.cmac, &f, wd.cs, &wd.req, &wd.price, &q));
    MP_ASSERT_ST(ACCEPT(&q, &wd.req, &wd.price, NOW), MP_ERR_UNKNOWN_SERIES);

    /* change series not held, or retired */
    MP_ASSERT_ST(mp_mc_accept(wd.iss, wd.vmac, &p, &wd.req, &wd.price, NOW, SER(2, 1), &r),
                 MP_ERR_UNKNOWN_SERIES);
    scrip_secret(2, k);
    MP_ASSERT_OK(mp_mc_issuer_add_scrip_secret(wd.iss, 2, k, sizeof k, NOW));
    MP_ASSERT_ST(mp_mc_accept(wd.iss, wd.vmac, &p, &wd.req, &wd.price, NOW, SER(2, 1), &r),
                 MP_ERR_ARG);

    /* scrip of a retired series */
    MP_ASSERT_OK(mp_mc_issuer_remove_scrip_secret(wd.iss, 1));
    MP_ASSERT_OK(mp_mc_issuer_add_scrip_secret(wd.iss, 1, k, sizeof k, 0));
    MP_ASSERT_ST(ACCEPT(&p, &wd.req, &wd.price, NOW), MP_ERR_FORGED);
    MP_ASSERT_OK(mp_mc_issuer_remove_scrip_secret(wd.iss, 1));
    scrip_secret(1, k);
    MP_ASSERT_OK(mp_mc_issuer_add_scrip_secret(wd.iss, 1, k, sizeof k, NOW));
    MP_ASSERT_ST(ACCEPT(&p, &wd.req, &wd.price, NOW), MP_ERR_EXPIRED);
    MP_ASSERT_OK(ACCEPT(&p, &wd.req, &wd.price, NOW - 1));
    r = keep;

    /* deterministic order: each payment fails two checks */
    q = p; q.price = usd(2000);                 /* price and value */
    price = usd(2000);
    MP_ASSERT_ST(ACCEPT(&q, &wd.req, &wd.price, NOW - 1), MP_ERR_PRICE);
    MP_ASSERT_ST(ACCEPT(&q, &wd.req, &price, NOW - 1), MP_ERR_INSUFFICIENT);
    MP_ASSERT_ST(ACCEPT(&q, &wd.req, &wd.price, EXPIRY), MP_ERR_EXPIRED);
    MP_ASSERT_ST(mp_mc_accept(other, wd.vmac, &q, &wd.req, &wd.price, EXPIRY, SER(1, 99), &r),
                 MP_ERR_WRONG_VENDOR);

    /* argument errors */
    MP_ASSERT_ST(ACCEPT(NULL, &wd.req, &wd.price, NOW - 1), MP_ERR_ARG);
    price = usd(0);
    MP_ASSERT_ST(ACCEPT(&p, &wd.req, &price, NOW - 1), MP_ERR_ARG);
    req = wd.req; req.method_len = 0;
    MP_ASSERT_ST(ACCEPT(&p, &req, &wd.price, NOW - 1), MP_ERR_ARG);
#undef ACCEPT
    /* none of the failures touched the reply */
    CU_ASSERT(memcmp(&r, &keep, sizeof r) == 0);
    mp_mc_issuer_free(other);
    world_free(&wd);
}

static void test_accept_with_dup(void)
{
    world wd;
    mp_mc_issuer *dup = NULL;
    mp_scrip s;
    mp_mc_payment p;
    mp_mc_reply r;

    CU_ASSERT_FATAL(world_init(&wd));
    MP_ASSERT_OK(mp_mc_issuer_dup(wd.iss, &dup));
    CU_ASSERT_FATAL(dup != NULL);
    s = mint_usd(wd.iss, 1000);
    MP_ASSERT_OK(mp_mc_pay(wd.cmac, &s, wd.cs, &wd.req, &wd.price, &p));
    mp_mc_issuer_free(wd.iss);
    wd.iss = NULL;
    MP_ASSERT_OK(mp_mc_accept(dup, wd.vmac, &p, &wd.req, &wd.price, NOW, SER(1, 5), &r));
    MP_ASSERT_OK(mp_mc_reply_check(wd.cmac, &r, &p, wd.cs));
    MP_ASSERT_OK(mp_mc_check_scrip(dup, &r.change, NOW));
    mp_mc_issuer_free(dup);
    world_free(&wd);
}

/* ---- the customer checks the reply ---------------------------------------- */

static void test_reply_check_rejects(void)
{
    world wd;
    mp_scrip s;
    mp_mc_payment p, p2;
    mp_mc_reply r, t, ex;
    mp_request req2 = mk_req("GET", "shop.example", "/article/2");
    uint8_t enc[600], cs2[32];
    size_t n = 0;

    CU_ASSERT_FATAL(world_init(&wd));
    s = mint_usd(wd.iss, 1000);
    MP_ASSERT_OK(mp_mc_pay(wd.cmac, &s, wd.cs, &wd.req, &wd.price, &p));
    MP_ASSERT_OK(mp_mc_accept(wd.iss, wd.vmac, &p, &wd.req, &wd.price, NOW, SER(1, 99), &r));
    MP_ASSERT_OK(mp_mc_reply_check(wd.cmac, &r, &p, wd.cs));

    /* MAC */
    t = r; t.mac[0] ^= 1;
    MP_ASSERT_ST(mp_mc_reply_check(wd.cmac, &t, &p, wd.cs), MP_ERR_FORGED);
    memcpy(cs2, wd.cs, 32); cs2[31] ^= 0x80;
    MP_ASSERT_ST(mp_mc_reply_check(wd.cmac, &r, &p, cs2), MP_ERR_FORGED);
    /* change value changed on the wire, old MAC kept */
    t = r; t.change.value.units = 800;
    MP_ASSERT_OK(mp_mc_reply_encode(&t, enc, sizeof enc, &n));
    MP_ASSERT_OK(mp_mc_reply_decode(enc, n, &t));
    MP_ASSERT_ST(mp_mc_reply_check(wd.cmac, &t, &p, wd.cs), MP_ERR_FORGED);
    t = r; t.charged.units = 200;
    MP_ASSERT_ST(mp_mc_reply_check(wd.cmac, &t, &p, wd.cs), MP_ERR_FORGED);
    t = r; t.has_change = 0; memset(&t.change, 0, sizeof t.change);
    MP_ASSERT_ST(mp_mc_reply_check(wd.cmac, &t, &p, wd.cs), MP_ERR_FORGED);
    /* echo: a genuine reply to another request */
    MP_ASSERT_OK(mp_mc_pay(wd.cmac, &s, wd.cs, &req2, &wd.price, &p2));
    MP_ASSERT_ST(mp_mc_reply_check(wd.cmac, &r, &p2, wd.cs), MP_ERR_FORGED);

    /* correctly MACed replies that break the arithmetic */
    t = r; t.req_sig[0] ^= 1; remac_reply(&t, wd.cs);
    MP_ASSERT_ST(mp_mc_reply_check(wd.cmac, &t, &p, wd.cs), MP_ERR_FORGED);
    t = r; t.change.value.units = 800; remac_reply(&t, wd.cs);
    MP_ASSERT_ST(mp_mc_reply_check(wd.cmac, &t, &p, wd.cs), MP_ERR_FORGED);
    t = r; t.change.customer_id++; remac_reply(&t, wd.cs);
    MP_ASSERT_ST(mp_mc_reply_check(wd.cmac, &t, &p, wd.cs), MP_ERR_FORGED);
    t = r; strcpy(t.change.vendor, "other.example"); remac_reply(&t, wd.cs);
    MP_ASSERT_ST(mp_mc_reply_check(wd.cmac, &t, &p, wd.cs), MP_ERR_FORGED);
    t = r; t.charged.units = 400; t.change.value.units = 600; remac_reply(&t, wd.cs);
    MP_ASSERT_ST(mp_mc_reply_check(wd.cmac, &t, &p, wd.cs), MP_ERR_FORGED);
    t = r; memcpy(t.charged.cur, "EUR", 4); remac_reply(&t, wd.cs);
    MP_ASSERT_ST(mp_mc_reply_check(wd.cmac, &t, &p, wd.cs), MP_ERR_FORGED);
    t = r; t.has_change = 0; memset(&t.change, 0, sizeof t.change); remac_reply(&t, wd.cs);
    MP_ASSERT_ST(mp_mc_reply_check(wd.cmac, &t, &p, wd.cs), MP_ERR_FORGED);
    /* charging less than agreed, with matching change, is honest */
    t = r; t.charged.units = 200; t.change.value.units = 800; remac_reply(&t, wd.cs);
    MP_ASSERT_OK(mp_mc_reply_check(wd.cmac, &t, &p, wd.cs));

    /* exact payment: a reply claiming change, or undercharging silently */
    s = mint_usd(wd.iss, 300);
    MP_ASSERT_OK(mp_mc_pay(wd.cmac, &s, wd.cs, &wd.req, &wd.price, &p));
    MP_ASSERT_OK(mp_mc_accept(wd.iss, wd.vmac, &p, &wd.req, &wd.price, NOW, SER(1, 98), &ex));
    t = ex; t.charged.units = 299; remac_reply(&t, wd.cs);
    MP_ASSERT_ST(mp_mc_reply_check(wd.cmac, &t, &p, wd.cs), MP_ERR_FORGED);
    t = ex; t.has_change = 1; t.change = r.change; remac_reply(&t, wd.cs);
    MP_ASSERT_ST(mp_mc_reply_check(wd.cmac, &t, &p, wd.cs), MP_ERR_FORGED);
    /* an invalid struct is the caller's error */
    t = ex; t.has_change = 2;
    MP_ASSERT_ST(mp_mc_reply_check(wd.cmac, &t, &p, wd.cs), MP_ERR_ARG);
    MP_ASSERT_ST(mp_mc_reply_check(NULL, &ex, &p, wd.cs), MP_ERR_ARG);
    world_free(&wd);
}

static void test_reply_codec_rejects(void)
{
    world wd;
    mp_scrip s;
    mp_mc_payment p;
    mp_mc_reply r, t;
    uint8_t enc[600], keep[600];
    size_t n = 0, n2 = 77;

    CU_ASSERT_FATAL(world_init(&wd));
    s = mint_usd(wd.iss, 300);
    MP_ASSERT_OK(mp_mc_pay(wd.cmac, &s, wd.cs, &wd.req, &wd.price, &p));
    MP_ASSERT_OK(mp_mc_accept(wd.iss, wd.vmac, &p, &wd.req, &wd.price, NOW, SER(1, 1), &r));
    MP_ASSERT_OK(mp_mc_reply_encode(&r, enc, sizeof enc, &n));
    enc[2] = 2;
    MP_ASSERT_ST(dec_reply(enc, n), MP_ERR_MALFORMED);
    enc[2] = 0xff;
    MP_ASSERT_ST(dec_reply(enc, n), MP_ERR_MALFORMED);
    enc[2] = 1;   /* claims change, but what follows is no blob */
    CU_ASSERT(dec_reply(enc, n) != MP_OK);
    enc[2] = 0;
    enc[3] = 'u';
    MP_ASSERT_ST(dec_reply(enc, n), MP_ERR_CURRENCY);

    /* encoder refuses what the decoder would */
    memset(keep, 0x11, sizeof keep);
    memcpy(enc, keep, sizeof enc);
    t = r; t.has_change = 2;
    MP_ASSERT_ST(mp_mc_reply_encode(&t, enc, sizeof enc, &n2), MP_ERR_ARG);
    t = r; t.has_change = 1;   /* change all zero: value 0 */
    MP_ASSERT_ST(mp_mc_reply_encode(&t, enc, sizeof enc, &n2), MP_ERR_ARG);
    t = r; t.charged.units = MP_AMOUNT_MAX + 1;
    MP_ASSERT_ST(mp_mc_reply_encode(&t, enc, sizeof enc, &n2), MP_ERR_ARG);
    MP_ASSERT_ST(mp_mc_reply_encode(&r, enc, 20, &n2), MP_ERR_BUFFER);
    CU_ASSERT(memcmp(enc, keep, sizeof enc) == 0);
    CU_ASSERT_EQUAL(n2, 77);
    p.price.units = MP_AMOUNT_MAX + 1;
    MP_ASSERT_ST(mp_mc_payment_encode(&p, enc, sizeof enc, &n2), MP_ERR_ARG);
    p.price.units = 300; p.scrip.expiry = 0;
    MP_ASSERT_ST(mp_mc_payment_encode(&p, enc, sizeof enc, &n2), MP_ERR_ARG);
    CU_ASSERT(memcmp(enc, keep, sizeof enc) == 0);
    world_free(&wd);
}

int register_millicent_tests(void)
{
    CU_pSuite s = CU_add_suite("millicent", NULL, NULL);

    if (s == NULL
        || !CU_add_test(s, "scrip round trip and structure", test_scrip_roundtrip)
        || !CU_add_test(s, "scrip encoder refuses invalid", test_scrip_encode_rejects)
        || !CU_add_test(s, "scrip decoder refuses invalid", test_scrip_decode_rejects)
        || !CU_add_test(s, "issuer setup and limits", test_issuer_setup)
        || !CU_add_test(s, "mint and check", test_mint_and_check)
        || !CU_add_test(s, "check rejections", test_check_rejects)
        || !CU_add_test(s, "rotation", test_rotation)
        || !CU_add_test(s, "retired series", test_retired_series)
        || !CU_add_test(s, "customer secret", test_customer_secret)
        || !CU_add_test(s, "pay: req_sig and payment record", test_pay_req_sig)
        || !CU_add_test(s, "payment decoder refuses invalid", test_payment_decode_rejects)
        || !CU_add_test(s, "accept with change", test_accept_with_change)
        || !CU_add_test(s, "accept exact value", test_accept_exact)
        || !CU_add_test(s, "accept rejections", test_accept_rejects)
        || !CU_add_test(s, "accept with a duplicated issuer", test_accept_with_dup)
        || !CU_add_test(s, "reply check rejections", test_reply_check_rejects)
        || !CU_add_test(s, "reply codec rejections", test_reply_codec_rejects))
        return -1;
    return 0;
}
