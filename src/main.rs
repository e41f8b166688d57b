//! The `herald` binary: parse the command line, set up logging, run, and report errors.

use std::io::{BufWriter, Stderr};
use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: an event's parse, render and store allocate
/// hundreds of small blocks across several threads, where glibc's malloc spent about a tenth
/// of Herald's CPU time (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Log lines are formatted on the thread that logs them and written to stderr by a thread of
/// their own, in batches: a busy gateway logs two lines an event, and a write system call each
/// would cost more than the event. Nothing is dropped (the queue blocks when full), and what
/// is queued is flushed when `main` returns.
fn log_writer() -> (tracing_appender::non_blocking::NonBlocking, tracing_appender::non_blocking::WorkerGuard)
{
    let stderr: BufWriter<Stderr> = BufWriter::with_capacity(64 * 1024, std::io::stderr());
    tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("herald-log")
        .finish(stderr)
}

fn main() -> ExitCode {
    let (writer, _flush_on_exit) = log_writer();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(writer)
        .init();
    match herald::cli::run(herald::cli::Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
