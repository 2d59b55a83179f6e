//! A plugin is a guard: nothing passes it unexamined unless the operator said so. Each
//! case is an attack that got a message past a plugin (or stalled the proxy) on the
//! defaults before they were hardened, tried the way an attacker would.
//!
//! - A client or a server makes a plugin fail (a padded message runs it out of memory,
//!   past its deadline or its fuel; its own result is oversized or malformed): the
//!   message is dropped, never passed, and a waiting client gets a JSON-RPC error that
//!   names the plugin and what to change.
//! - A plugin's `modify` splices a second message into a batch: refused.
//! - A client message means one thing to a plugin and another to the server (a repeated
//!   member name, an escaped method): refused before any plugin sees it.
//! - One request asks for millions of plugin calls, or for seconds of plugin time: it is
//!   refused or cut, and other streams keep flowing meanwhile.
//! - A component with several memories gets one memory cap, not one per memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use rmcp::ServiceError;
use serde_json::{Value, json};
use sluice::plugin::{FailurePolicy, PluginLimits, PluginSpec, builtin};
use sluice::proxy::ProxySettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::{client, mcp, proxy, raw};

/// The reference filter (Python or Rust) with `config`, named `reference`.
fn reference(language: &str, config: Value) -> PluginSpec {
    let mut spec = proxy::rust(&format!("reference-{language}"), &config.to_string());
    spec.name = "reference".into();
    spec
}

fn with_limits(spec: PluginSpec, limits: PluginLimits) -> PluginSpec {
    PluginSpec { limits, ..spec }
}

/// `n` bytes of padding inside a JSON string.
fn pad(n: usize) -> String {
    "x".repeat(n)
}

/// A `tools/call` of `echo` whose text is padded to about `bytes`.
fn padded_call(id: u64, bytes: usize) -> String {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": pad(bytes)}}
    })
    .to_string()
}

