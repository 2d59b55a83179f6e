//! `Origin` validation (MCP Streamable HTTP, "Security Warning"): a browser page on
//! another site must not reach a local MCP server through the proxy (DNS rebinding).

use http::HeaderMap;

/// Whether a request may pass. Requests without `Origin` (non-browser clients) pass;
/// loopback origins pass; anything else must be listed (`*` allows all).
pub fn allowed(headers: &HeaderMap, allow: &[String]) -> Result<(), String> {
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin
        .to_str()
        .map_err(|_| "<non-ASCII origin>".to_string())?;
    if allow
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
        || is_loopback(origin)
    {
        return Ok(());
    }
    Err(origin.to_string())
}

fn is_loopback(origin: &str) -> bool {
    let Some((_, rest)) = origin.split_once("://") else {
        return false;
    };
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        rest.split(':').next().unwrap_or("")
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
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
        assert_eq!(allowed(&evil, &[]).unwrap_err(), "https://evil.example");
        assert!(allowed(&with_origin("http://localhost.evil.example"), &[]).is_err());
        assert!(allowed(&with_origin("null"), &[]).is_err());
        assert!(allowed(&evil, &["https://evil.example".into()]).is_ok());
        assert!(allowed(&evil, &["*".into()]).is_ok());
    }
}
