/*
 * mp_edpoint.c - Ed25519 public key checks (see mp_edpoint.h for what and
 * why).
 *
 * OpenSSL offers no public edwards25519 point arithmetic, so the full check
 * does RFC 8032's decoding (5.1.3) and point formulas (5.1.4, extended
 * coordinates X:Y:Z:T with x = X/Z, y = Y/Z, xy = T/Z) in BIGNUM modular
 * arithmetic. It runs only at certification: the code follows the RFC line
 * by line rather than being fast; no inversion is needed anywhere, and the
 * unified addition formula is complete on this curve (d is not a square),
 * so there are no special cases to get wrong. Every value is kept reduced
 * mod p, which lets sums and differences use BN_mod_{add,sub}_quick: the
 * plain forms divide, and halved the check's time.
 */
#include <string.h>
#include <openssl/bn.h>
#include "mp_edpoint.h"

/* L, the prime order of the base point, big-endian hex. */
static const char order_hex[] =
    "1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed";

/*
 * The y coordinates (little-endian, sign bit cleared) of the 8 points of
 * order 1, 2, 4 and 8, as libsodium lists them: with the sign bit masked
 * each entry covers both signs of x, and p, p + 1 are the non-canonical
 * forms of 0 and 1 (the y >= p rule refuses those too; kept so the table
 * reads the same as libsodium's). No other small-order y has a second
 * form: y + p no longer fits in 255 bits.
 */
static const uint8_t small_order_y[7][MP_EDPOINT_LEN] = {
    /* 0: (+-sqrt(-1), 0), order 4 */
    { 0 },
    /* 1: the identity, order 1 */
    { 0x01 },
    /* order 8 */
    { 0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
      0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05 },
    /* order 8 */
    { 0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
      0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a },
    /* p - 1: (0, -1), order 2 */
    { 0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f },
    /* p: 0 again */
    { 0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f },
    /* p + 1: 1 again */
    { 0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f },
};

/* y >= p = 2^255 - 19, on the bytes so that the fast check needs no
 * BIGNUM: y >= p exactly when bits 8..254 are all ones and the low byte is
 * at least 0xed. */
static int y_noncanonical(const uint8_t enc[MP_EDPOINT_LEN])
{
    size_t i;

    if ((enc[31] & 0x7f) != 0x7f || enc[0] < 0xed)
        return 0;
    for (i = 1; i < 31; i++)
        if (enc[i] != 0xff)
            return 0;
    return 1;
}

mp_status mp_edpoint_check_fast(const uint8_t enc[MP_EDPOINT_LEN])
{
    size_t i;

    if (enc == NULL)
        return MP_ERR_ARG;
    if (y_noncanonical(enc))
        return MP_ERR_KEY;
    for (i = 0; i < sizeof small_order_y / sizeof small_order_y[0]; i++)
        if (memcmp(enc, small_order_y[i], 31) == 0 && (enc[31] & 0x7f) == small_order_y[i][31])
            return MP_ERR_KEY;
    return MP_OK;
}

/* ---- full check: field and curve arithmetic in BIGNUM ----------------- */

/* The curve's constants, computed once per check: a few microseconds
 * against the scalar multiplication's milliseconds, and no static state
 * to initialise under threads. */
typedef struct {
    BN_CTX *bn;
    BIGNUM *p;        /* 2^255 - 19 */
    BIGNUM *d;        /* -121665 / 121666 */
    BIGNUM *d2;       /* 2d, of the addition formula */
    BIGNUM *sqrtm1;   /* 2^((p - 1) / 4), a square root of -1 */
    BIGNUM *L;
} ed_curve;

typedef struct { BIGNUM *X, *Y, *Z, *T; } ed_point;

/* Allocates from the curve's BN_CTX frame: the caller has called
 * BN_CTX_start and ends the frame. */
static int point_get(ed_curve *c, ed_point *P)
{
    P->X = BN_CTX_get(c->bn);
    P->Y = BN_CTX_get(c->bn);
    P->Z = BN_CTX_get(c->bn);
    P->T = BN_CTX_get(c->bn);
    return P->T != NULL;   /* BN_CTX_get fails for good once it fails */
}

