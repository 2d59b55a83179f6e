//! `sluice-loadgen stdio-server`: a stdio MCP server that answers at once, so a
//! benchmark of a stdio bridge (sluice, supergateway) measures the bridge, not the
//! server. One JSON line per message each way: `initialize`, `ping`, `tools/list`
//! (one tool) and `tools/call` of `echo` (its `text` back); notifications are read and
//! ignored, any other request gets "method not found".

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::fd::AsFd;

use serde_json::{Value, json};

/// The protocol version answered to an `initialize` that names none.
const DEFAULT_PROTOCOL: &str = "2025-06-18";

/// Serves stdin until it ends.
pub fn serve() -> std::io::Result<()> {
    // Own handles on fds 0 and 1: std's `Stdout` is line-buffered (a write per answer)
    // and both std handles lock on every call.
    let stdin = File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let stdout = File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
    let mut reader = BufReader::with_capacity(64 << 10, stdin);
    let mut out = BufWriter::with_capacity(64 << 10, stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return out.flush();
        }
        if let Some(answer) = answer(&line) {
            out.write_all(answer.to_string().as_bytes())?;
            out.write_all(b"\n")?;
        }
        // Requests that arrived together are answered in one write; a lone request at
        // once.
        if reader.buffer().is_empty() {
            out.flush()?;
        }
    }
}

/// The answer to one line, `None` for a notification, a response or a line that is not
/// JSON.
pub fn answer(line: &[u8]) -> Option<Value> {
    let message: Value = serde_json::from_slice(line).ok()?;
    let id = message.get("id")?;
    let method = message.get("method")?.as_str()?;
    let params = message.get("params");
    let result = match method {
        "initialize" => json!({
            "protocolVersion": params
                .and_then(|p| p.get("protocolVersion"))
                .and_then(Value::as_str)
                .unwrap_or(DEFAULT_PROTOCOL),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "sluice-loadgen", "version": env!("CARGO_PKG_VERSION")},
        }),
        "ping" => json!({}),
        "tools/list" => json!({"tools": [{
            "name": "echo",
            "description": "Returns its text.",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}},
                            "required": ["text"]},
        }]}),
        "tools/call" => {
            let arguments = params.and_then(|p| p.get("arguments"));
            let text = arguments
                .and_then(|a| a.get("text"))
                .and_then(Value::as_str);
            match (params.and_then(|p| p.get("name")), text) {
                (Some(name), Some(text)) if name == "echo" => {
                    json!({"content": [{"type": "text", "text": text}]})
                }
                _ => return Some(error(id, -32602, "only echo, with a text")),
            }
        }
        _ => return Some(error(id, -32601, "method not found")),
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_answers_the_calls_a_client_makes_and_ignores_notifications() {
        let init = answer(
            br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#,
        )
        .unwrap();
        assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
        let list = answer(br#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#).unwrap();
        assert_eq!(list["id"], "a");
        assert_eq!(list["result"]["tools"][0]["name"], "echo");
        let call = answer(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#,
        )
        .unwrap();
        assert_eq!(call["result"]["content"][0]["text"], "hi");
        let unknown = answer(br#"{"jsonrpc":"2.0","id":8,"method":"nope"}"#).unwrap();
        assert_eq!(unknown["error"]["code"], -32601);
        assert!(answer(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).is_none());
        assert!(answer(b"not json").is_none());
    }
}
