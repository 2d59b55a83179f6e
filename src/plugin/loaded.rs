//! A plugin compiled, checked against the contract, and ready to be instantiated.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, ComponentExportIndex, Func, InstancePre, TypedFunc};
use wasmtime::{Store, Trap};

use super::bindings::{SseEvent, StreamInfo, Verdict};
use super::error::PluginError;
use super::runtime::Runtime;
use super::state::PluginState;
use super::stats::{FailureKind, PluginStats, StatsSnapshot};

/// What the proxy does with an event when a plugin fails on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Pass the event on as if the plugin had answered `pass` (availability first).
    #[default]
    Open,
    /// Drop the event as if the plugin had answered `drop` (safety first: a broken
    /// redactor must not leak what it was meant to hide).
    Closed,
}

/// The sandbox of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Wall-clock budget of one call (`init`, `on-event`, ...), enforced by epoch
    /// interruption.
    pub deadline: Duration,
    /// Largest linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// What happens to an event the plugin failed on.
    pub failure: FailurePolicy,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(10),
            memory_bytes: 16 << 20,
            failure: FailurePolicy::Open,
        }
    }
}

/// Where a plugin's bytes come from.
#[derive(Debug, Clone)]
pub enum PluginSource {
    /// A `.wasm` component on disk.
    File(PathBuf),
    /// A component built into the binary (the demo plugin, test fixtures).
    Bytes(&'static [u8]),
}

/// Everything needed to load one plugin.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Name used in logs, errors and JSON-RPC errors sent to clients.
    pub name: String,
    /// The component.
    pub source: PluginSource,
    /// Handed to `init` on every new instance.
    pub config: String,
    /// The sandbox.
    pub limits: PluginLimits,
}

/// Which world of `sluice:plugin@0.1.0` a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// `on-event` only; sees events going to the client.
    Filter,
    /// `init`, `on-stream-start`, `on-event`, `on-stream-end`; sees both directions.
    Interceptor,
}

impl World {
    /// The WIT name.
    pub fn as_str(self) -> &'static str {
        match self {
            World::Filter => "filter",
            World::Interceptor => "interceptor",
        }
    }
}

/// Export indices resolved once per component so that instances skip name lookups.
struct Exports {
    on_event: ComponentExportIndex,
    lifecycle: Option<Lifecycle>,
}

struct Lifecycle {
    init: ComponentExportIndex,
    start: ComponentExportIndex,
    end: ComponentExportIndex,
}

