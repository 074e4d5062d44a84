/*
 * mod_micropay_config.c - directives, configuration merging, and loading
 * of the vendor's secrets and trusted broker keys.
 *
 * Every directive is checked when the configuration is read, and the
 * message names what is accepted, so a mistake stops `apachectl -t`
 * instead of surfacing on a request. Secrets are read once, as root, in
 * post_config; children inherit them and never touch the files.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_core.h"
#include "ap_mpm.h"
#include "apr_strings.h"
#include "apr_file_io.h"
#include "apr_hash.h"
#include "mod_micropay.h"

APLOG_USE_MODULE(micropay);

/* ---- creation and merging: one rule per field ------------------------------ */

void *mpx_create_server_conf(apr_pool_t *p, server_rec *s)
{
    mpx_server_conf *sc = apr_pcalloc(p, sizeof *sc);

    (void)s;
    sc->store_sync = MP_UNSET;
    sc->store_size = -1;
    sc->pw_grace = -1;
    sc->max_body = -1;
    sc->trust = apr_array_make(p, 2, sizeof(mpx_trust_conf));
    sc->broker = mpx_broker_create(p);
    return sc;
}

void *mpx_merge_server_conf(apr_pool_t *p, void *basev, void *addv)
{
    mpx_server_conf *base = basev, *add = addv;
    mpx_server_conf *sc = apr_pcalloc(p, sizeof *sc);

    /* A virtual host inherits every vendor setting it does not make itself. */
    sc->vendor = add->vendor ? add->vendor : base->vendor;
    sc->secrets_file = add->secrets_file ? add->secrets_file : base->secrets_file;
    sc->store_dir = add->store_dir ? add->store_dir : base->store_dir;
    sc->store_sync = add->store_sync != MP_UNSET ? add->store_sync : base->store_sync;
    sc->store_size = add->store_size >= 0 ? add->store_size : base->store_size;
    sc->broker_url = add->broker_url ? add->broker_url : base->broker_url;
    sc->trust = add->trust->nelts > 0 ? add->trust : base->trust;
    sc->pw_grace = add->pw_grace >= 0 ? add->pw_grace : base->pw_grace;
    sc->max_body = add->max_body >= 0 ? add->max_body : base->max_body;
    sc->broker = mpx_broker_merge(p, base->broker, add->broker);
    /* Sections of the main server apply inside virtual hosts too. */
    sc->pw_http_allowed = add->pw_http_allowed || base->pw_http_allowed;
    return sc;
}

void *mpx_create_dir_conf(apr_pool_t *p, char *dir)
{
    mpx_dir_conf *dc = apr_pcalloc(p, sizeof *dc);

    (void)dir;
    dc->enabled = MP_UNSET;
    dc->schemes = MP_UNSET;
    dc->receipt_window = -1;
    dc->offer_lifetime = -1;
    dc->retry_window = -1;
    dc->pw_over_http = MP_UNSET;
    return dc;
}

void *mpx_merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    mpx_dir_conf *base = basev, *add = addv;
    mpx_dir_conf *dc = apr_pcalloc(p, sizeof *dc);

    /* The inner section wins for every field it sets; `Micropay off` inside
     * a paid tree is how a free exception is made. */
    dc->enabled = add->enabled != MP_UNSET ? add->enabled : base->enabled;
    dc->price_set = add->price_set || base->price_set;
    dc->price = add->price_set ? add->price : base->price;
    dc->schemes = add->schemes != MP_UNSET ? add->schemes : base->schemes;
    dc->unit_set = add->unit_set || base->unit_set;
    dc->pw_unit = add->unit_set ? add->pw_unit : base->pw_unit;
    dc->receipt_window = add->receipt_window >= 0 ? add->receipt_window : base->receipt_window;
    dc->offer_lifetime = add->offer_lifetime >= 0 ? add->offer_lifetime : base->offer_lifetime;
    dc->retry_window = add->retry_window >= 0 ? add->retry_window : base->retry_window;
    dc->pw_over_http = add->pw_over_http != MP_UNSET ? add->pw_over_http : base->pw_over_http;
    return dc;
}

/* ---- directive handlers ----------------------------------------------------- */

