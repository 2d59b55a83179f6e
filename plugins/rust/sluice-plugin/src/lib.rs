//! Write a sluice plugin in a few lines.
//!
//! A sluice plugin is a WebAssembly component that sees every MCP message crossing the
//! proxy it is loaded into and passes, drops, modifies or answers it. This crate hides
//! the component bindings of the contract (`sluice:plugin@0.2.0`, world `plugin`; the
//! WIT is in this crate's `wit/`) and gives typed MCP helpers, so the common plugin is a
//! struct, a config parser and one `on_message`:
//!
//! ```ignore
//! use sluice_plugin::{Message, Plugin, Verdict, Want, refuse};
//!
//! struct DenyDelete;
//!
//! impl Plugin for DenyDelete {
//!     fn init(_config: &str) -> Result<Self, String> {
//!         Ok(DenyDelete)
//!     }
//!     fn wants(&self) -> Want {
//!         Want::methods(["tools/call"]).to_server()
//!     }
//!     fn on_message(&mut self, message: &Message) -> Verdict {
//!         match message.tool_name() {
//!             Some("delete_file") => refuse(-32001, "delete_file is not allowed here"),
//!             _ => Verdict::Pass,
//!         }
//!     }
//! }
//!
//! sluice_plugin::plugin!(DenyDelete);
//! ```
//!
//! Build it as a `cdylib` for `wasm32-unknown-unknown` and wrap it with
//! `wasm-tools component new` (`sluice plugin new --lang rust DIR` writes a project
//! that does both).
//!
//! # Lifetime of a plugin value
//!
//! sluice makes a fresh instance of the component for each exchange (one client request
//! and everything that answers it, or one server-to-client stream), calls
//! [`Plugin::init`] with the operator's configuration string, then
//! [`Plugin::on_message`] for each message of that exchange the plugin
//! [wants](Plugin::wants). So `self` lives for one exchange: fields are per-exchange
//! memory, and what must outlive an exchange goes to the host's [`state`] store.
//! Parse the configuration cheaply: `init` runs once per exchange.

#![warn(missing_docs)]

// The generated export macro names this crate by its own name, also from inside it.
extern crate self as sluice_plugin;

mod glob;
mod mcp;
mod message;
mod want;

pub use glob::glob_match;
pub use mcp::{ToolCall, ToolResult, Tools, each_string_mut};
pub use message::Message;
pub use want::Want;

/// The component bindings of `sluice:plugin@0.2.0`, as `wit-bindgen` generates them.
/// Plugins rarely need them: this crate re-exports what they use.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        default_bindings_module: "::sluice_plugin::bindings",
        runtime_path: "::sluice_plugin::__private::wit_bindgen::rt",
    });
}

/// Facts about the exchange: the caller's identity, route, session, headers granted to
/// this plugin.
pub use bindings::sluice::plugin::context;
/// Counters on sluice's `/metrics`: `sluice_plugin_counter_total{counter, label}`.
pub use bindings::sluice::plugin::metrics;
/// The host's key-value store, shared by every instance of this plugin on its route,
/// bounded and expiring.
pub use bindings::sluice::plugin::state;
pub use bindings::sluice::plugin::types::{Direction, Hold, Kind, OnTimeout, RpcError, Verdict};
/// The identity of the caller, when the route authenticates callers (`[auth]`).
pub use context::Identity;

/// A sluice plugin: made once per exchange from the operator's configuration, then
/// asked for a verdict on each message it wants.
pub trait Plugin: Sized + 'static {
    /// Makes the plugin from the configuration string of its `[[plugin]]` entry (`""`
    /// when there is none). An `Err` refuses the configuration: at load, sluice reports
    /// it and does not start (or keeps the old chain on a reload).
    fn init(config: &str) -> Result<Self, String>;

    /// Which messages to be called for; the host skips the others without a call (and
    /// without making an instance for an exchange with none). Default: everything.
    fn wants(&self) -> Want {
        Want::everything()
    }

    /// The verdict on one message: [`Verdict::Pass`], [`Verdict::Drop`], a
    /// modification ([`Message::edit`], [`modify`]), an answer ([`refuse`],
    /// [`answer`]), or a hold.
    fn on_message(&mut self, message: &Message) -> Verdict;
}

