//! The proxy's side of `--record`: one [`TapeStream`] per exchange turns what happens
//! into tape records. Only built when recording is on.
//!
//! Cost matters here (a stream runs at the proxy's speed with recording on), so
//! nothing is written per passed event: the upstream's body goes on the tape as it was
//! read (`raw` records, one per read), events are only counted (`seq`, in the order
//! they decode, which is how the tape's reader numbers them again), and a run of events
//! that every plugin passed and that went out unchanged becomes one `passed` record.
//! Only an event a plugin dropped or changed (or the proxy rewrote) gets an `event`
//! record of its own. Records go to the [`Recorder`]'s writer thread as they are made;
//! a run goes once it ends, or is old or long enough to be worth a line.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;

use crate::plugin::{Step, StepVerdict, StreamMeta};
use crate::sse::Event;
use crate::tape::format::{self, REQUEST_HEADERS, RESPONSE_HEADERS};
use crate::tape::{Record, Recorder, TapeEvent, TapeStep};

/// A run of passed events still going is written when the next read comes once it is
/// this old (ms), so a tape can be followed while a long stream runs...
const RUN_AGE_MS: u64 = 100;
/// ...or once this many bytes were read since the last run was written, so a full
/// queue or the size cap loses at most the verdicts of that much of a stream.
const RUN_BYTES: usize = 128 << 10;

/// Records one exchange.
pub struct TapeStream {
    recorder: Arc<Recorder>,
    stream: u64,
    /// The names of the chain's plugins, which steps refer to by index.
    names: Arc<[Arc<str>]>,
    /// `t_ms` of the last record or read: a run's time, without a clock read per event.
    last_ms: u64,
    /// The number the next upstream event gets (`seq`).
    next_seq: u64,
    /// Passed events not yet written: a run that one `passed` record will describe.
    run: Option<Run>,
    /// Bytes read since the last run was written ([`RUN_BYTES`]).
    read_since_run: usize,
    /// The recorder dropped a record of this stream: its raw bytes may have a hole, so
    /// the events after it cannot be read back. Nothing more is recorded but the
    /// stream's other records (its `end`).
    broken: bool,
    /// The last run's step list, for the next run (no allocation per run).
    spare_steps: Vec<Step>,
    /// The reload generation of the chain judging the exchange, if known.
    generation: Option<u64>,
    /// That chain's plugins and their component hashes, for the request record.
    chain: Vec<format::ChainPlugin>,
}

/// Events `first .. first + count`, all passed by the same plugins in the same order;
/// `steps` holds each plugin's time and fuel summed over the run (a reader gives each
/// event an equal share, as for a batch call): a run per event, just because each
/// call took its own time, would be a line per event again.
struct Run {
    t_ms: u64,
    first: u64,
    count: u64,
    steps: Vec<Step>,
}

impl Run {
    /// Adds the next event to the run if the same plugins passed it.
    fn extend(&mut self, steps: &[Step]) -> bool {
        let same = self.steps.len() == steps.len()
            && self
                .steps
                .iter()
                .zip(steps)
                .all(|(a, b)| a.verdict == b.verdict && a.plugin == b.plugin);
        if same {
            for (total, step) in self.steps.iter_mut().zip(steps) {
                total.elapsed += step.elapsed;
                total.fuel = total.fuel.saturating_add(step.fuel);
            }
            self.count += 1;
        }
        same
    }
}

impl TapeStream {
    /// Records exchange `stream`, whose steps are those of the chain whose plugins are
    /// `names` ([`crate::plugin::Chain::plugin_names`]).
    pub fn new(recorder: Arc<Recorder>, stream: u64, names: Arc<[Arc<str>]>) -> Self {
        Self {
            recorder,
            stream,
            names,
            last_ms: 0,
            next_seq: 0,
            run: None,
            read_since_run: 0,
            broken: false,
            spare_steps: Vec::new(),
            generation: None,
            chain: Vec::new(),
        }
    }

