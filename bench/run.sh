#!/usr/bin/env bash
# Side-by-side SSE benchmark (issue 8): the same load through
#   direct   the client reads the upstream itself (the floor)
#   nginx    Debian's nginx as an SSE reverse proxy (proxy_buffering off)
#   sluice   with 0, 1 and 3 plugins (the Rust pass-through and the redactor)
# for event sizes 256 B and 16 KiB and 1, 100 and 1 000 streams, then latency at half
# of each proxy's peak, recording on/off, and sluice's memory with idle streams.
#
#   bash bench/run.sh                 # the whole run (about 10 minutes)
#   QUICK=1 bash bench/run.sh         # 1 s per cell, no 10 000-stream memory run
#
# Knobs: DURATION_MS (3000), REPEAT (3: each throughput cell runs this often and the
# table shows the median, because 3 processes share 2 cores and single runs vary),
# SIZES ("256 16384"), STREAMS ("1 100 1000"),
# CONFIGS (see below), IDLE ("1000 10000"), OUT (target/bench-run/<time>),
# SECTIONS ("throughput latency recording memory"; latency needs throughput's peaks),
# REC_SIZES (event sizes of the recording section, "256 16384").
# Results: $OUT/results.jsonl (one line per cell) and $OUT/table.md (the tables that go
# into BENCHMARKS.md). Every cell checks its events: a lost or reordered event fails it.
# `python3 bench/pool.py $OUT [...]` pools the recording pairs of one or more runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=${QUICK:-0}
DURATION_MS=${DURATION_MS:-$([ "$QUICK" = 1 ] && echo 1000 || echo 3000)}
REPEAT=${REPEAT:-$([ "$QUICK" = 1 ] && echo 1 || echo 3)}
SIZES=${SIZES:-"256 16384"}
STREAMS=${STREAMS:-"1 100 1000"}
CONFIGS=${CONFIGS:-"direct nginx sluice-0 sluice-1pass sluice-1redact sluice-3pass sluice-3redact"}
IDLE=${IDLE:-$([ "$QUICK" = 1 ] && echo 1000 || echo "1000 10000")}
OUT=${OUT:-target/bench-run/$(date -u +%Y%m%dT%H%M%SZ)}
SECTIONS=${SECTIONS:-"throughput latency recording memory"}
section() { [[ " $SECTIONS " == *" $1 "* ]]; }
UP_PORT=18000 NGINX_PORT=18001 SLUICE_PORT=18002
# The redactor's pattern: the shape of a live API key; the generated events hold none,
# so every event is scanned in full and passed (the common case for a redactor).
REDACT_CONFIG='{"patterns":["sk-live-[a-z0-9]{8,}"]}'
PASS=plugins/dist/passthrough.wasm
REDACT=plugins/dist/redact.wasm

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -n "${NGINX_MASTER:-}" ] && kill "$NGINX_MASTER" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT

# Thousands of streams need thousands of sockets: raise the soft limit to the hard one.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "== open files: $(ulimit -n)"

echo "== building (release)"
cargo build --release --quiet --bin sluice --bin sluice-loadgen
SLUICE=$ROOT/target/release/sluice
LOADGEN=$ROOT/target/release/sluice-loadgen
if [ ! -f "$PASS" ] || [ ! -f "$REDACT" ]; then
    echo "== building the plugins"
    bash plugins/build.sh
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$NGINX" ]; then
    echo "== installing nginx (Debian package)"
    apt-get install -y -qq nginx >/dev/null
fi

# shellcheck source=bench/lib.sh
. bench/lib.sh

echo "== loadgen upstream on 127.0.0.1:$UP_PORT"
"$LOADGEN" upstream --listen "127.0.0.1:$UP_PORT" >"$OUT/upstream.log" 2>&1 &
PIDS+=($!)
wait_port $UP_PORT

echo "== nginx $("$NGINX" -v 2>&1 | sed 's/.*\///') on 127.0.0.1:$NGINX_PORT"
mkdir -p "$OUT/nginx/tmp"
sed -e "s|@PREFIX@|$OUT/nginx|g" -e "s|@LISTEN@|127.0.0.1:$NGINX_PORT|g" \
    -e "s|@UPSTREAM@|127.0.0.1:$UP_PORT|g" bench/nginx.conf.template >"$OUT/nginx/nginx.conf"
# Workers as nobody (the master is root here): give them the prefix.
chown -R nobody:nogroup "$OUT/nginx" 2>/dev/null || true
NGINX_MASTER=
start_nginx() { # a fresh nginx, like a fresh sluice per run (see the throughput loop)
    stop_nginx
    "$NGINX" -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" -e "$OUT/nginx/error.log" -g 'daemon off;' &
    NGINX_MASTER=$!
    wait_port $NGINX_PORT
    NGINX_WORKERS=$(pgrep -P "$NGINX_MASTER" | tr '\n' ' ')
}
stop_nginx() {
    if [ -n "$NGINX_MASTER" ]; then
        kill -QUIT "$NGINX_MASTER" 2>/dev/null || true
        wait "$NGINX_MASTER" 2>/dev/null || true
        NGINX_MASTER=
    fi
}
start_nginx

