#!/bin/sh
# Re-derives tests/vectors/libmp.txt with the openssl command line tool and
# perl, independently of libmp: scrip stamp, customer secret, request
# signature, reply MAC, hash chain words, commitment id, the broker's and
# the user's Ed25519 signatures, Ed25519 public keys from their seeds,
# receipt MAC and base64url text. Proves the vectors follow
# docs/PROTOCOL.md rather than merely agreeing with our own code.
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
head_hex() { printf '%s' "$1" | cut -c1-$(( ${#1} - $2 * 2 )); }     # drop last N bytes
tail_hex() { printf '%s' "$1" | cut -c$(( ${#1} - $2 * 2 + 1 ))-; }  # last N bytes
ed_pub_pem() {   # raw 32-byte public key hex -> PEM SubjectPublicKeyInfo
    bin "302a300506032b6570032100$1" | openssl pkey -pubin -inform DER -out "$2"
}

# Millicent: stamp = HMAC(scrip secret, record before stamp)
scrip=$(v millicent scrip)
check "scrip stamp" "$(tail_hex "$scrip" 32)" \
    "$(bin "$(head_hex "$scrip" 32)" | hmac "$(v millicent scrip_secret_series_1)")"
check "scrip base64url" "$(v millicent scrip_base64url)" \
    "$(bin "$scrip" | openssl base64 -A | tr '+/' '-_' | tr -d '=')"
# customer_secret = HMAC(customer master, "MP1 customer" || u64 id)
cs=$( { printf 'MP1 customer'; u64 "$(v millicent customer_id)"; } | hmac "$(v millicent customer_master_series_1)")
check "customer secret" "$(v millicent customer_secret)" "$cs"
# req_sig = HMAC(customer_secret, "MP1 request" || scrip || str8 method || str8 host || str16 target || amount)
rs=$( { printf 'MP1 request'; bin "$scrip"
        perl -e 'print pack("C/a* C/a* n/a* a3 Q>", @ARGV)' GET news.example /a/b.html USD 200
      } | hmac "$cs")
check "request signature" "$(v millicent req_sig)" "$rs"
check "payment record" "$(v millicent payment)" \
    "0102$(printf '%04x' $(( ${#scrip} / 2 )))${scrip}$(printf 'USD' | hexof)00000000000000c8${rs}"
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

# Receipts: MAC under the receipt key
for r in receipt_millicent receipt_payword; do
    rc=$(v receipt $r)
    check "$r MAC" "$(tail_hex "$rc" 32)" "$(bin "$(head_hex "$rc" 32)" | hmac "$(v receipt receipt_key)")"
done

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

echo "vectors re-derived with $(openssl version | cut -d' ' -f1-2): $pass passed, $fail failed"
[ $fail -eq 0 ]
