//! The deciding half of akte: each command on `ticket-commands` becomes its event on `ticket-events`.
//!
//! See the module above for why this is safe with several akte processes. The state of a ticket is the newer of
//! what the ticket store holds and what this member produced and the store has not applied yet (`pending`).
//! akte reads the store on a connection of its own, never from the desk's pool, so no reader can keep it from
//! deciding; and what it remembers is pruned only once it has doubled, so each entry is looked up a bounded number
//! of times however far the store lags.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use rdkafka::consumer::Consumer as _;

use super::Settings;
use crate::config::Topics;
use crate::kafka::relay::{Input, Output, Transform};
use crate::kafka::tickets::ticket_partition;
use crate::kafka::{self, CommitOnRevoke};
use crate::lifecycle::{self, NAME_MAX, TicketState};
use crate::metrics::EventLabel;
use crate::schema::lifecycle::{Actor, ActorSource, Change, Command, Event, event_id_for};
use crate::schema::{DeadLetter, ErrorType, now_rfc3339};
use crate::store::{Store, query};

/// How long a new owner of a partition waits for the store to apply what the previous owner wrote.
const CATCH_UP: Duration = Duration::from_secs(120);
/// How many produced-but-not-yet-stored states and answers are kept before the ones the store has are dropped.
const PENDING_MAX: usize = 10_000;

/// What akte produced that the store may not have applied yet, pruned of what the store has once it holds more than
/// its limit. The limit then becomes twice what is left, so however long the store lags, each entry is looked up a
/// bounded number of times on average (linear in all, not quadratic).
struct Memory<K, V> {
    entries: HashMap<K, V>,
    limit: usize,
}

impl<K: std::hash::Hash + Eq, V> Memory<K, V> {
    fn new() -> Memory<K, V> {
        Memory { entries: HashMap::new(), limit: PENDING_MAX }
    }

    /// Keeps only the entries `keep` says the store does not have yet, if the memory is over its limit.
    fn prune(&mut self, mut keep: impl FnMut(&K, &V) -> anyhow::Result<bool>) -> anyhow::Result<()> {
        if self.entries.len() <= self.limit {
            return Ok(());
        }
        let mut kept = HashMap::new();
        for (key, value) in self.entries.drain() {
            if keep(&key, &value)? {
                kept.insert(key, value);
            }
        }
        self.entries = kept;
        self.limit = PENDING_MAX.max(2 * self.entries.len());
        Ok(())
    }
}

pub struct Decider {
    topics: Topics,
    store: Store,
    /// akte's own reading connection to the store.
    reader: rusqlite::Connection,
    membership: CommitOnRevoke,
    partitions: i32,
    /// The rebalance generation in which each partition was last caught up.
    prepared: HashMap<i32, usize>,
    pending: Memory<String, TicketState>,
    /// Commands answered (ticket id, command id) that the store may not have applied yet.
    answered: Memory<(String, String), ()>,
    watermarks: Arc<kafka::PlainConsumer>,
    /// Events decided, by type (`rejected` counts refusals), for `/metrics`.
    events: Family<EventLabel, Counter>,
    /// Seconds from creation to first claim, observed as each first claim is decided.
    time_to_claim: Histogram,
    /// Service-level targets missed.
    sla_breaches: Family<crate::metrics::SlaLabel, Counter>,
    tickets_routed: Family<crate::metrics::TeamLabel, Counter>,
    ratings: Family<crate::metrics::RatingLabel, Counter>,
    policy: lifecycle::Policy,
    /// What time it is when a command is decided.
    clock: crate::clock::Clock,
}

impl Decider {
    pub fn new(settings: &Settings) -> anyhow::Result<Decider> {
        let watermarks: kafka::PlainConsumer = kafka::consumer_config(&settings.bootstrap)
            .create_with_context(kafka::Quiet)
            .context("cannot create akte's offset reader")?;
        Ok(Decider {
            topics: settings.topics.clone(),
            store: settings.store.clone(),
            reader: settings.store.own_reader()?,
            membership: CommitOnRevoke::default(),
            partitions: 0,
            prepared: HashMap::new(),
            pending: Memory::new(),
            answered: Memory::new(),
            watermarks: Arc::new(watermarks),
            events: settings.metrics.akte_events.clone(),
            time_to_claim: settings.metrics.time_to_claim.clone(),
            sla_breaches: settings.metrics.sla_breaches.clone(),
            tickets_routed: settings.metrics.tickets_routed.clone(),
            ratings: settings.metrics.ratings.clone(),
            policy: settings.policy.clone(),
            clock: settings.clock.clone(),
        })
    }

    /// The consumer context to create the commands consumer with: it tells the decider about rebalances.
    pub fn membership(&self) -> CommitOnRevoke {
        self.membership.clone()
    }

