//! Keeps the cards in step with `ticket-events`: the first event of a ticket posts its card, every later one edits
//! it, whatever the source of the change (web, CLI, Discord); and tells each ticket's submitter, by direct message,
//! of a claim, a public reply or a close (`notify`). The two are separate followers ([`Duty`]), each in its own
//! consumer group, so a card that cannot be posted never holds up a submitter's message, and the other way round.
//!
//! At-least-once with one card per ticket, however many franz processes share the group `kummerkasten-cards`:
//! which message is which ticket's card is the card map (`cards`), read from the cards topic that every process
//! shares. The follower reads that topic to its end before it joins the group (refusing a topic that holds records
//! and no card, and importing the card file of an earlier franz once) and again before it draws each batch, so a
//! card another process posted before a rebalance is known. A card it posts is known to it as soon as Discord
//! returns the message, and recorded on the topic; a record the cluster refuses is retried alone, never the post,
//! until it is acknowledged, and only then are the batch's offsets stored. So an offset is stored only after Discord
//! accepted the post or edit it led to (or refused it for good) and the post is recorded. A redelivered event finds
//! its card and edits it (or, if the card shows that version already, does nothing); a crash between Discord's
//! answer and the record is covered by the post's `enforce_nonce`, which makes Discord return the first message
//! instead of posting a second, within the few minutes Discord remembers a nonce. Two processes can draw a ticket at
//! once only while a partition moves (the old owner finishing its batch); the nonce covers that too. A follower that
//! fails (a fatal consumer error, a topic that is no card map, a panic) ends; the bot watches it and stops with it.
//! Events are taken in small batches and each ticket in a batch is drawn once, in its newest state, so a busy ticket
//! costs one edit per batch, not one per change, and a rate-limited channel coalesces even more. Cards are drawn
//! from the ticket store after it has applied the batch; this module never decides anything about a ticket.
//!
//! What Discord refuses for good (a 4xx other than 429: a card it finds invalid, a channel the bot may not post in)
//! is that ticket's problem, not the team's: it is logged, reported as the bot's last problem, published on the
//! errors topic (so the desk's problems page and absturz show it) and counted, and the follower moves on; the
//! ticket's next change tries again. Only network trouble, rate limits, server errors and a card map that cannot be
//! read or written for now are retried, with backoff; no id is built with serenity's panicking `new`.
//!
//! Direct messages follow in event order, with the same at-least-once rule and a nonce from the event id. A
//! submitter who accepts no direct messages from the bot (403, code 50007) is skipped with one log line and not
//! asked again for an hour, so a busy ticket does not become a storm of refused requests; other permanent refusals
//! are skipped as above. Events older than an hour are not told: a follower starting on a long history must not
//! message people about the past.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use poise::serenity_prelude as serenity;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::Message as _;
use tokio_util::sync::CancellationToken;

use super::cards::{Card, Cards, Imported};
use super::notify::{self, Notice, Sent, What};
use super::{Settings, card};
use crate::kafka::tickets::send_command;
use crate::kafka::{CommitOnRevoke, commit_stored, consumer_error_is_fatal, group_consumer, report_error};
use crate::lifecycle::TicketState;
use crate::metrics::{REFUSED_CARD, REFUSED_DIRECT_MESSAGE, REFUSED_THREAD, RefusedLabel};
use crate::people::StaffChannel;
use crate::schema::lifecycle::{Change, Command, Event, Via};
use crate::services::kummerkasten::threads::{self, Opened, Threads};
use crate::services::kummerkasten::{NAME, connect};
use crate::store::query;

/// The consumer group that follows `ticket-events` for the cards.
pub const CARDS_GROUP: &str = "kummerkasten-cards";
/// The consumer group that follows `ticket-events` for the submitters' direct messages.
pub const NOTICES_GROUP: &str = "kummerkasten-notices";

/// What a follower does with the events it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    /// Keeps a card per ticket in the staff channel (or in its team's own, when that team has one).
    Cards(StaffChannel),
    /// Tells submitters of claims, public replies and closes.
    Notices,
}

impl Duty {
    /// The consumer group of this duty: each has its own offsets, so neither waits for the other.
    pub fn group(self) -> &'static str {
        match self {
            Duty::Cards(_) => CARDS_GROUP,
            Duty::Notices => NOTICES_GROUP,
        }
    }
}

