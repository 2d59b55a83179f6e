//! Prometheus metrics, served as `GET /metrics` on the admin listener.
//!
//! One [`Metrics`] per running proxy (not a process global), so that several proxies in
//! one process (tests, embedders) count separately. Hot-path handles are resolved once
//! per plugin per chain ([`PluginMetrics`]): counting an event is an atomic add, not a
//! label lookup.
//!
//! A plugin's events are counted once, per chain generation ([`PluginMetrics`]): the
//! admin API shows a generation's figures ([`StatsSnapshot`]), and the plugin series of
//! `/metrics` are their sums by plugin name, made at scrape time ([`PluginSeries`]), so
//! a series goes on across reloads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::failure::FailureKind;

mod plugin_counters;
pub use plugin_counters::PluginCounters;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginName {
    plugin: String,
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
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Refusal {
    direction: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

type CallHistogram = Family<PluginName, Histogram, fn() -> Histogram>;

/// The counter names and labels each plugin used, by (route, plugin).
type SeenByPlugin = BTreeMap<(String, String), Arc<Mutex<plugin_counters::Seen>>>;

fn call_histogram() -> Histogram {
    // 250 ns .. ~16 ms: a plugin call is about a microsecond; the deadline is 10 ms.
    Histogram::new(exponential_buckets(250e-9, 2.0, 17))
}

/// Everything the proxy counts. A clone shares every series; [`Metrics::for_route`]
/// is such a clone whose plugin series carry a `route` label.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// The route whose plugins this handle counts (`None`: the default upstream).
    route: Option<Arc<str>>,
    route_requests: Family<RouteLabel, Counter>,
    streams_open: Gauge,
    instances_live: Gauge,
    events: Family<Direction, Counter>,
    plugins: Arc<PluginSeries>,
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
    stdio_answered: Family<Kind, Counter>,
    stdio: StdioMetrics,
    tls_cert_reloads: Family<Outcome, Counter>,
    tls_handshake_failures: Family<Kind, Counter>,
    /// Requests resource-server mode turned away, by reason.
    auth_denied: Family<Kind, Counter>,
    /// Requests resource-server mode let in.
    auth_admitted: Counter,
    /// Fetches of an issuer's signing keys, by outcome.
    jwks_fetches: Family<Outcome, Counter>,
    rate_limited: Family<MethodLabel, Counter>,
    token_exchanges: Family<Outcome, Counter>,
    /// Counters plugins keep themselves (the `metrics` power).
    plugin_counters: plugin_counters::CounterFamily,
    /// The counter names and labels each plugin has used, by route and plugin name.
    plugin_counters_seen: Arc<Mutex<SeenByPlugin>>,
    /// Messages plugins held (`hold`), by how the hold ended.
    holds: Family<Outcome, Counter>,
    /// Requests plugins answered themselves (`respond`).
    plugin_answers: Counter,
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
        // `plugin_verdicts` and `plugin_failures`.
        let plugins = Arc::new(PluginSeries::default());
        registry.register_collector(Box::new(plugins.clone()));
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
            "Client connections closed by a timeout: header (no request head within --header-read-timeout), write (the client read nothing for --client-write-timeout), handshake (no TLS handshake within --header-read-timeout)",
            connection_timeouts.clone(),
        );
        for kind in ["header", "write", "handshake"] {
            let _ = connection_timeouts.get_or_create(&Kind { kind });
        }
        let tape_over_cap = Counter::default();
        registry.register(
            "tape_records_over_cap",
            "Tape records not recorded because the tape reached its size cap (--tape-max-bytes; recording stopped there)",
            tape_over_cap.clone(),
        );
        let stdio_answered = Family::<Kind, Counter>::default();
        registry.register(
            "stdio_answered",
            "Requests of a sluice stdio client answered with a JSON-RPC error by sluice stdio itself, because the HTTP exchange gave no answer: status (an error status without one), unanswered (the response ended without it), too_long (a stdin line over --max-event-bytes)",
            stdio_answered.clone(),
        );
        for kind in ["status", "unanswered", "too_long"] {
            let _ = stdio_answered.get_or_create(&Kind { kind });
        }
        let stdio = StdioMetrics::register(&mut registry);
        let route_requests = Family::<RouteLabel, Counter>::default();
        registry.register(
            "route_requests",
            "Requests taken by each [[route]] of the config file (the default upstream's are not counted here)",
            route_requests.clone(),
        );
        for outcome in ["ok", "refused"] {
            let _ = reloads.get_or_create(&Outcome { outcome });
        }
        let tls_cert_reloads = Family::<Outcome, Counter>::default();
        registry.register(
            "tls_cert_reloads",
            "TLS listener certificate reloads by result (ok; refused: the files did not hold a usable pair, the previous certificate keeps serving)",
            tls_cert_reloads.clone(),
        );
        let tls_handshake_failures = Family::<Kind, Counter>::default();
        registry.register(
            "tls_handshake_failures",
            "Client connections to the TLS listener that failed before TLS was up: plain_http (a plain HTTP request, answered 400), error (a failed handshake)",
            tls_handshake_failures.clone(),
        );
        let rate_limited = Family::<MethodLabel, Counter>::default();
        registry.register(
            "rate_limited",
            "Client requests refused with 429 by a per-caller rate limit, by the limit's method (* for a limit on every request)",
            rate_limited.clone(),
        );
        for outcome in ["ok", "refused"] {
            let _ = tls_cert_reloads.get_or_create(&Outcome { outcome });
        }
        for kind in ["plain_http", "error"] {
            let _ = tls_handshake_failures.get_or_create(&Kind { kind });
        }
        for kind in ["connect", "response", "stream"] {
            let _ = upstream_errors.get_or_create(&Kind { kind });
        }
        let auth_denied = Family::<Kind, Counter>::default();
        registry.register(
            "auth_denied",
            "Requests resource-server mode ([auth]) turned away, by kind: missing, malformed, invalid, expired, not_yet_valid, audience, issuer, insufficient_scope, unavailable (keys or introspection unreachable)",
            auth_denied.clone(),
        );
        let auth_admitted = Counter::default();
        registry.register(
            "auth_admitted",
            "Requests resource-server mode ([auth]) let in with a valid token",
            auth_admitted.clone(),
        );
        let jwks_fetches = Family::<Outcome, Counter>::default();
        registry.register(
            "auth_key_fetches",
            "Fetches of an issuer's signing keys (JWKS) by result (ok; refused: unreachable or unusable, the keys held stay in use)",
            jwks_fetches.clone(),
        );
        for outcome in ["ok", "refused"] {
            let _ = jwks_fetches.get_or_create(&Outcome { outcome });
        }
        let token_exchanges = Family::<Outcome, Counter>::default();
        registry.register(
            "token_exchanges",
            "Upstream credentials of [upstream_auth] mode = \"exchange\" by outcome: exchanged (the token endpoint was called), cached (a remembered answer), failed (the request was not sent upstream)",
            token_exchanges.clone(),
        );
        for outcome in ["exchanged", "cached", "failed"] {
            let _ = token_exchanges.get_or_create(&Outcome { outcome });
        }
        for direction in ["in", "out"] {
            let _ = events.get_or_create(&Direction { direction });
        }
        let plugin_counters = plugin_counters::CounterFamily::default();
        registry.register(
            "plugin_counter",
            "Counters plugins keep themselves (the metrics power of sluice:plugin@0.2.0), by route, plugin, counter and label; bounded per plugin (what is over a bound counts under \"other\")",
            plugin_counters.clone(),
        );
        let holds = Family::<Outcome, Counter>::default();
        registry.register(
            "plugin_holds",
            "Messages a plugin held (hold verdict), by how the hold ended: delayed (a plain delay ran out), approved, denied, timed_out_passed, timed_out_dropped, refused (too many holds at once), gone (the client left)",
            holds.clone(),
        );
        for outcome in [
            "delayed",
            "approved",
            "denied",
            "timed_out_passed",
            "timed_out_dropped",
            "refused",
            "gone",
        ] {
            let _ = holds.get_or_create(&Outcome { outcome });
        }
        let plugin_answers = Counter::default();
        registry.register(
            "plugin_answers",
            "Client requests a plugin answered itself (respond verdict) instead of forwarding them",
            plugin_answers.clone(),
        );
        Self {
            registry: Arc::new(registry),
            route: None,
            route_requests,
            streams_open,
            instances_live,
            events,
            plugins,
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
            stdio_answered,
            stdio,
            tls_cert_reloads,
            tls_handshake_failures,
            auth_denied,
            auth_admitted,
            jwks_fetches,
            rate_limited,
            token_exchanges,
            plugin_counters,
            plugin_counters_seen: Arc::default(),
            holds,
            plugin_answers,
        }
    }

    /// The counters plugin `name` keeps itself (on this handle's route).
    pub fn plugin_counters(&self, name: &str) -> PluginCounters {
        let route = self.route.as_deref().unwrap_or("default").to_string();
        let seen = self
            .plugin_counters_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((route.clone(), name.to_string()))
            .or_default()
            .clone();
        PluginCounters::new(self.plugin_counters.clone(), route, name.to_string(), seen)
    }

    /// A held message's hold ended (`outcome`: see the series' help).
    pub fn hold_ended(&self, outcome: &'static str) {
        self.holds.get_or_create(&Outcome { outcome }).inc();
    }

    /// The same series, with the plugins of the route `name` counted under
    /// `route="name"` (a plugin name may be used by several routes).
    pub fn for_route(&self, name: &str) -> Metrics {
        Metrics {
            route: Some(name.into()),
            ..self.clone()
        }
    }

    /// A request the route `name` took.
    pub fn route_request(&self, name: &str) {
        self.route_requests
            .get_or_create(&RouteLabel {
                route: name.to_string(),
            })
            .inc();
    }

    /// The stdio upstream's series (`sluice_stdio_*`).
    pub fn stdio(&self) -> StdioMetrics {
        self.stdio.clone()
    }

    /// The refusal counter of a rate limit on `method` (`*`: every request); made
    /// when the limit is, so the series shows at zero. Methods come from the
    /// configuration, so the labels are bounded.
    pub fn rate_limited(&self, method: &str) -> Counter {
        self.rate_limited
            .get_or_create(&MethodLabel {
                method: method.to_string(),
            })
            .clone()
    }

    /// Counts refused messages; see [`Refusals`].
    pub fn refusals(&self) -> Refusals {
        Refusals(self.refused.clone(), self.plugin_answers.clone())
    }

    /// The text exposition format (what `/metrics` returns).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// One plugin's figures in a new chain generation, and its handles, resolved once
    /// per chain.
    pub fn plugin(&self, name: &str) -> PluginMetrics {
        let key: Arc<str> = match &self.route {
            Some(route) => format!("{route}{ROUTE_SEPARATOR}{name}").into(),
            None => name.into(),
        };
        let counts = Arc::new(Counts::default());
        self.plugins
            .lock()
            .entry(key.clone())
            .or_default()
            .live
            .push(counts.clone());
        PluginMetrics {
            call_seconds: self
                .call_seconds
                .get_or_create(&PluginName {
                    plugin: name.to_string(),
                })
                .clone(),
            instances_live: self.instances_live.clone(),
            key,
            counts,
            series: self.plugins.clone(),
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

    /// A client connection was closed by a timeout: `header`, `write` or `handshake`.
    pub fn connection_timeout(&self, kind: &'static str) {
        self.connection_timeouts.get_or_create(&Kind { kind }).inc();
    }

    /// The counter of tape records not recorded because of the size cap, for the
    /// recorder to count into as it happens (a handle: the same counter).
    pub fn tape_over_cap(&self) -> Counter {
        self.tape_over_cap.clone()
    }

    /// `sluice stdio` answered a client's request itself: `status`, `unanswered` or
    /// `too_long` (see the series' help).
    pub fn stdio_answered(&self, kind: &'static str) {
        self.stdio_answered.get_or_create(&Kind { kind }).inc();
    }

    /// A reload of the TLS listener's certificate made a new pair current (`ok`) or
    /// was refused.
    pub fn tls_cert_reload(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "refused" };
        self.tls_cert_reloads
            .get_or_create(&Outcome { outcome })
            .inc();
    }

    /// An upstream credential by token exchange: `exchanged`, `cached` or `failed`.
    pub fn token_exchange(&self, outcome: &'static str) {
        self.token_exchanges
            .get_or_create(&Outcome { outcome })
            .inc();
    }

    /// A connection to the TLS listener failed before TLS was up: `plain_http` or
    /// `error`.
    pub fn tls_handshake_failure(&self, kind: &'static str) {
        self.tls_handshake_failures
            .get_or_create(&Kind { kind })
            .inc();
    }

    /// Resource-server mode turned a request away (`kind`: the reason's label).
    pub fn auth_denied(&self, kind: &'static str) {
        self.auth_denied.get_or_create(&Kind { kind }).inc();
    }

    /// Resource-server mode let a request in.
    pub fn auth_admitted(&self) {
        self.auth_admitted.inc();
    }

    /// A fetch of an issuer's signing keys succeeded or failed.
    pub fn jwks_fetch(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "refused" };
        self.jwks_fetches.get_or_create(&Outcome { outcome }).inc();
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

/// Where each figure of a plugin's [`Counts`] is kept.
const CALLS: usize = 0;
const BATCH_CALLS: usize = 1;
const PASSED: usize = 2;
const DROPPED: usize = 3;
const MODIFIED: usize = 4;
const INSTANCES: usize = 5;
/// The failures, at `FAILURES + kind as usize`.
const FAILURES: usize = 6;
const SLOTS: usize = FAILURES + FailureKind::ALL.len();

/// One plugin's figures in one chain generation.
#[derive(Debug, Default)]
struct Counts([AtomicU64; SLOTS]);

impl Counts {
    fn add(&self, slot: usize, n: u64) {
        self.0[slot].fetch_add(n, Ordering::Relaxed);
    }

    fn read(&self) -> [u64; SLOTS] {
        std::array::from_fn(|slot| self.0[slot].load(Ordering::Relaxed))
    }
}

/// The series `sluice_plugin_verdicts_total{plugin,verdict}` and
/// `sluice_plugin_failures_total{plugin,kind}`, summed by plugin name over the chain
/// generations at each scrape: the figures of the generations in use, and what the
/// generations that are gone counted.
#[derive(Debug, Default)]
struct PluginSeries(Mutex<BTreeMap<Arc<str>, Series>>);

/// Between a route's name and a plugin's in a [`PluginSeries`] key (a NUL: in neither).
const ROUTE_SEPARATOR: char = '\0';

/// The labels of a series key: `route` (when it has one) and `plugin`.
fn series_labels(key: &str) -> Vec<(&'static str, &str)> {
    match key.split_once(ROUTE_SEPARATOR) {
        Some((route, plugin)) => vec![("route", route), ("plugin", plugin)],
        None => vec![("plugin", key)],
    }
}

#[derive(Debug, Default)]
struct Series {
    retired: [u64; SLOTS],
    live: Vec<Arc<Counts>>,
}

impl PluginSeries {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Arc<str>, Series>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Each plugin name's figures over all generations, by name.
    fn totals(&self) -> Vec<(Arc<str>, [u64; SLOTS])> {
        self.lock()
            .iter()
            .map(|(name, series)| {
                let mut total = series.retired;
                for counts in &series.live {
                    for (total, n) in total.iter_mut().zip(counts.read()) {
                        *total += n;
                    }
                }
                (name.clone(), total)
            })
            .collect()
    }
}

impl Collector for PluginSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.totals();
        // As for a family: a series without a label set yet is not written.
        if !totals.is_empty() {
            let mut verdicts = encoder.encode_descriptor(
                "plugin_verdicts",
                "Plugin verdicts: pass, drop, modify",
                None,
                MetricType::Counter,
            )?;
            for (plugin, total) in &totals {
                for (verdict, slot) in [("pass", PASSED), ("drop", DROPPED), ("modify", MODIFIED)] {
                    let mut labels = series_labels(plugin);
                    labels.push(("verdict", verdict));
                    ConstCounter::new(total[slot]).encode(verdicts.encode_family(&labels)?)?;
                }
            }
        }
        // A failure series appears with the first failure of its kind.
        let failed = |total: &[u64; SLOTS]| {
            FailureKind::ALL
                .into_iter()
                .filter(|kind| total[FAILURES + *kind as usize] > 0)
                .collect::<Vec<_>>()
        };
        if totals.iter().any(|(_, total)| !failed(total).is_empty()) {
            let mut failures = encoder.encode_descriptor(
                "plugin_failures",
                "Plugin call failures by kind (trap, deadline, fuel, out_of_memory, oversized, instantiate, too_large, malformed)",
                None,
                MetricType::Counter,
            )?;
            for (plugin, total) in &totals {
                for kind in failed(total) {
                    let mut labels = series_labels(plugin);
                    labels.push(("kind", kind.as_str()));
                    ConstCounter::new(total[FAILURES + kind as usize])
                        .encode(failures.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// A plugin's figures in one chain generation at one moment: what the admin API shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    /// Events handed to the plugin: one per `on-event` call, one per event of an
    /// `on-events` call.
    pub calls: u64,
    /// `on-events` calls made (plugins of the `batch-*` worlds).
    #[serde(skip)]
    pub batch_calls: u64,
    /// Calls that answered `pass`.
    pub passed: u64,
    /// Calls that answered `drop`.
    pub dropped: u64,
    /// Calls that answered `modify`.
    pub modified: u64,
    /// Instances created: the trial instance at load, one per exchange that needed
    /// the plugin, plus one per replacement after a failure (attempts that failed
    /// included).
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

    fn of(counts: [u64; SLOTS]) -> Self {
        let failures = |kind: FailureKind| counts[FAILURES + kind as usize];
        Self {
            calls: counts[CALLS],
            batch_calls: counts[BATCH_CALLS],
            passed: counts[PASSED],
            dropped: counts[DROPPED],
            modified: counts[MODIFIED],
            instances: counts[INSTANCES],
            traps: failures(FailureKind::Trap),
            deadlines: failures(FailureKind::Deadline),
            out_of_memory: failures(FailureKind::OutOfMemory),
            out_of_fuel: failures(FailureKind::Fuel),
            oversized: failures(FailureKind::Oversized),
            instantiate_failures: failures(FailureKind::Instantiate),
            too_large: failures(FailureKind::TooLarge),
            malformed: failures(FailureKind::Malformed),
        }
    }
}

/// One plugin of one chain generation: where its events are counted (once each), and
/// the handles of the series that are not sums of those figures. Dropped with its
/// chain, when the generation's figures join the retired totals of its series.
#[derive(Debug)]
pub struct PluginMetrics {
    /// The plugin's key in [`PluginSeries`] (its route and name).
    key: Arc<str>,
    counts: Arc<Counts>,
    series: Arc<PluginSeries>,
    call_seconds: Histogram,
    instances_live: Gauge,
}

impl PluginMetrics {
    /// Handles that count into a private registry: for chains without a proxy
    /// (`plugin test`, benchmarks, tests).
    pub fn detached(name: &str) -> Self {
        Metrics::new().plugin(name)
    }

    /// This generation's figures so far.
    pub fn stats(&self) -> StatsSnapshot {
        StatsSnapshot::of(self.counts.read())
    }

    /// `n` events handed to the plugin.
    pub(crate) fn calls(&self, n: u64) {
        self.counts.add(CALLS, n);
    }

    /// One `on-events` call (its events are counted by [`PluginMetrics::calls`]).
    pub(crate) fn batch_call(&self) {
        self.counts.add(BATCH_CALLS, 1);
    }

    pub(crate) fn pass(&self) {
        self.counts.add(PASSED, 1);
    }

    /// `n` passes at once (the verdicts of a batch call).
    pub(crate) fn pass_many(&self, n: u64) {
        if n > 0 {
            self.counts.add(PASSED, n);
        }
    }

    pub(crate) fn drop_(&self) {
        self.counts.add(DROPPED, 1);
    }

    pub(crate) fn modify(&self) {
        self.counts.add(MODIFIED, 1);
    }

    /// The time of one call, or of one event's share of a batch call (sampled).
    pub(crate) fn call_time(&self, elapsed: Duration) {
        self.call_seconds.observe(elapsed.as_secs_f64());
    }

    pub(crate) fn failure(&self, kind: FailureKind) {
        self.counts.add(FAILURES + kind as usize, 1);
    }

    /// An instance is being created (counted whether or not that succeeds).
    pub(crate) fn instantiating(&self) {
        self.counts.add(INSTANCES, 1);
    }

    pub(crate) fn instance_created(&self) {
        self.instances_live.inc();
    }

    pub(crate) fn instance_gone(&self) {
        self.instances_live.dec();
    }
}

impl Drop for PluginMetrics {
    fn drop(&mut self) {
        // Under the lock, so that a scrape sees these figures either live or retired.
        let mut series = self.series.lock();
        if let Some(series) = series.get_mut(&*self.key) {
            series.live.retain(|c| !Arc::ptr_eq(c, &self.counts));
            for (total, n) in series.retired.iter_mut().zip(self.counts.read()) {
                *total += n;
            }
        }
    }
}

/// The `sluice_messages_refused_total` counter, as the MCP rules count into it: a
/// message refused before any plugin saw it (a repeated member name, an over-long
/// batch, a request whose plugin time ran out); and `sluice_plugin_answers_total`, the
/// requests plugins answered themselves, which the MCP rules send back.
#[derive(Clone, Debug, Default)]
pub struct Refusals(Family<Refusal, Counter>, Counter);

impl Refusals {
    /// A plugin answered a client's request itself (`respond`).
    pub fn answered_by_plugin(&self) {
        self.1.inc();
    }

    /// One message refused on its way `direction` (`to-server`, `to-client`).
    pub fn refused(&self, direction: &'static str, reason: &'static str) {
        self.0.get_or_create(&Refusal { direction, reason }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_series_sum_the_generations_and_keep_what_a_gone_one_counted() {
        let metrics = Metrics::new();
        let first = metrics.plugin("p");
        assert!(
            !metrics.encode().contains("sluice_plugin_failures"),
            "no failure series before a failure"
        );
        first.pass();
        first.failure(FailureKind::Trap);
        let second = metrics.plugin("p");
        second.pass_many(2);
        second.drop_();
        assert_eq!((first.stats().passed, first.stats().traps), (1, 1));
        assert_eq!((second.stats().passed, second.stats().dropped), (2, 1));
        assert_eq!(second.stats().failures(), 0);
        let series = |text: &str| {
            [
                r#"sluice_plugin_verdicts_total{plugin="p",verdict="pass"} 3"#,
                r#"sluice_plugin_verdicts_total{plugin="p",verdict="drop"} 1"#,
                r#"sluice_plugin_verdicts_total{plugin="p",verdict="modify"} 0"#,
                r#"sluice_plugin_failures_total{plugin="p",kind="trap"} 1"#,
            ]
            .into_iter()
            .all(|line| text.lines().any(|l| l == line))
        };
        assert!(series(&metrics.encode()), "{}", metrics.encode());
        // A generation that is gone still counts in the sums, never twice.
        drop(first);
        assert!(series(&metrics.encode()), "{}", metrics.encode());
        drop(second);
        assert!(series(&metrics.encode()), "{}", metrics.encode());
        assert!(!metrics.encode().contains(r#"kind="deadline""#));
    }
}

/// What a stdio upstream counts: its server processes, how they ended, and what it
/// refused or dropped.
#[derive(Clone, Debug, Default)]
pub struct StdioMetrics {
    processes: Gauge,
    ended: Family<Reason, Counter>,
    refused: Family<Reason, Counter>,
    lines_dropped: Family<Reason, Counter>,
    session_ends: Family<Reason, Counter>,
    client_dropped: Family<Reason, Counter>,
}

impl StdioMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "stdio_processes",
            "stdio server processes running now (at --upstream-max-processes new sessions are refused)",
            metrics.processes.clone(),
        );
        registry.register(
            "stdio_process_ends",
            "stdio server processes ended, by reason (deleted, idle, exited, garbage, shutdown)",
            metrics.ended.clone(),
        );
        registry.register(
            "stdio_sessions_refused",
            "New sessions of a stdio upstream refused, by reason (max_processes, max_sessions, spawn_failed)",
            metrics.refused.clone(),
        );
        registry.register(
            "stdio_lines_dropped",
            "Lines a stdio server wrote that reached no client, by reason (not_json, too_long, unmatched, backlog_full, client_stalled)",
            metrics.lines_dropped.clone(),
        );
        registry.register(
            "stdio_session_ends",
            "Sessions of a shared stdio server (--upstream-shared) ended, by reason (deleted, idle, exited, garbage, shutdown); its process goes on unless it exited",
            metrics.session_ends.clone(),
        );
        registry.register(
            "stdio_client_messages_dropped",
            "Client messages a shared stdio server never saw, by reason (foreign_answer: an answer to a server request sent to another session or to none; unknown_request: a cancellation of no waiting request of the session)",
            metrics.client_dropped.clone(),
        );
        metrics
    }

    /// A process started.
    pub fn started(&self) {
        self.processes.inc();
    }

    /// A process ended, for `reason`.
    pub fn ended(&self, reason: &'static str) {
        self.processes.dec();
        self.ended.get_or_create(&Reason { reason }).inc();
    }

    /// A new session was refused, for `reason`.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&Reason { reason }).inc();
    }

    /// A line reached no client, for `reason`.
    pub fn line_dropped(&self, reason: &'static str) {
        self.lines_dropped.get_or_create(&Reason { reason }).inc();
    }

    /// Processes running now.
    pub fn processes(&self) -> i64 {
        self.processes.get()
    }

    /// A session of the shared process ended, for `reason`.
    pub fn session_ended(&self, reason: &'static str) {
        self.session_ends.get_or_create(&Reason { reason }).inc();
    }

    /// A client message was not written to the shared process, for `reason`.
    pub fn client_message_dropped(&self, reason: &'static str) {
        self.client_dropped.get_or_create(&Reason { reason }).inc();
    }
}
