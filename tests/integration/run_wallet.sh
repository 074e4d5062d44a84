#!/bin/bash
# run_wallet.sh [BUILD_DIR] - wallet-proxy end to end: Debian's apache2 with
# mod_micropay (two vendors) and the broker, a funded customer, the wallet
# in front (scripts/system.sh sets it all up), and curl -x through it.
#
# Proxying: free pages byte for byte, HEAD, POST/PUT bodies (Content-Length
# and chunked) to a CGI that answers chunked, redirects handed to the
# client, keep-alive, a 4 MB download with the wallet's memory flat, CONNECT
# tunnels (allowed and refused ports), the PAC file, limits (431, 413).
# Paying: Millicent with change, PayWord, receipts making reloads free,
# paying up front after the first 402 of a realm, parallel requests to one
# vendor in both schemes (each paid once, no refusal), the threshold and the
# budgets holding payments for confirmation (approve and decline through
# mpwallet), the UI's token and Origin checks, a dead broker, and kill -9 of
# the wallet in the middle of payments: money is conserved to the unit
#   10.00 USD in = alice's account + the wallet's scrip + what news.example
#                  earned (Millicent) + ... (PayWord runs are checked apart)
#
# BUILD_DIR defaults to ../../build/release. Needs root (Apache's User
# www-data), curl, jq. Servers bind 127.0.0.1 on free ports and are stopped
# by PID. Output: PASS/FAIL per step, last line "N passed, M failed"; exit 1
# on any failure. MP_WT_KEEP=1 keeps the temp dir.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
# shellcheck source=tests/integration/lib.sh
. "$here/lib.sh"
# shellcheck source=scripts/system.sh
. "$top/scripts/system.sh"
BUILD=${1:-$top/build/release}
if ! BUILD=$(cd "$BUILD" 2>/dev/null && pwd); then
    echo "run_wallet.sh: build directory ${1:-$top/build/release} not found" >&2
    exit 2
fi
APACHE2=${APACHE2:-$(command -v apache2 || echo /usr/sbin/apache2)}
mpwallet=$BUILD/tools/mpwallet
for f in "$BUILD/mod_micropay/.libs/mod_micropay.so" "$BUILD/tools/mpadmin" \
         "$BUILD/wallet-proxy/wallet-proxy" "$mpwallet" "$APACHE2"; do
    [ -x "$f" ] || [ -f "$f" ] || { echo "run_wallet.sh: missing $f" >&2; exit 2; }
done
for t in jq curl; do
    command -v "$t" >/dev/null || { echo "run_wallet.sh: needs $t" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "run_wallet.sh: must run as root" >&2; exit 2; }

npass=0
nfail=0
apid=""
wpid=""
t0=$(date +%s)
T=$(mktemp -d /tmp/mp-wt.XXXXXX)
chmod 755 "$T"

pass() { npass=$((npass + 1)); echo "PASS $*"; }
fail() { nfail=$((nfail + 1)); echo "FAIL $*"; }
note() { echo "     $*"; }
check() { if [ "$1" = 0 ]; then pass "$2"; else fail "$2${3:+: $3}"; fi; }

