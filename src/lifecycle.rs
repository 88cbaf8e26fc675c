//! The ticket lifecycle: the one definition of what may happen to a ticket.
//!
//! Two pure functions: [`decide`] turns a ticket's state and a command into exactly one event (the change, or a
//! `rejected` event with the reason) and [`apply`] folds an event into the state; [`fold`] folds a whole history.
//! akte decides with them, the ticket store applies with them (its rows must equal `fold`), and the property
//! tests below hold them to each other. No I/O, no clock: the caller passes the time, and the team's rules
//! ([`Policy`]).
//!
//! A ticket is a conversation: the submitter's messages (`write`) and the team's public replies take turns, and
//! the status says whose turn it is (`waiting` after a public reply, `open` or `claimed` again when the submitter
//! writes). Where each message to the submitter went is recorded too (`record_delivery`).

pub mod calendar;
pub mod levels;
pub mod routing;

use std::collections::BTreeSet;
use std::time::Duration;

use crate::schema::lifecycle::{
    Action, Actor, ActorSource, Attachment, Change, Command, Delivery, Event, Person, PersonSource, Priority, Status,
    event_id_for,
};

/// The longest actor, assignee or contact name, in characters.
pub const NAME_MAX: usize = 64;
/// The longest label, in characters.
pub const LABEL_MAX: usize = 32;
/// The most labels one ticket can carry.
pub const LABELS_MAX: usize = 20;
/// The longest comment, in characters.
pub const COMMENT_MAX: usize = 4000;
/// The longest close reason, in characters.
pub const REASON_MAX: usize = 500;
/// The longest ticket body, in characters: what aufbereitung lets through.
pub const BODY_MAX: usize = crate::schema::MAX_MESSAGE_CHARS;
/// The longest contact name, in characters: what aufbereitung lets through.
pub const CONTACT_MAX: usize = crate::schema::MAX_USERNAME_CHARS;
/// The longest message from the submitter, in characters.
pub const MESSAGE_MAX: usize = 4000;
/// The most attachments one message from the submitter carries.
pub const ATTACHMENTS_MAX: usize = 10;
/// The longest attachment name, in characters.
pub const ATTACHMENT_NAME_MAX: usize = 256;
/// The longest attachment URL, in bytes.
pub const URL_MAX: usize = 2048;
/// The longest comment of a rating, in characters (a Discord form's field holds up to 4,000; a rating's comment is
/// a remark, not a message).
pub const RATING_COMMENT_MAX: usize = 1000;

/// The team's rules that decisions depend on.
#[derive(Debug, Clone)]
pub struct Policy {
    /// How long after its close a submitter's message reopens a ticket; later, it is refused, and the channel opens
    /// a new ticket that follows the old one.
    pub reopen_within: Duration,
    /// The service levels, if the team set any.
    pub levels: Option<std::sync::Arc<levels::Levels>>,
    /// The routing rules, in order (`routing`).
    pub routing: std::sync::Arc<Vec<routing::Rule>>,
    /// How long after its close a submitter may rate a ticket (and change the rating); later, a rating is refused.
    pub rate_within: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        let week = Duration::from_secs(7 * 24 * 3600);
        Policy { reopen_within: week, levels: None, routing: Default::default(), rate_within: week }
    }
}

/// How the submitter rated a closed ticket: the last rating within its window.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rating {
    /// 1 (bad) to 5 (great).
    pub rating: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When akte recorded it (RFC 3339).
    pub at: String,
}

