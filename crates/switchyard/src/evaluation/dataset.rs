//! The dataset item format and its validation. A dataset arrives as JSONL (one item per line)
//! or as a JSON array; every item is checked before anything is stored, and the first bad one
//! is reported with its line (or index) and the JSON path of the offending field.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Most items one dataset may hold.
pub const MAX_ITEMS: usize = 50_000;
/// Longest item id.
const MAX_ID_CHARS: usize = 200;
const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool"];

/// One item as stored: the input as chat messages, optional template variables, expected
/// output and metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetItem {
    /// Unique within its dataset; `item-N` (N from 1, by position) when the input gave none.
    pub id: String,
    /// OpenAI-style chat messages (`[{"role": …, "content": …}]`).
    pub messages: Vec<Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub variables: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

impl DatasetItem {
    /// The text of the last user message, for judging prompts and readable tables.
    pub fn input_text(&self) -> String {
        self.messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(content_text)
            .unwrap_or_default()
    }
}

/// The text of a message's `content`: a string, or the `text` of its text parts.
fn content_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Why a dataset was refused: where (line or index) and which field.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemError {
    pub message: String,
    /// `line 3: input.messages[0].role` for JSONL, `items[2].input` for a JSON array.
    pub param: String,
}

impl ItemError {
    fn at(location: &Location, field: &str, message: impl Into<String>) -> Self {
        let param = location.param(field);
        Self {
            message: format!("{}: {}", location.describe(field), message.into()),
            param,
        }
    }
}

/// Where an item came from, for error messages.
#[derive(Debug, Clone, Copy)]
enum Location {
    Line(usize),
    Index(usize),
}

impl Location {
    fn param(&self, field: &str) -> String {
        match self {
            Location::Line(n) if field.is_empty() => format!("line {n}"),
            Location::Line(n) => format!("line {n}: {field}"),
            Location::Index(i) if field.is_empty() => format!("items[{i}]"),
            Location::Index(i) => format!("items[{i}].{field}"),
        }
    }

    fn describe(&self, field: &str) -> String {
        match self {
            Location::Line(n) if field.is_empty() => format!("line {n}"),
            Location::Line(n) => format!("line {n}, field '{field}'"),
            Location::Index(_) => format!("field '{}'", self.param(field)),
        }
    }
}

/// Parses a JSONL body: one item per non-blank line.
pub fn parse_jsonl(body: &str) -> Result<Vec<DatasetItem>, ItemError> {
    let mut items = Vec::new();
    let mut locations = Vec::new();
    // A byte-order mark some editors write at the start is not part of the first line's JSON.
    let body = body.strip_prefix('\u{feff}').unwrap_or(body);
    for (i, line) in body.lines().enumerate() {
        let location = Location::Line(i + 1);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|e| ItemError::at(&location, "", format!("not valid JSON: {e}")))?;
        items.push(parse_item(value, &location, items.len() + 1)?);
        locations.push(location);
        if items.len() > MAX_ITEMS {
            return Err(ItemError::at(
                &location,
                "",
                format!("a dataset holds at most {MAX_ITEMS} items"),
            ));
        }
    }
    finish(items, Some(&locations))
}

/// Parses the `items` array of a JSON body.
pub fn parse_array(values: Vec<Value>) -> Result<Vec<DatasetItem>, ItemError> {
    if values.len() > MAX_ITEMS {
        return Err(ItemError {
            message: format!("a dataset holds at most {MAX_ITEMS} items"),
            param: "items".into(),
        });
    }
    let mut items = Vec::with_capacity(values.len());
    let mut locations = Vec::with_capacity(values.len());
    for (i, value) in values.into_iter().enumerate() {
        items.push(parse_item(value, &Location::Index(i), i + 1)?);
        locations.push(Location::Index(i));
    }
    finish(items, Some(&locations))
}

/// Builds items from already-trusted parts (stored request records); only ids are checked.
pub fn from_parts(items: Vec<DatasetItem>) -> Result<Vec<DatasetItem>, ItemError> {
    finish(items, None)
}

/// Checks the items as a whole; `locations`, where they came from (each item's line or index),
/// names the place of a repeated id.
fn finish(
    items: Vec<DatasetItem>,
    locations: Option<&[Location]>,
) -> Result<Vec<DatasetItem>, ItemError> {
    if items.is_empty() {
        return Err(ItemError {
            message: "the dataset has no items".into(),
            param: "items".into(),
        });
    }
    let mut seen = std::collections::HashMap::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(first) = seen.insert(item.id.as_str(), i) {
            if let Some(at) = locations {
                return Err(ItemError::at(
                    &at[i],
                    "id",
                    format!(
                        "repeats the id '{}' of item {} ({})",
                        item.id,
                        first + 1,
                        at[first].param("")
                    ),
                ));
            }
            return Err(ItemError {
                message: format!(
                    "item {} repeats the id '{}' of item {}",
                    i + 1,
                    item.id,
                    first + 1
                ),
                param: "id".into(),
            });
        }
    }
    Ok(items)
}

