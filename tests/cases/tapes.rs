//! Tapes: a live MCP session through sluice is recorded (`--record`), played back with
//! `sluice tape serve` through sluice again, and the client sees the same events.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use serde_json::json;
use sluice::app::{self, Running};
use sluice::config::Config;
use sluice::plugin::PluginSpec;
use sluice::tape::{Record, format};

use crate::common::mcp::{self, SECRET_TEXT};
use crate::common::{client, proxy};

fn chain() -> Vec<PluginSpec> {
    vec![
        proxy::rust("redact", r#"{"patterns":["sk-live-[a-z0-9]+"]}"#),
        proxy::rust("dropper", r#"{"methods":["notifications/progress"]}"#),
    ]
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("tapes")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn recording_sluice(upstream: &str, dir: &Path) -> Running {
    app::start(Config {
        access: Default::default(),
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: upstream.to_string(),
        plugins: chain(),
        proxy: Default::default(),
        cache_dir: None,
        record_dir: Some(dir.to_path_buf()),
        tape: Default::default(),
        stdio: None,
        routes: Vec::new(),
        tls: Default::default(),
    })
    .await
    .expect("sluice starts")
}

/// The admin API shows the recorder's queue and its drops: none in a session, and a
/// queue that empties once the writer has taken everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorders_queue_and_drops_show_in_the_metrics() {
    use crate::cases::operations::{scrape, value};
    let server = mcp::spawn_mcp_server().await;
    let dir = temp_dir("queue");
    let mut sluice = recording_sluice(&proxy::base_of(&server.url), &dir).await;
    let admin = proxy::serve_admin(&mut sluice).await;
    let before = scrape(admin).await;
    assert_eq!(value(&before, "sluice_tape_records_dropped", ""), Some(0.0));
    let seen = session(&format!("{}/mcp", sluice.url())).await;
    assert_eq!(seen.count, "counted 3");
    let after = scrape(admin).await;
    assert_eq!(value(&after, "sluice_tape_records_dropped", ""), Some(0.0));
    // Once the writer has taken every record out, nothing is left counted against the
    // queue's bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let queued = value(&scrape(admin).await, "sluice_tape_queued_bytes", "");
        if queued == Some(0.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the recorder's queue never emptied: {queued:?} bytes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    sluice.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// What a client sees of a session: the answers of its calls.
#[derive(Debug, PartialEq)]
struct Seen {
    tools: Vec<String>,
    echo: String,
    secret: String,
    count: String,
    progress: Vec<f64>,
}

async fn session(url: &str) -> Seen {
    let client = mcp::connect(url).await;
    let tools = mcp::tool_names(&client.service.list_all_tools().await.unwrap());
    let seen = Seen {
        tools,
        echo: client
            .call_text("echo", json!({"text": "héllo"}))
            .await
            .unwrap(),
        secret: client.call_text("get_secret", json!(null)).await.unwrap(),
        count: client
            .call_with_progress("count", json!({"n": 3}))
            .await
            .unwrap(),
        progress: client.wait_progress(1, Duration::from_millis(200)).await,
    };
    client.service.cancel().await.unwrap();
    seen
}

fn the_tape(dir: &Path) -> (PathBuf, Vec<Record>) {
    let file = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("a tape file");
    let records = format::read(&file).expect("a readable tape");
    (file, records)
}

/// The client-visible messages of a tape, per POST in order: (rpc method, what was sent).
fn sent_messages(records: &[Record]) -> Vec<(Option<String>, Vec<String>)> {
    let mut out: Vec<(u64, Option<String>, Vec<String>)> = Vec::new();
    for record in records {
        match record {
            Record::Request {
                stream,
                method,
                rpc_method,
                ..
            } if method == "POST" => out.push((*stream, rpc_method.clone(), Vec::new())),
            Record::Event { stream, .. } => {
                if let Some(entry) = out.iter_mut().find(|(s, ..)| s == stream)
                    && let Some(data) = record
                        .sent_event()
                        .and_then(|sent| sent.data)
                        .filter(|d| !d.is_empty())
                {
                    entry.2.push(data);
                }
            }
            _ => {}
        }
    }
    out.into_iter().map(|(_, m, d)| (m, d)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_session_replays_to_the_same_events() {
    // Live: a real server, sluice recording with a redactor and a dropper.
    let server = mcp::spawn_mcp_server().await;
    let live_dir = temp_dir("live");
    let sluice = recording_sluice(&proxy::base_of(&server.url), &live_dir).await;
    let live = session(&format!("{}/mcp", sluice.url())).await;
    // A request with credentials: they must not reach the tape (nor a credential in
    // the query string, redacted by default).
    let secret_request = Request::post(format!(
        "{}/mcp?api_key=sk-query-never-recorded&x=1",
        sluice.url()
    ))
    .header("content-type", "application/json")
    .header("accept", "application/json, text/event-stream")
    .header("authorization", "Bearer sk-credential-never-recorded")
    .header("cookie", "session=cookie-never-recorded")
    .body(Full::new(Bytes::from_static(
        br#"{"jsonrpc":"2.0","id":99,"method":"ping"}"#,
    )))
    .unwrap();
    let _ = client::text(client::send(secret_request).await).await;
    sluice.stop().await;
    drop(server);

    assert_eq!(live.secret, "the key is [REDACTED]");
    assert_eq!(live.count, "counted 3");
    assert!(live.progress.is_empty(), "the dropper removed progress");

    let (file, records) = the_tape(&live_dir);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(r#""query":"api_key=REDACTED&x=1""#), "{text}");
    // Private by default: the directory sluice made, the tape and its data file.
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&live_dir), 0o700);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&file.with_extension("data")), 0o600);
    assert!(
        !text.contains("never-recorded"),
        "credentials were recorded"
    );
    assert!(!text.to_ascii_lowercase().contains("authorization"));
    // The tape holds what the upstream sent and what the chain did with it.
    let secret_event = records
        .iter()
        .find_map(|r| match r {
            Record::Event {
                received, steps, ..
            } if received
                .data
                .as_deref()
                .is_some_and(|d| d.contains(SECRET_TEXT)) =>
            {
                Some((steps.clone(), r.sent_event()))
            }
            _ => None,
        })
        .expect("the secret's event was recorded as received");
    assert_eq!(secret_event.0[0].plugin, "redact");
    assert_eq!(secret_event.0[0].verdict, "modify");
    assert!(secret_event.0.iter().all(|s| s.fuel > 0));
    assert!(
        secret_event.1.unwrap().data.unwrap().contains("[REDACTED]"),
        "and what the client got"
    );
    let dropped = records
        .iter()
        .filter(|r| {
            matches!(r, Record::Event { steps, .. }
            if steps.iter().any(|s| s.plugin == "dropper" && s.verdict == "drop")
                // Nothing, or only the id that moves the client's cursor.
                && r.sent_event().is_none_or(|e| e.data.is_none()))
        })
        .count();
    assert_eq!(dropped, 3, "three progress notifications dropped");

    // Replay: the tape is the upstream now, behind a fresh recording sluice.
    let replay = sluice::tape::serve::start(&records, "127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let replay_dir = temp_dir("replay");
    let sluice = recording_sluice(&replay.url(), &replay_dir).await;
    let replayed = session(&format!("{}/mcp", sluice.url())).await;
    sluice.stop().await;
    replay.stop().await;

    assert_eq!(replayed, live, "the client saw the same session");
    let (_, replayed_records) = the_tape(&replay_dir);
    let live_posts = sent_messages(&records);
    let replayed_posts = sent_messages(&replayed_records);
    assert_eq!(
        replayed_posts,
        live_posts[..replayed_posts.len()],
        "the same messages reached the client, in the same order"
    );
    assert!(replayed_posts.len() >= 6, "{replayed_posts:?}");
}
