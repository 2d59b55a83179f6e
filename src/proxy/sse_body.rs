//! The client-facing body of an intercepted SSE response: upstream frames are decoded,
//! each event goes through the chain, and what survives is re-encoded and sent as soon
//! as it is ready. The body is polled by hyper only when the client can take more, so
//! a slow client slows the upstream reads (see `upstream::SseEvents`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use serde_json::Value;

use super::legacy::EndpointRewrite;
use super::recording::TapeStream;
use super::{jsonrpc, messages};
use tokio::sync::watch;

use crate::metrics::{Metrics, StreamGuard};

/// The shutdown signal as a body can poll it: a cheap flag, and a future that wakes
/// the body when the flag turns.
struct Closing {
    flag: watch::Receiver<bool>,
    wake: Pin<Box<dyn Future<Output = ()> + Send>>,
}
use crate::plugin::Session;
use crate::sse::{self, Event};
use crate::upstream::SseEvents;

/// An SSE response body with the plugin chain applied.
pub struct InterceptedSse {
    events: SseEvents<Incoming>,
    session: Session,
    /// Requests of the POST that opened the stream still waiting for their response.
    /// If the stream breaks, the proxy answers them with errors so no client waits
    /// for ever.
    unanswered: Vec<Value>,
    /// Set on a legacy HTTP+SSE stream: its `endpoint` event is pointed at the proxy.
    endpoint: Option<EndpointRewrite>,
    /// Sent before the first upstream event: the proxy's answers for requests a plugin
    /// dropped from the batch that opened the stream.
    first: Option<Bytes>,
    /// Set when recording (`--record`).
    tape: Option<TapeStream>,
    /// Keeps `streams_open` right however the stream ends; event counters.
    counted: Option<StreamGuard>,
    /// Resolves when the proxy shuts down past its grace period.
    closing: Option<Closing>,
    /// The exchange's span, entered for the stream's own log lines.
    span: tracing::Span,
    done: bool,
}

impl InterceptedSse {
    /// Wraps an upstream SSE body; `session` must have begun its to-client phase.
    pub fn new(events: SseEvents<Incoming>, session: Session, unanswered: Vec<Value>) -> Self {
        Self {
            events,
            session,
            unanswered,
            endpoint: None,
            first: None,
            tape: None,
            counted: None,
            closing: None,
            span: tracing::Span::none(),
            done: false,
        }
    }

    /// Rewrites the legacy transport's `endpoint` event (see `proxy::legacy`).
    pub fn with_endpoint_rewrite(mut self, rewrite: EndpointRewrite) -> Self {
        self.endpoint = Some(rewrite);
        self
    }