    /// Records which chain judged the exchange (its generation, each plugin's component
    /// hash) with the request.
    pub fn of_chain(mut self, chain: &crate::plugin::Chain) -> Self {
        self.generation = Some(chain.generation());
        self.chain = chain
            .plugins()
            .iter()
            .map(|p| format::ChainPlugin {
                plugin: p.name().to_string(),
                sha256: p.component_sha256().map(|h| h.to_string()),
            })
            .collect();
        self
    }

    /// `steps` as the tape writes them, with their plugins' names.
    fn tape_steps(&self, steps: &[Step]) -> Vec<TapeStep> {
        steps
            .iter()
            .map(|s| TapeStep::new(s, &self.names[s.plugin]))
            .collect()
    }

    /// Milliseconds since recording started, remembered for the next run.
    fn now_ms(&mut self) -> u64 {
        self.last_ms = self.recorder.t_ms();
        self.last_ms
    }

    /// Queues `record` after the pending run.
    fn push(&mut self, record: &Record) {
        self.write_run();
        if !self.recorder.write_record(record) {
            self.broken = true;
        }
    }

    /// Writes the pending run of passed events as one `passed` record.
    fn write_run(&mut self) {
        self.read_since_run = 0;
        if let Some(run) = self.run.take() {
            let record = Record::Passed {
                stream: self.stream,
                t_ms: run.t_ms,
                first: run.first,
                count: run.count,
                steps: self.tape_steps(&run.steps),
            };
            if !self.recorder.write_record(&record) {
                self.broken = true;
            }
            // Its step list, for the next run.
            self.spare_steps = run.steps;
        }
    }

    /// The client's request, what the chain said about its body, and what went upstream
    /// (`None`: the proxy answered itself).
    pub fn request(
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
            query: query.map(|q| redact_query(q, self.recorder.redact_query()).into_owned()),
            rpc_method: meta.rpc_method.clone(),
            protocol_version: meta.protocol_version.clone(),
            headers: format::kept_headers(headers, REQUEST_HEADERS),
            body: text(body),
            steps: self.tape_steps(chain_steps),
            sent: sent.map(text),
            identity: (*meta.identity != crate::identity::Identity::default())
                .then(|| (*meta.identity).clone()),
            generation: self.generation,
            chain: std::mem::take(&mut self.chain),
        };
        self.push(&record);
    }

    /// The upstream's response head.
    pub fn response(&mut self, status: http::StatusCode, headers: &HeaderMap) {
        let record = Record::Response {
            stream: self.stream,
            t_ms: self.now_ms(),
            status: status.as_u16(),
            headers: format::kept_headers(headers, RESPONSE_HEADERS),
        };
        self.push(&record);
    }

    /// Bytes of the upstream's body, as read: call with every read, before the chain
    /// sees the events they complete. One `raw` record per read (copied: a kept
    /// reference would pin hyper's read buffer, see docs/architecture.md).
    pub fn raw(&mut self, bytes: &[u8]) {
        if self.broken || bytes.is_empty() {
            return;
        }
        let t_ms = self.now_ms();
        if self.run.as_ref().is_some_and(|run| {
            t_ms.saturating_sub(run.t_ms) >= RUN_AGE_MS || self.read_since_run >= RUN_BYTES
        }) {
            self.write_run();
            if self.broken {
                return;
            }
        }
        self.read_since_run += bytes.len();
        if !self.recorder.write_raw(self.stream, t_ms, bytes) {
            self.broken = true;
        }
    }

    /// The next upstream event, after the chain judged it: each plugin's step and what
    /// the client got. Call for every event the upstream's body decodes to, in that
    /// order (the events of a batch one by one), after [`TapeStream::raw`] of the bytes
    /// that complete it: the tape numbers events by these calls (`seq`). `rewritten`:
    /// the proxy itself changed the event before the chain (a legacy `endpoint`
    /// event), so an all-pass chain still did not send it unchanged.
    ///
    /// A passed, unchanged event joins the run (or starts one), any other gets an
    /// `event` record (its `received` is in the raw bytes).
    pub fn event(&mut self, chain_steps: &[Step], sent: Option<&Event>, rewritten: bool) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if !self.broken && !rewritten && all_passed(chain_steps, sent) {
            if let Some(run) = &mut self.run
                && run.first + run.count == seq
                && run.extend(chain_steps)
            {
                return;
            }
            self.write_run();
            if !self.broken {
                let mut steps = std::mem::take(&mut self.spare_steps);
                steps.clear();
                steps.extend_from_slice(chain_steps);
                self.run = Some(Run {
                    t_ms: self.last_ms,
                    first: seq,
                    count: 1,
                    steps,
                });
                return;
            }
        }
        if self.broken {
            self.recorder.count_dropped(1);
            return;
        }
        let record = Record::Event {
            stream: self.stream,
            t_ms: self.now_ms(),
            seq: Some(seq),
            received: TapeEvent::default(),
            steps: self.tape_steps(chain_steps),
            sent: sent.map(TapeEvent::from),
            unchanged: false,
        };
        self.push(&record);
    }

    /// An event that did not come from an SSE body (a JSON response), recorded whole.
    pub fn whole_event(&mut self, received: &Event, chain_steps: &[Step], sent: Option<&Event>) {
        let unchanged = all_passed(chain_steps, sent);
        let record = Record::Event {
            stream: self.stream,
            t_ms: self.now_ms(),
            seq: None,
            received: TapeEvent::from(received),
            steps: self.tape_steps(chain_steps),
            sent: if unchanged {
                None
            } else {
                sent.map(TapeEvent::from)
            },
            unchanged,
        };
        self.push(&record);
    }

    /// A comment (keep-alive), passed as it was.
    pub fn comment(&mut self, text: &str) {
        let record = Record::Comment {
            stream: self.stream,
            t_ms: self.now_ms(),
            text: text.to_string(),
        };
        self.push(&record);
    }

    /// The end of the exchange: `complete`, `upstream-error`, `client-gone`, `shutdown`,
    /// `not-inspected` (a body passed unread, e.g. an error status) or
    /// `answered-by-proxy`. The pending run goes first.
    pub fn end(&mut self, outcome: &str, error: Option<String>) {
        let record = Record::End {
            stream: self.stream,
            t_ms: self.now_ms(),
            outcome: outcome.to_string(),
            error,
        };
        self.push(&record);
    }
}

