/*
 * wp_payword.c - the wallet's PayWord credit (PROTOCOL.md 5.4-5.7, 7.5, 7.8,
 * 8.5): one Ed25519 user key, a certificate from /certify, per-vendor hash
 * chains with signed commitments, and word intervals allocated in
 * increasing order in the store so that concurrent requests get disjoint
 * words.
 *
 * Credit: the broker reserves a certificate's whole credit limit, so the
 * wallet keeps sum(n x unit) over the commitments under one certificate
 * within it ("committed" in the pw_cert record). A chain has
 * n = min(WP_PW_MAX_N, remaining credit / unit) words; a new certificate
 * (credit limit: the policy's top-up amount, at least one payment) is asked
 * for when the current one has too little credit left or expires within
 * an hour.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include "wp_engine.h"

#define CERT_MARGIN 3600    /* a certificate expiring sooner is not used for new chains */

static size_t chain_key(uint8_t *key, const char *vendor, const uint8_t id[MP_HASH_LEN])
{
    size_t n = strlen(vendor);

    memcpy(key, vendor, n);
    key[n] = 0;
    memcpy(key + n + 1, id, MP_HASH_LEN);
    return n + 1 + MP_HASH_LEN;
}

/* The user key, made on first use (inside t, mu held). */
static int signer_get(wp_txn *t, mp_signer **out)
{
    char pem[4096];
    size_t len;
    json_t *j = NULL;
    mp_signer *s = NULL;
    int rc, rv = -1;

    rc = wp_store_get(t, WPS_META, "pw_key", 6, &j);
    if (rc < 0)
        goto out;
    if (rc == 0) {
        const char *p = wp_jstr(j, "pem");

        if (mp_signer_from_pem(p, strlen(p), &s) != MP_OK)
            goto out;
    } else {
        if (mp_signer_generate(&s) != MP_OK
            || mp_signer_to_pem(s, pem, sizeof pem - 1, &len) != MP_OK)
            goto out;
        pem[len] = '\0';
        j = json_pack("{s:s}", "pem", pem);
        OPENSSL_cleanse(pem, sizeof pem);
        if (j == NULL || wp_store_put(t, WPS_META, "pw_key", 6, j) != 0)
            goto out;
    }
    *out = s;
    s = NULL;
    rv = 0;
out:
    mp_signer_free(s);
    json_decref(j);
    return rv;
}

/* ---- certificate --------------------------------------------------------------------- */

/* /certify for credit (buy_mu held). 0 / -1 with err. */
static int certify(wp_wallet *w, const mp_amount *credit, char *err, size_t errlen)
{
    char keytext[64], a[MP_AMOUNT_STRMAX], rid[WP_REQUEST_ID_LEN + 1];
    mp_signer *s = NULL;
    mp_pubkey pk;
    json_t *body = NULL, *ctx = NULL;
    wp_txn *t = NULL;
    int rv = -1;

    pthread_mutex_lock(&w->mu);
    if (wp_store_begin(w->st, 0, &t) != 0)
        t = NULL;
    else if (signer_get(t, &s) != 0 || mp_signer_pubkey(s, &pk) != MP_OK
             || wp_b64(pk.key, pk.len, keytext, sizeof keytext) != 0
             || (body = json_pack("{s:{s:s, s:s}, s:s}", "key", "alg", "ed25519", "key", keytext,
                                  "credit_limit", wp_amt(credit, a))) == NULL
             || (ctx = json_pack("{s:I, s:s, s:s}", "credit", (json_int_t)credit->units, "cur",
                                 credit->cur, "key", keytext)) == NULL
             || wp_breq_put(t, "certify", body, ctx, rid) != 0)
        wp_store_abort(t);
    else
        rv = wp_store_commit(t);
    pthread_mutex_unlock(&w->mu);
    if (rv != 0) {
        snprintf(err, errlen, "cannot prepare /certify: %s", wp_store_error());
        goto out;
    }
    wp_log(WP_LOG_INFO, "WP00112 asking the broker for a PayWord certificate (credit %s)", a);
    rv = wp_breq_send(w, rid, err, errlen);
out:
    mp_signer_free(s);
    json_decref(body);
    json_decref(ctx);
    return rv;
}

