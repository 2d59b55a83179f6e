//! One message, read from the host on demand, with MCP-shaped accessors.

use std::cell::OnceCell;

use serde_json::{Map, Value};

use crate::__private::{KEEP_TEXT, SeenTool};
use crate::bindings::sluice::plugin::types::Message as RawMessage;
use crate::mcp::{ToolCall, ToolResult, Tools};
use crate::{Direction, Kind, Verdict};

/// A message crossing the proxy. Each fact is fetched from the host the first time it
/// is asked for and then kept: a plugin that decides on [`kind`](Self::kind) and
/// [`method`](Self::method) never copies a large message into its memory, and one that
/// reads [`json`](Self::json) twice parses it once.
pub struct Message<'a> {
    raw: &'a RawMessage,
    kind: OnceCell<Kind>,
    method: OnceCell<Option<String>>,
    rpc_id: OnceCell<Option<String>>,
    data: OnceCell<String>,
    json: OnceCell<Option<Value>>,
    tool_name: OnceCell<Option<String>>,
}

impl<'a> Message<'a> {
    pub(crate) fn new(raw: &'a RawMessage) -> Self {
        Message {
            raw,
            kind: OnceCell::new(),
            method: OnceCell::new(),
            rpc_id: OnceCell::new(),
            data: OnceCell::new(),
            json: OnceCell::new(),
            tool_name: OnceCell::new(),
        }
    }

    /// Which way it travels.
    pub fn direction(&self) -> Direction {
        self.raw.direction()
    }

    /// True for a message going to the server.
    pub fn to_server(&self) -> bool {
        self.direction() == Direction::ToServer
    }

    /// Request, notification, response, error, or other (not JSON-RPC).
    pub fn kind(&self) -> Kind {
        *self.kind.get_or_init(|| self.raw.kind())
    }

    /// True for a request (it has a `method` and an `id`).
    pub fn is_request(&self) -> bool {
        self.kind() == Kind::Request
    }

    /// True for a notification (a `method`, no `id`).
    pub fn is_notification(&self) -> bool {
        self.kind() == Kind::Notification
    }

    /// True for a response or an error.
    pub fn is_response(&self) -> bool {
        matches!(self.kind(), Kind::Response | Kind::Error)
    }

    /// The JSON-RPC method: a request's or notification's own; for a response or an
    /// error, the method of the request it answers, when the proxy knows it (the
    /// client's body was that one request) or this plugin saw the request. The proxy
    /// does not know it for the answers to a JSON-RPC batch, so a plugin that edits
    /// answers by method and must not miss one in a batch also wants the requests
    /// (`Want::methods([...])` without `to_client()`): the instance that sees a request
    /// sees its answer, and remembers the method by id.
    pub fn method(&self) -> Option<&str> {
        self.method
            .get_or_init(|| {
                self.raw.method().or_else(|| {
                    // Only an answer going to the client answers a request going to the
                    // server; the client's answers to the server's requests have ids
                    // of the server's.
                    if !self.is_response() || self.to_server() {
                        return None;
                    }
                    crate::__private::seen_request(self.rpc_id()?, |seen| Some(seen.method.clone()))
                })
            })
            .as_deref()
    }

    /// The JSON-RPC `id` as JSON text (`7`, `"abc"`).
    pub fn rpc_id(&self) -> Option<&str> {
        self.rpc_id.get_or_init(|| self.raw.rpc_id()).as_deref()
    }

    /// The SSE `event:` type, for a message that came as an SSE event with one.
    pub fn sse_event(&self) -> Option<String> {
        self.raw.sse_event()
    }

    /// The whole message as JSON text (copied from the host on the first call).
    pub fn data(&self) -> &str {
        self.data.get_or_init(|| self.raw.data())
    }

    /// The message parsed as JSON; `None` when it is not JSON.
    pub fn json(&self) -> Option<&Value> {
        self.json
            .get_or_init(|| serde_json::from_str(self.data()).ok())
            .as_ref()
    }

    /// True for what a guard must take for a `tools/list` result: a response to
    /// `tools/list`; whatever its request's method, a response whose `result` has a
    /// `tools` array (the request may be unknown, as in a resumed stream's replay, or
    /// misnamed, as in a batch that repeats an id); and a response this plugin cannot
    /// parse (nested too deep), so that [`edit`](Self::edit) drops it rather than let
    /// it pass unexamined.
    pub fn is_tools_list_result(&self) -> bool {
        self.kind() == Kind::Response
            && (self.method() == Some("tools/list")
                || self.json().is_none()
                || self
                    .result()
                    .and_then(|result| result.get("tools"))
                    .is_some_and(Value::is_array))
    }

    /// `params` of a request or notification.
    pub fn params(&self) -> Option<&Value> {
        self.json()?.get("params")
    }

    /// `result` of a response.
    pub fn result(&self) -> Option<&Value> {
        self.json()?.get("result")
    }

