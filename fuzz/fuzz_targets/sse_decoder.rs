//! The SSE decoder against its own promises, on hostile bytes in hostile chunks.
//!
//! The upstream is not trusted and TCP decides where reads end, so what the proxy makes of a
//! stream must depend only on its bytes: the same frames and the same error whether it arrives
//! whole or split anywhere (inside CRLF, a UTF-8 sequence, the BOM). The size limit is the only
//! defence against an endless event, so it is checked on every frame; and everything the
//! decoder yields must survive the encoder unchanged, or plugins would see one event and
//! clients another.
//!
//! Input layout (chosen so that a seed is a header plus plain SSE text):
//!
//! - byte 0: the limit: `0..=0x7F` is that many bytes (small limits make errors common),
//!   `0x80..=0xFE` is `(b - 0x7F) * 64`, `0xFF` is no limit (`usize::MAX`).
//! - byte 1: `n = b % 17`, the number of chunk lengths that follow.
//! - the next `n` bytes: chunk lengths, used cyclically over the stream; 0 is an empty chunk.
//!   With `n = 0` the stream is fed one byte at a time, which puts a cut everywhere at once.
//! - the rest: the stream.

#![no_main]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sluice::sse::{DecodeError, Decoder, Event, Frame, encode_frame};
use sluice::upstream::{SseEvents, StreamError};

fuzz_target!(|input: &[u8]| {
    let (limit, chunks) = parse(input);
    let whole: Vec<u8> = chunks.concat();

    let reference = decode_whole(&whole, limit);
    let (chunked, used) = decode_chunked(&chunks, limit);
    assert_eq!(
        chunked.frames, reference.frames,
        "frames depend on chunking"
    );
    assert_eq!(chunked.error, reference.error, "error depends on chunking");
    assert_eq!(
        chunked.discarded, reference.discarded,
        "finish() depends on chunking"
    );

    for frame in &reference.frames {
        check_frame(frame, limit);
        check_round_trip(frame);
    }
    check_stream_round_trip(&reference.frames);
    check_reuse(used, &chunks, &reference);
    check_upstream_events(&chunks, limit, &reference);
});

/// What decoding a whole stream came to.
#[derive(Debug)]
struct Outcome {
    frames: Vec<Frame>,
    error: Option<DecodeError>,
    /// What `finish()` said: an incomplete event was thrown away.
    discarded: bool,
}

fn parse(input: &[u8]) -> (usize, Vec<&[u8]>) {
    let limit = match input.first().copied().unwrap_or(0xFF) {
        b @ 0..=0x7F => usize::from(b),
        0xFF => usize::MAX,
        b => usize::from(b - 0x7F) * 64,
    };
    let count = input.get(1).map_or(0, |b| usize::from(b % 17));
    let rest = input.get(2..).unwrap_or(&[]);
    let (pattern, mut stream) = rest.split_at(count.min(rest.len()));

    let mut chunks = Vec::new();
    if pattern.is_empty() {
        chunks.extend(stream.chunks(1));
        return (limit, chunks);
    }
    if pattern.iter().all(|&len| len == 0) {
        // Only empty chunks would never get through the stream: keep them, then the rest.
        chunks.extend(pattern.iter().map(|_| &[][..]));
        chunks.push(stream);
        return (limit, chunks);
    }
    for &len in pattern.iter().cycle() {
        if stream.is_empty() {
            break;
        }
        let (chunk, tail) = stream.split_at(usize::from(len).min(stream.len()));
        chunks.push(chunk);
        stream = tail;
    }
    (limit, chunks)
}

fn decode_whole(whole: &[u8], limit: usize) -> Outcome {
    let mut decoder = Decoder::new(limit);
    let mut out = VecDeque::new();
    let error = decoder.decode(whole, &mut out).err();
    let discarded = decoder.finish();
    Outcome {
        frames: out.into(),
        error,
        discarded,
    }
}

/// Feeds the chunks one by one. After an error it goes on feeding the rest of the stream and
/// more: a poisoned decoder must refuse everything, or the rest of an oversized event would
/// be read as new events.
fn decode_chunked(chunks: &[&[u8]], limit: usize) -> (Outcome, Decoder) {
    let mut decoder = Decoder::new(limit);
    let mut out = VecDeque::new();
    let mut error: Option<DecodeError> = None;
    for (index, chunk) in chunks.iter().enumerate() {
        if let Err(e) = decoder.decode(chunk, &mut out) {
            let after = chunks[index + 1..].iter().copied();
            for more in after.chain([&b"data: more\n\n"[..], b"", b"\n"]) {
                let before = out.len();
                assert_eq!(
                    decoder.decode(more, &mut out).as_ref(),
                    Err(&e),
                    "a poisoned decoder took input"
                );
                assert_eq!(out.len(), before, "a poisoned decoder yielded frames");
            }
            error = Some(e);
            break;
        }
    }
    let discarded = decoder.finish();
    if error.is_some() {
        assert!(!discarded, "a poisoned decoder reported a discarded event");
    }
    let outcome = Outcome {
        frames: out.into(),
        error,
        discarded,
    };
    (outcome, decoder)
}

