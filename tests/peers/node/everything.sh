#!/usr/bin/env bash
# Usage: everything.sh PORT MODE     (MODE: streamableHttp | sse; PORT 0 = any free port)
# Runs @modelcontextprotocol/server-everything on 127.0.0.1:PORT under node 22.
#   streamableHttp: POST/GET/DELETE http://127.0.0.1:PORT/mcp
#   sse (legacy):   GET http://127.0.0.1:PORT/sse, POST /message?sessionId=...
# Ready: stdout prints "READY http://127.0.0.1:<port>/mcp" (or /sse), with the
# real port (see listen-preload.cjs). The server's own lines, request logs on
# stdout and "... listening on port N" on stderr, follow/precede it.
# `exec` so the caller's child pid IS the node process (kill reaches it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
port="${1:?usage: everything.sh PORT streamableHttp|sse}"
mode="${2:?usage: everything.sh PORT streamableHttp|sse}"
case "$mode" in
  streamableHttp) export SLUICE_READY_PATH=/mcp ;;
  sse) export SLUICE_READY_PATH=/sse ;;
  *) echo "bad MODE: $mode (streamableHttp|sse)" >&2; exit 2 ;;
esac
# shellcheck source=env.sh
. "$here/env.sh"
# The server takes its port only from $PORT (default 3001) and has no host
# option; listen-preload.cjs forces the bind to 127.0.0.1.
export PORT="$port"
exec "$NODE22" --require "$here/listen-preload.cjs" \
  "$here/node_modules/@modelcontextprotocol/server-everything/dist/index.js" "$mode"
