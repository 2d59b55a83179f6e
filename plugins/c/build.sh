#!/usr/bin/env bash
# Build the C reference filter into plugins/dist/reference-c.wasm.
# Needs (plugins/setup.sh installs them): apt clang-19, lld-19, wasi-libc,
# libclang-rt-19-dev-wasm32; wasm-tools in plugins/.venv. The bindings in gen/ are
# committed (regen.sh regenerates them). Works from any directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
plugins="$(dirname "$here")"
wasm_tools="$plugins/.venv/bin/wasm-tools"
. "$plugins/lib.sh"
out="$plugins/dist/reference-c.wasm"
core="$here/target/reference.core.wasm"

command -v clang-19 >/dev/null || { echo "error: clang-19 not found -- run plugins/setup.sh" >&2; exit 1; }
command -v wasm-ld-19 >/dev/null || { echo "error: wasm-ld-19 (lld-19) not found -- run plugins/setup.sh" >&2; exit 1; }
[ -x "$wasm_tools" ] || { echo "error: $wasm_tools not found -- run plugins/setup.sh" >&2; exit 1; }

mkdir -p "$here/target" "$plugins/dist"
start=$(date +%s%N)
# Reactor (no main); no stdio, so the module imports nothing from WASI.
clang-19 --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror \
    -I "$here/gen" -o "$core" \
    "$here/reference.c" "$here/gen/interceptor.c" "$here/gen/interceptor_component_type.o" \
    -Wl,--strip-debug
"$wasm_tools" component new "$core" -o "$out.tmp"
publish_component "$out.tmp" "$out" "stdio pulls in WASI: use log" || exit 1
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "==> reference-c: $(stat -c %s "$out") bytes in ${ms} ms -> ${out#"$plugins"/}"
