//! Prompt templates and applying a configuration version to a request: `{{variable}}`
//! placeholders checked when a version is created and filled from `switchyard.variables` when a
//! request uses it; the version's target replaces the request's model, its parameters fill what
//! the request leaves unset, and its locked parameters cannot be contradicted.

use serde_json::{Map, Value};
use switchyard_protocol::canonical::{ChatRequest, ContentPart, Extras, Message, Role};
use switchyard_protocol::error::DecodeError;

use super::model::{ConfigVersion, Parameters, Template, TemplateRole};

/// A piece of a template: literal text or a variable to fill in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Splits a template text into literal text and `{{name}}` placeholders (spaces inside the
/// braces are ignored). An unclosed `{{` or an invalid name is an error.
pub fn parse(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            pieces.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| {
            format!(
                "'{{{{' at byte {} is never closed",
                text.len() - rest.len() + start
            )
        })?;
        let name = after[..end].trim();
        if !valid_name(name) {
            return Err(format!(
                "'{{{{{}}}}}' is not a variable: names start with a letter or '_' and hold letters, digits, '_', '-' or '.'",
                &after[..end]
            ));
        }
        pieces.push(Piece::Var(name));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

/// Every template text with the path it has in the version (`template.messages[1].content`).
fn texts(template: &Template) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    if let Some(s) = &template.system {
        out.push(("template.system".to_owned(), s.as_str()));
    }
    for (i, m) in template.messages.iter().enumerate() {
        out.push((
            format!("template.messages[{i}].content"),
            m.content.as_str(),
        ));
    }
    out
}

/// Checks every placeholder of a template; the error names the field.
pub fn validate(template: &Template) -> Result<(), DecodeError> {
    for (path, text) in texts(template) {
        parse(text).map_err(|e| DecodeError::new(format!("{path}: {e}"), Some(&path)))?;
    }
    Ok(())
}

/// The variables a template uses, in order of first use.
pub fn variables(template: &Template) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (_, text) in texts(template) {
        for piece in parse(text).unwrap_or_default() {
            if let Piece::Var(v) = piece
                && !names.iter().any(|n| n == v)
            {
                names.push(v.to_owned());
            }
        }
    }
    names
}

fn variable_text(name: &str, value: &Value) -> Result<String, DecodeError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => {
            let path = format!("switchyard.variables.{name}");
            Err(DecodeError::new(
                format!("'{path}' must be a string, number or boolean"),
                Some(&path),
            ))
        }
    }
}

/// Fills in a text's placeholders. A missing variable is a 400 naming it and where it is used.
pub fn render(
    text: &str,
    field: &str,
    variables: &Map<String, Value>,
    version_label: &str,
) -> Result<String, DecodeError> {
    let pieces = parse(text).map_err(|e| DecodeError::new(format!("{field}: {e}"), Some(field)))?;
    let mut out = String::with_capacity(text.len());
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(name) => {
                let value = variables.get(name).ok_or_else(|| {
                    let path = format!("switchyard.variables.{name}");
                    DecodeError::new(
                        format!(
                            "missing template variable '{name}': configuration {version_label} uses it in {field}; pass it as '{path}'"
                        ),
                        Some(&path),
                    )
                })?;
                out.push_str(&variable_text(name, value)?);
            }
        }
    }
    Ok(out)
}

fn text_message(role: Role, text: String) -> Message {
    Message {
        role,
        content: vec![ContentPart::text(text)],
        name: None,
        extras: Extras::default(),
    }
}

/// The request's value and the version's for each parameter, as JSON (for locked checks).
fn parameter_pairs(request: &ChatRequest, p: &Parameters) -> Vec<(&'static str, Value, Value)> {
    let j = |v: Option<Value>| v.unwrap_or(Value::Null);
    vec![
        (
            "temperature",
            j(request.temperature.map(Value::from)),
            j(p.temperature.map(Value::from)),
        ),
        (
            "top_p",
            j(request.top_p.map(Value::from)),
            j(p.top_p.map(Value::from)),
        ),
        (
            "max_tokens",
            j(request.max_tokens.map(Value::from)),
            j(p.max_tokens.map(Value::from)),
        ),
        (
            "stop",
            if request.stop.is_empty() {
                Value::Null
            } else {
                Value::from(request.stop.clone())
            },
            j(p.stop.clone().map(Value::from)),
        ),
        (
            "seed",
            j(request.seed.map(Value::from)),
            j(p.seed.map(Value::from)),
        ),
        (
            "frequency_penalty",
            j(request.frequency_penalty.map(Value::from)),
            j(p.frequency_penalty.map(Value::from)),
        ),
        (
            "presence_penalty",
            j(request.presence_penalty.map(Value::from)),
            j(p.presence_penalty.map(Value::from)),
        ),
    ]
}

/// Turns `request` into what `version` says: the target alias as model, the template's
/// messages before the request's own, the version's parameters wherever the request sets none,
/// and a 400 when the request sets a locked parameter to another value.
pub fn apply(
    version: &ConfigVersion,
    request: &mut ChatRequest,
    variables: &Map<String, Value>,
) -> Result<(), DecodeError> {
    let label = format!("{}@{}", version.name, version.version);
    for (name, requested, configured) in parameter_pairs(request, &version.parameters) {
        if version.locked.iter().any(|l| l == name)
            && !requested.is_null()
            && requested != configured
        {
            return Err(DecodeError::new(
                format!(
                    "'{name}' is locked to {configured} by configuration {label}; leave it out of the request"
                ),
                Some(name),
            ));
        }
    }
    let mut prefix = Vec::with_capacity(version.template.messages.len() + 1);
    if let Some(system) = &version.template.system {
        let text = render(system, "template.system", variables, &label)?;
        prefix.push(text_message(Role::System, text));
    }
    for (i, m) in version.template.messages.iter().enumerate() {
        let field = format!("template.messages[{i}].content");
        let text = render(&m.content, &field, variables, &label)?;
        let role = match m.role {
            TemplateRole::System => Role::System,
            TemplateRole::User => Role::User,
            TemplateRole::Assistant => Role::Assistant,
        };
        prefix.push(text_message(role, text));
    }
    let p = &version.parameters;
    request.temperature = request.temperature.or(p.temperature);
    request.top_p = request.top_p.or(p.top_p);
    request.max_tokens = request.max_tokens.or(p.max_tokens);
    if request.stop.is_empty()
        && let Some(stop) = &p.stop
    {
        request.stop = stop.clone();
    }
    request.seed = request.seed.or(p.seed);
    request.frequency_penalty = request.frequency_penalty.or(p.frequency_penalty);
    request.presence_penalty = request.presence_penalty.or(p.presence_penalty);
    request.model = version.target.clone();
    if !prefix.is_empty() {
        prefix.append(&mut request.messages);
        request.messages = prefix;
    }
    Ok(())
}
