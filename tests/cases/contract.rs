//! Versions of the plugin contract that keep working (`wit/README.md`): a plugin of
//! `sluice:plugin@0.1.0` as first published, of 0.1.0 as revised in place, and of 0.2.0
//! each load, are named by `sluice plugin check`, and run through a real server; and
//! what 0.2 adds to the chain itself: interest, holds of upstream messages, state that
//! outlives a reload.

use std::sync::{Arc, Mutex};

use std::time::Duration;

use serde_json::{Value, json};
use sluice::check::{self, Options};
use sluice::plugin::{Contract, PluginSpec, PowerGrants, StateLimits, World, builtin};
use sluice::proxy::ProxySettings;
use sluice::reload::Trigger;

use super::operations::{scrape, value};
use crate::common::{client, mcp, proxy, raw};

const REQUEST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;

fn dist(name: &str) -> std::path::PathBuf {
    proxy::rust_plugin(name)
}

#[test]
fn plugin_check_names_the_contract_of_each_version() {
    let options = Options::default();
    let cases = [
        // The C reference built against wit/0.1.0 (stream-info of six fields).
        (
            "reference-c-v0.1.0",
            Contract::V0_1Published,
            World::Interceptor,
        ),
        // The same source's plugins built before 0.2, on the revised 0.1.0.
        ("redact", Contract::V0_1Revised, World::Interceptor),
        ("reference-c", Contract::V0_2, World::Plugin),
        ("passthrough-v0.2", Contract::V0_2, World::Plugin),
    ];
    for (name, contract, world) in cases {
        let report = check::check(&dist(name), &options).unwrap();
        assert!(report.passed(), "{name}: {report}");
        assert_eq!(report.contract, Some(contract), "{name}: {report}");
        assert_eq!(report.world, Some(world), "{name}");
        assert!(
            report
                .to_string()
                .contains(&format!("contract:  {}", contract.as_str())),
            "{report}"
        );
    }
    // A built-in fixture of the revised 0.1.0 whose on-stream-start takes 7 fields.
    let demo =
        check::check_bytes(std::path::Path::new("demo.wasm"), builtin::DEMO, &options).unwrap();
    assert_eq!(demo.contract, Some(Contract::V0_1Revised), "{demo}");
}

