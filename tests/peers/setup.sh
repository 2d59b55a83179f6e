#!/usr/bin/env bash
# Installs the real MCP peers the integration tests talk to: the Python SDK (server and
# client) in python/.venv, and the npm packages (server-everything, the Inspector CLI,
# the conformance suite, node 22) in node/node_modules. Idempotent and quick when both
# are already installed; .ci/run calls it, and so does the test suite when a peer is
# missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/python/setup.sh"
bash "$here/node/setup.sh" >/dev/null
