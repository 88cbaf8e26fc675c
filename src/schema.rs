//! Every type that crosses a Kafka topic, and the ticket id derivation they share.
//!
//! This module is the wire contract of franz: adding or renaming a serialized field here changes what other
//! programs read from the topics. It holds no I/O and no validation policy; `services::aufbereitung::normalize`
//! decides what is valid, this module only says what the records look like.

pub mod lifecycle;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The longest ticket body, in characters, after trimming: aufbereitung's bound, which `franz ticket`, the bot and
/// akte share.
pub const MAX_MESSAGE_CHARS: usize = 4000;
/// The longest username, in characters, after trimming.
pub const MAX_USERNAME_CHARS: usize = 100;
/// The longest optional id or name field of an intake record (Discord snowflakes are about 20 characters).
pub const MAX_FIELD_CHARS: usize = 200;
/// Intake records larger than this are rejected before they are parsed: a valid ticket is far smaller.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// The namespace of franz ticket ids (UUID v5). Changing it changes every id, so it never changes.
const TICKET_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b0f_2a8e_5d4c_4f1b_9a7e_3c2d_1e0f_a5b6);

/// A raw intake record on `discordMSG`, as the Discord bot and `franz ticket` publish it.
///
/// `message`, `username` and `timestamp` are the historical fields; the rest are franz additions that older
/// producers leave out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntakeRecord {
    pub message: String,
    pub username: String,
    /// RFC 3339, UTC, with milliseconds.
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction_id: Option<String>,
    /// The ticket this one follows: the submitter wrote to it after it was closed for longer than the reopen
    /// window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<String>,
    /// The team the submitter chose in `/ticket`'s category menu: it routes the ticket there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Where the ticket came from, one of [`ORIGINS`]; absent for Discord and `franz ticket`, as the historical
    /// producers write it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The id of the message it came as in its channel (a mail's Message-ID, without angle brackets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Why it was sent by a program and not a person (an auto-reply, a mailing list), if it was: franz then sends
    /// it no automatic answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatic: Option<String>,
    /// The files it carries that franz keeps (a mail's attachments, on the files topic before this record).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<lifecycle::Attachment>,
}

/// The origin of a ticket from Discord (the bot, `franz ticket`, any producer of the historical format).
pub const ORIGIN_DISCORD: &str = "Discord";
/// The origin of a ticket that came in by mail.
pub const ORIGIN_EMAIL: &str = "Email";
/// The origins an intake record may name.
pub const ORIGINS: [&str; 2] = [ORIGIN_DISCORD, ORIGIN_EMAIL];

impl IntakeRecord {
    /// The record key: the submitter's user id when known, else the username, so one person's tickets stay in
    /// order on one partition.
    pub fn key(&self) -> &str {
        self.user_id.as_deref().unwrap_or(&self.username)
    }

    /// The id aufbereitung will give this record's ticket, when it can be known before publishing.
    pub fn ticket_id(&self) -> Option<String> {
        self.interaction_id.as_deref().map(ticket_id_for_interaction)
    }
}

/// A normalized ticket on `tickets-formatted`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Ticket {
    /// Stable: the same input record always yields the same id, so consumers can drop redelivered duplicates.
    pub id: String,
    pub contact: String,
    pub origin: String,
    pub body: String,
    /// RFC 3339 in UTC.
    pub date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    /// The Discord server the ticket was submitted in, so staff can tell where it came from; absent for tickets
    /// from elsewhere and from records written before franz kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild_id: Option<String>,
    /// The channel the ticket was submitted in; absent as `guild_id` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    /// The closed ticket this one follows (see [`IntakeRecord::follows`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<String>,
    /// See [`IntakeRecord::category`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// See [`IntakeRecord::message_id`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// See [`IntakeRecord::automatic`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatic: Option<String>,
    /// See [`IntakeRecord::attachments`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<lifecycle::Attachment>,
}

