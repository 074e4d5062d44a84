#!/bin/bash
# run_broker_kill.sh [BUILD_DIR [LOAD]] - the broker under kill -9 (issue 9,
# "What must hold afterwards") against Debian's apache2 (event MPM).
#
# Set up with mpadmin as run_broker.sh does: one vendor (news.example) with
# its delegation, broker secrets and signing key, the broker store, four
# customer accounts credited, one vendor account. One Apache on 127.0.0.1
# serves news.example (paid /paid/) and broker.example (/mp, the broker)
# with several event children. Then:
#   load + kill -9   four broker_load customer processes (buy, exchange with
#                    change, certify, Millicent and PayWord payments at news)
#                    and one vendor process (/redeem of what they paid) run
#                    for $MP_KILL_SECONDS (20) s, retrying every unanswered
#                    request with the same request_id and body; meanwhile a
#                    random Apache child gets SIGKILL every 200-500 ms.
#   afterwards       mpadmin broker audit balances, and each of its terms is
#                    what the clients say they hold (every answer they got is
#                    known: a request is retried until it is answered), as is
#                    each account; per endpoint, the request ids the broker
#                    logged (MP00140..MP00143, written after the commit) are
#                    exactly those the clients got 200 for; the error log has
#                    nothing at warn or worse but the parent's notes on the
#                    kills (check_log).
#   no kills         each customer buys once more: the same checks again.
#
# BUILD_DIR defaults to ../../build/release, LOAD to
# BUILD_DIR/tests/integration/broker_load. APACHE2 overrides the binary.
# Needs root (User www-data), jq, curl. Servers bind 127.0.0.1 on free ports
# and are stopped by PID. Output: PASS/FAIL per step, figures, last line
# "N passed, M failed"; exit 1 on any failure. The temp dir is removed on
# success (kept on failure or with MP_IT_KEEP=1).
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/integration/lib.sh
. "$here/lib.sh"
build=${1:-$here/../../build/release}
if ! build=$(cd "$build" 2>/dev/null && pwd); then
    echo "run_broker_kill.sh: build directory ${1:-$here/../../build/release} not found" >&2
    exit 2
