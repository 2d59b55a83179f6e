//! Incremental, IO-free SSE decoder.
//!
//! It follows the WHATWG HTML "event stream interpretation" algorithm, with the deviations a
//! proxy needs so that it never loses information:
//!
//! - Comments are yielded as [`Frame::Comment`] (browsers drop them) so keep-alives can be
//!   forwarded.
//! - A block is yielded as soon as it had any `data`, `id`, `event` or `retry` field (browsers skip
//!   blocks with an empty data buffer), so `id:`-only and `retry:`-only blocks survive.
//! - Fields are not inherited between events (see [`Event`]).
//! - Each event is bounded by `max_event_bytes`, since the upstream is not trusted.
//!
//! The decoder works on bytes and only converts complete lines to text, so chunks may be split
//! anywhere: between CR and LF, inside a UTF-8 sequence or inside the leading BOM. Its output
//! depends only on the concatenated input, never on how it was chunked.

use std::borrow::Cow;
use std::collections::VecDeque;

use super::event::{Event, Frame};

/// The UTF-8 byte order mark, skipped once at the very start of a stream.
const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// Capacity of the partial-line buffer kept between lines; larger buffers are freed once used.
const RETAINED_LINE_CAPACITY: usize = 16 * 1024;

/// Why decoding stopped. The stream cannot be resynchronised afterwards (the rest of the
/// oversized event would be misread as new events), so the decoder stays poisoned.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// One event (or one unterminated line) exceeded the configured limit.
    #[error("SSE event larger than the limit of {limit} bytes")]
    EventTooLarge {
        /// The configured `max_event_bytes`.
        limit: usize,
    },
}

/// Progress in skipping the leading BOM, which may itself arrive split across chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bom {
    /// At the start of the stream; this many BOM bytes have been seen (0..=2) and held back.
    Matching(u8),
    /// The BOM was skipped or ruled out.
    Done,
}

/// Incremental SSE decoder: feed it chunks with [`Decoder::decode`], end with [`Decoder::finish`].
///
/// Memory is bounded by the limit: the partial line is never stored beyond `max_event_bytes`, and
/// the fields of the current event hold at most that many wire bytes (up to three times as many in
/// memory in the pathological case where every byte is invalid UTF-8 and becomes U+FFFD).
#[derive(Debug)]
pub struct Decoder {
    max_event_bytes: usize,
    bom: Bom,
    /// The previous chunk ended with CR: an LF at the start of the next chunk is part of that
    /// line end, not an empty line.
    pending_cr: bool,
    /// The start of the current line, when it began in an earlier chunk.
    line: Vec<u8>,
    /// Wire bytes (without line ends) of the field lines of the event being accumulated.
    event_bytes: usize,
    /// The data buffer: each `data` value followed by `"\n"`; `None` if there was no `data` line.
    data: Option<String>,
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    /// Set once the limit was exceeded; all further input is refused.
    poisoned: bool,
}

impl Decoder {
    /// A decoder for a new stream, with a limit on the size of one event.
    ///
    /// The limit counts wire bytes without line ends: the field lines of the event being
    /// accumulated (unknown fields included, since they are part of it on the wire) plus the line
    /// currently being read, comment or not. So an endless line, an endless event and an endless
    /// comment inside an event are all refused. A finished comment does not count, and the count
    /// restarts at each blank line. Since every line is checked as a whole, the outcome does not
    /// depend on chunking; only a held-back BOM prefix (at most 2 bytes) is not counted.
    #[must_use]
    pub fn new(max_event_bytes: usize) -> Self {
        Decoder {
            max_event_bytes,
            bom: Bom::Matching(0),
            pending_cr: false,
            line: Vec::new(),
            event_bytes: 0,
            data: None,
            event: None,
            id: None,
            retry: None,
            poisoned: false,
        }
    }

    /// The limit this decoder was created with.
    #[must_use]
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// Feed one chunk; every frame completed by it is pushed onto `out` in order.
    ///
    /// Comments are pushed as soon as their line ends, so a comment inside an event block comes
    /// out before that event.
    ///
    /// # Errors
    ///
    /// [`DecodeError::EventTooLarge`] when the limit (see [`Decoder::new`]) is exceeded. The
    /// frames completed before the offending line have been pushed, the buffers are released,
    /// and every later call returns the same error: the stream cannot be resynchronised.
    pub fn decode(&mut self, chunk: &[u8], out: &mut VecDeque<Frame>) -> Result<(), DecodeError> {
        if self.poisoned {
            return Err(self.too_large());
        }
        let result = self.decode_chunk(chunk, out);
        if result.is_err() {
            self.poison();
        }
        result
    }

