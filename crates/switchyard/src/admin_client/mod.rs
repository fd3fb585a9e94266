//! The `switchyard requests …` and `switchyard spend` commands: a small client of a running
//! gateway's admin API (`/admin/requests`, `/admin/spend`) that prints readable tables. It holds
//! no business rules; the gateway validates filters and reports errors, which are printed as
//! they come, with a non-zero exit.

mod evaluation;
mod experiments;
mod keys;
mod table;

pub use evaluation::{DatasetsCommand, EvalCommand, datasets_command, eval_command};
pub use experiments::{
    ConfigsCommand, ExperimentsCommand, FeedbackArgs, configs_command, experiments_command,
    feedback_command,
};
pub use keys::{KeysCommand, keys_command};

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::telemetry::RequestRecord;
pub use table::{Table, usd};

/// How far back `--follow` looks for records stored since the last poll: a request's record
/// carries its start time, and it is stored when it ends.
const FOLLOW_LOOKBACK_MS: i64 = 10 * 60 * 1000;

#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Base URL of the gateway.
    #[arg(long, default_value = "http://127.0.0.1:4000")]
    pub url: String,
    /// Master key (default: $SWITCHYARD_KEY, then $SWITCHYARD_MASTER_KEY).
    #[arg(long, env = "SWITCHYARD_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

#[derive(Subcommand, Debug)]
// Parsed once per run: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum RequestsCommand {
    /// Print the latest request records, oldest first; with --follow, keep printing new ones.
    Tail(TailArgs),
    /// Print one request record: route, attempts, tokens, cost and (if stored) content.
    Show {
        /// The request id (the `x-request-id` response header).
        id: String,
        /// Print the record as JSON instead.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
}

#[derive(Args, Debug)]
pub struct TailArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Keep polling and print records as they are stored.
    #[arg(long, short)]
    pub follow: bool,
    /// How many of the latest records to print first.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: u32,
    /// Poll interval with --follow.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Print one JSON record per line instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub filters: Filters,
}

/// Filters of `GET /admin/requests`.
#[derive(Args, Debug, Default)]
pub struct Filters {
    /// Only records from this time on: Unix milliseconds or a span ago like 15m, 24h, 7d.
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long)]
    pub alias: Option<String>,
    /// A deployment id, `provider/model`.
    #[arg(long)]
    pub deployment: Option<String>,
    /// A deployment one of whose attempts failed (also when a fallback answered).
    #[arg(long)]
    pub failed_deployment: Option<String>,
    /// The id of the calling key.
    #[arg(long)]
    pub key_id: Option<String>,
    #[arg(long)]
    pub team: Option<String>,
    #[arg(long)]
    pub customer: Option<String>,
    /// HTTP status sent to the client.
    #[arg(long)]
    pub status: Option<u16>,
    /// success, client_error, upstream_error, stream_error or cancelled.
    #[arg(long)]
    pub outcome: Option<String>,
    #[arg(long)]
    pub error_code: Option<String>,
    /// A request metadata entry, `name:value`.
    #[arg(long)]
    pub tag: Option<String>,
}

impl Filters {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        let text = [
            ("since", &self.since),
            ("until", &self.until),
            ("alias", &self.alias),
            ("deployment", &self.deployment),
            ("failed_deployment", &self.failed_deployment),
            ("key", &self.key_id),
            ("team", &self.team),
            ("customer", &self.customer),
            ("outcome", &self.outcome),
            ("error_code", &self.error_code),
            ("tag", &self.tag),
        ];
        for (name, value) in text {
            if let Some(v) = value {
                q.push((name, v.clone()));
            }
        }
        if let Some(s) = self.status {
            q.push(("status", s.to_string()));
        }
        q
    }
}

#[derive(Args, Debug)]
pub struct SpendArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// customer, team, key, org, alias, deployment or tag:NAME.
    #[arg(long, default_value = "alias")]
    pub by: String,
    /// From this time on: Unix milliseconds or a span ago like 24h, 7d (default: all records).
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    /// Split by day, week or month.
    #[arg(long)]
    pub bucket: Option<String>,
    /// Print the API's JSON instead.
    #[arg(long)]
    pub json: bool,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// An authenticated client of one gateway.
struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    fn new(conn: &Connection) -> anyhow::Result<Self> {
        let key = conn
            .key
            .clone()
            .filter(|k| !k.is_empty())
            .or_else(|| {
                std::env::var("SWITCHYARD_MASTER_KEY")
                    .ok()
                    .filter(|k| !k.is_empty())
            })
            .ok_or_else(|| anyhow!("no key: pass --key or set SWITCHYARD_KEY"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            http,
            base: conn.url.trim_end_matches('/').to_owned(),
            key,
        })
    }

    /// POSTs a JSON body to `path` and returns the answer's JSON, or the API's error message.
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway at {}", self.base))?;
        Self::answer(path, response).await
    }

    async fn answer(path: &str, response: reqwest::Response) -> anyhow::Result<Value> {
        let status = response.status();
        let text = response
            .text()
            .await
            .context("the gateway broke off its answer")?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!(
                "the gateway refused the key: give the master key or an admin key with --key or \
                 SWITCHYARD_KEY (HTTP 401)"
            );
        }
        if !status.is_success() {
            let message = body
                .as_ref()
                .and_then(|b| b["error"]["message"].as_str())
                .map_or_else(|| text.trim().to_owned(), str::to_owned);
            bail!("{message} (HTTP {})", status.as_u16());
        }
        body.ok_or_else(|| anyhow!("the gateway answered {path} with something other than JSON"))
    }

    /// GETs `path` and returns its JSON, or the API's error message.
    async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .with_context(|| format!("'{}' is not a URL like http://127.0.0.1:4000", self.base))?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.key)
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway at {}", self.base))?;
        Self::answer(path, response).await
    }
}

fn time_of(unix_ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(unix_ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn tail_table() -> Table {
    Table::new(&[
        ("TIME", false),
        ("ID", false),
        ("ALIAS", false),
        ("DEPLOYMENT", false),
        ("STATUS", true),
        ("OUTCOME", false),
        ("LATENCY_MS", true),
        ("TOKENS_IN/OUT", true),
        ("COST_USD", true),
    ])
}

fn or_dash(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("-").to_owned()
}

/// One row of `requests tail`.
pub fn tail_row(r: &RequestRecord) -> Vec<String> {
    vec![
        time_of(r.started_at_ms),
        r.id.clone(),
        or_dash(r.alias.as_deref()),
        or_dash(r.deployment.as_deref()),
        r.status.to_string(),
        r.outcome.as_str().to_owned(),
        format!("{:.0}", r.duration_ms),
        r.tokens.map_or_else(
            || "-".to_owned(),
            |t| {
                format!(
                    "{}{}/{}",
                    if t.estimated { "~" } else { "" },
                    t.input,
                    t.output
                )
            },
        ),
        r.cost_nanos.map_or_else(|| "-".to_owned(), usd),
    ]
}

fn records_of(page: &Value) -> anyhow::Result<Vec<RequestRecord>> {
    let data = page
        .get("data")
        .ok_or_else(|| anyhow!("the gateway's answer has no 'data'"))?;
    from_text(data).context("the gateway's request records are not in the expected shape")
}

/// Reads records from their JSON through its text: a record keeps its route decision as JSON
/// text, which serde_json reads from text only.
fn from_text<T: serde::de::DeserializeOwned>(value: &Value) -> serde_json::Result<T> {
    serde_json::from_str(&value.to_string())
}

/// A time bound as the admin API reads it: Unix milliseconds, or `N{s,m,h,d,w}` ago.
fn parse_time(value: &str) -> Option<i64> {
    if let Ok(ms) = value.parse::<i64>() {
        return Some(ms);
    }
    let (num, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: i64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        "w" => n * 7 * 86_400,
        _ => return None,
    };
    Some(unix_ms_now() - secs * 1000)
}

fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Narrowest widths of the tail columns, so that follow-up rows line up with the first page.
const TAIL_WIDTHS: [usize; 9] = [20, 32, 14, 30, 6, 14, 10, 13, 10];

async fn tail(args: TailArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.conn)?;
    let mut query = args.filters.query();
    query.push(("limit", args.limit.clamp(1, 1000).to_string()));
    let mut records = records_of(&api.get("/admin/requests", &query).await?)?;
    records.reverse();
    let rows = |records: &[RequestRecord]| {
        let mut t = tail_table();
        for r in records {
            t.push(tail_row(r));
        }
        t
    };
    let first = rows(&records);
    let widths = first.widths_at_least(&TAIL_WIDTHS);
    if args.json {
        for r in &records {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        }
    } else {
        println!("{}", first.header(&widths));
        print!("{}", first.rows_with(&widths));
    }
    if !args.follow {
        return Ok(());
    }
    let mut seen: HashMap<String, i64> = records
        .iter()
        .map(|r| (r.id.clone(), r.started_at_ms))
        .collect();
    let mut newest = records
        .iter()
        .map(|r| r.started_at_ms)
        .max()
        .unwrap_or_else(unix_ms_now);
    let user_since = args.filters.since.as_deref().and_then(parse_time);
    let follow_query = |since: i64| {
        let mut query: Vec<(&str, String)> = args
            .filters
            .query()
            .into_iter()
            .filter(|(k, _)| *k != "since")
            .collect();
        query.push(("since", since.to_string()));
        query.push(("limit", "1000".to_owned()));
        query
    };
    // Records already stored but older than the first page are not news: mark them seen, every
    // page of the lookback (one page left the rest to come out as news at the first look).
    let since = (newest - FOLLOW_LOOKBACK_MS).max(user_since.unwrap_or(i64::MIN));
    let mut query = follow_query(since);
    loop {
        let page = api.get("/admin/requests", &query).await?;
        for r in records_of(&page)? {
            seen.insert(r.id, r.started_at_ms);
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                query.retain(|(k, _)| *k != "cursor");
                query.push(("cursor", cursor.to_owned()));
            }
            None => break,
        }
    }
    loop {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::time::sleep(args.interval).await;
        let since = (newest - FOLLOW_LOOKBACK_MS).max(user_since.unwrap_or(i64::MIN));
        // Page on while a page brings news: more than a page's worth may have come since the
        // last look.
        let mut fresh: Vec<RequestRecord> = Vec::new();
        let mut query = follow_query(since);
        loop {
            let page = api.get("/admin/requests", &query).await?;
            let before = fresh.len();
            fresh.extend(
                records_of(&page)?
                    .into_iter()
                    .filter(|r| !seen.contains_key(&r.id)),
            );
            match page["next_cursor"].as_str() {
                Some(cursor) if fresh.len() > before => {
                    query.retain(|(k, _)| *k != "cursor");
                    query.push(("cursor", cursor.to_owned()));
                }
                _ => break,
            }
        }
        fresh.sort_by(|a, b| a.id.cmp(&b.id));
        for r in &fresh {
            seen.insert(r.id.clone(), r.started_at_ms);
            newest = newest.max(r.started_at_ms);
        }
        seen.retain(|_, started| *started >= since);
        if args.json {
            for r in &fresh {
                println!("{}", serde_json::to_string(r).unwrap_or_default());
            }
        } else {
            print!("{}", rows(&fresh).rows_with(&widths));
        }
    }
}

