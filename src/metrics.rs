//! Prometheus metrics, served as `GET /metrics` on the admin listener.
//!
//! One [`Metrics`] per running proxy (not a process global), so that several proxies in
//! one process (tests, embedders) count separately. Hot-path handles are resolved once
//! per plugin per chain ([`PluginMetrics`]): counting an event is an atomic add, not a
//! label lookup.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::plugin::FailureKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginVerdict {
    plugin: String,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginName {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginFailure {
    plugin: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Refusal {
    direction: &'static str,
    reason: &'static str,
}

type CallHistogram = Family<PluginName, Histogram, fn() -> Histogram>;

fn call_histogram() -> Histogram {
    // 250 ns .. ~16 ms: a plugin call is about a microsecond; the deadline is 10 ms.
    Histogram::new(exponential_buckets(250e-9, 2.0, 17))
}

/// Everything the proxy counts.
pub struct Metrics {
    registry: Registry,
    streams_open: Gauge,
    instances_live: Gauge,
    events: Family<Direction, Counter>,
    verdicts: Family<PluginVerdict, Counter>,
    failures: Family<PluginFailure, Counter>,
    call_seconds: CallHistogram,
    reloads: Family<Outcome, Counter>,
    upstream_errors: Family<Kind, Counter>,
    streams_ended: Family<Outcome, Counter>,
    tape_dropped: Gauge,
    tape_queued_bytes: Gauge,
    refused: Family<Refusal, Counter>,
    connections_open: Gauge,
    connections_refused: Counter,
    connection_timeouts: Family<Kind, Counter>,
    tape_over_cap: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every series (they appear at zero before anything happens).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let streams_open = Gauge::default();
        registry.register(
            "streams_open",
            "Intercepted SSE streams currently open",
            streams_open.clone(),
        );
        let instances_live = Gauge::default();
        registry.register(
            "plugin_instances_live",
            "Plugin instances currently alive (one per plugin per exchange)",
            instances_live.clone(),
        );
        let events = Family::<Direction, Counter>::default();
        registry.register(
            "events",
            "Events read from the upstream (in) and written to the client (out)",
            events.clone(),
        );
        let verdicts = Family::<PluginVerdict, Counter>::default();
        registry.register(
            "plugin_verdicts",
            "Plugin verdicts: pass, drop, modify",
            verdicts.clone(),
        );
        let failures = Family::<PluginFailure, Counter>::default();
        registry.register(
            "plugin_failures",
            "Plugin call failures by kind (trap, deadline, fuel, out_of_memory, oversized, instantiate, too_large, malformed)",
            failures.clone(),
        );
        let call_seconds: CallHistogram = Family::new_with_constructor(call_histogram);
        registry.register(
            "plugin_call_seconds",
            "Duration of one on-event call",
            call_seconds.clone(),
        );
        let reloads = Family::<Outcome, Counter>::default();
        registry.register(
            "reloads",
            "Chain reloads by result (ok, refused)",
            reloads.clone(),
        );
        let upstream_errors = Family::<Kind, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream failures: connect (unreachable), response (unusable), stream (broke mid-stream)",
            upstream_errors.clone(),
        );
        let streams_ended = Family::<Outcome, Counter>::default();
        registry.register(
            "streams_ended",
            "Intercepted SSE streams by how they ended (complete, upstream_error, client_gone)",
            streams_ended.clone(),
        );
        let tape_dropped = Gauge::default();
        registry.register(
            "tape_records_dropped",
            "Tape records dropped because the recorder fell behind",
            tape_dropped.clone(),
        );
        let tape_queued_bytes = Gauge::default();
        registry.register(
            "tape_queued_bytes",
            "Bytes of records waiting for the recorder's writer (at 256 MiB new ones are dropped)",
            tape_queued_bytes.clone(),
        );
        let refused = Family::<Refusal, Counter>::default();
        registry.register(
            "messages_refused",
            "JSON-RPC messages the proxy refused before any plugin saw them, by direction and reason (duplicate_name, escaped_name, encoding, not_json, not_object, batch_too_long, plugin_budget)",
            refused.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open now (at --max-connections new ones are refused)",
            connections_open.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Client connections answered 503 and closed because --max-connections were open",
            connections_refused.clone(),
        );
        let connection_timeouts = Family::<Kind, Counter>::default();
        registry.register(
            "connection_timeouts",
            "Client connections closed by a timeout: header (no request head within --header-read-timeout), write (the client read nothing for --client-write-timeout)",
            connection_timeouts.clone(),
        );
        for kind in ["header", "write"] {
            let _ = connection_timeouts.get_or_create(&Kind { kind });
        }
        let tape_over_cap = Counter::default();
        registry.register(
            "tape_records_over_cap",
            "Tape records not recorded because the tape reached its size cap (--tape-max-bytes; recording stopped there)",
            tape_over_cap.clone(),
        );
        for outcome in ["ok", "refused"] {
            let _ = reloads.get_or_create(&Outcome { outcome });
        }
        for kind in ["connect", "response", "stream"] {
            let _ = upstream_errors.get_or_create(&Kind { kind });
        }
        for direction in ["in", "out"] {
            let _ = events.get_or_create(&Direction { direction });
        }
        Self {
            registry,
            streams_open,
            instances_live,
            events,
            verdicts,
            failures,
            call_seconds,
            reloads,
            upstream_errors,
            streams_ended,
            tape_dropped,
            tape_queued_bytes,
            refused,
            connections_open,
            connections_refused,
            connection_timeouts,
            tape_over_cap,
        }
    }

    /// Counts refused messages; see [`Refusals`].
    pub fn refusals(&self) -> Refusals {
        Refusals(self.refused.clone())
    }

    /// The text exposition format (what `/metrics` returns).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Handles for one plugin, resolved once per chain.
    pub fn plugin(&self, name: &str) -> PluginMetrics {
        let verdict = |verdict| {
            self.verdicts
                .get_or_create(&PluginVerdict {
                    plugin: name.to_string(),
                    verdict,
                })
                .clone()
        };
        PluginMetrics {
            name: name.to_string(),
            pass: verdict("pass"),
            drop: verdict("drop"),
            modify: verdict("modify"),
            call_seconds: self
                .call_seconds
                .get_or_create(&PluginName {
                    plugin: name.to_string(),
                })
                .clone(),
            failures: self.failures.clone(),
            instances_live: self.instances_live.clone(),
        }
    }

    /// A stream began; see [`StreamGuard`].
    pub fn stream_opened(&self) -> StreamGuard {
        self.streams_open.inc();
        let (events_in, events_out) = self.event_counters();
        StreamGuard {
            open: self.streams_open.clone(),
            ended: self.streams_ended.clone(),
            outcome: "client_gone",
            events_in,
            events_out,
            upstream_broke: self
                .upstream_errors
                .get_or_create(&Kind { kind: "stream" })
                .clone(),
        }
    }

    /// Handles for the hot path's event counters: (read from the upstream, written to
    /// the client).
    pub fn event_counters(&self) -> (Counter, Counter) {
        (
            self.events
                .get_or_create(&Direction { direction: "in" })
                .clone(),
            self.events
                .get_or_create(&Direction { direction: "out" })
                .clone(),
        )
    }

    /// A reload finished.
    pub fn reload(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "refused" };
        self.reloads.get_or_create(&Outcome { outcome }).inc();
    }

    /// The upstream failed: `connect`, `response` or `stream`.
    pub fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors.get_or_create(&Kind { kind }).inc();
    }

    /// The recorder's dropped-record count, copied at scrape time.
    pub fn set_tape_dropped(&self, dropped: u64) {
        self.tape_dropped
            .set(i64::try_from(dropped).unwrap_or(i64::MAX));
    }

    /// Bytes waiting in the recorder's queue, copied at scrape time: a disk that falls
    /// behind shows here before records are dropped.
    pub fn set_tape_queued(&self, bytes: usize) {
        self.tape_queued_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Streams open now (for tests and the admin API).
    pub fn streams_open(&self) -> i64 {
        self.streams_open.get()
    }

    /// Plugin instances alive now.
    pub fn instances_live(&self) -> i64 {
        self.instances_live.get()
    }

    /// A client connection was accepted; it counts as open until the guard drops.
    pub fn connection_opened(&self) -> ConnectionGuard {
        self.connections_open.inc();
        ConnectionGuard(self.connections_open.clone())
    }

    /// A client connection was refused at the connection cap.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// A client connection was closed by a timeout: `header` or `write`.
    pub fn connection_timeout(&self, kind: &'static str) {
        self.connection_timeouts.get_or_create(&Kind { kind }).inc();
    }

    /// The counter of tape records not recorded because of the size cap, for the
    /// recorder to count into as it happens (a handle: the same counter).
    pub fn tape_over_cap(&self) -> Counter {
        self.tape_over_cap.clone()
    }
}

