//! A topic's own settings, as a CreateTopics request gives them: Kafka's `retention.ms` and `retention.bytes`, and
//! `cleanup.policy=delete` (the only policy the broker has).
//!
//! A topic's settings override the broker-wide retention where they are set and leave it in force where they are
//! not. They are fixed when the topic is created (there is no AlterConfigs) and kept in the topic's `topic.json`
//! (see `topics.rs`), so a restart applies them again. This module reads and checks them, in Kafka's words where
//! Kafka has words for a refusal; it does no I/O.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::log::LogConfig;

/// Kafka's name for a topic's time limit, in milliseconds.
pub const RETENTION_MS: &str = "retention.ms";
/// Kafka's name for a topic's size limit, in bytes per partition.
pub const RETENTION_BYTES: &str = "retention.bytes";
/// Kafka's name for what happens to old segments; only `delete` is supported.
pub const CLEANUP_POLICY: &str = "cleanup.policy";

/// One retention limit as Kafka writes it: `-1` for none, or a positive number (milliseconds or bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub enum Limit {
    /// `-1`: nothing is ever deleted for this limit.
    Unlimited,
    /// A positive number of milliseconds or bytes (at most `i64::MAX`, as Kafka's LONG).
    Max(u64),
}

impl TryFrom<i64> for Limit {
    type Error = String;

    fn try_from(value: i64) -> Result<Limit, String> {
        match value {
            -1 => Ok(Limit::Unlimited),
            positive if positive > 0 => Ok(Limit::Max(positive as u64)),
            _ => Err(format!("{value} is neither -1 (no limit) nor a positive number")),
        }
    }
}

impl From<Limit> for i64 {
    fn from(limit: Limit) -> i64 {
        match limit {
            Limit::Unlimited => -1,
            Limit::Max(value) => i64::try_from(value).unwrap_or(i64::MAX),
        }
    }
}

/// The settings a topic was created with; `None` leaves the broker-wide setting in force.
///
/// Stored in `topic.json` under Kafka's names (`{"retention.ms": -1}`); a field that is not set is not written,
/// and a `topic.json` without them (from a franz before per-topic settings) reads as all `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// `retention.ms`: a closed segment whose last write is older than this is deleted.
    #[serde(rename = "retention.ms", default, skip_serializing_if = "Option::is_none")]
    pub retention_ms: Option<Limit>,
    /// `retention.bytes`: old segments are deleted while a partition holds more than this.
    #[serde(rename = "retention.bytes", default, skip_serializing_if = "Option::is_none")]
    pub retention_bytes: Option<Limit>,
}

/// Where a setting in force for a topic comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The topic was created with it.
    Topic,
    /// The broker-wide setting (franz's configuration).
    Broker,
    /// Fixed: the broker has no other.
    Fixed,
}

