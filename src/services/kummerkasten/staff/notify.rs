//! Direct messages to a ticket's submitter: which events they are told about (a claim, a public reply, a close
//! with its reason), what the message says, and sending it.
//!
//! The texts are pure functions of the event and the ticket, tested without Discord; ticket text is defused
//! (`discord::plain`) and nothing pings. Sending opens the bot's DM channel with the submitter and posts there, with
//! a nonce from the event id that Discord enforces, so a redelivered event does not send the same message twice.
//! Which events to send, and when to retry, is `follow`'s business; this module decides no ticket. Where a
//! message went is recorded on its ticket ([`delivery`]): the desk shows it under the reply, and an answer to the
//! message finds its ticket by the message id.

use std::time::Duration;

use poise::serenity_prelude as serenity;
use serde_json::{Value, json};

use crate::discord::{clip, plain};
use crate::lifecycle::TicketState;
use crate::schema::lifecycle::{Action, Actor, ActorSource, Change, Command, Delivery, Event, Via};
use crate::services::kummerkasten::{NAME, connect};

/// Discord's limit on a message's `content`.
const CONTENT_MAX: usize = 2000;
/// The most characters of one line of a reply one message quotes; a longer line goes on in the next message.
const QUOTE_MAX: usize = 1900;
/// The first line of the ticket, as the message names it.
const TITLE_MAX: usize = 80;

/// Discord's code for "Cannot send messages to this user": the user accepts no direct messages from the bot.
pub const DMS_CLOSED: isize = 50007;

/// An event the submitter is told about.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub event_id: String,
    pub ticket_id: String,
    /// When akte decided it (RFC 3339).
    pub at: String,
    pub what: What,
}

/// What happened to the ticket, and who did it.
#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// The ticket was created: it gets its own thread, when the threads are on (no direct message says so).
    Opened,
    Claimed {
        by: String,
    },
    Replied {
        by: String,
        body: String,
    },
    Closed {
        by: String,
        reason: String,
    },
    /// The ticket waits for the submitter's answer, and closes at `closes` (RFC 3339) without one.
    Reminded {
        closes: String,
    },
}

/// The notice for `event`, if it is one the submitter is told about: a claim, a public reply, a close (and the
/// creation, which opens the ticket's thread). Internal notes, replies written in the ticket's thread (which is
/// where the submitter reads them already) and every other change stay with the team.
pub fn notice(event: &Event) -> Option<Notice> {
    // The submitter reads a name: the staff member's, or the Discord username of an account linked to nobody.
    let by = event.actor.person().name;
    let what = match &event.change {
        Change::Created { .. } => What::Opened,
        Change::Claimed { by } => What::Claimed { by: by.name.clone() },
        Change::Commented { body, internal: false, via: None } => What::Replied { by, body: body.clone() },
        Change::Closed { reason } => What::Closed { by, reason: reason.clone() },
        Change::Reminded { closes } => What::Reminded { closes: closes.clone() },
        _ => return None,
    };
    Some(Notice { event_id: event.event_id.clone(), ticket_id: event.ticket_id.clone(), at: event.at.clone(), what })
}

/// Whether the notice is recent enough to send: a follower that starts on a long history (a new consumer group, a
/// topic replayed) must not message people about what happened days ago.
pub fn is_recent(notice: &Notice, now: chrono::DateTime<chrono::Utc>, within: Duration) -> bool {
    let Ok(at) = chrono::DateTime::parse_from_rfc3339(&notice.at) else { return false };
    let age = now.signed_duration_since(at.with_timezone(&chrono::Utc));
    age.to_std().map_or(true, |age| age <= within) // a clock a little behind akte's makes the age negative
}

/// The message's text: what happened to which ticket, in words the submitter reads; a reply longer than one
/// Discord message goes on in more ([`texts`]), and this is the first.
pub fn text(notice: &Notice, ticket: &TicketState) -> String {
    texts(notice, ticket).remove(0)
}

