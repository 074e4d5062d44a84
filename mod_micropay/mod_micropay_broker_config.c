/*
 * mod_micropay_broker_config.c - the broker's directives, loading its keys
 * at startup and opening its account store in the children.
 *
 * Like the vendor configuration: every directive is checked when it is
 * read, with a message naming what is accepted; secrets are read once, as
 * root, in post_config (the files must not be accessible to group or
 * others), and children inherit the loaded objects. The store is opened
 * after fork, once per directory and process (LMDB forbids opening one
 * environment twice in a process).
 *
 * The objects loaded here (issuers, account master, signer) are templates:
 * the handler duplicates what it needs per request under bc->lock, because
 * libmp's keyed objects are not thread-safe.
 */
#include <string.h>
#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_main.h"
#include "apr_strings.h"
#include "apr_file_io.h"
#include "apr_hash.h"
#include "apr_thread_mutex.h"
#include "mod_micropay.h"

APLOG_USE_MODULE(micropay);

#define MPX_SECONDS_MAX (10LL * 365 * 86400)
#define MPX_PEM_MAX     16384

typedef struct {
    const char *name;
    const char *file;
} vendor_conf;

/* ---- creation and merging: one rule per field ------------------------------ */

mpx_broker_conf *mpx_broker_create(apr_pool_t *p)
{
    mpx_broker_conf *bc = apr_pcalloc(p, sizeof *bc);

    bc->vendor_conf = apr_array_make(p, 2, sizeof(vendor_conf));
    bc->retired_keys = apr_array_make(p, 2, sizeof(const char *));
    bc->require_tls = -1;
    bc->scrip_lifetime = -1;
    bc->cert_lifetime = -1;
    bc->redeem_deadline = -1;
    bc->store_size = -1;
    return bc;
}

mpx_broker_conf *mpx_broker_merge(apr_pool_t *p, const mpx_broker_conf *base,
                                  const mpx_broker_conf *add)
{
    mpx_broker_conf *bc = apr_pcalloc(p, sizeof *bc);

    /* A virtual host inherits every broker setting it does not make itself;
     * the vendor list is taken whole from one level, never mixed. What is
     * loaded later (keys, store) is per merged server and starts empty. */
    bc->name = add->name ? add->name : base->name;
    bc->store_dir = add->store_dir ? add->store_dir : base->store_dir;
    bc->secrets_file = add->secrets_file ? add->secrets_file : base->secrets_file;
    bc->signing_key_file = add->signing_key_file ? add->signing_key_file : base->signing_key_file;
    bc->retired_keys = add->retired_keys->nelts > 0 ? add->retired_keys : base->retired_keys;
    bc->vendor_conf = add->vendor_conf->nelts > 0 ? add->vendor_conf : base->vendor_conf;
    bc->require_tls = add->require_tls != -1 ? add->require_tls : base->require_tls;
    bc->scrip_lifetime = add->scrip_lifetime >= 0 ? add->scrip_lifetime : base->scrip_lifetime;
    bc->cert_lifetime = add->cert_lifetime >= 0 ? add->cert_lifetime : base->cert_lifetime;
    bc->redeem_deadline = add->redeem_deadline >= 0 ? add->redeem_deadline : base->redeem_deadline;
    bc->store_size = add->store_size >= 0 ? add->store_size : base->store_size;
    return bc;
}

/* ---- directive handlers ----------------------------------------------------- */

static mpx_broker_conf *broker_conf(cmd_parms *cmd)
{
    mpx_server_conf *sc = ap_get_module_config(cmd->server->module_config, &micropay_module);

    return sc->broker;
}

static int name_ok(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > MP_NAME_MAX)
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

#define LOOSE_MODE (APR_GREAD | APR_GWRITE | APR_GEXECUTE | APR_WREAD | APR_WWRITE | APR_WEXECUTE)

/* A secret file: a regular file that neither group nor others can access.
 * Checked when the directive is read (so `apachectl -t` catches it) and
 * again when the file is loaded. how: the mpadmin command that makes it. */
