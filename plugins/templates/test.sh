#!/usr/bin/env bash
# A first test of {{name}}.wasm (build it first: ./build.sh). It builds nothing: it asks
# sluice whether it would load the plugin, then runs two hand-written tools/call
# requests through it and checks the verdicts. Add your own cases below.
#
# Needs sluice on PATH, or SLUICE=/path/to/sluice.
# Usage: ./test.sh   (from any directory)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wasm="$here/{{name}}.wasm"
sluice="${SLUICE:-sluice}"
config='{"deny":["delete_file"]}'

command -v "$sluice" >/dev/null || { echo "error: sluice not found: put it on PATH or set SLUICE=/path/to/sluice" >&2; exit 1; }
[ -f "$wasm" ] || { echo "error: $wasm not found: run ./build.sh first" >&2; exit 1; }

echo "==> sluice plugin check"
"$sluice" plugin check "$wasm" --config "$config"

failed=0
# expect VERDICT TOOL: a tools/call of TOOL gets VERDICT (the line `verdict: VERDICT`).
expect() {
    local want="$1" tool="$2" report
    local message='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"'"$tool"'","arguments":{}}}'
    report="$("$sluice" plugin test "$wasm" --config "$config" --message "$message")" || true
    if grep -qE "^ *verdict: +$want\b" <<<"$report"; then
        echo "ok:   tools/call $tool -> $want"
    else
        echo "FAIL: tools/call $tool: expected verdict: $want; sluice plugin test said:"
        echo "$report"
        failed=1
    fi
}

echo "==> sluice plugin test --message"
expect respond delete_file   # denied: answered with a JSON-RPC error, never forwarded
expect pass read_file        # any other tool goes on to the server
exit "$failed"
