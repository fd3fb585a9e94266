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
