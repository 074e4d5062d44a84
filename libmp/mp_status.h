/*
 * mp_status.h - the one status type of libmp.
 *
 * Every libmp function that can fail returns an mp_status. Outputs are
 * written only when the function returns MP_OK; on any other status the
 * caller's output objects are left untouched.
 *
 * mp_strerror() gives a human sentence for logs; mp_reason() gives the
 * machine-readable reason token that docs/PROTOCOL.md puts on the wire
 * (Payment-Error header and JSON "reason"). Both return static strings.
 */
#ifndef MP_STATUS_H
#define MP_STATUS_H

typedef enum {
    MP_OK = 0,

    /* caller and environment errors (never the client's fault) */
    MP_ERR_ARG,            /* invalid argument from the calling code */
    MP_ERR_NOMEM,          /* allocation failed */
    MP_ERR_CRYPTO,         /* OpenSSL failed for a reason other than a bad input */
    MP_ERR_BUFFER,         /* caller's output buffer too small */

    /* wire format errors: reason "malformed" */
    MP_ERR_MALFORMED,      /* structurally invalid input */
    MP_ERR_TRUNCATED,      /* input ended inside a field */
    MP_ERR_TRAILING,       /* bytes left after a complete object */
    MP_ERR_TOO_LARGE,      /* input or a field is above its hard limit */
    MP_ERR_VERSION,        /* unknown wire version */
    MP_ERR_TYPE,           /* object of another type than expected */
    MP_ERR_CHARSET,        /* a text field holds a forbidden byte */
    MP_ERR_BASE64,         /* not canonical unpadded base64url */
    MP_ERR_AMOUNT,         /* amount text does not parse */
    MP_ERR_CURRENCY,       /* currency code invalid, or two amounts in different currencies */
    MP_ERR_OVERFLOW,       /* amount arithmetic would exceed MP_AMOUNT_MAX or go below zero */
    MP_ERR_KEY,            /* a public or private key cannot be used */

    /* payment errors: each has its own wire reason */
    MP_ERR_FORGED,         /* stamp, MAC or signature does not verify ("forged") */
    MP_ERR_UNTRUSTED,      /* certificate from a broker we do not trust ("forged") */
    MP_ERR_UNKNOWN_SERIES, /* scrip/customer secret series not held ("forged") */
    MP_ERR_WRONG_VENDOR,   /* issued for another vendor ("wrong-vendor") */
    MP_ERR_WRONG_TARGET,   /* receipt for another resource ("wrong-resource") */
    MP_ERR_EXPIRED,        /* past its expiry, or not yet valid ("expired") */
    MP_ERR_SPENT,          /* already spent / word index not beyond the last ("already-spent") */
    MP_ERR_INSUFFICIENT,   /* value below the price ("insufficient") */
    MP_ERR_PRICE,          /* payment agreed to another price than asked ("price-mismatch") */
    MP_ERR_UNKNOWN_COMMITMENT, /* PayWord commitment not known ("unknown-commitment") */
    MP_ERR_EXHAUSTED,      /* PayWord chain has no words left ("exhausted") */
    MP_ERR_CREDIT,         /* commitment worth more than its certificate's credit limit ("malformed": the record alone shows it) */

    /* errors of the callers' stores (mod_micropay, broker): reason "internal" */
    MP_ERR_STORE,          /* the store is missing, unreadable, corrupt or failed */
    MP_ERR_BUSY,           /* optimistic update lost a race: re-read and retry */

    MP_STATUS_COUNT        /* not a status: the number of statuses */
} mp_status;

/* A sentence describing st; never NULL, "unknown status" for values out of range. */
const char *mp_strerror(mp_status st);

/* The protocol reason token for st (see docs/PROTOCOL.md, "Failures"):
 * "ok", "malformed", "forged", "wrong-vendor", "wrong-resource", "expired", "already-spent",
 * "insufficient", "price-mismatch", "unknown-commitment", "exhausted", or
 * "internal" for errors that are not the client's. Never NULL. */
const char *mp_reason(mp_status st);

/* The class of st, which decides the HTTP status in the one place the glue
 * maps it (mod_micropay_status.c): the reason token "ok", "malformed",
 * "internal", or any other token (a refusal of the payment). */
typedef enum {
    MP_CLASS_OK,
    MP_CLASS_MALFORMED,     /* the record or request alone is wrong: 400 */
    MP_CLASS_REFUSED,       /* a verification failed: 402 (vendor), 422 (broker) */
    MP_CLASS_INTERNAL       /* not the client's fault: 500 */
} mp_class;
mp_class mp_status_class(mp_status st);

#endif
