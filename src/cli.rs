//! The command line: every subcommand, flag and help text of the `franz` binary.
//!
//! This module only describes and parses; it resolves nothing. Flags that are also settings (`--bootstrap`,
//! `--partitions`, …) are handed to `config`, which layers them over the environment, `.env` and `franz.toml`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "franz",
    version,
    about = "Kafka-based ticketing in one binary: a broker, the topics, the pipeline services and the ticket desk",
    long_about = "Kafka-based ticketing in one binary. `franz up` starts a Kafka-protocol broker (or connects to \
                  one), creates the topics and runs the pipeline services; the other subcommands talk to that broker.\n\n\
                  Settings come from flags, then the environment, then a .env file in the working directory, then \
                  franz.toml in the config directory (see `franz config`), then defaults."
)]
pub struct Cli {
    /// Read settings from this TOML file instead of franz.toml in the config directory.
    #[arg(long, global = true, value_name = "FILE", env = "FRANZ_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the broker (or connect to one), create the topics and run the services until Ctrl-C.
    Up(UpArgs),
    /// Run only the embedded broker (no topics created, no services) until Ctrl-C, for other clients to use.
    Broker(BrokerOnlyArgs),
    /// Submit a ticket exactly as the Discord bot does and print its id once the broker has it.
    Ticket(TicketArgs),
    /// Print the records of a topic as JSON lines.
    Tail(TailArgs),
    /// Publish each line of standard input as one record (for scripts and test data).
    Produce(ProduceArgs),
    /// List the topics with their partition counts and end offsets.
    Topics(BrokerArgs),
    /// Print the resolved configuration (secrets redacted) and the files it was read from.
    Config,
    /// List, search, show and work tickets through the running desk (claim, comment, close, ...).
    Tickets(TicketsArgs),
    /// How the running franz is doing: readiness, services, lag, alerts; exits non-zero when it is not ready.
    Status(StatusArgs),
    /// Manage who may work tickets: each staff member gets a personal sign-in link and API token.
    Staff {
        #[command(subcommand)]
        action: StaffAction,
    },
    /// Manage teams: the routing rules and a move give a ticket to one; staff members join them.
    Team {
        #[command(subcommand)]
        action: TeamAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum TeamAction {
    /// Add a team (1 to 32 lower-case letters, digits, - and _; not `triage`, where tickets of no team are), or
    /// change where an existing one is in Discord.
    Add {
        name: String,
        /// The team's own staff channel in Discord: its tickets' cards go there (and move with a ticket moved to
        /// another team). Needs --discord-role; the bot needs View Channel, Send Messages and Embed Links
        /// there.
        #[arg(long, value_name = "CHANNEL_ID", requires = "discord_role")]
        discord_channel: Option<u64>,
        /// The role whose members may press the buttons of the cards in the team's channel (as well as the staff
        /// role of DISCORD_STAFF_ROLE_ID).
        #[arg(long, value_name = "ROLE_ID", requires = "discord_channel")]
        discord_role: Option<u64>,
        /// The team's cards go back to the staff channel of DISCORD_STAFF_CHANNEL_ID.
        #[arg(long, conflicts_with_all = ["discord_channel", "discord_role"])]
        no_discord: bool,
        /// Offer the team in /ticket's category menu with this text (at most 100 characters): the submitter's
        /// choice routes the ticket to the team.
        #[arg(long, value_name = "TEXT")]
        category: Option<String>,
        /// Take the team out of /ticket's category menu.
        #[arg(long, conflicts_with = "category")]
        no_category: bool,
    },
    /// List the teams and who is in each.
    List,
    /// Remove a team and who was in it; its tickets keep its name until they are moved.
    Remove { name: String },
}

/// `franz status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON (readiness and every metric sample) for scripts.
    #[arg(long)]
    pub json: bool,

    /// The running franz's desk or --metrics-listen URL, as franz printed it (a trailing /metrics is fine)
    /// [default: from the desk's local credential, else the configured addresses]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum StaffAction {
    /// Add someone (or give them a new token, ending the old one and their browsers' sessions) and print their
    /// sign-in link and API token once.
    Add {
        /// Their name, as events and the desk show it (1 to 64 characters).
        name: String,
        /// Their Discord user id (Developer Mode, then right-click them, Copy User ID): their presses of the staff
        /// cards' buttons then act as them. Same as `franz staff link-discord NAME USER_ID` afterwards.
        #[arg(long, value_name = "USER_ID", value_parser = discord_user_id)]
        discord: Option<u64>,
        /// Put them in this team (`franz team add` makes it first); repeat for several.
        #[arg(long, value_name = "TEAM")]
        team: Vec<String>,
    },
    /// Print a new sign-in link for someone on the staff list (it works once, within 7 days), for another browser
    /// or device; their token and other sessions stay.
    Link { name: String },
    /// List the staff.
    List,
    /// Remove someone; their links, token, browser sessions and linked Discord accounts stop working at once.
    Remove { name: String },
    /// Tie a Discord account to someone on the staff list: their presses of the staff cards' buttons act as them,
    /// and, from the first link on, only linked accounts (with the staff role) may press those buttons.
    LinkDiscord {
        name: String,
        /// The Discord user id (Developer Mode, then right-click the user, Copy User ID).
        #[arg(value_name = "USER_ID", value_parser = discord_user_id)]
        user_id: u64,
    },
    /// Untie a Discord account from someone on the staff list; it can no longer press the staff cards' buttons.
    UnlinkDiscord {
        name: String,
        #[arg(value_name = "USER_ID", value_parser = discord_user_id)]
        user_id: u64,
    },
}

/// A Discord user id: a snowflake, a positive number of up to 20 digits.
fn discord_user_id(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(format!(
            "{text:?} is not a Discord user id, which is a number like 80351110224678912 (in Discord: Settings, \
             Advanced, Developer Mode on; then right-click the user, Copy User ID)"
        )),
    }
}

