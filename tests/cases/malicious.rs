//! The malicious-plugin suite: every way a plugin can misbehave has a defined outcome,
//! a counter and a log line, and the proxy keeps serving other streams throughout.
//!
//! Each case runs the same scenario: stream A meets the misbehaviour on the first half
//! of its events and is held open there by the upstream; stream B is opened and served
//! its first half meanwhile; then both finish. Plugins refused at load are tried as a
//! reload of a running proxy, which must keep serving on its current chain. The log
//! line is not parsed: the tests assert on the counter it comes with, or on the error
//! it quotes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use sluice::app::Running;
use sluice::plugin::{
    Capabilities, Chain, Direction, FailurePolicy, Outcome, Plugin, PluginError, PluginLimits,
    PluginSource, PluginSpec, Runtime, StreamMeta, builtin,
};
use sluice::proxy::ProxySettings;
use sluice::reload::{ReloadError, Trigger};
use sluice::sse::{Event, Frame};
use sluice::upstream::SseEvents;
use tempfile::TempDir;
use tokio::sync::Semaphore;

use crate::common::{client, proxy, raw};

/// Events per stream; the upstream pauses after half of them.
const EVENTS: usize = 4;

/// How long any one step may take before the test calls it a hang.
const PATIENCE: Duration = Duration::from_secs(30);

/// An upstream whose every stream sends `id: i` / `data: event i` for i in 1..=EVENTS,
/// pausing at the half until the test opens the gate for it.
async fn gated_upstream() -> (raw::RawUpstream, Arc<Semaphore>) {
    raw::gated_sse(EVENTS, |i| format!("event {i}")).await
}

/// One SSE response, read event by event.
struct Stream(SseEvents<Incoming>);

impl Stream {
    async fn open(sluice: &Running) -> Self {
        let response = client::post(&format!("{}/mcp", sluice.url()), "{}").await;
        assert_eq!(response.status(), 200);
        // Room for the 8 MiB event of the `huge` case.
        Self(SseEvents::new(response.into_body(), 16 << 20))
    }

    /// The next `n` events, or all that remain when `n` is `None`.
    async fn take(&mut self, n: Option<usize>) -> Vec<Event> {
        let mut events = Vec::new();
        while n.is_none_or(|n| events.len() < n) {
            let frame = tokio::time::timeout(PATIENCE, self.0.next())
                .await
                .expect("the proxy keeps the stream moving");
            match frame {
                Some(Ok(Frame::Event(event))) => events.push(event),
                Some(Ok(Frame::Comment(_))) => {}
                Some(Err(e)) => panic!("the stream broke: {e}"),
                None if n.is_none() => break,
                None => panic!("the stream ended after {} events", events.len()),
            }
        }
        events
    }
}

/// The scenario: A's first half, then B's first half while A is held open, then
/// `meanwhile` (still with both streams open), then the rest of both. Returns A's
/// events, B's events and what `meanwhile` returned.
async fn two_streams<T>(
    sluice: &Running,
    gate: &Semaphore,
    meanwhile: impl AsyncFnOnce() -> T,
) -> (Vec<Event>, Vec<Event>, T) {
    let mut a = Stream::open(sluice).await;
    let mut a_events = a.take(Some(EVENTS / 2)).await;
    let mut b = Stream::open(sluice).await;
    let mut b_events = b.take(Some(EVENTS / 2)).await;
    let meanwhile = meanwhile().await;
    gate.add_permits(2);
    let (a_rest, b_rest) = tokio::join!(a.take(None), b.take(None));
    a_events.extend(a_rest);
    b_events.extend(b_rest);
    (a_events, b_events, meanwhile)
}

/// Every event exactly once, in order, as the upstream sent it.
fn assert_unchanged(events: &[Event]) {
    let got: Vec<(Option<&str>, &str)> = events
        .iter()
        .map(|e| (e.id.as_deref(), e.data_str()))
        .collect();
    let ids: Vec<String> = (1..=EVENTS).map(|i| i.to_string()).collect();
    let data: Vec<String> = (1..=EVENTS).map(|i| format!("event {i}")).collect();
    let want: Vec<(Option<&str>, &str)> = ids
        .iter()
        .zip(&data)
        .map(|(i, d)| (Some(i.as_str()), d.as_str()))
        .collect();
    assert_eq!(got, want);
}

