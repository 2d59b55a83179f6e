//! `pin-tools`: notices when a server changes a tool it already showed (a "rug pull":
//! a tool approved as harmless whose description or schema later turns into
//! instructions for the model).
//!
//! On first sight of each tool in a `tools/list` result, its definition's digest
//! (SHA-256 of title, description, inputSchema, outputSchema, annotations; see
//! [`digest`]) is pinned in the state store, which is per plugin name and route, so per
//! upstream. Afterwards, a listed tool whose digest differs from its pin is, with
//! `"mode": "drop"` (the default), removed from the list, and a `tools/call` of it is
//! refused until a list shows the pinned definition again; with `"mode": "flag"`, it
//! passes with its description prefixed by a marker. Either way a warning is logged and
//! `changed{label=<tool>}` counted. A tool first seen after the route's first list is
//! pinned too, or flagged (`"new": "flag"`).
//!
//! Config (JSON, all optional): `{"mode": "drop" | "flag", "new": "pin" | "flag",
//! "ttl_secs": 0, "marker": "[changed since first seen] "}`. A pin lives `ttl_secs`
//! (0: the operator's `state.max_ttl_secs`, the cap of any value); when it expires the
//! definition then listed is pinned anew. The store is in memory: pins are per route
//! and per sluice process. See README.md.

mod digest;

use serde::Deserialize;
use serde_json::Value;
use sluice_plugin::{Message, Plugin, Verdict, Want, metrics, refuse, state};

/// The JSON-RPC error of a refused call (the code MCP servers use for an unknown tool).
const REFUSED: i64 = -32602;
const DEFAULT_MARKER: &str = "[changed since first seen] ";
const DEFAULT_NEW_MARKER: &str = "[new since first seen] ";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Drop,
    Flag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum New {
    Pin,
    Flag,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    mode: Option<Mode>,
    new: Option<New>,
    ttl_secs: Option<u64>,
    marker: Option<String>,
    new_marker: Option<String>,
}

struct PinTools {
    mode: Mode,
    new: New,
    /// The pins' time to live in ms; 0 is the operator's longest.
    ttl_ms: u64,
    marker: String,
    new_marker: String,
}

/// What a `tools/list` showed about one tool.
enum Seen {
    Unchanged,
    Pinned,
    New,
    Changed,
}

fn pin_key(tool: &str) -> String {
    format!("pin:{tool}")
}

/// Set (drop mode) while a tool's listed definition differs from its pin: its calls
/// are refused. Cleared when a list shows the pinned definition again.
fn changed_key(tool: &str) -> String {
    format!("changed:{tool}")
}

/// Set once the route's first list was pinned: a tool unpinned after it is new.
const SEEN_KEY: &str = "seen";

impl PinTools {
    /// Compares one listed tool with its pin (pinning it if it has none).
    fn see(&self, name: &str, digest: &str, first_list: bool) -> Seen {
        match state::get(&pin_key(name)) {
            Some(pinned) if pinned == digest => {
                if self.mode == Mode::Drop && state::get(&changed_key(name)).is_some() {
                    state::remove(&changed_key(name));
                }
                Seen::Unchanged
            }
            Some(_) => {
                if self.mode == Mode::Drop
                    && let Err(e) = state::set(&changed_key(name), "1", self.ttl_ms)
                {
                    // The list still loses the tool; only its calls cannot be refused.
                    sluice_plugin::warn!("pin-tools: cannot mark {name} as changed: {e:?}");
                }
                Seen::Changed
            }
            None => {
                if let Err(e) = state::set(&pin_key(name), digest, self.ttl_ms) {
                    metrics::add("unpinned", "", 1);
                    sluice_plugin::warn!("pin-tools: cannot pin {name}: {e:?}; it passes unpinned");
                }
                if self.new == New::Flag && !first_list {
                    Seen::New
                } else {
                    Seen::Pinned
                }
            }
        }
    }

    fn on_list(&self, message: &Message) -> Verdict {
        let first_list = self.new == New::Flag && state::get(SEEN_KEY).is_none();
        let mut dropped = Vec::new();
        let verdict = message.edit(|value| {
            let Some(tools) = value
                .get_mut("result")
                .and_then(|r| r.get_mut("tools"))
                .and_then(Value::as_array_mut)
            else {
                return;
            };
            for tool in tools.iter_mut() {
                let Some(name) = tool.get("name").and_then(|n| n.as_str()).map(String::from) else {
                    continue;
                };
                let digest = digest::of_tool(tool);
                let marker = match self.see(&name, &digest, first_list) {
                    Seen::Unchanged => continue,
                    Seen::Pinned => {
                        metrics::add("pinned", "", 1);
                        continue;
                    }
                    Seen::New => {
                        metrics::add("new", &name, 1);
                        sluice_plugin::warn!("pin-tools: new tool {name} since the first list");
                        &self.new_marker
                    }
                    Seen::Changed => {
                        metrics::add("changed", &name, 1);
                        sluice_plugin::warn!(
                            "pin-tools: the definition of {name} changed since it was pinned; {}",
                            if self.mode == Mode::Drop {
                                "dropped from the list"
                            } else {
                                "flagged"
                            }
                        );
                        if self.mode == Mode::Drop {
                            dropped.push(name);
                            continue;
                        }
                        &self.marker
                    }
                };
                let description = tool
                    .get("description")
                    .and_then(|d| d.as_str())
                    .unwrap_or("");
                tool["description"] = format!("{marker}{description}").into();
            }
            if !dropped.is_empty() {
                tools.retain(|tool| {
                    let name = tool.get("name").and_then(Value::as_str);
                    !dropped.iter().any(|d| Some(d.as_str()) == name)
                });
            }
        });
        if first_list && let Err(e) = state::set(SEEN_KEY, "1", self.ttl_ms) {
            sluice_plugin::warn!("pin-tools: cannot note the first list: {e:?}");
        }
        verdict
    }
}

impl Plugin for PinTools {
    fn init(config: &str) -> Result<Self, String> {
        let config: Config = if config.trim().is_empty() {
            serde_json::from_str("{}").expect("an empty object")
        } else {
            serde_json::from_str(config).map_err(|e| format!("pin-tools: invalid config: {e}"))?
        };
        let ttl_ms = config
            .ttl_secs
            .unwrap_or(0)
            .checked_mul(1000)
            .ok_or("pin-tools: ttl_secs is too large")?;
        Ok(PinTools {
            mode: config.mode.unwrap_or(Mode::Drop),
            new: config.new.unwrap_or(New::Pin),
            ttl_ms,
            marker: config.marker.unwrap_or_else(|| DEFAULT_MARKER.into()),
            new_marker: config
                .new_marker
                .unwrap_or_else(|| DEFAULT_NEW_MARKER.into()),
        })
    }

    fn wants(&self) -> Want {
        match self.mode {
            // Calls are refused only in drop mode.
            Mode::Drop => Want::methods(["tools/list", "tools/call"]),
            Mode::Flag => Want::methods(["tools/list"]).to_client(),
        }
    }

    fn on_message(&mut self, message: &Message) -> Verdict {
        if let Some(call) = message.tool_call() {
            if self.mode == Mode::Drop && state::get(&changed_key(call.name)).is_some() {
                metrics::add("refused", call.name, 1);
                return refuse(
                    REFUSED,
                    format!(
                        "tool {} changed since it was first seen and is not callable (pin-tools)",
                        call.name
                    ),
                );
            }
            return Verdict::Pass;
        }
        if message.is_tools_list_result() {
            return self.on_list(message);
        }
        Verdict::Pass
    }
}

sluice_plugin::plugin!(PinTools);
