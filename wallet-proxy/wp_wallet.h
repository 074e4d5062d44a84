/*
 * wp_wallet.h - the wallet as the daemon, the UI and the CLI see it: open and
 * close, crash recovery, and the JSON views and actions behind the web UI
 * (docs/WALLET-DESIGN.md, "UI API").
 *
 * One wp_wallet per daemon, shared by all connection threads; every function
 * is thread-safe. Returned json_t objects are new references owned by the
 * caller. Functions returning int give 0 on success and -1 on failure with a
 * human message in err (never containing secrets).
 */
#ifndef WP_WALLET_H
#define WP_WALLET_H

#include <jansson.h>
#include "wp.h"
#include "wp_pay.h"

/* Opens (creating on first use) the store in cfg->state_dir, reads the account
 * key, loads the policy. cfg must outlive the wallet. */
int wp_wallet_open(const wp_config *cfg, wp_wallet **out, char *err, size_t errlen);
void wp_wallet_close(wp_wallet *w);

/* Replays every payment left in flight by a crash (same credential, same
 * request), records the change/receipt or refusal it gets. Called once at
 * start, before listening. Returns the number of payments replayed, -1 on
 * a store failure. Payments whose vendor cannot be reached stay in flight. */
int wp_wallet_recover(wp_wallet *w);

/* {"broker": {"url":..., "account":..., "scrip": "0.93 USD", "scrip_units": 93000, "pieces": 2},
 *  "vendors": [{"vendor":"news.example", "host":"news.example:8080", "scrip":"0.04 USD",
 *               "scrip_units":4000, "pieces":3}],
 *  "chains": [{"vendor":..., "host":..., "unit":"0.001 USD", "n":1000, "used":12,
 *              "words_left":988, "expires": 1767225600}],
 *  "in_flight": 0,
 *  "spent_today": "0.02 USD", "spent_today_units": 2000} */
json_t *wp_wallet_balance(wp_wallet *w);

/* Newest first, at most limit entries:
 * [{"time":1767225600, "site":"news.example:8080", "url":"http://...", "method":"GET",
 *   "price":"0.001 USD", "price_units":100, "scheme":"millicent"|"payword"|"receipt",
 *   "status":"paid"|"refused:<reason>"|"declined"|"in-flight"}] */
json_t *wp_wallet_history(wp_wallet *w, size_t limit);

/* {"threshold":"0.01 USD", "site_budget":"0.50 USD", "daily_budget":"2.00 USD",
 *  "topup":"1.00 USD"} ; set accepts any subset of the members, validates all
 *  before changing any, and persists. */
json_t *wp_wallet_policy(wp_wallet *w);
int wp_wallet_set_policy(wp_wallet *w, const json_t *changes, char *err, size_t errlen);

/* Held payments: [{"id":"h12", "site":..., "url":..., "method":..., "price":...,
 *  "price_units":..., "reason":"above threshold"|"site budget"|"daily budget",
 *  "created":...}] */
json_t *wp_wallet_pending(wp_wallet *w);
/* approve != 0: the next request for that (site, method, target) within 10
 * minutes pays even though the policy would hold it; approve = 0: declined
 * (the browser gets a "declined" page for it for 10 minutes). */
int wp_wallet_decide(wp_wallet *w, const char *id, int approve, char *err, size_t errlen);
/* The held payment as JSON (same members as in wp_wallet_pending), NULL if unknown. */
json_t *wp_wallet_pending_get(wp_wallet *w, const char *id);

/* Buys broker scrip worth amount ("1.00 USD") from the account at the broker.
 * Returns the new balance view (as wp_wallet_balance) or NULL with err. */
json_t *wp_wallet_topup(wp_wallet *w, const char *amount, char *err, size_t errlen);

#endif