/// Runs the scenario with `spec` as the whole chain, returns both streams' events and
/// the plugin's counters.
async fn misbehave(
    spec: PluginSpec,
    settings: ProxySettings,
) -> (Vec<Event>, Vec<Event>, sluice::metrics::StatsSnapshot) {
    let (upstream, gate) = gated_upstream().await;
    let sluice = proxy::start_with(&upstream.url(), vec![spec], settings).await;
    let (a, b, ()) = two_streams(&sluice, &gate, async || {}).await;
    let stats = proxy::stats(&sluice, 0);
    sluice.stop().await;
    (a, b, stats)
}

/// Calls a filter gets in the scenario: every event of both streams.
const ALL: u64 = 2 * EVENTS as u64;
/// An interceptor also sees each stream's POST body on its way to the server.
const ALL_AND_BODIES: u64 = ALL + 2;

#[tokio::test]
async fn an_endless_on_event_is_cut_at_its_deadline_and_the_event_passes() {
    let (a, b, stats) = misbehave(
        proxy::fail_open(proxy::wat("loop", builtin::LOOP)),
        Default::default(),
    )
    .await;
    assert_unchanged(&a);
    assert_unchanged(&b);
    assert_eq!(stats.deadlines, ALL, "{stats:?}");
    assert_eq!(stats.failures(), ALL, "{stats:?}");
}

#[tokio::test]
async fn a_fuel_limit_stops_an_endless_on_event_before_its_deadline() {
    let spec = PluginSpec {
        powers: Default::default(),
        limits: PluginLimits {
            fuel: Some(100_000),
            deadline: Duration::from_secs(5),
            failure: FailurePolicy::Open,
            ..Default::default()
        },
        ..proxy::wat("loop", builtin::LOOP)
    };
    let (a, b, stats) = misbehave(spec, Default::default()).await;
    assert_unchanged(&a);
    assert_unchanged(&b);
    // Fuel, not the 5 s deadline, stopped every call (the counters say which limit
    // cut a call; no timing needed, so a loaded machine cannot fail this test).
    assert_eq!(stats.out_of_fuel, ALL, "{stats:?}");
    assert_eq!(stats.deadlines, 0, "{stats:?}");
}

#[tokio::test]
async fn unbounded_memory_growth_stops_at_the_cap_and_the_event_passes() {
    let (a, b, stats) = misbehave(
        proxy::fail_open(proxy::wat("grow", builtin::GROW)),
        Default::default(),
    )
    .await;
    assert_unchanged(&a);
    assert_unchanged(&b);
    assert_eq!(stats.out_of_memory, ALL, "{stats:?}");
    assert_eq!(stats.failures(), ALL, "{stats:?}");
}

#[tokio::test]
async fn a_trap_is_contained_and_the_event_passes() {
    let (a, b, stats) = misbehave(
        proxy::fail_open(proxy::wat("trap", builtin::TRAP)),
        Default::default(),
    )
    .await;
    assert_unchanged(&a);
    assert_unchanged(&b);
    assert_eq!(stats.traps, ALL, "{stats:?}");
    assert_eq!(stats.failures(), ALL, "{stats:?}");
}

/// `huge` builds its 8 MiB answer in a few milliseconds; a generous deadline keeps a
/// loaded machine from turning the case into a deadline one.
fn huge(policy: FailurePolicy) -> PluginSpec {
    PluginSpec {
        powers: Default::default(),
        limits: PluginLimits {
            deadline: Duration::from_secs(2),
            failure: policy,
            ..Default::default()
        },
        ..proxy::wat("huge", builtin::HUGE)
    }
}

