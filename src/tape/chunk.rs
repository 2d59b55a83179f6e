//! How records travel from an exchange to the tape writer: a chunk of finished JSON
//! lines, serialised on the proxy's thread where they happen, and the raw bytes those
//! lines refer to.
//!
//! The records that come often are written by hand (no `serde`, no allocation): a
//! `raw` record per upstream read ([`Chunk::raw`]: the bytes go as they are into the
//! chunk's data buffer, one copy of the whole read, and the line says where they will
//! be in the tape's data file, `"data_at":[offset,length]`, see `docs/tapes.md`), and a
//! `passed` record per run of passed events ([`Chunk::passed`]). Nothing is written per
//! passed event: escaping MCP's JSON into a line per event (version 1) and then a line
//! per event (version 2) each cost more than the tenth of the proxy's time recording
//! may take. The data's place in the file is only known when the chunk is handed over,
//! so each reference leaves room for its offset and [`Chunk::seal`] writes it in. Rare
//! records (request, response, events a plugin changed, comment, end, header) go
//! through `serde`, their text inline.

use crate::plugin::Step;

use std::sync::Arc;

use super::data_buf::{Arena, DataBuf};
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
/// `bytes[start..]`, and the raw bytes they refer to, in `data`.
#[derive(Debug, Default)]
pub struct Chunk {
    bytes: Vec<u8>,
    start: usize,
    records: u64,
    data: Option<DataBuf>,
    patches: Vec<Patch>,
    /// Set by [`Chunk::seal`]: the data file offset of `data`, and whether
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

/// A chunk's raw bytes on their way to the data file.
pub struct DataParts {
    /// The bytes (block-aligned in memory), back to their arena once written.
    pub buffer: DataBuf,
    /// Where it goes in the data file (reserved by the exchange).
    pub at: u64,
    /// Padded to whole blocks and block-aligned: may go around the page cache.
    pub direct: bool,
}

/// A buffer of `capacity` bytes from `start` on, `start` on a block boundary in
/// memory (direct writes need it), reusing `bytes`' allocation.
fn aligned(mut bytes: Vec<u8>, capacity: usize) -> (Vec<u8>, usize) {
    if bytes.capacity() < capacity + BLOCK {
        bytes = Vec::with_capacity(capacity + BLOCK);
    }
    let start = bytes.as_ptr().align_offset(BLOCK);
    // The bytes before `start` are never written out: a reused buffer keeps what it
    // held there (zeroing up to a block per chunk showed in profiles).
    if bytes.len() >= start {
        bytes.truncate(start);
    } else {
        bytes.clear();
        bytes.resize(start, 0);
    }
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
        data: &Arc<Arena>,
        data_capacity: usize,
        patches: Vec<Patch>,
    ) {
        (self.bytes, self.start) = lines.take(lines_capacity);
        self.data = Some(data.take(data_capacity));
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
        self.data.as_ref().map_or(0, DataBuf::len)
    }

    /// Bytes of memory the chunk's buffers hold (capacities, not contents: a chunk
    /// handed over by age holds a whole data slot however little is in it), which the
    /// recorder's queue bounds (`recorder::QUEUE_BYTES`).
    pub fn footprint(&self) -> usize {
        self.bytes.capacity() + self.data.as_ref().map_or(0, DataBuf::capacity)
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
        self.data.as_ref().map_or(&[], DataBuf::as_slice)
    }

    /// How many more bytes of data fit in the data buffer without it growing (a
    /// capacity is whole blocks, so the padding of a direct write fits too).
    pub fn data_room(&self) -> usize {
        self.data.as_ref().map_or(0, |d| d.capacity() - d.len())
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
        if direct && let Some(data) = &mut self.data {
            data.pad_to_block();
        }
        self.data_at = at;
        self.data_direct = direct;
    }

    /// Makes the data appended so far visible to other threads (`DataBuf::fence`):
    /// before the chunk is queued for the writer.
    pub fn fence(&mut self) {
        if let Some(data) = &mut self.data {
            data.fence();
        }
    }