    /// Reads both topics' partition counts; they must agree, or one ticket's events would not share a
    /// partition number with its commands.
    async fn learn_partitions(&mut self) -> anyhow::Result<()> {
        let reader = self.watermarks.clone();
        let (commands, events) = (self.topics.commands.clone(), self.topics.events.clone());
        let counts = tokio::task::spawn_blocking(move || -> anyhow::Result<(usize, usize)> {
            let count = |topic: &str| -> anyhow::Result<usize> {
                let metadata = reader.fetch_metadata(Some(topic), Duration::from_secs(10))?;
                Ok(metadata.topics().first().map_or(0, |t| t.partitions().len()))
            };
            Ok((count(&commands)?, count(&events)?))
        })
        .await??;
        if counts.0 == 0 || counts.0 != counts.1 {
            anyhow::bail!(
                "{} has {} partitions and {} has {}; akte needs both to exist with the same number",
                self.topics.commands,
                counts.0,
                self.topics.events,
                counts.1
            );
        }
        self.partitions = counts.0 as i32;
        Ok(())
    }

    /// The ticket as this member knows it: the store's row, or what it produced since if that is newer.
    fn state(&self, id: &str) -> anyhow::Result<Option<TicketState>> {
        let stored = query::ticket(&self.reader, id)?;
        Ok(match (self.pending.entries.get(id), stored) {
            (Some(pending), Some(stored)) if stored.version >= pending.version => Some(stored),
            (Some(pending), _) => Some(pending.clone()),
            (None, stored) => stored,
        })
    }

    fn answered_before(&self, command: &Command) -> anyhow::Result<bool> {
        let key = (command.ticket_id.clone(), command.command_id.clone());
        Ok(self.answered.entries.contains_key(&key)
            || query::answer(&self.reader, &command.ticket_id, &command.command_id)?.is_some())
    }

    /// Drops what the store has caught up with, once the memory holds many.
    fn prune(&mut self) -> anyhow::Result<()> {
        let reader = &self.reader;
        self.pending
            .prune(|id, state| Ok(query::ticket(reader, id)?.is_none_or(|stored| stored.version < state.version)))?;
        self.answered.prune(|(ticket, command), ()| Ok(query::answer(reader, ticket, command)?.is_none()))
    }

    fn event_output(&self, event: &Event, partition: i32) -> anyhow::Result<Output> {
        let kind = serde_json::to_value(&event.change)?.get("type").and_then(|t| t.as_str()).unwrap_or("").to_owned();
        self.events.get_or_create(&EventLabel { event: kind }).inc();
        Ok(Output {
            topic: self.topics.events.clone(),
            key: Some(event.ticket_id.clone().into_bytes()),
            payload: serde_json::to_vec(event)?,
            partition: Some(partition),
        })
    }

    /// The answer to a record that is no command but names a ticket: a `rejected` event, identified by where
    /// the record sits so that a redelivery is recognised.
    fn unreadable(&self, input: &Input<'_>, ticket_id: &str, reason: String) -> anyhow::Result<Output> {
        let command_id = format!("record:{}/{}/{}", input.topic, input.partition, input.offset);
        let event = Event {
            event_id: event_id_for(ticket_id, &command_id),
            ticket_id: ticket_id.to_owned(),
            version: None,
            at: now_rfc3339(),
            actor: Actor { source: ActorSource::Franz, name: "akte".into(), id: None, staff: None },
            caused_by: command_id,
            clocks: None,
            change: Change::Rejected { action: "unreadable".into(), reason },
        };
        self.event_output(&event, input.partition)
    }
}

impl Transform for Decider {
    fn needs_prepare(&self, partition: i32) -> bool {
        self.partitions == 0
            || self.prepared.get(&partition) != Some(&self.membership.generation.load(Ordering::SeqCst))
    }

    async fn prepare(&mut self, partition: i32) -> anyhow::Result<()> {
        if self.partitions == 0 {
            self.learn_partitions().await?;
        }
        let generation = self.membership.generation.load(Ordering::SeqCst);
        let reader = self.watermarks.clone();
        let topic = self.topics.events.clone();
        let (_, end) =
            tokio::task::spawn_blocking(move || reader.fetch_watermarks(&topic, partition, Duration::from_secs(10)))
                .await??;
        let caught_up = |p: &crate::store::Progress| p.next.get(&partition).copied().unwrap_or(0) >= end;
        if !self.store.wait_for(CATCH_UP, caught_up).await {
            anyhow::bail!(
                "the ticket store did not apply {}/{partition} up to offset {end} within {CATCH_UP:?}",
                self.topics.events
            );
        }
        self.prepared.insert(partition, generation);
        Ok(())
    }

