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

use super::client::ClientBody;
pub use super::client::Refused;
use super::jsonrpc::{self, RequestId};
use crate::plugin::{Chain, Direction, FailureKind, HoldSpec, Outcome, Session, human_bytes};
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
        /// The body to send.
        body: String,
        /// The proxy's error responses for dropped requests.
        answered: Vec<Box<RawValue>>,
    },
    /// Nothing is left to send. `answered` holds the error responses for the dropped
    /// requests (none when only notifications or responses were dropped: 202).
    Answer {
        /// The proxy's error responses for dropped requests.
        answered: Vec<Box<RawValue>>,
        /// The client sent a batch.
        batch: bool,
    },
    /// Refused before any plugin saw it; the client gets a JSON-RPC error.
    Refused(Refused),
    /// A plugin held the (single) message: the phase stays open; after the wait the
    /// caller goes on with [`resume_to_server`].
    Held(Held),
}

/// A client message a plugin held, and where its walk goes on.
#[derive(Debug)]
pub struct Held {
    /// The plugin that held it.
    pub plugin: std::sync::Arc<str>,
    /// How long, and for what.
    pub hold: HoldSpec,
    /// The message as that plugin saw it.
    pub event: Event,
    resume: usize,
    request: Option<RequestId>,
}

/// Reads a client's body for `chain`: under the MCP rules where a plugin of it sees
/// client messages ([`ClientBody::checked`]), refusing nothing where none does.
pub fn read_client_body(chain: &Chain, body: &str, limits: &Limits) -> Result<ClientBody, Refused> {
    if chain.sees(Direction::ToServer) {
        ClientBody::checked(body, limits.max_batch)
    } else {
        Ok(ClientBody::read(body))
    }
}

/// Runs a client's message (or each message of a batch) through the chain: begins the
/// to-server phase, runs each message, ends the phase. `read` is what
/// [`read_client_body`] made of `body`: a body that breaks the MCP rules is refused
/// before any plugin is even told of the phase.
pub fn to_server(
    session: &mut Session,
    body: String,
    read: Result<ClientBody, Refused>,
    limits: &Limits,
) -> ToServer {
    let read = match read {
        Ok(read) => read,
        Err(refused) => {
            session
                .chain()
                .refusals()
                .refused("to-server", refused.reason());
            tracing::warn!(
                stream = session.meta().stream_id,
                reason = refused.reason(),
                "client request refused before the plugins: {refused}"
            );
            return ToServer::Refused(refused);
        }
    };
    session.begin(Direction::ToServer);
    let (decided, answers) = through_chain(session, body, read, limits);
    finish_to_server(session, decided, answers, limits)
}

/// The body of sluice's own answer to the client for `answered` (the errors for
/// dropped requests, the plugins' answers): the one response of a single message, a
/// JSON array for a batch, as `proxy::Proxy::forward` sends them. `sluice plugin test`
/// shows it.
pub fn answered_body(answered: &[Box<RawValue>], batch: bool) -> String {
    match answered {
        [one] if !batch => one.get().to_string(),
        many => join_batch(&many.iter().map(|m| m.get().to_string()).collect::<Vec<_>>()),
    }
}

/// How a hold ended, as the MCP rules act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterHold {
    /// The message goes on to the next plugin.
    GoesOn,
    /// The holder drops it (denied, timed out with `drop`, too many holds).
    Dropped,
    /// The proxy is shutting down: the message goes nowhere, and whoever waits for it
    /// is told why.
    ShuttingDown,
}

/// A plugin's answer to a client's request, before it goes through the chain towards
/// the client.
#[derive(Debug)]
struct PluginAnswer {
    id: RequestId,
    response: String,
}

/// Ends the to-server phase (unless a plugin holds the message) and sends the
/// plugins' answers through one to-client phase, after it: a 0.1 interceptor sees each
/// direction announced once, in order.
fn finish_to_server(
    session: &mut Session,
    mut decided: ToServer,
    answers: Vec<PluginAnswer>,
    limits: &Limits,
) -> ToServer {
    if matches!(decided, ToServer::Held(_)) {
        return decided;
    }
    session.end();
    if answers.is_empty() {
        return decided;
    }
    session.begin(Direction::ToClient);
    let mut sent = Vec::with_capacity(answers.len());
    for PluginAnswer { id, response } in answers {
        let mut waiting = vec![id];
        let out = to_client(session, Event::message(response), &mut waiting, limits);
        // A to-client plugin that dropped the answer leaves nothing to send.
        sent.extend(
            out.and_then(|e| e.data)
                .and_then(|data| RawValue::from_string(data).ok()),
        );
    }
    session.end();
    if let ToServer::Answer { answered, .. } | ToServer::Forward { answered, .. } = &mut decided {
        answered.extend(sent);
    }
    decided
}