int wp_pw_apply(wp_wallet *w, wp_txn *t, json_t *breq, json_t *resp)
{
    json_t *ctx = json_object_get(breq, "ctx"), *rec;
    uint8_t buf[MP_WIRE_MAX], key[64];
    size_t len, klen;
    mp_pw_cert c;
    int rv;

    (void)w;
    if (wp_unb64(wp_jstr(resp, "cert"), buf, sizeof buf, &len) != 0
        || mp_pw_cert_decode(buf, len, &c) != MP_OK
        || wp_unb64(wp_jstr(ctx, "key"), key, sizeof key, &klen) != 0
        || c.user_key.alg != MP_KEY_ED25519 || c.user_key.len != klen
        || memcmp(c.user_key.key, key, klen) != 0 || c.credit_limit.units != wp_ju64(ctx, "credit")
        || strcmp(c.credit_limit.cur, wp_jstr(ctx, "cur")) != 0) {
        wp_log(WP_LOG_ERROR, "WP00118 broker /certify answer does not match the request "
               "(key or credit); not used");
        return 0;
    }
    rec = json_pack("{s:s, s:I, s:I, s:I, s:s, s:I}", "cert", wp_jstr(resp, "cert"), "serial",
                    (json_int_t)c.serial, "expiry", (json_int_t)c.expiry, "credit",
                    (json_int_t)c.credit_limit.units, "cur", c.credit_limit.cur, "committed",
                    (json_int_t)0);
    if (rec == NULL)
        return -1;
    rv = wp_store_put(t, WPS_META, "pw_cert", 7, rec);
    json_decref(rec);
    return rv;
}

/* ---- chains ------------------------------------------------------------------------ */

typedef struct {
    const mp_amount *unit;
    const char *host;        /* the request's host: a chain serves one host */
    uint32_t k;
    uint64_t now;
    uint8_t key[WP_KEY_MAX];
    size_t klen;
    json_t *found;
} chain_pick;

static int chain_visit(void *ctx, const uint8_t *key, size_t klen, json_t *c)
{
    chain_pick *cp = ctx;

    if (json_is_true(json_object_get(c, "dead")) || wp_ju64(c, "unit") != cp->unit->units
        || strcmp(wp_jstr(c, "cur"), cp->unit->cur) != 0
        || wp_ju64(c, "expiry") <= cp->now + WP_SKEW
        || wp_ju64(c, "next") + cp->k > wp_ju64(c, "n") || klen > sizeof cp->key)
        return 0;
    /* Security: PayWord words are bearer tokens, and the offer's vendor name
     * is not authenticated. Without this, any site answering 402 with
     * realm "shop.example" would get the next words of the user's
     * shop.example chain, from which it computes every lower word, and could
     * spend those still pending in gaps at shop.example before the wallet's
     * own requests do. A chain is used only for the host it was made for. */
    if (json_object_get(c, "host") != NULL && strcmp(wp_jstr(c, "host"), cp->host) != 0)
        return 0;
    cp->found = json_incref(c);
    memcpy(cp->key, key, klen);
    cp->klen = klen;
    return 1;
}

/* Allocates k words of a usable chain of vendor and writes the payment in
 * flight (inside t). 0, 1 no usable chain, -1 error. */
