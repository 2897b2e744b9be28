#!/usr/bin/env python3
"""Summarises the last `cargo bench -p netnat-bench --bench engine` run as a table.

    python3 bench/tools/summarize.py [target/criterion]

Reads criterion's JSON (new/estimates.json and new/benchmark.json of every benchmark) and
prints, per benchmark: the median time per iteration, the elements per iteration, the
median ns per element (packet, session) and millions of elements per second.
"""
import json
import os
import sys


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "target", "criterion"
    )
    rows = []
    for dirpath, _, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        elements = (bench.get("throughput") or {}).get("Elements") or 1
        median = est["median"]["point_estimate"]
        lo = est["median"]["confidence_interval"]["lower_bound"]
        hi = est["median"]["confidence_interval"]["upper_bound"]
        rows.append((bench["full_id"], median, lo, hi, elements))
    rows.sort()
    print(f"{'benchmark':48} {'median/iter':>12} {'elems':>7} {'ns/elem':>8} {'M/s':>8}  (95% CI of ns/elem)")
    for name, median, lo, hi, n in rows:
        per = median / n
        print(f"{name:48} {median/1e3:>10.1f}us {n:>7} {per:>8.2f} {1e3/per:>8.2f}  ({lo/n:.2f}-{hi/n:.2f})")


if __name__ == "__main__":
    main()
