#!/bin/sh
# Fuzzing at depth: runs every libFuzzer target (tests/fuzz/fuzz_*.c), or the
# ones named, for SECONDS each, on a working copy of its corpus
# tests/fuzz/corpus/NAME/, then merges what found new coverage back into that
# directory (libFuzzer -merge=1: only inputs that add features, so the kept
# corpus stays small). Prints one line per target: executions, exec/s, corpus
# size (+ inputs kept from this run), PASS/FAIL; a crash, leak, timeout or
# UBSan report fails the target, its input is kept under
# build/NAME/fuzz-crashes/ and its path printed. Exits non-zero when a target
# failed.
#   Usage: sh scripts/fuzz.sh SECONDS [TARGET...]    (TARGET: wire or fuzz_wire)
#   MP_FUZZ_BUILD=NAME builds in build/NAME instead of build/fuzz.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1

usage() { echo "usage: sh scripts/fuzz.sh SECONDS [TARGET...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
secs=$1; shift
case $secs in ''|*[!0-9]*) usage ;; esac
[ "$secs" -gt 0 ] || usage

targets=""
if [ $# -eq 0 ]; then
    for src in tests/fuzz/fuzz_*.c; do
        n=${src##*/fuzz_}; targets="$targets ${n%.c}"
    done
else
    for t in "$@"; do
        t=${t##*/}; t=${t%.c}; t=${t#fuzz_}
        [ -f "tests/fuzz/fuzz_$t.c" ] || { echo "no such fuzz target: $t (tests/fuzz/fuzz_$t.c)" >&2; exit 2; }
        targets="$targets $t"
    done
fi

bname=${MP_FUZZ_BUILD:-fuzz}
bdir=build/$bname
# A UBSan report is a failure here, not a line in a log.
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export UBSAN_OPTIONS

echo "== building $bdir (--enable-fuzzing CC=clang)"
if ! sh scripts/build.sh "$bname" --enable-fuzzing CC=clang; then
    # something else in the tree does not build: the targets may still
    [ -f "$bdir/Makefile" ] || { echo "FAIL: $bdir does not configure"; exit 1; }
    echo "note: the full build of $bdir failed; building the fuzz targets alone"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mp-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

passed=0; failed=0; report=""
line() {   # name execs exec/s corpus result
    l=$(printf '%-10s %12s %9s %14s  %s' "$@")
    echo "$l"
    report="$report$l
"
}
echo "== $secs s per target:$targets"
line target executions exec/s corpus result
for t in $targets; do
    bin=$bdir/tests/fuzz/fuzz_$t
    keep=tests/fuzz/corpus/$t
    log=$bdir/fuzz_$t.depth.log
    if ! (cd "$bdir" && make -s "tests/fuzz/fuzz_$t") >"$log" 2>&1; then
        cat "$log"
        line "$t" - - - "FAIL (does not build; in Makefile.am?)"
        failed=$((failed + 1)); continue
    fi
    mkdir -p "$keep" "$work/$t" "$work/art-$t"
    cp "$keep"/* "$work/$t"/ 2>/dev/null
    before=$(find "$keep" -type f | wc -l)
    "$bin" -max_total_time="$secs" -max_len=8192 -timeout=30 -print_final_stats=1 \
        -artifact_prefix="$work/art-$t/" "$work/$t" >"$log" 2>&1
    rc=$?
    # merge whatever this run found, also when it failed (the failing input
    # is not in the working corpus)
    if ! "$bin" -merge=1 -max_len=8192 -timeout=30 "$keep" "$work/$t" >"$log.merge" 2>&1; then
        tail -n 20 "$log.merge"; echo "merge into $keep failed (log: $log.merge)"
        [ $rc -ne 0 ] || rc=1
    fi
    after=$(find "$keep" -type f | wc -l)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    corpus="$((after)) (+$((after - before)))"
    if [ $rc -eq 0 ]; then
        line "$t" "${execs:--}" "${eps:--}" "$corpus" PASS
        passed=$((passed + 1))
    else
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -n 5
        tail -n 30 "$log" >&2
        kept=""
        for a in "$work/art-$t"/*; do
            [ -f "$a" ] || continue
            mkdir -p "$bdir/fuzz-crashes/$t"
            mv "$a" "$bdir/fuzz-crashes/$t/" && kept="$kept $bdir/fuzz-crashes/$t/${a##*/}"
        done
        line "$t" "${execs:--}" "${eps:--}" "$corpus" "FAIL (exit $rc; log $log)"
        for a in $kept; do echo "   input: $a (reproduce: $bin $a)"; done
        failed=$((failed + 1))
    fi
done

echo
echo "== summary ($secs s each)"
printf '%s' "$report"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
