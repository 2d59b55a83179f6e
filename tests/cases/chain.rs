//! Chain semantics: order, both directions, JSON responses, failure policies, output
//! hygiene, and plugins refused at load.

use sluice::plugin::{
    FailurePolicy, Plugin, PluginError, PluginSource, PluginSpec, Runtime, builtin,
};
use sluice::sse::Event;

use crate::common::{client, proxy, raw};

fn sse(events: &[&str]) -> raw::Script {
    raw::Script {
        content_type: "text/event-stream",
        chunks: events
            .iter()
            .map(|d| format!("data: {d}\n\n").into_bytes())
            .collect(),
        end: raw::End::Clean,
        gate: None,
    }
}

async fn events_through(
    script: raw::Script,
    plugins: Vec<PluginSpec>,
    body: &str,
) -> (Vec<Event>, sluice::app::Running, raw::RawUpstream) {
    let upstream = raw::serve(script).await;
    let sluice = proxy::start(&upstream.url(), plugins).await;
    let events = client::events(client::post(&format!("{}/mcp", sluice.url()), body).await).await;
    (events, sluice, upstream)
}

fn data(events: &[Event]) -> Vec<&str> {
    events.iter().map(Event::data_str).collect()
}

#[tokio::test]
async fn plugins_run_in_the_order_given_and_modify_feeds_the_next() {
    let first = proxy::rust("redact", r#"{"patterns":["sk-[0-9]+"]}"#);
    let second = proxy::rust("redact", r#"{"patterns":["REDACTED"],"marker":"X"}"#);
    let script = || sse(&["key sk-123", "plain"]);
    let (forward, ..) = events_through(script(), vec![first.clone(), second.clone()], "{}").await;
    assert_eq!(data(&forward), ["key [X]", "plain"]);
    let (reverse, ..) = events_through(script(), vec![second, first], "{}").await;
    assert_eq!(data(&reverse), ["key [REDACTED]", "plain"]);
}

#[tokio::test]
async fn a_drop_ends_the_chain_for_that_event() {
    let dropper = proxy::rust("dropper", r#"{"methods":["notifications/progress"]}"#);
    let counter = proxy::rust("passthrough", "");
    let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#;
    let (events, sluice, _up) =
        events_through(sse(&[progress, "other"]), vec![dropper, counter], "{}").await;
    assert_eq!(data(&events), ["other"]);
    assert_eq!(
        proxy::stats(&sluice, 1).calls,
        1,
        "the plugin after the drop never saw the dropped event"
    );
}

#[tokio::test]
async fn a_client_message_passes_the_chain_before_it_is_forwarded() {
    let redact = proxy::rust("redact", r#"{"patterns":["hunter2"]}"#);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"password":"hunter2"}}}"#;
    let (_, _sluice, upstream) = events_through(sse(&["ok"]), vec![redact], body).await;
    let seen = upstream.requests.lock().unwrap().join("\n");
    assert!(seen.contains(r#""password":"[REDACTED]""#), "{seen}");
    assert!(!seen.contains("hunter2"), "{seen}");
}

#[tokio::test]
async fn a_filter_sees_only_events_going_to_the_client() {
    let (events, sluice, _up) = events_through(
        sse(&["a", "b"]),
        vec![proxy::wat("pass", builtin::PASS)],
        r#"{"jsonrpc":"2.0","method":"x"}"#,
    )
    .await;
    assert_eq!(data(&events), ["a", "b"]);
    assert_eq!(
        proxy::stats(&sluice, 0).calls,
        2,
        "the POST body did not reach a filter"
    );
}

#[tokio::test]
async fn a_dropped_notification_is_answered_202_and_not_forwarded() {
    let dropper = proxy::rust("dropper", r#"{"methods":["notifications/cancelled"]}"#);
    let upstream = raw::serve(sse(&["x"])).await;
    let sluice = proxy::start(&upstream.url(), vec![dropper]).await;
    let response = client::post(
        &format!("{}/mcp", sluice.url()),
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled"}"#,
    )
    .await;
    assert_eq!(response.status(), 202);
    assert!(upstream.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn json_responses_pass_the_chain_as_one_event() {
    let json = raw::Script {
        content_type: "application/json",
        chunks: vec![br#"{"jsonrpc":"2.0","id":1,"result":{"text":"sk-999"}}"#.to_vec()],
        end: raw::End::Clean,
        gate: None,
    };
    let upstream = raw::serve(json.clone()).await;
    let sluice = proxy::start(
        &upstream.url(),
        vec![proxy::rust("redact", r#"{"patterns":["sk-[0-9]+"]}"#)],
    )
    .await;
    let request = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#;
    let response = client::post(&format!("{}/mcp", sluice.url()), request).await;
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        client::text(response).await,
        r#"{"jsonrpc":"2.0","id":1,"result":{"text":"[REDACTED]"}}"#
    );

    // A dropped response never leaves the client waiting: it becomes an error.
    let upstream = raw::serve(json).await;
    let closed = PluginSpec {
        powers: Default::default(),
        limits: sluice::plugin::PluginLimits {
            failure: FailurePolicy::Closed,
            ..Default::default()
        },
        ..proxy::rust("trap", "")
    };
    let sluice = proxy::start(&upstream.url(), vec![closed]).await;
    let body: serde_json::Value = serde_json::from_str(
        &client::text(client::post(&format!("{}/mcp", sluice.url()), request).await).await,
    )
    .unwrap();
    assert_eq!(body["id"], 1);
    // A failure, not a verdict: its own code, and what failed.
    assert_eq!(body["error"]["code"], sluice::mcp::jsonrpc::PLUGIN_FAILED);
    assert!(body["error"]["message"].as_str().unwrap().contains("trap"));
}

#[tokio::test]
async fn fail_closed_drops_what_the_plugin_failed_on_and_answers_the_request() {
    let closed = |spec: PluginSpec| PluginSpec {
        powers: Default::default(),
        limits: sluice::plugin::PluginLimits {
            failure: FailurePolicy::Closed,
            ..Default::default()
        },
        ..spec
    };
    let script = sse(&["note", r#"{"jsonrpc":"2.0","id":5,"result":{}}"#]);
    let (events, sluice, _up) = events_through(
        script,
        vec![closed(proxy::wat("loop", builtin::LOOP))],
        "{}",
    )
    .await;
    assert_eq!(
        events.len(),
        1,
        "the note was dropped, the response replaced: {events:?}"
    );
    let value: serde_json::Value = serde_json::from_str(events[0].data_str()).unwrap();
    assert_eq!(value["id"], 5);
    assert_eq!(value["error"]["code"], sluice::mcp::jsonrpc::PLUGIN_FAILED);
    assert_eq!(proxy::stats(&sluice, 0).deadlines, 2);
}

#[tokio::test]
async fn a_plugin_over_its_memory_cap_is_stopped_and_the_event_passes_when_it_fails_open() {
    let (events, sluice, _up) = events_through(
        sse(&["a", "b"]),
        vec![proxy::fail_open(proxy::wat("grow", builtin::GROW))],
        "{}",
    )
    .await;
    assert_eq!(data(&events), ["a", "b"]);
    let stats = proxy::stats(&sluice, 0);
    assert_eq!(stats.out_of_memory, 2, "{stats:?}");
}

#[tokio::test]
async fn line_breaks_a_plugin_returns_cannot_inject_fields() {
    let (events, ..) = events_through(
        sse(&["payload"]),
        vec![proxy::wat("crlf", builtin::CRLF)],
        "{}",
    )
    .await;
    assert_eq!(events.len(), 1, "no injected event: {events:?}");
    assert_eq!(events[0].data_str(), "payload");
    // The id is the upstream's (the client's cursor; plugins cannot change it), the
    // event type the plugin's, sanitised.
    assert_eq!(events[0].id, None);
    assert_eq!(events[0].event.as_deref(), Some("xy"));
}

#[test]
fn plugins_that_cannot_work_are_refused_at_load_with_a_reason() {
    let runtime = Runtime::new().unwrap();
    let load = |name: &str, source: PluginSource| {
        Plugin::load(
            &runtime,
            PluginSpec {
                powers: Default::default(),
                name: name.into(),
                source,
                config: String::new(),
                limits: Default::default(),
                capabilities: Default::default(),
            },
        )
    };
    let refused = load("badinit", PluginSource::Bytes(builtin::BADINIT)).unwrap_err();
    assert!(matches!(&refused, PluginError::Init { .. }), "{refused}");
    assert!(refused.to_string().contains("refused"), "{refused}");

    let core = load("core", PluginSource::Bytes(b"\0asm\x01\0\0\0")).unwrap_err();
    assert!(matches!(core, PluginError::CoreModule { .. }), "{core}");

    let missing = load("missing", PluginSource::File("/nonexistent/p.wasm".into())).unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/p.wasm"),
        "{missing}"
    );

    let redact = load("redact", PluginSource::File(proxy::rust_plugin("redact"))).unwrap_err();
    assert!(
        redact
            .to_string()
            .contains("init refused the configuration"),
        "empty config: {redact}"
    );

    let ok = load("pass", PluginSource::Bytes(builtin::PASS)).unwrap();
    assert_eq!(ok.world(), sluice::plugin::World::Filter);
    let demo = load("demo", PluginSource::Bytes(builtin::DEMO)).unwrap();
    assert_eq!(demo.world(), sluice::plugin::World::Interceptor);
}

#[tokio::test]
async fn a_dropped_request_is_answered_with_its_id_as_the_client_wrote_it() {
    // Never reached: the plugin drops every ping.
    let upstream = raw::serve(raw::Script {
        content_type: "application/json",
        chunks: vec![br#"{"jsonrpc":"2.0","id":1,"result":{}}"#.to_vec()],
        end: raw::End::Clean,
        gate: None,
    })
    .await;
    let sluice = proxy::start(
        &upstream.url(),
        vec![proxy::rust("dropper", r#"{"methods":["ping"]}"#)],
    )
    .await;
    // Past 64 bits (through a float it came back as 9.333300000033397e+29, another
    // number to the client), and a string with an escape.
    for id in [
        "933330000003339607008678161066",
        "18446744073709551617",
        r#""x\u0041""#,
    ] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
        let text = client::text(client::post(&format!("{}/mcp", sluice.url()), &body).await).await;
        assert!(text.contains(&format!(r#""id":{id},"#)), "{text}");
        assert!(text.contains("-32050"), "{text}");
    }
    sluice.stop().await;
}