/// Keeps `connections_open` right however a connection ends.
#[derive(Debug)]
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Keeps `streams_open` right whatever way a stream ends: dropping the guard closes the
/// stream and counts how it ended (`client_gone` unless told otherwise).
/// It also holds the stream's event counters, resolved once.
#[derive(Debug)]
pub struct StreamGuard {
    open: Gauge,
    ended: Family<Outcome, Counter>,
    outcome: &'static str,
    events_in: Counter,
    events_out: Counter,
    upstream_broke: Counter,
}

impl StreamGuard {
    /// The stream ended normally.
    pub fn complete(&mut self) {
        self.outcome = "complete";
    }

    /// The upstream's stream broke (died, malformed, oversized event).
    pub fn upstream_broke(&mut self) {
        self.outcome = "upstream_error";
        self.upstream_broke.inc();
    }

    /// An event read from the upstream.
    pub fn event_in(&self) {
        self.events_in.inc();
    }

    /// An event written to the client.
    pub fn event_out(&self) {
        self.events_out.inc();
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.open.dec();
        self.ended
            .get_or_create(&Outcome {
                outcome: self.outcome,
            })
            .inc();
    }
}

/// One plugin's hot-path handles.
#[derive(Debug, Clone)]
pub struct PluginMetrics {
    name: String,
    pass: Counter,
    drop: Counter,
    modify: Counter,
    call_seconds: Histogram,
    failures: Family<PluginFailure, Counter>,
    instances_live: Gauge,
}