static const char *secret_file(cmd_parms *cmd, const char *arg, const char *how,
                               const char **out)
{
    const char *path = ap_server_root_relative(cmd->pool, arg);
    apr_finfo_t fi;
    apr_status_t rv;

    if (path == NULL)
        return apr_psprintf(cmd->pool, "%s: invalid path '%s'", cmd->cmd->name, arg);
    rv = apr_stat(&fi, path, APR_FINFO_TYPE | APR_FINFO_PROT, cmd->temp_pool);
    if (rv != APR_SUCCESS || fi.filetype != APR_REG)
        return apr_psprintf(cmd->pool, "%s: %s is not a readable regular file (create it "
                            "with: %s)", cmd->cmd->name, path, how);
    if (fi.protection & LOOSE_MODE)
        return apr_psprintf(cmd->pool, "%s: %s is accessible to group or others; make it "
                            "mode 0600 (chmod 600 %s)", cmd->cmd->name, path, path);
    *out = path;
    return NULL;
}

/* Seconds: a decimal in [min, max]. */
static const char *parse_seconds(cmd_parms *cmd, const char *arg, apr_int64_t min,
                                 apr_int64_t max, apr_int64_t *out)
{
    return mpx_parse_int(cmd, arg, min, max, "a number of seconds", out);
}

const char *mpx_broker_set_take1(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);
    mpx_broker_conf *bc = broker_conf(cmd);
    const char *d = cmd->cmd->name;

    (void)dummy;
    if (err)
        return err;
    if (strcmp(d, "MicropayBrokerName") == 0) {
        if (!name_ok(arg))
            return apr_psprintf(cmd->pool, "%s: '%s' is not a broker name: 1 to %d visible "
                                "ASCII characters, no spaces (e.g. broker.example)",
                                d, arg, MP_NAME_MAX);
        bc->name = arg;
        return NULL;
    }
    if (strcmp(d, "MicropayBrokerStore") == 0) {
        if ((bc->store_dir = ap_server_root_relative(cmd->pool, arg)) == NULL)
            return apr_psprintf(cmd->pool, "%s: invalid path '%s'", d, arg);
        return NULL;
    }
    if (strcmp(d, "MicropayBrokerStoreSize") == 0)
        return mpx_parse_store_size(cmd, arg, &bc->store_size);
    if (strcmp(d, "MicropayBrokerSecretsFile") == 0)
        return secret_file(cmd, arg, "mpadmin keys broker-secrets FILE", &bc->secrets_file);
    if (strcmp(d, "MicropayBrokerSigningKey") == 0)
        return secret_file(cmd, arg, "mpadmin keys broker FILE", &bc->signing_key_file);
    if (strcmp(d, "MicropayBrokerScripLifetime") == 0)
        return parse_seconds(cmd, arg, 60, MPX_SECONDS_MAX, &bc->scrip_lifetime);
    if (strcmp(d, "MicropayBrokerCertLifetime") == 0)
        return parse_seconds(cmd, arg, 60, MPX_SECONDS_MAX, &bc->cert_lifetime);
    if (strcmp(d, "MicropayBrokerRedeemDeadline") == 0)
        return parse_seconds(cmd, arg, 0, MPX_REDEEM_DEADLINE_MAX, &bc->redeem_deadline);
    return apr_psprintf(cmd->pool, "%s: not a broker directive", d);
}

const char *mpx_broker_set_vendor(cmd_parms *cmd, void *dummy, const char *name, const char *file)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);
    mpx_broker_conf *bc = broker_conf(cmd);
    vendor_conf *v = (vendor_conf *)bc->vendor_conf->elts;
    const char *path = NULL;
    int i;

    (void)dummy;
    if (err)
        return err;
    if (!name_ok(name))
        return apr_psprintf(cmd->pool, "%s: '%s' is not a vendor name: 1 to %d visible "
                            "ASCII characters, no spaces (e.g. news.example)",
                            cmd->cmd->name, name, MP_NAME_MAX);
    for (i = 0; i < bc->vendor_conf->nelts; i++)
        if (strcmp(v[i].name, name) == 0)
            return apr_psprintf(cmd->pool, "%s: vendor '%s' is given twice", cmd->cmd->name, name);
    if (bc->vendor_conf->nelts >= MPX_BROKER_VENDORS_MAX)
        return apr_psprintf(cmd->pool, "%s: at most %d vendors per server", cmd->cmd->name,
                            MPX_BROKER_VENDORS_MAX);
    if ((err = secret_file(cmd, file, "mpadmin keys delegate, at the vendor", &path)) != NULL)
        return err;
    v = apr_array_push(bc->vendor_conf);
    v->name = name;
    v->file = path;
    return NULL;
}

