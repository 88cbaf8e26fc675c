//! The settings of franz: one typed struct, resolved and validated, and where each value came from.
//!
//! [`Config`] and its sections are plain serde types; each field has a doc comment, a default in its section's
//! `Default`, and a franz.toml key that is its serde name. [`resolve`] layers flags over the environment, `.env`,
//! franz.toml and the defaults (`sources`), parses text into values or into a rejection that names the setting, its
//! source and the accepted form (`parse`), and keeps each value's origin for `franz config`. It reads files but
//! starts nothing.

mod parse;
mod sources;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::ValueEnum;
use secrecy::{ExposeSecret as _, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use sources::{Flags, Layers, default_config_file, env_names, keys};

/// Everything franz needs, resolved and validated. Sections are tables in franz.toml.
///
/// A new setting is a field with a doc comment and its default, plus its line in `.env.example` and in the README's
/// table (a test checks both). Its environment variable follows from its key ([`env_names`]); a plain `String`,
/// number, switch or address needs no parser, one that needs a range or a better message names one in `parse`.
/// `Serialize` is for `franz config` only (secrets serialize redacted); nothing here crosses a topic.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the topics live: embedded, redpanda, kafka or external (the default once a bootstrap is set).
    #[serde(deserialize_with = "parse::one_of")]
    pub broker: BrokerKind,
    /// The address clients connect to (for `external`, and for every subcommand but `up`).
    #[serde(deserialize_with = "parse::host_ports")]
    pub bootstrap: String,
    /// Where the embedded broker listens.
    #[serde(deserialize_with = "parse::ip_port")]
    pub listen: SocketAddr,
    /// What the embedded broker tells clients to connect to (Kafka's advertised listener), as HOST:PORT; unset,
    /// the listen address. Needed when listening on 0.0.0.0.
    #[serde(deserialize_with = "parse::advertise")]
    pub advertise: Option<String>,
    /// Where the embedded broker keeps its data.
    #[serde(deserialize_with = "parse::from_text")]
    pub data_dir: PathBuf,
    /// Partitions of each topic created at start-up.
    #[serde(deserialize_with = "parse::partitions")]
    pub partitions: i32,
    /// The services `franz up` runs, comma-separated.
    #[serde(rename = "only", deserialize_with = "parse::services")]
    pub services: Vec<Service>,
    /// The container image tag, when not the pinned one.
    #[serde(deserialize_with = "parse::from_text")]
    pub image_tag: Option<String>,
    /// How long after its close a submitter's message reopens a ticket, in whole days from 0 to 365; later, the
    /// message opens a new ticket that follows the closed one.
    #[serde(rename = "reopen_within_days", with = "parse::days")]
    pub reopen_within: Duration,
    /// How many open tickets one submitter may have (a Discord account, a mail address): `/ticket` and a new mail
    /// past it are refused, saying which are open and how to add to them; 0 = no limit.
    #[serde(deserialize_with = "parse::open_tickets_max")]
    pub open_tickets_max: u64,
    /// The names of the topics.
    pub topics: Topics,
    /// Discord credentials and the bot's behaviour.
    pub discord: Discord,
    /// Tickets by email: the mailbox briefkasten reads.
    pub mail: Mail,
    /// Service levels: the answers the team promises, in working time.
    pub service_levels: ServiceLevels,
    /// Satisfaction: whether and how a closed ticket's submitter is asked how it went.
    pub satisfaction: Satisfaction,
    /// The routing rules (`[[routing]]`), in order: the first that matches a new ticket gives it its team,
    /// priority and labels. Only in `franz.toml` (an array of tables); `franz config` shows it when set.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routing: Vec<crate::lifecycle::routing::RuleText>,
    /// The routing rules compiled (checked when the configuration is read).
    #[serde(skip)]
    pub rules: std::sync::Arc<Vec<crate::lifecycle::routing::Rule>>,
    /// How the embedded broker keeps its log.
    pub embedded: Embedded,
    /// The desk: franz's HTTP server (API, and the web pages).
    pub desk: Desk,
    /// Where `/metrics`, `/healthz` and `/readyz` get a listener of their own, as IP:PORT; unset, they are served
    /// on the desk's listener (and not at all when the desk does not run, nor by `franz broker`).
    #[serde(deserialize_with = "parse::optional_ip_port")]
    pub metrics_listen: Option<SocketAddr>,
    /// Keep the embedded broker's data in a temporary directory (the `--ephemeral` flag only).
    #[serde(skip)]
    pub ephemeral: bool,
    /// Leave a container broker running on exit (the `--keep` flag only).
    #[serde(skip)]
    pub keep: bool,
    /// Every setting with its displayed (redacted) value and source, for `franz config`.
    #[serde(skip)]
    pub report: Vec<Setting>,
    /// The files that were read, in precedence order.
    #[serde(skip)]
    pub files_read: Vec<PathBuf>,
    /// What time it is: the system's clock, or a test's ([`crate::clock::Clock::manual`]).
    #[serde(skip)]
    pub clock: crate::clock::Clock,
}

