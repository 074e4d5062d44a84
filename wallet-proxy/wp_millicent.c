/*
 * wp_millicent.c - the wallet's Millicent money (PROTOCOL.md 5.1-5.3, 6,
 * 7.8, 8.3, 8.4): broker scrip bought with /buy, vendor scrip obtained with
 * /exchange, one piece per concurrent request, change kept after checking
 * the vendor's mc_reply.
 *
 * Piece sizes (documented in docs/wallet-proxy.md): one /exchange asks for
 * up to WP_MC_PIECES pieces of WP_MC_PIECE_MULT x price each, fewer when
 * that exceeds the policy's top-up amount (then one piece of
 * max(price, topup)), and fewer again when the broker scrip at hand covers
 * fewer. Broker scrip is bought (max(topup, need)) only when no piece covers
 * one vendor piece.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include "wp_engine.h"

/* ---- keys and records ------------------------------------------------------------- */

static size_t scrip_key(uint8_t *key, char kind, const char *issuer, uint64_t id)
{
    size_t n = strlen(issuer);

    key[0] = (uint8_t)kind;
    memcpy(key + 1, issuer, n);
    key[1 + n] = 0;
    for (int i = 0; i < 8; i++)
        key[2 + n + i] = (uint8_t)(id >> (56 - 8 * i));
    return n + 10;
}

static size_t secret_key(uint8_t *key, const char *issuer, uint64_t cid)
{
    size_t n = strlen(issuer);

    memcpy(key, issuer, n);
    key[n] = 0;
    for (int i = 0; i < 8; i++)
        key[1 + n + i] = (uint8_t)(cid >> (56 - 8 * i));
    return n + 9;
}

static int piece_put(wp_txn *t, char kind, const mp_scrip *s)
{
    uint8_t buf[MP_WIRE_MAX], key[WP_KEY_MAX];
    char text[MP_WIRE_TEXT_MAX + 1], cid[24];
    size_t len;
    json_t *j;
    int rc;

    if (mp_scrip_encode(s, buf, sizeof buf, &len) != MP_OK
        || wp_b64(buf, len, text, sizeof text) != 0)
        return -1;
    snprintf(cid, sizeof cid, "%llu", (unsigned long long)s->customer_id);
    j = json_pack("{s:s%, s:s, s:s, s:I, s:s, s:I, s:s, s:s, s:I}", "kind", &kind, (size_t)1,
                  "issuer", s->vendor, "rec", text, "value", (json_int_t)s->value.units, "cur",
                  s->value.cur, "expiry", (json_int_t)s->expiry, "cid", cid, "state", "free",
                  "by", (json_int_t)0);
    if (j == NULL)
        return -1;
    rc = wp_store_put(t, WPS_SCRIP, key, scrip_key(key, kind, s->vendor, s->id), j);
    json_decref(j);
    return rc;
}

static int piece_decode(const json_t *p, mp_scrip *s)
{
    uint8_t buf[MP_WIRE_MAX];
    size_t len;

    if (wp_unb64(wp_jstr(p, "rec"), buf, sizeof buf, &len) != 0
        || mp_scrip_decode(buf, len, s) != MP_OK)
        return -1;
    return 0;
}

/* Sets a piece's state (free, inflight, dead) by its hex key. */
static int piece_state(wp_txn *t, const char *hexkey, const char *state, uint64_t by,
                       const char *why)
{
    uint8_t key[WP_KEY_MAX];
    size_t klen;
    json_t *p = NULL;
    int rc;

    if (wp_unhex(hexkey, key, sizeof key, &klen) != 0)
        return -1;
    rc = wp_store_get(t, WPS_SCRIP, key, klen, &p);
    if (rc != 0)
        return rc < 0 ? -1 : 0;   /* gone already: nothing to change */
    json_object_set_new(p, "state", json_string(state));
    json_object_set_new(p, "by", json_integer((json_int_t)by));
    if (why != NULL)
        json_object_set_new(p, "why", json_string(why));
    rc = wp_store_put(t, WPS_SCRIP, key, klen, p);
    json_decref(p);
    return rc;
}

