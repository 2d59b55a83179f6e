#!/usr/bin/env python3
"""Turns bench/run.sh's results.jsonl into the Markdown tables of BENCHMARKS.md."""
import json
import sys
from collections import OrderedDict

from figures import fmt_rate, size_name

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]


def medians(runs):
    """One row per (label, streams, size, rate): the run with the median events/s
    (bench/run.sh repeats cells because 3 processes share 2 cores)."""
    groups = OrderedDict()
    for r in runs:
        groups.setdefault((r["label"], r["streams"], r["size"], r["rate"]), []).append(r)
    out = []
    for group in groups.values():
        group.sort(key=lambda r: r["events_per_s"])
        median = dict(group[len(group) // 2])
        median["runs"] = len(group)
        median["spread"] = (group[0]["events_per_s"], group[-1]["events_per_s"])
        # A fault in any run counts.
        for k in ("lost", "reordered", "foreign", "errors"):
            median[k] = sum(r[k] for r in group)
        # The proxy's CPU time per event (all its threads), median over the runs: far
        # steadier than events/s on a shared machine (the recording table shows both).
        per_event = sorted(r["proxy_cpu_pct"] / 100 / r["events_per_s"] * 1e6
                           for r in group if r.get("proxy_cpu_pct") and r["events_per_s"])
        median["proxy_us_per_event"] = per_event[len(per_event) // 2] if per_event else None
        out.append(median)
    return out


# The load generator's cells (bench/targets.py reads the rest: the curl reader's rows).
runs = medians([r for r in rows if "events_per_s" in r and "streams" in r])
idle = [r for r in rows if "per_stream_kib" in r]

NAMES = OrderedDict([
    ("direct", "direct (floor)"),
    ("nginx", "nginx"),
    ("sluice-0", "sluice, 0 plugins"),
    ("sluice-1pass", "sluice, 1 pass-through"),
    ("sluice-1redact", "sluice, 1 redactor"),
    ("sluice-3pass", "sluice, 3 pass-through"),
    ("sluice-3redact", "sluice, pass + redactor + pass"),
])
# What each configuration must reach, as a fraction of nginx (issue 8).
TARGET = {"sluice-0": 1.0, "sluice-1pass": 0.8, "sluice-1redact": 0.8,
          "sluice-3pass": 0.6, "sluice-3redact": 0.6}


throughput = [r for r in runs if r["rate"] == 0 and r["label"] in NAMES]
cells = OrderedDict()
for r in throughput:
    cells.setdefault((r["size"], r["streams"]), {})[r["label"]] = r

met, missed = [], []
print("### Throughput (events/s; ratio to direct and to nginx; proxy CPU in % of one core)\n")
for (size, streams), by in cells.items():
    direct = by.get("direct", {}).get("events_per_s")
    nginx = by.get("nginx", {}).get("events_per_s")
    print(f"**{streams} stream{'s' if streams > 1 else ''} of {size_name(size)} events**\n")
    print("| path | events/s (median) | range of runs | MB/s | × direct | × nginx | proxy CPU | proxy RSS | faults |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, name in NAMES.items():
        r = by.get(label)
        if not r:
            continue
        eps = r["events_per_s"]
        xd = f"{eps / direct:.2f}" if direct else "-"
        xn = f"{eps / nginx:.2f}" if nginx and label != "direct" else "-"
        cpu = f"{r['proxy_cpu_pct']:.0f}%" if r.get("proxy_cpu_pct") is not None else "-"
        rss = f"{r['proxy_rss_mib']:.0f} MiB" if r.get("proxy_rss_mib") is not None else "-"
        faults = r["lost"] + r["reordered"] + r["foreign"] + r["errors"]
        lo, hi = r["spread"]
        spread = f"{fmt_rate(lo)}–{fmt_rate(hi)}" if r["runs"] > 1 else "-"
        print(f"| {name} | {fmt_rate(eps)} | {spread} | {r['mb_per_s']:.0f} | {xd} | {xn} | {cpu} | {rss} | {faults} |")
        if label in TARGET and nginx:
            ratio = eps / nginx
            line = f"{name}, {streams} × {size_name(size)}: {ratio:.2f}× nginx (target {TARGET[label]}×)"
            (met if ratio >= TARGET[label] else missed).append(line)
    print()

lat = [r for r in runs if r["rate"] > 0 and not r["label"].startswith(("probe@", "light"))]
light = [r for r in runs if r["label"].startswith("light@")]
light_direct = {r["label"].split("@", 1)[1]: r for r in runs if r["label"].startswith("light-direct@")}
probes = {r["label"].split("@", 1)[1]: r for r in runs if r["label"].startswith("probe@")}
if lat:
    print("### Latency at half of each path's paced peak (100 streams × 256 B, µs)\n")
    print("Paced peak: what arrived when asked for the throughput peak in paced form. "
          "Latency is from the upstream's send timestamp to the client's read.\n")
    print("| path | paced peak (events/s) | load (events/s) | p50 | p99 | p99.9 | direct p99 at that load | added p99 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    direct_at = {r["label"].split("@", 1)[1]: r for r in lat if r["label"].startswith("direct@")}
    for r in lat:
        if r["label"].startswith("direct@"):
            continue
        d = direct_at.get(r["label"])
        if not d:
            continue
        added = r["p99_us"] - d["p99_us"]
        probe = probes.get(r["label"])
        paced = fmt_rate(probe["events_per_s"]) if probe else "-"
        name = NAMES.get(r["label"], r["label"])
        print(f"| {name} | {paced} | {fmt_rate(r['events_per_s'])} | {r['p50_us']:.0f} | {r['p99_us']:.0f} | "
              f"{r['p999_us']:.0f} | {d['p99_us']:.0f} | {added:+.0f} |")
        if r["label"].startswith("sluice"):
            line = f"{name}: added p99 {added:+.0f} µs at {fmt_rate(r['events_per_s'])} events/s (target ≤ 100 µs)"
            (met if added <= 100 else missed).append(line)
    print()

if light:
    print("### Latency at a light load (100 streams × 256 B, µs)\n")
    print("| path | load (events/s) | p50 | p99 | p99.9 | direct p50 / p99 at that load | added p50 / p99 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in light:
        config = r["label"].split("@", 1)[1]
        d = light_direct.get(config)
        if not d:
            continue
        name = NAMES.get(config, config)
        print(f"| {name} | {fmt_rate(r['events_per_s'])} | {r['p50_us']:.0f} | {r['p99_us']:.0f} | {r['p999_us']:.0f} | "
              f"{d['p50_us']:.0f} / {d['p99_us']:.0f} | {r['p50_us'] - d['p50_us']:+.0f} / {r['p99_us'] - d['p99_us']:+.0f} |")
    print()

rec = [r for r in runs if r["label"].startswith("record-")]
tapes = {}
for r in rows:
    if r.get("label") == "record-tape":
        t = tapes.setdefault((r["size"], r["streams"]), [0, 0])
        # A run whose count could not be read makes the cell's count unknown.
        t[0] = None if t[0] is None or r["dropped"] is None else t[0] + r["dropped"]
        t[1] += 1
if rec:
    print("### Recording (`--record`), sluice with the pass-through\n")
    print("| event size | streams | off (events/s, median) | on (events/s, median) | change | ranges (off; on) | sluice CPU per event, off → on | records dropped (all runs) |")
    print("|---:|---:|---:|---:|---:|---|---:|---:|")
    by = {}
    for r in rec:
        by.setdefault((r["size"], r["streams"]), {})[r["label"]] = r
    for (size, streams), v in sorted(by.items()):
        off, on = v.get("record-off"), v.get("record-on")
        if off and on:
            change = (on["events_per_s"] / off["events_per_s"] - 1) * 100
            ranges = "; ".join(f"{fmt_rate(x['spread'][0])}-{fmt_rate(x['spread'][1])}" for x in (off, on))
            dropped = tapes.get((size, streams), [None])[0]
            cpu_off, cpu_on = off.get("proxy_us_per_event"), on.get("proxy_us_per_event")
            us = lambda x: f"{x:.2f}" if x < 10 else f"{x:.1f}"
            cpu = (f"{us(cpu_off)} → {us(cpu_on)} µs ({(cpu_on / cpu_off - 1) * 100:+.0f}%)"
                   if cpu_off and cpu_on else "n/a")
            print(f"| {size_name(size)} | {streams} | {fmt_rate(off['events_per_s'])} | {fmt_rate(on['events_per_s'])} | {change:+.1f}% | {ranges} | {cpu} | {dropped if dropped is not None else 'n/a'} |")
            # Issue 22's targets: at most 10% at small events, 25% at 16 KiB.
            limit = 10 if size <= 256 else 25
            line = f"recording, {streams} x {size_name(size)}: {change:+.1f}% events/s, {dropped} records dropped (target: at most {limit}% change, nothing dropped)"
            (met if abs(change) <= limit and dropped == 0 else missed).append(line)
    print()

if idle:
    print("### Memory with idle streams (one plugin instance per stream)\n")
    print("| plugin | streams open | clients | RSS before | RSS held | per stream | RSS after closing |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in idle:
        print(f"| {r['label'].removeprefix('idle-')} | {r['opened']} of {r['streams']} | {r.get('client_transport', 'http/1.1')} | {r['rss_before_mib']:.0f} MiB | "
              f"{r['rss_held_mib']:.0f} MiB | {r['per_stream_kib']:.0f} KiB | {r['rss_after_mib']:.0f} MiB |")
        if r["streams"] >= 10000:
            line = f"{r['streams']} idle streams, {r['label']}: {r['rss_held_mib']:.0f} MiB (target ≤ 1024 MiB)"
            (met if r["rss_held_mib"] <= 1024 and r["opened"] == r["streams"] else missed).append(line)
    print()

print("### Targets\n")
for line in met:
    print(f"- met: {line}")
for line in missed:
    print(f"- **not met**: {line}")