static mpx_server_conf *server_conf(cmd_parms *cmd)
{
    return ap_get_module_config(cmd->server->module_config, &micropay_module);
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

static const char *set_vendor(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);

    (void)dummy;
    if (err)
        return err;
    if (!name_ok(arg))
        return apr_psprintf(cmd->pool, "%s: '%s' is not a vendor name: 1 to %d visible "
                            "ASCII characters, no spaces (e.g. news.example)",
                            cmd->cmd->name, arg, MP_NAME_MAX);
    server_conf(cmd)->vendor = arg;
    return NULL;
}

static const char *set_path(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);
    mpx_server_conf *sc = server_conf(cmd);
    const char *path;

    (void)dummy;
    if (err)
        return err;
    if ((path = ap_server_root_relative(cmd->pool, arg)) == NULL)
        return apr_psprintf(cmd->pool, "%s: invalid path '%s'", cmd->cmd->name, arg);
    if (strcmp(cmd->cmd->name, "MicropaySecretsFile") == 0) {
        apr_finfo_t fi;
        apr_status_t rv = apr_stat(&fi, path, APR_FINFO_TYPE | APR_FINFO_PROT, cmd->temp_pool);

        /* Checked here too, not only at startup, so `apachectl -t` catches it. */
        if (rv != APR_SUCCESS || fi.filetype != APR_REG)
            return apr_psprintf(cmd->pool, "%s: %s is not a readable regular file (create it "
                                "with: mpadmin keys vendor %s)", cmd->cmd->name, path, path);
        if (fi.protection & (APR_GREAD | APR_GWRITE | APR_GEXECUTE | APR_WREAD | APR_WWRITE
                             | APR_WEXECUTE))
            return apr_psprintf(cmd->pool, "%s: %s is accessible to group or others; make it "
                                "mode 0600 (chmod 600 %s)", cmd->cmd->name, path, path);
        sc->secrets_file = path;
    } else {
        sc->store_dir = path;
    }
    return NULL;
}

static const char *set_store_sync(cmd_parms *cmd, void *dummy, int on)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);

    (void)dummy;
    if (err)
        return err;
    server_conf(cmd)->store_sync = on;
    return NULL;
}

static const char *set_store_size(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);

    (void)dummy;
    if (err)
        return err;
    return mpx_parse_store_size(cmd, arg, &server_conf(cmd)->store_size);
}

static const char *set_trust(cmd_parms *cmd, void *dummy, const char *name, const char *file)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);
    mpx_server_conf *sc = server_conf(cmd);
    mpx_trust_conf *t;

    (void)dummy;
    if (err)
        return err;
    if (!name_ok(name))
        return apr_psprintf(cmd->pool, "%s: '%s' is not a broker name: 1 to %d visible "
                            "ASCII characters", cmd->cmd->name, name, MP_NAME_MAX);
    if (sc->trust->nelts >= MP_PW_TRUST_MAX)
        return apr_psprintf(cmd->pool, "%s: at most %d trusted broker keys per server",
                            cmd->cmd->name, MP_PW_TRUST_MAX);
    t = apr_array_push(sc->trust);
    t->name = name;
    if ((t->keyfile = ap_server_root_relative(cmd->pool, file)) == NULL)
        return apr_psprintf(cmd->pool, "%s: invalid path '%s'", cmd->cmd->name, file);
    return NULL;
}

static const char *set_broker_url(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);
    size_t n = strlen(arg), i;

    (void)dummy;
    if (err)
        return err;
    for (i = 0; i < n; i++)
        if ((unsigned char)arg[i] < 0x21 || (unsigned char)arg[i] > 0x7e)
            break;
    if (n > MP_URL_MAX || i < n
        || (strncmp(arg, "https://", 8) != 0 && strncmp(arg, "http://", 7) != 0))
        return apr_psprintf(cmd->pool, "%s: '%s' is not an absolute http(s) URL of at most "
                            "%d characters", cmd->cmd->name, arg, MP_URL_MAX);
    server_conf(cmd)->broker_url = arg;
    return NULL;
}

