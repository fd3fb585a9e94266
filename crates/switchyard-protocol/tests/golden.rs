//! Golden translations and hostile-input fuzzing over one fixture corpus.
//!
//! `tests/fixtures/requests/<ingress>/*.json` are client bodies in an ingress dialect; each is
//! decoded and built into the upstream request of every provider dialect, and the request
//! (method, URL, headers with the key redacted, pretty JSON body) is compared with
//! `tests/fixtures/snapshots/<ingress>/<case>.<provider>.json`. `tests/fixtures/replies/<provider>/`
//! holds recorded provider answers: `*.json` bodies are parsed and re-encoded for every ingress
//! dialect (`snapshots/replies/<provider>/<case>.<ingress>.json`), `*.sse` streams are decoded
//! and re-encoded through every ingress stream encoder (`snapshots/streams/<provider>/`, one
//! `.sse` per ingress plus the canonical events).
//!
//! A missing snapshot is written, and so is every snapshot when `UPDATE_GOLDENS=1` (each write
//! is reported on stderr); review the written files before committing them.
//!
//! The second test mutates every fixture (bit flips, deletions, insertions, duplicated spans,
//! truncation, and whole JSON values swapped for edge cases) and feeds each mutant to the
//! decoders of its kind, every sixteenth to all of them, decoded results going on to the
//! builders and encoders: bad input must give an error, never a panic. The default number of
//! mutants per fixture keeps a debug run to a few seconds; `FUZZ_ITERATIONS=N` runs longer and
//! `FUZZ_SEED=N` picks other mutants.

// The whole file is test code (helpers included): failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Map, Value, json};
use switchyard_protocol::DialectId;
use switchyard_protocol::canonical::{EncodingFormat, ErrorClass, StreamEvent, UpstreamErrorInfo};
use switchyard_protocol::dialect::{
    EncodeCtx, IngressDialect, OpenAiQuirks, ProviderDialect, ProviderKind, StreamDecoder, Target,
    ingress_dialect, provider_dialect,
};
use switchyard_protocol::error::{ClientError, DecodeError, ErrorKind};
use switchyard_protocol::openai;

const API_KEY: &str = "sk-golden-secret-0123456789";
const REDACTED: &str = "<redacted>";

/// Found through the package directory cargo names when it runs the test (a test binary reused
/// from a checkout at another path still reads this checkout's fixtures).
fn fixtures() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from)
        .join("tests/fixtures")
}

/// One provider dialect with the fixed deployment every snapshot is built for.
struct Provider {
    name: &'static str,
    dialect: Box<dyn ProviderDialect>,
    target: Target<'static>,
}

fn providers() -> Vec<Provider> {
    let target = |base_url, model, api_version| Target {
        base_url,
        model,
        api_key: Some(API_KEY),
        api_version,
    };
    vec![
        Provider {
            name: "openai",
            dialect: provider_dialect(&ProviderKind::OpenAi),
            target: target("https://api.openai.com/v1", "gpt-4o-2024-08-06", None),
        },
        Provider {
            name: "openai_compatible",
            dialect: provider_dialect(&ProviderKind::OpenAiCompatible(OpenAiQuirks::compatible())),
            target: target("http://localhost:8000/v1", "qwen2.5-7b-instruct", None),
        },
        Provider {
            name: "azure",
            dialect: provider_dialect(&ProviderKind::Azure),
            target: target(
                "https://example-resource.openai.azure.com",
                "gpt-4o-prod",
                Some("2025-04-01-preview"),
            ),
        },
        Provider {
            name: "anthropic",
            dialect: provider_dialect(&ProviderKind::Anthropic),
            target: target("https://api.anthropic.com", "claude-sonnet-4-5", None),
        },
        Provider {
            name: "gemini",
            dialect: provider_dialect(&ProviderKind::Gemini),
            target: target(
                "https://generativelanguage.googleapis.com/v1beta",
                "gemini-2.5-flash",
                None,
            ),
        },
    ]
}

/// The dialects clients speak, by fixture folder name.
fn ingresses() -> Vec<(&'static str, Box<dyn IngressDialect>)> {
    [
        ("openai", DialectId::OpenAi),
        ("anthropic", DialectId::Anthropic),
    ]
    .into_iter()
    .filter_map(|(name, id)| ingress_dialect(id).map(|d| (name, d)))
    .collect()
}

