//! `sluice stdio` as a child process: the built binary, the command line for a chain,
//! and a harness that writes JSON-RPC lines to its stdin and reads its stdout and
//! stderr line by line.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use sluice::plugin::{PluginSource, PluginSpec};
use sluice::upstream::StdioCommand;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// The `sluice` binary cargo built for these tests.
pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// How long a line may take to come (a bounded wait for liveness, not a timing claim).
pub const LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// `stdio --upstream <endpoint>` and a `--plugin`/`--plugin-config` pair per plugin
/// file in `plugins`.
pub fn args(endpoint: &str, plugins: &[PluginSpec]) -> Vec<String> {
    let mut args: Vec<String> = vec!["stdio".into(), "--upstream".into(), endpoint.into()];
    args.extend(plugin_args(plugins));
    args
}

/// `stdio`, the plugins, and `-- <command>`: sluice stdio in front of a stdio server.
pub fn args_for_command(plugins: &[PluginSpec], command: &StdioCommand) -> Vec<String> {
    let mut args: Vec<String> = vec!["stdio".into()];
    args.extend(plugin_args(plugins));
    for (key, value) in &command.env {
        args.push(format!("--upstream-env={key}={value}"));
    }
    if let Some(cwd) = &command.cwd {
        args.push(format!("--upstream-cwd={}", cwd.display()));
    }
    args.push("--".into());
    args.push(command.program.clone());
    args.extend(command.args.iter().cloned());
    args
}

/// A `--plugin`/`--plugin-config` pair per plugin file in `plugins`.
fn plugin_args(plugins: &[PluginSpec]) -> Vec<String> {
    let mut args = Vec::new();
    for spec in plugins {
        let PluginSource::File(path) = &spec.source else {
            panic!("sluice stdio takes plugin files, not {}", spec.name);
        };
        args.push("--plugin".into());
        args.push(path.display().to_string());
        if !spec.config.is_empty() {
            args.push("--plugin-config".into());
            args.push(spec.config.clone());
        }
    }
    args
}

/// A running `sluice stdio`; killed when dropped.
pub struct StdioSluice {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: mpsc::UnboundedReceiver<String>,
    stderr: mpsc::UnboundedReceiver<String>,
    /// Every stderr line read so far.
    pub logs: Vec<String>,
}

impl StdioSluice {
    /// Starts `sluice` with `args` (from `stdio`) and waits for its "serving" log line:
    /// from then on its chain, watcher and signal handler are in place.
    pub async fn start(args: &[String]) -> StdioSluice {
        let mut child = Command::new(SLUICE)
            .args(args)
            .env("RUST_LOG", "debug,wasmtime=info,cranelift=info")
            .env_remove("SLUICE_UPSTREAM")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start sluice stdio");
        let stdout = lines(child.stdout.take().expect("piped stdout"), false);
        let stderr = lines(child.stderr.take().expect("piped stderr"), true);
        let stdin = child.stdin.take();
        let mut sluice = StdioSluice {
            child,
            stdin,
            stdout,
            stderr,
            logs: Vec::new(),
        };
        sluice
            .wait_log("serving the client on stdin and stdout")
            .await;
        sluice
    }

    /// Writes `message` as one line.
    pub async fn send(&mut self, message: &Value) {
        let mut line = message.to_string();
        line.push('\n');
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to sluice");
        stdin.flush().await.expect("flush to sluice");
    }

    /// Writes raw bytes (a line that is not JSON, say).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(bytes).await.expect("write to sluice");
        stdin.flush().await.expect("flush to sluice");
    }

    /// The next stdout line, which must be one JSON-RPC message (or a batch of them).
    pub async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(LINE_TIMEOUT, self.stdout.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no stdout line within {LINE_TIMEOUT:?}; logs:\n{}",
                    self.logs.join("\n")
                )
            })
            .expect("sluice closed stdout");
        json_rpc_line(&line)
    }

    /// The next stdout line that answers request `id` (server notifications and
    /// requests before it are returned too, in order, after it).
    pub async fn answer(&mut self, id: &Value) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            let message = self.recv().await;
            if message.get("id") == Some(id) && message.get("method").is_none() {
                return (message, before);
            }
            before.push(message);
        }
    }

    /// Initializes a session (initialize, then notifications/initialized); the result.
    pub async fn initialize(&mut self) -> Value {
        self.send(&serde_json::json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "sluice-stdio-test", "version": "0"}
            }
        }))
        .await;
        let (answer, _) = self.answer(&serde_json::json!(0)).await;
        self.send(&serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        answer
    }

    /// Waits for a stderr line containing `text`; returns it.
    pub async fn wait_log(&mut self, text: &str) -> String {
        if let Some(line) = self.logs.iter().find(|l| l.contains(text)) {
            return line.clone();
        }
        loop {
            let line = tokio::time::timeout(LINE_TIMEOUT, self.stderr.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no log line with {text:?} within {LINE_TIMEOUT:?}; logs:\n{}",
                        self.logs.join("\n")
                    )
                })
                .unwrap_or_else(|| {
                    panic!(
                        "sluice exited before logging {text:?}; logs:\n{}",
                        self.logs.join("\n")
                    )
                });
            self.logs.push(line.clone());
            if line.contains(text) {
                return line;
            }
        }
    }

    /// Closes stdin (the client is done) and waits for sluice to exit; returns the
    /// stdout lines it wrote after that, each checked to be JSON-RPC, and its exit status.
    pub async fn finish(mut self) -> (Vec<Value>, std::process::ExitStatus) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(LINE_TIMEOUT, self.child.wait())
            .await
            .expect("sluice exits after stdin ends")
            .expect("wait for sluice");
        let mut rest = Vec::new();
        while let Some(line) = self.stdout.recv().await {
            rest.push(json_rpc_line(&line));
        }
        (rest, status)
    }

    /// The process id, for signals.
    pub fn pid(&self) -> i32 {
        self.child.id().expect("sluice is running") as i32
    }
}

/// Every line of a pipe, read by a task (log lines without their colours).
fn lines(
    pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    logs: bool,
) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = if logs { strip_ansi(&line) } else { line };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `line` without terminal colour sequences (`ESC [ ... m`), which log lines carry.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `line` as JSON-RPC: a JSON object with `"jsonrpc": "2.0"` and a method or an id (or
/// an array of such). Anything else on stdout breaks a stdio client.
pub fn json_rpc_line(line: &str) -> Value {
    let value: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("a stdout line that is not JSON ({e}): {line:?}"));
    let messages = match &value {
        Value::Array(items) => items.clone(),
        _ => vec![value.clone()],
    };
    for message in &messages {
        assert_eq!(message["jsonrpc"], "2.0", "not JSON-RPC: {line}");
        assert!(
            message.get("method").is_some() || message.get("id").is_some(),
            "not a JSON-RPC message: {line}"
        );
    }
    value
}
