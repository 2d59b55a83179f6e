//! `trap`: a deliberately broken plugin, for testing the host's failure policy.
//!
//! It implements the `filter` world and panics on every event. The plugins are built
//! with `panic = "abort"`, so the panic becomes a WebAssembly trap (`unreachable`). The
//! host must survive it: by default (fail-open) the event passes unchanged and the next
//! event gets a fresh instance.

wit_bindgen::generate!({
    world: "filter",
    path: "../../../wit/0.1.0-revised",
});

struct Trap;

impl Guest for Trap {
    fn on_event(event: SseEvent) -> Verdict {
        panic!("trap plugin: deliberate panic on event ({} bytes of data)", event.data.len());
    }
}

export!(Trap);
