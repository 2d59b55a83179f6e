//! What the upstream is told about the caller. The client's `Authorization` is meant
//! for sluice (MCP: "no token passthrough"), so it never goes upstream unless the
//! operator chose passthrough; the upstream gets nothing, a static credential, or a
//! token from an RFC 8693 token exchange instead.
//!
//! Secrets (a static credential, the exchange's client secret) are read once, when the
//! route starts: a missing file or variable stops start-up instead of failing the
//! first request. They are never printed: `Debug` shows `<redacted>`, and errors name
//! the file or variable a secret came from, not the secret.

mod exchange;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, header};
use serde::Deserialize;

use super::fetch::{self, FetchError, Fetcher};
use crate::metrics::Metrics;
pub use exchange::TokenExchange;

/// `[upstream_auth]` (or `[route.upstream_auth]`). Which keys a mode takes is checked
/// when the file is read ([`RawSettings`]'s `TryFrom`), so a stray key names its line.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(try_from = "RawSettings")]
pub struct CredentialSettings {
    /// What the upstream gets.
    pub mode: CredentialMode,
    /// `static`: where the credential comes from.
    pub secret: Option<SecretSource>,
    /// `static`: the header it is sent in (default `authorization`).
    pub header: Option<String>,
    /// `static`: the word before it (default `Bearer`; empty: the value alone).
    pub scheme: Option<String>,
    /// `exchange`: the token endpoint and what is asked of it.
    pub exchange: Option<ExchangeSettings>,
}

/// Where a secret is read from, when the route starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file (relative to the config file's directory); one trailing newline is
    /// dropped.
    File(PathBuf),
    /// An environment variable of sluice's.
    Env(String),
}

/// `[upstream_auth]` with `mode = "exchange"`: an RFC 8693 token exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSettings {
    /// The authorization server's token endpoint (https, or http to loopback).
    pub token_url: String,
    /// sluice's client id at the authorization server.
    pub client_id: String,
    /// sluice's client secret (HTTP Basic client authentication).
    pub client_secret: SecretSource,
    /// `audience` of the request: the upstream as the authorization server names it.
    pub audience: Option<String>,
    /// `resource` of the request: the upstream's URI (RFC 8707).
    pub resource: Option<String>,
    /// `scope` of the request (space-separated).
    pub scope: Option<String>,
    /// `requested_token_type` (default `urn:ietf:params:oauth:token-type:access_token`).
    pub requested_token_type: Option<String>,
}

/// `[upstream_auth] mode`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialMode {
    /// No `Authorization` at all.
    #[default]
    None,
    /// One credential, the same for every request.
    Static,
    /// The client's token exchanged for one meant for the upstream (RFC 8693).
    Exchange,
    /// The client's `Authorization` as it came: what MCP forbids, for the operator
    /// who says so.
    Passthrough,
}

impl CredentialMode {
    fn name(self) -> &'static str {
        match self {
            CredentialMode::None => "none",
            CredentialMode::Static => "static",
            CredentialMode::Exchange => "exchange",
            CredentialMode::Passthrough => "passthrough",
        }
    }
}

/// The table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    mode: CredentialMode,
    secret_file: Option<PathBuf>,
    secret_env: Option<String>,
    header: Option<String>,
    scheme: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret_file: Option<PathBuf>,
    client_secret_env: Option<String>,
    audience: Option<String>,
    resource: Option<String>,
    scope: Option<String>,
    requested_token_type: Option<String>,
}

/// One of `file`/`env`, named `what_file`/`what_env` in errors.
fn one_source(
    file: Option<PathBuf>,
    env: Option<String>,
    what: &str,
) -> Result<SecretSource, String> {
    match (file, env) {
        (Some(file), None) => Ok(SecretSource::File(file)),
        (None, Some(env)) => Ok(SecretSource::Env(env)),
        (Some(_), Some(_)) => Err(format!("give {what}_file or {what}_env, not both")),
        (None, None) => Err(format!("needs {what}_file or {what}_env")),
    }
}

