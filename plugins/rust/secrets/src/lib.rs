//! `secrets`: masks credentials in MCP messages, both ways.
//!
//! Tool call arguments going to the server, and results, errors and notifications
//! going to the client: every JSON string value is searched for the built-in
//! credential shapes (AWS access key ids, GCP API keys, GitHub and Slack tokens, Slack
//! webhooks, JWTs, PEM private keys, `sk-` and Stripe keys) and the operator's own
//! patterns, and each match is replaced by `[REDACTED:<name>]` (configurable). The
//! JSON stays valid, keys in their order. A message that is not JSON is masked as
//! text.
//!
//! Cheap on clean traffic: the raw message is first searched for the literals the
//! patterns need (`AKIA`, `ghp_`, `eyJ`, `PRIVATE KEY`, ...; memchr's SIMD substring
//! search); a message with none of them passes without being parsed or seeing a regex.
//!
//! Config (JSON, all optional; `""` = every built-in, both ways):
//! `{"builtin": true | false | ["jwt", ...], "patterns": [{"name": "ticket", "regex":
//! "TCK-[0-9]{8}", "literal": "TCK-"}], "replacement": "[REDACTED:{name}]",
//! "direction": "both" | "to-server" | "to-client"}`. See README.md.
//!
//! Counter on `/metrics`: `masked{label=<pattern name>}`, one per replaced match.

mod mask;
mod rules;

use sluice_plugin::{Message, Plugin, Verdict, Want, metrics};

use rules::{Direction, Rules};

struct Secrets {
    rules: Rules,
}

impl Plugin for Secrets {
    fn init(config: &str) -> Result<Self, String> {
        Ok(Secrets {
            rules: rules::parse(config)?,
        })
    }

    fn wants(&self) -> Want {
        match self.rules.direction {
            Direction::Both => Want::everything(),
            Direction::ToServer => Want::everything().to_server(),
            Direction::ToClient => Want::everything().to_client(),
        }
    }

    fn on_message(&mut self, message: &Message) -> Verdict {
        let rules = &self.rules.rules;
        let candidates = mask::candidates(rules, message.data());
        if candidates.is_empty() {
            return Verdict::Pass;
        }
        let mut counts = vec![0; rules.len()];
        let verdict = if message.json().is_some() {
            message.edit(|value| mask::mask_message(rules, &candidates, value, &mut counts))
        } else {
            let mut text = message.data().to_string();
            if mask::mask_text(rules, &candidates, &mut text, &mut counts) {
                Verdict::Modify(text)
            } else {
                Verdict::Pass
            }
        };
        let mut masked = Vec::new();
        for (rule, &n) in rules.iter().zip(&counts) {
            if n > 0 {
                metrics::add("masked", &rule.name, n);
                masked.push(format!("{} x{n}", rule.name));
            }
        }
        if !masked.is_empty() {
            sluice_plugin::debug!(
                "secrets: masked {} in {} {}",
                masked.join(", "),
                message.method().unwrap_or("a message"),
                if message.to_server() {
                    "to the server"
                } else {
                    "to the client"
                },
            );
        }
        verdict
    }
}

sluice_plugin::plugin!(Secrets);
