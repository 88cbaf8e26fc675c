//! Public replies to tickets that came by mail, sent to the customer by SMTP, and where each went recorded on its
//! ticket.
//!
//! A follower of `ticket-events` in consumer group `briefkasten-replies`: for each public reply (from the desk, the
//! CLI, the API or a Discord card) to a ticket whose origin is `Email`, it waits until the ticket store has the
//! event, writes the reply (`compose`), sends it, and records the delivery (`record_delivery`, via `email`): taken
//! by the server, with the mail's Message-ID, so an answer to it finds the ticket; or refused for good, with the
//! server's reason, which the desk shows under the reply. A reply the server cannot take now (it is down, or
//! defers that one recipient) waits and is tried again on its own growing pause (`waiting`), reported in `/readyz`
//! and `franz status`, never skipped, while the replies after it go on. The event's offset is stored only once its
//! reply and every reply before it is done, so a reply is sent at least once; one recorded as delivered is never
//! sent again, and a crash between the server's answer and the record sends it twice, with the same Message-ID,
//! which mail clients show once.
//! A reply older than an hour when this follower first sees it (franz was down, or a new group on a long history),
//! or that the server has not taken within an hour of its writing, is not sent, and recorded as not sent with the
//! reason, unless an earlier franz recorded it sent. The replies of one ticket go out in the order they were
//! written, and a server that cannot be reached is asked by one reply at a time (`waiting`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lettre::message::Mailbox;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::Message as _;
use tokio_util::sync::CancellationToken;

use super::NAME;
use super::compose;
use super::smtp::{Outbox, Sent};
use super::waiting::{BACKOFF_FIRST, BACKOFF_MAX, Deferred, Waiting};
use crate::kafka::tickets::send_command;
use crate::kafka::{CommitOnRevoke, Producer, commit_stored, consumer_error_is_fatal, group_consumer};
use crate::schema::lifecycle::{Action, Actor, ActorSource, Change, Command, Delivery, Event, Via};
use crate::store::{Store, query};

/// The consumer group of every franz that sends replies by mail.
pub const GROUP: &str = "briefkasten-replies";
/// How long a reply waits for the ticket store to have its event before it says so (and waits on).
const STORE_PATIENCE: Duration = Duration::from_secs(30);
/// Replies older than this when first seen are not sent.
const SEND_WITHIN: Duration = Duration::from_secs(3600);
/// How many replies may wait for a server that cannot take them now before no further events are read.
const WAITING_MAX: usize = 100;

/// What the replies need.
#[derive(Clone)]
pub struct Replies {
    pub bootstrap: String,
    pub events_topic: String,
    pub commands_topic: String,
    pub partitions: i32,
    pub store: Store,
    pub outbox: Outbox,
    /// The address replies come from.
    pub from: Mailbox,
    /// The acknowledgement of a new ticket by mail, if one is sent.
    pub acknowledgement: Option<String>,
    /// Automatic mails sent lately, by recipient.
    pub automatic: std::sync::Arc<std::sync::Mutex<Limiter>>,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The question a close mail ends with, and where its feedback link leads, when submitters are asked.
    pub survey: Option<Survey>,
}

/// What a close mail asks: the question, and the link to the desk's feedback page for the ticket.
#[derive(Clone, Debug)]
pub struct Survey {
    pub question: String,
    /// Where people reach the desk: `desk.public_url`, else its listen address.
    pub desk_url: String,
    pub key: crate::feedback::Key,
}

impl Survey {
    /// The paragraph a close mail ends with: the question and the ticket's feedback link.
    pub fn paragraph(&self, ticket_id: &str) -> String {
        format!("{}\n{}/feedback/{}", self.question, self.desk_url.trim_end_matches('/'), self.key.token(ticket_id))
    }
}

/// At most [`AUTOMATIC_PER_WINDOW`] automatic mails to one address in [`AUTOMATIC_WINDOW`]: what keeps franz and
/// an auto-responder that does not say it is one from mailing each other for ever.
#[derive(Debug, Default)]
pub struct Limiter {
    sent: HashMap<String, VecDeque<Instant>>,
}

/// How many automatic mails one address gets in [`AUTOMATIC_WINDOW`].
pub const AUTOMATIC_PER_WINDOW: usize = 3;
pub const AUTOMATIC_WINDOW: Duration = Duration::from_secs(600);
/// How many addresses the limiter remembers before it forgets the quiet ones.
const REMEMBERED_MAX: usize = 10_000;