async fn show(id: &str, json: bool, conn: &Connection) -> anyhow::Result<()> {
    let api = Api::new(conn)?;
    let value = api.get(&format!("/admin/requests/{id}"), &[]).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(());
    }
    let r: RequestRecord =
        from_text(&value).context("the gateway's request record is not in the expected shape")?;
    print!("{}", table::printable(&describe(&r), true));
    Ok(())
}

/// The readable form of one record.
pub fn describe(r: &RequestRecord) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<11}{v}\n"));
    line("id", r.id.clone());
    line("time", time_of(r.started_at_ms));
    line(
        "model",
        format!(
            "{} -> {} ({}, provider {})",
            or_dash(Some(&r.requested_model)),
            or_dash(r.alias.as_deref()),
            or_dash(r.deployment.as_deref()),
            or_dash(r.provider.as_deref()),
        ),
    );
    line(
        "ingress",
        format!(
            "{} {}{}",
            r.ingress,
            r.endpoint,
            if r.stream { ", stream" } else { "" }
        ),
    );
    line("status", format!("{} {}", r.status, r.outcome.as_str()));
    if let Some(code) = &r.error_code {
        line(
            "error",
            format!("{code}: {}", r.error_message.as_deref().unwrap_or("")),
        );
    }
    let mut latency = format!("{:.1} ms", r.duration_ms);
    if let Some(t) = r.ttft_ms {
        latency.push_str(&format!(" (first token after {t:.1} ms)"));
    }
    line("latency", latency);
    if let Some(t) = r.tokens {
        line(
            "tokens",
            format!(
                "{} in (cache read {}, cache write {}), {} out (reasoning {}){}",
                t.input,
                t.cache_read,
                t.cache_write,
                t.output,
                t.reasoning,
                if t.estimated { ", estimated" } else { "" }
            ),
        );
    }
    line("cost", r.cost_nanos.map_or_else(|| "-".to_owned(), usd));
    let c = &r.caller;
    line(
        "caller",
        format!(
            "key {}, team {}, customer {}",
            or_dash(c.key_name.as_deref().or(c.key_id.as_deref())),
            or_dash(c.team.as_deref()),
            or_dash(r.customer.as_deref()),
        ),
    );
    if !r.tags.is_empty() {
        let tags: Vec<String> = r
            .tags
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        line("tags", tags.join(", "));
    }
    if let Some(d) = r.decision.as_ref().map(|d| d.summary()) {
        let mut route = format!("strategy {}", d.strategy.as_deref().unwrap_or("-"));
        if let Some(rule) = &d.rule {
            route.push_str(&format!(", rule {rule}"));
        }
        if !d.fallbacks.is_empty() {
            route.push_str(&format!(", fallbacks {}", d.fallbacks.join(", ")));
        }
        line("route", route);
    }
    if !r.attempts.is_empty() {
        out.push_str("attempts\n");
        let mut t = Table::new(&[
            ("  #", true),
            ("ALIAS", false),
            ("DEPLOYMENT", false),
            ("STATUS", true),
            ("ERROR", false),
            ("LATENCY_MS", true),
            ("NOTES", false),
        ]);
        for (i, a) in r.attempts.iter().enumerate() {
            let mut notes = Vec::new();
            for (flag, name) in [
                (a.retry, "retry"),
                (a.hedged, "hedged"),
                (a.cancelled, "cancelled"),
                (a.fell_back, "fallback"),
            ] {
                if flag {
                    notes.push(name);
                }
            }
            t.push(vec![
                (i + 1).to_string(),
                a.alias.to_string(),
                a.deployment.to_string(),
                a.status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                or_dash(a.error_class.as_deref()),
                format!("{:.1}", a.latency_ms),
                notes.join(","),
            ]);
        }
        out.push_str(&t.render());
        for (i, a) in r.attempts.iter().enumerate() {
            if let Some(message) = &a.error_message {
                out.push_str(&format!("attempt {}: {message}\n", i + 1));
            }
        }
    }
    if let Some(p) = &r.prompt {
        out.push_str(&format!(
            "prompt\n{}\n",
            serde_json::to_string_pretty(p).unwrap_or_default()
        ));
    }
    if let Some(text) = &r.response {
        out.push_str(&format!("response\n{text}\n"));
    }
    out
}

