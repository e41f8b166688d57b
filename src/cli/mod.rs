//! The command line: `serve`, `check` and `render` (SPEC §1), and `deliveries` for dead
//! letters and replay. Output and exit codes live here; the work is done by the library.

mod deliveries;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::app::{self, Options};
use crate::channels::Attempt;
use crate::clock::SystemClock;
use crate::config::{self, ConfigError};
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
        /// The config file (default herald.toml; without one, the embedded quickstart config
        /// `serve` would run on).
        #[arg(long)]
        config: Option<PathBuf>,
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
        Command::Check { config } => Ok(check(config.as_deref())),
        Command::Render { config, source, file, json } => render(&config, &source, &file, json),
        Command::Deliveries { action } => deliveries::run(action),
    }
}

fn print_errors(errors: &[ConfigError]) {
    for e in errors {
        println!("{e}");
    }
}

/// Reads the config `serve`, `check` and `deliveries` use: the file given, else `herald.toml`
/// here, else the embedded quickstart config, which keeps its store in `./data`. Returns what
/// to call it in messages, too.
fn read_config(path: Option<&Path>) -> (String, Result<config::Read, Vec<ConfigError>>) {
    match path {
        Some(p) => (p.display().to_string(), config::read(p)),
        None if Path::new("herald.toml").exists() => {
            ("herald.toml".into(), config::read(Path::new("herald.toml")))
        }
        None => {
            tracing::info!("no herald.toml here: using the embedded quickstart config (console channel)");
            let name = "the embedded quickstart config (no herald.toml here)".to_string();
            (name, config::read_text(EMBEDDED_DEFAULT, &|name| std::env::var(name).ok()))
        }
    }
}

fn serve(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    // The whole config is checked before the store is opened or a port bound.
    let validated = {
        let _guard = runtime.enter();
        read_config(path.as_deref()).1.and_then(app::validate)
    };
    let (config, compiled) = match validated {
        Ok(v) => v,
        Err(errors) => {
            print_errors(&errors);
            return Ok(ExitCode::from(2));
        }
    };
    let store = SqliteOutbox::open(&config.server.data_dir)
        .with_context(|| format!("opening the store in {}", config.server.data_dir.display()))?;
    tracing::info!(path = %store.path().display(), "store opened");
    let opts = Options { outbox: Arc::new(store), ..Options::default() };
    runtime.block_on(async {
        match app::start_compiled(&config, compiled, opts).await {
            Ok(running) => {
                running.wait().await;
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Err(e.into()),
        }
    })
}

fn check(path: Option<&Path>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let _guard = runtime.enter();
    let (name, read) = read_config(path);
    match read.and_then(app::validate) {
        Ok((config, compiled)) => {
            // Stdout holds only the summary line (SPEC §1); warnings go to stderr.
            for w in &compiled.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{name}: OK ({} channels, {} rules, {} sources{})",
                config.channels.len(),
                config.rules.len(),
                config.sources.len(),
                match compiled.warnings.len() {
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
    let Some(format) = Format::from_name(source) else {
        let known: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
        bail!("unknown format \"{source}\" (known: {})", known.join(", "));
    };
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let _guard = runtime.enter();
    let built = match config::read(path).and_then(app::validate) {
        Ok((_, compiled)) => compiled.assemble(Arc::new(MemoryOutbox::new()), Arc::new(SystemClock)),
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
    let mut event = ingest::parse_events(&source, &inbound)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("{}: the payload holds no event", file.display()))?;
    // Routed as a gateway with no history of this pipeline would route it: a final failure is
    // a first failure (`when.transition`), with a streak of one.
    crate::state::observe(None, &mut event, crate::clock::Clock::now_ms(&SystemClock));
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
    // Every matching rule, including one whose channels an earlier rule already sends to.
    let rules: Vec<&str> = built.gateway.rules.matching(&event).map(|r| r.name.as_str()).collect();
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
    for rule in rules.iter().filter(|r| !planned.iter().any(|p| p.route.rule == **r)) {
        println!("\n== rule \"{rule}\": nothing of its own: an earlier rule sends to each of its channels (one message per channel, with every matching rule's mentions)");
    }
    Ok(ExitCode::SUCCESS)
}
