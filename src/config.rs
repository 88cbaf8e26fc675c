//! The resolved, validated configuration of franz, and where each value came from.
//!
//! [`Config`] is one typed serde struct; a field's doc comment, default and accepted form are on the field, and its
//! franz.toml key is its serde name. figment layers command-line flags over the process environment, `.env` in the
//! working directory, franz.toml and the defaults, and remembers which layer each value came from, for
//! `franz config` and for the error that names an invalid setting, its source and the accepted form. This module
//! reads files but starts nothing, and it does not load `.env` into the process environment.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::ValueEnum;
use figment::value::{Dict, Map, Tag, Value};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// Everything franz needs, resolved and validated. Sections are tables in franz.toml.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the topics live: embedded, redpanda, kafka or external (the default once a bootstrap is set).
    #[serde(deserialize_with = "one_of")]
    pub broker: BrokerKind,
    /// The address clients connect to (for `external`, and for every subcommand but `up`).
    #[serde(deserialize_with = "host_ports")]
    pub bootstrap: String,
    /// Where the embedded broker listens.
    #[serde(deserialize_with = "ip_port")]
    pub listen: SocketAddr,
    /// Where the embedded broker keeps its data.
    #[serde(deserialize_with = "from_text")]
    pub data_dir: PathBuf,
    /// Partitions of each topic created at start-up.
    #[serde(deserialize_with = "partitions")]
    pub partitions: i32,
    /// The services `franz up` runs, comma-separated.
    #[serde(rename = "only", deserialize_with = "services")]
    pub services: Vec<Service>,
    /// The container image tag, when not the pinned one.
    #[serde(deserialize_with = "from_text")]
    pub image_tag: Option<String>,
    /// The names of the four topics.
    pub topics: Topics,
    /// Discord credentials and the bot's behaviour.
    pub discord: Discord,
    /// How the embedded broker keeps its log.
    pub embedded: Embedded,
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
}

/// The names of the four topics.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topics {
    /// Raw intake from Discord and `franz ticket`.
    #[serde(deserialize_with = "topic")]
    pub intake: String,
    /// Normalized tickets.
    #[serde(deserialize_with = "topic")]
    pub tickets: String,
    /// Intake records that could not be normalized.
    #[serde(deserialize_with = "topic")]
    pub dead_letters: String,
    /// Operational problems from any service.
    #[serde(deserialize_with = "topic")]
    pub errors: String,
}

/// Discord credentials. Each is optional: a service whose credentials are missing is skipped.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Discord {
    /// The bot's token (secret); without it the bot does not run.
    #[serde(deserialize_with = "secret", serialize_with = "redacted")]
    pub token: Option<SecretString>,
    /// The application's client id.
    #[serde(deserialize_with = "from_text")]
    pub client_id: Option<String>,
    /// The guild to register `/ticket` in (a numeric snowflake); unset registers it globally.
    #[serde(deserialize_with = "guild_id")]
    pub guild_id: Option<u64>,
    /// Where absturz posts alerts (secret: the URL carries the webhook's token).
    #[serde(deserialize_with = "secret", serialize_with = "redacted")]
    pub webhook_url: Option<SecretString>,
    /// How long a user waits between two tickets, in whole seconds from 0 to 86400.
    #[serde(rename = "cooldown_secs", with = "cooldown_secs")]
    pub cooldown: Duration,
}