/// Registers `$ty` (a [`Plugin`]) as the component's handler. Once per crate.
#[macro_export]
macro_rules! plugin {
    ($ty:ty) => {
        #[doc(hidden)]
        pub struct __SluicePluginHandler;

        impl $crate::bindings::exports::sluice::plugin::handler::Guest for __SluicePluginHandler {
            fn init(
                config: ::std::string::String,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::__private::init::<$ty>(&config)
            }
            fn on_message(
                message: &$crate::bindings::sluice::plugin::types::Message,
            ) -> $crate::Verdict {
                $crate::__private::on_message::<$ty>(message)
            }
        }

        $crate::bindings::__export_plugin!(__SluicePluginHandler);
    };
}

/// Answers a client's request with a JSON-RPC error, without forwarding it. Only for a
/// request going to the server; the host adds `jsonrpc` and the request's `id`.
pub fn refuse(code: i64, message: impl Into<String>) -> Verdict {
    Verdict::Respond(Err(RpcError {
        code,
        message: message.into(),
        data: None,
    }))
}

/// Like [`refuse`], with the error's `data` member: details a client can act on
/// (`{"retry_after_secs": 30}`), as JSON.
pub fn refuse_with_data(
    code: i64,
    message: impl Into<String>,
    data: &serde_json::Value,
) -> Verdict {
    Verdict::Respond(Err(RpcError {
        code,
        message: message.into(),
        data: Some(data.to_string()),
    }))
}

/// Answers a client's request with this `result`, without forwarding it. Only for a
/// request going to the server; the host adds `jsonrpc` and the request's `id`.
pub fn answer(result: &serde_json::Value) -> Verdict {
    Verdict::Respond(Ok(result.to_string()))
}

/// Replaces the message with this JSON (keys in the order they are in `value`).
pub fn modify(value: &serde_json::Value) -> Verdict {
    Verdict::Modify(value.to_string())
}

/// The answer to a `tools/call` that failed as a tool (`isError: true`, one text
/// item): what MCP wants for an error the model should see, rather than a protocol
/// error. Use with [`answer`].
pub fn tool_error(text: impl Into<String>) -> serde_json::Value {
    serde_json::json!({
        "content": [{"type": "text", "text": text.into()}],
        "isError": true,
    })
}

/// Writes a line to sluice's log, tagged with the plugin's name and the stream.
pub fn log(level: LogLevel, message: &str) {
    bindings::sluice::plugin::log::log(level, message);
}

/// The level of a [`log`] line.
pub use bindings::sluice::plugin::log::Level as LogLevel;

/// Logs at info level, `format!`-style.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log($crate::LogLevel::Info, &::std::format!($($arg)*)) };
}

/// Logs at warn level, `format!`-style.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log($crate::LogLevel::Warn, &::std::format!($($arg)*)) };
}

/// Logs at debug level, `format!`-style.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log($crate::LogLevel::Debug, &::std::format!($($arg)*)) };
}

#[doc(hidden)]
pub mod __private {
    //! What [`plugin!`](crate::plugin) expands to; not an API.
    use std::any::Any;
    use std::cell::RefCell;

    pub use wit_bindgen;

    use crate::bindings::sluice::plugin::types::Message as RawMessage;
    use crate::{Message, Plugin, Verdict};

    thread_local! {
        /// The plugin value of this instance (one instance serves one exchange). `Any`
        /// because a generic static per plugin type cannot be written.
        static PLUGIN: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
        /// The requests this instance saw going to the server, so that
        /// [`Message::method`] and [`Message::tool_name`] also name them for the answer.
        pub(crate) static REQUESTS: RefCell<Vec<SeenRequest>> = const { RefCell::new(Vec::new()) };
    }

    /// A request going to the server, as [`REQUESTS`] keeps it.
    pub(crate) struct SeenRequest {
        /// The JSON-RPC id as JSON text.
        pub(crate) id: String,
        pub(crate) method: String,
        /// What names a `tools/call`'s tool; none for other methods.
        pub(crate) tool: Option<SeenTool>,
    }