/// The texts of the messages that tell the submitter: one, or for a long reply as many as its quoted lines need
/// (the whole reply reaches them; a line longer than a message is cut into parts).
pub fn texts(notice: &Notice, ticket: &TicketState) -> Vec<String> {
    let first_line = ticket.body.lines().find(|line| !line.trim().is_empty()).unwrap_or("(no text)");
    let title = format!("“{}” (ticket {})", clip(&plain(first_line.trim()), TITLE_MAX), ticket.id);
    match &notice.what {
        What::Opened => vec![format!("Your ticket {title} was opened.")],
        What::Claimed { by } => {
            vec![clip(&format!("Your ticket {title} is being worked on: {} took it.", plain(by)), CONTENT_MAX)]
        }
        What::Replied { by, body } => {
            let mut parts = vec![format!("{} replied to your ticket {title}:", plain(by))];
            for line in body.trim().lines() {
                let line = plain(line);
                let chars: Vec<char> = line.chars().collect();
                // A line longer than a message goes in pieces, each quoted.
                let pieces: Vec<String> = if chars.is_empty() {
                    vec![String::new()]
                } else {
                    chars.chunks(QUOTE_MAX).map(|piece| piece.iter().collect()).collect()
                };
                for piece in pieces {
                    let quoted = format!("> {piece}");
                    let last = parts.last_mut().expect("a first part");
                    if crate::discord::chars(last) + 1 + crate::discord::chars(&quoted) <= CONTENT_MAX {
                        last.push('\n');
                        last.push_str(&quoted);
                    } else {
                        parts.push(quoted);
                    }
                }
            }
            parts
        }
        What::Closed { by, reason } => {
            vec![clip(
                &format!("Your ticket {title} was closed by {}. Reason: {}", plain(by), plain(reason)),
                CONTENT_MAX,
            )]
        }
        What::Reminded { closes } => {
            let when = chrono::DateTime::parse_from_rfc3339(closes)
                .map(|at| at.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|_| plain(closes));
            vec![clip(
                &format!(
                    "Your ticket {title} is waiting for your answer. Answer here to keep it open; without an answer \
                     it closes on {when}."
                ),
                CONTENT_MAX,
            )]
        }
    }
}

/// The message bodies: the texts, no pings, and nonces from the event that Discord enforces (the first part's as
/// before parts existed, so a message sent before an upgrade is not sent again). The parts after the first reply
/// to it when sent ([`send`]), so that an answer to any of them finds the ticket.
///
/// With `survey` (the satisfaction question), the message of a close ends with it, above five buttons that rate the
/// ticket (`kummerkasten::rating`).
pub fn messages(notice: &Notice, ticket: &TicketState, survey: Option<&str>) -> Vec<Value> {
    let mut texts = texts(notice, ticket);
    let survey = survey.filter(|_| matches!(notice.what, What::Closed { .. }));
    if let Some(question) = survey {
        let question = plain(question);
        let room = CONTENT_MAX.saturating_sub(crate::discord::chars(&question) + 2);
        texts[0] = format!("{}\n\n{question}", clip(&texts[0], room));
    }
    texts
        .into_iter()
        .enumerate()
        .map(|(n, text)| {
            let seed = if n == 0 { format!("dm:{}", notice.event_id) } else { format!("dm:{}:{n}", notice.event_id) };
            let mut body = json!({
                "content": text,
                "allowed_mentions": {"parse": []},
                "nonce": crate::discord::nonce(&seed),
                "enforce_nonce": true,
            });
            if survey.is_some() && n == 0 {
                body["components"] = json!([crate::services::kummerkasten::rating::buttons(&ticket.id)]);
            }
            body
        })
        .collect()
}

/// The first message body ([`messages`]), without a survey.
pub fn message(notice: &Notice, ticket: &TicketState) -> Value {
    messages(notice, ticket, None).remove(0)
}

/// The command that records how the message about `notice` ended: derived from the notice's event, so that a
/// message sent again after a crash is recorded once.
pub fn delivery(notice: &Notice, delivered: bool, detail: Option<String>, message_id: Option<u64>) -> Command {
    delivery_via(notice, Via::DiscordDm, delivered, detail, message_id, None)
}

