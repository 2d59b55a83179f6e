//! The tape format, version 3: JSON Lines, one [`Record`] per line, and a data file
//! beside it with each stream's upstream body as it was received (`raw` records refer
//! to it by offset and length), written by `--record DIR` and read by `sluice tape
//! serve` and `sluice plugin test`. Events are not written one by one: [`read`] decodes
//! them again from the raw bytes, and a `passed` record gives the verdicts of a run of
//! events that every plugin passed; only the other events get an `event` record of
//! their own. A line per event cost more than proxying the event (issue 7's budget is
//! a tenth). Versions 1 (data inline) and 2 (each event's data in the data file) still
//! read. `docs/tapes.md` documents it for people and other tools.
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
/// The version this build writes.
pub const VERSION: u32 = 3;
/// The versions this build reads: 1 had every event's data inline, 2 every event's data
/// in the data file and an `event` record for every event.
pub const READS: [u32; 3] = [1, 2, 3];

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
        /// The data file that `data_at` refers to, beside the tape (version 2).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_file: Option<String>,
    },
    /// A client request and what the chain did with its body.
    Request {
        /// The exchange (the stream id plugins saw).
        stream: u64,
        /// Milliseconds since recording started.
        t_ms: u64,
        /// The HTTP method.
        method: String,
        /// The request path.
        path: String,
        /// The query string (secret parameters redacted).
        query: Option<String>,
        /// The JSON-RPC method, for a single message.
        rpc_method: Option<String>,
        /// The MCP protocol revision (header, or what `initialize` offered).
        protocol_version: Option<String>,
        /// Kept headers only ([`REQUEST_HEADERS`]).
        headers: BTreeMap<String, String>,
        /// The body as the client sent it (lossy UTF-8).
        body: String,
        /// Each plugin's verdict on the body (every message of a batch in turn).
        steps: Vec<TapeStep>,
        /// The body sent upstream, `None` when the proxy answered itself.
        sent: Option<String>,
        /// Who called: the validated token's subject, client, scopes and chosen claims,
        /// and the client's address (never the token). Absent in older tapes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity: Option<crate::identity::Identity>,
        /// The reload generation of the chain that judged the exchange (0: the chain
        /// loaded at start). Absent in older tapes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<u64>,
        /// That chain's plugins, in order, each with the SHA-256 of its component:
        /// which build judged the exchange, so that a replay with another build (a
        /// tape recorded across a hot swap) is not taken for a reproduction. Absent in
        /// older tapes.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        chain: Vec<ChainPlugin>,
    },
    /// The upstream's response head.
    Response {
        /// The exchange (the stream id plugins saw).
        stream: u64,
        /// Milliseconds since recording started.
        t_ms: u64,
        /// The HTTP status.
        status: u16,
        /// Kept headers only ([`RESPONSE_HEADERS`]).
        headers: BTreeMap<String, String>,
    },
    /// An upstream event (SSE) or body (JSON response), and what the chain did.
    Event {
        /// The exchange (the stream id plugins saw).
        stream: u64,
        /// Milliseconds since recording started.
        t_ms: u64,
        /// The event's number in its stream's `raw` bytes (version 3; counted from 0 in
        /// the order they decode). [`read`] fills `received` from them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// As received from the upstream (left out when `seq` gives it).
        #[serde(default, skip_serializing_if = "TapeEvent::is_empty")]
        received: TapeEvent,
        /// Each plugin's verdict, time and fuel.
        steps: Vec<TapeStep>,
        /// As sent to the client; `None` when nothing was sent, or when `unchanged`.
        sent: Option<TapeEvent>,
        /// The client got exactly `received` (`sent` is then left out, halving the
        /// size of a tape of mostly passed events). See [`Record::sent_event`].
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unchanged: bool,
    },
    /// Bytes of a stream's upstream body as received, in order (version 3): the
    /// stream's `raw` records together are its body as far as the proxy read it.
    /// [`read`] decodes them and leaves no `raw` record in what it returns.
    Raw {
        /// The exchange (the stream id plugins saw).
        stream: u64,
        /// Milliseconds since recording started.
        t_ms: u64,
        /// `[offset, length]` in the data file.
        data_at: (u64, u64),
    },
    /// Events `first .. first + count` of a stream (numbered as for `seq`), each passed
    /// by every plugin and sent unchanged (version 3). `steps`: the plugins, each with
    /// its time and fuel summed over the events. [`read`] turns it into one `event`
    /// record per event, each step with an equal share.
    Passed {
        /// The exchange (the stream id plugins saw).
        stream: u64,
        /// Milliseconds since recording started.
        t_ms: u64,
        /// The first event's number.
        first: u64,
        /// How many events.
        count: u64,
        /// Each plugin's verdict, time and fuel.
        steps: Vec<TapeStep>,
    },
    /// An SSE comment (keep-alive), passed as it was.
    Comment {
        /// The exchange (the stream id plugins saw).
        stream: u64,
        /// Milliseconds since recording started.
        t_ms: u64,
        /// The comment's text.
        text: String,
    },
    /// The end of a stream.
    End {
        /// The exchange (the stream id plugins saw).
        stream: u64,
        /// Milliseconds since recording started.
        t_ms: u64,
        /// `complete`, `upstream-error` or `client-gone`.
        outcome: String,
        /// What went wrong, for `upstream-error`.
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
            | Record::Raw { stream, .. }
            | Record::Passed { stream, .. }
            | Record::End { stream, .. } => Some(*stream),
        }
    }
}

