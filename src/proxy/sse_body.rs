//! The client-facing body of an intercepted SSE response: upstream frames are decoded,
//! each event goes through the chain, and what survives is re-encoded and sent as soon
//! as it is ready. The body is polled by hyper only when the client can take more, so
//! a slow client slows the upstream reads (see `upstream::SseEvents`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use serde_json::value::RawValue;

use std::collections::VecDeque;
use std::sync::Arc;

use crate::holds::{HeldMessage, HoldEnd, Holds};
use crate::mcp::jsonrpc::{self, RequestId};
use crate::mcp::legacy::EndpointRewrite;
use crate::mcp::messages::{self, AfterHold, HeldEvent, ToClient};
use crate::metrics::Metrics;
use crate::plugin::HoldSpec;
use tokio::sync::watch;

use crate::observe::{Judged, Observers, StreamEnd, UpstreamStage};

/// The shutdown signal as a body can poll it: a cheap flag, and a future that wakes
/// the body when the flag turns.
struct Closing {
    flag: watch::Receiver<bool>,
    wake: Pin<Box<dyn Future<Output = ()> + Send>>,
}
use crate::plugin::Session;
use crate::sse::{self, Event};
use crate::upstream::{SseEvents, StreamError, UpstreamBody};

/// The most bytes of already-delivered events sent to the client in one frame.
const BATCH_BYTES: usize = 64 << 10;

/// The most upstream frames taken through the chain together (`Session::on_events`).
const GATHER: usize = 64;

/// Events gathered to go through the chain together, and whether the proxy rewrote
/// each (a legacy `endpoint` event) before the chain.
#[derive(Default)]
struct Run {
    events: Vec<Event>,
    rewritten: Vec<bool>,
}

/// Where the holds of a proxy's messages wait, and what they are shown with.
#[derive(Clone)]
pub(crate) struct HoldRoom {
    pub(crate) holds: Arc<Holds>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) route: Option<Arc<str>>,
}

impl HoldRoom {
    /// What the admin API shows of a message `plugin` held in `session`.
    pub(crate) fn shown(
        &self,
        session: &Session,
        plugin: &str,
        hold: &HoldSpec,
        message: &str,
    ) -> HeldMessage {
        let meta = session.meta();
        HeldMessage::new(
            plugin,
            hold,
            (
                self.route.as_deref().unwrap_or("default"),
                meta.stream_id,
                meta.identity.limit_key(),
            ),
            meta.rpc_method.clone(),
            message,
        )
    }

    /// The wait of `hold`, as a future the body polls.
    fn wait(
        &self,
        hold: &HoldSpec,
        shown: HeldMessage,
    ) -> Pin<Box<dyn Future<Output = HoldEnd> + Send>> {
        let (room, hold) = (self.clone(), hold.clone());
        Box::pin(async move { room.holds.carry_out(&room.metrics, &hold, shown).await })
    }
}

/// What the MCP rules do once a hold ended this way.
pub(crate) fn after_hold(end: HoldEnd) -> AfterHold {
    if end.goes_on() {
        AfterHold::GoesOn
    } else {
        AfterHold::Dropped
    }
}

/// An upstream message a plugin holds, and the frames that arrived behind it (not yet
/// through the chain: they wait, so the stream keeps its order).
struct Waiting {
    wait: Pin<Box<dyn Future<Output = HoldEnd> + Send>>,
    held: HeldEvent,
    rewritten: bool,
    behind: VecDeque<sse::Frame>,
}

/// How the upstream's stream ended.
enum Ending {
    /// It broke (connection, oversized event, idle timeout): the reason, for the log,
    /// and what the client may be told (the reason of a broken connection holds the
    /// OS's words about the upstream).
    Broken { reason: String, public: String },
    /// It ended normally.
    Complete,
}

/// An SSE response body with the plugin chain applied.
pub struct InterceptedSse {
    events: SseEvents<UpstreamBody>,
    session: Session,
    /// Requests of the POST that opened the stream still waiting for their response.
    /// If the stream breaks, the proxy answers them with errors so no client waits
    /// for ever.
    unanswered: Vec<RequestId>,
    /// Set on a legacy HTTP+SSE stream: its `endpoint` event is pointed at the proxy.
    endpoint: Option<EndpointRewrite>,
    /// Sent before the first upstream event: the proxy's answers for requests a plugin
    /// dropped from the batch that opened the stream.
    first: Option<Bytes>,
    /// Who watches the exchange (tapes, metrics): told of each event and the end.
    observers: Observers,
    /// Resolves when the proxy shuts down past its grace period.
    closing: Option<Closing>,
    /// The exchange's span, entered for the stream's own log lines.
    span: tracing::Span,
    /// How the upstream's stream ended, when frames before the end were still to go.
    ending: Option<Ending>,
    /// The MCP rules' limits (the longest batch the plugins are handed).
    limits: messages::Limits,
    /// Where holds wait (`None`: nowhere; a hold then goes on at once).
    holds: Option<HoldRoom>,
    /// The message a plugin holds now, if one is.
    waiting: Option<Waiting>,
    done: bool,
}