/// A compiled plugin. Cheap to share: every stream instantiates it afresh.
pub struct Plugin {
    name: Arc<str>,
    world: World,
    pre: InstancePre<PluginState>,
    exports: Exports,
    config: String,
    limits: PluginLimits,
    deadline_ticks: u64,
    stats: Arc<PluginStats>,
    compile_time: Duration,
    _runtime: Arc<Runtime>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("world", &self.world)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Compiles the component, checks it implements `filter` or `interceptor` and that
    /// the host can satisfy its imports, then instantiates it once and runs `init` with
    /// the configuration, so that a bad plugin or a bad configuration is refused at load
    /// time rather than on the first stream.
    pub fn load(runtime: &Arc<Runtime>, spec: PluginSpec) -> Result<Self, PluginError> {
        let name = spec.name.clone();
        let bytes: std::borrow::Cow<'static, [u8]> = match &spec.source {
            PluginSource::File(path) => std::fs::read(path)
                .map_err(|source| PluginError::Read {
                    name: name.clone(),
                    path: path.clone(),
                    source,
                })?
                .into(),
            PluginSource::Bytes(bytes) => (*bytes).into(),
        };
        if is_core_module(&bytes) {
            return Err(PluginError::CoreModule { name });
        }
        let started = Instant::now();
        let component =
            Component::new(runtime.engine(), &bytes).map_err(|e| PluginError::Compile {
                name: name.clone(),
                reason: format!("{e:#}"),
            })?;
        let compile_time = started.elapsed();
        let exports = resolve_exports(&component, &name)?;
        let pre =
            runtime
                .linker()
                .instantiate_pre(&component)
                .map_err(|e| PluginError::Imports {
                    name: name.clone(),
                    reason: format!("{e:#}"),
                })?;
        let world = if exports.lifecycle.is_some() {
            World::Interceptor
        } else {
            World::Filter
        };
        let plugin = Self {
            name: name.clone().into(),
            world,
            pre,
            exports,
            config: spec.config,
            limits: spec.limits,
            deadline_ticks: Runtime::ticks(spec.limits.deadline),
            stats: Arc::new(PluginStats::default()),
            compile_time,
            _runtime: runtime.clone(),
        };
        plugin.instantiate(0).map_err(|failure| PluginError::Init {
            name,
            reason: failure.message,
        })?;
        tracing::info!(
            plugin = %plugin.name,
            world = world.as_str(),
            compile_ms = compile_time.as_millis() as u64,
            "plugin loaded"
        );
        Ok(plugin)
    }

    /// The name used in logs and in errors sent to clients.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// The world the component implements.
    pub fn world(&self) -> World {
        self.world
    }

    /// The sandbox the plugin runs in.
    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// How long compiling the component took.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// The plugin's counters across all streams.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    pub(crate) fn counters(&self) -> &PluginStats {
        &self.stats
    }

    /// Creates a fresh instance for one stream and runs `init` on it.
    pub(crate) fn instantiate(&self, stream_id: u64) -> Result<Instance, CallFailure> {
        self.stats.instance();
        let state = PluginState::new(self.name.clone(), stream_id, self.limits.memory_bytes);
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| state);
        store.set_epoch_deadline(self.deadline_ticks);
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| CallFailure::from_error(FailureKind::Instantiate, &e, store.data()))?;
        let contract = |e: wasmtime::Error| CallFailure {
            kind: FailureKind::Instantiate,
            message: format!("export does not match sluice:plugin@0.1.0: {e:#}"),
        };
        let on_event = *instance
            .get_typed_func::<(&SseEvent,), (Verdict,)>(&mut store, &self.exports.on_event)
            .map_err(contract)?
            .func();
        let mut lifecycle = None;
        if let Some(exports) = &self.exports.lifecycle {
            let init = instance
                .get_typed_func::<(&str,), (Result<(), String>,)>(&mut store, &exports.init)
                .map_err(contract)?;
            let start = *instance
                .get_typed_func::<(&StreamInfo,), ()>(&mut store, &exports.start)
                .map_err(contract)?
                .func();
            let end = *instance
                .get_typed_func::<(), ()>(&mut store, &exports.end)
                .map_err(contract)?
                .func();
            store.set_epoch_deadline(self.deadline_ticks);
            store.data_mut().memory_denied = false;
            match init.call(&mut store, (self.config.as_str(),)) {
                Ok((Ok(()),)) => {}
                Ok((Err(reason),)) => {
                    return Err(CallFailure {
                        kind: FailureKind::Instantiate,
                        message: format!("init refused the configuration: {reason}"),
                    });
                }
                Err(e) => {
                    let failure = CallFailure::from_call(&e, store.data());
                    return Err(CallFailure {
                        kind: FailureKind::Instantiate,
                        message: format!(
                            "init failed ({}): {}",
                            failure.kind.as_str(),
                            failure.message
                        ),
                    });
                }
            }
            lifecycle = Some(InstanceLifecycle { start, end });
        }
        Ok(Instance {
            store,
            on_event,
            lifecycle,
            deadline_ticks: self.deadline_ticks,
        })
    }
}

/// One live instance of a plugin, owned by one stream.
pub(crate) struct Instance {
    store: Store<PluginState>,
    on_event: Func,
    lifecycle: Option<InstanceLifecycle>,
    deadline_ticks: u64,
}

struct InstanceLifecycle {
    start: Func,
    end: Func,
}

/// A failed call, classified for the failure policy, logs and metrics.
#[derive(Debug, Clone)]
pub(crate) struct CallFailure {
    pub(crate) kind: FailureKind,
    pub(crate) message: String,
}

