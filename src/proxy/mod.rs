//! The client-facing side: one request's way through the proxy, top to bottom.
//!
//! ```text
//! ingress (Origin and Host checks, bounded body)
//!   → chain, to-server      (each JSON-RPC message; a drop is answered for)
//!   → upstream::Http        (end-to-end headers, streamed response)
//!   → decoder → chain, to-client → encoder   (2xx text/event-stream, per event)
//!   | chain, to-client                       (2xx application/json, per message)
//!   | unchanged                              (anything else, every error status)
//! ```

mod error;
pub mod headers;
pub mod jsonrpc;
pub mod legacy;
pub mod messages;
pub mod origin;
mod server;
mod sse_body;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::Value;

pub use error::ProxyError;
use jsonrpc::Summary;
use legacy::EndpointRewrite;
use messages::ToServer;
pub use server::{Handler, serve};
use sse_body::InterceptedSse;

use crate::plugin::{Chain, Direction, Session, StreamMeta};
use crate::sse::Event;
use crate::upstream::{self, BodyError, SseEvents};

/// The body type of every response the proxy sends.
pub type ProxyBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// Settings of the client-facing side.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Largest SSE event, request body or JSON response that passes the chain.
    pub max_event_bytes: usize,
    /// Browser origins allowed besides loopback ones (`*` for any).
    pub allowed_origins: Vec<String>,
    /// Host names (in `Host`) allowed besides loopback ones (`*` turns the check off).
    pub allowed_hosts: Vec<String>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            max_event_bytes: 4 << 20,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

/// The proxy: an upstream, a plugin chain and the rules between them.
pub struct Proxy {
    upstream: upstream::Http,
    chain: Arc<ArcSwap<Chain>>,
    settings: ProxySettings,
    next_stream: AtomicU64,
}

/// What the to-server phase decided.
enum Forward {
    /// Send `body` upstream, and add `answered` (the proxy's errors for requests a
    /// plugin dropped from a batch) to what comes back.
    Body { body: Bytes, answered: Vec<Value> },
    /// A plugin dropped everything; answer the client with this.
    Answer(Response<ProxyBody>),
}

impl Proxy {
    /// A proxy in front of `upstream` running whatever chain is current in `chain`
    /// when each exchange starts (a reload swaps it; see `reload`).
    pub fn new(
        upstream: upstream::Http,
        chain: Arc<ArcSwap<Chain>>,
        settings: ProxySettings,
    ) -> Self {
        Self {
            upstream,
            chain,
            settings,
            next_stream: AtomicU64::new(1),
        }
    }

    /// The chain new streams use.
    pub fn chain(&self) -> Arc<Chain> {
        self.chain.load_full()
    }

