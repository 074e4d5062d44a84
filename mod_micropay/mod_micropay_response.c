/*
 * mod_micropay_response.c - the one place where a payment outcome becomes
 * HTTP (docs/PROTOCOL.md 7.2, 7.3, 7.6, 7.7).
 *
 *   no credential        402, WWW-Authenticate: Payment realm, offer
 *   refused credential   400 (malformed) or 402, Payment-Error: <reason>
 *   store/server failure 500, Payment-Error: internal; never the content
 *   paid                 the handler's response, plus Payment-Change,
 *                        Payment-Receipt, Cache-Control: private, Vary
 *
 * Our answers are written by our own handler, chosen in fixups and run
 * before every other handler, so that they look the same in front of
 * static files, CGI or mod_proxy, and carry a JSON or HTML body.
 */
#include <string.h>
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"
#include "util_filter.h"
#include "mod_micropay.h"

APLOG_USE_MODULE(micropay);

#define VARY_PAYMENT "Authorization, Payment-Authorization"

int mpx_paid_covers(request_rec *paid, const mp_amount *price)
{
    const char *v = apr_table_get(paid->notes, "micropay-paid");
    char cur[4];
    apr_uint64_t units;

    return v != NULL && sscanf(v, "%" APR_UINT64_T_FMT " %3[A-Z]", &units, cur) == 2
        && memcmp(cur, price->cur, 3) == 0 && units >= price->units;
}

int mpx_respond(request_rec *r, mpx_outcome outcome, mpx_answer *a)
{
    mpx_answer *keep;

    if (outcome == MPX_OUT_PAID) {
        /* The price this payment covers, for requests it redirects to. */
        apr_table_setn(r->notes, "micropay-paid",
                       apr_psprintf(r->pool, "%" APR_UINT64_T_FMT " %s",
                                    (apr_uint64_t)a->offer.price.units, a->offer.price.cur));
        /* err_headers_out: kept on error pages and across internal redirects,
         * and untouched by handlers (mod_proxy replaces headers_out). */
        if (a->change_b64)
            apr_table_setn(r->err_headers_out, "Payment-Change", a->change_b64);
        if (a->receipt_b64)
            apr_table_setn(r->err_headers_out, "Payment-Receipt", a->receipt_b64);
        return OK;
    }
    keep = apr_pmemdup(r->pool, a, sizeof *a);
    keep->status = outcome == MPX_OUT_OFFER ? MP_OK : a->status;
    /* The offer record is encoded only when it is sent: a paid request,
     * the common case, never needs it. */
    if (outcome != MPX_OUT_ERROR && keep->offer_b64 == NULL) {
        uint8_t enc[MP_WIRE_MAX];
        size_t len = 0, cap;
        char *text;
        mp_status st = mp_offer_encode(&keep->offer, enc, sizeof enc, &len);

        cap = mp_b64url_len(len) + 1;
        text = apr_palloc(r->pool, cap);
        if (st == MP_OK)
            st = mp_b64url_encode(enc, len, text, cap, NULL);
        if (st != MP_OK) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "MP00027: cannot encode the offer for %s: %s",
                          r->uri, mp_strerror(st));
            keep->status = st;
            apr_table_setn(r->notes, "micropay-answered", "error");
            r->handler = MPX_HANDLER_402;
            ap_set_module_config(r->request_config, &micropay_module, keep);
            return OK;
        }
        keep->offer_b64 = text;
    }
    ap_set_module_config(r->request_config, &micropay_module, keep);
    apr_table_setn(r->notes, "micropay-answered", outcome == MPX_OUT_ERROR ? "error" : "offer");
    r->handler = MPX_HANDLER_402;
    return OK;
}

/* ---- bodies -------------------------------------------------------------------- */

