//! A client's body, read once into the messages it holds.
//!
//! The proxy needs a few facts about every client body (the method, for logs, tapes
//! and plugins; the ids of its requests, to answer them if the stream breaks), and
//! where plugins see client messages the body must first keep the MCP rules
//! (`shape`). Both come from one read: the shape check fills each message's
//! [`shape::Head`] as it goes, and the messages of a batch are found once, as places in
//! the body, not copies.

use std::ops::Range;

use serde_json::value::RawValue;

use super::jsonrpc::{self, RequestId, Summary};
use crate::shape::{self, Head, ShapeError};

/// A client body refused before any plugin saw it.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// A message a plugin could read differently from the server (`shape`).
    #[error("invalid JSON-RPC message: {0}")]
    Shape(#[source] ShapeError),
    /// A batch longer than the limit (`max_batch`).
    #[error("a batch of more than {limit} messages is over the limit (max_batch)")]
    BatchTooLong {
        /// The limit.
        limit: usize,
    },
    /// A byte-order mark or a NUL byte: text a server may decode otherwise (UTF-16, or
    /// with the mark stripped) than the plugins see it.
    #[error("the body starts with a byte-order mark or holds a NUL byte")]
    Encoding,
}

impl Refused {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::Shape(e) => e.reason(),
            Refused::BatchTooLong { .. } => "batch_too_long",
            Refused::Encoding => "encoding",
        }
    }

    /// The JSON-RPC error the client gets (id `null`: which id a refused text carries
    /// is exactly what cannot be told).
    pub fn error(&self) -> Box<RawValue> {
        let code = match self {
            Refused::Shape(ShapeError::NotJson(_)) | Refused::Encoding => jsonrpc::PARSE_ERROR,
            Refused::Shape(_) | Refused::BatchTooLong { .. } => jsonrpc::INVALID_REQUEST,
        };
        jsonrpc::error(&RequestId::null(), code, &format!("sluice: {self}"))
    }
}

/// One message of a client body.
#[derive(Debug, Clone, Default)]
pub struct ClientMessage {
    /// Where its text is in the body.
    pub range: Range<usize>,
    /// `method`, when it is a string.
    pub method: Option<String>,
    /// For a request (a message with both `method` and `id`), its id as written.
    pub request_id: Option<RequestId>,
}

impl ClientMessage {
    fn new(range: Range<usize>, head: Head) -> Self {
        Self {
            range,
            request_id: head
                .id
                .filter(|_| head.has_method)
                .map(|id| RequestId::new(&id)),
            method: head.method,
        }
    }
}

/// A client body, read.
#[derive(Debug, Clone, Default)]
pub struct ClientBody {
    /// The body is a JSON array (a batch).
    pub batch: bool,
    /// Its messages, in order: a body that is not a batch is one message, whatever it
    /// holds (text that is not JSON-RPC is the plugins' to judge).
    pub messages: Vec<ClientMessage>,
    /// For `initialize`: the protocol revision the client offers.
    pub offered_protocol: Option<String>,
}

impl ClientBody {
    /// Reads `body` under the MCP rules for a body plugins will see: text a server
    /// would read as JSON must be JSON every parser reads alike. No byte-order mark or
    /// NUL (a server may decode the body as UTF-16, or strip the mark, where a plugin
    /// sees neither `{` first nor the same text); text led by `{` one object
    /// (`shape::client_message`); text led by `[` a batch of at most `max_batch` such
    /// objects. Other text is not JSON-RPC and the plugins' to judge.
    pub fn checked(body: &str, max_batch: usize) -> Result<Self, Refused> {
        if body.starts_with('\u{feff}') || body.contains('\0') {
            return Err(Refused::Encoding);
        }
        let text = body.trim_start_matches([' ', '\t', '\n', '\r']);
        if text.starts_with('{') {
            let head = shape::client_message_head(body).map_err(Refused::Shape)?;
            return Ok(Self::single(body, head));
        }
        if !text.starts_with('[') {
            return Ok(Self::single(body, Head::default()));
        }
        // Counted before anything is split: an over-long batch costs one partial parse.
        if !shape::array_within(body, max_batch).map_err(Refused::Shape)? {
            return Err(Refused::BatchTooLong { limit: max_batch });
        }
        let Some(items) = items(body) else {
            return Ok(Self::single(body, Head::default()));
        };
        let mut messages = Vec::with_capacity(items.len());
        for range in items {
            let item = &body[range.clone()];
            if !item.starts_with('{') {
                return Err(Refused::Shape(ShapeError::NotObject));
            }
            let head = shape::client_message_head(item).map_err(Refused::Shape)?;
            messages.push(ClientMessage::new(range, head));
        }
        Ok(Self {
            batch: true,
            messages,
            offered_protocol: None,
        })
    }