cleanup() {
    sys_stop
    [ -n "${bgpid:-}" ] && kill "$bgpid" 2>/dev/null
    if [ "${MP_WT_KEEP:-0}" = 1 ] || [ "$nfail" != 0 ]; then
        echo "     temp dir kept: $T"
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

finish() {
    echo "     $(($(date +%s) - t0)) s"
    echo "$npass passed, $nfail failed"
    [ "$nfail" = 0 ]
    exit $?
}

W() { "$mpwallet" -d "$T/wallet" -u "http://127.0.0.1:$wport" "$@"; }
WJ() { W --json "$@"; }
# wq JQ COMMAND...: the jq value of mpwallet --json COMMAND
wq() { local q=$1; shift; WJ "$@" 2>>"$T/mpwallet.err" | jq -r "$q" 2>/dev/null; }
# fetch URL [CURL ARGS]: through the wallet; status in $st, body in $T/body, headers $T/hdr
fetch() {
    local url=$1
    shift
    st=$(curl -s --max-time 30 -x "http://127.0.0.1:$wport" -o "$T/body" -D "$T/hdr" -w '%{http_code}' "$@" "$url")
}
direct() {
    local url=$1
    shift
    curl -s --noproxy '*' --max-time 30 --resolve "news.example:$port:127.0.0.1" \
        --resolve "shop.example:$port:127.0.0.1" "$@" "$url"
}
N=""; S=""    # base URLs, set after setup
count402() { grep -c "^$1 GET $2 402\$" "$T/access.log" || true; }
earned() {    # earned VENDOR SCHEME -> units the vendor's ledger holds for SCHEME
    "$BUILD/tools/mpadmin" --json earnings "$T/$1-store" --by scheme |
        jq -r --arg s "$2" '[.rows[] | select(.scheme == $s) | .units] | add // 0'
}
wallet_units() {    # broker scrip + vendor scrip the wallet holds, in units
    WJ balance 2>>"$T/mpwallet.err" | jq -r '.broker.scrip_units + ([.vendors[].scrip_units] | add // 0)'
}
hist_count() {    # hist_count JQ_FILTER: history entries matching
    WJ history -n 1000 2>>"$T/mpwallet.err" | jq "[.[] | select($1)] | length"
}
# parallel_pages SITE I...: fetches SITE's /paid/aI.html for every I at
# once through the wallet; prints how many came back 200 with the right bytes.
parallel_pages() {
    local site=$1 i ok=0 pids=""
    shift
    for i in "$@"; do
        curl -s --max-time 30 -x "http://127.0.0.1:$wport" -o "$T/par-$site$i" -w '%{http_code}\n' \
            "http://$site.example:$port/paid/a$i.html" >"$T/par-$site$i.st" &
        pids="$pids $!"
    done
    # shellcheck disable=SC2086
    wait $pids
    for i in "$@"; do
        [ "$(cat "$T/par-$site$i.st")" = 200 ] && cmp -s "$T/par-$site$i" "$T/htdocs/$site/paid/a$i.html" &&
            ok=$((ok + 1))
    done
    echo "$ok"
}
logcheck() {
    local bad
    bad=$(grep -E '\[([a-z0-9_]+:)?(warn|error|crit|alert|emerg)\]' "$T/error.log" |
          grep -vE "${1:+$1|}$sys_log_allow" || true)
    if [ -z "$bad" ]; then pass "$2: Apache error.log has no unexpected warn/error lines"
    else fail "$2: unexpected error.log lines:"; echo "$bad" | head -10 | sed 's/^/       /'; fi
}

echo "temp dir $T"
if sys_setup; then pass "setup: keys, stores, account alice (10.00 USD), Apache on $port/$bport"
else fail "setup"; finish; fi
N="http://news.example:$port"
S="http://shop.example:$port"
money_in=1000000
if sys_wallet_start; then pass "wallet-proxy started on 127.0.0.1:$wport (pid $wpid)"
else fail "wallet-proxy start"; finish; fi
[ "$(stat -c %a "$T/wallet")" = 700 ] && [ "$(stat -c %a "$T/wallet/ui.token")" = 600 ]
check $? "state dir 0700, ui.token 0600"
bad=$(find "$T/wallet" -type f ! -perm 0600 | head -3)
[ -z "$bad" ]; check $? "every wallet file is 0600" "$bad"

# ---- proxying ----------------------------------------------------------------------------------------
fetch "$N/"
[ "$st" = 200 ] && cmp -s "$T/body" "$T/htdocs/news/index.html"; check $? "free page through the wallet, byte for byte ($st)"
grep -qi '^via: 1.1 mpwallet' "$T/hdr"; check $? "response carries Via: 1.1 mpwallet"
fetch "$N/" -I
[ "$st" = 200 ] && grep -qi "^content-length: $(stat -c %s "$T/htdocs/news/index.html")" "$T/hdr"
check $? "HEAD: 200 with the Content-Length of the page, no body"
fetch "$N/cgi/echo" --data-binary "hello wallet"
[ "$st" = 200 ] && grep -q '^method=POST$' "$T/body" && grep -q '^length=12$' "$T/body" &&
    grep -q "^sha256=$(printf 'hello wallet' | sha256sum | cut -c1-64)" "$T/body"
check $? "POST body reaches the CGI intact, chunked answer relayed" "$(head -c 200 "$T/body")"
head -c 300000 /dev/urandom >"$T/upload"
fetch "$N/cgi/echo" -X PUT -H 'Transfer-Encoding: chunked' --data-binary @"$T/upload"
[ "$st" = 200 ] && grep -q '^method=PUT$' "$T/body" &&
    grep -q "^sha256=$(sha256sum <"$T/upload" | cut -c1-64)" "$T/body"
check $? "PUT with a chunked 300 KB body: intact" "$st $(head -c 200 "$T/body")"
fetch "$N/old.html"
[ "$st" = 302 ] && grep -qi '^location: .*/index.html' "$T/hdr"; check $? "redirect handed to the client, not followed ($st)"
out=$(curl -sv --max-time 20 -x "http://127.0.0.1:$wport" "$N/" "$N/paid/../index.html" -o /dev/null -o /dev/null 2>&1)
grep -q 'Re-using existing connection' <<<"$out"; check $? "keep-alive: the second request reuses the connection"
rss0=$(awk '/VmRSS/ {print $2}' "/proc/$wpid/status")
for _ in 1 2 3 4 5; do
    fetch "$N/big.bin"
done
rss1=$(awk '/VmRSS/ {print $2}' "/proc/$wpid/status")
[ "$st" = 200 ] && cmp -s "$T/body" "$T/htdocs/news/big.bin"; check $? "4 MB download intact"
[ $((rss1 - rss0)) -lt 3000 ]; check $? "memory flat over 5 x 4 MB downloads (RSS $rss0 -> $rss1 KiB)"
out=$(curl -s --max-time 10 -p -x "http://127.0.0.1:$wport" "$N/index.html")
grep -q 'Free front page' <<<"$out"; check $? "CONNECT tunnel to an allowed port carries the bytes"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -p -x "http://127.0.0.1:$wport" "http://news.example:$bport/" 2>/dev/null)
[ "$code" = 403 ] || [ "$code" = 000 ]
c=$(curl -s -o /dev/null -w '%{http_connect}' --max-time 10 -p -x "http://127.0.0.1:$wport" "http://news.example:$bport/")
[ "$c" = 403 ]; check $? "CONNECT to a port not in ConnectPort: 403 ($c)"
pac=$(curl -s --noproxy '*' "http://127.0.0.1:$wport/proxy.pac")
grep -q "PROXY 127.0.0.1:$wport" <<<"$pac" && grep -q FindProxyForURL <<<"$pac"; check $? "PAC file names the wallet"
fetch "$N/" -H "X-Big: $(head -c 70000 /dev/zero | tr '\0' a)"
[ "$st" = 431 ]; check $? "headers over the limit: 431 ($st)"
head -c 9000000 /dev/zero >"$T/huge"
fetch "$N/cgi/echo" --data-binary @"$T/huge"
[ "$st" = 413 ]; check $? "request body over MaxRequestBody: 413 ($st)"

