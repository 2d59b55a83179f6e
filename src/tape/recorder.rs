//! `--record DIR`: writes a tape while the proxy runs, off the proxy's threads.
//!
//! Exchanges ([`TapeStream`](super::TapeStream)) hand their records to one writer
//! thread through a bounded queue: JSON lines, serialised with `serde_json` where they
//! happen (few: a run of passed events is one line), and the upstream's bytes as read,
//! which the writer appends to the data file before it writes the `raw` line that
//! points at them. Each file goes through a `BufWriter`. If the writer falls behind (a
//! slow disk), the queue fills and records are dropped and counted: recording never
//! slows or breaks a proxied stream.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;

use super::create;
use super::format::{FORMAT, Record, VERSION};

/// How many records (a line, or one read of upstream bytes) may wait for the writer
/// before new ones are dropped.
pub const QUEUE: usize = 16 * 1024;

/// How many bytes of memory the records waiting for the writer may hold (lines, and
/// buffers of upstream bytes) before new ones are dropped: what a stalled disk can make
/// the proxy hold.
pub const QUEUE_BYTES: usize = 256 << 20;

/// The default size cap of a tape (`--tape-max-bytes`): the bytes of its records and
/// of its data file together. Recording then stops; the proxy goes on.
pub const MAX_BYTES: u64 = 1 << 30;

/// Query parameters whose values never reach a tape by default
/// (`--tape-redact-query`; names compared without regard to ASCII case).
pub const REDACT_QUERY: &[&str] = &[
    "access_token",
    "api_key",
    "api-key",
    "apikey",
    "auth",
    "client_secret",
    "code",
    "id_token",
    "key",
    "password",
    "refresh_token",
    "secret",
    "sig",
    "signature",
    "token",
];

/// What a tape keeps: its size cap and the query parameters it redacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapeSettings {
    /// Bytes of records and data after which recording stops ([`MAX_BYTES`]); 0: no
    /// cap.
    pub max_bytes: u64,
    /// Query parameters whose values are written as `REDACTED` ([`REDACT_QUERY`]).
    pub redact_query: Vec<String>,
}

impl Default for TapeSettings {
    fn default() -> Self {
        Self {
            max_bytes: MAX_BYTES,
            redact_query: REDACT_QUERY.iter().map(|n| (*n).to_string()).collect(),
        }
    }
}

/// Bounds on what waits for the writer (tests make the writer fall behind with small
/// ones): beyond either, records are dropped and counted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueLimits {
    /// Records ([`QUEUE`]).
    pub records: usize,
    /// Bytes of records ([`QUEUE_BYTES`]).
    pub bytes: usize,
}

/// The longest `raw` line (four `u64` fields at their widest, and the newline): what
/// a read of upstream bytes adds to its bytes, on the queue and against the size cap.
const RAW_LINE: usize = 128;

enum Message {
    /// Whole lines, and how many records they count as (a `passed` run: its events).
    Lines { lines: Vec<u8>, records: u64 },
    /// Bytes of a stream's upstream body, for the data file and a `raw` line.
    Raw {
        stream: u64,
        t_ms: u64,
        bytes: Vec<u8>,
    },
    /// Answered once everything sent before it is written and flushed.
    Sync(mpsc::Sender<()>),
    /// The writer answers the first, then waits until the second is dropped: tests
    /// make it fall behind.
    #[cfg(test)]
    Stall(mpsc::Sender<()>, Receiver<()>),
}

impl Message {
    /// Bytes it adds to the tape at most, against the size cap.
    fn size(&self) -> usize {
        match self {
            Message::Lines { lines, .. } => lines.len(),
            Message::Raw { bytes, .. } => bytes.len() + RAW_LINE,
            _ => 0,
        }
    }

    /// Bytes of memory it holds, on the queue.
    fn footprint(&self) -> usize {
        match self {
            Message::Lines { lines, .. } => lines.capacity(),
            Message::Raw { bytes, .. } => bytes.capacity() + RAW_LINE,
            _ => 0,
        }
    }

    /// Records it counts as, written or dropped.
    fn records(&self) -> u64 {
        match self {
            Message::Lines { records, .. } => *records,
            Message::Raw { .. } => 1,
            _ => 0,
        }
    }
}

