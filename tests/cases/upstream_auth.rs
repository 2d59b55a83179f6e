//! No token passthrough (issue 24, item 2): what the upstream is told about the caller.
//! The upstream is the rmcp test server, which records every request's headers: each
//! test asserts on what it saw. The client's token is `client-secret` throughout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sluice::app::{self, Running};
use sluice::auth::credential::{CredentialMode, ExchangeSettings, SecretSource};
use sluice::auth::{AccessSettings, CredentialSettings};
use sluice::config::Config;
use tokio::net::TcpListener;

use crate::common::mcp::{self, McpClient, McpServer, spawn_mcp_server};
use crate::common::{authz, client, proxy};

const CLIENT_TOKEN: &str = "client-secret";

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

/// sluice in-process in front of `server`, its default upstream configured by `upstream`.
async fn start(server: &McpServer, upstream: CredentialSettings) -> Running {
    app::start(Config {
        access: AccessSettings {
            upstream,
            ..AccessSettings::default()
        },
        ..proxy::config(&proxy::base_of(&server.url), Vec::new())
    })
    .await
    .expect("sluice starts")
}

/// sluice in front of `server` with `[auth]` on (an exchange needs it: only checked
/// tokens are exchanged) and `upstream`; two good client tokens for it.
async fn start_checked(
    server: &McpServer,
    upstream: CredentialSettings,
) -> (Running, authz::Authz, String, String) {
    let authz = authz::Authz::start().await;
    let mut resource = String::new();
    let sluice = proxy::start_with_access(&proxy::base_of(&server.url), Vec::new(), |url| {
        resource = format!("{url}/mcp");
        AccessSettings {
            resource: Some(sluice::auth::ResourceSettings {
                resource: resource.clone(),
                authorization_servers: vec![authz.issuer.clone()],
                jwks_url: Some(authz.jwks_url()),
                ..Default::default()
            }),
            upstream,
            ..AccessSettings::default()
        }
    })
    .await;
    let token = |sub: &str| authz.sign(&authz.claims(&resource, sub, ""));
    let (a, b) = (token("alice"), token("bob"));
    (sluice, authz, a, b)
}

/// A raw POST of `body` with `Authorization: Bearer <token>`.
async fn post_bearer(url: &str, body: &str, token: &str) -> Response<Incoming> {
    let request = Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    client::send(request).await
}

/// No header of any request the upstream received holds `token`.
fn assert_never_upstream(server: &McpServer, token: &str) {
    for request in &server.requests() {
        for (name, value) in &request.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            assert!(
                !value.contains(token),
                "the upstream got the client's token in {name}: {value}"
            );
        }
    }
}

/// The rmcp client, sending `Authorization: Bearer <token>` on every request.
async fn connect_with_token(url: &str, token: &str) -> McpClient {
    mcp::connect_bearer(url, token)
        .await
        .expect("the client connects through sluice")
}

/// Every value of `name` the upstream received, one per request (`None`: absent).
fn seen(server: &McpServer, name: &str) -> Vec<Option<String>> {
    server
        .requests()
        .iter()
        .map(|r| r.headers.get(name).map(|v| v.to_str().unwrap().to_string()))
        .collect()
}

/// A session with the client's token lists the tools through `sluice`; every request
/// the upstream received for it (at least initialize and the list) carried
/// `Authorization: <authorization>`.
async fn list_tools_then_upstream_saw(
    server: &McpServer,
    sluice: &sluice::app::Running,
    authorization: &str,
) {
    let client = connect_with_token(&format!("{}/mcp", sluice.url()), CLIENT_TOKEN).await;
    client.service.list_all_tools().await.unwrap();
    client.service.cancel().await.unwrap();
    let seen = seen(server, "authorization");
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(
        seen.iter().all(|v| v.as_deref() == Some(authorization)),
        "{seen:?}"
    );
}

/// No header of any request the upstream received holds the client's token.
fn assert_client_token_never_upstream(server: &McpServer) {
    assert!(!server.requests().is_empty(), "the upstream was reached");
    assert_never_upstream(server, CLIENT_TOKEN);
}

/// (a) The default: a client's bearer token is for sluice; the upstream gets no
/// `Authorization` at all, over a whole rmcp session (initialize, list, call, delete).
#[tokio::test]
async fn by_default_the_clients_token_never_reaches_the_upstream() {
    let server = spawn_mcp_server().await;
    let sluice = start(&server, CredentialSettings::default()).await;
    let client = connect_with_token(&format!("{}/mcp", sluice.url()), CLIENT_TOKEN).await;
    let tools = client.service.list_all_tools().await.unwrap();
    assert!(!tools.is_empty());
    let text = client
        .call_text("echo", serde_json::json!({ "text": "hi" }))
        .await
        .unwrap();
    assert!(text.contains("hi"), "{text}");
    client.service.cancel().await.unwrap();
    assert!(server.requests().len() >= 3, "{:?}", server.requests());
    assert!(
        seen(&server, "authorization").iter().all(Option::is_none),
        "{:?}",
        seen(&server, "authorization")
    );
    assert_client_token_never_upstream(&server);
    sluice.stop().await;
}