/// A ticket as its events made it (and as the API shows it).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct TicketState {
    pub id: String,
    /// The version of the last change applied; the next change is `version + 1`.
    pub version: u64,
    pub status: Status,
    /// Who holds the ticket: an identity, so two people of one name are never one assignee.
    pub assignee: Option<Person>,
    pub priority: Priority,
    pub labels: BTreeSet<String>,
    pub contact: String,
    pub contact_id: Option<String>,
    /// The Discord server and channel the ticket was submitted in, when it came from Discord.
    pub guild_id: Option<String>,
    pub channel_id: Option<String>,
    pub origin: String,
    pub body: String,
    /// When the submitter sent it.
    pub submitted: String,
    /// When akte opened it; the start of every "time to" figure.
    pub created_at: String,
    pub first_claimed_at: Option<String>,
    /// The last close (cleared by a reopen).
    pub closed_at: Option<String>,
    pub closed_by: Option<Person>,
    pub close_reason: Option<String>,
    /// When the last change happened.
    pub updated_at: String,
    /// Public replies and internal notes together.
    pub comments: u64,
    /// The submitter wrote since the team's last public reply (and the ticket is not closed).
    pub answered: bool,
    /// The closed ticket this one follows.
    pub follows: Option<String>,
    /// The service-level targets running on it (`levels`).
    pub clocks: Vec<levels::Clock>,
    /// The team it belongs to; none: triage.
    pub team: Option<String>,
    /// The routing rule that matched it when it was created, if one did.
    pub rule: Option<String>,
    /// The submitter's rating of the ticket, once they gave one (kept through a reopen until a new one replaces it).
    pub rating: Option<Rating>,
}

/// The one event that answers `command`, given the ticket's current state (`None`: no such ticket yet).
pub fn decide(state: Option<&TicketState>, command: &Command, now: &str, policy: &Policy) -> Event {
    let change = match check(state, command, now, policy) {
        Ok(change) => change,
        Err(reason) => Change::Rejected { action: command.action.name().to_owned(), reason },
    };
    let version = match change {
        Change::Rejected { .. } => None,
        _ => Some(state.map_or(0, |s| s.version) + 1),
    };
    let clocks = match (&policy.levels, &change, chrono::DateTime::parse_from_rfc3339(now)) {
        (_, Change::Rejected { .. }, _) | (None, ..) | (_, _, Err(_)) => None,
        (Some(levels), change, Ok(at)) => {
            let (clocks, priority, status, team) = state
                .map_or((&[][..], Priority::default(), Status::Open, None), |s| {
                    (&s.clocks[..], s.priority, s.status, s.team.as_deref())
                });
            // A new ticket's clocks run for the priority and team its routing gave it.
            let (priority, team) = match change {
                Change::Created { routed: Some(routed), .. } => {
                    (routed.priority.unwrap_or(priority), routed.team.as_deref())
                }
                _ => (priority, team),
            };
            levels::after(clocks, (priority, status, team), change, at.with_timezone(&chrono::Utc), levels)
        }
    };
    Event {
        event_id: event_id_for(&command.ticket_id, &command.command_id),
        ticket_id: command.ticket_id.clone(),
        version,
        at: now.to_owned(),
        actor: bounded_actor(&command.actor),
        caused_by: command.command_id.clone(),
        clocks,
        change,
    }
}

/// The actor as an event records it: a name or id over its bound (refused anyway) is cut, so that no event can be
/// made large through its actor.
fn bounded_actor(actor: &Actor) -> Actor {
    let cut = |text: &str| text.chars().take(NAME_MAX).collect::<String>();
    Actor {
        source: actor.source,
        name: cut(&actor.name),
        // An id is a contact's (an address up to CONTACT_MAX), never cut below that.
        id: actor.id.as_deref().map(|id| id.chars().take(CONTACT_MAX).collect()),
        staff: actor.staff.as_deref().map(cut),
    }
}

