//! JSON schemas fitted to what Claude's structured outputs compile (`output_config.format` and
//! strict tools): the API refuses a schema with numeric bounds, string lengths, array sizes
//! beyond `minItems` 0 or 1, or property counts. Clients of other formats (OpenAI's SDKs write
//! pydantic's and zod's bounds into their schemas) send them freely; here each such keyword
//! is taken out of its schema and said in the schema's description instead, so the model still
//! reads it, and the request is answered rather than refused.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Keywords Claude's structured outputs do not take, whatever their value.
const UNSUPPORTED: [&str; 11] = [
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
];

/// Members whose value is one subschema.
const ONE: [&str; 4] = ["items", "additionalProperties", "not", "contains"];
/// Members whose value is a list of subschemas.
const LIST: [&str; 4] = ["anyOf", "allOf", "oneOf", "prefixItems"];
/// Members whose value maps names to subschemas.
const MAP: [&str; 4] = ["properties", "$defs", "definitions", "patternProperties"];

/// The schema as Claude takes it, or `None` when it takes it as it is (the common case: nothing
/// is copied then).
pub(crate) fn fitted(schema: &Value) -> Option<Value> {
    if !needs_fitting(schema) {
        return None;
    }
    let mut schema = schema.clone();
    fit(&mut schema);
    Some(schema)
}

fn unsupported(key: &str, value: &Value) -> bool {
    UNSUPPORTED.contains(&key) || (key == "minItems" && value.as_u64().is_none_or(|n| n > 1))
}

fn subschemas(node: &Map<String, Value>) -> impl Iterator<Item = &Value> {
    let one = ONE.iter().filter_map(|k| node.get(*k));
    let list = LIST
        .iter()
        .filter_map(|k| node.get(*k).and_then(Value::as_array))
        .flatten();
    let map = MAP
        .iter()
        .filter_map(|k| node.get(*k).and_then(Value::as_object))
        .flat_map(Map::values);
    one.chain(list).chain(map)
}

fn needs_fitting(schema: &Value) -> bool {
    let Value::Object(node) = schema else {
        return false;
    };
    node.iter().any(|(k, v)| unsupported(k, v)) || subschemas(node).any(needs_fitting)
}

fn fit(schema: &mut Value) {
    let Value::Object(node) = schema else {
        return;
    };
    // In the list's order, whatever the map's.
    let mut removed: Vec<(&str, Value)> = Vec::new();
    for k in UNSUPPORTED.iter().chain(&["minItems"]) {
        if node.get(*k).is_some_and(|v| unsupported(k, v))
            && let Some(v) = node.remove(*k)
        {
            removed.push((k, v));
        }
    }
    if !removed.is_empty() {
        let mut said = String::from("Constraints:");
        for (i, (k, v)) in removed.iter().enumerate() {
            let _ = write!(said, "{} {k} {v}", if i == 0 { "" } else { "," });
        }
        said.push('.');
        let description = match node.get("description").and_then(Value::as_str) {
            Some(d) if !d.is_empty() => format!("{d}\n\n{said}"),
            _ => said,
        };
        node.insert("description".to_owned(), Value::String(description));
    }
    for k in ONE {
        if let Some(v) = node.get_mut(k) {
            fit(v);
        }
    }
    for k in LIST {
        if let Some(Value::Array(items)) = node.get_mut(k) {
            items.iter_mut().for_each(fit);
        }
    }
    for k in MAP {
        if let Some(Value::Object(named)) = node.get_mut(k) {
            named.values_mut().for_each(fit);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::fitted;

    #[test]
    fn bounds_move_into_descriptions_and_names_stay() {
        let schema = json!({
            "type": "object",
            "properties": {
                // A property named like a keyword is a property.
                "minimum": {"type": "integer", "minimum": 0, "maximum": 150,
                    "description": "Age in years"},
                "name": {"type": "string", "minLength": 1},
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 20},
                    "minItems": 1, "maxItems": 5},
                "pick": {"anyOf": [{"type": "number", "multipleOf": 0.5}, {"type": "null"}]}
            },
            "required": ["minimum", "name"],
            "additionalProperties": false,
            "$defs": {"Inner": {"type": "array", "minItems": 2}}
        });
        let fitted = fitted(&schema).unwrap();
        assert_eq!(
            fitted["properties"]["minimum"],
            json!({"type": "integer",
                "description": "Age in years\n\nConstraints: minimum 0, maximum 150."})
        );
        assert_eq!(
            fitted["properties"]["name"],
            json!({"type": "string", "description": "Constraints: minLength 1."})
        );
        let tags = &fitted["properties"]["tags"];
        assert_eq!(tags["minItems"], 1);
        assert_eq!(tags["description"], "Constraints: maxItems 5.");
        assert_eq!(
            tags["items"],
            json!({"type": "string", "description": "Constraints: maxLength 20."})
        );
        assert_eq!(
            fitted["properties"]["pick"]["anyOf"][0],
            json!({"type": "number", "description": "Constraints: multipleOf 0.5."})
        );
        assert_eq!(
            fitted["$defs"]["Inner"],
            json!({"type": "array", "description": "Constraints: minItems 2."})
        );
        assert_eq!(fitted["required"], schema["required"]);
        assert_eq!(fitted["additionalProperties"], false);
    }

    #[test]
    fn a_schema_claude_takes_is_left_alone() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "array", "items": {"type": "string", "format": "date"}, "minItems": 1},
            "b": {"enum": ["x", "y"]}}, "required": ["a"]});
        assert_eq!(fitted(&schema), None);
    }
}