    fn transform(&mut self, input: &Input<'_>) -> anyhow::Result<Option<Output>> {
        let key = input.key.and_then(|k| std::str::from_utf8(k).ok()).filter(|k| (1..=NAME_MAX).contains(&k.len()));
        let Some(key) = key else {
            let letter = DeadLetter::new(
                ErrorType::ValidationError,
                "a ticket command's key must be its ticket id (1 to 64 bytes of UTF-8)".into(),
                input.payload,
                input.source(),
                now_rfc3339(),
            );
            return Ok(Some(Output {
                topic: self.topics.dead_letters.clone(),
                key: None,
                payload: serde_json::to_vec(&letter)?,
                partition: None,
            }));
        };
        let home = ticket_partition(key, self.partitions);
        if home != input.partition {
            // Sent by a client with another partitioner: the ticket's single writer is the owner of `home`.
            return Ok(Some(Output {
                topic: self.topics.commands.clone(),
                key: Some(key.as_bytes().to_vec()),
                payload: input.payload.to_vec(),
                partition: Some(home),
            }));
        }
        let command: Command = match serde_json::from_slice(input.payload) {
            Ok(command) => command,
            Err(error) => {
                let reason = format!("not a ticket command: {}", truncate(&error.to_string(), 200));
                return Ok(Some(self.unreadable(input, key, reason)?));
            }
        };
        if command.ticket_id != key {
            return Ok(Some(self.unreadable(input, key, "the record key must be the command's ticket_id".into())?));
        }
        if command.command_id.is_empty() || command.command_id.len() > NAME_MAX {
            return Ok(Some(self.unreadable(input, key, "a command_id has 1 to 64 characters".into())?));
        }
        if self.answered_before(&command)? {
            return Ok(None);
        }
        let state = self.state(&command.ticket_id)?;
        let event = lifecycle::decide(state.as_ref(), &command, &self.clock.stamp(), &self.policy);
        if let Change::Created { routed: Some(routed), .. } = &event.change {
            let team = routed.team.clone().unwrap_or_else(|| "none".to_owned());
            self.tickets_routed.get_or_create(&crate::metrics::TeamLabel { team }).inc();
        }
        if let Change::Rated { rating, .. } = &event.change {
            self.ratings.get_or_create(&crate::metrics::RatingLabel { rating: rating.to_string() }).inc();
        }
        if let (Change::Breached { target, .. }, Some(ticket)) = (&event.change, &state) {
            let label =
                crate::metrics::SlaLabel { target: target.name().into(), priority: ticket.priority.name().into() };
            self.sla_breaches.get_or_create(&label).inc();
        }
        if event.version.is_some() {
            let claimed_before = state.as_ref().is_some_and(|s| s.first_claimed_at.is_some());
            if let Some(next) = lifecycle::apply(state, &event) {
                if !claimed_before {
                    if let Some(seconds) = seconds_to_claim(&next) {
                        self.time_to_claim.observe(seconds);
                    }
                }
                self.pending.entries.insert(command.ticket_id.clone(), next);
            }
        }
        self.answered.entries.insert((command.ticket_id.clone(), command.command_id.clone()), ());
        self.prune()?;
        Ok(Some(self.event_output(&event, input.partition)?))
    }
}

/// Seconds from a ticket's creation to its first claim, if it has been claimed.
fn seconds_to_claim(ticket: &TicketState) -> Option<f64> {
    let at = |text: &str| chrono::DateTime::parse_from_rfc3339(text).ok();
    let (created, claimed) = (at(&ticket.created_at)?, at(ticket.first_claimed_at.as_deref()?)?);
    Some(((claimed - created).num_milliseconds() as f64 / 1000.0).max(0.0))
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (#33): once the memory passed its limit, every command looked up every entry again while the
    /// store lagged: quadratic work on a runtime thread the embedded broker shares.
    #[test]
    fn a_memory_the_store_never_catches_up_with_is_looked_up_a_linear_number_of_times() {
        let mut memory = Memory::new();
        let mut lookups = 0usize;
        let inserted = 20 * PENDING_MAX;
        for n in 0..inserted {
            memory.entries.insert(n, ());
            memory
                .prune(|_, _| {
                    lookups += 1;
                    Ok(true)
                })
                .unwrap();
        }
        assert_eq!(memory.entries.len(), inserted, "nothing the store lacks is forgotten");
        assert!(lookups <= 2 * inserted, "{lookups} lookups for {inserted} entries");
    }

    #[test]
    fn what_the_store_has_is_forgotten_once_the_memory_is_over_its_limit() {
        let mut memory = Memory::new();
        for n in 0..=PENDING_MAX {
            memory.entries.insert(n, ());
        }
        memory.prune(|n, _| Ok(n % 2 == 0)).unwrap();
        assert_eq!(memory.entries.len(), PENDING_MAX / 2 + 1, "only what the store lacks is kept");
        assert_eq!(memory.limit, PENDING_MAX + 2, "the next pruning waits until the memory has doubled");
        for n in PENDING_MAX + 1..=2 * PENDING_MAX + 2 {
            memory.entries.insert(n, ());
        }
        memory.prune(|_, _| Ok(false)).unwrap();
        assert!(memory.entries.is_empty());
        assert_eq!(memory.limit, PENDING_MAX, "the limit never drops below its floor");
    }
}
