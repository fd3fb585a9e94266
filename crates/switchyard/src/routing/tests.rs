use std::time::Duration;

use super::*;
use crate::config::StrategyFile;
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
    RoutingTable::build(&config, None, &Default::default()).unwrap()
}

fn ids(plan: &[PlannedAttempt]) -> Vec<String> {
    plan.iter()
        .map(|p| format!("{}:{}", p.alias(), p.deployment.id))
        .collect()
}

#[test]
fn weighted_order_follows_the_random_source_then_fallbacks_in_order() {
    let t = table();
    // rng always 0: the first remaining deployment wins each draw.
    let plan = t.plan("main", Needs::default(), 0, &mut |_| 0).unwrap();
    assert_eq!(
        ids(&plan),
        ["main:a/m1", "main:b/m2", "backup:c/claude"],
        "the repeated a/m1 of 'other' is skipped and cycles end"
    );
    // rng at the top of the range: weight 3 of 4 → values 3 pick b.
    let plan = t
        .plan("main", Needs::default(), 0, &mut |total| total - 1)
        .unwrap();
    assert_eq!(ids(&plan)[0], "main:b/m2");
}

#[test]
fn weights_are_respected_over_many_draws() {
    let t = table();
    let mut seed = 12345u64;
    let mut rng = |n: u32| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) % u64::from(n)) as u32
    };
    let mut first_a = 0;
    for _ in 0..4000 {
        if &*t.plan("main", Needs::default(), 0, &mut rng).unwrap()[0]
            .deployment
            .id
            == "a/m1"
        {
            first_a += 1;
        }
    }
    assert!(
        (2800..3200).contains(&first_a),
        "a/m1 first {first_a} of 4000, expected ~3000"
    );
}

#[test]
fn cooled_deployments_go_last_and_come_back() {
    let t = table();
    let route = t.route("main").unwrap();
    let a = &route.deployments[0];
    // Only the failure that starts the cooldown says so (it is what replicas are told).
    let started: Vec<Option<u64>> = (0..3)
        .map(|_| {
            a.health
                .failure(3, Duration::from_secs(10), None, false, 1_000)
        })
        .collect();
    assert_eq!(started, [None, None, Some(11_000)]);
    assert_eq!(
        a.health
            .failure(3, Duration::from_secs(10), None, false, 1_000),
        None,
        "no longer than it was"
    );
    let plan = t.plan("main", Needs::default(), 2_000, &mut |_| 0).unwrap();
    assert_eq!(ids(&plan), ["main:b/m2", "backup:c/claude", "main:a/m1"]);
    let plan = t
        .plan("main", Needs::default(), 11_001, &mut |_| 0)
        .unwrap();
    assert_eq!(ids(&plan)[0], "main:a/m1", "cooldown over: probed again");
    // Half-open: one more failure cools it again at once.
    a.health
        .failure(3, Duration::from_secs(10), None, false, 11_002);
    assert!(a.health.snapshot(11_003).cooling);
    a.health.success(Duration::from_millis(5), 0);
    assert!(!a.health.snapshot(11_003).cooling);
    // Another replica's cooldown, adopted.
    a.health.cool_until(20_000);
    assert!(a.health.snapshot(19_999).cooling);
    assert!(!a.health.snapshot(20_000).cooling);
}

/// The request that claims a cooled deployment's probe tries it first, whatever the strategy
/// prefers; before, a probe claimed by a request whose first choice answered was never sent, and
/// the re-armed cooldown kept a recovered deployment out for cooldown after cooldown.
#[test]
fn the_request_that_claims_the_probe_sends_it() {
    let t = table();
    let b = &t.route("main").unwrap().deployments[1];
    b.health
        .failure(1, Duration::from_secs(10), None, false, 1_000);
    // Cooling: last, after the fallbacks.
    let plan = t.plan("main", Needs::default(), 2_000, &mut |_| 0).unwrap();
    assert_eq!(ids(&plan).last().unwrap(), "main:b/m2");
    // Over: this request probes it, first (the weighted draw alone would put a/m1 first).
    let facts = RequestFacts {
        model: "main".into(),
        ..RequestFacts::default()
    };
    let mut probing = t.planner(facts, 11_001, &mut |_| 0).unwrap();
    let first = probing.next(None, &mut |_| 0).unwrap();
    assert_eq!(&*first.deployment.id, "b/m2", "the probe goes first");
    // Meanwhile the others wait for the probe's answer: it stays a last resort for them.
    let plan = t
        .plan("main", Needs::default(), 11_002, &mut |_| 0)
        .unwrap();
    assert_eq!(ids(&plan)[0], "main:a/m1");
    assert_eq!(ids(&plan).last().unwrap(), "main:b/m2");
    drop(probing);
}

