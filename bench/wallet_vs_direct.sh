#!/bin/bash
# bench/wallet_vs_direct.sh BUILD_DIR - throughput and p99 through
# wallet-proxy against direct, in one run (issue 5's benchmark).
#
# The system of scripts/system.sh (Apache event + mod_micropay + broker,
# alice funded, the wallet in front). Apache is pinned to CPU 1
# (MP_BENCH_SERVER_CPU), wrk to CPU 0 (MP_BENCH_WRK_CPU); wrk -t1 -c$CONNS,
# keep-alive, $RUNS interleaved rounds of $SECONDS_PER_RUN s each of:
#   direct_free     GET /index.html straight to Apache
#   client_free     the same through the wallet, the wallet on wrk's CPU:
#                   the user's machine (browser + wallet) apart from the
#                   vendor's server, as deployed
#   client_paid     /paid/a1.html?<fresh query> through the wallet there:
#                   every request a new target, paid up front (Millicent;
#                   the realm's first 402 happened before: steady state)
#   shared_free     the wallet on the server's CPU: Apache and the wallet
#   shared_paid     compete for one core, wrk alone on the other
# Prints the median req/s and p99 of each and the ratio to direct; every
# answer must be 200 (the non-200 column). Needs root, wrk, taskset.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
. "$top/tests/integration/lib.sh"
. "$top/scripts/system.sh"
BUILD=$(cd "${1:?usage: wallet_vs_direct.sh BUILD_DIR}" && pwd)
APACHE2=${APACHE2:-$(command -v apache2 || echo /usr/sbin/apache2)}
SECONDS_PER_RUN=${MP_BENCH_SECONDS:-8}
RUNS=${MP_BENCH_RUNS:-3}
CONNS=${MP_BENCH_CONNS:-16}
SCPU=${MP_BENCH_SERVER_CPU:-1}
WCPU=${MP_BENCH_WRK_CPU:-0}
LUA=$here/wrk_proxy.lua
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null ||
    { echo "cannot install wrk" >&2; exit 2; }
apid=""; wpid=""
T=$(mktemp -d /tmp/mp-wbench.XXXXXX); chmod 755 "$T"
cleanup() { sys_stop; [ "${MP_BENCH_KEEP:-0}" = 1 ] && echo "kept $T" >&2 || rm -rf "$T"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

sys_setup || exit 1
sys_mpadmin accounts credit "$T/bstore" alice "5000.00 USD" >/dev/null || exit 1
sys_wallet_conf
sed -i -e 's/^Threshold .*/Threshold 0.10 USD/' -e 's/^SiteBudget .*/SiteBudget 100000.00 USD/' \
    -e 's/^DailyBudget .*/DailyBudget 100000.00 USD/' -e 's/^Topup .*/Topup 50.00 USD/' \
    -e 's/^LogLevel .*/LogLevel warn/' "$T/wallet.conf"
sys_wallet_start || exit 1
for p in $apid $(pgrep -P "$apid"); do taskset -a -p -c "$SCPU" "$p" >/dev/null; done
pin_wallet() { taskset -a -p -c "$1" "$wpid" >/dev/null; }
H=news.example:$port
# the realm's first 402, so that the runs below are the steady state
curl -s -o /dev/null -x "http://127.0.0.1:$wport" "http://$H/paid/a1.html?warmup" || exit 1

one() {    # one NAME URL PROXY PATH UNIQUE RUN -> "req/s p99_ms non200"
    local out
    out=$(MPB_HOST=$H MPB_PROXY=$3 MPB_PATH=$4 MPB_UNIQUE=$5 MPB_RUN=$6 \
        taskset -c "$WCPU" wrk -t1 -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency -s "$LUA" "$2" 2>&1)
    echo "$out" >>"$T/wrk.out"
    local rps p99 bad
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    bad=$(awk '$1 == "non200" {print $2}' <<<"$out")
    echo "$rps $p99 ${bad:-?}"
}
ms() {    # wrk latency (e.g. 1.23ms, 450.00us, 1.02s) -> milliseconds
    awk -v v="$1" 'BEGIN { u = v; sub(/[0-9.]+/, "", u); x = v + 0;
        if (u == "us") x /= 1000; else if (u == "s") x *= 1000; printf "%.2f", x }'
}
kinds="direct_free client_free client_paid shared_free shared_paid"
declare -A R P B
for r in $(seq 1 "$RUNS"); do
    for kind in $kinds; do
        case $kind in
            client_*) pin_wallet "$WCPU" ;;
            shared_*) pin_wallet "$SCPU" ;;
        esac
        case $kind in
            direct_free) res=$(one $kind "http://127.0.0.1:$port" 0 /index.html 0 "$r") ;;
            *_free) res=$(one $kind "http://127.0.0.1:$wport" 1 /index.html 0 "$r") ;;
            *_paid) res=$(one $kind "http://127.0.0.1:$wport" 1 /paid/a1.html 1 "$r-$kind") ;;
        esac
        read -r rps p99 bad <<<"$res"
        R[$kind]="${R[$kind]:-} $rps"; P[$kind]="${P[$kind]:-} $(ms "$p99")"
        B[$kind]=$(( ${B[$kind]:-0} + ${bad//\?/1000000} ))
        echo "round $r $kind: $rps req/s, p99 $p99, non-200 $bad"
    done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
df=$(median "${R[direct_free]}")
echo
printf '%-12s %12s %10s %10s %8s\n' "" "req/s" "p99 ms" "vs direct" "non-200"
for kind in $kinds; do
    m=$(median "${R[$kind]}")
    printf '%-12s %12s %10s %10s %8s\n' "$kind" "$m" "$(median "${P[$kind]}")" \
        "$(awk -v a="$m" -v b="$df" 'BEGIN { printf "%.3f", a / b }')" "${B[$kind]}"
done
echo "(Apache on CPU $SCPU; wrk -t1 -c$CONNS on CPU $WCPU; wallet-proxy on CPU $WCPU for client_*, CPU $SCPU for shared_*; ${SECONDS_PER_RUN}s x $RUNS rounds)"
echo "paid through the wallet: news.example earned $(sys_mpadmin --json earnings "$T/news-store" --by scheme | jq -r '.totals[0].amount')"
