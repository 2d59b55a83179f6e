//! `sluice plugin test --message JSON` and `--input FILE`: hand-written JSON-RPC
//! messages through the chain, offline, by the proxy's own code (Shopify's
//! function-runner `-i input.json`, for MCP).
//!
//! Each message goes the way the proxy would take it: a request or notification to the
//! server (`messages::to_server`: the MCP rules, the chain, and for a dropped or
//! answered request the JSON-RPC response sluice itself sends the client), a response
//! to the client (`messages::to_client`: a dropped response is replaced by an error
//! with its id); `--direction` overrides. A response whose request came earlier in the
//! same input runs in that request's exchange, as the proxy runs a POST's response in
//! the request's session: the same plugin instances, and the method it answers known
//! (a plugin's interest and context see it). Without such a request, `--method` says
//! what it answers.
//!
//! Messages are numbered from 1; in the report each is stream `n`, index 0, so that
//! golden files (`--save`/`--expect`) work as for a tape.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::replay::{data_only, request_through, result, steps_of};
use super::{EventResult, HarnessError, Input, Leg, Options, Report};
use crate::mcp::jsonrpc::{self, RequestId, Summary};
use crate::mcp::messages;
use crate::plugin::{Chain, Direction, Session, StreamMeta};
use crate::sse::Event;
use crate::tape::TapeEvent;

/// One hand-written message and how to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The JSON text, as given.
    pub text: String,
    /// Which way it goes.
    pub direction: Leg,
    /// `request`, `notification`, `response` or `batch`.
    pub kind: &'static str,
    /// Its method (a request or notification).
    pub method: Option<String>,
    /// Its id, as JSON text (a request or response).
    pub id: Option<String>,
    /// For a response whose request is not among the messages: the method it answers
    /// (`--method`).
    pub answers: Option<String>,
}

/// The messages of `input` (not a tape): each `--message`, or the `--input` file as
/// one JSON document or one message per line (`-`: standard input). `direction`
/// overrides each message's own; `method` is what an uncorrelated response answers.
pub fn read_messages(
    input: &Input,
    direction: Option<Leg>,
    method: Option<&str>,
) -> Result<Vec<Message>, HarnessError> {
    let texts: Vec<(String, String)> = match input {
        Input::Tape(path) => {
            return Err(HarnessError::Input {
                what: path.display().to_string(),
                reason: "a tape, not messages".into(),
            });
        }
        Input::Messages(list) => list
            .iter()
            .enumerate()
            .map(|(i, text)| (format!("--message {}", i + 1), text.clone()))
            .collect(),
        Input::File(path) => file_messages(path)?,
    };
    if texts.is_empty() {
        return Err(HarnessError::Input {
            what: "--message/--input".into(),
            reason: "no message given".into(),
        });
    }
    texts
        .into_iter()
        .map(|(what, text)| {
            let mut message =
                classify(text.trim()).map_err(|reason| HarnessError::Input { what, reason })?;
            if let Some(direction) = direction {
                message.direction = direction;
            }
            message.answers = method.map(str::to_string);
            Ok(message)
        })
        .collect()
}

/// A file's messages, each named by where it is: the whole file when it is one JSON
/// document (pretty-printed, say), else each non-blank line.
fn file_messages(path: &Path) -> Result<Vec<(String, String)>, HarnessError> {
    let name = path.display().to_string();
    let failed = |source| HarnessError::Io {
        path: name.clone(),
        source,
    };
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(failed)?
    } else {
        std::fs::read_to_string(path).map_err(failed)?
    };
    if serde_json::from_str::<Value>(&text).is_ok() {
        return Ok(vec![(name, text)]);
    }
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| (format!("{name}:{}", i + 1), line.to_string()))
        .collect())
}

/// What a message is, and the way it goes unless `--direction` says otherwise.
fn classify(text: &str) -> Result<Message, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e}): {text}"))?;
    let message = |direction, kind, value: &Value| Message {
        text: text.to_string(),
        direction,
        kind,
        method: value["method"].as_str().map(str::to_string),
        id: value.get("id").map(Value::to_string),
        answers: None,
    };
    let one = |value: &Value| -> Result<(Leg, &'static str), String> {
        let Some(object) = value.as_object() else {
            return Err(format!(
                "not a JSON-RPC message (an object with a method, result or error): {text}"
            ));
        };
        if object.contains_key("method") {
            let kind = if object.contains_key("id") {
                "request"
            } else {
                "notification"
            };
            Ok((Leg::ToServer, kind))
        } else if object.contains_key("result") || object.contains_key("error") {
            Ok((Leg::ToClient, "response"))
        } else {
            Err(format!(
                "not a JSON-RPC message (no method, result or error member): {text}"
            ))
        }
    };
    match &value {
        Value::Array(items) => {
            let first = items
                .first()
                .ok_or_else(|| "an empty batch: nothing to run".to_string())?;
            let (direction, _) = one(first)?;
            Ok(Message {
                method: None,
                id: None,
                ..message(direction, "batch", &Value::Null)
            })
        }
        value => {
            let (direction, kind) = one(value)?;
            Ok(message(direction, kind, value))
        }
    }
}

/// A request of the input the proxy's exchange for it is kept for: its response, later
/// in the input, runs in the same session.
struct Pending {
    /// Index into the sessions.
    session: usize,
    /// Its number (1-based).
    number: u64,
    /// Its method.
    method: Option<String>,
    /// Sluice answered it itself (dropped, answered by a plugin): the server would never
    /// see it, nor answer.
    answered_by_proxy: bool,
}

