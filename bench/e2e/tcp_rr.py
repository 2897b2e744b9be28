#!/usr/bin/env python3
"""TCP request/response latency and new-connection rate, for bench/e2e/run.sh.

    tcp_rr.py server ADDR PORT SECONDS      # echo server; exits after SECONDS
    tcp_rr.py rr ADDR PORT COUNT            # COUNT 64-byte round trips on one connection
    tcp_rr.py connect ADDR PORT SECONDS     # connect, 1-byte exchange, close, for SECONDS

Prints one JSON object. The same Python client and server run for every NAT compared, so
their own overhead (tens of microseconds) is common to both columns.
"""
import json
import socket
import struct
import sys
import threading
import time


def serve(addr, port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1024)
    s.settimeout(0.5)
    deadline = time.monotonic() + seconds

    def echo(conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            try:
                while True:
                    data = conn.recv(4096)
                    if not data:
                        return
                    conn.sendall(data)
            except OSError:
                # The connection-rate client closes with a reset.
                return

    while time.monotonic() < deadline:
        try:
            conn, _ = s.accept()
        except socket.timeout:
            continue
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def rr(addr, port, count):
    c = socket.create_connection((addr, port), timeout=5)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"x" * 64
    samples = []
    for _ in range(count):
        t0 = time.perf_counter_ns()
        c.sendall(msg)
        got = 0
        while got < len(msg):
            got += len(c.recv(4096))
        samples.append(time.perf_counter_ns() - t0)
    c.close()
    samples.sort()
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] / 1000.0
    print(json.dumps({"count": count, "p50_us": pick(0.50), "p99_us": pick(0.99), "max_us": samples[-1] / 1000.0}))


def connect(addr, port, seconds):
    deadline = time.monotonic() + seconds
    done = failed = 0
    start = time.monotonic()
    while time.monotonic() < deadline:
        try:
            c = socket.create_connection((addr, port), timeout=2)
            # Close with a reset: no TIME_WAIT, so the client's ports do not run out.
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.sendall(b"x")
            c.recv(1)
            c.close()
            done += 1
        except OSError:
            failed += 1
    elapsed = time.monotonic() - start
    print(json.dumps({"connections": done, "failed": failed, "seconds": elapsed, "per_second": done / elapsed}))


def main():
    mode, addr, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if mode == "server":
        serve(addr, port, float(n))
    elif mode == "rr":
        rr(addr, port, int(n))
    elif mode == "connect":
        connect(addr, port, float(n))
    else:
        sys.exit(f"unknown mode {mode!r}; use server, rr or connect")


if __name__ == "__main__":
    main()
