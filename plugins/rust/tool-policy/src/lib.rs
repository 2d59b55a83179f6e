//! `tool-policy`: which tools a caller may see and call.
//!
//! One decision ([`policy::Policy::allows`]) serves both ways: a `tools/list` result
//! going to the client loses the tools the caller may not use, and a `tools/call` of
//! such a tool is answered, without reaching the server, with the error a server gives
//! for a tool it does not have (`-32602 Unknown tool: <name>`): a hidden tool looks
//! like no tool at all, so a client cannot call what it was not shown nor learn what
//! is hidden by trying.
//!
//! Config: `{"deny": ["drop_*"], "allow": ["echo", "search_*"], "rules": [{"tools":
//! ["admin_*"], "allow_scopes": ["admin"], "allow_subjects": [...], "allow_clients":
//! [...]}]}`; see README.md. The caller is the route's validated identity
//! (`context::caller()`); without `[auth]` there is none, and rules admit nobody.
//!
//! Counters on `/metrics`: `hidden{label=<tool>}` per tool removed from a list,
//! `refused{label=<tool>}` per call refused.

mod policy;

use sluice_plugin::{Message, Plugin, Verdict, Want, context, metrics, refuse};

use serde_json::Value;

use policy::{Caller, Policy};

/// The JSON-RPC error of a refused call: what an MCP server answers for an unknown
/// tool (the specification's example uses -32602, "Unknown tool").
const UNKNOWN_TOOL: i64 = -32602;

struct ToolPolicy {
    policy: Policy,
    /// The caller, asked of the host once per exchange, and only when a rule needs it.
    caller: Option<Option<Caller>>,
}

impl ToolPolicy {
    /// The policy, and the caller when the policy needs one (asked of the host once).
    fn decide(&mut self) -> (&Policy, Option<&Caller>) {
        if !self.policy.needs_caller() {
            return (&self.policy, None);
        }
        let caller = self.caller.get_or_insert_with(|| {
            context::caller().map(|identity| Caller {
                subject: identity.subject,
                client_id: identity.client_id,
                scopes: identity.scopes,
            })
        });
        (&self.policy, caller.as_ref())
    }
}

impl Plugin for ToolPolicy {
    fn init(config: &str) -> Result<Self, String> {
        Ok(ToolPolicy {
            policy: Policy::parse(config)?,
            caller: None,
        })
    }

    fn wants(&self) -> Want {
        // tools/call requests (to the server) and tools/list results (to the client).
        Want::methods(["tools/list", "tools/call"])
    }

    fn on_message(&mut self, message: &Message) -> Verdict {
        if let Some(call) = message.tool_call() {
            let tool = call.name.to_string();
            let (policy, caller) = self.decide();
            if policy.allows(&tool, caller) {
                return Verdict::Pass;
            }
            metrics::add("refused", &tool, 1);
            sluice_plugin::debug!("tool-policy: refused tools/call of {tool}");
            return refuse(UNKNOWN_TOOL, format!("Unknown tool: {tool}"));
        }
        if !message.is_tools_list_result() {
            return Verdict::Pass;
        }
        let (policy, caller) = self.decide();
        let mut hidden = Vec::new();
        let verdict = message.edit(|value| {
            let tools = value
                .get_mut("result")
                .and_then(|r| r.get_mut("tools"))
                .and_then(Value::as_array_mut);
            if let Some(tools) = tools {
                tools.retain(|tool| {
                    let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
                    let keep = policy.allows(name, caller);
                    if !keep {
                        hidden.push(name.to_string());
                    }
                    keep
                });
            }
        });
        for tool in &hidden {
            metrics::add("hidden", tool, 1);
        }
        verdict
    }
}

sluice_plugin::plugin!(ToolPolicy);