static const char *json_str(apr_pool_t *p, const char *s)
{
    /* Wire text is visible ASCII, so only '"' and '\' need escaping. */
    size_t n = strlen(s), i, o = 0;
    char *out = apr_palloc(p, 2 * n + 3);

    out[o++] = '"';
    for (i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            out[o++] = '\\';
        out[o++] = s[i];
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

static const char *html_esc(apr_pool_t *p, const char *s)
{
    return ap_escape_html2(p, s, 1);
}

static const char *human(apr_pool_t *p, const mp_amount *a)
{
    char buf[MP_AMOUNT_STRMAX];

    return mp_amount_format(a, buf, sizeof buf) == MP_OK ? apr_pstrdup(p, buf) : "?";
}

static const char *offer_json(apr_pool_t *p, const mpx_answer *a)
{
    const mp_offer *o = &a->offer;
    int mc = (o->schemes & MP_SCHEME_MILLICENT) != 0, pw = (o->schemes & MP_SCHEME_PAYWORD) != 0;

    return apr_pstrcat(p,
        "{\"vendor\": ", json_str(p, o->vendor),
        ", \"method\": ", json_str(p, o->method),
        ", \"target\": ", json_str(p, o->target),
        ", \"price\": ", json_str(p, human(p, &o->price)),
        ", \"price_units\": ", apr_psprintf(p, "%" APR_UINT64_T_FMT, (apr_uint64_t)o->price.units),
        ", \"currency\": ", json_str(p, o->price.cur),
        ", \"schemes\": [", mc ? "\"millicent\"" : "", mc && pw ? ", " : "", pw ? "\"payword\"" : "", "]",
        ", \"payword_unit\": ", pw ? json_str(p, human(p, &o->pw_unit)) : "null",
        ", \"payword_unit_units\": ",
        pw ? apr_psprintf(p, "%" APR_UINT64_T_FMT, (apr_uint64_t)o->pw_unit.units) : "null",
        ", \"broker\": ", o->broker_url[0] ? json_str(p, o->broker_url) : "null",
        ", \"receipt_window\": ", apr_psprintf(p, "%u", (unsigned)o->receipt_window),
        ", \"expires\": ", apr_psprintf(p, "%" APR_UINT64_T_FMT, (apr_uint64_t)o->expiry),
        ", \"offer\": ", json_str(p, a->offer_b64 ? a->offer_b64 : ""),
        "}", NULL);
}

static const char *html_page(apr_pool_t *p, const mpx_answer *a, const char *reason)
{
    const mp_offer *o = &a->offer;
    const char *schemes =
        (o->schemes & MP_SCHEME_MILLICENT) && (o->schemes & MP_SCHEME_PAYWORD)
            ? "Millicent scrip or PayWord"
            : (o->schemes & MP_SCHEME_MILLICENT) ? "Millicent scrip" : "PayWord";

    return apr_pstrcat(p,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"payment-offer\" content=\"", a->offer_b64 ? a->offer_b64 : "", "\">"
        "<title>Payment required</title></head>\n<body>\n<h1>Payment required</h1>\n",
        reason ? apr_pstrcat(p, "<p>The payment was not accepted: <strong>",
                             html_esc(p, reason), "</strong>.</p>\n", NULL) : "",
        "<p><strong>", html_esc(p, o->vendor), "</strong> sells <code>", html_esc(p, o->target),
        "</code> for <strong>", html_esc(p, human(p, &o->price)), "</strong>, paid with ",
        schemes, ".</p>\n",
        o->broker_url[0] ? apr_pstrcat(p, "<p>Scrip and PayWord certificates: <a href=\"",
                                       html_esc(p, o->broker_url), "\">", html_esc(p, o->broker_url),
                                       "</a></p>\n", NULL) : "",
        "<p>A micropayment wallet (such as mod_micropay's wallet-proxy) pays such offers "
        "for you and shows the page.</p>\n</body></html>\n", NULL);
}

/* JSON when the client asks for it or does not ask for HTML (docs/PROTOCOL.md 7.2). */
static int wants_html(request_rec *r)
{
    const char *accept = apr_table_get(r->headers_in, "Accept");
    int json = 0, html = 0;
    char *copy, *range, *state = NULL, *param, *pstate;
    const char *type;
    int q_zero;

    if (accept == NULL)
        return 0;
    copy = apr_pstrndup(r->pool, accept, 4096);
    for (range = apr_strtok(copy, ",", &state); range; range = apr_strtok(NULL, ",", &state)) {
        type = apr_strtok(range, ";", &pstate);
        if (type == NULL)
            continue;
        while (*type == ' ' || *type == '\t')
            type++;
        q_zero = 0;
        while ((param = apr_strtok(NULL, ";", &pstate)) != NULL) {
            while (*param == ' ' || *param == '\t')
                param++;
            if ((param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
                const char *v = param + 2;
                q_zero = v[0] == '0' && (v[1] == '\0' || v[1] == ' ' || (v[1] == '.' && strspn(v + 2, "0") == strcspn(v + 2, " \t")));
            }
        }
        if (q_zero)
            continue;
        if (strncasecmp(type, "application/json", 16) == 0 && strchr(" \t", type[16] ? type[16] : ' '))
            json = 1;
        else if (strncasecmp(type, "text/html", 9) == 0 && strchr(" \t", type[9] ? type[9] : ' '))
            html = 1;
    }
    return !json && html;
}

static const char *quoted(apr_pool_t *p, const char *s)
{
    return json_str(p, s);        /* an HTTP quoted-string escapes the same two bytes */
}

int mpx_handler(request_rec *r)
{
    mpx_answer *a;
    const char *reason = NULL, *body;
    int status, html;

    if (r->handler == NULL || strcmp(r->handler, MPX_HANDLER_402) != 0) {
        const mpx_dir_conf *dc = ap_get_module_config(r->per_dir_config, &micropay_module);
        request_rec *m;

        /* Fail closed if another module replaced our answer's handler after
         * the payment decision: the content would go out unpaid. */
        if (apr_table_get(r->notes, "micropay-answered") != NULL) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "MP00029: handler of %s changed to %s "
                          "after the payment decision; refusing", r->uri, r->handler);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        /* A subrequest that runs content in a paid location (an SSI include,
         * say) serves it only if the request it belongs to paid at least
         * its price: a cheap page must not include a dear one. */
        if (r->main != NULL && dc != NULL && dc->enabled == 1) {
            mpx_server_conf *sc = ap_get_module_config(r->server->module_config, &micropay_module);
            mp_amount price, unit;
            uint8_t schemes = 0;

            for (m = r->main; m->main != NULL; m = m->main)
                ;
            if (apr_table_get(m->notes, "micropay-paid") == NULL) {
                ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "MP00035: subrequest for paid %s "
                              "from an unpaid request; refused", r->uri);
                return HTTP_FORBIDDEN;
            }
            if (sc == NULL || sc->store == NULL
                || mpx_price_for(r, sc, (mpx_dir_conf *)dc, &price, &schemes, &unit) != MP_OK)
                return HTTP_INTERNAL_SERVER_ERROR;
            if (!mpx_paid_covers(m, &price)) {
                ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "MP00036: subrequest for paid %s "
                              "dearer than the request it belongs to paid; refused", r->uri);
                return HTTP_FORBIDDEN;
            }
        }
        return DECLINED;
    }
    if ((a = ap_get_module_config(r->request_config, &micropay_module)) == NULL)
        return DECLINED;          /* "SetHandler micropay-402" by hand: not ours to answer */
    /* Read away a request body so that the connection can be kept alive. */
    ap_discard_request_body(r);

    if (apr_table_get(r->notes, "micropay-answered")[0] == 'e') {
        status = HTTP_INTERNAL_SERVER_ERROR;
        reason = "internal";
    } else if (a->status == MP_OK) {
        status = HTTP_PAYMENT_REQUIRED;
    } else {
        reason = mp_reason(a->status);
        status = mpx_http_status(a->status, MPX_PARTY_VENDOR);
    }
    r->status = status;
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    apr_table_mergen(r->headers_out, "Vary", "Accept, " VARY_PAYMENT);
    if (reason)
        apr_table_setn(r->headers_out, "Payment-Error", reason);

    if (status == HTTP_INTERNAL_SERVER_ERROR) {
        ap_set_content_type(r, "application/json");
        body = "{\"error\": \"internal\", \"reason\": \"internal\"}\n";
    } else {
        apr_table_setn(r->headers_out, "WWW-Authenticate",
                       apr_pstrcat(r->pool, "Payment realm=", quoted(r->pool, a->offer.vendor),
                                   ", offer=\"", a->offer_b64, "\"", NULL));
        html = wants_html(r);
        if (html) {
            ap_set_content_type(r, "text/html; charset=utf-8");
            body = html_page(r->pool, a, reason);
        } else {
            ap_set_content_type(r, "application/json");
            body = reason
                ? apr_pstrcat(r->pool, "{\"error\": \"payment_failed\", \"reason\": ",
                              json_str(r->pool, reason), ", \"offer\": ", offer_json(r->pool, a),
                              "}\n", NULL)
                : apr_pstrcat(r->pool, offer_json(r->pool, a), "\n", NULL);
        }
    }
    ap_set_content_length(r, (apr_off_t)strlen(body));
    if (!r->header_only)
        ap_rputs(body, r);
    return OK;
}