/// (b) A static bearer token read from a file at start (trailing newline dropped)
/// replaces the client's on every request.
#[tokio::test]
async fn a_static_token_from_a_file_reaches_the_upstream_instead_of_the_clients() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upstream-token");
    std::fs::write(&file, "upstream-token-7f3a\n").unwrap();
    let server = spawn_mcp_server().await;
    let sluice = start(&server, CredentialSettings::bearer_from_file(file)).await;
    list_tools_then_upstream_saw(&server, &sluice, "Bearer upstream-token-7f3a").await;
    assert_client_token_never_upstream(&server);
    sluice.stop().await;
}

/// (b) The sluice binary with a config file: a key from an environment variable, sent
/// alone (`scheme = ""`) in `x-api-key`; no `Authorization` upstream.
#[tokio::test]
async fn a_static_key_from_the_environment_goes_in_the_configured_header() {
    let server = spawn_mcp_server().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "upstream = \"{}\"\n\n[upstream_auth]\nmode = \"static\"\nsecret_env = \"SLUICE_TEST_UPSTREAM_KEY\"\nheader = \"x-api-key\"\nscheme = \"\"\n",
            proxy::base_of(&server.url)
        ),
    )
    .unwrap();
    let port = client::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--config")
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--no-watch", "--no-cache"])
        .env("SLUICE_TEST_UPSTREAM_KEY", "env-key-91c2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sluice starts");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("sluice exited: {status}");
        }
        assert!(Instant::now() < deadline, "sluice never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = post_bearer(&format!("http://{addr}/mcp"), INITIALIZE, CLIENT_TOKEN).await;
    assert_eq!(response.status(), StatusCode::OK);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        seen(&server, "x-api-key"),
        [Some("env-key-91c2".to_string())]
    );
    assert_eq!(seen(&server, "authorization"), [None]);
    assert_client_token_never_upstream(&server);
}

/// (e) Passthrough, said out loud: the client's `Authorization` goes upstream as is.
#[tokio::test]
async fn passthrough_forwards_the_clients_authorization_as_is() {
    let server = spawn_mcp_server().await;
    let sluice = start(&server, CredentialSettings::passthrough()).await;
    list_tools_then_upstream_saw(&server, &sluice, "Bearer client-secret").await;
    sluice.stop().await;
}

/// One call to the token endpoint, as it arrived.
#[derive(Debug, Clone)]
struct TokenCall {
    headers: HeaderMap,
    form: Vec<(String, String)>,
}

/// A token endpoint on 127.0.0.1: records every call and answers `status` with `body`.
struct TokenEndpoint {
    url: String,
    calls: Arc<Mutex<Vec<TokenCall>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TokenEndpoint {
    async fn start(status: StatusCode, answer: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let record = calls.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let record = record.clone();
                        async move {
                            let headers = request.headers().clone();
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let form = form_urlencoded::parse(&body).into_owned().collect();
                            record.lock().unwrap().push(TokenCall { headers, form });
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from_static(answer.as_bytes())))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url: format!("http://{addr}/token"),
            calls,
            task,
        }
    }

    fn calls(&self) -> Vec<TokenCall> {
        self.calls.lock().unwrap().clone()
    }
}

/// `[upstream_auth] mode = "exchange"` at `endpoint`, as client `sluice` with the
/// secret in `dir`.
fn exchange_at(endpoint: &TokenEndpoint, dir: &std::path::Path) -> CredentialSettings {
    let secret = dir.join("client-secret");
    std::fs::write(&secret, "sluice-client-secret\n").unwrap();
    CredentialSettings {
        mode: CredentialMode::Exchange,
        exchange: Some(ExchangeSettings {
            token_url: endpoint.url.clone(),
            client_id: "sluice".into(),
            client_secret: SecretSource::File(secret),
            audience: Some("upstream-api".into()),
            resource: Some("https://upstream.example/mcp".into()),
            scope: Some("tools.read".into()),
            requested_token_type: None,
        }),
        ..CredentialSettings::default()
    }
}