/// The provider dialect that reads the recorded replies of a fixture folder.
fn reply_dialect(folder: &str) -> Box<dyn ProviderDialect> {
    match folder {
        "openai" => provider_dialect(&ProviderKind::OpenAi),
        "anthropic" => provider_dialect(&ProviderKind::Anthropic),
        "gemini" => provider_dialect(&ProviderKind::Gemini),
        other => panic!("no provider dialect for fixture folder '{other}'"),
    }
}

fn ctx() -> EncodeCtx {
    EncodeCtx {
        prompt_estimate: 0,
        id: "golden0001".into(),
        model: "my-alias".into(),
        created: 1_754_400_000,
        include_usage: true,
        echo: None,
        keep: None,
    }
}

/// Files of `dir` ending in `.ext`, sorted by name, as (case name, path).
fn cases(dir: &Path, ext: &str) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_owned(), p)))
        .collect();
    out.sort();
    out
}

/// Object keys in sorted order whatever `serde_json`'s map features, so snapshots are stable.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let ordered: BTreeMap<String, Value> =
                map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(ordered.into_iter().collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

fn pretty(value: Value) -> String {
    let mut text = serde_json::to_string_pretty(&sorted(value)).unwrap();
    text.push('\n');
    text
}

/// A body as JSON when it is JSON, else as text.
fn body_value(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Compares `actual` with the snapshot at `path`, or writes it when it is missing or
/// `UPDATE_GOLDENS=1`. Mismatches are collected so one run reports all of them.
fn check(path: &Path, actual: &str, failures: &mut Vec<String>) {
    let update = std::env::var("UPDATE_GOLDENS").is_ok_and(|v| v == "1");
    let expected = std::fs::read_to_string(path).ok();
    if update || expected.is_none() {
        if expected.as_deref() != Some(actual) {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, actual).unwrap();
            // Straight to the process's stderr: the test harness captures `eprintln!`.
            let _ = writeln!(std::io::stderr(), "golden: wrote {}", path.display());
        }
        return;
    }
    let expected = expected.unwrap_or_default().replace("\r\n", "\n");
    if expected == actual {
        return;
    }
    let mut expected_lines = expected.lines();
    let mut actual_lines = actual.lines();
    let mut line = 1;
    loop {
        match (expected_lines.next(), actual_lines.next()) {
            (Some(e), Some(a)) if e == a => line += 1,
            (None, None) => {
                failures.push(format!("{} differs in line endings", path.display()));
                return;
            }
            (e, a) => {
                failures.push(format!(
                    "{} differs at line {line}:\n  expected: {}\n  actual:   {}",
                    path.display(),
                    e.unwrap_or("<end of file>"),
                    a.unwrap_or("<end of file>"),
                ));
                return;
            }
        }
    }
}

/// The upstream request as a snapshot: method, URL, headers (key redacted) and body.
fn request_snapshot(request: &http::Request<Vec<u8>>) -> Value {
    let url = request.uri().to_string();
    let body = String::from_utf8_lossy(request.body()).into_owned();
    assert!(
        !url.contains(API_KEY) && !body.contains(API_KEY),
        "the API key leaked into the URL or body"
    );
    let headers: Map<String, Value> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = value
                .to_str()
                .unwrap_or("<binary>")
                .replace(API_KEY, REDACTED);
            (name.as_str().to_owned(), Value::String(value))
        })
        .collect();
    // The builders write bodies straight to bytes: a key written twice would be lost in the
    // parsed snapshot (the last one wins), so it is checked on the bytes.
    if let Err(e) = serde_json::from_slice::<UniqueKeys>(request.body()) {
        panic!(
            "a built request body is not JSON with unique keys ({e}): {}",
            String::from_utf8_lossy(request.body())
        );
    }
    json!({
        "method": request.method().as_str(),
        "url": url,
        "headers": headers,
        "body": body_value(request.body()),
    })
}

/// Any JSON value, accepted only when no object in it has a key twice.
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
                Ok(UniqueKeys)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<UniqueKeys, A::Error> {
                while seq.next_element::<UniqueKeys>()?.is_some() {}
                Ok(UniqueKeys)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<UniqueKeys>()?;
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
                    }
                }
                Ok(UniqueKeys)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

