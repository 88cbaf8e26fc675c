//! A ticket's conversation for people and programs outside franz: a self-contained HTML page and plain text
//! (`franz tickets transcript`, the ticket page's downloads, the API). It holds only what was said between the
//! submitter and the team: the opening message, the submitter's messages, the public replies, closes with their
//! reason and reopens, with the names of the files that came with a message. Internal notes, refused commands and
//! franz's own bookkeeping never appear: an internal note never leaves franz.
//!
//! The HTML page is one file with nothing to fetch: its stylesheet is inside it, and its own Content-Security-Policy
//! (`default-src 'none'`, the stylesheet allowed by its hash) makes a browser run no script and load nothing, from
//! a disk, a chat or the desk alike. maud escapes every text it renders, so hostile ticket text stays text. The
//! plain text keeps line breaks and tabs and drops every other control character and the characters that hide or
//! reorder text, so a transcript printed to a terminal cannot drive it.

use base64::Engine as _;
use maud::{DOCTYPE, PreEscaped, html};
use sha2::{Digest as _, Sha256};

use crate::lifecycle::TicketState;
use crate::schema::lifecycle::{Change, Event};

/// One thing said or done in a transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// When, as written in the event (RFC 3339 UTC).
    pub at: String,
    /// Who: the submitter's name, or the team member's as the desk shows it.
    pub who: String,
    pub said: Said,
    /// The message, or a close's reason; empty for a reopen.
    pub text: String,
    /// The names of the files the message came with.
    pub files: Vec<String>,
}

/// What kind of line it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Said {
    Opened,
    Wrote,
    Replied,
    Closed,
    Reopened,
}

impl Said {
    fn verb(self) -> &'static str {
        match self {
            Said::Opened => "opened the ticket",
            Said::Wrote => "wrote",
            Said::Replied => "replied",
            Said::Closed => "closed the ticket",
            Said::Reopened => "reopened the ticket",
        }
    }
}

/// The transcript's lines of `history` (the ticket's events in order), oldest first.
pub fn lines(ticket: &TicketState, history: &[Event]) -> Vec<Line> {
    let line = |event: &Event, who: String, said: Said, text: &str| Line {
        at: event.at.clone(),
        who,
        said,
        text: text.to_owned(),
        files: event.change.attachments().iter().map(|file| file.name.clone()).collect(),
    };
    history
        .iter()
        .filter_map(|event| match &event.change {
            Change::Created { body, .. } => Some(line(event, ticket.contact.clone(), Said::Opened, body)),
            Change::SubmitterWrote { body, .. } => Some(line(event, ticket.contact.clone(), Said::Wrote, body)),
            Change::Commented { body, internal: false, .. } => {
                Some(line(event, event.actor.display(), Said::Replied, body))
            }
            Change::Closed { reason } => Some(line(event, event.actor.display(), Said::Closed, reason)),
            Change::Reopened => Some(line(event, event.actor.display(), Said::Reopened, "")),
            _ => None,
        })
        .collect()
}

/// The file name a transcript of `ticket` is offered under (`ticket-<first 8 of its id>.<extension>`), made only
/// of characters every file system and header takes.
pub fn file_name(ticket: &TicketState, extension: &str) -> String {
    let short: String = ticket.id.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
    format!("ticket-{short}-transcript.{extension}")
}

/// `at` as people read it: `2026-12-07 10:00 UTC` (as written when it is no time franz wrote).
fn when(at: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(at)
        .map(|at| at.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| at.to_owned())
}

/// Text with line breaks and tabs kept and every other control character and the characters that hide or reorder
/// text left out.
fn plain(text: &str) -> String {
    text.chars().filter(|c| matches!(c, '\n' | '\t') || !(c.is_control() || crate::lifecycle::hidden(*c))).collect()
}

/// The transcript as plain text.
pub fn text(ticket: &TicketState, history: &[Event]) -> String {
    let mut out = format!(
        "Ticket {}\nFrom {} ({}), opened {}\nStatus: {}\n",
        ticket.id,
        plain(&ticket.contact),
        ticket.origin,
        when(&ticket.created_at),
        ticket.status.name()
    );
    for line in lines(ticket, history) {
        out.push_str(&format!("\n[{}] {} {}", when(&line.at), plain(&line.who), line.said.verb()));
        out.push_str(if line.text.is_empty() { "\n" } else { ":\n" });
        for text in plain(&line.text).lines() {
            out.push_str(&format!("  {text}\n"));
        }
        for file in &line.files {
            out.push_str(&format!("  (file: {})\n", plain(file)));
        }
    }
    out
}

