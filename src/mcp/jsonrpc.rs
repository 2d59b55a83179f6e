//! Just enough JSON-RPC to answer for a plugin's decision: which messages a body holds,
//! and the error responses the proxy sends in the upstream's place.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use bytes::Bytes;
use memchr::memmem::Finder;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::client::{self, ClientBody};

/// A plugin dropped a client's request.
pub const DROPPED_BY_PLUGIN: i64 = -32050;
/// The upstream could not be reached or answered with something unusable.
pub const UPSTREAM_FAILED: i64 = -32051;
/// The response stream ended (upstream failure, oversized event) before the answer.
pub const STREAM_FAILED: i64 = -32052;
/// A plugin failed on the message (trap, deadline, memory, ...) and fails closed.
pub const PLUGIN_FAILED: i64 = -32053;
/// The plugins' time for the request ran out before the message was checked.
pub const PLUGIN_BUDGET: i64 = -32054;
/// The caller is over a rate limit of the route (HTTP 429, `Retry-After`).
pub const RATE_LIMITED: i64 = -32055;
/// JSON-RPC's own "Invalid Request": the proxy refused the text before any plugin.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC's internal error.
pub const INTERNAL_ERROR: i64 = -32603;
/// JSON-RPC's own "Parse error": text that looks like a message but is not JSON.
pub const PARSE_ERROR: i64 = -32700;

/// A JSON-RPC id as the peer wrote it. The proxy's own answers carry it byte for byte:
/// through `serde_json::Value` a number past 64 bits became a float (and serde_json's
/// float parsing is not correctly rounded), which the client could not match to its
/// request. Two ids are the same when both are strings with the same value, or else
/// when their texts are the same.
#[derive(Debug, Clone)]
pub struct RequestId(Box<RawValue>);

impl RequestId {
    /// `null`: the id of an error about a message whose id cannot be told.
    pub fn null() -> Self {
        Self(RawValue::from_string("null".to_string()).expect("null is JSON"))
    }

    /// The id in `raw` (whatever its type: MCP wants a string or an integer, and the
    /// proxy echoes what it got).
    pub(crate) fn new(raw: &RawValue) -> Self {
        Self(raw.to_owned())
    }

    /// The id as a `Value` (a number past 64 bits as the nearest float: for tools that
    /// rewrite whole messages, like `tape serve`).
    pub fn value(&self) -> Option<Value> {
        serde_json::from_str(self.0.get()).ok()
    }

    /// A string id's value (escapes decoded).
    fn string(&self) -> Option<String> {
        serde_json::from_str(self.0.get()).ok()
    }
}

impl PartialEq for RequestId {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
            || matches!((self.string(), other.string()), (Some(a), Some(b)) if a == b)
    }
}

impl fmt::Display for RequestId {
    /// The id's JSON text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

/// What the proxy needs to know about a POST body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// The method, when the body is a single request or notification.
    pub method: Option<String>,
    /// The ids of the requests in the body (notifications and responses have none), in
    /// order; a single request gives one.
    pub request_ids: Vec<RequestId>,
    /// The body is a JSON array (a batch).
    pub batch: bool,
    /// For `initialize`: the protocol revision the client offers (`params.protocolVersion`).
    pub offered_protocol: Option<String>,
}

impl Summary {
    /// Reads a body without refusing anything; anything that is not JSON-RPC gives an
    /// empty summary (see [`ClientBody::read`]).
    pub fn of(body: &[u8]) -> Self {
        std::str::from_utf8(body)
            .map(|text| ClientBody::read(text).summary())
            .unwrap_or_default()
    }

    /// The JSON-RPC error body that answers every request in the body, or `None` when
    /// it held no request (only notifications or responses).
    pub fn error_body(&self, code: i64, message: &str) -> Option<Bytes> {
        if self.request_ids.is_empty() {
            return None;
        }
        let errors: Vec<Box<RawValue>> = self
            .request_ids
            .iter()
            .map(|id| error(id, code, message))
            .collect();
        let text = if self.batch {
            serde_json::to_string(&errors).expect("JSON texts always serialise")
        } else {
            errors.into_iter().next()?.to_string()
        };
        Some(Bytes::from(text))
    }
}

/// A message's members, each as its text (`null` included, unlike `Option`).
pub(super) fn members(text: &str) -> Option<HashMap<Cow<'_, str>, &RawValue>> {
    serde_json::from_str(text).ok()
}

/// The id of a request (a message with both `method` and `id`), if `text` is one
/// (read as [`ClientBody::read`] reads a message).
pub fn request_id(text: &str) -> Option<RequestId> {
    client::lenient_message(text).request_id
}

/// The id of a response (a message with `id` and `result` or `error`, no `method`),
/// if `data` is one. Cheap for other events: no parse unless the text could match.
pub fn response_id(data: &str) -> Option<RequestId> {
    // Runs on every event of a stream whose request is still waiting: memchr's SIMD
    // search, several times faster than `str::contains` on a few hundred bytes.
    static RESULT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"result\""));
    static ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));
    let bytes = data.as_bytes();
    if RESULT.find(bytes).is_none() && ERROR.find(bytes).is_none() {
        return None;
    }
    let message = members(data)?;
    if message.contains_key("method")
        || !(message.contains_key("result") || message.contains_key("error"))
    {
        return None;
    }
    message.get("id").map(|id| RequestId::new(id))
}

