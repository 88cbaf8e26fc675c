//! The wire contract of the ticket lifecycle: commands on `ticket-commands`, events on `ticket-events`.
//!
//! Both topics are keyed by ticket id. A command is what someone asks for; akte answers each with exactly one
//! event: the change, or a `rejected` event that says why not. Events are the truth the ticket store, the desk
//! and the Discord cards are built from, so a field added here must stay optional for events already written.
//! What is allowed is `crate::lifecycle`'s business; this module only says what the records look like.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Ticket;

/// The namespace of ids that franz derives (the create command of a ticket, the event of a command).
const LIFECYCLE_NAMESPACE: Uuid = Uuid::from_u128(0x3d6e_91c4_7a2b_4e58_b1f0_c8d9_2a4e_6f17);

/// Where a command came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorSource {
    Web,
    Cli,
    Discord,
    Api,
    /// franz itself: the creation of a ticket from the intake.
    Franz,
    /// A mail: the submitter of a ticket by email, whose id is the address.
    Email,
}

/// Who asked for a change, and through which door. Every event carries it, so the audit trail says who did what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The door: the web desk, the CLI, the API, Discord, or franz itself.
    pub source: ActorSource,
    /// The name at that door: a staff name, or a Discord username.
    pub name: String,
    /// The account's id at the door (a Discord user id), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The staff member a Discord account is linked to (`franz staff link-discord`); absent for the desk's doors,
    /// whose name is the staff name already, and for an account linked to nobody.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staff: Option<String>,
}

impl Actor {
    /// An actor at one of the desk's doors (web, CLI, API), where the name is the staff member's.
    pub fn staff(source: ActorSource, name: &str) -> Actor {
        Actor { source, name: name.to_owned(), id: None, staff: None }
    }

    /// The person behind this actor: a staff member (any desk door, or a Discord account linked to one), else the
    /// Discord account itself.
    pub fn person(&self) -> Person {
        match (self.source, &self.staff, &self.id) {
            (ActorSource::Discord, Some(staff), _) => Person::staff(staff),
            (ActorSource::Discord, None, Some(id)) => {
                Person { source: PersonSource::Discord, id: id.clone(), name: self.name.clone() }
            }
            (ActorSource::Franz, _, _) => {
                Person { source: PersonSource::Franz, id: "franz".into(), name: "franz".into() }
            }
            (ActorSource::Email, _, Some(address)) => {
                Person { source: PersonSource::Email, id: address.clone(), name: self.name.clone() }
            }
            _ => Person::staff(&self.name),
        }
    }

    /// Who this actor is, for people to read: `ana`, `ana (Discord @ana_k)` for a linked Discord account, or
    /// `@ana_k (Discord)` for an account linked to nobody.
    pub fn display(&self) -> String {
        match (self.source, &self.staff) {
            (ActorSource::Discord, Some(staff)) => format!("{staff} (Discord @{})", self.name),
            (ActorSource::Discord, None) => format!("@{} (Discord)", self.name),
            _ => self.name.clone(),
        }
    }
}

/// Whose list a person's identity comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PersonSource {
    /// The desk's staff list: the id is the staff name.
    Staff,
    /// A Discord account linked to no staff member: the id is the user id.
    Discord,
    /// franz itself.
    Franz,
    /// A mail's sender: the id is the address.
    Email,
}

impl PersonSource {
    pub fn name(self) -> &'static str {
        match self {
            PersonSource::Staff => "staff",
            PersonSource::Discord => "discord",
            PersonSource::Franz => "franz",
            PersonSource::Email => "email",
        }
    }
}

/// A person as events name them (an assignee, who closed): a stable identity, `{source, id}`, and a name that is
/// only for display. Two people with one name are two identities; one staff member working from the desk and from
/// a linked Discord account is one.
///
/// Events written before identities named people by a bare string; such a name reads as the staff member of that
/// name, which is what franz meant by it then.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Person {
    pub source: PersonSource,
    pub id: String,
    pub name: String,
}

impl Person {
    /// The staff member `name` (the staff list's names are unique, so the name is the id).
    pub fn staff(name: &str) -> Person {
        Person { source: PersonSource::Staff, id: name.to_owned(), name: name.to_owned() }
    }

    /// The identity as one string, `source:id` (`staff:ana`, `discord:42`): what the ticket store indexes and the
    /// API's `assignee` filter takes.
    pub fn key(&self) -> String {
        format!("{}:{}", self.source.name(), self.id)
    }

