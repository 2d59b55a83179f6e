#!/usr/bin/env bash
# Creates tests/peers/python/.venv with the pinned Python MCP SDK (see requirements.txt).
#
# Idempotent and cheap to call before every test run: once a venv was built from the
# current requirements.txt (recorded in a stamp file inside the venv) it exits at once.
# Any change to requirements.txt, or a venv that lost its `mcp`, triggers a reinstall.
# Set PYTHON to pick the interpreter (default python3; the SDK needs >= 3.10).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
requirements="$here/requirements.txt"
stamp="$venv/.sluice-requirements.stamp"

# The fast path only looks at files (importing the SDK costs about a second).
if [[ -f "$stamp" ]] && cmp -s "$stamp" "$requirements" && [[ -x "$venv/bin/python" ]] \
    && compgen -G "$venv/lib/python3*/site-packages/mcp/server/mcpserver/__init__.py" >/dev/null; then
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
# --no-deps is safe because requirements.txt pins the whole resolved set; it keeps pip
# from wandering to newer transitive versions than the ones the peers were tested with.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$requirements"
"$venv/bin/python" -c 'import mcp.server.mcpserver, mcp.client.streamable_http, mcp.client.sse'
cp "$requirements" "$stamp"
echo "python MCP peers ready in $venv" >&2
