//! Turning records from the errors and dead-letter topics, and the service-level events of the ticket events topic,
//! into Discord embeds that Discord always accepts.
//!
//! Pure functions only: no I/O, no clock. Every string that reaches an embed passes through one of the
//! sanitizers in `crate::discord`, so user text cannot ping anyone, cannot break out of a code block, and never exceeds Discord's
//! limits (truncation is visible and keeps code fences closed). Grouping identical alerts during a storm also lives
//! here, because it is about what an operator sees, not about delivery.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::discord::{chars, clip, code_block, plain};
use crate::schema::{DeadLetter, ErrorEvent, Level};

/// Discord's limits on one embed and one message.
pub mod limits {
    pub const TITLE: usize = 256;
    pub const DESCRIPTION: usize = 4096;
    pub const FIELD_NAME: usize = 256;
    pub const FIELD_VALUE: usize = 1024;
    pub const FIELDS: usize = 25;
    pub const FOOTER: usize = 2048;
    /// Across every embed of one message.
    pub const MESSAGE_TOTAL: usize = 6000;
    pub const EMBEDS_PER_MESSAGE: usize = 10;
}

/// The longest single embed franz renders, so that at least one fits into a message with room to spare. The
/// parts below are sized to add up to less: title 256, description 1,000, footer 200, at most 9 context fields of
/// 64 + 140, a "more" field, and the count field of a grouped alert.
pub const EMBED_BUDGET: usize = 3500;
const DESCRIPTION_BUDGET: usize = 1000;
const FOOTER_BUDGET: usize = 200;
const CONTEXT_FIELDS: usize = 9;
const CONTEXT_NAME: usize = 64;
const CONTEXT_VALUE: usize = 140;
/// How much of a text decides whether two alerts are the same; it also bounds the memory a batch of huge
/// records can take.
const KEY_PART: usize = 2000;

const RED: u32 = 0xE7_4C_3C;
const ORANGE: u32 = 0xE6_7E_22;
const PURPLE: u32 = 0x9B_59_B6;
const GREY: u32 = 0x95_A5_A6;

/// One Discord embed, as the webhook API takes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Embed {
    pub title: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub color: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    pub footer: Footer,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    pub name: String,
    pub value: String,
    pub inline: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Footer {
    pub text: String,
}

impl Embed {
    /// The characters Discord counts towards the 6,000 per message.
    pub fn size(&self) -> usize {
        let fields: usize = self.fields.iter().map(|f| chars(&f.name) + chars(&f.value)).sum();
        chars(&self.title) + chars(&self.description) + chars(&self.footer.text) + fields
    }
}

/// One record from a topic absturz watches, rendered, with what identifies it as "the same alert".
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub embed: Embed,
    /// Alerts with equal keys are the same problem repeated (same service, level and message, or same dead-letter
    /// error); a storm collapses them into one embed.
    pub key: String,
    /// When it happened, as the record says (RFC 3339), if it says.
    pub time: Option<String>,
}

/// Renders one record of `topic` at `offset`.
pub fn render(topic: &str, partition: i32, offset: i64, value: &[u8]) -> Alert {
    let footer = Footer { text: clip(&format!("{topic} · partition {partition} · offset {offset}"), FOOTER_BUDGET) };
    if let Ok(event) = serde_json::from_slice::<ErrorEvent>(value) {
        return error_event(event, footer);
    }
    if let Ok(letter) = serde_json::from_slice::<DeadLetter>(value) {
        return dead_letter(letter, footer);
    }
    // Anything else: JSON pretty-printed, other bytes as text.
    let (language, text, key) = match serde_json::from_slice::<Value>(value) {
        Ok(json) => {
            let pretty = serde_json::to_string_pretty(&json).unwrap_or_default();
            ("json", pretty.clone(), format!("json:{}", clip(&pretty, KEY_PART)))
        }
        Err(_) => {
            let text = String::from_utf8_lossy(value).into_owned();
            ("", text.clone(), format!("text:{}", clip(&text, KEY_PART)))
        }
    };
    let embed = Embed {
        title: format!("Message on {}", clip(&plain(topic), limits::TITLE - 20)),
        description: code_block(language, &text, DESCRIPTION_BUDGET),
        color: GREY,
        fields: Vec::new(),
        timestamp: None,
        footer,
    };
    Alert { key, embed, time: None }
}

