//! `reference`: the reference filter in Rust, the normative implementation of the
//! behaviour written in `plugins/README.md` ("The reference filter"). The same filter
//! exists in C, Zig, Python, JavaScript and (a subset) WAT; `tests/cases/languages.rs`
//! checks that they all agree.
//!
//! Config: `{"redact": [..], "drop_methods": [..], "drop_events": [..]}`, all optional.
//! Order: drop by event type, drop by JSON-RPC method (a byte rule, no JSON parser),
//! then redact substrings with `[REDACTED]`.

use std::cell::{Cell, RefCell};

use serde::Deserialize;

use sluice::plugin::host::{Level, log};

wit_bindgen::generate!({
    world: "interceptor",
    path: "../../../wit/0.1.0-revised",
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
fn event_type(event: &SseEvent) -> &str {
    match event.event.as_deref() {
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

    fn on_stream_start(_info: StreamInfo) {
        LOGGED.with(|l| l.set(false));
    }

    fn on_stream_end() {}

    fn on_event(event: SseEvent) -> Verdict {
        CONFIG.with(|c| {
            let config = c.borrow();
            let kind = event_type(&event);
            if config.drop_events.iter().any(|e| e == kind) {
                return Verdict::Drop;
            }
            if method_matches(event.data.as_bytes(), &config.drop_methods) {
                return Verdict::Drop;
            }
            match redact(&event.data, &config.redact) {
                None => Verdict::Pass,
                Some(data) => {
                    if !LOGGED.with(|l| l.replace(true)) {
                        log(Level::Info, LOG_MESSAGE);
                    }
                    Verdict::Modify(SseEvent { data, ..event })
                }
            }
        })
    }
}

export!(Reference);
