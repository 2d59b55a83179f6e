//! The load generator's upstream: answers each loadgen `tools/call` with an SSE stream
//! of numbered, timestamped events, as fast as the reader takes them or at a set rate.
//!
//! It has to be cheaper than anything it measures: events are written from a template
//! into frames of up to [`FRAME_BYTES`], one clock read per frame, and the body is
//! produced only when hyper can write (the reader's pace is the upstream's pace).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::wire::{self, Ask};

/// Events produced together go out in one frame of at most this many bytes (or one
/// event, if bigger), as a busy server's writes would.
pub const FRAME_BYTES: usize = 64 << 10;

/// Nanoseconds since the Unix epoch: the clock both processes share.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Serves until the process ends.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service_fn(reply))
                .await;
        });
    }
}

/// Binds `addr` and serves in the background; returns the bound address.
pub async fn spawn(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(serve(listener));
    Ok(bound)
}

type Body = BoxBody<Bytes, Infallible>;

async fn reply(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let Some((id, ask)) = wire::parse_request(&body) else {
        let response = Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Full::new(Bytes::from_static(b"not a loadgen request\n")).boxed())
            .expect("static response");
        return Ok(response);
    };
    let tick = (ask.rate > 0).then(|| {
        let period = (Duration::from_secs(1) / u32::try_from(ask.rate).unwrap_or(u32::MAX))
            .max(Duration::from_millis(ask.tick_ms.max(1)));
        // Each stream ticks at its own phase, so N streams make an even load rather
        // than N bursts at the same instant (which would measure the burst, not the
        // path: the last event of a burst waits for all the others).
        let phase = period.mul_f64((ask.stream.wrapping_mul(7919) % 1000) as f64 / 1000.0);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    });
    let started = Instant::now();
    let state = Generator {
        deadline: (ask.duration_ms > 0).then(|| started + Duration::from_millis(ask.duration_ms)),
        ask,
        id,
        seq: 0,
        started,
        tick,
        done: false,
        buf: BytesMut::with_capacity(2 * FRAME_BYTES),
    };
    let body = StreamBody::new(futures_util::stream::unfold(state, Generator::next_frame));
    Ok(Response::builder()
        .header(CONTENT_TYPE, "text/event-stream")
        .header("cache-control", "no-cache")
        .body(body.boxed())
        .expect("static headers"))
}

struct Generator {
    ask: Ask,
    id: Value,
    seq: u64,
    started: Instant,
    deadline: Option<Instant>,
    tick: Option<tokio::time::Interval>,
    done: bool,
    /// Where frames are written: each is split off and frozen, and the room comes back
    /// once hyper has written the frame and dropped it, so the generator writes into
    /// memory it has used before. A fresh allocation per frame is returned to the
    /// kernel when freed (glibc trims the top of the heap) and faults its pages in
    /// again on the next frame: at 16 KiB events, three page faults an event, and
    /// whether a run hit that depended on the heap's layout, which made runs differ
    /// by 10%.
    buf: BytesMut,
}

impl Generator {
    fn count_reached(&self) -> bool {
        self.ask.events > 0 && self.seq >= self.ask.events
    }

    fn time_up(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// How many events may go now: all the budget allows when unlimited, else those
    /// due by the rate since the start.
    fn due(&self) -> u64 {
        let budget = if self.ask.events > 0 {
            self.ask.events - self.seq
        } else {
            u64::MAX
        };
        if self.ask.rate == 0 {
            return budget;
        }
        let elapsed = self.started.elapsed().as_nanos();
        let due = u64::try_from(elapsed * u128::from(self.ask.rate) / 1_000_000_000)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        due.saturating_sub(self.seq).min(budget)
    }

    async fn next_frame(mut self) -> Option<(Result<Frame<Bytes>, Infallible>, Self)> {
        if self.done {
            return None;
        }
        if self.ask.idle && self.seq > 0 {
            // Held open and quiet; the client leaving drops this body.
            std::future::pending::<()>().await;
        }
        loop {
            if self.count_reached() || self.time_up() {
                self.done = true;
                wire::push_result(&mut self.buf, &self.id, self.seq);
                let frame = self.buf.split().freeze();
                return Some((Ok(Frame::data(frame)), self));
            }
            let due = if self.ask.idle { 1 } else { self.due() };
            if due == 0 {
                if let Some(tick) = &mut self.tick {
                    tick.tick().await;
                }
                continue;
            }
            let per_event = self.ask.size + 160;
            let fit = (FRAME_BYTES / per_event).max(1) as u64;
            let n = due.min(fit);
            self.buf.reserve(per_event * n as usize);
            let ts = now_ns();
            for _ in 0..n {
                wire::push_event(&mut self.buf, self.ask.stream, self.seq, ts, self.ask.size);
                self.seq += 1;
            }
            let frame = self.buf.split().freeze();
            return Some((Ok(Frame::data(frame)), self));
        }
    }
}
