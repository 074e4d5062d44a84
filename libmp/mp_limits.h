/*
 * mp_limits.h - hard size limits of every field that crosses the wire.
 * Decoders reject longer fields with MP_ERR_TOO_LARGE; encoders refuse to
 * produce them (MP_ERR_ARG). docs/PROTOCOL.md repeats these numbers.
 */
#ifndef MP_LIMITS_H
#define MP_LIMITS_H

#define MP_NAME_MAX     64     /* vendor, broker and user names */
#define MP_PROPS_MAX    128    /* Millicent scrip properties */
#define MP_METHOD_MAX   16     /* HTTP method */
#define MP_HOST_MAX     255    /* HTTP authority (host[:port]) */
#define MP_TARGET_MAX   4096   /* HTTP request target (path and query) */
#define MP_URL_MAX      512    /* broker URL in an offer */
#define MP_CHAIN_MAX    1000000u /* longest PayWord chain */

#endif
