//! The resolved, validated configuration of franz, and where each value came from.
//!
//! Every setting is looked up in order: command-line flag, process environment, `.env` in the working directory,
//! `franz.toml` in the config directory, default. A value that does not parse fails here, naming the setting,
//! where it came from and the accepted form, so nothing downstream sees an invalid setting. This module reads
//! files but starts nothing.

use franz_broker::Durability;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use secrecy::{ExposeSecret as _, SecretString};

/// Where the topics live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Embedded,
    Redpanda,
    Kafka,
    External,
}

impl BrokerKind {
    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "embedded" => Some(Self::Embedded),
            "redpanda" => Some(Self::Redpanda),
            "kafka" => Some(Self::Kafka),
            "external" => Some(Self::External),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Redpanda => "redpanda",
            Self::Kafka => "kafka",
            Self::External => "external",
        }
    }
}

/// The services `franz up` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Kummerkasten,
    Aufbereitung,
    Absturz,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Kummerkasten, Service::Aufbereitung, Service::Absturz];

    pub fn name(self) -> &'static str {
        match self {
            Self::Kummerkasten => "kummerkasten",
            Self::Aufbereitung => "aufbereitung",
            Self::Absturz => "absturz",
        }
    }
}

/// The names of the four topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Raw intake from Discord and `franz ticket`.
    pub intake: String,
    /// Normalized tickets.
    pub tickets: String,
    /// Intake records that could not be normalized.
    pub dead_letters: String,
    /// Operational problems from any service.
    pub errors: String,
}

impl Topics {
    pub fn all(&self) -> [&str; 4] {
        [&self.intake, &self.tickets, &self.dead_letters, &self.errors]
    }
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            intake: "discordMSG".into(),
            tickets: "tickets-formatted".into(),
            dead_letters: "tickets-formatted-dlq".into(),
            errors: "errors".into(),
        }
    }
}

/// Discord credentials. Each is optional: a service whose credentials are missing is skipped.
#[derive(Debug, Default)]
pub struct Discord {
    pub token: Option<SecretString>,
    pub client_id: Option<String>,
    /// The guild to register `/ticket` in (a numeric snowflake); unset registers it globally.
    pub guild_id: Option<u64>,
    pub webhook_url: Option<SecretString>,
    /// How long a user waits between two tickets.
    pub cooldown: std::time::Duration,
}

/// The embedded broker's storage settings.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// When produced data counts as written: fsynced (`fsync`) or in the page cache (`os`).
    pub durability: franz_broker::Durability,
    /// Old segments are deleted after this long (`None`: kept forever).
    pub retention_age: Option<std::time::Duration>,
    /// Old segments are deleted while a partition holds more than this (`None`: no limit).
    pub retention_bytes: Option<u64>,
    /// Segment files are closed at about this size.
    pub segment_bytes: u64,
}

