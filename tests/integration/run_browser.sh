#!/bin/bash
# run_browser.sh [BUILD_DIR] - a real browser through the wallet: Debian's
# headless Chromium with --proxy-server at wallet-proxy (scripts/system.sh
# sets up Apache, the vendors, the broker, alice's account and the wallet).
#
#  1. opens news.example's paid gallery: the page and its four paid images
#     load in parallel; the rendered DOM has the paid text, the vendor was
#     paid five times (page + 4 images), each once;
#  2. opens the wallet UI on the wallet's own origin: after its scripts ran,
#     the history shows the gallery payment;
#  3. opens a page above the threshold: the browser lands on the wallet's
#     confirmation page (price, site, Pay and Decline), nothing paid.
# Screenshots of each are kept in $MP_ARTIFACTS (default
# <repo>/artifacts/browser). Needs root, chromium, curl, jq. Last line
# "N passed, M failed"; exit 1 on any failure.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
# shellcheck source=tests/integration/lib.sh
. "$here/lib.sh"
# shellcheck source=scripts/system.sh
. "$top/scripts/system.sh"
BUILD=${1:-$top/build/release}
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || { echo "run_browser.sh: no build dir" >&2; exit 2; }
APACHE2=${APACHE2:-$(command -v apache2 || echo /usr/sbin/apache2)}
CHROMIUM=${CHROMIUM:-$(command -v chromium || echo /usr/bin/chromium)}
ART=${MP_ARTIFACTS:-$top/artifacts/browser}
[ -x "$CHROMIUM" ] || { echo "run_browser.sh: needs chromium (apt-get install chromium)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run_browser.sh: must run as root" >&2; exit 2; }
mkdir -p "$ART"

npass=0
nfail=0
apid=""
wpid=""
t0=$(date +%s)
T=$(mktemp -d /tmp/mp-br.XXXXXX)
chmod 755 "$T"
pass() { npass=$((npass + 1)); echo "PASS $*"; }
fail() { nfail=$((nfail + 1)); echo "FAIL $*"; }
check() { if [ "$1" = 0 ]; then pass "$2"; else fail "$2${3:+: $3}"; fi; }
cleanup() {
    sys_stop
    if [ "$nfail" != 0 ]; then echo "     temp dir kept: $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
finish() {
    echo "     $(($(date +%s) - t0)) s; screenshots in $ART"
    echo "$npass passed, $nfail failed"
    [ "$nfail" = 0 ]
    exit $?
}

# chrome OUT_PREFIX URL: a fresh headless Chromium through the wallet; writes
# OUT_PREFIX.png (screenshot) and OUT_PREFIX.html (DOM after scripts ran).
chrome() {
    local out=$1 url=$2 prof
    prof=$(mktemp -d "$T/profile.XXXXXX")
    local flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
        --disable-background-networking --disable-component-update --disable-sync
        --user-data-dir="$prof" --proxy-server="http://127.0.0.1:$wport"
        --window-size=1100,800 --virtual-time-budget=4000 --run-all-compositor-stages-before-draw)
    timeout 60 "$CHROMIUM" "${flags[@]}" --dump-dom "$url" >"$out.html" 2>>"$T/chromium.log"
    prof=$(mktemp -d "$T/profile.XXXXXX")
    flags[8]=--user-data-dir="$prof"
    timeout 60 "$CHROMIUM" "${flags[@]}" --screenshot="$out.png" "$url" >>"$T/chromium.log" 2>&1
}
earned() {
    "$BUILD/tools/mpadmin" --json earnings "$T/news-store" --by scheme |
        jq -r '[.totals[] | .units] | add // 0'
}

echo "temp dir $T"
sys_setup || { fail "setup"; finish; }
sys_wallet_start || { fail "wallet start"; finish; }
pass "Apache on $port (news.example, shop.example), broker on $bport, wallet on $wport"
N="http://news.example:$port"

chrome "$T/gallery" "$N/paid/gallery.html"
grep -q 'Paid gallery of news' "$T/gallery.html"; check $? "Chromium renders the paid gallery through the wallet"
[ -s "$T/gallery.png" ] && cp "$T/gallery.png" "$ART/1-paid-gallery.png"; check $? "screenshot 1-paid-gallery.png"
imgs=$(grep -c 'news.example GET /paid/img[1-4].svg 200' "$T/access.log")
[ "$imgs" -ge 4 ]; check $? "its four paid images were served ($imgs)"
# the two Chromium runs (DOM, screenshot) each load the page; the second pays nothing
# new for the page and images (receipts), so the ledger holds exactly 5 payments of 0.01
e=$(earned)
[ "$e" = 5000 ]; check $? "page + 4 images paid once each: news earned 0.05 USD ($e units)"

chrome "$T/ui" "http://127.0.0.1:$wport/"
grep -q 'gallery.html' "$T/ui.html" && grep -q 'img1.svg' "$T/ui.html"
check $? "the wallet UI shows the payments in its history"
[ -s "$T/ui.png" ] && cp "$T/ui.png" "$ART/2-wallet-ui.png"; check $? "screenshot 2-wallet-ui.png"

chrome "$T/confirm" "$N/dear/report.html"
grep -qi 'confirm' "$T/confirm.html" && grep -q '0.5' "$T/confirm.html" && grep -q 'news.example' "$T/confirm.html"
check $? "a page above the threshold lands on the wallet's confirmation page"
[ "$(earned)" = "$e" ]; check $? "nothing paid for it"
[ -s "$T/confirm.png" ] && cp "$T/confirm.png" "$ART/3-confirmation.png"; check $? "screenshot 3-confirmation.png"
finish