# ---- paying: Millicent ------------------------------------------------------------------------------
acct0=$(sys_account_units)
fetch "$N/paid/a1.html"
[ "$st" = 200 ] && cmp -s "$T/body" "$T/htdocs/news/paid/a1.html"
check $? "Millicent: paid page served as if free ($st)" "$(head -c 300 "$T/body")"
grep -qi '^payment-receipt:' "$T/hdr"; check $? "the response carries the vendor's receipt"
[ "$(count402 news.example /paid/a1.html)" = 1 ]; check $? "one 402 round trip for the first page"
acct1=$(sys_account_units)
[ "$((acct0 - acct1))" = 100000 ]; check $? "broker scrip bought: account -1.00 USD (Topup) ($acct0 -> $acct1)"
e1=$(earned news millicent)
[ "$e1" = 1000 ]; check $? "news.example earned 0.01 USD ($e1 units)"
vs=$(WJ balance | jq -r '[.vendors[] | select(.vendor == "news.example") | .scrip_units] | add // 0')
[ "$vs" -gt 0 ]; check $? "change kept: vendor scrip for news.example in the wallet ($vs units)"
wu=$(wallet_units)
[ "$((acct1 + wu + e1))" = "$money_in" ]; check $? "money conserved: account $acct1 + wallet $wu + earned $e1 = $money_in"
fetch "$N/paid/a1.html"
[ "$st" = 200 ] && [ "$(earned news millicent)" = "$e1" ]; check $? "reload within the receipt window: served, not charged"
[ "$(hist_count '.scheme == "receipt"')" -ge 1 ]; check $? "history records the receipt use"
fetch "$N/paid/a2.html"
[ "$st" = 200 ] && [ "$(count402 news.example /paid/a2.html)" = 0 ]
check $? "second page of the realm paid up front: no 402 round trip ($st)"
[ "$(earned news millicent)" = 2000 ]; check $? "news.example earned 0.02 USD in all"
fetch "$N/"
[ "$st" = 200 ] && [ "$(earned news millicent)" = 2000 ]; check $? "free page of a paying realm: nothing paid"

