//! The tape reader against tapes from elsewhere.
//!
//! `sluice tape serve` and `sluice plugin test` read tapes someone else may have written (a
//! bug report, a colleague's recording), so every length, offset and count in one is hostile:
//! the reader must answer any input with records or an error, without panicking, looping for
//! ever or allocating from an unchecked length. What it accepts is then given to the replay
//! server's setup (`Replay::new`), which must not panic either.
//!
//! Input layout: the tape's lines up to the first NUL byte (JSON cannot hold a raw NUL), the
//! data file's bytes after it; without a NUL, no data file.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::tape::Record;
use sluice::tape::format::read_bytes;
use sluice::tape::serve::Replay;

fuzz_target!(|input: &[u8]| {
    let (tape, data) = match input.iter().position(|&b| b == 0) {
        Some(at) => (&input[..at], Some(&input[at + 1..])),
        None => (input, None),
    };
    let Ok(records) = read_bytes(tape, data) else {
        return;
    };
    let data_len = data.map_or(0, <[u8]>::len);
    let mut resolved = 0usize;
    for record in &records {
        assert!(
            !matches!(record, Record::Raw { .. } | Record::Passed { .. }),
            "read() left a raw or passed record: {record:?}"
        );
        if let Record::Event { received, sent, .. } = record {
            for event in std::iter::once(received).chain(sent) {
                assert!(event.data_at.is_none(), "data_at left unresolved");
            }
            if let Some(data) = &received.data {
                resolved += data.len();
            }
        }
    }
    // Events decoded from raw bytes hold at most those bytes (each resolved once); events
    // whose data was inline in the tape hold at most the tape's text. Lossy UTF-8 turns one
    // byte into three at most.
    assert!(
        resolved <= 3 * (data_len + tape.len()),
        "{resolved} bytes of event data from {} + {} bytes of input",
        tape.len(),
        data_len
    );
    let _ = Replay::new(&records, true);
});