/// The names of the topics.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topics {
    /// Raw intake from Discord and `franz ticket`.
    #[serde(deserialize_with = "parse::topic")]
    pub intake: String,
    /// Normalized tickets.
    #[serde(deserialize_with = "parse::topic")]
    pub tickets: String,
    /// Intake records that could not be normalized.
    #[serde(deserialize_with = "parse::topic")]
    pub dead_letters: String,
    /// Operational problems from any service.
    #[serde(deserialize_with = "parse::topic")]
    pub errors: String,
    /// What people ask akte to do with tickets (key: the ticket id).
    #[serde(deserialize_with = "parse::topic")]
    pub commands: String,
    /// Every change to every ticket, the audit trail the ticket store is built from (key: the ticket id).
    #[serde(deserialize_with = "parse::topic")]
    pub events: String,
    /// Which Discord message is which ticket's staff card, shared by every franz on the cluster (key: the staff
    /// channel and the ticket id).
    #[serde(deserialize_with = "parse::topic")]
    pub cards: String,
    /// The files franz keeps for tickets (a mail's attachments), in chunks (key: the file's SHA-256, the chunk's
    /// index and count).
    #[serde(deserialize_with = "parse::topic")]
    pub files: String,
}

/// Discord credentials. Each is optional: a service whose credentials are missing is skipped.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Discord {
    /// The bot's token (secret); without it the bot does not run.
    #[serde(deserialize_with = "parse::secret", serialize_with = "parse::redacted")]
    pub token: Option<SecretString>,
    /// The application's client id.
    #[serde(deserialize_with = "parse::from_text")]
    pub client_id: Option<String>,
    /// The guild to register `/ticket` in (a numeric snowflake); unset registers it globally.
    #[serde(deserialize_with = "parse::guild_id")]
    pub guild_id: Option<u64>,
    /// Where absturz posts alerts (secret: the URL carries the webhook's token).
    #[serde(deserialize_with = "parse::secret", serialize_with = "parse::redacted")]
    pub webhook_url: Option<SecretString>,
    /// How long a user waits between two tickets, in whole seconds from 0 to 86400.
    #[serde(rename = "cooldown_secs", with = "parse::cooldown_secs")]
    pub cooldown: Duration,
    /// A REST proxy that makes the bot's Discord API calls for it (twilight-http-proxy), as
    /// `http(s)://HOST[:PORT][/PATH]`, without credentials; the bot's own rate limiter is then off, since the proxy
    /// keeps the limits for every bot behind it. Unset, the bot calls discord.com itself.
    #[serde(deserialize_with = "parse::api_proxy")]
    pub api_proxy: Option<String>,
    /// The channel where the bot posts a card per ticket, with Claim, Reply and Close buttons (a numeric id); unset, there
    /// are no cards. Needs `staff_role_id` too.
    #[serde(deserialize_with = "parse::snowflake")]
    pub staff_channel_id: Option<u64>,
    /// The role whose members may press the cards' buttons (a numeric id); anyone else is refused.
    #[serde(deserialize_with = "parse::snowflake")]
    pub staff_role_id: Option<u64>,
    /// Whether the bot sends a ticket's submitter a direct message when the ticket is claimed, gets a public reply,
    /// or is closed (with the reason). On by default; needs the ticket store (akte or the desk in this process).
    #[serde(deserialize_with = "parse::boolean")]
    pub notify_submitter: bool,
    /// Whether the direct message that tells a submitter of the close carries the ticket's transcript as an HTML
    /// file (the conversation without internal notes). Off by default.
    #[serde(deserialize_with = "parse::boolean")]
    pub transcript_on_close: bool,
    /// A channel (a numeric id) where the bot opens a private thread for each new ticket from Discord, adds the
    /// submitter, and carries the conversation there both ways. Needs the Message Content intent; without it the
    /// bot says so at start and uses direct messages. Unset: direct messages only.
    #[serde(deserialize_with = "parse::snowflake")]
    pub ticket_threads: Option<u64>,
}