/// The largest transcript attached to a direct message: Discord takes 10 MiB of files from a bot.
const TRANSCRIPT_MAX: usize = 10 << 20;
/// How long a batch collects events after its first one: the edits of a busy card coalesce within it.
const COALESCE: Duration = Duration::from_millis(300);
/// The most events in one batch.
const BATCH_MAX: usize = 500;
/// How long to wait for the ticket store to apply a batch before saying so in the log (and waiting on).
const STORE_PATIENCE: Duration = Duration::from_secs(30);
/// The longest pause between two attempts at a card Discord refused or could not be reached for.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How old an event may be and still be told to its submitter.
const NOTIFY_WITHIN: Duration = Duration::from_secs(3600);
/// How long a submitter who refused direct messages is not asked again.
const REFUSAL_MEMORY: Duration = Duration::from_secs(3600);
/// How many tickets' threads the notices follower keeps in memory (the ticket store knows them all).
const REMEMBERED_MAX: usize = 10_000;

/// One record of a batch: where it is, the ticket whose card it changes (none for a refused command or a record
/// that is no event), and what its submitter is told, if anything.
struct Seen {
    partition: i32,
    offset: i64,
    ticket: Option<String>,
    notice: Option<Notice>,
}

/// Follows `topic` and does its `duty` until `shutdown` is cancelled; commits what was delivered.
pub async fn run(
    settings: Settings,
    http: Arc<serenity::Http>,
    bootstrap: String,
    topic: String,
    duty: Duty,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let producer = crate::kafka::producer(&bootstrap)?;
    let work = match duty {
        Duty::Cards(staff) => Work::Cards(staff, Cards::open(&bootstrap, &settings.cards_topic, producer.clone())?),
        Duty::Notices => Work::Notices,
    };
    let consumer = group_consumer(&bootstrap, duty.group(), CommitOnRevoke::default())?;
    let poster = Poster {
        settings,
        http,
        work,
        producer,
        refused: Mutex::new(HashMap::new()),
        threads: Mutex::new(HashMap::new()),
        opening: Mutex::new(HashMap::new()),
        channels: Mutex::new(None),
    };
    let mut joined = false;
    let result = async {
        // The cards join their group only once they know every card: a partition they get may hold tickets whose
        // cards another process posted.
        if !poster.prepare(&shutdown).await? {
            return Ok(()); // shut down first: nothing was taken from the group
        }
        consumer.subscribe(&[&topic]).context("cannot follow the ticket events for the cards")?;
        joined = true;
        follow(&consumer, &topic, &poster, &shutdown).await
    }
    .await;
    let Poster { settings, work, .. } = poster;
    // Committing and closing wait for the broker with no time limit, so they run on the blocking pool, as in
    // `kafka::relay`. On a runtime worker they stall every task queued behind them; when the broker runs in the
    // same process (`--broker embedded`, the tests) its answer is one of those tasks, and shutdown hung for good.
    // The card map's reader is a consumer too.
    let committed = tokio::task::spawn_blocking(move || {
        let committed = if joined { commit_stored(&consumer) } else { Ok(()) };
        drop(consumer);
        drop(work);
        committed
    })
    .await
    .context("committing the cards' offsets ended abnormally")?;
    if let Err(error) = committed {
        let problem = format!("could not commit the cards' offsets ({error}); some cards may be drawn again");
        tracing::warn!("{problem}");
        settings.troubles.report(NAME, problem);
    }
    result
}

async fn follow(
    consumer: &rdkafka::consumer::StreamConsumer<CommitOnRevoke>,
    topic: &str,
    poster: &Poster,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let mut batch = Vec::new();
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            message = consumer.recv() => message,
        };
        let deadline = tokio::time::Instant::now() + COALESCE;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Ok(message) => batch.push(seen(&message)),
                Err(error) if consumer_error_is_fatal(&error) => return Err(error.into()),
                Err(_) => {}
            }
            if batch.len() >= BATCH_MAX {
                break;
            }
            next = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => None,
                message = consumer.recv() => Some(message),
            };
        }
        if batch.is_empty() {
            continue;
        }
        if !poster.deliver(&batch, shutdown).await {
            return Ok(()); // shut down before Discord had everything: these events come again
        }
        for seen in &batch {
            // Fails only if the partition was revoked meanwhile; its next owner draws the card again.
            if let Err(error) = consumer.store_offset(topic, seen.partition, seen.offset) {
                tracing::debug!(%error, "card offset not stored; the partition moved to another member");
            }
        }
    }
}

