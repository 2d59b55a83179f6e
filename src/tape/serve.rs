//! `sluice tape serve TAPE`: a tape played back as an upstream server, so a proxy, a
//! plugin chain or a client can be exercised without the server that was recorded.
//!
//! Each recorded exchange answers one request with the same method, path and JSON-RPC
//! method, in recorded order: same status, same kept headers (`Mcp-Session-Id` among
//! them), the same events as the upstream sent them (not as the client got them), with
//! the original pacing if asked. Two things are adapted to the new client so that a
//! different client (or the same one on another run) can replay a session: the
//! response to its request carries its JSON-RPC id, and progress notifications carry
//! its progress token.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::format::Record;
use crate::http::{ChannelBody, Handler, ProxyBody, full};
use crate::mcp::jsonrpc::{RequestId, Summary};
use crate::sse::{self, Event};
use crate::upstream;

/// Which recorded exchange answers a request.
type Key = (String, String, Option<String>);

/// A recorded response head: status, kept headers, and when it arrived (ms).
type Head = (StatusCode, Vec<(String, String)>, u64);

/// What an exchange's response body was.
#[derive(Debug, Clone)]
enum Recorded {
    /// SSE frames with their time after the response head, in milliseconds.
    Sse(Vec<(u64, sse::Frame)>),
    /// A JSON body.
    Json(String),
    /// A body the proxy did not read (an error status, say): replayed empty.
    Empty,
}

/// One recorded exchange, ready to be replayed.
#[derive(Debug, Clone)]
struct Exchange {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: Recorded,
    /// The JSON-RPC id of the recorded request, if it was a request.
    request_id: Option<Value>,
    /// Its `_meta.progressToken`.
    progress_token: Option<Value>,
}

/// The exchanges of a tape, handed out in recorded order.
pub struct Replay {
    queues: Mutex<HashMap<Key, VecDeque<Exchange>>>,
    timing: bool,
}

impl Replay {
    /// Groups a tape's records into exchanges. Exchanges the proxy answered itself
    /// (no upstream response) are left out: the upstream never saw them.
    pub fn new(records: &[Record], timing: bool) -> Self {
        struct Building {
            key: Key,
            request_id: Option<Value>,
            progress_token: Option<Value>,
            response: Option<Head>,
            frames: Vec<(u64, sse::Frame)>,
        }
        let mut order: Vec<u64> = Vec::new();
        let mut building: HashMap<u64, Building> = HashMap::new();
        for record in records {
            match record {
                Record::Request {
                    stream,
                    method,
                    path,
                    body,
                    ..
                } => {
                    let summary = Summary::of(body.as_bytes());
                    let message: Option<Value> = serde_json::from_str(body).ok();
                    order.push(*stream);
                    building.insert(
                        *stream,
                        Building {
                            key: (method.clone(), path.clone(), summary.method.clone()),
                            request_id: summary.request_ids.first().and_then(RequestId::value),
                            progress_token: message
                                .as_ref()
                                .and_then(|m| m.pointer("/params/_meta/progressToken"))
                                .cloned(),
                            response: None,
                            frames: Vec::new(),
                        },
                    );
                }
                Record::Response {
                    stream,
                    t_ms,
                    status,
                    headers,
                } => {
                    if let Some(b) = building.get_mut(stream) {
                        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
                        let headers = headers
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        b.response = Some((status, headers, *t_ms));
                    }
                }
                Record::Event {
                    stream,
                    t_ms,
                    received,
                    ..
                } => {
                    if let Some(b) = building.get_mut(stream) {
                        let at = t_ms.saturating_sub(b.response.as_ref().map_or(0, |r| r.2));
                        b.frames
                            .push((at, sse::Frame::Event(Event::from(received.clone()))));
                    }
                }
                Record::Comment { stream, t_ms, text } => {
                    if let Some(b) = building.get_mut(stream) {
                        let at = t_ms.saturating_sub(b.response.as_ref().map_or(0, |r| r.2));
                        b.frames.push((at, sse::Frame::Comment(text.clone())));
                    }
                }
                // `read` leaves no `raw` or `passed` record.
                Record::Header { .. }
                | Record::End { .. }
                | Record::Raw { .. }
                | Record::Passed { .. } => {}
            }
        }
        let mut queues: HashMap<Key, VecDeque<Exchange>> = HashMap::new();
        for stream in order {
            let Some(b) = building.remove(&stream) else {
                continue;
            };
            let Some((status, headers, _)) = b.response else {
                continue;
            };
            let content_type = headers
                .iter()
                .find(|(k, _)| k == "content-type")
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            let body = if content_type.starts_with("text/event-stream") {
                Recorded::Sse(b.frames)
            } else if let Some((_, sse::Frame::Event(e))) = b.frames.into_iter().next() {
                Recorded::Json(e.data.unwrap_or_default())
            } else {
                Recorded::Empty
            };
            queues.entry(b.key).or_default().push_back(Exchange {
                status,
                headers,
                body,
                request_id: b.request_id,
                progress_token: b.progress_token,
            });
        }
        Self {
            queues: Mutex::new(queues),
            timing,
        }
    }