/// Buffers of reads the writer is done with, for the next reads: memory already
/// touched, and no allocation made on a proxy thread and freed on the writer's for
/// every read (a free on another thread takes the lock of the arena the allocator gave
/// the buffer from, which the proxy's threads allocate from meanwhile).
#[derive(Default)]
struct Pool(Mutex<(Vec<Vec<u8>>, usize)>);

/// At most this many bytes of buffers are kept ([`Pool`]).
const POOL_BYTES: usize = 16 << 20;

impl Pool {
    /// A copy of `bytes`, in a kept buffer if there is one.
    fn copy(&self, bytes: &[u8]) -> Vec<u8> {
        let kept = {
            let mut pool = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let kept = pool.0.pop();
            pool.1 -= kept.as_ref().map_or(0, Vec::capacity);
            kept
        };
        let mut out = kept.unwrap_or_default();
        out.clear();
        out.extend_from_slice(bytes);
        out
    }

    /// Keeps `bytes` for a later read, up to [`POOL_BYTES`].
    fn put(&self, bytes: Vec<u8>) {
        let mut pool = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.1 + bytes.capacity() <= POOL_BYTES {
            pool.1 += bytes.capacity();
            pool.0.push(bytes);
        }
    }
}

/// Writes one tape file.
pub struct Recorder {
    tx: SyncSender<Message>,
    /// Buffers for reads, shared with the writer.
    pool: Arc<Pool>,
    /// Bytes of memory the records in the queue hold ([`Message::footprint`]): added
    /// when one is queued, taken back by the writer when it takes it out.
    queued: Arc<AtomicUsize>,
    /// At most this many `queued` bytes ([`QUEUE_BYTES`]).
    queue_bytes: usize,
    /// When recording started: `t_ms` counts from here.
    started: Instant,
    path: PathBuf,
    dropped: AtomicU64,
    written: Arc<AtomicU64>,
    /// [`TapeSettings::max_bytes`], 0 for none.
    max_bytes: u64,
    /// Bytes of records accepted so far ([`Message::size`]): an upper bound of the
    /// tape's size on disk, lines and data together.
    accepted: AtomicU64,
    /// The cap was reached: nothing more is recorded.
    capped: AtomicBool,
    /// Records not recorded because of the cap (`sluice_tape_records_over_cap`).
    over_cap: Counter,
    /// [`TapeSettings::redact_query`].
    redact_query: Vec<String>,
}

