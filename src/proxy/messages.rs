//! JSON-RPC messages through the chain, one at a time.
//!
//! Plugins see one JSON-RPC message per event, whatever the peer sent: a batch (a JSON
//! array, which peers before 2025-06-18 may send) is split, each message passes the
//! chain on its own, and the survivors are put back together in order. Whatever a plugin
//! drops is answered for, so that nobody waits for ever: a dropped request gets a
//! JSON-RPC error from the proxy, a dropped response is replaced by an error with the
//! same id, and a dropped event that carried an SSE `id` still moves the client's
//! cursor (an id-only field block dispatches no message but sets the last event id).

use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::jsonrpc::{self, RequestId};
use crate::mcp::shape::{self, Depth, ShapeError};
use crate::plugin::{FailureKind, Outcome, Session, human_bytes};
use crate::sse::Event;

/// How much plugin work one exchange may cause. A client controls how many messages a
/// request holds and how large they are; without these, one 4 MB batch of `[1,1,…]` was
/// two million plugin calls in one request handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most messages in one JSON-RPC batch (either direction). A longer batch from
    /// a client is refused whole (HTTP 400, a JSON-RPC error); from the server, its
    /// messages are not handed to plugins and its responses are replaced by errors.
    pub max_batch: usize,
    /// The most wall time the plugins may spend on one client request (all its
    /// messages, all plugins). When it runs out, the messages of a batch not yet
    /// checked are not forwarded: each request among them gets a JSON-RPC error.
    pub plugin_budget: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_batch: 100,
            plugin_budget: Duration::from_secs(1),
        }
    }
}

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
    /// Refused before any plugin saw it; the client gets a JSON-RPC error.
    Refused(Refused),
}

/// A client body refused before any plugin saw it.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// A message a plugin could read differently from the server (`mcp::shape`).
    #[error("invalid JSON-RPC message: {0}")]
    Shape(#[source] ShapeError),
    /// A batch longer than [`Limits::max_batch`].
    #[error("a batch of {len} messages is over the limit of {limit} (max_batch)")]
    BatchTooLong { len: usize, limit: usize },
}

impl Refused {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::Shape(e) => e.reason(),
            Refused::BatchTooLong { .. } => "batch_too_long",
        }
    }

    /// The JSON-RPC error the client gets (id `null`: which id a refused text carries
    /// is exactly what cannot be told).
    pub fn error(&self) -> Box<RawValue> {
        jsonrpc::error(
            &RequestId::null(),
            jsonrpc::INVALID_REQUEST,
            &format!("sluice: {self}"),
        )
    }
}

