//! The Switchyard gateway: configuration, HTTP server, request pipeline, routing and upstream
//! execution. The `switchyard` binary is a thin wrapper around [`cli::main`].

pub mod admin_client;
pub mod alerts;
pub mod allocator;
pub mod app;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod encoding;
pub mod error;
pub mod evaluation;
pub mod experiments;
pub mod governance;
pub mod guardrails;
pub mod kept_responses;
pub mod metrics;
pub mod pipeline;
pub mod pricing;
pub mod recent;
pub mod response_cache;
pub mod routing;
pub mod semantic_cache;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod upstream;

/// A map the configuration or the admin API fills (aliases, key hashes, entity ids) and every
/// request looks up, hashed with foldhash instead of the standard library's SipHash: a lookup
/// of a name costs a few dozen instructions instead of a few hundred. What a client sends is
/// only ever looked up, never inserted, so it cannot make the table degrade.
pub type NameMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
