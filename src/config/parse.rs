//! How a setting's text becomes a value, or a rejection that says what the text is not and the accepted form.
//!
//! The environment, `.env` and flags give text, and franz.toml gives numbers and lists too, so each parser starts
//! from [`text`]; `resolve` adds the setting's name and source to a rejection. A secret is refused only for being a
//! table, so no error can echo one. This module knows nothing of layers or precedence.

use std::net::SocketAddr;
use std::time::Duration;

use clap::ValueEnum;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Deserializer, Serializer, de};

use super::Service;

/// A value as text: a list as its items joined by commas; `None` for a table or nothing.
pub(super) fn shown(value: serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) => Some(text),
        serde_json::Value::Array(items) => Some(items.into_iter().map(shown).collect::<Option<Vec<_>>>()?.join(",")),
        serde_json::Value::Object(_) | serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// The value as text, whichever layer gave it: franz.toml's `partitions = 4` and `FRANZ_PARTITIONS=4` alike.
pub(super) fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    shown(serde_json::Value::deserialize(deserializer)?)
        .ok_or_else(|| de::Error::custom("a table is not a value here; write text or a number"))
}

/// A string setting that franz.toml may also write as a number (`client_id = 1234`, `image_tag = 4.0`).
pub(super) fn from_text<'de, D: Deserializer<'de>, T: From<String>>(deserializer: D) -> Result<T, D::Error> {
    text(deserializer).map(T::from)
}

/// A path that may be unset.
pub(super) fn some_path<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<std::path::PathBuf>, D::Error> {
    text(deserializer).map(|value| Some(value.into()))
}

/// A secret: any text is accepted, so nothing about it ever appears in an error.
pub(super) fn secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SecretString>, D::Error> {
    text(deserializer).map(|value| Some(SecretString::from(value)))
}

/// What a secret looks like in output: present, but not its value.
pub(super) fn redacted<S: Serializer>(secret: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => {
            serializer.serialize_str(&format!("[redacted, {} characters]", secret.expose_secret().chars().count()))
        }
        None => serializer.serialize_none(),
    }
}

/// A whole number in `range`, described as `what` when it is not one.
pub(super) fn number<'de, D: Deserializer<'de>>(
    deserializer: D,
    range: std::ops::RangeInclusive<u64>,
    what: &str,
) -> Result<u64, D::Error> {
    let value = text(deserializer)?;
    let number = value.trim().parse::<u64>().ok().filter(|n| range.contains(n));
    number.ok_or_else(|| de::Error::custom(format!("{value:?} is not {what}")))
}

/// The canonical name of an enum value, as the command line and franz.toml spell it.
pub(super) fn name_of<T: ValueEnum>(value: &T) -> String {
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

/// An enum value by its name, in any case.
pub(super) fn one_of<'de, D: Deserializer<'de>, T: ValueEnum>(deserializer: D) -> Result<T, D::Error> {
    let value = text(deserializer)?;
    T::from_str(value.trim(), true).map_err(|_| de::Error::custom(format!("{value:?} is not {}", alternatives::<T>())))
}

pub(super) fn services<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Service>, D::Error> {
    let mut services = Vec::new();
    for name in text(deserializer)?.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let service = Service::from_str(name, true).map_err(|_| {
            de::Error::custom(format!(
                "{name:?} is not a service; expected kummerkasten, aufbereitung, absturz, akte, desk or briefkasten"
            ))
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

/// One or more comma-separated `HOST:PORT` addresses.
pub(super) fn host_ports<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
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

/// One `HOST:PORT` that clients can connect to, or unset.
pub(super) fn advertise<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = host_ports(deserializer)?;
    if value.contains(',') {
        return Err(de::Error::custom(format!("{value:?} is more than one address; give one HOST:PORT")));
    }
    if value.rsplit_once(':').is_some_and(|(host, _)| host == "0.0.0.0" || host == "[::]") {
        return Err(de::Error::custom(format!("{value:?} is not an address clients can connect to")));
    }
    Ok(Some(value))
}

/// A whole number from 1 up (a limit or a duration).
pub(super) fn positive<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    number(deserializer, 1..=1_000_000_000, "a whole number from 1 to 1000000000")
}

/// A whole number from 0 up (0 meaning automatic where the setting says so).
pub(super) fn count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    number(deserializer, 0..=1_000_000_000, "a whole number from 0 to 1000000000")
}

/// The largest attachment franz keeps, in MiB: 0 (none) to 32 (the largest file the files topic takes).
pub(super) fn attachment_mb<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    number(deserializer, 0..=32, "a whole number of MiB from 0 (keep none) to 32")
}

