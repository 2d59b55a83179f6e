//! The accept loop: HTTP/1.1 and h2c (prior knowledge) on one listener. The proxy and
//! the admin API both run on it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::{Proxy, ProxyBody};

/// Something that answers requests; errors are responses too.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send;
}

impl Handler for Proxy {
    fn handle(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send {
        Proxy::handle(self, request)
    }
}

/// Limits of the client-facing listener: how many connections, how long a client may
/// take to send a request head, how long it may leave the proxy's writes pending, and
/// what an h2 client may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once; the next one is answered 503 and closed.
    pub max_connections: usize,
    /// Time to send a request head, from the connection's start or the end of the
    /// previous exchange (so also the idle time of a keep-alive connection).
    pub header_read_timeout: Duration,
    /// Longest wait for one write to the client to make progress (nginx's
    /// `send_timeout`): a client that stops reading is disconnected after it.
    pub client_write_timeout: Duration,
    /// Streams an h2 client may have open at once on one connection.
    pub h2_max_concurrent_streams: u32,
    /// Largest header list (decoded) an h2 client may send.
    pub h2_max_header_list_bytes: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(30),
            client_write_timeout: Duration::from_secs(60),
            h2_max_concurrent_streams: 100,
            h2_max_header_list_bytes: 16 << 10,
        }
    }
}

/// The client's address (stub).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Stub: limits ignored.
pub async fn serve_limited<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    _limits: ConnectionLimits,
    _metrics: Option<Arc<crate::metrics::Metrics>>,
) {
    serve_draining(listener, handler, shutdown, drain).await;
}

/// How long open connections (long-lived SSE streams among them) get to finish after
/// shutdown begins, unless the caller says otherwise ([`serve_draining`]).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `handler` on `listener` until `shutdown` completes, then drains connections.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
) {
    serve_draining(listener, handler, shutdown, DRAIN_TIMEOUT).await;
}

/// Like [`serve`]: after `shutdown`, no new connection is accepted, and open ones get
/// up to `drain` to finish before they are dropped.
pub async fn serve_draining<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |request| {
            let handler = handler.clone();
            async move { Ok::<_, std::convert::Infallible>(handler.handle(request).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "client connection ended with an error");
            }
        });
    }
    // Stop accepting at once: the kernel would otherwise keep completing handshakes
    // into the backlog of a listener nobody reads.
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain) => {
            tracing::info!("connections still open after the drain timeout; closing");
        }
    }
}
