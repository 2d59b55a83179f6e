//! JSON-RPC messages through the chain, one at a time.
//!
//! Plugins see one JSON-RPC message per event, whatever the peer sent: a batch (a JSON
//! array, which peers before 2025-06-18 may send) is split, each message passes the
//! chain on its own, and the survivors are put back together in order. Whatever a plugin
//! drops is answered for, so that nobody waits for ever: a dropped request gets a
//! JSON-RPC error from the proxy, a dropped response is replaced by an error with the
//! same id, and a dropped event that carried an SSE `id` still moves the client's
//! cursor (an id-only field block dispatches no message but sets the last event id).

use serde_json::value::RawValue;

use super::jsonrpc::{self, RequestId};
use crate::plugin::{Outcome, Session};
use crate::sse::Event;

/// What became of a client's POST body on its way to the server.
#[derive(Debug)]
pub enum ToServer {
    /// Send `body` upstream; `answered` holds the proxy's error responses for requests
    /// a plugin dropped from a batch, to be added to what the upstream answers.
    Forward {
        body: String,
        answered: Vec<Box<RawValue>>,
    },
    /// Nothing is left to send. `answered` holds the error responses for the dropped
    /// requests (none when only notifications or responses were dropped: 202).
    Answer {
        answered: Vec<Box<RawValue>>,
        batch: bool,
    },
}

/// Runs a client's message (or each message of a batch) through the chain, which must
/// have begun its to-server phase.
pub fn to_server(session: &mut Session, body: String) -> ToServer {
    let Some(items) = batch_items(&body) else {
        let request = jsonrpc::request_id(&body);
        return match session.on_event(Event::message(body)) {
            Outcome::Forward(event) => ToServer::Forward {
                body: event.data.unwrap_or_default(),
                answered: Vec::new(),
            },
            Outcome::Dropped { plugin, .. } => {
                log_dropped(session, &plugin, "client message");
                ToServer::Answer {
                    answered: request
                        .map(|id| dropped_request_error(&id, &plugin))
                        .into_iter()
                        .collect(),
                    batch: false,
                }
            }
        };
    };
    let mut kept = Vec::new();
    let mut answered = Vec::new();
    for item in items {
        let request = jsonrpc::request_id(&item);
        match session.on_event(Event::message(item)) {
            Outcome::Forward(event) => kept.push(event.data.unwrap_or_default()),
            Outcome::Dropped { plugin, .. } => {
                log_dropped(session, &plugin, "client message in a batch");
                if let Some(id) = request {
                    answered.push(dropped_request_error(&id, &plugin));
                }
            }
        }
    }
    if kept.is_empty() {
        ToServer::Answer {
            answered,
            batch: true,
        }
    } else {
        ToServer::Forward {
            body: join_batch(&kept),
            answered,
        }
    }
}

/// Runs one upstream event through the chain (to-client phase) and returns what the
/// client gets, or `None` when nothing at all is sent.
///
/// * Events with no data (a priming event: an id and an empty `data:`; a lone `retry:`)
///   are transport control, not messages: they pass untouched, unseen by plugins.
/// * The SSE `id` is the client's resumption cursor and belongs to the upstream: it is
///   kept byte for byte, also when a plugin modifies the event.
/// * `unanswered` lists the ids of requests still waiting for their response; each
///   response that leaves is struck off (see `InterceptedSse`).
pub fn to_client(
    session: &mut Session,
    event: Event,
    unanswered: &mut Vec<RequestId>,
) -> Option<Event> {
    if event.data.as_deref().is_none_or(str::is_empty) {
        return Some(event);
    }
    let cursor = cursor_of(&event);
    let Some(items) = batch_items(event.data_str()) else {
        let outcome = session.on_event(event);
        return with_cursor(cursor, after_chain(session, outcome, unanswered));
    };
    let mut kept = Vec::new();
    for item in items {
        let message = Event {
            data: Some(item),
            event: event.event.clone(),
            ..cursor.clone()
        };
        let outcome = session.on_event(message);
        kept.extend(after_chain(session, outcome, unanswered).and_then(|e| e.data));
    }
    if kept.is_empty() {
        return cursor_only(cursor);
    }
    Some(Event {
        data: Some(join_batch(&kept)),
        ..event
    })
}

/// True for an event that [`to_client`] hands to the chain as one message: it has data
/// and the data is not a JSON array (a batch). [`to_client_run`] takes only these.
pub fn is_single_message(event: &Event) -> bool {
    event
        .data
        .as_deref()
        .is_some_and(|d| !d.is_empty() && !d.trim_start().starts_with('['))
}

/// Several events that each are one message ([`is_single_message`]), in stream order,
/// through the chain together (`Session::on_events`): for each, what [`to_client`]
/// would give.
pub fn to_client_run(
    session: &mut Session,
    events: Vec<Event>,
    unanswered: &mut Vec<RequestId>,
) -> Vec<Option<Event>> {
    let cursors: Vec<Event> = events.iter().map(cursor_of).collect();
    let outcomes = session.on_events(events);
    outcomes
        .into_iter()
        .zip(cursors)
        .map(|(outcome, cursor)| with_cursor(cursor, after_chain(session, outcome, unanswered)))
        .collect()
}

/// The part of an event that is the client's cursor (`id`, `retry`), kept aside before
/// the chain runs.
fn cursor_of(event: &Event) -> Event {
    Event {
        id: event.id.clone(),
        retry: event.retry,
        ..Event::default()
    }
}