/// Why recording cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The directory or file could not be created.
    #[error("cannot record to {path}: {source}")]
    Create {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl Recorder {
    /// Creates `DIR/sluice-<unix seconds>-<pid>.jsonl` and its data file (`.data`;
    /// and `DIR` if needed), writes the header and starts the writer thread, with
    /// the default [`TapeSettings`].
    pub fn create(dir: &Path, upstream: &str) -> Result<Self, RecordError> {
        Self::with_settings(dir, upstream, &TapeSettings::default(), Counter::default())
    }

    /// [`Recorder::create`] with `settings`; records not recorded because of the size
    /// cap are counted in `over_cap` (the metric's handle).
    pub fn with_settings(
        dir: &Path,
        upstream: &str,
        settings: &TapeSettings,
        over_cap: Counter,
    ) -> Result<Self, RecordError> {
        let limits = QueueLimits {
            records: QUEUE,
            bytes: QUEUE_BYTES,
        };
        Self::open(dir, upstream, limits, settings, over_cap)
    }

    /// [`Recorder::create`] with a queue of at most `limits` (tests make the writer
    /// fall behind with small ones).
    #[cfg(test)]
    pub(crate) fn with_queue(
        dir: &Path,
        upstream: &str,
        limits: QueueLimits,
    ) -> Result<Self, RecordError> {
        let settings = TapeSettings::default();
        Self::open(dir, upstream, limits, &settings, Counter::default())
    }

    fn open(
        dir: &Path,
        upstream: &str,
        limits: QueueLimits,
        settings: &TapeSettings,
        over_cap: Counter,
    ) -> Result<Self, RecordError> {
        let started_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let failed = |path: &Path| {
            let path = path.display().to_string();
            move |source| RecordError::Create { path, source }
        };
        create::private_dir(dir).map_err(failed(dir))?;
        let (path, file, data_path, data_file) = create_files(dir, started_unix)?;
        let data_name = data_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (tx, rx) = mpsc::sync_channel(limits.records);
        let queued = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let pool = Arc::new(Pool::default());
        let writer = Writer {
            pool: pool.clone(),
            lines: BufWriter::with_capacity(LINES_BUFFER, file),
            data: BufWriter::with_capacity(DATA_BUFFER, data_file),
            data_end: 0,
            raw_line: Vec::new(),
            pending: 0,
            written: written.clone(),
        };
        let (name, taken) = (path.display().to_string(), queued.clone());
        std::thread::Builder::new()
            .name("sluice-recorder".into())
            .spawn(move || writer.run(&rx, &taken, &name))
            .map_err(failed(&path))?;
        let recorder = Self {
            tx,
            pool,
            queued,
            queue_bytes: limits.bytes,
            started: Instant::now(),
            path,
            dropped: AtomicU64::new(0),
            written,
            max_bytes: settings.max_bytes,
            accepted: AtomicU64::new(0),
            capped: AtomicBool::new(false),
            over_cap,
            redact_query: settings
                .redact_query
                .iter()
                .filter(|n| !n.is_empty())
                .map(|n| n.to_ascii_lowercase())
                .collect(),
        };
        recorder.record(Record::Header {
            format: FORMAT.into(),
            version: VERSION,
            upstream: upstream.to_string(),
            started_unix,
            data_file: Some(data_name),
        });
        tracing::info!(tape = %recorder.path.display(), "recording traffic");
        Ok(recorder)
    }

    /// The tape file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Milliseconds since recording started, for a record's `t_ms`.
    pub fn t_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Queues one record; never blocks (see [`Recorder::write_record`]).
    pub fn record(&self, record: Record) {
        self.write_record(&record);
    }

    /// Queues one record, serialised now; never blocks. A `passed` run counts as its
    /// events. `false`: dropped (and counted: [`Recorder::send`]).
    pub(crate) fn write_record(&self, record: &Record) -> bool {
        let records = match record {
            Record::Passed { count, .. } => *count,
            _ => 1,
        };
        let mut lines = serde_json::to_vec(record).expect("a record always serialises");
        lines.push(b'\n');
        self.send(Message::Lines { lines, records })
    }

    /// Queues bytes of `stream`'s upstream body as read (copied), for the data file
    /// and a `raw` record; never blocks. `false`: dropped (and counted).
    pub(crate) fn write_raw(&self, stream: u64, t_ms: u64, bytes: &[u8]) -> bool {
        self.send(Message::Raw {
            stream,
            t_ms,
            bytes: self.pool.copy(bytes),
        })
    }

    /// Queues a message for the writer; never blocks. Past the size cap, or with the
    /// queue full (in records or in bytes: [`QueueLimits`]), it is dropped and its
    /// records counted (`false`).
    fn send(&self, message: Message) -> bool {
        let (records, size, footprint) = (message.records(), message.size(), message.footprint());
        if !self.within_cap(size as u64) {
            self.count_dropped(records);
            return false;
        }
        let refused = |counted: bool| {
            self.queued.fetch_sub(footprint, Ordering::Relaxed);
            self.accepted.fetch_sub(size as u64, Ordering::Relaxed);
            if counted {
                self.count_dropped(records);
            } else {
                // The writer has stopped (a write error, logged there).
                self.dropped.fetch_add(records, Ordering::Relaxed);
            }
            false
        };
        if self.queued.fetch_add(footprint, Ordering::Relaxed) + footprint > self.queue_bytes {
            return refused(true);
        }
        match self.tx.try_send(message) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => refused(true),
            Err(TrySendError::Disconnected(_)) => refused(false),
        }
    }

    /// Counts `bytes` more against the size cap: `false` once the tape would pass it,
    /// from then on for good, with one warning. The count is an upper bound of what
    /// reaches the disk ([`Message::size`]).
    fn within_cap(&self, bytes: u64) -> bool {
        if self.max_bytes == 0 {
            return true;
        }
        if self.capped.load(Ordering::Relaxed) {
            return false;
        }
        if self.accepted.fetch_add(bytes, Ordering::Relaxed) + bytes <= self.max_bytes {
            return true;
        }
        self.accepted.fetch_sub(bytes, Ordering::Relaxed);
        if !self.capped.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                tape = %self.path.display(),
                max_bytes = self.max_bytes,
                "tape reached its size cap (--tape-max-bytes): recording stopped, proxying \
                 goes on; records not recorded are counted (sluice_tape_records_over_cap)"
            );
        }
        false
    }

    /// Whether the size cap was reached (recording has stopped).
    pub fn capped(&self) -> bool {
        self.capped.load(Ordering::Relaxed)
    }

    /// Records not recorded because the tape reached its size cap.
    pub fn over_cap(&self) -> u64 {
        self.over_cap.get()
    }

    /// Query parameters whose values a tape redacts (lower case).
    pub(crate) fn redact_query(&self) -> &[String] {
        &self.redact_query
    }

    /// Bytes of records waiting in the queue for the writer (at [`QUEUE_BYTES`] new
    /// ones are dropped).
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Counts records lost: over the size cap once it is reached, else dropped (the
    /// writer fell behind), warning on the first.
    pub(crate) fn count_dropped(&self, records: u64) {
        if self.capped.load(Ordering::Relaxed) {
            self.over_cap.inc_by(records);
            return;
        }
        if self.dropped.fetch_add(records, Ordering::Relaxed) == 0 {
            tracing::warn!(tape = %self.path.display(), "recorder falling behind: dropping records (counted)");
        }
    }

    /// Records dropped because the writer fell behind (or failed).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records written to the files so far (counted when the writer flushes).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Waits until everything queued so far is on disk (shutdown, tests).
    pub fn sync(&self) {
        let (done, wait) = mpsc::channel();
        if self.tx.send(Message::Sync(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// Stops the writer until the returned sender is dropped (it has taken everything
    /// queued before): tests make it fall behind.
    #[cfg(test)]
    pub(crate) fn stall(&self) -> mpsc::Sender<()> {
        let (stalled, wait) = mpsc::channel();
        let (resume, until) = mpsc::channel();
        if self.tx.send(Message::Stall(stalled, until)).is_ok() {
            let _ = wait.recv();
        }
        resume
    }
}

/// Creates the tape and its data file, private and exclusively (`tape::create`):
/// `sluice-<unix seconds>-<pid>`, or with `-1`, `-2`, ... after it when something is
/// at that name already (another recorder of this process in the same second, or a
/// name planted in the directory, which is left alone and named in a warning).
fn create_files(
    dir: &Path,
    started_unix: u64,
) -> Result<(PathBuf, std::fs::File, PathBuf, std::fs::File), RecordError> {
    let failed = |path: &Path, source| RecordError::Create {
        path: path.display().to_string(),
        source,
    };
    let taken = |path: &Path| {
        tracing::warn!(path = %path.display(), "something is at this tape's name already: left alone, using another name");
    };
    for attempt in 0..100u32 {
        let mut stem = format!("sluice-{started_unix}-{}", std::process::id());
        if attempt > 0 {
            stem = format!("{stem}-{attempt}");
        }
        let path = dir.join(format!("{stem}.jsonl"));
        let data_path = dir.join(format!("{stem}.data"));
        let file = match create::private_file(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                taken(&path);
                continue;
            }
            Err(e) => return Err(failed(&path, e)),
        };
        match create::private_file(&data_path) {
            Ok(data) => return Ok((path, file, data_path, data)),
            Err(e) => {
                drop(file);
                let _ = std::fs::remove_file(&path);
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(failed(&data_path, e));
                }
                taken(&data_path);
            }
        }
    }
    Err(failed(
        dir,
        std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "a hundred tape names taken in one second",
        ),
    ))
}

