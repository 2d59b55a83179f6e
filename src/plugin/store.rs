//! The `state` power: a small key-value store per plugin and route.
//!
//! Shared by every instance of the plugin (one per exchange), so a value written while
//! serving one session is read while serving the next. Bounded three ways (entries,
//! bytes, one entry's size) and every entry expires, so no client can make it grow
//! without end; `add` is one step under the lock, so concurrent exchanges never lose an
//! increment. Kept across a reload of the same plugin name unless the operator says
//! otherwise ([`StateLimits::keep_on_reload`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The operator's bounds on one plugin's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLimits {
    /// The most keys.
    pub max_entries: usize,
    /// The most bytes of keys and values together.
    pub max_bytes: usize,
    /// The largest key plus value.
    pub max_entry_bytes: usize,
    /// The longest time an entry lives (also what a `ttl-ms` of 0 means).
    pub max_ttl: Duration,
    /// A reload that keeps the plugin's name keeps its store.
    pub keep_on_reload: bool,
}

impl Default for StateLimits {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 1 << 20,
            max_entry_bytes: 16 << 10,
            max_ttl: Duration::from_secs(3600),
            keep_on_reload: true,
        }
    }
}

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Key plus value over [`StateLimits::max_entry_bytes`].
    #[error("the entry is larger than the plugin's max_entry_bytes")]
    TooLarge,
    /// The store is at [`StateLimits::max_entries`] or [`StateLimits::max_bytes`].
    #[error("the plugin's state store is full")]
    Full,
}

struct Entry {
    value: String,
    expires: Instant,
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, Entry>,
    bytes: usize,
}

impl Entries {
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.map.get(key).is_some_and(|e| e.expires <= now) {
            self.remove(key);
        }
        self.map.get_mut(key)
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= key.len() + old.value.len();
        }
    }

    fn purge_expired(&mut self, now: Instant) {
        let bytes = &mut self.bytes;
        self.map.retain(|key, entry| {
            let keep = entry.expires > now;
            if !keep {
                *bytes -= key.len() + entry.value.len();
            }
            keep
        });
    }
}

/// One plugin's store on one route.
pub struct StateStore {
    limits: StateLimits,
    entries: Mutex<Entries>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("limits", &self.limits)
            .field("entries", &self.len())
            .finish()
    }
}

impl StateStore {
    /// An empty store.
    pub fn new(limits: StateLimits) -> Self {
        Self {
            limits,
            entries: Mutex::new(Entries::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Entries held now (expired ones not yet purged included).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn ttl(&self, ttl_ms: u64) -> Duration {
        match Duration::from_millis(ttl_ms) {
            ttl if ttl.is_zero() || ttl > self.limits.max_ttl => self.limits.max_ttl,
            ttl => ttl,
        }
    }

    /// The value under `key`, unless it expired.
    pub fn get(&self, key: &str) -> Option<String> {
        self.lock()
            .live(key, Instant::now())
            .map(|e| e.value.clone())
    }

    /// Removes `key`.
    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Sets `key` to `value` for `ttl_ms` (0 or over the cap: the cap).
    pub fn set(&self, key: &str, value: String, ttl_ms: u64) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut entries = self.lock();
        self.put_locked(&mut entries, key, value, now + self.ttl(ttl_ms), now)
    }

    /// Adds `delta` to the integer under `key` (0 when absent, expired or not an
    /// integer), saturating; a new entry lives `ttl_ms`, an existing one keeps its
    /// expiry.
    pub fn add(&self, key: &str, delta: i64, ttl_ms: u64) -> Result<i64, StoreError> {
        let now = Instant::now();
        let mut entries = self.lock();
        let (current, expires) = match entries.live(key, now) {
            Some(entry) => (entry.value.parse::<i64>().unwrap_or(0), entry.expires),
            None => (0, now + self.ttl(ttl_ms)),
        };
        let value = current.saturating_add(delta);
        self.put_locked(&mut entries, key, value.to_string(), expires, now)?;
        Ok(value)
    }

    fn put_locked(
        &self,
        entries: &mut Entries,
        key: &str,
        value: String,
        expires: Instant,
        now: Instant,
    ) -> Result<(), StoreError> {
        let size = key.len() + value.len();
        if size > self.limits.max_entry_bytes {
            return Err(StoreError::TooLarge);
        }
        let old = entries
            .live(key, now)
            .map_or(0, |e| key.len() + e.value.len());
        let fits = |e: &Entries| {
            let entries_ok = old > 0 || e.map.len() < self.limits.max_entries;
            entries_ok && e.bytes - old + size <= self.limits.max_bytes
        };
        if !fits(entries) {
            // Only a full store pays for the sweep.
            entries.purge_expired(now);
            if !fits(entries) {
                return Err(StoreError::Full);
            }
        }
        entries.bytes = entries.bytes - old + size;
        entries
            .map
            .insert(key.to_string(), Entry { value, expires });
        Ok(())
    }
}

/// The stores of one route's plugins, by plugin name: what lets a store outlive the
/// chain that made it (a reload keeps a name's store when the limits allow).
#[derive(Debug, Default)]
pub struct StateStores {
    stores: Mutex<HashMap<String, Arc<StateStore>>>,
}

impl StateStores {
    /// Forgets the stores of plugins not named in `names` (removed from the chain by a
    /// reload): a removed plugin's state is not kept for ever.
    pub fn keep_only<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let names: Vec<&str> = names.into_iter().collect();
        self.stores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|name, _| names.contains(&name.as_str()));
    }

