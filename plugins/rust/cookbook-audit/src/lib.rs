//! Cookbook: log an audit line per `tools/call`.
//!
//! No config. For each `tools/call` going to the server, one line in sluice's log:
//! `audit: tools/call tool=echo caller=alice client=127.0.0.1 session=... arguments=["text"]`
//! (the caller's subject when the route authenticates callers, `-` otherwise; the
//! argument *names*, never their values, which may be secrets). Put it last in the
//! chain to log only the calls that reach the server, first to log every attempt; give
//! it `failure = "open"` so that an audit that fails never stops a call.

use sluice_plugin::{Message, Plugin, Verdict, Want, context, info};

struct Audit;

impl Plugin for Audit {
    fn init(config: &str) -> Result<Self, String> {
        match config.trim() {
            "" | "{}" => Ok(Audit),
            _ => Err("cookbook-audit: takes no config".into()),
        }
    }

    fn wants(&self) -> Want {
        Want::methods(["tools/call"]).to_server()
    }

    fn on_message(&mut self, message: &Message) -> Verdict {
        let Some(call) = message.tool_call() else {
            return Verdict::Pass; // a notification of that name, or not JSON
        };
        let caller = context::caller().and_then(|c| c.subject);
        let names: Vec<&String> = call
            .arguments
            .map(|a| a.keys().collect())
            .unwrap_or_default();
        info!(
            "audit: tools/call tool={} caller={} client={} session={} arguments={}",
            call.name,
            caller.as_deref().unwrap_or("-"),
            context::client_address().as_deref().unwrap_or("-"),
            context::session_id().as_deref().unwrap_or("-"),
            serde_json::to_string(&names).unwrap_or_default(),
        );
        Verdict::Pass
    }
}

sluice_plugin::plugin!(Audit);
