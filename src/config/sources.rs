//! Where settings come from: command-line flags, the process environment, `.env` in the working directory and
//! franz.toml, each a figment provider whose metadata names the origin of every value it gives.
//!
//! The environment variable of a setting is derived from its key ([`env_names`]), and the keys from the struct's
//! defaults ([`keys`]), so a new field needs no list here. `.env` stays a layer of its own below the real
//! environment; nothing here writes to the process environment or turns text into values (that is `parse`).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use figment::util::nest;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::Config;

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
pub(super) fn leaves(value: serde_json::Value) -> Vec<(String, serde_json::Value)> {
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

/// Where the value at `key` came from: the name of the layer figment found it in (`--partitions`,
/// `environment FRANZ_BROKER`, `.env KAFKA_BROKER`, the TOML file's path), or `default` when no layer has it.
pub(super) fn origin(figment: &Figment, key: &str) -> String {
    figment.find_metadata(key).map_or_else(|| "default".to_owned(), |metadata| metadata.name.to_string())
}

/// The layers in precedence order, each merged over the ones below it. Every flag and variable is a provider of
/// its own, named after where its value came from, so figment's metadata tells each value's origin.
pub(super) fn layered(flags: &Flags, layers: &Layers) -> anyhow::Result<Figment> {
    let mut figment = Figment::new().merge(layers.file_layer()?);
    for (place, vars) in [(".env", &layers.dotenv), ("environment", &layers.env)] {
        for key in keys() {
            // A setting's first variable that is set and not empty wins.
            let set = |var: String| Some((vars.get(&var).filter(|value| !value.is_empty())?.clone(), var));
            if let Some((value, var)) = env_names(&key).into_iter().find_map(set) {
                figment = figment.merge(Layer::value(format!("{place} {var}"), &key, value));
            }
        }
    }
    for (key, value) in flags.given() {
        figment = figment.merge(Layer::value(format!("--{}", key.replace(['_', '.'], "-")), key, value));
    }
    Ok(figment)
}

/// Values given on the command line, by setting name.
#[derive(Debug, Default)]
pub struct Flags {
    pub broker: Option<String>,
    pub bootstrap: Option<String>,
    pub listen: Option<String>,
    pub advertise: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub partitions: Option<String>,
    pub only: Vec<String>,
    pub ephemeral: bool,
    pub image_tag: Option<String>,
    pub keep: bool,
    pub desk_listen: Option<String>,
    pub metrics_listen: Option<String>,
}

impl Flags {
    /// The settings given as flags, by key.
    fn given(&self) -> Vec<(&'static str, String)> {
        let only = (!self.only.is_empty()).then(|| self.only.join(","));
        let data_dir = self.data_dir.as_ref().map(|path| path.display().to_string());
        [
            ("broker", self.broker.clone()),
            ("bootstrap", self.bootstrap.clone()),
            ("listen", self.listen.clone()),
            ("advertise", self.advertise.clone()),
            ("data_dir", data_dir),
            ("partitions", self.partitions.clone()),
            ("image_tag", self.image_tag.clone()),
            ("only", only),
            ("desk.listen", self.desk_listen.clone()),
            ("metrics_listen", self.metrics_listen.clone()),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value?)))
        .collect()
    }
}

/// Settings from one place, as a figment provider named after that place.
struct Layer {
    origin: String,
    values: Dict,
}

impl Layer {
    /// One setting, `key` dotted for sections, given as text.
    fn value(origin: String, key: &str, text: String) -> Self {
        let values = nest(key, Value::from(text.as_str())).into_dict().expect("a key nests into a table");
        Layer { origin, values }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.origin.clone())
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Profile::Default.collect(self.values.clone()))
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
            // The routing rules and the teams' service levels are skipped when empty, so the defaults do not name
            // them: known all the same (their own fields are checked as they are read).
            let known: Vec<String> =
                keys().into_iter().chain(["routing".to_owned(), "service_levels.teams".to_owned()]).collect();
            check_known_keys(&layers.file, "", &path, &known)?;
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
        Ok(Layer { origin: shown, values })
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

pub(super) fn project_dirs() -> Option<directories::ProjectDirs> {
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
