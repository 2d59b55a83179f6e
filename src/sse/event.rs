//! The SSE data model shared by the decoder, the encoder and the rest of the proxy.
//!
//! The model is deliberately "what was on the wire", not "what a browser would see": a proxy has to
//! forward what the upstream said, so nothing is inherited from earlier events and absent fields
//! stay distinguishable from empty ones.

/// One decoded SSE event, as it was on the wire (fields not inherited from earlier events).
///
/// Every field is an `Option` because absence and emptiness mean different things to a client:
/// an absent `id` keeps the client's last-event-id, while `Some("")` resets it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The `id` field. `Some("")` is an explicit empty `id:`, which resets last-event-id on clients.
    /// Never contains NUL, CR or LF when produced by the decoder.
    pub id: Option<String>,
    /// The `event` field (event type). `None` means the default type `message`.
    pub event: Option<String>,
    /// `None` when the block had no `data:` line at all; otherwise the values of all its `data`
    /// lines joined with `"\n"` (so a single empty `data:` line gives `Some("")`).
    pub data: Option<String>,
    /// The `retry` field: the reconnection time in milliseconds.
    pub retry: Option<u64>,
}

impl Event {
    /// The data of the event, or `""` when it had no `data` line — convenient for interceptors
    /// that only care about the payload.
    #[must_use]
    pub fn data_str(&self) -> &str {
        self.data.as_deref().unwrap_or("")
    }

    /// A data-only event (default type `message`, no id, no retry): the common case when the
    /// proxy itself has to synthesise an event.
    #[must_use]
    pub fn message(data: impl Into<String>) -> Self {
        Event {
            data: Some(data.into()),
            ..Event::default()
        }
    }
}

/// What the decoder yields: events, and comments (keep-alives) which the proxy forwards.
///
/// Comments are surfaced instead of being dropped (as browsers do) because upstream keep-alives
/// must reach the client, or idle connections get cut by intermediaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A dispatched event.
    Event(Event),
    /// A comment line: the text after the `:`, verbatim (a leading space is kept).
    Comment(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_str_defaults_to_empty() {
        assert_eq!(Event::default().data_str(), "");
        assert_eq!(Event::message("x\ny").data_str(), "x\ny");
    }

    #[test]
    fn message_sets_only_data() {
        assert_eq!(
            Event::message("hi"),
            Event {
                id: None,
                event: None,
                data: Some("hi".to_owned()),
                retry: None
            }
        );
    }
}
