//! Resource-server mode (MCP authorization, 2025-06-18 onward): sluice is the OAuth 2.1
//! resource server in front of the MCP server. It publishes protected-resource
//! metadata (RFC 9728) naming the authorization servers, and lets a request in only
//! with a bearer token (RFC 6750) issued for this resource (RFC 8707 audience), by the
//! configured issuer, current, and carrying the required scopes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Response, StatusCode, Uri, header};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::fetch::{self, FetchError, Fetcher};
use super::introspect::Introspection;
use super::jwks::{KeyError, KeySet, Refresh};
use super::token_cache::{self, TokenCache, unix_now};
use super::{Admitted, Identity};
use crate::http::{ProxyBody, full};
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
pub enum SettingsError {
    /// `resource` is not an absolute URL clients could address.
    #[error("resource {resource:?} {reason}")]
    Resource {
        /// The value.
        resource: String,
        /// Why.
        reason: &'static str,
    },
    /// No authorization server is named.
    #[error("authorization_servers must name at least one issuer URL")]
    NoAuthorizationServer,
    /// Several authorization servers and no `issuer`: which `iss` to accept is unsaid.
    #[error("issuer must be set when there are several authorization_servers")]
    WhichIssuer,
    /// Neither keys nor introspection: no token could ever be checked.
    #[error("give jwks_url, [auth.introspection], or both")]
    NoWayToCheck,
    /// An algorithm that is unknown, or not allowed (none, HMAC).
    #[error(
        "algorithm {0:?} is not allowed (use RS256/384/512, PS256/384/512, ES256/384 or EdDSA)"
    )]
    Algorithm(String),
    /// A URL of the authorization server is unusable.
    #[error(transparent)]
    Url(#[from] FetchError),
    /// A scope that is not a scope-token.
    #[error("scope {0:?} is not a scope (printable ASCII, no space, '\"' or '\\')")]
    Scope(String),
    /// A number out of its bounds.
    #[error("{0} must be {1}")]
    Bound(&'static str, &'static str),
    /// The introspection client secret cannot be read.
    #[error("introspection client secret: {0}")]
    Secret(String),
}

/// The algorithms accepted when `algorithms` is not set: what Keycloak, Auth0, Entra
/// and Okta sign with, and the elliptic-curve and EdDSA ones.
const DEFAULT_ALGORITHMS: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// Why a request was turned away: each case has the status, `error` code and
/// description RFC 6750 gives it, and a label for the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// No `Authorization`, or not a Bearer one: the client must get a token.
    Missing,
    /// More than one `Authorization`, or a token that is not a b64token.
    Malformed(&'static str),
    /// Not a JWT the issuer signed (bad shape, unknown key, bad signature, an algorithm
    /// not allowed), or an introspection that says inactive.
    Invalid,
    /// Past `exp`.
    Expired,
    /// Before `nbf`.
    NotYetValid,
    /// Not for this resource (`aud`).
    Audience,
    /// Not from the configured issuer (`iss`).
    Issuer,
    /// A required scope is missing.
    Scope,
    /// The issuer's keys or introspection endpoint cannot be reached: the token cannot
    /// be checked now (fail closed).
    Unavailable,
}

impl DenyReason {
    /// The metric's `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            DenyReason::Missing => "missing",
            DenyReason::Malformed(_) => "malformed",
            DenyReason::Invalid => "invalid",
            DenyReason::Expired => "expired",
            DenyReason::NotYetValid => "not_yet_valid",
            DenyReason::Audience => "audience",
            DenyReason::Issuer => "issuer",
            DenyReason::Scope => "insufficient_scope",
            DenyReason::Unavailable => "unavailable",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            DenyReason::Missing
            | DenyReason::Invalid
            | DenyReason::Expired
            | DenyReason::NotYetValid
            | DenyReason::Audience
            | DenyReason::Issuer => StatusCode::UNAUTHORIZED,
            DenyReason::Malformed(_) => StatusCode::BAD_REQUEST,
            DenyReason::Scope => StatusCode::FORBIDDEN,
            DenyReason::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// RFC 6750 §3.1's `error` code (none when the request had no credentials).
    fn code(self) -> Option<&'static str> {
        match self {
            DenyReason::Missing | DenyReason::Unavailable => None,
            DenyReason::Malformed(_) => Some("invalid_request"),
            DenyReason::Scope => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }

