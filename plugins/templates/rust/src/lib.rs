//! {{name}}: a sluice plugin (world `plugin` of sluice:plugin@0.2.0), in Rust on the
//! `sluice-plugin` SDK.
//!
//! What it does: refuses the `tools/call` of every tool named in its configuration with
//! a JSON-RPC error, and lets every other message through.
//!
//!   config: {"deny": ["delete_file", "shell"]}      (empty config: deny nothing)
//!
//! `wants` tells sluice it wants only `tools/call` requests going to the server, so
//! every other message passes it without a call. sluice makes a fresh plugin value per
//! exchange (`init`, then `on_message` for each message it wants): keep `init` cheap.

use sluice_plugin::{Message, Plugin, Verdict, Want, refuse};

const NAME: &str = "{{name}}";
/// The JSON-RPC error code of a refusal (MCP servers use -32000 to -32099).
const DENIED_CODE: i64 = -32001;

struct Deny {
    /// The tools to refuse.
    tools: Vec<String>,
}

impl Plugin for Deny {
    fn init(config: &str) -> Result<Self, String> {
        if config.trim().is_empty() {
            return Ok(Deny { tools: Vec::new() }); // deny nothing
        }
        let config: serde_json::Value =
            serde_json::from_str(config).map_err(|e| format!("{NAME}: invalid config JSON: {e}"))?;
        let object = config
            .as_object()
            .ok_or(format!(r#"{NAME}: the config must be a JSON object like {{"deny": ["tool"]}}"#))?;
        if let Some(key) = object.keys().find(|k| *k != "deny") {
            return Err(format!(r#"{NAME}: unknown config key {key:?}; expected "deny""#));
        }
        let bad = || format!(r#"{NAME}: "deny" must be an array of tool names"#);
        let tools = match object.get("deny") {
            None => Vec::new(),
            Some(list) => list
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|t| t.as_str().map(String::from).ok_or_else(bad))
                .collect::<Result<_, _>>()?,
        };
        Ok(Deny { tools })
    }

    fn wants(&self) -> Want {
        Want::methods(["tools/call"]).to_server()
    }

    fn on_message(&mut self, message: &Message) -> Verdict {
        // A tools/call request's params.name (None for anything else).
        match message.tool_call() {
            Some(call) if self.tools.iter().any(|t| t == call.name) => {
                refuse(DENIED_CODE, format!("tool {} is denied by {NAME}", call.name))
            }
            _ => Verdict::Pass,
        }
    }
}

sluice_plugin::plugin!(Deny);