/* R = P + Q (RFC 8032 5.1.4). R may be P or Q: the inputs are read
 * into temporaries before R is written. */
static int point_add(ed_curve *c, ed_point *R, const ed_point *P, const ed_point *Q)
{
    BIGNUM *A, *B, *C, *D, *E, *F, *G, *H, *t;
    const BIGNUM *p = c->p;
    BN_CTX *bn = c->bn;
    int ok = 0;

    BN_CTX_start(bn);
    A = BN_CTX_get(bn); B = BN_CTX_get(bn); C = BN_CTX_get(bn);
    D = BN_CTX_get(bn); E = BN_CTX_get(bn); F = BN_CTX_get(bn);
    G = BN_CTX_get(bn); H = BN_CTX_get(bn); t = BN_CTX_get(bn);
    if (t == NULL)
        goto done;
    ok = /* A = (Y1-X1)*(Y2-X2), B = (Y1+X1)*(Y2+X2) */
        BN_mod_sub_quick(A, P->Y, P->X, p) && BN_mod_sub_quick(t, Q->Y, Q->X, p)
        && BN_mod_mul(A, A, t, p, bn)
        && BN_mod_add_quick(B, P->Y, P->X, p) && BN_mod_add_quick(t, Q->Y, Q->X, p)
        && BN_mod_mul(B, B, t, p, bn)
        /* C = T1*2*d*T2, D = Z1*2*Z2 */
        && BN_mod_mul(C, P->T, c->d2, p, bn) && BN_mod_mul(C, C, Q->T, p, bn)
        && BN_mod_mul(D, P->Z, Q->Z, p, bn) && BN_mod_add_quick(D, D, D, p)
        /* E = B-A, F = D-C, G = D+C, H = B+A */
        && BN_mod_sub_quick(E, B, A, p) && BN_mod_sub_quick(F, D, C, p)
        && BN_mod_add_quick(G, D, C, p) && BN_mod_add_quick(H, B, A, p)
        /* X3 = E*F, Y3 = G*H, T3 = E*H, Z3 = F*G */
        && BN_mod_mul(R->X, E, F, p, bn) && BN_mod_mul(R->Y, G, H, p, bn)
        && BN_mod_mul(R->T, E, H, p, bn) && BN_mod_mul(R->Z, F, G, p, bn);
done:
    BN_CTX_end(bn);
    return ok;
}

/* R = 2P (RFC 8032 5.1.4, the doubling formula; R may be P). */
static int point_double(ed_curve *c, ed_point *R, const ed_point *P)
{
    BIGNUM *A, *B, *C, *E, *F, *G, *H;
    const BIGNUM *p = c->p;
    BN_CTX *bn = c->bn;
    int ok = 0;

    BN_CTX_start(bn);
    A = BN_CTX_get(bn); B = BN_CTX_get(bn); C = BN_CTX_get(bn);
    E = BN_CTX_get(bn); F = BN_CTX_get(bn); G = BN_CTX_get(bn);
    H = BN_CTX_get(bn);
    if (H == NULL)
        goto done;
    ok = /* A = X1^2, B = Y1^2, C = 2*Z1^2, H = A+B */
        BN_mod_sqr(A, P->X, p, bn) && BN_mod_sqr(B, P->Y, p, bn)
        && BN_mod_sqr(C, P->Z, p, bn) && BN_mod_add_quick(C, C, C, p)
        && BN_mod_add_quick(H, A, B, p)
        /* E = H-(X1+Y1)^2, G = A-B, F = C+G */
        && BN_mod_add_quick(E, P->X, P->Y, p) && BN_mod_sqr(E, E, p, bn)
        && BN_mod_sub_quick(E, H, E, p)
        && BN_mod_sub_quick(G, A, B, p) && BN_mod_add_quick(F, C, G, p)
        /* X3 = E*F, Y3 = G*H, T3 = E*H, Z3 = F*G */
        && BN_mod_mul(R->X, E, F, p, bn) && BN_mod_mul(R->Y, G, H, p, bn)
        && BN_mod_mul(R->T, E, H, p, bn) && BN_mod_mul(R->Z, F, G, p, bn);
done:
    BN_CTX_end(bn);
    return ok;
}

