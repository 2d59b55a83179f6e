//! The MCP cookbook (`docs/writing-plugins.md#cookbook`): each recipe, in Rust
//! (`plugins/rust/cookbook-<recipe>`, on the `sluice-plugin` SDK) and in Python
//! (`plugins/python/cookbook`, one component whose config names the recipe), through a
//! real sluice in front of real MCP servers (the rmcp test server; the MCP Python SDK's
//! server for the structured result it sends), called by the rmcp client, or by a raw
//! HTTP client where the test must see the bytes the client gets (key order).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use http::{Method, Request};
use http_body_util::Full;
use rmcp::service::ServiceError;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};
use sluice::app::{self, Running};
use sluice::plugin::{PluginLimits, PluginSource, PluginSpec};

use crate::common::mcp::{self, McpServer, SECRET_KEY, SECRET_TEXT};
use crate::common::{self, client, peers, proxy, raw};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Rust,
    Python,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `plugins/dist/cookbook-python.wasm`, built by its script if it is missing.
fn python_plugin() -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let path = root().join("plugins/dist/cookbook-python.wasm");
    if !path.exists() {
        let built = BUILT.get_or_init(|| {
            common::run_bash(
                &root().join("plugins/python/build.sh"),
                &["cookbook"],
                false,
            )
        });
        if let Err(e) = built {
            panic!(
                "{} is missing and plugins/python/build.sh cookbook failed ({e}); run `bash plugins/setup.sh && bash plugins/build-all.sh`",
                path.display()
            );
        }
    }
    path
}

/// One compile cache for the cookbook's tests, emptied at the first use in a run: the
/// Python component (18 MB) is compiled once, not once per test.
fn cache_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cookbook-compile-cache");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cache dir");
        // The cache trusts only a directory nobody else can write.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    })
}

/// The recipe `name` in `lang` with `config` (for Python, `recipe` is added to it).
fn recipe(lang: Lang, name: &str, config: Value) -> PluginSpec {
    match lang {
        Lang::Rust => proxy::rust(&format!("cookbook-{name}"), &config.to_string()),
        Lang::Python => {
            let mut config = config.as_object().cloned().unwrap_or_default();
            config.insert("recipe".into(), name.into());
            PluginSpec {
                powers: Default::default(),
                name: "cookbook-python".into(),
                source: PluginSource::File(python_plugin()),
                config: Value::Object(config).to_string(),
                // Behaviour, not speed: an interpreted guest's first instance in a
                // fresh process on a busy machine may take longer than 10 ms.
                limits: PluginLimits {
                    deadline: Duration::from_secs(5),
                    ..PluginLimits::default()
                },
                capabilities: Default::default(),
            }
        }
    }
}

/// sluice in front of `upstream` (a base URL) running `plugin`, with the shared cache.
async fn start(upstream: &str, plugin: PluginSpec) -> Running {
    let mut config = proxy::config(upstream, vec![plugin]);
    config.cache_dir = Some(cache_dir().to_path_buf());
    app::start(config).await.expect("sluice starts")
}

/// How many POSTs the upstream has received (each forwarded message is one).
fn posts(upstream: &McpServer) -> usize {
    upstream
        .requests()
        .iter()
        .filter(|r| r.method == Method::POST)
        .count()
}

