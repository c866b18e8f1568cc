#!/usr/bin/env python3
"""Summarize bench/out/results.tsv: median and min/max spread over rounds.

Prints markdown tables (one for the load scenarios, one for idle memory) and,
if matplotlib can be imported, draws a chart (median bars, min/max whiskers).

    python3 summarize.py out/results.tsv [--chart out/chart.png]
"""
import argparse
import csv
import os
import statistics
from collections import defaultdict

SCENARIOS = ["plaintext", "json", "hello", "pipeline", "static4k", "static1m", "ws", "idle", "idlews"]
IDLE = {"idle": "keep-alive", "idlews": "WebSocket"}
SERVERS = ["tine", "actix", "axum", "may", "nginx"]


def number(text):
    try:
        return float(text)
    except ValueError:  # "-" where a column does not apply
        return None


def load(path):
    """{(server, config, scenario): {column: [value per round]}}"""
    groups = defaultdict(lambda: defaultdict(list))
    with open(path, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            key = (row["server"], row["config"], row["scenario"])
            for column, text in row.items():
                value = number(text)
                if value is not None:
                    groups[key][column].append(value)
    return groups


def order(keys):
    def rank(name, known):
        return (known.index(name), name) if name in known else (len(known), name)

    return sorted(keys, key=lambda k: (k[1], rank(k[2], SCENARIOS), rank(k[0], SERVERS)))


def median(values):
    return statistics.median(values) if values else None


def fmt(value, digits=0):
    return "-" if value is None else f"{value:,.{digits}f}"


def spread(values):
    """min-max, and the range as a percentage of the median."""
    if not values:
        return "-"
    mid = statistics.median(values)
    pct = f" ({(max(values) - min(values)) / mid * 100:.0f}%)" if mid else ""
    return f"{min(values):,.0f}-{max(values):,.0f}{pct}"


def tables(groups):
    lines = [
        "| config | scenario | server | req/s (median) | min-max (spread) | p50 µs | p99 µs"
        " | server CPU µs/req | errors | rounds |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    idle = [
        "| config | connection | server | RSS bytes per idle connection (median) | min-max | connections | rounds |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for server, config, scenario in order(groups):
        g = groups[(server, config, scenario)]
        if scenario in IDLE:
            per_conn = g["idle_bytes_per_conn"]
            idle.append(
                f"| {config} | {IDLE[scenario]} | {server} | {fmt(median(per_conn))} | "
                f"{fmt(min(per_conn, default=None))}-{fmt(max(per_conn, default=None))} | "
                f"{fmt(median(g['requests']))} | {len(per_conn)} |"
            )
            continue
        rps = g["req_per_s"]
        lines.append(
            f"| {config} | {scenario} | {server} | {fmt(median(rps))} | {spread(rps)} | "
            f"{fmt(median(g['p50_us']))} | {fmt(median(g['p99_us']))} | "
            f"{fmt(median(g['cpu_us_per_req']), 2)} | {fmt(sum(g['errors']))} | {len(rps)} |"
        )
    text = "\n".join(lines) if len(lines) > 2 else ""
    if len(idle) > 2:
        text += "\n\nIdle connections (server RSS growth, all processes):\n\n" + "\n".join(idle)
    return text.strip()


def shown(path):
    """`path` as printed in a summary: relative to the repository when it is
    inside it, so a summary kept in docs/ names no machine's directories."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rel = os.path.relpath(os.path.abspath(path), repo)
    return path if rel.startswith("..") else rel


def chart(groups, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"\n(no chart: matplotlib is not importable; `pip install matplotlib` to get {shown(path)})")
        return
    configs = sorted({k[1] for k in groups})
    servers = sorted({k[0] for k in groups}, key=lambda s: SERVERS.index(s) if s in SERVERS else 99)
    scenarios = [s for s in SCENARIOS if s not in IDLE and any(k[2] == s for k in groups)]
    panels = [("req_per_s", "requests (ws: messages) per second", True),
              ("cpu_us_per_req", "server CPU µs per request (message)", True),
              ("idle_bytes_per_conn", "idle: RSS bytes/conn", False)]
    fig, axes = plt.subplots(len(configs), 3, figsize=(18, 4.5 * len(configs)), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 3, 1.2]})
    width = 0.8 / max(len(servers), 1)
    for row, config in enumerate(configs):
        for col, (column, title, log) in enumerate(panels):
            ax = axes[row][col]
            names = [s for s in IDLE if any(k[2] == s for k in groups)] if column == "idle_bytes_per_conn" else scenarios
            for i, server in enumerate(servers):
                xs, mids, lows, highs = [], [], [], []
                for j, scenario in enumerate(names):
                    values = groups.get((server, config, scenario), {}).get(column, [])
                    if values:
                        mid = statistics.median(values)
                        xs.append(j + (i - (len(servers) - 1) / 2) * width)
                        mids.append(mid)
                        lows.append(mid - min(values))
                        highs.append(max(values) - mid)
                if xs:
                    ax.bar(xs, mids, width, yerr=[lows, highs], capsize=2, label=server,
                           color=f"C{i}")
            ax.set_xticks(range(len(names)), names, rotation=30 if len(names) > 1 else 0)
            ax.set_title(f"{config}: {title}")
            if log:
                ax.set_yscale("log")
            ax.grid(axis="y", alpha=0.3)
        axes[row][0].legend(fontsize="small")
    fig.suptitle("tine vs peers: medians over rounds, whiskers = min/max")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"\nchart: {shown(path)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", help="results.tsv written by run.sh")
    parser.add_argument("--chart", help="PNG path for the chart")
    args = parser.parse_args()
    groups = load(args.results)
    if not groups:
        print("no results")
        return
    print(tables(groups))
    if args.chart:
        chart(groups, args.chart)


if __name__ == "__main__":
    main()
