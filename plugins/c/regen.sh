#!/usr/bin/env bash
# Regenerate the C bindings in gen/ from ../../wit (world `interceptor`) with
# wit-bindgen-cli 0.63.0. They are committed so that building the C and Zig reference
# filters needs no wit-bindgen (whose `cargo install` takes about 4.5 minutes on 2 cores);
# run this after any change to wit/plugin.wit. The CLI is installed once into
# plugins/.tools/ (crates.io, with Debian's cargo).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
plugins="$(dirname "$here")"
tools="$plugins/.tools"
wit_bindgen="$tools/bin/wit-bindgen"
if [ ! -x "$wit_bindgen" ] || [ "$("$wit_bindgen" --version | awk '{print $2}')" != 0.63.0 ]; then
    echo "==> cargo install wit-bindgen-cli@0.63.0 into $tools (about 4.5 minutes)"
    /usr/bin/cargo install --root "$tools" wit-bindgen-cli@0.63.0 --locked
fi
rm -rf "$here/gen"
"$wit_bindgen" c "$plugins/../wit/0.1.0-revised" --world interceptor --out-dir "$here/gen"
echo "==> regenerated $here/gen: $(ls "$here/gen" | tr '\n' ' ')"
