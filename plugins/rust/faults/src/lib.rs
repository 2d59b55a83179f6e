//! `faults`: for testing MCP clients. Delays, drops or errors a configurable fraction of
//! the messages that match a rule, deterministically under a seed. See README.md.
//!
//! Determinism: a rule counts the messages it matches with `state.add` (shared by every
//! instance of the plugin on its route, so the count runs across exchanges and
//! sessions), and the fate of its nth message is [`draw`]`(seed, rule, n)`: a number in
//! [0, 1) that falls in the delay, drop or error band, or past them (pass). The same
//! sequence of matching messages on a route, from a fresh store, meets the same faults.

use serde::Deserialize;
use serde_json::{Value, json};
use sluice_plugin::{
    Direction, Hold, Kind, Message, OnTimeout, Plugin, RpcError, Verdict, Want, glob_match,
    metrics, state,
};

/// The default code of an injected error: in the range MCP servers use for their own.
const INJECTED: i64 = -32000;

/// The longest delay the host allows a hold (a longer one is cut to it).
const MAX_DELAY_MS: u64 = 600_000;

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Default)]
enum Ways {
    #[serde(rename = "to-server")]
    #[default]
    ToServer,
    #[serde(rename = "to-client")]
    ToClient,
    #[serde(rename = "both")]
    Both,
}

impl Ways {
    fn includes(self, direction: Direction) -> bool {
        match self {
            Ways::Both => true,
            Ways::ToServer => direction == Direction::ToServer,
            Ways::ToClient => direction == Direction::ToClient,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    /// JSON-RPC methods (a response's is its request's); none: every JSON-RPC message.
    #[serde(default)]
    methods: Option<Vec<String>>,
    /// Tool name patterns: only `tools/call` requests of these tools and their answers.
    #[serde(default)]
    tools: Option<Vec<String>>,
    #[serde(default)]
    direction: Ways,
    #[serde(default)]
    delay: f64,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    drop: f64,
    #[serde(default)]
    error: f64,
    #[serde(default = "default_code")]
    error_code: i64,
    #[serde(default = "default_message")]
    error_message: String,
}

fn default_code() -> i64 {
    INJECTED
}

fn default_message() -> String {
    "faults: injected error".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    seed: u64,
    rules: Vec<Rule>,
}

/// What happens to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Pass,
    Delay,
    Drop,
    Error,
}

/// SplitMix64's output function: a bijection of u64 whose output bits each depend on
/// every input bit, so consecutive `n` give unrelated draws.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The draw for the `n`th message (from 1) matched by rule `rule` (from 0) under
/// `seed`: a number in [0, 1) with 53 random bits. README.md states this formula; a
/// test recomputes it.
fn draw(seed: u64, rule: u64, n: u64) -> f64 {
    let h = mix(mix(mix(seed) ^ rule) ^ n);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn fraction(value: f64, i: usize, key: &str) -> Result<(), String> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "faults: rules[{i}].{key} must be a fraction from 0 to 1"
        ))
    }
}

fn check(config: &Config) -> Result<(), String> {
    if config.rules.is_empty() {
        return Err("faults: rules is empty".into());
    }
    for (i, rule) in config.rules.iter().enumerate() {
        fraction(rule.delay, i, "delay")?;
        fraction(rule.drop, i, "drop")?;
        fraction(rule.error, i, "error")?;
        if rule.delay + rule.drop + rule.error > 1.0 {
            return Err(format!(
                "faults: rules[{i}]: delay + drop + error is more than 1"
            ));
        }
        if rule.delay > 0.0 && !(1..=MAX_DELAY_MS).contains(&rule.delay_ms) {
            return Err(format!(
                "faults: rules[{i}].delay_ms must be from 1 to {MAX_DELAY_MS} when delay is set"
            ));
        }
        if let Some(methods) = &rule.methods
            && rule.tools.is_some()
            && !methods.iter().any(|m| m == "tools/call")
        {
            return Err(format!(
                "faults: rules[{i}]: tools matches tools/call, which methods leaves out"
            ));
        }
        if rule.tools.as_ref().is_some_and(Vec::is_empty) {
            return Err(format!("faults: rules[{i}].tools is empty"));
        }
    }
    Ok(())
}

struct Faults {
    seed: u64,
    rules: Vec<Rule>,
}

impl Rule {
    fn matches(&self, message: &Message) -> bool {
        if !self.direction.includes(message.direction()) || message.kind() == Kind::Other {
            return false;
        }
        if let Some(methods) = &self.methods {
            let Some(method) = message.method() else {
                return false;
            };
            if !methods.iter().any(|m| m == method) {
                return false;
            }
        }
        match &self.tools {
            None => true,
            Some(patterns) => message
                .tool_name()
                .is_some_and(|tool| patterns.iter().any(|p| glob_match(p, tool))),
        }
    }

