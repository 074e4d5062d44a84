#!/bin/sh
# Regenerates the autotools files and builds in build/<name> (out of tree,
# so several configurations live side by side). Usage: build.sh NAME [configure args]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
name=$1; shift
cd "$top"
[ -x configure ] && [ configure -nt configure.ac ] && [ Makefile.in -nt Makefile.am ] \
    || autoreconf -fi >/dev/null 2>&1 || { autoreconf -fi; exit 1; }
mkdir -p "build/$name"
cd "build/$name"
[ -f config.status ] && [ config.status -nt "$top/configure" ] \
    || "$top/configure" -q "$@"
make -s -j"$(nproc)" >/dev/null
