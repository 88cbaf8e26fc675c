//! The mails franz writes: a public reply to a ticket that came by mail, threaded under the customer's own mails
//! so their client shows one conversation.
//!
//! Threading follows RFC 5322: the reply's `In-Reply-To` names the customer's newest mail on the ticket, and
//! `References` the conversation so far (the customer's mails and franz's earlier replies, the newest 20). The
//! subject carries the ticket's token (`[franz #3f2a9c1e7b4d]`), so an answer whose client dropped those headers still
//! finds its ticket. A reply's `Message-ID` is derived from its event, so the same reply sent again is the same
//! mail, and an answer to it names its event. Pure functions of the ticket and its history, tested without a
//! server.

use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, SinglePart};

use crate::lifecycle::TicketState;
use crate::schema::lifecycle::{Change, Delivery, Event, Via};

/// The most message ids a reply's `References` names: the thread's newest.
const REFERENCES_MAX: usize = 20;
/// The most characters of the ticket's first line a subject carries.
const SUBJECT_MAX: usize = 120;

/// A ticket's token, as subjects carry it: the first twelve hex digits of its id.
pub fn token(ticket_id: &str) -> String {
    ticket_id.chars().filter(char::is_ascii_hexdigit).take(12).collect()
}

/// The token a subject carries (`[franz #…]`), if any.
pub fn token_in(subject: &str) -> Option<String> {
    let start = subject.find("[franz #")? + "[franz #".len();
    let rest = &subject[start..];
    let token: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    (token.len() == 12 && rest[token.len()..].starts_with(']')).then(|| token.to_ascii_lowercase())
}

/// The message ids of a ticket's conversation by mail, oldest first: the mail that opened it, the customer's
/// later mails, and franz's replies that the server took.
pub fn thread(history: &[Event]) -> Vec<String> {
    history
        .iter()
        .filter_map(|event| match &event.change {
            Change::Created { message_id, origin, .. } if origin == crate::schema::ORIGIN_EMAIL => message_id.clone(),
            Change::SubmitterWrote { via: Via::Email, message_id, .. } => message_id.clone(),
            Change::Delivery(Delivery { via: Via::Email, delivered: true, message_id, .. }) => message_id.clone(),
            _ => None,
        })
        .collect()
}

/// The newest mail of the customer on the ticket: what a reply answers.
fn answering(history: &[Event]) -> Option<String> {
    history.iter().rev().find_map(|event| match &event.change {
        Change::Created { message_id, .. } => message_id.clone(),
        Change::SubmitterWrote { via: Via::Email, message_id, .. } => message_id.clone(),
        _ => None,
    })
}

/// The `Message-ID` of the reply of `event_id`, at the sending address's domain (without angle brackets).
pub fn message_id(event_id: &str, from: &Mailbox) -> String {
    format!("franz.{event_id}@{}", from.email.domain())
}

/// The event a `Message-ID` that franz made names, if it is one.
pub fn event_of(message_id: &str) -> Option<&str> {
    message_id.strip_prefix("franz.")?.split_once('@').map(|(event, _)| event)
}

/// The reply's subject: `Re: ` and the ticket's first line, with its token.
pub fn subject(ticket: &TicketState) -> String {
    let first = ticket.body.lines().find(|line| !line.trim().is_empty()).unwrap_or("your ticket").trim();
    let mut first: String = first.chars().take(SUBJECT_MAX).collect();
    // Every "Re:" (or "AW:", "Fwd:") before it, and any token of an earlier ticket (a follower's first line is an
    // answer's subject), so the reply says "Re:" once and carries this ticket's token alone.
    loop {
        let lower = first.to_ascii_lowercase();
        let Some(prefix) = ["re:", "aw:", "fwd:", "fw:"].iter().find(|prefix| lower.starts_with(*prefix)) else {
            break;
        };
        first = first[prefix.len()..].trim_start().to_owned();
    }
    while let Some(start) = first.find("[franz #") {
        let end = first[start..].find(']').map_or(first.len(), |end| start + end + 1);
        first.replace_range(start..end, "");
    }
    let first = first.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("Re: {first} [franz #{}]", token(&ticket.id))
}

/// The acknowledgement of a new ticket, unless the text is set.
pub const ACKNOWLEDGEMENT: &str = "Thank you for your message. We have opened a ticket for it and will answer as \
                                   soon as we can; you need not write again. To add to it, answer this mail.";

/// The text of the mail that tells the submitter their ticket was closed, and why; with `survey` (the question
/// and the feedback link), it asks how it went.
pub fn closed(reason: &str, survey: Option<String>) -> String {
    let mut text =
        format!("Your ticket was closed: {}\n\nIf something is still not right, answer this mail.", reason.trim());
    if let Some(survey) = survey {
        text.push_str("\n\n");
        text.push_str(&survey);
        text.push_str("\n(The link works once and asks for nothing else.)");
    }
    text
}

/// A person's reply, or an automatic one (the acknowledgement), which says so (`Auto-Submitted: auto-replied`,
/// RFC 3834), so that an auto-responder at the other end does not answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Person,
    Automatic,
}