const char *mpx_broker_set_retired(cmd_parms *cmd, void *dummy, const char *file)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);
    mpx_broker_conf *bc = broker_conf(cmd);
    const char *path = ap_server_root_relative(cmd->pool, file);
    apr_finfo_t fi;

    (void)dummy;
    if (err)
        return err;
    if (path == NULL)
        return apr_psprintf(cmd->pool, "%s: invalid path '%s'", cmd->cmd->name, file);
    if (apr_stat(&fi, path, APR_FINFO_TYPE, cmd->temp_pool) != APR_SUCCESS
        || fi.filetype != APR_REG)
        return apr_psprintf(cmd->pool, "%s: %s is not a readable regular file (the .pub file "
                            "mpadmin keys broker wrote beside the old key)", cmd->cmd->name, path);
    /* The signing key and its predecessors share one trust list. */
    if (bc->retired_keys->nelts >= MP_PW_TRUST_MAX - 1)
        return apr_psprintf(cmd->pool, "%s: at most %d retired keys; drop those whose "
                            "certificates are past expiry and the redemption deadline",
                            cmd->cmd->name, MP_PW_TRUST_MAX - 1);
    *(const char **)apr_array_push(bc->retired_keys) = path;
    return NULL;
}

const char *mpx_broker_set_flag(cmd_parms *cmd, void *dummy, int on)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);

    (void)dummy;
    if (err)
        return err;
    broker_conf(cmd)->require_tls = on;   /* the only flag: MicropayBrokerRequireTLS */
    return NULL;
}

/* ---- startup: secrets, signing key, delegations ------------------------------ */

/* Reads a whole small file into pool memory; a secret one (secret != 0)
 * is refused when group or others can access it. The caller wipes the text. */
static int read_file(apr_pool_t *p, server_rec *s, const char *what, const char *path,
                     apr_size_t max, int secret, char **out, apr_size_t *len)
{
    apr_file_t *f = NULL;
    apr_finfo_t fi;
    apr_status_t rv;
    apr_size_t n;
    char *buf;

    rv = apr_stat(&fi, path, APR_FINFO_TYPE | APR_FINFO_PROT | APR_FINFO_SIZE, p);
    if (rv == APR_SUCCESS && (fi.filetype != APR_REG || fi.size < 0 || (apr_size_t)fi.size > max))
        rv = APR_EINVAL;
    if (rv == APR_SUCCESS)
        rv = apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, p);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, "MP00101: cannot read %s %s (a regular "
                     "file of at most %lu bytes)", what, path, (unsigned long)max);
        return !OK;
    }
    n = (apr_size_t)fi.size;
    buf = apr_palloc(p, n + 1);
    rv = n > 0 ? apr_file_read_full(f, buf, n, &n) : APR_SUCCESS;
    apr_file_close(f);
    if (rv != APR_SUCCESS) {
        mp_wipe(buf, n + 1);
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, "MP00101: cannot read %s %s", what, path);
        return !OK;
    }
    buf[n] = '\0';
    /* Secrets readable by anyone but the owner are already compromised:
     * refuse to start rather than issue money with them. */
    if (secret && (fi.protection & LOOSE_MODE)) {
        mp_wipe(buf, n + 1);
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MP00102: %s %s is accessible to group or "
                     "others; make it mode 0600 (chmod 600 %s)", what, path, path);
        return !OK;
    }
    *out = buf;
    *len = n;
    return OK;
}

static int read_secret_file(apr_pool_t *p, server_rec *s, const char *what, const char *path,
                            apr_size_t max, char **out, apr_size_t *len)
{
    return read_file(p, s, what, path, max, 1, out, len);
}

