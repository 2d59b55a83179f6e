//! Soak test of the sluice binary: many long SSE streams through a plugin chain for a
//! long time, with chain reloads, checking that nothing is lost, reordered, mixed up
//! or leaked. `ops/soak.sh` runs it with the figures of docs/operations.md.
//!
//! ```sh
//! cargo run --release --example soak -- --sluice target/release/sluice \
//!     [--streams 1000] [--minutes 10] [--reload-secs 60] [--stream-secs 120] \
//!     -- --plugin plugins/dist/redact.wasm --plugin-config '{"patterns":["sk-live-[a-z0-9]+"]}' \
//!        --plugin plugins/dist/dropper.wasm --plugin-config '{"methods":["notifications/progress"]}'
//! ```
//!
//! The tool is the upstream and the clients at once, so it knows exactly what was sent
//! and what should arrive. Its upstream answers each POST with an SSE stream of one
//! 256-byte JSON-RPC notification per `--rate-ms`, numbered by `seq`: every tenth is a
//! `notifications/progress` (the dropper must remove it), every tenth + 5 carries a
//! secret (the redactor must mask it). A real MCP server cannot hold 1 000 streams on a
//! small machine; this upstream costs a timer per stream.
//!
//! Streams are not held forever by default: each one asks for a random length around
//! `--stream-secs`, ends with its JSON-RPC result, and its client opens a new one at
//! once. Concurrency stays at `--streams`, but sluice also creates and frees plugin
//! instances all the time and new streams start on every reloaded chain generation,
//! which is where leaks would show. `--stream-secs 0` holds each stream for the whole run.
//!
//! At the end the upstream goes quiet, the tool waits until everything sent has
//! arrived, then the clients drop their connections: sluice must then report no open
//! stream and no live plugin instance, and must have cancelled every upstream request.
//! Exit code 1 if any check fails.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const EVENT_BYTES: usize = 256;
const SECRET: &str = "sk-live-abc123";

#[derive(Parser, Debug)]
#[command(about = "Soak test: many SSE streams through sluice, with reloads")]
struct Args {
    /// The sluice binary (build it with --release for meaningful figures).
    #[arg(long, default_value = "target/release/sluice")]
    sluice: PathBuf,
    /// Concurrent SSE streams.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// How long to hold the load.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Reload the chain (POST /admin/reload) this often; 0: never.
    #[arg(long, default_value_t = 60)]
    reload_secs: u64,
    /// Print a sample row this often.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// Mean stream length (each is uniform in [0.5, 1.5] times this); 0: whole run.
    #[arg(long, default_value_t = 120)]
    stream_secs: u64,
    /// One event per stream this often.
    #[arg(long, default_value_t = 1000)]
    rate_ms: u64,
    /// Open the streams over this many seconds rather than all at once.
    #[arg(long, default_value_t = 10)]
    ramp_secs: u64,
    /// Where sluice's own log goes.
    #[arg(long, default_value = "sluice-soak.log")]
    log: PathBuf,
    /// Arguments for sluice (the chain); --upstream, --listen, --admin-listen and
    /// --no-watch are added.
    #[arg(last = true)]
    sluice_args: Vec<String>,
}

/// What the upstream sent and the clients saw, shared by every task.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    sent_progress: AtomicU64,
    upstream_open: AtomicU64,
    received: AtomicU64,
    redacted: AtomicU64,
    streams_opened: AtomicU64,
    streams_completed: AtomicU64,
    clients_open: AtomicU64,
    // Failures; each must stay 0.
    out_of_order: AtomicU64,
    unredacted: AtomicU64,
    undropped: AtomicU64,
    cross_talk: AtomicU64,
    stream_errors: AtomicU64,
    reconnects: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_refused: AtomicU64,
    first_errors: Mutex<Vec<String>>,
    reload_ms: Mutex<Vec<u64>>,
}

impl Counters {
    fn error(&self, message: String) {
        let mut first = self.first_errors.lock().unwrap();
        if first.len() < 10 {
            first.push(message);
        }
    }
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Relaxed)
}