/// The embedded broker's storage settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Embedded {
    /// When produced data counts as written: fsynced (`fsync`) or in the page cache (`os`).
    #[serde(deserialize_with = "one_of")]
    pub durability: Durability,
    /// Old segments are deleted after this long (`None`: kept forever); set in hours, 0 keeps them forever.
    #[serde(rename = "retention_hours", with = "retention_hours")]
    pub retention_age: Option<Duration>,
    /// Old segments are deleted while a partition holds more than this (`None`: no limit); set in MiB, 0 for none.
    #[serde(rename = "retention_mb", with = "retention_mb")]
    pub retention_bytes: Option<u64>,
    /// Segment files are closed at about this size; set in MiB from 1 to 1024.
    #[serde(rename = "segment_mb", with = "segment_mb")]
    pub segment_bytes: u64,
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
    Kummerkasten,
    Aufbereitung,
    Absturz,
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
        name_of(&self)
    }
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Kummerkasten, Service::Aufbereitung, Service::Absturz];

    pub fn name(self) -> String {
        name_of(&self)
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
    pub fn all(&self) -> [&str; 4] {
        [&self.intake, &self.tickets, &self.dead_letters, &self.errors]
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            broker: BrokerKind::Embedded,
            bootstrap: DEFAULT_ADDRESS.into(),
            listen: DEFAULT_ADDRESS.parse().expect("the default address parses"),
            data_dir: project_dirs().map_or_else(|| PathBuf::from(".franz"), |dirs| dirs.data_dir().to_path_buf()),
            partitions: 3,
            services: Service::ALL.to_vec(),
            image_tag: None,
            topics: Topics::default(),
            discord: Discord::default(),
            embedded: Embedded::default(),
            ephemeral: false,
            keep: false,
            report: Vec::new(),
            files_read: Vec::new(),
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
        }
    }
}

impl Default for Discord {
    fn default() -> Self {
        Discord { token: None, client_id: None, guild_id: None, webhook_url: None, cooldown: Duration::from_secs(10) }
    }
}

impl Default for Embedded {
    fn default() -> Self {
        Embedded {
            durability: Durability::Fsync,
            retention_age: Some(Duration::from_secs(168 * 3600)),
            retention_bytes: Some(1 << 30),
            segment_bytes: 64 << 20,
        }
    }
}

/// The default address of the embedded broker, and of the broker every other subcommand talks to.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9092";

/// The environment variables that set `key`, first wins. Each is the section's prefix and the field's name in
/// capitals (`topics.intake` is `FRANZ_TOPIC_INTAKE`, `discord.token` is `DISCORD_TOKEN`, `embedded.segment_mb`
/// is `FRANZ_SEGMENT_MB`); the exceptions are historical names that keep working.
pub fn env_names(key: &str) -> Vec<String> {
    const HISTORICAL: [(&str, &[&str]); 2] =
        [("bootstrap", &["FRANZ_BOOTSTRAP", "KAFKA_BROKER"]), ("discord.cooldown_secs", &["FRANZ_TICKET_COOLDOWN"])];
    if let Some((_, names)) = HISTORICAL.iter().find(|(historical, _)| *historical == key) {
        return names.iter().map(|name| name.to_string()).collect();
    }
    let (section, field) = key.rsplit_once('.').unwrap_or(("", key));
    let prefix = match section {
        "" | "embedded" => "FRANZ_".to_owned(),
        "topics" => "FRANZ_TOPIC_".to_owned(),
        "discord" => "DISCORD_".to_owned(),
        other => format!("FRANZ_{}_", other.replace('.', "_").to_ascii_uppercase()),
    };
    vec![format!("{prefix}{}", field.to_ascii_uppercase())]
}

/// Every setting's franz.toml key (dotted for sections), read off the defaults, so a new field needs no list.
pub fn keys() -> Vec<String> {
    leaves(serde_json::to_value(Config::default()).expect("the defaults serialize"))
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// The settings in a serialized configuration: dotted key and value, sections flattened.
fn leaves(value: serde_json::Value) -> Vec<(String, serde_json::Value)> {
    fn walk(value: serde_json::Value, prefix: &str, out: &mut Vec<(String, serde_json::Value)>) {
        match value {
            serde_json::Value::Object(fields) => {
                for (name, value) in fields {
                    walk(value, &if prefix.is_empty() { name } else { format!("{prefix}.{name}") }, out);
                }
            }
            value => out.push((prefix.to_owned(), value)),
        }
    }
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out
}

/// One line of `franz config`: a setting, its shown value (`None`: not set; secrets redacted) and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub value: Option<String>,
    pub source: String,
}

