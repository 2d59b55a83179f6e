//! The client-facing side: one request's way through the proxy, top to bottom.
//!
//! ```text
//! ingress (origin check, bounded body)
//!   → chain, to-server      (the POST body as one event; drop answers the client)
//!   → upstream::Http        (end-to-end headers, streamed response)
//!   → decoder → chain, to-client → encoder   (text/event-stream, per event)
//!   | chain, to-client                       (application/json, one event)
//!   | unchanged                              (anything else)
//! ```

mod error;
pub mod headers;
pub mod jsonrpc;
pub mod origin;
mod server;
mod sse_body;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

pub use error::ProxyError;
use jsonrpc::Summary;
pub use server::{Handler, serve};
use sse_body::InterceptedSse;

use crate::plugin::{Chain, Direction, Outcome, Session, StreamMeta};
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
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            max_event_bytes: 4 << 20,
            allowed_origins: Vec::new(),
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
    /// Send this body upstream.
    Body(Bytes),
    /// A plugin dropped the message; answer the client with this.
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
        let (parts, body) = request.into_parts();
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
        };
        let chain = self.chain.load_full();
        tracing::debug!(stream = stream_id, method = %parts.method, path = %parts.uri.path(), rpc = ?summary.method, generation = chain.generation(), "request");
        // A plugin's `modify` is held to the same limit as what the proxy reads.
        let mut session = chain.session(meta).with_max_event_bytes(limit);

        // Chain, to-server.
        let body = match self.to_server(&mut session, body, &summary)? {
            Forward::Body(body) => body,
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
        let sse = is_sse(&parts.headers);
        let inspected = sse || (is_json(&parts.headers) && !session.chain().is_empty());
        if !inspected {
            return Ok(Response::from_parts(
                parts,
                body.map_err(Into::into).boxed_unsync(),
            ));
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
            return self.json_to_client(parts, body, session, summary).await;
        }
        session.begin(Direction::ToClient);
        let events = SseEvents::new(body, limit);
        let body = InterceptedSse::new(events, session, summary.request_ids);
        Ok(Response::from_parts(
            parts,
            body.map_err(|never| match never {}).boxed_unsync(),
        ))
    }

    /// Runs a client's message through the chain on its way to the server.
    fn to_server(
        &self,
        session: &mut Session,
        body: Bytes,
        summary: &Summary,
    ) -> Result<Forward, ProxyError> {
        if body.is_empty() || session.chain().is_empty() {
            return Ok(Forward::Body(body));
        }
        let text = String::from_utf8(body.to_vec()).map_err(|_| ProxyError::RequestNotText)?;
        session.begin(Direction::ToServer);
        let outcome = session.on_event(Event::message(text));
        session.end();
        match outcome {
            Outcome::Forward(event) => {
                Ok(Forward::Body(Bytes::from(event.data.unwrap_or_default())))
            }
            Outcome::Dropped { plugin, .. } => {
                tracing::info!(stream = session.meta().stream_id, plugin = %plugin, rpc = ?summary.method, "client message dropped by plugin");
                let message = format!("sluice: the request was dropped by plugin {plugin}");
                let response = match summary.error_body(jsonrpc::DROPPED_BY_PLUGIN, &message) {
                    Some(body) => Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(full(body)),
                    None => Response::builder()
                        .status(StatusCode::ACCEPTED)
                        .body(full(Bytes::new())),
                };
                Ok(Forward::Answer(
                    response.expect("static parts form a valid response"),
                ))
            }
        }
    }

    /// A JSON response passes the chain as one event.
    async fn json_to_client(
        &self,
        parts: http::response::Parts,
        body: Incoming,
        mut session: Session,
        summary: Summary,
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
        let outcome = session.on_event(Event::message(text));
        session.end();
        let data = match outcome {
            Outcome::Forward(event) => event.data.unwrap_or_default(),
            Outcome::Dropped { plugin, event, .. } => {
                let message = format!("sluice: the response was dropped by plugin {plugin}");
                match event.data.as_deref().and_then(jsonrpc::response_id) {
                    Some(id) => {
                        jsonrpc::error(&id, jsonrpc::DROPPED_BY_PLUGIN, &message).to_string()
                    }
                    None => {
                        let mut parts = parts;
                        parts.status = StatusCode::NO_CONTENT;
                        parts.headers.remove(header::CONTENT_TYPE);
                        return Ok(Response::from_parts(parts, full(Bytes::new())));
                    }
                }
            }
        };
        Ok(Response::from_parts(parts, full(data)))
    }
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