/// Goes on with a message a plugin held, once the hold ended: through the rest of the
/// chain when it goes on, else answered as dropped by the plugin that held it (or as
/// not sent, at shutdown). Ends the to-server phase unless another plugin holds it
/// again.
pub fn resume_to_server(
    session: &mut Session,
    held: Held,
    after: AfterHold,
    limits: &Limits,
) -> ToServer {
    let (decided, answer) = match after {
        AfterHold::GoesOn => {
            let outcome = session.resume(held.event, held.resume);
            single(session, outcome, held.request)
        }
        AfterHold::Dropped | AfterHold::ShuttingDown => {
            log_dropped(session, &held.plugin, "held client message");
            let error = |id: RequestId| {
                let (code, message) = match after {
                    AfterHold::ShuttingDown => (
                        jsonrpc::STREAM_FAILED,
                        format!(
                            "sluice: the request was held by plugin {} and the proxy shut \
                             down before it was let through; it was not forwarded",
                            held.plugin
                        ),
                    ),
                    _ => (
                        jsonrpc::DROPPED_BY_PLUGIN,
                        format!(
                            "sluice: the request was held by plugin {} and not let through \
                             ({})",
                            held.plugin, held.hold.reason
                        ),
                    ),
                };
                jsonrpc::error(&id, code, &message)
            };
            let decided = ToServer::Answer {
                answered: held.request.map(error).into_iter().collect(),
                batch: false,
            };
            (decided, None)
        }
    };
    finish_to_server(session, decided, answer.into_iter().collect(), limits)
}

/// What one client message's outcome makes (not in a batch), and a plugin's answer
/// still to go through the chain towards the client.
fn single(
    session: &mut Session,
    outcome: Outcome,
    request: Option<RequestId>,
) -> (ToServer, Option<PluginAnswer>) {
    let decided = match outcome {
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
        Outcome::Answered { plugin, answer, .. } => {
            let answer = request.map(|id| plugin_answer(session, &plugin, id, &answer));
            let decided = ToServer::Answer {
                answered: Vec::new(),
                batch: false,
            };
            return (decided, answer);
        }
        Outcome::Held {
            plugin,
            hold,
            event,
            resume,
        } => ToServer::Held(Held {
            plugin,
            hold,
            event,
            resume,
            request,
        }),
    };
    (decided, None)
}

/// A plugin's answer to request `id` (`respond`), counted and logged; it goes through
/// the chain towards the client once the to-server phase ends (`finish_to_server`).
fn plugin_answer(
    session: &Session,
    plugin: &str,
    id: RequestId,
    answer: &Result<String, crate::plugin::RpcError>,
) -> PluginAnswer {
    tracing::debug!(
        stream = session.meta().stream_id,
        plugin,
        "request answered by a plugin"
    );
    session.chain().refusals().answered_by_plugin();
    let response = jsonrpc::answer(&id, answer);
    PluginAnswer { id, response }
}