# parallel: 6 pages of one vendor at once
ok=$(parallel_pages news 3 4 5 6 7 8)
[ "$ok" = 6 ]; check $? "6 parallel Millicent pages: all served ($ok/6)"
[ "$(earned news millicent)" = 8000 ]; check $? "each paid exactly once: news earned 0.08 USD ($(earned news millicent))"
refused=$(grep -c "^news.example GET /paid/a[3-8].html 402" "$T/access.log" || true)
[ "$refused" -le 6 ]; check $? "no refusals from ordering: at most the offers' 402s ($refused)"

# ---- paying: PayWord -------------------------------------------------------------------------------
fetch "$S/paid/a1.html"
[ "$st" = 200 ] && cmp -s "$T/body" "$T/htdocs/shop/paid/a1.html"
check $? "PayWord: paid page served ($st)" "$(head -c 300 "$T/body")"
ch=$(WJ balance | jq -c '[.chains[] | select(.vendor == "shop.example")][0]')
[ "$(jq -r '.used' <<<"$ch")" = 2 ] && [ "$(jq -r '.unit' <<<"$ch")" = "0.01 USD" ]
check $? "a chain for shop.example, 2 words of 0.01 USD used" "$ch"
ok=$(parallel_pages shop 2 3 4 5 6 7)
[ "$ok" = 6 ]; check $? "6 parallel PayWord pages: all served ($ok/6)"
pe=$(earned shop payword)
[ "$pe" = 14000 ]; check $? "each paid once: shop earned 0.14 USD ($pe units)"
used=$(WJ balance | jq -r '[.chains[] | select(.vendor == "shop.example") | .used] | add')
[ "$used" = 14 ]; check $? "14 words used in all ($used)"

# ---- PayWord not offered: plain http without MicropayPayWordOverHTTP ---------------------------------
W budget set --prefer payword >/dev/null; check $? "mpwallet budget set --prefer payword"
e0=$(earned news millicent); pe0=$(earned news payword)
fetch "$N/plain/a1.html"
[ "$st" = 200 ] && cmp -s "$T/body" "$T/htdocs/news/plain/a1.html" &&
    [ "$(earned news millicent)" = "$((e0 + 1000))" ] && [ "$(earned news payword)" = "$pe0" ]
check $? "prefers PayWord, the offer lists only Millicent: paid with Millicent ($st, news earned $(earned news millicent) / $(earned news payword))"
W budget set --prefer millicent >/dev/null; check $? "mpwallet budget set --prefer millicent"

