//! A stdio MCP server behind sluice: one process per session, and process hygiene —
//! a server process never outlives its session or sluice (DELETE, idle timeout, a
//! client that vanished, SIGTERM, SIGKILL), the process cap gives a clear error, and a
//! server that exits or writes garbage answers its waiting requests with errors. And
//! one process shared by every session: clients' ids, progress tokens, cancellations
//! and answers to server requests cannot cross between sessions.
//!
//! Processes are found by a marker in their environment (`/proc/<pid>/environ`), so a
//! test sees its own server processes and their children, whatever else runs.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::config::StdioTarget;
use sluice::upstream::{StdioCommand, StdioSettings, stdio::Garbage};

use crate::common::{client, mcp, peers, proxy};

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

/// A marker unique to one test.
fn marker() -> String {
    format!("sluice-test-{}", uuid::Uuid::new_v4().simple())
}

/// `command` with the marker in its environment.
fn marked(mut command: StdioCommand, mark: &str) -> StdioCommand {
    command
        .env
        .push(("SLUICE_TEST_MARK".to_string(), mark.to_string()));
    command
}

/// The pids of processes whose environment carries `mark`.
fn marked_processes(mark: &str) -> Vec<u32> {
    let needle = format!("SLUICE_TEST_MARK={mark}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        // A zombie (exited, not yet reaped) has an empty environ: it is gone.
        if environ
            .split(|&b| b == 0)
            .any(|var| var == needle.as_bytes())
        {
            found.push(pid);
        }
    }
    found
}

