//! `--record DIR`: writes a tape while the proxy runs, off the hot path.
//!
//! Each exchange writes its records as JSON lines on the proxy's own thread into a
//! [`Chunk`] of its own and hands it over when it is full or old; one thread drains the
//! bounded queue of chunks every couple of milliseconds and writes them in batches of
//! up to 4 MiB (full chunks as they are, without a copy: see `tape::file`). If that
//! thread falls behind (a slow disk), records are dropped and counted: recording never
//! slows or breaks a proxied stream.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;

use super::chunk::{Chunk, DataParts, Pool};
use super::create;
use super::data_buf::{Arena, REGION};
use super::file::{BLOCK, DataFile, TapeFile};
use super::format::{FORMAT, Record, VERSION};

/// Buffers for event data made when recording starts (whole regions of the arena):
/// what 100 streams of 16 KiB events at full speed hold in flight here (with 16 MiB,
/// such a start took a heap buffer for every slot it lacked while more were made, and
/// the proxy's memory reached 200 MiB instead of 107-122). More is made as needed, up
/// to 64 MiB, and kept.
pub const PREMADE: usize = 32 << 20;

/// How many chunks (each up to `tape` flush size, typically many records) may wait for
/// the writer before new ones are dropped.
pub const QUEUE: usize = 4 * 1024;

/// How many bytes of chunks (their buffers, full or not: [`Chunk::footprint`]) may wait
/// for the writer before new ones are dropped: what a stalled disk can make the proxy
/// hold. [`QUEUE`] alone would allow 4 096 full chunks, about 670 MiB; at a gigabyte
/// a second of event data this is a quarter of a second of writes.
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
/// ones): beyond either, chunks are dropped and counted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueLimits {
    /// Chunks ([`QUEUE`]).
    pub chunks: usize,
    /// Bytes of chunks' buffers ([`QUEUE_BYTES`]).
    pub bytes: usize,
}

enum Message {
    /// Records of one exchange.
    Chunk(Chunk),
    /// Answered once everything sent before it is written and flushed.
    Sync(mpsc::Sender<()>),
}

/// Writes one tape file.
pub struct Recorder {
    tx: SyncSender<Message>,
    /// Bytes of the chunks in the queue ([`Chunk::footprint`]): added when one is
    /// queued, taken back by the writer when it takes it out.
    queued: Arc<AtomicUsize>,
    /// At most this many `queued` bytes ([`QUEUE_BYTES`]).
    queue_bytes: usize,
    /// Milliseconds since recording started, kept by the writer thread (every
    /// `DRAIN_EVERY`): a record's `t_ms` is an atomic load, not a clock read.
    clock: std::sync::Arc<AtomicU64>,
    path: PathBuf,
    dropped: AtomicU64,
    written: std::sync::Arc<AtomicU64>,
    /// Chunk buffers the writer is done with (lines), and where raw bytes wait.
    pool: Arc<Pool>,
    data_arena: Arc<Arena>,
    /// The end of what is reserved in the data file (`reserve_data`).
    data_end: AtomicU64,
    /// Whether data may be written around the page cache (cleared by the writer when
    /// the file system refuses it).
    data_direct: Arc<AtomicBool>,
    /// [`TapeSettings::max_bytes`], 0 for none.
    max_bytes: u64,
    /// Bytes of lines of the chunks accepted so far (their data: `data_end`).
    lines_bytes: AtomicU64,
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
        path: String,
        source: std::io::Error,
    },
}

