#!/usr/bin/env bash
# Soak: 1 000 concurrent SSE streams through a release sluice with redact + dropper for
# 10 minutes, the chain reloaded every minute; prints RSS, gauges and counters every
# 10 s, then totals and PASS/FAIL (exit 1 on failure). The load tool is
# examples/soak.rs: it is the upstream and the clients, so it can check every event.
#
#   bash ops/soak.sh                           # the full run
#   bash ops/soak.sh --minutes 1 --streams 200 # any examples/soak.rs flag (see --help)
set -euo pipefail
cd "$(dirname "$0")/.."

# Every proxied stream holds two sockets in sluice (client side, upstream side) and two
# in the load tool: 1 000 streams need ~2 200 descriptors per process, past the usual
# soft limit of 1 024.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < 4096)); then
    echo "ulimit -n is $(ulimit -n); 1 000 streams need about 2 200" >&2
    exit 2
fi

cargo build --release --quiet --bin sluice --example soak
WORK=$(mktemp -d /tmp/sluice-soak.XXXXXX)
echo "$(date -u '+%F %T UTC'), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the figures)"
echo "sluice log: $WORK/sluice.log"
exec target/release/examples/soak --sluice target/release/sluice --log "$WORK/sluice.log" "$@" -- \
    --plugin plugins/dist/redact.wasm --plugin-config '{"patterns":["sk-live-[a-z0-9]+"]}' \
    --plugin plugins/dist/dropper.wasm --plugin-config '{"methods":["notifications/progress"]}' \
    --no-cache --log-format json
