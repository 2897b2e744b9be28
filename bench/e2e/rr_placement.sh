#!/usr/bin/env bash
# Where the request/response latency goes: the same 64-byte TCP round trips as run.sh's rr,
# with the Python client and server pinned to CPU 0 and the NAT's work placed on purpose.
#
#   sudo bench/e2e/rr_placement.sh        # ~30 s; prints a table, writes rr_placement.json
#
# Placements, each for the kernel's masquerade and for netnat's daemon:
#   free        nothing pinned but client and server (the scheduler places the daemon)
#   same-cpu    daemon threads pinned to CPU 0 too: no cross-CPU wake-up at all, so the
#               difference to the kernel is the work of the queue crossings themselves
#   other-cpu   daemon threads pinned to CPU 1: every hand-over between the Python
#               processes and the daemon wakes the other CPU; once more with
#               --busy-poll-us 200, whose threads do not sleep between packets
# The kernel NAT has no thread: it runs in softirq on the CPU that sends (CPU 0 here).
# Same topology and address plan as run.sh; namespaces deleted on exit.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "rr_placement.sh: needs root (network namespaces, nft)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "rr_placement.sh: needs 2 CPUs or more" >&2; exit 1; }
for tool in ip nft python3 iptables taskset; do
    command -v "$tool" >/dev/null || { echo "rr_placement.sh: $tool is missing" >&2; exit 1; }
done

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${OUT:-$here/results/$(date -u +%Y%m%dT%H%M%SZ)-placement}"
mkdir -p "$out"
if [ -z "${NETNAT:-}" ]; then
    (cd "$root" && cargo build --release -q -p netnat)
    NETNAT="$root/target/release/netnat"
fi

tag="p$$"
VM="nnb-$tag-vm"; NAT="nnb-$tag-nat"; WAN="nnb-$tag-wan"
work="$(mktemp -d /tmp/netnat-rrp.XXXXXX)"
pids=()
teardown() {
    set +e
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    pids=()
    for ns in "$VM" "$NAT" "$WAN"; do ip netns del "$ns" 2>/dev/null; done
}
trap 'teardown; rm -rf "$work"' EXIT
in_ns() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }

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
in_ns "$VM" ping -c 1 -W 2 10.100.1.1 >/dev/null

# Median p50 (and its run's p99) of three runs of 5000 round trips, client and server on CPU 0.
rr() {
    ip netns exec "$WAN" taskset -c 0 python3 "$here/tcp_rr.py" server 203.0.113.10 7000 30 >/dev/null 2>&1 &
    local server=$!
    sleep 0.5
    for _ in 1 2 3; do in_ns "$VM" taskset -c 0 python3 "$here/tcp_rr.py" rr 203.0.113.10 7000 5000; done \
        | python3 -c 'import json,sys; r=sorted((json.loads(l) for l in sys.stdin), key=lambda r: r["p50_us"])[1]; print(r["p50_us"], r["p99_us"])'
    kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true
}

pin_daemon() {
    local pid="$1" cpus="$2" t
    for t in /proc/"$pid"/task/*; do taskset -pc "$cpus" "${t##*/}" >/dev/null; done
}

results=()
# The kernel's masquerade.
in_ns "$NAT" nft -f - <<NFT
table ip nnbnat {
    chain postrouting { type nat hook postrouting priority 100; oifname "o$tag" masquerade; }
}
NFT
in_ns "$VM" ping -c 1 -W 2 203.0.113.10 >/dev/null
read -r p50 p99 < <(rr)
results+=("kernel in-softirq $p50 $p99")
in_ns "$NAT" nft delete table ip nnbnat

# netnat's daemon, three placements.
ip netns exec "$NAT" "$NETNAT" daemon --socket "$work/netnat.sock" --state-dir "$work/state" >"$work/daemon.log" 2>&1 &
daemon=$!
pids+=("$daemon")
for _ in $(seq 100); do
    in_ns "$NAT" "$NETNAT" --socket "$work/netnat.sock" Get-NetNatGlobal >/dev/null 2>&1 && break
    sleep 0.1
done
in_ns "$NAT" "$NETNAT" --socket "$work/netnat.sock" New-NetNat -Name WinNAT \
    -InternalIPInterfaceAddressPrefix 10.100.0.0/16 >/dev/null
in_ns "$VM" ping -c 1 -W 2 203.0.113.10 >/dev/null || { echo "rr_placement.sh: no path through netnat" >&2; cat "$work/daemon.log" >&2; exit 1; }
read -r p50 p99 < <(rr)
results+=("netnat free $p50 $p99")
pin_daemon "$daemon" 0
read -r p50 p99 < <(rr)
results+=("netnat same-cpu $p50 $p99")
pin_daemon "$daemon" 1
read -r p50 p99 < <(rr)
results+=("netnat other-cpu $p50 $p99")

# The same daemon with --busy-poll-us 200 (BUSY_POLL_US) on CPU 1: its threads do not sleep between packets,
# so the Python processes' hand-overs to it wake nothing.
kill "$daemon"; wait "$daemon" 2>/dev/null || true
ip netns exec "$NAT" "$NETNAT" daemon --socket "$work/netnat.sock" --state-dir "$work/state" --busy-poll-us "${BUSY_POLL_US:-200}" \
    >"$work/daemon.log" 2>&1 &
daemon=$!
pids+=("$daemon")
for _ in $(seq 100); do
    in_ns "$NAT" "$NETNAT" --socket "$work/netnat.sock" Get-NetNatGlobal >/dev/null 2>&1 && break
    sleep 0.1
done
in_ns "$VM" ping -c 1 -W 2 203.0.113.10 >/dev/null || { echo "rr_placement.sh: no path through netnat" >&2; cat "$work/daemon.log" >&2; exit 1; }
pin_daemon "$daemon" 1
read -r p50 p99 < <(rr)
results+=("netnat-busypoll other-cpu $p50 $p99")

printf '%s\n' "${results[@]}" | python3 -c '
import json, sys
rows = [dict(zip(["nat", "placement", "p50_us", "p99_us"], l.split())) for l in sys.stdin]
for r in rows:
    r["p50_us"], r["p99_us"] = float(r["p50_us"]), float(r["p99_us"])
json.dump(rows, open(sys.argv[1], "w"), indent=1)
print("| NAT | daemon placement (client and server on CPU 0) | rr p50, µs | rr p99, µs |")
print("|---|---|---|---|")
for r in rows:
    print("| %s | %s | %.1f | %.1f |" % (r["nat"], r["placement"], r["p50_us"], r["p99_us"]))
' "$out/rr_placement.json" | tee "$out/rr_placement.md"
echo "results: $out" >&2
