/*
 * Randomized tampering: well over 100,000 mutations of valid records
 * (scrip, Millicent payments and replies, PayWord certificates,
 * commitments, payments and redemptions, receipts), each run through the
 * whole acceptance path a vendor, customer or broker runs. Not one may be
 * accepted. A mutation that happens to leave the bytes unchanged is
 * redrawn. The PRNG is seeded, so a failure reproduces.
 */
#include <string.h>
#include "tests.h"

#define NOW     1800000000ULL
#define SERIES1 ((uint64_t)1 << 48)

static uint64_t rng = 0x6d757461746f7221ULL;

/* Mutates in[0..len) into out; returns the new length. */
static size_t mutate(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    size_t n = len, pos, i, j;
    uint8_t t;

    memcpy(out, in, len);
    switch (t_rand(&rng) % 8) {
    case 0:                                     /* one bit */
        pos = t_rand(&rng) % n;
        out[pos] ^= (uint8_t)(1u << (t_rand(&rng) % 8));
        break;
    case 1:                                     /* one byte */
        pos = t_rand(&rng) % n;
        out[pos] = (uint8_t)t_rand(&rng);
        break;
    case 2:                                     /* truncation */
        n = t_rand(&rng) % len;
        break;
    case 3:                                     /* insertion */
        if (n + 1 > cap)
            break;
        pos = t_rand(&rng) % (n + 1);
        memmove(out + pos + 1, out + pos, n - pos);
        out[pos] = (uint8_t)t_rand(&rng);
        n++;
        break;
    case 4:                                     /* deletion */
        pos = t_rand(&rng) % n;
        memmove(out + pos, out + pos + 1, n - pos - 1);
        n--;
        break;
    case 5:                                     /* a few bits */
        for (i = 2 + t_rand(&rng) % 3; i > 0; i--) {
            pos = t_rand(&rng) % n;
            out[pos] ^= (uint8_t)(1u << (t_rand(&rng) % 8));
        }
        break;
    case 6:                                     /* swap */
        i = t_rand(&rng) % n;
        j = t_rand(&rng) % n;
        t = out[i]; out[i] = out[j]; out[j] = t;
        break;
    default:                                    /* small integer tweak of one byte */
        pos = t_rand(&rng) % n;
        out[pos] = (uint8_t)(out[pos] + (t_rand(&rng) % 2 ? 1 : 0xff));
        break;
    }
    return n;
}

/* ---- fixtures --------------------------------------------------------------- */

static mp_mc_issuer *vendor;
static mp_mac *scratch, *receipt_key;
static mp_sha *sha;
static mp_pw_trust trust;
static uint8_t csecret[MP_HASH_LEN];
static mp_request req = { "GET", 3, "news.example", 12, "/a/b.html", 9, NULL };
static mp_amount price, value;
static mp_pw_commit commit;
static mp_pw_state pw_state;

static int setup(void)
{
    uint8_t s1[32], s2[32], wn[32];
    mp_chain *ch = NULL;
    mp_pw_cert cert;

    memset(s1, 0x11, 32);
    memset(s2, 0x22, 32);
    memset(wn, 0x77, 32);
    if (mp_mc_issuer_new("news.example", &vendor) != MP_OK
        || mp_mc_issuer_add_scrip_secret(vendor, 1, s1, 32, 0) != MP_OK
        || mp_mc_issuer_add_customer_secret(vendor, 1, s2, 32) != MP_OK
        || mp_mac_new(s1, 32, &scratch) != MP_OK
        || mp_mac_new(s2, 32, &receipt_key) != MP_OK
        || mp_sha_new(&sha) != MP_OK
        || mp_mc_customer_secret(vendor, SERIES1 | 7, csecret) != MP_OK
        || mp_amount_parse("0.002 USD", 9, &price) != MP_OK
        || mp_amount_parse("0.01 USD", 8, &value) != MP_OK)
        return -1;
    memset(&cert, 0, sizeof cert);
    strcpy(cert.broker, "broker.example");
    strcpy(cert.user, "alice");
    if (mp_signer_pubkey(t_user_key(), &cert.user_key) != MP_OK)
        return -1;
    cert.expiry = NOW + 86400 * 30;
    mp_amount_parse("10 USD", 6, &cert.credit_limit);
    cert.serial = 9;
    if (mp_pw_cert_sign(&cert, t_broker_key()) != MP_OK)
        return -1;
    trust.n = 1;
    strcpy(trust.b[0].name, "broker.example");
    if (mp_signer_pubkey(t_broker_key(), &trust.b[0].key) != MP_OK
        || mp_chain_new(wn, 100, &ch) != MP_OK)
        return -1;
    memset(&commit, 0, sizeof commit);
    strcpy(commit.vendor, "news.example");
    commit.cert = cert;
    mp_chain_w0(ch, commit.w0);
    commit.date = NOW - 10;
    commit.expiry = NOW + 86400;
    mp_amount_parse("0.001 USD", 9, &commit.unit);
    commit.n = 100;
    mp_chain_free(ch);
    if (mp_pw_commit_sign(&commit, t_user_key()) != MP_OK
        || mp_pw_state_init(&commit, &pw_state) != MP_OK)
        return -1;
    return 0;
}

