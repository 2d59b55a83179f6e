//! Why loading a plugin failed.

use std::path::PathBuf;

use super::loaded::{CallFailure, ContractError};
use super::wasi::ReadDirError;

/// A plugin that cannot be loaded. Every variant names the plugin, because the operator
/// may have listed several.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read.
    #[error("plugin {name}: cannot read {}: {source}", path.display())]
    Read {
        /// The plugin's name.
        name: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The bytes are a core wasm module, not a component.
    #[error(
        "plugin {name}: this is a core WebAssembly module, not a component; \
         wrap it with `wasm-tools component new` (see plugins/README.md)"
    )]
    CoreModule {
        /// The plugin's name.
        name: String,
    },
    /// wasmtime rejected the bytes.
    #[error("plugin {name}: not a valid component: {source}")]
    Compile {
        /// The plugin's name.
        name: String,
        /// The cause.
        source: wasmtime::Error,
    },
    /// The component does not implement `sluice:plugin@0.1.0` `filter` or `interceptor`.
    #[error("plugin {name}: {problem}")]
    Contract {
        /// The plugin's name.
        name: String,
        /// What the plugin gets wrong.
        problem: ContractError,
    },
    /// The component imports something the host does not provide.
    #[error("plugin {name}: needs imports the host does not grant: {source}")]
    Imports {
        /// The plugin's name.
        name: String,
        /// The cause.
        source: wasmtime::Error,
    },
    /// The component imports WASI but its configuration grants no capability: sluice
    /// links no WASI by default, so that a plugin reaches nothing it was not given.
    #[error(
        "plugin {name}: imports WASI ({}), which it was not granted; sluice gives a \
         plugin no WASI unless its [[plugin]] entry in the config file grants a \
         capability: `capabilities = {{ stdio = true }}` (stdout/stderr) or \
         `capabilities = {{ read_dir = \"DIR\" }}` (DIR readable at /data) or \
         `capabilities = {{ wasi = true }}` (an empty WASI context)",
        imports.join(", ")
    )]
    WasiNotGranted {
        /// The plugin's name.
        name: String,
        /// The imports it needs.
        imports: Vec<String>,
    },
    /// A granted capability cannot be provided (e.g. the `read_dir` is missing).
    #[error("plugin {name}: capability refused: {source}")]
    Capability {
        /// The plugin's name.
        name: String,
        /// The cause.
        source: ReadDirError,
    },
    /// Instantiation or `init` failed.
    #[error("plugin {name}: {source}")]
    Init {
        /// The plugin's name.
        name: String,
        /// The cause.
        source: CallFailure,
    },
    /// The engine could not be created, or the host's functions (or WASI) linked.
    #[error("cannot create the wasm engine: {0}")]
    Engine(#[source] wasmtime::Error),
    /// The thread that ticks the engine's epochs (the plugins' deadlines) could not be
    /// started.
    #[error("cannot create the wasm engine: cannot start the epoch thread: {0}")]
    EpochThread(#[source] std::io::Error),
    /// The compile-cache directory cannot be created or made private (mode 0700).
    #[error("compile cache {}: {source}", dir.display())]
    Cache {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}
