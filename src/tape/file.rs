//! The tape file as the writer thread writes it: in whole 4 KiB blocks with `O_DIRECT`
//! where the file system allows it, full chunks as they are, other lines through a
//! staging buffer.
//!
//! Why: a tape grows by every event's data. Through the page cache each 4 KiB page
//! costs the writer a page allocation, ext4's block reservation and a copy (about
//! 1-2 µs a page here), and the kernel's flusher threads write it out again later; on
//! the recording bench that was a third of recording's whole cost. A direct write
//! hands the disk the writer's own buffer: no page cache and almost no CPU per byte.
//!
//! Direct I/O wants the buffer, the file offset and the length aligned to the block
//! size, so only whole blocks go that way. A full chunk (at least [`WHOLE_AT_LEAST`]; its
//! lines start on a block boundary, see `Pool::take`) is padded to whole blocks with
//! a line of spaces and written from the chunk's own buffer, several in one vectored
//! write: copying them into a staging buffer cost the writer about 100 ns an event on
//! the recording bench (memory another core had just written). Small chunks are copied
//! into the staging buffer; when a full chunk follows, what is staged is padded the same
//! way and written first. Padding is at most a block a chunk, about 6% of a tape of
//! fast streams; readers skip blank lines. The partial block at the end (a few hundred
//! bytes of the last lines) is written through an ordinary handle at the same offset
//! every [`TAIL_EVERY`] and when the writer is asked to sync or stops, so a tape can be
//! read (or followed) while recording goes on, and is complete when sluice exits; the
//! next direct write covers that block again with more data. Where `O_DIRECT` cannot be
//! opened or the first direct write is refused (`EINVAL`: tmpfs, some network file
//! systems), everything goes through the ordinary handle, as before.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::chunk::{DataParts, Pool};

/// Alignment and unit of direct writes (a multiple of every common logical block size).
pub(crate) const BLOCK: usize = 4096;

/// Chunks at least this large may be written as they are (`append_chunk`): the padding
/// to a whole block costs at most an eighth of them on disk.
const WHOLE_AT_LEAST: usize = 32 << 10;

/// Chunks held whole go to the disk in one write once they add up to this much.
const WHOLE_WRITE: usize = 1 << 20;

/// A line of `n` bytes of spaces (its `\n` included), `n` = 0: nothing.
fn pad(out: &mut Vec<u8>, n: usize) {
    if n > 0 {
        out.resize(out.len() + n - 1, b' ');
        out.push(b'\n');
    }
}

/// The partial last block reaches the file at least this often while recording.
pub const TAIL_EVERY: Duration = Duration::from_millis(100);

/// `O_DIRECT` on the Linux targets where its value is known without `libc`.
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "x86")))]
const O_DIRECT: Option<i32> = Some(0o40000);
#[cfg(all(target_os = "linux", any(target_arch = "aarch64", target_arch = "arm")))]
const O_DIRECT: Option<i32> = Some(0o200000);
#[cfg(not(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm"
    )
)))]
const O_DIRECT: Option<i32> = None;

/// `EINVAL`: what Linux answers a direct write it cannot do.
const EINVAL: i32 = 22;

/// A second, `O_DIRECT` handle on the file at `path`, where the system has one, if it
/// is still the file `created` (not a symlink or another file put at its name since).
fn open_direct(path: &Path, created: &File) -> Option<File> {
    O_DIRECT.and_then(|flag| {
        use std::os::unix::fs::OpenOptionsExt;
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(flag | libc::O_NOFOLLOW)
            .open(path)
            .ok()?;
        super::create::same_file(created, &direct).then_some(direct)
    })
}

/// The tape's data file: each chunk's event data at the place its exchange reserved
/// (`Recorder::reserve_data`), so chunks may arrive in any order. Data a chunk padded
/// to whole blocks goes around the page cache, from the chunk's own buffer, the chunks
/// the writer holds (a few megabytes) in few vectored writes; smaller data (a slow
/// stream's chunk, handed over when 100 ms old) through the page cache, exactly. Direct writes refused by the file system
/// (`EINVAL`) go through the page cache, and so does everything after them.
pub(crate) struct DataFile {
    file: File,
    direct: Option<File>,
}

