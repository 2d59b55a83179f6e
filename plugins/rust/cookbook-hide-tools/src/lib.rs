//! Cookbook: hide tools from `tools/list`.
//!
//! Config: `{"tools": ["get_secret", ...]}`. The named tools are taken out of every
//! `tools/list` result on its way to the client, so the client (and its model) never
//! learns of them; the rest of the result is written back with its keys in order.
//! Hiding is not refusing: a client that knows a name can still call it. Chain
//! `cookbook-refuse-tool` with the same names to refuse those calls too.

use serde::Deserialize;
use sluice_plugin::{Message, Plugin, Verdict, Want};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HideTools {
    tools: Vec<String>,
}

impl Plugin for HideTools {
    fn init(config: &str) -> Result<Self, String> {
        serde_json::from_str(config).map_err(|e| format!("cookbook-hide-tools: config: {e}"))
    }

    // The requests too (not `.to_client()`): the plugin then knows which answer is a
    // `tools/list` one even in a JSON-RPC batch, where the proxy does not.
    fn wants(&self) -> Want {
        Want::methods(["tools/list"])
    }

    fn on_message(&mut self, message: &Message) -> Verdict {
        message.edit_tools(|tools| tools.retain(|name, _| !self.tools.iter().any(|t| t == name)))
    }
}

sluice_plugin::plugin!(HideTools);
