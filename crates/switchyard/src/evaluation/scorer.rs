//! Scorers: what an evaluation run measures on each output. Specs arrive as JSON, are checked
//! and compiled once per run (regexes, JSON schemas), and score an output as a number in
//! [0, 1] (booleans as 0 or 1). Everything here is pure except the LLM judge, whose request the
//! runner sends; this module only writes its prompt and reads its reply.

use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::dataset::DatasetItem;

/// Longest regex a scorer may compile, in bytes of compiled program.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The default prompt of `llm_judge`. `{{input}}`, `{{expected}}` and `{{output}}` are
/// replaced by the item's last user message, its expected output and the output to grade.
pub const DEFAULT_JUDGE_PROMPT: &str = "You are grading the answer of an AI assistant.\n\n\
Question:\n{{input}}\n\nReference answer (may be empty):\n{{expected}}\n\n\
Answer to grade:\n{{output}}\n\n\
How well does the answer satisfy the question (and agree with the reference answer, when there \
is one)? Reply with a single line of the form SCORE: <number between 0 and 1>.";

/// A scorer as the API takes it: `type` plus the options of that type.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScorerInput {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub name: Option<String>,
    pub threshold: Option<f64>,
    pub ignore_case: Option<bool>,
    pub normalize_whitespace: Option<bool>,
    pub value: Option<String>,
    pub pattern: Option<String>,
    pub schema: Option<Value>,
    pub abs_tol: Option<f64>,
    pub rel_tol: Option<f64>,
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub scale: Option<f64>,
}

/// Why a scorer spec was refused, with the field's path inside the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

fn spec_error(field: &str, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// A checked, compiled scorer.
#[derive(Clone)]
pub struct Scorer {
    pub name: String,
    /// The score at or above which an item passes this scorer.
    pub threshold: f64,
    pub kind: ScorerKind,
}

#[derive(Clone)]
pub enum ScorerKind {
    ExactMatch {
        ignore_case: bool,
        normalize_whitespace: bool,
    },
    Contains {
        value: Option<String>,
        ignore_case: bool,
    },
    Regex(Regex),
    JsonSchema(Option<Arc<jsonschema::Validator>>),
    Numeric {
        abs_tol: f64,
        rel_tol: f64,
    },
    LlmJudge {
        model: String,
        prompt: String,
        scale: f64,
    },
}

/// The options each type accepts, besides `type`, `name` and `threshold`.
fn allowed_options(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "exact_match" => &["ignore_case", "normalize_whitespace"],
        "contains" => &["value", "ignore_case"],
        "regex" => &["pattern"],
        "json_schema" => &["schema"],
        "numeric" => &["abs_tol", "rel_tol"],
        "llm_judge" => &["model", "prompt", "scale"],
        _ => return None,
    })
}

impl ScorerInput {
    fn options_given(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        for (name, set) in [
            ("ignore_case", self.ignore_case.is_some()),
            ("normalize_whitespace", self.normalize_whitespace.is_some()),
            ("value", self.value.is_some()),
            ("pattern", self.pattern.is_some()),
            ("schema", self.schema.is_some()),
            ("abs_tol", self.abs_tol.is_some()),
            ("rel_tol", self.rel_tol.is_some()),
            ("model", self.model.is_some()),
            ("prompt", self.prompt.is_some()),
            ("scale", self.scale.is_some()),
        ] {
            if set {
                given.push(name);
            }
        }
        given
    }
}

