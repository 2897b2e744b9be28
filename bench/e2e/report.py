#!/usr/bin/env python3
"""Turns bench/e2e/run.sh's results.json into results.md and one SVG bar chart per metric.

    report.py RESULTS_DIR SECONDS_PER_TEST
"""
import json
import os
import sys

METRICS = [
    ("udp_pps", "64-byte UDP packets/s forwarded", lambda v: f"{v/1e6:.3f} M"),
    ("tcp_gbps", "TCP throughput, Gbit/s (iperf3)", lambda v: f"{v:.2f}"),
    ("rr_p50_us", "TCP request/response p50, µs", lambda v: f"{v:.0f}"),
    ("rr_p99_us", "TCP request/response p99, µs", lambda v: f"{v:.0f}"),
    ("conn_per_s", "new TCP connections/s", lambda v: f"{v:.0f}"),
]


def svg_bars(title, rows, fmt):
    width, bar_h, gap, left = 560, 28, 12, 90
    height = 40 + len(rows) * (bar_h + gap)
    top = max([v for _, v in rows] + [1e-9])
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="13">',
        f'<text x="10" y="20" font-weight="bold">{title}</text>',
    ]
    for i, (name, v) in enumerate(rows):
        y = 32 + i * (bar_h + gap)
        w = (width - left - 110) * v / top
        color = "#4472c4" if name.startswith("netnat") else "#a5a5a5"
        out.append(f'<text x="10" y="{y + bar_h * 0.7}">{name}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
        out.append(f'<text x="{left + w + 6:.1f}" y="{y + bar_h * 0.7}">{fmt(v)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    out, secs = sys.argv[1], sys.argv[2]
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    by = {r["nat"]: r for r in results}
    lines = [f"Each test {secs} s; vm -> nat -> wan; see bench/e2e/run.sh.", ""]
    names = list(by)
    # One ratio column per netnat variant against the kernel, when the kernel ran.
    compared = [n for n in names if n != "kernel"] if "kernel" in by else []
    lines.append("| metric | " + " | ".join(names) + " |" + "".join(f" {n} / kernel |" for n in compared))
    lines.append("|---" * (len(names) + 1 + len(compared)) + "|")
    for key, title, fmt in METRICS:
        row = [fmt(by[n][key]) for n in names]
        k = by["kernel"][key] if compared else 0
        ratio = "".join(f" {by[n][key] / k:.3f}x |" if k else " — |" for n in compared)
        lines.append(f"| {title} | " + " | ".join(row) + " |" + ratio)
        with open(os.path.join(out, f"{key}.svg"), "w") as f:
            f.write(svg_bars(title, [(n, by[n][key]) for n in names], fmt))
    offered = ", ".join(f"{n} {by[n]['udp_offered_pps']/1e6:.3f} M/s" for n in names)
    failed = ", ".join(f"{n} {by[n]['conn_failed']}" for n in names)
    lines += ["", f"UDP offered by trafgen: {offered}. Failed connection attempts: {failed}."]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