/// An upstream that answers every POST with one JSON-RPC result and records what it
/// received (the proof that a message did or did not get past the chain).
async fn recording_upstream() -> raw::RawUpstream {
    raw::serve(raw::Script {
        content_type: "application/json",
        chunks: vec![br#"{"jsonrpc":"2.0","id":1,"result":{}}"#.to_vec()],
        end: raw::End::Clean,
        gate: None,
    })
    .await
}

/// What the upstream received, bodies included.
fn received(upstream: &raw::RawUpstream) -> String {
    upstream.requests.lock().unwrap().join("\n")
}

/// POSTs `body` through a proxy running `chain` in front of `upstream`; the status and
/// the body parsed as JSON (`null` when it is not).
async fn post(sluice: &sluice::app::Running, body: &str) -> (StatusCode, Value) {
    let response = client::post(&format!("{}/mcp", sluice.url()), body).await;
    let status = response.status();
    let text = client::text(response).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The JSON-RPC error of a single response: (code, message).
fn rpc_error(answer: &Value) -> (i64, String) {
    (
        answer["error"]["code"].as_i64().unwrap_or_default(),
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

// Item 1: a failing plugin fails closed, by default.

#[tokio::test]
async fn a_padded_tools_call_cannot_run_a_python_guard_out_of_memory_and_past_it() {
    // A real rmcp server and client; the Python reference filter refuses tools/call.
    let server = mcp::spawn_mcp_server().await;
    let sluice = proxy::start(
        &proxy::base_of(&server.url),
        vec![reference("python", json!({"drop_methods": ["tools/call"]}))],
    )
    .await;
    let client = mcp::connect(&format!("{}/mcp", sluice.url())).await;
    for bytes in [10, 1_000_000, 3_000_000] {
        let called = client.call_text("echo", json!({"text": pad(bytes)})).await;
        let Err(ServiceError::McpError(error)) = called else {
            panic!("a {bytes}-byte tools/call got past the guard: {called:?}");
        };
        if bytes < 3_000_000 {
            // Read and dropped by the plugin's verdict.
            assert_eq!(error.code.0, -32050, "{error:?}");
        } else {
            // Too big for the plugin's memory: dropped all the same, and the client is
            // told which plugin, why, and what the operator can change.
            assert_eq!(error.code.0, -32053, "{error:?}");
            for words in ["plugin reference", "3.0 MB", "out of memory", "memory_mib"] {
                assert!(error.message.contains(words), "{words}: {}", error.message);
            }
        }
    }
    let stats = proxy::stats(&sluice, 0);
    assert!(stats.out_of_memory >= 1, "{stats:?}");
    drop(client);
    sluice.stop().await;
}

#[tokio::test]
async fn a_padded_response_cannot_run_a_python_redactor_out_of_memory_and_leak_its_secret() {
    let secret = "sk-live-abc123";
    let response = |bytes: usize| {
        json!({"jsonrpc": "2.0", "id": 1, "result": {
            "content": [{"type": "text", "text": format!("{secret} {}", pad(bytes))}]
        }})
        .to_string()
    };
    for bytes in [10, 3_000_000] {
        let event = format!("id: 1\ndata: {}\n\n", response(bytes));
        let upstream = raw::serve(raw::sse_script(&[&event])).await;
        let sluice = proxy::start(
            &upstream.url(),
            vec![reference("python", json!({"redact": [secret]}))],
        )
        .await;
        let request = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
        let body =
            client::text(client::post(&format!("{}/mcp", sluice.url()), request).await).await;
        assert!(!body.contains(secret), "the secret leaked at {bytes} bytes");
        if bytes > 10 {
            assert!(body.contains("-32053"), "{}", &body[..body.len().min(500)]);
            assert!(body.contains("failed on the response (3.0 MB)"), "{body}");
            assert!(body.contains("memory_mib"), "{body}");
            assert!(proxy::stats(&sluice, 0).out_of_memory >= 1);
        } else {
            assert!(body.contains("[REDACTED]"), "{body}");
        }
        sluice.stop().await;
    }
}

/// Sends `body` through `spec` alone to a recording upstream: the proxy's answer, and
/// whether `marker` reached the upstream.
async fn to_server(spec: PluginSpec, body: &str, marker: &str) -> (StatusCode, Value, bool) {
    let upstream = recording_upstream().await;
    let sluice = proxy::start(&upstream.url(), vec![spec]).await;
    let (status, answer) = post(&sluice, body).await;
    sluice.stop().await;
    (status, answer, received(&upstream).contains(marker))
}

#[tokio::test]
async fn every_failure_kind_on_a_client_request_fails_closed_with_an_error_naming_it() {
    let drop_calls = || json!({"drop_methods": ["tools/call"]});
    let cases: Vec<(&str, PluginSpec, String, &str)> = vec![
        (
            // The Rust filter in a small memory: padding runs it out.
            "out_of_memory",
            with_limits(
                reference("rust", drop_calls()),
                PluginLimits {
                    memory_bytes: 3 << 20,
                    ..Default::default()
                },
            ),
            padded_call(7, 3_500_000),
            "raise memory_mib",
        ),
        (
            // A fuel budget the padding uses up (deterministic, unlike time): the
            // redactor reads every byte.
            "fuel",
            with_limits(
                reference("rust", json!({"redact": ["sk-live-"]})),
                PluginLimits {
                    fuel: Some(2_000_000),
                    deadline: Duration::from_secs(5),
                    ..Default::default()
                },
            ),
            padded_call(7, 3_000_000),
            "raise fuel",
        ),
        (
            // A plugin that never returns on a client message.
            "deadline",
            proxy::wat("reference", builtin::HANG),
            padded_call(7, 100),
            "raise deadline_ms",
        ),
        (
            // The redactor's own output outgrows the event limit (4 MiB); time enough
            // for it to get there.
            "oversized",
            with_limits(
                reference("rust", json!({"redact": ["x"]})),
                PluginLimits {
                    deadline: Duration::from_secs(5),
                    memory_bytes: 64 << 20,
                    ..Default::default()
                },
            ),
            padded_call(7, 1_000_000),
            "over the event size limit",
        ),
        (
            // The operator's own bound: the plugin never sees the message.
            "too_large",
            with_limits(
                reference("rust", drop_calls()),
                PluginLimits {
                    max_message_bytes: Some(1 << 20),
                    ..Default::default()
                },
            ),
            padded_call(7, 2_000_000),
            "max_message_bytes",
        ),
    ];
    for (kind, spec, body, hint) in cases {
        let (status, answer, reached) = to_server(spec, &body, "tools/call").await;
        assert!(!reached, "{kind}: the tools/call reached the upstream");
        assert_eq!(status, StatusCode::OK, "{kind}");
        let (code, message) = rpc_error(&answer);
        assert_eq!(
            (code, answer["id"].as_i64()),
            (-32053, Some(7)),
            "{kind}: {answer}"
        );
        assert!(message.contains("plugin reference"), "{kind}: {message}");
        assert!(message.contains(hint), "{kind}: {message}");
    }
}

#[tokio::test]
async fn a_small_message_under_the_same_limits_is_judged_by_the_plugin() {
    // The limits of the cases above leave ordinary messages to the plugin's verdict.
    let spec = with_limits(
        reference("rust", json!({"drop_methods": ["tools/call"]})),
        PluginLimits {
            memory_bytes: 3 << 20,
            fuel: Some(2_000_000),
            max_message_bytes: Some(1 << 20),
            ..Default::default()
        },
    );
    let (_, answer, reached) = to_server(spec.clone(), &padded_call(7, 100), "tools/call").await;
    assert!(!reached);
    assert_eq!(rpc_error(&answer).0, -32050, "{answer}");
    let ping = r#"{"jsonrpc":"2.0","id":8,"method":"ping"}"#;
    let (status, _, reached) = to_server(spec, ping, "ping").await;
    assert_eq!(status, StatusCode::OK);
    assert!(reached, "an allowed message is forwarded");
}

#[tokio::test]
async fn every_failure_kind_on_a_server_message_fails_closed() {
    // The stream: a notification, then the response, both meeting the failing plugin.
    let upstream = raw::serve(raw::sse_script(&[
        "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"data\":\"sk-live-1\"}}\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"text\":\"sk-live-2\"}}\n\n",
    ]))
    .await;
    let cases = [
        ("deadline", proxy::wat("plugin", builtin::LOOP)),
        ("trap", proxy::wat("plugin", builtin::TRAP)),
        ("out_of_memory", proxy::wat("plugin", builtin::GROW)),
    ];
    for (kind, spec) in cases {
        let sluice = proxy::start(&upstream.url(), vec![spec]).await;
        let request = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#;
        let response = client::post(&format!("{}/mcp", sluice.url()), request).await;
        let events = client::events(response).await;
        let data: Vec<&str> = events.iter().map(|e| e.data_str()).collect();
        assert!(
            !data.iter().any(|d| d.contains("sk-live")),
            "{kind}: {data:?}"
        );
        // The notification is gone; the response is an error with its id.
        assert_eq!(data.len(), 1, "{kind}: {data:?}");
        let answer: Value = serde_json::from_str(data[0]).unwrap();
        assert_eq!(answer["id"], 1, "{kind}");
        assert_eq!(answer["error"]["code"], -32053, "{kind}: {answer}");
        assert_eq!(proxy::stats(&sluice, 0).failures(), 2, "{kind}");
        sluice.stop().await;
    }
}

#[tokio::test]
async fn fail_open_is_an_explicit_choice_for_observers() {
    let spec = PluginSpec {
        powers: Default::default(),
        limits: PluginLimits {
            failure: FailurePolicy::Open,
            ..Default::default()
        },
        ..proxy::wat("observer", builtin::HANG)
    };
    let (status, _, reached) = to_server(spec, &padded_call(7, 100), "tools/call").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        reached,
        "fail-open passes the message the observer failed on"
    );
}

// Item 2: a modify is one message, never a splice.

#[tokio::test]
async fn a_modify_that_returns_two_messages_is_refused_not_spliced_into_the_batch() {
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#;
    for policy in [FailurePolicy::Closed, FailurePolicy::Open] {
        let spec = PluginSpec {
            powers: Default::default(),
            limits: PluginLimits {
                failure: policy,
                ..Default::default()
            },
            ..proxy::wat("splice", builtin::SPLICE)
        };
        let (status, answer, reached) = to_server(spec, batch, "evil").await;
        assert!(
            !reached,
            "{policy:?}: the spliced tools/call reached the upstream"
        );
        assert_eq!(status, StatusCode::OK);
        if policy == FailurePolicy::Closed {
            let answers = answer.as_array().expect("a batch of errors");
            assert_eq!(answers.len(), 2, "{answer}");
            for answer in answers {
                let (code, message) = rpc_error(answer);
                assert_eq!(code, -32053, "{answer}");
                assert!(message.contains("not exactly one JSON object"), "{message}");
            }
        }
    }
    // Not a splice: outside a batch too, a JSON-RPC message stays one.
    let upstream = raw::serve(raw::sse_script(&[
        "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
    ]))
    .await;
    let sluice = proxy::start(&upstream.url(), vec![proxy::wat("splice", builtin::SPLICE)]).await;
    let request = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let body = client::text(client::post(&format!("{}/mcp", sluice.url()), request).await).await;
    // The request was refused (so no response came to be spliced).
    assert!(!body.contains("evil"), "{body}");
    assert!(body.contains("-32053"), "{body}");
    assert_eq!(proxy::stats(&sluice, 0).malformed, 1);
    assert!(received(&upstream).is_empty());
    sluice.stop().await;
}

// Item 3: every plugin sees what the server will see.

#[tokio::test]
async fn a_repeated_member_name_is_refused_before_any_plugin_sees_it() {
    let dropper = || proxy::rust("dropper", r#"{"methods":["tools/call"]}"#);
    for body in [
        // Python and JavaScript servers run the last `method`.
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"echo"}}"#,
        // A tool policy reads the first `name`; the server the last.
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"rm"}}"#,
        // In a batch.
        r#"[{"jsonrpc":"2.0","id":2,"method":"ping"},{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}]"#,
    ] {
        let (status, answer, reached) = to_server(dropper(), body, "tools/call").await;
        assert!(!reached, "{body} reached the upstream");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (code, message) = rpc_error(&answer);
        assert_eq!((code, &answer["id"]), (-32600, &Value::Null), "{answer}");
        assert!(message.contains("appears twice"), "{message}");
    }
}

