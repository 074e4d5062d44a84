/*
 * mod_micropay_price.c - the price of a request: the store's price table,
 * looked up by the key of the resource Apache serves, else MicropayPrice;
 * and the schemes and PayWord unit that can sell it at that price.
 * (docs/mod_micropay.md, "The price table".)
 *
 * The key is derived from what the request serves, after translation,
 * internal redirects and every other module's fixups, never from the URL
 * as the client spelled it:
 *   - a file (static, a CGI script, a directory): its path below the
 *     DocumentRoot, symlinks resolved (realpath), without the path info, and
 *     on a directory that folds case the names as stored on disk; a file
 *     outside the DocumentRoot that an Alias (or UserDir) maps: that alias's
 *     URL prefix and the file's path below the alias's directory; any other
 *     file: the URL path without the path info;
 *   - a per-directory rewrite to an internal redirect ("redirect:" filename):
 *     the key of the redirect's target, looked up as a subrequest;
 *   - anything else (a proxy, a handler without a file): the URL path.
 * URL paths are the ones Apache decoded and normalised (r->uri), encoded by
 * mpk_from_path, as mpadmin encodes entries. Every failure on the way is a
 * 500 (MP00040), never "no entry", which would sell at MicropayPrice.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_request.h"
#include "http_ssl.h"              /* ap_ssl_conn_is_ssl: httpd 2.4.49 and later */
#include "apr_strings.h"
#include "mod_micropay.h"
#include "mod_micropay_pricekey.h"

APLOG_USE_MODULE(micropay);

/* Nested per-directory rewrites followed, as Apache's LimitInternalRecursion. */
#define MPX_REDIRECT_DEPTH 10

static const char *url_key(request_rec *r, const char *path, size_t n, const char **why)
{
    char *out = apr_palloc(r->pool, MPK_MAX + 1);
    size_t len;

    if (mpk_from_path(path, n, out, MPK_MAX + 1, &len, why) != MP_OK)
        return NULL;
    return out;
}

/* realpath() into the pool, NULL (errno set) when it cannot be resolved. */
static char *resolved(apr_pool_t *p, const char *path)
{
    char buf[PATH_MAX];

    if (path == NULL || path[0] != '/' || realpath(path, buf) == NULL)
        return NULL;
    return apr_pstrdup(p, buf);
}

/* The part of file below root, both resolved: "" for root itself, else
 * "/a/b"; NULL when file is not below root. */
static const char *below(const char *file, const char *root)
{
    size_t n = strlen(root);

    if (strcmp(root, "/") == 0)
        return strcmp(file, "/") == 0 ? "" : file;
    if (strncmp(file, root, n) != 0 || (file[n] != '\0' && file[n] != '/'))
        return NULL;
    return file + n;
}

static int has_letter(const char *s)
{
    for (; *s; s++)
        if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))
            return 1;
    return 0;
}

static char *swapcase(apr_pool_t *p, const char *s)
{
    char *t = apr_pstrdup(p, s), *c;

    for (c = t; *c; c++) {
        if (*c >= 'a' && *c <= 'z')
            *c = (char)(*c - 'a' + 'A');
        else if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    }
    return t;
}

/* The name under which dir stores the entry that name reached (st): name
 * itself when dir holds it byte for byte, else the entry of the same inode
 * whose name equals it but for ASCII case (the smallest, should there be
 * several). NULL when there is none or dir cannot be read. */
static const char *stored_name(apr_pool_t *p, const char *dir, const char *name,
                               const struct stat *st)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    struct stat es;
    const char *best = NULL;

    if (d == NULL)
        return NULL;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, name) == 0) {
            best = name;
            break;
        }
        if (strcasecmp(e->d_name, name) == 0
            && fstatat(dirfd(d), e->d_name, &es, AT_SYMLINK_NOFOLLOW) == 0
            && es.st_dev == st->st_dev && es.st_ino == st->st_ino
            && (best == NULL || strcmp(e->d_name, best) < 0))
            best = apr_pstrdup(p, e->d_name);
    }
    closedir(d);
    return best;
}

