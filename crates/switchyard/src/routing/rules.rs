//! Routing rules: evaluated in order before the strategy; the first whose every condition holds
//! decides the target alias, a deployment subset, weights or a cost ceiling.

use serde_json::Value;

use super::RequestFacts;
use crate::config::RuleFile;

pub fn first_match<'a>(rules: &'a [RuleFile], facts: &RequestFacts) -> Option<&'a RuleFile> {
    rules.iter().find(|r| matches(r, facts))
}

fn matches(rule: &RuleFile, facts: &RequestFacts) -> bool {
    let w = &rule.when;
    if let Some(glob) = &w.model
        && !glob_match(glob, &facts.model)
    {
        return false;
    }
    for (key, expected) in &w.metadata {
        let actual = facts.metadata.as_ref().and_then(|m| m.get(key));
        let equal = match actual {
            Some(Value::String(s)) => s == expected,
            Some(Value::Bool(b)) => b.to_string() == *expected,
            Some(Value::Number(n)) => n.to_string() == *expected,
            _ => false,
        };
        if !equal {
            return false;
        }
    }
    if w.min_input_tokens
        .is_some_and(|min| facts.input_tokens < min)
        || w.max_input_tokens
            .is_some_and(|max| facts.input_tokens > max)
        || w.max_messages.is_some_and(|max| facts.messages > max)
    {
        return false;
    }
    for need in &w.needs {
        let has = match need.as_str() {
            "tools" => facts.needs.tools,
            "images" => facts.needs.images,
            "documents" => facts.needs.documents,
            "json_schema" => facts.needs.json_schema,
            _ => false,
        };
        if !has {
            return false;
        }
    }
    if w.no_tools == Some(true) && facts.needs.tools {
        return false;
    }
    if !w.teams.is_empty()
        && !facts
            .team
            .as_deref()
            .is_some_and(|t| w.teams.iter().any(|team| team == t))
    {
        return false;
    }
    if !w.keys.is_empty()
        && !facts
            .key
            .as_deref()
            .is_some_and(|k| w.keys.iter().any(|key| key == k))
    {
        return false;
    }
    true
}

/// `*` matches any run of characters, `?` any one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}
