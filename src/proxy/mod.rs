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
mod sse_body;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::value::RawValue;
use tracing::Instrument;

pub use error::{ProxyError, Unusable};
use sse_body::{HoldRoom, InterceptedSse, after_hold};

use crate::auth::Access;
use crate::error_chain::ErrorChain;
use crate::holds::{HeldMessage, Holds};
pub use crate::http::{
    ClientAddr, ConnectionLimits, Handler, ProxyBody, full, serve, serve_draining, serve_limited,
};
use crate::http::{ClientTls, origin, request_host};
use crate::mcp::client::{ClientBody, Refused};
use crate::mcp::jsonrpc::Summary;
use crate::mcp::legacy::EndpointRewrite;
use crate::mcp::messages::{self, AfterHold, ToClient, ToServer};

use crate::metrics::Metrics;
use crate::observe::metrics::Counting;
use crate::observe::{Judged, Observe, Observers, RequestSeen, StreamEnd, UpstreamStage};
use crate::plugin::{Chain, Direction, HoldSpec, RequestHeaders, Session, StreamMeta};
use crate::sse::Event;
use crate::upstream::{self, BodyError, SseEvents, UpstreamBody};

/// The session id of a legacy (2024-11-05) client's POST: the `session_id` (Python
/// SDK) or `sessionId` (TypeScript SDK) of the endpoint URL's query.
fn legacy_session_id(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == "session_id" || name == "sessionId")
        .map(|(_, value)| value.into_owned())
}

