//! `switchyard keys …`: create, list, block and rotate virtual keys through the admin API.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::{Api, Connection, Table, runtime, usd};

/// `switchyard keys create` flags.
#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    conn: Connection,
    /// A name to recognise the key by.
    #[arg(long, default_value = "unnamed")]
    name: String,
    /// Team id the key belongs to.
    #[arg(long)]
    team: Option<String>,
    /// Budget in US dollars.
    #[arg(long)]
    budget: Option<f64>,
    /// `none`, `daily`, `weekly` or `monthly`.
    #[arg(long)]
    period: Option<String>,
    #[arg(long)]
    rpm: Option<u64>,
    #[arg(long)]
    tpm: Option<u64>,
    /// Model aliases (globs allowed) the key may use; repeat the flag for several.
    #[arg(long = "model")]
    models: Vec<String>,
    /// `user` (default), `viewer`, `team_admin` or `admin`.
    #[arg(long)]
    role: Option<String>,
    /// Deployment regions the key may reach; repeat the flag for several.
    #[arg(long = "region")]
    regions: Vec<String>,
    /// Highest deployment risk level the key may reach: `low`, `medium` or `high`.
    #[arg(long)]
    max_risk_level: Option<String>,
    /// Deployment data classifications the key may reach; repeat the flag for several.
    #[arg(long = "data-classification")]
    data_classifications: Vec<String>,
    /// Share of the budget (0–1) at which the budget alert fires for this key.
    #[arg(long)]
    soft_budget: Option<f64>,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create(Box<CreateArgs>),
    /// List keys with their budgets.
    List {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        team: Option<String>,
    },
    /// Block a key (requests with it get 401 until it is unblocked).
    Block {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Issue a new secret; the old one keeps working for `--grace` seconds.
    Rotate {
        id: String,
        #[arg(long, default_value_t = 0)]
        grace: i64,
        #[command(flatten)]
        conn: Connection,
    },
}

fn nanos_usd(v: &Value) -> String {
    v.as_i64().map_or_else(|| "-".into(), usd)
}

async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create(args) => {
            let CreateArgs {
                conn,
                name,
                team,
                budget,
                period,
                rpm,
                tpm,
                models,
                role,
                regions,
                max_risk_level,
                data_classifications,
                soft_budget,
            } = *args;
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            let optional = [
                ("team_id", team.map(Value::from)),
                ("max_budget_usd", budget.map(Value::from)),
                ("budget_period", period.map(Value::from)),
                ("rpm", rpm.map(Value::from)),
                ("tpm", tpm.map(Value::from)),
                ("role", role.map(Value::from)),
                ("max_risk_level", max_risk_level.map(Value::from)),
                ("soft_budget", soft_budget.map(Value::from)),
            ];
            for (k, v) in optional {
                if let Some(v) = v {
                    body.insert(k.into(), v);
                }
            }
            for (k, list) in [
                ("models", models),
                ("allowed_regions", regions),
                ("allowed_data_classifications", data_classifications),
            ] {
                if !list.is_empty() {
                    body.insert(k.into(), json!(list));
                }
            }
            let key = Api::new(&conn)?
                .post("/admin/keys", &Value::Object(body))
                .await?;
            println!("id:     {}", key["id"].as_str().unwrap_or("-"));
            println!("key:    {}", key["key"].as_str().unwrap_or("-"));
            println!("Store the key now: it is not shown again.");
        }
        KeysCommand::List { conn, team } => {
            let query: Vec<(&str, String)> = team.into_iter().map(|t| ("team", t)).collect();
            let page = Api::new(&conn)?.get("/admin/keys", &query).await?;
            let mut t = Table::new(&[
                ("ID", false),
                ("NAME", false),
                ("KEY", false),
                ("TEAM", false),
                ("ROLE", false),
                ("BLOCKED", false),
                ("SPENT_USD", true),
                ("BUDGET_USD", true),
            ]);
            for k in page["data"].as_array().into_iter().flatten() {
                t.push(vec![
                    k["id"].as_str().unwrap_or("-").into(),
                    k["name"].as_str().unwrap_or("-").into(),
                    k["display"].as_str().unwrap_or("-").into(),
                    k["team_id"].as_str().unwrap_or("-").into(),
                    k["role"].as_str().unwrap_or("-").into(),
                    k["blocked"].as_bool().unwrap_or(false).to_string(),
                    nanos_usd(&k["budget"]["spent_nanos"]),
                    nanos_usd(&k["budget"]["max_nanos"]),
                ]);
            }
            print!("{}", t.render());
        }
        KeysCommand::Block { id, conn } => {
            Api::new(&conn)?
                .post(&format!("/admin/keys/{id}/block"), &json!({}))
                .await?;
            println!("blocked {id}");
        }
        KeysCommand::Rotate { id, grace, conn } => {
            let key = Api::new(&conn)?
                .post(
                    &format!("/admin/keys/{id}/rotate"),
                    &json!({"grace_secs": grace}),
                )
                .await?;
            println!("key:    {}", key["key"].as_str().unwrap_or("-"));
            println!("Store the key now: it is not shown again.");
        }
    }
    Ok(())
}

/// `switchyard keys …`
pub fn keys_command(command: KeysCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(run(command))?;
    Ok(ExitCode::SUCCESS)
}