/// Runs a client's message (or each message of a batch) through the chain, which must
/// have begun its to-server phase. Each message that looks like a JSON object must be
/// one that every parser reads alike (`mcp::shape::client_message`), or the whole
/// body is refused before any plugin runs.
pub fn to_server(session: &mut Session, body: String, limits: &Limits) -> ToServer {
    let refuse = |session: &Session, refused: Refused| {
        session
            .chain()
            .refusals()
            .refused("to-server", refused.reason());
        tracing::warn!(
            stream = session.meta().stream_id,
            reason = refused.reason(),
            "client request refused before the plugins: {refused}"
        );
        ToServer::Refused(refused)
    };
    // The rules protect plugins: where none sees this direction, nothing is refused.
    let checking = !session.passes_everything();
    let Some(items) = batch_items(&body) else {
        if checking && let Err(e) = client_shape(&body) {
            return refuse(session, Refused::Shape(e));
        }
        let request = jsonrpc::request_id(&body);
        return match session.on_event(Event::message(body)) {
            Outcome::Forward(event) => ToServer::Forward {
                body: event.data.unwrap_or_default(),
                answered: Vec::new(),
            },
            Outcome::Dropped {
                plugin,
                failure,
                event,
            } => {
                log_dropped(session, &plugin, "client message");
                ToServer::Answer {
                    answered: request
                        .map(|id| dropped_request_error(&id, &plugin, failure, &event))
                        .into_iter()
                        .collect(),
                    batch: false,
                }
            }
        };
    };
    if checking && items.len() > limits.max_batch {
        let (len, limit) = (items.len(), limits.max_batch);
        return refuse(session, Refused::BatchTooLong { len, limit });
    }
    if checking && let Some(e) = items.iter().find_map(|item| client_shape(item).err()) {
        return refuse(session, Refused::Shape(e));
    }
    let started = Instant::now();
    let mut kept = Vec::new();
    let mut answered = Vec::new();
    for item in items {
        let request = jsonrpc::request_id(&item);
        if started.elapsed() > limits.plugin_budget {
            // Fail closed: what the plugins had no time to check is not forwarded.
            session
                .chain()
                .refusals()
                .refused("to-server", "plugin_budget");
            if let Some(id) = request {
                answered.push(budget_error(&id, limits.plugin_budget));
            }
            continue;
        }
        match session.on_event(Event::message(item)) {
            Outcome::Forward(event) => kept.push(event.data.unwrap_or_default()),
            Outcome::Dropped {
                plugin,
                failure,
                event,
            } => {
                log_dropped(session, &plugin, "client message in a batch");
                if let Some(id) = request {
                    answered.push(dropped_request_error(&id, &plugin, failure, &event));
                }
            }
        }
    }
    if started.elapsed() > limits.plugin_budget {
        tracing::warn!(
            stream = session.meta().stream_id,
            budget_ms = limits.plugin_budget.as_millis() as u64,
            "the plugins' time for this request ran out: the rest of its batch was not forwarded"
        );
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

/// The shape rule for a client message: text that looks like a JSON object must be one
/// every parser reads alike; other text (not JSON-RPC) is the plugins' to judge.
fn client_shape(text: &str) -> Result<(), ShapeError> {
    if shape::looks_like_object(text) {
        shape::client_message(text)
    } else {
        Ok(())
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
/// * A message with a repeated top-level member name, and a batch longer than
///   `limits.max_batch`, are refused before the plugins (`refused_message`).
pub fn to_client(
    session: &mut Session,
    event: Event,
    unanswered: &mut Vec<RequestId>,
    limits: &Limits,
) -> Option<Event> {
    if event.data.as_deref().is_none_or(str::is_empty) {
        return Some(event);
    }
    let cursor = cursor_of(&event);
    // The rules protect plugins: where none sees this direction, nothing is refused.
    let checking = !session.passes_everything();
    let Some(items) = batch_items(event.data_str()) else {
        if checking && let Some(refused) = server_shape(event.data_str()) {
            let sent = refused_message(session, &event, refused, unanswered);
            return with_cursor(cursor, sent);
        }
        let outcome = session.on_event(event);
        return with_cursor(cursor, after_chain(session, outcome, unanswered));
    };
    let too_long = checking && items.len() > limits.max_batch;
    let mut kept = Vec::new();
    for item in items {
        let message = Event {
            data: Some(item),
            event: event.event.clone(),
            ..cursor.clone()
        };
        let refused = if too_long {
            Some(Refusal::BatchTooLong(limits.max_batch))
        } else if checking {
            server_shape(message.data_str())
        } else {
            None
        };
        let sent = match refused {
            Some(refused) => refused_message(session, &message, refused, unanswered),
            None => {
                let outcome = session.on_event(message);
                after_chain(session, outcome, unanswered)
            }
        };
        kept.extend(sent.and_then(|e| e.data));
    }
    if kept.is_empty() {
        return cursor_only(cursor);
    }
    Some(Event {
        data: Some(join_batch(&kept)),
        ..event
    })
}

/// Why a server message is not handed to the plugins.
enum Refusal {
    /// It breaks `mcp::shape` (a repeated top-level member name).
    Shape(ShapeError),
    /// It is part of a batch longer than this.
    BatchTooLong(usize),
}

/// The shape rule for a server message: a repeated top-level name (which the client's
/// parser resolves its own way) is refused; anything else is the plugins' to judge.
fn server_shape(data: &str) -> Option<Refusal> {
    if !shape::looks_like_object(data) {
        return None;
    }
    match shape::one_object(data, Depth::Top) {
        Err(e @ ShapeError::DuplicateName { .. }) => Some(Refusal::Shape(e)),
        _ => None,
    }
}

/// A server message the plugins do not get to see: fail closed. A response is replaced
/// by an error with its id (the client is not left waiting); anything else is dropped.
fn refused_message(
    session: &Session,
    event: &Event,
    refusal: Refusal,
    unanswered: &mut Vec<RequestId>,
) -> Option<Event> {
    let (reason, text) = match &refusal {
        Refusal::Shape(e) => (e.reason(), format!("invalid JSON-RPC message: {e}")),
        Refusal::BatchTooLong(limit) => (
            "batch_too_long",
            format!("a batch of more than {limit} messages (max_batch)"),
        ),
    };
    session.chain().refusals().refused("to-client", reason);
    tracing::warn!(
        stream = session.meta().stream_id,
        reason,
        "server message refused before the plugins: {text}"
    );
    let id = event.data.as_deref().and_then(jsonrpc::response_id)?;
    unanswered.retain(|pending| *pending != id);
    let message = format!("sluice: the server's response was refused: {text}");
    Some(Event {
        data: Some(jsonrpc::error(&id, jsonrpc::STREAM_FAILED, &message).to_string()),
        ..event.clone()
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
    // Refused messages stay out of the chain; the rest go through it together.
    let mut refused: Vec<Option<Option<Event>>> = Vec::with_capacity(events.len());
    let mut checked = Vec::with_capacity(events.len());
    for event in events {
        match server_shape(event.data_str()) {
            Some(refusal) => {
                refused.push(Some(refused_message(session, &event, refusal, unanswered)));
            }
            None => {
                refused.push(None);
                checked.push(event);
            }
        }
    }
    let mut outcomes = session.on_events(checked).into_iter();
    refused
        .into_iter()
        .zip(cursors)
        .map(|(refused, cursor)| {
            let sent = match refused {
                Some(sent) => sent,
                None => {
                    let outcome = outcomes.next().expect("one outcome per checked event");
                    after_chain(session, outcome, unanswered)
                }
            };
            with_cursor(cursor, sent)
        })
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
        Outcome::Dropped {
            plugin,
            failure,
            event,
        } => {
            log_dropped(session, &plugin, "server message");
            let id = event.data.as_deref().and_then(jsonrpc::response_id)?;
            unanswered.retain(|pending| *pending != id);
            let (code, message) = match failure {
                None => (
                    jsonrpc::DROPPED_BY_PLUGIN,
                    format!("sluice: the response was dropped by plugin {plugin}"),
                ),
                Some(kind) => (
                    jsonrpc::PLUGIN_FAILED,
                    format!(
                        "sluice: plugin {plugin} failed on the response ({}): {}; the \
                         response was not delivered (the plugin fails closed)",
                        human_bytes(event.data.as_deref().map_or(0, str::len)),
                        kind.hint()
                    ),
                ),
            };
            Some(Event {
                data: Some(jsonrpc::error(&id, code, &message).to_string()),
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

/// The proxy's answer for a request a plugin removed: dropped by its verdict
/// (`-32050`), or failed on under fail-closed (`-32053`, naming the failure and what
/// the operator can change, e.g. "plugin X failed on this request (3.0 MB): it ran out
/// of memory; raise memory_mib").
fn dropped_request_error(
    id: &RequestId,
    plugin: &str,
    failure: Option<FailureKind>,
    event: &Event,
) -> Box<RawValue> {
    match failure {
        None => {
            let message = format!("sluice: the request was dropped by plugin {plugin}");
            jsonrpc::error(id, jsonrpc::DROPPED_BY_PLUGIN, &message)
        }
        Some(kind) => {
            let size = human_bytes(event.data.as_deref().map_or(0, str::len));
            let message = format!(
                "sluice: plugin {plugin} failed on this request ({size}): {}; the request \
                 was not forwarded (the plugin fails closed)",
                kind.hint()
            );
            jsonrpc::error(id, jsonrpc::PLUGIN_FAILED, &message)
        }
    }
}

/// The answer for a request of a batch the plugins had no time left to check.
fn budget_error(id: &RequestId, budget: Duration) -> Box<RawValue> {
    let message = format!(
        "sluice: the plugins' time for this request ({} ms) ran out before this message \
         was checked; it was not forwarded",
        budget.as_millis()
    );
    jsonrpc::error(id, jsonrpc::PLUGIN_BUDGET, &message)
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
