/*
 * mp.h - libmp, the Millicent and PayWord core of mod_micropay.
 * C99 plus OpenSSL 3 only: no httpd, APR, curl or socket headers.
 */
#ifndef MP_H
#define MP_H
#include "mp_status.h"
#include "mp_limits.h"
#include "mp_amount.h"
#include "mp_crypto.h"
#include "mp_wire.h"
#include "mp_millicent.h"
#include "mp_payword.h"
#include "mp_chain.h"
#include "mp_offer.h"
#include "mp_pwtrack.h"
#include "mp_keyfile.h"
#include "mp_broker.h"
#include "mp_seal.h"
#endif
