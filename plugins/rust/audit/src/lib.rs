//! `audit`: one structured log line (JSON, at info) per `tools/call`: who called (token
//! subject and client id, client address, session), which tool, a SHA-256 digest of the
//! arguments (never the arguments: they may hold secrets), and the outcome, written when
//! the answer passes the plugin so that one line tells the verdict. See README.md for
//! where to put it in the chain and what it does not log.
//!
//! An instance serves one exchange (a client's POST and the answers to it), so it keeps
//! the calls it saw going to the server, by JSON-RPC id, and writes each one's line when
//! the answer with that id comes back.

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sluice_plugin::{Kind, LogLevel, Message, Plugin, Verdict, Want, context, log, metrics};

/// The most calls one instance keeps waiting for their answers: one exchange holds one
/// request, or a batch of a few; the bound keeps a hostile batch from growing memory.
const MAX_PENDING: usize = 256;

/// The longest client-chosen text (a tool name, a subject, a session id) copied into a
/// line: the host cuts a log line at 4 KiB, and a cut line is no longer JSON.
const MAX_FIELD: usize = 256;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Also write a line (`"outcome": "sent"`) when a call passes towards the server,
    /// for the calls whose answer never comes back through the plugin.
    #[serde(default)]
    log_requests: bool,
}

/// A call seen going to the server, waiting for its answer.
struct Pending {
    id: String,
    tool: String,
    digest: Option<String>,
}

struct Audit {
    config: Config,
    pending: Vec<Pending>,
}

/// `text`, cut to at most [`MAX_FIELD`] bytes at a character boundary.
fn field(text: &str) -> String {
    if text.len() <= MAX_FIELD {
        return text.to_string();
    }
    let mut end = MAX_FIELD;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// SHA-256 (hex) of the arguments as compact JSON text, keys in the order the client
/// sent them; none when the call has no `arguments`.
fn digest(arguments: Option<&Value>) -> Option<String> {
    let text = arguments?.to_string();
    let hash = Sha256::digest(text.as_bytes());
    Some(hash.iter().map(|b| format!("{b:02x}")).collect())
}

/// "ok", "tool_error" (`isError: true`) or "error" with its JSON-RPC code.
fn outcome(message: &Message) -> (&'static str, Option<i64>) {
    match message.kind() {
        Kind::Error => {
            let code = message
                .json()
                .and_then(|m| m.get("error"))
                .and_then(|e| e.get("code"))
                .and_then(Value::as_i64);
            ("error", code)
        }
        _ => {
            let is_error = message
                .result()
                .and_then(|r| r.get("isError"))
                .and_then(Value::as_bool)
                == Some(true);
            (if is_error { "tool_error" } else { "ok" }, None)
        }
    }
}

impl Audit {
    /// Writes one line: the call's facts and the exchange's.
    fn write(&self, id: &str, call: Option<&Pending>, outcome: &str, code: Option<i64>) {
        let caller = context::caller();
        let mut line = json!({
            "audit": "tools/call",
            "tool": call.map(|c| field(&c.tool)),
            "outcome": outcome,
        });
        let object = line.as_object_mut().expect("an object");
        if let Some(code) = code {
            object.insert("code".into(), code.into());
        }
        let extra = json!({
            "arguments_sha256": call.and_then(|c| c.digest.clone()),
            "subject": caller.as_ref().and_then(|c| c.subject.as_deref()).map(field),
            "client_id": caller.as_ref().and_then(|c| c.client_id.as_deref()).map(field),
            "client_address": context::client_address(),
            "session": context::session_id().as_deref().map(field),
            "route": field(&context::route()),
            "stream": context::stream_id(),
            "id": field(id),
        });
        if let Value::Object(extra) = extra {
            object.extend(extra);
        }
        if call.is_none() {
            // The request never passed this plugin: a plugin before it in the chain
            // answered it (a guard's refusal), so its tool and arguments are unknown.
            object.insert("request_seen".into(), false.into());
        }
        log(LogLevel::Info, &line.to_string());
        metrics::add("lines", outcome, 1);
    }
}

impl Plugin for Audit {
    fn init(config: &str) -> Result<Self, String> {
        let config = if config.trim().is_empty() {
            Config::default()
        } else {
            serde_json::from_str(config).map_err(|e| format!("audit: invalid config: {e}"))?
        };
        Ok(Audit {
            config,
            pending: Vec::new(),
        })
    }

    fn wants(&self) -> Want {
        // Both ways: the call going to the server, its answer coming back.
        Want::methods(["tools/call"])
    }

    fn on_message(&mut self, message: &Message) -> Verdict {
        if message.to_server() {
            let (Some(call), Some(id)) = (message.tool_call(), message.rpc_id()) else {
                return Verdict::Pass;
            };
            let pending = Pending {
                id: id.to_string(),
                tool: call.name.to_string(),
                digest: digest(message.params().and_then(|p| p.get("arguments"))),
            };
            if self.config.log_requests {
                self.write(id, Some(&pending), "sent", None);
            }
            if self.pending.len() < MAX_PENDING {
                self.pending.push(pending);
            }
            return Verdict::Pass;
        }
        if !message.is_response() {
            return Verdict::Pass;
        }
        let Some(id) = message.rpc_id() else {
            return Verdict::Pass;
        };
        let (outcome, code) = match self.pending.iter().position(|p| p.id == id) {
            Some(index) => {
                let call = self.pending.swap_remove(index);
                let (outcome, code) = outcome(message);
                self.write(id, Some(&call), outcome, code);
                return Verdict::Pass;
            }
            // An answer to a tools/call this plugin never saw (the proxy names the
            // method when the client's body was one request).
            None if message.method() == Some("tools/call") => outcome(message),
            None => return Verdict::Pass,
        };
        self.write(id, None, outcome, code);
        Verdict::Pass
    }
}

sluice_plugin::plugin!(Audit);