/// How often the writer looks at the queue while records come. Polling, not blocking
/// on the queue: a blocked receiver makes every `try_send` wake it (a futex call and a
/// context switch per record); a writer that drains on a timer costs the proxy only the
/// queue push.
const DRAIN_EVERY: Duration = Duration::from_millis(2);

/// After this many polls found nothing, the writer flushes and blocks on the queue
/// (one wake-up for the next record) rather than wake every [`DRAIN_EVERY`] for
/// nothing.
const IDLE_POLLS: u32 = 50;

/// Buffered records reach the files at least this often, so a tape can be followed
/// while it grows.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The data file's buffer: small reads (a slow stream's) are gathered into writes of
/// this size; a read at least this large goes to the file straight from its own
/// buffer (`BufWriter` writes such a slice directly), not copied once more on the way.
const DATA_BUFFER: usize = 32 << 10;
/// The lines' buffer.
const LINES_BUFFER: usize = 64 << 10;

/// The writer thread's side of the files.
struct Writer {
    /// Where the buffers of reads written go back to.
    pool: Arc<Pool>,
    lines: BufWriter<File>,
    data: BufWriter<File>,
    /// The data file's length, buffered bytes included: where the next read goes.
    data_end: u64,
    /// A `raw` record's line, reused.
    raw_line: Vec<u8>,
    /// Records in the buffers, counted into `written` when they are flushed.
    pending: u64,
    written: Arc<AtomicU64>,
}

