//! `reference`: the reference filter in Rust, the normative implementation of the
//! behaviour written in `plugins/README.md` ("The reference filter"). The same filter
//! exists in C, Zig, Python, JavaScript and (a subset) WAT; `tests/cases/languages.rs`
//! checks that they all agree.
//!
//! Config: `{"redact": [..], "drop_methods": [..], "drop_events": [..]}`, all optional.
//! Order: drop by event type, drop by JSON-RPC method (a byte rule, no JSON parser),
//! then redact substrings with `[REDACTED]`.
//!
//! World `plugin` of `sluice:plugin@0.2.0`. The message is a host resource borrowed for
//! the call; `message.sse_event()` and `message.data()` copy what they return into the
//! guest. `modify` carries only the new data: the host keeps the SSE id, event type and
//! retry. The method rule reads the data bytes, not `message.method()`, so that every
//! language gives the same verdicts for the same bytes.

use std::cell::{Cell, RefCell};

use serde::Deserialize;

use exports::sluice::plugin::handler::Guest;
use sluice::plugin::log::{Level, log};
use sluice::plugin::types::{Message, Verdict};

wit_bindgen::generate!({
    world: "plugin",
    path: "../../../wit/plugin.wit",
});

const MARKER: &str = "[REDACTED]";
const LOG_MESSAGE: &str = "reference: redacted data in this stream";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    redact: Vec<String>,
    #[serde(default)]
    drop_methods: Vec<String>,
    #[serde(default)]
    drop_events: Vec<String>,
}

thread_local! {
    static CONFIG: RefCell<Config> = RefCell::new(Config::default());
    /// Whether this instance (one exchange) has logged a redaction; cleared by `init`.
    static LOGGED: Cell<bool> = const { Cell::new(false) };
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn parse_config(text: &str) -> Result<Config, String> {
    if text.bytes().all(is_ws) {
        return Ok(Config::default());
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("reference: invalid config JSON: {e}"))?;
    // Checked first: serde would also accept an array for a struct.
    if !value.is_object() {
        return Err("reference: the config is not a JSON object".into());
    }
    let config =
        Config::deserialize(value).map_err(|e| format!("reference: invalid config: {e}"))?;
    if let Some(i) = config.redact.iter().position(String::is_empty) {
        return Err(format!("reference: redact[{i}] is the empty string"));
    }
    Ok(config)
}

/// Step 1: the event type, `message` when absent or empty.
fn event_type(sse_event: Option<&str>) -> &str {
    match sse_event {
        None | Some("") => "message",
        Some(t) => t,
    }
}

/// Step 2, the method rule: the values of every `"method"` key in an object-looking
/// `data`, read up to the next `"` byte.
fn method_matches(data: &[u8], methods: &[String]) -> bool {
    if methods.is_empty() {
        return false;
    }
    let first = data.iter().position(|&b| !is_ws(b));
    let last = data.iter().rposition(|&b| !is_ws(b));
    match (first, last) {
        (Some(f), Some(l)) if data[f] == b'{' && data[l] == b'}' => {}
        _ => return false,
    }
    const KEY: &[u8] = b"\"method\"";
    let mut from = 0;
    while let Some(at) = find(&data[from..], KEY) {
        let start = from + at;
        from = start + 1;
        let mut i = start + KEY.len();
        while i < data.len() && is_ws(data[i]) {
            i += 1;
        }
        if data.get(i) != Some(&b':') {
            continue;
        }
        i += 1;
        while i < data.len() && is_ws(data[i]) {
            i += 1;
        }
        if data.get(i) != Some(&b'"') {
            continue;
        }
        i += 1;
        let Some(len) = data[i..].iter().position(|&b| b == b'"') else {
            continue;
        };
        let value = &data[i..i + len];
        if methods.iter().any(|m| m.as_bytes() == value) {
            return true;
        }
    }
    false
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Step 3: `None` when no pattern occurs.
fn redact(data: &str, patterns: &[String]) -> Option<String> {
    let mut text: Option<String> = None;
    for p in patterns {
        let current = text.as_deref().unwrap_or(data);
        if current.contains(p.as_str()) {
            text = Some(current.replace(p.as_str(), MARKER));
        }
    }
    text
}

struct Reference;

impl Guest for Reference {
    fn init(config: String) -> Result<(), String> {
        let config = parse_config(&config)?;
        CONFIG.with(|c| *c.borrow_mut() = config);
        LOGGED.with(|l| l.set(false));
        Ok(())
    }

    fn on_message(message: &Message) -> Verdict {
        CONFIG.with(|c| {
            let config = c.borrow();
            let sse_event = message.sse_event();
            let kind = event_type(sse_event.as_deref());
            if config.drop_events.iter().any(|e| e == kind) {
                return Verdict::Drop;
            }
            let data = message.data();
            if method_matches(data.as_bytes(), &config.drop_methods) {
                return Verdict::Drop;
            }
            match redact(&data, &config.redact) {
                None => Verdict::Pass,
                Some(data) => {
                    if !LOGGED.with(|l| l.replace(true)) {
                        log(Level::Info, LOG_MESSAGE);
                    }
                    Verdict::Modify(data)
                }
            }
        })
    }
}

export!(Reference);
