/*
 * mp_broker.h - what broker clients and the broker share (docs/PROTOCOL.md 8).
 *
 * Account requests are signed with the account's 32-byte key:
 *   sig = HMAC(key, "MP1 broker" || str8 account || str8 method ||
 *              str16 target || u64 ts || bytes32 SHA-256(body))
 * No password exists; the broker keeps account keys wrapped under its
 * account secret (a PRF pad per account id), so a copy of its store alone
 * does not let anyone sign as a customer.
 */
#ifndef MP_BROKER_H
#define MP_BROKER_H

#include <stddef.h>
#include <stdint.h>
#include "mp_status.h"
#include "mp_crypto.h"
#include "mp_limits.h"

#define MP_BROKER_SKEW 300            /* seconds a request timestamp may be off */
#define MP_ACCOUNT_MAX 64

/* Computes the request signature. account: 1..MP_ACCOUNT_MAX visible ASCII;
 * method 1..MP_METHOD_MAX; target 1..MP_TARGET_MAX. MP_ERR_ARG otherwise. */
mp_status mp_broker_sig(const uint8_t key[MP_SECRET_LEN], const char *account,
                        const char *method, const char *target, size_t target_len,
                        uint64_t ts, const uint8_t body_hash[MP_HASH_LEN],
                        uint8_t out[MP_HASH_LEN]);

/* Checks sig (constant time) and |now - ts| <= MP_BROKER_SKEW:
 * MP_ERR_FORGED or MP_ERR_EXPIRED. */
mp_status mp_broker_sig_check(const uint8_t key[MP_SECRET_LEN], const char *account,
                              const char *method, const char *target, size_t target_len,
                              uint64_t ts, uint64_t now, const uint8_t body_hash[MP_HASH_LEN],
                              const uint8_t *sig, size_t sig_len);

/* Wraps or unwraps (the same operation) an account key:
 *   out = in XOR HMAC(account secret, "MP1 account-key" || str8 account)
 * master is keyed with the broker's account secret. */
mp_status mp_account_key_wrap(mp_mac *master, const char *account,
                              const uint8_t in[MP_SECRET_LEN], uint8_t out[MP_SECRET_LEN]);

#endif
