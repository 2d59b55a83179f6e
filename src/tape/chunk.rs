//! How records travel from an exchange to the tape writer: a chunk of entries in a
//! private binary layout, turned into JSON lines by the writer thread ([`render`]).
//!
//! An `event` record happens once per proxied event, so the proxy's thread only copies
//! its parts (the event's fields as they are, each step's plugin name, verdict, time
//! and fuel) into the exchange's chunk, with no JSON escaping or number formatting; the
//! writer does that, off the proxy's path. Rare records (request, response, comment,
//! end, header) are serialised where they happen and travel as finished lines.
//!
//! The layout is an implementation detail of one process (native-endian integers, no
//! versioning): it never reaches a file. The tape format is `format::Record`.

use crate::plugin::Step;
use crate::sse::Event;

use super::format::Record;
use super::json;

/// A finished JSON line: `u32` length, the line (its `\n` included).
const LINE: u8 = 0;
/// An `event` record: see [`Chunk::event_start`] and [`Chunk::event_end`].
const EVENT: u8 = 1;

/// `sent` of an event record.
const SENT_NONE: u8 = 0;
const SENT_UNCHANGED: u8 = 1;
const SENT_EVENT: u8 = 2;

/// Which optional fields of an event follow (a bit each).
const HAS_ID: u8 = 1;
const HAS_EVENT: u8 = 2;
const HAS_DATA: u8 = 4;
const HAS_RETRY: u8 = 8;

/// One exchange's records on their way to the writer.
#[derive(Debug, Default)]
pub struct Chunk {
    bytes: Vec<u8>,
    records: u64,
}

impl Chunk {
    /// An empty chunk with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(capacity),
            records: 0,
        }
    }

    /// Bytes buffered (what the chunk costs in memory, not the size on the tape).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// No records.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Complete records in the chunk.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The chunk's bytes, for [`render`].
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Takes the chunk's contents, leaving it empty with room for `capacity` bytes.
    pub fn take(&mut self, capacity: usize) -> Chunk {
        std::mem::replace(self, Chunk::with_capacity(capacity))
    }

    /// A whole record, serialised now.
    pub fn record(&mut self, record: &Record) {
        let mut line = Vec::with_capacity(256);
        serde_json::to_writer(&mut line, record).expect("a record always serialises");
        line.push(b'\n');
        self.bytes.push(LINE);
        self.len_prefixed(&line);
        self.records += 1;
    }

    /// The first half of an `event` record: where, when, and the event as received.
    /// [`Chunk::event_end`] must follow before anything else.
    pub fn event_start(&mut self, stream: u64, t_ms: u64, received: &Event) {
        self.bytes.push(EVENT);
        self.u64(stream);
        self.u64(t_ms);
        self.event(received);
    }

    /// The second half: the steps, and what the client got (`unchanged`: exactly the
    /// event as received).
    pub fn event_end(&mut self, steps: &[Step], sent: Option<&Event>, unchanged: bool) {
        self.u32(u32::try_from(steps.len()).unwrap_or(u32::MAX));
        for step in steps {
            self.len_prefixed(step.plugin.as_bytes());
            let verdict = step.verdict.as_str().as_bytes();
            self.bytes.push(verdict.len() as u8);
            self.bytes.extend_from_slice(verdict);
            self.u64(u64::try_from(step.elapsed.as_micros()).unwrap_or(u64::MAX));
            self.u64(step.fuel);
        }
        match sent {
            _ if unchanged => self.bytes.push(SENT_UNCHANGED),
            None => self.bytes.push(SENT_NONE),
            Some(sent) => {
                self.bytes.push(SENT_EVENT);
                self.event(sent);
            }
        }
        self.records += 1;
    }

    fn event(&mut self, e: &Event) {
        let flags = if e.id.is_some() { HAS_ID } else { 0 }
            | if e.event.is_some() { HAS_EVENT } else { 0 }
            | if e.data.is_some() { HAS_DATA } else { 0 }
            | if e.retry.is_some() { HAS_RETRY } else { 0 };
        self.bytes.push(flags);
        for text in [&e.id, &e.event, &e.data].into_iter().flatten() {
            self.len_prefixed(text.as_bytes());
        }
        if let Some(retry) = e.retry {
            self.u64(retry);
        }
    }

    fn len_prefixed(&mut self, bytes: &[u8]) {
        self.u32(u32::try_from(bytes.len()).expect("an event field under 4 GiB"));
        self.bytes.extend_from_slice(bytes);
    }

    fn u32(&mut self, n: u32) {
        self.bytes.extend_from_slice(&n.to_ne_bytes());
    }

    fn u64(&mut self, n: u64) {
        self.bytes.extend_from_slice(&n.to_ne_bytes());
    }
}

/// Reads a chunk back; every read checks its bounds (a malformed chunk is a bug, and
/// rendering it stops rather than panicking the writer).
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.bytes.split_at_checked(n)?;
        self.bytes = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_ne_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_ne_bytes(self.take(8)?.try_into().ok()?))
    }

    fn prefixed(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// A field copied from a `&str`: UTF-8, not checked again (see `json::string`).
    fn text(&mut self) -> Option<&'a [u8]> {
        self.prefixed()
    }
}

/// Appends the JSON lines of `chunk` to `out`; `false` if the chunk was malformed
/// (what came before the fault is kept).
pub fn render(chunk: &[u8], out: &mut Vec<u8>) -> bool {
    let mut reader = Reader { bytes: chunk };
    while !reader.bytes.is_empty() {
        let mark = out.len();
        let done = match reader.u8() {
            Some(LINE) => reader.prefixed().map(|line| out.extend_from_slice(line)),
            Some(EVENT) => render_event(&mut reader, out),
            _ => None,
        };
        if done.is_none() {
            out.truncate(mark);
            return false;
        }
    }
    true
}

