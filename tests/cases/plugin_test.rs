//! `sluice plugin test`: example plugins replayed over a hand-written tape, through the
//! library (verdicts, outputs, steps, the live-run check) and through the binary
//! (text, `--json`, `--save`/`--expect` and the exit codes 0, 1 and 2); and a tape
//! recorded through the proxy from a real MCP session, reproduced offline.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use sluice::plugin::Runtime;
use sluice::tape::format::{self, FORMAT, Record, TapeEvent, TapeStep, VERSION};
use sluice::tape::harness::{self, EventResult, Leg, Options, Report, UNREACHED};

use crate::common::mcp;
use crate::common::proxy::{self as sluice_proxy, rust, rust_plugin};

const REDACT: &str = r#"{"patterns":["sk-live-[a-z0-9]+"]}"#;
const DROP_PROGRESS: &str = r#"{"methods":["notifications/progress"]}"#;
const SECRET_RESULT: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"the key is sk-live-abc123"}]}}"#;
const PROGRESS: &str = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}"#;
const CALL: &str =
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"lookup","arguments":{}}}"#;

fn temp_path(label: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "sluice-plugin-test-{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fn event(id: &str, data: &str) -> TapeEvent {
    TapeEvent {
        id: Some(id.into()),
        event: None,
        data: Some(data.into()),
        data_at: None,
        retry: None,
    }
}

/// Steps as a live run through `redact` alone would have recorded them.
fn live(verdict: &str) -> Vec<TapeStep> {
    vec![TapeStep {
        plugin: "redact".into(),
        verdict: verdict.into(),
        micros: 7,
        fuel: 1000,
        output: None,
    }]
}

/// A POST tools/call answered on an SSE stream: a priming event (id, empty data), a
/// progress notification, then the result, which holds a secret. Recorded through
/// `redact`, so its steps are on the tape.
fn records() -> Vec<Record> {
    let stream = 1;
    let headers = [
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("mcp-protocol-version", "2025-06-18"),
        ("mcp-session-id", "session-1"),
    ];
    let redacted = SECRET_RESULT.replace("sk-live-abc123", "[REDACTED]");
    vec![
        Record::Header {
            format: FORMAT.into(),
            version: VERSION,
            upstream: "http://127.0.0.1:9/mcp".into(),
            started_unix: 1_700_000_000,
            data_file: None,
        },
        Record::Request {
            stream,
            t_ms: 0,
            method: "POST".into(),
            path: "/mcp".into(),
            query: None,
            rpc_method: Some("tools/call".into()),
            protocol_version: Some("2025-06-18".into()),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: CALL.into(),
            steps: live("pass"),
            sent: Some(CALL.into()),
            identity: None,
            generation: None,
            chain: Vec::new(),
        },
        Record::Response {
            stream,
            t_ms: 3,
            status: 200,
            headers: [("content-type".to_string(), "text/event-stream".to_string())].into(),
        },
        Record::Event {
            stream,
            t_ms: 3,
            seq: None,
            received: event("e0", ""),
            steps: Vec::new(),
            sent: None,
            unchanged: true,
        },
        Record::Event {
            stream,
            t_ms: 5,
            seq: None,
            received: event("e1", PROGRESS),
            steps: live("pass"),
            sent: None,
            unchanged: true,
        },
        Record::Comment {
            stream,
            t_ms: 6,
            text: "keep-alive".into(),
        },
        Record::Event {
            stream,
            t_ms: 8,
            seq: None,
            received: event("e2", SECRET_RESULT),
            steps: live("modify"),
            sent: Some(event("e2", &redacted)),
            unchanged: false,
        },
        Record::End {
            stream,
            t_ms: 9,
            outcome: "complete".into(),
            error: None,
        },
    ]
}