# ---- policy: threshold, confirmation, budgets ------------------------------------------------------
e0=$(earned news millicent)
fetch "$N/dear/report.html"
[ "$st" = 303 ] && grep -qi "^location: http://127.0.0.1:$wport/confirm/" "$T/hdr"
check $? "above the threshold: 303 to the wallet's confirmation page ($st)"
confirm=$(sed -n 's/^[Ll]ocation: *//p' "$T/hdr" | tr -d '\r')
hid=${confirm##*/}
[ "$(earned news millicent)" = "$e0" ]; check $? "nothing paid while held"
page=$(curl -s --noproxy '*' "$confirm")
grep -q '0.5' <<<"$page" && grep -q 'news.example' <<<"$page"; check $? "confirmation page shows price and site"
[ "$(wq 'length' pending)" = 1 ]; check $? "mpwallet pending lists it"
code=$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' -X POST -H 'Content-Type: application/json' \
    -H "Origin: $N" -H "X-Wallet-Token: $(cat "$T/wallet/ui.token")" -d '{}' \
    "http://127.0.0.1:$wport/api/pending/$hid/approve")
[ "$code" = 403 ]; check $? "approve with a foreign Origin: 403 ($code)"
code=$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' -X POST -H 'Content-Type: application/json' \
    -H "Origin: http://127.0.0.1:$wport" -d '{}' "http://127.0.0.1:$wport/api/pending/$hid/approve")
[ "$code" = 403 ]; check $? "approve without the session token: 403 ($code)"
W approve "$hid" >/dev/null; check $? "mpwallet approve"
fetch "$N/dear/report.html"
[ "$st" = 200 ] && [ "$(earned news millicent)" = "$((e0 + 50000))" ]; check $? "approved: the dear page is paid and served ($st)"
W budget set --site-budget "0.55 USD" >/dev/null; check $? "mpwallet budget set --site-budget 0.55 USD"
[ "$(wq '.site_budget' budget)" = "0.55 USD" ]; check $? "budget shows 0.55 USD"
e0=$(earned news millicent)
fetch "$N/paid/gallery.html"
[ "$st" = 303 ] && [ "$(earned news millicent)" = "$e0" ]; check $? "over the site budget: held, not paid ($st)"
hid=$(sed -n 's/^[Ll]ocation: *//p' "$T/hdr" | tr -d '\r'); hid=${hid##*/}
W decline "$hid" >/dev/null; check $? "mpwallet decline"
fetch "$N/paid/gallery.html"
[ "$st" = 402 ] && grep -qi 'declined' "$T/body"; check $? "declined: the browser gets a declined page ($st)"
W budget set --site-budget "5.00 USD" --threshold "0.10 USD" >/dev/null

# budgets under concurrency: the decision to pay reserves the price in the
# same transaction, so parallel requests cannot all pass one budget check
sp=$(wq '.spent_today_units' balance)
W budget set --daily-budget "$(awk -v u="$sp" 'BEGIN { printf "%.5f USD", (u + 2000) / 100000 }')" >/dev/null
e0=$(earned news millicent)
for i in 1 2 3 4 5 6 7 8; do
    curl -s --max-time 30 -x "http://127.0.0.1:$wport" -o /dev/null -w '%{http_code}\n' "$N/paid/a$i.html?race=$i" >"$T/race$i.st" &
    pids="${pids:-} $!"
done
# shellcheck disable=SC2086
wait $pids; pids=""
served=$(cat "$T"/race*.st | grep -c '^200$'); sp1=$(wq '.spent_today_units' balance)
[ "$(earned news millicent)" -le "$((e0 + 2000))" ] && [ "$sp1" -le "$((sp + 2000))" ] && [ "$served" -le 2 ]
check $? "8 parallel payments with room for 2 in the daily budget: at most 2 paid ($served served, news earned $e0 -> $(earned news millicent), spent $sp -> $sp1)"
W budget set --daily-budget "5.00 USD" >/dev/null

# ---- CLI --------------------------------------------------------------------------------------------
W balance >"$T/cli.out" 2>&1 && grep -q news.example "$T/cli.out"; check $? "mpwallet balance (human)"
[ "$(hist_count '.status == "paid"')" -ge 10 ]; check $? "mpwallet history --json: the payments are there"
a0=$(sys_account_units); b0=$(wq '.broker.scrip_units' balance)
W topup "0.50 USD" >/dev/null; check $? "mpwallet topup 0.50 USD"
a1=$(sys_account_units); b1=$(wq '.broker.scrip_units' balance)
[ "$((a0 - a1))" = 50000 ] && [ "$((b1 - b0))" = 50000 ]
check $? "top-up: account -0.50 USD, broker scrip +0.50 USD ($a0 -> $a1, $b0 -> $b1)"
W topup "1 EUR" >/dev/null 2>&1
[ $? = 1 ] && [ "$(sys_account_units)" = "$a1" ]; check $? "top-up in another currency: refused (exit 1), nothing bought"
"$mpwallet" -d "$T/wallet" -u "http://127.0.0.1:1" balance >/dev/null 2>&1
[ $? = 3 ]; check $? "mpwallet with no daemon: exit 3"

# ---- upstream response heads the wallet must not pass on as they are -----------------------------------
# (a raw upstream: Apache itself never sends these)
if command -v python3 >/dev/null; then
    cat >"$T/raw.py" <<'EOS'
import socket, sys
ans = {b"/cr": b"HTTP/1.1 200 OK\rSet-Cookie: r=1\r\nX-A: one\rSet-Cookie: evil=1\r\nContent-Length: 2\r\n\r\nhi",
       b"/cl2": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\nhiHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
       b"/sp": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\nConnection: close\r\n\r\nhi",
       b"/conn": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: Content-Length\r\n\r\nhi"}
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(8)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
while True:
    c, _ = s.accept(); req = c.recv(65536)
    c.sendall(ans.get(req.split(b" ")[1].split(b"?")[0] if b" " in req else b"", b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")); c.close()
EOS
    python3 "$T/raw.py" "$T/raw.port" & rawpid=$!
    k=50; while [ ! -s "$T/raw.port" ] && [ $k -gt 0 ]; do sleep 0.1; k=$((k - 1)); done
    R="http://127.0.0.1:$(cat "$T/raw.port")"
    fetch "$R/cr"
    [ "$st" = 200 ] && [ "$(tr -cd '\r' <"$T/hdr" | wc -c)" = "$(grep -c '' "$T/hdr")" ] && ! grep -qi '^set-cookie' "$T/hdr"
    check $? "bare CR in upstream reason/values: replaced by SP, no injected header line ($st)"
    fetch "$R/cl2"
    [ "$st" = 502 ]; check $? "conflicting upstream Content-Length fields: 502 ($st)"
    fetch "$R/sp"
    [ "$st" = 200 ] && ! grep -qi '^content-length *:' "$T/hdr" && [ "$(cat "$T/body")" = hi ]
    check $? "upstream field name with a space (Content-Length :) dropped ($st)"
    fetch "$R/conn"
    [ "$st" = 200 ] && { ! grep -qi '^content-length:' "$T/hdr" && grep -qi '^transfer-encoding: chunked' "$T/hdr"; } && [ "$(cat "$T/body")" = hi ]
    check $? "Content-Length named by Connection: stripped and the body re-framed chunked ($st)"
    kill "$rawpid" 2>/dev/null; wait "$rawpid" 2>/dev/null
else
    note "python3 missing: upstream response head checks skipped"
fi

# ---- offers the wallet must not pay ------------------------------------------------------------------
e0=$(earned news millicent); wu0=$(wallet_units)
fetch "$N/cgi/bad402"
[ "$st" = 402 ] && grep -qi 'offer' "$T/body" && grep -qi '<html' "$T/body"
check $? "a malformed offer: the wallet's own explanation page, status 402 ($st)" "$(head -c 200 "$T/body")"
direct "$N/paid/a1.html?stolen" -o /dev/null -D "$T/real402"
grep -i '^www-authenticate: payment' "$T/real402" | tr -d '\r' >"$T/cgi/offer.hdr"
fetch "$N/cgi/stolen402"
[ "$st" = 402 ] && grep -qi '<html' "$T/body"; check $? "a real offer for another target: refused with a page ($st)"
[ "$(earned news millicent)" = "$e0" ] && [ "$(wallet_units)" = "$wu0" ]
check $? "nothing paid for either ($(earned news millicent) / $(wallet_units) units)"
fetch "http://evil.example:$port/paid/a1.html"
[ "$st" = 402 ] && grep -q 'pays at news.example' "$T/body" && [ "$(wallet_units)" = "$wu0" ]
check $? "another host's offer naming news.example: refused, nothing paid ($st)" "$(head -c 300 "$T/body")"

# ---- a second wallet: the broker down, then PayWord chains running out --------------------------------
mw_pid=$wpid; mw_port=$wport
WNAME=w2 sys_wallet_conf
sed -i -e "s|^BrokerURL .*|BrokerURL http://127.0.0.1:1/mp|" -e 's/^Topup .*/Topup 0.10 USD/' \
    -e 's/^PayWordOverHTTP .*/PayWordOverHTTP off/' "$T/w2.conf"
if WNAME=w2 sys_wallet_start; then pass "second wallet on $wport (broker URL points at a closed port)"
else fail "second wallet start"; finish; fi
acct0=$(sys_account_units)
fetch "$N/paid/a1.html"
[ "$st" = 502 ] || [ "$st" = 402 ] || [ "$st" = 503 ]
ok=$?; grep -qi 'broker' "$T/body" || ok=1
check $ok "broker unreachable: a page that says so ($st)" "$(head -c 300 "$T/body")"
[ "$(sys_account_units)" = "$acct0" ] && [ "$(earned news millicent)" = "$e0" ]
check $? "broker unreachable: the account and the vendor are untouched"
w2() { "$mpwallet" -d "$T/w2" -u "http://127.0.0.1:$wport" --json "$@"; }
pe0=$(earned shop payword)
fetch "$S/paid/a8.html"
[ "$st" = 402 ] && grep -q 'TLS' "$T/body" && [ "$(earned shop payword)" = "$pe0" ]
check $? "PayWordOverHTTP off: a PayWord-only page on plain http gets a page, not a payment ($st)"
[ "$(w2 balance | jq -r '.in_flight')" = 0 ]; check $? "nothing left in flight"
sys_wallet_stop
sed -i -e "s|^BrokerURL .*|BrokerURL http://127.0.0.1:$bport/mp|" \
    -e 's/^PayWordOverHTTP .*/PayWordOverHTTP on/' "$T/w2.conf"
WNAME=w2 sys_wallet_start || { fail "second wallet restart"; finish; }
# what the dead broker never answered (/buy, /certify) was kept and is completed now
[ "$(w2 budget | jq -r '.topup')" = "0.10 USD" ]; check $? "second wallet's top-up (and certificate credit) 0.10 USD"
pe0=$(earned shop payword)
ok=0
for i in 1 2 3 4 5 6 7; do
    fetch "$S/paid/a$i.html?w2"
    [ "$st" = 200 ] && ok=$((ok + 1))
done
[ "$ok" = 7 ]; check $? "credit 0.10 USD per certificate: 7 PayWord pages of 0.02 all served ($ok/7)"
[ "$(earned shop payword)" = "$((pe0 + 14000))" ]; check $? "shop earned 0.14 USD more ($(earned shop payword))"
cs=$(w2 balance | jq -c '[.chains[] | select(.vendor == "shop.example")]')
used=$(jq '[.[].used] | add' <<<"$cs"); nch=$(grep -c 'POST /mp/certify 200' "$T/access.log")
[ "$used" -le 14 ] && [ "$nch" -ge 3 ]
check $? "a chain ran out and a new one (with a new certificate) took over ($nch certificates; chains $cs)"
w2_units=$(w2 balance | jq -r '.broker.scrip_units + ([.vendors[].scrip_units] | add // 0)')
note "the second wallet holds $w2_units units of scrip (its kept /buy, completed once the broker answered)"
sys_wallet_stop
wpid=$mw_pid; wport=$mw_port

# ---- kill -9 in the middle of payments ---------------------------------------------------------------
e0=$(earned news millicent)
for round in 1 2 3 4 5 6; do
    (
        for i in $(seq 1 30); do
            curl -s -o /dev/null --max-time 10 -x "http://127.0.0.1:$wport" "$N/paid/a$((i % 8 + 1)).html?r=$round&i=$i" || true
        done
    ) &
    bgpid=$!
    sleep "0.$((RANDOM % 9 + 1))"
    sys_wallet_kill9
    wait "$bgpid" 2>/dev/null
    bgpid=""
    sys_wallet_start || { fail "restart after kill -9 (round $round)"; finish; }
done
pass "6 rounds of kill -9 during paid requests, restarted each time"
note "recoveries: $(grep -o 'WP00107 recovery: .*' "$T/wallet.log" | sort | uniq -c | tr -s ' ' | head -5 | tr '\n' ';')"
fl=$(wq '.in_flight' balance)
[ "$fl" = 0 ]; check $? "after restarts nothing is left in flight ($fl)"
acct=$(sys_account_units); wu=$(wallet_units); em=$(earned news millicent)
total=$((acct + wu + em + w2_units))
[ "$total" = "$money_in" ]
check $? "money conserved after kill -9: account $acct (balance + PayWord credit reserved) + wallet scrip $wu + second wallet $w2_units + news earned $em = $total of $money_in"
[ "$em" -gt "$e0" ]; check $? "payments went through between the kills (news earned $e0 -> $em)"

logcheck 'File does not exist' "end"
finish
