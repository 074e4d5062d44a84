/*
 * mp_edpoint.h - can a 32-byte Ed25519 public key sign?
 *
 * An Ed25519 public key A is a point of edwards25519, whose group has
 * order 8L (L the prime 2^252 + 27742317777372353535851937790883648493).
 * A verifier accepts (R, S) when [S]B = R + [k]A. If A has small order
 * (1, 2, 4 or 8), [k]A takes at most 8 values whatever the message, so a
 * "signature" R = small-order point, S = 0 verifies for a large share of
 * messages without anyone knowing a private key; A = identity (the bytes
 * 01 00 .. 00) makes it verify for every message. A key whose point is
 * A' + T (T a nonzero small-order point, "mixed order") has a private key
 * only for its A' part, and the T part makes signatures verify
 * differently under cofactored and cofactorless verifiers. Neither is a
 * key anyone generates honestly, so libmp refuses both where it can.
 *
 * Two checks, one job each:
 *
 *  - mp_edpoint_check: the full check, run where a key enters the system
 *    (the broker's /certify, through mp_pubkey_check). The encoding must
 *    be canonical (y < p; x = 0 never with the sign bit set), decode to a
 *    curve point (RFC 8032 5.1.3), and the point must have order exactly
 *    L: [L]A = identity and A != identity. That refuses the 8 small-order
 *    points, every mixed-order point, and strings that are not points.
 *    Costs one scalar multiplication by L in BIGNUM arithmetic (about a
 *    millisecond; see test_sign.c), fine at certification, too slow for
 *    every payment.
 *
 *  - mp_edpoint_check_fast: what every verifier runs (mp_verify, so
 *    vendors at first contact and the broker at redemption). Refuses a
 *    non-canonical y and the encodings of the 8 small-order points,
 *    including their non-canonical and sign-bit variants (libsodium's
 *    list). A table lookup: a few nanoseconds. It does not catch
 *    mixed-order points or strings off the curve: it need not, for
 *    soundness. A mixed-order key still needs the discrete log of its
 *    A' part to sign, and OpenSSL refuses a key that does not decode at
 *    verification. Only small-order keys give forgeries for free, and
 *    those the table refuses. The broker's full check keeps the rest out
 *    of certificates in the first place.
 *
 * Both take the 32 raw bytes of RFC 8032 (little-endian y, sign of x in
 * the top bit), keep no state and are thread-safe. Public keys are public:
 * neither runs in constant time.
 */
#ifndef MP_EDPOINT_H
#define MP_EDPOINT_H

#include <stdint.h>
#include "mp_status.h"

#define MP_EDPOINT_LEN 32

/* Full check (see above). MP_OK for a point of order L; MP_ERR_KEY for
 * anything else; MP_ERR_ARG for enc == NULL; MP_ERR_NOMEM or
 * MP_ERR_CRYPTO when OpenSSL's BIGNUM arithmetic fails (then nothing is
 * known about the key: do not accept it). */
mp_status mp_edpoint_check(const uint8_t enc[MP_EDPOINT_LEN]);

/* Cheap check (see above). MP_OK, MP_ERR_KEY, MP_ERR_ARG for NULL. */
mp_status mp_edpoint_check_fast(const uint8_t enc[MP_EDPOINT_LEN]);

#endif