impl TryFrom<RawSettings> for CredentialSettings {
    type Error = String;

    fn try_from(raw: RawSettings) -> Result<Self, String> {
        let mode = raw.mode;
        // Every key set, and the modes it belongs to.
        let keys: [(&str, bool, &[CredentialMode]); 12] = {
            use CredentialMode::{Exchange, Static};
            [
                ("secret_file", raw.secret_file.is_some(), &[Static]),
                ("secret_env", raw.secret_env.is_some(), &[Static]),
                ("header", raw.header.is_some(), &[Static]),
                ("scheme", raw.scheme.is_some(), &[Static]),
                ("token_url", raw.token_url.is_some(), &[Exchange]),
                ("client_id", raw.client_id.is_some(), &[Exchange]),
                (
                    "client_secret_file",
                    raw.client_secret_file.is_some(),
                    &[Exchange],
                ),
                (
                    "client_secret_env",
                    raw.client_secret_env.is_some(),
                    &[Exchange],
                ),
                ("audience", raw.audience.is_some(), &[Exchange]),
                ("resource", raw.resource.is_some(), &[Exchange]),
                ("scope", raw.scope.is_some(), &[Exchange]),
                (
                    "requested_token_type",
                    raw.requested_token_type.is_some(),
                    &[Exchange],
                ),
            ]
        };
        if let Some((key, _, _)) = keys
            .iter()
            .find(|(_, set, modes)| *set && !modes.contains(&mode))
        {
            return Err(format!(
                "{key} does not apply to mode = \"{}\"",
                mode.name()
            ));
        }
        let mut settings = CredentialSettings {
            mode,
            ..CredentialSettings::default()
        };
        match mode {
            CredentialMode::None | CredentialMode::Passthrough => {}
            CredentialMode::Static => {
                settings.secret = Some(one_source(raw.secret_file, raw.secret_env, "secret")?);
                settings.header = raw.header;
                settings.scheme = raw.scheme;
            }
            CredentialMode::Exchange => {
                let token_url = raw.token_url.ok_or("mode = \"exchange\" needs token_url")?;
                fetch::check_url(&token_url).map_err(|e| format!("token_url: {e}"))?;
                settings.exchange = Some(ExchangeSettings {
                    token_url,
                    client_id: raw.client_id.ok_or("mode = \"exchange\" needs client_id")?,
                    client_secret: one_source(
                        raw.client_secret_file,
                        raw.client_secret_env,
                        "client_secret",
                    )?,
                    audience: raw.audience,
                    resource: raw.resource,
                    scope: raw.scope,
                    requested_token_type: raw.requested_token_type,
                });
            }
        }
        Ok(settings)
    }
}

impl CredentialSettings {
    /// `Authorization: Bearer <the file's contents>` (`--upstream-token-file`).
    pub fn bearer_from_file(path: PathBuf) -> Self {
        Self {
            mode: CredentialMode::Static,
            secret: Some(SecretSource::File(path)),
            ..Self::default()
        }
    }

    /// The client's own `Authorization`, forwarded (`--upstream-auth passthrough`).
    pub fn passthrough() -> Self {
        Self {
            mode: CredentialMode::Passthrough,
            ..Self::default()
        }
    }

    /// Relative file names resolved against `dir` (the config file's directory).
    pub fn resolve_paths(&mut self, dir: &Path) {
        let resolve = |source: &mut SecretSource| {
            if let SecretSource::File(path) = source {
                *path = dir.join(&*path);
            }
        };
        if let Some(secret) = &mut self.secret {
            resolve(secret);
        }
        if let Some(exchange) = &mut self.exchange {
            resolve(&mut exchange.client_secret);
        }
    }