/// Everything franz needs, resolved and validated.
#[derive(Debug)]
pub struct Config {
    pub broker: BrokerKind,
    /// The address clients connect to (for `external`, and for every subcommand but `up`).
    pub bootstrap: String,
    /// Where the embedded broker listens.
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub ephemeral: bool,
    pub partitions: i32,
    /// The container image tag, when not the pinned one.
    pub image_tag: Option<String>,
    /// Leave a container broker running on exit.
    pub keep: bool,
    /// How the embedded broker keeps its log.
    pub embedded: Embedded,
    pub services: Vec<Service>,
    pub topics: Topics,
    pub discord: Discord,
    /// Every setting with its displayed (redacted) value and source, for `franz config`.
    pub report: Vec<(&'static str, String, Source)>,
    /// The files that were read, in precedence order.
    pub files_read: Vec<PathBuf>,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(&'static str),
    DotEnv(&'static str),
    File,
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("flag"),
            Source::Env(var) => write!(f, "environment {var}"),
            Source::DotEnv(var) => write!(f, ".env {var}"),
            Source::File => f.write_str("franz.toml"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// One setting: its key in franz.toml (dotted for tables), the environment variables that set it (first wins),
/// and whether its value is secret.
struct Key {
    name: &'static str,
    env: &'static [&'static str],
    secret: bool,
}

const fn key(name: &'static str, env: &'static [&'static str]) -> Key {
    Key { name, env, secret: false }
}

const BROKER: Key = key("broker", &["FRANZ_BROKER"]);
const BOOTSTRAP: Key = key("bootstrap", &["FRANZ_BOOTSTRAP", "KAFKA_BROKER"]);
const LISTEN: Key = key("listen", &["FRANZ_LISTEN"]);
const DATA_DIR: Key = key("data_dir", &["FRANZ_DATA_DIR"]);
const PARTITIONS: Key = key("partitions", &["FRANZ_PARTITIONS"]);
const ONLY: Key = key("only", &["FRANZ_ONLY"]);
const IMAGE_TAG: Key = key("image_tag", &["FRANZ_IMAGE_TAG"]);
const TOPIC_INTAKE: Key = key("topics.intake", &["FRANZ_TOPIC_INTAKE"]);
const TOPIC_TICKETS: Key = key("topics.tickets", &["FRANZ_TOPIC_TICKETS"]);
const TOPIC_DEAD_LETTERS: Key = key("topics.dead_letters", &["FRANZ_TOPIC_DEAD_LETTERS"]);
const TOPIC_ERRORS: Key = key("topics.errors", &["FRANZ_TOPIC_ERRORS"]);
const DISCORD_TOKEN: Key = Key { name: "discord.token", env: &["DISCORD_TOKEN"], secret: true };
const DISCORD_CLIENT_ID: Key = key("discord.client_id", &["DISCORD_CLIENT_ID"]);
const DISCORD_GUILD_ID: Key = key("discord.guild_id", &["DISCORD_GUILD_ID"]);
const TICKET_COOLDOWN: Key = key("discord.cooldown_secs", &["FRANZ_TICKET_COOLDOWN"]);
const DISCORD_WEBHOOK_URL: Key = Key { name: "discord.webhook_url", env: &["DISCORD_WEBHOOK_URL"], secret: true };
const DURABILITY: Key = key("embedded.durability", &["FRANZ_DURABILITY"]);
const RETENTION_HOURS: Key = key("embedded.retention_hours", &["FRANZ_RETENTION_HOURS"]);
const RETENTION_MB: Key = key("embedded.retention_mb", &["FRANZ_RETENTION_MB"]);
const SEGMENT_MB: Key = key("embedded.segment_mb", &["FRANZ_SEGMENT_MB"]);

const KEYS: [&Key; 20] = [
    &DURABILITY,
    &RETENTION_HOURS,
    &RETENTION_MB,
    &SEGMENT_MB,
    &TICKET_COOLDOWN,
    &IMAGE_TAG,
    &BROKER,
    &BOOTSTRAP,
    &LISTEN,
    &DATA_DIR,
    &PARTITIONS,
    &ONLY,
    &TOPIC_INTAKE,
    &TOPIC_TICKETS,
    &TOPIC_DEAD_LETTERS,
    &TOPIC_ERRORS,
    &DISCORD_TOKEN,
    &DISCORD_CLIENT_ID,
    &DISCORD_GUILD_ID,
    &DISCORD_WEBHOOK_URL,
];

/// The default address of the embedded broker, and of the broker every other subcommand talks to.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9092";

/// Values given on the command line, by setting name.
#[derive(Debug, Default)]
pub struct Flags {
    pub broker: Option<String>,
    pub bootstrap: Option<String>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub partitions: Option<String>,
    pub only: Vec<String>,
    pub ephemeral: bool,
    pub image_tag: Option<String>,
    pub keep: bool,
}

impl Flags {
    fn get(&self, key: &Key) -> Option<String> {
        match key.name {
            "broker" => self.broker.clone(),
            "bootstrap" => self.bootstrap.clone(),
            "listen" => self.listen.clone(),
            "data_dir" => self.data_dir.as_ref().map(|p| p.display().to_string()),
            "partitions" => self.partitions.clone(),
            "image_tag" => self.image_tag.clone(),
            "only" if !self.only.is_empty() => Some(self.only.join(",")),
            _ => None,
        }
    }
}

/// The layers below the flags. Kept apart from the process so tests can resolve without touching it.
#[derive(Default)]
pub struct Layers {
    pub env: HashMap<String, String>,
    pub dotenv: HashMap<String, String>,
    pub file: toml::Table,
    pub files_read: Vec<PathBuf>,
}

impl Layers {
    /// Reads the process environment, `.env` in `working_dir` and the TOML file (`config_file`, or franz.toml in
    /// the config directory). Missing files are fine; unreadable or malformed ones are errors.
    pub fn load(working_dir: &Path, config_file: Option<&Path>) -> anyhow::Result<Self> {
        let mut layers = Layers { env: std::env::vars().collect(), ..Layers::default() };
        let dotenv = working_dir.join(".env");
        if dotenv.is_file() {
            for item in dotenvy::from_path_iter(&dotenv).with_context(|| format!("cannot read {}", dotenv.display()))? {
                // dotenvy's error quotes the whole line, which may hold a token: say where, not what.
                let (name, value) = item.map_err(|error| {
                    let at = match error {
                        dotenvy::Error::LineParse(_, index) => format!(" near character {index} of a line"),
                        _ => String::new(),
                    };
                    anyhow::anyhow!(
                        "{} is malformed{at} (check its quoting; the line is not shown because it may hold a secret)",
                        dotenv.display()
                    )
                })?;
                layers.dotenv.insert(name, value);
            }
            layers.files_read.push(dotenv);
        }
        let file = match config_file {
            Some(path) if !path.is_file() => bail!("config file {} does not exist", path.display()),
            Some(path) => Some(path.to_path_buf()),
            None => default_config_file(),
        };
        if let Some(path) = file.filter(|p| p.is_file()) {
            let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            // toml's error quotes the offending line, which may hold a token: say where, not what.
            layers.file = text.parse::<toml::Table>().map_err(|error| {
                let line = error.span().map(|span| text[..span.start.min(text.len())].lines().count().max(1));
                let at = line.map(|l| format!(" at line {l}")).unwrap_or_default();
                anyhow::anyhow!("{} is not valid TOML{at}: {}", path.display(), error.message())
            })?;
            check_known_keys(&layers.file, "", &path)?;
            layers.files_read.push(path);
        }
        Ok(layers)
    }

    fn lookup(&self, flags: &Flags, key: &'static Key) -> Option<(String, Source)> {
        if let Some(value) = flags.get(key) {
            return Some((value, Source::Flag));
        }
        for var in key.env {
            if let Some(value) = self.env.get(*var).filter(|v| !v.is_empty()) {
                return Some((value.clone(), Source::Env(var)));
            }
        }
        for var in key.env {
            if let Some(value) = self.dotenv.get(*var).filter(|v| !v.is_empty()) {
                return Some((value.clone(), Source::DotEnv(var)));
            }
        }
        let mut node = toml::Value::Table(self.file.clone());
        for part in key.name.split('.') {
            node = node.as_table()?.get(part)?.clone();
        }
        let text = match node {
            toml::Value::String(s) => s,
            toml::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        Some((text, Source::File))
    }
}

/// Shows which variables and keys are set, never their values: they include secrets.
impl fmt::Debug for Layers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut dotenv: Vec<&String> = self.dotenv.keys().collect();
        dotenv.sort();
        f.debug_struct("Layers")
            .field("env", &format_args!("{} variables", self.env.len()))
            .field("dotenv", &dotenv)
            .field("file", &self.file.keys().collect::<Vec<_>>())
            .field("files_read", &self.files_read)
            .finish()
    }
}

/// franz.toml in the platform's config directory, if the platform has one.
pub fn default_config_file() -> Option<PathBuf> {
    project_dirs().map(|dirs| dirs.config_dir().join("franz.toml"))
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "franz")
}

fn check_known_keys(table: &toml::Table, prefix: &str, path: &Path) -> anyhow::Result<()> {
    for (name, value) in table {
        let full = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        match value {
            toml::Value::Table(inner) if KEYS.iter().any(|k| k.name.starts_with(&format!("{full}."))) => {
                check_known_keys(inner, &full, path)?
            }
            _ if KEYS.iter().any(|k| k.name == full) => {}
            _ => {
                let known: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
                bail!("unknown setting `{full}` in {}; known settings: {}", path.display(), known.join(", "))
            }
        }
    }
    Ok(())
}

/// Resolves and validates every setting.
pub fn resolve(flags: &Flags, layers: &Layers) -> anyhow::Result<Config> {
    let mut resolver = Resolver { flags, layers, report: Vec::new() };

    let bootstrap = resolver.get(&BOOTSTRAP);
    let bootstrap_given = bootstrap.is_some();
    let bootstrap = match bootstrap {
        Some((value, source)) => {
            check_host_port(&value).map(|()| value).map_err(|why| invalid(&BOOTSTRAP, &source, why))?
        }
        None => resolver.default(&BOOTSTRAP, DEFAULT_ADDRESS),
    };
    let broker = match resolver.get(&BROKER) {
        Some((value, source)) => BrokerKind::parse(&value).ok_or_else(|| {
            invalid(&BROKER, &source, format!("{value:?} is not one of embedded, redpanda, kafka, external"))
        })?,
        None if bootstrap_given => {
            resolver.report.push((BROKER.name, "external".into(), Source::Default));
            BrokerKind::External
        }
        None => {
            resolver.default(&BROKER, "embedded");
            BrokerKind::Embedded
        }
    };
    let listen = match resolver.get(&LISTEN) {
        Some((value, source)) => value
            .parse()
            .map_err(|_| invalid(&LISTEN, &source, format!("{value:?} is not IP:PORT, e.g. 127.0.0.1:9092")))?,
        None => resolver.default(&LISTEN, DEFAULT_ADDRESS).parse().expect("the default address parses"),
    };
    let data_dir = match resolver.get(&DATA_DIR) {
        Some((value, _)) => PathBuf::from(value),
        None => {
            let dir = project_dirs().map(|d| d.data_dir().to_path_buf()).unwrap_or_else(|| PathBuf::from(".franz"));
            resolver.default(&DATA_DIR, &dir.display().to_string());
            dir
        }
    };
    let partitions = match resolver.get(&PARTITIONS) {
        Some((value, source)) => value
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| invalid(&PARTITIONS, &source, format!("{value:?} is not an integer from 1 to 1000")))?,
        None => resolver.default(&PARTITIONS, "3").parse().expect("the default parses"),
    };
    let services = match resolver.get(&ONLY) {
        Some((value, source)) => parse_services(&value).map_err(|why| invalid(&ONLY, &source, why))?,
        None => {
            resolver.default(&ONLY, "all");
            Service::ALL.to_vec()
        }
    };
    let image_tag = resolver.get(&IMAGE_TAG).map(|(value, _)| value);
    let defaults = Topics::default();
    let topics = Topics {
        intake: resolver.topic(&TOPIC_INTAKE, &defaults.intake)?,
        tickets: resolver.topic(&TOPIC_TICKETS, &defaults.tickets)?,
        dead_letters: resolver.topic(&TOPIC_DEAD_LETTERS, &defaults.dead_letters)?,
        errors: resolver.topic(&TOPIC_ERRORS, &defaults.errors)?,
    };
    let names = topics.all();
    if (1..names.len()).any(|i| names[..i].contains(&names[i])) {
        bail!("the four topic names must differ, got {}", names.join(", "));
    }
    let webhook_url = resolver.get(&DISCORD_WEBHOOK_URL).map(|(value, _)| SecretString::from(value));
    let discord = Discord {
        token: resolver.get(&DISCORD_TOKEN).map(|(value, _)| SecretString::from(value)),
        client_id: resolver.get(&DISCORD_CLIENT_ID).map(|(value, _)| value),
        guild_id: match resolver.get(&DISCORD_GUILD_ID) {
            Some((value, source)) => Some(value.trim().parse::<u64>().map_err(|_| {
                invalid(
                    &DISCORD_GUILD_ID,
                    &source,
                    format!("{value:?} is not a numeric guild id (right-click the server → Copy Server ID)"),
                )
            })?),
            None => None,
        },
        webhook_url,
        cooldown: match resolver.get(&TICKET_COOLDOWN) {
            Some((value, source)) => value
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| *s <= 86_400)
                .map(std::time::Duration::from_secs)
                .ok_or_else(|| {
                    invalid(&TICKET_COOLDOWN, &source, format!("{value:?} is not a number of seconds from 0 to 86400"))
                })?,
            None => std::time::Duration::from_secs(
                resolver.default(&TICKET_COOLDOWN, "10").parse().expect("the default parses"),
            ),
        },
    };

    let durability = match resolver.get(&DURABILITY) {
        Some((value, source)) => match value.trim() {
            "fsync" => Durability::Fsync,
            "os" => Durability::Os,
            _ => return Err(invalid(&DURABILITY, &source, format!("{value:?} is not fsync or os"))),
        },
        None => {
            resolver.default(&DURABILITY, "fsync");
            Durability::Fsync
        }
    };
    let hours = resolver.number(&RETENTION_HOURS, 168, 0..=876_000, "a number of hours (0 keeps segments forever)")?;
    let megabytes =
        resolver.number(&RETENTION_MB, 1024, 0..=16_777_216, "a number of MiB per partition (0: no limit)")?;
    let segment_mb = resolver.number(&SEGMENT_MB, 64, 1..=1024, "a number of MiB from 1 to 1024")?;
    let embedded = Embedded {
        durability,
        retention_age: (hours > 0).then(|| std::time::Duration::from_secs(hours * 3600)),
        retention_bytes: (megabytes > 0).then_some(megabytes << 20),
        segment_bytes: segment_mb << 20,
    };

    Ok(Config {
        broker,
        embedded,
        bootstrap,
        listen,
        data_dir,
        ephemeral: flags.ephemeral,
        partitions,
        image_tag,
        keep: flags.keep,
        services,
        topics,
        discord,
        report: resolver.report,
        files_read: layers.files_read.clone(),
    })
}

struct Resolver<'a> {
    flags: &'a Flags,
    layers: &'a Layers,
    report: Vec<(&'static str, String, Source)>,
}

impl Resolver<'_> {
    /// Looks a setting up and records it (redacted when secret) for `franz config`.
    fn get(&mut self, key: &'static Key) -> Option<(String, Source)> {
        let found = self.layers.lookup(self.flags, key)?;
        let shown = if key.secret { redact(&found.0) } else { found.0.clone() };
        self.report.push((key.name, shown, found.1.clone()));
        Some(found)
    }