/// A record of the ticket events topic as an alert: a service-level point that came (`due_soon` orange, `breached`
/// red); `None` for every other event, which is no alert.
pub fn deadline(topic: &str, partition: i32, offset: i64, value: &[u8]) -> Option<Alert> {
    let event: crate::schema::lifecycle::Event = serde_json::from_slice(value).ok()?;
    let (what, color, target, due) = match &event.change {
        crate::schema::lifecycle::Change::DueSoon { target, due } => ("is due soon", ORANGE, target, due),
        crate::schema::lifecycle::Change::Breached { target, due } => ("was missed", RED, target, due),
        _ => return None,
    };
    let ticket = clip(&plain(&event.ticket_id), 100);
    let due = clip(&plain(due), 40);
    let footer = Footer { text: clip(&format!("{topic} · partition {partition} · offset {offset}"), FOOTER_BUDGET) };
    let embed = Embed {
        title: clip(&format!("Ticket {ticket}: the {} {what}", target.describe()), limits::TITLE),
        description: format!("The {} target of ticket {ticket} {what}: it is due {due}.", target.describe()),
        color,
        fields: Vec::new(),
        timestamp: valid_time(&event.at),
        footer,
    };
    let key = format!("deadline:{}\u{1f}{}\u{1f}{what}\u{1f}{due}", clip(&event.ticket_id, KEY_PART), target.name());
    Some(Alert { embed, key, time: valid_time(&event.at) })
}

fn error_event(event: ErrorEvent, footer: Footer) -> Alert {
    let (level, color) = match event.level {
        Level::Error => ("error", RED),
        Level::Warn => ("warning", ORANGE),
    };
    let title = clip(&format!("{} · {level}", plain(&event.service)), limits::TITLE);
    let mut fields = Vec::new();
    for (name, value) in event.context.iter().take(CONTEXT_FIELDS) {
        let text = match value {
            Value::String(s) => s.clone(),
            other => serde_json::to_string(other).unwrap_or_default(),
        };
        let name = if name.trim().is_empty() { "(unnamed)".to_owned() } else { clip(&plain(name), CONTEXT_NAME) };
        fields.push(Field { name, value: code_block("", &text, CONTEXT_VALUE), inline: false });
    }
    if event.context.len() > CONTEXT_FIELDS {
        let more = event.context.len() - CONTEXT_FIELDS;
        fields
            .push(Field { name: "…".into(), value: format!("{more} more context entries not shown"), inline: false });
    }
    let key = format!("event:{}\u{1f}{level}\u{1f}{}", clip(&event.service, KEY_PART), clip(&event.message, KEY_PART));
    let embed = Embed {
        title,
        description: code_block("", &event.message, DESCRIPTION_BUDGET),
        color,
        fields,
        timestamp: valid_time(&event.time),
        footer,
    };
    Alert { embed, key, time: valid_time(&event.time) }
}

fn dead_letter(letter: DeadLetter, footer: Footer) -> Alert {
    let error_type =
        serde_json::to_value(letter.error_type).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let raw = match (&letter.raw_value, &letter.raw_value_b64) {
        (Some(text), _) => code_block("", text, 1000),
        (None, Some(b64)) => format!("base64: {}", code_block("", b64, 1000)),
        (None, None) => "(no value)".to_owned(),
    };
    let source = plain(&letter.source.to_string());
    let mut fields = vec![
        Field { name: "Error type".into(), value: clip(&plain(&error_type), limits::FIELD_VALUE), inline: true },
        Field { name: "Source".into(), value: clip(&source, limits::FIELD_VALUE), inline: true },
        Field { name: "Raw value".into(), value: raw, inline: false },
    ];
    if letter.raw_truncated {
        fields.push(Field { name: "Size".into(), value: format!("{} bytes (cut)", letter.raw_size), inline: true });
    }
    let key = format!("dlq:{error_type}\u{1f}{}", clip(&letter.error, KEY_PART));
    let embed = Embed {
        title: "Dead letter".to_owned(),
        description: code_block("", &letter.error, 1000),
        color: PURPLE,
        fields,
        timestamp: valid_time(&letter.time),
        footer,
    };
    Alert { embed, key, time: valid_time(&letter.time) }
}

