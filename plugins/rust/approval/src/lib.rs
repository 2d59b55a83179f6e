//! `approval`: holds a `tools/call` of chosen tools until an operator approves or denies
//! it on the admin API; or, as fault injection, delays messages (the hold power).
//!
//! Config, approval mode:
//! `{"tools": ["<name>", ...], "timeout_ms": 30000, "on_timeout": "drop"}`.
//! A `tools/call` of a listed tool is held with `approval: true` and the reason
//! "approve tools/call <name>". It shows up in `GET /admin/holds`;
//! `POST /admin/holds/<id>/approve` lets it go on to the server, `.../deny` drops it
//! (the client gets a JSON-RPC error naming the plugin). With no decision within
//! `timeout_ms` (default 30000; the host caps it), `on_timeout` decides: `"drop"`
//! (default) or `"pass"`.
//!
//! Config, delay mode: `{"delay_ms": 200}`, optionally with `"methods": [...]` and
//! `"direction": "to-server" | "to-client"`. Every message the plugin sees (of those
//! methods, or every message; both ways unless `direction` says one) waits `delay_ms`
//! and then goes on: a slow network or server, for testing clients.
//!
//! A hold never blocks the proxy: other streams and exchanges go on; only the messages
//! behind the held one in the same stream wait (order is kept).

use std::cell::RefCell;

use serde_json::Value;

wit_bindgen::generate!({
    world: "plugin",
    path: "../../../wit",
});

use exports::sluice::plugin::handler::Guest;
use sluice::plugin::interest;
use sluice::plugin::types::{Direction, Hold, Kind, Message, OnTimeout, Verdict};

enum Mode {
    /// Hold calls of these tools for an operator's decision.
    Approve {
        tools: Vec<String>,
        timeout_ms: u64,
        on_timeout: OnTimeout,
    },
    /// Delay every message of interest by this many milliseconds.
    Delay { delay_ms: u64 },
}

thread_local! {
    static MODE: RefCell<Mode> = const { RefCell::new(Mode::Delay { delay_ms: 0 }) };
}

fn strings(value: Value, key: &str) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(format!("approval: {key} must be an array of strings"));
    };
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            _ => Err(format!("approval: {key} must be an array of strings")),
        })
        .collect()
}

fn millis(value: Option<Value>, key: &str, default: u64) -> Result<u64, String> {
    match value {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("approval: {key} must be a positive integer")),
    }
}

/// The mode, and the methods to declare interest in (none: every message).
/// The mode, the methods of interest and the directions of interest (to-server,
/// to-client).
type Parsed = (Mode, Option<Vec<String>>, (bool, bool));

fn parse_config(text: &str) -> Result<Parsed, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("approval: invalid config JSON: {e}"))?;
    let Value::Object(mut top) = value else {
        return Err("approval: the config is not a JSON object".into());
    };
    let tools = top
        .remove("tools")
        .map(|v| strings(v, "tools"))
        .transpose()?;
    let delay = top.remove("delay_ms");
    let methods = top
        .remove("methods")
        .map(|v| strings(v, "methods"))
        .transpose()?;
    let timeout = top.remove("timeout_ms");
    let on_timeout = top.remove("on_timeout");
    let direction = match top.remove("direction") {
        None => None,
        Some(Value::String(d)) if d == "to-server" => Some((true, false)),
        Some(Value::String(d)) if d == "to-client" => Some((false, true)),
        Some(_) => return Err("approval: direction must be \"to-server\" or \"to-client\"".into()),
    };
    if let Some(key) = top.keys().next() {
        return Err(format!("approval: unknown config key {key:?}"));
    }
    match (tools, delay) {
        (Some(tools), None) => {
            if tools.is_empty() {
                return Err("approval: tools is empty".into());
            }
            if methods.is_some() || direction.is_some() {
                return Err(
                    "approval: methods and direction are for delay mode; tools holds tools/call"
                        .into(),
                );
            }
            let on_timeout = match on_timeout.as_ref().map(|v| v.as_str()) {
                None | Some(Some("drop")) => OnTimeout::Drop,
                Some(Some("pass")) => OnTimeout::Pass,
                _ => return Err("approval: on_timeout must be \"drop\" or \"pass\"".into()),
            };
            let timeout_ms = millis(timeout, "timeout_ms", 30_000)?;
            let methods = Some(vec!["tools/call".to_string()]);
            Ok((
                Mode::Approve {
                    tools,
                    timeout_ms,
                    on_timeout,
                },
                methods,
                // A tool call goes to the server.
                (true, false),
            ))
        }
        (None, Some(delay)) => {
            if timeout.is_some() || on_timeout.is_some() {
                return Err("approval: timeout_ms and on_timeout are for approval mode".into());
            }
            Ok((
                Mode::Delay {
                    delay_ms: millis(Some(delay), "delay_ms", 0)?,
                },
                methods,
                direction.unwrap_or((true, true)),
            ))
        }
        (Some(_), Some(_)) => Err("approval: set tools or delay_ms, not both".into()),
        (None, None) => Err("approval: set tools (approval) or delay_ms (delay)".into()),
    }
}

/// `params.name` of a `tools/call` request.
fn tool_name(data: &str) -> Option<String> {
    let request: Value = serde_json::from_str(data).ok()?;
    Some(request.get("params")?.get("name")?.as_str()?.to_string())
}

struct Approval;

impl Guest for Approval {
    fn init(config: String) -> Result<(), String> {
        let (mode, methods, (to_server, to_client)) = parse_config(&config)?;
        interest::directions(to_server, to_client);
        if let Some(methods) = methods {
            interest::methods(&methods);
        }
        MODE.with(|m| *m.borrow_mut() = mode);
        Ok(())
    }

    fn on_message(message: &Message) -> Verdict {
        MODE.with(|m| match &*m.borrow() {
            Mode::Delay { delay_ms } => Verdict::Hold(Hold {
                timeout_ms: *delay_ms,
                approval: false,
                reason: "delay".into(),
                on_timeout: OnTimeout::Pass,
            }),
            Mode::Approve {
                tools,
                timeout_ms,
                on_timeout,
            } => {
                if message.kind() != Kind::Request || message.direction() != Direction::ToServer {
                    return Verdict::Pass;
                }
                match tool_name(&message.data()) {
                    Some(name) if tools.contains(&name) => Verdict::Hold(Hold {
                        timeout_ms: *timeout_ms,
                        approval: true,
                        reason: format!("approve tools/call {name}"),
                        on_timeout: *on_timeout,
                    }),
                    _ => Verdict::Pass,
                }
            }
        })
    }
}

export!(Approval);
