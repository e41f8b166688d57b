//! The command line: `serve`, `check` and `render` (SPEC §1), and `deliveries` for dead
//! letters and replay. Output and exit codes live here; the work is done by the library.

mod deliveries;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::app::{self, Options, StartError};
use crate::channels::Attempt;
use crate::clock::SystemClock;
use crate::config::{self, Config, ConfigError};
use crate::gateway::Gateway;
use crate::ingest::{self, Format, Inbound};
use crate::outbox::memory::MemoryOutbox;
use crate::outbox::sqlite::SqliteOutbox;

/// The config `serve` runs on when neither `--config` nor `herald.toml` is there.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../examples/quickstart.toml");

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "CI webhooks in; DingTalk, WeCom, Lark, email and webhook messages out."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The config file (default herald.toml; without one, an embedded quickstart config).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate the config and render every reachable template against a sample event.
    Check {
        #[arg(long, default_value = "herald.toml")]
        config: PathBuf,
    },
    /// Dry run: parse FILE as FORMAT and print the event and every request it would send.
    Render {
        #[arg(long)]
        config: PathBuf,
        /// The inbound format: jenkins, jenkins-status, flow or buildbot.
        #[arg(long = "source")]
        source: String,
        /// The payload file.
        file: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List, show and retry stored deliveries (dead letters included).
    Deliveries {
        #[command(subcommand)]
        action: deliveries::Action,
    },
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Check { config } => Ok(check(&config)),
        Command::Render { config, source, file, json } => render(&config, &source, &file, json),
        Command::Deliveries { action } => deliveries::run(action),
    }
}

fn print_errors(errors: &[ConfigError]) {
    for e in errors {
        println!("{e}");
    }
}

fn load_or_report(path: &Path) -> Option<Config> {
    match config::load(path) {
        Ok(c) => Some(c),
        Err(errors) => {
            print_errors(&errors);
            None
        }
    }
}

/// The config `serve` and `deliveries` use: the file given, else `herald.toml` here, else the
/// embedded quickstart config, which keeps its store in `./data`.
fn config_or_default(path: Option<&Path>) -> Result<Config, Vec<ConfigError>> {
    match path {
        Some(p) => config::load(p),
        None if Path::new("herald.toml").exists() => config::load(Path::new("herald.toml")),
        None => {
            tracing::info!("no herald.toml here: using the embedded quickstart config (console channel)");
            config::parse(EMBEDDED_DEFAULT, &|name| std::env::var(name).ok())
        }
    }
}

fn serve(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = config_or_default(path.as_deref()).map_err(|errors| print_errors(&errors));
    let Ok(config) = config else { return Ok(ExitCode::from(2)) };
    let store = SqliteOutbox::open(&config.server.data_dir)
        .with_context(|| format!("opening the store in {}", config.server.data_dir.display()))?;
    tracing::info!(path = %store.path().display(), "store opened");
    let opts = Options { outbox: Arc::new(store), ..Options::default() };
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(async {
        match app::start(&config, opts).await {
            Ok(running) => {
                running.wait().await;
                Ok(ExitCode::SUCCESS)
            }
            Err(StartError::Config(errors)) => {
                print_errors(&errors);
                Ok(ExitCode::from(2))
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// Builds the gateway the way `serve` does, without opening a port.
fn build(config: &Config) -> Result<crate::gateway::Built, Vec<ConfigError>> {
    Gateway::build(config, Arc::new(MemoryOutbox::new()), Arc::new(SystemClock))
}

fn check(path: &Path) -> ExitCode {
    let Some(config) = load_or_report(path) else { return ExitCode::from(1) };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let _guard = runtime.enter();
    match build(&config) {
        Ok(built) => {
            // Stdout holds only the summary line (SPEC §1); warnings go to stderr.
            for w in &built.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: OK ({} channels, {} rules, {} sources{})",
                path.display(),
                config.channels.len(),
                config.rules.len(),
                config.sources.len(),
                match built.warnings.len() {
                    0 => String::new(),
                    1 => ", 1 warning".to_string(),
                    n => format!(", {n} warnings"),
                }
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_errors(&errors);
            ExitCode::from(1)
        }
    }
}

fn render(path: &Path, source: &str, file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let Some(config) = load_or_report(path) else { return Ok(ExitCode::from(1)) };
    let Some(format) = Format::from_name(source) else {
        let known: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
        bail!("unknown format \"{source}\" (known: {})", known.join(", "));
    };
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let _guard = runtime.enter();
    let built = match build(&config) {
        Ok(b) => b,
        Err(errors) => {
            print_errors(&errors);
            return Ok(ExitCode::from(1));
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    let first = text.trim_start().chars().next();
    // A jenkins-status payload that is not JSON is the GET form: a query string.
    let (method, query, body): (&str, String, &[u8]) =
        if format == Format::JenkinsStatus && first != Some('{') {
            ("GET", text.trim().to_string(), &[])
        } else {
            ("POST", String::new(), &bytes)
        };
    let content_type = if first == Some('<') { "application/xml" } else { "application/json" };
    let inbound =
        Inbound { method, headers: vec![("content-type".into(), content_type.into())], query: &query, body };
    // As `serve` parses it, with the source's settings (a Jenkins `base_url`); the first event
    // of a request that carries several (Alertmanager).
    let base_url = built.gateway.sources.get(format.name()).and_then(|s| s.base_url.as_ref());
    let source = ingest::Source { name: format.name(), format, generic: None, base_url };
    let event = ingest::parse_events(&source, &inbound)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("{}: the payload holds no event", file.display()))?;
    let planned = built.gateway.plan(&event);
    let requests: Vec<serde_json::Value> = planned
        .iter()
        .map(|p| {
            let channel = &built.gateway.channels[&p.route.channel];
            let preview = channel.preview(&p.message, &Attempt::first(p.delivery_id.clone()));
            serde_json::json!({
                "rule": p.route.rule,
                "channel": p.route.channel,
                "request": preview,
                "template_errors": p.message.template_errors,
            })
        })
        .collect();
    let mut rules: Vec<&str> = planned.iter().map(|p| p.route.rule.as_str()).collect();
    rules.dedup();
    if json {
        let out = serde_json::json!({ "event": event, "rules": rules, "deliveries": requests });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut shown = serde_json::to_value(&event)?;
    if let Some(obj) = shown.as_object_mut() {
        obj.remove("raw");
    }
    println!("== event ({} {}, final: {})", event.source, event.status, event.is_final);
    println!("{}", serde_json::to_string_pretty(&shown)?);
    println!("\n== matching rules: {}", if rules.is_empty() { "none".to_string() } else { rules.join(", ") });
    for (p, r) in planned.iter().zip(&requests) {
        let req = &r["request"];
        println!("\n== rule \"{}\" → channel \"{}\"", p.route.rule, p.route.channel);
        for e in &p.message.template_errors {
            println!("(template error, sent with the built-in default: {e})");
        }
        println!("{} {}", req["method"].as_str().unwrap_or(""), req["url"].as_str().unwrap_or(""));
        for h in req["headers"].as_array().into_iter().flatten() {
            println!("{}: {}", h[0].as_str().unwrap_or(""), h[1].as_str().unwrap_or(""));
        }
        let body = req["body"].as_str().unwrap_or("");
        let pretty = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| body.to_string());
        println!("\n{pretty}");
    }
    Ok(ExitCode::SUCCESS)
}
