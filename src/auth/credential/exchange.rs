//! RFC 8693 token exchange: the client's token (issued for sluice) traded at the
//! authorization server for one issued for the upstream, so the upstream never holds a
//! token it could replay against sluice or anyone else.
//!
//! Answers are cached per client token until shortly before they expire. The cache is
//! keyed by the SHA-256 of the client token, never the token itself, and holds at most
//! [`MAX_ENTRIES`]. Two first requests with the same new token at the same moment may
//! each call the token endpoint (no call is made while holding the cache's lock); the
//! second answer simply replaces the first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{HeaderValue, Uri};
use serde::Deserialize;

use super::{CredentialError, ExchangeSettings, sensitive};
use crate::auth::fetch::Fetcher;
use crate::error_chain::ErrorChain;
use crate::metrics::Metrics;

/// `grant_type` of a token exchange.
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The type of the token sluice hands over (the client's access token), and the
/// default type asked for.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Most client tokens whose exchanged token is remembered. Past it, expired entries
/// go first, then the one expiring soonest.
pub const MAX_ENTRIES: usize = 10_000;

/// An exchanged token is used until this long before it expires (a request in flight
/// must not reach the upstream with a token that just died). A token living no longer
/// than this is used for its one request only.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// The token endpoint's answer (RFC 8693 §2.2.1).
#[derive(Deserialize)]
struct Answer {
    access_token: String,
    token_type: Option<String>,
    expires_in: Option<u64>,
}

/// One client token's exchanged credential.
struct Entry {
    value: HeaderValue,
    until: Instant,
}

/// A token exchange at one token endpoint, with its cache.
pub struct TokenExchange {
    url: Uri,
    client_id: String,
    client_secret: String,
    /// The form's fixed fields (audience, resource, scope, requested_token_type).
    fields: Vec<(&'static str, String)>,
    fetcher: Fetcher,
    metrics: Arc<Metrics>,
    cache: Mutex<HashMap<[u8; 32], Entry>>,
    /// Exchanges in flight at once: what clients can make sluice ask of the
    /// authorization server is bounded.
    calls: tokio::sync::Semaphore,
}

/// Token exchanges in flight at once; more wait for a slot.
const CALLS_AT_ONCE: usize = 16;

/// The longest an exchanged token is reused, whatever `expires_in` says (an absurd
/// lifetime must not overflow a clock).
const MAX_REUSE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl std::fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchange")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("client_secret", &format_args!("<redacted>"))
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

impl TokenExchange {
    /// An exchange at `url` (checked), authenticating as the settings' client with
    /// `client_secret` (read already).
    pub(super) fn new(
        settings: &ExchangeSettings,
        url: Uri,
        client_secret: String,
        fetcher: Fetcher,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut fields = vec![(
            "requested_token_type",
            settings
                .requested_token_type
                .clone()
                .unwrap_or_else(|| ACCESS_TOKEN_TYPE.to_string()),
        )];
        for (name, value) in [
            ("audience", &settings.audience),
            ("resource", &settings.resource),
            ("scope", &settings.scope),
        ] {
            if let Some(value) = value {
                fields.push((name, value.clone()));
            }
        }
        Self {
            url,
            client_id: settings.client_id.clone(),
            client_secret,
            fields,
            fetcher,
            metrics,
            cache: Mutex::new(HashMap::new()),
            calls: tokio::sync::Semaphore::new(CALLS_AT_ONCE),
        }
    }

    /// The `Authorization` value for the upstream on behalf of `token`: cached, or
    /// exchanged now.
    pub(super) async fn token_for(&self, token: &str) -> Result<HeaderValue, CredentialError> {
        let key = crate::auth::token_cache::hash(token);
        if let Some(value) = self.cached(&key) {
            self.metrics.token_exchange("cached");
            return Ok(value);
        }
        let slot = self.calls.acquire().await;
        // Another request for the same token may have exchanged it while this waited.
        if let Some(value) = self.cached(&key) {
            self.metrics.token_exchange("cached");
            return Ok(value);
        }
        let exchanged = self.exchange(token).await;
        drop(slot);
        match exchanged {
            Ok((value, lifetime)) => {
                self.metrics.token_exchange("exchanged");
                if let Some(usable) = lifetime.and_then(|l| l.checked_sub(EXPIRY_MARGIN)) {
                    self.remember(key, value.clone(), Instant::now() + usable.min(MAX_REUSE));
                }
                Ok(value)
            }
            Err(error) => {
                self.metrics.token_exchange("failed");
                tracing::warn!(
                    token_url = %self.url,
                    error = %ErrorChain(&error),
                    "token exchange failed; the request is not sent upstream"
                );
                Err(error)
            }
        }
    }

    fn cached(&self, key: &[u8; 32]) -> Option<HeaderValue> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(key)
            .filter(|entry| entry.until > Instant::now())
            .map(|entry| entry.value.clone())
    }

    fn remember(&self, key: [u8; 32], value: HeaderValue, until: Instant) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_ENTRIES && !cache.contains_key(&key) {
            let now = Instant::now();
            cache.retain(|_, entry| entry.until > now);
            if cache.len() >= MAX_ENTRIES
                && let Some(soonest) = cache
                    .iter()
                    .min_by_key(|(_, entry)| entry.until)
                    .map(|(key, _)| *key)
            {
                cache.remove(&soonest);
            }
        }
        cache.insert(key, Entry { value, until });
    }

    /// One call to the token endpoint: the header value and how long it lives (when
    /// the answer says).
    async fn exchange(
        &self,
        token: &str,
    ) -> Result<(HeaderValue, Option<Duration>), CredentialError> {
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token", token),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
        ];
        form.extend(self.fields.iter().map(|(k, v)| (*k, v.as_str())));
        let answer: Answer = self
            .fetcher
            .post_form(
                &self.url,
                &form,
                Some((&self.client_id, &self.client_secret)),
            )
            .await
            .map_err(|e| CredentialError::Exchange(Box::new(e)))?;
        // RFC 8693 §2.2.1: `Bearer` for an access token; `N_A` when the token issued
        // is not an access token (a JWT or an ID token asked for with
        // requested_token_type) — the upstream is still handed it as a bearer token,
        // which is what asking for it means. Anything else (DPoP, MAC) needs proof
        // sluice cannot make.
        match answer.token_type.as_deref() {
            Some(t) if t.eq_ignore_ascii_case("bearer") || t == "N_A" => {}
            Some(_) => {
                return Err(CredentialError::BadAnswer(
                    "token_type is neither Bearer nor N_A",
                ));
            }
            None => return Err(CredentialError::BadAnswer("the answer has no token_type")),
        }
        if answer.access_token.is_empty() {
            return Err(CredentialError::BadAnswer("access_token is empty"));
        }
        let value = sensitive(&format!("Bearer {}", answer.access_token)).ok_or(
            CredentialError::BadAnswer("access_token is not valid in an HTTP header"),
        )?;
        Ok((value, answer.expires_in.map(Duration::from_secs)))
    }

    /// How many client tokens have a remembered answer (expired ones included).
    #[cfg(test)]
    pub(super) fn cached_len(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
