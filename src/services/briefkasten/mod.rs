//! briefkasten (German: the letterbox): the service that takes tickets by email.
//!
//! It reads one IMAP mailbox (`mail.imap_url`): every mail not yet taken becomes an intake record with origin
//! `Email` on the intake topic, like a Discord ticket (aufbereitung normalizes it, akte opens it); a mail that
//! cannot be a ticket (too large, no sender) becomes a dead letter with what could be read of it; a delivery
//! status notification (a bounce) is reported on the errors topic, since franz sent no mail it could belong to.
//! Only once the broker acknowledged what a mail became is the mail marked as taken (flagged `\Seen`, or moved to
//! `mail.move_to`), so a crash in between reads it again, and its ticket id, derived from the mail
//! (`mail::interaction_id`), makes that the same ticket.
//!
//! It waits for new mail with IDLE where the server offers it, else looks every `mail.poll_secs`. A failed
//! connection is made again after a pause that doubles up to a minute (a refused sign-in waits a quarter of an
//! hour, so a wrong password does not lock the account), each failure reported in the log, `/readyz` and
//! `franz status`; nothing here ever stops franz.

pub mod compose;
pub mod imap;
pub mod mail;
pub mod replies;
pub mod smtp;
mod waiting;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::FutureExt as _;
use tokio_util::sync::CancellationToken;

use crate::config::Topics;
use crate::intake;
use crate::kafka::tickets::send_command;
use crate::kafka::{self, Producer, report_error};
use crate::lifecycle::{NAME_MAX, TicketState};
use crate::metrics::{Metrics, OutcomeLabel};
use crate::schema::lifecycle::{Action, Actor, ActorSource, Command, Status, Via};
use crate::schema::{DeadLetter, ErrorType, MAX_FIELD_CHARS, MailRef, now_rfc3339};
use crate::store::opened::Opened;
use crate::store::{Store, query};
use imap::{Account, Fetched, Mailbox, MoveRefused, Refused};

/// The service's name in logs, metrics and error events.
pub const NAME: &str = "briefkasten";
/// The first pause after a failed connection; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long the first look at the mailbox waits for the ticket store before it says so (and waits on).
const STORE_PATIENCE: Duration = Duration::from_secs(30);
/// The pause after the server refused the sign-in.
const REFUSED_PAUSE: Duration = Duration::from_secs(15 * 60);

/// What briefkasten needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bootstrap: String,
    pub topics: Topics,
    pub account: Account,
    /// Where taken mails go; `None` flags them `\Seen` in place.
    pub move_to: Option<String>,
    /// How long between two looks without IDLE, and the longest IDLE.
    pub poll: Duration,
    /// The largest mail that becomes a ticket.
    pub max_bytes: usize,
    /// The largest attachment kept with its ticket (0: none).
    pub attachment_max: usize,
    /// Where answers find their tickets; without it every mail is a new ticket.
    pub store: Option<Store>,
    /// Partitions of the commands topic, for answers.
    pub partitions: i32,
    /// How long after its close an answer reopens a ticket; later, it opens a new one that follows it.
    pub reopen_within: Duration,
    /// The most open tickets one sender may have (0: no limit): a new mail past it is added to their newest.
    pub open_tickets_max: u64,
    /// What tells a sender past the limit so, when replies go out by mail.
    pub answers: Option<Answers>,
    /// The tickets opened here that the store may not have yet, which the limit counts too.
    pub opened: Opened,
    pub metrics: Arc<Metrics>,
}

/// What answers a mail that opened no ticket: the outbox and address of the replies, and the limit on automatic
/// mails per address they share, so franz and an auto-responder never mail each other for ever.
#[derive(Clone)]
pub struct Answers {
    pub outbox: smtp::Outbox,
    pub from: lettre::message::Mailbox,
    pub automatic: Arc<std::sync::Mutex<replies::Limiter>>,
}

impl std::fmt::Debug for Answers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answers").field("from", &self.from).finish_non_exhaustive()
    }
}

/// Decides whether briefkasten runs: only with the mailbox, user and password all set.
pub fn plan(context: &super::Context<'_>) -> anyhow::Result<super::Plan> {
    let config = &context.config.mail;
    let (url, user, password) = match (&config.imap_url, &config.user, &config.password) {
        (None, None, None) => {
            return Ok(super::Plan::Off(
                "off: set mail.imap_url (FRANZ_MAIL_IMAP_URL), mail.user and mail.password to take tickets by email"
                    .to_owned(),
            ));
        }
        (Some(url), Some(user), Some(password)) => (url, user, password),
        _ => {
            let missing: Vec<&str> = [
                ("mail.imap_url (FRANZ_MAIL_IMAP_URL)", config.imap_url.is_none()),
                ("mail.user (FRANZ_MAIL_USER)", config.user.is_none()),
                ("mail.password (FRANZ_MAIL_PASSWORD)", config.password.is_none()),
            ]
            .into_iter()
            .filter_map(|(name, missing)| missing.then_some(name))
            .collect();
            bail!("tickets by email need the mailbox, its user and its password; missing: {}", missing.join(", "));
        }
    };
    if let Some(folder) = &config.move_to {
        folder_name(folder)?;
    }
    let mut settings = Settings {
        bootstrap: context.bootstrap.clone(),
        topics: context.config.topics.clone(),
        account: Account {
            url: url.clone(),
            user: user.clone(),
            password: password.clone(),
            ca_file: config.ca_file.clone(),
        },
        move_to: config.move_to.clone(),
        poll: Duration::from_secs(config.poll_secs),
        max_bytes: usize::try_from(config.max_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
        attachment_max: usize::try_from(config.attachment_max_mb << 20).unwrap_or(usize::MAX),
        store: context.store.clone(),
        partitions: context.config.partitions,
        reopen_within: context.config.reopen_within,
        open_tickets_max: context.config.open_tickets_max,
        answers: None,
        opened: Opened::default(),
        metrics: context.metrics.clone(),
    };
    context.metrics.mailbox.start(url.to_string(), user.clone(), config.smtp_url.as_ref().map(ToString::to_string));
    let mut status = format!("{url} as {user} -> {}", settings.topics.intake);
    let shutdown = context.shutdown.clone();
    let Some(smtp) = &config.smtp_url else {
        status.push_str("; replies are not sent by mail (set mail.smtp_url)");
        return Ok(super::Plan::run(status, run(settings, shutdown).boxed()));
    };
    let sender = config.from.as_deref().unwrap_or(user);
    let from: lettre::message::Mailbox = sender.parse().map_err(|error| {
        anyhow::anyhow!(
            "mail.from (or mail.user) {sender:?} is no address replies can come from ({error}); set mail.from \
             (FRANZ_MAIL_FROM) to one, such as \"Support <support@example.com>\""
        )
    })?;
    let store = context.store.clone().context("replies by mail need the ticket store")?;
    let outbox = smtp::Outbox::new(smtp, user, password, config.ca_file.as_deref())?;
    let automatic: Arc<std::sync::Mutex<replies::Limiter>> = Default::default();
    settings.answers = Some(Answers { outbox: outbox.clone(), from: from.clone(), automatic: automatic.clone() });
    let replies = replies::Replies {
        bootstrap: context.bootstrap.clone(),
        events_topic: context.config.topics.events.clone(),
        commands_topic: context.config.topics.commands.clone(),
        partitions: context.config.partitions,
        store,
        outbox,
        from: from.clone(),
        acknowledgement: config
            .acknowledge
            .then(|| config.acknowledge_text.clone().unwrap_or_else(|| compose::ACKNOWLEDGEMENT.to_owned())),
        automatic,
        metrics: context.metrics.clone(),
        survey: match context.config.satisfaction.ask {
            true => Some(replies::Survey {
                question: context.config.satisfaction.question.clone(),
                desk_url: context
                    .config
                    .desk
                    .public_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{}", context.config.desk.listen)),
                key: crate::feedback::Key::in_dir(&context.desk_dir)?,
            }),
            false => None,
        },
    };
    status.push_str(&format!("; replies by {smtp} from {from}"));
    let task = async move {
        tokio::try_join!(run(settings, shutdown.clone()), replies::run(replies, shutdown.clone())).map(drop)
    };
    Ok(super::Plan::run(status, task.boxed()))
}

/// A folder name franz can give IMAP as it is.
fn folder_name(folder: &str) -> anyhow::Result<()> {
    if folder.is_empty() || !folder.chars().all(|c| c.is_ascii_graphic() || c == ' ') || folder.contains(['"', '\\']) {
        bail!(
            "mail.move_to {folder:?} is not a folder name franz can use (ASCII letters, digits, spaces and \
             punctuation other than quotes and backslashes)"
        );
    }
    Ok(())
}

/// Runs until `shutdown`: takes the mailbox's mail, connecting again after every failure.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let producer = kafka::producer(&settings.bootstrap)?;
    // An answer is found among the tickets the store knows: not before it has every ticket there was at the start
    // (a new data directory replays the whole history), or the answer would open a ticket of its own.
    if let Some(store) = &settings.store {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                caught_up = store.wait_for(STORE_PATIENCE, |progress| progress.caught_up) => if caught_up { break },
            }
            settings.metrics.mailbox.doing("waiting for the ticket store to catch up");
            let problem =
                format!("waiting for the ticket store to catch up before reading mail ({STORE_PATIENCE:?} so far)");
            tracing::info!(service = NAME, "{problem}");
            settings.metrics.troubles.report(NAME, problem);
        }
    }
    let mut backoff = BACKOFF_FIRST;
    let mut folder = settings.move_to.clone();
    loop {
        let failure = match session(&settings, &producer, &shutdown, &mut backoff, &mut folder).await {
            Ok(()) => return Ok(()),
            Err(failure) => failure,
        };
        let pause = if failure.is::<Refused>() { REFUSED_PAUSE } else { backoff };
        let problem = format!("the mailbox {}: {failure:#}; trying again in {pause:?}", settings.account.url);
        tracing::warn!(service = NAME, "{problem}");
        let down = crate::mailbox::NOT_CONNECTED;
        settings.metrics.mailbox.doing(format!("{down}: {failure:#}; trying again in {pause:?}"));
        settings.metrics.troubles.report(NAME, &problem);
        if failure.is::<Refused>() {
            report_error(&producer, &settings.topics.errors, NAME, problem, serde_json::Map::new()).await;
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        settings.metrics.imap_reconnects.inc();
    }
}

