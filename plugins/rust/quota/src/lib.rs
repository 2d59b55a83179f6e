//! `quota`: at most N `tools/call` per caller in each window of S seconds (the state
//! and metrics powers).
//!
//! Config: `{"calls": N, "per_secs": S}`. The caller is the token's subject when the
//! route has `[auth]`, else the client's address. Each call adds 1 to the caller's
//! counter in `state`, which every instance of the plugin shares (one per exchange, so
//! across sessions and connections). The counter's entry is created with a time to live
//! of S seconds and keeps it as it grows: a fixed window that starts at the caller's
//! first call. Call N+1 of a window is answered with the JSON-RPC error -32029 ("quota
//! of N calls per S s used up") and never reaches the server.
//!
//! Counters on `/metrics` (`sluice_plugin_counter_total{plugin="quota",...}`):
//! `calls{label=<tool>}` for each allowed call, `refused{label=""}` for each refusal.
//! The host bounds label values per counter, so one label per tool name is safe.
//!
//! If the store refuses the write (full, or the key too large), the call is refused too
//! (and logged): a quota that cannot count must not let everything through.

use std::cell::Cell;

use serde_json::Value;

wit_bindgen::generate!({
    world: "plugin",
    path: "../../../wit",
});

use exports::sluice::plugin::handler::Guest;
use sluice::plugin::log::{Level, log};
use sluice::plugin::types::{Direction, Kind, Message, RpcError, Verdict};
use sluice::plugin::{context, interest, metrics, state};

/// The JSON-RPC error code of a refusal (MCP servers use -32000..-32099 for their own).
const OVER_QUOTA: i64 = -32029;

thread_local! {
    /// (calls, per_secs); set by `init`.
    static LIMIT: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn positive(top: &serde_json::Map<String, Value>, key: &str) -> Result<u64, String> {
    match top.get(key).and_then(Value::as_u64) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(format!("quota: {key} must be a positive integer")),
    }
}

fn parse_config(text: &str) -> Result<(u64, u64), String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("quota: invalid config JSON: {e}"))?;
    let Value::Object(top) = value else {
        return Err("quota: the config is not a JSON object".into());
    };
    if let Some(key) = top.keys().find(|k| *k != "calls" && *k != "per_secs") {
        return Err(format!("quota: unknown config key {key:?}"));
    }
    let per_secs = positive(&top, "per_secs")?;
    if per_secs > u64::MAX / 1000 {
        return Err("quota: per_secs is too large".into());
    }
    Ok((positive(&top, "calls")?, per_secs))
}

/// Whose quota a call counts against. The prefixes keep a subject that looks like an
/// address from sharing a counter with that address.
fn caller_key() -> String {
    if let Some(subject) = context::caller().and_then(|c| c.subject) {
        return format!("sub:{subject}");
    }
    match context::client_address() {
        Some(address) => format!("addr:{address}"),
        None => "anonymous".into(),
    }
}

/// `params.name` of a `tools/call` request.
fn tool_name(data: &str) -> Option<String> {
    let request: Value = serde_json::from_str(data).ok()?;
    Some(request.get("params")?.get("name")?.as_str()?.to_string())
}

fn refuse(message: String) -> Verdict {
    metrics::add("refused", "", 1);
    Verdict::Respond(Err(RpcError {
        code: OVER_QUOTA,
        message,
        data: None,
    }))
}

struct Quota;

impl Guest for Quota {
    fn init(config: String) -> Result<(), String> {
        let limit = parse_config(&config)?;
        LIMIT.with(|l| l.set(limit));
        interest::methods(&["tools/call".to_string()]);
        interest::directions(true, false);
        Ok(())
    }

    fn on_message(message: &Message) -> Verdict {
        if message.kind() != Kind::Request || message.direction() != Direction::ToServer {
            return Verdict::Pass;
        }
        let (calls, per_secs) = LIMIT.with(Cell::get);
        // One atomic step in the host: concurrent exchanges never lose an increment.
        match state::add(&caller_key(), 1, per_secs * 1000) {
            Ok(n) if n > 0 && n as u64 <= calls => {
                let tool = tool_name(&message.data()).unwrap_or_default();
                metrics::add("calls", &tool, 1);
                Verdict::Pass
            }
            Ok(_) => refuse(format!("quota of {calls} calls per {per_secs} s used up")),
            Err(e) => {
                log(
                    Level::Warn,
                    &format!("quota: cannot count this call: {e:?}"),
                );
                refuse("quota: cannot count this call".into())
            }
        }
    }
}

export!(Quota);
