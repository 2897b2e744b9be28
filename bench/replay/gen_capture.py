#!/usr/bin/env python3
"""Writes the capture bench/replay/run.sh replays: classic pcap, Ethernet, 64-byte UDP frames.

    gen_capture.py OUT.pcap [--packets N] [--flows F]

Flow i (0 <= i < F, F <= 4096 by default) is 10.100.H.L:(20000 + i) -> SERVER:(5000 + i % 1000)
with internal hosts spread over 10.100.0.0/16 and servers over 203.0.113.10-249 (even flows)
and 198.51.100.10-249 (odd flows). Packet k belongs to flow k % F; in every fourth round of
flows (round k // F = 3, 7, 11, ...) the packets are the servers' replies instead, addressed to
the NAT's external side 203.0.113.1:(20000 + i). That is where `netnat replay
--external-address 203.0.113.1 --port-allocation preserve` maps the flow, since the internal
ports are distinct and free: 25 % of the packets are inbound, and each reply follows its flow's
first outbound packet. Timestamps start at 1_700_000_000 s and advance 1 us per packet, so no
session idles out.

Python rather than a Rust bin in the bench crate: the capture comes from code that shares
nothing with netnat's pcap writer (an independent witness), nothing needs building, and the
~2 s it takes are spent once per run, outside the timed rounds. IP and UDP checksums are
computed in full, so the engine's incremental updates start from correct values.
"""

import argparse
import struct
import sys

ETH_LEN = 14
FRAME_LEN = 64
EXTERNAL = bytes([203, 0, 113, 1])
START_SECONDS = 1_700_000_000


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(src: bytes, sport: int, dst: bytes, dport: int, ident: int) -> bytes:
    payload_len = FRAME_LEN - ETH_LEN - 20 - 8
    payload = bytes((ident + j) & 0xFF for j in range(payload_len))
    udp_len = 8 + payload_len
    pseudo = src + dst + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + payload
    udp_sum = checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", udp_sum) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, ident & 0xFFFF, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    eth = bytes.fromhex("020000000001" "020000000002" "0800")
    return eth + ip + udp


def flows(count: int):
    """(outbound frame, inbound frame) per flow."""
    out = []
    for i in range(count):
        host = 256 + i * 13  # 10.100.1.0 upwards, spread over the /16
        internal = bytes([10, 100, (host >> 8) & 0xFF, host & 0xFF or 1])
        net = [203, 0, 113] if i % 2 == 0 else [198, 51, 100]
        server = bytes(net + [10 + (i // 2) % 240])
        sport, dport = 20000 + i, 5000 + i % 1000
        out.append((frame(internal, sport, server, dport, i), frame(server, dport, EXTERNAL, sport, i)))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("output")
    p.add_argument("--packets", type=int, default=1_000_000)
    p.add_argument("--flows", type=int, default=4096)
    a = p.parse_args()
    if not 1 <= a.flows <= 45535:
        p.error("--flows must be 1..45535 (internal ports 20000 + i)")
    templates = flows(a.flows)
    record = struct.Struct("<IIII")
    with open(a.output, "wb", buffering=1 << 20) as f:
        # Classic pcap header: little endian, microseconds, version 2.4, snaplen 65535, Ethernet.
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        chunk = []
        for k in range(a.packets):
            i = k % a.flows
            inbound = (k // a.flows) % 4 == 3
            ts = k  # microseconds after START_SECONDS
            chunk.append(record.pack(START_SECONDS + ts // 1_000_000, ts % 1_000_000, FRAME_LEN, FRAME_LEN))
            chunk.append(templates[i][1] if inbound else templates[i][0])
            if len(chunk) >= 16384:
                f.write(b"".join(chunk))
                chunk.clear()
        f.write(b"".join(chunk))
    return 0


if __name__ == "__main__":
    sys.exit(main())
