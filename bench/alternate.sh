#!/usr/bin/env bash
# Alternating variants of one load-generator cell, for questions the recording section
# of run.sh cannot answer (where does recording's cost come from?). Each round runs
# every variant once, in order, with a fresh sluice (the Rust pass-through plugin);
# the summary gives each variant's median ratio to the first (events/s, with a
# bootstrap interval; sluice's CPU per event) over the rounds, so that slow drift
# between rounds cancels out.
#
#   bash bench/alternate.sh STREAMS SIZE ROUNDS 'NAME|SLUICE ARGS[|BACKGROUND COMMAND]' ...
#
# A background command runs (in bash) for the length of its variant's run: another
# load on the machine. `@TAPE` in a variant stands for a fresh directory under $TAPES
# (default target/alternate-tapes), emptied and synced before every run.
# Example, recording to disk, to tmpfs, and an unrelated disk writer next to sluice:
#
#   bash bench/alternate.sh 1 16384 12 'off|' 'disk|--record @TAPE' \
#       'tmpfs|--record /dev/shm/sluice-tape' \
#       'writer||python3 bench/disk_load.py @TAPE/load 780'
#
# Knobs: DURATION_MS (3000). Lines: events/s, sluice µs of CPU per event, page faults
# per 1 000 events, and the whole machine's busy and stolen µs per event (from
# /proc/stat: every process, the load generator's too; stolen is time the host ran
# something else on our vCPUs), for each variant.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
. bench/lib.sh
[ $# -ge 5 ] || { sed -n '2,20p' "$0"; exit 2; }
STREAMS=$1 SIZE=$2 ROUNDS=$3
shift 3
VARIANTS=("$@")
DURATION_MS=${DURATION_MS:-3000}
TAPES=${TAPES:-$ROOT/target/alternate-tapes}
UP_PORT=18100 SLUICE_PORT=18102 ADMIN_PORT=18103

cargo build --release --quiet --bin sluice --bin sluice-loadgen
B=$ROOT/target/release
"$B/sluice-loadgen" upstream --listen 127.0.0.1:$UP_PORT >/dev/null 2>&1 &
UP=$!
trap 'kill $UP 2>/dev/null; rm -rf "$TAPES" /dev/shm/sluice-tape' EXIT
sleep 0.3

# One run of a variant: prints "events/s cpu-us-per-event faults-per-1000-events
# machine-busy-us-per-event stolen-us-per-event".
run() {
    local args=$1 background=$2 sluice bg=
    rm -rf "$TAPES" /dev/shm/sluice-tape
    mkdir -p "$TAPES"
    sync
    sleep 0.5
    args=${args//@TAPE/$TAPES/tape}
    background=${background//@TAPE/$TAPES}
    # shellcheck disable=SC2086 # the variant's arguments are words
    "$B/sluice" --upstream http://127.0.0.1:$UP_PORT --listen 127.0.0.1:$SLUICE_PORT \
        --admin-listen 127.0.0.1:$ADMIN_PORT --no-watch \
        --plugin plugins/dist/passthrough.wasm $args >"$TAPES/sluice.log" 2>&1 &
    sluice=$!
    wait_port $SLUICE_PORT
    if [ -n "$background" ]; then
        bash -c "$background" &
        bg=$!
        sleep 0.2
    fi
    local faults_before faults_after result machine_before machine_after
    faults_before=$(awk '{print $10}' "/proc/$sluice/stat")
    machine_before=$(head -1 /proc/stat)
    result=$("$B/sluice-loadgen" run --url http://127.0.0.1:$SLUICE_PORT/mcp \
        --duration-ms "$DURATION_MS" --streams "$STREAMS" --size "$SIZE" --pid "$sluice" --json)
    faults_after=$(awk '{print $10}' "/proc/$sluice/stat")
    machine_after=$(head -1 /proc/stat)
    [ -n "$bg" ] && { kill "$bg"; wait "$bg" 2>/dev/null || true; }
    kill "$sluice"
    wait "$sluice" 2>/dev/null || true
    python3 -c '
import json, sys
d = json.loads(sys.argv[1]); faults = int(sys.argv[2])
cpu = d["proxy_cpu_pct"] / 100 * d["seconds"] / d["received"] * 1e6
# cpu user nice system idle iowait irq softirq steal ...: ticks of 1/100 s, summed
# over the vCPUs; busy is everything but idle, iowait and steal.
ticks = [b - a for a, b in zip(*(map(int, line.split()[1:9]) for line in sys.argv[3:5]))]
per_event = lambda t: t * 1e4 / d["received"]
busy = per_event(ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6])
print(int(d["events_per_s"]), round(cpu, 2), round(faults / d["received"] * 1000, 1),
      round(busy, 2), round(per_event(ticks[7]), 2))
' "$result" $((faults_after - faults_before)) "$machine_before" "$machine_after"
}

OUT=$(mktemp)
for round in $(seq "$ROUNDS"); do
    line=""
    for variant in "${VARIANTS[@]}"; do
        IFS='|' read -r _ args background <<<"$variant"
        line+="$(run "$args" "${background:-}") | "
    done
    echo "round $round: ${line% | }" | tee -a "$OUT"
done
python3 - "$OUT" "${VARIANTS[@]}" <<'PY'
import random, statistics as st, sys
names = [v.split("|")[0] for v in sys.argv[2:]]
rows = [[list(map(float, p.split())) for p in line.split(":", 1)[1].split("|")]
        for line in open(sys.argv[1]) if line.strip()]
base = names[0]
for k, name in enumerate(names):
    evs = st.median(r[k][0] for r in rows)
    cpu = st.median(r[k][1] for r in rows)
    faults = st.median(r[k][2] for r in rows)
    busy = st.median(r[k][3] for r in rows)
    steal = st.median(r[k][4] for r in rows)
    line = (f"{name}: {evs:.0f} events/s, {cpu:.2f} µs CPU/event, {faults:.1f} faults/1000 "
            f"events, machine {busy:.2f} µs busy + {steal:.2f} stolen/event")
    if k:
        ratios = [r[k][0] / r[0][0] - 1 for r in rows]
        cpu_ratio = st.median(r[k][1] / r[0][1] for r in rows) - 1
        # How far the median of the rounds' ratios can be trusted: 95% of the medians
        # of 2 000 resamples of the rounds (with replacement) lie in this interval.
        rng = random.Random(1)
        medians = sorted(st.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
        line += (f"; against {base}: events/s {st.median(ratios):+.1%} "
                 f"(95% {medians[50]:+.1%} to {medians[1949]:+.1%}), CPU/event {cpu_ratio:+.1%}")
    print(line)
PY
rm -f "$OUT"