    /// End of input. Returns true if an incomplete event (no terminating blank line) was
    /// discarded: pending `data`/`id`/`event`/`retry` fields, or an unterminated last line.
    ///
    /// The discarding follows WHATWG (a truncated event must not be acted upon). The decoder is
    /// reset to the start-of-stream state, so it can be reused for a new stream.
    pub fn finish(&mut self) -> bool {
        let discarded = !self.poisoned
            && (self.has_fields()
                || !self.line.is_empty()
                || matches!(self.bom, Bom::Matching(seen) if seen > 0));
        *self = Decoder::new(self.max_event_bytes);
        discarded
    }

    fn decode_chunk(&mut self, chunk: &[u8], out: &mut VecDeque<Frame>) -> Result<(), DecodeError> {
        let mut rest = self.skip_bom(chunk);
        if rest.is_empty() {
            // Keep `pending_cr`: the LF may still come in the next chunk.
            return Ok(());
        }
        if self.pending_cr {
            self.pending_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(pos) = find_line_break(rest) {
            let line = &rest[..pos];
            if self.line.is_empty() {
                // Fast path: the whole line is in this chunk, no copy.
                self.process_line(line, out)?;
            } else {
                // Check before copying, so an oversized line is never stored.
                self.check_size(self.line.len().saturating_add(line.len()))?;
                let mut buf = std::mem::take(&mut self.line);
                buf.extend_from_slice(line);
                let result = self.process_line(&buf, out);
                if buf.capacity() <= RETAINED_LINE_CAPACITY {
                    // Keep a small allocation for the next split line; release a large one, so
                    // an idle connection does not hold on to its largest event.
                    buf.clear();
                    self.line = buf;
                }
                result?;
            }
            let was_cr = rest[pos] == b'\r';
            rest = &rest[pos + 1..];
            if was_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
        }
        if !rest.is_empty() {
            // An unfinished line counts toward the limit, so an endless line is caught.
            self.check_size(self.line.len().saturating_add(rest.len()))?;
            self.line.extend_from_slice(rest);
        }
        Ok(())
    }

    /// Skips the BOM at the start of the stream; returns the rest of the chunk to decode.
    fn skip_bom<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        let Bom::Matching(mut seen) = self.bom else {
            return chunk;
        };
        let mut rest = chunk;
        while let Some((&byte, tail)) = rest.split_first() {
            if byte != BOM[usize::from(seen)] {
                // Not a BOM after all: the bytes held back start the first line.
                self.line.extend_from_slice(&BOM[..usize::from(seen)]);
                self.bom = Bom::Done;
                return rest;
            }
            seen += 1;
            rest = tail;
            if usize::from(seen) == BOM.len() {
                self.bom = Bom::Done;
                return rest;
            }
        }
        self.bom = Bom::Matching(seen);
        rest
    }

    /// Handles one complete line (without its line end).
    fn process_line(&mut self, line: &[u8], out: &mut VecDeque<Frame>) -> Result<(), DecodeError> {
        self.check_size(line.len())?;
        match line.split_first() {
            None => self.dispatch(out),
            Some((b':', text)) => out.push_back(Frame::Comment(lossy(text).into_owned())),
            Some(_) => {
                self.event_bytes += line.len();
                self.field(line);
            }
        }
        Ok(())
    }