#[tokio::test]
async fn an_escaped_method_is_refused_before_a_byte_rule_can_miss_it() {
    // The reference filter's method rule reads bytes, by design; every server decodes
    // `tools\/call` and `m\u0065thod` to what the rule would have dropped.
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"echo"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"m\u0065thod":"tools/call","params":{"name":"echo"}}"#,
    ] {
        let spec = reference("rust", json!({"drop_methods": ["tools/call"]}));
        let (status, answer, reached) = to_server(spec, body, "echo").await;
        assert!(!reached, "{body} reached the upstream");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(rpc_error(&answer).1.contains("escape"), "{answer}");
    }
}

#[tokio::test]
async fn the_dropper_fails_closed_on_a_message_it_cannot_parse() {
    // Broken JSON the host does not refuse (it is the plugin's to judge): the example
    // dropper drops what it cannot read rather than pass it.
    let upstream = raw::serve(raw::sse_script(&[
        "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\" oops}\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n",
    ]))
    .await;
    let sluice = proxy::start(
        &upstream.url(),
        vec![proxy::rust("dropper", r#"{"methods":["tools/call"]}"#)],
    )
    .await;
    let events = client::events(client::post(&format!("{}/mcp", sluice.url()), "{}").await).await;
    let data: Vec<&str> = events.iter().map(|e| e.data_str()).collect();
    assert_eq!(
        data,
        [r#"{"jsonrpc":"2.0","method":"notifications/message"}"#],
        "the broken one is dropped, the readable one passes"
    );
    sluice.stop().await;
}

#[tokio::test]
async fn text_a_server_would_decode_otherwise_cannot_hide_a_message_from_the_plugins() {
    // A byte-order mark (Python's json.loads strips it from bytes), UTF-16 (it decodes
    // that too: all-ASCII UTF-16 is valid UTF-8 full of NULs), broken JSON in a batch,
    // and a batch item that is not an object (a plugin's modify of it could splice).
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
    let utf16: String = call.chars().flat_map(|c| [c, '\0']).collect();
    for (body, code) in [
        (format!("\u{feff}{call}"), -32700),
        (utf16, -32700),
        (format!("[{call},{{\"x\":NaN}}]"), -32700),
        (
            format!("[{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}},0,{call}]"),
            -32600,
        ),
    ] {
        let spec = reference("rust", json!({"drop_methods": ["tools/call"]}));
        let (status, answer, reached) = to_server(spec, &body, "echo").await;
        assert!(!reached, "{body:?} reached the upstream");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(rpc_error(&answer).0, code, "{answer}");
    }
}

// Item 6: bounded plugin work per request.

#[tokio::test]
async fn a_batch_of_two_million_messages_is_refused_before_any_plugin_call() {
    let mut body = String::with_capacity(4 << 20);
    body.push('[');
    while body.len() < (4 << 20) - 4 {
        body.push_str("1,");
    }
    body.push_str("1]");
    let upstream = recording_upstream().await;
    let sluice = proxy::start(&upstream.url(), vec![reference("rust", json!({}))]).await;
    let (status, answer) = post(&sluice, &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (code, message) = rpc_error(&answer);
    assert_eq!(code, -32600);
    assert!(message.contains("more than 100 messages"), "{message}");
    assert_eq!(proxy::stats(&sluice, 0).calls, 0);
    assert!(received(&upstream).is_empty());
    sluice.stop().await;
}

#[tokio::test]
async fn a_server_batch_over_the_limit_is_not_handed_to_the_plugins() {
    // 150 responses in one event: past max_batch (100) the plugins never see them, so
    // a redactor cannot be flooded; each becomes an error with its id.
    let items: Vec<String> = (1..=150)
        .map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"result":{{"text":"sk-live-{i}"}}}}"#))
        .collect();
    let event = format!("data: [{}]\n\n", items.join(","));
    let upstream = raw::serve(raw::sse_script(&[&event])).await;
    let sluice = proxy::start(&upstream.url(), vec![proxy::rust("passthrough", "")]).await;
    let events = client::events(client::post(&format!("{}/mcp", sluice.url()), "{}").await).await;
    assert_eq!(events.len(), 1);
    assert!(!events[0].data_str().contains("sk-live"));
    let answers: Vec<Value> = serde_json::from_str(events[0].data_str()).unwrap();
    assert_eq!(answers.len(), 150);
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["id"], i + 1);
        assert_eq!(answer["error"]["code"], -32052, "{answer}");
    }
    assert_eq!(proxy::stats(&sluice, 0).calls, 0, "no plugin saw them");
    sluice.stop().await;
}

