#!/bin/sh
# Re-derives tests/vectors/libmp.txt with the openssl command line tool and
# perl, independently of libmp: scrip stamp, customer secret, request
# signature, reply MAC, hash chain words, commitment id, the broker's and
# the user's Ed25519 signatures, Ed25519 public keys from their seeds,
# the receipts and the offer laid out from their input fields (receipt
# MACs included), the broker request signature, the wrapped account key,
# the /exchange scrip, customer secret, req_sig and payment, and base64url
# text. Proves the vectors follow docs/PROTOCOL.md rather than merely
# agreeing with our own code.
set -u
dir=$(cd "${top_srcdir:-$(dirname "$0")/..}/tests/vectors" && pwd)
vec=$dir/libmp.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0

v() {   # v SECTION NAME: value of NAME in [SECTION]
    awk -v s="[$1]" -v n="$2" '$0 == s {in_s = 1; next} /^\[/ {in_s = 0}
        in_s && $1 == n && $2 == "=" {sub(/^[^=]*= /, ""); print; exit}' "$vec"
}
bin() { perl -e 'print pack("H*", $ARGV[0])' "$1"; }                    # hex -> bytes
hexof() { perl -e 'local $/; print unpack("H*", <STDIN>)'; }           # bytes -> hex
u64() { perl -e 'print pack("Q>", $ARGV[0])' "$1"; }                       # decimal -> u64 BE
hmac() { openssl mac -digest SHA256 -macopt "hexkey:$1" -binary HMAC | hexof; }
sha() { openssl dgst -sha256 -binary | hexof; }
check() {   # check WHAT EXPECTED ACTUAL
    if [ "$2" = "$3" ] && [ -n "$2" ]; then pass=$((pass + 1));
    else fail=$((fail + 1)); echo "FAIL: $1"; echo "  expected $2"; echo "  derived  $3"; fi
}
amount() {  # amount "0.002 USD" -> hex of the 11-byte amount (3.1): currency, u64 units
    perl -e '$ARGV[0] =~ /^(\d+)(?:\.(\d{1,5}))? ([A-Z]{3})$/ or exit 1;
             print unpack("H*", $3 . pack("Q>", $1 * 100000 + substr(($2 // "") . "00000", 0, 5)))' "$1"
}
str8() { perl -e 'print unpack("H*", pack("C/a*", $ARGV[0]))' "$1"; }    # text -> str8 hex
str16() { perl -e 'print unpack("H*", pack("n/a*", $ARGV[0]))' "$1"; }   # text -> str16 hex
u8h() { printf '%02x' "$1"; }                                             # decimal -> u8 hex
u32h() { perl -e 'print unpack("H*", pack("N", $ARGV[0]))' "$1"; }      # decimal -> u32 hex
u64h() { perl -e 'print unpack("H*", pack("Q>", $ARGV[0]))' "$1"; }     # decimal -> u64 hex
b64url() { bin "$1" | openssl base64 -A | tr '+/' '-_' | tr -d '='; }   # hex -> base64url
head_hex() { printf '%s' "$1" | cut -c1-$(( ${#1} - $2 * 2 )); }     # drop last N bytes
tail_hex() { printf '%s' "$1" | cut -c$(( ${#1} - $2 * 2 + 1 ))-; }  # last N bytes
ed_pub_pem() {   # raw 32-byte public key hex -> PEM SubjectPublicKeyInfo
    bin "302a300506032b6570032100$1" | openssl pkey -pubin -inform DER -out "$2"
}

# Millicent: stamp = HMAC(scrip secret, record before stamp)
scrip=$(v millicent scrip)
check "scrip stamp" "$(tail_hex "$scrip" 32)" \
    "$(bin "$(head_hex "$scrip" 32)" | hmac "$(v millicent scrip_secret_series_1)")"
ms=0101$(str8 "$(v millicent vendor)")$(amount "$(v millicent value)")$(u64h "$(v millicent scrip_id)")
ms=$ms$(u64h "$(v millicent customer_id)")$(u64h "$(v millicent expiry)")$(str8 "$(v millicent props)")
check "scrip from its fields" "$scrip" "$ms$(bin "$ms" | hmac "$(v millicent scrip_secret_series_1)")"
check "scrip base64url" "$(v millicent scrip_base64url)" "$(b64url "$scrip")"
# customer_secret = HMAC(customer master, "MP1 customer" || u64 id)
cs=$( { printf 'MP1 customer'; u64 "$(v millicent customer_id)"; } | hmac "$(v millicent customer_master_series_1)")
check "customer secret" "$(v millicent customer_secret)" "$cs"
# req_sig = HMAC(customer_secret, "MP1 request" || scrip || str8 method || str8 host || str16 target || amount)
rs=$( { printf 'MP1 request'; bin "$scrip"
        bin "$(str8 "$(v millicent request_method)")$(str8 "$(v millicent request_host)")$(str16 "$(v millicent request_target)")$(amount "$(v millicent price)")"
      } | hmac "$cs")
check "request signature" "$(v millicent req_sig)" "$rs"
check "payment record" "$(v millicent payment)" \
    "0102$(printf '%04x' $(( ${#scrip} / 2 )))${scrip}$(amount "$(v millicent price)")${rs}"
reply=$(v millicent reply)
check "reply MAC" "$(tail_hex "$reply" 32)" "$(bin "$(head_hex "$reply" 32)" | hmac "$cs")"
change=$(v millicent change_scrip)
check "change scrip stamp" "$(tail_hex "$change" 32)" \
    "$(bin "$(head_hex "$change" 32)" | hmac "$(v millicent scrip_secret_series_1)")"

# PayWord chain: w_{i-1} = SHA-256(w_i); n = 100
w=$(v payword chain_wn); i=100
while [ $i -gt 0 ]; do
    w=$(bin "$w" | sha); i=$((i - 1))
    case $i in 99) check "chain w99" "$(v payword chain_w99)" "$w";;
               3) check "chain w3" "$(v payword chain_w3)" "$w";;
               1) check "chain w1" "$(v payword chain_w1)" "$w";;
               0) check "chain w0" "$(v payword chain_w0)" "$w";; esac
done

# Ed25519 keys from their seeds (RFC 8032 via OpenSSL's PKCS#8 form)
for who in broker user; do
    bin "302e020100300506032b657004220420$(v keys ${who}_ed25519_seed)" \
        | openssl pkey -inform DER -pubout -outform DER 2>/dev/null | hexof > "$tmp/$who.pub"
    check "$who public key" "$(v keys ${who}_ed25519_public)" "$(tail_hex "$(cat "$tmp/$who.pub")" 32)"
    ed_pub_pem "$(v keys ${who}_ed25519_public)" "$tmp/$who.pem"
done
verify() {   # verify WHAT RECORD_HEX PEM: signature = last 64 bytes, after a u16 length
    rec=$2
    bin "$(head_hex "$rec" 66)" > "$tmp/msg"
    bin "$(tail_hex "$rec" 64)" > "$tmp/sig"
    if openssl pkeyutl -verify -pubin -inkey "$3" -rawin -in "$tmp/msg" -sigfile "$tmp/sig" >/dev/null 2>&1 \
       && [ "$(tail_hex "$(head_hex "$rec" 64)" 2)" = "0040" ]; then pass=$((pass + 1));
    else fail=$((fail + 1)); echo "FAIL: $1 signature"; fi
}
verify "certificate (broker)" "$(v payword cert)" "$tmp/broker.pem"
commit=$(v payword commitment)
verify "commitment (user)" "$commit" "$tmp/user.pem"
check "commitment id" "$(v payword commitment_id)" "$(bin "$commit" | sha)"
# a tampered message must fail, or the check above proves nothing
bin "$(head_hex "$commit" 66)" | perl -pe 's/news/NEWS/' > "$tmp/msg"
if openssl pkeyutl -verify -pubin -inkey "$tmp/user.pem" -rawin -in "$tmp/msg" -sigfile "$tmp/sig" >/dev/null 2>&1; then
    fail=$((fail + 1)); echo "FAIL: tampered commitment verified"; else pass=$((pass + 1)); fi
check "payment i=3 k=2" "$(v payword payment_3_k2)" \
    "0112$(v payword commitment_id)0000000300000002$(v payword chain_w3)00"
check "redemption" "$(v payword redeem_3)" \
    "0113$(printf '%04x' $(( ${#commit} / 2 )))${commit}00000003$(v payword chain_w3)"
# request tag (7.5): first 16 bytes of H("MP1 request-tag" || str8 method
# || str8 host || str16 target || bytes32 SHA-256(body))
bd=$(printf '%s' "$(v payword tag_body)" | sha)
check "body digest" "$(v payword tag_body_digest)" "$bd"
tg=$( { printf 'MP1 request-tag'
        bin "$(str8 "$(v payword tag_method)")$(str8 "$(v payword tag_host)")$(str16 "$(v payword tag_target)")$bd"; } | sha)
check "request tag" "$(v payword request_tag)" "$(printf '%s' "$tg" | cut -c1-32)"

# Receipts (5.9), laid out from their input fields: 0x01 0x20, str8 vendor,
# str16 target, u8 scheme, payer (u64 customer_id for Millicent, bytes32
# commit_id for PayWord), amount price, u64 issued, u64 expiry, then
# mac = HMAC(receipt key, all bytes before it)
for s in millicent payword; do
    rc=$(v receipt receipt_$s)
    check "receipt_$s MAC" "$(tail_hex "$rc" 32)" "$(bin "$(head_hex "$rc" 32)" | hmac "$(v receipt receipt_key)")"
    scheme=$(v receipt ${s}_scheme)
    if [ "$scheme" = 1 ]; then payer=$(u64h "$(v receipt ${s}_payer)"); else payer=$(v receipt ${s}_payer); fi
    body=0120$(str8 "$(v receipt ${s}_vendor)")$(str16 "$(v receipt ${s}_target)")$(u8h "$scheme")$payer
    body=$body$(amount "$(v receipt ${s}_price)")$(u64h "$(v receipt ${s}_issued)")$(u64h "$(v receipt ${s}_expiry)")
    check "receipt_$s from its fields" "$rc" "$body$(bin "$body" | hmac "$(v receipt receipt_key)")"
done

# Offer (5.10) from its input fields: 0x01 0x30, str8 vendor, str8 method,
# str16 target, amount price, u8 schemes, amount pw_unit, str16 broker_url,
# u32 receipt_window, u64 expiry
offer=0130$(str8 "$(v offer vendor)")$(str8 "$(v offer method)")$(str16 "$(v offer target)")
offer=$offer$(amount "$(v offer price)")$(u8h "$(v offer schemes)")$(amount "$(v offer pw_unit)")
offer=$offer$(str16 "$(v offer broker_url)")$(u32h "$(v offer receipt_window)")$(u64h "$(v offer expiry)")
check "offer from its fields" "$(v offer offer)" "$offer"
check "offer base64url" "$(v offer offer_base64url)" "$(b64url "$offer")"

# Broker request signature: HMAC(account key, "MP1 broker" || str8 account ||
# str8 method || str16 target || u64 ts || SHA-256(body)); key wrapping pad
bh=$(printf '%s' "$(v broker body)" | sha)
check "broker body hash" "$(v broker body_sha256)" "$bh"
check "broker request signature" "$(v broker sig)" \
    "$( { printf 'MP1 broker'; perl -e 'print pack("C/a* C/a* n/a*", @ARGV)' "$(v broker account)" \
          "$(v broker method)" "$(v broker target)"; u64 "$(v broker ts)"; bin "$bh"; } \
        | hmac "$(v broker account_key)")"
pad=$( { printf 'MP1 account-key'; perl -e 'print pack("C/a*", $ARGV[0])' "$(v broker account)"; } \
       | hmac "$(v broker account_secret)")
check "wrapped account key" "$(v broker account_key_wrapped)" \
    "$(perl -e 'print unpack("H*", pack("H*", $ARGV[0]) ^ pack("H*", $ARGV[1]))' "$pad" "$(v broker account_key)")"

# /exchange (8.4): broker scrip from its fields (5.1, empty props), the
# customer secret, and req_sig over POST, the broker's authority (the Host
# the client sends, port included) and the request target; the payment is
# the mc_payment record (5.2) carrying it
xs=0101$(str8 "$(v broker exchange_broker)")$(amount "$(v broker exchange_value)")
xs=$xs$(u64h "$(v broker exchange_scrip_id)")$(u64h "$(v broker exchange_customer_id)")
xs=$xs$(u64h "$(v broker exchange_expiry)")00
xs=$xs$(bin "$xs" | hmac "$(v broker exchange_scrip_secret_series_1)")
check "exchange scrip from its fields" "$(v broker exchange_scrip)" "$xs"
xcs=$( { printf 'MP1 customer'; u64 "$(v broker exchange_customer_id)"; } \
       | hmac "$(v broker exchange_customer_master_series_1)")
check "exchange customer secret" "$(v broker exchange_customer_secret)" "$xcs"
xprice=$(amount "$(v broker exchange_price)")
xrs=$( { printf 'MP1 request'; bin "$(v broker exchange_scrip)"
         bin "$(str8 "$(v broker exchange_method)")$(str8 "$(v broker exchange_host)")$(str16 "$(v broker exchange_target)")$xprice"
       } | hmac "$(v broker exchange_customer_secret)")
check "exchange req_sig" "$(v broker exchange_req_sig)" "$xrs"
check "exchange payment record" "$(v broker exchange_payment)" \
    "0102$(printf '%04x' $(( ${#xs} / 2 )))${xs}${xprice}${xrs}"

echo "vectors re-derived with $(openssl version | cut -d' ' -f1-2): $pass passed, $fail failed"
[ $fail -eq 0 ]
