#!/bin/bash
# run_broker.sh [BUILD_DIR [CLIENT]] - the broker (PROTOCOL.md section 8) and
# every mpadmin subcommand end to end against Debian's apache2 (event MPM).
#
# Everything is set up through mpadmin (checking exit codes and --json
# output): vendor secrets, delegations, broker secrets and signing key,
# stores, accounts and credits. One Apache serves on 127.0.0.1:
#   $port   name-based vhosts news.example and shop.example (paid /paid/)
#   $bport  broker.example: <Location /mp> SetHandler micropay-broker
#           (MicropayBrokerRequireTLS off: plain HTTP on loopback, tests only)
# then broker_client runs its scenarios (see broker_client.c), mpadmin
# redeem collects each vendor's earnings (twice: the second credits
# nothing), earnings/accounts/price/store commands are checked, keys are
# rotated with a graceful restart, unused PayWord credit is released with
# mpadmin accounts release --now (nothing before the first release time;
# then per customer exactly credit - redeemed, once), and money is conserved
# to the unit:
#   money in (sum of credits) = sum over accounts of balance + reserved
#       + broker scrip the client holds unspent (change included)
#       + broker-minted vendor scrip the client holds unspent
#       + broker-minted vendor scrip spent at a vendor, not yet deposited
# (vendor-minted change is the vendor's own liability; PayWord words not yet
# redeemed are still in the customer's reserved credit).
#
# BUILD_DIR defaults to ../../build/release, CLIENT to
# BUILD_DIR/tests/integration/broker_client. APACHE2 overrides the binary.
# Needs root (User www-data), jq, curl. Servers bind 127.0.0.1 on free ports
# and are stopped by PID. Output: PASS/FAIL per step, last line
# "N passed, M failed"; exit 1 on any failure.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/integration/lib.sh
. "$here/lib.sh"
build=${1:-$here/../../build/release}
if ! build=$(cd "$build" 2>/dev/null && pwd); then
    echo "run_broker.sh: build directory ${1:-$here/../../build/release} not found" >&2
    exit 2
