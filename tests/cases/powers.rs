//! The powers of `sluice:plugin@0.2.0`, each through its example plugin
//! (`plugins/rust/{mock,caller-guard,quota,approval}`) in a real sluice, in front of the
//! rmcp test server, called by the rmcp client. The upstream records every HTTP request
//! it gets, so "the upstream never saw it" is a count of its POSTs.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::Full;
use rmcp::ServiceExt;
use rmcp::service::ServiceError;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use sluice::app::Running;
use sluice::auth::{AccessSettings, ResourceSettings};
use sluice::plugin::{PluginSpec, PowerGrants};

use super::operations::{scrape, value};
use crate::common::authz::Authz;
use crate::common::mcp::{self, McpClient, McpServer, RecordingClient, SECRET_TEXT};
use crate::common::plugin_log::{self, PluginLog};
use crate::common::{client, proxy};

/// How many POSTs the upstream has received: each MCP request or notification the
/// proxy forwarded is one.
pub(super) fn posts(upstream: &McpServer) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|r| r.method == Method::POST)
        .count()
}

/// The JSON-RPC error a call ended with; panics on a result or a transport error.
pub(super) fn rpc_error(outcome: Result<String, ServiceError>) -> rmcp::model::ErrorData {
    match outcome {
        Err(ServiceError::McpError(error)) => error,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

/// A plugin spec `name` running the example `plugin` (so one component can be in a
/// chain twice, with two configs).
pub(super) fn named(name: &str, plugin: &str, config: &str) -> PluginSpec {
    PluginSpec {
        name: name.to_string(),
        ..proxy::rust(plugin, config)
    }
}

/// sluice with `[auth]` on in front of `upstream`, trusting `authz`; returns it and
/// its resource URL (`.../mcp`), which tokens must name.
pub(super) async fn start_checked(
    upstream: &McpServer,
    authz: &Authz,
    plugins: Vec<PluginSpec>,
) -> (Running, String) {
    let mut resource = String::new();
    let sluice = proxy::start_with_access(&proxy::base_of(&upstream.url), plugins, |url| {
        resource = format!("{url}/mcp");
        AccessSettings {
            resource: Some(ResourceSettings {
                resource: resource.clone(),
                authorization_servers: vec![authz.issuer.clone()],
                jwks_url: Some(authz.jwks_url()),
                ..Default::default()
            }),
            ..AccessSettings::default()
        }
    })
    .await;
    (sluice, resource)
}

/// A token for `resource` naming `subject` with `scope` (space-separated).
pub(super) fn token(authz: &Authz, resource: &str, subject: &str, scope: &str) -> String {
    authz.sign(&authz.claims(resource, subject, scope))
}

/// An rmcp client (its own session) with a bearer token, if any, and extra request
/// headers.
pub(super) async fn connect(
    url: &str,
    token: Option<&str>,
    headers: &[(&'static str, &str)],
) -> McpClient {
    mcp::install_crypto();
    let headers: HashMap<HeaderName, HeaderValue> = headers
        .iter()
        .map(|(name, value)| {
            (
                HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            )
        })
        .collect();
    let mut config =
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).custom_headers(headers);
    if let Some(token) = token {
        config = config.auth_header(token.to_owned());
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    let service = RecordingClient::default()
        .serve(transport)
        .await
        .expect("the rmcp client connects through sluice");
    McpClient { service }
}

// ---------------------------------------------------------------------------------------
// respond: mock
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_answers_tool_calls_itself_and_its_answer_passes_the_to_client_chain() {
    let upstream = mcp::spawn_mcp_server().await;
    // `weather` does not exist upstream: only mock can answer it. The reference filter
    // after mock redacts "sunny" in both directions, so mock's answer (which never went
    // upstream) must still go through it on its way to the client.
    let mock = json!({
        "tools": {"weather": {"content": [{"type": "text", "text": "sunny all day"}]}},
        "errors": {"get_secret": {"code": -32001, "message": "secrets are mocked away"}},
    });
    let sluice = proxy::start(
        &proxy::base_of(&upstream.url),
        vec![
            proxy::rust("mock", &mock.to_string()),
            proxy::rust("reference-rust", r#"{"redact": ["sunny"]}"#),
        ],
    )
    .await;
    let client = mcp::connect(&format!("{}/mcp", sluice.url())).await;
    let before = posts(&upstream);

    let weather = client.call_text("weather", json!({"city": "Oslo"})).await;
    assert_eq!(weather.unwrap(), "[REDACTED] all day");
    let error = rpc_error(client.call_text("get_secret", Value::Null).await);
    assert_eq!(error.code.0, -32001);
    assert_eq!(error.message, "secrets are mocked away");
    assert_eq!(
        posts(&upstream),
        before,
        "a mocked call reached the upstream"
    );

    // Anything mock was not told about goes to the upstream as usual.
    let echo = client.call_text("echo", json!({"text": "hi"})).await;
    assert_eq!(echo.unwrap(), "hi");
    assert_eq!(posts(&upstream), before + 1);

    client.service.cancel().await.unwrap();
    sluice.stop().await;
}

// ---------------------------------------------------------------------------------------
// request context: caller-guard
// ---------------------------------------------------------------------------------------

/// The plugin log lines of `caller-guard` (`common::plugin_log`: plugins log from the
/// proxy's workers, so only a global subscriber sees them).
fn caller_guard_lines() -> PluginLog {
    plugin_log::capture()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_guard_lets_a_tool_through_only_with_its_scope_and_logs_the_context() {
    let lines = caller_guard_lines();
    let upstream = mcp::spawn_mcp_server().await;
    let authz = Authz::start().await;
    let guard = PluginSpec {
        powers: PowerGrants {
            headers: vec!["x-team".into()],
            ..PowerGrants::default()
        },
        ..proxy::rust(
            "caller-guard",
            r#"{"tool_scopes": {"get_secret": "secrets:read"}, "header": "x-team"}"#,
        )
    };
    let (sluice, resource) = start_checked(&upstream, &authz, vec![guard]).await;
    let granted = token(&authz, &resource, "guard-alice", "mcp:tools secrets:read");
    let refused = token(&authz, &resource, "guard-bob", "mcp:tools");
    let alice = connect(&resource, Some(&granted), &[("x-team", "blue")]).await;
    let bob = connect(&resource, Some(&refused), &[("x-team", "red")]).await;
    let before = posts(&upstream);

    let secret = alice.call_text("get_secret", Value::Null).await;
    assert_eq!(secret.unwrap(), SECRET_TEXT);
    let error = rpc_error(bob.call_text("get_secret", Value::Null).await);
    assert_eq!(error.code.0, -32003);
    assert_eq!(
        error.message,
        "tools/call of get_secret needs scope secrets:read"
    );
    // A tool with no scope listed is anyone's.
    let echo = bob.call_text("echo", json!({"text": "hi"})).await;
    assert_eq!(echo.unwrap(), "hi");
    assert_eq!(
        posts(&upstream),
        before + 2,
        "only the allowed calls went up"
    );

    // One line per exchange (each tools/call is one POST), with the context's facts;
    // the header because it was granted, each caller's own value.
    let lines = lines.lines("caller-guard");
    let alice_lines: Vec<_> = lines.iter().filter(|l| l.contains("guard-alice")).collect();
    assert_eq!(
        alice_lines,
        [
            "caller-guard: subject=guard-alice route=default client=127.0.0.1 protocol=2025-11-25 x-team=blue"
        ],
        "{lines:#?}"
    );
    let bob_lines = lines.iter().filter(|l| l.contains("guard-bob")).count();
    assert_eq!(bob_lines, 2, "{lines:#?}");
    assert!(
        lines
            .iter()
            .filter(|l| l.contains("guard-bob"))
            .all(|l| l.ends_with("x-team=red")),
        "{lines:#?}"
    );

    alice.service.cancel().await.unwrap();
    bob.service.cancel().await.unwrap();
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_guard_without_auth_refuses_listed_tools_and_reads_no_header_it_was_not_granted() {
    let lines = caller_guard_lines();
    let upstream = mcp::spawn_mcp_server().await;
    // No [auth]: there is no caller, so the guard fails closed on a listed tool.
    // The client sends the header the config names, but the operator did not grant it:
    // the plugin must read none.
    let sluice = proxy::start(
        &proxy::base_of(&upstream.url),
        vec![proxy::rust(
            "caller-guard",
            r#"{"tool_scopes": {"get_secret": "secrets:read"}, "header": "x-ungranted"}"#,
        )],
    )
    .await;
    let url = format!("{}/mcp", sluice.url());
    let client = connect(&url, None, &[("x-ungranted", "not-for-plugins")]).await;
    let error = rpc_error(client.call_text("get_secret", Value::Null).await);
    assert_eq!(error.code.0, -32003);
    let echo = client.call_text("echo", json!({"text": "hi"})).await;
    assert_eq!(echo.unwrap(), "hi");
    client.service.cancel().await.unwrap();
    sluice.stop().await;

    let lines = lines.lines("caller-guard");
    let ungranted: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("x-ungranted="))
        .collect();
    assert_eq!(ungranted.len(), 2, "{lines:#?}");
    for line in ungranted {
        assert!(
            line.starts_with("caller-guard: subject=- route=default"),
            "{line}"
        );
        assert!(line.ends_with("x-ungranted=-"), "{line}");
    }
}

// ---------------------------------------------------------------------------------------
// state and metrics: quota
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_counts_a_callers_calls_across_sessions_and_shows_its_counters() {
    let upstream = mcp::spawn_mcp_server().await;
    let authz = Authz::start().await;
    // A window far longer than the test: no call's fate depends on the clock.
    let quota = proxy::rust("quota", r#"{"calls": 3, "per_secs": 3600}"#);
    let (mut sluice, resource) = start_checked(&upstream, &authz, vec![quota]).await;
    let admin = proxy::serve_admin(&mut sluice).await;
    let carol = token(&authz, &resource, "quota-carol", "mcp:tools");
    let dave = token(&authz, &resource, "quota-dave", "mcp:tools");
    // Two sessions of one caller, and another caller.
    let first = connect(&resource, Some(&carol), &[]).await;
    let second = connect(&resource, Some(&carol), &[]).await;
    let other = connect(&resource, Some(&dave), &[]).await;
    let before = posts(&upstream);

    assert_eq!(
        first.call_text("echo", json!({"text": "1"})).await.unwrap(),
        "1"
    );
    assert_eq!(
        second
            .call_text("echo", json!({"text": "2"}))
            .await
            .unwrap(),
        "2"
    );
    let forecast = first
        .call_text("forecast", json!({"region": "north"}))
        .await;
    assert_eq!(forecast.unwrap(), "forecast for north");
    // Call 4 of the caller, in either session: refused, not forwarded.
    for session in [&second, &first] {
        let error = rpc_error(session.call_text("echo", json!({"text": "4"})).await);
        assert_eq!(error.code.0, -32029);
        assert_eq!(error.message, "quota of 3 calls per 3600 s used up");
    }
    // Another caller has a quota of their own.
    assert_eq!(
        other.call_text("echo", json!({"text": "d"})).await.unwrap(),
        "d"
    );
    assert_eq!(posts(&upstream), before + 4);

    let metrics = scrape(admin).await;
    let counter = |counter: &str, label: &str| {
        value(
            &metrics,
            "sluice_plugin_counter_total",
            &format!(r#"route="default",plugin="quota",counter="{counter}",label="{label}""#),
        )
    };
    assert_eq!(counter("calls", "echo"), Some(3.0), "{metrics}");
    assert_eq!(counter("calls", "forecast"), Some(1.0), "{metrics}");
    assert_eq!(counter("refused", ""), Some(2.0), "{metrics}");

    for client in [first, second, other] {
        client.service.cancel().await.unwrap();
    }
    sluice.stop().await;
}

// ---------------------------------------------------------------------------------------
// hold: approval
// ---------------------------------------------------------------------------------------

/// `GET /admin/holds`: the holds waiting for a decision.
async fn holds(admin: std::net::SocketAddr) -> Vec<Value> {
    let response = client::send(
        Request::get(format!("http://{admin}/admin/holds"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = serde_json::from_str(&client::text(response).await).unwrap();
    body["holds"].as_array().expect("a list of holds").clone()
}

/// Waits until `n` holds are listed (a held call reaches the proxy on its own time);
/// panics after 10 s.
async fn until_held(admin: std::net::SocketAddr, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let listed = holds(admin).await;
        if listed.len() >= n || tokio::time::Instant::now() > deadline {
            assert_eq!(listed.len(), n, "{listed:#?}");
            return listed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// `POST /admin/holds/<id>/<decision>`; returns the status.
async fn decide(admin: std::net::SocketAddr, id: u64, decision: &str) -> http::StatusCode {
    client::send(
        Request::post(format!("http://{admin}/admin/holds/{id}/{decision}"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .status()
}

fn holds_ended(metrics: &str, outcome: &str) -> Option<f64> {
    value(
        metrics,
        "sluice_plugin_holds_total",
        &format!(r#"outcome="{outcome}""#),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_holds_a_call_while_other_sessions_go_on_until_approved_or_denied() {
    let upstream = mcp::spawn_mcp_server().await;
    // The timeout is far beyond the test: only a decision ends these holds.
    let approval = proxy::rust(
        "approval",
        r#"{"tools": ["get_secret"], "timeout_ms": 120000, "on_timeout": "drop"}"#,
    );
    let mut sluice = proxy::start(&proxy::base_of(&upstream.url), vec![approval]).await;
    let admin = proxy::serve_admin(&mut sluice).await;
    let url = format!("{}/mcp", sluice.url());
    let held = Arc::new(mcp::connect(&url).await);
    let other = mcp::connect(&url).await;
    let before = posts(&upstream);

    let call = {
        let held = held.clone();
        tokio::spawn(async move { held.call_text("get_secret", Value::Null).await })
    };
    let listed = until_held(admin, 1).await;
    assert_eq!(listed[0]["plugin"], "approval");
    assert_eq!(listed[0]["reason"], "approve tools/call get_secret");
    assert_eq!(listed[0]["method"], "tools/call");
    let id = listed[0]["id"].as_u64().unwrap();
    assert_eq!(posts(&upstream), before, "the held call went up");

    // Another session's calls go through meanwhile, and the held one still waits.
    for text in ["a", "b", "c"] {
        assert_eq!(
            other
                .call_text("echo", json!({"text": text}))
                .await
                .unwrap(),
            text
        );
    }
    assert_eq!(posts(&upstream), before + 3);
    assert!(
        !call.is_finished(),
        "the held call ended before any decision"
    );
    assert_eq!(holds(admin).await.len(), 1);

    assert_eq!(decide(admin, id, "approve").await, 200);
    assert_eq!(call.await.unwrap().unwrap(), SECRET_TEXT);
    assert_eq!(posts(&upstream), before + 4);
    assert!(holds(admin).await.is_empty());
    assert_eq!(decide(admin, id, "deny").await, 404, "decided twice");

    // Denied: the client gets an error naming the plugin; nothing goes up.
    let call = {
        let held = held.clone();
        tokio::spawn(async move { held.call_text("get_secret", Value::Null).await })
    };
    let id = until_held(admin, 1).await[0]["id"].as_u64().unwrap();
    assert_eq!(decide(admin, id, "deny").await, 200);
    let error = rpc_error(call.await.unwrap());
    assert_eq!(
        error.message,
        "sluice: the request was held by plugin approval and not let through \
         (approve tools/call get_secret)"
    );
    assert_eq!(posts(&upstream), before + 4);

    let metrics = scrape(admin).await;
    assert_eq!(holds_ended(&metrics, "approved"), Some(1.0), "{metrics}");
    assert_eq!(holds_ended(&metrics, "denied"), Some(1.0), "{metrics}");

    other.service.cancel().await.unwrap();
    Arc::into_inner(held)
        .unwrap()
        .service
        .cancel()
        .await
        .unwrap();
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecided_hold_follows_on_timeout_and_a_delay_lets_the_call_go_on() {
    let upstream = mcp::spawn_mcp_server().await;
    // Three copies of the plugin: get_secret dropped when its short wait runs out, echo
    // passed when its runs out, and every tools/call delayed a little (fault injection).
    let sluice_plugins = vec![
        named(
            "approval-drop",
            "approval",
            r#"{"tools": ["get_secret"], "timeout_ms": 200, "on_timeout": "drop"}"#,
        ),
        named(
            "approval-pass",
            "approval",
            r#"{"tools": ["echo"], "timeout_ms": 200, "on_timeout": "pass"}"#,
        ),
        named(
            "delay",
            "approval",
            r#"{"delay_ms": 50, "methods": ["tools/call"], "direction": "to-server"}"#,
        ),
    ];
    let mut sluice = proxy::start(&proxy::base_of(&upstream.url), sluice_plugins).await;
    let admin = proxy::serve_admin(&mut sluice).await;
    let client = mcp::connect(&format!("{}/mcp", sluice.url())).await;
    let before = posts(&upstream);

    let error = rpc_error(client.call_text("get_secret", Value::Null).await);
    assert!(
        error.message.contains("held by plugin approval-drop"),
        "{error:?}"
    );
    assert_eq!(
        posts(&upstream),
        before,
        "a timed-out hold with drop went up"
    );
    let echo = client.call_text("echo", json!({"text": "late"})).await;
    assert_eq!(echo.unwrap(), "late");
    assert_eq!(posts(&upstream), before + 1);

    let metrics = scrape(admin).await;
    assert_eq!(
        holds_ended(&metrics, "timed_out_dropped"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        holds_ended(&metrics, "timed_out_passed"),
        Some(1.0),
        "{metrics}"
    );
    // The delay plugin (client messages only) saw the one call that got past the
    // others, echo's, and let it go on after its delay.
    assert_eq!(holds_ended(&metrics, "delayed"), Some(1.0), "{metrics}");
    assert!(holds(admin).await.is_empty());

    client.service.cancel().await.unwrap();
    sluice.stop().await;
}
