//! Cookbook: refuse a tool by name with a custom error.
//!
//! Config: `{"tools": ["delete_file", ...], "message": "optional text"}`. A `tools/call`
//! of a listed tool is answered with the JSON-RPC error -32001 and the message (default
//! "tool <name> is not allowed here"); the server never sees it. Everything else passes,
//! and the host does not even call the plugin for it (`wants`).

use sluice_plugin::{Message, Plugin, Verdict, Want, refuse};

struct RefuseTool {
    tools: Vec<String>,
    message: Option<String>,
}

impl Plugin for RefuseTool {
    fn init(config: &str) -> Result<Self, String> {
        let config: serde_json::Value =
            serde_json::from_str(config).map_err(|e| format!("invalid config: {e}"))?;
        let tools = config["tools"]
            .as_array()
            .ok_or("config: tools (a list of names) is required")?
            .iter()
            .map(|t| t.as_str().map(String::from).ok_or("config: tools holds names"))
            .collect::<Result<_, _>>()?;
        let message = config["message"].as_str().map(String::from);
        Ok(RefuseTool { tools, message })
    }

    fn wants(&self) -> Want {
        Want::methods(["tools/call"]).to_server()
    }

    fn on_message(&mut self, message: &Message) -> Verdict {
        match message.tool_name() {
            Some(name) if self.tools.iter().any(|t| t == name) => refuse(
                -32001,
                self.message
                    .clone()
                    .unwrap_or_else(|| format!("tool {name} is not allowed here")),
            ),
            _ => Verdict::Pass,
        }
    }
}

sluice_plugin::plugin!(RefuseTool);
