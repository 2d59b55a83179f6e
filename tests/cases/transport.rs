//! Streamable HTTP details that real servers only show now and then, against a scripted
//! upstream: priming events, `retry:`, the SSE id as the client's cursor, statuses the
//! client must see unchanged, `Cache-Control`, the `Host` check, JSON-RPC batches, the
//! legacy transport's `endpoint` event, and what plugins are told about a stream.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use serde_json::{Value, json};
use sluice::proxy::ProxySettings;
use sluice::sse::{Event, Frame};

use crate::common::raw::sse_script;
use crate::common::{client, proxy, raw};

/// The reference filter dropping the given JSON-RPC methods.
fn dropping(methods: &[&str]) -> sluice::plugin::PluginSpec {
    let mut spec = proxy::rust(
        "reference-rust",
        &json!({ "drop_methods": methods }).to_string(),
    );
    spec.name = "reference".into();
    spec
}

fn event(id: Option<&str>, data: Option<&str>) -> Frame {
    Frame::Event(Event {
        id: id.map(str::to_string),
        data: data.map(str::to_string),
        ..Event::default()
    })
}

#[tokio::test]
async fn priming_events_retry_and_keepalives_pass_untouched_and_drops_keep_the_cursor() {
    // As a 2025-11-25 server with an event store writes it: a priming event (id and an
    // empty data line), a retry hint, keep-alives, then messages with ids.
    let upstream = raw::serve(sse_script(&[
        "id: 0\ndata:\n\n",
        "retry: 3000\n\n",
        ": keep-alive\n\n",
        "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n",
        "id: 2\nretry: 500\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n",
        "id: 3\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
    ]))
    .await;
    // `streaminfo` rewrites every event it sees: what it did not see is untouched.
    let sluice = proxy::start(
        &upstream.url(),
        vec![
            dropping(&["notifications/progress"]),
            proxy::rust("streaminfo", ""),
        ],
    )
    .await;
    let response = client::post(
        &format!("{}/mcp", sluice.url()),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
    )
    .await;
    assert_eq!(response.headers()["cache-control"], "no-cache");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let (frames, clean) = client::frames(response).await;
    assert!(clean);
    let retry = |ms| {
        Frame::Event(Event {
            retry: Some(ms),
            ..Event::default()
        })
    };
    let Some(Frame::Event(last)) = frames.last().cloned() else {
        panic!("no final event: {frames:?}");
    };
    let seen: Value = serde_json::from_str(last.data_str()).unwrap();
    assert_eq!(seen["data"], r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
    assert_eq!(
        frames,
        vec![
            // Transport control, not messages: no plugin saw them.
            event(Some("0"), Some("")),
            retry(3000),
            Frame::Comment(" keep-alive".into()),
            // Dropped notifications still move the client's cursor (and keep retry).
            event(Some("1"), None),
            Frame::Event(Event {
                id: Some("2".into()),
                retry: Some(500),
                ..Event::default()
            }),
            event(Some("3"), Some(last.data_str())),
        ]
    );
    assert_eq!(proxy::stats(&sluice, 0).dropped, 2);
}

#[tokio::test]
async fn a_plugin_cannot_move_the_cursor_and_sees_the_request_that_opened_the_stream() {
    let upstream = raw::serve(sse_script(&[
        "id: stream-7_é/42\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
    ]))
    .await;
    let sluice = proxy::start(&upstream.url(), vec![proxy::rust("streaminfo", "")]).await;
    let request = Request::post(format!("{}/mcp", sluice.url()))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .header("mcp-session-id", "s-1")
        .body(Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
        )))
        .unwrap();
    let events = client::events(client::send(request).await).await;
    assert_eq!(events.len(), 1);
    // The plugin set `plugin-changed-...`; the upstream's id is the client's cursor.
    assert_eq!(events[0].id.as_deref(), Some("stream-7_é/42"));
    let seen: Value = serde_json::from_str(events[0].data_str()).unwrap();
    assert_eq!(seen["direction"], "to-client");
    assert_eq!(seen["rpc_method"], "tools/call");
    assert_eq!(seen["protocol_version"], "2025-06-18");
    assert_eq!(seen["session"], true);
    assert_eq!(seen["path"], "/mcp");
    assert_eq!(
        seen["id"], "stream-7_é/42",
        "the plugin saw the upstream id"
    );

    // The upstream got the plugin's to-server rewrite, describing the request itself.
    let sent = upstream.requests.lock().unwrap()[0].clone();
    let body = &sent[sent.find("\r\n\r\n").unwrap() + 4..];
    let upstream_saw: Value = serde_json::from_str(body).unwrap();
    assert_eq!(upstream_saw["direction"], "to-server");
    assert_eq!(upstream_saw["rpc_method"], "tools/call");
}

