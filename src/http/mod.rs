//! HTTP, whatever is behind it: the accept loop and its limits ([`server`]), the
//! `Origin` and `Host` checks ([`origin`]), the threads connections are served on
//! ([`workers`]), and the response body type. The proxy, the
//! admin API and `sluice tape serve` all answer through it.

mod channel;
pub mod origin;
mod server;
pub mod workers;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

pub use channel::ChannelBody;
pub use server::{
    ClientAddr, ClientTls, ConnectionLimits, Handler, serve, serve_draining, serve_limited,
    serve_tls,
};

/// The path prefix a router took off a request before the proxy saw it (a
/// `[[route]]`'s): what the client addresses and the upstream does not see.
#[derive(Debug, Clone)]
pub struct RoutePrefix(pub String);

/// The body type of every response sluice sends.
pub type ProxyBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// The host the client addressed: `Host` (HTTP/1.1) or the URI authority (HTTP/2). A
/// `Host` that is not text comes back as U+FFFD, which names nothing: a host check must
/// not read it as absent. The proxy and the admin API check hosts with this.
pub fn request_host<B>(request: &Request<B>) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{fffd}").to_string())
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
}