/// The published 0.1.0 fixture in a real exchange: its `on-stream-start` gets the
/// six-field record (a seven-field one would trap it, under fail-closed a refused
/// call), and it redacts both ways, as it did when it was built.
#[tokio::test]
async fn a_plugin_of_the_published_0_1_0_runs_through_a_real_server() {
    let server = mcp::spawn_mcp_server().await;
    let plugin = proxy::rust("reference-c-v0.1.0", r#"{"redact": ["sk-live-"]}"#);
    let sluice = proxy::start(&proxy::base_of(&server.url), vec![plugin]).await;
    let client = mcp::connect(&format!("{}/mcp", sluice.url())).await;
    let text = client
        .call_text("echo", json!({"text": "key sk-live-123"}))
        .await
        .unwrap();
    assert_eq!(text, "key [REDACTED]123");
    // Redacted on the way to the server (the echo came back with nothing left to do).
    let stats = proxy::stats(&sluice, 0);
    assert_eq!(stats.modified, 1, "{stats:?}");
    assert_eq!(stats.failures(), 0, "{stats:?}");
    sluice.stop().await;
}

/// A plugin that wants only `tools/call` going to the server (`mock`) is never called,
/// and never instantiated, for anything else: initialize, tools/list, the answers.
#[tokio::test]
async fn a_plugin_is_called_only_for_the_messages_it_declared() {
    let server = mcp::spawn_mcp_server().await;
    let mock = proxy::rust("mock", r#"{"tools": {"weather": {"content": []}}}"#);
    let sluice = proxy::start(&proxy::base_of(&server.url), vec![mock]).await;
    let client = mcp::connect(&format!("{}/mcp", sluice.url())).await;
    let tools = client.service.list_all_tools().await.unwrap();
    assert!(!tools.is_empty());
    let before = proxy::stats(&sluice, 0);
    assert_eq!(
        before.calls, 0,
        "not called for initialize or tools/list: {before:?}"
    );
    // Only the load's trial instance so far.
    assert_eq!(before.instances, 1, "{before:?}");
    client
        .call_text("echo", json!({"text": "x"}))
        .await
        .unwrap();
    let after = proxy::stats(&sluice, 0);
    assert_eq!(
        after.calls, 1,
        "one call: the tools/call request: {after:?}"
    );
    assert_eq!(after.instances, 2, "{after:?}");
    sluice.stop().await;
}

/// A delay of every message going to the client (`approval` in delay mode): an SSE
/// stream's progress notifications and its result still arrive, in their order, and
/// each was held (counted by how its hold ended).
#[tokio::test]
async fn upstream_events_held_one_by_one_keep_their_order() {
    let server = mcp::spawn_mcp_server().await;
    let delay = proxy::rust(
        "approval",
        r#"{"delay_ms": 30, "direction": "to-client", "methods": ["tools/call", "notifications/progress"]}"#,
    );
    let mut sluice = proxy::start(&proxy::base_of(&server.url), vec![delay]).await;
    let admin = proxy::serve_admin(&mut sluice).await;
    let client = mcp::connect(&format!("{}/mcp", sluice.url())).await;
    let text = client
        .call_with_progress("count", json!({"n": 4}))
        .await
        .unwrap();
    assert_eq!(text, "counted 4");
    // Every progress notification came before the result (they were sent first and
    // waited in the stream behind one another).
    assert_eq!(client.progress(), vec![1.0, 2.0, 3.0, 4.0]);
    let metrics = scrape(admin).await;
    assert_eq!(
        value(
            &metrics,
            "sluice_plugin_holds_total",
            r#"outcome="delayed""#
        ),
        Some(5.0),
        "4 notifications and the result: {metrics}"
    );
    sluice.stop().await;
}

/// `quota` counts in its state store; a reload of the same plugin name keeps the store
/// (the count goes on), and `keep_on_reload = false` starts a fresh one.
#[tokio::test]
async fn state_outlives_a_reload_of_the_same_plugin_unless_told_not_to() {
    let server = mcp::spawn_mcp_server().await;
    let keep = Arc::new(Mutex::new(true));
    let spec = {
        let keep = keep.clone();
        move || -> PluginSpec {
            PluginSpec {
                powers: PowerGrants {
                    state: StateLimits {
                        keep_on_reload: *keep.lock().unwrap(),
                        ..StateLimits::default()
                    },
                    ..PowerGrants::default()
                },
                ..proxy::rust("quota", r#"{"calls": 2, "per_secs": 3600}"#)
            }
        }
    };
    let config = proxy::config(&proxy::base_of(&server.url), vec![spec()]);
    let sluice =
        sluice::app::start_with_source(config, Box::new(move || Ok(vec![spec()])), Vec::new())
            .await
            .expect("sluice starts");
    let client = mcp::connect(&format!("{}/mcp", sluice.url())).await;
    for _ in 0..2 {
        client
            .call_text("echo", json!({"text": "x"}))
            .await
            .unwrap();
    }
    let refused = |outcome: Result<String, rmcp::service::ServiceError>| matches!(outcome, Err(rmcp::service::ServiceError::McpError(e)) if e.code.0 == -32029);
    assert!(refused(
        client.call_text("echo", json!({"text": "x"})).await
    ));
    let reloader = sluice.reloader().clone();
    tokio::task::spawn_blocking(move || reloader.reload(Trigger::Api))
        .await
        .unwrap()
        .unwrap();
    assert!(
        refused(client.call_text("echo", json!({"text": "x"})).await),
        "the count survived the reload"
    );
    *keep.lock().unwrap() = false;
    let reloader = sluice.reloader().clone();
    tokio::task::spawn_blocking(move || reloader.reload(Trigger::Api))
        .await
        .unwrap()
        .unwrap();
    client
        .call_text("echo", json!({"text": "x"}))
        .await
        .expect("a fresh store: the count starts again");
    sluice.stop().await;
}

/// A hold of an upstream event longer than --upstream-idle-timeout: the upstream is not
/// read during the hold (by design), so its idle clock starts again when sluice comes
/// back for more; the result, sent 300 ms after the hold ended, arrives (it used to be
/// cut as "idle").
#[tokio::test]
async fn a_hold_longer_than_the_idle_timeout_does_not_cut_the_stream() {
    let progress = "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n";
    let result = "id: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let upstream = raw::serve(raw::Script {
        content_type: "text/event-stream",
        chunks: vec![progress.as_bytes().to_vec(), result.as_bytes().to_vec()],
        end: raw::End::Clean,
        gate: Some(gate.clone()),
    })
    .await;
    // The progress notification is delayed 1 s; the idle timeout is 600 ms.
    let delay = proxy::rust(
        "approval",
        r#"{"delay_ms": 1000, "direction": "to-client", "methods": ["notifications/progress"]}"#,
    );
    let settings = ProxySettings {
        upstream_idle_timeout: Some(Duration::from_millis(600)),
        ..ProxySettings::default()
    };
    let sluice = proxy::start_with(&upstream.url(), vec![delay], settings).await;
    // The upstream sends its result 1.3 s in: 300 ms after the hold ended.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1300)).await;
        gate.add_permits(1);
    });
    let events =
        client::events(client::post(&format!("{}/mcp", sluice.url()), REQUEST).await).await;
    let data: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str(e.data_str()).ok())
        .collect();
    assert_eq!(
        data.last().unwrap()["result"],
        serde_json::json!({}),
        "the result arrives: {data:?}"
    );
}

