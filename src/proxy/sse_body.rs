//! The client-facing body of an intercepted SSE response: upstream frames are decoded,
//! each event goes through the chain, and what survives is re-encoded and sent as soon
//! as it is ready. The body is polled by hyper only when the client can take more, so
//! a slow client slows the upstream reads (see `upstream::SseEvents`).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use serde_json::Value;

use super::jsonrpc;
use crate::plugin::{Outcome, Session};
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
    done: bool,
}

impl InterceptedSse {
    /// Wraps an upstream SSE body; `session` must have begun its to-client phase.
    pub fn new(events: SseEvents<Incoming>, session: Session, unanswered: Vec<Value>) -> Self {
        Self {
            events,
            session,
            unanswered,
            done: false,
        }
    }

    fn stream_id(&self) -> u64 {
        self.session.meta().stream_id
    }

    /// Remembers that a response left for the client.
    fn note_forwarded(&mut self, event: &Event) {
        if self.unanswered.is_empty() {
            return;
        }
        if let Some(id) = event.data.as_deref().and_then(jsonrpc::response_id) {
            self.unanswered.retain(|pending| *pending != id);
        }
    }

    /// A dropped response would leave its request unanswered: send an error with the
    /// same id in its place.
    fn replacement_for_dropped(&mut self, event: Event, plugin: &str) -> Option<Event> {
        let id = event.data.as_deref().and_then(jsonrpc::response_id)?;
        self.unanswered.retain(|pending| *pending != id);
        let message = format!("sluice: the response was dropped by plugin {plugin}");
        Some(Event {
            data: Some(jsonrpc::error(&id, jsonrpc::DROPPED_BY_PLUGIN, &message).to_string()),
            ..event
        })
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
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let mut out = BytesMut::new();
            match ready!(this.events.poll_next(cx)) {
                Some(Ok(sse::Frame::Comment(text))) => sse::encode_comment(&text, &mut out),
                Some(Ok(sse::Frame::Event(event))) => match this.session.on_event(event) {
                    Outcome::Forward(event) => {
                        this.note_forwarded(&event);
                        sse::encode_event(&event, &mut out);
                    }
                    Outcome::Dropped { plugin, event, .. } => {
                        match this.replacement_for_dropped(event, &plugin) {
                            Some(replacement) => sse::encode_event(&replacement, &mut out),
                            None => continue,
                        }
                    }
                },
                Some(Err(e)) => {
                    tracing::warn!(stream = this.stream_id(), error = %e, "SSE stream from upstream ended with an error");
                    this.done = true;
                    match this.errors_for_unanswered(&e.to_string()) {
                        Some(errors) => return Poll::Ready(Some(Ok(Frame::data(errors)))),
                        None => return Poll::Ready(None),
                    }
                }
                None => {
                    this.session.end();
                    this.done = true;
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
            tracing::debug!(
                stream = self.stream_id(),
                "client went away before the SSE stream ended"
            );
        }
    }
}
