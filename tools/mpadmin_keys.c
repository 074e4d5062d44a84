/*
 * mpadmin_keys.c - generating and rotating keys.
 *
 *   keys vendor FILE                  new vendor secrets (scrip, customer, receipt series 1)
 *   keys rotate FILE                  adds the next scrip series; older ones retire later
 *   keys broker FILE.key              new Ed25519 broker signing key (+ FILE.pub)
 *   keys broker-secrets FILE          new broker secrets (scrip, customer, account series 1)
 *   keys delegate SECRETS OUT         a new scrip series for a broker to mint the vendor's
 *                                     scrip in, and the file the broker loads
 *
 * Secrets come from OpenSSL's CSPRNG and are written 0600 via a rename
 * (new files: a link, which never replaces an existing file).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "mpadmin.h"

static int add_entry(mp_keyfile *kf, uint8_t kind, uint16_t series, uint64_t retire,
                     uint8_t delegated)
{
    mp_keyfile_entry *e;

    if (kf->n >= sizeof kf->e / sizeof kf->e[0])
        return -1;
    e = &kf->e[kf->n];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->series = series;
    e->len = MP_SECRET_LEN;
    e->retire_at = retire;
    e->delegated = delegated;
    if (mp_random(e->secret, MP_SECRET_LEN) != MP_OK)
        return -1;
    kf->n++;
    return 0;
}

/* The highest series of kind in kf; 0 when it has none. */
static uint16_t top_series(const mp_keyfile *kf, uint8_t kind, int *any)
{
    uint16_t top = 0;
    size_t i;

    *any = 0;
    for (i = 0; i < kf->n; i++)
        if (kf->e[i].kind == kind && (!*any || kf->e[i].series > top)) {
            top = kf->e[i].series;
            *any = 1;
        }
    return top;
}

static int parse_seconds(const char *cmd, const char *s, uint64_t *out)
{
    if (mpa_parse_u64(s, (uint64_t)10 * 365 * 86400, out) != 0) {
        mpa_err("%s: --retire-after takes seconds (0 .. 10 years)", cmd);
        return -1;
    }
    return 0;
}

/* Creates FILE with one fresh secret of each of three kinds, series 1. */
static int new_keyfile(const mpa_opts *o, int argc, char **argv, const char *cmd,
                       uint8_t third_kind, const char *what, const char *next_step)
{
    static mp_keyfile kf;
    int rc = MPA_FAIL;

    if (argc != 1 || argv[0][0] == '-') {
        mpa_err("keys %s: give the secrets file to create", cmd);
        return MPA_USAGE;
    }
    memset(&kf, 0, sizeof kf);
    if (add_entry(&kf, MP_KEY_SCRIP, 1, 0, 0) != 0 || add_entry(&kf, MP_KEY_CUSTOMER, 1, 0, 0) != 0
        || add_entry(&kf, third_kind, 1, 0, 0) != 0) {
        mpa_err("keys %s: cannot generate secrets", cmd);
        goto done;
    }
    if (mpa_save_keyfile(&kf, argv[0], 1) != 0)
        goto done;
    if (o->json) {
        printf("{\"file\": ");
        mpa_json_str(stdout, argv[0]);
        printf(", \"scrip_series\": 1, \"customer_series\": 1, \"%s_series\": 1}\n",
               third_kind == MP_KEY_ACCOUNT ? "account" : "receipt");
    } else {
        printf("wrote %s to %s (mode 0600); %s\n", what, argv[0], next_step);
    }
    rc = MPA_OK;
done:
    mp_keyfile_wipe(&kf);
    return rc;
}

static int keys_vendor(const mpa_opts *o, int argc, char **argv)
{
    return new_keyfile(o, argc, argv, "vendor", MP_KEY_RECEIPT, "vendor secrets",
                       "point MicropaySecretsFile at it");
}

static int keys_broker_secrets(const mpa_opts *o, int argc, char **argv)
{
    return new_keyfile(o, argc, argv, "broker-secrets", MP_KEY_ACCOUNT, "broker secrets",
                       "point MicropayBrokerSecretsFile at it");
}

