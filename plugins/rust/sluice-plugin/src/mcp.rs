//! Typed views of the MCP shapes plugins most often read and edit.

use serde_json::{Map, Value};

/// A `tools/call` request: which tool, with which arguments.
#[derive(Debug, Clone, Copy)]
pub struct ToolCall<'a> {
    /// `params.name`.
    pub name: &'a str,
    /// `params.arguments`, when it is an object.
    pub arguments: Option<&'a Map<String, Value>>,
}

/// The `result` of a `tools/call`, to edit in place: its `content` items and its
/// `structuredContent` (which servers such as the MCP Python SDK send beside the text,
/// so a plugin that edits only the text leaves the same data unedited there).
pub struct ToolResult<'a> {
    result: &'a mut Map<String, Value>,
}

impl<'a> ToolResult<'a> {
    pub(crate) fn new(result: &'a mut Map<String, Value>) -> Self {
        ToolResult { result }
    }

    /// True when the tool reported a failure (`isError: true`).
    pub fn is_error(&self) -> bool {
        self.result.get("isError").and_then(Value::as_bool) == Some(true)
    }

    /// The `text` of each `content` item of type `text`, to read or change.
    pub fn texts_mut(&mut self) -> impl Iterator<Item = &mut String> {
        self.result
            .get_mut("content")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter(|item| item.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|item| match item.get_mut("text") {
                Some(Value::String(text)) => Some(text),
                _ => None,
            })
    }

    /// Adds a `content` item of type `text`.
    pub fn push_text(&mut self, text: impl Into<String>) {
        let item = serde_json::json!({"type": "text", "text": text.into()});
        match self.result.get_mut("content").and_then(Value::as_array_mut) {
            Some(content) => content.push(item),
            None => {
                self.result
                    .insert("content".to_string(), Value::Array(vec![item]));
            }
        }
    }

    /// `structuredContent`, when the server sent it.
    pub fn structured_mut(&mut self) -> Option<&mut Value> {
        self.result.get_mut("structuredContent")
    }

    /// Every string in the result (text items, `structuredContent`, resource text,
    /// `_meta`): what a redactor must visit to leave nothing behind.
    pub fn strings_mut(&mut self, mut f: impl FnMut(&mut String)) {
        for value in self.result.values_mut() {
            each_string_mut(value, &mut f);
        }
    }

    /// The whole `result` object.
    pub fn raw_mut(&mut self) -> &mut Map<String, Value> {
        self.result
    }
}

/// The `tools` array of a `tools/list` result, to filter or edit.
pub struct Tools<'a> {
    tools: &'a mut Vec<Value>,
}

impl<'a> Tools<'a> {
    pub(crate) fn new(tools: &'a mut Vec<Value>) -> Self {
        Tools { tools }
    }

    /// The tools' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools
            .iter()
            .filter_map(|tool| tool.get("name").and_then(Value::as_str))
    }

    /// Keeps the tools for which `keep(name, definition)` is true. A tool without a
    /// string `name` is given the name `""`.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &Value) -> bool) {
        self.tools.retain(|tool| {
            let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
            keep(name, tool)
        });
    }

    /// The definitions, to edit (a description, a schema).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Value> {
        self.tools.iter_mut()
    }
}

/// Calls `f` on every string value inside `value` (not on object keys).
pub fn each_string_mut(value: &mut Value, f: &mut impl FnMut(&mut String)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter_mut().for_each(|v| each_string_mut(v, f)),
        Value::Object(map) => map.values_mut().for_each(|v| each_string_mut(v, f)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{ToolResult, Tools, each_string_mut};

    fn object(value: Value) -> serde_json::Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_tool_result_edits_its_text_items_and_keeps_key_order() {
        let mut result = object(json!({
            "content": [
                {"type": "text", "text": "sunny"},
                {"type": "image", "data": "xyz", "mimeType": "image/png"},
                {"type": "text", "text": "warm"}
            ],
            "structuredContent": {"zeta": "sunny", "alpha": 1},
            "isError": false
        }));
        let mut view = ToolResult::new(&mut result);
        assert!(!view.is_error());
        view.texts_mut().for_each(|t| *t = t.to_uppercase());
        *view.structured_mut().unwrap().get_mut("zeta").unwrap() = json!("SUNNY");
        view.push_text("checked");
        assert_eq!(
            Value::Object(result).to_string(),
            r#"{"content":[{"type":"text","text":"SUNNY"},{"type":"image","data":"xyz","mimeType":"image/png"},{"type":"text","text":"WARM"},{"type":"text","text":"checked"}],"structuredContent":{"zeta":"SUNNY","alpha":1},"isError":false}"#
        );
    }

    #[test]
    fn strings_mut_visits_every_string_but_no_key() {
        let mut result = object(json!({"content": [{"type": "text", "text": "a"}],
            "structuredContent": {"k": ["b", {"c": "d"}], "n": 2}}));
        let mut seen = Vec::new();
        ToolResult::new(&mut result).strings_mut(|s| seen.push(s.clone()));
        assert_eq!(seen, ["text", "a", "b", "d"]);
        let mut value = json!({"x": "y"});
        each_string_mut(&mut value, &mut |s| s.push('!'));
        assert_eq!(value, json!({"x": "y!"}));
    }

    #[test]
    fn tools_retain_filters_by_name() {
        let mut tools = vec![
            json!({"name": "read"}),
            json!({"name": "delete"}),
            json!({}),
        ];
        let mut view = Tools::new(&mut tools);
        assert_eq!(view.names().collect::<Vec<_>>(), ["read", "delete"]);
        view.retain(|name, _| name != "delete");
        assert_eq!(tools, vec![json!({"name": "read"}), json!({})]);
    }
}