#[tokio::test]
async fn a_modify_over_the_event_limit_is_refused_under_the_failure_policy() {
    // The default limit is 4 MiB: the 8 MiB result is refused and, fail-open, the
    // event passes as the plugin received it.
    let (a, b, stats) = misbehave(huge(FailurePolicy::Open), Default::default()).await;
    assert_unchanged(&a);
    assert_unchanged(&b);
    assert_eq!(stats.oversized, ALL, "{stats:?}");
    assert_eq!(stats.modified, 0, "{stats:?}");
    assert_eq!(stats.failures(), ALL, "{stats:?}");

    // Fail-closed drops it instead.
    let upstream = raw::serve(raw::Script {
        content_type: "text/event-stream",
        chunks: vec![b"data: a\n\n".to_vec(), b"data: b\n\n".to_vec()],
        end: raw::End::Clean,
        gate: None,
    })
    .await;
    let sluice = proxy::start(&upstream.url(), vec![huge(FailurePolicy::Closed)]).await;
    let events = Stream::open(&sluice).await.take(None).await;
    assert!(events.is_empty(), "{} events", events.len());
    assert_eq!(proxy::stats(&sluice, 0).oversized, 2);
    sluice.stop().await;

    // Within the limit, the same answer is an ordinary modify.
    let sluice = proxy::start_with(
        &upstream.url(),
        vec![huge(FailurePolicy::Open)],
        ProxySettings {
            max_event_bytes: 16 << 20,
            ..Default::default()
        },
    )
    .await;
    let events = Stream::open(&sluice).await.take(None).await;
    assert_eq!(events.len(), 2);
    for event in &events {
        assert_eq!(event.data_str().len(), 8 << 20);
        assert!(event.data_str().bytes().all(|b| b == b'A'));
    }
    let stats = proxy::stats(&sluice, 0);
    assert_eq!((stats.modified, stats.failures()), (2, 0), "{stats:?}");
    sluice.stop().await;
}

#[tokio::test]
async fn line_breaks_in_a_returned_id_or_event_are_removed_not_injected() {
    let (a, b, stats) = misbehave(proxy::wat("crlf", builtin::CRLF), Default::default()).await;
    for events in [&a, &b] {
        assert_eq!(events.len(), EVENTS, "no injected event: {events:?}");
        for (i, event) in events.iter().enumerate() {
            // The id stays the upstream's: plugins cannot move the client's cursor.
            assert_eq!(event.id.as_deref(), Some((i + 1).to_string().as_str()));
            assert_eq!(event.event.as_deref(), Some("xy"));
            assert_eq!(event.data_str(), format!("event {}", i + 1));
        }
    }
    // Not a failure: the result is used, sanitised, with a warning in the log.
    assert_eq!(stats.modified, ALL_AND_BODIES, "{stats:?}");
    assert_eq!(stats.failures(), 0, "{stats:?}");
}

/// A plugin file in a fresh directory, initially the pass-through filter. The directory
/// goes when the returned guard is dropped, at the end of the test.
fn plugin_file(test: &str) -> (TempDir, PathBuf) {
    let dir = scratch_dir(test);
    let path = dir.path().join("plugin.wasm");
    std::fs::write(&path, builtin::PASS).unwrap();
    (dir, path)
}

/// A fresh directory, removed when the guard is dropped.
fn scratch_dir(test: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("sluice-malicious-{test}-"))
        .tempdir()
        .unwrap()
}

/// Replaces the file the way a build tool does: write beside it, then rename.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A running proxy (pass-through plugin from a file) tries to reload with `bad` in
/// that file while two streams are open. Returns why the reload was refused, after
/// checking that both streams and a later one were served on the old chain.
async fn refused_reload(test: &str, bad: &'static [u8]) -> ReloadError {
    let (upstream, gate) = gated_upstream().await;
    let (_dir, path) = plugin_file(test);
    let spec = PluginSpec {
        powers: Default::default(),
        source: PluginSource::File(path.clone()),
        ..proxy::wat("plugin", builtin::PASS)
    };
    let sluice = proxy::start(&upstream.url(), vec![spec]).await;
    let reloader = sluice.reloader().clone();
    let (a, b, refused) = two_streams(&sluice, &gate, async move || {
        replace(&path, bad);
        let started = Instant::now();
        let result = tokio::time::timeout(
            PATIENCE,
            tokio::task::spawn_blocking(move || reloader.reload(Trigger::Api)),
        )
        .await
        .expect("a reload never hangs")
        .unwrap();
        assert!(started.elapsed() < PATIENCE);
        result.expect_err("the reload is refused")
    })
    .await;
    assert_unchanged(&a);
    assert_unchanged(&b);
    assert_eq!(refused.generation, 0);
    assert_eq!(sluice.reloader().status().generation, 0);
    assert_eq!(sluice.reloader().status().reloads.failed, 1);
    let (c, d, ()) = two_streams(&sluice, &gate, async || {}).await;
    assert_unchanged(&c);
    assert_unchanged(&d);
    sluice.stop().await;
    refused
}

