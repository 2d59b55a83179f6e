//! `passthrough-v2`: the smallest plugin of contract 0.2 (world `plugin` of
//! `sluice:plugin@0.2.0`), built as `dist/passthrough-v0.2.wasm`.
//!
//! `on-message` returns `pass` without reading the message: the host copies nothing
//! into the guest, so the call costs only the crossing. Next to `passthrough` (0.1,
//! whose `on-event` receives a copy of every event) it measures what 0.2's lazy message
//! saves per event. `init` accepts any configuration and ignores it.

use exports::sluice::plugin::handler::Guest;
use sluice::plugin::types::{Message, Verdict};

wit_bindgen::generate!({
    world: "plugin",
    path: "../../../wit/plugin.wit",
});

struct Passthrough;

impl Guest for Passthrough {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn on_message(_message: &Message) -> Verdict {
        Verdict::Pass
    }
}

export!(Passthrough);