fn decode_error_snapshot(error: &DecodeError) -> Value {
    json!({"error": {"message": error.message, "param": error.param}})
}

/// What the gateway would tell the client about an upstream failure inside a stream; a fixed
/// stand-in for the gateway's own mapping, enough to exercise each encoder's error frame.
fn client_error(info: &UpstreamErrorInfo) -> ClientError {
    let (status, kind, code) = match info.class {
        ErrorClass::Overloaded => (503, ErrorKind::Overloaded, "upstream_overloaded"),
        ErrorClass::RateLimited => (429, ErrorKind::RateLimit, "upstream_rate_limited"),
        _ => (502, ErrorKind::Upstream, "upstream_error"),
    };
    ClientError {
        status,
        kind,
        code,
        message: info.message.clone(),
        param: None,
    }
}

/// Decodes a whole recorded stream: its events and how it ended.
fn decode_stream(
    decoder: &mut dyn StreamDecoder,
    chunks: &[&[u8]],
) -> (Vec<StreamEvent>, Result<(), UpstreamErrorInfo>) {
    let mut events = Vec::new();
    for chunk in chunks {
        if let Err(e) = decoder.push(chunk, &mut events) {
            return (events, Err(e));
        }
    }
    let end = decoder.finish(&mut events);
    (events, end)
}

/// Re-encodes decoded events for a client as the relay does: an in-band error or a failed
/// decode ends the stream with the encoder's error frame instead of its terminal frames.
fn encode_stream(
    ingress: &dyn IngressDialect,
    events: &[StreamEvent],
    end: &Result<(), UpstreamErrorInfo>,
) -> Vec<u8> {
    let mut encoder = ingress.stream_encoder(ctx());
    let mut out = Vec::new();
    for event in events {
        if let StreamEvent::Error(info) = event {
            encoder.error(&client_error(info), &mut out);
            return out;
        }
        encoder.event(event, &mut out);
    }
    match end {
        Ok(()) => encoder.finish(&mut out),
        Err(info) => encoder.error(&client_error(info), &mut out),
    }
    out
}

