#!/usr/bin/env bash
# Recording to a disk that cannot keep up: sluice (the Rust pass-through plugin) records
# 100 streams of 16 KiB events while its writes are throttled to MBPS megabytes a second
# by the block I/O controller, and every second prints sluice's resident memory, the
# bytes waiting in the recorder's queue and the records dropped. What it shows: the
# queue's bound in bytes (tape::QUEUE_BYTES) caps the memory a stalled disk costs, the
# proxied streams lose nothing, and the drops are counted. Needs root and a cgroup block
# I/O controller (v1 blkio or v2 io).
#
#   bash bench/slow_disk.sh [MBPS] [SECONDS]      (defaults: 20, 6)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
MBPS=${1:-20} SECONDS_=${2:-6}
TAPE=$PWD/target/slow-disk-tape
UP_PORT=18100 SLUICE_PORT=18102 ADMIN_PORT=18103

cargo build --release --quiet --bin sluice --bin sluice-loadgen
B=target/release
rm -rf "$TAPE"
mkdir -p "$TAPE"

# The whole disk under the tape's directory (throttling applies to disks, not partitions).
dev=$(findmnt -n -o MAJ:MIN --target "$TAPE" | tr -d ' ')
parent=$(lsblk -rno MAJ:MIN,PKNAME 2>/dev/null | awk -v d="$dev" '$1 == d {print $2}')
if [ -n "$parent" ]; then dev=$(lsblk -dno MAJ:MIN "/dev/$parent" | tr -d ' '); fi
bps=$((MBPS * 1024 * 1024))
if [ -d /sys/fs/cgroup/blkio ]; then
    CG=/sys/fs/cgroup/blkio/sluice-slow-disk
    mkdir -p "$CG"
    echo "$dev $bps" >"$CG/blkio.throttle.write_bps_device"
elif grep -qw io /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    CG=/sys/fs/cgroup/sluice-slow-disk
    echo +io >/sys/fs/cgroup/cgroup.subtree_control
    mkdir -p "$CG"
    echo "$dev wbps=$bps" >"$CG/io.max"
else
    echo "no cgroup block I/O controller here" >&2
    exit 1
fi
SLUICE= UP=
# shellcheck disable=SC2317 # run by the trap
cleanup() {
    kill $SLUICE $UP 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$TAPE"
    rmdir "$CG" 2>/dev/null || true
}
trap cleanup EXIT

"$B/sluice-loadgen" upstream --listen 127.0.0.1:$UP_PORT >/dev/null 2>&1 &
UP=$!
"$B/sluice" --upstream http://127.0.0.1:$UP_PORT --listen 127.0.0.1:$SLUICE_PORT \
    --admin-listen 127.0.0.1:$ADMIN_PORT --no-watch \
    --plugin plugins/dist/passthrough.wasm --record "$TAPE" >"$TAPE/sluice.log" 2>&1 &
SLUICE=$!
wait_port $SLUICE_PORT
echo "$SLUICE" >"$CG/cgroup.procs"

echo "== recording 100 x 16 KiB to a disk throttled to $MBPS MB/s ($dev), $SECONDS_ s"
"$B/sluice-loadgen" run --url http://127.0.0.1:$SLUICE_PORT/mcp --duration-ms $((SECONDS_ * 1000)) \
    --streams 100 --size 16384 --pid "$SLUICE" --json >"$TAPE/loadgen.json" &
LOAD=$!
gauge() { # gauge NAME: sluice_tape_NAME in $metrics
    awk -v name="sluice_tape_$1" '$1 == name {print $2}' <<<"$metrics"
}
for t in $(seq "$SECONDS_"); do
    sleep 1
    metrics=$(curl -s http://127.0.0.1:$ADMIN_PORT/metrics)
    rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$SLUICE/status")
    printf 't=%ss  sluice RSS %4d MB  queued %4d MiB  dropped %8s records\n' \
        "$t" $((rss_kb / 1024)) $(($(gauge queued_bytes) / 1048576)) "$(gauge records_dropped)"
done
wait $LOAD
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("proxied: %.0f events/s, %d events lost" % (d["events_per_s"], d["lost"]))
' "$TAPE/loadgen.json"
