//! Aggregates of a run per target (mean per scorer, pass rates, errors, latency percentiles,
//! tokens, cost) and the comparison of two targets item by item. Pure functions over stored
//! results.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value;

use super::store::ItemResult;

/// One scorer's aggregate over the items it gave a verdict on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScorerAggregate {
    /// Mean score over scored items; absent when none was scored.
    pub mean: Option<f64>,
    pub pass_rate: Option<f64>,
    /// Items the scorer gave a score.
    pub scored: u64,
    /// Items the scorer itself failed on (e.g. the judge gave no score).
    pub errors: u64,
}

/// Everything a run says about one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetAggregate {
    pub target: usize,
    pub label: String,
    /// Items finished so far, of `items`.
    pub done: u64,
    pub items: u64,
    /// Items whose request failed.
    pub errors: u64,
    pub passed: u64,
    /// `passed / done`.
    pub pass_rate: Option<f64>,
    pub scores: BTreeMap<String, ScorerAggregate>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Cost of the items' requests (nano-dollars), judges excluded.
    pub cost_nanos: i64,
    pub judge_cost_nanos: i64,
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Aggregates the results of one target. `scorers` are the run's scorer names, in order.
pub fn aggregate(
    target: usize,
    label: String,
    items: u64,
    scorers: &[String],
    results: &[&ItemResult],
) -> TargetAggregate {
    let mut scores = BTreeMap::new();
    for name in scorers {
        let (mut sum, mut scored, mut passed, mut judged, mut errors) =
            (0.0, 0u64, 0u64, 0u64, 0u64);
        for r in results {
            let Some(s) = r.scores.get(name) else {
                continue;
            };
            if let Some(v) = s.score {
                sum += v;
                scored += 1;
            }
            if let Some(p) = s.passed {
                judged += 1;
                passed += u64::from(p);
            }
            errors += u64::from(s.error.is_some());
        }
        scores.insert(
            name.clone(),
            ScorerAggregate {
                mean: (scored > 0).then(|| sum / scored as f64),
                pass_rate: ratio(passed, judged),
                scored,
                errors,
            },
        );
    }
    let mut latencies: Vec<f64> = results
        .iter()
        .filter(|r| r.error.is_none())
        .filter_map(|r| r.latency_ms)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let done = results.len() as u64;
    let passed = results.iter().filter(|r| r.passed).count() as u64;
    TargetAggregate {
        target,
        label,
        done,
        items,
        errors: results.iter().filter(|r| r.error.is_some()).count() as u64,
        passed,
        pass_rate: ratio(passed, done),
        scores,
        latency_p50_ms: percentile(&latencies, 50.0),
        latency_p95_ms: percentile(&latencies, 95.0),
        input_tokens: results.iter().filter_map(|r| r.input_tokens).sum(),
        output_tokens: results.iter().filter_map(|r| r.output_tokens).sum(),
        cost_nanos: results.iter().filter_map(|r| r.cost_nanos).sum(),
        judge_cost_nanos: results.iter().filter_map(|r| r.judge_cost_nanos).sum(),
    }
}

/// One item whose results differ between the two sides.
#[derive(Debug, Clone, Serialize)]
pub struct ItemDifference {
    pub item_id: String,
    /// Scorers whose scores differ: `[score_a, score_b]`.
    pub scores: BTreeMap<String, [Option<f64>; 2]>,
    pub passed: [Option<bool>; 2],
    pub output: [Option<String>; 2],
    pub error: [Option<String>; 2],
}

/// The differences of B against A: aggregate deltas and the items whose scores differ.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub a: TargetAggregate,
    pub b: TargetAggregate,
    /// `b - a` for the pass rate, each scorer's mean, latencies and cost.
    pub deltas: BTreeMap<String, Value>,
    /// Items present on both sides.
    pub common_items: u64,
    pub differences: Vec<ItemDifference>,
}

fn delta(a: Option<f64>, b: Option<f64>) -> Value {
    match (a, b) {
        (Some(a), Some(b)) => Value::from(b - a),
        _ => Value::Null,
    }
}

