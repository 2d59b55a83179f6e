//! A plain HTTP client for the cases where the test must see exactly what the proxy
//! sends (status, headers, raw SSE), not what an MCP SDK makes of it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sluice::sse::{Event, Frame};
use sluice::upstream::SseEvents;

/// POSTs `body` as JSON to `url`.
pub async fn post(url: &str, body: &str) -> Response<Incoming> {
    let request = Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send(request).await
}

/// Sends any request.
pub async fn send(request: Request<Full<Bytes>>) -> Response<Incoming> {
    Client::builder(TokioExecutor::new())
        .build_http()
        .request(request)
        .await
        .expect("the proxy answers")
}

/// The whole body as text.
pub async fn text(response: Response<Incoming>) -> String {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("UTF-8 body")
}

/// Every frame of an SSE response, and whether it ended cleanly.
pub async fn frames(response: Response<Incoming>) -> (Vec<Frame>, bool) {
    let mut events = SseEvents::new(response.into_body(), 1 << 20);
    let mut frames = Vec::new();
    while let Some(frame) = events.next().await {
        match frame {
            Ok(frame) => frames.push(frame),
            Err(_) => return (frames, false),
        }
    }
    (frames, true)
}

/// Only the events of an SSE response.
pub async fn events(response: Response<Incoming>) -> Vec<Event> {
    frames(response)
        .await
        .0
        .into_iter()
        .filter_map(|f| match f {
            Frame::Event(e) => Some(e),
            Frame::Comment(_) => None,
        })
        .collect()
}

/// The MCP session id a response set, if any.
pub fn session_id(response: &Response<Incoming>) -> Option<String> {
    response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_string())
}

/// Whether a response is an SSE stream (else JSON).
pub fn is_sse(response: &Response<Incoming>) -> bool {
    response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"))
}

/// A port free now on 127.0.0.1, for a listener whose URL must be known before it
/// starts (a resource URL in a config, a child process's `--listen`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
