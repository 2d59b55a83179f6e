//! Per-identity rate limits: a token bucket per caller (the token's subject, else the
//! client's address), per route, optionally per JSON-RPC method.
//!
//! What counts, per message of a body:
//! - a **request** (a `method` and an `id`) takes a token from every limit without a
//!   `method` and from every limit naming its method. `initialize` is a request like
//!   any other: a new session is the costliest thing a caller can make the upstream
//!   do, and exempting it would let a caller at its limit open sessions without end;
//! - a **notification** (a `method`, no `id`) takes a token only from a limit naming
//!   its method. A notification gets no answer, so a client rarely reads a 429 for
//!   one, and refusing `notifications/initialized` or `notifications/cancelled`
//!   breaks a handshake or leaves work running upstream: a method-less limit that
//!   counted them would make a small limit break sessions rather than slow them;
//! - a **response** (to a server's request: sampling, elicitation) never counts: it
//!   answers work the server asked for.
//!
//! Bodies with no JSON-RPC message (a `GET` opening a stream, a `DELETE`) take
//! nothing. A batch takes one token per counted message, all or nothing across every
//! limit of the route: a refused body takes no token from any bucket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;

use super::Identity;
use crate::mcp::client::ClientMessage;
use crate::metrics::Metrics;

/// How many callers a limit tracks by default (`max_callers`): about 100 bytes each.
pub const DEFAULT_MAX_CALLERS: usize = 100_000;

/// A `[[rate_limit]]` (or `[[route.rate_limit]]`): `requests` per `per_secs`, in
/// bursts of at most `burst`, per caller.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// The JSON-RPC method this limit counts (`tools/call`); `None`: every request.
    #[serde(default)]
    pub method: Option<String>,
    /// Tokens refilled per `per_secs` (at least 1).
    pub requests: u32,
    /// The refill period in seconds (at least 1).
    pub per_secs: u32,
    /// The bucket's capacity: how many messages a caller may send at once after a
    /// quiet spell. Default: `requests`.
    #[serde(default)]
    pub burst: Option<u32>,
    /// How many callers this limit keeps a bucket for at most (default
    /// [`DEFAULT_MAX_CALLERS`]); see [`Limit`] for what happens beyond.
    #[serde(default)]
    pub max_callers: Option<usize>,
}

/// Why a rate limit cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// `requests` is 0: nothing could ever pass.
    #[error("limit {index} ({method}): requests must be at least 1")]
    NoRequests {
        /// Which `[[rate_limit]]`, from 1.
        index: usize,
        /// Its method, or `*`.
        method: String,
    },
    /// `per_secs` is 0: the bucket would refill infinitely fast.
    #[error("limit {index} ({method}): per_secs must be at least 1")]
    NoPeriod {
        /// Which `[[rate_limit]]`, from 1.
        index: usize,
        /// Its method, or `*`.
        method: String,
    },
    /// `burst` is 0: nothing could ever pass.
    #[error("limit {index} ({method}): burst must be at least 1")]
    NoBurst {
        /// Which `[[rate_limit]]`, from 1.
        index: usize,
        /// Its method, or `*`.
        method: String,
    },
    /// `max_callers` is 0: no caller could be tracked.
    #[error("limit {index} ({method}): max_callers must be at least 1")]
    NoCallers {
        /// Which `[[rate_limit]]`, from 1.
        index: usize,
        /// Its method, or `*`.
        method: String,
    },
    /// `method = ""`: no message has it (leave `method` out to count every request).
    #[error("limit {index}: method is empty (leave it out to count every request)")]
    EmptyMethod {
        /// Which `[[rate_limit]]`, from 1.
        index: usize,
    },
}

/// A request over a limit.
#[derive(Debug, thiserror::Error)]
#[error("rate limit exceeded for {method}; retry after {}s", retry_after_secs(*retry_after))]
pub struct RateLimited {
    /// When the caller may try again (the longest wait of the limits it is over).
    pub retry_after: Duration,
    /// The method of the limit that decided `retry_after`, or `*` for a method-less one.
    pub method: String,
}

/// Whole seconds, rounded up, at least 1: a client that waits this long gets its tokens.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The running limits of a route.
#[derive(Debug, Default)]
pub struct RateLimits {
    limits: Vec<Limit>,
}

