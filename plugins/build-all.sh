#!/usr/bin/env bash
# Build every plugin in every language into plugins/dist/ (what .ci/run calls):
#   build.sh         the Rust example plugins, reference-rust, passthrough-v0.2 and
#                    powers-cost
#   c/build.sh       reference-c, and the fixtures reference-c-v0.1.0 (contract 0.1.0
#                    as published), passthrough-c (0.1), passthrough-c-v0.2
#   zig/build.sh     reference-zig
#   python/build.sh  reference-python, cookbook-python (the cookbook's recipes)
#   js/build.sh      reference-js
# (The WAT plugins, reference.wat included, are built into sluice by build.rs.)
# Run plugins/setup.sh once first. Stops at the first failure. Works from any directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for script in build.sh c/build.sh zig/build.sh python/build.sh js/build.sh; do
    if [ ! -f "$here/$script" ]; then
        echo "==> plugins/$script: not present, skipped"
        continue
    fi
    echo "==> plugins/$script"
    start=$(date +%s%N)
    bash "$here/$script"
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    printf '==> plugins/%s took %d.%03d s\n' "$script" $((ms / 1000)) $((ms % 1000))
done
ls -l "$here"/dist/reference-*.wasm "$here"/dist/passthrough*.wasm
