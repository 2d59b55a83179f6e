#!/usr/bin/env bash
# Build the cookbook's Python recipes (cookbook.py, world `plugin` of sluice:plugin@0.2.0)
# into plugins/dist/cookbook-python.wasm: one component for every recipe, the config
# names the recipe ({"recipe": "refuse-tool", ...}). Called by plugins/build-all.sh.
#
# Toolchain: componentize-py in plugins/.venv (plugins/setup.sh). `--stub-wasi` as for
# the reference filter (../build.sh): the component imports no WASI.
# Usage: plugins/python/cookbook/build.sh   (from any directory)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
plugins="$(dirname "$(dirname "$here")")"
venv="$plugins/.venv"
dist="$plugins/dist"
out="$dist/cookbook-python.wasm"
componentize_py="$venv/bin/componentize-py"
wasm_tools="$venv/bin/wasm-tools"
. "$plugins/lib.sh"

die() { echo "error: $*" >&2; exit 1; }
[ -x "$componentize_py" ] || die "$componentize_py not found -- run plugins/setup.sh"
[ -x "$wasm_tools" ] || die "$wasm_tools not found -- run plugins/setup.sh"

mkdir -p "$dist"
cd "$here"
start=$(date +%s%N)
# A temporary name first: a running sluice watches dist/ and must never load a
# half-written file.
"$componentize_py" --wit-path "$plugins/../wit" --world plugin \
    componentize --stub-wasi cookbook -o "$out.tmp"
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))

publish_component "$out.tmp" "$out" "was --stub-wasi dropped?" || exit 1
printf '==> %s: %d bytes, componentize-py took %d.%03d s\n' \
    "${out#"$plugins"/}" "$(stat -c %s "$out")" $((elapsed_ms / 1000)) $((elapsed_ms % 1000))