/// The change a command makes, or why it may not.
fn check(state: Option<&TicketState>, command: &Command, now: &str, policy: &Policy) -> Result<Change, String> {
    let actor = name("the actor's name", &command.actor.name)?;
    if let Some(staff) = &command.actor.staff {
        name("the actor's staff name", staff)?;
    }
    if let (ActorSource::Discord, Some(id)) = (command.actor.source, &command.actor.id)
        && (id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("a Discord actor's id is a number of 1 to 20 digits".into());
    }
    let id = &command.ticket_id;
    // An id is also a path segment of the desk's pages: `.` and `..` would name another page.
    if id.is_empty()
        || id.chars().count() > NAME_MAX
        || id.chars().any(|c| c.is_control() || hidden(c))
        || id == "."
        || id == ".."
    {
        return Err(format!(
            "a ticket id has 1 to {NAME_MAX} characters, no control or invisible ones, and is not . or .."
        ));
    }
    let ticket = match (&command.action, state) {
        (Action::Create { ticket }, None) => {
            if ticket.id != command.ticket_id {
                return Err("the ticket's id differs from the command's ticket_id".into());
            }
            bounded_text("a ticket's body", &ticket.body, BODY_MAX)?;
            bounded_text("a ticket's contact", &ticket.contact, CONTACT_MAX)?;
            name("a ticket's origin", &ticket.origin)?;
            if let Some(id) = &ticket.contact_id {
                identifier("a ticket's contact id", id, CONTACT_MAX)?;
            }
            if let Some(id) = &ticket.guild_id {
                name("a ticket's server id", id)?;
            }
            if let Some(id) = &ticket.channel_id {
                name("a ticket's channel id", id)?;
            }
            if let Some(id) = &ticket.follows {
                name("the ticket it follows", id)?;
            }
            if let Some(id) = &ticket.message_id {
                identifier("a message id", id, MESSAGE_ID_MAX)?;
            }
            if let Some(why) = &ticket.automatic {
                bounded_text("why a message is automatic", why, REASON_MAX)?;
            }
            if chrono::DateTime::parse_from_rfc3339(&ticket.date).is_err() {
                return Err("a ticket's date must be RFC 3339".into());
            }
            let attachments = self::attachments(&ticket.attachments)?;
            return Ok(Change::Created {
                contact: ticket.contact.clone(),
                contact_id: ticket.contact_id.clone(),
                origin: ticket.origin.clone(),
                body: ticket.body.clone(),
                submitted: ticket.date.clone(),
                guild_id: ticket.guild_id.clone(),
                channel_id: ticket.channel_id.clone(),
                follows: ticket.follows.clone(),
                message_id: ticket.message_id.clone(),
                automatic: ticket.automatic.clone(),
                attachments,
                routed: routing::route(&policy.routing, ticket).map(Box::new),
            });
        }
        (Action::Create { .. }, Some(_)) => return Err("the ticket exists already".into()),
        (_, None) => return Err(format!("there is no ticket {}", command.ticket_id)),
        (_, Some(ticket)) => ticket,
    };
    let closed = ticket.status == Status::Closed;
    match &command.action {
        Action::Create { .. } => unreachable!("handled above"),
        Action::Claim => match (&ticket.assignee, ticket.status) {
            (_, Status::Closed) => Err(closed_already(ticket)),
            (Some(holder), _) => Err(format!("already claimed by {}", holder.display())),
            _ => Ok(Change::Claimed { by: Actor { name: actor, ..bounded_actor(&command.actor) }.person() }),
        },
        Action::Unclaim => match (&ticket.assignee, ticket.status) {
            (Some(holder), Status::Claimed | Status::Waiting) => Ok(Change::Unclaimed { from: holder.clone() }),
            _ => Err(format!("the ticket is {}, not claimed", ticket.status.name())),
        },
        Action::Assign { to } => {
            let to = Person::staff(&staff_name("the assignee's name", to)?);
            if closed {
                Err(closed_already(ticket))
            } else if ticket.assignee.as_ref() == Some(&to) {
                Err(format!("already assigned to {}", to.display()))
            } else {
                Ok(Change::Assigned { to, from: ticket.assignee.clone() })
            }
        }
        Action::Comment { internal: true, via: Some(via), .. } => {
            Err(format!("an internal note is never written outside franz (not by {})", via.describe()))
        }
        Action::Comment { body, internal, via } => {
            let body = bounded_text("a comment", body, COMMENT_MAX)?;
            Ok(Change::Commented { body, internal: *internal, via: *via })
        }
        Action::SetPriority { priority } if *priority == ticket.priority => {
            Err(format!("the priority is {} already", priority.name()))
        }
        Action::SetPriority { priority } => Ok(Change::PrioritySet { priority: *priority }),
        Action::AddLabel { label } => {
            let label = self::label(label)?;
            if ticket.labels.contains(&label) {
                Err(format!("already labelled {label}"))
            } else if ticket.labels.len() >= LABELS_MAX {
                Err(format!("a ticket carries at most {LABELS_MAX} labels"))
            } else {
                Ok(Change::LabelAdded { label })
            }
        }
        Action::RemoveLabel { label } => {
            let label = self::label(label)?;
            if ticket.labels.contains(&label) {
                Ok(Change::LabelRemoved { label })
            } else {
                Err(format!("not labelled {label}"))
            }
        }
        Action::Close { reason } => {
            let reason = bounded_text("a close reason", reason, REASON_MAX)?;
            if closed { Err(closed_already(ticket)) } else { Ok(Change::Closed { reason }) }
        }
        Action::Reopen if closed => Ok(Change::Reopened),
        Action::Reopen => Err(format!("the ticket is {}, not closed", ticket.status.name())),
        Action::Write { body, attachments, via, message_id } => {
            if command.actor.id.is_none() || command.actor.id.as_deref() != submitter_id(ticket) {
                return Err("only the ticket's submitter writes to it; the team replies with a comment".into());
            }
            let body = body.trim();
            let count = body.chars().count();
            if count > MESSAGE_MAX {
                return Err(format!("a message has at most {MESSAGE_MAX} characters (this one has {count})"));
            }
            if count == 0 && attachments.is_empty() {
                return Err("a message needs text or an attachment".into());
            }
            let attachments = self::attachments(attachments)?;
            let message_id =
                message_id.as_deref().map(|id| identifier("a message id", id, MESSAGE_ID_MAX)).transpose()?;
            let reopened = closed && within_window(ticket, now, policy)?;
            Ok(Change::SubmitterWrote { body: body.to_owned(), attachments, via: *via, message_id, reopened })
        }
        Action::RecordDelivery(Delivery { of, via, delivered, detail, message_id, channel_id }) => {
            if command.actor.source != ActorSource::Franz {
                return Err("only franz records where a message went".into());
            }
            let of = self::name("the delivered event's id", of)?;
            let detail =
                detail.as_deref().map(|text| bounded_text("a delivery's detail", text, REASON_MAX)).transpose()?;
            let message_id =
                message_id.as_deref().map(|id| identifier("a message id", id, MESSAGE_ID_MAX)).transpose()?;
            let channel_id = channel_id.as_deref().map(|id| self::name("a channel id", id)).transpose()?;
            Ok(Change::Delivery(Delivery { of, via: *via, delivered: *delivered, detail, message_id, channel_id }))
        }
        Action::Move { team, reason } => {
            let reason = bounded_text("a move's reason", reason, REASON_MAX)?;
            if let Some(team) = team {
                routing::team_name(team)?;
            }
            if *team == ticket.team {
                return Err(match team {
                    Some(team) => format!("the ticket is in team {team} already"),
                    None => "the ticket is in triage already".into(),
                });
            }
            Ok(Change::Moved { from: ticket.team.clone(), to: team.clone(), reason })
        }
        Action::Rate { rating, comment } => {
            if command.actor.id.is_none() || command.actor.id.as_deref() != submitter_id(ticket) {
                return Err("only the ticket's submitter rates it".into());
            }
            if !(1..=5).contains(rating) {
                return Err(format!("a rating is a whole number from 1 to 5, not {rating}"));
            }
            if !closed {
                return Err(format!("the ticket is {}; a rating is for a closed ticket", ticket.status.name()));
            }
            let parse = |at: &str| chrono::DateTime::parse_from_rfc3339(at).ok();
            if let (Some(closed), Some(now)) = (ticket.closed_at.as_deref().and_then(parse), parse(now))
                && now.signed_duration_since(closed).to_std().unwrap_or_default() > policy.rate_within
            {
                return Err(format!(
                    "the ticket was closed more than {} ago; its rating can no longer be given or changed",
                    span(policy.rate_within)
                ));
            }
            let comment = match comment.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(text) => Some(bounded_text("a rating's comment", text, RATING_COMMENT_MAX)?),
            };
            Ok(Change::Rated { rating: *rating, comment })
        }
        Action::Tick { at } => {
            if command.actor.source != ActorSource::Franz {
                return Err("only franz's scheduler says what time it is".into());
            }
            // A time command never reaches past akte's own clock: a command dated ahead decides only what passed.
            let parse = |at: &str| chrono::DateTime::parse_from_rfc3339(at).ok();
            match (parse(at), parse(now)) {
                (Some(said), Some(own)) if said > own => levels::tick(&ticket.clocks, now),
                _ => levels::tick(&ticket.clocks, at),
            }
        }
    }
}