    /// How many exchanges are still waiting to be replayed.
    pub fn remaining(&self) -> usize {
        self.queues
            .lock()
            .expect("replay queues")
            .values()
            .map(VecDeque::len)
            .sum()
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let (parts, body) = request.into_parts();
        let body = upstream::read_to_limit(body, 64 << 20)
            .await
            .unwrap_or_default();
        let summary = Summary::of(&body);
        let message: Option<Value> = serde_json::from_slice(&body).ok();
        let key = (
            parts.method.to_string(),
            parts.uri.path().to_string(),
            summary.method.clone(),
        );
        let next = self
            .queues
            .lock()
            .expect("replay queues")
            .get_mut(&key)
            .and_then(VecDeque::pop_front);
        let Some(exchange) = next else {
            let text = format!(
                "sluice tape serve: no recorded exchange left for {} {}{}\n",
                key.0,
                key.1,
                key.2.map(|m| format!(" ({m})")).unwrap_or_default()
            );
            tracing::warn!("{}", text.trim_end());
            return Response::builder()
                .status(StatusCode::NOT_FOUND)
                .header("content-type", "text/plain; charset=utf-8")
                .body(full(text))
                .expect("static response");
        };
        let substitutions = Substitutions {
            id: exchange
                .request_id
                .clone()
                .zip(summary.request_ids.first().and_then(RequestId::value)),
            token: exchange.progress_token.clone().zip(
                message
                    .as_ref()
                    .and_then(|m| m.pointer("/params/_meta/progressToken"))
                    .cloned(),
            ),
        };
        let mut response = Response::builder().status(exchange.status);
        // A tape may come from elsewhere: a header it holds that is not a valid name
        // or value is left out, not a reason to panic below.
        for (name, value) in &exchange.headers {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                response = response.header(name, value);
            }
        }
        let body = match exchange.body {
            Recorded::Empty => full(Bytes::new()),
            Recorded::Json(data) => full(substitutions.apply(data)),
            Recorded::Sse(frames) => {
                let (tx, rx) = mpsc::channel(16);
                tokio::spawn(play(frames, substitutions, self.timing, tx));
                ChannelBody::new(rx).boxed_unsync()
            }
        };
        response.body(body).expect("recorded status and headers")
    }
}

