use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "KEY" => Some("sk-from-env".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

#[test]
fn demo_config_loads() {
    let c = load(DEMO_CONFIG, &env).unwrap();
    assert!(c.uses_simulator());
    assert_eq!(c.models.len(), 5);
    assert_eq!(c.server.listen, "127.0.0.1:4000");
}

#[test]
fn interpolation_and_defaults() {
    let text = "server:\n  master_key: ${KEY}\n  listen: ${LISTEN:-127.0.0.1:0}\nproviders:\n  - name: o\n    kind: openai\n    api_key: $${KEY}-${EMPTY:-x}\nmodels:\n  - alias: a\n    deployments: [{provider: o, model: m}]\n";
    let c = load(text, &env).unwrap();
    assert_eq!(
        c.server.master_key.as_ref().unwrap().expose(),
        "sk-from-env"
    );
    assert_eq!(c.server.listen, "127.0.0.1:0");
    assert_eq!(
        c.providers[0].api_key.as_ref().unwrap().expose(),
        "${KEY}-x"
    );
    assert_eq!(c.providers[0].base_url, "https://api.openai.com/v1");
    assert!(
        !format!("{c:?}").contains("sk-from-env"),
        "secrets must not appear in Debug output"
    );
}

#[test]
fn every_error_is_reported_with_its_path() {
    let text = r#"
server:
  master_key: ${MISSING}
  listn: x
providers:
  - name: o
    kind: openai
  - name: o
    kind: azure
  - name: c
    kind: openai_compatible
    base_url: ftp://x
  - name: bad
    kind: martian
models:
  - alias: a
    deployments: [{provider: nope, model: m, weight: 0}]
    fallbacks: [a, zz]
  - alias: b
    deployments: []
extra: 1
"#;
    let errors = load(text, &env).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    for expected in [
        "server.master_key",
        "server.listn",
        "providers[0].api_key",
        "providers[1].name",
        "providers[1].base_url",
        "providers[2].base_url",
        "providers[3].kind",
        "models[0].deployments[0].weight",
        "models[0].fallbacks[0]",
        "models[0].fallbacks[1]",
        "models[1].deployments",
        "extra",
    ] {
        assert!(
            paths.contains(&expected),
            "missing {expected} in {errors:#?}"
        );
    }
    assert!(errors.iter().all(|e| !e.message.contains("sk-from-env")));
}

#[test]
fn a_variable_set_but_empty_is_told_from_one_not_set() {
    let text = |var: &str| {
        format!(
            "server:\n  master_key: \"${{{var}}}\"\nproviders: [{{name: o, kind: simulator}}]\nmodels: [{{alias: a, deployments: [{{provider: o, model: m}}]}}]\n"
        )
    };
    let errors = load(&text("EMPTY"), &env).unwrap_err();
    assert!(errors[0].message.contains("EMPTY is empty"), "{errors:?}");
    let errors = load(&text("NOWHERE"), &env).unwrap_err();
    assert!(
        errors[0].message.contains("NOWHERE is not set"),
        "{errors:?}"
    );
}

#[test]
fn unknown_provider_is_named() {
    let text = "server: {master_key: k}\nproviders: [{name: o, kind: openai, api_key: k}]\nmodels: [{alias: a, deployments: [{provider: nope, model: m}]}]\n";
    let errors = load(text, &env).unwrap_err();
    assert_eq!(errors[0].path, "models[0].deployments[0].provider");
}

/// YAML 1.1's yes/no words are words: `off` as the docs write it, `no` as Norway's code.
#[test]
fn off_and_no_are_words() {
    let text = "server: {master_key: k}\nproviders: [{name: o, kind: simulator}]\nmodels: [{alias: a, deployments: [{provider: o, model: m, region: no}]}]\ntelemetry: {content: off}\nguardrails: {pii: off, injection: off, schema: off}\n";
    let config = load(text, &env).unwrap();
    assert_eq!(
        config.models[0].deployments[0].attributes.region.as_deref(),
        Some("no")
    );
    let errors = load("server: {master_key: k}\nserver: {master_key: j}\n", &env).unwrap_err();
    assert!(errors[0].message.contains("duplicate"), "{errors:?}");
    assert!(
        !errors[0].message.contains("DuplicateKeyPolicy"),
        "{errors:?}"
    );
}

#[test]
fn the_semantic_cache_needs_a_model_that_embeds() {
    let text = "server: {master_key: k}\nproviders: [{name: c, kind: simulator, dialect: anthropic}]\nmodels: [{alias: claude, deployments: [{provider: c, model: claude-x}]}]\ncache: {semantic: {model: claude}}\n";
    let errors = load(text, &env).unwrap_err();
    assert_eq!(errors[0].path, "cache.semantic.model", "{errors:?}");
    assert!(errors[0].message.contains("cannot embed"), "{errors:?}");
}

#[test]
fn a_bare_cache_section_is_the_cache_with_its_defaults() {
    let text = "server: {master_key: k}\nproviders: [{name: o, kind: simulator}]\nmodels: [{alias: a, deployments: [{provider: o, model: m}]}]\ncache:\n";
    assert!(load(text, &env).unwrap().cache.is_some());
}

#[test]
fn a_rules_weight_of_zero_is_refused() {
    let text = "server: {master_key: k}\nproviders: [{name: o, kind: simulator}]\nmodels: [{alias: a, deployments: [{provider: o, model: m1}, {provider: o, model: m2}]}]\nrouting:\n  rules: [{name: r, match: {model: a}, route: {weights: {o/m1: 1, o/m2: 0}}}]\n";
    let errors = load(text, &env).unwrap_err();
    assert_eq!(
        errors[0].path, "routing.rules[0].route.weights.o/m2",
        "{errors:?}"
    );
}

#[test]
fn secret_compare() {
    let s = Secret::new("abc".into());
    assert!(s.matches("abc"));
    assert!(!s.matches("abd"));
    assert!(!s.matches("ab"));
    assert!(!s.matches("abcd"));
    assert!(!s.matches(""));
}

#[test]
fn the_idle_timeout_defaults_to_75_seconds_and_zero_turns_it_off() {
    let text = |server: &str| {
        format!(
            "server:\n  master_key: k\n{server}providers:\n  - name: o\n    kind: openai\n    api_key: x\nmodels:\n  - alias: a\n    deployments: [{{provider: o, model: m}}]\n"
        )
    };
    let idle = |server: &str| load(&text(server), &env).unwrap().server.idle_timeout;
    assert_eq!(idle(""), Some(Duration::from_secs(75)));
    assert_eq!(idle("  idle_timeout: 5s\n"), Some(Duration::from_secs(5)));
    assert_eq!(idle("  idle_timeout: 0s\n"), None);
}

#[test]
fn background_threads_keep_the_serving_priority_unless_given_a_nice_value() {
    let text = |server: &str| {
        format!(
            "server:\n  master_key: k\n{server}providers:\n  - name: o\n    kind: openai\n    api_key: x\nmodels:\n  - alias: a\n    deployments: [{{provider: o, model: m}}]\n"
        )
    };
    let nice = |server: &str| load(&text(server), &env).map(|c| c.server.background_nice);
    assert_eq!(nice("").unwrap(), 0);
    assert_eq!(nice("  background_nice: 10\n").unwrap(), 10);
    assert_eq!(nice("  background_nice: 19\n").unwrap(), 19);
    let errors = nice("  background_nice: 20\n").unwrap_err();
    assert_eq!(errors[0].path, "server.background_nice", "{errors:#?}");
    assert!(nice("  background_nice: -1\n").is_err());
}

#[test]
fn browsers_of_any_origin_by_default_or_of_the_listed_ones() {
    let text = |server: &str| {
        format!(
            "server:\n  master_key: k\n{server}providers:\n  - name: o\n    kind: openai\n    api_key: x\nmodels:\n  - alias: a\n    deployments: [{{provider: o, model: m}}]\n"
        )
    };
    let cors = |server: &str| load(&text(server), &env).map(|c| c.server.cors);
    assert_eq!(cors("").unwrap(), CorsOrigins::Any);
    assert_eq!(cors("  cors_origins: ['*']\n").unwrap(), CorsOrigins::Any);
    assert_eq!(cors("  cors_origins: []\n").unwrap(), CorsOrigins::None);
    assert_eq!(
        cors("  cors_origins: [https://app.example.com, 'http://localhost:3000']\n").unwrap(),
        CorsOrigins::List(vec![
            http::HeaderValue::from_static("https://app.example.com"),
            http::HeaderValue::from_static("http://localhost:3000"),
        ])
    );
    let errors = cors(
        "  cors_origins: [https://app.example.com/, app.example.com, 'https://ok.example', 'http://a b']\n",
    )
    .unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "server.cors_origins[0]",
            "server.cors_origins[1]",
            "server.cors_origins[3]"
        ],
        "{errors:#?}"
    );
    let errors = cors("  cors_origins: ['*', https://app.example.com]\n").unwrap_err();
    assert_eq!(errors[0].path, "server.cors_origins", "{errors:#?}");
}

