//! The accept loop: HTTP/1.1 and h2c (prior knowledge) on one listener, or HTTP/1.1 and
//! h2 over TLS (ALPN) when it has a certificate. The proxy and the admin API both run
//! on it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};

use super::ProxyBody;
use crate::metrics::Metrics;

/// Something that answers requests; errors are responses too.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send;
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

/// How long open connections (long-lived SSE streams among them) get to finish after
/// shutdown begins, unless the caller says otherwise ([`serve_draining`]).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections over the cap that may be answered at once; beyond that they are closed
/// without an answer, so that refusing costs nothing a flood could pile up.
const REFUSALS_AT_ONCE: usize = 64;

/// How long a refused connection is read (and discarded) after its 503, so that closing
/// it does not reset the connection and destroy the answer before the client reads it.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 45\r\n\r\nsluice: too many connections, try again soon\n";

/// The client's address, in the extensions of every request the server hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// In the extensions of every request that came over TLS: the client addressed an
/// `https://` URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTls;

/// What a plain-HTTP client gets from the TLS listener: a readable answer instead of
/// TLS alert bytes it cannot parse.
const NOT_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 50\r\n\r\nsluice: this port speaks TLS; use an https:// URL\n";

/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

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
    serve_limited(
        listener,
        handler,
        shutdown,
        drain,
        ConnectionLimits::default(),
        None,
    )
    .await;
}

/// Like [`serve_draining`], with `limits` on the connections, counted in `metrics`
/// (connections open, refused at the cap, cut by a timeout) when given.
pub async fn serve_limited<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    limits: ConnectionLimits,
    metrics: Option<Arc<Metrics>>,
) {
    let place = Place::Here;
    accept(
        listener, handler, shutdown, drain, limits, metrics, None, place,
    )
    .await;
}

/// Where accepted connections are served.
#[derive(Clone, Copy)]
enum Place {
    /// On the connection workers (`super::workers`) when installed: the proxy's
    /// listener.
    Workers,
    /// On the runtime of the accept loop: the admin API, `tape serve`. The admin API
    /// must answer while a worker is busy with a plugin's call.
    Here,
}

/// Like [`serve_limited`], speaking TLS with `tls` when given. The same limits hold:
/// a connection takes its slot before the handshake, and the handshake and the first
/// request head must both come within the header read timeout of the connection's
/// start, so a client that opens TCP and sends nothing (or half a ClientHello) is
/// closed like one that sends half a request head.
pub async fn serve_tls<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    limits: ConnectionLimits,
    metrics: Option<Arc<Metrics>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let place = Place::Workers;
    accept(
        listener, handler, shutdown, drain, limits, metrics, tls, place,
    )
    .await;
}

/// The accept loop of [`serve_tls`] and [`serve_limited`].
#[allow(clippy::too_many_arguments)] // theirs, and where connections are served
async fn accept<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    limits: ConnectionLimits,
    metrics: Option<Arc<Metrics>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    place: Place,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The timer is what makes hyper's header read timeout real: without one it is off.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.h2_max_header_list_bytes);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    // Connections refused since the cap was last reached: logged once per episode.
    let mut refusing: Option<u64> = None;
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Some(metrics) = &metrics {
                metrics.connection_refused();
            }
            match &mut refusing {
                Some(refused) => *refused += 1,
                None => {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection cap reached: new connections are answered 503 until some close (see --max-connections)"
                    );
                    refusing = Some(1);
                }
            }
            refuse(stream, &refusals);
            continue;
        };
        if let Some(refused) = refusing.take() {
            tracing::info!(refused, "below the connection cap again");
        }
        let _ = stream.set_nodelay(true);
        let open = metrics.as_ref().map(|m| m.connection_opened());
        let connection = Connection {
            builder: builder.clone(),
            watcher: graceful.watcher(),
            handler: handler.clone(),
            peer,
            limits,
            metrics: metrics.clone(),
            deadline: tokio::time::Instant::now() + limits.header_read_timeout,
        };
        let tls = tls.clone();
        let serve = move |stream| async move {
            let _slot = slot;
            let _open = open;
            match tls {
                None => connection.serve(stream, false).await,
                Some(acceptor) => {
                    if let Some(stream) = connection.handshake(stream, &acceptor).await {
                        connection.serve(stream, true).await;
                    }
                }
            }
        };
        match place {
            Place::Workers => super::workers::serve_connection(stream, serve),
            Place::Here => drop(tokio::spawn(serve(stream))),
        }
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

