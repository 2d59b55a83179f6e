//! `sluice-loadgen`: an SSE load generator for measuring sluice against a direct
//! connection and against nginx (issue 8; `bench/run.sh` drives it).
//!
//! ```sh
//! sluice-loadgen upstream --listen 127.0.0.1:18000 &
//! sluice --upstream http://127.0.0.1:18000 --listen 127.0.0.1:18002 --plugin f.wasm &
//! sluice-loadgen run --url http://127.0.0.1:18002/mcp --streams 100 --size 256 \
//!     --duration-ms 3000 --pid $(pgrep -n sluice) --json
//! sluice-loadgen idle --url http://127.0.0.1:18002/mcp --streams 10000 --pid ...
//! ```
//!
//! And request/response through a stdio MCP server (`bench/stdio.sh`): `stdio-server`
//! is the server, `stdio-bench` the client, straight through its pipe or over HTTP:
//!
//! ```sh
//! sluice-loadgen stdio-bench --concurrency 16 -- sluice-loadgen stdio-server
//! sluice --listen 127.0.0.1:18012 -- sluice-loadgen stdio-server &
//! sluice-loadgen stdio-bench --url http://127.0.0.1:18012/mcp --concurrency 16
//! ```
//!
//! The upstream and the clients are separate processes so each side's CPU shows apart
//! from the proxy's. Every client checks its stream (its own events, in order, none
//! missing, the count the upstream says it sent) and exits non-zero on any fault.

mod calls;
mod clients;
mod procstat;
mod stats;
mod stdio_server;
mod upstream;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::json;

use clients::Target;
use procstat::Procs;
use stats::Latencies;
use wire::Ask;

#[derive(Parser, Debug)]
#[command(
    name = "sluice-loadgen",
    about = "SSE load generator for sluice benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve numbered SSE event streams to loadgen clients (runs until killed).
    Upstream {
        /// Where to listen (port 0: any free port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:18000")]
        listen: SocketAddr,
    },
    /// Run N concurrent streams through a URL and report throughput and latency.
    Run {
        #[command(flatten)]
        common: Common,
        /// Concurrent streams.
        #[arg(long, default_value_t = 1)]
        streams: u64,
        /// Each stream lasts this long (ms) on the upstream's clock.
        #[arg(long, default_value_t = 3000)]
        duration_ms: u64,
        /// Or ends after this many events (0: only the duration counts).
        #[arg(long, default_value_t = 0)]
        events: u64,
        /// Events per second per stream (0: as fast as the path takes them).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// With --rate: send the events due at most this often (ms), together.
        #[arg(long, default_value_t = 10)]
        tick_ms: u64,
    },
    /// Hold N idle streams open (one event each) and report the proxy's memory.
    Idle {
        #[command(flatten)]
        common: Common,
        /// Concurrent idle streams.
        #[arg(long, default_value_t = 1000)]
        streams: u64,
        /// Wait this long (ms) after the last stream opened before reading memory.
        #[arg(long, default_value_t = 2000)]
        settle_ms: u64,
    },
    /// A stdio MCP server that answers at once: initialize, ping, tools/list and
    /// tools/call of `echo` (its text back), one JSON line per message.
    StdioServer,
    /// tools/call round trips to a stdio MCP server: the command after `--` through its
    /// own stdin and stdout, or --url, a Streamable HTTP bridge in front of one (sluice,
    /// supergateway). One session; each lane keeps one call in flight.
    StdioBench {
        /// The bridge's MCP endpoint (without it: spawn the command after `--`).
        #[arg(long, conflicts_with = "command")]
        url: Option<String>,
        /// Calls in flight at once (lanes; over HTTP each has its own connection).
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Timed calls in all (0: as many as fit in --duration-ms).
        #[arg(long, default_value_t = 0)]
        requests: u64,
        #[arg(long, default_value_t = 2000)]
        duration_ms: u64,
        /// Untimed calls before the timed ones.
        #[arg(long, default_value_t = 200)]
        warmup: u64,
        /// Bytes of text each call sends and gets back.
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// Processes whose CPU to report (the bridge). Repeatable.
        #[arg(long = "pid")]
        pids: Vec<u32>,
        /// A name for the report line.
        #[arg(long, default_value = "run")]
        label: String,
        /// Print one JSON object instead of a line of text.
        #[arg(long)]
        json: bool,
        /// The stdio server to spawn (direct mode).
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
    },
}