    /// Reads `body` refusing nothing, where no plugin sees it: what the proxy needs to
    /// know, as far as the text tells (a duplicate member: the last counts, as most
    /// parsers read it).
    pub fn read(body: &str) -> Self {
        if let Some(items) = items(body) {
            let messages = items
                .into_iter()
                .map(|range| {
                    let head = lenient_head(&body[range.clone()]);
                    ClientMessage::new(range, head)
                })
                .collect();
            return Self {
                batch: true,
                messages,
                offered_protocol: None,
            };
        }
        Self::single(body, lenient_head(body))
    }

    /// A body of one message.
    fn single(body: &str, head: Head) -> Self {
        // Where the text can hold it at all (a name may be written with escapes).
        let offered_protocol = (body.contains("protocolVersion") || body.contains("\\u"))
            .then(|| offered_protocol(body))
            .flatten();
        Self {
            batch: false,
            messages: vec![ClientMessage::new(0..body.len(), head)],
            offered_protocol,
        }
    }

    /// The ids of the requests, in order.
    pub fn request_ids(&self) -> Vec<RequestId> {
        self.messages
            .iter()
            .filter_map(|m| m.request_id.clone())
            .collect()
    }

    /// What the proxy keeps of the body for the rest of the exchange.
    pub fn summary(&self) -> Summary {
        Summary {
            method: match self.messages.as_slice() {
                [one] if !self.batch => one.method.clone(),
                _ => None,
            },
            request_ids: self.request_ids(),
            batch: self.batch,
            offered_protocol: self.offered_protocol.clone(),
        }
    }
}

/// Where each message of a JSON-RPC batch is in `text`, or `None` when `text` is not a
/// JSON array.
fn items(text: &str) -> Option<Vec<Range<usize>>> {
    if !text.trim_start().starts_with('[') {
        return None;
    }
    let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
    // serde_json borrows each element's text from `text`: its place is its address
    // less the text's.
    let base = text.as_ptr() as usize;
    Some(
        items
            .into_iter()
            .map(|raw| {
                let start = raw.get().as_ptr() as usize - base;
                start..start + raw.get().len()
            })
            .collect(),
    )
}

/// A message's head, read without refusing anything: an object's `method` and `id`
/// (the last of each, if repeated), or nothing for text that is not a JSON object.
fn lenient_head(text: &str) -> Head {
    let Some(members) = jsonrpc::members(text) else {
        return Head::default();
    };
    let method = members.get("method");
    Head {
        has_method: method.is_some(),
        method: method.and_then(|m| serde_json::from_str::<String>(m.get()).ok()),
        id: members.get("id").map(|id| (*id).to_owned()),
    }
}

/// `text` as one message, read without refusing anything.
pub(super) fn lenient_message(text: &str) -> ClientMessage {
    ClientMessage::new(0..text.len(), lenient_head(text))
}

