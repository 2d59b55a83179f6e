//! Per-caller rate limits (`[[rate_limit]]`): under a burst exactly the allowed number
//! of requests reach the upstream, the rest get 429 with `Retry-After` and a JSON-RPC
//! error (-32055) per request id; other methods pass; a batch is all or nothing; each
//! route counts on its own. Counts, not timings: one token per hour refills nothing
//! while a test runs.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming};
use serde_json::Value;
use sluice::app::Running;
use sluice::auth::{AccessSettings, RateLimitSettings};
use sluice::cli;
use sluice::config::Config;

use crate::common::{client, mcp, proxy};

const HOUR: u32 = 3600;

fn limit(method: Option<&str>, burst: u32) -> RateLimitSettings {
    RateLimitSettings {
        method: method.map(str::to_string),
        requests: 1,
        per_secs: HOUR,
        burst: Some(burst),
        max_callers: None,
    }
}

/// sluice in front of `upstream` (a base URL) with `limits` on its one route.
async fn start(upstream: &str, limits: Vec<RateLimitSettings>) -> Running {
    sluice::app::start(Config {
        access: AccessSettings {
            rate_limits: limits,
            ..Default::default()
        },
        ..proxy::config(upstream, Vec::new())
    })
    .await
    .expect("sluice starts")
}

/// An MCP session opened with plain POSTs, so that every status and header is seen.
struct Session {
    url: String,
    id: String,
}

impl Session {
    async fn open(url: &str) -> Self {
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"rate-limit-test","version":"1"}}}"#;
        let response = client::post(url, init).await;
        assert_eq!(response.status(), 200);
        let id = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(client::text(response).await.contains("serverInfo"));
        let session = Self {
            url: url.to_string(),
            id,
        };
        let initialized = session
            .post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await;
        assert_eq!(initialized.status(), 202);
        session
    }

    async fn post(&self, body: &str) -> Response<Incoming> {
        let request = Request::post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", "2025-03-26")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        client::send(request).await
    }
}

fn call(id: u32) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"call {id}"}}}}}}"#
    )
}

/// POSTs the upstream received so far (every client message is one).
fn upstream_posts(server: &mcp::McpServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.method == hyper::Method::POST)
        .count()
}