fn field<'a>(call: &'a TokenCall, name: &str) -> Option<&'a str> {
    call.form
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn counter(sluice: &Running, outcome: &str) -> u64 {
    let text = sluice.proxy().metrics().encode();
    let series = format!("sluice_token_exchanges_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

/// (c) The client's token is exchanged (RFC 8693) for the upstream's: the endpoint gets
/// the form with the client's token as subject_token and sluice's Basic client
/// authentication; the upstream sees only the exchanged token; later requests with the
/// same client token use the cached answer (one call for a whole session).
#[tokio::test]
async fn token_exchange_gives_the_upstream_its_own_token_and_is_cached() {
    let endpoint = TokenEndpoint::start(
        StatusCode::OK,
        r#"{"access_token":"exchanged-5e1d","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":3600}"#,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_mcp_server().await;
    let (sluice, _authz, token, another) =
        start_checked(&server, exchange_at(&endpoint, dir.path())).await;
    let client = connect_with_token(&format!("{}/mcp", sluice.url()), &token).await;
    client.service.list_all_tools().await.unwrap();
    let text = client
        .call_text("echo", serde_json::json!({ "text": "hi" }))
        .await
        .unwrap();
    assert!(text.contains("hi"), "{text}");
    client.service.cancel().await.unwrap();

    let calls = endpoint.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(
        field(call, "grant_type"),
        Some("urn:ietf:params:oauth:grant-type:token-exchange")
    );
    assert_eq!(field(call, "subject_token"), Some(token.as_str()));
    assert_eq!(
        field(call, "subject_token_type"),
        Some("urn:ietf:params:oauth:token-type:access_token")
    );
    assert_eq!(
        field(call, "requested_token_type"),
        Some("urn:ietf:params:oauth:token-type:access_token")
    );
    assert_eq!(field(call, "audience"), Some("upstream-api"));
    assert_eq!(
        field(call, "resource"),
        Some("https://upstream.example/mcp")
    );
    assert_eq!(field(call, "scope"), Some("tools.read"));
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("sluice:sluice-client-secret");
    assert_eq!(
        call.headers["authorization"].to_str().unwrap(),
        format!("Basic {basic}")
    );

    let seen = seen(&server, "authorization");
    assert!(seen.len() >= 3, "{seen:?}");
    assert!(
        seen.iter()
            .all(|v| v.as_deref() == Some("Bearer exchanged-5e1d")),
        "{seen:?}"
    );
    assert_never_upstream(&server, &token);
    assert_eq!(counter(&sluice, "exchanged"), 1);
    assert_eq!(counter(&sluice, "cached"), seen.len() as u64 - 1);
    assert_eq!(counter(&sluice, "failed"), 0);

    // Another client token is another exchange.
    let response = client::send(
        Request::post(format!("{}/mcp", sluice.url()))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("Bearer {another}"))
            .body(Full::new(Bytes::from_static(INITIALIZE.as_bytes())))
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let calls = endpoint.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(field(&calls[1], "subject_token"), Some(another.as_str()));
    sluice.stop().await;
}

/// (d) A token endpoint that refuses (400): the client gets a 502 with a JSON-RPC
/// error for its request, and the upstream receives nothing. Without a client token
/// there is nothing to exchange: the same answer, no call.
#[tokio::test]
async fn a_failed_exchange_stops_the_request_before_the_upstream() {
    let endpoint =
        TokenEndpoint::start(StatusCode::BAD_REQUEST, r#"{"error":"invalid_request"}"#).await;
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_mcp_server().await;
    let (sluice, _authz, token, _) =
        start_checked(&server, exchange_at(&endpoint, dir.path())).await;
    let url = format!("{}/mcp", sluice.url());

    let response = post_bearer(&url, INITIALIZE, &token).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body: Value = serde_json::from_str(&client::text(response).await).unwrap();
    assert_eq!(body["id"], 1, "{body}");
    assert_eq!(
        body["error"]["code"],
        sluice::mcp::jsonrpc::UPSTREAM_FAILED,
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("credential"), "{message}");
    assert!(!message.contains(&token), "{message}");
    assert_eq!(endpoint.calls().len(), 1);
    assert_eq!(counter(&sluice, "failed"), 1);

    // No token: refused by the token check, nothing to exchange.
    let response = client::post(&url, INITIALIZE).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(endpoint.calls().len(), 1, "no token, no call");

    assert!(server.requests().is_empty(), "{:?}", server.requests());
    sluice.stop().await;
}

/// (d) An answer that is not what RFC 8693 says (a token type sluice cannot present)
/// is a failure too, and a failure is not cached: the next request asks again.
#[tokio::test]
async fn an_unusable_exchange_answer_is_refused_and_not_cached() {
    let endpoint = TokenEndpoint::start(
        StatusCode::OK,
        r#"{"access_token":"x","token_type":"DPoP","expires_in":3600}"#,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_mcp_server().await;
    let (sluice, _authz, token, _) =
        start_checked(&server, exchange_at(&endpoint, dir.path())).await;
    let url = format!("{}/mcp", sluice.url());
    for _ in 0..2 {
        let response = post_bearer(&url, INITIALIZE, &token).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    }
    assert_eq!(endpoint.calls().len(), 2);
    assert_eq!(counter(&sluice, "failed"), 2);
    assert!(server.requests().is_empty());
    sluice.stop().await;
}

/// An exchange of tokens sluice never checked would make it a confused deputy: without
/// `[auth]`, `mode = "exchange"` stops start-up.
#[tokio::test]
async fn an_exchange_without_a_token_check_is_refused_at_start() {
    let endpoint = TokenEndpoint::start(StatusCode::OK, "{}").await;
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_mcp_server().await;
    let started = app::start(Config {
        access: AccessSettings {
            upstream: exchange_at(&endpoint, dir.path()),
            ..AccessSettings::default()
        },
        ..proxy::config(&proxy::base_of(&server.url), Vec::new())
    })
    .await;
    let error = started.err().expect("start-up refused").to_string();
    assert!(error.contains("needs [auth]"), "{error}");
}
