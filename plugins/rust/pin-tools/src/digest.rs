//! The digest a pin holds: SHA-256 of the parts of a tool's definition that tell a
//! model what the tool does, in a canonical form.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The members of a tool definition a pin covers: what a model reads to decide whether
/// and how to call the tool. `name` is the pin's key; `_meta` and `icons` are left out
/// (servers may vary them with no change of meaning).
pub const PINNED_FIELDS: &[&str] = &[
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// Writes `value` as JSON with every object's keys sorted, so the same definition gives
/// the same digest whatever order a server writes its keys in.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The hex SHA-256 of the tool's pinned fields (absent fields count as absent, so
/// adding an `outputSchema` is a change).
pub fn of_tool(tool: &Value) -> String {
    let mut text = String::new();
    for field in PINNED_FIELDS {
        text.push_str(field);
        text.push('=');
        match tool.get(*field) {
            Some(value) => canonical(value, &mut text),
            None => text.push('-'),
        }
        text.push('\n');
    }
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter_and_content_does() {
        let a = json!({"name": "t", "description": "d", "inputSchema": {"type": "object", "properties": {}}});
        let b = json!({"inputSchema": {"properties": {}, "type": "object"}, "description": "d", "name": "t"});
        let c = json!({"name": "t", "description": "d!", "inputSchema": {"type": "object", "properties": {}}});
        let d = json!({"name": "t", "description": "d", "inputSchema": {"type": "object", "properties": {}}, "_meta": {"x": 1}});
        assert_eq!(of_tool(&a), of_tool(&b));
        assert_ne!(of_tool(&a), of_tool(&c));
        assert_eq!(of_tool(&a), of_tool(&d), "_meta is not pinned");
        assert_eq!(of_tool(&a).len(), 64);
    }
}
