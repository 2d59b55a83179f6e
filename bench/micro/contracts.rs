//! Contract 0.1 against 0.2 (issue 25): what one event costs a plugin of each, through
//! the chain as the proxy runs it (`Chain::session`, `begin(ToClient)`, then `on_event`
//! or `on_events`), on a chain attached to a proxy's metrics.
//!
//! - `contract/<plugin>/<size>`: one event per `on_event`, for the pass-through pairs
//!   (Rust and C, 0.1 and 0.2), a 0.2 plugin that reads `data()` or `method()`, the C
//!   reference filter on each contract, and the chain with no plugin;
//!   `contract/interest-skip/<size>`: a 0.2 plugin that wants only `tools/call`, fed a
//!   `notifications/progress`: it is never called, so what remains is the chain
//!   reading the message's JSON-RPC facts to decide that.
//! - `contract-batch/<plugin>`: 64 events of 256 B per `on_events` (the most the proxy
//!   gathers from one read): a 0.1 `batch-filter` gets them in one call, a 0.1 `filter`
//!   and every 0.2 plugin one call per event.
//! - `contract-exchange/<plugin>`: a new exchange with one 256 B event (session,
//!   `begin`, the event, the session dropped): what creating the instance costs on
//!   each contract; for `interest-skip` (fed a progress notification) no instance is
//!   made at all.
//! - `power/<call>/x1` and `/x16`: a 0.2 plugin making one call into the host, or 16,
//!   per 256 B message (`plugins/rust/powers-cost`); a row minus `power/none/x1` is
//!   that many calls' cost.
//!
//! The plugins come from `plugins/dist` (`bash plugins/build-all.sh`); a missing one is
//! skipped with a note. Figures: BENCHMARKS.md and docs/plugins.md.

use std::sync::Arc;

use criterion::{BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use sluice::metrics::Metrics;
use sluice::plugin::{
    Capabilities, Chain, Direction, Outcome, PluginSource, Runtime, StateLimits, StateStores,
    StreamMeta,
};
use sluice::sse::Event;

use super::{REFERENCE_CONFIG, Rng, SIZES, dist, event_data, fit, load, text};

/// The per-event rows: (label, file in `plugins/dist` without `.wasm`, config).
const PER_EVENT: [(&str, &str, &str); 8] = [
    ("rust-0.1", "passthrough", ""),
    ("rust-0.2", "passthrough-v0.2", ""),
    ("c-0.1", "passthrough-c", ""),
    ("c-0.2", "passthrough-c-v0.2", ""),
    ("rust-0.2-data", "powers-cost", "data"),
    ("rust-0.2-method", "powers-cost", "method"),
    ("reference-c-0.1", "reference-c-v0.1.0", REFERENCE_CONFIG),
    ("reference-c-0.2", "reference-c", REFERENCE_CONFIG),
];

/// The batch rows: (label, file, config).
const BATCHED: [(&str, &str, &str); 4] = [
    ("rust-0.1", "passthrough", ""),
    ("c-0.1", "passthrough-c", ""),
    ("rust-0.2", "passthrough-v0.2", ""),
    ("c-0.2", "passthrough-c-v0.2", ""),
];

/// Events per `on_events` call: `GATHER` in `proxy::sse_body`.
const BATCH: usize = 64;

/// The host calls measured, as `powers-cost` names them. `state-add` before
/// `state-get`: they share the store, so the get finds the key.
const POWERS: [&str; 8] = [
    "none",
    "data",
    "method",
    "stream-id",
    "route",
    "state-add",
    "state-get",
    "metrics-add",
];

/// The `power/<call>/x<n>` rows make the call this many times per message: a call
/// costs about as much as the noise around one message, its n-fold does not.
const POWER_REPEAT: u32 = 16;

/// The exchange a `tools/call` POST opens, on a named route.
fn exchange() -> StreamMeta {
    StreamMeta {
        stream_id: 1,
        method: "POST".into(),
        path: "/mcp".into(),
        rpc_method: Some("tools/call".into()),
        route: Some("api".into()),
        ..StreamMeta::default()
    }
}

/// A `notifications/progress` of exactly `len` bytes (its `message` grown to fit).
fn progress_data(len: usize) -> String {
    let mut rng = Rng(len as u64 | 3);
    let value = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {
        "progressToken": "progress-7", "progress": 3, "total": 5, "message": text(&mut rng, len)
    }});
    fit(value, "/params/message", len)
}

/// Loads plugins into chains of one, each counting into one proxy's metrics and state.
struct Loader {
    runtime: Arc<Runtime>,
    metrics: Metrics,
    stores: StateStores,
}

impl Loader {
    /// A chain of `plugins/dist/<file>.wasm` named `name` (plugins of one name share a
    /// state store) with `config`; `None` (and a note) when the file is missing.
    fn chain(&self, name: &str, file: &str, config: &str) -> Option<Arc<Chain>> {
        let path = dist().join(format!("{file}.wasm"));
        if !path.exists() {
            eprintln!("plugins/dist/{file}.wasm missing: run `bash plugins/build-all.sh`");
            return None;
        }
        let plugin = load(
            &self.runtime,
            name,
            PluginSource::File(path),
            config,
            Capabilities::default(),
        )
        .unwrap_or_else(|e| panic!("{file} with {config:?}: {e}"));
        let chain = Chain::new(vec![plugin])
            .with_metrics(&self.metrics)
            .with_state(&self.stores);
        Some(Arc::new(chain))
    }
}

