//! A real MCP server and client (rmcp, Streamable HTTP) with sluice between them.

use std::time::Duration;

use serde_json::json;

use sluice::app::Running;
use sluice::plugin::PluginSpec;

use rmcp::model::ProtocolVersion;

use crate::common::mcp::{self, McpClient, McpServer, SECRET_TEXT, connect, spawn_mcp_server};
use crate::common::proxy;

/// A real MCP server, sluice in front of it with `plugins`, and a client connected
/// through sluice.
async fn through_sluice(plugins: Vec<PluginSpec>) -> (McpServer, Running, McpClient) {
    through_sluice_as(plugins, None).await
}

/// [`through_sluice`] with a client that offers `protocol` (2026-07-28: routing
/// headers on every request).
async fn through_sluice_as(
    plugins: Vec<PluginSpec>,
    protocol: Option<ProtocolVersion>,
) -> (McpServer, Running, McpClient) {
    let server = spawn_mcp_server().await;
    let sluice = proxy::start(&proxy::base_of(&server.url), plugins).await;
    let url = format!("{}/mcp", sluice.url());
    let client = mcp::connect_with(&url, protocol)
        .await
        .unwrap_or_else(|error| panic!("MCP client could not connect to {url}: {error}"));
    (server, sluice, client)
}

/// A 2026-07-28 client through sluice with the redactor on `pattern`.
async fn modern_client_through_redactor(pattern: &str) -> (McpServer, Running, McpClient) {
    let config = format!(r#"{{"patterns":["{pattern}"]}}"#);
    through_sluice_as(
        vec![proxy::rust("redact", &config)],
        Some(ProtocolVersion::V_2026_07_28),
    )
    .await
}

#[tokio::test]
async fn with_no_plugin_the_client_sees_what_it_sees_direct() {
    let server = spawn_mcp_server().await;
    let sluice = proxy::start(&proxy::base_of(&server.url), vec![]).await;
    let direct = connect(&server.url).await;
    let proxied = connect(&format!("{}/mcp", sluice.url())).await;

    let direct_tools = direct.service.list_all_tools().await.unwrap();
    let proxied_tools = proxied.service.list_all_tools().await.unwrap();
    assert_eq!(
        mcp::tool_names(&proxied_tools),
        mcp::tool_names(&direct_tools)
    );
    assert_eq!(
        serde_json::to_value(&proxied_tools).unwrap(),
        serde_json::to_value(&direct_tools).unwrap()
    );
    for client in [&direct, &proxied] {
        assert_eq!(
            client
                .call_text("echo", json!({"text": "héllo\nworld"}))
                .await
                .unwrap(),
            "héllo\nworld"
        );
        assert_eq!(
            client.call_text("get_secret", json!(null)).await.unwrap(),
            SECRET_TEXT
        );
        assert_eq!(
            client
                .call_with_progress("count", json!({"n": 3}))
                .await
                .unwrap(),
            "counted 3"
        );
        assert_eq!(
            client.wait_progress(3, Duration::from_secs(5)).await,
            vec![1.0, 2.0, 3.0]
        );
    }
    // Both sessions exist upstream: the Mcp-Session-Id made the round trip through sluice.
    assert_eq!(server.session_ids().await.len(), 2);
    let through_proxy = server
        .requests()
        .into_iter()
        .filter(|r| r.headers.get("mcp-session-id").is_some())
        .count();
    assert!(
        through_proxy >= 4,
        "requests after initialize carry the session id"
    );
}

#[tokio::test]
async fn the_redactor_changes_a_tool_result() {
    let config = r#"{"patterns":["sk-[a-z]+-[a-z0-9]+"]}"#;
    let (_server, sluice, client) = through_sluice(vec![proxy::rust("redact", config)]).await;
    assert_eq!(
        client.call_text("get_secret", json!(null)).await.unwrap(),
        "the key is [REDACTED]"
    );
    assert_eq!(
        client
            .call_text("echo", json!({"text": "nothing to hide"}))
            .await
            .unwrap(),
        "nothing to hide"
    );
    let stats = proxy::stats(&sluice, 0);
    assert!(stats.modified >= 1, "{stats:?}");
}

#[tokio::test]
async fn the_dropper_removes_progress_notifications() {
    let config = r#"{"methods":["notifications/progress"]}"#;
    let (_server, sluice, client) = through_sluice(vec![proxy::rust("dropper", config)]).await;
    assert_eq!(
        client
            .call_with_progress("count", json!({"n": 4}))
            .await
            .unwrap(),
        "counted 4"
    );
    assert_eq!(
        proxy::stats(&sluice, 0).dropped,
        4,
        "each progress notification was dropped"
    );
    assert_eq!(
        client.wait_progress(1, Duration::from_millis(300)).await,
        Vec::<f64>::new()
    );
}

#[tokio::test]
async fn a_dropped_tool_call_gets_a_json_rpc_error_and_the_session_goes_on() {
    let config = r#"{"methods":["tools/call"]}"#;
    let (server, _sluice, client) = through_sluice(vec![proxy::rust("dropper", config)]).await;
    let error = client
        .call_text("echo", json!({"text": "hi"}))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("dropped by plugin dropper"), "{message}");
    assert_eq!(
        mcp::tool_names(&client.service.list_all_tools().await.unwrap()),
        [
            "announce",
            "count",
            "echo",
            "forecast",
            "get_account",
            "get_secret"
        ]
    );
    let calls_upstream = server
        .requests()
        .iter()
        .filter(|r| r.method == hyper::Method::POST)
        .count();
    assert!(
        calls_upstream >= 3,
        "initialize, initialized and tools/list reached the server"
    );
}

