//! The load generator's clients: N concurrent streams, each one connection, each
//! checked event by event (its own stream, in order, none missing) and timed from the
//! upstream's send timestamp to the moment its read returned.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};

use crate::upstream::now_ns;
use crate::wire::{self, Ask, Block, Checker, Splitter};

/// Where the streams go: `http://host:port/path`.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let addr = authority
            .parse()
            .map_err(|e| format!("{url}: the host must be an IP:port ({e})"))?;
        let path = if path.is_empty() { "/" } else { path };
        Ok(Self {
            addr,
            path: path.to_string(),
        })
    }
}

/// How one stream went.
#[derive(Default)]
pub struct StreamOutcome {
    pub checker: Checker,
    /// What the upstream's result said it sent (`None`: no result arrived).
    pub sent: Option<u64>,
    pub latencies_ns: Vec<u32>,
    pub error: Option<String>,
}

/// Connections being opened at once: a burst of 10 000 SYNs overflows the listen
/// backlog of any server, which would measure the kernel, not the proxy.
const CONNECTING_AT_ONCE: usize = 256;

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs one stream to its result. `ready` is counted once the first event arrived;
/// an idle stream then waits for `stop` instead of reading on.
async fn one_stream(
    target: &Target,
    ask: Ask,
    connecting: &Semaphore,
    ready: &AtomicU64,
    mut stop: watch::Receiver<bool>,
) -> StreamOutcome {
    let mut out = StreamOutcome {
        checker: Checker::new(ask.stream),
        ..StreamOutcome::default()
    };
    if let Err(e) = drive(target, &ask, connecting, ready, &mut stop, &mut out).await {
        out.error = Some(format!("stream {}: {e}", ask.stream));
    }
    out
}

async fn drive(
    target: &Target,
    ask: &Ask,
    connecting: &Semaphore,
    ready: &AtomicU64,
    stop: &mut watch::Receiver<bool>,
    out: &mut StreamOutcome,
) -> Result<(), String> {
    let permit = connecting.acquire().await.map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // Aborting the connection task closes the socket: how a client leaves.
    let _connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let request = Request::post(target.path.as_str())
        .header(HOST, target.addr.to_string())
        .header(CONTENT_TYPE, "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", format!("loadgen-{}", ask.stream))
        .body(Full::new(Bytes::from(wire::request_body(ask))))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    drop(permit);
    if response.status() != StatusCode::OK {
        return Err(format!("status {}", response.status()));
    }
    let mut body = response.into_body();
    let mut splitter = Splitter::default();
    let mut first = true;
    let record_latency = !ask.idle;
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = stop.wait_for(|s| *s), if ask.idle && !first => return Ok(()),
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let arrived = now_ns();
        let mut failure = None;
        splitter.feed(&data, |block| match wire::parse_block(block) {
            Block::Event { stream, seq, ts_ns } => {
                out.checker.event(stream, seq);
                if record_latency {
                    let ns = arrived.saturating_sub(ts_ns);
                    out.latencies_ns.push(u32::try_from(ns).unwrap_or(u32::MAX));
                }
            }
            Block::Result { sent } => out.sent = Some(sent),
            Block::Error(text) => failure = Some(format!("JSON-RPC error: {text}")),
            Block::Other => {}
        });
        if let Some(failure) = failure {
            return Err(failure);
        }
        if first && out.checker.received > 0 {
            first = false;
            ready.fetch_add(1, Relaxed);
        }
    }
    match out.sent {
        Some(sent) => {
            out.checker.finish(sent);
            Ok(())
        }
        None => Err(format!(
            "ended without its result after {} events",
            out.checker.received
        )),
    }
}

/// Everything a run of N streams saw.
pub struct RunOutcome {
    pub streams: Vec<StreamOutcome>,
    pub elapsed: Duration,
}

/// Opens `streams` streams asking for `template` (with their own stream numbers) and
/// waits for all of them to end.
pub async fn run(target: &Target, streams: u64, template: &Ask) -> RunOutcome {
    let (_stop_tx, stop) = watch::channel(false);
    let connecting = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let ready = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|stream| {
            let ask = Ask {
                stream,
                ..template.clone()
            };
            let (target, connecting, ready, stop) = (
                target.clone(),
                connecting.clone(),
                ready.clone(),
                stop.clone(),
            );
            tokio::spawn(async move { one_stream(&target, ask, &connecting, &ready, stop).await })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.expect("a stream task does not panic"));
    }
    RunOutcome {
        streams: outcomes,
        elapsed: started.elapsed(),
    }
}

/// What holding idle streams cost.
pub struct IdleOutcome {
    pub opened: u64,
    pub errors: Vec<String>,
    pub rss_before: u64,
    pub rss_held: u64,
    pub rss_after: u64,
}

/// Opens `streams` idle streams (one event each, then quiet), waits until every one has
/// its event, lets the proxy settle, reads its memory, then closes them all.
pub async fn idle(
    target: &Target,
    streams: u64,
    size: usize,
    rss: impl Fn() -> u64,
    settle: Duration,
) -> IdleOutcome {
    let rss_before = rss();
    let (stop_tx, stop) = watch::channel(false);
    let connecting = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let ready = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..streams)
        .map(|stream| {
            let ask = Ask {
                stream,
                size,
                events: 0,
                duration_ms: 0,
                rate: 0,
                tick_ms: 0,
                idle: true,
            };
            let (target, connecting, ready, stop) = (
                target.clone(),
                connecting.clone(),
                ready.clone(),
                stop.clone(),
            );
            tokio::spawn(async move { one_stream(&target, ask, &connecting, &ready, stop).await })
        })
        .collect();
    // Every stream either gets its first event or fails (and its task ends).
    loop {
        let finished = tasks.iter().filter(|t| t.is_finished()).count() as u64;
        if ready.load(Relaxed) + finished >= streams {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(settle).await;
    let rss_held = rss();
    let opened = ready.load(Relaxed);
    let _ = stop_tx.send(true);
    let mut errors = Vec::new();
    for task in tasks {
        if let Some(e) = task.await.expect("a stream task does not panic").error {
            errors.push(e);
        }
    }
    tokio::time::sleep(settle).await;
    IdleOutcome {
        opened,
        errors,
        rss_before,
        rss_held,
        rss_after: rss(),
    }
}
