//! Path-aware reading of JSON objects: take the fields a dialect models, one by one, each error
//! naming the full JSON path, and keep whatever is left over as the unknown-field extras.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::DecodeError;

/// An object being taken apart field by field.
#[derive(Debug)]
pub struct ObjectReader {
    map: Map<String, Value>,
    path: String,
}

/// Joins a parent path and a child segment (`messages` + `[2]`, `messages[2]` + `role`).
pub fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else if child.starts_with('[') {
        format!("{parent}{child}")
    } else {
        format!("{parent}.{child}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl ObjectReader {
    /// Reads a whole body, which must be one JSON object.
    pub fn from_body(body: &[u8]) -> Result<Self, DecodeError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| DecodeError::new(format!("invalid JSON body: {e}"), None))?;
        Self::from_value(value, "")
    }

    pub fn from_value(value: Value, path: &str) -> Result<Self, DecodeError> {
        match value {
            Value::Object(map) => Ok(Self {
                map,
                path: path.to_owned(),
            }),
            other => Err(DecodeError::new(
                if path.is_empty() {
                    format!(
                        "request body must be a JSON object, not {}",
                        type_name(&other)
                    )
                } else {
                    format!("'{path}' must be an object, not {}", type_name(&other))
                },
                (!path.is_empty()).then_some(path),
            )),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn child_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Removes `key` and deserializes it; absent or `null` gives `None`.
    pub fn take<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, DecodeError> {
        match self.map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => deserialize_at(value, &self.child_path(key)).map(Some),
        }
    }

    /// Removes `key`; absent or `null` is an error naming the path.
    pub fn require<T: DeserializeOwned>(&mut self, key: &str) -> Result<T, DecodeError> {
        match self.take(key)? {
            Some(v) => Ok(v),
            None => {
                let path = self.child_path(key);
                Err(DecodeError::new(
                    format!("missing required field '{path}'"),
                    Some(&path),
                ))
            }
        }
    }

    /// Removes `key` as a raw value (absent or `null` gives `None`).
    pub fn take_value(&mut self, key: &str) -> Option<Value> {
        match self.map.remove(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// Removes `key`, which must be an object, as a nested reader.
    pub fn take_object(&mut self, key: &str) -> Result<Option<ObjectReader>, DecodeError> {
        match self.take_value(key) {
            None => Ok(None),
            Some(v) => ObjectReader::from_value(v, &self.child_path(key)).map(Some),
        }
    }

    /// Removes `key`, which must be an array, returning its items with their paths.
    pub fn take_array(&mut self, key: &str) -> Result<Option<Vec<(String, Value)>>, DecodeError> {
        let path = self.child_path(key);
        match self.take_value(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{path}[{i}]"), v))
                    .collect(),
            )),
            Some(other) => Err(DecodeError::new(
                format!("'{path}' must be an array, not {}", type_name(&other)),
                Some(&path),
            )),
        }
    }

    /// The fields nobody took.
    pub fn into_rest(self) -> Map<String, Value> {
        self.map
    }
}

/// Deserializes `value`, reporting errors at `path` plus the path inside the value.
pub fn deserialize_at<T: DeserializeOwned>(value: Value, path: &str) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner_path = e.path().to_string();
        let full = if inner_path == "." || inner_path.is_empty() {
            path.to_owned()
        } else {
            join(path, &inner_path)
        };
        let inner = e.into_inner();
        DecodeError::new(format!("invalid value at '{full}': {inner}"), Some(&full))
    })
}

/// An object key as the deserializer has it: borrowed from the input when it holds no escapes.
pub struct Key<'de>(pub Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}
