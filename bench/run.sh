#!/usr/bin/env bash
# Side-by-side SSE benchmark (issue 8): the same load through
#   direct   the client reads the upstream itself (the floor)
#   nginx    Debian's nginx as an SSE reverse proxy (proxy_buffering off)
#   sluice   with 0, 1 and 3 plugins (the Rust pass-through and the redactor)
# for event sizes 256 B and 16 KiB and 1, 100 and 1 000 streams, then latency at half
# of each proxy's peak, recording on/off, and sluice's memory with idle streams.
# Issue 27's conditions, side by side with nginx (bench/targets.py checks each target):
#   reader    one stream read by curl -sN (no checking client), per-event plugins in C,
#             Rust, Python and JavaScript, and sluice on one shared runtime
#   light     added latency at 10 streams x 100 events/s and at half of sluice's peak
#   streams   peak RSS with 1 000 slow and 1 000 fast streams, one C plugin
#
#   bash bench/run.sh                 # the whole run (about 10 minutes)
#   QUICK=1 bash bench/run.sh         # 1 s per cell, no 10 000-stream memory run
#
# Knobs: DURATION_MS (3000), REPEAT (3: each throughput cell runs this often and the
# table shows the median, because 3 processes share 2 cores and single runs vary),
# SIZES ("256 16384"), STREAMS ("1 100 1000"),
# CONFIGS (see below), IDLE ("1000 10000"), OUT (target/bench-run/<time>),
# SECTIONS ("throughput latency recording memory reader light streams"; latency needs
# throughput's peaks), READER_CONFIGS and LIGHT_CONFIGS (the configurations of the
# reader and light sections),
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
SECTIONS=${SECTIONS:-"throughput latency recording memory reader light streams"}
# The sections of issue 27 (reader, light, streams) compare these side by side.
READER_CONFIGS=${READER_CONFIGS:-"direct nginx sluice-0 sluice-0-shared sluice-1c sluice-1c-shared sluice-3c sluice-1rust sluice-1py sluice-1js"}
LIGHT_CONFIGS=${LIGHT_CONFIGS:-"direct nginx sluice-0 sluice-1c"}
section() { [[ " $SECTIONS " == *" $1 "* ]]; }
UP_PORT=18000 NGINX_PORT=18001 SLUICE_PORT=18002
# The redactor's pattern: the shape of a live API key; the generated events hold none,
# so every event is scanned in full and passed (the common case for a redactor).
REDACT_CONFIG='{"patterns":["sk-live-[a-z0-9]{8,}"]}'
PASS=plugins/dist/passthrough.wasm
REDACT=plugins/dist/redact.wasm
# The ordinary per-event shape (issue 27): a C pass-through of 0.1 `filter` (no batch
# export, as wit-bindgen C gives it), the Rust pass-through of 0.2 (`on-message`), and
# the reference filter in Python and JavaScript (0.2, reads each message's data).
PASS_C=plugins/dist/passthrough-c.wasm
PASS_RUST=plugins/dist/passthrough-v0.2.wasm
REF_PY=plugins/dist/reference-python.wasm
REF_JS=plugins/dist/reference-js.wasm

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}" ${SLUICE_PID:-}; do kill "$pid" 2>/dev/null || true; done
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
    # The workers fork after the master listens: wait for them (their CPU is nginx's).
    NGINX_WORKERS=
    for _ in $(seq 1 100); do
        NGINX_WORKERS=$(pgrep -P "$NGINX_MASTER" | tr '\n' ' ' || true)
        [ -n "$NGINX_WORKERS" ] && break
        sleep 0.02
    done
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
    if (exec 3<>"/dev/tcp/127.0.0.1/$SLUICE_PORT") 2>/dev/null; then
        echo "port $SLUICE_PORT is taken (a sluice left from an earlier run?)" >&2
        return 1
    fi
    "$SLUICE" --upstream "http://127.0.0.1:$UP_PORT" --listen "127.0.0.1:$SLUICE_PORT" \
        --admin-listen "127.0.0.1:${ADMIN_PORT:-0}" --no-watch "$@" >"$OUT/$name.log" 2>&1 &
    SLUICE_PID=$!
    # Up to 2 minutes: a JavaScript or Python plugin compiles for 10-60 s on a cache miss.
    wait_port $SLUICE_PORT 2400
    if ! kill -0 "$SLUICE_PID" 2>/dev/null; then
        echo "sluice ($name) did not start: $(tail -n 1 "$OUT/$name.log")" >&2
        return 1
    fi
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
    sluice-1c) echo "--plugin $PASS_C" ;;
    sluice-3c) echo "--plugin $PASS_C --plugin $PASS_C --plugin $PASS_C" ;;
    sluice-1rust) echo "--plugin $PASS_RUST" ;;
    sluice-1py) echo "--plugin $REF_PY" ;;
    sluice-1js) echo "--plugin $REF_JS" ;;
    # The same on one shared work-stealing runtime (before the connection workers).
    sluice-0-shared) echo "--workers 0" ;;
    sluice-1c-shared) echo "--workers 0 --plugin $PASS_C" ;;
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

