//! Server-Sent Events: the one SSE implementation of the proxy.
//!
//! Every byte the proxy relays goes through here: the [`Decoder`] turns upstream chunks into
//! [`Frame`]s, interceptors work on those, and the encoder writes them back. Keeping decoding,
//! buffering and encoding in a single module means there is exactly one interpretation of the
//! wire format: the bytes the proxy inspects are the bytes it forwards, so a plugin or a hostile
//! upstream cannot exploit a disagreement between two parsers (for example to smuggle a field
//! past an interceptor, or to inject one through a rewritten value).
//!
//! The decoder follows the WHATWG HTML "event stream interpretation", with the deviations a
//! proxy needs (comments and field-only blocks are kept, events are size-limited); the encoder
//! guarantees that anything the decoder produces round-trips exactly.

mod decoder;
mod encoder;
mod event;

pub use decoder::{DecodeError, Decoder};
pub use encoder::{encode_comment, encode_event, encode_frame, event_len, frame_len};
pub use event::{Event, Frame};
