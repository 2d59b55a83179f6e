//! The proxy's side of `--record`: one [`TapeStream`] per exchange turns what happens
//! into tape records. Only built when recording is on.
//!
//! Cost matters here (recording must not slow the proxy much), so records are written
//! where they happen, as JSON lines, into the exchange's own [`Chunk`] (an event's by
//! hand: see `tape::chunk`), which goes to the recorder when full or old. An event's
//! `received` part is written *before* the chain runs, so the event is never cloned for
//! the tape; `steps` and `sent` follow once the chain has answered.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;

use crate::plugin::{Step, StepVerdict, StreamMeta};
use crate::sse::Event;
use crate::tape::chunk::{self, Chunk, Patch};
use crate::tape::format::{self, REQUEST_HEADERS, RESPONSE_HEADERS};
use crate::tape::{Record, Recorder, TapeStep};

/// A chunk goes to the recorder once it holds this many bytes of lines...
const CHUNK_BYTES: usize = 32 << 10;
/// ...in a buffer with room for the record that crosses the line, so that record does
/// not make the buffer grow (a copy of the whole chunk)...
const CHUNK_ROOM: usize = CHUNK_BYTES + (8 << 10);
/// ...or this much event data, in a buffer with room for a batch on top (up to 64
/// KiB of events, `sse_body`: a chunk is not handed over in the middle of one), so that
/// it need not move, which would end its direct write...
const DATA_BYTES: usize = 64 << 10;
const DATA_ROOM: usize = 2 * DATA_BYTES + (16 << 10);
/// ...or is this old (ms), so a tape can be followed while a slow stream runs.
const CHUNK_AGE_MS: u64 = 100;
/// Chunks with at least this much data write it around the page cache when the file
/// system allows (`Recorder::reserve_data`); padding it to whole blocks then costs at
/// most an eighth. Less goes through the page cache, exactly.
const DIRECT_DATA: usize = 32 << 10;

/// Records one exchange.
pub(crate) struct TapeStream {
    recorder: Arc<Recorder>,
    stream: u64,
    chunk: Chunk,
    /// `t_ms` of the last record, and when the chunk was last handed over: the age
    /// check reuses the clock read each record makes anyway.
    last_ms: u64,
    flushed_ms: u64,
    /// The first halves of a batch's `event` records ([`TapeStream::batch_start`]),
    /// one after the other, where each starts and where its data offset goes.
    batch: Vec<u8>,
    batch_at: Vec<(usize, Option<Patch>)>,
    /// The start of this stream's `event` records at `prefix_ms` (`chunk::event_prefix`).
    prefix: Vec<u8>,
    prefix_ms: Option<u64>,
    /// The last chunk's reference list, empty, for the next chunk.
    patches: Vec<Patch>,
}

impl TapeStream {
    pub(crate) fn new(recorder: Arc<Recorder>, stream: u64) -> Self {
        Self {
            recorder,
            stream,
            chunk: Chunk::default(),
            last_ms: 0,
            flushed_ms: 0,
            batch: Vec::new(),
            batch_at: Vec::new(),
            prefix: Vec::new(),
            prefix_ms: None,
            patches: Vec::new(),
        }
    }

    /// Milliseconds since recording started, remembered for the age check.
    fn now_ms(&mut self) -> u64 {
        self.last_ms = self.recorder.t_ms();
        self.last_ms
    }

    /// Takes the time and readies the start of an `event` record for it.
    fn event_prefix(&mut self) {
        let t_ms = self.now_ms();
        if self.prefix_ms != Some(t_ms) {
            chunk::event_prefix(&mut self.prefix, self.stream, t_ms);
            self.prefix_ms = Some(t_ms);
        }
    }

    fn push(&mut self, record: &Record) {
        self.ready();
        self.chunk.record(record);
        self.record_done();
    }

    /// Buffers for the chunk, from the recorder's pools, when it has none (it gives
    /// them up with each flush, so an idle exchange holds none).
    fn ready(&mut self) {
        if !self.chunk.has_buffers() {
            let (lines, data) = self.recorder.pools();
            let patches = std::mem::take(&mut self.patches);
            self.chunk
                .fill_from(lines, CHUNK_ROOM, data, DATA_ROOM, patches);
        }
    }

    fn record_done(&mut self) {
        if self.chunk.len() >= CHUNK_BYTES
            || self.chunk.data_len() >= DATA_BYTES
            || self.last_ms.saturating_sub(self.flushed_ms) >= CHUNK_AGE_MS
        {
            self.flush();
        }
    }