const char *mpx_parse_int(cmd_parms *cmd, const char *arg, apr_int64_t min, apr_int64_t max,
                          const char *what, apr_int64_t *out)
{
    char *end = (char *)arg;
    apr_int64_t v = -1;

    errno = 0;
    if (arg[0] >= '0' && arg[0] <= '9')
        v = apr_strtoi64(arg, &end, 10);
    if (end == arg || *end != '\0' || errno == ERANGE || v < min || v > max)
        return apr_psprintf(cmd->pool, "%s: '%s' is not %s from %" APR_INT64_T_FMT " to %"
                            APR_INT64_T_FMT, cmd->cmd->name, arg, what, min, max);
    *out = v;
    return NULL;
}

/* Seconds: a decimal in [min, max]. */
static const char *parse_seconds(cmd_parms *cmd, const char *arg, apr_int64_t min,
                                 apr_int64_t max, apr_int64_t *out)
{
    return mpx_parse_int(cmd, arg, min, max, "a number of seconds", out);
}

const char *mpx_parse_store_size(cmd_parms *cmd, const char *arg, apr_int64_t *out)
{
    apr_int64_t max = MPX_STORE_SIZE_MAX;

    /* A 32-bit process has less address space than that. */
    if ((apr_uint64_t)max > (apr_uint64_t)(SIZE_MAX >> 20))
        max = (apr_int64_t)(SIZE_MAX >> 20);
    return mpx_parse_int(cmd, arg, MPX_STORE_SIZE_MIN, max, "a store size in MiB", out);
}

size_t mpx_store_bytes(apr_int64_t mib)
{
    return (size_t)(mib >= 0 ? mib : MPX_DEFAULT_STORE_SIZE) << 20;
}

static const char *set_pw_grace(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);

    (void)dummy;
    if (err)
        return err;
    return parse_seconds(cmd, arg, 0, 10LL * 365 * 86400, &server_conf(cmd)->pw_grace);
}

static const char *set_max_body(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_CONTEXT);

    (void)dummy;
    if (err)
        return err;
    return mpx_parse_int(cmd, arg, 0, MPX_MAX_BODY_MAX, "a number of bytes",
                         &server_conf(cmd)->max_body);
}

static const char *set_enabled(cmd_parms *cmd, void *dcv, int on)
{
    (void)cmd;
    ((mpx_dir_conf *)dcv)->enabled = on;
    return NULL;
}

static const char *set_pw_over_http(cmd_parms *cmd, void *dcv, int on)
{
    ((mpx_dir_conf *)dcv)->pw_over_http = on;
    /* Remembered per server so that start-up can warn about each one. */
    if (on)
        server_conf(cmd)->pw_http_allowed = 1;
    return NULL;
}

static const char *parse_amount(cmd_parms *cmd, const char *arg, mp_amount *out)
{
    mp_status st = mp_amount_parse(arg, strlen(arg), out);

    if (st != MP_OK || out->units == 0)
        return apr_psprintf(cmd->pool, "%s: '%s' is not an amount above zero: a decimal with "
                            "at most %d decimals and a three-letter currency, e.g. "
                            "\"0.005 USD\" (%s)", cmd->cmd->name, arg, MP_FRACTION_DIGITS,
                            st == MP_OK ? "zero" : mp_strerror(st));
    return NULL;
}

static const char *set_price(cmd_parms *cmd, void *dcv, const char *arg)
{
    mpx_dir_conf *dc = dcv;
    const char *err = parse_amount(cmd, arg, &dc->price);

    if (err == NULL)
        dc->price_set = 1;
    return err;
}

static const char *set_unit(cmd_parms *cmd, void *dcv, const char *arg)
{
    mpx_dir_conf *dc = dcv;
    const char *err = parse_amount(cmd, arg, &dc->pw_unit);

    if (err == NULL)
        dc->unit_set = 1;
    return err;
}

static const char *set_schemes(cmd_parms *cmd, void *dcv, const char *args)
{
    mpx_dir_conf *dc = dcv;
    const char *w;
    int schemes = 0;

    while (*(w = ap_getword_conf(cmd->temp_pool, &args)) != '\0') {
        if (strcasecmp(w, "millicent") == 0)
            schemes |= MP_SCHEME_MILLICENT;
        else if (strcasecmp(w, "payword") == 0)
            schemes |= MP_SCHEME_PAYWORD;
        else
            return apr_psprintf(cmd->pool, "%s: unknown scheme '%s'; accepted: millicent, payword",
                                cmd->cmd->name, w);
    }
    if (schemes == 0)
        return apr_psprintf(cmd->pool, "%s needs at least one of: millicent, payword", cmd->cmd->name);
    dc->schemes = schemes;
    return NULL;
}