/// Every plugin passed (or there was none) and a message went out: the client got
/// the event as received (unless the proxy itself rewrote it).
fn all_passed(chain_steps: &[Step], sent: Option<&Event>) -> bool {
    sent.is_some_and(|e| e.data.is_some())
        && chain_steps.iter().all(|s| s.verdict == StepVerdict::Pass)
}

/// What a redacted value is written as.
const REDACTED: &str = "REDACTED";

/// `query` with the value of every parameter named in `names` (lower case; a name is
/// compared after percent-decoding, without regard to ASCII case) replaced by
/// [`REDACTED`], and everything else byte for byte as it was: the tape still shows
/// which parameters were sent, not the secrets in them. An empty value stays empty.
pub(crate) fn redact_query<'a>(query: &'a str, names: &[String]) -> std::borrow::Cow<'a, str> {
    let listed = |name: &str| {
        let decoded = percent_decoded(name);
        names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(&decoded))
    };
    let secret = |pair: &str| {
        pair.split_once('=')
            .is_some_and(|(name, value)| !value.is_empty() && listed(name))
    };
    if names.is_empty() || !query.split('&').any(secret) {
        return std::borrow::Cow::Borrowed(query);
    }
    let mut out = String::with_capacity(query.len());
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, _)) if secret(pair) => {
                out.push_str(name);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A query component's bytes as a server reads them: `%XX` decoded, `+` a space
/// (a malformed `%` is kept as it is).
fn percent_decoded(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: &u8| char::from(*b).to_digit(16);
        if bytes[i] == b'%'
            && let Some([hi, lo]) = bytes.get(i + 1..i + 3)
            && let (Some(hi), Some(lo)) = (hex(hi), hex(lo))
        {
            // Two hex digits: at most 0xFF.
            out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'%'));
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    out
}

