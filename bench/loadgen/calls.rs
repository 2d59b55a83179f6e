//! `sluice-loadgen stdio-bench`: `tools/call` round trips to a stdio MCP server, either
//! straight through its stdin and stdout (the floor) or through a Streamable HTTP
//! bridge in front of it (sluice, supergateway). A fixed number of lanes each keep one
//! call in flight; each call is timed from its write to the arrival of its answer and
//! checked (its own id, its text echoed whole).

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin};
use tokio::sync::oneshot;

use crate::clients::{AbortOnDrop, Target};
use crate::stats::Latencies;
use crate::wire::{self, Splitter};

/// The protocol version the driver asks for in `initialize` (supergateway's SDK and
/// sluice both speak it).
const PROTOCOL: &str = "2025-06-18";

/// Where the calls go.
pub enum Via {
    /// Spawn this command and talk to it over its stdin and stdout.
    Pipe(Vec<String>),
    /// A Streamable HTTP endpoint in front of the server.
    Http(Target),
}

/// How many calls, how many at once.
pub struct Plan {
    /// Lanes, each with one call in flight.
    pub concurrency: usize,
    /// Timed calls in all (0: as many as fit in `duration`).
    pub requests: u64,
    pub duration: Duration,
    /// Untimed calls first (a JIT warms up, a process starts).
    pub warmup: u64,
    /// Bytes of text each call echoes.
    pub size: usize,
}

/// What the timed calls did.
#[derive(Default)]
pub struct Outcome {
    pub calls: u64,
    pub latencies: Latencies,
    pub errors: Vec<String>,
    pub elapsed: Duration,
    /// Answers that came as an SSE stream (the rest as one JSON body).
    pub sse_answers: u64,
}

/// Opens the session, warms up, runs the timed calls and ends the session.
pub async fn run(via: &Via, plan: &Plan) -> Outcome {
    let mut lanes = match open(via, plan.concurrency.max(1)).await {
        Ok(lanes) => lanes,
        Err(e) => {
            return Outcome {
                errors: vec![format!("session: {e}")],
                ..Outcome::default()
            };
        }
    };
    let next_id = Cell::new(1);
    let mut outcome = Outcome::default();
    if plan.warmup > 0 {
        let warm = phase(&mut lanes, plan.warmup, None, plan.size, &next_id).await;
        if !warm.errors.is_empty() {
            outcome.errors = warm.errors;
            return outcome;
        }
    }
    let (count, until) = match plan.requests {
        0 => (u64::MAX, Some(Instant::now() + plan.duration)),
        n => (n, None),
    };
    let started = Instant::now();
    outcome = phase(&mut lanes, count, until, plan.size, &next_id).await;
    outcome.elapsed = started.elapsed();
    if let Some(Lane::Http(http)) = lanes.first_mut() {
        http.delete().await;
    }
    outcome
}

/// The calls of one phase, on every lane at once.
async fn phase(
    lanes: &mut [Lane],
    count: u64,
    until: Option<Instant>,
    size: usize,
    next_id: &Cell<u64>,
) -> Outcome {
    let text = "x".repeat(size);
    let issued = Cell::new(0u64);
    let outcomes = futures_util::future::join_all(lanes.iter_mut().map(|lane| {
        let (text, issued) = (&text, &issued);
        async move {
            let mut out = Outcome::default();
            let mut latencies = Vec::new();
            loop {
                if issued.get() >= count || until.is_some_and(|u| Instant::now() >= u) {
                    break;
                }
                issued.set(issued.get() + 1);
                let id = next_id.get();
                next_id.set(id + 1);
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{text}"}}}}}}"#
                );
                let checked = lane
                    .call(id, body)
                    .await
                    .and_then(|answer| check(&answer.message, id, size).map(|()| answer));
                match checked {
                    Ok(answer) => {
                        out.calls += 1;
                        out.sse_answers += u64::from(answer.sse);
                        let ns = answer.took.as_nanos();
                        latencies.push(u32::try_from(ns).unwrap_or(u32::MAX));
                    }
                    Err(e) => {
                        // A lane that failed stops: an error repeated 10 000 times hides
                        // the first one.
                        out.errors.push(e);
                        break;
                    }
                }
            }
            (out, latencies)
        }
    }))
    .await;
    let mut total = Outcome::default();
    for (out, latencies) in outcomes {
        total.calls += out.calls;
        total.sse_answers += out.sse_answers;
        total.errors.extend(out.errors);
        total.latencies.extend(latencies);
    }
    total
}

