//! What a 0.2 plugin can ask about the message it is called with (`message` resource).
//!
//! The message stays the host's: its text is copied into the plugin only when the
//! plugin calls `data()`, and its JSON-RPC facts (kind, method, id) are read from the
//! text once, the first time anyone asks: the plugin, or the chain deciding whether a
//! plugin that declared an interest wants it.

use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::bindings::SseEvent;
use super::convert::Direction;

/// What a message is, as JSON-RPC sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// `method` and `id`.
    Request,
    /// `method`, no `id`.
    Notification,
    /// `id` and `result`.
    Response,
    /// `id` and `error`.
    Error,
    /// Not a JSON-RPC message.
    Other,
}

/// A message's JSON-RPC facts, read from its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Request, notification, response, error or other.
    pub kind: MessageKind,
    /// The message's own `method` (requests and notifications).
    pub method: Option<String>,
    /// The `id` as JSON text.
    pub id: Option<String>,
}

impl Facts {
    /// Reads the top level of `data` (one JSON object; anything else is `Other`).
    pub fn of(data: &str) -> Self {
        let other = Facts {
            kind: MessageKind::Other,
            method: None,
            id: None,
        };
        if !data.trim_start().starts_with('{') {
            return other;
        }
        let Ok(head) = serde_json::from_str::<Head<'_>>(data) else {
            return other;
        };
        let id = head.id.map(|id| id.get().to_string());
        let kind = match (&head.method, &id, head.result, head.error) {
            (Some(_), Some(_), _, _) => MessageKind::Request,
            (Some(_), None, _, _) => MessageKind::Notification,
            (None, Some(_), true, false) => MessageKind::Response,
            (None, Some(_), false, true) => MessageKind::Error,
            _ => return other,
        };
        Facts {
            kind,
            method: head.method,
            id,
        }
    }
}

/// The members of a JSON-RPC message the facts need; the rest is skipped unread.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(default)]
    method: Option<String>,
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present")]
    result: bool,
    #[serde(default, deserialize_with = "present")]
    error: bool,
}

/// True for a member that is there, whatever its value (`"result": null` included).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// The message a call is about, lent to the store for the call's duration (moved in,
/// not copied, and moved back after).
pub(crate) struct Current {
    pub(crate) event: SseEvent,
    pub(crate) direction: Direction,
    facts: OnceLock<Facts>,
}

impl Current {
    pub(crate) fn new(event: SseEvent, direction: Direction, facts: Option<Facts>) -> Self {
        let cell = OnceLock::new();
        if let Some(facts) = facts {
            let _ = cell.set(facts);
        }
        Self {
            event,
            direction,
            facts: cell,
        }
    }

    /// The facts, read on first use.
    pub(crate) fn facts(&self) -> &Facts {
        self.facts.get_or_init(|| Facts::of(&self.event.data))
    }

    /// The facts if something read them (handed back to the chain, which may need them
    /// for the next plugin's interest).
    pub(crate) fn into_parts(self) -> (SseEvent, Option<Facts>) {
        (self.event, self.facts.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_told_apart() {
        let kind = |s: &str| Facts::of(s).kind;
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#),
            MessageKind::Request
        );
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#),
            MessageKind::Notification
        );
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","id":"a","result":null}"#),
            MessageKind::Response
        );
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","id":2,"error":{"code":1}}"#),
            MessageKind::Error
        );
        assert_eq!(kind("ping"), MessageKind::Other);
        assert_eq!(kind("[1,2]"), MessageKind::Other);
        assert_eq!(kind(r#"{"id":1}"#), MessageKind::Other);
        assert_eq!(
            kind(r#"{"id":1,"result":1,"error":{}}"#),
            MessageKind::Other
        );
        let facts = Facts::of(r#"{"id":"x-1","method":"tools/list","params":{"method":"no"}}"#);
        assert_eq!(facts.method.as_deref(), Some("tools/list"));
        assert_eq!(facts.id.as_deref(), Some("\"x-1\""));
    }
}