    fn fault(&self, u: f64) -> Fault {
        if u < self.delay {
            Fault::Delay
        } else if u < self.delay + self.drop {
            Fault::Drop
        } else if u < self.delay + self.drop + self.error {
            Fault::Error
        } else {
            Fault::Pass
        }
    }
}

impl Faults {
    /// The verdict that makes `fault` happen to `message`.
    fn apply(&self, rule: &Rule, fault: Fault, message: &Message, n: u64) -> Verdict {
        match fault {
            Fault::Pass => Verdict::Pass,
            Fault::Delay => Verdict::Hold(Hold {
                timeout_ms: rule.delay_ms,
                approval: false,
                reason: format!("faults: delay of message {n}"),
                on_timeout: OnTimeout::Pass,
            }),
            Fault::Drop => Verdict::Drop,
            Fault::Error => {
                let data = json!({"injected_by": "faults", "n": n});
                match (message.direction(), message.kind()) {
                    (Direction::ToServer, Kind::Request) => Verdict::Respond(Err(RpcError {
                        code: rule.error_code,
                        message: rule.error_message.clone(),
                        data: Some(data.to_string()),
                    })),
                    (Direction::ToClient, Kind::Response | Kind::Error) => {
                        let id = message
                            .rpc_id()
                            .and_then(|id| serde_json::from_str::<Value>(id).ok())
                            .unwrap_or(Value::Null);
                        Verdict::Modify(
                            json!({
                                "jsonrpc": "2.0",
                                "id": id,
                                "error": {
                                    "code": rule.error_code,
                                    "message": rule.error_message,
                                    "data": data,
                                },
                            })
                            .to_string(),
                        )
                    }
                    // A notification, or a server's request: nothing to answer with an
                    // error, so it passes.
                    _ => Verdict::Pass,
                }
            }
        }
    }
}

impl Plugin for Faults {
    fn init(config: &str) -> Result<Self, String> {
        let config: Config =
            serde_json::from_str(config).map_err(|e| format!("faults: invalid config: {e}"))?;
        check(&config)?;
        Ok(Faults {
            seed: config.seed,
            rules: config.rules,
        })
    }

    fn wants(&self) -> Want {
        // Methods: the union of the rules', unless one takes every method.
        let mut methods: Option<Vec<String>> = Some(Vec::new());
        let (mut to_server, mut to_client) = (false, false);
        for rule in &self.rules {
            let rule_methods = match (&rule.methods, &rule.tools) {
                (Some(m), _) => Some(m.clone()),
                (None, Some(_)) => Some(vec!["tools/call".to_string()]),
                (None, None) => None,
            };
            match (&mut methods, rule_methods) {
                (Some(all), Some(m)) => all.extend(m),
                _ => methods = None,
            }
            to_server |= rule.direction != Ways::ToClient;
            to_client |= rule.direction != Ways::ToServer;
            // A result's tool is known from its request, which the plugin must see.
            to_server |= rule.tools.is_some();
        }
        let want = match methods {
            Some(methods) => Want::methods(methods),
            None => Want::everything(),
        };
        match (to_server, to_client) {
            (true, false) => want.to_server(),
            (false, true) => want.to_client(),
            _ => want,
        }
    }

    fn on_message(&mut self, message: &Message) -> Verdict {
        let Some(index) = self.rules.iter().position(|r| r.matches(message)) else {
            return Verdict::Pass;
        };
        let rule = &self.rules[index];
        // The count runs across every instance of the plugin on the route. Its entry
        // lives the operator's longest time to live (ttl 0), from the first message.
        let key = format!("n:{}:{index}", self.seed);
        let n = match state::add(&key, 1, 0) {
            Ok(n) if n > 0 => n as u64,
            _ => {
                // Nothing to number the message with: no fault rather than a guess.
                metrics::add("uncounted", "", 1);
                sluice_plugin::warn!("faults: cannot count a message (state store full); passed");
                return Verdict::Pass;
            }
        };
        let fault = rule.fault(draw(self.seed, index as u64, n));
        let name = match fault {
            Fault::Pass => "pass",
            Fault::Delay => "delay",
            Fault::Drop => "drop",
            Fault::Error => "error",
        };
        metrics::add("messages", name, 1);
        if fault != Fault::Pass {
            sluice_plugin::info!(
                "faults: rule {index} message {n} ({} {}): {name}",
                message.method().unwrap_or("-"),
                message.rpc_id().unwrap_or("-"),
            );
        }
        self.apply(rule, fault, message, n)
    }
}

sluice_plugin::plugin!(Faults);

#[cfg(test)]
mod tests {
    use super::draw;

    #[test]
    fn draws_are_fractions_spread_over_the_unit_interval() {
        let draws: Vec<f64> = (1..=1000).map(|n| draw(42, 0, n)).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let below_half = draws.iter().filter(|&&u| u < 0.5).count();
        assert!((400..600).contains(&below_half), "{below_half}");
        assert_ne!(draw(42, 0, 1), draw(43, 0, 1));
        assert_ne!(draw(42, 0, 1), draw(42, 1, 1));
    }
}
