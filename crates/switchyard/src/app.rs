//! Shared handles built once from the validated configuration and cloned into every handler.

use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::routing::RoutingTable;
use crate::store::SqliteStore;
use crate::telemetry::Recorder;
use crate::upstream::RetryBudget;

pub struct App {
    pub config: Config,
    pub table: RoutingTable,
    pub retry_budget: RetryBudget,
    pub store: SqliteStore,
    pub recorder: Arc<Recorder>,
}

impl App {
    /// Builds the state: opens the store in the data directory and starts the record writer,
    /// whose handle is returned so shutdown can wait for the last records.
    pub async fn new(
        config: Config,
        sim_base_url: Option<&str>,
    ) -> anyhow::Result<(Self, tokio::task::JoinHandle<()>)> {
        let table = RoutingTable::build(&config, sim_base_url)?;
        let retry_budget = RetryBudget::new(config.routing.retry_budget);
        let dir = &config.server.data_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        let store = SqliteStore::open(&dir.join("switchyard.db"))
            .await
            .with_context(|| format!("cannot open the store in {}", dir.display()))?;
        let (recorder, writer) = Recorder::start(
            store.clone(),
            dir.join("records.spill.jsonl"),
            config.telemetry.spill_max_bytes,
            config.telemetry.queue_capacity,
            Vec::new(),
        );
        Ok((
            Self {
                config,
                table,
                retry_budget,
                store,
                recorder: Arc::new(recorder),
            },
            writer,
        ))
    }
}