/// A 429's `Retry-After`, and the ids and codes of its JSON-RPC errors.
async fn refusal(response: Response<Incoming>) -> (u64, Vec<(Value, i64)>) {
    assert_eq!(response.status(), 429);
    let retry_after = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = serde_json::from_str(&client::text(response).await).unwrap();
    let errors = match body {
        Value::Array(items) => items,
        one => vec![one],
    };
    let errors = errors
        .iter()
        .map(|e| (e["id"].clone(), e["error"]["code"].as_i64().unwrap()))
        .collect();
    (retry_after, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_calls_lets_exactly_the_limit_through_and_other_methods_pass() {
    const N: u32 = 12;
    const K: u32 = 4;
    let server = mcp::spawn_mcp_server().await;
    let sluice = start(
        &proxy::base_of(&server.url),
        vec![limit(Some("tools/call"), K)],
    )
    .await;
    let session = Session::open(&format!("{}{}", sluice.url(), mcp::MCP_PATH)).await;
    let before = upstream_posts(&server);

    // All at once.
    let bodies: Vec<String> = (1..=N).map(call).collect();
    let responses =
        futures_util::future::join_all(bodies.iter().map(|body| session.post(body))).await;
    let mut passed = Vec::new();
    let mut refused = Vec::new();
    for (id, response) in (1..=N).zip(responses) {
        if response.status() == 429 {
            refused.push((id, refusal(response).await));
        } else {
            assert_eq!(response.status(), 200);
            let text = client::text(response).await;
            assert!(text.contains(&format!("call {id}")), "{text}");
            passed.push(id);
        }
    }
    assert_eq!(passed.len(), K as usize, "passed: {passed:?}");
    assert_eq!(refused.len(), (N - K) as usize);
    assert_eq!(upstream_posts(&server) - before, K as usize);
    for (id, (retry_after, errors)) in &refused {
        // One token per hour: the next one is an hour away.
        assert_eq!(*retry_after, u64::from(HOUR));
        assert_eq!(errors, &[(Value::from(*id), -32055)]);
    }

    // tools/list is not a tools/call: it passes, and reaches the upstream.
    for id in 100..103 {
        let response = session
            .post(&format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#
            ))
            .await;
        assert_eq!(response.status(), 200);
        assert!(client::text(response).await.contains("echo"));
    }
    assert_eq!(upstream_posts(&server) - before, K as usize + 3);

    let metrics = sluice.proxy().metrics().encode();
    assert!(
        metrics.contains(&format!(
            r#"sluice_rate_limited_total{{method="tools/call"}} {}"#,
            N - K
        )),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_refused_whole_and_takes_nothing() {
    let server = mcp::spawn_mcp_server().await;
    let sluice = start(
        &proxy::base_of(&server.url),
        vec![limit(Some("tools/call"), 3)],
    )
    .await;
    let session = Session::open(&format!("{}{}", sluice.url(), mcp::MCP_PATH)).await;
    let before = upstream_posts(&server);

    // Two calls and a list: two tokens of three.
    let first = session
        .post(&format!(
            r#"[{},{},{{"jsonrpc":"2.0","id":3,"method":"tools/list"}}]"#,
            call(1),
            call(2)
        ))
        .await;
    assert_ne!(first.status(), 429);
    assert_eq!(upstream_posts(&server) - before, 1);

    // Two more calls: one token left, so the whole batch is refused, every request in
    // it answered, and nothing reaches the upstream.
    let second = session
        .post(&format!(
            r#"[{},{{"jsonrpc":"2.0","id":6,"method":"tools/list"}},{}]"#,
            call(5),
            call(7)
        ))
        .await;
    let (retry_after, errors) = refusal(second).await;
    assert_eq!(retry_after, u64::from(HOUR));
    assert_eq!(
        errors,
        [
            (Value::from(5), -32055),
            (Value::from(6), -32055),
            (Value::from(7), -32055)
        ]
    );
    assert_eq!(upstream_posts(&server) - before, 1);

    // The refused batch took nothing: the last token is still there, once.
    let single = session.post(&call(8)).await;
    assert_eq!(single.status(), 200);
    assert!(client::text(single).await.contains("call 8"));
    assert_eq!(refusal(session.post(&call(9)).await).await.1.len(), 1);
    assert_eq!(upstream_posts(&server) - before, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_counts_on_its_own_and_a_routes_limits_replace_the_top_levels() {
    let server = mcp::spawn_mcp_server().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    let upstream = proxy::base_of(&server.url);
    std::fs::write(
        &file,
        format!(
            r#"
[[rate_limit]]
method = "tools/call"
requests = 1
per_secs = 3600
burst = 2

[[route]]
name = "a"
prefix = "/a"
upstream = "{upstream}"

[[route]]
name = "b"
prefix = "/b"
upstream = "{upstream}"
[[route.rate_limit]]
method = "tools/call"
requests = 1
per_secs = 3600
burst = 3
"#
        ),
    )
    .unwrap();
    let args = [
        "sluice",
        "--config",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--no-cache",
        "--shutdown-grace",
        "1",
    ];
    let (cli, matches) = cli::parse(args).unwrap();
    let config = cli::resolve(&cli.run, &matches).unwrap();
    let sluice = sluice::app::start(config).await.expect("sluice starts");

    // The same caller (127.0.0.1) on both routes: each has its own buckets.
    let mut allowed = Vec::new();
    for route in ["a", "b"] {
        let session = Session::open(&format!("{}/{route}{}", sluice.url(), mcp::MCP_PATH)).await;
        let mut passed = 0;
        for id in 1..=10 {
            let response = session.post(&call(id)).await;
            if response.status() == 429 {
                assert_eq!(refusal(response).await.1, [(Value::from(id), -32055)]);
            } else {
                assert_eq!(response.status(), 200);
                passed += 1;
            }
        }
        allowed.push(passed);
    }
    // Route a has the top level's burst of 2; route b its own 3.
    assert_eq!(allowed, [2, 3]);
}

/// A body the limits cannot count (not UTF-8; UTF-16 JSON, which is valid UTF-8 with
/// NULs in it) would pass them uncounted: where limits apply it is refused, and the
/// upstream never sees it.
#[tokio::test]
async fn a_body_the_limits_cannot_count_is_refused_not_passed() {
    let server = mcp::spawn_mcp_server().await;
    let sluice = start(
        &proxy::base_of(&server.url),
        vec![limit(Some("tools/call"), 1)],
    )
    .await;
    let url = format!("{}{}", sluice.url(), mcp::MCP_PATH);
    let mut not_utf8 = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":""#.to_vec();
    not_utf8.extend_from_slice(b"\xff\"}}}");
    let utf16: Vec<u8> = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    for body in [not_utf8, utf16] {
        let request = Request::post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = client::send(request).await;
        let status = response.status();
        let text = String::from_utf8_lossy(
            &http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes(),
        )
        .into_owned();
        assert_eq!(status, 400, "{text}");
    }
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    sluice.stop().await;
}
