#!/usr/bin/env bash
# One-command live demo of netnat (Linux, root): builds three network namespaces
#   vm  (10.100.10.11/16, gateway 10.100.1.1)
#   nat (10.100.1.1/16 inside | 203.0.113.1/24 outside)  <- netnat daemon runs here
#   wan (203.0.113.10/24, a web server, a UDP echo server)
# starts the daemon, configures it with the cmdlets as the WinNAT article does, sends ping,
# a curl download and a UDP request through it, prints Get-NetNatSession and cleans up.
#
# Usage: sudo scripts/demo-live.sh        (NETNAT=/path/to/netnat to skip the build)
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "demo-live.sh: needs root (network namespaces, iptables): sudo $0" >&2; exit 1; }
for tool in ip iptables nft python3 curl ping; do
    command -v "$tool" >/dev/null || { echo "demo-live.sh: $tool is missing (apt-get install iproute2 iptables nftables python3 curl iputils-ping)" >&2; exit 1; }
done

cd "$(dirname "$0")/.."
if [ -z "${NETNAT:-}" ]; then
    cargo build -q -p netnat
    NETNAT="$PWD/target/debug/netnat"
fi

tag="d$$"
VM="netnat-$tag-vm"; NAT="netnat-$tag-nat"; WAN="netnat-$tag-wan"
work="$(mktemp -d /tmp/netnat-demo.XXXXXX)"
SOCK="$work/netnat.sock"
daemon_pid=""
server_pids=()

cleanup() {
    set +e
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    for p in "${server_pids[@]}"; do kill "$p" 2>/dev/null; done
    for ns in "$VM" "$NAT" "$WAN"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
in_ns() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }
netnat() { in_ns "$NAT" "$NETNAT" --socket "$SOCK" "$@"; }

step "Namespaces: vm -- nat -- wan (instead of New-VMSwitch / New-NetIPAddress)"
for ns in "$VM" "$NAT" "$WAN"; do ip netns add "$ns"; in_ns "$ns" ip link set lo up; done
ip link add "v$tag" netns "$VM" type veth peer name "i$tag" netns "$NAT"
ip link add "o$tag" netns "$NAT" type veth peer name "w$tag" netns "$WAN"
in_ns "$VM"  ip addr add 10.100.10.11/16 dev "v$tag"
in_ns "$VM"  ip link set "v$tag" up
in_ns "$VM"  ip route add default via 10.100.1.1
in_ns "$NAT" ip addr add 10.100.1.1/16 dev "i$tag"
in_ns "$NAT" ip addr add 203.0.113.1/24 dev "o$tag"
in_ns "$NAT" ip link set "i$tag" up
in_ns "$NAT" ip link set "o$tag" up
in_ns "$NAT" sysctl -qw net.ipv4.ip_forward=1
in_ns "$WAN" ip addr add 203.0.113.10/24 dev "w$tag"
in_ns "$WAN" ip link set "w$tag" up
echo "vm 10.100.10.11/16 via 10.100.1.1; nat 10.100.1.1/16 + 203.0.113.1/24; wan 203.0.113.10/24"

step "netnat daemon (in nat)"
ip netns exec "$NAT" "$NETNAT" daemon --socket "$SOCK" --state-dir "$work/state" 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do netnat Get-NetNatGlobal >/dev/null 2>&1 && break; sleep 0.1; done
netnat Get-NetNatGlobal >/dev/null || { cat "$work/daemon.log"; exit 1; }
echo "daemon pid $daemon_pid, socket $SOCK"

step "PS C:\\> Get-NetNat      (nothing yet)"
netnat Get-NetNat
step "PS C:\\> New-NetNat -Name WinNAT -InternalIPInterfaceAddressPrefix 10.100.0.0/16"
netnat New-NetNat -Name WinNAT -InternalIPInterfaceAddressPrefix 10.100.0.0/16

step "Servers in wan: HTTP on 203.0.113.10:8000, UDP echo on 203.0.113.10:5353"
head -c 1048576 /dev/urandom >"$work/blob"
(cd "$work" && exec ip netns exec "$WAN" python3 -m http.server 8000 --bind 203.0.113.10) >/dev/null 2>&1 &
server_pids+=($!)
ip netns exec "$WAN" python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("203.0.113.10", 5353))
for _ in range(100):
    data, peer = s.recvfrom(2048)
    s.sendto(b"echo from " + peer[0].encode() + b": " + data, peer)
' &
server_pids+=($!)
for _ in $(seq 100); do in_ns "$WAN" python3 -c 'import socket; socket.create_connection(("203.0.113.10", 8000), 1)' 2>/dev/null && break; sleep 0.1; done

step "vm: ping -c 3 203.0.113.10"
in_ns "$VM" ping -c 3 -W 2 203.0.113.10
step "vm: curl http://203.0.113.10:8000/blob (1 MiB)"
in_ns "$VM" curl -sS -o /dev/null -w 'downloaded %{size_download} bytes at %{speed_download} B/s\n' --max-time 20 http://203.0.113.10:8000/blob
step "vm: UDP request to 203.0.113.10:5353"
in_ns "$VM" python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(b"hello", ("203.0.113.10", 5353))
print(s.recv(2048).decode())
'

step "PS C:\\> Get-NetNatSession"
netnat Get-NetNatSession
step "Kernel rules netnat installed (iptables-nft chains in ip raw / ip mangle, and its own nft table ip netnat)"
in_ns "$NAT" iptables -t raw -S NETNAT-PRE
in_ns "$NAT" iptables -t mangle -S NETNAT-POST
in_ns "$NAT" nft list table ip netnat

step "PS C:\\> Remove-NetNat   (removes all NATs, drops their sessions)"
netnat Remove-NetNat
netnat Get-NetNatSession
echo "done; cleaning up"
