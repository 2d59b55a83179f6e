//! The MCP test harness on its own: an rmcp client talking straight to the rmcp server,
//! no proxy in between. If these fail, the proxy tests cannot be trusted.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::json;

use crate::common::mcp::{SECRET_TEXT, connect, spawn_mcp_server};

/// Safety net only: every wait below normally finishes in milliseconds.
const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn lists_exactly_the_six_tools() {
    let server = spawn_mcp_server().await;
    let client = connect(&server.url).await;

    let tools = client.service.list_all_tools().await.expect("tools/list");
    let mut names: Vec<String> = tools.iter().map(|tool| tool.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "announce",
            "count",
            "echo",
            "forecast",
            "get_account",
            "get_secret"
        ]
    );
}

#[tokio::test]
async fn echo_round_trips_the_text() {
    let server = spawn_mcp_server().await;
    let client = connect(&server.url).await;

    let text = "hello, sluice \u{2603} \"quoted\"\nsecond line";
    let reply = client
        .call_text("echo", json!({ "text": text }))
        .await
        .expect("echo");
    assert_eq!(reply, text);
}

#[tokio::test]
async fn get_secret_returns_the_key() {
    let server = spawn_mcp_server().await;
    let client = connect(&server.url).await;

    let reply = client
        .call_text("get_secret", json!({}))
        .await
        .expect("get_secret");
    assert_eq!(reply, SECRET_TEXT);
    assert!(reply.contains("sk-live-abc123"), "{reply}");
}

#[tokio::test]
async fn count_reports_progress_then_the_result() {
    let server = spawn_mcp_server().await;
    let client = connect(&server.url).await;

    let reply = client
        .call_with_progress("count", json!({ "n": 3 }))
        .await
        .expect("count");
    assert_eq!(reply, "counted 3");
    assert_eq!(client.wait_progress(3, WAIT).await, [1.0, 2.0, 3.0]);
}

#[tokio::test]
async fn each_client_gets_its_own_session() {
    let server = spawn_mcp_server().await;
    let first = connect(&server.url).await;
    let second = connect(&server.url).await;

    // Both sessions are usable side by side.
    assert_eq!(
        first
            .call_text("echo", json!({ "text": "one" }))
            .await
            .unwrap(),
        "one"
    );
    assert_eq!(
        second
            .call_text("echo", json!({ "text": "two" }))
            .await
            .unwrap(),
        "two"
    );

    let sessions = server.session_ids().await;
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_ne!(sessions[0], sessions[1]);

    // The clients really used them: every request after `initialize` carried one of the two
    // ids, and both ids were used.
    let used: std::collections::BTreeSet<String> = server
        .requests()
        .iter()
        .filter_map(|request| request.headers.get("mcp-session-id"))
        .map(|id| id.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(used.into_iter().collect::<Vec<_>>(), sessions);
}

/// What the proxy will see on the wire: a POST is answered with an SSE stream and a session id,
/// and a `Host` naming another loopback port (as a proxy may send) is accepted.
#[tokio::test]
async fn initialize_is_answered_with_sse_and_a_session_id() {
    let server = spawn_mcp_server().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let initialize = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "raw", "version": "0" }
        }
    });
    let request = hyper::Request::post(&server.url)
        .header("host", "127.0.0.1:1")
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(initialize.to_string())))
        .unwrap();

    let response = client.request(request).await.expect("initialize POST");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    assert!(response.headers().contains_key("mcp-session-id"));

    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .expect("the initialize stream ends after the result")
        .unwrap()
        .to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        body.contains(r#"data: {"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25""#),
        "{body}"
    );
}
