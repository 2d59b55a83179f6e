//! `powers-cost`: a cost fixture of contract 0.2 (world `plugin` of
//! `sluice:plugin@0.2.0`), built as `dist/powers-cost.wasm`, for `bench/micro.rs`.
//!
//! `on-message` makes exactly one call into the host per message, the one its config
//! names, then returns `pass`; next to `none` (no call: the same as `passthrough-v2`)
//! each row measures what that call adds to a message. One plugin for all of them so
//! that the rows differ in nothing else.
//!
//! Config (one word):
//! - `none` (or empty): no call;
//! - `data`: `message.data()`, the message's text copied into the plugin;
//! - `method`: `message.method()`, which makes the host read the message's JSON-RPC
//!   facts (a parse of its top level);
//! - `route`: `context.route()`;
//! - `state-get`: `state.get("n")`;
//! - `state-add`: `state.add("n", 1, 0)`;
//! - `metrics-add`: `metrics.add("messages", "", 1)`;
//! - `interest`: `init` declares `interest.methods(["tools/call"])` and `on-message`
//!   makes no call: the host should not call it for any other message at all.

use std::cell::Cell;

use exports::sluice::plugin::handler::Guest;
use sluice::plugin::types::{Message, Verdict};
use sluice::plugin::{context, interest, metrics, state};

wit_bindgen::generate!({
    world: "plugin",
    path: "../../../wit/plugin.wit",
});

#[derive(Clone, Copy)]
enum Call {
    None,
    Data,
    Method,
    Route,
    StateGet,
    StateAdd,
    MetricsAdd,
}

thread_local! {
    static CALL: Cell<Call> = const { Cell::new(Call::None) };
}

struct PowersCost;

impl Guest for PowersCost {
    fn init(config: String) -> Result<(), String> {
        let call = match config.trim() {
            "" | "none" => Call::None,
            "data" => Call::Data,
            "method" => Call::Method,
            "route" => Call::Route,
            "state-get" => Call::StateGet,
            "state-add" => Call::StateAdd,
            "metrics-add" => Call::MetricsAdd,
            "interest" => {
                interest::methods(&["tools/call".to_string()]);
                Call::None
            }
            other => return Err(format!("powers-cost: unknown config {other:?}")),
        };
        CALL.set(call);
        Ok(())
    }

    fn on_message(message: &Message) -> Verdict {
        // Each result is dropped at once: what it costs to ask, not to use the answer.
        match CALL.get() {
            Call::None => {}
            Call::Data => drop(message.data()),
            Call::Method => drop(message.method()),
            Call::Route => drop(context::route()),
            Call::StateGet => drop(state::get("n")),
            Call::StateAdd => drop(state::add("n", 1, 0)),
            Call::MetricsAdd => metrics::add("messages", "", 1),
        }
        Verdict::Pass
    }
}

export!(PowersCost);