    /// What the client is told (a quoted-string: no `"` or `\`).
    fn description(self) -> &'static str {
        match self {
            DenyReason::Missing => "a bearer token is required",
            DenyReason::Malformed(why) => why,
            DenyReason::Invalid => "the token is not valid",
            DenyReason::Expired => "the token has expired",
            DenyReason::NotYetValid => "the token is not valid yet",
            DenyReason::Audience => "the token is not for this resource",
            DenyReason::Issuer => "the token is not from the expected issuer",
            DenyReason::Scope => "the token lacks a required scope",
            DenyReason::Unavailable => "the token cannot be checked now; try again",
        }
    }
}

/// A request turned away, with the challenge that tells the client where to get a
/// token.
#[derive(Debug, thiserror::Error)]
#[error("not authorized: {}", reason.description())]
pub struct Denied {
    /// Why.
    pub reason: DenyReason,
    /// `resource_metadata="…"` and `scope="…"`, ready for `WWW-Authenticate`.
    params: Arc<str>,
}

impl Denied {
    /// The answer: the status and `WWW-Authenticate` the OAuth rules give this case.
    pub fn into_response(self) -> Response<ProxyBody> {
        let reason = self.reason;
        let challenge = match reason.code() {
            Some(code) => format!(
                "Bearer error=\"{code}\", error_description=\"{}\", {}",
                reason.description(),
                self.params
            ),
            None => format!("Bearer {}", self.params),
        };
        let body = serde_json::json!({
            "error": reason.code().unwrap_or("unauthorized"),
            "error_description": format!("sluice: {}", reason.description()),
        });
        let mut response = Response::builder()
            .status(reason.status())
            .header(header::CONTENT_TYPE, "application/json");
        if reason == DenyReason::Unavailable {
            response = response.header(header::RETRY_AFTER, "5");
        } else {
            response = response.header(header::WWW_AUTHENTICATE, challenge);
        }
        response
            .body(full(body.to_string()))
            .expect("the challenge is made of header-safe text")
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
pub struct ResourceServer {
    /// The resource's canonical URI.
    resource: String,
    /// Where its metadata is served (path only).
    metadata_path: String,
    /// The metadata document.
    metadata: bytes::Bytes,
    /// `resource_metadata="…", scope="…"`.
    params: Arc<str>,
    issuer: String,
    audiences: Vec<String>,
    scopes: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    claims: Vec<String>,
    keys: Option<KeySet>,
    /// Claims of JWTs already verified, reused while the token is current and for at
    /// most [`REUSE_SECS`] (a key the issuer withdraws stops being honoured then).
    verified: TokenCache<Arc<Map<String, Value>>>,
    introspection: Option<Introspection>,
    metrics: Arc<Metrics>,
}

impl ResourceServer {
    /// Checks `settings` and makes the key set (fetched when a token first needs it).
    pub fn new(
        settings: &ResourceSettings,
        fetcher: Fetcher,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SettingsError> {
        let resource = settings.resource.clone();
        let bad = |reason| SettingsError::Resource {
            resource: resource.clone(),
            reason,
        };
        let uri: Uri = resource.parse().map_err(|_| bad("is not a URL"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(bad("must be an absolute URL (https://host/path)"));
        };
        if scheme != "https" && scheme != "http" {
            return Err(bad("must be an https:// URL"));
        }
        if uri.query().is_some() || resource.contains('#') {
            return Err(bad("must not have a query or fragment (RFC 8707)"));
        }
        // RFC 9728 §3.1: the well-known segment goes between the host and the path.
        let path = uri.path().trim_end_matches('/');
        let metadata_path = format!("/.well-known/oauth-protected-resource{path}");
        let metadata_url = format!("{scheme}://{authority}{metadata_path}");
        if settings.authorization_servers.is_empty() {
            return Err(SettingsError::NoAuthorizationServer);
        }
        let issuer = match (&settings.issuer, settings.authorization_servers.as_slice()) {
            (Some(issuer), _) => issuer.clone(),
            (None, [only]) => only.clone(),
            (None, _) => return Err(SettingsError::WhichIssuer),
        };
        let algorithms = if settings.algorithms.is_empty() {
            DEFAULT_ALGORITHMS.to_vec()
        } else {
            settings
                .algorithms
                .iter()
                .map(|name| match name.parse::<Algorithm>() {
                    Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) | Err(_) => {
                        Err(SettingsError::Algorithm(name.clone()))
                    }
                    Ok(alg) => Ok(alg),
                })
                .collect::<Result<_, _>>()?
        };
        if settings.jwks_url.is_none() && settings.introspection.is_none() {
            return Err(SettingsError::NoWayToCheck);
        }
        let min_refresh = settings.jwks_min_refresh_secs.unwrap_or(30);
        if min_refresh == 0 {
            return Err(SettingsError::Bound(
                "jwks_min_refresh_secs",
                "at least 1 (each unknown kid would fetch the key set)",
            ));
        }
        let max_age = settings
            .jwks_max_age_secs
            .unwrap_or(3600)
            .clamp(1, 7 * 86_400);
        let keys = match &settings.jwks_url {
            Some(url) => Some(KeySet::new(
                fetch::check_url(url)?,
                fetcher.clone(),
                Refresh {
                    min_interval: Duration::from_secs(min_refresh),
                    max_age: Duration::from_secs(max_age),
                },
                metrics.clone(),
            )),
            None => None,
        };
        let introspection = settings
            .introspection
            .as_ref()
            .map(|s| Introspection::new(s, fetcher))
            .transpose()?;
        let scopes_supported = if settings.scopes_supported.is_empty() {
            &settings.scopes
        } else {
            &settings.scopes_supported
        };
        let mut metadata = serde_json::json!({
            "resource": resource,
            "authorization_servers": settings.authorization_servers,
            "bearer_methods_supported": ["header"],
        });
        if !scopes_supported.is_empty() {
            metadata["scopes_supported"] = serde_json::json!(scopes_supported);
        }
        if let Some(name) = &settings.resource_name {
            metadata["resource_name"] = serde_json::json!(name);
        }
        // Scopes are scope-tokens (RFC 6749 §3.3): no space, `"` or `\`, which would
        // also break the challenge's quoted string.
        if let Some(bad) = settings
            .scopes
            .iter()
            .chain(&settings.scopes_supported)
            .find(|s| {
                s.is_empty()
                    || !s
                        .bytes()
                        .all(|b| b > 0x20 && b < 0x7f && b != b'"' && b != b'\\')
            })
        {
            return Err(SettingsError::Scope(bad.clone()));
        }
        if metadata_url.contains(['"', '\\']) {
            return Err(bad("cannot contain '\"' or '\\'"));
        }
        let leeway = settings.leeway_secs.unwrap_or(60);
        if leeway > 3600 {
            return Err(SettingsError::Bound("leeway_secs", "at most 3600"));
        }
        let mut params = format!("resource_metadata=\"{metadata_url}\"");
        if !settings.scopes.is_empty() {
            params.push_str(&format!(", scope=\"{}\"", settings.scopes.join(" ")));
        }
        // Every challenge is a header value: refuse settings that would not be one.
        HeaderValue::from_str(&params).map_err(|_| bad("cannot be put in a header"))?;
        let mut audiences = vec![resource.clone()];
        audiences.extend(settings.audiences.iter().cloned());
        Ok(Self {
            resource,
            metadata_path,
            metadata: bytes::Bytes::from(metadata.to_string()),
            params: params.into(),
            issuer,
            audiences,
            scopes: settings.scopes.clone(),
            algorithms,
            leeway,
            claims: settings.claims.clone(),
            keys,
            verified: TokenCache::default(),
            introspection,
            metrics,
        })
    }

    /// The resource's canonical URI.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Where the protected-resource metadata is served (a path on this listener).
    pub fn metadata_path(&self) -> &str {
        &self.metadata_path
    }

    /// The metadata document (RFC 9728 §2).
    pub fn metadata_response(&self) -> Response<ProxyBody> {
        Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "max-age=300")
            .body(full(self.metadata.clone()))
            .expect("static parts form a response")
    }

    fn deny(&self, reason: DenyReason) -> Denied {
        self.metrics.auth_denied(reason.label());
        Denied {
            reason,
            params: self.params.clone(),
        }
    }

    /// Lets a request in with a valid token, or says why not.
    pub async fn admit(
        &self,
        headers: &HeaderMap,
        client_addr: Option<IpAddr>,
    ) -> Result<Admitted, Denied> {
        let token = match bearer_token(headers) {
            Ok(Some(token)) => token,
            Ok(None) | Err("not a Bearer credential") => {
                tracing::debug!("no bearer token: answered with the challenge");
                return Err(self.deny(DenyReason::Missing));
            }
            Err(why) => {
                tracing::info!(why, "malformed Authorization header");
                return Err(self.deny(DenyReason::Malformed(why)));
            }
        };
        let claims = self.claims_of(&token).await.map_err(|reason| {
            tracing::info!(reason = reason.label(), "token refused");
            self.deny(reason)
        })?;
        let scopes = scopes_of(&claims);
        if let Some(missing) = self.scopes.iter().find(|s| !scopes.contains(s)) {
            let subject = claims.get("sub").and_then(Value::as_str);
            tracing::info!(
                subject,
                missing = %missing,
                "token lacks a required scope"
            );
            return Err(self.deny(DenyReason::Scope));
        }
        self.metrics.auth_admitted();
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
        let identity = Identity {
            subject: text("sub"),
            client_id: text("client_id")
                .or_else(|| text("azp"))
                .or_else(|| text("appid")),
            scopes,
            claims: self
                .claims
                .iter()
                .filter_map(|name| claims.get(name).map(|v| (name.clone(), v.clone())))
                .collect::<BTreeMap<_, _>>(),
            client_addr,
        };
        Ok(Admitted {
            identity: Arc::new(identity),
            token: Some(token),
        })
    }

    /// What introspection says of `token`; without introspection configured, a token
    /// the keys cannot check is invalid.
    async fn introspected(&self, token: &str) -> Result<Arc<Map<String, Value>>, DenyReason> {
        match &self.introspection {
            Some(introspection) => introspection
                .claims(token, &self.issuer, &self.audiences, self.leeway)
                .await
                .map(Arc::new),
            None => Err(DenyReason::Invalid),
        }
    }

    /// The claims of a valid token: a JWT checked against the issuer's keys, or, for
    /// a token that is not a JWT, what introspection says.
    async fn claims_of(&self, token: &str) -> Result<Arc<Map<String, Value>>, DenyReason> {
        let header = match jsonwebtoken::decode_header(token) {
            Ok(header) => header,
            // Not a JWT we can read (`alg: none` lands here too: it is no algorithm
            // jsonwebtoken knows).
            Err(_) => return self.introspected(token).await,
        };
        let Some(keys) = &self.keys else {
            return self.introspected(token).await;
        };
        if !self.algorithms.contains(&header.alg) {
            return Err(DenyReason::Invalid);
        }
        let key_hash = token_cache::hash(token);
        let now = unix_now();
        if let Some(claims) = self.verified.get(&key_hash, now) {
            return Ok(claims);
        }
        let candidates = keys
            .find(header.kid.as_deref(), header.alg)
            .await
            .map_err(|error| match error {
                KeyError::Unknown { .. } => DenyReason::Invalid,
                KeyError::Unavailable => DenyReason::Unavailable,
            })?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let mut outcome = Err(DenyReason::Invalid);
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    let claims = Arc::new(data.claims);
                    // `exp` is required, so it is there and a number.
                    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
                    let until = exp
                        .saturating_add(self.leeway)
                        .min(now.saturating_add(REUSE_SECS));
                    self.verified.keep(key_hash, claims.clone(), until, now);
                    return Ok(claims);
                }
                Err(error) => {
                    outcome = Err(match error.kind() {
                        ErrorKind::ExpiredSignature => DenyReason::Expired,
                        ErrorKind::ImmatureSignature => DenyReason::NotYetValid,
                        ErrorKind::InvalidAudience => DenyReason::Audience,
                        ErrorKind::InvalidIssuer => DenyReason::Issuer,
                        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => {
                            DenyReason::Audience
                        }
                        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => {
                            DenyReason::Issuer
                        }
                        _ => DenyReason::Invalid,
                    });
                    // Another key of the same `kid`-less set may have signed it.
                    if !matches!(error.kind(), ErrorKind::InvalidSignature) {
                        break;
                    }
                }
            }
        }
        outcome
    }
}