/// `work`, or `None` once `shutdown` comes first: a server that stops answering never holds up a stop.
async fn until<T>(
    shutdown: &CancellationToken,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<Option<T>> {
    tokio::select! {
        done = work => done.map(Some),
        () = shutdown.cancelled() => Ok(None),
    }
}

/// One connection: takes what is there, then waits for more, until `shutdown` (`Ok`) or a failure. The pause
/// after a failure starts again from its shortest only once a connection got mail through to its mark, so a
/// failure that recurs at every look (a refused mark) is not tried again every second.
async fn session(
    settings: &Settings,
    producer: &Producer,
    shutdown: &CancellationToken,
    backoff: &mut Duration,
    folder: &mut Option<String>,
) -> anyhow::Result<()> {
    let watch = &settings.metrics.mailbox;
    watch.connecting();
    let Some(mut mailbox) = until(shutdown, Mailbox::open(&settings.account)).await? else { return Ok(()) };
    tracing::info!(service = NAME, idle = mailbox.idles(), "reading {}", settings.account.url);
    loop {
        watch.doing("reading");
        // Looks again until a look finds nothing: a mail that arrives while a batch is taken may go unannounced
        // (the server's news of it lost among the answers to the batch).
        loop {
            let Some(untaken) = until(shutdown, mailbox.untaken()).await? else { return Ok(()) };
            let (mut marked, mut waited) = (0, false);
            for batch in untaken.chunks(imap::FETCH_BATCH) {
                let Some(sizes) = until(shutdown, mailbox.sizes(batch)).await? else { return Ok(()) };
                for group in groups(&sizes, settings.max_bytes) {
                    let Some(fetched) = until(shutdown, mailbox.fetch(group, settings.max_bytes)).await? else {
                        return Ok(());
                    };
                    let taking = take(settings, producer, &fetched, mailbox.uid_validity);
                    let Some((taken, awaited)) = until(shutdown, taking).await? else { return Ok(()) };
                    let marking = mark(settings, producer, &mut mailbox, &taken, folder);
                    if until(shutdown, marking).await?.is_none() {
                        return Ok(());
                    }
                    marked += taken.len();
                    if !taken.is_empty() {
                        watch.taken();
                    }
                    *backoff = BACKOFF_FIRST;
                    if !awaited.is_empty() {
                        if !store_has(settings, &awaited, shutdown).await {
                            return Ok(());
                        }
                        // The mails that waited are there to take now, not at the next poll.
                        waited = true;
                    }
                }
            }
            // Nothing taken of what the look found (mails deleted meanwhile): wait rather than look again at once.
            if marked == 0 && !waited {
                break;
            }
        }
        if mailbox.idles() {
            watch.doing("waiting for mail (IDLE)");
        } else {
            watch.doing(format!("looking every {:?}", settings.poll));
        }
        match mailbox.wait(settings.poll, shutdown).await? {
            Some(waited) => mailbox = waited,
            None => return Ok(()),
        }
    }
}

/// The mails of `sizes` in groups that one fetch takes: together at most [`imap::FETCH_BYTES`] of mail (a mail
/// over `max_bytes` counts nothing, only its header is fetched), a larger mail alone.
fn groups(sizes: &[(u32, usize)], max_bytes: usize) -> Vec<&[(u32, usize)]> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, (_, size)) in sizes.iter().enumerate() {
        let size = if *size > max_bytes { 0 } else { *size };
        if index > start && bytes + size > imap::FETCH_BYTES {
            groups.push(&sizes[start..index]);
            (start, bytes) = (index, 0);
        }
        bytes += size;
    }
    if start < sizes.len() {
        groups.push(&sizes[start..]);
    }
    groups
}

