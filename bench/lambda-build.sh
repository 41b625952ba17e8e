#!/usr/bin/env bash
# The handlers' release build for Lambda (arm64) from an empty target directory, as the
# README's test command runs it: wall time, peak memory, and the zips' sizes.
# Usage: bench/lambda-build.sh [TOOLS_VENV]   (default: the tests' venv in the cargo target dir)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-${CARGO_TARGET_DIR:-target}/tmp/tools-venv}"
[ -x "$venv/bin/cargo-lambda" ] || { echo "no cargo-lambda in $venv: run the tests once (they install it)" >&2; exit 2; }
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1
PATH="$venv/bin:$PATH" CARGO_TARGET_DIR="$scratch/target" /usr/bin/time -f "wall %e s, peak RSS %M KiB" \
    cargo lambda build --release --arm64 --output-format zip --lambda-dir "$scratch/lambda" \
    -p publish-metrics -p events-load-test 2>&1 | grep -E "^wall|^error" || true
for zip in "$scratch"/lambda/*/bootstrap.zip; do
    printf '%s %s bytes\n' "$(basename "$(dirname "$zip")")" "$(stat -c %s "$zip")"
done