fn load(spec: PluginSpec) -> Result<Plugin, PluginError> {
    Plugin::load(&Runtime::new().unwrap(), spec)
}

#[test]
fn an_endless_init_is_a_failed_load_not_a_hang() {
    let started = Instant::now();
    let err = load(proxy::wat("initloop", builtin::INITLOOP)).unwrap_err();
    assert!(matches!(err, PluginError::Init { .. }), "{err}");
    assert!(err.to_string().contains("init failed (deadline)"), "{err}");
    assert!(started.elapsed() < PATIENCE);
}

#[tokio::test]
async fn an_endless_init_in_a_reload_is_refused_while_the_proxy_serves() {
    let refused = refused_reload("initloop", builtin::INITLOOP).await;
    assert!(
        refused.reason().contains("init failed (deadline)"),
        "{refused}"
    );
}

#[test]
fn a_plugin_importing_wasi_it_was_not_granted_is_refused_with_how_to_grant_it() {
    let stdout = load(proxy::wat("wasi-stdout", builtin::WASI_STDOUT)).unwrap_err();
    let PluginError::WasiNotGranted { imports, .. } = &stdout else {
        panic!("{stdout}");
    };
    assert!(
        imports.iter().any(|i| i == "wasi:cli/stdout@0.2.0"),
        "{imports:?}"
    );
    let message = stdout.to_string();
    assert!(message.contains("wasi:cli/stdout@0.2.0"), "{message}");
    assert!(message.contains("not granted"), "{message}");
    assert!(
        message.contains("capabilities = { stdio = true }"),
        "{message}"
    );

    let read = load(proxy::wat("wasi-read", builtin::WASI_READ)).unwrap_err();
    assert!(
        read.to_string().contains("wasi:filesystem/preopens@0.2.0"),
        "{read}"
    );
}

#[tokio::test]
async fn a_wasi_import_in_a_reload_is_refused_while_the_proxy_serves() {
    let refused = refused_reload("wasi", builtin::WASI_STDOUT).await;
    assert!(
        refused.reason().contains("wasi:cli/stdout@0.2.0") && refused.reason().contains("granted"),
        "{refused}"
    );
}

// Grants give exactly what they name.

/// A plugin with grants. The deadline is generous: time spent in WASI host calls
/// (writing to stdout, opening files) counts against it, and these cases are about
/// what the grants allow, not about a busy test machine's I/O latency.
fn granted(name: &str, bytes: &'static [u8], config: &str, caps: Capabilities) -> PluginSpec {
    PluginSpec {
        powers: Default::default(),
        config: config.into(),
        capabilities: caps,
        limits: PluginLimits {
            deadline: Duration::from_secs(2),
            ..Default::default()
        },
        ..proxy::wat(name, bytes)
    }
}

fn stdio() -> Capabilities {
    Capabilities {
        stdio: true,
        read_dir: None,
        wasi: false,
    }
}

fn read_dir(dir: &Path) -> Capabilities {
    Capabilities {
        stdio: false,
        read_dir: Some(dir.to_path_buf()),
        wasi: false,
    }
}

// Multi-thread, like the sluice binary: WASI calls go through `block_in_place` there
// (the other cases run on a current-thread runtime, where they take a thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_lets_a_plugin_write_to_stdout_while_the_proxy_serves() {
    // The fixture writes one line per event to the test's stdout, through WASI calls
    // made from the proxy's async workers.
    let spec = granted("wasi-stdout", builtin::WASI_STDOUT, "", stdio());
    let (a, b, stats) = misbehave(spec, Default::default()).await;
    assert_unchanged(&a);
    assert_unchanged(&b);
    assert_eq!((stats.passed, stats.failures()), (ALL, 0), "{stats:?}");
}

