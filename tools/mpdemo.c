/*
 * mpdemo - shows libmp at work without a web server.
 *
 *   mpdemo millicent      a vendor mints scrip, a customer pays for a
 *                         request with it, the vendor validates it and
 *                         returns change; a replay with a forged request
 *                         and a spend at another vendor are refused
 *   mpdemo payword        a broker certifies a user, the user commits a
 *                         hash chain to a vendor and pays word by word, the
 *                         vendor verifies, the broker checks the redemption
 *   mpdemo decode TEXT    prints any record given in its base64url form
 *
 * Exit codes: 0 success, 1 a check that should pass failed (or a decode
 * error), 2 usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mp.h"

#define CHECK(what, expr) do { \
        mp_status st_ = (expr); \
        if (st_ != MP_OK) { \
            fprintf(stderr, "mpdemo: %s: %s\n", (what), mp_strerror(st_)); \
            goto done; \
        } \
    } while (0)

static uint8_t wire[MP_WIRE_MAX];
static char text[MP_WIRE_TEXT_MAX + 1];

static const char *as_text(const uint8_t *bin, size_t len)
{
    if (mp_b64url_encode(bin, len, text, sizeof text, NULL) != MP_OK)
        return "(unencodable)";
    return text;
}

static const char *fmt(const mp_amount *a, char buf[MP_AMOUNT_STRMAX])
{
    if (mp_amount_format(a, buf, MP_AMOUNT_STRMAX) != MP_OK)
        return "(invalid)";
    return buf;
}

static void hex(const char *label, const uint8_t *p, size_t n)
{
    size_t i;

    printf("  %-14s ", label);
    for (i = 0; i < n; i++)
        printf("%02x", p[i]);
    printf("\n");
}

static void print_scrip(const char *title, const mp_scrip *s)
{
    char a[MP_AMOUNT_STRMAX];

    printf("%s\n  vendor         %s\n  value          %s\n  id             %llu (series %u)\n"
           "  customer id    %llu\n  expiry         %llu\n  properties     %s\n",
           title, s->vendor, fmt(&s->value, a), (unsigned long long)s->id, MP_SERIES(s->id),
           (unsigned long long)s->customer_id, (unsigned long long)s->expiry, s->props);
    hex("stamp", s->stamp, MP_HASH_LEN);
}

static int demo_millicent(void)
{
    const uint64_t now = 1800000000ULL, expiry = now + 86400;
    const uint64_t series = (uint64_t)1 << 48;
    uint8_t scrip_secret[MP_SECRET_LEN], customer_master[MP_SECRET_LEN];
    uint8_t csecret[MP_HASH_LEN];
    mp_mc_issuer *vendor = NULL, *other = NULL;
    mp_mac *mac = NULL;
    mp_amount value, price;
    mp_scrip scrip;
    mp_mc_payment pay, forged;
    mp_mc_reply reply;
    mp_request req = { "GET", 3, "news.example", 12, "/2026/11/article.html", 21, NULL };
    mp_request other_req = { "GET", 3, "news.example", 12, "/2026/11/other.html", 19, NULL };
    size_t len;
    char a[MP_AMOUNT_STRMAX], b[MP_AMOUNT_STRMAX], c[MP_AMOUNT_STRMAX];
    mp_status st;
    int rc = 1;

    CHECK("random", mp_random(scrip_secret, sizeof scrip_secret));
    CHECK("random", mp_random(customer_master, sizeof customer_master));
    CHECK("vendor", mp_mc_issuer_new("news.example", &vendor));
    CHECK("vendor", mp_mc_issuer_add_scrip_secret(vendor, 1, scrip_secret, sizeof scrip_secret, 0));
    CHECK("vendor", mp_mc_issuer_add_customer_secret(vendor, 1, customer_master, sizeof customer_master));
    CHECK("mac", mp_mac_new(scrip_secret, sizeof scrip_secret, &mac));
    CHECK("amount", mp_amount_parse("0.01 USD", 8, &value));
    CHECK("amount", mp_amount_parse("0.002 USD", 9, &price));

    printf("== Millicent\n");
    CHECK("mint", mp_mc_mint(vendor, &value, series | 1, series | 7, expiry, "co=us", &scrip));
    print_scrip("vendor mints scrip (via its broker) for customer 7:", &scrip);
    CHECK("encode", mp_scrip_encode(&scrip, wire, sizeof wire, &len));
    printf("  wire (%zu B)    %s\n", len, as_text(wire, len));

    CHECK("customer secret", mp_mc_customer_secret(vendor, scrip.customer_id, csecret));
    printf("customer pays %s for %.*s %.*s%.*s with a request signature\n",
           fmt(&price, a), (int)req.method_len, req.method, (int)req.host_len, req.host,
           (int)req.target_len, req.target);
    CHECK("pay", mp_mc_pay(mac, &scrip, csecret, &req, &price, &pay));
    CHECK("encode", mp_mc_payment_encode(&pay, wire, sizeof wire, &len));
    printf("  Authorization: Payment %s\n", as_text(wire, len));

    CHECK("decode", mp_mc_payment_decode(wire, len, &pay));
    CHECK("vendor validates", mp_mc_accept(vendor, mac, &pay, &req, &price, now, series | 2, &reply));
    printf("vendor: payment VALID, charged %s\n", fmt(&reply.charged, a));
    print_scrip("  change scrip returned:", &reply.change);
    CHECK("customer checks reply", mp_mc_reply_check(mac, &reply, &pay, csecret));
    CHECK("encode", mp_mc_reply_encode(&reply, wire, sizeof wire, &len));
    printf("  Payment-Change: %s\n", as_text(wire, len));
    printf("customer: reply VALID (stamped with its customer secret), change %s = %s - %s\n",
           fmt(&reply.change.value, a), fmt(&scrip.value, b), fmt(&price, c));

    /* Refusals that matter: a request signature moved to another URL, scrip at another vendor. */
    forged = pay;
    st = mp_mc_accept(vendor, mac, &forged, &other_req, &price, now, series | 3, &reply);
    printf("same payment replayed for %.*s: %s (%s)\n", (int)other_req.target_len,
           other_req.target, st == MP_OK ? "ACCEPTED" : "refused", mp_reason(st));
    if (st == MP_OK)
        goto done;
    CHECK("other vendor", mp_mc_issuer_new("shop.example", &other));
    CHECK("other vendor", mp_mc_issuer_add_scrip_secret(other, 1, customer_master, sizeof customer_master, 0));
    CHECK("other vendor", mp_mc_issuer_add_customer_secret(other, 1, scrip_secret, sizeof scrip_secret));
    st = mp_mc_accept(other, mac, &pay, &req, &price, now, series | 3, &reply);
    printf("scrip spent at shop.example: %s (%s)\n", st == MP_OK ? "ACCEPTED" : "refused", mp_reason(st));
    if (st == MP_OK)
        goto done;
    st = mp_mc_accept(vendor, mac, &pay, &req, &price, expiry, series | 3, &reply);
    printf("scrip spent after its expiry: %s (%s)\n", st == MP_OK ? "ACCEPTED" : "refused", mp_reason(st));
    if (st == MP_OK)
        goto done;
    rc = 0;