    /// Applies one `name:value` line to the event being accumulated.
    fn field(&mut self, line: &[u8]) {
        // ':' and ' ' are ASCII, so splitting the bytes before the lossy conversion gives the
        // same result as converting the line first (as WHATWG does).
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => match &line[colon + 1..] {
                [b' ', value @ ..] | value => (&line[..colon], value),
            },
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                let value = lossy(value);
                let data = self.data.get_or_insert_with(String::new);
                // Room for the line end too: growing for it alone would copy the whole
                // value once more (a 16 KiB event's data, every event).
                data.reserve(value.len() + 1);
                data.push_str(&value);
                data.push('\n');
            }
            b"event" => self.event = Some(lossy(value).into_owned()),
            // An id containing NUL is ignored (WHATWG): it could not go back in `Last-Event-ID`.
            b"id" if !value.contains(&0) => self.id = Some(lossy(value).into_owned()),
            b"retry" => {
                if let Some(retry) = parse_retry(value) {
                    self.retry = Some(retry);
                }
            }
            _ => {}
        }
    }

    /// A blank line: yields the accumulated event, if it had any field worth forwarding.
    fn dispatch(&mut self, out: &mut VecDeque<Frame>) {
        self.event_bytes = 0;
        if !self.has_fields() {
            return;
        }
        let data = self.data.take().map(|mut data| {
            data.pop(); // the "\n" appended after the last data line
            data
        });
        out.push_back(Frame::Event(Event {
            id: self.id.take(),
            event: self.event.take(),
            data,
            retry: self.retry.take(),
        }));
    }

    fn has_fields(&self) -> bool {
        self.data.is_some() || self.id.is_some() || self.event.is_some() || self.retry.is_some()
    }

    /// Fails if the current event plus a line of `line_len` bytes would exceed the limit.
    fn check_size(&self, line_len: usize) -> Result<(), DecodeError> {
        if self.event_bytes.saturating_add(line_len) > self.max_event_bytes {
            Err(self.too_large())
        } else {
            Ok(())
        }
    }

    fn too_large(&self) -> DecodeError {
        DecodeError::EventTooLarge {
            limit: self.max_event_bytes,
        }
    }

    /// Refuses all further input and releases the buffers: nothing buffered can be used anymore.
    fn poison(&mut self) {
        *self = Decoder::new(self.max_event_bytes);
        self.poisoned = true;
    }
}

/// UTF-8 decoding as WHATWG does it: invalid sequences become U+FFFD. Valid input (the
/// norm) takes `str::from_utf8`, which validates several times faster than the chunk
/// iterator `from_utf8_lossy` walks (measured: 6.6% of a whole proxied stream's CPU).
fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// `retry` is only honoured when it is a non-empty run of ASCII digits that fits in a `u64`.
fn parse_retry(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &byte| {
        if byte.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(byte - b'0'))
        } else {
            None
        }
    })
}