/// Where a record came from: enough to find the original again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Why a record could not be normalized. The serialized names are part of the DLQ contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    JsonDecodeError,
    ValidationError,
    UnexpectedError,
}

/// A record on `tickets-formatted-dlq`: what could not be normalized, with the original bytes.
///
/// Exactly one of `raw_value` (the bytes were UTF-8) and `raw_value_b64` (they were not) is set. Originals larger
/// than [`DeadLetter::RAW_LIMIT`] keep only their first bytes (`raw_truncated`, `raw_size`); the whole record
/// stays at `source` in the intake topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub error: String,
    pub error_type: ErrorType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_value_b64: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw_truncated: bool,
    /// The size of the original value in bytes.
    pub raw_size: usize,
    pub time: String,
    pub source: LetterSource,
}

/// Where a dead letter's original is: a record in a topic, or a mail in a mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LetterSource {
    Record(SourceRef),
    Mail(MailRef),
}

/// A mail in a mailbox: what finds it again there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailRef {
    /// The mailbox's URL (never with credentials).
    pub mailbox: String,
    pub uid_validity: u32,
    pub uid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

impl From<SourceRef> for LetterSource {
    fn from(source: SourceRef) -> Self {
        LetterSource::Record(source)
    }
}

impl From<MailRef> for LetterSource {
    fn from(mail: MailRef) -> Self {
        LetterSource::Mail(mail)
    }
}

impl std::fmt::Display for LetterSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LetterSource::Record(SourceRef { topic, partition, offset }) => {
                write!(f, "{topic} · partition {partition} · offset {offset}")
            }
            LetterSource::Mail(MailRef { mailbox, uid_validity, uid, .. }) => {
                write!(f, "{mailbox} · UID {uid} (validity {uid_validity})")
            }
        }
    }
}

impl DeadLetter {
    /// How many bytes of the original a dead letter carries: as many as a record may have to be parsed at all.
    /// JSON escapes a control character as six bytes, so even the worst 64 KiB serializes to under 400 KB, well
    /// inside the 1 MB record limit that Kafka producers and brokers apply by default.
    pub const RAW_LIMIT: usize = 64 * 1024;

    pub fn new(
        error_type: ErrorType,
        error: String,
        raw: &[u8],
        source: impl Into<LetterSource>,
        time: String,
    ) -> Self {
        use base64::Engine as _;
        let kept = &raw[..raw.len().min(Self::RAW_LIMIT)];
        // A cut can split a UTF-8 sequence: judge the whole original, then cut text on a char boundary.
        let (raw_value, raw_value_b64) = match std::str::from_utf8(raw) {
            Ok(text) => (Some(text[..floor_char_boundary(text, kept.len())].to_owned()), None),
            Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(kept))),
        };
        DeadLetter {
            error,
            error_type,
            raw_value,
            raw_value_b64,
            raw_truncated: raw.len() > Self::RAW_LIMIT,
            raw_size: raw.len(),
            time,
            source: source.into(),
        }
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// How serious an operational event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Warn,
    Error,
}

/// An operational problem published to `errors` by any franz service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEvent {
    pub service: String,
    pub level: Level,
    pub message: String,
    pub time: String,
    #[serde(default)]
    pub context: Map<String, Value>,
}

/// A staff card on `discord-cards`: which Discord message in which staff channel shows a ticket, and the ticket's
/// version when it was posted (its edits are not recorded). Keyed by [`StaffCard::key`], so a compacted topic keeps
/// one card per ticket and channel; a record with the key and no value (a tombstone) forgets the card. Snowflakes
/// are text, as Discord writes them, since a JavaScript number cannot hold one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffCard {
    pub ticket_id: String,
    pub channel_id: String,
    pub message_id: String,
    pub version: u64,
}

impl StaffCard {
    /// The record key of the card of `ticket_id` in `channel_id`: `<channel id>/<ticket id>`.
    pub fn key(channel_id: u64, ticket_id: &str) -> String {
        format!("{channel_id}/{ticket_id}")
    }
}