/* rel ("" or "/a/b", below the resolved root) with each component as its
 * directory stores it. realpath() keeps the spelling it was given, so on a
 * case-insensitive filesystem /API/x and /api/x resolve to two strings: a
 * directory folds case when the component with its ASCII case swapped is the
 * same inode, and then the stored name is read from the directory. On a
 * case-sensitive filesystem this costs one failing stat() per component. */
static const char *stored_names(apr_pool_t *p, const char *root, const char *rel,
                                const char **why)
{
    const char *dir = strcmp(root, "/") == 0 ? "" : root, *name;
    const char *out = "";
    char *copy = apr_pstrdup(p, rel), *comp, *state = NULL;
    struct stat sc, sa;

    for (comp = apr_strtok(copy, "/", &state); comp != NULL; comp = apr_strtok(NULL, "/", &state)) {
        name = comp;
        if (has_letter(comp)
            && stat(apr_pstrcat(p, dir, "/", swapcase(p, comp), NULL), &sa) == 0
            && stat(apr_pstrcat(p, dir, "/", comp, NULL), &sc) == 0
            && sa.st_dev == sc.st_dev && sa.st_ino == sc.st_ino) {
            if ((name = stored_name(p, *dir ? dir : "/", comp, &sc)) == NULL) {
                *why = apr_psprintf(p, "cannot find how %s/%s is named on disk", dir, comp);
                return NULL;
            }
        }
        dir = apr_pstrcat(p, dir, "/", name, NULL);
        out = apr_pstrcat(p, out, "/", name, NULL);
    }
    return out;
}

static const char *resource_key(request_rec *r, int depth, const char **why);

/* A per-directory rewrite (mod_rewrite in fixups) leaves "redirect:URL":
 * the request is served by the internal redirect to URL, so it is priced as
 * that is, found the way Apache will find it. */
static const char *redirect_key(request_rec *r, const char *target, int depth, const char **why)
{
    request_rec *rr;
    const char *key;

    if (depth >= MPX_REDIRECT_DEPTH) {
        *why = "internal redirects nested too deep";
        return NULL;
    }
    rr = ap_sub_req_lookup_uri(target, r, NULL);
    if (rr == NULL) {
        *why = "cannot look up the target of the internal redirect";
        return NULL;
    }
    key = resource_key(rr, depth + 1, why);
    key = key != NULL ? apr_pstrdup(r->pool, key) : NULL;
    if (*why != NULL)
        *why = apr_pstrdup(r->pool, *why);
    ap_destroy_sub_req(rr);
    return key;
}

static const char *resource_key(request_rec *r, int depth, const char **why)
{
    const char *f = r->filename, *uri = r->uri, *rel, *croot, *key;
    char *file, *root;
    size_t n, pl;
    int is_file;

    *why = NULL;
    if (f != NULL && strncmp(f, "redirect:/", 10) == 0)
        return redirect_key(r, f + 9, depth, why);
    is_file = f != NULL && f[0] == '/' && r->finfo.filetype != APR_NOFILE;
    if (is_file) {
        const char *slash = r->finfo.filetype == APR_DIR ? "/" : "";

        if ((file = resolved(r->pool, f)) == NULL) {
            char err[120];

            *why = apr_psprintf(r->pool, "cannot resolve %s: %s", f,
                                apr_strerror(APR_FROM_OS_ERROR(errno), err, sizeof err));
            return NULL;
        }
        /* Below the DocumentRoot: the file's own URL, whatever reached it. */
        root = resolved(r->pool, ap_document_root(r));
        if (root != NULL && (rel = below(file, root)) != NULL) {
            if ((rel = stored_names(r->pool, root, rel, why)) == NULL)
                return NULL;
            return url_key(r, apr_pstrcat(r->pool, "/", rel, slash, NULL),
                           strlen(rel) + 1 + strlen(slash), why);
        }
        /* Below the directory of an Alias: that alias's URL. */
        croot = ap_context_document_root(r);
        if (croot != NULL && strcmp(croot, ap_document_root(r)) != 0
            && (root = resolved(r->pool, croot)) != NULL && (rel = below(file, root)) != NULL) {
            if ((rel = stored_names(r->pool, root, rel, why)) == NULL)
                return NULL;
            key = apr_pstrcat(r->pool, "/", ap_context_prefix(r), "/", rel, slash, NULL);
            return url_key(r, key, strlen(key), why);
        }
    }
    /* The URL path, less the path info of a file that a handler serves. */
    if (uri == NULL || uri[0] != '/') {
        *why = "the request has no URL path";
        return NULL;
    }
    n = strlen(uri);
    if (is_file && r->path_info != NULL && (pl = strlen(r->path_info)) > 0 && pl < n
        && strcmp(uri + n - pl, r->path_info) == 0)
        n -= pl;
    return url_key(r, uri, n, why);
}

