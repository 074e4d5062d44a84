/*
 * mp_payword.h - PayWord (Rivest and Shamir 1996).
 *
 *  - The broker certifies a user: cert = {broker, user, user key, expiry,
 *    credit limit, serial}, signed by the broker (Ed25519, or RSA-2048+
 *    accepted for verification).
 *  - The user commits to a hash chain per vendor: commitment = {vendor,
 *    cert, w0, date, expiry, unit value, chain length n}, signed by the
 *    user key named in the cert. w_{i-1} = SHA-256(w_i), w_n random.
 *  - Paying k units reveals w_i: payment = {commitment id, i, k, w_i}; it
 *    covers words i-k+1 .. i. The first payment to a vendor may carry the
 *    whole commitment.
 *  - The vendor keeps (last index l, w_l) per commitment and checks a new
 *    word with i-l hashes.
 *  - Redemption: {commitment, l, w_l}, which the broker checks with the
 *    same signatures and l hashes from w_l to w0.
 *
 * Signatures are over the object's own encoding up to (not including) its
 * signature field; the encoding starts with version and type bytes, which
 * separates the domains of certificate and commitment signatures.
 * The commitment id is SHA-256 of the whole commitment record.
 *
 * Structs are plain data (no pointers) so they can be copied and stored;
 * decoders fill enc/enc_len with the signed bytes.
 */
#ifndef MP_PAYWORD_H
#define MP_PAYWORD_H

#include <stddef.h>
#include <stdint.h>
#include "mp_status.h"
#include "mp_amount.h"
#include "mp_crypto.h"
#include "mp_limits.h"

#define MP_PW_CERT_MAX   1400   /* encoded certificate, RSA-4096 keys included */
#define MP_PW_COMMIT_MAX 3000   /* encoded commitment, certificate included */

typedef struct {
    char      broker[MP_NAME_MAX + 1];
    char      user[MP_NAME_MAX + 1];
    mp_pubkey user_key;
    uint64_t  expiry;              /* Unix seconds; valid while now < expiry */
    mp_amount credit_limit;
    uint64_t  serial;
    uint16_t  sig_len;
    uint8_t   sig[MP_SIG_MAX];
    /* the signed prefix of the encoding, set by sign and decode */
    uint16_t  signed_len;
    uint16_t  enc_len;             /* whole encoding */
    uint8_t   enc[MP_PW_CERT_MAX];
} mp_pw_cert;

/* Fills sig and enc from the other fields. */
mp_status mp_pw_cert_sign(mp_pw_cert *c, const mp_signer *broker_key);
mp_status mp_pw_cert_decode(const uint8_t *in, size_t len, mp_pw_cert *out);
/* Copies the encoding set by sign or decode. */
mp_status mp_pw_cert_encode(const mp_pw_cert *c, uint8_t *buf, size_t cap, size_t *len);

/* The brokers a vendor trusts: name and public key, up to 8. */
#define MP_PW_TRUST_MAX 8
typedef struct {
    size_t n;
    struct { char name[MP_NAME_MAX + 1]; mp_pubkey key; } b[MP_PW_TRUST_MAX];
} mp_pw_trust;

/* Checks the cert: its broker is in trust by name (MP_ERR_UNTRUSTED), the
 * signature verifies under that broker's key (MP_ERR_FORGED), the user key
 * is usable (MP_ERR_KEY) and now < expiry (MP_ERR_EXPIRED). */
mp_status mp_pw_cert_verify(const mp_pw_cert *c, const mp_pw_trust *trust, uint64_t now);

typedef struct {
    char      vendor[MP_NAME_MAX + 1];
    mp_pw_cert cert;
    uint8_t   w0[MP_HASH_LEN];
    uint64_t  date;                /* when made; Unix seconds */
    uint64_t  expiry;              /* words accepted while now < expiry */
    mp_amount unit;                /* value of one word, > 0 */
    uint32_t  n;                   /* chain length, 1..MP_CHAIN_MAX */
    uint16_t  sig_len;
    uint8_t   sig[MP_SIG_MAX];
    uint8_t   id[MP_HASH_LEN];     /* SHA-256 of the whole encoding */
    uint16_t  signed_len;
    uint16_t  enc_len;
    uint8_t   enc[MP_PW_COMMIT_MAX];
} mp_pw_commit;

mp_status mp_pw_commit_sign(mp_pw_commit *c, const mp_signer *user_key);
mp_status mp_pw_commit_decode(const uint8_t *in, size_t len, mp_pw_commit *out);
mp_status mp_pw_commit_encode(const mp_pw_commit *c, uint8_t *buf, size_t cap, size_t *len);