#[tokio::test]
async fn a_trapping_plugin_does_not_stop_the_stream() {
    let (_server, sluice, client) =
        through_sluice(vec![proxy::fail_open(proxy::rust("trap", ""))]).await;
    assert_eq!(
        client
            .call_with_progress("count", json!({"n": 3}))
            .await
            .unwrap(),
        "counted 3"
    );
    assert_eq!(
        client.wait_progress(3, Duration::from_secs(5)).await,
        vec![1.0, 2.0, 3.0]
    );
    let stats = proxy::stats(&sluice, 0);
    assert!(
        stats.traps >= 4,
        "3 progress events and the result trapped: {stats:?}"
    );
    assert!(
        stats.instances > stats.traps,
        "every trap replaced the instance: {stats:?}"
    );
}

#[tokio::test]
async fn a_looping_plugin_is_cut_at_its_deadline_and_the_stream_goes_on() {
    let (_server, sluice, client) =
        through_sluice(vec![proxy::fail_open(proxy::rust("spin", ""))]).await;
    assert_eq!(
        client
            .call_with_progress("count", json!({"n": 2}))
            .await
            .unwrap(),
        "counted 2"
    );
    assert_eq!(
        client.wait_progress(2, Duration::from_secs(5)).await,
        vec![1.0, 2.0]
    );
    let stats = proxy::stats(&sluice, 0);
    assert!(stats.deadlines >= 3, "{stats:?}");
    assert_eq!(
        stats.traps, 0,
        "an interrupted loop is a deadline, not a trap: {stats:?}"
    );
}

#[tokio::test]
async fn a_2026_07_28_client_needs_no_session_and_its_routing_headers_reach_the_server() {
    let (server, _sluice, client) = modern_client_through_redactor("sk-[a-z]+-[a-z0-9]+").await;
    assert_eq!(
        client.call_text("get_secret", json!(null)).await.unwrap(),
        "the key is [REDACTED]"
    );
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.headers.get("mcp-session-id").is_none()),
        "no session in 2026-07-28: {:#?}",
        requests
            .iter()
            .map(|r| (&r.method, &r.headers))
            .collect::<Vec<_>>()
    );
    let call = requests
        .iter()
        .find(|r| r.headers.get("mcp-name").is_some_and(|v| v == "get_secret"))
        .expect("the tools/call reached the server with its Mcp-Name header");
    assert_eq!(call.headers["mcp-method"], "tools/call");
    assert_eq!(call.headers["mcp-protocol-version"], "2026-07-28");
    assert!(server.session_ids().await.is_empty());
}

#[tokio::test]
async fn server_initiated_messages_and_delete_cross_sluice() {
    let (server, _sluice, client) = through_sluice(vec![proxy::rust("passthrough", "")]).await;
    assert_eq!(server.session_ids().await.len(), 1);
    client.call_text("announce", json!(null)).await.unwrap();
    assert_eq!(
        client
            .wait_notification(Duration::from_secs(5))
            .await
            .as_deref(),
        Some("notifications/tools/list_changed"),
        "the message on the GET stream arrived"
    );
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.method == hyper::Method::GET),
        "the client's GET stream went through sluice"
    );
    client.service.cancel().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !server.session_ids().await.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.method == hyper::Method::DELETE),
        "DELETE went through sluice"
    );
    assert!(
        server.session_ids().await.is_empty(),
        "the session ended upstream"
    );
}

#[tokio::test]
async fn a_param_header_follows_the_argument_a_plugin_rewrote() {
    // The client mirrors `region` into `Mcp-Param-Region` (the tool's schema says so);
    // the redactor rewrites the argument; rmcp's server refuses a header that disagrees
    // with the body, so the call only succeeds if sluice set the header again.
    let (server, _sluice, client) = modern_client_through_redactor("sk-live-[a-z0-9]+").await;
    // The client learns which arguments to mirror from the tool list.
    let tools = client.service.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "forecast"));
    let answer = client
        .call_text("forecast", json!({"region": "sk-live-abc999"}))
        .await
        .unwrap();
    assert_eq!(answer, "forecast for [REDACTED]");
    let call = server
        .requests()
        .into_iter()
        .find(|r| r.headers.get("mcp-name").is_some_and(|n| n == "forecast"))
        .expect("the call reached the server");
    assert_eq!(call.headers["mcp-param-region"], "[REDACTED]");
}

#[tokio::test]
async fn routing_headers_follow_a_body_a_plugin_rewrote() {
    // The redactor also rewrites what the client sends: here the tool name itself.
    // Without keeping Mcp-Name in step, rmcp would refuse the request as inconsistent
    // (400) instead of answering it.
    let (server, _sluice, client) = modern_client_through_redactor("get_secret").await;
    let error = client
        .call_text("get_secret", json!(null))
        .await
        .unwrap_err()
        .to_string();
    assert!(!error.contains("Mcp-Name"), "a header mismatch: {error}");
    let call = server
        .requests()
        .into_iter()
        .find(|r| {
            r.headers
                .get("mcp-method")
                .is_some_and(|m| m == "tools/call")
        })
        .expect("the call reached the server");
    assert_eq!(call.headers["mcp-name"], "[REDACTED]");
    // The server answered it as a call of an unknown tool, which it is now.
    assert!(
        error.contains("[REDACTED]") || error.to_lowercase().contains("not found"),
        "{error}"
    );
}