/// Service levels: targets for the team's first response, next response and resolution, per priority, counted in
/// the working time of a calendar. None until a target is set.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceLevels {
    /// The first public reply after a ticket opens, by priority: `urgent 1h, high 4h, normal 8h` (hours `h`, minutes
    /// `m`, working time); a priority left out has no target.
    #[serde(deserialize_with = "parse::targets")]
    pub first_response: Option<String>,
    /// The team's next public reply after a message of the submitter, by priority, as `first_response`.
    #[serde(deserialize_with = "parse::targets")]
    pub next_response: Option<String>,
    /// The close after a ticket opens, without the time it waits on the submitter, by priority, as
    /// `first_response`.
    #[serde(deserialize_with = "parse::targets")]
    pub resolution: Option<String>,
    /// When the team works: `Mon-Fri 09:00-17:00, Sat 10:00-13:00` (days Mon to Sun, 24:00 ends a day).
    #[serde(deserialize_with = "parse::working_hours")]
    pub hours: String,
    /// The time zone of `hours` and `holidays`, from the IANA database (`Europe/Berlin`).
    #[serde(deserialize_with = "parse::zone")]
    pub zone: String,
    /// Days without working hours, `YYYY-MM-DD`, separated by commas.
    #[serde(deserialize_with = "parse::holidays")]
    pub holidays: Vec<String>,
    /// The share of a target spent when a ticket is due soon, in percent (1 to 99).
    #[serde(deserialize_with = "parse::percent")]
    pub warn_at_percent: u64,
    /// Days a ticket waits on its submitter after the team's public reply before franz closes it ("no answer from
    /// the submitter"); 0: never. Calendar days, 0 to 365.
    #[serde(deserialize_with = "parse::days_count")]
    pub close_when_silent_days: u64,
    /// Days before that close the submitter is reminded (Discord DM or mail); 0: no reminder. Less than
    /// `close_when_silent_days`.
    #[serde(deserialize_with = "parse::days_count")]
    pub remind_before_close_days: u64,
    /// Priorities whose tickets are never closed for silence: `urgent, high`.
    #[serde(deserialize_with = "parse::priorities")]
    pub close_when_silent_except: String,
    /// A team's own targets (`[service_levels.teams.billing]`): each target it names replaces the one above for the
    /// team's tickets; the ones it leaves out are the team-wide ones. Only in `franz.toml`.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub teams: std::collections::BTreeMap<String, TeamTargets>,
}

/// A team's own service-level targets, written as `first_response` above.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeamTargets {
    #[serde(deserialize_with = "parse::targets")]
    pub first_response: Option<String>,
    #[serde(deserialize_with = "parse::targets")]
    pub next_response: Option<String>,
    #[serde(deserialize_with = "parse::targets")]
    pub resolution: Option<String>,
}

impl ServiceLevels {
    /// Whether the team set a target of its own (not only the close of silent tickets).
    pub fn has_targets(&self) -> bool {
        let set = |t: &TeamTargets| t.first_response.is_some() || t.next_response.is_some() || t.resolution.is_some();
        self.first_response.is_some()
            || self.next_response.is_some()
            || self.resolution.is_some()
            || self.teams.values().any(set)
    }

    /// The levels these settings make; `None` when no target is set and silent tickets are never closed.
    pub fn levels(&self) -> Option<crate::lifecycle::levels::Levels> {
        use crate::lifecycle::levels::{self, Target};
        use crate::schema::lifecycle::Priority;
        let read = |texts: [&Option<String>; 3]| {
            let mut targets = std::collections::BTreeMap::new();
            for (target, text) in
                [Target::FirstResponse, Target::NextResponse, Target::Resolution].into_iter().zip(texts)
            {
                // Checked when the setting was read.
                for (priority, time) in
                    text.as_deref().map(levels::parse_targets).and_then(Result::ok).unwrap_or_default()
                {
                    targets.insert((target, priority), time);
                }
            }
            targets
        };
        let mut targets = read([&self.first_response, &self.next_response, &self.resolution]);
        let teams: std::collections::BTreeMap<String, _> = self
            .teams
            .iter()
            .map(|(team, t)| {
                let named = [&t.first_response, &t.next_response, &t.resolution];
                let names: Vec<Target> = [Target::FirstResponse, Target::NextResponse, Target::Resolution]
                    .into_iter()
                    .zip(named)
                    .filter(|(_, text)| text.is_some())
                    .map(|(target, _)| target)
                    .collect();
                (team.clone(), levels::TeamLevels { names, targets: read(named) })
            })
            .collect();
        if self.close_when_silent_days > 0 {
            let except: Vec<_> = self.close_when_silent_except.split(',').filter_map(Priority::parse).collect();
            for priority in Priority::ALL.into_iter().filter(|p| !except.contains(p)) {
                targets.insert((Target::Silence, priority), Duration::from_secs(self.close_when_silent_days * 86_400));
            }
        }
        let calendar = crate::lifecycle::calendar::Calendar::new(&self.zone, &self.hours, &self.holidays).ok()?;
        (!targets.is_empty() || teams.values().any(|team| !team.targets.is_empty())).then(|| levels::Levels {
            teams,
            calendar,
            warn_percent: u32::try_from(self.warn_at_percent).unwrap_or(80),
            targets,
            remind_before: Duration::from_secs(self.remind_before_close_days * 86_400),
        })
    }
}

