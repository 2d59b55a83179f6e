//! Real MCP parts for the integration tests, built on the official Rust SDK (`rmcp`).
//!
//! * [`spawn_mcp_server`] runs an rmcp server over the Streamable HTTP transport on a real
//!   `127.0.0.1` socket, served by hyper. Sessions are stateful (`Mcp-Session-Id`) and every
//!   POST is answered with an SSE stream (not JSON-response mode).
//! * [`connect`] connects an rmcp client over the streamable-HTTP client transport (reqwest)
//!   and records every `notifications/progress` it receives.
//!
//! rmcp facts worth knowing when extending this:
//! * Sessions only exist on the legacy (`initialize`) lifecycle: protocol `2026-07-28` drops
//!   them. The client therefore pins `ProtocolVersion::LATEST_WITH_INITIALIZE` (2025-11-25).
//! * rmcp's `Peer` puts a fresh `_meta.progressToken` on EVERY outgoing request (it is not
//!   optional), so any rmcp client call of `count` receives progress notifications.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Request, Response, StatusCode, body::Incoming};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use rmcp::{
    ClientHandler, ErrorData, RoleClient, RoleServer, ServerHandler, ServiceError, ServiceExt,
    handler::server::wrapper::{Json, Parameters},
    model::{
        CallToolRequest, CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig,
        ClientRequest, Implementation, ProgressNotificationParam, ProtocolVersion, ServerResult,
    },
    schemars,
    service::{
        ClientInitializeError, ClientLifecycleMode, ClientServiceExt, NotificationContext,
        PeerRequestOptions, RequestContext, RunningService,
    },
    tool, tool_handler, tool_router,
    transport::{
        StreamableHttpClientTransport, StreamableHttpServerConfig, StreamableHttpService,
        streamable_http_server::session::local::LocalSessionManager,
    },
};
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, sync::Notify, task::JoinSet};

/// The path the MCP endpoint is served on.
pub const MCP_PATH: &str = "/mcp";

/// The text returned by the `get_secret` tool.
pub const SECRET_TEXT: &str = "the key is sk-live-abc123";

/// The `api_key` of the account `get_account` returns.
pub const SECRET_KEY: &str = "sk-live-abc123";

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// The text to send back.
    pub text: String,
}

/// `region` is mirrored into an `Mcp-Param-Region` header by 2026-07-28 clients
/// (SEP-2243), and rmcp's server checks the header against the body.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ForecastArgs {
    /// Where the forecast is for.
    #[schemars(extend("x-mcp-header" = "Region"))]
    pub region: String,
}

/// What `get_account` answers, as structured content: fields in an order that is not
/// alphabetical (though rmcp sorts them on the wire: its `serde_json` keeps no order).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Account {
    pub user: String,
    pub api_key: String,
    pub plan: String,
}

