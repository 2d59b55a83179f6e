//! What an operator sees: `/metrics` in Prometheus format, scraped over HTTP after real
//! MCP traffic, and gauges (open streams, live plugin instances) that come back to zero.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use serde_json::json;

use crate::common::mcp::{self, spawn_mcp_server};
use crate::common::{client, proxy};

/// The counter `counter{label}` a plugin `plugin` on the default route keeps
/// (`sluice_plugin_counter_total`), as `/metrics` shows it.
pub(crate) fn plugin_counter(
    metrics: &str,
    plugin: &str,
    counter: &str,
    label: &str,
) -> Option<f64> {
    value(
        metrics,
        "sluice_plugin_counter_total",
        &format!(r#"route="default",plugin="{plugin}",counter="{counter}",label="{label}""#),
    )
}

/// The value of the series `name` with exactly these labels (`{}` for none).
pub(crate) fn value(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let wanted = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        (series == wanted).then(|| value.parse().ok()).flatten()
    })
}

pub(crate) async fn scrape(admin: std::net::SocketAddr) -> String {
    let response = client::send(
        Request::get(format!("http://{admin}/metrics"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    client::text(response).await
}

/// Polls until `check` holds for a scrape, or panics with the last one.
async fn eventually(
    admin: std::net::SocketAddr,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = scrape(admin).await;
        if check(&metrics) {
            return metrics;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{what} never held:\n{metrics}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_streams_events_verdicts_failures_latency_reloads_and_upstream_errors() {
    let server = spawn_mcp_server().await;
    let mut sluice = proxy::start(
        &proxy::base_of(&server.url),
        vec![
            proxy::rust("redact", r#"{"patterns":["sk-live-[a-z0-9]+"]}"#),
            proxy::rust("dropper", r#"{"methods":["notifications/progress"]}"#),
            // An observer that fails on everything: counted, and out of the way.
            proxy::fail_open(proxy::rust("trap", "")),
        ],
    )
    .await;
    let admin = proxy::serve_admin(&mut sluice).await;

    let before = scrape(admin).await;
    assert_eq!(value(&before, "sluice_streams_open", ""), Some(0.0));
    assert_eq!(
        value(&before, "sluice_reloads_total", r#"outcome="ok""#),
        Some(0.0)
    );

    let client = mcp::connect(&format!("{}/mcp", sluice.url())).await;
    assert_eq!(
        client.call_text("get_secret", json!(null)).await.unwrap(),
        "the key is [REDACTED]"
    );
    client
        .call_with_progress("count", json!({"n": 3}))
        .await
        .unwrap();
    // The client's GET stream is open while its session lives.
    let during = eventually(admin, "a stream is open", |m| {
        value(m, "sluice_streams_open", "").unwrap_or(0.0) >= 1.0
    })
    .await;
    assert!(value(&during, "sluice_plugin_instances_live", "").unwrap() >= 1.0);
    client.service.cancel().await.unwrap();

    let after = eventually(admin, "streams and instances back to zero", |m| {
        value(m, "sluice_streams_open", "") == Some(0.0)
            && value(m, "sluice_plugin_instances_live", "") == Some(0.0)
    })
    .await;
    let verdict = |plugin: &str, verdict: &str| {
        value(
            &after,
            "sluice_plugin_verdicts_total",
            &format!(r#"plugin="{plugin}",verdict="{verdict}""#),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(verdict("dropper", "drop"), 3.0, "{after}");
    assert!(verdict("redact", "modify") >= 1.0, "{after}");
    assert!(verdict("redact", "pass") >= 1.0, "{after}");
    assert!(
        value(
            &after,
            "sluice_plugin_failures_total",
            r#"plugin="trap",kind="trap""#
        )
        .unwrap()
            >= 1.0,
        "{after}"
    );
    let events_in = value(&after, "sluice_events_total", r#"direction="in""#).unwrap();
    let events_out = value(&after, "sluice_events_total", r#"direction="out""#).unwrap();
    assert!(events_in >= 5.0, "{after}");
    // A dropped event with an SSE id still goes out, as the id alone (the cursor).
    assert!(events_out <= events_in && events_out > 0.0, "{after}");
    let calls = value(
        &after,
        "sluice_plugin_call_seconds_count",
        r#"plugin="redact""#,
    )
    .unwrap();
    let verdicts = verdict("redact", "pass") + verdict("redact", "modify");
    // One call in TIMING_SAMPLE per exchange is timed, the first of each included.
    assert!(
        calls >= 1.0 && calls <= verdicts,
        "{calls} timed of {verdicts}: {after}"
    );
    assert_eq!(
        value(
            &after,
            "sluice_plugin_call_seconds_bucket",
            r#"le="+Inf",plugin="redact""#
        ),
        Some(calls),
        "{after}"
    );
    // Every stream's end is counted: the two calls' streams and the GET stream. A
    // call's stream ends `complete` when the proxy reads the upstream's end before the
    // client drops it after its answer, `client_gone` otherwise (a busy machine).
    let ended = |outcome: &str| {
        value(
            &after,
            "sluice_streams_ended_total",
            &format!(r#"outcome="{outcome}""#),
        )
        .unwrap_or(0.0)
    };
    assert!(ended("complete") + ended("client_gone") >= 3.0, "{after}");

    // A reload is counted.
    let reload = client::send(
        Request::post(format!("http://{admin}/admin/reload"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(reload.status(), 200);
    let reloaded = scrape(admin).await;
    assert_eq!(
        value(&reloaded, "sluice_reloads_total", r#"outcome="ok""#),
        Some(1.0)
    );
    sluice.stop().await;

    // An unreachable upstream is counted as a connect error.
    let dead = proxy::start("http://127.0.0.1:9", vec![]).await;
    let _ = client::post(
        &format!("{}/mcp", dead.url()),
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    let text = dead.proxy().metrics().encode();
    assert_eq!(
        value(&text, "sluice_upstream_errors_total", r#"kind="connect""#),
        Some(1.0)
    );
    dead.stop().await;
}