    /// Logs the stream's events (errors, its end) inside the exchange's span.
    pub(crate) fn in_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }

    /// Ends the stream (cleanly, answering waiting requests) when `closing` turns true.
    pub(crate) fn closing_on(mut self, mut closing: watch::Receiver<bool>) -> Self {
        let flag = closing.clone();
        self.closing = Some(Closing {
            flag,
            wake: Box::pin(async move {
                let _ = closing.wait_for(|closing| *closing).await;
            }),
        });
        self
    }

    /// Whether the proxy is closing streams; registers for a wake-up if not.
    fn must_close(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.closing {
            Some(closing) => *closing.flag.borrow() || closing.wake.as_mut().poll(cx).is_ready(),
            None => false,
        }
    }

    /// Counts this stream as open until it ends, and its events in and out.
    pub(crate) fn with_metrics(mut self, metrics: &Metrics) -> Self {
        self.counted = Some(metrics.stream_opened());
        self
    }

    /// Records every frame and the end of the stream on a tape.
    pub(crate) fn with_tape(mut self, tape: TapeStream) -> Self {
        self.tape = Some(tape);
        self
    }

    /// Sends these messages (JSON-RPC errors for requests a plugin dropped from a
    /// batch) as events before anything from the upstream.
    pub fn with_answers_first(mut self, answered: Vec<Value>) -> Self {
        if !answered.is_empty() {
            let mut out = BytesMut::new();
            for message in answered {
                sse::encode_event(&Event::message(message.to_string()), &mut out);
            }
            self.first = Some(out.freeze());
        }
        self
    }

    fn stream_id(&self) -> u64 {
        self.session.meta().stream_id
    }

    /// Ends the stream because the proxy shuts down: the session ends normally, waiting
    /// requests get errors, and the body ends (a clean end of stream for the client).
    fn close_for_shutdown(&mut self) -> Option<Bytes> {
        self.done = true;
        self.session.end();
        let _span = self.span.clone().entered();
        tracing::info!(stream = self.stream_id(), "stream ended by shutdown");
        if let Some(tape) = &mut self.tape {
            tape.end("shutdown", None);
        }
        if let Some(counted) = &mut self.counted {
            counted.complete();
        }
        self.errors_for_unanswered("the proxy is shutting down")
    }

    /// Error events for every request still waiting, sent when the stream breaks.
    fn errors_for_unanswered(&mut self, reason: &str) -> Option<Bytes> {
        if self.unanswered.is_empty() {
            return None;
        }
        let mut out = BytesMut::new();
        let message = format!("sluice: response stream ended before the response: {reason}");
        for id in self.unanswered.drain(..) {
            let data = jsonrpc::error(&id, jsonrpc::STREAM_FAILED, &message).to_string();
            sse::encode_event(&Event::message(data), &mut out);
        }
        Some(out.freeze())
    }
}

impl Body for InterceptedSse {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if this.must_close(cx) {
                return Poll::Ready(this.close_for_shutdown().map(|b| Ok(Frame::data(b))));
            }
            let mut out = BytesMut::new();
            match ready!(this.events.poll_next(cx)) {
                Some(Ok(sse::Frame::Comment(text))) => {
                    if let Some(tape) = &mut this.tape {
                        tape.comment(&text);
                    }
                    sse::encode_comment(&text, &mut out);
                }
                Some(Ok(sse::Frame::Event(mut event))) => {
                    if let Some(counted) = &this.counted {
                        counted.event_in();
                    }
                    if let Some(tape) = &mut this.tape {
                        tape.event_start(&event);
                    }
                    let rewritten = this
                        .endpoint
                        .as_ref()
                        .is_some_and(|endpoint| endpoint.apply(&mut event));
                    let sent = messages::to_client(&mut this.session, event, &mut this.unanswered);
                    if let Some(tape) = &mut this.tape {
                        tape.event_end(this.session.steps(), sent.as_ref(), rewritten);
                        this.session.clear_steps();
                    }
                    match sent {
                        Some(event) => {
                            if let Some(counted) = &this.counted {
                                counted.event_out();
                            }
                            sse::encode_event(&event, &mut out);
                        }
                        None => continue,
                    }
                }
                Some(Err(e)) => {
                    let _span = this.span.clone().entered();
                    tracing::warn!(stream = this.stream_id(), error = %e, "SSE stream from upstream ended with an error");
                    this.done = true;
                    if let Some(tape) = &mut this.tape {
                        tape.end("upstream-error", Some(e.to_string()));
                    }
                    if let Some(counted) = &mut this.counted {
                        counted.upstream_broke();
                    }
                    match this.errors_for_unanswered(&e.to_string()) {
                        Some(errors) => return Poll::Ready(Some(Ok(Frame::data(errors)))),
                        None => return Poll::Ready(None),
                    }
                }
                None => {
                    this.session.end();
                    this.done = true;
                    if let Some(tape) = &mut this.tape {
                        tape.end("complete", None);
                    }
                    if let Some(counted) = &mut this.counted {
                        counted.complete();
                    }
                    tracing::debug!(stream = this.stream_id(), "SSE stream ended");
                    return Poll::Ready(None);
                }
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for InterceptedSse {
    fn drop(&mut self) {
        if !self.done {
            if let Some(tape) = &mut self.tape {
                tape.end("client-gone", None);
            }
            tracing::debug!(
                stream = self.stream_id(),
                "client went away before the SSE stream ended"
            );
        }
    }
}
