//! The `--config` file end to end: the shipped example runs its chain with the real
//! example plugins, and flags merge over a file the way `sluice --help` says.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice::cli::{self, CliError};
use sluice::config::{self, Config};
use sluice::plugin::{FailurePolicy, PluginSource};
use sluice::sse::Event;

use crate::common::{client, proxy, raw};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sluice-cfg-it-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn resolve(args: &[&str]) -> Result<(Config, Option<config::ChainFile>), CliError> {
    let (cli, matches) = cli::parse(std::iter::once("sluice").chain(args.iter().copied()))?;
    let chain_file = cli.run.chain_file(&matches);
    Ok((cli::resolve(&cli.run, &matches)?, chain_file))
}

fn file_of(spec: &sluice::plugin::PluginSpec) -> &Path {
    match &spec.source {
        PluginSource::File(path) => path,
        PluginSource::Bytes(_) => panic!("{} is built in", spec.name),
    }
}

const FILE: &str = r#"
listen = "127.0.0.1:9191"
upstream = "http://127.0.0.1:8000"
max_event_bytes = 65536
allow_origins = ["https://file.example"]

[defaults]
failure = "closed"
memory_mib = 8

[[plugin]]
path = "a.wasm"
deadline_ms = 20
fuel = 1000

[[plugin]]
path = "b.wasm"
config = { k = "v" }
"#;

fn scratch_with_file(test: &str) -> (Scratch, String) {
    let s = Scratch::new(test);
    s.write("a.wasm", "");
    s.write("b.wasm", "");
    let file = s.write("sluice.toml", FILE).display().to_string();
    (s, file)
}

