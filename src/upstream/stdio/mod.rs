//! A stdio MCP server as an upstream: sluice starts the server and speaks Streamable
//! HTTP for it, so the proxy (the chain, tapes, metrics, hot swap) treats it like any
//! HTTP upstream.
//!
//! ```text
//! POST (initialize, no session)  → spawn a process, issue Mcp-Session-Id
//! POST (requests)                → lines to stdin; 200 text/event-stream with the
//!                                  answers and their progress, ended after the last
//! POST (notifications, answers)  → lines to stdin; 202
//! GET                            → the session's server requests and notifications
//! DELETE / idle / exit / garbage → the process ends; waiting requests get errors
//! ```
//!
//! One process per MCP session: the server's state is the client's own, as when a
//! desktop client starts it. A cap on live processes bounds what clients can make
//! sluice start. Or, for a stateless server, one process shared by every session, with
//! ids remapped so clients cannot collide ([`shared`]).

mod message;
mod process;
mod routes;
mod shared;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

pub use process::{SpawnError, StdioCommand};

use self::message::{Kind, NotAMessage};
use self::process::{Line, Process};
use self::routes::{RouteError, Routed, Routes};
use super::{UpstreamBody, UpstreamError};
use crate::http::{ChannelBody, full};
use crate::mcp::jsonrpc;
use crate::metrics::StdioMetrics;

/// Sessions one shared stdio server serves at once: each holds a routing table and
/// its streams' queues, so clients cannot open them without bound (the connection cap
/// does not bound them: a session outlives its connections until the idle timeout).
pub const SHARED_MAX_SESSIONS: usize = 1024;

/// The MCP session header.
const SESSION: &str = "mcp-session-id";

/// What a stdio upstream may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdioSettings {
    /// Server processes alive at once (one per session); the next session is refused
    /// with 503.
    pub max_processes: usize,
    /// A session with no request waiting and no GET stream open for this long is ended
    /// (its process stopped). `None`: sessions end only by DELETE or exit.
    pub idle_timeout: Option<Duration>,
    /// Longest line the server may write (a message); a longer one is garbage.
    pub max_line_bytes: usize,
    /// What a line that is not a JSON-RPC message does.
    pub garbage: Garbage,
    /// How long a stopping server gets after its stdin closes, and again after SIGTERM.
    pub stop_grace: Duration,
    /// One process for every session (a stateless server), ids remapped between
    /// them; the process cap does not apply.
    pub shared: bool,
}

impl Default for StdioSettings {
    fn default() -> Self {
        Self {
            max_processes: 16,
            idle_timeout: Some(Duration::from_secs(600)),
            max_line_bytes: 4 << 20,
            garbage: Garbage::End,
            stop_grace: Duration::from_secs(2),
            shared: false,
        }
    }
}

/// What a line on the server's stdout that is not a JSON-RPC message does. The MCP
/// stdio transport forbids them; a server that prints a banner or debug output there
/// breaks every client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Garbage {
    /// End the session: waiting requests get JSON-RPC errors naming the line. Nothing
    /// unexamined reaches a client, and nobody waits for an answer that was garbled.
    #[default]
    End,
    /// Log and count the line, and go on (for servers known to print to stdout).
    Skip,
}

impl std::str::FromStr for Garbage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "end" => Ok(Garbage::End),
            "skip" => Ok(Garbage::Skip),
            other => Err(format!("{other:?} is not end or skip")),
        }
    }
}

/// A stdio server behind the proxy, one process per session.
#[derive(Clone, Debug)]
pub struct StdioUpstream {
    bridge: Arc<Bridge>,
}

