#!/usr/bin/env bash
# End-to-end comparison: netnat's daemon vs the kernel's nftables masquerade, same topology,
# same traffic, same run (design.md §4 and §6; issue 5), in alternating rounds.
#
#   sudo bench/e2e/run.sh                 # both NATs, 3 rounds, ~3 minutes, results in bench/e2e/results/
#   sudo SECONDS_PER_TEST=3 bench/e2e/run.sh
#   sudo ROUNDS=5 bench/e2e/run.sh        # more rounds: kernel, netnat, kernel, netnat, ...
#   sudo NATS="kernel" bench/e2e/run.sh   # one side only
#   sudo NATS="kernel netnat netnat-nogso netnat-busypoll" bench/e2e/run.sh
#                                         # also the daemon with --no-gso (every GSO packet cut
#                                         # into segments before the queue, as before issue 5)
#                                         # and with --busy-poll-us 200; ~1.5 minutes
#
# For each NAT it builds its own namespaces (deleted on exit, also on failure):
#   vm  10.100.10.11/16 (gateway 10.100.1.1) -- nat 10.100.1.1/16 | 203.0.113.1/24 -- wan 203.0.113.10/24
# and measures, from vm to wan through nat:
#   udp_pps       64-byte IPv4 UDP packets forwarded per second (trafgen flat out in vm,
#                 counted on wan's interface); also the offered rate
#   tcp_gbps      iperf3 TCP throughput (one stream)
#   rr_p50/p99    64-byte TCP request/response latency (Python client and server): three
#                 runs of 5000 round trips, the run with the median p50 reported
#   conn_per_s    new TCP connections per second (connect, 1-byte exchange, close)
# Why rounds: this machine is shared, and two back-to-back single runs gave TCP ratios of
# 0.27x and 0.62x. Each round runs every NAT once, in order, so a load change hits both;
# report.py gives each NAT's median over the rounds and the median of the per-round ratios
# netnat / kernel with their min-max spread.
# Output: results.json (one entry per NAT per round), results.md and one SVG bar chart per
# metric (medians).
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (network namespaces, nft, trafgen)" >&2; exit 1; }
for tool in ip nft iperf3 trafgen python3 iptables; do
    command -v "$tool" >/dev/null || {
        echo "run.sh: $tool is missing; apt-get install iproute2 nftables iperf3 netsniff-ng python3 iptables" >&2
        exit 1
    }
done

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
secs="${SECONDS_PER_TEST:-5}"
rounds="${ROUNDS:-3}"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: ROUNDS must be a whole number of at least 1 (got '$rounds')" >&2; exit 1; }
nats="${NATS:-kernel netnat}"
out="${OUT:-$here/results/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"

if [[ " $nats " == *" netnat"* ]] && [ -z "${NETNAT:-}" ]; then
    (cd "$root" && cargo build --release -q -p netnat)
    NETNAT="$root/target/release/netnat"
fi

tag="e$$"
VM="nnb-$tag-vm"; NAT="nnb-$tag-nat"; WAN="nnb-$tag-wan"
work="$(mktemp -d /tmp/netnat-e2e.XXXXXX)"
pids=()

teardown() {
    set +e
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    pids=()
    for ns in "$VM" "$NAT" "$WAN"; do ip netns del "$ns" 2>/dev/null; done
}
trap 'teardown; rm -rf "$work"' EXIT

in_ns() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }

topology() {
    for ns in "$VM" "$NAT" "$WAN"; do ip netns add "$ns"; in_ns "$ns" ip link set lo up; done
    ip link add "v$tag" netns "$VM" type veth peer name "i$tag" netns "$NAT"
    ip link add "o$tag" netns "$NAT" type veth peer name "w$tag" netns "$WAN"
    in_ns "$VM" ip addr add 10.100.10.11/16 dev "v$tag"
    in_ns "$VM" ip link set "v$tag" up
    in_ns "$VM" ip route add default via 10.100.1.1
    in_ns "$NAT" ip addr add 10.100.1.1/16 dev "i$tag"
    in_ns "$NAT" ip addr add 203.0.113.1/24 dev "o$tag"
    in_ns "$NAT" ip link set "i$tag" up
    in_ns "$NAT" ip link set "o$tag" up
    in_ns "$NAT" sysctl -qw net.ipv4.ip_forward=1
    in_ns "$WAN" ip addr add 203.0.113.10/24 dev "w$tag"
    in_ns "$WAN" ip link set "w$tag" up
    # The flood's destination port has no listener: drop it quietly instead of answering
    # every packet with a port unreachable.
    in_ns "$WAN" nft -f - <<'NFT'
table inet sink {
    chain input { type filter hook input priority 0; udp dport 9 drop; }
}
NFT
    in_ns "$VM" ping -c 1 -W 2 10.100.1.1 >/dev/null
}

start_nat() {
    case "$1" in
    kernel)
        in_ns "$NAT" nft -f - <<NFT
