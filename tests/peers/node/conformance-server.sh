#!/usr/bin/env bash
# Usage: conformance-server.sh PORT
# Runs conformance-server.mjs (our reference server for the
# @modelcontextprotocol/conformance server scenarios) on
# http://127.0.0.1:PORT/mcp under node 22. PORT 0 picks a free port.
# Ready: stdout prints "READY http://127.0.0.1:<port>/mcp" (the real port).
# `exec` so the caller's child pid IS the node process.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
port="${1:?usage: conformance-server.sh PORT}"
# shellcheck source=env.sh
. "$here/env.sh"
exec "$NODE22" "$here/conformance-server.mjs" "$port"