/// Waits (bounded) until no process carries `mark`.
async fn wait_gone(mark: &str, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    loop {
        let left = marked_processes(mark);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: server processes {left:?} still running after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) until `/metrics` has `line`.
async fn wait_metric(sluice: &sluice::app::Running, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = sluice.proxy().metrics().encode();
        if metrics.contains(line) {
            return;
        }
        assert!(Instant::now() < deadline, "no {line} in\n{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn target(command: StdioCommand, settings: StdioSettings) -> StdioTarget {
    StdioTarget { command, settings }
}

/// A shell script as a stdio server (for faults no real server makes on demand).
fn sh(script: &str) -> StdioCommand {
    StdioCommand {
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        env: Vec::new(),
        cwd: None,
    }
}

/// POSTs an initialize; returns the session id and the response's JSON-RPC messages.
async fn initialize(url: &str) -> (Option<String>, u16, Vec<Value>) {
    let response = client::post(&format!("{url}/mcp"), INITIALIZE).await;
    let status = response.status().as_u16();
    let session = client::session_id(&response);
    let sse = client::is_sse(&response);
    let messages = if sse {
        client::events(response)
            .await
            .iter()
            .map(|e| serde_json::from_str(e.data.as_deref().unwrap_or_default()).unwrap())
            .collect()
    } else {
        vec![serde_json::from_str(&client::text(response).await).unwrap_or(Value::Null)]
    };
    (session, status, messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_session_gets_its_own_process_and_delete_ends_it() {
    let mark = marker();
    let command = marked(peers::python_stdio_server(), &mark);
    let sluice = proxy::start_stdio(
        target(command, StdioSettings::default()),
        vec![proxy::rust(
            "redact",
            r#"{"patterns":["sk-live-[a-z0-9]+"]}"#,
        )],
    )
    .await;
    let url = format!("{}/mcp", sluice.url());
    let a = mcp::connect(&url).await;
    let b = mcp::connect(&url).await;
    assert_eq!(marked_processes(&mark).len(), 2, "one process per session");
    assert_eq!(
        a.call_text("get_secret", Value::Null).await.unwrap(),
        "the key is [REDACTED]"
    );
    assert_eq!(
        b.call_text("echo", json!({"text": "b"})).await.unwrap(),
        "b"
    );
    // rmcp sends DELETE when the client closes.
    a.service.cancel().await.unwrap();
    b.service.cancel().await.unwrap();
    wait_gone(&mark, Duration::from_secs(10), "after DELETE").await;
    wait_metric(
        &sluice,
        r#"sluice_stdio_process_ends_total{reason="deleted"} 2"#,
    )
    .await;
    wait_metric(&sluice, "sluice_stdio_processes 0").await;
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_world_server_keeps_each_sessions_state_apart() {
    // @modelcontextprotocol/server-memory keeps a knowledge graph per process (in a
    // file: one per session here, through the environment).
    let dir = tempfile::tempdir().unwrap();
    let mut command = peers::node_stdio_server("@modelcontextprotocol/server-memory", &[]);
    command.env.push((
        "MEMORY_FILE_PATH".into(),
        dir.path().join("memory.json").display().to_string(),
    ));
    let sluice = proxy::start_stdio(
        target(command, StdioSettings::default()),
        vec![proxy::rust("passthrough", "")],
    )
    .await;
    let url = format!("{}/mcp", sluice.url());
    let client = mcp::connect(&url).await;
    let tools = client.service.list_all_tools().await.unwrap();
    assert!(
        tools.iter().any(|t| t.name == "create_entities"),
        "{tools:?}"
    );
    let created = client
        .call_text(
            "create_entities",
            json!({"entities": [{"name": "sluice", "entityType": "proxy", "observations": ["guards MCP"]}]}),
        )
        .await
        .unwrap();
    assert!(created.contains("sluice"), "{created}");
    let graph = client.call_text("read_graph", json!({})).await.unwrap();
    assert!(graph.contains("guards MCP"), "{graph}");
    client.service.cancel().await.unwrap();
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_ends_and_so_does_one_whose_client_vanished() {
    let mark = marker();
    let settings = StdioSettings {
        idle_timeout: Some(Duration::from_secs(1)),
        ..StdioSettings::default()
    };
    let sluice = proxy::start_stdio(
        target(marked(peers::python_stdio_server(), &mark), settings),
        vec![],
    )
    .await;
    // Idle: initialized, then nothing (no DELETE).
    let (session, status, _) = initialize(&sluice.url()).await;
    assert_eq!(status, 200);
    assert!(session.is_some());
    assert_eq!(marked_processes(&mark).len(), 1);
    wait_gone(&mark, Duration::from_secs(10), "after the idle timeout").await;
    // The session is gone for the client too: it must initialize again.
    let get = http::Request::get(format!("{}/mcp", sluice.url()))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session.unwrap())
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(client::send(get).await.status(), 404);

    // A client that vanished (no DELETE) with its GET stream open and a long tool call
    // waiting: once both connections close, nobody waits on the session.
    let (session, _, _) = initialize(&sluice.url()).await;
    let session = session.unwrap();
    let with_session = |request: http::request::Builder| {
        request
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-session-id", &session)
    };
    let get = with_session(http::Request::get(format!("{}/mcp", sluice.url())))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let get = client::send(get).await;
    assert_eq!(get.status(), 200);
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"count","arguments":{"n":100,"delay_ms":1000}}}"#;
    let call = with_session(http::Request::post(format!("{}/mcp", sluice.url())))
        .body(http_body_util::Full::new(bytes::Bytes::from(call)))
        .unwrap();
    let call = client::send(call).await;
    assert_eq!(call.status(), 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(marked_processes(&mark).len(), 1, "busy, not idle");
    drop((get, call));
    wait_gone(&mark, Duration::from_secs(15), "after the client vanished").await;
    wait_metric(
        &sluice,
        r#"sluice_stdio_process_ends_total{reason="idle"} 2"#,
    )
    .await;
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_cap_refuses_a_new_session_with_a_clear_error() {
    let mark = marker();
    let settings = StdioSettings {
        max_processes: 1,
        ..StdioSettings::default()
    };
    let sluice = proxy::start_stdio(
        target(marked(peers::python_stdio_server(), &mark), settings),
        vec![],
    )
    .await;
    let first = mcp::connect(&format!("{}/mcp", sluice.url())).await;
    let (session, status, messages) = initialize(&sluice.url()).await;
    assert_eq!(status, 503, "{messages:?}");
    assert!(session.is_none());
    let message = messages[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("1 stdio server processes are running")
            && message.contains("--upstream-max-processes"),
        "{messages:?}"
    );
    assert_eq!(marked_processes(&mark).len(), 1);
    let metrics = sluice.proxy().metrics().encode();
    assert!(
        metrics.contains(r#"sluice_stdio_sessions_refused_total{reason="max_processes"} 1"#),
        "{metrics}"
    );
    // Ending the first session makes room.
    first.service.cancel().await.unwrap();
    wait_gone(&mark, Duration::from_secs(10), "after DELETE").await;
    let (_, status, _) = initialize(&sluice.url()).await;
    assert_eq!(status, 200);
    sluice.stop().await;
    wait_gone(&mark, Duration::from_secs(10), "after stop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_exits_answers_the_waiting_request_with_an_error() {
    let sluice = proxy::start_stdio(
        target(
            sh("read line; echo dying >&2; exit 3"),
            StdioSettings::default(),
        ),
        vec![],
    )
    .await;
    let (_, status, messages) = initialize(&sluice.url()).await;
    assert_eq!(status, 200);
    assert_eq!(messages.len(), 1, "{messages:?}");
    let error = &messages[0];
    assert_eq!(error["id"], 1, "{error}");
    assert_eq!(error["error"]["code"], -32051, "{error}");
    let text = error["error"]["message"].as_str().unwrap();
    assert!(text.contains("exited (exit status: 3)"), "{text}");
    wait_metric(
        &sluice,
        r#"sluice_stdio_process_ends_total{reason="exited"} 1"#,
    )
    .await;
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_stdout_ends_the_session_unless_told_to_skip_it() {
    let answer = r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"sh","version":"1"}}}"#;
    let script = format!("read line; echo 'Server ready!'; echo '{answer}'; sleep 30");
    let sluice = proxy::start_stdio(target(sh(&script), StdioSettings::default()), vec![]).await;
    let (_, _, messages) = initialize(&sluice.url()).await;
    let error = &messages[0]["error"];
    assert_eq!(error["code"], -32051, "{messages:?}");
    let text = error["message"].as_str().unwrap();
    assert!(
        text.contains("not a JSON-RPC message") && text.contains("Server ready!"),
        "{text}"
    );
    wait_metric(
        &sluice,
        r#"sluice_stdio_lines_dropped_total{reason="not_json"} 1"#,
    )
    .await;
    // The process ends after the answer: stdin closed, then SIGTERM after the grace.
    wait_metric(
        &sluice,
        r#"sluice_stdio_process_ends_total{reason="garbage"} 1"#,
    )
    .await;
    sluice.stop().await;

    let skip = StdioSettings {
        garbage: Garbage::Skip,
        ..StdioSettings::default()
    };
    let sluice = proxy::start_stdio(target(sh(&script), skip), vec![]).await;
    let (session, status, messages) = initialize(&sluice.url()).await;
    assert_eq!(status, 200);
    assert!(session.is_some());
    assert_eq!(
        messages[0]["result"]["serverInfo"]["name"], "sh",
        "{messages:?}"
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_and_working_directory_are_the_operators() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = sh(
        r#"read line; printf '{"jsonrpc":"2.0","id":1,"result":{"cwd":"%s","token":"%s"}}\n' "$PWD" "$API_TOKEN"; sleep 30"#,
    );
    command
        .env
        .push(("API_TOKEN".into(), "from-the-operator".into()));
    command.cwd = Some(dir.path().to_path_buf());
    let sluice = proxy::start_stdio(target(command, StdioSettings::default()), vec![]).await;
    let (_, _, messages) = initialize(&sluice.url()).await;
    let result = &messages[0]["result"];
    assert_eq!(result["token"], "from-the-operator", "{messages:?}");
    assert_eq!(
        std::fs::canonicalize(result["cwd"].as_str().unwrap()).unwrap(),
        std::fs::canonicalize(dir.path()).unwrap()
    );
    sluice.stop().await;
}

/// The real binary with a stdio server; `mark` in the server's environment.
struct Binary {
    child: std::process::Child,
    url: String,
}

fn start_binary(mark: &str, server: &StdioCommand) -> Binary {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--no-watch", "--no-cache", "--shutdown-grace", "1"])
        .args(["--upstream-env", &format!("SLUICE_TEST_MARK={mark}")])
        .arg("--")
        .arg(&server.program)
        .args(&server.args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sluice starts");
    Binary {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

impl Binary {
    async fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = self.url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "sluice never listened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigkill_of_sluice_end_its_servers() {
    // A stubborn server: it ignores the end of its stdin and SIGTERM, so only sluice's
    // escalation (SIGTERM) or the parent-death signal (SIGKILL) can end it.
    let stubborn = sh(
        r#"trap '' TERM HUP; read line; echo '{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"stubborn","version":"1"}}}'; while :; do sleep 1; done"#,
    );
    for signal in ["TERM", "KILL"] {
        let mark = marker();
        let mut sluice = start_binary(&mark, &stubborn);
        sluice.wait_listening().await;
        let (session, status, _) = initialize(&sluice.url).await;
        assert_eq!(status, 200);
        assert!(session.is_some());
        assert!(!marked_processes(&mark).is_empty());
        sluice.signal(signal);
        let _ = tokio::task::spawn_blocking(move || sluice.child.wait())
            .await
            .unwrap();
        wait_gone(
            &mark,
            Duration::from_secs(10),
            &format!("after SIG{signal}"),
        )
        .await;
    }
    // A real server, ended by SIGTERM with an rmcp client connected.
    let mark = marker();
    let mut sluice = start_binary(&mark, &peers::python_stdio_server());
    sluice.wait_listening().await;
    let client = mcp::connect(&format!("{}/mcp", sluice.url)).await;
    assert_eq!(
        client
            .call_text("echo", json!({"text": "x"}))
            .await
            .unwrap(),
        "x"
    );
    assert_eq!(marked_processes(&mark).len(), 1);
    sluice.signal("TERM");
    let _ = tokio::task::spawn_blocking(move || sluice.child.wait())
        .await
        .unwrap();
    wait_gone(&mark, Duration::from_secs(10), "after SIGTERM").await;
    drop(client);
}

// Shared mode: one process for every session, ids remapped between them.

fn shared() -> StdioSettings {
    StdioSettings {
        shared: true,
        ..StdioSettings::default()
    }
}

/// One raw client session: the test writes every id itself, so two of them can collide.
struct Raw {
    url: String,
    session: String,
}

impl Raw {
    /// Initializes with `id`; returns the session and the initialize answer.
    async fn open(base: &str, id: &str) -> (Raw, Value) {
        let body = INITIALIZE.replace(r#""id":1"#, &format!(r#""id":{id}"#));
        let response = client::post(&format!("{base}/mcp"), &body).await;
        assert_eq!(response.status(), 200);
        let session = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        let answer = data(&client::events(response).await[0]);
        let raw = Raw {
            url: format!("{base}/mcp"),
            session,
        };
        let accepted = raw
            .post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await;
        assert_eq!(accepted.status(), 202);
        (raw, answer)
    }

    fn request(&self, method: http::Method) -> http::request::Builder {
        http::Request::builder()
            .method(method)
            .uri(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-session-id", &self.session)
    }

    async fn post(&self, body: &str) -> http::Response<hyper::body::Incoming> {
        let request = self
            .request(http::Method::POST)
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .unwrap();
        client::send(request).await
    }

    async fn get(&self) -> sluice::upstream::SseEvents<hyper::body::Incoming> {
        let request = self
            .request(http::Method::GET)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let response = client::send(request).await;
        assert_eq!(response.status(), 200);
        sluice::upstream::SseEvents::new(response.into_body(), 1 << 20)
    }

    async fn stream(&self, body: &str) -> sluice::upstream::SseEvents<hyper::body::Incoming> {
        let response = self.post(body).await;
        assert_eq!(response.status(), 200);
        sluice::upstream::SseEvents::new(response.into_body(), 1 << 20)
    }
}

fn data(event: &sluice::sse::Event) -> Value {
    serde_json::from_str(event.data.as_deref().unwrap_or_default()).unwrap()
}

/// The next JSON-RPC message on an SSE stream (`None`: it ended).
async fn next(stream: &mut sluice::upstream::SseEvents<hyper::body::Incoming>) -> Option<Value> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("a message within 30 s")?;
        if let sluice::sse::Frame::Event(event) = frame.expect("a well-formed stream") {
            return Some(data(&event));
        }
    }
}

/// Every message left on a stream.
async fn rest(mut stream: sluice::upstream::SseEvents<hyper::body::Incoming>) -> Vec<Value> {
    let mut all = Vec::new();
    while let Some(message) = next(&mut stream).await {
        all.push(message);
    }
    all
}

fn count_call(id: u64, token: u64, n: u64, delay_ms: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "count", "arguments": {"n": n, "delay_ms": delay_ms},
        "_meta": {"progressToken": token}}})
    .to_string()
}

fn text_of(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_clients_sending_the_same_id_each_get_their_own_answer() {
    let mark = marker();
    let sluice = proxy::start_stdio(
        target(marked(peers::python_stdio_server(), &mark), shared()),
        vec![proxy::rust("passthrough", "")],
    )
    .await;
    let (a, first) = Raw::open(&sluice.url(), "1").await;
    // The second initialize is answered from the first's result, with its own id.
    let (b, second) = Raw::open(&sluice.url(), r#""init-b""#).await;
    assert_eq!(first["id"], 1);
    assert_eq!(second["id"], "init-b");
    assert_eq!(first["result"], second["result"]);
    assert_ne!(a.session, b.session);
    assert_eq!(marked_processes(&mark).len(), 1, "one shared process");

    // A's request is in flight (its first progress has come) when B sends the same id.
    let mut a_call = a.stream(&count_call(1, 1, 3, 300)).await;
    let progress = next(&mut a_call).await.unwrap();
    assert_eq!(progress["params"]["progressToken"], 1, "{progress}");
    let b_call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "from b"}}});
    let b_answers = rest(b.stream(&b_call.to_string()).await).await;
    assert_eq!(b_answers.len(), 1, "{b_answers:?}");
    assert_eq!(b_answers[0]["id"], 1);
    assert_eq!(text_of(&b_answers[0]), "from b", "{b_answers:?}");
    let a_rest = rest(a_call).await;
    let a_answer = a_rest.last().unwrap();
    assert_eq!(a_answer["id"], 1);
    assert_eq!(text_of(a_answer), "counted 3", "{a_rest:?}");
    assert_eq!(
        a_rest.len(),
        3,
        "two more progress, then the answer: {a_rest:?}"
    );
    sluice.stop().await;
    wait_gone(&mark, Duration::from_secs(10), "after stop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_clients_with_the_same_progress_token_see_only_their_own_progress() {
    let sluice = proxy::start_stdio(target(peers::python_stdio_server(), shared()), vec![]).await;
    let (a, _) = Raw::open(&sluice.url(), "0").await;
    let (b, _) = Raw::open(&sluice.url(), "0").await;
    // Both use id 5 and token 7; A counts to 3, B to 2, overlapping.
    let mut a_call = a.stream(&count_call(5, 7, 3, 300)).await;
    let mut a_seen = vec![next(&mut a_call).await.unwrap()];
    let b_seen = rest(b.stream(&count_call(5, 7, 2, 0)).await).await;
    a_seen.extend(rest(a_call).await);
    for (seen, n) in [(&a_seen, 3), (&b_seen, 2)] {
        let (progress, answers): (Vec<&Value>, Vec<&Value>) = seen
            .iter()
            .partition(|m| m["method"] == "notifications/progress");
        assert_eq!(progress.len(), n, "{seen:?}");
        for p in &progress {
            assert_eq!(p["params"]["progressToken"], 7, "{p}");
            assert_eq!(
                p["params"]["total"], n as f64,
                "another client's progress: {p}"
            );
        }
        assert_eq!(answers.len(), 1, "{seen:?}");
        assert_eq!(answers[0]["id"], 5);
        assert_eq!(text_of(answers[0]), format!("counted {n}"));
    }

    // Two rmcp clients number ids and tokens alike (from 0): each sees its own progress.
    let url = format!("{}/mcp", sluice.url());
    let (c, d) = tokio::join!(mcp::connect(&url), mcp::connect(&url));
    let (c_text, d_text) = tokio::join!(
        c.call_with_progress("count", json!({"n": 3, "delay_ms": 100})),
        d.call_with_progress("count", json!({"n": 2, "delay_ms": 100})),
    );
    assert_eq!(c_text.unwrap(), "counted 3");
    assert_eq!(d_text.unwrap(), "counted 2");
    assert_eq!(
        c.wait_progress(3, Duration::from_secs(10)).await,
        [1.0, 2.0, 3.0]
    );
    assert_eq!(
        d.wait_progress(2, Duration::from_secs(10)).await,
        [1.0, 2.0]
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shared_process_serves_every_session_and_delete_ends_only_one() {
    let mark = marker();
    let sluice = proxy::start_stdio(
        target(marked(peers::python_stdio_server(), &mark), shared()),
        vec![],
    )
    .await;
    let url = format!("{}/mcp", sluice.url());
    let a = mcp::connect(&url).await;
    let b = mcp::connect(&url).await;
    let c = mcp::connect(&url).await;
    assert_eq!(
        marked_processes(&mark).len(),
        1,
        "one process for three sessions"
    );
    // A notification not tied to a request reaches every session.
    assert_eq!(
        a.call_text("announce", json!({})).await.unwrap(),
        "announced"
    );
    for client in [&a, &b, &c] {
        assert_eq!(
            client
                .wait_notification(Duration::from_secs(10))
                .await
                .as_deref(),
            Some("notifications/tools/list_changed")
        );
    }
    a.service.cancel().await.unwrap();
    wait_metric(
        &sluice,
        r#"sluice_stdio_session_ends_total{reason="deleted"} 1"#,
    )
    .await;
    assert_eq!(
        b.call_text("echo", json!({"text": "b"})).await.unwrap(),
        "b"
    );
    assert_eq!(
        marked_processes(&mark).len(),
        1,
        "the process serves the others"
    );

    // The process exits: a waiting request gets a JSON-RPC error, every session ends,
    // and the next initialize starts the process again.
    let (raw, _) = Raw::open(&sluice.url(), "1").await;
    let mut call = raw.stream(&count_call(2, 2, 3, 1000)).await;
    next(&mut call).await.unwrap();
    let pids = marked_processes(&mark);
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pids[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let error = rest(call).await.pop().unwrap();
    assert_eq!(error["id"], 2, "{error}");
    assert_eq!(error["error"]["code"], -32051, "{error}");
    wait_metric(
        &sluice,
        r#"sluice_stdio_process_ends_total{reason="exited"} 1"#,
    )
    .await;
    wait_metric(
        &sluice,
        r#"sluice_stdio_session_ends_total{reason="exited"} 3"#,
    )
    .await;
    assert_eq!(
        raw.post(r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#)
            .await
            .status(),
        404
    );
    let d = mcp::connect(&url).await;
    assert_eq!(
        d.call_text("echo", json!({"text": "d"})).await.unwrap(),
        "d"
    );
    assert_eq!(marked_processes(&mark).len(), 1);
    assert_ne!(marked_processes(&mark), pids, "a new process");

    sluice.stop().await;
    wait_gone(&mark, Duration::from_secs(10), "after stop").await;
    drop((b, c, d));
}

/// A stdio server that, for each tools/call, asks the client `roots/list` (its own ids
/// from 0) and answers the call with the roots it was given; a call of `wait` it
/// answers only when it is cancelled (to show which request a cancellation named).
fn asking_server() -> StdioCommand {
    let script = r#"
import json, sys
asked, next_id = {}, 0
def send(m):
    sys.stdout.write(json.dumps(m) + "\n"); sys.stdout.flush()
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "initialize":
        send({"jsonrpc": "2.0", "id": m["id"], "result": {"protocolVersion": "2025-06-18",
              "capabilities": {"tools": {}}, "serverInfo": {"name": "asking", "version": "1"}}})
    elif m.get("method") == "tools/call" and m["params"]["name"] == "wait":
        pass
    elif m.get("method") == "notifications/cancelled":
        send({"jsonrpc": "2.0", "id": m["params"]["requestId"],
              "result": {"content": [{"type": "text", "text": "cancelled"}]}})
    elif m.get("method") == "tools/call":
        asked[next_id] = m["id"]
        send({"jsonrpc": "2.0", "id": next_id, "method": "roots/list"})
        next_id += 1
    elif "method" not in m and m.get("id") in asked:
        roots = json.dumps(m.get("result"))
        send({"jsonrpc": "2.0", "id": asked.pop(m["id"]),
              "result": {"content": [{"type": "text", "text": roots}]}})
"#;
    StdioCommand {
        program: "python3".into(),
        args: vec!["-c".into(), script.into()],
        env: Vec::new(),
        cwd: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_servers_request_is_answered_only_by_the_session_it_asked() {
    let sluice = proxy::start_stdio(target(asking_server(), shared()), vec![]).await;
    let (a, _) = Raw::open(&sluice.url(), "1").await;
    let (b, _) = Raw::open(&sluice.url(), "1").await;
    let mut a_get = a.get().await;
    let mut a_call = a
        .stream(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#)
        .await;
    let asked = next(&mut a_get).await.unwrap();
    assert_eq!(asked["method"], "roots/list", "{asked}");
    let id = asked["id"].clone();
    // B answers A's question, by the id A was given and by the server's own (0): both
    // are dropped, the server never sees them.
    for forged in [id.clone(), json!(0)] {
        let answer =
            json!({"jsonrpc": "2.0", "id": forged, "result": {"roots": [{"uri": "file:///b"}]}});
        assert_eq!(b.post(&answer.to_string()).await.status(), 202);
    }
    wait_metric(
        &sluice,
        r#"sluice_stdio_client_messages_dropped_total{reason="foreign_answer"} 2"#,
    )
    .await;
    let answer = json!({"jsonrpc": "2.0", "id": id, "result": {"roots": [{"uri": "file:///a"}]}});
    assert_eq!(a.post(&answer.to_string()).await.status(), 202);
    let result = next(&mut a_call).await.unwrap();
    assert_eq!(result["id"], 1);
    assert!(text_of(&result).contains("file:///a"), "{result}");
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_client_cancels_only_its_own_request() {
    let sluice = proxy::start_stdio(target(asking_server(), shared()), vec![]).await;
    let (a, _) = Raw::open(&sluice.url(), "1").await;
    let (b, _) = Raw::open(&sluice.url(), "1").await;
    let wait = |id: u64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "wait"}})
            .to_string()
    };
    let cancel = |id: u64| {
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id}})
            .to_string()
    };
    let a_call = a.stream(&wait(4)).await;
    let mut b_call = b.stream(&wait(5)).await;
    // B names A's id: no request of B's waits under it, so the server never sees it.
    assert_eq!(b.post(&cancel(4)).await.status(), 202);
    wait_metric(
        &sluice,
        r#"sluice_stdio_client_messages_dropped_total{reason="unknown_request"} 1"#,
    )
    .await;
    // B's own cancellation names B's request upstream (the server answers what it names).
    assert_eq!(b.post(&cancel(5)).await.status(), 202);
    let answer = next(&mut b_call).await.unwrap();
    assert_eq!(answer["id"], 5, "{answer}");
    assert_eq!(text_of(&answer), "cancelled");
    assert_eq!(a.post(&cancel(4)).await.status(), 202);
    let answers = rest(a_call).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["id"], 4);
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_server_takes_a_bounded_number_of_sessions() {
    use sluice::upstream::stdio::SHARED_MAX_SESSIONS;
    let settings = StdioSettings {
        shared: true,
        ..StdioSettings::default()
    };
    let sluice = proxy::start_stdio(target(peers::python_stdio_server(), settings), vec![]).await;
    for n in 0..SHARED_MAX_SESSIONS {
        let (session, status, _) = initialize(&sluice.url()).await;
        assert_eq!(status, 200, "session {n}");
        assert!(session.is_some());
    }
    let (session, status, messages) = initialize(&sluice.url()).await;
    assert_eq!(status, 503, "{messages:?}");
    assert!(session.is_none());
    let message = messages[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("1024 sessions"), "{message}");
    wait_metric(
        &sluice,
        r#"sluice_stdio_sessions_refused_total{reason="max_sessions"} 1"#,
    )
    .await;
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_first_post_leaves_no_process_behind() {
    // An initialize batched with a second request of the same id is refused (400): it
    // must be refused before a session, and a process nobody has the id of, is made.
    let mark = marker();
    let sluice = proxy::start_stdio(
        target(
            marked(peers::python_stdio_server(), &mark),
            StdioSettings::default(),
        ),
        vec![],
    )
    .await;
    let batch = format!(r#"[{INITIALIZE},{{"jsonrpc":"2.0","id":1,"method":"ping"}}]"#);
    let response = client::post(&format!("{}/mcp", sluice.url()), &batch).await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("mcp-session-id").is_none());
    assert!(client::text(response).await.contains("already waiting"));
    assert!(marked_processes(&mark).is_empty(), "no process was started");
    sluice.stop().await;
}
