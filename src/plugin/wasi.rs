//! WASI for the plugins that are granted a capability, and only for them.
//!
//! By default a plugin is linked against the sluice contract alone: a component that
//! imports any `wasi:*` interface is refused at load with [`PluginError::WasiNotGranted`],
//! which names the imports and the configuration that would grant them. A plugin whose
//! configuration grants a capability (`stdio`, `read_dir`) is linked with a second
//! linker that also has all of WASI preview 2 (`wasmtime_wasi::p2::add_to_linker_sync`),
//! and each of its instances gets a [`WasiCtx`] holding exactly the grants:
//!
//! - `stdio`: stdout and stderr are the proxy's own (`inherit_stdout`/`inherit_stderr`);
//!   without it they are empty sinks;
//! - `read_dir`: that host directory is preopened read-only (directory and files) as
//!   [`GUEST_DIR`].
//!
//! Nothing else: no stdin, environment, arguments, network (TCP, UDP and name lookup
//! are off, and every socket address is refused); clocks and random numbers are there
//! because WASI p2 always provides them. The common path pays nothing for any of this:
//! the WASI linker is built the first time a plugin with a grant is loaded, and the
//! store of an ungranted plugin carries no `WasiCtx` or `ResourceTable`.
//!
//! wasmtime-wasi's synchronous bindings block on a future with
//! `tokio::runtime::Handle::block_on`, which panics on a thread that is driving async
//! tasks: exactly where the proxy calls plugins (while polling a response body). Calls
//! into a WASI-linked instance (instantiation and `init` included) therefore go
//! through [`outside_async`]: `block_in_place` on a multi-thread runtime (nearly
//! free), a scoped thread outside the runtime on a current-thread one. Ungranted
//! plugins never take that path.

use std::fmt::Write as _;

use wasmtime::Engine;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings;
use super::capabilities::Capabilities;
use super::error::PluginError;
use super::state::PluginState;

/// Where a granted `read_dir` appears inside the plugin.
pub const GUEST_DIR: &str = "/data";

/// A granted `read_dir` that cannot be opened (missing, not a directory, no access).
#[derive(Debug, thiserror::Error)]
#[error("cannot open read_dir {}: {source}", dir.display())]
pub struct ReadDirError {
    dir: std::path::PathBuf,
    source: wasmtime::Error,
}

/// The WASI half of a granted plugin's store data.
pub(crate) struct WasiState {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiState {
    /// A context with exactly the grants in `caps`. Fails when the `read_dir` directory
    /// cannot be opened.
    pub(crate) fn new(caps: &Capabilities) -> Result<Self, ReadDirError> {
        let mut builder = WasiCtxBuilder::new();
        // The call already runs on its own thread (see `outside_async`): file
        // operations may block it rather than bounce through a thread pool.
        builder
            .allow_blocking_current_thread(true)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if caps.stdio {
            builder.inherit_stdout().inherit_stderr();
        }
        if let Some(dir) = &caps.read_dir {
            builder
                .preopened_dir(dir, GUEST_DIR, FsPerms::ReadOnly)
                .map_err(|source| ReadDirError {
                    dir: dir.clone(),
                    source,
                })?;
        }
        Ok(Self {
            ctx: builder.build(),
            table: ResourceTable::new(),
        })
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        // Only instances of plugins linked with WASI can reach this, and `Plugin`
        // gives each of them a `WasiState` (see `Plugin::instantiate`).
        let wasi = self
            .wasi
            .as_deref_mut()
            .expect("a WASI-linked plugin instance always has a WasiState");
        WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut wasi.table,
        }
    }
}

/// The linker of granted plugins: the sluice host functions and WASI preview 2.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<PluginState>, PluginError> {
    let mut linker = Linker::new(engine);
    bindings::add_host_to_linker(&mut linker)
        .and_then(|()| wasmtime_wasi::p2::add_to_linker_sync(&mut linker))
        .map_err(|e| PluginError::Engine(e.context("cannot link WASI")))?;
    Ok(linker)
}

/// The `wasi:*` imports of `component` (e.g. `wasi:cli/stdout@0.2.0`), in order.
pub(crate) fn imports(component: &Component, engine: &Engine) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("wasi:"))
        .map(str::to_string)
        .collect()
}

/// The grants as the load log line says them:
/// `stdout/stderr, read-only dir /srv/data as /data`.
pub(crate) fn describe(caps: &Capabilities) -> String {
    let mut out = String::new();
    if caps.stdio {
        out.push_str("stdout/stderr");
    }
    if let Some(dir) = &caps.read_dir {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let _ = write!(out, "read-only dir {} as {GUEST_DIR}", dir.display());
    }
    if out.is_empty() && caps.wasi {
        out.push_str("empty WASI context (clocks and random only)");
    }
    out
}

/// Runs `f` where wasmtime-wasi's synchronous bindings may block:
///
/// - outside any tokio runtime: right here;
/// - on a multi-thread runtime (sluice's own): here too, inside
///   `tokio::task::block_in_place`, which hands this worker's other tasks to another
///   thread and allows `Handle::block_on` (cheap next to a host call);
/// - on a current-thread runtime (`#[tokio::test]`, embedders), where
///   `block_in_place` panics: on a scoped thread outside the runtime (a thread start
///   per call: slow, and only for embedders and tests).
///
/// A panic in `f` is propagated.
pub(crate) fn outside_async<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match tokio::runtime::Handle::try_current() {
        Err(_) => return f(),
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            return tokio::task::block_in_place(f);
        }
        Ok(_) => {}
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("sluice-wasi-call".into())
            .spawn_scoped(scope, f)
            .map(|thread| thread.join())
    })
    .unwrap_or_else(|e| panic!("cannot start a thread for a WASI plugin call: {e}"))
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_described_for_the_load_log() {
        let stdio = Capabilities {
            stdio: true,
            read_dir: None,
            wasi: false,
        };
        assert_eq!(describe(&stdio), "stdout/stderr");
        let both = Capabilities {
            stdio: true,
            read_dir: Some("/srv/data".into()),
            wasi: false,
        };
        assert_eq!(
            describe(&both),
            "stdout/stderr, read-only dir /srv/data as /data"
        );
    }

    #[test]
    fn a_missing_read_dir_is_an_error_that_names_it() {
        let caps = Capabilities {
            stdio: false,
            read_dir: Some("/nonexistent/sluice-data".into()),
            wasi: false,
        };
        let err = WasiState::new(&caps).err().expect("cannot open");
        assert!(
            err.to_string().contains("/nonexistent/sluice-data"),
            "{err}"
        );
    }

    #[test]
    fn calls_leave_the_async_context_only_when_in_one() {
        let here = std::thread::current().id();
        assert_eq!(outside_async(|| std::thread::current().id()), here);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (inside, elsewhere) = runtime.block_on(async {
            let inside = std::thread::current().id();
            let elsewhere = outside_async(|| {
                assert!(tokio::runtime::Handle::try_current().is_err());
                std::thread::current().id()
            });
            (inside, elsewhere)
        });
        assert_ne!(inside, elsewhere);
    }

    #[test]
    fn a_multi_thread_worker_may_block_on_inside() {
        // What wasmtime-wasi's sync bindings do on the thread that calls the plugin.
        let block_on = || match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle.block_on(async { 42 }),
            Err(_) => 0,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let got = runtime.block_on(async move {
            tokio::spawn(async move { outside_async(block_on) })
                .await
                .unwrap()
        });
        assert_eq!(got, 42);
    }
}
