//! The benchmark's client for what `wrk` cannot do (see `bench/run.sh`).
//!
//! `post` sends exactly N webhooks with bounded concurrency, each a copy of one payload with a
//! distinct `task.buildNumber` (so no two events are the same), and checks every answer. With
//! `--sink`, it then polls the sink's `GET /stats` until N requests have arrived there, and
//! reports events/s from the first post to the last delivery. It prints one JSON object.
//!
//! `ready` polls `GET URL` every millisecond until it answers 200, and prints how many
//! milliseconds have passed since `--since-us` (microseconds since the Unix epoch, taken by the
//! script just before it started the server). With `--pid`, it gives up as soon as that process
//! has exited (a server that could not bind its port, say).
//!
//! ```sh
//! cargo run --release --example bench_post -- post --url http://127.0.0.1:8080/hooks/flow \
//!     --body tests/fixtures/inbound/flow-task-fail.json -n 20000 -c 64 \
//!     --sink http://127.0.0.1:9100/stats
//! cargo run --release --example bench_post -- ready --url http://127.0.0.1:8080/healthz \
//!     --since-us "$(date +%s%6N)"
//! ```

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Post N webhooks and, with --sink, wait until N deliveries have arrived.
    Post {
        #[arg(long)]
        url: String,
        /// The JSON payload; each copy gets a distinct task.buildNumber.
        #[arg(long)]
        body: PathBuf,
        #[arg(short = 'n', long, default_value_t = 20_000)]
        n: usize,
        /// Requests in flight at once.
        #[arg(short = 'c', long, default_value_t = 64)]
        concurrency: usize,
        /// The sink's stats URL (`GET` → `{"count", "first_us", "last_us"}`).
        #[arg(long)]
        sink: Option<String>,
        /// Give up waiting after this many seconds in all.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Wait until GET URL answers 200; print the milliseconds since --since-us.
    Ready {
        #[arg(long)]
        url: String,
        #[arg(long)]
        since_us: u64,
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Give up at once when this process has exited (Linux: read from /proc).
        #[arg(long)]
        pid: Option<u32>,
    },
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Post { url, body, n, concurrency, sink, timeout } => {
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            runtime.block_on(post(url, body, n, concurrency, sink, Duration::from_secs(timeout)))
        }
        Command::Ready { url, since_us, timeout, pid } => {
            ready(&url, since_us, Duration::from_secs(timeout), pid)
        }
    }
}

/// Copies of the payload, each with `task.buildNumber` set to its index (from 1).
fn bodies(path: &PathBuf, n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut value: serde_json::Value = serde_json::from_str(&text).context("the payload is not JSON")?;
    (1..=n)
        .map(|i| {
            if let Some(task) = value.get_mut("task").and_then(|t| t.as_object_mut()) {
                task.insert("buildNumber".into(), serde_json::Value::String(i.to_string()));
            }
            Ok(serde_json::to_vec(&value)?)
        })
        .collect()
}

async fn post(
    url: String,
    body: PathBuf,
    n: usize,
    concurrency: usize,
    sink: Option<String>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let bodies = bodies(&body, n)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    let deadline = Instant::now() + timeout;

    let started_us = now_us();
    let started = Instant::now();
    let statuses: Vec<Result<u16, String>> = futures_util::stream::iter(bodies)
        .map(|b| {
            let request = client.post(&url).header("Content-Type", "application/json").body(b);
            async move {
                match request.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let _ = resp.bytes().await;
                        Ok(status)
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let ingest = started.elapsed();
    let ingest_done_us = now_us();

    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut first_error = None;
    for s in &statuses {
        let key = match s {
            Ok(code) => code.to_string(),
            Err(e) => {
                first_error.get_or_insert_with(|| e.clone());
                "error".to_string()
            }
        };
        *by_status.entry(key).or_default() += 1;
    }
    let accepted = statuses.iter().filter(|s| matches!(s, Ok(200..=299))).count();

    let mut out = serde_json::json!({
        "n": n,
        "concurrency": concurrency,
        "accepted": accepted,
        "statuses": by_status,
        "first_error": first_error,
        "started_us": started_us,
        "ingest_done_us": ingest_done_us,
        "ingest_s": ingest.as_secs_f64(),
        "ingest_rps": n as f64 / ingest.as_secs_f64(),
    });

    if let Some(stats_url) = sink {
        let (mut count, mut last_us) = (0u64, 0u64);
        while Instant::now() < deadline {
            let stats: serde_json::Value = client.get(&stats_url).send().await?.json().await?;
            count = stats["count"].as_u64().unwrap_or(0);
            last_us = stats["last_us"].as_u64().unwrap_or(0);
            if count >= n as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let e2e_s = last_us.saturating_sub(started_us) as f64 / 1e6;
        let complete = count >= n as u64;
        out["delivered"] = count.into();
        out["complete"] = complete.into();
        out["last_delivery_us"] = last_us.into();
        out["e2e_s"] = e2e_s.into();
        out["e2e_eps"] = if complete && e2e_s > 0.0 { (n as f64 / e2e_s).into() } else { 0.0.into() };
    }
    println!("{out}");
    Ok(())
}

/// One `GET` over a fresh connection; true when the answer is 200.
fn get_ok(addr: &SocketAddr, host: &str, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// True while the process runs (it exists and is not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesized command name.
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

fn ready(url: &str, since_us: u64, timeout: Duration, pid: Option<u32>) -> anyhow::Result<()> {
    let parsed = url::Url::parse(url).context("--url")?;
    let host = parsed.host_str().context("--url has no host")?.to_string();
    let port = parsed.port_or_known_default().context("--url has no port")?;
    let addr = (host.as_str(), port).to_socket_addrs()?.next().context("--url does not resolve")?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if get_ok(&addr, &host, parsed.path()) {
            let elapsed_ms = now_us().saturating_sub(since_us) as f64 / 1000.0;
            println!("{elapsed_ms:.1}");
            return Ok(());
        }
        if let Some(pid) = pid.filter(|&p| !alive(p)) {
            bail!("process {pid} exited before {url} answered");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    bail!("{url} did not answer 200 within {}s", timeout.as_secs())
}