/// A service-level target by priority (`lifecycle::levels::parse_targets`); empty is none.
pub(super) fn targets<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = text(deserializer)?;
    let targets = crate::lifecycle::levels::parse_targets(&value).map_err(de::Error::custom)?;
    Ok((!targets.is_empty()).then_some(value))
}

/// Working hours (`Mon-Fri 09:00-17:00`).
pub(super) fn working_hours<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let value = text(deserializer)?;
    crate::lifecycle::calendar::Calendar::new("UTC", &value, &[]).map_err(de::Error::custom)?;
    Ok(value)
}

/// A time zone of the IANA database.
pub(super) fn zone<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let value = text(deserializer)?;
    crate::lifecycle::calendar::Calendar::new(&value, "Mon 00:00-24:00", &[]).map_err(de::Error::custom)?;
    Ok(value)
}

/// Dates `YYYY-MM-DD`: a list in franz.toml, or separated by commas.
pub(super) fn holidays<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let days: Vec<String> =
        text(deserializer)?.split(',').map(str::trim).filter(|d| !d.is_empty()).map(str::to_owned).collect();
    crate::lifecycle::calendar::Calendar::new("UTC", "Mon 00:00-24:00", &days).map_err(de::Error::custom)?;
    Ok(days)
}

/// A number of days, 0 to 365.
pub(super) fn days_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    number(deserializer, 0..=365, "a whole number of days from 0 to 365")
}

/// How many open tickets one submitter may have: 0 (no limit) to 1,000.
pub(super) fn open_tickets_max<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    number(deserializer, 0..=1_000, "a whole number of tickets from 0 (no limit) to 1000")
}

/// Priorities separated by commas (`urgent, high`), or none.
pub(super) fn priorities<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let value = text(deserializer)?;
    let names: Vec<&str> = value.split(',').map(str::trim).filter(|name| !name.is_empty()).collect();
    if let Some(wrong) = names.iter().find(|name| crate::schema::lifecycle::Priority::parse(name).is_none()) {
        return Err(de::Error::custom(format!("{wrong:?} is no priority; write low, normal, high or urgent")));
    }
    Ok(names.join(","))
}

/// A share in percent, 1 to 99.
pub(super) fn percent<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    number(deserializer, 1..=99, "a whole number of percent from 1 to 99")
}

pub(super) fn ip_port<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let value = text(deserializer)?;
    value.parse().map_err(|_| de::Error::custom(format!("{value:?} is not IP:PORT, e.g. 127.0.0.1:9092")))
}

/// An optional `IP:PORT`.
pub(super) fn optional_ip_port<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SocketAddr>, D::Error> {
    ip_port(deserializer).map(Some)
}

pub(super) fn partitions<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
    let partitions = number(deserializer, 1..=1000, "an integer from 1 to 1000")?;
    Ok(i32::try_from(partitions).expect("at most 1000"))
}

pub(super) fn topic<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let name = text(deserializer)?;
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 249 || !name.chars().all(legal) || name == "." || name == ".." {
        return Err(de::Error::custom(format!("{name:?} is not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)")));
    }
    Ok(name)
}

pub(super) fn guild_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let value = text(deserializer)?;
    // 0 is no snowflake: serenity's `GuildId::new(0)` panics, and no server has it.
    match value.trim().parse::<u64>() {
        Ok(id) if id > 0 => Ok(Some(id)),
        _ => Err(de::Error::custom(format!(
            "{value:?} is not a numeric guild id (right-click the server → Copy Server ID)"
        ))),
    }
}

/// A Discord channel or role id (a numeric snowflake), as Discord's "Copy Channel ID" / "Copy Role ID" gives it.
pub(super) fn snowflake<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let value = text(deserializer)?;
    match value.trim().parse::<u64>() {
        Ok(id) if id > 0 => Ok(Some(id)),
        _ => Err(de::Error::custom(format!(
            "{value:?} is not a numeric Discord id (turn on Developer Mode, then right-click → Copy ID)"
        ))),
    }
}