/// The upstream's cursor (`id`) on what the chain let through, or the cursor alone
/// when nothing was.
fn with_cursor(cursor: Event, sent: Option<Event>) -> Option<Event> {
    match sent {
        Some(sent) => Some(Event {
            id: cursor.id,
            ..sent
        }),
        None => cursor_only(cursor),
    }
}

/// One message to the client after the chain: the event, a replacement error for a
/// dropped response, or `None` for a dropped notification or request.
fn after_chain(
    session: &Session,
    outcome: Outcome,
    unanswered: &mut Vec<RequestId>,
) -> Option<Event> {
    match outcome {
        Outcome::Forward(event) => {
            note_answered(event.data_str(), unanswered);
            Some(event)
        }
        Outcome::Dropped { plugin, event, .. } => {
            log_dropped(session, &plugin, "server message");
            let id = event.data.as_deref().and_then(jsonrpc::response_id)?;
            unanswered.retain(|pending| *pending != id);
            let message = format!("sluice: the response was dropped by plugin {plugin}");
            Some(Event {
                data: Some(jsonrpc::error(&id, jsonrpc::DROPPED_BY_PLUGIN, &message).to_string()),
                ..event
            })
        }
    }
}

/// What [`to_client`] gives for a single-message event ([`is_single_message`]) when
/// no plugin sees it (`Session::passes_everything`): the event itself, struck off the
/// waiting requests if it answers one.
pub fn passed_through(event: Event, unanswered: &mut Vec<RequestId>) -> Event {
    note_answered(event.data_str(), unanswered);
    event
}

/// Strikes the response(s) in `data` off the list of requests still waiting.
fn note_answered(data: &str, unanswered: &mut Vec<RequestId>) {
    if unanswered.is_empty() {
        return;
    }
    if let Some(id) = jsonrpc::response_id(data) {
        unanswered.retain(|pending| *pending != id);
    }
}

/// What is left of a dropped event: its `id` (and `retry`), so the client's
/// last-event-id still advances and a resumption does not replay the dropped event.
fn cursor_only(event: Event) -> Option<Event> {
    (event.id.is_some() || event.retry.is_some()).then_some(Event {
        id: event.id,
        retry: event.retry,
        event: None,
        data: None,
    })
}

/// The messages of a JSON-RPC batch, each as its exact text, or `None` when `text` is
/// not a JSON array (a single message, or not JSON at all: passed as one event).
pub fn batch_items(text: &str) -> Option<Vec<String>> {
    if !text.trim_start().starts_with('[') {
        return None;
    }
    let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
    Some(items.into_iter().map(|raw| raw.get().to_string()).collect())
}

/// A batch made of messages that each are JSON text.
pub fn join_batch(items: &[String]) -> String {
    let mut out = String::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 2);
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push(']');
    out
}

fn dropped_request_error(id: &RequestId, plugin: &str) -> Box<RawValue> {
    let message = format!("sluice: the request was dropped by plugin {plugin}");
    jsonrpc::error(id, jsonrpc::DROPPED_BY_PLUGIN, &message)
}

fn log_dropped(session: &Session, plugin: &str, what: &str) {
    tracing::debug!(
        stream = session.meta().stream_id,
        plugin,
        rpc = ?session.meta().rpc_method,
        "{what} dropped by plugin"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_each_message_byte_for_byte() {
        let text = r#" [ {"b":1,"a":2} , {"jsonrpc":"2.0","method":"x"} ]"#;
        let items = batch_items(text).unwrap();
        assert_eq!(
            items,
            vec![r#"{"b":1,"a":2}"#, r#"{"jsonrpc":"2.0","method":"x"}"#]
        );
        assert_eq!(
            join_batch(&items),
            r#"[{"b":1,"a":2},{"jsonrpc":"2.0","method":"x"}]"#
        );
    }

    #[test]
    fn single_messages_and_non_json_are_not_batches() {
        assert_eq!(batch_items(r#"{"jsonrpc":"2.0"}"#), None);
        assert_eq!(batch_items("[not json"), None);
        assert_eq!(batch_items("plain text"), None);
    }

    #[test]
    fn only_events_with_one_message_are_single_messages() {
        assert!(is_single_message(&Event::message(r#"{"jsonrpc":"2.0"}"#)));
        assert!(is_single_message(&Event::message("plain text")));
        assert!(!is_single_message(&Event::message(r#" [{"a":1}]"#)));
        assert!(!is_single_message(&Event::message("")));
        assert!(!is_single_message(&Event {
            id: Some("1".into()),
            ..Event::default()
        }));
    }

    #[test]
    fn a_dropped_event_keeps_its_cursor() {
        let event = Event {
            id: Some("7".into()),
            event: Some("message".into()),
            data: Some("{}".into()),
            retry: Some(500),
        };
        assert_eq!(
            cursor_only(event),
            Some(Event {
                id: Some("7".into()),
                retry: Some(500),
                event: None,
                data: None
            })
        );
        assert_eq!(cursor_only(Event::message("{}")), None);
    }

    #[test]
    fn request_ids_come_only_from_requests() {
        assert_eq!(
            jsonrpc::request_id(r#"{"jsonrpc":"2.0","id":"a","method":"m"}"#)
                .map(|id| id.to_string()),
            Some(r#""a""#.to_string())
        );
        assert_eq!(
            jsonrpc::request_id(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            None
        );
        assert_eq!(
            jsonrpc::request_id(r#"{"jsonrpc":"2.0","method":"n"}"#),
            None
        );
    }
}
