//! `rate-limit`: at most `max` `tools/call` in each window of `window_secs`, counted per
//! session, per caller, per tool, or per any combination of them, with the host's state
//! store. See README.md for the configuration and what it does not catch.
//!
//! Each limit counts a call under a key made of the limit and the call's values of the
//! chosen dimensions, with `state.add` (one atomic step in the host, so concurrent
//! exchanges never lose a count). A key's entry is created with a time to live of the
//! window and keeps it as it grows: a fixed window that opens at the first call it
//! counts. Every limit that applies counts the call; if any is then over its `max`, the
//! call is answered with a JSON-RPC error and never reaches the server.

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest;
use sluice_plugin::{
    Message, Plugin, Verdict, Want, context, glob_match, metrics, refuse_with_data, state,
};

/// The default JSON-RPC error code of a refusal: MCP servers use -32000..-32099 for
/// their own, and "29" echoes HTTP's 429 (the `quota` example uses it too).
const OVER_LIMIT: i64 = -32029;

/// The longest window: the longest time to live an operator may give state entries
/// (`state.max_ttl_secs` is at most 30 days).
const MAX_WINDOW_SECS: u64 = 30 * 24 * 3600;

/// What a limit counts calls per.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Dimension {
    /// The request's `Mcp-Session-Id` (none: one counter for the calls without one).
    Session,
    /// The token's subject when the route has `[auth]`, else the client's address.
    Caller,
    /// The tool's name.
    Tool,
}

impl Dimension {
    fn name(self) -> &'static str {
        match self {
            Dimension::Session => "session",
            Dimension::Caller => "caller",
            Dimension::Tool => "tool",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Limit {
    /// The dimensions; empty: one counter for every call the limit applies to.
    #[serde(default)]
    per: Vec<Dimension>,
    max: u64,
    window_secs: u64,
    /// Tool name patterns (`*` for any run); none: every tool.
    #[serde(default)]
    tools: Option<Vec<String>>,
    /// The label of its refusals on `/metrics` and in the error's `data`.
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    limits: Vec<Limit>,
    #[serde(default = "default_code")]
    code: i64,
}

fn default_code() -> i64 {
    OVER_LIMIT
}

struct RateLimit {
    limits: Vec<Limit>,
    code: i64,
    /// The caller's key, read from the host once per exchange when a limit needs it.
    caller: Option<String>,
}

fn check(config: Config) -> Result<Config, String> {
    if config.limits.is_empty() {
        return Err("rate-limit: limits is empty".into());
    }
    for (i, limit) in config.limits.iter().enumerate() {
        if limit.max == 0 {
            return Err(format!("rate-limit: limits[{i}].max must be at least 1"));
        }
        if limit.window_secs == 0 || limit.window_secs > MAX_WINDOW_SECS {
            return Err(format!(
                "rate-limit: limits[{i}].window_secs must be from 1 to {MAX_WINDOW_SECS}"
            ));
        }
        for (j, d) in limit.per.iter().enumerate() {
            if limit.per[..j].contains(d) {
                return Err(format!(
                    "rate-limit: limits[{i}].per names {} twice",
                    d.name()
                ));
            }
        }
        if limit.tools.as_ref().is_some_and(Vec::is_empty) {
            return Err(format!(
                "rate-limit: limits[{i}].tools is empty (leave it out for every tool)"
            ));
        }
    }
    Ok(config)
}

impl Limit {
    fn applies(&self, tool: &str) -> bool {
        match &self.tools {
            None => true,
            Some(patterns) => patterns.iter().any(|p| glob_match(p, tool)),
        }
    }

    /// "caller and tool", or "all callers" for a limit with no dimension.
    fn per_text(&self) -> String {
        if self.per.is_empty() {
            return "in all".into();
        }
        let names: Vec<_> = self.per.iter().map(|d| d.name()).collect();
        format!("per {}", names.join(" and "))
    }

    fn label(&self, index: usize) -> String {
        self.name.clone().unwrap_or_else(|| format!("limit{index}"))
    }
}

/// Whose calls a `caller` limit counts together. The prefixes keep a subject that
/// looks like an address from sharing a counter with that address.
fn caller_key() -> String {
    if let Some(subject) = context::caller().and_then(|c| c.subject) {
        return format!("sub:{subject}");
    }
    match context::client_address() {
        Some(address) => format!("addr:{address}"),
        None => "anonymous".into(),
    }
}

impl RateLimit {
    /// The state key of `limit` (the `index`th) for this call: the limit's place,
    /// dimensions and window (a reload that changes them starts new counts), then a
    /// SHA-256 of the call's values as a JSON array (which no value can break out of).
    /// Hashed, so that every key has the same small size: the values are the client's
    /// (a tool name of kilobytes, any session id), and long keys would let one client
    /// fill the store and have every call on the route refused as uncountable.
    fn key(&mut self, index: usize, tool: &str) -> String {
        let limit = &self.limits[index];
        let mut values = Vec::with_capacity(limit.per.len());
        for dimension in &limit.per {
            values.push(match dimension {
                Dimension::Session => context::session_id().unwrap_or_default(),
                Dimension::Caller => self.caller.get_or_insert_with(caller_key).clone(),
                Dimension::Tool => tool.to_string(),
            });
        }
        let dimensions: Vec<_> = limit.per.iter().map(|d| d.name()).collect();
        let digest = sha2::Sha256::digest(Value::from(values).to_string().as_bytes());
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{index}/{}/{}:{hex}",
            dimensions.join("+"),
            limit.window_secs,
        )
    }
}

impl Plugin for RateLimit {
    fn init(config: &str) -> Result<Self, String> {
        let config: Config =
            serde_json::from_str(config).map_err(|e| format!("rate-limit: invalid config: {e}"))?;
        let Config { limits, code } = check(config)?;
        Ok(RateLimit {
            limits,
            code,
            caller: None,
        })
    }

