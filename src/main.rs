//! The `franz` binary: parse the command line, set up logging, run, and turn the outcome into an exit code.
//!
//! Everything else lives in the library crate (`franz::run`), where tests can reach it.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

fn main() -> ExitCode {
    let cli = franz::cli::Cli::parse();
    let filter = EnvFilter::try_from_env("FRANZ_LOG").unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn"));
    // Whatever FRANZ_LOG says, the crates that log what they send (a mail password among it) log nothing.
    let secrets = tracing_subscriber::filter::filter_fn(|meta| !franz::telling_secrets(meta.target()));
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    tracing_subscriber::registry().with(output.with_filter(filter).with_filter(secrets)).init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(franz::run(cli));
    // Dropping the runtime would wait for everything on its blocking pool, and a librdkafka call there can wait for
    // ever for a cluster that is gone. `franz up` has waited for its services already (see `app::Running::wait`);
    // what is left gets this long, then is abandoned with the process.
    runtime.shutdown_timeout(franz::app::EXIT_GRACE / 2);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // An error may carry what a server answered: shown, never run by the terminal; its own lines kept.
            let lines: Vec<String> = format!("{error:#}").lines().map(franz::terminal::visible).collect();
            eprintln!("error: {}", lines.join("\n"));
            ExitCode::FAILURE
        }
    }
}
