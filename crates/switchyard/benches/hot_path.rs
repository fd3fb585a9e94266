//! Micro-benchmarks of the gateway's pure per-request work, each beside the naive alternative
//! it replaced or avoids, with allocation counts: virtual-key authentication (keyed hash + map
//! lookup vs a linear scan, and the lookup alone by foldhash vs SipHash), budget reservation in
//! the ledger (alone and under contention), and cost computation (integer nano-dollars vs
//! floating-point dollars), and the prompt token count (the compact vocabulary vs
//! `tiktoken-rs`'s own encoder, and a text counted lately), masking a record's prompt (and one
//! found clean lately), the record writer's own work on a batch, and storing a batch of request
//! records in the embedded SQLite store (the last three off the request path, but on the same
//! CPUs). Run with `cargo bench -p switchyard --bench hot_path`.

use std::collections::HashMap;
use std::sync::Arc;

use divan::{AllocProfiler, Bencher, black_box};
use switchyard::NameMap;
use switchyard::governance::ledger::{self, Ask, Ledger, Level};
use switchyard::governance::model::Limits;
use switchyard::governance::{constant_time_eq, key_hash};
use switchyard::pricing::Price;
use switchyard_protocol::canonical::Usage;

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

#[allow(unsafe_code)]
fn main() {
    // mimalloc sets up this thread's heap on its first call; done here, so that the first
    // allocator bench does not time it.
    // SAFETY: a block made and freed at once.
    unsafe { libmimalloc_sys::mi_free(libmimalloc_sys::mi_malloc(8)) };
    divan::main();
}

const HASH_SECRET: &[u8] = b"bench hashing secret, 32 bytes!!";

/// Stored keys: (hash of the secret, key id), as the gateway's snapshot holds them.
fn stored_keys(n: usize) -> (Vec<(String, String)>, String) {
    let keys: Vec<(String, String)> = (0..n)
        .map(|i| {
            let secret = format!("sk-sy-bench{i:034}");
            (key_hash(HASH_SECRET, &secret), format!("key_{i}"))
        })
        .collect();
    // The caller presents the last key created: the worst case of a scan.
    (keys, format!("sk-sy-bench{:034}", n - 1))
}

const KEY_COUNTS: &[usize] = &[10, 1_000, 100_000];

/// What the gateway does: HMAC-SHA-256 of the presented key, one map lookup, one constant-time
/// comparison of the hash found.
#[divan::bench(args = KEY_COUNTS)]
fn key_hash_and_map_lookup(bencher: Bencher, n: usize) {
    let (keys, presented) = stored_keys(n);
    let by_hash: NameMap<String, String> = keys.into_iter().collect();
    bencher.bench(|| {
        let hash = key_hash(HASH_SECRET, black_box(&presented));
        by_hash
            .get_key_value(&hash)
            .filter(|(stored, _)| constant_time_eq(stored.as_bytes(), hash.as_bytes()))
            .map(|(_, id)| id.len())
    });
}

/// The naive alternative: hash once, then compare against every stored key.
#[divan::bench(args = KEY_COUNTS)]
fn key_hash_and_linear_scan(bencher: Bencher, n: usize) {
    let (keys, presented) = stored_keys(n);
    bencher.bench(|| {
        let hash = key_hash(HASH_SECRET, black_box(&presented));
        keys.iter()
            .find(|(stored, _)| constant_time_eq(stored.as_bytes(), hash.as_bytes()))
            .map(|(_, id)| id.len())
    });
}

/// A key's hash (64 hex digits) looked up among 1,000 stored ones, the keyed hash left out: the
/// governance snapshot's `NameMap` (foldhash) against the standard library's map (SipHash) it
/// replaced. Aliases and entity ids are looked up the same way.
#[divan::bench(args = ["foldhash", "siphash"])]
fn key_hash_lookup_alone(bencher: Bencher, hasher: &str) {
    let (keys, presented) = stored_keys(1_000);
    let hash = key_hash(HASH_SECRET, &presented);
    if hasher == "foldhash" {
        let by_hash: NameMap<String, String> = keys.into_iter().collect();
        bencher.bench(|| by_hash.get(black_box(hash.as_str())).map(String::len));
    } else {
        let by_hash: HashMap<String, String> = keys.into_iter().collect();
        bencher.bench(|| by_hash.get(black_box(hash.as_str())).map(String::len));
    }
}

