//! Keeps the cards in step with `ticket-events`: the first event of a ticket posts its card, every later one edits
//! it, whatever the source of the change (web, CLI, Discord).
//!
//! At-least-once with no duplicate cards: the consumer group `kummerkasten-cards` stores an offset only after
//! Discord accepted the post or edit it led to, and a card's message id is remembered (`cards`) before that. A
//! redelivered event finds its card and edits it (or, if the card shows that version already, does nothing); a
//! crash between Discord's answer and the memory write is covered by the post's `enforce_nonce`, which makes
//! Discord return the first message instead of posting a second. Events are taken in small batches and each
//! ticket in a batch is drawn once, in its newest state, so a busy ticket costs one edit per batch, not one per
//! change, and a rate-limited channel coalesces even more. Cards are drawn from the ticket store after it has
//! applied the batch; this module never decides anything about a ticket.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use poise::serenity_prelude as serenity;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::Message as _;
use tokio_util::sync::CancellationToken;

use super::cards::{Card, Cards};
use super::{Settings, card};
use crate::kafka::{CommitOnRevoke, commit_stored, consumer_error_is_fatal, group_consumer};
use crate::lifecycle::TicketState;
use crate::schema::lifecycle::{Change, Event};
use crate::services::kummerkasten::connect;
use crate::store::query;

/// The consumer group that follows `ticket-events` for the cards.
pub const GROUP: &str = "kummerkasten-cards";
/// How long a batch collects events after its first one: the edits of a busy card coalesce within it.
const COALESCE: Duration = Duration::from_millis(300);
/// The most events in one batch.
const BATCH_MAX: usize = 500;
/// How long to wait for the ticket store to apply a batch before saying so in the log (and waiting on).
const STORE_PATIENCE: Duration = Duration::from_secs(30);
/// The longest pause between two attempts at a card Discord refused or could not be reached for.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// One record of a batch: where it is, and the ticket whose card it changes (none for a refused command or a
/// record that is no event).
struct Seen {
    partition: i32,
    offset: i64,
    ticket: Option<String>,
}

/// Follows `topic` and keeps the cards up to date until `shutdown` is cancelled; commits what was delivered.
pub async fn run(
    settings: Settings,
    http: Arc<serenity::Http>,
    bootstrap: String,
    topic: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let cards = Cards::open(&settings.cards_path)?;
    let consumer = group_consumer(&bootstrap, GROUP, CommitOnRevoke::default())?;
    consumer.subscribe(&[&topic]).context("cannot follow the ticket events for the cards")?;
    let poster = Poster { settings, http, cards };
    let result = follow(&consumer, &topic, &poster, &shutdown).await;
    // Committing and closing wait for the broker with no time limit, so they run on the blocking pool, as in
    // `kafka::relay`. On a runtime worker they stall every task queued behind them; when the broker runs in the
    // same process (`--broker embedded`, the tests) its answer is one of those tasks, and shutdown hung for good.
    let committed = tokio::task::spawn_blocking(move || {
        let committed = commit_stored(&consumer);
        drop(consumer);
        committed
    })
    .await
    .context("committing the cards' offsets ended abnormally")?;
    if let Err(error) = committed {
        tracing::warn!(%error, "could not commit the cards' offsets; some cards may be drawn again");
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
    let ticket = event.filter(|e| !matches!(e.change, Change::Rejected { .. })).map(|e| e.ticket_id);
    Seen { partition: message.partition(), offset: message.offset(), ticket }
}

/// Posts and edits cards.
struct Poster {
    settings: Settings,
    http: Arc<serenity::Http>,
    cards: Cards,
}

impl Poster {
    /// Brings every card the batch touches up to date, once per ticket; `false` if shutdown came first.
    async fn deliver(&self, batch: &[Seen], shutdown: &CancellationToken) -> bool {
        let mut needed: HashMap<i32, i64> = HashMap::new();
        for seen in batch {
            let offset = needed.entry(seen.partition).or_insert(seen.offset);
            *offset = (*offset).max(seen.offset);
        }
        if !self.store_has(&needed, shutdown).await {
            return false;
        }
        let mut tickets: Vec<&str> = Vec::new();
        for ticket in batch.iter().filter_map(|s| s.ticket.as_deref()) {
            if !tickets.contains(&ticket) {
                tickets.push(ticket);
            }
        }
        for ticket in tickets {
            let mut backoff = Duration::from_secs(1);
            loop {
                match self.show(ticket).await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(ticket, "the card could not be updated: {error:#}; trying again in {backoff:?}");
                        tokio::select! {
                            _ = shutdown.cancelled() => return false,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
        }
        true
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
            tracing::warn!("the ticket store has not applied the events of the cards within {STORE_PATIENCE:?}");
        }
    }

    /// Posts or edits the card of `ticket` to show its current state.
    async fn show(&self, ticket: &str) -> anyhow::Result<()> {
        let Some(state) = self.ticket(ticket).await? else {
            return Ok(()); // an event for a ticket that was never created: nothing to show
        };
        let channel = self.settings.channel_id;
        match self.cards.get(channel, &state.id).await? {
            Some(card) if card.version >= state.version => Ok(()),
            Some(card) => {
                let body = card::message(&state, None);
                let edited = self.http.edit_message(channel.into(), card.message_id.into(), &body, Vec::new()).await;
                match edited {
                    Ok(_) => self.cards.put(channel, &state.id, Card { version: state.version, ..card }).await,
                    // Someone deleted the card: the ticket gets a new one.
                    Err(error) if connect::status(&error) == Some(404) => {
                        self.post(&state, &format!("{}:{}", state.id, state.version)).await
                    }
                    Err(error) => Err(anyhow::anyhow!("{}{}", connect::describe(&error), hint(&error))),
                }
            }
            None => self.post(&state, &state.id).await,
        }
    }

    async fn post(&self, state: &TicketState, nonce_of: &str) -> anyhow::Result<()> {
        let channel = self.settings.channel_id;
        let body = card::message(state, Some(&nonce(nonce_of)));
        let message = self
            .http
            .send_message(channel.into(), Vec::new(), &body)
            .await
            .map_err(|error| anyhow::anyhow!("{}{}", connect::describe(&error), hint(&error)))?;
        self.cards.put(channel, &state.id, Card { message_id: message.id.get(), version: state.version }).await
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

/// What to do about a refusal that will not go away by itself.
fn hint(error: &serenity::Error) -> &'static str {
    match connect::status(error) {
        Some(403) => {
            "; give the bot View Channel, Send Messages and Embed Links in the staff channel (README: Staff cards in \
             Discord)"
        }
        Some(404) => "; check DISCORD_STAFF_CHANNEL_ID",
        Some(401) => "; check DISCORD_TOKEN",
        _ => "",
    }
}

/// A message nonce (at most 25 characters) derived from `seed`: the same card post always carries the same one.
fn nonce(seed: &str) -> String {
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, seed.as_bytes()).simple().to_string();
    id[..25].to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_card_post_has_a_stable_nonce_within_discords_25_characters() {
        assert_eq!(super::nonce("t-1"), super::nonce("t-1"));
        assert_ne!(super::nonce("t-1"), super::nonce("t-2"));
        assert_eq!(super::nonce("t-1").len(), 25);
    }
}
