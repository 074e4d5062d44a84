/* mp_status.c - texts of the status codes. The tables are indexed by the
 * enum so a new status without a text fails to compile (array size). */
#include <stddef.h>
#include <string.h>
#include "mp_status.h"

static const char *const messages[MP_STATUS_COUNT] = {
    [MP_OK]                    = "success",
    [MP_ERR_ARG]               = "invalid argument",
    [MP_ERR_NOMEM]             = "out of memory",
    [MP_ERR_CRYPTO]            = "cryptographic library failure",
    [MP_ERR_BUFFER]            = "output buffer too small",
    [MP_ERR_MALFORMED]         = "malformed record",
    [MP_ERR_TRUNCATED]         = "record truncated",
    [MP_ERR_TRAILING]          = "trailing bytes after record",
    [MP_ERR_TOO_LARGE]         = "input or field above its size limit",
    [MP_ERR_VERSION]           = "unknown wire version",
    [MP_ERR_TYPE]              = "unexpected record type",
    [MP_ERR_CHARSET]           = "forbidden character in text field",
    [MP_ERR_BASE64]            = "invalid base64url text",
    [MP_ERR_AMOUNT]            = "invalid amount",
    [MP_ERR_CURRENCY]          = "invalid or mismatched currency",
    [MP_ERR_OVERFLOW]          = "amount out of range",
    [MP_ERR_KEY]               = "unusable key",
    [MP_ERR_FORGED]            = "stamp, MAC or signature does not verify",
    [MP_ERR_UNTRUSTED]         = "certificate from an untrusted broker",
    [MP_ERR_UNKNOWN_SERIES]    = "unknown secret series",
    [MP_ERR_WRONG_VENDOR]      = "issued for another vendor",
    [MP_ERR_WRONG_TARGET]      = "receipt for another resource",
    [MP_ERR_EXPIRED]           = "expired or not yet valid",
    [MP_ERR_SPENT]             = "already spent",
    [MP_ERR_INSUFFICIENT]      = "value below the price",
    [MP_ERR_PRICE]             = "payment agreed to another price",
    [MP_ERR_UNKNOWN_COMMITMENT]= "unknown PayWord commitment",
    [MP_ERR_EXHAUSTED]         = "PayWord chain exhausted",
    [MP_ERR_CREDIT]            = "commitment exceeds the certificate's credit limit",
    [MP_ERR_STORE]             = "payment store unavailable or corrupt",
    [MP_ERR_BUSY]              = "concurrent update, retry",
};

static const char *const reasons[MP_STATUS_COUNT] = {
    [MP_OK]                    = "ok",
    [MP_ERR_ARG]               = "internal",
    [MP_ERR_NOMEM]             = "internal",
    [MP_ERR_CRYPTO]            = "internal",
    [MP_ERR_BUFFER]            = "internal",
    [MP_ERR_MALFORMED]         = "malformed",
    [MP_ERR_TRUNCATED]         = "malformed",
    [MP_ERR_TRAILING]          = "malformed",
    [MP_ERR_TOO_LARGE]         = "malformed",
    [MP_ERR_VERSION]           = "malformed",
    [MP_ERR_TYPE]              = "malformed",
    [MP_ERR_CHARSET]           = "malformed",
    [MP_ERR_BASE64]            = "malformed",
    [MP_ERR_AMOUNT]            = "malformed",
    [MP_ERR_CURRENCY]          = "malformed",
    [MP_ERR_OVERFLOW]          = "malformed",
    [MP_ERR_KEY]               = "malformed",
    [MP_ERR_FORGED]            = "forged",
    [MP_ERR_UNTRUSTED]         = "forged",
    [MP_ERR_UNKNOWN_SERIES]    = "forged",
    [MP_ERR_WRONG_VENDOR]      = "wrong-vendor",
    [MP_ERR_WRONG_TARGET]      = "wrong-resource",
    [MP_ERR_EXPIRED]           = "expired",
    [MP_ERR_SPENT]             = "already-spent",
    [MP_ERR_INSUFFICIENT]      = "insufficient",
    [MP_ERR_PRICE]             = "price-mismatch",
    [MP_ERR_UNKNOWN_COMMITMENT]= "unknown-commitment",
    [MP_ERR_EXHAUSTED]         = "exhausted",
    [MP_ERR_CREDIT]            = "malformed",
    [MP_ERR_STORE]             = "internal",
    [MP_ERR_BUSY]              = "internal",
};

const char *mp_strerror(mp_status st)
{
    if ((unsigned)st >= MP_STATUS_COUNT || messages[st] == NULL)
        return "unknown status";
    return messages[st];
}

const char *mp_reason(mp_status st)
{
    if ((unsigned)st >= MP_STATUS_COUNT || reasons[st] == NULL)
        return "internal";
    return reasons[st];
}

mp_class mp_status_class(mp_status st)
{
    const char *r = mp_reason(st);

    if (st == MP_OK)
        return MP_CLASS_OK;
    if (strcmp(r, "malformed") == 0)
        return MP_CLASS_MALFORMED;
    if (strcmp(r, "internal") == 0)
        return MP_CLASS_INTERNAL;
    return MP_CLASS_REFUSED;
}