impl Default for ServiceLevels {
    fn default() -> Self {
        ServiceLevels {
            first_response: None,
            next_response: None,
            resolution: None,
            hours: "Mon-Sun 00:00-24:00".into(),
            zone: "UTC".into(),
            holidays: Vec::new(),
            warn_at_percent: 80,
            close_when_silent_days: 7,
            remind_before_close_days: 2,
            close_when_silent_except: String::new(),
            teams: std::collections::BTreeMap::new(),
        }
    }
}

/// Tickets by email. Off until `imap_url`, `user` and `password` are all set.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mail {
    /// The mailbox new mail arrives in: `imaps://HOST[:PORT]/MAILBOX` (TLS, port 993 by default), or
    /// `imap://HOST[:PORT]/MAILBOX` without TLS, for a server on this machine only (port 143 by default). The
    /// mailbox is INBOX when the URL names none.
    #[serde(deserialize_with = "parse::imap_url")]
    pub imap_url: Option<ImapUrl>,
    /// The mailbox's login name.
    #[serde(deserialize_with = "parse::from_text")]
    pub user: Option<String>,
    /// The mailbox's password (secret), for a provider with two-factor sign-in an app password.
    #[serde(deserialize_with = "parse::secret", serialize_with = "parse::redacted")]
    pub password: Option<SecretString>,
    /// Where a mail goes once its ticket is published: unset, it stays and is flagged as read (`\Seen`); a folder
    /// name moves it there (the folder must exist).
    #[serde(deserialize_with = "parse::from_text")]
    pub move_to: Option<String>,
    /// Seconds between two looks at a server without IDLE; with IDLE, the longest one IDLE lasts before it is
    /// renewed.
    #[serde(deserialize_with = "parse::positive")]
    pub poll_secs: u64,
    /// The largest mail that becomes a ticket, in MiB; a larger one becomes a dead letter with its headers.
    #[serde(deserialize_with = "parse::positive")]
    pub max_mb: u64,
    /// The largest attachment kept with its ticket (downloadable on the desk), in MiB, 0 to 32; a larger one, and
    /// any with 0, is listed on the ticket as not kept.
    #[serde(deserialize_with = "parse::attachment_mb")]
    pub attachment_max_mb: u64,
    /// A PEM file of certificate authorities to trust besides the public ones, for a server whose certificate a
    /// private authority signed.
    #[serde(deserialize_with = "parse::some_path")]
    pub ca_file: Option<PathBuf>,
    /// Where replies are sent: `smtps://HOST[:PORT]` (TLS, port 465 by default), `smtp://HOST[:PORT]` (STARTTLS,
    /// port 587 by default; without TLS only to a server on this machine). Signs in with `user` and `password`.
    /// Unset: franz sends no mail.
    #[serde(deserialize_with = "parse::smtp_url")]
    pub smtp_url: Option<SmtpUrl>,
    /// The address replies come from (`Support <support@example.com>` or a bare address); unset: `user`.
    #[serde(deserialize_with = "parse::from_text")]
    pub from: Option<String>,
    /// Whether a new ticket by mail is answered at once with an acknowledgement that names its token (never a mail
    /// sent by a program, never franz's own address, at most 3 to one sender in 10 minutes). Needs `smtp_url`.
    #[serde(deserialize_with = "parse::boolean")]
    pub acknowledge: bool,
    /// The acknowledgement's text; unset, franz's own.
    #[serde(deserialize_with = "parse::from_text")]
    pub acknowledge_text: Option<String>,
}

/// Where replies are sent: the parsed `mail.smtp_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    /// TLS from the first byte (`smtps://`); else STARTTLS, or nothing to a server on this machine (`smtp://`).
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl SmtpUrl {
    /// Whether the server is on this machine, where `smtp://` may go without TLS.
    pub fn local(&self) -> bool {
        local_host(&self.host)
    }
}

