/*
 * wp_policy.c - what the user allows the wallet to pay: the per-request
 * threshold, per-site and daily budgets (per UTC day, counted when a
 * payment is made and given back when it was not charged), the top-up
 * amount, the preferred scheme; held payments and the user's decisions on
 * them. Also the policy and held-payment parts of wp_wallet.h.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "wp_engine.h"

static int parse_amt(const char *s, mp_amount *out)
{
    return s != NULL && mp_amount_parse(s, strlen(s), out) == MP_OK ? 0 : -1;
}

/* Applies the members of j present to p; all or nothing. */
static int policy_apply(wp_policy *p, const json_t *j, char *err, size_t errlen)
{
    static const char *const names[4] = { "threshold", "site_budget", "daily_budget", "topup" };
    wp_policy n = *p;
    mp_amount *slots[4] = { &n.threshold, &n.site_budget, &n.daily_budget, &n.topup };
    const char *key;
    json_t *v;
    int i, known;

    if (!json_is_object(j)) {
        snprintf(err, errlen, "policy: a JSON object expected");
        return -1;
    }
    json_object_foreach((json_t *)j, key, v) {
        known = 0;
        for (i = 0; i < 4; i++)
            if (strcmp(key, names[i]) == 0) {
                known = 1;
                if (!json_is_string(v) || parse_amt(json_string_value(v), slots[i]) != 0) {
                    snprintf(err, errlen, "policy: %s: an amount such as \"0.50 USD\"", key);
                    return -1;
                }
            }
        if (strcmp(key, "prefer") == 0) {
            known = 1;
            if (json_is_string(v) && strcmp(json_string_value(v), "millicent") == 0)
                n.prefer = MP_SCHEME_MILLICENT;
            else if (json_is_string(v) && strcmp(json_string_value(v), "payword") == 0)
                n.prefer = MP_SCHEME_PAYWORD;
            else {
                snprintf(err, errlen, "policy: prefer: \"millicent\" or \"payword\"");
                return -1;
            }
        }
        if (!known) {
            snprintf(err, errlen, "policy: unknown member %s", key);
            return -1;
        }
    }
    if (strcmp(n.threshold.cur, n.site_budget.cur) != 0 || strcmp(n.threshold.cur, n.daily_budget.cur) != 0
        || strcmp(n.threshold.cur, n.topup.cur) != 0) {
        snprintf(err, errlen, "policy: all amounts must be in one currency");
        return -1;
    }
    if (n.topup.units == 0) {
        snprintf(err, errlen, "policy: topup must be above zero");
        return -1;
    }
    *p = n;
    return 0;
}

static json_t *policy_json(const wp_policy *p)
{
    char a[4][MP_AMOUNT_STRMAX];

    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "threshold", wp_amt(&p->threshold, a[0]),
                     "site_budget", wp_amt(&p->site_budget, a[1]), "daily_budget",
                     wp_amt(&p->daily_budget, a[2]), "topup", wp_amt(&p->topup, a[3]), "prefer",
                     p->prefer == MP_SCHEME_PAYWORD ? "payword" : "millicent");
}

int wp_policy_load(wp_wallet *w, char *err, size_t errlen)
{
    const wp_config *c = w->cfg;
    wp_policy p;
    wp_txn *t = NULL;
    json_t *j = NULL;
    int rc, rv = -1;

    memset(&p, 0, sizeof p);
    p.prefer = MP_SCHEME_MILLICENT;
    if (parse_amt(c->threshold[0] ? c->threshold : "0.01 USD", &p.threshold) != 0
        || parse_amt(c->site_budget[0] ? c->site_budget : "0.50 USD", &p.site_budget) != 0
        || parse_amt(c->daily_budget[0] ? c->daily_budget : "2.00 USD", &p.daily_budget) != 0
        || parse_amt(c->topup[0] ? c->topup : "1.00 USD", &p.topup) != 0) {
        snprintf(err, errlen, "policy defaults in the configuration are not amounts");
        goto out;
    }
    if (wp_store_begin(w->st, 1, &t) != 0) {
        snprintf(err, errlen, "%s", wp_store_error());
        goto out;
    }
    rc = wp_store_get(t, WPS_META, "policy", 6, &j);
    if (rc < 0) {
        snprintf(err, errlen, "%s", wp_store_error());
        goto out;
    }
    if (rc == 0 && policy_apply(&p, j, err, errlen) != 0)
        goto out;
    if (rc == 1 && (j = json_object()) != NULL && policy_apply(&p, j, err, errlen) != 0)
        goto out;
    w->pol = p;
    rv = 0;
out:
    json_decref(j);
    wp_store_abort(t);
    return rv;
}