static int teardown(void)
{
    mp_mc_issuer_free(vendor);
    mp_mac_free(scratch);
    mp_mac_free(receipt_key);
    mp_sha_free(sha);
    mp_wipe(csecret, sizeof csecret);
    return 0;
}

/* ---- acceptance paths --------------------------------------------------------- */

static mp_status accept_scrip(const uint8_t *b, size_t n)
{
    static mp_scrip s;
    mp_status st = mp_scrip_decode(b, n, &s);
    return st != MP_OK ? st : mp_mc_check_scrip(vendor, &s, NOW);
}

static mp_status accept_mc_payment(const uint8_t *b, size_t n)
{
    static mp_mc_payment p;
    static mp_mc_reply r;
    mp_status st = mp_mc_payment_decode(b, n, &p);
    return st != MP_OK ? st
        : mp_mc_accept(vendor, scratch, &p, &req, &price, NOW, SERIES1 | 99, &r);
}

static mp_mc_payment reply_for;     /* the payment the reply answers */

static mp_status accept_mc_reply(const uint8_t *b, size_t n)
{
    static mp_mc_reply r;
    mp_status st = mp_mc_reply_decode(b, n, &r);
    return st != MP_OK ? st : mp_mc_reply_check(scratch, &r, &reply_for, csecret);
}

static mp_status accept_cert(const uint8_t *b, size_t n)
{
    static mp_pw_cert c;
    mp_status st = mp_pw_cert_decode(b, n, &c);
    return st != MP_OK ? st : mp_pw_cert_verify(&c, &trust, NOW);
}

static mp_status accept_commit(const uint8_t *b, size_t n)
{
    static mp_pw_commit c;
    mp_status st = mp_pw_commit_decode(b, n, &c);
    return st != MP_OK ? st : mp_pw_commit_verify(&c, &trust, "news.example", NOW);
}

/* The vendor's whole path for a PayWord payment: the commitment is known
 * (state pw_state at word 2) or must come with the payment; the payment's
 * units must pay the price; then the chain check. */
static mp_pw_state pw_at2;

static mp_status accept_pw_payment(const uint8_t *b, size_t n)
{
    static mp_pw_payment p;
    mp_pw_state next;
    mp_amount paid;
    mp_status st;

    if ((st = mp_pw_payment_decode(b, n, &p)) != MP_OK)
        return st;
    if (!mp_ct_equal(p.commit_id, MP_HASH_LEN, commit.id, MP_HASH_LEN))
        return MP_ERR_UNKNOWN_COMMITMENT;
    if (p.has_commit && (st = mp_pw_commit_verify(&p.commit, &trust, "news.example", NOW)) != MP_OK)
        return st;
    if ((st = mp_amount_mul(&commit.unit, p.k, &paid)) != MP_OK)
        return st;
    if (paid.units != price.units)
        return MP_ERR_PRICE;
    return mp_pw_accept(sha, &pw_at2, &p, &next);
}

static mp_status accept_redeem(const uint8_t *b, size_t n)
{
    static mp_pw_redeem r;
    mp_amount v;
    mp_status st = mp_pw_redeem_decode(b, n, &r);
    return st != MP_OK ? st : mp_pw_redeem_verify(sha, &r, &trust, &v);
}

static mp_status accept_receipt(const uint8_t *b, size_t n)
{
    static mp_receipt r;
    mp_status st = mp_receipt_decode(b, n, &r);
    return st != MP_OK ? st : mp_receipt_check(receipt_key, &r, "news.example", "/a/b.html", 9, NOW);
}

/* Runs count mutations of the valid record rec through path; the record
 * itself must be accepted first, or the test proves nothing. */
static void hammer(const char *name, const uint8_t *rec, size_t len,
                   mp_status (*path)(const uint8_t *, size_t), long count)
{
    static uint8_t buf[MP_WIRE_MAX + 1];
    long i, accepted = 0, decode_refused = 0;
    size_t n;
    mp_status st;

    MP_ASSERT_OK(path(rec, len));
    for (i = 0; i < count; i++) {
        do {
            n = mutate(rec, len, buf, sizeof buf);
        } while (n == len && memcmp(buf, rec, len) == 0);
        st = path(buf, n);
        if (st == MP_OK) {
            accepted++;
            if (accepted <= 3)
                fprintf(stderr, "\n  %s: mutation %ld accepted\n", name, i);
        } else if (mp_reason(st)[0] == 'm') {
            decode_refused++;
        }
    }
    CU_ASSERT_EQUAL(accepted, 0);
    printf("\n    %-20s %6ld mutations, %6ld refused as malformed, %6ld by a check, 0 accepted",
           name, count, decode_refused, count - decode_refused - accepted);
}

