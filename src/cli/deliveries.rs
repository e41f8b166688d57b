//! `herald deliveries list|show|retry`: the admin API's operations, run straight against the
//! store in `server.data_dir`. A running gateway picks replayed deliveries up within a second.
//! The options are read, and the operations run, by `crate::admin`, as the API's are: the same
//! input gets the same answer and message. This module owns the output and the exit code.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;

use crate::admin::{self, Params, DEFAULT_LIMIT, MAX_LIMIT};
use crate::clock::{Clock, SystemClock};
use crate::outbox::sqlite::SqliteOutbox;
use crate::outbox::view::{DeliveryDetail, DeliveryView};

#[derive(Subcommand)]
pub enum Action {
    /// List deliveries, newest first.
    List {
        /// The config file (default herald.toml; without one, the embedded quickstart config).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// pending, retrying, delivered, dead or merged (default: any).
        #[arg(long)]
        state: Option<String>,
        /// Only this channel's deliveries.
        #[arg(long)]
        channel: Option<String>,
        #[arg(
            long,
            value_name = "N",
            // So that `--limit -1` gets the range in the message, not "unexpected argument".
            allow_negative_numbers = true,
            help = format!("At most N deliveries, from 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})")
        )]
        limit: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show one delivery: its message and every attempt, as JSON.
    Show {
        /// The config file (default herald.toml; without one, the embedded quickstart config).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        id: String,
    },
    /// Send deliveries again: the ones named (each must be dead or retrying), or every one in
    /// --state.
    Retry {
        /// The config file (default herald.toml; without one, the embedded quickstart config).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        ids: Vec<String>,
        /// Without IDs: dead (the default) or retrying.
        #[arg(long, conflicts_with = "ids")]
        state: Option<String>,
        /// Without IDs: only this channel's deliveries.
        #[arg(long, conflicts_with = "ids")]
        channel: Option<String>,
    },
}

/// Opens the store of the config at `path` (found as `serve` finds it). Only `server.data_dir`
/// is needed, so only an error there stops the command: it is run from an operator's shell,
/// which seldom has the service's secrets (`${DT_TOKEN}`) in its environment.
fn open(path: Option<&Path>) -> anyhow::Result<SqliteOutbox> {
    let invalid = |errors: Vec<&crate::config::ConfigError>| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("invalid config:\n{}", lines.join("\n"))
    };
    let read = super::read_config(path).1.map_err(|errors| invalid(errors.iter().collect()))?;
    let at_data_dir: Vec<_> =
        read.errors.iter().filter(|e| e.path == "server" || e.path.starts_with("server.data_dir")).collect();
    if !at_data_dir.is_empty() {
        return Err(invalid(at_data_dir));
    }
    let data_dir = &read.config.server.data_dir;
    let db = data_dir.join("herald.db");
    if !db.exists() {
        bail!("no store at {} (server.data_dir): has Herald run with this config?", db.display());
    }
    SqliteOutbox::open_shared(data_dir).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Runs one `deliveries` action. The options are checked before the store is opened.
pub fn run(action: Action) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        match action {
            Action::List { config, state, channel, limit, json } => {
                let filter = Params { state, channel, limit }.list_filter()?;
                let store = open(config.as_deref())?;
                let found = admin::list(&store, &filter).await?;
                let views: Vec<DeliveryView> = found.iter().map(DeliveryView::from).collect();
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&serde_json::json!({ "deliveries": views }))?
                    );
                } else {
                    for v in &views {
                        println!(
                            "{}  {:<9} {:>2} attempts  {:<16} {}  {}",
                            v.id, v.state, v.attempts, v.channel, v.created_at, v.headline.text
                        );
                        if let Some(e) = &v.last_error {
                            println!("    last error: {e}");
                        }
                    }
                    println!("{} deliveries", views.len());
                }
                Ok(ExitCode::SUCCESS)
            }
            Action::Show { config, id } => {
                let store = open(config.as_deref())?;
                let (d, attempts) = admin::show(&store, &id).await?;
                println!("{}", serde_json::to_string_pretty(&DeliveryDetail::new(&d, &attempts))?);
                Ok(ExitCode::SUCCESS)
            }
            Action::Retry { config, ids, state, channel } => {
                let filter = Params { state, channel, limit: None }.retry_filter()?;
                let store = open(config.as_deref())?;
                let now = SystemClock.now_ms();
                let n = if ids.is_empty() {
                    admin::retry_matching(&store, &filter, now).await?
                } else {
                    admin::retry_named(&store, &ids, now).await?
                };
                println!("retried {n} deliveries");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