static int piece_del(wp_txn *t, const char *hexkey)
{
    uint8_t key[WP_KEY_MAX];
    size_t klen;

    if (wp_unhex(hexkey, key, sizeof key, &klen) != 0)
        return -1;
    return wp_store_del(t, WPS_SCRIP, key, klen);
}

static int secret_put(wp_txn *t, const char *issuer, uint64_t cid, const uint8_t sec[MP_HASH_LEN])
{
    uint8_t key[WP_KEY_MAX];
    char text[64];
    json_t *j;
    int rc;

    if (wp_b64(sec, MP_HASH_LEN, text, sizeof text) != 0
        || (j = json_pack("{s:s}", "secret", text)) == NULL)
        return -1;
    rc = wp_store_put(t, WPS_SECRET, key, secret_key(key, issuer, cid), j);
    json_decref(j);
    OPENSSL_cleanse(text, sizeof text);
    return rc;
}

static int secret_get(wp_txn *t, const char *issuer, uint64_t cid, uint8_t out[MP_HASH_LEN])
{
    uint8_t key[WP_KEY_MAX];
    size_t n;
    json_t *j = NULL;
    int rc;

    rc = wp_store_get(t, WPS_SECRET, key, secret_key(key, issuer, cid), &j);
    if (rc != 0)
        return -1;
    rc = wp_unb64(wp_jstr(j, "secret"), out, MP_HASH_LEN, &n) == 0 && n == MP_HASH_LEN ? 0 : -1;
    json_decref(j);
    return rc;
}

/* ---- choosing a piece ------------------------------------------------------------------ */

typedef struct {
    const mp_amount *min;    /* value at least this (same currency) */
    int largest;             /* 1: the largest, 0: the smallest sufficient */
    uint64_t now;
    uint8_t key[WP_KEY_MAX];
    size_t klen;
    json_t *best;
    uint64_t best_value;
    uint64_t total;          /* free value seen */
} pick;

static int pick_visit(void *ctx, const uint8_t *key, size_t klen, json_t *p)
{
    pick *pk = ctx;
    uint64_t v = wp_ju64(p, "value");

    if (strcmp(wp_jstr(p, "state"), "free") != 0 || strcmp(wp_jstr(p, "cur"), pk->min->cur) != 0
        || wp_ju64(p, "expiry") <= pk->now + WP_SKEW)
        return 0;
    pk->total += v;
    if (v < pk->min->units)
        return 0;
    if (pk->best != NULL && (pk->largest ? v <= pk->best_value : v >= pk->best_value))
        return 0;
    if (klen > sizeof pk->key)
        return 0;
    json_decref(pk->best);
    pk->best = json_incref(p);
    pk->best_value = v;
    memcpy(pk->key, key, klen);
    pk->klen = klen;
    return 0;
}

static int pick_piece(wp_txn *t, char kind, const char *issuer, const mp_amount *min, int largest,
                      pick *pk)
{
    uint8_t prefix[WP_KEY_MAX];
    size_t n = issuer ? strlen(issuer) : 0;

    memset(pk, 0, sizeof *pk);
    pk->min = min;
    pk->largest = largest;
    pk->now = wp_now();
    prefix[0] = (uint8_t)kind;
    if (issuer != NULL) {
        memcpy(prefix + 1, issuer, n);
        prefix[1 + n] = 0;
        n++;
    }
    return wp_store_scan(t, WPS_SCRIP, prefix, n + 1, 0, pick_visit, pk);
}

/* Takes the smallest sufficient free piece of vendor and writes the payment
 * in flight (inside t). 0, 1 none, -1 error. */