static int parse_keyfile(server_rec *s, const char *what, const char *path, const char *text,
                         apr_size_t len, mp_keyfile *kf)
{
    size_t line = 0;
    mp_status st = mp_keyfile_parse(text, len, kf, &line);

    if (st != MP_OK) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MP00103: %s %s, line %lu: %s (expected "
                     "lines 'scrip|customer|account <series> <hex secret> [retire=<time>] "
                     "[delegated]')", what, path, (unsigned long)line, mp_strerror(st));
        return !OK;
    }
    return OK;
}

/* Loads the scrip and customer entries of kf into a new issuer named name. */
static int make_issuer(server_rec *s, const char *what, const char *path, const char *name,
                       const mp_keyfile *kf, mp_mc_issuer **out)
{
    mp_mc_issuer *iss = NULL;
    mp_mac *receipt = NULL;
    mp_status st;

    if ((st = mp_mc_issuer_new(name, &iss)) != MP_OK
        || (st = mp_keyfile_apply(kf, iss, &receipt)) != MP_OK) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MP00103: %s %s: %s", what, path,
                     mp_strerror(st));
        mp_mc_issuer_free(iss);
        return !OK;
    }
    mp_mac_free(receipt);          /* a broker stamps no receipts */
    *out = iss;
    return OK;
}

static apr_status_t free_loaded(void *data)
{
    mpx_broker_conf *bc = data;
    int i;

    mp_mc_issuer_free(bc->issuer);
    for (i = 0; i < bc->naccount; i++) {
        mp_mac_free(bc->account[i].master);
        mp_wipe(bc->account[i].seal_key, sizeof bc->account[i].seal_key);
    }
    memset(bc->account, 0, sizeof bc->account);
    bc->naccount = 0;
    mp_signer_free(bc->signer);
    bc->issuer = NULL;
    bc->signer = NULL;
    for (i = 0; i < bc->nvendors; i++) {
        mp_mc_issuer_free(bc->vendors[i].issuer);
        bc->vendors[i].issuer = NULL;
    }
    bc->nvendors = 0;
    memset(&bc->self_trust, 0, sizeof bc->self_trust);
    return APR_SUCCESS;
}

static int load_broker_secrets(apr_pool_t *ptemp, server_rec *s, mpx_broker_conf *bc)
{
    static const char what[] = "MicropayBrokerSecretsFile";
    mp_keyfile *kf = apr_palloc(ptemp, sizeof *kf);
    const mp_keyfile_entry *e;
    uint64_t now = (uint64_t)apr_time_sec(apr_time_now());
    int scrip = 0, customer = 0, rc = !OK, j;
    char *text = NULL;
    apr_size_t len = 0;
    size_t i;
    mp_status st;

    if (read_secret_file(ptemp, s, what, bc->secrets_file, MP_KEYFILE_MAX, &text, &len) != OK)
        return !OK;
    if (parse_keyfile(s, what, bc->secrets_file, text, len, kf) != OK)
        goto done;
    /* Broker scrip is minted in the newest scrip series still in service
     * (a "delegated" mark would mean another party mints there); customer
     * ids in the newest customer series; account keys are wrapped under
     * the newest account secret. */
    for (i = 0; i < kf->n; i++) {
        e = &kf->e[i];
        if (e->kind == MP_KEY_SCRIP && !e->delegated && (e->retire_at == 0 || e->retire_at > now)
            && (!scrip || e->series > bc->scrip_series)) {
            bc->scrip_series = e->series;
            scrip = 1;
        } else if (e->kind == MP_KEY_CUSTOMER && (!customer || e->series > bc->customer_series)) {
            bc->customer_series = e->series;
            customer = 1;
        } else if (e->kind == MP_KEY_ACCOUNT && bc->naccount < MP_MAX_SERIES) {
            /* Sorted newest (highest series) first as they are added. */
            for (j = bc->naccount; j > 0 && bc->account[j - 1].series < e->series; j--)
                bc->account[j] = bc->account[j - 1];
            memset(&bc->account[j], 0, sizeof bc->account[j]);
            bc->account[j].series = e->series;
            bc->naccount++;
            if ((st = mp_mac_new(e->secret, e->len, &bc->account[j].master)) != MP_OK
                || (st = mp_seal_key_derive(e->secret, e->len, "MP1 broker stored responses",
                                            bc->account[j].seal_key)) != MP_OK) {
                ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MP00103: %s %s: account secret "
                             "series %u: %s", what, bc->secrets_file, e->series, mp_strerror(st));
                goto done;
            }
        }
    }
    if (!scrip || !customer || bc->naccount == 0) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MP00104: %s %s needs a scrip series that "
                     "is neither retired nor delegated, a customer series and an account "
                     "secret (mpadmin keys broker-secrets)", what, bc->secrets_file);
        goto done;
    }
    if (make_issuer(s, what, bc->secrets_file, bc->name, kf, &bc->issuer) != OK)
        goto done;
    rc = OK;
