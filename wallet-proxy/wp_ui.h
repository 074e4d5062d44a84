/*
 * wp_ui.h - the wallet's own web pages and JSON API, the PAC file and the
 * confirmation pages for held payments, served on the wallet's own origin
 * (wp_self_origin()). The proxy core routes a request here when its target is
 * in origin-form, or absolute-form with the wallet's own authority.
 *
 * Routes: GET / (the UI page), GET /proxy.pac, GET /confirm/<id>,
 * GET /api/balance, /api/history, /api/policy, /api/pending;
 * POST /api/policy, /api/topup, /api/pending/<id>/approve, /api/pending/<id>/decline.
 * State-changing requests need X-Wallet-Token equal to the session token and
 * Origin equal to wp_self_origin(); otherwise 403.
 *
 * Called on a connection thread; thread-safe. The body is the buffered request
 * body (may be NULL when len is 0). Fills page; always answers something.
 */
#ifndef WP_UI_H
#define WP_UI_H

#include "wp.h"
#include "wp_wallet.h"

/* Creates the session token and writes it to <state_dir>/ui.token (0600) for
 * the CLI. Returns 0, -1 with err. */
int wp_ui_init(const wp_config *cfg, char *err, size_t errlen);

void wp_ui_handle(wp_wallet *w, const char *method, const char *target,
                  const wp_hdr *hdrs, size_t nhdrs, const char *body, size_t len,
                  wp_page *page);

#endif
