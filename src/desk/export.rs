//! What `GET /api/export` sends: every ticket created since a date, with its times, team, labels and who held and closed it,
//! as CSV or JSON Lines, for a team's own analysis (`franz tickets export`). The answer is streamed: the store is
//! read a page of [`PAGE`] tickets at a time, each page a short read of its own (`store::query::export_page`, by
//! `created_at` and `seq`), written out before the next is read, so a million tickets export in constant memory and
//! no read holds the store for long; a client that stops reading stops the export.
//!
//! The rows are data for a spreadsheet, and their text comes from submitters: a CSV cell that a spreadsheet would
//! take for a formula (starting with `=`, `+`, `-`, `@` or a tab) is written with a `'` before it, as OWASP
//! advises, so opening the file runs nothing; a line break in a cell becomes a space, so each ticket is one line.
//! JSON Lines keeps every value as it is.

use axum::body::{Body, Bytes};
use serde_json::{Value, json};

use crate::lifecycle::TicketState;
use crate::store::query::ExportMark;

/// Tickets read and written at a time.
pub const PAGE: usize = 1_000;

/// The columns, in order: CSV's header and JSON's keys.
pub const COLUMNS: [&str; 20] = [
    "id",
    "created_at",
    "submitted",
    "status",
    "priority",
    "team",
    "labels",
    "origin",
    "contact",
    "contact_id",
    "subject",
    "assignee",
    "first_claimed_at",
    "closed_at",
    "closed_by",
    "close_reason",
    "comments",
    "rating",
    "rating_comment",
    "rated_at",
];

/// How the tickets are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// The format named `name` (`csv`, `jsonl`).
    pub fn parse(name: &str) -> Result<Format, String> {
        match name {
            "csv" => Ok(Format::Csv),
            "jsonl" => Ok(Format::Jsonl),
            other => Err(format!("there is no export format {other:?}; use csv or jsonl")),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Jsonl => "application/jsonl; charset=utf-8",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

/// `since` as the store compares it with `created_at` (RFC 3339 UTC as franz writes it): a date (`2026-12-01`, from
/// its midnight UTC) or a time with an offset.
pub fn since(text: &str) -> Result<String, String> {
    use chrono::Datelike as _;
    let text = text.trim();
    let no_date = || format!("--since {text:?} is no date: give 2026-12-01 or 2026-12-01T08:00:00Z");
    // Only a year of four digits compares with the store's times as text (`+10000-…` sorts before `2026-…`).
    let four_digits = |year: i32| (0..=9999).contains(&year);
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return four_digits(date.year()).then(|| format!("{date}T00:00:00.000Z")).ok_or_else(no_date);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&chrono::Utc))
        .filter(|at| four_digits(at.year()))
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .ok_or_else(no_date)
}

/// A ticket's values, in [`COLUMNS`] order.
fn values(ticket: &TicketState) -> [Value; 20] {
    let person = |person: &Option<crate::schema::lifecycle::Person>| person.as_ref().map(|p| p.display());
    let subject: String = ticket.body.lines().next().unwrap_or_default().chars().take(200).collect();
    [
        json!(ticket.id),
        json!(ticket.created_at),
        json!(ticket.submitted),
        json!(ticket.status.name()),
        json!(ticket.priority.name()),
        json!(ticket.team),
        json!(ticket.labels),
        json!(ticket.origin),
        json!(ticket.contact),
        json!(ticket.contact_id),
        json!(subject),
        json!(person(&ticket.assignee)),
        json!(ticket.first_claimed_at),
        json!(ticket.closed_at),
        json!(person(&ticket.closed_by)),
        json!(ticket.close_reason),
        json!(ticket.comments),
        json!(ticket.rating.as_ref().map(|r| r.rating)),
        json!(ticket.rating.as_ref().and_then(|r| r.comment.as_deref())),
        json!(ticket.rating.as_ref().map(|r| r.at.as_str())),
    ]
}

/// A CSV cell: text as it is, a list joined with `;`, nothing for none; one a spreadsheet would take for a formula
/// starts with `'`.
fn cell(value: &Value) -> String {
    let text = match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(";"),
        other => other.to_string(),
    };
    // One line per ticket, whatever the text: a line break in a close reason becomes a space.
    let text = text.replace(['\r', '\n'], " ");
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t') => format!("'{text}"),
        _ => text,
    }
}

/// What opens the export: CSV's header line (JSON Lines has none).
pub fn head(format: Format) -> Vec<u8> {
    match format {
        Format::Csv => rows_csv(std::iter::once(COLUMNS.map(str::to_owned))),
        Format::Jsonl => Vec::new(),
    }
}

