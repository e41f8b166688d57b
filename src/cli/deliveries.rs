//! `herald deliveries list|show|retry`: the admin API's operations, run straight against the
//! store in `server.data_dir`. A running gateway picks replayed deliveries up within a second.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;

use crate::clock::{Clock, SystemClock};
use crate::outbox::sqlite::SqliteOutbox;
use crate::outbox::view::{DeliveryDetail, DeliveryView};
use crate::outbox::{DeliveryState, ListFilter, Outbox};

#[derive(Subcommand)]
pub enum Action {
    /// List deliveries, newest first.
    List {
        /// The config file (default herald.toml; without one, the embedded quickstart config).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// pending, retrying, delivered, dead or merged.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
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
    /// Send deliveries again: the ones named, or every one in --state (default dead).
    Retry {
        /// The config file (default herald.toml; without one, the embedded quickstart config).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        ids: Vec<String>,
        #[arg(long, default_value = "dead")]
        state: String,
        #[arg(long)]
        channel: Option<String>,
    },
}

fn parse_state(s: &str) -> anyhow::Result<DeliveryState> {
    DeliveryState::parse(s).with_context(|| {
        let known: Vec<&str> = DeliveryState::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown state \"{s}\" (one of {})", known.join(", "))
    })
}

fn open(path: Option<&Path>) -> anyhow::Result<SqliteOutbox> {
    let cfg = super::config_or_default(path).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("invalid config:\n{}", lines.join("\n"))
    })?;
    let db = cfg.server.data_dir.join("herald.db");
    if !db.exists() {
        bail!("no store at {} (server.data_dir): has Herald run with this config?", db.display());
    }
    SqliteOutbox::open_shared(&cfg.server.data_dir).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Runs one `deliveries` action.
pub fn run(action: Action) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        match action {
            Action::List { config, state, channel, limit, json } => {
                let store = open(config.as_deref())?;
                let filter =
                    ListFilter { state: state.as_deref().map(parse_state).transpose()?, channel, limit };
                let found = store.list(&filter).await?;
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
                match store.get(&id).await? {
                    Some((d, attempts)) => {
                        println!("{}", serde_json::to_string_pretty(&DeliveryDetail::new(&d, &attempts))?);
                        Ok(ExitCode::SUCCESS)
                    }
                    None => bail!("no delivery \"{id}\""),
                }
            }
            Action::Retry { config, ids, state, channel } => {
                let store = open(config.as_deref())?;
                let state = parse_state(&state)?;
                if !matches!(state, DeliveryState::Dead | DeliveryState::Retrying) {
                    bail!("--state must be dead or retrying");
                }
                let filter = ListFilter { state: Some(state), channel, limit: usize::MAX };
                let n = store.replay(&ids, &filter, SystemClock.now_ms()).await?;
                println!("retried {n} deliveries");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
