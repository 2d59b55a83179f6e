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
/// `Mcp-Name`, `Mcp-Param-*`) must describe the body the server gets, or a server that
/// checks them (rmcp does) refuses the request as inconsistent. Only requests that
/// carried `Mcp-Method` are touched. `received` is the body the client sent, which
/// tells which argument each `Mcp-Param-*` header mirrors ([`sync_param_headers`]).
pub fn sync_mcp_routing(headers: &mut HeaderMap, received: &[u8], body: &[u8]) {
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
    let name = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
    .and_then(|key| message.pointer(&format!("/params/{key}")))
    .and_then(|v| v.as_str())
    .and_then(|name| HeaderValue::from_str(&routing_value(name)).ok());
    match name {
        Some(value) => {
            headers.insert(MCP_NAME, value);
        }
        None => {
            headers.remove(MCP_NAME);
        }
    }
    sync_param_headers(headers, received, &message);
}

/// `Mcp-Param-{Name}` headers mirror the `tools/call` arguments that the tool's schema
/// marks with `x-mcp-header`. The proxy does not have the schema, so it finds each
/// header's argument in the body the client sent: the one argument (a string, number
/// or boolean, reached through objects only, as the annotation must be) whose value the
/// header carries. When exactly one matches, the header is set from the same argument
/// of the rewritten body, and removed when that argument is gone or `null` (as a client
/// omits it); when none or several match, the header stays as the client sent it. A
/// body that is no longer a `tools/call` keeps none.
fn sync_param_headers(headers: &mut HeaderMap, received: &[u8], sent: &serde_json::Value) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(MCP_PARAM))
        .cloned()
        .collect();
    if names.is_empty() {
        return;
    }
    if sent.get("method").and_then(|m| m.as_str()) != Some("tools/call") {
        for name in names {
            headers.remove(name);
        }
        return;
    }
    // The client's body is read again only here: a rewritten `tools/call` whose
    // request mirrored arguments in headers.
    let received = serde_json::from_slice::<serde_json::Value>(received).ok();
    let before = received
        .as_ref()
        .and_then(|r| r.pointer("/params/arguments"));
    let after = sent.pointer("/params/arguments");
    for name in names {
        let Some(carried) = headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .and_then(decoded_routing_value)
        else {
            continue;
        };
        let mut paths = Vec::new();
        if let Some(before) = before {
            argument_paths(before, &mut Vec::new(), &carried, &mut paths);
        }
        let [path] = paths.as_slice() else {
            continue;
        };
        let now = path
            .iter()
            .fold(after, |at, key| at.and_then(|a| a.get(*key)))
            .and_then(header_text)
            .and_then(|text| HeaderValue::from_str(&routing_value(&text)).ok());
        match now {
            Some(value) => {
                headers.insert(name, value);
            }
            None => {
                headers.remove(name);
            }
        }
    }
}

/// Collects the paths (object keys from `arguments`) of every argument whose header
/// text is `carried`.
fn argument_paths<'a>(
    value: &'a serde_json::Value,
    at: &mut Vec<&'a str>,
    carried: &str,
    found: &mut Vec<Vec<&'a str>>,
) {
    match value {
        serde_json::Value::Object(fields) => {
            for (key, field) in fields {
                at.push(key);
                argument_paths(field, at, carried, found);
                at.pop();
            }
        }
        leaf => {
            if !at.is_empty() && header_text(leaf).as_deref() == Some(carried) {
                found.push(at.clone());
            }
        }
    }
}

/// An argument as a `Mcp-Param-*` header carries it (before the Base64 wrapping): a
/// string as it is, a boolean as `true`/`false`, a number in decimal; nothing for
/// `null`, arrays and objects.
fn header_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A routing header's value as the client meant it: `=?base64?...?=` unwrapped.
fn decoded_routing_value(value: &str) -> Option<String> {
    use base64::Engine;
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok()),
        None => Some(value.to_string()),
    }
}

const MCP_METHOD: &str = "mcp-method";
const MCP_NAME: &str = "mcp-name";
const MCP_PARAM: &str = "mcp-param-";

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

/// Headers that say who the client is and how it reached the first proxy. Believed only
/// from a trusted proxy: from anyone else they are whatever the client chose to claim
/// (an address an upstream's allow-list or rate limit trusts, a host or scheme it
/// builds URLs from).
const FORWARDING: [&str; 6] = [
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
];

