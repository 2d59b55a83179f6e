//! `caller-guard`: lets a `tools/call` through only when the caller holds the scope the
//! tool needs (the request-context power).
//!
//! Config: `{"tool_scopes": {"<tool>": "<scope>"}, "header": "x-team"}`; `header` is
//! optional. A `tools/call` of a listed tool is answered with the JSON-RPC error -32003
//! ("tools/call of <tool> needs scope <scope>") unless `context.caller()` lists that
//! scope; tools not listed, and every other method, pass. With no `[auth]` on the
//! route there is no caller, so a listed tool is always refused: the guard fails closed.
//!
//! Once per exchange it logs (info) what the context tells it: the caller's subject,
//! the route, the client address, the protocol version and, when `header` is set, that
//! header's value. The operator must grant the header to this plugin by name
//! (`headers = ["x-team"]` in its configuration); otherwise the host answers none.
//!
//! Each `context` function reads one fact, so the plugin asks for the caller only when
//! a listed tool is called, and for the logged facts once.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use serde_json::Value;

wit_bindgen::generate!({
    world: "plugin",
    path: "../../../wit",
});

use exports::sluice::plugin::handler::Guest;
use sluice::plugin::context;
use sluice::plugin::interest;
use sluice::plugin::log::{Level, log};
use sluice::plugin::types::{Direction, Kind, Message, RpcError, Verdict};

/// The JSON-RPC error code of a refusal (MCP servers use -32000..-32099 for their own).
const REFUSED: i64 = -32003;

#[derive(Default)]
struct Config {
    /// Tool name -> the scope a caller needs to call it.
    tool_scopes: BTreeMap<String, String>,
    /// A request header whose value is logged (it must be granted to the plugin).
    header: Option<String>,
}

thread_local! {
    static CONFIG: RefCell<Config> = RefCell::new(Config::default());
    /// A fresh instance serves each exchange, so this global means "logged in this
    /// exchange" without any reset.
    static LOGGED: Cell<bool> = const { Cell::new(false) };
}

fn parse_config(text: &str) -> Result<Config, String> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("caller-guard: invalid config JSON: {e}"))?;
    let Value::Object(mut top) = value else {
        return Err("caller-guard: the config is not a JSON object".into());
    };
    let Some(Value::Object(map)) = top.remove("tool_scopes") else {
        return Err("caller-guard: tool_scopes (an object) is required".into());
    };
    let mut tool_scopes = BTreeMap::new();
    for (tool, scope) in map {
        let Value::String(scope) = scope else {
            return Err(format!("caller-guard: tool_scopes.{tool} must be a string"));
        };
        tool_scopes.insert(tool, scope);
    }
    let header = match top.remove("header") {
        None => None,
        Some(Value::String(h)) if !h.is_empty() => Some(h),
        Some(_) => return Err("caller-guard: header must be a non-empty string".into()),
    };
    if let Some(key) = top.keys().next() {
        return Err(format!("caller-guard: unknown config key {key:?}"));
    }
    Ok(Config {
        tool_scopes,
        header,
    })
}

/// `params.name` of a `tools/call` request.
fn tool_name(data: &str) -> Option<String> {
    let request: Value = serde_json::from_str(data).ok()?;
    Some(request.get("params")?.get("name")?.as_str()?.to_string())
}

/// One line with what the host knows about this exchange.
fn log_context(header: Option<&str>) {
    let subject = context::caller()
        .and_then(|c| c.subject)
        .unwrap_or_else(|| "-".into());
    let mut line = format!(
        "caller-guard: subject={subject} route={} client={} protocol={}",
        context::route(),
        context::client_address().as_deref().unwrap_or("-"),
        context::protocol_version().as_deref().unwrap_or("-"),
    );
    if let Some(name) = header {
        let value = context::header(name);
        line.push_str(&format!(" {name}={}", value.as_deref().unwrap_or("-")));
    }
    log(Level::Info, &line);
}

struct CallerGuard;

impl Guest for CallerGuard {
    fn init(config: String) -> Result<(), String> {
        let config = parse_config(&config)?;
        CONFIG.with(|c| *c.borrow_mut() = config);
        interest::methods(&["tools/call".to_string()]);
        interest::directions(true, false);
        Ok(())
    }

    fn on_message(message: &Message) -> Verdict {
        if message.kind() != Kind::Request || message.direction() != Direction::ToServer {
            return Verdict::Pass;
        }
        CONFIG.with(|c| {
            let config = c.borrow();
            if !LOGGED.with(|l| l.replace(true)) {
                log_context(config.header.as_deref());
            }
            let Some(tool) = tool_name(&message.data()) else {
                return Verdict::Pass;
            };
            let Some(scope) = config.tool_scopes.get(&tool) else {
                return Verdict::Pass;
            };
            let granted = context::caller().is_some_and(|c| c.scopes.iter().any(|s| s == scope));
            if granted {
                Verdict::Pass
            } else {
                Verdict::Respond(Err(RpcError {
                    code: REFUSED,
                    message: format!("tools/call of {tool} needs scope {scope}"),
                    data: None,
                }))
            }
        })
    }
}

export!(CallerGuard);