/// Is `name` usable as a scorer name (and so as an MLflow metric key)?
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Checks and compiles one scorer. `model_exists` tells whether a judge alias is configured.
pub fn compile(
    input: &ScorerInput,
    model_exists: &dyn Fn(&str) -> bool,
) -> Result<Scorer, SpecError> {
    let kind = input
        .kind
        .as_deref()
        .ok_or_else(|| spec_error("type", "is required"))?;
    let allowed = allowed_options(kind).ok_or_else(|| {
        spec_error(
            "type",
            format!(
                "unknown scorer type '{kind}' (use exact_match, contains, regex, json_schema, numeric or llm_judge)"
            ),
        )
    })?;
    if let Some(extra) = input
        .options_given()
        .into_iter()
        .find(|o| !allowed.contains(o))
    {
        return Err(spec_error(
            extra,
            format!(
                "is not an option of '{kind}' (it takes {})",
                allowed.join(", ")
            ),
        ));
    }
    let name = input.name.clone().unwrap_or_else(|| kind.to_owned());
    if !valid_name(&name) {
        return Err(spec_error(
            "name",
            "must be 1 to 64 characters of letters, digits, '_', '-' or '.'",
        ));
    }
    let default_threshold = if kind == "llm_judge" { 0.5 } else { 1.0 };
    let threshold = input.threshold.unwrap_or(default_threshold);
    if !(0.0..=1.0).contains(&threshold) {
        return Err(spec_error("threshold", "must be between 0 and 1"));
    }
    let kind = match kind {
        "exact_match" => ScorerKind::ExactMatch {
            ignore_case: input.ignore_case.unwrap_or(false),
            normalize_whitespace: input.normalize_whitespace.unwrap_or(false),
        },
        "contains" => {
            if input.value.as_deref() == Some("") {
                return Err(spec_error("value", "must not be empty"));
            }
            ScorerKind::Contains {
                value: input.value.clone(),
                ignore_case: input.ignore_case.unwrap_or(false),
            }
        }
        "regex" => {
            let pattern = input
                .pattern
                .as_deref()
                .ok_or_else(|| spec_error("pattern", "is required"))?;
            let regex = regex::RegexBuilder::new(pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| spec_error("pattern", format!("is not a valid regex: {e}")))?;
            ScorerKind::Regex(regex)
        }
        "json_schema" => {
            let validator = match &input.schema {
                None => None,
                Some(schema) => Some(Arc::new(jsonschema::validator_for(schema).map_err(
                    |e| spec_error("schema", format!("is not a valid JSON schema: {e}")),
                )?)),
            };
            ScorerKind::JsonSchema(validator)
        }
        "numeric" => {
            let abs_tol = input.abs_tol.unwrap_or(0.0);
            let rel_tol = input.rel_tol.unwrap_or(0.0);
            for (field, v) in [("abs_tol", abs_tol), ("rel_tol", rel_tol)] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(spec_error(field, "must be a non-negative number"));
                }
            }
            ScorerKind::Numeric { abs_tol, rel_tol }
        }
        _ => {
            let model = input
                .model
                .clone()
                .ok_or_else(|| spec_error("model", "is required (the judge's model alias)"))?;
            if !model_exists(&model) {
                return Err(spec_error(
                    "model",
                    format!("unknown model alias '{model}'"),
                ));
            }
            let scale = input.scale.unwrap_or(1.0);
            if !(scale.is_finite() && scale > 0.0) {
                return Err(spec_error("scale", "must be a positive number"));
            }
            let prompt = input
                .prompt
                .clone()
                .unwrap_or_else(|| DEFAULT_JUDGE_PROMPT.to_owned());
            if !prompt.contains("{{output}}") {
                return Err(spec_error("prompt", "must contain {{output}}"));
            }
            ScorerKind::LlmJudge {
                model,
                prompt,
                scale,
            }
        }
    };
    Ok(Scorer {
        name,
        threshold,
        kind,
    })
}

