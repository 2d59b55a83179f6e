//! One server process for every session (`--upstream-shared`), for a stateless server.
//!
//! Clients number their requests on their own: two clients both send id 1 (every rmcp
//! client starts at 0). Passed through to one process, the two answers carry the same
//! id and nothing tells whose is whose: one client gets the other's answer (the bug
//! supergateway's users keep reporting). So every id that crosses is remapped, and only
//! the id's bytes change (the rest of the line is the peer's text):
//!
//! - a client request's id becomes a number sluice issues (unique for the process), and
//!   its answer gets the client's id text back before it reaches the session;
//! - a progress token likewise, and back in `notifications/progress`: each client sees
//!   only its own progress;
//! - a client's `notifications/cancelled` names the number of that client's own
//!   request, or is dropped: a client cannot cancel another's request by its id;
//! - a server request (sampling, elicitation, roots/list) goes to the session of the
//!   newest waiting request (or, with none, the newest session) under a number sluice
//!   issues; only that session's answer reaches the server, with the server's id back.
//!   The server's own ids do not collide with each other, but they are guessable: as
//!   they were, any client could answer a request sent to another (an elicitation,
//!   say). The server cancelling one of them reaches that session only.
//!
//! The first session's `initialize` goes to the process and its result is kept; a
//! later session's is answered from it (with the client's own id) and its
//! `notifications/initialized` is not forwarded: the server is initialized once, so it
//! sees the first client's capabilities and protocol version only.
//!
//! A server notification not tied to a request by its progress token goes to every
//! session. DELETE or the idle timeout ends one session: its waiting requests are
//! cancelled upstream and its server requests refused. The process ends with sluice, or
//! when it exits (every session ends, as in per-session mode); the next initialize
//! starts it again.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::sync::Notify;

use super::message::{self, Kind, Message};
use super::{Running, Session, routes};
use crate::mcp::jsonrpc::{self, RequestId};
use crate::metrics::StdioMetrics;

/// The shared process and its id maps.
pub(super) struct Child {
    pub(super) running: Running,
    state: Mutex<State>,
    /// Wakes a later initialize waiting for the first one's answer.
    init_changed: Notify,
    metrics: StdioMetrics,
}

#[derive(Default)]
struct State {
    /// The last number issued (request ids, progress tokens, server request ids).
    last: u64,
    /// Upstream request id → the client request.
    requests: HashMap<u64, Asked>,
    /// Upstream progress token → the client's token.
    tokens: HashMap<u64, Token>,
    /// Id issued to a client for a server request → the server's id.
    server_requests: HashMap<u64, ServerAsked>,
    /// Sessions of this process, oldest first.
    members: Vec<Weak<Session>>,
    /// The process is gone: no session joins, every member has ended.
    closed: bool,
    init: Init,
    initialized_sent: bool,
}

struct Asked {
    session: Weak<Session>,
    /// The client's id text, put back into the answer.
    raw_id: String,
    /// Its key, as the session's routes know it.
    key: String,
    token: Option<u64>,
}

struct Token {
    session: Weak<Session>,
    raw: String,
    key: String,
}

struct ServerAsked {
    session: Weak<Session>,
    /// The server's id text, put back into the client's answer.
    raw_id: String,
    key: String,
}

/// The server's initialization.
#[derive(Default)]
enum Init {
    /// Not asked (or the answer was an error): the next initialize goes to the process.
    #[default]
    Open,
    /// Sent under this upstream id: later initializes wait for its answer.
    Asked(u64),
    /// Answered: later initializes get this line with their own id.
    Done { line: String, id_span: Range<usize> },
}

enum Claim {
    /// Send this initialize to the process under this id.
    Forward(u64),
    /// Answer it with this line, the id at this span.
    Answer(String, Range<usize>),
    /// The process is gone (its end answered the request).
    Gone,
}

impl State {
    fn next(&mut self) -> u64 {
        self.last += 1;
        self.last
    }
}

/// `weak` points at `session`.
fn is(weak: &Weak<Session>, session: &Session) -> bool {
    std::ptr::eq(weak.as_ptr(), session)
}

/// The session, if it is still there and has not ended.
fn live(weak: &Weak<Session>) -> Option<Arc<Session>> {
    weak.upgrade().filter(|s| s.routes.ended().is_none())
}

/// The number of a key sluice issued (`n:<u64>`).
fn number(key: &str) -> Option<u64> {
    key.strip_prefix("n:")?.parse().ok()
}

