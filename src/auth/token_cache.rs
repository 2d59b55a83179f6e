//! What sluice learned about a bearer token, kept for a while: a client sends the same
//! token on every request until it expires, and asking again each time costs a
//! signature verification (tens of microseconds) or an introspection call (a round
//! trip to the authorization server). Keyed by the token's SHA-256 (the token itself
//! is never kept); each entry has its own end, in Unix seconds; bounded in size.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};

/// Tokens kept at most; past it, the expired go, then all.
const ENTRIES: usize = 10_000;

/// A token's SHA-256: the key of its entry.
pub type TokenHash = [u8; 32];

/// The hash of `token`.
pub fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Seconds since the Unix epoch (0 for a clock before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Values by token, each until its own end.
#[derive(Debug)]
pub struct TokenCache<V> {
    entries: Mutex<HashMap<TokenHash, (u64, V)>>,
}

impl<V> Default for TokenCache<V> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> TokenCache<V> {
    /// The value kept for `key`'s token, if its end is after `now`.
    pub fn get(&self, key: &TokenHash, now: u64) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(until, _)| now < *until)
            .map(|(_, value)| value.clone())
    }

    /// Keeps `value` for `key`'s token until `until` (Unix seconds).
    pub fn keep(&self, key: TokenHash, value: V, until: u64, now: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= ENTRIES {
            entries.retain(|_, (until, _)| now < *until);
            if entries.len() >= ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (until, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_kept_until_its_end_and_not_longer() {
        let cache = TokenCache::default();
        let (a, b) = (hash("a"), hash("b"));
        cache.keep(a, 1, 1_060, 1_000);
        assert_eq!(cache.get(&a, 1_059), Some(1));
        assert_eq!(cache.get(&a, 1_060), None, "past its end");
        assert_eq!(cache.get(&b, 1_000), None);
    }

    #[test]
    fn a_full_cache_drops_the_expired_first() {
        let cache = TokenCache::default();
        for i in 0..ENTRIES {
            cache.keep(
                hash(&i.to_string()),
                i,
                if i == 0 { 2_000 } else { 1_001 },
                1_000,
            );
        }
        cache.keep(hash("new"), 7, 2_000, 1_500);
        assert_eq!(
            cache.get(&hash("0"), 1_500),
            Some(0),
            "a current entry stays"
        );
        assert_eq!(cache.get(&hash("new"), 1_500), Some(7));
    }
}
