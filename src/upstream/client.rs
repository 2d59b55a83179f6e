//! The outgoing HTTP transport: a pooled hyper-util client bound to one base URL.

use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::error::UpstreamError;

/// How long to wait for a TCP connection to the upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The one way to reach the upstream server. Requests carry only a path and query; the
/// base URL's scheme, authority and path prefix are applied here.
#[derive(Clone, Debug)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    scheme: Scheme,
    authority: Authority,
    /// The base URL's path without a trailing slash ("" for the root).
    prefix: String,
}

impl Http {
    /// A client for `base`, e.g. `http://127.0.0.1:8000` or `http://host/api`.
    pub fn new(base: &str) -> Result<Self, UpstreamError> {
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
            .ok_or_else(|| invalid("missing scheme (http://)"))?;
        if scheme != Scheme::HTTP {
            return Err(invalid("only http:// upstreams are supported"));
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
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(Self {
            client,
            scheme,
            authority,
            prefix,
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

    /// Sends a request whose URI was made by [`Http::uri_for`]; the response body
    /// streams.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let uri = request.uri().to_string();
        self.client
            .request(request)
            .await
            .map_err(|source| UpstreamError::Unreachable { uri, source })
    }
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
            ("https://example.com", "only http://"),
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
}
