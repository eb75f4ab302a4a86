"""Puts retryd's `retryd bench --json` results beside the peer harness's RESULT lines, with the
ratio retryd/peer for each figure (for latency, lower is better: a ratio under 1 means retryd
is faster).

    python3 bench/compare.py retryd.jsonl peers/results-*.jsonl
"""

import json
import sys


def load(paths):
    rows = []
    for path in paths:
        with open(path) as f:
            rows.extend(json.loads(line) for line in f if line.strip())
    return rows


def figures(rows, peer):
    """The summary figures of one peer, as the peer harness defines them."""
    mine = [r for r in rows if r.get("peer") == peer]
    by_tag = {r.get("tag"): r for r in mine}
    processing = [r for r in mine if r.get("kind") == "process" and r.get("rate")]
    best = max(processing, key=lambda r: r["rate"], default=None)
    e2e = by_tag.get("e2e_c8")
    e2e_return = by_tag.get("e2e_return")
    return {
        "enqueue/s, 1 per call, 8 in flight": (by_tag.get("enq_x1") or {}).get("rate"),
        "enqueue/s, bulk": (by_tag.get("enq_bulk") or {}).get("rate"),
        "process/s, best configuration": best and best["rate"],
        "e2e p50 ms (from enqueue call)": e2e and e2e.get("p50"),
        "e2e p99 ms (from enqueue call)": e2e and e2e.get("p99"),
        "e2e p50 ms (from enqueue return)": e2e_return and e2e_return.get("p50"),
        "e2e p99 ms (from enqueue return)": e2e_return and e2e_return.get("p99"),
        "_best": best and best.get("variant"),
    }


def fmt(value):
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}"


def main():
    rows = load(sys.argv[1:])
    retryd = next((r["peer"] for r in rows if r.get("peer", "").startswith("retryd")), None)
    peers = []
    for r in rows:
        peer = r.get("peer")
        if peer and peer != retryd and r.get("kind") != "pgbench" and peer not in peers:
            peers.append(peer)
    if retryd is None or not peers:
        sys.exit("need retryd results and at least one peer's")
    ours = figures(rows, retryd)
    theirs = {peer: figures(rows, peer) for peer in peers}

    header = ["figure", retryd] + [col for peer in peers for col in (peer, "retryd/peer")]
    table = []
    for name in [k for k in ours if not k.startswith("_")]:
        line = [name, fmt(ours[name])]
        for peer in peers:
            value = theirs[peer][name]
            ratio = ours[name] / value if ours[name] and value else None
            line += [fmt(value), f"{ratio:.2f}x" if ratio else "-"]
        table.append(line)
    widths = [max(len(str(row[i])) for row in [header] + table) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths]] + table:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    print()
    print(f"best processing configuration: {retryd}: {ours['_best']}")
    for peer in peers:
        print(f"  {peer}: {theirs[peer]['_best']}")
    print("peers measure e2e from the enqueue call; retryd reports both from the call and from")
    print("CreateJob's return (the issue's definition). Throughput ratios above 1 favour retryd;")
    print("latency ratios below 1 favour retryd.")
    memory = next((r for r in rows if r.get("peer") == retryd and r.get("kind") == "memory"), None)
    if memory:
        idle = memory.get("idle_rss_kib")
        print(f"retryd server memory: idle RSS {idle / 1024:.1f} MB, peak RSS {memory['peak_rss_kib'] / 1024:.1f} MB"
              if idle else f"retryd server peak RSS {memory['peak_rss_kib'] / 1024:.1f} MB")


if __name__ == "__main__":
    main()