/// A plan dropped before it handed out its probe (its request refused by a budget, a rate limit
/// or a guardrail after routing) gives the probe back: the next request probes instead of the
/// deployment staying out for another cooldown with nothing learnt.
#[test]
fn a_probe_never_sent_is_given_back() {
    let t = table();
    let b = &t.route("main").unwrap().deployments[1];
    b.health
        .failure(1, Duration::from_secs(10), None, false, 1_000);
    let facts = || RequestFacts {
        model: "main".into(),
        ..RequestFacts::default()
    };
    let refused = t.planner(facts(), 11_001, &mut |_| 0).unwrap();
    assert!(
        b.health.snapshot(11_001).cooling,
        "claimed: re-armed for others"
    );
    drop(refused);
    let plan = t
        .plan("main", Needs::default(), 11_002, &mut |_| 0)
        .unwrap();
    assert_eq!(ids(&plan)[0], "main:b/m2", "the next request probes");
    // That plan ended with no verdict either (its client left before the probe answered):
    // given back again. One whose probe failed leaves the deployment cooling.
    let mut probing = t.planner(facts(), 11_003, &mut |_| 0).unwrap();
    assert_eq!(
        &*probing.next(None, &mut |_| 0).unwrap().deployment.id,
        "b/m2"
    );
    b.health
        .failure(1, Duration::from_secs(10), None, false, 11_004);
    drop(probing);
    let plan = t
        .plan("main", Needs::default(), 11_005, &mut |_| 0)
        .unwrap();
    assert_eq!(ids(&plan)[0], "main:a/m1");
}

#[test]
fn retry_after_cools_for_that_long() {
    let t = table();
    let b = &t.route("main").unwrap().deployments[1];
    b.health.failure(
        3,
        Duration::from_secs(10),
        Some(Duration::from_secs(2)),
        false,
        0,
    );
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
    let needs = Needs {
        embeddings: true,
        ..Needs::default()
    };
    let plan = t.plan("backup", needs, 0, &mut |_| 0).unwrap();
    assert!(
        plan.iter().all(|p| *p.deployment.provider.name != *"c"),
        "anthropic serves no embeddings"
    );
}

#[test]
fn documents_are_a_need_every_chat_provider_meets() {
    let t = table();
    let needs = Needs {
        documents: true,
        ..Needs::default()
    };
    assert_eq!(needs.describe(), "documents");
    let plan = t.plan("backup", needs, 0, &mut |_| 0).unwrap();
    assert!(
        plan.iter().any(|p| *p.deployment.provider.name == *"c"),
        "anthropic reads documents"
    );
}

fn snapshot() -> HealthSnapshot {
    Health::default().snapshot(0)
}

fn cand(index: usize, weight: u32) -> strategy::Candidate {
    strategy::Candidate {
        index,
        weight,
        priority: 0,
        price: None,
        rpm: None,
        tpm: None,
        health: snapshot(),
    }
}

fn order_of(
    s: StrategyFile,
    cands: Vec<strategy::Candidate>,
    input: strategy::OrderInput,
) -> Vec<usize> {
    let mut rng = |_: u32| 0;
    strategy::order(s, cands, &input, &mut rng)
        .into_iter()
        .map(|(c, _)| c.index)
        .collect()
}

const INPUT: strategy::OrderInput = strategy::OrderInput {
    input_tokens: 1000,
    output_tokens: 100,
    tick: 0,
    exploration: 0.0,
};

