//! The legacy HTTP+SSE transport (MCP 2024-11-05): the client GETs an SSE stream whose
//! first event, `endpoint`, carries the URL to POST messages to; responses come back on
//! the stream. The messages are ordinary POSTs and the stream an ordinary SSE response,
//! so the proxy handles both like Streamable HTTP. The one thing to change is the URL in
//! the `endpoint` event: it must lead the client to the proxy, not around it.

use http::Uri;
use http::uri::Authority;

use crate::sse::Event;

/// Points an `endpoint` event at the proxy.
#[derive(Debug, Clone)]
pub struct EndpointRewrite {
    /// The upstream's origin (scheme, host, port): an absolute URL naming it is
    /// rewritten.
    upstream_origin: Origin,
    /// The upstream base URL's path, which the client's paths do not include.
    upstream_prefix: String,
    /// The scheme and the `Host` the client used to reach the proxy.
    client_base: String,
    /// The path prefix the client's requests had before the proxy took it off (a
    /// `[[route]]`'s), put back in front of the paths it is given.
    client_prefix: String,
}

/// A URL's origin, its port made explicit: `https://h` and `https://h:443` are one
/// server, `http://h:443` and `https://h:443` are not.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn new(scheme: &str, authority: &str) -> Option<Self> {
        let authority: Authority = authority.parse().ok()?;
        let scheme = scheme.to_ascii_lowercase();
        let port = authority.port_u16().or(match scheme.as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        });
        Some(Self {
            host: authority.host().to_ascii_lowercase(),
            scheme,
            port,
        })
    }
}

impl EndpointRewrite {
    /// A rewrite for a stream of the upstream at `upstream_base` that the client opened
    /// over `client_scheme` (`http` or `https`, as the listener speaks) through
    /// `client_host` (its `Host`).
    pub fn new(upstream_base: &Uri, client_scheme: &str, client_host: &str) -> Self {
        let upstream_origin = Origin::new(
            upstream_base.scheme_str().unwrap_or("http"),
            upstream_base.authority().map_or("", Authority::as_str),
        )
        .unwrap_or(Origin {
            scheme: String::new(),
            host: String::new(),
            port: None,
        });
        Self {
            upstream_origin,
            upstream_prefix: upstream_base.path().trim_end_matches('/').to_string(),
            client_base: format!("{client_scheme}://{client_host}"),
            client_prefix: String::new(),
        }
    }

    /// The client reached this upstream under `prefix` (a route's, which the proxy took
    /// off): endpoints the client is given start with it again.
    pub fn with_client_prefix(mut self, prefix: &str) -> Self {
        self.client_prefix = prefix.trim_end_matches('/').to_string();
        self
    }

    /// Rewrites `event` in place if it is an `endpoint` event. A relative URL stays
    /// relative (the client resolves it against the proxy's URL it connected to), with
    /// the upstream's base path taken off; an absolute URL naming the upstream gets the
    /// proxy's origin. A URL pointing anywhere else is left alone, and logged.
    /// Returns whether the event changed.
    pub fn apply(&self, event: &mut Event) -> bool {
        if event.event.as_deref() != Some("endpoint") {
            return false;
        }
        let Some(data) = event.data.as_deref() else {
            return false;
        };
        let rewritten = self.rewrite(data.trim());
        if rewritten == data {
            return false;
        }
        tracing::debug!(from = data, to = %rewritten, "legacy SSE endpoint rewritten");
        event.data = Some(rewritten);
        true
    }

    fn rewrite(&self, url: &str) -> String {
        if url.starts_with('/') {
            return self.client_path(url);
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.to_string(); // relative to the stream's URL: still right
        };
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if Origin::new(scheme, authority).as_ref() != Some(&self.upstream_origin) {
            tracing::warn!(
                endpoint = url,
                scheme,
                "legacy SSE endpoint names another server; clients will bypass the proxy"
            );
            return url.to_string();
        }
        let path = if path.is_empty() { "/" } else { path };
        format!("{}{}", self.client_base, self.client_path(path))
    }

