//! Translation between the proxy's types and the generated WIT types.
//!
//! Events move across by value (no copies on the hot path); the one bit the WIT record
//! cannot carry, whether the event had a `data:` line at all, is kept beside it.

use super::bindings::{self, SseEvent};
use super::message::Facts;
use crate::sse::Event;

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A client's message (POST body) on its way to the upstream server.
    ToServer,
    /// An upstream event or JSON response on its way to the client.
    ToClient,
}

impl Direction {
    /// A stable lower-case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ToServer => "to-server",
            Direction::ToClient => "to-client",
        }
    }
}

impl From<Direction> for bindings::Direction {
    fn from(d: Direction) -> Self {
        match d {
            Direction::ToServer => bindings::Direction::ToServer,
            Direction::ToClient => bindings::Direction::ToClient,
        }
    }
}

/// What the proxy knows about a stream, handed to `on-stream-start`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamMeta {
    /// Unique per process; appears in logs.
    pub stream_id: u64,
    /// The request's `Mcp-Session-Id`.
    pub session_id: Option<String>,
    /// HTTP method of the request.
    pub method: String,
    /// Request path without the query.
    pub path: String,
    /// JSON-RPC method of the request body, when it was a single message.
    pub rpc_method: Option<String>,
    /// The MCP protocol revision: the `MCP-Protocol-Version` header, or the one an
    /// `initialize` request offers. Plugins that parse messages need it because the
    /// message shapes differ between revisions.
    pub protocol_version: Option<String>,
    /// Who is calling (the validated token's subject, client, scopes and chosen
    /// claims, and the client's address). Tapes and logs carry it; 0.2 plugins read it
    /// (`context.caller`); the 0.1 contract has no place for it.
    pub identity: std::sync::Arc<crate::identity::Identity>,
    /// The route serving the exchange (`None`: the default upstream).
    pub route: Option<std::sync::Arc<str>>,
    /// The request's headers, which 0.2 plugins read only by a name the operator
    /// granted them (`context.header`). Never recorded, never printed.
    pub headers: RequestHeaders,
}

/// A request's headers as a plugin may be granted them. Their `Debug` names the
/// headers without their values: an `Authorization` among them must not reach a log
/// through a `?meta`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RequestHeaders(pub std::sync::Arc<http::HeaderMap>);

impl std::fmt::Debug for RequestHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl StreamMeta {
    pub(crate) fn to_wit(&self, direction: Direction) -> bindings::StreamInfo {
        bindings::StreamInfo {
            stream_id: self.stream_id,
            direction: direction.into(),
            session_id: self.session_id.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            rpc_method: self.rpc_method.clone(),
            protocol_version: self.protocol_version.clone(),
        }
    }
}

/// An event with nothing in it (and nothing allocated): a placeholder while the real
/// one is lent to a batch call.
pub(crate) fn empty_event() -> SseEvent {
    SseEvent {
        id: None,
        event: None,
        data: String::new(),
        retry: None,
    }
}

/// An event on its way through the chain, in WIT form, with its JSON-RPC facts once
/// something read them (until a plugin replaces the event).
pub(crate) struct InFlight {
    pub(crate) event: SseEvent,
    pub(crate) facts: Option<Facts>,
    had_data: bool,
}

impl InFlight {
    pub(crate) fn new(event: Event) -> Self {
        let had_data = event.data.is_some();
        Self {
            event: SseEvent {
                id: event.id,
                event: event.event,
                data: event.data.unwrap_or_default(),
                retry: event.retry,
            },
            facts: None,
            had_data,
        }
    }

    /// The event's JSON-RPC facts, read on first use.
    pub(crate) fn facts(&mut self) -> &Facts {
        self.facts
            .get_or_insert_with(|| Facts::of(&self.event.data))
    }

    /// A plugin's `modify`: the new event, whose facts are yet to be read.
    pub(crate) fn replace(&mut self, event: SseEvent) {
        self.event = event;
        self.facts = None;
    }

    /// Back to the proxy's form. An event that had no `data:` line keeps having none
    /// unless a plugin gave it some data.
    pub(crate) fn into_event(self) -> Event {
        let SseEvent {
            id,
            event,
            data,
            retry,
        } = self.event;
        let data = (self.had_data || !data.is_empty()).then_some(data);
        Event {
            id,
            event,
            data,
            retry,
        }
    }
}

/// True when a plugin put a line break (or, in an id, a NUL) into a single-line field.
/// The encoder strips them anyway; this lets the chain say so in the log.
pub(crate) fn has_unsafe_field(event: &SseEvent) -> bool {
    let bad = |s: &Option<String>, nul: bool| {
        s.as_deref()
            .is_some_and(|s| s.contains(['\r', '\n']) || (nul && s.contains('\0')))
    };
    bad(&event.id, true) || bad(&event.event, false)
}

/// The size an event counts for against the proxy's event limit: its field values
/// (`id`, `event`, `data`), the bytes a plugin controls; `retry` is a number.
pub(crate) fn event_bytes(event: &SseEvent) -> usize {
    let len = |s: &Option<String>| s.as_deref().map_or(0, str::len);
    len(&event.id)
        .saturating_add(len(&event.event))
        .saturating_add(event.data.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_size_counts_the_text_fields() {
        let ev = SseEvent {
            id: Some("12".into()),
            event: Some("msg".into()),
            data: "hello".into(),
            retry: Some(5000),
        };
        assert_eq!(event_bytes(&ev), 10);
    }

    #[test]
    fn an_event_without_data_keeps_having_none() {
        let ev = Event {
            id: Some("7".into()),
            ..Event::default()
        };
        assert_eq!(InFlight::new(ev.clone()).into_event(), ev);
    }

    #[test]
    fn an_empty_data_line_survives() {
        let ev = Event {
            data: Some(String::new()),
            ..Event::default()
        };
        assert_eq!(InFlight::new(ev.clone()).into_event(), ev);
    }

    #[test]
    fn data_given_by_a_plugin_appears() {
        let mut flight = InFlight::new(Event::default());
        flight.event.data = "new".into();
        assert_eq!(flight.into_event().data.as_deref(), Some("new"));
    }

    #[test]
    fn line_breaks_in_single_line_fields_are_noticed() {
        let mut ev = SseEvent {
            id: None,
            event: None,
            data: "a\nb".into(),
            retry: None,
        };
        assert!(!has_unsafe_field(&ev));
        ev.event = Some("x\ny".into());
        assert!(has_unsafe_field(&ev));
        ev.event = None;
        ev.id = Some("a\0".into());
        assert!(has_unsafe_field(&ev));
    }
}