    /// The person with identity `key` (as [`Person::key`] writes it) and display name `name`; a key without a known
    /// source is a staff name.
    pub fn from_key(key: &str, name: &str) -> Person {
        let (source, id) = match key.split_once(':') {
            Some(("staff", id)) => (PersonSource::Staff, id),
            Some(("discord", id)) => (PersonSource::Discord, id),
            Some(("franz", id)) => (PersonSource::Franz, id),
            Some(("email", id)) => (PersonSource::Email, id),
            _ => (PersonSource::Staff, key),
        };
        Person { source, id: id.to_owned(), name: name.to_owned() }
    }

    /// The key a filter's text names: `discord:42` or `staff:ana` as given, anything else the staff member of that
    /// name.
    pub fn key_of(text: &str) -> String {
        Person::from_key(text, "").key()
    }

    /// Who this is, for people to read: the staff name, or `@name (Discord)` for a Discord account linked to no
    /// staff member.
    pub fn display(&self) -> String {
        match self.source {
            PersonSource::Discord => format!("@{} (Discord)", self.name),
            _ => self.name.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for Person {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Person, D::Error> {
        #[derive(Deserialize)]
        struct Full {
            source: PersonSource,
            id: String,
            name: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Full(Full),
            /// Before identities: a bare name.
            Name(String),
        }
        Ok(match Written::deserialize(deserializer)? {
            Written::Full(Full { source, id, name }) => Person { source, id, name },
            Written::Name(name) => Person::staff(&name),
        })
    }
}

/// How urgent a ticket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

/// Where a ticket is in its life, and whose turn it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The team's turn, and nobody holds it.
    #[default]
    Open,
    /// The team's turn, and someone holds it.
    Claimed,
    /// The submitter's turn: the team replied publicly; whoever held the ticket still does.
    Waiting,
    Closed,
}

/// The way a message reached franz or a reply left it: the channel adapters of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// A direct message between the submitter and the bot.
    DiscordDm,
    /// The ticket's private thread in a Discord channel.
    DiscordThread,
    Email,
}

impl Via {
    /// How people read it: "Discord DM".
    pub fn describe(self) -> &'static str {
        match self {
            Via::DiscordDm => "Discord DM",
            Via::DiscordThread => "Discord thread",
            Via::Email => "email",
        }
    }
}

/// A file the submitter attached to a message: what describes it, and where it is. Either it stays where it was
/// sent (`url`, a Discord attachment URL; franz keeps no copy), or franz keeps it (`sha256`, its name on the files
/// topic, as `crate::attachments` keeps it: a mail's attachment). The desk offers it as a link or a download,
/// never inline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub name: String,
    /// In bytes.
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Where it was sent; empty for a file franz keeps.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Of a file franz keeps: the SHA-256 of its bytes, in lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// What a team promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// From the ticket's creation to the team's first public reply.
    FirstResponse,
    /// From the submitter's message the team has not answered to the team's next public reply.
    NextResponse,
    /// From the ticket's creation to its close, without the time it waits on the submitter.
    Resolution,
    /// Not the team's promise but the submitter's silence: from the team's public reply to the ticket's close for
    /// want of an answer (calendar days, not working time), with a reminder to the submitter before it.
    Silence,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::FirstResponse, Target::NextResponse, Target::Resolution];
    /// Every clock a ticket can have: the team's targets and the submitter's silence.
    pub const ALL_CLOCKS: [Target; 4] =
        [Target::FirstResponse, Target::NextResponse, Target::Resolution, Target::Silence];

    /// As people read it: "first response".
    pub fn describe(self) -> &'static str {
        match self {
            Target::FirstResponse => "first response",
            Target::NextResponse => "next response",
            Target::Resolution => "resolution",
            Target::Silence => "submitter's answer",
        }
    }

    /// As metrics and the configuration name it: `first_response`.
    pub fn name(self) -> &'static str {
        match self {
            Target::FirstResponse => "first_response",
            Target::NextResponse => "next_response",
            Target::Resolution => "resolution",
            Target::Silence => "silence",
        }
    }
}