/// `franz tickets`: without an action, the list (newest first).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = false)]
pub struct TicketsArgs {
    #[command(subcommand)]
    pub action: Option<TicketsAction>,

    /// Only tickets with this status: open, claimed, waiting (on the submitter, after a public reply) or closed.
    #[arg(long, value_name = "STATUS", global = true)]
    pub status: Option<String>,

    /// Only tickets whose submitter wrote since the team's last public reply.
    #[arg(long, global = true)]
    pub answered: bool,

    /// Only tickets with a service-level target due within a day (missed ones included), the soonest due first.
    #[arg(long, global = true)]
    pub due: bool,

    /// Only tickets whose body, contact or comments contain these words.
    #[arg(long, value_name = "TEXT", global = true)]
    pub search: Option<String>,

    /// Only tickets of this team (`triage`: of no team).
    #[arg(long, value_name = "TEAM", global = true)]
    pub team: Option<String>,

    /// How many tickets to list (1 to 200).
    #[arg(long, value_name = "N", default_value_t = 50, global = true)]
    pub limit: usize,

    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,

    /// A staff token (from `franz staff add`); without it, the desk's local credential on this machine is used.
    #[arg(long, value_name = "TOKEN", env = "FRANZ_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,

    /// Send the staff token (--token) to a desk over plain http on another host, where anyone on the network can
    /// read it; without this, only an https:// or a loopback address gets the token.
    #[arg(long, global = true)]
    pub insecure: bool,

    /// With the local credential: the name your actions are recorded under [default: your login name]
    #[arg(long = "as", value_name = "NAME", global = true)]
    pub acting_as: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TicketsAction {
    /// A ticket and its whole history.
    Show { id: String },
    /// The closed tickets most like one, how each was closed, and the labels and team they suggest.
    Similar { id: String },
    /// A ticket's conversation (its messages, public replies, closes and reopens; never an internal note) as plain
    /// text, or as one self-contained HTML page with --html: `franz tickets transcript ID --html > ticket.html`.
    Transcript {
        id: String,
        /// One HTML page that runs no script and loads nothing, to keep or send on.
        #[arg(long, conflicts_with = "text")]
        html: bool,
        /// Plain text (the default).
        #[arg(long)]
        text: bool,
    },
    /// Every ticket created since a date, with its times, team, labels and who held and closed it, streamed to
    /// standard output: `franz tickets export --since 2026-12-01 > tickets.csv`. A count goes to standard error.
    Export {
        /// From this date (2026-12-01, from its midnight UTC) or time (2026-12-01T08:00:00Z) on.
        #[arg(long, value_name = "DATE")]
        since: String,
        /// csv (a header line, then a line per ticket; labels joined with ;) or jsonl (a JSON object per line).
        #[arg(long, value_name = "FORMAT", default_value = "csv", value_parser = ["csv", "jsonl"])]
        format: String,
    },
    /// Take a ticket.
    Claim { id: String },
    /// Give a ticket back to the queue.
    Unclaim { id: String },
    /// Give a ticket to someone (taking it from whoever holds it).
    Assign { id: String, name: String },
    /// Reply to the submitter, or leave an internal note with --internal; --saved NAME sends a saved reply instead
    /// of TEXT, its {contact}, {ticket} and {agent} filled for this ticket.
    Comment {
        id: String,
        #[arg(required_unless_present = "saved", conflicts_with = "saved")]
        text: Option<String>,
        /// An internal note for the team, not a reply.
        #[arg(long)]
        internal: bool,
        /// Send the saved reply of this name (the desk's Saved replies page, or `GET /api/replies`).
        #[arg(long, value_name = "NAME")]
        saved: Option<String>,
    },
    /// Set the priority: low, normal, high or urgent.
    Priority { id: String, priority: String },
    /// Add a label (or remove it with --remove).
    Label {
        id: String,
        label: String,
        #[arg(long)]
        remove: bool,
    },
    /// Close a ticket, saying why.
    Close { id: String, reason: String },
    /// Open a closed ticket again.
    Reopen { id: String },
    /// Give a ticket to a team (`triage`: to none), saying why.
    Move {
        id: String,
        team: String,
        #[arg(long)]
        reason: String,
    },
}

/// How to reach the broker, for every subcommand that talks to one.
#[derive(Debug, Args, Default)]
pub struct BrokerArgs {
    /// The broker to talk to [default: 127.0.0.1:9092, or KAFKA_BROKER / FRANZ_BOOTSTRAP]
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: Option<String>,
}

#[derive(Debug, Args, Default)]
pub struct UpArgs {
    /// Where the topics live: embedded (franz's own broker), redpanda or kafka (a container), external
    /// (an existing cluster; implied by --bootstrap) [default: embedded]
    #[arg(long, value_name = "KIND")]
    pub broker: Option<String>,

