//! Plugins that ship inside the sluice binary.
//!
//! Each one is a hand-written WAT module from `plugins/wat/` that `build.rs` turns into
//! a WebAssembly component at build time (embedding the component metadata of the world
//! named on the file's first line, then validating the result). The demo plugin and the
//! test fixtures therefore need no guest toolchain: only the `wat` and `wit-component`
//! build dependencies.
//!
//! There is one `&[u8]` constant per file, named after it in upper case (`demo.wat` →
//! [`DEMO`]), and [`ALL`] lists every `(name, bytes)` pair:
//!
//! - `DEMO` (interceptor): the plugin behind `sluice demo`. Drops MCP progress
//!   notifications, stars out `sk-…` tokens, passes everything else.
//! - `PASS` (filter): always passes.
//! - `BATCHSHORT` (batch-filter): `on-event` passes, `on-events` answers too few
//!   verdicts (batch fallback tests).
//! - `TRAP` (filter): traps on every event.
//! - `LOOP` (filter): never returns from `on-event` (deadline tests).
//! - `GROW` (filter): grows its memory until it fails (memory-cap tests).
//! - `CRLF` (interceptor): returns an id and event type containing CR/LF
//!   (output-hygiene tests).
//! - `BADINIT` (interceptor): `init` refuses every configuration.
//! - `INITLOOP` (interceptor): `init` never returns (load-time deadline tests).
//! - `HUGE` (filter): answers `modify` with 8 MiB of data (event-size tests).
//! - `WASI_STDOUT`, `WASI_READ`: import WASI (stdout; a preopened directory) for the
//!   capability tests; they load only when granted a capability.
//!
//! `plugins/wat/README.md` describes each file and the canonical-ABI layout they use.

include!(concat!(env!("OUT_DIR"), "/wat_plugins.rs"));