impl DataFile {
    /// `file` was just created at `path`.
    pub(crate) fn new(file: File, path: &Path) -> Self {
        let direct = open_direct(path, &file);
        Self { file, direct }
    }

    /// Whether padded data goes around the page cache.
    pub(crate) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Writes chunks' data, each at its place: runs of direct parts that follow one
    /// another in the file (chunks reserve in turn, so most do) in one vectored write
    /// each, up to a few megabytes (a direct write of 64 KiB takes about as long as one
    /// of a megabyte here: the disk's latency, not its bandwidth, sets the pace).
    pub(crate) fn write(&mut self, mut parts: Vec<DataParts>) -> io::Result<()> {
        parts.sort_unstable_by_key(|p| p.at);
        let mut rest = &parts[..];
        while let Some(first) = rest.first() {
            let mut end = first.at + first.buffer.len() as u64;
            let mut run = 1;
            while first.direct
                && let Some(next) = rest.get(run)
                && next.direct
                && next.at == end
            {
                end += next.buffer.len() as u64;
                run += 1;
            }
            let (now, later) = rest.split_at(run);
            if !(first.direct && self.write_direct(now)?) {
                for part in now {
                    self.file.write_all_at(part.buffer.as_slice(), part.at)?;
                }
            }
            rest = later;
        }
        // The buffers go back to their arena as `parts` drops.
        Ok(())
    }