async fn spend(args: SpendArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.conn)?;
    let mut query = vec![("by", args.by.clone())];
    for (name, value) in [
        ("since", &args.since),
        ("until", &args.until),
        ("bucket", &args.bucket),
    ] {
        if let Some(v) = value {
            query.push((name, v.clone()));
        }
    }
    let page = api.get("/admin/spend", &query).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&page).unwrap_or_default()
        );
        return Ok(());
    }
    print!("{}", spend_table(&args.by, &page));
    Ok(())
}

/// The spend page as a table with a total line.
pub fn spend_table(by: &str, page: &Value) -> String {
    let rows = page["data"].as_array().cloned().unwrap_or_default();
    let bucketed = rows.iter().any(|r| r["bucket"].is_string());
    let group_header: &'static str = match by {
        "customer" => "CUSTOMER",
        "team" => "TEAM",
        "key" => "KEY",
        "org" => "ORG",
        "deployment" => "DEPLOYMENT",
        "alias" => "ALIAS",
        _ => "TAG",
    };
    let mut columns = Vec::new();
    if bucketed {
        columns.push(("BUCKET", false));
    }
    columns.extend([
        (group_header, false),
        ("REQUESTS", true),
        ("INPUT_TOKENS", true),
        ("OUTPUT_TOKENS", true),
        ("COST_USD", true),
    ]);
    let mut t = Table::new(&columns);
    let (mut requests, mut input, mut output, mut cost) = (0i64, 0i64, 0i64, 0i64);
    for r in &rows {
        let n = |k: &str| r[k].as_i64().unwrap_or(0);
        requests += n("requests");
        input += n("input_tokens");
        output += n("output_tokens");
        cost += n("cost_nanos");
        let mut row = Vec::new();
        if bucketed {
            row.push(r["bucket"].as_str().unwrap_or("-").to_owned());
        }
        row.extend([
            r["group"]
                .as_str()
                .map_or_else(|| "(none)".to_owned(), str::to_owned),
            n("requests").to_string(),
            n("input_tokens").to_string(),
            n("output_tokens").to_string(),
            usd(n("cost_nanos")),
        ]);
        t.push(row);
    }
    let mut total = Vec::new();
    if bucketed {
        total.push(String::new());
    }
    total.extend([
        "TOTAL".to_owned(),
        requests.to_string(),
        input.to_string(),
        output.to_string(),
        usd(cost),
    ]);
    t.push(total);
    t.render()
}

/// `switchyard requests …`
pub fn requests(command: RequestsCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match command {
        RequestsCommand::Tail(args) => rt.block_on(tail(args))?,
        RequestsCommand::Show { id, json, conn } => rt.block_on(show(&id, json, &conn))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `switchyard spend`
pub fn spend_command(args: SpendArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(spend(args))?;
    Ok(ExitCode::SUCCESS)
}