/// The keyed hash alone, from the hashing secret's prepared state (what the gateway does).
#[divan::bench]
fn key_hash_prepared(bencher: Bencher) {
    let hasher = switchyard::governance::KeyHasher::new(HASH_SECRET);
    bencher.bench(|| hasher.hash(black_box("sk-sy-0123456789abcdefghijABCDEFGHIJ0123")));
}

/// The keyed hash alone, the secret's padded blocks hashed anew each time (as before).
#[divan::bench]
fn key_hash_only(bencher: Bencher) {
    bencher.bench(|| {
        key_hash(
            HASH_SECRET,
            black_box("sk-sy-0123456789abcdefghijABCDEFGHIJ0123"),
        )
    });
}

fn ledger_levels() -> Vec<Arc<Ledger>> {
    let limits = Limits {
        rpm: Some(1_000_000_000),
        tpm: Some(1_000_000_000_000),
        max_budget_nanos: Some(1_000_000_000_000_000),
        ..Limits::default()
    };
    vec![
        Ledger::new(Level::Key("key_1".into()), limits.clone(), 0, 0),
        Ledger::new(Level::Team("team_1".into()), limits, 0, 0),
    ]
}

const ASK: Ask = Ask {
    worst: 40_000,
    least: 1_000,
    tokens: 20,
    may_cap: true,
};

/// Reserve at a key and its team, then settle with the true cost: the ledger work of one
/// request. With several threads, every thread works on the same two ledgers (one key used by
/// concurrent requests), so the figure includes lock contention.
#[divan::bench(threads = [1, 2, 4])]
fn budget_reserve_and_settle(bencher: Bencher) {
    let levels = ledger_levels();
    let now = 1_764_400_000_000;
    bencher.bench(|| {
        if let Ok(granted) = ledger::reserve(black_box(&levels), ASK, now) {
            ledger::settle(&levels, granted.reserved, 12_345, 10, now, now);
        }
    });
}

fn usage() -> Usage {
    Usage {
        input_tokens: 1_234,
        output_tokens: 567,
        cache_read_tokens: 200,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        ..Default::default()
    }
}

/// Integer nano-dollars per token: exact, and sums of many requests stay exact.
#[divan::bench]
fn cost_integer_nanos(bencher: Bencher) {
    let price = Price::per_mtok(0.15, 0.60);
    let usage = usage();
    bencher.bench(|| black_box(&price).cost(black_box(&usage)));
}

/// The naive alternative: US dollars per million tokens as `f64` (rounding drifts in sums).
#[divan::bench]
fn cost_naive_f64_dollars(bencher: Bencher) {
    let (input, output, cache_read) = (0.15_f64, 0.60_f64, 0.15_f64);
    let usage = usage();
    bencher.bench(|| {
        let u = black_box(&usage);
        let uncached = u.input_tokens - u.cache_read_tokens - u.cache_write_tokens;
        (uncached as f64 * black_box(input)
            + u.cache_read_tokens as f64 * cache_read
            + u.output_tokens as f64 * output)
            / 1_000_000.0
    });
}

/// A prompt of about 1 KiB: prose, a little code and numbers, one non-English sentence.
fn prompt() -> String {
    "Summarise the quarterly report in three bullet points. Revenue grew 12.5% to $4.2M; \
     `fn main() { println!(\"hi\"); }` stays as is. Das Wetter ist heute wirklich schön. "
        .repeat(6)
}

