//! How records travel from an exchange to the tape writer: a chunk of finished JSON
//! lines, serialised on the proxy's thread where they happen.
//!
//! An `event` record happens once per proxied event, so it is written by hand (no
//! `serde`, no allocation): [`Chunk::event_start`] before the chain runs (the event is
//! never cloned for the tape), [`Chunk::event_end`] after. Its event data is escaped
//! there, while it is still in the proxy's cache: measured, escaping on the writer's
//! thread instead (a binary chunk it turned into JSON) cost that thread two to three
//! times as much, reading data another core had written, and on two cores that time
//! is the proxy's as well. Rare records (request, response, comment, end, header) go
//! through `serde`.

use crate::plugin::Step;
use crate::sse::Event;

use super::file::BLOCK;
use super::format::Record;
use super::json;

/// One exchange's records on their way to the writer: whole JSON lines, in
/// `bytes[start..]`.
#[derive(Debug, Default)]
pub struct Chunk {
    bytes: Vec<u8>,
    start: usize,
    records: u64,
}

impl Chunk {
    /// An empty chunk with room for `capacity` bytes, its lines starting on a block
    /// boundary in memory, so that the writer can hand a full chunk to the disk as it
    /// is (`TapeFile::append_chunk`).
    pub fn aligned(capacity: usize) -> Self {
        Self::reusing(Vec::with_capacity(capacity + BLOCK))
    }

    /// An empty chunk in `bytes`' allocation, aligned as [`Chunk::aligned`].
    fn reusing(mut bytes: Vec<u8>) -> Self {
        bytes.clear();
        let start = bytes.as_ptr().align_offset(BLOCK);
        bytes.resize(start, 0);
        Self {
            bytes,
            start,
            records: 0,
        }
    }

    /// Bytes buffered.
    pub fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    /// No records.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Complete records in the chunk.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The chunk's lines.
    #[cfg(test)]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// The buffer, and where the lines start in it.
    pub fn into_parts(self) -> (Vec<u8>, usize) {
        (self.bytes, self.start)
    }

    /// Takes the chunk's contents, leaving it empty in a buffer from `pool`.
    pub fn take_from(&mut self, pool: &Pool, capacity: usize) -> Chunk {
        std::mem::replace(self, pool.chunk(capacity))
    }

    /// A whole record, serialised now.
    pub fn record(&mut self, record: &Record) {
        serde_json::to_writer(&mut self.bytes, record).expect("a record always serialises");
        self.bytes.push(b'\n');
        self.records += 1;
    }

    /// The first half of an `event` record: where, when, and the event as received.
    /// [`Chunk::event_end`] must follow before anything else.
    pub fn event_start(&mut self, stream: u64, t_ms: u64, received: &Event) {
        write_event_start(&mut self.bytes, stream, t_ms, received);
    }

    /// A first half written earlier with [`write_event_start`] (the events of a batch
    /// are written down before the chain runs, their ends after); then as
    /// [`Chunk::event_start`].
    pub fn event_start_from(&mut self, first_half: &[u8]) {
        self.bytes.extend_from_slice(first_half);
    }

    /// The second half: the steps, and what the client got (`unchanged`: exactly the
    /// event as received; `sent` is then left out, which readers take as `null`).
    /// Byte for byte what `serde_json` writes for `Record::Event`, but for that.
    pub fn event_end(&mut self, steps: &[Step], sent: Option<&Event>, unchanged: bool) {
        let out = &mut self.bytes;
        out.extend_from_slice(br#","steps":["#);
        for (i, step) in steps.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"plugin":"#);
            json::string(out, step.plugin.as_bytes());
            out.extend_from_slice(br#","verdict":""#);
            // `pass`, `drop`, `modify`, a failure kind: nothing to escape.
            out.extend_from_slice(step.verdict.as_str().as_bytes());
            out.extend_from_slice(br#"","micros":"#);
            json::uint(
                out,
                u64::try_from(step.elapsed.as_micros()).unwrap_or(u64::MAX),
            );
            out.extend_from_slice(br#","fuel":"#);
            json::uint(out, step.fuel);
            out.push(b'}');
        }
        out.push(b']');
        match sent {
            _ if unchanged => out.extend_from_slice(br#","unchanged":true}"#),
            None => out.extend_from_slice(br#","sent":null}"#),
            Some(sent) => {
                out.extend_from_slice(br#","sent":"#);
                event(out, sent);
                out.push(b'}');
            }
        }
        out.push(b'\n');
        self.records += 1;
    }
}

/// Buffers the writer is done with, for the next chunks: reused memory is already
/// mapped (a new allocation of this size faults its pages in again) and no allocator
/// work crosses threads.
#[derive(Debug, Default)]
pub struct Pool {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
}

/// The most buffers a [`Pool`] keeps.
const POOL: usize = 64;

impl Pool {
    /// An empty chunk with room for `capacity` bytes, in a kept buffer if there is one.
    pub fn chunk(&self, capacity: usize) -> Chunk {
        let kept = self.free.lock().ok().and_then(|mut free| free.pop());
        match kept {
            Some(bytes) if bytes.capacity() >= capacity + BLOCK => Chunk::reusing(bytes),
            _ => Chunk::aligned(capacity),
        }
    }

    /// Keeps `bytes` for a later chunk (up to [`POOL`] buffers).
    pub fn put(&self, bytes: Vec<u8>) {
        if let Ok(mut free) = self.free.lock()
            && free.len() < POOL
        {
            free.push(bytes);
        }
    }
}

/// The first half of an `event` record (see [`Chunk::event_start`]), into `out`.
pub fn write_event_start(out: &mut Vec<u8>, stream: u64, t_ms: u64, received: &Event) {
    out.extend_from_slice(br#"{"type":"event","stream":"#);
    json::uint(out, stream);
    out.extend_from_slice(br#","t_ms":"#);
    json::uint(out, t_ms);
    out.extend_from_slice(br#","received":"#);
    event(out, received);
}

/// An SSE event as `format::TapeEvent` serialises.
fn event(out: &mut Vec<u8>, e: &Event) {
    out.push(b'{');
    let mut first = true;
    for (name, text) in [
        (&br#""id":"#[..], &e.id),
        (br#""event":"#, &e.event),
        (br#""data":"#, &e.data),
    ] {
        if let Some(text) = text {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(name);
            json::string(out, text.as_bytes());
        }
    }
    if let Some(retry) = e.retry {
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(br#""retry":"#);
        json::uint(out, retry);
    }
    out.push(b'}');
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
        String::from_utf8(chunk.bytes().to_vec()).unwrap()
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
}
