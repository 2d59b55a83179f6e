//! The reference filter (plugins/README.md, "The reference filter") in every language:
//! each built component runs the same events in sluice's host and must give the same
//! verdicts, the same outputs and the same log lines as the hand-written expectations
//! (and so as the Rust one, the normative implementation).
//!
//! Required here (a missing component fails the test): the languages whose toolchain
//! `.ci/run` installs and `plugins/build-all.sh` builds. The others are checked when
//! their component exists in `plugins/dist/` and skipped with a note otherwise.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::plugin::{
    Chain, CompileCache, Contract, Direction, Outcome, Plugin, PluginError, PluginLimits,
    PluginSource, PluginSpec, Runtime, StreamMeta, builtin,
};
use sluice::sse::Event;

/// (language, required in CI). Python and JavaScript are required too when their build
/// script exists, since `plugins/build-all.sh` then builds them.
const LANGUAGES: &[(&str, bool)] = &[
    ("rust", true),
    ("c", true),
    ("zig", true),
    ("python", false),
    ("js", false),
    // The C reference as it was, built against sluice:plugin@0.1.0 as first published
    // (`wit/0.1.0`, stream-info of six fields): the compatibility fixture.
    ("c-v0.1.0", true),
];

const CONFIG: &str = r#"{
  "redact": ["sk-live-", "pässwörd", "line1\nline2", "AAAA", "\ud83d\udd11"],
  "drop_methods": ["notifications/progress", "ping/é", "has\"quote"],
  "drop_events": ["ping", "message-x"]
}"#;

const LOG_MESSAGE: &str = "reference: redacted data in this stream";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Pass,
    Drop,
    Modify(Event),
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The built components to check: every required language (missing = failure) and
/// every optional one that was built.
fn components() -> Vec<(&'static str, PathBuf)> {
    let mut found = Vec::new();
    for &(language, required) in LANGUAGES {
        let path = root().join(format!("plugins/dist/reference-{language}.wasm"));
        let required = required || root().join(format!("plugins/{language}/build.sh")).exists();
        if path.exists() {
            found.push((language, path));
        } else if required {
            panic!(
                "{} is missing: run plugins/build-all.sh (after plugins/setup.sh), or bash .ci/run",
                path.display()
            );
        } else {
            eprintln!(
                "note: {} not built, {language} skipped (plugins/build-all.sh builds it)",
                path.display()
            );
        }
    }
    found
}

/// A runtime with a compile cache of its own, removed when the guard is dropped.
struct CachedRuntime {
    runtime: Arc<Runtime>,
    dir: PathBuf,
}

impl Drop for CachedRuntime {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn runtime(test: &str) -> CachedRuntime {
    // One cache per test, so each component is compiled once however many
    // configurations it is loaded with (Python and JavaScript take seconds).
    let dir = std::env::temp_dir().join(format!("sluice-{test}-{}", std::process::id()));
    let cache = CompileCache::new(&dir).expect("cache dir");
    CachedRuntime {
        runtime: Runtime::with_cache(Some(cache)).expect("runtime"),
        dir,
    }
}

fn load(
    runtime: &Arc<Runtime>,
    name: &str,
    source: PluginSource,
    config: &str,
) -> Result<Plugin, PluginError> {
    Plugin::load(
        runtime,
        PluginSpec {
            powers: Default::default(),
            name: name.to_string(),
            source,
            config: config.to_string(),
            // Behaviour, not speed: a 1 MiB event in an interpreted guest takes a while.
            limits: PluginLimits {
                deadline: Duration::from_secs(20),
                memory_bytes: 512 << 20,
                ..PluginLimits::default()
            },
            capabilities: Default::default(),
        },
    )
}

fn ev(data: &str) -> Event {
    Event::message(data)
}

fn typed(event: &str, data: &str) -> Event {
    Event {
        event: Some(event.to_string()),
        ..Event::message(data)
    }
}

fn modified(event: &Event, data: &str) -> Verdict {
    Verdict::Modify(Event {
        data: Some(data.to_string()),
        ..event.clone()
    })
}

/// A log capture for the plugin's `log` calls (the host turns them into `tracing`
/// events on the calling thread).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs phases of events through one session of `plugin`; returns the verdicts and
/// how many times the reference log line was written.
fn run(plugin: Plugin, phases: &[(Direction, Vec<Event>)]) -> (Vec<Verdict>, usize) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let verdicts = tracing::subscriber::with_default(subscriber, || {
        let chain = Arc::new(Chain::new(vec![plugin]));
        let plugin = chain.plugins()[0].clone();
        let mut session = chain.session(StreamMeta {
            stream_id: 1,
            method: "POST".into(),
            path: "/mcp".into(),
            ..StreamMeta::default()
        });
        let mut verdicts = Vec::new();
        for (direction, events) in phases {
            session.begin(*direction);
            for event in events {
                let before = chain.stats(0);
                let outcome = session.on_event(event.clone());
                let after = chain.stats(0);
                assert_eq!(
                    after.failures(),
                    before.failures(),
                    "{}: plugin failed",
                    plugin.name()
                );
                verdicts.push(match outcome {
                    Outcome::Answered { .. } | Outcome::Held { .. } => {
                        panic!("the reference filter neither answers nor holds")
                    }
                    Outcome::Dropped { failure: None, .. } => Verdict::Drop,
                    Outcome::Dropped {
                        failure: Some(f), ..
                    } => panic!("failure {f:?}"),
                    Outcome::Forward(out) if after.modified > before.modified => {
                        Verdict::Modify(out)
                    }
                    Outcome::Forward(out) => {
                        assert_eq!(&out, event, "pass forwards the event untouched");
                        Verdict::Pass
                    }
                });
            }
        }
        session.end();
        verdicts
    });
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    (verdicts, logs.matches(LOG_MESSAGE).count())
}