fn write_tape(records: &[Record]) -> PathBuf {
    let path = temp_path("tape").with_extension("jsonl");
    let lines: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn replay(plugins: &[(&str, &str)]) -> Report {
    let runtime = Runtime::new().unwrap();
    let specs = plugins
        .iter()
        .map(|(name, config)| rust(name, config))
        .collect();
    // Through the file, so that the tape is what `format::read` accepts.
    let tape = write_tape(&records());
    let records = format::read(&tape).unwrap();
    std::fs::remove_file(tape).unwrap();
    harness::run(&runtime, specs, &records, &Options::default()).unwrap()
}

fn verdicts(report: &Report) -> Vec<(String, &str)> {
    report
        .events
        .iter()
        .map(|e| (e.name(), e.verdict.as_str()))
        .collect()
}

fn at(report: &Report, index: usize) -> &EventResult {
    report.events.iter().find(|e| e.index == index).unwrap()
}

#[test]
fn redact_modifies_exactly_the_secret_event_and_shows_the_change() {
    let report = replay(&[("redact", REDACT)]);
    assert_eq!(
        verdicts(&report),
        vec![
            ("1/0".into(), "pass"),
            ("1/1".into(), "pass"),
            ("1/2".into(), "pass"),
            ("1/3".into(), "modify"),
        ]
    );
    let request = at(&report, 0);
    assert_eq!(request.direction, Leg::ToServer);
    assert_eq!(request.output.as_ref().unwrap().data.as_deref(), Some(CALL));
    // The priming event is transport: no plugin saw it, it goes on untouched.
    let priming = at(&report, 1);
    assert!(priming.steps.is_empty());
    assert_eq!(priming.output, Some(event("e0", "")));
    let secret = at(&report, 3);
    let output = secret.output.as_ref().unwrap();
    assert_eq!(output.id.as_deref(), Some("e2"), "the SSE id is kept");
    assert!(
        output
            .data
            .as_deref()
            .unwrap()
            .contains("the key is [REDACTED]")
    );

    let text = report.render_text();
    assert!(
        text.contains(r#"- data: {"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"the key is sk-live-abc123"}]}}"#),
        "{text}"
    );
    assert!(text.contains(r#"+ data: {"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"the key is [REDACTED]"}]}}"#), "{text}");
    assert_eq!(text.matches("- data:").count(), 1, "{text}");
    assert!(
        text.contains("4 events: 3 pass, 0 drop, 1 modify, 0 failures"),
        "{text}"
    );
    // A tape written by hand in the format of an older sluice: no component hashes,
    // no output digests. It still replays, and says what it could compare.
    assert!(
        text.contains(
            "live verdicts reproduced: 3/3 (verdict kinds only: the tape has no output \
             digests or component hashes, recorded by an older sluice)"
        ),
        "{text}"
    );
    assert!(text.contains("slowest: 1/"), "{text}");

    let summary = report.summary();
    assert_eq!(
        (summary.live_compared, summary.live_reproduced),
        (Some(3), Some(3))
    );
    assert_eq!(summary.unseen, 1);
}

#[test]
fn every_call_reports_its_time_and_fuel() {
    let report = replay(&[("redact", REDACT)]);
    let steps: Vec<_> = report.events.iter().flat_map(|e| &e.steps).collect();
    assert_eq!(steps.len(), 3, "request, progress, result");
    for step in steps {
        assert_eq!(step.plugin, "redact");
        assert!(step.fuel > 0, "{step:?}");
        assert!(step.micros > 0.0, "{step:?}");
    }
    assert!(report.summary().fuel > 0);
}

#[test]
fn dropper_drops_the_progress_event_and_keeps_its_cursor() {
    let report = replay(&[("dropper", DROP_PROGRESS)]);
    assert_eq!(
        verdicts(&report)
            .into_iter()
            .map(|(_, v)| v)
            .collect::<Vec<_>>(),
        vec!["pass", "pass", "drop", "pass"]
    );
    let progress = at(&report, 2);
    assert_eq!(
        progress.output,
        Some(TapeEvent {
            id: Some("e1".into()),
            event: None,
            data: None,
            data_at: None,
            retry: None
        }),
        "a dropped event still moves the client's last-event-id"
    );
    let text = report.render_text();
    assert!(text.contains("1 drop"), "{text}");
    assert!(
        text.contains("live verdicts: not compared (the tape was recorded through redact)"),
        "{text}"
    );
}

#[test]
fn a_chain_shows_each_plugin_and_stops_at_a_drop() {
    let report = replay(&[("dropper", DROP_PROGRESS), ("redact", REDACT)]);
    assert_eq!(report.chain, vec!["dropper", "redact"]);
    let progress = at(&report, 2);
    let walked: Vec<(&str, &str)> = progress
        .steps
        .iter()
        .map(|s| (s.plugin.as_str(), s.verdict.as_str()))
        .collect();
    assert_eq!(walked, vec![("dropper", "drop")], "redact never sees it");
    let secret = at(&report, 3);
    assert_eq!(secret.verdict, "modify");
    assert_eq!(secret.steps.len(), 2);
    let text = report.render_text();
    assert!(
        text.contains("dropper pass ") && text.contains(" | redact modify "),
        "{text}"
    );
}

#[test]
fn a_dropped_request_leaves_its_recorded_events_unreached() {
    let report = replay(&[("dropper", r#"{"methods":["tools/call"]}"#)]);
    assert_eq!(at(&report, 0).verdict, "drop");
    assert_eq!(at(&report, 0).output, None, "nothing goes upstream");
    // What the client gets instead: the proxy's JSON-RPC error, with the request's id.
    let reply: Value = serde_json::from_str(at(&report, 0).reply.as_deref().unwrap()).unwrap();
    assert_eq!(reply["id"], 1);
    assert_eq!(
        reply["error"]["code"],
        sluice::mcp::jsonrpc::DROPPED_BY_PLUGIN
    );
    let text = report.render_text();
    assert!(
        text.contains(r#"client gets: {"jsonrpc":"2.0","id":1,"error":{"code":-32050"#),
        "{text}"
    );
    assert!(!text.contains("(nothing sent)"), "{text}");
    assert!(report.events[1..].iter().all(|e| e.verdict == UNREACHED));
    assert_eq!(report.summary().unreached, 3);
    assert!(
        report.notes[0].contains("the request was dropped"),
        "{:?}",
        report.notes
    );
}

fn sluice(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["plugin", "test"])
        .args(args)
        .env("RUST_LOG", "warn")
        // The proxy's compile cache, kept out of the user's own.
        .env(
            "SLUICE_CACHE_DIR",
            std::env::temp_dir().join("sluice-plugin-test-cache"),
        )
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_binary_saves_a_golden_file_and_fails_naming_the_event_that_changed() {
    let tape = write_tape(&records());
    let golden = temp_path("golden").with_extension("jsonl");
    let redact = rust_plugin("redact");
    let (redact, tape_arg) = (path(&redact), path(&tape));

    let out = sluice(&[
        redact,
        "--tape",
        tape_arg,
        "--config",
        REDACT,
        "--save",
        path(&golden),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1/3    to-client  modify"),
        "{}",
        text(&out)
    );
    assert!(stdout.contains("+ data:"), "{}", text(&out));
    assert!(
        stdout.contains("live verdicts reproduced: 3/3"),
        "{}",
        text(&out)
    );
    let saved = std::fs::read_to_string(&golden).unwrap();
    assert_eq!(saved.lines().count(), 4, "{saved}");
    assert!(
        !saved.contains("micros") && !saved.contains("fuel"),
        "{saved}"
    );

    let out = sluice(&[
        redact,
        "--tape",
        tape_arg,
        "--config",
        REDACT,
        "--expect",
        path(&golden),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(": equal"),
        "{}",
        text(&out)
    );

    // Another pattern: the secret is no longer redacted.
    let other = r#"{"patterns":["sk-test-[a-z0-9]+"]}"#;
    let out = sluice(&[
        redact,
        "--tape",
        tape_arg,
        "--config",
        other,
        "--expect",
        path(&golden),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 event(s) differ"), "{}", text(&out));
    assert!(
        stdout.contains("1/3 to-client: expected modify, got pass"),
        "{}",
        text(&out)
    );
    assert!(stdout.contains("- data: "), "{}", text(&out));
    assert!(stdout.contains("[REDACTED]"), "{}", text(&out));

    std::fs::remove_file(golden).unwrap();
    std::fs::remove_file(tape).unwrap();
}

#[test]
fn the_binary_prints_json_for_machines() {
    let tape = write_tape(&records());
    let (dropper, redact) = (rust_plugin("dropper"), rust_plugin("redact"));
    let out = sluice(&[
        path(&dropper),
        path(&redact),
        "--tape",
        path(&tape),
        "--config",
        DROP_PROGRESS,
        "--config",
        REDACT,
        "--json",
    ]);
    std::fs::remove_file(tape).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["chain"], serde_json::json!(["dropper", "redact"]));
    let events = doc["events"].as_array().unwrap();
    assert_eq!(events.len(), 4);
    let verdicts: Vec<&str> = events
        .iter()
        .map(|e| e["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, vec!["pass", "pass", "drop", "modify"]);
    for step in events.iter().flat_map(|e| e["steps"].as_array().unwrap()) {
        assert!(step["fuel"].as_u64().unwrap() > 0, "{step}");
        assert!(step["micros"].as_f64().unwrap() > 0.0, "{step}");
    }
    assert_eq!(events[3]["output"]["id"], "e2");
    assert_eq!(doc["summary"]["drop"], 1);
    assert_eq!(doc["summary"]["modify"], 1);
    assert_eq!(doc["summary"]["events"], 4);
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let redact = rust_plugin("redact");
    let redact = path(&redact);

    let out = sluice(&[
        redact,
        "--tape",
        "/nonexistent/tape.jsonl",
        "--config",
        REDACT,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/tape.jsonl"),
        "{}",
        text(&out)
    );

    let mut future = records();
    future[0] = Record::Header {
        format: FORMAT.into(),
        version: VERSION + 1,
        upstream: String::new(),
        started_unix: 0,
        data_file: None,
    };
    let tape = write_tape(&future);
    let out = sluice(&[redact, "--tape", path(&tape), "--config", REDACT]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("tape version {}", VERSION + 1)),
        "{}",
        text(&out)
    );
    std::fs::remove_file(tape).unwrap();

    let not_a_tape = temp_path("not-a-tape");
    std::fs::write(&not_a_tape, "hello\n").unwrap();
    let out = sluice(&[redact, "--tape", path(&not_a_tape)]);
    std::fs::remove_file(&not_a_tape).unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(":1: not a tape record"),
        "{}",
        text(&out)
    );

    // redact refuses to start without patterns: the plugin is named.
    let tape = write_tape(&records());
    let out = sluice(&[redact, "--tape", path(&tape)]);
    std::fs::remove_file(tape).unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("plugin redact"),
        "{}",
        text(&out)
    );
}

/// The offline replay is the proxy's own walk: a session recorded live through a
/// redactor and a dropper gives every event the same steps and the same output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_recorded_through_the_proxy_is_reproduced_offline() {
    let chain = || vec![rust("redact", REDACT), rust("dropper", DROP_PROGRESS)];
    let server = mcp::spawn_mcp_server().await;
    let dir = temp_path("recorded");
    let running = sluice::app::start(sluice::config::Config {
        access: Default::default(),
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: sluice_proxy::base_of(&server.url),
        plugins: chain(),
        proxy: Default::default(),
        cache_dir: None,
        record_dir: Some(dir.clone()),
        tape: Default::default(),
        stdio: None,
        routes: Vec::new(),
        tls: Default::default(),
    })
    .await
    .expect("sluice starts");
    let client = mcp::connect(&format!("{}/mcp", running.url())).await;
    let secret = client.call_text("get_secret", Value::Null).await.unwrap();
    let counted = client
        .call_with_progress("count", serde_json::json!({"n": 3}))
        .await
        .unwrap();
    assert_eq!(
        (secret.as_str(), counted.as_str()),
        ("the key is [REDACTED]", "counted 3")
    );
    drop(client);
    running.stop().await;
    drop(server);

    let tape = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("a tape");
    let records = format::read(&tape).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let runtime = Runtime::new().unwrap();
    let report = harness::run(&runtime, chain(), &records, &Options::default()).unwrap();

    let summary = report.summary();
    assert!(summary.modify >= 1 && summary.drop >= 3, "{summary:?}");
    assert_eq!(
        summary.live_reproduced,
        summary.live_compared,
        "{}",
        report.render_text()
    );
    assert!(summary.live_compared.unwrap() >= 6, "{summary:?}");
    // What the proxy sent on, per event (request bodies upstream, events to the client).
    let mut live_sent = Vec::new();
    let mut seen_events: Vec<(u64, usize)> = Vec::new();
    for record in &records {
        match record {
            Record::Request {
                stream, body, sent, ..
            } if !body.is_empty() => {
                live_sent.push(((*stream, 0), sent.clone().map(|data| event_of(&data))));
            }
            Record::Event { stream, .. } => {
                let index = seen_events.iter().filter(|(s, _)| s == stream).count() + 1;
                seen_events.push((*stream, index));
                live_sent.push(((*stream, index), record.sent_event()));
            }
            _ => {}
        }
    }
    for ((stream, index), sent) in live_sent {
        let event = report
            .events
            .iter()
            .find(|e| e.stream == stream && e.index == index)
            .unwrap_or_else(|| panic!("{stream}/{index} not replayed"));
        assert_eq!(event.output, sent, "{stream}/{index}");
    }
}

fn event_of(data: &str) -> TapeEvent {
    TapeEvent {
        id: None,
        event: None,
        data: Some(data.into()),
        data_at: None,
        retry: None,
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value on the line starting with `prefix` (the first such line after `after`).
fn line_after<'a>(text: &'a str, after: &str, prefix: &str) -> &'a str {
    let start = text
        .find(after)
        .unwrap_or_else(|| panic!("no {after:?} in\n{text}"));
    text[start..]
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} after {after:?} in\n{text}"))
}

/// `--message`: a refused request shows the JSON-RPC error the proxy sends the client
/// (its own code and the request's id), not "nothing sent".
#[test]
fn a_message_refused_by_a_plugin_shows_the_error_the_client_gets() {
    let dropper = rust_plugin("dropper");
    let out = sluice(&[
        path(&dropper),
        "--config",
        r#"{"methods":["tools/call"]}"#,
        "--message",
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"lookup"}}"#,
        "--message",
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = stdout(&out);
    let verdicts: Vec<&str> = got.lines().filter(|l| l.starts_with("verdict: ")).collect();
    assert_eq!(verdicts, ["verdict: drop", "verdict: pass"], "{got}");
    assert!(
        got.contains("message 1: to-server request tools/call (id 7)"),
        "{got}"
    );
    assert!(got.contains("  plugin dropper: drop "), "{got}");
    assert!(got.contains(" fuel\n"), "{got}");
    assert_eq!(line_after(&got, "message 1:", "server gets: "), "nothing");
    let error: Value =
        serde_json::from_str(line_after(&got, "message 1:", "client gets: ")).unwrap();
    assert_eq!(error["id"], 7, "{got}");
    assert_eq!(
        error["error"]["code"],
        sluice::mcp::jsonrpc::DROPPED_BY_PLUGIN
    );
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("plugin dropper"),
        "{got}"
    );
    // The notification goes on to the server unchanged.
    assert_eq!(
        line_after(&got, "message 2:", "server gets: "),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
    );
}

/// A response after its request runs in the request's exchange (the method it answers
/// known), modified by the plugin: the output is shown, and what the client gets.
#[test]
fn a_response_modified_by_a_plugin_shows_its_output() {
    let redact = rust_plugin("redact");
    let out = sluice(&[
        path(&redact),
        "--config",
        REDACT,
        "--message",
        CALL,
        "--message",
        SECRET_RESULT,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = stdout(&out);
    assert!(
        got.contains("message 2: to-client response (id 1) to message 1 (tools/call)"),
        "{got}"
    );
    assert_eq!(line_after(&got, "message 2:", "verdict: "), "modify");
    let redacted = SECRET_RESULT.replace("sk-live-abc123", "[REDACTED]");
    assert_eq!(line_after(&got, "message 2:", "output: "), redacted);
    assert_eq!(line_after(&got, "message 2:", "client gets: "), redacted);
    assert!(got.contains("  + data: "), "{got}");

    // The same as one JSON document.
    let out = sluice(&[
        path(&redact),
        "--config",
        REDACT,
        "--message",
        SECRET_RESULT,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["input"], "messages");
    let event = &doc["events"][0];
    assert_eq!(event["outcome"], "modify");
    assert_eq!(event["direction"], "to-client");
    assert_eq!(event["output"]["data"], redacted.as_str());
    assert!(event["steps"][0]["fuel"].as_u64().unwrap() > 0);
    // The plugin's output digest, as a tape would record it.
    assert_eq!(event["steps"][0]["output"].as_str().unwrap().len(), 64);
    assert!(
        doc["notes"][0].as_str().unwrap().contains("no --method"),
        "{doc:#}"
    );
}

/// `--direction to-client` sends a notification the other way, as a server's to the
/// client, which a dropper drops (no error: nobody waits for it).
#[test]
fn a_message_can_go_to_the_client() {
    let dropper = rust_plugin("dropper");
    let args = |direction: Option<&'static str>| {
        let mut args = vec![
            path(&dropper).to_string(),
            "--config".into(),
            DROP_PROGRESS.into(),
            "--message".into(),
            PROGRESS.into(),
        ];
        if let Some(d) = direction {
            args.extend(["--direction".into(), d.into()]);
        }
        args
    };
    let run = |direction| {
        let args = args(direction);
        let out = sluice(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        stdout(&out)
    };
    let to_client = run(Some("to-client"));
    assert!(
        to_client.contains("message 1: to-client notification notifications/progress"),
        "{to_client}"
    );
    assert_eq!(line_after(&to_client, "message 1:", "verdict: "), "drop");
    assert_eq!(
        line_after(&to_client, "message 1:", "client gets: "),
        "nothing"
    );
    assert!(!to_client.contains("server gets:"), "{to_client}");
    // By default a notification goes to the server (which then gets nothing).
    let to_server = run(None);
    assert!(
        to_server.contains("message 1: to-server notification notifications/progress"),
        "{to_server}"
    );
    assert_eq!(
        line_after(&to_server, "message 1:", "server gets: "),
        "nothing"
    );
}

/// `--input`: one message per line, or one JSON document; a golden file works as for a
/// tape; bad input exits 2 naming the line.
#[test]
fn an_input_file_of_messages_runs_in_order() {
    let redact = rust_plugin("redact");
    let lines = temp_path("input").with_extension("jsonl");
    std::fs::write(&lines, format!("{CALL}\n\n{SECRET_RESULT}\n{PROGRESS}\n")).unwrap();
    let golden = temp_path("golden").with_extension("jsonl");
    let run = |extra: &[&str]| {
        let mut args = vec![path(&redact), "--config", REDACT, "--input", path(&lines)];
        args.extend(extra);
        sluice(&args)
    };
    let out = run(&["--save", path(&golden)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = stdout(&out);
    let verdicts: Vec<&str> = got.lines().filter(|l| l.starts_with("verdict: ")).collect();
    assert_eq!(
        verdicts,
        ["verdict: pass", "verdict: modify", "verdict: pass"],
        "{got}"
    );
    assert!(
        got.contains("3 messages: 2 pass, 0 drop, 1 modify"),
        "{got}"
    );
    let out = run(&["--expect", path(&golden)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains(": equal"), "{}", text(&out));

    // One pretty-printed document is one message.
    let pretty: Value = serde_json::from_str(SECRET_RESULT).unwrap();
    std::fs::write(&lines, serde_json::to_string_pretty(&pretty).unwrap()).unwrap();
    let out = run(&["--method", "tools/call"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = stdout(&out);
    assert!(
        got.contains("message 1: to-client response (id 1) to tools/call (--method)"),
        "{got}"
    );
    assert_eq!(line_after(&got, "message 1:", "verdict: "), "modify");

    std::fs::write(&lines, format!("{CALL}\nnot json\n")).unwrap();
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2: not JSON", path(&lines))),
        "{stderr}"
    );
    std::fs::remove_file(&lines).unwrap();
    std::fs::remove_file(&golden).unwrap();
}

/// A tape recorded across a hot swap: the proxy records through `filter` = redact,
/// the file is overwritten with passthrough and reloaded, and more is recorded. Tested
/// with redact again, the exchanges passthrough judged are reported as judged by
/// another component and not compared; the others are (verdicts and outputs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tape_recorded_across_a_hot_swap_is_reported_as_such() {
    let dir = temp_path("swap");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("filter.wasm");
    std::fs::copy(rust_plugin("redact"), &file).unwrap();
    let spec = sluice::plugin::PluginSpec {
        name: "filter".into(),
        source: sluice::plugin::PluginSource::File(file.clone()),
        ..rust("redact", REDACT)
    };
    let server = mcp::spawn_mcp_server().await;
    let tapes = dir.join("tapes");
    let running = sluice::app::start(sluice::config::Config {
        access: Default::default(),
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: sluice_proxy::base_of(&server.url),
        plugins: vec![spec],
        proxy: Default::default(),
        cache_dir: None,
        record_dir: Some(tapes.clone()),
        tape: Default::default(),
        stdio: None,
        routes: Vec::new(),
        tls: Default::default(),
    })
    .await
    .expect("sluice starts");
    let url = format!("{}/mcp", running.url());
    let client = mcp::connect(&url).await;
    let before = client.call_text("get_secret", Value::Null).await.unwrap();
    assert_eq!(before, "the key is [REDACTED]");
    drop(client);

    // Hot swap: another component at the same path, reloaded in the running proxy.
    let tmp = dir.join("filter.tmp");
    std::fs::copy(rust_plugin("passthrough"), &tmp).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let reloader = running.reloader().clone();
    let generation =
        tokio::task::spawn_blocking(move || reloader.reload(sluice::reload::Trigger::Api))
            .await
            .unwrap()
            .expect("the reload succeeds");
    assert_eq!(generation, 1);
    let client = mcp::connect(&url).await;
    let after = client.call_text("get_secret", Value::Null).await.unwrap();
    assert_eq!(after, "the key is sk-live-abc123", "passthrough judged it");
    drop(client);
    running.stop().await;
    drop(server);

    let tape = std::fs::read_dir(&tapes)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("a tape");
    let records = format::read(&tape).unwrap();
    let generations: Vec<Option<u64>> = records
        .iter()
        .filter_map(|r| match r {
            Record::Request { generation, .. } => Some(*generation),
            _ => None,
        })
        .collect();
    assert!(generations.contains(&Some(0)) && generations.contains(&Some(1)));

    // The old plugin, under the name the tape knows it by.
    let redact = rust_plugin("redact");
    let out = sluice(&[
        path(&redact),
        "--name",
        "filter",
        "--config",
        REDACT,
        "--tape",
        path(&tape),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = stdout(&out);
    assert!(
        got.contains("recorded by 2 chain generations (0, 1)"),
        "{got}"
    );
    assert!(
        got.contains("exchanges of generation 1 were judged by another component (filter sha256 "),
        "{got}"
    );
    let reproduced = got
        .lines()
        .find_map(|l| l.strip_prefix("live verdicts and outputs reproduced: "))
        .unwrap_or_else(|| panic!("{got}"));
    assert!(
        reproduced.ends_with("(of the events judged by this component)"),
        "{got}"
    );
    let (n, m) = reproduced
        .split_once(' ')
        .unwrap()
        .0
        .split_once('/')
        .unwrap();
    assert_eq!(n, m, "the generation 0 exchanges are reproduced: {got}");

    // Through the library: which events were compared, and that none judged by
    // passthrough counts as reproduced.
    let runtime = Runtime::new().unwrap();
    let spec = sluice::plugin::PluginSpec {
        name: "filter".into(),
        ..rust("redact", REDACT)
    };
    let report = harness::run(&runtime, vec![spec], &records, &Options::default()).unwrap();
    let summary = report.summary();
    assert!(summary.live_other_component > 0, "{summary:?}");
    assert!(summary.live_outputs);
    for event in &report.events {
        let judged_by_other = event.other_component.is_some();
        assert_eq!(
            judged_by_other,
            event.generation == Some(1),
            "{}",
            event.name()
        );
        if judged_by_other {
            assert_eq!(event.reproduces_live(), None, "{}", event.name());
        }
    }
    // The secret's result was modified live in generation 0: compared with its digest.
    assert!(report.events.iter().any(|e| {
        e.generation == Some(0)
            && e.verdict == "modify"
            && e.live_steps[0].output.is_some()
            && e.reproduces_live() == Some(true)
    }));

    // Without --name, the file stem names the plugin, which the tape does not know.
    let out = sluice(&[path(&redact), "--config", REDACT, "--tape", path(&tape)]);
    assert!(
        stdout(&out).contains("live verdicts: not compared (the tape was recorded through filter)"),
        "{}",
        text(&out)
    );
    // The new component compares the exchanges it judged, and not the others.
    let passthrough = rust_plugin("passthrough");
    let out = sluice(&[
        path(&passthrough),
        "--name",
        "filter",
        "--tape",
        path(&tape),
    ]);
    let got = stdout(&out);
    assert!(
        got.contains("exchanges of generation 0 were judged by another component"),
        "{got}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A plugin's `respond`: the client gets its answer (through the rest of the chain, as
/// in the proxy), the server nothing.
#[test]
fn a_message_answered_by_a_plugin_shows_the_answer_the_client_gets() {
    let (mock, redact) = (rust_plugin("mock"), rust_plugin("redact"));
    let out = sluice(&[
        path(&mock),
        path(&redact),
        "--config",
        r#"{"tools":{"lookup":{"content":[{"type":"text","text":"mocked sk-live-abc"}]}}}"#,
        "--config",
        REDACT,
        "--message",
        CALL,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let got = stdout(&out);
    assert_eq!(line_after(&got, "message 1:", "verdict: "), "respond");
    assert_eq!(line_after(&got, "message 1:", "server gets: "), "nothing");
    let answer: Value =
        serde_json::from_str(line_after(&got, "message 1:", "client gets: ")).unwrap();
    assert_eq!(answer["id"], 1);
    assert_eq!(
        answer["result"]["content"][0]["text"], "mocked [REDACTED]",
        "the answer went through redact on its way to the client: {got}"
    );
    assert!(got.contains("  plugin mock: respond "), "{got}");
}