    /// Says at start-up what passthrough means, naming the route (`None`: the default
    /// upstream); nothing for the other modes.
    pub fn announce(&self, route: Option<&str>) {
        if self.mode == CredentialMode::Passthrough {
            tracing::warn!(
                route = route.unwrap_or("(default)"),
                "upstream_auth mode = \"passthrough\": clients' tokens reach the upstream; MCP forbids token passthrough (a token meant for sluice becomes usable by the upstream, and the upstream cannot tell who it was issued to)"
            );
        }
    }
}

/// Why a credential cannot be made (at start-up: a secret; per request: an exchange).
/// No variant holds a secret or a token.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A secret file cannot be read.
    #[error("{key} {}: cannot read it: {source}", path.display())]
    ReadFile {
        /// `secret_file` or `client_secret_file`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A secret variable is not set, or not UTF-8.
    #[error("{key} {name}: {reason}")]
    ReadEnv {
        /// `secret_env` or `client_secret_env`.
        key: &'static str,
        /// The variable.
        name: String,
        /// Why, in words of its own: `VarError`'s text would print a non-UTF-8
        /// value, which is the secret.
        reason: &'static str,
    },
    /// A secret is empty.
    #[error("{from}: the secret is empty")]
    Empty {
        /// Where it came from (`secret_file /run/secrets/x`).
        from: String,
    },
    /// A secret cannot be sent in an HTTP header (a control character, a line break).
    #[error(
        "{from}: the secret is not a valid HTTP header value (control characters or line breaks?)"
    )]
    NotHeaderValue {
        /// Where it came from.
        from: String,
    },
    /// A mode without what it needs (settings made in code; the file's are checked
    /// when it is read).
    #[error("mode = \"{0}\" needs {1}")]
    Incomplete(&'static str, &'static str),
    /// `header` is not a header name.
    #[error("header {0:?}: not a valid HTTP header name")]
    BadHeaderName(String),
    /// `scheme` is not a valid prefix of a header value.
    #[error("scheme {0:?}: not valid in an HTTP header value")]
    BadScheme(String),
    /// `token_url` cannot be used.
    #[error("token_url: {0}")]
    TokenUrl(#[source] Box<FetchError>),
    /// A route in exchange mode got a request without a bearer token.
    #[error("the request has no bearer token to exchange for the upstream's")]
    NoClientToken,
    /// The token endpoint was unreachable, or answered other than 200 with JSON.
    #[error("token exchange: {0}")]
    Exchange(#[source] Box<FetchError>),
    /// The token endpoint's answer cannot be used.
    #[error("token exchange: {0}")]
    BadAnswer(&'static str),
}

/// The running form of [`CredentialSettings`].
#[derive(Default)]
pub enum UpstreamCredential {
    /// No `Authorization` upstream.
    #[default]
    None,
    /// This header, on every request (its value marked sensitive).
    Static(HeaderName, HeaderValue),
    /// A token from the token endpoint, per client token.
    Exchange(Box<TokenExchange>),
    /// The client's `Authorization`, as it came.
    Passthrough,
}

impl std::fmt::Debug for UpstreamCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamCredential::None => f.write_str("None"),
            UpstreamCredential::Static(name, _) => f
                .debug_tuple("Static")
                .field(name)
                .field(&format_args!("<redacted>"))
                .finish(),
            UpstreamCredential::Exchange(exchange) => {
                f.debug_tuple("Exchange").field(exchange).finish()
            }
            UpstreamCredential::Passthrough => f.write_str("Passthrough"),
        }
    }
}

