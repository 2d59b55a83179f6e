//! `passthrough`: the smallest possible sluice plugin.
//!
//! It implements the `batch-filter` world (the `filter` world's `on-event`, plus the
//! optional `on-events` that takes every event that arrived together in one call) and
//! lets every event through unchanged. Use it as a template, or to measure the proxy's
//! per-plugin overhead. Drop `on_events` and name the world `filter` for the very
//! smallest plugin: sluice then calls `on_event` once per event.

wit_bindgen::generate!({
    world: "batch-filter",
    path: "../../../wit/0.1.0-revised",
});

struct Passthrough;

impl Guest for Passthrough {
    fn on_event(_event: SseEvent) -> Verdict {
        Verdict::Pass
    }

    fn on_events(events: Vec<SseEvent>) -> Vec<Verdict> {
        events.iter().map(|_| Verdict::Pass).collect()
    }
}

export!(Passthrough);