done:
    mp_keyfile_wipe(kf);
    mp_wipe(text, len);
    return rc;
}

/* MicropayBrokerRetiredSigningKey: a public key PEM, or the old private
 * key itself (then only its public half is kept). */
static int load_retired_keys(apr_pool_t *ptemp, server_rec *s, mpx_broker_conf *bc)
{
    static const char what[] = "MicropayBrokerRetiredSigningKey";
    const char *const *files = (const char *const *)bc->retired_keys->elts;
    mp_signer *old = NULL;
    char *pem = NULL;
    apr_size_t len = 0;
    mp_pubkey pk;
    mp_status st;
    int i;

    for (i = 0; i < bc->retired_keys->nelts; i++) {
        if (read_file(ptemp, s, what, files[i], MPX_PEM_MAX, 0, &pem, &len) != OK)
            return !OK;
        st = mp_pubkey_from_pem(pem, len, &pk);
        mp_wipe(pem, len);
        /* Not a public key: then a private one, which must be kept secret. */
        if (st != MP_OK) {
            if (read_secret_file(ptemp, s, what, files[i], MPX_PEM_MAX, &pem, &len) != OK)
                return !OK;
            if ((st = mp_signer_from_pem(pem, len, &old)) == MP_OK) {
                st = mp_signer_pubkey(old, &pk);
                mp_signer_free(old);
                old = NULL;
            }
            mp_wipe(pem, len);
        }
        if (st == MP_OK)
            st = mp_pubkey_check(&pk);
        if (st != MP_OK) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MP00105: %s %s is not a PEM Ed25519 or "
                         "RSA (2048-4096 bit) public or private key: %s", what, files[i],
                         mp_strerror(st));
            return !OK;
        }
        apr_cpystrn(bc->self_trust.b[bc->self_trust.n].name, bc->name,
                    sizeof bc->self_trust.b[0].name);
        bc->self_trust.b[bc->self_trust.n++].key = pk;
    }
    return OK;
}

static int load_signing_key(apr_pool_t *ptemp, server_rec *s, mpx_broker_conf *bc)
{
    static const char what[] = "MicropayBrokerSigningKey";
    char *pem = NULL;
    apr_size_t len = 0;
    mp_pubkey pk;
    mp_status st;

    if (read_secret_file(ptemp, s, what, bc->signing_key_file, MPX_PEM_MAX, &pem, &len) != OK)
        return !OK;
    st = mp_signer_from_pem(pem, len, &bc->signer);
    mp_wipe(pem, len);
    if (st == MP_OK && (st = mp_signer_pubkey(bc->signer, &pk)) == MP_OK)
        st = mp_pubkey_check(&pk);
    if (st != MP_OK) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MP00105: %s %s is not an unencrypted PKCS#8 "
                     "PEM Ed25519 or RSA (2048-4096 bit) private key: %s", what,
                     bc->signing_key_file, mp_strerror(st));
        return !OK;
    }
    /* The broker redeems only its own certificates: its trust list is itself,
     * under the key it signs with now and the keys it signed with before,
     * so that a rotation never strands the words paid under older
     * certificates (nor sends their credit back to the customers). */
    memset(&bc->self_trust, 0, sizeof bc->self_trust);
    apr_cpystrn(bc->self_trust.b[0].name, bc->name, sizeof bc->self_trust.b[0].name);
    bc->self_trust.b[0].key = pk;
    bc->self_trust.n = 1;
    return load_retired_keys(ptemp, s, bc);
}

/* A vendor's delegation: scrip series marked "delegated" (the broker mints
 * that vendor's scrip in the newest one still in service, and nowhere
 * else; older ones stay so that scrip minted under them can still be
 * deposited) and the vendor's customer series; nothing else of the
 * vendor's belongs here. */
