//! Cookbook: edit a tool result, its text content and its `structuredContent`.
//!
//! Config: `{"find": "sk-live-", "replace": "sk-****-", "tools": ["get_account"]}`
//! (`tools` optional: every tool when absent). In the result of a `tools/call` of a
//! listed tool, every occurrence of `find` is replaced, in each text item and in every
//! string of `structuredContent`: a server that sends both (the MCP Python SDK does,
//! for a tool with an output schema; rmcp's `Json<T>` too) would otherwise leave the
//! same data unedited in the other. The edited result keeps its keys in the order the
//! server sent them.

use serde::Deserialize;
use sluice_plugin::{Message, Plugin, Verdict, Want, each_string_mut};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditResult {
    find: String,
    replace: String,
    #[serde(default)]
    tools: Option<Vec<String>>,
}

impl Plugin for EditResult {
    fn init(config: &str) -> Result<Self, String> {
        let config: EditResult = serde_json::from_str(config)
            .map_err(|e| format!("cookbook-edit-result: config: {e}"))?;
        if config.find.is_empty() {
            return Err("cookbook-edit-result: config: find is empty".into());
        }
        Ok(config)
    }

    // Both ways: the request names the tool (`params.name`), its answer does not.
    fn wants(&self) -> Want {
        Want::methods(["tools/call"])
    }

    fn on_message(&mut self, message: &Message) -> Verdict {
        if let Some(tools) = &self.tools {
            // For a result, the name of the tool its request called.
            if !message
                .tool_name()
                .is_some_and(|name| tools.iter().any(|t| t == name))
            {
                return Verdict::Pass;
            }
        }
        let (find, replace) = (&self.find, &self.replace);
        let mut edit = |text: &mut String| {
            if text.contains(find.as_str()) {
                *text = text.replace(find.as_str(), replace);
            }
        };
        message.edit_tool_result(|result| {
            result.texts_mut().for_each(&mut edit);
            if let Some(structured) = result.structured_mut() {
                each_string_mut(structured, &mut edit);
            }
        })
    }
}

sluice_plugin::plugin!(EditResult);
