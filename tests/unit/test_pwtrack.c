/*
 * test_pwtrack.c - the vendor's PayWord tracker (docs/PROTOCOL.md 7.5):
 * payments of concurrently handed-out intervals arriving in any order,
 * retries, forfeited gaps, and the storage record.
 */
#include <string.h>
#include "tests.h"

static const uint8_t t_tag0[MP_PW_TAG_LEN] = { 0x7a };

#define NOW 1800000000ULL
#define N   200

static mp_sha *sha;
static mp_pw_commit commit;            /* n = N, unit 0.001 USD */
static uint8_t words[N + 1][MP_HASH_LEN];
static mp_pw_payment pay_buf;

static int setup(void)
{
    mp_pw_cert cert;
    int i;

    if (mp_sha_new(&sha) != MP_OK)
        return -1;
    memset(words[N], 0x5c, MP_HASH_LEN);
    for (i = N; i > 0; i--)
        if (mp_sha256(words[i], MP_HASH_LEN, words[i - 1]) != MP_OK)
            return -1;

    memset(&cert, 0, sizeof cert);
    strcpy(cert.broker, "broker.example");
    strcpy(cert.user, "alice");
    if (mp_signer_pubkey(t_user_key(), &cert.user_key) != MP_OK)
        return -1;
    cert.expiry = NOW + 86400 * 30;
    if (mp_amount_parse("10 USD", 6, &cert.credit_limit) != MP_OK)
        return -1;
    cert.serial = 11;
    if (mp_pw_cert_sign(&cert, t_broker_key()) != MP_OK)
        return -1;
    memset(&commit, 0, sizeof commit);
    strcpy(commit.vendor, "news.example");
    commit.cert = cert;
    memcpy(commit.w0, words[0], MP_HASH_LEN);
    commit.date = NOW - 10;
    commit.expiry = NOW + 86400;
    if (mp_amount_parse("0.001 USD", 9, &commit.unit) != MP_OK)
        return -1;
    commit.n = N;
    return mp_pw_commit_sign(&commit, t_user_key()) == MP_OK ? 0 : -1;
}

static int teardown(void)
{
    mp_sha_free(sha);
    sha = NULL;
    return 0;
}

/* ---- helpers ------------------------------------------------------------------ */

static void fresh(mp_pw_track *t)
{
    MP_ASSERT_OK(mp_pw_track_init(&commit, t));
}

static mp_pw_payment *payment(uint32_t i, uint32_t k)
{
    memset(&pay_buf, 0, sizeof pay_buf);
    memcpy(pay_buf.commit_id, commit.id, MP_HASH_LEN);
    pay_buf.i = i;
    pay_buf.k = k;
    if (i <= N)
        memcpy(pay_buf.w, words[i], MP_HASH_LEN);
    return &pay_buf;
}

/* k words at the matching price. */
static mp_amount price_of(uint32_t k)
{
    mp_amount a = commit.unit;
    a.units *= k;
    return a;
}

/* Pays (i-k, i] at its price at NOW, updating t in place (next aliases t). */
static mp_status pay(mp_pw_track *t, uint32_t i, uint32_t k, int *retry)
{
    mp_amount price = price_of(k);
    return mp_pw_track_accept(sha, t, payment(i, k), t_tag0, &price, NOW, t, retry);
}

/* Asserts that accepting p fails with want and writes nothing. */
static void refused(const mp_pw_track *t, const mp_pw_payment *p, const mp_amount *price,
                    uint64_t now, mp_status want)
{
    static mp_pw_track before, next, sentinel;
    int retry = 7;

    memcpy(&before, t, sizeof before);
    memset(&next, 0xa5, sizeof next);
    memcpy(&sentinel, &next, sizeof sentinel);
    MP_ASSERT_ST(mp_pw_track_accept(sha, t, p, t_tag0, price, now, &next, &retry), want);
    CU_ASSERT(memcmp(&next, &sentinel, sizeof next) == 0);
    CU_ASSERT(memcmp(t, &before, sizeof before) == 0);
    CU_ASSERT_EQUAL(retry, 7);
}

static void refused_pay(const mp_pw_track *t, uint32_t i, uint32_t k, mp_status want)
{
    mp_amount price = price_of(k);
    refused(t, payment(i, k), &price, NOW, want);
}

/* Checks the tracker against a model: acc[j] = 1 for accepted words, 2 for
 * forfeited ones; the gaps must be exactly the runs of unused words below
 * l, each anchored at its true word. */
static int matches_model(const mp_pw_track *t, const uint8_t *acc, uint32_t last)
{
    uint32_t j, g = 0, a;

    if (t->last != last || memcmp(t->w_last, words[last], MP_HASH_LEN) != 0)
        return 0;
    for (j = 1; j <= last; ) {
        if (acc[j]) {
            j++;
            continue;
        }
        a = j - 1;
        while (j <= last && !acc[j])
            j++;
        if (g >= t->ngaps || t->gaps[g].a != a || t->gaps[g].b != j - 1
            || memcmp(t->gaps[g].w_a, words[a], MP_HASH_LEN) != 0)
            return 0;
        g++;
    }
    return g == t->ngaps;
}

/* ---- tests -------------------------------------------------------------------- */

