//! The compatibility matrix: every real client × every real server × {no plugin,
//! pass-through, redactor}, through sluice, compared with the same client and server
//! talking directly.
//!
//! Each client runs one scenario (initialize, tools/list, a tool call, a tool call with
//! progress notifications, a server-initiated message on the GET stream, and closing the
//! session) and reports a [`Row`]. Through sluice the row must equal the direct row, except
//! that the redactor must have masked the secret. The matrix is printed to
//! `target/mcp-matrix/<server>.txt` (`.ci/run` shows it) and to the test's stdout.

use std::time::Duration;

use serde_json::{Value, json};
use sluice::app::Running;
use sluice::plugin::PluginSpec;

use crate::common::mcp::{self, SECRET_TEXT};
use crate::common::{peers, proxy};

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
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Client {
    Rmcp,
    Python,
    Inspector,
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

/// The rmcp client's run of the scenario.
async fn rmcp_row(url: &str, profile: &str) -> Row {
    let mut row = Row::default();
    let client = match mcp::try_connect(url).await {
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
async fn inspector_row(url: &str, transport: &str, profile: &str) -> Row {
    let mut row = Row::default();
    match peers::inspector(url, transport, &["--method", "tools/list"]).await {
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
    match peers::inspector(url, transport, &call).await {
        Ok(result) => {
            row.echo = result["content"][0]["text"].as_str().map(str::to_string);
        }
        Err(e) => row.errors.push(format!("tools/call: {e}")),
    }
    row
}

async fn run_client(client: Client, url: &str, server: &Server) -> Row {
    match client {
        Client::Rmcp => rmcp_row(url, server.profile).await,
        Client::Python => Row::from_python(
            &peers::python_client(url, server.transport, server.profile, None).await,
        ),
        Client::Inspector => inspector_row(url, server.transport, server.profile).await,
    }
}

/// Runs every client against `server`, directly and through sluice with each plugin set;
/// asserts, and writes the server's part of the matrix.
async fn matrix(server: Server, clients: &[Client]) {
    let mut lines = vec![format!("== server: {}", server.name)];
    let mut failures = Vec::new();
    for &client in clients {
        let direct = run_client(client, &server.url, &server).await;
        lines.push(format!(
            "{:<10} direct       {}",
            format!("{client:?}"),
            direct.cell()
        ));
        if !direct.errors.is_empty() {
            failures.push(format!("{client:?} direct: {:?}", direct.errors));
        }
        for (label, plugins) in plugin_sets() {
            let sluice: Running = proxy::start(&server.base, plugins).await;
            let url = format!("{}{}", sluice.url(), server.path);
            let proxied = run_client(client, &url, &server).await;
            sluice.stop().await;
            lines.push(format!(
                "{:<10} {label:<12} {}",
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
    }
}

const STREAMABLE_CLIENTS: &[Client] = &[Client::Rmcp, Client::Python, Client::Inspector];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_rmcp_server() {
    let server = mcp::spawn_mcp_server().await;
    let server = Server {
        name: "rmcp",
        url: server.url.clone(),
        base: proxy::base_of(&server.url),
        path: mcp::MCP_PATH.into(),
        profile: "sluice",
        transport: "streamable",
        _guard: Box::new(server),
    };
    matrix(server, STREAMABLE_CLIENTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_python_server_sse_responses() {
    let peer = peers::python_server("sse").await;
    matrix(
        from_peer("python-sse", peer, "sluice", "streamable"),
        STREAMABLE_CLIENTS,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_python_server_json_responses() {
    let peer = peers::python_server("json").await;
    matrix(
        from_peer("python-json", peer, "sluice", "streamable"),
        STREAMABLE_CLIENTS,
    )
    .await;
}

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
        STREAMABLE_CLIENTS,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_everything_server() {
    let peer = peers::everything_server("streamableHttp").await;
    matrix(
        from_peer("everything", peer, "everything", "streamable"),
        STREAMABLE_CLIENTS,
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
