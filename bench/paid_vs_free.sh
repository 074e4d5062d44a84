#!/bin/sh
# paid_vs_free.sh BUILD_DIR - throughput of a paid location against a free one.
#
# One Apache (event MPM, one child of 128 threads, pinned to CPU 1) serves
# the same 1 KB file under /free/ and /paid/; wrk (pinned to CPU 0, one
# thread, 64 keep-alive connections) runs MP_BENCH_RUNS (3) rounds of
# MP_BENCH_SECONDS (8) seconds each of: free, Millicent (every request
# spends fresh scrip), PayWord (every request pays the next word of one of
# 64 commitments). Rounds interleave the three so that drift on the machine
# affects them alike. Tokens are made beforehand by bench/mp_paygen, fresh
# for every run, and sent by bench/wrk_tokens.lua. Free requests go through
# the same Lua request() with a dummy header (X-Bench-Dummy, same name length
# and value length as a Millicent credential) so wrk's per-request cost is
# the same. PayWord first contacts (two signature checks per commitment)
# are sent before each run starts, not measured.
#
# Reports per run and as medians: requests/s, p99 latency, non-2xx responses,
# Apache's CPU use and CPU time per request, and CPU used by other processes
# on the machine during the run; and the paid/free ratios of requests/s
# (goal: >= 0.9). A run with non-2xx responses or socket errors is invalid;
# a run during which other processes used more than MP_BENCH_OTHER_MAX (5)
# percent of a core is repeated up to MP_BENCH_RETRIES (2) times, then kept
# and flagged (medians use the undisturbed runs when there are any). Apache's
# CPU time per request is the figure least affected by other load; the
# summary also gives the ratio it implies (free us / paid us).
#
# Environment: MP_BENCH_SECONDS (8), MP_BENCH_RUNS (3), MP_BENCH_CONNS (64),
# MP_BENCH_APACHE_CPU (1), MP_BENCH_WRK_CPU (0), MP_BENCH_OTHER_MAX (5),
# MP_BENCH_RETRIES (2), MP_BENCH_QUIET_WAIT (60: seconds to wait before a
# run for other load to settle), MP_BENCH_KEEP=1 keeps the temp directory (config,
# logs, store, wrk outputs).
# Needs root (Apache runs its children as www-data; the store belongs to
# www-data), apache2, taskset, curl, perl; installs wrk with apt-get if missing.
# Word splitting of pid lists and wrk result lines is intended:
# shellcheck disable=SC2086
set -eu

BUILD_DIR=${1:-}
if [ -z "$BUILD_DIR" ] || [ ! -d "$BUILD_DIR" ]; then
    echo "usage: $0 BUILD_DIR   (an out-of-tree build of mod_micropay)" >&2
    exit 2
fi
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_PER_RUN=${MP_BENCH_SECONDS:-8}
RUNS=${MP_BENCH_RUNS:-3}
CONNS=${MP_BENCH_CONNS:-64}
OTHER_MAX=${MP_BENCH_OTHER_MAX:-5}
RETRIES=${MP_BENCH_RETRIES:-2}
QUIET_WAIT=${MP_BENCH_QUIET_WAIT:-60}
APACHE_CPU=${MP_BENCH_APACHE_CPU:-1}
WRK_CPU=${MP_BENCH_WRK_CPU:-0}
MODDIR=/usr/lib/apache2/modules
MODULE=$BUILD_DIR/mod_micropay/.libs/mod_micropay.so
MPADMIN=$BUILD_DIR/tools/mpadmin
LUA=$SRC_DIR/bench/wrk_tokens.lua
VENDOR=bench.example
PRICE="0.001 USD"
UNIT="0.001 USD"
NCOMMIT=64