static int keys_rotate(const mpa_opts *o, int argc, char **argv)
{
    static mp_keyfile kf;
    const char *file = NULL;
    uint64_t retire_after = 7 * 86400, retire;
    uint16_t top;
    size_t i;
    int rc = MPA_FAIL, a, any;

    for (a = 0; a < argc; a++) {
        if (strcmp(argv[a], "--retire-after") == 0 && a + 1 < argc) {
            if (parse_seconds("keys rotate", argv[++a], &retire_after) != 0)
                return MPA_USAGE;
        } else if (file == NULL && argv[a][0] != '-') {
            file = argv[a];
        } else {
            mpa_err("keys rotate: unexpected argument '%s'", argv[a]);
            return MPA_USAGE;
        }
    }
    if (file == NULL) {
        mpa_err("keys rotate: give the secrets file");
        return MPA_USAGE;
    }
    if (mpa_load_keyfile(file, &kf) != 0)
        goto done;
    /* Old series keep validating the scrip they stamped until it expires;
     * they are retired after --retire-after seconds (default 7 days).
     * Delegated series are a broker's, rotated with keys delegate. */
    retire = (uint64_t)time(NULL) + retire_after;
    top = top_series(&kf, MP_KEY_SCRIP, &any);
    for (i = 0; i < kf.n; i++)
        if (kf.e[i].kind == MP_KEY_SCRIP && !kf.e[i].delegated && kf.e[i].retire_at == 0)
            kf.e[i].retire_at = retire;
    if (top == 0xffff || add_entry(&kf, MP_KEY_SCRIP, (uint16_t)(top + 1), 0, 0) != 0
        || mpa_save_keyfile(&kf, file, 0) != 0) {
        mpa_err("keys rotate: cannot add a series to %s", file);
        goto done;
    }
    if (o->json)
        printf("{\"scrip_series\": %u, \"older_retire_at\": %llu}\n", top + 1,
               (unsigned long long)retire);
    else
        printf("added scrip series %u to %s; older series retire at %llu; reload Apache\n",
               top + 1, file, (unsigned long long)retire);
    rc = MPA_OK;
done:
    mp_keyfile_wipe(&kf);
    return rc;
}

static int keys_delegate(const mpa_opts *o, int argc, char **argv)
{
    static mp_keyfile kf, out;
    const char *pos[2] = { NULL, NULL };
    uint64_t series = 0, retire_after = 0, retire = 0;
    int have_series = 0, have_retire = 0, np = 0, rc = MPA_FAIL, a, any;
    size_t i, retired = 0;
    FILE *f;

    for (a = 0; a < argc; a++) {
        if (strcmp(argv[a], "--series") == 0 && a + 1 < argc) {
            if (mpa_parse_u64(argv[++a], 0xffff, &series) != 0) {
                mpa_err("keys delegate: --series takes 0..65535");
                return MPA_USAGE;
            }
            have_series = 1;
        } else if (strcmp(argv[a], "--retire-after") == 0 && a + 1 < argc) {
            if (parse_seconds("keys delegate", argv[++a], &retire_after) != 0)
                return MPA_USAGE;
            have_retire = 1;
        } else if (np < 2 && argv[a][0] != '-') {
            pos[np++] = argv[a];
        } else {
            mpa_err("keys delegate: unexpected argument '%s'", argv[a]);
            return MPA_USAGE;
        }
    }
    if (np != 2) {
        mpa_err("keys delegate: give the vendor secrets file and the file to write for the broker");
        return MPA_USAGE;
    }
    /* Checked before the vendor file changes; the final write of OUT still
     * refuses atomically to replace a file. */
    if ((f = fopen(pos[1], "r")) != NULL) {
        fclose(f);
        mpa_err("keys delegate: %s exists; not overwriting it", pos[1]);
        return MPA_FAIL;
    }
    if (mpa_load_keyfile(pos[0], &kf) != 0)
        goto done;
    if (!have_series) {
        uint16_t top = top_series(&kf, MP_KEY_SCRIP, &any);
        if (top == 0xffff) {
            mpa_err("keys delegate: no scrip series left above %u; give --series", top);
            goto done;
        }
        series = (uint64_t)top + 1;
    }
    for (i = 0; i < kf.n; i++) {
        if (kf.e[i].kind == MP_KEY_SCRIP && kf.e[i].series == series) {
            mpa_err("keys delegate: %s already has scrip series %llu", pos[0],
                    (unsigned long long)series);
            rc = MPA_USAGE;
            goto done;
        }
    }
    /* A previous delegation keeps validating the scrip the broker minted
     * under it; with --retire-after it stops after that many seconds. */
    if (have_retire) {
        retire = (uint64_t)time(NULL) + retire_after;
        for (i = 0; i < kf.n; i++)
            if (kf.e[i].kind == MP_KEY_SCRIP && kf.e[i].delegated && kf.e[i].retire_at == 0) {
                kf.e[i].retire_at = retire;
                retired++;
            }
    }
    if (add_entry(&kf, MP_KEY_SCRIP, (uint16_t)series, 0, 1) != 0) {
        mpa_err("keys delegate: cannot generate a secret");
        goto done;
    }
    /* The broker's file: every delegated series (it mints in the newest
     * one in service and still needs the older ones to check deposits of
     * scrip it minted there) and the vendor's customer masters. */
    memset(&out, 0, sizeof out);
    for (i = 0; i < kf.n; i++)
        if ((kf.e[i].kind == MP_KEY_SCRIP && kf.e[i].delegated) || kf.e[i].kind == MP_KEY_CUSTOMER)
            out.e[out.n++] = kf.e[i];
    /* The vendor learns the series first: a broker file whose series the
     * vendor does not accept would sell scrip that bounces. */
    if (mpa_save_keyfile(&kf, pos[0], 0) != 0)
        goto done;
    if (mpa_save_keyfile(&out, pos[1], 1) != 0) {
        mpa_err("keys delegate: %s now has delegated series %llu but %s was not written; "
                "run again (the next series will be used)", pos[0], (unsigned long long)series,
                pos[1]);
        goto done;
    }
    if (o->json) {
        printf("{\"series\": %llu, \"vendor_file\": ", (unsigned long long)series);
        mpa_json_str(stdout, pos[0]);
        printf(", \"broker_file\": ");
        mpa_json_str(stdout, pos[1]);
        printf(", \"older_delegations_retired\": %zu, \"retire_at\": %llu}\n", retired,
               (unsigned long long)retire);
    } else {
        printf("added delegated scrip series %llu to %s and wrote %s (mode 0600) for the "
               "broker's MicropayBrokerVendor; reload Apache here first, then at the broker\n",
               (unsigned long long)series, pos[0], pos[1]);
        if (retired)
            printf("%zu older delegated series retire at %llu\n", retired,
                   (unsigned long long)retire);
    }
    rc = MPA_OK;
done:
    mp_keyfile_wipe(&kf);
    mp_keyfile_wipe(&out);
    return rc;
}

