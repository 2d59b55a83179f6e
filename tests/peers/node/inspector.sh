#!/usr/bin/env bash
# Usage: inspector.sh URL [inspector args...]
#        inspector.sh --config FILE --server NAME [inspector args...]
#   e.g. inspector.sh http://127.0.0.1:PORT/mcp --transport http --method tools/list
#        inspector.sh URL --transport http --method tools/call --tool-name echo --tool-arg message=hi
#        inspector.sh --config mcp.json --server sluice --method tools/list
#   The second form takes the server from an `mcpServers` file (a desktop client's
#   format), e.g. a stdio server's command and arguments.
# Runs the MCP Inspector v2 in CLI mode (one connect, one method, exit) under
# node 22. Defaults to `--format json`: success = one JSON line on stdout,
# {"result": <MCP result object>}; failure = one JSON line on stderr,
# {"error":{"code":"<slug>","message":...}} with exit code 1 usage, 3 auth
# required, 4 unreachable, 5 tool error / unknown tool. A later `--format
# text` in the args overrides (pretty-printed bare result).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "${1:-}" = "--config" ]; then
  target=(--config "${2:?}" --server "${4:?usage: inspector.sh --config FILE --server NAME ...}")
  shift 4
else
  target=("${1:?usage: inspector.sh URL [inspector args...]}")
  shift
fi
# shellcheck source=env.sh
. "$here/env.sh"
# The inspector keeps a catalog, client config and secrets under
# ~/.mcp-inspector; give each run a throwaway HOME so tests are hermetic and
# never touch (or depend on) the real one.
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT
# --stored-auth-only: never start an interactive OAuth flow (would wait for a
# browser); a 401 fails fast with exit 3 instead. stdin from /dev/null: no prompts.
rc=0
HOME="$home" "$NODE22" \
  "$here/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js" \
  --cli "${target[@]}" --format json --stored-auth-only "$@" </dev/null || rc=$?
exit "$rc"