/// Whether a message to the closed `ticket` at `now` still reopens it: `Ok(true)`, or the refusal.
fn within_window(ticket: &TicketState, now: &str, policy: &Policy) -> Result<bool, String> {
    let parse = |at: &str| chrono::DateTime::parse_from_rfc3339(at).ok();
    let closed_for = match (ticket.closed_at.as_deref().and_then(parse), parse(now)) {
        (Some(closed), Some(now)) => now.signed_duration_since(closed).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    };
    if closed_for <= policy.reopen_within {
        return Ok(true);
    }
    Err(format!(
        "the ticket was closed more than {} ago; a message now opens a new ticket that follows it",
        span(policy.reopen_within)
    ))
}

/// A span of time in the largest whole unit: "7 days", "36 hours", "90 minutes".
pub fn span(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (count, unit) = match secs {
        s if s >= 86_400 && s % 86_400 == 0 => (s / 86_400, "day"),
        s if s >= 3600 && s % 3600 == 0 => (s / 3600, "hour"),
        s if s >= 60 && s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
}

/// A message's attachments as an event records them: at most [`ATTACHMENTS_MAX`], each valid ([`attachment`]).
pub fn attachments(files: &[Attachment]) -> Result<Vec<Attachment>, String> {
    if files.len() > ATTACHMENTS_MAX {
        return Err(format!("a message carries at most {ATTACHMENTS_MAX} attachments (this one has {})", files.len()));
    }
    files.iter().map(attachment).collect()
}

/// An attachment as an event records it: a name without control characters, and either an `https` URL (bounded,
/// printable) or the name of a file franz keeps (`sha256`), never both.
fn attachment(file: &Attachment) -> Result<Attachment, String> {
    let name = file.name.trim();
    if name.is_empty()
        || name.chars().count() > ATTACHMENT_NAME_MAX
        || name.chars().any(|c| c.is_control() || hidden(c))
    {
        return Err(format!(
            "an attachment's name has 1 to {ATTACHMENT_NAME_MAX} characters, no control or invisible ones"
        ));
    }
    let url = file.url.trim();
    match &file.sha256 {
        Some(kept) if !url.is_empty() || !crate::attachments::is_name(kept) => {
            return Err("a kept attachment is named by its SHA-256 in lower-case hex, and has no URL".into());
        }
        Some(_) => {}
        None => {
            let host = url.strip_prefix("https://").map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
            let printable = url.bytes().all(|b| b.is_ascii_graphic() && !b"\"'<>\\`".contains(&b));
            if host.is_none_or(str::is_empty) || url.len() > URL_MAX || !printable {
                return Err(format!("an attachment's URL is https, printable ASCII and at most {URL_MAX} bytes"));
            }
        }
    }
    let content_type = match file.content_type.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(kind) if kind.len() <= 128 && kind.bytes().all(|b| b.is_ascii_graphic() || b == b' ') => {
            Some(kind.to_owned())
        }
        Some(_) => return Err("an attachment's content type is at most 128 printable ASCII characters".into()),
    };
    Ok(Attachment {
        name: name.to_owned(),
        size: file.size,
        content_type,
        url: url.to_owned(),
        sha256: file.sha256.clone(),
    })
}