static int load_vendor(apr_pool_t *ptemp, server_rec *s, mpx_broker_conf *bc,
                       const vendor_conf *vc)
{
    static const char what[] = "MicropayBrokerVendor";
    mpx_broker_vendor *v = &bc->vendors[bc->nvendors];
    mp_keyfile *kf = apr_palloc(ptemp, sizeof *kf);
    uint64_t now = (uint64_t)apr_time_sec(apr_time_now());
    int in_service = 0, customer = 0, other = 0, rc = !OK;
    mp_keyfile_entry *e;
    char *text = NULL;
    apr_size_t len = 0;
    size_t i;

    if (strcmp(vc->name, bc->name) == 0) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MP00106: %s %s: a vendor cannot have the "
                     "broker's own name (issuers must use distinct names)", what, vc->name);
        return !OK;
    }
    if (read_secret_file(ptemp, s, what, vc->file, MP_KEYFILE_MAX, &text, &len) != OK)
        return !OK;
    if (parse_keyfile(s, what, vc->file, text, len, kf) != OK)
        goto done;
    memset(v, 0, sizeof *v);
    for (i = 0; i < kf->n; i++) {
        e = &kf->e[i];
        if (e->kind == MP_KEY_SCRIP && e->delegated) {
            if ((e->retire_at == 0 || e->retire_at > now) && (!in_service || e->series > v->series)) {
                v->series = e->series;
                in_service = 1;
            }
            /* The vendor accepted this scrip while the series was in
             * service; its deposit is judged by the redemption deadline,
             * not by the retirement, which only stops new minting. */
            e->retire_at = 0;
        } else if (e->kind == MP_KEY_CUSTOMER) {
            if (!customer || e->series > v->customer_series)
                v->customer_series = e->series;
            customer = 1;
        } else {
            other++;
        }
    }
    if (!in_service || !customer || other != 0) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MP00106: %s %s: %s must hold 'scrip ... "
                     "delegated' series, one of them not retired, and the vendor's customer "
                     "series, nothing else (make it with mpadmin keys delegate at the vendor)",
                     what, vc->name, vc->file);
        goto done;
    }
    if (make_issuer(s, what, vc->file, vc->name, kf, &v->issuer) != OK)
        goto done;
    v->name = vc->name;
    v->file = vc->file;
    bc->nvendors++;
    rc = OK;
done:
    mp_keyfile_wipe(kf);
    mp_wipe(text, len);
    return rc;
}

int mpx_broker_post_config(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s,
                           mpx_broker_conf *bc)
{
    const vendor_conf *vc = (const vendor_conf *)bc->vendor_conf->elts;
    server_rec *vs;
    mpx_server_conf *vsc;
    int i;

    if (bc->name == NULL)
        return OK;
    if (bc->store_dir == NULL || bc->secrets_file == NULL || bc->signing_key_file == NULL) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MP00100: MicropayBrokerName %s needs "
                     "MicropayBrokerStore, MicropayBrokerSecretsFile and MicropayBrokerSigningKey",
                     bc->name);
        return !OK;
    }
    /* Two LMDB environments in one directory would corrupt each other. */
    for (vs = ap_server_conf ? ap_server_conf : s; vs != NULL; vs = vs->next) {
        vsc = ap_get_module_config(vs->module_config, &micropay_module);
        if (vsc != NULL && vsc->store_dir != NULL && strcmp(vsc->store_dir, bc->store_dir) == 0) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MP00100: MicropayBrokerStore %s is also "
                         "a vendor's MicropayStore; give the broker its own directory",
                         bc->store_dir);
            return !OK;
        }
    }
    /* One store, one broker: customer ids and stored answers are the
     * store's, and a certificate's reservation is released by whichever
     * virtual host finds it due, so every host sharing the store must be
     * the same broker with the same redemption deadline. */
    for (vs = ap_server_conf ? ap_server_conf : s; vs != NULL; vs = vs->next) {
        mpx_broker_conf *ob;

        vsc = ap_get_module_config(vs->module_config, &micropay_module);
        ob = vsc ? vsc->broker : NULL;
        if (ob == NULL || ob == bc || ob->name == NULL || ob->store_dir == NULL
            || strcmp(ob->store_dir, bc->store_dir) != 0)
            continue;
        if (strcmp(ob->name, bc->name) != 0
            || (ob->redeem_deadline >= 0 ? ob->redeem_deadline : MPX_DEFAULT_REDEEM_DEADLINE)
               != (bc->redeem_deadline >= 0 ? bc->redeem_deadline : MPX_DEFAULT_REDEEM_DEADLINE)) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MP00100: MicropayBrokerStore %s is shared "
                         "by brokers %s and %s, or with different MicropayBrokerRedeemDeadline; "
                         "one store serves one broker name and one deadline", bc->store_dir,
                         bc->name, ob->name);
            return !OK;
        }
    }
    /* post_config runs twice at startup and again on every restart: start
     * from nothing each time; the cleanup frees with the configuration. */
    free_loaded(bc);
    apr_pool_cleanup_register(pconf, bc, free_loaded, apr_pool_cleanup_null);
    if (load_broker_secrets(ptemp, s, bc) != OK || load_signing_key(ptemp, s, bc) != OK)
        return !OK;
    for (i = 0; i < bc->vendor_conf->nelts; i++)
        if (load_vendor(ptemp, s, bc, &vc[i]) != OK)
            return !OK;
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "MP00107: broker %s: scrip series %u, customer "
                 "series %u, %d vendor(s), TLS %s", bc->name, bc->scrip_series,
                 bc->customer_series, bc->nvendors, bc->require_tls == 0 ? "not required" : "required");
    return OK;
}

