//! `sluice demo`: a plugin at work with no other software. An embedded MCP-shaped
//! upstream streams a tool call's progress, a log message and a result carrying a
//! secret; the proxy runs the built-in demo plugin (compiled from
//! `plugins/wat/demo.wat` at build time, so no guest toolchain is needed); a client
//! prints what arrives.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::app::{self, Running, StartError};
use crate::config::Config;
use crate::metrics::StatsSnapshot;
use crate::plugin::{PluginLimits, PluginSource, PluginSpec, builtin};
use crate::proxy::{ProxyBody, ProxySettings};
use crate::sse::{Event, Frame as SseFrame};
use crate::upstream::{self, SseEvents};

/// What the embedded upstream sends for a `tools/call`: a keep-alive comment, two
/// progress notifications, a log message and the result.
pub const SCRIPT: [&str; 5] = [
    r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"demo","progress":1,"total":2}}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"looking up the forecast"}}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"demo","progress":2,"total":2}}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"debug","data":"called api.weather.example with key sk-live-4f9a8b7c2d"}}"#,
    r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"Sunny, 21°C (api key sk-live-4f9a8b7c2d)"}]}}"#,
];

/// The request the demo client sends.
pub const REQUEST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Lisbon"},"_meta":{"progressToken":"demo"}}}"#;

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The proxy could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// Local I/O (binding the upstream, writing the output).
    #[error("demo: {0}")]
    Io(#[from] std::io::Error),
    /// The client's exchange through the proxy failed.
    #[error("demo client: {0}")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The proxy answered the demo's call with another status than 200.
    #[error("demo client: proxy answered {0}")]
    Status(StatusCode),
}

/// What the demo client saw.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Messages (events with data) the client received, in order.
    pub received: Vec<Event>,
    /// The demo plugin's counters.
    pub plugin: StatsSnapshot,
}

/// Starts the demo upstream and the proxy, runs the client once and prints to `out`.
/// Returns the running proxy so the caller can keep serving or stop it.
pub async fn run(
    listen: SocketAddr,
    delay: Duration,
    out: &mut impl Write,
) -> Result<(Running, DemoReport), DemoError> {
    let upstream = spawn_upstream(delay).await?;
    let proxy = app::start(Config {
        listen,
        upstream: format!("http://{upstream}"),
        plugins: vec![PluginSpec {
            powers: Default::default(),
            name: "demo".into(),
            source: PluginSource::Bytes(builtin::DEMO),
            config: String::new(),
            limits: PluginLimits::default(),
            capabilities: Default::default(),
        }],
        proxy: ProxySettings::default(),
        // The demo plugin is tiny and built in: nothing worth caching on disk.
        cache_dir: None,
        record_dir: None,
        tape: Default::default(),
        stdio: None,
        routes: Vec::new(),
        tls: Default::default(),
        access: Default::default(),
    })
    .await?;
    let url = format!("{}/mcp", proxy.url());
    writeln!(out, "sluice demo")?;
    writeln!(
        out,
        "  upstream  http://{upstream}/mcp  (embedded, MCP-shaped; streams {} events per tools/call)",
        SCRIPT.len()
    )?;
    writeln!(out, "  proxy     {url}")?;
    writeln!(
        out,
        "  plugin    demo (built in): drops notifications/progress, masks sk- secrets, passes the rest"
    )?;
    writeln!(out)?;
    writeln!(out, "upstream sends:")?;
    for (i, data) in SCRIPT.iter().enumerate() {
        writeln!(out, "  id={} {}", i + 1, data)?;
    }
    writeln!(out)?;
    writeln!(out, "client → POST {url} tools/call get_weather; receives:")?;
    out.flush()?;
    let received = client(&url, out).await?;
    let plugin = proxy.proxy().chain().stats(0);
    writeln!(out)?;
    writeln!(
        out,
        "plugin demo: {} messages seen (the request and every event), {} passed, {} modified, {} dropped",
        plugin.calls, plugin.passed, plugin.modified, plugin.dropped
    )?;
    out.flush()?;
    Ok((proxy, DemoReport { received, plugin }))
}

/// The curl line a user can run against a demo left running.
pub fn try_it(url: &str) -> String {
    format!(
        "curl -N -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -d '{REQUEST}' {url}/mcp"
    )
}

async fn client(url: &str, out: &mut impl Write) -> Result<Vec<Event>, DemoError> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = Request::post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .body(Full::new(Bytes::from_static(REQUEST.as_bytes())))
        .map_err(|e| DemoError::Client(e.into()))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| DemoError::Client(e.into()))?;
    if response.status() != StatusCode::OK {
        return Err(DemoError::Status(response.status()));
    }
    let mut events = SseEvents::new(response.into_body(), 1 << 20);
    let mut received = Vec::new();
    while let Some(frame) = events.next().await {
        match frame.map_err(|e| DemoError::Client(e.into()))? {
            SseFrame::Comment(text) => writeln!(out, "  ← (comment){text}")?,
            // A dropped event leaves its id behind, so a client that reconnects
            // with Last-Event-ID does not get it again.
            SseFrame::Event(event) if event.data.is_none() => writeln!(
                out,
                "  ← id={} (no message: dropped; the id still moves the client's cursor)",
                event.id.as_deref().unwrap_or("-"),
            )?,
            SseFrame::Event(event) => {
                writeln!(
                    out,
                    "  ← id={} {}",
                    event.id.as_deref().unwrap_or("-"),
                    event.data_str()
                )?;
                received.push(event);
            }
        }
        out.flush()?;
    }
    Ok(received)
}

/// The embedded upstream: answers `initialize` with JSON, `tools/call` with the SSE
/// script (one event every `delay`), notifications with 202.
async fn spawn_upstream(delay: Duration) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service_fn(move |request| upstream_reply(request, delay));
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn upstream_reply(
    request: Request<Incoming>,
    delay: Duration,
) -> Result<Response<ProxyBody>, Infallible> {
    let body = upstream::read_to_limit(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let message: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let reply = match message.get("method").and_then(|m| m.as_str()) {
        Some("tools/call") => {
            let frames = futures_util::stream::unfold(0usize, move |i| async move {
                let chunk = match i {
                    0 => Bytes::from_static(b": the demo upstream is thinking\n\n"),
                    n if n <= SCRIPT.len() => {
                        tokio::time::sleep(delay).await;
                        Bytes::from(format!("id: {n}\ndata: {}\n\n", SCRIPT[n - 1]))
                    }
                    _ => return None,
                };
                Some((Ok::<_, Infallible>(Frame::data(chunk)), i + 1))
            });
            Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .body(
                    StreamBody::new(frames)
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                )
        }
        Some("initialize") => {
            let id = message.get("id").cloned().unwrap_or_default();
            let result = serde_json::json!({"jsonrpc":"2.0","id":id,"result":{
                "protocolVersion":"2025-06-18","capabilities":{"tools":{}},
                "serverInfo":{"name":"sluice-demo-upstream","version":env!("CARGO_PKG_VERSION")}}});
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(crate::proxy::full(result.to_string()))
        }
        _ => Response::builder()
            .status(StatusCode::ACCEPTED)
            .body(crate::proxy::full(Bytes::new())),
    };
    Ok(reply.expect("static parts form a valid response"))
}