impl Drop for TapeStream {
    fn drop(&mut self) {
        self.write_run();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::recorder::QueueLimits;

    /// The events a tape's records say the client was sent, in order.
    fn sent_back(records: &[Record]) -> Vec<Event> {
        records
            .iter()
            .filter_map(|r| r.sent_event().map(Event::from))
            .collect()
    }

    fn encoded(events: &[Event]) -> Vec<u8> {
        let mut out = bytes::BytesMut::new();
        for e in events {
            crate::sse::encode_event(e, &mut out);
        }
        out.to_vec()
    }

    #[test]
    fn verdicts_pair_with_the_events_their_raw_bytes_decode_to() {
        let dir = std::env::temp_dir().join(format!("sluice-split-{}", std::process::id()));
        let recorder = Arc::new(Recorder::create(&dir, "http://up").unwrap());
        let mut tape = TapeStream::new(recorder.clone(), 9, ["p".into()].into());
        let received: Vec<Event> = (0..4)
            .map(|i| Event {
                id: Some(i.to_string()),
                ..Event::message(format!("{{\"a\":\"x\\ny{i}\"}}"))
            })
            .collect();
        let step = |verdict| Step {
            plugin: 0,
            verdict,
            elapsed: std::time::Duration::from_micros(3),
            fuel: 10,
            output: None,
        };
        // The upstream's bytes arrive split in the middle of an event.
        let wire = encoded(&received);
        tape.raw(&wire[..30]);
        tape.raw(&wire[30..]);
        let modified = Event::message("changed");
        let verdicts = [
            (StepVerdict::Pass, Some(&received[0])),
            (StepVerdict::Pass, Some(&received[1])),
            (StepVerdict::Modify, Some(&modified)),
            (StepVerdict::Drop, None),
        ];
        for (i, (verdict, sent)) in verdicts.into_iter().enumerate() {
            // The two passed calls took different time and fuel: still one run.
            let mut step = step(verdict);
            if i == 1 {
                step.elapsed = std::time::Duration::from_micros(5);
                step.fuel = 30;
            }
            tape.event(&[step], sent, false);
        }
        drop(tape);
        recorder.sync();
        let records = format::read(recorder.path()).unwrap();
        let events: Vec<&Record> = records
            .iter()
            .filter(|r| matches!(r, Record::Event { .. }))
            .collect();
        assert_eq!(events.len(), 4);
        for (i, record) in events.iter().enumerate() {
            let Record::Event {
                stream: 9,
                seq,
                received: got,
                steps,
                ..
            } = record
            else {
                panic!("{record:?}");
            };
            assert_eq!(*seq, Some(i as u64));
            assert_eq!(*got, TapeEvent::from(&received[i]), "event {i} as received");
            assert_eq!(steps[0].verdict, verdicts[i].0.as_str());
            assert_eq!(record.sent_event(), verdicts[i].1.map(TapeEvent::from));
            if i < 2 {
                // Each event of the run gets an equal share of its time and fuel.
                assert_eq!((steps[0].micros, steps[0].fuel), (4, 20), "event {i}");
            }
        }
        // The two passed events are one run.
        let lines = std::fs::read_to_string(recorder.path()).unwrap();
        assert_eq!(lines.matches(r#""type":"passed""#).count(), 1, "{lines}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_fast_streams_events_read_back_byte_for_byte() {
        let dir = std::env::temp_dir().join(format!("sluice-fast-{}", std::process::id()));
        let recorder = Arc::new(Recorder::create(&dir, "http://up").unwrap());
        let mut tape = TapeStream::new(recorder.clone(), 1, Arc::default());
        // Sizes from a few bytes to past the writer's buffers (read whole), read in
        // pieces that split events anywhere, their verdicts seven at a time once their
        // bytes are read.
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
        let wire = encoded(&events);
        // Where each event ends on the wire.
        let ends: Vec<usize> = events
            .iter()
            .scan(0, |end, e| {
                *end += encoded(std::slice::from_ref(e)).len();
                Some(*end)
            })
            .collect();
        let mut read = 0;
        let mut piece = 1;
        for (n, group) in events.chunks(7).enumerate() {
            // At least this group's bytes have been read before its verdicts.
            let needed = read.max(ends[n * 7 + group.len() - 1]);
            while read < needed {
                // The 300 KiB event comes in one read.
                let end = if needed - read > 200 << 10 {
                    needed
                } else {
                    (read + piece).min(wire.len())
                };
                tape.raw(&wire[read..end]);
                read = end;
                piece = piece * 7 % 50_021 + 1;
            }
            for e in group {
                tape.event(&[], Some(e), false);
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

    #[test]
    fn a_stream_that_lost_a_record_stops_recording_and_what_it_kept_reads_back() {
        let dir = std::env::temp_dir().join(format!("sluice-lost-{}", std::process::id()));
        // A queue of eight records and a writer that stops taking them: the ninth is
        // dropped.
        let recorder = Arc::new(
            Recorder::with_queue(
                &dir,
                "http://up",
                QueueLimits {
                    records: 8,
                    bytes: usize::MAX,
                },
            )
            .unwrap(),
        );
        let mut tape = TapeStream::new(recorder.clone(), 5, Arc::default());
        let events: Vec<Event> = (0..300)
            .map(|i| Event {
                id: Some(i.to_string()),
                // Reads of half a run's bytes: runs are written every two events, in
                // between the reads.
                ..Event::message(format!("{i}:{}", "x".repeat(RUN_BYTES / 2)))
            })
            .collect();
        let mut resume = Some(recorder.stall());
        for (i, e) in events.iter().enumerate() {
            tape.raw(&encoded(std::slice::from_ref(e)));
            tape.event(&[], Some(e), false);
            // Then the writer catches up, so later records get through again: after a
            // lost one, they must not be read as the events that were lost.
            if i == 100 {
                drop(resume.take());
                recorder.sync();
            }
        }
        let dropped = recorder.dropped();
        assert!(dropped > 0, "the writer kept up with a queue of eight");
        tape.end("complete", None);
        drop(tape);
        recorder.sync();
        let records = format::read(recorder.path()).unwrap();
        let back = sent_back(&records);
        // What was kept is a prefix of the stream, each event whole and in its place;
        // nothing after the first loss.
        assert!(
            !back.is_empty() && back.len() < events.len(),
            "{}",
            back.len()
        );
        let ids = |events: &[Event]| events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&back), ids(&events[..back.len()]));
        assert!(back[..] == events[..back.len()], "an event's data differs");
        assert!(matches!(
            records.last(),
            Some(Record::End { stream: 5, .. })
        ));
        // The raw bytes on the tape are the start of the stream, without a hole.
        let data = std::fs::read(recorder.path().with_extension("data")).unwrap();
        let kept: Vec<u8> = std::fs::read_to_string(recorder.path())
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| match serde_json::from_str(l).unwrap() {
                Record::Raw {
                    data_at: (at, len), ..
                } => Some(data[at as usize..(at + len) as usize].to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        let wire = encoded(&events);
        assert!(
            !kept.is_empty() && wire.starts_with(&kept),
            "a hole in the raw bytes"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn secrets_in_the_query_string_never_reach_the_tape() {
        let tmp = tempfile::tempdir().unwrap();
        let recorder = Arc::new(Recorder::create(tmp.path(), "http://up").unwrap());
        let query = "a=1&API_KEY=s3cret&token=t0k&x=%20y+z&Key=k3y&keyless&sig=&\
                     access_token=at&Password=pw&signature=sg&code=c0de&secret=sh&\
                     auth=au&apikey=ak&api%5Fkey=enc&b=2&&c";
        let mut tape = TapeStream::new(recorder.clone(), 1, Arc::default());
        let meta = StreamMeta {
            route: None,
            headers: Default::default(),
            method: "POST".into(),
            path: "/mcp".into(),
            ..StreamMeta::default()
        };
        tape.request(
            &meta,
            Some(query),
            &HeaderMap::new(),
            &Bytes::new(),
            &[],
            None,
        );
        tape.end("complete", None);
        drop(tape);
        recorder.sync();
        let records = format::read(recorder.path()).unwrap();
        let kept = records
            .iter()
            .find_map(|r| match r {
                Record::Request { query, .. } => Some(query.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            kept.as_deref(),
            Some(
                "a=1&API_KEY=REDACTED&token=REDACTED&x=%20y+z&Key=REDACTED&keyless&sig=&\
                 access_token=REDACTED&Password=REDACTED&signature=REDACTED&code=REDACTED&\
                 secret=REDACTED&auth=REDACTED&apikey=REDACTED&api%5Fkey=REDACTED&b=2&&c"
            )
        );
        let lines = std::fs::read_to_string(recorder.path()).unwrap();
        for secret in [
            "s3cret", "t0k", "k3y", "=at", "pw", "sg", "c0de", "=sh", "=au", "=ak", "enc",
        ] {
            assert!(!lines.contains(secret), "{secret} is on the tape: {lines}");
        }
    }

    /// Sends `events` of `size` bytes each through one recorded stream, as the proxy
    /// does (bytes, then verdicts), and ends it.
    fn record_stream(recorder: &Arc<Recorder>, events: usize, size: usize) -> Vec<Event> {
        let mut tape = TapeStream::new(recorder.clone(), 1, Arc::default());
        let sent: Vec<Event> = (0..events)
            .map(|i| Event {
                id: Some(i.to_string()),
                ..Event::message(format!("{i}:{}", "x".repeat(size)))
            })
            .collect();
        for e in &sent {
            tape.raw(&encoded(std::slice::from_ref(e)));
            tape.event(&[], Some(e), false);
        }
        tape.end("complete", None);
        drop(tape);
        recorder.sync();
        sent
    }

    fn tape_bytes(recorder: &Recorder) -> u64 {
        let len = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().len();
        len(recorder.path().to_path_buf()) + len(recorder.path().with_extension("data"))
    }

    #[test]
    fn at_its_size_cap_a_tape_stops_and_counts_what_it_left_out() {
        let tmp = tempfile::tempdir().unwrap();
        let metrics = crate::metrics::Metrics::new();
        let cap = 1 << 20;
        let settings = crate::tape::TapeSettings {
            max_bytes: cap,
            ..Default::default()
        };
        let recorder = Arc::new(
            Recorder::with_settings(tmp.path(), "http://up", &settings, metrics.tape_over_cap())
                .unwrap(),
        );
        // 4 MiB of events for a tape of at most 1 MiB.
        let sent = record_stream(&recorder, 256, 16 << 10);
        assert!(recorder.capped(), "the cap was not reached");
        let lost = recorder.over_cap();
        assert!(lost > 0);
        assert_eq!(
            recorder.dropped(),
            0,
            "counted as dropped, not as over the cap"
        );
        assert!(
            metrics
                .encode()
                .contains(&format!("sluice_tape_records_over_cap_total {lost}")),
            "{}",
            metrics.encode()
        );
        // The files stay under the cap (but for the block padding of direct writes,
        // at most an eighth of the lines), and what is on the tape reads back: a
        // prefix of the stream.
        let lines = std::fs::metadata(recorder.path()).unwrap().len();
        assert!(
            tape_bytes(&recorder) <= cap + lines / 8,
            "{}",
            tape_bytes(&recorder)
        );
        let records = format::read(recorder.path()).unwrap();
        let back = sent_back(&records);
        assert!(
            !back.is_empty() && back.len() < sent.len(),
            "{}",
            back.len()
        );
        assert!(back[..] == sent[..back.len()]);
        // Recording stays stopped: later streams are counted, not written.
        let before = tape_bytes(&recorder);
        record_stream(&recorder, 4, 100);
        assert_eq!(tape_bytes(&recorder), before);
        assert!(recorder.over_cap() > lost);

        // Without a cap (0), the same stream is recorded whole: the cap is what stopped it.
        let uncapped = crate::tape::TapeSettings {
            max_bytes: 0,
            ..Default::default()
        };
        let other = tempfile::tempdir().unwrap();
        let recorder = Arc::new(
            Recorder::with_settings(other.path(), "http://up", &uncapped, Default::default())
                .unwrap(),
        );
        record_stream(&recorder, 256, 16 << 10);
        assert!(!recorder.capped());
        assert!(tape_bytes(&recorder) > 4 << 20);
    }
}
