//! What the upstream is told about the caller. The client's `Authorization` is meant
//! for sluice (MCP: "no token passthrough"), so it never goes upstream unless the
//! operator chose passthrough; the upstream gets nothing, a static credential, or a
//! token from an RFC 8693 token exchange instead.

use std::sync::Arc;

use http::{HeaderMap, header};
use serde::Deserialize;

use super::fetch::Fetcher;
use crate::metrics::Metrics;

/// `[upstream_auth]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CredentialSettings {
    /// What the upstream gets.
    #[serde(default)]
    pub mode: CredentialMode,
}

impl CredentialSettings {
    /// Relative file names resolved against `dir` (the config file's directory).
    pub fn resolve_paths(&mut self, dir: &std::path::Path) {
        let _ = dir;
    }
}

/// `[upstream_auth] mode`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialMode {
    /// No `Authorization` at all.
    #[default]
    None,
}

/// Why a credential cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {}

/// The running form of [`CredentialSettings`].
#[derive(Debug, Default)]
pub enum UpstreamCredential {
    /// No `Authorization` upstream.
    #[default]
    None,
}

impl UpstreamCredential {
    /// The running form of `settings`.
    pub fn new(
        settings: &CredentialSettings,
        _fetcher: Fetcher,
        _metrics: &Arc<Metrics>,
    ) -> Result<Self, CredentialError> {
        match settings.mode {
            CredentialMode::None => Ok(Self::None),
        }
    }

    /// Sets what the upstream gets in `headers` (the request's headers on their way
    /// upstream); `token` is the client's bearer token, if it sent one.
    pub async fn apply(
        &self,
        headers: &mut HeaderMap,
        _token: Option<&str>,
    ) -> Result<(), CredentialError> {
        headers.remove(header::AUTHORIZATION);
        Ok(())
    }
}