    /// How a remembered `tools/call` names its tool. Remembering must not cost every
    /// request a JSON parse (a plugin that never asks would pay it for nothing), so a
    /// small request keeps its text, parsed only when an answer asks
    /// ([`Message::tool_name`]); a large one is parsed at once, so that at most
    /// [`SeenRequest`]s × [`KEEP_TEXT`] bytes are kept.
    pub(crate) enum SeenTool {
        Text(String),
        Name(Option<String>),
    }

    /// The largest `tools/call` kept as text.
    pub(crate) const KEEP_TEXT: usize = 4096;

    /// `read` of the request with JSON-RPC id `id` this instance saw, if it saw exactly
    /// one. Two requests with one id (a batch may repeat ids) leave the answer's request
    /// unknown, never a guess: a guess would let a `tools/list` answer pass as the
    /// answer to a `tools/call`. So does a number that is not a plain integer on either
    /// side (`1` and `1.0` are one number to many servers; telling them apart would
    /// need float parsing, tens of kilobytes in every plugin).
    pub(crate) fn seen_request<T>(
        id: &str,
        read: impl FnOnce(&SeenRequest) -> Option<T>,
    ) -> Option<T> {
        REQUESTS.with(|requests| {
            let requests = requests.borrow();
            let mut found = None;
            for seen in requests.iter() {
                match same_id(&seen.id, id) {
                    Some(false) => {}
                    Some(true) if found.is_none() => found = Some(seen),
                    // A second match, or one that cannot be told apart.
                    _ => return None,
                }
            }
            read(found?)
        })
    }

    /// Whether two JSON-RPC ids (as JSON text) name the same request: `Some` when that
    /// is certain (the same text; strings or integers that differ), `None` when a
    /// number that is not a plain integer is involved.
    fn same_id(a: &str, b: &str) -> Option<bool> {
        if a == b {
            return Some(true);
        }
        let number = |t: &str| t.starts_with(|c: char| c == '-' || c.is_ascii_digit());
        let integer = |t: &str| {
            let digits = t.strip_prefix('-').unwrap_or(t);
            !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit())
        };
        match (number(a), number(b)) {
            (true, true) if !(integer(a) && integer(b)) => None,
            _ => Some(false),
        }
    }

    pub fn init<P: Plugin>(config: &str) -> Result<(), String> {
        let plugin = P::init(config)?;
        plugin.wants().declare();
        PLUGIN.with(|slot| *slot.borrow_mut() = Some(Box::new(plugin)));
        Ok(())
    }

    pub fn on_message<P: Plugin>(raw: &RawMessage) -> Verdict {
        let message = Message::new(raw);
        message.remember_request();
        PLUGIN.with(|slot| {
            let mut slot = slot.borrow_mut();
            // `init` ran first (the host never calls on-message on an instance whose
            // init failed), so the value is there and of this type. Were it not, the
            // trap makes the host apply the failure policy: a guard never passes a
            // message unexamined.
            let plugin = slot
                .as_mut()
                .and_then(|p| p.downcast_mut::<P>())
                .expect("sluice-plugin: on_message before a successful init");
            plugin.on_message(&message)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::__private::{REQUESTS, SeenRequest, seen_request};

    fn see(id: &str, method: &str) {
        REQUESTS.with(|r| {
            r.borrow_mut().push(SeenRequest {
                id: id.into(),
                method: method.into(),
                tool: None,
            })
        });
    }

    #[test]
    fn an_id_seen_twice_names_no_request() {
        see("7", "tools/call");
        see("\"a\"", "tools/list");
        let method = |id: &str| seen_request(id, |s| Some(s.method.clone()));
        assert_eq!(method("7").as_deref(), Some("tools/call"));
        // 7.0 may be 7: not a guess either way.
        assert_eq!(method("7.0"), None);
        assert_eq!(method("\"a\"").as_deref(), Some("tools/list"));
        // A batch that repeats id 7 (here as 7.0): neither request is its answer's.
        see("7.0", "tools/list");
        assert_eq!(method("7"), None);
        assert_eq!(method("8"), None);
    }
}