static int take(wp_wallet *w, wp_txn *t, const wp_reqinfo *ri, const mp_offer *o, uint32_t k,
                wp_ready *r)
{
    uint8_t prefix[WP_KEY_MAX], seed[MP_HASH_LEN], buf[MP_WIRE_MAX];
    char cred[MP_WIRE_TEXT_MAX + 1], hexkey[2 * WP_KEY_MAX + 1];
    size_t plen = strlen(o->vendor) + 1, len;
    mp_pw_payment pay;
    mp_sha *sha = NULL;
    json_t *rec = NULL;
    chain_pick cp;
    uint32_t i, n;
    int rv = -1;

    memset(&cp, 0, sizeof cp);
    memset(&pay, 0, sizeof pay);
    cp.unit = &o->pw_unit;
    cp.host = ri->host;
    cp.k = k;
    cp.now = wp_now();
    memcpy(prefix, o->vendor, plen);
    if (wp_store_scan(t, WPS_CHAIN, prefix, plen, 0, chain_visit, &cp) != 0)
        goto out;
    if (cp.found == NULL) {
        rv = 1;
        goto out;
    }
    n = (uint32_t)wp_ju64(cp.found, "n");
    i = (uint32_t)wp_ju64(cp.found, "next") + k;
    if (wp_unb64(wp_jstr(cp.found, "seed"), seed, sizeof seed, &len) != 0 || len != MP_HASH_LEN
        || wp_unb64(wp_jstr(cp.found, "commit"), buf, sizeof buf, &len) != 0
        || mp_pw_commit_decode(buf, len, &pay.commit) != MP_OK)
        goto out;
    /* w_i = H^(n-i)(w_n) */
    if (mp_sha_new(&sha) != MP_OK || mp_sha_iterate(sha, seed, n - i, pay.w) != MP_OK)
        goto out;
    memcpy(pay.commit_id, pay.commit.id, MP_HASH_LEN);
    pay.i = i;
    pay.k = k;
    /* until one payment with it succeeded, every payment carries the commitment */
    pay.has_commit = !json_is_true(json_object_get(cp.found, "confirmed"));
    if (mp_pw_payment_encode(&pay, buf, sizeof buf, &len) != MP_OK
        || wp_b64(buf, len, cred, sizeof cred) != 0)
        goto out;
    json_object_set_new(cp.found, "next", json_integer((json_int_t)i));
    if (json_object_get(cp.found, "host") == NULL)
        json_object_set_new(cp.found, "host", json_string(ri->host));
    if (wp_store_put(t, WPS_CHAIN, cp.key, cp.klen, cp.found) != 0)
        goto out;
    wp_hex(cp.key, cp.klen, hexkey);
    rec = json_pack("{s:s, s:I, s:I, s:b}", "chain", hexkey, "i", (json_int_t)i, "k",
                    (json_int_t)k, "has_commit", pay.has_commit);
    if (rec == NULL || wp_inflight_write(w, t, ri, o->vendor, "payword", &o->price, cred, 0, rec, r)
        != 0)
        goto out;
    rv = 0;
out:
    mp_sha_free(sha);
    json_decref(cp.found);
    json_decref(rec);
    OPENSSL_cleanse(seed, sizeof seed);
    OPENSSL_cleanse(pay.w, sizeof pay.w);
    return rv;
}

/* Makes a chain for o's vendor and unit with at least k words under the
 * current certificate (inside t). 0, 1 the certificate cannot carry it, -1. */