fn parse_item(value: Value, at: &Location, position: usize) -> Result<DatasetItem, ItemError> {
    let Value::Object(mut obj) = value else {
        return Err(ItemError::at(at, "", "an item must be a JSON object"));
    };
    let id = match obj.remove("id") {
        None | Some(Value::Null) => format!("item-{position}"),
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= MAX_ID_CHARS => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(ItemError::at(
                at,
                "id",
                format!("must be a non-empty string of at most {MAX_ID_CHARS} characters"),
            ));
        }
    };
    let messages = match obj.remove("input") {
        None | Some(Value::Null) => return Err(ItemError::at(at, "input", "is required")),
        Some(Value::String(text)) => vec![serde_json::json!({"role": "user", "content": text})],
        Some(Value::Object(mut input)) => {
            let messages = input.remove("messages");
            if let Some(extra) = input.keys().next() {
                return Err(ItemError::at(
                    at,
                    &format!("input.{extra}"),
                    "unknown field (an object input has only 'messages')",
                ));
            }
            parse_messages(messages, at)?
        }
        Some(_) => {
            return Err(ItemError::at(
                at,
                "input",
                "must be a string or an object with 'messages'",
            ));
        }
    };
    let variables = object_field(&mut obj, "variables", at)?;
    let expected = match obj.remove("expected") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v),
    };
    let metadata = object_field(&mut obj, "metadata", at)?;
    if let Some(extra) = obj.keys().next() {
        return Err(ItemError::at(
            at,
            extra,
            "unknown field (an item has id, input, variables, expected and metadata)",
        ));
    }
    Ok(DatasetItem {
        id,
        messages,
        variables,
        expected,
        metadata,
    })
}

fn object_field(
    obj: &mut Map<String, Value>,
    name: &str,
    at: &Location,
) -> Result<Map<String, Value>, ItemError> {
    match obj.remove(name) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(ItemError::at(at, name, "must be a JSON object")),
    }
}

fn parse_messages(messages: Option<Value>, at: &Location) -> Result<Vec<Value>, ItemError> {
    let Some(Value::Array(messages)) = messages else {
        return Err(ItemError::at(
            at,
            "input.messages",
            "must be a non-empty array of chat messages",
        ));
    };
    if messages.is_empty() {
        return Err(ItemError::at(
            at,
            "input.messages",
            "must be a non-empty array of chat messages",
        ));
    }
    for (i, m) in messages.iter().enumerate() {
        let path = format!("input.messages[{i}]");
        let Some(obj) = m.as_object() else {
            return Err(ItemError::at(at, &path, "a message must be a JSON object"));
        };
        match obj.get("role").and_then(Value::as_str) {
            Some(role) if ROLES.contains(&role) => {}
            _ => {
                return Err(ItemError::at(
                    at,
                    &format!("{path}.role"),
                    format!("must be one of {}", ROLES.join(", ")),
                ));
            }
        }
        match obj.get("content") {
            Some(Value::String(_) | Value::Array(_)) => {}
            // An assistant turn that only calls tools has no content.
            None | Some(Value::Null) if obj.contains_key("tool_calls") => {}
            _ => {
                return Err(ItemError::at(
                    at,
                    &format!("{path}.content"),
                    "must be a string or an array of content parts",
                ));
            }
        }
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn jsonl_items_in_every_accepted_shape() {
        let body = r#"
{"input": "What is 2+2?", "expected": "4"}
{"id": "greet", "input": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}, "metadata": {"lang": "en"}}

{"id": 7, "input": "Give JSON", "expected": {"a": 1}, "variables": {"tone": "dry"}}
"#;
        let items = parse_jsonl(body).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].id, "item-1");
        assert_eq!(
            items[0].messages,
            vec![json!({"role": "user", "content": "What is 2+2?"})]
        );
        assert_eq!(items[0].expected, Some(json!("4")));
        assert_eq!(items[1].id, "greet");
        assert_eq!(items[1].input_text(), "Hi");
        assert_eq!(items[1].metadata["lang"], "en");
        assert_eq!(items[2].id, "7");
        assert_eq!(items[2].variables["tone"], "dry");
        assert_eq!(items[2].expected, Some(json!({"a": 1})));
    }

    #[test]
    fn a_byte_order_mark_is_not_json() {
        let items = parse_jsonl("\u{feff}{\"input\": \"hi\"}\n").unwrap();
        assert_eq!(items[0].input_text(), "hi");
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let cases = [
            ("{\"input\": \"ok\"}\n{\"input\": 3}", "line 2: input"),
            ("{\"input\": \"ok\"}\n\n{oops", "line 3"),
            ("{\"expected\": \"x\"}", "line 1: input"),
            (
                "{\"input\": {\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}}",
                "line 1: input.messages[0].role",
            ),
            (
                "{\"input\": {\"messages\": [{\"role\": \"user\", \"content\": 5}]}}",
                "line 1: input.messages[0].content",
            ),
            ("{\"input\": {\"messages\": []}}", "line 1: input.messages"),
            ("{\"input\": {\"text\": \"x\"}}", "line 1: input.text"),
            ("{\"input\": \"x\", \"expect\": \"y\"}", "line 1: expect"),
            ("{\"input\": \"x\", \"metadata\": [1]}", "line 1: metadata"),
            ("{\"input\": \"x\", \"id\": \"\"}", "line 1: id"),
            ("[1, 2]", "line 1"),
        ];
        for (body, param) in cases {
            let e = parse_jsonl(body).unwrap_err();
            assert_eq!(e.param, param, "{body}: {}", e.message);
            assert!(e.message.starts_with("line "), "{}", e.message);
        }
        let e =
            parse_jsonl("{\"id\": \"a\", \"input\": \"x\"}\n\n\n{\"id\": \"a\", \"input\": \"y\"}")
                .unwrap_err();
        assert!(e.message.contains("repeats the id 'a'"), "{}", e.message);
        assert_eq!(e.param, "line 4: id", "{}", e.message);
        assert!(e.message.contains("line 1"), "{}", e.message);
        assert_eq!(
            parse_jsonl("\n\n").unwrap_err().message,
            "the dataset has no items"
        );
    }

    #[test]
    fn array_errors_name_the_index() {
        let e = parse_array(vec![
            json!({"input": "a"}),
            json!({"input": "b", "variables": 1}),
        ])
        .unwrap_err();
        assert_eq!(e.param, "items[1].variables");
    }
}