struct Bridge {
    command: StdioCommand,
    settings: StdioSettings,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    metrics: StdioMetrics,
    /// Per-session processes not yet exited (a stopping one still counts): what the
    /// cap is checked against, not the sessions, which leave the map before their
    /// process has ended.
    live: std::sync::atomic::AtomicUsize,
    /// Shared mode: the process every session uses, once started.
    shared: Mutex<Option<Arc<shared::Child>>>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

/// Why a new session has no process.
enum NotStarted {
    /// The process cap is reached.
    Full,
    /// The command could not be started.
    Spawn(SpawnError),
}

struct Session {
    id: String,
    routes: Routes,
    /// The session's own process, or the shared one.
    server: Server,
    last_active: Mutex<Instant>,
}

enum Server {
    Own(Running),
    Shared(Arc<shared::Child>),
}

/// A started process, as the bridge keeps it.
struct Running {
    /// Taken when sluice ends it (DELETE, idle, shutdown, garbage).
    process: Mutex<Option<Process>>,
    /// Becomes `Some(how)` when the process has exited.
    exited: tokio::sync::watch::Receiver<Option<String>>,
    /// Why sluice ended it, for the exit log line and metric.
    ending: Mutex<Option<&'static str>>,
}

/// Whose lines a stdout reader routes.
enum Owner {
    Session(Arc<Session>),
    Shared(Arc<shared::Child>),
}

impl StdioUpstream {
    /// An upstream that starts `command` for each new session. Counts into `metrics`.
    /// Starts the idle sweeper (on the current runtime).
    pub fn new(command: StdioCommand, settings: StdioSettings, metrics: StdioMetrics) -> Self {
        let bridge = Arc::new(Bridge {
            command,
            settings,
            sessions: Mutex::new(HashMap::new()),
            metrics,
            live: std::sync::atomic::AtomicUsize::new(0),
            shared: Mutex::new(None),
        });
        if let Some(idle) = bridge.settings.idle_timeout {
            tokio::spawn(sweep_idle(Arc::downgrade(&bridge), idle));
        }
        Self { bridge }
    }

    /// The command, for logs.
    pub fn command(&self) -> &StdioCommand {
        &self.bridge.command
    }

    /// Sessions (processes) alive now.
    pub fn sessions(&self) -> usize {
        self.bridge.sessions.lock().expect("sessions lock").len()
    }

    /// Ends every session's process (shutdown): stdin closed, then SIGTERM, then
    /// SIGKILL, each group whole.
    pub async fn shutdown(&self) {
        let sessions: Vec<_> = self
            .bridge
            .sessions
            .lock()
            .expect("sessions lock")
            .drain()
            .map(|(_, s)| s)
            .collect();
        let stops = sessions
            .iter()
            .map(|session| session.stop("shutdown", self.bridge.settings.stop_grace));
        futures_util::future::join_all(stops).await;
        let child = self.bridge.shared.lock().expect("shared lock").take();
        if let Some(child) = child {
            child
                .running
                .stop("shutdown", self.bridge.settings.stop_grace)
                .await;
        }
    }

    /// Answers one request as a Streamable HTTP server would.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let (parts, body) = request.into_parts();
        let session_id = parts
            .headers
            .get(SESSION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let bridge = &self.bridge;
        Ok(match parts.method {
            Method::POST => bridge.post(session_id, body).await?,
            Method::GET => bridge.get(session_id),
            Method::DELETE => bridge.delete(session_id).await,
            _ => plain(StatusCode::METHOD_NOT_ALLOWED, "use POST, GET or DELETE"),
        })
    }
}

impl Bridge {
    fn session(&self, id: Option<&str>) -> Result<Arc<Session>, Box<Response<UpstreamBody>>> {
        let Some(id) = id else {
            return Err(Box::new(error_response(
                StatusCode::BAD_REQUEST,
                "no Mcp-Session-Id: send initialize first",
            )));
        };
        let found = self
            .sessions
            .lock()
            .expect("sessions lock")
            .get(id)
            .cloned();
        match found {
            Some(session) if session.routes.ended().is_none() => {
                *session.last_active.lock().expect("activity lock") = Instant::now();
                Ok(session)
            }
            _ => Err(Box::new(error_response(
                StatusCode::NOT_FOUND,
                "session not found: it ended or never existed; initialize a new one",
            ))),
        }
    }