    /// Connect to an existing Kafka cluster at this address instead of starting a broker.
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: Option<String>,

    #[command(flatten)]
    pub embedded: EmbeddedArgs,

    /// Run only these services (comma-separated): kummerkasten, aufbereitung, absturz, akte, desk, briefkasten
    /// [default: all]
    #[arg(long, value_name = "SERVICE,...", value_delimiter = ',')]
    pub only: Vec<String>,

    /// Partitions of each topic created at start-up [default: 3]
    #[arg(long, value_name = "N")]
    pub partitions: Option<String>,

    /// With --broker redpanda|kafka: run this image tag instead of the pinned one (e.g. v24.3.6 or 4.0.0)
    #[arg(long, value_name = "TAG")]
    pub image_tag: Option<String>,

    /// With --broker redpanda|kafka: leave the container running on exit and print how to reach and remove it;
    /// the next start on the same address reuses it.
    #[arg(long)]
    pub keep: bool,

    /// Where the desk (the API and the web pages) listens; port 0 picks a free one [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub desk_listen: Option<String>,

    /// Serve /metrics, /healthz and /readyz on this address of their own (needed when the desk does not run)
    /// [default: on the desk's listener]
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

/// `franz broker`.
#[derive(Debug, Args, Default)]
pub struct BrokerOnlyArgs {
    #[command(flatten)]
    pub embedded: EmbeddedArgs,

    /// Serve the broker's /metrics, /healthz and /readyz on this address; port 0 picks a free one
    /// [default: metrics_listen of the configuration, else not served]
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

/// Where the embedded broker listens and keeps its data (`franz up` and `franz broker`).
#[derive(Debug, Args, Default)]
pub struct EmbeddedArgs {
    /// The address the embedded broker listens on; port 0 picks a free one [default: 127.0.0.1:9092]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// What the broker tells clients to connect to, as HOST:PORT (Kafka's advertised listener); needed with a
    /// --listen of 0.0.0.0 [default: the listen address]
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,

    /// Where the embedded broker keeps its data [default: the platform's data directory]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Keep the embedded broker's data in a temporary directory that is removed on exit.
    #[arg(long)]
    pub ephemeral: bool,
}

#[derive(Debug, Args)]
pub struct TicketArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,

    /// The submitter's name, as the `username` field.
    #[arg(long, value_name = "NAME")]
    pub user: String,

    /// The submitter's id (the record key) [default: the name]
    #[arg(long, value_name = "ID")]
    pub user_id: Option<String>,

    /// The ticket text (1 to 4000 characters).
    pub message: String,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,

    /// The topic to read.
    pub topic: String,

    /// Start at the oldest record instead of only showing new ones.
    #[arg(long)]
    pub from_beginning: bool,

    /// Stop after this many records.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,

    /// Stop when no record has arrived for this many seconds; with --limit, exit 1 if fewer arrived.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,

    /// The topic to publish to.
    pub topic: String,

    /// The key of every record [default: none]
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