static void test_init(void)
{
    mp_pw_track t;
    mp_pw_commit bad;

    fresh(&t);
    CU_ASSERT(memcmp(t.commit_id, commit.id, MP_HASH_LEN) == 0);
    CU_ASSERT_EQUAL(t.n, N);
    CU_ASSERT_EQUAL(t.unit.units, 100);
    CU_ASSERT_STRING_EQUAL(t.unit.cur, "USD");
    CU_ASSERT_EQUAL(t.expiry, commit.expiry);
    CU_ASSERT_EQUAL(t.version, 0);
    CU_ASSERT_EQUAL(t.last, 0);
    CU_ASSERT(memcmp(t.w_last, words[0], MP_HASH_LEN) == 0);
    CU_ASSERT_EQUAL(t.units_paid, 0);
    CU_ASSERT_EQUAL(t.ngaps, 0);
    CU_ASSERT_EQUAL(t.nrecent, 0);

    MP_ASSERT_ST(mp_pw_track_init(NULL, &t), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pw_track_init(&commit, NULL), MP_ERR_ARG);
    bad = commit;
    bad.enc_len = 0;                       /* never signed: no id */
    MP_ASSERT_ST(mp_pw_track_init(&bad, &t), MP_ERR_ARG);
    bad = commit;
    bad.n = 0;
    MP_ASSERT_ST(mp_pw_track_init(&bad, &t), MP_ERR_ARG);
    bad = commit;
    bad.unit.units = 0;
    MP_ASSERT_ST(mp_pw_track_init(&bad, &t), MP_ERR_ARG);
}

static void test_in_order(void)
{
    mp_pw_track t;
    int retry = -1;
    uint32_t i;

    fresh(&t);
    for (i = 1; i <= 5; i++) {
        MP_ASSERT_OK(pay(&t, i, 1, &retry));
        CU_ASSERT_EQUAL(retry, 0);
        CU_ASSERT_EQUAL(t.last, i);
        CU_ASSERT(memcmp(t.w_last, words[i], MP_HASH_LEN) == 0);
        CU_ASSERT_EQUAL(t.version, i);
        CU_ASSERT_EQUAL(t.ngaps, 0);
    }
    MP_ASSERT_OK(pay(&t, 8, 3, &retry));   /* words 6..8 */
    CU_ASSERT_EQUAL(t.last, 8);
    CU_ASSERT_EQUAL(t.units_paid, 8);
    CU_ASSERT_EQUAL(t.ngaps, 0);
    CU_ASSERT_EQUAL(t.nrecent, 6);
    CU_ASSERT_EQUAL(t.recent[5].i, 8);
    CU_ASSERT_EQUAL(t.recent[5].k, 3);
    CU_ASSERT(memcmp(t.recent[5].w, words[8], MP_HASH_LEN) == 0);

    /* Skipping words leaves a gap anchored at the old l. */
    MP_ASSERT_OK(pay(&t, 12, 1, &retry));
    CU_ASSERT_EQUAL(t.ngaps, 1);
    CU_ASSERT_EQUAL(t.gaps[0].a, 8);
    CU_ASSERT_EQUAL(t.gaps[0].b, 11);
    CU_ASSERT(memcmp(t.gaps[0].w_a, words[8], MP_HASH_LEN) == 0);
    CU_ASSERT_EQUAL(t.units_paid, 9);
    /* a payment that adjoins l exactly */
    MP_ASSERT_OK(pay(&t, 14, 2, &retry));
    CU_ASSERT_EQUAL(t.last, 14);
    CU_ASSERT_EQUAL(t.ngaps, 1);

    refused_pay(&t, 14, 1, MP_ERR_SPENT);
    refused_pay(&t, 16, 3, MP_ERR_SPENT);  /* 14..16 overlaps 14 */
    refused_pay(&t, 13, 4, MP_ERR_SPENT);  /* 10..13: gap 9..11, then 12 */
    refused_pay(&t, 15, 0, MP_ERR_MALFORMED);
    refused_pay(&t, 15, 16, MP_ERR_MALFORMED);
}

/* The wallet hands out (0,2], (2,3], (3,6], (6,7] to four parallel
 * requests; they arrive 3rd, 1st, 4th, 2nd. */
static void test_out_of_order(void)
{
    mp_pw_track t;
    int retry = -1;

    fresh(&t);
    MP_ASSERT_OK(pay(&t, 6, 3, &retry));
    CU_ASSERT_EQUAL(t.last, 6);
    CU_ASSERT_EQUAL(t.ngaps, 1);
    CU_ASSERT_EQUAL(t.gaps[0].a, 0);
    CU_ASSERT_EQUAL(t.gaps[0].b, 3);

    MP_ASSERT_OK(pay(&t, 2, 2, &retry));
    CU_ASSERT_EQUAL(retry, 0);
    CU_ASSERT_EQUAL(t.last, 6);
    CU_ASSERT_EQUAL(t.ngaps, 1);
    CU_ASSERT_EQUAL(t.gaps[0].a, 2);       /* the rest, anchored at w_2 */
    CU_ASSERT_EQUAL(t.gaps[0].b, 3);
    CU_ASSERT(memcmp(t.gaps[0].w_a, words[2], MP_HASH_LEN) == 0);

    MP_ASSERT_OK(pay(&t, 7, 1, &retry));
    CU_ASSERT_EQUAL(t.last, 7);
    CU_ASSERT_EQUAL(t.ngaps, 1);

    MP_ASSERT_OK(pay(&t, 3, 1, &retry));
    CU_ASSERT_EQUAL(retry, 0);
    CU_ASSERT_EQUAL(t.last, 7);
    CU_ASSERT(memcmp(t.w_last, words[7], MP_HASH_LEN) == 0);
    CU_ASSERT_EQUAL(t.units_paid, 7);
    CU_ASSERT_EQUAL(t.ngaps, 0);
    CU_ASSERT_EQUAL(t.version, 4);
    CU_ASSERT_EQUAL(t.nrecent, 4);

    /* each again: a retry, uncharged, the state as it was */
    MP_ASSERT_OK(pay(&t, 6, 3, &retry));
    CU_ASSERT_EQUAL(retry, 1);
    MP_ASSERT_OK(pay(&t, 2, 2, &retry));
    CU_ASSERT_EQUAL(retry, 1);
    MP_ASSERT_OK(pay(&t, 7, 1, &retry));
    CU_ASSERT_EQUAL(retry, 1);
    MP_ASSERT_OK(pay(&t, 3, 1, &retry));
    CU_ASSERT_EQUAL(retry, 1);
    CU_ASSERT_EQUAL(t.units_paid, 7);
    CU_ASSERT_EQUAL(t.version, 4);
    /* anything else over those words is spent */
    refused_pay(&t, 2, 1, MP_ERR_SPENT);
    refused_pay(&t, 3, 3, MP_ERR_SPENT);
    refused_pay(&t, 7, 7, MP_ERR_SPENT);
}

