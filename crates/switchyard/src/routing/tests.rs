use std::time::Duration;

use super::*;
use crate::config::load;

const CONFIG: &str = r#"
server: {master_key: k}
providers:
  - {name: a, kind: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
  - {name: b, kind: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
  - {name: c, kind: anthropic, api_key: x, base_url: "http://127.0.0.1:9"}
models:
  - alias: main
    deployments: [{provider: a, model: m1, weight: 3}, {provider: b, model: m2, weight: 1}]
    fallbacks: [backup, other]
  - alias: backup
    deployments: [{provider: c, model: claude}]
    fallbacks: [main]
  - alias: other
    deployments: [{provider: a, model: m1}]
"#;

fn table() -> RoutingTable {
    let config = load(CONFIG, &|_| None).unwrap();
    RoutingTable::build(&config, None).unwrap()
}

fn ids(plan: &[PlannedAttempt]) -> Vec<String> {
    plan.iter().map(|p| format!("{}:{}", p.alias, p.deployment.id)).collect()
}

#[test]
fn weighted_order_follows_the_random_source_then_fallbacks_in_order() {
    let t = table();
    // rng always 0: the first remaining deployment wins each draw.
    let plan = t.plan("main", Needs::default(), 0, &mut |_| 0).unwrap();
    assert_eq!(ids(&plan), ["main:a/m1", "main:b/m2", "backup:c/claude"], "the repeated a/m1 of 'other' is skipped and cycles end");
    // rng at the top of the range: weight 3 of 4 → values 3 pick b.
    let plan = t.plan("main", Needs::default(), 0, &mut |total| total - 1).unwrap();
    assert_eq!(ids(&plan)[0], "main:b/m2");
}

#[test]
fn weights_are_respected_over_many_draws() {
    let t = table();
    let mut seed = 12345u64;
    let mut rng = |n: u32| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) % u64::from(n)) as u32
    };
    let mut first_a = 0;
    for _ in 0..4000 {
        if t.plan("main", Needs::default(), 0, &mut rng).unwrap()[0].deployment.id == "a/m1" {
            first_a += 1;
        }
    }
    assert!((2800..3200).contains(&first_a), "a/m1 first {first_a} of 4000, expected ~3000");
}

#[test]
fn cooled_deployments_go_last_and_come_back() {
    let t = table();
    let route = t.route("main").unwrap();
    let a = &route.deployments[0];
    for _ in 0..3 {
        a.health.failure(3, Duration::from_secs(10), None, 1_000);
    }
    let plan = t.plan("main", Needs::default(), 2_000, &mut |_| 0).unwrap();
    assert_eq!(ids(&plan), ["main:b/m2", "backup:c/claude", "main:a/m1"]);
    let plan = t.plan("main", Needs::default(), 11_001, &mut |_| 0).unwrap();
    assert_eq!(ids(&plan)[0], "main:a/m1", "cooldown over: probed again");
    // Half-open: one more failure cools it again at once.
    a.health.failure(3, Duration::from_secs(10), None, 11_002);
    assert!(a.health.snapshot(11_003).cooling);
    a.health.success();
    assert!(!a.health.snapshot(11_003).cooling);
}

#[test]
fn retry_after_cools_for_that_long() {
    let t = table();
    let b = &t.route("main").unwrap().deployments[1];
    b.health.failure(3, Duration::from_secs(10), Some(Duration::from_secs(2)), 0);
    assert!(b.health.snapshot(1_999).cooling);
    assert!(!b.health.snapshot(2_001).cooling);
}

#[test]
fn unknown_alias_and_unmet_needs() {
    let t = table();
    assert_eq!(
        t.plan("nope", Needs::default(), 0, &mut |_| 0).err(),
        Some(PlanError::UnknownAlias("nope".into()))
    );
    let needs = Needs { embeddings: true, ..Needs::default() };
    let plan = t.plan("backup", needs, 0, &mut |_| 0).unwrap();
    assert!(plan.iter().all(|p| p.deployment.provider.name != "c"), "anthropic serves no embeddings");
}