/// One accepted connection, before and while it is served.
struct Connection<H> {
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    handler: Arc<H>,
    peer: SocketAddr,
    limits: ConnectionLimits,
    metrics: Option<Arc<Metrics>>,
    /// When the first request must have come (the handshake too): the header read
    /// timeout after the connection was accepted.
    deadline: tokio::time::Instant,
}

impl<H: Handler> Connection<H> {
    /// The TLS handshake, bounded by the deadline; `None` (logged and counted) when it
    /// fails or does not finish in time. A client that speaks plain HTTP to this port
    /// is told so in plain HTTP.
    async fn handshake(
        &self,
        stream: TcpStream,
        acceptor: &tokio_rustls::TlsAcceptor,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        let peer = self.peer;
        let mut first = [0u8; 1];
        match tokio::time::timeout_at(self.deadline, stream.peek(&mut first)).await {
            Err(_) => {
                self.handshake_late();
                return None;
            }
            Ok(Ok(1)) if first[0] != TLS_HANDSHAKE_RECORD => {
                self.count_failure("plain_http");
                tracing::debug!(%peer, "plain HTTP on the TLS listener; answered 400 and closed");
                answer_and_close(stream, NOT_TLS).await;
                return None;
            }
            Ok(Ok(1)) => {}
            // Closed (or failed) before it sent anything: nothing to count.
            Ok(_) => return None,
        }
        match tokio::time::timeout_at(self.deadline, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(error)) => {
                self.count_failure("error");
                tracing::debug!(%peer, %error, "TLS handshake failed; connection closed");
                None
            }
            Err(_) => {
                self.handshake_late();
                None
            }
        }
    }

    fn handshake_late(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.connection_timeout("handshake");
        }
        tracing::debug!(peer = %self.peer, "no TLS handshake within the header read timeout; connection closed");
    }

    fn count_failure(&self, kind: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics.tls_handshake_failure(kind);
        }
    }

    /// Serves HTTP on `io` until the connection ends, a timeout cuts it, or shutdown
    /// drains it.
    async fn serve<I>(self, io: I, over_tls: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            builder,
            watcher,
            handler,
            peer,
            limits,
            metrics,
            deadline,
        } = self;
        let first_request = Arc::new(Notify::new());
        let seen = first_request.clone();
        let service = service_fn(move |mut request: Request<Incoming>| {
            seen.notify_one();
            request.extensions_mut().insert(ClientAddr(peer));
            if over_tls {
                request.extensions_mut().insert(ClientTls);
            }
            let handler = handler.clone();
            async move { Ok::<_, std::convert::Infallible>(handler.handle(request).await) }
        });
        let io = TimedWrites::new(io, limits.client_write_timeout, metrics.clone());
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        let connection = watcher.watch(connection);
        tokio::select! {
            ended = connection => match ended {
                Ok(()) => {}
                Err(error) => {
                    let timed_out = error
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout);
                    if timed_out {
                        if let Some(metrics) = &metrics {
                            metrics.connection_timeout("header");
                        }
                        tracing::debug!(%peer, "no request head within the header read timeout; connection closed");
                    } else {
                        tracing::debug!(%peer, %error, "client connection ended with an error");
                    }
                }
            },
            // hyper times the head only once it knows the protocol, and h2 not at
            // all: a connection that sends nothing, or part of a preface, would
            // otherwise be held for ever. Only the first request is timed here;
            // later HTTP/1.1 heads are hyper's.
            () = first_request_late(&first_request, deadline) => {
                if let Some(metrics) = &metrics {
                    metrics.connection_timeout("header");
                }
                tracing::debug!(%peer, "no request within the header read timeout; connection closed");
            }
        }
    }
}

