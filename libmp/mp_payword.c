/*
 * mp_payword.c - PayWord certificates, commitments, payments and
 * redemptions (see mp_payword.h for the protocol and the encodings'
 * field order).
 *
 * Decoders keep the exact bytes they were given (enc, signed_len) so that
 * verification checks signatures over what was actually signed instead of
 * over a re-encoding that could differ from it.
 */
#include <stdlib.h>
#include <string.h>
#include "mp_payword.h"
#include "mp_wire.h"

#define PW_ALG_ED25519 1
#define PW_ALG_RSA     2

/* Upper bounds of the records built from fields; both fit MP_WIRE_MAX. */
#define PW_PAYMENT_MAX (2 + MP_HASH_LEN + 4 + 4 + MP_HASH_LEN + 1 + 2 + MP_PW_COMMIT_MAX)
#define PW_REDEEM_MAX  (2 + 2 + MP_PW_COMMIT_MAX + 4 + MP_HASH_LEN)

/* ---- field checks shared by encoders and decoders ------------------------ */

/* 1..MP_NAME_MAX visible ASCII followed by a NUL within the array. */
static int name_valid(const char *s)
{
    size_t i;

    for (i = 0; i <= MP_NAME_MAX && s[i] != '\0'; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return i >= 1 && i <= MP_NAME_MAX;
}

static int amount_valid(const mp_amount *a)
{
    return mp_currency_valid(a->cur) && a->units <= MP_AMOUNT_MAX;
}

/* The wire shape of a key; whether it is a usable key is
 * mp_pubkey_check_fast's business, at verification time. */
static int pubkey_shape_valid(uint8_t alg, size_t len)
{
    if (alg == PW_ALG_ED25519)
        return len == MP_ED25519_PUB_LEN;
    if (alg == PW_ALG_RSA)
        return len <= MP_PUBKEY_MAX;
    return 0;
}

static int hash_equal(const uint8_t a[MP_HASH_LEN], const uint8_t b[MP_HASH_LEN])
{
    return mp_ct_equal(a, MP_HASH_LEN, b, MP_HASH_LEN);
}

/* Reads a blob16 signature of 1..MP_SIG_MAX bytes into sig. */
static void r_sig(mp_rbuf *r, uint8_t sig[MP_SIG_MAX], uint16_t *sig_len)
{
    const uint8_t *p;
    size_t n = 0;

    p = mp_r_blob16(r, MP_SIG_MAX, &n);
    if (p == NULL)
        return;
    if (n == 0) {
        mp_r_fail(r, MP_ERR_MALFORMED);
        return;
    }
    memcpy(sig, p, n);
    *sig_len = (uint16_t)n;
}

/* Signs the first w->len bytes of w and appends the blob16 signature. */
static mp_status sign_and_append(mp_wbuf *w, const mp_signer *key,
                                 uint8_t sig[MP_SIG_MAX], size_t *sig_len)
{
    mp_status st;
    size_t n = 0;

    st = mp_sign(key, w->buf, w->len, sig, &n);
    if (st != MP_OK)
        goto out;
    if (n == 0 || n > MP_SIG_MAX) {
        st = MP_ERR_CRYPTO;
        goto out;
    }
    mp_w_blob16(w, sig, n);
    st = w->err == MP_ERR_BUFFER ? MP_ERR_ARG : w->err;
    if (st == MP_OK)
        *sig_len = n;
out:
    return st;
}

/* Copies a stored encoding out: shared by the three encode functions of
 * signed objects. */
static mp_status copy_enc(const uint8_t *enc, size_t enc_len, uint8_t *buf,
                          size_t cap, size_t *len)
{
    if (enc_len == 0 || buf == NULL || len == NULL)
        return MP_ERR_ARG;
    if (cap < enc_len)
        return MP_ERR_BUFFER;
    memcpy(buf, enc, enc_len);
    *len = enc_len;
    return MP_OK;
}

/* ---- certificate ----------------------------------------------------------- */

mp_status mp_pw_cert_sign(mp_pw_cert *c, const mp_signer *broker_key)
{
    uint8_t buf[MP_PW_CERT_MAX];
    uint8_t sig[MP_SIG_MAX];
    size_t sig_len = 0, signed_len;
    mp_wbuf w;
    mp_status st = MP_ERR_ARG;

    if (c == NULL || broker_key == NULL)
        goto out;
    if (!name_valid(c->broker) || !name_valid(c->user)
        || !pubkey_shape_valid(c->user_key.alg, c->user_key.len)
        || !amount_valid(&c->credit_limit))
        goto out;

    mp_w_init(&w, buf, sizeof buf);
    mp_w_header(&w, MP_T_PW_CERT);
    mp_w_str8(&w, c->broker);
    mp_w_str8(&w, c->user);
    mp_w_u8(&w, c->user_key.alg);
    mp_w_blob16(&w, c->user_key.key, c->user_key.len);
    mp_w_u64(&w, c->expiry);
    mp_w_amount(&w, &c->credit_limit);
    mp_w_u64(&w, c->serial);
    if ((st = w.err) != MP_OK) {
        st = MP_ERR_ARG;
        goto out;
    }
    signed_len = w.len;
    if ((st = sign_and_append(&w, broker_key, sig, &sig_len)) != MP_OK)
        goto out;

    memcpy(c->sig, sig, sig_len);
    c->sig_len = (uint16_t)sig_len;
    memcpy(c->enc, buf, w.len);
    c->signed_len = (uint16_t)signed_len;
    c->enc_len = (uint16_t)w.len;
out:
    return st;
}

mp_status mp_pw_cert_decode(const uint8_t *in, size_t len, mp_pw_cert *out)
{
    mp_pw_cert c;
    mp_rbuf r;
    const uint8_t *key;
    size_t key_len = 0;
    mp_status st;

    if (in == NULL || out == NULL) {
        st = MP_ERR_ARG;
        goto out;
    }
    if (len > MP_PW_CERT_MAX) {
        st = MP_ERR_TOO_LARGE;
        goto out;
    }
    memset(&c, 0, sizeof c);
    mp_r_init(&r, in, len);
    mp_r_header(&r, MP_T_PW_CERT);
    mp_r_str8(&r, c.broker, MP_NAME_MAX, 0);
    mp_r_str8(&r, c.user, MP_NAME_MAX, 0);
    c.user_key.alg = mp_r_u8(&r);
    if (c.user_key.alg != PW_ALG_ED25519 && c.user_key.alg != PW_ALG_RSA)
        mp_r_fail(&r, MP_ERR_MALFORMED);
    key = mp_r_blob16(&r, MP_PUBKEY_MAX, &key_len);
    if (key != NULL) {
        if (!pubkey_shape_valid(c.user_key.alg, key_len))
            mp_r_fail(&r, MP_ERR_MALFORMED);
        else {
            memcpy(c.user_key.key, key, key_len);
            c.user_key.len = (uint16_t)key_len;
        }
    }
    c.expiry = mp_r_u64(&r);
    mp_r_amount(&r, &c.credit_limit);
    /* Decode checks are what the record alone shows (PROTOCOL 3.2): a
     * zero expiry or credit limit is malformed, not a 402 of verification. */
    if (r.err == MP_OK && (c.expiry == 0 || c.credit_limit.units == 0))
        mp_r_fail(&r, MP_ERR_MALFORMED);
    c.serial = mp_r_u64(&r);
    c.signed_len = (uint16_t)r.off;
    r_sig(&r, c.sig, &c.sig_len);
    if ((st = mp_r_end(&r)) != MP_OK)
        goto out;

    memcpy(c.enc, in, len);
    c.enc_len = (uint16_t)len;
    memcpy(out, &c, sizeof c);
out:
    return st;
}

mp_status mp_pw_cert_encode(const mp_pw_cert *c, uint8_t *buf, size_t cap, size_t *len)
{
    if (c == NULL)
        return MP_ERR_ARG;
    return copy_enc(c->enc, c->enc_len, buf, cap, len);
}

/* A stored encoding that sign or decode could have produced: guards verify
 * against structs assembled by hand. */
static int signed_shape_valid(uint16_t sig_len, uint16_t signed_len,
                              uint16_t enc_len, size_t enc_max)
{
    return enc_len > 0 && enc_len <= enc_max && signed_len < enc_len
        && sig_len >= 1 && sig_len <= MP_SIG_MAX;
}

mp_status mp_pw_cert_verify(const mp_pw_cert *c, const mp_pw_trust *trust, uint64_t now)
{
    mp_status st = MP_ERR_ARG, v;
    size_t j;

    if (c == NULL || trust == NULL || trust->n > MP_PW_TRUST_MAX
        || !signed_shape_valid(c->sig_len, c->signed_len, c->enc_len, MP_PW_CERT_MAX))
        goto out;

    /* Several entries may share a name while a broker rotates its key; any
     * one of them verifying is enough. A signature failure outranks an
     * unusable trusted key in the result. */
    st = MP_ERR_UNTRUSTED;
    for (j = 0; j < trust->n; j++) {
        if (strncmp(trust->b[j].name, c->broker, sizeof c->broker) != 0)
            continue;
        v = mp_verify(&trust->b[j].key, c->enc, c->signed_len, c->sig, c->sig_len);
        if (v == MP_OK) {
            st = MP_OK;
            break;
        }
        if (st == MP_ERR_UNTRUSTED || v == MP_ERR_FORGED)
            st = v;
    }
    if (st != MP_OK)
        goto out;
    /* The cheap check: the broker ran the full one at /certify, and this
     * runs at every first contact (mp_pubkey_check_fast in mp_crypto.h). */
    if (mp_pubkey_check_fast(&c->user_key) != MP_OK) {
        st = MP_ERR_KEY;
        goto out;
    }
    if (now >= c->expiry)
        st = MP_ERR_EXPIRED;
out:
    return st;
}

/* ---- commitment ------------------------------------------------------------ */

mp_status mp_pw_commit_sign(mp_pw_commit *c, const mp_signer *user_key)
{
    uint8_t buf[MP_PW_COMMIT_MAX];
    uint8_t sig[MP_SIG_MAX];
    uint8_t id[MP_HASH_LEN];
    size_t sig_len = 0, signed_len;
    mp_wbuf w;
    mp_pw_cert check;
    mp_status st = MP_ERR_ARG;

    if (c == NULL || user_key == NULL)
        goto out;
    if (!name_valid(c->vendor) || !amount_valid(&c->unit) || c->unit.units == 0
        || c->n < 1 || c->n > MP_CHAIN_MAX
        || c->cert.enc_len == 0 || c->cert.enc_len > MP_PW_CERT_MAX)
        goto out;
    /* The certificate travels as its stored bytes; refuse bytes that the
     * receiving decoder would reject. */
    if (mp_pw_cert_decode(c->cert.enc, c->cert.enc_len, &check) != MP_OK)
        goto out;

    mp_w_init(&w, buf, sizeof buf);
    mp_w_header(&w, MP_T_PW_COMMIT);
    mp_w_str8(&w, c->vendor);
    mp_w_blob16(&w, c->cert.enc, c->cert.enc_len);
    mp_w_bytes(&w, c->w0, MP_HASH_LEN);
    mp_w_u64(&w, c->date);
    mp_w_u64(&w, c->expiry);
    mp_w_amount(&w, &c->unit);
    mp_w_u32(&w, c->n);
    if (w.err != MP_OK)
        goto out;
    signed_len = w.len;
    if ((st = sign_and_append(&w, user_key, sig, &sig_len)) != MP_OK)
        goto out;
    if ((st = mp_sha256(buf, w.len, id)) != MP_OK)
        goto out;

    memcpy(c->sig, sig, sig_len);
    c->sig_len = (uint16_t)sig_len;
    memcpy(c->id, id, MP_HASH_LEN);
    memcpy(c->enc, buf, w.len);
    c->signed_len = (uint16_t)signed_len;
    c->enc_len = (uint16_t)w.len;
out:
    return st;
}

/* What the commitment record alone decides (PROTOCOL 3.2: decode checks,
 * so 400): it may not outlive the cert whose credit backs it, nor end
 * before it starts, and its words are in the credit's currency and worth
 * no more than the credit. Shared by decode and verify, which also sees
 * structs made by mp_pw_commit_sign. MP_ERR_MALFORMED, MP_ERR_CURRENCY,
 * MP_ERR_CREDIT (all "malformed"). */
static mp_status commit_fields_check(const mp_pw_commit *c)
{
    mp_amount total;
    int cmp = 0;

    if (c->expiry > c->cert.expiry || c->date >= c->expiry)
        return MP_ERR_MALFORMED;
    if (strcmp(c->unit.cur, c->cert.credit_limit.cur) != 0)
        return MP_ERR_CURRENCY;
    if (mp_amount_mul(&c->unit, c->n, &total) != MP_OK
        || mp_amount_cmp(&total, &c->cert.credit_limit, &cmp) != MP_OK || cmp > 0)
        return MP_ERR_CREDIT;
    return MP_OK;
}

mp_status mp_pw_commit_decode(const uint8_t *in, size_t len, mp_pw_commit *out)
{
    mp_pw_commit c;
    mp_rbuf r;
    const uint8_t *cert;
    size_t cert_len = 0;
    mp_status st;

    if (in == NULL || out == NULL) {
        st = MP_ERR_ARG;
        goto out;
    }
    if (len > MP_PW_COMMIT_MAX) {
        st = MP_ERR_TOO_LARGE;
        goto out;
    }
    memset(&c, 0, sizeof c);
    mp_r_init(&r, in, len);
    mp_r_header(&r, MP_T_PW_COMMIT);
    mp_r_str8(&r, c.vendor, MP_NAME_MAX, 0);
    cert = mp_r_blob16(&r, MP_PW_CERT_MAX, &cert_len);
    if (cert != NULL && (st = mp_pw_cert_decode(cert, cert_len, &c.cert)) != MP_OK)
        mp_r_fail(&r, st);
    mp_r_bytes(&r, c.w0, MP_HASH_LEN);
    c.date = mp_r_u64(&r);
    c.expiry = mp_r_u64(&r);
    mp_r_amount(&r, &c.unit);
    if (r.err == MP_OK && c.unit.units == 0)
        mp_r_fail(&r, MP_ERR_MALFORMED);
    c.n = mp_r_u32(&r);
    if (r.err == MP_OK && (c.n < 1 || c.n > MP_CHAIN_MAX))
        mp_r_fail(&r, MP_ERR_MALFORMED);
    c.signed_len = (uint16_t)r.off;
    r_sig(&r, c.sig, &c.sig_len);
    /* The cert names the user key's algorithm, so the record alone shows a
     * signature of the wrong size for it (PROTOCOL 3.4): malformed. */
    if (r.err == MP_OK && c.cert.user_key.alg == PW_ALG_ED25519
        && c.sig_len != MP_ED25519_SIG_LEN)
        mp_r_fail(&r, MP_ERR_MALFORMED);
    if ((st = mp_r_end(&r)) != MP_OK || (st = commit_fields_check(&c)) != MP_OK)
        goto out;
    if ((st = mp_sha256(in, len, c.id)) != MP_OK)
        goto out;

    memcpy(c.enc, in, len);
    c.enc_len = (uint16_t)len;
    memcpy(out, &c, sizeof c);
out:
    return st;
}

mp_status mp_pw_commit_encode(const mp_pw_commit *c, uint8_t *buf, size_t cap, size_t *len)
{
    if (c == NULL)
        return MP_ERR_ARG;
    return copy_enc(c->enc, c->enc_len, buf, cap, len);
}

/*
 * mp_pw_commit_verify's checks at time now; vendor NULL skips the vendor
 * check (the broker redeeming). Everything here reads the stored fields and
 * encodings, never re-encodes.
 */
static mp_status commit_check(const mp_pw_commit *c, const mp_pw_trust *trust,
                              const char *vendor, uint64_t now)
{
    mp_status st = MP_ERR_ARG;

    if (c == NULL || trust == NULL
        || !signed_shape_valid(c->sig_len, c->signed_len, c->enc_len, MP_PW_COMMIT_MAX)
        || c->n < 1 || c->n > MP_CHAIN_MAX)
        goto out;
    if ((st = commit_fields_check(c)) != MP_OK)
        goto out;
    if (vendor != NULL && strncmp(c->vendor, vendor, sizeof c->vendor) != 0) {
        st = MP_ERR_WRONG_VENDOR;
        goto out;
    }
    if ((st = mp_pw_cert_verify(&c->cert, trust, now)) != MP_OK)
        goto out;
    /* Written as date - SKEW so that now + SKEW cannot wrap. */
    if ((c->date > MP_PW_SKEW && c->date - MP_PW_SKEW > now) || now >= c->expiry) {
        st = MP_ERR_EXPIRED;
        goto out;
    }
    st = mp_verify(&c->cert.user_key, c->enc, c->signed_len, c->sig, c->sig_len);
out:
    return st;
}

mp_status mp_pw_commit_verify(const mp_pw_commit *c, const mp_pw_trust *trust,
                              const char *vendor, uint64_t now)
{
    if (vendor == NULL)
        return MP_ERR_ARG;
    return commit_check(c, trust, vendor, now);
}

/* ---- payment --------------------------------------------------------------- */

mp_status mp_pw_payment_encode(const mp_pw_payment *p, uint8_t *buf, size_t cap, size_t *len)
{
    uint8_t tmp[PW_PAYMENT_MAX];
    mp_wbuf w;
    mp_status st = MP_ERR_ARG;

    if (p == NULL || buf == NULL || len == NULL)
        goto out;
    if (p->i < 1 || p->k < 1 || p->k > p->i || p->has_commit > 1)
        goto out;
    if (p->has_commit
        && (p->commit.enc_len == 0 || p->commit.enc_len > MP_PW_COMMIT_MAX
            || !hash_equal(p->commit.id, p->commit_id)))
        goto out;

    mp_w_init(&w, tmp, sizeof tmp);
    mp_w_header(&w, MP_T_PW_PAYMENT);
    mp_w_bytes(&w, p->commit_id, MP_HASH_LEN);
    mp_w_u32(&w, p->i);
    mp_w_u32(&w, p->k);
    mp_w_bytes(&w, p->w, MP_HASH_LEN);
    mp_w_u8(&w, p->has_commit);
    if (p->has_commit)
        mp_w_blob16(&w, p->commit.enc, p->commit.enc_len);
    if ((st = w.err) != MP_OK)
        goto out;
    if (cap < w.len) {
        st = MP_ERR_BUFFER;
        goto out;
    }
    memcpy(buf, tmp, w.len);
    *len = w.len;
out:
    return st;
}

/* The common payment (no commitment) is the per-request path: it is decoded
 * into a few locals and only those fields are copied out, because the
 * struct with its room for a commitment is ~6 KB and clearing and copying
 * it would cost more than the hash that verifies the word. */
mp_status mp_pw_payment_decode(const uint8_t *in, size_t len, mp_pw_payment *out)
{
    mp_pw_commit *commit = NULL;
    uint8_t commit_id[MP_HASH_LEN], w[MP_HASH_LEN];
    uint32_t i, k;
    uint8_t has_commit;
    mp_rbuf r;
    const uint8_t *cbytes;
    size_t commit_len = 0;
    mp_status st;

    if (in == NULL || out == NULL) {
        st = MP_ERR_ARG;
        goto out;
    }
    mp_r_init(&r, in, len);
    mp_r_header(&r, MP_T_PW_PAYMENT);
    mp_r_bytes(&r, commit_id, MP_HASH_LEN);
    i = mp_r_u32(&r);
    k = mp_r_u32(&r);
    /* i above the longest chain names a word no commitment has: refused
     * here, before any store lookup or hashing. */
    if (r.err == MP_OK && (i < 1 || i > MP_CHAIN_MAX || k < 1 || k > i))
        mp_r_fail(&r, MP_ERR_MALFORMED);
    mp_r_bytes(&r, w, MP_HASH_LEN);
    has_commit = mp_r_u8(&r);
    if (r.err == MP_OK && has_commit > 1)
        mp_r_fail(&r, MP_ERR_MALFORMED);
    if (r.err == MP_OK && has_commit) {
        if ((commit = malloc(sizeof *commit)) == NULL) {
            st = MP_ERR_NOMEM;
            goto out;
        }
        cbytes = mp_r_blob16(&r, MP_PW_COMMIT_MAX, &commit_len);
        if (cbytes != NULL && (st = mp_pw_commit_decode(cbytes, commit_len, commit)) != MP_OK)
            mp_r_fail(&r, st);
        if (r.err == MP_OK && !hash_equal(commit->id, commit_id))
            mp_r_fail(&r, MP_ERR_MALFORMED);
    }
    if ((st = mp_r_end(&r)) != MP_OK)
        goto out;
    memcpy(out->commit_id, commit_id, MP_HASH_LEN);
    out->i = i;
    out->k = k;
    memcpy(out->w, w, MP_HASH_LEN);
    out->has_commit = has_commit;
    if (has_commit)
        memcpy(&out->commit, commit, sizeof *commit);
out:
    free(commit);
    return st;
}

/* ---- vendor state ---------------------------------------------------------- */

mp_status mp_pw_state_init(const mp_pw_commit *c, mp_pw_state *out)
{
    if (c == NULL || out == NULL || c->n < 1 || c->n > MP_CHAIN_MAX)
        return MP_ERR_ARG;
    out->n = c->n;
    out->last = 0;
    memcpy(out->w_last, c->w0, MP_HASH_LEN);
    return MP_OK;
}

/* The per-request hot path: no allocation, at most i - l hashes. */
mp_status mp_pw_accept(mp_sha *h, const mp_pw_state *st, const mp_pw_payment *p,
                       mp_pw_state *next)
{
    uint8_t w[MP_HASH_LEN];
    uint8_t back[MP_HASH_LEN];
    uint32_t i;
    mp_status rc = MP_ERR_ARG;

    if (h == NULL || st == NULL || p == NULL || next == NULL || st->last > st->n)
        goto out;
    i = p->i;
    if (st->last == st->n || i > st->n) {
        rc = MP_ERR_EXHAUSTED;
        goto out;
    }
    if (p->k == 0 || p->k > i) {
        rc = MP_ERR_MALFORMED;
        goto out;
    }
    if (i - p->k < st->last) {
        rc = MP_ERR_SPENT;
        goto out;
    }
    /* Copy first: next may alias st, and p->w may live inside either. */
    memcpy(w, p->w, MP_HASH_LEN);
    if ((rc = mp_sha_iterate(h, w, i - st->last, back)) != MP_OK)
        goto out;
    if (!hash_equal(back, st->w_last)) {
        rc = MP_ERR_FORGED;
        goto out;
    }
    next->n = st->n;
    next->last = i;
    memcpy(next->w_last, w, MP_HASH_LEN);
out:
    return rc;
}

/* ---- redemption ------------------------------------------------------------ */

mp_status mp_pw_redeem_encode(const mp_pw_redeem *r, uint8_t *buf, size_t cap, size_t *len)
{
    uint8_t tmp[PW_REDEEM_MAX];
    mp_wbuf w;
    mp_status st = MP_ERR_ARG;

    if (r == NULL || buf == NULL || len == NULL)
        goto out;
    if (r->commit.enc_len == 0 || r->commit.enc_len > MP_PW_COMMIT_MAX
        || r->last < 1 || r->last > r->commit.n)
        goto out;

    mp_w_init(&w, tmp, sizeof tmp);
    mp_w_header(&w, MP_T_PW_REDEEM);
    mp_w_blob16(&w, r->commit.enc, r->commit.enc_len);
    mp_w_u32(&w, r->last);
    mp_w_bytes(&w, r->w_last, MP_HASH_LEN);
    if ((st = w.err) != MP_OK)
        goto out;
    if (cap < w.len) {
        st = MP_ERR_BUFFER;
        goto out;
    }
    memcpy(buf, tmp, w.len);
    *len = w.len;
out:
    return st;
}

mp_status mp_pw_redeem_decode(const uint8_t *in, size_t len, mp_pw_redeem *out)
{
    mp_pw_redeem d;
    mp_rbuf r;
    const uint8_t *commit;
    size_t commit_len = 0;
    mp_status st;

    if (in == NULL || out == NULL) {
        st = MP_ERR_ARG;
        goto out;
    }
    memset(&d, 0, sizeof d);
    mp_r_init(&r, in, len);
    mp_r_header(&r, MP_T_PW_REDEEM);
    commit = mp_r_blob16(&r, MP_PW_COMMIT_MAX, &commit_len);
    if (commit != NULL && (st = mp_pw_commit_decode(commit, commit_len, &d.commit)) != MP_OK)
        mp_r_fail(&r, st);
    d.last = mp_r_u32(&r);
    if (r.err == MP_OK && (d.last < 1 || d.last > d.commit.n))
        mp_r_fail(&r, MP_ERR_MALFORMED);
    mp_r_bytes(&r, d.w_last, MP_HASH_LEN);
    if ((st = mp_r_end(&r)) != MP_OK)
        goto out;
    memcpy(out, &d, sizeof d);
out:
    return st;
}

mp_status mp_pw_redeem_verify_from(mp_sha *h, const mp_pw_redeem *r, const mp_pw_trust *trust,
                                   uint32_t prev, const uint8_t *w_prev, mp_amount *value)
{
    uint8_t back[MP_HASH_LEN];
    mp_amount v;
    mp_status st = MP_ERR_ARG;

    if (h == NULL || r == NULL || trust == NULL || value == NULL || (prev > 0 && w_prev == NULL))
        goto out;
    /* The vendor may redeem long after expiry; judging the commitment at
     * its own date checks that it was valid when made, and the broker
     * enforces its own redemption deadline. */
    if ((st = commit_check(&r->commit, trust, NULL, r->commit.date)) != MP_OK)
        goto out;
    if (r->last < 1 || r->last > r->commit.n) {
        st = MP_ERR_MALFORMED;
        goto out;
    }
    if (r->last <= prev) {
        st = MP_ERR_ARG;
        goto out;
    }
    if ((st = mp_sha_iterate(h, r->w_last, r->last - prev, back)) != MP_OK)
        goto out;
    if (!hash_equal(back, prev > 0 ? w_prev : r->commit.w0)) {
        st = MP_ERR_FORGED;
        goto out;
    }
    /* Cannot overflow: n * unit was checked against the credit limit. */
    if ((st = mp_amount_mul(&r->commit.unit, r->last, &v)) != MP_OK)
        goto out;
    *value = v;
out:
    return st;
}

mp_status mp_pw_redeem_verify(mp_sha *h, const mp_pw_redeem *r,
                              const mp_pw_trust *trust, mp_amount *value)
{
    return mp_pw_redeem_verify_from(h, r, trust, 0, NULL, value);
}
