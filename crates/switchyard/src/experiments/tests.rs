//! Unit tests of the experiments module: statistics against values computed independently,
//! templates, applying a version to a request, assignment, diffs and the results verdict.

use serde_json::{Map, Value, json};
use switchyard_protocol::canonical::{ChatRequest, ContentPart, Extras, Message, Role};

use super::model::*;
use super::stats::*;
use super::store::{FeedbackRow, RequestRow};
use super::*;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

// Welch's t-test example data set (two samples of 15); t, df and p computed separately with a
// direct Simpson integration of Student's t density: t = 2.4554, df = 24.989, p = 0.02138.
const A1: [f64; 15] = [
    27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4,
];
const A2: [f64; 15] = [
    27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4,
];

#[test]
fn welch_matches_an_independent_computation() {
    let t = welch(&Summary::of(&A1), &Summary::of(&A2)).unwrap();
    assert!(close(t.statistic, 2.455_356, 1e-5), "{t:?}");
    assert!(close(t.df.unwrap(), 24.988_53, 1e-4), "{t:?}");
    assert!(close(t.p_value, 0.021_378, 1e-5), "{t:?}");
    // Symmetric: swapping the sides flips the sign only.
    let back = welch(&Summary::of(&A2), &Summary::of(&A1)).unwrap();
    assert!(close(back.statistic, -t.statistic, 1e-12));
    assert!(close(back.p_value, t.p_value, 1e-12));
}

#[test]
fn welch_needs_two_values_a_side_and_some_variance() {
    assert!(welch(&Summary::of(&[1.0]), &Summary::of(&[1.0, 2.0])).is_none());
    assert!(welch(&Summary::of(&[1.0, 1.0]), &Summary::of(&[1.0, 1.0])).is_none());
}

#[test]
fn mean_ci_uses_student_t() {
    // n = 4, mean 2.5, s² = 5/3: half-width = t(0.975, 3) · s/√n = 3.182446 · 0.645497.
    let ci = mean_ci(&Summary::of(&[1.0, 2.0, 3.0, 4.0])).unwrap();
    assert!(close(ci.0, 2.5 - 2.054_24, 1e-4), "{ci:?}");
    assert!(close(ci.1, 2.5 + 2.054_24, 1e-4), "{ci:?}");
}

#[test]
fn two_proportions_and_wilson() {
    // 30/100 vs 50/100: pooled z = 2.88675, p = 0.0038924.
    let t = two_proportions(30, 100, 50, 100).unwrap();
    assert!(close(t.statistic, 2.886_751, 1e-5), "{t:?}");
    assert!(close(t.p_value, 0.003_892_4, 1e-6), "{t:?}");
    // 81 of 263: Wilson 95 % interval [0.25529, 0.36621].
    let (lo, hi) = wilson(81, 263).unwrap();
    assert!(close(lo, 0.255_289, 1e-5) && close(hi, 0.366_210, 1e-5));
    assert!(two_proportions(0, 0, 1, 2).is_none());
}

#[test]
fn chi_square_tests() {
    // 370/30 against 95/5 of 400: x = 5.26316, p = 0.021781 (one degree of freedom).
    let t = goodness_of_fit(&[370, 30], &[0.95, 0.05]).unwrap();
    assert!(close(t.statistic, 5.263_158, 1e-5));
    assert!(close(t.p_value, 0.021_781, 1e-5));
    // The critical value at p = 0.001 for one degree of freedom is 10.828: 5165/4835 is just
    // past it (x = 10.89), 5160/4840 just short (x = 10.24).
    let past = goodness_of_fit(&[5165, 4835], &[0.5, 0.5]).unwrap();
    assert!(past.p_value < 0.001, "{past:?}");
    let short = goodness_of_fit(&[5160, 4840], &[0.5, 0.5]).unwrap();
    assert!(short.p_value > 0.001, "{short:?}");
    // A 2 × 2 table without correction equals the squared pooled z.
    let ind = independence(&[30, 70], &[50, 50]).unwrap();
    assert!(close(ind.statistic, 2.886_751_f64.powi(2), 1e-4));
    assert!(close(ind.p_value, 0.003_892_4, 1e-6));
}

