#!/usr/bin/env bash
# Usage: conformance.sh URL OUTDIR
# Runs the @modelcontextprotocol/conformance SERVER scenarios against the MCP
# server (Streamable HTTP) at URL, e.g. http://127.0.0.1:PORT/mcp, under node 22.
# Most scenarios need tools/resources/prompts with fixed names: point it at
# conformance-server.sh (directly, or through sluice), not at server-everything.
# Writes to OUTDIR:
#   raw/server-<scenario>-<timestamp>/checks.json  the suite's own output
#   conformance.log   the suite's console output
#   results.json      all checks, normalised (see conformance-summary.mjs)
#   summary.txt       "scenario/check STATUS" lines, sorted, run-independent:
#                     diff two of these to compare direct vs proxied runs
# Stdout: "conformance: N passed, N failed, N warnings".
# Exit: 0 no FAILURE, 1 some FAILURE, 2 the suite produced no results.
# CONFORMANCE_SUITE=active|all|pending (default all: active + the pending
# json-schema-2020-12 and server-sse-polling, which exercises resumption).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
url="${1:?usage: conformance.sh URL OUTDIR}"
out="${2:?usage: conformance.sh URL OUTDIR}"
# shellcheck source=env.sh
. "$here/env.sh"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
rm -rf "$out/raw"
start=$SECONDS
# The suite exits 1 when a check fails; that is reported via summary.txt and
# our own exit code instead, so don't let it stop the script. The timeout only
# guards against a hung server/proxy (a full run takes ~2 s).
(cd "$out" && timeout 300 "$NODE22" \
  "$here/node_modules/@modelcontextprotocol/conformance/dist/index.js" \
  server --url "$url" --suite "${CONFORMANCE_SUITE:-all}" -o "$out/raw" \
  >"$out/conformance.log" 2>&1) || echo "conformance exited $?" >>"$out/conformance.log"
rc=0
"$NODE22" "$here/conformance-summary.mjs" "$out/raw" "$out" || rc=$?
echo "conformance against $url took $((SECONDS - start))s, results in $out" >&2
exit "$rc"
