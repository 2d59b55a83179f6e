//! The JSON-RPC helpers on client bodies, which are untrusted and arrive before any plugin,
//! and the shape rules (`shape`) that decide whether a plugin sees them at all.
//!
//! A panic here would take down a request (or the connection) on a malformed body; an error
//! body that is not JSON would be a broken answer the client cannot match to its request; and
//! a batch that does not survive being split and joined again would change what the upstream
//! receives even when every plugin passes every message.

#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use serde_json::value::RawValue;
use sluice::mcp::jsonrpc::{self, Summary};
use sluice::mcp::messages::{batch_items, join_batch};

/// A message with everything JSON has to escape, so the error body's encoding is tested too.
const MESSAGE: &str = "dropped \"here\" \\ \u{0}\u{1f}\n\u{2028} 😀";

fuzz_target!(|body: &[u8]| {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    check_summary(body, parsed.as_ref());

    let text = String::from_utf8_lossy(body);
    check_response_id(&text);
    if let Ok(text) = std::str::from_utf8(body) {
        check_batch(text, parsed.as_ref());
        check_shape(text, parsed.as_ref());
    }
});

/// `shape`, which decides what a plugin may see: never a panic; what it accepts is
/// one JSON object to serde_json too; the client rule is at least as strict as the
/// deep one, and the deep one as the top-level one; and an object with distinct names
/// written the plain way (serde_json's own output) is never refused.
fn check_shape(text: &str, parsed: Option<&Value>) {
    use sluice::shape::{Depth, client_message, one_object};
    let top = one_object(text, Depth::Top);
    let all = one_object(text, Depth::All);
    let client = client_message(text);
    // At every depth each string is decoded, so what passes is one object serde_json
    // reads too; the top-level rule skips nested values unread, so what it accepts is
    // one object in JSON's grammar (a lone surrogate escape such as `"\ud800"` is
    // grammar that serde_json's `Value` refuses).
    if all.is_ok() {
        assert!(matches!(parsed, Some(Value::Object(_))), "accepted, yet not one JSON object");
    }
    if top.is_ok() {
        assert!(
            text.trim_start().starts_with('{')
                && serde_json::from_str::<&RawValue>(text).is_ok(),
            "accepted, yet not one JSON object"
        );
    }
    assert!(all.is_err() || top.is_ok(), "deep accepts what top refuses");
    assert!(client.is_err() || all.is_ok(), "client accepts what deep refuses");
    if let Some(value @ Value::Object(_)) = parsed {
        let plain = serde_json::to_string(value).expect("a Value serialises");
        assert!(
            one_object(&plain, Depth::All).is_ok(),
            "distinct names refused: {plain}"
        );
    }
}

/// `Summary::of` reads JSON's grammar (`RawValue`), not only what fits `Value` (a number
/// like `1e400` is JSON that serde_json's `Value` refuses): a batch is text that is a
/// JSON array, and text that is not JSON names nothing.
fn check_summary(body: &[u8], _parsed: Option<&Value>) {
    let summary = Summary::of(body);
    let text = std::str::from_utf8(body).ok();
    let json = text.is_some_and(|t| serde_json::from_str::<&RawValue>(t).is_ok());
    let array = text.is_some_and(|t| serde_json::from_str::<Vec<&RawValue>>(t).is_ok());
    assert_eq!(summary.batch, array, "batch-ness differs from the JSON");
    if !json {
        assert_eq!(summary, Summary::default(), "not JSON, yet a summary");
    }
    for code in [
        jsonrpc::DROPPED_BY_PLUGIN,
        jsonrpc::UPSTREAM_FAILED,
        i64::MIN,
    ] {
        let Some(error_body) = summary.error_body(code, MESSAGE) else {
            assert!(summary.request_ids.is_empty(), "requests left unanswered");
            continue;
        };
        let Ok(answer) = serde_json::from_slice::<Value>(&error_body) else {
            // An id that is JSON but not a `Value` (a number like `1e400`) is echoed as
            // written: the body is JSON, one answer per request, each with its id text.
            let raw: &RawValue = serde_json::from_slice(&error_body).expect("error body is JSON");
            let count = if summary.batch {
                serde_json::from_str::<Vec<&RawValue>>(raw.get()).expect("an array").len()
            } else {
                1
            };
            assert_eq!(count, summary.request_ids.len(), "one answer per request");
            check_numeric_ids(body, summary.batch, &error_body);
            continue;
        };
        let answers = if summary.batch {
            answer
                .as_array()
                .expect("a batch is answered by an array")
                .clone()
        } else {
            vec![answer]
        };
        assert_eq!(
            answers.len(),
            summary.request_ids.len(),
            "one answer per request"
        );
        // The ids are compared as text: reading back a float with serde_json can land a few
        // ulps away from what it wrote (its float parsing is not correctly rounded).
        let raw = raw_ids(&error_body, summary.batch);
        for ((answer, raw), id) in answers.iter().zip(raw).zip(&summary.request_ids) {
            assert_eq!(raw.get(), id.to_string(), "answer for another id: {answer}");
            assert_eq!(answer["jsonrpc"], "2.0");
            assert_eq!(answer["error"]["code"], code);
            assert_eq!(answer["error"]["message"], MESSAGE);
        }
        if code == jsonrpc::DROPPED_BY_PLUGIN {
            check_numeric_ids(body, summary.batch, &error_body);
        }
    }
}