    /// Hands what is buffered to the recorder: reserves the data's place in the data
    /// file, writes it into the lines that refer to it, and queues the chunk.
    fn flush(&mut self) {
        if !self.chunk.is_empty() {
            let mut full = std::mem::take(&mut self.chunk);
            let data = full.data_len();
            if data > 0 {
                let direct =
                    data >= DIRECT_DATA && self.recorder.data_direct() && full.data_aligned();
                let at = self.recorder.reserve_data(data, direct);
                full.seal(at, direct);
            }
            self.patches = full.take_patches();
            self.recorder.write_chunk(full);
        }
        self.flushed_ms = self.last_ms;
    }

    /// The client's request, what the chain said about its body, and what went upstream
    /// (`None`: the proxy answered itself).
    pub(crate) fn request(
        &mut self,
        meta: &StreamMeta,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &Bytes,
        chain_steps: &[Step],
        sent: Option<&Bytes>,
    ) {
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        let record = Record::Request {
            stream: self.stream,
            t_ms: self.now_ms(),
            method: meta.method.clone(),
            path: meta.path.clone(),
            query: query.map(str::to_string),
            rpc_method: meta.rpc_method.clone(),
            protocol_version: meta.protocol_version.clone(),
            headers: format::kept_headers(headers, REQUEST_HEADERS),
            body: text(body),
            steps: chain_steps.iter().map(TapeStep::from).collect(),
            sent: sent.map(text),
        };
        self.push(&record);
    }

    /// The upstream's response head.
    pub(crate) fn response(&mut self, status: http::StatusCode, headers: &HeaderMap) {
        let record = Record::Response {
            stream: self.stream,
            t_ms: self.now_ms(),
            status: status.as_u16(),
            headers: format::kept_headers(headers, RESPONSE_HEADERS),
        };
        self.push(&record);
    }

    /// The first half of an `event` record: the event as received. Call before the
    /// chain runs, then [`TapeStream::event_end`] exactly once.
    pub(crate) fn event_start(&mut self, received: &Event) {
        self.event_prefix();
        self.ready();
        self.chunk.event_start(&self.prefix, received);
    }

    /// The second half: each plugin's step and what the client got. `rewritten`: the
    /// proxy itself changed the event before the chain (a legacy `endpoint` event), so
    /// an all-pass chain still did not send `received` unchanged.
    pub(crate) fn event_end(
        &mut self,
        chain_steps: &[Step],
        sent: Option<&Event>,
        rewritten: bool,
    ) {
        self.event_record_end(chain_steps, sent, rewritten);
        self.record_done();
    }

    fn event_record_end(&mut self, chain_steps: &[Step], sent: Option<&Event>, rewritten: bool) {
        // Every plugin passed (or there was none) and a message went out: it is the
        // event as received, except for the transport's own rewrite.
        let unchanged = !rewritten
            && sent.is_some_and(|e| e.data.is_some())
            && chain_steps.iter().all(|s| s.verdict == StepVerdict::Pass);
        self.chunk.event_end(chain_steps, sent, unchanged);
    }

    /// [`TapeStream::event_start`] for the next event of a batch: the events of a batch
    /// go through the chain together, so their first halves wait here (a copy of about
    /// a hundred bytes each; the data goes to the chunk's data buffer now) until [`TapeStream::batch_end`] writes each record whole.
    pub(crate) fn batch_start(&mut self, received: &Event) {
        self.event_prefix();
        self.ready();
        let at = self.batch.len();
        let patch = self
            .chunk
            .event_start_elsewhere(&mut self.batch, &self.prefix, received);
        self.batch_at.push((at, patch));
    }

    /// [`TapeStream::event_end`] for the batch's event `i` (in `batch_start` order).
    /// The chunk is not handed over before [`TapeStream::batch_done`]: its data buffer
    /// holds the data of the batch's events still to come.
    pub(crate) fn batch_end(&mut self, i: usize, chain_steps: &[Step], sent: Option<&Event>) {
        let (start, patch) = self.batch_at[i];
        let end = self
            .batch_at
            .get(i + 1)
            .map_or(self.batch.len(), |next| next.0);
        self.chunk.event_start_from(&self.batch[start..end], patch);
        self.event_record_end(chain_steps, sent, false);
    }

