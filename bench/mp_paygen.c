/*
 * mp_paygen - writes fresh, valid payment credentials for a benchmark
 * (bench/paid_vs_free.sh): one base64url record per line, to be sent as
 * "Authorization: Payment <line>" by bench/wrk_tokens.lua.
 *
 *   mp_paygen millicent SECRETS_FILE VENDOR HOST TARGET PRICE N FIRST_ID
 *       Mints N scrip with the vendor's own secrets (value = PRICE, so no
 *       change), ids (S << 48) | FIRST_ID, ... where S is the newest scrip
 *       series of the file (1 for a file from "mpadmin keys vendor"), for
 *       MC_CUSTOMERS customers (round-robin), and signs GET HOST TARGET
 *       with each customer's secret. Runs never reuse ids if each run
 *       starts at the previous FIRST_ID + N.
 *
 *   mp_paygen payword BROKER_KEY_PEM VENDOR HOST TARGET PRICE UNIT N C SEED [WARMUP_FILE]
 *       Makes C commitments to VENDOR, each by its own user whose Ed25519
 *       key and chain start w_n are derived from SEED (use a new SEED per
 *       run), with a certificate from broker "broker.example" signed with
 *       BROKER_KEY_PEM ("mpadmin keys broker"). k = PRICE / UNIT words per
 *       payment. Each commitment's first payment (words 1..k, commitment
 *       included, so the vendor checks two signatures) goes to WARMUP_FILE;
 *       then N payments go to stdout, token j on commitment j % C, each the
 *       next k words of its chain. Chains have (ceil(N / C) + 1) * k words.
 *       Without WARMUP_FILE the first-contact payments are the first C lines
 *       of stdout (and their signature checks are then part of the run).
 *
 * Everything is made before any request is sent, so the benchmark measures
 * the server only. HOST must be exactly the Host header the client sends
 * (wrk: "127.0.0.1:PORT"); PayWord ignores HOST but takes it for symmetry.
 * Exit codes: 0 success, 1 failure, 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include "mp.h"

#define MC_CUSTOMERS   1024u
#define VALIDITY       86400u          /* scrip, commitment: one day */
#define BROKER_NAME    "broker.example"

static char outbuf[1 << 20];

static int fail(const char *what, mp_status st)
{
    fprintf(stderr, "mp_paygen: %s: %s\n", what, mp_strerror(st));
    return 1;
}