impl Handler for Replay {
    fn handle(
        &self,
        request: Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<ProxyBody>> + Send {
        self.answer(request)
    }
}

/// The new client's JSON-RPC id and progress token in place of the recorded ones.
#[derive(Debug, Clone)]
struct Substitutions {
    /// (recorded, new) request id.
    id: Option<(Value, Value)>,
    /// (recorded, new) progress token.
    token: Option<(Value, Value)>,
}

impl Substitutions {
    fn apply(&self, data: String) -> String {
        if self.id.is_none() && self.token.is_none() {
            return data;
        }
        let Ok(mut message) = serde_json::from_str::<Value>(&data) else {
            return data;
        };
        let mut changed = false;
        if let Some((old, new)) = &self.id
            && old != new
            && message.get("method").is_none()
            && message.get("id") == Some(old)
        {
            message["id"] = new.clone();
            changed = true;
        }
        if let Some((old, new)) = &self.token
            && old != new
            && let Some(token) = message.pointer_mut("/params/progressToken")
            && token == old
        {
            *token = new.clone();
            changed = true;
        }
        if changed { message.to_string() } else { data }
    }
}

/// Sends the recorded frames, paced if asked.
async fn play(
    frames: Vec<(u64, sse::Frame)>,
    substitutions: Substitutions,
    timing: bool,
    tx: mpsc::Sender<Bytes>,
) {
    let started = tokio::time::Instant::now();
    for (at, frame) in frames {
        if timing {
            // A tape's times are not trusted: past what a clock can hold, never.
            match started.checked_add(Duration::from_millis(at)) {
                Some(due) => tokio::time::sleep_until(due).await,
                None => std::future::pending().await,
            }
        }
        let mut out = BytesMut::new();
        match frame {
            sse::Frame::Comment(text) => sse::encode_comment(&text, &mut out),
            sse::Frame::Event(mut event) => {
                if let Some(data) = event.data.take() {
                    event.data = Some(substitutions.apply(data));
                }
                sse::encode_event(&event, &mut out);
            }
        }
        if tx.send(out.freeze()).await.is_err() {
            return; // the client went away
        }
    }
}

/// A running replay server.
pub struct Serving {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The exchanges (to see how many are left).
    pub replay: Arc<Replay>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Serving {
    /// `http://addr`, the base URL to give a proxy as `--upstream`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and waits for the server to end.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }

    /// Runs until the process is stopped.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Serves `records` on `listen`.
pub async fn start(
    records: &[Record],
    listen: SocketAddr,
    timing: bool,
) -> std::io::Result<Serving> {
    let replay = Arc::new(Replay::new(records, timing));
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(crate::http::serve(listener, replay.clone(), async {
        let _ = stopped.await;
    }));
    Ok(Serving {
        addr,
        replay,
        stop,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_new_clients_id_and_progress_token_replace_the_recorded_ones() {
        let s = Substitutions {
            id: Some((json!(1), json!(7))),
            token: Some((json!("old"), json!(42))),
        };
        let response = s.apply(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#.into());
        assert_eq!(serde_json::from_str::<Value>(&response).unwrap()["id"], 7);
        let progress = s.apply(
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"old","progress":1}}"#.into(),
        );
        let progress: Value = serde_json::from_str(&progress).unwrap();
        assert_eq!(progress["params"]["progressToken"], 42);
        let request = r#"{"jsonrpc":"2.0","id":1,"method":"roots/list"}"#;
        assert_eq!(
            s.apply(request.into()),
            request,
            "server requests keep their id"
        );
        assert_eq!(s.apply("not json".into()), "not json");
    }

    /// A tape whose response has a header name no response may carry.
    fn bad_header_tape() -> Vec<Record> {
        let mut headers = std::collections::BTreeMap::new();
        headers.insert("content-type".to_string(), "application/json".to_string());
        headers.insert("bad name\r\n".to_string(), "x".to_string());
        vec![
            Record::Request {
                stream: 1,
                t_ms: 0,
                method: "POST".into(),
                path: "/mcp".into(),
                query: None,
                rpc_method: Some("ping".into()),
                protocol_version: None,
                headers: Default::default(),
                body: r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.into(),
                steps: Vec::new(),
                sent: None,
                identity: None,
                generation: None,
                chain: Vec::new(),
            },
            Record::Response {
                stream: 1,
                t_ms: 0,
                status: 200,
                headers,
            },
            Record::Event {
                stream: 1,
                t_ms: 0,
                seq: None,
                received: crate::tape::TapeEvent {
                    data: Some(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#.into()),
                    ..Default::default()
                },
                steps: Vec::new(),
                sent: None,
                unchanged: true,
            },
        ]
    }

    #[tokio::test]
    async fn a_recorded_header_that_is_not_valid_is_left_out_not_a_panic() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let serving = start(&bad_header_tape(), "127.0.0.1:0".parse().unwrap(), false)
            .await
            .unwrap();
        let mut client = tokio::net::TcpStream::connect(serving.addr).await.unwrap();
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let request = format!(
            "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        client.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        client.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
        assert!(response.contains(r#""result":{}"#), "{response:?}");
        serving.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_time_past_what_a_clock_holds_waits_instead_of_panicking() {
        let frames = vec![
            (0, sse::Frame::Event(Event::message("first"))),
            (u64::MAX, sse::Frame::Event(Event::message("never"))),
        ];
        let (tx, mut rx) = mpsc::channel(4);
        let substitutions = Substitutions {
            id: None,
            token: None,
        };
        let playing = tokio::spawn(play(frames, substitutions, true, tx));
        let first = rx.recv().await.expect("the first frame");
        assert!(String::from_utf8_lossy(&first).contains("first"));
        // Paused time: the runtime jumps ahead to the timeout once nothing else runs.
        let next = tokio::time::timeout(Duration::from_secs(3600), rx.recv()).await;
        assert!(next.is_err(), "{next:?}");
        assert!(!playing.is_finished(), "the player ended (panicked?)");
        playing.abort();
    }
}
