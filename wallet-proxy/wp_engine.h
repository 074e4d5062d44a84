/*
 * wp_engine.h - internals shared by the payment engine's files (wp_pay.c,
 * wp_millicent.c, wp_payword.c, wp_policy.c, wp_wallet.c). Nothing outside
 * the engine includes it; the proxy core and the UI see wp_pay.h and
 * wp_wallet.h only.
 *
 * Locking: w->mu guards every read-modify-write of the store and the
 * reservation set; it is never held across a network call. w->buy_mu
 * serialises broker acquisitions (buy, exchange, certify, replays of pending
 * broker requests) and is taken before w->mu, never while holding it.
 *
 * Store records (JSON objects; see docs/wallet-proxy.md):
 *   WPS_SCRIP    'b'|'v' issuer \0 u64 id -> {kind, issuer, rec, value, cur, expiry,
 *                cid, state: free|inflight|dead, by, why}
 *   WPS_SECRET   issuer \0 u64 customer_id -> {secret}
 *   WPS_CHAIN    vendor \0 commit_id[32] -> {vendor, host, seed, n, next, unit, cur,
 *                expiry, commit, confirmed, dead, serial}
 *   WPS_INFLIGHT u64 id -> {id, scheme, vendor, method, url, host, target, hdr, cred,
 *                price, cur, day, hist, spec, created, piece | chain,i,k,has_commit}
 *   WPS_BREQ     request_id -> {ep, body, ctx, created}
 *   WPS_RECEIPT  H(host \0 target) -> {host, target, rec, expiry, price}
 *   WPS_OFFER    'E' H(host \0 method \0 target) -> {host, method, target, offer, expiry}
 *                'P' H(host \0 dirprefix) -> {host, prefix, vendor, price, cur, expiry}
 *   WPS_HOLD     "h<n>" -> {id, site, url, method, target, price, price_units, cur,
 *                reason, created, state: held|approved|declined|used, decided}
 *   WPS_HISTORY  u64 seq -> {time, site, url, method, price, price_units, charged_units,
 *                scheme, status}
 *   WPS_SPENT    "YYYY-MM-DD" \0 host ("" = all sites) -> {units}
 *   WPS_META     "policy", "pw_key" {pem}, "pw_cert" {cert, serial, expiry, credit,
 *                cur, committed}, "seq:<name>" counters
 */
#ifndef WP_ENGINE_H
#define WP_ENGINE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "mp.h"
#include "wp.h"
#include "wp_pay.h"
#include "wp_wallet.h"
#include "wp_store.h"
#include "wp_broker.h"

#define WP_SKEW          MP_PW_SKEW   /* never spend within this of an expiry */
#define WP_DECIDE_WINDOW 600          /* approvals and declines last 10 minutes */
#define WP_HOLD_LIFETIME 3600         /* undecided holds are listed this long */
#define WP_MC_PIECES     4            /* vendor scrip pieces per /exchange */
#define WP_MC_PIECE_MULT 10           /* a piece is worth 10 x the price */
#define WP_PW_MAX_N      1000         /* longest chain the wallet makes */
#define WP_HISTORY_KEEP  20000        /* history entries kept */
#define WP_KEY_MAX       512

typedef struct {
    mp_amount threshold;
    mp_amount site_budget;
    mp_amount daily_budget;
    mp_amount topup;
    uint8_t prefer;                   /* MP_SCHEME_MILLICENT or MP_SCHEME_PAYWORD */
} wp_policy;

struct wp_wallet {
    const wp_config *cfg;
    wp_store *st;
    wp_broker *broker;
    pthread_mutex_t mu;
    pthread_mutex_t buy_mu;
    wp_policy pol;                    /* under mu */
    uint64_t *resv;                   /* in-flight ids owned by live wp_pay handles */
    size_t nresv, capresv;
};

/* Outcome of one sent payment credential, as settled in the store. */
typedef enum {
    WP_OUT_PAID = 0,        /* consumed by the vendor (change/receipt kept) */
    WP_OUT_FORGED,          /* vendor served, but its reply did not verify: piece dead */
    WP_OUT_NOT_CHARGED,     /* no sign of consumption: piece released */
    WP_OUT_REFUSED,         /* 402/400 refusal; reason says which */
    WP_OUT_RESEND,          /* PayWord unknown-commitment: the new credential is in the record */
    WP_OUT_KEEP             /* 5xx or no answer: stays in flight for a replay */
} wp_outcome;

/* A payment written in flight, ready to be sent. */
typedef struct {
    uint64_t id;
    char hdr[32];
    char cred[MP_WIRE_TEXT_MAX + 1];
} wp_ready;

/* ---- small helpers (wp_pay.c) ------------------------------------------------ */
uint64_t wp_now(void);
void wp_day(uint64_t t, char out[11]);                   /* "YYYY-MM-DD" (UTC) */
const char *wp_amt(const mp_amount *a, char buf[MP_AMOUNT_STRMAX]);
int wp_b64(const uint8_t *p, size_t n, char *out, size_t cap);           /* 0 / -1 */
int wp_unb64(const char *t, uint8_t *out, size_t cap, size_t *n);        /* 0 / -1 */
void wp_hex(const uint8_t *p, size_t n, char *out);                      /* 2n+1 */
int wp_unhex(const char *t, uint8_t *out, size_t cap, size_t *n);
/* key = tag || SHA-256(parts joined with NUL); returns its length (33). */
size_t wp_hkey(uint8_t key[33], char tag, const char *const *parts, size_t nparts);
const char *wp_jstr(const json_t *o, const char *name);                  /* "" if absent */
uint64_t wp_ju64(const json_t *o, const char *name);
const char *wp_hdr_get(const wp_hdr *h, size_t n, const char *name);
/* Reservation set (call with w->mu held). */
int wp_resv_add(wp_wallet *w, uint64_t id);
void wp_resv_del(wp_wallet *w, uint64_t id);
int wp_resv_has(const wp_wallet *w, uint64_t id);