fi
load=${2:-$build/tests/integration/broker_load}
case $load in /*) ;; *) load=$(pwd)/$load ;; esac
module=$build/mod_micropay/.libs/mod_micropay.so
mpadmin=$build/tools/mpadmin
APACHE2=${APACHE2:-$(command -v apache2 || echo /usr/sbin/apache2)}
moddir=$(apxs -q LIBEXECDIR 2>/dev/null || echo /usr/lib/apache2/modules)
load_s=${MP_KILL_SECONDS:-20}
customers="alice bob carol dave"
credit_each="50.00 USD"
credit_units=5000000            # of 0.00001 USD

for f in "$module" "$load" "$mpadmin" "$APACHE2"; do
    if [ ! -x "$f" ] && [ ! -f "$f" ]; then
        echo "run_broker_kill.sh: missing $f" >&2
        exit 2
    fi
done
for t in jq curl pgrep; do
    command -v "$t" >/dev/null || { echo "run_broker_kill.sh: needs $t" >&2; exit 2; }
done
if [ "$(id -u)" != 0 ]; then
    echo "run_broker_kill.sh: must run as root (Apache switches to www-data)" >&2
    exit 2
fi

npass=0
nfail=0
apid=""
t0=$(date +%s)
T=$(mktemp -d /tmp/mp-bk.XXXXXX)
chmod 755 "$T"
out=$T/load                     # what the broker_load processes write

pass() { npass=$((npass + 1)); echo "PASS $*"; }
fail() { nfail=$((nfail + 1)); echo "FAIL $*"; }
note() { echo "     $*"; }
check() { if [ "$1" = 0 ]; then pass "$2"; else fail "$2${3:+: $3}"; fi; }

port_answers() {
    curl -s -o /dev/null --noproxy '*' --max-time 2 "http://127.0.0.1:$1/index.html"
}
both_answer() { port_answers "$port" && port_answers "$bport"; }
apache_ready() { both_answer; }

bg_pids=""
keep() { [ "${MP_IT_KEEP:-0}" = 1 ] || [ "$nfail" -gt 0 ]; }
cleanup() {
    local p
    for p in $bg_pids; do kill "$p" 2>/dev/null; done
    if [ -n "$apid" ]; then stop_apache; fi
    keep || rm -rf "$T"
}
trap cleanup EXIT
trap 'echo "interrupted; temp dir $T"; nfail=$((nfail + 1)); exit 130' INT TERM

finish() {
    if keep; then echo "temp dir kept: $T"; fi
    echo "time: $(($(date +%s) - t0)) s"
    echo "$npass passed, $nfail failed"
    [ "$nfail" = 0 ]
    exit $?
}

# mpa STEP EXPECTED_RC JQ_TEST ARGS...: as in run_broker.sh; the output is in $out_json.
mpa() {
    local step=$1 want=$2 test=$3 rc
    shift 3
    out_json=$("$mpadmin" --json "$@" 2>"$T/mpadmin.err")
    rc=$?
    if [ "$rc" != "$want" ]; then
        fail "$step: mpadmin $* exited $rc, expected $want: $(head -c 300 "$T/mpadmin.err") $(head -c 600 <<<"$out_json")"
        return 1
    fi
    if [ "$want" = 0 ] && [ -n "$test" ] && ! jq -e "$test" >/dev/null 2>&1 <<<"$out_json"; then
        fail "$step: mpadmin $*: output fails $test: $(head -c 900 <<<"$out_json")"
        return 1
    fi
    pass "$step"
    return 0
}

echo "temp dir $T"

# ---- setup, all through mpadmin --------------------------------------------------------------
mkdir -p "$T/keys" "$T/run" "$T/htdocs/news/paid" "$T/htdocs/broker" "$out"
printf 'free news\n' >"$T/htdocs/news/index.html"
for i in 0 1 2 3 4 5 6 7; do
    printf '<html><body><p>news paid page %s</p></body></html>\n' "$i" >"$T/htdocs/news/paid/p$i.html"
done
printf 'broker\n' >"$T/htdocs/broker/index.html"

mpa "keys vendor news" 0 '.scrip_series == 1' keys vendor "$T/news.secrets" || finish
mpa "keys broker" 0 '.public != null' keys broker "$T/broker.pem" || finish
mpa "keys broker-secrets" 0 '.scrip_series == 1' keys broker-secrets "$T/broker.secrets" || finish
mpa "keys delegate news" 0 '.series == 2' keys delegate "$T/news.secrets" "$T/news.deleg" || finish
mpa "store init news" 0 '.created == true' store init "$T/news-store" --owner www-data || finish
mpa "broker init" 0 '.created == true' broker init "$T/bstore" --owner www-data || finish
for a in $customers; do
    mpa "accounts create $a (customer)" 0 ".account == \"$a\" and .kind == \"customer\"" \
        accounts create "$T/bstore" "$a" --customer --currency USD --secrets "$T/broker.secrets" \
        --key-out "$T/keys/$a.key" || finish
done
mpa "accounts create v-news (vendor)" 0 '.kind == "vendor" and .vendor == "news.example"' \
    accounts create "$T/bstore" v-news --vendor news.example --currency USD \
    --secrets "$T/broker.secrets" --key-out "$T/keys/v-news.key" || finish
money_in=0
for a in $customers; do
    mpa "accounts credit $a $credit_each" 0 ".account == \"$a\" and .credited == \"$credit_each\"" \
        accounts credit "$T/bstore" "$a" "$credit_each" && money_in=$((money_in + credit_units))
done
mpa "broker audit after setup: balanced, credited $money_in = customer balances" 0 \
    ".balanced == true and (.currencies | length) == 1 and (.currencies[0] |
      .currency == \"USD\" and .credited_units == $money_in and .customer_balance_units == $money_in
      and .withdrawn_units == 0 and .redeemed_units == 0 and .reserved_units == 0
      and .vendor_balance_units == 0 and .broker_scrip_units == 0 and .vendor_scrip_units == 0)" \
    broker audit "$T/bstore"

# ---- Apache: several event children ------------------------------------------------------------
port=$(free_port)
bport=$(free_port)
while [ "$bport" = "$port" ]; do bport=$(free_port); done
note "news.example on 127.0.0.1:$port, broker on 127.0.0.1:$bport"

conf=$T/httpd.conf
cat >"$conf" <<EOF
# generated by tests/integration/run_broker_kill.sh
ServerRoot "$T"
ServerName 127.0.0.1
Listen 127.0.0.1:$port
Listen 127.0.0.1:$bport
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

# several children, so that most kills leave others serving; the parent
# starts new ones as spare threads run short
StartServers 3
ServerLimit 16
ThreadsPerChild 10
MinSpareThreads 30
MaxSpareThreads 80
MaxRequestWorkers 160
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

<VirtualHost 127.0.0.1:$port>
    ServerName news.example
    DocumentRoot "$T/htdocs/news"
    MicropayVendor news.example
    MicropaySecretsFile "$T/news.secrets"
    MicropayStore "$T/news-store"
    MicropayTrustBroker broker.example "$T/broker.pem.pub"
    MicropayBrokerURL https://broker.example/mp/
    <Directory "$T/htdocs/news">
        Require all granted
    </Directory>
    <Directory "$T/htdocs/news/paid">
        Micropay on
        MicropayPrice "0.01 USD"
        MicropaySchemes millicent payword
        MicropayPayWordUnit "0.005 USD"
        # plain http on loopback: PayWord needs this (MP00147 warns at start)
        MicropayPayWordOverHTTP on
    </Directory>
</VirtualHost>

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
    MicropayBrokerRequireTLS off
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
    pass "start (pid $apid, $(pgrep -P "$apid" | wc -l) children)"
else
    fail "start: $(tail -n 5 "$T/apache.out"; tail -n 5 "$T/error.log" 2>/dev/null)"
    finish
fi

# ---- helpers for the checks ----------------------------------------------------------------------
# load_sums: reads every broker_load .sum file into SUM[KEY] and
# SUM[ACCOUNT.KEY] (integer shell arithmetic: no floating point for money)
declare -A SUM
load_sums() {
    local f acct k v
    SUM=()
    for f in "$out"/*.sum; do
        [ -f "$f" ] || continue
        acct=""
        while read -r k v; do
            case $k in
                account) acct=$v; continue ;;
                mode) continue ;;
            esac
            SUM[$k]=$((${SUM[$k]:-0} + v))
            SUM[$acct.$k]=$((${SUM[$acct.$k]:-0} + v))
        done <"$f"
    done
}
# sum_key KEY [ACCOUNT]: the sum of KEY over the .sum files (of ACCOUNT)
sum_key() { if [ -n "${2:-}" ]; then echo "${SUM[$2.$1]:-0}"; else echo "${SUM[$1]:-0}"; fi; }

# run_load NAME ARGS...: a broker_load process in the background; its pid in $!
run_load() {
    local name=$1
    shift
    MP_BT_PORT=$port MP_BT_BPORT=$bport MP_BT_DIR=$T/keys MP_BL_OUT=$out \
        "$load" "$@" >"$T/$name.out" 2>&1 &
}

# client_rc STEP PID NAME: PASS when the process exited 0 (every request answered as expected)
client_rc() {
    local rc
    wait "$2"
    rc=$?
    if [ "$rc" = 0 ]; then
        pass "$1 ($(grep -E '^(customer|vendor|buy) ' "$T/$3.out" | tail -n 1))"
    else
        fail "$1: exit $rc; $T/$3.out:"
        tail -n 20 "$T/$3.out" | sed 's/^/       /'
    fi
}

# ids_logged CODE: the request ids of the broker's CODE lines (one per line, as logged)
ids_logged() {
    sed -n "s/.*\] $1: .*(request \([A-Za-z0-9_-]*\)).*/\1/p" "$T/error.log" | sort
}
# ids_ok ENDPOINT: the request ids the clients got 200 for at ENDPOINT
ids_ok() {
    cat "$out"/ok.* 2>/dev/null | awk -v e="$1" '$1 == e { print $2 }' | sort
}

