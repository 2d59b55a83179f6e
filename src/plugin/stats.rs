//! Per-plugin counters, shared by every stream the plugin serves.

use std::sync::atomic::{AtomicU64, Ordering};

/// How a plugin call went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The plugin trapped (e.g. `unreachable`, a panic, an out-of-bounds access).
    Trap,
    /// The call ran past its deadline and was interrupted.
    Deadline,
    /// The instance asked for more memory than its cap.
    OutOfMemory,
    /// The call used up its fuel (the plugin's instruction budget per call).
    Fuel,
    /// The call answered `modify` with an event larger than the proxy's event size
    /// limit (`--max-event-bytes`); the result was refused.
    Oversized,
    /// A new instance could not be created or its `init` failed.
    Instantiate,
    /// The event was larger than the plugin's `max_message_bytes`: it was not handed to
    /// the plugin at all.
    TooLarge,
    /// A `modify` result that is not what the plugin was given the shape of: a
    /// JSON-RPC message (one JSON object) modified into anything but exactly one JSON
    /// object with distinct member names (two messages spliced into a batch, say).
    Malformed,
}

impl FailureKind {
    /// A stable lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Deadline => "deadline",
            FailureKind::OutOfMemory => "out_of_memory",
            FailureKind::Fuel => "fuel",
            FailureKind::Oversized => "oversized",
            FailureKind::Instantiate => "instantiate",
            FailureKind::TooLarge => "too_large",
            FailureKind::Malformed => "malformed",
        }
    }

    /// True when the instance cannot be trusted after this failure (it trapped or was
    /// cut mid-call): it is discarded and the next event gets a fresh one. A refused
    /// result or an event never handed over leaves a healthy instance, and its state
    /// (what the exchange asked) is kept.
    pub fn breaks_instance(self) -> bool {
        !matches!(self, FailureKind::TooLarge | FailureKind::Malformed)
    }

    /// What an operator can do about it, for the JSON-RPC error a client gets and the
    /// log line: the failure is usually the plugin's limit, not the client's fault.
    pub fn hint(self) -> &'static str {
        match self {
            FailureKind::Trap => "the plugin crashed",
            FailureKind::Deadline => "it ran past its deadline; raise deadline_ms",
            FailureKind::OutOfMemory => "it ran out of memory; raise memory_mib",
            FailureKind::Fuel => "it used up its fuel; raise fuel",
            FailureKind::Oversized => {
                "its modified message was over the event size limit (max_event_bytes)"
            }
            FailureKind::Instantiate => "it could not be instantiated",
            FailureKind::TooLarge => "it is over the plugin's max_message_bytes",
            FailureKind::Malformed => {
                "its modified message was not exactly one JSON object with distinct keys"
            }
        }
    }
}

/// Counters for one loaded plugin. Read them with [`PluginStats::snapshot`].
#[derive(Debug, Default)]
pub struct PluginStats {
    calls: AtomicU64,
    batch_calls: AtomicU64,
    passed: AtomicU64,
    dropped: AtomicU64,
    modified: AtomicU64,
    instances: AtomicU64,
    traps: AtomicU64,
    deadlines: AtomicU64,
    out_of_memory: AtomicU64,
    out_of_fuel: AtomicU64,
    oversized: AtomicU64,
    instantiate_failures: AtomicU64,
    too_large: AtomicU64,
    malformed: AtomicU64,
}

/// A copy of [`PluginStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Events handed to the plugin: one per `on-event` call, one per event of an
    /// `on-events` call.
    pub calls: u64,
    /// `on-events` calls made (plugins of the `batch-*` worlds).
    pub batch_calls: u64,
    /// Calls that answered `pass`.
    pub passed: u64,
    /// Calls that answered `drop`.
    pub dropped: u64,
    /// Calls that answered `modify`.
    pub modified: u64,
    /// Instances created (one per stream, plus one per replacement after a failure).
    pub instances: u64,
    /// Calls that trapped.
    pub traps: u64,
    /// Calls cut at their deadline.
    pub deadlines: u64,
    /// Calls that hit the memory cap.
    pub out_of_memory: u64,
    /// Calls that used up their fuel.
    pub out_of_fuel: u64,
    /// `modify` results refused for exceeding the event size limit.
    pub oversized: u64,
    /// Instances that could not be created or initialised.
    pub instantiate_failures: u64,
    /// Events not handed to the plugin: over its `max_message_bytes`.
    pub too_large: u64,
    /// `modify` results refused as not one well-formed JSON-RPC message.
    pub malformed: u64,
}

impl StatsSnapshot {
    /// All failures of any kind.
    pub fn failures(&self) -> u64 {
        self.traps
            + self.deadlines
            + self.out_of_memory
            + self.out_of_fuel
            + self.oversized
            + self.instantiate_failures
            + self.too_large
            + self.malformed
    }
}

impl PluginStats {
    pub(crate) fn call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn passed(&self) {
        self.passed.fetch_add(1, Ordering::Relaxed);
    }
    /// One `on-events` call with `n` events: counted as `n` calls, and as a batch.
    pub(crate) fn batch_call(&self, n: u64) {
        self.calls.fetch_add(n, Ordering::Relaxed);
        self.batch_calls.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn passed_many(&self, n: u64) {
        if n > 0 {
            self.passed.fetch_add(n, Ordering::Relaxed);
        }
    }
    pub(crate) fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn modified(&self) {
        self.modified.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn instance(&self) {
        self.instances.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn failure(&self, kind: FailureKind) {
        let counter = match kind {
            FailureKind::Trap => &self.traps,
            FailureKind::Deadline => &self.deadlines,
            FailureKind::OutOfMemory => &self.out_of_memory,
            FailureKind::Fuel => &self.out_of_fuel,
            FailureKind::Oversized => &self.oversized,
            FailureKind::Instantiate => &self.instantiate_failures,
            FailureKind::TooLarge => &self.too_large,
            FailureKind::Malformed => &self.malformed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            calls: get(&self.calls),
            batch_calls: get(&self.batch_calls),
            passed: get(&self.passed),
            dropped: get(&self.dropped),
            modified: get(&self.modified),
            instances: get(&self.instances),
            traps: get(&self.traps),
            deadlines: get(&self.deadlines),
            out_of_memory: get(&self.out_of_memory),
            out_of_fuel: get(&self.out_of_fuel),
            oversized: get(&self.oversized),
            instantiate_failures: get(&self.instantiate_failures),
            too_large: get(&self.too_large),
            malformed: get(&self.malformed),
        }
    }
}