fi
client=${2:-$build/tests/integration/broker_client}
case $client in /*) ;; *) client=$(pwd)/$client ;; esac
module=$build/mod_micropay/.libs/mod_micropay.so
mpadmin=$build/tools/mpadmin
APACHE2=${APACHE2:-$(command -v apache2 || echo /usr/sbin/apache2)}
moddir=$(apxs -q LIBEXECDIR 2>/dev/null || echo /usr/lib/apache2/modules)

for f in "$module" "$client" "$mpadmin" "$APACHE2"; do
    if [ ! -x "$f" ] && [ ! -f "$f" ]; then
        echo "run_broker.sh: missing $f" >&2
        exit 2
    fi
done
for t in jq curl; do
    command -v "$t" >/dev/null || { echo "run_broker.sh: needs $t" >&2; exit 2; }
done
if [ "$(id -u)" != 0 ]; then
    echo "run_broker.sh: must run as root (Apache switches to www-data)" >&2
    exit 2
fi

npass=0
nfail=0
apid=""
t0=$(date +%s)
T=$(mktemp -d /tmp/mp-bt.XXXXXX)
chmod 755 "$T"

pass() { npass=$((npass + 1)); echo "PASS $*"; }
fail() { nfail=$((nfail + 1)); echo "FAIL $*"; }
note() { echo "     $*"; }
check() { if [ "$1" = 0 ]; then pass "$2"; else fail "$2${3:+: $3}"; fi; }

port_answers() {
    curl -s -o /dev/null --noproxy '*' --max-time 2 "http://127.0.0.1:$1/index.html"
}

both_answer() { port_answers "$port" && port_answers "$bport" && port_answers "$sport"; }

apache_ready() { both_answer; }

cleanup() {
    if [ -n "$apid" ]; then stop_apache; fi
    if [ "${MP_IT_KEEP:-0}" = 1 ] || [ "$nfail" -gt 0 ]; then
        echo "temp dir kept: $T"
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

finish() {
    echo "time: $(($(date +%s) - t0)) s"
    echo "$npass passed, $nfail failed"
    [ "$nfail" = 0 ]
    exit $?
}

# mpa STEP EXPECTED_RC JQ_TEST ARGS...: runs mpadmin --json ARGS; PASS when
# the exit code is EXPECTED_RC and (for 0) stdout is JSON satisfying JQ_TEST
# (a jq expression that must yield true; "" skips). The output is in $out.
mpa() {
    local step=$1 want=$2 test=$3 rc
    shift 3
    out=$("$mpadmin" --json "$@" 2>"$T/mpadmin.err")
    rc=$?
    if [ "$rc" != "$want" ]; then
        fail "$step: mpadmin $* exited $rc, expected $want: $(head -c 300 "$T/mpadmin.err") $(head -c 300 <<<"$out")"
        return 1
    fi
    if [ "$want" = 0 ] && [ -n "$test" ] && ! jq -e "$test" >/dev/null 2>&1 <<<"$out"; then
        fail "$step: mpadmin $*: output fails $test: $(head -c 600 <<<"$out")"
        return 1
    fi
    pass "$step"
    return 0
}

# Lines of the error log after line $2 at warn or worse, minus those matching $3.
bad_log_lines() {
    local log=$1 from=$2 allow=${3:-}
    [ -f "$log" ] || return 0
    tail -n +"$((from + 1))" "$log" | grep -E '\[([a-z0-9_]+:)?(warn|error|crit|alert|emerg)\]' |
        { if [ -n "$allow" ]; then grep -vE "$allow"; else cat; fi; } || true
}
log_lines() { [ -f "$1" ] && wc -l <"$1" || echo 0; }

# The start-up warning of the vendors, which allow PayWord over plain http.
pwhttp_allow='\[micropay:warn\].* MP00147: vendor [a-z.]+: MicropayPayWordOverHTTP On: '
check_log() {
    local bad allow="${3:+$3|}$pwhttp_allow"
    bad=$(bad_log_lines "$T/error.log" "$2" "$allow")
    bad+=$(bad_log_lines "$T/apache.out" 0 "$allow")
    if [ -z "$bad" ]; then
        pass "$1: error.log has no unexpected warn/error lines"
    else
        fail "$1: unexpected error.log lines:"
        echo "$bad" | head -20 | sed 's/^/       /'
    fi
}

# run_client STEP MODE
run_client() {
    local step=$1 out rc summary
    out=$T/client-$2.out
    MP_BT_PORT=$port MP_BT_BPORT=$bport MP_BT_DIR=$T/keys MP_BT_DELEG=$T/news.deleg \
        "$client" "$2" >"$out" 2>&1
    rc=$?
    summary=$(tail -n 1 "$out")
    if [ $rc = 0 ]; then
        pass "$step ($summary)"
    else
        fail "$step (exit $rc: $summary); output in $out:"
        grep -E 'FAIL|\.\.\.FAILED|note:' "$out" | head -60 | sed 's/^/       /'
    fi
    return $rc
}

echo "temp dir $T"

# ---- setup, all through mpadmin --------------------------------------------------------------
mkdir -p "$T/keys" "$T/run" "$T/htdocs/news/paid" "$T/htdocs/shop/paid" "$T/htdocs/broker"
for v in news shop; do
    printf 'free %s\n' "$v" >"$T/htdocs/$v/index.html"
    for i in 0 1 2 3 4 5 6 7; do
        printf '<html><body><p>%s paid page %s</p></body></html>\n' "$v" "$i" >"$T/htdocs/$v/paid/p$i.html"
    done
done
printf 'broker\n' >"$T/htdocs/broker/index.html"

mpa "keys vendor news" 0 '.scrip_series == 1 and .customer_series == 1 and .receipt_series == 1' \
    keys vendor "$T/news.secrets"
mpa "keys vendor shop" 0 '.scrip_series == 1' keys vendor "$T/shop.secrets"
[ "$(stat -c %a "$T/news.secrets")" = 600 ]; check $? "keys vendor: secrets file mode 0600"
mpa "keys vendor refuses an existing file (exit 1)" 1 "" keys vendor "$T/news.secrets"
mpa "keys broker" 0 ".private == \"$T/broker.pem\" and .public == \"$T/broker.pem.pub\"" \
    keys broker "$T/broker.pem"
[ -s "$T/broker.pem.pub" ] && [ "$(stat -c %a "$T/broker.pem")" = 600 ]
check $? "keys broker: broker.pem 0600 and broker.pem.pub"
mpa "keys broker-secrets" 0 '.scrip_series == 1 and .customer_series == 1 and .account_series == 1' \
    keys broker-secrets "$T/broker.secrets"
mpa "keys delegate news" 0 ".series == 2 and .broker_file == \"$T/news.deleg\"" \
    keys delegate "$T/news.secrets" "$T/news.deleg"
mpa "keys delegate shop" 0 '.series == 2' keys delegate "$T/shop.secrets" "$T/shop.deleg"
mpa "keys delegate refuses an existing OUT (exit 1)" 1 "" keys delegate "$T/shop.secrets" "$T/shop.deleg"
mpa "usage error (exit 2)" 2 "" keys frobnicate "$T/x"
mpa "store init news" 0 '.created == true' store init "$T/news-store" --owner www-data
mpa "store init shop" 0 '.created == true' store init "$T/shop-store" --owner www-data
mpa "broker init" 0 '.created == true' broker init "$T/bstore" --owner www-data
[ "$(stat -c %U "$T/bstore")" = www-data ]; check $? "broker init --owner www-data"

for a in alice bob carol frank; do
    mpa "accounts create $a (customer)" 0 ".account == \"$a\" and .kind == \"customer\" and .vendor == null and .currency == \"USD\"" \
        accounts create "$T/bstore" "$a" --customer --currency USD --secrets "$T/broker.secrets" \
        --key-out "$T/keys/$a.key"
done
mpa "accounts create v-news (vendor)" 0 '.kind == "vendor" and .vendor == "news.example"' \
    accounts create "$T/bstore" v-news --vendor news.example --currency USD \
    --secrets "$T/broker.secrets" --key-out "$T/keys/v-news.key"
mpa "accounts create v-shop (vendor)" 0 '.kind == "vendor" and .vendor == "shop.example"' \
    accounts create "$T/bstore" v-shop --vendor shop.example --currency USD \
    --secrets "$T/broker.secrets" --key-out "$T/keys/v-shop.key"
# erin: the slow-body attack's customer, at the short-lived broker; her money
# is counted apart (erin_in), since that client runs beside the others.
mpa "accounts create erin (customer)" 0 '.account == "erin"' \
    accounts create "$T/bstore" erin --customer --currency USD --secrets "$T/broker.secrets" \
    --key-out "$T/keys/erin.key"
mpa "accounts create dave (key printed once)" 0 '(.key | length) == 43 and .key_file == null' \
    accounts create "$T/bstore" dave --customer --currency USD --secrets "$T/broker.secrets"
mpa "accounts create refuses an existing account (exit 1)" 1 "" \
    accounts create "$T/bstore" alice --customer --currency USD --secrets "$T/broker.secrets"
[ "$(stat -c %a "$T/keys/alice.key")" = 600 ]; check $? "accounts create --key-out: mode 0600"

money_in=0
credit() {    # credit ACCOUNT AMOUNT UNITS
    if mpa "accounts credit $1 $2" 0 ".account == \"$1\" and .credited == \"$2\"" \
        accounts credit "$T/bstore" "$1" "$2"; then
        money_in=$((money_in + $3))
    fi
}
credit alice "10.00 USD" 1000000
credit bob "5.00 USD" 500000
credit bob "2.50 USD" 250000
credit carol "0.50 USD" 50000
credit frank "10.00 USD" 1000000
mpa "accounts show bob after two credits" 0 '.balance_units == 750000 and .reserved_units == 0' \
    accounts show "$T/bstore" bob
mpa "accounts credit in another currency (exit 2)" 2 "" accounts credit "$T/bstore" bob "1.00 EUR"
mpa "accounts credit of no account (exit 3)" 3 "" accounts credit "$T/bstore" nobody "1.00 USD"
mpa "accounts show of no account (exit 3)" 3 "" accounts show "$T/bstore" nobody
mpa "accounts show: eight accounts, money in $money_in" 0 \
    "length == 8 and ([.[] | .balance_units] | add) == $money_in" accounts show "$T/bstore"
note "money in: $money_in units"
mpa "accounts credit erin 0.20 USD" 0 '.credited == "0.20 USD"' accounts credit "$T/bstore" erin "0.20 USD"
erin_in=20000
# gina: an account in EUR, whose scrip a USD account tries to exchange
mpa "accounts create gina (customer, EUR)" 0 '.currency == "EUR"' \
    accounts create "$T/bstore" gina --customer --currency EUR --secrets "$T/broker.secrets" \
    --key-out "$T/keys/gina.key"
mpa "accounts credit gina 1.00 EUR" 0 '.credited == "1.00 EUR"' accounts credit "$T/bstore" gina "1.00 EUR"

# ---- Apache ---------------------------------------------------------------------------------------
port=$(free_port)
bport=$(free_port)
while [ "$bport" = "$port" ]; do bport=$(free_port); done
sport=$(free_port)
while [ "$sport" = "$port" ] || [ "$sport" = "$bport" ]; do sport=$(free_port); done
note "vendors on 127.0.0.1:$port (news.example, shop.example), broker on 127.0.0.1:$bport"

vhost() {    # vhost NAME PRICE UNIT
    cat <<EOV
<VirtualHost 127.0.0.1:$port>
    ServerName $1.example
    DocumentRoot "$T/htdocs/$1"
    MicropayVendor $1.example
    MicropaySecretsFile "$T/$1.secrets"
    MicropayStore "$T/$1-store"
    MicropayTrustBroker broker.example "$T/broker.pem.pub"
    MicropayBrokerURL https://broker.example/mp/
    <Directory "$T/htdocs/$1">
        Require all granted
    </Directory>
    <Directory "$T/htdocs/$1/paid">
        Micropay on
        MicropayPrice "$2"
        MicropaySchemes millicent payword
        MicropayPayWordUnit "$3"
        MicropayReceiptWindow 600
        # plain http on loopback: PayWord needs this (MP00147 warns at start)
        MicropayPayWordOverHTTP on
    </Directory>
</VirtualHost>
EOV
}

conf=$T/httpd.conf
cat >"$conf" <<EOF
# generated by tests/integration/run_broker.sh
ServerRoot "$T"
ServerName 127.0.0.1
Listen 127.0.0.1:$port
Listen 127.0.0.1:$bport
Listen 127.0.0.1:$sport
PidFile "$T/run/httpd.pid"
DefaultRuntimeDir "$T/run"
Mutex file:$T/run default
ErrorLog "$T/error.log"
LogLevel warn micropay:info
User www-data
Group www-data

LoadModule mpm_event_module $moddir/mod_mpm_event.so
LoadModule authz_core_module $moddir/mod_authz_core.so
LoadModule mime_module $moddir/mod_mime.so
LoadModule micropay_module $module

StartServers 2
ServerLimit 4
ThreadsPerChild 25
MinSpareThreads 25
MaxSpareThreads 75
MaxRequestWorkers 100
KeepAlive On
KeepAliveTimeout 2
Timeout 30
LimitRequestFieldSize 16384
TypesConfig /dev/null
AddType text/html .html

<Directory />
    AllowOverride None
    Require all denied
</Directory>

$(vhost news "0.01 USD" "0.005 USD")
$(vhost shop "0.02 USD" "0.01 USD")

<VirtualHost 127.0.0.1:$bport>
    ServerName broker.example
    DocumentRoot "$T/htdocs/broker"
    <Directory "$T/htdocs/broker">
        Require all granted
    </Directory>
    MicropayBrokerName broker.example
    MicropayBrokerStore "$T/bstore"
    MicropayBrokerSecretsFile "$T/broker.secrets"
    MicropayBrokerSigningKey "$T/broker.pem"
    MicropayBrokerVendor news.example "$T/news.deleg"
    MicropayBrokerVendor shop.example "$T/shop.deleg"
    MicropayBrokerRequireTLS off
    <Location /mp>
        SetHandler micropay-broker
    </Location>
</VirtualHost>

# The same broker and store, selling scrip that lives 60 s: the slow-body attack.
<VirtualHost 127.0.0.1:$sport>
    ServerName broker.example
    DocumentRoot "$T/htdocs/broker"
    <Directory "$T/htdocs/broker">
        Require all granted
    </Directory>
    MicropayBrokerName broker.example
    MicropayBrokerStore "$T/bstore"
    MicropayBrokerSecretsFile "$T/broker.secrets"
    MicropayBrokerSigningKey "$T/broker.pem"
    MicropayBrokerVendor news.example "$T/news.deleg"
    MicropayBrokerRequireTLS off
    MicropayBrokerScripLifetime 60
    <Location /mp>
        SetHandler micropay-broker
    </Location>
</VirtualHost>
EOF

if "$APACHE2" -t -f "$conf" >"$T/configtest.out" 2>&1; then
    pass "apache2 -t"
else
    fail "apache2 -t: $(tail -n 5 "$T/configtest.out")"
    finish
fi
: >"$T/apache.out"
if start_apache "$conf"; then
    pass "start (pid $apid)"
else
    fail "start: $(tail -n 5 "$T/apache.out"; tail -n 5 "$T/error.log" 2>/dev/null)"
    finish
fi

# ---- helpers for the checks below ------------------------------------------------------------------
# "1.23 USD" -> units of 0.00001 (exact, no floating point)
amt_units() {
    local a=${1%% *} i f
    i=${a%%.*}
    if [ "$i" = "$a" ]; then f=""; else f=${a#*.}; fi
    f=${f}00000
    f=${f:0:5}
    echo $((10#$i * 100000 + 10#$f))
}
acct_units() {    # acct_units ID -> balance_units
    "$mpadmin" --json accounts show "$T/bstore" "$1" | jq -r '.balance_units'
}
holding() { awk -v k="$1" '$1 == k { print $2 }' "$T/keys/holdings"; }

# conserve STEP WITH_UNDEPOSITED: money in = accounts (balance + reserved) +
# scrip the client holds (+ broker-minted vendor scrip spent and not yet
# deposited, before mpadmin redeem; after it that term must be zero).
conserve() {
    local accts bu vu und total
    accts=$("$mpadmin" --json accounts show "$T/bstore" | jq '[.[] | select(.account != "erin" and .account != "gina") | .balance_units + .reserved_units] | add')
    bu=$(holding broker_unspent)
    vu=$(holding vendor_unspent)
    und=$(holding undeposited)
    [ "$2" = 1 ] || und=0
    if [ -z "$accts" ] || [ -z "$bu" ] || [ -z "$vu" ] || [ -z "$und" ]; then
        fail "conservation ($1): cannot read accounts or holdings"
        return
    fi
    total=$((accts + bu + vu + und))
    if [ "$total" = "$money_in" ]; then
        pass "conservation ($1): $accts accounts + $bu broker scrip + $vu vendor scrip + $und undeposited = $money_in money in"
    else
        fail "conservation ($1): $accts accounts + $bu broker scrip + $vu vendor scrip + $und undeposited = $total, money in $money_in (off by $((total - money_in)))"
        "$mpadmin" accounts show "$T/bstore" | sed 's/^/       /'
    fi
}

zero_credit='(.credited == null or ((.credited | split(" ") | .[0] | tonumber) == 0))'
# redeem STEP VENDOR ACCOUNT JQ_TEST [OPTIONS]: mpadmin redeem; also checks that
# the vendor account's balance grew by exactly what it reports as credited.
redeem() {
    local step=$1 v=$2 a=$3 test=$4 before after cred
    shift 4
    before=$(acct_units "$a")
    mpa "$step" 0 "$test and .complete == true" redeem "$T/$v-store" --vendor "$v.example" \
        --broker "http://127.0.0.1:$bport/mp" --account "$a" --key-file "$T/keys/$a.key" "$@" || return 1
    after=$(acct_units "$a")
    cred=$(jq -r '.credited // "0 USD"' <<<"$out")
    if [ "$((after - before))" = "$(amt_units "$cred")" ]; then
        pass "$step: $a balance +$((after - before)) units = credited $cred"
    else
        fail "$step: $a balance $before -> $after, but credited $cred"
    fi
    note "$step: $(jq -c '{payword, millicent, ok, refused, credited, balance, skipped}' <<<"$out")"
}

# price_at VENDOR TARGET: the price of the 402 offer
price_at() {
    curl -s --noproxy '*' --max-time 5 --resolve "$1.example:$port:127.0.0.1" -H 'Accept: application/json' \
        "http://$1.example:$port$2" | jq -r '.price'
}

graceful() {
    kill -USR1 "$apid"
    sleep 1.5
    local n=50
    while [ $n -gt 0 ] && ! both_answer; do sleep 0.1; n=$((n - 1)); done
    kill -0 "$apid" 2>/dev/null && both_answer
}

# audit STEP: the store's own conservation check (mpadmin broker audit): the
# ledger's credits = balances + reserved + outstanding scrip, to the unit,
# and the credits are exactly the money this script put in.
audit() {
    mpa "broker audit ($1): balanced, credited = $((money_in + erin_in))" 0 \
        ".balanced == true and (.currencies | length) == 2 and ([.currencies[] | select(.currency == \"USD\")][0].credited_units == $((money_in + erin_in))) and ([.currencies[] | select(.currency == \"EUR\")][0].credited_units == 100000)" \
        broker audit "$T/bstore"
}
audit "after setup"

# The slow-body attack runs beside everything else (it waits 60 s for its
# scrip to expire): erin's 0.10 USD of scrip, outstanding throughout.
MP_BT_PORT=$port MP_BT_BPORT=$bport MP_BT_SHORT_PORT=$sport MP_BT_DIR=$T/keys \
    "$client" slow-body >"$T/client-slow.out" 2>&1 &
slow_pid=$!
erin_scrip=10000

# ---- the client's scenarios -----------------------------------------------------------------------
run_client "broker_client run (endpoints, rejections, workload, attacks)" run
conserve "after the client, before redemption" 1
audit "after the client"
# The broker's audit agrees with what the client holds: outstanding broker
# scrip and vendor scrip (held unspent, or spent and not yet deposited).
a=$("$mpadmin" --json broker audit "$T/bstore")
a=$(jq '{currencies: [.currencies[] | select(.currency == "USD")]}' <<<"$a")
[ "$(jq '.currencies[0].broker_scrip_units + .currencies[0].vendor_scrip_units' <<<"$a")" \
  = "$(($(holding broker_unspent) + $(holding vendor_unspent) + $(holding undeposited) + erin_scrip))" ] \
    && [ "$(jq '.currencies[0].vendor_scrip_units' <<<"$a")" = "$(($(holding vendor_unspent) + $(holding undeposited)))" ]
check $? "broker audit: outstanding scrip = what the clients hold" "$a"

# A copy of the broker store alone is worth nothing: the stored responses
# that carried scrip and customer secrets are sealed (issue 9, finding 3).
leaks=0
while read -r v; do
    [ -n "$v" ] && grep -qF -- "$v" "$T/bstore/data.mdb" && leaks=$((leaks + 1))
done < <(jq -r '.[] | .scrip, .csec' "$T/keys/wallet.json" | sort -u)
nsecrets=$(jq -r '.[] | .scrip, .csec' "$T/keys/wallet.json" | sort -u | wc -l)
[ "$nsecrets" -gt 10 ] && [ "$leaks" = 0 ] && ! strings "$T/bstore/data.mdb" | grep -q 'customer_secret'
check $? "the broker store file holds none of the $nsecrets scrip and customer secrets it issued" \
    "$leaks found in data.mdb"

# ---- redemption ------------------------------------------------------------------------------------
# news without --secrets: its own change is sent too and refused as forged;
# the second run (with --secrets) skips that change and credits nothing.
redeem "redeem news.example" news v-news \
    '.ok > 0 and .refused > 0 and ([.requests[].refused[].status] | all(. == "forged"))'
redeem "redeem news.example again: credits nothing" news v-news \
    "$zero_credit and .skipped.not_delegated > 0" --secrets "$T/news.secrets"
redeem "redeem shop.example" shop v-shop '.ok > 0 and .refused == 0' --secrets "$T/shop.secrets"
redeem "redeem shop.example again: credits nothing" shop v-shop "$zero_credit" \
    --secrets "$T/shop.secrets"
mpa "redeem --dry-run: nothing left" 0 '.dry_run == true and .payword == 0 and .millicent == 0' \
    redeem "$T/shop-store" --vendor shop.example --broker "http://127.0.0.1:$bport/mp" \
    --account v-shop --key-file "$T/keys/v-shop.key" --secrets "$T/shop.secrets" --dry-run
# Without --secrets the shop's own change spends (refused by the broker, so
# never marked) are still there to send: the request is made, and refused (401).
mpa "redeem with another vendor's account key refused (exit 1)" 1 "" \
    redeem "$T/shop-store" --vendor shop.example --broker "http://127.0.0.1:$bport/mp" \
    --account v-shop --key-file "$T/keys/v-news.key"
mpa "redeem to a plain-http non-loopback URL refused (exit 2)" 2 "" \
    redeem "$T/shop-store" --vendor shop.example --broker "http://broker.example:$bport/mp" \
    --account v-shop --key-file "$T/keys/v-shop.key"
conserve "after mpadmin redeem" 0
audit "after mpadmin redeem"

# ---- the other commands against the running server ----------------------------------------------------
for by in day path scheme; do
    mpa "earnings news --by $by" 0 ".by == \"$by\" and (.rows | length) > 0 and .totals[0].currency == \"USD\" and .totals[0].count > 0" \
        earnings "$T/news-store" --by "$by"
done
mpa "earnings shop --by scheme: millicent and payword" 0 \
    '[.rows[] | .scheme] | (index("millicent") != null and index("payword") != null)' \
    earnings "$T/shop-store" --by scheme
mpa "earnings (default: by day)" 0 '.by == "day"' earnings "$T/shop-store"
mpa "earnings --by bogus (exit 2)" 2 "" earnings "$T/shop-store" --by bogus
mpa "accounts show v-news: credited" 0 '.kind == "vendor" and .vendor == "news.example" and .balance_units > 0' \
    accounts show "$T/bstore" v-news
mpa "accounts show alice: PayWord credit reserved" 0 '.reserved_units > 0' accounts show "$T/bstore" alice
mpa "accounts show carol: 0.40 reserved, nothing left" 0 '.balance_units == 0 and .reserved_units == 40000' \
    accounts show "$T/bstore" carol

mpa "price set news /paid/p7.html 0.03 USD" 0 '.price == "0.03 USD" and .units == 3000' \
    price set "$T/news-store" news.example /paid/p7.html "0.03 USD"
p=$(price_at news /paid/p7.html)
[ "$(amt_units "$p")" = 3000 ]; check $? "price set takes effect at once (offer says $p)"
p=$(price_at news /paid/p6.html)
[ "$(amt_units "$p")" = 1000 ]; check $? "other paths keep MicropayPrice (offer says $p)"
mpa "price set shop tree /paid/" 0 '.units == 2500' price set "$T/shop-store" shop.example /paid/ "0.025 USD"
p=$(price_at shop /paid/p3.html)
[ "$(amt_units "$p")" = 2500 ]; check $? "price of a tree (offer says $p)"
mpa "price list news" 0 'length == 1 and .[0].path == "/paid/p7.html" and .[0].units == 3000' \
    price list "$T/news-store" news.example
mpa "price rm news" 0 '.removed == true' price rm "$T/news-store" news.example /paid/p7.html
mpa "price rm shop" 0 '.removed == true' price rm "$T/shop-store" shop.example /paid/
mpa "price rm again (exit 3)" 3 "" price rm "$T/news-store" news.example /paid/p7.html
mpa "price set with a bad amount (exit 2)" 2 "" price set "$T/news-store" news.example /paid/x "cheap"
mpa "price list news: empty" 0 'length == 0' price list "$T/news-store" news.example
p=$(price_at news /paid/p7.html)
[ "$(amt_units "$p")" = 1000 ]; check $? "price rm: MicropayPrice again (offer says $p)"
p=$(price_at shop /paid/p3.html)
[ "$(amt_units "$p")" = 2000 ]; check $? "price rm of a tree (offer says $p)"

mpa "store stat news" 0 '.spent_scrip > 0 and .payword_commitments > 0 and .ledger_lines > 0' \
    store stat "$T/news-store"
mpa "store stat shop" 0 '.spent_scrip > 0' store stat "$T/shop-store"
mpa "store compact news" 0 '.removed >= 0' store compact "$T/news-store"
mpa "store stat news after compact: nothing live dropped" 0 '.spent_scrip > 0 and .payword_commitments > 0' \
    store stat "$T/news-store"
mpa "store stat of a missing store (exit 1)" 1 "" store stat "$T/no-such-store"

# ---- key rotation and a graceful restart ------------------------------------------------------------------
# PayWord words paid under a certificate of the signing key about to be
# retired, redeemed only after the rotation (issue 9, finding 4).
run_client "broker_client pw-before-rotate (words under the old signing key)" pw-before-rotate
mpa "keys rotate news secrets" 0 '.scrip_series == 3' keys rotate "$T/news.secrets"
mpa "keys rotate broker secrets" 0 '.scrip_series == 2' keys rotate "$T/broker.secrets"
# Every key kind rotates: a new account secret series (existing accounts
# stay wrapped under series 1) and a new signing key, the old one retired.
printf 'account 2 %s\n' "$(openssl rand -hex 32)" >>"$T/broker.secrets"
mpa "keys broker (the next signing key)" 0 '.public != null' keys broker "$T/broker2.pem"
sed -i -e "s|MicropayBrokerSigningKey \"$T/broker.pem\"|MicropayBrokerSigningKey \"$T/broker2.pem\"\n    MicropayBrokerRetiredSigningKey \"$T/broker.pem.pub\"|" \
    -e "s|MicropayTrustBroker broker.example \"$T/broker.pem.pub\"|&\n    MicropayTrustBroker broker.example \"$T/broker2.pem.pub\"|" "$conf"
grep -q MicropayBrokerRetiredSigningKey "$conf"; check $? "config: signing key rotated, old one retired"
mpa "accounts create v-news2 after the account series rotation" 0 '.kind == "vendor"' \
    accounts create "$T/bstore" v-news2 --vendor news.example --currency USD \
    --secrets "$T/broker.secrets" --key-out "$T/keys/v-news2.key"
mpa "accounts show: v-news2 wrapped under series 2, v-news under 1" 0 \
    '([.[] | select(.account == "v-news2")][0].key_series == 2) and ([.[] | select(.account == "v-news")][0].key_series == 1)' \
    accounts show "$T/bstore"
if graceful; then
    pass "graceful restart (USR1) after keys rotate"
    run_client "broker_client after-rotate (old scrip spends, new series)" after-rotate
    conserve "after rotation, before redemption" 1
    redeem "redeem news.example after rotation (old-key words, new account)" news v-news2 \
        '.ok > 0 and .refused == 0' --secrets "$T/news.secrets"
    redeem "redeem shop.example after rotation" shop v-shop '.ok > 0 and .refused == 0' \
        --secrets "$T/shop.secrets"
    redeem "redeem news.example after rotation again: credits nothing" news v-news "$zero_credit" \
        --secrets "$T/news.secrets"
    conserve "final" 0
    audit "after rotation"
else
    fail "graceful restart: server gone: $(tail -n 5 "$T/error.log")"
fi

# ---- release of unused PayWord credit: accounts release -----------------------------------------------
# broker_client logged every certificate it got (serial, account, credit,
# expiry) and every PayWord payment a vendor accepted under it ($T/keys/payword);
# all of those words were redeemed above, so what a certificate has left of
# its reservation is credit - paid. It goes back to the balance at expiry +
# MicropayBrokerRedeemDeadline (not set here: the default, 30 days), once.
# the default deadline, 30 days, plus the broker's margin of one hour
redeem_deadline=$((2592000 + 3600))
pwlog=$T/keys/payword

# release_expect LO HI: {ACCOUNT: {"units": U, "certs": N}} over the logged
# certificates with LO < expiry + deadline <= HI (U: credit - paid).
release_expect() {
    awk -v lo="$1" -v hi="$2" -v d="$redeem_deadline" '
        $1 == "cert" { acct[$2] = $3; credit[$2] = $4; due[$2] = $5 + d }
        $1 == "paid" { paid[$2] += $3 }
        END {
            for (s in acct)
                if (due[s] > lo && due[s] <= hi) { u[acct[s]] += credit[s] - paid[s]; n[acct[s]]++ }
            printf "{"
            sep = ""
            for (a in u) { printf "%s\"%s\": {\"units\": %.0f, \"certs\": %d}", sep, a, u[a], n[a]; sep = ", " }
            printf "}\n"
        }' "$pwlog"
}
# the JSON of accounts release as {ACCOUNT: {"units", "certs"}}, every
# account with uncovered 0 in USD, and N certificates in all at NOW
release_is() {    # release_is EXPECTED_JSON N NOW -> a jq test
    echo "(.now == $3 and .certificates == $2 and all(.accounts[]; .uncovered_units == 0 and .currency == \"USD\")
          and ([.accounts[] | {key: .account, value: {units: .released_units, certs: .certificates}}]
               | from_entries) == $1)"
}

from_client=$(awk '$1 == "cert" { print $2, $3, $4 }' "$pwlog" 2>/dev/null | sort -n)
from_log=$(grep -o 'MP00142: broker broker\.example: account [^ ]* certified, serial [0-9]*, credit [^ ]* [A-Z]* reserved' \
    "$T/error.log" | while read -r _ _ _ _ acct _ _ serial _ a _; do
        echo "${serial%,} $acct $(amt_units "$a")"
    done | sort -n | uniq)
[ -n "$from_client" ] && [ "$from_client" = "$from_log" ]
check $? "payword log: the client's certificates are those the broker logged (MP00142): $(wc -l <<<"$from_client")" \
    "client: $(tr '\n' ';' <<<"$from_client") broker: $(tr '\n' ';' <<<"$from_log")"
bad_paid=$(awk '$1 == "cert" { credit[$2] = $4 } $1 == "paid" { paid[$2] += $3 }
    END { for (s in paid) if (!(s in credit) || paid[s] > credit[s]) print s }' "$pwlog" 2>/dev/null)
[ -s "$pwlog" ] && [ -z "$bad_paid" ]
check $? "payword log: every payment under a logged certificate, within its credit" "serials: $bad_paid"

first=$(awk -v d="$redeem_deadline" '$1 == "cert" && (m == "" || $5 + d < m) { m = $5 + d }
    END { printf "%.0f\n", m }' "$pwlog" 2>/dev/null)
far=$(($(date +%s) + 10 * 365 * 86400))
exp_first=$(release_expect 0 "$first")
exp_rest=$(release_expect "$first" "$far")
exp_all=$(release_expect 0 "$far")
n_first=$(jq '[.[].certs] | add // 0' <<<"$exp_first")
n_rest=$(jq '[.[].certs] | add // 0' <<<"$exp_rest")
note "release: first due at $first; expected there $exp_first; then $exp_rest"

before=$("$mpadmin" --json accounts show "$T/bstore")
bad=$(jq -r --argjson e "$exp_all" '.[] | select(.reserved_units != ($e[.account].units // 0))
    | "\(.account) reserved \(.reserved_units), expected \($e[.account].units // 0)"' <<<"$before" 2>&1)
[ -n "$before" ] && [ "$(jq -r 'length' <<<"$exp_all")" -gt 0 ] && [ -z "$bad" ]
check $? "accounts show: each customer's reserved = its certificates' credit - redeemed" "$bad"

t1=$(date +%s)
mpa "accounts release (the clock): nothing due yet" 0 \
    ".certificates == 0 and .accounts == [] and .now >= $t1 and .now <= $((t1 + 60))" \
    accounts release "$T/bstore"
mpa "accounts release --now soon (exit 2)" 2 "" accounts release "$T/bstore" --now soon
mpa "accounts release --now in the future without --force (exit 2)" 2 "" \
    accounts release "$T/bstore" --now "$((first - 1))"
mpa "accounts release --now first release time - 1: nothing" 0 \
    ".now == $((first - 1)) and .certificates == 0 and .accounts == []" \
    accounts release "$T/bstore" --now "$((first - 1))" --force
[ "$("$mpadmin" --json accounts show "$T/bstore")" = "$before" ]
check $? "accounts release of nothing changes no account"
mpa "accounts release --now first release time: $n_first certificate(s), credit - redeemed" 0 \
    "$(release_is "$exp_first" "$n_first" "$first")" accounts release "$T/bstore" --now "$first" --force
mpa "accounts release --now +10 years: the other $n_rest, credit - redeemed per customer" 0 \
    "$(release_is "$exp_rest" "$n_rest" "$far")" accounts release "$T/bstore" --now "$far" --force
after=$("$mpadmin" --json accounts show "$T/bstore")
bad=$(jq -nr --argjson b "$before" --argjson a "$after" --argjson e "$exp_all" '
    if ($a | length) != ($b | length) then "\($b | length) accounts before, \($a | length) after" else
    $b[] as $x | (first($a[] | select(.account == $x.account)) // {}) as $y
    | ($e[$x.account].units // 0) as $r
    | select($y.reserved_units != 0 or $y.balance_units != $x.balance_units + $r)
    | "\($x.account): balance \($x.balance_units) -> \($y.balance_units), reserved \($x.reserved_units) -> \($y.reserved_units), released \($r)"
    end' 2>&1)
[ -n "$after" ] && [ -z "$bad" ]
check $? "accounts after release: reserved 0, balance + exactly what was released" "$bad"
mpa "accounts release --now +10 years again: nothing (once per certificate)" 0 \
    '.certificates == 0 and .accounts == []' accounts release "$T/bstore" --now "$far" --force
o=$("$mpadmin" accounts release "$T/bstore" --now "$far" --force 2>&1)
[ "$o" = "nothing to release" ]; check $? "accounts release (text) again: nothing to release" "$o"
conserve "after accounts release" 0
audit "after accounts release"
mpa "broker compact: housekeeping to the end, while the broker runs" 0 \
    '.removed >= 0 and .certificates_released == 0' broker compact "$T/bstore"
audit "after broker compact"

# ---- the slow body (started after setup) -------------------------------------------------------
if wait "$slow_pid"; then
    pass "broker_client slow-body: $(tail -n 1 "$T/client-slow.out")"
else
    fail "broker_client slow-body: $(grep -E 'FAIL|note:' "$T/client-slow.out" | head -5)"
fi
mpa "accounts show erin: 0.10 USD left, her scrip outstanding, not exchanged" 0 \
    '.balance_units == 10000 and .reserved_units == 0' accounts show "$T/bstore" erin
audit "at the end"

check_log "whole run" 0
if stop_apache; then pass "stop (TERM)"; else fail "stop (TERM) took longer than 15 s"; fi
finish
