//! `sluice plugin new` for each language, as a plugin author outside a checkout would
//! use it: the sluice binary writes a project into a temporary directory outside the
//! repository, its own `build.sh` builds it with nothing but what `plugins/setup.sh`
//! installs (PATH = plugins/.venv/bin, /usr/bin, /bin; for JavaScript,
//! `COMPONENTIZE_JS` = plugins/js/node_modules), `sluice plugin check` accepts the
//! component, the project's `test.sh` passes (`sluice plugin test --message`: a denied
//! and an allowed `tools/call`), and a real sluice in front of the rmcp test server
//! runs it: the denied tool is refused with the plugin's JSON-RPC error (the server
//! never sees the call) and another tool passes.
//!
//! Time on 2 cores shared with other work (the build dominates): C about 2 s; Zig about
//! 40 s the first time (Zig builds its libc into its global cache), then seconds;
//! Python and JavaScript about 20 s to build, plus a compile of the 12-18 MB component
//! (15-45 s) in the check and again in the proxy. Rust builds std from source with
//! Debian's toolchain (-Zbuild-std): minutes in a fresh target directory, so the test
//! builds in the checkout's guest target directory (`plugins/rust/target`, filled by
//! `plugins/build.sh`), where std and the SDK's dependencies are already built: seconds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rmcp::service::ServiceError;
use serde_json::{Value, json};
use sluice::plugin::{PluginLimits, PluginSource, PluginSpec};

use crate::common::mcp::{self, McpServer};
use crate::common::proxy;

const CONFIG: &str = r#"{"deny": ["get_secret"]}"#;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn sluice_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sluice")
}

/// A directory under the system's temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(lang: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("sluice-scaffold-{lang}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        assert!(
            !dir.starts_with(root().canonicalize().unwrap()),
            "the project must be outside the repository: {}",
            dir.display()
        );
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A command with only what plugins/setup.sh installs: PATH is plugins/.venv/bin,
/// /usr/bin and /bin, and no variable of the cargo that runs the tests (CARGO, RUSTC,
/// RUSTFLAGS ...) leaks in. HOME stays (cargo's registry cache, Zig's global cache).
fn setup_sh_only(program: &Path) -> Command {
    let venv_bin = root().join("plugins/.venv/bin");
    assert!(
        venv_bin.join("wasm-tools").exists(),
        "{} is missing: run plugins/setup.sh (as root)",
        venv_bin.display()
    );
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", venv_bin.display()));
    for keep in ["HOME", "TMPDIR"] {
        if let Some(value) = std::env::var_os(keep) {
            command.env(keep, value);
        }
    }
    command
}

/// Runs `command` and panics with its output unless it succeeds; returns stdout.
fn run(what: &str, command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Scaffolds, builds and checks a `lang` plugin named `deny-<lang>`; returns the
/// scratch directory (kept alive by the caller) and the component.
fn scaffold_and_build(lang: &str, extra_env: &[(&str, PathBuf)]) -> (Scratch, PathBuf) {
    let scratch = Scratch::new(lang);
    let dir = scratch.0.join("project");
    let name = format!("deny-{lang}");
    let created = run(
        "sluice plugin new",
        Command::new(sluice_bin())
            .args(["plugin", "new", "--lang", lang, "--name", &name])
            .arg(&dir),
    );
    assert!(
        created.contains(&format!("created plugin {name} ({lang})")),
        "{created}"
    );
    for file in ["wit/plugin.wit", "build.sh", "test.sh", "README.md"] {
        assert!(dir.join(file).is_file(), "{lang}: {file} not written");
    }

    let mut build = setup_sh_only(&dir.join("build.sh"));
    for (key, value) in extra_env {
        build.env(key, value);
    }
    let started = std::time::Instant::now();
    let built = run(&format!("{lang}: build.sh"), &mut build);
    eprintln!(
        "{lang}: build.sh took {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        built.trim_end().lines().last().unwrap_or("")
    );
    let wasm = dir.join(format!("{name}.wasm"));
    assert!(
        wasm.is_file(),
        "{lang}: build.sh wrote no {}",
        wasm.display()
    );

    let report = run(
        &format!("{lang}: sluice plugin check"),
        Command::new(sluice_bin())
            .args(["plugin", "check"])
            .arg(&wasm)
            .args(["--config", CONFIG]),
    );
    assert!(
        report.contains("contract:  sluice:plugin@0.2.0"),
        "{report}"
    );
    assert!(report.contains("result:    OK"), "{report}");

    // The project's own first test: plugin check, then plugin test --message with a
    // denied and an allowed tools/call.
    let tested = run(
        &format!("{lang}: test.sh"),
        setup_sh_only(&dir.join("test.sh")).env("SLUICE", sluice_bin()),
    );
    assert!(
        tested.contains("ok:   tools/call delete_file -> respond"),
        "{tested}"
    );
    assert!(
        tested.contains("ok:   tools/call read_file -> pass"),
        "{tested}"
    );

    // Arguments nested 120 deep (sluice itself reads up to 128) do not hide the name.
    let deep = format!("{}{}", "[".repeat(120), "]".repeat(120));
    let message = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"arguments":{{"x":{deep}}},"name":"get_secret"}}}}"#
    );
    let report = run(
        &format!("{lang}: plugin test, deep arguments"),
        Command::new(sluice_bin())
            .args(["plugin", "test"])
            .arg(&wasm)
            .args(["--config", CONFIG, "--message", &message]),
    );
    assert!(
        report.lines().any(|l| l == "verdict: respond"),
        "{lang}: {report}"
    );
    (scratch, wasm)
}