/// [`to_server`]'s work once the phase has begun.
fn through_chain(
    session: &mut Session,
    body: String,
    read: ClientBody,
    limits: &Limits,
) -> (ToServer, Vec<PluginAnswer>) {
    if !read.batch {
        let request = read.messages.into_iter().next().and_then(|m| m.request_id);
        let outcome = session.on_event(Event::message(body));
        let (decided, answer) = single(session, outcome, request);
        return (decided, answer.into_iter().collect());
    };
    let mut answers = Vec::new();
    let started = Instant::now();
    let mut kept = Vec::new();
    let mut answered = Vec::new();
    for message in read.messages {
        let request = message.request_id;
        let item = body[message.range].to_string();
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
            Outcome::Answered { plugin, answer, .. } => {
                if let Some(id) = request {
                    answers.push(plugin_answer(session, &plugin, id, &answer));
                }
            }
            Outcome::Held { plugin, .. } => {
                // A batch is answered in one piece; its messages cannot wait apart.
                log_dropped(session, &plugin, "held client message in a batch");
                if let Some(id) = request {
                    let message = format!(
                        "sluice: plugin {plugin} held this request, and a held request \
                         cannot be part of a batch (send it alone); it was not forwarded"
                    );
                    answered.push(jsonrpc::error(&id, jsonrpc::DROPPED_BY_PLUGIN, &message));
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
    let decided = if kept.is_empty() {
        ToServer::Answer {
            answered,
            batch: true,
        }
    } else {
        ToServer::Forward {
            body: join_batch(&kept),
            answered,
        }
    };
    (decided, answers)
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
/// * A batch longer than `limits.max_batch` is not handed to the plugins
///   (`over_long_batch`).
///
/// Server messages are not held to `shape` as client messages are: the server's
/// own code writes their members (tool content lives inside strings and cannot add
/// one), and a parse of every event would cost every stream.
pub fn to_client(
    session: &mut Session,
    event: Event,
    unanswered: &mut Vec<RequestId>,
    limits: &Limits,
) -> Option<Event> {
    match to_client_or_hold(session, event, unanswered, limits) {
        ToClient::Sent(sent) => sent,
        ToClient::Held(held) => {
            tracing::warn!(
                stream = session.meta().stream_id,
                plugin = %held.plugin,
                "a hold here is not waited for (a replay, or a plugin's own answer): the \
                 message goes on at once"
            );
            let mut held = held;
            loop {
                match resume_to_client(session, held, AfterHold::GoesOn, unanswered) {
                    ToClient::Sent(sent) => return sent,
                    ToClient::Held(again) => held = again,
                }
            }
        }
    }
}

/// What became of an upstream event on its way to the client.
#[derive(Debug)]
pub enum ToClient {
    /// Send this to the client (`None`: nothing).
    Sent(Option<Event>),
    /// A plugin held it: wait as its hold says, then [`resume_to_client`]. The events
    /// behind it in the stream wait too (order is kept).
    Held(HeldEvent),
}

/// An upstream message a plugin held, and where its walk goes on.
#[derive(Debug)]
pub struct HeldEvent {
    /// The plugin that held it.
    pub plugin: std::sync::Arc<str>,
    /// How long, and for what.
    pub hold: HoldSpec,
    /// The message as that plugin saw it.
    pub event: Event,
    resume: usize,
    cursor: Event,
}

/// [`to_client`], where the caller carries out holds: a held single message comes
/// back as [`ToClient::Held`]. (A message of a server batch is not held: the batch
/// goes out in one piece; such a hold goes on at once, with a warning.)
pub fn to_client_or_hold(
    session: &mut Session,
    event: Event,
    unanswered: &mut Vec<RequestId>,
    limits: &Limits,
) -> ToClient {
    if event.data.as_deref().is_none_or(str::is_empty) {
        return ToClient::Sent(Some(event));
    }
    let cursor = cursor_of(&event);
    let Some(items) = batch_items(event.data_str()) else {
        let outcome = session.on_event(event);
        return judged_to_client(session, outcome, cursor, unanswered);
    };
    // The rules protect plugins: where none sees this direction, nothing is refused.
    let too_long = !session.passes_everything() && items.len() > limits.max_batch;
    if too_long {
        session
            .chain()
            .refusals()
            .refused("to-client", "batch_too_long");
        tracing::warn!(
            stream = session.meta().stream_id,
            messages = items.len(),
            "server batch refused before the plugins: over the limit of {} (max_batch)",
            limits.max_batch
        );
    }
    let mut kept = Vec::new();
    for item in items {
        let message = Event {
            data: Some(item),
            event: event.event.clone(),
            ..cursor.clone()
        };
        let sent = if too_long {
            over_long_batch(&message, limits.max_batch, unanswered)
        } else {
            let outcome = session.on_event(message);
            let outcome = go_on_at_once(session, outcome);
            after_chain(session, outcome, unanswered)
        };
        kept.extend(sent.and_then(|e| e.data));
    }
    if kept.is_empty() {
        return ToClient::Sent(cursor_only(cursor));
    }
    ToClient::Sent(Some(Event {
        data: Some(join_batch(&kept)),
        ..event
    }))
}

/// Goes on with an upstream message a plugin held, once the hold ended: through the
/// rest of the chain when it `goes_on`, else dropped by the plugin that held it (a
/// response is replaced by an error with its id, as for any drop).
pub fn resume_to_client(
    session: &mut Session,
    held: HeldEvent,
    after: AfterHold,
    unanswered: &mut Vec<RequestId>,
) -> ToClient {
    let HeldEvent {
        plugin,
        event,
        resume,
        cursor,
        ..
    } = held;
    let outcome = match after {
        AfterHold::GoesOn => session.resume(event, resume),
        AfterHold::Dropped => Outcome::Dropped {
            plugin,
            failure: None,
            event,
        },
        AfterHold::ShuttingDown => {
            // A response is answered for (its request waits); anything else is gone.
            let id = event.data.as_deref().and_then(jsonrpc::response_id);
            let sent = id.map(|id| {
                unanswered.retain(|pending| *pending != id);
                let message = "sluice: the response was held by a plugin and the proxy \
                               shut down before it was let through";
                Event::message(jsonrpc::error(&id, jsonrpc::STREAM_FAILED, message).to_string())
            });
            return ToClient::Sent(with_cursor(cursor, sent));
        }
    };
    judged_to_client(session, outcome, cursor, unanswered)
}

/// What an upstream message's outcome makes: held (its cursor kept for when it goes
/// on), or what the client gets, under the upstream's cursor.
fn judged_to_client(
    session: &Session,
    outcome: Outcome,
    cursor: Event,
    unanswered: &mut Vec<RequestId>,
) -> ToClient {
    match outcome {
        Outcome::Held {
            plugin,
            hold,
            event,
            resume,
        } => ToClient::Held(HeldEvent {
            plugin,
            hold,
            event,
            resume,
            cursor,
        }),
        outcome => ToClient::Sent(with_cursor(
            cursor,
            after_chain(session, outcome, unanswered),
        )),
    }
}

/// Where a hold cannot be waited for (a message of a server's batch, which goes out in
/// one piece): a plain delay goes on at once, with a warning; an approval is not
/// granted (the message is dropped, as by the holder), so that wrapping a message in a
/// batch cannot get it past an approval.
fn go_on_at_once(session: &mut Session, mut outcome: Outcome) -> Outcome {
    while let Outcome::Held {
        plugin,
        hold,
        event,
        resume,
    } = outcome
    {
        tracing::warn!(
            stream = session.meta().stream_id,
            plugin = %plugin,
            approval = hold.approval,
            "a message of a batch cannot be held apart from the batch: {}",
            if hold.approval { "dropped (no approval)" } else { "it goes on at once" }
        );
        if hold.approval {
            return Outcome::Dropped {
                plugin,
                failure: None,
                event,
            };
        }
        outcome = session.resume(event, resume);
    }
    outcome
}

/// A message of a server batch over `limit` messages, which the plugins do not get to
/// see: fail closed. A response is replaced by an error with its id (the client is not
/// left waiting); anything else is dropped.
fn over_long_batch(event: &Event, limit: usize, unanswered: &mut Vec<RequestId>) -> Option<Event> {
    let id = event.data.as_deref().and_then(jsonrpc::response_id)?;
    unanswered.retain(|pending| *pending != id);
    let message = format!(
        "sluice: the server's response was refused: it came in a batch of more than {limit} \
         messages (max_batch)"
    );
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
    let outcomes = session.on_events(events);
    outcomes
        .into_iter()
        .zip(cursors)
        .map(|(outcome, cursor)| {
            let outcome = go_on_at_once(session, outcome);
            with_cursor(cursor, after_chain(session, outcome, unanswered))
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
        Outcome::Answered { event, .. } | Outcome::Held { event, .. } => {
            // The chain refuses `respond` going to the client as a failure of the call,
            // and holds are carried out before this; should one come, it goes on.
            debug_assert!(false, "respond or an unresolved hold going to the client");
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
    use crate::shape;

    #[test]
    fn a_refused_body_is_answered_with_the_json_rpc_code_for_its_fault() {
        let code = |refused: Refused| {
            let answer: serde_json::Value = serde_json::from_str(refused.error().get()).unwrap();
            assert_eq!(answer["id"], serde_json::Value::Null);
            answer["error"]["code"].as_i64().unwrap()
        };
        let broken = shape::client_message(r#"{"method":"x" oops}"#).unwrap_err();
        assert_eq!(code(Refused::Shape(broken)), jsonrpc::PARSE_ERROR);
        let twice = shape::client_message(r#"{"id":1,"id":2,"method":"x"}"#).unwrap_err();
        assert_eq!(code(Refused::Shape(twice)), jsonrpc::INVALID_REQUEST);
        let long = Refused::BatchTooLong { limit: 100 };
        assert!(long.to_string().contains("more than 100 messages"));
        assert_eq!(code(long), jsonrpc::INVALID_REQUEST);
        assert_eq!(code(Refused::Encoding), jsonrpc::PARSE_ERROR);
        for (body, reason) in [
            (
                "\u{feff}{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\"}",
                "encoding",
            ),
            ("{\0\"\0m\0\"\0:\0\x31\0}\0", "encoding"),
            ("[{\"method\":\"a\"},0]", "not_object"),
            ("[{\"method\":\"a\",\"x\":NaN}]", "not_json"),
            ("[1,1,1]", "batch_too_long"),
            (" {\"method\":\"a\"} x", "not_json"),
        ] {
            let max = if reason == "batch_too_long" { 2 } else { 10 };
            let refused = ClientBody::checked(body, max).expect_err(body);
            assert_eq!(refused.reason(), reason, "{body}");
        }
        for body in [
            "",
            "plain text",
            "[]",
            "[{\"method\":\"a\"}]",
            "{\"method\":\"a\"}\n",
        ] {
            assert!(ClientBody::checked(body, 10).is_ok(), "{body}");
        }
    }

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
