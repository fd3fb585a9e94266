//! An experiment's results as MLflow runs: one parent run for the experiment (its verdict,
//! sample-ratio check and declared shares) and one nested run per variant with its traffic,
//! latency, cost and feedback figures. Pure: it reads the results document that
//! `GET /admin/experiments/{id}/results` answers, so the export shows exactly those numbers.

use serde_json::Value;

use crate::evaluation::mlflow::MlflowRun;

/// The parent run and one child per variant for the results document `results`.
pub fn mlflow_runs(results: &Value) -> (MlflowRun, Vec<MlflowRun>) {
    let exp = &results["experiment"];
    let id = text(&exp["id"]);
    let name = text(&exp["name"]);
    let config = text(&exp["config"]);
    let common_tags = vec![
        ("switchyard.experiment".to_owned(), id.clone()),
        ("switchyard.config".to_owned(), config.clone()),
        ("switchyard.status".to_owned(), text(&exp["status"])),
    ];

    let variants = results["variants"].as_array().cloned().unwrap_or_default();
    let mut parent_tags = common_tags.clone();
    parent_tags.push(("switchyard.verdict".to_owned(), text(&results["verdict"])));
    if let Some(winner) = exp["winner"].as_str() {
        parent_tags.push(("switchyard.winner".to_owned(), winner.to_owned()));
    }
    let mut parent_metrics = vec![("requests".to_owned(), number(&results["requests"]))];
    if let Some(p) = results["sample_ratio"]["p_value"].as_f64() {
        parent_metrics.push(("sample_ratio_p_value".to_owned(), p));
    }
    parent_metrics.push((
        "sample_ratio_mismatch".to_owned(),
        f64::from(u8::from(results["sample_ratio"]["mismatch"] == true)),
    ));
    let parent = MlflowRun {
        name: name.clone(),
        params: vec![
            ("experiment_id".into(), id.clone()),
            ("config".into(), config.clone()),
            ("unit".into(), text(&exp["unit"])),
            ("control".into(), text(&results["control"])),
            (
                "variants".into(),
                variants
                    .iter()
                    .map(|v| format!("{}={}%", text(&v["name"]), number(&v["share"])))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ],
        metrics: parent_metrics,
        tags: parent_tags,
        start_time_ms: exp["created_at_ms"].as_i64(),
        end_time_ms: None,
        status: None,
    };

    let children = variants
        .iter()
        .map(|v| variant_run(results, v, &name, &id, &common_tags))
        .collect();
    (parent, children)
}

fn variant_run(
    results: &Value,
    v: &Value,
    experiment_name: &str,
    experiment_id: &str,
    common_tags: &[(String, String)],
) -> MlflowRun {
    let variant = text(&v["name"]);
    let mut metrics = vec![
        ("requests".to_owned(), number(&v["requests"])),
        ("observed_share".to_owned(), number(&v["observed_share"])),
        ("errors".to_owned(), number(&v["errors"])),
        ("error_rate".to_owned(), number(&v["error_rate"])),
    ];
    let optional = [
        ("latency_p50_ms", &v["latency_ms"]["p50"]),
        ("latency_p95_ms", &v["latency_ms"]["p95"]),
        // Presentation only: the stored figures stay integer nano-dollars.
        ("cost_per_request_usd", &v["cost_per_request_usd"]),
        ("mean_input_tokens", &v["mean_input_tokens"]),
        ("mean_output_tokens", &v["mean_output_tokens"]),
        ("cost_change_vs_control", &v["vs_control"]["cost_change"]),
    ];
    for (key, value) in optional {
        if let Some(x) = value.as_f64() {
            metrics.push((key.to_owned(), x));
        }
    }

    // Feedback metrics: the variant's mean or rate, its sample size, and the p-value of its
    // comparison with the control.
    let mut tags = common_tags.to_vec();
    tags.push(("switchyard.variant".to_owned(), variant.clone()));
    for metric in results["metrics"].as_array().into_iter().flatten() {
        let metric_name = text(&metric["name"]);
        let row = metric["variants"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"] == variant.as_str());
        if let Some(row) = row {
            metrics.push((format!("{metric_name}.n"), number(&row["n"])));
            for stat in ["mean", "rate"] {
                if let Some(x) = row[stat].as_f64() {
                    metrics.push((format!("{metric_name}.{stat}"), x));
                }
            }
        }
        let comparison = metric["comparisons"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["variant"] == variant.as_str());
        if let Some(c) = comparison {
            if let Some(p) = c["p_value"].as_f64() {
                metrics.push((format!("{metric_name}.p_value"), p));
            }
            tags.push((
                format!("switchyard.verdict.{metric_name}"),
                text(&c["verdict"]),
            ));
        }
    }

    MlflowRun {
        name: format!("{experiment_name} {variant}"),
        params: vec![
            ("experiment_id".into(), experiment_id.to_owned()),
            ("variant".into(), variant.clone()),
            ("config".into(), text(&v["config"])),
            ("version".into(), text(&v["version"])),
            ("share".into(), text(&v["share"])),
        ],
        metrics,
        tags,
        start_time_ms: results["experiment"]["created_at_ms"].as_i64(),
        end_time_ms: None,
        status: None,
    }
}

/// A JSON value as a parameter or tag string: strings as they are, other values as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_parent_and_one_child_per_variant_with_feedback_figures() {
        let results = json!({
            "experiment": {"id": "exp_1", "name": "tone", "config": "support", "unit": "customer",
                           "status": "running", "created_at_ms": 1000},
            "control": "a",
            "requests": 100,
            "sample_ratio": {"p_value": 0.4, "mismatch": false},
            "variants": [
                {"name": "a", "config": "support", "version": 1, "share": 95.0, "requests": 95,
                 "observed_share": 95.0, "errors": 0, "error_rate": 0.0,
                 "latency_ms": {"p50": 1.5, "p95": 3.0}, "cost_per_request_usd": 0.0001},
                {"name": "b", "config": "support", "version": 2, "share": 5.0, "requests": 5,
                 "observed_share": 5.0, "errors": 1, "error_rate": 0.2,
                 "latency_ms": {"p50": null, "p95": null},
                 "vs_control": {"cost_change": 0.12}}
            ],
            "metrics": [{"name": "thumbs_up", "variants": [
                    {"name": "a", "n": 90, "rate": 0.5}, {"name": "b", "n": 5, "rate": 1.0}],
                "comparisons": [{"variant": "b", "p_value": 0.01, "verdict": "variant b better"}]}],
            "verdict": "variant b better on thumbs_up (p = 0.01)"
        });
        let (parent, children) = mlflow_runs(&results);
        assert_eq!(parent.name, "tone");
        assert!(
            parent
                .params
                .contains(&("variants".into(), "a=95%,b=5%".into()))
        );
        assert!(
            parent
                .tags
                .iter()
                .any(|(k, v)| k == "switchyard.verdict" && v.contains("variant b better"))
        );
        assert_eq!(children.len(), 2);
        let b = &children[1];
        assert!(b.params.contains(&("version".into(), "2".into())));
        assert!(b.metrics.contains(&("thumbs_up.rate".into(), 1.0)));
        assert!(b.metrics.contains(&("thumbs_up.p_value".into(), 0.01)));
        assert!(b.metrics.contains(&("cost_change_vs_control".into(), 0.12)));
        // A null latency is left out, not exported as zero.
        assert!(!b.metrics.iter().any(|(k, _)| k == "latency_p50_ms"));
        let a = &children[0];
        assert!(a.metrics.contains(&("latency_p50_ms".into(), 1.5)));
        assert!(!a.metrics.iter().any(|(k, _)| k == "thumbs_up.p_value"));
    }
}