impl Recorder {
    /// Creates `DIR/sluice-<unix seconds>-<pid>.jsonl` and its data file (`.data`;
    /// and `DIR` if needed), writes the header and starts the writer thread, with
    /// the default [`TapeSettings`].
    /// The first [`PREMADE`] bytes of the buffers for event data are made here, before
    /// any traffic (`Arena::premake`).
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
            chunks: QUEUE,
            bytes: QUEUE_BYTES,
        };
        Self::open(dir, upstream, limits, PREMADE, settings, over_cap)
    }

    /// [`Recorder::create`] with a queue of at most `limits` (tests make the writer
    /// fall behind with small ones) and `premade` bytes of buffers.
    #[cfg(test)]
    pub(crate) fn with_queue(
        dir: &Path,
        upstream: &str,
        limits: QueueLimits,
        premade: usize,
    ) -> Result<Self, RecordError> {
        let settings = TapeSettings::default();
        Self::open(
            dir,
            upstream,
            limits,
            premade,
            &settings,
            Counter::default(),
        )
    }

    fn open(
        dir: &Path,
        upstream: &str,
        limits: QueueLimits,
        premade: usize,
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
        let (tx, rx) = mpsc::sync_channel(limits.chunks);
        let queued = Arc::new(AtomicUsize::new(0));
        let written = std::sync::Arc::new(AtomicU64::new(0));
        let counter = written.clone();
        let name = path.display().to_string();
        let clock = std::sync::Arc::new(AtomicU64::new(0));
        let ticking = (clock.clone(), Instant::now());
        let pool = Arc::new(Pool::default());
        let data_arena = Arena::new(DATA_SLOT);
        // Before the writer starts: it grows the arena itself once it has a region.
        data_arena.premake(premade.div_ceil(REGION));
        let file = TapeFile::new(file, &path, WRITE_BYTES + (64 << 10), pool.clone());
        let data = DataFile::new(data_file, &data_path);
        let direct = file.is_direct();
        let data_direct = Arc::new(AtomicBool::new(data.is_direct()));
        let files = (file, data, data_direct.clone());
        let arena = data_arena.clone();
        let taken = queued.clone();
        std::thread::Builder::new()
            .name("sluice-recorder".into())
            .spawn(move || write_loop(files, &arena, (rx, &taken), &counter, &name, &ticking))
            .map_err(failed(&path))?;
        let recorder = Self {
            tx,
            queued,
            queue_bytes: limits.bytes,
            clock,
            path,
            dropped: AtomicU64::new(0),
            written,
            pool,
            data_arena,
            data_end: AtomicU64::new(0),
            data_direct,
            max_bytes: settings.max_bytes,
            lines_bytes: AtomicU64::new(0),
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
        tracing::info!(tape = %recorder.path.display(), direct, "recording traffic");
        Ok(recorder)
    }

    /// The tape file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Milliseconds since recording started, for a record's `t_ms` (to within the
    /// writer's tick, 2 ms).
    pub fn t_ms(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    /// Where a chunk's buffers come from (`Chunk::fill_from`): lines, event data.
    pub(crate) fn pools(&self) -> (&Pool, &Arc<Arena>) {
        (&self.pool, &self.data_arena)
    }

    /// Whether a chunk's data may go around the page cache (then it must be reserved
    /// `direct` and padded: `Chunk::seal`).
    pub(crate) fn data_direct(&self) -> bool {
        self.data_direct.load(Ordering::Relaxed)
    }

    /// Reserves `len` bytes of the data file for one chunk's event data and returns
    /// where they start. `direct`: block-aligned and rounded up to whole blocks (the
    /// gaps are zeros nothing refers to). Chunks reserve in the order they are handed
    /// over and the writer writes each at its place, whatever order they arrive in.
    pub(crate) fn reserve_data(&self, len: usize, direct: bool) -> u64 {
        let (len, align) = if direct {
            (len.next_multiple_of(BLOCK) as u64, BLOCK as u64)
        } else {
            (len as u64, 1)
        };
        let mut at = 0;
        let _ = self
            .data_end
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |end| {
                at = end.next_multiple_of(align);
                Some(at + len)
            });
        at
    }

    /// Queues one record; never blocks (see [`Recorder::write_chunk`]).
    pub fn record(&self, record: Record) {
        let mut chunk = Chunk::default();
        chunk.record(&record);
        self.write_chunk(chunk);
    }

    /// Queues a chunk of records; never blocks. A full queue (in chunks or in bytes:
    /// [`QueueLimits`]) drops them and counts them (`false`: dropped).
    pub(crate) fn write_chunk(&self, mut chunk: Chunk) -> bool {
        chunk.fence();
        let records = chunk.records();
        let lines = chunk.len() as u64;
        if !self.within_cap(lines) {
            self.count_dropped(records);
            return false;
        }
        let size = chunk.footprint();
        let refused = |reason_dropped: bool| {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            self.lines_bytes.fetch_sub(lines, Ordering::Relaxed);
            if reason_dropped {
                self.count_dropped(records);
            } else {
                self.dropped.fetch_add(records, Ordering::Relaxed);
            }
            false
        };
        if self.queued.fetch_add(size, Ordering::Relaxed) + size > self.queue_bytes {
            return refused(true);
        }
        match self.tx.try_send(Message::Chunk(chunk)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => refused(true),
            Err(TrySendError::Disconnected(_)) => refused(false),
        }
    }

    /// Counts `lines` more bytes of lines against the size cap: `false` once the tape
    /// would pass it (lines so far, and the data file's end, `data_end`, which the
    /// chunk's data has already reserved), from then on for good, with one warning.
    /// The count is an upper bound of what reaches the disk, except for the block
    /// padding of direct writes (at most an eighth of the lines: `tape::file`).
    fn within_cap(&self, lines: u64) -> bool {
        if self.max_bytes == 0 {
            return true;
        }
        if self.capped.load(Ordering::Relaxed) {
            return false;
        }
        let total = (self.lines_bytes.fetch_add(lines, Ordering::Relaxed) + lines)
            .saturating_add(self.data_end.load(Ordering::Relaxed));
        if total <= self.max_bytes {
            return true;
        }
        self.lines_bytes.fetch_sub(lines, Ordering::Relaxed);
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

    /// Bytes of chunks waiting in the queue for the writer (their buffers': at
    /// [`QUEUE_BYTES`] new ones are dropped).
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

    /// Bytes of buffers for event data the recorder holds, and how many buffers came
    /// from the heap because none of those was free (`Arena::usage`).
    pub fn buffers(&self) -> (u64, u64) {
        self.data_arena.usage()
    }

    /// Records written so far.
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

/// How often the writer wakes to drain the queue. Polling, not blocking: a blocked
/// receiver makes every `try_send` wake it (a futex call and a context switch per
/// record, measured at several microseconds per event); a writer that drains on a
/// timer costs the proxy only the queue push.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(2);

/// The writer writes once this much is staged or held (or when the queue ran empty).
/// Large writes, few system calls: the writer probe (`writer_cpu_per_event`) costs
/// 0.046-0.056 µs per event at 4 MiB against 0.065-0.066 at 1 MiB (three runs each);
/// at most this much is held back from a tape's reader.
const WRITE_BYTES: usize = 4 << 20;

/// When the queue runs empty, held chunks wait for more (up to [`WRITE_BYTES`], or
/// [`HELD_CHUNKS`]) for at most this long. Writing whatever two milliseconds brought
/// made writes of about 500 KiB at 100 streams of small events, a thousand a second:
/// each a system call, block requests and their completion interrupts, which wake the
/// writer on a core the proxy is using.
const HOLD: std::time::Duration = std::time::Duration::from_millis(50);

/// At most this many chunks are held: many streams' small chunks each hold a whole
/// buffer (a slot of the data arena), which goes back once written.
const HELD_CHUNKS: usize = 64;

/// The size of a chunk's buffer for raw bytes, a slot of the recorder's [`Arena`]
/// (`proxy::recording` fills it, splitting reads, and hands the chunk over when it is
/// full, so a chunk never needs more than a slot). The arena keeps at most 64 MiB of
/// slots for the recorder's life.
pub(crate) const DATA_SLOT: usize = 128 << 10;

/// The writer thread's side of the files: failures stop it for good.
struct Writer<'a> {
    file: TapeFile,
    data: DataFile,
    data_direct: Arc<AtomicBool>,
    /// Chunks received and not yet written: lines, data, their bytes in all.
    held_lines: Vec<(Vec<u8>, usize)>,
    held_data: Vec<DataParts>,
    held_bytes: usize,
    /// When the first of the held chunks came.
    held_since: Instant,
    name: &'a str,
    failed: bool,
    /// Records handed to the file since `written` was last counted up.
    pending: u64,
    written: &'a AtomicU64,
}

impl Writer<'_> {
    /// Runs `op` unless writing has failed; counts the records so far written when it
    /// succeeds and `counts`.
    fn run(&mut self, counts: bool, op: impl FnOnce(&mut TapeFile) -> std::io::Result<()>) {
        if self.failed {
            return;
        }
        match op(&mut self.file) {
            Ok(()) if counts => {
                self.written.fetch_add(self.pending, Ordering::Relaxed);
                self.pending = 0;
            }
            Ok(()) => {}
            Err(e) => {
                self.failed = true;
                tracing::error!(tape = self.name, error = %e, "cannot write the tape; recording stopped");
            }
        }
    }

    /// Holds a chunk until [`WRITE_BYTES`] or [`HELD_CHUNKS`] are held (or [`HOLD`] has
    /// passed).
    fn chunk(&mut self, chunk: Chunk) {
        if self.failed {
            return;
        }
        self.pending += chunk.records();
        if self.held_lines.is_empty() {
            self.held_since = Instant::now();
        }
        let parts = chunk.into_parts();
        if let Some(data) = parts.data {
            self.held_bytes += data.buffer.len();
            self.held_data.push(data);
        }
        self.held_bytes += parts.lines.0.len() - parts.lines.1;
        self.held_lines.push(parts.lines);
        if self.held_bytes >= WRITE_BYTES || self.held_lines.len() >= HELD_CHUNKS {
            self.release();
        }
    }

    /// Writes the held chunks: their data first, so that a line on disk never refers to
    /// data that is not, then their lines (as `TapeFile` does: large chunks whole, the
    /// rest staged, whole blocks written once `WRITE_BYTES` are staged).
    fn release(&mut self) {
        self.held_bytes = 0;
        let data = std::mem::take(&mut self.held_data);
        if !self.failed && !data.is_empty() {
            let result = self.data.write(data);
            if !self.data.is_direct() {
                // Refused by the file system: later chunks reserve unaligned.
                self.data_direct.store(false, Ordering::Relaxed);
            }
            if let Err(e) = result {
                self.failed = true;
                tracing::error!(tape = self.name, error = %e, "cannot write the tape's data file; recording stopped");
            }
        }
        for (bytes, start) in std::mem::take(&mut self.held_lines) {
            self.run(false, |file| file.append_chunk(bytes, start));
        }
        if self.file.staged() >= WRITE_BYTES {
            self.run(true, TapeFile::write_blocks);
        }
    }

    /// Everything held and staged to the file, the partial last block included.
    fn write_out(&mut self) {
        self.release();
        self.run(true, |file| file.write_tail(false));
    }

    /// The queue ran empty: held chunks are written once they have waited [`HOLD`],
    /// the partial last block of lines every `TAIL_EVERY`.
    fn idle(&mut self) {
        if !self.held_lines.is_empty() && self.held_since.elapsed() >= HOLD {
            self.release();
        }
        self.run(true, |file| file.write_tail(true));
    }
}

