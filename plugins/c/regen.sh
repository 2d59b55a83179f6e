#!/usr/bin/env bash
# Regenerate the C bindings with wit-bindgen-cli 0.63.0. They are committed so that
# building the C and Zig plugins needs no wit-bindgen (whose `cargo install` takes about
# 4.5 minutes on 2 cores); run this after a change to a .wit file or to this list. The
# CLI is installed once into plugins/.tools/ (crates.io, with Debian's cargo).
#
#   gen/                        ../../wit (sluice:plugin@0.2.0), world `plugin`:
#                               reference.c, passthrough-v0.2.c, ../zig/reference.zig
#   gen-v0.1.0/                 ../../wit/0.1.0 (0.1.0 as first published, six-field
#                               stream-info), world `interceptor`: reference-v0.1.0.c
#   gen-v0.1.0-revised-filter/  ../../wit/0.1.0-revised, world `filter`: passthrough.c
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
plugins="$(dirname "$here")"
wit="$plugins/../wit"
tools="$plugins/.tools"
wit_bindgen="$tools/bin/wit-bindgen"
if [ ! -x "$wit_bindgen" ] || [ "$("$wit_bindgen" --version | awk '{print $2}')" != 0.63.0 ]; then
    echo "==> cargo install wit-bindgen-cli@0.63.0 into $tools (about 4.5 minutes)"
    /usr/bin/cargo install --root "$tools" wit-bindgen-cli@0.63.0 --locked
fi
# gen(DIR WIT WORLD)
gen() {
    rm -rf "${here:?}/$1"
    "$wit_bindgen" c "$2" --world "$3" --out-dir "$here/$1"
    echo "==> regenerated c/$1 (world $3 of ${2#"$plugins/../"}): $(ls "$here/$1" | tr '\n' ' ')"
}
gen gen "$wit/plugin.wit" plugin
gen gen-v0.1.0 "$wit/0.1.0" interceptor
gen gen-v0.1.0-revised-filter "$wit/0.1.0-revised" filter