/// The names of the layers' figment metadata.
const FLAG: &str = "flag";
const ENV: &str = "environment";
const DOTENV: &str = ".env";

/// Where the value at `key` came from, from the metadata figment keeps for it: `--flag`, `environment VAR`,
/// `.env VAR`, the TOML file's path, or `default` when no layer has it.
fn source(metadata: Option<&Metadata>, key: &str) -> String {
    let Some(metadata) = metadata else { return "default".into() };
    let origin = metadata.interpolate(&Profile::Default, &key.split('.').collect::<Vec<_>>());
    match &*metadata.name {
        ENV | DOTENV => format!("{} {origin}", metadata.name),
        _ => origin,
    }
}

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
    fn layer(&self) -> Layer {
        let given = [
            ("broker", self.broker.clone()),
            ("bootstrap", self.bootstrap.clone()),
            ("listen", self.listen.clone()),
            ("data_dir", self.data_dir.as_ref().map(|p| p.display().to_string())),
            ("partitions", self.partitions.clone()),
            ("image_tag", self.image_tag.clone()),
            ("only", (!self.only.is_empty()).then(|| self.only.join(","))),
        ];
        let mut values = Dict::new();
        for (key, value) in given {
            if let Some(value) = value {
                insert(&mut values, key, Value::String(Tag::Default, value));
            }
        }
        Layer::new(FLAG, values, |key| format!("--{}", key.replace('_', "-")))
    }
}

/// One layer of settings as a figment provider, with how to name the origin of each of its values.
struct Layer {
    metadata: Metadata,
    values: Dict,
}

impl Layer {
    fn new(name: &'static str, values: Dict, origin: impl Fn(&str) -> String + Clone + Send + Sync + 'static) -> Self {
        let metadata = Metadata::named(name).interpolater(move |_, keys| origin(&keys.join(".")));
        Layer { metadata, values }
    }