impl Child {
    pub(super) fn new(running: Running, metrics: StdioMetrics) -> Arc<Self> {
        Arc::new(Self {
            running,
            state: Mutex::new(State::default()),
            init_changed: Notify::new(),
            metrics,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("shared state lock")
    }

    /// Adds the session `make` builds, unless the process is gone (`None`).
    pub(super) fn join(
        self: &Arc<Self>,
        make: impl FnOnce(Arc<Child>) -> Arc<Session>,
    ) -> Option<Arc<Session>> {
        let mut state = self.state();
        if state.closed {
            return None;
        }
        let session = make(self.clone());
        state.members.retain(|m| m.strong_count() > 0);
        state.members.push(Arc::downgrade(&session));
        Some(session)
    }

    /// The line to write for a client message of `session`, remapped; `None` when it
    /// is not written (answered by sluice, held back, or not this client's to send).
    pub(super) async fn outbound(
        self: &Arc<Self>,
        session: &Arc<Session>,
        text: &str,
        message: &Message,
    ) -> Option<Bytes> {
        match &message.kind {
            Kind::Request {
                id,
                method,
                progress_token,
            } => {
                let id_span = message.id_span.clone()?;
                let claimed = if method == "initialize" {
                    match self.claim_initialize().await {
                        Claim::Forward(n) => Some(n),
                        Claim::Answer(line, span) => {
                            let answer_text = message::splice(&line, &mut [(span, &text[id_span])]);
                            let answer = Kind::Response {
                                id: Some(id.clone()),
                            };
                            session
                                .deliver(
                                    &answer,
                                    routes::event(answer_text.as_bytes()),
                                    &self.metrics,
                                )
                                .await;
                            return None;
                        }
                        Claim::Gone => return None,
                    }
                } else {
                    None
                };
                let mut state = self.state();
                if state.closed {
                    return None;
                }
                let n = claimed.unwrap_or_else(|| state.next());
                let token = match (progress_token, &message.token_span) {
                    (Some(key), Some(span)) => {
                        let t = state.next();
                        state.tokens.insert(
                            t,
                            Token {
                                session: Arc::downgrade(session),
                                raw: text[span.clone()].to_string(),
                                key: key.clone(),
                            },
                        );
                        Some((t, span.clone()))
                    }
                    _ => None,
                };
                state.requests.insert(
                    n,
                    Asked {
                        session: Arc::downgrade(session),
                        raw_id: text[id_span.clone()].to_string(),
                        key: id.clone(),
                        token: token.as_ref().map(|(t, _)| *t),
                    },
                );
                drop(state);
                let n = n.to_string();
                let t = token.as_ref().map(|(t, _)| t.to_string());
                let mut edits = vec![(id_span, n.as_str())];
                if let (Some((_, span)), Some(t)) = (token, &t) {
                    edits.push((span, t.as_str()));
                }
                let line = Bytes::from(message::splice(text, &mut edits));
                if claimed.is_some() {
                    // Every later initialize waits for this one's answer: it must reach
                    // the process even if this client's request is abandoned here.
                    let child = self.clone();
                    tokio::spawn(async move { child.running.write(line).await });
                    return None;
                }
                Some(line)
            }
            Kind::Notification { method, .. } if method == "notifications/initialized" => {
                let first = !std::mem::replace(&mut self.state().initialized_sent, true);
                if !first {
                    tracing::debug!(session = %session.id, "shared stdio server: initialized once already; this session's notifications/initialized is not forwarded");
                }
                first.then(|| Bytes::copy_from_slice(text.as_bytes()))
            }
            Kind::Notification { method, .. } if method == "notifications/cancelled" => {
                let named = message::param(text, &["requestId"]);
                let upstream = named.as_ref().and_then(|(key, _)| {
                    let state = self.state();
                    let (n, _) = state
                        .requests
                        .iter()
                        .find(|(_, a)| &a.key == key && is(&a.session, session))?;
                    // The initialize every later session waits for is not one client's
                    // to cancel: unanswered, it would hold them all.
                    (!matches!(state.init, Init::Asked(asked) if asked == *n))
                        .then(|| n.to_string())
                });
                match (upstream, named) {
                    (Some(n), Some((_, span))) => Some(Bytes::from(message::splice(
                        text,
                        &mut [(span, n.as_str())],
                    ))),
                    _ => {
                        self.metrics.client_message_dropped("unknown_request");
                        tracing::debug!(session = %session.id, "a cancellation names no request of this session waiting on the shared stdio server; dropped");
                        None
                    }
                }
            }
            Kind::Notification { .. } => Some(Bytes::copy_from_slice(text.as_bytes())),
            Kind::Response { id } => {
                let asked = id.as_deref().and_then(number).and_then(|n| {
                    let mut state = self.state();
                    match state.server_requests.get(&n) {
                        Some(asked) if is(&asked.session, session) => {
                            state.server_requests.remove(&n)
                        }
                        _ => None,
                    }
                });
                match (asked, message.id_span.clone()) {
                    (Some(asked), Some(span)) => Some(Bytes::from(message::splice(
                        text,
                        &mut [(span, asked.raw_id.as_str())],
                    ))),
                    _ => {
                        self.metrics.client_message_dropped("foreign_answer");
                        tracing::warn!(session = %session.id, "an answer to no server request this session was asked (shared stdio server); dropped");
                        None
                    }
                }
            }
        }
    }

    /// Whether an initialize goes to the process or is answered from the kept result;
    /// waits while the first one is being answered.
    async fn claim_initialize(&self) -> Claim {
        loop {
            let changed = self.init_changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a change in between is not missed.
            changed.as_mut().enable();
            {
                let mut state = self.state();
                if state.closed {
                    return Claim::Gone;
                }
                match &state.init {
                    Init::Open => {
                        let n = state.next();
                        state.init = Init::Asked(n);
                        return Claim::Forward(n);
                    }
                    Init::Done { line, id_span } => {
                        return Claim::Answer(line.clone(), id_span.clone());
                    }
                    Init::Asked(_) => {}
                }
            }
            changed.await;
        }
    }

    /// Routes one message the process wrote (`text`, one line) to its session.
    pub(super) async fn inbound(&self, message: &Message, text: &str) {
        match &message.kind {
            Kind::Response { id } => {
                let asked = {
                    let mut state = self.state();
                    let n = id.as_deref().and_then(number);
                    let asked = n.and_then(|n| state.requests.remove(&n));
                    if let Some(t) = asked.as_ref().and_then(|a| a.token) {
                        state.tokens.remove(&t);
                    }
                    if let (Some(n), Init::Asked(init)) = (n, &state.init)
                        && n == *init
                    {
                        state.init = match &message.id_span {
                            Some(span) if message::has_result(text) => Init::Done {
                                line: text.to_string(),
                                id_span: span.clone(),
                            },
                            _ => Init::Open,
                        };
                        self.init_changed.notify_waiters();
                    }
                    asked
                };
                let target = asked.and_then(|a| Some((a.session.upgrade()?, a.raw_id, a.key)));
                let (Some((session, raw_id, key)), Some(span)) = (target, message.id_span.clone())
                else {
                    self.unmatched("an answer to no waiting request");
                    return;
                };
                let line = message::splice(text, &mut [(span, raw_id.as_str())]);
                session
                    .deliver(
                        &Kind::Response { id: Some(key) },
                        routes::event(line.as_bytes()),
                        &self.metrics,
                    )
                    .await;
            }
            Kind::Notification {
                method,
                progress_token: Some(token),
            } => {
                let found = number(token).and_then(|t| {
                    let state = self.state();
                    let token = state.tokens.get(&t)?;
                    Some((
                        token.session.upgrade()?,
                        token.raw.clone(),
                        token.key.clone(),
                    ))
                });
                let (Some((session, raw, key)), Some(span)) = (found, message.token_span.clone())
                else {
                    self.unmatched("progress for no waiting request");
                    return;
                };
                let line = message::splice(text, &mut [(span, raw.as_str())]);
                let kind = Kind::Notification {
                    method: method.clone(),
                    progress_token: Some(key),
                };
                session
                    .deliver(&kind, routes::event(line.as_bytes()), &self.metrics)
                    .await;
            }
            Kind::Notification { method, .. } if method == "notifications/cancelled" => {
                // The server gives up on its own request: tell the client it was sent to.
                let found = message::param(text, &["requestId"]).and_then(|(key, span)| {
                    let mut state = self.state();
                    let n = *state.server_requests.iter().find(|(_, a)| a.key == key)?.0;
                    let asked = state.server_requests.remove(&n)?;
                    Some((asked.session.upgrade()?, n, span))
                });
                let Some((session, n, span)) = found else {
                    self.unmatched("a cancellation of no request a client was asked");
                    return;
                };
                let line = message::splice(text, &mut [(span, n.to_string().as_str())]);
                session
                    .deliver(&message.kind, routes::event(line.as_bytes()), &self.metrics)
                    .await;
            }
            Kind::Notification { .. } => {
                let members: Vec<Arc<Session>> =
                    self.state().members.iter().filter_map(live).collect();
                if members.is_empty() {
                    self.unmatched("a notification with no session to hear it");
                }
                let event = routes::event(text.as_bytes());
                for session in members {
                    session
                        .deliver(&message.kind, event.clone(), &self.metrics)
                        .await;
                }
            }
            Kind::Request { id, .. } => {
                let Some(span) = message.id_span.clone() else {
                    return;
                };
                let target = {
                    let mut state = self.state();
                    let newest = state
                        .requests
                        .iter()
                        .filter_map(|(n, a)| Some((*n, live(&a.session)?)))
                        .max_by_key(|(n, _)| *n)
                        .map(|(_, s)| s);
                    let session = newest.or_else(|| state.members.iter().rev().find_map(live));
                    session.map(|session| {
                        let n = state.next();
                        state.server_requests.insert(
                            n,
                            ServerAsked {
                                session: Arc::downgrade(&session),
                                raw_id: text[span.clone()].to_string(),
                                key: id.clone(),
                            },
                        );
                        (session, n)
                    })
                };
                let Some((session, n)) = target else {
                    self.unmatched("a server request with no session to ask");
                    self.refuse(&text[span], "no client session is connected to ask");
                    return;
                };
                let line = message::splice(text, &mut [(span, n.to_string().as_str())]);
                // Routes send any request to the session's GET stream (or newest POST).
                session
                    .deliver(&message.kind, routes::event(line.as_bytes()), &self.metrics)
                    .await;
            }
        }
    }

    fn unmatched(&self, what: &str) {
        self.metrics.line_dropped("unmatched");
        tracing::debug!(
            session = "shared",
            "shared stdio server wrote {what}; dropped"
        );
    }

    /// Answers the server's request `raw_id` with an error (if stdin has room).
    fn refuse(&self, raw_id: &str, why: &str) {
        let Ok(raw) = RawValue::from_string(raw_id.to_string()) else {
            return;
        };
        let error = jsonrpc::error(
            &RequestId::new(&raw),
            jsonrpc::UPSTREAM_FAILED,
            &format!("sluice: {why}"),
        );
        self.running
            .try_write(Bytes::copy_from_slice(error.get().as_bytes()));
    }

    /// Ends `session`'s part (DELETE, idle, shutdown): its waiting requests get errors
    /// and are cancelled upstream, the server's requests to it are refused.
    pub(super) fn leave(&self, session: &Session, reason: &'static str) {
        if session.routes.ended().is_some() {
            return;
        }
        let (cancels, refusals) = {
            let mut state = self.state();
            state
                .members
                .retain(|m| m.strong_count() > 0 && !is(m, session));
            let init = match state.init {
                Init::Asked(n) => Some(n),
                _ => None,
            };
            let mine: Vec<u64> = state
                .requests
                .iter()
                .filter(|(_, a)| is(&a.session, session))
                .map(|(n, _)| *n)
                .collect();
            let mut cancels = Vec::new();
            for n in mine {
                if let Some(asked) = state.requests.remove(&n)
                    && let Some(t) = asked.token
                {
                    state.tokens.remove(&t);
                }
                // An initialize is never cancelled (MCP): its answer is kept for others.
                if Some(n) != init {
                    cancels.push(n);
                }
            }
            let asked: Vec<u64> = state
                .server_requests
                .iter()
                .filter(|(_, a)| is(&a.session, session))
                .map(|(n, _)| *n)
                .collect();
            let refusals: Vec<String> = asked
                .iter()
                .filter_map(|n| state.server_requests.remove(n))
                .map(|a| a.raw_id)
                .collect();
            (cancels, refusals)
        };
        session.routes.end(&format!("the session ended ({reason})"));
        if reason != "shutdown" {
            for n in cancels {
                let line = format!(
                    r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{n},"reason":"the client's session ended"}}}}"#
                );
                self.running.try_write(Bytes::from(line));
            }
            for raw_id in refusals {
                self.refuse(&raw_id, "the client's session ended");
            }
        }
        self.metrics.session_ended(reason);
        tracing::info!(session = %session.id, reason, "stdio session of the shared server ended");
    }

    /// The process is gone (`why`): every session ends, its waiting requests get
    /// errors. Returns the ended sessions' ids (none after the first call).
    pub(super) fn close(&self, why: &str, reason: &'static str) -> Vec<String> {
        let members = {
            let mut state = self.state();
            if state.closed {
                return Vec::new();
            }
            state.closed = true;
            state.requests.clear();
            state.tokens.clear();
            state.server_requests.clear();
            state.init = Init::Open;
            std::mem::take(&mut state.members)
        };
        self.init_changed.notify_waiters();
        let mut ended = Vec::new();
        for session in members.iter().filter_map(Weak::upgrade) {
            if session.routes.ended().is_none() {
                session.routes.end(why);
                self.metrics.session_ended(reason);
            }
            ended.push(session.id.clone());
        }
        ended
    }
}