#[test]
fn the_file_alone_configures_everything() {
    let (_s, file) = scratch_with_file("alone");
    let (c, chain_file) = resolve(&["--config", &file]).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9191");
    assert_eq!(c.upstream, "http://127.0.0.1:8000");
    assert_eq!(c.proxy.max_event_bytes, 65536);
    assert_eq!(c.proxy.allowed_origins, ["https://file.example"]);
    let names: Vec<&str> = c.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(c.plugins[1].config, r#"{"k":"v"}"#);
    let a = c.plugins[0].limits;
    assert_eq!(a.failure, FailurePolicy::Closed);
    assert_eq!(a.deadline, Duration::from_millis(20));
    assert_eq!(a.memory_bytes, 8 << 20);
    assert_eq!(a.fuel, Some(1000));
    assert_eq!(c.plugins[1].limits.deadline, Duration::from_millis(10));
    let chain_file = chain_file.expect("the chain comes from the file");
    assert!(chain_file.overrides.is_empty());
}

#[test]
fn flags_given_on_the_command_line_override_the_file() {
    let (_s, file) = scratch_with_file("override");
    let (c, chain_file) = resolve(&[
        "--config",
        &file,
        "--listen",
        "127.0.0.1:7070",
        "--upstream",
        "http://127.0.0.1:1234",
        "--max-event-bytes",
        "2048",
        "--allow-origin",
        "https://flag.example",
        "--plugin-failure",
        "open",
        "--plugin-deadline-ms",
        "50",
    ])
    .unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:7070");
    assert_eq!(c.upstream, "http://127.0.0.1:1234");
    assert_eq!(c.proxy.max_event_bytes, 2048);
    assert_eq!(c.proxy.allowed_origins, ["https://flag.example"]);
    for spec in &c.plugins {
        assert_eq!(spec.limits.failure, FailurePolicy::Open, "{}", spec.name);
        assert_eq!(
            spec.limits.deadline,
            Duration::from_millis(50),
            "{}",
            spec.name
        );
        assert_eq!(spec.limits.memory_bytes, 8 << 20, "not given: the file's");
    }
    assert_eq!(c.plugins[0].limits.fuel, Some(1000));

    // A reload re-reads the file and applies the same flags again.
    let chain_file = chain_file.unwrap();
    assert_eq!(chain_file.overrides.failure, Some(FailurePolicy::Open));
    assert_eq!(chain_file.overrides.memory_bytes, None);
    let reloaded = chain_file.load().unwrap();
    assert_eq!(reloaded.len(), 2);
    assert!(
        reloaded
            .iter()
            .all(|p| p.limits.deadline == Duration::from_millis(50))
    );
}

#[test]
fn plugin_flags_replace_the_files_chain() {
    let (s, file) = scratch_with_file("replace");
    let own = s.write("own.wasm", "").display().to_string();
    let (c, chain_file) =
        resolve(&["--config", &file, "--plugin", &own, "--plugin-config", "X"]).unwrap();
    assert_eq!(c.plugins.len(), 1, "{:?}", c.plugins);
    assert_eq!(c.plugins[0].name, "own");
    assert_eq!(c.plugins[0].config, "X");
    assert_eq!(file_of(&c.plugins[0]), Path::new(&own));
    // Its limits start from the file's [defaults]...
    assert_eq!(c.plugins[0].limits.failure, FailurePolicy::Closed);
    assert_eq!(c.plugins[0].limits.memory_bytes, 8 << 20);
    assert!(c.plugins[0].capabilities.is_empty());
    // ...the rest of the file still applies, and there is no chain to re-read.
    assert_eq!(c.upstream, "http://127.0.0.1:8000");
    assert!(chain_file.is_none());

    // A --plugin-config with no --plugin is an error, file or not.
    let err = resolve(&["--config", &file, "--plugin-config", "X"]).unwrap_err();
    assert!(matches!(err, CliError::OrphanConfig(_)), "{err}");
}

#[test]
fn a_bad_file_stops_the_command_line_with_its_line() {
    let s = Scratch::new("bad");
    let file = s
        .write(
            "sluice.toml",
            "upstream = 'http://x'\n[[plugin]]\npath = 'gone.wasm'\n",
        )
        .display()
        .to_string();
    let err = resolve(&["--config", &file]).unwrap_err();
    assert!(matches!(err, CliError::File(_)), "{err}");
    assert!(
        err.to_string()
            .contains("sluice.toml:3:8: plugin[0].path: no plugin file at"),
        "{err}"
    );
    // Without an upstream in the file or the flags, the usual message.
    let file = s.write("empty.toml", "").display().to_string();
    assert!(matches!(
        resolve(&["--config", &file]),
        Err(CliError::NoUpstream)
    ));
}

#[test]
fn editing_the_file_changes_what_a_reload_reads() {
    let (s, file) = scratch_with_file("edit");
    let (_, chain_file) = resolve(&["--config", &file]).unwrap();
    let chain_file = chain_file.unwrap();
    let names = |chain: Vec<sluice::plugin::PluginSpec>| {
        chain.into_iter().map(|p| p.name).collect::<Vec<_>>()
    };
    assert_eq!(names(chain_file.load().unwrap()), ["a", "b"]);
    s.write("c.wasm", "");
    s.write(
        "sluice.toml",
        "[[plugin]]\npath = 'c.wasm'\n[[plugin]]\npath = 'b.wasm'\n[[plugin]]\npath = 'a.wasm'\n",
    );
    assert_eq!(names(chain_file.load().unwrap()), ["c", "b", "a"]);
    s.write(
        "sluice.toml",
        "[[plugin]]\npath = 'b.wasm'\nfailure = 'sometimes'\n",
    );
    let err = chain_file.load().unwrap_err().to_string();
    assert!(err.contains("sluice.toml:3:11: plugin[0].failure"), "{err}");
}

/// The shipped example, with the real example plugins: their `init` accepts the
/// configurations the file gives (one an inline table), and the chain does what the
/// comments say.
#[tokio::test]
async fn the_shipped_example_runs_its_chain() {
    for name in ["dropper", "redact", "passthrough"] {
        proxy::rust_plugin(name);
    }
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sluice.toml");
    let file = config::load(&example).unwrap();
    assert_eq!(file.plugins.len(), 3);

    let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#;
    let answer = r#"{"jsonrpc":"2.0","id":1,"result":{"key":"sk-abc123"}}"#;
    let upstream = raw::serve(raw::Script {
        content_type: "text/event-stream",
        chunks: [progress, answer]
            .iter()
            .map(|d| format!("data: {d}\n\n").into_bytes())
            .collect(),
        end: raw::End::Clean,
        gate: None,
    })
    .await;
    let sluice = proxy::start(&upstream.url(), file.plugins).await;
    let request = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#;
    let events =
        client::events(client::post(&format!("{}/mcp", sluice.url()), request).await).await;
    let data: Vec<&str> = events.iter().map(Event::data_str).collect();
    assert_eq!(
        data,
        [r#"{"jsonrpc":"2.0","id":1,"result":{"key":"[REDACTED]"}}"#],
        "progress dropped, key redacted"
    );
    let names: Vec<String> = sluice
        .proxy()
        .chain()
        .plugins()
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    assert_eq!(names, ["dropper", "redact-secrets", "passthrough"]);
    sluice.stop().await;
}
