#!/usr/bin/env bash
# Build the reference filter in JavaScript (plugin.js, world `plugin` of
# sluice:plugin@0.2.0) into plugins/dist/reference-js.wasm.
#
# Toolchain: componentize-js 0.23.0 from npm (plugins/js/node_modules, installed by
# plugins/setup.sh or `npm ci` here) and wasm-tools from plugins/.venv.
# The componentize-js CLI is called directly: `jco componentize` 1.35.0 fails on any
# --wit path ("failed to get path metadata"). `--disable stdio random clocks http
# fetch-event` removes every WASI import, so the component imports only sluice:plugin
# interfaces, which is all sluice links.
# Usage: plugins/js/build.sh   (from any directory)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
plugins="$(dirname "$here")"
dist="$plugins/dist"
out="$dist/reference-js.wasm"
cli="$here/node_modules/@bytecodealliance/componentize-js/src/cli.js"
wasm_tools="$plugins/.venv/bin/wasm-tools"
. "$plugins/lib.sh"

die() { echo "error: $*" >&2; exit 1; }
command -v node >/dev/null || die "node not found -- install Node.js 20 (apt-get install nodejs npm)"
[ -f "$cli" ] || die "$cli not found -- run plugins/setup.sh (or: cd plugins/js && npm ci)"
[ -x "$wasm_tools" ] || die "$wasm_tools not found -- run plugins/setup.sh"

mkdir -p "$dist"
cd "$here"
start=$(date +%s%N)
# Write to a temporary name first: a running sluice watches dist/ and would otherwise
# try to load a half-written file.
node "$cli" plugin.js --wit "$plugins/../wit" --world-name plugin \
    --disable stdio random clocks http fetch-event -o "$out.tmp"
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))

publish_component "$out.tmp" "$out" "check the --disable list" || exit 1
printf '==> %s: %d bytes, componentize-js took %d.%03d s\n' \
    "${out#"$plugins"/}" "$(stat -c %s "$out")" $((elapsed_ms / 1000)) $((elapsed_ms % 1000))
