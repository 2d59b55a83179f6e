#!/usr/bin/env bash
# Build the Python plugins (world `plugin` of sluice:plugin@0.2.0) into plugins/dist/:
#   reference-python.wasm   app.py, the reference filter
#   cookbook-python.wasm    cookbook/cookbook.py, the cookbook's recipes in one
#                           component (the config names the recipe)
#
# Toolchain: componentize-py 0.25.1 in plugins/.venv (installed by plugins/setup.sh).
# `--stub-wasi` replaces every WASI import with a stub, so the component imports only
# sluice:plugin interfaces (log, context, state, metrics, interest, types), which is
# all sluice links.
# Usage: plugins/python/build.sh [reference|cookbook]   (from any directory; both
# without an argument)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
plugins="$(dirname "$here")"
venv="$plugins/.venv"
dist="$plugins/dist"
componentize_py="$venv/bin/componentize-py"
wasm_tools="$venv/bin/wasm-tools"
. "$plugins/lib.sh"

die() { echo "error: $*" >&2; exit 1; }
[ -x "$componentize_py" ] || die "$componentize_py not found -- run plugins/setup.sh"
[ -x "$wasm_tools" ] || die "$wasm_tools not found -- run plugins/setup.sh"
mkdir -p "$dist"

# build DIR MODULE NAME: the Python module MODULE in DIR into dist/NAME.wasm.
build() {
    local dir="$1" module="$2" out="$dist/$3.wasm" start elapsed_ms
    start=$(date +%s%N)
    # Writes into a temporary name first: a running sluice watches dist/ and would
    # otherwise try to load a half-written file.
    (cd "$dir" && "$componentize_py" --wit-path "$plugins/../wit" --world plugin \
        componentize --stub-wasi "$module" -o "$out.tmp")
    elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
    publish_component "$out.tmp" "$out" "was --stub-wasi dropped?" || exit 1
    printf '==> %s: %d bytes, componentize-py took %d.%03d s\n' \
        "${out#"$plugins"/}" "$(stat -c %s "$out")" $((elapsed_ms / 1000)) $((elapsed_ms % 1000))
}

case "${1:-all}" in
    reference) build "$here" app reference-python ;;
    cookbook) build "$here/cookbook" cookbook cookbook-python ;;
    all)
        build "$here" app reference-python
        build "$here/cookbook" cookbook cookbook-python
        ;;
    *) die "usage: $0 [reference|cookbook]" ;;
esac