/// The longest a JWT's verification is reused, in seconds.
const REUSE_SECS: u64 = 300;

/// The scopes of a token: `scope` (a space-separated string, RFC 8693/9068), or `scp`
/// (Entra: a string; Okta: a list).
pub fn scopes_of(claims: &Map<String, Value>) -> Vec<String> {
    match claims.get("scope").or_else(|| claims.get("scp")) {
        Some(Value::String(text)) => text.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn a_bearer_token_is_one_well_formed_credential() {
        assert_eq!(
            bearer_token(&headers("Bearer abc.def-_~+/==")),
            Ok(Some("abc.def-_~+/==".into()))
        );
        assert_eq!(bearer_token(&headers("bearer x")), Ok(Some("x".into())));
        assert_eq!(bearer_token(&HeaderMap::new()), Ok(None));
        assert!(bearer_token(&headers("Basic dXNlcjpwYXNz")).is_err());
        assert!(bearer_token(&headers("Bearer ")).is_err());
        assert!(bearer_token(&headers("Bearer a b")).is_err());
        assert!(bearer_token(&headers("Bearer a\"b")).is_err());
        let mut two = headers("Bearer a");
        two.append(header::AUTHORIZATION, "Bearer b".parse().unwrap());
        assert!(bearer_token(&two).is_err());
    }

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let claims = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            scopes_of(&claims(serde_json::json!({"scope": "a  b"}))),
            ["a", "b"]
        );
        assert_eq!(
            scopes_of(&claims(serde_json::json!({"scp": "a b"}))),
            ["a", "b"]
        );
        assert_eq!(
            scopes_of(&claims(serde_json::json!({"scp": ["a", 1, "b"]}))),
            ["a", "b"]
        );
        assert!(scopes_of(&claims(serde_json::json!({}))).is_empty());
    }

    fn settings() -> ResourceSettings {
        ResourceSettings {
            resource: "https://mcp.example.com/mcp".into(),
            authorization_servers: vec!["https://idp.example.com".into()],
            jwks_url: Some("https://idp.example.com/jwks".into()),
            scopes: vec!["mcp:tools".into()],
            ..ResourceSettings::default()
        }
    }

    fn server(settings: &ResourceSettings) -> Result<ResourceServer, SettingsError> {
        let fetcher = Fetcher::new(&crate::tls::UpstreamTls::default()).unwrap();
        ResourceServer::new(settings, fetcher, Arc::new(Metrics::new()))
    }

    #[test]
    fn metadata_is_served_under_the_resource_path_and_named_in_the_challenge() {
        let server = server(&settings()).unwrap();
        assert_eq!(
            server.metadata_path(),
            "/.well-known/oauth-protected-resource/mcp"
        );
        let doc: Value = serde_json::from_slice(&server.metadata).unwrap();
        assert_eq!(doc["resource"], "https://mcp.example.com/mcp");
        assert_eq!(doc["authorization_servers"][0], "https://idp.example.com");
        assert_eq!(doc["scopes_supported"][0], "mcp:tools");
        let denied = server.deny(DenyReason::Missing).into_response();
        assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            denied.headers()[header::WWW_AUTHENTICATE],
            "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:tools\""
        );
        let scope = server.deny(DenyReason::Scope).into_response();
        assert_eq!(scope.status(), StatusCode::FORBIDDEN);
        let challenge = scope.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer error=\"insufficient_scope\""),
            "{challenge}"
        );
    }

    #[test]
    fn unusable_settings_are_refused() {
        let refused = |change: &dyn Fn(&mut ResourceSettings)| {
            let mut s = settings();
            change(&mut s);
            server(&s).err().map(|e| e.to_string())
        };
        assert!(
            refused(&|s| s.algorithms = vec!["HS256".into()])
                .unwrap()
                .contains("HS256")
        );
        assert!(refused(&|s| s.algorithms = vec!["none".into()]).is_some());
        assert!(refused(&|s| s.resource = "/mcp".into()).is_some());
        assert!(refused(&|s| s.resource = "https://x/mcp#f".into()).is_some());
        assert!(refused(&|s| s.authorization_servers.clear()).is_some());
        assert!(refused(&|s| s.jwks_url = None).is_some());
        assert!(refused(&|s| s.jwks_url = Some("http://idp.example.com/jwks".into())).is_some());
        assert!(
            refused(&|s| s.authorization_servers.push("https://other".into()))
                .unwrap()
                .contains("issuer")
        );
        assert!(
            refused(&|s| s.scopes = vec!["a\" b".into()])
                .unwrap()
                .contains("scope")
        );
        assert!(refused(&|s| s.jwks_min_refresh_secs = Some(0)).is_some());
        assert!(refused(&|s| s.leeway_secs = Some(u64::MAX)).is_some());
        assert!(refused(&|_| {}).is_none());
    }
}
