//! Swapping a named plugin to another file in one step: `POST /admin/reload` with a
//! body, and `sluice reload NAME=FILE` (the binary) talking to it. A real rmcp server
//! and client on each side of the proxy, real components from `plugins/dist`: the
//! traffic is judged by the new file under the plugin's old name; a refused swap
//! (unknown name, a file that is not a component, a component that refuses the
//! plugin's configuration, no token) changes nothing.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use serde_json::{Value, json};
use sha2::Digest;

use crate::cases::operations::value;
use crate::common::mcp::{self, SECRET_TEXT, spawn_mcp_server};
use crate::common::{client, proxy};

const TOKEN: &str = "s3cret";
const MASKED: &str = "the key is [REDACTED]";
/// redact's configuration, which the plugin keeps whatever file it is swapped to.
const PATTERNS: &str = r#"{"patterns":["sk-live-[a-z0-9]+"]}"#;

fn sha256_of(path: &Path) -> String {
    sha2::Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `POST /admin/reload` with `body` (none: no body), and the JSON answer.
async fn reload(
    admin: std::net::SocketAddr,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = Request::post(format!("http://{admin}/admin/reload"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let response = client::send(request.body(Full::new(Bytes::from(body))).unwrap()).await;
    let status = response.status().as_u16();
    let text = client::text(response).await;
    (status, serde_json::from_str(&text).unwrap())
}

/// `GET path` on the admin API with the token: the body.
async fn get(admin: std::net::SocketAddr, path: &str) -> String {
    let response = client::send(
        Request::get(format!("http://{admin}{path}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), 200);
    client::text(response).await
}

async fn plugins(admin: std::net::SocketAddr) -> Value {
    serde_json::from_str(&get(admin, "/admin/plugins").await).unwrap()
}

/// The secret as a fresh MCP client gets it through the proxy.
async fn secret(proxy_url: &str) -> String {
    let client = mcp::connect(&format!("{proxy_url}/mcp")).await;
    let text = client.call_text("get_secret", json!(null)).await.unwrap();
    client.service.cancel().await.unwrap();
    text
}

/// The proxy's configuration from a command line, as the binary makes it.
fn from_flags(args: &[&str]) -> sluice::config::Config {
    let (cli, matches) = sluice::cli::parse(
        ["sluice", "--listen", "127.0.0.1:0", "--no-cache"]
            .iter()
            .chain(args),
    )
    .unwrap();
    assert!(
        cli.run.chain_file(&matches).is_none(),
        "the chain is the flags'"
    );
    sluice::cli::resolve(&cli.run, &matches).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_swaps_a_named_plugin_to_another_file_all_or_nothing() {
    let server = spawn_mcp_server().await;
    let (redact, passthrough, reference) = (
        proxy::rust_plugin("redact"),
        proxy::rust_plugin("passthrough"),
        proxy::rust_plugin("reference-rust"),
    );
    let upstream = proxy::base_of(&server.url);
    let (redact_s, passthrough_s) = (
        redact.display().to_string(),
        passthrough.display().to_string(),
    );
    let config = from_flags(&[
        "--upstream",
        &upstream,
        "--plugin",
        &redact_s,
        "--plugin-config",
        PATTERNS,
        "--plugin",
        &passthrough_s,
    ]);
    let mut sluice = sluice::app::start(config).await.unwrap();
    let admin = sluice
        .serve_admin("127.0.0.1:0".parse().unwrap(), Some(TOKEN.into()))
        .await
        .unwrap();
    let url = sluice.url();
    assert_eq!(secret(&url).await, MASKED);
    let swap = |name: &str, file: &Path| json!({"plugins": [{"name": name, "file": file}]});

    // Without the token, or with a wrong one: 401, and nothing reloaded.
    let (status, _) = reload(admin, None, Some(swap("redact", &passthrough))).await;
    assert_eq!(status, 401);
    let (status, _) = reload(admin, Some("wrong"), Some(swap("redact", &passthrough))).await;
    assert_eq!(status, 401);

    // A name the chain does not have: 404 naming the chain's plugins.
    let (status, answer) = reload(admin, Some(TOKEN), Some(swap("guard", &passthrough))).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(
        answer["plugins"],
        json!(["redact", "passthrough"]),
        "{answer}"
    );
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("\"guard\"") && error.contains("redact, passthrough"),
        "{error}"
    );
    assert_eq!(answer["generation"], 0);

    // A relative path: 400 (the proxy's working directory is not the caller's).
    let (status, answer) = reload(
        admin,
        Some(TOKEN),
        Some(json!({"plugins": [{"name": "redact", "file": "plugins/dist/passthrough.wasm"}]})),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("relative"),
        "{answer}"
    );

    // Not a component: 422, and the first plugin of the request is not swapped
    // either (all or nothing).
    let scratch = tempfile::tempdir().unwrap();
    let garbage = scratch.path().join("garbage.wasm");
    std::fs::write(&garbage, "this is not a component").unwrap();
    let both = json!({"plugins": [
        {"name": "passthrough", "file": redact},
        {"name": "redact", "file": garbage},
    ]});
    let (status, answer) = reload(admin, Some(TOKEN), Some(both)).await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("redact"),
        "{answer}"
    );
    // A real component whose init refuses the configuration the plugin keeps (the
    // reference filter has no `patterns`): the same trial init as any load.
    let (status, answer) = reload(admin, Some(TOKEN), Some(swap("redact", &reference))).await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("patterns"),
        "{answer}"
    );

    // Nothing changed: generation 0, the same files, the old plugin still masking.
    let now = plugins(admin).await;
    assert_eq!(now["generation"], 0, "{now}");
    assert_eq!(now["plugins"][0]["path"], json!(redact), "{now}");
    assert_eq!(
        now["plugins"][0]["sha256"],
        json!(sha256_of(&redact)),
        "{now}"
    );
    assert_eq!(now["plugins"][1]["path"], json!(passthrough), "{now}");
    assert_eq!(now["reloads"]["failed"], 4, "{now}");
    assert_eq!(secret(&url).await, MASKED);

    // The swap: `redact` now runs passthrough's code, under its own name.
    let (status, answer) = reload(admin, Some(TOKEN), Some(swap("redact", &passthrough))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({
            "generation": 1,
            "plugins": [
                {"name": "redact", "file": passthrough, "sha256": sha256_of(&passthrough)},
                {"name": "passthrough", "file": passthrough, "sha256": sha256_of(&passthrough)},
            ],
            "swapped": ["redact"],
        })
    );
    assert_eq!(secret(&url).await, SECRET_TEXT);
    let metrics = get(admin, "/metrics").await;
    let modified = r#"plugin="redact",verdict="modify""#;
    let passed = r#"plugin="redact",verdict="pass""#;
    let (modified_before, passed_before) = (
        value(&metrics, "sluice_plugin_verdicts_total", modified).unwrap(),
        value(&metrics, "sluice_plugin_verdicts_total", passed).unwrap_or(0.0),
    );
    assert_eq!(secret(&url).await, SECRET_TEXT);
    let metrics = get(admin, "/metrics").await;
    // Judged by the new file: passes counted under the old name, no more modifies.
    assert_eq!(
        value(&metrics, "sluice_plugin_verdicts_total", modified).unwrap(),
        modified_before
    );
    assert!(value(&metrics, "sluice_plugin_verdicts_total", passed).unwrap() > passed_before);
    assert_eq!(
        value(&metrics, "sluice_reloads_total", r#"outcome="ok""#),
        Some(1.0)
    );
    assert_eq!(
        value(&metrics, "sluice_reloads_total", r#"outcome="refused""#),
        Some(4.0)
    );

    // A plain reload (no body) keeps the swap: there is nothing else to re-read.
    let (status, answer) = reload(admin, Some(TOKEN), None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["generation"], 2);
    assert_eq!(answer["plugins"][0]["file"], json!(passthrough), "{answer}");
    // Swapped back to its own file, it masks again.
    let (status, answer) = reload(admin, Some(TOKEN), Some(swap("redact", &redact))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["plugins"][0]["sha256"], json!(sha256_of(&redact)));
    assert_eq!(secret(&url).await, MASKED);
    sluice.stop().await;
}

/// Replaces a file the way a build tool does: write beside it, then rename.
fn replace(path: &Path, from: &Path) {
    let tmp = path.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    // A safety net, not a timing assertion: reloads compile plugins.
    for _ in 0..3000 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn guard_file(plugin: &Path, comment: &str) -> String {
    format!(
        "# {comment}\n[[plugin]]\nname = \"guard\"\npath = \"{}\"\nconfig = '{PATTERNS}'\n",
        plugin.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_config_file_a_swap_holds_until_the_file_changes_that_plugin() {
    let server = spawn_mcp_server().await;
    let (redact, passthrough) = (
        proxy::rust_plugin("redact"),
        proxy::rust_plugin("passthrough"),
    );
    let (dir, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let toml = dir.path().join("sluice.toml");
    std::fs::write(
        &toml,
        format!(
            "upstream = \"{}\"\n{}",
            proxy::base_of(&server.url),
            guard_file(&redact, "first")
        ),
    )
    .unwrap();
    let mut sluice = proxy::start_from_file(&toml, "127.0.0.1:0", None).await;
    sluice.watch_files().unwrap();
    let admin = sluice
        .serve_admin("127.0.0.1:0".parse().unwrap(), Some(TOKEN.into()))
        .await
        .unwrap();
    let (url, reloader) = (sluice.url(), sluice.reloader().clone());
    let guard = |field: &str| {
        let status = reloader.status();
        match field {
            "path" => status.plugins[0]
                .path
                .clone()
                .unwrap()
                .display()
                .to_string(),
            _ => status.plugins[0].sha256.clone().unwrap(),
        }
    };

    // Swapped to a copy of passthrough in a directory nobody watched.
    let new = elsewhere.path().join("new.wasm");
    std::fs::copy(&passthrough, &new).unwrap();
    let body = json!({"plugins": [{"name": "guard", "file": new}]});
    let (status, answer) = reload(admin, Some(TOKEN), Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(secret(&url).await, SECRET_TEXT);

    // The watcher watches the new file: rebuilt (here: redact's bytes), it is re-read.
    replace(&new, &redact);
    let rebuilt = sha256_of(&redact);
    wait_for("the rebuilt file", async || guard("sha256") == rebuilt).await;
    assert_eq!(guard("path"), new.display().to_string());
    assert_eq!(guard("sha256"), sha256_of(&redact));
    assert_eq!(secret(&url).await, MASKED);

    // The config file changes, but not guard's file: the swap holds.
    std::fs::write(
        &toml,
        format!(
            "upstream = \"{}\"\n{}",
            proxy::base_of(&server.url),
            guard_file(&redact, "second")
        ),
    )
    .unwrap();
    wait_for("generation 3", async || reloader.status().generation >= 3).await;
    assert_eq!(guard("path"), new.display().to_string());

    // The config file names another file for guard: that is the operator's last word.
    std::fs::write(
        &toml,
        format!(
            "upstream = \"{}\"\n{}",
            proxy::base_of(&server.url),
            guard_file(&passthrough, "third")
        ),
    )
    .unwrap();
    wait_for("guard back on the file's choice", async || {
        guard("path") == passthrough.display().to_string()
    })
    .await;
    assert_eq!(secret(&url).await, SECRET_TEXT);
    sluice.stop().await;
}

/// The `sluice` binary proxying with `--plugin` flags, its admin API on a free port
/// guarded by a token file. Killed (by its pid) when dropped.
struct Binary {
    child: std::process::Child,
    url: String,
    admin: String,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn binary(upstream: &str, redact: &Path, token_file: &Path) -> Binary {
    let (port, admin_port) = (client::free_port(), client::free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "--upstream",
            upstream,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--plugin", &redact.display().to_string()])
        .args(["--plugin-config", PATTERNS])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .args(["--admin-token-file", &token_file.display().to_string()])
        .args(["--no-watch", "--no-cache"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sluice starts");
    let binary = Binary {
        child,
        url: format!("http://127.0.0.1:{port}"),
        admin: format!("127.0.0.1:{admin_port}"),
    };
    for _ in 0..1000 {
        if tokio::net::TcpStream::connect(&binary.admin).await.is_ok() {
            return binary;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("sluice never served its admin API");
}

/// `sluice reload ARGS` run in `cwd`: exit code, stdout, stderr.
fn sluice_reload(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("reload")
        .args(args)
        .current_dir(cwd)
        .env_remove("SLUICE_ADMIN_TOKEN")
        .env_remove("SLUICE_ADMIN_LISTEN")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_reload_swaps_a_plugin_of_a_running_binary() {
    let server = spawn_mcp_server().await;
    let (redact, passthrough) = (
        proxy::rust_plugin("redact"),
        proxy::rust_plugin("passthrough"),
    );
    let scratch = tempfile::tempdir().unwrap();
    let token_file = scratch.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let sluice = binary(&proxy::base_of(&server.url), &redact, &token_file).await;
    assert_eq!(secret(&sluice.url).await, MASKED);
    let token_arg = token_file.display().to_string();
    let admin = [
        "--admin",
        sluice.admin.as_str(),
        "--admin-token-file",
        &token_arg,
    ];

    // No token: the proxy's 401, as a refusal.
    let (code, stdout, stderr) = sluice_reload(scratch.path(), &["--admin", &sluice.admin]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("401") && stderr.contains("bearer token"),
        "{stderr}"
    );

    // An unknown name: exit 1 with the reason, which names the chain's plugins.
    let (code, stdout, stderr) =
        sluice_reload(scratch.path(), &[&admin[..], &["guard=new.wasm"]].concat());
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("no plugin named \"guard\"") && stderr.contains("its plugins: redact"),
        "{stderr}"
    );

    // A file that is not a component, given relative to the command's directory.
    std::fs::write(scratch.path().join("broken.wasm"), "not wasm").unwrap();
    let (code, _, stderr) = sluice_reload(
        scratch.path(),
        &[&admin[..], &["redact=broken.wasm"]].concat(),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("generation 0 keeps serving"), "{stderr}");
    assert_eq!(secret(&sluice.url).await, MASKED);

    // The swap, with FILE relative to the command's directory (made absolute there).
    std::fs::copy(&passthrough, scratch.path().join("new.wasm")).unwrap();
    let (code, stdout, stderr) = sluice_reload(
        scratch.path(),
        &[&admin[..], &["redact=./new.wasm"]].concat(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let new = scratch.path().join("new.wasm");
    assert_eq!(
        stdout,
        format!(
            "reloaded: generation 1 (swapped: redact)\n  redact  {}  sha256:{}\n",
            std::path::absolute(&new).unwrap().display(),
            sha256_of(&passthrough)
        )
    );
    assert_eq!(secret(&sluice.url).await, SECRET_TEXT);

    // No NAME=FILE: a plain reload, which keeps the swap; --json prints the answer.
    let (code, stdout, stderr) = sluice_reload(scratch.path(), &[&admin[..], &["--json"]].concat());
    assert_eq!(code, 0, "{stdout}{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["generation"], 2);
    assert_eq!(answer["plugins"][0]["name"], "redact");
    assert_eq!(
        answer["plugins"][0]["sha256"],
        json!(sha256_of(&passthrough))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_names_its_route_and_leaves_the_other_chains_alone() {
    let server = spawn_mcp_server().await;
    let (redact, passthrough) = (
        proxy::rust_plugin("redact"),
        proxy::rust_plugin("passthrough"),
    );
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("sluice.toml");
    let upstream = proxy::base_of(&server.url);
    let route = |name: &str| {
        format!(
            "[[route]]\nname = \"{name}\"\nprefix = \"/{name}\"\nupstream = \"{upstream}\"\n[[route.plugin]]\nname = \"guard\"\npath = \"{}\"\nconfig = '{PATTERNS}'\n",
            redact.display()
        )
    };
    std::fs::write(&toml, format!("{}\n{}", route("a"), route("b"))).unwrap();
    let mut sluice = proxy::start_from_file(&toml, "127.0.0.1:0", None).await;
    let admin = sluice
        .serve_admin("127.0.0.1:0".parse().unwrap(), Some(TOKEN.into()))
        .await
        .unwrap();
    let url = sluice.url();
    let swap =
        |route: &str| json!({"route": route, "plugins": [{"name": "guard", "file": passthrough}]});

    let (status, answer) = reload(admin, Some(TOKEN), Some(swap("c"))).await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("no route named \"c\"")
    );

    // ?route= and the body's route must agree.
    let response = client::send(
        Request::post(format!("http://{admin}/admin/reload?route=a"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::from(swap("b").to_string())))
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), 400);

    let (status, answer) = reload(admin, Some(TOKEN), Some(swap("a"))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["plugins"][0]["file"], json!(passthrough));
    assert_eq!(secret(&format!("{url}/a")).await, SECRET_TEXT);
    assert_eq!(secret(&format!("{url}/b")).await, MASKED);
    let b: Value = serde_json::from_str(&get(admin, "/admin/plugins?route=b").await).unwrap();
    assert_eq!(b["generation"], 0, "{b}");
    assert_eq!(b["plugins"][0]["path"], json!(redact), "{b}");
    sluice.stop().await;
}

/// A swap loads a file of the caller's choosing with the plugin's grants, so without an
/// admin token (anyone on the machine may call the admin API) it is refused, while a
/// plain reload (the operator's own files) still works; and only a regular file is
/// read: a FIFO would block this reload and every one behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_needs_an_admin_token_and_a_regular_file() {
    let server = spawn_mcp_server().await;
    let (redact, passthrough) = (
        proxy::rust_plugin("redact"),
        proxy::rust_plugin("passthrough"),
    );
    let upstream = proxy::base_of(&server.url);
    let redact_s = redact.display().to_string();
    let config = from_flags(&[
        "--upstream",
        &upstream,
        "--plugin",
        &redact_s,
        "--plugin-config",
        PATTERNS,
    ]);
    let mut open = sluice::app::start(config.clone()).await.unwrap();
    let admin = proxy::serve_admin(&mut open).await;
    let swap = |file: &Path| json!({"plugins": [{"name": "redact", "file": file}]});
    let (status, answer) = reload(admin, None, Some(swap(&passthrough))).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("admin token"));
    let (status, answer) = reload(admin, None, None).await;
    assert_eq!(status, 200, "a plain reload needs no token: {answer}");
    assert_eq!(secret(&open.url()).await, MASKED, "the guard was swapped");
    open.stop().await;

    let mut guarded = sluice::app::start(config).await.unwrap();
    let admin = guarded
        .serve_admin("127.0.0.1:0".parse().unwrap(), Some(TOKEN.into()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("plugin.wasm");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let (status, answer) = reload(admin, Some(TOKEN), Some(swap(&fifo))).await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("not a regular file")
    );
    let (status, _) = reload(admin, Some(TOKEN), Some(swap(dir.path()))).await;
    assert_eq!(status, 422, "a directory is no plugin");
    assert_eq!(secret(&guarded.url()).await, MASKED);
    guarded.stop().await;
}