/// For toolchains that always import WASI (Python without stubs, C with stdio, Go):
/// `wasi = true` links WASI with nothing granted: the plugin loads, and its writes go
/// nowhere.
#[tokio::test]
async fn an_empty_wasi_context_loads_a_wasi_plugin_and_grants_nothing() {
    let empty = || Capabilities {
        wasi: true,
        ..Capabilities::default()
    };
    let spec = granted("wasi-stdout", builtin::WASI_STDOUT, "", empty());
    let (a, b, stats) = misbehave(spec, Default::default()).await;
    assert_unchanged(&a);
    assert_unchanged(&b);
    assert_eq!((stats.passed, stats.failures()), (ALL, 0), "{stats:?}");
}

#[tokio::test]
async fn a_read_dir_is_readable_at_data_and_nothing_more() {
    let scratch = scratch_dir("read-dir");
    let root = scratch.path();
    let data = root.join("granted");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("hello.txt"), "hello from the host").unwrap();
    std::fs::write(root.join("secret.txt"), "outside the grant").unwrap();

    // Through the proxy, with two streams. The fixture replaces every event's data with
    // the file; a JSON-RPC message (each stream's `{}` request) may not become plain
    // text, so those two results are refused (`malformed`) and, fail-open, the
    // requests go as they were.
    let spec = proxy::fail_open(granted(
        "wasi-read",
        builtin::WASI_READ,
        "hello.txt",
        read_dir(&data),
    ));
    let (a, b, stats) = misbehave(spec, Default::default()).await;
    for events in [&a, &b] {
        let data: Vec<&str> = events.iter().map(Event::data_str).collect();
        assert_eq!(data, ["hello from the host"; EVENTS]);
    }
    assert_eq!(
        (stats.modified, stats.malformed, stats.failures()),
        (ALL, 2, 2),
        "{stats:?}"
    );

    // What else it can and cannot do, one event each.
    let runtime = Runtime::new().unwrap();
    let answer = |config: &str, caps: Capabilities| {
        let plugin = Plugin::load(
            &runtime,
            granted("wasi-read", builtin::WASI_READ, config, caps),
        )
        .expect("loads");
        let chain = Arc::new(Chain::new(vec![plugin]));
        let mut session = chain.session(StreamMeta::default());
        session.begin(Direction::ToClient);
        match session.on_event(Event::message("x")) {
            Outcome::Forward(event) => event.data_str().to_string(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(answer("", read_dir(&data)), sluice::plugin::GUEST_DIR);
    assert_eq!(answer("write:new.txt", read_dir(&data)), "denied");
    assert!(!data.join("new.txt").exists());
    assert_eq!(answer("../secret.txt", read_dir(&data)), "denied");
    assert_eq!(answer("missing.txt", read_dir(&data)), "denied");
    assert_eq!(answer("hello.txt", stdio()), "no preopened directory");

    // stdout not granted: the writes go to an empty sink and the call succeeds.
    let quiet = Plugin::load(
        &runtime,
        granted("wasi-stdout", builtin::WASI_STDOUT, "", read_dir(&data)),
    )
    .expect("loads");
    let chain = Arc::new(Chain::new(vec![quiet]));
    let mut session = chain.session(StreamMeta::default());
    session.begin(Direction::ToClient);
    assert_eq!(
        session.on_event(Event::message("unheard")),
        Outcome::Forward(Event::message("unheard"))
    );
    assert_eq!(chain.stats(0).failures(), 0);

    // A grant that cannot be honoured is a load error.
    let missing = load(granted(
        "wasi-read",
        builtin::WASI_READ,
        "",
        read_dir(&root.join("nope")),
    ))
    .unwrap_err();
    assert!(
        matches!(missing, PluginError::Capability { .. }),
        "{missing}"
    );
    assert!(missing.to_string().contains("nope"), "{missing}");
}
