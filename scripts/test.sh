#!/bin/sh
# The whole test suite (README's test command; .ci/run calls it):
#   1. release build, `make check` (CUnit suites, layering check, vectors
#      against the openssl CLI, CLI demo)
#   2. the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   3. integration: Debian's apache2 (prefork and event) with the built module,
#      driven by libcurl and curl
#   4. libFuzzer targets for a bounded time each
#   5. `make distcheck`
# Exits non-zero when anything fails; closes with "N passed, N failed".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh scripts/deps.sh || exit 1

passed=0; failed=0
note() { printf '\n=== %s\n' "$*"; }
# Adds the CUnit tally of a build's mp_unit log and the script tests' results.
# Adds the CUnit tallies of a build's test programs and the script tests' results.
tally() {
    for log in "$1"/tests/unit/mp_unit.log "$1"/tests/store/mps_test.log "$1"/tests/store/mpb_test.log \
               "$1"/tests/store/mpk_test.log "$1"/tests/wallet/wp_unit.log; do
        line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" 2>/dev/null | tail -n 1)
        if [ -n "$line" ]; then
            passed=$((passed + ${line%% passed*}))
            f=${line#*, }; failed=$((failed + ${f%% failed}))
        else
            failed=$((failed + 1))
        fi
    done
    for t in "$1"/tests/*.trs; do
        [ -f "$t" ] || continue
        if grep -q '^:test-result: PASS' "$t"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
    done
}
check_build() {   # name, then configure arguments
    name=$1; shift
    note "build $name: configure $*"
    if ! sh scripts/build.sh "$name" "$@"; then
        echo "build $name FAILED"; failed=$((failed + 1)); return
    fi
    note "make check ($name)"
    if (cd "build/$name" && make -s check >check.out 2>&1); then
        grep -E '^(# |PASS|FAIL|ERROR)' "build/$name/check.out"
    else
        cat "build/$name/check.out"; cat "build/$name/test-suite.log" 2>/dev/null
    fi
    tally "build/$name"
}

# run_suite TITLE LOG CMD...: runs a script suite whose last line is "N passed,
# M failed", shows its PASS/FAIL lines and adds its tally.
run_suite() {
    title=$1; log=$2; shift 2
    note "$title"
    if "$@" >"$log" 2>&1; then
        grep -E '^(PASS|FAIL|SKIP)' "$log" | tail -n 25
    else
        cat "$log"
    fi
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    if [ -n "$line" ]; then
        passed=$((passed + ${line%% passed*}))
        f=${line#*, }; failed=$((failed + ${f%% failed}))
    else
        failed=$((failed + 1))
    fi
}

check_build release
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    check_build sanitize --enable-sanitizers

note "integration (apache2 prefork and event)"
if [ -f build/release/tests/integration/it_client ] || (cd build/release && make -s tests/integration/it_client >/dev/null 2>&1); then
    if sh tests/integration/run.sh "$top/build/release" > build/release/integration.log 2>&1; then
        grep -E '^(PASS|FAIL|SKIP)' build/release/integration.log
    else
        cat build/release/integration.log
    fi
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' build/release/integration.log | tail -n 1)
    if [ -n "$line" ]; then
        passed=$((passed + ${line%% passed*}))
        f=${line#*, }; failed=$((failed + ${f%% failed}))
    else
        failed=$((failed + 1))
    fi
else
    echo "FAIL: integration client does not build"; failed=$((failed + 1))
fi

# the price table against every spelling of a resource (prefork and event)
run_suite "integration: prices by the resource served, whatever its spelling (apache2 prefork and event)" \
    build/release/price.log bash tests/integration/run_price.sh "$top/build/release"

note "integration: broker, mpadmin, conservation (apache2 event)"
if (cd build/release && make -s tests/integration/broker_client >/dev/null 2>&1); then
    if bash tests/integration/run_broker.sh "$top/build/release" > build/release/broker.log 2>&1; then
        grep -E '^(PASS|FAIL|SKIP)' build/release/broker.log | tail -n 15
    else
        cat build/release/broker.log
    fi
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' build/release/broker.log | tail -n 1)
    if [ -n "$line" ]; then
        passed=$((passed + ${line%% passed*}))
        f=${line#*, }; failed=$((failed + ${f%% failed}))
    else
        failed=$((failed + 1))
    fi
else
    echo "FAIL: broker integration client does not build"; failed=$((failed + 1))
fi

# 20 s of load while Apache children get SIGKILL; 30-45 s in all
if (cd build/release && make -s tests/integration/broker_load >/dev/null 2>&1); then
    run_suite "integration: broker under kill -9 (apache2 event)" build/release/broker-kill.log \
        bash tests/integration/run_broker_kill.sh "$top/build/release"
else
    note "integration: broker under kill -9 (apache2 event)"
    echo "FAIL: broker_load does not build"; failed=$((failed + 1))
fi

run_suite "integration: wallet-proxy in front of Apache, the broker and a funded account" \
    build/release/wallet.log bash tests/integration/run_wallet.sh "$top/build/release"
run_suite "browser: headless Chromium through the wallet (screenshots in artifacts/browser)" \
    build/release/browser.log bash tests/integration/run_browser.sh "$top/build/release"
note "the main job, once (scripts/demo-system.sh --once)"
if bash scripts/demo-system.sh "$top/build/release" --once >build/release/demo-system.log 2>&1 &&
   grep -q '^== point a browser' build/release/demo-system.log; then
    echo "PASS: demo-system"; passed=$((passed + 1))
else
    tail -n 30 build/release/demo-system.log; echo "FAIL: demo-system"; failed=$((failed + 1))
fi

note "integration under ASan+UBSan (the sanitizer build's module in apache2)"
logs="$top/build/sanitize/asan-logs"
rm -rf "$logs"; mkdir -p "$logs"; chmod 1777 "$logs"   # children run as www-data
if (cd build/sanitize && make -s tests/integration/it_client tests/integration/broker_client >/dev/null 2>&1); then
    # run_wallet's wallet-proxy is the sanitizer build's too: a report fails it
    for suite in run run_broker run_wallet run_price; do
        if [ $suite = run ]; then args="$top/build/sanitize $top/build/sanitize/tests/integration/it_client"
        else args="$top/build/sanitize"; fi
        # shellcheck disable=SC2086
        # wallet-proxy, mpwallet and mpadmin are instrumented too: their reports
        # (leaks included) land in the same directory
        ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$logs/tool-asan" \
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/tool-ubsan" \
        MP_ASAN_LOG_DIR="$logs" APACHE2="$top/tests/integration/apache2-asan.sh" \
            bash tests/integration/$suite.sh $args > "build/sanitize/$suite.log" 2>&1
        line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "build/sanitize/$suite.log" | tail -n 1)
        if [ -n "$line" ] && [ "${line#*, }" = "0 failed" ] && [ -z "$(ls -A "$logs")" ]; then
            echo "PASS: $suite.sh under sanitizers ($line)"; passed=$((passed + 1))
        else
            tail -n 30 "build/sanitize/$suite.log"; cat "$logs"/* 2>/dev/null | head -n 60
            echo "FAIL: $suite.sh under sanitizers"; failed=$((failed + 1))
        fi
    done
else
    echo "FAIL: sanitizer integration clients do not build"; failed=$((failed + 1))
fi

note "fuzz targets (libFuzzer, ${MP_FUZZ_SECONDS:-20} s each)"
if sh scripts/build.sh fuzz --enable-fuzzing CC=clang \
   && (cd build/fuzz && make -s tests/fuzz/fuzz_wire tests/fuzz/fuzz_amount tests/fuzz/fuzz_keyfile \
       tests/fuzz/fuzz_challenge tests/fuzz/fuzz_request tests/fuzz/fuzz_config tests/fuzz/fuzz_pricekey >/dev/null); then
    for f in wire amount keyfile challenge request config pricekey; do
        corpus=$(mktemp -d)
        cp "$top"/tests/fuzz/corpus/$f/* "$corpus"/ 2>/dev/null
        if build/fuzz/tests/fuzz/fuzz_$f -max_total_time="${MP_FUZZ_SECONDS:-20}" \
               -max_len=8192 -print_final_stats=1 "$corpus" >"build/fuzz/fuzz_$f.log" 2>&1; then
            echo "PASS: fuzz_$f $(grep -E 'stat::number_of_executed_units' build/fuzz/fuzz_$f.log)"
            passed=$((passed + 1))
        else
            tail -n 40 "build/fuzz/fuzz_$f.log"; echo "FAIL: fuzz_$f"
            failed=$((failed + 1))
        fi
        rm -rf "$corpus"
    done
else
    echo "FAIL: fuzz build"; failed=$((failed + 1))
fi

note "make distcheck"
if (cd build/release && make -s distcheck >distcheck.out 2>&1); then
    echo "PASS: distcheck"; passed=$((passed + 1))
else
    tail -n 60 build/release/distcheck.out; echo "FAIL: distcheck"; failed=$((failed + 1))
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