static void test_mutations(void)
{
    static uint8_t rec[MP_WIRE_MAX];
    static mp_scrip scrip;
    static mp_mc_payment pay;
    static mp_mc_reply reply;
    static mp_pw_payment pw;
    static mp_pw_redeem red;
    static mp_receipt rcpt;
    mp_chain *ch = NULL;
    uint8_t wn[32];
    size_t len;
    long total = 0;

    /* Millicent */
    MP_ASSERT_OK(mp_mc_mint(vendor, &value, SERIES1 | 1, SERIES1 | 7, NOW + 3600, "co=us", &scrip));
    MP_ASSERT_OK(mp_scrip_encode(&scrip, rec, sizeof rec, &len));
    hammer("scrip", rec, len, accept_scrip, 20000); total += 20000;
    MP_ASSERT_OK(mp_mc_pay(scratch, &scrip, csecret, &req, &price, &pay));
    MP_ASSERT_OK(mp_mc_payment_encode(&pay, rec, sizeof rec, &len));
    hammer("millicent payment", rec, len, accept_mc_payment, 20000); total += 20000;
    MP_ASSERT_OK(mp_mc_accept(vendor, scratch, &pay, &req, &price, NOW, SERIES1 | 2, &reply));
    reply_for = pay;
    MP_ASSERT_OK(mp_mc_reply_encode(&reply, rec, sizeof rec, &len));
    hammer("millicent reply", rec, len, accept_mc_reply, 10000); total += 10000;

    /* PayWord */
    MP_ASSERT_OK(mp_pw_cert_encode(&commit.cert, rec, sizeof rec, &len));
    hammer("certificate", rec, len, accept_cert, 12000); total += 12000;
    MP_ASSERT_OK(mp_pw_commit_encode(&commit, rec, sizeof rec, &len));
    hammer("commitment", rec, len, accept_commit, 12000); total += 12000;

    memset(wn, 0x77, 32);
    MP_ASSERT_OK(mp_chain_new(wn, 100, &ch));
    pw_at2 = pw_state;
    pw_at2.last = 2;
    MP_ASSERT_OK(mp_chain_word(ch, 2, pw_at2.w_last));
    memset(&pw, 0, sizeof pw);
    memcpy(pw.commit_id, commit.id, MP_HASH_LEN);
    pw.i = 4;
    pw.k = 2;                               /* 2 x 0.001 = the price */
    MP_ASSERT_OK(mp_chain_word(ch, 4, pw.w));
    MP_ASSERT_OK(mp_pw_payment_encode(&pw, rec, sizeof rec, &len));
    hammer("payword payment", rec, len, accept_pw_payment, 20000); total += 20000;
    pw.has_commit = 1;
    pw.commit = commit;
    MP_ASSERT_OK(mp_pw_payment_encode(&pw, rec, sizeof rec, &len));
    hammer("payword first payment", rec, len, accept_pw_payment, 5000); total += 5000;

    red.commit = commit;
    red.last = 4;
    memcpy(red.w_last, pw.w, MP_HASH_LEN);
    MP_ASSERT_OK(mp_pw_redeem_encode(&red, rec, sizeof rec, &len));
    hammer("redemption", rec, len, accept_redeem, 5000); total += 5000;
    mp_chain_free(ch);

    /* Receipt */
    memset(&rcpt, 0, sizeof rcpt);
    strcpy(rcpt.vendor, "news.example");
    strcpy(rcpt.target, "/a/b.html");
    rcpt.target_len = 9;
    rcpt.scheme = MP_SCHEME_MILLICENT;
    rcpt.customer_id = SERIES1 | 7;
    rcpt.price = price;
    rcpt.issued = NOW - 5;
    rcpt.expiry = NOW + 600;
    MP_ASSERT_OK(mp_receipt_stamp(receipt_key, &rcpt));
    MP_ASSERT_OK(mp_receipt_encode(&rcpt, rec, sizeof rec, &len));
    hammer("receipt", rec, len, accept_receipt, 6000); total += 6000;

    CU_ASSERT(total >= 100000);
    printf("\n    %ld mutations in all, none accepted\n", total);
}

int register_mutation_tests(void)
{
    CU_pSuite s = CU_add_suite("mutation", setup, teardown);

    if (s == NULL || CU_add_test(s, "100k+ random mutations of valid records", test_mutations) == NULL)
        return -1;
    return 0;
}