impl Limiter {
    /// Whether one more automatic mail may go to `address` at `now`; counts it if so.
    pub fn admit(&mut self, address: &str, now: Instant) -> bool {
        if self.sent.len() >= REMEMBERED_MAX {
            self.sent.retain(|_, times| times.back().is_some_and(|last| now.duration_since(*last) < AUTOMATIC_WINDOW));
        }
        let times = self.sent.entry(address.to_ascii_lowercase()).or_default();
        while times.front().is_some_and(|first| now.duration_since(*first) >= AUTOMATIC_WINDOW) {
            times.pop_front();
        }
        if times.len() >= AUTOMATIC_PER_WINDOW {
            return false;
        }
        times.push_back(now);
        true
    }
}

/// Follows the events until `shutdown`, sending the replies due; commits what was sent.
pub async fn run(replies: Replies, shutdown: CancellationToken) -> anyhow::Result<()> {
    let consumer = group_consumer(&replies.bootstrap, GROUP, CommitOnRevoke::default())?;
    consumer.subscribe(&[&replies.events_topic]).context("cannot follow the ticket events for replies by mail")?;
    let producer = crate::kafka::producer(&replies.bootstrap)?;
    let result = follow(&replies, &consumer, &producer, &shutdown).await;
    // Committing waits for the broker with no time limit: on the blocking pool, as everywhere in franz.
    let committed = tokio::task::spawn_blocking(move || {
        let committed = commit_stored(&consumer);
        drop(consumer);
        committed
    })
    .await
    .context("committing the replies' offsets ended abnormally")?;
    if let Err(error) = committed {
        tracing::warn!(service = NAME, %error, "could not commit the replies' offsets; some may be sent again");
    }
    result
}

async fn follow(
    replies: &Replies,
    consumer: &rdkafka::consumer::StreamConsumer<CommitOnRevoke>,
    producer: &Producer,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut waiting = Waiting::<Box<Outgoing>>::default();
    let mut generation = consumer.context().generation.load(Ordering::SeqCst);
    // A rebalance is served inside `recv()`, also while the loop waits for a try: what this member owns is checked
    // again after every wait, before any reply is tried.
    let mut forget_lost = |waiting: &mut Waiting<Box<Outgoing>>| {
        let now_generation = consumer.context().generation.load(Ordering::SeqCst);
        if now_generation != generation {
            generation = now_generation;
            waiting.keep_only(&owned(consumer, &replies.events_topic));
        }
    };
    loop {
        replies.metrics.mailbox.replies_waiting(waiting.len());
        forget_lost(&mut waiting);
        let next_try = waiting.next_due();
        let full = waiting.len() >= WAITING_MAX;
        let message = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep_until(next_try.unwrap_or_else(Instant::now).into()), if next_try.is_some() => None,
            message = consumer.recv(), if !full => Some(message),
        };
        forget_lost(&mut waiting);
        let Some(message) = message else {
            let Some(deferred) = waiting.take_due(Instant::now()) else { continue };
            if !retry(replies, consumer, producer, &mut waiting, deferred, shutdown).await {
                return Ok(());
            }
            continue;
        };
        let message = match message {
            Ok(message) => message,
            Err(error) if consumer_error_is_fatal(&error) => return Err(error.into()),
            Err(_) => continue,
        };
        let (partition, offset) = (message.partition(), message.offset());
        if waiting.is_waiting(partition, offset) {
            continue; // read again after a rebalance while its reply waits
        }
        let event = message.payload().and_then(|payload| serde_json::from_slice::<Event>(payload).ok());
        if let Some((event, due)) = event.as_ref().and_then(|event| due(event).map(|due| (event, due))) {
            let mut outgoing = match prepare(replies, producer, event, due, (partition, offset), shutdown).await {
                Prepared::Done => None,
                Prepared::Send(outgoing) => Some(outgoing),
                Prepared::Stopped => return Ok(()), // shut down before the reply was sent: it comes again
            };
            // Behind an earlier reply to the same ticket, or while the server cannot be reached: it waits its turn.
            if let Some(waits) =
                outgoing.take_if(|o| waiting.holds(&o.event.ticket_id) || waiting.closed(Instant::now()))
            {
                waiting.defer(partition, offset, &event.ticket_id, waits, Instant::now());
                continue;
            }
            if let Some(mut outgoing) = outgoing {
                match attempt(replies, producer, &outgoing, BACKOFF_FIRST, shutdown).await {
                    Attempt::Done => waiting.answered(true, Instant::now()),
                    Attempt::Later { why, reached } => {
                        outgoing.last_answer = Some(why);
                        waiting.answered(reached, Instant::now());
                        waiting.defer(partition, offset, &event.ticket_id, outgoing, Instant::now());
                        continue;
                    }
                    Attempt::Stopped => return Ok(()),
                }
            }
        }
        store(replies, consumer, partition, waiting.done(partition, offset));
    }
}

