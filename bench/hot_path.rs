//! The hot path, measured: one event through a plugin chain, and SSE decoding/encoding.
//!
//! Run: `cargo bench --bench hot_path` (numbers and machine in BENCHMARKS.md).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::plugin::{
    Chain, Direction, Plugin, PluginLimits, PluginSource, PluginSpec, Runtime, StreamMeta, builtin,
};
use sluice::sse::{Decoder, Event, encode_event};

const PROGRESS: &str = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1,"total":10}}"#;

fn chain_of(runtime: &Arc<Runtime>, specs: Vec<(&str, PluginSource, &str)>) -> Arc<Chain> {
    let plugins = specs
        .into_iter()
        .map(|(name, source, config)| {
            Plugin::load(
                runtime,
                PluginSpec {
                    powers: Default::default(),
                    name: name.into(),
                    source,
                    config: config.into(),
                    limits: PluginLimits::default(),
                    capabilities: Default::default(),
                },
            )
            .expect("plugin loads")
        })
        .collect();
    Arc::new(Chain::new(plugins))
}

fn plugin_call(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/dist");
    let mut chains = vec![
        ("empty", Arc::new(Chain::empty())),
        (
            "wat-pass",
            chain_of(
                &runtime,
                vec![("pass", PluginSource::Bytes(builtin::PASS), "")],
            ),
        ),
        (
            "wat-demo",
            chain_of(
                &runtime,
                vec![("demo", PluginSource::Bytes(builtin::DEMO), "")],
            ),
        ),
    ];
    if dist.join("passthrough.wasm").exists() {
        chains.push((
            "rust-passthrough",
            chain_of(
                &runtime,
                vec![(
                    "passthrough",
                    PluginSource::File(dist.join("passthrough.wasm")),
                    "",
                )],
            ),
        ));
        chains.push((
            "rust-redact",
            chain_of(
                &runtime,
                vec![(
                    "redact",
                    PluginSource::File(dist.join("redact.wasm")),
                    r#"{"patterns":["sk-[a-z0-9]+"]}"#,
                )],
            ),
        ));
    }
    let mut group = c.benchmark_group("on_event");
    for (name, chain) in &chains {
        let mut session = chain.session(StreamMeta::default());
        session.begin(Direction::ToClient);
        group.bench_function(BenchmarkId::new("progress-event", name), |b| {
            b.iter(|| session.on_event(Event::message(PROGRESS)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("session");
    for (name, chain) in &chains[1..3] {
        group.bench_function(BenchmarkId::new("start-and-one-event", name), |b| {
            b.iter(|| {
                let mut session = chain.session(StreamMeta::default());
                session.begin(Direction::ToClient);
                let out = session.on_event(Event::message(PROGRESS));
                session.end();
                out
            })
        });
    }
    group.finish();
}

fn sse_codec(c: &mut Criterion) {
    let mut wire = BytesMut::new();
    for i in 0..1000 {
        encode_event(
            &Event {
                id: Some(i.to_string()),
                ..Event::message(PROGRESS)
            },
            &mut wire,
        );
    }
    let wire = wire.freeze();
    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("decode-1000-events-16k-chunks", |b| {
        b.iter(|| {
            let mut decoder = Decoder::new(1 << 20);
            let mut out = VecDeque::new();
            for chunk in wire.chunks(16 * 1024) {
                decoder.decode(chunk, &mut out).unwrap();
            }
            out.len()
        })
    });
    let events: Vec<Event> = (0..1000)
        .map(|i| Event {
            id: Some(i.to_string()),
            ..Event::message(PROGRESS)
        })
        .collect();
    group.bench_function("encode-1000-events", |b| {
        b.iter(|| {
            let mut out = BytesMut::with_capacity(wire.len());
            for e in &events {
                encode_event(e, &mut out);
            }
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, plugin_call, sse_codec);
criterion_main!(benches);