/// Marks `uids` as taken: moved to `folder`, else flagged as read. A folder the server refuses (it does not exist)
/// is reported once on the errors topic, and from then on mails are flagged as read instead, until franz starts
/// again with a folder that works: a setting to fix, not a reason to take the same mails again and again.
async fn mark(
    settings: &Settings,
    producer: &Producer,
    mailbox: &mut Mailbox,
    uids: &[u32],
    folder: &mut Option<String>,
) -> anyhow::Result<()> {
    match mailbox.mark(uids, folder.as_deref()).await {
        Err(error) if error.is::<MoveRefused>() => {
            let problem = format!(
                "{error:#} (mail.move_to); mails taken are flagged as read instead, until franz starts again with a \
                 folder the server has"
            );
            tracing::error!(service = NAME, "{problem}");
            settings.metrics.troubles.report(NAME, &problem);
            report_error(producer, &settings.topics.errors, NAME, problem, serde_json::Map::new()).await;
            *folder = None;
            mailbox.mark(uids, None).await
        }
        other => other,
    }
}

/// What one mail becomes.
enum Outcome {
    /// A ticket, with the files its record names.
    Ticket(crate::schema::IntakeRecord, Vec<mail::Kept>),
    /// An answer on a ticket (the submitter's message, or a note of a mail from someone else), with the files its
    /// command names.
    Answer(Command, &'static str, Vec<mail::Kept>),
    DeadLetter(DeadLetter),
    /// A new mail from a sender with as many open tickets as one may have: their message on the newest of them,
    /// with its files, and what to tell them by mail (none for a mail sent by a program).
    OverLimit(Command, Vec<mail::Kept>, Option<OverLimit>),
    Bounce(String),
    /// Recorded already (read again after a stop before its mark): nothing to publish.
    Recorded,
}

/// What a sender past the limit is told.
#[derive(Debug, Clone)]
struct OverLimit {
    to: String,
    subject: String,
    answering: Option<String>,
    open: Vec<TicketState>,
}

/// Publishes what each mail becomes, all at once, and returns the UIDs of the mails whose outcome the broker
/// acknowledged: every one, or an error (the batch is read again, to the same tickets and messages).
async fn take(
    settings: &Settings,
    producer: &Producer,
    fetched: &[Fetched],
    uid_validity: u32,
) -> anyhow::Result<(Vec<u32>, Vec<String>)> {
    let mailbox = settings.account.url.to_string();
    let reads: Vec<mail::Mail> = fetched.iter().map(|mail| mail::read(&mail.bytes)).collect();
    let known = known_all(settings, &reads).await?;
    let open = open_of_senders(settings, &reads).await?;
    let place = |uid| MailRef { mailbox: mailbox.clone(), uid_validity, uid, message_id: None };
    // A mail that answers another of this batch which opens a ticket waits for that ticket: taken now, it would
    // find none and open its own. It stays unmarked, and the next look, once the store has the ticket, takes it.
    let opening: HashMap<&str, String> = fetched
        .iter()
        .zip(&reads)
        .zip(&known)
        .filter(|((_, read), known)| **known == Known::Nothing && !read.bounce)
        .filter_map(|((mail, read), _)| {
            let id = read.message_id.as_deref()?;
            Some((id, crate::schema::ticket_id_for_interaction(&mail::interaction_id(read, &place(mail.uid)))))
        })
        .collect();
    let mut awaited = Vec::new();
    let mut now_taken = Vec::new();
    // The tickets this batch opens, per sender: a new mail of a sender at the limit only with tickets the store does
    // not have yet (this batch's, or published just before) waits for them, and then goes on the newest of them
    // (found by an attack: five mails at once were five tickets past a limit of two).
    let mut opened_here: HashMap<&str, Vec<String>> = HashMap::new();
    for ((mail, read), known) in fetched.iter().zip(&reads).zip(&known) {
        let waits_for = (*known == Known::Nothing)
            .then(|| read.answers.iter().find_map(|id| opening.get(id.as_str())))
            .flatten()
            .filter(|ticket| read.message_id.as_deref().and_then(|id| opening.get(id)) != Some(*ticket));
        if let Some(ticket) = waits_for {
            awaited.push(ticket.clone());
            continue;
        }
        let max = settings.open_tickets_max;
        if max > 0
            && *known == Known::Nothing
            && !read.bounce
            && let Some(from) = read.from.as_deref()
            && let Some((stored, pending)) = open.get(from)
            && (stored.len() as u64) < max
        {
            let here = opened_here.entry(from).or_default();
            if (stored.len() + pending.len() + here.len()) as u64 >= max {
                awaited.extend(pending.iter().chain(here.iter()).cloned());
                continue;
            }
            here.push(crate::schema::ticket_id_for_interaction(&mail::interaction_id(read, &place(mail.uid))));
        }
        now_taken.push((mail, read.clone(), known.clone()));
    }
    let now = chrono::Utc::now();
    let publishing = now_taken.into_iter().map(|(mail, read, known)| {
        let place = place(mail.uid);
        let limits = Limits {
            max_bytes: settings.max_bytes,
            attachment_max: settings.attachment_max,
            reopen_within: settings.reopen_within,
            open_tickets_max: settings.open_tickets_max,
        };
        let sender_open = read.from.as_ref().and_then(|from| open.get(from)).map(|(stored, _)| stored.clone());
        let sender = read.from.clone();
        let outcome = outcome(mail, read, known, place, limits, &sender_open.unwrap_or_default(), now);
        // A new ticket counts against its sender's limit until the store has it.
        let opens = match (&outcome, sender) {
            (Outcome::Ticket(record, _), Some(sender)) if settings.open_tickets_max > 0 => {
                record.ticket_id().map(|id| (sender, id))
            }
            _ => None,
        };
        async move {
            // The files first: no record names a file the topic lacks.
            if let Outcome::Ticket(_, files) | Outcome::Answer(_, _, files) | Outcome::OverLimit(_, files, _) = &outcome
            {
                for file in files {
                    crate::attachments::publish(producer, &settings.topics.files, &file.bytes)
                        .await
                        .with_context(|| format!("mail UID {}", mail.uid))?;
                }
            }
            let (kind, result) = match outcome {
                Outcome::Ticket(record, _) => {
                    ("ticket", intake::publish_record(producer, &settings.topics.intake, &record).await.map(drop))
                }
                Outcome::Answer(command, kind, _) => {
                    (kind, send_command(producer, &settings.topics.commands, settings.partitions, &command).await)
                }
                Outcome::DeadLetter(letter) => {
                    let payload = serde_json::to_vec(&letter).context("cannot encode a dead letter")?;
                    let published = kafka::publish(producer, &settings.topics.dead_letters, None, &payload).await;
                    ("dead_letter", published.map(drop).context("the broker did not acknowledge a dead letter"))
                }
                Outcome::OverLimit(command, _, notice) => {
                    let sent = send_command(producer, &settings.topics.commands, settings.partitions, &command).await;
                    if sent.is_ok()
                        && let (Some(answers), Some(notice)) = (settings.answers.clone(), notice)
                    {
                        // On its own: an SMTP server that takes its time (up to a minute) holds up no mail
                        // (found by an attack).
                        let max = settings.open_tickets_max;
                        tokio::spawn(async move { tell_over_limit(&answers, notice, max).await });
                    }
                    ("over_limit", sent)
                }
                Outcome::Bounce(text) => {
                    report_error(producer, &settings.topics.errors, NAME, text, serde_json::Map::new()).await;
                    ("bounce", Ok(()))
                }
                Outcome::Recorded => ("recorded", Ok(())),
            };
            result.with_context(|| format!("mail UID {}", mail.uid))?;
            if let Some((sender, id)) = opens {
                settings.opened.published(&sender, &id, true);
            }
            settings.metrics.mails.get_or_create(&OutcomeLabel { outcome: kind.to_owned() }).inc();
            anyhow::Ok(mail.uid)
        }
    });
    Ok((futures::future::try_join_all(publishing).await?, awaited))
}

/// Waits until the ticket store has every ticket of `tickets`, or [`STORE_PATIENCE`] passed (then the mails that
/// wait for them are taken as they are); `false` if shutdown came first.
async fn store_has(settings: &Settings, tickets: &[String], shutdown: &CancellationToken) -> bool {
    let Some(store) = settings.store.clone() else { return true };
    let deadline = tokio::time::Instant::now() + STORE_PATIENCE;
    while tokio::time::Instant::now() < deadline {
        let (store, wanted) = (store.clone(), tickets.to_vec());
        let all = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
            let conn = store.reader()?;
            Ok(wanted.iter().all(|id| query::ticket(&conn, id).ok().flatten().is_some()))
        })
        .await;
        if matches!(all, Ok(Ok(true))) {
            return true;
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    tracing::info!(service = NAME, "the answered tickets are not in the store after {STORE_PATIENCE:?}; going on");
    true
}

/// Tells a sender past the limit so, by an automatic mail within the limit on those per address; a mail that cannot
/// go is said in the log and not tried again (their message is on their ticket all the same).
async fn tell_over_limit(answers: &Answers, notice: OverLimit, max: u64) {
    let admitted = answers
        .automatic
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .admit(&notice.to, std::time::Instant::now());
    if !admitted {
        tracing::info!(
            "a mail past the limit of open tickets is not answered: its sender had {} automatic mails within {:?}",
            replies::AUTOMATIC_PER_WINDOW,
            replies::AUTOMATIC_WINDOW
        );
        return;
    }
    let mail =
        compose::over_limit(&answers.from, &notice.to, &notice.subject, notice.answering.as_deref(), &notice.open, max);
    match mail {
        Ok(mail) => match answers.outbox.send(mail).await {
            smtp::Sent::Accepted(_) => {}
            other => tracing::warn!("the answer to a mail past the limit of open tickets did not go: {other:?}"),
        },
        Err(error) => {
            tracing::warn!("the answer to a mail past the limit of open tickets cannot be written: {error:#}")
        }
    }
}

/// The open tickets of each sender of `reads` (newest first) in the store, and the ids of those opened here that
/// the store does not have yet, when a limit is set and the store is here.
async fn open_of_senders(settings: &Settings, reads: &[mail::Mail]) -> anyhow::Result<HashMap<String, SenderOpen>> {
    let Some(store) = settings.store.clone().filter(|_| settings.open_tickets_max > 0) else {
        return Ok(HashMap::new());
    };
    let limit = usize::try_from(settings.open_tickets_max).unwrap_or(usize::MAX);
    let senders: Vec<String> = reads.iter().filter_map(|read| read.from.clone()).collect();
    let opened = settings.opened.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<HashMap<String, SenderOpen>> {
        let conn = store.reader()?;
        let mut open = HashMap::new();
        for sender in senders {
            if let std::collections::hash_map::Entry::Vacant(entry) = open.entry(sender) {
                let theirs = query::open_of_contact(&conn, entry.key(), limit)?;
                let pending = opened
                    .with(&conn, entry.key(), |pending| pending.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>())?;
                entry.insert((theirs, pending));
            }
        }
        Ok(open)
    })
    .await
    .context("a read of the ticket store ended abnormally")?
}

