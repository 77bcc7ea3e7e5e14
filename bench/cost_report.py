#!/usr/bin/env python3
"""The table bench/cost.sh prints from its results file.

    cost_report.py RESULTS "ROW ROW ..."

RESULTS has one line per measurement: `proxy size row repeat kind value [top calls]`, kind
`syscalls` (per request, or per second for the idle row) or `instructions` (the same). Each
row is measured twice; the table shows their mean and, in brackets, how far apart the two
are (percent of the mean). The lowest peer (nginx, HAProxy) is the target xipgate is
compared with: `x/peer` is xipgate's count over the lowest peer's.
"""
import collections
import sys

PEERS = ("nginx", "haproxy")


def main():
    path, rows = sys.argv[1], sys.argv[2].split()
    got = collections.defaultdict(list)
    top = {}
    sizes, proxies = [], []
    with open(path) as f:
        for line in f:
            proxy, size, row, _rep, kind, value, *rest = line.split()
            got[(proxy, size, row, kind)].append(float(value))
            if rest:
                top[(proxy, size, row)] = rest[0]
            if size not in sizes:
                sizes.append(size)
            if proxy not in proxies:
                proxies.append(proxy)
    for kind in ("syscalls", "instructions"):
        if not any(k[3] == kind for k in got):
            continue
        unit = "per request (idle: per second)"
        print(f"\n{kind} {unit}; (spread of two runs)")
        print("| row | instances | " + " | ".join(proxies) + " | xipgate / lowest peer |")
        print("|---|---:|" + "---:|" * (len(proxies) + 1))
        for row in rows:
            for size in sizes:
                cells, means = [], {}
                for p in proxies:
                    v = got.get((p, size, row, kind))
                    if not v:
                        # the peers have no registry: their first-size figure holds
                        v = got.get((p, sizes[0], row, kind)) if p in PEERS else None
                    if not v:
                        cells.append("")
                        continue
                    m = sum(v) / len(v)
                    means[p] = m
                    spread = (max(v) - min(v)) / m * 100 if m else 0.0
                    fmt = f"{m:.2f}" if kind == "syscalls" else f"{m:,.0f}"
                    cells.append(f"{fmt} ({spread:.1f}%)")
                if not any(cells) or not any((p, size, row, kind) in got for p in proxies):
                    continue
                peer = min((means[p] for p in PEERS if p in means), default=None)
                ratio = ""
                if peer and "xipgate" in means:
                    ratio = f"{means['xipgate'] / peer:.2f}"
                    if "xipgate-pingora" in means:
                        ratio += f" / {means['xipgate-pingora'] / peer:.2f}"
                print(f"| {row} | {size} | " + " | ".join(cells) + f" | {ratio} |")
    if top:
        print("\nthe most frequent system calls, per request (idle: per second)")
        for (p, size, row), calls in sorted(top.items(), key=lambda kv: (rows.index(kv[0][2]), kv[0][1], kv[0][0])):
            print(f"  {row:12} {size:>7} {p:16} {calls}")


if __name__ == "__main__":
    main()
