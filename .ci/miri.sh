#!/usr/bin/env bash
# Miri run of the engine's lock tests: the shard lock's own tests and the cross-NAT policy
# test (a worker's filtering policy reading another NAT while that NAT is written). Miri
# reports a data race or other undefined behaviour as a test failure.
#
#   .ci/miri.sh            # about 2 minutes warm (the cross-NAT test is ~90 s: two Nats)
#
# Needs the nightly toolchain with the miri and rust-src components; tries to add them.
set -euo pipefail

cd "$(dirname "$0")/.."

if ! cargo +nightly miri --version >/dev/null 2>&1; then
    echo "miri: adding miri and rust-src to the nightly toolchain"
    if ! rustup component add miri rust-src --toolchain nightly; then
        echo "miri: FAILED: no nightly toolchain with miri; install it with" \
            "'rustup toolchain install nightly --component miri,rust-src'" >&2
        exit 1
    fi
fi

# parking_lot casts integers to pointers; permissive provenance accepts it without a warning.
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-permissive-provenance}"

cargo +nightly miri setup
if ! cargo +nightly miri test -p netnat-engine --lib -- \
    shard_lock:: tests::invariants::a_policy_reading_another_nat_while_that_nat_is_written; then
    echo "miri: FAILED: undefined behaviour or a failed assertion above" >&2
    exit 1
fi
echo "miri: shard_lock and cross-NAT tests clean"
