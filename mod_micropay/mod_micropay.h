/*
 * mod_micropay.h - what the module's files share.
 *
 * The module is glue: payment logic lives in libmp, state in the LMDB
 * store (mod_micropay_store.c). Files:
 *   mod_micropay.c           module record, hooks, directive table
 *   mod_micropay_config.c    per-server and per-directory configuration,
 *                            loading secrets and broker keys at startup
 *   mod_micropay_request.c   the payment path (fixups hook)
 *   mod_micropay_body.c      the body of a paid request: read before the
 *                            decision (a payment is bound to it), replayed
 *                            to the handler by an input filter
 *   mod_micropay_price.c     the price of a request: the price table, keyed
 *                            by the resource served, else MicropayPrice
 *   mod_micropay_response.c  402 offers, failure answers, paid-response
 *                            headers; the one place statuses become HTTP
 *
 * Log lines carry ids MP00001.. (see docs/mod_micropay.md, "Log messages").
 */
#ifndef MOD_MICROPAY_H
#define MOD_MICROPAY_H

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_thread_mutex.h"
#include "util_filter.h"
#include "mp.h"
#include "mod_micropay_store.h"
#include "mod_micropay_broker.h"

extern module AP_MODULE_DECLARE_DATA micropay_module;

#define MP_UNSET (-1)

/* Per virtual host: who the vendor is and what it holds. */
typedef struct {
    const char *vendor;          /* MicropayVendor */
    const char *secrets_file;    /* MicropaySecretsFile */
    const char *store_dir;       /* MicropayStore */
    int         store_sync;      /* MicropayStoreSync, MP_UNSET */
    apr_int64_t store_size;      /* MicropayStoreSize MiB, -1 unset */
    const char *broker_url;      /* MicropayBrokerURL */
    apr_array_header_t *trust;   /* MicropayTrustBroker: mpx_trust_conf */
    apr_int64_t pw_grace;        /* MicropayPayWordGrace seconds, -1 unset */
    apr_int64_t max_body;        /* MicropayMaxBody bytes, -1 unset */
    mpx_broker_conf *broker;     /* MicropayBroker*: this server is a broker */
    int         pw_http_allowed; /* some section of it says MicropayPayWordOverHTTP On */

    /* Filled at post_config (parent, as root) and after fork (child). */
    mp_mc_issuer *issuer;        /* template; each thread dups its own */
    mp_mac       *receipt_key;   /* template */
    mp_mac       *receipt_prev;  /* template: the receipt secret before it, or NULL */
    uint64_t      receipt_prev_retire; /* its retire= time, 0 = none */
    mp_pw_trust   pw_trust;
    uint16_t      change_series; /* newest scrip series: change is minted there */
    uint64_t      change_retire; /* when change_series retires, 0 = never */
    int           n_own;         /* our scrip series (not delegated), from the secrets */
    uint16_t      own_series[MP_MAX_SERIES];
    uint64_t      own_retire[MP_MAX_SERIES];
    server_rec   *server;        /* for lines logged outside a request */
    mps          *store;         /* opened in child_init; NULL = fail closed */
    const char   *store_error;   /* why store is NULL */
    apr_thread_mutex_t *ids_lock;/* guards the change-id block below */
    uint64_t      ids_next, ids_end;
} mpx_server_conf;

typedef struct {
    const char *name;
    const char *keyfile;
} mpx_trust_conf;

/* Per directory / location: what is for sale there. */
typedef struct {
    int         enabled;         /* Micropay on|off, MP_UNSET */
    int         price_set;
    mp_amount   price;           /* MicropayPrice */
    int         schemes;         /* MicropaySchemes: MP_SCHEME_* bits, MP_UNSET */
    int         unit_set;
    mp_amount   pw_unit;         /* MicropayPayWordUnit */
    apr_int64_t receipt_window;  /* MicropayReceiptWindow, -1 unset */
    apr_int64_t offer_lifetime;  /* MicropayOfferLifetime, -1 unset */
    apr_int64_t retry_window;    /* MicropayRetryWindow, -1 unset */
    int         pw_over_http;    /* MicropayPayWordOverHTTP, MP_UNSET (Off) */
} mpx_dir_conf;

/* Defaults applied when a field is unset all the way up. */
#define MPX_DEFAULT_SCHEMES        (MP_SCHEME_MILLICENT | MP_SCHEME_PAYWORD)
#define MPX_DEFAULT_RECEIPT_WINDOW 600
#define MPX_DEFAULT_OFFER_LIFETIME 300
#define MPX_DEFAULT_RETRY_WINDOW   60
#define MPX_DEFAULT_MAX_BODY       (1024 * 1024)
#define MPX_MAX_BODY_MAX           (64 * 1024 * 1024)
#define MPX_DEFAULT_PW_GRACE       (30 * 86400)
#define MPX_DEFAULT_STORE_SIZE     1024          /* MiB, both stores */
#define MPX_STORE_SIZE_MIN         16
#define MPX_STORE_SIZE_MAX         1048576       /* 1 TiB */

