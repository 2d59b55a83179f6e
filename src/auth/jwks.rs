//! The issuer's signing keys (a JWKS), fetched when first needed, kept for a while,
//! and fetched again when a token names a key not in it — at most so often, so that
//! tokens with made-up `kid`s cannot make sluice hammer the authorization server.
//!
//! Only signature keys of the asymmetric families are kept: an HMAC ("oct") key in
//! a JWKS is skipped, so no token can be checked with a shared secret the issuer
//! published, and a key is tried only with the algorithms its family and curve allow.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::Uri;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::fetch::{FetchError, Fetcher};
use crate::metrics::Metrics;

/// A verification key from the JWKS.
pub struct VerifyKey {
    /// Its `kid`.
    pub kid: Option<String>,
    /// The algorithms it may verify (its `alg` if it names one, else its family's).
    algorithms: Vec<Algorithm>,
    /// The key.
    pub key: DecodingKey,
}

impl VerifyKey {
    /// The key of `jwk`, if it is a signature key sluice can use.
    fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            return None;
        }
        let family: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => return None,
            },
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                vec![Algorithm::EdDSA]
            }
            // "oct": a shared secret has no place in a public key set.
            _ => return None,
        };
        let algorithms = match &jwk.common.key_algorithm {
            // Compared by name: the JWK's algorithm enum also names encryption ones.
            Some(named) => family
                .into_iter()
                .filter(|alg| format!("{alg:?}") == format!("{named:?}"))
                .collect(),
            None => family,
        };
        if algorithms.is_empty() {
            return None;
        }
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(Self {
            kid: jwk.common.key_id.clone(),
            algorithms,
            key,
        })
    }

    /// Whether this key may verify a token signed with `alg`.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg)
    }
}

/// The keys of one fetch.
struct Keys {
    keys: Vec<Arc<VerifyKey>>,
    /// When they were fetched (`None`: never).
    fetched: Option<Instant>,
}

/// How keys are found for a token.
#[derive(Debug, Clone, Copy)]
pub struct Refresh {
    /// Shortest time between two fetches.
    pub min_interval: Duration,
    /// Keys older than this are fetched again before use (kept if that fails).
    pub max_age: Duration,
}

/// The JWKS of one issuer.
pub struct KeySet {
    url: Uri,
    fetcher: Fetcher,
    refresh: Refresh,
    keys: ArcSwap<Keys>,
    /// Held while fetching (one fetch at a time); holds when the last one started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    metrics: Arc<Metrics>,
}

/// Why no key could be found for a token.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The JWKS has no key with this `kid` (after a fetch, or too soon for one).
    #[error("no key {kid:?} for {alg:?} in the issuer's key set")]
    Unknown {
        /// The token's `kid`.
        kid: Option<String>,
        /// The token's algorithm.
        alg: Algorithm,
    },
    /// No key set could be fetched yet (the fetch failed, or failed recently and is
    /// not tried again so soon): there are no keys to use.
    #[error("the issuer's key set cannot be fetched")]
    Unavailable,
}

#[derive(Deserialize)]
struct JwkSetText {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// The key set at `url`; nothing is fetched until a token needs it.
    pub fn new(url: Uri, fetcher: Fetcher, refresh: Refresh, metrics: Arc<Metrics>) -> Self {
        Self {
            url,
            fetcher,
            refresh,
            keys: ArcSwap::from_pointee(Keys {
                keys: Vec::new(),
                fetched: None,
            }),
            fetching: tokio::sync::Mutex::new(None),
            metrics,
        }
    }

    /// The keys that may verify a token with this `kid` and `alg` (every key of the
    /// algorithm when the token names none). Fetches the set when it was never fetched,
    /// is too old, or lacks the `kid` — each at most once per `min_interval`.
    pub async fn find(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<Arc<VerifyKey>>, KeyError> {
        let current = self.keys.load_full();
        let matching = matches(&current, kid, alg);
        let stale = current
            .fetched
            .is_none_or(|at| at.elapsed() >= self.refresh.max_age);
        if !matching.is_empty() && !stale {
            return Ok(matching);
        }
        if !matching.is_empty() {
            // Stale, but usable: one request refetches; the others go on with these
            // keys rather than wait for a slow authorization server.
            if let Ok(last) = self.fetching.try_lock() {
                let _ = self.refetch_locked(last, current.fetched).await;
                let refreshed = matches(&self.keys.load(), kid, alg);
                if !refreshed.is_empty() {
                    return Ok(refreshed);
                }
            }
            return Ok(matching);
        }
        let last = self.fetching.lock().await;
        let fetched = self.refetch_locked(last, current.fetched).await;
        let current = self.keys.load_full();
        let matching = matches(&current, kid, alg);
        match fetched {
            _ if !matching.is_empty() => Ok(matching),
            // No keys at all (never fetched, or every fetch failed): the token cannot
            // be checked, which is not the client's fault (503, not invalid_token).
            _ if current.fetched.is_none() => Err(KeyError::Unavailable),
            _ => Err(KeyError::Unknown {
                kid: kid.map(str::to_string),
                alg,
            }),
        }
    }

    /// Fetches the set again (holding `last`, the fetch lock) unless another fetch did
    /// since `seen` or the last one started less than `min_interval` ago. A failed
    /// fetch keeps the old keys.
    async fn refetch_locked(
        &self,
        mut last: tokio::sync::MutexGuard<'_, Option<Instant>>,
        seen: Option<Instant>,
    ) -> Result<(), FetchError> {
        if self.keys.load().fetched != seen {
            return Ok(()); // someone else fetched while this one waited
        }
        if last.is_some_and(|at| at.elapsed() < self.refresh.min_interval) {
            return Ok(());
        }
        *last = Some(Instant::now());
        match self.fetcher.get_json::<JwkSetText>(&self.url).await {
            Ok(set) => {
                let keys: Vec<Arc<VerifyKey>> = set
                    .keys
                    .into_iter()
                    .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
                    .filter_map(|jwk| VerifyKey::from_jwk(&jwk))
                    .map(Arc::new)
                    .collect();
                tracing::info!(url = %self.url, keys = keys.len(), "fetched the issuer's signing keys");
                self.metrics.jwks_fetch(true);
                self.keys.store(Arc::new(Keys {
                    keys,
                    fetched: Some(Instant::now()),
                }));
                Ok(())
            }
            Err(error) => {
                tracing::warn!(error = %crate::error_chain::ErrorChain(&error), "cannot fetch the issuer's signing keys; the ones held (if any) stay in use");
                self.metrics.jwks_fetch(false);
                Err(error)
            }
        }
    }
}

fn matches(keys: &Keys, kid: Option<&str>, alg: Algorithm) -> Vec<Arc<VerifyKey>> {
    keys.keys
        .iter()
        .filter(|key| key.allows(alg) && (kid.is_none() || key.kid.as_deref() == kid))
        .cloned()
        .collect()
}
