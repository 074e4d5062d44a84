/*
 * mod_micropay_body.c - the request body of a paid request: read whole
 * before the payment is decided, and replayed to the handler unchanged.
 *
 * A payment is bound to its request body (docs/PROTOCOL.md 6.3, 7.5): a
 * retry of an accepted payment is served again only for the same body,
 * so that one payment never buys two POSTs. The body must therefore be
 * known in the fixups hook, before any handler reads it. It is read up to
 * MicropayMaxBody, kept in the request pool and handed to the handler
 * (CGI, proxy, any module) by an input filter of ours, as mod_request's
 * KEPT_BODY does: the handler reads exactly the bytes that were hashed.
 */
#include <string.h>
#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"
#include "apr_strings.h"
#include "mod_micropay.h"

/* APR's ring macros (APR_BRIGADE_SENTINEL, the brigade inserts) compute
 * offsets by subtracting a null pointer; clang 14+ warns about that in
 * every expansion, which the fuzzing build (clang, -Werror) refuses. The
 * idiom is APR's, not ours, and correct on every platform APR supports. */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wnull-pointer-subtraction"
#endif

APLOG_USE_MODULE(micropay);

typedef struct {
    const char *data;
    apr_off_t   len;
    apr_off_t   offset;
    int         eos_sent;
} kept_body;

/* SHA-256 of the empty string: the digest of a request without a body. */
static const uint8_t empty_digest[MP_HASH_LEN] = {
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55
};

/* Serves the kept body, then end of stream: the protocol filters below
 * have given theirs already and are not asked again. */
apr_status_t mpx_kept_body_filter(ap_filter_t *f, apr_bucket_brigade *bb, ap_input_mode_t mode,
                                  apr_read_type_e block, apr_off_t readbytes)
{
    kept_body *kb = f->ctx;
    apr_bucket *e;
    apr_off_t n;

    (void)block;
    if (kb == NULL)
        return ap_get_brigade(f->next, bb, mode, block, readbytes);
    if (mode != AP_MODE_READBYTES && mode != AP_MODE_GETLINE && mode != AP_MODE_EXHAUSTIVE
        && mode != AP_MODE_SPECULATIVE)
        return APR_ENOTIMPL;
    n = kb->len - kb->offset;
    if (n == 0) {
        if (mode != AP_MODE_SPECULATIVE)
            kb->eos_sent = 1;
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(f->c->bucket_alloc));
        return APR_SUCCESS;
    }
    if (mode != AP_MODE_EXHAUSTIVE && readbytes > 0 && readbytes < n)
        n = readbytes;
    if (mode == AP_MODE_GETLINE) {
        const char *nl = memchr(kb->data + kb->offset, '\n', (size_t)n);

        if (nl != NULL)
            n = (apr_off_t)(nl - (kb->data + kb->offset)) + 1;
    }
    /* The pool owns the bytes for the request's life. */
    e = apr_bucket_immortal_create(kb->data + kb->offset, (apr_size_t)n, f->c->bucket_alloc);
    APR_BRIGADE_INSERT_TAIL(bb, e);
    if (mode != AP_MODE_SPECULATIVE)
        kb->offset += n;
    return APR_SUCCESS;
}

int mpx_body_take(request_rec *r, apr_off_t max, uint8_t digest[MP_HASH_LEN])
{
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    const char *te = apr_table_get(r->headers_in, "Transfer-Encoding");
    apr_bucket_brigade *bb, *kept;
    apr_bucket *e;
    apr_off_t declared = 0, total = 0;
    apr_size_t flat = 0;
    apr_status_t rv;
    kept_body *kb;
    char *data = NULL;
    int eos = 0, ret = OK;

    /* The core has refused a malformed Content-Length or an unknown
     * Transfer-Encoding before us. */
    if (cl != NULL && apr_strtoff(&declared, cl, NULL, 10) != APR_SUCCESS)
        declared = 0;
    if (te == NULL && declared <= 0) {
        memcpy(digest, empty_digest, MP_HASH_LEN);
        return OK;
    }
    /* Known too large: refused before a byte is read or a payment looked at. */
    if (declared > max)
        return HTTP_REQUEST_ENTITY_TOO_LARGE;
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    kept = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    while (!eos) {
        rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES, APR_BLOCK_READ,
                            HUGE_STRING_LEN);
        if (rv != APR_SUCCESS) {
            ap_log_rerror(APLOG_MARK, APLOG_INFO, rv, r, "MP00160: reading the body of a paid "
                          "request failed");
            ret = ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
            goto out;
        }
        for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb); e = APR_BUCKET_NEXT(e)) {
            const char *s;
            apr_size_t n;

            if (APR_BUCKET_IS_EOS(e)) {
                eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(e))
                continue;
            if ((rv = apr_bucket_read(e, &s, &n, APR_BLOCK_READ)) != APR_SUCCESS) {
                ret = ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
                goto out;
            }
            if ((apr_off_t)n > max - total) {
                ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "MP00161: body of a paid request "
                              "is over MicropayMaxBody (%" APR_OFF_T_FMT " bytes): 413, "
                              "nothing spent", max);
                ret = HTTP_REQUEST_ENTITY_TOO_LARGE;
                goto out;
            }
            total += (apr_off_t)n;
            if (n > 0 && (rv = apr_brigade_write(kept, NULL, NULL, s, n)) != APR_SUCCESS) {
                ret = HTTP_INTERNAL_SERVER_ERROR;
                goto out;
            }
        }
        apr_brigade_cleanup(bb);
    }
    if (total > 0
        && apr_brigade_pflatten(kept, &data, &flat, r->pool) != APR_SUCCESS) {
        ret = HTTP_INTERNAL_SERVER_ERROR;
        goto out;
    }
    if (mp_sha256(data != NULL ? data : "", flat, digest) != MP_OK) {
        ret = HTTP_INTERNAL_SERVER_ERROR;
        goto out;
    }
    kb = apr_pcalloc(r->pool, sizeof *kb);
    kb->data = data != NULL ? data : "";
    kb->len = (apr_off_t)flat;
    ap_add_input_filter(MPX_KEPT_BODY_FILTER, kb, r, r->connection);
out:
    apr_brigade_destroy(bb);
    apr_brigade_cleanup(kept);
    return ret;
}