    async fn post(
        self: &Arc<Self>,
        session_id: Option<String>,
        body: Bytes,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let Ok(text) = std::str::from_utf8(&body) else {
            return Ok(error_response(StatusCode::BAD_REQUEST, "body is not UTF-8"));
        };
        let items =
            crate::mcp::messages::batch_items(text).unwrap_or_else(|| vec![text.to_string()]);
        let mut lines = Vec::with_capacity(items.len());
        let mut requests = Vec::new();
        let mut initialize = false;
        for item in items {
            // A message is one line: outside strings, CR and LF are only whitespace
            // in JSON, and inside them they must be escaped.
            let item = if item.contains(['\r', '\n']) {
                item.replace(['\r', '\n'], " ")
            } else {
                item
            };
            let message = match message::read(&item) {
                Ok(message) => message,
                Err(e) => return Ok(error_response(StatusCode::BAD_REQUEST, &e.to_string())),
            };
            if let Kind::Request {
                id,
                method,
                progress_token,
            } = &message.kind
            {
                initialize |= method == "initialize";
                let span = message.id_span.clone().expect("a request has an id");
                requests.push(routes::Request {
                    key: id.clone(),
                    raw_id: item[span].to_string(),
                    progress_token: progress_token.clone(),
                });
            }
            lines.push((item, message));
        }
        // Before a session is made for it: a refused POST must not leave a process
        // nobody has the id of.
        for (i, request) in requests.iter().enumerate() {
            if requests[..i].iter().any(|r| r.key == request.key) {
                let e = RouteError::DuplicateId(request.raw_id.clone());
                return Ok(error_response(StatusCode::BAD_REQUEST, &e.to_string()));
            }
        }
        let session = match (session_id.as_deref(), initialize) {
            (None, true) => {
                let started = if self.settings.shared {
                    self.join_shared()
                } else {
                    self.start_session()
                };
                match started {
                    Ok(session) => session,
                    Err(NotStarted::Full) => return Ok(self.full()),
                    Err(NotStarted::Spawn(e)) => return Err(UpstreamError::Spawn(e)),
                }
            }
            (id, _) => match self.session(id) {
                Ok(session) => session,
                Err(response) => return Ok(*response),
            },
        };
        let answers = if requests.is_empty() {
            None
        } else {
            match session.routes.open_post(requests) {
                Ok(rx) => Some(rx),
                Err(e @ RouteError::DuplicateId(_)) => {
                    return Ok(error_response(StatusCode::BAD_REQUEST, &e.to_string()));
                }
                Err(e @ RouteError::TooMany) => {
                    return Ok(error_response(
                        StatusCode::TOO_MANY_REQUESTS,
                        &e.to_string(),
                    ));
                }
                Err(e) => return Ok(error_response(StatusCode::NOT_FOUND, &e.to_string())),
            }
        };
        for (item, message) in lines {
            let line = match &session.server {
                Server::Own(_) => Bytes::from(item),
                // Remapped, answered by sluice (a later initialize) or held back.
                Server::Shared(child) => match child.outbound(&session, &item, &message).await {
                    Some(line) => line,
                    None => continue,
                },
            };
            if !session.write(line).await {
                // The process is ending: its end answers the requests just registered.
                break;
            }
        }
        let mut response = match answers {
            None => plain(StatusCode::ACCEPTED, ""),
            Some(rx) => sse(rx),
        };
        response.headers_mut().insert(
            SESSION,
            HeaderValue::from_str(&session.id).expect("a uuid is a header value"),
        );
        Ok(response)
    }

    /// 503 for a new session past the cap, naming it.
    fn full(&self) -> Response<UpstreamBody> {
        let message = if self.settings.shared {
            format!(
                "sluice: the shared stdio server has {SHARED_MAX_SESSIONS} sessions, the most it serves; end a session (DELETE)"
            )
        } else {
            format!(
                "sluice: {} stdio server processes are running, the most --upstream-max-processes allows; end a session (DELETE) or raise the cap",
                self.settings.max_processes
            )
        };
        let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, &message);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        response
    }

    fn get(&self, session_id: Option<String>) -> Response<UpstreamBody> {
        let session = match self.session(session_id.as_deref()) {
            Ok(session) => session,
            Err(response) => return *response,
        };
        match session.routes.open_get() {
            Ok(rx) => sse(rx),
            Err(RouteError::GetOpen) => plain(
                StatusCode::CONFLICT,
                "this session already has a GET stream open",
            ),
            Err(e) => error_response(StatusCode::NOT_FOUND, &e.to_string()),
        }
    }

    async fn delete(&self, session_id: Option<String>) -> Response<UpstreamBody> {
        let session = match self.session(session_id.as_deref()) {
            Ok(session) => session,
            Err(response) => return *response,
        };
        self.sessions
            .lock()
            .expect("sessions lock")
            .remove(&session.id);
        session.stop("deleted", self.settings.stop_grace).await;
        plain(StatusCode::OK, "")
    }

