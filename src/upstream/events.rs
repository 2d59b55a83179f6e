//! An upstream SSE body as a sequence of decoded frames, through a bounded buffer.
//!
//! The body is only read when the buffer is empty, so a slow client slows the reads
//! from the upstream (TCP back-pressure) instead of growing a queue: at most one read's
//! worth of frames is ever held here.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use tokio::time::{Instant, Sleep};

use crate::sse::{DecodeError, Decoder, Frame};

/// Why a stream of events ended early.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The upstream sent something the decoder refuses (an event over the size limit).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The connection broke mid-stream.
    #[error("upstream connection failed mid-stream: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Nothing arrived for longer than the idle timeout.
    #[error("upstream sent nothing for {0:?} (--upstream-idle-timeout)")]
    Idle(Duration),
}

/// The idle timeout: a timer re-armed lazily from the last activity, so a busy stream
/// pays a clock read per read, not a timer update.
struct Idle {
    after: Duration,
    last_activity: Instant,
    timer: Pin<Box<Sleep>>,
}

/// Decoded frames of one upstream SSE response.
pub struct SseEvents<B> {
    body: Pin<Box<B>>,
    decoder: Decoder,
    buffered: VecDeque<Frame>,
    finished: bool,
    /// An error found while decoding a read, given out after the frames that read
    /// completed before it: how the upstream's bytes were split must not decide what
    /// reaches the client.
    failed: Option<StreamError>,
    idle: Option<Idle>,
    /// With [`SseEvents::keep_raw`]: the body's bytes as read, until taken.
    raw: Option<Vec<Bytes>>,
}

