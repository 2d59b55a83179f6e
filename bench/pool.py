#!/usr/bin/env python3
"""Pools the recording section's off/on pairs of several `bench/run.sh` runs.

One run's medians of 9 pairs move by as much as recording costs at 16 KiB, so
judging the issue-7 target on one run is a coin toss; the pairs of several runs
together are steadier. Each pair is an off run and the on run right after it.

    python3 bench/pool.py target/bench-run/<time> [target/bench-run/<time> ...]
"""
import json
import statistics as st
import sys


def cpu_us(row):
    """sluice's CPU per event (µs) in one run."""
    return row["proxy_cpu_pct"] / 100 * row["seconds"] / row["received"] * 1e6


cells = {}
for run in sys.argv[1:]:
    rows = [json.loads(line) for line in open(f"{run}/results.jsonl")]
    offs = [r for r in rows if r["label"] == "record-off"]
    ons = [r for r in rows if r["label"] == "record-on"]
    for off, on in zip(offs, ons):
        key = (off["size"], off["streams"])
        if key != (on["size"], on["streams"]):
            sys.exit(f"{run}: an off run without its on run ({key})")
        cells.setdefault(key, []).append((off, on))

if not cells:
    sys.exit("no recording cells in the runs given")
for (size, streams), pairs in sorted(cells.items()):
    ratio = st.median(on["events_per_s"] / off["events_per_s"] for off, on in pairs)
    off_rate = st.median(off["events_per_s"] for off, _ in pairs)
    on_rate = st.median(on["events_per_s"] for _, on in pairs)
    off_cpu = st.median(cpu_us(off) for off, _ in pairs)
    on_cpu = st.median(cpu_us(on) for _, on in pairs)
    print(
        f"{size:>6} B x {streams:>3}: {len(pairs):>3} pairs; "
        f"median of the pairs' ratios {(ratio - 1) * 100:+.1f}%; "
        f"ratio of the medians {(on_rate / off_rate - 1) * 100:+.1f}%; "
        f"CPU per event {off_cpu:.2f} -> {on_cpu:.2f} us ({(on_cpu / off_cpu - 1) * 100:+.0f}%)"
    )