/// [`delivery`] through `via`; `thread` is the ticket's own thread, when this message opened it.
pub fn delivery_via(
    notice: &Notice,
    via: Via,
    delivered: bool,
    detail: Option<String>,
    message_id: Option<u64>,
    thread: Option<u64>,
) -> Command {
    Command {
        command_id: format!("delivery:{}", notice.event_id),
        ticket_id: notice.ticket_id.clone(),
        actor: Actor { source: ActorSource::Franz, name: NAME.into(), id: None, staff: None },
        action: Action::RecordDelivery(Delivery {
            of: notice.event_id.clone(),
            via,
            delivered,
            detail: detail.map(|text| clip(&text, crate::lifecycle::REASON_MAX)),
            message_id: message_id.map(|id| id.to_string()),
            channel_id: thread.map(|id| id.to_string()),
        }),
    }
}

/// How a direct message ended.
#[derive(Debug)]
pub enum Sent {
    /// Discord took it: the message's id.
    Delivered(u64),
    /// The user accepts no direct messages from the bot (code 50007): skipped, not retried.
    Refused,
    /// Discord refused it for good for another reason (an unknown user, say); skipped, with the reason.
    Dropped(String),
}

/// Sends `bodies` to `user_id` in the bot's DM channel with them, each after the first as a reply to the first. An
/// error is one worth retrying: the network, a timeout, a rate limit or a server error (the nonces make a retry
/// send nothing twice).
pub async fn send(http: &serenity::Http, user_id: u64, bodies: &[Value]) -> Result<Sent, serenity::Error> {
    send_with(http, user_id, bodies, &[]).await
}