static const char *set_window(cmd_parms *cmd, void *dcv, const char *arg)
{
    mpx_dir_conf *dc = dcv;

    if (strcmp(cmd->cmd->name, "MicropayReceiptWindow") == 0)
        return parse_seconds(cmd, arg, 0, 7 * 86400, &dc->receipt_window);
    /* The store keeps retry records for MPS_RETRY_KEEP: no longer window. */
    if (strcmp(cmd->cmd->name, "MicropayRetryWindow") == 0)
        return parse_seconds(cmd, arg, 0, MPS_RETRY_WINDOW_MAX, &dc->retry_window);
    return parse_seconds(cmd, arg, 10, 86400, &dc->offer_lifetime);
}

const command_rec mpx_directives[] = {
    AP_INIT_TAKE1("MicropayVendor", set_vendor, NULL, RSRC_CONF,
        "The vendor name this server sells as (scrip and commitments name it), e.g. news.example"),
    AP_INIT_TAKE1("MicropaySecretsFile", set_path, NULL, RSRC_CONF,
        "File with the vendor's scrip, customer and receipt secrets (mode 0600; see mpadmin keys)"),
    AP_INIT_TAKE1("MicropayStore", set_path, NULL, RSRC_CONF,
        "Directory of the vendor's payment store (create it with mpadmin store init)"),
    AP_INIT_FLAG("MicropayStoreSync", set_store_sync, NULL, RSRC_CONF,
        "On: also flush the meta page of every payment (nothing committed is lost on power loss); Off (default): data flushed, an OS crash can undo the last payment"),
    AP_INIT_TAKE1("MicropayStoreSize", set_store_size, NULL, RSRC_CONF,
        "Most the payment store may hold, in MiB (16 to 1048576, default 1024)"),
    AP_INIT_TAKE2("MicropayTrustBroker", set_trust, NULL, RSRC_CONF,
        "A broker whose PayWord certificates are accepted: its name and a PEM public key file"),
    AP_INIT_TAKE1("MicropayBrokerURL", set_broker_url, NULL, RSRC_CONF,
        "The broker URL offered to customers, e.g. https://broker.example/mp/"),
    AP_INIT_TAKE1("MicropayPayWordGrace", set_pw_grace, NULL, RSRC_CONF,
        "Seconds payment records are kept after they expire so that they can be redeemed at the broker (default 2592000; spent records stay at least 3600 s past expiry whatever the value)"),
    AP_INIT_FLAG("Micropay", set_enabled, NULL, ACCESS_CONF,
        "On: requests here must be paid; Off: free (also inside a paid tree)"),
    AP_INIT_TAKE1("MicropayPrice", set_price, NULL, ACCESS_CONF,
        "Price of each request here, e.g. \"0.005 USD\" (the store's price table can override per path)"),
    AP_INIT_RAW_ARGS("MicropaySchemes", set_schemes, NULL, ACCESS_CONF,
        "Accepted schemes: millicent, payword, or both (default both)"),
    AP_INIT_TAKE1("MicropayPayWordUnit", set_unit, NULL, ACCESS_CONF,
        "Value of one PayWord word, e.g. \"0.001 USD\"; the price must be a multiple (default: the price)"),
    AP_INIT_FLAG("MicropayPayWordOverHTTP", set_pw_over_http, NULL, RSRC_CONF | ACCESS_CONF,
        "On: offer and accept PayWord on plain HTTP too, where anyone who sees a word can spend it; Off (default): PayWord on TLS connections only"),
    AP_INIT_TAKE1("MicropayReceiptWindow", set_window, NULL, ACCESS_CONF,
        "Seconds a paid resource can be fetched again with its receipt; 0 disables receipts (default 600)"),
    AP_INIT_TAKE1("MicropayOfferLifetime", set_window, NULL, ACCESS_CONF,
        "Seconds a 402 offer's price is guaranteed (default 300)"),
    AP_INIT_TAKE1("MicropayRetryWindow", set_window, NULL, ACCESS_CONF,
        "Seconds after a payment during which the identical request (method, host, target, body) with the same payment is served again to recover a lost answer (0 to 3600, default 60; 0: no retries)"),
    AP_INIT_TAKE1("MicropayMaxBody", set_max_body, NULL, RSRC_CONF,
        "Most bytes of request body a paid request may carry: the body is read and bound to the payment before it is decided (0 to 67108864, default 1048576; more: 413)"),
    MPX_BROKER_DIRECTIVES,
    { NULL, { NULL }, NULL, 0, RAW_ARGS, NULL }
};