// ---------------------------------------------------------------------------------
// The upstream

/// One notification of exactly EVENT_BYTES bytes, so the figures are per known size.
fn notification(stream: u64, seq: u64) -> String {
    let build = |pad: &str| {
        if seq.is_multiple_of(10) {
            json!({"jsonrpc":"2.0","method":"notifications/progress",
                   "params":{"progressToken":format!("soak-{stream}"),"progress":seq,
                             "stream":stream,"seq":seq,"pad":pad}})
        } else {
            let text = if seq % 10 == 5 {
                format!("the key is {SECRET}")
            } else {
                "all quiet".into()
            };
            json!({"jsonrpc":"2.0","method":"notifications/message",
                   "params":{"level":"info","logger":"soak","stream":stream,"seq":seq,
                             "data":text,"pad":pad}})
        }
        .to_string()
    };
    let short = build("");
    build(&"x".repeat(EVENT_BYTES.saturating_sub(short.len())))
}

/// Decrements the upstream's open-stream count however the body ends (finished, or
/// dropped because sluice cancelled the request).
struct OpenGuard(Arc<Counters>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.upstream_open.fetch_sub(1, Relaxed);
    }
}

struct UpstreamStream {
    id: Value,
    stream: u64,
    events: u64,
    seq: u64,
    tick: tokio::time::Interval,
    quiet: watch::Receiver<bool>,
    counters: Arc<Counters>,
    _open: OpenGuard,
    done: bool,
}

async fn next_frame(
    mut s: UpstreamStream,
) -> Option<(Result<Frame<Bytes>, Infallible>, UpstreamStream)> {
    if s.done {
        return None;
    }
    if s.events > 0 && s.seq == s.events {
        s.done = true;
        let result = json!({"jsonrpc":"2.0","id":s.id,
            "result":{"content":[{"type":"text","text":format!("sent {}", s.seq)}]}});
        return Some((
            Ok(Frame::data(Bytes::from(format!("data: {result}\n\n")))),
            s,
        ));
    }
    let quiet = tokio::select! {
        _ = s.tick.tick() => false,
        quiet = s.quiet.wait_for(|quiet| *quiet) => quiet.is_ok(),
    };
    if quiet || *s.quiet.borrow() {
        // Quiet: keep the stream open, send nothing more.
        std::future::pending::<()>().await;
    }
    s.seq += 1;
    s.counters.sent.fetch_add(1, Relaxed);
    if s.seq.is_multiple_of(10) {
        s.counters.sent_progress.fetch_add(1, Relaxed);
    }
    let frame = format!("id: {}\ndata: {}\n\n", s.seq, notification(s.stream, s.seq));
    Some((Ok(Frame::data(Bytes::from(frame))), s))
}

async fn upstream_reply(
    request: Request<Incoming>,
    rate: Duration,
    quiet: watch::Receiver<bool>,
    counters: Arc<Counters>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let message: Value = serde_json::from_slice(&body).unwrap_or_default();
    let arguments = &message["params"]["arguments"];
    let (Some(stream), Some(events)) = (arguments["stream"].as_u64(), arguments["events"].as_u64())
    else {
        let response = Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Full::new(Bytes::from_static(b"not a soak request")).boxed())
            .unwrap();
        return Ok(response);
    };
    counters.upstream_open.fetch_add(1, Relaxed);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + rate, rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = UpstreamStream {
        id: message["id"].clone(),
        stream,
        events,
        seq: 0,
        tick,
        quiet,
        _open: OpenGuard(counters.clone()),
        counters,
        done: false,
    };
    let body = StreamBody::new(futures_util::stream::unfold(state, next_frame));
    Ok(Response::builder()
        .header(CONTENT_TYPE, "text/event-stream")
        .header("cache-control", "no-cache")
        .body(body.boxed())
        .unwrap())
}