impl InterceptedSse {
    /// Wraps an upstream SSE body; `session` must have begun its to-client phase.
    pub fn new(
        events: SseEvents<UpstreamBody>,
        session: Session,
        unanswered: Vec<RequestId>,
    ) -> Self {
        Self {
            events,
            session,
            unanswered,
            endpoint: None,
            first: None,
            observers: Observers::default(),
            closing: None,
            span: tracing::Span::none(),
            ending: None,
            limits: messages::Limits::default(),
            holds: None,
            waiting: None,
            done: false,
        }
    }

    /// Holds wait in `room` (the proxy's: listed on its admin API, counted on its
    /// metrics).
    pub(crate) fn with_holds(mut self, room: HoldRoom) -> Self {
        self.holds = Some(room);
        self
    }

    /// The MCP rules' limits (`ProxySettings::message_limits`).
    pub fn with_limits(mut self, limits: messages::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Rewrites the legacy transport's `endpoint` event (see `mcp::legacy`).
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

    /// Tells `observers` that the stream opened, then of the upstream's body as read
    /// (if they want it), every event's verdicts and the end of the stream.
    pub(crate) fn observed_by(mut self, mut observers: Observers) -> Self {
        if observers.wants_upstream_bytes() {
            self.events.keep_raw();
        }
        observers.stream_opened();
        self.observers = observers;
        self
    }

    /// Sends these messages (JSON-RPC errors for requests a plugin dropped from a
    /// batch) as events before anything from the upstream.
    pub fn with_answers_first(mut self, answered: Vec<Box<RawValue>>) -> Self {
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

    /// One upstream frame through the chain, appended to `out` as the client gets it.
    fn on_frame(&mut self, frame: sse::Frame, out: &mut BytesMut) {
        match frame {
            sse::Frame::Comment(text) => {
                self.observers.comment(&text);
                sse::encode_comment(&text, out);
            }
            sse::Frame::Event(mut event) => {
                let rewritten = self
                    .endpoint
                    .as_ref()
                    .is_some_and(|endpoint| endpoint.apply(&mut event));
                let judged = messages::to_client_or_hold(
                    &mut self.session,
                    event,
                    &mut self.unanswered,
                    &self.limits,
                );
                self.judged(judged, rewritten, out);
            }
        }
    }

    /// What the chain made of one event: sent (told to the observers, encoded into
    /// `out`), or held (the body waits; what comes after it joins `Waiting::behind`).
    fn judged(&mut self, judged: ToClient, rewritten: bool, out: &mut BytesMut) {
        match judged {
            ToClient::Sent(sent) => {
                self.observers.event(&Judged {
                    steps: self.session.steps(),
                    sent: sent.as_ref(),
                    rewritten,
                });
                self.session.clear_steps();
                if let Some(event) = sent {
                    sse::encode_event(&event, out);
                }
            }
            ToClient::Held(held) => {
                debug_assert!(self.waiting.is_none(), "one hold at a time per stream");
                let Some(room) = &self.holds else {
                    // No room to wait in (a body made without one): it goes on.
                    let judged = messages::resume_to_client(
                        &mut self.session,
                        held,
                        AfterHold::GoesOn,
                        &mut self.unanswered,
                    );
                    return self.judged(judged, rewritten, out);
                };
                let shown = room.shown(
                    &self.session,
                    &held.plugin,
                    &held.hold,
                    held.event.data_str(),
                );
                self.waiting = Some(Waiting {
                    wait: room.wait(&held.hold, shown),
                    held,
                    rewritten,
                    behind: VecDeque::new(),
                });
            }
        }
    }

    /// Polls the hold under way; when it ends, the held message goes on (or not) and
    /// the frames behind it follow, until all went out or another is held. True while
    /// a message is still held.
    fn poll_waiting(&mut self, cx: &mut Context<'_>, out: &mut BytesMut) -> bool {
        while let Some(waiting) = &mut self.waiting {
            let Poll::Ready(end) = waiting.wait.as_mut().poll(cx) else {
                return true;
            };
            let Waiting {
                held,
                rewritten,
                behind,
                ..
            } = self.waiting.take().expect("checked above");
            // The upstream was not read while the message waited: that was not its
            // silence.
            self.events.active();
            let judged = messages::resume_to_client(
                &mut self.session,
                held,
                after_hold(end),
                &mut self.unanswered,
            );
            self.judged(judged, rewritten, out);
            self.run_behind(behind, out);
        }
        false
    }

    /// Frames that waited behind a held message, one at a time (one of them may be held
    /// in turn; the rest then wait behind it).
    fn run_behind(&mut self, mut behind: VecDeque<sse::Frame>, out: &mut BytesMut) {
        while !behind.is_empty() {
            // Checked before each frame: the message resumed before these may have
            // been held again by a later plugin.
            if let Some(waiting) = &mut self.waiting {
                waiting.behind.extend(behind);
                return;
            }
            let frame = behind.pop_front().expect("not empty");
            self.on_frame(frame, out);
        }
    }

    /// Frames the upstream delivered together, through the chain together: runs of
    /// events that each are one message go to `Session::on_events` as one batch (one
    /// call per batch-capable plugin), everything else as in [`Self::on_frame`].
    fn on_frames(&mut self, frames: Vec<sse::Frame>, out: &mut BytesMut) {
        self.observe_reads();
        if let Some(waiting) = &mut self.waiting {
            // Behind a held message, everything waits.
            waiting.behind.extend(frames);
            return;
        }
        if frames.len() == 1 || self.session.may_hold() {
            // A chain that may hold goes one event at a time: what comes after a held
            // event must not pass the chain before it.
            self.run_behind(frames.into(), out);
            return;
        }
        // No plugin sees these events: skip the chain (same result, no conversions).
        let bypass = self.session.passes_everything();
        let mut run = Run::default();
        for frame in frames {
            let mut event = match frame {
                sse::Frame::Event(event) => event,
                comment @ sse::Frame::Comment(_) => {
                    self.flush_run(&mut run, out);
                    self.on_frame(comment, out);
                    continue;
                }
            };
            if !messages::is_single_message(&event) {
                self.flush_run(&mut run, out);
                self.on_frame(sse::Frame::Event(event), out);
                continue;
            }
            let rewritten = self
                .endpoint
                .as_ref()
                .is_some_and(|endpoint| endpoint.apply(&mut event));
            if bypass {
                let sent = messages::passed_through(event, &mut self.unanswered);
                self.observers.event(&Judged {
                    steps: &[],
                    sent: Some(&sent),
                    rewritten,
                });
                sse::encode_event(&sent, out);
            } else {
                run.events.push(event);
                run.rewritten.push(rewritten);
            }
        }
        self.flush_run(&mut run, out);
    }

    fn flush_run(&mut self, run: &mut Run, out: &mut BytesMut) {
        if run.events.is_empty() {
            return;
        }
        let events = std::mem::take(&mut run.events);
        let sent = messages::to_client_run(&mut self.session, events, &mut self.unanswered);
        for (i, (sent, rewritten)) in sent.into_iter().zip(run.rewritten.drain(..)).enumerate() {
            let steps = self
                .session
                .event_steps()
                .get(i)
                .map_or(&[][..], Vec::as_slice);
            self.observers.event(&Judged {
                steps,
                sent: sent.as_ref(),
                rewritten,
            });
            if let Some(event) = sent {
                sse::encode_event(&event, out);
            }
        }
    }

    /// Tells the observers what the upstream's body delivered so far, before the chain
    /// sees the events it completes (a tape's reader decodes the events again from it).
    fn observe_reads(&mut self) {
        if self.observers.wants_upstream_bytes() {
            for bytes in self.events.take_raw() {
                self.observers.upstream_bytes(&bytes);
            }
        }
    }

    /// The end of the upstream's stream: what is left to send (errors for waiting
    /// requests when it broke), `None` for nothing.
    fn finish(&mut self, ending: Ending) -> Option<Bytes> {
        self.done = true;
        self.observe_reads();
        match ending {
            Ending::Broken { reason, public } => {
                let _span = self.span.clone().entered();
                tracing::warn!(stream = self.stream_id(), error = %reason, "SSE stream from upstream ended with an error");
                self.observers.end(&StreamEnd::UpstreamFailed {
                    stage: UpstreamStage::Stream,
                    reason: &reason,
                });
                self.errors_for_unanswered(&public)
            }
            Ending::Complete => {
                self.session.end();
                self.observers.end(&StreamEnd::Complete);
                tracing::debug!(stream = self.stream_id(), "SSE stream ended");
                None
            }
        }
    }

    /// Ends the stream because the proxy shuts down: the session ends normally, waiting
    /// requests get errors, and the body ends (a clean end of stream for the client).
    fn close_for_shutdown(&mut self) -> Option<Bytes> {
        self.done = true;
        self.session.end();
        let _span = self.span.clone().entered();
        tracing::info!(stream = self.stream_id(), "stream ended by shutdown");
        self.observers.end(&StreamEnd::Shutdown);
        self.errors_for_unanswered("the proxy is shutting down")
    }

    /// Error events for every request still waiting, sent when the stream breaks.
    /// `reason` is safe to tell the client; the details are in the log line of the
    /// same stream id.
    fn errors_for_unanswered(&mut self, reason: &str) -> Option<Bytes> {
        if self.unanswered.is_empty() {
            return None;
        }
        let mut out = BytesMut::new();
        let message = format!(
            "sluice: response stream ended before the response: {reason} (request {})",
            self.stream_id()
        );
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
        if this.done {
            return Poll::Ready(None);
        }
        if this.waiting.is_some() {
            if this.must_close(cx) {
                return Poll::Ready(this.close_for_shutdown().map(|b| Ok(Frame::data(b))));
            }
            let mut out = BytesMut::new();
            let still = this.poll_waiting(cx, &mut out);
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
            }
            if still {
                // The upstream is not read meanwhile: what it sends waits in its socket.
                return Poll::Pending;
            }
        }
        if let Some(ending) = this.ending.take() {
            return Poll::Ready(this.finish(ending).map(|b| Ok(Frame::data(b))));
        }
        if this.must_close(cx) {
            return Poll::Ready(this.close_for_shutdown().map(|b| Ok(Frame::data(b))));
        }
        // Every event the upstream has already delivered goes out in one frame (one
        // write to the client); nothing waits for more to arrive. Bounded, so a fast
        // upstream cannot build a large buffer here.
        // Frames are gathered first so that events delivered together also pass the
        // chain together (see `on_frames`).
        let mut out = BytesMut::new();
        let mut gathered: Vec<sse::Frame> = Vec::new();
        // Bytes gathered (as encoded: `sse::frame_len`), so that large events are not
        // held 64 at a time: the output of one poll stays near BATCH_BYTES, whatever
        // the event size. Reserved in `out` before the frames go through the chain:
        // growing it per event would copy what is already encoded at each doubling.
        let mut gathered_bytes = 0;
        let ending = loop {
            match this.events.poll_next(cx) {
                Poll::Pending => break None,
                Poll::Ready(Some(Ok(frame))) => {
                    gathered_bytes += sse::frame_len(&frame);
                    gathered.push(frame);
                    if gathered.len() >= GATHER || out.len() + gathered_bytes >= BATCH_BYTES {
                        out.reserve(std::mem::take(&mut gathered_bytes));
                        this.on_frames(std::mem::take(&mut gathered), &mut out);
                        if out.len() >= BATCH_BYTES || this.waiting.is_some() {
                            break None;
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    // The proxy's own reasons (size limit, idle timeout) are safe to
                    // tell; a broken connection's text is the OS's, about the upstream.
                    let public = match &e {
                        StreamError::Body(_) => "the upstream's connection broke".to_string(),
                        StreamError::Decode(_) | StreamError::Idle(_) => e.to_string(),
                    };
                    break Some(Ending::Broken {
                        reason: crate::error_chain::ErrorChain(&e).to_string(),
                        public,
                    });
                }
                Poll::Ready(None) => break Some(Ending::Complete),
            }
        };
        if !gathered.is_empty() {
            out.reserve(gathered_bytes);
            this.on_frames(gathered, &mut out);
        }
        // A hold begun just now: poll its wait once, so that its end wakes the body.
        if this.waiting.is_some() && !this.poll_waiting(cx, &mut out) && out.is_empty() {
            cx.waker().wake_by_ref();
        }
        if this.waiting.is_some() {
            if let Some(ending) = ending {
                // Sent once the held message and those behind it have gone.
                this.ending = Some(ending);
            }
            return if out.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(Some(Ok(Frame::data(out.freeze()))))
            };
        }
        match ending {
            // Pending (the upstream's waker is registered) with nothing to send.
            None if out.is_empty() => return Poll::Pending,
            None => {}
            Some(ending) if out.is_empty() => {
                return Poll::Ready(this.finish(ending).map(|b| Ok(Frame::data(b))));
            }
            // Send what came before the end first.
            Some(ending) => this.ending = Some(ending),
        }
        Poll::Ready(Some(Ok(Frame::data(out.freeze()))))
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
            self.observers.end(&StreamEnd::ClientGone);
            tracing::debug!(
                stream = self.stream_id(),
                "client went away before the SSE stream ended"
            );
        }
    }
}
