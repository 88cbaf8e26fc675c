//! The subcommands, one file each (as tokio's mini-redis lays out its `cmd/`): each parses nothing (that is
//! `cli`), resolves nothing (that is `config`), does one thing, prints for people and scripts (data on standard
//! output, progress and problems on standard error), and returns. `up` and `broker` hand over to `app`, which runs
//! franz until it is told to stop; the rest are short-lived. `desk` is how the short ones that talk to the desk
//! find it.

mod desk;
pub mod produce;
pub mod staff;
pub mod status;
pub mod tail;
pub mod ticket;
pub mod tickets;
pub mod topics;

use std::io::Write;

use crate::app;
use crate::cli::{Cli, Command};
use crate::config::Config;

/// Runs the parsed command line `cli`, with its resolved `config`, to completion.
pub async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Up(_) => app::up(config, &mut stdout).await,
        Command::Broker(_) => app::broker(config, &mut stdout).await,
        Command::Ticket(args) => ticket::ticket(&config, args, &mut stdout).await,
        Command::Tail(args) => tail::tail(&config, args, &mut stdout).await,
        Command::Produce(args) => produce::produce(&config, args, std::io::stdin().lock()).await.map(drop),
        Command::Topics(_) => topics::topics(&config, &mut stdout).await,
        Command::Config => Ok(write!(stdout, "{}", config.render())?),
        Command::Tickets(args) => tickets::tickets(&config, args, &mut stdout).await,
        Command::Staff { action } => staff::staff_command(&config, action, &mut stdout),
        Command::Team { action } => staff::team_command(&config, action, &mut stdout),
        Command::Status(args) => status::status(&config, args.json, args.url, &mut stdout).await,
    }
}