fn write_loop(
    (file, data, data_direct): (TapeFile, DataFile, Arc<AtomicBool>),
    arena: &Arc<Arena>,
    (rx, queued): (Receiver<Message>, &AtomicUsize),
    written: &AtomicU64,
    name: &str,
    (clock, started): &(std::sync::Arc<AtomicU64>, Instant),
) {
    let mut writer = Writer {
        file,
        data,
        data_direct,
        held_lines: Vec::new(),
        held_data: Vec::new(),
        held_bytes: 0,
        held_since: Instant::now(),
        name,
        failed: false,
        pending: 0,
        written,
    };
    loop {
        let now = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        clock.store(now, Ordering::Relaxed);
        loop {
            match rx.try_recv() {
                Ok(Message::Chunk(chunk)) => {
                    queued.fetch_sub(chunk.footprint(), Ordering::Relaxed);
                    writer.chunk(chunk);
                }
                Ok(Message::Sync(done)) => {
                    writer.write_out();
                    let _ = done.send(());
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    writer.write_out();
                    return;
                }
            }
        }
        writer.idle();
        arena.grow_ahead();
        std::thread::sleep(DRAIN_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::format;

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
    fn chunks_beyond_the_queue_bytes_are_dropped_and_counted_and_the_writer_gives_bytes_back() {
        let dir = std::env::temp_dir().join(format!("sluice-qbytes-{}", std::process::id()));
        let limits = QueueLimits {
            chunks: QUEUE,
            bytes: 64 << 10,
        };
        let recorder = Recorder::with_queue(&dir, "http://up", limits, 0).unwrap();
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

        // A chunk holding a data slot counts for the whole slot, however little is in
        // it: more than the queue may hold even when it is empty.
        let mut big = Chunk::default();
        let (lines, arena) = recorder.pools();
        big.fill_from(lines, 4096, arena, DATA_SLOT, Vec::new());
        big.record(&end(1));
        assert!(big.footprint() >= DATA_SLOT, "{}", big.footprint());
        assert!(
            !recorder.write_chunk(big),
            "a chunk larger than the queue was queued"
        );
        assert_eq!(recorder.dropped(), 1);
        assert_eq!(
            recorder.queued_bytes(),
            0,
            "a dropped chunk's bytes stay counted"
        );

        // A small one goes through, and its bytes are given back once it is taken.
        let mut small = Chunk::default();
        small.record(&end(2));
        assert!(recorder.write_chunk(small));
        recorder.sync();
        assert_eq!(recorder.queued_bytes(), 0);
        assert_eq!(recorder.dropped(), 1);
        let records = format::read(recorder.path()).unwrap();
        let streams: Vec<_> = records.iter().filter_map(Record::stream).collect();
        assert_eq!(
            streams,
            vec![2],
            "only the chunk that fitted is on the tape"
        );
        std::fs::remove_dir_all(dir).unwrap();
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
            plugin: "passthrough".into(),
            verdict: StepVerdict::Pass,
            elapsed: std::time::Duration::from_nanos(300),
            fuel: 1055,
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
        let mut tape = crate::tape::TapeStream::new(recorder.clone(), 1);
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
        let mut tape = crate::tape::TapeStream::new(recorder.clone(), 1);
        // Batches of 64 at `batch_us` (the writer keeps up, and chunk buffers come back
        // to the pool, as in the proxy); only the recording is timed.
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
