//! Every way a request can fail before a response streams, and the one place each is
//! turned into an HTTP status and, where the client is waiting on a JSON-RPC id, a
//! JSON-RPC error body.
//!
//! What the client reads is a stable message per kind of failure and the request id
//! (the stream id of the log lines), never the error itself: that names the upstream's
//! URL and the operating system's error text, which tell a client where the server
//! is and how the network around it looks. The error goes to the log, under that id.

use bytes::Bytes;
use http::{Response, StatusCode, header};

use super::{ProxyBody, full};
use crate::auth::{CredentialError, Denied, RateLimited};
use crate::http::origin::NotAllowed;
use crate::mcp::jsonrpc::{self, Summary};
use crate::upstream::{BodyError, UpstreamError};

/// A request the proxy answers itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A browser origin or a `Host` that is not allowed.
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    /// Resource-server mode turned the request away (no token, an invalid one, a
    /// missing scope).
    #[error(transparent)]
    Denied(#[from] Denied),
    /// A session id of another caller (resource-server mode): answered as a session
    /// that does not exist, which tells nothing about whose it is.
    #[error("no such session")]
    NotYourSession,
    /// A body the route's rate limits cannot count (not UTF-8, or no JSON-RPC message
    /// in it): refused rather than passed uncounted.
    #[error("the request body is not JSON-RPC that the rate limits can count")]
    Uncountable,
    /// The caller is over one of the route's rate limits.
    #[error("{limited}")]
    RateLimited {
        /// Which limit, and when to come back.
        #[source]
        limited: RateLimited,
        /// What the request held (its ids get the JSON-RPC errors).
        request: Summary,
    },
    /// The credential for the upstream could not be made (a token exchange failed).
    #[error("cannot obtain the upstream credential")]
    UpstreamCredential {
        /// The cause.
        #[source]
        source: CredentialError,
        /// What the request held (its ids get the JSON-RPC errors).
        request: Summary,
    },
    /// The request body is over `--max-event-bytes`.
    #[error("request body larger than the limit of {limit} bytes")]
    RequestTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The request body could not be read.
    #[error("cannot read the request body")]
    RequestRead(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The request body is not UTF-8, so it cannot be a JSON-RPC message or pass the chain.
    #[error("request body is not UTF-8 text")]
    RequestNotText,
    /// The upstream could not be reached.
    #[error("{source}")]
    Upstream {
        /// The cause.
        source: UpstreamError,
        /// What the request held (its ids get the JSON-RPC errors).
        request: Summary,
    },
    /// The upstream's response was unusable (wrong type, compressed, too large, not
    /// UTF-8, broken).
    #[error("upstream response unusable")]
    UpstreamResponse {
        /// What is wrong with it.
        #[source]
        reason: Unusable,
        /// What the request held (its ids get the JSON-RPC errors).
        request: Summary,
    },
}

/// Why an upstream's response cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// A JSON-RPC request answered 200 with neither JSON nor SSE.
    #[error("it answered a JSON-RPC request with content type {0}, not JSON or SSE")]
    ContentType(String),
    /// A compressed body, though identity was asked for.
    #[error("it is compressed ({0}) although identity was requested")]
    Compressed(String),
    /// A JSON body that is not UTF-8.
    #[error("JSON body is not UTF-8")]
    NotText,
    /// The body could not be read (too large, or the connection broke).
    #[error("cannot read its body")]
    Body(#[source] BodyError),
}

impl ProxyError {
    /// The response for this error, without a request id (see
    /// [`ProxyError::into_response_for`]).
    pub fn into_response(self) -> Response<ProxyBody> {
        self.response(None)
    }

    /// The response for this error, naming `request` (the stream id its log line
    /// carries) so that an operator can find the reason a client was given this.
    pub fn into_response_for(self, request: u64) -> Response<ProxyBody> {
        self.response(Some(request))
    }

    /// What a client may be told: the request's own faults in full (they describe only
    /// what the client sent and which flag allows it), the upstream's as a fixed text.
    fn public_message(&self) -> String {
        match self {
            ProxyError::NotAllowed(_)
            | ProxyError::RequestTooLarge { .. }
            | ProxyError::RequestNotText
            | ProxyError::Denied(_)
            | ProxyError::Uncountable
            | ProxyError::NotYourSession
            | ProxyError::RateLimited { .. } => self.to_string(),
            ProxyError::UpstreamCredential { .. } => {
                "the credential for the upstream server could not be obtained".into()
            }
            ProxyError::RequestRead(_) => "cannot read the request body".into(),
            ProxyError::Upstream { .. } => "the upstream server could not be reached".into(),
            ProxyError::UpstreamResponse { .. } => {
                "the upstream server's response could not be used".into()
            }
        }
    }

    /// Each variant picks its status deliberately.
    fn response(self, request: Option<u64>) -> Response<ProxyBody> {
        if let ProxyError::Denied(denied) = self {
            // Its status and WWW-Authenticate are the OAuth rules' (RFC 6750, 9728).
            return denied.into_response();
        }
        let status = match &self {
            ProxyError::Denied(_) => unreachable!("answered above"),
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::Uncountable => StatusCode::BAD_REQUEST,
            ProxyError::NotYourSession => StatusCode::NOT_FOUND,
            ProxyError::UpstreamCredential { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::NotAllowed(_) => StatusCode::FORBIDDEN,
            ProxyError::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::RequestRead(_) => StatusCode::BAD_REQUEST,
            ProxyError::RequestNotText => StatusCode::BAD_REQUEST,
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamResponse { .. } => StatusCode::BAD_GATEWAY,
        };
        let message = match request {
            Some(id) => format!("sluice: {} (request {id})", self.public_message()),
            None => format!("sluice: {}", self.public_message()),
        };
        let rpc_body = match &self {
            ProxyError::Upstream { request, .. }
            | ProxyError::UpstreamResponse { request, .. }
            | ProxyError::UpstreamCredential { request, .. } => {
                request.error_body(jsonrpc::UPSTREAM_FAILED, &message)
            }
            ProxyError::RateLimited { request, .. } => {
                request.error_body(jsonrpc::RATE_LIMITED, &message)
            }
            ProxyError::Denied(_)
            | ProxyError::Uncountable
            | ProxyError::NotYourSession
            | ProxyError::NotAllowed(_)
            | ProxyError::RequestTooLarge { .. }
            | ProxyError::RequestRead(_)
            | ProxyError::RequestNotText => None,
        };
        let (content_type, body) = match rpc_body {
            Some(body) => ("application/json", body),
            None => ("text/plain; charset=utf-8", Bytes::from(message + "\n")),
        };
        let mut response = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type);
        if let ProxyError::RateLimited { limited, .. } = &self {
            // Whole seconds, rounded up: a client that waits this long gets a token.
            let secs = crate::auth::limit::retry_after_secs(limited.retry_after);
            response = response.header(header::RETRY_AFTER, secs);
        }
        response
            .body(full(body))
            .expect("static status and header form a valid response")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_failures_are_described_by_a_fixed_text_and_the_request_id() {
        let leaky = "http://10.1.2.3:8443/private unreachable: Connection refused (os error 111)";
        let error = ProxyError::UpstreamResponse {
            reason: Unusable::ContentType(leaky.into()),
            request: Summary::of(br#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#),
        };
        assert!(
            crate::error_chain::ErrorChain(&error)
                .to_string()
                .contains("10.1.2.3"),
            "the log keeps the reason"
        );
        let response = error.into_response_for(41);
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let body = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(
            response.into_body(),
        ))
        .unwrap()
        .unwrap()
        .to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            !body.contains("10.1.2.3") && !body.contains("os error"),
            "{body}"
        );
        assert!(body.contains("(request 41)"), "{body}");
        assert!(body.contains(r#""id":3"#), "{body}");
    }
}
