//! The `herald` binary: parse the command line, set up logging, run, and report errors.

use std::io::{BufWriter, IsTerminal, Stderr};
use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: an event's parse, render and store allocate
/// hundreds of small blocks across several threads, where glibc's malloc spent about a tenth
/// of Herald's CPU time (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How many log lines may wait for the log thread before a logging call blocks.
const LOG_QUEUE_LINES: usize = 4096;

/// Log lines are formatted on the thread that logs them and written to stderr by a thread of
/// their own, in batches: with `HERALD_LOG=debug` a busy gateway logs two lines an event, and a
/// write system call each would cost more than the event. Nothing is dropped (the queue blocks
/// when full), and what is queued is flushed when `main` returns.
fn log_writer() -> (tracing_appender::non_blocking::NonBlocking, tracing_appender::non_blocking::WorkerGuard)
{
    let stderr: BufWriter<Stderr> = BufWriter::with_capacity(64 * 1024, std::io::stderr());
    tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        // The queue is allocated whole at start: the default, 128,000 lines, took 4 MB of
        // memory at idle. Per-event lines are `debug`, so at `info` a few thousand is plenty.
        .buffered_lines_limit(LOG_QUEUE_LINES)
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
        // Colours for a terminal only: a log file or journald gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match herald::cli::run(herald::cli::Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