/// The account `get_account` answers with: `api_key` holds [`SECRET_KEY`].
pub fn account() -> Account {
    Account {
        user: "alice".into(),
        api_key: SECRET_KEY.into(),
        plan: "pro".into(),
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CountArgs {
    /// How many progress notifications to send.
    pub n: u32,
}

/// The upstream MCP server used by the tests. One instance is created per session.
#[derive(Debug, Clone, Default)]
pub struct TestServer {
    changes: ToolChanges,
}

/// Changes to what `tools/list` shows from now on, shared by every session of one
/// server: a server that changes a tool it already showed, or shows one it did not
/// (what the `pin-tools` plugin detects). A hidden tool is still callable.
#[derive(Debug, Clone, Default)]
pub struct ToolChanges(Arc<Mutex<Changes>>);

#[derive(Debug, Default)]
struct Changes {
    /// (tool, description replacing the built-in one).
    descriptions: Vec<(String, String)>,
    hidden: Vec<String>,
}

impl ToolChanges {
    /// `tool`'s description in every later `tools/list`.
    pub fn describe(&self, tool: &str, description: &str) {
        let mut changes = self.0.lock().unwrap();
        changes.descriptions.retain(|(name, _)| name != tool);
        changes
            .descriptions
            .push((tool.to_owned(), description.to_owned()));
    }

    /// Leaves `tool` out of every later `tools/list` (`false`: lists it again).
    pub fn hide(&self, tool: &str, hidden: bool) {
        let mut changes = self.0.lock().unwrap();
        changes.hidden.retain(|name| name != tool);
        if hidden {
            changes.hidden.push(tool.to_owned());
        }
    }

    fn apply(&self, tools: &mut Vec<rmcp::model::Tool>) {
        let changes = self.0.lock().unwrap();
        tools.retain(|tool| !changes.hidden.iter().any(|name| name == &tool.name));
        for tool in tools {
            if let Some((_, description)) = changes
                .descriptions
                .iter()
                .find(|(name, _)| name == &tool.name)
            {
                tool.description = Some(description.clone().into());
            }
        }
    }
}

#[tool_router]
impl TestServer {
    #[tool(description = "Return the given text unchanged")]
    async fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(description = "A forecast for a region (mirrored into a routing header)")]
    async fn forecast(
        &self,
        Parameters(ForecastArgs { region }): Parameters<ForecastArgs>,
    ) -> String {
        format!("forecast for {region}")
    }

    #[tool(description = "Return a secret")]
    async fn get_secret(&self) -> String {
        SECRET_TEXT.to_owned()
    }

    /// Structured output (`Json<T>`): rmcp answers with `structuredContent` and the same
    /// JSON as a text item, as the MCP Python SDK does for a tool with an output schema.
    #[tool(description = "Return the account, as structured content and as text")]
    async fn get_account(&self) -> Json<Account> {
        Json(account())
    }

    #[tool(description = "Send n progress notifications (progress 1..=n, total n), then finish")]
    async fn count(
        &self,
        Parameters(CountArgs { n }): Parameters<CountArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<String, ErrorData> {
        // Progress is only reported when the client asked for it.
        if let Some(token) = context.meta.get_progress_token() {
            for step in 1..=n {
                let params = ProgressNotificationParam::new(token.clone(), f64::from(step))
                    .with_total(f64::from(n));
                context
                    .peer
                    .notify_progress(params)
                    .await
                    .map_err(|error| {
                        ErrorData::internal_error(format!("sending progress failed: {error}"), None)
                    })?;
            }
        }
        Ok(format!("counted {n}"))
    }

    #[tool(
        description = "Answer, then send notifications/tools/list_changed on its own: a server-initiated message, which travels on the GET stream"
    )]
    async fn announce(&self, context: RequestContext<RoleServer>) -> String {
        let peer = context.peer.clone();
        tokio::spawn(async move {
            // After the response, so the message is related to no request.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = peer.notify_tool_list_changed().await;
        });
        "announced".to_owned()
    }
}

#[tool_handler(name = "sluice-test-upstream", version = "0.1.0")]
impl ServerHandler for TestServer {
    /// The macro's `list_tools`, with the changes made through [`McpServer::tools`].
    async fn list_tools(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, ErrorData> {
        let supports_cache_hints = context
            .protocol_version()
            .is_some_and(|version| version >= ProtocolVersion::V_2026_07_28);
        let mut tools = Self::tool_router().list_all();
        self.changes.apply(&mut tools);
        Ok(rmcp::model::ListToolsResult {
            result_type: Some(rmcp::model::ResultType::COMPLETE),
            tools,
            meta: None,
            next_cursor: None,
            ttl_ms: supports_cache_hints.then_some(0),
            cache_scope: supports_cache_hints.then_some(rmcp::model::CacheScope::Public),
        })
    }
}

/// One HTTP request as the upstream server saw it (before rmcp handled it).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: hyper::Method,
    pub path: String,
    pub headers: hyper::HeaderMap,
}

type McpHttpService = StreamableHttpService<TestServer, LocalSessionManager>;
type BoxResponse = Response<BoxBody<Bytes, Infallible>>;