/// The JSON-RPC error a call ended with; panics on a result or a transport error.
fn rpc_error(outcome: Result<String, ServiceError>) -> rmcp::model::ErrorData {
    match outcome {
        Err(ServiceError::McpError(error)) => error,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// A raw MCP session: the exact text of an answer, as the client receives it.
// ---------------------------------------------------------------------------------------

struct RawSession {
    url: String,
    session: Option<String>,
    protocol: String,
}

impl RawSession {
    /// `initialize` and `notifications/initialized` at `url` (an MCP endpoint).
    async fn open(url: &str) -> RawSession {
        let mut raw = RawSession {
            url: url.to_string(),
            session: None,
            protocol: "2025-11-25".into(),
        };
        let init = json!({
            "protocolVersion": raw.protocol,
            "capabilities": {},
            "clientInfo": {"name": "sluice-cookbook-test", "version": "0.1.0"},
        });
        let (session, answer) = raw.send(1, "initialize", init).await;
        let answer: Value = serde_json::from_str(&answer.expect("initialize answered")).unwrap();
        raw.protocol = answer["result"]["protocolVersion"]
            .as_str()
            .expect("a protocol version")
            .to_string();
        raw.session = session;
        let notification = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        raw.post(&notification.to_string()).await;
        raw
    }

    async fn post(&self, body: &str) -> http::Response<hyper::body::Incoming> {
        let mut request = Request::post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", &self.protocol);
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        client::send(request.body(Full::new(body.to_string().into())).unwrap()).await
    }

    /// Sends request `id`; the session id the answer set, and the answer's JSON text.
    async fn send(&self, id: u64, method: &str, params: Value) -> (Option<String>, Option<String>) {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self.post(&body.to_string()).await;
        let session = client::session_id(&response);
        let sse = client::is_sse(&response);
        let answer = if sse {
            client::events(response)
                .await
                .into_iter()
                .filter_map(|event| event.data)
                .find(|data| {
                    serde_json::from_str::<Value>(data).is_ok_and(|v| v["id"] == json!(id))
                })
        } else {
            Some(client::text(response).await)
        };
        (session, answer)
    }

    /// The JSON text of the answer to `tools/call` of `tool` (request id 7).
    async fn call(&self, tool: &str) -> String {
        let (_, answer) = self
            .send(7, "tools/call", json!({"name": tool, "arguments": {}}))
            .await;
        answer.unwrap_or_else(|| panic!("no answer to tools/call {tool}"))
    }
}

/// Every object key in `json`, in the order of the text (serde_json without
/// `preserve_order`, as this crate has it, would sort them in a `Value`).
fn key_order(json: &str) -> Vec<String> {
    struct Keys<'a>(&'a mut Vec<String>);
    impl<'de> DeserializeSeed<'de> for Keys<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Keys<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let keys = self.0;
            while seq.next_element_seed(Keys(&mut *keys))?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let keys = self.0;
            while let Some(key) = map.next_key::<String>()? {
                keys.push(key);
                map.next_value_seed(Keys(&mut *keys))?;
            }
            Ok(())
        }
    }
    let mut keys = Vec::new();
    let mut de = serde_json::Deserializer::from_str(json);
    Keys(&mut keys).deserialize(&mut de).expect("JSON");
    keys
}

// ---------------------------------------------------------------------------------------
// 1. Refuse a tool by name with a custom error
// ---------------------------------------------------------------------------------------