/* Writes the in-flight record (and its "in-flight" history entry) inside t;
 * the spent counters were claimed by the policy decision. rec holds the
 * scheme's members (piece or chain, i, k, has_commit) and is completed here.
 * r gets id, header and cred. */
int wp_inflight_write(wp_wallet *w, wp_txn *t, const wp_reqinfo *ri, const char *vendor,
                      const char *scheme, const mp_amount *price, const char *cred, int spec,
                      json_t *rec, wp_ready *r);
/* Settles in-flight payment id after an answer (status, hdrs) in one
 * transaction: scheme bookkeeping, receipt, history, spent counters. For
 * WP_OUT_RESEND, resend gets the new credential. reason (may be NULL) gets
 * the Payment-Error reason. -1 on a store failure (the payment then stays in
 * flight). */
int wp_settle(wp_wallet *w, uint64_t id, long status, const wp_hdr *hdrs, size_t n,
              wp_outcome *out, char *reason, size_t rlen, wp_ready *resend);

/* ---- Millicent (wp_millicent.c) ---------------------------------------------- */
/* Takes a free vendor piece (value >= price) and writes the payment in
 * flight. 0 done, 1 no usable piece (and may_buy = 0 or buying failed: err),
 * -1 error (err). */
int wp_mc_pay(wp_wallet *w, const wp_reqinfo *ri, const char *vendor, const mp_amount *price,
              int spec, int may_buy, wp_ready *r, char *err, size_t errlen);
/* Scheme part of wp_settle (inside t). *charged gets what the vendor took. */
wp_outcome wp_mc_settle(wp_wallet *w, wp_txn *t, json_t *inf, long status, const wp_hdr *hdrs,
                        size_t n, const char *reason, mp_amount *charged);
/* Buys broker scrip worth amount (under buy_mu). 0 / -1 with err. */
int wp_mc_buy(wp_wallet *w, const mp_amount *amount, char *err, size_t errlen);
/* Applies a broker answer to a pending /buy or /exchange inside t. */
int wp_mc_apply(wp_wallet *w, wp_txn *t, const char *ep, json_t *breq, json_t *resp);
/* Undoes a pending /exchange the broker refused (reason) inside t. */
int wp_mc_refused(wp_wallet *w, wp_txn *t, const char *ep, json_t *breq, const char *reason);

/* ---- PayWord (wp_payword.c) -------------------------------------------------- */
int wp_pw_pay(wp_wallet *w, const wp_reqinfo *ri, const mp_offer *o, wp_ready *r, char *err,
              size_t errlen);
wp_outcome wp_pw_settle(wp_wallet *w, wp_txn *t, json_t *inf, long status, const char *reason,
                        mp_amount *charged);
int wp_pw_apply(wp_wallet *w, wp_txn *t, json_t *breq, json_t *resp);

/* ---- durable broker requests (wp_wallet.c) ----------------------------------- */
/* Puts a pending broker request (fresh request_id into rid) inside t. */
int wp_breq_put(wp_txn *t, const char *ep, json_t *body, json_t *ctx,
                char rid[WP_REQUEST_ID_LEN + 1]);
/* Sends pending request rid and settles it: 0 applied, -1 not (err; the
 * request stays pending when no definite answer came). Call with buy_mu. */
int wp_breq_send(wp_wallet *w, const char *rid, char *err, size_t errlen);
/* Replays every pending broker request (call with buy_mu). Count or -1. */
int wp_breq_replay(wp_wallet *w);

/* ---- policy (wp_policy.c) ---------------------------------------------------- */
typedef enum { WP_POL_PAY = 0, WP_POL_APPROVED, WP_POL_HOLD, WP_POL_DECLINED } wp_pol_verdict;

int wp_policy_load(wp_wallet *w, char *err, size_t errlen);
/* Decides on paying price for (host, method, target) now (inside t, mu held).
 * reason gets the hold reason; hold_id the approved/declined/held id. */
wp_pol_verdict wp_policy_check(wp_wallet *w, wp_txn *t, const char *host, const char *method,
                               const char *target, const mp_amount *price, const char **reason,
                               char hold_id[32]);
/* Records a held payment (reusing an undecided one for the same request). */
int wp_hold_create(wp_wallet *w, wp_txn *t, const wp_reqinfo *ri, const mp_amount *price,
                   const char *reason, char id[32]);
/* Marks an approved hold used. */
int wp_hold_used(wp_wallet *w, wp_txn *t, const char *id);
/* Adds (sign > 0) or removes units to the per-day counters of host and of all. */
int wp_spent_add(wp_txn *t, const char *day, const char *host, uint64_t units, int sign);
uint64_t wp_spent_get(wp_txn *t, const char *day, const char *host);

#endif