    fn default(&mut self, key: &'static Key, value: &str) -> String {
        self.report.push((key.name, value.to_owned(), Source::Default));
        value.to_owned()
    }

    /// A whole number in `range`, described as `what` when it is not one.
    fn number(
        &mut self,
        key: &'static Key,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
        what: &str,
    ) -> anyhow::Result<u64> {
        match self.get(key) {
            Some((value, source)) => value
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| invalid(key, &source, format!("{value:?} is not {what}"))),
            None => Ok(self.default(key, &default.to_string()).parse().expect("the default parses")),
        }
    }

    fn topic(&mut self, key: &'static Key, default: &str) -> anyhow::Result<String> {
        match self.get(key) {
            Some((value, source)) => check_topic_name(&value).map(|()| value).map_err(|why| invalid(key, &source, why)),
            None => Ok(self.default(key, default)),
        }
    }
}

fn invalid(key: &Key, source: &Source, why: impl fmt::Display) -> anyhow::Error {
    let from = match source {
        Source::Flag => format!("--{}", key.name.replace('_', "-")),
        other => other.to_string(),
    };
    anyhow::anyhow!("invalid setting `{}` (from {from}): {why}", key.name)
}

/// What a secret looks like in output: present, but not its value.
fn redact(value: &str) -> String {
    format!("[redacted, {} characters]", value.chars().count())
}