    /// The store of plugin `name`: the one it had, when it is to be kept and its
    /// limits are unchanged; a new one otherwise.
    pub fn for_plugin(&self, name: &str, limits: StateLimits) -> Arc<StateStore> {
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if limits.keep_on_reload
            && let Some(store) = stores.get(name)
            && store.limits == limits
        {
            return store.clone();
        }
        let store = Arc::new(StateStore::new(limits));
        stores.insert(name.to_string(), store.clone());
        store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> StateLimits {
        StateLimits {
            max_entries: 3,
            max_bytes: 100,
            max_entry_bytes: 40,
            ..StateLimits::default()
        }
    }

    #[test]
    fn values_are_kept_replaced_and_removed() {
        let store = StateStore::new(limits());
        assert_eq!(store.get("a"), None);
        store.set("a", "1".into(), 0).unwrap();
        store.set("a", "22".into(), 0).unwrap();
        assert_eq!(store.get("a").as_deref(), Some("22"));
        store.remove("a");
        assert_eq!(store.get("a"), None);
        assert!(store.is_empty());
    }

    #[test]
    fn bounds_refuse_what_does_not_fit() {
        let store = StateStore::new(limits());
        assert_eq!(store.set("k", "x".repeat(40), 0), Err(StoreError::TooLarge));
        for key in ["a", "b", "c"] {
            store.set(key, "v".into(), 0).unwrap();
        }
        assert_eq!(store.set("d", "v".into(), 0), Err(StoreError::Full));
        // Replacing an existing key needs no new entry.
        store.set("a", "w".into(), 0).unwrap();
        let store = StateStore::new(limits());
        store.set("a", "x".repeat(35), 0).unwrap();
        store.set("b", "x".repeat(35), 0).unwrap();
        assert_eq!(store.set("c", "x".repeat(35), 0), Err(StoreError::Full));
    }

    #[test]
    fn expired_entries_are_gone_and_make_room() {
        let store = StateStore::new(limits());
        for key in ["a", "b", "c"] {
            store.set(key, "v".into(), 1).unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(store.get("a"), None);
        store.set("d", "v".into(), 0).unwrap();
        assert_eq!(store.add("n", 2, 1).unwrap(), 2);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            store.add("n", 2, 0).unwrap(),
            2,
            "an expired counter starts again"
        );
    }

    #[test]
    fn add_counts_from_every_thread() {
        let store = Arc::new(StateStore::new(StateLimits::default()));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        store.add("calls", 1, 0).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(store.get("calls").as_deref(), Some("4000"));
        store.set("word", "x".into(), 0).unwrap();
        assert_eq!(
            store.add("word", 5, 0).unwrap(),
            5,
            "not an integer: from 0"
        );
    }

    #[test]
    fn a_reload_keeps_the_store_of_the_same_name() {
        let stores = StateStores::default();
        let first = stores.for_plugin("p", limits());
        first.set("k", "v".into(), 0).unwrap();
        assert_eq!(
            stores.for_plugin("p", limits()).get("k").as_deref(),
            Some("v")
        );
        let fresh = StateLimits {
            keep_on_reload: false,
            ..limits()
        };
        assert_eq!(stores.for_plugin("p", fresh).get("k"), None);
        assert_eq!(stores.for_plugin("q", limits()).get("k"), None);
    }
}