/* The identity is (0, 1): X = 0 and Y = Z in projective form. */
static int point_is_identity(ed_curve *c, const ed_point *P, int *yes)
{
    BIGNUM *t;
    int ok = 0;

    BN_CTX_start(c->bn);
    if ((t = BN_CTX_get(c->bn)) != NULL && BN_mod_sub(t, P->Y, P->Z, c->p, c->bn)) {
        *yes = BN_is_zero(P->X) && BN_is_zero(t);
        ok = 1;
    }
    BN_CTX_end(c->bn);
    return ok;
}

/* R = [k]P, most significant bit first. Variable time: P is public. */
static int point_mul(ed_curve *c, ed_point *R, const BIGNUM *k, const ed_point *P)
{
    int i;

    if (!BN_set_word(R->X, 0) || !BN_one(R->Y) || !BN_one(R->Z) || !BN_set_word(R->T, 0))
        return 0;
    for (i = BN_num_bits(k) - 1; i >= 0; i--) {
        if (!point_double(c, R, R))
            return 0;
        if (BN_is_bit_set(k, i) && !point_add(c, R, R, P))
            return 0;
    }
    return 1;
}

/*
 * RFC 8032 5.1.3. *valid = 1 and P set (Z = 1) when enc is the canonical
 * encoding of a curve point, else *valid = 0. Returns 0 only when BIGNUM
 * failed.
 */
static int point_decode(ed_curve *c, const uint8_t enc[MP_EDPOINT_LEN], ed_point *P, int *valid)
{
    uint8_t le[MP_EDPOINT_LEN];
    BIGNUM *y, *u, *v, *x, *t, *e;
    BN_CTX *bn = c->bn;
    const BIGNUM *p = c->p;
    int sign = enc[31] >> 7, ok = 0;

    *valid = 0;
    memcpy(le, enc, sizeof le);
    le[31] &= 0x7f;
    BN_CTX_start(bn);
    y = BN_CTX_get(bn); u = BN_CTX_get(bn); v = BN_CTX_get(bn);
    x = BN_CTX_get(bn); t = BN_CTX_get(bn); e = BN_CTX_get(bn);
    if (e == NULL || BN_lebin2bn(le, sizeof le, y) == NULL)
        goto done;
    /* 1. y < p, or the encoding is not the point's only one. */
    if (BN_cmp(y, p) >= 0) {
        ok = 1;
        goto done;
    }
    /* 2. x^2 = u / v with u = y^2 - 1, v = d y^2 + 1 (never 0: d is not a
     * square). The candidate root x = u v^3 (u v^7)^((p-5)/8) avoids an
     * inversion. */
    if (!BN_mod_sqr(t, y, p, bn) || !BN_mod_sub(u, t, BN_value_one(), p, bn)
        || !BN_mod_mul(v, c->d, t, p, bn) || !BN_mod_add(v, v, BN_value_one(), p, bn))
        goto done;
    if (!BN_copy(e, p) || !BN_sub_word(e, 5) || !BN_rshift(e, e, 3)          /* (p-5)/8 */
        || !BN_mod_sqr(t, v, p, bn) || !BN_mod_mul(t, t, v, p, bn)            /* v^3 */
        || !BN_mod_mul(x, u, t, p, bn)                                        /* u v^3 */
        || !BN_mod_sqr(t, t, p, bn) || !BN_mod_mul(t, t, v, p, bn)            /* v^7 */
        || !BN_mod_mul(t, t, u, p, bn)                                        /* u v^7 */
        || !BN_mod_exp(t, t, e, p, bn) || !BN_mod_mul(x, x, t, p, bn))
        goto done;
    /* 3. v x^2 = u: x is a root; v x^2 = -u: x sqrt(-1) is; else there is
     * no point with this y. */
    if (!BN_mod_sqr(t, x, p, bn) || !BN_mod_mul(t, t, v, p, bn))
        goto done;
    if (BN_cmp(t, u) != 0) {
        if (!BN_mod_add(t, t, u, p, bn))
            goto done;
        if (!BN_is_zero(t)) {
            ok = 1;
            goto done;
        }
        if (!BN_mod_mul(x, x, c->sqrtm1, p, bn))
            goto done;
    }
    /* 4. x = 0 has no negative: the sign bit set on it is a second
     * encoding of (0, y). Otherwise pick the root whose parity is the
     * sign bit. */
    if (BN_is_zero(x) && sign) {
        ok = 1;
        goto done;
    }
    if (BN_is_odd(x) != sign && !BN_sub(x, p, x))
        goto done;
    if (!BN_copy(P->X, x) || !BN_copy(P->Y, y) || !BN_one(P->Z)
        || !BN_mod_mul(P->T, x, y, p, bn))
        goto done;
    *valid = 1;
    ok = 1;
done:
    BN_CTX_end(bn);
    return ok;
}

