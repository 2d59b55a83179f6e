//! Which headers cross the proxy: end-to-end headers pass unchanged (including
//! `Mcp-Session-Id`, `MCP-Protocol-Version`, `Last-Event-ID`); hop-by-hop headers stop
//! here (RFC 9110 §7.6.1).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(named.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Headers for the upstream request: hop-by-hop removed, `Host` left to the client
/// (it names the upstream), the body length recomputed (a plugin may have changed the
/// body), and compression refused so that the proxy can read every event.
pub fn for_upstream(mut headers: HeaderMap) -> HeaderMap {
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    headers
}

/// Headers for the client response: hop-by-hop removed. The caller drops
/// `Content-Length` when it re-encodes the body (hyper sets it again for bodies of known
/// size); a body streamed unchanged keeps it.
pub fn for_client(mut headers: HeaderMap) -> HeaderMap {
    strip_hop_by_hop(&mut headers);
    headers
}

/// After a plugin rewrote a request body: the 2026-07-28 routing headers (`Mcp-Method`,
/// `Mcp-Name`) must describe the body the server gets, or a server that checks them
/// (rmcp does) refuses the request as inconsistent. Only requests that carried
/// `Mcp-Method` are touched; `Mcp-Param-*` headers depend on the tool's schema, which
/// the proxy does not know, and are left as they are.
pub fn sync_mcp_routing(headers: &mut HeaderMap, body: &[u8]) {
    if !headers.contains_key(MCP_METHOD) {
        return;
    }
    let Ok(message) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let Some(method) = message.get("method").and_then(|m| m.as_str()) else {
        return;
    };
    if let Ok(value) = HeaderValue::from_str(method) {
        headers.insert(MCP_METHOD, value);
    }
    let key = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
        "tasks/get" | "tasks/update" | "tasks/cancel" => "taskId",
        _ => {
            headers.remove(MCP_NAME);
            return;
        }
    };
    match message
        .pointer(&format!("/params/{key}"))
        .and_then(|v| v.as_str())
        .and_then(|name| HeaderValue::from_str(&routing_value(name)).ok())
    {
        Some(value) => {
            headers.insert(MCP_NAME, value);
        }
        None => {
            headers.remove(MCP_NAME);
        }
    }
}

const MCP_METHOD: &str = "mcp-method";
const MCP_NAME: &str = "mcp-name";

/// A routing header value as SEP-2243 writes it: as is, or `=?base64?...?=` when it
/// could not travel as a bare header value.
fn routing_value(value: &str) -> String {
    use base64::Engine;
    let needs_base64 = value.starts_with([' ', '\t'])
        || value.ends_with([' ', '\t'])
        || value
            .chars()
            .any(|c| (c as u32) < 0x20 || (c as u32) > 0x7e)
        || (value.starts_with("=?base64?") && value.ends_with("?="));
    if needs_base64 {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    } else {
        value.to_string()
    }
}

/// Headers for an SSE response: every event must reach the client when it is sent. An
/// upstream that forgot `Cache-Control: no-cache` gets one (a cache between the proxy
/// and the client would hold events back), and `X-Accel-Buffering: no` tells an nginx in
/// front of the proxy not to buffer the stream.
pub fn for_sse(headers: &mut HeaderMap) {
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache"));
    headers
        .entry(HeaderName::from_static("x-accel-buffering"))
        .or_insert(HeaderValue::from_static("no"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_stop_and_end_to_end_headers_pass() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::HOST, HeaderValue::from_static("proxy:8080"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        h.insert("mcp-session-id", HeaderValue::from_static("abc"));
        h.insert(
            "mcp-protocol-version",
            HeaderValue::from_static("2025-06-18"),
        );
        h.insert("last-event-id", HeaderValue::from_static("42"));
        let out = for_upstream(h);
        for gone in [
            "connection",
            "x-private",
            "keep-alive",
            "transfer-encoding",
            "host",
            "content-length",
        ] {
            assert!(!out.contains_key(gone), "{gone} should be removed");
        }
        assert_eq!(out["accept-encoding"], "identity");
        assert_eq!(out["mcp-session-id"], "abc");
        assert_eq!(out["mcp-protocol-version"], "2025-06-18");
        assert_eq!(out["last-event-id"], "42");
    }

    #[test]
    fn routing_headers_follow_a_rewritten_body() {
        let mut h = HeaderMap::new();
        h.insert("mcp-method", HeaderValue::from_static("tools/call"));
        h.insert("mcp-name", HeaderValue::from_static("get_secret"));
        sync_mcp_routing(
            &mut h,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"[REDACTED]"}}"#,
        );
        assert_eq!(h["mcp-name"], "[REDACTED]");
        sync_mcp_routing(
            &mut h,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"caf\u00e9"}}"#,
        );
        assert_eq!(h["mcp-name"], "=?base64?Y2Fmw6k=?=");
        sync_mcp_routing(&mut h, br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
        assert_eq!(h["mcp-method"], "tools/list");
        assert!(!h.contains_key("mcp-name"));
        // Requests without routing headers (older revisions) are left alone.
        let mut old = HeaderMap::new();
        sync_mcp_routing(
            &mut old,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
        );
        assert!(old.is_empty());
    }
}