#[test]
fn percentiles_interpolate() {
    let mut v = vec![5.0, 1.0, 4.0, 2.0, 3.0];
    assert_eq!(percentile(&mut v, 0.5), Some(3.0));
    assert_eq!(percentile(&mut v, 0.95), Some(4.8));
    assert_eq!(percentile(&mut [], 0.5), None);
    assert_eq!(format_p(0.0004), "p < 0.001");
    assert_eq!(format_p(0.0123), "p = 0.012");
}

#[test]
fn templates_parse_and_reject_broken_placeholders() {
    assert_eq!(
        template::parse("Hi {{ name }}, {{topic}}!").unwrap(),
        vec![
            template::Piece::Text("Hi "),
            template::Piece::Var("name"),
            template::Piece::Text(", "),
            template::Piece::Var("topic"),
            template::Piece::Text("!"),
        ]
    );
    assert!(template::parse("Hi {{name").is_err());
    assert!(template::parse("Hi {{ 1x }}").is_err());
    let t = Template {
        system: Some("ok".into()),
        messages: vec![TemplateMessage {
            role: TemplateRole::User,
            content: "bad {{".into(),
        }],
    };
    let e = template::validate(&t).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("template.messages[0].content"));
}

fn version() -> ConfigVersion {
    ConfigVersion {
        name: "support".into(),
        version: 2,
        target: "anthropic".into(),
        parameters: Parameters {
            temperature: Some(0.2),
            max_tokens: Some(100),
            ..Parameters::default()
        },
        locked: vec!["temperature".into()],
        template: Template {
            system: Some("You help {{customer}} with {{product}}.".into()),
            messages: vec![
                TemplateMessage {
                    role: TemplateRole::User,
                    content: "Example question".into(),
                },
                TemplateMessage {
                    role: TemplateRole::Assistant,
                    content: "Example answer".into(),
                },
            ],
        },
        description: String::new(),
        author: "test".into(),
        created_at_ms: 0,
    }
}

fn request(text: &str) -> ChatRequest {
    ChatRequest {
        model: "ignored".into(),
        messages: vec![Message {
            role: Role::User,
            content: vec![ContentPart::text(text)],
            name: None,
            extras: Extras::default(),
        }],
        ..ChatRequest::default()
    }
}

fn vars(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[test]
fn applying_a_version_renders_the_template_before_the_request() {
    let mut r = request("My question");
    r.max_tokens = Some(50);
    template::apply(
        &version(),
        &mut r,
        &vars(&[("customer", json!("Ada")), ("product", json!(42))]),
    )
    .unwrap();
    assert_eq!(r.model, "anthropic");
    assert_eq!(r.temperature, Some(0.2));
    assert_eq!(
        r.max_tokens,
        Some(50),
        "the request's own value wins when not locked"
    );
    let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [Role::System, Role::User, Role::Assistant, Role::User]
    );
    assert_eq!(r.messages[0].text(), "You help Ada with 42.");
    assert_eq!(r.messages[3].text(), "My question");
}

#[test]
fn a_missing_variable_names_it_and_its_path() {
    let mut r = request("q");
    let e = template::apply(&version(), &mut r, &vars(&[("customer", json!("Ada"))])).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("switchyard.variables.product"));
    assert!(
        e.message.contains("'product'") && e.message.contains("support@2"),
        "{}",
        e.message
    );
    assert_eq!(r.model, "ignored", "nothing is changed on error");
}

#[test]
fn a_locked_parameter_cannot_be_contradicted() {
    let mut r = request("q");
    r.temperature = Some(0.9);
    let v = vars(&[("customer", json!("a")), ("product", json!("b"))]);
    let e = template::apply(&version(), &mut r, &v).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("temperature"));
    // The same value is no contradiction.
    let mut r = request("q");
    r.temperature = Some(0.2);
    template::apply(&version(), &mut r, &v).unwrap();
}

fn variants(shares: &[(&str, u32)]) -> Vec<Variant> {
    shares
        .iter()
        .enumerate()
        .map(|(i, (n, bp))| Variant {
            name: (*n).into(),
            config: "c".into(),
            version: i as u32 + 1,
            share_bp: *bp,
        })
        .collect()
}