    fn wants(&self) -> Want {
        Want::methods(["tools/call"]).to_server()
    }

    fn on_message(&mut self, message: &Message) -> Verdict {
        let Some(call) = message.tool_call() else {
            return Verdict::Pass;
        };
        let tool = call.name.to_string();
        // The limits (by index) that this call takes over their max.
        let mut over: Vec<usize> = Vec::new();
        for index in 0..self.limits.len() {
            if !self.limits[index].applies(&tool) {
                continue;
            }
            let key = self.key(index, &tool);
            let limit = &self.limits[index];
            match state::add(&key, 1, limit.window_secs * 1000) {
                // `add` of 1 returns at least 1 unless another writer put a
                // negative number there, which no instance of this plugin does.
                Ok(n) if n <= 0 || n as u64 <= limit.max => {}
                Ok(_) => over.push(index),
                Err(error) => {
                    // A limit that cannot count must not let everything through.
                    let reason = match error {
                        state::StateError::Full => "state_full",
                        state::StateError::TooLarge => "key_too_large",
                    };
                    metrics::add("unavailable", reason, 1);
                    sluice_plugin::warn!(
                        "rate-limit: cannot count a call of {tool}: {reason}; refused"
                    );
                    return refuse_with_data(
                        self.code,
                        match error {
                            state::StateError::Full => {
                                "rate-limit: the call cannot be counted (the plugin's state store is full), so it is refused"
                            }
                            state::StateError::TooLarge => {
                                "rate-limit: the call cannot be counted (its key is over the state store's entry cap), so it is refused"
                            }
                        },
                        &json!({"reason": reason}),
                    );
                }
            }
        }
        let Some(&first) = over.first() else {
            metrics::add("allowed", "", 1);
            return Verdict::Pass;
        };
        for &index in &over {
            metrics::add("refused", &self.limits[index].label(index), 1);
        }
        // The plugin has no clock, so it cannot know when a window opened: the longest
        // window of the limits this call is over is when every one of them has closed.
        let retry_after_secs = over
            .iter()
            .map(|&i| self.limits[i].window_secs)
            .max()
            .unwrap_or(0);
        let limit = &self.limits[first];
        refuse_with_data(
            self.code,
            format!(
                "rate limit: at most {} tools/call {} every {} s",
                limit.max,
                limit.per_text(),
                limit.window_secs
            ),
            &json!({
                "retry_after_secs": retry_after_secs,
                "limit": limit.label(first),
                "max": limit.max,
                "window_secs": limit.window_secs,
            }),
        )
    }
}

sluice_plugin::plugin!(RateLimit);