fn rows_csv(rows: impl Iterator<Item = [String; 20]>) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        // Writing to memory cannot fail.
        let _ = writer.write_record(&row);
    }
    writer.into_inner().unwrap_or_default()
}

/// `tickets` written in `format`.
pub fn rows(format: Format, tickets: &[TicketState]) -> Vec<u8> {
    match format {
        Format::Csv => rows_csv(tickets.iter().map(|ticket| values(ticket).map(|value| cell(&value)))),
        Format::Jsonl => {
            let mut out = Vec::new();
            for ticket in tickets {
                let object: serde_json::Map<String, Value> =
                    COLUMNS.iter().map(|column| (*column).to_owned()).zip(values(ticket)).collect();
                out.extend_from_slice(Value::Object(object).to_string().as_bytes());
                out.push(b'\n');
            }
            out
        }
    }
}

/// The export as a streamed body, in `format`: `read` gives each page after the mark of the one before (the first
/// after none) with its own mark, until a page is empty. A read that fails ends the stream with an error, so the
/// client sees a cut answer, never a short one that looks whole.
pub fn stream<F, Fut>(mut read: F, format: Format) -> Body
where
    F: FnMut(Option<ExportMark>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(Vec<TicketState>, Option<ExportMark>), String>> + Send,
{
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    tokio::spawn(async move {
        if sender.send(Ok(Bytes::from(head(format)))).await.is_err() {
            return;
        }
        let mut after: Option<ExportMark> = None;
        loop {
            let (tickets, mark) = match read(after.take()).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!("an export stopped: {error}");
                    let _ = sender.send(Err(std::io::Error::other(error))).await;
                    return;
                }
            };
            if tickets.is_empty() {
                return;
            }
            if sender.send(Ok(Bytes::from(rows(format, &tickets)))).await.is_err() {
                return; // the client went away
            }
            after = mark;
        }
    });
    Body::from_stream(futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_date_or_a_time_with_an_offset_and_nothing_else() {
        assert_eq!(since("2026-12-01").unwrap(), "2026-12-01T00:00:00.000Z");
        assert_eq!(since("2026-12-01T09:00:00+01:00").unwrap(), "2026-12-01T08:00:00.000Z");
        assert!(since("yesterday").unwrap_err().contains("no date"));
        assert!(since("2026-13-01").is_err());
    }

    /// Found by an attack (#28), failing first: a date past the year 9999 (`10000-01-01`, or `+20261-12-01` for a
    /// typo of 2026-12-01) was taken, and written `+10000-…`, which sorts before every ticket's `2026-…`: an
    /// export of the tickets created since the year 10000 held every ticket instead of none.
    #[test]
    fn since_refuses_a_year_that_does_not_compare_with_the_stores_times() {
        for text in ["10000-01-01", "+10000-01-01", "+20261-12-01", "+10000-01-01T00:00:00Z"] {
            assert!(since(text).is_err(), "{text:?} became {:?}", since(text));
        }
        assert_eq!(since("9999-12-31").unwrap(), "9999-12-31T00:00:00.000Z");
        assert_eq!(since("0001-01-01").unwrap(), "0001-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_cell_a_spreadsheet_would_run_is_written_as_text() {
        assert_eq!(cell(&json!("=HYPERLINK(\"http://x\")")), "'=HYPERLINK(\"http://x\")");
        for formula in ["+1", "-1", "@SUM(A1)", "\tx"] {
            assert!(cell(&json!(formula)).starts_with('\''), "{formula:?}");
        }
        assert_eq!(cell(&json!("plain")), "plain");
        assert_eq!(cell(&json!("two\r\nlines")), "two  lines", "one line per ticket");
        assert_eq!(cell(&json!(["a", "b"])), "a;b");
        assert_eq!(cell(&Value::Null), "");
        assert_eq!(cell(&json!(3)), "3");
    }

    #[test]
    fn a_row_has_every_column_and_csv_quotes_what_needs_it() {
        let ticket = TicketState {
            id: "t-1".into(),
            body: "line, one \"quoted\"\nline two".into(),
            labels: ["b".to_owned(), "a".to_owned()].into(),
            ..TicketState::default()
        };
        let csv = String::from_utf8(rows(Format::Csv, std::slice::from_ref(&ticket))).unwrap();
        assert!(csv.contains("\"line, one \"\"quoted\"\"\""), "{csv}");
        assert!(csv.contains(",a;b,"), "{csv}");
        let line: Value = serde_json::from_slice(&rows(Format::Jsonl, &[ticket])).unwrap();
        assert_eq!(line.as_object().unwrap().len(), COLUMNS.len());
        assert_eq!(line["labels"], json!(["a", "b"]));
        let head = String::from_utf8(head(Format::Csv)).unwrap();
        assert_eq!(head.trim_end(), COLUMNS.join(","));
    }
}