/// The forwarding headers of the upstream request. From a peer that is not a trusted
/// proxy, every client-supplied one is removed; then the peer is appended to
/// `X-Forwarded-For` and `Forwarded` (a trusted proxy's own entries stay before it, as
/// each hop appends itself). Without a peer (a request that did not come from a socket)
/// nothing is added.
pub fn set_forwarding(headers: &mut HeaderMap, peer: Option<std::net::IpAddr>, trusted: bool) {
    if !trusted {
        for name in FORWARDING {
            headers.remove(name);
        }
    }
    let Some(peer) = peer else {
        return;
    };
    let node = match peer {
        std::net::IpAddr::V4(v4) => format!("for={v4}"),
        std::net::IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
    };
    for (name, entry) in [("x-forwarded-for", peer.to_string()), ("forwarded", node)] {
        let before: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let value = if before.is_empty() {
            entry
        } else {
            format!("{}, {entry}", before.join(", "))
        };
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
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
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_secret"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"[REDACTED]"}}"#,
        );
        assert_eq!(h["mcp-name"], "[REDACTED]");
        sync_mcp_routing(
            &mut h,
            b"{}",
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"caf\u00e9"}}"#,
        );
        assert_eq!(h["mcp-name"], "=?base64?Y2Fmw6k=?=");
        sync_mcp_routing(
            &mut h,
            b"{}",
            br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        );
        assert_eq!(h["mcp-method"], "tools/list");
        assert!(!h.contains_key("mcp-name"));
        // Requests without routing headers (older revisions) are left alone.
        let mut old = HeaderMap::new();
        sync_mcp_routing(
            &mut old,
            b"{}",
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
        );
        assert!(old.is_empty());
    }

    /// A `tools/call` with `Mcp-Param-*` headers whose arguments a plugin rewrote from
    /// `before` to `after`: the headers that come out.
    fn params_after(headers: &[(&str, &str)], before: &str, after: &str) -> Vec<(String, String)> {
        let mut h = HeaderMap::new();
        h.insert("mcp-method", HeaderValue::from_static("tools/call"));
        for (name, value) in headers {
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let body = |arguments: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{arguments}}}}}"#
            )
        };
        sync_mcp_routing(&mut h, body(before).as_bytes(), body(after).as_bytes());
        let mut out: Vec<(String, String)> = h
            .iter()
            .filter(|(n, _)| n.as_str().starts_with("mcp-param-"))
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        out.sort();
        out
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn param_headers_follow_the_argument_they_mirrored() {
        // A rewritten argument, a nested one, and one left alone.
        assert_eq!(
            params_after(
                &[
                    ("mcp-param-region", "sk-live-1"),
                    ("mcp-param-zone", "b"),
                    ("mcp-param-tier", "gold")
                ],
                r#"{"region":"sk-live-1","where":{"zone":"b"},"tier":"gold"}"#,
                r#"{"region":"[REDACTED]","where":{"zone":"c"},"tier":"gold"}"#,
            ),
            pairs(&[
                ("mcp-param-region", "[REDACTED]"),
                ("mcp-param-tier", "gold"),
                ("mcp-param-zone", "c")
            ])
        );
        // Numbers and booleans in their header form; a value that needs Base64 gets it,
        // and a Base64 header is matched by what it carries.
        assert_eq!(
            params_after(
                &[
                    ("mcp-param-count", "3"),
                    ("mcp-param-flag", "true"),
                    ("mcp-param-city", "=?base64?Y2Fmw6k=?=")
                ],
                r#"{"count":3,"flag":true,"city":"café"}"#,
                r#"{"count":4,"flag":false,"city":"Zürich"}"#,
            ),
            pairs(&[
                ("mcp-param-city", "=?base64?WsO8cmljaA==?="),
                ("mcp-param-count", "4"),
                ("mcp-param-flag", "false"),
            ])
        );
        // An argument the plugin removed or set to null: its header goes, as a client
        // omits it.
        assert_eq!(
            params_after(
                &[("mcp-param-a", "x"), ("mcp-param-b", "y")],
                r#"{"a":"x","b":"y"}"#,
                r#"{"b":null}"#,
            ),
            vec![]
        );
    }

    #[test]
    fn param_headers_that_cannot_be_placed_stay_as_sent() {
        // Two arguments carry the header's value: which one it mirrors is unknown.
        assert_eq!(
            params_after(
                &[("mcp-param-region", "eu")],
                r#"{"from":"eu","to":"eu"}"#,
                r#"{"from":"us","to":"eu"}"#,
            ),
            pairs(&[("mcp-param-region", "eu")])
        );
        // No argument carries it (arrays are never mirrored).
        assert_eq!(
            params_after(
                &[("mcp-param-region", "eu")],
                r#"{"list":["eu"]}"#,
                r#"{"list":["us"]}"#,
            ),
            pairs(&[("mcp-param-region", "eu")])
        );
    }

    #[test]
    fn param_headers_leave_with_the_tool_call() {
        let mut h = HeaderMap::new();
        h.insert("mcp-method", HeaderValue::from_static("tools/call"));
        h.insert("mcp-param-region", HeaderValue::from_static("eu"));
        sync_mcp_routing(
            &mut h,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"region":"eu"}}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        );
        assert_eq!(h["mcp-method"], "ping");
        assert!(!h.contains_key("mcp-param-region"));
    }

    #[test]
    fn forwarding_headers_are_believed_only_from_a_trusted_proxy() {
        let spoofed = || {
            let mut h = HeaderMap::new();
            h.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
            h.append("x-forwarded-for", HeaderValue::from_static("7.7.7.7"));
            h.insert("forwarded", HeaderValue::from_static("for=6.6.6.6"));
            h.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
            h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
            h
        };
        let mut h = spoofed();
        set_forwarding(&mut h, Some("10.0.0.9".parse().unwrap()), false);
        assert_eq!(h["x-forwarded-for"], "10.0.0.9");
        assert_eq!(h["forwarded"], "for=10.0.0.9");
        assert!(!h.contains_key("x-real-ip"));
        assert!(!h.contains_key("x-forwarded-proto"));

        let mut h = spoofed();
        set_forwarding(&mut h, Some("::1".parse().unwrap()), true);
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 7.7.7.7, ::1");
        assert_eq!(h["forwarded"], "for=6.6.6.6, for=\"[::1]\"");
        assert_eq!(h["x-real-ip"], "6.6.6.6");
        assert_eq!(h["x-forwarded-proto"], "https");

        let mut h = spoofed();
        set_forwarding(&mut h, None, false);
        assert!(h.is_empty(), "{h:?}");
    }
}
