//! Faults with a defined outcome each, against a scripted upstream (a real server cannot
//! be made to die mid-event on cue): the upstream closes mid-event, resets, stalls, sends
//! a 10 MiB event, garbage or a wrong content type; the client goes away or reads
//! slowly. After each, no stream is open and no plugin instance is alive.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use sluice::app::Running;
use sluice::plugin::builtin;
use sluice::proxy::ProxySettings;
use sluice::sse::Event;
use sluice::upstream::SseEvents;

use crate::common::{client, proxy, raw};

const REQUEST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#;
const PROGRESS: &str =
    "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n";

fn script(chunks: Vec<Vec<u8>>, end: raw::End) -> raw::Script {
    raw::Script {
        content_type: "text/event-stream",
        chunks,
        end,
        gate: None,
    }
}

async fn sluice_in_front(upstream: &raw::RawUpstream, settings: ProxySettings) -> Running {
    proxy::start_with(
        &upstream.url(),
        vec![proxy::wat("pass", builtin::PASS)],
        settings,
    )
    .await
}

/// Waits until the proxy holds no stream and no plugin instance.
async fn back_to_zero(sluice: &Running) {
    let metrics = sluice.proxy().metrics();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while (metrics.streams_open(), metrics.instances_live()) != (0, 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still open: {} streams, {} instances",
            metrics.streams_open(),
            metrics.instances_live()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn counter(sluice: &Running, series: &str) -> f64 {
    let text = sluice.proxy().metrics().encode();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The JSON-RPC error the proxy sent for request 1, if any.
fn error_for_request(events: &[Event]) -> Option<Value> {
    events.iter().find_map(|e| {
        let v: Value = serde_json::from_str(e.data_str()).ok()?;
        (v["id"] == 1 && v.get("error").is_some()).then(|| v["error"].clone())
    })
}

/// The client's view of a POST whose stream fails: what arrived, and the error for
/// the request.
async fn failing_stream(
    upstream: raw::RawUpstream,
    settings: ProxySettings,
) -> (Vec<Event>, Value, Running) {
    let sluice = sluice_in_front(&upstream, settings).await;
    let events =
        client::events(client::post(&format!("{}/mcp", sluice.url()), REQUEST).await).await;
    let error = error_for_request(&events).expect("the waiting request got an error");
    assert_eq!(error["code"], -32052, "{error}");
    back_to_zero(&sluice).await;
    assert_eq!(
        counter(&sluice, r#"sluice_upstream_errors_total{kind="stream"}"#),
        1.0
    );
    assert_eq!(
        counter(
            &sluice,
            r#"sluice_streams_ended_total{outcome="upstream_error"}"#
        ),
        1.0
    );
    (events, error, sluice)
}

#[tokio::test]
async fn the_upstream_closing_mid_event_ends_the_stream_with_an_error_for_the_request() {
    let upstream = raw::serve(script(
        vec![
            PROGRESS.into(),
            b"id: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"res".to_vec(),
        ],
        raw::End::Abort,
    ))
    .await;
    let (events, error, _sluice) = failing_stream(upstream, ProxySettings::default()).await;
    assert_eq!(events.len(), 2, "the progress, then the error: {events:?}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("ended before the response")
    );
}

#[tokio::test]
async fn a_connection_reset_ends_the_stream_with_an_error_for_the_request() {
    let upstream = raw::serve(script(vec![PROGRESS.into()], raw::End::Reset)).await;
    let (events, error, _sluice) = failing_stream(upstream, ProxySettings::default()).await;
    assert!(events[0].data_str().contains("notifications/progress"));
    // A fixed text and the request id; the OS's words stay in the log.
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("the upstream's connection broke (request "),
        "{message}"
    );
    for leak in ["os error", "reset", "127.0.0.1"] {
        assert!(!message.to_lowercase().contains(leak), "{leak}: {message}");
    }
}

#[tokio::test]
async fn a_stalled_upstream_is_cut_at_the_idle_timeout() {
    let upstream = raw::serve(script(vec![PROGRESS.into()], raw::End::Stall)).await;
    let settings = ProxySettings {
        upstream_idle_timeout: Some(Duration::from_millis(300)),
        ..ProxySettings::default()
    };
    let started = std::time::Instant::now();
    let (_, error, _sluice) = failing_stream(upstream, settings).await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("sent nothing for 300ms"),
        "{error}"
    );
    // A hang guard, not a timing test: the message above says which timeout fired.
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn a_10_mib_event_ends_the_stream_with_an_error_and_memory_stays_bounded() {
    let mut huge = b"data: ".to_vec();
    huge.extend(std::iter::repeat_n(b'A', 10 << 20));
    huge.extend_from_slice(b"\n\n");
    // In 64 KiB pieces, as a network would deliver it.
    let chunks = huge.chunks(64 << 10).map(<[u8]>::to_vec).collect();
    let upstream = raw::serve(script(chunks, raw::End::Clean)).await;
    let (_, error, _sluice) = failing_stream(upstream, ProxySettings::default()).await;
    assert!(
        error["message"].as_str().unwrap().contains("limit"),
        "{error}"
    );
}

#[tokio::test]
async fn garbage_from_the_upstream_is_not_an_event_and_breaks_nothing() {
    // Not SSE at all: binary noise, lone CRs, a NUL, invalid UTF-8, no blank line
    // until the end. The decoder reads lines of fields; nothing here is a valid event
    // with data except what the spec says is one.
    let upstream = raw::serve(script(
        vec![
            b"\x00\xff\xfe garbage\r\xc3\x28 more\n".to_vec(),
            b"no colon here\nevent\n\n".to_vec(),
            b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n".to_vec(),
        ],
        raw::End::Clean,
    ))
    .await;
    let sluice = sluice_in_front(&upstream, ProxySettings::default()).await;
    let events =
        client::events(client::post(&format!("{}/mcp", sluice.url()), REQUEST).await).await;
    // The real response still arrives; the garbage produced no message.
    let messages: Vec<&str> = events
        .iter()
        .map(Event::data_str)
        .filter(|d| !d.is_empty())
        .collect();
    assert_eq!(messages, vec![r#"{"jsonrpc":"2.0","id":1,"result":{}}"#]);
    back_to_zero(&sluice).await;
}

#[tokio::test]
async fn a_wrong_content_type_for_a_request_is_a_502_with_a_json_rpc_error() {
    let upstream = raw::serve_fixed(
        "200 OK",
        &["content-type: text/html"],
        "<html>gateway says hi</html>",
    )
    .await;
    let sluice = sluice_in_front(&upstream, ProxySettings::default()).await;
    let response = client::post(&format!("{}/mcp", sluice.url()), REQUEST).await;
    assert_eq!(response.status(), 502);
    let body: Value = serde_json::from_str(&client::text(response).await).unwrap();
    assert_eq!(body["id"], 1);
    assert_eq!(body["error"]["code"], -32051);
    // A fixed text and the request id; the content type is in the log (issue 21).
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("response could not be used"), "{message}");
    assert!(message.contains("(request "), "{message}");
    assert_eq!(
        counter(&sluice, r#"sluice_upstream_errors_total{kind="response"}"#),
        1.0
    );
    back_to_zero(&sluice).await;
}

#[tokio::test]
async fn a_client_that_goes_away_frees_the_stream_and_its_plugin_instances() {
    let (upstream, gate) = raw::gated_sse(10, |i| format!(r#"{{"n":{i}}}"#)).await;
    let sluice = sluice_in_front(&upstream, ProxySettings::default()).await;
    let response = client::post(&format!("{}/mcp", sluice.url()), REQUEST).await;
    let mut events = SseEvents::new(response.into_body(), 1 << 20);
    for _ in 0..2 {
        events.next().await.unwrap().unwrap();
    }
    assert_eq!(sluice.proxy().metrics().streams_open(), 1);
    assert_eq!(sluice.proxy().metrics().instances_live(), 1);
    drop(events);
    gate.add_permits(1);
    back_to_zero(&sluice).await;
    assert_eq!(
        counter(
            &sluice,
            r#"sluice_streams_ended_total{outcome="client_gone"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn a_slow_client_pushes_back_on_the_upstream_instead_of_filling_memory() {
    // 256 MiB of events; the client reads the head and then nothing. So much because
    // the kernel alone may buffer tens of MiB between the four sockets (tcp_rmem's
    // maximum is often tens of MiB, and autotuning gets there after busy runs):
    // the quarter below must be out of the kernel's reach, or the test measures it.
    const EVENTS: usize = 16384;
    let event = format!("data: {}\n\n", "x".repeat((16 << 10) - 8));
    let total = EVENTS * event.len();
    let upstream = raw::serve(script(vec![event.into_bytes(); EVENTS], raw::End::Clean)).await;
    let written = Arc::clone(&upstream.written);
    let sluice = sluice_in_front(&upstream, ProxySettings::default()).await;
    let response = client::post(&format!("{}/mcp", sluice.url()), REQUEST).await;
    // Let the pipeline fill up: socket buffers on both sides and one read in sluice.
    let mut last = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let now = written.load(Ordering::Relaxed);
        if now == last && now > 0 {
            break;
        }
        last = now;
    }
    let stalled_at = written.load(Ordering::Relaxed);
    assert!(
        stalled_at < total / 4,
        "the upstream wrote {stalled_at} of {total} bytes to a client that reads nothing"
    );
    // Reading resumes the flow: everything arrives.
    let events = client::events(response).await;
    assert_eq!(events.len(), EVENTS);
    back_to_zero(&sluice).await;
}
