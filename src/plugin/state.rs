//! The data each plugin instance's `Store` carries, and the 0.1 host functions on it
//! (0.2's are in `host`).

use std::sync::Arc;

use wasmtime::ResourceLimiter;

use super::bindings::{self, Level};
use super::convert::StreamMeta;
use super::deadline::CpuDeadline;
use super::interest::Interest;
use super::message::Current;
use super::store::{StateLimits, StateStore};
use super::wasi::WasiState;
use crate::metrics::PluginCounters;

/// Longest log line a plugin may write; longer messages are cut so that a plugin cannot
/// flood the proxy's log with one call.
pub(super) const MAX_LOG_MESSAGE: usize = 4096;

/// What one table element is counted as against the memory cap: a table of function
/// references holds a pointer per element in the host.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// What a 0.2 instance's powers reach: the exchange it serves, the headers it was
/// granted, its plugin's state store and counters.
#[derive(Clone)]
pub(crate) struct Powers {
    pub(crate) exchange: Arc<StreamMeta>,
    /// Request headers the operator granted (lower-case names).
    pub(crate) headers: Arc<[String]>,
    pub(crate) store: Arc<StateStore>,
    pub(crate) counters: PluginCounters,
}

impl Powers {
    /// For an instance with no exchange (the trial instance of `Plugin::load`): its
    /// writes go to a store nobody reads, its counts nowhere.
    pub(crate) fn detached(plugin: &str) -> Self {
        Self {
            exchange: Arc::default(),
            headers: Arc::from([]),
            store: Arc::new(StateStore::new(StateLimits::default())),
            counters: PluginCounters::detached(plugin),
        }
    }
}

/// Store data of one plugin instance: who it is (for logs) and what it may use.
pub(crate) struct PluginState {
    pub(super) plugin: Arc<str>,
    pub(super) stream_id: u64,
    /// What the 0.2 powers reach.
    pub(crate) powers: Powers,
    /// The message of the running 0.2 call (`message` resource).
    pub(crate) current: Option<Current>,
    /// What the instance declared through `interest` during `init`.
    pub(crate) interest: Option<Interest>,
    /// The most bytes of linear memory and table storage the instance may hold, all its
    /// memories and tables together: a component can declare many memories (one per
    /// core instance it contains), and a cap per memory would give it that many caps.
    memory_cap: usize,
    /// What the instance holds now, against `memory_cap`.
    held: usize,
    /// The last growth granted, given back if the engine then fails to grow.
    granted: usize,
    /// The most elements of one table.
    table_cap: usize,
    /// Set when the instance asked for more memory than its cap, so that the trap that
    /// usually follows is reported as "out of memory" rather than as a plain trap.
    pub(crate) memory_denied: bool,
    /// The running call's deadline, consulted by the store's epoch callback.
    pub(crate) deadline: CpuDeadline,
    /// WASI context and resource table, only for plugins granted a capability (boxed:
    /// the common store stays small and never builds a `WasiCtx`).
    pub(crate) wasi: Option<Box<WasiState>>,
}

impl PluginState {
    pub(crate) fn new(plugin: Arc<str>, powers: Powers, memory_cap: usize) -> Self {
        Self {
            plugin,
            stream_id: powers.exchange.stream_id,
            powers,
            current: None,
            interest: None,
            memory_cap,
            held: 0,
            granted: 0,
            table_cap: 100_000,
            memory_denied: false,
            deadline: CpuDeadline::default(),
            wasi: None,
        }
    }
}

impl bindings::sluice::plugin::host::Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        self.write_log(level, &message);
    }
}

impl PluginState {
    /// One log line of the plugin's (either contract's `log`).
    pub(super) fn write_log(&self, level: Level, message: &str) {
        let message = truncate(message, MAX_LOG_MESSAGE);
        let (plugin, stream) = (&*self.plugin, self.stream_id);
        match level {
            Level::Trace => tracing::trace!(plugin, stream, "{message}"),
            Level::Debug => tracing::debug!(plugin, stream, "{message}"),
            Level::Info => tracing::info!(plugin, stream, "{message}"),
            Level::Warn => tracing::warn!(plugin, stream, "{message}"),
            Level::Error => tracing::error!(plugin, stream, "{message}"),
        }
    }
}

impl bindings::sluice::plugin::types::Host for PluginState {}

impl ResourceLimiter for PluginState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.take(desired.saturating_sub(current)))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_cap {
            return Ok(false);
        }
        let more = desired.saturating_sub(current);
        Ok(self.take(more.saturating_mul(TABLE_ELEMENT_BYTES)))
    }

    /// A growth this limiter granted failed in the engine (past the memory's declared
    /// maximum, say): what it counted is given back.
    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.give_back();
        Ok(())
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.give_back();
        Ok(())
    }
}

impl PluginState {
    fn give_back(&mut self) {
        self.held = self.held.saturating_sub(std::mem::take(&mut self.granted));
    }

    /// Counts `bytes` more against the instance's cap, or refuses them (and remembers
    /// it, so the trap that usually follows is reported as out of memory).
    fn take(&mut self, bytes: usize) -> bool {
        match self.held.checked_add(bytes) {
            Some(held) if held <= self.memory_cap => {
                self.held = held;
                self.granted = bytes;
                true
            }
            _ => {
                self.memory_denied = true;
                false
            }
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(super) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_beyond_the_cap_is_refused_and_remembered() {
        let mut state = PluginState::new("p".into(), Powers::detached("p"), 1 << 20);
        assert!(state.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!state.memory_denied);
        assert!(
            !state
                .memory_growing(1 << 20, (1 << 20) + 65536, None)
                .unwrap()
        );
        assert!(state.memory_denied);
    }

    #[test]
    fn all_memories_and_tables_count_against_one_cap() {
        let mut state = PluginState::new("p".into(), Powers::detached("p"), 1 << 20);
        // Two memories of 512 KiB each: together at the cap.
        assert!(state.memory_growing(0, 512 << 10, None).unwrap());
        assert!(state.memory_growing(0, 512 << 10, None).unwrap());
        assert!(!state.memory_denied);
        // A third memory's first page is over it, though it alone would fit.
        assert!(!state.memory_growing(0, 64 << 10, None).unwrap());
        assert!(state.memory_denied);
        // Tables count too.
        let mut state = PluginState::new("p".into(), Powers::detached("p"), 1 << 20);
        assert!(state.memory_growing(0, (1 << 20) - 64, None).unwrap());
        assert!(state.table_growing(0, 8, None).unwrap());
        assert!(!state.table_growing(8, 16, None).unwrap());
        assert!(state.memory_denied);
        // A growth granted here that the engine then fails gives its bytes back.
        let mut state = PluginState::new("p".into(), Powers::detached("p"), 1 << 20);
        assert!(state.memory_growing(0, 1 << 20, None).unwrap());
        state
            .memory_grow_failed(wasmtime::Error::msg("past the declared maximum"))
            .unwrap();
        assert!(state.memory_growing(0, 1 << 20, None).unwrap());
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