die() { echo "paid_vs_free: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (Apache needs User www-data; store owner www-data)"
[ -f "$MODULE" ] || die "no $MODULE: build the module first"
[ -x "$MPADMIN" ] || die "no $MPADMIN: build tools/mpadmin first"
command -v apache2 >/dev/null || die "apache2 is not installed"
command -v taskset >/dev/null || die "taskset is not installed (util-linux)"
command -v curl >/dev/null || die "curl is not installed"
command -v perl >/dev/null || die "perl is not installed"
if ! command -v wrk >/dev/null; then
    echo "installing wrk..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null || die "cannot install wrk"
fi

T=$(mktemp -d /tmp/mp-bench.XXXXXX)
chmod 755 "$T"
APACHE_PID=
cleanup() {
    if [ -n "$APACHE_PID" ] && kill -0 "$APACHE_PID" 2>/dev/null; then
        kill -TERM "$APACHE_PID" 2>/dev/null || true
        i=0
        while kill -0 "$APACHE_PID" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    fi
    if [ "${MP_BENCH_KEEP:-0}" = 1 ]; then
        echo "kept $T" >&2
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the generator: from the build (make) if there, else compiled here -----------
PAYGEN=$BUILD_DIR/bench/mp_paygen
if [ ! -x "$PAYGEN" ]; then
    [ -f "$BUILD_DIR/libmp/.libs/libmp.a" ] || die "no $BUILD_DIR/libmp/.libs/libmp.a"
    ${CC:-cc} -O2 -Wall -Wextra -I"$SRC_DIR/libmp" "$SRC_DIR/bench/mp_paygen.c" \
        "$BUILD_DIR/libmp/.libs/libmp.a" -lcrypto -o "$T/mp_paygen" || die "cannot build mp_paygen"
    PAYGEN=$T/mp_paygen
fi

# ---- keys, store, documents -----------------------------------------------------------
"$MPADMIN" keys vendor "$T/vendor.secrets" >/dev/null
"$MPADMIN" keys broker "$T/broker.key" >/dev/null
chmod 644 "$T/broker.key.pub"
"$MPADMIN" store init "$T/store" --owner www-data >/dev/null
mkdir -p "$T/htdocs/free" "$T/htdocs/paid" "$T/run"
head -c 1024 /dev/urandom > "$T/htdocs/free/1k.bin"
cp "$T/htdocs/free/1k.bin" "$T/htdocs/paid/1k.bin"
chmod -R a+rX "$T/htdocs"

PORT=$(perl -MIO::Socket::INET -e \
    '$s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1:0") or die; print $s->sockport')
HOST=127.0.0.1:$PORT
FREE_URL=http://$HOST/free/1k.bin
PAID_URL=http://$HOST/paid/1k.bin

cat > "$T/httpd.conf" <<EOF
ServerRoot $T
ServerName 127.0.0.1
Listen $HOST
PidFile $T/run/httpd.pid
DefaultRuntimeDir $T/run
Mutex file:$T/run default
User www-data
Group www-data
ErrorLog $T/error.log
LogLevel warn
# No access log: logging cost would be the same on both sides and is not
# what this benchmark compares.

LoadModule mpm_event_module $MODDIR/mod_mpm_event.so
LoadModule authz_core_module $MODDIR/mod_authz_core.so
LoadModule micropay_module $MODULE

# One child with every thread pre-started (the connection count fits), so
# no run pays for process or thread start-up; keep-alive without limit.
StartServers 1
ServerLimit 1
ThreadLimit 128
ThreadsPerChild 128
MaxRequestWorkers 128
MinSpareThreads 1
MaxSpareThreads 128
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 30
Timeout 30

DocumentRoot $T/htdocs
# As in Debian's apache2.conf: no .htaccess lookups.
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory $T/htdocs>
    Require all granted
</Directory>

MicropayVendor $VENDOR
MicropaySecretsFile $T/vendor.secrets
MicropayStore $T/store
MicropayTrustBroker broker.example $T/broker.key.pub
<Location /paid>
    Micropay on
    MicropayPrice "$PRICE"
    MicropayPayWordUnit "$UNIT"
    MicropayReceiptWindow 600
</Location>
EOF

apache2 -t -f "$T/httpd.conf" 2>"$T/configtest.out" || { cat "$T/configtest.out" >&2; die "config test failed"; }
taskset -c "$APACHE_CPU" apache2 -f "$T/httpd.conf" -DFOREGROUND &
APACHE_PID=$!
i=0
until curl -s -o /dev/null "$FREE_URL"; do
    kill -0 "$APACHE_PID" 2>/dev/null || { cat "$T/error.log" >&2; die "apache2 exited"; }
    i=$((i + 1)); [ $i -lt 100 ] || die "apache2 does not answer on $HOST"
    sleep 0.1
done

log_lines() { wc -l < "$T/error.log" | tr -d ' '; }
LOG_SEEN=$(log_lines)
check_log() {   # new error log lines (LogLevel warn: anything at warn and above)
    n=$(log_lines)
    if [ "$n" -gt "$LOG_SEEN" ]; then
        echo "WARNING: error log lines during $1:" >&2
        tail -n $((n - LOG_SEEN)) "$T/error.log" | head -20 >&2
        LOG_BAD=1
    fi
    LOG_SEEN=$n
}
LOG_BAD=0

code=$(curl -s -o "$T/got" -w '%{http_code}' "$FREE_URL")
if [ "$code" != 200 ] || ! cmp -s "$T/got" "$T/htdocs/free/1k.bin"; then die "free file: HTTP $code"; fi
code=$(curl -s -o /dev/null -w '%{http_code}' "$PAID_URL")
[ "$code" = 402 ] || die "paid file without payment: HTTP $code, expected 402"
APACHE_PIDS="$APACHE_PID $(pgrep -P "$APACHE_PID" | tr '\n' ' ')"
[ "$(echo "$APACHE_PIDS" | wc -w)" -eq 2 ] || die "expected one Apache child, got: $APACHE_PIDS"

# ---- CPU accounting -------------------------------------------------------------------
HZ=$(getconf CLK_TCK)
# CPU ticks (user + system) of the given processes.
ticks_of() {
    for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null; done |
        awk '{ sub(/^.*\) /, ""); t += $12 + $13 } END { print t + 0 }'
}
# CPU ticks of every process except ours (this shell, whose children -
# wrk, curl, mp_paygen - are reaped into its cutime, and Apache) and kernel
# threads. Reaped processes count through their parents' cutime/cstime,
# so processes that start and end within a run are seen too.
other_ticks() {
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v ex=" $$ $APACHE_PIDS " '
        { pid = $1; sub(/^.*\) /, "");
          if (index(ex, " " pid " ") || pid == 2 || $2 == 2) next;
          t += $12 + $13 + $14 + $15 }
        END { print t + 0 }'
}

# Waits (at most QUIET_WAIT seconds) until other processes use at most
# OTHER_MAX percent of a core over one second.
wait_quiet() {
    waited=0
    while [ "$waited" -lt "$QUIET_WAIT" ]; do
        o0=$(other_ticks); sleep 1; o1=$(other_ticks)
        [ $(( (o1 - o0) * 100 )) -le $(( OTHER_MAX * HZ )) ] && return 0
        waited=$((waited + 1))
    done
}

# ---- helpers ----------------------------------------------------------------------
NEXT_ID=1
RUN_NO=0
SEED_BASE="$$-$(date +%s)"

gen_millicent() {   # gen_millicent COUNT FILE
    "$PAYGEN" millicent "$T/vendor.secrets" "$VENDOR" "$HOST" /paid/1k.bin "$PRICE" "$1" "$NEXT_ID" > "$2" \
        || die "mp_paygen millicent failed"
    NEXT_ID=$((NEXT_ID + $1))
}
gen_payword() {     # gen_payword COUNT FILE FIRST_CONTACT_FILE
    RUN_NO=$((RUN_NO + 1))
    "$PAYGEN" payword "$T/broker.key" "$VENDOR" "$HOST" /paid/1k.bin "$PRICE" "$UNIT" "$1" \
        "$NCOMMIT" "$SEED_BASE-$RUN_NO" "$3" > "$2" || die "mp_paygen payword failed"
}
send_each() {       # send_each FILE: one request per token, all must be paid
    while IFS= read -r tok; do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Payment $tok" "$PAID_URL")
        [ "$code" = 200 ] || die "PayWord first contact answered HTTP $code (expected 200); see $T/error.log"
    done < "$1"
}

# wrk_run NAME URL TOKENFILE HEADER MODE SECONDS: sets RES to
# "req/s p99_ms non2xx socket_errors requests apache_cpu% apache_us_per_req other_cpu%"
wrk_run() {
    out=$T/wrk-$1.out
    a0=$(ticks_of $APACHE_PIDS); o0=$(other_ticks)
    taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$6"s --latency -s "$LUA" "$2" -- "$3" "$4" "$5" \
        > "$out" 2>&1 || { cat "$out" >&2; die "wrk failed"; }
    a1=$(ticks_of $APACHE_PIDS); o1=$(other_ticks)
    RES=$(awk -v a="$((a1 - a0))" -v o="$((o1 - o0))" -v hz="$HZ" -v d="$6" '
        /Requests\/sec:/ { rps = $2 }
        /^ +99%/ { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
                   p99 = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : (u == "m") ? v * 60000 : v }
        /Non-2xx or 3xx responses:/ { non2xx = $NF }
        /Socket errors:/ { gsub(/,/, ""); sock = $4 + $6 + $8 + $10 }
        / requests in / { reqs = $1 }
        END { printf "%s %.2f %d %d %d %.0f %.1f %.1f\n", rps, p99, non2xx, sock, reqs,
                     100 * a / (hz * d), (reqs > 0) ? a * 1e6 / hz / reqs : 0, 100 * o / (hz * d) }' "$out")
    [ -n "${RES%% *}" ] || { cat "$out" >&2; die "cannot read wrk output"; }
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Dummy values for the free runs: as long as a Millicent credential.
gen_millicent 1 "$T/probe"
TOKLEN=$(head -1 "$T/probe" | tr -d '\n' | wc -c)
awk -v n=20000 -v l="$TOKLEN" 'BEGIN { s = sprintf("%*s", l, ""); gsub(/ /, "A", s); for (i = 0; i < n; i++) print s }' \
    > "$T/dummy"

echo "mod_micropay paid vs free: $(apache2 -v | sed -n 's/^Server version: //p'), event MPM," \
     "1 child x 128 threads on CPU $APACHE_CPU; wrk -t1 -c$CONNS on CPU $WRK_CPU;" \
     "${SECONDS_PER_RUN}s x $RUNS interleaved rounds; 1 KB file; keep-alive (MaxKeepAliveRequests 0);" \
     "no access log; LogLevel warn"
echo "free requests carry X-Bench-Dummy: Payment <$TOKLEN bytes> through the same wrk Lua request();" \
     "paid ones Authorization: Payment <fresh token>"

# ---- warm-up: free, then both schemes (also proves the tokens are accepted) ---------
wrk_run warm-free "$FREE_URL" "$T/dummy" X-Bench-Dummy cycle 3
set -- $RES
WARM_RPS=${1%.*}
if [ "$3" != 0 ] || [ "$4" != 0 ]; then die "free warm-up: $3 non-2xx, $4 socket errors"; fi
TOKENS=$(( WARM_RPS * SECONDS_PER_RUN * 3 / 2 ))
[ "$TOKENS" -ge 1000 ] || TOKENS=1000
WARM_TOKENS=$(( WARM_RPS * 3 ))
gen_millicent "$WARM_TOKENS" "$T/tok-warm-mc"
wrk_run warm-mc "$PAID_URL" "$T/tok-warm-mc" Authorization once 2
set -- $RES
if [ "$3" != 0 ] || [ "$4" != 0 ]; then check_log "warm-up"; die "Millicent warm-up: $3 non-2xx, $4 socket errors"; fi
gen_payword "$WARM_TOKENS" "$T/tok-warm-pw" "$T/tok-warm-pw-first"
send_each "$T/tok-warm-pw-first"
wrk_run warm-pw "$PAID_URL" "$T/tok-warm-pw" Authorization once 2
set -- $RES
if [ "$3" != 0 ] || [ "$4" != 0 ]; then check_log "warm-up"; die "PayWord warm-up: $3 non-2xx, $4 socket errors"; fi
check_log "warm-up"
echo "warm-up done (free ~$WARM_RPS req/s); tokens per paid run: $TOKENS (free rate x ${SECONDS_PER_RUN}s x 1.5)"
# Each spent scrip stays in the store (1 GiB LMDB map) until it expires
# (one day here): ~263 bytes each, ~4.08M fill the store, after which every
# Millicent payment gets 500 (MP00022 "store full").
if [ $(( RUNS * TOKENS * 2 / 3 + WARM_TOKENS )) -gt 3000000 ]; then
    echo "WARNING: about $(( RUNS * TOKENS * 2 / 3 + WARM_TOKENS )) Millicent payments will be stored;" \
         "the store fills at ~4.08M (1 GiB map): shorten MP_BENCH_SECONDS or MP_BENCH_RUNS" >&2
fi
echo

# ---- measured runs ----------------------------------------------------------------------
RESULTS=$T/results
: > "$RESULTS"
INVALID=0
DISTURBED=0
SATURATION=0
printf '%-10s %-4s %10s %10s %8s %7s %9s %10s %9s\n' scheme run "req/s" "p99 ms" non-2xx "sockerr" "apache%" "apache us" "other%"

# measure SCHEME ROUND: one run, repeated while other processes disturb it
measure() {
    attempt=0
    while :; do
        wait_quiet
        case $1 in
        free)      wrk_run "free-$2" "$FREE_URL" "$T/dummy" X-Bench-Dummy cycle "$SECONDS_PER_RUN"; tok= ;;
        millicent) gen_millicent "$TOKENS" "$T/tok-mc"
                   wrk_run "mc-$2" "$PAID_URL" "$T/tok-mc" Authorization once "$SECONDS_PER_RUN"; tok=$TOKENS ;;
        payword)   gen_payword "$TOKENS" "$T/tok-pw" "$T/tok-pw-first"
                   send_each "$T/tok-pw-first"          # first contacts: not measured
                   wrk_run "pw-$2" "$PAID_URL" "$T/tok-pw" Authorization once "$SECONDS_PER_RUN"; tok=$TOKENS ;;
        esac
        check_log "$1 run $2"
        set -- "$1" "$2" $RES
        note=
        clean=1
        if awk -v o="${10}" -v m="$OTHER_MAX" 'BEGIN { exit !(o > m) }'; then
            if [ "$attempt" -lt "$RETRIES" ]; then
                attempt=$((attempt + 1))
                printf '%-10s %-4s (other processes used %s%% of a core: repeating)\n' "$1" "$2" "${10}"
                set -- "$1" "$2"
                continue
            fi
            note=" DISTURBED"
            clean=0
            DISTURBED=1
        fi
        if [ "$5" != 0 ] || [ "$6" != 0 ]; then
            note="$note INVALID"
            INVALID=1
        fi
        if [ -n "$tok" ] && [ "$7" -gt "$tok" ]; then
            note="$note TOKENS-SHORT"
        fi
        if [ "$8" -lt 90 ]; then
            note="$note APACHE-NOT-SATURATED"
            SATURATION=1
        fi
        printf '%-10s %-4s %10.0f %10.2f %8s %7s %8s%% %10s %8s%%%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$8" "$9" "${10}" "$note"
        echo "$1 $3 $4 $9 $clean" >> "$RESULTS"
        return 0
    done
}