fn seen(message: &rdkafka::message::BorrowedMessage<'_>) -> Seen {
    let event = message.payload().and_then(|payload| serde_json::from_slice::<Event>(payload).ok());
    let notice = event.as_ref().and_then(notify::notice);
    // A refusal changes no ticket, and a delivery nothing a card shows.
    let ticket =
        event.filter(|e| !matches!(e.change, Change::Rejected { .. } | Change::Delivery(_))).map(|e| e.ticket_id);
    Seen { partition: message.partition(), offset: message.offset(), ticket, notice }
}

/// A follower's duty with what it needs: the cards need the card map.
enum Work {
    Cards(StaffChannel, Cards),
    Notices,
}

/// Posts and edits cards, or sends submitters their messages.
struct Poster {
    settings: Settings,
    http: Arc<serenity::Http>,
    work: Work,
    /// Publishes what Discord refused for good to the errors topic.
    producer: crate::kafka::Producer,
    /// Submitters (by Discord user id) who refused a direct message, and when.
    refused: Mutex<HashMap<u64, Instant>>,
    /// The threads this follower opened and recorded (by ticket id), known before the ticket store has the record.
    threads: Mutex<HashMap<String, u64>>,
    /// The threads made and not recorded yet (by ticket id): a retry goes on with the thread, and makes no other.
    opening: Mutex<HashMap<String, u64>>,
    /// The teams' own staff channels as last read from the staff list ([`Poster::team_channels`]).
    channels: Mutex<Option<HashMap<String, u64>>>,
}

impl Poster {
    /// Before the cards join their group: reads the card map to its end and imports the card file of an earlier
    /// franz, trying again until both are done; `false` if shutdown came first. Fails, writing nothing, when the
    /// topic holds records and none is a card: it is some other topic. Nothing to do for direct messages.
    async fn prepare(&self, shutdown: &CancellationToken) -> anyhow::Result<bool> {
        let Work::Cards(_, cards) = &self.work else { return Ok(true) };
        let mut backoff = Duration::from_secs(1);
        loop {
            if !self.know_cards(cards, shutdown).await {
                return Ok(false);
            }
            if let Some(foreign) = cards.foreign() {
                anyhow::bail!(foreign);
            }
            let path = &self.settings.cards_path;
            match cards.import(path).await {
                Ok(None) => {}
                Ok(Some(Imported { unreadable: Some(why), renamed_to, .. })) => tracing::error!(
                    "staff cards: the card file {} of an earlier franz cannot be read ({why}); set aside as {}. The \
                     tickets whose cards it knew get a second card at their next change",
                    path.display(),
                    renamed_to.display()
                ),
                Ok(Some(imported)) => {
                    tracing::info!(
                        "staff cards: imported the card file {} of an earlier franz ({} cards, {} of them new to {}); \
                         the file is now {}",
                        path.display(),
                        imported.rows,
                        imported.recorded,
                        self.settings.cards_topic,
                        imported.renamed_to.display()
                    );
                    if imported.skipped > 0 {
                        tracing::warn!(
                            "staff cards: {} row(s) of the card file {} named no Discord message, channel or ticket \
                             (an id of 0, an empty ticket id) and were left out",
                            imported.skipped,
                            path.display()
                        );
                    }
                }
                Err(error) => {
                    let problem = format!("the card file {} could not be imported yet: {error:#}", path.display());
                    if !self.pause(problem, &mut backoff, shutdown).await {
                        return Ok(false);
                    }
                    continue;
                }
            }
            tracing::info!("staff cards: the map in {} holds {} card(s)", self.settings.cards_topic, cards.len());
            return Ok(true);
        }
    }

