//! Per-identity rate limits: a token bucket per caller (the token's subject, else the
//! client's address), per route, optionally per JSON-RPC method.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::Identity;
use crate::mcp::jsonrpc::Summary;
use crate::metrics::Metrics;

/// A `[[rate_limit]]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {}

/// Why a rate limit cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {}

/// A request over a limit.
#[derive(Debug, thiserror::Error)]
#[error("rate limit exceeded; retry after {}s", retry_after.as_secs().max(1))]
pub struct RateLimited {
    /// When the caller may try again.
    pub retry_after: Duration,
}

/// The running limits of a route.
#[derive(Debug, Default)]
pub struct RateLimits {}

impl RateLimits {
    /// The running form of `settings`.
    pub fn new(
        _settings: &[RateLimitSettings],
        _metrics: &Arc<Metrics>,
    ) -> Result<Self, LimitError> {
        Ok(Self {})
    }

    /// Takes one token per request in the body from `identity`'s buckets, or says
    /// when to come back.
    pub fn check(&self, _identity: &Identity, _summary: &Summary) -> Result<(), RateLimited> {
        Ok(())
    }
}
