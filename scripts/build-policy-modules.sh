#!/usr/bin/env bash
# Builds the Rust examples of the policy SDK (policy-sdk/examples/*.rs) for
# wasm32-unknown-unknown and puts them beside their WAT twins in examples/policy-modules/:
#   allowlist_rate.rs -> allowlist-rate.wasm, full_cone_3478.rs -> full-cone-3478.wasm
#
#   scripts/build-policy-modules.sh          # rebuild and copy
#   scripts/build-policy-modules.sh --check  # rebuild and fail if the committed .wasm differ (CI)
#
# Needs a nightly with rust-src (core is rebuilt for the target: -Zbuild-std, as no wasm32
# std is installed here); the one Miri uses is pinned, and installed when missing. The build
# is byte-for-byte reproducible (stripped, no debug info, no paths in the module).
set -euo pipefail
cd "$(dirname "$0")/.."

toolchain="${POLICY_TOOLCHAIN:-nightly-2026-09-05}"
if ! rustup component list --toolchain "$toolchain" --installed 2>/dev/null | grep -q '^rust-src'; then
    echo "build-policy-modules: installing $toolchain with rust-src"
    rustup toolchain install "$toolchain" --profile minimal --component rust-src
fi
(cd policy-sdk && cargo "+$toolchain" build --release --quiet -Zbuild-std=core,panic_abort \
    --target wasm32-unknown-unknown --examples)
built=policy-sdk/target/wasm32-unknown-unknown/release/examples
status=0
for example in allowlist_rate full_cone_3478; do
    target="examples/policy-modules/${example//_/-}.wasm"
    if [ "${1:-}" = --check ]; then
        if cmp -s "$built/$example.wasm" "$target"; then
            echo "build-policy-modules: $target is what policy-sdk/examples/$example.rs builds to"
        else
            echo "build-policy-modules: $target differs from a fresh build of policy-sdk/examples/$example.rs; run scripts/build-policy-modules.sh and commit it" >&2
            status=1
        fi
    else
        cp "$built/$example.wasm" "$target"
        echo "build-policy-modules: wrote $target ($(wc -c <"$target") bytes)"
    fi
done
exit $status