done:
    mp_wipe(scrip_secret, sizeof scrip_secret);
    mp_wipe(customer_master, sizeof customer_master);
    mp_wipe(csecret, sizeof csecret);
    mp_mc_issuer_free(vendor);
    mp_mc_issuer_free(other);
    mp_mac_free(mac);
    return rc;
}

static int demo_payword(void)
{
    static mp_pw_cert cert;
    static mp_pw_commit commit;
    static mp_pw_payment pay;
    static mp_pw_redeem red;
    static mp_pw_trust trust;
    const uint64_t now = 1800000000ULL;
    const uint32_t n = 1000;
    mp_signer *broker = NULL, *user = NULL;
    mp_chain *chain = NULL;
    mp_sha *sha = NULL;
    mp_pw_state state, next;
    uint8_t wn[MP_HASH_LEN];
    mp_amount value;
    size_t len;
    uint32_t i, k;
    char a[MP_AMOUNT_STRMAX];
    mp_status st;
    int rc = 1, step;

    CHECK("broker key", mp_signer_generate(&broker));
    CHECK("user key", mp_signer_generate(&user));
    CHECK("sha", mp_sha_new(&sha));

    printf("== PayWord\n");
    strcpy(cert.broker, "broker.example");
    strcpy(cert.user, "alice");
    CHECK("user key", mp_signer_pubkey(user, &cert.user_key));
    cert.expiry = now + 30 * 86400;
    CHECK("amount", mp_amount_parse("10 USD", 6, &cert.credit_limit));
    cert.serial = 1;
    CHECK("broker certifies", mp_pw_cert_sign(&cert, broker));
    printf("broker certifies alice: credit limit %s, expiry %llu, serial %llu (%u B)\n",
           fmt(&cert.credit_limit, a), (unsigned long long)cert.expiry,
           (unsigned long long)cert.serial, cert.enc_len);

    CHECK("random", mp_random(wn, sizeof wn));
    CHECK("chain", mp_chain_new(wn, n, &chain));
    strcpy(commit.vendor, "news.example");
    commit.cert = cert;
    mp_chain_w0(chain, commit.w0);
    commit.date = now;
    commit.expiry = now + 86400;
    CHECK("amount", mp_amount_parse("0.001 USD", 9, &commit.unit));
    commit.n = n;
    CHECK("user commits", mp_pw_commit_sign(&commit, user));
    printf("alice commits a chain of %u words of %s to news.example (chain memory %zu B)\n",
           n, fmt(&commit.unit, a), mp_chain_memory(chain));
    hex("w0", commit.w0, MP_HASH_LEN);
    hex("commitment id", commit.id, MP_HASH_LEN);

    trust.n = 1;
    strcpy(trust.b[0].name, "broker.example");
    CHECK("broker key", mp_signer_pubkey(broker, &trust.b[0].key));
    CHECK("vendor checks commitment", mp_pw_commit_verify(&commit, &trust, "news.example", now));
    CHECK("state", mp_pw_state_init(&commit, &state));
    printf("vendor: commitment VALID (broker and user signatures)\n");

    /* three payments: 1 word with the commitment, then 1 word, then 5 at once */
    for (step = 0; step < 3; step++) {
        k = step == 2 ? 5 : 1;
        for (i = 0; i < k; i++)
            CHECK("chain", mp_chain_next(chain, &pay.i, pay.w));
        memcpy(pay.commit_id, commit.id, MP_HASH_LEN);
        pay.k = k;
        pay.has_commit = step == 0;
        if (pay.has_commit)
            pay.commit = commit;
        CHECK("encode", mp_pw_payment_encode(&pay, wire, sizeof wire, &len));
        CHECK("decode", mp_pw_payment_decode(wire, len, &pay));
        CHECK("vendor accepts", mp_pw_accept(sha, &state, &pay, &next));
        state = next;
        printf("pays word %u (%u unit%s, %zu B on the wire): VALID, %u hash%s\n", pay.i, k,
               k > 1 ? "s" : "", len, pay.k, pay.k > 1 ? "es" : "");
    }
    st = mp_pw_accept(sha, &state, &pay, &next);
    printf("the last payment replayed: %s (%s)\n", st == MP_OK ? "ACCEPTED" : "refused", mp_reason(st));
    if (st == MP_OK)
        goto done;

    red.commit = commit;
    red.last = state.last;
    memcpy(red.w_last, state.w_last, MP_HASH_LEN);
    CHECK("encode", mp_pw_redeem_encode(&red, wire, sizeof wire, &len));
    CHECK("decode", mp_pw_redeem_decode(wire, len, &red));
    CHECK("broker verifies redemption", mp_pw_redeem_verify(sha, &red, &trust, &value));
    printf("broker: redemption of words 1..%u VALID, vendor is owed %s\n", red.last, fmt(&value, a));
    rc = 0;
done:
    mp_wipe(wn, sizeof wn);
    mp_chain_free(chain);
    mp_sha_free(sha);
    mp_signer_free(broker);
    mp_signer_free(user);
    return rc;
}