impl CallFailure {
    fn from_call(err: &wasmtime::Error, state: &PluginState) -> Self {
        let kind = if state.memory_denied {
            FailureKind::OutOfMemory
        } else if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            FailureKind::Deadline
        } else {
            FailureKind::Trap
        };
        Self::from_error(kind, err, state)
    }

    fn from_error(kind: FailureKind, err: &wasmtime::Error, _state: &PluginState) -> Self {
        let message = match kind {
            FailureKind::Deadline => "call ran past its deadline and was interrupted".to_string(),
            FailureKind::OutOfMemory => format!("memory cap reached: {err:#}"),
            _ => format!("{err:#}"),
        };
        Self { kind, message }
    }
}

impl Instance {
    fn arm(&mut self) {
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.store.data_mut().memory_denied = false;
    }

    /// Calls `on-event`.
    pub(crate) fn on_event(&mut self, event: &SseEvent) -> Result<Verdict, CallFailure> {
        self.arm();
        // SAFETY: `on_event` was obtained through `get_typed_func::<(&SseEvent,),
        // (Verdict,)>` when the instance was created, which type-checked exactly these
        // parameter and result types (lifetimes aside, which do not exist at the
        // component level). Skipping the per-call check keeps a call near a microsecond.
        let typed = unsafe { TypedFunc::<(&SseEvent,), (Verdict,)>::new_unchecked(self.on_event) };
        match typed.call(&mut self.store, (event,)) {
            Ok((verdict,)) => Ok(verdict),
            Err(e) => Err(CallFailure::from_call(&e, self.store.data())),
        }
    }

    /// Calls `on-stream-start` (interceptors only).
    pub(crate) fn on_stream_start(&mut self, info: &StreamInfo) -> Result<(), CallFailure> {
        let Some(lifecycle) = &self.lifecycle else {
            return Ok(());
        };
        let start = lifecycle.start;
        self.arm();
        let typed = start
            .typed::<(&StreamInfo,), ()>(&self.store)
            .map_err(|e| CallFailure::from_error(FailureKind::Trap, &e, self.store.data()))?;
        typed
            .call(&mut self.store, (info,))
            .map_err(|e| CallFailure::from_call(&e, self.store.data()))
    }

    /// Calls `on-stream-end` (interceptors only).
    pub(crate) fn on_stream_end(&mut self) -> Result<(), CallFailure> {
        let Some(lifecycle) = &self.lifecycle else {
            return Ok(());
        };
        let end = lifecycle.end;
        self.arm();
        let typed = end
            .typed::<(), ()>(&self.store)
            .map_err(|e| CallFailure::from_error(FailureKind::Trap, &e, self.store.data()))?;
        typed
            .call(&mut self.store, ())
            .map_err(|e| CallFailure::from_call(&e, self.store.data()))
    }
}

/// A core module starts with the magic number and version 1; a component has a
/// different version/layer field.
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

fn resolve_exports(component: &Component, name: &str) -> Result<Exports, PluginError> {
    let contract = |reason: String| PluginError::Contract {
        name: name.to_string(),
        reason,
    };
    let on_event = component
        .get_export_index(None, "on-event")
        .ok_or_else(|| {
            contract(
                "does not export `on-event`: not a sluice:plugin@0.1.0 filter or interceptor"
                    .to_string(),
            )
        })?;
    let init = component.get_export_index(None, "init");
    let start = component.get_export_index(None, "on-stream-start");
    let end = component.get_export_index(None, "on-stream-end");
    let lifecycle = match (init, start, end) {
        (Some(init), Some(start), Some(end)) => Some(Lifecycle { init, start, end }),
        (None, None, None) => None,
        (init, start, end) => {
            let missing: Vec<&str> = [
                ("init", init.is_none()),
                ("on-stream-start", start.is_none()),
                ("on-stream-end", end.is_none()),
            ]
            .into_iter()
            .filter_map(|(n, missing)| missing.then_some(n))
            .collect();
            return Err(contract(format!(
                "exports part of the interceptor world but not {}: export all of init, \
                 on-stream-start and on-stream-end, or none (filter world)",
                missing.join(", ")
            )));
        }
    };
    Ok(Exports {
        on_event,
        lifecycle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_modules_are_told_apart_from_components() {
        assert!(is_core_module(b"\0asm\x01\0\0\0"));
        assert!(!is_core_module(b"\0asm\x0d\0\x01\0"));
        assert!(!is_core_module(b"\0as"));
    }
}
