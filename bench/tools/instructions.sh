#!/usr/bin/env bash
# Instructions per packet on the engine's established fast path, counted by callgrind
# (repeatable whatever else the machine runs). Usage: bench/tools/instructions.sh [case...]
# Cases: udp_out udp_in tcp_out tcp_in (default: all four).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
cargo build --profile bench -p netnat-bench --bin instructions >&2
bin=target/release/instructions
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
count() { # case passes -> total instructions
    valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$bin" "$1" "$2" 2>&1 >/dev/null |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(udp_out udp_in tcp_out tcp_in)
for c in "${cases[@]}"; do
    a=$(count "$c" 1)
    b=$(count "$c" 11)
    echo "$c: $(( (b - a) / (10 * 1024) )) instructions/packet"
done
