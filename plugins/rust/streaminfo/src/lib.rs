//! `streaminfo`: shows a plugin what the host tells it about a stream.
//!
//! Every event with data is replaced by a one-line JSON object describing the
//! `stream-info` of the current phase and the event's own SSE fields, e.g.
//! `{"direction":"to-client","method":"POST","path":"/mcp","rpc_method":"tools/call",
//! "protocol_version":"2025-11-25","session":true,"id":"7","data":"…"}`. It exists for
//! the proxy's tests (is `rpc-method` filled from the request? is the negotiated
//! protocol version passed? is the SSE id kept when a plugin modifies an event?) and as
//! a starting point for authors who want to see the contract in action. It changes the
//! event's `id` on purpose, to `plugin-changed-<id>`: the host must restore the
//! upstream's id, which is the client's resumption cursor.

use std::cell::RefCell;

wit_bindgen::generate!({
    world: "interceptor",
    path: "../../../wit/0.1.0-revised",
});

use sluice::plugin::types::Direction;

thread_local! {
    static INFO: RefCell<Option<StreamInfo>> = const { RefCell::new(None) };
}

/// A JSON string literal (quotes and escapes), without a JSON library.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn optional(value: &Option<String>) -> String {
    value.as_deref().map_or("null".to_string(), quoted)
}

fn describe(info: &StreamInfo, event: &SseEvent) -> String {
    let direction = match info.direction {
        Direction::ToServer => "to-server",
        Direction::ToClient => "to-client",
    };
    format!(
        r#"{{"direction":"{direction}","method":{},"path":{},"rpc_method":{},"protocol_version":{},"session":{},"id":{},"data":{}}}"#,
        quoted(&info.method),
        quoted(&info.path),
        optional(&info.rpc_method),
        optional(&info.protocol_version),
        info.session_id.is_some(),
        optional(&event.id),
        quoted(&event.data),
    )
}

struct StreamInfoPlugin;

impl Guest for StreamInfoPlugin {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn on_stream_start(info: StreamInfo) {
        INFO.with(|slot| *slot.borrow_mut() = Some(info));
    }

    fn on_event(event: SseEvent) -> Verdict {
        let Some(data) = INFO.with(|slot| slot.borrow().as_ref().map(|info| describe(info, &event)))
        else {
            return Verdict::Pass;
        };
        Verdict::Modify(SseEvent {
            id: event.id.as_ref().map(|id| format!("plugin-changed-{id}")),
            data,
            ..event
        })
    }

    fn on_stream_end() {
        INFO.with(|slot| *slot.borrow_mut() = None);
    }
}

export!(StreamInfoPlugin);
