/*
 * wp_broker.h - the wallet's own HTTP client (libcurl easy handles): signed
 * JSON requests to the broker (PROTOCOL.md 8, MP1-HMAC with the account key)
 * and, for crash recovery, the replay of an in-flight payment to its vendor.
 *
 * Only cfg->broker_url is ever contacted for broker calls (never an offer's
 * broker_url: offers are unauthenticated). cfg->resolve entries apply to
 * every request, cfg->broker_ca_file to broker TLS.
 *
 * Thread-safe: every call makes its own curl handle. wp_broker owns a copy
 * of the account key and wipes it in wp_broker_free().
 */
#ifndef WP_BROKER_H
#define WP_BROKER_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "wp.h"

#define WP_BROKER_BODY_MAX ((size_t)1024 * 1024)
#define WP_REQUEST_ID_LEN 22     /* base64url of 16 random bytes */

typedef struct wp_broker wp_broker;

/* A broker answer. status 0: no HTTP answer (msg says why). json: the
 * parsed body when it was a JSON object. reason: the "reason" member of an
 * error answer ("" otherwise). */
typedef struct {
    long status;
    json_t *json;
    char reason[40];
    char msg[256];
} wp_bresp;

/* Parses cfg->broker_url (http or https; http is logged as unsafe) and keeps
 * key. -1 with err on a bad URL. */
int wp_broker_new(const wp_config *cfg, const uint8_t key[32], wp_broker **out, char *err,
                  size_t errlen);
void wp_broker_free(wp_broker *b);

/* The authority the broker is addressed with (the Host field curl sends),
 * e.g. "broker.example:8443": /exchange payments bind it. */
const char *wp_broker_authority(const wp_broker *b);
/* The request target of endpoint ep ("exchange" -> "/mp/exchange") into buf;
 * 0, or -1 when it does not fit. */
int wp_broker_target(const wp_broker *b, const char *ep, char *buf, size_t cap);

/* POSTs body (JSON text) to endpoint ep, signed. Returns 0 when an HTTP
 * answer arrived (r->status, r->json, r->reason), -1 when none did (r->msg).
 * The caller clears r with wp_bresp_clear(). */
int wp_broker_post(wp_broker *b, const char *ep, const char *body, wp_bresp *r);
void wp_bresp_clear(wp_bresp *r);

/* A fresh random request id (WP_REQUEST_ID_LEN characters + NUL). */
int wp_request_id(char out[WP_REQUEST_ID_LEN + 1]);

/* Replays a payment: sends method to url (absolute http URL) with the header
 * "name: value" and an empty body, reads the status and header fields and
 * drops the body. On 0: *status, and *hdrs and *nhdrs (malloc'ed; free with
 * wp_hdrs_free). -1 when no answer came (why in msg). */
int wp_http_replay(const wp_config *cfg, const char *method, const char *url,
                   const char *name, const char *value, long *status, wp_hdr **hdrs,
                   size_t *nhdrs, char *msg, size_t msglen);
void wp_hdrs_free(wp_hdr *hdrs, size_t n);

#endif
