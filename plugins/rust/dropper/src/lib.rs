//! `dropper`: filters out whole events, showing the `drop` verdict.
//!
//! Config (both keys optional, unknown keys refused):
//! `{"methods": ["notifications/progress", ...], "events": ["ping", ...]}`.
//! An event is dropped when its SSE `event` type is listed in `events`, or when its
//! `data` is a JSON object whose `"method"` is a string listed in `methods` (a JSON-RPC
//! request or notification). Everything else passes. An empty config drops nothing.
//!
//! A guard fails closed: with `methods` configured, data that looks like a JSON object
//! (it starts with `{`) but does not parse as one is dropped, with a warning, because
//! this plugin cannot tell what method it carries and the server's parser may read one
//! (`{"method":"ping","method":"tools/call"}` is refused by serde's derive; a Python
//! server runs the second).
//!
//! Dropping works in both directions: a server notification simply disappears; for a
//! client's request the host answers the client with a JSON-RPC error, and for a
//! client's notification with 202 Accepted.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde::Deserialize;

use sluice::plugin::host::{Level, log};

wit_bindgen::generate!({
    world: "interceptor",
    path: "../../../wit/0.1.0-revised",
});

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    methods: BTreeSet<String>,
    #[serde(default)]
    events: BTreeSet<String>,
}

/// Only the part of a JSON-RPC message we look at; other fields are skipped.
#[derive(Deserialize)]
struct Message {
    method: Option<serde_json::Value>,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

fn parse_config(config: &str) -> Result<Config, String> {
    if config.trim().is_empty() {
        return Ok(Config::default());
    }
    serde_json::from_str(config).map_err(|e| {
        format!(r#"dropper: invalid config ({e}); expected {{"methods": ["..."], "events": ["..."]}}"#)
    })
}

fn should_drop(config: &Config, event: &SseEvent) -> bool {
    if let Some(kind) = &event.event {
        if config.events.contains(kind) {
            return true;
        }
    }
    if config.methods.is_empty() {
        return false;
    }
    // Cheap pre-check: skip the JSON parse for data that cannot be a JSON object.
    if !event.data.trim_start().starts_with('{') {
        return false;
    }
    match serde_json::from_str::<Message>(&event.data) {
        Ok(Message { method: Some(serde_json::Value::String(m)) }) => config.methods.contains(&m),
        Ok(_) => false,
        Err(e) => {
            log(Level::Warn, &format!("dropper: dropping a message it cannot parse ({e})"));
            true
        }
    }
}

struct Dropper;

impl Guest for Dropper {
    fn init(config: String) -> Result<(), String> {
        let config = parse_config(&config)?;
        if config.methods.is_empty() && config.events.is_empty() {
            log(Level::Warn, "dropper: no methods and no events configured; nothing will be dropped");
        }
        CONFIG.set(config).map_err(|_| "dropper: init called twice".to_string())
    }

    fn on_stream_start(_info: StreamInfo) {}

    fn on_stream_end() {}

    fn on_event(event: SseEvent) -> Verdict {
        match CONFIG.get() {
            Some(config) if should_drop(config, &event) => Verdict::Drop,
            _ => Verdict::Pass,
        }
    }
}

export!(Dropper);
