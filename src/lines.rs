//! Newline-delimited messages with a bound: a stdio server's stdout and stderr, and
//! `sluice stdio`'s stdin. One reader, so both sides agree on what a line is (LF, an
//! optional CR before it, a last line without one) and what a too-long line costs
//! (nothing: it is skipped to its newline, never buffered whole).

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// One line.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its terminator.
    Text(Bytes),
    /// A line longer than the limit, by its length (its bytes were skipped).
    TooLong(usize),
}

/// Splits a byte stream into lines of at most `max` bytes; a longer line is reported
/// by its length and skipped up to its newline, never buffered whole.
pub struct LineReader<R> {
    reader: R,
    buffer: BytesMut,
    max: usize,
    /// Bytes of an over-long line skipped so far (it ends at the next newline).
    skipping: Option<usize>,
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Lines of `reader`, each at most `max` bytes.
    pub fn new(reader: R, max: usize) -> Self {
        Self {
            reader,
            buffer: BytesMut::with_capacity(8 << 10),
            max,
            skipping: None,
            eof: false,
        }
    }

    /// The next line; `None` at the end. Cancel-safe: what was read stays in the
    /// reader, so it can be polled in a `select!`.
    pub async fn next(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            if let Some(end) = memchr::memchr(b'\n', &self.buffer) {
                let mut line = self.buffer.split_to(end + 1);
                line.truncate(end);
                if let Some(skipped) = self.skipping.take() {
                    return Ok(Some(Line::TooLong(skipped + line.len())));
                }
                if line.last() == Some(&b'\r') {
                    line.truncate(line.len() - 1);
                }
                // A long line can arrive whole, newline and all, in one read.
                if line.len() > self.max {
                    return Ok(Some(Line::TooLong(line.len())));
                }
                return Ok(Some(Line::Text(line.freeze())));
            }
            // One byte over for a CR that may precede the newline still to come.
            if self.buffer.len() > self.max + 1 {
                *self.skipping.get_or_insert(0) += self.buffer.len();
                self.buffer.clear();
            }
            if self.eof {
                // A last line without a newline still counts.
                if let Some(skipped) = self.skipping.take() {
                    return Ok(Some(Line::TooLong(skipped + self.buffer.len())));
                }
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(Line::Text(self.buffer.split().freeze())));
            }
            self.buffer.reserve(8 << 10);
            if self.reader.read_buf(&mut self.buffer).await? == 0 {
                self.eof = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_and_over_long_ones_skipped_whole() {
        let input: &[u8] = b"one\r\ntwo\n0123456789abcdef\n\nthree\r\n12345678\r\nlast";
        let mut lines = LineReader::new(input, 8);
        let mut got = Vec::new();
        while let Some(line) = lines.next().await.unwrap() {
            got.push(match line {
                Line::Text(t) => String::from_utf8(t.to_vec()).unwrap(),
                Line::TooLong(n) => format!("<{n}>"),
            });
        }
        // An empty line is a line; a CR before the LF is not part of it (nor of the
        // limit).
        assert_eq!(got, ["one", "two", "<16>", "", "three", "12345678", "last"]);
    }
}