    /// The variables in `vars` that name a setting; a setting's first variable that is set and not empty wins.
    fn variables(name: &'static str, vars: &HashMap<String, String>, keys: &[String]) -> Self {
        let (mut values, mut used) = (Dict::new(), HashMap::new());
        for key in keys {
            let found =
                env_names(key).into_iter().find_map(|var| Some((vars.get(&var).filter(|v| !v.is_empty())?, var)));
            if let Some((value, var)) = found {
                insert(&mut values, key, Value::String(Tag::Default, value.clone()));
                used.insert(key.clone(), var);
            }
        }
        Layer::new(name, values, move |key| used.get(key).cloned().unwrap_or_default())
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

/// Puts `value` at the dotted `key` of `dict`, creating sections on the way.
fn insert(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        Some((section, rest)) => {
            let section = dict.entry(section.to_owned()).or_insert_with(|| Dict::new().into());
            if let Value::Dict(_, section) = section {
                insert(section, rest, value);
            }
        }
        None => {
            dict.insert(key.to_owned(), value);
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
            check_known_keys(&layers.file, "", &path, &keys())?;
            layers.files_read.push(path);
        }
        Ok(layers)
    }

    /// The TOML file as a layer, its values named by the file's path.
    fn file_layer(&self) -> anyhow::Result<Layer> {
        let values =
            Value::serialize(&self.file).ok().and_then(Value::into_dict).context("franz.toml is not a table")?;
        // `load` records the TOML file after `.env`; tests build the layers without either.
        let path = self.files_read.iter().find(|p| !p.ends_with(".env"));
        let shown = path.map_or_else(|| "franz.toml".to_owned(), |p| p.display().to_string());
        Ok(Layer::new("franz.toml", values, move |_| shown.clone()))
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

/// Refuses a key the struct does not have, listing the known ones (serde would name only the section's).
fn check_known_keys(table: &toml::Table, prefix: &str, path: &Path, known: &[String]) -> anyhow::Result<()> {
    for (name, value) in table {
        let full = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        match value {
            toml::Value::Table(inner) if known.iter().any(|k| k.starts_with(&format!("{full}."))) => {
                check_known_keys(inner, &full, path, known)?
            }
            _ if known.contains(&full) => {}
            _ => bail!("unknown setting `{full}` in {}; known settings: {}", path.display(), known.join(", ")),
        }
    }
    Ok(())
}

/// Resolves and validates every setting: flag, then environment, then `.env`, then the TOML file, then default.
pub fn resolve(flags: &Flags, layers: &Layers) -> anyhow::Result<Config> {
    let keys = keys();
    let figment = Figment::new()
        .merge(layers.file_layer()?)
        .merge(Layer::variables(DOTENV, &layers.dotenv, &keys))
        .merge(Layer::variables(ENV, &layers.env, &keys))
        .merge(flags.layer());
    let mut config: Config = figment.extract().map_err(|error| {
        let key = error.path.join(".");
        anyhow::anyhow!("invalid setting `{key}` (from {}): {}", source(error.metadata.as_ref(), &key), error.kind)
    })?;
    if figment.contains("bootstrap") && !figment.contains("broker") {
        config.broker = BrokerKind::External;
    }
    let names = config.topics.all();
    if (1..names.len()).any(|i| names[..i].contains(&names[i])) {
        bail!("the four topic names must differ, got {}", names.join(", "));
    }
    config.ephemeral = flags.ephemeral;
    config.keep = flags.keep;
    config.files_read = layers.files_read.clone();
    let values = serde_json::to_value(&config).context("cannot show the configuration")?;
    config.report = leaves(values)
        .into_iter()
        .map(|(key, value)| Setting { source: source(figment.find_metadata(&key), &key), value: shown(value), key })
        .collect();
    Ok(config)
}

impl Config {
    /// The configuration as `franz config` prints it: one setting a line, secrets redacted.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let width = self.report.iter().map(|setting| setting.key.len()).max().unwrap_or(0);
        for Setting { key, value, source } in &self.report {
            match value {
                Some(value) => out.push_str(&format!("{key:width$}  {value}  ({source})\n")),
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

// How a setting's text becomes a value. The environment, `.env` and flags give text and franz.toml gives numbers
// and arrays too, so every parser starts from [`text`]. An error says what the value is not and the accepted form;
// `resolve` adds the setting and its source. Secrets never fail to parse, so no error can echo one.

/// A value as text: a list as its items joined by commas; `None` for a table or nothing.
fn shown(value: serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) => Some(text),
        serde_json::Value::Array(items) => Some(items.into_iter().map(shown).collect::<Option<Vec<_>>>()?.join(",")),
        serde_json::Value::Object(_) | serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    shown(serde_json::Value::deserialize(deserializer)?)
        .ok_or_else(|| de::Error::custom("expected a value, not a table"))
}

fn from_text<'de, D: Deserializer<'de>, T: From<String>>(deserializer: D) -> Result<T, D::Error> {
    text(deserializer).map(T::from)
}

fn secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SecretString>, D::Error> {
    text(deserializer).map(|value| Some(SecretString::from(value)))
}

/// What a secret looks like in output: present, but not its value.
fn redacted<S: Serializer>(secret: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => {
            serializer.serialize_str(&format!("[redacted, {} characters]", secret.expose_secret().chars().count()))
        }
        None => serializer.serialize_none(),
    }
}

/// A whole number in `range`, described as `what` when it is not one.
fn number<'de, D: Deserializer<'de>>(
    deserializer: D,
    range: std::ops::RangeInclusive<u64>,
    what: &str,
) -> Result<u64, D::Error> {
    let value = text(deserializer)?;
    let number = value.trim().parse::<u64>().ok().filter(|n| range.contains(n));
    number.ok_or_else(|| de::Error::custom(format!("{value:?} is not {what}")))
}

/// The canonical name of an enum value, as the command line and franz.toml spell it.
fn name_of<T: ValueEnum>(value: &T) -> String {
    value.to_possible_value().expect("no value is skipped").get_name().to_owned()
}

/// `a or b`, or `one of a, b, c`.
fn alternatives<T: ValueEnum>() -> String {
    let names: Vec<String> = T::value_variants().iter().map(name_of).collect();
    match names.as_slice() {
        [a, b] => format!("{a} or {b}"),
        _ => format!("one of {}", names.join(", ")),
    }
}

fn one_of<'de, D: Deserializer<'de>, T: ValueEnum>(deserializer: D) -> Result<T, D::Error> {
    let value = text(deserializer)?;
    T::from_str(value.trim(), true).map_err(|_| de::Error::custom(format!("{value:?} is not {}", alternatives::<T>())))
}

fn services<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Service>, D::Error> {
    let mut services = Vec::new();
    for name in text(deserializer)?.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let service = Service::from_str(name, true).map_err(|_| {
            de::Error::custom(format!("{name:?} is not a service; expected kummerkasten, aufbereitung or absturz"))
        })?;
        if !services.contains(&service) {
            services.push(service);
        }
    }
    if services.is_empty() {
        return Err(de::Error::custom("name at least one service"));
    }
    Ok(services)
}

fn host_ports<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let value = text(deserializer)?;
    for address in value.split(',') {
        let (host, port) = address
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| de::Error::custom(format!("{address:?} is not HOST:PORT")))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(de::Error::custom(format!("{address:?} is not HOST:PORT with a port from 1 to 65535")));
        }
    }
    Ok(value)
}