#[test]
fn goldens() {
    let root = fixtures();
    let snapshots = root.join("snapshots");
    let providers = providers();
    let ingresses = ingresses();
    let mut failures = Vec::new();
    let mut checked = 0;

    for (ingress_name, ingress) in &ingresses {
        for (case, path) in cases(&root.join("requests").join(ingress_name), "json") {
            let body = Bytes::from(std::fs::read(&path).unwrap());
            let request = match ingress.decode_chat(&body) {
                Ok(request) => request,
                Err(e) => {
                    failures.push(format!("{} does not decode: {e}", path.display()));
                    continue;
                }
            };
            for provider in &providers {
                let snapshot = match provider.dialect.build_chat(&request, &provider.target) {
                    Ok(built) => request_snapshot(&built.map(|body| body.into_vec())),
                    Err(e) => decode_error_snapshot(&e),
                };
                let file = snapshots
                    .join(ingress_name)
                    .join(format!("{case}.{}.json", provider.name));
                check(&file, &pretty(snapshot), &mut failures);
                checked += 1;
            }
        }
    }

    for folder in ["openai", "anthropic", "gemini"] {
        let dialect = reply_dialect(folder);
        let dir = root.join("replies").join(folder);
        for (case, path) in cases(&dir, "json") {
            let body = std::fs::read(&path).unwrap();
            let reply = match dialect.parse_chat(&body) {
                Ok(reply) => reply,
                Err(e) => {
                    failures.push(format!("{} does not parse: {}", path.display(), e.message));
                    continue;
                }
            };
            for (ingress_name, ingress) in &ingresses {
                let encoded = ingress.encode_chat(&reply, &ctx());
                let file = snapshots
                    .join("replies")
                    .join(folder)
                    .join(format!("{case}.{ingress_name}.json"));
                check(&file, &pretty(body_value(&encoded)), &mut failures);
                checked += 1;
            }
        }
        for (case, path) in cases(&dir, "sse") {
            let body = std::fs::read(&path).unwrap();
            let (events, end) = decode_stream(dialect.stream_decoder().as_mut(), &[&body]);
            // Decoding must not depend on where the network split the body.
            for split in 0..=body.len() {
                let (again, again_end) = decode_stream(
                    dialect.stream_decoder().as_mut(),
                    &[&body[..split], &body[split..]],
                );
                if again != events || again_end != end {
                    failures.push(format!(
                        "{} decodes differently split at {split}",
                        path.display()
                    ));
                    break;
                }
            }
            let mut listing = String::new();
            for event in &events {
                writeln!(listing, "{event:?}").unwrap();
            }
            match &end {
                Ok(()) => listing.push_str("end: complete\n"),
                Err(e) => writeln!(listing, "end: {:?}", e).unwrap(),
            }
            let dir = snapshots.join("streams").join(folder);
            check(
                &dir.join(format!("{case}.events.txt")),
                &listing,
                &mut failures,
            );
            checked += 1;
            for (ingress_name, ingress) in &ingresses {
                let encoded = encode_stream(ingress.as_ref(), &events, &end);
                let text = String::from_utf8(encoded).unwrap();
                check(
                    &dir.join(format!("{case}.{ingress_name}.sse")),
                    &text,
                    &mut failures,
                );
                checked += 1;
            }
        }
    }

    assert!(checked > 0, "no fixtures found under {}", root.display());
    assert!(
        failures.is_empty(),
        "{} of {checked} goldens differ (rerun with UPDATE_GOLDENS=1 to accept, then review):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile input

/// Mutations per fixture unless `FUZZ_ITERATIONS` says otherwise.
const FUZZ_ITERATIONS: usize = 500;

/// xorshift64*: small, fast and deterministic; plenty for choosing mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// FNV-1a, to give every fixture its own fixed seed.
fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Byte strings that tend to reach unusual paths: JSON punctuation, escapes, broken UTF-8,
/// SSE line ends and field names, numbers at the edges of every integer type.
#[rustfmt::skip]
const TOKENS: &[&[u8]] = &[
    b"{", b"}", b"[", b"]", b"\"", b":", b",", b"\\", b"\\u0000", b"\\ud800", b"null", b"true",
    b"false", b"-", b"0", b"-1", b"1e999", b"-1e999", b"1.5", b"4294967295", b"4294967296",
    b"18446744073709551615", b"18446744073709551616", b"-9223372036854775808",
    b"9223372036854775807", b"\n", b"\r", b"\r\n", b"\n\n", b"data: ", b"event: ", b":",
    b"data: [DONE]\n\n", b"\xEF\xBB\xBF", b"\xFF", b"\xC3", b"\xE2\x98", b"\xF0\x9F\x98\x80",
    b"\"type\"", b"\"index\"", b"\"error\"", b"\"role\"", b"\"content\"", b"\"tool_calls\"",
];

/// Replacement values for structure-aware mutation.
fn interesting_value(rng: &mut Rng) -> Value {
    match rng.below(16) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(u64::MAX),
        4 => json!(i64::MIN),
        5 => json!(u32::MAX),
        6 => json!(f64::MAX),
        7 => json!(0.5),
        8 => json!(""),
        9 => json!("\u{0}\u{202e}é☀️"),
        10 => json!([]),
        11 => json!({}),
        12 => json!([null, 1, "x", {}]),
        13 => json!({"type": "text"}),
        14 => json!(4_294_967_296_u64),
        _ => json!("x".repeat(rng.below(300))),
    }
}

/// Replaces one random node of `value` (visited in pre-order) with an interesting value.
fn mutate_value(value: &mut Value, rng: &mut Rng) {
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }
    fn nth<'a>(v: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
        if *n == 0 {
            return Some(v);
        }
        *n -= 1;
        match v {
            Value::Array(a) => a.iter_mut().find_map(|c| nth(c, n)),
            Value::Object(o) => o.values_mut().find_map(|c| nth(c, n)),
            _ => None,
        }
    }
    let mut n = rng.below(count(value));
    if let Some(node) = nth(value, &mut n) {
        *node = match rng.below(4) {
            // Duplicate a sibling-ish shape: wrap the node, which nests it one level deeper.
            0 => json!([node.take()]),
            _ => interesting_value(rng),
        };
    }
}