static int keys_broker(const mpa_opts *o, int argc, char **argv)
{
    static char pem[16384], pub[4096];
    mp_signer *s = NULL;
    mp_pubkey pk;
    size_t len = 0, plen = 0;
    char path[4096];
    int rc = MPA_FAIL;
    FILE *f;

    if (argc != 1 || argv[0][0] == '-') {
        mpa_err("keys broker: give the private key file to create (FILE.pub gets the public key)");
        return MPA_USAGE;
    }
    if (snprintf(path, sizeof path, "%s.pub", argv[0]) >= (int)sizeof path)
        return MPA_USAGE;
    if (mp_signer_generate(&s) != MP_OK || mp_signer_to_pem(s, pem, sizeof pem, &len) != MP_OK
        || mp_signer_pubkey(s, &pk) != MP_OK || mp_pubkey_to_pem(&pk, pub, sizeof pub, &plen) != MP_OK) {
        mpa_err("keys broker: key generation failed");
        goto done;
    }
    if (mpa_write_new_secret_file(argv[0], pem, len) != 0)
        goto done;
    if ((f = fopen(path, "w")) == NULL || fwrite(pub, 1, plen, f) != plen || fclose(f) != 0) {
        mpa_err("keys broker: cannot write %s", path);
        goto done;
    }
    if (o->json) {
        printf("{\"private\": ");
        mpa_json_str(stdout, argv[0]);
        printf(", \"public\": ");
        mpa_json_str(stdout, path);
        printf("}\n");
    } else {
        printf("wrote broker key %s (0600) and public key %s (for MicropayTrustBroker)\n",
               argv[0], path);
    }
    rc = MPA_OK;
done:
    mp_wipe(pem, sizeof pem);
    mp_signer_free(s);
    return rc;
}

const mpa_cmd mpa_keys_cmds[] = {
    { "keys", "vendor", "FILE",
      "Generates new vendor secrets (scrip, customer and receipt series 1) into FILE,\n"
      "mode 0600. Refuses to overwrite an existing file.", keys_vendor },
    { "keys", "rotate", "FILE [--retire-after SECONDS]",
      "Adds the next scrip series to the secrets FILE (vendor or broker); change and new\n"
      "scrip use it after Apache reloads. Older series the owner mints in stay valid for\n"
      "SECONDS (default 604800) so scrip issued under them can still be spent; delegated\n"
      "series are left alone (see keys delegate).", keys_rotate },
    { "keys", "broker", "FILE",
      "Generates an Ed25519 broker signing key: FILE (PKCS#8 PEM, 0600) and FILE.pub.\n"
      "Refuses to overwrite an existing FILE.", keys_broker },
    { "keys", "broker-secrets", "FILE",
      "Generates new broker secrets into FILE, mode 0600: broker scrip, customer and\n"
      "account series 1 (the account secret wraps account keys in the broker store).\n"
      "For MicropayBrokerSecretsFile. Refuses to overwrite an existing file.",
      keys_broker_secrets },
    { "keys", "delegate", "VENDOR_SECRETS OUT [--series N] [--retire-after SECONDS]",
      "Lets a broker sell this vendor's scrip: adds a new scrip series marked 'delegated'\n"
      "(series N, default the next free one) to the vendor secrets file, and writes OUT\n"
      "(mode 0600, must not exist) with that series and the vendor's customer series, for\n"
      "the broker's MicropayBrokerVendor. The vendor accepts scrip of the series but never\n"
      "mints change in it. Reload the vendor's Apache before the broker's. With\n"
      "--retire-after, older delegated series stop being accepted SECONDS from now\n"
      "(rotation of a delegation; give at least the broker's scrip lifetime).",
      keys_delegate },
    { NULL, NULL, NULL, NULL, NULL }
};
