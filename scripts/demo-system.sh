#!/bin/bash
# demo-system.sh BUILD_DIR [--once] - the body of the main job (scripts/demo.sh):
# the whole system up, one paid page through the wallet, what was paid, and
# where to point a browser. tests/demo-system.sh runs it with --once.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:?usage: demo-system.sh BUILD_DIR [--once]}" && pwd)
once=0
[ "${2:-}" = --once ] && once=1
[ -t 0 ] || once=1
APACHE2=${APACHE2:-$(command -v apache2 || echo /usr/sbin/apache2)}
# shellcheck source=tests/integration/lib.sh
. "$top/tests/integration/lib.sh"
# shellcheck source=scripts/system.sh
. "$top/scripts/system.sh"
apid=""
wpid=""
T=$(mktemp -d /tmp/mp-demo.XXXXXX)
chmod 755 "$T"
cleanup() { sys_stop; rm -rf "$T"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== setting up: keys, vendor stores, broker store, account alice (10.00 USD), Apache"
sys_setup || exit 1
sys_wallet_start || exit 1
mpw() { "$BUILD/tools/mpwallet" -d "$T/wallet" -u "http://127.0.0.1:$wport" "$@"; }
url="http://news.example:$port/paid/a1.html"
echo "   vendors news.example and shop.example on 127.0.0.1:$port, broker on 127.0.0.1:$bport/mp"
echo "   wallet-proxy on 127.0.0.1:$wport (state in $T/wallet)"
echo
echo "== fetching $url through the wallet (curl -x http://127.0.0.1:$wport)"
code=$(curl -s --max-time 30 -x "http://127.0.0.1:$wport" -o "$T/page" -D "$T/headers" -w '%{http_code}' "$url")
echo "   HTTP $code, $(wc -c <"$T/page") bytes: $(sed -e 's/<[^>]*>/ /g' "$T/page" | tr -s ' ' | head -c 120)"
grep -i '^payment-receipt:' "$T/headers" >/dev/null && echo "   the vendor's receipt came with it (reloads for 10 minutes are free)"
surl="http://shop.example:$port/paid/a1.html"
echo
echo "== fetching $surl (PayWord only) through the wallet"
scode=$(curl -s --max-time 30 -x "http://127.0.0.1:$wport" -o "$T/spage" -w '%{http_code}' "$surl")
echo "   HTTP $scode, $(wc -c <"$T/spage") bytes: $(sed -e 's/<[^>]*>/ /g' "$T/spage" | tr -s ' ' | head -c 120)"
echo
echo "== what was paid (mpwallet history)"
mpw history -n 5
echo
echo "== the wallet's holdings (mpwallet balance)"
mpw balance
echo
echo "== the broker's view of alice's account (mpadmin accounts show)"
"$BUILD/tools/mpadmin" accounts show "$T/bstore" alice
echo
echo "== the vendor's ledger (mpadmin earnings)"
"$BUILD/tools/mpadmin" earnings "$T/news-store" --by path
[ "$code" = 200 ] && [ "$scode" = 200 ] ||
    { echo "a paid page was not served (HTTP $code, $scode)" >&2; exit 1; }
echo
cat <<EOF
== point a browser at the wallet
   proxy:    HTTP proxy 127.0.0.1 port $wport
             (or automatic configuration: http://127.0.0.1:$wport/proxy.pac)
             e.g. chromium --proxy-server=http://127.0.0.1:$wport --user-data-dir=\$(mktemp -d)
   then open http://news.example:$port/          (Millicent, 0.01 USD a page)
             http://shop.example:$port/paid/a1.html (PayWord, 0.02 USD)
             http://news.example:$port/dear/report.html (0.50 USD: asks you first)
   wallet:   http://127.0.0.1:$wport/  (balances, history, budgets, confirmations)
   CLI:      $BUILD/tools/mpwallet -d $T/wallet -u http://127.0.0.1:$wport balance
EOF
if [ "$once" = 0 ]; then
    echo
    printf 'Everything keeps running; press Enter (or Ctrl-C) to stop it. '
    read -r _ || true
fi