/// Structure-aware mutation: a JSON body, or one `data:` line of a stream, with one node
/// replaced. Inputs that are not JSON are left alone.
fn mutate_json(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    if let Ok(mut value) = serde_json::from_slice::<Value>(input) {
        mutate_value(&mut value, rng);
        return serde_json::to_vec(&value).unwrap();
    }
    let text = String::from_utf8_lossy(input);
    let lines: Vec<&str> = text.split('\n').collect();
    let data_lines: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("data: {"))
        .collect();
    if data_lines.is_empty() {
        return input.to_vec();
    }
    let target = *rng.pick(&data_lines);
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let parsed = (i == target)
            .then(|| serde_json::from_str::<Value>(line[6..].trim_end_matches('\r')).ok())
            .flatten();
        match parsed {
            Some(mut value) => {
                mutate_value(&mut value, rng);
                out.push_str("data: ");
                out.push_str(&value.to_string());
                if line.ends_with('\r') {
                    out.push('\r');
                }
            }
            None => out.push_str(line),
        }
    }
    out.into_bytes()
}

/// One to three byte-level or structural mutations of `input`.
fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(3) {
        let len = out.len();
        let at = rng.below(len + 1);
        let span = (1 + rng.below(32)).min(len - at.min(len));
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                out.drain(at..at + span);
            }
            2 => {
                let token = *rng.pick(TOKENS);
                out.splice(at..at, token.iter().copied());
            }
            3 if len > 0 => {
                let from = rng.below(len);
                let piece: Vec<u8> = out[from..(from + 1 + rng.below(64)).min(len)].to_vec();
                let to = rng.below(len + 1);
                out.splice(to..to, piece);
            }
            4 => out.truncate(at),
            5 => {
                let byte = rng.next() as u8;
                out.splice(at..at, std::iter::repeat_n(byte, 1 + rng.below(4)));
            }
            _ => out = mutate_json(&out, rng),
        }
    }
    out
}

/// Inputs no fixture mutation reaches in a few thousand tries: deep nesting and long runs.
fn hostile_classics() -> Vec<Vec<u8>> {
    let deep_array = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000));
    let mut nested_result = String::from("\"x\"");
    for _ in 0..120 {
        nested_result = format!(
            "[{{\"type\":\"tool_result\",\"tool_use_id\":\"t\",\"content\":{nested_result}}}]"
        );
    }
    let anthropic_nested = format!(
        "{{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{{\"role\":\"user\",\"content\":{nested_result}}}]}}"
    );
    let mut nested_parts = String::from("\"x\"");
    for _ in 0..120 {
        nested_parts = format!("[{{\"type\":\"text\",\"text\":{nested_parts}}}]");
    }
    let openai_nested = format!(
        "{{\"model\":\"m\",\"messages\":[{{\"role\":\"user\",\"content\":{nested_parts}}}]}}"
    );
    vec![
        Vec::new(),
        b"\xEF\xBB\xBF".to_vec(),
        b"data: \n\n".repeat(100),
        format!("data: {deep_array}\n\n").into_bytes(),
        deep_array.into_bytes(),
        deep_object.into_bytes(),
        anthropic_nested.into_bytes(),
        openai_nested.into_bytes(),
        "\r".repeat(10_000).into_bytes(),
        br#"{"usageMetadata":{"promptTokenCount":18446744073709551615,"toolUsePromptTokenCount":18446744073709551615,"candidatesTokenCount":18446744073709551615,"thoughtsTokenCount":18446744073709551615},"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"STOP"}]}"#.to_vec(),
        br#"{"id":"m","type":"message","content":[],"usage":{"input_tokens":18446744073709551615,"cache_read_input_tokens":18446744073709551615,"cache_creation_input_tokens":1,"output_tokens":18446744073709551615}}"#.to_vec(),
        br#"{"choices":[{"message":{"content":"x"},"finish_reason":"stop"}],"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":18446744073709551615}}"#.to_vec(),
        br#"{"error":{"code":429,"message":"slow down","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1e300s"}]}}"#.to_vec(),
    ]
}