/// Whether `host` is this machine: `localhost`, or a loopback address.
pub fn local_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `host` as a URL writes it: an IPv6 address in brackets.
fn url_host(host: &str) -> std::borrow::Cow<'_, str> {
    if host.contains(':') { format!("[{host}]").into() } else { host.into() }
}

impl std::fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", if self.tls { "smtps" } else { "smtp" }, url_host(&self.host), self.port)
    }
}

impl Serialize for SmtpUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Where the mailbox is: the parsed `mail.imap_url`, which carries no credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapUrl {
    /// TLS from the first byte (`imaps://`), else none (`imap://`, to this machine only).
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub mailbox: String,
}

impl std::fmt::Display for ImapUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "imaps" } else { "imap" };
        let mailbox = percent_encoding::utf8_percent_encode(&self.mailbox, percent_encoding::NON_ALPHANUMERIC);
        write!(f, "{scheme}://{}:{}/{mailbox}", url_host(&self.host), self.port)
    }
}

impl Serialize for ImapUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Satisfaction ratings: the question a closed ticket's submitter is asked once (Discord: five buttons and a
/// comment form; mail: a link to the desk's feedback page).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Satisfaction {
    /// Whether the submitter is asked at all.
    #[serde(deserialize_with = "parse::boolean")]
    pub ask: bool,
    /// The question, as the submitter reads it above the five choices.
    #[serde(deserialize_with = "parse::question")]
    pub question: String,
    /// How long after the close a rating is taken (and may be changed), in whole days from 1 to 365.
    #[serde(rename = "window_days", with = "parse::window_days")]
    pub window: Duration,
}

impl Default for Satisfaction {
    fn default() -> Self {
        Satisfaction {
            ask: true,
            question: "How did we do? Rate your ticket from 1 (bad) to 5 (great).".into(),
            window: Duration::from_secs(7 * 86_400),
        }
    }
}

/// The desk's settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Desk {
    /// Where the desk's HTTP server listens (port 0 picks a free one).
    #[serde(deserialize_with = "parse::ip_port")]
    pub listen: SocketAddr,
    /// The URL people reach the desk at when it is not `listen` (behind a TLS reverse proxy): sign-in links use
    /// it, an `https://` URL makes session cookies `Secure`, and forms posted from its origin are accepted.
    #[serde(deserialize_with = "parse::public_url")]
    pub public_url: Option<String>,
}

/// The embedded broker's storage settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Embedded {
    /// When produced data counts as written: fsynced (`fsync`) or in the page cache (`os`).
    #[serde(deserialize_with = "parse::one_of")]
    pub durability: Durability,
    /// Old segments are deleted after this long (`None`: kept forever); set in hours, 0 keeps them forever.
    #[serde(rename = "retention_hours", with = "parse::retention_hours")]
    pub retention_age: Option<Duration>,
    /// Old segments are deleted while a partition holds more than this (`None`: no limit); set in MiB, 0 for none.
    #[serde(rename = "retention_mb", with = "parse::retention_mb")]
    pub retention_bytes: Option<u64>,
    /// Segment files are closed at about this size; set in MiB from 1 to 1024.
    #[serde(rename = "segment_mb", with = "parse::segment_mb")]
    pub segment_bytes: u64,
    /// Client connections at once; at the limit the least recently active one owed no answer makes room.
    #[serde(deserialize_with = "parse::positive")]
    pub max_connections: u64,
    /// Partitions of all topics together; 0 fits them to the open-file limit (at most 10,000).
    #[serde(deserialize_with = "parse::count")]
    pub max_partitions: u64,
    /// Seconds a client may take to send a request once it has started it.
    #[serde(deserialize_with = "parse::positive")]
    pub frame_timeout_secs: u64,
    /// Seconds a connection with nothing in flight stays open.
    #[serde(deserialize_with = "parse::positive")]
    pub idle_timeout_secs: u64,
    /// Seconds a client may take to read one answer before its connection is closed.
    #[serde(deserialize_with = "parse::positive")]
    pub write_timeout_secs: u64,
    /// The largest request, in MiB (a produce request carries its records).
    #[serde(deserialize_with = "parse::positive")]
    pub max_frame_mb: u64,
    /// The largest request other than a produce request, in MiB.
    #[serde(deserialize_with = "parse::positive")]
    pub max_request_mb: u64,
    /// The largest record batch a produce request may carry for one partition, in MiB.
    #[serde(deserialize_with = "parse::positive")]
    pub max_batch_mb: u64,
    /// Request bytes all connections together may be sending at once, in MiB.
    #[serde(deserialize_with = "parse::positive")]
    pub max_inflight_mb: u64,
    /// Bytes of answers all connections together may hold before fetches read less, in MiB.
    #[serde(deserialize_with = "parse::positive")]
    pub max_answer_mb: u64,
    /// Members one consumer group may have.
    #[serde(deserialize_with = "parse::positive")]
    pub max_group_members: u64,
    /// Consumer groups the broker holds.
    #[serde(deserialize_with = "parse::positive")]
    pub max_groups: u64,
    /// The protocol metadata a group member may bring, and the assignment it may get, in KiB.
    #[serde(deserialize_with = "parse::positive")]
    pub max_member_metadata_kb: u64,
    /// The metadata of all members of one group together (and their assignments together), in KiB.
    #[serde(deserialize_with = "parse::positive")]
    pub max_group_metadata_kb: u64,
}