/// An answer is the call's own, with its text echoed whole.
fn check(message: &Value, id: u64, size: usize) -> Result<(), String> {
    let text = message
        .get("result")
        .and_then(|r| r.get("content"))
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("text"))
        .and_then(Value::as_str);
    if message.get("id").and_then(Value::as_u64) == Some(id) && text.map(str::len) == Some(size) {
        Ok(())
    } else {
        let mut shown = message.to_string();
        shown.truncate(300);
        Err(format!("call {id}: unexpected answer {shown}"))
    }
}

/// One answer and how long it took.
struct Answer {
    message: Value,
    took: Duration,
    sse: bool,
}

/// Where one lane's calls go: the shared pipe, or its own HTTP/1.1 connection.
enum Lane {
    Pipe(Rc<Pipe>),
    Http(Http),
}

impl Lane {
    async fn call(&mut self, id: u64, body: String) -> Result<Answer, String> {
        match self {
            Lane::Pipe(pipe) => pipe.call(id, body).await,
            Lane::Http(http) => http.call(id, body).await,
        }
    }
}

/// Initializes one session and opens `lanes` lanes on it.
async fn open(via: &Via, lanes: usize) -> Result<Vec<Lane>, String> {
    let initialize = format!(
        r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{PROTOCOL}","capabilities":{{}},"clientInfo":{{"name":"sluice-loadgen","version":"{}"}}}}}}"#,
        env!("CARGO_PKG_VERSION")
    );
    const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    match via {
        Via::Pipe(command) => {
            let pipe = Rc::new(Pipe::spawn(command)?);
            let answer = pipe.call(0, initialize).await?;
            if answer.message.get("result").is_none() {
                return Err(format!("initialize: {}", answer.message));
            }
            pipe.write(INITIALIZED.to_string()).await?;
            Ok((0..lanes).map(|_| Lane::Pipe(pipe.clone())).collect())
        }
        Via::Http(target) => {
            let mut first = Http::connect(target, None, None).await?;
            let posted = first.post(Method::POST, initialize, Some(0)).await?;
            let protocol = posted
                .answer
                .as_ref()
                .and_then(|a| a.message.get("result")?.get("protocolVersion")?.as_str())
                .ok_or_else(|| format!("initialize: no result ({})", posted.status))?
                .to_string();
            first.session = posted.session;
            first.protocol = Some(protocol);
            let posted = first
                .post(Method::POST, INITIALIZED.to_string(), None)
                .await?;
            if !posted.status.is_success() {
                return Err(format!("notifications/initialized: {}", posted.status));
            }
            let mut all = vec![Lane::Http(first)];
            for _ in 1..lanes {
                let Some(Lane::Http(first)) = all.first() else {
                    unreachable!("the first lane is HTTP")
                };
                let (session, protocol) = (first.session.clone(), first.protocol.clone());
                all.push(Lane::Http(Http::connect(target, session, protocol).await?));
            }
            Ok(all)
        }
    }
}

type Waiter = oneshot::Sender<Result<(Value, Instant), String>>;

/// The calls waiting on the pipe, by id; why the pipe closed, once it has.
#[derive(Default)]
struct Waiting {
    calls: HashMap<u64, Waiter>,
    closed: Option<String>,
}

/// A stdio server spawned by the driver: its stdin shared by the lanes, its stdout read
/// by one task that hands each answer to the call waiting for it.
struct Pipe {
    stdin: tokio::sync::Mutex<ChildStdin>,
    waiting: Arc<Mutex<Waiting>>,
    _reader: AbortOnDrop,
    _child: Child,
}

