#!/usr/bin/env bash
# Replays the Linux-kernel NAT sample (samples/kernel-nat/input.pcap) through netnat and shows
# what it did: the session table (NetNatSession rows, as JSON) and, when tcpdump or tshark is
# installed, packets as they came in and as netnat sent them on.
# Usage: scripts/demo-replay.sh [extra netnat replay flags...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

input=samples/kernel-nat/input.pcap
out="${TMPDIR:-/tmp}/netnat-demo-out.pcap"

echo "== netnat replay $input -> $out (session table on stdout, summary on stderr)"
cargo run --release --quiet -- replay "$input" -o "$out" \
  --internal-prefix 10.100.0.0/16 --external-address 203.0.113.1 --port-allocation preserve \
  --sessions-json /dev/stdout "$@"

# One line per packet; "in" is what reached the NAT, "out" what netnat sent on.
show() {
  if command -v tcpdump >/dev/null; then
    tcpdump -nn -t -r "$1" 2>/dev/null
  else
    tshark -n -r "$1" -T fields -e ip.src -e ip.dst -e _ws.col.Protocol -e _ws.col.Info 2>/dev/null
  fi
}
if command -v tcpdump >/dev/null || command -v tshark >/dev/null; then
  echo
  echo "== packets: in (as captured at the NAT) / out (translated by netnat); first 12 and last 2 of $(show "$input" | wc -l)"
  paste -d '\n' <(show "$input" | sed 's/^/in : /') <(show "$out" | sed 's/^/out: /') |
    awk 'NR <= 24 { print } { last[NR % 4] = $0 } END { print "..."; for (i = NR - 3; i <= NR; i++) print last[i % 4] }' |
    cut -c1-150
else
  echo
  echo "(install tcpdump or tshark to see the packets; the translated capture is $out)"
fi