/* ---- startup: secrets and broker keys ----------------------------------------- */

/* Reads a whole small file into pool memory; the caller wipes it. */
static apr_status_t read_small_file(apr_pool_t *p, const char *path, apr_size_t max,
                                    char **out, apr_size_t *len, apr_finfo_t *fi)
{
    apr_file_t *f = NULL;
    apr_status_t rv;
    char *buf;
    apr_size_t n;

    if ((rv = apr_stat(fi, path, APR_FINFO_TYPE | APR_FINFO_PROT | APR_FINFO_SIZE, p)) != APR_SUCCESS)
        return rv;
    if (fi->filetype != APR_REG || fi->size < 0 || (apr_size_t)fi->size > max)
        return APR_EINVAL;
    if ((rv = apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, p)) != APR_SUCCESS)
        return rv;
    n = (apr_size_t)fi->size;
    buf = apr_palloc(p, n + 1);
    rv = n > 0 ? apr_file_read_full(f, buf, n, &n) : APR_SUCCESS;
    apr_file_close(f);
    if (rv != APR_SUCCESS)
        return rv;
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return APR_SUCCESS;
}

static apr_status_t free_issuer(void *data)
{
    mpx_server_conf *sc = data;

    mp_mc_issuer_free(sc->issuer);
    mp_mac_free(sc->receipt_key);
    mp_mac_free(sc->receipt_prev);
    sc->issuer = NULL;
    sc->receipt_key = NULL;
    sc->receipt_prev = NULL;
    return APR_SUCCESS;
}

int mpx_choose_change_series(mpx_server_conf *sc, uint64_t now)
{
    int i, found = -1;

    for (i = 0; i < sc->n_own; i++)
        if ((sc->own_retire[i] == 0 || sc->own_retire[i] > now)
            && (found < 0 || sc->own_series[i] > sc->own_series[found]))
            found = i;
    if (found < 0)
        return 0;
    sc->change_series = sc->own_series[found];
    sc->change_retire = sc->own_retire[found];
    return 1;
}