/// The reply mail of event `event_id`, `body`, from `from` to the ticket's contact.
pub fn reply(
    from: &Mailbox,
    ticket: &TicketState,
    history: &[Event],
    event_id: &str,
    body: &str,
    kind: Kind,
) -> anyhow::Result<Message> {
    let to: Mailbox =
        ticket.contact_id.as_deref().unwrap_or(&ticket.contact).parse().map_err(|error| {
            anyhow::anyhow!("the ticket's contact {:?} is no mail address: {error}", ticket.contact)
        })?;
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject(ticket))
        .message_id(Some(format!("<{}>", message_id(event_id, from))));
    if kind == Kind::Automatic {
        let name = lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted");
        builder = builder.raw_header(lettre::message::header::HeaderValue::new(name, "auto-replied".into()));
    }
    if let Some(answered) = answering(history) {
        builder = builder.in_reply_to(format!("<{answered}>"));
    }
    let thread = thread(history);
    let newest = &thread[thread.len().saturating_sub(REFERENCES_MAX)..];
    if !newest.is_empty() {
        builder = builder.references(newest.iter().map(|id| format!("<{id}>")).collect::<Vec<_>>().join(" "));
    }
    let text = format!(
        "{body}\n\n-- \nTicket {} · answer this mail to reply; keep [franz #{}] in the subject.\n",
        token(&ticket.id),
        token(&ticket.id)
    );
    Ok(builder.singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text))?)
}