impl UpstreamCredential {
    /// The running form of `settings`: secrets are read now.
    pub fn new(
        settings: &CredentialSettings,
        fetcher: impl FnOnce() -> Result<Fetcher, FetchError>,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, CredentialError> {
        match settings.mode {
            CredentialMode::None => Ok(Self::None),
            CredentialMode::Passthrough => Ok(Self::Passthrough),
            CredentialMode::Static => {
                let source = settings.secret.as_ref().ok_or(CredentialError::Incomplete(
                    "static",
                    "secret_file or secret_env",
                ))?;
                let header = settings.header.as_deref().unwrap_or("authorization");
                let name = HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| CredentialError::BadHeaderName(header.to_string()))?;
                let scheme = settings.scheme.as_deref().unwrap_or("Bearer");
                if HeaderValue::from_str(scheme).is_err() || scheme.contains(' ') {
                    return Err(CredentialError::BadScheme(scheme.to_string()));
                }
                let secret = read_secret(source, "secret")?;
                let text = if scheme.is_empty() {
                    secret
                } else {
                    format!("{scheme} {secret}")
                };
                let value = sensitive(&text).ok_or_else(|| CredentialError::NotHeaderValue {
                    from: describe(source, "secret"),
                })?;
                Ok(Self::Static(name, value))
            }
            CredentialMode::Exchange => {
                let settings = settings
                    .exchange
                    .as_ref()
                    .ok_or(CredentialError::Incomplete("exchange", "token_url"))?;
                let url = fetch::check_url(&settings.token_url)
                    .map_err(|e| CredentialError::TokenUrl(Box::new(e)))?;
                let secret = read_secret(&settings.client_secret, "client_secret")?;
                let fetcher = fetcher().map_err(|e| CredentialError::Exchange(Box::new(e)))?;
                Ok(Self::Exchange(Box::new(TokenExchange::new(
                    settings,
                    url,
                    secret,
                    fetcher,
                    metrics.clone(),
                ))))
            }
        }
    }

    /// Sets what the upstream gets in `headers` (the request's headers on their way
    /// upstream); `token` is the client's bearer token, if it sent one.
    pub async fn apply(
        &self,
        headers: &mut HeaderMap,
        token: Option<&str>,
    ) -> Result<(), CredentialError> {
        match self {
            UpstreamCredential::Passthrough => {}
            UpstreamCredential::None => {
                headers.remove(header::AUTHORIZATION);
            }
            UpstreamCredential::Static(name, value) => {
                headers.remove(header::AUTHORIZATION);
                headers.insert(name.clone(), value.clone());
            }
            UpstreamCredential::Exchange(exchange) => {
                headers.remove(header::AUTHORIZATION);
                let token = token.ok_or(CredentialError::NoClientToken)?;
                let value = exchange.token_for(token).await?;
                headers.insert(header::AUTHORIZATION, value);
            }
        }
        Ok(())
    }
}

/// `text` as a header value marked sensitive (HTTP/2's HPACK does not index it), or
/// `None` when it cannot be one.
fn sensitive(text: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(text).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// `secret_file /path` or `secret_env NAME`: where a secret came from, for errors.
fn describe(source: &SecretSource, key: &str) -> String {
    match source {
        SecretSource::File(path) => format!("{key}_file {}", path.display()),
        SecretSource::Env(name) => format!("{key}_env {name}"),
    }
}

/// Reads a secret (`key`: `secret` or `client_secret`, for errors): one trailing line
/// break dropped (files written by `echo` end with one), empty refused.
fn read_secret(source: &SecretSource, key: &'static str) -> Result<String, CredentialError> {
    let text = match source {
        SecretSource::File(path) => {
            std::fs::read_to_string(path).map_err(|source| CredentialError::ReadFile {
                key: if key == "secret" {
                    "secret_file"
                } else {
                    "client_secret_file"
                },
                path: path.clone(),
                source,
            })?
        }
        SecretSource::Env(name) => {
            std::env::var(name).map_err(|source| CredentialError::ReadEnv {
                key: if key == "secret" {
                    "secret_env"
                } else {
                    "client_secret_env"
                },
                name: name.clone(),
                reason: match source {
                    std::env::VarError::NotPresent => "the environment variable is not set",
                    std::env::VarError::NotUnicode(_) => "the value is not UTF-8 text",
                },
            })?
        }
    };
    let secret = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if secret.is_empty() {
        return Err(CredentialError::Empty {
            from: describe(source, key),
        });
    }
    Ok(secret.to_string())
}

#[cfg(test)]
mod tests;