/// [`send`], with `files` attached to the first message.
pub async fn send_with(
    http: &serenity::Http,
    user_id: u64,
    bodies: &[Value],
    files: &[serenity::CreateAttachment],
) -> Result<Sent, serenity::Error> {
    let outcome = async {
        let channel = http.create_private_channel(&json!({"recipient_id": user_id.to_string()})).await?;
        let mut first: Option<serenity::Message> = None;
        for body in bodies {
            let mut body = body.clone();
            if let Some(first) = &first {
                body["message_reference"] = json!({"message_id": first.id.to_string(), "fail_if_not_exists": false});
            }
            let attached = if first.is_none() { files.to_vec() } else { Vec::new() };
            let sent = http.send_message(channel.id, attached, &body).await?;
            first.get_or_insert(sent);
        }
        first.ok_or_else(|| serenity::Error::Other("no message to send"))
    }
    .await;
    match outcome {
        Ok(message) => Ok(Sent::Delivered(message.id.get())),
        Err(error) => match (connect::status(&error), connect::code(&error)) {
            (Some(403), Some(DMS_CLOSED)) => Ok(Sent::Refused),
            (Some(status), _) if connect::refused_for_good(status) => Ok(Sent::Dropped(connect::describe(&error))),
            _ => Err(error),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::lifecycle::{Actor, ActorSource, Person};
    use proptest::prelude::*;

    fn event(change: Change) -> Event {
        Event {
            event_id: "e-1".into(),
            ticket_id: "t-1".into(),
            version: Some(2),
            at: "2026-03-01T10:00:00Z".into(),
            actor: Actor {
                source: ActorSource::Discord,
                name: "ana_k".into(),
                id: Some("42".into()),
                staff: Some("ana".into()),
            },
            caused_by: "c-1".into(),
            clocks: None,
            change,
        }
    }

    fn ticket(body: &str) -> TicketState {
        TicketState { id: "t-1".into(), body: body.into(), ..TicketState::default() }
    }

    #[test]
    fn a_silent_submitter_is_reminded_when_the_ticket_closes_without_an_answer() {
        let reminded = notice(&event(Change::Reminded { closes: "2026-12-14T10:00:00.000Z".into() })).unwrap();
        assert_eq!(reminded.what, What::Reminded { closes: "2026-12-14T10:00:00.000Z".into() });
        let text = text(&reminded, &ticket("Printer on fire"));
        assert!(text.contains("is waiting for your answer"), "{text}");
        assert!(text.ends_with("it closes on 2026-12-14 10:00 UTC."), "{text}");
    }

    #[test]
    fn the_submitter_hears_of_claims_public_replies_and_closes_and_of_nothing_else() {
        let told = |change: Change| notice(&event(change)).map(|n| n.what);
        assert_eq!(told(Change::Claimed { by: Person::staff("ana") }), Some(What::Claimed { by: "ana".into() }));
        assert_eq!(
            told(Change::Commented { body: "try again".into(), internal: false, via: None }),
            Some(What::Replied { by: "ana".into(), body: "try again".into() })
        );
        assert_eq!(
            told(Change::Closed { reason: "fixed".into() }),
            Some(What::Closed { by: "ana".into(), reason: "fixed".into() })
        );
        assert_eq!(told(Change::Commented { body: "they are rude".into(), internal: true, via: None }), None, "a note");
        assert_eq!(told(Change::Reopened), None);
        assert_eq!(told(Change::Rejected { action: "claim".into(), reason: "already".into() }), None);
    }

    #[test]
    fn only_recent_events_are_told() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-03-01T10:30:00Z").unwrap().with_timezone(&chrono::Utc);
        let at = |at: &str| Notice {
            at: at.into(),
            ..notice(&event(Change::Claimed { by: Person::staff("ana") })).unwrap()
        };
        let hour = Duration::from_secs(3600);
        assert!(is_recent(&at("2026-03-01T10:00:00Z"), now, hour));
        assert!(is_recent(&at("2026-03-01T10:31:00Z"), now, hour), "a clock a little behind akte's");
        assert!(!is_recent(&at("2026-02-27T10:00:00Z"), now, hour), "days ago");
        assert!(!is_recent(&at("not a time"), now, hour));
    }

    #[test]
    fn a_close_names_the_ticket_who_closed_it_and_why_and_pings_nobody() {
        let close = notice(&event(Change::Closed { reason: "fixed <@1> @everyone".into() })).unwrap();
        let body = message(&close, &ticket("\n  printer on fire\nsecond line"));
        let content = body["content"].as_str().unwrap();
        assert!(content.contains("printer on fire") && content.contains("t-1"), "{content}");
        assert!(content.contains("closed by ana") && content.contains("Reason: fixed"), "{content}");
        assert!(!content.contains("<@1>") && !content.contains("@everyone"), "{content}");
        assert_eq!(body["allowed_mentions"]["parse"], json!([]));
        assert_eq!((body["enforce_nonce"].as_bool(), body["nonce"].as_str().map(str::len)), (Some(true), Some(25)));
    }

    #[test]
    fn a_close_asks_the_survey_question_above_five_buttons_and_nothing_else_does() {
        let close = notice(&event(Change::Closed { reason: "x".repeat(3000) })).unwrap();
        let asked = messages(&close, &ticket("printer"), Some("How did we do? <@1>"));
        let content = asked[0]["content"].as_str().unwrap();
        assert!(!content.contains("<@1>"), "the question is defused too: {content}");
        assert!(crate::discord::chars(content) <= CONTENT_MAX, "{content}");
        assert!(content.contains("How did we do?"), "{content}");
        let buttons = asked[0]["components"][0]["components"].as_array().unwrap();
        assert_eq!(buttons.iter().map(|b| b["label"].as_str().unwrap()).collect::<Vec<_>>(), ["1", "2", "3", "4", "5"]);
        assert!(messages(&close, &ticket("printer"), None)[0].get("components").is_none(), "no survey: no buttons");
        let claim = notice(&event(Change::Claimed { by: Person::staff("ana") })).unwrap();
        let told = messages(&claim, &ticket("printer"), Some("How did we do?"));
        assert!(told[0].get("components").is_none() && !told[0]["content"].as_str().unwrap().contains("How did"));
    }

    proptest! {
        #[test]
        fn props_any_reply_makes_a_message_within_discords_limit(body in "\\PC{1,5000}", first in "\\PC{0,500}") {
            let reply = notice(&event(Change::Commented { body, internal: false, via: None })).unwrap();
            let text = text(&reply, &ticket(&first));
            prop_assert!(crate::discord::chars(&text) <= CONTENT_MAX);
        }
    }
}
