//! Events that arrive together pass batch-capable plugins (`on-events`, the `batch-*`
//! worlds) in one call, with exactly the result of one call per event: the same
//! verdicts, order, cursors and answers, next to plugins that take events one by one.
//! A batch call that breaks the contract is retried event by event.

use sluice::plugin::builtin;
use sluice::sse::Event;

use crate::common::{client, proxy, raw};

const SECRET: &str = "sk-live-abcdefgh12";

/// The data of event `i` of the test stream (`None`: a comment goes there instead).
fn message(i: usize) -> String {
    match i {
        20 => format!(
            r#"[{{"jsonrpc":"2.0","method":"notifications/message","params":{{"data":"in a batch {SECRET}"}}}},{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":"b"}}}}]"#
        ),
        39 => r#"{"jsonrpc":"2.0","id":1,"result":{"ok":true}}"#.to_string(),
        i if i % 7 == 3 => format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":"t","progress":{i}}}}}"#
        ),
        i if i % 5 == 1 => format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"data":"key {SECRET} seq {i}"}}}}"#
        ),
        i => format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"data":"seq {i}"}}}}"#
        ),
    }
}

/// All 40 events (and a keep-alive comment) in one chunk: one write, one read.
fn script() -> raw::Script {
    let mut wire = String::new();
    for i in 0..40 {
        if i == 30 {
            wire.push_str(": keep-alive\n\n");
        }
        wire.push_str(&format!("id: {i}\ndata: {}\n\n", message(i)));
    }
    raw::Script {
        content_type: "text/event-stream",
        chunks: vec![wire.into_bytes()],
        end: raw::End::Clean,
        gate: None,
    }
}

/// What the client must get through redact + dropper (progress) + passthrough.
fn expected() -> Vec<Event> {
    (0..40)
        .map(|i| {
            let id = Some(i.to_string());
            if i % 7 == 3 && i != 20 && i != 39 {
                // Dropped, but the cursor still moves.
                return Event {
                    id,
                    ..Event::default()
                };
            }
            let data = if i == 20 {
                r#"[{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"in a batch [REDACTED]"}}]"#
                    .to_string()
            } else {
                message(i).replace(SECRET, "[REDACTED]")
            };
            Event {
                id,
                data: Some(data),
                ..Event::default()
            }
        })
        .collect()
}

const REQUEST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;