/// Position of the first CR or LF in `bytes`.
///
/// This is the decoder's hot loop, so it scans eight bytes at a time (SWAR) instead of one:
/// a plain `position` with two comparisons is not vectorised by the compiler.
pub(super) fn find_line_break(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const CRS: u64 = u64::from_ne_bytes([b'\r'; 8]);
    const LFS: u64 = u64::from_ne_bytes([b'\n'; 8]);
    /// High bit set in each byte of `word` that is zero. Bytes above a zero byte may get a false
    /// positive from the borrow, but the lowest set bit is always exact.
    fn zero_bytes(word: u64) -> u64 {
        word.wrapping_sub(ONES) & !word & HIGHS
    }

    let (words, tail) = bytes.as_chunks::<8>();
    for (index, word) in words.iter().enumerate() {
        // Little-endian load: the lowest byte of `word` is the first byte in memory.
        let word = u64::from_le_bytes(*word);
        let found = zero_bytes(word ^ CRS) | zero_bytes(word ^ LFS);
        if found != 0 {
            return Some(index * 8 + (found.trailing_zeros() / 8) as usize);
        }
    }
    tail.iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .map(|pos| words.len() * 8 + pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BIG: usize = usize::MAX;

    fn ev(id: Option<&str>, event: Option<&str>, data: Option<&str>, retry: Option<u64>) -> Frame {
        Frame::Event(Event {
            id: id.map(str::to_owned),
            event: event.map(str::to_owned),
            data: data.map(str::to_owned),
            retry,
        })
    }

    fn data(text: &str) -> Frame {
        ev(None, None, Some(text), None)
    }

    fn comment(text: &str) -> Frame {
        Frame::Comment(text.to_owned())
    }

    /// Feeds the chunks in order, stopping at the first error.
    fn decode_chunks(
        chunks: &[&[u8]],
        limit: usize,
    ) -> (Vec<Frame>, Result<(), DecodeError>, bool) {
        let mut decoder = Decoder::new(limit);
        let mut out = VecDeque::new();
        for chunk in chunks {
            if let Err(err) = decoder.decode(chunk, &mut out) {
                return (out.into(), Err(err), decoder.finish());
            }
        }
        let discarded = decoder.finish();
        (out.into(), Ok(()), discarded)
    }

    /// Decodes a whole, well-behaved input and returns its frames.
    fn frames(input: &str) -> Vec<Frame> {
        let (frames, result, _) = decode_chunks(&[input.as_bytes()], BIG);
        assert_eq!(result, Ok(()));
        frames
    }

    #[test]
    fn lf_line_endings() {
        assert_eq!(frames("data: a\n\ndata: b\n\n"), [data("a"), data("b")]);
    }

    #[test]
    fn cr_line_endings() {
        assert_eq!(frames("data: a\r\rdata: b\r\r"), [data("a"), data("b")]);
    }

    #[test]
    fn crlf_line_endings() {
        assert_eq!(
            frames("data: a\r\n\r\ndata: b\r\n\r\n"),
            [data("a"), data("b")]
        );
    }

    #[test]
    fn mixed_line_endings() {
        assert_eq!(
            frames("data: a\r\ndata: b\rdata: c\n\r\nid: 1\n\r"),
            [data("a\nb\nc"), ev(Some("1"), None, None, None)]
        );
    }

    #[test]
    fn lf_cr_is_two_line_ends() {
        // "\n\r" is LF then CR: the CR is a blank line that dispatches.
        assert_eq!(frames("data: a\n\r"), [data("a")]);
    }

    #[test]
    fn crlf_split_across_chunks() {
        // The LF after a chunk-final CR belongs to the same line end, not a blank line.
        let (got, result, discarded) = decode_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n"], BIG);
        assert_eq!((got, result, discarded), (vec![], Ok(()), true));
        let (got, ..) = decode_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n", b"\r", b"\n"], BIG);
        assert_eq!(got, [data("a\nb")]);
        // An empty chunk in between must not forget the pending CR.
        let (got, ..) = decode_chunks(&[b"data: a\r", b"", b"\ndata: b\n\n"], BIG);
        assert_eq!(got, [data("a\nb")]);
        // CR then CR across chunks is a line end and a blank line.
        let (got, ..) = decode_chunks(&[b"data: a\r", b"\r"], BIG);
        assert_eq!(got, [data("a")]);
    }

    #[test]
    fn utf8_split_across_chunks() {
        let input = "data: é😀x\n\n".as_bytes();
        for split in 0..=input.len() {
            let (got, result, _) = decode_chunks(&[&input[..split], &input[split..]], BIG);
            assert_eq!(
                (got, result),
                (vec![data("é😀x")], Ok(())),
                "split at {split}"
            );
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(decode_chunks(&bytes, BIG).0, [data("é😀x")]);
    }

    #[test]
    fn invalid_utf8_becomes_replacement_character() {
        let (got, ..) = decode_chunks(&[b"data: a\xFFb\xE2\x82\n\n"], BIG);
        assert_eq!(got, [data("a\u{FFFD}b\u{FFFD}")]);
    }

    #[test]
    fn bom_is_skipped() {
        assert_eq!(frames("\u{FEFF}data: a\n\n"), [data("a")]);
    }

    #[test]
    fn bom_split_across_chunks() {
        let (got, ..) = decode_chunks(&[b"\xEF", b"\xBB", b"\xBF", b"data: a\n\n"], BIG);
        assert_eq!(got, [data("a")]);
        let (got, ..) = decode_chunks(&[b"\xEF\xBB", b"", b"\xBFdata: a\n\n"], BIG);
        assert_eq!(got, [data("a")]);
    }

    #[test]
    fn bom_only_at_start() {
        // A second BOM is content: the field name becomes "\u{FEFF}data", an unknown field.
        assert_eq!(frames("\u{FEFF}\u{FEFF}data: a\n\n"), []);
        assert_eq!(frames("data: a\n\n\u{FEFF}data: b\n\n"), [data("a")]);
        // In a value it is kept.
        assert_eq!(frames("data: \u{FEFF}a\n\n"), [data("\u{FEFF}a")]);
    }

    #[test]
    fn partial_bom_is_content() {
        // EF BB followed by something else is not a BOM: it is the (invalid UTF-8) start of a line.
        let (got, ..) = decode_chunks(&[b"\xEF\xBB", b":x\n"], BIG);
        assert_eq!(got, []); // the line is "\u{FFFD}:x", an unknown field
        let (got, ..) = decode_chunks(&[b"\xEF", b"\n:x\n"], BIG);
        assert_eq!(got, [comment("x")]);
        let (got, ..) = decode_chunks(&[b"\xEF\xBB:", b"x\n"], BIG);
        assert_eq!(got, []);
        // Only the BOM bytes at the start were held back; a partial BOM at the end is discarded.
        let (got, result, discarded) = decode_chunks(&[b"\xEF\xBB"], BIG);
        assert_eq!((got, result, discarded), (vec![], Ok(()), true));
    }

    #[test]
    fn comments_are_yielded_verbatim() {
        assert_eq!(
            frames(": keep-alive\n:\n::x\n:  two\n"),
            [
                comment(" keep-alive"),
                comment(""),
                comment(":x"),
                comment("  two")
            ]
        );
    }

    #[test]
    fn comment_inside_event_comes_first() {
        assert_eq!(
            frames("data: a\n: ping\ndata: b\n\n"),
            [comment(" ping"), data("a\nb")]
        );
    }

    #[test]
    fn multi_line_data_joined_with_lf() {
        assert_eq!(
            frames("data: a\ndata:b\ndata\ndata: c\n\n"),
            [data("a\nb\n\nc")]
        );
    }

    #[test]
    fn empty_data() {
        assert_eq!(frames("data:\n\n"), [data("")]);
        assert_eq!(frames("data: \n\n"), [data("")]);
        assert_eq!(frames("data:\ndata:\n\n"), [data("\n")]);
    }

    #[test]
    fn field_without_colon_has_empty_value() {
        assert_eq!(frames("data\n\n"), [data("")]);
        assert_eq!(frames("event\n\n"), [ev(None, Some(""), None, None)]);
        assert_eq!(frames("id\n\n"), [ev(Some(""), None, None, None)]);
        // Not "data": the name is the whole line.
        assert_eq!(frames("data x\n\n"), []);
    }

    #[test]
    fn only_one_leading_space_is_stripped() {
        assert_eq!(frames("data:x\n\n"), [data("x")]);
        assert_eq!(frames("data: x\n\n"), [data("x")]);
        assert_eq!(frames("data:  x \n\n"), [data(" x ")]);
        assert_eq!(frames("data:\tx\n\n"), [data("\tx")]);
        assert_eq!(frames("data: a: b\n\n"), [data("a: b")]);
        assert_eq!(frames("event:  e\n\n"), [ev(None, Some(" e"), None, None)]);
    }

    #[test]
    fn event_and_id_last_wins() {
        assert_eq!(
            frames("event: a\nid: 1\nevent: b\nid: 2\ndata: x\n\n"),
            [ev(Some("2"), Some("b"), Some("x"), None)]
        );
    }

    #[test]
    fn fields_are_not_inherited() {
        assert_eq!(
            frames("id: 1\nevent: e\nretry: 5\ndata: a\n\ndata: b\n\n"),
            [ev(Some("1"), Some("e"), Some("a"), Some(5)), data("b")]
        );
    }

    #[test]
    fn explicit_empty_id_is_kept() {
        assert_eq!(
            frames("id:\ndata: x\n\n"),
            [ev(Some(""), None, Some("x"), None)]
        );
        assert_eq!(frames("id: \n\n"), [ev(Some(""), None, None, None)]);
    }

    #[test]
    fn id_with_nul_is_ignored() {
        assert_eq!(frames("id: a\0b\ndata: x\n\n"), [data("x")]);
        assert_eq!(
            frames("id: 1\nid: a\0\n\n"),
            [ev(Some("1"), None, None, None)]
        );
        assert_eq!(frames("id: \0\n\n"), []);
    }

    #[test]
    fn retry_digits_only() {
        assert_eq!(
            frames("retry: 1000\n\n"),
            [ev(None, None, None, Some(1000))]
        );
        assert_eq!(frames("retry:0\n\n"), [ev(None, None, None, Some(0))]);
        assert_eq!(frames("retry: 007\n\n"), [ev(None, None, None, Some(7))]);
        for bad in ["10a", "-1", "+1", "1.5", "", " 5", "5 ", "１"] {
            assert_eq!(frames(&format!("retry: {bad}\n\n")), [], "retry {bad:?}");
            assert_eq!(
                frames(&format!("retry: 9\nretry: {bad}\n\n")),
                [ev(None, None, None, Some(9))],
                "retry {bad:?} must leave the earlier value"
            );
        }
        assert_eq!(frames("retry\n\n"), []);
    }

    #[test]
    fn retry_overflow_is_ignored() {
        assert_eq!(
            frames("retry: 18446744073709551615\n\n"),
            [ev(None, None, None, Some(u64::MAX))]
        );
        assert_eq!(frames("retry: 18446744073709551616\n\n"), []);
        assert_eq!(frames("retry: 99999999999999999999999\n\n"), []);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert_eq!(frames("foo: bar\ndata: x\nDATA: y\n\n"), [data("x")]);
        assert_eq!(frames("foo: bar\n\n"), []);
        assert_eq!(frames(" data: x\n\n"), []);
    }

    #[test]
    fn event_is_dispatched_only_at_blank_line() {
        let mut decoder = Decoder::new(BIG);
        let mut out = VecDeque::new();
        decoder.decode(b"data: a\nid: 1\n", &mut out).unwrap();
        assert!(out.is_empty());
        decoder.decode(b"\n", &mut out).unwrap();
        assert_eq!(Vec::from(out), [ev(Some("1"), None, Some("a"), None)]);
    }

    #[test]
    fn blank_lines_without_fields_emit_nothing() {
        assert_eq!(frames("\n\n\r\n\r\r"), []);
        assert_eq!(frames("\n\ndata: x\n\n\n\n"), [data("x")]);
    }

    #[test]
    fn id_only_retry_only_and_event_only_blocks_are_forwarded() {
        assert_eq!(
            frames("id: 7\n\nretry: 3000\n\nevent: ping\n\n"),
            [
                ev(Some("7"), None, None, None),
                ev(None, None, None, Some(3000)),
                ev(None, Some("ping"), None, None),
            ]
        );
    }

    #[test]
    fn incomplete_event_is_discarded_at_finish() {
        let (got, result, discarded) = decode_chunks(&[b"data: a\n\ndata: b\n"], BIG);
        assert_eq!((got, result, discarded), (vec![data("a")], Ok(()), true));
        // An unterminated last line is discarded too, even a would-be blank line's content.
        let (got, _, discarded) = decode_chunks(&[b"data: a\n\ndata: b"], BIG);
        assert_eq!((got, discarded), (vec![data("a")], true));
        let (got, _, discarded) = decode_chunks(&[b": ping"], BIG);
        assert_eq!((got, discarded), (vec![], true));
        // A clean end, or a pending line that could not make an event, discards nothing.
        assert!(!decode_chunks(&[b"data: a\n\n"], BIG).2);
        assert!(!decode_chunks(&[b"data: a\r\n\r"], BIG).2);
        assert!(!decode_chunks(&[b"foo: x\n"], BIG).2);
        assert!(!decode_chunks(&[b"\xEF\xBB\xBF"], BIG).2);
    }

    #[test]
    fn finish_resets_for_a_new_stream() {
        let mut decoder = Decoder::new(BIG);
        let mut out = VecDeque::new();
        decoder
            .decode(b"\xEF\xBB\xBFdata: a\nid: 1\r", &mut out)
            .unwrap();
        assert!(decoder.finish());
        // New stream: the BOM is skipped again, no pending CR, no leftover fields.
        decoder
            .decode(b"\xEF\xBB\xBF\ndata: b\n\n", &mut out)
            .unwrap();
        assert_eq!(Vec::from(out), [data("b")]);
        assert!(!decoder.finish());
    }

    #[test]
    fn event_within_limit_is_accepted() {
        // Field lines: "data: 0123" (10) + "id: 12" (6) = 16 bytes, exactly the limit.
        let (got, result, _) = decode_chunks(&[b"data: 0123\nid: 12\n\n"], 16);
        assert_eq!(
            (got, result),
            (vec![ev(Some("12"), None, Some("0123"), None)], Ok(()))
        );
        // The count restarts with each event.
        let (got, result, _) =
            decode_chunks(&[b"data: 0123\nid: 12\n\ndata: 0123\nid: 12\n\n"], 16);
        assert_eq!((got.len(), result), (2, Ok(())));
    }

    #[test]
    fn too_large_event_errors() {
        let too_large = Err(DecodeError::EventTooLarge { limit: 15 });
        let (got, result, _) = decode_chunks(&[b"data: a\n\ndata: 0123\nid: 12\n\n"], 15);
        assert_eq!((got, result), (vec![data("a")], too_large.clone()));
        // A single line over the limit, split across chunks.
        let (got, result, _) = decode_chunks(&[b"data: 01234", b"56789", b"\n\n"], 15);
        assert_eq!((got, result), (vec![], too_large));
    }

    #[test]
    fn endless_line_hits_limit_without_buffering_it() {
        for start in [&b"data: "[..], b":", b"x"] {
            let mut decoder = Decoder::new(1000);
            let mut out = VecDeque::new();
            let mut result = decoder.decode(start, &mut out);
            let mut fed = start.len();
            while result.is_ok() && fed < 1_000_000 {
                assert!(
                    decoder.line.len() <= 1000,
                    "buffered {}",
                    decoder.line.len()
                );
                result = decoder.decode(&[b'a'; 97], &mut out);
                fed += 97;
            }
            assert_eq!(result, Err(DecodeError::EventTooLarge { limit: 1000 }));
            assert!(fed > 1000 && fed <= 1000 + 97, "fed {fed}");
            assert!(out.is_empty());
            assert_eq!(decoder.line.capacity(), 0, "buffers released on error");
        }
        // The same in one huge chunk: examined, never stored.
        let mut decoder = Decoder::new(1000);
        let result = decoder.decode(&vec![b'a'; 100_000], &mut VecDeque::new());
        assert_eq!(result, Err(DecodeError::EventTooLarge { limit: 1000 }));
        assert_eq!(decoder.line.capacity(), 0);
    }

    #[test]
    fn large_line_buffer_is_released() {
        let mut decoder = Decoder::new(BIG);
        let mut out = VecDeque::new();
        decoder.decode(b"data: a", &mut out).unwrap();
        decoder.decode(b"b\n", &mut out).unwrap();
        assert!(decoder.line.capacity() > 0, "a small buffer is reused");
        decoder.decode(b"data: ", &mut out).unwrap();
        decoder.decode(&vec![b'x'; 100_000], &mut out).unwrap();
        decoder.decode(b"\n\n", &mut out).unwrap();
        assert_eq!(decoder.line.capacity(), 0, "a large buffer is freed");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0], data(&format!("ab\n{}", "x".repeat(100_000))));
    }

    #[test]
    fn unfinished_comment_counts_toward_limit() {
        // Pending field lines (10 bytes) + an 11-byte comment exceed 20 ...
        let (got, result, _) = decode_chunks(&[b"data: 0123\n:0123456789\n\n"], 20);
        assert_eq!(
            (got, result),
            (vec![], Err(DecodeError::EventTooLarge { limit: 20 }))
        );
        // ... but a finished comment does not add to the event.
        let (got, result, _) = decode_chunks(&[b"data: 0123\n:012345678\ndata: 012\n\n"], 20);
        assert_eq!(
            (got, result),
            (vec![comment("012345678"), data("0123\n012")], Ok(()))
        );
    }

    #[test]
    fn ignored_lines_count_toward_limit() {
        // Unknown fields are part of the event on the wire, so a flood of them is refused too.
        let (_, result, _) = decode_chunks(&[b"foo: 0123\nfoo: 0123\n\n"], 17);
        assert_eq!(result, Err(DecodeError::EventTooLarge { limit: 17 }));
    }

    #[test]
    fn decoder_stays_poisoned() {
        let mut decoder = Decoder::new(4);
        let mut out = VecDeque::new();
        let err = Err(DecodeError::EventTooLarge { limit: 4 });
        assert_eq!(decoder.decode(b"data: toolong\n\n", &mut out), err);
        assert_eq!(decoder.decode(b"\n\ndata\n\n", &mut out), err);
        assert_eq!(decoder.decode(b"", &mut out), err);
        assert!(out.is_empty());
        assert!(!decoder.finish());
        assert_eq!(decoder.max_event_bytes(), 4);
    }

    #[test]
    fn error_message() {
        let err = DecodeError::EventTooLarge { limit: 42 };
        assert_eq!(
            err.to_string(),
            "SSE event larger than the limit of 42 bytes"
        );
    }

    #[test]
    fn find_line_break_examples() {
        assert_eq!(find_line_break(b""), None);
        assert_eq!(find_line_break(b"abc"), None);
        assert_eq!(find_line_break(b"0123456789abcdef\r"), Some(16));
        assert_eq!(find_line_break(b"01234567\n9\r"), Some(8));
        assert_eq!(
            find_line_break(b"\x00\x01\x0c\x0e\x09\x0b\x8a\x8d\n"),
            Some(8)
        );
        assert_eq!(find_line_break(b"\x00\x00\x00\x0d"), Some(3));
    }

    // ---- Reference model -------------------------------------------------------------------

    /// A deliberately naive decoder over the whole input: byte-at-a-time line splitting, lossy
    /// conversion of each line first, then `str` operations, as the WHATWG text describes it.
    fn reference(input: &[u8], limit: usize) -> (Vec<Frame>, Result<(), DecodeError>, bool) {
        // A stream that is only a prefix of a BOM is still undecided: held back, not counted.
        if input.len() < 3 && BOM.starts_with(input) {
            return (vec![], Ok(()), !input.is_empty());
        }
        let input = input.strip_prefix(&BOM[..]).unwrap_or(input);
        let mut lines = Vec::new();
        let mut current = Vec::new();
        let mut i = 0;
        while i < input.len() {
            match input[i] {
                b'\r' => {
                    lines.push(std::mem::take(&mut current));
                    if input.get(i + 1) == Some(&b'\n') {
                        i += 1;
                    }
                }
                b'\n' => lines.push(std::mem::take(&mut current)),
                byte => current.push(byte),
            }
            i += 1;
        }
        let too_large = Err(DecodeError::EventTooLarge { limit });
        let mut frames = Vec::new();
        let mut size = 0usize;
        let mut event = Event::default();
        let mut data_lines: Vec<String> = Vec::new();
        let mut has_data = false;
        for line in lines {
            if size.saturating_add(line.len()) > limit {
                return (frames, too_large, false);
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            if text.is_empty() {
                if has_data {
                    event.data = Some(data_lines.join("\n"));
                }
                if event != Event::default() {
                    frames.push(Frame::Event(std::mem::take(&mut event)));
                }
                event = Event::default();
                data_lines.clear();
                has_data = false;
                size = 0;
            } else if let Some(text) = text.strip_prefix(':') {
                frames.push(Frame::Comment(text.to_owned()));
            } else {
                size += line.len();
                let (name, value) = match text.split_once(':') {
                    Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
                    None => (text.as_str(), ""),
                };
                match name {
                    "data" => {
                        has_data = true;
                        data_lines.push(value.to_owned());
                    }
                    "event" => event.event = Some(value.to_owned()),
                    "id" if !value.contains('\0') => event.id = Some(value.to_owned()),
                    "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                        if let Ok(retry) = value.parse() {
                            event.retry = Some(retry);
                        }
                    }
                    _ => {}
                }
            }
        }
        if size.saturating_add(current.len()) > limit {
            return (frames, too_large, false);
        }
        let discarded = has_data || event != Event::default() || !current.is_empty();
        (frames, Ok(()), discarded)
    }

    /// Byte strings that exercise the grammar: field names, separators, line ends, the BOM,
    /// multi-byte and invalid UTF-8, digits for `retry`.
    fn token() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => prop::sample::select(vec![
                &b"data"[..], b"id", b"event", b"retry", b"foo", b":", b": ", b" ", b"\r", b"\n",
                b"\r\n", b"\n\n", b"\xEF\xBB\xBF", b"\xEF", b"\xBB", b"\0", b"x", b"12",
                b"18446744073709551616", "é".as_bytes(), "😀".as_bytes(), b"\xF0\x9F",
            ])
            .prop_map(<[u8]>::to_vec),
            1 => any::<u8>().prop_map(|b| vec![b]),
        ]
    }

    fn input() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(token(), 0..60).prop_map(|tokens| tokens.concat())
    }

    fn limit() -> impl Strategy<Value = usize> {
        prop_oneof![0usize..48, Just(BIG)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_chunking_gives_the_same_result(
            input in input(),
            limit in limit(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let whole = decode_chunks(&[&input], limit);
            let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(input.len() + 1)).collect();
            cuts.sort_unstable(); // duplicates are kept on purpose: they make empty chunks
            let mut chunks = Vec::new();
            let mut start = 0;
            for cut in cuts {
                chunks.push(&input[start..cut]);
                start = cut;
            }
            chunks.push(&input[start..]);
            prop_assert_eq!(&decode_chunks(&chunks, limit), &whole);
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            prop_assert_eq!(&decode_chunks(&bytes, limit), &whole);
        }

        #[test]
        fn decoder_matches_reference_model(input in input(), limit in limit()) {
            prop_assert_eq!(decode_chunks(&[&input], limit), reference(&input, limit));
        }

        #[test]
        fn poisoned_decoder_refuses_everything(input in input(), more in input()) {
            let mut decoder = Decoder::new(8);
            let mut out = VecDeque::new();
            if decoder.decode(&input, &mut out).is_err() {
                let before = out.len();
                prop_assert_eq!(
                    decoder.decode(&more, &mut out),
                    Err(DecodeError::EventTooLarge { limit: 8 })
                );
                prop_assert_eq!(out.len(), before);
            }
        }

        #[test]
        fn find_line_break_matches_naive(bytes in prop::collection::vec(
            prop_oneof![any::<u8>(), Just(b'\r'), Just(b'\n'), Just(0u8)], 0..40,
        )) {
            let naive = bytes.iter().position(|&b| b == b'\r' || b == b'\n');
            prop_assert_eq!(find_line_break(&bytes), naive);
        }
    }
}
