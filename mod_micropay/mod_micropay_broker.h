/*
 * mod_micropay_broker.h - the broker: an Apache handler of mod_micropay
 * (SetHandler micropay-broker) serving docs/PROTOCOL.md section 8:
 * POST <location>/buy, /exchange, /certify, /redeem.
 *
 * Files:
 *   mod_micropay_broker_config.c  directives, loading keys at startup,
 *                                 opening the broker store in children
 *   mod_micropay_broker.c         the handler: JSON in and out (jansson),
 *                                 account authentication, the endpoints
 *   mod_micropay_bstore.c         accounts and idempotency in LMDB
 */
#ifndef MOD_MICROPAY_BROKER_H
#define MOD_MICROPAY_BROKER_H

#include "httpd.h"
#include "http_config.h"
#include "apr_tables.h"
#include "mp.h"
#include "mod_micropay_bstore.h"

#define MPX_BROKER_HANDLER "micropay-broker"
#define MPX_BROKER_VENDORS_MAX 32

typedef struct {
    const char   *name;               /* vendor name */
    const char   *file;               /* delegation file (keyfile format) */
    mp_mc_issuer *issuer;             /* the delegated series + customer series */
    uint16_t      series;             /* the delegated scrip series the broker mints in */
    uint16_t      customer_series;    /* newest customer series */
} mpx_broker_vendor;

typedef struct {
    const char  *name;                /* MicropayBrokerName */
    const char  *store_dir;           /* MicropayBrokerStore */
    const char  *secrets_file;        /* MicropayBrokerSecretsFile */
    const char  *signing_key_file;    /* MicropayBrokerSigningKey */
    apr_array_header_t *retired_keys; /* MicropayBrokerRetiredSigningKey: file names */
    apr_array_header_t *vendor_conf;  /* MicropayBrokerVendor: {name, file} pairs */
    int          require_tls;         /* MicropayBrokerRequireTLS, -1 unset (default on) */
    apr_int64_t  scrip_lifetime;      /* MicropayBrokerScripLifetime, -1 unset */
    apr_int64_t  cert_lifetime;       /* MicropayBrokerCertLifetime, -1 unset */
    apr_int64_t  redeem_deadline;     /* MicropayBrokerRedeemDeadline, -1 unset */
    apr_int64_t  store_size;          /* MicropayBrokerStoreSize MiB, -1 unset */

    /* loaded at post_config (parent, root) */
    mp_mc_issuer *issuer;             /* broker scrip: issuer = name */
    uint16_t      scrip_series;       /* newest broker scrip series */
    uint16_t      customer_series;    /* newest broker customer series */
    /* Every account series of the secrets file, newest first: keys are
     * wrapped under the newest and unwrapped under the series the account
     * record names, so adding a series breaks no account. Each also gives
     * the key that seals stored responses (mp_seal_key_derive). */
    int           naccount;
    struct {
        uint16_t  series;
        mp_mac   *master;             /* wraps account keys (keyfile "account") */
        uint8_t   seal_key[MP_SEAL_KEY_LEN];
    } account[MP_MAX_SERIES];
    mp_signer    *signer;             /* certificate signing key */
    mp_pw_trust   self_trust;         /* {name, own public key}, then the retired
                                       * keys: for redemption */
    int           nvendors;
    mpx_broker_vendor vendors[MPX_BROKER_VENDORS_MAX];
    /* per child */
    volatile apr_uint32_t last_compact, more_work;   /* housekeeping of this store */
    /* opened in child_init */
    mpb          *store;
    const char   *store_error;
    apr_thread_mutex_t *lock;         /* guards the template objects' duplication */
} mpx_broker_conf;

#define MPX_DEFAULT_SCRIP_LIFETIME   (30 * 86400)
#define MPX_DEFAULT_CERT_LIFETIME    (30 * 86400)
#define MPX_DEFAULT_REDEEM_DEADLINE  (30 * 86400)
/* The longest MicropayBrokerRedeemDeadline: deposit and redemption marks
 * are kept this long after expiry whatever the deadline is now, so that a
 * deadline raised later cannot make a compacted mark creditable again. */
