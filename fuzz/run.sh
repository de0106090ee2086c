#!/usr/bin/env bash
# Runs every fuzz target for a while (default 60 s each), seeding from the test manifests.
# cargo-fuzz needs nightly features; on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them.
# Usage: fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
for target in $(cargo fuzz list); do
    corpus="corpus/$target"
    mkdir -p "$corpus"
    cp -n ../tests/manifests/valid/* ../tests/manifests/invalid/* "$corpus"/ 2>/dev/null || true
    echo "== $target for ${seconds}s"
    cargo fuzz run "$target" "$corpus" -- -max_total_time="$seconds" -max_len=65536
done