/// One target running on a ticket (or standing still while the ticket waits on its submitter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    pub target: Target,
    /// When the target began: the ticket's creation (or reopening), or the submitter's message the team owes an
    /// answer to. RFC 3339, UTC.
    pub started: String,
    /// The target, in working seconds.
    pub target_secs: u64,
    /// The working seconds the clock stood still (the ticket waiting on its submitter).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub paused_secs: u64,
    /// Since when it stands still; absent while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_since: Option<String>,
    /// While it runs: when it is due soon. Absent too when the calendar has no working time left before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soon: Option<String>,
    /// While it runs: when it is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
    /// `due_soon` was decided for this deadline.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warned: bool,
    /// `breached` was decided for this deadline.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub breached: bool,
    /// The deadlines `due_soon` was said for: a deadline moved away (a change of team or priority) and back is not
    /// said due soon again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warned_for: Vec<String>,
    /// When what it waited for came (a reply, a close) after it was due but before a time command said so: it
    /// stays until `breached` is decided, so that a miss is said however late akte learns of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// A request to change a ticket, on `ticket-commands` (key: the ticket id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Chosen by the sender (a UUID); a command sent twice with the same id has one effect and one event.
    pub command_id: String,
    pub ticket_id: String,
    pub actor: Actor,
    #[serde(flatten)]
    pub action: Action,
}

/// What a command asks for. The serialized `action` names are part of the wire contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Open a ticket from a normalized intake ticket (sent by akte itself). Boxed: it is much larger than every
    /// other action.
    Create {
        ticket: Box<Ticket>,
    },
    /// Take the ticket: it becomes the actor's.
    Claim,
    /// Give the ticket back to the queue.
    Unclaim,
    /// Give the ticket to a staff member (by their staff name), taking it from whoever holds it (the explicit
    /// reassignment).
    Assign {
        to: String,
    },
    /// A public reply to the submitter, or an internal note for the team.
    Comment {
        /// (Absent reads as empty, which is refused: the API fills it from a saved reply.)
        #[serde(default)]
        body: String,
        #[serde(default)]
        internal: bool,
        /// Where a public reply was written when not in franz itself (a staff member's message in the ticket's
        /// Discord thread): it is there already, so it is not delivered again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via: Option<Via>,
    },
    SetPriority {
        priority: Priority,
    },
    AddLabel {
        label: String,
    },
    RemoveLabel {
        label: String,
    },
    Close {
        /// (Absent reads as empty, which is refused: the API fills it from a saved reply.)
        #[serde(default)]
        reason: String,
    },
    Reopen,
    /// A message from the submitter (the actor, whose id must be the ticket's contact id), through `via`. To a
    /// ticket closed within the reopen window it reopens the ticket; later it is refused.
    Write {
        #[serde(default)]
        body: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<Attachment>,
        via: Via,
        /// The message's id in its channel (a Discord message id), when it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
    },
    /// Where a message about the ticket went, and whether it arrived. Only franz itself (the channel adapter that
    /// sent it) records it.
    RecordDelivery(Delivery),
    /// The time is `at` (RFC 3339): has a service-level deadline come? Only franz's scheduler sends it, with the
    /// command id `tick:<version>` of the ticket's version it saw, so two schedulers make one event.
    Tick {
        at: String,
    },
    /// Give the ticket to team `team` (none: back to triage), saying why.
    Move {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        team: Option<String>,
        reason: String,
    },
    /// The submitter (the actor, whose id must be the ticket's contact id) says how the closed ticket went: 1 (bad)
    /// to 5 (great), with an optional comment. Within the rating window after the close a later rating replaces an
    /// earlier one; later, and before a close, it is refused.
    Rate {
        rating: u8,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
}

/// What a routing rule decided for a new ticket (`lifecycle::routing`), recorded on its `created` event: a rule
/// changed later never rewrites it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Routed {
    /// The rule's name.
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// Where the message about event `of` (a public reply, a claim, a close) went, and whether it arrived: what
/// `record_delivery` asks to record and the `delivery` event records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub of: String,
    pub via: Via,
    pub delivered: bool,
    /// Why it did not arrive, or a detail of how it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The sent message's id in its channel (a Discord message id), so that an answer to it finds the ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The ticket's own channel the message opened (its Discord thread), where the conversation goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
}

/// A change that happened (or was refused), on `ticket-events` (key: the ticket id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Derived from the command it answers, so deciding the same command twice yields the same event id.
    pub event_id: String,
    pub ticket_id: String,
    /// Counts the ticket's changes from 1 without gaps; absent on `rejected`, which changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// When akte decided, RFC 3339 UTC.
    pub at: String,
    pub actor: Actor,
    /// The `command_id` this event answers.
    pub caused_by: String,
    /// The ticket's service-level clocks after this event, when it changed them (`lifecycle::levels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clocks: Option<Vec<Clock>>,
    #[serde(flatten)]
    pub change: Change,
}

