//! The `switchyard` command line: `demo`, `serve`, `check-config`, and `requests`, `spend`,
//! `keys`, `configs`, `experiments` and `feedback` over a running gateway's admin API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::admin_client;
use crate::app::App;
use crate::config::{self, Config, LogFormat};
use crate::server;

/// `--version`: the package's, and whether `scripts/release-pgo` built this binary, so that a
/// benchmark report (which prints it) says which build it measured.
const VERSION: &str = match option_env!("SWITCHYARD_PGO_BUILD") {
    Some(_) => concat!(env!("CARGO_PKG_VERSION"), " (profile-guided build)"),
    None => env!("CARGO_PKG_VERSION"),
};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version = VERSION,
    about = "Switchyard: one fast gateway in front of every LLM provider."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway on the embedded demo configuration: simulated OpenAI, Azure, Anthropic,
    /// Gemini and Bedrock providers behind a few aliases. Needs no API keys and no network; keeps
    /// its data in ./switchyard-data (or $SWITCHYARD_DATA_DIR).
    Demo {
        /// Address to listen on (default 127.0.0.1:4000; port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run the gateway with a configuration file.
    Serve {
        /// The YAML configuration file.
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
        /// Override `server.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Validate a configuration file and print every error with its path.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Read the request records of a running gateway (its admin API, with the master key).
    Requests {
        #[command(subcommand)]
        command: admin_client::RequestsCommand,
    },
    /// Print spend grouped by customer, team, key, alias, deployment or tag:NAME, from a
    /// running gateway.
    Spend(admin_client::SpendArgs),
    /// Manage virtual keys through a running gateway's admin API.
    Keys {
        #[command(subcommand)]
        command: admin_client::KeysCommand,
    },
    /// Versioned configurations (target, parameters, prompt template) and their labels.
    Configs {
        #[command(subcommand)]
        command: admin_client::ConfigsCommand,
    },
    /// A/B experiments over configuration versions and their results.
    Experiments {
        #[command(subcommand)]
        command: admin_client::ExperimentsCommand,
    },
    /// Score a request or session (thumbs up, a rating, a category).
    Feedback(admin_client::FeedbackArgs),
    /// Evaluation datasets through a running gateway's admin API.
    Datasets {
        #[command(subcommand)]
        command: admin_client::DatasetsCommand,
    },
    /// Evaluation runs: start, watch, show, compare, resume, export to MLflow.
    Eval {
        #[command(subcommand)]
        command: admin_client::EvalCommand,
    },
}

/// Entry point of the binary.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. } | Command::Demo { .. }) {
        quiet_on_closed_output();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The admin commands print to whatever reads them; when that reader goes away (`| head`),
/// printing fails, and Rust's printing panics. Such a command ends quietly instead, as Unix
/// tools do; any other panic is reported as usual. (Not for the server, which prints little
/// and must never end for a reader's sake.)
fn quiet_on_closed_output() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        report(info);
    }));
}

/// The runtime of background work (record writer, exporters, alerts, evaluation runs) and of
/// accepting connections; requests are served on the workers `server::serve` starts. Its
/// threads run at `background_nice` (see [`lower_priority`]); the connections are accepted on
/// the calling thread, which `block_on` runs the server on, at the process's own priority.
fn runtime(background_nice: u8) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || lower_priority(background_nice))
        .build()
        .context("cannot start the async runtime")
}

