/*
 * mod_micropay_status.c - libmp statuses to HTTP statuses, for the vendor
 * and the broker alike. The reason token libmp gives a status is the
 * protocol's; only the HTTP status differs by party: a refused payment is
 * 402 Payment Required at a vendor (the answer carries a new offer), a
 * refused broker request 422 (the request was understood, the money says
 * no). Nothing else in the module compares reason strings.
 */
#include "httpd.h"
#include "mod_micropay.h"

int mpx_http_status(mp_status st, mpx_party party)
{
    switch (mp_status_class(st)) {
    case MP_CLASS_OK:
        return HTTP_OK;
    case MP_CLASS_MALFORMED:
        return HTTP_BAD_REQUEST;
    case MP_CLASS_REFUSED:
        return party == MPX_PARTY_BROKER ? HTTP_UNPROCESSABLE_ENTITY : HTTP_PAYMENT_REQUIRED;
    case MP_CLASS_INTERNAL:
    default:
        return HTTP_INTERNAL_SERVER_ERROR;
    }
}