static int load_secrets(apr_pool_t *pconf, apr_pool_t *ptemp, server_rec *s, mpx_server_conf *sc)
{
    mp_keyfile *kf;
    apr_finfo_t fi;
    char *text = NULL;
    apr_size_t len = 0;
    apr_status_t rv;
    size_t line = 0, i;
    uint64_t now = (uint64_t)apr_time_sec(apr_time_now());
    int rc = !OK;
    mp_status st;

    rv = read_small_file(ptemp, sc->secrets_file, MP_KEYFILE_MAX, &text, &len, &fi);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, "MP00003: cannot read MicropaySecretsFile %s "
                     "(a regular file of at most %d bytes)", sc->secrets_file, MP_KEYFILE_MAX);
        return !OK;
    }
    /* Secrets readable by anyone but the owner are already compromised:
     * refuse to start rather than sell with them. */
    if (fi.protection & (APR_GREAD | APR_GWRITE | APR_GEXECUTE | APR_WREAD | APR_WWRITE | APR_WEXECUTE)) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MP00002: MicropaySecretsFile %s is accessible "
                     "to group or others; make it mode 0600 (chmod 600)", sc->secrets_file);
        goto done;
    }
    kf = apr_palloc(ptemp, sizeof *kf);
    if ((st = mp_keyfile_parse(text, len, kf, &line)) != MP_OK) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MP00003: MicropaySecretsFile %s, line %lu: %s "
                     "(expected lines 'scrip|customer|receipt <series> <hex secret> [retire=<time>]')",
                     sc->secrets_file, (unsigned long)line, mp_strerror(st));
        goto done;
    }
    if ((st = mp_mc_issuer_new(sc->vendor, &sc->issuer)) != MP_OK
        || (st = mp_keyfile_apply(kf, sc->issuer, &sc->receipt_key)) != MP_OK
        || (st = mp_keyfile_receipt_prev(kf, &sc->receipt_prev, &sc->receipt_prev_retire))
           != MP_OK) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MP00003: MicropaySecretsFile %s: %s",
                     sc->secrets_file, mp_strerror(st));
        mp_keyfile_wipe(kf);
        free_issuer(sc);
        goto done;
    }
    apr_pool_cleanup_register(pconf, sc, free_issuer, apr_pool_cleanup_null);
    /* Change is minted in the newest scrip series still in service that
     * is ours: series delegated to a broker are its to mint in. All of
     * ours are kept, so that change moves on when its series retires
     * (mod_micropay_request.c) instead of failing until a restart. */
    sc->n_own = 0;
    for (i = 0; i < kf->n; i++) {
        if (kf->e[i].kind == MP_KEY_SCRIP && !kf->e[i].delegated && sc->n_own < MP_MAX_SERIES) {
            sc->own_series[sc->n_own] = kf->e[i].series;
            sc->own_retire[sc->n_own] = kf->e[i].retire_at;
            sc->n_own++;
        }
    }
    mp_keyfile_wipe(kf);
    sc->server = s;
    if (!mpx_choose_change_series(sc, now)) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MP00003: MicropaySecretsFile %s has no scrip "
                     "series that is neither retired nor delegated", sc->secrets_file);
        goto done;
    }
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "MP00001: vendor %s: secrets loaded, change in "
                 "series %u, receipts %s%s", sc->vendor, sc->change_series,
                 sc->receipt_key ? "on" : "off (no receipt secret)",
                 sc->receipt_prev == NULL ? ""
                 : sc->receipt_prev_retire != 0 ? ", the previous receipt secret accepted until it retires"
                 : ", the previous receipt secret ignored (its line has no retire=)");
    rc = OK;
done:
    mp_wipe(text, len);
    return rc;
}

static int load_trust(apr_pool_t *ptemp, server_rec *s, mpx_server_conf *sc)
{
    mpx_trust_conf *t = (mpx_trust_conf *)sc->trust->elts;
    apr_finfo_t fi;
    char *pem;
    apr_size_t len;
    apr_status_t rv;
    mp_status st;
    int i;

    memset(&sc->pw_trust, 0, sizeof sc->pw_trust);
    for (i = 0; i < sc->trust->nelts; i++) {
        if ((rv = read_small_file(ptemp, t[i].keyfile, 16384, &pem, &len, &fi)) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, "MP00004: MicropayTrustBroker %s: cannot "
                         "read key file %s", t[i].name, t[i].keyfile);
            return !OK;
        }
        if ((st = mp_pubkey_from_pem(pem, len, &sc->pw_trust.b[i].key)) != MP_OK) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MP00004: MicropayTrustBroker %s: %s is not "
                         "a PEM Ed25519 or RSA (2048-4096 bit) public key: %s", t[i].name,
                         t[i].keyfile, mp_strerror(st));
            return !OK;
        }
        apr_cpystrn(sc->pw_trust.b[i].name, t[i].name, sizeof sc->pw_trust.b[i].name);
        sc->pw_trust.n++;
    }
    return OK;
}

/* ---- the vendor store: checked at (re)start, opened by each child ----------------- */

/* Leaf pages the startup check reads in full (256 MiB of 4 KiB pages:
 * about a second, measured at 4.4 us a page with its records); a larger
 * store gets every branch page and this many leaves spread evenly, and
 * `mpadmin store verify` reads all of it. */
#define STORE_CHECK_LEAVES 65536

/* One key per store, whatever the spelling of its directory: LMDB must
 * not open an environment twice in a process. */
static const char *store_key(apr_pool_t *p, const char *dir)
{
    apr_finfo_t fi;

    if (apr_stat(&fi, dir, APR_FINFO_DEV | APR_FINFO_INODE, p) == APR_SUCCESS)
        return apr_psprintf(p, "%lu:%lu", (unsigned long)fi.device, (unsigned long)fi.inode);
    return apr_pstrcat(p, "path:", dir, NULL);
}