impl Writer {
    /// Takes records from `rx` until every sender is gone (then flushes and returns),
    /// or until a write fails, which stops recording for good (the proxy goes on; what
    /// comes later is counted as dropped).
    fn run(mut self, rx: &Receiver<Message>, queued: &AtomicUsize, name: &str) {
        if let Err(e) = self.drain(rx, queued) {
            tracing::error!(tape = name, error = %e, "cannot write the tape; recording stopped");
        }
    }

    fn drain(&mut self, rx: &Receiver<Message>, queued: &AtomicUsize) -> io::Result<()> {
        let mut flushed = Instant::now();
        let mut idle = 0;
        loop {
            let mut took = false;
            loop {
                match rx.try_recv() {
                    Ok(message) => {
                        queued.fetch_sub(message.footprint(), Ordering::Relaxed);
                        self.take(message)?;
                        took = true;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return self.flush(),
                }
            }
            if self.pending > 0 && flushed.elapsed() >= FLUSH_EVERY {
                self.flush()?;
                flushed = Instant::now();
            }
            idle = if took { 0 } else { idle + 1 };
            if idle < IDLE_POLLS {
                std::thread::sleep(DRAIN_EVERY);
                continue;
            }
            self.flush()?;
            let Ok(message) = rx.recv() else {
                return Ok(());
            };
            queued.fetch_sub(message.footprint(), Ordering::Relaxed);
            self.take(message)?;
            (flushed, idle) = (Instant::now(), 0);
        }
    }

    fn take(&mut self, message: Message) -> io::Result<()> {
        match message {
            Message::Lines { lines, records } => {
                self.put_lines(&lines)?;
                self.pending += records;
            }
            Message::Raw {
                stream,
                t_ms,
                bytes,
            } => {
                self.data.write_all(&bytes)?;
                let len = bytes.len() as u64;
                let record = Record::Raw {
                    stream,
                    t_ms,
                    data_at: (self.data_end, len),
                };
                self.data_end += len;
                let mut line = std::mem::take(&mut self.raw_line);
                line.clear();
                serde_json::to_writer(&mut line, &record).expect("a record always serialises");
                line.push(b'\n');
                self.put_lines(&line)?;
                self.raw_line = line;
                self.pending += 1;
                self.pool.put(bytes);
            }
            Message::Sync(done) => {
                self.flush()?;
                let _ = done.send(());
            }
            #[cfg(test)]
            Message::Stall(stalled, until) => {
                let _ = stalled.send(());
                let _ = until.recv();
            }
        }
        Ok(())
    }

    /// Appends lines; when the lines' buffer is about to go to the file, the data
    /// buffered so far goes first, so a line on disk never refers to data that is not.
    fn put_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        if self.lines.buffer().len() + lines.len() > self.lines.capacity() {
            self.data.flush()?;
        }
        self.lines.write_all(lines)
    }

