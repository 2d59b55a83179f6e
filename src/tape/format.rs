//! The tape format, version 1: JSON Lines, one [`Record`] per line, written by
//! `--record DIR` and read by `sluice tape serve` and `sluice plugin test`.
//! `docs/tapes.md` documents it for people and other tools.
//!
//! A tape is a log of streams (one per HTTP exchange), interleaved in the order things
//! happened, each record naming its `stream`. Header allow-lists decide what is kept:
//! `Authorization`, cookies and any header not listed never reach a tape.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::plugin::Step;
use crate::sse::Event;

/// The value of [`Record::Header`]'s `format`.
pub const FORMAT: &str = "sluice-tape";
/// The version this build writes and reads.
pub const VERSION: u32 = 1;

/// Request headers a tape keeps (lower case). Credentials are deliberately absent.
pub const REQUEST_HEADERS: &[&str] = &[
    "accept",
    "content-type",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    "mcp-protocol-version",
    "mcp-session-id",
    "user-agent",
];

/// Response headers a tape keeps (lower case).
pub const RESPONSE_HEADERS: &[&str] = &[
    "cache-control",
    "content-type",
    "mcp-protocol-version",
    "mcp-session-id",
];

/// One line of a tape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Record {
    /// The first line.
    Header {
        /// Always [`FORMAT`].
        format: String,
        /// [`VERSION`] when written by this build.
        version: u32,
        /// The upstream base URL the traffic went to.
        upstream: String,
        /// When recording started (seconds since the Unix epoch).
        started_unix: u64,
    },
    /// A client request and what the chain did with its body.
    Request {
        stream: u64,
        /// Milliseconds since recording started.
        t_ms: u64,
        method: String,
        path: String,
        query: Option<String>,
        rpc_method: Option<String>,
        protocol_version: Option<String>,
        /// Kept headers only ([`REQUEST_HEADERS`]).
        headers: BTreeMap<String, String>,
        /// The body as the client sent it (lossy UTF-8).
        body: String,
        /// Each plugin's verdict on the body (every message of a batch in turn).
        steps: Vec<TapeStep>,
        /// The body sent upstream, `None` when the proxy answered itself.
        sent: Option<String>,
    },
    /// The upstream's response head.
    Response {
        stream: u64,
        t_ms: u64,
        status: u16,
        /// Kept headers only ([`RESPONSE_HEADERS`]).
        headers: BTreeMap<String, String>,
    },
    /// An upstream event (SSE) or body (JSON response), and what the chain did.
    Event {
        stream: u64,
        t_ms: u64,
        /// As received from the upstream.
        received: TapeEvent,
        steps: Vec<TapeStep>,
        /// As sent to the client; `None` when nothing was sent, or when `unchanged`.
        sent: Option<TapeEvent>,
        /// The client got exactly `received` (`sent` is then left out, halving the
        /// size of a tape of mostly passed events). See [`Record::sent_event`].
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unchanged: bool,
    },
    /// An SSE comment (keep-alive), passed as it was.
    Comment {
        stream: u64,
        t_ms: u64,
        text: String,
    },
    /// The end of a stream.
    End {
        stream: u64,
        t_ms: u64,
        /// `complete`, `upstream-error` or `client-gone`.
        outcome: String,
        error: Option<String>,
    },
}

impl Record {
    /// For an `event` record, what the client got: `received` when `unchanged`, else
    /// `sent`. `None` for other records and when nothing was sent.
    pub fn sent_event(&self) -> Option<TapeEvent> {
        match self {
            Record::Event {
                received,
                sent,
                unchanged,
                ..
            } => {
                if *unchanged {
                    Some(received.clone())
                } else {
                    sent.clone()
                }
            }
            _ => None,
        }
    }

    /// The stream a record belongs to (`None` for the header).
    pub fn stream(&self) -> Option<u64> {
        match self {
            Record::Header { .. } => None,
            Record::Request { stream, .. }
            | Record::Response { stream, .. }
            | Record::Event { stream, .. }
            | Record::Comment { stream, .. }
            | Record::End { stream, .. } => Some(*stream),
        }
    }
}