json_t *wp_wallet_policy(wp_wallet *w)
{
    wp_policy p;

    pthread_mutex_lock(&w->mu);
    p = w->pol;
    pthread_mutex_unlock(&w->mu);
    return policy_json(&p);
}

int wp_wallet_set_policy(wp_wallet *w, const json_t *changes, char *err, size_t errlen)
{
    wp_policy p;
    wp_txn *t = NULL;
    json_t *j = NULL;
    int rv = -1;

    pthread_mutex_lock(&w->mu);
    p = w->pol;
    if (policy_apply(&p, changes, err, errlen) != 0)
        goto out;
    if ((j = policy_json(&p)) == NULL || wp_store_begin(w->st, 0, &t) != 0
        || wp_store_put(t, WPS_META, "policy", 6, j) != 0) {
        snprintf(err, errlen, "%s", wp_store_error());
        goto out;
    }
    rv = wp_store_commit(t);
    t = NULL;
    if (rv != 0) {
        snprintf(err, errlen, "%s", wp_store_error());
        goto out;
    }
    w->pol = p;
    wp_log(WP_LOG_INFO, "WP00119 policy changed");
out:
    if (t != NULL)
        wp_store_abort(t);
    pthread_mutex_unlock(&w->mu);
    json_decref(j);
    return rv;
}

/* ---- spent counters ---------------------------------------------------------------------- */

static size_t spent_key(uint8_t *key, const char *day, const char *host)
{
    size_t d = strlen(day), h = strlen(host);

    memcpy(key, day, d);
    key[d] = 0;
    memcpy(key + d + 1, host, h);
    return d + 1 + h;
}

uint64_t wp_spent_get(wp_txn *t, const char *day, const char *host)
{
    uint8_t key[WP_KEY_MAX];
    json_t *j = NULL;
    uint64_t v = 0;

    if (strlen(host) > 300)
        return 0;
    if (wp_store_get(t, WPS_SPENT, key, spent_key(key, day, host), &j) == 0)
        v = wp_ju64(j, "units");
    json_decref(j);
    return v;
}

static int spent_one(wp_txn *t, const char *day, const char *host, uint64_t units, int sign)
{
    uint8_t key[WP_KEY_MAX];
    uint64_t v = wp_spent_get(t, day, host);
    size_t klen = spent_key(key, day, host);
    json_t *j;
    int rc;

    if (sign > 0)
        v = v + units > MP_AMOUNT_MAX ? MP_AMOUNT_MAX : v + units;
    else
        v = v > units ? v - units : 0;
    if ((j = json_pack("{s:I}", "units", (json_int_t)v)) == NULL)
        return -1;
    rc = wp_store_put(t, WPS_SPENT, key, klen, j);
    json_decref(j);
    return rc;
}

int wp_spent_add(wp_txn *t, const char *day, const char *host, uint64_t units, int sign)
{
    if (strlen(host) > 300)
        return -1;
    if (units == 0)
        return 0;
    if (spent_one(t, day, host, units, sign) != 0 || spent_one(t, day, "", units, sign) != 0)
        return -1;
    return 0;
}

/* ---- holds ------------------------------------------------------------------------------ */

typedef struct {
    const char *host, *method, *target;
    uint64_t now;
    json_t *decided;    /* newest approval/decline within the window */
    json_t *held;       /* an undecided hold for the request */
} hold_find;

