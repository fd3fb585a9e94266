//! Shared handles built once from the validated configuration and cloned into every handler.

use crate::config::Config;
use crate::routing::RoutingTable;
use crate::upstream::RetryBudget;

pub struct App {
    pub config: Config,
    pub table: RoutingTable,
    pub retry_budget: RetryBudget,
}

impl App {
    /// Builds the state. `sim_base_url` is where the in-process simulator listens, if any.
    pub fn new(config: Config, sim_base_url: Option<&str>) -> anyhow::Result<Self> {
        let table = RoutingTable::build(&config, sim_base_url)?;
        let retry_budget = RetryBudget::new(config.routing.retry_budget);
        Ok(Self {
            config,
            table,
            retry_budget,
        })
    }
}