/* mod_micropay_config.c */
extern const command_rec mpx_directives[];
void *mpx_create_server_conf(apr_pool_t *p, server_rec *s);
void *mpx_merge_server_conf(apr_pool_t *p, void *base, void *add);
void *mpx_create_dir_conf(apr_pool_t *p, char *dir);
void *mpx_merge_dir_conf(apr_pool_t *p, void *base, void *add);
int mpx_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s);
/* Sets change_series (and change_retire) to the newest of our series in
 * service at now; 0, leaving them, when every one has retired. */
int mpx_choose_change_series(mpx_server_conf *sc, uint64_t now);
void mpx_child_init(apr_pool_t *p, server_rec *s);
/* Shared with mod_micropay_broker_config.c: a decimal in [min, max], the
 * message naming it as what ("a number of seconds") and the range; and
 * the store sizes of MicropayStoreSize and MicropayBrokerStoreSize. */
const char *mpx_parse_int(cmd_parms *cmd, const char *arg, apr_int64_t min, apr_int64_t max,
                          const char *what, apr_int64_t *out);
const char *mpx_parse_store_size(cmd_parms *cmd, const char *arg, apr_int64_t *out);
size_t mpx_store_bytes(apr_int64_t mib);     /* -1 (unset): the default */

/* mod_micropay_request.c */
int mpx_fixups(request_rec *r);

/* mod_micropay_body.c: reads r's whole body (none: no Content-Length
 * above 0 and no Transfer-Encoding) into the request pool, at most max
 * bytes, sets digest to its SHA-256 (of the empty string without a body)
 * and adds the input filter that gives the same bytes to the handler.
 * OK, or the HTTP status to answer: 413 over max (before reading, when
 * Content-Length says so), 400 or 408 when reading fails. */
int mpx_body_take(request_rec *r, apr_off_t max, uint8_t digest[MP_HASH_LEN]);
apr_status_t mpx_kept_body_filter(ap_filter_t *f, apr_bucket_brigade *bb, ap_input_mode_t mode,
                                  apr_read_type_e block, apr_off_t readbytes);
#define MPX_KEPT_BODY_FILTER "MICROPAY_KEPT_BODY"

/* mod_micropay_price.c: the price of r (the price table's entry for the
 * resource r serves, else the location's MicropayPrice), the schemes that can
 * sell it and the PayWord unit (0 units when PayWord is not offered). On any
 * failure (no key, a store error, no price, no scheme) it has logged why
 * (MP00040, MP00023, MP00025) and returns a status other than MP_OK and
 * MP_ERR_STORE: the caller answers 500. Sets the note micropay-price-key. */
mp_status mpx_price_for(request_rec *r, mpx_server_conf *sc, mpx_dir_conf *dc, mp_amount *price,
                        uint8_t *schemes, mp_amount *unit);
/* The price table key of the resource r serves (mod_micropay_pricekey.h),
 * NULL with *why when it cannot be derived. */
const char *mpx_price_key(request_rec *r, const char **why);

/* Per-thread crypto objects (libmp's are not thread-safe). */
typedef struct {
    mp_mc_issuer *issuer;
    mp_mac       *scratch;
    mp_mac       *receipt_key;
    mp_mac       *receipt_prev;
    mp_sha       *sha;
} mpx_thread_crypto;
mpx_thread_crypto *mpx_crypto_for(request_rec *r, mpx_server_conf *sc);

/* mod_micropay_response.c: the one place a payment outcome becomes HTTP. */
typedef enum {
    MPX_OUT_OFFER,        /* no credential: 402 with the offer */
    MPX_OUT_FAILED,       /* credential refused: 400 or 402 by the status */
    MPX_OUT_PAID,         /* accepted: let the handler run, add headers */
    MPX_OUT_ERROR         /* store or server failure: 500 */
} mpx_outcome;

typedef struct {
    mp_offer    offer;
    const char *offer_b64;       /* base64url of the offer record */
    mp_status   status;          /* for MPX_OUT_FAILED / MPX_OUT_ERROR */
    const char *change_b64;      /* Payment-Change, or NULL */
    const char *receipt_b64;     /* Payment-Receipt, or NULL */
} mpx_answer;

int mpx_respond(request_rec *r, mpx_outcome outcome, mpx_answer *a);

/* The HTTP status of a libmp status, the one place the vendor and the
 * broker map them (mod_micropay_status.c): malformed 400, a refusal 402 at
 * the vendor and 422 at the broker (PROTOCOL 7.7, 8.2), internal 500. */
typedef enum { MPX_PARTY_VENDOR, MPX_PARTY_BROKER } mpx_party;
int mpx_http_status(mp_status st, mpx_party party);
/* 1 when the payment recorded on paid (its note micropay-paid, set by
 * mpx_respond) is at least price, in its currency: what a request that
 * follows or belongs to a paid one may cost. */
int mpx_paid_covers(request_rec *paid, const mp_amount *price);
int mpx_handler(request_rec *r);
apr_status_t mpx_paid_filter(ap_filter_t *f, apr_bucket_brigade *bb);
#define MPX_HANDLER_402   "micropay-402"
#define MPX_PAID_FILTER   "MICROPAY_PAID"

#endif
