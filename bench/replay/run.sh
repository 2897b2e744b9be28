#!/usr/bin/env bash
# `netnat replay` against `tcpdump -r IN -w OUT` on the same capture, interleaved in one run
# (issue 11 item 6; BENCHMARKS.md "Replay").
#
#   bench/replay/run.sh                      # build netnat (release), 5 rounds, ~20 s
#   ROUNDS=9 bench/replay/run.sh
#   NETNAT=/path/to/netnat bench/replay/run.sh    # an already built binary (e.g. an older commit)
#   PACKETS=200000 FLOWS=1024 bench/replay/run.sh
#   KEEP=/tmp/replay-bench bench/replay/run.sh    # keep the capture and outputs there
#
# The capture (bench/replay/gen_capture.py): PACKETS (1 M) 64-byte Ethernet/IPv4/UDP frames
# over FLOWS (4096) flows from 10.100.0.0/16 to 203.0.113.0/24 and 198.51.100.0/24, a quarter
# of them the servers' replies to 203.0.113.1. netnat replays it with that NAT:
#   netnat replay IN -o OUT --internal-prefix 10.100.0.0/16 --external-address 203.0.113.1
#       --port-allocation preserve -q --stats-json STATS
# (preserve keeps each flow's distinct internal port, so the replies find their mapping).
#
# Each round runs tcpdump, then netnat, each writing a fresh file (the previous output is
# removed first); the ratio of a round is netnat's wall time over the tcpdump run just before.
# Printed: the median ratio with its min/max, and each tool's median time and packets/s.
# netnat's output is checked (outside the timed part): in every round, as many packets written
# as read minus dropped and nothing dropped (its stats JSON), and the same bytes as in the
# first round (sha256 shown); after the first, tcpdump reads back as many packets as written,
# and none with an internal source address or still addressed to 203.0.113.1.
# The machine is shared and noisy (design.md §7): compare ratios, not absolute times.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
rounds="${ROUNDS:-5}"
packets="${PACKETS:-1000000}"
flows="${FLOWS:-4096}"

if ! command -v tcpdump >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y tcpdump >/dev/null
    else
        echo "run.sh: tcpdump is missing; apt-get install tcpdump" >&2
        exit 1
    fi
fi
[ "$rounds" -ge 1 ] || { echo "run.sh: ROUNDS must be at least 1" >&2; exit 1; }

if [ -z "${NETNAT:-}" ]; then
    (cd "$root" && cargo build --release -q -p netnat)
    NETNAT="${CARGO_TARGET_DIR:-$root/target}/release/netnat"
fi

if [ -n "${KEEP:-}" ]; then
    work="$KEEP"
    mkdir -p "$work"
else
    work="$(mktemp -d /tmp/netnat-replay-bench.XXXXXX)"
    trap 'rm -rf "$work"' EXIT
fi
in="$work/in.pcap"
python3 "$here/gen_capture.py" "$in" --packets "$packets" --flows "$flows"
cat "$in" >/dev/null # into the page cache, for both tools alike

now() { echo "$EPOCHREALTIME"; }
times_t=()
times_n=()
sums=()
for r in $(seq 1 "$rounds"); do
    rm -f "$work/tcpdump.pcap" "$work/netnat.pcap"
    t0=$(now)
    tcpdump -r "$in" -w "$work/tcpdump.pcap" 2>/dev/null
    t1=$(now)
    "$NETNAT" replay "$in" -o "$work/netnat.pcap" --internal-prefix 10.100.0.0/16 \
        --external-address 203.0.113.1 --port-allocation preserve -q --stats-json "$work/stats.json"
    t2=$(now)
    times_t+=("$(awk "BEGIN { print $t1 - $t0 }")")
    times_n+=("$(awk "BEGIN { print $t2 - $t1 }")")

    # Sanity of netnat's output (outside the timed part).
    read -r read_ written dropped < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(s["packets_read"], s["packets_written"], s["packets_dropped"])' "$work/stats.json")
    seen=$written
    leaked=0
    if [ "$r" = 1 ]; then # later rounds must write the same bytes (checked below)
        seen=$(tcpdump -nr "$work/netnat.pcap" 2>/dev/null | wc -l)
        leaked=$(tcpdump -nr "$work/netnat.pcap" 'src net 10.100.0.0/16 or dst host 203.0.113.1' 2>/dev/null | wc -l)
    fi
    if [ "$read_" != "$packets" ] || [ "$written" != $((read_ - dropped)) ] || [ "$seen" != "$written" ] \
        || [ "$dropped" != 0 ] || [ "$leaked" != 0 ]; then
        echo "run.sh: round $r: netnat's output is wrong: read $read_ of $packets, wrote $written," \
            "dropped $dropped, tcpdump reads $seen back, $leaked untranslated" >&2
        exit 1
    fi
    sums+=("$(sha256sum "$work/netnat.pcap" | cut -c1-16)")
    printf 'round %d: tcpdump %.3f s, netnat %.3f s, ratio %.2f\n' "$r" "${times_t[-1]}" "${times_n[-1]}" \
        "$(awk "BEGIN { print ${times_n[-1]} / ${times_t[-1]} }")"
done

if [ "$(printf '%s\n' "${sums[@]}" | sort -u | wc -l)" != 1 ]; then
    echo "run.sh: netnat's output differs between rounds: ${sums[*]}" >&2
    exit 1
fi

python3 - "$packets" "${times_t[*]}" "${times_n[*]}" <<'EOF'
import statistics, sys
packets = int(sys.argv[1])
t = [float(x) for x in sys.argv[2].split()]
n = [float(x) for x in sys.argv[3].split()]
ratios = [b / a for a, b in zip(t, n)]
mt, mn = statistics.median(t), statistics.median(n)
print(f"netnat/tcpdump: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f}) over {len(t)} rounds")
print(f"tcpdump: median {mt:.3f} s ({packets / mt / 1e6:.2f} Mpps), min {min(t):.3f}, max {max(t):.3f}")
print(f"netnat:  median {mn:.3f} s ({packets / mn / 1e6:.2f} Mpps), min {min(n):.3f}, max {max(n):.3f}")
EOF
echo "netnat output sha256 (first 16 hex digits): ${sums[0]}; $packets packets, $flows flows"