/// Records every request, answers 404 off [`MCP_PATH`], hands the rest to rmcp.
#[derive(Clone)]
struct Endpoint {
    mcp: McpHttpService,
    log: Arc<Mutex<Vec<RecordedRequest>>>,
}

impl tower_service::Service<Request<Incoming>> for Endpoint {
    type Response = BoxResponse;
    type Error = Infallible;
    type Future = <McpHttpService as tower_service::Service<Request<Incoming>>>::Future;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        self.log.lock().unwrap().push(RecordedRequest {
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            headers: request.headers().clone(),
        });
        if request.uri().path() != MCP_PATH {
            let response = Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Full::new(Bytes::from_static(b"not found")).boxed())
                .expect("valid response");
            return Box::pin(std::future::ready(Ok(response)));
        }
        self.mcp.call(request)
    }
}

/// A running upstream MCP server. Dropping it stops the server: the accept loop and every
/// connection task are aborted and all rmcp sessions are cancelled.
pub struct McpServer {
    pub addr: SocketAddr,
    /// `http://{addr}/mcp`
    pub url: String,
    /// rmcp's session manager; `sessions` maps `Mcp-Session-Id` values to live sessions.
    pub sessions: Arc<LocalSessionManager>,
    /// Changes what every later `tools/list` shows.
    pub tools: ToolChanges,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    cancel_sessions: Option<Box<dyn FnOnce() + Send + Sync>>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl McpServer {
    /// The ids of the sessions the server currently holds.
    pub async fn session_ids(&self) -> Vec<String> {
        let sessions = self.sessions.sessions.read().await;
        let mut ids: Vec<String> = sessions.keys().map(|id| id.to_string()).collect();
        ids.sort();
        ids
    }

    /// Every HTTP request received so far (any path), in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        self.accept_task.abort();
        if let Some(cancel) = self.cancel_sessions.take() {
            cancel();
        }
    }
}

