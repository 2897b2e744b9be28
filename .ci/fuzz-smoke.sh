#!/usr/bin/env bash
# Fuzz smoke run: every cargo-fuzz target of fuzz/ for a bounded time, starting from its
# committed seeds and regression inputs; fails on the first crash or broken invariant.
#
#   .ci/fuzz-smoke.sh                 # 60 s per target (about 4-5 minutes with the build)
#   FUZZ_SMOKE_SECONDS=10 .ci/fuzz-smoke.sh
#
# A crash leaves its input in fuzz/artifacts/<target>/ and the command to reproduce it in the
# log; see fuzz/README.md for what to do with it.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
secs="${FUZZ_SMOKE_SECONDS:-60}"
targets=(packet_outbound_inbound operation_sequence pcap_reader)

# libFuzzer needs nightly-only flags; the stable toolchain accepts them with this set.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi

cargo fuzz build

for t in "${targets[@]}"; do
    corpus="$(mktemp -d)"
    inputs=("$corpus")
    for d in "seeds/$t" "regressions/$t/fixed"; do
        [ -d "$d" ] && inputs+=("$d")
    done
    echo "fuzz-smoke: $t for ${secs}s from ${inputs[*]:1}"
    # -timeout: one input taking longer than 10 s is a finding too (a hang).
    if ! timeout "$((secs + 120))" cargo fuzz run "$t" "${inputs[@]}" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
        echo "fuzz-smoke: $t FAILED; the input is in fuzz/artifacts/$t/ (see fuzz/README.md)" >&2
        rm -rf "$corpus"
        exit 1
    fi
    rm -rf "$corpus"
done
echo "fuzz-smoke: all ${#targets[@]} targets ran ${secs}s each without a crash"
