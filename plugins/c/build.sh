#!/usr/bin/env bash
# Build the C plugins into plugins/dist/:
#   reference-c.wasm          reference.c, the reference filter (world `plugin`, 0.2)
#   reference-c-v0.1.0.wasm   reference-v0.1.0.c, the same filter on 0.1.0 as first
#                             published (world `interceptor`, six-field stream-info):
#                             the compatibility fixture for loading 0.1 plugins
#   passthrough-c.wasm        passthrough.c (world `filter`, 0.1.0 revised)
#   passthrough-c-v0.2.wasm   passthrough-v0.2.c (world `plugin`, 0.2)
# The passthroughs measure the per-event cost of 0.1 against 0.2.
# Needs (plugins/setup.sh installs them): apt clang-19, lld-19, wasi-libc,
# libclang-rt-19-dev-wasm32; wasm-tools in plugins/.venv. The bindings in gen*/ are
# committed (regen.sh regenerates them). Works from any directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
plugins="$(dirname "$here")"
wasm_tools="$plugins/.venv/bin/wasm-tools"
. "$plugins/lib.sh"

command -v clang-19 >/dev/null || { echo "error: clang-19 not found -- run plugins/setup.sh" >&2; exit 1; }
command -v wasm-ld-19 >/dev/null || { echo "error: wasm-ld-19 (lld-19) not found -- run plugins/setup.sh" >&2; exit 1; }
[ -x "$wasm_tools" ] || { echo "error: $wasm_tools not found -- run plugins/setup.sh" >&2; exit 1; }

mkdir -p "$here/target" "$plugins/dist"

# build NAME SOURCE GEN WORLD: SOURCE with the bindings of WORLD in GEN/ into
# dist/NAME.wasm.
build() {
    local name="$1" source="$2" gen="$here/$3" world="$4"
    local out="$plugins/dist/$name.wasm" core="$here/target/$name.core.wasm" start ms
    start=$(date +%s%N)
    # Reactor (no main); no stdio, so the module imports nothing from WASI.
    clang-19 --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror \
        -I "$gen" -o "$core" \
        "$here/$source" "$gen/$world.c" "$gen/${world}_component_type.o" \
        -Wl,--strip-debug
    "$wasm_tools" component new "$core" -o "$out.tmp"
    publish_component "$out.tmp" "$out" "stdio pulls in WASI: use log" || exit 1
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    echo "==> $name: $(stat -c %s "$out") bytes in ${ms} ms -> ${out#"$plugins"/}"
}

build reference-c reference.c gen plugin
build reference-c-v0.1.0 reference-v0.1.0.c gen-v0.1.0 interceptor
build passthrough-c passthrough.c gen-v0.1.0-revised-filter filter
build passthrough-c-v0.2 passthrough-v0.2.c gen plugin

# The fixture must stay what a plugin built against the published 0.1.0 is: its
# stream-info has six fields (no protocol-version).
if "$wasm_tools" component wit "$plugins/dist/reference-c-v0.1.0.wasm" | grep -q 'protocol-version'; then
    echo "error: reference-c-v0.1.0.wasm has stream-info.protocol-version: not the published 0.1.0" >&2
    exit 1
fi