/// Tries a waiting reply again, unless it was delivered meanwhile (by a franz that had its partition) or waited
/// too long; `false` if shutdown came first.
async fn retry(
    replies: &Replies,
    consumer: &rdkafka::consumer::StreamConsumer<CommitOnRevoke>,
    producer: &Producer,
    waiting: &mut Waiting<Box<Outgoing>>,
    mut deferred: Deferred<Box<Outgoing>>,
    shutdown: &CancellationToken,
) -> bool {
    let event = &deferred.item.event;
    let finished = if recorded(replies, event).await {
        true
    } else if !recent(event) {
        let last = deferred.item.last_answer.as_deref().map(|why| format!("; its last answer: {why}"));
        let why = format!(
            "not sent: the mail server had not taken it {SEND_WITHIN:?} after it was written{}; send it again if it \
             still matters",
            last.unwrap_or_default()
        );
        if !record(replies, producer, event, false, Some(why), None, shutdown).await {
            return false;
        }
        true
    } else {
        match attempt(replies, producer, &deferred.item, deferred.following(), shutdown).await {
            Attempt::Done => {
                waiting.answered(true, Instant::now());
                true
            }
            Attempt::Later { why, reached } => {
                deferred.item.last_answer = Some(why);
                waiting.answered(reached, Instant::now());
                false
            }
            Attempt::Stopped => return false,
        }
    };
    if finished {
        let offset = waiting.resolved(&deferred, Instant::now());
        store(replies, consumer, deferred.partition, offset);
    } else {
        waiting.again(deferred, Instant::now());
    }
    true
}

/// Whether the ticket store has a delivery of `event`'s reply recorded.
async fn recorded(replies: &Replies, event: &Event) -> bool {
    let store = replies.store.clone();
    let id = event.ticket_id.clone();
    let history = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let conn = store.reader()?;
        Ok(query::history(&conn, &id)?)
    })
    .await;
    matches!(history, Ok(Ok(history)) if delivered(&history, &event.event_id))
}

/// Whether `history` records where the reply of event `of` went by mail.
fn delivered(history: &[Event], of: &str) -> bool {
    history.iter().any(|e| matches!(&e.change, Change::Delivery(Delivery { of: id, via: Via::Email, .. }) if id == of))
}

/// The partitions of the events this member owns now.
fn owned(consumer: &rdkafka::consumer::StreamConsumer<CommitOnRevoke>, topic: &str) -> HashSet<i32> {
    let assignment = consumer.assignment().unwrap_or_default();
    assignment.elements_for_topic(topic).iter().map(|element| element.partition()).collect()
}

/// Stores `offset` of `partition` as handled, if there is one to store.
fn store(
    replies: &Replies,
    consumer: &rdkafka::consumer::StreamConsumer<CommitOnRevoke>,
    partition: i32,
    offset: Option<i64>,
) {
    if let Some(offset) = offset
        && let Err(error) = consumer.store_offset(&replies.events_topic, partition, offset)
    {
        tracing::debug!(%error, "reply offset not stored; the partition moved to another member");
    }
}

