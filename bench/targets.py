#!/usr/bin/env python3
"""The tables of issue 27's conditions from bench/run.sh's results.jsonl (the reader,
light and streams sections, and the throughput cells of the per-event plugins), each
row with its target and whether this run met it."""
import json
import statistics
import sys
from collections import OrderedDict

from figures import fmt_rate as rate, size_name

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]

NAMES = OrderedDict([
    ("direct", "direct (floor)"),
    ("nginx", "nginx"),
    ("sluice-0", "sluice, 0 plugins"),
    ("sluice-0-shared", "sluice, 0 plugins, `--workers 0`"),
    ("sluice-1c", "sluice, 1 C pass-through (0.1 `filter`, per event)"),
    ("sluice-1c-shared", "sluice, 1 C pass-through, `--workers 0`"),
    ("sluice-3c", "sluice, 3 C pass-through"),
    ("sluice-1rust", "sluice, 1 Rust pass-through (0.2, per message)"),
    ("sluice-1py", "sluice, 1 Python reference filter (0.2)"),
    ("sluice-1js", "sluice, 1 JavaScript reference filter (0.2)"),
    ("sluice-1pass", "sluice, 1 Rust pass-through (0.1 `batch-filter`)"),
])
# Events/s as a fraction of nginx's (issue 27); None: published, no target.
TARGET = {"sluice-0": 1.0, "sluice-1c": 0.8, "sluice-1rust": 0.8, "sluice-3c": 0.6}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def verdict(value, target, higher_is_better=True):
    if target is None or value is None:
        return ""
    met = value >= target if higher_is_better else value <= target
    return "met" if met else "**not met**"


def reader():
    runs = [r for r in rows if r.get("label") == "reader"]
    if not runs:
        return
    print("### A single fast reader (curl -sN, one stream)\n")
    print("| event | path | events/s (median) | range | × nginx | target | proxy CPU per event | bytes as direct |")
    print("|---|---|---:|---:|---:|---|---:|---|")
    for size in sorted({r["size"] for r in runs}):
        at = [r for r in runs if r["size"] == size]
        direct_bytes = {r["bytes"] for r in at if r["config"] == "direct"}
        nginx = median([r["events_per_s"] for r in at if r["config"] == "nginx"])
        for config in NAMES:
            mine = [r for r in at if r["config"] == config]
            if not mine:
                continue
            rates = [r["events_per_s"] for r in mine]
            mid = median(rates)
            ratio = mid / nginx if nginx and config != "direct" else None
            target = TARGET.get(config)
            cpu = median([r.get("proxy_us_per_event") for r in mine])
            same = "yes" if {r["bytes"] for r in mine} <= direct_bytes else "**no**"
            print(f"| {size_name(size)} | {NAMES[config]} | {rate(mid)} | {rate(min(rates))}–{rate(max(rates))} "
                  f"| {'-' if ratio is None else f'{ratio:.2f}'} "
                  f"| {'' if target is None else f'≥ {target} ' + verdict(ratio, target)} "
                  f"| {'-' if cpu is None else f'{cpu:.2f} µs'} | {same} |")
    print()


def throughput():
    cells = [r for r in rows if r.get("label") in NAMES and r.get("rate") == 0
             and "events_per_s" in r and r.get("streams") in (1, 100)]
    if not cells:
        return
    print("### Through the load generator (1 and 100 streams)\n")
    print("| load | path | events/s (median) | × nginx | target | proxy CPU per event |")
    print("|---|---|---:|---:|---|---:|")
    keys = sorted({(r["streams"], r["size"]) for r in cells})
    for streams, size in keys:
        at = [r for r in cells if r["streams"] == streams and r["size"] == size]
        nginx = median([r["events_per_s"] for r in at if r["label"] == "nginx"])
        for config in NAMES:
            mine = [r for r in at if r["label"] == config]
            if not mine:
                continue
            mid = median([r["events_per_s"] for r in mine])
            ratio = mid / nginx if nginx and config != "direct" else None
            target = TARGET.get(config)
            cpu = median([r["proxy_cpu_pct"] / 100 / r["events_per_s"] * 1e6
                          for r in mine if r.get("proxy_cpu_pct") and r["events_per_s"]])
            print(f"| {streams} × {size_name(size)} | {NAMES[config]} | {rate(mid)} "
                  f"| {'-' if ratio is None else f'{ratio:.2f}'} "
                  f"| {'' if target is None else f'≥ {target} ' + verdict(ratio, target)} "
                  f"| {'-' if cpu is None else f'{cpu:.2f} µs'} |")
    print()


def latency():
    for prefix, title in (("light10@", "a light load: 10 streams × 100 events/s"),
                          ("half@", "half of sluice's peak with one C plugin: 100 streams × 256 B")):
        runs = [r for r in rows if str(r.get("label", "")).startswith(prefix)]
        if not runs:
            continue
        load = median([r["events_per_s"] for r in runs])
        print(f"### Latency at {title} (µs, medians of the rounds; about {rate(load)} events/s)\n")
        print("| path | p50 | p99 | p99.9 | added p50 | added p99 | target |")
        print("|---|---:|---:|---:|---:|---:|---|")
        by = {}
        for config in NAMES:
            mine = [r for r in runs if r["label"] == prefix + config]
            if mine:
                by[config] = {k: median([r[k] for r in mine]) for k in ("p50_us", "p99_us", "p999_us")}
        direct = by.get("direct")
        nginx_added = by["nginx"]["p99_us"] - direct["p99_us"] if direct and "nginx" in by else None
        for config, q in by.items():
            added50 = q["p50_us"] - direct["p50_us"] if direct and config != "direct" else None
            added99 = q["p99_us"] - direct["p99_us"] if direct and config != "direct" else None
            target = ""
            if config == "sluice-1c" and nginx_added is not None:
                limit = nginx_added + 100
                target = f"≤ {limit:+.0f} " + verdict(added99, limit, higher_is_better=False)
            print(f"| {NAMES[config]} | {q['p50_us']:.0f} | {q['p99_us']:.0f} | {q['p999_us']:.0f} "
                  f"| {'-' if added50 is None else f'{added50:+.0f}'} "
                  f"| {'-' if added99 is None else f'{added99:+.0f}'} | {target} |")
        print()


def memory():
    runs = [r for r in rows if str(r.get("label", "")).split("@")[0] in ("slow", "fast")
            and "@" in str(r.get("label", ""))]
    if not runs:
        return
    print("### Memory with 1 000 open streams (peak RSS of a fresh process, MiB, median of the rounds)\n")
    print("| streams | nginx | sluice, 1 C pass-through | × nginx | target | sluice events/s | lost |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for mode, title in (("slow", "1 000 slow (10 events/s each)"), ("fast", "1 000 fast (as fast as read)")):
        nginx = median([r["proxy_rss_mib"] for r in runs if r["label"] == f"{mode}@nginx"])
        mine = [r for r in runs if r["label"] == f"{mode}@sluice-1c"]
        rss = median([r["proxy_rss_mib"] for r in mine])
        if nginx is None or rss is None:
            continue
        ratio = rss / nginx
        lost = sum(r["lost"] for r in mine)
        print(f"| {title} | {nginx:.0f} | {rss:.0f} | {ratio:.2f} | ≤ 2 {verdict(ratio, 2.0, higher_is_better=False)} "
              f"| {rate(median([r['events_per_s'] for r in mine]))} | {lost} |")
    print()


reader()
throughput()
latency()
memory()
