#!/bin/sh
# The main job (README): builds libmp and the demo CLI, then shows
# Millicent minting, paying, validation with change, and PayWord
# certification, commitment, payment and redemption.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
sh scripts/deps.sh
sh scripts/build.sh release
build/release/tools/mpdemo millicent
echo
build/release/tools/mpdemo payword
