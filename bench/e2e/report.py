#!/usr/bin/env python3
"""Turns bench/e2e/run.sh's results.json into results.md and one SVG bar chart per metric.

    report.py RESULTS_DIR SECONDS_PER_TEST

results.json holds one entry per NAT per round (entries without "round" are round 1). For
each metric, results.md gives each NAT's median over the rounds with its min-max, and for
each netnat variant the median of the per-round ratios variant / kernel (the two measured in
the same round) with their min-max. The charts show the medians.
"""
import json
import os
import statistics
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


def spread(values, fmt):
    """'median (min-max)' of values, or just the value for one round."""
    m = statistics.median(values)
    if len(values) == 1:
        return fmt(m)
    return f"{fmt(m)} ({fmt(min(values))}-{fmt(max(values))})"


def main():
    out, secs = sys.argv[1], sys.argv[2]
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    names, by = [], {}
    for r in results:
        if r["nat"] not in by:
            names.append(r["nat"])
            by[r["nat"]] = {}
        by[r["nat"]][r.get("round", 1)] = r
    rounds = sorted({k for runs in by.values() for k in runs})
    lines = [f"Each test {secs} s; vm -> nat -> wan; {len(rounds)} round(s), each NAT once per round, "
             "in this order; see bench/e2e/run.sh.", ""]
    # One ratio column per netnat variant against the kernel, when the kernel ran.
    compared = [n for n in names if n != "kernel"] if "kernel" in by else []
    lines.append("| metric | " + " | ".join(names) + " |" + "".join(f" {n} / kernel |" for n in compared))
    lines.append("|---" * (len(names) + 1 + len(compared)) + "|")
    for key, title, fmt in METRICS:
        values = {n: [r[key] for r in by[n].values()] for n in names}
        row = [spread(values[n], fmt) for n in names]
        ratios = []
        for n in compared:
            per_round = [by[n][k][key] / by["kernel"][k][key] for k in rounds
                         if k in by[n] and k in by["kernel"] and by["kernel"][k][key]]
            ratios.append(spread(per_round, lambda v: f"{v:.3f}x") if per_round else "—")
        lines.append(f"| {title} | " + " | ".join(row) + " |" + "".join(f" {r} |" for r in ratios))
        with open(os.path.join(out, f"{key}.svg"), "w") as f:
            f.write(svg_bars(title, [(n, statistics.median(values[n])) for n in names], fmt))
    offered = ", ".join(f"{n} {statistics.median(r['udp_offered_pps'] for r in by[n].values())/1e6:.3f} M/s"
                        for n in names)
    failed = ", ".join(f"{n} {sum(r['conn_failed'] for r in by[n].values())}" for n in names)
    lines += ["", f"UDP offered by trafgen (median): {offered}. Failed connection attempts (all rounds): {failed}.",
              "Cells: median over the rounds (min-max); ratio columns: median of the per-round ratios (min-max)."]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
