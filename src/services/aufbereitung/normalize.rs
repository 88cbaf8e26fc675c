//! Turning one raw intake record into a ticket, or into the reason it cannot be one.
//!
//! `normalize` is a pure function of the record's bytes and position: no I/O, no clock, no panics. It never
//! fails in the Rust sense; bad input is an ordinary outcome ([`Rejection`]) that the service turns into a
//! dead letter. The wire shapes it produces are defined in `schema`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::schema::{ErrorType, ORIGINS, SourceRef, Ticket, ticket_id_for_interaction, ticket_id_for_source};
pub use crate::schema::{MAX_FIELD_CHARS, MAX_MESSAGE_CHARS, MAX_RECORD_BYTES, MAX_USERNAME_CHARS};

/// The `origin` of a ticket whose intake record names none.
pub const ORIGIN: &str = crate::schema::ORIGIN_DISCORD;

/// Why a record could not be normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub error_type: ErrorType,
    pub error: String,
}

impl Rejection {
    fn decode(error: impl Into<String>) -> Self {
        Rejection { error_type: ErrorType::JsonDecodeError, error: error.into() }
    }

    fn invalid(error: impl Into<String>) -> Self {
        Rejection { error_type: ErrorType::ValidationError, error: error.into() }
    }
}

/// Normalizes the value of the intake record at `source`.
pub fn normalize(value: &[u8], source: &SourceRef) -> Result<Ticket, Rejection> {
    if value.is_empty() {
        return Err(Rejection::decode("record value is empty; expected a JSON object"));
    }
    if value.len() > MAX_RECORD_BYTES {
        return Err(Rejection::invalid(format!("record is {} bytes; the limit is {MAX_RECORD_BYTES}", value.len())));
    }
    let text = std::str::from_utf8(value).map_err(|e| Rejection::decode(format!("record value is not UTF-8: {e}")))?;
    let json: Value = serde_json::from_str(text).map_err(|e| Rejection::decode(format!("invalid JSON: {e}")))?;
    let Value::Object(fields) = json else {
        return Err(Rejection::invalid(format!("expected a JSON object, got {}", kind(&json))));
    };

    let username = required_text(&fields, "username", MAX_USERNAME_CHARS)?;
    let message = required_text(&fields, "message", MAX_MESSAGE_CHARS)?;
    let date = timestamp(&fields)?;
    let user_id = optional_text(&fields, "user_id")?;
    let interaction_id = optional_text(&fields, "interaction_id")?;
    optional_text(&fields, "display_name")?;
    // Kept as given, like `user_id`: a producer other than the bot may name its place in its own way.
    let guild_id = optional_text(&fields, "guild_id")?;
    let channel_id = optional_text(&fields, "channel_id")?;
    let follows = optional_text(&fields, "follows")?;
    let category = optional_text(&fields, "category")?;
    if let Some(team) = &category {
        crate::lifecycle::routing::team_name(team)
            .map_err(|why| Rejection::invalid(format!("`category` is no team: {why}")))?;
    }
    let message_id = optional_text(&fields, "message_id")?;
    let automatic = optional_text(&fields, "automatic")?;
    let attachments = match fields.get("attachments") {
        None | Some(Value::Null) => Vec::new(),
        Some(list) => {
            let list: Vec<crate::schema::lifecycle::Attachment> = serde_json::from_value(list.clone())
                .map_err(|e| Rejection::invalid(format!("`attachments` is no list of attachments: {e}")))?;
            crate::lifecycle::attachments(&list).map_err(Rejection::invalid)?
        }
    };
    let origin = match optional_text(&fields, "origin")? {
        None => ORIGIN.to_owned(),
        Some(origin) if ORIGINS.contains(&origin.as_str()) => origin,
        Some(other) => {
            return Err(Rejection::invalid(format!("`origin` {other:?} is none of {}", ORIGINS.join(", "))));
        }
    };

    let id = match &interaction_id {
        Some(interaction) => ticket_id_for_interaction(interaction),
        None => ticket_id_for_source(source),
    };
    Ok(Ticket {
        id,
        contact: username,
        origin,
        body: message,
        date,
        contact_id: user_id,
        guild_id,
        channel_id,
        follows,
        category,
        message_id,
        automatic,
        attachments,
    })
}