/// Compares two targets' results, matching items by their dataset item id: an item differs
/// when a scorer both sides have scored it differently, or when only one side's request failed.
pub fn compare(
    a: TargetAggregate,
    b: TargetAggregate,
    ra: &[&ItemResult],
    rb: &[&ItemResult],
) -> Comparison {
    let mut deltas = BTreeMap::new();
    deltas.insert("pass_rate".into(), delta(a.pass_rate, b.pass_rate));
    let names: BTreeSet<&String> = a.scores.keys().chain(b.scores.keys()).collect();
    for name in names {
        deltas.insert(
            format!("{name}.mean"),
            delta(
                a.scores.get(name).and_then(|s| s.mean),
                b.scores.get(name).and_then(|s| s.mean),
            ),
        );
    }
    deltas.insert(
        "latency_p50_ms".into(),
        delta(a.latency_p50_ms, b.latency_p50_ms),
    );
    deltas.insert(
        "latency_p95_ms".into(),
        delta(a.latency_p95_ms, b.latency_p95_ms),
    );
    deltas.insert(
        "cost_nanos".into(),
        Value::from(b.cost_nanos - a.cost_nanos),
    );
    deltas.insert(
        "errors".into(),
        Value::from(b.errors as i64 - a.errors as i64),
    );

    // Items are compared on the scorers both sides have.
    let common_scorers: Vec<&String> = a
        .scores
        .keys()
        .filter(|k| b.scores.contains_key(*k))
        .collect();
    let by_id: HashMap<&str, &ItemResult> = rb.iter().map(|r| (r.item_id.as_str(), *r)).collect();
    let mut common = 0u64;
    let mut differences = Vec::new();
    for x in ra {
        let Some(y) = by_id.get(x.item_id.as_str()) else {
            continue;
        };
        common += 1;
        let mut scores = BTreeMap::new();
        for name in &common_scorers {
            let sa = x.scores.get(*name).and_then(|s| s.score);
            let sb = y.scores.get(*name).and_then(|s| s.score);
            if sa != sb {
                scores.insert((*name).clone(), [sa, sb]);
            }
        }
        let errored = x.error.is_some() != y.error.is_some();
        if !scores.is_empty() || errored {
            differences.push(ItemDifference {
                item_id: x.item_id.clone(),
                scores,
                passed: [Some(x.passed), Some(y.passed)],
                output: [x.output.clone(), y.output.clone()],
                error: [x.error.clone(), y.error.clone()],
            });
        }
    }
    Comparison {
        a,
        b,
        deltas,
        common_items: common,
        differences,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluation::scorer::Score;

    fn result(id: &str, score: Option<f64>, latency: f64, error: bool) -> ItemResult {
        let mut scores = BTreeMap::new();
        if let Some(s) = score {
            scores.insert("contains".to_owned(), Score::of(s, 1.0));
        }
        ItemResult {
            target: 0,
            position: 1,
            item_id: id.into(),
            output: Some(format!("out {id}")),
            passed: !error && score == Some(1.0),
            scores,
            latency_ms: Some(latency),
            input_tokens: Some(10),
            output_tokens: Some(5),
            cost_nanos: Some(100),
            judge_cost_nanos: None,
            error_code: error.then(|| "upstream_unavailable".into()),
            error: error.then(|| "down".into()),
            request_id: None,
            finished_at_ms: 0,
        }
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(10.0));
        assert_eq!(percentile(&v, 95.0), Some(19.0));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn aggregates_and_differences() {
        let a = [
            result("1", Some(1.0), 10.0, false),
            result("2", Some(0.0), 20.0, false),
            result("3", None, 99.0, true),
        ];
        let b = [
            result("1", Some(1.0), 30.0, false),
            result("2", Some(1.0), 40.0, false),
            result("3", Some(1.0), 50.0, false),
        ];
        let ra: Vec<&ItemResult> = a.iter().collect();
        let rb: Vec<&ItemResult> = b.iter().collect();
        let names = vec!["contains".to_owned()];
        let agg_a = aggregate(0, "model:a".into(), 3, &names, &ra);
        assert_eq!(agg_a.done, 3);
        assert_eq!(agg_a.errors, 1);
        assert_eq!(agg_a.passed, 1);
        assert_eq!(agg_a.scores["contains"].mean, Some(0.5));
        assert_eq!(agg_a.scores["contains"].scored, 2);
        // Failed requests do not count towards latency.
        assert_eq!(agg_a.latency_p95_ms, Some(20.0));
        assert_eq!(agg_a.cost_nanos, 300);
        let agg_b = aggregate(1, "model:b".into(), 3, &names, &rb);
        let c = compare(agg_a, agg_b, &ra, &rb);
        assert_eq!(c.common_items, 3);
        let ids: Vec<&str> = c.differences.iter().map(|d| d.item_id.as_str()).collect();
        assert_eq!(ids, ["2", "3"]);
        assert_eq!(c.differences[0].scores["contains"], [Some(0.0), Some(1.0)]);
        assert_eq!(c.deltas["contains.mean"], Value::from(0.5));
        assert_eq!(c.deltas["errors"], Value::from(-1));
    }
}