/// A sender's open tickets in the store (newest first), and the ids of those opened here it does not have yet.
type SenderOpen = (Vec<TicketState>, Vec<String>);

/// What the ticket store knows of a mail.
#[derive(Debug, Clone, PartialEq)]
enum Known {
    Nothing,
    /// Its message is on a ticket already, from the same sender.
    Recorded,
    /// It answers this ticket (the newest of those that follow the one it names).
    Answers(Box<TicketState>),
}

/// What the ticket store knows of each mail; nothing of any without a store.
async fn known_all(settings: &Settings, reads: &[mail::Mail]) -> anyhow::Result<Vec<Known>> {
    let Some(store) = settings.store.clone() else { return Ok(vec![Known::Nothing; reads.len()]) };
    let reads = reads.to_vec();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Known>> {
        let conn = store.reader()?;
        reads.iter().map(|read| known(&conn, read).map_err(Into::into)).collect()
    })
    .await
    .context("a read of the ticket store ended abnormally")?
}

/// Whether `mail` was recorded already, or which ticket it answers: by the mails it names (franz's replies, or the
/// customer's earlier mails) or else by the token in its subject.
fn known(conn: &rusqlite::Connection, mail: &mail::Mail) -> rusqlite::Result<Known> {
    let ticket = |id: &str| query::ticket(conn, id);
    // franz's own mail (a reply to a ticket whose contact is franz's own address, or one a customer's address sent
    // back) is never anyone's answer.
    if mail.message_id.as_deref().is_some_and(|id| compose::event_of(id).is_some()) {
        return Ok(Known::Recorded);
    }
    // A bounce is about the mail it returns, and only a mail franz sent is on a ticket.
    if mail.bounce {
        let about = mail.bounced.as_deref().map(|id| query::sent_about(conn, id)).transpose()?.flatten();
        return Ok(match about.map(|about| ticket(&about)).transpose()?.flatten() {
            Some(found) => Known::Answers(Box::new(found)),
            None => Known::Nothing,
        });
    }
    if let Some(id) = &mail.message_id
        && let Some(recorded) = query::written(conn, id)?
        && ticket(&recorded)?.is_some_and(|t| t.contact_id.is_some() && t.contact_id == mail.from)
    {
        return Ok(Known::Recorded);
    }
    // Only mail ids: a bare number is a Discord message's.
    for id in mail.answers.iter().filter(|id| id.contains('@')) {
        let about = match query::sent_about(conn, id)? {
            Some(about) => Some(about),
            None => query::written(conn, id)?,
        };
        if let Some(found) = about.map(|about| ticket(&about)).transpose()?.flatten() {
            return Ok(Known::Answers(Box::new(query::newest_follower(conn, &found.id)?.unwrap_or(found))));
        }
    }
    if let Some(token) = compose::token_in(&mail.subject)
        && let Some(found) = query::ticket_by_token(conn, &token)?
    {
        return Ok(Known::Answers(Box::new(query::newest_follower(conn, &found.id)?.unwrap_or(found))));
    }
    Ok(Known::Nothing)
}

/// The bounds a mail is taken within.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// The largest mail that becomes a ticket.
    max_bytes: usize,
    /// The largest attachment kept.
    attachment_max: usize,
    /// How long after its close an answer reopens a ticket.
    reopen_within: Duration,
    /// The most open tickets one sender may have (0: no limit).
    open_tickets_max: u64,
}

