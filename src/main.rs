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
    match runtime.block_on(franz::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // An error may carry what a server answered: shown, never run by the terminal; its own lines kept.
            let lines: Vec<String> = format!("{error:#}").lines().map(franz::desk::client::visible).collect();
            eprintln!("error: {}", lines.join("\n"));
            ExitCode::FAILURE
        }
    }
}
