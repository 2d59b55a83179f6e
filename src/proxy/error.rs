//! Every way a request can fail before a response streams, and the one place each is
//! turned into an HTTP status and, where the client is waiting on a JSON-RPC id, a
//! JSON-RPC error body.

use bytes::Bytes;
use http::{Response, StatusCode, header};

use super::jsonrpc::{self, Summary};
use super::{ProxyBody, full};
use crate::upstream::UpstreamError;

/// A request the proxy answers itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A browser origin that is not allowed.
    #[error("origin {0} is not allowed (see --allow-origin)")]
    Origin(String),
    /// A `Host` that does not name this proxy (DNS rebinding).
    #[error(
        "host {0} is not allowed: DNS-rebinding protection accepts loopback names only (see --allow-host)"
    )]
    Host(String),
    /// The request body is over `--max-event-bytes`.
    #[error("request body larger than the limit of {limit} bytes")]
    RequestTooLarge { limit: usize },
    /// The request body could not be read.
    #[error("cannot read the request body: {0}")]
    RequestRead(String),
    /// The request body is not UTF-8, so it cannot be a JSON-RPC message or pass the chain.
    #[error("request body is not UTF-8 text")]
    RequestNotText,
    /// The upstream could not be reached.
    #[error("{source}")]
    Upstream {
        source: UpstreamError,
        request: Summary,
    },
    /// The upstream's JSON response was unusable (too large, not UTF-8, broken).
    #[error("upstream response unusable: {reason}")]
    UpstreamResponse { reason: String, request: Summary },
}

impl ProxyError {
    /// The response for this error. Each variant picks its status deliberately.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = match &self {
            ProxyError::Origin(_) | ProxyError::Host(_) => StatusCode::FORBIDDEN,
            ProxyError::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::RequestRead(_) => StatusCode::BAD_REQUEST,
            ProxyError::RequestNotText => StatusCode::BAD_REQUEST,
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamResponse { .. } => StatusCode::BAD_GATEWAY,
        };
        let message = format!("sluice: {self}");
        let rpc_body = match &self {
            ProxyError::Upstream { request, .. } | ProxyError::UpstreamResponse { request, .. } => {
                request.error_body(jsonrpc::UPSTREAM_FAILED, &message)
            }
            ProxyError::Origin(_)
            | ProxyError::Host(_)
            | ProxyError::RequestTooLarge { .. }
            | ProxyError::RequestRead(_)
            | ProxyError::RequestNotText => None,
        };
        let (content_type, body) = match rpc_body {
            Some(body) => ("application/json", body),
            None => ("text/plain; charset=utf-8", Bytes::from(message + "\n")),
        };
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type)
            .body(full(body))
            .expect("static status and header form a valid response")
    }
}
