//! Shared handles built once from the validated configuration and cloned into every handler.

use std::sync::Arc;

use anyhow::Context;

use crate::alerts::Alerts;
use crate::config::Config;
use crate::metrics::{Known, Metrics};
use crate::routing::RoutingTable;
use crate::store::Store;
use crate::telemetry::Recorder;
use crate::upstream::RetryBudget;

pub struct App {
    pub config: Config,
    pub table: RoutingTable,
    pub retry_budget: RetryBudget,
    pub store: Store,
    pub recorder: Arc<Recorder>,
    /// Prometheus metrics fed by the recorder (`GET /metrics`).
    pub metrics: Arc<Metrics>,
    /// Alert rules, their windows and what is firing (`GET /admin/alerts`).
    pub alerts: Arc<Alerts>,
    /// Virtual keys, teams, orgs, customers, limits and budgets.
    pub governance: Arc<crate::governance::Governance>,
    /// Configuration versions, experiments, change log and feedback.
    pub experiments: Arc<crate::experiments::Experiments>,
    /// Datasets and evaluation runs, with the runs in flight.
    pub evaluations: Arc<crate::evaluation::Evaluations>,
    /// Provider credentials stored through the admin API, encrypted at rest.
    pub credentials: Arc<crate::credentials::Credentials>,
    /// Responses API answers kept for clients that refer to them.
    pub kept_responses: crate::kept_responses::KeptResponses,
    /// The exact response cache, when configured.
    pub response_cache: Option<crate::response_cache::ResponseCache>,
    /// The semantic cache in front of it, when configured.
    pub semantic_cache: Option<crate::semantic_cache::SemanticCache>,
    /// The runtime the state was built on, for background work started by a request (an
    /// evaluation run): serving workers only serve.
    pub background: tokio::runtime::Handle,
    /// Fetches media given by URL for providers that take it only inline
    /// (`server.fetch_media`).
    pub media: Option<crate::upstream::media::MediaFetcher>,
    /// Each OpenTelemetry exporter's endpoint and counters, for `/metrics`.
    pub otlp_stats: Vec<(String, Arc<crate::telemetry::otlp::OtlpStats>)>,
    /// Held for as long as the process runs: one process a data directory.
    _data_dir_lock: std::fs::File,
}

