#!/bin/sh
# Installs the Debian 12 packages the build and the tests need, only those
# missing, so a second run is quick and offline. Run as root.
set -eu
pkgs="build-essential autoconf automake libtool pkg-config
      libssl-dev openssl libcunit1-dev libcurl4-openssl-dev curl liblmdb-dev lmdb-utils libjansson-dev jq
      libapr1-dev libaprutil1-dev apache2-dev apache2
      clang libclang-rt-14-dev
      libhttp-parser-dev chromium"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