# logs_match STEP: per endpoint, the ids logged after the commit are those answered 200
logs_match() {
    local ep code logged ok dl dok only_log only_ok
    for ep in buy:MP00140 exchange:MP00141 certify:MP00142 redeem:MP00143; do
        code=${ep#*:}
        ep=${ep%%:*}
        logged=$(ids_logged "$code")
        ok=$(ids_ok "$ep")
        dl=$(uniq -d <<<"$logged" | grep -c .)
        dok=$(uniq -d <<<"$ok" | grep -c .)
        only_log=$(comm -23 <(uniq <<<"$logged") <(uniq <<<"$ok") | grep -c .)
        only_ok=$(comm -13 <(uniq <<<"$logged") <(uniq <<<"$ok") | grep -c .)
        # Distinct ids: a line repeated for one request names no operation
        # that did not happen (noted, not failed); a client that recorded one
        # id twice would be a bug of this test.
        [ "$dl" = 0 ] || note "$1: /$ep: $dl request ids have more than one $code line"
        if [ -n "$ok" ] && [ "$dok" = 0 ] && [ "$only_log" = 0 ] && [ "$only_ok" = 0 ]; then
            pass "$1: /$ep: $(uniq <<<"$ok" | grep -c .) request ids got 200 = $(uniq <<<"$logged" | grep -c .) ids in $code lines, the same ids"
        else
            fail "$1: /$ep: $(uniq <<<"$ok" | grep -c .) request ids got 200, $(uniq <<<"$logged" | grep -c .) ids in $code lines; $only_log logged and not answered 200, $only_ok answered 200 and not logged ($dok recorded twice by the clients)"
            comm -3 <(uniq <<<"$logged") <(uniq <<<"$ok") | head -5 | while read -r id; do
                evidence "$id"
            done
        fi
    done
}

# evidence ID: what the client noted of request ID (when its tries got no
# answer), the kills in the half second before each such note, and the broker's
# log lines of ID.
evidence() {
    local id=$1 t
    echo "       request $id:"
    grep -h -F " $id: no answer" "$T"/*.out | sed 's/^/         client /'
    for t in $(grep -h -F " $id: no answer" "$T"/*.out | awk '{ print $2 }'); do
        awk -v t="$t" '$1 >= t - 0.5 && $1 <= t { print "         kill -9 at " $1 " of child " $2 }' "$T/kills"
    done
    grep -F "request $id " "$T/error.log" | sed 's/^/         log /'
    grep -F "(request $id)" "$T/error.log" | sed 's/^/         log /'
    [ -n "$(grep -F -e "request $id " -e "(request $id)" "$T/error.log")" ] ||
        echo "         log: no line names it"
}

# audit_matches STEP: mpadmin broker audit balances, and every term equals
# what the clients hold and did (all of it known: every request was answered)
audit_matches() {
    local bought certified mc pw bu vu cred want got bad="" k
    load_sums
    bought=$(sum_key bought)
    certified=$(sum_key certified)
    mc=$(sum_key mc_paid)
    pw=$(sum_key pw_paid)
    bu=$(sum_key broker_unspent)
    vu=$(sum_key vendor_unspent)
    cred=$(sum_key credited)
    mpa "$1: broker audit balanced" 0 '.balanced == true and (.currencies | length) == 1' \
        broker audit "$T/bstore" || return
    audit_json=$out_json
    [ "$cred" = $((mc + pw)) ] || bad+=" vendor process credited $cred, customers paid $mc + $pw;"
    for k in credited:$money_in withdrawn:0 redeemed:$cred vendor_balance:$cred \
             customer_balance:$((money_in - bought - certified)) reserved:$((certified - pw)) \
             broker_scrip:$bu vendor_scrip:$vu; do
        want=${k#*:}
        k=${k%%:*}
        got=$(jq -r ".currencies[0].${k}_units" <<<"$audit_json")
        [ "$got" = "$want" ] || bad+=" $k $got, clients say $want;"
    done
    if [ -z "$bad" ]; then
        pass "$1: audit terms = the clients' figures (bought $bought, certified $certified, paid mc $mc pw $pw, holding broker $bu vendor $vu)"
    else
        fail "$1: audit terms differ from the clients' figures:$bad"
        jq -c '.currencies[0]' <<<"$audit_json" | sed 's/^/       /'
    fi
    bad=""
    for a in $customers; do
        want="$((credit_units - $(sum_key bought "$a") - $(sum_key certified "$a"))) $(($(sum_key certified "$a") - $(sum_key pw_paid "$a")))"
        got=$("$mpadmin" --json accounts show "$T/bstore" "$a" | jq -r '"\(.balance_units) \(.reserved_units)"')
        [ "$got" = "$want" ] || bad+=" $a balance/reserved $got, expected $want;"
    done
    want=$cred
    got=$("$mpadmin" --json accounts show "$T/bstore" v-news | jq -r '.balance_units')
    [ "$got" = "$want" ] || bad+=" v-news balance $got, expected $want;"
    check "$([ -z "$bad" ]; echo $?)" "$1: every account's balance and reserved credit as its client did" "$bad"
}

# Lines at warn or worse: none expected but the parent's own reactions to
# the kills. httpd 2.4 reaps a child killed with SIGKILL silently
# (ap_process_child_status), but should a build report it, it is as "child
# pid N exit signal Killed (9)"; the event MPM warns "AH10392: children are
# killed successively!" when it has to replace them one after another. No
# MP001 warning is expected: every request here is valid, funded and covered
# (no MP00144 shortfall, no MP00124 store trouble, no MP00126/MP00127 forgery).
# MP00147 is the start-up warning of the vendor, which allows PayWord over plain http.
allow='\[mpm_event:warn\] .* AH10392: children are killed successively!$|AH0005[12]: child pid [0-9]+ exit signal Killed \(9\)|\[micropay:warn\].* MP00147: vendor news\.example: MicropayPayWordOverHTTP On: '
check_log() {
    local bad
    bad=$(grep -E '\[([a-z0-9_]+:)?(warn|error|crit|alert|emerg)\]' "$T/error.log" "$T/apache.out" |
          grep -vE "$allow")
    if [ -z "$bad" ]; then
        pass "$1: error log: nothing at warn or worse (MP001 warnings included) but killed children"
    else
        fail "$1: unexpected error log lines ($(grep -c . <<<"$bad")):"
        head -20 <<<"$bad" | sed 's/^/       /'
    fi
}

wait_children() {   # until Apache has children again and both ports answer (10 s)
    local n=100
    while [ $n -gt 0 ]; do
        [ -n "$(pgrep -P "$apid")" ] && both_answer && return 0
        sleep 0.1
        n=$((n - 1))
    done
    return 1
}

figures() {
    local k
    load_sums
    for k in buy:MP00140 exchange:MP00141 certify:MP00142 redeem:MP00143; do
        printf '/%s %s (%s logged), ' "${k%%:*}" "$(ids_ok "${k%%:*}" | grep -c .)" \
            "$(ids_logged "${k#*:}" | uniq | grep -c .)"
    done
    printf 'vendor payments: %s Millicent, %s PayWord; redeemed items %s\n' \
        "$(sum_key pay_mc)" "$(sum_key pay_pw)" "$(sum_key items)"
}

# ---- load + kill -9 ------------------------------------------------------------------------------------
log0=$(wc -l <"$T/error.log")
run_load vendor vendor v-news
vpid=$!
cpids=""
bg_pids=$vpid
for a in $customers; do
    run_load "$a" customer "$a" "$load_s"
    cpids+=" $a:$!"
    bg_pids+=" $!"
done
# every 200-500 ms a random child of the parent (all of them serve the
# broker); none at that moment (all killed, the parent has not started new
# ones yet): skipped. $T/kills: "TIME PID" per kill, for the evidence.
kills=0
skipped=0
: >"$T/kills"
end=$((SECONDS + load_s))
while [ "$SECONDS" -lt "$end" ]; do
    sleep "0.$((200 + RANDOM % 301))"
    mapfile -t kids < <(pgrep -P "$apid")
    if [ "${#kids[@]}" = 0 ]; then
        skipped=$((skipped + 1))
        continue
    fi
    victim=${kids[RANDOM % ${#kids[@]}]}
    at=$EPOCHREALTIME            # taken before the kill: clients notice within microseconds
    if kill -9 "$victim" 2>/dev/null; then
        kills=$((kills + 1))
        echo "$at $victim" >>"$T/kills"
    fi
done
note "load ran ${load_s} s; $kills children killed with SIGKILL ($skipped times none was there)"
[ "$kills" -ge "$load_s" ]; check $? "kill -9: $kills children killed in $load_s s"
for c in $cpids; do
    client_rc "customer ${c%%:*}: every request answered, none refused" "${c#*:}" "${c%%:*}"
done
touch "$out/stop"
client_rc "vendor v-news: every deposit redeemed, every item ok" "$vpid" vendor
bg_pids=""
note "after the kills: $(wc -l <"$T/error.log") error log lines, $((log0)) before the load"

load_sums
retried=$(sum_key retried)
recovered=$(sum_key recovered)
again=$(grep -c 'MP00132: ' "$T/error.log")
note "requests retried after no answer: $retried ($recovered then 200; $again answered again from the store, MP00132)"
# Those answered again had committed before their child died; how many of
# them have their outcome line (logged after the commit) tells whether the
# kills landed between the commit and the log line.
again_logged=0
for id in $(sed -n 's/.* MP00132: .* request \([A-Za-z0-9_-]*\) of account .*/\1/p' "$T/error.log"); do
    grep -qF "(request $id)" "$T/error.log" && again_logged=$((again_logged + 1))
done
note "of the $again committed before their child died, $again_logged have their MP0014x line"
[ "$retried" -gt 0 ]; check $? "the kills cut requests off: $retried requests retried with their request_id"
audit_matches "after load + kill -9"
logs_match "after load + kill -9"
check_log "after load + kill -9"
note "$(figures)"

# ---- a final phase without kills -----------------------------------------------------------------------
if wait_children; then
    pass "Apache serves again ($(pgrep -P "$apid" | wc -l) children)"
else
    fail "Apache does not serve after the kills: $(tail -n 5 "$T/error.log")"
fi
for a in $customers; do
    run_load "final-$a" buy "$a" "0.01 USD"
    client_rc "final /buy of $a without kills" $! "final-$a"
done
audit_matches "final"
logs_match "final"
check_log "final"

note "figures: $(figures)"
note "kills: $kills; requests retried $retried ($recovered then 200), MP00132 answered again $again"
note "audit: $(jq -c '.currencies[0] | {credited, withdrawn, redeemed, customer_balance, reserved,
    vendor_balance, broker_scrip, vendor_scrip, broker_scrip_count, vendor_scrip_count}' <<<"$audit_json")"
if stop_apache; then pass "stop (TERM)"; else fail "stop (TERM) took longer than 15 s"; fi
finish
