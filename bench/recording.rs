//! What `--record` costs: one SSE stream of 20 000 events (256 B of data each, or
//! `SLUICE_BENCH_EVENT_BYTES`, as many events as make the same 5 MB, at least 2 000) through
//! sluice with one plugin, recording off and on. The upstream is a hyper server sending a
//! pre-encoded body, the client reads the whole response; both on 127.0.0.1.
//!
//! Run: `cargo bench --bench recording` (numbers and machine in BENCHMARKS.md).
//!
//! On a shared machine the two criterion groups (ten seconds each, one after the other)
//! can see different loads. `SLUICE_BENCH_ALTERNATE=N cargo bench --bench recording`
//! instead runs N rounds of one stream off, one stream on, and prints the median wall
//! time and the median CPU time of the process (all threads, from
//! `/proc/self/task/*/schedstat`) per stream for each, and the ratios. With
//! `SLUICE_BENCH_ONLY=off` (or `on`) only that side runs: `perf stat -e instructions`
//! of each, less sensitive to other load than time, gives the instructions recording
//! adds per event.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice::app::{self, Running};
use sluice::config::Config;
use sluice::plugin::{PluginLimits, PluginSource, PluginSpec, builtin};
use sluice::sse::{Event, encode_event};

/// Bytes of data per event: 256 unless `SLUICE_BENCH_EVENT_BYTES` says otherwise (at
/// least 100); a stream carries about 5 MB of data (20 000 events of 256 B), and at
/// least 2 000 events.
fn event_bytes() -> usize {
    std::env::var("SLUICE_BENCH_EVENT_BYTES")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(256)
        .max(100)
}

fn events() -> usize {
    (256 * 20_000 / event_bytes()).max(2_000)
}

fn stream_body() -> Bytes {
    let data = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"level":"info","data":"{}"}}}}"#,
        "x".repeat(event_bytes() - 78)
    );
    let mut out = BytesMut::new();
    for i in 0..events() {
        let event = Event {
            id: Some(i.to_string()),
            ..Event::message(data.clone())
        };
        encode_event(&event, &mut out);
    }
    out.freeze()
}

async fn upstream(body: Bytes) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "text/event-stream")
                                .body(Full::new(body))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn proxy(upstream: SocketAddr, record: Option<std::path::PathBuf>) -> Running {
    app::start(Config {
        access: Default::default(),
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: format!("http://{upstream}"),
        plugins: vec![PluginSpec {
            powers: Default::default(),
            name: "pass".into(),
            source: PluginSource::Bytes(builtin::PASS),
            config: String::new(),
            limits: PluginLimits::default(),
            capabilities: Default::default(),
        }],
        proxy: Default::default(),
        cache_dir: None,
        record_dir: record,
        tape: Default::default(),
        tls: Default::default(),
        stdio: None,
        routes: Vec::new(),
    })
    .await
    .unwrap()
}

fn recording(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let body = stream_body();
    let bytes = body.len();
    let dir = std::env::temp_dir().join(format!("sluice-bench-tapes-{}", std::process::id()));
    let (off, on) = runtime.block_on(async {
        let up = upstream(body).await;
        (proxy(up, None).await, proxy(up, Some(dir.clone())).await)
    });
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    if let Some(rounds) = std::env::var("SLUICE_BENCH_ALTERNATE")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        alternate(&runtime, &client, [&off, &on], bytes, rounds);
        if let Some(recorder) = on.recorder() {
            println!(
                "recorder: {} records written, {} dropped",
                recorder.written(),
                recorder.dropped()
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let mut group = c.benchmark_group(format!(
        "stream_{}_events_{}B_one_plugin",
        events(),
        event_bytes()
    ));
    group.throughput(Throughput::Elements(events() as u64));
    group.sample_size(10);
    for (name, running) in [("recording_off", &off), ("recording_on", &on)] {
        let url = format!("{}/mcp", running.url());
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let request = Request::post(&url)
                        .header("accept", "text/event-stream")
                        .body(Full::new(Bytes::from_static(b"{}")))
                        .unwrap();
                    let response = client.request(request).await.unwrap();
                    let got = response.into_body().collect().await.unwrap().to_bytes();
                    assert!(got.len() >= bytes / 2, "the stream arrived");
                })
            });
        });
    }
    group.finish();
    if let Some(recorder) = on.recorder() {
        println!(
            "recorder: {} records written, {} dropped",
            recorder.written(),
            recorder.dropped()
        );
    }
    runtime.block_on(async {
        off.stop().await;
        on.stop().await;
    });
    let _ = std::fs::remove_dir_all(dir);
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn one_stream(client: &HttpClient, url: &str, bytes: usize) {
    let request = Request::post(url)
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let got = response.into_body().collect().await.unwrap().to_bytes();
    assert!(got.len() >= bytes / 2, "the stream arrived");
}

