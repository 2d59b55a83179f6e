//! `redact`: rewrites event data, showing the full `interceptor` world.
//!
//! It demonstrates configuration (`init` parses JSON and can refuse it), the `modify`
//! verdict, per-stream state (globals reset in `on-stream-start`) and host logging.
//!
//! Config: `{"patterns": ["regex", ...], "marker": "[REDACTED]"}`. `patterns` is
//! required (syntax of the `regex-lite` crate: like `regex`, but `\w`, `\d`, `\s`
//! and `(?i)` are ASCII-only and there are no `\p{..}` classes); `marker` is optional and defaults to `[REDACTED]`.
//! Every match of every pattern in an event's `data` is replaced by the marker and the
//! event is returned as `modify` (`id`, `event` and `retry` are kept); an event with no
//! match gets `pass`. It works in both directions, so secrets in a client's request
//! bodies are redacted too. The first redaction in each stream is logged at debug level.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use regex_lite::Regex;
use serde::Deserialize;

use sluice::plugin::host::{Level, log};

wit_bindgen::generate!({
    world: "interceptor",
    path: "../../../wit",
});

const DEFAULT_MARKER: &str = "[REDACTED]";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    patterns: Vec<String>,
    marker: Option<String>,
}

struct Rules {
    patterns: Vec<Regex>,
    marker: String,
}

/// Set by `init`. The host makes a fresh instance per stream and calls `init` first.
static RULES: OnceLock<Rules> = OnceLock::new();
/// Whether this stream has already logged a redaction (log once per stream).
static LOGGED: AtomicBool = AtomicBool::new(false);

fn parse_config(config: &str) -> Result<Rules, String> {
    if config.trim().is_empty() {
        return Err(r#"redact: no config given; expected {"patterns": ["regex", ...], "marker": "[REDACTED]"}"#.into());
    }
    let config: Config =
        serde_json::from_str(config).map_err(|e| format!("redact: invalid config JSON: {e}"))?;
    if config.patterns.is_empty() {
        return Err("redact: \"patterns\" is empty; give at least one regex".into());
    }
    let patterns = config
        .patterns
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let re = Regex::new(p)
                .map_err(|e| format!("redact: patterns[{i}] {p:?} is not a valid regex: {e}"))?;
            // "" or "x*" would put a marker between every two characters.
            if re.is_match("") {
                return Err(format!("redact: patterns[{i}] {p:?} matches the empty string"));
            }
            Ok(re)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rules { patterns, marker: config.marker.unwrap_or_else(|| DEFAULT_MARKER.into()) })
}

/// Replace every match of every pattern; `None` when nothing matched.
fn redact(rules: &Rules, data: &str) -> Option<String> {
    let mut text: Cow<'_, str> = Cow::Borrowed(data);
    for re in &rules.patterns {
        // `replace_all` borrows its input back when nothing matched: no copy then.
        if let Cow::Owned(replaced) = re.replace_all(&text, regex_lite::NoExpand(&rules.marker)) {
            text = Cow::Owned(replaced);
        }
    }
    match text {
        Cow::Owned(s) => Some(s),
        Cow::Borrowed(_) => None,
    }
}

struct Redact;

impl Guest for Redact {
    fn init(config: String) -> Result<(), String> {
        let rules = parse_config(&config)?;
        let n = rules.patterns.len();
        RULES.set(rules).map_err(|_| "redact: init called twice".to_string())?;
        log(Level::Debug, &format!("redact: {n} pattern(s) loaded"));
        Ok(())
    }

    fn on_stream_start(_info: StreamInfo) {
        LOGGED.store(false, Ordering::Relaxed);
    }

    fn on_stream_end() {}

    fn on_event(event: SseEvent) -> Verdict {
        // Without a successful `init` the host never calls us; pass to be safe.
        let Some(rules) = RULES.get() else { return Verdict::Pass };
        match redact(rules, &event.data) {
            None => Verdict::Pass,
            Some(data) => {
                if !LOGGED.swap(true, Ordering::Relaxed) {
                    log(Level::Debug, "redact: redacted data in this stream (logged once per stream)");
                }
                Verdict::Modify(SseEvent { data, ..event })
            }
        }
    }
}

export!(Redact);