/// A client request's body, whatever carried it.
type RequestBody =
    http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Settings of the client-facing side.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Largest SSE event, request body or JSON response that passes the chain.
    pub max_event_bytes: usize,
    /// Browser origins allowed besides loopback ones (`*` for any).
    pub allowed_origins: Vec<String>,
    /// Host names (in `Host`) allowed besides loopback ones (`*` turns the check off).
    pub allowed_hosts: Vec<String>,
    /// An SSE stream whose upstream sends nothing (not even a keep-alive) for this long
    /// is ended, with errors for unanswered requests. `None`: wait for ever.
    pub upstream_idle_timeout: Option<std::time::Duration>,
    /// On shutdown, how long open streams may go on before the proxy ends them
    /// itself (cleanly, with errors for requests still waiting).
    pub shutdown_grace: std::time::Duration,
    /// How much plugin work one exchange may cause: the longest batch, and the plugin
    /// time one client request may use (`--max-batch`, `--request-plugin-budget-ms`).
    pub message_limits: messages::Limits,
    /// How many client requests may run their plugins at once (`--plugin-workers`).
    /// Their plugin work (instantiation included) runs on tokio's blocking pool,
    /// never on the threads that drive connections and streams, and requests past
    /// this number wait their turn: a few clients with heavy requests cannot stall
    /// every stream, `/metrics` and the admin API.
    pub plugin_workers: usize,
    /// What one client connection may hold, and how many there may be.
    pub connections: ConnectionLimits,
    /// Peers whose `X-Forwarded-For`, `Forwarded` and `X-Real-IP` are believed (a
    /// front proxy); anyone else's are removed before the request goes upstream.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            max_event_bytes: 4 << 20,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            upstream_idle_timeout: Some(std::time::Duration::from_secs(300)),
            shutdown_grace: std::time::Duration::from_secs(10),
            message_limits: messages::Limits::default(),
            plugin_workers: default_plugin_workers(),
            connections: ConnectionLimits::default(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// One per core: the blocking pool then keeps at most as many threads busy with plugin
/// work as there are cores, and the runtime's own threads still get their turn.
pub fn default_plugin_workers() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// The proxy: an upstream, a plugin chain and the rules between them.
pub struct Proxy {
    upstream: upstream::Upstream,
    chain: Arc<ArcSwap<Chain>>,
    settings: ProxySettings,
    next_stream: AtomicU64,
    metrics: Arc<Metrics>,
    /// Who watches each exchange: the metrics first, then tapes and the like.
    observe: Vec<Arc<dyn Observe>>,
    /// Set to true when open streams must end now (shutdown after the grace period).
    closing: tokio::sync::watch::Sender<bool>,
    /// Permits to run plugin work off the runtime's threads (`plugin_workers`).
    plugin_work: Arc<tokio::sync::Semaphore>,
    /// Who may call, the per-caller limits, and what the upstream is told.
    access: Arc<Access>,
    /// The route this proxy serves (`None`: the default upstream), for plugins'
    /// `context.route`.
    route: Option<Arc<str>>,
    /// Messages plugins hold, shared with the admin API.
    holds: Arc<Holds>,
}

/// What the to-server phase decided.
enum Forward {
    /// Send `body` upstream, and add `answered` (the proxy's errors for requests a
    /// plugin dropped from a batch) to what comes back.
    Body {
        body: Bytes,
        answered: Vec<Box<RawValue>>,
    },
    /// A plugin dropped everything; answer the client with this.
    Answer(Response<ProxyBody>),
}

impl Proxy {
    /// A proxy in front of `upstream` running whatever chain is current in `chain`
    /// when each exchange starts (a reload swaps it; see `reload`).
    pub fn new(
        upstream: impl Into<upstream::Upstream>,
        chain: Arc<ArcSwap<Chain>>,
        settings: ProxySettings,
    ) -> Self {
        let upstream = upstream.into();
        let metrics = Arc::new(Metrics::new());
        Self {
            upstream,
            chain,
            plugin_work: Arc::new(tokio::sync::Semaphore::new(settings.plugin_workers.max(1))),
            settings,
            next_stream: AtomicU64::new(1),
            metrics: metrics.clone(),
            observe: vec![Arc::new(Counting(metrics))],
            closing: tokio::sync::watch::Sender::new(false),
            access: Arc::new(Access::default()),
            route: None,
            holds: Arc::default(),
        }
    }

    /// Names the route this proxy serves (plugins read it through `context.route`).
    pub fn with_route(mut self, route: Option<&str>) -> Self {
        self.route = route.map(Arc::from);
        self
    }

    /// Shares `holds` (the admin API's list of held messages) with this proxy.
    pub fn with_holds(mut self, holds: Arc<Holds>) -> Self {
        self.holds = holds;
        self
    }

    /// Checks callers and sets the upstream's credential as `access` says (the default:
    /// anyone may call, and the client's `Authorization` never goes upstream).
    pub fn with_access(mut self, access: Arc<Access>) -> Self {
        self.access = access;
        self
    }

    /// Who may call, and what the upstream is told.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// Where requests go.
    pub fn upstream(&self) -> &upstream::Upstream {
        &self.upstream
    }

    /// The client-facing settings.
    pub fn settings(&self) -> &ProxySettings {
        &self.settings
    }

    /// Ends every open SSE stream now, cleanly: each sends errors for its requests
    /// still waiting, then the end of the body. For shutdown after the grace period.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Counts into `metrics` (the ones `/metrics` serves) instead of private ones.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        // The metrics are always the first observer (`new`).
        self.observe[0] = Arc::new(Counting(metrics.clone()));
        self.metrics = metrics;
        self
    }

    /// What this proxy counts.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Tells `observe` about every exchange (a tape recorder, say), after the metrics.
    pub fn with_observer(mut self, observe: Arc<dyn Observe>) -> Self {
        self.observe.push(observe);
        self
    }

    /// The watchers of a new exchange.
    fn observers_for(&self, meta: &StreamMeta, chain: &Chain) -> Observers {
        Observers::for_exchange(&self.observe, meta, chain)
    }

    /// The chain new streams use.
    pub fn chain(&self) -> Arc<Chain> {
        self.chain.load_full()
    }

    /// Handles one client request. Never fails: errors become responses.
    /// Any body will do: a client connection's, or a request made in-process (`sluice
    /// stdio`).
    pub fn handle<B>(
        &self,
        request: Request<B>,
    ) -> impl std::future::Future<Output = Response<ProxyBody>> + Send + '_
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let request = request.map(|body| {
            body.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })
                .boxed_unsync()
        });
        self.handle_boxed(request)
    }

    async fn handle_boxed(&self, request: Request<RequestBody>) -> Response<ProxyBody> {
        // One span per exchange: every log line about it carries the stream id (the
        // one plugins see and tapes record) and the MCP session.
        let stream_id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "stream",
            id = stream_id,
            session = header_str(request.headers(), "mcp-session-id").as_deref(),
            subject = tracing::field::Empty,
        );
        match self
            .forward(request, stream_id, span.clone())
            .instrument(span.clone())
            .await
        {
            Ok(response) => response,
            Err(error) => {
                // A refusal by a rate limit, the token check or the session binding
                // was logged (at info or debug) where it was decided: they are the caller's doing (every OAuth
                // client's first request is a 401), not a fault to warn about.
                if !matches!(
                    error,
                    ProxyError::RateLimited { .. }
                        | ProxyError::Denied(_)
                        | ProxyError::NotYourSession
                ) {
                    span.in_scope(
                        || tracing::warn!(error = %ErrorChain(&error), "request answered by the proxy"),
                    );
                }
                error.into_response_for(stream_id)
            }
        }
    }

    async fn forward(
        &self,
        request: Request<RequestBody>,
        stream_id: u64,
        span: tracing::Span,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        // Ingress.
        origin::allowed(request.headers(), &self.settings.allowed_origins)?;
        let client_host = request_host(&request);
        let peer = request
            .extensions()
            .get::<ClientAddr>()
            .map(|ClientAddr(addr)| addr.ip().to_canonical());
        origin::host_allowed(client_host.as_deref(), &self.settings.allowed_hosts)?;
        // RFC 9728: where a client learns which authorization server to ask.
        if request.method() == Method::GET
            && let Some(metadata) = self.access.metadata_for(request.uri().path())
        {
            return Ok(metadata);
        }
        // Who is calling: in resource-server mode, a valid token or a 401/403 here,
        // before the body is read or any plugin runs.
        let admitted = self.access.admit(request.headers(), peer).await?;
        if let Some(subject) = &admitted.identity.subject {
            span.record("subject", subject.as_str());
        }
        // A session is its caller's: another caller with its id is told it is gone.
        let session_id = header_str(request.headers(), "mcp-session-id")
            .or_else(|| legacy_session_id(request.uri().query()));
        if let (Some(owners), Some(id)) = (self.access.sessions(), &session_id)
            && !owners.admit(id, &admitted.identity)
        {
            tracing::info!(caller = %admitted.identity.limit_key(), "a session used by a caller other than its owner");
            return Err(ProxyError::NotYourSession);
        }
        // The scheme the client reached the proxy with, for a legacy endpoint URL.
        let client_scheme = match request.extensions().get::<ClientTls>() {
            Some(ClientTls) => "https",
            None => "http",
        };
        let (parts, body) = request.into_parts();
        let route_prefix = parts
            .extensions
            .get::<crate::http::RoutePrefix>()
            .map(|p| p.0.clone());
        let opened_by_get = parts.method == Method::GET;
        let ended_by_delete = parts.method == Method::DELETE;
        let limit = self.settings.max_event_bytes;
        let body = upstream::read_to_limit(body, limit)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit } => ProxyError::RequestTooLarge { limit },
                BodyError::Read(e) => ProxyError::RequestRead(e),
            })?;
        // The body, read once: under the MCP rules where a plugin sees client messages.
        let chain = self.chain.load_full();
        let text = std::str::from_utf8(&body).ok();
        let read = text
            .map(|text| messages::read_client_body(&chain, text, &self.settings.message_limits));
        let lenient;
        let messages = match (&read, text) {
            (Some(Ok(read)), _) => Some(read),
            // Refused, but its method and ids still name it in logs and tapes, and
            // its requests still count against the caller's limits.
            (Some(Err(_)), Some(text)) => {
                lenient = ClientBody::read(text);
                Some(&lenient)
            }
            _ => None,
        };
        let summary = messages.map_or_else(Summary::default, ClientBody::summary);
        // A body the limits cannot count (not UTF-8, not JSON-RPC messages, or text
        // that is JSON only to a lenient server: UTF-16 with its NULs, a byte-order
        // mark) would pass them uncounted, and such a server might still run it:
        // where limits apply, it is refused.
        if self.access.limits().is_active()
            && !body.iter().all(u8::is_ascii_whitespace)
            && (messages.is_none_or(|read| read.messages.is_empty())
                || memchr::memchr(0, &body).is_some()
                || body.starts_with(b"\xEF\xBB\xBF"))
        {
            return Err(ProxyError::Uncountable);
        }
        self.access
            .limits()
            .check(
                &admitted.identity,
                messages.map_or(&[][..], |body| &body.messages),
                std::time::Instant::now(),
            )
            .map_err(|limited| ProxyError::RateLimited {
                limited,
                request: summary.clone(),
            })?;
        let meta = StreamMeta {
            stream_id,
            session_id: header_str(&parts.headers, "mcp-session-id"),
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            rpc_method: summary.method.clone(),
            protocol_version: header_str(&parts.headers, "mcp-protocol-version")
                .or_else(|| summary.offered_protocol.clone()),
            identity: admitted.identity.clone(),
            route: self.route.clone(),
            // Copied only when a plugin may read one (`context.header`).
            headers: if chain
                .plugins()
                .iter()
                .any(|p| !p.powers().headers.is_empty())
            {
                RequestHeaders(Arc::new(parts.headers.clone()))
            } else {
                RequestHeaders::default()
            },
        };
        tracing::debug!(stream = stream_id, method = %parts.method, path = %parts.uri.path(), rpc = ?summary.method, generation = chain.generation(), "request");
        // A plugin's `modify` is held to the same limit as what the proxy reads.
        let mut observers = self.observers_for(&meta, &chain);
        let mut session = chain.session(meta).with_max_event_bytes(limit);
        if observers.wants_steps() {
            session = session.traced();
        }

        // Chain, to-server.
        let original = body.clone(); // reference-counted, not copied
        let (returned, forward) = self.to_server(session, body, read).await;
        session = returned;
        let sent = match &forward {
            Forward::Body { body, .. } => Some(body),
            Forward::Answer(_) => None,
        };
        let steps = session.take_steps();
        observers.request(&RequestSeen {
            meta: session.meta(),
            query: parts.uri.query(),
            headers: &parts.headers,
            body: &original,
            steps: &steps,
            sent,
        });
        if sent.is_none() {
            observers.end(&StreamEnd::AnsweredByProxy);
        }
        let (body, answered) = match forward {
            Forward::Body { body, answered } => (body, answered),
            Forward::Answer(response) => return Ok(response),
        };
        let rewritten = (body != original).then(|| body.clone());

        // Upstream.
        let mut upstream_request = Request::new(Full::new(body));
        *upstream_request.method_mut() = parts.method.clone();
        *upstream_request.uri_mut() = self.upstream.uri_for(parts.uri.path_and_query());
        *upstream_request.headers_mut() = headers::for_upstream(parts.headers);
        let trusted = peer.is_some_and(|ip| {
            self.settings
                .trusted_proxies
                .iter()
                .any(|n| n.contains(&ip))
        });
        headers::set_forwarding(upstream_request.headers_mut(), peer, trusted);
        // The client's token was for sluice: the upstream gets what the route says.
        if let Err(source) = self
            .access
            .credential()
            .apply(upstream_request.headers_mut(), admitted.token.as_deref())
            .await
        {
            observers.end(&StreamEnd::UpstreamFailed {
                stage: UpstreamStage::Connect,
                reason: &ErrorChain(&source).to_string(),
            });
            return Err(ProxyError::UpstreamCredential {
                source,
                request: summary,
            });
        }
        if let Some(body) = &rewritten {
            headers::sync_mcp_routing(upstream_request.headers_mut(), &original, body);
        }
        let response = self
            .upstream
            .send(upstream_request)
            .await
            .map_err(|source| {
                observers.end(&StreamEnd::UpstreamFailed {
                    stage: UpstreamStage::Connect,
                    reason: &ErrorChain(&source).to_string(),
                });
                ProxyError::Upstream {
                    source,
                    request: summary.clone(),
                }
            })?;

        // Response: decoder → chain, to-client → encoder.
        let (mut parts, body) = response.into_parts();
        parts.headers = headers::for_client(parts.headers);
        if let Some(owners) = self.access.sessions() {
            if let Some(created) = header_str(&parts.headers, "mcp-session-id") {
                owners.created(&created, &admitted.identity);
            }
            if ended_by_delete
                && parts.status.is_success()
                && let Some(id) = &session_id
            {
                owners.ended(id);
            }
        }
        observers.response(parts.status, &parts.headers);
        if !parts.status.is_success() {
            // 400, 401 (with WWW-Authenticate), 404 (session gone: the client must
            // initialize again), 405 (no GET stream)...: the client must see exactly
            // what the server said.
            if parts.status == StatusCode::UNAUTHORIZED
                && !matches!(
                    self.access.credential(),
                    crate::auth::UpstreamCredential::Passthrough
                )
            {
                // Its challenge sends the client to the upstream's authorization
                // server, whose token sluice would then not pass on: say why.
                tracing::warn!(
                    "the upstream answered 401: it wants a credential sluice does not give it (clients' tokens never pass; set one with [upstream_auth])"
                );
            }
            observers.end(&StreamEnd::NotInspected);
            return Ok(unchanged(parts, body));
        }
        if parts.status == StatusCode::ACCEPTED && !answered.is_empty() {
            observers.end(&StreamEnd::AnsweredByProxy);
            // The upstream took the notifications that were left; the dropped requests
            // still need their errors.
            return Ok(json_response(StatusCode::OK, &answered));
        }
        let sse = is_sse(&parts.headers);
        if parts.status == StatusCode::OK
            && !sse
            && !is_json(&parts.headers)
            && !summary.request_ids.is_empty()
        {
            // A JSON-RPC request answered 200 must get JSON or SSE; anything else (an
            // HTML page from a misrouted gateway, say) would leave the client waiting
            // on an answer it cannot read. (202 is the legacy transport's "the answer
            // comes on the GET stream".)
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_string();
            return Err(upstream_unusable(
                &mut observers,
                Unusable::ContentType(content_type),
                summary,
            ));
        }
        let inspected = sse || (is_json(&parts.headers) && !session.chain().is_empty());
        if !inspected {
            observers.end(&StreamEnd::NotInspected);
            return Ok(unchanged(parts, body));
        }
        if let Some(encoding) = compressed(&parts.headers) {
            // We asked for identity; a compressed body cannot be read event by event,
            // and passing it unread would bypass every plugin.
            return Err(upstream_unusable(
                &mut observers,
                Unusable::Compressed(encoding),
                summary,
            ));
        }
        parts.headers.remove(header::CONTENT_LENGTH);
        if !sse {
            return self
                .json_to_client(parts, body, session, summary, answered, observers)
                .await;
        }
        headers::for_sse(&mut parts.headers);
        let session = self
            .plugin_work(session, |session| session.begin(Direction::ToClient))
            .await
            .0;
        let mut events = SseEvents::new(body, limit);
        if let Some(after) = self.settings.upstream_idle_timeout {
            events = events.with_idle_timeout(after);
        }
        let mut body = InterceptedSse::new(events, session, summary.request_ids)
            .with_limits(self.settings.message_limits)
            .with_answers_first(answered)
            .observed_by(observers)
            .closing_on(self.closing.subscribe())
            .with_holds(self.hold_room())
            .in_span(span);
        if opened_by_get && let Some(base) = self.upstream.legacy_endpoint() {
            // Only a GET opens a legacy HTTP+SSE stream with an `endpoint` event.
            let rewrite = EndpointRewrite::new(
                base,
                client_scheme,
                client_host.as_deref().unwrap_or("127.0.0.1"),
            );
            body = body.with_endpoint_rewrite(match &route_prefix {
                Some(prefix) => rewrite.with_client_prefix(prefix),
                None => rewrite,
            });
        }
        Ok(Response::from_parts(
            parts,
            body.map_err(|never| match never {}).boxed_unsync(),
        ))
    }

    /// Runs `work` on `session` off the runtime's threads, once a plugin worker is
    /// free (`plugin_workers`): plugin calls and instantiations are synchronous and
    /// may each take up to their deadline, and a request can hold many of them.
    async fn plugin_work<T: Send + 'static>(
        &self,
        mut session: Session,
        work: impl FnOnce(&mut Session) -> T + Send + 'static,
    ) -> (Session, T) {
        if session.chain().is_empty() {
            let out = work(&mut session);
            return (session, out);
        }
        let permit = self
            .plugin_work
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        // The permit goes with the work, not with this future: a client that hangs up
        // does not free a worker whose plugins still run. The span goes too, so the
        // plugins' log lines carry the stream.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _span = span.entered();
            let out = work(&mut session);
            (session, out)
        })
        .await
        .unwrap_or_else(|e| match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only when the runtime shuts down under a running request.
            Err(e) => panic!("plugin work did not finish: {e}"),
        })
    }

    /// Runs a client's message(s) through the chain on their way to the server.
    /// `read` is the body as [`ClientBody`] read it (`None`: not UTF-8).
    async fn to_server(
        &self,
        session: Session,
        body: Bytes,
        read: Option<Result<ClientBody, Refused>>,
    ) -> (Session, Forward) {
        if body.is_empty() || session.chain().is_empty() {
            return (
                session,
                Forward::Body {
                    body,
                    answered: Vec::new(),
                },
            );
        }
        let (Some(read), Ok(text)) = (read, String::from_utf8(body.to_vec())) else {
            tracing::warn!(
                stream = session.meta().stream_id,
                "request answered by the proxy: body is not UTF-8"
            );
            let answer = ProxyError::RequestNotText.into_response_for(session.meta().stream_id);
            return (session, Forward::Answer(answer));
        };
        let limits = self.settings.message_limits;
        let (mut session, mut decided) = self
            .plugin_work(session, move |session| {
                messages::to_server(session, text, read, &limits)
            })
            .await;
        // A held message waits here, off the plugin workers, while other exchanges go
        // on; then the rest of the chain sees it (or it is answered as dropped).
        while let ToServer::Held(held) = decided {
            let shown = self.held_message(&session, &held.plugin, &held.hold, &held.event);
            let after = self.wait_for_hold(shown, &held.hold).await;
            (session, decided) = self
                .plugin_work(session, move |session| {
                    messages::resume_to_server(session, held, after, &limits)
                })
                .await;
        }
        let forward = match decided {
            ToServer::Forward { body, answered } => Forward::Body {
                body: Bytes::from(body),
                answered,
            },
            ToServer::Answer { answered, .. } if answered.is_empty() => {
                Forward::Answer(empty_response(StatusCode::ACCEPTED))
            }
            ToServer::Answer { answered, batch } => {
                let response = if batch {
                    json_response(StatusCode::OK, &answered)
                } else {
                    json_response(StatusCode::OK, &answered[0])
                };
                Forward::Answer(response)
            }
            ToServer::Refused(refused) => {
                Forward::Answer(json_response(StatusCode::BAD_REQUEST, &refused.error()))
            }
            ToServer::Held(_) => unreachable!("waited for above"),
        };
        (session, forward)
    }

    /// What the admin API shows of a message `plugin` held.
    fn held_message(
        &self,
        session: &Session,
        plugin: &str,
        hold: &HoldSpec,
        event: &Event,
    ) -> HeldMessage {
        self.hold_room()
            .shown(session, plugin, hold, event.data_str())
    }

    /// Waits out a plugin's hold of a message, or until the proxy shuts down (then
    /// the message goes nowhere and its client is told: a hold must not keep a
    /// shutdown waiting, nor a client without its answer).
    async fn wait_for_hold(&self, shown: HeldMessage, hold: &HoldSpec) -> AfterHold {
        let mut closing = self.closing.subscribe();
        tokio::select! {
            end = self.holds.carry_out(&self.metrics, hold, shown) => after_hold(end),
            _ = closing.wait_for(|closing| *closing) => AfterHold::ShuttingDown,
        }
    }

    /// Where the holds of upstream messages wait (`InterceptedSse`).
    fn hold_room(&self) -> HoldRoom {
        HoldRoom {
            holds: self.holds.clone(),
            metrics: self.metrics.clone(),
            route: self.route.clone(),
        }
    }

    /// A JSON response passes the chain one message at a time.
    async fn json_to_client(
        &self,
        parts: http::response::Parts,
        body: UpstreamBody,
        session: Session,
        summary: Summary,
        answered: Vec<Box<RawValue>>,
        mut observers: Observers,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let body = match upstream::read_to_limit(body, self.settings.max_event_bytes).await {
            Ok(body) => body,
            Err(e) => {
                return Err(upstream_unusable(
                    &mut observers,
                    Unusable::Body(e),
                    summary,
                ));
            }
        };
        if body.is_empty() {
            observers.end(&StreamEnd::Complete);
            return Ok(Response::from_parts(parts, full(body)));
        }
        let Ok(text) = String::from_utf8(body.to_vec()) else {
            return Err(upstream_unusable(
                &mut observers,
                Unusable::NotText,
                summary,
            ));
        };
        let mut unanswered = summary.request_ids.clone();
        let received = Event::message(text);
        let recorded = observers.wants_upstream_bytes().then(|| received.clone());
        let limits = self.settings.message_limits;
        let (mut session, (mut judged, mut unanswered)) = self
            .plugin_work(session, move |session| {
                session.begin(Direction::ToClient);
                let judged =
                    messages::to_client_or_hold(session, received, &mut unanswered, &limits);
                if matches!(judged, ToClient::Sent(_)) {
                    session.end();
                }
                (judged, unanswered)
            })
            .await;
        // A held response waits here, off the plugin workers.
        let sent = loop {
            match judged {
                ToClient::Sent(sent) => break sent,
                ToClient::Held(held) => {
                    let shown = self.held_message(&session, &held.plugin, &held.hold, &held.event);
                    let after = self.wait_for_hold(shown, &held.hold).await;
                    (session, (judged, unanswered)) = self
                        .plugin_work(session, move |session| {
                            let judged =
                                messages::resume_to_client(session, held, after, &mut unanswered);
                            if matches!(judged, ToClient::Sent(_)) {
                                session.end();
                            }
                            (judged, unanswered)
                        })
                        .await;
                }
            }
        };
        if let Some(received) = &recorded {
            let judged = Judged {
                steps: &session.take_steps(),
                sent: sent.as_ref(),
                rewritten: false,
            };
            observers.json_response(received, &judged);
        }
        observers.end(&StreamEnd::Complete);
        let data = match (sent.and_then(|e| e.data), answered.is_empty()) {
            (Some(data), true) => data,
            (sent, false) => {
                // A batch lost some requests to a plugin: the proxy's errors join the
                // upstream's answers in one array.
                let mut all: Vec<String> = sent
                    .map(|data| messages::batch_items(&data).unwrap_or_else(|| vec![data]))
                    .unwrap_or_default();
                all.extend(answered.iter().map(ToString::to_string));
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

impl Handler for Proxy {
    fn handle(
        &self,
        request: Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<ProxyBody>> + Send {
        Proxy::handle(self, request)
    }
}

/// The upstream's response cannot be used: the observers are told, and the client gets
/// an error for its request.
fn upstream_unusable(observers: &mut Observers, reason: Unusable, request: Summary) -> ProxyError {
    observers.end(&StreamEnd::UpstreamFailed {
        stage: UpstreamStage::Response,
        reason: &ErrorChain(&reason).to_string(),
    });
    ProxyError::UpstreamResponse { reason, request }
}

/// An upstream response passed through as it is, streamed.
fn unchanged(parts: http::response::Parts, body: UpstreamBody) -> Response<ProxyBody> {
    Response::from_parts(parts, body)
}

/// A JSON body (the proxy's own answers keep their ids as the client wrote them:
/// `RawValue`s serialise as they are).
fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<ProxyBody> {
    let text = serde_json::to_string(body).expect("JSON texts always serialise");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(text))
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