impl RateLimits {
    /// The running form of `settings`, or the first reason one of them is unusable.
    pub fn new(settings: &[RateLimitSettings], metrics: &Arc<Metrics>) -> Result<Self, LimitError> {
        let limits = settings
            .iter()
            .enumerate()
            .map(|(i, s)| Limit::new(i + 1, s, metrics))
            .collect::<Result<_, _>>()?;
        Ok(Self { limits })
    }

    /// Whether any limit applies (a route without `[[rate_limit]]` has none).
    pub fn is_active(&self) -> bool {
        !self.limits.is_empty()
    }

    /// Takes one token per counted message of the body (see the module's rules) from
    /// each of `identity`'s buckets, all or nothing, or says when to come back.
    pub fn check(
        &self,
        identity: &Identity,
        messages: &[ClientMessage],
        now: Instant,
    ) -> Result<(), RateLimited> {
        if self.limits.is_empty() {
            return Ok(());
        }
        let wanted: Vec<(&Limit, u32)> = self
            .limits
            .iter()
            .map(|limit| (limit, limit.counted(messages)))
            .filter(|(_, n)| *n > 0)
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let caller = identity.limit_key();
        // Locked in configuration order (no two checks can wait on each other), and
        // held until every limit has said yes: two batches of one caller cannot each
        // pass half the limits.
        let mut tables: Vec<MutexGuard<'_, Callers>> = wanted
            .iter()
            .map(|(limit, _)| limit.callers.lock().unwrap_or_else(PoisonError::into_inner))
            .collect();
        let mut refused: Option<(Duration, &Limit)> = None;
        let mut full_at = Vec::with_capacity(wanted.len());
        for ((limit, n), table) in wanted.iter().zip(&tables) {
            match limit.bucket.take(table.full_at(&caller), *n, now) {
                Ok(at) => full_at.push(at),
                Err(wait) => {
                    if refused.is_none_or(|(longest, _)| wait > longest) {
                        refused = Some((wait, limit));
                    }
                }
            }
        }
        if let Some((retry_after, limit)) = refused {
            drop(tables);
            limit.refused.inc();
            tracing::info!(
                caller = %caller,
                method = %limit.label,
                retry_after_secs = retry_after_secs(retry_after),
                "rate limit exceeded"
            );
            return Err(RateLimited {
                retry_after,
                method: limit.label.clone(),
            });
        }
        for (table, at) in tables.iter_mut().zip(full_at) {
            table.set(&caller, at, now);
        }
        Ok(())
    }
}

/// One limit: its rule, its callers' buckets and its refusal counter.
///
/// Memory is bounded by `max_callers`. A caller whose bucket is full again is
/// forgotten when room is needed: a full bucket and no bucket mean the same, so
/// forgetting it changes no answer. When every tracked bucket is still draining, the
/// ones closest to full are forgotten (evicted) until an eighth of the room is free.
/// Eviction hands those callers a full bucket early; refusing new callers instead
/// (failing closed) would let anyone with many addresses (an IPv6 prefix holds
/// billions) lock every other caller out, while a caller with that many addresses
/// already has a fresh bucket per address either way. Evicting in eighths makes
/// the scan's cost a few steps per new caller.
#[derive(Debug)]
struct Limit {
    method: Option<String>,
    /// The metric label and log field: the method, or `*`.
    label: String,
    bucket: Bucket,
    callers: Mutex<Callers>,
    refused: Counter,
}

impl Limit {
    fn new(index: usize, s: &RateLimitSettings, metrics: &Metrics) -> Result<Self, LimitError> {
        let label = s.method.clone().unwrap_or_else(|| "*".into());
        let method = label.clone();
        if s.method.as_deref() == Some("") {
            return Err(LimitError::EmptyMethod { index });
        }
        if s.requests == 0 {
            return Err(LimitError::NoRequests { index, method });
        }
        if s.per_secs == 0 {
            return Err(LimitError::NoPeriod { index, method });
        }
        let burst = s.burst.unwrap_or(s.requests);
        if burst == 0 {
            return Err(LimitError::NoBurst { index, method });
        }
        let max_callers = s.max_callers.unwrap_or(DEFAULT_MAX_CALLERS);
        if max_callers == 0 {
            return Err(LimitError::NoCallers { index, method });
        }
        Ok(Self {
            method: s.method.clone(),
            refused: metrics.rate_limited(&label),
            label,
            bucket: Bucket::new(s.requests, Duration::from_secs(s.per_secs.into()), burst),
            callers: Mutex::new(Callers::new(max_callers)),
        })
    }