/// What changed. The serialized `type` names are part of the wire contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    Created {
        contact: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contact_id: Option<String>,
        origin: String,
        body: String,
        /// When the submitter sent it (the ticket's `date`).
        submitted: String,
        /// The Discord server and channel it was submitted in; absent in events written before franz kept them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        guild_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel_id: Option<String>,
        /// The closed ticket this one follows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        follows: Option<String>,
        /// The id of the message that opened it in its channel (a mail's Message-ID), so an answer to that message
        /// finds the ticket.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        /// Why the opening message was sent by a program (an auto-reply, a list): it gets no automatic answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        automatic: Option<String>,
        /// The files the opening message carried (a mail's attachments).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<Attachment>,
        /// The routing rule that matched it, and what the rule set (boxed: rarely there, and large).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        routed: Option<Box<Routed>>,
    },
    Claimed {
        by: Person,
    },
    Unclaimed {
        /// Who held it.
        from: Person,
    },
    Assigned {
        to: Person,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<Person>,
    },
    Commented {
        body: String,
        internal: bool,
        /// Where it was written, when not in franz itself (see `Action::Comment`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via: Option<Via>,
    },
    PrioritySet {
        priority: Priority,
    },
    LabelAdded {
        label: String,
    },
    LabelRemoved {
        label: String,
    },
    Closed {
        reason: String,
    },
    Reopened,
    /// The submitter wrote.
    SubmitterWrote {
        body: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<Attachment>,
        via: Via,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        /// The ticket was closed, and this message reopened it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reopened: bool,
    },
    /// A message about event `of` went out through `via`, or could not.
    Delivery(Delivery),
    /// The warn share of a service-level target (`due` then) is spent.
    DueSoon {
        target: Target,
        due: String,
    },
    /// A service-level target was not met: it was due at `due`.
    Breached {
        target: Target,
        due: String,
    },
    /// The submitter was reminded that the ticket waits for their answer, and closes at `closes` without one.
    Reminded {
        closes: String,
    },
    /// The ticket went from team `from` to team `to` (none: triage).
    Moved {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        reason: String,
    },
    /// The submitter rated the closed ticket (replacing an earlier rating of theirs).
    Rated {
        rating: u8,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// The command was refused; the ticket is unchanged.
    Rejected {
        /// The refused command's action (`claim`, `close`, …), or `unreadable` for a record that is no command.
        action: String,
        reason: String,
    },
}

impl Action {
    /// The serialized name of the action, as `rejected` events and logs show it.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Create { .. } => "create",
            Action::Claim => "claim",
            Action::Unclaim => "unclaim",
            Action::Assign { .. } => "assign",
            Action::Comment { .. } => "comment",
            Action::SetPriority { .. } => "set_priority",
            Action::AddLabel { .. } => "add_label",
            Action::RemoveLabel { .. } => "remove_label",
            Action::Close { .. } => "close",
            Action::Reopen => "reopen",
            Action::Write { .. } => "write",
            Action::RecordDelivery(_) => "record_delivery",
            Action::Tick { .. } => "tick",
            Action::Move { .. } => "move",
            Action::Rate { .. } => "rate",
        }
    }
}

impl Change {
    /// The action that asks for this change (for a rejection, the refused action).
    pub fn action(&self) -> &str {
        match self {
            Change::Created { .. } => "create",
            Change::Claimed { .. } => "claim",
            Change::Unclaimed { .. } => "unclaim",
            Change::Assigned { .. } => "assign",
            Change::Commented { .. } => "comment",
            Change::PrioritySet { .. } => "set_priority",
            Change::LabelAdded { .. } => "add_label",
            Change::LabelRemoved { .. } => "remove_label",
            Change::Closed { .. } => "close",
            Change::Reopened => "reopen",
            Change::SubmitterWrote { .. } => "write",
            Change::Delivery(_) => "record_delivery",
            Change::DueSoon { .. } | Change::Breached { .. } | Change::Reminded { .. } => "tick",
            Change::Moved { .. } => "move",
            Change::Rated { .. } => "rate",
            Change::Rejected { action, .. } => action,
        }
    }