/* Fills c's constants from bn's current frame (the caller's). Returns 0
 * when BIGNUM failed. */
static int curve_init(ed_curve *c, BN_CTX *bn)
{
    BIGNUM *t;

    c->bn = bn;
    c->p = BN_CTX_get(bn); c->d = BN_CTX_get(bn); c->d2 = BN_CTX_get(bn);
    c->sqrtm1 = BN_CTX_get(bn); c->L = BN_CTX_get(bn); t = BN_CTX_get(bn);
    return t != NULL
        && BN_set_word(c->p, 0) && BN_set_bit(c->p, 255) && BN_sub_word(c->p, 19)
        /* d = -121665 * 121666^-1 mod p */
        && BN_set_word(t, 121666) && BN_mod_inverse(c->d, t, c->p, bn) != NULL
        && BN_mul_word(c->d, 121665) && BN_nnmod(c->d, c->d, c->p, bn)
        && BN_sub(c->d, c->p, c->d)
        && BN_mod_add(c->d2, c->d, c->d, c->p, bn)
        /* sqrt(-1) = 2^((p-1)/4) */
        && BN_copy(t, c->p) != NULL && BN_sub_word(t, 1) && BN_rshift(t, t, 2)
        && BN_set_word(c->sqrtm1, 2) && BN_mod_exp(c->sqrtm1, c->sqrtm1, t, c->p, bn)
        && BN_hex2bn(&c->L, order_hex) == (int)sizeof order_hex - 1;
}

mp_status mp_edpoint_check(const uint8_t enc[MP_EDPOINT_LEN])
{
    BN_CTX *bn = NULL;
    ed_curve c;
    ed_point P, Q;
    int valid = 0, identity = 0;
    mp_status st = MP_ERR_ARG;

    if (enc == NULL)
        goto done;
    st = MP_ERR_NOMEM;
    if ((bn = BN_CTX_new()) == NULL)
        goto done;
    BN_CTX_start(bn);
    st = MP_ERR_CRYPTO;
    if (!curve_init(&c, bn) || !point_get(&c, &P) || !point_get(&c, &Q)
        || !point_decode(&c, enc, &P, &valid))
        goto done;
    st = MP_ERR_KEY;
    if (!valid)
        goto done;
    /* Order 1 (the identity) divides L too: refuse it by name. */
    st = MP_ERR_CRYPTO;
    if (!point_is_identity(&c, &P, &identity))
        goto done;
    st = MP_ERR_KEY;
    if (identity)
        goto done;
    /* The group has order 8L with L prime: [L]P = identity exactly when
     * P's order divides L, i.e. is L. Small-order and mixed-order points
     * keep a nonzero torsion part T, and [L]T != identity since L is odd. */
    st = MP_ERR_CRYPTO;
    if (!point_mul(&c, &Q, c.L, &P) || !point_is_identity(&c, &Q, &identity))
        goto done;
    st = identity ? MP_OK : MP_ERR_KEY;
done:
    if (bn != NULL)
        BN_CTX_end(bn);
    BN_CTX_free(bn);
    return st;
}
