//! Everything that talks to the upstream server: one outgoing HTTP transport, and the
//! reading side of its responses (SSE events through a bounded buffer, bounded JSON
//! bodies). Used by the proxy and by tools alike, so there is one way to reach an
//! upstream.

mod body;
mod client;
mod error;
mod events;
pub mod stdio;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use http_body_util::Full;

pub use body::read_to_limit;
pub use client::Http;
pub use error::{BodyError, UpstreamError};
pub use events::{SseEvents, StreamError};
pub use stdio::{StdioCommand, StdioSettings, StdioUpstream};

/// The body of an upstream response, whatever transport it came over: an HTTP
/// connection's body, or the messages of a stdio server as SSE.
pub type UpstreamBody = crate::http::ProxyBody;

/// Where the proxy sends what passed the to-server chain.
#[derive(Clone, Debug)]
pub enum Upstream {
    /// A Streamable HTTP (or legacy HTTP+SSE) server at a base URL (boxed: its pooled
    /// client is large, and the enum is moved around by value).
    Http(Box<Http>),
    /// A stdio server sluice starts, one process per session.
    Stdio(StdioUpstream),
}

impl Upstream {
    /// The URI of the upstream request for a client request's path and query.
    pub fn uri_for(&self, path_and_query: Option<&PathAndQuery>) -> Uri {
        match self {
            Upstream::Http(http) => http.uri_for(path_and_query),
            // The bridge routes by method and session, not by path.
            Upstream::Stdio(_) => {
                path_and_query.map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()))
            }
        }
    }

    /// Sends one request; the response body streams.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        match self {
            Upstream::Http(http) => http.send(request).await,
            Upstream::Stdio(stdio) => stdio.send(request).await,
        }
    }

    /// The HTTP upstream's base URL (scheme, authority, path), which a legacy
    /// `endpoint` event names and the proxy rewrites; `None` for a transport without one.
    pub fn legacy_endpoint(&self) -> Option<&Uri> {
        match self {
            Upstream::Http(http) => Some(http.base()),
            Upstream::Stdio(_) => None,
        }
    }

    /// Ends what the upstream runs (a stdio server's processes); for shutdown.
    pub async fn shutdown(&self) {
        if let Upstream::Stdio(stdio) = self {
            stdio.shutdown().await;
        }
    }
}

impl From<StdioUpstream> for Upstream {
    fn from(stdio: StdioUpstream) -> Self {
        Upstream::Stdio(stdio)
    }
}

impl From<Http> for Upstream {
    fn from(http: Http) -> Self {
        Upstream::Http(Box::new(http))
    }
}