    /// Starts a process for a new session, within the cap.
    fn start_session(self: &Arc<Self>) -> Result<Arc<Session>, NotStarted> {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        if self.live.load(std::sync::atomic::Ordering::SeqCst) >= self.settings.max_processes {
            self.metrics.refused("max_processes");
            tracing::warn!(
                command = %self.command,
                max = self.settings.max_processes,
                "new session refused: the stdio server's process cap is reached"
            );
            return Err(NotStarted::Full);
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (process, outputs) = Process::spawn(&self.command, &id, self.settings.max_line_bytes)
            .map_err(|e| {
            self.metrics.refused("spawn_failed");
            NotStarted::Spawn(e)
        })?;
        self.metrics.started();
        self.live.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(session = %id, pid = process.pid(), command = %self.command, "stdio server started");
        let session = Arc::new(Session {
            id: id.clone(),
            routes: Routes::default(),
            server: Server::Own(Running::new(process)),
            last_active: Mutex::new(Instant::now()),
        });
        sessions.insert(id, session.clone());
        tokio::spawn(read_stdout(
            Arc::downgrade(self),
            Owner::Session(session.clone()),
            outputs,
        ));
        Ok(session)
    }

    /// Shared mode: a new session of the shared process, which is started first if it
    /// is not running (never started, or exited). No cap: there is one process.
    fn join_shared(self: &Arc<Self>) -> Result<Arc<Session>, NotStarted> {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        if sessions.len() >= SHARED_MAX_SESSIONS {
            self.metrics.refused("max_sessions");
            tracing::warn!(
                command = %self.command,
                max = SHARED_MAX_SESSIONS,
                "new session refused: the shared stdio server has as many sessions as it may"
            );
            return Err(NotStarted::Full);
        }
        let mut current = self.shared.lock().expect("shared lock");
        let id = uuid::Uuid::new_v4().simple().to_string();
        let new_session = |child: Arc<shared::Child>| {
            Arc::new(Session {
                id: id.clone(),
                routes: Routes::never_waiting(),
                server: Server::Shared(child),
                last_active: Mutex::new(Instant::now()),
            })
        };
        let joined = current.as_ref().and_then(|c| c.join(new_session));
        let session = match joined {
            Some(session) => session,
            None => {
                let (process, outputs) =
                    Process::spawn(&self.command, "shared", self.settings.max_line_bytes).map_err(
                        |e| {
                            self.metrics.refused("spawn_failed");
                            NotStarted::Spawn(e)
                        },
                    )?;
                self.metrics.started();
                tracing::info!(pid = process.pid(), command = %self.command, "shared stdio server started");
                let child = shared::Child::new(Running::new(process), self.metrics.clone());
                *current = Some(child.clone());
                // Joined before its reader runs: a process that exits at once is then
                // closed with this session in it, not before (a race the reader would win).
                let session = child.join(new_session).expect("a new process is open");
                tokio::spawn(read_stdout(
                    Arc::downgrade(self),
                    Owner::Shared(child.clone()),
                    outputs,
                ));
                session
            }
        };
        tracing::info!(session = %session.id, "stdio session joined the shared server");
        sessions.insert(id, session.clone());
        Ok(session)
    }
}

impl Session {
    async fn write(&self, line: Bytes) -> bool {
        match &self.server {
            Server::Own(running) => running.write(line).await,
            Server::Shared(child) => child.running.write(line).await,
        }
    }

    /// Ends the session for `reason` (if sluice has not already): its own process, or
    /// its part of the shared one.
    async fn stop(&self, reason: &'static str, grace: Duration) {
        match &self.server {
            Server::Own(running) => running.stop(reason, grace).await,
            Server::Shared(child) => child.leave(self, reason),
        }
    }
}

impl Running {
    fn new(process: Process) -> Self {
        Self {
            exited: process.exited(),
            process: Mutex::new(Some(process)),
            ending: Mutex::new(None),
        }
    }

    /// Sends `line` to stdin (waiting while the server is not reading); false once the
    /// process is ending.
    async fn write(&self, line: Bytes) -> bool {
        match self.stdin() {
            Some(stdin) => stdin.send(line).await.is_ok(),
            None => false,
        }
    }

