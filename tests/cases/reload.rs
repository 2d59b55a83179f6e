//! Hot swap: the file watcher, SIGHUP and the admin API swap the chain for new streams;
//! streams in flight finish on their chain; every event arrives exactly once; a broken
//! plugin changes nothing but a logged, reported error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sluice::app::Running;
use sluice::plugin::builtin;
use sluice::reload::Trigger;
use sluice::sse::Event;
use tempfile::TempDir;
use tokio::sync::Semaphore;

use crate::common::{client, proxy, raw};

const EVENTS: usize = 40;

/// An upstream whose every stream sends `EVENTS` events carrying a secret, pausing at
/// the half until the test opens the gate for it.
async fn gated_upstream() -> (raw::RawUpstream, Arc<Semaphore>) {
    raw::gated_sse(EVENTS, |i| format!("key sk-abc{i}")).await
}

/// A plugin file in a fresh directory, initially the pass-through filter. The directory
/// goes when the returned guard is dropped, at the end of the test.
fn plugin_file(test: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("sluice-reload-{test}-"))
        .tempdir()
        .unwrap();
    let path = dir.path().join("filter.wasm");
    std::fs::write(&path, builtin::PASS).unwrap();
    (dir, path)
}

/// Replaces the file the way a build tool does: write beside it, then rename.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn start(upstream: &raw::RawUpstream, path: &Path) -> Running {
    let spec = sluice::plugin::PluginSpec {
        powers: Default::default(),
        name: "filter".into(),
        source: sluice::plugin::PluginSource::File(path.to_path_buf()),
        ..proxy::wat("filter", builtin::PASS)
    };
    proxy::start(&upstream.url(), vec![spec]).await
}

