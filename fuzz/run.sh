#!/usr/bin/env bash
# Builds the fuzz targets once, then fuzzes each for SECONDS, one after the other.
#
#   fuzz/run.sh SECONDS [TARGET...]      (default: every target)
#
# Environment: SANITIZER (default none; address, leak... as `cargo fuzz build -s`),
# NICE (default 10). Exit status 1 if any target found something, 2 on a build failure.
#
# The targets are built once and their binaries run directly, instead of `cargo fuzz run`
# per target: that would rebuild sluice whenever its sources changed in between, and on a
# shared two-core machine a build in the middle of the measurements skews them. Each target
# runs as one in-process libFuzzer job (what `-jobs=1` amounts to, without its detour through
# a `fuzz-0.log` in the working directory), under nice.
set -euo pipefail

usage() {
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
}
[[ $# -ge 1 && $1 =~ ^[0-9]+$ ]] || usage
seconds=$1
shift

cd "$(dirname "$0")"
all=(sse_decoder jsonrpc sse_encoder tape_reader)
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")
sanitizer=${SANITIZER:-none}
nice_level=${NICE:-10}
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin_dir=target/$triple/release

command -v cargo-fuzz >/dev/null || {
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 2
}

mkdir -p logs
echo "== build (sanitizer: $sanitizer)"
start=$(date +%s)
if ! nice -n "$nice_level" cargo +nightly fuzz build -s "$sanitizer" >logs/build.log 2>&1; then
    tail -n 40 logs/build.log >&2
    echo "build failed (full log: fuzz/logs/build.log)" >&2
    exit 2
fi
echo "build: $(($(date +%s) - start)) s"

# Per-target extras: the SSE targets get long enough inputs to reach the decoder's
# large-line path (16 KiB), and each target a dictionary of its vocabulary.
extra_args() {
    case $1 in
    sse_decoder) echo "-dict=dict/sse.dict -max_len=32768" ;;
    sse_encoder) echo "-dict=dict/sse.dict" ;;
    jsonrpc) echo "-dict=dict/jsonrpc.dict" ;;
    tape_reader) echo "-dict=dict/tape.dict -max_len=8192" ;;
    esac
}

found=0
summary=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    dirs=("corpus/$target")
    [[ -d seeds/$target ]] && dirs+=("seeds/$target")
    before=$(find "artifacts/$target" -type f | wc -l)
    log=logs/$target.log
    echo "== $target: ${seconds} s"
    set +e
    # shellcheck disable=SC2046 # the extra arguments are meant to be split
    nice -n "$nice_level" "$bin_dir/$target" "${dirs[@]}" \
        -max_total_time="$seconds" -timeout=25 -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" $(extra_args "$target") >"$log" 2>&1
    status=$?
    set -e
    after=$(find "artifacts/$target" -type f | wc -l)

    # The last status line has the coverage; the final stats (absent after a crash) the
    # exact counts.
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    [[ -n $runs ]] || runs=$(sed -E -n 's/^#([0-9]+).*/\1/p' <<<"$last")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    [[ -n $rate ]] || rate=$(sed -E -n 's/.*exec\/s: ([0-9]+).*/\1/p' <<<"$last")
    cov=$(sed -E -n 's/.*cov: ([0-9]+) ft: ([0-9]+).*/\1 edges, \2 features/p' <<<"$last")
    corpus=$(find "corpus/$target" -type f | wc -l)
    if [[ $status -ne 0 || $after -gt $before ]]; then
        found=1
        result="FOUND something (exit $status, $((after - before)) new file(s) in fuzz/artifacts/$target/; log fuzz/$log)"
    else
        result="nothing found"
    fi
    line="$target: ${runs:-?} runs, ${rate:-?} exec/s, coverage ${cov:-?}, corpus $corpus files: $result"
    echo "$line"
    summary+=("$line")
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$found"