fn closed_already(ticket: &TicketState) -> String {
    match &ticket.closed_by {
        Some(by) => format!("already closed by {}", by.display()),
        None => "already closed".to_owned(),
    }
}

/// A person's name: trimmed, 1 to [`NAME_MAX`] characters, no control characters.
pub fn name(what: &str, text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > NAME_MAX || text.chars().any(|c| c.is_control() || hidden(c)) {
        return Err(format!(
            "{what} must have 1 to {NAME_MAX} characters and no control, invisible or direction-changing characters"
        ));
    }
    Ok(text.to_owned())
}

/// Who may write to `ticket` as its submitter: its contact id; for a ticket by mail from before franz kept one, its
/// contact (the address).
pub fn submitter_id(ticket: &TicketState) -> Option<&str> {
    match &ticket.contact_id {
        Some(id) => Some(id),
        None if ticket.origin == crate::schema::ORIGIN_EMAIL => Some(&ticket.contact),
        None => None,
    }
}

/// The most characters of a message's id in its channel: a mail's Message-ID (Gmail's are 60 to 70, Outlook's 80
/// and more; franz's own `franz.<event id>@<domain>`), bounded as any field of a record.
pub const MESSAGE_ID_MAX: usize = crate::schema::MAX_FIELD_CHARS;

