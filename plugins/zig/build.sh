#!/usr/bin/env bash
# Build the Zig reference filter (world `plugin` of sluice:plugin@0.2.0) into
# plugins/dist/reference-zig.wasm.
# Needs (plugins/setup.sh installs them): Zig 0.17 from PyPI `ziglang` in plugins/.venv,
# and wasm-tools there. Zig has no WIT bindgen: it reuses the committed C bindings in
# ../c/gen (see ../c/regen.sh); `translate-c` turns their header into Zig (Zig 0.17 has
# no @cImport). Zig bundles its own wasi-libc. Works from any directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
plugins="$(dirname "$here")"
python="$plugins/.venv/bin/python"
wasm_tools="$plugins/.venv/bin/wasm-tools"
. "$plugins/lib.sh"
gen="$plugins/c/gen"
out="$plugins/dist/reference-zig.wasm"
core="$here/target/reference.core.wasm"

[ -x "$wasm_tools" ] || { echo "error: $wasm_tools not found -- run plugins/setup.sh" >&2; exit 1; }
"$python" -m ziglang version >/dev/null 2>&1 || { echo "error: zig (PyPI ziglang) not in plugins/.venv -- run plugins/setup.sh" >&2; exit 1; }

mkdir -p "$here/target" "$plugins/dist"
start=$(date +%s%N)
"$python" -m ziglang translate-c -target wasm32-wasi -lc -I "$gen" "$gen/plugin.h" > "$here/target/plugin.zig"
# Reactor (no _start): without -mexec-model=reactor the module imports args/proc_exit.
# --stack 65536 (as clang's default): Zig's default 16 MiB stack alone exceeds sluice's
# default 16 MiB memory cap per instance.
(cd "$here" && "$python" -m ziglang build-exe reference.zig \
    "$gen/plugin.c" "$gen/plugin_component_type.o" -I "$gen" \
    -target wasm32-wasi -mexec-model=reactor -fno-entry -rdynamic -lc -O ReleaseSmall --stack 65536 \
    --cache-dir "$here/target/zig-cache" --global-cache-dir "$here/target/zig-global-cache" \
    -femit-bin="$core")
"$wasm_tools" component new "$core" -o "$out.tmp"
publish_component "$out.tmp" "$out" "build as a reactor, no std.debug.print" || exit 1
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "==> reference-zig: $(stat -c %s "$out") bytes in ${ms} ms -> ${out#"$plugins"/}"