    /// A `tools/call` request's tool name and arguments; `None` for anything else.
    pub fn tool_call(&self) -> Option<ToolCall<'_>> {
        if !self.is_request() || self.method() != Some("tools/call") {
            return None;
        }
        let params = self.params()?;
        Some(ToolCall {
            name: params.get("name")?.as_str()?,
            arguments: params.get("arguments").and_then(Value::as_object),
        })
    }

    /// The tool a message is about: a `tools/call` request's `params.name`, or, for the
    /// response or error answering it, the name from that request. The request's name
    /// is known only when this plugin saw the request (it wants messages going to the
    /// server too): an instance serves one exchange, and remembers its requests.
    pub fn tool_name(&self) -> Option<&str> {
        self.tool_name
            .get_or_init(|| {
                if let Some(call) = self.tool_call() {
                    return Some(call.name.to_string());
                }
                if !self.is_response() || self.to_server() {
                    return None;
                }
                crate::__private::seen_request(self.rpc_id()?, |seen| match seen.tool.as_ref()? {
                    SeenTool::Text(text) => tool_name_of(text),
                    SeenTool::Name(name) => name.clone(),
                })
            })
            .as_deref()
    }

    /// Keeps the method (and for `tools/call` the tool name) of a request going to the
    /// server, for [`method`](Self::method) and [`tool_name`](Self::tool_name) of its
    /// answer. Asks the host for the kind, direction, id and method, and for a
    /// `tools/call` its text (parsed later, if ever); nothing of other messages.
    pub(crate) fn remember_request(&self) {
        if !self.is_request() || !self.to_server() {
            return;
        }
        let (Some(id), Some(method)) = (self.rpc_id(), self.method()) else {
            return;
        };
        let seen = crate::__private::SeenRequest {
            id: id.to_string(),
            method: method.to_string(),
            // The text is copied from the host once (and is already here when the
            // plugin reads it); a small one is parsed only if an answer asks.
            tool: (method == "tools/call").then(|| match self.data() {
                text if text.len() <= KEEP_TEXT => SeenTool::Text(text.to_string()),
                _ => SeenTool::Name(self.tool_name().map(str::to_string)),
            }),
        };
        crate::__private::REQUESTS.with(|requests| {
            let mut requests = requests.borrow_mut();
            // One exchange holds one request, or a batch of a few: a small bound keeps
            // a hostile batch from growing the instance's memory.
            if requests.len() < 256 {
                requests.push(seen);
            }
        });
    }

    /// Edits the message as JSON. The verdict is [`Verdict::Modify`] with the edited
    /// JSON (keys in their original order) when `edit` changed something, and
    /// [`Verdict::Pass`] when it did not or the message is not JSON-RPC (an SSE event
    /// of another kind). A JSON-RPC message this plugin cannot parse (nested deeper
    /// than serde_json's 128 levels) is [`Verdict::Drop`]ped: the edit must see what it
    /// is meant to edit, and a guard never lets a message pass unexamined.
    pub fn edit(&self, edit: impl FnOnce(&mut Value)) -> Verdict {
        let Some(original) = self.json() else {
            return match self.kind() {
                Kind::Other => Verdict::Pass,
                _ => Verdict::Drop,
            };
        };
        let mut edited = original.clone();
        edit(&mut edited);
        if &edited == original {
            Verdict::Pass
        } else {
            Verdict::Modify(edited.to_string())
        }
    }

    /// Edits a `tools/call` result (its text content and `structuredContent`), as
    /// [`edit`](Self::edit) does. Passes anything that is not a result of `tools/call`.
    pub fn edit_tool_result(&self, edit: impl FnOnce(&mut ToolResult<'_>)) -> Verdict {
        if self.kind() != Kind::Response || self.method() != Some("tools/call") {
            return Verdict::Pass;
        }
        self.edit(|value| {
            if let Some(result) = value.get_mut("result").and_then(Value::as_object_mut) {
                edit(&mut ToolResult::new(result));
            }
        })
    }

    /// Edits the list of tools in a `tools/list` result, as [`edit`](Self::edit) does.
    /// Passes anything that is not a result of `tools/list`.
    pub fn edit_tools(&self, edit: impl FnOnce(&mut Tools<'_>)) -> Verdict {
        if self.kind() != Kind::Response || self.method() != Some("tools/list") {
            return Verdict::Pass;
        }
        self.edit(|value| {
            let tools = value
                .get_mut("result")
                .and_then(|r| r.get_mut("tools"))
                .and_then(Value::as_array_mut);
            if let Some(tools) = tools {
                edit(&mut Tools::new(tools));
            }
        })
    }

    /// Edits the `arguments` of a `tools/call` request, as [`edit`](Self::edit) does.
    /// Passes anything else.
    pub fn edit_arguments(&self, edit: impl FnOnce(&mut Map<String, Value>)) -> Verdict {
        if self.tool_call().is_none() {
            return Verdict::Pass;
        }
        self.edit(|value| {
            if let Some(arguments) = value
                .get_mut("params")
                .and_then(|p| p.get_mut("arguments"))
                .and_then(Value::as_object_mut)
            {
                edit(arguments);
            }
        })
    }
}

/// `params.name` of a `tools/call` request's JSON text.
fn tool_name_of(text: &str) -> Option<String> {
    let request: Value = serde_json::from_str(text).ok()?;
    Some(request.get("params")?.get("name")?.as_str()?.to_string())
}