/// What an event may call for: a public reply written in franz (one written in a channel is there already), the
/// acknowledgement of a ticket opened by a person's mail, or the reminder of a ticket waiting for an answer (which
/// closes at the time it names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due<'e> {
    Reply(&'e str),
    Acknowledgement,
    Reminder(&'e str),
    /// The ticket was closed, for this reason.
    Closed(&'e str),
}

fn due(event: &Event) -> Option<Due<'_>> {
    match &event.change {
        Change::Commented { body, internal: false, via: None } => Some(Due::Reply(body)),
        Change::Created { origin, automatic: None, .. } if origin == crate::schema::ORIGIN_EMAIL => {
            Some(Due::Acknowledgement)
        }
        Change::Reminded { closes } => Some(Due::Reminder(closes)),
        Change::Closed { reason } => Some(Due::Closed(reason)),
        _ => None,
    }
}

fn recent(event: &Event) -> bool {
    chrono::DateTime::parse_from_rfc3339(&event.at).is_ok_and(|at| {
        chrono::Utc::now().signed_duration_since(at).to_std().is_ok_and(|age| age <= SEND_WITHIN)
            || at > chrono::Utc::now()
    })
}

/// A reply written as a mail, due to go.
struct Outgoing {
    event: Event,
    mail: lettre::Message,
    /// Whom it goes to, for the record and the troubles.
    contact: String,
    /// What the server said at the last try, if it could not take it.
    last_answer: Option<String>,
}

/// What an event turned out to call for.
enum Prepared {
    /// Nothing (any more): not a mail ticket, sent already, or recorded as not sent.
    Done,
    /// This mail.
    Send(Box<Outgoing>),
    /// Shutdown came first.
    Stopped,
}

/// How one try to send a mail ended.
enum Attempt {
    /// Sent, or refused for good, and recorded so.
    Done,
    /// The server could not take it now (`reached`: it answered so), or could not be reached: try again later.
    Later { why: String, reached: bool },
    /// Shutdown came first.
    Stopped,
}

/// Writes the mail `event` calls for if its ticket came by mail, once the ticket store has the event; records a
/// reply that is not to be sent.
async fn prepare(
    replies: &Replies,
    producer: &Producer,
    event: &Event,
    due: Due<'_>,
    (partition, offset): (i32, i64),
    shutdown: &CancellationToken,
) -> Prepared {
    let applied = |progress: &crate::store::Progress| progress.next.get(&partition).is_some_and(|next| *next > offset);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Prepared::Stopped,
            done = replies.store.wait_for(STORE_PATIENCE, applied) => if done { break },
        }
        let problem = format!("the ticket store has not applied the events of the replies within {STORE_PATIENCE:?}");
        tracing::warn!(service = NAME, "{problem}");
        replies.metrics.troubles.report(NAME, problem);
    }
    let store = replies.store.clone();
    let id = event.ticket_id.clone();
    let read = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let conn = store.reader()?;
        Ok((query::ticket(&conn, &id)?, query::history(&conn, &id)?))
    })
    .await;
    let (ticket, history) = match read {
        Ok(Ok((Some(ticket), history))) => (ticket, history),
        Ok(Ok((None, _))) => return Prepared::Done,
        Ok(Err(error)) => {
            tracing::warn!(service = NAME, %error, "the ticket store could not be read; the reply is not sent");
            return Prepared::Done;
        }
        Err(error) => {
            tracing::warn!(service = NAME, %error, "a read of the ticket store ended abnormally");
            return Prepared::Done;
        }
    };
    if ticket.origin != crate::schema::ORIGIN_EMAIL {
        return Prepared::Done;
    }
    if delivered(&history, &event.event_id) {
        return Prepared::Done;
    }
    let not_sent = |why: String| async move {
        if record(replies, producer, event, false, Some(why), None, shutdown).await {
            Prepared::Done
        } else {
            Prepared::Stopped
        }
    };
    if !recent(event) {
        // Seen first long after it was written (franz was down, or this is a new franz on an old history): not sent
        // now, when it may no longer fit, and the desk says so under the reply.
        if let Due::Reply(_) = due {
            return not_sent(format!(
                "not sent: franz had not sent it {SEND_WITHIN:?} after it was written (franz was down, or the mail \
                 server did not take it); send it again if it still matters"
            ))
            .await;
        }
        return Prepared::Done;
    }
    let reminder;
    let closing;
    let (body, kind) = match due {
        Due::Closed(reason) => {
            let by_program = history.iter().any(|e| matches!(&e.change, Change::Created { automatic: Some(_), .. }));
            let to = ticket.contact_id.as_deref().unwrap_or(&ticket.contact);
            if by_program || to.eq_ignore_ascii_case(replies.from.email.as_ref()) {
                tracing::info!(service = NAME, ticket = %ticket.id, "no close mail to a program or to franz's own address");
                return Prepared::Done;
            }
            closing = compose::closed(reason, replies.survey.as_ref().map(|survey| survey.paragraph(&ticket.id)));
            (closing.as_str(), compose::Kind::Automatic)
        }
        Due::Reply(body) => (body, compose::Kind::Person),
        Due::Reminder(closes) => {
            let when = chrono::DateTime::parse_from_rfc3339(closes)
                .map(|at| at.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|_| closes.to_owned());
            reminder = format!(
                "Your ticket is waiting for your answer. Reply to this mail to keep it open; without an answer it \
                 closes on {when}."
            );
            (reminder.as_str(), compose::Kind::Automatic)
        }
        Due::Acknowledgement => {
            let Some(text) = &replies.acknowledgement else { return Prepared::Done };
            let to = ticket.contact_id.as_deref().unwrap_or(&ticket.contact);
            if to.eq_ignore_ascii_case(replies.from.email.as_ref()) {
                tracing::info!(service = NAME, ticket = %ticket.id, "no acknowledgement to franz's own address");
                return Prepared::Done;
            }
            let admitted = replies.automatic.lock().map(|mut limiter| limiter.admit(to, Instant::now()));
            if !admitted.unwrap_or(false) {
                tracing::info!(
                    service = NAME,
                    ticket = %ticket.id,
                    "no acknowledgement to {to}: it had {AUTOMATIC_PER_WINDOW} in the last {AUTOMATIC_WINDOW:?}"
                );
                return Prepared::Done;
            }
            (text.as_str(), compose::Kind::Automatic)
        }
    };
    match compose::reply(&replies.from, &ticket, &history, &event.event_id, body, kind) {
        Ok(mail) => Prepared::Send(Box::new(Outgoing {
            event: event.clone(),
            mail,
            contact: ticket.contact,
            last_answer: None,
        })),
        Err(error) => not_sent(format!("the reply could not be written as a mail: {error:#}")).await,
    }
}