/// An SSE upstream that sends an event every `every` on each stream, `count` in all.
async fn ticking_upstream(every: Duration, count: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                for i in 0..count {
                    let event = format!(
                        "data: {{\"jsonrpc\":\"2.0\",\"method\":\"tick\",\"params\":{{\"i\":{i}}}}}\n\n"
                    );
                    let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                    if stream.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(every).await;
                }
                let _ = stream.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    format!("http://{addr}")
}

// Multi-thread with two workers, like the sluice binary on this kind of machine: before
// plugin work left the workers, the attack's requests held both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_requests_neither_stall_other_streams_nor_run_past_their_plugin_time() {
    // Ticks for longer than any attack could last; the test stops reading when done.
    let upstream = ticking_upstream(Duration::from_millis(50), 100_000).await;
    // `hang` never returns on a client message: each costs the plugin's whole deadline.
    let sluice = Arc::new(proxy::start(&upstream, vec![proxy::wat("hang", builtin::HANG)]).await);
    let response = client::post(&format!("{}/mcp", sluice.url()), "").await;
    let mut stream = sluice::upstream::SseEvents::new(response.into_body(), 1 << 20);
    // The stream flows before the attack.
    for _ in 0..3 {
        stream.next().await.expect("an event").expect("a frame");
    }
    let batch = |n: u64| {
        let items: Vec<String> = (0..100)
            .map(|i| {
                format!(
                    r#"{{"jsonrpc":"2.0","id":{},"method":"ping"}}"#,
                    n * 1000 + i
                )
            })
            .collect();
        format!("[{}]", items.join(","))
    };
    let attackers: Vec<_> = (0..8)
        .map(|n| {
            let sluice = sluice.clone();
            let body = batch(n);
            tokio::spawn(async move { post(&sluice, &body).await })
        })
        .collect();
    // Every gap between two events while the attack lasts.
    let mut widest = Duration::ZERO;
    let mut last = Instant::now();
    let mut seen = 0;
    while attackers.iter().any(|a| !a.is_finished()) {
        tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("the stream keeps flowing")
            .expect("an event")
            .expect("a frame");
        widest = widest.max(last.elapsed());
        last = Instant::now();
        seen += 1;
    }
    let (mut failed, mut out_of_time) = (0, 0);
    for attacker in attackers {
        let (status, answer) = attacker.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let answers = answer.as_array().expect("a batch of errors");
        assert_eq!(answers.len(), 100, "every request is answered");
        for answer in answers {
            match rpc_error(answer).0 {
                -32053 => failed += 1,
                -32054 => out_of_time += 1,
                other => panic!("unexpected code {other}: {answer}"),
            }
        }
    }
    // 100 calls of a deadline each are well past a second: the budget cut every batch.
    assert!(
        out_of_time >= 8,
        "{failed} failed, {out_of_time} out of time"
    );
    // A liveness bound, 60 ticks wide: before plugin work left the runtime's threads,
    // the stream stood still for as long as the attack lasted.
    assert!(
        widest < Duration::from_secs(3),
        "the stream stalled for {widest:?} ({seen} events during the attack)"
    );
    Arc::into_inner(sluice).unwrap().stop().await;
}