/// A switch: `true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`, in any case).
pub(super) fn boolean<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    let value = text(deserializer)?;
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(de::Error::custom(format!("{value:?} is not a switch; write true or false"))),
    }
}

/// The bot's REST proxy: an http(s) URL with a host and at most a path. Credentials are refused, as serenity sends
/// the bot token in the `Authorization` header and a proxy could not get any other; a query or fragment would end
/// up in the middle of every API path. The text is never echoed, in case it holds a secret anyway.
pub(super) fn api_proxy<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = text(deserializer)?;
    let form = "an http:// or https:// URL such as http://127.0.0.1:3000";
    let url = reqwest::Url::parse(value.trim()).map_err(|_| de::Error::custom(format!("the value is not {form}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(de::Error::custom(format!("the value is not {form}")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(de::Error::custom(
            "the URL carries credentials (user:password@), which the proxy would never receive; \
             protect the proxy by its network instead and remove them",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(de::Error::custom(format!("the URL has a query or fragment; give {form}, with a path at most")));
    }
    Ok(Some(url.as_str().trim_end_matches('/').to_owned()))
}

/// The mailbox to read: `imaps://` anywhere, `imap://` (no TLS, so the password would cross the network in the
/// clear) only to this machine; no credentials in the URL (they belong in `mail.user` and `mail.password`, where
/// nothing prints them).
pub(super) fn imap_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<super::ImapUrl>, D::Error> {
    let form = "an imaps:// URL such as imaps://imap.example.com/INBOX";
    let (url, tls) = mail_url(&text(deserializer)?, form, "imaps", "imap")?;
    let (host, port) = mail_server(&url, form)?;
    let local = super::local_host(&host);
    if !tls && !local {
        return Err(de::Error::custom(format!(
            "imap:// would send the password to {host} unencrypted; use imaps://{host}/… (TLS), or imap:// only to \
             a server on this machine"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(de::Error::custom(format!("the URL has a query or fragment; give {form}")));
    }
    let mailbox = percent_encoding::percent_decode_str(url.path().trim_start_matches('/'))
        .decode_utf8()
        .map_err(|_| de::Error::custom("the mailbox name is not UTF-8"))?
        .into_owned();
    let mailbox = if mailbox.is_empty() { "INBOX".to_owned() } else { mailbox };
    if !mailbox.chars().all(|c| c.is_ascii_graphic() || c == ' ') || mailbox.contains(['"', '\\']) {
        return Err(de::Error::custom(format!(
            "the mailbox {mailbox:?} has characters franz cannot name in IMAP (only ASCII letters, digits, spaces \
             and punctuation other than quotes and backslashes)"
        )));
    }
    let port = port.unwrap_or(if tls { 993 } else { 143 });
    Ok(Some(super::ImapUrl { tls, host, port, mailbox }))
}

/// A mail server's URL, and whether its scheme is the TLS one (`tls`) rather than the other (`plain`); never with
/// credentials in it (franz signs in with `mail.user` and `mail.password`, which nothing prints).
fn mail_url<E: de::Error>(value: &str, form: &str, tls: &str, plain: &str) -> Result<(reqwest::Url, bool), E> {
    let url = reqwest::Url::parse(value.trim()).map_err(|_| E::custom(format!("the value is not {form}")))?;
    let secure = match url.scheme() {
        scheme if scheme == tls => true,
        scheme if scheme == plain => false,
        _ => return Err(E::custom(format!("the value is not {form}"))),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(E::custom(
            "the URL carries credentials (user:password@); give the user as mail.user (FRANZ_MAIL_USER) and the \
             password as mail.password (FRANZ_MAIL_PASSWORD) instead",
        ));
    }
    Ok((url, secure))
}

/// A mail server's host, as DNS knows it (an international name in punycode, lower case; an IPv6 address without
/// its brackets), and its port when the URL gives one (never 0).
fn mail_server<E: de::Error>(url: &reqwest::Url, form: &str) -> Result<(String, Option<u16>), E> {
    let Some(host) = url.host_str().filter(|host| !host.is_empty()) else {
        return Err(E::custom(format!("the URL names no server; give {form}")));
    };
    let host = match host.strip_prefix('[').and_then(|inner| inner.strip_suffix(']')) {
        Some(v6) => v6.to_owned(),
        None => {
            let decoded = percent_encoding::percent_decode_str(host).decode_utf8_lossy();
            idna::domain_to_ascii(&decoded).map_err(|_| E::custom(format!("{decoded:?} is no host name")))?
        }
    };
    if url.port() == Some(0) {
        return Err(E::custom("port 0 names no server; give the server's port, or none for the usual one"));
    }
    Ok((host, url.port()))
}

/// The server replies are sent through: `smtps://` (TLS) or `smtp://` (STARTTLS, or no TLS to this machine); no
/// credentials or path in the URL.
pub(super) fn smtp_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<super::SmtpUrl>, D::Error> {
    let form = "an smtps:// or smtp:// URL such as smtps://smtp.example.com";
    let (url, tls) = mail_url(&text(deserializer)?, form, "smtps", "smtp")?;
    let (host, port) = mail_server(&url, form)?;
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(de::Error::custom(format!("the URL has a path, query or fragment; give {form}")));
    }
    let port = port.unwrap_or(if tls { 465 } else { 587 });
    Ok(Some(super::SmtpUrl { tls, host, port }))
}

/// The desk's public URL: an http(s) origin, with no path, credentials, query or fragment (the desk serves from
/// its root).
pub(super) fn public_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = text(deserializer)?;
    let form = "an http:// or https:// URL with no path, such as https://desk.example.com";
    let url = reqwest::Url::parse(value.trim()).map_err(|_| de::Error::custom(format!("{value:?} is not {form}")))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none_or(str::is_empty)
        || !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(de::Error::custom(format!("the value is not {form}")));
    }
    Ok(Some(url.as_str().trim_end_matches('/').to_owned()))
}

// Settings kept in one unit and written in another: `deserialize` parses and converts, `serialize` shows the value
// as it is written, for `franz config`.

pub(super) mod cooldown_secs {
    use super::*;
    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        number(deserializer, 0..=86_400, "a number of seconds from 0 to 86400").map(Duration::from_secs)
    }
    pub(in crate::config) fn serialize<S: Serializer>(cooldown: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(cooldown.as_secs())
    }
}