fn ip_port<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let value = text(deserializer)?;
    value.parse().map_err(|_| de::Error::custom(format!("{value:?} is not IP:PORT, e.g. 127.0.0.1:9092")))
}

fn partitions<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
    let partitions = number(deserializer, 1..=1000, "an integer from 1 to 1000")?;
    Ok(i32::try_from(partitions).expect("at most 1000"))
}

fn topic<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let name = text(deserializer)?;
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 249 || !name.chars().all(legal) || name == "." || name == ".." {
        return Err(de::Error::custom(format!("{name:?} is not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)")));
    }
    Ok(name)
}

fn guild_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let value = text(deserializer)?;
    let id = value.trim().parse().map_err(|_| {
        de::Error::custom(format!("{value:?} is not a numeric guild id (right-click the server → Copy Server ID)"))
    })?;
    Ok(Some(id))
}

/// Settings kept in one unit and written in another: `deserialize` parses and converts, `serialize` shows the
/// value as it is written.
mod cooldown_secs {
    use super::*;
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        number(deserializer, 0..=86_400, "a number of seconds from 0 to 86400").map(Duration::from_secs)
    }
    pub(super) fn serialize<S: Serializer>(cooldown: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(cooldown.as_secs())
    }
}

mod retention_hours {
    use super::*;
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        let hours = number(deserializer, 0..=876_000, "a number of hours (0 keeps segments forever)")?;
        Ok((hours > 0).then(|| Duration::from_secs(hours * 3600)))
    }
    pub(super) fn serialize<S: Serializer>(age: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(age.map_or(0, |age| age.as_secs() / 3600))
    }
}

mod retention_mb {
    use super::*;
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
        let megabytes = number(deserializer, 0..=16_777_216, "a number of MiB per partition (0: no limit)")?;
        Ok((megabytes > 0).then_some(megabytes << 20))
    }
    pub(super) fn serialize<S: Serializer>(bytes: &Option<u64>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(bytes.map_or(0, |bytes| bytes >> 20))
    }
}

mod segment_mb {
    use super::*;
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        number(deserializer, 1..=1024, "a number of MiB from 1 to 1024").map(|megabytes| megabytes << 20)
    }
    pub(super) fn serialize<S: Serializer>(bytes: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(bytes >> 20)
    }
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