static int new_chain(wp_wallet *w, wp_txn *t, const wp_reqinfo *ri, const mp_offer *o, uint32_t k)
{
    uint8_t buf[MP_WIRE_MAX], seed[MP_HASH_LEN], key[WP_KEY_MAX];
    char text[MP_WIRE_TEXT_MAX + 1], seedtext[64], hexid[2 * MP_HASH_LEN + 1];
    mp_signer *s = NULL;
    mp_chain *ch = NULL;
    mp_pw_commit c;
    json_t *cert = NULL, *rec = NULL;
    uint64_t now = wp_now(), credit, committed, left, n;
    size_t len;
    int rc, rv = -1;

    (void)w;
    rc = wp_store_get(t, WPS_META, "pw_cert", 7, &cert);
    if (rc < 0)
        goto out;
    rv = 1;
    if (rc == 1 || wp_ju64(cert, "expiry") <= now + CERT_MARGIN
        || strcmp(wp_jstr(cert, "cur"), o->pw_unit.cur) != 0)
        goto out;
    credit = wp_ju64(cert, "credit");
    committed = wp_ju64(cert, "committed");
    left = credit > committed ? credit - committed : 0;
    n = left / o->pw_unit.units;
    if (n > WP_PW_MAX_N)
        n = WP_PW_MAX_N;
    if (n < k)
        goto out;
    rv = -1;
    memset(&c, 0, sizeof c);
    if (wp_unb64(wp_jstr(cert, "cert"), buf, sizeof buf, &len) != 0
        || mp_pw_cert_decode(buf, len, &c.cert) != MP_OK || signer_get(t, &s) != 0
        || mp_random(seed, sizeof seed) != MP_OK || mp_chain_new(seed, (uint32_t)n, &ch) != MP_OK)
        goto out;
    snprintf(c.vendor, sizeof c.vendor, "%s", o->vendor);
    mp_chain_w0(ch, c.w0);
    c.date = now;
    c.expiry = c.cert.expiry;
    c.unit = o->pw_unit;
    c.n = (uint32_t)n;
    if (mp_pw_commit_sign(&c, s) != MP_OK || mp_pw_commit_encode(&c, buf, sizeof buf, &len) != MP_OK
        || wp_b64(buf, len, text, sizeof text) != 0
        || wp_b64(seed, sizeof seed, seedtext, sizeof seedtext) != 0)
        goto out;
    rec = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:I, s:s, s:b, s:b, s:I}", "vendor",
                    o->vendor, "host", ri->host, "seed", seedtext, "n", (json_int_t)n, "next",
                    (json_int_t)0, "unit", (json_int_t)o->pw_unit.units, "cur", o->pw_unit.cur,
                    "expiry", (json_int_t)c.expiry, "commit", text, "confirmed", 0, "dead", 0,
                    "serial", (json_int_t)c.cert.serial);
    json_object_set_new(cert, "committed", json_integer((json_int_t)(committed
                                                                     + n * o->pw_unit.units)));
    if (rec == NULL || wp_store_put(t, WPS_CHAIN, key, chain_key(key, o->vendor, c.id), rec) != 0
        || wp_store_put(t, WPS_META, "pw_cert", 7, cert) != 0)
        goto out;
    wp_hex(c.id, 8, hexid);
    wp_log(WP_LOG_INFO, "WP00113 new PayWord chain for %s: n %llu, commitment %s...", o->vendor,
           (unsigned long long)n, hexid);
    rv = 0;
out:
    mp_signer_free(s);
    mp_chain_free(ch);
    json_decref(cert);
    json_decref(rec);
    OPENSSL_cleanse(seed, sizeof seed);
    OPENSSL_cleanse(seedtext, sizeof seedtext);
    return rv;
}

int wp_pw_pay(wp_wallet *w, const wp_reqinfo *ri, const mp_offer *o, wp_ready *r, char *err,
              size_t errlen)
{
    wp_txn *t = NULL;
    uint64_t k64 = o->pw_unit.units ? o->price.units / o->pw_unit.units : 0;
    uint32_t k;
    int rc, attempt, certified = 0;

    if (k64 == 0 || k64 > WP_PW_MAX_N || k64 * o->pw_unit.units != o->price.units) {
        snprintf(err, errlen, "the PayWord terms do not fit this wallet (price / unit)");
        return -1;
    }
    k = (uint32_t)k64;
    for (attempt = 0; attempt < 3; attempt++) {
        pthread_mutex_lock(&w->mu);
        if (wp_store_begin(w->st, 0, &t) != 0) {
            pthread_mutex_unlock(&w->mu);
            snprintf(err, errlen, "%s", wp_store_error());
            return -1;
        }
        rc = take(w, t, ri, o, k, r);
        if (rc == 1 && attempt > 0) {
            /* make a chain under the current certificate, then take from it */
            rc = new_chain(w, t, ri, o, k);
            if (rc == 0)
                rc = take(w, t, ri, o, k, r);
        }
        if (rc == 0) {
            if (wp_store_commit(t) != 0) {
                t = NULL;
                rc = -1;
            } else if (wp_resv_add(w, r->id) != 0) {
                rc = -1;
            }
        } else {
            wp_store_abort(t);
        }
        pthread_mutex_unlock(&w->mu);
        if (rc == 0)
            return 0;
        if (rc < 0) {
            snprintf(err, errlen, "PayWord: %s", wp_store_error()[0] ? wp_store_error()
                                                                        : "cannot build the payment");
            return -1;
        }
        if (attempt == 1 && !certified) {
            mp_amount credit;

            pthread_mutex_lock(&w->mu);
            credit = w->pol.topup;
            pthread_mutex_unlock(&w->mu);
            if (credit.units < o->price.units)
                credit.units = o->price.units;
            memcpy(credit.cur, o->pw_unit.cur, sizeof credit.cur);
            pthread_mutex_lock(&w->buy_mu);
            (void)wp_breq_replay(w);
            rc = certify(w, &credit, err, errlen);
            pthread_mutex_unlock(&w->buy_mu);
            if (rc != 0)
                return -1;
            certified = 1;
        }
    }
    snprintf(err, errlen, "PayWord: no chain could be made for %s", o->vendor);
    return -1;
}