#[test]
fn round_robin_rotates_with_the_tick() {
    let cands = || vec![cand(0, 1), cand(1, 1), cand(2, 1)];
    assert_eq!(
        order_of(StrategyFile::RoundRobin, cands(), INPUT),
        [0, 1, 2]
    );
    assert_eq!(
        order_of(
            StrategyFile::RoundRobin,
            cands(),
            strategy::OrderInput { tick: 4, ..INPUT }
        ),
        [1, 2, 0]
    );
}

#[test]
fn least_busy_prefers_fewest_in_flight() {
    let mut a = cand(0, 1);
    a.health.in_flight = 5;
    let mut b = cand(1, 1);
    b.health.in_flight = 1;
    let mut c = cand(2, 1);
    c.health.in_flight = 3;
    assert_eq!(
        order_of(StrategyFile::LeastBusy, vec![a, b, c], INPUT),
        [1, 2, 0]
    );
}

#[test]
fn lowest_latency_measures_unknown_first_and_explores() {
    let mut a = cand(0, 1);
    a.health.latency_ewma_ms = Some(300.0);
    let mut b = cand(1, 1);
    b.health.latency_ewma_ms = Some(20.0);
    let c = cand(2, 1);
    assert_eq!(
        order_of(
            StrategyFile::LowestLatency,
            vec![a.clone(), b.clone(), c.clone()],
            INPUT
        ),
        [2, 1, 0]
    );
    // Exploration on (rng 0 < share): no sorting, the shuffled order stands.
    let explored = order_of(
        StrategyFile::LowestLatency,
        vec![a, b, c],
        strategy::OrderInput {
            exploration: 1.0,
            ..INPUT
        },
    );
    assert_eq!(explored.len(), 3);
}

#[test]
fn lowest_cost_uses_prices_and_puts_unpriced_last() {
    let mut a = cand(0, 1);
    a.price = Some((10.0, 30.0));
    let mut b = cand(1, 1);
    b.price = Some((0.15, 0.6));
    let c = cand(2, 1);
    let mut rng = |_: u32| 0;
    let ordered = strategy::order(StrategyFile::LowestCost, vec![a, b, c], &INPUT, &mut rng);
    assert_eq!(
        ordered.iter().map(|(c, _)| c.index).collect::<Vec<_>>(),
        [1, 0, 2]
    );
    let cheapest = ordered[0].1.unwrap();
    assert!((cheapest - (1000.0 * 0.15 + 100.0 * 0.6) / 1e6).abs() < 1e-12);
}

#[test]
fn usage_aware_prefers_headroom() {
    let mut a = cand(0, 1);
    a.rpm = Some(10);
    a.health.requests_this_minute = 9;
    let mut b = cand(1, 1);
    b.rpm = Some(10);
    b.health.requests_this_minute = 2;
    let mut c = cand(2, 1);
    c.health.provider_headroom = Some(0.5);
    assert_eq!(
        order_of(StrategyFile::UsageAware, vec![a, b, c], INPUT),
        [1, 2, 0]
    );
}

#[test]
fn priority_uses_tiers_in_order() {
    let mut a = cand(0, 1);
    a.priority = 2;
    let b = cand(1, 1);
    let mut c = cand(2, 1);
    c.priority = 1;
    assert_eq!(
        order_of(StrategyFile::Priority, vec![a, b, c], INPUT),
        [1, 2, 0]
    );
}