impl Pipe {
    fn spawn(command: &[String]) -> Result<Self, String> {
        let (program, args) = command.split_first().ok_or("no command")?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{program}: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        let shared = waiting.clone();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::with_capacity(64 << 10, stdout).lines();
            let why = loop {
                match lines.next_line().await {
                    Ok(Some(line)) => {
                        let at = Instant::now();
                        let Ok(message) = serde_json::from_str::<Value>(&line) else {
                            continue;
                        };
                        let Some(id) = message.get("id").and_then(Value::as_u64) else {
                            continue;
                        };
                        let waiter = shared.lock().expect("not poisoned").calls.remove(&id);
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(Ok((message, at)));
                        }
                    }
                    Ok(None) => break "the server closed its stdout".to_string(),
                    Err(e) => break format!("reading the server's stdout: {e}"),
                }
            };
            let mut waiting = shared.lock().expect("not poisoned");
            for (_, waiter) in waiting.calls.drain() {
                let _ = waiter.send(Err(why.clone()));
            }
            waiting.closed = Some(why);
        });
        Ok(Self {
            stdin: tokio::sync::Mutex::new(stdin),
            waiting,
            _reader: AbortOnDrop(reader),
            _child: child,
        })
    }

    async fn write(&self, mut line: String) -> Result<(), String> {
        line.push('\n');
        let mut stdin = self.stdin.lock().await;
        stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("writing to the server: {e}"))
    }

    async fn call(&self, id: u64, line: String) -> Result<Answer, String> {
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = self.waiting.lock().expect("not poisoned");
            if let Some(why) = &waiting.closed {
                return Err(why.clone());
            }
            waiting.calls.insert(id, tx);
        }
        let started = Instant::now();
        self.write(line).await?;
        let (message, at) = rx.await.map_err(|_| "the reader ended".to_string())??;
        Ok(Answer {
            message,
            took: at - started,
            sse: false,
        })
    }
}

/// One HTTP/1.1 connection of the session (kept alive, one request at a time).
struct Http {
    target: Target,
    session: Option<String>,
    protocol: Option<String>,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    _connection: AbortOnDrop,
}

/// What a POST got back.
struct Posted {
    status: StatusCode,
    session: Option<String>,
    answer: Option<Answer>,
}

impl Http {
    async fn connect(
        target: &Target,
        session: Option<String>,
        protocol: Option<String>,
    ) -> Result<Self, String> {
        let tcp = TcpStream::connect(target.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let connection = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        Ok(Self {
            target: target.clone(),
            session,
            protocol,
            sender,
            _connection: connection,
        })
    }

    async fn call(&mut self, id: u64, body: String) -> Result<Answer, String> {
        let posted = self.post(Method::POST, body, Some(id)).await?;
        posted
            .answer
            .ok_or_else(|| format!("call {id}: {} without an answer", posted.status))
    }

    /// Ends the session (a stdio bridge stops the server process).
    async fn delete(&mut self) {
        let _ = self.post(Method::DELETE, String::new(), None).await;
    }

    /// Sends one request; with an `id`, reads the body (JSON or SSE) until the answer
    /// with that id, which is when the call's time stops, then to its end.
    async fn post(
        &mut self,
        method: Method,
        body: String,
        id: Option<u64>,
    ) -> Result<Posted, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(&self.target.path)
            .header(HOST, self.target.addr.to_string())
            .header(CONTENT_TYPE, "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        if let Some(protocol) = &self.protocol {
            request = request.header("mcp-protocol-version", protocol);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status();
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let mut body = response.into_body();
        let mut answer = None;
        let mut splitter = Splitter::default();
        let mut whole = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("body: {e}"))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if !sse {
                whole.extend_from_slice(&data);
                continue;
            }
            let at = Instant::now();
            splitter.feed(&data, |block| {
                let Some(message) = wire::data_of(block)
                    .and_then(|data| serde_json::from_slice::<Value>(data).ok())
                else {
                    return;
                };
                let is_answer = message.get("id").and_then(Value::as_u64) == id
                    && (message.get("result").is_some() || message.get("error").is_some());
                if answer.is_none() && id.is_some() && is_answer {
                    answer = Some(Answer {
                        message,
                        took: at - started,
                        sse: true,
                    });
                }
            });
        }
        if !sse && id.is_some() && !whole.is_empty() {
            let took = started.elapsed();
            let message = serde_json::from_slice::<Value>(&whole)
                .map_err(|e| format!("status {status}, not JSON ({e})"))?;
            answer = Some(Answer {
                message,
                took,
                sse: false,
            });
        }
        if !status.is_success() {
            let shown = answer.map_or_else(
                || String::from_utf8_lossy(&whole).into_owned(),
                |a| a.message.to_string(),
            );
            return Err(format!("status {status}: {shown}"));
        }
        Ok(Posted {
            status,
            session,
            answer,
        })
    }
}