SLUICE_PID=
start_sluice() { # start_sluice NAME EXTRA-ARGS...: one sluice on SLUICE_PORT
    stop_sluice
    local name=$1
    shift
    "$SLUICE" --upstream "http://127.0.0.1:$UP_PORT" --listen "127.0.0.1:$SLUICE_PORT" \
        --admin-listen "127.0.0.1:${ADMIN_PORT:-0}" --no-watch "$@" >"$OUT/$name.log" 2>&1 &
    SLUICE_PID=$!
    wait_port $SLUICE_PORT
}
stop_sluice() {
    if [ -n "$SLUICE_PID" ]; then
        kill "$SLUICE_PID" 2>/dev/null || true
        wait "$SLUICE_PID" 2>/dev/null || true
        SLUICE_PID=
    fi
}

# The chain of each sluice configuration (sluice's defaults otherwise).
chain_of() {
    case $1 in
    sluice-0) ;;
    sluice-1pass) echo "--plugin $PASS" ;;
    sluice-1redact) echo "--plugin $REDACT --plugin-config $REDACT_CONFIG" ;;
    sluice-3pass) echo "--plugin $PASS --plugin $PASS --plugin $PASS" ;;
    sluice-3redact) echo "--plugin $PASS --plugin $REDACT --plugin-config $REDACT_CONFIG --plugin $PASS" ;;
    *) echo "unknown configuration $1" >&2; return 1 ;;
    esac
}

# endpoint CONFIG: prints "URL PID-ARGS" for the configuration, starting sluice if needed.
endpoint() {
    case $1 in
    direct) echo "http://127.0.0.1:$UP_PORT/mcp" ;;
    nginx)
        local pids=""
        for w in $NGINX_WORKERS; do pids="$pids --pid $w"; done
        echo "http://127.0.0.1:$NGINX_PORT/mcp $pids"
        ;;
    *) echo "http://127.0.0.1:$SLUICE_PORT/mcp --pid $SLUICE_PID" ;;
    esac
}

# settle: wait (at most 60 s) until the kernel's TCP buffers are drained. A run of 1 000
# fast streams leaves gigabytes in socket buffers and drives the kernel into TCP memory
# pressure (it then drops segments and retransmits after 200 ms+ timeouts); the next
# cell must not pay for that.
settle() {
    for _ in $(seq 1 600); do
        [ "$(awk '/^TCP:/ {print $NF}' /proc/net/sockstat)" -lt 2000 ] && return 0
        sleep 0.1
    done
}

cell() { # cell LABEL URL-AND-PIDS LOADGEN-ARGS...: one measured run, appended to results
    local label=$1 target=$2
    shift 2
    settle
    local url=${target%% *} pids=
    [ "$url" != "$target" ] && pids=${target#* }
    # shellcheck disable=SC2086
    if ! "$LOADGEN" run --url "$url" $pids --label "$label" --json "$@" >>"$RESULTS"; then
        echo "   FAILED: $label $* (see $RESULTS)" >&2
        FAILED=$((FAILED + 1))
    fi
    tail -n 1 "$RESULTS" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("   %-16s %5d x %5d B  %10.0f ev/s  %7.1f MB/s  p99 %9.1f us  cpu %s%%  lost %d" % (r["label"], r["streams"], r["size"], r["events_per_s"], r["mb_per_s"], r["p99_us"], r["proxy_cpu_pct"], r["lost"]))'
}

FAILED=0
section throughput && {
echo "== throughput: ${DURATION_MS} ms per cell, $REPEAT runs each, as fast as each path goes"
for config in $CONFIGS; do
    for size in $SIZES; do
        for streams in $STREAMS; do
            for _ in $(seq 1 "$REPEAT"); do
                # A fresh sluice per run: no pooled upstream connection carries a
                # window the kernel shrank under the previous run's memory pressure.
                settle
                case $config in
                direct) ;;
                nginx) start_nginx ;;
                *) start_sluice "$config" $(chain_of "$config") ;;
                esac
                cell "$config" "$(endpoint "$config")" --streams "$streams" --size "$size" --duration-ms "$DURATION_MS"
            done
        done
    done
done
stop_sluice
}