/// One embed for `count` identical alerts, first and last seen at the given times.
pub fn grouped(first: &Alert, count: usize, first_time: Option<&str>, last_time: Option<&str>) -> Embed {
    let mut embed = first.embed.clone();
    let suffix = format!(" ×{count}");
    embed.title = format!("{}{suffix}", clip(&embed.title, limits::TITLE - chars(&suffix)));
    let seen = match (first_time, last_time) {
        (Some(first), Some(last)) => format!("first {first}, last {last}"),
        _ => "times not recorded".to_owned(),
    };
    embed.fields.truncate(limits::FIELDS - 1);
    embed.fields.insert(
        0,
        Field {
            name: "Repeated".into(),
            value: clip(&format!("{count} times: {seen}"), limits::FIELD_VALUE),
            inline: false,
        },
    );
    embed.fields.truncate(limits::FIELDS);
    embed
}

/// A minimal embed that Discord cannot reject: used when it rejected the rich one.
pub fn minimal(alert: &Alert) -> Embed {
    Embed {
        title: "Alert (shown plainly: Discord rejected the full rendering)".into(),
        description: code_block("", &alert.key, DESCRIPTION_BUDGET),
        color: GREY,
        fields: Vec::new(),
        timestamp: None,
        footer: alert.embed.footer.clone(),
    }
}

/// Discord rejects an embed whose timestamp is not ISO 8601; anything else is left out.
fn valid_time(time: &str) -> Option<String> {
    chrono::DateTime::parse_from_rfc3339(time).ok().map(|t| t.to_rfc3339())
}

