//! Just enough JSON-RPC to answer for a plugin's decision: which messages a body holds,
//! and the error responses the proxy sends in the upstream's place.

use std::sync::LazyLock;

use bytes::Bytes;
use memchr::memmem::Finder;
use serde_json::{Value, json};

/// A plugin dropped a client's request.
pub const DROPPED_BY_PLUGIN: i64 = -32050;
/// The upstream could not be reached or answered with something unusable.
pub const UPSTREAM_FAILED: i64 = -32051;
/// The response stream ended (upstream failure, oversized event) before the answer.
pub const STREAM_FAILED: i64 = -32052;

/// What the proxy needs to know about a POST body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// The method, when the body is a single request or notification.
    pub method: Option<String>,
    /// The ids of the requests in the body (notifications and responses have none), in
    /// order; a single request gives one.
    pub request_ids: Vec<Value>,
    /// The body is a JSON array (a batch).
    pub batch: bool,
    /// For `initialize`: the protocol revision the client offers (`params.protocolVersion`).
    pub offered_protocol: Option<String>,
}

impl Summary {
    /// Reads a body; anything that is not JSON-RPC gives an empty summary.
    pub fn of(body: &[u8]) -> Self {
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return Self::default();
        };
        match value {
            Value::Array(items) => Self {
                method: None,
                request_ids: items.iter().filter_map(request_id).collect(),
                batch: true,
                offered_protocol: None,
            },
            item => Self {
                method: item
                    .get("method")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                request_ids: request_id(&item).into_iter().collect(),
                batch: false,
                offered_protocol: item
                    .pointer("/params/protocolVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            },
        }
    }

    /// The JSON-RPC error body that answers every request in the body, or `None` when
    /// it held no request (only notifications or responses).
    pub fn error_body(&self, code: i64, message: &str) -> Option<Bytes> {
        if self.request_ids.is_empty() {
            return None;
        }
        let errors: Vec<Value> = self
            .request_ids
            .iter()
            .map(|id| error(id, code, message))
            .collect();
        let value = if self.batch {
            Value::Array(errors)
        } else {
            errors.into_iter().next()?
        };
        Some(Bytes::from(value.to_string()))
    }
}

/// The id of a request (a message with both `method` and `id`).
fn request_id(message: &Value) -> Option<Value> {
    message.get("method")?;
    message.get("id").cloned()
}

/// The id of a response (a message with `id` and `result` or `error`, no `method`),
/// if `data` is one. Cheap for other events: no parse unless the text could match.
pub fn response_id(data: &str) -> Option<Value> {
    // Runs on every event of a stream whose request is still waiting: memchr's SIMD
    // search, several times faster than `str::contains` on a few hundred bytes.
    static RESULT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"result\""));
    static ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));
    let bytes = data.as_bytes();
    if RESULT.find(bytes).is_none() && ERROR.find(bytes).is_none() {
        return None;
    }
    let value: Value = serde_json::from_str(data).ok()?;
    if value.get("method").is_some()
        || !(value.get("result").is_some() || value.get("error").is_some())
    {
        return None;
    }
    value.get("id").cloned()
}

/// One JSON-RPC error response.
pub fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_gives_its_method_and_id() {
        let s = Summary::of(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}}"#);
        assert_eq!(s.method.as_deref(), Some("tools/call"));
        assert_eq!(s.request_ids, vec![json!(7)]);
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
        assert_eq!(
            response_id(r#"{"jsonrpc":"2.0","id":3,"result":{}}"#),
            Some(json!(3))
        );
        assert_eq!(
            response_id(r#"{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":""}}"#),
            Some(json!(3))
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
}