/// What the gateway does when a budget needs the tokens of a prompt it has not counted lately
/// (vocabulary built once), with each vocabulary: on [`prompt`] made all ASCII (which the
/// splitters cut without their regex engines) and as it is. Each count is of a text new to the
/// thread (a number before [`prompt`]), so it is tokenized.
#[divan::bench(args = ["o200k/ascii", "o200k/mixed", "cl100k/ascii", "cl100k/mixed"])]
fn token_count_compact_vocabulary(bencher: Bencher, kind: &str) {
    use switchyard::tokens::{Encoding, count_text};
    let encoding = if kind.starts_with("o200k") {
        Encoding::O200k
    } else {
        Encoding::Cl100k
    };
    let text = if kind.ends_with("ascii") {
        prompt().replace('ö', "oe")
    } else {
        prompt()
    };
    count_text(encoding, "warm up");
    let mut n = 0u64;
    bencher
        .with_inputs(|| {
            n += 1;
            format!("{n} {text}")
        })
        .bench_local_refs(|text| count_text(encoding, black_box(text)));
}

/// The same prompt counted again on the thread that counted it (a system prompt or an earlier
/// turn sent with every request): its count comes from the thread's table of recent texts.
#[divan::bench]
fn token_count_seen_lately(bencher: Bencher) {
    use switchyard::tokens::{Encoding, count_text};
    let text = prompt();
    count_text(Encoding::O200k, &text);
    bencher.bench_local(|| count_text(Encoding::O200k, black_box(&text)));
}

/// The library's encoder, which builds the token list to count it (about 50 MiB of tables).
#[divan::bench]
fn token_count_tiktoken(bencher: Bencher) {
    let text = prompt();
    let Ok(bpe) = tiktoken_rs::o200k_base() else {
        return;
    };
    bencher.bench(|| bpe.encode_ordinary(black_box(&text)).len());
}

/// Masking a record's prompt at the default cap (16 KiB with nothing to mask): English only,
/// and [`prompt`]'s mix, whose German sentences have a non-ASCII letter each. Each text is new
/// to the thread (a number before it), so it is scanned.
#[divan::bench(args = ["ascii", "mixed"])]
fn mask_record_prompt(bencher: Bencher, kind: &str) {
    let text = masked_prompt(kind);
    let mut n = 0u64;
    bencher
        .with_inputs(|| {
            n += 1;
            format!("{n} {text}")
        })
        .bench_local_refs(|text| switchyard::telemetry::mask::mask(black_box(text)).len());
}

/// The same prompt masked again on the thread that found nothing in it (a system prompt or an
/// earlier turn sent with every request): looked up, not scanned.
#[divan::bench]
fn mask_seen_lately(bencher: Bencher) {
    let text = masked_prompt("ascii");
    switchyard::telemetry::mask::mask(&text);
    bencher.bench_local(|| switchyard::telemetry::mask::mask(black_box(&text)).len());
}

fn masked_prompt(kind: &str) -> String {
    if kind == "ascii" {
        "The gateway forwards each request to a provider and streams it back. ".repeat(240)
    } else {
        prompt().repeat(16)
    }
}

/// A record as a virtual key's chat request leaves it (key and team set; no customer, org,
/// error, experiment or session), its content already masked.
fn sample_record() -> Option<switchyard::telemetry::record::RequestRecord> {
    // Through text: a record's route decision is JSON text, read from text only.
    serde_json::from_str(&serde_json::json!({
        "id": "", "started_at_ms": 1_764_000_000_000_i64, "duration_ms": 1.25,
        "ingress": "openai", "endpoint": "chat", "requested_model": "gpt-4o-mini",
        "alias": "gpt-4o-mini", "deployment": "gpt-4o-mini#0", "provider": "sim-openai",
        "stream": false, "status": 200, "outcome": "success",
        "caller": {"key_id": "key_0123456789", "key_name": "bench", "team": "team-bench"},
        "decision": {"alias": "gpt-4o-mini", "strategy": "weighted",
                     "candidates": [{"deployment": "gpt-4o-mini#0", "score": 1.0}]},
        "attempts": [{"alias": "gpt-4o-mini", "deployment": "gpt-4o-mini#0",
                      "provider": "sim-openai", "status": 200, "latency_ms": 0.8,
                      "retry": false, "hedged": false, "cancelled": false, "fell_back": false}],
        "tokens": {"input": 24, "output": 12, "cache_read": 0, "cache_write": 0,
                   "reasoning": 0, "estimated": false},
        "cost_nanos": 10_800,
        "prompt": [{"role": "user", "content": "Say hello to <EMAIL> in one short sentence, please."}],
        "response": "Hello! This is a simulated reply from the provider simulator.",
        "response_model": "gpt-4o-mini", "finish_reason": "stop"
    })
    .to_string())
    .ok()
}

