//! The legacy HTTP+SSE transport (MCP 2024-11-05): the client GETs an SSE stream whose
//! first event, `endpoint`, carries the URL to POST messages to; responses come back on
//! the stream. The messages are ordinary POSTs and the stream an ordinary SSE response,
//! so the proxy handles both like Streamable HTTP. The one thing to change is the URL in
//! the `endpoint` event: it must lead the client to the proxy, not around it.

use crate::sse::Event;

/// Points an `endpoint` event at the proxy.
#[derive(Debug, Clone)]
pub struct EndpointRewrite {
    /// The upstream's `host:port`: an absolute URL naming it is rewritten.
    upstream_authority: String,
    /// The upstream base URL's path, which the client's paths do not include.
    upstream_prefix: String,
    /// `http://` and the `Host` the client used to reach the proxy.
    client_base: String,
}

impl EndpointRewrite {
    /// A rewrite for a stream the client opened through `client_host` (its `Host`).
    pub fn new(upstream_authority: &str, upstream_prefix: &str, client_host: &str) -> Self {
        Self {
            upstream_authority: upstream_authority.to_string(),
            upstream_prefix: upstream_prefix.to_string(),
            client_base: format!("http://{client_host}"),
        }
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
            return self.client_path(url).to_string();
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.to_string(); // relative to the stream's URL: still right
        };
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if !authority.eq_ignore_ascii_case(&self.upstream_authority) {
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

    /// An upstream path as the client addresses it: without the base URL's path.
    fn client_path<'a>(&self, path: &'a str) -> &'a str {
        match path.strip_prefix(self.upstream_prefix.as_str()) {
            Some(rest) if !self.upstream_prefix.is_empty() && rest.starts_with(['/', '?']) => rest,
            _ => path,
        }
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

    #[test]
    fn relative_paths_stay_relative_and_absolute_urls_get_the_proxy_origin() {
        let r = EndpointRewrite::new("127.0.0.1:8000", "", "127.0.0.1:9090");
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
        let r = EndpointRewrite::new("up:8000", "/api", "localhost:9090");
        assert_eq!(rewritten(&r, "/api/messages?s=1"), "/messages?s=1");
        assert_eq!(
            rewritten(&r, "http://up:8000/api/messages?s=1"),
            "http://localhost:9090/messages?s=1"
        );
        assert_eq!(rewritten(&r, "/apiary"), "/apiary", "only whole segments");
    }

    #[test]
    fn other_events_are_untouched() {
        let r = EndpointRewrite::new("127.0.0.1:8000", "", "127.0.0.1:9090");
        let mut event = Event::message("http://127.0.0.1:8000/x");
        r.apply(&mut event);
        assert_eq!(event.data_str(), "http://127.0.0.1:8000/x");
    }
}
