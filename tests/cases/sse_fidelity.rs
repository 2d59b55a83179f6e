//! SSE exactness through the proxy: whatever the upstream's framing, the client gets
//! the same events; broken streams end with a defined answer.

use sluice::proxy::ProxySettings;
use sluice::sse::{Event, Frame};

use crate::common::{client, proxy, raw};

/// Cuts `stream` at every position in `cuts`.
fn split(stream: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    for &cut in cuts {
        chunks.push(stream[start..cut].to_vec());
        start = cut;
    }
    chunks.push(stream[start..].to_vec());
    chunks
}

fn event(id: Option<&str>, kind: Option<&str>, data: Option<&str>, retry: Option<u64>) -> Event {
    Event {
        id: id.map(str::to_string),
        event: kind.map(str::to_string),
        data: data.map(str::to_string),
        retry,
    }
}

const AWKWARD: &str = "\u{feff}: welcome\r\n\r\nid: 1\r\nevent: update\r\nretry: 3000\r\ndata: line one\r\ndata: line two\r\n\r\nid:2\rdata:café ☕\r\rdata\nid: 3\n\n: keep-alive\n\ndata:  two spaces\r\n\r\nid: 4\nretry: 10\n\n";

fn awkward_expected() -> Vec<Frame> {
    vec![
        Frame::Comment(" welcome".into()),
        Frame::Event(event(
            Some("1"),
            Some("update"),
            Some("line one\nline two"),
            Some(3000),
        )),
        Frame::Event(event(Some("2"), None, Some("café ☕"), None)),
        Frame::Event(event(Some("3"), None, Some(""), None)),
        Frame::Comment(" keep-alive".into()),
        Frame::Event(event(None, None, Some(" two spaces"), None)),
        Frame::Event(event(Some("4"), None, None, Some(10))),
    ]
}

/// Cut points that split the BOM, a CRLF pair and a UTF-8 sequence.
fn awkward_cuts() -> Vec<usize> {
    let bytes = AWKWARD.as_bytes();
    let crlf = AWKWARD.find("two\r\n").unwrap() + 4; // between CR and LF
    let utf8 = AWKWARD.find('é').unwrap() + 1; // inside é
    let coffee = AWKWARD.find('☕').unwrap() + 2; // inside ☕
    let mut cuts = vec![1, 2, crlf, utf8, coffee, bytes.len() - 3];
    cuts.sort();
    cuts
}

#[tokio::test]
async fn split_crlf_events_come_out_the_same_through_a_passing_plugin() {
    let upstream = raw::serve(raw::Script {
        content_type: "text/event-stream",
        chunks: split(AWKWARD.as_bytes(), &awkward_cuts()),
        end: raw::End::Clean,
        gate: None,
    })
    .await;
    let sluice = proxy::start(&upstream.url(), vec![proxy::rust("passthrough", "")]).await;
    let response = client::post(
        &format!("{}/mcp", sluice.url()),
        r#"{"jsonrpc":"2.0","method":"x"}"#,
    )
    .await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let (frames, clean) = client::frames(response).await;
    assert!(clean);
    assert_eq!(frames, awkward_expected());
    // Events without data (id- or retry-only blocks) are transport control and bypass
    // the chain; every message passed the plugin once.
    let messages = awkward_expected()
        .iter()
        .filter(|f| matches!(f, Frame::Event(e) if !e.data_str().is_empty()))
        .count();
    assert_eq!(messages, 3);
    assert_eq!(
        proxy::stats(&sluice, 0).calls,
        messages as u64,
        "the plugin saw every message once"
    );
}

#[tokio::test]
async fn split_crlf_events_come_out_the_same_with_no_plugin() {
    let upstream = raw::serve(raw::Script {
        content_type: "text/event-stream; charset=utf-8",
        chunks: split(AWKWARD.as_bytes(), &awkward_cuts()),
        end: raw::End::Clean,
        gate: None,
    })
    .await;
    let sluice = proxy::start(&upstream.url(), vec![]).await;
    let response = client::post(&format!("{}/mcp", sluice.url()), "{}").await;
    assert_eq!(client::frames(response).await, (awkward_expected(), true));
}

const REQUEST: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}"#;

fn is_stream_error_for_7(event: &Event) -> bool {
    let value: serde_json::Value = serde_json::from_str(event.data_str()).unwrap();
    value["id"] == 7 && value["error"]["code"] == sluice::mcp::jsonrpc::STREAM_FAILED
}