static int take(wp_wallet *w, wp_txn *t, const wp_reqinfo *ri, const char *vendor,
                const mp_amount *price, int spec, wp_ready *r, char *err, size_t errlen)
{
    uint8_t csec[MP_HASH_LEN], buf[MP_WIRE_MAX];
    char cred[MP_WIRE_TEXT_MAX + 1], hexkey[2 * WP_KEY_MAX + 1];
    mp_mac *mac = NULL;
    mp_mc_payment pay;
    mp_request req;
    mp_scrip s;
    json_t *rec = NULL;
    size_t len;
    pick pk;
    int rv = -1;

    if (pick_piece(t, 'v', vendor, price, 0, &pk) != 0) {
        snprintf(err, errlen, "%s", wp_store_error());
        goto out;
    }
    if (pk.best == NULL) {
        rv = 1;
        goto out;
    }
    if (piece_decode(pk.best, &s) != 0 || secret_get(t, s.vendor, s.customer_id, csec) != 0) {
        snprintf(err, errlen, "wallet store: a scrip piece or its customer secret is unreadable");
        goto out;
    }
    req.method = ri->method;
    req.method_len = strlen(ri->method);
    req.host = ri->host;
    req.host_len = strlen(ri->host);
    req.target = ri->target;
    req.target_len = strlen(ri->target);
    if (mp_mac_new(csec, sizeof csec, &mac) != MP_OK
        || mp_mc_pay(mac, &s, csec, &req, price, &pay) != MP_OK
        || mp_mc_payment_encode(&pay, buf, sizeof buf, &len) != MP_OK
        || wp_b64(buf, len, cred, sizeof cred) != 0) {
        snprintf(err, errlen, "cannot build the Millicent payment (request too long?)");
        goto out;
    }
    wp_hex(pk.key, pk.klen, hexkey);
    if ((rec = json_pack("{s:s}", "piece", hexkey)) == NULL
        || wp_inflight_write(w, t, ri, vendor, "millicent", price, cred, spec, rec, r) != 0
        || piece_state(t, hexkey, "inflight", r->id, NULL) != 0) {
        snprintf(err, errlen, "%s", wp_store_error());
        goto out;
    }
    rv = 0;
out:
    mp_mac_free(mac);
    json_decref(pk.best);
    json_decref(rec);
    OPENSSL_cleanse(csec, sizeof csec);
    OPENSSL_cleanse(&pay, sizeof pay);
    return rv;
}

/* ---- broker: /buy and /exchange ------------------------------------------------------------ */

