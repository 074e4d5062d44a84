#!/bin/sh
# The main job (README): installs what is missing, builds, and runs the whole
# system on loopback (scripts/system.sh): Apache with mod_micropay serving
# two sample paid sites and the broker, a customer account funded with
# 10.00 USD, and wallet-proxy in front with that account. It fetches one
# paid page through the wallet, prints what was paid, and prints where to
# point a browser. On a terminal it keeps everything running until Enter or
# Ctrl-C; otherwise (or with --once) it stops at once. Everything binds
# 127.0.0.1 on free ports and is stopped by PID. Run as root (Apache's User
# www-data).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh scripts/deps.sh
sh scripts/build.sh release >/dev/null
exec bash scripts/demo-system.sh "$top/build/release" "$@"