/// What `fetched` becomes: a ticket, an answer on one, a dead letter that says why not, or a bounce to report.
fn outcome(
    fetched: &Fetched,
    read: mail::Mail,
    known: Known,
    mut place: MailRef,
    limits: Limits,
    open: &[TicketState],
    now: chrono::DateTime<chrono::Utc>,
) -> Outcome {
    let Limits { max_bytes, attachment_max, reopen_within, open_tickets_max } = limits;
    // Bounded like every field of a record: a mail's Message-ID can be as long as its header.
    place.message_id = read.message_id.as_deref().map(|id| id.chars().take(MAX_FIELD_CHARS).collect());
    let refuse = |error: String| {
        Outcome::DeadLetter(DeadLetter::new(
            ErrorType::ValidationError,
            error,
            &fetched.bytes,
            place.clone(),
            now_rfc3339(),
        ))
    };
    if fetched.header_only {
        return refuse(format!(
            "the mail is {} bytes, over the limit of {} (mail.max_mb); its header is kept here, the mail in the \
             mailbox",
            fetched.size, max_bytes
        ));
    }
    if read.bounce
        && let Known::Answers(ticket) = &known
        && let Some(event) = read.bounced.as_deref().and_then(compose::event_of)
    {
        let status = read.bounce_status.as_deref().unwrap_or("no status given");
        let detail = format!("bounced: the mail server returned it ({status})");
        let command = Command {
            command_id: format!("bounce:{}", mail::interaction_id(&read, &place)),
            ticket_id: ticket.id.clone(),
            actor: Actor { source: ActorSource::Franz, name: NAME.into(), id: None, staff: None },
            action: Action::RecordDelivery(crate::schema::lifecycle::Delivery {
                of: event.to_owned(),
                via: Via::Email,
                delivered: false,
                detail: Some(detail.chars().take(crate::lifecycle::REASON_MAX).collect()),
                message_id: None,
                channel_id: None,
            }),
        };
        return Outcome::Answer(command, "bounce", Vec::new());
    }
    if read.bounce {
        return Outcome::Bounce(format!(
            "a delivery status notification arrived in {} (UID {}, from {}, subject {:?}); franz sent no mail it \
             could be about",
            place.mailbox,
            place.uid,
            read.from.as_deref().unwrap_or("nobody").chars().take(MAX_FIELD_CHARS).collect::<String>(),
            read.subject.chars().take(MAX_FIELD_CHARS).collect::<String>()
        ));
    }
    let (mut submission, files) = match mail::submission(&read, &place, attachment_max) {
        Ok(submission) => submission,
        Err(mail::Refusal(why)) => return refuse(why),
    };
    let interaction = submission.interaction_id.clone().unwrap_or_default();
    let sender = submission.username.clone();
    let actor = Actor {
        source: ActorSource::Email,
        name: submission.display_name.clone().unwrap_or_else(|| sender.clone()).chars().take(NAME_MAX).collect(),
        id: Some(sender.clone()),
        staff: None,
    };
    match known {
        Known::Recorded => return Outcome::Recorded,
        Known::Nothing => {}
        Known::Answers(ticket) => {
            if crate::lifecycle::submitter_id(&ticket) != Some(sender.as_str()) {
                // An internal note carries no files: a stranger's attachments are listed, not kept.
                let (text, _) = mail::answer(&read, 0);
                let intro = format!("A mail from {sender}, who is not this ticket's contact:\n\n");
                let room = crate::lifecycle::COMMENT_MAX.saturating_sub(intro.chars().count());
                let note = format!("{intro}{}", text.chars().take(room).collect::<String>());
                let action = Action::Comment { body: note, internal: true, via: None };
                let command = Command { command_id: interaction, ticket_id: ticket.id.clone(), actor, action };
                return Outcome::Answer(command, "note", Vec::new());
            }
            if !closed_too_long(&ticket, reopen_within, now) {
                let (text, files) = mail::answer(&read, attachment_max);
                let command = written(interaction, &ticket.id, actor, text, &files, &submission);
                return Outcome::Answer(command, "answer", files);
            }
            // Closed for longer than the reopen window: a new ticket that follows it.
            submission.follows = Some(ticket.id.clone());
        }
    }
    // A new ticket past the limit of open ones: the message goes on the newest of them instead, and the sender is
    // told (unless a program sent it: no automatic answer to an automatic mail).
    if open_tickets_max > 0
        && open.len() as u64 >= open_tickets_max
        && let Some(newest) = open.first()
    {
        let (mut text, files) = mail::answer(&read, attachment_max);
        // A new mail may say what it is about in its subject alone: without text, its message is its subject, as
        // its ticket's would have been, not "(no text)" (found by an attack).
        if read.text.trim().is_empty() {
            text = submission.message.clone();
        }
        let command = written(interaction, &newest.id, actor, text, &files, &submission);
        let notice = read.automatic.is_none().then(|| OverLimit {
            to: sender,
            subject: read.subject.clone(),
            answering: read.message_id.clone(),
            open: open.to_vec(),
        });
        return Outcome::OverLimit(command, files, notice);
    }
    match intake::record(submission) {
        Ok(record) => Outcome::Ticket(record, files),
        Err(error) => refuse(format!("{error:#}")),
    }
}

/// The mail's message `text` (with `files`) on ticket `ticket` as the submitter's `write`, by `actor`, as command
/// `interaction`.
fn written(
    interaction: String,
    ticket: &str,
    actor: Actor,
    text: String,
    files: &[mail::Kept],
    submission: &intake::Submission,
) -> Command {
    let action = Action::Write {
        body: text,
        attachments: mail::described(files),
        via: Via::Email,
        message_id: submission.message_id.clone(),
    };
    Command { command_id: interaction, ticket_id: ticket.to_owned(), actor, action }
}