/// An SSE event (or a JSON body, as `data`) on a tape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapeEvent {
    /// The SSE `id` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The SSE `event` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The SSE `data` (lines joined with `\n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Where the data is in the tape's data file: `[offset, length]` in bytes.
    /// [`read`] replaces it with `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_at: Option<(u64, u64)>,
    /// The SSE `retry` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u64>,
}

impl TapeEvent {
    /// No field at all: an `event` record of version 3 leaves `received` out.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl From<&Event> for TapeEvent {
    fn from(e: &Event) -> Self {
        Self {
            id: e.id.clone(),
            event: e.event.clone(),
            data: e.data.clone(),
            data_at: None,
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
            data_at: None,
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

/// One plugin of the chain that judged an exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainPlugin {
    /// Its name, as steps give it.
    pub plugin: String,
    /// The hex SHA-256 of its component's bytes (absent for a plugin not loaded from
    /// bytes sluice read, which no file can match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// One plugin's verdict on a tape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapeStep {
    /// The plugin's name.
    pub plugin: String,
    /// `pass`, `drop`, `modify`, or a failure kind (`trap`, `deadline`, `fuel`, ...).
    pub verdict: String,
    /// Wall time of the call, in microseconds.
    pub micros: u64,
    /// Fuel the call consumed.
    pub fuel: u64,
    /// For `modify` and `respond`: the hex SHA-256 of what the plugin returned (the
    /// message; for `respond`, the response its answer makes with id `null`), not the
    /// text itself. Absent for other verdicts and in older tapes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

impl TapeStep {
    /// `step` of the plugin named `plugin`.
    pub fn new(s: &Step, plugin: &str) -> Self {
        Self {
            plugin: plugin.to_string(),
            verdict: s.verdict.as_str().to_string(),
            micros: u64::try_from(s.elapsed.as_micros()).unwrap_or(u64::MAX),
            fuel: s.fuel,
            output: s.output.map(|d| crate::plugin::hex(&d)),
        }
    }
}

/// Why a tape cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TapeError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not a record.
    #[error("{path}:{line}: not a tape record: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// The line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The header is missing or from another version.
    #[error("{path}: {reason}")]
    Header {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Reads a whole tape. The header must come first and carry this version.
///
/// A tape may come from elsewhere (a bug report, a colleague), so nothing in it is
/// trusted: every `data_at` must lie inside the data file, all of them together may
/// not refer to more bytes than it holds (sluice never refers to a byte twice, so a
/// tape that does would make the reader allocate many times its size), and any
/// malformed input is an error, never a panic. `fuzz/fuzz_targets/tape_reader.rs`
/// holds [`read_bytes`] to that.
pub fn read(path: &Path) -> Result<Vec<Record>, TapeError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| TapeError::Io {
        path: name.clone(),
        source,
    })?;
    let tape_len = file.metadata().map_or(0, |m| m.len());
    let records = parse(std::io::BufReader::new(file), &name)?;
    let data = match data_file(&records, &name)? {
        Some(file) => {
            let data_path = path.with_file_name(file);
            let data_name = data_path.display().to_string();
            let io = |source| TapeError::Io {
                path: data_name.clone(),
                source,
            };
            let opened = std::fs::File::open(&data_path).map_err(io)?;
            let len = opened.metadata().map_err(io)?.len();
            Some(DataFile {
                source: DataSource::File(opened),
                name: data_name,
                len,
                budget: std::cell::Cell::new(len),
            })
        }
        None => None,
    };
    let input = tape_len.saturating_add(data.as_ref().map_or(0, |d| d.len));
    finish(records, data.as_ref(), &name, input)
}

/// [`read`] over a tape and its data file in memory (`data`: the data file's bytes,
/// `None` as if it were missing), for tools and the fuzz target.
pub fn read_bytes(tape: &[u8], data: Option<&[u8]>) -> Result<Vec<Record>, TapeError> {
    let name = "(tape)";
    let records = parse(tape, name)?;
    let data = match (data_file(&records, name)?, data) {
        (Some(file), Some(bytes)) => Some(DataFile {
            source: DataSource::Bytes(bytes),
            name: file,
            len: bytes.len() as u64,
            budget: std::cell::Cell::new(bytes.len() as u64),
        }),
        (Some(file), None) => {
            return Err(TapeError::Io {
                path: file,
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        (None, _) => None,
    };
    let input = (tape.len() as u64).saturating_add(data.as_ref().map_or(0, |d| d.len));
    finish(records, data.as_ref(), name, input)
}

/// The records of a tape's lines, blank lines skipped.
fn parse(reader: impl BufRead, name: &str) -> Result<Vec<Record>, TapeError> {
    let mut records = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| TapeError::Io {
            path: name.to_string(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(&line).map_err(|e| TapeError::Parse {
            path: name.to_string(),
            line: index + 1,
            reason: e.to_string(),
        })?;
        records.push(record);
    }
    Ok(records)
}

/// The data file the header names, after checking the header.
fn data_file(records: &[Record], name: &str) -> Result<Option<String>, TapeError> {
    let data_file = match records.first() {
        Some(Record::Header {
            format,
            version,
            data_file,
            ..
        }) if format == FORMAT && READS.contains(version) => data_file.clone(),
        Some(Record::Header { version, .. }) => {
            return Err(TapeError::Header {
                path: name.to_string(),
                reason: format!(
                    "tape version {version}; this sluice reads versions {}",
                    READS.map(|v| v.to_string()).join(" and ")
                ),
            });
        }
        _ => {
            return Err(TapeError::Header {
                path: name.to_string(),
                reason: "no tape header on the first line (is this a sluice tape?)".into(),
            });
        }
    };
    match data_file {
        // A file beside the tape, nothing else: a tape from elsewhere must not make
        // `tape serve` read (and serve) any file it names.
        Some(file)
            if file.is_empty()
                || file.contains(['/', '\\', '\0'])
                || file == ".."
                || file == "." =>
        {
            Err(TapeError::Header {
                path: name.to_string(),
                reason: format!("data_file {file:?} is not a file name beside the tape"),
            })
        }
        other => Ok(other),
    }
}

/// Resolves `data_at` references and expands version 3's `raw` and `passed` records.
/// `input`: the bytes of the tape and its data file, which bound what the expansion
/// of `passed` runs may make ([`STEPS_PER_INPUT_BYTE`]).
fn finish(
    mut records: Vec<Record>,
    data: Option<&DataFile<'_>>,
    name: &str,
    input: u64,
) -> Result<Vec<Record>, TapeError> {
    for record in &mut records {
        if let Record::Event { received, sent, .. } = record {
            for event in std::iter::once(received).chain(sent.as_mut()) {
                resolve(event, data, name)?;
            }
        }
    }
    let raw = records
        .iter()
        .any(|r| matches!(r, Record::Raw { .. } | Record::Passed { .. }));
    if raw {
        records = expand_raw(records, data, name, input)?;
    }
    Ok(records)
}

/// Where a tape's data is read from.
enum DataSource<'a> {
    File(std::fs::File),
    Bytes(&'a [u8]),
}

/// A tape's data file, its length taken once, and how many of its bytes references
/// may still take ([`read`]).
struct DataFile<'a> {
    source: DataSource<'a>,
    name: String,
    len: u64,
    budget: std::cell::Cell<u64>,
}

/// How many bytes of steps the expansion of `passed` runs may make per byte of tape
/// and data file, and in any case ([`read`]): a run's steps are copied to each of its
/// events, so a tape of a long run and a long step list would otherwise make the
/// reader allocate their product. Real tapes stay far below: a few plugins' steps
/// (tens of bytes each) per event of tens of bytes or more.
const STEPS_PER_INPUT_BYTE: u64 = 64;
const STEPS_ALWAYS: u64 = 64 << 20;

/// One stream's events decoded from its `raw` records and not yet claimed by a
/// `passed` or `event` record: `(seq, t_ms, event)`.
#[derive(Default)]
struct Decoded {
    decoder: Option<crate::sse::Decoder>,
    next_seq: u64,
    events: std::collections::VecDeque<(u64, u64, Event)>,
}

impl Decoded {
    fn feed(&mut self, bytes: &[u8], t_ms: u64) {
        let decoder = self
            .decoder
            .get_or_insert_with(|| crate::sse::Decoder::new(usize::MAX));
        let mut frames = std::collections::VecDeque::new();
        // No size limit here, so no error: the proxy's own decoder refused what it
        // refused (an event over its limit) and ended the stream there, and what decodes
        // past that point has no verdict to pair with.
        let _ = decoder.decode(bytes, &mut frames);
        for frame in frames {
            // Comments have records of their own.
            if let crate::sse::Frame::Event(event) = frame {
                self.events.push_back((self.next_seq, t_ms, event));
                self.next_seq += 1;
            }
        }
    }

    /// The next event numbered `from .. end`: `(seq, t_ms, event)`; events before
    /// `from` that nothing claimed are skipped (as for [`Decoded::take`]).
    fn take_range(&mut self, from: u64, end: u64) -> Option<(u64, u64, Event)> {
        while let Some((front, ..)) = self.events.front() {
            if *front >= end {
                return None;
            }
            let taken = self.events.pop_front()?;
            if taken.0 >= from {
                return Some(taken);
            }
        }
        None
    }

    /// Event `seq` and when it arrived; events before it that nothing claimed are
    /// skipped (a stream the recorder dropped records of).
    fn take(&mut self, seq: u64) -> Option<(u64, Event)> {
        while let Some((front, ..)) = self.events.front() {
            if *front > seq {
                return None;
            }
            let (front, t_ms, event) = self.events.pop_front()?;
            if front == seq {
                return Some((t_ms, event));
            }
        }
        None
    }
}

/// Version 3: decodes each stream's `raw` bytes into events and gives every event its
/// own `event` record (one per event of a `passed` run, `received` filled in for the
/// others), so that readers see the same records as from a version 2 tape.
fn expand_raw(
    records: Vec<Record>,
    data: Option<&DataFile<'_>>,
    tape: &str,
    input: u64,
) -> Result<Vec<Record>, TapeError> {
    // A `passed` run is run-length encoded: its steps are copied to each of its events.
    // Bytes of steps copied so far, and how many a tape of `input` bytes may make.
    let mut copied = 0u64;
    let may_copy = input
        .saturating_mul(STEPS_PER_INPUT_BYTE)
        .saturating_add(STEPS_ALWAYS);
    let mut streams: std::collections::HashMap<u64, Decoded> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(records.len());
    let mut missing = 0u64;
    for record in records {
        match record {
            Record::Raw {
                stream,
                t_ms,
                data_at,
            } => {
                let bytes = read_data(data_at, data, tape)?;
                streams.entry(stream).or_default().feed(&bytes, t_ms);
            }
            Record::Passed {
                stream,
                first,
                count,
                steps,
                ..
            } => {
                let decoded = streams.entry(stream).or_default();
                let share = |total: u64| total / count.max(1);
                let steps: Vec<TapeStep> = steps
                    .into_iter()
                    .map(|s| TapeStep {
                        micros: share(s.micros),
                        fuel: share(s.fuel),
                        ..s
                    })
                    .collect();
                let size: u64 = steps
                    .iter()
                    .map(|s| (s.plugin.len() + s.verdict.len()) as u64 + 32)
                    .sum();
                // Over the events there are, not over `count`: a tape's `count` is
                // not trusted (`u64::MAX` would loop for ever).
                let mut found = 0u64;
                while let Some((seq, t_ms, received)) =
                    decoded.take_range(first, first.saturating_add(count))
                {
                    found += 1;
                    copied = copied.saturating_add(size);
                    if copied > may_copy {
                        return Err(TapeError::Header {
                            path: tape.to_string(),
                            reason: format!(
                                "passed runs expand to more than {may_copy} bytes of steps \
                                 (the tape and its data are {input} bytes)"
                            ),
                        });
                    }
                    out.push(Record::Event {
                        stream,
                        t_ms,
                        seq: Some(seq),
                        received: received.into(),
                        steps: steps.clone(),
                        sent: None,
                        unchanged: true,
                    });
                }
                missing = missing.saturating_add(count.saturating_sub(found));
            }
            Record::Event {
                stream,
                seq: Some(seq),
                steps,
                sent,
                unchanged,
                ..
            } => match streams.entry(stream).or_default().take(seq) {
                Some((t_ms, received)) => out.push(Record::Event {
                    stream,
                    t_ms,
                    seq: Some(seq),
                    received: received.into(),
                    steps,
                    sent,
                    unchanged,
                }),
                None => missing += 1,
            },
            end @ Record::End { stream, .. } => {
                streams.remove(&stream);
                out.push(end);
            }
            other => out.push(other),
        }
    }
    if missing > 0 {
        tracing::warn!(
            tape,
            missing,
            "events with verdicts but no raw bytes (the recorder dropped records): left out"
        );
    }
    Ok(out)
}

/// The bytes at `[offset, length]` in the tape's data file, checked against its
/// length (and the bytes references took so before) before anything is allocated.
fn read_data(
    (at, len): (u64, u64),
    data: Option<&DataFile<'_>>,
    tape: &str,
) -> Result<Vec<u8>, TapeError> {
    use std::os::unix::fs::FileExt;
    let Some(data) = data else {
        return Err(TapeError::Header {
            path: tape.to_string(),
            reason: "a record refers to a data file (data_at) but the header names none".into(),
        });
    };
    let range = || format!("{} (bytes {at}..{})", data.name, at.saturating_add(len));
    let invalid = |reason: &str| TapeError::Io {
        path: range(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason.to_string()),
    };
    if at.checked_add(len).is_none_or(|end| end > data.len) {
        return Err(invalid(&format!(
            "beyond the end of the data file ({} bytes)",
            data.len
        )));
    }
    let Some(left) = data.budget.get().checked_sub(len) else {
        return Err(invalid(
            "the tape refers to more data than its data file holds (overlapping data_at)",
        ));
    };
    data.budget.set(left);
    let len = usize::try_from(len).map_err(|_| invalid("too large for this machine"))?;
    let mut bytes = Vec::new();
    // A sparse data file can be large without taking space: its length alone is no
    // promise that this much memory is there.
    bytes
        .try_reserve_exact(len)
        .map_err(|_| invalid("cannot allocate that much"))?;
    bytes.resize(len, 0);
    let read = match &data.source {
        DataSource::File(file) => file.read_exact_at(&mut bytes, at),
        DataSource::Bytes(all) => {
            // In range: checked against `data.len` (`all.len()`) above.
            let start = usize::try_from(at).unwrap_or(usize::MAX);
            match all.get(start..start.saturating_add(len)) {
                Some(slice) => {
                    bytes.copy_from_slice(slice);
                    Ok(())
                }
                None => Err(std::io::ErrorKind::UnexpectedEof.into()),
            }
        }
    };
    read.map_err(|source| TapeError::Io {
        path: range(),
        source,
    })?;
    Ok(bytes)
}

/// Replaces `event`'s `data_at` with the data it points at in the tape's data file.
fn resolve(
    event: &mut TapeEvent,
    data: Option<&DataFile<'_>>,
    tape: &str,
) -> Result<(), TapeError> {
    let Some(at) = event.data_at.take() else {
        return Ok(());
    };
    let bytes = read_data(at, data, tape)?;
    event.data = Some(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    });
    Ok(())
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
            seq: None,
            received: TapeEvent::from(&Event::message("a\nb")),
            steps: vec![TapeStep {
                plugin: "p".into(),
                verdict: "modify".into(),
                micros: 2,
                fuel: 100,
                output: None,
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

    #[test]
    fn who_judged_an_exchange_is_optional_both_ways() {
        // A request of an older sluice: no generation, chain or step output.
        let old = r#"{"type":"request","stream":1,"t_ms":0,"method":"POST","path":"/mcp","query":null,"rpc_method":"ping","protocol_version":null,"headers":{},"body":"{}","steps":[{"plugin":"p","verdict":"modify","micros":1,"fuel":2}],"sent":"{}"}"#;
        let Record::Request {
            generation,
            chain,
            steps,
            ..
        } = serde_json::from_str::<Record>(old).unwrap()
        else {
            panic!("not a request");
        };
        assert_eq!(
            (generation, chain.len(), steps[0].output.clone()),
            (None, 0, None)
        );
        // This build's: written, and read back.
        let mut new: Record = serde_json::from_str(old).unwrap();
        if let Record::Request {
            generation,
            chain,
            steps,
            ..
        } = &mut new
        {
            *generation = Some(2);
            chain.push(ChainPlugin {
                plugin: "p".into(),
                sha256: Some("ab".repeat(32)),
            });
            steps[0].output = Some("cd".repeat(32));
        }
        let line = serde_json::to_string(&new).unwrap();
        assert!(
            line.contains(r#""generation":2,"chain":[{"plugin":"p","sha256":"abab"#),
            "{line}"
        );
        assert!(line.contains(r#""output":"cdcd"#), "{line}");
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), new);
        // An old line keeps its exact shape: nothing is added to what had none.
        let plain: Record = serde_json::from_str(old).unwrap();
        let again = serde_json::to_string(&plain).unwrap();
        assert!(
            !again.contains("generation") && !again.contains("output"),
            "{again}"
        );
    }

    fn tape_in(dir: &Path, lines: &[&str], data: Option<&[u8]>) -> std::path::PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("t.jsonl");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        if let Some(data) = data {
            std::fs::write(dir.join("t.data"), data).unwrap();
        }
        path
    }

    fn received_data(records: &[Record]) -> Vec<Option<String>> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Event { received, .. } => Some(received.data.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn both_versions_read_and_data_at_is_resolved() {
        let dir = std::env::temp_dir().join(format!("sluice-format-{}", std::process::id()));
        let v1 = tape_in(
            &dir,
            &[
                r#"{"type":"header","format":"sluice-tape","version":1,"upstream":"u","started_unix":0}"#,
                r#"{"type":"event","stream":1,"t_ms":0,"received":{"data":"inline"},"steps":[],"unchanged":true}"#,
            ],
            None,
        );
        assert_eq!(received_data(&read(&v1).unwrap()), [Some("inline".into())]);
        let v2 = tape_in(
            &dir,
            &[
                r#"{"type":"header","format":"sluice-tape","version":2,"upstream":"u","started_unix":0,"data_file":"t.data"}"#,
                r#"{"type":"event","stream":1,"t_ms":0,"received":{"data_at":[                   6,5]},"steps":[],"sent":{"data_at":[0,5]}}"#,
                r#"{"type":"event","stream":1,"t_ms":0,"received":{"data":""},"steps":[],"unchanged":true}"#,
            ],
            Some(b"hello\0world"),
        );
        let records = read(&v2).unwrap();
        assert_eq!(
            received_data(&records),
            [Some("world".into()), Some(String::new())]
        );
        assert_eq!(
            records[1].sent_event().unwrap().data.as_deref(),
            Some("hello")
        );
        assert!(
            records
                .iter()
                .all(|r| !format!("{r:?}").contains("data_at: Some"))
        );

        // Data beyond the end of the data file: an error naming the file and the bytes.
        let short = tape_in(
            &dir,
            &[
                r#"{"type":"header","format":"sluice-tape","version":2,"upstream":"u","started_unix":0,"data_file":"t.data"}"#,
                r#"{"type":"event","stream":1,"t_ms":0,"received":{"data_at":[8,100]},"steps":[],"unchanged":true}"#,
            ],
            Some(b"0123456789"),
        );
        let error = read(&short).unwrap_err().to_string();
        assert!(error.contains("t.data (bytes 8..108)"), "{error}");
        // A reference but no data file named.
        let unnamed = tape_in(
            &dir,
            &[
                r#"{"type":"header","format":"sluice-tape","version":2,"upstream":"u","started_unix":0}"#,
                r#"{"type":"event","stream":1,"t_ms":0,"received":{"data_at":[0,1]},"steps":[],"unchanged":true}"#,
            ],
            None,
        );
        let error = read(&unnamed).unwrap_err().to_string();
        assert!(error.contains("names none"), "{error}");
        // The data file must be beside the tape.
        let elsewhere = tape_in(
            &dir,
            &[
                r#"{"type":"header","format":"sluice-tape","version":2,"upstream":"u","started_unix":0,"data_file":"../t.data"}"#,
            ],
            None,
        );
        let error = read(&elsewhere).unwrap_err().to_string();
        assert!(error.contains("not a file name beside the tape"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn version_3_decodes_raw_bytes_and_pairs_them_with_verdicts() {
        let dir = std::env::temp_dir().join(format!("sluice-format3-{}", std::process::id()));
        let wire = b"id: 0\ndata: a\n\n: keep\n\nid: 1\ndata: b\n\nid: 2\nda";
        let rest = b"ta: c\n\nid: 3\ndata: d\n\n";
        let mut data = wire.to_vec();
        data.extend_from_slice(rest);
        let (w, r) = (wire.len(), rest.len());
        let header = r#"{"type":"header","format":"sluice-tape","version":3,"upstream":"u","started_unix":0,"data_file":"t.data"}"#;
        let raw1 = format!(r#"{{"type":"raw","stream":1,"t_ms":4,"data_at":[0,{w}]}}"#);
        let raw2 = format!(r#"{{"type":"raw","stream":1,"t_ms":6,"data_at":[{w},{r}]}}"#);
        let passed = r#"{"type":"passed","stream":1,"t_ms":5,"first":0,"count":2,"steps":[{"plugin":"p","verdict":"pass","micros":3,"fuel":2000}]}"#;
        let modified = r#"{"type":"event","stream":1,"t_ms":7,"seq":2,"steps":[{"plugin":"p","verdict":"modify","micros":1,"fuel":2}],"sent":{"data":"C"}}"#;
        let dropped = r#"{"type":"event","stream":1,"t_ms":7,"seq":3,"steps":[{"plugin":"p","verdict":"drop","micros":1,"fuel":2}],"sent":null}"#;
        let end = r#"{"type":"end","stream":1,"t_ms":8,"outcome":"complete","error":null}"#;
        let tape = tape_in(
            &dir,
            &[header, &raw1, passed, &raw2, modified, dropped, end],
            Some(&data),
        );
        let records = read(&tape).unwrap();
        assert!(
            !records
                .iter()
                .any(|r| matches!(r, Record::Raw { .. } | Record::Passed { .. })),
            "{records:?}"
        );
        let received: Vec<Option<String>> = received_data(&records);
        assert_eq!(received, ["a", "b", "c", "d"].map(|d| Some(d.to_string())));
        let ids: Vec<Option<String>> = records
            .iter()
            .filter_map(|r| match r {
                Record::Event { received, .. } => Some(received.id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(ids, ["0", "1", "2", "3"].map(|d| Some(d.to_string())));
        let sent: Vec<Option<String>> = records[1..5]
            .iter()
            .map(|r| r.sent_event().and_then(|e| e.data))
            .collect();
        assert_eq!(
            sent,
            [Some("a".into()), Some("b".into()), Some("C".into()), None]
        );
        // An event's time is when its last byte arrived.
        let times: Vec<u64> = records[1..5]
            .iter()
            .map(|r| match r {
                Record::Event { t_ms, .. } => *t_ms,
                _ => 0,
            })
            .collect();
        assert_eq!(times, [4, 4, 6, 6]);
        assert!(matches!(records.last(), Some(Record::End { .. })));
        // A run's time and fuel are totals: each of its events gets an equal share.
        for record in &records[1..3] {
            let Record::Event { steps, .. } = record else {
                panic!("{record:?}");
            };
            assert_eq!((steps[0].micros, steps[0].fuel), (1, 1000));
        }

        // Verdicts whose raw bytes were lost (the recorder dropped them) are left out:
        // nothing pairs with the wrong event.
        let lost = tape_in(&dir, &[header, passed, &raw2, modified, end], Some(&data));
        let records = read(&lost).unwrap();
        assert_eq!(records.len(), 2, "{records:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    const HEADER_3: &str = r#"{"type":"header","format":"sluice-tape","version":3,"upstream":"u","started_unix":0,"data_file":"t.data"}"#;

    #[test]
    fn lengths_in_an_untrusted_tape_are_checked_before_anything_is_allocated() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = |at: u64, len: u64| {
            format!(r#"{{"type":"raw","stream":1,"t_ms":0,"data_at":[{at},{len}]}}"#)
        };
        let v2_header = r#"{"type":"header","format":"sluice-tape","version":2,"upstream":"u","started_unix":0,"data_file":"t.data"}"#;
        let v2_event = r#"{"type":"event","stream":1,"t_ms":0,"received":{"data_at":[4,1099511627776]},"steps":[],"unchanged":true}"#;
        let cases: Vec<(&str, Vec<String>)> = vec![
            // Before the fix, each of these allocated its length first: 4 EiB aborts
            // the process, a terabyte is taken by an overcommitting kernel.
            ("huge raw", vec![HEADER_3.into(), raw(0, 1 << 62)]),
            ("offset overflows", vec![HEADER_3.into(), raw(u64::MAX, 2)]),
            ("huge event", vec![v2_header.into(), v2_event.into()]),
            // Ten bytes of data referred to a thousand times: ten thousand bytes.
            (
                "overlapping",
                std::iter::once(HEADER_3.to_string())
                    .chain((0..1000).map(|_| raw(0, 10)))
                    .collect(),
            ),
        ];
        for (what, lines) in cases {
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            let tape = tape_in(tmp.path(), &lines, Some(b"data: a\n\n\n"));
            let error = read(&tape).expect_err(what).to_string();
            assert!(error.contains("t.data (bytes "), "{what}: {error}");
        }
    }

    #[test]
    fn a_long_run_with_long_steps_is_refused_before_it_takes_their_product() {
        // 2 000 tiny events and one step with a 100 KB name: 200 MB of steps copied
        // from 114 KB of input (a real tape: tens of bytes of steps per event).
        let events = 2000;
        let data = "data\n\n".repeat(events);
        let raw = format!(
            r#"{{"type":"raw","stream":1,"t_ms":0,"data_at":[0,{}]}}"#,
            data.len()
        );
        let name = "p".repeat(100_000);
        let passed = format!(
            r#"{{"type":"passed","stream":1,"t_ms":0,"first":0,"count":{events},"steps":[{{"plugin":"{name}","verdict":"pass","micros":1,"fuel":1}}]}}"#
        );
        let tape = [HEADER_3, &raw, &passed].join("\n");
        let error = read_bytes(tape.as_bytes(), Some(data.as_bytes()))
            .expect_err("the product was allocated")
            .to_string();
        assert!(error.contains("bytes of steps"), "{error}");
        // The same run with a real step list reads.
        let passed = passed.replace(&name, "redact");
        let tape = [HEADER_3, &raw, &passed].join("\n");
        let records = read_bytes(tape.as_bytes(), Some(data.as_bytes())).unwrap();
        assert_eq!(records.len(), 1 + events);
    }

    #[test]
    fn a_passed_run_claiming_more_events_than_there_are_ends() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = r#"{"type":"raw","stream":1,"t_ms":0,"data_at":[0,18]}"#;
        // Before the fix, the reader counted to u64::MAX looking for the events.
        let passed = r#"{"type":"passed","stream":1,"t_ms":0,"first":1,"count":18446744073709551615,"steps":[]}"#;
        let tape = tape_in(
            tmp.path(),
            &[HEADER_3, raw, passed],
            Some(b"data: a\n\ndata: b\n\n"),
        );
        let records = read(&tape).unwrap();
        assert_eq!(received_data(&records), [Some("b".to_string())]);
    }

    proptest::proptest! {
        /// Any numbers where a tape has numbers (the fuzz target's findings, and their
        /// neighbours): records or an error, never a panic, a hang or an allocation
        /// larger than the data.
        #[test]
        fn any_numbers_in_a_tape_read_as_records_or_an_error(
            at in proptest::prop_oneof![0..64u64, proptest::num::u64::ANY],
            len in proptest::prop_oneof![0..64u64, proptest::num::u64::ANY],
            first in proptest::prop_oneof![0..8u64, proptest::num::u64::ANY],
            count in proptest::prop_oneof![0..8u64, proptest::num::u64::ANY],
            t_ms in proptest::num::u64::ANY,
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let lines = [
                HEADER_3.to_string(),
                format!(r#"{{"type":"raw","stream":1,"t_ms":{t_ms},"data_at":[{at},{len}]}}"#),
                format!(r#"{{"type":"raw","stream":1,"t_ms":0,"data_at":[0,{}]}}"#, data.len()),
                format!(r#"{{"type":"passed","stream":1,"t_ms":0,"first":{first},"count":{count},"steps":[{{"plugin":"p","verdict":"pass","micros":{t_ms},"fuel":{len}}}]}}"#),
                format!(r#"{{"type":"event","stream":1,"t_ms":0,"seq":{count},"steps":[],"sent":{{"data_at":[{at},{len}]}}}}"#),
                format!(r#"{{"type":"event","stream":2,"t_ms":0,"received":{{"data_at":[{first},{count}]}},"steps":[],"unchanged":true}}"#),
            ];
            let tape = lines.join("\n");
            if let Ok(records) = read_bytes(tape.as_bytes(), Some(&data)) {
                let held: usize = records
                    .iter()
                    .filter_map(|r| match r {
                        Record::Event { received, .. } => received.data.as_ref().map(String::len),
                        _ => None,
                    })
                    .sum();
                proptest::prop_assert!(held <= 3 * data.len(), "{} from {}", held, data.len());
            }
        }
    }
}
