//! Who is calling: what a validated access token says about its bearer, and where the
//! request came from. Every exchange has one (anonymous, with an address, when the
//! route does not check tokens); logs, tapes, rate limits and (in the next plugin
//! contract) plugins read it. It never holds the token itself.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The caller of one exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The token's `sub`: who the token speaks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The OAuth client the token was issued to (`client_id`, else `azp`, else
    /// Entra's `appid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The token's scopes (`scope`, or `scp` as a string or a list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The claims the operator asked for (`[auth] claims`), as the token has them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, serde_json::Value>,
    /// The client's address (the TCP peer; not a forwarding header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<IpAddr>,
}

impl Identity {
    /// A caller no token vouches for.
    pub fn anonymous(client_addr: Option<IpAddr>) -> Self {
        Self {
            client_addr,
            ..Self::default()
        }
    }

    /// Whom a per-caller limit counts: the subject when a token named one, else the
    /// client's address, else (an in-process client: `sluice stdio`) one shared key.
    pub fn limit_key(&self) -> String {
        match (&self.subject, &self.client_addr) {
            (Some(subject), _) => format!("sub:{subject}"),
            (None, Some(addr)) => format!("addr:{addr}"),
            (None, None) => "local".to_string(),
        }
    }
}