/// The automatic answer to a mail from `to` (subject `subject`, Message-ID `answering`) that opened no ticket because
/// its sender has as many open tickets (`open`, newest first) as one may have (`max`), and was added to the newest
/// of them instead: which are open, and how to add to one (answer its mail, keeping its token in the subject). It
/// says it is automatic (RFC 3834) and answers the mail it is about, so a mail client threads it and an
/// auto-responder leaves it alone.
pub fn over_limit(
    from: &Mailbox,
    to: &str,
    subject: &str,
    answering: Option<&str>,
    open: &[TicketState],
    max: u64,
) -> anyhow::Result<Message> {
    let to: Mailbox = to.parse().map_err(|error| anyhow::anyhow!("{to:?} is no mail address: {error}"))?;
    let first: String = subject.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(SUBJECT_MAX).collect();
    let name = lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted");
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(format!("Re: {}", if first.is_empty() { "your mail" } else { &first }))
        .raw_header(lettre::message::header::HeaderValue::new(name, "auto-replied".into()));
    if let Some(answering) = answering {
        builder = builder.in_reply_to(format!("<{answering}>")).references(format!("<{answering}>"));
    }
    let mut text = format!(
        "Thank you for your mail. You have {} open tickets with us, the most one person may have ({max}), so this \
         mail opened no new ticket: it was added to the newest of them, [franz #{}], where the team sees it. Your \
         open tickets:\n\n",
        open.len(),
        open.first().map(|ticket| token(&ticket.id)).unwrap_or_default()
    );
    // A limit may be up to 1,000 tickets: the mail lists the newest few.
    const LISTED: usize = 20;
    for ticket in open.iter().take(LISTED) {
        let first = ticket.body.lines().find(|line| !line.trim().is_empty()).unwrap_or("(no text)").trim();
        let first: String = first.chars().take(SUBJECT_MAX).collect();
        text.push_str(&format!("  [franz #{}] {first}\n", token(&ticket.id)));
    }
    if open.len() > LISTED {
        text.push_str(&format!("  … and {} more\n", open.len() - LISTED));
    }
    text.push_str(
        "\nTo add to another, answer a mail about it, or write with its [franz #…] in the subject. Once one is \
         closed, a new mail opens a new ticket.\n",
    );
    Ok(builder.singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::lifecycle::{Actor, ActorSource};

    fn event(id: &str, change: Change) -> Event {
        Event {
            event_id: id.into(),
            ticket_id: "3f2a9c1e-7b4d-5e6f-8a9b-0c1d2e3f4a5b".into(),
            version: Some(1),
            at: "2026-12-07T10:00:00Z".into(),
            actor: Actor { source: ActorSource::Franz, name: "franz".into(), id: None, staff: None },
            caused_by: format!("c-{id}"),
            clocks: None,
            change,
        }
    }

    fn created(message_id: &str) -> Change {
        Change::Created {
            contact: "ann@example.com".into(),
            contact_id: Some("ann@example.com".into()),
            origin: "Email".into(),
            body: "Locked out\n\nhelp".into(),
            submitted: "2026-12-07T10:00:00Z".into(),
            guild_id: None,
            channel_id: None,
            follows: None,
            message_id: Some(message_id.into()),
            automatic: None,
            attachments: Vec::new(),
            routed: None,
        }
    }

    fn ticket() -> TicketState {
        TicketState {
            id: "3f2a9c1e-7b4d-5e6f-8a9b-0c1d2e3f4a5b".into(),
            contact: "ann@example.com".into(),
            contact_id: Some("ann@example.com".into()),
            origin: "Email".into(),
            body: "Locked out\n\nhelp".into(),
            ..TicketState::default()
        }
    }

    fn support() -> Mailbox {
        "Support <support@example.com>".parse().unwrap()
    }

    #[test]
    fn a_reply_answers_the_customers_newest_mail_and_names_the_thread() {
        let history = vec![
            event("e1", created("first@example.com")),
            event(
                "e2",
                Change::Delivery(Delivery {
                    of: "e9".into(),
                    via: Via::Email,
                    delivered: true,
                    detail: None,
                    message_id: Some("franz.e9@example.com".into()),
                    channel_id: None,
                }),
            ),
            event(
                "e3",
                Change::SubmitterWrote {
                    body: "still locked".into(),
                    attachments: vec![],
                    via: Via::Email,
                    message_id: Some("second@example.com".into()),
                    reopened: false,
                },
            ),
        ];
        let mail = reply(&support(), &ticket(), &history, "e4", "Try again now.", Kind::Person).unwrap();
        let raw = String::from_utf8(mail.formatted()).unwrap();
        assert!(raw.contains("In-Reply-To: <second@example.com>"), "{raw}");
        assert!(raw.contains("References: <first@example.com> <franz.e9@example.com> <second@example.com>"), "{raw}");
        assert!(raw.contains("Message-ID: <franz.e4@example.com>"), "{raw}");
        assert!(raw.contains("Subject: Re: Locked out [franz #3f2a9c1e7b4d]"), "{raw}");
        assert!(raw.contains("To: ann@example.com"), "{raw}");
        assert!(raw.contains("Try again now."), "{raw}");
        assert!(!raw.contains("Auto-Submitted"), "a person's reply is no automatic mail: {raw}");
    }

    #[test]
    fn an_automatic_reply_says_so_and_a_persons_does_not() {
        let history = vec![event("e1", created("first@example.com"))];
        let raw = |kind| {
            String::from_utf8(reply(&support(), &ticket(), &history, "e1", "x", kind).unwrap().formatted()).unwrap()
        };
        assert!(raw(Kind::Automatic).contains("Auto-Submitted: auto-replied"));
        assert!(raw(Kind::Automatic).contains("In-Reply-To: <first@example.com>"));
        assert!(!raw(Kind::Person).contains("Auto-Submitted"));
    }

    #[test]
    fn the_token_is_found_in_a_subject_and_nothing_else_is() {
        assert_eq!(token("3f2a9c1e-7b4d-5e6f-8a9b-0c1d2e3f4a5b"), "3f2a9c1e7b4d");
        assert_eq!(token_in("Re: Re: Locked out [franz #3F2A9C1E7B4D]").as_deref(), Some("3f2a9c1e7b4d"));
        assert_eq!(token_in("[franz #3f2a9c1e7b4] short"), None);
        assert_eq!(token_in("[franz #3f2a9c1e7b4d0] long"), None);
        assert_eq!(token_in("no token"), None);
        assert_eq!(event_of("franz.e4@example.com"), Some("e4"));
        assert_eq!(event_of("other@example.com"), None);
    }

    #[test]
    fn a_subject_is_the_first_line_cut_and_never_re_re() {
        let long = TicketState { body: format!("Re: {}", "x".repeat(500)), ..ticket() };
        let subject = subject(&long);
        assert!(subject.starts_with("Re: xxx") && !subject.starts_with("Re: Re:"), "{subject}");
        assert!(subject.chars().count() < 160, "{subject}");
    }

    #[test]
    fn a_contact_that_is_no_address_is_refused_with_a_reason() {
        let odd = TicketState { contact: "pontatot".into(), contact_id: Some("80351110224678912".into()), ..ticket() };
        let error = reply(&support(), &odd, &[], "e1", "hi", Kind::Person).unwrap_err().to_string();
        assert!(error.contains("no mail address"), "{error}");
    }

    /// Found by an attack (#34, replies; cosmetic): a ticket opened by an answer to a ticket closed long ago (a
    /// follower) has the answer's subject as its first line, token and all, and a subject that was "Re: Re:" stays
    /// so: the reply's subject then reads "Re: Re: Locked out [franz #<old>] [franz #<new>]", and a client that
    /// drops the headers is found by the first token, the old ticket's (which leads to its newest follower, not
    /// necessarily this one's conversation).
    #[test]
    fn a_followers_subject_carries_one_token_and_one_re() {
        let follower = TicketState {
            id: "9b8c7d6e-5f4a-5b3c-8d2e-1f0a9b8c7d6e".into(),
            body: "Re: Re: Locked out [franz #3f2a9c1e7b4d]\n\nstill".into(),
            follows: Some("3f2a9c1e-7b4d-5e6f-8a9b-0c1d2e3f4a5b".into()),
            ..ticket()
        };
        let subject = subject(&follower);
        assert_eq!(subject, "Re: Locked out [franz #9b8c7d6e5f4a]");
    }
}
