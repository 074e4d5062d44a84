/*
 * mp_offer.c - the 402 offer and the vendor's receipt.
 *
 * Encoders refuse (MP_ERR_ARG) every struct their decoder would refuse,
 * and both share one invariant check, so what a vendor sends is always
 * what a wallet accepts.
 */
#include <string.h>
#include "mp_offer.h"
#include "mp_wire.h"

/* header 2, vendor 1+64, method 1+16, target 2+4096, price 11, schemes 1,
 * unit 11, broker URL 2+512, window 4, expiry 8 */
#define OFFER_ENC_MAX   (2 + 1 + MP_NAME_MAX + 1 + MP_METHOD_MAX + 2 + MP_TARGET_MAX \
                         + 11 + 1 + 11 + 2 + MP_URL_MAX + 4 + 8)
/* header 2, vendor 1+64, target 2+4096, scheme 1, payer up to 32, price 11,
 * issued and expiry 16, mac 32 */
#define RECEIPT_ENC_MAX (2 + 1 + MP_NAME_MAX + 2 + MP_TARGET_MAX + 1 + MP_HASH_LEN \
                         + 11 + 16 + MP_HASH_LEN)

#define SCHEMES_ALL (MP_SCHEME_MILLICENT | MP_SCHEME_PAYWORD)

/* 1 when s is a NUL-terminated visible-ASCII string of min..max bytes;
 * reads at most max + 1 bytes. */
static int text_ok(const char *s, size_t min, size_t max)
{
    size_t i;

    if (s == NULL)
        return 0;
    for (i = 0; i <= max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\0')
            return i >= min;
        if (c < 0x21 || c > 0x7e)
            return 0;
    }
    return 0;
}

static int amount_ok(const mp_amount *a)
{
    return mp_currency_valid(a->cur) && a->units <= MP_AMOUNT_MAX;
}

/* ---- offer ---------------------------------------------------------------- */

/* The semantic rules of an offer, with the status its decoder reports. */
static mp_status offer_invariants(const mp_offer *o)
{
    int cmp;

    if (o->target_len == 0 || o->target[0] != '/')
        return MP_ERR_MALFORMED;
    if (o->price.units == 0)
        return MP_ERR_MALFORMED;
    if (o->schemes == 0 || (o->schemes & ~SCHEMES_ALL) != 0)
        return MP_ERR_MALFORMED;
    if (mp_amount_cmp(&o->price, &o->pw_unit, &cmp) != MP_OK)
        return MP_ERR_CURRENCY;
    /* A unit means something only where PayWord is offered; elsewhere it
     * is zero so that each offer has one encoding. */
    if (!(o->schemes & MP_SCHEME_PAYWORD))
        return o->pw_unit.units == 0 ? MP_OK : MP_ERR_MALFORMED;
    /* A wallet pays the price in whole PayWord words. */
    if (o->pw_unit.units == 0 || o->price.units % o->pw_unit.units != 0)
        return MP_ERR_MALFORMED;
    return MP_OK;
}

mp_status mp_offer_encode(const mp_offer *o, uint8_t *buf, size_t cap, size_t *len)
{
    uint8_t tmp[OFFER_ENC_MAX];
    mp_wbuf w;
    mp_status st = MP_ERR_ARG;

    if (o == NULL || buf == NULL || len == NULL)
        goto done;
    if (!text_ok(o->vendor, 1, MP_NAME_MAX) || !text_ok(o->method, 1, MP_METHOD_MAX)
        || o->target_len > MP_TARGET_MAX || !text_ok(o->broker_url, 0, MP_URL_MAX)
        || !amount_ok(&o->price) || !amount_ok(&o->pw_unit)
        || offer_invariants(o) != MP_OK)
        goto done;
    mp_w_init(&w, tmp, sizeof tmp);
    mp_w_header(&w, MP_T_OFFER);
    mp_w_str8(&w, o->vendor);
    mp_w_str8(&w, o->method);
    mp_w_str16(&w, o->target, o->target_len);
    mp_w_amount(&w, &o->price);
    mp_w_u8(&w, o->schemes);
    mp_w_amount(&w, &o->pw_unit);
    mp_w_str16(&w, o->broker_url, strlen(o->broker_url));
    mp_w_u32(&w, o->receipt_window);
    mp_w_u64(&w, o->expiry);
    if ((st = w.err) != MP_OK)
        goto done;
    if (w.len > cap) {
        st = MP_ERR_BUFFER;
        goto done;
    }
    memcpy(buf, tmp, w.len);
    *len = w.len;
done:
    return st;
}

mp_status mp_offer_decode(const uint8_t *in, size_t len, mp_offer *out)
{
    mp_offer o;
    mp_rbuf r;
    size_t url_len = 0;
    mp_status st;

    if (out == NULL)
        return MP_ERR_ARG;
    memset(&o, 0, sizeof o);
    mp_r_init(&r, in, len);
    mp_r_header(&r, MP_T_OFFER);
    mp_r_str8(&r, o.vendor, MP_NAME_MAX, 0);
    mp_r_str8(&r, o.method, MP_METHOD_MAX, 0);
    mp_r_str16(&r, o.target, MP_TARGET_MAX, &o.target_len, 0);
    mp_r_amount(&r, &o.price);
    o.schemes = mp_r_u8(&r);
    mp_r_amount(&r, &o.pw_unit);
    mp_r_str16(&r, o.broker_url, MP_URL_MAX, &url_len, 1);
    o.receipt_window = mp_r_u32(&r);
    o.expiry = mp_r_u64(&r);
    if ((st = mp_r_end(&r)) != MP_OK)
        goto done;
    if ((st = offer_invariants(&o)) != MP_OK)
        goto done;
    *out = o;
done:
    return st;
}

