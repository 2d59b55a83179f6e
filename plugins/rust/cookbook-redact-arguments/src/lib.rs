//! Cookbook: redact arguments of a `tools/call` before the server sees them.
//!
//! Config: `{"arguments": ["password", "token"], "marker": "[redacted]"}` (`marker`
//! optional). In every `tools/call` going to the server, the value of each listed
//! argument is replaced by the marker (a string, whatever the value was); the other
//! arguments, and the order of every key, stay as the client sent them. Top-level
//! arguments only: a secret nested deeper needs a walk of the value (see
//! `sluice_plugin::each_string_mut`).

use serde::Deserialize;
use serde_json::Value;
use sluice_plugin::{Message, Plugin, Verdict, Want};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedactArguments {
    arguments: Vec<String>,
    #[serde(default = "default_marker")]
    marker: String,
}

fn default_marker() -> String {
    "[redacted]".to_string()
}

impl Plugin for RedactArguments {
    fn init(config: &str) -> Result<Self, String> {
        serde_json::from_str(config).map_err(|e| format!("cookbook-redact-arguments: config: {e}"))
    }

    fn wants(&self) -> Want {
        Want::methods(["tools/call"]).to_server()
    }

    fn on_message(&mut self, message: &Message) -> Verdict {
        message.edit_arguments(|arguments| {
            for name in &self.arguments {
                if let Some(value) = arguments.get_mut(name) {
                    *value = Value::String(self.marker.clone());
                }
            }
        })
    }
}

sluice_plugin::plugin!(RedactArguments);