/* A split gap keeps both rests, each with its own anchor; the middle of a
 * gap is paid by hashing down to the gap's lower anchor. */
static void test_split(void)
{
    mp_pw_track t;
    int retry = -1;

    fresh(&t);
    MP_ASSERT_OK(pay(&t, 20, 1, &retry));  /* gap (0,19] */
    MP_ASSERT_OK(pay(&t, 10, 2, &retry));  /* (0,8] and (10,19] */
    CU_ASSERT_EQUAL(t.ngaps, 2);
    CU_ASSERT_EQUAL(t.gaps[0].a, 0);
    CU_ASSERT_EQUAL(t.gaps[0].b, 8);
    CU_ASSERT(memcmp(t.gaps[0].w_a, words[0], MP_HASH_LEN) == 0);
    CU_ASSERT_EQUAL(t.gaps[1].a, 10);
    CU_ASSERT_EQUAL(t.gaps[1].b, 19);
    CU_ASSERT(memcmp(t.gaps[1].w_a, words[10], MP_HASH_LEN) == 0);
    MP_ASSERT_OK(pay(&t, 19, 1, &retry));  /* top of a gap: (10,18] */
    CU_ASSERT_EQUAL(t.gaps[1].b, 18);
    MP_ASSERT_OK(pay(&t, 11, 1, &retry));  /* bottom of a gap: (11,18] */
    CU_ASSERT_EQUAL(t.gaps[1].a, 11);
    CU_ASSERT(memcmp(t.gaps[1].w_a, words[11], MP_HASH_LEN) == 0);
    MP_ASSERT_OK(pay(&t, 18, 7, &retry));  /* the whole gap */
    CU_ASSERT_EQUAL(t.ngaps, 1);
    refused_pay(&t, 9, 2, MP_ERR_SPENT);   /* 8..9 straddles a gap's end */
    refused_pay(&t, 21, 2, MP_ERR_SPENT);  /* 20..21 straddles l */
    MP_ASSERT_OK(pay(&t, 8, 8, &retry));
    CU_ASSERT_EQUAL(t.ngaps, 0);
    CU_ASSERT_EQUAL(t.units_paid, 20);
}

static void test_forged(void)
{
    mp_pw_track t, before;
    mp_pw_payment *p;
    mp_amount price = price_of(1);
    int retry = -1;

    fresh(&t);
    MP_ASSERT_OK(pay(&t, 10, 1, &retry));
    MP_ASSERT_OK(pay(&t, 5, 1, &retry));
    before = t;
    p = payment(12, 1);                     /* fresh words above l */
    p->w[0] ^= 1;
    refused(&t, p, &price, NOW, MP_ERR_FORGED);
    p = payment(12, 1);
    memcpy(p->w, words[13], MP_HASH_LEN);   /* a genuine word, wrong index */
    refused(&t, p, &price, NOW, MP_ERR_FORGED);
    p = payment(3, 1);                      /* inside the gap (0,4] */
    memcpy(p->w, words[4], MP_HASH_LEN);
    refused(&t, p, &price, NOW, MP_ERR_FORGED);
    p = payment(7, 1);                      /* inside the gap (5,9] */
    memset(p->w, 0, MP_HASH_LEN);
    refused(&t, p, &price, NOW, MP_ERR_FORGED);
    /* a forged copy of a remembered payment is no retry */
    p = payment(10, 1);
    p->w[31] ^= 0x80;
    refused(&t, p, &price, NOW, MP_ERR_SPENT);
    CU_ASSERT(memcmp(&t, &before, sizeof t) == 0);
    /* A word too far above its anchor for what it pays is refused before
     * any hashing: one request's hashing is bounded by MP_PW_SKIP_RATIO
     * words a word paid. (A longer chain than this test's words: the
     * bound is checked before the word is.) */
    t.n = 100000;
    p = payment(10 + MP_PW_SKIP_RATIO + 1, 1);
    refused(&t, p, &price, NOW, MP_ERR_FORGED);
    price = price_of(3);
    p = payment(10 + 3 * MP_PW_SKIP_RATIO + 1, 3);
    refused(&t, p, &price, NOW, MP_ERR_FORGED);
    /* within the bound the word itself decides: genuine words pay */
    t = before;
    price = price_of(1);
    p = payment(N, 1);
    MP_ASSERT_OK(mp_pw_track_accept(sha, &t, p, t_tag0, &price, NOW, &t, &retry));
}

