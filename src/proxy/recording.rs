//! The proxy's side of `--record`: one [`TapeStream`] per exchange turns what happens
//! into tape records. Only built when recording is on; the records go to the
//! recorder's queue and are written elsewhere (see `tape::Recorder`).

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;

use crate::plugin::{Step, StreamMeta};
use crate::sse::Event;
use crate::tape::format::{self, REQUEST_HEADERS, RESPONSE_HEADERS};
use crate::tape::{Record, Recorder, TapeEvent, TapeStep};

/// Records one exchange.
#[derive(Clone)]
pub(crate) struct TapeStream {
    recorder: Arc<Recorder>,
    stream: u64,
}

fn steps(steps: &[Step]) -> Vec<TapeStep> {
    steps.iter().map(TapeStep::from).collect()
}

impl TapeStream {
    pub(crate) fn new(recorder: Arc<Recorder>, stream: u64) -> Self {
        Self { recorder, stream }
    }

    /// The client's request, what the chain said about its body, and what went upstream
    /// (`None`: the proxy answered itself).
    pub(crate) fn request(
        &self,
        meta: &StreamMeta,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &Bytes,
        chain_steps: &[Step],
        sent: Option<&Bytes>,
    ) {
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        self.recorder.record(Record::Request {
            stream: self.stream,
            t_ms: self.recorder.t_ms(),
            method: meta.method.clone(),
            path: meta.path.clone(),
            query: query.map(str::to_string),
            rpc_method: meta.rpc_method.clone(),
            protocol_version: meta.protocol_version.clone(),
            headers: format::kept_headers(headers, REQUEST_HEADERS),
            body: text(body),
            steps: steps(chain_steps),
            sent: sent.map(text),
        });
    }

    /// The upstream's response head.
    pub(crate) fn response(&self, status: http::StatusCode, headers: &HeaderMap) {
        self.recorder.record(Record::Response {
            stream: self.stream,
            t_ms: self.recorder.t_ms(),
            status: status.as_u16(),
            headers: format::kept_headers(headers, RESPONSE_HEADERS),
        });
    }

    /// One upstream event (or JSON body), the chain's steps, what the client got.
    pub(crate) fn event(&self, received: Event, chain_steps: &[Step], sent: Option<&Event>) {
        let unchanged = sent == Some(&received);
        self.recorder.record(Record::Event {
            stream: self.stream,
            t_ms: self.recorder.t_ms(),
            received: TapeEvent::from(received),
            steps: steps(chain_steps),
            sent: if unchanged {
                None
            } else {
                sent.map(TapeEvent::from)
            },
            unchanged,
        });
    }

    /// A comment (keep-alive), passed as it was.
    pub(crate) fn comment(&self, text: &str) {
        self.recorder.record(Record::Comment {
            stream: self.stream,
            t_ms: self.recorder.t_ms(),
            text: text.to_string(),
        });
    }

    /// The end of the exchange: `complete`, `upstream-error`, `client-gone`, or
    /// `not-inspected` (a body passed unread, e.g. an error status).
    pub(crate) fn end(&self, outcome: &str, error: Option<String>) {
        self.recorder.record(Record::End {
            stream: self.stream,
            t_ms: self.recorder.t_ms(),
            outcome: outcome.to_string(),
            error,
        });
    }
}