/* ---- settling ------------------------------------------------------------------------- */

static int chain_update(wp_txn *t, const char *hexkey, const char *member)
{
    uint8_t key[WP_KEY_MAX];
    size_t klen;
    json_t *c = NULL;
    int rc;

    if (wp_unhex(hexkey, key, sizeof key, &klen) != 0)
        return -1;
    rc = wp_store_get(t, WPS_CHAIN, key, klen, &c);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    json_object_set_new(c, member, json_true());
    rc = wp_store_put(t, WPS_CHAIN, key, klen, c);
    json_decref(c);
    return rc;
}

/* The same interval again, now carrying the commitment (unknown-commitment). */
static int with_commitment(wp_txn *t, json_t *inf)
{
    uint8_t key[WP_KEY_MAX], buf[MP_WIRE_MAX];
    char cred[MP_WIRE_TEXT_MAX + 1];
    size_t klen, len;
    mp_pw_payment pay;
    json_t *c = NULL;
    int rv = -1;

    if (wp_unhex(wp_jstr(inf, "chain"), key, sizeof key, &klen) != 0
        || wp_store_get(t, WPS_CHAIN, key, klen, &c) != 0
        || wp_unb64(wp_jstr(inf, "cred"), buf, sizeof buf, &len) != 0
        || mp_pw_payment_decode(buf, len, &pay) != MP_OK
        || wp_unb64(wp_jstr(c, "commit"), buf, sizeof buf, &len) != 0
        || mp_pw_commit_decode(buf, len, &pay.commit) != MP_OK)
        goto out;
    pay.has_commit = 1;
    if (mp_pw_payment_encode(&pay, buf, sizeof buf, &len) != MP_OK
        || wp_b64(buf, len, cred, sizeof cred) != 0)
        goto out;
    json_object_set_new(inf, "cred", json_string(cred));
    json_object_set_new(inf, "has_commit", json_true());
    rv = 0;
out:
    json_decref(c);
    return rv;
}

wp_outcome wp_pw_settle(wp_wallet *w, wp_txn *t, json_t *inf, long status, const char *reason,
                        mp_amount *charged)
{
    const char *chain = wp_jstr(inf, "chain");
    const char *why = status == 400 ? "malformed" : reason ? reason : "";

    (void)w;
    mp_amount_set(charged, wp_ju64(inf, "price"), wp_jstr(inf, "cur"));
    if (status >= 500)
        return WP_OUT_KEEP;
    if (status != 402 && status != 400)
        return chain_update(t, chain, "confirmed") == 0 ? WP_OUT_PAID : WP_OUT_KEEP;
    /* refused: the interval is not used again (allocations only go up) */
    if (strcmp(why, "unknown-commitment") == 0 && !json_is_true(json_object_get(inf, "has_commit")))
        return with_commitment(t, inf) == 0 ? WP_OUT_RESEND : WP_OUT_KEEP;
    if (strcmp(why, "exhausted") == 0 || strcmp(why, "expired") == 0
        || strcmp(why, "forged") == 0 || strcmp(why, "wrong-vendor") == 0
        || strcmp(why, "unknown-commitment") == 0)
        return chain_update(t, chain, "dead") == 0 ? WP_OUT_REFUSED : WP_OUT_KEEP;
    return WP_OUT_REFUSED;
}