    /// An upstream path as the client addresses it: without the base URL's path, with
    /// the client's route prefix.
    fn client_path(&self, path: &str) -> String {
        let path = match path.strip_prefix(self.upstream_prefix.as_str()) {
            Some(rest) if !self.upstream_prefix.is_empty() && rest.starts_with(['/', '?']) => rest,
            _ => path,
        };
        format!("{}{path}", self.client_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(data: &str) -> Event {
        Event {
            event: Some("endpoint".into()),
            data: Some(data.into()),
            ..Event::default()
        }
    }

    fn rewritten(rewrite: &EndpointRewrite, data: &str) -> String {
        let mut event = endpoint(data);
        rewrite.apply(&mut event);
        event.data.unwrap()
    }

    fn rewrite(upstream: &str, client_scheme: &str, client_host: &str) -> EndpointRewrite {
        EndpointRewrite::new(&upstream.parse().unwrap(), client_scheme, client_host)
    }

    #[test]
    fn relative_paths_stay_relative_and_absolute_urls_get_the_proxy_origin() {
        let r = rewrite("http://127.0.0.1:8000", "http", "127.0.0.1:9090");
        assert_eq!(
            rewritten(&r, "/messages/?session_id=abc"),
            "/messages/?session_id=abc"
        );
        assert_eq!(
            rewritten(&r, "http://127.0.0.1:8000/message?sessionId=1"),
            "http://127.0.0.1:9090/message?sessionId=1"
        );
        assert_eq!(rewritten(&r, "messages?x=1"), "messages?x=1");
        assert_eq!(
            rewritten(&r, "http://other:1/m"),
            "http://other:1/m",
            "foreign endpoints are not hijacked"
        );
    }

    #[test]
    fn the_upstream_base_path_is_taken_off() {
        let r = rewrite("http://up:8000/api/", "http", "localhost:9090");
        assert_eq!(rewritten(&r, "/api/messages?s=1"), "/messages?s=1");
        assert_eq!(
            rewritten(&r, "http://up:8000/api/messages?s=1"),
            "http://localhost:9090/messages?s=1"
        );
        assert_eq!(rewritten(&r, "/apiary"), "/apiary", "only whole segments");
    }

    #[test]
    fn a_route_prefix_the_client_used_comes_back_in_front() {
        let r =
            rewrite("http://up:8000/api", "http", "localhost:9090").with_client_prefix("/legacy");
        assert_eq!(rewritten(&r, "/api/messages?s=1"), "/legacy/messages?s=1");
        assert_eq!(
            rewritten(&r, "http://up:8000/api/messages?s=1"),
            "http://localhost:9090/legacy/messages?s=1"
        );
        assert_eq!(
            rewritten(&r, "messages?x=1"),
            "messages?x=1",
            "relative: still right"
        );
    }

    #[test]
    fn an_https_upstream_is_matched_by_its_origin_and_the_client_keeps_its_scheme() {
        let r = rewrite("https://Up.Example/api", "https", "proxy:8443");
        for same in [
            "https://up.example/api/messages?s=1",
            "https://up.example:443/api/messages?s=1",
            "HTTPS://UP.EXAMPLE/api/messages?s=1",
        ] {
            assert_eq!(
                rewritten(&r, same),
                "https://proxy:8443/messages?s=1",
                "{same}"
            );
        }
        for other in [
            "http://up.example/api/messages",
            "http://up.example:443/api/messages",
            "https://up.example:8443/api/messages",
            "https://evil.example/api/messages",
        ] {
            assert_eq!(rewritten(&r, other), other, "another origin: {other}");
        }
        // A plain listener in front of an HTTPS upstream: the client stays on http.
        let plain = rewrite("https://up.example:8443", "http", "127.0.0.1:9090");
        assert_eq!(
            rewritten(&plain, "https://up.example:8443/m?s=1"),
            "http://127.0.0.1:9090/m?s=1"
        );
        // And the other way round: the scheme of the endpoint must be the upstream's.
        let http = rewrite("http://127.0.0.1:8000", "https", "localhost:9443");
        assert_eq!(
            rewritten(&http, "https://127.0.0.1:8000/m"),
            "https://127.0.0.1:8000/m"
        );
        assert_eq!(
            rewritten(&http, "http://127.0.0.1:8000/m"),
            "https://localhost:9443/m"
        );
    }

    #[test]
    fn other_events_are_untouched() {
        let r = rewrite("http://127.0.0.1:8000", "http", "127.0.0.1:9090");
        let mut event = Event::message("http://127.0.0.1:8000/x");
        r.apply(&mut event);
        assert_eq!(event.data_str(), "http://127.0.0.1:8000/x");
    }
}