/// A config name or value a CreateTopics request may not set, with the message for the client (which names the
/// config, as Kafka's does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl TopicConfig {
    /// Whether every setting is the broker-wide one (then `topic.json` holds no settings).
    pub fn is_default(&self) -> bool {
        *self == TopicConfig::default()
    }

    /// Reads the configs of one topic of a CreateTopics request, as (name, value) in request order.
    ///
    /// As Kafka does: a config named twice takes its last value (the earlier one is not looked at), a missing
    /// (null) value is refused before anything else, then an unknown name, then a bad value. Each entry costs the
    /// same small, fixed work, so repeating one does not multiply anything.
    pub fn from_request<'a>(
        configs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<TopicConfig, Refused> {
        let (mut null, mut unknown) = (None, None);
        let (mut ms, mut bytes, mut policy) = (None, None, None);
        for (name, value) in configs {
            let Some(value) = value else {
                null.get_or_insert(name);
                continue;
            };
            match name {
                RETENTION_MS => ms = Some(value),
                RETENTION_BYTES => bytes = Some(value),
                CLEANUP_POLICY => policy = Some(value),
                _ => {
                    unknown.get_or_insert(name);
                }
            }
        }
        if let Some(name) = null {
            return Err(Refused(format!("Null value not supported for topic configs: {name}")));
        }
        if let Some(name) = unknown {
            return Err(Refused(format!(
                "Unknown topic config name: {name} (franz's embedded broker takes {RETENTION_MS}, {RETENTION_BYTES} and {CLEANUP_POLICY}=delete)"
            )));
        }
        if let Some(value) = policy {
            check_cleanup_policy(value)?;
        }
        Ok(TopicConfig {
            retention_ms: ms.map(|value| parse_limit(RETENTION_MS, value, "milliseconds")).transpose()?,
            retention_bytes: bytes.map(|value| parse_limit(RETENTION_BYTES, value, "bytes")).transpose()?,
        })
    }

    /// How a partition of this topic is kept: `broker`'s settings with this topic's own limits in their place.
    pub fn apply(&self, broker: &LogConfig) -> LogConfig {
        LogConfig {
            retention_age: match self.retention_ms {
                None => broker.retention_age,
                Some(Limit::Unlimited) => None,
                Some(Limit::Max(ms)) => Some(Duration::from_millis(ms)),
            },
            retention_bytes: match self.retention_bytes {
                None => broker.retention_bytes,
                Some(Limit::Unlimited) => None,
                Some(Limit::Max(bytes)) => Some(bytes),
            },
            ..broker.clone()
        }
    }

    /// The settings in force for this topic under `broker`, as Kafka names and writes them, each with where it
    /// comes from.
    pub fn effective(&self, broker: &LogConfig) -> [(&'static str, String, Origin); 3] {
        let kept = self.apply(broker);
        let ms = kept.retention_age.map_or(-1, |age| i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
        let bytes = kept.retention_bytes.map_or(-1, |bytes| i64::try_from(bytes).unwrap_or(i64::MAX));
        let origin = |own: bool| if own { Origin::Topic } else { Origin::Broker };
        [
            (RETENTION_MS, ms.to_string(), origin(self.retention_ms.is_some())),
            (RETENTION_BYTES, bytes.to_string(), origin(self.retention_bytes.is_some())),
            (CLEANUP_POLICY, "delete".to_string(), Origin::Fixed),
        ]
    }
}

/// A `retention.ms` or `retention.bytes` value: a LONG (surrounding spaces allowed, as Kafka trims them) that is
/// -1 or positive.
fn parse_limit(name: &str, value: &str, unit: &str) -> Result<Limit, Refused> {
    let number: i64 = value
        .trim()
        .parse()
        .map_err(|_| Refused(format!("Invalid value {value} for configuration {name}: Not a number of type LONG")))?;
    Limit::try_from(number).map_err(|_| {
        Refused(format!(
            "Invalid value {value} for configuration {name}: must be -1 (no limit) or a positive number of {unit}"
        ))
    })
}

/// A `cleanup.policy` value: a comma-separated list (as Kafka's LIST type) of `delete`, since the broker does not
/// compact.
fn check_cleanup_policy(value: &str) -> Result<(), Refused> {
    let mut items = value.split(',').map(str::trim);
    if items.clone().any(|item| item == "compact") {
        return Err(Refused(format!(
            "Invalid value {value} for configuration {CLEANUP_POLICY}: franz's embedded broker does not compact topics; only delete is supported"
        )));
    }
    if value.trim().is_empty() || !items.all(|item| item == "delete") {
        return Err(Refused(format!(
            "Invalid value {value} for configuration {CLEANUP_POLICY}: String must be one of: delete (compact is not supported)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(configs: &[(&str, Option<&str>)]) -> Result<TopicConfig, Refused> {
        TopicConfig::from_request(configs.iter().copied())
    }

    fn refusal(configs: &[(&str, Option<&str>)]) -> String {
        read(configs).expect_err("refused").0
    }

    #[test]
    fn retention_limits_take_minus_one_or_a_positive_long() {
        let config = read(&[("retention.ms", Some("-1")), ("retention.bytes", Some(" 1048576 "))]).unwrap();
        assert_eq!(config.retention_ms, Some(Limit::Unlimited));
        assert_eq!(config.retention_bytes, Some(Limit::Max(1 << 20)));
        assert_eq!(
            read(&[("retention.ms", Some("9223372036854775807"))]).unwrap().retention_ms,
            Some(Limit::Max(i64::MAX as u64))
        );
        assert_eq!(read(&[("cleanup.policy", Some("delete"))]).unwrap(), TopicConfig::default());
        assert_eq!(read(&[]).unwrap(), TopicConfig::default());
    }

    #[test]
    fn bad_values_are_refused_naming_the_config() {
        for (name, value) in [
            ("retention.ms", "abc"),
            ("retention.ms", "0"),
            ("retention.ms", "-2"),
            ("retention.ms", "9223372036854775808"),
            ("retention.ms", ""),
            ("retention.bytes", "1.5"),
            ("retention.bytes", "0"),
            ("cleanup.policy", "compact"),
            ("cleanup.policy", "delete,compact"),
            ("cleanup.policy", "remove"),
            ("cleanup.policy", ""),
        ] {
            let message = refusal(&[(name, Some(value))]);
            assert!(message.contains(name) && message.contains("Invalid value"), "{name}={value}: {message}");
        }
        assert!(refusal(&[("cleanup.policy", Some("compact"))]).contains("does not compact"));
    }

    #[test]
    fn unknown_names_and_null_values_are_refused_naming_the_config() {
        let message = refusal(&[("retention.ms", Some("-1")), ("segment.bytes", Some("1024"))]);
        assert!(message.starts_with("Unknown topic config name: segment.bytes"), "{message}");
        // Kafka looks for null values first, whatever else is wrong.
        let message = refusal(&[("segment.bytes", Some("1")), ("retention.bytes", None)]);
        assert_eq!(message, "Null value not supported for topic configs: retention.bytes");
    }

    #[test]
    fn a_config_named_twice_takes_its_last_value_as_kafka_does() {
        let config = read(&[("retention.ms", Some("not a number")), ("retention.ms", Some("-1"))]).unwrap();
        assert_eq!(config.retention_ms, Some(Limit::Unlimited));
        let repeated = vec![("retention.bytes", Some("5")); 10_000];
        assert_eq!(read(&repeated).unwrap().retention_bytes, Some(Limit::Max(5)));
    }

    #[test]
    fn a_topics_own_limits_replace_the_broker_wide_ones_only_where_set() {
        let broker = LogConfig::default();
        let forever = TopicConfig { retention_ms: Some(Limit::Unlimited), retention_bytes: Some(Limit::Unlimited) };
        let kept = forever.apply(&broker);
        assert_eq!((kept.retention_age, kept.retention_bytes), (None, None));
        assert_eq!(kept.segment_bytes, broker.segment_bytes);
        let hour = TopicConfig { retention_ms: Some(Limit::Max(3_600_000)), retention_bytes: None };
        let kept = hour.apply(&broker);
        assert_eq!(
            (kept.retention_age, kept.retention_bytes),
            (Some(Duration::from_secs(3600)), broker.retention_bytes)
        );
        let kept = TopicConfig::default().apply(&broker);
        assert_eq!((kept.retention_age, kept.retention_bytes), (broker.retention_age, broker.retention_bytes));
    }

    #[test]
    fn settings_are_stored_under_kafkas_names_and_unset_ones_not_at_all() {
        let config = TopicConfig { retention_ms: Some(Limit::Unlimited), retention_bytes: None };
        assert_eq!(serde_json::to_string(&config).unwrap(), r#"{"retention.ms":-1}"#);
        assert_eq!(serde_json::from_str::<TopicConfig>("{}").unwrap(), TopicConfig::default());
        assert!(serde_json::from_str::<TopicConfig>(r#"{"retention.ms":0}"#).is_err());
    }
}