static void test_limits_and_price(void)
{
    mp_pw_track t, next;
    mp_amount price, eur;
    mp_pw_payment *p;
    int retry = -1;

    fresh(&t);
    MP_ASSERT_OK(pay(&t, 3, 1, &retry));
    refused_pay(&t, N + 1, 1, MP_ERR_EXHAUSTED);
    refused_pay(&t, 0xffffffffu, 2, MP_ERR_EXHAUSTED);
    MP_ASSERT_OK(pay(&t, N, 2, &retry));   /* the last word can be paid */
    refused_pay(&t, N, 1, MP_ERR_SPENT);

    fresh(&t);
    MP_ASSERT_OK(pay(&t, 3, 1, &retry));
    price = price_of(1);
    refused(&t, payment(4, 1), &price, commit.expiry, MP_ERR_EXPIRED);
    refused(&t, payment(4, 1), &price, commit.expiry + 1000, MP_ERR_EXPIRED);
    MP_ASSERT_OK(mp_pw_track_accept(sha, &t, payment(4, 1), t_tag0, &price, commit.expiry - 1,
                                    &next, &retry));
    /* a retry is answered after expiry and whatever the price is now */
    MP_ASSERT_OK(mp_pw_track_accept(sha, &t, payment(3, 1), t_tag0, &price, commit.expiry + 1000,
                                    &next, &retry));
    CU_ASSERT_EQUAL(retry, 1);
    CU_ASSERT(memcmp(&next, &t, sizeof t) == 0);
    price = price_of(5);
    MP_ASSERT_OK(mp_pw_track_accept(sha, &t, payment(3, 1), t_tag0, &price, NOW, &next, &retry));
    CU_ASSERT_EQUAL(retry, 1);
    {
        /* The same words sent for another request are no retry: one
         * payment must not buy two resources. */
        static const mp_request ra = { "GET", 3, "news.example", 12, "/a.html", 7, NULL };
        static const mp_request rb = { "GET", 3, "news.example", 12, "/b.html", 7, NULL };
        uint8_t tag_a[MP_PW_TAG_LEN], tag_b[MP_PW_TAG_LEN], tag_a2[MP_PW_TAG_LEN];

        MP_ASSERT_OK(mp_request_tag(sha, &ra, tag_a));
        MP_ASSERT_OK(mp_request_tag(sha, &ra, tag_a2));
        MP_ASSERT_OK(mp_request_tag(sha, &rb, tag_b));
        CU_ASSERT(memcmp(tag_a, tag_a2, MP_PW_TAG_LEN) == 0);
        CU_ASSERT(memcmp(tag_a, tag_b, MP_PW_TAG_LEN) != 0);
        {
            /* The body is part of the request (PROTOCOL.md 7.5): the same
             * words for a POST with another body are another purchase.
             * Known answers from Python's hashlib. */
            static const uint8_t body_a[MP_HASH_LEN] = {   /* SHA-256("A") */
                0x55, 0x9a, 0xea, 0xd0, 0x82, 0x64, 0xd5, 0x79, 0x5d, 0x39, 0x09, 0x71, 0x8c,
                0xdd, 0x05, 0xab, 0xd4, 0x95, 0x72, 0xe8, 0x4f, 0xe5, 0x55, 0x90, 0xee, 0xf3,
                0x1a, 0x88, 0xa0, 0x8f, 0xdf, 0xfd
            };
            static const uint8_t want_post[MP_PW_TAG_LEN] = { 0x28, 0x01, 0x6b, 0x2e, 0x45, 0x34, 0x1b, 0x1d, 0x28, 0x55, 0x2f, 0xd2, 0xdd, 0x51, 0xbd, 0x62 };
            static const uint8_t want_get[MP_PW_TAG_LEN] = { 0x01, 0xe9, 0x4e, 0xcf, 0x8e, 0x34, 0xcc, 0x4f, 0xd2, 0x57, 0x87, 0x4a, 0xd7, 0xca, 0x99, 0x68 };
            mp_request pa = { "POST", 4, "news.example", 12, "/cgi/echo", 9, body_a };
            mp_request pe = { "POST", 4, "news.example", 12, "/cgi/echo", 9, NULL };
            uint8_t tp[MP_PW_TAG_LEN], te[MP_PW_TAG_LEN];

            MP_ASSERT_OK(mp_request_tag(sha, &pa, tp));
            MP_ASSERT_OK(mp_request_tag(sha, &pe, te));
            CU_ASSERT(memcmp(tp, want_post, MP_PW_TAG_LEN) == 0);
            CU_ASSERT(memcmp(tp, te, MP_PW_TAG_LEN) != 0);
            CU_ASSERT(memcmp(tag_a, want_get, MP_PW_TAG_LEN) == 0);
        }
        price = price_of(1);
        MP_ASSERT_ST(mp_pw_track_accept(sha, &t, payment(3, 1), tag_a, &price, NOW, &next, &retry),
                     MP_ERR_SPENT);
        fresh(&next);
        MP_ASSERT_OK(mp_pw_track_accept(sha, &next, payment(2, 1), tag_a, &price, NOW, &next, &retry));
        CU_ASSERT_EQUAL(retry, 0);
        MP_ASSERT_OK(mp_pw_track_accept(sha, &next, payment(2, 1), tag_a2, &price, NOW, &next, &retry));
        CU_ASSERT_EQUAL(retry, 1);
        MP_ASSERT_ST(mp_pw_track_accept(sha, &next, payment(2, 1), tag_b, &price, NOW, &next, &retry),
                     MP_ERR_SPENT);
    }

    /* expiry is checked before the index, the index before the price */
    price = price_of(7);
    refused(&t, payment(N + 1, 1), &price, commit.expiry, MP_ERR_EXPIRED);
    refused(&t, payment(N + 1, 1), &price, NOW, MP_ERR_EXHAUSTED);

    price = price_of(3);
    refused(&t, payment(6, 2), &price, NOW, MP_ERR_INSUFFICIENT);
    price = price_of(1);
    refused(&t, payment(6, 2), &price, NOW, MP_ERR_PRICE);
    MP_ASSERT_OK(mp_amount_set(&eur, 200, "EUR"));
    refused(&t, payment(6, 2), &eur, NOW, MP_ERR_INSUFFICIENT);
    MP_ASSERT_OK(mp_amount_set(&eur, 1, "EUR"));
    refused(&t, payment(6, 2), &eur, NOW, MP_ERR_INSUFFICIENT);
    /* the price check comes before placement and the word */
    price = price_of(1);
    p = payment(3, 2);
    refused(&t, p, &price, NOW, MP_ERR_PRICE);
    p = payment(9, 3);
    p->w[0] ^= 1;
    price = price_of(4);
    refused(&t, p, &price, NOW, MP_ERR_INSUFFICIENT);
    price = price_of(3);
    refused(&t, p, &price, NOW, MP_ERR_FORGED);

    /* caller errors */
    price = price_of(1);
    p = payment(4, 1);
    p->commit_id[0] ^= 1;
    refused(&t, p, &price, NOW, MP_ERR_ARG);
    MP_ASSERT_ST(mp_pw_track_accept(NULL, &t, payment(4, 1), t_tag0, &price, NOW, &next, &retry), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pw_track_accept(sha, &t, payment(4, 1), t_tag0, NULL, NOW, &next, &retry), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pw_track_accept(sha, &t, payment(4, 1), t_tag0, &price, NOW, NULL, &retry), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pw_track_accept(sha, &t, payment(4, 1), t_tag0, &price, NOW, &next, NULL), MP_ERR_ARG);
    next = t;
    next.last = N + 1;                      /* a corrupt tracker */
    refused(&next, payment(4, 1), &price, NOW, MP_ERR_ARG);
    next = t;
    next.ngaps = MP_PW_GAPS_MAX + 1;
    refused(&next, payment(4, 1), &price, NOW, MP_ERR_ARG);
}