    /// Reads the card map up to the end of its topic now, trying again until it can; `false` if shutdown came
    /// first. Drawing a card without it could post a second one.
    async fn know_cards(&self, cards: &Cards, shutdown: &CancellationToken) -> bool {
        let mut backoff = Duration::from_secs(1);
        loop {
            match cards.catch_up(shutdown).await {
                Ok(caught_up) => return caught_up,
                Err(error) => {
                    let problem = format!(
                        "the staff cards cannot read their map ({error:#}); no card is drawn until they can, so that \
                         none is posted twice"
                    );
                    if !self.pause(problem, &mut backoff, shutdown).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Says what failed (log, the bot's last problem) and waits `backoff` before the next try, doubling it up to
    /// [`BACKOFF_MAX`]; `false` if shutdown came first.
    async fn pause(&self, problem: String, backoff: &mut Duration, shutdown: &CancellationToken) -> bool {
        tracing::warn!("{problem}; trying again in {backoff:?}");
        self.settings.troubles.report(NAME, problem);
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(*backoff) => {}
        }
        *backoff = (*backoff * 2).min(BACKOFF_MAX);
        true
    }

    /// Does the duty for the batch: brings every card it touches up to date, once per ticket, or tells the
    /// submitters; `false` if shutdown came first.
    async fn deliver(&self, batch: &[Seen], shutdown: &CancellationToken) -> bool {
        let mut needed: HashMap<i32, i64> = HashMap::new();
        for seen in batch {
            let offset = needed.entry(seen.partition).or_insert(seen.offset);
            *offset = (*offset).max(seen.offset);
        }
        if !self.store_has(&needed, shutdown).await {
            return false;
        }
        match &self.work {
            Work::Cards(staff, cards) => self.draw(*staff, cards, batch, shutdown).await,
            Work::Notices => {
                for notice in batch.iter().filter_map(|s| s.notice.as_ref()) {
                    if !self.tell(notice, shutdown).await {
                        return false;
                    }
                }
                true
            }
        }
    }

    /// Brings the card of every ticket in the batch up to date; `false` if shutdown came first.
    async fn draw(&self, staff: StaffChannel, cards: &Cards, batch: &[Seen], shutdown: &CancellationToken) -> bool {
        // Whatever another process recorded before this batch was drawn (it had the partition before a rebalance,
        // or it drew the same ticket meanwhile) is known before any card is posted.
        if !self.know_cards(cards, shutdown).await {
            return false;
        }
        let Some(channels) = self.team_channels(shutdown).await else { return false };
        let mut tickets: Vec<&str> = Vec::new();
        for ticket in batch.iter().filter_map(|s| s.ticket.as_deref()) {
            if !tickets.contains(&ticket) {
                tickets.push(ticket);
            }
        }
        for ticket in tickets {
            let mut backoff = Duration::from_secs(1);
            loop {
                match self.show(staff, &channels, cards, ticket).await {
                    Ok(()) => break,
                    Err(Failure::Refused(why)) => {
                        let problem = format!(
                            "Discord refused the card of {ticket} for good: {why}; skipped until \
                                               the ticket changes again"
                        );
                        self.refused_for_good(REFUSED_CARD, ticket, problem).await;
                        break;
                    }
                    Err(Failure::Transient(error)) => {
                        let problem = format!("the card of {ticket} could not be updated: {error:#}");
                        if !self.pause(problem, &mut backoff, shutdown).await {
                            return false;
                        }
                    }
                }
            }
        }
        self.record_posted(cards, shutdown).await
    }

    /// Where each team's cards go, for those that have a staff channel of their own, as the staff list says now
    /// (read for each batch, so `franz team add --discord-channel` needs no restart); `None` if shutdown came
    /// first. A list that cannot be read is reported, and the channels last read stand in meanwhile: a broken staff
    /// list must not stop every card. Only when there are none yet is it retried: drawn without it, a team's cards
    /// would move to the wrong channel and back.
    async fn team_channels(&self, shutdown: &CancellationToken) -> Option<HashMap<String, u64>> {
        let mut backoff = Duration::from_secs(1);
        loop {
            let dir = self.settings.staff_dir.clone();
            let read = tokio::task::spawn_blocking(move || crate::people::teams_in(&dir))
                .await
                .map_err(|error| anyhow::anyhow!("a read of the staff list ended abnormally: {error}"))
                .and_then(|teams| teams);
            match read {
                Ok(teams) => {
                    let channels: HashMap<String, u64> =
                        teams.into_iter().filter_map(|team| Some((team.name, team.discord?.channel_id))).collect();
                    *self.channels.lock().unwrap_or_else(|p| p.into_inner()) = Some(channels.clone());
                    return Some(channels);
                }
                Err(error) => {
                    let problem = format!("the staff cards cannot read the teams' channels: {error:#}");
                    let last = self.channels.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    if let Some(last) = last {
                        let problem = format!("{problem}; the cards go where the staff list said when last read");
                        tracing::warn!("{problem}");
                        self.settings.troubles.report(NAME, problem);
                        return Some(last);
                    }
                    if !self.pause(problem, &mut backoff, shutdown).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Records the cards posted in this batch whose records the cluster refused so far, trying again until it
    /// acknowledges them; `false` if shutdown came first. Only the records are retried: the messages are posted and
    /// known here, and posting them again would make second cards once Discord has forgotten the nonce. The batch's
    /// offsets are stored only after this, so no process draws these tickets from a later offset without their
    /// cards on the topic.
    async fn record_posted(&self, cards: &Cards, shutdown: &CancellationToken) -> bool {
        let mut backoff = Duration::from_secs(1);
        loop {
            match cards.flush().await {
                Ok(()) => return true,
                Err(error) => {
                    let problem = format!(
                        "{} posted card(s) could not be recorded on {} yet: {error:#}; their events wait until they \
                         are",
                        cards.pending(),
                        self.settings.cards_topic
                    );
                    if !self.pause(problem, &mut backoff, shutdown).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Waits until the ticket store has applied every event of the batch, so the cards show them.
    async fn store_has(&self, needed: &HashMap<i32, i64>, shutdown: &CancellationToken) -> bool {
        let applied = |progress: &crate::store::Progress| {
            needed.iter().all(|(partition, offset)| progress.next.get(partition).is_some_and(|next| next > offset))
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                done = self.settings.store.wait_for(STORE_PATIENCE, applied) => if done { return true },
            }
            let problem = format!("the ticket store has not applied the events of the cards within {STORE_PATIENCE:?}");
            tracing::warn!("{problem}");
            self.settings.troubles.report(NAME, problem);
        }
    }

    /// Tells the submitter of the notice's ticket what happened, retrying what is worth retrying; `false` if
    /// shutdown came first.
    async fn tell(&self, notice: &Notice, shutdown: &CancellationToken) -> bool {
        if !notify::is_recent(notice, chrono::Utc::now(), NOTIFY_WITHIN) {
            tracing::debug!(ticket = %notice.ticket_id, "an event older than {NOTIFY_WITHIN:?}: its submitter is not told");
            return true;
        }
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.tell_once(notice).await {
                Ok(()) => return true,
                Err(error) => {
                    let problem =
                        format!("the submitter of {} could not be told yet: {error:#}; trying again", notice.ticket_id);
                    tracing::warn!("{problem} in {backoff:?}");
                    self.settings.troubles.report(NAME, problem);
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// One attempt at telling a submitter: `Ok` when it is done with (sent, or skipped for good). A ticket with a
    /// thread is told there; a new one gets its thread when the threads are on; the rest by direct message.
    async fn tell_once(&self, notice: &Notice) -> anyhow::Result<()> {
        let Some(state) = self.ticket(&notice.ticket_id).await? else { return Ok(()) };
        // Only a ticket from Discord has a submitter the bot can write to.
        let Some(user) = crate::discord::submitter(&state) else { return Ok(()) };
        if self.settings.threads.is_some() && !self.settings.store.wait_for(STORE_PATIENCE, |p| p.caught_up).await {
            // After a restart, a ticket's thread is known once the store has read the whole topic (its record comes
            // after the events this follower reads again): neither a second thread nor a reply past it.
            anyhow::bail!("the ticket store has not caught up, so whether {} has a thread is not known yet", state.id);
        }
        let thread = self.thread_of(&state.id).await?;
        match (&notice.what, thread, self.settings.threads) {
            (What::Opened, None, Some(threads)) => return self.open_thread(threads, notice, &state, user).await,
            (What::Opened, _, _) => return Ok(()),
            (_, Some(thread), _) => return self.tell_in_thread(thread, notice, &state).await,
            _ if !self.settings.notify_submitter => return Ok(()),
            _ => {}
        }
        let ticket = state.id.as_str();
        let closed = "the user does not accept direct messages from the bot";
        if self.refused_lately(user) {
            tracing::debug!(ticket, user, "the submitter refused direct messages lately; not asked again yet");
            return self
                .record(notify::delivery(notice, false, Some(format!("{closed} (asked within the hour)")), None))
                .await;
        }
        let files = self.transcript_for(notice, &state).await;
        let messages = notify::messages(notice, &state, self.settings.survey.as_deref());
        let delivery = match notify::send_with(&self.http, user, &messages, &files).await {
            Ok(Sent::Delivered(message)) => notify::delivery(notice, true, None, Some(message)),
            Ok(Sent::Refused) => {
                self.refused.lock().unwrap_or_else(|p| p.into_inner()).insert(user, Instant::now());
                tracing::info!(
                    ticket,
                    user,
                    "the submitter accepts no direct messages from the bot (Discord code 50007); not told, and not \
                     asked again for {REFUSAL_MEMORY:?}"
                );
                notify::delivery(notice, false, Some(closed.to_owned()), None)
            }
            Ok(Sent::Dropped(why)) => {
                let problem = format!("Discord refused the message to the submitter of {ticket} for good: {why}");
                self.refused_for_good(REFUSED_DIRECT_MESSAGE, ticket, problem).await;
                notify::delivery(notice, false, Some(format!("Discord refused it: {why}")), None)
            }
            Err(error) => return Err(anyhow::anyhow!("{}", connect::describe(&error))),
        };
        self.record(delivery).await
    }

    /// The transcript to attach to the direct message about `notice`: the ticket's conversation as an HTML file,
    /// when the notice is a close and `discord.transcript_on_close` is on, and it fits Discord's limit on files.
    async fn transcript_for(&self, notice: &Notice, state: &TicketState) -> Vec<serenity::CreateAttachment> {
        if !self.settings.transcript_on_close || !matches!(notice.what, What::Closed { .. }) {
            return Vec::new();
        }
        let (store, ticket) = (self.settings.store.clone(), state.clone());
        let written = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
            let history = query::history(&*store.reader()?, &ticket.id)?;
            Ok(crate::transcript::html(&ticket, &history))
        })
        .await;
        match written {
            Ok(Ok(html)) if html.len() <= TRANSCRIPT_MAX => {
                let name = crate::transcript::file_name(state, "html");
                vec![serenity::CreateAttachment::bytes(html.into_bytes(), name)]
            }
            Ok(Ok(html)) => {
                let bytes = html.len();
                tracing::warn!(ticket = %state.id, bytes, "the transcript is over Discord's limit on files; the close is told without it");
                Vec::new()
            }
            Ok(Err(error)) => {
                tracing::warn!(ticket = %state.id, "the transcript could not be written; the close is told without it: {error:#}");
                Vec::new()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Opens the ticket's thread and records it (a refusal for good is recorded too, and the ticket goes on by
    /// direct message, when those are on).
    async fn open_thread(
        &self,
        threads: Threads,
        notice: &Notice,
        state: &TicketState,
        user: u64,
    ) -> anyhow::Result<()> {
        let mut created = self.opening.lock().unwrap_or_else(|p| p.into_inner()).get(&state.id).copied();
        let known = &self.settings.threads_known;
        let opened = threads::open(&self.http, threads, state, user, &notice.event_id, &mut created, known).await;
        if let Some(thread) = created {
            let mut opening = self.opening.lock().unwrap_or_else(|p| p.into_inner());
            if opening.len() >= REMEMBERED_MAX {
                opening.clear(); // a thread left half-opened that long ago is not taken up again
            }
            opening.insert(state.id.clone(), thread);
        }
        let (delivery, thread) = match opened {
            Ok(Opened::Thread { thread, message }) => (
                notify::delivery_via(notice, Via::DiscordThread, true, None, Some(message), Some(thread)),
                Some(thread),
            ),
            Ok(Opened::Refused(why)) => {
                let problem = format!("Discord refused to open the thread of {}: {why}", state.id);
                self.refused_for_good(REFUSED_THREAD, &state.id, problem).await;
                let why = format!("could not open the ticket's thread: {why}");
                (notify::delivery_via(notice, Via::DiscordThread, false, Some(why), None, None), None)
            }
            Err(error) => return Err(anyhow::anyhow!("{}", connect::describe(&error))),
        };
        // Only a recorded thread is the ticket's: until then a retry opens it on from `opening`.
        self.record(delivery).await?;
        self.opening.lock().unwrap_or_else(|p| p.into_inner()).remove(&state.id);
        if let Some(thread) = thread {
            let mut known = self.threads.lock().unwrap_or_else(|p| p.into_inner());
            if known.len() >= REMEMBERED_MAX {
                known.clear(); // the ticket store has the older ones
            }
            known.insert(state.id.clone(), thread);
        }
        Ok(())
    }

    /// Posts the notice in the ticket's thread and records how that went.
    async fn tell_in_thread(&self, thread: u64, notice: &Notice, state: &TicketState) -> anyhow::Result<()> {
        let delivery =
            match threads::post(&self.http, thread, &notify::messages(notice, state, self.settings.survey.as_deref()))
                .await
            {
                Ok(Ok(message)) => notify::delivery_via(notice, Via::DiscordThread, true, None, Some(message), None),
                Ok(Err(why)) => {
                    let problem = format!("Discord refused a message in the thread of {}: {why}", state.id);
                    self.refused_for_good(REFUSED_THREAD, &state.id, problem).await;
                    notify::delivery_via(
                        notice,
                        Via::DiscordThread,
                        false,
                        Some(format!("Discord refused it: {why}")),
                        None,
                        None,
                    )
                }
                Err(error) => return Err(anyhow::anyhow!("{}", connect::describe(&error))),
            };
        self.record(delivery).await
    }

    /// The ticket's thread: one this follower opened, or one the ticket store knows.
    async fn thread_of(&self, ticket: &str) -> anyhow::Result<Option<u64>> {
        if let Some(thread) = self.threads.lock().unwrap_or_else(|p| p.into_inner()).get(ticket) {
            return Ok(Some(*thread));
        }
        let (store, id) = (self.settings.store.clone(), ticket.to_owned());
        let found =
            tokio::task::spawn_blocking(move || Ok::<_, anyhow::Error>(query::thread_of(&*store.reader()?, &id)?))
                .await
                .context("a read of the ticket store ended abnormally")??;
        Ok(found.and_then(|thread| thread.parse().ok()))
    }

    /// Records on the ticket where a message went (an error is worth retrying: the message is sent again with the
    /// same nonce, which Discord answers with the message it has, and recorded once).
    async fn record(&self, delivery: Command) -> anyhow::Result<()> {
        let settings = &self.settings;
        send_command(&self.producer, &settings.commands_topic, settings.partitions, &delivery)
            .await
            .with_context(|| format!("cannot record the delivery of a message about {}", delivery.ticket_id))
    }

    /// Whether `user` refused a direct message within [`REFUSAL_MEMORY`]; forgets older refusals.
    fn refused_lately(&self, user: u64) -> bool {
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        refused.retain(|_, at| at.elapsed() < REFUSAL_MEMORY);
        refused.contains_key(&user)
    }

    /// Makes a refusal that will not go away by itself seen: in the log, as the bot's last problem, on the errors
    /// topic (the desk's problems page, absturz) and in `franz_discord_refused_total`.
    async fn refused_for_good(&self, what: &str, ticket: &str, problem: String) {
        tracing::warn!("{problem}");
        self.settings.troubles.report(NAME, &problem);
        self.settings.refused.get_or_create(&RefusedLabel { what: what.to_owned() }).inc();
        let mut context = serde_json::Map::new();
        context.insert("ticket_id".into(), ticket.into());
        context.insert("refused".into(), what.into());
        report_error(&self.producer, &self.settings.errors_topic, NAME, problem, context).await;
    }

    /// Posts or edits the card of `ticket` to show its current state, in its team's channel if that team has one
    /// (`channels`) and in the staff channel otherwise; then deletes the card it had in another channel, once the
    /// new one is there (a ticket moved to another team): a card is never gone before its successor is posted.
    async fn show(
        &self,
        staff: StaffChannel,
        channels: &HashMap<String, u64>,
        cards: &Cards,
        ticket: &str,
    ) -> Result<(), Failure> {
        let Some(state) = self.ticket(ticket).await? else {
            return Ok(()); // an event for a ticket that was never created: nothing to show
        };
        let channel = state.team.as_ref().and_then(|team| channels.get(team)).copied().unwrap_or(staff.channel_id);
        let elsewhere = cards.elsewhere(channel, &state.id);
        // Discord remembers a nonce per author, not per channel: the card of a ticket in a team's channel has a
        // nonce of its own, and one that moved has one for its version, so that coming back to a channel within
        // minutes posts a card rather than getting the deleted one back.
        let nonce_of = match (channel == staff.channel_id, elsewhere.is_empty()) {
            (true, true) => state.id.clone(),
            (false, true) => format!("{}@{channel}", state.id),
            (_, false) => format!("{}@{channel}:{}", state.id, state.version),
        };
        self.show_in(channel, cards, &state, &nonce_of).await?;
        for (elsewhere, card) in elsewhere {
            if let Some(message_id) = NonZeroU64::new(card.message_id) {
                match self
                    .http
                    .delete_message(channel_id(elsewhere)?, message_id.into(), Some("the ticket moved"))
                    .await
                {
                    Ok(()) => {}
                    // Deleted already (by someone, or by this before its tombstone was recorded).
                    Err(error) if connect::status(&error) == Some(404) => {}
                    Err(error) => return Err(Failure::from(error)),
                }
            }
            cards.forget(elsewhere, &state.id).await?;
        }
        Ok(())
    }

    /// Posts (with a nonce from `nonce_of`) or edits the card of `state` in `channel`.
    async fn show_in(&self, channel: u64, cards: &Cards, state: &TicketState, nonce_of: &str) -> Result<(), Failure> {
        // The map holds no id of 0 (serenity's ids cannot hold one, and `MessageId::new(0)` panics); should one get
        // there all the same, it is no card.
        let known = cards.get(channel, &state.id).and_then(|card| Some((card, NonZeroU64::new(card.message_id)?)));
        match known {
            Some((card, _)) if card.version >= state.version => Ok(()),
            Some((card, message_id)) => {
                let body = card::message(state, None, self.settings.desk_url.as_deref());
                let edited = self.http.edit_message(channel_id(channel)?, message_id.into(), &body, Vec::new()).await;
                match edited {
                    Ok(_) => {
                        cards.shown(channel, &state.id, Card { version: state.version, ..card });
                        Ok(())
                    }
                    // Someone deleted the card: the ticket gets a new one.
                    Err(error) if connect::status(&error) == Some(404) => {
                        self.post(channel, cards, state, &format!("{}:{}", state.id, state.version)).await
                    }
                    Err(error) => Err(Failure::from(error)),
                }
            }
            None => self.post(channel, cards, state, nonce_of).await,
        }
    }

    /// Posts a card and records it on the cards topic. Once Discord returned the message, the card is known here
    /// whatever becomes of its record: a record the cluster does not acknowledge stays pending and is retried
    /// before the batch's offsets are stored ([`Poster::record_posted`]), and the card is never posted again for
    /// it. A post whose answer was lost is tried again with the same nonce, and Discord answers with the card it has.
    async fn post(&self, channel: u64, cards: &Cards, state: &TicketState, nonce_of: &str) -> Result<(), Failure> {
        let body = card::message(state, Some(&crate::discord::nonce(nonce_of)), self.settings.desk_url.as_deref());
        let message = self.http.send_message(channel_id(channel)?, Vec::new(), &body).await?;
        let card = Card { message_id: message.id.get(), version: state.version };
        if let Err(error) = cards.record(channel, &state.id, card).await {
            let problem = format!("the card of {} is posted but not recorded yet: {error:#}; trying again", state.id);
            tracing::warn!("{problem}");
            self.settings.troubles.report(NAME, problem);
        }
        Ok(())
    }

    async fn ticket(&self, id: &str) -> anyhow::Result<Option<TicketState>> {
        let (store, id) = (self.settings.store.clone(), id.to_owned());
        tokio::task::spawn_blocking(move || {
            let conn = store.reader()?;
            Ok(query::ticket(&conn, &id)?)
        })
        .await
        .context("a read of the ticket store ended abnormally")?
    }
}

/// The staff channel as serenity's id. The configuration refuses 0, which serenity's ids cannot hold; should one
/// get here all the same, it is a refusal of that card, never a panic.
fn channel_id(channel: u64) -> Result<serenity::ChannelId, Failure> {
    NonZeroU64::new(channel)
        .map(serenity::ChannelId::from)
        .ok_or_else(|| Failure::Refused("the staff channel id is 0, which is no Discord channel".to_owned()))
}

/// Why a card could not be brought up to date.
enum Failure {
    /// Discord refused it for good (a 4xx other than 429): trying again would be refused again.
    Refused(String),
    /// Anything that may pass: the network, a rate limit, a server error, the ticket store.
    Transient(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::Transient(error)
    }
}

impl From<serenity::Error> for Failure {
    fn from(error: serenity::Error) -> Failure {
        let described = format!("{}{}", connect::describe(&error), hint(&error));
        match connect::status(&error) {
            Some(status) if connect::refused_for_good(status) => Failure::Refused(described),
            _ => Failure::Transient(anyhow::anyhow!(described)),
        }
    }
}

/// What to do about a refusal that will not go away by itself.
fn hint(error: &serenity::Error) -> &'static str {
    match connect::status(error) {
        Some(403) => {
            "; give the bot View Channel, Send Messages and Embed Links in the staff channel, and in the team's own if \
             it has one (README: Staff cards in Discord; `franz team list`)"
        }
        Some(404) => "; check DISCORD_STAFF_CHANNEL_ID, and the team's --discord-channel (`franz team list`)",
        Some(401) => "; check DISCORD_TOKEN",
        _ => "",
    }
}
