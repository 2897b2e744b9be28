#!/usr/bin/env python3
"""Seed corpora for the netnat fuzz targets, from a real capture.

    python3 fuzz/tools/make_seeds.py [samples/kernel-nat/input.pcap]

Writes, under fuzz/seeds/:
- packet_outbound_inbound/pkt-NNN: one file per IPv4 packet of the capture, prefixed by the
  target's mode byte (NNN % 4: as is, forced outbound, forced inbound, round trip);
- pcap_reader/: the first packets of the capture as classic pcap (micro- and nanosecond
  timestamps, both byte orders) and as pcapng (editcap, when installed).
operation_sequence takes structured input (arbitrary); its seeds are a minimised corpus
of an earlier run, kept as they are.
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        sys.exit(f"{path}: not a classic pcap file (magic {magic.hex()})")
    linktype = struct.unpack(end + "I", data[20:24])[0]
    at, records = 24, []
    while at + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack(end + "IIII", data[at : at + 16])
        records.append((sec, frac, data[at + 16 : at + 16 + incl], orig))
        at += 16 + incl
    return data[:24], end, linktype, records


def ipv4_of(linktype, frame):
    if linktype == 1:
        at = 12
        while at + 2 <= len(frame):
            et = struct.unpack(">H", frame[at : at + 2])[0]
            if et == 0x0800:
                return frame[at + 2 :]
            if et not in (0x8100, 0x88A8):
                return None
            at += 4
        return None
    if linktype in (101, 228):
        return frame if frame and frame[0] >> 4 == 4 else None
    return None


def write_pcap(path, end, linktype, records, magic):
    with open(path, "wb") as f:
        f.write(struct.pack(end + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype))
        for sec, frac, frame, orig in records:
            f.write(struct.pack(end + "IIII", sec, frac, len(frame), orig) + frame)


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "samples", "kernel-nat", "input.pcap")
    _, end, linktype, records = read_pcap(src)
    out = os.path.join(SEEDS, "packet_outbound_inbound")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    n = 0
    for _, _, frame, _ in records:
        ip = ipv4_of(linktype, frame)
        if ip is None:
            continue
        with open(os.path.join(out, f"pkt-{n:03}"), "wb") as f:
            f.write(bytes([n % 4]) + ip)
        n += 1
    print(f"{n} IPv4 packets -> {out}")

    out = os.path.join(SEEDS, "pcap_reader")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    head = records[:6]
    write_pcap(os.path.join(out, "micro-le.pcap"), "<", linktype, head, 0xA1B2C3D4)
    write_pcap(os.path.join(out, "micro-be.pcap"), ">", linktype, head, 0xA1B2C3D4)
    nano = [(s, f * 1000, fr, o) for s, f, fr, o in head]
    write_pcap(os.path.join(out, "nano-le.pcap"), "<", linktype, nano, 0xA1B23C4D)
    raw = [(s, f, ipv4_of(linktype, fr), o) for s, f, fr, o in head if ipv4_of(linktype, fr) is not None]
    raw = [(s, f, fr, len(fr)) for s, f, fr, o in raw]
    write_pcap(os.path.join(out, "raw-ip.pcap"), "<", 101, raw, 0xA1B2C3D4)
    if shutil.which("editcap"):
        subprocess.run(
            ["editcap", "-F", "pcapng", os.path.join(out, "micro-le.pcap"), os.path.join(out, "ethernet.pcapng")],
            check=True,
        )
    else:
        print("editcap not installed: no pcapng seed (apt-get install tshark)")
    print(f"{len(os.listdir(out))} capture files -> {out}")


if __name__ == "__main__":
    main()
