//! The `franz` binary: parse the command line, set up logging, run, and turn the outcome into an exit code.
//!
//! Everything else lives in the library crate (`franz::run`), where tests can reach it.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = franz::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("FRANZ_LOG").unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
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