/// The response to request `id` with `answer`: a `result` (JSON text, already checked)
/// or an error; a plugin's `respond`, and every error the proxy answers with.
pub fn answer(id: &RequestId, reply: &Result<String, crate::plugin::RpcError>) -> String {
    #[derive(Serialize)]
    struct Success<'a> {
        jsonrpc: &'static str,
        id: &'a RawValue,
        result: &'a RawValue,
    }
    #[derive(Serialize)]
    struct Failure<'a> {
        jsonrpc: &'static str,
        id: &'a RawValue,
        error: Error<'a>,
    }
    #[derive(Serialize)]
    struct Error<'a> {
        code: i64,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<&'a RawValue>,
    }
    fn raw(text: &str) -> Option<&RawValue> {
        serde_json::from_str(text).ok()
    }
    let text = match reply {
        Ok(result) => match raw(result) {
            Some(result) => serde_json::to_string(&Success {
                jsonrpc: "2.0",
                id: &id.0,
                result,
            }),
            // Checked by the chain before: a plugin's result is one JSON value.
            None => {
                return answer(
                    id,
                    &Err(crate::plugin::RpcError {
                        code: INTERNAL_ERROR,
                        message: "sluice: a plugin answered with no JSON".into(),
                        data: None,
                    }),
                );
            }
        },
        Err(e) => serde_json::to_string(&Failure {
            jsonrpc: "2.0",
            id: &id.0,
            error: Error {
                code: e.code,
                message: &e.message,
                data: e.data.as_deref().and_then(raw),
            },
        }),
    };
    text.expect("a response always serialises")
}

/// One JSON-RPC error response, as JSON text (its id as the peer wrote it).
pub fn error(id: &RequestId, code: i64, message: &str) -> Box<RawValue> {
    let error = crate::plugin::RpcError {
        code,
        message: message.to_string(),
        data: None,
    };
    RawValue::from_string(answer(id, &Err(error))).expect("serde_json writes JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_gives_its_method_and_id() {
        let s = Summary::of(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}}"#);
        assert_eq!(s.method.as_deref(), Some("tools/call"));
        assert_eq!(s.request_ids.len(), 1);
        assert_eq!(s.request_ids[0].to_string(), "7");
        let body = s.error_body(DROPPED_BY_PLUGIN, "no").unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["error"]["code"], DROPPED_BY_PLUGIN);
    }

    #[test]
    fn initialize_gives_the_offered_protocol() {
        let s = Summary::of(
            br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#,
        );
        assert_eq!(s.offered_protocol.as_deref(), Some("2025-06-18"));
    }

    #[test]
    fn a_notification_has_no_id_and_no_error_body() {
        let s = Summary::of(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!(s.method.as_deref(), Some("notifications/initialized"));
        assert!(s.error_body(DROPPED_BY_PLUGIN, "no").is_none());
    }

    #[test]
    fn a_batch_is_answered_with_an_array_for_its_requests() {
        let s = Summary::of(
            br#"[{"jsonrpc":"2.0","id":"a","method":"x"},{"jsonrpc":"2.0","method":"n"}]"#,
        );
        assert!(s.batch);
        assert_eq!(s.method, None);
        let v: Value = serde_json::from_slice(&s.error_body(1, "m").unwrap()).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1);
        assert_eq!(v[0]["id"], "a");
    }

    #[test]
    fn responses_are_recognised_and_other_messages_are_not() {
        let id = |text: &str| response_id(text).map(|id| id.to_string());
        assert_eq!(
            id(r#"{"jsonrpc":"2.0","id":3,"result":{}}"#).as_deref(),
            Some("3")
        );
        assert_eq!(
            id(r#"{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":""}}"#).as_deref(),
            Some("3")
        );
        assert_eq!(
            id(r#"{"jsonrpc":"2.0","id":"x","result":null}"#).as_deref(),
            Some(r#""x""#)
        );
        assert_eq!(
            response_id(r#"{"jsonrpc":"2.0","method":"m","params":{"result":1}}"#),
            None
        );
        assert_eq!(response_id("not json \"result\""), None);
    }

    #[test]
    fn garbage_gives_an_empty_summary() {
        assert_eq!(Summary::of(b"\xff not json"), Summary::default());
    }

    #[test]
    fn ids_are_echoed_as_sent_and_compared_by_value() {
        // Past 64 bits (through an f64 this came back as 9.333300000033397e+29, which a
        // client reads as another number), a float, and strings with escapes.
        for id in [
            "933330000003339607008678161066",
            "18446744073709551617",
            "-0",
            "1.5e3",
            r#""\u0061b""#,
        ] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
            let s = Summary::of(body.as_bytes());
            let answer = s.error_body(DROPPED_BY_PLUGIN, "no").unwrap();
            let text = std::str::from_utf8(&answer).unwrap();
            assert!(text.contains(&format!(r#""id":{id},"#)), "{text}");
            let back = response_id(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#));
            assert_eq!(back.as_ref(), s.request_ids.first(), "{id}");
        }
        // A string id matches the same string written another way; numbers by their text.
        let a = request_id(r#"{"id":"ab","method":"m"}"#).unwrap();
        assert_eq!(Some(a), response_id(r#"{"id":"\u0061b","result":1}"#));
        assert_ne!(
            request_id(r#"{"id":1,"method":"m"}"#),
            response_id(r#"{"id":"1","result":1}"#)
        );
    }
}
