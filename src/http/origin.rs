//! `Origin` and `Host` validation (MCP Streamable HTTP, "Security Warning"): a browser
//! page on another site must not reach a local MCP server through the proxy. `Origin`
//! stops cross-site requests; `Host` stops DNS rebinding, where a hostile name resolves
//! to 127.0.0.1 and the browser considers the page same-origin.

use http::HeaderMap;

/// A request refused at ingress: its `Origin` or `Host` (the value is the client's own,
/// so telling it back leaks nothing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAllowed {
    /// A browser origin that is not allowed.
    #[error("origin {0} is not allowed (see --allow-origin)")]
    Origin(String),
    /// A `Host` that does not name this proxy (DNS rebinding).
    #[error(
        "host {0} is not allowed: DNS-rebinding protection accepts loopback names only (see --allow-host)"
    )]
    Host(String),
}

/// Whether a request may pass. Requests without `Origin` (non-browser clients) pass;
/// loopback origins pass; anything else must be listed (`*` allows all).
pub fn allowed(headers: &HeaderMap, allow: &[String]) -> Result<(), NotAllowed> {
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin
        .to_str()
        .map_err(|_| NotAllowed::Origin("<non-ASCII origin>".to_string()))?;
    if allow
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
        || is_loopback(origin)
    {
        return Ok(());
    }
    Err(NotAllowed::Origin(origin.to_string()))
}

/// Whether the `Host` header (the `:authority` in HTTP/2) names this proxy: a loopback
/// name or one of `allow` (host names without port; `*` turns the check off). A request
/// without any host passes only in HTTP/1.0 style requests, which browsers never send.
pub fn host_allowed(host: Option<&str>, allow: &[String]) -> Result<(), NotAllowed> {
    if allow.iter().any(|a| a == "*") {
        return Ok(());
    }
    let Some(host) = host else {
        return Ok(());
    };
    let name = host_name(host);
    if is_loopback_host(name) || allow.iter().any(|a| a.eq_ignore_ascii_case(name)) {
        return Ok(());
    }
    Err(NotAllowed::Host(host.to_string()))
}

fn is_loopback(origin: &str) -> bool {
    let Some((_, rest)) = origin.split_once("://") else {
        return false;
    };
    is_loopback_host(host_name(rest))
}

/// The host name of an authority (`name:port`, `[v6]:port`), without brackets or port.
fn host_name(authority: &str) -> &str {
    if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    }
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || matches!(host, "127.0.0.1" | "::1")
}

/// Whether `host` (a `Host` value, with or without port) is a loopback name or an IP
/// literal: the hosts a request can carry without a DNS name chosen by someone else.
/// DNS rebinding needs the attacker's own name in `Host`; a page whose origin is an IP
/// address was served from that address, and the admin API serves no pages.
pub fn host_is_loopback_or_address(host: &str) -> bool {
    let name = host_name(host);
    is_loopback_host(name) || name.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_origin(o: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::ORIGIN, o.parse().unwrap());
        h
    }

    #[test]
    fn loopback_and_absent_origins_pass() {
        assert!(allowed(&HeaderMap::new(), &[]).is_ok());
        for o in [
            "http://localhost:6274",
            "http://127.0.0.1",
            "http://[::1]:3000",
        ] {
            assert!(allowed(&with_origin(o), &[]).is_ok(), "{o}");
        }
    }

    #[test]
    fn foreign_origins_are_refused_unless_listed() {
        let evil = with_origin("https://evil.example");
        assert_eq!(
            allowed(&evil, &[]).unwrap_err(),
            NotAllowed::Origin("https://evil.example".into())
        );
        assert!(allowed(&with_origin("http://localhost.evil.example"), &[]).is_err());
        assert!(allowed(&with_origin("null"), &[]).is_err());
        assert!(allowed(&evil, &["https://evil.example".into()]).is_ok());
        assert!(allowed(&evil, &["*".into()]).is_ok());
    }

    #[test]
    fn loopback_hosts_pass_and_rebound_names_are_refused() {
        for h in ["127.0.0.1:8080", "localhost", "LOCALHOST:1", "[::1]:8080"] {
            assert!(host_allowed(Some(h), &[]).is_ok(), "{h}");
        }
        assert!(host_allowed(None, &[]).is_ok());
        assert_eq!(
            host_allowed(Some("rebind.evil.example:8080"), &[]).unwrap_err(),
            NotAllowed::Host("rebind.evil.example:8080".into())
        );
        assert!(host_allowed(Some("127.0.0.1.evil.example"), &[]).is_err());
        assert!(host_allowed(Some("mcp.internal:8080"), &["mcp.internal".into()]).is_ok());
        assert!(host_allowed(Some("anything"), &["*".into()]).is_ok());
    }

    #[test]
    fn admin_hosts_are_loopback_names_or_addresses() {
        for h in [
            "127.0.0.1:9090",
            "localhost",
            "[::1]:9090",
            "10.0.0.5:9090",
            "[fd00::1]",
        ] {
            assert!(host_is_loopback_or_address(h), "{h}");
        }
        for h in [
            "rebind.evil.example:9090",
            "127.0.0.1.evil.example",
            "mcp.internal",
        ] {
            assert!(!host_is_loopback_or_address(h), "{h}");
        }
    }
}
