#!/bin/sh
# Debian's apache2 with the sanitizer runtimes preloaded, to run the
# integration suites against a module built with --enable-sanitizers
# (APACHE2=this script). apache2 itself is not instrumented; leaks are not
# checked because httpd frees its pools at exit by design. Any report goes
# to $MP_ASAN_LOG_DIR, which scripts/test.sh requires to stay empty.
asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
logs=${MP_ASAN_LOG_DIR:-/tmp}
export LD_PRELOAD="$asan $ubsan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$logs/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan"
exec "${MP_REAL_APACHE2:-/usr/sbin/apache2}" "$@"
