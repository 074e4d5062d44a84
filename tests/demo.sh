#!/bin/sh
# The CLI demo end to end: both scenarios succeed and show the refusals,
# decode round-trips a record the demo printed, garbage is refused.
set -u
demo=${top_builddir:-.}/tools/mpdemo
fail=0
out=$($demo millicent) || { echo "FAIL: mpdemo millicent exited $?"; fail=1; }
for want in "payment VALID" "reply VALID" "refused (forged)" "refused (wrong-vendor)" "refused (expired)"; do
    echo "$out" | grep -qF "$want" || { echo "FAIL: millicent output lacks '$want'"; fail=1; }
done
scrip=$(echo "$out" | sed -n 's/^  wire ([0-9]* B) *//p' | head -n 1)
$demo decode "$scrip" | grep -q "news.example" || { echo "FAIL: decode of printed scrip"; fail=1; }
out=$($demo payword) || { echo "FAIL: mpdemo payword exited $?"; fail=1; }
for want in "commitment VALID" "pays word 7 (5 units" "refused (already-spent)" "vendor is owed 0.007 USD"; do
    echo "$out" | grep -qF "$want" || { echo "FAIL: payword output lacks '$want'"; fail=1; }
done
if $demo decode 'AQE' 2>/dev/null; then echo "FAIL: truncated record decoded"; fail=1; fi
if $demo decode 'not+base64' 2>/dev/null; then echo "FAIL: bad base64 decoded"; fail=1; fi
$demo bogus 2>/dev/null; [ $? -eq 2 ] || { echo "FAIL: usage error must exit 2"; fail=1; }
[ $fail -eq 0 ] && echo "mpdemo: scenarios, decode and refusals as expected"
exit $fail
