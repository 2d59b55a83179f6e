//! Resumability through sluice (Streamable HTTP, 2025-11-25): a client that loses its
//! response stream reconnects with `GET` and `Last-Event-ID`, and receives exactly the
//! events it missed. The SSE ids are the upstream's (the Python SDK's event store), kept
//! byte for byte by sluice; the replayed events pass the plugin chain again.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use serde_json::{Value, json};
use sluice::sse::{Event, Frame};
use sluice::upstream::SseEvents;

use crate::common::{client, peers, proxy};

const PROTOCOL: &str = "2025-11-25";

fn request(
    method: &str,
    url: &str,
    session: Option<&str>,
    body: Option<Value>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", PROTOCOL);
    if let Some(session) = session {
        builder = builder.header("mcp-session-id", session);
    }
    let body = body.map_or(Bytes::new(), |b| Bytes::from(b.to_string()));
    builder.body(Full::new(body)).unwrap()
}

/// The next message event (skipping comments and data-less priming events).
async fn next_message<B>(events: &mut SseEvents<B>) -> Event
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .expect("a well-formed event");
        if let Frame::Event(event) = frame
            && !event.data_str().is_empty()
        {
            return event;
        }
    }
}

fn progress_of(event: &Event) -> Option<f64> {
    let message: Value = serde_json::from_str(event.data_str()).ok()?;
    (message["method"] == "notifications/progress")
        .then(|| message["params"]["progress"].as_f64())
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_with_last_event_id_and_gets_exactly_what_it_missed() {
    let server = peers::python_server("eventstore").await;
    // The redactor masks the tool's result text: the result only arrives in the replay,
    // so a masked result shows that replayed events pass the chain.
    let sluice = proxy::start(
        &server.base(),
        vec![proxy::rust("redact", r#"{"patterns":["counted [0-9]+"]}"#)],
    )
    .await;
    let url = format!("{}/mcp", sluice.url());

    let init = client::send(request(
        "POST",
        &url,
        None,
        Some(
            json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion": PROTOCOL, "capabilities": {},
            "clientInfo": {"name": "resume-test", "version": "0"}}}),
        ),
    ))
    .await;
    assert_eq!(init.status(), 200);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let _ = client::text(init).await;
    let initialized = client::send(request(
        "POST",
        &url,
        Some(&session),
        Some(json!({"jsonrpc":"2.0","method":"notifications/initialized"})),
    ))
    .await;
    assert_eq!(initialized.status(), 202);

    // A slow tool call; read two progress notifications, then lose the connection.
    let call = client::send(request(
        "POST",
        &url,
        Some(&session),
        Some(
            json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
            "name": "count", "arguments": {"n": 5, "delay_ms": 300},
            "_meta": {"progressToken": "p"}}}),
        ),
    ))
    .await;
    assert_eq!(call.headers()["content-type"], "text/event-stream");
    let mut events = SseEvents::new(call.into_body(), 1 << 20);
    let mut seen = Vec::new();
    let mut last_id = String::new();
    while seen.len() < 2 {
        let event = next_message(&mut events).await;
        last_id = event
            .id
            .clone()
            .expect("an event store gives every event an id");
        seen.extend(progress_of(&event));
    }
    drop(events);
    assert_eq!(seen, vec![1.0, 2.0]);

    // Resume through sluice.
    let mut resume = request("GET", &url, Some(&session), None);
    resume
        .headers_mut()
        .insert("last-event-id", last_id.parse().unwrap());
    let resumed = client::send(resume).await;
    assert_eq!(resumed.status(), 200);
    let mut events = SseEvents::new(resumed.into_body(), 1 << 20);
    let mut replayed = Vec::new();
    let result = loop {
        let event = next_message(&mut events).await;
        assert_ne!(event.id.as_deref(), Some(last_id.as_str()));
        match progress_of(&event) {
            Some(progress) => replayed.push(progress),
            None => break event,
        }
    };
    assert_eq!(replayed, vec![3.0, 4.0, 5.0], "exactly the missed progress");
    let result: Value = serde_json::from_str(result.data_str()).unwrap();
    assert_eq!(result["id"], 2);
    assert_eq!(
        result["result"]["content"][0]["text"], "[REDACTED]",
        "the replayed result passed the chain: {result}"
    );
}
