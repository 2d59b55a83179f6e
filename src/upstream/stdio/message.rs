//! What the bridge needs to know of one JSON-RPC message: its kind, its id, and for
//! requests the progress token. One borrowed serde pass; the text itself is never
//! rebuilt, only an id is spliced in and out (shared mode).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The members the bridge routes by; everything else stays in the text.
#[derive(Deserialize)]
struct Members<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

/// A JSON-RPC message, as far as routing goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// `method` and `id`: expects an answer.
    Request {
        /// The id, as a map key ([`id_key`]).
        id: String,
        /// The method.
        method: String,
        /// `params._meta.progressToken` (as a key), if the request asked for progress.
        progress_token: Option<String>,
    },
    /// `method`, no `id`.
    Notification {
        /// The method.
        method: String,
        /// `params.progressToken` of a `notifications/progress` (as a key).
        progress_token: Option<String>,
    },
    /// `result` or `error`, with an `id` (`None`: `null`, an error about a message
    /// whose id could not be read).
    Response {
        /// The id, as a map key.
        id: Option<String>,
    },
}

/// A message's kind and where its id sits in the text (for splicing).
#[derive(Debug)]
pub struct Message {
    /// The kind.
    pub kind: Kind,
    /// Byte range of the id's JSON value in the text, when it has one.
    pub id_span: Option<std::ops::Range<usize>>,
    /// Byte range of the progress token (a request's `params._meta.progressToken`, a
    /// progress notification's `params.progressToken`), when it has one.
    pub token_span: Option<std::ops::Range<usize>>,
}

/// Why a line is not a message the bridge can route.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotAMessage {
    /// Not a JSON object with distinct member names.
    #[error("not a JSON-RPC message (not a JSON object)")]
    NotJson,
    /// A JSON object that is neither request, notification nor response.
    #[error("not a JSON-RPC message (no method, result or error)")]
    NoKind,
}

/// Reads `text` (one message, not a batch).
pub fn read(text: &str) -> Result<Message, NotAMessage> {
    // serde reads a struct from an array too, by position: `[1, "a", {...}]` would pass
    // as a message whose "id" is 1, with a whole request hidden in its "params".
    if !text.trim_start().starts_with('{') {
        return Err(NotAMessage::NotJson);
    }
    let members: Members<'_> = serde_json::from_str(text).map_err(|_| NotAMessage::NotJson)?;
    let id_span = members.id.map(|raw| span_of(text, raw.get()));
    let mut token_span = None;
    let mut token = |path: &[&str]| {
        let (key, span) = find(text, members.params?, path)?;
        token_span = Some(span);
        Some(key)
    };
    let kind = match (members.method, members.id) {
        (Some(method), Some(id)) => Kind::Request {
            id: id_key(id),
            progress_token: token(&["_meta", "progressToken"]),
            method: method.into_owned(),
        },
        (Some(method), None) => Kind::Notification {
            progress_token: (method == "notifications/progress")
                .then(|| token(&["progressToken"]))
                .flatten(),
            method: method.into_owned(),
        },
        (None, id) if members.result.is_some() || members.error.is_some() => {
            Kind::Response { id: id.map(id_key) }
        }
        (None, _) => return Err(NotAMessage::NoKind),
    };
    Ok(Message {
        kind,
        id_span,
        token_span,
    })
}

/// The key and byte range in `text` of `params.<path>` (a `notifications/cancelled`'s
/// `requestId`), if it is there and not `null`.
pub fn param(text: &str, path: &[&str]) -> Option<(String, std::ops::Range<usize>)> {
    let members: Members<'_> = serde_json::from_str(text).ok()?;
    find(text, members.params?, path)
}

/// True when the response `text` has a `result` (it is not an error).
pub fn has_result(text: &str) -> bool {
    serde_json::from_str::<Members<'_>>(text).is_ok_and(|m| m.result.is_some())
}

/// `text` with the bytes in each span replaced by its text; every other byte is kept.
/// The spans do not overlap.
pub fn splice(text: &str, edits: &mut [(std::ops::Range<usize>, &str)]) -> String {
    edits.sort_by_key(|(span, _)| span.start);
    let mut out = String::with_capacity(text.len() + 16);
    let mut at = 0;
    for (span, with) in edits.iter() {
        out.push_str(&text[at..span.start]);
        out.push_str(with);
        at = span.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The same id whatever its spelling: a string by its value (escapes decoded), anything
/// else by its text. A server echoes the id it was sent, but may re-encode a string.
pub fn id_key(raw: &RawValue) -> String {
    match serde_json::from_str::<String>(raw.get()) {
        Ok(s) => format!("s:{s}"),
        Err(_) => format!("n:{}", raw.get().trim()),
    }
}

/// Where `part` (a slice of `text`, as serde_json's borrowed `RawValue` is) sits.
fn span_of(text: &str, part: &str) -> std::ops::Range<usize> {
    let start = part.as_ptr() as usize - text.as_ptr() as usize;
    start..start + part.len()
}

/// The key and byte range in `text` of the value at `path` in the object `raw` (a part
/// of `text`), if there is one. The proxy has refused duplicate member names before a
/// message gets here, so the member found is the one the server reads.
fn find(text: &str, raw: &RawValue, path: &[&str]) -> Option<(String, std::ops::Range<usize>)> {
    let mut current: &RawValue = raw;
    for name in path {
        let object: std::collections::HashMap<Cow<'_, str>, &RawValue> =
            serde_json::from_str(current.get()).ok()?;
        current = object.get(*name).copied()?;
    }
    (current.get().trim() != "null").then(|| (id_key(current), span_of(text, current.get())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_notifications_and_responses_are_told_apart() {
        let r = read(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"_meta":{"progressToken":"t"}}}"#).unwrap();
        assert_eq!(
            r.kind,
            Kind::Request {
                id: "n:7".into(),
                method: "tools/call".into(),
                progress_token: Some("s:t".into())
            }
        );
        let n = read(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}"#).unwrap();
        assert_eq!(
            n.kind,
            Kind::Notification {
                method: "notifications/progress".into(),
                progress_token: Some("s:t".into())
            }
        );
        let a = read(r#"{"jsonrpc":"2.0","id":"a\u0062","result":{}}"#).unwrap();
        assert_eq!(
            a.kind,
            Kind::Response {
                id: Some("s:ab".into())
            }
        );
        assert!(matches!(read("hello"), Err(NotAMessage::NotJson)));
        // A struct would read an array by position: not a message.
        assert!(matches!(
            read(r#"[1, "tools/call", {"jsonrpc":"2.0","id":99,"method":"x"}]"#),
            Err(NotAMessage::NotJson)
        ));
        assert_eq!(
            param(
                r#"{"method":"notifications/cancelled","params":{"requestId":"x"}}"#,
                &["requestId"]
            )
            .map(|(key, _)| key),
            Some("s:x".into())
        );
        assert!(matches!(
            read(r#"{"jsonrpc":"2.0"}"#),
            Err(NotAMessage::NoKind)
        ));
    }

    #[test]
    fn an_id_and_a_token_are_spliced_without_touching_the_rest() {
        let text = r#"{"jsonrpc":"2.0", "id" : "x", "method":"tools/call","params":{"_meta":{"progressToken": 1 }}}"#;
        let m = read(text).unwrap();
        let mut edits = [(m.token_span.unwrap(), "8"), (m.id_span.unwrap(), "42")];
        let out = splice(text, &mut edits);
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0", "id" : 42, "method":"tools/call","params":{"_meta":{"progressToken": 8 }}}"#
        );
    }
}