#[tokio::test]
async fn batch_plugins_get_events_together_and_the_client_sees_per_event_results() {
    let upstream = raw::serve(script()).await;
    let chain = vec![
        proxy::rust("redact", r#"{"patterns":["sk-live-[a-z0-9]+"]}"#),
        proxy::rust("dropper", r#"{"methods":["notifications/progress"]}"#),
        proxy::rust("passthrough", ""),
    ];
    let sluice = proxy::start(&upstream.url(), chain).await;
    let events =
        client::events(client::post(&format!("{}/mcp", sluice.url()), REQUEST).await).await;
    assert_eq!(events, expected());

    let (redact, dropper, pass) = (
        proxy::stats(&sluice, 0),
        proxy::stats(&sluice, 1),
        proxy::stats(&sluice, 2),
    );
    // redact and passthrough export on-events; dropper does not.
    assert!(redact.batch_calls >= 1, "{redact:?}");
    assert!(pass.batch_calls >= 1, "{pass:?}");
    assert_eq!(dropper.batch_calls, 0, "{dropper:?}");
    assert!(
        redact.batch_calls < redact.calls,
        "several events per batch call: {redact:?}"
    );
    // Every plugin saw every message once: 39 single messages and the 2 of the batch,
    // and the interceptors (redact, dropper) also the client's request.
    assert_eq!(redact.calls, 1 + 41, "{redact:?}");
    assert_eq!(dropper.calls, 1 + 41, "{dropper:?}");
    assert_eq!(dropper.dropped, 7, "6 progress events and 1 in the batch");
    assert_eq!(pass.calls, 41 - 7, "{pass:?}");
    assert_eq!(
        redact.modified, 8,
        "7 secrets alone and 1 in the batch: {redact:?}"
    );
    assert_eq!(redact.failures() + dropper.failures() + pass.failures(), 0);
    sluice.stop().await;
}

#[tokio::test]
async fn a_batch_call_that_breaks_the_contract_is_retried_event_by_event() {
    let upstream = raw::serve(script()).await;
    let sluice = proxy::start(
        &upstream.url(),
        vec![proxy::wat("batchshort", builtin::BATCHSHORT)],
    )
    .await;
    let events =
        client::events(client::post(&format!("{}/mcp", sluice.url()), REQUEST).await).await;
    // Nothing lost, nothing changed: every event passed on its retry.
    let sent: Vec<Event> = (0..40)
        .map(|i| Event {
            id: Some(i.to_string()),
            data: Some(message(i)),
            ..Event::default()
        })
        .collect();
    assert_eq!(events, sent);
    let stats = proxy::stats(&sluice, 0);
    assert!(stats.batch_calls >= 1, "{stats:?}");
    assert_eq!(
        stats.traps, stats.batch_calls,
        "each failed batch call counts once"
    );
    assert_eq!(stats.passed, 41, "every message passed on_event: {stats:?}");
    assert!(
        stats.instances > stats.batch_calls,
        "a fresh instance after each failed batch call: {stats:?}"
    );
    sluice.stop().await;
}

#[tokio::test]
async fn a_recorded_stream_batches_and_its_tape_has_each_events_steps() {
    let upstream = raw::serve(script()).await;
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("tapes")
        .join(format!("batch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sluice = sluice::app::start(sluice::config::Config {
        access: Default::default(),
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: upstream.url(),
        plugins: vec![
            proxy::rust("redact", r#"{"patterns":["sk-live-[a-z0-9]+"]}"#),
            proxy::rust("dropper", r#"{"methods":["notifications/progress"]}"#),
            proxy::rust("passthrough", ""),
        ],
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
    let events =
        client::events(client::post(&format!("{}/mcp", sluice.url()), REQUEST).await).await;
    assert_eq!(
        events,
        expected(),
        "recording changes nothing the client sees"
    );
    let redact = proxy::stats(&sluice, 0);
    assert!(
        redact.batch_calls >= 1 && redact.batch_calls < redact.calls,
        "a recorded stream still batches: {redact:?}"
    );
    sluice.stop().await;

    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("a tape file");
    let records = sluice::tape::format::read(&file).expect("a readable tape");
    // Per event record: its id, its (plugin, verdict) steps, what the client got.
    type Recorded = (Option<String>, Vec<(String, String)>, Option<Event>);
    let recorded: Vec<Recorded> = records
        .iter()
        .filter(|r| matches!(r, sluice::tape::Record::Event { .. }))
        .map(|r| {
            let sluice::tape::Record::Event {
                received, steps, ..
            } = r
            else {
                unreachable!()
            };
            let steps = steps
                .iter()
                .map(|s| (s.plugin.clone(), s.verdict.clone()))
                .collect();
            (received.id.clone(), steps, r.sent_event().map(Event::from))
        })
        .collect();
    assert_eq!(recorded.len(), 40, "one record per event: {recorded:#?}");
    let step = |plugin: &str, verdict: &str| (plugin.to_string(), verdict.to_string());
    for (i, ((id, steps, sent), expected)) in recorded.iter().zip(expected()).enumerate() {
        assert_eq!(id.as_deref(), Some(i.to_string().as_str()));
        assert_eq!(
            sent.as_ref(),
            Some(&expected),
            "event {i} as the client got it"
        );
        let want = if i == 20 {
            // A JSON-RPC batch: its two messages one after the other.
            vec![
                step("redact", "modify"),
                step("dropper", "pass"),
                step("passthrough", "pass"),
                step("redact", "pass"),
                step("dropper", "drop"),
            ]
        } else if i % 7 == 3 {
            vec![step("redact", "pass"), step("dropper", "drop")]
        } else {
            let redact = if i % 5 == 1 { "modify" } else { "pass" };
            vec![
                step("redact", redact),
                step("dropper", "pass"),
                step("passthrough", "pass"),
            ]
        };
        assert_eq!(steps, &want, "steps of event {i}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