/* Only the last MP_PW_RECENT_MAX payments are remembered; an older one sent
 * again is spent, never accepted twice. */
static void test_recent_window(void)
{
    mp_pw_track t;
    int retry = -1;
    uint32_t i;

    fresh(&t);
    for (i = 1; i <= MP_PW_RECENT_MAX + 5; i++)
        MP_ASSERT_OK(pay(&t, i, 1, &retry));
    CU_ASSERT_EQUAL(t.nrecent, MP_PW_RECENT_MAX);
    CU_ASSERT_EQUAL(t.recent[0].i, 6);
    CU_ASSERT_EQUAL(t.recent[MP_PW_RECENT_MAX - 1].i, MP_PW_RECENT_MAX + 5);
    for (i = 1; i <= 5; i++)
        refused_pay(&t, i, 1, MP_ERR_SPENT);
    for (i = 6; i <= MP_PW_RECENT_MAX + 5; i++) {
        MP_ASSERT_OK(pay(&t, i, 1, &retry));
        CU_ASSERT_EQUAL(retry, 1);
    }
    CU_ASSERT_EQUAL(t.version, MP_PW_RECENT_MAX + 5);
}

/* Gap overflow: with 65 gaps the lowest (the oldest) is forfeited. */
static void test_gap_overflow(void)
{
    static uint8_t enc[MP_PW_TRACK_MAX + 1];
    static mp_pw_track t, back;
    int retry = -1;
    uint32_t j;
    size_t len = 0;

    /* Upwards: every other word leaves a one-word gap below it. */
    fresh(&t);
    for (j = 1; j <= MP_PW_GAPS_MAX; j++)
        MP_ASSERT_OK(pay(&t, 2 * j, 1, &retry));
    CU_ASSERT_EQUAL(t.ngaps, MP_PW_GAPS_MAX);
    CU_ASSERT_EQUAL(t.gaps[0].a, 0);
    CU_ASSERT_EQUAL(t.gaps[0].b, 1);
    MP_ASSERT_OK(pay(&t, 2 * MP_PW_GAPS_MAX + 2, 1, &retry));
    CU_ASSERT_EQUAL(t.ngaps, MP_PW_GAPS_MAX);
    CU_ASSERT_EQUAL(t.gaps[0].a, 2);       /* (0,1] is gone */
    CU_ASSERT_EQUAL(t.gaps[MP_PW_GAPS_MAX - 1].a, 2 * MP_PW_GAPS_MAX);
    refused_pay(&t, 1, 1, MP_ERR_SPENT);
    MP_ASSERT_OK(pay(&t, 3, 1, &retry));   /* the next gap still pays */
    CU_ASSERT_EQUAL(t.ngaps, MP_PW_GAPS_MAX - 1);
    CU_ASSERT_EQUAL(t.units_paid, MP_PW_GAPS_MAX + 2);

    /* Downwards: w_131 first, then every other word from the top splits the
     * lowest gap; the 64th split makes 65 gaps and forfeits (0,2]. */
    fresh(&t);
    MP_ASSERT_OK(pay(&t, 131, 1, &retry));
    CU_ASSERT_EQUAL(t.ngaps, 1);
    for (j = 1; j <= MP_PW_GAPS_MAX; j++) {
        MP_ASSERT_OK(pay(&t, 131 - 2 * j, 1, &retry));
        CU_ASSERT_EQUAL(t.ngaps, j < MP_PW_GAPS_MAX ? j + 1 : MP_PW_GAPS_MAX);
    }
    CU_ASSERT_EQUAL(t.gaps[0].a, 3);
    CU_ASSERT_EQUAL(t.gaps[0].b, 4);
    CU_ASSERT_EQUAL(t.gaps[MP_PW_GAPS_MAX - 1].a, 129);
    refused_pay(&t, 2, 1, MP_ERR_SPENT);
    refused_pay(&t, 1, 1, MP_ERR_SPENT);
    refused_pay(&t, 2, 2, MP_ERR_SPENT);
    MP_ASSERT_OK(pay(&t, 4, 1, &retry));
    MP_ASSERT_OK(pay(&t, 130, 1, &retry));
    CU_ASSERT_EQUAL(t.ngaps, MP_PW_GAPS_MAX - 2);

    /* the largest record there is: full gap and recent lists */
    MP_ASSERT_OK(pay(&t, 133, 1, &retry));
    MP_ASSERT_OK(pay(&t, 135, 1, &retry));
    CU_ASSERT_EQUAL(t.ngaps, MP_PW_GAPS_MAX);
    CU_ASSERT_EQUAL(t.nrecent, MP_PW_RECENT_MAX);
    MP_ASSERT_OK(mp_pw_track_encode(&t, enc, sizeof enc, &len));
    /* the maximum allows a 64-byte vendor name; this one is shorter */
    CU_ASSERT_EQUAL(len, MP_PW_TRACK_MAX - (MP_NAME_MAX - strlen(t.vendor)));
    MP_ASSERT_OK(mp_pw_track_decode(enc, len, &back));
    CU_ASSERT(memcmp(&back, &t, sizeof t) == 0);
}