/// Times `session.on_event` on copies of `data` (made outside the timing: in the proxy
/// the event comes owned from the decoder). The first event goes through before: it
/// creates a 0.2 plugin's instance.
fn bench_event(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    chain: &Arc<Chain>,
    data: &str,
) {
    let mut session = chain.session(exchange());
    session.begin(Direction::ToClient);
    let forwarded = |outcome: Outcome| matches!(outcome, Outcome::Forward(_));
    assert!(forwarded(session.on_event(Event::message(data.to_owned()))));
    group.bench_with_input(id, data, |b, data| {
        b.iter_batched(
            || Event::message(data.to_owned()),
            |event| session.on_event(event),
            BatchSize::LargeInput,
        )
    });
    if !chain.is_empty() {
        assert_eq!(chain.stats(0).failures(), 0, "a plugin call failed");
    }
}

pub(super) fn contracts(c: &mut Criterion) {
    let loader = Loader {
        runtime: Runtime::new().unwrap(),
        metrics: Metrics::new(),
        stores: StateStores::default(),
    };

    let mut group = c.benchmark_group("contract");
    let empty = Arc::new(Chain::empty());
    let chains: Vec<(&str, Arc<Chain>)> = PER_EVENT
        .iter()
        .filter_map(|(label, file, config)| Some((*label, loader.chain(label, file, config)?)))
        .collect();
    let interest = loader.chain("interest-skip", "powers-cost", "interest");
    for size in SIZES {
        let data = event_data(size);
        group.throughput(Throughput::Bytes(size as u64));
        bench_event(
            &mut group,
            BenchmarkId::new("no-plugin", size),
            &empty,
            &data,
        );
        for (label, chain) in &chains {
            bench_event(&mut group, BenchmarkId::new(*label, size), chain, &data);
        }
        if let Some(chain) = &interest {
            let progress = progress_data(size);
            let id = BenchmarkId::new("interest-skip", size);
            bench_event(&mut group, id, chain, &progress);
            assert_eq!(
                chain.stats(0).calls,
                0,
                "a plugin not interested was called"
            );
        }
    }
    group.finish();

    let mut group = c.benchmark_group("contract-batch");
    group.throughput(Throughput::Elements(BATCH as u64));
    let events: Vec<Event> = (0..BATCH)
        .map(|_| Event::message(event_data(256)))
        .collect();
    for (label, file, config) in BATCHED {
        let Some(chain) = loader.chain(label, file, config) else {
            continue;
        };
        let mut session = chain.session(exchange());
        session.begin(Direction::ToClient);
        let outcomes = session.on_events(events.clone());
        assert!(outcomes.iter().all(|o| matches!(o, Outcome::Forward(_))));
        group.bench_function(label, |b| {
            b.iter_batched(
                || events.clone(),
                |events| session.on_events(events),
                BatchSize::LargeInput,
            )
        });
        let stats = chain.stats(0);
        assert_eq!(stats.failures(), 0, "{label} failed");
        let batches = chain.plugins()[0].batches();
        assert_eq!(
            stats.batch_calls > 0,
            batches,
            "{label}: batched as its world says"
        );
    }
    group.finish();

    let mut group = c.benchmark_group("contract-exchange");
    let result = event_data(256);
    let progress = progress_data(256);
    let exchanges = PER_EVENT
        .iter()
        .filter(|(label, ..)| !label.contains("-0.2-"))
        .map(|(label, file, config)| (*label, *file, *config, &result))
        .chain([("interest-skip", "powers-cost", "interest", &progress)]);
    for (label, file, config, data) in exchanges {
        let Some(chain) = loader.chain(label, file, config) else {
            continue;
        };
        let exchange = || {
            let mut session = chain.session(exchange());
            session.begin(Direction::ToClient);
            // Building the 256-byte event: a small part of the time measured.
            let outcome = session.on_event(Event::message(data.clone()));
            (session, outcome)
        };
        // One outside the timing, so that the checks below hold when a filter skips
        // the row.
        assert!(matches!(exchange().1, Outcome::Forward(_)));
        group.bench_function(label, |b| b.iter(exchange));
        let stats = chain.stats(0);
        assert_eq!(stats.failures(), 0, "{label} failed");
        if label == "interest-skip" {
            assert_eq!(stats.calls, 0, "a plugin not interested was called");
            assert_eq!(stats.instances, 1, "an instance beyond the trial one");
        } else {
            assert!(stats.instances > 1 && stats.calls >= stats.instances - 1);
        }
    }
    group.finish();

    let mut group = c.benchmark_group("power");
    let data = event_data(256);
    for call in POWERS {
        for times in [1, POWER_REPEAT] {
            if call == "none" && times > 1 {
                continue;
            }
            let config = format!("{call}*{times}");
            let Some(chain) = loader.chain("powers-cost", "powers-cost", &config) else {
                break;
            };
            let id = BenchmarkId::new(call, format!("x{times}"));
            bench_event(&mut group, id, &chain, &data);
        }
    }
    group.finish();
    // The calls did what they say (the first event of each row, outside the timing,
    // goes through even when a filter skips the row): the counter is in the store and
    // on /metrics.
    if dist().join("powers-cost.wasm").exists() {
        let store = loader
            .stores
            .for_plugin("powers-cost", StateLimits::default());
        assert!(
            store
                .get("n")
                .is_some_and(|n| n.parse::<u64>().unwrap() >= 1)
        );
        let text = loader.metrics.encode();
        assert!(
            text.lines()
                .any(|l| l.starts_with("sluice_plugin_counter_total")
                    && l.contains("counter=\"messages\"")),
            "no plugin counter on /metrics"
        );
    }
}