    /// How many tokens `messages` take from this limit.
    fn counted(&self, messages: &[ClientMessage]) -> u32 {
        let n = messages
            .iter()
            .filter(|m| match (&self.method, &m.method) {
                (_, None) => false,
                (None, Some(_)) => m.request_id.is_some(),
                (Some(limit), Some(method)) => limit == method,
            })
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// The rule of a token bucket: `requests` tokens back per `per`, at most `burst`.
///
/// A bucket is kept as one instant: when it will be full again (GCRA's "theoretical
/// arrival time"). Its tokens at `now` are `burst − (full_at − now) / interval`; taking
/// `n` moves `full_at` by `n` intervals. Exact (integer nanoseconds, no drift), and a
/// bucket with `full_at <= now` is full, which is how idle buckets are told apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    requests: u32,
    per: Duration,
    burst: u32,
}

impl Bucket {
    /// `requests` per `per`, in bursts of at most `burst` (all at least 1).
    pub fn new(requests: u32, per: Duration, burst: u32) -> Self {
        Self {
            requests,
            per,
            burst,
        }
    }

    /// How long `n` tokens take to come back.
    fn refill(&self, n: u32) -> Duration {
        let nanos = self.per.as_nanos() * u128::from(n) / u128::from(self.requests);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Takes `n` tokens at `now` from the bucket full at `full_at` (`None`: full):
    /// the new `full_at`, or how long until `n` tokens are there. `n` over the burst
    /// can never pass: its wait is the time to fill the bucket (the client then learns
    /// the batch must be split, not that it is close).
    pub fn take(
        &self,
        full_at: Option<Instant>,
        n: u32,
        now: Instant,
    ) -> Result<Instant, Duration> {
        let from = full_at.map_or(now, |at| at.max(now));
        let after = from + self.refill(n);
        let capacity = self.refill(self.burst);
        let ahead = after - now;
        if n > self.burst {
            return Err((from - now).max(self.refill(1)));
        }
        if ahead <= capacity {
            Ok(after)
        } else {
            Err(ahead - capacity)
        }
    }
}

/// The buckets of one limit's callers: when each will be full again.
#[derive(Debug)]
struct Callers {
    full_at: HashMap<String, Instant>,
    max: usize,
}

impl Callers {
    fn new(max: usize) -> Self {
        Self {
            full_at: HashMap::new(),
            max,
        }
    }

    fn full_at(&self, caller: &str) -> Option<Instant> {
        self.full_at.get(caller).copied()
    }

    /// Records `caller`'s bucket, making room first when the caller is new and the
    /// table is full.
    fn set(&mut self, caller: &str, at: Instant, now: Instant) {
        if let Some(slot) = self.full_at.get_mut(caller) {
            *slot = at;
            return;
        }
        if self.full_at.len() >= self.max {
            self.make_room(now);
        }
        self.full_at.insert(caller.to_string(), at);
    }

    /// Forgets every full bucket; if that frees less than an eighth of the room,
    /// forgets the buckets closest to full until it does.
    fn make_room(&mut self, now: Instant) {
        self.full_at.retain(|_, at| *at > now);
        let target = self.max - (self.max / 8).max(1);
        if self.full_at.len() <= target {
            return;
        }
        let excess = self.full_at.len() - target;
        let mut ats: Vec<Instant> = self.full_at.values().copied().collect();
        // The `excess`-th earliest `full_at`: forget that one and every earlier one.
        let (_, cut, _) = ats.select_nth_unstable(excess - 1);
        let cut = *cut;
        // Every bucket before `cut` goes, and as many at `cut` as make `excess`.
        let mut ties = excess - ats.iter().filter(|at| **at < cut).count();
        self.full_at.retain(|_, at| {
            if *at < cut {
                false
            } else if *at == cut && ties > 0 {
                ties -= 1;
                false
            } else {
                true
            }
        });
        let forgotten = excess;
        tracing::warn!(
            tracked = self.full_at.len(),
            max = self.max,
            evicted = forgotten,
            "rate limit: more callers than max_callers; the buckets closest to full were forgotten"
        );
    }
}

#[cfg(test)]
mod tests;