/*
 * Property: a wallet hands out consecutive intervals of 1..3 words, up to W
 * of them outstanding at once; they arrive in random order, mixed with
 * exact resends of accepted payments, overlapping replays and forged
 * words. Every interval is accepted exactly once, a resend is a retry while
 * remembered and spent after, and the state always equals the model.
 */
static void test_random_order(void)
{
    static mp_pw_track t, before, next;
    static uint8_t enc[MP_PW_TRACK_MAX];
    static mp_pw_track back;
    uint64_t rng = 0x7061797761726421ULL;
    uint32_t lo_of[N + 1], hi_of[N + 1];       /* intervals by number */
    uint32_t pending[N], hist[N], nint, npend, nhist, handed, m, w_max, r;
    uint8_t acc[N + 1];
    uint64_t paid, checks = 0, retries = 0, spent = 0, forged = 0;
    mp_amount price;
    mp_pw_payment *p;
    mp_status st;
    int retry, round;
    size_t len = 0;
    uint32_t j;

    for (round = 0; round < 60; round++) {
        /* the wallet's intervals */
        for (nint = 0, m = 0; m < N; nint++) {
            r = 1 + (uint32_t)(t_rand(&rng) % 3);
            if (r > N - m)
                r = N - m;
            lo_of[nint] = m;
            hi_of[nint] = m + r;
            m += r;
        }
        w_max = 1 + (uint32_t)(t_rand(&rng) % 40);   /* < 64: nothing forfeited */
        fresh(&t);
        memset(acc, 0, sizeof acc);
        npend = nhist = handed = 0;
        paid = 0;
        while (handed < nint || npend > 0) {
            while (npend < w_max && handed < nint)
                pending[npend++] = handed++;
            r = (uint32_t)(t_rand(&rng) % 10);
            if (r < 2 && nhist > 0) {
                /* an exact resend of an accepted payment */
                m = (uint32_t)(t_rand(&rng) % nhist);
                j = hist[m];
                price = price_of(hi_of[j] - lo_of[j]);
                before = t;
                st = mp_pw_track_accept(sha, &t, payment(hi_of[j], hi_of[j] - lo_of[j]), t_tag0,
                                        &price, NOW, &next, &retry);
                if (nhist - m <= MP_PW_RECENT_MAX) {
                    MP_ASSERT_OK(st);
                    CU_ASSERT_EQUAL(retry, 1);
                    CU_ASSERT(memcmp(&next, &before, sizeof next) == 0);
                    retries++;
                } else {
                    MP_ASSERT_ST(st, MP_ERR_SPENT);
                    spent++;
                }
                continue;
            }
            if (r == 2 && nhist > 0) {
                /* the same top word with another k overlaps accepted words */
                j = hist[t_rand(&rng) % nhist];
                m = 1 + (uint32_t)(t_rand(&rng) % 4);
                if (m == hi_of[j] - lo_of[j] || m > hi_of[j])
                    continue;
                refused_pay(&t, hi_of[j], m, MP_ERR_SPENT);
                spent++;
                continue;
            }
            m = (uint32_t)(t_rand(&rng) % npend);
            j = pending[m];
            if (r == 3) {
                /* a forged word for a pending interval changes nothing */
                p = payment(hi_of[j], hi_of[j] - lo_of[j]);
                p->w[t_rand(&rng) % MP_HASH_LEN] ^= (uint8_t)(1u << (t_rand(&rng) % 8));
                price = price_of(hi_of[j] - lo_of[j]);
                refused(&t, p, &price, NOW, MP_ERR_FORGED);
                forged++;
                continue;
            }
            MP_ASSERT_OK(pay(&t, hi_of[j], hi_of[j] - lo_of[j], &retry));
            CU_ASSERT_EQUAL(retry, 0);
            for (r = lo_of[j] + 1; r <= hi_of[j]; r++) {
                CU_ASSERT_EQUAL(acc[r], 0);        /* never a word twice */
                acc[r] = 1;
            }
            paid += hi_of[j] - lo_of[j];
            hist[nhist++] = j;
            pending[m] = pending[--npend];
            CU_ASSERT_EQUAL(t.units_paid, paid);
            CU_ASSERT_EQUAL(t.version, nhist);
            m = 0;
            for (r = 1; r <= N; r++)
                if (acc[r])
                    m = r;
            CU_ASSERT(matches_model(&t, acc, m));
            checks++;
            /* the storage record holds every intermediate state exactly */
            if (nhist % 7 == 0) {
                MP_ASSERT_OK(mp_pw_track_encode(&t, enc, sizeof enc, &len));
                MP_ASSERT_OK(mp_pw_track_decode(enc, len, &back));
                CU_ASSERT(memcmp(&back, &t, sizeof t) == 0);
            }
        }
        CU_ASSERT_EQUAL(nhist, nint);
        CU_ASSERT_EQUAL(t.last, N);
        CU_ASSERT_EQUAL(t.units_paid, N);
        CU_ASSERT_EQUAL(t.ngaps, 0);
    }
    CU_ASSERT(retries > 0 && spent > 0 && forged > 0);
    printf("\n    %lu payments, %lu retries, %lu spent, %lu forged",
           (unsigned long)checks, (unsigned long)retries, (unsigned long)spent,
           (unsigned long)forged);
}

