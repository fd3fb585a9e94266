//! `switchyard-sim`: runs the provider simulator until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use switchyard_sim::{SimConfig, SimServer};

/// Provider simulator speaking the OpenAI, Azure OpenAI, Anthropic, Gemini and Amazon Bedrock
/// wire formats.
#[derive(Debug, Parser)]
#[command(name = "switchyard-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// YAML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Delay before each response starts, in milliseconds (overrides the file).
    #[arg(long)]
    ttft_ms: Option<u64>,
    /// Delay between stream chunks, in milliseconds (overrides the file).
    #[arg(long)]
    token_ms: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_saphyr::from_str::<SimConfig>(&text)
                .with_context(|| format!("parsing {}", path.display()))?
        }
        None => SimConfig::default(),
    };
    if let Some(ms) = args.ttft_ms {
        config.ttft_ms = ms;
    }
    if let Some(ms) = args.token_ms {
        config.token_ms = ms;
    }
    let server = SimServer::start(config, args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    println!("switchyard-sim listening on {}", server.base_url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    server.shutdown().await;
    Ok(())
}