/* ---- children: the store, opened after fork ----------------------------------- */

static apr_status_t close_store(void *data)
{
    mpb_close(data);
    return APR_SUCCESS;
}

void mpx_broker_child_init(apr_pool_t *pchild, server_rec *s, mpx_broker_conf *bc)
{
    static const char key[] = "micropay-broker-stores";
    apr_hash_t *open = NULL;
    char err[256];
    mpb *store = NULL;
    mp_status st;

    if (bc->name == NULL || bc->store_dir == NULL)
        return;
    bc->store = NULL;
    bc->store_error = "not opened";
    if (apr_thread_mutex_create(&bc->lock, APR_THREAD_MUTEX_DEFAULT, pchild) != APR_SUCCESS) {
        bc->lock = NULL;
        bc->store_error = "cannot create a mutex";
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "MP00108: broker %s: cannot create a mutex; "
                     "broker requests answer 500", bc->name);
        return;
    }
    /* Virtual hosts inheriting the broker share one handle per directory. */
    apr_pool_userdata_get((void **)&open, key, pchild);
    if (open == NULL) {
        open = apr_hash_make(pchild);
        apr_pool_userdata_set(open, key, apr_pool_cleanup_null, pchild);
    }
    if ((store = apr_hash_get(open, bc->store_dir, APR_HASH_KEY_STRING)) == NULL) {
        err[0] = '\0';
        st = mpb_open(bc->store_dir, 0, mpx_store_bytes(bc->store_size), &store, err, sizeof err);
        if (st != MP_OK) {
            bc->store_error = apr_pstrdup(pchild, err[0] ? err : mp_strerror(st));
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "MP00108: broker %s: store unavailable (%s); "
                         "broker requests answer 500 until it is fixed (create it with mpadmin "
                         "broker init)", bc->name, bc->store_error);
            return;
        }
        apr_pool_cleanup_register(pchild, store, close_store, apr_pool_cleanup_null);
        apr_hash_set(open, bc->store_dir, APR_HASH_KEY_STRING, store);
    }
    /* The check at startup compares configured paths; the store itself
     * remembers whose it is, whatever path or instance opens it. */
    if (mpb_bind(store, bc->name, (uint64_t)(bc->redeem_deadline >= 0 ? bc->redeem_deadline
                                                : MPX_DEFAULT_REDEEM_DEADLINE)) != MP_OK) {
        bc->store_error = apr_pstrdup(pchild, mpb_errmsg());
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "MP00108: broker %s: store %s refused: %s; "
                     "broker requests answer 500", bc->name, bc->store_dir, bc->store_error);
        return;
    }
    bc->store = store;
    bc->store_error = NULL;
}
