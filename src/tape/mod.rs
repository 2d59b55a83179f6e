//! Tapes: recorded traffic. `--record DIR` writes them ([`Recorder`]), `sluice tape
//! serve` plays one back as an upstream ([`serve`]), and `sluice plugin test` runs
//! plugins over one offline. The format is [`format`], documented in `docs/tapes.md`.

pub(crate) mod create;
pub mod format;
pub mod harness;
pub mod observe;
pub mod recorder;
pub mod serve;
pub mod stream;

pub use format::{Record, TapeError, TapeEvent, TapeStep};
pub use observe::Recording;
pub use recorder::{
    MAX_BYTES, QUEUE, QUEUE_BYTES, REDACT_QUERY, RecordError, Recorder, TapeSettings,
};
pub use stream::TapeStream;