/// An SSE event (or a JSON body, as `data`) on a tape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapeEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u64>,
}

impl From<&Event> for TapeEvent {
    fn from(e: &Event) -> Self {
        Self {
            id: e.id.clone(),
            event: e.event.clone(),
            data: e.data.clone(),
            retry: e.retry,
        }
    }
}

impl From<Event> for TapeEvent {
    fn from(e: Event) -> Self {
        Self {
            id: e.id,
            event: e.event,
            data: e.data,
            retry: e.retry,
        }
    }
}

impl From<TapeEvent> for Event {
    fn from(e: TapeEvent) -> Self {
        Event {
            id: e.id,
            event: e.event,
            data: e.data,
            retry: e.retry,
        }
    }
}

/// One plugin's verdict on a tape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapeStep {
    pub plugin: String,
    /// `pass`, `drop`, `modify`, or a failure kind (`trap`, `deadline`, `fuel`, ...).
    pub verdict: String,
    /// Wall time of the call, in microseconds.
    pub micros: u64,
    /// Fuel the call consumed.
    pub fuel: u64,
}

impl From<&Step> for TapeStep {
    fn from(s: &Step) -> Self {
        Self {
            plugin: s.plugin.to_string(),
            verdict: s.verdict.as_str().to_string(),
            micros: u64::try_from(s.elapsed.as_micros()).unwrap_or(u64::MAX),
            fuel: s.fuel,
        }
    }
}

/// Why a tape cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TapeError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A line is not a record.
    #[error("{path}:{line}: not a tape record: {reason}")]
    Parse {
        path: String,
        line: usize,
        reason: String,
    },
    /// The header is missing or from another version.
    #[error("{path}: {reason}")]
    Header { path: String, reason: String },
}

/// Reads a whole tape. The header must come first and carry this version.
pub fn read(path: &Path) -> Result<Vec<Record>, TapeError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| TapeError::Io {
        path: name.clone(),
        source,
    })?;
    let mut records = Vec::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| TapeError::Io {
            path: name.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(&line).map_err(|e| TapeError::Parse {
            path: name.clone(),
            line: index + 1,
            reason: e.to_string(),
        })?;
        records.push(record);
    }
    match records.first() {
        Some(Record::Header {
            format, version, ..
        }) if format == FORMAT && *version == VERSION => Ok(records),
        Some(Record::Header { version, .. }) => Err(TapeError::Header {
            path: name,
            reason: format!("tape version {version}; this sluice reads version {VERSION}"),
        }),
        _ => Err(TapeError::Header {
            path: name,
            reason: "no tape header on the first line (is this a sluice tape?)".into(),
        }),
    }
}

/// The kept headers of `headers`, by allow-list.
pub fn kept_headers(headers: &http::HeaderMap, keep: &[&str]) -> BTreeMap<String, String> {
    keep.iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_string(), value.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_never_kept() {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", "Bearer secret".parse().unwrap());
        h.insert("cookie", "a=b".parse().unwrap());
        h.insert("mcp-session-id", "s".parse().unwrap());
        let kept = kept_headers(&h, REQUEST_HEADERS);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept["mcp-session-id"], "s");
    }

    #[test]
    fn records_round_trip_as_one_line_each() {
        let record = Record::Event {
            stream: 3,
            t_ms: 12,
            received: TapeEvent::from(&Event::message("a\nb")),
            steps: vec![TapeStep {
                plugin: "p".into(),
                verdict: "modify".into(),
                micros: 2,
                fuel: 100,
            }],
            sent: None,
            unchanged: true,
        };
        let line = serde_json::to_string(&record).unwrap();
        assert!(line.contains(r#""unchanged":true"#), "{line}");
        assert!(!line.contains('\n'));
        assert!(line.starts_with(r#"{"type":"event","stream":3"#), "{line}");
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), record);
    }
}