/* ---- storage record ----------------------------------------------------------- */

/* Offsets in the record of the state built by build_small(). */
#define OFF_N       34
#define OFF_UNITS   41
#define OFF_LAST    65
#define OFF_NGAPS   109
#define OFF_GAP(g)  (110 + 40 * (g))
#define OFF_NRECENT OFF_GAP(2)
#define OFF_REC(r)  (OFF_NRECENT + 1 + (40 + MP_PW_TAG_LEN) * (r))

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* l = 10, gaps (0,4] and (5,9], recent (10,1), (5,1). */
static void build_small(mp_pw_track *t)
{
    int retry;

    fresh(t);
    MP_ASSERT_OK(pay(t, 10, 1, &retry));
    MP_ASSERT_OK(pay(t, 5, 1, &retry));
}

static void expect_decode(const uint8_t *in, size_t len, mp_status want)
{
    static mp_pw_track out, sentinel;

    memset(&out, 0x3c, sizeof out);
    memcpy(&sentinel, &out, sizeof out);
    MP_ASSERT_ST(mp_pw_track_decode(in, len, &out), want);
    if (want != MP_OK)
        CU_ASSERT(memcmp(&out, &sentinel, sizeof out) == 0);
}

static void test_record(void)
{
    static uint8_t enc[MP_PW_TRACK_MAX + 1], ed[MP_PW_TRACK_MAX + 1];
    static mp_pw_track t, back, bad;
    size_t len = 0, cut, len2 = 0;

    build_small(&t);
    CU_ASSERT_EQUAL(t.ngaps, 2);
    CU_ASSERT_EQUAL(t.nrecent, 2);
    MP_ASSERT_OK(mp_pw_track_encode(&t, enc, sizeof enc, &len));
    CU_ASSERT_STRING_EQUAL(t.vendor, commit.vendor);
    CU_ASSERT_EQUAL(len, OFF_REC(2) + 1 + strlen(t.vendor));
    CU_ASSERT_EQUAL(enc[0], MP_WIRE_VERSION);
    CU_ASSERT_EQUAL(enc[1], MP_T_PW_TRACK);
    CU_ASSERT_EQUAL(enc[OFF_NGAPS], 2);
    CU_ASSERT_EQUAL(enc[OFF_NRECENT], 2);
    MP_ASSERT_OK(mp_pw_track_decode(enc, len, &back));
    CU_ASSERT(memcmp(&back, &t, sizeof t) == 0);
    MP_ASSERT_OK(mp_pw_track_encode(&back, ed, sizeof ed, &len2));
    CU_ASSERT(len2 == len && memcmp(ed, enc, len) == 0);

    /* a fresh tracker: no gaps, no recent payments */
    fresh(&bad);
    MP_ASSERT_OK(mp_pw_track_encode(&bad, ed, sizeof ed, &len2));
    CU_ASSERT_EQUAL(len2, OFF_GAP(0) + 1 + 1 + strlen(bad.vendor));
    MP_ASSERT_OK(mp_pw_track_decode(ed, len2, &back));
    CU_ASSERT(memcmp(&back, &bad, sizeof bad) == 0);

    /* encoder refusals */
    MP_ASSERT_ST(mp_pw_track_encode(&t, ed, len - 1, &len2), MP_ERR_BUFFER);
    MP_ASSERT_ST(mp_pw_track_encode(NULL, ed, sizeof ed, &len2), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pw_track_encode(&t, NULL, sizeof ed, &len2), MP_ERR_ARG);
    bad = t;
    bad.gaps[1].b = 11;                     /* above l */
    MP_ASSERT_ST(mp_pw_track_encode(&bad, ed, sizeof ed, &len2), MP_ERR_ARG);
    bad = t;
    bad.nrecent = MP_PW_RECENT_MAX + 1;
    MP_ASSERT_ST(mp_pw_track_encode(&bad, ed, sizeof ed, &len2), MP_ERR_ARG);
    bad = t;
    bad.unit.units = 0;
    MP_ASSERT_ST(mp_pw_track_encode(&bad, ed, sizeof ed, &len2), MP_ERR_ARG);
    bad = t;
    bad.vendor[0] = '\0';
    MP_ASSERT_ST(mp_pw_track_encode(&bad, ed, sizeof ed, &len2), MP_ERR_ARG);

    /* every truncation, a trailing byte, header */
    for (cut = 0; cut < len; cut++)
        expect_decode(enc, cut, MP_ERR_TRUNCATED);
    memcpy(ed, enc, len);
    ed[len] = 0;
    expect_decode(ed, len + 1, MP_ERR_TRAILING);
    ed[0] = 2;
    expect_decode(ed, len, MP_ERR_VERSION);
    ed[0] = MP_WIRE_VERSION;
    ed[1] = MP_T_PW_PAYMENT;
    expect_decode(ed, len, MP_ERR_TYPE);
    MP_ASSERT_ST(mp_pw_track_decode(NULL, len, &back), MP_ERR_ARG);
    MP_ASSERT_ST(mp_pw_track_decode(enc, len, NULL), MP_ERR_ARG);

#define EDIT(stmt, want) do { memcpy(ed, enc, len); stmt; expect_decode(ed, len, want); } while (0)
    EDIT((void)0, MP_OK);
    EDIT(put32(ed + OFF_N, 0), MP_ERR_MALFORMED);
    EDIT(put32(ed + OFF_N, MP_CHAIN_MAX + 1), MP_ERR_MALFORMED);
    EDIT(put32(ed + OFF_N, 9), MP_ERR_MALFORMED);             /* l = 10 > n */
    EDIT(put32(ed + OFF_N, 10), MP_OK);
    EDIT(put32(ed + OFF_N, MP_CHAIN_MAX), MP_OK);
    EDIT(put32(ed + OFF_UNITS + 4, 0), MP_ERR_MALFORMED);      /* unit 0 */
    EDIT(ed[OFF_UNITS - 1] = 'd', MP_ERR_CURRENCY);
    EDIT(put32(ed + OFF_LAST, N + 1), MP_ERR_MALFORMED);
    EDIT(put32(ed + OFF_LAST, 8), MP_ERR_MALFORMED);          /* below a gap's top */
    EDIT(ed[OFF_NGAPS] = MP_PW_GAPS_MAX + 1, MP_ERR_MALFORMED);
    EDIT(ed[OFF_NGAPS] = 0xff, MP_ERR_MALFORMED);
    EDIT(put32(ed + OFF_GAP(0), 4), MP_ERR_MALFORMED);         /* a = b */
    EDIT(put32(ed + OFF_GAP(0), 5), MP_ERR_MALFORMED);         /* a > b */
    EDIT(put32(ed + OFF_GAP(1) + 4, 11), MP_ERR_MALFORMED);    /* b > l */
    EDIT(put32(ed + OFF_GAP(1) + 4, 10), MP_OK);               /* b = l is allowed */
    EDIT(put32(ed + OFF_GAP(1), 3), MP_ERR_MALFORMED);         /* overlaps (0,4] */
    EDIT((put32(ed + OFF_GAP(1), 4)), MP_OK);                  /* adjoins: disjoint */
    EDIT((put32(ed + OFF_GAP(0), 5), put32(ed + OFF_GAP(0) + 4, 9),
          put32(ed + OFF_GAP(1), 0), put32(ed + OFF_GAP(1) + 4, 4)),
         MP_ERR_MALFORMED);                                     /* descending */
    EDIT(ed[OFF_NRECENT] = MP_PW_RECENT_MAX + 1, MP_ERR_MALFORMED);
    EDIT(ed[OFF_NRECENT] = 3, MP_ERR_TRUNCATED);
    EDIT(ed[OFF_NRECENT] = 1, MP_ERR_MALFORMED);       /* recent 2 read as the vendor */
    EDIT(ed[OFF_REC(2)] = 0, MP_ERR_MALFORMED);         /* empty vendor */
    EDIT(ed[OFF_REC(2) + 1] = ' ', MP_ERR_CHARSET);
    EDIT(put32(ed + OFF_REC(0), 11), MP_ERR_MALFORMED);        /* i > l */
    EDIT(put32(ed + OFF_REC(1) + 4, 0), MP_ERR_MALFORMED);     /* k = 0 */
    EDIT(put32(ed + OFF_REC(1) + 4, 6), MP_ERR_MALFORMED);     /* k > i */
    EDIT(put32(ed + OFF_REC(1) + 4, 5), MP_OK);                /* k = i */
#undef EDIT
}

int register_pwtrack_tests(void)
{
    static const struct {
        const char *name;
        CU_TestFunc fn;
    } tests[] = {
        { "init", test_init },
        { "in order, skips, overlaps", test_in_order },
        { "out of order arrival", test_out_of_order },
        { "gap splits", test_split },
        { "forged words", test_forged },
        { "expiry, exhaustion, price", test_limits_and_price },
        { "retry window", test_recent_window },
        { "gap overflow forfeits the lowest", test_gap_overflow },
        { "randomized arrival order", test_random_order },
        { "storage record", test_record },
    };
    CU_pSuite s = CU_add_suite("pwtrack", setup, teardown);
    size_t i;

    if (s == NULL)
        return -1;
    for (i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (CU_add_test(s, tests[i].name, tests[i].fn) == NULL)
            return -1;
    return 0;
}
