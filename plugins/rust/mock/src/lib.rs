//! `mock`: answers `tools/call` requests itself (the `respond` power).
//!
//! Config: `{"tools": {"<name>": <result JSON>}, "errors": {"<name>": {"code": -32001,
//! "message": "..."}}}`. A `tools/call` of a tool named under `tools` is answered with
//! that `result`; one named under `errors` with that JSON-RPC error. The upstream never
//! sees those requests. Everything else passes. The answer still goes through the rest of
//! the chain towards the client, so a redactor after `mock` sees it like any response.
//!
//! What it shows: `interest` (only `tools/call`, only towards the server, so the host
//! never calls it for anything else) and `respond` with a result or an error.

use std::cell::RefCell;

use serde_json::{Map, Value};

wit_bindgen::generate!({
    world: "plugin",
    path: "../../../wit",
});

use exports::sluice::plugin::handler::Guest;
use sluice::plugin::interest;
use sluice::plugin::types::{Direction, Kind, Message, RpcError, Verdict};

/// The parsed config. A fresh instance serves each exchange, so `init` parses it again
/// for every exchange: keep configs small (a map lookup per call is all we do here).
#[derive(Default)]
struct Config {
    /// Tool name -> the `result` to answer with.
    tools: Map<String, Value>,
    /// Tool name -> the error to answer with.
    errors: Vec<(String, RpcError)>,
}

thread_local! {
    static CONFIG: RefCell<Config> = RefCell::new(Config::default());
}

fn parse_error(name: &str, value: &Value) -> Result<RpcError, String> {
    let code = value
        .get("code")
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("mock: errors.{name}.code must be an integer"))?;
    let message = value
        .get("message")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("mock: errors.{name}.message must be a string"))?;
    // `data` is optional and any JSON; the host wants it as JSON text.
    let data = value.get("data").map(Value::to_string);
    Ok(RpcError {
        code,
        message: message.to_string(),
        data,
    })
}

fn parse_config(text: &str) -> Result<Config, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("mock: invalid config JSON: {e}"))?;
    let Value::Object(mut top) = value else {
        return Err("mock: the config is not a JSON object".into());
    };
    let tools = match top.remove("tools") {
        None => Map::new(),
        Some(Value::Object(tools)) => tools,
        Some(_) => return Err("mock: tools must be an object".into()),
    };
    let errors = match top.remove("errors") {
        None => Vec::new(),
        Some(Value::Object(errors)) => errors
            .iter()
            .map(|(name, v)| Ok((name.clone(), parse_error(name, v)?)))
            .collect::<Result<_, String>>()?,
        Some(_) => return Err("mock: errors must be an object".into()),
    };
    if let Some(key) = top.keys().next() {
        return Err(format!("mock: unknown config key {key:?}"));
    }
    if tools.is_empty() && errors.is_empty() {
        return Err("mock: nothing to mock (tools and errors are both empty)".into());
    }
    Ok(Config { tools, errors })
}

/// `params.name` of a `tools/call` request.
fn tool_name(data: &str) -> Option<String> {
    let request: Value = serde_json::from_str(data).ok()?;
    Some(request.get("params")?.get("name")?.as_str()?.to_string())
}

struct Mock;

impl Guest for Mock {
    fn init(config: String) -> Result<(), String> {
        let config = parse_config(&config)?;
        CONFIG.with(|c| *c.borrow_mut() = config);
        // Only client requests named tools/call reach on_message; responses, other
        // methods and everything going to the client pass without a call into us.
        interest::methods(&["tools/call".to_string()]);
        interest::directions(true, false);
        Ok(())
    }

    fn on_message(message: &Message) -> Verdict {
        // `respond` is only allowed for a request going to the server; interest already
        // narrows it to tools/call to-server, but a notification of that name could come.
        if message.kind() != Kind::Request || message.direction() != Direction::ToServer {
            return Verdict::Pass;
        }
        // Reading `data` copies the message into the plugin: done only now, once we know
        // it is a request we may answer.
        let Some(name) = tool_name(&message.data()) else {
            return Verdict::Pass;
        };
        CONFIG.with(|c| {
            let config = c.borrow();
            if let Some(result) = config.tools.get(&name) {
                // The host adds `jsonrpc` and the request's `id`.
                return Verdict::Respond(Ok(result.to_string()));
            }
            if let Some((_, error)) = config.errors.iter().find(|(n, _)| *n == name) {
                return Verdict::Respond(Err(error.clone()));
            }
            Verdict::Pass
        })
    }
}

export!(Mock);
