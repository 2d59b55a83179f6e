//! `--record` as an observer of the proxy: each exchange gets a [`TapeStream`].

use std::sync::Arc;

use http::{HeaderMap, StatusCode};

use super::{Recorder, TapeStream};
use crate::observe::{ExchangeObserver, Judged, Observe, RequestSeen, StreamEnd};
use crate::plugin::{Chain, StreamMeta};
use crate::sse::Event;

/// Records every exchange on the recorder's tape.
pub struct Recording(pub Arc<Recorder>);

impl Observe for Recording {
    fn exchange(&self, meta: &StreamMeta, chain: &Chain) -> Option<Box<dyn ExchangeObserver>> {
        let names = chain.plugin_names().clone();
        Some(Box::new(
            TapeStream::new(self.0.clone(), meta.stream_id, names).of_chain(chain),
        ))
    }
}

impl ExchangeObserver for TapeStream {
    fn wants_steps(&self) -> bool {
        true
    }

    fn wants_upstream_bytes(&self) -> bool {
        true
    }

    fn request(&mut self, r: &RequestSeen<'_>) {
        TapeStream::request(self, r.meta, r.query, r.headers, r.body, r.steps, r.sent);
    }

    fn response(&mut self, status: StatusCode, headers: &HeaderMap) {
        TapeStream::response(self, status, headers);
    }

    fn upstream_bytes(&mut self, bytes: &[u8]) {
        self.raw(bytes);
    }

    fn comment(&mut self, text: &str) {
        TapeStream::comment(self, text);
    }

    fn event(&mut self, event: &Judged<'_>) {
        TapeStream::event(self, event.steps, event.sent, event.rewritten);
    }

    fn json_response(&mut self, received: &Event, judged: &Judged<'_>) {
        self.whole_event(received, judged.steps, judged.sent);
    }

    fn end(&mut self, end: &StreamEnd<'_>) {
        let error = match end {
            StreamEnd::UpstreamFailed { reason, .. } => Some(reason.to_string()),
            _ => None,
        };
        TapeStream::end(self, end.outcome(), error);
    }
}