impl<B> SseEvents<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Decodes `body`, refusing events larger than `max_event_bytes`.
    pub fn new(body: B, max_event_bytes: usize) -> Self {
        Self {
            body: Box::pin(body),
            decoder: Decoder::new(max_event_bytes),
            buffered: VecDeque::new(),
            finished: false,
            failed: None,
            idle: None,
            raw: None,
        }
    }

    /// Keeps every read of the body (a reference, not a copy) for
    /// [`SseEvents::take_raw`]: a recorded stream's tape holds the body as it was.
    pub fn keep_raw(&mut self) {
        self.raw.get_or_insert_with(Vec::new);
    }

    /// The reads kept since the last call, in order. Every frame given out so far
    /// came from them or earlier ones.
    pub fn take_raw(&mut self) -> impl Iterator<Item = Bytes> + '_ {
        self.raw.iter_mut().flat_map(|raw| raw.drain(..))
    }

    /// Ends the stream with [`StreamError::Idle`] when the upstream sends nothing (not
    /// even a keep-alive comment) for `after` while the proxy waits for it. Time spent
    /// waiting for a slow client does not count.
    pub fn with_idle_timeout(mut self, after: Duration) -> Self {
        let now = Instant::now();
        self.idle = Some(Idle {
            after,
            last_activity: now,
            timer: Box::pin(tokio::time::sleep_until(now + after)),
        });
        self
    }

    /// Restarts the idle clock: the consumer is back for more after a pause of its own
    /// (a slow client, or a plugin's hold), so waiting on the upstream starts now.
    pub(crate) fn active(&mut self) {
        if let Some(idle) = &mut self.idle {
            idle.last_activity = Instant::now();
        }
    }

    /// Whether the upstream has been silent past the idle timeout (and arms the timer
    /// to wake this task when it will be).
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> Option<Duration> {
        let idle = self.idle.as_mut()?;
        let deadline = idle.last_activity + idle.after;
        if idle.timer.deadline() != deadline {
            idle.timer.as_mut().reset(deadline);
        }
        idle.timer
            .as_mut()
            .poll(cx)
            .is_ready()
            .then_some(idle.after)
    }

    /// The next frame; `None` once the upstream has ended the body.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame, StreamError>>> {
        loop {
            if let Some(frame) = self.buffered.pop_front() {
                if self.buffered.is_empty() {
                    // The consumer is back for more: waiting on the upstream starts now.
                    self.active();
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            if let Some(error) = self.failed.take() {
                return Poll::Ready(Some(Err(error)));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            let Poll::Ready(polled) = self.body.as_mut().poll_frame(cx) else {
                if let Some(after) = self.idle_expired(cx) {
                    self.finished = true;
                    return Poll::Ready(Some(Err(StreamError::Idle(after))));
                }
                return Poll::Pending;
            };
            self.active();
            match polled {
                Some(Ok(frame)) => {
                    // Trailers carry no events.
                    if let Ok(data) = frame.into_data()
                        && let Err(e) = {
                            if let Some(raw) = &mut self.raw {
                                raw.push(data.clone());
                            }
                            self.decoder.decode(&data, &mut self.buffered)
                        }
                    {
                        // The frames completed before the error still go out first.
                        self.finished = true;
                        self.failed = Some(e.into());
                    }
                }
                Some(Err(e)) => {
                    self.finished = true;
                    return Poll::Ready(Some(Err(StreamError::Body(e.into()))));
                }
                None => {
                    self.finished = true;
                    if self.decoder.finish() {
                        tracing::debug!(
                            "upstream ended in the middle of an event; the incomplete event was discarded"
                        );
                    }
                }
            }
        }
    }

    /// The next frame (async form of [`SseEvents::poll_next`]).
    pub async fn next(&mut self) -> Option<Result<Frame, StreamError>> {
        poll_fn(|cx| self.poll_next(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::Event;
    use futures_util::StreamExt;
    use http_body_util::StreamBody;

    fn body(
        chunks: Vec<Result<&'static [u8], &'static str>>,
    ) -> impl Body<Data = Bytes, Error = String> {
        let frames = chunks.into_iter().map(|c| {
            c.map(|b| http_body::Frame::data(Bytes::from_static(b)))
                .map_err(str::to_string)
        });
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn events_split_across_reads_are_reassembled() {
        let mut events = SseEvents::new(
            body(vec![Ok(b"data: a"), Ok(b"b\r"), Ok(b"\n\r\n: hi\n")]),
            1024,
        );
        let first = events.next().await.unwrap().unwrap();
        assert_eq!(first, Frame::Event(Event::message("ab")));
        assert_eq!(
            events.next().await.unwrap().unwrap(),
            Frame::Comment(" hi".into())
        );
        assert!(events.next().await.is_none());
    }

    #[tokio::test]
    async fn a_broken_connection_ends_the_stream_with_an_error() {
        let mut events = SseEvents::new(body(vec![Ok(b"data: a\n\n"), Err("reset")]), 1024);
        assert!(events.next().await.unwrap().is_ok());
        assert!(
            matches!(events.next().await, Some(Err(StreamError::Body(m))) if m.to_string().contains("reset"))
        );
        assert!(events.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_upstream_ends_the_stream_after_the_idle_timeout() {
        let frames = futures_util::stream::iter(vec![Ok::<_, String>(http_body::Frame::data(
            Bytes::from_static(b"data: a\n\n"),
        ))])
        .chain(futures_util::stream::pending());
        let mut events = SseEvents::new(StreamBody::new(frames), 1024)
            .with_idle_timeout(Duration::from_secs(30));
        assert!(events.next().await.unwrap().is_ok());
        let started = Instant::now();
        assert!(matches!(
            events.next().await,
            Some(Err(StreamError::Idle(after))) if after == Duration::from_secs(30)
        ));
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert!(events.next().await.is_none());
    }

    #[tokio::test]
    async fn events_before_an_error_in_the_same_read_are_not_lost() {
        // Found by the sse_decoder fuzz target: one read holding a good event and then
        // an oversized one used to lose the good one (and two reads kept it).
        let mut events = SseEvents::new(body(vec![Ok(b"data: a\n\ndata: 0123456789\n\n")]), 8);
        assert_eq!(
            events.next().await.unwrap().unwrap(),
            Frame::Event(Event::message("a"))
        );
        assert!(matches!(
            events.next().await,
            Some(Err(StreamError::Decode(_)))
        ));
        assert!(events.next().await.is_none());
    }

    #[tokio::test]
    async fn an_oversized_event_ends_the_stream_with_an_error() {
        let mut events = SseEvents::new(body(vec![Ok(b"data: 0123456789\n\n")]), 8);
        assert!(matches!(
            events.next().await,
            Some(Err(StreamError::Decode(_)))
        ));
        assert!(events.next().await.is_none());
    }
}