// Item 7: one memory cap per instance.

#[tokio::test]
async fn a_component_with_several_memories_gets_one_memory_cap() {
    let upstream = raw::serve(raw::sse_script(&["data: a\n\n", "data: b\n\n"])).await;
    let spec = with_limits(
        proxy::wat("memories", builtin::MEMORIES),
        PluginLimits {
            memory_bytes: 1 << 20,
            ..Default::default()
        },
    );
    let sluice = proxy::start(&upstream.url(), vec![spec]).await;
    let events = client::events(client::post(&format!("{}/mcp", sluice.url()), "{}").await).await;
    let stats = proxy::stats(&sluice, 0);
    // Four memories of up to 1 MiB each would be nearly 4 MiB: refused at the second.
    assert!(events.is_empty(), "{events:?}");
    assert_eq!((stats.out_of_memory, stats.passed), (2, 0), "{stats:?}");
    sluice.stop().await;
}

#[tokio::test]
async fn the_defaults_are_the_hardened_ones() {
    // What the attacks above meet without any setting.
    let settings = ProxySettings::default();
    assert_eq!(settings.message_limits.max_batch, 100);
    assert_eq!(
        settings.message_limits.plugin_budget,
        Duration::from_secs(1)
    );
    assert!(settings.plugin_workers >= 1);
    assert_eq!(PluginLimits::default().failure, FailurePolicy::Closed);
}