/// Makes the store's files (the database, its WAL and shared memory) readable by their owner
/// only: they hold prompts, answers and keys' records.
fn owner_only(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let file = std::path::Path::new(&file);
            if file.exists()
                && let Err(e) =
                    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
            {
                tracing::warn!(path = %file.display(), "cannot make the store readable by its owner only: {e}");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Takes the data directory for this process. Two processes on one directory would share its
/// SQLite store while each kept its own view of keys and budgets in memory: one would not know
/// the other's keys, and each would spend the budgets on its own.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("switchyard.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another Switchyard process is using the data directory {}: each process needs its \
             own (give another with SWITCHYARD_DATA_DIR or `server.data_dir`; replicas share \
             keys and budgets through `shared:` and records through `store:`)",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

impl App {
    /// Builds the state: opens the store in the data directory and starts the record writer,
    /// whose handle is returned so shutdown can wait for the last records.
    pub async fn new(
        config: Config,
        sim_base_url: Option<&str>,
    ) -> anyhow::Result<(Self, tokio::task::JoinHandle<()>)> {
        let retry_budget = RetryBudget::new(config.routing.retry_budget);
        let dir = &config.server.data_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        let data_dir_lock = lock_data_dir(dir)?;
        let store = match &config.store {
            Some(s) => Store::open_postgres(&s.url, s.max_connections)
                .await
                .with_context(|| format!("cannot open the store at {}", redacted(&s.url)))?,
            None => {
                let path = dir.join("switchyard.db");
                let store = Store::open_sqlite(&path)
                    .await
                    .with_context(|| format!("cannot open the store in {}", dir.display()))?;
                owner_only(&path);
                store
            }
        };
        if store.is_shared() && config.shared.is_none() {
            tracing::warn!(
                "store is shared but shared.redis_url is not set: replicas see each other's keys \
                 within a second, but each counts budgets and rate limits on its own"
            );
        }
        let keyring = crate::credentials::Keyring::from_env(&|name| std::env::var(name).ok())
            .map_err(anyhow::Error::msg)?;
        let users = config
            .providers
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.credential.clone()?)))
            .collect();
        let credentials = Arc::new(
            crate::credentials::Credentials::load(store.clone(), keyring, users)
                .await
                .context("cannot load the stored provider credentials")?,
        );
        let table = RoutingTable::build(&config, sim_base_url, &credentials.vault())?;
        crate::upstream::aws_credentials::start(
            table.aws_auths(),
            crate::upstream::aws_credentials::AwsEnv::from_process(),
        )
        .await
        .map_err(anyhow::Error::msg)?;
        if table.tokens_matter() {
            crate::tokens::prepare(table.encodings());
        }
        let secret = match (&config.governance.hash_secret, &config.server.master_key) {
            (Some(s), _) => s.clone().into_bytes(),
            // Derived, so it is stable across restarts without being the master key itself.
            (None, Some(master)) => {
                crate::governance::derive_secret(master.expose(), "switchyard virtual key hashing")
            }
            (None, None) => Vec::new(),
        };
        let shared = match &config.shared {
            Some(s) => Some(
                crate::governance::shared::Shared::connect(
                    &s.redis_url,
                    &s.prefix,
                    config.server.workers,
                )
                .await
                .with_context(|| {
                    format!(
                        "cannot reach the shared state at {}",
                        redacted(&s.redis_url)
                    )
                })?,
            ),
            None => None,
        };
        let governance = crate::governance::Governance::load(
            store.clone(),
            shared,
            secret,
            config.governance.default_max_tokens,
            config.governance.max_wait,
        )
        .await
        .context("cannot load virtual keys and budgets")?;
        let experiments = crate::experiments::Experiments::load(store.clone())
            .await
            .context("cannot load configurations and experiments")?;
        if let Some(shared) = governance.shared() {
            crate::routing::shared_health::start(&table, shared.clone());
        }
        if store.is_shared() {
            tokio::spawn(follow_store(
                store.clone(),
                Arc::downgrade(&experiments),
                Arc::downgrade(&credentials),
                Arc::downgrade(&governance),
            ));
        }
        let known = Known::from_table(&table);
        let metrics = Arc::new(Metrics::new(known.clone()));
        let alerts = Alerts::start(config.alerts.clone(), &table, known);
        alerts.watch_budgets(governance.clone());
        let mut observers: Vec<Arc<dyn crate::telemetry::RecordObserver>> = vec![metrics.clone()];
        observers.extend(alerts.observer());
        // OpenTelemetry trace exporters see every record after the request is over.
        let otlp = crate::telemetry::otlp::start(&config, &table)
            .context("cannot start the OTLP trace exporters")?;
        observers.extend(otlp.as_ref().map(|o| o.observer()));
        let evaluations = crate::evaluation::Evaluations::open(&store)
            .await
            .context("cannot open the evaluation tables")?;
        observers.push(evaluations.observer());
        let traced = otlp.is_some();
        let otlp_stats = otlp
            .as_ref()
            .map(|o| o.stats().to_vec())
            .unwrap_or_default();
        let (recorder, writer) = if config.telemetry.records {
            Recorder::start(
                store.clone(),
                dir.join("records.spill.jsonl"),
                config.telemetry.spill_max_bytes,
                config.telemetry.queue_capacity,
                config.telemetry.queue_max_bytes,
                observers,
                traced,
            )
        } else {
            tracing::warn!(
                "telemetry.records is false: no request is recorded, and request metrics, alert \
                 rules, experiment results and evaluation runs over records see none"
            );
            (Recorder::disabled(), tokio::spawn(async {}))
        };
        // Shutdown waits for the exporters to send the last records too.
        let writer = match otlp {
            Some(o) => o.join_after(writer),
            None => writer,
        };
        let media = match config.server.fetch_media {
            Some(settings) => Some(
                crate::upstream::media::MediaFetcher::new(&settings)
                    .context("cannot build the client that fetches media given by URL")?,
            ),
            None => None,
        };
        Ok((
            Self {
                media,
                otlp_stats,
                _data_dir_lock: data_dir_lock,
                response_cache: config
                    .cache
                    .as_ref()
                    .map(|c| crate::response_cache::ResponseCache::new(c.ttl, c.max_bytes)),
                semantic_cache: config
                    .cache
                    .as_ref()
                    .and_then(|c| c.semantic.as_ref())
                    .map(|s| {
                        crate::semantic_cache::SemanticCache::new(
                            s.model.clone(),
                            s.threshold,
                            s.max_entries,
                        )
                    }),
                kept_responses: crate::kept_responses::KeptResponses::new(
                    config.server.keep_responses_for,
                    config.server.keep_responses_bytes,
                    governance.shared().cloned(),
                ),
                config,
                table,
                retry_budget,
                store,
                recorder: Arc::new(recorder),
                metrics,
                alerts,
                governance,
                experiments,
                evaluations,
                credentials,
                background: tokio::runtime::Handle::current(),
            },
            writer,
        ))
    }
}

/// How often a replica sharing its store asks whether another one changed something.
const FOLLOW_STORE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// With a store other replicas write too: every change through any replica's admin API writes an
/// audit entry, so when the newest entry's number moves, this replica reads again what it keeps
/// in memory (configuration versions and experiments, provider credentials, and keys when they
/// are not in Redis, which has its own poll), for as long as the application lives.
async fn follow_store(
    store: Store,
    experiments: std::sync::Weak<crate::experiments::Experiments>,
    credentials: std::sync::Weak<crate::credentials::Credentials>,
    governance: std::sync::Weak<crate::governance::Governance>,
) {
    let mut seen = store.last_change().await.ok();
    loop {
        tokio::time::sleep(FOLLOW_STORE_EVERY).await;
        let (Some(experiments), Some(credentials), Some(governance)) = (
            experiments.upgrade(),
            credentials.upgrade(),
            governance.upgrade(),
        ) else {
            return;
        };
        let result = async {
            let last = store.last_change().await?;
            if seen != Some(last) {
                experiments.reload().await?;
                credentials.refresh().await?;
                if governance.shared().is_none() {
                    governance.reload().await?;
                }
                seen = Some(last);
            }
            anyhow::Ok(())
        }
        .await;
        store.note_reached(result.is_ok());
        if let Err(e) = result {
            tracing::warn!("cannot read the shared store: {e}");
        }
    }
}

/// A URL without its password, for messages.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://…{}", &url[at..]),
        _ => url.to_owned(),
    }
}
