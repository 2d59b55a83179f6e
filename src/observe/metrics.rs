//! The metrics as an observer: the count of open streams and how each ended, events in
//! and out, upstream failures by stage.

use std::sync::Arc;

use super::{ExchangeObserver, Judged, Observe, StreamEnd, UpstreamStage};
use crate::metrics::{Metrics, StreamGuard};
use crate::plugin::{Chain, StreamMeta};

/// Counts every exchange into `Metrics` (what `/metrics` serves).
pub struct Counting(pub Arc<Metrics>);

impl Observe for Counting {
    fn exchange(&self, _: &StreamMeta, _: &Chain) -> Option<Box<dyn ExchangeObserver>> {
        Some(Box::new(Counted {
            metrics: self.0.clone(),
            stream: None,
        }))
    }
}

/// One exchange's counts.
struct Counted {
    metrics: Arc<Metrics>,
    /// While an SSE stream is open: keeps `streams_open` right however it ends (the
    /// guard counts `client_gone` when dropped untold).
    stream: Option<StreamGuard>,
}

impl ExchangeObserver for Counted {
    fn stream_opened(&mut self) {
        self.stream = Some(self.metrics.stream_opened());
    }

    fn event(&mut self, event: &Judged<'_>) {
        if let Some(stream) = &self.stream {
            stream.event_in();
            if event.sent.is_some() {
                stream.event_out();
            }
        }
    }

    fn end(&mut self, end: &StreamEnd<'_>) {
        match (end, &mut self.stream) {
            (StreamEnd::Complete | StreamEnd::Shutdown, Some(stream)) => stream.complete(),
            (
                StreamEnd::UpstreamFailed {
                    stage: UpstreamStage::Stream,
                    ..
                },
                Some(stream),
            ) => stream.upstream_broke(),
            (StreamEnd::UpstreamFailed { stage, .. }, _) => {
                self.metrics.upstream_error(stage.as_str());
            }
            _ => {}
        }
    }
}