pub(super) mod days {
    use super::*;
    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        number(deserializer, 0..=365, "a number of days from 0 to 365").map(|days| Duration::from_secs(days * 86_400))
    }
    pub(in crate::config) fn serialize<S: Serializer>(span: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(span.as_secs() / 86_400)
    }
}

/// The window of a rating: 1 to 365 whole days.
pub(super) mod window_days {
    use super::*;
    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        number(deserializer, 1..=365, "a number of days from 1 to 365").map(|days| Duration::from_secs(days * 86_400))
    }
    pub(in crate::config) fn serialize<S: Serializer>(span: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(span.as_secs() / 86_400)
    }
}

/// The satisfaction question: 1 to 300 characters, without control characters (it goes into a Discord message and
/// a mail as it is written).
pub(super) fn question<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let value = text(deserializer)?;
    let value = value.trim();
    if value.is_empty() || value.chars().count() > 300 || value.chars().any(char::is_control) {
        return Err(de::Error::custom("a question of 1 to 300 characters on one line"));
    }
    Ok(value.to_owned())
}

pub(super) mod retention_hours {
    use super::*;
    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let hours = number(deserializer, 0..=876_000, "a number of hours (0 keeps segments forever)")?;
        Ok((hours > 0).then(|| Duration::from_secs(hours * 3600)))
    }
    pub(in crate::config) fn serialize<S: Serializer>(
        age: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(age.map_or(0, |age| age.as_secs() / 3600))
    }
}

pub(super) mod retention_mb {
    use super::*;
    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
        let megabytes = number(deserializer, 0..=16_777_216, "a number of MiB per partition (0: no limit)")?;
        Ok((megabytes > 0).then_some(megabytes << 20))
    }
    pub(in crate::config) fn serialize<S: Serializer>(bytes: &Option<u64>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(bytes.map_or(0, |bytes| bytes >> 20))
    }
}

pub(super) mod segment_mb {
    use super::*;
    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        number(deserializer, 1..=1024, "a number of MiB from 1 to 1024").map(|megabytes| megabytes << 20)
    }
    pub(in crate::config) fn serialize<S: Serializer>(bytes: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(bytes >> 20)
    }
}