r=1
while [ "$r" -le "$RUNS" ]; do
    for scheme in free millicent payword; do
        measure "$scheme" "$r"
    done
    r=$((r + 1))
done

# ---- summary ----------------------------------------------------------------------------
# Column $5 of results is 1 for undisturbed runs; medians use those when any exist.
col() {   # col SCHEME FIELD
    awk -v s="$1" -v f="$2" '$1 == s { all[++n] = $f; if ($5 == 1) clean[++c] = $f }
        END { if (c) for (i = 1; i <= c; i++) print clean[i]; else for (i = 1; i <= n; i++) print all[i] }' "$RESULTS"
}
echo
FREE_RPS=$(col free 2 | median)
FREE_US=$(col free 4 | median)
printf '%-10s %12s %11s %14s %16s %16s\n' scheme "median req/s" "median p99" "Apache us/req" "paid/free req/s" "paid/free by CPU"
for s in free millicent payword; do
    rps=$(col $s 2 | median)
    p99=$(col $s 3 | median)
    us=$(col $s 4 | median)
    n=$(awk -v s=$s '$1 == s && $5 == 1' "$RESULTS" | wc -l | tr -d ' ')
    ratio=$(awk -v a="$rps" -v b="$FREE_RPS" 'BEGIN { printf "%.3f", a / b }')
    cratio=$(awk -v a="$us" -v b="$FREE_US" 'BEGIN { printf "%.3f", b / a }')
    extra=
    if [ $s != free ]; then
        extra=$(awk -v x="$ratio" -v u="$us" -v f="$FREE_US" \
            'BEGIN { printf "  goal >= 0.9 %s; +%.1f us/request", (x >= 0.9) ? "met" : "NOT met", u - f }')
    fi
    [ "$n" -gt 0 ] || extra="$extra (only disturbed runs)"
    printf '%-10s %12.0f %8.2f ms %14s %16s %16s%s\n' $s "$rps" "$p99" "$us" "$ratio" "$cratio" "$extra"
done
"$MPADMIN" store stat "$T/store" | sed 's/^/store: /'
[ "$LOG_BAD" = 0 ] || echo "WARNING: the error log has warnings or errors (above)" >&2
[ "$SATURATION" = 0 ] || echo "WARNING: in some runs Apache used < 90% of its core: not Apache-bound" >&2
[ "$DISTURBED" = 0 ] || echo "WARNING: other processes used > ${OTHER_MAX}% of a core during some runs" >&2
if [ "$INVALID" = 1 ]; then
    echo "WARNING: some runs had non-2xx responses or socket errors: their figures are not valid" >&2
    exit 1
fi