#define MPX_REDEEM_DEADLINE_MAX      (365LL * 86400)

/* Directive handlers (mod_micropay_broker_config.c); the entries are
 * spliced into the module's one command table by MPX_BROKER_DIRECTIVES. */
const char *mpx_broker_set_take1(cmd_parms *cmd, void *dummy, const char *arg);
const char *mpx_broker_set_vendor(cmd_parms *cmd, void *dummy, const char *name, const char *file);
const char *mpx_broker_set_flag(cmd_parms *cmd, void *dummy, int on);
const char *mpx_broker_set_retired(cmd_parms *cmd, void *dummy, const char *file);

#define MPX_BROKER_DIRECTIVES \
    AP_INIT_TAKE1("MicropayBrokerName", mpx_broker_set_take1, NULL, RSRC_CONF, \
        "Name of the broker this server runs (issuer of broker scrip and certificates)"), \
    AP_INIT_TAKE1("MicropayBrokerStore", mpx_broker_set_take1, NULL, RSRC_CONF, \
        "Directory of the broker's account store (create it with mpadmin broker init)"), \
    AP_INIT_TAKE1("MicropayBrokerStoreSize", mpx_broker_set_take1, NULL, RSRC_CONF, \
        "Most the broker's account store may hold, in MiB (16 to 1048576, default 1024)"), \
    AP_INIT_TAKE1("MicropayBrokerSecretsFile", mpx_broker_set_take1, NULL, RSRC_CONF, \
        "The broker's scrip, customer and account secrets (mode 0600; mpadmin keys broker-secrets)"), \
    AP_INIT_TAKE1("MicropayBrokerSigningKey", mpx_broker_set_take1, NULL, RSRC_CONF, \
        "PEM private key that signs PayWord certificates (mode 0600; mpadmin keys broker)"), \
    AP_INIT_ITERATE("MicropayBrokerRetiredSigningKey", mpx_broker_set_retired, NULL, RSRC_CONF, \
        "PEM key (public or private) that signed certificates before a rotation: their words stay redeemable"), \
    AP_INIT_TAKE2("MicropayBrokerVendor", mpx_broker_set_vendor, NULL, RSRC_CONF, \
        "A vendor the broker sells scrip for: its name and the delegation file it gave (mpadmin keys delegate)"), \
    AP_INIT_FLAG("MicropayBrokerRequireTLS", mpx_broker_set_flag, NULL, RSRC_CONF, \
        "On (default): refuse broker requests over plain HTTP; Off only for tests on loopback"), \
    AP_INIT_TAKE1("MicropayBrokerScripLifetime", mpx_broker_set_take1, NULL, RSRC_CONF, \
        "Seconds broker and vendor scrip stay valid (default 2592000)"), \
    AP_INIT_TAKE1("MicropayBrokerCertLifetime", mpx_broker_set_take1, NULL, RSRC_CONF, \
        "Longest PayWord certificate lifetime in seconds (default 2592000)"), \
    AP_INIT_TAKE1("MicropayBrokerRedeemDeadline", mpx_broker_set_take1, NULL, RSRC_CONF, \
        "Seconds after expiry that scrip and commitments can still be redeemed (default 2592000)")

/* Per-server configuration life cycle, called from mod_micropay_config.c. */
mpx_broker_conf *mpx_broker_create(apr_pool_t *p);
mpx_broker_conf *mpx_broker_merge(apr_pool_t *p, const mpx_broker_conf *base,
                                  const mpx_broker_conf *add);
/* post_config for one server: loads secrets, signing key and delegations.
 * Returns OK, or !OK after logging why (startup fails). */
int mpx_broker_post_config(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s,
                           mpx_broker_conf *bc);
/* child_init for one server: opens the broker store (after fork). */
void mpx_broker_child_init(apr_pool_t *pchild, server_rec *s, mpx_broker_conf *bc);

/* The handler (hooked in mod_micropay.c). */
int mpx_broker_handler(request_rec *r);

#endif