/// An id from outside franz (a mail's Message-ID, an address): 1 to `max` characters, none of them control,
/// invisible or direction-changing; longer than a [`name`] may be.
pub fn identifier(what: &str, text: &str, max: usize) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > max || text.chars().any(|c| c.is_control() || hidden(c)) {
        return Err(format!(
            "{what} must have 1 to {max} characters and no control, invisible or direction-changing characters"
        ));
    }
    Ok(text.to_owned())
}

/// A staff member's name: a [`name`] that cannot pass for another kind of identity, so it does not start with `@`
/// (as a Discord account linked to nobody is shown) or with an identity key's source (`staff:`, `discord:`,
/// `franz:`, as the API's `assignee` filter reads them).
pub fn staff_name(what: &str, text: &str) -> Result<String, String> {
    let text = name(what, text)?;
    let lower = text.to_lowercase();
    if text.starts_with('@') || ["staff:", "discord:", "franz:"].iter().any(|source| lower.starts_with(source)) {
        return Err(format!("{what} may not start with @, staff:, discord: or franz: (those name other identities)"));
    }
    Ok(text)
}

/// Characters that show nothing, break the line or turn the text around them, with which a name could pass for
/// another ("ana" and "ana" with a zero-width space), a line for two, or reverse what follows it. Joiners stay
/// allowed: emoji and scripts need them.
pub fn hidden(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}' | '\u{200E}' | '\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// A label: trimmed and lower-cased, 1 to [`LABEL_MAX`] letters, digits, spaces or `-_.:/`.
pub fn label(text: &str) -> Result<String, String> {
    let text = text.trim().to_lowercase();
    let allowed = |c: char| c.is_alphanumeric() || " -_.:/".contains(c);
    if text.is_empty() || text.chars().count() > LABEL_MAX || !text.chars().all(allowed) {
        return Err(format!("a label has 1 to {LABEL_MAX} letters, digits, spaces or -_.:/"));
    }
    Ok(text)
}

/// Free text (a comment, a reason): 1 to `max` characters once trimmed.
fn bounded_text(what: &str, text: &str, max: usize) -> Result<String, String> {
    let trimmed = text.trim();
    let count = trimmed.chars().count();
    if count == 0 {
        return Err(format!("{what} cannot be empty"));
    }
    if count > max {
        return Err(format!("{what} has at most {max} characters (this one has {count})"));
    }
    Ok(trimmed.to_owned())
}

