/*
 * mpadmin_keys.c - generating and rotating keys.
 *
 *   keys vendor FILE       new vendor secrets (scrip, customer, receipt series 1)
 *   keys rotate FILE       adds the next scrip series; older ones retire later
 *   keys broker FILE.key   new Ed25519 broker signing key (+ FILE.pub)
 *
 * Secrets come from OpenSSL's CSPRNG and are written 0600 via a rename.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "mpadmin.h"

static char text[MP_KEYFILE_MAX];

static int add_entry(mp_keyfile *kf, uint8_t kind, uint16_t series, uint64_t retire)
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
    if (mp_random(e->secret, MP_SECRET_LEN) != MP_OK)
        return -1;
    kf->n++;
    return 0;
}

static int save(const mp_keyfile *kf, const char *path)
{
    size_t len = 0;
    int rc;

    if (mp_keyfile_format(kf, text, sizeof text, &len) != MP_OK) {
        mpa_err("cannot format %s", path);
        return -1;
    }
    rc = mpa_write_secret_file(path, text, len);
    mp_wipe(text, sizeof text);
    return rc;
}

static int keys_vendor(const mpa_opts *o, int argc, char **argv)
{
    static mp_keyfile kf;
    FILE *f;
    int rc = MPA_FAIL;

    if (argc != 1) {
        mpa_err("keys vendor: give the secrets file to create");
        return MPA_USAGE;
    }
    if ((f = fopen(argv[0], "r")) != NULL) {
        fclose(f);
        mpa_err("keys vendor: %s exists; use 'keys rotate' to add a series", argv[0]);
        return MPA_FAIL;
    }
    memset(&kf, 0, sizeof kf);
    if (add_entry(&kf, MP_KEY_SCRIP, 1, 0) != 0 || add_entry(&kf, MP_KEY_CUSTOMER, 1, 0) != 0
        || add_entry(&kf, MP_KEY_RECEIPT, 1, 0) != 0 || save(&kf, argv[0]) != 0)
        goto done;
    if (o->json) {
        printf("{\"file\": ");
        mpa_json_str(stdout, argv[0]);
        printf(", \"scrip_series\": 1}\n");
    } else {
        printf("wrote vendor secrets to %s (mode 0600); point MicropaySecretsFile at it\n", argv[0]);
    }
    rc = MPA_OK;
done:
    mp_keyfile_wipe(&kf);
    return rc;
}

static int keys_rotate(const mpa_opts *o, int argc, char **argv)
{
    static mp_keyfile kf;
    FILE *f;
    size_t len, line = 0, i;
    long retire_after = 7 * 86400;
    uint16_t top = 0;
    uint64_t retire;
    int rc = MPA_FAIL, a;
    char *end;
    mp_status st;

    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--retire-after") == 0 && a + 1 < argc) {
            retire_after = strtol(argv[++a], &end, 10);
            if (*end != '\0' || retire_after < 0) {
                mpa_err("keys rotate: --retire-after takes seconds");
                return MPA_USAGE;
            }
        } else {
            mpa_err("keys rotate: unexpected argument '%s'", argv[a]);
            return MPA_USAGE;
        }
    }
    if (argc < 1) {
        mpa_err("keys rotate: give the secrets file");
        return MPA_USAGE;
    }
    if ((f = fopen(argv[0], "r")) == NULL) {
        mpa_err("keys rotate: cannot open %s", argv[0]);
        return MPA_FAIL;
    }
    len = fread(text, 1, sizeof text, f);
    fclose(f);
    if ((st = mp_keyfile_parse(text, len, &kf, &line)) != MP_OK) {
        mp_wipe(text, sizeof text);
        mpa_err("keys rotate: %s line %zu: %s", argv[0], line, mp_strerror(st));
        return MPA_FAIL;
    }
    mp_wipe(text, sizeof text);
    /* Old series keep validating the scrip they stamped until it expires;
     * they are retired after --retire-after seconds (default 7 days). */
    retire = (uint64_t)time(NULL) + (uint64_t)retire_after;
    for (i = 0; i < kf.n; i++) {
        if (kf.e[i].kind != MP_KEY_SCRIP)
            continue;
        if (kf.e[i].series >= top)
            top = kf.e[i].series;
        if (kf.e[i].retire_at == 0)
            kf.e[i].retire_at = retire;
    }
    if (top == 0xffff || add_entry(&kf, MP_KEY_SCRIP, (uint16_t)(top + 1), 0) != 0
        || save(&kf, argv[0]) != 0) {
        mpa_err("keys rotate: cannot add a series to %s", argv[0]);
        goto done;
    }
    if (o->json)
        printf("{\"scrip_series\": %u, \"older_retire_at\": %llu}\n", top + 1,
               (unsigned long long)retire);
    else
        printf("added scrip series %u to %s; older series retire at %llu; reload Apache\n",
               top + 1, argv[0], (unsigned long long)retire);
    rc = MPA_OK;
done:
    mp_keyfile_wipe(&kf);
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

    if (argc != 1) {
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
    if (mpa_write_secret_file(argv[0], pem, len) != 0)
        goto done;
    {
        FILE *f = fopen(path, "w");
        if (f == NULL || fwrite(pub, 1, plen, f) != plen || fclose(f) != 0) {
            mpa_err("keys broker: cannot write %s", path);
            goto done;
        }
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
      "Adds the next scrip series to the secrets FILE; change and new scrip use it after\n"
      "Apache reloads. Older series stay valid for SECONDS (default 604800) so scrip\n"
      "issued under them can still be spent.", keys_rotate },
    { "keys", "broker", "FILE",
      "Generates an Ed25519 broker signing key: FILE (PKCS#8 PEM, 0600) and FILE.pub.",
      keys_broker },
    { NULL, NULL, NULL, NULL, NULL }
};
