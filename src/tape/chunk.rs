//! How records travel from an exchange to the tape writer: a chunk of finished JSON
//! lines, serialised on the proxy's thread where they happen, and the raw event data
//! those lines refer to.
//!
//! An `event` record happens once per proxied event, so it is written by hand (no
//! `serde`, no allocation): [`Chunk::event_start`] before the chain runs (the event is
//! never cloned for the tape), [`Chunk::event_end`] after. Event data is not escaped
//! into the line: it is copied as it is into the chunk's data buffer, and the line
//! says where it will be in the tape's data file (`"data_at":[offset,length]`, see
//! `docs/tapes.md`). Escaping MCP's JSON (a `"` every dozen bytes) cost more than the
//! rest of a record together, and four times a copy. The data's place in the file is
//! only known when the chunk is handed over, so each reference leaves room for its
//! offset and [`Chunk::seal`] writes it in. Rare records (request, response, comment,
//! end, header) go through `serde`, their text inline.

use crate::plugin::Step;
use crate::sse::Event;

use super::file::BLOCK;
use super::format::Record;
use super::json;

/// Room left in a line for a data offset, written in by [`Chunk::seal`]: any `u64`,
/// right-aligned after spaces (valid JSON).
const OFFSET_WIDTH: usize = 20;

/// Where a data reference's offset goes: `at` in the lines, for the data at `offset`
/// in the chunk's data buffer.
#[derive(Debug, Clone, Copy)]
pub struct Patch {
    at: usize,
    offset: usize,
}

/// One exchange's records on their way to the writer: whole JSON lines, in
/// `bytes[start..]`, and the event data they refer to, in `data[data_start..]`.
#[derive(Debug, Default)]
pub struct Chunk {
    bytes: Vec<u8>,
    start: usize,
    records: u64,
    data: Vec<u8>,
    data_start: usize,
    patches: Vec<Patch>,
    /// Set by [`Chunk::seal`]: the data file offset of `data[data_start..]`, and whether
    /// the data was padded to whole blocks for a direct write.
    data_at: u64,
    data_direct: bool,
}

/// What the writer gets of a chunk.
pub struct Parts {
    /// The lines: `lines.0[lines.1..]`.
    pub lines: (Vec<u8>, usize),
    /// The data, if any: `buffer[start..]` goes at `at` in the data file; `direct`: it
    /// is whole blocks, block-aligned in memory and in the file.
    pub data: Option<DataParts>,
}

/// A chunk's event data on its way to the data file.
pub struct DataParts {
    /// The buffer, back to the data pool once written.
    pub buffer: Vec<u8>,
    /// Where the data starts in `buffer` (block-aligned in memory).
    pub start: usize,
    /// Where it goes in the data file (reserved by the exchange).
    pub at: u64,
    /// Padded to whole blocks and block-aligned: may go around the page cache.
    pub direct: bool,
}

/// A buffer of `capacity` bytes from `start` on, `start` on a block boundary in
/// memory (direct writes need it), reusing `bytes`' allocation.
fn aligned(mut bytes: Vec<u8>, capacity: usize) -> (Vec<u8>, usize) {
    bytes.clear();
    bytes.reserve(capacity + BLOCK);
    let start = bytes.as_ptr().align_offset(BLOCK);
    bytes.resize(start, 0);
    (bytes, start)
}

impl Chunk {
    /// An empty chunk with room for `capacity` bytes of lines, starting on a block
    /// boundary in memory, so that the writer can hand a full chunk to the disk as it
    /// is (`TapeFile::append_chunk`); the proxy's come from a [`Pool`].
    #[cfg(test)]
    pub fn aligned(capacity: usize) -> Self {
        let (bytes, start) = aligned(Vec::new(), capacity);
        Self {
            bytes,
            start,
            ..Self::default()
        }
    }

    /// Whether the chunk has its buffers (a fresh one gets them from the pools when its
    /// first record comes, so an idle exchange holds none).
    pub fn has_buffers(&self) -> bool {
        self.bytes.capacity() != 0
    }