#[test]
fn assignment_is_sticky_and_follows_the_shares() {
    let vs = variants(&[("a", 9_500), ("b", 500)]);
    let mut b = 0;
    for i in 0..20_000 {
        let unit = format!("customer-{i}");
        let first = assign::pick(&vs, assign::bucket("exp", &unit)).unwrap();
        let again = assign::pick(&vs, assign::bucket("exp", &unit)).unwrap();
        assert_eq!(first, again);
        b += usize::from(first.name == "b");
    }
    // 5 % of 20 000 is 1 000; the binomial standard deviation is about 31.
    assert!((850..1150).contains(&b), "b got {b}");
    // Another experiment hashes the same units differently.
    let moved = (0..1000)
        .filter(|i| {
            let unit = format!("customer-{i}");
            assign::bucket("exp", &unit) != assign::bucket("other", &unit)
        })
        .count();
    assert!(moved > 900);
    assert_eq!(assign::pick(&vs, 9_499).unwrap().name, "a");
    assert_eq!(assign::pick(&vs, 9_500).unwrap().name, "b");
}

#[test]
fn selectors_and_shares() {
    assert_eq!(
        parse_selector("support@3", "h").unwrap(),
        ("support".into(), VersionRef::Number(3))
    );
    assert_eq!(
        parse_selector("support@production", "h").unwrap(),
        ("support".into(), VersionRef::Label("production".into()))
    );
    assert_eq!(
        parse_selector("support", "h").unwrap(),
        ("support".into(), VersionRef::Default)
    );
    assert!(parse_selector("support@", "h").is_err());
    assert!(parse_selector("a b", "h").is_err());
    assert_eq!(share_bp(95.0), Some(9_500));
    assert_eq!(share_bp(2.5), Some(250));
    assert_eq!(share_bp(0.001), None);
    assert_eq!(share_bp(-5.0), None);
}

#[test]
fn diffs_name_changed_leaves() {
    let a = json!({"target": "x", "template": {"system": "one", "messages": [{"role": "user", "content": "hi"}]}});
    let b = json!({"target": "y", "template": {"system": "one", "messages": [{"role": "user", "content": "hey"}, {"role": "assistant", "content": "yo"}]}});
    let d = diff::diff(&a, &b);
    let paths: Vec<&str> = d.iter().filter_map(|c| c["path"].as_str()).collect();
    assert_eq!(
        paths,
        [
            "target",
            "template.messages[0].content",
            "template.messages[1]"
        ]
    );
    assert_eq!(d[0]["before"], "x");
    assert_eq!(d[0]["after"], "y");
    assert!(diff::diff(&a, &a).is_empty());
}

fn experiment() -> Experiment {
    Experiment {
        id: "exp".into(),
        name: "exp".into(),
        config: "c".into(),
        unit: Unit::Customer,
        variants: variants(&[("a", 5_000), ("b", 5_000)]),
        metrics: vec![MetricSpec {
            name: "thumbs_up".into(),
            kind: MetricKind::Boolean,
            goal: Goal::Increase,
        }],
        status: Status::Running,
        description: String::new(),
        author: "t".into(),
        created_at_ms: 0,
        updated_at_ms: 0,
        winner: None,
    }
}

fn rows(variant: &str, n: usize, cost: i64) -> Vec<RequestRow> {
    (0..n)
        .map(|i| RequestRow {
            variant: variant.into(),
            outcome: "success".into(),
            duration_ms: 10.0 + i as f64,
            cost_nanos: Some(cost),
            input_tokens: Some(20),
            output_tokens: Some(10),
            customer: Some(format!("{variant}-{i}")),
            key_id: None,
            session_id: None,
        })
        .collect()
}

fn thumbs(variant: &str, yes: usize, no: usize) -> Vec<FeedbackRow> {
    (0..yes + no)
        .map(|i| FeedbackRow {
            variant: variant.into(),
            metric: "thumbs_up".into(),
            value: FeedbackValue::Boolean(i < yes),
        })
        .collect()
}

#[test]
fn results_give_a_verdict_with_cost() {
    let mut requests = rows("a", 100, 1_000);
    requests.extend(rows("b", 100, 1_120));
    let mut feedback = thumbs("a", 30, 70);
    feedback.extend(thumbs("b", 50, 50));
    let r = results::compute(&experiment(), &requests, &feedback);
    assert_eq!(r["requests"], 200);
    assert_eq!(r["sample_ratio"]["mismatch"], false);
    assert_eq!(r["variants"][1]["cost_per_request_nanos"], 1_120);
    assert_eq!(r["variants"][0]["latency_ms"]["p50"], 59.5);
    let cmp = &r["metrics"][0]["comparisons"][0];
    assert!(close(cmp["p_value"].as_f64().unwrap(), 0.003_892_4, 1e-6));
    assert_eq!(
        r["verdict"],
        "variant b better on thumbs_up (p = 0.004); 12 % more expensive per request"
    );
}