    /// Handles one client request. Never fails: errors become responses.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        match self.forward(request).await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(%error, "request answered by the proxy");
                error.into_response()
            }
        }
    }

    async fn forward(&self, request: Request<Incoming>) -> Result<Response<ProxyBody>, ProxyError> {
        // Ingress.
        origin::allowed(request.headers(), &self.settings.allowed_origins)
            .map_err(ProxyError::Origin)?;
        let client_host = request_host(&request);
        origin::host_allowed(client_host.as_deref(), &self.settings.allowed_hosts)
            .map_err(ProxyError::Host)?;
        let (parts, body) = request.into_parts();
        let opened_by_get = parts.method == Method::GET;
        let limit = self.settings.max_event_bytes;
        let body = upstream::read_to_limit(body, limit)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit } => ProxyError::RequestTooLarge { limit },
                BodyError::Read(reason) => ProxyError::RequestRead(reason),
            })?;
        let summary = Summary::of(&body);
        let stream_id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let meta = StreamMeta {
            stream_id,
            session_id: header_str(&parts.headers, "mcp-session-id"),
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            rpc_method: summary.method.clone(),
            protocol_version: header_str(&parts.headers, "mcp-protocol-version")
                .or_else(|| summary.offered_protocol.clone()),
        };
        let chain = self.chain.load_full();
        tracing::debug!(stream = stream_id, method = %parts.method, path = %parts.uri.path(), rpc = ?summary.method, generation = chain.generation(), "request");
        // A plugin's `modify` is held to the same limit as what the proxy reads.
        let mut session = chain.session(meta).with_max_event_bytes(limit);

        // Chain, to-server.
        let (body, answered) = match self.to_server(&mut session, body) {
            Forward::Body { body, answered } => (body, answered),
            Forward::Answer(response) => return Ok(response),
        };

        // Upstream.
        let mut upstream_request = Request::new(Full::new(body));
        *upstream_request.method_mut() = parts.method.clone();
        *upstream_request.uri_mut() = self.upstream.uri_for(parts.uri.path_and_query());
        *upstream_request.headers_mut() = headers::for_upstream(parts.headers);
        let response = self
            .upstream
            .send(upstream_request)
            .await
            .map_err(|source| ProxyError::Upstream {
                source,
                request: summary.clone(),
            })?;

        // Response: decoder → chain, to-client → encoder.
        let (mut parts, body) = response.into_parts();
        parts.headers = headers::for_client(parts.headers);
        if !parts.status.is_success() {
            // 400, 401 (with WWW-Authenticate), 404 (session gone: the client must
            // initialize again), 405 (no GET stream)...: the client must see exactly
            // what the server said.
            return Ok(unchanged(parts, body));
        }
        if parts.status == StatusCode::ACCEPTED && !answered.is_empty() {
            // The upstream took the notifications that were left; the dropped requests
            // still need their errors.
            return Ok(json_response(StatusCode::OK, Value::Array(answered)));
        }
        let sse = is_sse(&parts.headers);
        let inspected = sse || (is_json(&parts.headers) && !session.chain().is_empty());
        if !inspected {
            return Ok(unchanged(parts, body));
        }
        if let Some(encoding) = compressed(&parts.headers) {
            // We asked for identity; a compressed body cannot be read event by event,
            // and passing it unread would bypass every plugin.
            return Err(ProxyError::UpstreamResponse {
                reason: format!("it is compressed ({encoding}) although identity was requested"),
                request: summary,
            });
        }
        parts.headers.remove(header::CONTENT_LENGTH);
        if !sse {
            return self
                .json_to_client(parts, body, session, summary, answered)
                .await;
        }
        headers::for_sse(&mut parts.headers);
        session.begin(Direction::ToClient);
        let events = SseEvents::new(body, limit);
        let mut body =
            InterceptedSse::new(events, session, summary.request_ids).with_answers_first(answered);
        if opened_by_get {
            // Only a GET opens a legacy HTTP+SSE stream with an `endpoint` event.
            body = body.with_endpoint_rewrite(EndpointRewrite::new(
                self.upstream.authority().as_str(),
                self.upstream.prefix(),
                client_host.as_deref().unwrap_or("127.0.0.1"),
            ));
        }
        Ok(Response::from_parts(
            parts,
            body.map_err(|never| match never {}).boxed_unsync(),
        ))
    }

    /// Runs a client's message(s) through the chain on their way to the server.
    fn to_server(&self, session: &mut Session, body: Bytes) -> Forward {
        if body.is_empty() || session.chain().is_empty() {
            return Forward::Body {
                body,
                answered: Vec::new(),
            };
        }
        let Ok(text) = String::from_utf8(body.to_vec()) else {
            tracing::warn!(
                stream = session.meta().stream_id,
                "request answered by the proxy: body is not UTF-8"
            );
            return Forward::Answer(ProxyError::RequestNotText.into_response());
        };
        session.begin(Direction::ToServer);
        let decided = messages::to_server(session, text);
        session.end();
        match decided {
            ToServer::Forward { body, answered } => Forward::Body {
                body: Bytes::from(body),
                answered,
            },
            ToServer::Answer { answered, .. } if answered.is_empty() => {
                Forward::Answer(empty_response(StatusCode::ACCEPTED))
            }
            ToServer::Answer { answered, batch } => {
                let body = if batch {
                    Value::Array(answered)
                } else {
                    answered.into_iter().next().expect("not empty")
                };
                Forward::Answer(json_response(StatusCode::OK, body))
            }
        }
    }

    /// A JSON response passes the chain one message at a time.
    async fn json_to_client(
        &self,
        parts: http::response::Parts,
        body: Incoming,
        mut session: Session,
        summary: Summary,
        answered: Vec<Value>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let unusable = |reason: String| ProxyError::UpstreamResponse {
            reason,
            request: summary.clone(),
        };
        let body = upstream::read_to_limit(body, self.settings.max_event_bytes)
            .await
            .map_err(|e| unusable(e.to_string()))?;
        if body.is_empty() {
            return Ok(Response::from_parts(parts, full(body)));
        }
        let text = String::from_utf8(body.to_vec())
            .map_err(|_| unusable("JSON body is not UTF-8".into()))?;
        session.begin(Direction::ToClient);
        let mut unanswered = summary.request_ids.clone();
        let sent = messages::to_client(&mut session, Event::message(text), &mut unanswered);
        session.end();
        let data = match (sent.and_then(|e| e.data), answered.is_empty()) {
            (Some(data), true) => data,
            (sent, false) => {
                // A batch lost some requests to a plugin: the proxy's errors join the
                // upstream's answers in one array.
                let mut all: Vec<String> = sent
                    .map(|data| messages::batch_items(&data).unwrap_or_else(|| vec![data]))
                    .unwrap_or_default();
                all.extend(answered.iter().map(Value::to_string));
                messages::join_batch(&all)
            }
            (None, true) => {
                let mut parts = parts;
                parts.status = StatusCode::NO_CONTENT;
                parts.headers.remove(header::CONTENT_TYPE);
                return Ok(Response::from_parts(parts, full(Bytes::new())));
            }
        };
        Ok(Response::from_parts(parts, full(data)))
    }
}

/// The host the client addressed: `Host` (HTTP/1.1) or the URI authority (HTTP/2).
fn request_host<B>(request: &Request<B>) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
}

/// An upstream response passed through as it is, streamed.
fn unchanged(parts: http::response::Parts, body: Incoming) -> Response<ProxyBody> {
    Response::from_parts(parts, body.map_err(Into::into).boxed_unsync())
}

fn json_response(status: StatusCode, body: Value) -> Response<ProxyBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body.to_string()))
        .expect("static parts form a valid response")
}

fn empty_response(status: StatusCode) -> Response<ProxyBody> {
    Response::builder()
        .status(status)
        .body(full(Bytes::new()))
        .expect("static parts form a valid response")
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn content_type_is(headers: &HeaderMap, essence: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(essence))
}

/// The `Content-Encoding` of a body that is not identity.
fn compressed(headers: &HeaderMap) -> Option<String> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)?
        .to_str()
        .unwrap_or("?")
        .trim();
    (!encoding.eq_ignore_ascii_case("identity")).then(|| encoding.to_string())
}

fn is_sse(headers: &HeaderMap) -> bool {
    content_type_is(headers, "text/event-stream")
}

fn is_json(headers: &HeaderMap) -> bool {
    content_type_is(headers, "application/json")
}
