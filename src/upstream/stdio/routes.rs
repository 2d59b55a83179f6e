//! Where each message a stdio server writes goes: a response to the POST stream of its
//! request, a progress notification to the stream of the request that asked for it,
//! anything else (server requests, other notifications) to the session's GET stream,
//! or, with none open, to the newest POST stream, or else a small backlog the next GET
//! stream receives first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::message::Kind;
use crate::mcp::jsonrpc::{self, RequestId};

/// Messages kept for a GET stream that is not open yet; past this, the oldest go
/// (counted and logged by the caller).
pub const BACKLOG: usize = 256;

/// Requests one session may have waiting at once. A request the server never answers
/// (a cancelled one, say: the TypeScript SDK's servers send nothing) waits until the
/// session ends, so without a bound a client could grow the table for ever.
pub const MAX_PENDING: usize = 1024;

/// Messages queued on one response stream before the server's stdout waits for the
/// client to read.
const STREAM_QUEUE: usize = 64;

/// One client request waiting for its answer.
struct Pending {
    stream: u64,
    /// The id as the client wrote it, for the proxy's error if no answer comes.
    raw_id: String,
    progress_token: Option<String>,
}

struct PostStream {
    tx: mpsc::Sender<Bytes>,
    /// Requests of this POST still unanswered; the stream ends at zero.
    outstanding: usize,
}

#[derive(Default)]
struct Inner {
    pending: HashMap<String, Pending>,
    progress: HashMap<String, u64>,
    streams: HashMap<u64, PostStream>,
    get: Option<mpsc::Sender<Bytes>>,
    backlog: VecDeque<Bytes>,
    next_stream: u64,
    /// Why the session ended, once it has: nothing new is accepted.
    ended: Option<String>,
}

/// The routing table of one session.
#[derive(Default)]
pub struct Routes {
    inner: Mutex<Inner>,
    /// Never wait for this session's client (a session of a shared process: one
    /// client that stops reading must not hold back every other's messages).
    never_wait: bool,
}

/// Why a POST's requests cannot be routed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    /// The session's server has ended.
    #[error("the session has ended: {0}")]
    Ended(String),
    /// A request reuses the id of one still waiting for its answer.
    #[error("request id {0} is already waiting for an answer in this session")]
    DuplicateId(String),
    /// The session has [`MAX_PENDING`] requests waiting.
    #[error("this session has {MAX_PENDING} requests waiting for answers; wait for some first")]
    TooMany,
    /// A GET stream is open already (one per session, as the MCP SDKs' servers do).
    #[error("this session already has a GET stream open")]
    GetOpen,
}

/// A request of a POST: its id key, the id as written, its progress token.
pub struct Request {
    /// [`super::message::id_key`] of the id.
    pub key: String,
    /// The id's JSON text.
    pub raw_id: String,
    /// The progress token's key, if the request asked for progress.
    pub progress_token: Option<String>,
}

/// Where [`Routes::route`] put a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Routed {
    /// Sent to a stream (or queued behind its client's reading).
    Sent,
    /// The session's client stopped reading (its queue was full, and this session may
    /// not wait): the message was dropped and the session ended.
    ClientStalled,
    /// Kept for the next GET stream.
    Backlog,
    /// A response to no waiting request (or to one whose client left): dropped.
    Unmatched,
    /// The backlog was full: its oldest message was dropped for this one.
    BacklogFull,
}

impl Routes {
    /// A table whose sends never wait: a full queue ends the session instead (for the
    /// sessions of a shared process).
    pub fn never_waiting() -> Self {
        Self {
            never_wait: true,
            ..Self::default()
        }
    }

    /// Registers a POST's requests; their answers (and their progress) go to the
    /// returned receiver, which ends once all are answered.
    pub fn open_post(&self, requests: Vec<Request>) -> Result<mpsc::Receiver<Bytes>, RouteError> {
        let mut inner = self.inner.lock().expect("routes lock");
        if let Some(why) = &inner.ended {
            return Err(RouteError::Ended(why.clone()));
        }
        if inner.pending.len() + requests.len() > MAX_PENDING {
            return Err(RouteError::TooMany);
        }
        for (i, request) in requests.iter().enumerate() {
            if inner.pending.contains_key(&request.key)
                || requests[..i].iter().any(|r| r.key == request.key)
            {
                return Err(RouteError::DuplicateId(request.raw_id.clone()));
            }
        }
        inner.next_stream += 1;
        let stream = inner.next_stream;
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        inner.streams.insert(
            stream,
            PostStream {
                tx,
                outstanding: requests.len(),
            },
        );
        for request in requests {
            if let Some(token) = &request.progress_token {
                inner.progress.insert(token.clone(), stream);
            }
            inner.pending.insert(
                request.key,
                Pending {
                    stream,
                    raw_id: request.raw_id,
                    progress_token: request.progress_token,
                },
            );
        }
        Ok(rx)
    }

