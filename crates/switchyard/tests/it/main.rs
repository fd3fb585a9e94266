//! The one integration-test binary: every test starts the real `switchyard` executable on port 0

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! against the provider simulator (in-process, port 0) and talks to it over HTTP.

mod harness;

mod browsers;
mod chaos;
mod cli;
mod conformance;
mod credentials;
mod errors;
mod evaluation;
mod experiments;
mod governance;
mod guardrails;
mod media;
mod observability;
mod provider_quirks;
mod records;
mod response_cache;
mod sdk;
mod shared_state;
mod shared_store;
mod streams;
mod traces;
mod upstream_connections;