start_config() { # start_config CONFIG: a fresh nginx or sluice for it (nothing for direct)
    case $1 in
    direct) ;;
    nginx) start_nginx ;;
    *) start_sluice "$1" $(chain_of "$1") ;;
    esac
}

# The configurations whose plugins are built (Python and JavaScript need their own
# toolchains: bash plugins/build-all.sh).
built() {
    local config out=""
    for config in "$@"; do
        local missing=""
        for f in $(chain_of "$config" 2>/dev/null | tr ' ' '\n' | grep '\.wasm$' || true); do
            [ -f "$f" ] || missing=$f
        done
        if [ -n "$missing" ]; then
            echo "   skipping $config: $missing is not built (bash plugins/build-all.sh)" >&2
        else
            out="$out $config"
        fi
    done
    echo "$out"
}

cpu_ticks() { # cpu_ticks PID...: user + system clock ticks of those processes
    local total=0 pid
    for pid in "$@"; do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$total"
}

section reader && {
# One stream read the way a user first tries a proxy: curl, as fast as it reads, the
# upstream writing 64 KiB at a time. Configurations take turns within each round, so
# a change in the machine's load spreads over all of them.
echo "== a single fast reader: one stream read by curl -sN, $REPEAT rounds"
READER_EVENTS_256=${READER_EVENTS_256:-1000000}
READER_EVENTS_16K=${READER_EVENTS_16K:-40000}
configs=$(built $READER_CONFIGS)
for size in $SIZES; do
    events=$READER_EVENTS_256
    [ "$size" -gt 1024 ] && events=$READER_EVENTS_16K
    body="{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"loadgen\",\"arguments\":{\"stream\":1,\"size\":$size,\"events\":$events,\"duration_ms\":0,\"rate\":0,\"tick_ms\":0,\"idle\":false}}}"
    for round in $(seq 1 "$REPEAT"); do
        for config in $configs; do
            settle
            start_config "$config"
            pids=()
            case $config in
            direct) url=http://127.0.0.1:$UP_PORT/mcp ;;
            nginx) url=http://127.0.0.1:$NGINX_PORT/mcp; read -r -a pids <<<"$NGINX_WORKERS" ;;
            *) url=http://127.0.0.1:$SLUICE_PORT/mcp; pids=("$SLUICE_PID") ;;
            esac
            # One short stream first: a plugin's first instance, the pooled upstream
            # connection and nginx's worker are then in place, as for a user's second try.
            curl -sN -o /dev/null -X POST -H 'content-type: application/json' \
                -H 'accept: application/json, text/event-stream' \
                --data "${body/\"events\":$events/\"events\":100}" "$url"
            before=$(cpu_ticks "${pids[@]}")
            started=$(date +%s%N)
            bytes=$(curl -sN -o /dev/null -w '%{size_download}' -X POST \
                -H 'content-type: application/json' \
                -H 'accept: application/json, text/event-stream' --data "$body" "$url")
            ended=$(date +%s%N)
            after=$(cpu_ticks "${pids[@]}")
            python3 - "$config" "$size" "$events" "$round" "$bytes" "$started" "$ended" \
                "$before" "$after" "$(getconf CLK_TCK)" "${#pids[@]}" >>"$RESULTS" <<'PY'