/// Opens a stream and returns a task that collects its events.
async fn open(sluice: &Running) -> tokio::task::JoinHandle<Vec<Event>> {
    let response = client::post(&format!("{}/mcp", sluice.url()), "{}").await;
    tokio::spawn(client::events(response))
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    // A safety net, not a timing assertion: reloads compile plugins, and a loaded CI
    // machine can take a while.
    for _ in 0..3000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Every event exactly once and in order; `masked` says which chain handled it.
fn assert_stream(events: &[Event], masked: bool) {
    let ids: Vec<String> = events
        .iter()
        .map(|e| e.id.clone().unwrap_or_default())
        .collect();
    let expected: Vec<String> = (1..=EVENTS).map(|i| i.to_string()).collect();
    assert_eq!(ids, expected, "every event exactly once, in order");
    for (i, event) in events.iter().enumerate() {
        let data = event.data_str();
        if masked {
            assert!(
                data.starts_with("key sk-***"),
                "event {i} should be masked: {data}"
            );
        } else {
            assert_eq!(data, format!("key sk-abc{}", i + 1));
        }
    }
}

#[tokio::test]
async fn the_watcher_swaps_plugins_for_new_streams_while_old_streams_finish_unchanged() {
    let (upstream, gate) = gated_upstream().await;
    let (_dir, path) = plugin_file("watch");
    let mut sluice = start(&upstream, &path).await;
    sluice.watch_files().unwrap();
    let reloader = sluice.reloader().clone();

    // A stream opens on generation 0 (pass) and is held at its half.
    let first = open(&sluice).await;
    replace(&path, builtin::DEMO);
    wait_for("generation 1", || reloader.status().generation == 1).await;
    let second = open(&sluice).await;
    std::fs::write(&path, builtin::PASS).unwrap(); // in place this time
    wait_for("generation 2", || reloader.status().generation == 2).await;
    let third = open(&sluice).await;

    // A broken build changes nothing but the reported error.
    replace(&path, b"\0asm this is not a component");
    wait_for("a failed reload", || reloader.status().reloads.failed >= 1).await;
    let status = reloader.status();
    assert_eq!(status.generation, 2);
    assert!(
        status
            .reloads
            .last_error
            .as_deref()
            .unwrap()
            .contains("filter"),
        "{status:?}"
    );
    let fourth = open(&sluice).await;

    gate.add_permits(4);
    assert_stream(&first.await.unwrap(), false);
    assert_stream(&second.await.unwrap(), true);
    assert_stream(&third.await.unwrap(), false);
    assert_stream(&fourth.await.unwrap(), false);
    sluice.stop().await;
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads() {
    let (upstream, gate) = gated_upstream().await;
    let (_dir, path) = plugin_file("sighup");
    let mut sluice = start(&upstream, &path).await;
    sluice.reload_on_sighup().unwrap();
    let reloader = sluice.reloader().clone();
    let before = open(&sluice).await;
    replace(&path, builtin::DEMO);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for("generation 1", || reloader.status().generation == 1).await;
    let after = open(&sluice).await;
    gate.add_permits(2);
    assert_stream(&before.await.unwrap(), false);
    assert_stream(&after.await.unwrap(), true);
    sluice.stop().await;
}

#[tokio::test]
async fn the_admin_api_reloads_reports_and_requires_its_token() {
    let (upstream, gate) = gated_upstream().await;
    let (_dir, path) = plugin_file("admin");
    let mut sluice = start(&upstream, &path).await;
    let admin = sluice
        .serve_admin("127.0.0.1:0".parse().unwrap(), Some("s3cret".into()))
        .await
        .unwrap();
    let call = |method: &str, route: &str, token: Option<&str>| {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{admin}{route}"));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let json = |text: String| serde_json::from_str::<serde_json::Value>(&text).unwrap();

    assert_eq!(
        client::send(call("GET", "/admin/plugins", None))
            .await
            .status(),
        401
    );
    assert_eq!(
        client::send(call("GET", "/admin/plugins", Some("wrong")))
            .await
            .status(),
        401
    );
    let plugins =
        json(client::text(client::send(call("GET", "/admin/plugins", Some("s3cret"))).await).await);
    assert_eq!(plugins["generation"], 0);
    assert_eq!(plugins["plugins"][0]["name"], "filter");
    assert_eq!(plugins["plugins"][0]["world"], "filter");

    replace(&path, builtin::DEMO);
    let reloaded = client::send(call("POST", "/admin/reload", Some("s3cret"))).await;
    assert_eq!(reloaded.status(), 200);
    assert_eq!(json(client::text(reloaded).await)["generation"], 1);
    let masked = open(&sluice).await;

    replace(&path, b"garbage");
    let refused = client::send(call("POST", "/admin/reload", Some("s3cret"))).await;
    assert_eq!(refused.status(), 422);
    let refused = json(client::text(refused).await);
    assert_eq!(refused["generation"], 1);
    assert!(
        refused["error"].as_str().unwrap().contains("filter"),
        "{refused}"
    );
    let plugins =
        json(client::text(client::send(call("GET", "/admin/plugins", Some("s3cret"))).await).await);
    assert_eq!(plugins["generation"], 1);
    assert_eq!(plugins["plugins"][0]["world"], "interceptor");
    assert_eq!(plugins["reloads"]["succeeded"], 1);
    assert_eq!(plugins["reloads"]["failed"], 1);
    let still_masked = open(&sluice).await;

    gate.add_permits(2);
    assert_stream(&masked.await.unwrap(), true);
    assert_stream(&still_masked.await.unwrap(), true);
    assert_eq!(
        sluice
            .reloader()
            .reload(Trigger::Api)
            .unwrap_err()
            .generation,
        1
    );
    sluice.stop().await;
}

/// A config file with three plugins; `swap` puts the two redactors the other way round.
fn three_plugin_file(redact: &Path, passthrough: &Path, swap: bool) -> String {
    let first = format!(
        "[[plugin]]\nname = \"secrets\"\npath = \"{}\"\nconfig = {{ patterns = [\"sk-[a-z0-9]+\"] }}\n",
        redact.display()
    );
    let second = format!(
        "[[plugin]]\nname = \"markers\"\npath = \"{}\"\nconfig = {{ patterns = [\"REDACTED\"], marker = \"X\" }}\n",
        redact.display()
    );
    let third = format!("[[plugin]]\npath = \"{}\"\n", passthrough.display());
    let (a, b) = if swap {
        (second, first)
    } else {
        (first, second)
    };
    format!("{a}\n{b}\n{third}")
}

#[tokio::test]
async fn reordering_the_config_file_while_running_takes_effect_for_new_streams() {
    let (upstream, gate) = gated_upstream().await;
    let (scratch, _) = plugin_file("config");
    let dir = scratch.path();
    let toml = dir.join("sluice.toml");
    let (redact, passthrough) = (
        proxy::rust_plugin("redact"),
        proxy::rust_plugin("passthrough"),
    );
    std::fs::write(&toml, three_plugin_file(&redact, &passthrough, false)).unwrap();
    let file = sluice::config::ChainFile {
        path: toml.clone(),
        overrides: Default::default(),
    };
    let config = sluice::config::Config {
        access: Default::default(),
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: upstream.url(),
        plugins: Vec::new(),
        proxy: Default::default(),
        cache_dir: None,
        record_dir: None,
        tape: Default::default(),
        stdio: None,
        routes: Vec::new(),
        tls: Default::default(),
    };
    let source = Box::new(move || file.load());
    let mut sluice = sluice::app::start_with_source(config, source, vec![toml.clone()])
        .await
        .unwrap();
    sluice.watch_files().unwrap();
    let reloader = sluice.reloader().clone();
    let names = |r: &sluice::reload::Reloader| -> Vec<String> {
        r.status().plugins.into_iter().map(|p| p.name).collect()
    };
    assert_eq!(names(&reloader), ["secrets", "markers", "passthrough"]);

    let before = open(&sluice).await;
    std::fs::write(&toml, three_plugin_file(&redact, &passthrough, true)).unwrap();
    wait_for("generation 1", || reloader.status().generation == 1).await;
    assert_eq!(names(&reloader), ["markers", "secrets", "passthrough"]);
    let after = open(&sluice).await;
    gate.add_permits(2);

    let data = |events: Vec<Event>| -> Vec<String> {
        events.iter().map(|e| e.data_str().to_string()).collect()
    };
    let (before, after) = (data(before.await.unwrap()), data(after.await.unwrap()));
    assert_eq!(before.len(), EVENTS);
    assert_eq!(after.len(), EVENTS);
    assert!(
        before.iter().all(|d| d == "key [X]"),
        "secrets then markers: {before:?}"
    );
    assert!(
        after.iter().all(|d| d == "key [REDACTED]"),
        "markers then secrets: {after:?}"
    );
    sluice.stop().await;
}

#[tokio::test]
async fn the_admin_api_counts_per_generation_and_metrics_across_generations() {
    let (upstream, gate) = gated_upstream().await;
    let (_dir, path) = plugin_file("figures");
    let sluice = start(&upstream, &path).await;
    let reloader = sluice.reloader().clone();
    gate.add_permits(2);
    assert_eq!(open(&sluice).await.await.unwrap().len(), EVENTS);
    let first = reloader.status().plugins[0].stats;
    let events = EVENTS as u64;
    // The filter sees the events going to the client (not the request); it was
    // instantiated for its trial `init` at load and once for the stream.
    assert_eq!(
        (first.calls, first.passed, first.instances, first.failures()),
        (events, events, 2, 0),
        "{first:?}"
    );
    // What `GET /admin/plugins` shows of it, member for member.
    assert_eq!(
        serde_json::to_string(&first).unwrap(),
        format!(
            r#"{{"calls":{events},"passed":{events},"dropped":0,"modified":0,"instances":2,"traps":0,"deadlines":0,"out_of_memory":0,"out_of_fuel":0,"oversized":0,"instantiate_failures":0,"too_large":0,"malformed":0}}"#
        )
    );

    assert_eq!(reloader.reload(Trigger::Api).unwrap(), 1);
    let fresh = reloader.status().plugins[0].stats;
    assert_eq!((fresh.calls, fresh.instances), (0, 1), "{fresh:?}");
    assert_eq!(open(&sluice).await.await.unwrap().len(), EVENTS);
    assert_eq!(reloader.status().plugins[0].stats.passed, events);
    // The series goes on across the reload: both generations' passes.
    let metrics = reloader.metrics().encode();
    let pass = format!(
        r#"sluice_plugin_verdicts_total{{plugin="filter",verdict="pass"}} {}"#,
        2 * events
    );
    assert!(metrics.lines().any(|l| l == pass), "{metrics}");
    sluice.stop().await;
}
