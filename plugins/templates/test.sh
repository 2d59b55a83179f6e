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
# expect TOOL VERDICT LINE: a tools/call of TOOL gets the line `verdict: VERDICT`, and
# the report has a line starting with LINE (what the server or the client gets).
expect() {
    local tool="$1" want="$2" line="$3" report
    local message='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"'"$tool"'","arguments":{}}}'
    report="$("$sluice" plugin test "$wasm" --config "$config" --message "$message")" || true
    if grep -qx "verdict: $want" <<<"$report" && grep -qF "$line" <<<"$report"; then
        echo "ok:   tools/call $tool -> $want"
    else
        echo "FAIL: tools/call $tool: expected the lines \`verdict: $want\` and \`$line...\`; sluice plugin test said:"
        echo "$report"
        failed=1
    fi
}

echo "==> sluice plugin test --message"
# Denied: answered with the plugin's JSON-RPC error, never forwarded.
expect delete_file respond 'client gets: {"jsonrpc":"2.0","id":1,"error":{"code":-32001'
# Any other tool goes on to the server unchanged.
expect read_file pass 'server gets: {"jsonrpc":"2.0","id":1,"method":"tools/call"'
exit "$failed"