/// Tries once to send `outgoing`, and records where it went if the server answered for good; a server that cannot
/// take it now is reported with `pause`, the time until the next try.
async fn attempt(
    replies: &Replies,
    producer: &Producer,
    outgoing: &Outgoing,
    pause: Duration,
    shutdown: &CancellationToken,
) -> Attempt {
    let Outgoing { event, mail, contact, .. } = outgoing;
    let sent = tokio::select! {
        sent = replies.outbox.send(mail.clone()) => sent,
        () = shutdown.cancelled() => return Attempt::Stopped,
    };
    let count = |outcome: &str| {
        replies.metrics.mails.get_or_create(&crate::metrics::OutcomeLabel { outcome: outcome.into() }).inc();
    };
    let reached = matches!(sent, Sent::Deferred(_));
    let recorded = match sent {
        Sent::Accepted(answer) => {
            count("reply_sent");
            let id = compose::message_id(&event.event_id, &replies.from);
            let detail = Some(format!("to {contact}; the mail server answered: {answer}"));
            record(replies, producer, event, true, detail, Some(id), shutdown).await
        }
        Sent::Refused(why) => {
            count("reply_refused");
            let problem = format!("the mail server refused the reply to {contact} for good: {why}");
            tracing::warn!(service = NAME, ticket = %event.ticket_id, "{problem}");
            replies.metrics.troubles.report(NAME, &problem);
            record(replies, producer, event, false, Some(why), None, shutdown).await
        }
        Sent::Deferred(why) | Sent::Unreachable(why) => {
            let problem = format!(
                "the reply to {contact} could not be sent yet: {why}; trying it again in {pause:?} while other replies \
                 go on"
            );
            tracing::warn!(service = NAME, ticket = %event.ticket_id, "{problem}");
            replies.metrics.troubles.report(NAME, problem);
            return Attempt::Later { why, reached };
        }
    };
    if recorded { Attempt::Done } else { Attempt::Stopped }
}