/// `params.protocolVersion` of a request (the one `initialize` offers).
fn offered_protocol(text: &str) -> Option<String> {
    let message: serde_json::Value = serde_json::from_str(text).ok()?;
    message
        .pointer("/params/protocolVersion")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(body: &ClientBody) -> Vec<String> {
        body.request_ids().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn one_read_gives_each_message_its_place_method_and_request_id() {
        let text = r#" [ {"jsonrpc":"2.0","id":"a","method":"tools/call"} , {"method":"notifications/x"}, {"id":7,"result":{}}, {"id":123456789012345678901234567890,"method":"m"} ]"#;
        for body in [
            ClientBody::checked(text, 10).unwrap(),
            ClientBody::read(text),
        ] {
            assert!(body.batch);
            let texts: Vec<&str> = body
                .messages
                .iter()
                .map(|m| &text[m.range.clone()])
                .collect();
            assert_eq!(
                texts,
                [
                    r#"{"jsonrpc":"2.0","id":"a","method":"tools/call"}"#,
                    r#"{"method":"notifications/x"}"#,
                    r#"{"id":7,"result":{}}"#,
                    r#"{"id":123456789012345678901234567890,"method":"m"}"#,
                ]
            );
            let methods: Vec<_> = body.messages.iter().map(|m| m.method.as_deref()).collect();
            assert_eq!(
                methods,
                [Some("tools/call"), Some("notifications/x"), None, Some("m")]
            );
            // A response's id is not a request's; a long number keeps its digits.
            assert_eq!(ids(&body), [r#""a""#, "123456789012345678901234567890"]);
            assert_eq!(body.summary().method, None);
        }
    }

    #[test]
    fn a_single_message_is_the_whole_body_and_initialize_offers_its_revision() {
        let text = " {\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-06-18\"}}\n";
        for body in [
            ClientBody::checked(text, 10).unwrap(),
            ClientBody::read(text),
        ] {
            assert!(!body.batch);
            assert_eq!(body.messages.len(), 1);
            assert_eq!(body.messages[0].range, 0..text.len());
            // `null` is an id as written (the proxy answers with it).
            assert_eq!(ids(&body), ["null"]);
            let summary = body.summary();
            assert_eq!(summary.method.as_deref(), Some("initialize"));
            assert_eq!(summary.offered_protocol.as_deref(), Some("2025-06-18"));
        }
    }

    #[test]
    fn text_that_is_not_json_rpc_is_one_message_that_names_nothing() {
        for text in ["plain text", "", "[not json", "42"] {
            let body = ClientBody::read(text);
            assert!(!body.batch, "{text}");
            assert_eq!(body.messages.len(), 1);
            assert!(body.request_ids().is_empty());
            assert_eq!(body.summary().method, None);
        }
        assert!(ClientBody::checked("plain text", 10).is_ok());
    }

    #[test]
    fn where_nothing_is_refused_a_repeated_member_reads_as_most_parsers_read_it() {
        let text = r#"{"id":1,"method":"ping","method":"tools/call","id":2}"#;
        let body = ClientBody::read(text);
        assert_eq!(body.messages[0].method.as_deref(), Some("tools/call"));
        assert_eq!(ids(&body), ["2"]);
        assert!(matches!(
            ClientBody::checked(text, 10),
            Err(Refused::Shape(ShapeError::DuplicateName { .. }))
        ));
    }

    #[test]
    fn an_object_id_is_held_to_the_same_shape_rules() {
        let text = r#"{"id":{"a":1,"a":2},"method":"m"}"#;
        assert_eq!(
            ClientBody::checked(text, 10).unwrap_err().to_string(),
            "invalid JSON-RPC message: member \"a\" appears twice in /id"
        );
        // A string that serde_json cannot decode is refused in an id as anywhere else.
        let lone = r#"{"id":"\ud800","method":"m"}"#;
        assert!(ClientBody::checked(lone, 10).is_err());
        assert!(shape::client_message(lone).is_err());
        let fine = r#"{"id":{"a":1},"method":"m"}"#;
        assert_eq!(ids(&ClientBody::checked(fine, 10).unwrap()), [r#"{"a":1}"#]);
    }
}