/// An `event` record, byte for byte what `serde_json` writes for `Record::Event`, except
/// that `sent` is left out when `unchanged` (the reader takes a missing `sent` as
/// `null`; docs/tapes.md).
fn render_event(r: &mut Reader<'_>, out: &mut Vec<u8>) -> Option<()> {
    out.extend_from_slice(br#"{"type":"event","stream":"#);
    json::uint(out, r.u64()?);
    out.extend_from_slice(br#","t_ms":"#);
    json::uint(out, r.u64()?);
    out.extend_from_slice(br#","received":"#);
    render_tape_event(r, out)?;
    out.extend_from_slice(br#","steps":["#);
    for i in 0..r.u32()? {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"plugin":"#);
        json::string(out, r.text()?);
        out.extend_from_slice(br#","verdict":"#);
        let n = r.u8()?;
        json::string(out, r.take(n.into())?);
        out.extend_from_slice(br#","micros":"#);
        json::uint(out, r.u64()?);
        out.extend_from_slice(br#","fuel":"#);
        json::uint(out, r.u64()?);
        out.push(b'}');
    }
    out.push(b']');
    match r.u8()? {
        SENT_UNCHANGED => out.extend_from_slice(br#","unchanged":true}"#),
        SENT_NONE => out.extend_from_slice(br#","sent":null}"#),
        SENT_EVENT => {
            out.extend_from_slice(br#","sent":"#);
            render_tape_event(r, out)?;
            out.push(b'}');
        }
        _ => return None,
    }
    out.push(b'\n');
    Some(())
}

/// An SSE event as `format::TapeEvent` serialises.
fn render_tape_event(r: &mut Reader<'_>, out: &mut Vec<u8>) -> Option<()> {
    let flags = r.u8()?;
    out.push(b'{');
    let mut first = true;
    for (flag, name) in [
        (HAS_ID, &br#""id":"#[..]),
        (HAS_EVENT, br#""event":"#),
        (HAS_DATA, br#""data":"#),
    ] {
        if flags & flag != 0 {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(name);
            json::string(out, r.text()?);
        }
    }
    if flags & HAS_RETRY != 0 {
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(br#""retry":"#);
        json::uint(out, r.u64()?);
    }
    out.push(b'}');
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::StepVerdict;
    use crate::tape::{TapeEvent, TapeStep};
    use std::time::Duration;

    fn step(verdict: StepVerdict) -> Step {
        Step {
            plugin: "re\"dact".into(),
            verdict,
            elapsed: Duration::from_micros(12),
            fuel: 3456,
        }
    }

    fn rendered(chunk: &Chunk) -> String {
        let mut out = Vec::new();
        assert!(render(chunk.bytes(), &mut out));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn events_render_as_serde_writes_the_record() {
        let received = Event {
            id: Some("7".into()),
            event: Some("message".into()),
            data: Some("{\"a\":\"line\nbreak\\\u{1}\"}".into()),
            retry: Some(1500),
        };
        let sent = Event {
            retry: None,
            ..Event::message("changed é")
        };
        let cases: [(Vec<Step>, Option<&Event>, bool); 4] = [
            (vec![step(StepVerdict::Pass)], Some(&received), true),
            (
                vec![step(StepVerdict::Modify), step(StepVerdict::Pass)],
                Some(&sent),
                false,
            ),
            (vec![step(StepVerdict::Drop)], None, false),
            (
                vec![],
                Some(&Event {
                    id: Some("7".into()),
                    ..Event::default()
                }),
                false,
            ),
        ];
        for (steps, out, unchanged) in cases {
            let mut chunk = Chunk::default();
            chunk.event_start(3, 1234, &received);
            chunk.event_end(&steps, out, unchanged);
            assert_eq!(chunk.records(), 1);
            let record = Record::Event {
                stream: 3,
                t_ms: 1234,
                received: TapeEvent::from(&received),
                steps: steps.iter().map(TapeStep::from).collect(),
                sent: if unchanged {
                    None
                } else {
                    out.map(TapeEvent::from)
                },
                unchanged,
            };
            let line = rendered(&chunk);
            let serde = serde_json::to_string(&record).unwrap();
            let serde = serde.replace(r#""sent":null,"unchanged""#, r#""unchanged""#);
            assert_eq!(line, format!("{serde}\n"));
            assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), record);
        }
    }

    #[test]
    fn lines_and_events_keep_their_order() {
        let mut chunk = Chunk::default();
        let end = |stream| Record::End {
            stream,
            t_ms: 5,
            outcome: "complete".into(),
            error: None,
        };
        chunk.record(&end(1));
        chunk.event_start(2, 0, &Event::message("x"));
        chunk.event_end(&[], None, false);
        chunk.record(&end(3));
        assert_eq!(chunk.records(), 3);
        let text = rendered(&chunk);
        let streams: Vec<u64> = text
            .lines()
            .map(|l| serde_json::from_str::<Record>(l).unwrap().stream().unwrap())
            .collect();
        assert_eq!(streams, vec![1, 2, 3]);
    }

    #[test]
    fn a_malformed_chunk_stops_rendering_without_a_partial_line() {
        let mut chunk = Chunk::default();
        chunk.record(&Record::Comment {
            stream: 1,
            t_ms: 0,
            text: "k".into(),
        });
        chunk.event_start(1, 0, &Event::message("cut short"));
        let mut out = Vec::new();
        assert!(!render(chunk.bytes(), &mut out));
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 1);
    }
}