fn assert_decode_error(error: &DecodeError, what: &str) {
    if let Some(param) = &error.param {
        assert!(
            !error.message.is_empty() && !param.is_empty(),
            "{what}: a decode error naming '{param}' has an empty message or path"
        );
    }
}

fn assert_upstream_error(error: &UpstreamErrorInfo, what: &str) {
    assert!(
        !error.message.is_empty(),
        "{what}: an upstream error has no message"
    );
    // The gateway turns this into a `Duration`, which panics on bad floats.
    if let Some(secs) = error.retry_after_secs {
        assert!(
            std::time::Duration::try_from_secs_f64(secs).is_ok(),
            "{what}: retry-after of {secs} seconds is not a delay"
        );
    }
}

/// What a fixture is, and so which decoders its mutants are aimed at first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A client body (`requests/`).
    Request,
    /// A provider reply or error body (`replies/*.json`).
    Reply,
    /// A provider stream (`replies/*.sse`).
    Stream,
}

/// Every how many mutants a fixture's mutant is also fed to the decoders of the other kinds.
const CROSS_FEED: usize = 16;

/// The dialect objects the fuzz drives, built once.
struct Targets {
    ingresses: Vec<(&'static str, Box<dyn IngressDialect>)>,
    providers: Vec<Provider>,
    headers: Vec<HeaderMap>,
}

impl Targets {
    fn new() -> Self {
        let mut headers = vec![HeaderMap::new()];
        for (name, value) in [
            ("retry-after", "3"),
            ("retry-after", "-1"),
            ("retry-after", "1e400"),
            ("retry-after", "NaN"),
            ("retry-after", "1e300"),
            ("retry-after-ms", "-5"),
            ("retry-after-ms", "NaN"),
            ("retry-after-ms", "inf"),
            ("retry-after-ms", "1e400"),
        ] {
            let mut map = HeaderMap::new();
            map.insert(name, value.parse().unwrap());
            headers.push(map);
        }
        Self {
            ingresses: ingresses(),
            providers: providers(),
            headers,
        }
    }

    /// Feeds `input` to the decoders of `kinds`, and whatever decodes to the matching encoders.
    fn run(&self, input: &[u8], kinds: &[Kind], rng: &mut Rng) {
        for kind in kinds {
            match kind {
                Kind::Request => self.requests(input),
                Kind::Reply => self.replies(input, rng),
                Kind::Stream => self.streams(input, rng),
            }
        }
    }

    /// Client decoders; a decoded request is built for every provider.
    fn requests(&self, input: &[u8]) {
        for (name, ingress) in &self.ingresses {
            match ingress.decode_chat(&Bytes::copy_from_slice(input)) {
                Err(e) => assert_decode_error(&e, name),
                Ok(request) => {
                    for provider in &self.providers {
                        if let Err(e) = provider.dialect.build_chat(&request, &provider.target) {
                            assert_decode_error(&e, provider.name);
                        }
                    }
                }
            }
        }
        match openai::decode_embeddings(input) {
            Err(e) => assert_decode_error(&e, "embeddings"),
            Ok(request) => {
                for provider in &self.providers {
                    if let Err(e) = provider
                        .dialect
                        .build_embeddings(&request, &provider.target)
                    {
                        assert_decode_error(&e, provider.name);
                    }
                }
            }
        }
    }

    /// Reply and error-body parsers; a parsed reply is encoded for every client dialect.
    /// `openai_compatible` shares every parser with `openai`, so it is skipped.
    fn replies(&self, input: &[u8], rng: &mut Rng) {
        for provider in self
            .providers
            .iter()
            .filter(|p| p.name != "openai_compatible")
        {
            match provider.dialect.parse_chat(input) {
                Err(e) => assert_upstream_error(&e, provider.name),
                Ok(reply) => {
                    for (_, ingress) in &self.ingresses {
                        ingress.encode_chat(&reply, &ctx());
                    }
                }
            }
            match provider.dialect.parse_embeddings(input) {
                Err(e) => assert_upstream_error(&e, provider.name),
                Ok(reply) => {
                    for format in [EncodingFormat::Float, EncodingFormat::Base64] {
                        openai::encode_embeddings(&reply, "m", format);
                    }
                }
            }
            let status = *rng.pick(&[0, 200, 400, 401, 404, 408, 429, 500, 503, 529, 599, 65535]);
            let headers = rng.pick(&self.headers);
            let info = provider.dialect.classify_error(status, headers, input);
            assert_upstream_error(&info, provider.name);
        }
    }