    /// What the writer needs (after [`Chunk::seal`], when there is data).
    pub fn into_parts(self) -> Parts {
        let data = self.data.filter(|d| !d.is_empty()).map(|buffer| DataParts {
            buffer,
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

    /// A `raw` record: `bytes` of the stream's upstream body, copied as they are into
    /// the data buffer (one copy per upstream read, not per event), the line referring
    /// to them with its offset left blank for [`Chunk::seal`].
    pub fn raw(&mut self, stream: u64, t_ms: u64, bytes: &[u8]) {
        let out = &mut self.bytes;
        record_head(out, b"raw", stream, t_ms);
        out.extend_from_slice(br#","data_at":["#);
        self.patches.push(Patch {
            at: out.len(),
            offset: self.data.as_ref().map_or(0, DataBuf::len),
        });
        out.extend_from_slice(&[b' '; OFFSET_WIDTH]);
        out.push(b',');
        json::uint(out, bytes.len() as u64);
        out.extend_from_slice(b"]}\n");
        self.data
            .get_or_insert_with(|| DataBuf::heap(bytes.len()))
            .append(bytes);
        self.records += 1;
    }

    /// A `passed` record: events `first .. first + count` of `stream` each went through
    /// the plugins of `steps` (all `pass`; their time and fuel summed over the events;
    /// `names` has the plugins' names) and out unchanged. Counts as `count` records
    /// (what a tape with a record per event would hold), so drops count events.
    pub fn passed(
        &mut self,
        stream: u64,
        t_ms: u64,
        first: u64,
        count: u64,
        steps: &[Step],
        names: &[Arc<str>],
    ) {
        let out = &mut self.bytes;
        record_head(out, b"passed", stream, t_ms);
        out.extend_from_slice(br#","first":"#);
        json::uint(out, first);
        out.extend_from_slice(br#","count":"#);
        json::uint(out, count);
        out.extend_from_slice(br#","steps":["#);
        for (i, step) in steps.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"plugin":"#);
            json::string(out, names[step.plugin].as_bytes());
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
        out.extend_from_slice(b"]}\n");
        self.records += count;
    }
}

/// Starts a hand-written record: `{"type":"<kind>","stream":<stream>,"t_ms":<t_ms>`.
fn record_head(out: &mut Vec<u8>, kind: &[u8], stream: u64, t_ms: u64) {
    out.extend_from_slice(br#"{"type":""#);
    out.extend_from_slice(kind);
    out.extend_from_slice(br#"","stream":"#);
    json::uint(out, stream);
    out.extend_from_slice(br#","t_ms":"#);
    json::uint(out, t_ms);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::StepVerdict;
    use crate::tape::TapeStep;
    use std::time::Duration;

    fn step(verdict: StepVerdict) -> Step {
        Step {
            plugin: 0,
            verdict,
            elapsed: Duration::from_micros(12),
            fuel: 3456,
        }
    }

    fn rendered(chunk: &Chunk) -> String {
        String::from_utf8(chunk.bytes().to_vec()).unwrap()
    }

    #[test]
    fn raw_bytes_and_passed_runs_read_back_as_written() {
        let reads: [&[u8]; 3] = [b"data: {\"a\":1}\n\n", b"", b"event: x\ndata: \xff\"\\\n\n"];
        for (at, direct) in [(0, false), (12_345, false), (8 * BLOCK as u64, true)] {
            let mut chunk = Chunk::default();
            for (i, bytes) in reads.iter().enumerate() {
                chunk.raw(4, 10 + i as u64, bytes);
            }
            let steps = [step(StepVerdict::Pass), step(StepVerdict::Pass)];
            let names: [Arc<str>; 1] = ["re\"dact".into()];
            chunk.passed(4, 99, 7, 30, &steps, &names);
            assert_eq!(chunk.records(), 3 + 30, "a run counts its events");
            chunk.seal(at, direct);
            if direct {
                assert!(chunk.data_len().is_multiple_of(BLOCK), "padded to blocks");
            }
            let mut file = vec![0u8; at as usize];
            file.extend_from_slice(chunk.data());
            let text = rendered(&chunk);
            let records: Vec<Record> = text
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect();
            for (i, bytes) in reads.iter().enumerate() {
                let Record::Raw {
                    stream: 4,
                    t_ms,
                    data_at: (offset, len),
                } = records[i]
                else {
                    panic!("not a raw record: {text}");
                };
                assert_eq!(t_ms, 10 + i as u64);
                assert_eq!(&file[offset as usize..(offset + len) as usize], *bytes);
            }
            assert_eq!(
                records[3],
                Record::Passed {
                    stream: 4,
                    t_ms: 99,
                    first: 7,
                    count: 30,
                    steps: steps.iter().map(|s| TapeStep::new(s, "re\"dact")).collect(),
                }
            );
        }
    }

    #[test]
    fn lines_keep_their_order() {
        let mut chunk = Chunk::default();
        let end = |stream| Record::End {
            stream,
            t_ms: 5,
            outcome: "complete".into(),
            error: None,
        };
        chunk.record(&end(1));
        chunk.raw(2, 0, b"data: x\n\n");
        chunk.passed(3, 0, 0, 1, &[], &[]);
        chunk.record(&end(4));
        assert_eq!(chunk.records(), 4);
        chunk.seal(0, false);
        let text = rendered(&chunk);
        let streams: Vec<u64> = text
            .lines()
            .map(|l| serde_json::from_str::<Record>(l).unwrap().stream().unwrap())
            .collect();
        assert_eq!(streams, vec![1, 2, 3, 4]);
    }
}