typedef struct {
    char first[300];
} store_damage;

static void first_damage(void *ctx, const char *table, const uint8_t *key, size_t key_len,
                         const char *what)
{
    store_damage *d = ctx;

    (void)key;
    (void)key_len;
    if (d->first[0] == '\0')
        apr_snprintf(d->first, sizeof d->first, "table %s: %s", table, what);
}

/*
 * The check of a vendor store at start and at every restart (graceful
 * included), in the parent before the children fork: mps_verify, whole up
 * to STORE_CHECK_LEAVES leaf pages. For a damaged store it returns the
 * reason (in pconf), logged once (MP00013): the children then do not open
 * it, and its paid locations answer 500 (MP00021 with the reason). NULL
 * when the store is sound, or when it cannot be checked (missing, older
 * format): child_init's open says why then (MP00010).
 */
static const char *check_store(apr_pool_t *pconf, server_rec *s, mpx_server_conf *sc)
{
    store_damage d;
    mps_report r;
    char err[512] = "";
    apr_time_t t0 = apr_time_now();
    mp_status st;
    const char *why;

    d.first[0] = '\0';
    st = mps_verify(sc->store_dir, STORE_CHECK_LEAVES, first_damage, &d, &r, err, sizeof err);
    if (st != MP_OK) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "MP00014: payment store %s not checked: %s",
                     sc->store_dir, err);
        return NULL;
    }
    if (r.problems == 0) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "MP00014: payment store %s checked (%s, "
                     "%" APR_UINT64_T_FMT " pages) in %" APR_TIME_T_FMT " ms: no damage",
                     sc->store_dir, r.complete ? "every page" : "sampled",
                     (apr_uint64_t)r.pages, (apr_time_now() - t0) / 1000);
        return NULL;
    }
    why = apr_psprintf(pconf, "damaged: %" APR_UINT64_T_FMT " problem%s, the first in %s; "
                       "run mpadmin store verify %s, and restore the store from a backup",
                       (apr_uint64_t)r.problems, r.problems == 1 ? "" : "s", d.first,
                       sc->store_dir);
    ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "MP00013: payment store %s failed its startup "
                 "check (%s); paid locations of %s answer 500 until it is repaired",
                 sc->store_dir, why, sc->vendor);
    return why;
}

/* Reader slots for tools (mpadmin) and this parent's own check, beyond
 * the server's worker threads. */
#define READERS_MARGIN 64

/* Every worker thread of every process the MPM may run at once (processes
 * finishing after a graceful restart included: ServerLimit bounds them
 * all) can hold a read transaction, and LMDB answers MDB_READERS_FULL (a
 * 500) to one more: the reader table is sized from the MPM, not fixed. */
static unsigned size_reader_table(int *procs, int *threads)
{
    apr_uint64_t n;

    if (ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, procs) != APR_SUCCESS || *procs < 1)
        *procs = 1;
    if (ap_mpm_query(AP_MPMQ_MAX_THREADS, threads) != APR_SUCCESS || *threads < 1)
        *threads = 1;
    n = (apr_uint64_t)*procs * (apr_uint64_t)*threads + READERS_MARGIN;
    return mps_set_max_readers(n > UINT32_MAX ? UINT32_MAX : (unsigned)n);
}

