//! What happens to an exchange, told to whoever watches: tapes, metrics, the count of
//! open streams. In the spirit of Pingora's logging phase, the proxy calls one
//! [`Observers`] at fixed points of an exchange (request seen, response head, each
//! upstream read, each event judged, the end) and knows nothing about what they do
//! with it: recording is not threaded through the proxy, and a new watcher (an audit
//! log, say) is one more [`Observe`] rather than one more `if let Some(…)` per site.
//!
//! Observers run inline on the exchange's task, so they must be cheap: anything slow
//! (a disk write) belongs behind a queue of the observer's own, as the tape recorder's
//! writer thread is.

pub mod metrics;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::plugin::{Chain, Step, StreamMeta};
use crate::sse::Event;

/// Something that watches every exchange: makes one [`ExchangeObserver`] per exchange.
pub trait Observe: Send + Sync {
    /// The watcher of a new exchange, which runs `chain` (`None`: this exchange is of
    /// no interest).
    fn exchange(&self, meta: &StreamMeta, chain: &Chain) -> Option<Box<dyn ExchangeObserver>>;
}

/// Watches one exchange. Every method has an empty default: an observer says only what
/// it cares about.
pub trait ExchangeObserver: Send {
    /// True when the observer wants each plugin call's [`Step`] (time and fuel too):
    /// the exchange's session then traces, which costs a clock read per call.
    fn wants_steps(&self) -> bool {
        false
    }

    /// True when the observer wants the upstream's body as read: an SSE body's reads
    /// ([`ExchangeObserver::upstream_bytes`]; the decoder then keeps them) and a JSON
    /// body whole ([`ExchangeObserver::json_response`]).
    fn wants_upstream_bytes(&self) -> bool {
        false
    }

    /// The client's request went through the to-server chain.
    fn request(&mut self, _request: &RequestSeen<'_>) {}

    /// The upstream's response head (headers as the client gets them).
    fn response(&mut self, _status: StatusCode, _headers: &HeaderMap) {}

    /// The response is an SSE stream the proxy reads event by event.
    fn stream_opened(&mut self) {}

    /// Bytes of the upstream's SSE body, as read: always before the events they
    /// complete are judged.
    fn upstream_bytes(&mut self, _bytes: &[u8]) {}

    /// A comment (keep-alive) in the upstream's SSE body, passed as it was.
    fn comment(&mut self, _text: &str) {}

    /// The next event of the upstream's SSE body, in the order they decode, after the
    /// chain judged it.
    fn event(&mut self, _event: &Judged<'_>) {}

    /// A whole JSON response body, which went through the chain as one event (only
    /// told when some observer [`wants_upstream_bytes`](Self::wants_upstream_bytes)).
    fn json_response(&mut self, _received: &Event, _judged: &Judged<'_>) {}

    /// The exchange ended; called at most once, and nothing follows it.
    fn end(&mut self, _end: &StreamEnd<'_>) {}
}

/// A client request after the to-server chain.
pub struct RequestSeen<'a> {
    /// What plugins were told about the exchange.
    pub meta: &'a StreamMeta,
    /// The query string, as the client sent it.
    pub query: Option<&'a str>,
    /// The client's headers, as received.
    pub headers: &'a HeaderMap,
    /// The body as received.
    pub body: &'a Bytes,
    /// Each plugin's part, when traced ([`ExchangeObserver::wants_steps`]).
    pub steps: &'a [Step],
    /// What went upstream; `None` when the proxy answered the client itself.
    pub sent: Option<&'a Bytes>,
}

/// What the chain made of one event.
pub struct Judged<'a> {
    /// Each plugin's part, when traced.
    pub steps: &'a [Step],
    /// What the client got; `None` when nothing was sent.
    pub sent: Option<&'a Event>,
    /// The proxy itself changed the event before the chain (a legacy `endpoint`
    /// event), so an all-pass chain still did not send it as received.
    pub rewritten: bool,
}

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd<'a> {
    /// The upstream's response went to the client in full.
    Complete,
    /// The proxy answered the client itself: plugins dropped what there was to send,
    /// or only the proxy's own errors were left to add.
    AnsweredByProxy,
    /// The body went to the client unread (an error status, or content no plugin
    /// inspects).
    NotInspected,
    /// The upstream failed at `stage`; `reason` is for logs and tapes, never for the
    /// client (it can hold the OS's words about the upstream).
    UpstreamFailed {
        /// Where it failed.
        stage: UpstreamStage,
        /// Why.
        reason: &'a str,
    },
    /// The client went away before the end.
    ClientGone,
    /// The proxy shut down and ended the stream itself.
    Shutdown,
}

impl StreamEnd<'_> {
    /// The outcome's stable name (tapes' `end` records).
    pub fn outcome(&self) -> &'static str {
        match self {
            StreamEnd::Complete => "complete",
            StreamEnd::AnsweredByProxy => "answered-by-proxy",
            StreamEnd::NotInspected => "not-inspected",
            StreamEnd::UpstreamFailed { .. } => "upstream-error",
            StreamEnd::ClientGone => "client-gone",
            StreamEnd::Shutdown => "shutdown",
        }
    }
}

