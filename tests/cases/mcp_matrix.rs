//! The compatibility matrix: every real client × every real server × {no plugin,
//! pass-through, redactor}, through sluice, compared with the same client and server
//! talking directly.
//!
//! Each client runs one scenario (initialize, tools/list, a tool call, a tool call with
//! progress notifications, a server-initiated message on the GET stream, and closing the
//! session) and reports a [`Row`]. Through sluice the row must equal the direct row, except
//! that the redactor must have masked the secret. The matrix is printed to
//! `target/mcp-matrix/<server>.txt` (`.ci/run` shows it) and to the test's stdout.
//!
//! The stdio clients (`PythonStdio`, `InspectorStdio`) reach the server through
//! `sluice stdio`, which they launch as a desktop client launches a server: `--upstream
//! <server>` for an HTTP server, `-- <command>` for a stdio server. A stdio server's
//! direct row is theirs launching the server itself; an HTTP server's is their HTTP
//! twin's (the Python SDK's Streamable HTTP client, the Inspector over HTTP), without
//! the DELETE, which a stdio client cannot see (tests/cases/stdio_client.rs checks
//! that sluice sends it).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sluice::app::Running;
use sluice::config::StdioTarget;
use sluice::plugin::PluginSpec;
use sluice::upstream::{StdioCommand, StdioSettings};

use sluice::tls::TlsSettings;

use crate::common::mcp::{self, SECRET_TEXT};
use crate::common::tls::Pki;
use crate::common::{authz, peers, proxy, stdio};

/// What one client saw in one run of the scenario.
#[derive(Debug, Clone, Default, PartialEq)]
struct Row {
    /// Tool names from tools/list, sorted.
    tools: Vec<String>,
    echo: Option<String>,
    /// The `get_secret` text (servers that have it).
    secret: Option<String>,
    count: Option<String>,
    progress: Vec<f64>,
    /// The method of the server-initiated notification received on the GET stream.
    server_notification: Option<String>,
    /// Whether DELETE ended the session (None: no session, or not observable).
    deleted: Option<bool>,
    errors: Vec<String>,
}