/// The JSON body of one webhook message: its embeds, and no mention parsing at all.
pub fn message(embeds: &[Embed]) -> Value {
    let mut body = Map::new();
    body.insert("embeds".into(), serde_json::to_value(embeds).unwrap_or_default());
    body.insert("allowed_mentions".into(), serde_json::json!({"parse": []}));
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_event_becomes_an_embed_titled_by_service_and_level() {
        let value = br#"{"service":"aufbereitung","level":"error","message":"broker down","time":"2026-02-24T08:32:23.255Z","context":{"source":{"offset":3}}}"#;
        let alert = render("errors", 0, 9, value);
        assert_eq!(alert.embed.title, "aufbereitung · error");
        assert_eq!(alert.embed.color, RED);
        assert!(alert.embed.description.contains("broker down"));
        assert_eq!(alert.embed.fields[0].name, "source");
        assert_eq!(alert.embed.timestamp.as_deref(), Some("2026-02-24T08:32:23.255+00:00"));
        assert_eq!(alert.embed.footer.text, "errors · partition 0 · offset 9");
    }

    #[test]
    fn dead_letter_shows_type_error_source_and_raw_value() {
        let value = br#"{"error":"invalid JSON","error_type":"json_decode_error","raw_value":"{oops","raw_size":5,"time":"2026-02-24T08:32:23Z","source":{"topic":"discordMSG","partition":1,"offset":42}}"#;
        let alert = render("tickets-formatted-dlq", 1, 7, value);
        let text = serde_json::to_string(&alert.embed).unwrap();
        for needle in [
            "Dead letter",
            "json\\\\_decode\\\\_error",
            "invalid JSON",
            "discordMSG · partition 1 · offset 42",
            "```\\n{oops\\n```",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn other_json_is_pretty_printed_and_other_bytes_shown_as_text() {
        assert!(render("errors", 0, 0, br#"{"a":1}"#).embed.description.starts_with("```json\n{\n  \"a\": 1\n}"));
        assert!(render("errors", 0, 0, b"plain words").embed.description.contains("plain words"));
    }

    #[test]
    fn user_text_cannot_ping_or_close_the_code_block() {
        let event =
            serde_json::json!({"service": "@everyone", "level": "error", "message": "```\n<@123> @here", "time": "x"});
        let alert = render("errors", 0, 0, event.to_string().as_bytes());
        let text = serde_json::to_string(&alert.embed).unwrap();
        assert!(!text.contains("@everyone") && !text.contains("@here") && !text.contains("<@123>"), "{text}");
        assert_eq!(
            alert.embed.description.matches("```").count(),
            2,
            "only the frame's fences: {}",
            alert.embed.description
        );
        assert_eq!(message(&[alert.embed])["allowed_mentions"], serde_json::json!({"parse": []}));
    }
}

#[cfg(test)]
mod props {
    //! Property tests; `cargo xtask props` runs them with many more cases.
    use super::*;
    use proptest::prelude::*;

    fn within_limits(embed: &Embed) -> Result<(), TestCaseError> {
        prop_assert!(chars(&embed.title) <= limits::TITLE);
        prop_assert!(chars(&embed.description) <= limits::DESCRIPTION);
        prop_assert!(embed.fields.len() <= limits::FIELDS);
        for field in &embed.fields {
            prop_assert!(chars(&field.name) <= limits::FIELD_NAME && !field.name.is_empty());
            prop_assert!(chars(&field.value) <= limits::FIELD_VALUE && !field.value.is_empty());
        }
        prop_assert!(chars(&embed.footer.text) <= limits::FOOTER);
        prop_assert!(embed.size() <= EMBED_BUDGET, "an embed of {} characters", embed.size());
        let text = serde_json::to_string(embed).unwrap();
        prop_assert!(!text.contains("@everyone") && !text.contains("@here") && !text.contains("<@"), "{}", text);
        for block in [&embed.description].into_iter().chain(embed.fields.iter().map(|f| &f.value)) {
            prop_assert_eq!(block.matches("```").count() % 2, 0, "unbalanced fences in {}", block);
        }
        Ok(())
    }

    /// Any text, long enough to be cut, rich in what could ping someone or break a code block.
    fn any_text() -> impl Strategy<Value = String> {
        text(600)
    }

    /// Like `any_text`, of at most `parts` fragments (a fragment is one to fifteen characters).
    fn text(parts: usize) -> impl Strategy<Value = String> {
        let fragment = prop_oneof![
            Just("```".to_owned()),
            Just("@everyone".to_owned()),
            Just("@here".to_owned()),
            (0u32..100_000).prop_map(|id| format!("<@{id}>")),
            any::<char>().prop_map(String::from),
        ];
        proptest::collection::vec(fragment, 0..parts).prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn props_any_error_event_renders_within_every_limit(
            service in any_text(), message in any_text(), time in any_text(),
            context in proptest::collection::btree_map(text(30), text(80), 0..12),
            level in prop_oneof![Just("error"), Just("warn")],
        ) {
            let event = serde_json::json!({"service": service, "level": level, "message": message, "time": time, "context": context});
            let alert = render("errors", 0, 0, event.to_string().as_bytes());
            within_limits(&alert.embed)?;
            within_limits(&grouped(&alert, 5000, Some("a"), Some("b")))?;
            within_limits(&minimal(&alert))?;
        }

        #[test]
        fn props_any_bytes_render_within_every_limit(value in proptest::collection::vec(any::<u8>(), 0..8000), offset in any::<i64>()) {
            within_limits(&render("tickets-formatted-dlq", 2, offset, &value).embed)?;
        }

        #[test]
        fn props_any_dead_letter_renders_within_every_limit(error in any_text(), raw in any_text(), topic in "[a-zA-Z0-9._-]{1,249}") {
            let letter = serde_json::json!({"error": error, "error_type": "validation_error", "raw_value": raw, "raw_size": raw.len(), "time": "t", "source": {"topic": topic, "partition": 0, "offset": 1}});
            within_limits(&render("tickets-formatted-dlq", 0, 0, letter.to_string().as_bytes()).embed)?;
        }
    }
}