    /// Opens the session's GET stream; what waited in the backlog comes first.
    pub fn open_get(&self) -> Result<mpsc::Receiver<Bytes>, RouteError> {
        let mut inner = self.inner.lock().expect("routes lock");
        if let Some(why) = &inner.ended {
            return Err(RouteError::Ended(why.clone()));
        }
        if inner.get.as_ref().is_some_and(|tx| !tx.is_closed()) {
            return Err(RouteError::GetOpen);
        }
        let (tx, rx) = mpsc::channel(BACKLOG + STREAM_QUEUE);
        for message in inner.backlog.drain(..) {
            let _ = tx.try_send(message);
        }
        inner.get = Some(tx);
        Ok(rx)
    }

    /// Sends `event` (an SSE event carrying the message) where `kind` says.
    pub async fn route(&self, kind: &Kind, event: Bytes) -> Routed {
        let target = {
            let mut inner = self.inner.lock().expect("routes lock");
            match inner.target(kind) {
                Some(tx) => tx,
                None if matches!(kind, Kind::Response { id: Some(_) }) => {
                    return Routed::Unmatched;
                }
                None => {
                    let full = inner.backlog.len() >= BACKLOG;
                    if full {
                        inner.backlog.pop_front();
                    }
                    inner.backlog.push_back(event);
                    return if full {
                        Routed::BacklogFull
                    } else {
                        Routed::Backlog
                    };
                }
            }
        };
        if self.never_wait {
            return match target.try_send(event) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Routed::Sent,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.end("this session's client stopped reading its stream");
                    Routed::ClientStalled
                }
            };
        }
        // Outside the lock: a slow client holds back this server's output (back
        // pressure), not the other streams' bookkeeping. A client that left is fine.
        let _ = target.send(event).await;
        Routed::Sent
    }

    /// Ends the session: every waiting request gets a JSON-RPC error with `why`, every
    /// stream ends. Later calls do nothing.
    pub fn end(&self, why: &str) {
        let mut inner = self.inner.lock().expect("routes lock");
        if inner.ended.is_some() {
            return;
        }
        inner.ended = Some(why.to_string());
        let message = format!("sluice: {why} before answering this request");
        let pending: Vec<Pending> = inner.pending.drain().map(|(_, p)| p).collect();
        for pending in pending {
            let Some(stream) = inner.streams.get(&pending.stream) else {
                continue;
            };
            let Ok(raw) = RawValue::from_string(pending.raw_id) else {
                continue;
            };
            let error = jsonrpc::error(&RequestId::new(&raw), jsonrpc::UPSTREAM_FAILED, &message);
            // Without waiting here (the lock is held): a full queue gets the error
            // when its client reads, from a task that keeps the stream open until then.
            let error = event(error.get().as_bytes());
            if let Err(mpsc::error::TrySendError::Full(error)) = stream.tx.try_send(error) {
                let tx = stream.tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(error).await;
                });
            }
        }
        inner.streams.clear();
        inner.progress.clear();
        inner.get = None;
        inner.backlog.clear();
    }

    /// Why the session ended, if it has.
    pub fn ended(&self) -> Option<String> {
        self.inner.lock().expect("routes lock").ended.clone()
    }

    /// True when no client is reading any of the session's streams (a request whose
    /// client went away waits for nobody): the session may be ended for idleness
    /// without anyone losing an answer.
    pub fn is_idle(&self) -> bool {
        let inner = self.inner.lock().expect("routes lock");
        inner.streams.values().all(|s| s.tx.is_closed())
            && inner.get.as_ref().is_none_or(mpsc::Sender::is_closed)
    }
}

impl Inner {
    fn target(&mut self, kind: &Kind) -> Option<mpsc::Sender<Bytes>> {
        match kind {
            Kind::Response { id: Some(key) } => {
                let pending = self.pending.remove(key)?;
                if let Some(token) = &pending.progress_token {
                    self.progress.remove(token);
                }
                let stream = self.streams.get_mut(&pending.stream)?;
                stream.outstanding -= 1;
                let tx = stream.tx.clone();
                if stream.outstanding == 0 {
                    // The stream's sender goes with this answer: the body ends after it.
                    self.streams.remove(&pending.stream);
                }
                Some(tx)
            }
            Kind::Notification {
                progress_token: Some(token),
                ..
            } if self.progress.contains_key(token) => {
                let stream = self.progress[token];
                self.streams.get(&stream).map(|s| s.tx.clone())
            }
            _ => {
                if let Some(get) = self.get.as_ref().filter(|tx| !tx.is_closed()) {
                    return Some(get.clone());
                }
                // The newest POST stream still open: a server asking something while
                // answering a request (sampling, elicitation) is related to it.
                self.streams
                    .iter()
                    .filter(|(_, s)| !s.tx.is_closed())
                    .max_by_key(|(n, _)| **n)
                    .map(|(_, s)| s.tx.clone())
            }
        }
    }
}