/// Where the topics live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BrokerKind {
    Embedded,
    Redpanda,
    Kafka,
    External,
}

/// The services `franz up` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    /// The Discord bot (German: the complaints box): `/ticket`, staff cards, conversations.
    Kummerkasten,
    /// Normalizes intake records into tickets, or dead letters (German: preparation).
    Aufbereitung,
    /// Alerts about errors and dead letters to a Discord webhook (German: the crash).
    Absturz,
    /// The ticket lifecycle, one writer per ticket (German: the file).
    Akte,
    /// The ticket store's web pages, API and metrics.
    Desk,
    /// Tickets by email, and replies by mail (German: the letterbox).
    Briefkasten,
}

/// When the embedded broker acknowledges produced data; franz's side of [`franz_broker::Durability`], so the
/// broker crate needs no serde.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    Fsync,
    Os,
}

impl BrokerKind {
    pub fn name(self) -> String {
        parse::name_of(&self)
    }
}

impl Service {
    pub const ALL: [Service; 6] = [
        Service::Kummerkasten,
        Service::Aufbereitung,
        Service::Absturz,
        Service::Akte,
        Service::Desk,
        Service::Briefkasten,
    ];

    pub fn name(self) -> String {
        parse::name_of(&self)
    }
}

impl From<Durability> for franz_broker::Durability {
    fn from(durability: Durability) -> Self {
        match durability {
            Durability::Fsync => franz_broker::Durability::Fsync,
            Durability::Os => franz_broker::Durability::Os,
        }
    }
}

impl Topics {
    pub fn all(&self) -> [&str; 8] {
        [
            &self.intake,
            &self.tickets,
            &self.dead_letters,
            &self.errors,
            &self.commands,
            &self.events,
            &self.cards,
            &self.files,
        ]
    }

    /// The topics whose records are a history or a map that must never expire: created with no retention.
    pub fn kept_forever(&self) -> [&str; 3] {
        [&self.events, &self.cards, &self.files]
    }

    /// The topics that are a map (the newest record of a key is all that counts): compacted where the cluster
    /// can compact.
    pub fn compacted(&self) -> [&str; 1] {
        [&self.cards]
    }

    /// The topics created with one partition, whatever `partitions` says: the card map, which is small and read
    /// whole before every batch of cards, so that all the records of a key are in one order and its newest record
    /// (the one compaction keeps) is the one every reader takes. A topic that exists keeps its partitions.
    pub fn single_partition(&self) -> [&str; 1] {
        [&self.cards]
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            broker: BrokerKind::Embedded,
            bootstrap: DEFAULT_ADDRESS.into(),
            listen: DEFAULT_ADDRESS.parse().expect("the default address parses"),
            advertise: None,
            data_dir: sources::project_dirs()
                .map_or_else(|| PathBuf::from(".franz"), |dirs| dirs.data_dir().to_path_buf()),
            partitions: 3,
            services: Service::ALL.to_vec(),
            image_tag: None,
            reopen_within: crate::lifecycle::Policy::default().reopen_within,
            open_tickets_max: 3,
            topics: Topics::default(),
            discord: Discord::default(),
            mail: Mail::default(),
            service_levels: ServiceLevels::default(),
            satisfaction: Satisfaction::default(),
            routing: Vec::new(),
            rules: Default::default(),
            embedded: Embedded::default(),
            desk: Desk::default(),
            metrics_listen: None,
            ephemeral: false,
            keep: false,
            report: Vec::new(),
            files_read: Vec::new(),
            clock: crate::clock::Clock::system(),
        }
    }
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            intake: "discordMSG".into(),
            tickets: "tickets-formatted".into(),
            dead_letters: "tickets-formatted-dlq".into(),
            errors: "errors".into(),
            commands: "ticket-commands".into(),
            events: "ticket-events".into(),
            cards: "discord-cards".into(),
            files: "ticket-files".into(),
        }
    }
}