/// The state after `event`. An event that does not follow the state (a duplicate, a rejection, a version that
/// does not come next) leaves it as it is, so replaying a history twice changes nothing.
pub fn apply(state: Option<TicketState>, event: &Event) -> Option<TicketState> {
    let Some(version) = event.version else { return state };
    let at = event.at.clone();
    let mut ticket = match (state, &event.change) {
        (
            None,
            Change::Created {
                contact, contact_id, origin, body, submitted, guild_id, channel_id, follows, routed, ..
            },
        ) if version == 1 => {
            let rule = routed.as_ref().map(|routed| routed.rule.clone());
            let routed = routed.as_deref().cloned().unwrap_or_default();
            return Some(TicketState {
                id: event.ticket_id.clone(),
                version,
                contact: contact.clone(),
                contact_id: contact_id.clone(),
                guild_id: guild_id.clone(),
                channel_id: channel_id.clone(),
                origin: origin.clone(),
                body: body.clone(),
                submitted: submitted.clone(),
                follows: follows.clone(),
                created_at: at.clone(),
                updated_at: at,
                clocks: event.clocks.clone().unwrap_or_default(),
                team: routed.team,
                rule,
                priority: routed.priority.unwrap_or_default(),
                labels: routed.labels.into_iter().collect(),
                ..TicketState::default()
            });
        }
        (Some(ticket), _) if version == ticket.version + 1 => ticket,
        (state, _) => return state,
    };
    if let Some(clocks) = &event.clocks {
        ticket.clocks.clone_from(clocks);
    }
    match &event.change {
        Change::Created { .. } | Change::Rejected { .. } => return Some(ticket),
        Change::Claimed { by } => claim(&mut ticket, &claimer(event, by), &at),
        Change::Assigned { to, .. } => claim(&mut ticket, to, &at),
        Change::Unclaimed { .. } => {
            if ticket.status != Status::Waiting {
                ticket.status = Status::Open;
            }
            ticket.assignee = None;
        }
        Change::Commented { internal, .. } => {
            ticket.comments += 1;
            if !internal && ticket.status != Status::Closed {
                ticket.status = Status::Waiting;
                ticket.answered = false;
            }
        }
        Change::PrioritySet { priority } => ticket.priority = *priority,
        Change::LabelAdded { label } => {
            ticket.labels.insert(label.clone());
        }
        Change::LabelRemoved { label } => {
            ticket.labels.remove(label);
        }
        Change::Closed { reason } => {
            ticket.status = Status::Closed;
            ticket.answered = false;
            ticket.closed_at = Some(at.clone());
            ticket.closed_by = Some(event.actor.person());
            ticket.close_reason = Some(reason.clone());
        }
        Change::Reopened => reopen(&mut ticket),
        Change::Moved { to, .. } => ticket.team.clone_from(to),
        Change::SubmitterWrote { .. } => {
            if ticket.status == Status::Closed {
                reopen(&mut ticket);
            }
            ticket.status = if ticket.assignee.is_some() { Status::Claimed } else { Status::Open };
            ticket.answered = true;
        }
        Change::Rated { rating, comment } => {
            // The submitter's word on the ticket: its history and its rating grow, the ticket itself is unchanged.
            ticket.rating = Some(Rating { rating: *rating, comment: comment.clone(), at });
            ticket.version = version;
            return Some(ticket);
        }
        Change::Delivery(_) | Change::DueSoon { .. } | Change::Breached { .. } | Change::Reminded { .. } => {
            // A record of where a message went, or of a deadline come: the ticket's history grows, but nobody
            // changed the ticket.
            ticket.version = version;
            return Some(ticket);
        }
    }
    ticket.version = version;
    ticket.updated_at = at;
    Some(ticket)
}

fn reopen(ticket: &mut TicketState) {
    ticket.status = Status::Open;
    ticket.assignee = None;
    ticket.closed_at = None;
    ticket.closed_by = None;
    ticket.close_reason = None;
}

/// Who claimed: `by`, except in a claim written before identities from a Discord account, whose bare `by` is the
/// account's username (not the staff member of that name); its actor says which account it was.
fn claimer(event: &Event, by: &Person) -> Person {
    let actor = &event.actor;
    let legacy_discord = actor.source == ActorSource::Discord
        && actor.staff.is_none()
        && actor.id.is_some()
        && by.source == PersonSource::Staff
        && by.id == actor.name;
    if legacy_discord { actor.person() } else { by.clone() }
}

/// `who` holds the ticket now; a ticket waiting on its submitter still is.
fn claim(ticket: &mut TicketState, who: &Person, at: &str) {
    if ticket.status != Status::Waiting {
        ticket.status = Status::Claimed;
    }
    ticket.assignee = Some(who.clone());
    ticket.first_claimed_at.get_or_insert_with(|| at.to_owned());
}

/// A ticket's state from its whole history.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Option<TicketState> {
    events.into_iter().fold(None, apply)
}

#[cfg(test)]
mod tests;
