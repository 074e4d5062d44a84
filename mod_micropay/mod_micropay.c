/*
 * mod_micropay.c - the module record and its hooks.
 *
 * Order of work on a request (docs/PROTOCOL.md 7.1): authentication and
 * authorization have run by the time the fixups hook does, so nobody pays
 * for a 401 or 403; the payment is decided in fixups, before any content
 * handler, so a paid location works in front of static files, CGI and
 * mod_proxy alike. Our own answers (402, 400, 500) are written by a
 * handler that runs before all others when fixups chose it.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"
#include "mod_micropay.h"

static void mpx_insert_filter(request_rec *r)
{
    request_rec *p;

    /* Paid responses, error pages included, get their cache and payment
     * headers from one filter, added wherever the response comes from:
     * also an internal redirect to a free page after a payment, which
     * carries that payment's receipt and change. */
    for (p = r; p != NULL; p = p->prev)
        if (apr_table_get(p->notes, "micropay-paid") != NULL) {
            ap_add_output_filter(MPX_PAID_FILTER, NULL, r, r->connection);
            return;
        }
}

static void mpx_register_hooks(apr_pool_t *p)
{
    (void)p;
    ap_hook_post_config(mpx_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(mpx_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    /* REALLY_LAST: after every module that can still change what the
     * request serves (mod_dir's index and FallbackResource, mod_negotiation,
     * per-directory rewrites), so that what is priced is what is served. */
    ap_hook_fixups(mpx_fixups, NULL, NULL, APR_HOOK_REALLY_LAST);
    ap_hook_handler(mpx_handler, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_handler(mpx_broker_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_insert_filter(mpx_insert_filter, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_insert_error_filter(mpx_insert_filter, NULL, NULL, APR_HOOK_MIDDLE);
    ap_register_output_filter(MPX_PAID_FILTER, mpx_paid_filter, NULL, AP_FTYPE_CONTENT_SET);
    ap_register_input_filter(MPX_KEPT_BODY_FILTER, mpx_kept_body_filter, NULL, AP_FTYPE_RESOURCE);
}

AP_DECLARE_MODULE(micropay) = {
    STANDARD20_MODULE_STUFF,
    mpx_create_dir_conf,
    mpx_merge_dir_conf,
    mpx_create_server_conf,
    mpx_merge_server_conf,
    mpx_directives,
    mpx_register_hooks,
    AP_MODULE_FLAG_NONE
};
