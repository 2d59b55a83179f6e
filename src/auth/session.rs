//! Sessions belong to their callers. Behind sluice the upstream no longer sees who is
//! calling (the client's token is not passed on), so it cannot tie an
//! `Mcp-Session-Id` to a user; sluice does, in resource-server mode: a session is
//! bound to the caller whose request created it (the upstream's answer named it), or
//! else to the first caller that uses it, and another caller presenting it is answered
//! as if it did not exist. A session id that leaked (a log, a proxy) is then no way
//! into someone else's session.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::identity::Identity;

/// Sessions tracked at most; past it, new sessions are not bound (logged once), so
/// that a flood of sessions cannot grow memory or unbind anyone's.
const MAX_SESSIONS: usize = 100_000;

/// Which caller each session belongs to.
#[derive(Debug, Default)]
pub struct SessionOwners {
    owners: Mutex<HashMap<String, String>>,
}

impl SessionOwners {
    /// Whether `identity` may use `session`: yes if it owns it, or if nobody does yet
    /// (then it does from now on).
    pub fn admit(&self, session: &str, identity: &Identity) -> bool {
        let caller = identity.limit_key();
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        match owners.get(session) {
            Some(owner) => *owner == caller,
            None => {
                bind(&mut owners, session, caller);
                true
            }
        }
    }

    /// The upstream created `session` for `identity`.
    pub fn created(&self, session: &str, identity: &Identity) {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        owners
            .entry(session.to_string())
            .or_insert_with(|| identity.limit_key());
    }

    /// `session` ended (its owner's DELETE was accepted).
    pub fn ended(&self, session: &str) {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        owners.remove(session);
    }
}

fn bind(owners: &mut HashMap<String, String>, session: &str, caller: String) {
    if owners.len() >= MAX_SESSIONS {
        if owners.len() == MAX_SESSIONS {
            tracing::warn!(
                sessions = MAX_SESSIONS,
                "too many sessions to bind to their callers; new ones are not bound"
            );
        }
        return;
    }
    owners.insert(session.to_string(), caller);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(sub: &str) -> Identity {
        Identity {
            subject: Some(sub.into()),
            ..Identity::default()
        }
    }

    #[test]
    fn a_session_is_its_creators_or_its_first_users() {
        let owners = SessionOwners::default();
        owners.created("s1", &caller("alice"));
        assert!(owners.admit("s1", &caller("alice")));
        assert!(!owners.admit("s1", &caller("bob")));
        assert!(owners.admit("s2", &caller("bob")), "first use binds");
        assert!(!owners.admit("s2", &caller("alice")));
        owners.ended("s1");
        assert!(
            owners.admit("s1", &caller("bob")),
            "an ended session is free"
        );
    }
}
