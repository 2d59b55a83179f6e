//! The `interest` power: a plugin says, from `init`, which messages it wants, and the
//! chain calls it only for those. Declared once, by the instance made when the plugin
//! is loaded; the messages it does not want pass it untouched and cost no call.

use super::convert::Direction;
use super::message::{Facts, MessageKind};

/// The messages a plugin wants. The default wants everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interest {
    /// Messages going to the server.
    pub to_server: bool,
    /// Messages going to the client.
    pub to_client: bool,
    /// Only JSON-RPC messages of these methods (`None`: every message).
    pub methods: Option<Vec<String>>,
}

impl Default for Interest {
    fn default() -> Self {
        Self {
            to_server: true,
            to_client: true,
            methods: None,
        }
    }
}

impl Interest {
    /// True when the plugin wants every message going `direction` whatever it holds
    /// (no reading of facts needed to decide).
    pub(crate) fn wants_all(&self, direction: Direction) -> bool {
        self.wants_direction(direction) && self.methods.is_none()
    }

    /// True when it wants some messages going `direction`.
    pub(crate) fn wants_direction(&self, direction: Direction) -> bool {
        match direction {
            Direction::ToServer => self.to_server,
            Direction::ToClient => self.to_client,
        }
    }

    /// Whether it wants a message going `direction` with `facts`; `answers` is the
    /// method of the request a response answers, when the proxy knows it. A response
    /// whose request is unknown is wanted: never passed unexamined by a guess.
    pub(crate) fn wants(&self, direction: Direction, facts: &Facts, answers: Option<&str>) -> bool {
        if !self.wants_direction(direction) {
            return false;
        }
        let Some(methods) = &self.methods else {
            return true;
        };
        let named = |m: &str| methods.iter().any(|x| x == m);
        match facts.kind {
            MessageKind::Request | MessageKind::Notification => {
                facts.method.as_deref().is_some_and(named)
            }
            MessageKind::Response | MessageKind::Error => answers.is_none_or(named),
            MessageKind::Other => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_select_requests_and_the_answers_to_them() {
        let interest = Interest {
            methods: Some(vec!["tools/call".into()]),
            ..Interest::default()
        };
        let call = Facts::of(r#"{"id":1,"method":"tools/call"}"#);
        let list = Facts::of(r#"{"id":1,"method":"tools/list"}"#);
        let answer = Facts::of(r#"{"id":1,"result":{}}"#);
        let ping = Facts::of("ping");
        assert!(interest.wants(Direction::ToServer, &call, None));
        assert!(!interest.wants(Direction::ToServer, &list, None));
        assert!(interest.wants(Direction::ToClient, &answer, Some("tools/call")));
        assert!(!interest.wants(Direction::ToClient, &answer, Some("tools/list")));
        assert!(
            interest.wants(Direction::ToClient, &answer, None),
            "unknown: handed over"
        );
        assert!(!interest.wants(Direction::ToClient, &ping, None));
        let to_server = Interest {
            to_client: false,
            ..Interest::default()
        };
        assert!(!to_server.wants(Direction::ToClient, &ping, None));
        assert!(to_server.wants_all(Direction::ToServer));
    }
}
