//! `sluice stdio`: a client launches sluice in place of an MCP server and speaks
//! newline-delimited JSON-RPC on its stdin and stdout. The built binary runs as a child
//! process in front of a real server; every stdout line must be JSON-RPC (logs go to
//! stderr, here at debug level so that a leak would show), and a request the chain or
//! the HTTP side leaves without an answer still gets one line.
//! The compatibility rows (Python stdio client, Inspector CLI) are in mcp_matrix.rs.

use std::path::Path;

use serde_json::{Value, json};

use crate::common::mcp::{self, SECRET_TEXT};
use crate::common::stdio::{self, StdioSluice};
use crate::common::{peers, proxy, raw};

const DROPPED_BY_PLUGIN: i64 = -32050;
const UPSTREAM_FAILED: i64 = -32051;
const PLUGIN_FAILED: i64 = -32053;

fn call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
}

fn tool_text(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("not a tool result: {answer}"))
}

fn with(mut args: Vec<String>, more: &[&str]) -> Vec<String> {
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_stdio_client_gets_the_redacted_scenario_and_sluice_ends_the_session() {
    let server = mcp::spawn_mcp_server().await;
    let plugins = [proxy::rust(
        "redact",
        r#"{"patterns":["sk-live-[a-z0-9]+"]}"#,
    )];
    let tapes = tempfile::tempdir().unwrap();
    let args = with(
        stdio::args(&server.url, &plugins),
        &["--record", &tapes.path().display().to_string()],
    );
    let report = peers::python_client_stdio(stdio::SLUICE, &args, &[], "sluice").await;
    assert_eq!(report["errors"], json!([]), "{report}");
    assert_eq!(report["secret"], "the key is [REDACTED]", "{report}");
    assert_eq!(report["progress"], json!([1, 2, 3]), "{report}");
    assert_eq!(
        report["server_notification"], "notifications/tools/list_changed",
        "{report}"
    );
    // The client closed stdin; sluice ended the session on its behalf.
    let deletes: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == hyper::Method::DELETE)
        .collect();
    assert_eq!(deletes.len(), 1, "one DELETE for the session");
    assert!(
        deletes[0].headers.contains_key("mcp-session-id"),
        "the DELETE names the session"
    );
    assert!(server.session_ids().await.is_empty(), "the session is gone");
    // The tape holds the exchanges, the secret masked in what the client got.
    let tape = std::fs::read_dir(tapes.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("a tape");
    let records = sluice::tape::format::read(&tape).unwrap();
    let requests: Vec<(String, Option<String>)> = records
        .iter()
        .filter_map(|r| match r {
            sluice::tape::format::Record::Request {
                method, rpc_method, ..
            } => Some((method.clone(), rpc_method.clone())),
            _ => None,
        })
        .collect();
    for wanted in [
        ("POST", Some("initialize")),
        ("GET", None),
        ("POST", Some("tools/call")),
        ("DELETE", None),
    ] {
        assert!(
            requests
                .iter()
                .any(|(m, rpc)| m == wanted.0 && rpc.as_deref() == wanted.1),
            "{wanted:?} not on the tape: {requests:?}"
        );
    }
    let text = std::fs::read_to_string(&tape).unwrap();
    assert!(
        text.contains("[REDACTED]"),
        "the tape shows the masked secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_request_gets_an_error_line_and_stdout_carries_only_json_rpc() {
    let server = mcp::spawn_mcp_server().await;
    let plugins = [proxy::rust("dropper", r#"{"methods":["tools/list"]}"#)];
    let mut sluice = StdioSluice::start(&stdio::args(&server.url, &plugins)).await;
    let init = sluice.initialize().await;
    assert!(init["result"]["protocolVersion"].is_string(), "{init}");
    sluice
        .send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .await;
    let (dropped, _) = sluice.answer(&json!(1)).await;
    assert_eq!(dropped["error"]["code"], DROPPED_BY_PLUGIN, "{dropped}");
    assert!(
        dropped["error"]["message"]
            .as_str()
            .unwrap()
            .contains("dropper"),
        "{dropped}"
    );
    // The session goes on: a request the plugin passes is answered by the server.
    sluice
        .send(&call(2, "echo", json!({"text": "héllo"})))
        .await;
    let (echoed, _) = sluice.answer(&json!(2)).await;
    assert_eq!(tool_text(&echoed), "héllo");
    // A line that is not JSON is the server's to refuse; whatever comes back is one
    // JSON-RPC line (checked by `finish`), and sluice goes on.
    sluice.send_raw(b"this is not json\n").await;
    let (rest, status) = sluice.finish().await;
    assert!(status.success(), "sluice stdio exits 0 at the end of stdin");
    for line in rest {
        assert!(
            line.get("error").is_some(),
            "only an error may answer garbage: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_fails_closed_with_an_error_line() {
    // `spin` never returns: each call runs into the deadline, and under the default
    // policy (closed) the message is dropped. It is a filter: it sees the server's
    // answer, so the client's request gets the error in its place.
    let server = mcp::spawn_mcp_server().await;
    let plugins = [proxy::rust("spin", "")];
    let mut sluice = StdioSluice::start(&stdio::args(&server.url, &plugins)).await;
    sluice
        .send(&json!({
            "jsonrpc": "2.0", "id": "init", "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "0"}}
        }))
        .await;
    let (answer, _) = sluice.answer(&json!("init")).await;
    assert_eq!(answer["error"]["code"], PLUGIN_FAILED, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("spin"),
        "{answer}"
    );
    let (_, status) = sluice.finish().await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_status_without_an_answer_becomes_an_error_line_and_is_counted() {
    // An endpoint that answers every request 404 with a page, not JSON-RPC: an HTTP
    // client reads the status; a stdio client only has lines, so it gets an error
    // for its id, and the metric counts it.
    let upstream = raw::serve_fixed(
        "404 Not Found",
        &["content-type: text/html"],
        "<html>no MCP here</html>",
    )
    .await;
    let args = with(
        stdio::args(&format!("{}/mcp", upstream.url()), &[]),
        &["--admin-listen", "127.0.0.1:0"],
    );
    let mut sluice = StdioSluice::start(&args).await;
    let admin = sluice.wait_log("admin API listening").await;
    let admin = admin
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the admin address in the log line")
        .to_string();
    sluice
        .send(&json!({"jsonrpc": "2.0", "id": 7, "method": "ping"}))
        .await;
    let (answer, _) = sluice.answer(&json!(7)).await;
    assert_eq!(answer["error"]["code"], UPSTREAM_FAILED, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("404") && message.contains("no MCP here"),
        "{message}"
    );
    let metrics = crate::common::client::text(
        crate::common::client::send(
            hyper::Request::get(format!("http://{admin}/metrics"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await,
    )
    .await;
    assert!(
        metrics.contains(r#"sluice_stdio_answered_total{kind="status"} 1"#),
        "{metrics}"
    );
    let (_, status) = sluice.finish().await;
    assert!(status.success());
}

/// A copy of `from` at `to`, swapped in whole (a rename), as a deploy would.
fn replace(from: &Path, to: &Path) {
    let staged = to.with_extension("staged");
    std::fs::copy(from, &staged).unwrap();
    std::fs::rename(&staged, to).unwrap();
}

/// `sluice stdio` with one plugin file, `filter.wasm` in a temporary directory, that
/// starts as the pass-through and is replaced by the redactor; `extra` flags.
async fn swapping(extra: &[&str]) -> (StdioSluice, tempfile::TempDir, mcp::McpServer) {
    let server = mcp::spawn_mcp_server().await;
    let dir = tempfile::tempdir().unwrap();
    let filter = dir.path().join("filter.wasm");
    replace(&proxy::rust_plugin("passthrough"), &filter);
    let args = with(
        vec![
            "stdio".into(),
            "--upstream".into(),
            server.url.clone(),
            "--plugin".into(),
            filter.display().to_string(),
            // The pass-through has no `init` and ignores it; the redactor takes it.
            "--plugin-config".into(),
            r#"{"patterns":["sk-live-[a-z0-9]+"]}"#.into(),
        ],
        extra,
    );
    let mut sluice = StdioSluice::start(&args).await;
    sluice.initialize().await;
    sluice.send(&call(1, "get_secret", json!({}))).await;
    let (answer, _) = sluice.answer(&json!(1)).await;
    assert_eq!(
        tool_text(&answer),
        SECRET_TEXT,
        "the pass-through passes it"
    );
    replace(&proxy::rust_plugin("redact"), &filter);
    (sluice, dir, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_plugin_file_serves_the_next_message() {
    let (mut sluice, _dir, _server) = swapping(&[]).await;
    sluice.wait_log("chain reloaded").await;
    sluice.send(&call(2, "get_secret", json!({}))).await;
    let (answer, _) = sluice.answer(&json!(2)).await;
    assert_eq!(tool_text(&answer), "the key is [REDACTED]");
    let (_, status) = sluice.finish().await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_chain_of_sluice_stdio() {
    let (mut sluice, _dir, _server) = swapping(&["--no-watch"]).await;
    let pid = rustix::process::Pid::from_raw(sluice.pid()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    sluice.wait_log("chain reloaded (Signal)").await;
    sluice.send(&call(2, "get_secret", json!({}))).await;
    let (answer, _) = sluice.answer(&json!(2)).await;
    assert_eq!(
        tool_text(&answer),
        "the key is [REDACTED]",
        "{}",
        sluice.logs.join("\n")
    );
    let (_, status) = sluice.finish().await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_call_holds_up_no_later_request_a_cancelled_one_gets_no_answer_and_sigterm_ends_the_session()
 {
    // The Python server's `count` with a delay streams progress for longer than the
    // test runs: while it does, a ping is answered; then the client cancels it, and
    // sluice makes up no answer for it (the server may answer it; this one does).
    // SIGTERM then ends the session (DELETE, on the tape) and sluice exits 0.
    let server = peers::python_server("sse").await;
    let tapes = tempfile::tempdir().unwrap();
    let args = with(
        stdio::args(&server.url, &[]),
        &["--record", &tapes.path().display().to_string()],
    );
    let mut sluice = StdioSluice::start(&args).await;
    sluice.initialize().await;
    sluice
        .send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "count", "arguments": {"n": 1000, "delay_ms": 1000},
                       "_meta": {"progressToken": "p"}}}))
        .await;
    let progress = sluice.recv().await;
    assert_eq!(progress["method"], "notifications/progress", "{progress}");
    sluice
        .send(&json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}))
        .await;
    let (pong, before) = sluice.answer(&json!(2)).await;
    assert_eq!(pong["result"], json!({}), "{pong}");
    assert!(
        !before.iter().any(|m| m["id"] == 1),
        "the ping waited for the long call: {before:?}"
    );
    sluice
        .send(
            &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                      "params": {"requestId": 1, "reason": "enough"}}),
        )
        .await;
    sluice
        .send(&json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}))
        .await;
    let (pong, before) = sluice.answer(&json!(3)).await;
    assert_eq!(pong["result"], json!({}), "{pong}");
    let made_up = |m: &Value| {
        m["id"] == 1
            && m["error"]["message"]
                .as_str()
                .is_some_and(|text| text.starts_with("sluice:"))
    };
    assert!(!before.iter().any(made_up), "{before:?}");
    let pid = rustix::process::Pid::from_raw(sluice.pid()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let (rest, status) = sluice.finish().await;
    assert!(status.success(), "{status}");
    assert!(
        !rest.iter().any(made_up),
        "an answer was made up for a cancelled request: {rest:?}"
    );
    let tape = std::fs::read_dir(tapes.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("a tape");
    let records = sluice::tape::format::read(&tape).unwrap();
    assert!(
        records.iter().any(|r| matches!(
            r,
            sluice::tape::format::Record::Request { method, .. } if method == "DELETE"
        )),
        "SIGTERM ends the session with a DELETE"
    );
}