/// Raises the calling thread's nice value to `nice` (`server.background_nice`, 0 by default:
/// nothing). A thread it starts inherits the value: the record writer's SQLite connection runs
/// on a thread its first batch starts. When the CPUs are all busy, a background burst (a batch
/// of records written, the WAL checkpointed) then waits for the serving threads instead of
/// delaying their requests by whole scheduler slices; the writer's share shrinks with it.
/// Linux keeps a nice value per thread; elsewhere it is per process, so nothing is done there.
fn lower_priority(nice: u8) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        let thread = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(thread), i32::from(nice)) {
            tracing::debug!(error = %e, "cannot lower a background thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match cli.command {
        Command::CheckConfig { config } => match config::load_file(&config) {
            Ok(c) => {
                println!(
                    "{}: OK ({} providers, {} model aliases)",
                    config.display(),
                    c.providers.len(),
                    c.models.len()
                );
                Ok(std::process::ExitCode::SUCCESS)
            }
            Err(errors) => {
                eprintln!("{}: {} error(s)", config.display(), errors.len());
                for e in errors {
                    eprintln!("  {e}");
                }
                Ok(std::process::ExitCode::from(2))
            }
        },
        Command::Requests { command } => admin_client::requests(command),
        Command::Spend(args) => admin_client::spend_command(args),
        Command::Keys { command } => admin_client::keys_command(command),
        Command::Configs { command } => admin_client::configs_command(command),
        Command::Experiments { command } => admin_client::experiments_command(command),
        Command::Feedback(args) => admin_client::feedback_command(args),
        Command::Datasets { command } => admin_client::datasets_command(command),
        Command::Eval { command } => admin_client::eval_command(command),
        Command::Serve { config, listen } => {
            let mut cfg = config::load_file(&config).map_err(|errors| report(&config, errors))?;
            if let Some(l) = listen {
                cfg.server.listen = l.to_string();
            }
            runtime(cfg.server.background_nice)?.block_on(start(cfg, false))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Demo { listen } => {
            let mut cfg = config::load(config::DEMO_CONFIG, &|name| std::env::var(name).ok())
                .map_err(|errors| report(std::path::Path::new("<demo>"), errors))?;
            if let Some(l) = listen {
                cfg.server.listen = l.to_string();
            }
            runtime(cfg.server.background_nice)?.block_on(start(cfg, true))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

fn report(path: &std::path::Path, errors: Vec<config::ConfigError>) -> anyhow::Error {
    let mut msg = format!("{} has {} error(s):", path.display(), errors.len());
    for e in errors {
        msg.push_str(&format!("\n  {e}"));
    }
    anyhow::anyhow!(msg)
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(config.logging.level.as_deref().unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours for a terminal only: in a file or a log collector they are escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.logging.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

async fn start(config: Config, demo: bool) -> anyhow::Result<()> {
    init_logging(&config);
    let sim = if config.uses_simulator() {
        let sim_config = switchyard_sim::SimConfig {
            ttft_ms: config.simulator.ttft_ms,
            token_ms: config.simulator.token_ms,
            ..switchyard_sim::SimConfig::default()
        };
        let server =
            switchyard_sim::SimServer::start(sim_config, SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .context("cannot start the in-process simulator")?;
        tracing::info!(url = %server.base_url(), "simulated providers listening");
        Some(server)
    } else {
        None
    };
    let listen = config.server.listen.clone();
    let listener = TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let master_key = config
        .server
        .master_key
        .as_ref()
        .map(|k| k.expose().to_owned())
        .unwrap_or_default();
    let (app, writer) = App::new(config, sim.as_ref().map(|s| s.base_url()).as_deref()).await?;
    let app = Arc::new(app);
    if demo {
        print_banner(addr, &master_key, &app);
    }
    // Machine-readable line for scripts and tests that start us on port 0.
    println!("switchyard listening on http://{addr}");
    tracing::info!(%addr, aliases = app.table.aliases.len(), dashboard = %format_args!("http://{addr}/dashboard"), "gateway ready");
    if addr.port() == 0 {
        bail!("listener has no port");
    }
    let evaluations = app.evaluations.clone();
    server::serve(app, listener, server::shutdown_signal()).await?;
    // Runs in flight hold the app: stop them (they become `interrupted`) before the writer.
    evaluations.shutdown().await;
    // The last handles are gone once the server is; the writer drains its queue and stops.
    if tokio::time::timeout(std::time::Duration::from_secs(10), writer)
        .await
        .is_err()
    {
        tracing::error!("the record writer did not finish within 10 s");
    }
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}

fn print_banner(addr: SocketAddr, key: &str, app: &App) {
    let url = format!("http://{addr}");
    let aliases = app.table.aliases.join(", ");
    println!(
        r#"
Switchyard demo: simulated providers, no API keys, no network.

  URL:       {url}/v1
  Key:       {key}
  Models:    {aliases}
  Dashboard: {url}/dashboard#key={key}

Try it:

  curl {url}/v1/chat/completions \
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \
    -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello!"}}]}}'

  python3 -c '
from openai import OpenAI
client = OpenAI(base_url="{url}/v1", api_key="{key}")
print(client.chat.completions.create(model="claude-sonnet", messages=[{{"role": "user", "content": "Hello!"}}]).choices[0].message.content)'

  Anthropic SDK: anthropic.Anthropic(base_url="{url}", api_key="{key}")

Press Ctrl-C to stop.
"#
    );
}