    /// Sends `line` to stdin if there is room now (a courtesy message that must not
    /// hold anyone up, such as a cancellation for a client that left).
    fn try_write(&self, line: Bytes) {
        if let Some(stdin) = self.stdin() {
            let _ = stdin.try_send(line);
        }
    }

    fn stdin(&self) -> Option<tokio::sync::mpsc::Sender<Bytes>> {
        let process = self.process.lock().expect("process lock");
        process.as_ref().and_then(Process::stdin)
    }

    /// Ends the process for `reason` (if sluice has not already).
    async fn stop(&self, reason: &'static str, grace: Duration) {
        let process = self.process.lock().expect("process lock").take();
        if let Some(process) = process {
            self.ending
                .lock()
                .expect("ending lock")
                .get_or_insert(reason);
            process.stop(grace).await;
        }
    }

    /// Waits for the process to exit, and says how it did.
    async fn exit(&self) -> String {
        let mut exited = self.exited.clone();
        match exited.wait_for(Option::is_some).await {
            Ok(how) => how.clone().unwrap_or_default(),
            Err(_) => "unknown".to_string(),
        }
    }
}

impl Owner {
    fn running(&self) -> &Running {
        match self {
            Owner::Session(session) => match &session.server {
                Server::Own(running) => running,
                Server::Shared(child) => &child.running,
            },
            Owner::Shared(child) => &child.running,
        }
    }

    /// Names the process in log lines.
    fn label(&self) -> &str {
        match self {
            Owner::Session(session) => &session.id,
            Owner::Shared(_) => "shared",
        }
    }

    /// Ends every session the process served, with `why` for waiting requests; returns
    /// their ids.
    fn end(&self, why: &str, reason: &'static str) -> Vec<String> {
        match self {
            Owner::Session(session) => {
                session.routes.end(why);
                vec![session.id.clone()]
            }
            Owner::Shared(child) => child.close(why, reason),
        }
    }
}

impl Session {
    /// Sends `event` (a server message of `kind`) where the session's routes say, and
    /// counts and logs it when it reached no client.
    async fn deliver(&self, kind: &Kind, event: Bytes, metrics: &StdioMetrics) {
        let session = &self.id;
        match self.routes.route(kind, event).await {
            Routed::Sent | Routed::Backlog => {}
            Routed::Unmatched => {
                metrics.line_dropped("unmatched");
                tracing::debug!(session = %session, "stdio server answered a request nobody waits for");
            }
            Routed::ClientStalled => {
                metrics.line_dropped("client_stalled");
                tracing::warn!(session = %session, "a shared stdio server's session ended: its client stopped reading, and the others must not wait for it");
            }
            Routed::BacklogFull => {
                metrics.line_dropped("backlog_full");
                tracing::warn!(session = %session, "no GET stream is reading this session's server messages; the oldest queued one was dropped");
            }
        }
    }
}

/// Routes each line the server writes; when stdout closes, waits for the exit and
/// ends the session (every session, for the shared process).
async fn read_stdout(bridge: Weak<Bridge>, owner: Owner, mut outputs: process::Outputs) {
    let Some(metrics) = bridge.upgrade().map(|b| b.metrics.clone()) else {
        return;
    };
    let garbage_rule = bridge
        .upgrade()
        .map_or(Garbage::End, |b| b.settings.garbage);
    let mut garbled = None;
    while let Some(line) = outputs.stdout.recv().await {
        let text = match line {
            Line::Text(text) => text,
            Line::TooLong(len) => {
                metrics.line_dropped("too_long");
                let why = format!("the stdio server wrote a line of {len} bytes, over the limit");
                // A shared process serves everyone: one client's oversized answer (a
                // big file read, say) must not end every session. The line was skipped
                // whole, so the framing holds; that one request goes unanswered.
                let rule = match owner {
                    Owner::Shared(_) => Garbage::Skip,
                    Owner::Session(_) => garbage_rule,
                };
                if let Some(why) = garbage(owner.label(), rule, why) {
                    garbled = Some(why);
                    break;
                }
                continue;
            }
        };
        let read = std::str::from_utf8(&text)
            .map_err(|_| NotAMessage::NotJson)
            .and_then(message::read);
        let message = match read {
            Ok(message) => message,
            Err(e) => {
                metrics.line_dropped("not_json");
                let shown: String = String::from_utf8_lossy(&text).chars().take(80).collect();
                let why = format!("the stdio server wrote a line that is {e}: {shown:?}");
                if let Some(why) = garbage(owner.label(), garbage_rule, why) {
                    garbled = Some(why);
                    break;
                }
                continue;
            }
        };
        // Parsed as JSON: a CR left inside is whitespace, and would end an SSE line.
        let text: Vec<u8> = text
            .iter()
            .map(|&b| if b == b'\r' { b' ' } else { b })
            .collect();
        match &owner {
            Owner::Session(session) => {
                session
                    .deliver(&message.kind, routes::event(&text), &metrics)
                    .await;
            }
            Owner::Shared(child) => {
                // Only CRs were replaced: still the UTF-8 checked above.
                let text = String::from_utf8(text).expect("checked UTF-8");
                child.inbound(&message, &text).await;
            }
        }
    }
    let grace = bridge
        .upgrade()
        .map_or(Duration::from_secs(2), |b| b.settings.stop_grace);
    let mut ended = Vec::new();
    if let Some(why) = &garbled {
        ended = owner.end(why, "garbage");
        owner.running().stop("garbage", grace).await;
    }
    // Stdout closed: the process is exiting (or was stopped). Wait for its status.
    let running = owner.running();
    let exit = running.exit().await;
    let reason = running
        .ending
        .lock()
        .expect("ending lock")
        .unwrap_or("exited");
    let why = format!("the stdio server exited ({exit})");
    ended.extend(owner.end(&why, reason));
    metrics.ended(reason);
    let label = owner.label();
    if reason == "exited" {
        tracing::warn!(session = %label, %exit, "stdio server exited; requests waiting on it get errors");
    } else {
        tracing::info!(session = %label, %exit, reason, "stdio server ended");
    }
    if let Some(bridge) = bridge.upgrade() {
        if let Owner::Session(_) = &owner {
            bridge
                .live
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
        let mut sessions = bridge.sessions.lock().expect("sessions lock");
        for id in &ended {
            sessions.remove(id);
        }
        drop(sessions);
        if let Owner::Shared(child) = &owner {
            let mut current = bridge.shared.lock().expect("shared lock");
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, child)) {
                *current = None;
            }
        }
    }
}

