//! Graceful shutdown of the real binary: SIGTERM stops accepting, lets open streams
//! finish within the grace period, ends the ones that do not (cleanly, with errors for
//! waiting requests), and exits 0.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice::sse::Event;
use sluice::upstream::SseEvents;

use crate::common::{client, raw};

const REQUEST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;

struct Binary {
    child: std::process::Child,
    url: String,
}

async fn start_binary(upstream: &str, grace_secs: u64, extra: &[&str]) -> Binary {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "--upstream",
            upstream,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args([
            "--shutdown-grace",
            &grace_secs.to_string(),
            "--no-watch",
            "--no-cache",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sluice starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "sluice never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Binary {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

impl Binary {
    fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn exit_code(mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().expect("exited, not killed by a signal");
            }
            assert!(Instant::now() < deadline, "sluice did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn refuses_connections(&self) -> bool {
        let addr = self.url.strip_prefix("http://").unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(&addr).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

async fn rest_of(events: &mut SseEvents<hyper::body::Incoming>) -> (Vec<Event>, bool) {
    let mut out = Vec::new();
    while let Some(frame) = events.next().await {
        match frame {
            Ok(sluice::sse::Frame::Event(e)) => out.push(e),
            Ok(_) => {}
            Err(_) => return (out, false),
        }
    }
    (out, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_open_streams_finish_then_exits_0() {
    let (upstream, gate) = raw::gated_sse(6, |i| format!(r#"{{"n":{i}}}"#)).await;
    let sluice = start_binary(&upstream.url(), 10, &[]).await;
    let response = client::post(&format!("{}/mcp", sluice.url), REQUEST).await;
    let mut events = SseEvents::new(response.into_body(), 1 << 20);
    for _ in 0..3 {
        events.next().await.unwrap().unwrap();
    }
    sluice.terminate();
    assert!(
        sluice.refuses_connections().await,
        "still accepting after SIGTERM"
    );
    gate.add_permits(1);
    let (rest, clean) = rest_of(&mut events).await;
    assert!(clean, "the stream ended cleanly");
    assert_eq!(rest.len(), 3, "the open stream finished: {rest:?}");
    assert_eq!(sluice.exit_code().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_still_open_after_the_grace_period_cleanly() {
    let (upstream, _gate) = raw::gated_sse(6, |i| format!(r#"{{"n":{i}}}"#)).await;
    let sluice = start_binary(&upstream.url(), 1, &[]).await;
    let response = client::post(&format!("{}/mcp", sluice.url), REQUEST).await;
    let mut events = SseEvents::new(response.into_body(), 1 << 20);
    for _ in 0..3 {
        events.next().await.unwrap().unwrap();
    }
    let terminated = Instant::now();
    sluice.terminate();
    // The upstream never finishes: sluice ends the stream itself after 1 s.
    let (rest, clean) = rest_of(&mut events).await;
    assert!(clean, "a clean end of stream, not a dropped connection");
    assert!(terminated.elapsed() >= Duration::from_millis(900));
    let error: Value =
        serde_json::from_str(rest.last().expect("an error event").data_str()).unwrap();
    assert_eq!(error["id"], 1);
    assert_eq!(error["error"]["code"], -32052);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shutting down")
    );
    assert_eq!(sluice.exit_code().await, 0);
}

/// Connections are served on `--workers` threads (or, with 0, on one shared pool):
/// with each count, several streams at once all arrive whole, and SIGTERM drains them
/// across the workers before the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_count_serves_streams_at_once_and_drains_them_on_sigterm() {
    for workers in ["0", "1", "3"] {
        let (upstream, gate) = raw::gated_sse(6, |i| format!(r#"{{"n":{i}}}"#)).await;
        let sluice = start_binary(&upstream.url(), 10, &["--workers", workers]).await;
        let mut streams = Vec::new();
        for _ in 0..4 {
            let response = client::post(&format!("{}/mcp", sluice.url), REQUEST).await;
            let mut events = SseEvents::new(response.into_body(), 1 << 20);
            for _ in 0..3 {
                events.next().await.unwrap().unwrap();
            }
            streams.push(events);
        }
        sluice.terminate();
        assert!(
            sluice.refuses_connections().await,
            "--workers {workers}: still accepting after SIGTERM"
        );
        gate.add_permits(streams.len());
        for events in &mut streams {
            let (rest, clean) = rest_of(events).await;
            assert!(clean, "--workers {workers}: a stream ended cleanly");
            let numbers: Vec<&str> = rest.iter().filter_map(|e| e.id.as_deref()).collect();
            assert_eq!(numbers, ["4", "5", "6"], "--workers {workers}: {rest:?}");
        }
        assert_eq!(sluice.exit_code().await, 0, "--workers {workers}");
    }
}
