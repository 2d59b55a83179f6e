//! Token introspection (RFC 7662) for access tokens that are not JWTs: the
//! authorization server says whether the token is active and what it holds. Answers
//! are reused for a short while (keyed by a hash of the token, never the token), and
//! calls in flight are capped, so a flood of made-up tokens costs the authorization
//! server a bounded number of calls at once.

use http::Uri;
use serde_json::{Map, Value};

use super::fetch::{self, Fetcher};
use super::resource::{DenyReason, IntrospectionSettings, SettingsError};
use super::token_cache::{self, TokenCache, unix_now as now};

/// Introspection calls in flight at once; more wait for a slot.
const CALLS_AT_ONCE: usize = 16;

/// The running form of [`IntrospectionSettings`].
pub struct Introspection {
    url: Uri,
    client_id: String,
    secret: String,
    /// Seconds an active answer is reused.
    cache_for: u64,
    fetcher: Fetcher,
    calls: tokio::sync::Semaphore,
    cache: TokenCache<Map<String, Value>>,
}

impl std::fmt::Debug for Introspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspection")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Introspection {
    /// Checks the settings and reads the client secret.
    pub fn new(settings: &IntrospectionSettings, fetcher: Fetcher) -> Result<Self, SettingsError> {
        let url = fetch::check_url(&settings.url)?;
        let secret = match (&settings.client_secret_file, &settings.client_secret_env) {
            (Some(file), None) => std::fs::read_to_string(file)
                .map_err(|e| SettingsError::Secret(format!("{}: {e}", file.display())))?,
            (None, Some(name)) => std::env::var(name).map_err(|_| {
                SettingsError::Secret(format!("environment variable {name} is not set"))
            })?,
            _ => {
                return Err(SettingsError::Secret(
                    "give exactly one of client_secret_file or client_secret_env".into(),
                ));
            }
        };
        let secret = secret.trim_end_matches(['\r', '\n']).to_string();
        if secret.is_empty() {
            return Err(SettingsError::Secret("it is empty".into()));
        }
        Ok(Self {
            url,
            client_id: settings.client_id.clone(),
            secret,
            // At most a day: an absurd setting must not overflow a clock.
            cache_for: settings.cache_secs.unwrap_or(30).min(86_400),
            fetcher,
            calls: tokio::sync::Semaphore::new(CALLS_AT_ONCE),
            cache: TokenCache::default(),
        })
    }

    /// The claims of `token` if the authorization server says it is active, issued
    /// by `issuer` (when it names one) for one of `audiences`, and current.
    pub async fn claims(
        &self,
        token: &str,
        issuer: &str,
        audiences: &[String],
        leeway: u64,
    ) -> Result<Map<String, Value>, DenyReason> {
        let key = token_cache::hash(token);
        if let Some(claims) = self.cache.get(&key, now()) {
            return Ok(claims);
        }
        let answer: Map<String, Value> = {
            let _slot = self
                .calls
                .acquire()
                .await
                .map_err(|_| DenyReason::Unavailable)?;
            self.fetcher
                .post_form(
                    &self.url,
                    &[("token", token), ("token_type_hint", "access_token")],
                    Some((&self.client_id, &self.secret)),
                )
                .await
                .map_err(|error| {
                    tracing::warn!(error = %crate::error_chain::ErrorChain(&error), "token introspection failed");
                    DenyReason::Unavailable
                })?
        };
        let claims = check(answer, issuer, audiences, leeway)?;
        let now = now();
        let until = now.saturating_add(self.cache_for);
        let until = match claims.get("exp").and_then(Value::as_u64) {
            Some(exp) => until.min(exp),
            None => until,
        };
        self.cache.keep(key, claims.clone(), until, now);
        Ok(claims)
    }
}

/// An introspection answer held to the same rules as a JWT: active, current, from
/// the issuer, for this resource (an answer without `aud` is refused: the MCP rules
/// want tokens bound to their resource).
fn check(
    answer: Map<String, Value>,
    issuer: &str,
    audiences: &[String],
    leeway: u64,
) -> Result<Map<String, Value>, DenyReason> {
    if answer.get("active") != Some(&Value::Bool(true)) {
        return Err(DenyReason::Invalid);
    }
    let now = now();
    // A time that is present but not a whole number of seconds is not ignored: the
    // answer is refused (fail closed).
    let time = |name: &str| match answer.get(name) {
        None => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or(DenyReason::Invalid),
    };
    if let Some(exp) = time("exp")?
        && exp.saturating_add(leeway) <= now
    {
        return Err(DenyReason::Expired);
    }
    if let Some(nbf) = time("nbf")?
        && nbf > now.saturating_add(leeway)
    {
        return Err(DenyReason::NotYetValid);
    }
    if let Some(iss) = answer.get("iss")
        && iss.as_str() != Some(issuer)
    {
        return Err(DenyReason::Issuer);
    }
    let aud_ok = match answer.get("aud") {
        Some(Value::String(aud)) => audiences.contains(aud),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|aud| audiences.iter().any(|a| a == aud)),
        _ => false,
    };
    if !aud_ok {
        return Err(DenyReason::Audience);
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn an_answer_must_be_active_current_and_for_this_resource() {
        let aud = ["https://mcp/mcp".to_string()];
        let exp = now() + 300;
        let ok = serde_json::json!({"active": true, "aud": "https://mcp/mcp", "iss": "https://idp", "exp": exp});
        assert!(check(answer(ok), "https://idp", &aud, 0).is_ok());
        let check = |v: Value| check(answer(v), "https://idp", &aud, 0).err();
        assert_eq!(
            check(serde_json::json!({"active": false})),
            Some(DenyReason::Invalid)
        );
        assert_eq!(
            check(serde_json::json!({"active": true, "aud": "https://other"})),
            Some(DenyReason::Audience)
        );
        assert_eq!(
            check(serde_json::json!({"active": true})),
            Some(DenyReason::Audience)
        );
        assert_eq!(
            check(
                serde_json::json!({"active": true, "aud": ["x", "https://mcp/mcp"], "iss": "https://evil"})
            ),
            Some(DenyReason::Issuer)
        );
        assert_eq!(
            check(serde_json::json!({"active": true, "aud": "https://mcp/mcp", "exp": 1})),
            Some(DenyReason::Expired)
        );
        assert_eq!(
            check(serde_json::json!({"active": true, "aud": "https://mcp/mcp", "exp": "never"})),
            Some(DenyReason::Invalid)
        );
    }
}