static int hold_visit(void *ctx, const uint8_t *key, size_t klen, json_t *h)
{
    hold_find *f = ctx;
    const char *state = wp_jstr(h, "state");

    (void)key;
    (void)klen;
    if (strcmp(wp_jstr(h, "site"), f->host) != 0 || strcmp(wp_jstr(h, "method"), f->method) != 0
        || strcmp(wp_jstr(h, "target"), f->target) != 0)
        return 0;
    if ((strcmp(state, "approved") == 0 || strcmp(state, "declined") == 0)
        && wp_ju64(h, "decided") + WP_DECIDE_WINDOW > f->now
        && (f->decided == NULL || wp_ju64(h, "decided") >= wp_ju64(f->decided, "decided"))) {
        json_decref(f->decided);
        f->decided = json_incref(h);
    }
    if (strcmp(state, "held") == 0 && wp_ju64(h, "created") + WP_HOLD_LIFETIME > f->now) {
        json_decref(f->held);
        f->held = json_incref(h);
    }
    return 0;
}

static int hold_lookup(wp_txn *t, const char *host, const char *method, const char *target,
                       hold_find *f)
{
    memset(f, 0, sizeof *f);
    f->host = host;
    f->method = method;
    f->target = target;
    f->now = wp_now();
    return wp_store_scan(t, WPS_HOLD, NULL, 0, 0, hold_visit, f);
}

wp_pol_verdict wp_policy_check(wp_wallet *w, wp_txn *t, const char *host, const char *method,
                               const char *target, const mp_amount *price, const char **reason,
                               char hold_id[32])
{
    char day[11];
    hold_find f;
    wp_pol_verdict v = WP_POL_HOLD;

    *reason = "above threshold";
    hold_id[0] = '\0';
    if (hold_lookup(t, host, method, target, &f) == 0 && f.decided != NULL) {
        snprintf(hold_id, 32, "%s", wp_jstr(f.decided, "id"));
        if (strcmp(wp_jstr(f.decided, "state"), "declined") == 0) {
            v = WP_POL_DECLINED;
            goto out;
        }
        /* approved: at most the price the user saw */
        if (strcmp(wp_jstr(f.decided, "cur"), price->cur) == 0
            && price->units <= wp_ju64(f.decided, "price_units")) {
            v = WP_POL_APPROVED;
            goto out;
        }
        hold_id[0] = '\0';
    }
    if (strcmp(price->cur, w->pol.threshold.cur) != 0)
        goto out;
    if (price->units > w->pol.threshold.units)
        goto out;
    wp_day(wp_now(), day);
    if (wp_spent_get(t, day, host) + price->units > w->pol.site_budget.units) {
        *reason = "site budget";
        goto out;
    }
    if (wp_spent_get(t, day, "") + price->units > w->pol.daily_budget.units) {
        *reason = "daily budget";
        goto out;
    }
    v = WP_POL_PAY;
out:
    json_decref(f.decided);
    json_decref(f.held);
    return v;
}

int wp_hold_create(wp_wallet *w, wp_txn *t, const wp_reqinfo *ri, const mp_amount *price,
                   const char *reason, char id[32])
{
    char a[MP_AMOUNT_STRMAX];
    hold_find f;
    uint64_t seq;
    json_t *h = NULL;
    int rv = -1;

    (void)w;
    if (hold_lookup(t, ri->host, ri->method, ri->target, &f) != 0)
        return -1;
    if (f.held != NULL && wp_ju64(f.held, "price_units") == price->units
        && strcmp(wp_jstr(f.held, "cur"), price->cur) == 0) {
        snprintf(id, 32, "%s", wp_jstr(f.held, "id"));
        rv = 0;
        goto out;
    }
    if (wp_store_next(t, "hold", &seq) != 0)
        goto out;
    snprintf(id, 32, "h%llu", (unsigned long long)seq);
    h = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:I, s:s, s:I}", "id", id, "site",
                  ri->host, "url", ri->url ? ri->url : "", "method", ri->method, "target",
                  ri->target, "price", wp_amt(price, a), "price_units", (json_int_t)price->units,
                  "cur", price->cur, "reason", reason, "created", (json_int_t)wp_now(), "state",
                  "held", "decided", (json_int_t)0);
    if (h == NULL || wp_store_put(t, WPS_HOLD, id, strlen(id), h) != 0)
        goto out;
    wp_log(WP_LOG_INFO, "WP00109 payment of %s to %s held (%s): %s", a, ri->host, reason, id);
    rv = 0;