/// One batch as the record writer stores it: a transaction with a few multi-row inserts.
#[divan::bench(args = [1, 25, 32])]
fn record_store_insert(bencher: Bencher, batch: usize) {
    if let Some(template) = sample_record() {
        store_insert(bencher, batch, template);
    }
}

/// The same with a 16 KiB system prompt (what a record keeps of a long one by default) that
/// the store already keeps as a text of its own: each record's body names it, found by the
/// text itself.
#[divan::bench(args = [25])]
fn record_store_insert_known_prompt(bencher: Bencher, batch: usize) {
    let Some(mut template) = sample_record() else {
        return;
    };
    let line = "You are a support agent for \"Acme\". Answer in the customer's language.\n";
    let system = line.repeat(16 * 1024 / line.len());
    template.prompt = Some(vec![
        switchyard::telemetry::PromptMessage {
            role: "system".into(),
            content: system,
        },
        switchyard::telemetry::PromptMessage {
            role: "user".into(),
            content: "Where is my order?".into(),
        },
    ]);
    store_insert(bencher, batch, template);
}

/// Inserts batches of `template` under fresh ids into a new SQLite store, the first one before
/// measuring (so texts it keeps apart are stored and remembered).
fn store_insert(
    bencher: Bencher,
    batch: usize,
    template: switchyard::telemetry::record::RequestRecord,
) {
    use switchyard::store::RecordStore;
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let Ok(store) = rt.block_on(switchyard::store::Store::open_sqlite(
        &dir.path().join("bench.db"),
    )) else {
        return;
    };
    let mut next = 0u64;
    let mut make = move || {
        (0..batch)
            .map(|_| {
                next += 1;
                let mut r = template.clone();
                r.id = format!("{next:032x}");
                r.started_at_ms += next as i64;
                r
            })
            .collect::<Vec<_>>()
    };
    if rt.block_on(store.insert(&make())).is_err() {
        return;
    }
    bencher
        .with_inputs(make)
        .bench_local_refs(|records| rt.block_on(store.insert(records)).is_ok());
}

/// A record as the request path hands it to the writer: the route decision still a struct,
/// prompt and response not yet masked.
fn pending_record() -> Option<switchyard::telemetry::record::RequestRecord> {
    use switchyard::routing::{RouteDecision, ScoredCandidate};
    let mut r = sample_record()?;
    r.decision = None;
    r.route_decision = Some(Box::new(RouteDecision {
        requested: "gpt-4o-mini".into(),
        alias: "gpt-4o-mini".into(),
        rule: None,
        strategy: "weighted",
        candidates: vec![ScoredCandidate {
            alias: "gpt-4o-mini".into(),
            deployment: "gpt-4o-mini#0".into(),
            score: Some(1.0),
            cooling: false,
        }],
        skipped: Vec::new(),
        fallbacks: Vec::new(),
    }));
    r.prompt = Some(vec![switchyard::telemetry::PromptMessage {
        role: "user".into(),
        content: "Say hello to ada@example.com in one short sentence, please.".into(),
    }]);
    r.mask_pending = true;
    Some(r)
}