impl Scorer {
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ScorerKind::ExactMatch { .. } => "exact_match",
            ScorerKind::Contains { .. } => "contains",
            ScorerKind::Regex(_) => "regex",
            ScorerKind::JsonSchema(_) => "json_schema",
            ScorerKind::Numeric { .. } => "numeric",
            ScorerKind::LlmJudge { .. } => "llm_judge",
        }
    }

    /// Scores an output without any request; `None` for the LLM judge (the runner asks it).
    pub fn score(&self, item: &DatasetItem, output: &str) -> Option<Score> {
        let expected = item.expected.as_ref();
        Some(match &self.kind {
            ScorerKind::ExactMatch {
                ignore_case,
                normalize_whitespace,
            } => match expected {
                None => Score::not_applicable("the item has no expected output"),
                Some(Value::String(want)) => {
                    let norm = |s: &str| {
                        let s = if *normalize_whitespace {
                            s.split_whitespace().collect::<Vec<_>>().join(" ")
                        } else {
                            s.to_owned()
                        };
                        if *ignore_case { s.to_lowercase() } else { s }
                    };
                    self.boolean(norm(output) == norm(want))
                }
                Some(want) => self.boolean(
                    serde_json::from_str::<Value>(strip_fence(output))
                        .ok()
                        .as_ref()
                        == Some(want),
                ),
            },
            ScorerKind::Contains { value, ignore_case } => {
                let needle = match (value, expected) {
                    (Some(v), _) => v.clone(),
                    (None, Some(Value::String(s))) => s.clone(),
                    (None, Some(other)) => other.to_string(),
                    (None, None) => {
                        return Some(Score::not_applicable(
                            "no 'value' and the item has no expected output",
                        ));
                    }
                };
                if *ignore_case {
                    self.boolean(output.to_lowercase().contains(&needle.to_lowercase()))
                } else {
                    self.boolean(output.contains(&needle))
                }
            }
            ScorerKind::Regex(re) => self.boolean(re.is_match(output)),
            ScorerKind::JsonSchema(validator) => {
                match serde_json::from_str::<Value>(strip_fence(output)) {
                    Err(e) => self.failed(format!("not JSON: {e}")),
                    Ok(doc) => match validator.as_ref().map(|v| v.validate(&doc)) {
                        None | Some(Ok(())) => self.boolean(true),
                        Some(Err(e)) => self.failed(format!("does not match the schema: {e}")),
                    },
                }
            }
            ScorerKind::Numeric { abs_tol, rel_tol } => {
                let want = match expected {
                    Some(Value::Number(n)) => n.as_f64(),
                    Some(Value::String(s)) => first_number(s),
                    _ => None,
                };
                let Some(want) = want else {
                    return Some(Score::not_applicable(
                        "the item has no numeric expected output",
                    ));
                };
                match first_number(output) {
                    None => self.failed("the output has no number".to_owned()),
                    Some(got) => {
                        let tolerance = abs_tol.max(rel_tol * want.abs());
                        self.boolean((got - want).abs() <= tolerance)
                    }
                }
            }
            ScorerKind::LlmJudge { .. } => return None,
        })
    }

    fn boolean(&self, ok: bool) -> Score {
        Score::of(if ok { 1.0 } else { 0.0 }, self.threshold)
    }

    fn failed(&self, detail: String) -> Score {
        Score {
            detail: Some(detail),
            ..self.boolean(false)
        }
    }

    /// The judge's prompt for an item and output.
    pub fn judge_prompt(&self, item: &DatasetItem, output: &str) -> Option<(String, String)> {
        let ScorerKind::LlmJudge { model, prompt, .. } = &self.kind else {
            return None;
        };
        let expected = match &item.expected {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        // Output last, so text inside the output cannot inject the other placeholders.
        let text = prompt
            .replace("{{input}}", &item.input_text())
            .replace("{{expected}}", &expected)
            .replace("{{output}}", output);
        Some((model.clone(), text))
    }

    /// Reads the judge's reply into a score.
    pub fn judge_score(&self, reply: &str) -> Score {
        let scale = match &self.kind {
            ScorerKind::LlmJudge { scale, .. } => *scale,
            _ => 1.0,
        };
        match parse_judge_reply(reply, scale) {
            Ok(s) => Score::of(s, self.threshold),
            Err(e) => Score::error(e),
        }
    }

    /// The spec as stored with the run (and shown by the API).
    pub fn describe(&self) -> Value {
        let mut v =
            json!({"name": self.name, "type": self.kind_name(), "threshold": self.threshold});
        let extra: Map<String, Value> = match &self.kind {
            ScorerKind::ExactMatch {
                ignore_case,
                normalize_whitespace,
            } => json!({"ignore_case": ignore_case, "normalize_whitespace": normalize_whitespace}),
            ScorerKind::Contains { value, ignore_case } => {
                json!({"value": value, "ignore_case": ignore_case})
            }
            ScorerKind::Regex(re) => json!({"pattern": re.as_str()}),
            ScorerKind::JsonSchema(_) => json!({}),
            ScorerKind::Numeric { abs_tol, rel_tol } => {
                json!({"abs_tol": abs_tol, "rel_tol": rel_tol})
            }
            ScorerKind::LlmJudge { model, scale, .. } => json!({"model": model, "scale": scale}),
        }
        .as_object()
        .cloned()
        .unwrap_or_default();
        if let Some(map) = v.as_object_mut() {
            map.extend(extra);
        }
        v
    }
}

/// One scorer's verdict on one output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// In [0, 1]; absent when the scorer did not apply or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// Why the score is what it is, when that is not obvious.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The scorer itself failed (the judge did not answer or answered no score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Score {
    pub fn of(score: f64, threshold: f64) -> Self {
        Self {
            score: Some(score),
            passed: Some(score >= threshold),
            detail: None,
            error: None,
        }
    }

    pub fn not_applicable(why: &str) -> Self {
        Self {
            score: None,
            passed: None,
            detail: Some(why.to_owned()),
            error: None,
        }
    }

    pub fn error(message: String) -> Self {
        Self {
            score: None,
            passed: None,
            detail: None,
            error: Some(message),
        }
    }
}