/// How many POSTs the upstream has received.
fn posts(upstream: &McpServer) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::POST)
        .count()
}

/// `wasm` in a real sluice in front of the rmcp test server: `get_secret` is refused
/// with the plugin's error and never reaches the server, `echo` passes.
async fn refuses_the_denied_tool(lang: &str, wasm: &Path) {
    let upstream = mcp::spawn_mcp_server().await;
    let name = format!("deny-{lang}");
    let plugin = PluginSpec {
        powers: Default::default(),
        name: name.clone(),
        source: PluginSource::File(wasm.to_path_buf()),
        config: CONFIG.to_string(),
        // Generous: this is about loading and behaviour, not speed (a Python or
        // JavaScript instance's first call can miss the 10 ms default on a busy box).
        limits: PluginLimits {
            deadline: Duration::from_secs(5),
            ..PluginLimits::default()
        },
        capabilities: Default::default(),
    };
    let sluice = proxy::start(&proxy::base_of(&upstream.url), vec![plugin]).await;
    let client = mcp::connect(&format!("{}/mcp", sluice.url())).await;

    let echoed = client.call_text("echo", json!({"text": "hello"})).await;
    assert_eq!(echoed.unwrap(), "hello", "{lang}: another tool passes");
    let before = posts(&upstream);
    match client.call_text("get_secret", Value::Null).await {
        Err(ServiceError::McpError(error)) => {
            assert_eq!(error.code.0, -32001, "{lang}");
            assert_eq!(
                error.message,
                format!("tool get_secret is denied by {name}"),
                "{lang}"
            );
        }
        other => panic!("{lang}: get_secret should be refused, got {other:?}"),
    }
    assert_eq!(
        posts(&upstream),
        before,
        "{lang}: the denied call reached the server"
    );
    drop(client);
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_plugin_scaffolded_outside_the_checkout_builds_and_loads() {
    let (_scratch, wasm) = scaffold_and_build("c", &[]);
    refuses_the_denied_tool("c", &wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zig_plugin_scaffolded_outside_the_checkout_builds_and_loads() {
    let (_scratch, wasm) = scaffold_and_build("zig", &[]);
    refuses_the_denied_tool("zig", &wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_plugin_scaffolded_outside_the_checkout_builds_and_loads() {
    let (_scratch, wasm) = scaffold_and_build("python", &[]);
    refuses_the_denied_tool("python", &wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_plugin_scaffolded_outside_the_checkout_builds_and_loads() {
    let node_modules = root().join("plugins/js/node_modules");
    assert!(
        node_modules
            .join("@bytecodealliance/componentize-js")
            .is_dir(),
        "{} has no componentize-js: run plugins/setup.sh (needs Node.js 20+)",
        node_modules.display()
    );
    let (_scratch, wasm) = scaffold_and_build("js", &[("COMPONENTIZE_JS", node_modules)]);
    refuses_the_denied_tool("js", &wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_plugin_scaffolded_outside_the_checkout_builds_and_loads() {
    // The checkout's guest target directory, which plugins/build.sh has filled: std
    // (built from source, minutes) and the SDK's dependencies are reused from there, as
    // an author's own target directory would keep them, so the build takes seconds.
    // The project itself stays outside the repository.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/rust/target");
    let (_scratch, wasm) = scaffold_and_build("rust", &[("CARGO_TARGET_DIR", target)]);
    refuses_the_denied_tool("rust", &wasm).await;
}

#[test]
fn build_sh_names_what_to_install_when_a_tool_is_missing() {
    // PATH without plugins/.venv/bin: wasm-tools (and Zig, componentize-py) are missing.
    for (lang, missing) in [
        ("rust", "wasm-tools not found"),
        ("c", "wasm-tools not found"),
        ("zig", "zig not found"),
        ("python", "componentize-py not found"),
        ("js", "componentize-js not found"),
    ] {
        let scratch = Scratch::new(&format!("missing-{lang}"));
        let dir = scratch.0.join("project");
        run(
            "sluice plugin new",
            Command::new(sluice_bin())
                .args(["plugin", "new", "--lang", lang, "--name", "guard"])
                .arg(&dir),
        );
        let output = Command::new(dir.join("build.sh"))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", scratch.0.as_os_str())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{lang}: build.sh passed without its tools"
        );
        assert!(stderr.contains(missing), "{lang}: {stderr}");
        assert!(stderr.contains("plugins/setup.sh"), "{lang}: {stderr}");
        assert!(!dir.join("guard.wasm").exists(), "{lang}");
    }
}

#[test]
fn plugin_new_refuses_a_directory_with_files() {
    let scratch = Scratch::new("busy");
    std::fs::write(scratch.0.join("mine.txt"), "keep me").unwrap();
    let output = Command::new(sluice_bin())
        .args(["plugin", "new", "--lang", "c", "--name", "guard"])
        .arg(&scratch.0)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(scratch.0.join("mine.txt")).unwrap(),
        "keep me"
    );
    assert_eq!(std::fs::read_dir(&scratch.0).unwrap().count(), 1);
}