    /// The files the change carries: the opening message's, or a message's of the submitter.
    pub fn attachments(&self) -> &[Attachment] {
        match self {
            Change::Created { attachments, .. } | Change::SubmitterWrote { attachments, .. } => attachments,
            _ => &[],
        }
    }

    /// The serialized `type` of the event.
    pub fn name(&self) -> &'static str {
        match self {
            Change::Created { .. } => "created",
            Change::Claimed { .. } => "claimed",
            Change::Unclaimed { .. } => "unclaimed",
            Change::Assigned { .. } => "assigned",
            Change::Commented { .. } => "commented",
            Change::PrioritySet { .. } => "priority_set",
            Change::LabelAdded { .. } => "label_added",
            Change::LabelRemoved { .. } => "label_removed",
            Change::Closed { .. } => "closed",
            Change::Reopened => "reopened",
            Change::SubmitterWrote { .. } => "submitter_wrote",
            Change::Delivery(_) => "delivery",
            Change::DueSoon { .. } => "due_soon",
            Change::Breached { .. } => "breached",
            Change::Reminded { .. } => "reminded",
            Change::Moved { .. } => "moved",
            Change::Rated { .. } => "rated",
            Change::Rejected { .. } => "rejected",
        }
    }
}

impl Priority {
    pub const ALL: [Priority; 4] = [Priority::Low, Priority::Normal, Priority::High, Priority::Urgent];

    pub fn name(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    pub fn parse(text: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.name() == text)
    }
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Open, Status::Claimed, Status::Waiting, Status::Closed];

    pub fn name(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Claimed => "claimed",
            Status::Waiting => "waiting",
            Status::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.name() == text)
    }
}

/// The command id of a ticket's creation: derived from the ticket id, so a redelivered ticket is the same command.
pub fn create_command_id(ticket_id: &str) -> String {
    Uuid::new_v5(&LIFECYCLE_NAMESPACE, format!("create:{ticket_id}").as_bytes()).to_string()
}

/// The id of the event that answers command `command_id` of ticket `ticket_id`: deciding a command twice yields
/// the same event id. A command is known by its ticket and its id together, so an id reused on another ticket is
/// another command.
pub fn event_id_for(ticket_id: &str, command_id: &str) -> String {
    let name = format!("event:{}:{ticket_id}:{command_id}", ticket_id.len());
    Uuid::new_v5(&LIFECYCLE_NAMESPACE, name.as_bytes()).to_string()
}

impl Command {
    /// The command that opens `ticket`, as akte derives it from `tickets-formatted`.
    pub fn create(ticket: Ticket) -> Command {
        Command {
            command_id: create_command_id(&ticket.id),
            ticket_id: ticket.id.clone(),
            actor: Actor { source: ActorSource::Franz, name: "franz".into(), id: None, staff: None },
            action: Action::Create { ticket: Box::new(ticket) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_read_and_write_the_documented_json() {
        let text = r#"{"command_id":"c1","ticket_id":"t1","actor":{"source":"web","name":"ana"},"action":"close","reason":"done"}"#;
        let command: Command = serde_json::from_str(text).unwrap();
        assert_eq!(command.action, Action::Close { reason: "done".into() });
        assert_eq!(serde_json::to_string(&command).unwrap(), text);
        let claim: Command = serde_json::from_str(
            r#"{"command_id":"c","ticket_id":"t","actor":{"source":"cli","name":"b"},"action":"claim"}"#,
        )
        .unwrap();
        assert_eq!(claim.action, Action::Claim);
    }

    #[test]
    fn events_carry_their_type_and_omit_the_version_of_a_rejection() {
        let event = Event {
            event_id: "e".into(),
            ticket_id: "t".into(),
            version: None,
            at: "2026-01-01T00:00:00.000Z".into(),
            actor: Actor { source: ActorSource::Discord, name: "ana".into(), id: Some("42".into()), staff: None },
            caused_by: "c".into(),
            clocks: None,
            change: Change::Rejected { action: "claim".into(), reason: "already claimed by bo".into() },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "rejected");
        assert!(json.get("version").is_none());
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        assert_eq!(create_command_id("t"), create_command_id("t"));
        assert_ne!(create_command_id("t"), create_command_id("u"));
        assert_ne!(event_id_for("t", "c"), create_command_id("c"));
        assert_ne!(event_id_for("t", "c"), event_id_for("u", "c"), "the same command id on another ticket");
    }
}