/// Start the upstream MCP server on `127.0.0.1:0`.
pub async fn spawn_mcp_server() -> McpServer {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind MCP server");
    let addr = listener.local_addr().expect("MCP server address");

    // Stateful sessions and SSE answers are the defaults; spelled out so they stay that way.
    // Host validation (DNS-rebinding protection) is on by default with loopback names and no
    // port, which accepts `127.0.0.1:<any port>`, so requests relayed by a proxy on another
    // loopback port pass. Origin validation is off by default (empty allow-list).
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_json_response(false)
        .with_allowed_hosts(["localhost", "127.0.0.1", "::1"]);
    let cancellation_token = config.cancellation_token.clone();
    let sessions = Arc::new(LocalSessionManager::default());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let tools = ToolChanges::default();
    let server = TestServer {
        changes: tools.clone(),
    };
    let endpoint = Endpoint {
        mcp: StreamableHttpService::new(move || Ok(server.clone()), sessions.clone(), config),
        log: requests.clone(),
    };

    let accept_task = tokio::spawn(async move {
        // Dropping the set (when this task is aborted) aborts every connection task.
        let mut connections = JoinSet::new();
        loop {
            let Ok((stream, _peer)) = listener.accept().await else {
                continue;
            };
            while connections.try_join_next().is_some() {}
            let service = TowerToHyperService::new(endpoint.clone());
            connections.spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    McpServer {
        addr,
        url: format!("http://{addr}{MCP_PATH}"),
        sessions,
        tools,
        requests,
        cancel_sessions: Some(Box::new(move || cancellation_token.cancel())),
        accept_task,
    }
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// Client handler that records the progress values of every `notifications/progress`.
#[derive(Debug, Clone, Default)]
pub struct RecordingClient {
    pub progress: Arc<Mutex<Vec<f64>>>,
    /// Methods of the server-initiated notifications that arrived
    /// (`notifications/tools/list_changed`, `notifications/message`), in order.
    pub notifications: Arc<Mutex<Vec<String>>>,
    arrived: Arc<Notify>,
    /// The protocol revision to offer (default: the newest with `initialize`).
    protocol: Option<ProtocolVersion>,
}

impl ClientHandler for RecordingClient {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().unwrap().push(params.progress);
        self.arrived.notify_waiters();
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.note("notifications/tools/list_changed");
    }

    // Logging is deprecated (SEP-2577) but server-everything still uses it for its
    // server-initiated messages.
    #[allow(deprecated)]
    async fn on_logging_message(
        &self,
        _params: rmcp::model::LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.note("notifications/message");
    }

    fn get_info(&self) -> ClientConfig {
        // Sessions (Mcp-Session-Id) exist only on the `initialize` lifecycle.
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("sluice-test-client", "0.1.0"),
        )
        .with_protocol_version(
            self.protocol
                .clone()
                .unwrap_or(ProtocolVersion::LATEST_WITH_INITIALIZE),
        )
    }
}

impl RecordingClient {
    fn note(&self, method: &str) {
        self.notifications.lock().unwrap().push(method.to_owned());
        self.arrived.notify_waiters();
    }
}

/// A connected rmcp client. `service` derefs to `rmcp::Peer<RoleClient>` (`list_all_tools`,
/// `call_tool`, `peer_info`, ...).
pub struct McpClient {
    pub service: RunningService<RoleClient, RecordingClient>,
}

/// The tools' names, sorted: what tests compare of a `tools/list`.
pub fn tool_names(tools: &[rmcp::model::Tool]) -> Vec<String> {
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    names
}

/// Connect to `url` (an MCP endpoint, e.g. [`McpServer::url`] or a proxy URL); panics on failure.
pub async fn connect(url: &str) -> McpClient {
    try_connect(url)
        .await
        .unwrap_or_else(|error| panic!("MCP client could not connect to {url}: {error}"))
}

/// Like [`connect`], but returns the initialization error instead of panicking.
pub async fn try_connect(url: &str) -> Result<McpClient, ClientInitializeError> {
    connect_with(url, None).await
}

/// Like [`try_connect`], offering `protocol` (e.g. `2026-07-28`, which has no
/// `initialize` and no session).
pub async fn connect_with(
    url: &str,
    protocol: Option<ProtocolVersion>,
) -> Result<McpClient, ClientInitializeError> {
    install_crypto();
    let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
    let handler = RecordingClient {
        protocol: protocol.clone(),
        ..RecordingClient::default()
    };
    let service = match protocol {
        // 2026-07-28 has no `initialize`: the client discovers the server instead.
        Some(version) if version == ProtocolVersion::V_2026_07_28 => {
            handler
                .serve_with_lifecycle(
                    transport,
                    ClientLifecycleMode::Discover {
                        preferred_versions: vec![version],
                    },
                )
                .await?
        }
        _ => handler.serve(transport).await?,
    };
    Ok(McpClient { service })
}

/// An rmcp client that sends `Authorization: Bearer <token>` on every request.
pub async fn connect_bearer(url: &str, token: &str) -> Result<McpClient, ClientInitializeError> {
    install_crypto();
    let config =
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            url.to_owned(),
        )
        .auth_header(token.to_owned());
    let transport = StreamableHttpClientTransport::from_config(config);
    let service = RecordingClient::default().serve(transport).await?;
    Ok(McpClient { service })
}

/// An rmcp client talking to a stdio server it starts itself (rmcp's child-process
/// transport): the direct run a stdio server behind sluice is compared with.
pub async fn connect_stdio(command: &sluice::upstream::StdioCommand) -> Result<McpClient, String> {
    let mut cmd = tokio::process::Command::new(&command.program);
    cmd.args(&command.args);
    let transport = rmcp::transport::TokioChildProcess::new(cmd).map_err(|e| e.to_string())?;
    let service = RecordingClient::default()
        .serve(transport)
        .await
        .map_err(|e| e.to_string())?;
    Ok(McpClient { service })
}

/// The tests' reqwest (through rmcp) is built without a default TLS provider (the
/// tests' TLS uses ring, as sluice does): make ring the process default once, before
/// any client is built.
pub fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = std::sync::Arc::unwrap_or_clone(crate::common::tls::provider()).install_default();
    });
}

