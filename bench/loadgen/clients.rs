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
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};

use crate::upstream::now_ns;
use crate::wire::{self, Ask, Block, Checker, Splitter};

/// Where the streams go: `http://host:port/path`.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    /// HTTP/2 (cleartext, prior knowledge) with this many streams per connection;
    /// `None`: HTTP/1.1, one connection per stream, as MCP clients do. HTTP/2 lets one
    /// process hold 10 000 streams under a 20 000 open-file limit.
    pub h2_streams_per_connection: Option<usize>,
}

type H2Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

/// The HTTP/2 connections of a run (none for HTTP/1.1), and their tasks.
struct H2Pool {
    senders: Vec<H2Sender>,
    per_connection: usize,
    _tasks: Vec<AbortOnDrop>,
}

impl H2Pool {
    async fn open(target: &Target, streams: u64) -> Result<Self, String> {
        let Some(per_connection) = target.h2_streams_per_connection else {
            return Ok(Self {
                senders: Vec::new(),
                per_connection: 1,
                _tasks: Vec::new(),
            });
        };
        let per_connection = per_connection.max(1);
        let count = (streams as usize).div_ceil(per_connection);
        let (mut senders, mut tasks) = (Vec::new(), Vec::new());
        for _ in 0..count {
            let tcp = TcpStream::connect(target.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                    .await
                    .map_err(|e| format!("h2 handshake: {e}"))?;
            tasks.push(AbortOnDrop(tokio::spawn(async move {
                let _ = connection.await;
            })));
            senders.push(sender);
        }
        Ok(Self {
            senders,
            per_connection,
            _tasks: tasks,
        })
    }

    fn sender_for(&self, stream: u64) -> Option<H2Sender> {
        self.senders
            .get(stream as usize / self.per_connection)
            .cloned()
    }
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
            h2_streams_per_connection: None,
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

/// A task aborted when its handle is dropped (a connection's driver, say).
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs one stream to its result. `ready` is counted once the first event arrived;
/// an idle stream then waits for `stop` instead of reading on.
async fn one_stream(
    target: &Target,
    h2: Option<H2Sender>,
    ask: Ask,
    connecting: &Semaphore,
    ready: &AtomicU64,
    mut stop: watch::Receiver<bool>,
) -> StreamOutcome {
    let mut out = StreamOutcome {
        checker: Checker::new(ask.stream),
        ..StreamOutcome::default()
    };
    if let Err(e) = drive(target, h2, &ask, connecting, ready, &mut stop, &mut out).await {
        out.error = Some(format!("stream {}: {e}", ask.stream));
    }
    out
}

async fn drive(
    target: &Target,
    h2: Option<H2Sender>,
    ask: &Ask,
    connecting: &Semaphore,
    ready: &AtomicU64,
    stop: &mut watch::Receiver<bool>,
    out: &mut StreamOutcome,
) -> Result<(), String> {
    let permit = connecting.acquire().await.map_err(|e| e.to_string())?;
    // HTTP/2 wants the absolute form (:scheme, :authority); HTTP/1.1 the path.
    let uri = match h2 {
        Some(_) => format!("http://{}{}", target.addr, target.path),
        None => target.path.clone(),
    };
    let request = Request::post(uri)
        .header(HOST, target.addr.to_string())
        .header(CONTENT_TYPE, "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", format!("loadgen-{}", ask.stream))
        .body(Full::new(Bytes::from(wire::request_body(ask))))
        .map_err(|e| e.to_string())?;
    // Dropping the connection task (HTTP/1.1) closes the socket, dropping the body
    // (HTTP/2) resets the stream: how a client leaves.
    let mut _connection = None;
    let response = match h2 {
        Some(mut sender) => {
            sender.ready().await.map_err(|e| format!("h2: {e}"))?;
            sender.send_request(request).await
        }
        None => {
            let tcp = TcpStream::connect(target.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            _connection = Some(AbortOnDrop(tokio::spawn(async move {
                let _ = connection.await;
            })));
            sender.send_request(request).await
        }
    }
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

/// Starts `streams` stream tasks asking for `template`, each with its own stream
/// number (and its HTTP/2 connection from `pool`, if any).
fn spawn_streams(
    target: &Target,
    pool: &H2Pool,
    streams: u64,
    template: &Ask,
    ready: &Arc<AtomicU64>,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<StreamOutcome>> {
    let connecting = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    (0..streams)
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
            let h2 = pool.sender_for(stream);
            tokio::spawn(
                async move { one_stream(&target, h2, ask, &connecting, &ready, stop).await },
            )
        })
        .collect()
}

/// Everything a run of N streams saw.
pub struct RunOutcome {
    pub streams: Vec<StreamOutcome>,
    pub elapsed: Duration,
}

/// Opens `streams` streams asking for `template` (with their own stream numbers) and
/// waits for all of them to end.
pub async fn run(target: &Target, streams: u64, template: &Ask) -> RunOutcome {
    let started = Instant::now();
    let pool = match H2Pool::open(target, streams).await {
        Ok(pool) => pool,
        Err(e) => {
            return RunOutcome {
                streams: vec![StreamOutcome {
                    error: Some(e),
                    ..StreamOutcome::default()
                }],
                elapsed: started.elapsed(),
            };
        }
    };
    let (_stop_tx, stop) = watch::channel(false);
    let ready = Arc::new(AtomicU64::new(0));
    let tasks = spawn_streams(target, &pool, streams, template, &ready, &stop);
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
    let pool = match H2Pool::open(target, streams).await {
        Ok(pool) => pool,
        Err(e) => {
            return IdleOutcome {
                opened: 0,
                errors: vec![e],
                rss_before,
                rss_held: rss(),
                rss_after: rss(),
            };
        }
    };
    let (stop_tx, stop) = watch::channel(false);
    let ready = Arc::new(AtomicU64::new(0));
    let template = Ask {
        stream: 0,
        size,
        events: 0,
        duration_ms: 0,
        rate: 0,
        tick_ms: 0,
        idle: true,
    };
    let tasks = spawn_streams(target, &pool, streams, &template, &ready, &stop);
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
