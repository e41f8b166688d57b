//! Wiring: config → gateway, outbox and worker; the HTTP server; and an orderly shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::clock::{Clock, SystemClock};
use crate::config::Rate;
use crate::config::{self, Config, ConfigError};
use crate::delivery::governor::Governor;
use crate::delivery::{self, RetryPolicy, Worker};
use crate::gateway::{Compiled, Gateway};
use crate::http::{self, AppState};
use crate::listen::{self, Listeners};
use crate::outbox::memory::MemoryOutbox;
use crate::outbox::Outbox;
use crate::threads;

/// How long the server's open connections get to finish after a stop is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long in-flight attempts may run on once the server has stopped, before they are cut
/// off and recorded so.
const ATTEMPT_GRACE: Duration = Duration::from_secs(8);

/// How long the worker then has to record the last attempts and commit them: longer than the
/// store's wait for a lock (`busy_timeout`, 5 s), so a slow commit is not cut short.
const RECORD_GRACE: Duration = Duration::from_secs(7);

/// Attempts the delivery worker keeps in flight at once.
const WORKER_CONCURRENCY: usize = 128;

/// The most of those one robot may hold when there are others: a robot that hangs until its
/// timeout leaves a quarter of the worker to the rest. A lone robot may use them all.
const ROBOT_SLOTS: usize = WORKER_CONCURRENCY * 3 / 4;

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid config ({} errors)", .0.len())]
    Config(Vec<ConfigError>),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    /// A raw listener could not bind (the message names the address).
    #[error("{0}")]
    Listen(std::io::Error),
    #[error("cannot start the delivery worker's thread: {0}")]
    Worker(std::io::Error),
}

/// Knobs that tests and later backends set; `Default` is production.
pub struct Options {
    pub outbox: Arc<dyn Outbox>,
    pub clock: Arc<dyn Clock>,
    /// Overrides the retry policy from `[delivery]`.
    pub retry: Option<RetryPolicy>,
    /// Let actix stop the server on SIGINT/SIGTERM (off in tests).
    pub signals: bool,
    /// How long a webhook's body may take to arrive once its headers are in.
    pub body_timeout: Duration,
}

/// A sender has this long to send a webhook's whole body (at most `server.max_body_bytes`)
/// once its headers are in; one that stalls half-way gets 408 and loses the connection.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for Options {
    fn default() -> Self {
        Options {
            outbox: Arc::new(MemoryOutbox::new()),
            clock: Arc::new(SystemClock),
            retry: None,
            signals: true,
            body_timeout: BODY_TIMEOUT,
        }
    }
}

/// A running gateway.
pub struct Running {
    pub addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    server: actix_web::dev::ServerHandle,
    server_task: JoinHandle<std::io::Result<()>>,
    /// Answered when the delivery worker's thread has stopped.
    worker: oneshot::Receiver<()>,
    shutdown: watch::Sender<bool>,
    listeners: Listeners,
}

/// Every error in a config at once: what reading it found, then what compiling the parts that
/// were read found (bad globs, missing or failing templates, what a channel cannot be built
/// with), less what only repeats an error about the same value. Compiling needs a runtime.
pub fn validate(read: config::Read) -> Result<(Config, Compiled), Vec<ConfigError>> {
    // Without its `[templates]`, the templates the rules name could only be reported missing.
    match Gateway::compile_checking(&read.config, read.templates_read) {
        Ok(compiled) if read.errors.is_empty() => Ok((read.config, compiled)),
        compiled => {
            let found: Vec<ConfigError> =
                compiled.err().unwrap_or_default().into_iter().filter(|e| !read.repeats(e)).collect();
            let found = read.hide(found);
            let mut errors = read.errors;
            errors.extend(found);
            Err(errors)
        }
    }
}

/// Validates the config, binds the port and starts the HTTP server and the delivery worker.
/// A bad config stops it before the port opens.
pub async fn start(config: &Config, opts: Options) -> Result<Running, StartError> {
    let compiled = Gateway::compile(config).map_err(StartError::Config)?;
    start_compiled(config, compiled, opts).await
}

/// `start`, with the config already compiled (and so known to be good).
pub async fn start_compiled(
    config: &Config,
    compiled: Compiled,
    opts: Options,
) -> Result<Running, StartError> {
    let built = compiled.assemble(opts.outbox.clone(), opts.clock.clone());
    for w in &built.warnings {
        tracing::warn!("config: {w}");
    }
    let gateway = Arc::new(built.gateway);
    // Raw listeners bind first: if HTTP then fails to bind, dropping them stops them.
    let (shutdown, shutdown_rx) = watch::channel(false);
    let listeners =
        listen::spawn(config, gateway.clone(), shutdown_rx.clone()).await.map_err(StartError::Listen)?;
    let state = web::Data::new(AppState {
        gateway: gateway.clone(),
        max_body_bytes: config.server.max_body_bytes,
        body_timeout: opts.body_timeout,
        admin_token: config.server.admin_token.clone(),
    });
    // Signals are Herald's own (see `stop_on_signal`), not actix's.
    let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(http::configure))
        .workers(2)
        .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
        .disable_signals()
        .bind(&config.server.listen)
        .map_err(|source| StartError::Bind { addr: config.server.listen.clone(), source })?;
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    let server_task = tokio::spawn(server);
    if opts.signals {
        tokio::spawn(stop_on_signal(handle.clone()));
    }

    let worker = spawn_worker(worker(config, &gateway, opts.outbox, opts.clock, opts.retry), shutdown_rx)
        .map_err(StartError::Worker)?;
    tracing::info!(%addr, channels = gateway.channels.len(), rules = gateway.rules.rules().len(), "Herald is listening");
    Ok(Running { addr, gateway, server: handle, server_task, worker, shutdown, listeners })
}

