//! SSE encoder: frames back to wire form.
//!
//! Events reaching the encoder may have been rewritten by untrusted plugins, so the encoder
//! enforces output hygiene instead of trusting its input: no value can end a line early, hence no
//! value can inject a field or a whole event. `id` and `event` lose their CR and LF (and `id` its
//! NUL, which would make clients ignore it); `data` and comments with line breaks become several
//! lines, which decode back to the same text with line breaks normalised to `"\n"`.
//!
//! Wire form: `name: value` for a non-empty value and `name:` for an empty one; both decode to
//! the same value, so for every event the decoder can produce, decoding the encoding gives the
//! event back exactly.

use bytes::{BufMut, BytesMut};

use super::decoder::find_line_break;
use super::event::{Event, Frame};

/// Appends one event in wire form. Fields in the order id, event, retry, data; each
/// `name: value\n`; then a blank line.
///
/// An event without any field writes nothing: a lone blank line would dispatch nothing.
pub fn encode_event(ev: &Event, out: &mut BytesMut) {
    let Event {
        id,
        event,
        data,
        retry,
    } = ev;
    if id.is_none() && event.is_none() && data.is_none() && retry.is_none() {
        return;
    }
    // One reservation for the common case (single-line values), instead of growing per field.
    out.reserve(event_len(ev));
    if let Some(id) = id {
        put_single_line(out, b"id", id, |b| matches!(b, b'\r' | b'\n' | b'\0'));
    }
    if let Some(event) = event {
        put_single_line(out, b"event", event, |b| matches!(b, b'\r' | b'\n'));
    }
    if let Some(retry) = *retry {
        out.put_slice(b"retry: ");
        put_decimal(out, retry);
        out.put_u8(b'\n');
    }
    if let Some(data) = data {
        for_each_line(data, |line| put_field(out, b"data", line));
    }
    out.put_u8(b'\n');
}

/// The wire size of `ev` when every value is one line (the common case), so a caller can
/// reserve room for many events at once instead of growing, and copying, its buffer per
/// event. Each further line of `data` adds 7 bytes that this does not count.
pub fn event_len(ev: &Event) -> usize {
    ev.id.as_ref().map_or(0, |id| id.len() + 5)
        + ev.event.as_ref().map_or(0, |event| event.len() + 8)
        + ev.retry.map_or(0, |_| 28)
        + ev.data.as_ref().map_or(0, |data| data.len() + 7)
        + 1
}

/// The wire size of a frame whose values are each one line (see [`event_len`]).
pub fn frame_len(frame: &Frame) -> usize {
    match frame {
        Frame::Event(ev) => event_len(ev),
        Frame::Comment(text) => text.len() + 2,
    }
}

/// Appends a comment: `":" + text + "\n"`. A text with line breaks becomes several comment lines,
/// so it cannot end the comment early and inject fields.
pub fn encode_comment(text: &str, out: &mut BytesMut) {
    out.reserve(text.len() + 2);
    for_each_line(text, |line| {
        out.put_u8(b':');
        out.put_slice(line);
        out.put_u8(b'\n');
    });
}

/// Appends a frame, whichever kind it is.
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) {
    match frame {
        Frame::Event(ev) => encode_event(ev, out),
        Frame::Comment(text) => encode_comment(text, out),
    }
}

/// Writes `name: value\n`, or `name:\n` for an empty value. The separating space is always
/// written before a non-empty value, so a value that itself starts with a space survives decoding
/// (the decoder strips exactly one).
fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_u8(b':');
    if !value.is_empty() {
        out.put_u8(b' ');
        out.put_slice(value);
    }
    out.put_u8(b'\n');
}

/// Writes a field whose value must stay on one line, dropping the bytes matched by `drop`.
/// The dropped bytes are ASCII, so what remains is still valid UTF-8.
fn put_single_line(out: &mut BytesMut, name: &[u8], value: &str, drop: impl Fn(u8) -> bool) {
    let bytes = value.as_bytes();
    if !bytes.iter().any(|&b| drop(b)) {
        put_field(out, name, bytes);
        return;
    }
    out.put_slice(name);
    out.put_u8(b':');
    let mut pieces = bytes
        .split(|&b| drop(b))
        .filter(|piece| !piece.is_empty())
        .peekable();
    if pieces.peek().is_some() {
        out.put_u8(b' ');
        for piece in pieces {
            out.put_slice(piece);
        }
    }
    out.put_u8(b'\n');
}

