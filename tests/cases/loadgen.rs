//! The load generator of bench/run.sh (`sluice-loadgen`) is itself checked: its
//! clients must see every event of every stream, in order, directly and through
//! sluice, and must report a stream that lost events as a failure. The stdio benchmark's
//! driver (bench/stdio.sh) must get every call's answer through the server's own pipe
//! and through sluice in front of it, and fail a run whose answers were changed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use sluice::config::StdioTarget;
use sluice::plugin::builtin;
use sluice::upstream::{StdioCommand, StdioSettings};

use crate::common::proxy;

const LOADGEN: &str = env!("CARGO_BIN_EXE_sluice-loadgen");

/// The loadgen upstream on a free port, killed on drop.
struct Upstream {
    child: Child,
    url: String,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn upstream() -> Upstream {
    let mut child = Command::new(LOADGEN)
        .args(["upstream", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("sluice-loadgen starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("loadgen upstream listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    Upstream { child, url }
}

/// Runs `sluice-loadgen run` (off the async runtime: sluice may be serving in-process)
/// and returns its exit success and its JSON report.
async fn run(url: String, args: &[&str]) -> (bool, Value) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(LOADGEN)
            .args(["run", "--json", "--url", &url])
            .args(&args)
            .output()
            .expect("sluice-loadgen runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("not a JSON report ({e}): {stdout}"));
        (out.status.success(), report)
    })
    .await
    .unwrap()
}

fn assert_clean(report: &Value, streams: u64, events: u64) {
    assert_eq!(report["sent"], streams * events, "{report}");
    assert_eq!(report["received"], streams * events, "{report}");
    for fault in ["lost", "reordered", "foreign", "errors"] {
        assert_eq!(report[fault], 0, "{fault}: {report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_in_order_directly_and_through_sluice() {
    let up = upstream();
    let sluice = proxy::start(&up.url, vec![proxy::wat("pass", builtin::PASS)]).await;
    let through = format!("http://{}/mcp", sluice.addr());
    let direct = format!("{}/mcp", up.url);

    for (url, size) in [(&direct, "256"), (&through, "256"), (&through, "16384")] {
        let (ok, report) = run(
            url.clone(),
            &["--streams", "20", "--events", "300", "--size", size],
        )
        .await;
        assert!(ok, "{report}");
        assert_clean(&report, 20, 300);
        assert_eq!(report["latency_samples"], 6000, "{report}");
    }

    // Paced: 5 streams at 200 events/s for 0.3 s each, every event timed.
    let (ok, report) = run(
        through.clone(),
        &[
            "--streams",
            "5",
            "--rate",
            "200",
            "--duration-ms",
            "300",
            "--tick-ms",
            "5",
        ],
    )
    .await;
    assert!(ok, "{report}");
    let sent = report["sent"].as_u64().unwrap();
    assert!(
        (5 * 40..=5 * 80).contains(&sent),
        "about 60 per stream: {report}"
    );
    assert_eq!(report["received"], sent, "{report}");
    assert!(report["p99_us"].as_f64().unwrap() > 0.0, "{report}");
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_loses_events_fails_the_run() {
    let up = upstream();
    // The dropper removes every event the generator sends (they are log messages):
    // only the final result gets through, which says how many were sent.
    let dropper = proxy::rust("dropper", r#"{"methods":["notifications/message"]}"#);
    let sluice = proxy::start(&up.url, vec![dropper]).await;
    let (ok, report) = run(
        format!("http://{}/mcp", sluice.addr()),
        &["--streams", "3", "--events", "50"],
    )
    .await;
    assert!(!ok, "a lossy run must fail: {report}");
    assert_eq!(report["sent"], 150, "{report}");
    assert_eq!(report["received"], 0, "{report}");
    assert_eq!(report["lost"], 150, "{report}");
    sluice.stop().await;
}

/// `sluice-loadgen stdio-server` behind sluice (one process per session).
async fn sluice_in_front_of_the_stdio_server(
    plugins: Vec<sluice::plugin::PluginSpec>,
) -> sluice::app::Running {
    let server = StdioCommand {
        program: LOADGEN.to_string(),
        args: vec!["stdio-server".to_string()],
        env: Vec::new(),
        cwd: None,
    };
    let target = StdioTarget {
        command: server,
        settings: StdioSettings::default(),
    };
    proxy::start_stdio(target, plugins).await
}

/// Runs `sluice-loadgen stdio-bench` for 40 calls; returns its exit success and report.
async fn stdio_bench(concurrency: &'static str, target: Vec<String>) -> (bool, Value) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(LOADGEN)
            .args(["stdio-bench", "--json", "--requests", "40", "--warmup", "5"])
            .args(["--concurrency", concurrency])
            .args(&target)
            .output()
            .expect("sluice-loadgen runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("not a JSON report ({e}): {stdout}"));
        (out.status.success(), report)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stdio_driver_gets_every_answer_through_the_pipe_and_through_sluice() {
    let sluice = sluice_in_front_of_the_stdio_server(vec![proxy::wat("pass", builtin::PASS)]).await;
    let url = format!("{}/mcp", sluice.url());
    let direct = vec![
        "--".to_string(),
        LOADGEN.to_string(),
        "stdio-server".to_string(),
    ];
    let through = vec!["--url".to_string(), url];
    for (target, via) in [(direct, "pipe"), (through, "http")] {
        for concurrency in ["1", "4"] {
            let (ok, report) = stdio_bench(concurrency, target.clone()).await;
            assert!(ok, "{report}");
            assert_eq!(report["via"], via, "{report}");
            assert_eq!(report["calls"], 40, "{report}");
            assert_eq!(report["errors"], 0, "{report}");
            assert!(report["p50_us"].as_f64().unwrap() > 0.0, "{report}");
        }
    }
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_run_whose_answers_were_changed_fails() {
    // The redactor masks the echoed text: the answers no longer carry what was sent.
    let redact = proxy::rust("redact", r#"{"patterns":["x{8,}"]}"#);
    let sluice = sluice_in_front_of_the_stdio_server(vec![redact]).await;
    let url = format!("{}/mcp", sluice.url());
    let (ok, report) = stdio_bench("2", vec!["--url".to_string(), url]).await;
    assert!(!ok, "a run with changed answers must fail: {report}");
    assert_ne!(report["errors"], 0, "{report}");
    assert!(
        report["first_errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("unexpected answer")),
        "{report}"
    );
    sluice.stop().await;
}