fn check_host_port(value: &str) -> Result<(), String> {
    for address in value.split(',') {
        let (host, port) = address.trim().rsplit_once(':').ok_or_else(|| format!("{address:?} is not HOST:PORT"))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("{address:?} is not HOST:PORT with a port from 1 to 65535"));
        }
    }
    Ok(())
}

fn check_topic_name(name: &str) -> Result<(), String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 249 || !name.chars().all(legal) || name == "." || name == ".." {
        return Err(format!("{name:?} is not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)"));
    }
    Ok(())
}

fn parse_services(value: &str) -> Result<Vec<Service>, String> {
    let mut services = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let service = Service::ALL
            .into_iter()
            .find(|s| s.name() == name.to_ascii_lowercase())
            .ok_or_else(|| format!("{name:?} is not a service; expected kummerkasten, aufbereitung or absturz"))?;
        if !services.contains(&service) {
            services.push(service);
        }
    }
    if services.is_empty() {
        return Err("name at least one service".into());
    }
    Ok(services)
}

impl Config {
    /// The configuration as `franz config` prints it: one setting a line, secrets redacted.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let width = self.report.iter().map(|(name, _, _)| name.len()).max().unwrap_or(0);
        for (name, value, source) in &self.report {
            out.push_str(&format!("{name:width$}  {value}  ({source})\n"));
        }
        for key in [&DISCORD_TOKEN, &DISCORD_CLIENT_ID, &DISCORD_GUILD_ID, &DISCORD_WEBHOOK_URL] {
            if !self.report.iter().any(|(name, _, _)| *name == key.name) {
                out.push_str(&format!("{:width$}  (not set: {})\n", key.name, key.env.join(" or ")));
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
mod tests {
    use super::*;

    fn layers(env: &[(&str, &str)], dotenv: &[(&str, &str)], file: &str) -> Layers {
        Layers {
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            dotenv: dotenv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            file: file.parse().unwrap(),
            files_read: vec![],
        }
    }

    #[test]
    fn defaults_run_the_embedded_broker_on_loopback() {
        let config = resolve(&Flags::default(), &layers(&[], &[], "")).unwrap();
        assert_eq!(config.broker, BrokerKind::Embedded);
        assert_eq!(config.bootstrap, "127.0.0.1:9092");
        assert_eq!(config.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(config.partitions, 3);
        assert_eq!(config.topics, Topics::default());
        assert_eq!(config.services, Service::ALL.to_vec());
        assert_eq!(config.embedded.durability, Durability::Fsync);
        assert_eq!(config.embedded.retention_bytes, Some(1 << 30));
        assert_eq!(config.embedded.retention_age, Some(std::time::Duration::from_secs(7 * 24 * 3600)));
    }

    #[test]
    fn retention_limits_of_zero_turn_them_off() {
        let env = [("FRANZ_RETENTION_HOURS", "0"), ("FRANZ_RETENTION_MB", "0"), ("FRANZ_DURABILITY", "os")];
        let config = resolve(&Flags::default(), &layers(&env, &[], "")).unwrap();
        assert_eq!((config.embedded.retention_age, config.embedded.retention_bytes), (None, None));
        assert_eq!(config.embedded.durability, Durability::Os);
    }

    #[test]
    fn flags_beat_environment_beats_dotenv_beats_file() {
        let file = "partitions = 4\n[topics]\nintake = \"from-file\"\nerrors = \"errs-file\"\ntickets = \"t-file\"";
        let all = layers(
            &[("FRANZ_PARTITIONS", "6"), ("FRANZ_TOPIC_INTAKE", "from-env")],
            &[("FRANZ_PARTITIONS", "5"), ("FRANZ_TOPIC_INTAKE", "from-dotenv"), ("FRANZ_TOPIC_ERRORS", "errs-dotenv")],
            file,
        );
        let flags = Flags { partitions: Some("7".into()), ..Flags::default() };
        let config = resolve(&flags, &all).unwrap();
        assert_eq!(config.partitions, 7);
        assert_eq!(config.topics.intake, "from-env");
        assert_eq!(config.topics.errors, "errs-dotenv");
        assert_eq!(config.topics.tickets, "t-file");
        assert_eq!(config.topics.dead_letters, "tickets-formatted-dlq");
        assert_eq!(resolve(&Flags::default(), &all).unwrap().partitions, 6);
    }

    #[test]
    fn historical_kafka_broker_variable_selects_an_external_cluster() {
        let config = resolve(&Flags::default(), &layers(&[], &[("KAFKA_BROKER", "kafka:29092")], "")).unwrap();
        assert_eq!(config.broker, BrokerKind::External);
        assert_eq!(config.bootstrap, "kafka:29092");
    }

    #[test]
    fn invalid_values_name_the_setting_its_source_and_the_accepted_form() {
        let cases = [
            (
                Flags { partitions: Some("0".into()), ..Flags::default() },
                layers(&[], &[], ""),
                "`partitions` (from --partitions): \"0\" is not an integer from 1 to 1000",
            ),
            (
                Flags::default(),
                layers(&[("FRANZ_BROKER", "docker")], &[], ""),
                "`broker` (from environment FRANZ_BROKER)",
            ),
            (
                Flags::default(),
                layers(&[], &[("KAFKA_BROKER", "nohost")], ""),
                "`bootstrap` (from .env KAFKA_BROKER): \"nohost\" is not HOST:PORT",
            ),
            (Flags::default(), layers(&[], &[], "listen = \"everywhere\""), "`listen` (from franz.toml)"),
            (
                Flags { only: vec!["absturz".into(), "bot".into()], ..Flags::default() },
                layers(&[], &[], ""),
                "\"bot\" is not a service",
            ),
            (Flags::default(), layers(&[("FRANZ_TOPIC_ERRORS", "bad topic")], &[], ""), "not a Kafka topic name"),
            (Flags::default(), layers(&[("FRANZ_TOPIC_ERRORS", "discordMSG")], &[], ""), "topic names must differ"),
            (Flags::default(), layers(&[("FRANZ_DURABILITY", "always")], &[], ""), "\"always\" is not fsync or os"),
            (
                Flags::default(),
                layers(&[], &[], "[embedded]\nsegment_mb = 0"),
                "`embedded.segment_mb` (from franz.toml)",
            ),
        ];
        for (flags, layers, expected) in cases {
            let error = resolve(&flags, &layers).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} should contain {expected:?}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_render_and_debug() {
        let config = resolve(
            &Flags::default(),
            &layers(
                &[("DISCORD_WEBHOOK_URL", "https://discord.com/api/webhooks/1/sekrit-token")],
                &[("DISCORD_TOKEN", "bot-sekrit")],
                "",
            ),
        )
        .unwrap();
        let shown = format!("{}\n{config:?}", config.render());
        assert!(!shown.contains("sekrit"), "{shown}");
        assert!(shown.contains("discord.webhook_url") && shown.contains("[redacted"));
        assert_eq!(
            expose(config.discord.webhook_url.as_ref().unwrap()),
            "https://discord.com/api/webhooks/1/sekrit-token"
        );
    }

    #[test]
    fn malformed_files_are_reported_without_echoing_their_secrets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), "DISCORD_TOKEN='sekrit-token\n").unwrap();
        let toml = dir.path().join("franz.toml");
        std::fs::write(&toml, "[discord]\ntoken = sekrit-token\n").unwrap();
        let dotenv_error = format!("{:#}", Layers::load(dir.path(), None).unwrap_err());
        std::fs::remove_file(dir.path().join(".env")).unwrap();
        let toml_error = format!("{:#}", Layers::load(dir.path(), Some(&toml)).unwrap_err());
        for error in [&dotenv_error, &toml_error] {
            assert!(!error.contains("sekrit"), "{error}");
        }
        assert!(dotenv_error.contains(".env is malformed"), "{dotenv_error}");
        assert!(toml_error.contains("is not valid TOML at line 2"), "{toml_error}");
        let layers = Layers { dotenv: [("DISCORD_TOKEN".to_owned(), "sekrit".to_owned())].into(), ..Layers::default() };
        assert!(!format!("{layers:?}").contains("sekrit"));
    }

    #[test]
    fn unknown_keys_in_the_file_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("franz.toml");
        std::fs::write(&path, "partitons = 3\n").unwrap();
        let error = Layers::load(dir.path(), Some(&path)).unwrap_err().to_string();
        assert!(error.contains("unknown setting `partitons`"), "{error}");
    }

    #[test]
    fn dotenv_in_the_working_directory_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), "FRANZ_TOPIC_INTAKE=from-dotenv-file\n").unwrap();
        let missing = dir.path().join("none.toml");
        std::fs::write(&missing, "").unwrap();
        let layers = Layers::load(dir.path(), Some(&missing)).unwrap();
        assert_eq!(layers.dotenv.get("FRANZ_TOPIC_INTAKE").map(String::as_str), Some("from-dotenv-file"));
        assert_eq!(layers.files_read.len(), 2);
    }
}
