//! The one wasmtime engine of the process, its clock, and the linker every plugin sees.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine};

use super::bindings;
use super::cache::CompileCache;
use super::error::PluginError;
use super::state::PluginState;
use super::wasi;

/// How often the engine's epoch advances. Call deadlines are counted in these ticks, so
/// a deadline is honoured to within one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The engine, its epoch clock and the linker. Created once per process and shared by
/// every plugin and every chain (compiled code is only valid for the engine that made
/// it).
pub struct Runtime {
    engine: Engine,
    linker: Linker<PluginState>,
    /// See [`Runtime::wasi_linker`].
    wasi_linker: OnceLock<Linker<PluginState>>,
    ticker: Option<EpochTicker>,
    cache: Option<CompileCache>,
}

impl Runtime {
    /// Creates the engine with epoch interruption on and a linker that offers only the
    /// `sluice:plugin/host` functions: no WASI capability at all. No compile cache:
    /// every load compiles (tests, the demo, `sluice plugin check`).
    pub fn new() -> Result<Arc<Self>, PluginError> {
        Self::with_cache(None)
    }

    /// Like [`Runtime::new`], with plugins compiled through `cache` when there is one,
    /// so that a restart or a reload of an unchanged plugin skips cranelift.
    pub fn with_cache(cache: Option<CompileCache>) -> Result<Arc<Self>, PluginError> {
        Self::build(cache, None)
    }

    /// Like [`Runtime::with_cache`], on an engine whose instances come from wasmtime's
    /// pooling allocator (pre-reserved slots, copy-on-write memory images) instead of
    /// being mapped on demand. Not sluice's default: only `examples/plugin_figures.rs`
    /// uses it, to measure what it saves per stream (docs/plugins.md, "Making fresh
    /// instances cheap").
    #[doc(hidden)]
    pub fn with_pooling_allocator(
        cache: Option<CompileCache>,
        pooling: wasmtime::PoolingAllocationConfig,
    ) -> Result<Arc<Self>, PluginError> {
        Self::build(cache, Some(pooling))
    }

    fn build(
        cache: Option<CompileCache>,
        pooling: Option<wasmtime::PoolingAllocationConfig>,
    ) -> Result<Arc<Self>, PluginError> {
        let mut config = Config::new();
        if let Some(pooling) = pooling {
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling));
        }
        config.epoch_interruption(true);
        // Fuel is on for every engine, even when no plugin has a fuel limit (each call
        // then starts with u64::MAX). It costs call-bound plugins nothing measurable
        // and compute-bound ones about a tenth (engines with and without fuel, calls
        // interleaved): under the 20% we would accept, and switching it on only for
        // chains that ask for fuel would tie the engine to the chain: a reload adding
        // a fuel limit would need a new engine, and every plugin recompiled for it.
        config.consume_fuel(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config).map_err(PluginError::Engine)?;
        let mut linker = Linker::new(&engine);
        bindings::add_host_to_linker(&mut linker).map_err(PluginError::Engine)?;
        let ticker = EpochTicker::start(engine.clone()).map_err(PluginError::EpochThread)?;
        Ok(Arc::new(Self {
            engine,
            linker,
            wasi_linker: OnceLock::new(),
            ticker: Some(ticker),
            cache,
        }))
    }

    /// The compile cache plugins are loaded through, if any.
    pub fn cache(&self) -> Option<&CompileCache> {
        self.cache.as_ref()
    }

    /// The engine every plugin is compiled for and instantiated on. Public so that
    /// `bench/micro.rs` can measure wasmtime's own floor (an empty component call) on
    /// exactly this engine configuration (epoch interruption, fuel, component model)
    /// next to sluice's plugin calls; sluice itself needs nothing from it outside the
    /// crate.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn linker(&self) -> &Linker<PluginState> {
        &self.linker
    }

    /// The linker of plugins granted a capability: the host functions plus WASI
    /// preview 2. Built on first use, so a process without such a plugin never
    /// spends time or memory on WASI.
    pub(crate) fn wasi_linker(&self) -> Result<&Linker<PluginState>, PluginError> {
        if let Some(linker) = self.wasi_linker.get() {
            return Ok(linker);
        }
        let linker = wasi::linker(&self.engine)?;
        // Two first loads may race; either linker will do.
        Ok(self.wasi_linker.get_or_init(|| linker))
    }

    /// Converts a wall-clock deadline into epoch ticks (at least one).
    pub(crate) fn ticks(deadline: Duration) -> u64 {
        let ticks = deadline.as_micros().div_ceil(EPOCH_TICK.as_micros());
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.stop();
        }
    }
}

/// A thread that advances the engine's epoch every [`EPOCH_TICK`]; a store whose
/// deadline epoch passes traps with `Trap::Interrupt` at its next loop header or call.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl EpochTicker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self { stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_whole_ticks() {
        assert_eq!(Runtime::ticks(Duration::from_millis(10)), 10);
        assert_eq!(Runtime::ticks(Duration::from_micros(1500)), 2);
        assert_eq!(Runtime::ticks(Duration::ZERO), 1);
    }
}