    /// The batch is written: the next `batch_start` begins another.
    pub(crate) fn batch_done(&mut self) {
        self.batch.clear();
        self.batch_at.clear();
        self.record_done();
    }

    /// A comment (keep-alive), passed as it was.
    pub(crate) fn comment(&mut self, text: &str) {
        let record = Record::Comment {
            stream: self.stream,
            t_ms: self.now_ms(),
            text: text.to_string(),
        };
        self.push(&record);
    }

    /// The end of the exchange: `complete`, `upstream-error`, `client-gone`, `shutdown`,
    /// `not-inspected` (a body passed unread, e.g. an error status) or
    /// `answered-by-proxy`. Hands everything buffered to the recorder.
    pub(crate) fn end(&mut self, outcome: &str, error: Option<String>) {
        let record = Record::End {
            stream: self.stream,
            t_ms: self.now_ms(),
            outcome: outcome.to_string(),
            error,
        };
        self.push(&record);
        self.flush();
    }
}

impl Drop for TapeStream {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::TapeEvent;

    #[test]
    fn a_split_event_record_reads_back_as_one_record() {
        let dir = std::env::temp_dir().join(format!("sluice-split-{}", std::process::id()));
        let recorder = Arc::new(Recorder::create(&dir, "http://up").unwrap());
        let mut tape = TapeStream::new(recorder.clone(), 9);
        let received = Event {
            id: Some("4".into()),
            ..Event::message("{\"a\":\"x\\ny\"}")
        };
        let step = |verdict| Step {
            plugin: "p".into(),
            verdict,
            elapsed: std::time::Duration::from_micros(3),
            fuel: 10,
        };
        tape.event_start(&received);
        tape.event_end(&[step(StepVerdict::Pass)], Some(&received), false);
        let modified = Event::message("changed");
        tape.event_start(&received);
        tape.event_end(&[step(StepVerdict::Modify)], Some(&modified), false);
        tape.event_start(&received);
        tape.event_end(&[step(StepVerdict::Drop)], None, false);
        drop(tape);
        recorder.sync();
        let records = format::read(recorder.path()).unwrap();
        let sent: Vec<Option<TapeEvent>> = records[1..].iter().map(Record::sent_event).collect();
        assert_eq!(
            sent,
            vec![
                Some(TapeEvent::from(&received)),
                Some(TapeEvent::from(&modified)),
                None
            ]
        );
        assert!(matches!(
            &records[1],
            Record::Event {
                unchanged: true,
                stream: 9,
                ..
            }
        ));
        assert!(matches!(&records[2], Record::Event { steps, .. } if steps[0].verdict == "modify"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_fast_streams_data_reads_back_byte_for_byte() {
        let dir = std::env::temp_dir().join(format!("sluice-fast-{}", std::process::id()));
        let recorder = Arc::new(Recorder::create(&dir, "http://up").unwrap());
        let mut tape = TapeStream::new(recorder.clone(), 1);
        // Sizes from a few bytes to past a chunk's data room (a buffer that must grow),
        // some in batches, some one by one.
        let events: Vec<Event> = (0..3000)
            .map(|i: usize| {
                let len = match i {
                    1234 => 300 << 10,
                    i if i % 97 == 0 => 20_000 + i,
                    i => 1 + (i * 37) % 700,
                };
                let text: String = (0..len)
                    .map(|k| char::from(b'a' + ((i + k) % 26) as u8))
                    .collect();
                Event {
                    id: Some(i.to_string()),
                    ..Event::message(format!("{{\"n\":{i},\"s\":\"{text}\"}}"))
                }
            })
            .collect();
        for (n, group) in events.chunks(7).enumerate() {
            if n % 2 == 0 {
                for e in group {
                    tape.batch_start(e);
                }
                for (i, e) in group.iter().enumerate() {
                    tape.batch_end(i, &[], Some(e));
                }
                tape.batch_done();
            } else {
                for e in group {
                    tape.event_start(e);
                    tape.event_end(&[], Some(e), false);
                }
            }
        }
        drop(tape);
        recorder.sync();
        assert_eq!(recorder.dropped(), 0);
        let records = format::read(recorder.path()).unwrap();
        let back: Vec<Event> = records[1..]
            .iter()
            .map(|r| r.sent_event().map(Event::from).unwrap())
            .collect();
        assert_eq!(back.len(), events.len());
        for (i, (back, sent)) in back.iter().zip(&events).enumerate() {
            assert!(back == sent, "event {i} differs");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