/// The events going to the client, with the verdict each one must get under CONFIG.
fn to_client_cases() -> Vec<(Event, Verdict)> {
    let mut cases = Vec::new();
    let mut add = |event: Event, verdict: fn(&Event) -> Verdict| {
        let v = verdict(&event);
        cases.push((event, v));
    };
    add(ev("hello"), |_| Verdict::Pass);
    add(ev(""), |_| Verdict::Pass);
    add(
        Event {
            data: None,
            id: Some("1".into()),
            ..Event::default()
        },
        |_| Verdict::Pass,
    );
    add(ev("clé: pässwörd ✓ 🎉 🔑"), |e| {
        modified(e, "clé: [REDACTED] ✓ 🎉 [REDACTED]")
    });
    add(ev("line0\nline1\nline2\nsk-live-abc\n"), |e| {
        modified(e, "line0\n[REDACTED]\n[REDACTED]abc\n")
    });
    add(
        Event {
            id: Some("7".into()),
            event: Some("update".into()),
            data: Some("token sk-live-1 and sk-live-2".into()),
            retry: Some(1500),
        },
        |e| modified(e, "token [REDACTED]1 and [REDACTED]2"),
    );
    add(ev("AAAAAAAAAA"), |e| modified(e, "[REDACTED][REDACTED]AA"));
    add(ev("sk-livesk-live-"), |e| modified(e, "sk-live[REDACTED]"));
    add(typed("ping", "sk-live-x"), |_| Verdict::Drop);
    add(typed("message-x", ""), |_| Verdict::Drop);
    add(typed("", "empty type is message"), |_| Verdict::Pass);
    add(typed("Ping", "case matters"), |_| Verdict::Pass);
    let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#;
    add(ev(progress), |_| Verdict::Drop);
    add(
        ev(" \n{\n  \"method\" :\t\"notifications/progress\"\n}\r\n"),
        |_| Verdict::Drop,
    );
    add(ev(r#"[{"method":"notifications/progress"}]"#), |_| {
        Verdict::Pass
    });
    add(ev(r#"{"method":"notifications\/progress"}"#), |_| {
        Verdict::Pass
    });
    add(
        ev(r#"{"id":1,"result":{"method":"notifications/progress"}}"#),
        |_| Verdict::Drop,
    );
    add(
        ev(r#"{"params":{"method":"x"},"method":"notifications/progress"}"#),
        |_| Verdict::Drop,
    );
    add(ev(r#"{"method":"notifications/progress}"#), |_| {
        Verdict::Pass
    });
    add(ev(r#"{"method" "notifications/progress"}"#), |_| {
        Verdict::Pass
    });
    add(ev(r#"{"method":"notifications/progress" "#), |_| {
        Verdict::Pass
    });
    add(ev(r#"{"method":"notifications/progress2"}"#), |_| {
        Verdict::Pass
    });
    add(ev(r#"{"method":"ping/é","x":"sk-live-"}"#), |_| {
        Verdict::Drop
    });
    add(ev(r#"{"method":"has\"quote"}"#), |_| Verdict::Pass);
    add(
        ev(r#"{"method":"tools/call","params":{"key":"sk-live-9"}}"#),
        |e| {
            modified(
                e,
                r#"{"method":"tools/call","params":{"key":"[REDACTED]9"}}"#,
            )
        },
    );
    // 1 MiB events: one with secrets, one plain, one dropped at its very end.
    let chunk = format!("{}sk-live-{}\n", "x".repeat(1000), "é".repeat(10));
    let big = chunk.repeat((1 << 20) / chunk.len() + 1);
    let big_out = big.replace("sk-live-", "[REDACTED]");
    add(ev(&"y".repeat(1 << 20)), |_| Verdict::Pass);
    let big_drop = format!(
        r#"{{"pad":"{}","method":"notifications/progress"}}"#,
        "z".repeat(1 << 20)
    );
    add(ev(&big_drop), |_| Verdict::Drop);
    cases.push((ev(&big), Verdict::Modify(ev(&big_out))));
    cases
}

/// Client messages (to-server phase), before the response phase.
fn to_server_cases() -> Vec<(Event, Verdict)> {
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"password":"pässwörd"}}"#;
    let call_out =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"password":"[REDACTED]"}}"#;
    vec![
        (ev(call), Verdict::Modify(ev(call_out))),
        (ev("sk-live-again"), Verdict::Modify(ev("[REDACTED]again"))),
        (
            ev(r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#),
            Verdict::Drop,
        ),
    ]
}

fn check_language(runtime: &Arc<Runtime>, language: &str, path: &Path) {
    let source = || PluginSource::File(path.to_path_buf());
    let name = format!("reference-{language}");

    // The main sequence: to-server, then to-client, in one exchange.
    let server = to_server_cases();
    let client = to_client_cases();
    let plugin = load(runtime, &name, source(), CONFIG).unwrap_or_else(|e| panic!("{name}: {e}"));
    let contract = plugin.contract();
    let want_contract = if language == "c-v0.1.0" {
        Contract::V0_1Published
    } else {
        Contract::V0_2
    };
    assert_eq!(
        contract, want_contract,
        "{name}: built against the wrong contract"
    );
    let (verdicts, logs) = run(
        plugin,
        &[
            (
                Direction::ToServer,
                server.iter().map(|c| c.0.clone()).collect(),
            ),
            (
                Direction::ToClient,
                client.iter().map(|c| c.0.clone()).collect(),
            ),
        ],
    );
    let expected: Vec<Verdict> = server.iter().chain(&client).map(|c| c.1.clone()).collect();
    assert_eq!(verdicts.len(), expected.len());
    for (i, (got, want)) in verdicts.iter().zip(&expected).enumerate() {
        assert!(
            got == want,
            "{name}: event {i}: got {:.300?}, want {:.300?}",
            got,
            want
        );
    }
    // A 0.1 instance hears of each phase (on-stream-start) and logs once per phase;
    // a 0.2 instance serves the exchange and logs once for it.
    let want_logs = if contract == Contract::V0_2 { 1 } else { 2 };
    assert_eq!(
        logs, want_logs,
        "{name}: one log line per stream (0.1: per phase) with a redaction"
    );

    // Other configurations.
    let single = |config: &str, events: Vec<Event>| {
        let plugin = load(runtime, &name, source(), config)
            .unwrap_or_else(|e| panic!("{name}: {config:?}: {e}"));
        run(plugin, &[(Direction::ToClient, events)])
    };
    let progress = ev(r#"{"method":"notifications/progress"}"#);
    for empty in [
        "",
        " \n\t",
        "{}",
        r#"{"redact":[],"drop_methods":[],"drop_events":[]}"#,
    ] {
        let (v, logs) = single(
            empty,
            vec![ev("sk-live-1"), typed("ping", "x"), progress.clone()],
        );
        assert_eq!(
            v,
            [Verdict::Pass, Verdict::Pass, Verdict::Pass],
            "{name}: config {empty:?}"
        );
        assert_eq!(logs, 0);
    }
    // Each pattern sees the result of the previous one, marker included; a replacement
    // that changes nothing is still a modify.
    let (v, _) = single(
        r#"{"redact":["a","[REDACTED]", "TED]b"]}"#,
        vec![ev("banana"), ev("[REDACTED]b")],
    );
    assert_eq!(
        v,
        [
            Verdict::Modify(ev("b[REDACTED]n[REDACTED]n[REDACTED]")),
            Verdict::Modify(ev("[REDAC[REDACTED]")),
        ],
        "{name}"
    );
    // JSON escapes in the config.
    let (v, _) = single(
        r#"{"drop_events":["\u0070ing"],"redact":["caf\u00e9\n","\ud83c\udf89","\"\\\/"]}"#,
        vec![typed("ping", ""), ev("un café\n🎉 \"\\/"), ev("cafe\n")],
    );
    assert_eq!(
        v,
        [
            Verdict::Drop,
            Verdict::Modify(ev("un [REDACTED][REDACTED] [REDACTED]")),
            Verdict::Pass,
        ],
        "{name}"
    );

    // Refused configurations.
    for bad in [
        "nope",
        "[]",
        "null",
        r#"{"redact":"x"}"#,
        r#"{"redact":null}"#,
        r#"{"redact":[1]}"#,
        r#"{"redact":["a",null]}"#,
        r#"{"redact":[""]}"#,
        r#"{"other":[]}"#,
        r#"{"Redact":["a"]}"#,
        r#"{"redact":["a"]} x"#,
        r#"{"redact":["a"],}"#,
        r#"{"redact":["a\x"]}"#,
        "{\"redact\":[\"tab\tinside\"]}",
        r#"{"redact":["a"]"#,
    ] {
        match load(runtime, &name, source(), bad) {
            Err(PluginError::Init { source, .. }) => {
                let reason = source.to_string();
                assert!(
                    reason.contains("reference"),
                    "{name}: {bad:?}: message {reason:?} does not name the plugin"
                )
            }
            other => panic!("{name}: config {bad:?} must make init fail, got {other:?}"),
        }
    }
}

#[test]
fn the_reference_filter_behaves_the_same_in_every_language() {
    let cached = runtime("languages");
    let runtime = &cached.runtime;
    let components = components();
    for (language, path) in &components {
        eprintln!("checking reference-{language} ({})", path.display());
        check_language(runtime, language, path);
    }
    let checked: Vec<_> = components.iter().map(|c| c.0).collect();
    eprintln!("reference filter checked in: {checked:?} + wat (subset)");
}

/// The WAT subset: only the method rule with drop_methods = ["notifications/progress"].
/// It must agree with the full filter configured that way (Rust, the normative one).
#[test]
fn the_wat_subset_agrees_with_the_full_filter() {
    let cached = runtime("wat-subset");
    let runtime = &cached.runtime;
    let events: Vec<Event> = to_client_cases().into_iter().map(|c| c.0).collect();
    let wat = load(
        runtime,
        "reference-wat",
        PluginSource::Bytes(builtin::REFERENCE),
        "",
    )
    .expect("wat reference loads");
    let (got, logs) = run(wat, &[(Direction::ToClient, events.clone())]);
    assert_eq!(logs, 0);
    let drops: Vec<usize> = (0..got.len())
        .filter(|&i| got[i] == Verdict::Drop)
        .collect();
    assert!(
        !got.iter().any(|v| matches!(v, Verdict::Modify(_))),
        "the subset never modifies"
    );
    // The indices, in to_client_cases, of the events the method rule drops for
    // "notifications/progress": compact, pretty-printed, nested, second occurrence, 1 MiB.
    assert_eq!(
        drops,
        [12, 13, 16, 17, 26],
        "the WAT subset drops exactly these"
    );
    let rust = root().join("plugins/dist/reference-rust.wasm");
    if rust.exists() {
        let full = load(
            runtime,
            "reference-rust",
            PluginSource::File(rust),
            r#"{"drop_methods":["notifications/progress"]}"#,
        )
        .expect("rust reference loads");
        let (want, _) = run(full, &[(Direction::ToClient, events)]);
        assert_eq!(got, want, "the WAT subset agrees with reference-rust");
    }
}