/// A client matches an answer to its request by the id's value, so the id text sent back
/// must be the id text received (once, ids went through `serde_json::Value`, and a number
/// past 64 bits came back as a float: `{"id":933330000003339607008678161066,...}` was
/// answered with id `9.333300000033397e+29`; see fuzz/README.md).
fn check_numeric_ids(body: &[u8], batch: bool, error_body: &[u8]) {
    let sent = raw_request_ids(body, batch);
    let answered = raw_ids(error_body, batch);
    assert_eq!(sent.len(), answered.len());
    for (sent, answered) in sent.iter().zip(&answered) {
        assert_eq!(sent.get(), answered.get(), "id answered as another text");
    }
}

type Message<'a> = HashMap<String, &'a RawValue>;

/// The raw ids of the requests of a body, in the order `Summary` lists them.
fn raw_request_ids(body: &[u8], batch: bool) -> Vec<&RawValue> {
    let messages: Vec<Message<'_>> = if batch {
        let items: Vec<&RawValue> = serde_json::from_slice(body).expect("a batch is an array");
        items
            .into_iter()
            .map(|item| serde_json::from_str(item.get()).unwrap_or_default())
            .collect()
    } else {
        serde_json::from_slice(body).into_iter().collect()
    };
    messages
        .into_iter()
        .filter(|message| message.contains_key("method"))
        .filter_map(|message| message.get("id").copied())
        .collect()
}

/// The raw ids of the answers in an error body.
fn raw_ids(error_body: &[u8], batch: bool) -> Vec<&RawValue> {
    let answers: Vec<Message<'_>> = if batch {
        serde_json::from_slice(error_body).expect("an array of answers")
    } else {
        vec![serde_json::from_slice(error_body).expect("one answer")]
    };
    answers.iter().map(|answer| answer["id"]).collect()
}

/// Called on every event the upstream sends, so it must not panic on anything; when it does
/// recognise a response, the text must really be one.
fn check_response_id(text: &str) {
    let Some(id) = jsonrpc::response_id(text) else {
        return;
    };
    // Read as members, each kept as its text: an id such as `2.5e777` is valid JSON that
    // a `Value` refuses (out of an f64's range), and the proxy echoes it as it came.
    let members: Message<'_> = serde_json::from_str(text).expect("a response is a JSON object");
    assert!(
        !members.contains_key("method"),
        "a request taken for a response"
    );
    assert!(members.contains_key("result") || members.contains_key("error"));
    assert_eq!(members["id"].get(), id.to_string(), "another id");
}

/// Plugins see a batch message by message, and the proxy joins what they pass: with every
/// message passed, the upstream must get the same JSON.
fn check_batch(text: &str, parsed: Option<&Value>) {
    let items = batch_items(text);
    match (parsed, &items) {
        (Some(Value::Array(array)), Some(items)) => {
            assert_eq!(items.len(), array.len(), "batch split into another count");
            for (item, element) in items.iter().zip(array) {
                let item: Value = serde_json::from_str(item).expect("a batch item is JSON");
                assert_eq!(&item, element, "batch item changed");
            }
            let joined: Value =
                serde_json::from_str(&join_batch(items)).expect("a joined batch is JSON");
            assert_eq!(joined, Value::Array(array.clone()), "joined batch changed");
        }
        (Some(Value::Array(_)), None) => panic!("a JSON array not taken for a batch"),
        (Some(_), Some(_)) => panic!("JSON that is not an array taken for a batch"),
        // Not JSON as a whole (say, nested too deep for a Value): whatever was split must
        // still join back into the exact text, less the whitespace between items.
        (None, Some(items)) => {
            let joined = join_batch(items);
            assert_eq!(
                strip_outer(&joined),
                strip_outer(text),
                "joined batch changed"
            );
        }
        (_, None) => {}
    }
}

/// The text with whitespace outside strings removed, so a batch and its rejoined form compare.
fn strip_outer(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}