/// Stops the server gracefully on SIGTERM or SIGINT alike: it stops accepting and lets the
/// requests it is reading finish (actix's own handling would cut them off on SIGINT, and a
/// webhook half-read is lost to its sender). `Running::wait` then stops the rest. A second
/// signal exits at once.
async fn stop_on_signal(server: actix_web::dev::ServerHandle) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot listen for SIGTERM and SIGINT: stop Herald with SIGKILL (it loses nothing)");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!("{name} received: stopping gracefully (a second signal stops at once)");
    tokio::spawn(async move { server.stop(true).await });
    // An operator who presses Ctrl-C again wants out now: what is in flight is stored, and
    // sent again by the next start.
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    // Straight to stderr: the log's own writer is not flushed by an exit.
    eprintln!("herald: second {name}: exiting at once; what was in flight is sent again at the next start");
    std::process::exit(130);
}

/// Runs the worker on a thread and runtime of its own, at a lower priority than the accept
/// path (see `threads`): its sends and their connections stay on one thread, and a burst of
/// webhooks is accepted first and delivered as the CPUs free up.
fn spawn_worker(worker: Worker, shutdown: watch::Receiver<bool>) -> std::io::Result<oneshot::Receiver<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (stopped, done) = oneshot::channel();
    std::thread::Builder::new().name("herald-delivery".into()).spawn(move || {
        threads::lower_priority(threads::DELIVERY_NICE);
        runtime.block_on(worker.run(shutdown));
        let _ = stopped.send(());
    })?;
    Ok(done)
}

/// The delivery worker for a gateway: the retry policy (from `[delivery]` unless overridden),
/// and one rate governor over every robot the channels send to.
pub fn worker(
    config: &Config,
    gateway: &Gateway,
    outbox: Arc<dyn Outbox>,
    clock: Arc<dyn Clock>,
    retry: Option<RetryPolicy>,
) -> Worker {
    let rates: HashMap<String, Vec<Rate>> =
        config.channels.iter().map(|c| (c.name.clone(), c.rates())).collect();
    let robots = delivery::robots(&gateway.channels, &rates);
    let governor = Governor::new(robots.iter().map(|(k, r)| (k.clone(), r.rates.clone())).collect());
    Worker {
        outbox,
        channels: gateway.channels.clone(),
        clock,
        policy: retry.unwrap_or_else(|| RetryPolicy::from_config(&config.delivery)),
        handoff: gateway.handoff.clone(),
        batch: 64,
        concurrency: WORKER_CONCURRENCY,
        robot_slots: if robots.len() > 1 { ROBOT_SLOTS } else { WORKER_CONCURRENCY },
        lease: Duration::from_millis(gateway.handoff.lease_ms() as u64),
        governor: Arc::new(governor),
        robots: Arc::new(robots),
        max_wait: config.delivery.max_wait.0,
        drain: ATTEMPT_GRACE,
    }
}

impl Running {
    /// The raw TCP/UDP listeners and their bound addresses.
    pub fn listeners(&self) -> &Listeners {
        &self.listeners
    }

    /// Waits until the server stops (on SIGINT/SIGTERM), then lets in-flight attempts finish.
    pub async fn wait(self) {
        let Running { server_task, worker, shutdown, listeners, .. } = self;
        if let Ok(Err(e)) = server_task.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
        // Stop taking raw messages before the worker stops, so what they stored is delivered.
        listeners.stop().await;
        finish_worker(worker, shutdown).await;
    }

    /// Stops accepting, then lets in-flight attempts finish.
    pub async fn stop(self) {
        self.server.stop(true).await;
        let _ = self.server_task.await;
        self.listeners.stop().await;
        finish_worker(self.worker, self.shutdown).await;
    }
}

async fn finish_worker(worker: oneshot::Receiver<()>, shutdown: watch::Sender<bool>) {
    let _ = shutdown.send(true);
    let grace = ATTEMPT_GRACE + RECORD_GRACE;
    match tokio::time::timeout(grace, worker).await {
        Ok(_) => tracing::info!("delivery worker stopped"),
        Err(_) => tracing::warn!("delivery worker did not stop within {}s", grace.as_secs()),
    }
}
