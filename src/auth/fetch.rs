//! The one way sluice talks to an authorization server: small JSON documents (a JWKS,
//! metadata, an introspection or token-exchange answer), over HTTPS with the
//! upstream's trust settings, each with a time and size limit. Plain `http://` is only
//! for loopback (a test authorization server, a sidecar).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

use crate::tls::{self, UpstreamTls};

/// Longest answer read from an authorization server (a JWKS of many RSA keys fits).
const MAX_ANSWER_BYTES: usize = 256 << 10;

/// How long one call may take, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to the authorization server failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL cannot be used.
    #[error("{url}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: &'static str,
    },
    /// The TLS settings could not be loaded.
    #[error("TLS: {0}")]
    Tls(#[source] tls::TlsError),
    /// No answer (connection refused, reset, TLS failure).
    #[error("{url}: unreachable: {source}")]
    Unreachable {
        /// The URL.
        url: String,
        /// The cause.
        source: hyper_util::client::legacy::Error,
    },
    /// No answer in time.
    #[error("{url}: no answer within {}s", CALL_TIMEOUT.as_secs())]
    Timeout {
        /// The URL.
        url: String,
    },
    /// An answer other than 200.
    #[error("{url}: answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: StatusCode,
    },
    /// The answer's body could not be read, or is larger than the limit.
    #[error("{url}: cannot read the answer (over {MAX_ANSWER_BYTES} bytes, or broken)")]
    Body {
        /// The URL.
        url: String,
    },
    /// The answer is not the JSON expected.
    #[error("{url}: the answer is not the JSON expected: {source}")]
    Json {
        /// The URL.
        url: String,
        /// The cause.
        source: serde_json::Error,
    },
}

/// Checks an authorization-server URL: `https://`, or `http://` to a loopback host.
pub fn check_url(url: &str) -> Result<Uri, FetchError> {
    let bad = |reason| FetchError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback(host) => Ok(uri),
        Some("http") => Err(bad(
            "must be https:// (plain http:// only to a loopback address)",
        )),
        _ => Err(bad("must be an https:// URL")),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A pooled client for authorization-server calls; cheap to clone.
#[derive(Clone, Debug)]
pub struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Fetcher {
    /// A client trusting what the upstream's TLS settings trust.
    pub fn new(upstream_tls: &UpstreamTls) -> Result<Self, FetchError> {
        // The client certificate is the upstream's, not the authorization server's.
        let trust = UpstreamTls {
            ca: upstream_tls.ca.clone(),
            ..UpstreamTls::default()
        };
        let config = tls::client_config(&trust).map_err(FetchError::Tls)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// `GET url`, read as JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &Uri) -> Result<T, FetchError> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(url.clone())
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .expect("a checked URI and static headers form a request");
        self.call(url, request).await
    }

    /// `POST url` with a form body (`application/x-www-form-urlencoded`), and HTTP
    /// Basic client authentication when `basic` is given (RFC 6749 §2.3.1: both
    /// parts form-encoded first).
    pub async fn post_form<T: DeserializeOwned>(
        &self,
        url: &Uri,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<T, FetchError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(url.clone())
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some((user, password)) = basic {
            use base64::Engine as _;
            let encode =
                |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", encode(user), encode(password));
            let value = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            );
            request = request.header(header::AUTHORIZATION, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .expect("a checked URI and encoded headers form a request");
        self.call(url, request).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        url: &Uri,
        request: Request<Full<Bytes>>,
    ) -> Result<T, FetchError> {
        let name = || url.to_string();
        let answer =
            async {
                let response = self.client.request(request).await.map_err(|source| {
                    FetchError::Unreachable {
                        url: name(),
                        source,
                    }
                })?;
                if response.status() != StatusCode::OK {
                    return Err(FetchError::Status {
                        url: name(),
                        status: response.status(),
                    });
                }
                Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                    .collect()
                    .await
                    .map(|body| body.to_bytes())
                    .map_err(|_| FetchError::Body { url: name() })
            };
        let body = tokio::time::timeout(CALL_TIMEOUT, answer)
            .await
            .map_err(|_| FetchError::Timeout { url: name() })??;
        serde_json::from_slice(&body).map_err(|source| FetchError::Json {
            url: name(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_only_for_loopback() {
        assert!(check_url("https://idp.example.com/jwks").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://[::1]:8080/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        assert!(check_url("http://idp.example.com/jwks").is_err());
        assert!(check_url("ftp://idp.example.com/jwks").is_err());
        assert!(check_url("jwks").is_err());
    }
}