static NUMBER: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?").ok());
static SCORE_WORD: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"(?i)score").ok());

/// The first number in a text (a plain number parses whole; `1,234` is not a number here).
pub fn first_number(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Ok(n) = text.parse::<f64>() {
        return n.is_finite().then_some(n);
    }
    let m = NUMBER.as_ref()?.find(text)?;
    // A hyphen after a letter or digit joins words ("gpt-4o", "sonnet-4-5"), it is no sign.
    let joined = m.as_str().starts_with(['-', '+'])
        && text[..m.start()]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric);
    let number = if joined { &m.as_str()[1..] } else { m.as_str() };
    number.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// The score in a judge's reply: the first number after the last "score", else the first
/// number; divided by `scale`, it must land in [0, 1].
pub fn parse_judge_reply(reply: &str, scale: f64) -> Result<f64, String> {
    let after_word = SCORE_WORD
        .as_ref()
        .and_then(|re| re.find_iter(reply).last())
        .and_then(|m| first_number(&reply[m.end()..]));
    let raw = after_word
        .or_else(|| first_number(reply))
        .ok_or_else(|| format!("the judge's reply has no score: {}", preview(reply)))?;
    let score = raw / scale;
    if (0.0..=1.0).contains(&score) {
        Ok(score)
    } else {
        Err(format!(
            "the judge's score {raw} is outside 0..{scale}: {}",
            preview(reply)
        ))
    }
}