const RULES: &str = r#"
server: {master_key: k}
providers:
  - {name: small, kind: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
  - {name: big, kind: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
models:
  - alias: auto
    deployments:
      - {provider: big, model: large, price: {input_per_mtok: 10, output_per_mtok: 30}, context_window: 100000}
      - {provider: small, model: mini, price: {input_per_mtok: 0.1, output_per_mtok: 0.4}, context_window: 8000}
    fallbacks:
      default: [backup]
      context_window_exceeded: [huge]
  - alias: code
    deployments: [{provider: big, model: coder}]
  - alias: backup
    deployments: [{provider: small, model: backup}]
  - alias: huge
    deployments: [{provider: big, model: huge}]
routing:
  rules:
    - name: code-tasks
      match: {model: "auto", metadata: {task: code}}
      route: {alias: code}
    - name: team-gold
      match: {teams: [gold]}
      route: {alias: code}
    - name: short-and-simple
      match: {model: "au*", max_input_tokens: 50, max_messages: 2, no_tools: true}
      route: {deployments: [small/mini]}
"#;

fn rules_table() -> RoutingTable {
    RoutingTable::build(&load(RULES, &|_| None).unwrap(), None, &Default::default()).unwrap()
}

fn facts(model: &str, tokens: u64) -> RequestFacts {
    RequestFacts {
        model: model.into(),
        input_tokens: tokens,
        messages: 1,
        ..RequestFacts::default()
    }
}

#[test]
fn rules_pick_alias_and_subset() {
    let t = rules_table();
    let mut rng = |_: u32| 0;
    let mut f = facts("auto", 1000);
    f.metadata = serde_json::from_str(r#"{"task": "code"}"#).ok();
    let p = t.planner(f, 0, &mut rng).unwrap();
    assert_eq!(p.decision.rule.as_deref(), Some("code-tasks"));
    assert_eq!(&*p.decision.alias, "code");

    let mut p = t.planner(facts("auto", 10), 0, &mut rng).unwrap();
    assert_eq!(p.decision.rule.as_deref(), Some("short-and-simple"));
    assert_eq!(
        &*p.next(None, &mut rng).unwrap().deployment.id,
        "small/mini"
    );
    assert!(
        p.decision
            .skipped
            .iter()
            .any(|s| *s.deployment == *"big/large" && s.reason.contains("subset"))
    );

    let p = t.planner(facts("auto", 1000), 0, &mut rng).unwrap();
    assert_eq!(p.decision.rule, None);

    let mut f = facts("auto", 1000);
    f.team = Some("gold".into());
    let p = t.planner(f, 0, &mut rng).unwrap();
    assert_eq!(p.decision.rule.as_deref(), Some("team-gold"));
}

#[test]
fn context_window_and_cost_ceiling_skip_deployments() {
    let t = rules_table();
    let mut rng = |_: u32| 0;
    let mut p = t.planner(facts("auto", 20_000), 0, &mut rng).unwrap();
    assert_eq!(&*p.next(None, &mut rng).unwrap().deployment.id, "big/large");
    assert!(
        p.decision
            .skipped
            .iter()
            .any(|s| *s.deployment == *"small/mini" && s.reason.contains("context window"))
    );

    let mut f = facts("auto", 1000);
    f.max_cost = Some(0.001);
    let mut p = t.planner(f, 0, &mut rng).unwrap();
    assert_eq!(
        &*p.next(None, &mut rng).unwrap().deployment.id,
        "small/mini"
    );
    assert!(
        p.decision
            .skipped
            .iter()
            .any(|s| *s.deployment == *"big/large" && s.reason.contains("max_cost"))
    );
}

#[test]
fn fallbacks_follow_the_error_class() {
    let t = rules_table();
    let mut rng = |_: u32| 0;
    let mut p = t.planner(facts("auto", 1000), 0, &mut rng).unwrap();
    p.next(None, &mut rng).unwrap();
    p.next(None, &mut rng).unwrap();
    let next = p
        .next(
            Some(switchyard_protocol::canonical::ErrorClass::ContextTooLong),
            &mut rng,
        )
        .unwrap();
    assert_eq!(&**next.alias(), "huge");
    let mut p = t.planner(facts("auto", 1000), 0, &mut rng).unwrap();
    p.next(None, &mut rng).unwrap();
    p.next(None, &mut rng).unwrap();
    let next = p
        .next(
            Some(switchyard_protocol::canonical::ErrorClass::ServerError),
            &mut rng,
        )
        .unwrap();
    assert_eq!(&**next.alias(), "backup");
    assert_eq!(p.decision.fallbacks, [Name::from("backup")]);
}

#[test]
fn globs() {
    assert!(rules::glob_match("gpt-*", "gpt-4o"));
    assert!(rules::glob_match("*mini*", "gpt-4o-mini-2024"));
    assert!(rules::glob_match("a?c", "abc"));
    assert!(!rules::glob_match("gpt-*", "claude"));
    assert!(rules::glob_match("*", ""));
}

#[test]
fn latency_percentiles_come_from_one_read_of_the_histogram() {
    let h = Health::default();
    let empty = h.snapshot(0);
    assert_eq!(
        (empty.p50_ms, empty.p95_ms, empty.p99_ms),
        (None, None, None)
    );
    for _ in 0..90 {
        h.success(Duration::from_millis(3), now_ms());
    }
    for _ in 0..5 {
        h.success(Duration::from_millis(150), now_ms());
    }
    for _ in 0..5 {
        h.success(Duration::from_millis(900), now_ms());
    }
    let s = h.snapshot(now_ms());
    // Each percentile is interpolated within the bucket its rank falls in.
    assert_eq!(
        (s.p50_ms, s.p95_ms, s.p99_ms),
        (Some(4), Some(200), Some(950))
    );
}

/// The percentiles say how a deployment answers lately: a slow spell ten minutes ago is gone.
#[test]
fn latency_percentiles_forget_what_is_no_longer_recent() {
    let h = Health::default();
    let minute = 60_000;
    for _ in 0..50 {
        h.answered_at(Duration::from_millis(1_800), 3 * minute);
    }
    assert_eq!(h.snapshot(4 * minute).p99_ms, Some(2_000));
    // Five minutes on, the spell is still in the window before.
    for _ in 0..50 {
        h.answered_at(Duration::from_millis(40), 6 * minute);
    }
    assert!(h.snapshot(6 * minute).p99_ms.unwrap() > 1_500);
    // Ten minutes on, only what came since.
    for _ in 0..50 {
        h.answered_at(Duration::from_millis(40), 11 * minute);
    }
    assert_eq!(h.snapshot(11 * minute).p99_ms, Some(50));
    // And nothing at all after a long silence.
    assert_eq!(h.snapshot(30 * minute).p99_ms, None);
}

#[test]
fn the_highest_price_a_request_could_meet_includes_every_reachable_fallback() {
    let config = load(
        r#"
server: {master_key: k}
providers:
  - {name: a, kind: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
models:
  - alias: cheap
    deployments: [{provider: a, model: m1, price: {input_per_mtok: 1, output_per_mtok: 2}}]
    fallbacks: [dear]
  - alias: dear
    deployments:
      - provider: a
        model: m2
        price:
          input_per_mtok: 5
          output_per_mtok: 1
          cache_read_per_mtok: 0.5
          cache_write_1h_per_mtok: 10
          long_context: {above_input_tokens: 100000, input_per_mtok: 10, output_per_mtok: 1.5}
    fallbacks: [cheap]
  - alias: unpriced
    deployments: [{provider: a, model: m3}]
"#,
        &|_| None,
    )
    .unwrap();
    let t = RoutingTable::build(&config, None, &Default::default()).unwrap();
    // Field by field (pico-dollars per token): the dearest input and the dearest output, even
    // from different aliases.
    let cheap = t.max_price("cheap").unwrap();
    assert_eq!(
        (cheap.rates.input, cheap.rates.output),
        (5_000_000, 2_000_000)
    );
    let dear = t.max_price("dear").unwrap();
    assert_eq!(
        (dear.rates.input, dear.rates.output),
        (5_000_000, 2_000_000)
    );
    // Cache rates given apply; those left out cost what input costs (five-minute writes here).
    assert_eq!(
        (
            dear.rates.cache_read,
            dear.rates.cache_write,
            dear.rates.cache_write_1h
        ),
        (1_000_000, 5_000_000, 10_000_000)
    );
    // Past the tier, its rates, each at least the other deployment's.
    let long = dear.rates_for(100_001);
    assert_eq!(
        (long.input, long.output, long.cache_read),
        (10_000_000, 2_000_000, 10_000_000)
    );
    assert_eq!(dear.rates_for(100_000), dear.rates);
    assert!(t.max_price("unpriced").is_none());
    assert!(t.max_price("unknown").is_none());
}

#[test]
fn a_run_of_lost_hedge_races_cools_an_answer_breaks_it() {
    let t = table();
    let a = &t.route("main").unwrap().deployments[0];
    let cooldown = Duration::from_secs(10);
    for _ in 0..7 {
        assert_eq!(a.health.lost_race(cooldown, 1_000), None);
    }
    a.health.success(Duration::from_millis(5), 0);
    for _ in 0..7 {
        assert_eq!(a.health.lost_race(cooldown, 1_000), None);
    }
    assert!(!a.health.snapshot(1_000).cooling);
    assert_eq!(a.health.lost_race(cooldown, 1_000), Some(11_000));
    assert!(a.health.snapshot(1_000).cooling);
}

/// A request without `max_tokens` is costed with a typical answer's output, not none: a
/// deployment cheap to read and dear to write is not the cheapest for it, nor under a ceiling
/// its answer then breaks.
#[test]
fn an_unlimited_answer_is_costed_with_its_output() {
    let config = load(
        r#"
server: {master_key: k}
providers:
  - {name: a, kind: openai_compatible, base_url: "http://127.0.0.1:9/v1"}
models:
  - alias: cost
    strategy: lowest_cost
    deployments:
      - {provider: a, model: mid, price: {input_per_mtok: 3, output_per_mtok: 15}}
      - {provider: a, model: even, price: {input_per_mtok: 1, output_per_mtok: 2}}
      - {provider: a, model: dear-output, price: {input_per_mtok: 0.5, output_per_mtok: 40}}
"#,
        &|_| None,
    )
    .unwrap();
    let t = RoutingTable::build(&config, None, &Default::default()).unwrap();
    let facts = |max_cost: Option<f64>| RequestFacts {
        model: "cost".into(),
        input_tokens: 14,
        max_cost,
        ..RequestFacts::default()
    };
    let mut planner = t.planner(facts(None), 0, &mut |_| 0).unwrap();
    assert_eq!(
        &*planner.next(None, &mut |_| 0).unwrap().deployment.id,
        "a/even"
    );
    // Under a ceiling the dear-output deployment's answer would break, it is skipped.
    let planner = t.planner(facts(Some(0.001)), 0, &mut |_| 0).unwrap();
    assert!(
        planner
            .decision
            .skipped
            .iter()
            .any(|s| &*s.deployment == "a/dear-output"),
        "{:?}",
        planner.decision.skipped
    );
}

/// A probe the provider answers with a refusal of the request itself (a 400, a context limit)
/// found the deployment up: its cooldown ends, rather than stand for another round.
#[test]
fn a_deployment_that_answered_a_refusal_is_up() {
    let t = table();
    let a = &t.route("main").unwrap().deployments[0];
    a.health
        .failure(1, Duration::from_secs(10), None, false, 1_000);
    assert!(a.health.snapshot(2_000).cooling);
    // The probe is claimed (its cooldown re-armed), then answered with a 400.
    let facts = RequestFacts {
        model: "main".into(),
        ..RequestFacts::default()
    };
    let mut probing = t.planner(facts, 11_001, &mut |_| 0).unwrap();
    assert_eq!(
        &*probing.next(None, &mut |_| 0).unwrap().deployment.id,
        "a/m1"
    );
    assert!(a.health.snapshot(11_002).cooling);
    a.health.answered();
    drop(probing);
    assert!(!a.health.snapshot(11_002).cooling);
    assert_eq!(a.health.snapshot(11_002).consecutive_failures, 1);
}

/// The last minute's requests are counted over the last sixty seconds, not since the minute
/// turned.
#[test]
fn requests_this_minute_slide_over_the_minutes_turn() {
    let h = Health::default();
    for i in 0..60 {
        drop(h.start(60_000 + i * 1_000));
    }
    assert_eq!(h.snapshot(119_999).requests_this_minute, 60);
    // A quarter into the next minute, three quarters of the last one are still covered.
    assert_eq!(h.snapshot(135_000).requests_this_minute, 45);
    drop(h.start(135_000));
    assert_eq!(h.snapshot(135_000).requests_this_minute, 46);
    // Two minutes later, nothing.
    assert_eq!(h.snapshot(250_000).requests_this_minute, 0);
}