import json, sys
config, size, events, rnd, nbytes, t0, t1, c0, c1, tck, procs = sys.argv[1:]
seconds = (int(t1) - int(t0)) / 1e9
cpu = (int(c1) - int(c0)) / int(tck)
print(json.dumps({"label": "reader", "config": config, "size": int(size),
                  "events": int(events), "round": int(rnd), "bytes": int(nbytes),
                  "seconds": seconds, "events_per_s": int(events) / seconds,
                  "proxy_us_per_event": cpu / int(events) * 1e6 if int(procs) else None}))
PY
            tail -n 1 "$RESULTS" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); c=r["proxy_us_per_event"]; print("   %-14s %5d B  %10.0f ev/s  %s  %d bytes" % (r["config"], r["size"], r["events_per_s"], "-" if c is None else "%.2f us CPU/event" % c, r["bytes"]))'
        done
    done
done
stop_sluice
}

section light && {
# Added latency, timed from the upstream's send stamp by the load generator's compiled
# client: at a light load (10 streams x 100 events/s), and at half of the peak of
# sluice with one C plugin (100 streams x 256 B), nginx and direct at the same load.
echo "== latency at a light load and at half of sluice's peak, $REPEAT rounds"
configs=$(built $LIGHT_CONFIGS)
for round in $(seq 1 "$REPEAT"); do
    for config in $configs; do
        settle
        start_config "$config"
        cell "light10@$config" "$(endpoint "$config")" --streams 10 --size 256 \
            --duration-ms "$DURATION_MS" --rate 100 --tick-ms 1
    done
done
# The peak as the latency section finds it: as fast as it goes, then asked for that
# much in paced form (1 ms ticks: smaller writes, dearer per event); half of what
# arrived paced.
if [ -z "$(built sluice-1c)" ]; then
    echo "   no half-peak cells: they run sluice with the C pass-through"
else
settle
start_config sluice-1c
cell "peak@sluice-1c" "$(endpoint sluice-1c)" --streams 100 --size 256 --duration-ms "$DURATION_MS"
last_rate() { tail -n 1 "$RESULTS" | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["events_per_s"]))'; }
peak=$(last_rate)
settle
start_config sluice-1c
cell "probe@sluice-1c" "$(endpoint sluice-1c)" --streams 100 --size 256 \
    --duration-ms "$DURATION_MS" --rate $((peak / 100 + 1)) --tick-ms 1
paced=$(last_rate)
rate=$((paced / 2 / 100))
[ "$rate" -gt 0 ] || rate=1
echo "   sluice-1c: peak $peak events/s, paced $paced; half: $rate events/s per stream"
for round in $(seq 1 "$REPEAT"); do
    for config in $configs; do
        settle
        start_config "$config"
        cell "half@$config" "$(endpoint "$config")" --streams 100 --size 256 \
            --duration-ms "$DURATION_MS" --rate "$rate" --tick-ms 1
    done
done
fi
stop_sluice
}

section streams && {
# Memory with 1 000 open streams and one plugin: slow (10 events/s each) and fast (as
# fast as they read), the peak RSS of a fresh process each time.
echo "== memory: 1 000 streams, slow and fast, nginx and sluice with one C plugin"
for round in $(seq 1 "$REPEAT"); do
    for config in $(built nginx sluice-1c); do
        settle
        start_config "$config"
        cell "slow@$config" "$(endpoint "$config")" --streams 1000 --size 256 \
            --duration-ms "$DURATION_MS" --rate 10 --tick-ms 100
        settle
        start_config "$config"
        cell "fast@$config" "$(endpoint "$config")" --streams 1000 --size 256 \
            --duration-ms "$DURATION_MS"
    done
done
stop_sluice
}

python3 bench/table.py "$RESULTS" >"$OUT/table.md"
python3 bench/targets.py "$RESULTS" >>"$OUT/table.md"
cat "$OUT/table.md"
echo
echo "== results: $RESULTS, table: $OUT/table.md; $FAILED failed cells"
[ "$FAILED" = 0 ]