/// The ticket id of a record submitted through a Discord interaction (or `franz ticket`).
pub fn ticket_id_for_interaction(interaction_id: &str) -> String {
    Uuid::new_v5(&TICKET_ID_NAMESPACE, format!("interaction:{interaction_id}").as_bytes()).to_string()
}

/// The ticket id of a record that carries no interaction id: derived from where it sits in Kafka.
pub fn ticket_id_for_source(source: &SourceRef) -> String {
    let name = format!("record:{}/{}/{}", source.topic, source.partition, source.offset);
    Uuid::new_v5(&TICKET_ID_NAMESPACE, name.as_bytes()).to_string()
}

/// Now, as RFC 3339 UTC with milliseconds: the format of every franz-written time.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> SourceRef {
        SourceRef { topic: "discordMSG".into(), partition: 1, offset: 42 }
    }

    #[test]
    fn ticket_ids_are_stable_and_distinct_per_input() {
        assert_eq!(ticket_id_for_interaction("123"), ticket_id_for_interaction("123"));
        assert_ne!(ticket_id_for_interaction("123"), ticket_id_for_interaction("124"));
        let other = SourceRef { offset: 43, ..source() };
        assert_ne!(ticket_id_for_source(&source()), ticket_id_for_source(&other));
        // A pinned value, computed independently with Python: uuid.uuid5(NAMESPACE, "interaction:123").
        // If this changes, every id ever issued changes with it.
        assert_eq!(ticket_id_for_interaction("123"), "bf531ebf-37c6-573a-bd7a-e6ae34a0402d");
    }

    #[test]
    fn a_staff_card_is_keyed_by_channel_and_ticket_with_snowflakes_as_text() {
        let card = StaffCard {
            ticket_id: "t-1".into(),
            channel_id: "1177000000000000077".into(),
            message_id: "1579299211210391559".into(),
            version: 3,
        };
        assert_eq!(StaffCard::key(1177000000000000077, "t-1"), "1177000000000000077/t-1");
        assert_eq!(
            serde_json::to_value(&card).unwrap(),
            serde_json::json!({"ticket_id": "t-1", "channel_id": "1177000000000000077",
                "message_id": "1579299211210391559", "version": 3})
        );
    }

    /// Regression: 200,000 control characters (valid UTF-8) once made a dead letter of over 1 MB, which the
    /// producer refused, so aufbereitung stopped on that record at every start.
    #[test]
    fn dead_letter_of_the_worst_text_stays_far_below_a_megabyte() {
        let raw = vec![0x01u8; 200_000];
        let dl = DeadLetter::new(ErrorType::ValidationError, "big".into(), &raw, source(), now_rfc3339());
        let size = serde_json::to_vec(&dl).unwrap().len();
        assert!(size < 500_000, "{size} bytes");
        assert!(dl.raw_truncated);
    }

    #[test]
    fn dead_letter_keeps_non_utf8_bytes_as_base64() {
        let dl = DeadLetter::new(ErrorType::JsonDecodeError, "bad".into(), &[0xff, 0x00], source(), now_rfc3339());
        assert_eq!(dl.raw_value, None);
        assert_eq!(dl.raw_value_b64.as_deref(), Some("/wA="));
        assert!(!dl.raw_truncated);
    }

    #[test]
    fn dead_letter_cuts_oversized_text_on_a_char_boundary() {
        let raw = "é".repeat(DeadLetter::RAW_LIMIT); // two bytes each, so twice the limit
        let dl = DeadLetter::new(ErrorType::ValidationError, "big".into(), raw.as_bytes(), source(), now_rfc3339());
        let kept = dl.raw_value.unwrap();
        assert!(kept.len() <= DeadLetter::RAW_LIMIT && raw.starts_with(&kept));
        assert!(dl.raw_truncated);
        assert_eq!(dl.raw_size, raw.len());
    }
}