async fn spawn_upstream(
    rate: Duration,
    quiet: watch::Receiver<bool>,
    counters: Arc<Counters>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the upstream");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (quiet, counters) = (quiet.clone(), counters.clone());
            tokio::spawn(async move {
                let service =
                    service_fn(move |r| upstream_reply(r, rate, quiet.clone(), counters.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------
// The clients

/// xorshift: stream lengths only need to be spread, not random in any strong sense.
fn spread(seed: u64) -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// What one client expects next on its stream: seqs in order, none missing, minus the
/// progress notifications the dropper removes.
struct Expect {
    stream: u64,
    next: u64,
}

impl Expect {
    fn advance(&mut self) {
        self.next += 1;
        if self.next.is_multiple_of(10) {
            self.next += 1;
        }
    }

    /// Checks one message; returns Some(sent) for the final result.
    fn check(&mut self, data: &str, c: &Counters) -> Result<Option<u64>, String> {
        let message: Value =
            serde_json::from_str(data).map_err(|e| format!("bad JSON from sluice: {e}"))?;
        if let Some(error) = message.get("error") {
            return Err(format!("stream {}: JSON-RPC error {error}", self.stream));
        }
        if let Some(result) = message.get("result") {
            let text = result["content"][0]["text"].as_str().unwrap_or_default();
            return Ok(Some(text.trim_start_matches("sent ").parse().unwrap_or(0)));
        }
        let params = &message["params"];
        let (stream, seq) = (
            params["stream"].as_u64().unwrap_or(0),
            params["seq"].as_u64().unwrap_or(0),
        );
        if stream != self.stream {
            c.cross_talk.fetch_add(1, Relaxed);
            c.error(format!(
                "stream {} got an event of stream {stream}",
                self.stream
            ));
        }
        if message["method"] == "notifications/progress" {
            c.undropped.fetch_add(1, Relaxed);
            c.error(format!("stream {stream} seq {seq}: progress not dropped"));
        }
        if seq != self.next {
            c.out_of_order.fetch_add(1, Relaxed);
            c.error(format!(
                "stream {stream}: seq {seq}, expected {}",
                self.next
            ));
        }
        if seq % 10 == 5 {
            let text = params["data"].as_str().unwrap_or_default();
            if text.contains(SECRET) || !text.contains("[REDACTED]") {
                c.unredacted.fetch_add(1, Relaxed);
                c.error(format!("stream {stream} seq {seq}: not redacted: {text}"));
            } else {
                c.redacted.fetch_add(1, Relaxed);
            }
        }
        c.received.fetch_add(1, Relaxed);
        self.next = seq;
        self.advance();
        Ok(None)
    }
}

enum End {
    Completed,
    Stopped,
}

/// One stream, from the POST to its result (or to the stop signal).
async fn one_stream(
    proxy: SocketAddr,
    stream: u64,
    events: u64,
    stop: &mut watch::Receiver<bool>,
    c: &Counters,
) -> Result<End, String> {
    let tcp = TcpStream::connect(proxy)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // Aborted on return: that closes the socket, which is how a client "goes away".
    let connection = AbortOnDrop(tokio::spawn(connection));
    let body = json!({"jsonrpc":"2.0","id":stream,"method":"tools/call",
        "params":{"name":"soak","arguments":{"stream":stream,"events":events}}});
    let request = Request::post("/mcp")
        .header(HOST, proxy.to_string())
        .header(CONTENT_TYPE, "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", format!("soak-{stream}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    if response.status() != StatusCode::OK {
        return Err(format!("status {}", response.status()));
    }
    let mut body = response.into_body();
    let mut expect = Expect { stream, next: 1 };
    let mut buffer: Vec<u8> = Vec::new();
    let mut result = None;
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = stop.wait_for(|stop| *stop) => return Ok(End::Stopped),
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| format!("stream {stream}: body: {e}"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buffer.extend_from_slice(&data);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buffer.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&block);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if data.is_empty() {
                continue; // an id-only block (a dropped event) or a comment
            }
            if let Some(sent) = expect.check(&data.join("\n"), c)? {
                result = Some(sent);
            }
        }
    }
    drop(connection);
    match result {
        Some(sent) if expect.next > sent => Ok(End::Completed),
        Some(sent) => Err(format!(
            "stream {stream}: result says {sent} sent, next expected {}",
            expect.next
        )),
        None => Err(format!(
            "stream {stream}: ended without its result after seq {}",
            expect.next - 1
        )),
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn client(
    slot: usize,
    args: Arc<Args>,
    proxy: SocketAddr,
    mut stop: watch::Receiver<bool>,
    c: Arc<Counters>,
    keys: Arc<AtomicU64>,
) {
    let per_sec = 1000 / args.rate_ms.max(1);
    loop {
        if *stop.borrow() {
            return;
        }
        let stream = keys.fetch_add(1, Relaxed);
        let events = match args.stream_secs {
            0 => 0,
            secs => (secs / 2 + spread(stream) % (secs + 1)) * per_sec.max(1),
        };
        c.streams_opened.fetch_add(1, Relaxed);
        c.clients_open.fetch_add(1, Relaxed);
        let outcome = one_stream(proxy, stream, events, &mut stop, &c).await;
        c.clients_open.fetch_sub(1, Relaxed);
        match outcome {
            Ok(End::Completed) => {
                c.streams_completed.fetch_add(1, Relaxed);
            }
            Ok(End::Stopped) => return,
            Err(message) => {
                c.stream_errors.fetch_add(1, Relaxed);
                c.error(format!("slot {slot}: {message}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                c.reconnects.fetch_add(1, Relaxed);
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// sluice, its admin API and /proc

async fn http(addr: SocketAddr, method: &str, path: &str) -> Result<(StatusCode, String), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    let _connection = AbortOnDrop(tokio::spawn(connection));
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, addr.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Sum of the series named `key` (exactly, or `key{...}` when key has no labels).
fn series(metrics: &str, key: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter(|(name, _)| {
            *name == key
                || (!key.contains('{')
                    && name.starts_with(key)
                    && name[key.len()..].starts_with('{'))
        })
        .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
        .fold(0.0, |sum, value| sum + value)
}

struct Proc {
    pid: u32,
    last_ticks: u64,
    last_at: Instant,
}

impl Proc {
    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// CPU use since the last call, in % of one core (USER_HZ is 100 on Linux); "-"
    /// when the last call was too recent for ticks of 10 ms to mean anything.
    fn cpu_percent(&mut self) -> String {
        let ticks = cpu_ticks(&format!("/proc/{}/stat", self.pid));
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_at).as_secs_f64();
        if elapsed < 1.0 {
            return "-".into();
        }
        let percent = ticks.saturating_sub(self.last_ticks) as f64 / elapsed;
        self.last_ticks = ticks;
        self.last_at = now;
        format!("{percent:.0}")
    }
}

fn cpu_ticks(stat_path: &str) -> u64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').collect())
        .unwrap_or_default();
    // After the command name: state is field 3, utime 14, stime 15.
    fields
        .get(11)
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Sample {
    rss_mib: f64,
    streams: f64,
    instances: f64,
}

struct Sampler {
    sluice: Proc,
    me: Proc,
    admin: SocketAddr,
    started: Instant,
    counters: Arc<Counters>,
    rss_peak_mib: f64,
}

impl Sampler {
    async fn row(&mut self, label: &str) -> Sample {
        let metrics = http(self.admin, "GET", "/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default();
        let rss_mib = self.sluice.status_kib("VmRSS:") as f64 / 1024.0;
        self.rss_peak_mib = self.rss_peak_mib.max(rss_mib);
        let c = &self.counters;
        let sample = Sample {
            rss_mib,
            streams: series(&metrics, "sluice_streams_open"),
            instances: series(&metrics, "sluice_plugin_instances_live"),
        };
        println!(
            "{:>8} {:>7.1} {:>6} {:>5} {:>5} {:>7} {:>9} {:>7} {:>10} {:>10} {:>6} {:>6} {:>7}",
            label,
            rss_mib,
            self.sluice.cpu_percent(),
            self.me.cpu_percent(),
            self.sluice.fds(),
            sample.streams,
            sample.instances,
            get(&c.clients_open),
            get(&c.sent),
            get(&c.received),
            get(&c.stream_errors),
            get(&c.reconnects),
            series(&metrics, "sluice_reloads_total{outcome=\"ok\"}"),
        );
        sample
    }

    fn header() {
        println!(
            "{:>8} {:>7} {:>6} {:>5} {:>5} {:>7} {:>9} {:>7} {:>10} {:>10} {:>6} {:>6} {:>7}",
            "t",
            "rss_MiB",
            "cpu%",
            "tool%",
            "fds",
            "streams",
            "instances",
            "clients",
            "sent",
            "received",
            "errors",
            "reconn",
            "reloads"
        );
    }
}

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    let counters = Arc::new(Counters::default());
    let (quiet_tx, quiet_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let rate = Duration::from_millis(args.rate_ms);
    let upstream = spawn_upstream(rate, quiet_rx, counters.clone()).await;

    let proxy: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = std::fs::File::create(&args.log).expect("create the sluice log");
    let mut child = tokio::process::Command::new(&args.sluice)
        .arg("--upstream")
        .arg(format!("http://{upstream}"))
        .arg("--listen")
        .arg(proxy.to_string())
        .arg("--admin-listen")
        .arg(admin.to_string())
        .arg("--no-watch")
        // Streams end and start all the time: room for a stream's old connection that
        // sluice has not seen close yet next to its new one, over the default cap.
        .arg("--max-connections")
        .arg((args.streams * 2 + 64).to_string())
        .args(&args.sluice_args)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", args.sluice.display()));
    let pid = child.id().expect("sluice pid");
    let deadline = Instant::now() + Duration::from_secs(120);
    while http(admin, "GET", "/metrics").await.is_err() {
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            eprintln!("sluice did not start; see {}", args.log.display());
            std::process::exit(2);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = Instant::now();
    let mut sampler = Sampler {
        sluice: Proc {
            pid,
            last_ticks: cpu_ticks(&format!("/proc/{pid}/stat")),
            last_at: now,
        },
        me: Proc {
            pid: std::process::id(),
            last_ticks: cpu_ticks("/proc/self/stat"),
            last_at: now,
        },
        admin,
        started: now,
        counters: counters.clone(),
        rss_peak_mib: 0.0,
    };
    let rss_start = sampler.sluice.status_kib("VmRSS:") as f64 / 1024.0;
    println!(
        "soak: {} streams for {} min, one {EVENT_BYTES}-byte event per stream every {} ms, stream length ~{} s, reload every {} s",
        args.streams, args.minutes, args.rate_ms, args.stream_secs, args.reload_secs
    );
    println!(
        "sluice pid {pid}: proxy {proxy}, admin {admin}, upstream {upstream}; args {:?}",
        args.sluice_args
    );
    println!(
        "cpu%: sluice, of one core; tool%: this load generator (upstream + clients), same machine"
    );
    Sampler::header();

    // Clients, opened over the ramp.
    let keys = Arc::new(AtomicU64::new(1));
    let mut clients = Vec::new();
    for slot in 0..args.streams {
        let delay =
            Duration::from_secs_f64(args.ramp_secs as f64 * slot as f64 / args.streams as f64);
        let (args2, stop, c, keys) = (
            args.clone(),
            stop_rx.clone(),
            counters.clone(),
            keys.clone(),
        );
        clients.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            client(slot, args2, proxy, stop, c, keys).await;
        }));
    }

    // Reloads. Stopped between two reloads, never during one, so both counts agree.
    let (stop_reloads, mut reloads_stopped) = watch::channel(false);
    let reloads = {
        let every = Duration::from_secs(args.reload_secs.max(1));
        let (enabled, c) = (args.reload_secs > 0, counters.clone());
        tokio::spawn(async move {
            if !enabled {
                return;
            }
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = reloads_stopped.wait_for(|stop| *stop) => return,
                }
                let t0 = Instant::now();
                match http(admin, "POST", "/admin/reload").await {
                    Ok((StatusCode::OK, _)) => {
                        c.reloads_ok.fetch_add(1, Relaxed);
                        c.reload_ms
                            .lock()
                            .unwrap()
                            .push(t0.elapsed().as_millis() as u64);
                    }
                    Ok((status, body)) => {
                        c.reloads_refused.fetch_add(1, Relaxed);
                        c.error(format!("reload refused: {status} {body}"));
                    }
                    Err(e) => {
                        c.reloads_refused.fetch_add(1, Relaxed);
                        c.error(format!("reload: {e}"));
                    }
                }
            }
        })
    };

    // Hold the load, sampling.
    let run = Duration::from_secs_f64(args.minutes * 60.0);
    let every = Duration::from_secs(args.sample_secs.max(1));
    let mut at_load = None;
    while sampler.started.elapsed() < run {
        let left = run.saturating_sub(sampler.started.elapsed());
        tokio::time::sleep(every.min(left)).await;
        let label = format!("{:.0}s", sampler.started.elapsed().as_secs_f64());
        let sample = sampler.row(&label).await;
        if sampler.started.elapsed() >= Duration::from_secs(args.ramp_secs + 5) && at_load.is_none()
        {
            at_load = Some(sample.rss_mib);
        }
    }
    stop_reloads.send_replace(true);
    let _ = reloads.await;

    // Quiet: everything sent must arrive. Then the clients go away.
    quiet_tx.send_replace(true);
    let settle = Instant::now();
    while get(&counters.received) + get(&counters.sent_progress) < get(&counters.sent)
        && settle.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let at_end = sampler.row("quiet").await;
    stop_tx.send_replace(true);
    for client in clients {
        let _ = client.await;
    }
    let closing = Instant::now();
    let mut closed = sampler.row("closed").await;
    while (closed.streams > 0.0 || closed.instances > 0.0 || get(&counters.upstream_open) > 0)
        && closing.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
        closed = sampler.row("closed").await;
    }
    let released_in = closing.elapsed();
    let metrics = http(admin, "GET", "/metrics")
        .await
        .map(|(_, body)| body)
        .unwrap_or_default();
    let hwm = sampler.sluice.status_kib("VmHWM:") as f64 / 1024.0;

    // SIGTERM: with no stream left, sluice should exit at once, with 0.
    let t0 = Instant::now();
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let shutdown = t0.elapsed();
    let exit_code = match exit {
        Ok(Ok(status)) => status.code(),
        _ => None,
    };

    // Totals.
    let c = &counters;
    let (sent, dropped, received) = (get(&c.sent), get(&c.sent_progress), get(&c.received));
    let lost = (sent - dropped) as i64 - received as i64;
    let reload_ms = c.reload_ms.lock().unwrap().clone();
    let reloads_expected = run.as_secs().checked_div(args.reload_secs).unwrap_or(0);
    println!();
    println!(
        "totals after {:.1} min:",
        sampler.started.elapsed().as_secs_f64() / 60.0
    );
    println!(
        "  streams: {} opened, {} completed (rotated), {} errors, {} reconnects",
        get(&c.streams_opened),
        get(&c.streams_completed),
        get(&c.stream_errors),
        get(&c.reconnects)
    );
    println!(
        "  events: upstream sent {sent} ({dropped} progress, for the dropper); clients received {received}; expected {}; lost {lost}",
        sent - dropped
    );
    println!(
        "  sluice events_total: in {}, out {}",
        series(&metrics, "sluice_events_total{direction=\"in\"}"),
        series(&metrics, "sluice_events_total{direction=\"out\"}")
    );
    for plugin in ["redact", "dropper"] {
        let verdict = |v: &str| {
            series(
                &metrics,
                &format!("sluice_plugin_verdicts_total{{plugin=\"{plugin}\",verdict=\"{v}\"}}"),
            )
        };
        println!(
            "  {plugin}: pass {}, modify {}, drop {}",
            verdict("pass"),
            verdict("modify"),
            verdict("drop")
        );
    }
    println!(
        "  checks: {} redacted ok, {} unredacted, {} progress not dropped, {} out of order/missing, {} on the wrong stream",
        get(&c.redacted),
        get(&c.unredacted),
        get(&c.undropped),
        get(&c.out_of_order),
        get(&c.cross_talk)
    );
    println!(
        "  reloads: {} ok, {} refused (sluice_reloads_total: ok {}, refused {}); POST /admin/reload took {} ms",
        get(&c.reloads_ok),
        get(&c.reloads_refused),
        series(&metrics, "sluice_reloads_total{outcome=\"ok\"}"),
        series(&metrics, "sluice_reloads_total{outcome=\"refused\"}"),
        match (reload_ms.iter().min(), reload_ms.iter().max()) {
            (Some(lo), Some(hi)) => format!(
                "{lo}..{hi} (mean {})",
                reload_ms.iter().sum::<u64>() / reload_ms.len() as u64
            ),
            _ => "-".into(),
        }
    );
    println!(
        "  streams ended (sluice): complete {}, client_gone {}, upstream_error {}; upstream errors {}; plugin failures {}",
        series(&metrics, "sluice_streams_ended_total{outcome=\"complete\"}"),
        series(
            &metrics,
            "sluice_streams_ended_total{outcome=\"client_gone\"}"
        ),
        series(
            &metrics,
            "sluice_streams_ended_total{outcome=\"upstream_error\"}"
        ),
        series(&metrics, "sluice_upstream_errors_total"),
        series(&metrics, "sluice_plugin_failures_total"),
    );
    // Which plugin failed how: deadline misses mean the machine starved sluice of CPU
    // for longer than --plugin-deadline-ms; fail-open then passes the event unchanged.
    let failures: Vec<String> = metrics
        .lines()
        .filter(|l| l.starts_with("sluice_plugin_failures_total{"))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(_, value)| value.trim() != "0")
        .map(|(series, value)| {
            format!(
                "{} {value}",
                &series["sluice_plugin_failures_total".len()..]
            )
        })
        .collect();
    if !failures.is_empty() {
        println!("  plugin failures: {}", failures.join(", "));
    }
    println!(
        "  sluice RSS: start {rss_start:.1} MiB, at load {:.1} MiB, peak sampled {:.1} MiB (VmHWM {hwm:.1}), end of load {:.1} MiB, after clients closed {:.1} MiB",
        at_load.unwrap_or(0.0),
        sampler.rss_peak_mib,
        at_end.rss_mib,
        closed.rss_mib
    );
    println!(
        "  after the clients closed ({:.1} s): streams_open {}, plugin_instances_live {}, upstream requests still open {}",
        released_in.as_secs_f64(),
        closed.streams,
        closed.instances,
        get(&c.upstream_open)
    );
    println!(
        "  SIGTERM: exit code {exit_code:?} after {:.2} s",
        shutdown.as_secs_f64()
    );
    for error in c.first_errors.lock().unwrap().iter() {
        println!("  error: {error}");
    }

    let checks = [
        ("no event lost", lost == 0),
        (
            "no event out of order, missing or on the wrong stream",
            get(&c.out_of_order) == 0 && get(&c.cross_talk) == 0,
        ),
        (
            "every secret redacted, every progress dropped",
            get(&c.unredacted) == 0 && get(&c.undropped) == 0,
        ),
        ("no stream error", get(&c.stream_errors) == 0),
        (
            "every reload ok",
            get(&c.reloads_refused) == 0
                && get(&c.reloads_ok) >= reloads_expected.saturating_sub(1),
        ),
        (
            "streams and instances back to 0, upstream requests cancelled",
            closed.streams == 0.0 && closed.instances == 0.0 && get(&c.upstream_open) == 0,
        ),
        (
            "no plugin failure (with fail-open, a failure on a secret would leak it)",
            series(&metrics, "sluice_plugin_failures_total") == 0.0,
        ),
        ("sluice exits 0 on SIGTERM", exit_code == Some(0)),
    ];
    println!();
    let mut failed = false;
    for (name, ok) in checks {
        println!("  {}  {name}", if ok { "PASS" } else { "FAIL" });
        failed |= !ok;
    }
    println!("{}", if failed { "FAIL" } else { "PASS" });
    std::process::exit(i32::from(failed));
}