/// Like [`try_connect`], over `http` (e.g. a client that trusts a test CA).
pub async fn try_connect_via(
    url: &str,
    http: reqwest::Client,
) -> Result<McpClient, ClientInitializeError> {
    install_crypto();
    let transport = StreamableHttpClientTransport::with_client(
        http,
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            url.to_owned(),
        ),
    );
    let service = RecordingClient::default().serve(transport).await?;
    Ok(McpClient { service })
}

fn call_params(tool: &str, args: serde_json::Value) -> CallToolRequestParams {
    let params = CallToolRequestParams::new(tool.to_owned());
    match args {
        serde_json::Value::Null => params,
        serde_json::Value::Object(arguments) => params.with_arguments(arguments),
        other => panic!("tool arguments must be a JSON object or null, got {other}"),
    }
}

/// The text contents of a tool result, concatenated.
pub fn result_text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|content| content.as_text())
        .map(|text| text.text.as_str())
        .collect()
}

impl McpClient {
    /// Progress values received so far, in arrival order.
    pub fn progress(&self) -> Vec<f64> {
        self.service.service().progress.lock().unwrap().clone()
    }

    /// Wait until at least `n` progress values have arrived or `timeout` passed; returns the
    /// values received by then (the caller asserts on them).
    pub async fn wait_progress(&self, n: usize, timeout: Duration) -> Vec<f64> {
        self.wait_until(timeout, || {
            let progress = self.progress();
            (progress.len() >= n).then_some(progress)
        })
        .await
        .unwrap_or_else(|| self.progress())
    }

    /// Wait until a server-initiated notification arrived or `timeout` passed; returns
    /// the first one's method.
    pub async fn wait_notification(&self, timeout: Duration) -> Option<String> {
        let first = || {
            let handler = self.service.service();
            handler.notifications.lock().unwrap().first().cloned()
        };
        self.wait_until(timeout, first).await
    }

    /// Re-checks `ready` whenever a notification arrives, until it gives a value or
    /// `timeout` passes (then `None`).
    async fn wait_until<T>(&self, timeout: Duration, ready: impl Fn() -> Option<T>) -> Option<T> {
        let handler = self.service.service();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = handler.arrived.notified();
            tokio::pin!(arrived);
            // Register before checking so a notification in between is not missed.
            arrived.as_mut().enable();
            if let Some(value) = ready() {
                return Some(value);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return ready();
            }
        }
    }

    /// Call `tool` with `args` (a JSON object, or `null` for none) and join the text contents
    /// of the result. A tool-level error (`isError: true`) is returned as its text too.
    pub async fn call_text(
        &self,
        tool: &str,
        args: serde_json::Value,
    ) -> Result<String, ServiceError> {
        let result = self.service.call_tool(call_params(tool, args)).await?;
        Ok(result_text(&result))
    }

    /// Call `tool` with a progress token in `_meta.progressToken` and wait for the result.
    /// Progress notifications arrive via [`Self::progress`] / [`Self::wait_progress`]; they may
    /// be handled after the result is returned.
    pub async fn call_with_progress(
        &self,
        tool: &str,
        args: serde_json::Value,
    ) -> Result<String, ServiceError> {
        // rmcp's Peer assigns a fresh progress token to every request it sends
        // (`RequestHandle::progress_token`); this spells the request out to make that visible.
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(call_params(tool, args)));
        let handle = self
            .service
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await?;
        match handle.await_response().await? {
            ServerResult::CallToolResult(result) => Ok(result_text(&result)),
            _ => Err(ServiceError::UnexpectedResponse),
        }
    }
}
