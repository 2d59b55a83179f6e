//! `passthrough`: the smallest possible sluice plugin.
//!
//! It implements the `filter` world (a single `on-event` export) and lets every event
//! through unchanged. Use it as a template, or to measure the proxy's per-plugin overhead.

wit_bindgen::generate!({
    world: "filter",
    path: "../../../wit",
});

struct Passthrough;

impl Guest for Passthrough {
    fn on_event(_event: SseEvent) -> Verdict {
        Verdict::Pass
    }
}

export!(Passthrough);