    /// Everything buffered to the files, the data first.
    fn flush(&mut self) -> io::Result<()> {
        self.data.flush()?;
        self.lines.flush()?;
        self.written.fetch_add(self.pending, Ordering::Relaxed);
        self.pending = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{Step, StepVerdict};
    use crate::tape::{TapeStep, format};

    #[test]
    fn a_tape_starts_with_its_header_and_keeps_record_order() {
        let dir = std::env::temp_dir().join(format!("sluice-rec-{}", std::process::id()));
        let recorder = Recorder::create(&dir, "http://up").unwrap();
        for stream in 1..=3 {
            recorder.record(Record::End {
                stream,
                t_ms: recorder.t_ms(),
                outcome: "complete".into(),
                error: None,
            });
        }
        recorder.sync();
        assert_eq!(recorder.written(), 4);
        let records = format::read(recorder.path()).unwrap();
        assert!(matches!(&records[0], Record::Header { upstream, .. } if upstream == "http://up"));
        let streams: Vec<_> = records.iter().filter_map(Record::stream).collect();
        assert_eq!(streams, vec![1, 2, 3]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn records_beyond_the_queue_bytes_are_dropped_and_counted_and_the_writer_gives_bytes_back() {
        let dir = std::env::temp_dir().join(format!("sluice-qbytes-{}", std::process::id()));
        let limits = QueueLimits {
            records: QUEUE,
            bytes: 64 << 10,
        };
        let recorder = Recorder::with_queue(&dir, "http://up", limits).unwrap();
        let end = |stream| Record::End {
            stream,
            t_ms: recorder.t_ms(),
            outcome: "complete".into(),
            error: None,
        };
        recorder.sync();
        assert_eq!(
            recorder.queued_bytes(),
            0,
            "the writer took the header's bytes out"
        );

        // A read counts for its bytes and its line: more than the queue may hold even
        // when it is empty.
        assert!(
            !recorder.write_raw(1, 0, &[b'x'; 64 << 10]),
            "a read larger than the queue was queued"
        );
        assert_eq!(recorder.dropped(), 1);
        assert_eq!(
            recorder.queued_bytes(),
            0,
            "a dropped record's bytes stay counted"
        );

        // A small one goes through, and its bytes are given back once it is taken.
        assert!(recorder.write_record(&end(2)));
        recorder.sync();
        assert_eq!(recorder.queued_bytes(), 0);
        assert_eq!(recorder.dropped(), 1);
        let records = format::read(recorder.path()).unwrap();
        let streams: Vec<_> = records.iter().filter_map(Record::stream).collect();
        assert_eq!(
            streams,
            vec![2],
            "only the record that fitted is on the tape"
        );
        let data = std::fs::metadata(recorder.path().with_extension("data")).unwrap();
        assert_eq!(data.len(), 0, "the dropped read's bytes are on the tape");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn step(verdict: StepVerdict) -> Step {
        Step {
            plugin: 0,
            verdict,
            elapsed: std::time::Duration::from_micros(12),
            fuel: 3456,
            output: None,
        }
    }

    /// The records of a tape's lines as written (`raw` and `passed` records as they
    /// are), the header left out.
    fn lines_of(recorder: &Recorder) -> Vec<Record> {
        std::fs::read_to_string(recorder.path())
            .unwrap()
            .lines()
            .skip(1)
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn raw_bytes_and_passed_runs_read_back_as_written() {
        let tmp = tempfile::tempdir().unwrap();
        let recorder = Recorder::create(tmp.path(), "http://up").unwrap();
        let reads: [&[u8]; 3] = [b"data: {\"a\":1}\n\n", b"", b"event: x\ndata: \xff\"\\\n\n"];
        for (i, bytes) in reads.iter().enumerate() {
            assert!(recorder.write_raw(4, 10 + i as u64, bytes));
        }
        let steps = [step(StepVerdict::Pass), step(StepVerdict::Pass)];
        let passed = Record::Passed {
            stream: 4,
            t_ms: 99,
            first: 7,
            count: 30,
            steps: steps.iter().map(|s| TapeStep::new(s, "re\"dact")).collect(),
        };
        assert!(recorder.write_record(&passed));
        recorder.sync();
        assert_eq!(recorder.written(), 1 + 3 + 30, "a run counts its events");
        let file = std::fs::read(recorder.path().with_extension("data")).unwrap();
        let records = lines_of(&recorder);
        for (i, bytes) in reads.iter().enumerate() {
            let Record::Raw {
                stream: 4,
                t_ms,
                data_at: (offset, len),
            } = records[i]
            else {
                panic!("not a raw record: {records:?}");
            };
            assert_eq!(t_ms, 10 + i as u64);
            assert_eq!(&file[offset as usize..(offset + len) as usize], *bytes);
        }
        assert_eq!(records[3], passed);
    }

    #[test]
    fn lines_keep_their_order() {
        let tmp = tempfile::tempdir().unwrap();
        let recorder = Recorder::create(tmp.path(), "http://up").unwrap();
        let end = |stream| Record::End {
            stream,
            t_ms: 5,
            outcome: "complete".into(),
            error: None,
        };
        recorder.record(end(1));
        recorder.write_raw(2, 0, b"data: x\n\n");
        recorder.record(Record::Passed {
            stream: 3,
            t_ms: 0,
            first: 0,
            count: 1,
            steps: Vec::new(),
        });
        recorder.record(end(4));
        recorder.sync();
        assert_eq!(recorder.written(), 1 + 4);
        let streams: Vec<u64> = lines_of(&recorder)
            .iter()
            .map(|r| r.stream().unwrap())
            .collect();
        assert_eq!(streams, vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_write_error_stops_the_writer_and_later_records_find_it_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("read-only");
        std::fs::write(&path, b"").unwrap();
        // Handles the writer cannot write through.
        let handle = || BufWriter::with_capacity(16, File::open(&path).unwrap());
        let writer = Writer {
            pool: Arc::default(),
            lines: handle(),
            data: handle(),
            data_end: 0,
            raw_line: Vec::new(),
            pending: 0,
            written: Arc::default(),
        };
        let (tx, rx) = mpsc::sync_channel(4);
        let raw = || Message::Raw {
            stream: 1,
            t_ms: 0,
            bytes: b"data: x\n\n".to_vec(),
        };
        tx.send(raw()).unwrap();
        let (done, wait) = mpsc::channel();
        tx.send(Message::Sync(done)).unwrap();
        let queued = AtomicUsize::new(raw().footprint());
        let writer = std::thread::spawn(move || writer.run(&rx, &queued, "read-only"));
        assert!(
            wait.recv().is_err(),
            "a sync was answered after a write error"
        );
        writer.join().unwrap();
        // The recorder counts what it cannot queue any more as dropped.
        assert!(matches!(
            tx.try_send(raw()),
            Err(TrySendError::Disconnected(_))
        ));
    }

    #[test]
    fn reads_are_copied_into_kept_buffers_up_to_the_pools_bytes() {
        let pool = Pool::default();
        let full = pool.copy(&vec![7u8; POOL_BYTES]);
        let kept = full.as_ptr();
        pool.put(full);
        let again = pool.copy(b"abc");
        assert_eq!(again, b"abc");
        assert_eq!(again.as_ptr(), kept, "the kept buffer was not reused");
        pool.put(again);
        pool.put(vec![0; 1]);
        let held = pool.0.lock().unwrap();
        assert_eq!(
            (held.0.len(), held.1),
            (1, POOL_BYTES),
            "more than the pool's bytes kept"
        );
    }

    /// The mode bits of `path` itself (not of a symlink's target).
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn tapes_are_private_and_a_planted_symlink_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tapes").join("run");
        let recorder = Recorder::create(&dir, "http://up").unwrap();
        recorder.sync();
        assert_eq!(mode_of(&dir), 0o700, "the tape directory");
        assert_eq!(
            mode_of(&tmp.path().join("tapes")),
            0o700,
            "a parent it made"
        );
        assert_eq!(mode_of(recorder.path()), 0o600, "the tape");
        assert_eq!(
            mode_of(&recorder.path().with_extension("data")),
            0o600,
            "the data file"
        );
        drop(recorder);

        // The names are predictable (the second and the pid): whoever can write to the
        // directory plants symlinks under the next names, to a file the user owns.
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for second in now..now + 5 {
            for ext in ["jsonl", "data"] {
                let name = format!("sluice-{second}-{}.{ext}", std::process::id());
                let _ = std::fs::remove_file(dir.join(&name));
                std::os::unix::fs::symlink(&victim, dir.join(name)).unwrap();
            }
        }
        let created = Recorder::create(&dir, "http://up");
        if let Ok(recorder) = &created {
            recorder.sync();
            let meta = std::fs::symlink_metadata(recorder.path()).unwrap();
            assert!(meta.file_type().is_file(), "the tape is a symlink");
            assert_eq!(mode_of(recorder.path()), 0o600);
        }
        assert_eq!(
            std::fs::read(&victim).unwrap(),
            b"precious",
            "a planted symlink was followed"
        );
        drop(created);
    }
}

/// Probes of recording's cost, run by hand in release (`-- --ignored --nocapture`), on
/// the recording bench's events (256 B of JSON data, one step; another size with
/// `SLUICE_BENCH_EVENT_BYTES`) at about 256 MB a second: the writer thread's CPU time
/// per event, and the proxy side's time.
#[cfg(test)]
mod probes {
    use super::*;
    use crate::plugin::{Step, StepVerdict};
    use crate::sse::Event;

    fn recorder_cpu_ns() -> u64 {
        let mut ns = 0;
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == "sluice-recorder" {
                let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap();
                ns += stat
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
            }
        }
        ns
    }

    /// The size of the probes' events: 256 B, or `SLUICE_BENCH_EVENT_BYTES` (as for the
    /// criterion bench), at least 128.
    fn event_bytes() -> usize {
        std::env::var("SLUICE_BENCH_EVENT_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256_usize)
            .max(128)
    }

    /// Microseconds per batch of 64 events: a million 256 B events a second, and the
    /// same bytes a second at other sizes (16 KiB: 64 µs an event), which the writer
    /// keeps up with.
    fn batch_us() -> u128 {
        64 * (event_bytes() as u128).div_ceil(256)
    }

    /// The recording bench's event data (JSON-RPC of [`event_bytes`]) and one
    /// pass-through step.
    fn bench_event() -> (String, Step) {
        let data = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"level":"info","data":"{}"}}}}"#,
            "x".repeat(event_bytes() - 78)
        );
        let step = Step {
            plugin: 0,
            verdict: StepVerdict::Pass,
            elapsed: std::time::Duration::from_nanos(300),
            fuel: 1055,
            output: None,
        };
        (data, step)
    }