    /// Gives an empty chunk its buffers from the pools, and `patches` (empty, kept
    /// from the exchange's last chunk: [`Chunk::take_patches`]) for its references.
    pub fn fill_from(
        &mut self,
        lines: &Pool,
        lines_capacity: usize,
        data: &Pool,
        data_capacity: usize,
        patches: Vec<Patch>,
    ) {
        (self.bytes, self.start) = lines.take(lines_capacity);
        (self.data, self.data_start) = data.take(data_capacity);
        self.patches = patches;
    }

    /// The (sealed, so empty) list of references, to be reused by the next chunk: it
    /// grows to a chunk's events once, not once per chunk.
    pub fn take_patches(&mut self) -> Vec<Patch> {
        debug_assert!(self.patches.is_empty(), "taken before `seal`");
        std::mem::take(&mut self.patches)
    }

    /// Bytes of lines buffered.
    pub fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    /// Bytes of event data buffered.
    pub fn data_len(&self) -> usize {
        self.data.len().saturating_sub(self.data_start)
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

    /// The chunk's event data.
    #[cfg(test)]
    pub fn data(&self) -> &[u8] {
        &self.data[self.data_start..]
    }

    /// Whether the data can go to the disk as it is, padded to whole blocks: it
    /// starts on a block boundary in memory (a buffer that grew, for a large event, was
    /// moved) and the padding fits without moving it again.
    pub fn data_aligned(&self) -> bool {
        let padded = self.data_start + self.data_len().next_multiple_of(BLOCK);
        (self.data.as_ptr() as usize + self.data_start).is_multiple_of(BLOCK)
            && self.data.capacity() >= padded
    }

    /// Writes the data file offset of every data reference: the chunk's data goes at
    /// `at`. `direct`: pads the data to whole blocks (with zeros, which nothing refers
    /// to) for a direct write; `at` must then be block-aligned.
    pub fn seal(&mut self, at: u64, direct: bool) {
        for patch in self.patches.drain(..) {
            let field = &mut self.bytes[patch.at..patch.at + OFFSET_WIDTH];
            let mut n = at + patch.offset as u64;
            for digit in field.iter_mut().rev() {
                *digit = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
        }
        if direct {
            let len = self.data_len().next_multiple_of(BLOCK);
            self.data.resize(self.data_start + len, 0);
        }
        self.data_at = at;
        self.data_direct = direct;
    }

    /// What the writer needs (after [`Chunk::seal`], when there is data).
    pub fn into_parts(self) -> Parts {
        let data = (self.data_len() > 0).then_some(DataParts {
            buffer: self.data,
            start: self.data_start,
            at: self.data_at,
            direct: self.data_direct,
        });
        Parts {
            lines: (self.bytes, self.start),
            data,
        }
    }

    /// A whole record, serialised now.
    pub fn record(&mut self, record: &Record) {
        serde_json::to_writer(&mut self.bytes, record).expect("a record always serialises");
        self.bytes.push(b'\n');
        self.records += 1;
    }

    /// The first half of an `event` record: where and when (`prefix`, from
    /// [`event_prefix`]), and the event as received. [`Chunk::event_end`] must follow
    /// before anything else.
    pub fn event_start(&mut self, prefix: &[u8], received: &Event) {
        let patch = self.event_start_into_text(None, prefix, received);
        self.patches.extend(patch);
    }

    /// The first half of an `event` record into `text` (the events of a batch are
    /// written down before the chain runs, their ends after), its data into this
    /// chunk; returns where its data offset goes in the first half, for
    /// [`Chunk::event_start_from`]. The chunk must not be sealed in between.
    pub fn event_start_elsewhere(
        &mut self,
        text: &mut Vec<u8>,
        prefix: &[u8],
        received: &Event,
    ) -> Option<Patch> {
        let first_half = text.len();
        let patch = self.event_start_into_text(Some(text), prefix, received);
        // Where it goes in the first half.
        patch.map(|p| Patch {
            at: p.at - first_half,
            ..p
        })
    }

    fn event_start_into_text(
        &mut self,
        text: Option<&mut Vec<u8>>,
        prefix: &[u8],
        received: &Event,
    ) -> Option<Patch> {
        let out = text.unwrap_or(&mut self.bytes);
        out.extend_from_slice(prefix);
        event(out, &mut self.data, self.data_start, received)
    }

    /// A first half written with [`Chunk::event_start_elsewhere`]; then as
    /// [`Chunk::event_start`].
    pub fn event_start_from(&mut self, first_half: &[u8], patch: Option<Patch>) {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(first_half);
        self.patches
            .extend(patch.map(|p| Patch { at: at + p.at, ..p }));
    }

    /// The second half: the steps, and what the client got (`unchanged`: exactly the
    /// event as received; `sent` is then left out, which readers take as `null`).
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
                let patch = event(out, &mut self.data, self.data_start, sent);
                self.patches.extend(patch);
                self.bytes.push(b'}');
            }
        }
        self.bytes.push(b'\n');
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
    /// An empty buffer with room for `capacity` bytes from a block boundary on (its
    /// `start`), a kept one if there is one.
    pub fn take(&self, capacity: usize) -> (Vec<u8>, usize) {
        let kept = self.free.lock().ok().and_then(|mut free| free.pop());
        match kept {
            Some(bytes) if bytes.capacity() >= capacity + BLOCK => aligned(bytes, capacity),
            _ => aligned(Vec::new(), capacity),
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

/// The start of an `event` record up to its `received` event, into `out` (cleared):
/// the same for every event of a stream within a millisecond, so a stream's recorder
/// keeps it and writes it again only when `t_ms` changes.
pub fn event_prefix(out: &mut Vec<u8>, stream: u64, t_ms: u64) {
    out.clear();
    out.extend_from_slice(br#"{"type":"event","stream":"#);
    json::uint(out, stream);
    out.extend_from_slice(br#","t_ms":"#);
    json::uint(out, t_ms);
    out.extend_from_slice(br#","received":"#);
}

/// An SSE event as a tape event: `id`, `event` and `retry` inline, the data (when it
/// is not empty) appended to `data` as it is and referred to as `data_at`, its offset
/// left blank for [`Chunk::seal`] (the returned patch).
fn event(out: &mut Vec<u8>, data: &mut Vec<u8>, data_start: usize, e: &Event) -> Option<Patch> {
    out.push(b'{');
    let mut first = true;
    let mut comma = |out: &mut Vec<u8>| {
        if !first {
            out.push(b',');
        }
        first = false;
    };
    for (name, text) in [(&br#""id":"#[..], &e.id), (br#""event":"#, &e.event)] {
        if let Some(text) = text {
            comma(out);
            out.extend_from_slice(name);
            json::string(out, text.as_bytes());
        }
    }
    let mut patch = None;
    match e.data.as_deref() {
        None => {}
        Some("") => {
            comma(out);
            out.extend_from_slice(br#""data":"""#);
        }
        Some(text) => {
            comma(out);
            out.extend_from_slice(br#""data_at":["#);
            patch = Some(Patch {
                at: out.len(),
                offset: data.len() - data_start,
            });
            out.extend_from_slice(&[b' '; OFFSET_WIDTH]);
            out.push(b',');
            json::uint(out, text.len() as u64);
            out.push(b']');
            data.extend_from_slice(text.as_bytes());
        }
    }
    if let Some(retry) = e.retry {
        comma(out);
        out.extend_from_slice(br#""retry":"#);
        json::uint(out, retry);
    }
    out.push(b'}');
    patch
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

    fn prefix(stream: u64, t_ms: u64) -> Vec<u8> {
        let mut out = vec![b'x'];
        event_prefix(&mut out, stream, t_ms);
        out
    }

    fn rendered(chunk: &Chunk) -> String {
        String::from_utf8(chunk.bytes().to_vec()).unwrap()
    }

    /// The records of a sealed chunk's lines, their `data_at` read from `file`, a data
    /// file that holds the chunk's data at `at`.
    fn read_back(chunk: &Chunk, at: u64) -> Vec<Record> {
        let mut file = vec![0u8; at as usize];
        file.extend_from_slice(chunk.data());
        let resolve = |e: &mut TapeEvent| {
            if let Some((offset, len)) = e.data_at.take() {
                let bytes = &file[offset as usize..(offset + len) as usize];
                e.data = Some(String::from_utf8(bytes.to_vec()).unwrap());
            }
        };
        rendered(chunk)
            .lines()
            .map(|line| {
                let mut record: Record = serde_json::from_str(line).unwrap();
                if let Record::Event { received, sent, .. } = &mut record {
                    resolve(received);
                    sent.as_mut().map(resolve);
                }
                record
            })
            .collect()
    }

    #[test]
    fn events_read_back_as_the_records_they_describe() {
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
        let cases: [(Vec<Step>, Option<&Event>, bool); 5] = [
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
            (vec![], Some(&Event::message("")), false),
        ];
        for (at, direct) in [(0, false), (12_345, false), (8 * BLOCK as u64, true)] {
            let mut chunk = Chunk::default();
            let mut expected = Vec::new();
            for (steps, out, unchanged) in &cases {
                chunk.event_start(&prefix(3, 1234), &received);
                chunk.event_end(steps, *out, *unchanged);
                expected.push(Record::Event {
                    stream: 3,
                    t_ms: 1234,
                    received: TapeEvent::from(&received),
                    steps: steps.iter().map(TapeStep::from).collect(),
                    sent: if *unchanged {
                        None
                    } else {
                        out.map(TapeEvent::from)
                    },
                    unchanged: *unchanged,
                });
            }
            assert_eq!(chunk.records(), cases.len() as u64);
            chunk.seal(at, direct);
            if direct {
                assert!(chunk.data_len().is_multiple_of(BLOCK), "padded to blocks");
            }
            let text = rendered(&chunk);
            assert!(!text.contains("line\\nbreak"), "data is not inline: {text}");
            assert_eq!(read_back(&chunk, at), expected, "{text}");
        }
    }

    #[test]
    fn a_batch_start_written_elsewhere_refers_to_the_right_data() {
        let mut chunk = Chunk::default();
        let mut text = Vec::new();
        let events: Vec<Event> = (0..3).map(|i| Event::message(format!("m{i}"))).collect();
        let mut starts = Vec::new();
        for e in &events {
            let at = text.len();
            starts.push((at, chunk.event_start_elsewhere(&mut text, &prefix(1, 2), e)));
        }
        // Written in the order the chain answers, with a record between.
        for (i, (start, patch)) in starts.iter().enumerate() {
            let end = starts.get(i + 1).map_or(text.len(), |next| next.0);
            chunk.event_start_from(&text[*start..end], *patch);
            chunk.event_end(&[], Some(&events[i]), true);
        }
        chunk.seal(100, false);
        let received: Vec<Option<String>> = read_back(&chunk, 100)
            .into_iter()
            .map(|r| match r {
                Record::Event { received, .. } => received.data,
                _ => None,
            })
            .collect();
        assert_eq!(received, ["m0", "m1", "m2"].map(|m| Some(m.to_string())));
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
        chunk.event_start(&prefix(2, 0), &Event::message("x"));
        chunk.event_end(&[], None, false);
        chunk.record(&end(3));
        assert_eq!(chunk.records(), 3);
        chunk.seal(0, false);
        let text = rendered(&chunk);
        let streams: Vec<u64> = text
            .lines()
            .map(|l| serde_json::from_str::<Record>(l).unwrap().stream().unwrap())
            .collect();
        assert_eq!(streams, vec![1, 2, 3]);
    }
}
