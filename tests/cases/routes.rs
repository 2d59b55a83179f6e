//! Several upstreams behind one listener: `[[route]]`s of the config file, each with its
//! own upstream (a stdio server, an HTTP server) and its own chain, hot-swapped on its
//! own; `/metrics` and tapes carry the route.

use std::time::{Duration, Instant};

use serde_json::Value;
use sluice::app::Running;

use crate::common::{client, mcp, peers, proxy};

async fn secret(client: &mcp::McpClient) -> String {
    client.call_text("get_secret", Value::Null).await.unwrap()
}

/// sluice started from `file` the way the binary does it, on a port of its own.
async fn start(file: &std::path::Path, record: Option<&std::path::Path>) -> Running {
    proxy::start_from_file(file, "127.0.0.1:0", record).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_upstreams_behind_one_listener_each_with_its_own_chain_swapped_on_its_own() {
    let http_server = mcp::spawn_mcp_server().await;
    let dir = tempfile::tempdir().unwrap();
    // Each route's plugin is its own file, so that swapping one touches one route.
    let redact = dir.path().join("stdio-redact.wasm");
    let guard = dir.path().join("http-guard.wasm");
    std::fs::copy(proxy::rust_plugin("redact"), &redact).unwrap();
    std::fs::copy(proxy::rust_plugin("passthrough"), &guard).unwrap();
    let server = peers::python_stdio_server();
    let command: Vec<String> = std::iter::once(server.program.clone())
        .chain(server.args.clone())
        .collect();
    let file = dir.path().join("sluice.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[[route]]
prefix = "/local"
[route.stdio]
command = {command:?}
[[route.plugin]]
path = "stdio-redact.wasm"
config = {{ patterns = ["sk-live-[a-z0-9]+"] }}

[[route]]
name = "remote"
prefix = "/remote"
upstream = "{}"
[[route.plugin]]
path = "http-guard.wasm"
config = {{ patterns = ["sk-live-[a-z0-9]+"] }}
"#,
            proxy::base_of(&http_server.url)
        ),
    )
    .unwrap();
    let record = tempfile::tempdir().unwrap();
    let mut sluice = start(&file, Some(record.path())).await;
    sluice.watch_files().unwrap();

    // The stdio route redacts; the HTTP route (a pass-through) does not.
    let local = mcp::connect(&format!("{}/local/mcp", sluice.url())).await;
    let remote = mcp::connect(&format!("{}/remote{}", sluice.url(), mcp::MCP_PATH)).await;
    assert_eq!(secret(&local).await, "the key is [REDACTED]");
    assert_eq!(secret(&remote).await, "the key is sk-live-abc123");

    // Swap the HTTP route's plugin for the redactor: only that route changes.
    let local_generation = sluice.route("local").unwrap().proxy.chain().generation();
    let remote_generation = sluice.route("remote").unwrap().proxy.chain().generation();
    let swapped = dir.path().join("swap.tmp");
    std::fs::copy(proxy::rust_plugin("redact"), &swapped).unwrap();
    std::fs::rename(&swapped, &guard).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sluice.route("remote").unwrap().proxy.chain().generation() == remote_generation {
        assert!(Instant::now() < deadline, "the remote route never reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(secret(&remote).await, "the key is [REDACTED]");
    assert_eq!(
        sluice.route("local").unwrap().proxy.chain().generation(),
        local_generation,
        "the other route's chain was not touched"
    );
    assert_eq!(secret(&local).await, "the key is [REDACTED]");

    // What no route takes: 404 with a JSON-RPC error (there is no default upstream).
    let stray = client::post(&format!("{}/elsewhere/mcp", sluice.url()), "{}").await;
    assert_eq!(stray.status(), 404);
    assert!(
        client::text(stray)
            .await
            .contains("no route for /elsewhere/mcp")
    );

    // /metrics carries the route.
    let metrics = sluice.proxy().metrics().encode();
    for line in [
        r#"sluice_route_requests_total{route="local"}"#,
        r#"sluice_route_requests_total{route="remote"}"#,
        r#"sluice_plugin_verdicts_total{route="local",plugin="stdio-redact",verdict="modify"}"#,
        r#"sluice_plugin_verdicts_total{route="remote",plugin="http-guard",verdict="modify"}"#,
    ] {
        assert!(metrics.contains(line), "no {line} in\n{metrics}");
    }
    // The admin API reloads one route by name, and refuses a name that is no route.
    let admin = proxy::serve_admin(&mut sluice).await;
    let remote_generation = sluice.route("remote").unwrap().proxy.chain().generation();
    let reload = |query: &str| {
        let request = http::Request::post(format!("http://{admin}/admin/reload{query}"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        client::send(request)
    };
    assert_eq!(reload("?route=local").await.status(), 200);
    assert_eq!(
        sluice.route("local").unwrap().proxy.chain().generation(),
        local_generation + 1
    );
    assert_eq!(
        sluice.route("remote").unwrap().proxy.chain().generation(),
        remote_generation
    );
    assert_eq!(reload("?route=nowhere").await.status(), 404);

    local.service.cancel().await.unwrap();
    remote.service.cancel().await.unwrap();
    sluice.stop().await;

    // Each route records its own tape, named after it, with its upstream in the header.
    for (route, upstream) in [("local", "stdio:"), ("remote", "http://")] {
        let tapes: Vec<_> = std::fs::read_dir(record.path().join(route))
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
            .collect();
        assert_eq!(tapes.len(), 1, "{route}: {tapes:?}");
        let header = std::fs::read_to_string(tapes[0].path()).unwrap();
        let header = header.lines().next().unwrap();
        assert!(header.contains(upstream), "{route}: {header}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_sse_server_behind_a_route_prefix_gets_its_endpoint_under_the_prefix() {
    // The legacy transport's endpoint event names the POST URL; behind a route the
    // client must POST under the route's prefix, or no route takes it.
    let peer = peers::python_server("legacy").await;
    let dir = tempfile::tempdir().unwrap();
    let redact = dir.path().join("redact.wasm");
    std::fs::copy(proxy::rust_plugin("redact"), &redact).unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[[route]]
prefix = "/legacy"
upstream = "{}"
[[route.plugin]]
path = "redact.wasm"
config = {{ patterns = ["sk-live-[a-z0-9]+"] }}
"#,
            peer.base()
        ),
    )
    .unwrap();
    let sluice = start(&file, None).await;
    let report = peers::python_client(
        &format!("{}/legacy/sse", sluice.url()),
        "sse",
        "sluice",
        None,
    )
    .await;
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert_eq!(report["secret"], "the key is [REDACTED]", "{report}");
    assert_eq!(report["echo"], "héllo", "{report}");
    sluice.stop().await;
}
