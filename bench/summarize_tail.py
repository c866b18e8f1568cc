#!/usr/bin/env python3
"""Summarize bench/out/tail.tsv (run.sh's tail config): medians over rounds.

Prints two markdown tables: the fast requests' p99 per load and server (the
headline figure), then every column per load and server.

    python3 summarize_tail.py out/tail.tsv
"""
import csv
import statistics
import sys
from collections import defaultdict

LOADS = ["new", "new-slow", "ka", "ka-slow"]
SERVERS = ["tine", "tine-shared", "actix", "axum"]
COLUMNS = [
    ("fast_p50_us", "fast p50"),
    ("fast_p99_us", "fast p99"),
    ("fast_p999_us", "fast p99.9"),
    ("fast_max_us", "fast max"),
    ("slow_p99_us", "slow p99"),
    ("fast_errors", "fast errors"),
    ("slow_errors", "slow errors"),
    ("lag_p99_us", "client lag p99"),
    ("listen_overflows", "listen overflows"),
    ("cpu_us_per_req", "server CPU µs/req"),
    ("load1", "load average"),
]


def describe(load, rate, conns, slow_every):
    how = "a new connection per request" if conns == "0" else f"{conns} keep-alive connections"
    every = int(float(slow_every or 0))
    slow = f"1 in {every:,} slow" if every else "no slow requests"
    return f"{int(float(rate)):,} req/s, {how}, {slow}"


def ms(us):
    return "-" if us is None else f"{us / 1000:.2f} ms"


def main(path):
    groups = defaultdict(lambda: defaultdict(list))
    what = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            key = (row["load"], row["server"])
            what[row["load"]] = describe(row["load"], row["rate"], row["conns"], row["slow_every"])
            for column, _ in COLUMNS:
                try:
                    groups[key][column].append(float(row[column]))
                except (ValueError, KeyError):
                    pass
    loads = [l for l in LOADS if l in what] + sorted(set(what) - set(LOADS))
    servers = sorted({s for _, s in groups}, key=lambda s: (SERVERS.index(s) if s in SERVERS else 99, s))

    def med(load, server, column):
        values = groups.get((load, server), {}).get(column)
        return statistics.median(values) if values else None

    print("\n### Tail latency: fast requests' p99 (median over rounds)\n")
    print("| load | " + " | ".join(servers) + " |")
    print("|---|" + "---:|" * len(servers))
    for load in loads:
        print(f"| {what[load]} | " + " | ".join(ms(med(load, s, "fast_p99_us")) for s in servers) + " |")

    print("\n### Tail latency: every figure (median over rounds; latencies in µs)\n")
    print("| load | server | " + " | ".join(name for _, name in COLUMNS) + " | rounds |")
    print("|---|---|" + "---:|" * (len(COLUMNS) + 1))
    for load in loads:
        for server in servers:
            g = groups.get((load, server))
            if not g:
                continue
            cells = []
            for column, _ in COLUMNS:
                v = med(load, server, column)
                digits = 2 if column in ("cpu_us_per_req", "load1") else 0
                cells.append("-" if v is None else f"{v:,.{digits}f}")
            rounds = max(len(v) for v in g.values())
            print(f"| {load} | {server} | " + " | ".join(cells) + f" | {rounds} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "out/tail.tsv")
