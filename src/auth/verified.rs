//! JWTs already verified. A client sends the same token on every request until it
//! expires; checking its signature each time costs tens of microseconds (an ES256
//! verification), so a verified token's claims are kept, keyed by the token's SHA-256,
//! and reused while the token is current — for at most [`REUSE_SECS`], so that a key
//! the issuer withdrew stops being honoured soon. What a reuse checks again is time:
//! the signature, issuer and audience of the same bytes cannot change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Tokens kept at most; past it, the expired go, then all.
const ENTRIES: usize = 10_000;

/// The longest a verification is reused, in seconds.
pub const REUSE_SECS: u64 = 300;

/// A token's SHA-256: the key of its entry (the token itself is never kept).
pub type TokenHash = [u8; 32];

/// The hash of `token`.
pub fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// A verified token's claims, shared by every request that shows it.
pub type Claims = Arc<Map<String, Value>>;

/// Verified tokens' claims, until when each may be reused (Unix seconds).
#[derive(Debug, Default)]
pub struct Verified {
    entries: Mutex<HashMap<TokenHash, (u64, Claims)>>,
}

impl Verified {
    /// The claims of `key`'s token if it was verified and is still current at `now`.
    pub fn get(&self, key: &TokenHash, now: u64) -> Option<Claims> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(until, _)| now < *until)
            .map(|(_, claims)| claims.clone())
    }

    /// Keeps a verified token's `claims` until `expires` (its `exp` plus the leeway),
    /// or [`REUSE_SECS`] from `now`, whichever is first.
    pub fn keep(&self, key: TokenHash, claims: Claims, expires: u64, now: u64) {
        let until = expires.min(now.saturating_add(REUSE_SECS));
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= ENTRIES {
            entries.retain(|_, (until, _)| now < *until);
            if entries.len() >= ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (until, claims));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verification_is_reused_while_the_token_is_current_and_not_longer() {
        let verified = Verified::default();
        let claims = Arc::new(Map::new());
        let (a, b) = (hash("a"), hash("b"));
        verified.keep(a, claims.clone(), 1_000 + 60, 1_000);
        assert!(verified.get(&a, 1_059).is_some());
        assert!(verified.get(&a, 1_060).is_none(), "past exp");
        verified.keep(b, claims, u64::MAX, 1_000);
        assert!(verified.get(&b, 1_000 + REUSE_SECS - 1).is_some());
        assert!(
            verified.get(&b, 1_000 + REUSE_SECS).is_none(),
            "past the reuse bound"
        );
        assert!(verified.get(&hash("c"), 1_000).is_none());
    }
}