/// Whether `ticket` has been closed for longer than `window`: an answer then opens a new ticket.
fn closed_too_long(ticket: &TicketState, window: Duration, now: chrono::DateTime<chrono::Utc>) -> bool {
    ticket.status == Status::Closed
        && ticket
            .closed_at
            .as_deref()
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            .is_some_and(|closed| now.signed_duration_since(closed).to_std().is_ok_and(|age| age > window))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::lifecycle::Change;

    fn place() -> MailRef {
        MailRef { mailbox: "imap://127.0.0.1:143/INBOX".into(), uid_validity: 1, uid: 9, message_id: None }
    }

    fn take_one(fetched: &Fetched, known: Known, max_bytes: usize) -> Outcome {
        take_with_open(fetched, known, max_bytes, 0, &[])
    }

    fn take_with_open(fetched: &Fetched, known: Known, max_bytes: usize, max: u64, open: &[TicketState]) -> Outcome {
        let window = Duration::from_secs(7 * 86400);
        let limits = Limits { max_bytes, attachment_max: 5 << 20, reopen_within: window, open_tickets_max: max };
        outcome(fetched, mail::read(&fetched.bytes), known, place(), limits, open, chrono::Utc::now())
    }

    #[test]
    fn a_new_mail_past_the_limit_of_open_tickets_goes_on_the_newest_and_its_sender_is_told_unless_a_program() {
        let mail = "From: Ann <ann@example.com>\r\nSubject: Another thing\r\nMessage-ID: <third@example.com>\r\n\r\nThe fax too.\r\n";
        let open = [
            TicketState { id: "newest".into(), ..ticket(Status::Open, 0) },
            TicketState { id: "older".into(), ..ticket(Status::Waiting, 0) },
        ];
        let Outcome::OverLimit(command, _, Some(notice)) =
            take_with_open(&fetched(mail, false), Known::Nothing, 1 << 20, 2, &open)
        else {
            panic!("not over the limit")
        };
        assert_eq!(command.ticket_id, "newest");
        assert_eq!(command.actor.id.as_deref(), Some("ann@example.com"));
        assert!(matches!(&command.action, Action::Write { body, via: Via::Email, .. } if body == "The fax too."));
        assert_eq!((notice.to.as_str(), notice.answering.as_deref()), ("ann@example.com", Some("third@example.com")));
        assert_eq!(notice.open.len(), 2);
        assert!(matches!(
            take_with_open(&fetched(mail, false), Known::Nothing, 1 << 20, 3, &open),
            Outcome::Ticket(..)
        ));
        assert!(matches!(
            take_with_open(&fetched(mail, false), Known::Nothing, 1 << 20, 0, &open),
            Outcome::Ticket(..)
        ));
        let automatic = format!("Auto-Submitted: auto-replied\r\n{mail}");
        let Outcome::OverLimit(_, _, notice) =
            take_with_open(&fetched(&automatic, false), Known::Nothing, 1 << 20, 2, &open)
        else {
            panic!("not over the limit")
        };
        assert!(notice.is_none(), "no automatic answer to an automatic mail");
        let answer = compose::over_limit(
            &"Support <support@example.com>".parse().unwrap(),
            "ann@example.com",
            "Another thing",
            Some("third@example.com"),
            &open,
            2,
        )
        .unwrap();
        let answer = String::from_utf8(answer.formatted()).unwrap();
        assert!(
            answer.contains("Auto-Submitted: auto-replied") && answer.contains("In-Reply-To: <third@example.com>"),
            "{answer}"
        );
        assert!(answer.contains(&format!("[franz #{}]", compose::token("older"))), "{answer}");
    }

    /// Found by an attack (#28), failing first: a new mail past the limit went on the newest open ticket with its
    /// text only, without its subject, the way an answer does. A mail that says what it is about only in its subject
    /// (an empty body, "The VPN is down again") became the message "(no text)": what it said was lost, while its
    /// sender was told it was added to their ticket.
    #[test]
    fn a_new_mail_past_the_limit_with_only_a_subject_goes_on_the_ticket_with_its_subject() {
        let mail = "From: ann@example.com\r\nSubject: The VPN is down again\r\nMessage-ID: <vpn@example.com>\r\n\r\n";
        let open = [TicketState { id: "newest".into(), ..ticket(Status::Open, 0) }];
        let Outcome::OverLimit(command, files, _) =
            take_with_open(&fetched(mail, false), Known::Nothing, 1 << 20, 1, &open)
        else {
            panic!("not over the limit")
        };
        let Action::Write { body, attachments, .. } = &command.action else { panic!("{command:?}") };
        assert!(attachments.is_empty() && files.is_empty());
        assert!(body.contains("The VPN is down again"), "a message akte takes, with what the mail says: {body:?}");
    }

    fn ticket(status: Status, closed_days_ago: i64) -> TicketState {
        TicketState {
            id: "3f2a9c1e-7b4d-5e6f-8a9b-0c1d2e3f4a5b".into(),
            contact: "ann@example.com".into(),
            contact_id: Some("ann@example.com".into()),
            origin: "Email".into(),
            status,
            closed_at: (status == Status::Closed)
                .then(|| (chrono::Utc::now() - chrono::Duration::days(closed_days_ago)).to_rfc3339()),
            ..TicketState::default()
        }
    }

    const ANSWER: &str = "From: Ann <ann@example.com>\r\nSubject: Re: Locked out [franz #3f2a9c1e7b4d]\r\n\
                          Message-ID: <answer@example.com>\r\n\r\nStill locked.\r\n\r\nOn Mon, Support wrote:\r\n> old\r\n";

    #[test]
    fn an_answer_of_the_contact_is_their_message_on_the_ticket_without_the_quoted_history() {
        let Outcome::Answer(command, "answer", _) =
            take_one(&fetched(ANSWER, false), Known::Answers(Box::new(ticket(Status::Waiting, 0))), 1 << 20)
        else {
            panic!("not an answer")
        };
        assert_eq!(command.ticket_id, "3f2a9c1e-7b4d-5e6f-8a9b-0c1d2e3f4a5b");
        assert_eq!(command.actor.id.as_deref(), Some("ann@example.com"));
        assert_eq!(command.actor.source, ActorSource::Email);
        let Action::Write { body, via: Via::Email, message_id, .. } = command.action else { panic!("not a message") };
        assert_eq!(body, "Still locked.");
        assert_eq!(message_id.as_deref(), Some("answer@example.com"));
    }

    #[test]
    fn an_answer_to_a_ticket_closed_within_the_window_reopens_it_and_later_opens_a_follower() {
        let recent = take_one(&fetched(ANSWER, false), Known::Answers(Box::new(ticket(Status::Closed, 2))), 1 << 20);
        assert!(matches!(recent, Outcome::Answer(_, "answer", _)));
        let Outcome::Ticket(record, _) =
            take_one(&fetched(ANSWER, false), Known::Answers(Box::new(ticket(Status::Closed, 30))), 1 << 20)
        else {
            panic!("not a new ticket")
        };
        assert_eq!(record.follows.as_deref(), Some("3f2a9c1e-7b4d-5e6f-8a9b-0c1d2e3f4a5b"));
    }

    #[test]
    fn a_mail_from_someone_else_on_a_ticket_is_a_note_that_says_who_wrote_it() {
        let other = ANSWER.replace("ann@example.com", "mallory@example.com");
        let Outcome::Answer(command, "note", _) =
            take_one(&fetched(&other, false), Known::Answers(Box::new(ticket(Status::Open, 0))), 1 << 20)
        else {
            panic!("not a note")
        };
        let Action::Comment { body, internal: true, .. } = command.action else { panic!("not an internal note") };
        assert!(body.starts_with("A mail from mallory@example.com, who is not this ticket's contact"), "{body}");
        assert!(matches!(take_one(&fetched(ANSWER, false), Known::Recorded, 1 << 20), Outcome::Recorded));
    }

    fn fetched(bytes: &str, header_only: bool) -> Fetched {
        Fetched { uid: 9, size: 20_000_000, bytes: bytes.as_bytes().to_vec(), header_only }
    }

    #[test]
    fn a_mail_over_the_limit_is_a_dead_letter_with_its_header_and_its_place() {
        let header = "From: a@example.com\r\nSubject: huge\r\nMessage-ID: <big@example.com>\r\n\r\n";
        let Outcome::DeadLetter(letter) = take_one(&fetched(header, true), Known::Nothing, 10 << 20) else {
            panic!("not a dead letter")
        };
        assert!(letter.error.contains("20000000 bytes") && letter.error.contains("mail.max_mb"), "{}", letter.error);
        assert_eq!(letter.raw_value.as_deref(), Some(header));
        let crate::schema::LetterSource::Mail(source) = letter.source else { panic!("not a mail source") };
        assert_eq!(source.uid, 9);
        assert_eq!(source.message_id.as_deref(), Some("big@example.com"));
    }

    #[test]
    fn a_mail_becomes_an_email_intake_record_and_one_without_sender_a_dead_letter() {
        let Outcome::Ticket(record, _) =
            take_one(&fetched("From: a@example.com\r\nSubject: s\r\n\r\nt", false), Known::Nothing, 1)
        else {
            panic!("not a ticket")
        };
        assert_eq!(record.origin.as_deref(), Some("Email"));
        assert_eq!(record.key(), "a@example.com");
        let Outcome::DeadLetter(letter) = take_one(&fetched("Subject: s\r\n\r\nt", false), Known::Nothing, 1) else {
            panic!("not a dead letter")
        };
        assert!(letter.error.contains("no sender"), "{}", letter.error);
    }

    #[test]
    fn a_folder_name_with_quotes_or_control_characters_is_refused() {
        assert!(folder_name("Tickets/Taken").is_ok());
        assert!(folder_name("a\"b").is_err());
        assert!(folder_name("a\r\nb").is_err());
        assert!(folder_name("").is_err());
    }

    // A second attack on the email conversation (replies and answers).

    /// The pipeline a mail's ticket takes after briefkasten: the intake record as aufbereitung normalizes it, and the
    /// `create` command akte decides on. The event, or the reason akte refuses it.
    fn created_from(raw: &str) -> crate::schema::lifecycle::Event {
        let Outcome::Ticket(record, _) = take_one(&fetched(raw, false), Known::Nothing, 1 << 20) else {
            panic!("not a ticket: {raw}")
        };
        let source = crate::schema::SourceRef { topic: "discordMSG".into(), partition: 0, offset: 0 };
        let ticket =
            crate::services::aufbereitung::normalize::normalize(&serde_json::to_vec(&record).unwrap(), &source)
                .expect("aufbereitung takes it");
        let command = Command::create(ticket);
        crate::lifecycle::decide(None, &command, &now_rfc3339(), &crate::lifecycle::Policy::default())
    }

    /// Message-IDs as the big providers make them: Gmail's (`CA…@mail.gmail.com`, 60 to 70 characters) and Microsoft
    /// 365 / Outlook.com's (around 80).
    const GMAIL_ID: &str = "CAKx7uVi2xJvRC7E1u9Kp0LW9U8vK=Yk9Ug7hFvXyU3+0Dq8A0Q@mail.gmail.com";
    const OUTLOOK_ID: &str = "DM6PR11MB4259B9E1A8F3C1C0E2A4C3E1C9A49F@DM6PR11MB4259.namprd11.prod.outlook.com";

    /// Found by an attack (#34, replies): a mail whose Message-ID is longer than 64 characters (every Outlook.com and
    /// Microsoft 365 mail, most Gmail ones) keeps it on its intake record (up to 200), and akte refuses the `create`
    /// ("a message id must have 1 to 64 characters"): no ticket, while the mail is marked as taken.
    #[test]
    fn a_mail_with_a_gmail_or_outlook_message_id_becomes_a_ticket() {
        for id in [GMAIL_ID, OUTLOOK_ID] {
            let raw =
                format!("From: Ann <ann@example.com>\r\nSubject: Locked out\r\nMessage-ID: <{id}>\r\n\r\nhelp\r\n");
            let event = created_from(&raw);
            assert!(
                !matches!(event.change, Change::Rejected { .. }),
                "a mail with Message-ID <{id}> ({} characters) opens no ticket: {:?}",
                id.len(),
                event.change
            );
        }
    }

    /// Found by an attack (#34, replies): the customer's answer from Gmail or Outlook carries its Message-ID on the
    /// `write`, which akte refuses over 64 characters: the answer is lost (only a `rejected` event), the mail marked
    /// as taken.
    #[test]
    fn an_answer_from_gmail_or_outlook_lands_on_the_ticket() {
        for id in [GMAIL_ID, OUTLOOK_ID] {
            let raw = ANSWER.replace("answer@example.com", id);
            let change = answer_decided(&raw, Status::Waiting, "answer");
            assert!(
                !matches!(change, Change::Rejected { .. }),
                "an answer with Message-ID <{id}> is refused: {change:?}"
            );
        }
    }

    /// Found by an attack (#34, replies): a customer address of 65 to 100 characters is a sender franz accepts (the
    /// intake allows 100), but akte refuses a contact id over 64: no ticket.
    #[test]
    fn a_long_but_accepted_sender_address_becomes_a_ticket() {
        let from = format!("{}@customer-service.example-company.com", "firstname.lastname.department");
        assert!(from.len() > 64 && from.len() <= 100, "{}", from.len());
        let raw = format!("From: {from}\r\nSubject: hi\r\nMessage-ID: <short@example.com>\r\n\r\nhelp\r\n");
        let event = created_from(&raw);
        assert!(!matches!(event.change, Change::Rejected { .. }), "From: {from} opens no ticket: {:?}", event.change);
    }

    /// Found by an attack (#34, replies): a stranger's mail to a ticket becomes a note of "A mail from …, who is not
    /// this ticket's contact:" and the text, which may have the 4,000 characters of a message: the note is over
    /// a comment's 4,000, akte refuses it, and the mail is lost (marked as taken).
    #[test]
    fn a_strangers_long_mail_on_a_ticket_is_a_note_akte_takes() {
        let long = format!(
            "From: mallory@example.com\r\nSubject: Re: Locked out [franz #3f2a9c1e7b4d]\r\nMessage-ID: <m@example.com>\r\n\r\n{}\r\n",
            "word ".repeat(1500)
        );
        let change = answer_decided(&long, Status::Open, "note");
        assert!(!matches!(change, Change::Rejected { .. }), "the stranger's note is refused: {change:?}");
    }

    /// What akte decides on the answer that mail `raw` becomes to a ticket in `status`; fails unless the mail is an
    /// answer of `kind` (`answer` or `note`).
    fn answer_decided(raw: &str, status: Status, kind: &str) -> Change {
        let open = ticket(status, 0);
        let Outcome::Answer(command, taken, _) =
            take_one(&fetched(raw, false), Known::Answers(Box::new(open.clone())), 1 << 20)
        else {
            panic!("not an answer or a note")
        };
        assert_eq!(taken, kind);
        crate::lifecycle::decide(Some(&open), &command, &now_rfc3339(), &Default::default()).change
    }

    /// Found by an attack (#34, replies): an email ticket opened before this version has no `contact_id` (mails
    /// became tickets without one until replies by mail came). A public reply to it is mailed to its contact (the
    /// address), and the customer's answer to that reply is then taken for a stranger's: an internal note "A mail
    /// from ann@example.com, who is not this ticket's contact", never their message (and akte would refuse their
    /// `write` too, as it compares the actor with `contact_id`).
    #[test]
    fn the_customer_of_an_email_ticket_from_before_contact_ids_is_no_stranger() {
        let older = TicketState { contact_id: None, ..ticket(Status::Waiting, 0) };
        let outcome = take_one(&fetched(ANSWER, false), Known::Answers(Box::new(older.clone())), 1 << 20);
        let Outcome::Answer(command, kind, _) = outcome else { panic!("not an answer") };
        let event = crate::lifecycle::decide(Some(&older), &command, &now_rfc3339(), &Default::default());
        assert!(
            kind == "answer" && matches!(event.change, Change::SubmitterWrote { .. }),
            "the ticket's own customer's answer became a {kind}: {:?}",
            event.change
        );
    }

    /// A mail from `head` with its text and one attachment: `disposition` its `Content-Disposition` parameters,
    /// `kind` its type.
    fn with_attachment(head: &str, disposition: &str, kind: &str) -> String {
        format!(
            "{head}\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\n\
             Still locked.\r\n--m\r\nContent-Type: {kind}\r\nContent-Disposition: attachment; {disposition}\r\n\r\n\
             x\r\n--m--\r\n"
        )
    }

    /// Attachments whose name or type the mail's reading lets through and akte refuses: a soft hyphen (U+00AD, in
    /// names copied from hyphenated text), the Mongolian vowel separator (U+180E), the line and paragraph separators
    /// (U+2028, U+2029), and a content type that is not ASCII.
    const ODD_ATTACHMENTS: [(&str, &str); 6] = [
        ("filename=\"Rech\u{ad}nung.pdf\"", "application/pdf"),
        ("filename*=UTF-8''Rech%C2%ADnung.pdf", "application/pdf"),
        ("filename=\"a\u{180e}b.pdf\"", "application/pdf"),
        ("filename=\"a\u{2028}b.pdf\"", "application/pdf"),
        ("filename=\"a\u{2029}b.pdf\"", "application/pdf"),
        ("filename=\"invoice.pdf\"", "applicati\u{f3}n/pdf"),
    ];

    /// Found by an attack (#34, attachments), failing first: `mail::read` drops control characters and some invisible
    /// ones from an attachment's name (`cleaned`), but an event's rule for a name (`lifecycle::hidden`) refuses more
    /// (U+00AD, U+180E, U+2028, U+2029), and the content type is kept as the mail gives it, non-ASCII too, where an
    /// event takes printable ASCII only. briefkasten publishes the intake record, aufbereitung rejects it whole
    /// ("an attachment's name has 1 to 256 characters, no control or invisible ones"): the mail is marked as taken,
    /// and there is no ticket, only a dead letter.
    #[test]
    fn a_mail_whose_attachment_has_an_odd_name_or_type_still_opens_a_ticket_with_the_file() {
        let head = "From: Ann <ann@example.com>\r\nSubject: Locked out\r\nMessage-ID: <files@example.com>";
        let mut lost = Vec::new();
        for (disposition, kind) in ODD_ATTACHMENTS {
            let raw = with_attachment(head, disposition, kind);
            let Outcome::Ticket(record, files) = take_one(&fetched(&raw, false), Known::Nothing, 1 << 20) else {
                panic!("not a ticket: {raw}")
            };
            assert_eq!(files.len(), 1, "the file is kept: {disposition} {kind}");
            let source = crate::schema::SourceRef { topic: "discordMSG".into(), partition: 0, offset: 0 };
            match crate::services::aufbereitung::normalize::normalize(&serde_json::to_vec(&record).unwrap(), &source) {
                Err(rejection) => lost.push(format!("{disposition} ({kind}): aufbereitung: {rejection:?}")),
                Ok(ticket) => {
                    let event = crate::lifecycle::decide(
                        None,
                        &Command::create(ticket),
                        &now_rfc3339(),
                        &crate::lifecycle::Policy::default(),
                    );
                    match event.change {
                        Change::Created { attachments, .. } if attachments.len() == 1 => {}
                        other => lost.push(format!("{disposition} ({kind}): akte: {other:?}")),
                    }
                }
            }
        }
        assert!(lost.is_empty(), "mails that open no ticket with their file: {lost:#?}");
    }

    /// Found by an attack (#34, attachments), failing first: the same attachments on a customer's answer: akte refuses
    /// the `write` (a `rejected` event), and the answer is lost with its files, the mail marked as taken.
    #[test]
    fn an_answer_whose_attachment_has_an_odd_name_or_type_lands_on_the_ticket_with_the_file() {
        let head = "From: Ann <ann@example.com>\r\nSubject: Re: Locked out [franz #3f2a9c1e7b4d]\r\n\
                    Message-ID: <answer@example.com>";
        let mut lost = Vec::new();
        for (disposition, kind) in ODD_ATTACHMENTS {
            match answer_decided(&with_attachment(head, disposition, kind), Status::Waiting, "answer") {
                Change::SubmitterWrote { attachments, .. } if attachments.len() == 1 => {}
                other => lost.push(format!("{disposition} ({kind}): {other:?}")),
            }
        }
        assert!(lost.is_empty(), "answers lost: {lost:#?}");
    }

    /// Found by an attack (#34, replies; performance): the token lookup is `id LIKE 'xxxxxxxx-xxxx%'`, and SQLite's
    /// `LIKE` is case-insensitive, so the index on `id` (binary) cannot serve it: every mail found by its token alone
    /// (a client that drops In-Reply-To and References, a stranger quoting the subject) reads the whole tickets
    /// table, bodies and all (2 GB for the bench's million tickets). Counted here in SQLite's steps against a lookup
    /// by id, on 20,000 tickets.
    #[test]
    fn a_token_is_looked_up_by_the_index_not_by_reading_every_ticket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store/tickets.sqlite");
        let (store, _writer) = crate::store::open(&path, &crate::store::Identity::named("events")).unwrap();
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 19999)
             INSERT INTO tickets (id, version, status, priority, labels, contact, origin, body, submitted, created_at,
                                  updated_at, comments, answered)
             SELECT printf('%08x-7b4d-5e6f-8a9b-0c1d2e3f4a5b', i), 1, 'open', 'normal', '[]', 'a@example.com', 'Email',
                    'body', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 0, 0 FROM n;",
        )
        .unwrap();
        let conn = store.reader().unwrap();
        let steps = |lookup: &dyn Fn(&rusqlite::Connection)| {
            let counted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let counter = counted.clone();
            conn.progress_handler(
                10,
                Some(move || {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    false
                }),
            )
            .unwrap();
            lookup(&conn);
            conn.progress_handler(10, None::<fn() -> bool>).unwrap();
            counted.load(std::sync::atomic::Ordering::Relaxed)
        };
        let by_id = steps(&|conn| {
            query::ticket(conn, "00004e1f-7b4d-5e6f-8a9b-0c1d2e3f4a5b").unwrap().unwrap();
        });
        let by_token = steps(&|conn| {
            query::ticket_by_token(conn, "00004e1f7b4d").unwrap().unwrap();
        });
        assert!(by_token <= by_id * 10 + 10, "by token {by_token}0 steps, by id {by_id}0");
    }

    /// Found by an attack (#34), failing first: a dead letter carries the mail's Message-ID unbounded (`MailRef::message_id`), so a mail without a
    /// sender and with a Message-ID of 2 MB makes a dead letter over the 1 MB a Kafka record may be: its publish
    /// fails, the whole batch with it, and the batch is read again for ever (tests/mail.rs shows it end to end).
    #[test]
    fn a_dead_letter_stays_a_publishable_record_whatever_the_message_id() {
        let header = format!("Subject: no sender\r\nMessage-ID: <{}@example.com>\r\n\r\n", "x".repeat(2_000_000));
        let Outcome::DeadLetter(letter) = take_one(&fetched(&header, false), Known::Nothing, 10 << 20) else {
            panic!("not a dead letter")
        };
        let size = serde_json::to_vec(&letter).unwrap().len();
        assert!(size < 1_000_000, "the dead letter is {size} bytes");
    }
}