int wp_mc_buy(wp_wallet *w, const mp_amount *amount, char *err, size_t errlen)
{
    char a[MP_AMOUNT_STRMAX], rid[WP_REQUEST_ID_LEN + 1];
    json_t *body = json_pack("{s:s}", "amount", wp_amt(amount, a));
    json_t *ctx = json_pack("{s:I, s:s}", "amount", (json_int_t)amount->units, "cur", amount->cur);
    wp_txn *t = NULL;
    int rv = -1;

    if (body == NULL || ctx == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    pthread_mutex_lock(&w->mu);
    if (wp_store_begin(w->st, 0, &t) != 0 || wp_breq_put(t, "buy", body, ctx, rid) != 0
        || wp_store_commit(t) != 0) {
        if (t != NULL)
            wp_store_abort(t);
        t = NULL;
        pthread_mutex_unlock(&w->mu);
        snprintf(err, errlen, "%s", wp_store_error());
        goto out;
    }
    pthread_mutex_unlock(&w->mu);
    wp_log(WP_LOG_INFO, "WP00114 buying %s of broker scrip", a);
    rv = wp_breq_send(w, rid, err, errlen);
out:
    json_decref(body);
    json_decref(ctx);
    return rv;
}

/* Exchanges broker scrip for vendor scrip good for price (buy_mu held). */
static int acquire(wp_wallet *w, const char *vendor, const mp_amount *price, char *err,
                   size_t errlen)
{
    uint8_t csec[MP_HASH_LEN], buf[MP_WIRE_MAX];
    char target[700], cred[MP_WIRE_TEXT_MAX + 1], hexkey[2 * WP_KEY_MAX + 1];
    char a[MP_AMOUNT_STRMAX], rid[WP_REQUEST_ID_LEN + 1];
    mp_amount piece, need, topup, sum;
    mp_mac *mac = NULL;
    mp_mc_payment pay;
    mp_request req;
    mp_scrip s;
    json_t *amounts = NULL, *body = NULL, *ctx = NULL;
    wp_txn *t = NULL;
    uint64_t n = WP_MC_PIECES, i;
    size_t len;
    pick pk = { 0 };
    int locked = 0, rv = -1;

    pthread_mutex_lock(&w->mu);
    topup = w->pol.topup;
    pthread_mutex_unlock(&w->mu);
    if (mp_amount_mul(price, WP_MC_PIECE_MULT, &piece) != MP_OK) {
        snprintf(err, errlen, "price too large");
        goto out;
    }
    while (n > 1 && piece.units * n > topup.units)
        n--;
    if (piece.units * n > topup.units)
        piece.units = topup.units > price->units ? topup.units : price->units;
    need.units = piece.units * n;
    memcpy(need.cur, price->cur, sizeof need.cur);
    for (int round = 0; round < 2; round++) {
        pthread_mutex_lock(&w->mu);
        locked = 1;
        if (wp_store_begin(w->st, 1, &t) != 0 || pick_piece(t, 'b', NULL, &piece, 1, &pk) != 0) {
            snprintf(err, errlen, "%s", wp_store_error());
            goto out;
        }
        wp_store_abort(t);
        t = NULL;
        pthread_mutex_unlock(&w->mu);
        locked = 0;
        if (pk.best != NULL)
            break;
        if (round == 1) {
            snprintf(err, errlen, "no broker scrip after buying");
            goto out;
        }
        {
            mp_amount buy = topup.units >= need.units ? topup : need;

            memcpy(buy.cur, price->cur, sizeof buy.cur);
            if (wp_mc_buy(w, &buy, err, errlen) != 0)
                goto out;
        }
    }
    if (pk.best_value < need.units)
        n = pk.best_value / piece.units;
    if ((amounts = json_array()) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (i = 0; i < n; i++)
        json_array_append_new(amounts, json_string(wp_amt(&piece, a)));
    sum.units = piece.units * n;
    memcpy(sum.cur, price->cur, sizeof sum.cur);
    if (wp_broker_target(w->broker, "exchange", target, sizeof target) != 0) {
        snprintf(err, errlen, "broker URL too long");
        goto out;
    }
    req.method = "POST";
    req.method_len = 4;
    req.host = wp_broker_authority(w->broker);
    req.host_len = strlen(req.host);
    req.target = target;
    req.target_len = strlen(target);
    pthread_mutex_lock(&w->mu);
    locked = 1;
    if (wp_store_begin(w->st, 0, &t) != 0) {
        t = NULL;
        snprintf(err, errlen, "%s", wp_store_error());
        goto out;
    }
    if (piece_decode(pk.best, &s) != 0 || secret_get(t, s.vendor, s.customer_id, csec) != 0) {
        snprintf(err, errlen, "wallet store: a broker scrip piece or its secret is unreadable");
        goto out;
    }
    if (mp_mac_new(csec, sizeof csec, &mac) != MP_OK
        || mp_mc_pay(mac, &s, csec, &req, &sum, &pay) != MP_OK
        || mp_mc_payment_encode(&pay, buf, sizeof buf, &len) != MP_OK
        || wp_b64(buf, len, cred, sizeof cred) != 0) {
        snprintf(err, errlen, "cannot build the /exchange payment");
        goto out;
    }
    wp_hex(pk.key, pk.klen, hexkey);
    body = json_pack("{s:s, s:O, s:s}", "vendor", vendor, "amounts", amounts, "payment", cred);
    ctx = json_pack("{s:s, s:s, s:s}", "piece", hexkey, "payment", cred, "vendor", vendor);
    if (body == NULL || ctx == NULL || wp_breq_put(t, "exchange", body, ctx, rid) != 0
        || piece_state(t, hexkey, "inflight", 0, NULL) != 0) {
        snprintf(err, errlen, "cannot record the /exchange: %s", wp_store_error());
        goto out;
    }
    rv = wp_store_commit(t);
    t = NULL;
    if (rv != 0) {
        snprintf(err, errlen, "%s", wp_store_error());
        goto out;
    }
    pthread_mutex_unlock(&w->mu);
    locked = 0;
    wp_log(WP_LOG_INFO, "WP00115 exchanging broker scrip for %llu x %s of %s scrip",
           (unsigned long long)n, wp_amt(&piece, a), vendor);
    rv = wp_breq_send(w, rid, err, errlen);
out:
    if (t != NULL)
        wp_store_abort(t);
    if (locked)
        pthread_mutex_unlock(&w->mu);
    mp_mac_free(mac);
    json_decref(pk.best);
    json_decref(amounts);
    json_decref(body);
    json_decref(ctx);
    OPENSSL_cleanse(csec, sizeof csec);
    return rv;
}

static int has_piece(wp_wallet *w, const char *vendor, const mp_amount *price)
{
    wp_txn *t = NULL;
    pick pk;
    int has = 0;

    pthread_mutex_lock(&w->mu);
    if (wp_store_begin(w->st, 1, &t) == 0) {
        if (pick_piece(t, 'v', vendor, price, 0, &pk) == 0)
            has = pk.best != NULL;
        json_decref(pk.best);
        wp_store_abort(t);
    }
    pthread_mutex_unlock(&w->mu);
    return has;
}

int wp_mc_pay(wp_wallet *w, const wp_reqinfo *ri, const char *vendor, const mp_amount *price,
              int spec, int may_buy, wp_ready *r, char *err, size_t errlen)
{
    wp_txn *t = NULL;
    int rc = 1, attempt;

    for (attempt = 0; attempt < 3; attempt++) {
        pthread_mutex_lock(&w->mu);
        if (wp_store_begin(w->st, 0, &t) != 0) {
            pthread_mutex_unlock(&w->mu);
            snprintf(err, errlen, "%s", wp_store_error());
            return -1;
        }
        rc = take(w, t, ri, vendor, price, spec, r, err, errlen);
        if (rc == 0) {
            if (wp_store_commit(t) != 0) {
                snprintf(err, errlen, "%s", wp_store_error());
                rc = -1;
            } else if (wp_resv_add(w, r->id) != 0) {
                rc = -1;   /* stays in flight; recover replays it */
                snprintf(err, errlen, "out of memory");
            }
        } else {
            wp_store_abort(t);
        }
        pthread_mutex_unlock(&w->mu);
        if (rc <= 0)
            return rc;
        if (!may_buy || attempt == 2) {
            if (err[0] == '\0')
                snprintf(err, errlen, "no %s scrip at hand", vendor);
            return 1;
        }
        pthread_mutex_lock(&w->buy_mu);
        (void)wp_breq_replay(w);
        /* another thread may have exchanged while this one waited */
        if (!has_piece(w, vendor, price) && acquire(w, vendor, price, err, errlen) != 0) {
            pthread_mutex_unlock(&w->buy_mu);
            return -1;
        }
        pthread_mutex_unlock(&w->buy_mu);
    }
    return rc;
}

/* ---- applying broker answers ----------------------------------------------------------- */

static int get_scrip(const char *text, mp_scrip *s)
{
    uint8_t buf[MP_WIRE_MAX];
    size_t len;

    if (text == NULL || wp_unb64(text, buf, sizeof buf, &len) != 0
        || mp_scrip_decode(buf, len, s) != MP_OK)
        return -1;
    return 0;
}

static int apply_buy(wp_txn *t, json_t *breq, json_t *resp)
{
    json_t *ctx = json_object_get(breq, "ctx");
    uint8_t csec[MP_HASH_LEN];
    uint64_t cid = strtoull(wp_jstr(resp, "customer_id"), NULL, 10);
    size_t n;
    mp_scrip s;
    int rv = 0;

    if (get_scrip(wp_jstr(resp, "scrip"), &s) != 0
        || wp_unb64(wp_jstr(resp, "customer_secret"), csec, sizeof csec, &n) != 0
        || n != MP_HASH_LEN || s.customer_id != cid || s.value.units != wp_ju64(ctx, "amount")
        || strcmp(s.value.cur, wp_jstr(ctx, "cur")) != 0) {
        wp_log(WP_LOG_ERROR, "WP00116 broker /buy answer does not match the request "
               "(scrip, value or customer id); nothing stored");
        goto out;
    }
    if (piece_put(t, 'b', &s) != 0 || secret_put(t, s.vendor, s.customer_id, csec) != 0)
        rv = -1;
out:
    OPENSSL_cleanse(csec, sizeof csec);
    return rv;
}

static int apply_exchange(wp_wallet *w, wp_txn *t, json_t *breq, json_t *resp)
{
    json_t *ctx = json_object_get(breq, "ctx");
    json_t *body = json_loads(wp_jstr(breq, "body"), 0, NULL);   /* the text sent */
    json_t *list = json_object_get(resp, "scrip"), *want = json_object_get(body, "amounts");
    const char *vendor = wp_jstr(ctx, "vendor");
    uint8_t csec[MP_HASH_LEN], bsec[MP_HASH_LEN], buf[MP_WIRE_MAX];
    uint64_t cid = strtoull(wp_jstr(resp, "customer_id"), NULL, 10);
    mp_mac *mac = NULL;
    mp_mc_payment pay;
    mp_mc_reply rep;
    mp_amount a;
    mp_scrip s;
    size_t i, n, len;
    int rv = -1, have_sec;

    have_sec = wp_unb64(wp_jstr(resp, "customer_secret"), csec, sizeof csec, &n) == 0
               && n == MP_HASH_LEN;
    if (!have_sec || !json_is_array(list) || !json_is_array(want)
        || json_array_size(list) != json_array_size(want))
        wp_log(WP_LOG_ERROR, "WP00117 broker /exchange answer for %s is malformed; "
               "keeping what verifies", vendor);
    for (i = 0; have_sec && json_is_array(list) && i < json_array_size(list); i++) {
        const char *wa = json_string_value(json_array_get(want, i));

        if (get_scrip(json_string_value(json_array_get(list, i)), &s) != 0
            || strcmp(s.vendor, vendor) != 0 || s.customer_id != cid || wa == NULL
            || mp_amount_parse(wa, strlen(wa), &a) != MP_OK || a.units != s.value.units) {
            wp_log(WP_LOG_ERROR, "WP00117 broker /exchange: scrip %zu for %s does not match "
                   "the request; dropped", i, vendor);
            continue;
        }
        if (piece_put(t, 'v', &s) != 0)
            goto out;
    }
    if (have_sec && secret_put(t, vendor, cid, csec) != 0)
        goto out;
    /* the broker's change: an mc_reply under the broker scrip's customer secret */
    if (wp_unb64(wp_jstr(ctx, "payment"), buf, sizeof buf, &len) != 0
        || mp_mc_payment_decode(buf, len, &pay) != MP_OK)
        goto out;
    if (secret_get(t, pay.scrip.vendor, pay.scrip.customer_id, bsec) != 0
        || wp_unb64(wp_jstr(resp, "change"), buf, sizeof buf, &len) != 0
        || mp_mc_reply_decode(buf, len, &rep) != MP_OK || mp_mac_new(bsec, sizeof bsec, &mac) != MP_OK
        || mp_mc_reply_check(mac, &rep, &pay, bsec) != MP_OK
        || (rep.has_change && strcmp(rep.change.vendor, pay.scrip.vendor) != 0)) {
        wp_log(WP_LOG_ERROR, "WP00104 broker /exchange change does not verify (treated as "
               "forged); the broker scrip piece is kept dead");
        rv = piece_state(t, wp_jstr(ctx, "piece"), "dead", 0, "forged change");
        goto out;
    }
    if (rep.has_change && piece_put(t, 'b', &rep.change) != 0)
        goto out;
    rv = piece_del(t, wp_jstr(ctx, "piece"));
out:
    (void)w;
    json_decref(body);
    mp_mac_free(mac);
    OPENSSL_cleanse(csec, sizeof csec);
    OPENSSL_cleanse(bsec, sizeof bsec);
    return rv;
}

int wp_mc_apply(wp_wallet *w, wp_txn *t, const char *ep, json_t *breq, json_t *resp)
{
    if (strcmp(ep, "buy") == 0)
        return apply_buy(t, breq, resp);
    return apply_exchange(w, t, breq, resp);
}

int wp_mc_refused(wp_wallet *w, wp_txn *t, const char *ep, json_t *breq, const char *reason)
{
    const char *piece = wp_jstr(json_object_get(breq, "ctx"), "piece");

    (void)w;
    if (strcmp(ep, "exchange") != 0 || piece[0] == '\0')
        return 0;
    if (strcmp(reason, "already-spent") == 0 || strcmp(reason, "forged") == 0
        || strcmp(reason, "expired") == 0)
        return piece_state(t, piece, "dead", 0, reason);
    return piece_state(t, piece, "free", 0, NULL);
}

/* ---- settling a vendor payment ------------------------------------------------------ */

wp_outcome wp_mc_settle(wp_wallet *w, wp_txn *t, json_t *inf, long status, const wp_hdr *hdrs,
                        size_t n, const char *reason, mp_amount *charged)
{
    const char *piece = wp_jstr(inf, "piece"), *pc = wp_hdr_get(hdrs, n, "Payment-Change");
    uint8_t csec[MP_HASH_LEN], buf[MP_WIRE_MAX];
    mp_mac *mac = NULL;
    mp_mc_payment pay;
    mp_mc_reply rep;
    size_t len;
    wp_outcome out = WP_OUT_KEEP;

    (void)w;
    if (wp_unb64(wp_jstr(inf, "cred"), buf, sizeof buf, &len) != 0
        || mp_mc_payment_decode(buf, len, &pay) != MP_OK)
        goto out;   /* cannot happen: we wrote it; keep it in flight for a look */
    *charged = pay.price;
    if (pc != NULL) {
        if (secret_get(t, pay.scrip.vendor, pay.scrip.customer_id, csec) == 0
            && wp_unb64(pc, buf, sizeof buf, &len) == 0
            && mp_mc_reply_decode(buf, len, &rep) == MP_OK
            && mp_mac_new(csec, sizeof csec, &mac) == MP_OK
            && mp_mc_reply_check(mac, &rep, &pay, csec) == MP_OK
            && (!rep.has_change || strcmp(rep.change.vendor, pay.scrip.vendor) == 0)) {
            if ((rep.has_change && piece_put(t, 'v', &rep.change) != 0) || piece_del(t, piece) != 0)
                goto out;
            *charged = rep.charged;
            out = WP_OUT_PAID;
            goto out;
        }
        wp_log(WP_LOG_ERROR, "WP00103 Payment-Change from %s for %s does not verify (MAC, echo, "
               "customer id or value): treated as forged; the scrip piece is kept dead",
               wp_jstr(inf, "host"), wp_jstr(inf, "target"));
        if (piece_state(t, piece, "dead", 0, "forged reply") == 0)
            out = WP_OUT_FORGED;
        goto out;
    }
    if (status >= 500)
        goto out;   /* WP_OUT_KEEP */
    if (status == 402 || status == 400) {
        const char *why = status == 400 ? "malformed" : reason ? reason : "";

        if (strcmp(why, "already-spent") == 0 || strcmp(why, "forged") == 0
            || strcmp(why, "expired") == 0 || strcmp(why, "wrong-vendor") == 0) {
            if (piece_state(t, piece, "dead", 0, why) == 0)
                out = WP_OUT_REFUSED;
        } else if (piece_state(t, piece, "free", 0, NULL) == 0) {
            out = WP_OUT_REFUSED;
        }
        goto out;
    }
    /* No Payment-Change. A vendor that takes a Millicent payment always
     * answers with one (PROTOCOL.md 7.6), so a success (2xx) to a payment made
     * for this very target's offer without it is a vendor keeping the money
     * and the change: the piece is written off (kept as dead, never used
     * again) and the whole piece counts against the budgets, so a dishonest
     * vendor cannot drain the wallet below the budget's radar. A 3xx/4xx
     * (e.g. a 404 the vendor does not charge) or an up-front payment on a
     * page that turned out to be free was not consumed: the piece is freed. */
    if (status >= 200 && status < 300 && !json_is_true(json_object_get(inf, "spec"))) {
        wp_log(WP_LOG_ERROR, "WP00124 %s served %s for a payment without Payment-Change: the "
               "scrip piece is written off and counts as spent", wp_jstr(inf, "host"),
               wp_jstr(inf, "target"));
        if (piece_state(t, piece, "dead", 0, "no change") == 0) {
            *charged = pay.scrip.value;
            out = WP_OUT_FORGED;
        }
        goto out;
    }
    if (piece_state(t, piece, "free", 0, NULL) == 0)
        out = WP_OUT_NOT_CHARGED;
out:
    mp_mac_free(mac);
    OPENSSL_cleanse(csec, sizeof csec);
    OPENSSL_cleanse(&pay, sizeof pay);
    return out;
}