const char *mpx_price_key(request_rec *r, const char **why)
{
    return resource_key(r, 0, why);
}

mp_status mpx_price_for(request_rec *r, mpx_server_conf *sc, mpx_dir_conf *dc, mp_amount *price,
                        uint8_t *schemes_out, mp_amount *unit)
{
    mp_amount table;
    int found = 0, schemes;
    const char *key, *why = NULL;
    mp_status st;

    if ((key = mpx_price_key(r, &why)) == NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "MP00040: no price key for %s (file %s): %s; "
                      "refusing the request", r->uri, r->filename ? r->filename : "none",
                      why ? why : "unknown error");
        return MP_ERR_ARG;
    }
    apr_table_setn(r->notes, "micropay-price-key", key);
    /* Any failure is a 500, never "no entry": that would sell the resource
     * at the location's MicropayPrice. */
    st = mps_price_get(sc->store, sc->vendor, key, strlen(key), &table, &found);
    if (st != MP_OK) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "MP00040: price lookup for %s (key %s) "
                      "failed: %s; refusing the request", r->uri, key, mps_errmsg(sc->store));
        return MP_ERR_ARG;
    }
    if (found)
        *price = table;
    else if (dc->price_set)
        *price = dc->price;
    else {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "MP00023: Micropay is on for %s but no "
                      "MicropayPrice applies and the price table has no entry for %s", r->uri, key);
        return MP_ERR_ARG;
    }
    *unit = dc->unit_set ? dc->pw_unit : *price;
    schemes = dc->schemes != MP_UNSET ? dc->schemes : MPX_DEFAULT_SCHEMES;
    if ((schemes & MP_SCHEME_PAYWORD)
        && (memcmp(unit->cur, price->cur, 3) != 0 || price->units % unit->units != 0)) {
        /* PayWord pays in whole words; a price the unit does not divide
         * cannot be paid with it. */
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "MP00024: PayWord not offered for %s: the "
                      "price is not a multiple of MicropayPayWordUnit", r->uri);
        schemes &= ~MP_SCHEME_PAYWORD;
    }
    /* PayWord words are bearer values: on a connection without TLS whoever
     * sees one can race the customer to spend it (Millicent's req_sig is
     * keyed by the customer's secret, PayWord's request tag is not). */
    if ((schemes & MP_SCHEME_PAYWORD) && dc->pw_over_http != 1
        && !ap_ssl_conn_is_ssl(r->connection)) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "MP00148: PayWord not offered for %s: the "
                      "connection is plain HTTP (MicropayPayWordOverHTTP is off)", r->uri);
        schemes &= ~MP_SCHEME_PAYWORD;
    }
    if (schemes == 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "MP00025: no payment scheme can sell %s at "
                      "its price: check MicropaySchemes, MicropayPayWordUnit and, on plain HTTP, "
                      "MicropayPayWordOverHTTP", r->uri);
        return MP_ERR_ARG;
    }
    if (!(schemes & MP_SCHEME_PAYWORD))
        mp_amount_set(unit, 0, price->cur);
    *schemes_out = (uint8_t)schemes;
    return MP_OK;
}