/// `finish()` documents that the decoder can then take a new stream: nothing of the old one,
/// not even its poisoning, may leak into it.
fn check_reuse(mut decoder: Decoder, chunks: &[&[u8]], reference: &Outcome) {
    let mut out = VecDeque::new();
    let mut error = None;
    for chunk in chunks {
        if let Err(e) = decoder.decode(chunk, &mut out) {
            error = Some(e);
            break;
        }
    }
    assert_eq!(
        Vec::from(out),
        reference.frames,
        "a reused decoder decodes differently"
    );
    assert_eq!(error, reference.error, "a reused decoder fails differently");
}

/// Bytes of a decoded value that are known to have been on the wire. Invalid UTF-8 became
/// U+FFFD (3 bytes) from as little as one byte, so each U+FFFD only proves one.
fn wire_len(text: &str) -> usize {
    text.len() - 2 * text.matches('\u{FFFD}').count()
}

/// Structural promises of the decoder, and the size limit measured as it measures it: the wire
/// bytes of the field lines without line ends. The decoded fields only give a lower bound of
/// those (a field may be repeated, unknown fields count too), which is what is checked.
fn check_frame(frame: &Frame, limit: usize) {
    match frame {
        Frame::Comment(text) => {
            assert!(
                !text.contains(['\r', '\n']),
                "comment spans lines: {text:?}"
            );
            let wire = ":".len() + wire_len(text);
            assert!(
                wire <= limit,
                "comment of {wire} wire bytes passed a limit of {limit}"
            );
        }
        Frame::Event(event) => {
            let Event {
                id,
                event: kind,
                data,
                retry,
            } = event;
            assert!(
                id.is_some() || kind.is_some() || data.is_some() || retry.is_some(),
                "an event without fields was dispatched"
            );
            let mut wire = 0usize;
            if let Some(id) = id {
                assert!(!id.contains(['\r', '\n', '\0']), "id: {id:?}");
                wire += field_len("id", id);
            }
            if let Some(kind) = kind {
                assert!(!kind.contains(['\r', '\n']), "event: {kind:?}");
                wire += field_len("event", kind);
            }
            if let Some(retry) = retry {
                wire += field_len("retry", &retry.to_string());
            }
            if let Some(data) = data {
                assert!(!data.contains('\r'), "data: {data:?}");
                // One `data` line per line of the value.
                wire += data
                    .split('\n')
                    .map(|line| field_len("data", line))
                    .sum::<usize>();
            }
            assert!(
                wire <= limit,
                "event of at least {wire} wire bytes passed a limit of {limit}: {event:?}"
            );
        }
    }
}

/// The shortest field line that decodes to `value`: a line without a colon is a field with an
/// empty value (`event` alone is `event: ""`).
fn field_len(name: &str, value: &str) -> usize {
    let colon = usize::from(!value.is_empty());
    name.len() + colon + wire_len(value)
}

fn decode_unlimited(bytes: &[u8]) -> Vec<Frame> {
    let mut decoder = Decoder::new(usize::MAX);
    let mut out = VecDeque::new();
    decoder.decode(bytes, &mut out).expect("no limit, no error");
    assert!(
        !decoder.finish(),
        "encoder output does not end on a frame boundary: {:?}",
        String::from_utf8_lossy(bytes)
    );
    out.into()
}

/// A decoded frame holds nothing the encoder has to strip, so it must come back exactly.
fn check_round_trip(frame: &Frame) {
    let mut wire = BytesMut::new();
    encode_frame(frame, &mut wire);
    let again = decode_unlimited(&wire);
    assert_eq!(
        again,
        std::slice::from_ref(frame),
        "round trip changed a frame"
    );
}

/// Frames encoded back to back must not bleed into each other (a comment inside an event, a
/// field carried over).
fn check_stream_round_trip(frames: &[Frame]) {
    let mut wire = BytesMut::new();
    for frame in frames {
        encode_frame(frame, &mut wire);
    }
    assert_eq!(
        decode_unlimited(&wire),
        frames,
        "stream round trip changed frames"
    );
}

/// An HTTP body that hands out the chunks as they were cut, and never waits.
struct Chunks(VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.get_mut()
                .0
                .pop_front()
                .map(|c| Ok(http_body::Frame::data(c))),
        )
    }
}

/// The proxy does not call the decoder directly but through `SseEvents`, which must deliver
/// the same frames and the same error: it once dropped the frames completed in the same read
/// before an error, so what reached the client depended on where reads ended (fixed in
/// c9a5909; `seeds/sse_decoder/regression_frames_before_error`).
fn check_upstream_events(chunks: &[&[u8]], limit: usize, reference: &Outcome) {
    let body = Chunks(chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect());
    let mut events = SseEvents::new(body, limit);
    let mut cx = Context::from_waker(Waker::noop());
    let mut frames = Vec::new();
    let mut error = None;
    loop {
        match events.poll_next(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                assert!(error.is_none(), "a frame after the stream failed");
                frames.push(frame);
            }
            Poll::Ready(Some(Err(StreamError::Decode(e)))) => {
                assert!(error.is_none(), "two errors");
                error = Some(e);
            }
            Poll::Ready(Some(Err(other))) => panic!("unexpected stream error: {other}"),
            Poll::Ready(None) => break,
            Poll::Pending => panic!("a body that is always ready left the stream pending"),
        }
    }
    assert_eq!(error, reference.error, "SseEvents fails differently");
    assert_eq!(frames, reference.frames, "SseEvents yields other frames");
}
