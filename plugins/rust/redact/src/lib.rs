//! `redact`: rewrites event data, showing the full interceptor world with its optional
//! batch call (`batch-interceptor`).
//!
//! It demonstrates configuration (`init` parses JSON and can refuse it), the `modify`
//! verdict, per-stream state (globals reset in `on-stream-start`), host logging, and
//! `on-events`: every event that arrived together in one call, which on a fast stream
//! saves most of the per-call cost.
//!
//! Config: `{"patterns": ["regex", ...], "marker": "[REDACTED]"}`. `patterns` is
//! required (syntax of the `regex-lite` crate: like `regex`, but `\w`, `\d`, `\s`
//! and `(?i)` are ASCII-only and there are no `\p{..}` classes); `marker` is optional
//! and defaults to `[REDACTED]`.
//! Every match of every pattern in an event's `data` is replaced by the marker and the
//! event is returned as `modify` (`id`, `event` and `retry` are kept); an event with no
//! match gets `pass`. It works in both directions, so secrets in a client's request
//! bodies are redacted too. The first redaction in each stream is logged at debug level.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use memchr::memmem::Finder;
use regex_lite::Regex;
use serde::Deserialize;

use sluice::plugin::host::{Level, log};

wit_bindgen::generate!({
    world: "batch-interceptor",
    path: "../../../wit/0.1.0-revised",
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
    /// One per pattern: a literal every match starts with, when the pattern has one.
    /// regex-lite has no prefilter of its own and spends microseconds on an event that
    /// cannot match; a substring search that finds no prefix skips the regex.
    prefixes: Vec<Option<Finder<'static>>>,
    marker: String,
}

/// The literal text every match of `pattern` starts with, if it is simple enough to be
/// sure: the characters before the first regex metacharacter, minus the last one when a
/// quantifier follows it (`ab*` only guarantees `a`). Nothing for patterns with `|`
/// (an alternative may start differently) or that start with a group, class or flag.
fn literal_prefix(pattern: &str) -> Option<String> {
    if pattern.contains('|') {
        return None;
    }
    let is_meta = |c: char| "\\.^$|?*+()[]{}".contains(c);
    let mut prefix: String = pattern.chars().take_while(|&c| !is_meta(c)).collect();
    if matches!(pattern[prefix.len()..].chars().next(), Some('?' | '*' | '{')) {
        prefix.pop();
    }
    (!prefix.is_empty()).then_some(prefix)
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
    let prefixes = config
        .patterns
        .iter()
        .map(|p| literal_prefix(p).map(|prefix| Finder::new(prefix.as_bytes()).into_owned()))
        .collect();
    Ok(Rules {
        patterns,
        prefixes,
        marker: config.marker.unwrap_or_else(|| DEFAULT_MARKER.into()),
    })
}

/// Replace every match of every pattern; `None` when nothing matched.
fn redact(rules: &Rules, data: &str) -> Option<String> {
    let mut text: Cow<'_, str> = Cow::Borrowed(data);
    for (re, prefix) in rules.patterns.iter().zip(&rules.prefixes) {
        if prefix.as_ref().is_some_and(|p| p.find(text.as_bytes()).is_none()) {
            continue;
        }
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
        verdict(event)
    }

    /// The same verdicts as `on_event`, for every event of a batch in one call.
    fn on_events(events: Vec<SseEvent>) -> Vec<Verdict> {
        events.into_iter().map(verdict).collect()
    }
}

fn verdict(event: SseEvent) -> Verdict {
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

export!(Redact);