/// The writer's own work on a batch, the store's insert aside: finishing each record (route
/// decision written out, content masked), counting it in the metrics, and the record's JSON
/// text as the store keeps it. The prompt (an address in it) is masked each time; the
/// simulator's reply, clean and the same every time, is scanned once per thread.
#[divan::bench(args = [25])]
fn record_writer_prepare(bencher: Bencher, batch: usize) {
    use switchyard::telemetry::RecordObserver;
    let Some(template) = pending_record() else {
        return;
    };
    let known = switchyard::metrics::Known {
        aliases: ["gpt-4o-mini".to_owned()].into(),
        deployments: ["gpt-4o-mini#0".to_owned()].into(),
    };
    let metrics = switchyard::metrics::Metrics::new(known);
    bencher
        .with_inputs(|| std::sync::Arc::new(vec![template.clone(); batch]))
        .bench_local_refs(|records| {
            // Not yet shared: the writer prepares its batch before showing it to anyone.
            if let Some(batch) = std::sync::Arc::get_mut(records) {
                for r in batch.iter_mut() {
                    switchyard::telemetry::prepare_record(r);
                }
            }
            metrics.observe(records);
            records.iter().map(|r| r.to_json().len()).sum::<usize>()
        });
}

/// A batch's OTLP export body, as the exporter writes it: the spans of each prepared record
/// (the request and its attempt), written straight into one protobuf buffer.
#[divan::bench(args = [25])]
fn otlp_export_encode(bencher: Bencher, batch: usize) {
    use switchyard::telemetry::otlp::spans;
    let Some(mut template) = pending_record() else {
        return;
    };
    switchyard::telemetry::prepare_record(&mut template);
    let records = vec![template; batch];
    let refs: Vec<_> = records.iter().collect();
    let catalog = spans::Catalog::default();
    let mut out = Vec::new();
    bencher.bench_local(|| {
        out.clear();
        spans::export_request(&mut out, b"", &refs, &catalog, false, &mut spans::RandomIds)
    });
}

/// A finished record's JSON text, as the store and the spill file keep it: the record's own
/// writer.
#[divan::bench]
fn record_json_own_writer(bencher: Bencher) {
    let Some(record) = finished_record() else {
        return;
    };
    bencher.bench_local(|| black_box(&record).to_json().len());
}

/// The same text through serde's derived serializer (what the store used before).
#[divan::bench]
fn record_json_serde(bencher: Bencher) {
    let Some(record) = finished_record() else {
        return;
    };
    bencher.bench_local(|| serde_json::to_string(black_box(&record)).map_or(0, |s| s.len()));
}

/// A record as the writer stores it: decision written out, content masked.
fn finished_record() -> Option<switchyard::telemetry::RequestRecord> {
    let mut r = pending_record()?;
    switchyard::telemetry::prepare_record(&mut r);
    Some(r)
}

/// Sizes of the buffers a request allocates: small ones, and ones above mimalloc's 1 KiB
/// small-block limit (read and write buffers, bodies, task cells).
const BLOCK_SIZES: &[usize] = &[64, 1_500, 9_000];

/// The gateway's global allocator: a plain mimalloc block for a word's alignment.
#[divan::bench(args = BLOCK_SIZES, sample_size = 10_000)]
#[allow(unsafe_code)]
fn alloc_free_plain_block(bencher: Bencher, size: usize) {
    use std::alloc::{GlobalAlloc, Layout};
    let layout = Layout::from_size_align(size, 8).unwrap_or(Layout::new::<u64>());
    let alloc = switchyard::allocator::Mimalloc;
    bencher.bench(|| {
        // SAFETY: a non-zero size; the block is freed with the layout it was made with.
        unsafe {
            let p = alloc.alloc(black_box(layout));
            alloc.dealloc(black_box(p), layout);
        }
    });
}

/// What it replaced: every block asked for with its alignment (the `mimalloc` crate's way),
/// which above 1 KiB over-allocates by the alignment.
#[divan::bench(args = BLOCK_SIZES, sample_size = 10_000)]
#[allow(unsafe_code)]
fn alloc_free_aligned_block(bencher: Bencher, size: usize) {
    bencher.bench(|| {
        // SAFETY: a non-zero size; the block is freed by the allocator that made it.
        unsafe {
            let p = libmimalloc_sys::mi_malloc_aligned(black_box(size), 8);
            libmimalloc_sys::mi_free(black_box(p));
        }
    });
}