static int usage(void)
{
    fprintf(stderr,
        "usage: mp_paygen millicent SECRETS_FILE VENDOR HOST TARGET PRICE N FIRST_ID\n"
        "       mp_paygen payword BROKER_KEY_PEM VENDOR HOST TARGET PRICE UNIT N COMMITMENTS SEED"
        " [WARMUP_FILE]\n");
    return 2;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Reads a whole (small) file; returns its length or -1. */
static long slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL) {
        fprintf(stderr, "mp_paygen: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    n = fread(buf, 1, cap, f);
    if (ferror(f) || !feof(f)) {
        fprintf(stderr, "mp_paygen: cannot read %s (or larger than %zu bytes)\n", path, cap);
        fclose(f);
        return -1;
    }
    fclose(f);
    return (long)n;
}

/* Writes one record as a base64url line. */
static int put_line(FILE *f, const uint8_t *rec, size_t len)
{
    static char text[MP_WIRE_TEXT_MAX + 2];
    size_t tlen = 0;

    if (mp_b64url_encode(rec, len, text, sizeof text - 1, &tlen) != MP_OK)
        return -1;
    text[tlen++] = '\n';
    return fwrite(text, 1, tlen, f) == tlen ? 0 : -1;
}

static int check_request(const char *vendor, const char *host, const char *target)
{
    size_t vl = strlen(vendor), hl = strlen(host), tl = strlen(target);

    if (vl == 0 || vl > MP_NAME_MAX || hl == 0 || hl > MP_HOST_MAX || tl == 0 || tl > MP_TARGET_MAX
        || target[0] != '/') {
        fprintf(stderr, "mp_paygen: VENDOR, HOST or TARGET empty or too long (TARGET starts with /)\n");
        return -1;
    }
    return 0;
}

/* ---- Millicent ------------------------------------------------------------------- */

static int gen_millicent(int argc, char **argv)
{
    static char text[MP_KEYFILE_MAX + 1];
    static mp_keyfile kf;
    static uint8_t csec[MC_CUSTOMERS][MP_HASH_LEN];
    const char *secrets = argv[0], *vendor = argv[1], *host = argv[2], *target = argv[3];
    mp_mc_issuer *iss = NULL;
    mp_mac *mac = NULL, *receipt = NULL;
    mp_amount price;
    mp_request req;
    mp_scrip scrip;
    mp_mc_payment pay;
    uint8_t rec[MP_WIRE_MAX], dummy[MP_SECRET_LEN];
    uint64_t n, first, j, id_series = 0, cust_series = 0, expiry;
    size_t i, line = 0, len;
    long tlen;
    int have_scrip = 0, have_cust = 0, rc = 1;
    mp_status st;

    if (argc != 7)
        return usage();
    if (check_request(vendor, host, target) != 0)
        return 2;
    if ((st = mp_amount_parse(argv[4], strlen(argv[4]), &price)) != MP_OK)
        return fail("PRICE", st);
    if (parse_u64(argv[5], 1, 100000000, &n) != 0 || parse_u64(argv[6], 1, (1ULL << 48) - 1, &first) != 0
        || first + n - 1 > (1ULL << 48) - 1) {
        fprintf(stderr, "mp_paygen: N must be 1..1e8 and FIRST_ID + N - 1 below 2^48\n");
        return 2;
    }
    if ((tlen = slurp(secrets, text, sizeof text - 1)) < 0)
        return 1;
    st = mp_keyfile_parse(text, (size_t)tlen, &kf, &line);
    mp_wipe(text, sizeof text);
    if (st != MP_OK) {
        mp_keyfile_wipe(&kf);
        fprintf(stderr, "mp_paygen: %s line %zu: %s\n", secrets, line, mp_strerror(st));
        return 1;
    }
    /* Mint in the newest series of each kind: the ones the vendor surely holds. */
    for (i = 0; i < kf.n; i++) {
        if (kf.e[i].kind == MP_KEY_SCRIP && (!have_scrip || kf.e[i].series > id_series)) {
            id_series = kf.e[i].series;
            have_scrip = 1;
        }
        if (kf.e[i].kind == MP_KEY_CUSTOMER && (!have_cust || kf.e[i].series > cust_series)) {
            cust_series = kf.e[i].series;
            have_cust = 1;
        }
    }
    if ((st = mp_mc_issuer_new(vendor, &iss)) != MP_OK
        || (st = mp_keyfile_apply(&kf, iss, &receipt)) != MP_OK) {
        mp_keyfile_wipe(&kf);
        rc = fail("vendor secrets", st);
        goto done;
    }
    mp_keyfile_wipe(&kf);
    memset(dummy, 0x5a, sizeof dummy);
    if ((st = mp_mac_new(dummy, sizeof dummy, &mac)) != MP_OK) {
        rc = fail("mac", st);
        goto done;
    }
    for (j = 0; j < MC_CUSTOMERS; j++)
        if ((st = mp_mc_customer_secret(iss, (cust_series << 48) | (j + 1), csec[j])) != MP_OK) {
            rc = fail("customer secret", st);
            goto done;
        }

    req.method = "GET";
    req.method_len = 3;
    req.host = host;
    req.host_len = strlen(host);
    req.target = target;
    req.target_len = strlen(target);
    expiry = (uint64_t)time(NULL) + VALIDITY;
    for (j = 0; j < n; j++) {
        uint64_t c = j % MC_CUSTOMERS;

        if ((st = mp_mc_mint(iss, &price, (id_series << 48) | (first + j), (cust_series << 48) | (c + 1),
                             expiry, NULL, &scrip)) != MP_OK
            || (st = mp_mc_pay(mac, &scrip, csec[c], &req, &price, &pay)) != MP_OK
            || (st = mp_mc_payment_encode(&pay, rec, sizeof rec, &len)) != MP_OK) {
            rc = fail("payment", st);
            goto done;
        }
        if (put_line(stdout, rec, len) != 0) {
            fprintf(stderr, "mp_paygen: write error\n");
            goto done;
        }
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "mp_paygen: write error\n");
        goto done;
    }
    rc = 0;
done:
    mp_wipe(csec, sizeof csec);
    mp_mc_issuer_free(iss);
    mp_mac_free(mac);
    mp_mac_free(receipt);
    return rc;
}