/// Records where the reply of `event` went, trying until the broker has it; `false` if shutdown came first.
async fn record(
    replies: &Replies,
    producer: &Producer,
    event: &Event,
    delivered: bool,
    detail: Option<String>,
    message_id: Option<String>,
    shutdown: &CancellationToken,
) -> bool {
    let command = Command {
        command_id: format!("mail-delivery:{}", event.event_id),
        ticket_id: event.ticket_id.clone(),
        actor: Actor { source: ActorSource::Franz, name: NAME.into(), id: None, staff: None },
        action: Action::RecordDelivery(Delivery {
            of: event.event_id.clone(),
            via: Via::Email,
            delivered,
            detail: detail.map(|text| text.chars().take(crate::lifecycle::REASON_MAX).collect()),
            message_id,
            channel_id: None,
        }),
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        match send_command(producer, &replies.commands_topic, replies.partitions, &command).await {
            Ok(()) => return true,
            Err(error) => {
                let problem = format!("the delivery of a reply could not be recorded yet: {error:#}");
                tracing::warn!(service = NAME, "{problem}");
                replies.metrics.troubles.report(NAME, problem);
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(change: Change, at: &str) -> Event {
        Event {
            event_id: "e1".into(),
            ticket_id: "t1".into(),
            version: Some(2),
            at: at.into(),
            actor: Actor::staff(ActorSource::Web, "ana"),
            caused_by: "c1".into(),
            clocks: None,
            change,
        }
    }

    fn created(origin: &str, automatic: Option<&str>) -> Change {
        Change::Created {
            contact: "ann@example.com".into(),
            contact_id: Some("ann@example.com".into()),
            origin: origin.into(),
            body: "b".into(),
            submitted: "2026-12-07T10:00:00Z".into(),
            guild_id: None,
            channel_id: None,
            follows: None,
            message_id: None,
            automatic: automatic.map(str::to_owned),
            attachments: Vec::new(),
            routed: None,
        }
    }

    #[test]
    fn public_replies_written_in_franz_and_new_tickets_by_a_persons_mail_call_for_a_mail() {
        let now = chrono::Utc::now().to_rfc3339();
        let reply = event(Change::Commented { body: "hi".into(), internal: false, via: None }, &now);
        assert_eq!(due(&reply), Some(Due::Reply("hi")));
        let reminded = event(Change::Reminded { closes: "2026-12-14T10:00:00.000Z".into() }, &now);
        assert_eq!(due(&reminded), Some(Due::Reminder("2026-12-14T10:00:00.000Z")), "the silent submitter is reminded");
        let note = event(Change::Commented { body: "n".into(), internal: true, via: None }, &now);
        assert_eq!(due(&note), None);
        let in_thread =
            event(Change::Commented { body: "t".into(), internal: false, via: Some(Via::DiscordThread) }, &now);
        assert_eq!(due(&in_thread), None);
        assert_eq!(due(&event(created("Email", None), &now)), Some(Due::Acknowledgement));
        assert_eq!(due(&event(created("Email", Some("Auto-Submitted: auto-replied")), &now)), None);
        assert_eq!(due(&event(created("Discord", None), &now)), None);
        assert!(recent(&reply));
        assert!(!recent(&event(Change::Reopened, "2020-01-01T00:00:00Z")));
    }

    #[test]
    fn one_address_gets_three_automatic_mails_in_ten_minutes_and_then_none_until_they_age() {
        let mut limiter = Limiter::default();
        let start = Instant::now();
        for _ in 0..AUTOMATIC_PER_WINDOW {
            assert!(limiter.admit("Ann@Example.com", start));
        }
        assert!(!limiter.admit("ann@example.com", start + Duration::from_secs(60)), "case does not make another");
        assert!(limiter.admit("bob@example.com", start), "others are counted apart");
        assert!(limiter.admit("ann@example.com", start + AUTOMATIC_WINDOW), "the first has aged out");
    }

    /// Found by an attack (#34, replies): a reply's Message-ID is `franz.<event id, 36 characters>@<domain of
    /// mail.from>`, over 64 characters for any sending domain over 21 (`support@customer-service.example.com`), and
    /// akte refuses a `record_delivery` whose message id is over 64: the reply reached the customer, but the desk
    /// never shows it delivered, and an answer to it is not found by its Message-ID (`sent`).
    #[test]
    fn a_reply_from_a_longer_domain_is_recorded_as_delivered() {
        let from: Mailbox = "Support <support@customer-service.example.com>".parse().unwrap();
        let reply_event = crate::schema::lifecycle::event_id_for("t1", "reply-1");
        let command = Command {
            command_id: format!("mail-delivery:{reply_event}"),
            ticket_id: "t1".into(),
            actor: Actor { source: ActorSource::Franz, name: NAME.into(), id: None, staff: None },
            action: Action::RecordDelivery(Delivery {
                of: reply_event.clone(),
                via: Via::Email,
                delivered: true,
                detail: Some("to ann@example.com; the mail server answered: 2.0.0 Ok".into()),
                message_id: Some(compose::message_id(&reply_event, &from)),
                channel_id: None,
            }),
        };
        let ticket = crate::lifecycle::TicketState {
            id: "t1".into(),
            version: 2,
            origin: "Email".into(),
            contact: "ann@example.com".into(),
            contact_id: Some("ann@example.com".into()),
            ..Default::default()
        };
        let now = chrono::Utc::now().to_rfc3339();
        let event = crate::lifecycle::decide(Some(&ticket), &command, &now, &Default::default());
        assert!(
            matches!(event.change, Change::Delivery(_)),
            "the delivery of a reply with Message-ID {:?} is refused: {:?}",
            compose::message_id(&reply_event, &from),
            event.change
        );
    }
}
