//! The outgoing HTTP transport: a pooled hyper-util client bound to one base URL, over
//! plain TCP or TLS (hyper-rustls; HTTP/2 when the server offers it by ALPN).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::UpstreamBody;
use super::error::UpstreamError;
use crate::http::workers;
use crate::tls::{self, TlsError, UpstreamTls};

/// How long to wait for a TCP connection to the upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most an upstream HTTP/1.1 connection's read buffer grows to.
const UPSTREAM_READ_BUFFER: usize = 32 << 10;

/// The one way to reach the upstream server. Requests carry only a path and query; the
/// base URL's scheme, authority and path prefix are applied here.
#[derive(Clone, Debug)]
pub struct Http {
    /// One pool per connection worker (`http::workers`), and one for every other
    /// thread: a pooled connection is driven by the worker that opened it, so it is
    /// reused by that worker's streams only.
    clients: Arc<[Client<HttpsConnector<HttpConnector>, Full<Bytes>>]>,
    scheme: Scheme,
    authority: Authority,
    /// The base URL's path without a trailing slash ("" for the root).
    prefix: String,
    /// The base URL as given (scheme, authority, path).
    base: Uri,
}

impl Http {
    /// A client for `base`, e.g. `http://127.0.0.1:8000` or `https://host/api`; an
    /// `https://` base trusts the system's roots.
    pub fn new(base: &str) -> Result<Self, UpstreamError> {
        Self::with_tls(base, &UpstreamTls::default())
    }

    /// A client for `base`; an `https://` base trusts and authenticates as `tls` says
    /// (TLS settings for an `http://` base are refused: they would do nothing).
    pub fn with_tls(base: &str, tls: &UpstreamTls) -> Result<Self, UpstreamError> {
        let invalid = |reason| UpstreamError::InvalidUrl {
            url: base.to_string(),
            reason,
        };
        let uri: Uri = base
            .parse()
            .map_err(|source| UpstreamError::UnparsableUrl {
                url: base.to_string(),
                source,
            })?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| invalid("missing scheme (http:// or https://)"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(invalid("only http:// and https:// upstreams are supported"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| invalid("missing host"))?;
        if uri.query().is_some() {
            return Err(invalid("a base URL cannot have a query"));
        }
        let prefix = uri.path().trim_end_matches('/').to_string();
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        // The TLS layer below decides per URI: `https` is wrapped, `http` passes.
        connector.enforce_http(false);
        let config = if scheme == Scheme::HTTPS {
            tls::client_config(tls)?
        } else if tls.is_default() {
            // Never used (every URI of this client is http://), but the connector
            // type is one for both schemes; no trust store is read for it.
            no_tls()?
        } else {
            return Err(TlsError::NotHttps {
                upstream: base.to_string(),
            }
            .into());
        };
        // SNI names the URI's host (none for an IP address, as RFC 6066 wants), and
        // the certificate is checked against it; `Host` is set from the same URI.
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(Duration::from_secs(90))
            // hyper grows a connection's read buffer while reads fill it, up to about
            // 400 KiB by default: every fast stream would keep that much (1 000 fast
            // streams: 400 MiB). Capped, a read still carries a hundred small events.
            // The cap bounds the response head too: an upstream's headers over
            // 32 KiB are refused (nginx's default allows 4 or 8 KiB).
            .http1_max_buf_size(UPSTREAM_READ_BUFFER);
        let clients = (0..=workers::installed())
            .map(|_| builder.build(connector.clone()))
            .collect();
        Ok(Self {
            clients,
            scheme,
            authority,
            prefix,
            base: uri,
        })
    }

    /// The upstream URI for a client request's path and query: the request path is
    /// appended to the base URL's path.
    pub fn uri_for(&self, path_and_query: Option<&PathAndQuery>) -> Uri {
        let pq = path_and_query.map_or("/", PathAndQuery::as_str);
        let joined = format!("{}{}", self.prefix, pq);
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(joined)
            .build()
            .expect("scheme, authority and an already valid path form a valid URI")
    }

    /// The base URL's path, without a trailing slash ("" for the root): the part of an
    /// upstream path the client does not see.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The upstream's `host:port`, for logs and the `Host` header.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The base URL (scheme, authority, path), as a legacy `endpoint` event names it.
    pub fn base(&self) -> &Uri {
        &self.base
    }

    /// Sends a request whose URI was made by [`Http::uri_for`]; the response body
    /// streams.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let uri = request.uri().to_string();
        let client = &self.clients[workers::current().min(self.clients.len() - 1)];
        let response = client
            .request(request)
            .await
            .map_err(|source| UpstreamError::Unreachable { uri, source })?;
        Ok(response.map(|body: Incoming| body.map_err(Into::into).boxed_unsync()))
    }
}

/// A client configuration with nothing to trust, for the connector of a plain-HTTP
/// upstream.
fn no_tls() -> Result<rustls::ClientConfig, TlsError> {
    Ok(rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_are_appended_to_the_base_path() {
        let pq = |s: &str| Some(s.parse::<PathAndQuery>().unwrap());
        let root = Http::new("http://127.0.0.1:8000").unwrap();
        assert_eq!(
            root.uri_for(pq("/mcp?x=1").as_ref()).to_string(),
            "http://127.0.0.1:8000/mcp?x=1"
        );
        let nested = Http::new("http://127.0.0.1:8000/api/").unwrap();
        assert_eq!(
            nested.uri_for(pq("/mcp").as_ref()).to_string(),
            "http://127.0.0.1:8000/api/mcp"
        );
        assert_eq!(
            nested.uri_for(None).to_string(),
            "http://127.0.0.1:8000/api/"
        );
    }

    #[tokio::test]
    async fn an_unreachable_upstream_keeps_the_os_error_beneath_it() {
        // A port nobody listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let http = Http::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let request = Request::get(http.uri_for(None))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let err = http.send(request).await.unwrap_err();
        let chain = crate::error_chain::ErrorChain(&err).to_string();
        assert!(
            chain.starts_with(&format!("upstream http://127.0.0.1:{port}/ unreachable: ")),
            "{chain}"
        );
        let refused = std::iter::successors(std::error::Error::source(&err), |e| e.source())
            .find_map(|e| e.downcast_ref::<std::io::Error>())
            .map(std::io::Error::kind);
        assert_eq!(
            refused,
            Some(std::io::ErrorKind::ConnectionRefused),
            "{chain}"
        );
    }

    #[test]
    fn unusable_base_urls_are_refused_with_a_reason() {
        for (url, reason) in [
            ("127.0.0.1:8000", "scheme"),
            ("ftp://example.com", "only http:// and https://"),
            ("http://h/p?q=1", "query"),
            ("http://", "invalid"),
        ] {
            let err = Http::new(url).unwrap_err().to_string();
            assert!(
                err.contains(reason) || err.contains("invalid"),
                "{url}: {err}"
            );
        }
    }

    #[test]
    fn tls_settings_for_a_plain_upstream_are_refused() {
        let tls = UpstreamTls {
            ca: Some("/etc/sluice/ca.pem".into()),
            ..UpstreamTls::default()
        };
        let err = Http::with_tls("http://127.0.0.1:8000", &tls)
            .unwrap_err()
            .to_string();
        assert!(err.contains("apply to an https:// upstream"), "{err}");
    }
}
