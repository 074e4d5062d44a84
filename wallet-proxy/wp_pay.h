/*
 * wp_pay.h - the payment engine as the proxy core sees it.
 *
 * For every request forwarded upstream the proxy core calls, on its own
 * connection thread:
 *
 *   p = wp_pay_begin(w, &ri, &cred);       maybe a credential to send
 *   loop:
 *     send the request (+ cred header if cred.name) upstream
 *     transport error -> wp_pay_transport_failed(p, &page): answer page; stop
 *     final (non-1xx) response headers arrive ->
 *        a = wp_pay_response(p, status, hdrs, n, &cred, &page)
 *        WP_PAY_DELIVER: pass the upstream response to the browser
 *        WP_PAY_RETRY:   discard the upstream body, resend with cred (at most
 *                        WP_PAY_MAX_ROUNDS rounds in all; the engine never asks
 *                        for more)
 *        WP_PAY_PAGE:    discard the upstream body, answer with page
 *   wp_pay_end(p)
 *
 * The engine writes every payment to the wallet store as "in flight" before
 * handing its credential out, and records its outcome (change, receipt,
 * refusal) in wp_pay_response() before returning DELIVER, so kill -9 at any
 * point loses nothing (in-flight payments are replayed by wp_wallet_recover).
 *
 * wp_pay_begin never fails: on any internal error it returns a handle that
 * sends the request unpaid. cred strings are owned by p and valid until the
 * next call on p. All functions are thread-safe for distinct p.
 */
#ifndef WP_PAY_H
#define WP_PAY_H

#include "wp.h"

#define WP_PAY_MAX_ROUNDS 4

typedef struct wp_wallet wp_wallet;
typedef struct wp_pay wp_pay;

typedef struct {
    const char *method;      /* as the browser sent it */
    const char *host;        /* authority sent upstream (Host), lower case, with ":port" if not 80 */
    const char *target;      /* origin-form path and query exactly as sent */
    const char *url;         /* absolute URL, for history and pages */
    int has_authorization;   /* the browser's request carries Authorization */
} wp_reqinfo;

typedef struct {
    const char *name;        /* NULL = send nothing; "Authorization" or "Payment-Authorization" */
    const char *value;       /* "Payment <base64url>" */
} wp_cred;

typedef enum { WP_PAY_DELIVER = 0, WP_PAY_RETRY, WP_PAY_PAGE } wp_pay_action;

wp_pay *wp_pay_begin(wp_wallet *w, const wp_reqinfo *ri, wp_cred *cred);
wp_pay_action wp_pay_response(wp_pay *p, int status, const wp_hdr *hdrs, size_t nhdrs,
                              wp_cred *cred, wp_page *page);
void wp_pay_transport_failed(wp_pay *p, const char *why, wp_page *page);
void wp_pay_end(wp_pay *p);

#endif