    /// 64 of the bench's events as an upstream sends them (one read's worth).
    fn bench_batch(data: &str) -> bytes::Bytes {
        let mut out = bytes::BytesMut::new();
        for i in 0..64 {
            let event = Event {
                id: Some(i.to_string()),
                event: Some("message".into()),
                ..Event::message(data)
            };
            crate::sse::encode_event(&event, &mut out);
        }
        out.freeze()
    }

    /// The writer thread's own cost, apart from the proxy: `cargo test --release --lib
    /// writer_cpu_per_event -- --ignored --nocapture`. Writes about 600 MB to the
    /// temporary directory.
    #[test]
    #[ignore = "a measurement: run on its own, in release"]
    fn writer_cpu_per_event() {
        let dir = std::env::temp_dir().join(format!("sluice-wcost-{}", std::process::id()));
        let recorder = Recorder::create(&dir, "http://up").unwrap();
        let (data, step) = bench_event();
        let events = 2_000_000 / (event_bytes() as u64).div_ceil(256) / 64 * 64;
        let recorder = Arc::new(recorder);
        let mut tape =
            crate::tape::TapeStream::new(recorder.clone(), 1, ["passthrough".into()].into());
        let batch = bench_batch(&data);
        let sent = Event::message(data.clone());
        let per_batch = batch_us();
        let before = recorder_cpu_ns();
        let t = Instant::now();
        for round in 0..events / 64 {
            tape.raw(&batch);
            for _ in 0..64 {
                tape.event(std::slice::from_ref(&step), Some(&sent), false);
            }
            while t.elapsed().as_micros() < u128::from(round) * per_batch {
                std::hint::spin_loop();
            }
        }
        drop(tape);
        recorder.sync();
        let cpu = recorder_cpu_ns() - before;
        eprintln!(
            "writer: {:.3} us/event over {events} events ({} dropped), {:.2} s",
            cpu as f64 / 1e3 / events as f64,
            recorder.dropped(),
            t.elapsed().as_secs_f64()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The proxy thread's own cost of recording an event (what `TapeStream` does per
    /// event, the writer apart): `cargo test --release --lib proxy_side_cost --
    /// --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement: run on its own, in release"]
    fn proxy_side_cost() {
        let dir = std::env::temp_dir().join(format!("sluice-pcost-{}", std::process::id()));
        let recorder = Arc::new(Recorder::create(&dir, "http://up").unwrap());
        let (data, step) = bench_event();
        let batch = bench_batch(&data);
        let sent: Vec<Event> = (0..64).map(|_| Event::message(data.clone())).collect();
        let mut tape =
            crate::tape::TapeStream::new(recorder.clone(), 1, ["passthrough".into()].into());
        // Batches of 64 at `batch_us` (the writer keeps up, as in the proxy); only the
        // recording is timed.
        let rounds = (20_000 / event_bytes().div_ceil(256) as u32).max(100);
        let per_batch = batch_us();
        let t = Instant::now();
        let mut busy = std::time::Duration::ZERO;
        for round in 0..rounds {
            let started = Instant::now();
            tape.raw(&batch);
            for e in &sent {
                tape.event(std::slice::from_ref(&step), Some(e), false);
            }
            busy += started.elapsed();
            while t.elapsed().as_micros() < u128::from(round) * per_batch {
                std::hint::spin_loop();
            }
        }
        let per = busy.as_nanos() as f64 / f64::from(rounds) / sent.len() as f64;
        drop(tape);
        recorder.sync();
        eprintln!(
            "proxy side: {per:.1} ns/event ({} dropped)",
            recorder.dropped()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
