/*
 * mp_bench - cost of libmp's payment checks beside the OpenSSL primitives
 * they are made of, measured in the same run on the same inputs.
 *
 * For each operation it prints ns/op of libmp, ns/op of the bare OpenSSL
 * calls that operation performs (fetched algorithms, reused contexts: the
 * cheapest way to call them), and the ratio. Goal: ratio <= 1.5.
 * Each figure is the median of MP_BENCH_REPS repetitions (default 7) to
 * resist noise on a shared machine. Nothing is asserted: this is a
 * benchmark, not a test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include "mp.h"

#define REPS_DEFAULT 7

static int reps = REPS_DEFAULT;
static volatile uint8_t sink;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef int (*bench_fn)(void *arg, long iters);

/* Median over reps of ns per iteration. Timing only: the fn result is
 * checked so a failing operation cannot look fast. */
static double measure(bench_fn fn, void *arg, long iters)
{
    double t[32], t0;
    int r;

    if (fn(arg, iters / 10 + 1) != 0) {       /* warm-up */
        fprintf(stderr, "benchmark operation failed\n");
        exit(1);
    }
    for (r = 0; r < reps; r++) {
        t0 = now_ns();
        if (fn(arg, iters) != 0) {
            fprintf(stderr, "benchmark operation failed\n");
            exit(1);
        }
        t[r] = (now_ns() - t0) / (double)iters;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    return t[reps / 2];
}

static void report(const char *what, double ours, double prim, const char *prims)
{
    printf("%-44s %10.0f ns/op   primitives %10.0f ns/op   ratio %.2f   (%s)\n",
           what, ours, prim, ours / prim, prims);
}

static void die(const char *what, mp_status st)
{
    fprintf(stderr, "%s: %s\n", what, mp_strerror(st));
    exit(1);
}

/* ---- raw OpenSSL primitives ---------------------------------------------- */

typedef struct {
    EVP_MD *md;
    EVP_MD_CTX *mdctx;
    EVP_MAC *mac;
    EVP_MAC_CTX *keyed;      /* keyed once, init(NULL) per use */
    EVP_MAC_CTX *fresh;      /* re-keyed per use */
    uint8_t key[32];
    uint8_t msg[512];
    size_t len1, len2, len3, len4, len5;
    EVP_PKEY *pk1, *pk2;
    uint8_t sig1[64], sig2[64];
    const uint8_t *m1, *m2;
    size_t ml1, ml2;
} prims;

static int raw_hmac(EVP_MAC_CTX *c, const uint8_t *key, const uint8_t *m, size_t len)
{
    uint8_t out[32];
    size_t n;

    /* The digest was set when the context was made: a re-key passes no
     * parameters, the cheapest way OpenSSL offers. */
    if (key != NULL) {
        if (EVP_MAC_init(c, key, 32, NULL) != 1)
            return -1;
    } else if (EVP_MAC_init(c, NULL, 0, NULL) != 1) {
        return -1;
    }
    if (EVP_MAC_update(c, m, len) != 1 || EVP_MAC_final(c, out, &n, sizeof out) != 1)
        return -1;
    sink ^= out[0];
    return 0;
}

/* After the first use the context is re-initialised without naming the
 * digest again: the cheapest way to hash with OpenSSL 3, the baseline. */
static int raw_sha(prims *p, const uint8_t *m, size_t len)
{
    static int primed;
    uint8_t out[32];
    unsigned n;

    if (EVP_DigestInit_ex2(p->mdctx, primed ? NULL : p->md, NULL) != 1
        || EVP_DigestUpdate(p->mdctx, m, len) != 1
        || EVP_DigestFinal_ex(p->mdctx, out, &n) != 1)
        return -1;
    primed = 1;
    sink ^= out[0];
    return 0;
}

/* What mp_mc_accept does in OpenSSL terms: stamp check, customer secret,
 * re-key with it + request signature, change stamp, reply MAC. */
static int prim_millicent(void *arg, long iters)
{
    prims *p = arg;
    long i;

    for (i = 0; i < iters; i++) {
        if (raw_hmac(p->keyed, NULL, p->msg, p->len1) != 0
            || raw_hmac(p->keyed, NULL, p->msg, p->len2) != 0
            || raw_hmac(p->fresh, p->key, p->msg, p->len3) != 0
            || raw_hmac(p->keyed, NULL, p->msg, p->len4) != 0
            || raw_hmac(p->fresh, NULL, p->msg, p->len5) != 0)
            return -1;
    }
    return 0;
}

static int prim_sha32(void *arg, long iters)
{
    prims *p = arg;
    long i;

    for (i = 0; i < iters; i++)
        if (raw_sha(p, p->msg, 32) != 0)
            return -1;
    return 0;
}

/* One context per key: OpenSSL 3.0 refuses an Ed25519 verification on a
 * context re-initialised with a different key than its previous one. */
static int prim_ed25519_x2(void *arg, long iters)
{
    prims *p = arg;
    EVP_MD_CTX *c1 = EVP_MD_CTX_new(), *c2 = EVP_MD_CTX_new();
    long i;
    int rc = -1;

    if (c1 == NULL || c2 == NULL)
        goto done;
    for (i = 0; i < iters; i++) {
        if (EVP_DigestVerifyInit_ex(c1, NULL, NULL, NULL, NULL, p->pk1, NULL) != 1
            || EVP_DigestVerify(c1, p->sig1, 64, p->m1, p->ml1) != 1
            || EVP_DigestVerifyInit_ex(c2, NULL, NULL, NULL, NULL, p->pk2, NULL) != 1
            || EVP_DigestVerify(c2, p->sig2, 64, p->m2, p->ml2) != 1)
            goto done;
    }
    rc = 0;
done:
    EVP_MD_CTX_free(c1);
    EVP_MD_CTX_free(c2);
    return rc;
}

/* ---- libmp operations -------------------------------------------------------- */

typedef struct {
    mp_mc_issuer *iss;
    mp_mac *scratch;
    mp_mc_payment pay;
    uint8_t pay_enc[MP_WIRE_MAX];
    size_t pay_len;
    mp_request req;
    mp_amount price;
    uint64_t now;
} mc_ctx;

static int ours_millicent(void *arg, long iters)
{
    mc_ctx *c = arg;
    mp_mc_payment p;
    mp_mc_reply reply;
    long i;

    for (i = 0; i < iters; i++) {
        if (mp_mc_payment_decode(c->pay_enc, c->pay_len, &p) != MP_OK
            || mp_mc_accept(c->iss, c->scratch, &p, &c->req, &c->price, c->now,
                            ((uint64_t)1 << 48) | (uint64_t)(1000 + i), &reply) != MP_OK)
            return -1;
        sink ^= reply.mac[0];
    }
    return 0;
}

typedef struct {
    mp_sha *h;
    mp_pw_state st;
    uint8_t enc[MP_WIRE_MAX];
    size_t len;
    mp_pw_payment pay;
    mp_pw_commit commit;
    mp_pw_trust trust;
    uint64_t now;
} pw_ctx;

static int ours_pw_accept(void *arg, long iters)
{
    pw_ctx *c = arg;
    mp_pw_state next;
    long i;

    for (i = 0; i < iters; i++) {
        if (mp_pw_accept(c->h, &c->st, &c->pay, &next) != MP_OK)
            return -1;
        sink ^= next.w_last[0];
    }
    return 0;
}

static mp_pw_payment pw_scratch;   /* large: keep it off the stack */

static int ours_pw_decode_accept(void *arg, long iters)
{
    pw_ctx *c = arg;
    mp_pw_state next;
    long i;

    for (i = 0; i < iters; i++) {
        if (mp_pw_payment_decode(c->enc, c->len, &pw_scratch) != MP_OK
            || mp_pw_accept(c->h, &c->st, &pw_scratch, &next) != MP_OK)
            return -1;
        sink ^= next.w_last[0];
    }
    return 0;
}

static int ours_commit_verify(void *arg, long iters)
{
    pw_ctx *c = arg;
    long i;

    for (i = 0; i < iters; i++)
        if (mp_pw_commit_verify(&c->commit, &c->trust, "example.com", c->now) != MP_OK)
            return -1;
    return 0;
}

typedef struct {
    uint8_t wn[32];
    uint32_t n;
} chain_ctx;

/* iters chains of n words each; the figure is divided by n below. */
static int ours_chain(void *arg, long iters)
{
    chain_ctx *c = arg;
    mp_chain *ch;
    uint8_t w[32];
    uint32_t idx;
    long i;

    for (i = 0; i < iters; i++) {
        if (mp_chain_new(c->wn, c->n, &ch) != MP_OK)
            return -1;
        while (mp_chain_next(ch, &idx, w) == MP_OK)
            sink ^= w[0];
        if (mp_chain_position(ch) != c->n) {
            mp_chain_free(ch);
            return -1;
        }
        mp_chain_free(ch);
    }
    return 0;
}

int main(int argc, char **argv)
{
    static prims P;
    static mc_ctx M;
    static pw_ctx W;
    static chain_ctx C;
    uint8_t secret[32], cust_master[32], csecret[32], tmp[64];
    mp_amount value;
    mp_scrip scrip;
    mp_signer *broker, *user;
    mp_pw_cert cert;
    mp_chain *ch;
    mp_pubkey pk;
    size_t n;
    uint32_t idx;
    double ours, prim, ours2;
    mp_status st;
    const char *e = getenv("MP_BENCH_REPS");
    long scale = argc > 1 ? atol(argv[1]) : 1;

    if (e && atoi(e) >= 3 && atoi(e) <= 31)
        reps = atoi(e);
    if (scale < 1)
        scale = 1;

    /* primitives */
    memset(P.key, 0x42, sizeof P.key);
    memset(P.msg, 0x5a, sizeof P.msg);
    {
        OSSL_PARAM p[2] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_end()
        };
        P.md = EVP_MD_fetch(NULL, "SHA256", NULL);
        P.mdctx = EVP_MD_CTX_new();
        P.mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        P.keyed = EVP_MAC_CTX_new(P.mac);
        P.fresh = EVP_MAC_CTX_new(P.mac);
        if (!P.md || !P.mdctx || !P.mac || !P.keyed || !P.fresh
            || EVP_MAC_init(P.keyed, P.key, 32, p) != 1 || EVP_MAC_init(P.fresh, P.key, 32, p) != 1) {
            fprintf(stderr, "OpenSSL setup failed\n");
            return 1;
        }
    }

    /* Millicent: a vendor, scrip for a customer, a signed payment */
    memset(secret, 0x11, sizeof secret);
    memset(cust_master, 0x22, sizeof cust_master);
    if ((st = mp_mc_issuer_new("example.com", &M.iss)) != MP_OK
        || (st = mp_mc_issuer_add_scrip_secret(M.iss, 1, secret, 32, 0)) != MP_OK
        || (st = mp_mc_issuer_add_customer_secret(M.iss, 1, cust_master, 32)) != MP_OK
        || (st = mp_mac_new(secret, 32, &M.scratch)) != MP_OK
        || (st = mp_amount_parse("0.01 USD", 8, &value)) != MP_OK
        || (st = mp_amount_parse("0.005 USD", 9, &M.price)) != MP_OK
        || (st = mp_mc_mint(M.iss, &value, ((uint64_t)1 << 48) | 42, ((uint64_t)1 << 48) | 7,
                            4000000000ULL, "co=us", &scrip)) != MP_OK
        || (st = mp_mc_customer_secret(M.iss, scrip.customer_id, csecret)) != MP_OK)
        die("millicent setup", st);
    M.req.method = "GET"; M.req.method_len = 3;
    M.req.host = "example.com"; M.req.host_len = 11;
    M.req.target = "/articles/2026/11/micropayments.html"; M.req.target_len = strlen(M.req.target);
    M.now = 1800000000ULL;
    if ((st = mp_mc_pay(M.scratch, &scrip, csecret, &M.req, &M.price, &M.pay)) != MP_OK
        || (st = mp_mc_payment_encode(&M.pay, M.pay_enc, sizeof M.pay_enc, &M.pay_len)) != MP_OK)
        die("millicent pay", st);
    {
        /* Inputs of the primitive run sized like the ones mp_mc_accept hashes. */
        uint8_t senc[MP_WIRE_MAX];
        size_t slen;
        mp_scrip_encode(&scrip, senc, sizeof senc, &slen);
        P.len1 = slen - 32;                                   /* stamp body */
        P.len2 = 12 + 8;                                      /* customer secret */
        P.len3 = 11 + slen + 1 + 3 + 1 + 11 + 2 + M.req.target_len + 11; /* request */
        P.len4 = slen - 32;                                   /* change stamp */
        P.len5 = 1 + 2 + slen + 11 + 32 + 2;                  /* reply body */
    }

    /* PayWord: broker, user, certificate, a chain and a commitment */
    memset(tmp, 0xb0, 32);
    if ((st = mp_signer_from_seed(tmp, &broker)) != MP_OK)
        die("broker key", st);
    memset(tmp, 0x05, 32);
    if ((st = mp_signer_from_seed(tmp, &user)) != MP_OK)
        die("user key", st);
    memset(&cert, 0, sizeof cert);
    strcpy(cert.broker, "broker.example");
    strcpy(cert.user, "alice");
    mp_signer_pubkey(user, &cert.user_key);
    cert.expiry = 4000000000ULL;
    mp_amount_parse("100 USD", 7, &cert.credit_limit);
    cert.serial = 1;
    if ((st = mp_pw_cert_sign(&cert, broker)) != MP_OK)
        die("cert", st);
    memset(tmp, 0x77, 32);
    if ((st = mp_chain_new(tmp, 1000, &ch)) != MP_OK)
        die("chain", st);
    memset(&W.commit, 0, sizeof W.commit);
    strcpy(W.commit.vendor, "example.com");
    W.commit.cert = cert;
    mp_chain_w0(ch, W.commit.w0);
    W.commit.date = 1799999000ULL;
    W.commit.expiry = 1900000000ULL;
    mp_amount_parse("0.001 USD", 9, &W.commit.unit);
    W.commit.n = 1000;
    if ((st = mp_pw_commit_sign(&W.commit, user)) != MP_OK)
        die("commit", st);
    W.trust.n = 1;
    strcpy(W.trust.b[0].name, "broker.example");
    mp_signer_pubkey(broker, &W.trust.b[0].key);
    W.now = 1800000000ULL;
    if ((st = mp_sha_new(&W.h)) != MP_OK || (st = mp_pw_state_init(&W.commit, &W.st)) != MP_OK)
        die("pw state", st);
    /* state at word 500, payment of word 501 */
    W.st.last = 500;
    mp_chain_word(ch, 500, W.st.w_last);
    memset(&W.pay, 0, sizeof W.pay);
    memcpy(W.pay.commit_id, W.commit.id, 32);
    W.pay.i = 501;
    W.pay.k = 1;
    mp_chain_word(ch, 501, W.pay.w);
    if ((st = mp_pw_payment_encode(&W.pay, W.enc, sizeof W.enc, &W.len)) != MP_OK)
        die("pw payment", st);
    mp_chain_free(ch);
    /* the two signatures commitment verification checks, for the raw run */
    mp_signer_pubkey(broker, &pk);
    P.pk1 = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, pk.key, 32);
    P.pk2 = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, cert.user_key.key, 32);
    memcpy(P.sig1, cert.sig, 64);
    P.m1 = cert.enc; P.ml1 = cert.signed_len;
    memcpy(P.sig2, W.commit.sig, 64);
    P.m2 = W.commit.enc; P.ml2 = W.commit.signed_len;
    if (!P.pk1 || !P.pk2 || prim_ed25519_x2(&P, 1) != 0) {
        fprintf(stderr, "raw Ed25519 setup failed\n");
        return 1;
    }

    printf("mp_bench: median of %d runs; OpenSSL %s\n", reps, OpenSSL_version(0));

    ours = measure(ours_millicent, &M, 20000 * scale);
    prim = measure(prim_millicent, &P, 20000 * scale);
    report("Millicent scrip + request signature, change", ours, prim,
           "5 x HMAC-SHA256, 1 re-key");

    ours = measure(ours_pw_accept, &W, 200000 * scale);
    ours2 = measure(ours_pw_decode_accept, &W, 200000 * scale);
    prim = measure(prim_sha32, &P, 200000 * scale);
    report("PayWord next word (accept)", ours, prim, "1 x SHA-256 of 32 B");
    report("PayWord next word (decode + accept)", ours2, prim, "1 x SHA-256 of 32 B");

    ours = measure(ours_commit_verify, &W, 300 * scale);
    prim = measure(prim_ed25519_x2, &P, 300 * scale);
    report("PayWord commitment, first contact", ours, prim, "2 x Ed25519 verify");

    memset(C.wn, 0x77, 32);
    C.n = 10000;
    ours = measure(ours_chain, &C, 5 * scale) / C.n;
    prim = measure(prim_sha32, &P, 200000 * scale);
    n = 0;
    {
        /* A forward walk needs w0 first (n hashes) and then every segment
         * again from its checkpoint: 2n - s hashes in all. */
        uint32_t s = 1;
        while ((uint64_t)s * s < C.n)
            s++;
        n = 2 * (size_t)C.n - s;
    }
    report("PayWord chain generation, per word (n=10^4)", ours, prim * (double)n / C.n,
           "(2n - sqrt n)/n SHA-256 per word");
    printf("%-44s %10.0f ns/op   vs one SHA-256 %6.0f ns/op: %.2fx\n",
           "  the same against one hash per word", ours, prim, ours / prim);
    (void)idx;

    mp_mc_issuer_free(M.iss);
    mp_mac_free(M.scratch);
    mp_sha_free(W.h);
    mp_signer_free(broker);
    mp_signer_free(user);
    EVP_PKEY_free(P.pk1);
    EVP_PKEY_free(P.pk2);
    EVP_MAC_CTX_free(P.keyed);
    EVP_MAC_CTX_free(P.fresh);
    EVP_MAC_free(P.mac);
    EVP_MD_CTX_free(P.mdctx);
    EVP_MD_free(P.md);
    mp_wipe(csecret, sizeof csecret);
    return 0;
}