/// CPU time of this process so far (all threads), nanoseconds, and of the threads
/// named `named` among them.
fn cpu_ns(named: &str) -> (u64, u64) {
    let mut all = 0;
    let mut those = 0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        let ns = stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        all += ns;
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == named {
            those += ns;
        }
    }
    (all, those)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// `rounds` x (one stream off, one stream on): medians of wall and CPU time.
fn alternate(
    runtime: &tokio::runtime::Runtime,
    client: &HttpClient,
    proxies: [&Running; 2],
    bytes: usize,
    rounds: usize,
) {
    let urls = proxies.map(|p| format!("{}/mcp", p.url()));
    // `SLUICE_BENCH_ONLY=off|on`: one side only (for `perf stat` of each).
    let only = std::env::var("SLUICE_BENCH_ONLY")
        .ok()
        .map(|side| usize::from(side == "on"));
    let mut wall = [Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new()];
    let mut writer = Vec::new();
    for round in 0..rounds + 3 {
        for (which, url) in urls.iter().enumerate() {
            if only.is_some_and(|only| only != which) {
                continue;
            }
            let (t, (c, w)) = (std::time::Instant::now(), cpu_ns("sluice-recorder"));
            runtime.block_on(one_stream(client, url, bytes));
            // The first rounds warm up (compiled code, page cache, connections).
            if round >= 3 {
                let (c2, w2) = cpu_ns("sluice-recorder");
                wall[which].push(t.elapsed().as_secs_f64() * 1e3);
                cpu[which].push((c2 - c) as f64 / 1e6);
                if which == 1 {
                    writer.push((w2 - w) as f64 / 1e6);
                }
            }
        }
    }
    if only.is_some() {
        let times = wall.into_iter().chain(cpu).filter(|t| !t.is_empty());
        let [wall, cpu]: [f64; 2] = times.map(median).collect::<Vec<_>>().try_into().unwrap();
        println!(
            "{rounds} rounds of {} events, one side: wall {wall:.2} ms, cpu {cpu:.2} ms",
            events()
        );
        return;
    }
    let [wall_off, wall_on] = wall.map(median);
    let [cpu_off, cpu_on] = cpu.map(median);
    let writer = median(writer);
    let per_event = |ms: f64| ms * 1e3 / events() as f64;
    println!(
        "{rounds} rounds of {} events of {} B: wall off {wall_off:.2} ms, on {wall_on:.2} ms ({:+.1}%); \
         cpu off {cpu_off:.2} ms ({:.3} us/event), on {cpu_on:.2} ms ({:.3} us/event, {:+.1}%), \
         of which the tape writer thread {writer:.2} ms ({:.3} us/event)",
        events(),
        event_bytes(),
        (wall_on / wall_off - 1.0) * 100.0,
        per_event(cpu_off),
        per_event(cpu_on),
        (cpu_on / cpu_off - 1.0) * 100.0,
        per_event(writer),
    );
}

criterion_group!(benches, recording);
criterion_main!(benches);