/// Every message through `chain`, in order.
pub(super) fn run(chain: &Arc<Chain>, input: &[Message], options: &Options) -> Report {
    let mut report = Report::of_chain(chain);
    report.messages = true;
    let limits = messages::Limits::default();
    let mut sessions: Vec<Session> = Vec::new();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let new_session = |number: u64, rpc_method: Option<String>| {
        let meta = StreamMeta {
            route: None,
            headers: Default::default(),
            stream_id: number,
            session_id: None,
            method: "POST".into(),
            path: "/mcp".into(),
            rpc_method,
            protocol_version: None,
            identity: Default::default(),
        };
        chain
            .session(meta)
            .traced()
            .with_max_event_bytes(options.max_event_bytes)
    };
    for (i, message) in input.iter().enumerate() {
        let number = i as u64 + 1;
        let what = format!("message {number}");
        let (event, answered) = match message.direction {
            Leg::ToServer => {
                let rpc_method = Summary::of(message.text.as_bytes()).method;
                let mut session = new_session(number, rpc_method);
                let (output, reply) = request_through(
                    &mut session,
                    &message.text,
                    &limits,
                    &mut report.notes,
                    &what,
                );
                let steps = steps_of(&mut session);
                if message.kind == "request"
                    && let Some(id) = &message.id
                {
                    pending.insert(
                        id.clone(),
                        Pending {
                            session: sessions.len(),
                            number,
                            method: message.method.clone(),
                            answered_by_proxy: output.is_none(),
                        },
                    );
                }
                sessions.push(session);
                let event = EventResult {
                    reply,
                    ..result(
                        number,
                        0,
                        Leg::ToServer,
                        data_only(message.text.clone()),
                        output,
                        steps,
                        &[],
                    )
                };
                (event, None)
            }
            Leg::ToClient => {
                let request = match (message.kind, &message.id) {
                    ("response", Some(id)) => pending.remove(id),
                    _ => None,
                };
                let index = match &request {
                    Some(request) => {
                        if request.answered_by_proxy {
                            report.notes.push(format!(
                                "{what} answers message {}, which sluice answered itself: \
                                 the server would not have seen that request, nor sent this",
                                request.number
                            ));
                        }
                        request.session
                    }
                    None => {
                        if message.kind == "response" && message.answers.is_none() {
                            report.notes.push(format!(
                                "{what}: a response whose request is not among the messages, \
                                 and no --method: a plugin that wants responses by the \
                                 method they answer does not see it"
                            ));
                        }
                        sessions.push(new_session(number, message.answers.clone()));
                        sessions.len() - 1
                    }
                };
                let session = &mut sessions[index];
                session.begin(Direction::ToClient);
                let mut unanswered: Vec<RequestId> =
                    jsonrpc::response_id(&message.text).into_iter().collect();
                let sent = messages::to_client(
                    session,
                    Event::message(message.text.clone()),
                    &mut unanswered,
                    &limits,
                );
                let steps = steps_of(session);
                session.end();
                let event = result(
                    number,
                    0,
                    Leg::ToClient,
                    data_only(message.text.clone()),
                    sent.as_ref().map(TapeEvent::from),
                    steps,
                    &[],
                );
                (event, request.map(|r| (r.number, r.method)))
            }
        };
        let label = label(message, &answered);
        report.events.push(EventResult {
            label: Some(label),
            ..event
        });
    }
    report
}

/// What a message is, for the report: `request tools/call (id 1)`, `response (id 1) to
/// message 1 (tools/call)`.
fn label(message: &Message, answered: &Option<(u64, Option<String>)>) -> String {
    let id = message
        .id
        .as_deref()
        .map(|id| format!(" (id {id})"))
        .unwrap_or_default();
    let method = message.method.as_deref().unwrap_or("");
    match message.kind {
        "request" | "notification" => format!("{} {method}{id}", message.kind),
        "response" => match (answered, &message.answers) {
            (Some((number, method)), _) => format!(
                "response{id} to message {number} ({})",
                method.as_deref().unwrap_or("?")
            ),
            (None, Some(answers)) => format!("response{id} to {answers} (--method)"),
            (None, None) => format!("response{id}"),
        },
        kind => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_goes_the_way_its_kind_says() {
        let request = classify(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#).unwrap();
        assert_eq!(
            (request.direction, request.kind, request.id.as_deref()),
            (Leg::ToServer, "request", Some("1"))
        );
        let note = classify(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!((note.direction, note.kind), (Leg::ToServer, "notification"));
        let response = classify(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert_eq!(
            (response.direction, response.kind, response.id.as_deref()),
            (Leg::ToClient, "response", Some("\"a\""))
        );
        let error = classify(r#"{"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"x"}}"#);
        assert_eq!(error.unwrap().direction, Leg::ToClient);
        let batch = classify(r#"[{"jsonrpc":"2.0","id":1,"result":{}}]"#).unwrap();
        assert_eq!((batch.direction, batch.kind), (Leg::ToClient, "batch"));
        for bad in ["{", "[]", "3", r#"{"jsonrpc":"2.0","id":1}"#] {
            assert!(classify(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_direction_flag_overrides_and_method_names_what_a_response_answers() {
        let input = Input::Messages(vec![r#"{"jsonrpc":"2.0","id":1,"result":{}}"#.into()]);
        let read = read_messages(&input, Some(Leg::ToServer), Some("tools/list")).unwrap();
        assert_eq!(read[0].direction, Leg::ToServer);
        assert_eq!(read[0].answers.as_deref(), Some("tools/list"));
        let err = read_messages(&Input::Messages(vec!["nope".into()]), None, None).unwrap_err();
        assert!(
            err.to_string().starts_with("--message 1: not JSON"),
            "{err}"
        );
    }
}