/*
 * Vendor's first-contact check, in this order: what the record alone
 * decides, which decode checked already (expiry not after the cert's and
 * date < expiry: MP_ERR_MALFORMED; unit currency equal to the credit
 * limit's: MP_ERR_CURRENCY; n * unit <= credit limit: MP_ERR_CREDIT; all
 * "malformed"), again for structs made by mp_pw_commit_sign; vendor name
 * (MP_ERR_WRONG_VENDOR); the cert (mp_pw_cert_verify at now); date <= now
 * + MP_PW_SKEW and now < expiry (MP_ERR_EXPIRED); the user's signature
 * (MP_ERR_FORGED).
 */
#define MP_PW_SKEW 300
mp_status mp_pw_commit_verify(const mp_pw_commit *c, const mp_pw_trust *trust,
                              const char *vendor, uint64_t now);

typedef struct {
    uint8_t  commit_id[MP_HASH_LEN];
    uint32_t i;                    /* index of the revealed word, 1..n */
    uint32_t k;                    /* units paid, 1..i */
    uint8_t  w[MP_HASH_LEN];       /* w_i */
    uint8_t  has_commit;           /* first contact: commitment included */
    mp_pw_commit commit;           /* meaningful only when has_commit; the
                                      decoder leaves it untouched otherwise */
} mp_pw_payment;

mp_status mp_pw_payment_encode(const mp_pw_payment *p, uint8_t *buf, size_t cap, size_t *len);
/* Also checks that an included commitment's id equals commit_id
 * (MP_ERR_MALFORMED). */
mp_status mp_pw_payment_decode(const uint8_t *in, size_t len, mp_pw_payment *out);

/* Vendor state per commitment. */
typedef struct {
    uint32_t n;
    uint32_t last;                 /* l: highest index accepted, 0 at start */
    uint8_t  w_last[MP_HASH_LEN];  /* w_l (w0 at start) */
} mp_pw_state;

mp_status mp_pw_state_init(const mp_pw_commit *c, mp_pw_state *out);

/*
 * Checks payment p against state st: i <= n (else MP_ERR_EXHAUSTED), 1 <=
 * k <= i, i - k >= l (else MP_ERR_SPENT: it reuses words already paid),
 * and SHA-256^(i-l)(w_i) == w_l (else MP_ERR_FORGED). On success *next is
 * (i, w_i). Words between l and i-k are revealed but not used by this
 * payment; redemption pays the vendor l * unit, so they are not lost to
 * it. This check alone is strictly sequential: payments that arrive out
 * of order need the interval bookkeeping of docs/PROTOCOL.md (7.5), which
 * the vendor keeps on top of it.
 * Does not check the commitment id or expiry: the caller found st by id.
 */
mp_status mp_pw_accept(mp_sha *h, const mp_pw_state *st, const mp_pw_payment *p,
                       mp_pw_state *next);

/* Redemption record: the vendor's claim against the broker. */
typedef struct {
    mp_pw_commit commit;
    uint32_t last;
    uint8_t  w_last[MP_HASH_LEN];
} mp_pw_redeem;

mp_status mp_pw_redeem_encode(const mp_pw_redeem *r, uint8_t *buf, size_t cap, size_t *len);
mp_status mp_pw_redeem_decode(const uint8_t *in, size_t len, mp_pw_redeem *out);

/* Broker's check: the commitment as mp_pw_commit_verify does, with time
 * taken as the commitment's date (vendors redeem after expiry; the broker
 * applies its own deadline), 1 <= last <= n (MP_ERR_MALFORMED), and
 * SHA-256^last(w_last) == w0 (MP_ERR_FORGED). *value gets last * unit. */
mp_status mp_pw_redeem_verify(mp_sha *h, const mp_pw_redeem *r,
                              const mp_pw_trust *trust, mp_amount *value);

/* As mp_pw_redeem_verify, but the chain is proven from a word the caller
 * proved before instead of from w0: SHA-256^(last - prev)(w_last) ==
 * w_prev (MP_ERR_FORGED), so the hashing costs only the new words.
 * prev = 0 means from w0 (w_prev ignored, may be NULL). MP_ERR_ARG when
 * last <= prev: such an item adds nothing and needs no hashing. */
mp_status mp_pw_redeem_verify_from(mp_sha *h, const mp_pw_redeem *r, const mp_pw_trust *trust,
                                   uint32_t prev, const uint8_t *w_prev, mp_amount *value);

#endif