/// Applies the garbage rule to a bad line: `Some(why)` ends the session.
fn garbage(label: &str, rule: Garbage, why: String) -> Option<String> {
    match rule {
        Garbage::End => {
            tracing::warn!(session = %label, "{why}; ending the session");
            Some(why)
        }
        Garbage::Skip => {
            tracing::warn!(session = %label, "{why}; skipped");
            None
        }
    }
}

/// Ends sessions nobody has used for `idle`.
async fn sweep_idle(bridge: Weak<Bridge>, idle: Duration) {
    let every = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        tokio::time::sleep(every).await;
        let Some(bridge) = bridge.upgrade() else {
            return;
        };
        let idle_sessions: Vec<_> = {
            let mut sessions = bridge.sessions.lock().expect("sessions lock");
            let ids: Vec<String> = sessions
                .values()
                .filter(|s| {
                    s.routes.is_idle()
                        && s.last_active.lock().expect("activity lock").elapsed() >= idle
                })
                .map(|s| s.id.clone())
                .collect();
            ids.iter().filter_map(|id| sessions.remove(id)).collect()
        };
        for session in idle_sessions {
            tracing::info!(session = %session.id, idle_secs = idle.as_secs(), "stdio session idle; ending its server");
            let grace = bridge.settings.stop_grace;
            tokio::spawn(async move { session.stop("idle", grace).await });
        }
    }
}

/// An SSE response whose events come from `rx`.
fn sse(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Response<UpstreamBody> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(ChannelBody::new(rx).boxed_unsync())
        .expect("static parts form a valid response")
}

/// A JSON-RPC error with a null id, as the MCP SDKs' servers answer a request they
/// cannot route.
fn error_response(status: StatusCode, message: &str) -> Response<UpstreamBody> {
    let error = jsonrpc::error(
        &jsonrpc::RequestId::null(),
        jsonrpc::INVALID_REQUEST,
        message,
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(error.get().to_string()))
        .expect("static parts form a valid response")
}

fn plain(status: StatusCode, text: &'static str) -> Response<UpstreamBody> {
    Response::builder()
        .status(status)
        .body(full(text))
        .expect("static parts form a valid response")
}