    /// One vectored direct write of `run`, parts that follow one another from
    /// `run[0].at`; false when direct writes are not possible (here, or any more).
    fn write_direct(&mut self, run: &[DataParts]) -> io::Result<bool> {
        let Some(direct) = &mut self.direct else {
            return Ok(false);
        };
        let mut slices: Vec<IoSlice<'_>> = run
            .iter()
            .map(|p| IoSlice::new(p.buffer.as_slice()))
            .collect();
        let mut slices = &mut slices[..];
        direct.seek(SeekFrom::Start(run[0].at))?;
        while !slices.is_empty() {
            match direct.write_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(EINVAL) && slices.len() == run.len() => {
                    // Nothing written yet: the page cache, from now on.
                    tracing::debug!(error = %e, "tape data: direct writes refused, writing through the page cache");
                    self.direct = None;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

pub(crate) struct TapeFile {
    /// Ordinary (page cache) handle: tails, and everything when direct I/O is off.
    file: File,
    /// `O_DIRECT` handle, `None` when not possible.
    direct: Option<File>,
    /// `buf[start..]` are the bytes from file offset `offset` on, not yet written for
    /// good; `start` makes `buf[start..]` block-aligned in memory (direct mode).
    buf: Vec<u8>,
    start: usize,
    offset: u64,
    /// How many staged bytes the last tail write covered (nothing new: no rewrite).
    tail_written: usize,
    tail_at: Instant,
    /// Chunks to be written as they are (`bytes[start..]`, padded to whole blocks),
    /// after everything staged; their bytes in all.
    whole: Vec<(Vec<u8>, usize)>,
    whole_bytes: usize,
    /// Where written chunks' buffers go back to.
    pool: Arc<Pool>,
}

impl TapeFile {
    /// `file` was just created at `path` (empty); `capacity`: the staging buffer's size.
    pub(crate) fn new(file: File, path: &Path, capacity: usize, pool: Arc<Pool>) -> Self {
        let direct = open_direct(path, &file);
        let mut file = Self {
            file,
            direct,
            buf: Vec::new(),
            start: 0,
            offset: 0,
            tail_written: 0,
            tail_at: Instant::now(),
            whole: Vec::new(),
            whole_bytes: 0,
            pool,
        };
        file.restage(capacity);
        file
    }

    /// Whether whole blocks go around the page cache.
    pub(crate) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Appends whole lines (copied into the staging buffer).
    pub(crate) fn append(&mut self, lines: &[u8]) -> io::Result<()> {
        // Chunks taken whole come first.
        self.write_whole()?;
        self.buf.extend_from_slice(lines);
        Ok(())
    }

    /// Appends a chunk of whole lines, `bytes[start..]`. In direct mode a large chunk
    /// whose lines start on a block boundary in memory (see `Pool::take`) is not
    /// copied: it is padded to whole blocks with a line of spaces (readers skip blank
    /// lines) and handed to the disk as it is, and whatever was staged before it is
    /// padded the same way and written first. Anything else is staged.
    pub(crate) fn append_chunk(&mut self, mut bytes: Vec<u8>, start: usize) -> io::Result<()> {
        let len = bytes.len() - start;
        let padded = len.next_multiple_of(BLOCK);
        let as_is = self.direct.is_some()
            && len >= WHOLE_AT_LEAST
            && (bytes.as_ptr() as usize + start).is_multiple_of(BLOCK)
            && bytes.capacity() >= start + padded;
        if !as_is {
            let appended = self.append(&bytes[start..]);
            self.pool.put(bytes);
            return appended;
        }
        pad(&mut bytes, padded - len);
        let staged = self.buffered();
        if staged > 0 {
            pad(&mut self.buf, staged.next_multiple_of(BLOCK) - staged);
            self.write_blocks()?;
        }
        self.whole.push((bytes, start));
        self.whole_bytes += padded;
        if self.whole_bytes >= WHOLE_WRITE {
            self.write_whole()?;
        }
        Ok(())
    }

    /// Bytes staged or held and not yet written for good.
    pub(crate) fn staged(&self) -> usize {
        self.buffered() + self.whole_bytes
    }

    /// Bytes in the staging buffer.
    fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Writes the chunks held whole, in one vectored write where possible.
    fn write_whole(&mut self) -> io::Result<()> {
        if self.whole.is_empty() {
            return Ok(());
        }
        let mut slices: Vec<IoSlice<'_>> = self
            .whole
            .iter()
            .map(|(bytes, start)| IoSlice::new(&bytes[*start..]))
            .collect();
        let mut slices = &mut slices[..];
        let mut at = self.offset;
        let mut refused = self.direct.is_none();
        if let Some(direct) = &self.direct {
            let mut direct = direct;
            direct.seek(SeekFrom::Start(at))?;
            while !slices.is_empty() {
                match direct.write_vectored(slices) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        IoSlice::advance_slices(&mut slices, n);
                        at += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.raw_os_error() == Some(EINVAL) => {
                        tracing::debug!(error = %e, "tape: direct writes refused, writing through the page cache");
                        refused = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if refused {
            for slice in slices.iter() {
                self.file.write_all_at(slice, at)?;
                at += slice.len() as u64;
            }
            self.direct = None;
        }
        self.offset = at;
        for (bytes, _) in self.whole.drain(..) {
            self.pool.put(bytes);
        }
        self.whole_bytes = 0;
        Ok(())
    }

    /// A new staging buffer of at least `capacity` bytes holding the staged bytes,
    /// aligned for direct writes.
    fn restage(&mut self, capacity: usize) {
        let staged = self.buf.get(self.start..).unwrap_or_default();
        let mut buf: Vec<u8> = Vec::with_capacity(capacity.max(staged.len()) + BLOCK);
        let start = if self.direct.is_some() {
            buf.as_ptr().align_offset(BLOCK)
        } else {
            0
        };
        buf.resize(start, 0);
        buf.extend_from_slice(staged);
        self.buf = buf;
        self.start = start;
    }

    /// Writes what can be written for good: whole blocks in direct mode, everything
    /// otherwise.
    pub(crate) fn write_blocks(&mut self) -> io::Result<()> {
        self.write_whole()?;
        let staged = self.buffered();
        let whole = if self.direct.is_some() {
            staged / BLOCK * BLOCK
        } else {
            staged
        };
        if whole == 0 {
            return Ok(());
        }
        // Rendering may have grown (moved) the buffer past its capacity.
        if self.direct.is_some() && !(self.buf.as_ptr() as usize + self.start).is_multiple_of(BLOCK)
        {
            self.restage(self.buf.capacity());
        }
        let data = &self.buf[self.start..self.start + whole];
        let refused = match &self.direct {
            Some(direct) => match direct.write_all_at(data, self.offset) {
                Ok(()) => false,
                Err(e) if e.raw_os_error() == Some(EINVAL) => {
                    tracing::debug!(error = %e, "tape: direct writes refused, writing through the page cache");
                    true
                }
                Err(e) => return Err(e),
            },
            None => true,
        };
        if refused {
            // Buffered mode, or direct writes not possible here after all (the page
            // cache from now on).
            self.file.write_all_at(data, self.offset)?;
            self.direct = None;
        }
        self.offset += whole as u64;
        self.buf.copy_within(self.start + whole.., self.start);
        self.buf.truncate(self.start + staged - whole);
        self.tail_written = 0;
        if self.direct.is_none() && self.start != 0 {
            self.restage(self.buf.capacity());
        }
        Ok(())
    }

    /// Makes everything staged readable in the file: the whole blocks, then the partial
    /// last block through the page cache (direct mode; rewritten with more later).
    /// `due_only`: only if [`TAIL_EVERY`] has passed since the last time.
    pub(crate) fn write_tail(&mut self, due_only: bool) -> io::Result<()> {
        self.write_blocks()?;
        let staged = self.buffered();
        if staged == self.tail_written || (due_only && self.tail_at.elapsed() < TAIL_EVERY) {
            return Ok(());
        }
        self.file
            .write_all_at(&self.buf[self.start..], self.offset)?;
        self.tail_written = staged;
        self.tail_at = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tape_file(name: &str) -> (std::path::PathBuf, TapeFile) {
        let dir =
            std::env::temp_dir().join(format!("sluice-tapefile-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.jsonl");
        let file = File::create(&path).unwrap();
        let tape = TapeFile::new(file, &path, 64 << 10, Arc::default());
        (path, tape)
    }

    #[test]
    fn blocks_and_tails_make_the_file_exactly_what_was_staged() {
        let (path, mut tape) = tape_file("blocks");
        let mut expected = Vec::new();
        for round in 0..40u32 {
            // Lines of varied length, so blocks and tails fall everywhere.
            let line = format!(
                "{{\"n\":{round},\"pad\":\"{}\"}}\n",
                "x".repeat(round as usize * 397 % 5000)
            );
            tape.append(line.as_bytes()).unwrap();
            expected.extend_from_slice(line.as_bytes());
            if round % 3 == 0 {
                tape.write_blocks().unwrap();
            }
            if round % 7 == 0 {
                tape.write_tail(false).unwrap();
                assert_eq!(std::fs::read(&path).unwrap(), expected, "round {round}");
            }
        }
        tape.write_tail(false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_buffer_that_grew_past_its_capacity_is_realigned() {
        let (path, mut tape) = tape_file("grow");
        let big = vec![b'y'; 200 << 10];
        tape.append(b"head\n").unwrap();
        tape.append(&big).unwrap();
        tape.write_tail(false).unwrap();
        let mut expected = b"head\n".to_vec();
        expected.extend_from_slice(&big);
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn whole_chunks_and_staged_lines_keep_their_order_with_blank_padding() {
        let (path, mut tape) = tape_file("whole");
        let mut lines = Vec::new();
        for round in 0..30u32 {
            let mut chunk = crate::tape::chunk::Chunk::aligned(48 << 10);
            // Full chunks (taken whole in direct mode) and small ones (staged).
            let records = if round % 3 == 0 { 3 } else { 400 };
            for i in 0..records {
                chunk.record(&crate::tape::Record::Comment {
                    stream: u64::from(round),
                    t_ms: i,
                    text: "k".repeat((i as usize * 7) % 90),
                });
            }
            lines.extend(
                String::from_utf8(chunk.bytes().to_vec())
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
            let (bytes, start) = chunk.into_parts().lines;
            tape.append_chunk(bytes, start).unwrap();
            if round % 4 == 0 {
                tape.write_tail(false).unwrap();
            }
        }
        tape.write_tail(false).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let read: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(read, lines);
        assert!(text.ends_with('\n'));
        // Where direct writes work, full chunks were taken whole (and padded).
        assert_eq!(tape.is_direct(), text.lines().any(|l| l.trim().is_empty()));
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