int mpx_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s)
{
    /* Each store is checked once (the first pass of a start only reads the
     * configuration: the second one checks). */
    apr_hash_t *checked = apr_hash_make(ptemp);
    int check = ap_state_query(AP_SQ_MAIN_STATE) != AP_SQ_MS_CREATE_PRE_CONFIG;
    mpx_server_conf *sc;
    const char *key, *why;
    unsigned readers = 0;
    int procs = 1, threads = 1;

    (void)plog;
    /* Before any store is opened, so that the check below, the first to
     * open a store at a full start, grows its lock file to the size. */
    if (check)
        readers = size_reader_table(&procs, &threads);
    for (; s != NULL; s = s->next) {
        sc = ap_get_module_config(s->module_config, &micropay_module);
        if (sc->broker->name != NULL && mpx_broker_post_config(pconf, ptemp, s, sc->broker) != OK)
            return !OK;
        if (sc->vendor == NULL)
            continue;
        if (sc->secrets_file == NULL || sc->store_dir == NULL) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "MP00005: MicropayVendor %s needs "
                         "MicropaySecretsFile and MicropayStore", sc->vendor);
            return !OK;
        }
        if (load_secrets(pconf, ptemp, s, sc) != OK || load_trust(ptemp, s, sc) != OK)
            return !OK;
        if (!check)
            continue;
        if (sc->pw_http_allowed)
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "MP00147: vendor %s: "
                         "MicropayPayWordOverHTTP On: PayWord is accepted over plain HTTP, where "
                         "anyone who sees a payment can spend its words (PROTOCOL.md 9); serve "
                         "PayWord locations over TLS instead", sc->vendor);
        key = store_key(ptemp, sc->store_dir);
        if ((why = apr_hash_get(checked, key, APR_HASH_KEY_STRING)) == NULL) {
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, "MP00149: payment store %s: LMDB reader "
                         "table of %u slots (%d processes x %d threads, %d for tools; at least "
                         "%d)", sc->store_dir, readers, procs, threads, READERS_MARGIN, 1024);
            if ((why = check_store(pconf, s, sc)) == NULL)
                why = "";
            apr_hash_set(checked, key, APR_HASH_KEY_STRING, why);
        }
        /* Inherited by the children: a damaged store stays closed. */
        sc->store_error = why[0] != '\0' ? why : NULL;
    }
    return OK;
}

/* ---- children: the store, opened after fork ----------------------------------- */

static apr_status_t close_store(void *data)
{
    mps_close(data);
    return APR_SUCCESS;
}

void mpx_child_init(apr_pool_t *pchild, server_rec *s)
{
    /* LMDB forbids opening one environment twice in a process, and virtual
     * hosts usually share the main server's store: one handle per store,
     * keyed by the directory's device and inode, not by its spelling. */
    apr_hash_t *open = apr_hash_make(pchild);
    mpx_server_conf *sc;
    const char *key;
    char err[256];
    mps *store;
    mp_status st;

    for (; s != NULL; s = s->next) {
        sc = ap_get_module_config(s->module_config, &micropay_module);
        if (sc->broker->name != NULL)
            mpx_broker_child_init(pchild, s, sc->broker);
        if (sc->vendor == NULL || sc->store_dir == NULL)
            continue;
        sc->ids_next = sc->ids_end = 0;
        /* Change ids come from blocks handed out under this lock: without
         * it no payment can get change, so the store stays closed. */
        if (apr_thread_mutex_create(&sc->ids_lock, APR_THREAD_MUTEX_DEFAULT, pchild)
            != APR_SUCCESS) {
            sc->ids_lock = NULL;
            sc->store = NULL;
            sc->store_error = "cannot create a mutex";
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "MP00010: payment store %s unavailable: "
                         "cannot create a mutex; paid locations of %s answer 500", sc->store_dir,
                         sc->vendor);
            continue;
        }
        /* Failed the check of post_config (MP00013 said so): fail closed. */
        if (sc->store_error != NULL) {
            sc->store = NULL;
            continue;
        }
        key = store_key(pchild, sc->store_dir);
        if ((store = apr_hash_get(open, key, APR_HASH_KEY_STRING)) == NULL) {
            err[0] = '\0';
            st = mps_open(sc->store_dir, sc->store_sync == 1 ? MPS_SYNC : 0,
                          mpx_store_bytes(sc->store_size), &store, err, sizeof err);
            if (st != MP_OK) {
                sc->store = NULL;
                sc->store_error = apr_pstrdup(pchild, err[0] ? err : mp_strerror(st));
                ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "MP00010: payment store %s unavailable: %s; "
                             "paid locations of %s answer 500 until it is fixed", sc->store_dir,
                             sc->store_error, sc->vendor);
                continue;
            }
            apr_pool_cleanup_register(pchild, store, close_store, apr_pool_cleanup_null);
            apr_hash_set(open, key, APR_HASH_KEY_STRING, store);
        }
        sc->store = store;
    }
}
