/* test_util.c - helpers shared by the suites: hex, a seeded PRNG and the
 * fixed keys the vectors are made with. */
#include <stdlib.h>
#include <string.h>
#include "tests.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

long t_hex_decode(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex), i;

    if (n % 2 || n / 2 > cap)
        return -1;
    for (i = 0; i < n / 2; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (long)(n / 2);
}

void t_hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = '\0';
}

uint64_t t_rand(uint64_t *s)
{
    /* xorshift64*: reproducible across runs and platforms. */
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ULL;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

static mp_signer *broker_key, *user_key, *rsa_key;

static void free_keys(void)
{
    mp_signer_free(broker_key);
    mp_signer_free(user_key);
    mp_signer_free(rsa_key);
    broker_key = user_key = rsa_key = NULL;
}

static void register_cleanup(void)
{
    static int done;

    if (!done) {
        done = 1;
        atexit(free_keys);
    }
}

static mp_signer *seeded(mp_signer **slot, uint8_t fill)
{
    uint8_t seed[32];

    if (*slot == NULL) {
        memset(seed, fill, sizeof seed);
        if (mp_signer_from_seed(seed, slot) != MP_OK) {
            fprintf(stderr, "cannot make test key\n");
            exit(2);
        }
        register_cleanup();
    }
    return *slot;
}

/* Seeds are the byte patterns 0xb0... and 0x05...; tests/vectors/ names them. */
mp_signer *t_broker_key(void) { return seeded(&broker_key, 0xb0); }
mp_signer *t_user_key(void)   { return seeded(&user_key, 0x05); }

mp_signer *t_rsa_broker_key(void)
{
    if (rsa_key == NULL) {
        if (mp_signer_generate_rsa(2048, &rsa_key) != MP_OK) {
            fprintf(stderr, "cannot make RSA test key\n");
            exit(2);
        }
        register_cleanup();
    }
    return rsa_key;
}