/// The page's stylesheet, the only thing its policy allows.
const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;\
color:#1b1b1b;background:#fff}header{border-bottom:1px solid #ccc;margin-bottom:1rem}\
h1{font-size:1.3rem;margin:0 0 .3rem}.meta{color:#555;margin:0 0 1rem}\
article{margin:0 0 1rem;padding:.6rem .8rem;border-left:4px solid #8aa4c8;background:#f5f7fa}\
article.team{border-color:#6aa36f;background:#f3f8f3}article.status{border-color:#aaa;background:#fafafa}\
article p.said{margin:0;color:#555;font-size:.9rem}article .text{white-space:pre-wrap;overflow-wrap:anywhere;\
margin:.3rem 0 0}ul.files{margin:.3rem 0 0;padding-left:1.2rem;color:#555}";

/// The Content-Security-Policy of a transcript page: nothing but its own stylesheet.
pub fn policy() -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
    format!("default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'")
}

/// The transcript as one self-contained HTML page.
pub fn html(ticket: &TicketState, history: &[Event]) -> String {
    let first_line = ticket.body.lines().next().unwrap_or_default();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content=(policy());
                meta name="referrer" content="no-referrer";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Ticket " (ticket.id) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "Ticket: " bdi { (crate::discord::clip(first_line, 120)) } }
                    p.meta {
                        "From " bdi { (ticket.contact) } " (" (ticket.origin) "), opened " (when(&ticket.created_at))
                        " · status " (ticket.status.name()) " · " code { (ticket.id) }
                    }
                }
                main {
                    @for line in lines(ticket, history) {
                        @let class = match line.said {
                            Said::Opened | Said::Wrote => "submitter",
                            Said::Replied => "team",
                            Said::Closed | Said::Reopened => "status",
                        };
                        article class=(class) {
                            p.said { bdi { (line.who) } " " (line.said.verb()) " · " time datetime=(line.at) { (when(&line.at)) } }
                            @if !line.text.is_empty() { p.text { (line.text) } }
                            @if !line.files.is_empty() {
                                ul.files { @for file in &line.files { li { "file: " bdi { (file) } } } }
                            }
                        }
                    }
                }
            }
        }
    }
    .into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::lifecycle::{Actor, ActorSource, Via};

    fn event(n: u64, actor: Actor, change: Change) -> Event {
        Event {
            event_id: format!("e{n}"),
            ticket_id: "t-1".into(),
            version: Some(n),
            at: format!("2026-12-07T10:0{n}:00.000Z"),
            actor,
            caused_by: format!("c{n}"),
            clocks: None,
            change,
        }
    }

    fn conversation() -> (TicketState, Vec<Event>) {
        let submitter =
            Actor { source: ActorSource::Discord, name: "ponta".into(), id: Some("42".into()), staff: None };
        let ana = Actor::staff(ActorSource::Web, "ana");
        let history = vec![
            event(
                1,
                submitter.clone(),
                Change::Created {
                    contact: "ponta".into(),
                    contact_id: Some("42".into()),
                    origin: "Discord".into(),
                    body: "<script>alert(1)</script> printer\non fire\u{1b}[2J".into(),
                    submitted: "2026-12-07T10:01:00Z".into(),
                    guild_id: None,
                    channel_id: None,
                    follows: None,
                    message_id: None,
                    automatic: None,
                    attachments: Vec::new(),
                    routed: None,
                },
            ),
            event(
                2,
                ana.clone(),
                Change::Commented { body: "secret: the CEO's printer".into(), internal: true, via: None },
            ),
            event(
                3,
                ana.clone(),
                Change::Commented {
                    body: "Which floor? <img src=x onerror=alert(2)>".into(),
                    internal: false,
                    via: None,
                },
            ),
            event(
                4,
                submitter,
                Change::SubmitterWrote {
                    body: "third".into(),
                    attachments: Vec::new(),
                    via: Via::DiscordDm,
                    message_id: None,
                    reopened: false,
                },
            ),
            event(5, ana, Change::Closed { reason: "fixed".into() }),
        ];
        let mut state = None;
        for event in &history {
            state = crate::lifecycle::apply(state, event);
        }
        (state.unwrap(), history)
    }

    #[test]
    fn a_transcript_holds_the_conversation_and_never_an_internal_note() {
        let (ticket, history) = conversation();
        let said: Vec<Said> = lines(&ticket, &history).iter().map(|line| line.said).collect();
        assert_eq!(said, [Said::Opened, Said::Replied, Said::Wrote, Said::Closed]);
        for transcript in [text(&ticket, &history), html(&ticket, &history)] {
            assert!(!transcript.contains("CEO"), "the internal note leaked: {transcript}");
            assert!(transcript.contains("Which floor?") && transcript.contains("fixed"));
        }
    }

    #[test]
    fn hostile_text_stays_text_in_html_and_cannot_drive_a_terminal_in_text() {
        let (ticket, history) = conversation();
        let page = html(&ticket, &history);
        assert!(!page.contains("<script>alert") && !page.contains("<img"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains(&format!("content=\"{}\"", policy())));
        assert!(policy().starts_with("default-src 'none'; style-src 'sha256-"));
        let text = text(&ticket, &history);
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(text.contains(" printer\n  on fire[2J\n"), "{text}");
        assert_eq!(file_name(&ticket, "html"), "ticket-t1-transcript.html");
    }
}