fn preview(text: &str) -> String {
    let mut out: String = text.chars().take(120).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// The body of a Markdown code fence around a whole output (models often wrap JSON in one).
fn strip_fence(output: &str) -> &str {
    let t = output.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let Some(body) = rest.strip_suffix("```") else {
        return t;
    };
    // Drop the info string (`json`) on the opening line.
    match body.split_once('\n') {
        Some((_, inner)) => inner.trim(),
        None => body.trim(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn item(expected: Option<Value>) -> DatasetItem {
        DatasetItem {
            id: "i".into(),
            messages: vec![json!({"role": "user", "content": "q?"})],
            variables: Map::new(),
            expected,
            metadata: Map::new(),
        }
    }

    fn scorer(spec: Value) -> Scorer {
        let input: ScorerInput = serde_json::from_value(spec).unwrap();
        compile(&input, &|m| m == "judge").unwrap()
    }

    fn score(spec: Value, expected: Option<Value>, output: &str) -> Option<f64> {
        scorer(spec).score(&item(expected), output).unwrap().score
    }

    #[test]
    fn exact_match_with_and_without_normalisation() {
        let strict = json!({"type": "exact_match"});
        assert_eq!(
            score(strict.clone(), Some(json!("Paris")), "Paris"),
            Some(1.0)
        );
        assert_eq!(
            score(strict.clone(), Some(json!("Paris")), "paris "),
            Some(0.0)
        );
        assert_eq!(score(strict.clone(), None, "Paris"), None);
        let loose =
            json!({"type": "exact_match", "ignore_case": true, "normalize_whitespace": true});
        assert_eq!(
            score(loose, Some(json!("new  York")), " New York\n"),
            Some(1.0)
        );
        // Non-string expectations compare as JSON.
        assert_eq!(
            score(
                strict.clone(),
                Some(json!({"a": 1})),
                "```json\n{ \"a\": 1 }\n```"
            ),
            Some(1.0)
        );
        assert_eq!(
            score(strict, Some(json!({"a": 1})), "{\"a\": 2}"),
            Some(0.0)
        );
    }

    #[test]
    fn contains_regex_json_schema_and_numeric() {
        assert_eq!(
            score(
                json!({"type": "contains", "value": "cat"}),
                None,
                "a cat sat"
            ),
            Some(1.0)
        );
        assert_eq!(
            score(
                json!({"type": "contains", "ignore_case": true}),
                Some(json!("CAT")),
                "a cat"
            ),
            Some(1.0)
        );
        assert_eq!(
            score(json!({"type": "contains"}), Some(json!("dog")), "a cat"),
            Some(0.0)
        );
        assert_eq!(
            score(
                json!({"type": "regex", "pattern": "^\\d{3}-\\d{4}$"}),
                None,
                "555-1234"
            ),
            Some(1.0)
        );
        assert_eq!(
            score(json!({"type": "regex", "pattern": "^\\d+$"}), None, "12a"),
            Some(0.0)
        );
        let schema = json!({"type": "json_schema", "schema": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}});
        assert_eq!(score(schema.clone(), None, "{\"n\": 3}"), Some(1.0));
        assert_eq!(score(schema.clone(), None, "{\"n\": \"3\"}"), Some(0.0));
        assert_eq!(score(schema, None, "not json"), Some(0.0));
        assert_eq!(
            score(json!({"type": "json_schema"}), None, "[1]"),
            Some(1.0)
        );
        let numeric = json!({"type": "numeric", "abs_tol": 0.01});
        assert_eq!(
            score(numeric.clone(), Some(json!(2.5)), "It is 2.51"),
            Some(1.0)
        );
        assert_eq!(score(numeric.clone(), Some(json!("2.5")), "2.7"), Some(0.0));
        assert_eq!(score(numeric.clone(), Some(json!(1)), "none"), Some(0.0));
        assert_eq!(score(numeric, Some(json!("n/a")), "1"), None);
        assert_eq!(
            score(
                json!({"type": "numeric", "rel_tol": 0.1}),
                Some(json!(100)),
                "109"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn specs_are_checked_with_field_names() {
        let check = |spec: Value| {
            let input: ScorerInput = serde_json::from_value(spec).unwrap();
            compile(&input, &|m| m == "judge").err().map(|e| e.field)
        };
        assert_eq!(check(json!({"type": "nope"})).as_deref(), Some("type"));
        assert_eq!(check(json!({})).as_deref(), Some("type"));
        assert_eq!(
            check(json!({"type": "regex", "pattern": "("})).as_deref(),
            Some("pattern")
        );
        assert_eq!(check(json!({"type": "regex"})).as_deref(), Some("pattern"));
        assert_eq!(
            check(json!({"type": "contains", "pattern": "x"})).as_deref(),
            Some("pattern")
        );
        assert_eq!(
            check(json!({"type": "json_schema", "schema": {"type": 5}})).as_deref(),
            Some("schema")
        );
        assert_eq!(
            check(json!({"type": "numeric", "abs_tol": -1})).as_deref(),
            Some("abs_tol")
        );
        assert_eq!(
            check(json!({"type": "llm_judge", "model": "other"})).as_deref(),
            Some("model")
        );
        assert_eq!(
            check(json!({"type": "llm_judge", "model": "judge", "prompt": "no slot"})).as_deref(),
            Some("prompt")
        );
        assert_eq!(
            check(json!({"type": "contains", "name": "has space"})).as_deref(),
            Some("name")
        );
        assert_eq!(
            check(json!({"type": "contains", "threshold": 2})).as_deref(),
            Some("threshold")
        );
        assert_eq!(check(json!({"type": "llm_judge", "model": "judge"})), None);
    }

    #[test]
    fn judge_prompts_and_replies() {
        let judge = scorer(
            json!({"type": "llm_judge", "model": "judge", "prompt": "Q={{input}} E={{expected}} A={{output}}"}),
        );
        let (model, prompt) = judge
            .judge_prompt(&item(Some(json!("4"))), "four {{input}}")
            .unwrap();
        assert_eq!(model, "judge");
        assert_eq!(prompt, "Q=q? E=4 A=four {{input}}");
        assert_eq!(judge.judge_score("SCORE: 0.8").score, Some(0.8));
        assert_eq!(judge.judge_score("SCORE: 0.8").passed, Some(true));
        assert_eq!(
            judge.judge_score("Step 1 done. Final score = 0.25").score,
            Some(0.25)
        );
        assert_eq!(judge.judge_score("0.3").passed, Some(false));
        assert!(judge.judge_score("no idea").error.is_some());
        assert!(judge.judge_score("SCORE: 7").error.is_some());
        assert_eq!(parse_judge_reply("Score: 7/10", 10.0), Ok(0.7));
        // A model's name in the reply is no negative score.
        assert_eq!(
            parse_judge_reply("Simulated reply from gpt-4o-mini: 1", 10.0),
            Ok(0.4)
        );
    }

    #[test]
    fn a_hyphen_that_joins_words_is_no_minus_sign() {
        assert_eq!(first_number("Simulated reply from gpt-4o-mini"), Some(4.0));
        assert_eq!(first_number("claude-sonnet-4-5 says hi"), Some(4.0));
        assert_eq!(first_number("it fell by -4 degrees"), Some(-4.0));
        assert_eq!(first_number("(-2.5)"), Some(-2.5));
        assert_eq!(first_number("-7"), Some(-7.0));
    }
}