/* ---- PayWord ----------------------------------------------------------------------- */

/* 32 bytes = SHA-256(label || seed || u32 c): user keys and chain starts
 * that differ per commitment and per seed. */
static mp_status derive(const char *label, const char *seed, uint32_t c, uint8_t out[MP_HASH_LEN])
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, "mp_paygen %s|%s|%u", label, seed, c);

    if (n < 0 || (size_t)n >= sizeof buf)
        return MP_ERR_ARG;
    return mp_sha256(buf, (size_t)n, out);
}

static int gen_payword(int argc, char **argv)
{
    static char pem[16384];
    static mp_pw_cert cert;
    static mp_pw_payment pay;
    const char *keyfile = argv[0], *vendor = argv[1], *host = argv[2], *target = argv[3];
    const char *seed, *warm_path = NULL;
    mp_signer *broker = NULL, *user = NULL;
    mp_pw_commit *commits = NULL;
    mp_chain **chains = NULL;
    mp_amount price, unit;
    uint8_t rec[MP_WIRE_MAX], wn[MP_HASH_LEN], useed[MP_HASH_LEN];
    uint64_t n, ncommit, k, per, chain_n, now, j, m;
    uint32_t c, idx = 0;
    FILE *warm = NULL;
    size_t len;
    long plen;
    int rc = 1;
    mp_status st;

    if (argc != 9 && argc != 10)
        return usage();
    if (check_request(vendor, host, target) != 0)
        return 2;
    seed = argv[8];
    if (argc == 10)
        warm_path = argv[9];
    if ((st = mp_amount_parse(argv[4], strlen(argv[4]), &price)) != MP_OK)
        return fail("PRICE", st);
    if ((st = mp_amount_parse(argv[5], strlen(argv[5]), &unit)) != MP_OK)
        return fail("UNIT", st);
    if (unit.units == 0 || strcmp(unit.cur, price.cur) != 0 || price.units % unit.units != 0) {
        fprintf(stderr, "mp_paygen: PRICE must be a multiple of UNIT in the same currency\n");
        return 2;
    }
    k = price.units / unit.units;
    if (parse_u64(argv[6], 1, 100000000, &n) != 0 || parse_u64(argv[7], 1, 100000, &ncommit) != 0) {
        fprintf(stderr, "mp_paygen: N must be 1..1e8, COMMITMENTS 1..100000\n");
        return 2;
    }
    per = (n + ncommit - 1) / ncommit;
    chain_n = (per + 1) * k;                /* +1 payment: the warm-up one */
    if (k > MP_CHAIN_MAX || chain_n > MP_CHAIN_MAX) {
        fprintf(stderr, "mp_paygen: chains of %llu words exceed %u: use more COMMITMENTS\n",
                (unsigned long long)chain_n, MP_CHAIN_MAX);
        return 2;
    }
    if ((plen = slurp(keyfile, pem, sizeof pem - 1)) < 0)
        return 1;
    st = mp_signer_from_pem(pem, (size_t)plen, &broker);
    mp_wipe(pem, sizeof pem);
    if (st != MP_OK)
        return fail("broker key", st);

    commits = calloc(ncommit, sizeof *commits);
    chains = calloc(ncommit, sizeof *chains);
    if (commits == NULL || chains == NULL) {
        fprintf(stderr, "mp_paygen: out of memory\n");
        goto done;
    }
    now = (uint64_t)time(NULL);
    for (c = 0; c < ncommit; c++) {
        mp_pw_commit *cm = &commits[c];

        memset(&cert, 0, sizeof cert);
        strcpy(cert.broker, BROKER_NAME);
        snprintf(cert.user, sizeof cert.user, "bench-%u", c);
        if ((st = derive("user", seed, c, useed)) != MP_OK
            || (st = mp_signer_from_seed(useed, &user)) != MP_OK
            || (st = mp_signer_pubkey(user, &cert.user_key)) != MP_OK) {
            rc = fail("user key", st);
            goto done;
        }
        cert.expiry = now + 2 * VALIDITY;
        if ((st = mp_amount_mul(&unit, chain_n, &cert.credit_limit)) != MP_OK) {
            rc = fail("credit limit", st);
            goto done;
        }
        cert.serial = now * 100000 + c;
        if ((st = mp_pw_cert_sign(&cert, broker)) != MP_OK) {
            rc = fail("certificate", st);
            goto done;
        }
        if ((st = derive("chain", seed, c, wn)) != MP_OK
            || (st = mp_chain_new(wn, (uint32_t)chain_n, &chains[c])) != MP_OK) {
            rc = fail("chain", st);
            goto done;
        }
        strcpy(cm->vendor, vendor);
        cm->cert = cert;
        mp_chain_w0(chains[c], cm->w0);
        cm->date = now;
        cm->expiry = now + VALIDITY;
        cm->unit = unit;
        cm->n = (uint32_t)chain_n;
        if ((st = mp_pw_commit_sign(cm, user)) != MP_OK) {
            rc = fail("commitment", st);
            goto done;
        }
        mp_signer_free(user);
        user = NULL;
    }
    mp_wipe(wn, sizeof wn);
    mp_wipe(useed, sizeof useed);

    /* First contact: words 1..k of each chain, commitment included. */
    if (warm_path != NULL && (warm = fopen(warm_path, "w")) == NULL) {
        fprintf(stderr, "mp_paygen: cannot create %s: %s\n", warm_path, strerror(errno));
        goto done;
    }
    for (c = 0; c < ncommit; c++) {
        for (m = 0; m < k; m++)
            if ((st = mp_chain_next(chains[c], &idx, pay.w)) != MP_OK) {
                rc = fail("chain", st);
                goto done;
            }
        memcpy(pay.commit_id, commits[c].id, MP_HASH_LEN);
        pay.i = idx;
        pay.k = (uint32_t)k;
        pay.has_commit = 1;
        pay.commit = commits[c];
        if ((st = mp_pw_payment_encode(&pay, rec, sizeof rec, &len)) != MP_OK) {
            rc = fail("payment", st);
            goto done;
        }
        if (put_line(warm ? warm : stdout, rec, len) != 0) {
            fprintf(stderr, "mp_paygen: write error\n");
            goto done;
        }
    }
    if (warm != NULL) {
        if (fclose(warm) != 0) {
            warm = NULL;
            fprintf(stderr, "mp_paygen: write error on %s\n", warm_path);
            goto done;
        }
        warm = NULL;
    }

    /* The measured payments, round-robin over the commitments. */
    pay.has_commit = 0;
    for (j = 0; j < n; j++) {
        c = (uint32_t)(j % ncommit);
        for (m = 0; m < k; m++)
            if ((st = mp_chain_next(chains[c], &idx, pay.w)) != MP_OK) {
                rc = fail("chain", st);
                goto done;
            }
        memcpy(pay.commit_id, commits[c].id, MP_HASH_LEN);
        pay.i = idx;
        pay.k = (uint32_t)k;
        if ((st = mp_pw_payment_encode(&pay, rec, sizeof rec, &len)) != MP_OK) {
            rc = fail("payment", st);
            goto done;
        }
        if (put_line(stdout, rec, len) != 0) {
            fprintf(stderr, "mp_paygen: write error\n");
            goto done;
        }
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "mp_paygen: write error\n");
        goto done;
    }
    rc = 0;
done:
    if (warm != NULL)
        fclose(warm);
    if (chains != NULL)
        for (c = 0; c < ncommit; c++)
            mp_chain_free(chains[c]);
    free(chains);
    free(commits);
    mp_signer_free(user);
    mp_signer_free(broker);
    return rc;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    if (argc >= 2 && strcmp(argv[1], "millicent") == 0)
        return gen_millicent(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "payword") == 0)
        return gen_payword(argc - 2, argv + 2);
    return usage();
}