#[derive(clap::Args, Debug)]
struct Common {
    /// The MCP endpoint to stream through: the upstream itself, nginx or sluice.
    #[arg(long)]
    url: String,
    /// Bytes of JSON in each event's data.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Processes whose CPU and memory to report (the proxy; nginx's workers). Repeatable.
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// Speak HTTP/2 (cleartext) with this many streams per connection instead of one
    /// HTTP/1.1 connection per stream: 10 000 idle streams through a proxy need 20 000
    /// sockets with HTTP/1.1, past this machine's open-file limit. The target must
    /// speak cleartext HTTP/2 (sluice does; this tool's upstream does not).
    #[arg(long, value_name = "STREAMS_PER_CONNECTION")]
    h2: Option<usize>,
    /// A name for the report line.
    #[arg(long, default_value = "run")]
    label: String,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    json: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The stdio server is one thread of blocking reads and writes: no runtime.
    if let Command::StdioServer = cli.command {
        return match stdio_server::serve() {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sluice-loadgen stdio-server: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(command(cli.command)),
        Err(e) => {
            eprintln!("sluice-loadgen: no runtime: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn command(command: Command) -> std::process::ExitCode {
    let ok = match command {
        Command::Upstream { listen } => {
            let bound = match upstream::spawn(listen).await {
                Ok(bound) => bound,
                Err(e) => {
                    eprintln!("sluice-loadgen: cannot listen on {listen}: {e}");
                    return std::process::ExitCode::from(2);
                }
            };
            println!("loadgen upstream listening on http://{bound}");
            std::future::pending::<()>().await;
            true
        }
        Command::Run {
            common,
            streams,
            duration_ms,
            events,
            rate,
            tick_ms,
        } => run(&common, streams, duration_ms, events, (rate, tick_ms)).await,
        Command::Idle {
            common,
            streams,
            settle_ms,
        } => idle(&common, streams, Duration::from_millis(settle_ms)).await,
        Command::StdioServer => unreachable!("served before the runtime starts"),
        Command::StdioBench {
            url,
            concurrency,
            requests,
            duration_ms,
            warmup,
            size,
            pids,
            label,
            json,
            command,
        } => {
            let via = match url {
                Some(url) => match Target::parse(&url) {
                    Ok(target) => calls::Via::Http(target),
                    Err(e) => {
                        eprintln!("sluice-loadgen: {e}");
                        return std::process::ExitCode::from(2);
                    }
                },
                None if command.is_empty() => {
                    eprintln!("sluice-loadgen: give --url or a command after --");
                    return std::process::ExitCode::from(2);
                }
                None => calls::Via::Pipe(command),
            };
            let plan = calls::Plan {
                concurrency,
                requests,
                duration: Duration::from_millis(duration_ms),
                warmup,
                size,
            };
            stdio_bench(&via, &plan, pids, &label, json).await
        }
    };
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

fn target(common: &Common) -> Option<Target> {
    let mut target = Target::parse(&common.url)
        .map_err(|e| eprintln!("sluice-loadgen: {e}"))
        .ok()?;
    target.h2_streams_per_connection = common.h2;
    Some(target)
}

async fn run(
    common: &Common,
    streams: u64,
    duration_ms: u64,
    events: u64,
    (rate, tick_ms): (u64, u64),
) -> bool {
    let Some(target) = target(common) else {
        return false;
    };
    if duration_ms == 0 && events == 0 {
        eprintln!("sluice-loadgen: give --duration-ms or --events, or the streams never end");
        return false;
    }
    let ask = Ask {
        stream: 0,
        size: common.size,
        events,
        duration_ms,
        rate,
        tick_ms,
        idle: false,
    };
    let proxy = Procs::start(common.pids.clone());
    let me = Procs::start(vec![std::process::id()]);
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = rss_sampler(common.pids.clone(), peak.clone());
    let outcome = clients::run(&target, streams, &ask).await;
    let (proxy_cpu, my_cpu) = (proxy.cpu_percent(), me.cpu_percent());
    sampler.abort();
    let rss_max = peak.load(Relaxed).max(proxy.rss_bytes());

    let mut latencies = Latencies::default();
    let (mut received, mut sent, mut lost, mut reordered, mut foreign) = (0, 0, 0, 0, 0);
    let mut faults = 0;
    let mut errors = Vec::new();
    for s in outcome.streams {
        received += s.checker.received;
        sent += s.sent.unwrap_or(0);
        lost += s.checker.lost;
        reordered += s.checker.reordered;
        foreign += s.checker.foreign;
        faults += s.checker.faults();
        errors.extend(s.error);
        latencies.extend(s.latencies_ns);
    }
    latencies.finish();
    let seconds = outcome.elapsed.as_secs_f64();
    let events_per_s = received as f64 / seconds;
    let report = json!({
        "label": common.label,
        "url": common.url,
        "streams": streams,
        "size": common.size,
        "rate": rate,
        "seconds": round(seconds, 3),
        "sent": sent,
        "received": received,
        "lost": lost,
        "reordered": reordered,
        "foreign": foreign,
        "errors": errors.len(),
        "first_errors": errors.iter().take(5).collect::<Vec<_>>(),
        "events_per_s": events_per_s.round(),
        "mb_per_s": round(events_per_s * common.size as f64 / 1e6, 1),
        "latency_samples": latencies.len(),
        "p50_us": round(latencies.percentile_us(50.0), 1),
        "p99_us": round(latencies.percentile_us(99.0), 1),
        "p999_us": round(latencies.percentile_us(99.9), 1),
        "max_us": round(latencies.percentile_us(100.0), 1),
        "proxy_cpu_pct": if proxy.is_empty() { None } else { Some(round(proxy_cpu, 1)) },
        "proxy_rss_mib": if proxy.is_empty() { None } else { Some(mib(rss_max)) },
        "loadgen_cpu_pct": round(my_cpu, 1),
    });
    let ok = errors.is_empty() && faults == 0 && received > 0;
    if common.json {
        println!("{report}");
    } else {
        println!(
            "{}: {streams} streams x {} B, {seconds:.2} s: {:.0} events/s ({:.1} MB/s); \
             latency p50 {} us, p99 {} us, p99.9 {} us; proxy CPU {}%, RSS {} MiB; \
             sent {sent}, received {received}, lost {lost}, reordered {reordered}, \
             foreign {foreign}, errors {}",
            common.label,
            common.size,
            events_per_s,
            report["mb_per_s"],
            report["p50_us"],
            report["p99_us"],
            report["p999_us"],
            report["proxy_cpu_pct"],
            report["proxy_rss_mib"],
            errors.len(),
        );
        for e in errors.iter().take(5) {
            eprintln!("  {e}");
        }
    }
    ok
}

async fn idle(common: &Common, streams: u64, settle: Duration) -> bool {
    let Some(target) = target(common) else {
        return false;
    };
    if common.pids.is_empty() {
        eprintln!("sluice-loadgen: idle needs --pid (whose memory to report)");
        return false;
    }
    let procs = Procs::start(common.pids.clone());
    let outcome = clients::idle(&target, streams, common.size, || procs.rss_bytes(), settle).await;
    let per_stream =
        outcome.rss_held.saturating_sub(outcome.rss_before) as f64 / outcome.opened.max(1) as f64;
    let report = json!({
        "label": common.label,
        "streams": streams,
        "opened": outcome.opened,
        "errors": outcome.errors.len(),
        "first_errors": outcome.errors.iter().take(5).collect::<Vec<_>>(),
        "rss_before_mib": mib(outcome.rss_before),
        "rss_held_mib": mib(outcome.rss_held),
        "rss_after_mib": mib(outcome.rss_after),
        "client_transport": if common.h2.is_some() { "h2" } else { "http/1.1" },
        "per_stream_kib": round(per_stream / 1024.0, 1),
    });
    if common.json {
        println!("{report}");
    } else {
        println!(
            "{}: {} of {streams} idle streams open: proxy RSS {} MiB before, {} MiB held \
             ({} KiB per stream), {} MiB after closing; errors {}",
            common.label,
            outcome.opened,
            report["rss_before_mib"],
            report["rss_held_mib"],
            report["per_stream_kib"],
            report["rss_after_mib"],
            outcome.errors.len(),
        );
        for e in outcome.errors.iter().take(5) {
            eprintln!("  {e}");
        }
    }
    outcome.errors.is_empty() && outcome.opened == streams
}

async fn stdio_bench(
    via: &calls::Via,
    plan: &calls::Plan,
    pids: Vec<u32>,
    label: &str,
    json: bool,
) -> bool {
    let proxy = Procs::start(pids);
    let me = Procs::start(vec![std::process::id()]);
    let mut outcome = calls::run(via, plan).await;
    let (proxy_cpu, my_cpu) = (proxy.cpu_percent(), me.cpu_percent());
    outcome.latencies.finish();
    let seconds = outcome.elapsed.as_secs_f64();
    let calls_per_s = if seconds > 0.0 {
        outcome.calls as f64 / seconds
    } else {
        0.0
    };
    let l = &outcome.latencies;
    let report = json!({
        "label": label,
        "via": match via { calls::Via::Pipe(_) => "pipe", calls::Via::Http(_) => "http" },
        "concurrency": plan.concurrency,
        "size": plan.size,
        "seconds": round(seconds, 3),
        "calls": outcome.calls,
        "sse_answers": outcome.sse_answers,
        "calls_per_s": calls_per_s.round(),
        "p50_us": round(l.percentile_us(50.0), 1),
        "p99_us": round(l.percentile_us(99.0), 1),
        "max_us": round(l.percentile_us(100.0), 1),
        "errors": outcome.errors.len(),
        "first_errors": outcome.errors.iter().take(5).collect::<Vec<_>>(),
        "proxy_cpu_pct": if proxy.is_empty() { None } else { Some(round(proxy_cpu, 1)) },
        "loadgen_cpu_pct": round(my_cpu, 1),
    });
    if json {
        println!("{report}");
    } else {
        println!(
            "{label}: {} calls x {} B, {} in flight, {seconds:.2} s: {:.0} calls/s; \
             latency p50 {} us, p99 {} us; proxy CPU {}%; errors {}",
            outcome.calls,
            plan.size,
            plan.concurrency,
            calls_per_s,
            report["p50_us"],
            report["p99_us"],
            report["proxy_cpu_pct"],
            outcome.errors.len(),
        );
        for e in outcome.errors.iter().take(5) {
            eprintln!("  {e}");
        }
    }
    outcome.errors.is_empty() && outcome.calls > 0
}

/// Samples the processes' memory every 100 ms into `peak` until aborted.
fn rss_sampler(pids: Vec<u32>, peak: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let procs = Procs::start(pids);
        loop {
            peak.fetch_max(procs.rss_bytes(), Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

fn mib(bytes: u64) -> f64 {
    round(bytes as f64 / (1024.0 * 1024.0), 1)
}