#[test]
fn results_without_enough_data_say_so_and_flag_a_skewed_split() {
    let mut requests = rows("a", 180, 1_000);
    requests.extend(rows("b", 20, 1_000));
    let mut feedback = thumbs("a", 3, 3);
    feedback.extend(thumbs("b", 4, 2));
    let r = results::compute(&experiment(), &requests, &feedback);
    assert_eq!(r["sample_ratio"]["mismatch"], true);
    let verdicts = r["verdicts"].as_array().unwrap();
    assert!(
        verdicts[0]
            .as_str()
            .unwrap()
            .starts_with("sample-ratio mismatch")
    );
    assert_eq!(
        verdicts[1],
        "variant b: no significant difference yet (n = 180/20)"
    );
    assert!(
        r["metrics"][0]["comparisons"][0]["verdict"]
            .as_str()
            .unwrap()
            .starts_with("no significant difference on thumbs_up yet (n = 6/6")
    );
}

fn openai_request(extra: Option<Value>) -> ChatRequest {
    let mut r = request("hi");
    r.model = "cheap".into();
    r.extras = Extras::new(
        switchyard_protocol::DialectId::OpenAi,
        [("logit_bias".to_owned(), json!({}))].into_iter().collect(),
    );
    if let Some(v) = extra {
        r.extras.fields.insert(BODY_FIELD.into(), v);
    }
    r
}

#[tokio::test]
async fn the_switchyard_field_never_stays_in_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open_sqlite(&dir.path().join("t.db"))
        .await
        .unwrap();
    let exps = Experiments::load(store).await.unwrap();
    let input: VersionInput = serde_json::from_value(json!({
        "name": "c", "target": "cheap", "template": {"system": "For {{who}}."}
    }))
    .unwrap();
    let known = |a: &str| a == "cheap";
    exps.create_version("test", input, &known).await.unwrap();
    let headers = http::HeaderMap::new();
    let units = Units {
        customer: None,
        key: None,
        session: None,
        request: "r1",
    };
    let allowed = |_: &str| true;

    // Selecting nothing: removed, the request is untouched otherwise.
    let mut r = openai_request(Some(json!({})));
    assert_eq!(
        exps.prepare(&mut r, &headers, units, &allowed).unwrap(),
        None
    );
    assert!(!r.extras.fields.contains_key(BODY_FIELD));
    assert!(r.extras.fields.contains_key("logit_bias"));
    assert_eq!(r.messages.len(), 1);

    // Selecting a configuration: removed and applied.
    let mut r = openai_request(Some(
        json!({"config": "c@latest", "variables": {"who": "Ada"}}),
    ));
    let applied = exps
        .prepare(&mut r, &headers, units, &allowed)
        .unwrap()
        .unwrap();
    assert_eq!((applied.config.as_str(), applied.version), ("c", 1));
    assert!(!r.extras.fields.contains_key(BODY_FIELD));
    assert_eq!(r.messages[0].text(), "For Ada.");

    // An error still leaves nothing behind to forward.
    let mut r = openai_request(Some(json!({"config": "c"})));
    assert!(exps.prepare(&mut r, &headers, units, &allowed).is_err());
    assert!(!r.extras.fields.contains_key(BODY_FIELD));
}

/// The split is checked in the units assigned: one customer's hundred requests are one
/// assignment, not a skew of the split.
#[test]
fn the_sample_ratio_counts_units_not_requests() {
    let mut requests = rows("a", 96, 1_000);
    requests.extend(rows("b", 104, 1_000));
    let heavy = RequestRow {
        customer: Some("a-0".into()),
        ..rows("a", 1, 1_000).remove(0)
    };
    requests.extend(std::iter::repeat_n(heavy, 100));
    let r = results::compute(&experiment(), &requests, &[]);
    assert_eq!(r["requests"], 300);
    assert_eq!(r["sample_ratio"]["unit"], "customer");
    assert_eq!(r["sample_ratio"]["observed"], json!({"a": 96, "b": 104}));
    assert_eq!(r["sample_ratio"]["mismatch"], false);
}
