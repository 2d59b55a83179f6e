#!/usr/bin/env bash
# Build every example plugin in plugins/rust/ into a WebAssembly component:
# plugins/dist/<name>.wasm. Run plugins/setup.sh once first.
#
# Toolchain (installed by setup.sh): Debian's rustc-web/cargo-web with rust-web-src, which
# build std from source for wasm32-unknown-unknown (-Zbuild-std, no rustup target), and
# wasm-tools from plugins/.venv, which wraps each core module into a component.
# Usage: plugins/build.sh [--debug]   (from any directory)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
workspace="$here/rust"
dist="$here/dist"
target_dir="$workspace/target"
triple=wasm32-unknown-unknown
wasm_tools="$here/.venv/bin/wasm-tools"
. "$here/lib.sh"

profile=release
case "${1:-}" in
    "") ;;
    --debug) profile=debug ;;
    *) echo "usage: $0 [--debug]" >&2; exit 2 ;;
esac

die() { echo "error: $*" >&2; exit 1; }
missing() { die "$1 -- run plugins/setup.sh (as root) to install the plugin toolchain"; }

[ -x /usr/bin/rustc ] || missing "/usr/bin/rustc (Debian rustc-web) not found"
[ -x /usr/bin/cargo ] || missing "/usr/bin/cargo (Debian cargo-web) not found"
[ -f /usr/lib/rustlib/src/rust/library/Cargo.lock ] || missing "std sources (Debian rust-web-src) not found"
[ -e "$(readlink -f /usr/bin/rust-lld 2>/dev/null || echo /nonexistent)" ] || missing "the wasm linker /usr/bin/rust-lld (needs lld-22) not found"
[ -x "$wasm_tools" ] || missing "$wasm_tools not found"

# Debian's toolchain, not a rustup one that may be first on PATH.
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$target_dir"
unset RUSTFLAGS CARGO_BUILD_TARGET CARGO_ENCODED_RUSTFLAGS

# Plugins = the workspace members (every directory under rust/ with a Cargo.toml).
plugins=()
# A member that is not a cdylib (the SDK crate sluice-plugin) is a library, not a plugin.
for manifest in "$workspace"/*/Cargo.toml; do
    grep -q 'crate-type *= *\["cdylib"\]' "$manifest" || continue
    plugins+=("$(basename "$(dirname "$manifest")")")
done
[ "${#plugins[@]}" -gt 0 ] || die "no plugins found under $workspace"

cargo_args=(build --manifest-path "$workspace/Cargo.toml" --workspace --target "$triple" -Zbuild-std=std,panic_abort)
[ "$profile" = release ] && cargo_args+=(--release)

echo "==> /usr/bin/cargo ${cargo_args[*]}"
start=$(date +%s%N)
/usr/bin/cargo "${cargo_args[@]}"
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
printf '==> cargo build took %d.%03d s\n' $((elapsed_ms / 1000)) $((elapsed_ms % 1000))

mkdir -p "$dist"
failed=0
printf '\n%-26s %10s %10s  %s\n' plugin "core (B)" "component" file
for name in "${plugins[@]}"; do
    core="$target_dir/$triple/$profile/${name//-/_}.wasm"
    # The reference filter exists in several languages: dist/reference-<language>.wasm.
    # passthrough-v2 is passthrough on contract 0.2: dist/passthrough-v0.2.wasm.
    out_name="$name"
    case "$name" in
        reference) out_name=reference-rust ;;
        passthrough-v2) out_name=passthrough-v0.2 ;;
    esac
    out="$dist/$out_name.wasm"
    [ -f "$core" ] || die "$name: cargo produced no $core"
    "$wasm_tools" component new "$core" -o "$out.tmp"
    publish_component "$out.tmp" "$out" "plugins must need no WASI" || { failed=1; continue; }
    printf '%-26s %10d %10d  %s\n' "$out_name" "$(stat -c %s "$core")" "$(stat -c %s "$out")" "${out#"$here"/}"
done
[ "$failed" -eq 0 ] || die "some plugins failed the checks above"
echo "==> ${#plugins[@]} plugins written to $dist"
