/* mp_broker.c - broker request signatures and account-key wrapping. */
#include <string.h>
#include "mp_broker.h"

static int account_ok(const char *a, size_t *n)
{
    size_t i;

    if (a == NULL || (*n = strnlen(a, MP_ACCOUNT_MAX + 1)) == 0 || *n > MP_ACCOUNT_MAX)
        return 0;
    for (i = 0; i < *n; i++)
        if ((unsigned char)a[i] < 0x21 || (unsigned char)a[i] > 0x7e || a[i] == '"' || a[i] == '\\')
            return 0;
    return 1;
}

mp_status mp_broker_sig(const uint8_t key[MP_SECRET_LEN], const char *account,
                        const char *method, const char *target, size_t target_len,
                        uint64_t ts, const uint8_t body_hash[MP_HASH_LEN],
                        uint8_t out[MP_HASH_LEN])
{
    static const char label[10] = { 'M','P','1',' ','b','r','o','k','e','r' };
    uint8_t head[sizeof label + 1 + MP_ACCOUNT_MAX + 1 + MP_METHOD_MAX + 2];
    uint8_t tail[8 + MP_HASH_LEN];
    size_t an, mn, n = 0;
    mp_mac *m = NULL;
    mp_iov parts[3];
    mp_status st = MP_ERR_ARG;
    int i;

    if (key == NULL || !account_ok(account, &an) || method == NULL || target == NULL
        || (mn = strnlen(method, MP_METHOD_MAX + 1)) == 0 || mn > MP_METHOD_MAX
        || target_len == 0 || target_len > MP_TARGET_MAX || body_hash == NULL || out == NULL)
        goto done;
    memcpy(head, label, sizeof label);
    n = sizeof label;
    head[n++] = (uint8_t)an;
    memcpy(head + n, account, an);
    n += an;
    head[n++] = (uint8_t)mn;
    memcpy(head + n, method, mn);
    n += mn;
    head[n++] = (uint8_t)(target_len >> 8);
    head[n++] = (uint8_t)target_len;
    for (i = 0; i < 8; i++)
        tail[i] = (uint8_t)(ts >> (56 - 8 * i));
    memcpy(tail + 8, body_hash, MP_HASH_LEN);
    parts[0].p = head;   parts[0].len = n;
    parts[1].p = target; parts[1].len = target_len;
    parts[2].p = tail;   parts[2].len = sizeof tail;
    if ((st = mp_mac_new(key, MP_SECRET_LEN, &m)) != MP_OK)
        goto done;
    st = mp_mac_compute(m, parts, 3, out);
done:
    mp_mac_free(m);
    return st;
}

mp_status mp_broker_sig_check(const uint8_t key[MP_SECRET_LEN], const char *account,
                              const char *method, const char *target, size_t target_len,
                              uint64_t ts, uint64_t now, const uint8_t body_hash[MP_HASH_LEN],
                              const uint8_t *sig, size_t sig_len)
{
    uint8_t want[MP_HASH_LEN];
    mp_status st;

    if (sig == NULL)
        return MP_ERR_ARG;
    if ((st = mp_broker_sig(key, account, method, target, target_len, ts, body_hash, want)) != MP_OK)
        return st;
    if (!mp_ct_equal(want, sizeof want, sig, sig_len))
        return MP_ERR_FORGED;
    /* Checked after the MAC so a stranger learns nothing about clocks. */
    if ((ts > now && ts - now > MP_BROKER_SKEW) || (now > ts && now - ts > MP_BROKER_SKEW))
        return MP_ERR_EXPIRED;
    return MP_OK;
}

mp_status mp_account_key_wrap(mp_mac *master, const char *account,
                              const uint8_t in[MP_SECRET_LEN], uint8_t out[MP_SECRET_LEN])
{
    static const char label[15] = { 'M','P','1',' ','a','c','c','o','u','n','t','-','k','e','y' };
    uint8_t len8, pad[MP_HASH_LEN];
    size_t an, i;
    mp_iov parts[3];
    mp_status st;

    if (master == NULL || in == NULL || out == NULL || !account_ok(account, &an))
        return MP_ERR_ARG;
    len8 = (uint8_t)an;
    parts[0].p = label;   parts[0].len = sizeof label;
    parts[1].p = &len8;   parts[1].len = 1;
    parts[2].p = account; parts[2].len = an;
    if ((st = mp_mac_compute(master, parts, 3, pad)) != MP_OK)
        return st;
    for (i = 0; i < MP_SECRET_LEN; i++)
        out[i] = in[i] ^ pad[i];
    mp_wipe(pad, sizeof pad);
    return MP_OK;
}
