//! Per-variant results of an experiment from its request rows and feedback rows: traffic,
//! errors, latency, cost and tokens per variant, each feedback metric with confidence
//! intervals and a test against the control (the first variant), the sample-ratio check, and
//! a verdict in words. Pure: the store supplies the rows.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::model::{Experiment, FeedbackValue, Goal, MetricKind, Unit};
use super::stats::{self, Summary, format_p};
use super::store::{FeedbackRow, RequestRow};

/// Below this p-value a difference is called significant.
pub const ALPHA: f64 = 0.05;
/// Below this p-value the observed split is flagged as a sample-ratio mismatch.
pub const SRM_ALPHA: f64 = 0.001;

#[derive(Default)]
struct Traffic {
    requests: u64,
    errors: u64,
    latencies: Vec<f64>,
    cost_sum: i64,
    cost_n: u64,
    input_sum: i64,
    output_sum: i64,
    token_n: u64,
}

impl Traffic {
    fn cost_mean_nanos(&self) -> Option<i64> {
        (self.cost_n > 0).then(|| self.cost_sum / self.cost_n as i64)
    }
}

/// An error is any outcome other than success or the client going away.
fn is_error(outcome: &str) -> bool {
    !matches!(outcome, "success" | "cancelled")
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// How many units (customers, keys, sessions; each request of one that named none, as
/// assignment took it) `variant` was assigned.
fn assigned_units(unit: Unit, variant: &str, rows: &[RequestRow]) -> u64 {
    let mut units = std::collections::HashSet::new();
    let mut unnamed = 0;
    for r in rows.iter().filter(|r| r.variant == variant) {
        let named = match unit {
            Unit::Customer => r.customer.as_deref(),
            Unit::Key => r.key_id.as_deref(),
            Unit::Session => r.session_id.as_deref(),
            Unit::Request => None,
        };
        match named {
            Some(u) => _ = units.insert(u),
            None => unnamed += 1,
        }
    }
    units.len() as u64 + unnamed
}

fn traffic_of(variant: &str, rows: &[RequestRow]) -> Traffic {
    let mut t = Traffic::default();
    for r in rows.iter().filter(|r| r.variant == variant) {
        t.requests += 1;
        if is_error(&r.outcome) {
            t.errors += 1;
        } else if r.outcome == "success" {
            t.latencies.push(r.duration_ms);
        }
        if let Some(c) = r.cost_nanos {
            t.cost_sum += c;
            t.cost_n += 1;
        }
        if let (Some(i), Some(o)) = (r.input_tokens, r.output_tokens) {
            t.input_sum += i;
            t.output_sum += o;
            t.token_n += 1;
        }
    }
    t
}

/// The kind a metric is reported as: declared, else what its values are (numbers and
/// booleans together count as numeric).
fn kind_of(exp: &Experiment, metric: &str, rows: &[&FeedbackRow]) -> MetricKind {
    if let Some(spec) = exp.metric(metric) {
        return spec.kind;
    }
    let kinds: Vec<MetricKind> = rows.iter().map(|r| r.value.kind()).collect();
    if kinds.iter().all(|k| *k == MetricKind::Boolean) {
        MetricKind::Boolean
    } else if kinds.iter().all(|k| *k != MetricKind::Categorical) {
        MetricKind::Numeric
    } else {
        MetricKind::Categorical
    }
}

fn numbers(rows: &[&FeedbackRow], variant: &str) -> Vec<f64> {
    rows.iter()
        .filter(|r| r.variant == variant)
        .filter_map(|r| match r.value {
            FeedbackValue::Numeric(n) => Some(n),
            FeedbackValue::Boolean(b) => Some(if b { 1.0 } else { 0.0 }),
            FeedbackValue::Categorical(_) => None,
        })
        .collect()
}

fn booleans(rows: &[&FeedbackRow], variant: &str) -> (u64, u64) {
    rows.iter()
        .filter(|r| r.variant == variant)
        .fold((0, 0), |(yes, n), r| match r.value {
            FeedbackValue::Boolean(b) => (yes + u64::from(b), n + 1),
            _ => (yes, n),
        })
}

fn categories(rows: &[&FeedbackRow], variant: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for r in rows.iter().filter(|r| r.variant == variant) {
        if let FeedbackValue::Categorical(c) = &r.value {
            *out.entry(c.clone()).or_insert(0) += 1;
        }
    }
    out
}

/// One comparison's verdict: `better`/`worse` words only when significant.
fn verdict(
    variant: &str,
    metric: &str,
    test: Option<stats::Test>,
    difference: f64,
    goal: Goal,
    n: (u64, u64),
    categorical: bool,
) -> (String, bool) {
    let Some(t) = test else {
        return (
            format!(
                "not enough data on {metric} for variant {variant} (n = {}/{})",
                n.0, n.1
            ),
            false,
        );
    };
    if t.p_value >= ALPHA {
        return (
            format!(
                "no significant difference on {metric} yet (n = {}/{}, {})",
                n.0,
                n.1,
                format_p(t.p_value)
            ),
            false,
        );
    }
    if categorical {
        return (
            format!(
                "variant {variant} differs on {metric} ({})",
                format_p(t.p_value)
            ),
            true,
        );
    }
    let better = (difference > 0.0) == (goal == Goal::Increase);
    (
        format!(
            "variant {variant} {} on {metric} ({})",
            if better { "better" } else { "worse" },
            format_p(t.p_value)
        ),
        true,
    )
}

/// The results document of `GET /admin/experiments/{id}/results`.
pub fn compute(exp: &Experiment, requests: &[RequestRow], feedback: &[FeedbackRow]) -> Value {
    let names: Vec<&str> = exp.variants.iter().map(|v| v.name.as_str()).collect();
    let control = names.first().copied().unwrap_or_default();
    let traffic: Vec<Traffic> = names.iter().map(|n| traffic_of(n, requests)).collect();
    let total: u64 = traffic.iter().map(|t| t.requests).sum();

    // Sample-ratio mismatch: observed assignments against declared shares, counted in the
    // units assigned (a customer with a hundred requests is one assignment, not a hundred).
    let observed: Vec<u64> = names
        .iter()
        .map(|n| assigned_units(exp.unit, n, requests))
        .collect();
    let shares: Vec<f64> = exp
        .variants
        .iter()
        .map(|v| f64::from(v.share_bp) / 10_000.0)
        .collect();
    let srm = stats::goodness_of_fit(&observed, &shares);
    let mismatch = srm.is_some_and(|t| t.p_value < SRM_ALPHA);

    let control_traffic = traffic.first();
    let mut summary: Vec<String> = Vec::new();
    let mut variant_rows = Vec::new();
    for (i, (v, t)) in exp.variants.iter().zip(&traffic).enumerate() {
        let mut lat = t.latencies.clone();
        let p50 = stats::percentile(&mut lat, 0.5);
        let p95 = stats::percentile(&mut lat, 0.95);
        let cost = t.cost_mean_nanos();
        let mut row = json!({
            "name": v.name,
            "config": v.config,
            "version": v.version,
            "share": f64::from(v.share_bp) / 100.0,
            "requests": t.requests,
            "observed_share": if total > 0 { round(t.requests as f64 / total as f64 * 100.0, 2) } else { 0.0 },
            "errors": t.errors,
            "error_rate": if t.requests > 0 { t.errors as f64 / t.requests as f64 } else { 0.0 },
            "latency_ms": {"p50": p50.map(|v| round(v, 1)), "p95": p95.map(|v| round(v, 1))},
            "cost_per_request_nanos": cost,
            "cost_per_request_usd": cost.map(|c| c as f64 / 1e9),
            "mean_input_tokens": (t.token_n > 0).then(|| round(t.input_sum as f64 / t.token_n as f64, 1)),
            "mean_output_tokens": (t.token_n > 0).then(|| round(t.output_sum as f64 / t.token_n as f64, 1)),
        });
        if i > 0
            && let Some(c) = control_traffic
        {
            let errors = stats::two_proportions(c.errors, c.requests, t.errors, t.requests);
            let cost_change = match (c.cost_mean_nanos(), cost) {
                (Some(a), Some(b)) if a > 0 => Some((b - a) as f64 / a as f64),
                _ => None,
            };
            if let Some(map) = row.as_object_mut() {
                map.insert(
                    "vs_control".into(),
                    json!({
                        "error_rate_p_value": errors.map(|t| t.p_value),
                        "cost_change": cost_change.map(|c| round(c, 4)),
                    }),
                );
            }
        }
        variant_rows.push(row);
    }

    // Feedback metrics: the declared ones first, then any other metric that has scores.
    let mut metric_names: Vec<String> = exp.metrics.iter().map(|m| m.name.clone()).collect();
    for r in feedback {
        if !metric_names.contains(&r.metric) {
            metric_names.push(r.metric.clone());
        }
    }
    let mut metrics = Vec::new();
    // Significant verdict phrases per non-control variant.
    let mut wins: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for metric in &metric_names {
        let rows: Vec<&FeedbackRow> = feedback.iter().filter(|r| &r.metric == metric).collect();
        let kind = kind_of(exp, metric, &rows);
        let goal = exp.metric(metric).map(|m| m.goal).unwrap_or_default();
        let mut per_variant = Vec::new();
        let mut comparisons = Vec::new();
        match kind {
            MetricKind::Numeric => {
                let summaries: Vec<Summary> = names
                    .iter()
                    .map(|n| Summary::of(&numbers(&rows, n)))
                    .collect();
                for (n, s) in names.iter().zip(&summaries) {
                    per_variant.push(json!({
                        "name": n, "n": s.n,
                        "mean": (s.n > 0).then_some(s.mean),
                        "ci95": stats::mean_ci(s).map(|(a, b)| [a, b]),
                    }));
                }
                for (n, s) in names.iter().zip(&summaries).skip(1) {
                    let c = summaries[0];
                    let test = stats::welch(&c, s);
                    let (text, significant) =
                        verdict(n, metric, test, s.mean - c.mean, goal, (c.n, s.n), false);
                    if significant {
                        wins.entry((*n).to_owned()).or_default().push(text.clone());
                    }
                    comparisons.push(json!({
                        "variant": n, "test": "welch_t",
                        "difference": (c.n > 0 && s.n > 0).then_some(s.mean - c.mean),
                        "statistic": test.map(|t| t.statistic), "df": test.and_then(|t| t.df),
                        "p_value": test.map(|t| t.p_value), "significant": significant, "verdict": text,
                    }));
                }
            }
            MetricKind::Boolean => {
                let counts: Vec<(u64, u64)> = names.iter().map(|n| booleans(&rows, n)).collect();
                for (n, (yes, total)) in names.iter().zip(&counts) {
                    per_variant.push(json!({
                        "name": n, "n": total, "true": yes,
                        "rate": (*total > 0).then(|| *yes as f64 / *total as f64),
                        "ci95": stats::wilson(*yes, *total).map(|(a, b)| [a, b]),
                    }));
                }
                for (n, (yes, total)) in names.iter().zip(&counts).skip(1) {
                    let (cy, cn) = counts[0];
                    let test = stats::two_proportions(cy, cn, *yes, *total);
                    let diff = if cn > 0 && *total > 0 {
                        *yes as f64 / *total as f64 - cy as f64 / cn as f64
                    } else {
                        0.0
                    };
                    let (text, significant) =
                        verdict(n, metric, test, diff, goal, (cn, *total), false);
                    if significant {
                        wins.entry((*n).to_owned()).or_default().push(text.clone());
                    }
                    comparisons.push(json!({
                        "variant": n, "test": "two_proportion_z",
                        "difference": (cn > 0 && *total > 0).then_some(diff),
                        "statistic": test.map(|t| t.statistic),
                        "p_value": test.map(|t| t.p_value), "significant": significant, "verdict": text,
                    }));
                }
            }
            MetricKind::Categorical => {
                let counts: Vec<BTreeMap<String, u64>> =
                    names.iter().map(|n| categories(&rows, n)).collect();
                let mut all: Vec<&String> = counts.iter().flat_map(|c| c.keys()).collect();
                all.sort();
                all.dedup();
                for (n, c) in names.iter().zip(&counts) {
                    per_variant.push(json!({"name": n, "n": c.values().sum::<u64>(), "counts": c}));
                }
                for (n, c) in names.iter().zip(&counts).skip(1) {
                    let a: Vec<u64> = all
                        .iter()
                        .map(|k| counts[0].get(*k).copied().unwrap_or(0))
                        .collect();
                    let b: Vec<u64> = all
                        .iter()
                        .map(|k| c.get(*k).copied().unwrap_or(0))
                        .collect();
                    let test = stats::independence(&a, &b);
                    let n_pair = (a.iter().sum(), b.iter().sum());
                    let (text, significant) = verdict(n, metric, test, 0.0, goal, n_pair, true);
                    if significant {
                        wins.entry((*n).to_owned()).or_default().push(text.clone());
                    }
                    comparisons.push(json!({
                        "variant": n, "test": "chi_square",
                        "statistic": test.map(|t| t.statistic), "df": test.and_then(|t| t.df),
                        "p_value": test.map(|t| t.p_value), "significant": significant, "verdict": text,
                    }));
                }
            }
        }
        metrics.push(json!({
            "name": metric, "kind": kind.as_str(), "goal": goal,
            "variants": per_variant, "comparisons": comparisons,
        }));
    }

    for (i, (name, t)) in names.iter().zip(&traffic).enumerate().skip(1) {
        let mut parts: Vec<String> = wins.remove(*name).unwrap_or_default();
        if parts.is_empty() {
            parts.push(format!(
                "variant {name}: no significant difference yet (n = {}/{})",
                traffic[0].requests, t.requests
            ));
        }
        if let Some(errors) =
            stats::two_proportions(traffic[0].errors, traffic[0].requests, t.errors, t.requests)
            && errors.p_value < ALPHA
        {
            let higher = t.errors * traffic[0].requests > traffic[0].errors * t.requests;
            parts.push(format!(
                "{} error rate ({})",
                if higher { "higher" } else { "lower" },
                format_p(errors.p_value)
            ));
        }
        if let Some(change) = variant_rows[i]["vs_control"]["cost_change"].as_f64()
            && change.abs() >= 0.005
        {
            parts.push(format!(
                "{:.0} % {} per request",
                change.abs() * 100.0,
                if change > 0.0 {
                    "more expensive"
                } else {
                    "cheaper"
                }
            ));
        }
        summary.push(parts.join("; "));
    }
    if mismatch {
        summary.insert(
            0,
            format!(
                "sample-ratio mismatch ({}): the observed split differs from the declared shares; check assignment before trusting these results",
                srm.map_or_else(String::new, |t| format_p(t.p_value))
            ),
        );
    }

    json!({
        "experiment": exp,
        "control": control,
        "requests": total,
        "sample_ratio": {
            "unit": exp.unit.as_str(),
            "observed": names.iter().zip(&observed).map(|(n, o)| ((*n).to_owned(), json!(o))).collect::<serde_json::Map<_, _>>(),
            "expected_share": names.iter().zip(&shares).map(|(n, s)| ((*n).to_owned(), json!(s))).collect::<serde_json::Map<_, _>>(),
            "chi_square": srm.map(|t| t.statistic),
            "p_value": srm.map(|t| t.p_value),
            "mismatch": mismatch,
        },
        "variants": variant_rows,
        "metrics": metrics,
        "verdict": summary.join(". "),
        "verdicts": summary,
    })
}
