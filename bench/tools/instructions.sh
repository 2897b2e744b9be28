#!/usr/bin/env bash
# Instructions per packet on the engine's established fast path, counted by callgrind
# (repeatable whatever else the machine runs). Usage: bench/tools/instructions.sh [case...]
# Cases: udp_out udp_in tcp_out tcp_in (default: all four), and `dataplane`: the daemon's
# packet path (a capture thread's Translator, Dataplane::run_thread, in batches of 64) next to the same engine's Worker
# and Nat::handle_packet, UDP outbound.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
cargo build --profile bench -p netnat-bench --bin instructions >&2
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release/instructions"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
count() { # binary case passes -> total instructions
    valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$1" "$2" "$3" 2>&1 >/dev/null |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
per_packet() { # binary case label
    a=$(count "$1" "$2" 1)
    b=$(count "$1" "$2" 11)
    echo "$3: $(( (b - a) / (10 * 1024) )) instructions/packet"
}
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(udp_out udp_in tcp_out tcp_in)
for c in "${cases[@]}"; do
    if [ "$c" = dataplane ]; then
        cargo build --profile bench -p netnat --example dataplane_instructions >&2
        for d in capture_thread translator_per_batch worker handle_packet; do
            per_packet "$target/release/examples/dataplane_instructions" "$d" "dataplane $d (udp_out)"
        done
    else
        per_packet "$bin" "$c" "$c"
    fi
done