async fn refuse_tool(lang: Lang) {
    let upstream = mcp::spawn_mcp_server().await;
    let config = json!({"tools": ["get_secret"], "message": "secrets stay home"});
    let sluice = start(
        &proxy::base_of(&upstream.url),
        recipe(lang, "refuse-tool", config),
    )
    .await;
    let client = mcp::connect(&format!("{}/mcp", sluice.url())).await;
    let before = posts(&upstream);

    let error = rpc_error(client.call_text("get_secret", Value::Null).await);
    assert_eq!(error.code.0, -32001, "{lang:?}: {error:?}");
    assert_eq!(error.message, "secrets stay home", "{lang:?}");
    assert_eq!(
        posts(&upstream),
        before,
        "{lang:?}: the refused call went up"
    );

    let echo = client.call_text("echo", json!({"text": "hi"})).await;
    assert_eq!(
        echo.unwrap(),
        "hi",
        "{lang:?}: another tool was not let through"
    );
    assert_eq!(posts(&upstream), before + 1);

    client.service.cancel().await.unwrap();
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_tool_in_rust_answers_a_listed_tool_with_its_error_and_lets_others_through() {
    refuse_tool(Lang::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_tool_in_python_answers_a_listed_tool_with_its_error_and_lets_others_through() {
    refuse_tool(Lang::Python).await;
}

// ---------------------------------------------------------------------------------------
// 2. Hide tools from tools/list
// ---------------------------------------------------------------------------------------

async fn hide_tools(lang: Lang) {
    let upstream = mcp::spawn_mcp_server().await;
    let config = json!({"tools": ["get_secret", "get_account"]});
    let sluice = start(
        &proxy::base_of(&upstream.url),
        recipe(lang, "hide-tools", config),
    )
    .await;
    let client = mcp::connect(&format!("{}/mcp", sluice.url())).await;
    let names = mcp::tool_names(&client.service.list_all_tools().await.unwrap());
    assert_eq!(names, ["announce", "count", "echo", "forecast"], "{lang:?}");
    // Hidden, not refused: the recipe says so, and chains refuse-tool for that.
    let secret = client.call_text("get_secret", Value::Null).await;
    assert_eq!(secret.unwrap(), SECRET_TEXT);
    client.service.cancel().await.unwrap();

    // What is left of the list keeps the server's key order: the proxied keys are the
    // direct ones less those of the hidden tools, in the same order.
    let direct = RawSession::open(&upstream.url).await;
    let (_, direct) = direct.send(3, "tools/list", json!({})).await;
    let proxied = RawSession::open(&format!("{}/mcp", sluice.url())).await;
    let (_, proxied) = proxied.send(3, "tools/list", json!({})).await;
    let (direct, proxied) = (direct.unwrap(), proxied.unwrap());
    assert!(!proxied.contains("get_secret"), "{lang:?}: {proxied}");
    let (direct_keys, proxied_keys) = (key_order(&direct), key_order(&proxied));
    assert!(proxied_keys.len() < direct_keys.len());
    let mut rest = direct_keys.iter();
    assert!(
        proxied_keys.iter().all(|key| rest.any(|k| k == key)),
        "{lang:?}: the keys were reordered:\n direct  {direct_keys:?}\n proxied {proxied_keys:?}"
    );
    assert_eq!(
        &proxied_keys[..3],
        ["jsonrpc", "id", "result"],
        "{lang:?}: the envelope's order"
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hide_tools_in_rust_takes_the_listed_tools_out_of_tools_list_in_order() {
    hide_tools(Lang::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hide_tools_in_python_takes_the_listed_tools_out_of_tools_list_in_order() {
    hide_tools(Lang::Python).await;
}

/// In a JSON-RPC batch the proxy does not know which answer is a `tools/list` one (it
/// knows the method only when the client's body was one request): the recipe wants the
/// requests too and knows it by id. A batch from a scripted upstream: no MCP server of
/// today's revisions answers one.
async fn hide_tools_in_a_batch(lang: Lang) {
    let tools = json!([{"name": "echo"}, {"name": "get_secret"}]);
    let answers = json!([
        {"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}},
        {"jsonrpc": "2.0", "id": 2, "result": {}},
    ]);
    let upstream = raw::serve(raw::Script {
        content_type: "application/json",
        chunks: vec![answers.to_string().into_bytes()],
        end: raw::End::Clean,
        gate: None,
    })
    .await;
    let sluice = start(
        &upstream.url(),
        recipe(lang, "hide-tools", json!({"tools": ["get_secret"]})),
    )
    .await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 2, "method": "ping"},
    ]);
    let response = client::post(&format!("{}/mcp", sluice.url()), &batch.to_string()).await;
    let answer: Value = serde_json::from_str(&client::text(response).await).unwrap();
    assert_eq!(
        answer,
        json!([
            {"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "echo"}]}},
            {"jsonrpc": "2.0", "id": 2, "result": {}},
        ]),
        "{lang:?}"
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hide_tools_in_rust_finds_the_tools_list_answer_in_a_batch() {
    hide_tools_in_a_batch(Lang::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hide_tools_in_python_finds_the_tools_list_answer_in_a_batch() {
    hide_tools_in_a_batch(Lang::Python).await;
}

// ---------------------------------------------------------------------------------------
// 3. Edit a tool result: text and structuredContent, keys kept in order
// ---------------------------------------------------------------------------------------

/// `get_account` answered directly and through the recipe, on a server at `base` with
/// its endpoint at `path`.
async fn edit_result(lang: Lang, base: &str, path: &str) {
    let config = json!({"find": "sk-live-", "replace": "sk-****-", "tools": ["get_account"]});
    let sluice = start(base, recipe(lang, "edit-result", config)).await;
    let masked = SECRET_KEY.replace("sk-live-", "sk-****-");

    // The exact text: direct, the secret is in the text item and in structuredContent;
    // through sluice, the same bytes with both edited (so the keys kept their order, and
    // the re-serialised JSON is the server's, compact).
    let direct = RawSession::open(&format!("{base}{path}")).await;
    let direct = direct.call("get_account").await;
    let answer: Value = serde_json::from_str(&direct).unwrap();
    assert_eq!(answer["result"]["structuredContent"]["api_key"], SECRET_KEY);
    assert!(
        answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains(SECRET_KEY),
        "{direct}"
    );
    let proxied = RawSession::open(&format!("{}{path}", sluice.url())).await;
    let proxied = proxied.call("get_account").await;
    assert_eq!(
        key_order(&proxied),
        key_order(&direct),
        "{lang:?}: keys reordered\n direct  {direct}\n proxied {proxied}"
    );
    assert_eq!(proxied, direct.replace("sk-live-", "sk-****-"), "{lang:?}");

    // The real client sees both edited; a tool not listed is left alone.
    let client = mcp::connect(&format!("{}{path}", sluice.url())).await;
    let result = client
        .service
        .call_tool(rmcp::model::CallToolRequestParams::new("get_account"))
        .await
        .unwrap();
    let structured = result
        .structured_content
        .clone()
        .expect("structuredContent");
    assert_eq!(structured["api_key"], masked.as_str(), "{lang:?}");
    assert!(mcp::result_text(&result).contains(&masked), "{lang:?}");
    let secret = client.call_text("get_secret", Value::Null).await;
    assert_eq!(
        secret.unwrap(),
        SECRET_TEXT,
        "{lang:?}: an unlisted tool was edited"
    );
    client.service.cancel().await.unwrap();
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_result_in_rust_edits_text_and_structured_content_of_the_rmcp_server() {
    let upstream = mcp::spawn_mcp_server().await;
    edit_result(Lang::Rust, &proxy::base_of(&upstream.url), mcp::MCP_PATH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_result_in_python_edits_text_and_structured_content_of_the_rmcp_server() {
    let upstream = mcp::spawn_mcp_server().await;
    edit_result(Lang::Python, &proxy::base_of(&upstream.url), mcp::MCP_PATH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_result_in_rust_edits_text_and_structured_content_of_the_python_sdk_server() {
    let upstream = peers::python_server("sse").await;
    edit_result(Lang::Rust, &upstream.base(), &upstream.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_result_in_python_edits_text_and_structured_content_of_the_python_sdk_server() {
    let upstream = peers::python_server("sse").await;
    edit_result(Lang::Python, &upstream.base(), &upstream.path()).await;
}

// ---------------------------------------------------------------------------------------
// 4. Redact arguments of a tools/call going to the server
// ---------------------------------------------------------------------------------------

async fn redact_arguments(lang: Lang) {
    let upstream = mcp::spawn_mcp_server().await;
    let config = json!({"arguments": ["text"], "marker": "[redacted]"});
    let sluice = start(
        &proxy::base_of(&upstream.url),
        recipe(lang, "redact-arguments", config),
    )
    .await;
    let client = mcp::connect(&format!("{}/mcp", sluice.url())).await;
    // echo answers with what the server received.
    let echo = client.call_text("echo", json!({"text": "hunter2"})).await;
    assert_eq!(echo.unwrap(), "[redacted]", "{lang:?}");
    let forecast = client
        .call_text("forecast", json!({"region": "north"}))
        .await;
    assert_eq!(
        forecast.unwrap(),
        "forecast for north",
        "{lang:?}: unlisted argument"
    );
    client.service.cancel().await.unwrap();
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redact_arguments_in_rust_replaces_a_listed_argument_before_the_server_sees_it() {
    redact_arguments(Lang::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redact_arguments_in_python_replaces_a_listed_argument_before_the_server_sees_it() {
    redact_arguments(Lang::Python).await;
}

// ---------------------------------------------------------------------------------------
// 5. Log an audit line per tools/call
// ---------------------------------------------------------------------------------------

/// The sluice binary, killed when dropped.
struct Binary(std::process::Child);

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `fields` of each JSON log line of `file` whose message starts with `audit:`.
fn audit_lines(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|line| line["fields"].clone())
        .filter(|fields| {
            fields["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("audit:"))
        })
        .collect()
}

/// The sluice binary (its log, as an operator reads it: `--log-file`, JSON lines) in
/// front of the rmcp server with the audit recipe.
async fn audit(lang: Lang) {
    let upstream = mcp::spawn_mcp_server().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sluice.log");
    let port = client::free_port();
    let (plugin, config, name) = match lang {
        Lang::Rust => (proxy::rust_plugin("cookbook-audit"), "", "cookbook-audit"),
        Lang::Python => (python_plugin(), r#"{"recipe":"audit"}"#, "cookbook-python"),
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    child
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &proxy::base_of(&upstream.url)])
        .args([
            "--no-watch",
            "--shutdown-grace",
            "1",
            "--log-format",
            "json",
        ])
        .arg("--cache-dir")
        .arg(cache_dir())
        .arg("--log-file")
        .arg(&log)
        .arg("--plugin")
        .arg(&plugin)
        .args(["--plugin-config", config, "--plugin-deadline-ms", "5000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut sluice = Binary(child.spawn().expect("sluice starts"));
    // A bound on the wait, not a timing assertion: a cold compile of the Python
    // component in a busy test run takes a while.
    let deadline = Instant::now() + Duration::from_secs(300);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Some(status) = sluice.0.try_wait().unwrap() {
            panic!(
                "sluice exited ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "sluice never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let client = mcp::connect(&format!("http://127.0.0.1:{port}/mcp")).await;
    let echo = client.call_text("echo", json!({"text": "hunter2"})).await;
    assert_eq!(echo.unwrap(), "hunter2");
    client.call_text("get_secret", Value::Null).await.unwrap();
    client.service.list_all_tools().await.unwrap(); // not a tools/call: no line
    let sessions = upstream.session_ids().await;
    let [session] = sessions.as_slice() else {
        panic!("one session expected, got {sessions:?}");
    };

    // The plugin logs before the call goes on, so the lines are in the file by now.
    let lines = audit_lines(&log);
    let messages: Vec<&str> = lines
        .iter()
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            format!(
                r#"audit: tools/call tool=echo caller=- client=127.0.0.1 session={session} arguments=["text"]"#
            ),
            format!(
                "audit: tools/call tool=get_secret caller=- client=127.0.0.1 session={session} arguments=[]"
            ),
        ],
        "{lang:?}"
    );
    assert!(lines.iter().all(|f| f["plugin"] == name), "{lines:?}");
    let all = std::fs::read_to_string(&log).unwrap();
    assert!(
        !all.contains("hunter2"),
        "{lang:?}: an argument value was logged"
    );
    client.service.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_in_rust_logs_one_line_per_tools_call_without_argument_values() {
    audit(Lang::Rust).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_in_python_logs_one_line_per_tools_call_without_argument_values() {
    audit(Lang::Python).await;
}

// ---------------------------------------------------------------------------------------
// A bad config is refused at start, with the reason
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipe_refuses_a_bad_config_at_start_with_the_reason() {
    let cases = [
        (
            Lang::Rust,
            "hide-tools",
            json!({}),
            "cookbook-hide-tools: config: missing field `tools`",
        ),
        (
            Lang::Rust,
            "redact-arguments",
            json!({"arguments": ["a"], "mask": "x"}),
            "unknown field `mask`",
        ),
        (
            Lang::Python,
            "hide-tools",
            json!({}),
            "cookbook-python: config: hide-tools needs tools",
        ),
        (
            Lang::Python,
            "audit",
            json!({"level": "info"}),
            "cookbook-python: config: unknown key(s) level",
        ),
        (
            Lang::Python,
            "edit-result",
            json!({"find": "", "replace": "x"}),
            "cookbook-python: config: find is empty",
        ),
    ];
    for (lang, name, config, reason) in cases {
        let mut config = proxy::config("http://127.0.0.1:9", vec![recipe(lang, name, config)]);
        config.cache_dir = Some(cache_dir().to_path_buf());
        let Err(error) = app::start(config).await else {
            panic!("{lang:?} {name}: a bad config was accepted");
        };
        let error = sluice::error_chain::ErrorChain(&error).to_string();
        assert!(error.contains(reason), "{lang:?} {name}: {error}");
    }
}

// ---------------------------------------------------------------------------------------
// The guide shows the tested code
// ---------------------------------------------------------------------------------------

/// Each code block of the guide's cookbook marked `<!-- cookbook: PATH -->` is an excerpt
/// of PATH, line for line: the code a reader copies is the code these tests run.
#[test]
fn the_guides_cookbook_code_is_the_tested_plugins_code() {
    let guide = std::fs::read_to_string(root().join("docs/writing-plugins.md")).unwrap();
    let mut lines = guide.lines();
    let mut checked = 0;
    while let Some(line) = lines.next() {
        let Some(path) = line
            .strip_prefix("<!-- cookbook: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(fence.starts_with("```"), "no code block after {line}");
        let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let source = std::fs::read_to_string(root().join(path))
            .unwrap_or_else(|e| panic!("{path}, named in the guide: {e}"));
        let source: Vec<&str> = source.lines().collect();
        assert!(
            !block.is_empty() && source.windows(block.len()).any(|w| w == block),
            "the guide's block from {path} is not in {path} as it is:\n{}",
            block.join("\n")
        );
        checked += 1;
    }
    assert_eq!(
        checked, 11,
        "every recipe in both languages, and the Python dispatch"
    );
}