/// Calls `f` with each line of `text`, split at CRLF, CR or LF exactly as the decoder splits
/// lines. A text ending with a line break has a last, empty line; `""` is one empty line.
fn for_each_line(text: &str, mut f: impl FnMut(&[u8])) {
    let mut rest = text.as_bytes();
    while let Some(pos) = find_line_break(rest) {
        f(&rest[..pos]);
        let crlf = rest[pos] == b'\r' && rest.get(pos + 1) == Some(&b'\n');
        rest = &rest[pos + if crlf { 2 } else { 1 }..];
    }
    f(rest);
}

/// Writes `n` in decimal without going through `fmt` (which would need an error path).
fn put_decimal(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20]; // u64::MAX has 20 digits
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::super::decoder::Decoder;
    use super::*;

    fn event(
        id: Option<&str>,
        event: Option<&str>,
        data: Option<&str>,
        retry: Option<u64>,
    ) -> Event {
        Event {
            id: id.map(str::to_owned),
            event: event.map(str::to_owned),
            data: data.map(str::to_owned),
            retry,
        }
    }

    fn encoded(ev: &Event) -> String {
        let mut out = BytesMut::new();
        encode_event(ev, &mut out);
        String::from_utf8(out.to_vec()).expect("the encoder writes UTF-8")
    }

    fn encoded_comment(text: &str) -> String {
        let mut out = BytesMut::new();
        encode_comment(text, &mut out);
        String::from_utf8(out.to_vec()).expect("the encoder writes UTF-8")
    }

    /// Decodes a complete stream with no size limit; asserts it ended on an event boundary.
    fn decode(bytes: &[u8]) -> Vec<Frame> {
        let mut decoder = Decoder::new(usize::MAX);
        let mut out = VecDeque::new();
        decoder.decode(bytes, &mut out).expect("no limit");
        assert!(
            !decoder.finish(),
            "encoder output must end on an event boundary"
        );
        out.into()
    }

    fn encode_all(frames: &[Frame]) -> BytesMut {
        let mut out = BytesMut::new();
        for frame in frames {
            encode_frame(frame, &mut out);
        }
        out
    }

    #[test]
    fn fields_in_order() {
        let ev = event(Some("7"), Some("update"), Some("{\"a\":1}"), Some(3000));
        assert_eq!(
            encoded(&ev),
            "id: 7\nevent: update\nretry: 3000\ndata: {\"a\":1}\n\n"
        );
    }

    #[test]
    fn message_is_data_only() {
        assert_eq!(encoded(&Event::message("hi")), "data: hi\n\n");
    }

    #[test]
    fn empty_values_have_no_trailing_space() {
        let ev = event(Some(""), Some(""), Some(""), Some(0));
        assert_eq!(encoded(&ev), "id:\nevent:\nretry: 0\ndata:\n\n");
        assert_eq!(decode(encoded(&ev).as_bytes()), [Frame::Event(ev)]);
    }

    #[test]
    fn leading_space_in_value_survives() {
        let ev = event(Some(" 1"), None, Some("  two"), None);
        assert_eq!(encoded(&ev), "id:  1\ndata:   two\n\n");
        assert_eq!(decode(encoded(&ev).as_bytes()), [Frame::Event(ev)]);
    }

    #[test]
    fn retry_extremes() {
        assert_eq!(
            encoded(&event(None, None, None, Some(u64::MAX))),
            "retry: 18446744073709551615\n\n"
        );
        assert_eq!(encoded(&event(None, None, None, Some(10))), "retry: 10\n\n");
    }

    #[test]
    fn event_without_fields_writes_nothing() {
        let mut out = BytesMut::from(&b"keep"[..]);
        encode_event(&Event::default(), &mut out);
        assert_eq!(&out[..], b"keep");
    }

    #[test]
    fn appends_to_existing_output() {
        let mut out = BytesMut::new();
        encode_event(&Event::message("a"), &mut out);
        encode_comment(" ping", &mut out);
        encode_event(&Event::message("b"), &mut out);
        assert_eq!(&out[..], b"data: a\n\n: ping\ndata: b\n\n");
    }

    #[test]
    fn line_breaks_stripped_from_id_and_event() {
        let ev = event(
            Some("1\r\nevent: evil\n\ndata: x\r"),
            Some("a\nb\rc\r\n"),
            None,
            None,
        );
        assert_eq!(encoded(&ev), "id: 1event: evildata: x\nevent: abc\n\n");
        assert_eq!(
            decode(encoded(&ev).as_bytes()),
            [Frame::Event(event(
                Some("1event: evildata: x"),
                Some("abc"),
                None,
                None
            ))]
        );
    }

    #[test]
    fn nul_stripped_from_id_only() {
        let ev = event(Some("a\0b"), Some("c\0d"), Some("e\0f"), None);
        assert_eq!(encoded(&ev), "id: ab\nevent: c\0d\ndata: e\0f\n\n");
    }

    #[test]
    fn id_of_only_forbidden_characters_stays_an_explicit_empty_id() {
        // The field was present, so it must stay present (it resets last-event-id).
        let ev = event(Some("\r\n\0"), None, None, None);
        assert_eq!(encoded(&ev), "id:\n\n");
    }

    #[test]
    fn multi_line_data_is_split() {
        let ev = Event::message("a\nb\r\nc\rd\n\ne\n");
        assert_eq!(
            encoded(&ev),
            "data: a\ndata: b\ndata: c\ndata: d\ndata:\ndata: e\ndata:\n\n"
        );
        assert_eq!(
            decode(encoded(&ev).as_bytes()),
            [Frame::Event(Event::message("a\nb\nc\nd\n\ne\n"))]
        );
    }

    #[test]
    fn injection_through_data_is_neutralised() {
        let ev = Event::message("x\n\nevent: admin\ndata: evil");
        assert_eq!(
            decode(encoded(&ev).as_bytes()),
            [Frame::Event(Event::message(
                "x\n\nevent: admin\ndata: evil"
            ))]
        );
    }

    #[test]
    fn comments() {
        assert_eq!(encoded_comment(" keep-alive"), ": keep-alive\n");
        assert_eq!(encoded_comment(""), ":\n");
        assert_eq!(encoded_comment("a\nb\r\nc\rd"), ":a\n:b\n:c\n:d\n");
        assert_eq!(
            encoded_comment("x\n\ndata: evil\n"),
            ":x\n:\n:data: evil\n:\n"
        );
        assert_eq!(
            decode(encoded_comment("x\n\ndata: evil").as_bytes()),
            ["x", "", "data: evil"].map(|text| Frame::Comment(text.to_owned()))
        );
    }

    #[test]
    fn encode_frame_dispatches() {
        let frames = [
            Frame::Comment(" hi".to_owned()),
            Frame::Event(event(Some("1"), None, Some("x"), None)),
        ];
        assert_eq!(&encode_all(&frames)[..], b": hi\nid: 1\ndata: x\n\n");
        assert_eq!(decode(&encode_all(&frames)), frames);
    }

    #[test]
    fn for_each_line_splits_like_the_decoder() {
        let mut lines = Vec::new();
        for_each_line("a\r\n\rb\n\r\nc", |line| lines.push(line.to_vec()));
        assert_eq!(lines, [&b"a"[..], b"", b"b", b"", b"c"]);
        lines.clear();
        for_each_line("", |line| lines.push(line.to_vec()));
        assert_eq!(lines, [b""]);
    }

    // ---- Properties --------------------------------------------------------------------------

    /// Strings rich in what matters to SSE: line breaks, NUL, separators, BOM, multi-byte text.
    fn text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            3 => prop::sample::select(vec![
                "\r", "\n", "\r\n", "\0", ":", " ", "data", "id: ", "é", "😀", "\u{FEFF}", "x",
            ])
            .prop_map(str::to_owned),
            1 => any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
    }

    fn any_event() -> impl Strategy<Value = Event> {
        (
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(any::<u64>()),
        )
            .prop_map(|(id, event, data, retry)| Event {
                id,
                event,
                data,
                retry,
            })
    }

    /// What the hygiene rules turn an event into: the closest event the decoder can produce.
    fn normalise(ev: &Event) -> Event {
        Event {
            id: ev.id.as_ref().map(|id| id.replace(['\r', '\n', '\0'], "")),
            event: ev.event.as_ref().map(|e| e.replace(['\r', '\n'], "")),
            data: ev
                .data
                .as_ref()
                .map(|data| data.replace("\r\n", "\n").replace('\r', "\n")),
            retry: ev.retry,
        }
    }

    /// Input bytes built from a grammar of SSE-ish lines, including broken UTF-8 and a BOM.
    fn sse_input() -> impl Strategy<Value = Vec<u8>> {
        let value = prop::collection::vec(
            prop::sample::select(vec![
                &b""[..],
                b"x",
                b"12",
                b" ",
                b":",
                b"\0",
                b"\xFF",
                b"\xE2\x82",
                "é".as_bytes(),
                b"\xEF\xBB\xBF",
                b"\r",
                b"\n",
            ]),
            0..5,
        )
        .prop_map(|pieces| pieces.concat());
        let name = prop::sample::select(vec![
            &b"data"[..],
            b"id",
            b"event",
            b"retry",
            b"foo",
            b"Data",
            b"",
        ]);
        let sep = prop::sample::select(vec![&b""[..], b":", b": ", b":  "]);
        let line = prop_oneof![
            4 => (name, sep, value.clone())
                .prop_map(|(name, sep, value)| [name, sep, &value].concat()),
            1 => value.prop_map(|value| [&b":"[..], &value].concat()),
            2 => Just(Vec::new()),
        ];
        let end = prop::sample::select(vec![&b"\n"[..], b"\r", b"\r\n"]);
        (
            any::<bool>(),
            prop::collection::vec((line, end), 0..20),
            any::<bool>(),
        )
            .prop_map(|(bom, lines, cut_last_end)| {
                let mut input = if bom {
                    b"\xEF\xBB\xBF".to_vec()
                } else {
                    Vec::new()
                };
                let count = lines.len();
                for (i, (line, end)) in lines.into_iter().enumerate() {
                    input.extend_from_slice(&line);
                    if !(cut_last_end && i + 1 == count) {
                        input.extend_from_slice(end);
                    }
                }
                input
            })
    }

    fn decode_lenient(bytes: &[u8]) -> Vec<Frame> {
        let mut decoder = Decoder::new(usize::MAX);
        let mut out = VecDeque::new();
        decoder.decode(bytes, &mut out).expect("no limit");
        decoder.finish();
        out.into()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn round_trip_of_any_event(ev in any_event()) {
            let mut out = BytesMut::new();
            encode_event(&ev, &mut out);
            let expected = if ev == Event::default() {
                vec![]
            } else {
                vec![Frame::Event(normalise(&ev))]
            };
            prop_assert_eq!(decode(&out), expected);
        }

        #[test]
        fn round_trip_is_exact_for_decodable_events(ev in any_event()) {
            let ev = normalise(&ev);
            let mut out = BytesMut::new();
            encode_event(&ev, &mut out);
            if ev == Event::default() {
                prop_assert!(out.is_empty());
            } else {
                prop_assert_eq!(decode(&out), vec![Frame::Event(ev)]);
            }
        }

        /// The size a caller reserves is enough for one-line values, and exact when no
        /// value is empty or holds a NUL and there is no `retry` (whose digits it counts
        /// at their widest).
        #[test]
        fn the_length_estimate_covers_one_line_values(ev in any_event()) {
            let one_line = |v: Option<String>| v.map(|v| v.replace(['\r', '\n'], ""));
            let ev = Event {
                id: one_line(ev.id),
                event: one_line(ev.event),
                data: one_line(ev.data),
                retry: ev.retry,
            };
            prop_assume!(ev != Event::default());
            let mut out = BytesMut::new();
            encode_event(&ev, &mut out);
            prop_assert!(out.len() <= event_len(&ev));
            let plain = |v: &Option<String>| v.as_ref().is_none_or(|v| !v.is_empty() && !v.contains('\0'));
            if ev.retry.is_none() && plain(&ev.id) && plain(&ev.event) && plain(&ev.data) {
                prop_assert_eq!(out.len(), event_len(&ev));
            }
            let mut comment = BytesMut::new();
            let text = ev.data.clone().unwrap_or_default();
            encode_comment(&text, &mut comment);
            prop_assert_eq!(comment.len(), frame_len(&Frame::Comment(text)));
        }

        #[test]
        fn round_trip_of_any_comment(text in text()) {
            let mut out = BytesMut::new();
            encode_comment(&text, &mut out);
            let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
            let expected: Vec<Frame> =
                normalised.split('\n').map(|line| Frame::Comment(line.to_owned())).collect();
            prop_assert_eq!(decode(&out), expected);
        }

        #[test]
        fn decode_encode_decode_is_a_fixed_point(input in sse_input()) {
            let frames = decode_lenient(&input);
            let encoded = encode_all(&frames);
            let again = decode(&encoded);
            prop_assert_eq!(&again, &frames);
            prop_assert_eq!(encode_all(&again), encoded);
        }
    }
}