peak_of() { # peak_of LABEL STREAMS SIZE: events/s of that throughput cell
    python3 - "$RESULTS" "$@" <<'PY'
import json, sys
path, label, streams, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rates = sorted(r["events_per_s"] for r in map(json.loads, open(path))
               if r.get("label") == label and r.get("streams") == streams
               and r.get("size") == size and r.get("rate") == 0)
print(int(rates[len(rates) // 2]) if rates else 0)
PY
}

section latency && {
LAT_STREAMS=100 LAT_SIZE=256 LAT_TICK_MS=${LAT_TICK_MS:-1} LAT_LIGHT=${LAT_LIGHT:-10000}
echo "== latency: $LAT_STREAMS streams x $LAT_SIZE B, paced (every ${LAT_TICK_MS} ms per stream, phases spread), at half of each path's paced peak; direct at the same rate"
for config in $CONFIGS; do
    [ "$config" = direct ] && continue
    peak=$(peak_of "$config" $LAT_STREAMS $LAT_SIZE)
    [ "$peak" -gt 0 ] || continue
    settle
    case $config in nginx) start_nginx ;; *) start_sluice "$config" $(chain_of "$config") ;; esac
    # Paced events go out in small frames, which cost more per event than the 64 KiB
    # frames of the throughput runs: ask for the throughput peak and see what arrives.
    cell "probe@$config" "$(endpoint "$config")" --streams $LAT_STREAMS --size $LAT_SIZE \
        --duration-ms "$DURATION_MS" --rate $((peak / LAT_STREAMS)) --tick-ms "$LAT_TICK_MS"
    paced=$(tail -n 1 "$RESULTS" | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["events_per_s"]))')
    rate=$((paced / 2 / LAT_STREAMS))
    [ "$rate" -gt 0 ] || rate=1
    cell "direct@$config" "$(endpoint direct)" --streams $LAT_STREAMS --size $LAT_SIZE \
        --duration-ms "$DURATION_MS" --rate "$rate" --tick-ms "$LAT_TICK_MS"
    cell "$config" "$(endpoint "$config")" --streams $LAT_STREAMS --size $LAT_SIZE \
        --duration-ms "$DURATION_MS" --rate "$rate" --tick-ms "$LAT_TICK_MS"
    # And a light load (LAT_LIGHT events/s in all), where the machine is mostly idle.
    light=$((LAT_LIGHT / LAT_STREAMS))
    cell "light-direct@$config" "$(endpoint direct)" --streams $LAT_STREAMS --size $LAT_SIZE \
        --duration-ms "$DURATION_MS" --rate "$light" --tick-ms "$LAT_TICK_MS"
    cell "light@$config" "$(endpoint "$config")" --streams $LAT_STREAMS --size $LAT_SIZE \
        --duration-ms "$DURATION_MS" --rate "$light" --tick-ms "$LAT_TICK_MS"
done
stop_sluice
}

section recording && {
echo "== recording (issue 7): sluice with the pass-through, --record off and on"
for size in ${REC_SIZES:-256 16384}; do
    for streams in 1 100; do
        for _ in $(seq 1 "$REPEAT"); do
            # The last pair's tape (gigabytes at 16 KiB) goes before this pair starts,
            # and `sync` waits for the journal commit that frees it (with the `discard`
            # mount option, also for the discards): deleting it just before the run with
            # recording on would put that work inside its measurement.
            rm -rf "$OUT/tapes"
            sync
            start_sluice rec-off --plugin "$PASS"
            cell "record-off" "$(endpoint sluice)" --streams $streams --size "$size" --duration-ms "$DURATION_MS"
            # No size cap: the whole run is recorded (at 16 KiB the default 1 GiB is
            # reached within a run, and recording would stop there).
            ADMIN_PORT=18003 start_sluice rec-on --plugin "$PASS" --record "$OUT/tapes" --tape-max-bytes 0
            cell "record-on" "$(endpoint sluice)" --streams $streams --size "$size" --duration-ms "$DURATION_MS"
            # A tape that dropped records is not a recording at that rate: say so.
            dropped=$(curl -s http://127.0.0.1:18003/metrics | awk '/^sluice_tape_records_dropped / {print $2}' || true)
            tape_bytes=$(du -cb "$OUT"/tapes/* 2>/dev/null | tail -n 1 | cut -f1 || true)
            echo "{\"label\":\"record-tape\",\"streams\":$streams,\"size\":$size,\"dropped\":${dropped:-null},\"tape_bytes\":${tape_bytes:-null}}" >>"$RESULTS"
            echo "   tape: ${dropped:-?} records dropped, $tape_bytes bytes"
        done
    done
done
stop_sluice
rm -rf "$OUT/tapes"
}

section memory && {
echo "== memory: idle streams (one event each, then quiet) through sluice with one plugin"
for plugin in pass redact; do
    case $plugin in
    pass) start_sluice "idle-$plugin" --plugin "$PASS" ;;
    redact) start_sluice "idle-$plugin" --plugin "$REDACT" --plugin-config "$REDACT_CONFIG" ;;
    esac
    for n in $IDLE; do
        # HTTP/1.1 needs two sockets per stream in sluice; past 5 000 streams that is over
        # the 20 000 open files this machine allows, so the clients multiplex over HTTP/2
        # (100 streams per connection; the upstream side stays HTTP/1.1).
        transport=()
        [ "$n" -gt 5000 ] && transport=(--h2 100)
        if ! "$LOADGEN" idle --url "http://127.0.0.1:$SLUICE_PORT/mcp" --pid "$SLUICE_PID" \
            --streams "$n" --label "idle-$plugin" "${transport[@]}" --json >>"$RESULTS"; then
            echo "   FAILED: idle $plugin $n" >&2
            FAILED=$((FAILED + 1))
        fi
        tail -n 1 "$RESULTS"
    done
done
stop_sluice
}

python3 bench/table.py "$RESULTS" >"$OUT/table.md"
cat "$OUT/table.md"
echo
echo "== results: $RESULTS, table: $OUT/table.md; $FAILED failed cells"
[ "$FAILED" = 0 ]
