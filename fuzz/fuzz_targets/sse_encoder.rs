//! The SSE encoder on events rewritten by untrusted plugins.
//!
//! A plugin can put anything in a field, so the encoder is the last line of defence against
//! injection: no value may end its line early and smuggle in a field or a whole event. What
//! comes out must decode to the same frames, less exactly what the hygiene rules strip (CR and
//! LF from `id` and `event`, NUL from `id`; line breaks in `data` and comments normalised to
//! LF), and frames written back to back must not bleed into each other.

#![no_main]

use std::collections::VecDeque;

use arbitrary::Arbitrary;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice::sse::{Decoder, Event, Frame, encode_comment, encode_frame};

#[derive(Arbitrary, Debug)]
enum Input {
    Event {
        id: Option<String>,
        event: Option<String>,
        data: Option<String>,
        retry: Option<u64>,
    },
    Comment(String),
}

fuzz_target!(|inputs: Vec<Input>| {
    let frames: Vec<Frame> = inputs.into_iter().map(Frame::from).collect();

    let mut wire = BytesMut::new();
    let mut expected = Vec::new();
    for frame in &frames {
        let start = wire.len();
        encode_frame(frame, &mut wire);
        check_lines(frame, &wire[start..]);
        expected.extend(decodable(frame));
    }

    let mut decoder = Decoder::new(usize::MAX);
    let mut out = VecDeque::new();
    decoder.decode(&wire, &mut out).expect("no limit, no error");
    assert!(!decoder.finish(), "output does not end on a frame boundary");
    assert_eq!(
        Vec::from(out),
        expected,
        "decoded frames differ from the hygiene rules"
    );
});

impl From<Input> for Frame {
    fn from(input: Input) -> Self {
        match input {
            Input::Event {
                id,
                event,
                data,
                retry,
            } => Frame::Event(Event {
                id,
                event,
                data,
                retry,
            }),
            Input::Comment(text) => Frame::Comment(text),
        }
    }
}

/// The frames the decoder should give back, written independently of the encoder.
fn decodable(frame: &Frame) -> Vec<Frame> {
    let normal = |text: &str| text.replace("\r\n", "\n").replace('\r', "\n");
    match frame {
        Frame::Comment(text) => normal(text)
            .split('\n')
            .map(|line| Frame::Comment(line.to_owned()))
            .collect(),
        Frame::Event(event) if *event == Event::default() => Vec::new(),
        Frame::Event(event) => vec![Frame::Event(Event {
            id: event
                .id
                .as_ref()
                .map(|id| id.replace(['\r', '\n', '\0'], "")),
            event: event.event.as_ref().map(|e| e.replace(['\r', '\n'], "")),
            data: event.data.as_deref().map(normal),
            retry: event.retry,
        })],
    }
}

/// Checks the wire form line by line, since an injected line could still decode "right" by
/// accident: only the expected field names, each at most once except `data`, in the documented
/// order, and a blank line only at the end of an event.
fn check_lines(frame: &Frame, wire: &[u8]) {
    let text = std::str::from_utf8(wire).expect("the encoder writes UTF-8");
    if wire.is_empty() {
        assert!(matches!(frame, Frame::Event(e) if *e == Event::default()));
        return;
    }
    let body = text.strip_suffix('\n').expect("ends with a line end");
    assert!(!body.contains('\r'), "a CR on the wire: {text:?}");
    match frame {
        Frame::Comment(_) => {
            assert!(
                body.split('\n').all(|line| line.starts_with(':')),
                "{text:?}"
            );
        }
        Frame::Event(event) => {
            let lines = body
                .strip_suffix('\n')
                .expect("an event ends with a blank line");
            let names: Vec<&str> = lines
                .split('\n')
                .map(|line| line.split_once(':').expect("a field line has a colon").0)
                .collect();
            let mut order = vec![];
            order.extend(event.id.as_ref().map(|_| "id"));
            order.extend(event.event.as_ref().map(|_| "event"));
            order.extend(event.retry.as_ref().map(|_| "retry"));
            let data_lines = names.len() - order.len();
            assert_eq!(&names[..order.len()], order, "fields: {text:?}");
            assert!(
                names[order.len()..].iter().all(|&n| n == "data"),
                "{text:?}"
            );
            assert_eq!(data_lines > 0, event.data.is_some(), "{text:?}");
            if event.id.is_some() {
                assert!(
                    !lines.split('\n').next().unwrap().contains('\0'),
                    "NUL in id: {text:?}"
                );
            }
        }
    }
    // `encode_comment` and `encode_frame` agree on comments.
    if let Frame::Comment(comment) = frame {
        let mut direct = BytesMut::new();
        encode_comment(comment, &mut direct);
        assert_eq!(&direct[..], wire);
    }
}
