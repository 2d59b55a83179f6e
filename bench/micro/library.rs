//! The ready plugins of `plugins/` (issue 26): what one message costs each, through the
//! chain as the proxy runs it, for the three messages that matter to them — a
//! `tools/call` request going to the server, its 1 KiB result going to the client, and a
//! `tools/list` result of 12 tools. Each plugin is configured to let the message
//! through (the common case: the policy allows, the text has no secret), so the row is
//! the price of looking. A plugin that does not want a message is not called for it:
//! its row is then the chain's bookkeeping alone.
//!
//! `library/<plugin>/<message>`; the plugins come from `plugins/dist`
//! (`bash plugins/build-all.sh`), a missing one is skipped with a note. Figures:
//! docs/plugins.md ("Library") and BENCHMARKS.md.

use std::sync::Arc;

use criterion::{BatchSize, BenchmarkId, Criterion};
use serde_json::json;
use sluice::metrics::Metrics;
use sluice::plugin::{
    Capabilities, Chain, Direction, Outcome, PluginSource, Runtime, StateStores, StreamMeta,
};
use sluice::sse::Event;

use super::{Rng, dist, load, text};

/// (plugin file in `plugins/dist` without `.wasm`, config).
const PLUGINS: &[(&str, &str)] = &[
    ("passthrough-v0.2", ""),
    ("secrets", ""),
    (
        "tool-policy",
        r#"{"deny": ["delete_*"], "rules": [{"tools": ["admin_*"], "allow_scopes": ["admin"]}]}"#,
    ),
    ("pin-tools", ""),
    (
        "rate-limit",
        r#"{"limits": [{"per": ["caller", "tool"], "max": 1000000000, "window_secs": 3600, "tools": ["search*"]}]}"#,
    ),
    (
        "faults",
        r#"{"seed": 42, "rules": [{"methods": ["tools/call"], "direction": "both"}]}"#,
    ),
    ("audit", ""),
    ("cookbook-refuse-tool", r#"{"tools": ["delete_file"]}"#),
];

/// The exchange a `tools/call` POST opens.
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

/// The messages: (label, direction, JSON text).
fn messages() -> Vec<(&'static str, Direction, String)> {
    let mut rng = Rng(26);
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "search", "arguments": {"query": "quarterly report", "limit": 10}}});
    let result = json!({"jsonrpc": "2.0", "id": 7, "result": {
        "content": [{"type": "text", "text": text(&mut rng, 1024)}], "isError": false}});
    let tools: Vec<_> = (0..12)
        .map(|i| {
            json!({"name": format!("tool_{i}"), "description": text(&mut rng, 80),
            "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}}})
        })
        .collect();
    let list = json!({"jsonrpc": "2.0", "id": 7, "result": {"tools": tools}});
    vec![
        ("call", Direction::ToServer, call.to_string()),
        ("result-1k", Direction::ToClient, result.to_string()),
        ("tools-list", Direction::ToClient, list.to_string()),
    ]
}

pub(super) fn library(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let metrics = Metrics::new();
    let stores = StateStores::default();
    let messages = messages();
    let mut group = c.benchmark_group("library");
    for (file, config) in PLUGINS {
        let path = dist().join(format!("{file}.wasm"));
        if !path.exists() {
            eprintln!("plugins/dist/{file}.wasm missing: run `bash plugins/build-all.sh`");
            continue;
        }
        let plugin = load(
            &runtime,
            file,
            PluginSource::File(path),
            config,
            Capabilities::default(),
        )
        .unwrap_or_else(|e| panic!("{file} with {config}: {e}"));
        let chain = Arc::new(
            Chain::new(vec![plugin])
                .with_metrics(&metrics)
                .with_state(&stores),
        );
        for (label, direction, data) in &messages {
            // A tools/list result answers a tools/list request.
            let meta = match *label {
                "tools-list" => StreamMeta {
                    rpc_method: Some("tools/list".into()),
                    ..exchange()
                },
                _ => exchange(),
            };
            let mut session = chain.session(meta);
            session.begin(*direction);
            // The first message makes the instance; the rows time the ones after it.
            let outcome = session.on_event(Event::message(data.clone()));
            assert!(
                matches!(outcome, Outcome::Forward(_)),
                "{file} did not pass {label}: configure it to let the message through"
            );
            group.bench_function(BenchmarkId::new(*file, label), |b| {
                b.iter_batched(
                    || Event::message(data.clone()),
                    |event| session.on_event(event),
                    BatchSize::LargeInput,
                )
            });
        }
        assert_eq!(chain.stats(0).failures(), 0, "{file}: a call failed");
    }
    group.finish();
}