impl Row {
    fn from_python(report: &Value) -> Row {
        let strings = |key: &str| -> Vec<String> {
            let mut v: Vec<String> = report[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        let text = |key: &str| report[key].as_str().map(str::to_string);
        Row {
            tools: strings("tools"),
            echo: text("echo"),
            secret: text("secret"),
            count: text("count"),
            progress: report["progress"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default(),
            server_notification: text("server_notification"),
            deleted: report["deleted"].as_bool(),
            errors: strings("errors"),
        }
    }

    fn cell(&self) -> String {
        if !self.errors.is_empty() {
            return format!("FAIL {:?}", self.errors);
        }
        let mark = |b: bool| if b { "✓" } else { "·" };
        format!(
            "init✓ list{} call{} progress{} get-stream{} delete{}",
            mark(!self.tools.is_empty()),
            mark(self.echo.is_some()),
            mark(!self.progress.is_empty()),
            mark(self.server_notification.is_some()),
            match self.deleted {
                Some(true) => "✓",
                Some(false) => "✗",
                None => "·",
            }
        )
    }
}

/// A server under test and how to talk to it.
struct Server {
    name: &'static str,
    /// The URL a client uses directly.
    url: String,
    /// The upstream base and the endpoint path, for sluice.
    base: String,
    path: String,
    /// `sluice` (echo/get_secret/count/announce) or `everything`.
    profile: &'static str,
    /// `streamable` or `sse` (legacy).
    transport: &'static str,
    /// Keeps the process or the in-process server alive.
    _guard: Box<dyn Send>,
    /// TLS rows: the CA clients trust, and sluice's TLS settings.
    tls: Option<Tls>,
    /// Through sluice, this stdio server instead of `base` (the direct run then uses
    /// the same server code over HTTP: the rows must be equal).
    stdio: Option<StdioTarget>,
    /// Rows with sluice as the OAuth resource server: every client sends a bearer token
    /// (directly too: the server ignores it), and the upstream must never see it.
    auth: Option<MatrixAuth>,
}

/// The authorization server of an auth row, and what the upstream received.
struct MatrixAuth {
    authz: authz::Authz,
    /// Every HTTP request the upstream received so far.
    upstream_requests: Box<dyn Fn() -> Vec<mcp::RecordedRequest> + Send + Sync>,
}

impl MatrixAuth {
    /// A token for `resource` with the row's scope.
    fn token(&self, resource: &str) -> String {
        self.authz
            .sign(&self.authz.claims(resource, "matrix-user", "mcp:tools"))
    }

    /// sluice's `[auth]` for `resource`.
    fn access(&self, resource: &str) -> sluice::auth::AccessSettings {
        sluice::auth::AccessSettings {
            resource: Some(sluice::auth::ResourceSettings {
                resource: resource.to_string(),
                authorization_servers: vec![self.authz.issuer.clone()],
                jwks_url: Some(self.authz.jwks_url()),
                scopes: vec!["mcp:tools".into()],
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// The TLS of a row: the server or sluice's listener has a certificate of a test CA.
struct Tls {
    pki: Pki,
    /// sluice's upstream trust and listener certificate.
    settings: TlsSettings,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Client {
    Rmcp,
    Python,
    Inspector,
    /// The Python SDK's stdio client launching `sluice stdio`.
    PythonStdio,
    /// The Inspector CLI launching `sluice stdio` (named in an `mcpServers` file).
    InspectorStdio,
}

/// Where the Inspector CLI finds the server.
enum Target<'a> {
    /// A URL, over `streamable` or `sse`.
    Url(&'a str, &'a str),
    /// A URL with more arguments for the Inspector (`--header …`).
    UrlWith(&'a str, &'a str, &'a [&'a str]),
    /// A stdio server: a command and its arguments.
    Stdio(&'a str, &'a [String]),
}

async fn inspect(target: &Target<'_>, args: &[&str]) -> Result<Value, String> {
    match target {
        Target::Url(url, transport) => peers::inspector(url, transport, args).await,
        Target::UrlWith(url, transport, extra) => {
            let all: Vec<&str> = extra.iter().chain(args).copied().collect();
            peers::inspector(url, transport, &all).await
        }
        Target::Stdio(command, command_args) => {
            peers::inspector_stdio(command, command_args, args).await
        }
    }
}

fn plugin_sets() -> Vec<(&'static str, Vec<PluginSpec>)> {
    vec![
        ("no plugin", vec![]),
        ("passthrough", vec![proxy::rust("passthrough", "")]),
        (
            "redactor",
            vec![proxy::rust(
                "redact",
                r#"{"patterns":["sk-live-[a-z0-9]+"]}"#,
            )],
        ),
    ]
}

/// The rmcp client's run of the scenario (trusting `pki`'s CA, when given).
async fn rmcp_row(url: &str, profile: &str, pki: Option<&Pki>) -> Row {
    let connected = match pki {
        Some(pki) => mcp::try_connect_via(url, pki.reqwest()).await,
        None => mcp::try_connect(url).await,
    };
    rmcp_row_with(connected.map_err(|e| e.to_string()), profile).await
}

/// The rmcp client's run of the scenario over a connection made by the caller.
async fn rmcp_row_with(connected: Result<mcp::McpClient, String>, profile: &str) -> Row {
    let mut row = Row::default();
    let client = match connected {
        Ok(client) => client,
        Err(e) => {
            row.errors.push(format!("initialize: {e}"));
            return row;
        }
    };
    match client.service.list_all_tools().await {
        Ok(tools) => {
            row.tools = tools.iter().map(|t| t.name.to_string()).collect();
            row.tools.sort();
        }
        Err(e) => row.errors.push(format!("tools/list: {e}")),
    }
    let (echo, secret, count, announce) = match profile {
        "everything" => (
            ("echo", json!({"message": "héllo"})),
            None,
            (
                "trigger-long-running-operation",
                json!({"duration": 1, "steps": 3}),
            ),
            ("toggle-simulated-logging", json!({})),
        ),
        _ => (
            ("echo", json!({"text": "héllo"})),
            Some(("get_secret", json!(null))),
            ("count", json!({"n": 3})),
            ("announce", json!({})),
        ),
    };
    match client.call_text(echo.0, echo.1).await {
        Ok(text) => row.echo = Some(text),
        Err(e) => row.errors.push(format!("echo: {e}")),
    }
    if let Some((tool, args)) = secret {
        match client.call_text(tool, args).await {
            Ok(text) => row.secret = Some(text),
            Err(e) => row.errors.push(format!("secret: {e}")),
        }
    }
    match client.call_with_progress(count.0, count.1).await {
        Ok(text) => {
            row.count = Some(text);
            // rmcp hands notifications to the handler concurrently, so their order
            // there is not the wire order (which the raw SSE tests check).
            row.progress = client.wait_progress(3, Duration::from_secs(5)).await;
            row.progress.sort_by(f64::total_cmp);
        }
        Err(e) => row.errors.push(format!("progress: {e}")),
    }
    match client.call_text(announce.0, announce.1.clone()).await {
        Ok(_) => row.server_notification = client.wait_notification(Duration::from_secs(5)).await,
        Err(e) => row.errors.push(format!("announce: {e}")),
    }
    if profile == "everything" {
        // Switch the simulated logging off again.
        let _ = client.call_text(announce.0, announce.1).await;
    }
    // Dropping the service closes the transport, which sends DELETE for the session.
    if let Err(e) = client.service.cancel().await {
        row.errors.push(format!("close: {e}"));
    }
    row
}

/// The Inspector CLI: tools/list and one tools/call (that is what its CLI mode does).
async fn inspector_row(target: &Target<'_>, profile: &str) -> Row {
    let mut row = Row::default();
    match inspect(target, &["--method", "tools/list"]).await {
        Ok(listed) => {
            row.tools = listed["tools"]
                .as_array()
                .map(|tools| {
                    tools
                        .iter()
                        .filter_map(|t| t["name"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            row.tools.sort();
        }
        Err(e) => row.errors.push(format!("tools/list: {e}")),
    }
    let arg = if profile == "everything" {
        "message=héllo"
    } else {
        "text=héllo"
    };
    let call = [
        "--method",
        "tools/call",
        "--tool-name",
        "echo",
        "--tool-arg",
        arg,
    ];
    match inspect(target, &call).await {
        Ok(result) => {
            row.echo = result["content"][0]["text"].as_str().map(str::to_string);
        }
        Err(e) => row.errors.push(format!("tools/call: {e}")),
    }
    row
}

/// The client's run against `url`; a stdio client's HTTP twin's (see the module doc).
async fn run_client(client: Client, url: &str, server: &Server) -> Row {
    let pki = server.tls.as_ref().map(|tls| &tls.pki);
    if let Some(auth) = &server.auth {
        return bearer_row(client, url, server, &auth.token(url)).await;
    }
    match client {
        Client::Rmcp => rmcp_row(url, server.profile, pki).await,
        Client::Python | Client::PythonStdio => {
            let mut row = Row::from_python(
                &peers::python_client_trusting(
                    url,
                    server.transport,
                    server.profile,
                    None,
                    pki.map(|pki| pki.ca.as_path()),
                )
                .await,
            );
            if client == Client::PythonStdio {
                row.deleted = None;
            }
            row
        }
        Client::Inspector | Client::InspectorStdio => {
            inspector_row(&Target::Url(url, server.transport), server.profile).await
        }
    }
}

/// The client's run against `url` with `Authorization: Bearer <token>` on every request.
async fn bearer_row(client: Client, url: &str, server: &Server, token: &str) -> Row {
    match client {
        Client::Rmcp => {
            let connected = mcp::connect_bearer(url, token).await;
            rmcp_row_with(connected.map_err(|e| e.to_string()), server.profile).await
        }
        Client::Python => {
            Row::from_python(&peers::python_client_args(url, &["--bearer", token]).await)
        }
        Client::Inspector => {
            let header = format!("Authorization: Bearer {token}");
            inspector_row(
                &Target::UrlWith(url, server.transport, &["--header", &header]),
                server.profile,
            )
            .await
        }
        _ => unreachable!("{client:?} has no auth row"),
    }
}

/// A stdio client's run launching `command` with `args` as its server.
async fn stdio_client_row(client: Client, command: &str, args: &[String], profile: &str) -> Row {
    match client {
        Client::PythonStdio => {
            Row::from_python(&peers::python_client_stdio(command, args, &[], profile).await)
        }
        Client::InspectorStdio => inspector_row(&Target::Stdio(command, args), profile).await,
        _ => unreachable!("{client:?} is not a stdio client"),
    }
}

/// A stdio client's run through `sluice stdio` with `plugins`, in front of the server.
async fn stdio_row(client: Client, server: &Server, plugins: &[PluginSpec]) -> Row {
    let args = match &server.stdio {
        Some(target) => stdio::args_for_command(plugins, &target.command),
        None => stdio::args(&server.url, plugins),
    };
    stdio_client_row(client, stdio::SLUICE, &args, server.profile).await
}

/// Runs every client against `server`, directly and through sluice with each plugin set;
/// asserts, and writes the server's part of the matrix.
async fn matrix(server: Server, clients: &[Client]) {
    let mut lines = vec![format!("== server: {}", server.name)];
    let mut failures = Vec::new();
    for &client in clients {
        let direct = match (&server.stdio, client) {
            // rmcp starts the stdio server itself: the same transport the proxy uses.
            (Some(stdio), Client::Rmcp) => {
                rmcp_row_with(mcp::connect_stdio(&stdio.command).await, server.profile).await
            }
            // A stdio client launches the stdio server itself.
            (Some(stdio), Client::PythonStdio | Client::InspectorStdio) => {
                let command = &stdio.command;
                stdio_client_row(client, &command.program, &command.args, server.profile).await
            }
            _ => run_client(client, &server.url, &server).await,
        };
        lines.push(format!(
            "{:<14} direct       {}",
            format!("{client:?}"),
            direct.cell()
        ));
        if !direct.errors.is_empty() {
            failures.push(format!("{client:?} direct: {:?}", direct.errors));
        }
        for (label, plugins) in plugin_sets() {
            let proxied = if matches!(client, Client::PythonStdio | Client::InspectorStdio) {
                stdio_row(client, &server, &plugins).await
            } else {
                let before = server.auth.as_ref().map(|a| (a.upstream_requests)().len());
                let sluice: Running = match (&server.stdio, &server.tls) {
                    _ if server.auth.is_some() => {
                        let auth = server.auth.as_ref().unwrap();
                        proxy::start_with_access(&server.base, plugins, |url| {
                            auth.access(&format!("{url}{}", server.path))
                        })
                        .await
                    }
                    (Some(stdio), _) => proxy::start_stdio(stdio.clone(), plugins).await,
                    (None, Some(tls)) => {
                        proxy::start_tls(&server.base, plugins, tls.settings.clone()).await
                    }
                    (None, None) => proxy::start(&server.base, plugins).await,
                };
                let url = format!("{}{}", sluice.url(), server.path);
                if server.auth.is_some() {
                    // The check is on: without a token, a client gets 401.
                    let refused = crate::common::client::post(&url, "{}").await.status();
                    if refused != http::StatusCode::UNAUTHORIZED {
                        failures.push(format!("{client:?} {label}: no token answered {refused}"));
                    }
                }
                let proxied = run_client(client, &url, &server).await;
                sluice.stop().await;
                if let (Some(auth), Some(before)) = (&server.auth, before) {
                    let requests = (auth.upstream_requests)();
                    if requests.len() == before {
                        failures.push(format!("{client:?} {label}: nothing reached the upstream"));
                    }
                    if requests[before..]
                        .iter()
                        .any(|r| r.headers.contains_key("authorization"))
                    {
                        failures.push(format!("{client:?} {label}: the upstream saw the token"));
                    }
                }
                proxied
            };
            lines.push(format!(
                "{:<14} {label:<12} {}",
                format!("{client:?}"),
                proxied.cell()
            ));
            let mut expected = direct.clone();
            if label == "redactor"
                && let Some(secret) = &direct.secret
            {
                assert_eq!(secret, SECRET_TEXT);
                expected.secret = proxied.secret.clone();
                let masked = proxied.secret.as_deref().unwrap_or("");
                if masked.contains("sk-live-abc123") || !masked.starts_with("the key is ") {
                    failures.push(format!(
                        "{client:?} {label}: secret not redacted: {masked:?}"
                    ));
                }
            }
            if proxied != expected {
                failures.push(format!(
                    "{client:?} {label}: differs from direct\n  direct:  {direct:?}\n  sluice:  {proxied:?}"
                ));
            }
        }
    }
    let text = lines.join("\n");
    println!("{text}");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../mcp-matrix");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{}.txt", server.name)),
        format!("{text}\n"),
    )
    .unwrap();
    assert!(failures.is_empty(), "{text}\n\n{}", failures.join("\n"));
}

fn from_peer(
    name: &'static str,
    peer: peers::PeerServer,
    profile: &'static str,
    transport: &'static str,
) -> Server {
    Server {
        name,
        url: peer.url.clone(),
        base: peer.base(),
        path: peer.path(),
        profile,
        transport,
        _guard: Box::new(peer),
        stdio: None,
        tls: None,
        auth: None,
    }
}

const STREAMABLE_CLIENTS: &[Client] = &[Client::Rmcp, Client::Python, Client::Inspector];

/// The Streamable HTTP clients, and the stdio clients through `sluice stdio`.
const WITH_STDIO_CLIENTS: &[Client] = &[
    Client::Rmcp,
    Client::Python,
    Client::Inspector,
    Client::PythonStdio,
    Client::InspectorStdio,
];

/// The in-process rmcp server as the server under test.
fn rmcp_server(name: &'static str, server: Arc<mcp::McpServer>) -> Server {
    Server {
        name,
        url: server.url.clone(),
        base: proxy::base_of(&server.url),
        path: mcp::MCP_PATH.into(),
        profile: "sluice",
        transport: "streamable",
        _guard: Box::new(server),
        stdio: None,
        tls: None,
        auth: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_rmcp_server() {
    let server = Arc::new(mcp::spawn_mcp_server().await);
    matrix(rmcp_server("rmcp", server), WITH_STDIO_CLIENTS).await;
}

/// sluice as the OAuth resource server in front of the rmcp server: each client with a
/// bearer token behaves as it does directly, and no request reaching the upstream
/// through sluice carries a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_rmcp_server_with_auth() {
    let server = Arc::new(mcp::spawn_mcp_server().await);
    let requests = server.clone();
    let server = Server {
        auth: Some(MatrixAuth {
            authz: authz::Authz::start().await,
            upstream_requests: Box::new(move || requests.requests()),
        }),
        ..rmcp_server("rmcp-auth", server)
    };
    matrix(server, STREAMABLE_CLIENTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_python_server_sse_responses() {
    let peer = peers::python_server("sse").await;
    matrix(
        from_peer("python-sse", peer, "sluice", "streamable"),
        WITH_STDIO_CLIENTS,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_python_server_json_responses() {
    let peer = peers::python_server("json").await;
    matrix(
        from_peer("python-json", peer, "sluice", "streamable"),
        WITH_STDIO_CLIENTS,
    )
    .await;
}

/// No stdio clients: a stateless server has no GET stream, so the `announce`
/// notification has no way to any client; an HTTP client knows (no session), a stdio
/// client cannot tell and would wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_python_server_stateless() {
    let peer = peers::python_server("stateless").await;
    matrix(
        from_peer("python-stateless", peer, "sluice", "streamable"),
        STREAMABLE_CLIENTS,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_python_server_with_event_store() {
    let peer = peers::python_server("eventstore").await;
    matrix(
        from_peer("python-eventstore", peer, "sluice", "streamable"),
        WITH_STDIO_CLIENTS,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_everything_server() {
    let peer = peers::everything_server("streamableHttp").await;
    matrix(
        from_peer("everything", peer, "everything", "streamable"),
        WITH_STDIO_CLIENTS,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_legacy_sse_python_server() {
    let peer = peers::python_server("legacy").await;
    matrix(
        from_peer("python-legacy-sse", peer, "sluice", "sse"),
        &[Client::Python, Client::Inspector],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_legacy_sse_everything_server() {
    let peer = peers::everything_server("sse").await;
    matrix(
        from_peer("everything-legacy-sse", peer, "everything", "sse"),
        &[Client::Python, Client::Inspector],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_works_through_sluice_with_the_endpoint_rewritten() {
    // The server lives under /api and announces `/api/messages/?session_id=...`. sluice's
    // clients address it without the prefix (sluice adds it), so the announced URL must
    // be rewritten or the client's POSTs would go to /api/api/messages/.
    let peer = peers::python_server_with("legacy", &["--mount", "/api"]).await;
    let sluice = proxy::start(
        &format!("{}/api", peer.base()),
        vec![proxy::rust(
            "redact",
            r#"{"patterns":["sk-live-[a-z0-9]+"]}"#,
        )],
    )
    .await;
    let report =
        peers::python_client(&format!("{}/sse", sluice.url()), "sse", "sluice", None).await;
    let row = Row::from_python(&report);
    assert!(row.errors.is_empty(), "{report}");
    assert_eq!(row.echo.as_deref(), Some("héllo"));
    assert_eq!(row.secret.as_deref(), Some("the key is [REDACTED]"));
    assert_eq!(row.progress, vec![1.0, 2.0, 3.0]);
    assert_eq!(
        row.server_notification.as_deref(),
        Some("notifications/tools/list_changed")
    );
}

/// A stdio server behind sluice (one process per session), compared with the same
/// server code run directly over Streamable HTTP.
fn stdio_server(
    name: &'static str,
    direct: peers::PeerServer,
    command: StdioCommand,
    profile: &'static str,
) -> Server {
    Server {
        stdio: Some(StdioTarget {
            command,
            settings: StdioSettings::default(),
        }),
        ..from_peer(name, direct, profile, "streamable")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_python_stdio_server() {
    let direct = peers::python_server("sse").await;
    matrix(
        stdio_server(
            "python-stdio",
            direct,
            peers::python_stdio_server(),
            "sluice",
        ),
        WITH_STDIO_CLIENTS,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_everything_stdio_server() {
    let direct = peers::everything_server("streamableHttp").await;
    matrix(
        stdio_server(
            "everything-stdio",
            direct,
            peers::node_stdio_server("@modelcontextprotocol/server-everything", &["stdio"]),
            "everything",
        ),
        WITH_STDIO_CLIENTS,
    )
    .await;
}

/// The Python SDK server behind TLS (uvicorn with a certificate of a test CA): the direct
/// row goes to its `https://` URL, sluice's upstream is that URL with `--upstream-ca`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_https_upstream() {
    let pki = Pki::new();
    let (cert, key) = (pki.server.cert.display(), pki.server.key.display());
    let (cert, key) = (cert.to_string(), key.to_string());
    let peer = peers::python_server_with("sse", &["--ssl-cert", &cert, "--ssl-key", &key]).await;
    assert!(peer.url.starts_with("https://"), "{}", peer.url);
    let settings = TlsSettings {
        upstream: pki.upstream(),
        listener: None,
    };
    let server = Server {
        tls: Some(Tls { pki, settings }),
        auth: None,
        ..from_peer("python-https-upstream", peer, "sluice", "streamable")
    };
    matrix(server, &[Client::Rmcp, Client::Python]).await;
}

/// sluice's listener speaking TLS in front of a plain rmcp server: the clients trust the
/// test CA, the direct row is plain HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_tls_listener() {
    let pki = Pki::new();
    let settings = TlsSettings {
        upstream: Default::default(),
        listener: Some(pki.server.clone()),
    };
    let upstream = mcp::spawn_mcp_server().await;
    let server = Server {
        name: "rmcp-tls-listener",
        url: upstream.url.clone(),
        base: proxy::base_of(&upstream.url),
        path: mcp::MCP_PATH.into(),
        profile: "sluice",
        transport: "streamable",
        _guard: Box::new(upstream),
        tls: Some(Tls { pki, settings }),
        auth: None,
        stdio: None,
    };
    matrix(server, &[Client::Rmcp, Client::Python]).await;
}

/// The Python SDK server over stdio, one process shared by every session (ids
/// remapped): equal to the direct row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_python_stdio_server_shared() {
    let direct = peers::python_server("sse").await;
    let mut server = stdio_server(
        "python-stdio-shared",
        direct,
        peers::python_stdio_server(),
        "sluice",
    );
    if let Some(stdio) = &mut server.stdio {
        stdio.settings.shared = true;
    }
    matrix(server, STREAMABLE_CLIENTS).await;
}
