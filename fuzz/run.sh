#!/usr/bin/env bash
# Runs every fuzz target for a while (default 60 s each) and prints what each found.
# Seeds: the test manifests (manifest parsing, API bodies as JSON) and a few sealed packets.
# cargo-fuzz needs nightly features; on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
if ! cargo fuzz --help >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: install it with 'cargo install cargo-fuzz'" >&2
    exit 2
fi
targets=("$@")
if [[ ${#targets[@]} == 0 ]]; then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build
for target in "${targets[@]}"; do
    corpus="corpus/$target"
    mkdir -p "$corpus"
    case "$target" in
        manifest_parse) cp -n ../tests/manifests/valid/* ../tests/manifests/invalid/* "$corpus"/ 2>/dev/null || true ;;
        api_body)
            printf '{"objects":[]}' > "$corpus/empty-apply"
            printf '{"set":{"zone":"a"},"remove":["b"]}' > "$corpus/labels"
            printf '{"add":[{"key":"k","value":"v","effect":"NoSchedule"}],"remove":[["k",null]]}' > "$corpus/taints"
            printf '{"drained":true}' > "$corpus/drain" ;;
        gossip_open) printf '\x01\x01%064d' 0 > "$corpus/header-like" ;;
    esac
    echo "== $target for ${seconds}s"
    # -max_len: the largest gossip datagram; manifests and bodies that large reach every path.
    cargo fuzz run "$target" "$corpus" -- -max_total_time="$seconds" -max_len=65536 2>&1 \
        | grep -E '^#[0-9]+.*DONE|Done [0-9]+ runs|SUMMARY|ERROR|panicked' || true
    if [[ -d "artifacts/$target" ]] && ls "artifacts/$target" | grep -q .; then
        echo "!! $target: findings in fuzz/artifacts/$target"
    else
        echo "   $target: no crash, no finding"
    fi
done