#[tokio::test]
async fn an_oversized_event_ends_the_stream_with_an_error_for_the_waiting_request() {
    let huge = format!("data: {}\n\n", "x".repeat(100_000));
    let upstream = raw::serve(raw::Script {
        content_type: "text/event-stream",
        chunks: vec![
            b"data: first\n\n".to_vec(),
            huge.into_bytes(),
            b"data: never\n\n".to_vec(),
        ],
        end: raw::End::Clean,
        gate: None,
    })
    .await;
    let settings = ProxySettings {
        max_event_bytes: 16 * 1024,
        ..ProxySettings::default()
    };
    let sluice = proxy::start_with(&upstream.url(), vec![], settings).await;
    let events =
        client::events(client::post(&format!("{}/mcp", sluice.url()), REQUEST).await).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].data_str(), "first");
    assert!(is_stream_error_for_7(&events[1]), "{:?}", events[1]);
    assert!(events[1].data_str().contains("larger than the limit"));
}

#[tokio::test]
async fn an_upstream_that_dies_mid_stream_gets_the_request_an_error() {
    let upstream = raw::serve(raw::Script {
        content_type: "text/event-stream",
        chunks: vec![
            b"id: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n"
                .to_vec(),
            b"data: half an ev".to_vec(),
        ],
        end: raw::End::Abort,
        gate: None,
    })
    .await;
    let sluice = proxy::start(&upstream.url(), vec![]).await;
    let events =
        client::events(client::post(&format!("{}/mcp", sluice.url()), REQUEST).await).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].id.as_deref(), Some("1"));
    assert!(is_stream_error_for_7(&events[1]), "{:?}", events[1]);
}

#[tokio::test]
async fn a_stream_that_already_answered_ends_without_an_extra_error() {
    let upstream = raw::serve(raw::Script {
        content_type: "text/event-stream",
        chunks: vec![b"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n".to_vec()],
        end: raw::End::Abort,
        gate: None,
    })
    .await;
    let sluice = proxy::start(&upstream.url(), vec![]).await;
    let events =
        client::events(client::post(&format!("{}/mcp", sluice.url()), REQUEST).await).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].data_str().contains("\"result\""));
}

#[tokio::test]
async fn a_foreign_browser_origin_is_refused_and_loopback_passes() {
    let upstream = raw::serve(raw::Script {
        content_type: "application/json",
        chunks: vec![b"{}".to_vec()],
        end: raw::End::Clean,
        gate: None,
    })
    .await;
    let sluice = proxy::start(&upstream.url(), vec![]).await;
    let request = |origin: &str| {
        hyper::Request::post(format!("{}/mcp", sluice.url()))
            .header("origin", origin)
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
            .unwrap()
    };
    let refused = client::send(request("https://evil.example")).await;
    assert_eq!(refused.status(), 403);
    assert!(client::text(refused).await.contains("evil.example"));
    assert!(
        upstream.requests.lock().unwrap().is_empty(),
        "a refused request never reaches the upstream"
    );
    let allowed = client::send(request("http://localhost:6274")).await;
    assert_eq!(allowed.status(), 200);
}

#[tokio::test]
async fn an_unreachable_upstream_answers_the_request_with_a_json_rpc_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sluice = proxy::start(&format!("http://127.0.0.1:{port}"), vec![]).await;
    let response = client::post(&format!("{}/mcp", sluice.url()), REQUEST).await;
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = serde_json::from_str(&client::text(response).await).unwrap();
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["code"], sluice::mcp::jsonrpc::UPSTREAM_FAILED);
}

#[tokio::test]
async fn h2c_clients_get_the_same_events() {
    let upstream = raw::serve(raw::Script {
        content_type: "text/event-stream",
        chunks: split(AWKWARD.as_bytes(), &awkward_cuts()),
        end: raw::End::Clean,
        gate: None,
    })
    .await;
    let sluice = proxy::start(
        &upstream.url(),
        vec![proxy::wat("pass", sluice::plugin::builtin::PASS)],
    )
    .await;
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let request = hyper::Request::post(format!("{}/mcp", sluice.url()))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    let response = h2.request(request).await.expect("h2c request");
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    assert_eq!(client::frames(response).await, (awkward_expected(), true));
}

#[tokio::test]
async fn a_compressed_stream_is_refused_rather_than_passed_unread() {
    let upstream = raw::serve(raw::Script {
        // The scripted head is written verbatim: this adds a second header line.
        content_type: "text/event-stream\r\ncontent-encoding: gzip",
        chunks: vec![b"\x1f\x8b not really gzip".to_vec()],
        end: raw::End::Clean,
        gate: None,
    })
    .await;
    let sluice = proxy::start(&upstream.url(), vec![]).await;
    let response = client::post(&format!("{}/mcp", sluice.url()), REQUEST).await;
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = serde_json::from_str(&client::text(response).await).unwrap();
    assert_eq!(body["id"], 7);
    // A fixed text and the request id; "compressed (gzip)" is in the log (issue 21).
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("response could not be used"), "{message}");
    assert!(message.contains("(request "), "{message}");
    let seen = upstream.requests.lock().unwrap().join("");
    assert!(
        seen.to_ascii_lowercase()
            .contains("accept-encoding: identity"),
        "{seen}"
    );
}