/* ---- paid responses -------------------------------------------------------------- */

/* Drops "public" from a Cache-Control value and adds "private" unless the
 * response already forbids storing: a paid response must never be served
 * by a shared cache to someone who did not pay (RFC 9111 5.2.2.7). */
static const char *privatize(apr_pool_t *p, const char *cc)
{
    char *copy = apr_pstrdup(p, cc), *tok, *state = NULL;
    const char *out = NULL;
    int private_or_nostore = 0;

    for (tok = apr_strtok(copy, ",", &state); tok; tok = apr_strtok(NULL, ",", &state)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        if (*tok == '\0' || strcasecmp(tok, "public") == 0)
            continue;
        if (strncasecmp(tok, "private", 7) == 0 || strncasecmp(tok, "no-store", 8) == 0)
            private_or_nostore = 1;
        out = out ? apr_pstrcat(p, out, ", ", tok, NULL) : tok;
    }
    if (!private_or_nostore)
        out = out ? apr_pstrcat(p, "private, ", out, NULL) : "private";
    return out;
}

apr_status_t mpx_paid_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    request_rec *r = f->r;
    const char *cc = apr_table_get(r->headers_out, "Cache-Control");
    const char *ecc = apr_table_get(r->err_headers_out, "Cache-Control");
    const char *vary;

    if (ecc != NULL)
        apr_table_setn(r->err_headers_out, "Cache-Control", privatize(r->pool, ecc));
    if (cc != NULL || ecc == NULL)
        apr_table_setn(r->headers_out, "Cache-Control", privatize(r->pool, cc ? cc : ""));
    vary = apr_table_get(r->headers_out, "Vary");
    if (vary == NULL || !ap_find_token(r->pool, vary, "Payment-Authorization"))
        apr_table_mergen(r->headers_out, "Vary", VARY_PAYMENT);
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}