#[test]
fn a_price_with_a_misspelt_or_negative_figure_is_refused() {
    let with = |price: &str| {
        format!(
            "server: {{master_key: k}}\nproviders: [{{name: o, kind: openai, api_key: k}}]\nmodels: [{{alias: a, deployments: [{{provider: o, model: m, price: {price}}}]}}]\n"
        )
    };
    let errors = load(&with("{input_per_mtok: 1, cache_reads_per_mtok: 1}"), &env).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("cache_reads_per_mtok")),
        "{errors:#?}"
    );
    let errors = load(
        &with(
            "{input_per_mtok: 1, long_context: {above_input_tokens: 200000, output_per_mtok: -1}}",
        ),
        &env,
    )
    .unwrap_err();
    assert_eq!(errors[0].path, "models[0].deployments[0].price");
    assert!(load(
        &with("{input_per_mtok: 1, cache_write_1h_per_mtok: 2, long_context: {above_input_tokens: 200000, input_per_mtok: 2}}"),
        &env,
    )
    .is_ok());
}

#[test]
fn a_price_block_leaves_to_the_table_what_it_does_not_say() {
    use super::file::PriceFile;
    // Claude Sonnet 4.5 at a negotiated 20 % off: cache rates and the long-context tier follow.
    let price = PriceFile {
        input_per_mtok: 2.4,
        output_per_mtok: 12.0,
        ..PriceFile::default()
    }
    .price("claude-sonnet-4-5-20250929");
    let r = price.rates;
    assert_eq!(
        (
            r.input,
            r.output,
            r.cache_read,
            r.cache_write,
            r.cache_write_1h
        ),
        (2_400_000, 12_000_000, 240_000, 3_000_000, 4_800_000)
    );
    let long = price.rates_for(200_001);
    assert_eq!(
        (long.input, long.output, long.cache_read),
        (4_800_000, 18_000_000, 480_000)
    );
    // Given rates win; a model the table does not know has cache rates at input's.
    let own = PriceFile {
        input_per_mtok: 1.0,
        output_per_mtok: 2.0,
        cache_read_per_mtok: Some(0.5),
        ..PriceFile::default()
    };
    let r = own.price("claude-sonnet-4-5").rates;
    assert_eq!(
        (r.cache_read, r.cache_write, r.cache_write_1h),
        (500_000, 1_250_000, 2_000_000)
    );
    let r = own.price("in-house-model").rates;
    assert_eq!(
        (r.cache_read, r.cache_write, r.cache_write_1h),
        (500_000, 1_000_000, 1_000_000)
    );
    assert!(own.price("in-house-model").long_context.is_none());
}

