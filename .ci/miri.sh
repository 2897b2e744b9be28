#!/usr/bin/env bash
# Miri run of the engine's lock tests: the shard lock's own tests and the cross-NAT policy
# test (a worker's filtering policy reading another NAT while that NAT is written). Miri
# reports a data race or other undefined behaviour as a test failure.
#
#   .ci/miri.sh            # about 2 minutes warm (the cross-NAT test is ~90 s: two Nats)
#
# Runs a pinned nightly (MIRI_TOOLCHAIN overrides it) and installs it with miri and rust-src
# if missing. Why pinned, and not older than this: Miri before rust-lang/miri#5111 (merged
# 2026-06-27, issue #5104) lets a SeqCst load read a non-SeqCst store that happens-before a
# later SeqCst store, which C++20 forbids. The shard lock's Dekker handshake mixes such
# stores (a reader leaves with a Release store, a writer clears `writing` with one), so the
# older Miri (nightly-2026-05-19 was on these machines) reports a data race that cannot
# happen; CI saw it on some thread schedules. Not newer: from about nightly-2026-09-09 on, Miri
# type-checks c-variadic arguments (rust-lang/rust#161734) and reports parking_lot_core
# 0.9.12 passing `&AtomicI32` to `syscall(SYS_futex, ..)` when a mutex parks (a Miri-only
# type check; the latest parking_lot 0.12 still depends on that release). 2026-09-05 is the
# last nightly before that with a Miri build for x86_64 Linux.
set -euo pipefail

cd "$(dirname "$0")/.."

toolchain="${MIRI_TOOLCHAIN:-nightly-2026-09-05}"
if ! cargo "+$toolchain" miri --version >/dev/null 2>&1; then
    echo "miri: installing $toolchain with miri and rust-src"
    if ! rustup toolchain install "$toolchain" --profile minimal --component miri,rust-src; then
        echo "miri: FAILED: cannot install $toolchain with miri; install it with" \
            "'rustup toolchain install $toolchain --profile minimal --component miri,rust-src'" \
            "or set MIRI_TOOLCHAIN to a nightly from 2026-06-28 or later that has miri" >&2
        exit 1
    fi
fi

# parking_lot casts integers to pointers; permissive provenance accepts it without a warning.
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-permissive-provenance}"

cargo "+$toolchain" miri setup
if ! cargo "+$toolchain" miri test -p netnat-engine --lib -- \
    shard_lock:: tests::invariants::a_policy_reading_another_nat_while_that_nat_is_written; then
    echo "miri: FAILED: undefined behaviour or a failed assertion above" >&2
    exit 1
fi
echo "miri: shard_lock and cross-NAT tests clean"