/// Completes when `deadline` passes before the connection's first request; never
/// completes once that request has come.
async fn first_request_late(first_request: &Notify, deadline: tokio::time::Instant) {
    tokio::select! {
        () = first_request.notified() => std::future::pending().await,
        () = tokio::time::sleep_until(deadline) => {}
    }
}

/// Answers a connection over the cap with a 503 and closes it. Refusing is not
/// waiting: a client held in the listen backlog would see nothing for as long as the
/// cap lasts, where a 503 says at once that this proxy is full (a balancer moves on).
fn refuse(stream: TcpStream, refusals: &Arc<Semaphore>) {
    let Ok(turn) = refusals.clone().try_acquire_owned() else {
        // A flood: closing at once is the cheapest answer.
        return;
    };
    tokio::spawn(async move {
        let _turn = turn;
        answer_and_close(stream, REFUSAL).await;
    });
}

/// Writes a short plain-HTTP `answer` and closes the connection.
async fn answer_and_close(mut stream: TcpStream, answer: &[u8]) {
    // One write into an empty send buffer: it does not block.
    if stream.try_write(answer).is_err() || stream.shutdown().await.is_err() {
        return;
    }
    // Read what the client sent until it closes, briefly: closing with unread data
    // would send a reset, which can destroy the answer before the client reads it.
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        let mut sink = [0u8; 4096];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// A client socket whose writes must make progress: a write (or flush) that stays
/// pending for `timeout` fails with `TimedOut`, which ends the connection. Like nginx's
/// `send_timeout`, it times the wait between two writes that progress, not a whole
/// response, so a long SSE stream read by a slow but live client is never cut, and a
/// quiet stream (nothing to write) is not either.
struct TimedWrites<T> {
    inner: T,
    timeout: Duration,
    /// Armed when a write went pending; disarmed by the next write that progresses.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
    metrics: Option<Arc<Metrics>>,
}

impl<T> TimedWrites<T> {
    fn new(inner: T, timeout: Duration, metrics: Option<Arc<Metrics>>) -> Self {
        Self {
            inner,
            timeout,
            stall: None,
            armed: false,
            metrics,
        }
    }

    /// Passes a ready result through (disarming the timer), and turns a pending one
    /// into an error once the timer has run out.
    fn timed<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.armed = false;
            return polled;
        }
        let timeout = self.timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if !self.armed {
            // The first pending write since one progressed: the wait starts now.
            stall.as_mut().reset(tokio::time::Instant::now() + timeout);
            self.armed = true;
        }
        if stall.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.armed = false;
        if let Some(metrics) = &self.metrics {
            metrics.connection_timeout("write");
        }
        tracing::info!(
            timeout_secs = self.timeout.as_secs_f64(),
            "the client read nothing for the client write timeout; connection closed"
        );
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing for the client write timeout",
        )))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedWrites<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedWrites<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.timed(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.timed(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.timed(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.timed(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that reads nothing: the first write that cannot proceed fails once the
    /// timeout has passed, not before.
    #[tokio::test(start_paused = true)]
    async fn a_write_pending_past_the_timeout_fails() {
        let (near, _far) = tokio::io::duplex(64);
        let mut io = TimedWrites::new(near, Duration::from_secs(60), None);
        io.write_all(&[0; 64]).await.unwrap();
        let started = tokio::time::Instant::now();
        let error = io.write_all(&[0; 1]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_secs(60));
    }

    /// A slow peer that keeps reading: every wait is shorter than the timeout, so a
    /// response far longer than the timeout goes through.
    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_is_never_cut() {
        let (near, mut far) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let mut total = 0;
            while total < 64 * 10 {
                tokio::time::sleep(Duration::from_secs(50)).await;
                total += far.read(&mut buf).await.unwrap();
            }
            total
        });
        let mut io = TimedWrites::new(near, Duration::from_secs(60), None);
        let started = tokio::time::Instant::now();
        io.write_all(&[0; 64 * 10]).await.unwrap();
        assert!(started.elapsed() > Duration::from_secs(60 * 5));
        assert_eq!(reader.await.unwrap(), 640);
    }
}