table ip nnbnat {
    chain postrouting { type nat hook postrouting priority 100; oifname "o$tag" masquerade; }
}
NFT
        ;;
    netnat | netnat-nogso | netnat-busypoll)
        local extra=()
        [ "$1" = netnat-nogso ] && extra=(--no-gso)
        [ "$1" = netnat-busypoll ] && extra=(--busy-poll-us 200)
        # `ip netns exec` execs the daemon, so $! is the daemon's pid (a shell function in
        # the background would be a subshell, and killing it would orphan the daemon).
        ip netns exec "$NAT" "$NETNAT" daemon --socket "$work/netnat.sock" --state-dir "$work/state-$1-r$round" \
            "${extra[@]}" >"$work/daemon.log" 2>&1 &
        pids+=($!)
        for _ in $(seq 100); do
            in_ns "$NAT" "$NETNAT" --socket "$work/netnat.sock" Get-NetNatGlobal >/dev/null 2>&1 && break
            sleep 0.1
        done
        in_ns "$NAT" "$NETNAT" --socket "$work/netnat.sock" New-NetNat -Name WinNAT \
            -InternalIPInterfaceAddressPrefix 10.100.0.0/16 >/dev/null
        ;;
    *)
        echo "run.sh: unknown NAT '$1' in NATS; use kernel, netnat, netnat-nogso or netnat-busypoll" >&2
        exit 1
        ;;
    esac
    # The path works before anything is measured.
    in_ns "$VM" ping -c 1 -W 2 203.0.113.10 >/dev/null || { echo "run.sh: $1: no path vm -> wan" >&2; cat "$work/daemon.log" 2>/dev/null; exit 1; }
}

rx_packets() { in_ns "$WAN" cat "/sys/class/net/w$tag/statistics/rx_packets"; }
tx_packets() { in_ns "$VM" cat "/sys/class/net/v$tag/statistics/tx_packets"; }

udp_pps() {
    local mac
    mac="$(in_ns "$NAT" cat "/sys/class/net/i$tag/address")"
    # 64-byte IPv4 packets: 20 IP + 8 UDP + 36 payload.
    cat >"$work/udp.cfg" <<CFG
{ eth(da=$mac, type=0x0800), ipv4(saddr=10.100.10.11, daddr=203.0.113.10, ttl=64), udp(sport=40000, dport=9), fill(0x41, 36) }
CFG
    local rx0 tx0 rx1 tx1
    rx0="$(rx_packets)"; tx0="$(tx_packets)"
    in_ns "$VM" timeout "$secs" trafgen --dev "v$tag" --conf "$work/udp.cfg" --cpus 1 -q >/dev/null 2>&1 || true
    sleep 0.5
    rx1="$(rx_packets)"; tx1="$(tx_packets)"
    echo "$(( (rx1 - rx0) / secs )) $(( (tx1 - tx0) / secs ))"
}

tcp_gbps() {
    ip netns exec "$WAN" iperf3 -s -1 -B 203.0.113.10 >/dev/null 2>&1 &
    local server=$!
    sleep 0.3
    in_ns "$VM" iperf3 -c 203.0.113.10 -t "$secs" -J >"$work/iperf.json" 2>/dev/null || true
    # A client that never connected leaves the one-shot server waiting: end it.
    kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(round(d["end"]["sum_received"]["bits_per_second"]/1e9, 3))' \
        "$work/iperf.json" 2>/dev/null || echo 0
}

tcp_rr() {
    ip netns exec "$WAN" python3 "$here/tcp_rr.py" server 203.0.113.10 7000 $((3 * secs + 10)) >/dev/null 2>&1 &
    local server=$!
    sleep 0.5
    for i in 1 2 3; do in_ns "$VM" python3 "$here/tcp_rr.py" rr 203.0.113.10 7000 5000; done >"$work/rr-runs.json"
    python3 -c 'import json,sys; runs=sorted((json.loads(l) for l in open(sys.argv[1])), key=lambda r: r["p50_us"]); print(json.dumps(runs[1]))' \
        "$work/rr-runs.json" >"$work/rr.json"
    in_ns "$VM" python3 "$here/tcp_rr.py" connect 203.0.113.10 7000 "$secs" >"$work/conn.json"
    kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true
}

echo "[" >"$out/results.json"
first=1
for round in $(seq "$rounds"); do
for nat in $nats; do
    echo "== round $round/$rounds: $nat" >&2
    topology
    start_nat "$nat"
    read -r pps offered < <(udp_pps)
    gbps="$(tcp_gbps)"
    tcp_rr
    [ $first = 1 ] || echo "," >>"$out/results.json"
    first=0
    cp "$work/rr-runs.json" "$out/$nat-r$round-rr-runs.json"
    python3 - "$nat" "$round" "$pps" "$offered" "$gbps" "$work/rr.json" "$work/conn.json" >>"$out/results.json" <<'PY'
import json, sys
nat, rnd, pps, offered, gbps, rr, conn = sys.argv[1:]
rr, conn = json.load(open(rr)), json.load(open(conn))
print(json.dumps({"nat": nat, "round": int(rnd), "udp_pps": int(pps), "udp_offered_pps": int(offered), "tcp_gbps": float(gbps),
                  "rr_p50_us": rr["p50_us"], "rr_p99_us": rr["p99_us"], "conn_per_s": round(conn["per_second"], 1),
                  "conn_failed": conn["failed"]}))
PY
    if [[ "$nat" == netnat* ]]; then
        # The daemon's own counters (GSO super-packets, checksums completed, ...) at the end.
        in_ns "$NAT" "$NETNAT" --socket "$work/netnat.sock" Get-NetNatStatistics >"$out/$nat-r$round-statistics.json" 2>&1 || true
        cp "$work/daemon.log" "$out/$nat-r$round-daemon.log" 2>/dev/null || true
    fi
    teardown
done
done
echo "]" >>"$out/results.json"

python3 "$here/report.py" "$out" "$secs"
echo "results: $out" >&2