impl Default for Discord {
    fn default() -> Self {
        Discord {
            token: None,
            client_id: None,
            guild_id: None,
            webhook_url: None,
            cooldown: Duration::from_secs(10),
            api_proxy: None,
            staff_channel_id: None,
            staff_role_id: None,
            notify_submitter: true,
            transcript_on_close: false,
            ticket_threads: None,
        }
    }
}

impl Default for Mail {
    fn default() -> Self {
        Mail {
            imap_url: None,
            user: None,
            password: None,
            move_to: None,
            poll_secs: 60,
            max_mb: 10,
            attachment_max_mb: 5,
            ca_file: None,
            smtp_url: None,
            from: None,
            acknowledge: true,
            acknowledge_text: None,
        }
    }
}

impl Default for Desk {
    fn default() -> Self {
        Desk { listen: DEFAULT_DESK_ADDRESS.parse().expect("the default address parses"), public_url: None }
    }
}

impl Default for Embedded {
    fn default() -> Self {
        Embedded {
            durability: Durability::Fsync,
            retention_age: Some(Duration::from_secs(168 * 3600)),
            retention_bytes: Some(1 << 30),
            segment_bytes: 64 << 20,
            max_connections: 1024,
            max_partitions: 0,
            frame_timeout_secs: 30,
            idle_timeout_secs: 600,
            write_timeout_secs: 30,
            max_frame_mb: 100,
            max_request_mb: 4,
            max_batch_mb: 16,
            max_inflight_mb: 256,
            max_answer_mb: 512,
            max_group_members: 1000,
            max_groups: 10_000,
            max_member_metadata_kb: 64,
            max_group_metadata_kb: 4096,
        }
    }
}

/// The default address of the embedded broker, and of the broker every other subcommand talks to.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9092";

/// Where the desk listens unless told otherwise.
pub const DEFAULT_DESK_ADDRESS: &str = "127.0.0.1:8080";

/// One line of `franz config`: a setting, its shown value (`None`: not set; secrets redacted) and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub value: Option<String>,
    pub source: String,
}

/// Resolves and validates every setting: flag, then environment, then `.env`, then the TOML file, then default.
pub fn resolve(flags: &Flags, layers: &Layers) -> anyhow::Result<Config> {
    let figment = sources::layered(flags, layers)?;
    let mut config: Config = extract(&figment)?;
    if figment.contains("bootstrap") && !figment.contains("broker") {
        config.broker = BrokerKind::External;
    }
    let names = config.topics.all();
    if (1..names.len()).any(|i| names[..i].contains(&names[i])) {
        bail!("the topic names must differ, got {}", names.join(", "));
    }
    let silence = &config.service_levels;
    if silence.close_when_silent_days > 0
        && silence.remind_before_close_days > 0
        && silence.remind_before_close_days >= silence.close_when_silent_days
    {
        bail!(
            "service_levels.remind_before_close_days ({}, {}) must be less than service_levels.close_when_silent_days \
             ({}, {}): the reminder comes before the close; set it to 0 for none",
            silence.remind_before_close_days,
            sources::origin(&figment, "service_levels.remind_before_close_days"),
            silence.close_when_silent_days,
            sources::origin(&figment, "service_levels.close_when_silent_days"),
        );
    }
    config.rules = std::sync::Arc::new(rules(&config.routing, &layers.files_read, &figment)?);
    for team in config.service_levels.teams.keys() {
        crate::lifecycle::routing::team_name(team).map_err(|why| {
            anyhow::anyhow!(
                "[service_levels.teams.{team}] ({}): {why}",
                sources::origin(&figment, "service_levels.teams")
            )
        })?;
    }
    if let Some(path) = std::env::var_os(crate::clock::TEST_CLOCK) {
        config.clock = crate::clock::Clock::file(path.into())?;
    }
    config.ephemeral = flags.ephemeral;
    config.keep = flags.keep;
    config.files_read = layers.files_read.clone();
    let values = serde_json::to_value(&config).context("cannot show the configuration")?;
    config.report = sources::leaves(values)
        .into_iter()
        .map(|(key, value)| {
            // The routing rules, tables in an array, are shown as they were read, each a JSON object.
            let value = if key == "routing" { Some(value.to_string()) } else { parse::shown(value) };
            Setting { source: sources::origin(&figment, &key), value, key }
        })
        .collect();
    Ok(config)
}