#[test]
fn bedrock_signs_with_given_keys_a_profile_or_the_default_chain() {
    use crate::upstream::aws_credentials::AwsSource;
    let config = |aws: &str| {
        format!(
            "server: {{master_key: k}}\nproviders:\n  - name: b\n    kind: bedrock\n    region: eu-west-1\n{aws}models:\n  - alias: a\n    deployments: [{{provider: b, model: m}}]\n"
        )
    };
    let source = |aws: &str| {
        let c = load(&config(aws), &env).unwrap();
        c.providers[0].aws.as_ref().map(|a| a.source.clone())
    };
    assert_eq!(
        source("    aws: {access_key_id: AKID, secret_access_key: s}\n"),
        Some(AwsSource::Given)
    );
    assert_eq!(
        source("    aws: {profile: work}\n"),
        Some(AwsSource::Profile("work".into()))
    );
    assert_eq!(source(""), Some(AwsSource::Chain));
    assert_eq!(source("    aws: {}\n"), Some(AwsSource::Chain));
    // A Bedrock API key is sent as a bearer token, unsigned.
    assert_eq!(source("    api_key: bedrock-key\n"), None);
    let refused = |aws: &str| {
        load(&config(aws), &env)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(refused("    aws: {access_key_id: AKID}\n").contains("give both"));
    assert!(
        refused("    aws: {access_key_id: AKID, secret_access_key: s, profile: work}\n")
            .contains("not both")
    );
    assert!(refused("    api_key: k\n    aws: {profile: work}\n").contains("not both"));
}

#[test]
fn shared_state_takes_a_redis_url_and_a_prefix() {
    let with = |shared: &str| {
        load(
            &format!(
                "server: {{master_key: k}}\nproviders: [{{name: o, kind: openai, api_key: k}}]\nmodels: [{{alias: a, deployments: [{{provider: o, model: m}}]}}]\n{shared}"
            ),
            &env,
        )
    };
    assert!(with("").unwrap().shared.is_none());
    let shared = with("shared: {redis_url: \"redis://127.0.0.1:6379/0\"}\n")
        .unwrap()
        .shared
        .unwrap();
    assert_eq!(shared.prefix, "switchyard");
    let refused = with("shared: {redis_url: \"http://127.0.0.1:6379\"}\n").unwrap_err();
    assert_eq!(refused[0].path, "shared.redis_url");
    let refused = with("shared: {redis_url: \"redis://x\", perfix: y}\n").unwrap_err();
    assert_eq!(refused[0].path, "shared.perfix");
}

#[test]
fn the_response_cache_is_off_unless_configured() {
    let with = |cache: &str| {
        load(
            &format!(
                "server: {{master_key: k}}\nproviders: [{{name: o, kind: openai, api_key: k}}]\nmodels: [{{alias: a, deployments: [{{provider: o, model: m}}]}}]\n{cache}"
            ),
            &env,
        )
    };
    assert!(with("").unwrap().cache.is_none());
    let cache = with("cache: {}\n").unwrap().cache.unwrap();
    assert_eq!(cache.ttl, std::time::Duration::from_secs(600));
    assert_eq!(cache.max_bytes, 64 << 20);
    assert_eq!(with("cache: {ttl: 0s}\n").unwrap_err()[0].path, "cache");
    assert!(cache.semantic.is_none());
    let semantic = with("cache: {semantic: {model: a}}\n")
        .unwrap()
        .cache
        .unwrap()
        .semantic
        .unwrap();
    assert_eq!((semantic.threshold, semantic.max_entries), (0.95, 10_000));
    for (bad, path) in [
        ("{model: nope}", "cache.semantic.model"),
        ("{model: a, threshold: 0}", "cache.semantic.threshold"),
        ("{model: a, threshold: 1.5}", "cache.semantic.threshold"),
        ("{model: a, max_entries: 0}", "cache.semantic.max_entries"),
    ] {
        let errors = with(&format!("cache: {{semantic: {bad}}}\n")).unwrap_err();
        assert_eq!(errors[0].path, path, "{bad}");
    }
}
