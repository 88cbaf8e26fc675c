//! franz: Kafka-based ticketing in one binary.
//!
//! The library holds everything the `franz` binary does, so tests can drive it in-process; `main.rs` only parses
//! flags, sets up logging and calls [`run`]. ARCHITECTURE.md is the map of the modules below.

pub mod app;
pub mod attachments;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod desk;
pub mod discord;
pub mod feedback;
pub mod files;
pub mod intake;
pub mod kafka;
pub mod lifecycle;
pub mod mailbox;
pub mod metrics;
pub mod ops;
pub mod people;
pub mod schema;
pub mod services;
pub mod store;
pub mod terminal;
pub mod transcript;
pub mod troubles;

use cli::{Cli, Command};
use config::{Config, Flags, Layers};

/// The log targets that write what they send or receive word for word (the IMAP client logs its sign-in with the
/// password at trace level): logged by no `FRANZ_LOG` filter.
pub const SECRET_TELLING_TARGETS: [&str; 3] = ["async_imap", "imap_proto", "lettre"];

/// Whether a log record from `target` could carry a secret ([`SECRET_TELLING_TARGETS`]).
pub fn telling_secrets(target: &str) -> bool {
    SECRET_TELLING_TARGETS.iter().any(|silenced| target == *silenced || target.starts_with(&format!("{silenced}::")))
}

/// Resolves the configuration for a parsed command line, reading the environment, `.env` and franz.toml.
pub fn configure(cli: &Cli) -> anyhow::Result<Config> {
    let flags = match &cli.command {
        Command::Up(up) => Flags {
            broker: up.broker.clone(),
            bootstrap: up.bootstrap.clone(),
            listen: up.embedded.listen.clone(),
            advertise: up.embedded.advertise.clone(),
            data_dir: up.embedded.data_dir.clone(),
            partitions: up.partitions.clone(),
            only: up.only.clone(),
            ephemeral: up.embedded.ephemeral,
            image_tag: up.image_tag.clone(),
            keep: up.keep,
            desk_listen: up.desk_listen.clone(),
            metrics_listen: up.metrics_listen.clone(),
        },
        Command::Broker(args) => Flags {
            broker: Some("embedded".into()),
            listen: args.embedded.listen.clone(),
            advertise: args.embedded.advertise.clone(),
            data_dir: args.embedded.data_dir.clone(),
            ephemeral: args.embedded.ephemeral,
            metrics_listen: args.metrics_listen.clone(),
            ..Flags::default()
        },
        Command::Ticket(args) => Flags { bootstrap: args.broker.bootstrap.clone(), ..Flags::default() },
        Command::Tail(args) => Flags { bootstrap: args.broker.bootstrap.clone(), ..Flags::default() },
        Command::Produce(args) => Flags { bootstrap: args.broker.bootstrap.clone(), ..Flags::default() },
        Command::Topics(args) => Flags { bootstrap: args.bootstrap.clone(), ..Flags::default() },
        Command::Config | Command::Tickets(_) | Command::Staff { .. } | Command::Team { .. } | Command::Status(_) => {
            Flags::default()
        }
    };
    let working_dir = std::env::current_dir()?;
    let layers = Layers::load(&working_dir, cli.config.as_deref())?;
    config::resolve(&flags, &layers)
}

/// Runs one parsed command line to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = configure(&cli)?;
    cmd::run(cli, config).await
}

/// How many cases a property test with a count of its own runs: `PROPTEST_CASES` when it is set (`cargo xtask props`
/// sets it), else `default`.
#[cfg(test)]
pub(crate) fn test_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(default)
}