    /// Stream decoders over a random chunking; the events are re-encoded for every client
    /// dialect, as the relay would.
    fn streams(&self, input: &[u8], rng: &mut Rng) {
        for provider in self
            .providers
            .iter()
            .filter(|p| matches!(p.name, "openai" | "anthropic" | "gemini"))
        {
            let mut decoder = provider.dialect.stream_decoder();
            let mut events = Vec::new();
            let mut rest = input;
            let mut end = Ok(());
            // Mostly network-sized pieces, now and then a tiny one that splits a line, a
            // UTF-8 sequence or a CRLF.
            while !rest.is_empty() && end.is_ok() {
                let size = match rng.below(8) {
                    0 => 1 + rng.below(3),
                    _ => 1 + rng.below(512),
                }
                .min(rest.len());
                end = decoder.push(&rest[..size], &mut events);
                rest = &rest[size..];
            }
            if end.is_ok() {
                end = decoder.finish(&mut events);
            }
            if let Err(e) = &end {
                assert_upstream_error(e, provider.name);
            }
            if !events.is_empty() {
                for (_, ingress) in &self.ingresses {
                    encode_stream(ingress.as_ref(), &events, &end);
                }
            }
        }
    }
}

/// Shows a failing input in a form that can be pasted back into a test.
fn describe(input: &[u8]) -> String {
    let text = String::from_utf8_lossy(input);
    let shown: String = text.chars().take(2_000).collect();
    format!("{} bytes: {shown:?}", input.len())
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn mutated_inputs_never_panic() {
    let root = fixtures();
    let mut seeds: Vec<(String, Kind, Vec<u8>)> = Vec::new();
    for kind in ["requests", "replies"] {
        let Ok(folders) = std::fs::read_dir(root.join(kind)) else {
            continue;
        };
        let mut folders: Vec<PathBuf> = folders.filter_map(Result::ok).map(|e| e.path()).collect();
        folders.sort();
        for folder in folders {
            let folder_name = folder.file_name().unwrap_or_default().to_string_lossy();
            for ext in ["json", "sse"] {
                let aim = match (kind, ext) {
                    ("requests", _) => Kind::Request,
                    (_, "sse") => Kind::Stream,
                    _ => Kind::Reply,
                };
                for (case, path) in cases(&folder, ext) {
                    let name = format!("{kind}/{folder_name}/{case}.{ext}");
                    seeds.push((name, aim, std::fs::read(&path).unwrap()));
                }
            }
        }
    }
    assert!(!seeds.is_empty(), "no fixtures under {}", root.display());
    let iterations = env_number("FUZZ_ITERATIONS").unwrap_or(FUZZ_ITERATIONS);
    // A different `FUZZ_SEED` explores different mutants; the default keeps runs repeatable.
    let salt: u64 = env_number("FUZZ_SEED").unwrap_or(0);

    let all = [Kind::Request, Kind::Reply, Kind::Stream];
    let targets = Targets::new();
    let mut rng = Rng::new(7);
    for input in hostile_classics() {
        if catch_unwind(AssertUnwindSafe(|| targets.run(&input, &all, &mut rng))).is_err() {
            panic!("a hostile input panicked: {}", describe(&input));
        }
    }
    for (name, aim, seed) in &seeds {
        let mut rng = Rng::new(seed_of(name) ^ salt);
        // The fixture itself first, then its mutants: every mutant reaches the decoders of its
        // own kind, and every few reach all of them.
        if catch_unwind(AssertUnwindSafe(|| targets.run(seed, &all, &mut rng))).is_err() {
            panic!("fixture {name} panicked unmutated");
        }
        for i in 0..iterations {
            let input = mutate(seed, &mut rng);
            let kinds = if i % CROSS_FEED == 0 {
                &all[..]
            } else {
                std::slice::from_ref(aim)
            };
            if catch_unwind(AssertUnwindSafe(|| targets.run(&input, kinds, &mut rng))).is_err() {
                panic!("mutant {i} of {name} panicked: {}", describe(&input));
            }
        }
    }
}