/// Where an upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamStage {
    /// The request could not be sent or no response head came.
    Connect,
    /// The response cannot be used (wrong content type, compressed, unreadable body).
    Response,
    /// An SSE stream broke after it began (connection, oversized event, idle).
    Stream,
}

impl UpstreamStage {
    /// The stage's stable name (the `kind` label of `sluice_upstream_errors_total`).
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamStage::Connect => "connect",
            UpstreamStage::Response => "response",
            UpstreamStage::Stream => "stream",
        }
    }
}

/// The watchers of one exchange, told in the order they were configured.
#[derive(Default)]
pub struct Observers {
    each: Vec<Box<dyn ExchangeObserver>>,
    steps: bool,
    upstream_bytes: bool,
    ended: bool,
}

impl Observers {
    /// The watchers `observe` makes for an exchange.
    pub fn for_exchange(observe: &[Arc<dyn Observe>], meta: &StreamMeta, chain: &Chain) -> Self {
        let each: Vec<_> = observe
            .iter()
            .filter_map(|o| o.exchange(meta, chain))
            .collect();
        Self {
            steps: each.iter().any(|o| o.wants_steps()),
            upstream_bytes: each.iter().any(|o| o.wants_upstream_bytes()),
            each,
            ended: false,
        }
    }

    /// Whether any watcher wants plugin steps (the session must trace).
    pub fn wants_steps(&self) -> bool {
        self.steps
    }

    /// Whether any watcher wants the upstream's SSE body as read.
    pub fn wants_upstream_bytes(&self) -> bool {
        self.upstream_bytes
    }

    /// See [`ExchangeObserver::request`].
    pub fn request(&mut self, request: &RequestSeen<'_>) {
        self.each.iter_mut().for_each(|o| o.request(request));
    }

    /// See [`ExchangeObserver::response`].
    pub fn response(&mut self, status: StatusCode, headers: &HeaderMap) {
        self.each
            .iter_mut()
            .for_each(|o| o.response(status, headers));
    }

    /// See [`ExchangeObserver::stream_opened`].
    pub fn stream_opened(&mut self) {
        self.each.iter_mut().for_each(|o| o.stream_opened());
    }

    /// See [`ExchangeObserver::upstream_bytes`].
    pub fn upstream_bytes(&mut self, bytes: &[u8]) {
        self.each.iter_mut().for_each(|o| o.upstream_bytes(bytes));
    }

    /// See [`ExchangeObserver::comment`].
    pub fn comment(&mut self, text: &str) {
        self.each.iter_mut().for_each(|o| o.comment(text));
    }

    /// See [`ExchangeObserver::event`].
    pub fn event(&mut self, event: &Judged<'_>) {
        self.each.iter_mut().for_each(|o| o.event(event));
    }

    /// See [`ExchangeObserver::json_response`].
    pub fn json_response(&mut self, received: &Event, judged: &Judged<'_>) {
        self.each
            .iter_mut()
            .for_each(|o| o.json_response(received, judged));
    }

    /// See [`ExchangeObserver::end`]; only the first end counts.
    pub fn end(&mut self, end: &StreamEnd<'_>) {
        if !std::mem::replace(&mut self.ended, true) {
            self.each.iter_mut().for_each(|o| o.end(end));
        }
    }

    /// Whether the exchange's end was told.
    pub fn ended(&self) -> bool {
        self.ended
    }
}