/// The routing rules compiled; one that cannot work stops franz with its place (the file and line of its
/// `[[routing]]`, when a file holds it) and why.
fn rules(
    texts: &[crate::lifecycle::routing::RuleText],
    files: &[PathBuf],
    figment: &figment::Figment,
) -> anyhow::Result<Vec<crate::lifecycle::routing::Rule>> {
    use crate::lifecycle::routing::RULES_MAX;
    if texts.len() > RULES_MAX {
        bail!(
            "{} routing rules ({}); franz takes at most {RULES_MAX}",
            texts.len(),
            sources::origin(figment, "routing")
        );
    }
    let place = |n: usize| {
        files
            .iter()
            .find_map(|file| {
                let text = std::fs::read_to_string(file).ok()?;
                let line = text.lines().enumerate().filter(|(_, line)| routing_header(line)).nth(n)?.0;
                Some(format!("{} line {}", file.display(), line + 1))
            })
            .unwrap_or_else(|| sources::origin(figment, "routing"))
    };
    // `words = []` names the condition with no word: refused, rather than read as no condition (every ticket).
    let empty_words: Vec<bool> = match figment.find_value("routing") {
        Ok(figment::value::Value::Array(_, items)) => items
            .iter()
            .map(|item| {
                item.as_dict()
                    .and_then(|rule| rule.get("words"))
                    .is_some_and(|words| words.as_array().is_some_and(|words| words.is_empty()))
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    texts
        .iter()
        .enumerate()
        .map(|(n, text)| {
            if empty_words.get(n).copied().unwrap_or(false) {
                bail!(
                    "routing rule {} {:?} ({}) cannot work: its words list is empty; list some, or leave it out",
                    n + 1,
                    text.name,
                    place(n)
                );
            }
            let rule = text.compile().map_err(|why| {
                anyhow::anyhow!("routing rule {} {:?} ({}) cannot work: {why}", n + 1, text.name, place(n))
            })?;
            if !seen.insert(rule.name.clone()) {
                bail!(
                    "routing rule {} ({}) has the name {:?} of an earlier rule; each names its own",
                    n + 1,
                    place(n),
                    rule.name
                );
            }
            Ok(rule)
        })
        .collect()
}

/// Whether `line` is an `[[routing]]` header, however TOML lets it be written (spaces inside the brackets, the key
/// quoted, a comment after it).
fn routing_header(line: &str) -> bool {
    let line = line.trim();
    let Some(inner) = line.strip_prefix("[[").and_then(|rest| rest.split_once("]]")) else { return false };
    let (key, after) = inner;
    let after = after.trim();
    (after.is_empty() || after.starts_with('#')) && matches!(key.trim(), "routing" | "\"routing\"" | "'routing'")
}

/// Extracts `T` from the layers. Text from the environment, `.env` and flags is read as a number or a switch where
/// `T` asks for one, so a plain typed field needs no parser. An invalid value names its setting and its origin.
fn extract<T: DeserializeOwned>(figment: &figment::Figment) -> anyhow::Result<T> {
    figment.extract_lossy().map_err(|error| {
        let key = error.path.join(".");
        let from = error.metadata.as_ref().map_or("default", |metadata| &metadata.name);
        anyhow::anyhow!("invalid setting `{key}` (from {from}): {}", error.kind)
    })
}

impl Config {
    /// The configuration as `franz config` prints it: one setting a line, secrets redacted.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let width = self.report.iter().map(|setting| setting.key.len()).max().unwrap_or(0);
        for Setting { key, value, source } in &self.report {
            match value {
                Some(value) => out.push_str(&format!("{key:width$}  {value}  ({source})\n")),
                // A team's own targets are only in franz.toml: no variable names them.
                None if key.starts_with("service_levels.teams.") => {
                    out.push_str(&format!("{key:width$}  (not set: in franz.toml only)\n"))
                }
                None => out.push_str(&format!("{key:width$}  (not set: {})\n", env_names(key).join(" or "))),
            }
        }
        out.push_str("\nfiles read:\n");
        if self.files_read.is_empty() {
            out.push_str("  (none)\n");
        }
        for path in &self.files_read {
            out.push_str(&format!("  {}\n", path.display()));
        }
        if let Some(path) = default_config_file() {
            if !self.files_read.contains(&path) {
                out.push_str(&format!("  ({} does not exist)\n", path.display()));
            }
        }
        out
    }
}

/// The webhook URL for code that must use it. Never log what this returns.
pub fn expose(secret: &SecretString) -> &str {
    secret.expose_secret()
}

#[cfg(test)]
mod tests;