/// Two plugins that hold messages going to the client: a message the first let go and
/// the second holds again keeps its place, and the frames behind it wait behind it
/// (found by review: the first of them used to overtake it, and the re-held message
/// was lost when that one was held too).
#[tokio::test]
async fn a_message_held_again_by_a_later_plugin_keeps_its_place() {
    let body = concat!(
        "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n",
        "id: 2\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":2}}\n\n",
        "id: 3\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
    );
    // One TCP write: the three events arrive together, and two wait behind the first.
    let upstream = raw::serve(raw::sse_script(&[body])).await;
    let config =
        r#"{"delay_ms": 300, "direction": "to-client", "methods": ["notifications/progress"]}"#;
    let d1 = sluice::plugin::PluginSpec {
        name: "d1".into(),
        ..proxy::rust("approval", config)
    };
    let d2 = sluice::plugin::PluginSpec {
        name: "d2".into(),
        ..proxy::rust("approval", config)
    };
    let sluice = proxy::start(&upstream.url(), vec![d1, d2]).await;
    let events =
        client::events(client::post(&format!("{}/mcp", sluice.url()), REQUEST).await).await;
    let ids: Vec<&str> = events.iter().filter_map(|e| e.id.as_deref()).collect();
    assert_eq!(
        ids,
        vec!["1", "2", "3"],
        "every event, in order: {events:?}"
    );
}

/// Shutdown while a client's request is held for approval: waiting requests get
/// JSON-RPC errors when streams are ended after the grace period, held ones too (the
/// hold watches `closing`), and the shutdown does not wait for the hold.
#[tokio::test]
async fn shutdown_answers_a_held_request() {
    use http_body_util::{BodyExt, Full};
    let upstream = raw::serve_fixed(
        "200 OK",
        &["content-type: application/json"],
        r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
    )
    .await;
    let approval = proxy::rust("approval", r#"{"tools": ["x"], "timeout_ms": 20000}"#);
    let sluice = proxy::start(&upstream.url(), vec![approval]).await;
    let url = format!("{}/mcp", sluice.url());
    let call = tokio::spawn(async move {
        let request = hyper::Request::post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(Full::new(bytes::Bytes::from(REQUEST)))
            .unwrap();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        match client.request(request).await {
            Ok(response) => Ok(String::from_utf8(
                response
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes().to_vec())
                    .unwrap_or_default(),
            )
            .unwrap()),
            Err(e) => Err(format!("{e:?}")),
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    sluice.stop().await;
    let answer = call.await.unwrap().expect("an HTTP answer");
    // Told that the proxy shut down (not the hold's own timeout, 20 s later).
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["error"]["code"], -32052, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shut down before it was let through"),
        "{answer}"
    );
}