#[tokio::test]
async fn initialize_tells_plugins_the_offered_protocol_version() {
    let upstream = raw::serve(sse_script(&[
        "data: {\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{}}\n\n",
    ]))
    .await;
    let sluice = proxy::start(&upstream.url(), vec![proxy::rust("streaminfo", "")]).await;
    let events = client::events(
        client::post(
            &format!("{}/mcp", sluice.url()),
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2026-07-28","capabilities":{}}}"#,
        )
        .await,
    )
    .await;
    let seen: Value = serde_json::from_str(events[0].data_str()).unwrap();
    assert_eq!(seen["rpc_method"], "initialize");
    assert_eq!(seen["protocol_version"], "2026-07-28");
    assert_eq!(seen["session"], false, "no session is required");
}

#[tokio::test]
async fn error_statuses_reach_the_client_unchanged_even_with_plugins() {
    let cases: [(&str, &[&str], &str); 4] = [
        (
            "404 Not Found",
            &["content-type: application/json"],
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"Session not found"}}"#,
        ),
        (
            "400 Bad Request",
            &["content-type: application/json"],
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Bad Request: sk-live-1"}}"#,
        ),
        (
            "401 Unauthorized",
            &[
                "content-type: application/json",
                r#"www-authenticate: Bearer resource_metadata="http://127.0.0.1/.well-known/oauth-protected-resource""#,
            ],
            r#"{"error":"invalid_token"}"#,
        ),
        ("405 Method Not Allowed", &["allow: POST, DELETE"], ""),
    ];
    for (status, headers, body) in cases {
        let upstream = raw::serve_fixed(status, headers, body).await;
        // A redactor that would change the 400 body if it passed the chain.
        let sluice = proxy::start(
            &upstream.url(),
            vec![proxy::rust("redact", r#"{"patterns":["sk-live-[0-9]+"]}"#)],
        )
        .await;
        let response = client::post(
            &format!("{}/mcp", sluice.url()),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        )
        .await;
        assert_eq!(
            response.status().as_u16().to_string(),
            status.split(' ').next().unwrap(),
            "{status}"
        );
        for header in headers {
            let (name, value) = header.split_once(": ").unwrap();
            assert_eq!(response.headers()[name], value, "{status}: {name}");
        }
        assert_eq!(client::text(response).await, body, "{status}");
    }
}

#[tokio::test]
async fn a_foreign_host_is_refused_unless_allowed() {
    let upstream = raw::serve(sse_script(&["data: {}\n\n"])).await;
    let with_host = |url: String, host: &str| {
        Request::post(url)
            .header("host", host)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };
    let sluice = proxy::start(&upstream.url(), vec![]).await;
    let url = format!("{}/mcp", sluice.url());
    let refused = client::send(with_host(url.clone(), "rebind.evil.example:8080")).await;
    assert_eq!(refused.status(), 403);
    let message = client::text(refused).await;
    assert!(message.contains("rebind.evil.example"), "{message}");
    assert!(message.contains("--allow-host"), "{message}");
    assert!(
        upstream.requests.lock().unwrap().is_empty(),
        "nothing reached the upstream"
    );
    let ok = client::send(with_host(url, "localhost:1234")).await;
    assert_eq!(ok.status(), 200);

    let allowing = proxy::start_with(
        &upstream.url(),
        vec![],
        ProxySettings {
            allowed_hosts: vec!["mcp.internal".into()],
            ..ProxySettings::default()
        },
    )
    .await;
    let url = format!("{}/mcp", allowing.url());
    let ok = client::send(with_host(url, "mcp.internal:8080")).await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_batch_passes_the_chain_one_message_at_a_time() {
    // The upstream answers the one request that is left.
    let upstream = raw::serve_fixed(
        "200 OK",
        &["content-type: application/json"],
        r#"[{"jsonrpc":"2.0","id":2,"result":{"tools":[]}}]"#,
    )
    .await;
    let sluice = proxy::start(&upstream.url(), vec![dropping(&["tools/call"])]).await;
    let url = format!("{}/mcp", sluice.url());
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm"}}, {"jsonrpc":"2.0","id":2,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#;
    let response = client::post(&url, batch).await;
    assert_eq!(response.status(), 200);
    let answer: Value = serde_json::from_str(&client::text(response).await).unwrap();
    let answer = answer
        .as_array()
        .expect("a batch is answered with an array");
    assert_eq!(answer.len(), 2, "{answer:?}");
    assert_eq!(answer[0]["id"], 2);
    assert_eq!(answer[1]["id"], 1);
    assert_eq!(answer[1]["error"]["code"], -32050);
    // The upstream got the rest of the batch, each message byte for byte.
    let sent = upstream.requests.lock().unwrap()[0].clone();
    let body = &sent[sent.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(
        body,
        r#"[{"jsonrpc":"2.0","id":2,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#
    );
    assert_eq!(
        proxy::stats(&sluice, 0).calls,
        3 + 1,
        "three messages out, one back"
    );

    // A batch the plugin empties is answered by the proxy alone.
    let only_calls = r#"[{"jsonrpc":"2.0","id":"a","method":"tools/call"},{"jsonrpc":"2.0","id":"b","method":"tools/call"}]"#;
    let answer: Value =
        serde_json::from_str(&client::text(client::post(&url, only_calls).await).await).unwrap();
    assert_eq!(answer[0]["id"], "a");
    assert_eq!(answer[1]["id"], "b");
    assert_eq!(
        upstream.requests.lock().unwrap().len(),
        1,
        "nothing more went upstream"
    );
}

#[tokio::test]
async fn a_batch_from_the_server_is_split_and_reassembled() {
    let upstream = raw::serve(sse_script(&[concat!(
        "id: 9\ndata: [{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}},",
        "{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"b\":1,\"a\":2}}]\n\n",
        "id: 10\ndata: [{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}]\n\n",
    )]))
    .await;
    let sluice = proxy::start(&upstream.url(), vec![dropping(&["notifications/progress"])]).await;
    let (frames, _) = client::frames(
        client::post(
            &format!("{}/mcp", sluice.url()),
            r#"{"jsonrpc":"2.0","id":5,"method":"x"}"#,
        )
        .await,
    )
    .await;
    assert_eq!(
        frames,
        vec![
            event(
                Some("9"),
                Some(r#"[{"jsonrpc":"2.0","id":5,"result":{"b":1,"a":2}}]"#)
            ),
            event(Some("10"), None),
        ]
    );
}

#[tokio::test]
async fn the_legacy_endpoint_event_points_at_the_proxy() {
    // The upstream lives under /api; clients of the proxy do not see that prefix.
    let upstream = raw::serve(sse_script(&[
        "event: endpoint\ndata: /api/messages/?session_id=abc\n\n",
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
    ]))
    .await;
    let sluice = proxy::start(&format!("{}/api", upstream.url()), vec![]).await;
    let request = Request::get(format!("{}/sse", sluice.url()))
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let events = client::events(client::send(request).await).await;
    assert_eq!(events[0].event.as_deref(), Some("endpoint"));
    assert_eq!(events[0].data_str(), "/messages/?session_id=abc");
    assert_eq!(events[1].event.as_deref(), Some("message"));
    let sent = upstream.requests.lock().unwrap()[0].clone();
    assert!(sent.starts_with("GET /api/sse "), "{sent}");
}
