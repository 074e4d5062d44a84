/*
 * libFuzzer target for every record decoder (the vendor's stored PayWord
 * tracker included) and the base64url text form.
 *
 * Properties checked beyond "no crash, no out-of-bounds read":
 *  - canonical form: whatever decodes re-encodes to exactly the input bytes
 *    (one encoding per object, so no two byte strings mean the same thing);
 *  - base64url: whatever decodes re-encodes to the same text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mp.h"

static uint8_t out[MP_WIRE_MAX];

static void same(const uint8_t *in, size_t len, mp_status st, size_t olen)
{
    if (st != MP_OK || olen != len || memcmp(in, out, len) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static union {
        mp_scrip s; mp_mc_payment mp; mp_mc_reply mr; mp_pw_cert c; mp_pw_commit cm;
        mp_pw_payment p; mp_pw_redeem r; mp_receipt rc; mp_offer o; mp_pw_track t;
    } u;
    static uint8_t bin[MP_WIRE_TEXT_MAX];
    static char txt[MP_WIRE_TEXT_MAX + 1];
    size_t olen = 0, blen = 0;

    /* Text form */
    if (mp_b64url_decode((const char *)data, size, bin, sizeof bin, &blen) == MP_OK
        && blen <= MP_WIRE_MAX) {
        if (mp_b64url_encode(bin, blen, txt, sizeof txt, &olen) != MP_OK
            || olen != size || memcmp(txt, data, size) != 0)
            abort();
    }

    if (mp_scrip_decode(data, size, &u.s) == MP_OK)
        same(data, size, mp_scrip_encode(&u.s, out, sizeof out, &olen), olen);
    if (mp_mc_payment_decode(data, size, &u.mp) == MP_OK)
        same(data, size, mp_mc_payment_encode(&u.mp, out, sizeof out, &olen), olen);
    if (mp_mc_reply_decode(data, size, &u.mr) == MP_OK)
        same(data, size, mp_mc_reply_encode(&u.mr, out, sizeof out, &olen), olen);
    if (mp_pw_cert_decode(data, size, &u.c) == MP_OK)
        same(data, size, mp_pw_cert_encode(&u.c, out, sizeof out, &olen), olen);
    if (mp_pw_commit_decode(data, size, &u.cm) == MP_OK)
        same(data, size, mp_pw_commit_encode(&u.cm, out, sizeof out, &olen), olen);
    if (mp_pw_payment_decode(data, size, &u.p) == MP_OK)
        same(data, size, mp_pw_payment_encode(&u.p, out, sizeof out, &olen), olen);
    if (mp_pw_redeem_decode(data, size, &u.r) == MP_OK)
        same(data, size, mp_pw_redeem_encode(&u.r, out, sizeof out, &olen), olen);
    if (mp_receipt_decode(data, size, &u.rc) == MP_OK)
        same(data, size, mp_receipt_encode(&u.rc, out, sizeof out, &olen), olen);
    if (mp_offer_decode(data, size, &u.o) == MP_OK)
        same(data, size, mp_offer_encode(&u.o, out, sizeof out, &olen), olen);
    if (mp_pw_track_decode(data, size, &u.t) == MP_OK)
        same(data, size, mp_pw_track_encode(&u.t, out, sizeof out, &olen), olen);
    return 0;
}
