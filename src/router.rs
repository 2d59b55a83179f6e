//! Several upstreams behind one listener (`[[route]]`s of the config file): a request
//! goes to the route whose host matches, else whose path prefix is the longest match,
//! with the prefix taken off its path; anything else goes to the default upstream, or
//! is answered 404. Each route is a whole [`Proxy`] (its upstream, its chain hot-swapped
//! on its own), so the data path after this choice is the same for every route.

use std::sync::Arc;

use http::{Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;

use crate::http::{Handler, ProxyBody, RoutePrefix, full, request_host};
use crate::mcp::jsonrpc;
use crate::metrics::Metrics;
use crate::proxy::Proxy;

/// One route: which requests, and the proxy that serves them.
pub struct Route {
    /// Its name (logs, metrics).
    pub name: String,
    /// The path prefix it takes (`/github`), if any.
    pub prefix: Option<String>,
    /// The host it takes (lower case, no port), if any.
    pub host: Option<String>,
    /// The proxy for its upstream and chain.
    pub proxy: Arc<Proxy>,
}

/// Picks the proxy for each request.
pub struct Router {
    routes: Vec<Route>,
    default: Option<Arc<Proxy>>,
    metrics: Arc<Metrics>,
}

impl Router {
    /// Routes first, then `default` (if any) for what none of them takes.
    pub fn new(routes: Vec<Route>, default: Option<Arc<Proxy>>, metrics: Arc<Metrics>) -> Self {
        Self {
            routes,
            default,
            metrics,
        }
    }

    /// The routes.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for a request to `host` (as sent, maybe with a port) and `path`, and
    /// how many leading bytes of the path are its prefix.
    pub fn pick(&self, host: Option<&str>, path: &str) -> Option<(&Route, usize)> {
        let host = host.map(|h| strip_port(h).to_ascii_lowercase());
        self.routes
            .iter()
            .filter_map(|route| {
                if route.host.is_some() && route.host != host {
                    return None;
                }
                let strip = match &route.prefix {
                    None => 0,
                    Some(prefix)
                        if path == prefix
                            || (path.starts_with(prefix.as_str())
                                && path.as_bytes().get(prefix.len()) == Some(&b'/')) =>
                    {
                        prefix.len()
                    }
                    Some(_) => return None,
                };
                // A host match beats a prefix alone; then the longest prefix.
                Some(((route.host.is_some(), strip), route, strip))
            })
            .max_by_key(|(rank, _, _)| *rank)
            .map(|(_, route, strip)| (route, strip))
    }

    async fn route(&self, mut request: Request<Incoming>) -> Response<ProxyBody> {
        let host = request_host(&request);
        let path = request.uri().path().to_string();
        // A route's protected-resource metadata lives outside its prefix (RFC 9728
        // puts the well-known segment first): its proxy answers it whole.
        // Only GET, and a host route only for its host: two host routes may serve
        // resources with the same path.
        let host_name = host.as_deref().map(|h| strip_port(h).to_ascii_lowercase());
        if path.starts_with("/.well-known/")
            && request.method() == http::Method::GET
            && let Some(proxy) = self
                .routes
                .iter()
                .filter(|r| r.host.is_none() || r.host == host_name)
                .map(|r| &r.proxy)
                .chain(self.default.as_ref())
                .find(|p| p.access().metadata_for(&path).is_some())
        {
            return proxy.handle(request).await;
        }
        let Some((route, strip)) = self.pick(host.as_deref(), &path) else {
            return match &self.default {
                Some(proxy) => proxy.handle(request).await,
                None => not_routed(&path),
            };
        };
        self.metrics.route_request(&route.name);
        if strip > 0 {
            let rest = &path[strip..];
            let rest = if rest.is_empty() { "/" } else { rest };
            let path_and_query = match request.uri().query() {
                Some(query) => format!("{rest}?{query}"),
                None => rest.to_string(),
            };
            let mut parts = request.uri().clone().into_parts();
            parts.path_and_query = path_and_query.parse().ok();
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
                request
                    .extensions_mut()
                    .insert(RoutePrefix(path[..strip].to_string()));
            }
        }
        route.proxy.handle(request).await
    }
}

impl Handler for Router {
    fn handle(
        &self,
        request: Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<ProxyBody>> + Send {
        self.route(request)
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..=h.len()]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn not_routed(path: &str) -> Response<ProxyBody> {
    tracing::debug!(
        path,
        "no route takes this request, and there is no default upstream"
    );
    let error = jsonrpc::error(
        &jsonrpc::RequestId::null(),
        jsonrpc::INVALID_REQUEST,
        &format!("sluice: no route for {path}"),
    );
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(error.get().to_string()))
        .expect("static parts form a valid response")
}