impl PluginMetrics {
    /// Handles that count into a private registry: for chains without a proxy
    /// (`plugin test`, benchmarks, tests).
    pub fn detached(name: &str) -> Self {
        Metrics::new().plugin(name)
    }

    pub(crate) fn pass(&self) {
        self.pass.inc();
    }

    /// `n` passes at once (the verdicts of a batch call).
    pub(crate) fn pass_many(&self, n: u64) {
        if n > 0 {
            self.pass.inc_by(n);
        }
    }

    pub(crate) fn drop_(&self) {
        self.drop.inc();
    }

    pub(crate) fn modify(&self) {
        self.modify.inc();
    }

    pub(crate) fn call(&self, elapsed: Duration) {
        self.call_seconds.observe(elapsed.as_secs_f64());
    }

    pub(crate) fn failure(&self, kind: FailureKind) {
        self.failures
            .get_or_create(&PluginFailure {
                plugin: self.name.clone(),
                kind: kind.as_str(),
            })
            .inc();
    }

    pub(crate) fn instance_created(&self) {
        self.instances_live.inc();
    }

    pub(crate) fn instance_gone(&self) {
        self.instances_live.dec();
    }
}

/// The `sluice_messages_refused_total` counter, as the MCP rules count into it: a
/// message refused before any plugin saw it (a repeated member name, an over-long
/// batch, a request whose plugin time ran out).
#[derive(Clone, Debug, Default)]
pub struct Refusals(Family<Refusal, Counter>);

impl Refusals {
    /// One message refused on its way `direction` (`to-server`, `to-client`).
    pub fn refused(&self, direction: &'static str, reason: &'static str) {
        self.0.get_or_create(&Refusal { direction, reason }).inc();
    }
}