static int decode(const char *t)
{
    static union {
        mp_scrip s; mp_mc_payment mp; mp_mc_reply mr; mp_pw_cert c; mp_pw_commit cm;
        mp_pw_payment p; mp_pw_redeem r; mp_receipt rc; mp_offer o;
    } u;
    char a[MP_AMOUNT_STRMAX];
    size_t len;
    uint8_t type;
    mp_status st;

    st = mp_b64url_decode(t, strlen(t), wire, sizeof wire, &len);
    if (st == MP_OK)
        st = mp_wire_peek_type(wire, len, &type);
    if (st != MP_OK)
        goto fail;
    switch (type) {
    case MP_T_SCRIP:
        if ((st = mp_scrip_decode(wire, len, &u.s)) != MP_OK) goto fail;
        print_scrip("scrip", &u.s);
        break;
    case MP_T_MC_PAYMENT:
        if ((st = mp_mc_payment_decode(wire, len, &u.mp)) != MP_OK) goto fail;
        print_scrip("Millicent payment, scrip:", &u.mp.scrip);
        printf("  price          %s\n", fmt(&u.mp.price, a));
        hex("req_sig", u.mp.req_sig, MP_HASH_LEN);
        break;
    case MP_T_MC_REPLY:
        if ((st = mp_mc_reply_decode(wire, len, &u.mr)) != MP_OK) goto fail;
        printf("Millicent reply\n  charged        %s\n", fmt(&u.mr.charged, a));
        if (u.mr.has_change)
            print_scrip("  change:", &u.mr.change);
        break;
    case MP_T_PW_CERT:
        if ((st = mp_pw_cert_decode(wire, len, &u.c)) != MP_OK) goto fail;
        printf("PayWord certificate\n  broker         %s\n  user           %s\n  expiry         %llu\n"
               "  credit limit   %s\n  serial         %llu\n", u.c.broker, u.c.user,
               (unsigned long long)u.c.expiry, fmt(&u.c.credit_limit, a), (unsigned long long)u.c.serial);
        break;
    case MP_T_PW_COMMIT:
        if ((st = mp_pw_commit_decode(wire, len, &u.cm)) != MP_OK) goto fail;
        printf("PayWord commitment\n  vendor         %s\n  user           %s (cert by %s)\n"
               "  unit           %s\n  n              %u\n  date, expiry   %llu, %llu\n",
               u.cm.vendor, u.cm.cert.user, u.cm.cert.broker, fmt(&u.cm.unit, a), u.cm.n,
               (unsigned long long)u.cm.date, (unsigned long long)u.cm.expiry);
        hex("w0", u.cm.w0, MP_HASH_LEN);
        hex("id", u.cm.id, MP_HASH_LEN);
        break;
    case MP_T_PW_PAYMENT:
        if ((st = mp_pw_payment_decode(wire, len, &u.p)) != MP_OK) goto fail;
        printf("PayWord payment\n  i, k           %u, %u\n  commitment     %s\n", u.p.i, u.p.k,
               u.p.has_commit ? "included" : "by id");
        hex("commitment id", u.p.commit_id, MP_HASH_LEN);
        hex("w_i", u.p.w, MP_HASH_LEN);
        break;
    case MP_T_PW_REDEEM:
        if ((st = mp_pw_redeem_decode(wire, len, &u.r)) != MP_OK) goto fail;
        printf("PayWord redemption\n  vendor         %s\n  last           %u\n", u.r.commit.vendor, u.r.last);
        break;
    case MP_T_RECEIPT:
        if ((st = mp_receipt_decode(wire, len, &u.rc)) != MP_OK) goto fail;
        printf("receipt\n  vendor         %s\n  target         %s\n  price          %s\n  expiry         %llu\n",
               u.rc.vendor, u.rc.target, fmt(&u.rc.price, a), (unsigned long long)u.rc.expiry);
        break;
    case MP_T_OFFER:
        if ((st = mp_offer_decode(wire, len, &u.o)) != MP_OK) goto fail;
        printf("offer\n  vendor         %s\n  %s %s\n  price          %s\n", u.o.vendor,
               u.o.method, u.o.target, fmt(&u.o.price, a));
        break;
    default:
        st = MP_ERR_TYPE;
        goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "mpdemo: cannot decode: %s (%s)\n", mp_strerror(st), mp_reason(st));
    return 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: mpdemo millicent | payword | decode TEXT\n"
               "  millicent    mint scrip, pay with a request signature, validate, get change\n"
               "  payword      certify, commit a hash chain, pay word by word, redeem\n"
               "  decode TEXT  print a base64url record of docs/PROTOCOL.md\n");
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "millicent") == 0)
        return demo_millicent();
    if (argc == 2 && strcmp(argv[1], "payword") == 0)
        return demo_payword();
    if (argc == 3 && strcmp(argv[1], "decode") == 0)
        return decode(argv[2]);
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