out:
    json_decref(f.decided);
    json_decref(f.held);
    json_decref(h);
    return rv;
}

int wp_hold_used(wp_wallet *w, wp_txn *t, const char *id)
{
    json_t *h = NULL;
    int rc;

    (void)w;
    if (wp_store_get(t, WPS_HOLD, id, strlen(id), &h) != 0)
        return -1;
    json_object_set_new(h, "state", json_string("used"));
    rc = wp_store_put(t, WPS_HOLD, id, strlen(id), h);
    json_decref(h);
    return rc;
}

/* ---- wp_wallet.h: held payments ------------------------------------------------------- */

static json_t *hold_view(const json_t *h)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:I}", "id", wp_jstr(h, "id"), "site",
                     wp_jstr(h, "site"), "url", wp_jstr(h, "url"), "method", wp_jstr(h, "method"),
                     "price", wp_jstr(h, "price"), "price_units",
                     (json_int_t)wp_ju64(h, "price_units"), "reason", wp_jstr(h, "reason"),
                     "created", (json_int_t)wp_ju64(h, "created"));
}

typedef struct {
    json_t *list;
    uint64_t now;
} pend_ctx;

static int pend_visit(void *ctx, const uint8_t *key, size_t klen, json_t *h)
{
    pend_ctx *pc = ctx;

    (void)key;
    (void)klen;
    if (strcmp(wp_jstr(h, "state"), "held") == 0
        && wp_ju64(h, "created") + WP_HOLD_LIFETIME > pc->now)
        json_array_append_new(pc->list, hold_view(h));
    return 0;
}

json_t *wp_wallet_pending(wp_wallet *w)
{
    pend_ctx pc = { json_array(), wp_now() };
    wp_txn *t = NULL;

    if (pc.list == NULL)
        return NULL;
    if (wp_store_begin(w->st, 1, &t) != 0
        || wp_store_scan(t, WPS_HOLD, NULL, 0, 0, pend_visit, &pc) != 0) {
        json_decref(pc.list);
        pc.list = NULL;
    }
    wp_store_abort(t);
    return pc.list;
}

json_t *wp_wallet_pending_get(wp_wallet *w, const char *id)
{
    wp_txn *t = NULL;
    json_t *h = NULL, *v = NULL;

    if (id == NULL || strlen(id) > 30)
        return NULL;
    if (wp_store_begin(w->st, 1, &t) == 0 && wp_store_get(t, WPS_HOLD, id, strlen(id), &h) == 0)
        v = hold_view(h);
    json_decref(h);
    wp_store_abort(t);
    return v;
}

int wp_wallet_decide(wp_wallet *w, const char *id, int approve, char *err, size_t errlen)
{
    wp_txn *t = NULL;
    json_t *h = NULL;
    int rc, rv = -1;

    if (id == NULL || strlen(id) > 30) {
        snprintf(err, errlen, "no such held payment");
        return -1;
    }
    pthread_mutex_lock(&w->mu);
    if (wp_store_begin(w->st, 0, &t) != 0) {
        snprintf(err, errlen, "%s", wp_store_error());
        goto out;
    }
    rc = wp_store_get(t, WPS_HOLD, id, strlen(id), &h);
    if (rc != 0 || strcmp(wp_jstr(h, "state"), "held") != 0) {
        snprintf(err, errlen, rc < 0 ? "wallet store unreadable"
                                     : "no such held payment, or already decided");
        goto out;
    }
    json_object_set_new(h, "state", json_string(approve ? "approved" : "declined"));
    json_object_set_new(h, "decided", json_integer((json_int_t)wp_now()));
    if (wp_store_put(t, WPS_HOLD, id, strlen(id), h) != 0) {
        snprintf(err, errlen, "%s", wp_store_error());
        goto out;
    }
    rc = wp_store_commit(t);
    t = NULL;
    if (rc != 0) {
        snprintf(err, errlen, "%s", wp_store_error());
        goto out;
    }
    wp_log(WP_LOG_INFO, "WP00120 held payment %s %s", id, approve ? "approved" : "declined");
    rv = 0;
out:
    if (t != NULL)
        wp_store_abort(t);
    pthread_mutex_unlock(&w->mu);
    json_decref(h);
    return rv;
}
