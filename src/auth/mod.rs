//! Who may call, who is calling, and what the upstream is told about it.
//!
//! ```text
//! request ─▶ resource (bearer token → Identity, or 401/403 with WWW-Authenticate)
//!         ─▶ limit (per-identity token buckets, per JSON-RPC method → 429)
//!         ─▶ … chain …
//!         ─▶ credential (the client's Authorization removed; none, a static
//!            credential, a token-exchange token, or — said out loud — passthrough)
//!         ─▶ upstream
//! ```
//!
//! Each route has its own [`Access`]; a route that sets nothing gets the default: no
//! token check, no limits, and the client's `Authorization` never reaches the upstream.

pub mod credential;
pub mod fetch;
mod introspect;
pub mod jwks;
pub mod limit;
pub mod resource;
pub mod session;
mod token_cache;

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use serde::Deserialize;

pub use crate::identity::Identity;
pub use credential::{CredentialError, CredentialSettings, UpstreamCredential};
pub use limit::{RateLimitSettings, RateLimited, RateLimits};
pub use resource::{Denied, ResourceServer, ResourceSettings};

use crate::metrics::Metrics;

/// A route's access settings, as configured (`[auth]`, `[upstream_auth]`,
/// `[[rate_limit]]`; a route's own tables replace the top-level ones).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct AccessSettings {
    /// Resource-server mode: tokens are checked; `None`: anyone may call.
    pub resource: Option<ResourceSettings>,
    /// What the upstream gets in place of the client's `Authorization`.
    pub upstream: CredentialSettings,
    /// Per-identity rate limits.
    pub rate_limits: Vec<RateLimitSettings>,
}

/// Why access settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// `[auth]` is unusable.
    #[error("[auth]: {0}")]
    Resource(#[source] resource::SettingsError),
    /// `[upstream_auth]` is unusable.
    #[error("[upstream_auth]: {0}")]
    Credential(#[source] CredentialError),
    /// A `[[rate_limit]]` is unusable.
    #[error("[[rate_limit]]: {0}")]
    Limit(#[source] limit::LimitError),
    /// `[upstream_auth] mode = "exchange"` without `[auth]`: the client's token would be
    /// exchanged unchecked.
    #[error(
        "[upstream_auth] mode = \"exchange\" needs [auth]: sluice exchanges only tokens it has checked"
    )]
    ExchangeWithoutAuth,
    /// The HTTP client for the authorization server could not be made.
    #[error("cannot make the client for the authorization server: {0}")]
    Fetch(#[source] Box<fetch::FetchError>),
}

/// A route's access rules, running.
pub struct Access {
    resource: Option<ResourceServer>,
    /// Who owns each session (resource-server mode only: without it, nobody is known).
    sessions: session::SessionOwners,
    credential: UpstreamCredential,
    limits: RateLimits,
}

/// A request let in: who sent it, and the token it showed (for a token exchange;
/// never logged, recorded or forwarded unless passthrough was chosen).
pub struct Admitted {
    /// Who is calling.
    pub identity: Arc<Identity>,
    /// The bearer token, when the request had one.
    pub token: Option<String>,
}

impl Default for Access {
    /// No token check, no limits, no `Authorization` upstream.
    fn default() -> Self {
        Self {
            resource: None,
            sessions: session::SessionOwners::default(),
            credential: UpstreamCredential::default(),
            limits: RateLimits::default(),
        }
    }
}

impl Access {
    /// The running form of `settings` (secret files are read now: a missing one stops
    /// start-up, not the first request). `upstream_tls` is how the authorization
    /// server is reached over HTTPS (the upstream's trust settings).
    pub fn new(
        settings: &AccessSettings,
        upstream_tls: &crate::tls::UpstreamTls,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, AccessError> {
        // The authorization server's client is made only when something needs it:
        // reading the system's trust store can fail where no HTTPS is ever used.
        let fetcher = || fetch::Fetcher::new(upstream_tls);
        let resource = match &settings.resource {
            Some(s) => {
                let fetcher = fetcher().map_err(|e| AccessError::Fetch(Box::new(e)))?;
                let resource = ResourceServer::new(s, fetcher, metrics.clone())
                    .map_err(AccessError::Resource)?;
                Some(resource)
            }
            None => None,
        };
        if settings.upstream.mode == credential::CredentialMode::Exchange && resource.is_none() {
            // Exchanging whatever a client sends would make sluice a confused deputy:
            // sluice's own client credentials turning unchecked tokens into upstream
            // access.
            return Err(AccessError::ExchangeWithoutAuth);
        }
        let credential = UpstreamCredential::new(&settings.upstream, fetcher, metrics)
            .map_err(AccessError::Credential)?;
        let limits = RateLimits::new(&settings.rate_limits, metrics).map_err(AccessError::Limit)?;
        Ok(Self {
            resource,
            sessions: session::SessionOwners::default(),
            credential,
            limits,
        })
    }

    /// Sessions and their owners, when tokens are checked (`None`: no caller is known,
    /// so no session can be tied to one).
    pub fn sessions(&self) -> Option<&session::SessionOwners> {
        self.resource.is_some().then_some(&self.sessions)
    }

    /// The token check, when this route has one.
    pub fn resource(&self) -> Option<&ResourceServer> {
        self.resource.as_ref()
    }

    /// What the upstream gets instead of the client's `Authorization`.
    pub fn credential(&self) -> &UpstreamCredential {
        &self.credential
    }

    /// The per-identity limits.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// The protected-resource metadata, when `path` is where this route serves it.
    pub fn metadata_for(&self, path: &str) -> Option<http::Response<crate::http::ProxyBody>> {
        self.resource
            .as_ref()
            .filter(|r| r.metadata_path() == path)
            .map(ResourceServer::metadata_response)
    }

    /// Lets a request in, or says why not: with resource-server mode on, its bearer
    /// token must be valid for this resource; without, it is anonymous.
    pub async fn admit(
        &self,
        headers: &HeaderMap,
        client_addr: Option<IpAddr>,
    ) -> Result<Admitted, Denied> {
        match &self.resource {
            Some(resource) => resource.admit(headers, client_addr).await,
            None => Ok(Admitted {
                identity: Arc::new(Identity::anonymous(client_addr)),
                token: resource::bearer_token(headers).ok().flatten(),
            }),
        }
    }
}
