//! Everything that talks to the upstream server: one outgoing HTTP transport, and the
//! reading side of its responses (SSE events through a bounded buffer, bounded JSON
//! bodies). Used by the proxy and by tools alike, so there is one way to reach an
//! upstream.

mod body;
mod client;
mod error;
mod events;

pub use body::read_to_limit;
pub use client::Http;
pub use error::{BodyError, UpstreamError};
pub use events::{SseEvents, StreamError};