/* ---- receipt -------------------------------------------------------------- */

/* Writes header..expiry: the MACed part. Only the payer field of the
 * scheme travels; the other one is not part of the receipt. */
static mp_status receipt_body(const mp_receipt *rc, mp_wbuf *w)
{
    if (!text_ok(rc->vendor, 1, MP_NAME_MAX) || rc->target_len == 0
        || rc->target_len > MP_TARGET_MAX || !amount_ok(&rc->price)
        || (rc->scheme != MP_SCHEME_MILLICENT && rc->scheme != MP_SCHEME_PAYWORD)
        || rc->expiry <= rc->issued)
        return MP_ERR_ARG;
    mp_w_header(w, MP_T_RECEIPT);
    mp_w_str8(w, rc->vendor);
    mp_w_str16(w, rc->target, rc->target_len);
    mp_w_u8(w, rc->scheme);
    if (rc->scheme == MP_SCHEME_MILLICENT)
        mp_w_u64(w, rc->customer_id);
    else
        mp_w_bytes(w, rc->commit_id, MP_HASH_LEN);
    mp_w_amount(w, &rc->price);
    mp_w_u64(w, rc->issued);
    mp_w_u64(w, rc->expiry);
    return w->err;
}

static mp_status receipt_mac(mp_mac *key, const mp_receipt *rc, uint8_t mac[MP_HASH_LEN])
{
    uint8_t tmp[RECEIPT_ENC_MAX];
    mp_wbuf w;
    mp_iov part;
    mp_status st;

    mp_w_init(&w, tmp, sizeof tmp);
    if ((st = receipt_body(rc, &w)) != MP_OK)
        return st;
    part.p = tmp;
    part.len = w.len;
    return mp_mac_compute(key, &part, 1, mac);
}

mp_status mp_receipt_stamp(mp_mac *key, mp_receipt *r)
{
    uint8_t mac[MP_HASH_LEN];
    mp_status st;

    if (key == NULL || r == NULL)
        return MP_ERR_ARG;
    if ((st = receipt_mac(key, r, mac)) != MP_OK)
        goto done;
    memcpy(r->mac, mac, MP_HASH_LEN);
done:
    return st;
}

mp_status mp_receipt_encode(const mp_receipt *r, uint8_t *buf, size_t cap, size_t *len)
{
    uint8_t tmp[RECEIPT_ENC_MAX];
    mp_wbuf w;
    mp_status st;

    if (r == NULL || buf == NULL || len == NULL)
        return MP_ERR_ARG;
    mp_w_init(&w, tmp, sizeof tmp);
    if ((st = receipt_body(r, &w)) != MP_OK)
        goto done;
    mp_w_bytes(&w, r->mac, MP_HASH_LEN);
    if ((st = w.err) != MP_OK)
        goto done;
    if (w.len > cap) {
        st = MP_ERR_BUFFER;
        goto done;
    }
    memcpy(buf, tmp, w.len);
    *len = w.len;
done:
    return st;
}

mp_status mp_receipt_decode(const uint8_t *in, size_t len, mp_receipt *out)
{
    mp_receipt rc;
    mp_rbuf r;
    mp_status st;

    if (out == NULL)
        return MP_ERR_ARG;
    memset(&rc, 0, sizeof rc);
    mp_r_init(&r, in, len);
    mp_r_header(&r, MP_T_RECEIPT);
    mp_r_str8(&r, rc.vendor, MP_NAME_MAX, 0);
    mp_r_str16(&r, rc.target, MP_TARGET_MAX, &rc.target_len, 0);
    rc.scheme = mp_r_u8(&r);
    /* The scheme decides the layout of what follows: stop at a bad one. */
    if (r.err == MP_OK && rc.scheme != MP_SCHEME_MILLICENT && rc.scheme != MP_SCHEME_PAYWORD)
        mp_r_fail(&r, MP_ERR_MALFORMED);
    if (rc.scheme == MP_SCHEME_MILLICENT)
        rc.customer_id = mp_r_u64(&r);
    else
        mp_r_bytes(&r, rc.commit_id, MP_HASH_LEN);
    mp_r_amount(&r, &rc.price);
    rc.issued = mp_r_u64(&r);
    rc.expiry = mp_r_u64(&r);
    mp_r_bytes(&r, rc.mac, MP_HASH_LEN);
    if ((st = mp_r_end(&r)) != MP_OK)
        goto done;
    if (rc.expiry <= rc.issued) {
        st = MP_ERR_MALFORMED;
        goto done;
    }
    *out = rc;
done:
    return st;
}

mp_status mp_receipt_check(mp_mac *key, const mp_receipt *r, const char *vendor,
                           const char *target, size_t target_len, uint64_t now)
{
    uint8_t mac[MP_HASH_LEN];
    mp_status st;

    if (key == NULL || r == NULL || vendor == NULL || (target == NULL && target_len > 0)
        || r->target_len > MP_TARGET_MAX)
        return MP_ERR_ARG;
    if (strncmp(r->vendor, vendor, sizeof r->vendor) != 0) {
        st = MP_ERR_WRONG_VENDOR;
        goto done;
    }
    if (r->target_len != target_len
        || (target_len > 0 && memcmp(r->target, target, target_len) != 0)) {
        st = MP_ERR_WRONG_TARGET;
        goto done;
    }
    if (now >= r->expiry) {
        st = MP_ERR_EXPIRED;
        goto done;
    }
    if ((st = receipt_mac(key, r, mac)) != MP_OK)
        goto done;
    if (!mp_ct_equal(mac, sizeof mac, r->mac, sizeof r->mac))
        st = MP_ERR_FORGED;
done:
    return st;
}
