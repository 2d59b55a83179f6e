//! `powers-cost`: a cost fixture of contract 0.2 (world `plugin` of
//! `sluice:plugin@0.2.0`), built as `dist/powers-cost.wasm`, for `bench/micro.rs`.
//!
//! `on-message` makes the call into the host its config names (once per message, or n
//! times, below), then returns `pass`; next to `none` (no call: the same as
//! `passthrough-v2`) each row measures what that call adds to a message. One plugin for all of them so
//! that the rows differ in nothing else.
//!
//! Config (one word):
//! - `none` (or empty): no call;
//! - `data`: `message.data()`, the message's text copied into the plugin;
//! - `method`: `message.method()`, which makes the host read the message's JSON-RPC
//!   facts (a parse of its top level);
//! - `stream-id`: `context.stream-id()`, a number: the floor of a host call;
//! - `route`: `context.route()`, a string;
//! - `state-get`: `state.get("n")`;
//! - `state-add`: `state.add("n", 1, 0)`;
//! - `metrics-add`: `metrics.add("messages", "", 1)`;
//! - `interest`: `init` declares `interest.methods(["tools/call"])` and `on-message`
//!   makes no call: the host should not call it for any other message at all.
//!
//! A call word may end in `*<n>` (`route*16`): the call is made n times per message,
//! so that a cost smaller than the noise around one message shows as n times itself.

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
    StreamId,
    Route,
    StateGet,
    StateAdd,
    MetricsAdd,
}

thread_local! {
    static CALL: Cell<(Call, u32)> = const { Cell::new((Call::None, 1)) };
}

struct PowersCost;

impl Guest for PowersCost {
    fn init(config: String) -> Result<(), String> {
        let (word, times) = match config.trim().split_once('*') {
            Some((word, n)) => match n.parse::<u32>() {
                Ok(n) if n > 0 => (word, n),
                _ => return Err(format!("powers-cost: {n:?} is not a count")),
            },
            None => (config.trim(), 1),
        };
        let call = match word {
            "" | "none" => Call::None,
            "data" => Call::Data,
            "method" => Call::Method,
            "stream-id" => Call::StreamId,
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
        CALL.set((call, times));
        Ok(())
    }

    fn on_message(message: &Message) -> Verdict {
        // Each result is dropped at once: what it costs to ask, not to use the answer.
        let (call, times) = CALL.get();
        for _ in 0..times {
            match call {
                Call::None => {}
                Call::Data => drop(message.data()),
                Call::Method => drop(message.method()),
                Call::StreamId => drop(context::stream_id()),
                Call::Route => drop(context::route()),
                Call::StateGet => drop(state::get("n")),
                Call::StateAdd => drop(state::add("n", 1, 0)),
                Call::MetricsAdd => metrics::add("messages", "", 1),
            }
        }
        Verdict::Pass
    }
}

export!(PowersCost);
