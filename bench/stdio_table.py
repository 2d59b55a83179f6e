#!/usr/bin/env python3
"""Turns bench/stdio.sh's results.jsonl into the Markdown table of BENCHMARKS.md: per
(calls in flight, path) the median of the rounds, and the latency added to the direct
pipe's at the same concurrency. A call is two messages (the request and its answer)."""
import json, sys
from collections import OrderedDict
NAMES = {"direct": "direct pipe (floor)", "sluice-0": "sluice, 0 plugins",
         "sluice-1pass": "sluice, 1 pass-through", "sluice-shared": "sluice --upstream-shared",
         "supergateway": "supergateway 4.0.0 (--stateful)"}
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
groups = OrderedDict()
for r in rows:
    groups.setdefault((r["concurrency"], r["label"]), []).append(r)
med = lambda xs: sorted(xs)[len(xs) // 2]


def rate(n):
    return "%.3g k" % (n / 1000) if n >= 1000 else "%.0f" % n


floor = {c: (med([r["p50_us"] for r in g]), med([r["p99_us"] for r in g]))
         for (c, label), g in groups.items() if label == "direct"}
print("| in flight | path | calls/s (median) | range of runs | messages/s | p50 µs | p99 µs | added p50 / p99 µs | bridge CPU |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
for (c, label), g in sorted(groups.items(), key=lambda kv: kv[0][0]):
    calls = med([r["calls_per_s"] for r in g])
    lo, hi = min(r["calls_per_s"] for r in g), max(r["calls_per_s"] for r in g)
    p50, p99 = med([r["p50_us"] for r in g]), med([r["p99_us"] for r in g])
    added = "-" if label == "direct" or c not in floor else "+%.0f / +%.0f" % (p50 - floor[c][0], p99 - floor[c][1])
    cpus = [r["proxy_cpu_pct"] for r in g if r.get("proxy_cpu_pct") is not None]
    cpu = "-" if not cpus else "%.0f%%" % med(cpus)
    faults = sum(r["errors"] for r in g)
    print("| %d | %s | %s | %s–%s | %s | %.0f | %.0f | %s | %s |%s" % (
        c, NAMES.get(label, label), rate(calls), rate(lo), rate(hi), rate(2 * calls), p50, p99, added, cpu,
        " **%d errors**" % faults if faults else ""))