/// A required string field, trimmed, of 1 to `max` characters.
fn required_text(fields: &Map<String, Value>, name: &str, max: usize) -> Result<String, Rejection> {
    match fields.get(name) {
        None | Some(Value::Null) => Err(Rejection::invalid(format!("missing field `{name}`"))),
        Some(Value::String(s)) => {
            let trimmed = s.trim();
            let chars = trimmed.chars().count();
            if chars == 0 {
                Err(Rejection::invalid(format!("`{name}` is empty")))
            } else if chars > max {
                Err(Rejection::invalid(format!("`{name}` is {chars} characters; the limit is {max}")))
            } else {
                Ok(trimmed.to_owned())
            }
        }
        Some(other) => Err(Rejection::invalid(format!("`{name}` must be a string, got {}", kind(other)))),
    }
}

/// An optional string field: absent or null is `None`; a non-empty string of bounded length is kept as given.
fn optional_text(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, Rejection> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if s.chars().count() > MAX_FIELD_CHARS => {
            Err(Rejection::invalid(format!("`{name}` is longer than {MAX_FIELD_CHARS} characters")))
        }
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(other) => Err(Rejection::invalid(format!("`{name}` must be a string, got {}", kind(other)))),
    }
}

/// The `timestamp` field as RFC 3339 in UTC. Fractional seconds are kept as precise as given.
fn timestamp(fields: &Map<String, Value>) -> Result<String, Rejection> {
    let raw = required_text(fields, "timestamp", 64)?;
    let parsed = DateTime::parse_from_rfc3339(&raw).map_err(|e| {
        Rejection::invalid(format!(
            "`timestamp` {raw:?} is not an RFC 3339 date-time with an offset ({e}); expected e.g. 2026-02-24T08:32:23.255Z"
        ))
    })?;
    Ok(parsed.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source() -> SourceRef {
        SourceRef { topic: "discordMSG".into(), partition: 0, offset: 7 }
    }

    fn run(value: Value) -> Result<Ticket, Rejection> {
        normalize(value.to_string().as_bytes(), &source())
    }

    fn rejected(value: &[u8]) -> Rejection {
        normalize(value, &source()).expect_err("should be rejected")
    }

    #[test]
    fn historical_record_becomes_a_ticket() {
        let ticket = run(json!({
            "message": "  I have an issue with my account ",
            "username": "pontatot",
            "timestamp": "2026-02-24T08:32:23.255Z"
        }))
        .unwrap();
        assert_eq!(ticket.body, "I have an issue with my account");
        assert_eq!(ticket.contact, "pontatot");
        assert_eq!(ticket.origin, "Discord");
        assert_eq!(ticket.date, "2026-02-24T08:32:23.255Z");
        assert_eq!(ticket.contact_id, None);
        assert_eq!(ticket.id, ticket_id_for_source(&source()));
    }

    #[test]
    fn a_record_names_its_origin_from_the_known_ones_and_none_is_discord() {
        let record = |origin: Value| json!({"message": "m", "username": "ann@example.com", "timestamp": "2026-02-24T08:32:23Z", "origin": origin});
        assert_eq!(run(record(json!("Email"))).unwrap().origin, "Email");
        assert_eq!(run(record(Value::Null)).unwrap().origin, "Discord");
        let refused = run(record(json!("Carrier pigeon"))).unwrap_err();
        assert_eq!(refused.error_type, ErrorType::ValidationError);
        assert!(
            refused.error.contains("Carrier pigeon") && refused.error.contains("Discord, Email"),
            "{}",
            refused.error
        );
    }

    #[test]
    fn a_category_is_kept_when_it_names_a_team_and_refused_otherwise() {
        let record = |category: Value| json!({"message": "m", "username": "u", "timestamp": "2026-02-24T08:32:23Z", "category": category});
        assert_eq!(run(record(json!("billing"))).unwrap().category.as_deref(), Some("billing"));
        assert_eq!(run(record(Value::Null)).unwrap().category, None);
        for bad in [json!("Billing Team"), json!("triage"), json!(7)] {
            let refused = run(record(bad.clone())).unwrap_err();
            assert_eq!(refused.error_type, ErrorType::ValidationError, "{bad}");
            assert!(refused.error.contains("category"), "{}", refused.error);
        }
    }

    #[test]
    fn interaction_id_decides_the_ticket_id() {
        let ticket = run(json!({
            "message": "m", "username": "u", "timestamp": "2026-02-24T08:32:23Z",
            "interaction_id": "1234", "user_id": "80351110224678912"
        }))
        .unwrap();
        assert_eq!(ticket.id, ticket_id_for_interaction("1234"));
        assert_eq!(ticket.contact_id.as_deref(), Some("80351110224678912"));
    }

    #[test]
    fn the_discord_server_and_channel_pass_through_and_are_absent_when_not_given() {
        let record = json!({
            "message": "m", "username": "u", "timestamp": "2026-02-24T08:32:23Z",
            "guild_id": "1177000000000000002", "channel_id": " 1177000000000000003 "
        });
        let ticket = run(record).unwrap();
        assert_eq!(ticket.guild_id.as_deref(), Some("1177000000000000002"));
        assert_eq!(ticket.channel_id.as_deref(), Some("1177000000000000003"), "trimmed, as every optional field");
        let wire = serde_json::to_value(&ticket).unwrap();
        assert_eq!(
            (&wire["guild_id"], &wire["channel_id"]),
            (&json!("1177000000000000002"), &json!("1177000000000000003"))
        );

        let historical = run(json!({"message": "m", "username": "u", "timestamp": "2026-02-24T08:32:23Z"})).unwrap();
        assert_eq!((historical.guild_id, historical.channel_id), (None, None));
        let wire = serde_json::to_value(
            run(json!({"message": "m", "username": "u", "timestamp": "2026-02-24T08:32:23Z", "guild_id": ""})).unwrap(),
        )
        .unwrap();
        assert!(wire.get("guild_id").is_none() && wire.get("channel_id").is_none(), "left out when absent: {wire}");
    }

    #[test]
    fn a_server_or_channel_id_is_checked_like_every_optional_field() {
        let with = |field: &str, value: Value| {
            let mut record = json!({"message": "m", "username": "u", "timestamp": "2026-02-24T08:32:23Z"});
            record[field] = value;
            run(record)
        };
        // Not numeric: kept as given, like `user_id`; franz does not require other producers to use snowflakes.
        assert_eq!(with("guild_id", json!("our-shop")).unwrap().guild_id.as_deref(), Some("our-shop"));
        for field in ["guild_id", "channel_id"] {
            let overlong = with(field, json!("9".repeat(MAX_FIELD_CHARS + 1))).unwrap_err();
            assert_eq!(overlong.error_type, ErrorType::ValidationError);
            assert!(overlong.error.contains(&format!("`{field}` is longer than {MAX_FIELD_CHARS}")), "{overlong:?}");
            let number = with(field, json!(1177000000000000002u64)).unwrap_err();
            assert!(number.error.contains(&format!("`{field}` must be a string, got a number")), "{number:?}");
        }
    }

    #[test]
    fn a_ticket_written_before_franz_kept_the_place_still_reads() {
        let old = r#"{"id":"t","contact":"u","origin":"Discord","body":"b","date":"2026-02-24T08:32:23Z"}"#;
        let ticket: Ticket = serde_json::from_str(old).unwrap();
        assert_eq!((ticket.guild_id, ticket.channel_id), (None, None));
    }

    #[test]
    fn timestamps_with_offsets_are_converted_to_utc() {
        let ticket = run(json!({"message": "m", "username": "u", "timestamp": "2026-02-24T10:32:23.5+02:00"})).unwrap();
        assert_eq!(ticket.date, "2026-02-24T08:32:23.500Z");
    }

    #[test]
    fn each_kind_of_bad_input_is_rejected_with_its_type() {
        use ErrorType::*;
        let too_long = "x".repeat(MAX_MESSAGE_CHARS + 1);
        let cases: Vec<(Vec<u8>, ErrorType, &str)> = vec![
            (b"".to_vec(), JsonDecodeError, "empty"),
            (b"{not json".to_vec(), JsonDecodeError, "invalid JSON"),
            (vec![0xff, 0xfe], JsonDecodeError, "not UTF-8"),
            (b"[1,2]".to_vec(), ValidationError, "expected a JSON object, got an array"),
            (
                br#"{"username":"u","timestamp":"2026-02-24T08:32:23Z"}"#.to_vec(),
                ValidationError,
                "missing field `message`",
            ),
            (
                br#"{"message":5,"username":"u","timestamp":"2026-02-24T08:32:23Z"}"#.to_vec(),
                ValidationError,
                "must be a string, got a number",
            ),
            (
                br#"{"message":"  ","username":"u","timestamp":"2026-02-24T08:32:23Z"}"#.to_vec(),
                ValidationError,
                "`message` is empty",
            ),
            (
                format!(r#"{{"message":"{too_long}","username":"u","timestamp":"2026-02-24T08:32:23Z"}}"#).into_bytes(),
                ValidationError,
                "the limit is 4000",
            ),
            (br#"{"message":"m","username":"u","timestamp":"yesterday"}"#.to_vec(), ValidationError, "RFC 3339"),
            (
                br#"{"message":"m","username":"u","timestamp":"2026-02-24T08:32:23"}"#.to_vec(),
                ValidationError,
                "RFC 3339",
            ),
            (
                br#"{"message":"m","username":"u","timestamp":"2026-02-24T08:32:23Z","user_id":12}"#.to_vec(),
                ValidationError,
                "`user_id` must be a string",
            ),
            (vec![b'a'; 1_000_000], ValidationError, "the limit is 65536"),
        ];
        for (input, error_type, fragment) in cases {
            let rejection = rejected(&input);
            assert_eq!(
                rejection.error_type,
                error_type,
                "for {:?}",
                String::from_utf8_lossy(&input[..input.len().min(80)])
            );
            assert!(rejection.error.contains(fragment), "{:?} does not mention {fragment:?}", rejection.error);
        }
    }

    #[test]
    fn limits_count_characters_not_bytes() {
        let body = "ü".repeat(MAX_MESSAGE_CHARS);
        let ticket = run(json!({"message": body, "username": "u", "timestamp": "2026-02-24T08:32:23Z"})).unwrap();
        assert_eq!(ticket.body.chars().count(), MAX_MESSAGE_CHARS);
    }
}

#[cfg(test)]
mod props {
    //! Property tests; `cargo xtask props` runs them with many more cases.
    use super::*;
    use proptest::prelude::*;

    fn source() -> impl Strategy<Value = SourceRef> {
        (0..16i32, 0..i64::MAX).prop_map(|(partition, offset)| SourceRef {
            topic: "discordMSG".into(),
            partition,
            offset,
        })
    }

    /// Text that is valid after trimming: 1..=max characters, any Unicode, padded with whitespace. Whitespace
    /// inside the generated core is mapped to a letter rather than filtered, so no case is ever rejected.
    fn valid_text(max: usize) -> impl Strategy<Value = String> {
        let visible = any::<char>().prop_map(|c| if c.is_whitespace() { 'x' } else { c });
        (proptest::collection::vec(visible, 1..=max), "[ \t\n]{0,3}")
            .prop_map(|(chars, pad)| format!("{pad}{}{pad}", chars.into_iter().collect::<String>()))
    }

    proptest! {
        #[test]
        fn props_any_bytes_give_a_ticket_or_a_rejection(bytes in proptest::collection::vec(any::<u8>(), 0..2048), src in source()) {
            // Must return (not panic); a ticket must serialize.
            if let Ok(ticket) = normalize(&bytes, &src) {
                prop_assert!(serde_json::to_string(&ticket).is_ok());
            }
        }

        #[test]
        fn props_any_json_object_gives_a_ticket_or_a_rejection(
            fields in proptest::collection::btree_map("(message|username|timestamp|user_id|interaction_id|[a-z]{1,4})", any::<String>().prop_map(serde_json::Value::String), 0..6),
            src in source(),
        ) {
            let value = serde_json::to_vec(&fields).unwrap();
            let _ = normalize(&value, &src);
        }

        #[test]
        fn props_valid_input_keeps_text_and_contact_and_has_a_stable_id(
            message in valid_text(MAX_MESSAGE_CHARS),
            username in valid_text(MAX_USERNAME_CHARS),
            millis in 0i64..4_102_444_800_000,
            interaction in proptest::option::of("[0-9]{17,20}"),
            src in source(),
        ) {
            let timestamp = DateTime::from_timestamp_millis(millis).unwrap().to_rfc3339();
            let mut record = serde_json::json!({"message": message, "username": username, "timestamp": timestamp});
            if let Some(id) = &interaction { record["interaction_id"] = id.clone().into(); }
            let bytes = serde_json::to_vec(&record).unwrap();

            let ticket = normalize(&bytes, &src).expect("valid input is accepted");
            prop_assert_eq!(&ticket.body, message.trim());
            prop_assert_eq!(&ticket.contact, username.trim());
            prop_assert_eq!(DateTime::parse_from_rfc3339(&ticket.date).unwrap().timestamp_millis(), millis);
            let reparsed: Ticket = serde_json::from_slice(&serde_json::to_vec(&ticket).unwrap()).unwrap();
            prop_assert_eq!(&reparsed, &ticket);
            prop_assert_eq!(normalize(&bytes, &src).unwrap().id, ticket.id);
        }
    }
}