/// One message as an SSE event (`text` has no line breaks: it is one JSON line).
pub fn event(text: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(text.len() + 24);
    out.extend_from_slice(b"event: message\ndata: ");
    out.extend_from_slice(text);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(key: &str, token: Option<&str>) -> Request {
        Request {
            key: format!("n:{key}"),
            raw_id: key.to_string(),
            progress_token: token.map(|t| format!("s:{t}")),
        }
    }

    fn response(key: &str) -> Kind {
        Kind::Response {
            id: Some(format!("n:{key}")),
        }
    }

    #[tokio::test]
    async fn answers_and_progress_go_to_their_post_and_the_stream_ends_after_the_last() {
        let routes = Routes::default();
        let mut a = routes
            .open_post(vec![request("1", Some("t")), request("2", None)])
            .unwrap();
        let progress = Kind::Notification {
            method: "notifications/progress".into(),
            progress_token: Some("s:t".into()),
        };
        assert_eq!(routes.route(&progress, event(b"p")).await, Routed::Sent);
        assert_eq!(
            routes.route(&response("1"), event(b"r1")).await,
            Routed::Sent
        );
        assert_eq!(
            routes.route(&response("2"), event(b"r2")).await,
            Routed::Sent
        );
        assert_eq!(
            routes.route(&response("3"), event(b"r3")).await,
            Routed::Unmatched
        );
        let mut got = Vec::new();
        while let Some(e) = a.recv().await {
            got.push(e);
        }
        assert_eq!(got, [event(b"p"), event(b"r1"), event(b"r2")]);
    }

    #[tokio::test]
    async fn server_messages_wait_for_a_get_stream_and_reuse_of_a_waiting_id_is_refused() {
        let routes = Routes::default();
        let note = Kind::Notification {
            method: "notifications/tools/list_changed".into(),
            progress_token: None,
        };
        assert_eq!(routes.route(&note, event(b"n")).await, Routed::Backlog);
        let mut get = routes.open_get().unwrap();
        assert_eq!(get.recv().await.unwrap(), event(b"n"));
        assert_eq!(routes.open_get().unwrap_err(), RouteError::GetOpen);
        let _post = routes.open_post(vec![request("1", None)]).unwrap();
        assert_eq!(
            routes.open_post(vec![request("1", None)]).unwrap_err(),
            RouteError::DuplicateId("1".into())
        );
        assert!(!routes.is_idle());
    }

    #[tokio::test]
    async fn ending_answers_every_waiting_request_with_an_error() {
        let routes = Routes::default();
        let mut a = routes.open_post(vec![request("7", None)]).unwrap();
        routes.end("the stdio server exited (exit status: 1)");
        let error = a.recv().await.unwrap();
        let text = String::from_utf8(error.to_vec()).unwrap();
        assert!(text.contains(r#""id":7"#), "{text}");
        assert!(
            text.contains("-32051") && text.contains("exit status: 1"),
            "{text}"
        );
        assert!(a.recv().await.is_none());
        assert!(matches!(
            routes.open_post(vec![]),
            Err(RouteError::Ended(_))
        ));
    }

    #[tokio::test]
    async fn an_error_for_a_full_stream_waits_for_its_reader_instead_of_being_lost() {
        let routes = Routes::default();
        let mut a = routes.open_post(vec![request("1", Some("t"))]).unwrap();
        let progress = Kind::Notification {
            method: "notifications/progress".into(),
            progress_token: Some("s:t".into()),
        };
        for _ in 0..STREAM_QUEUE {
            assert_eq!(routes.route(&progress, event(b"p")).await, Routed::Sent);
        }
        routes.end("the stdio server exited");
        let mut last = None;
        while let Some(e) = a.recv().await {
            last = Some(e);
        }
        let last = String::from_utf8(last.unwrap().to_vec()).unwrap();
        assert!(last.contains("-32051"), "{last}");
    }

    #[tokio::test]
    async fn a_session_of_a_shared_process_never_waits_for_its_client() {
        let routes = Routes::never_waiting();
        let _a = routes.open_post(vec![request("1", Some("t"))]).unwrap();
        let progress = Kind::Notification {
            method: "notifications/progress".into(),
            progress_token: Some("s:t".into()),
        };
        for _ in 0..STREAM_QUEUE {
            assert_eq!(routes.route(&progress, event(b"p")).await, Routed::Sent);
        }
        // The client reads nothing: the next message ends its session, at once.
        assert_eq!(
            routes.route(&progress, event(b"p")).await,
            Routed::ClientStalled
        );
        assert!(routes.ended().is_some());
    }

    #[test]
    fn a_session_holds_a_bounded_number_of_waiting_requests() {
        let routes = Routes::default();
        let many = |from: usize, n: usize| {
            (from..from + n)
                .map(|i| request(&i.to_string(), None))
                .collect::<Vec<_>>()
        };
        let _a = routes.open_post(many(0, MAX_PENDING)).unwrap();
        assert_eq!(
            routes.open_post(many(MAX_PENDING, 1)).unwrap_err(),
            RouteError::TooMany
        );
    }
}
