//! Which Discord message is each ticket's staff card: a map from staff channel and ticket to the message and the
//! ticket version it shows, kept in memory and read from the cards topic (`discord-cards`, a [`StaffCard`] per
//! record), which every franz on the cluster reads and writes. A card is recorded there when it is posted; edits
//! only change what this process remembers. Of two records of one key, the one with the higher `version` is the
//! card, whatever order they are read in; a card posted here whose record the cluster has not acknowledged yet is
//! known here at once and its record is tried again ([`Cards::flush`]), so the message is never posted twice.
//!
//! Not in the data dir, on purpose: the cards' consumer group is shared, so after a rebalance another process draws
//! the cards of a partition, and a memory of its own would not know the cards posted before (Discord's nonce stops
//! a repeated post for a few minutes only). Not in the ticket store either: the store is a cache rebuilt from
//! `ticket-events`, and the message ids are facts about Discord that no event holds. The card file of franz before
//! the topic (`discord-cards.sqlite` beside the store) is imported once ([`Cards::import`]). A topic that holds
//! records none of which is a card is some other topic and is never written to ([`check_topic`],
//! [`Cards::foreign`]); one created again under the same name (its topic id changed) is read anew. This module does
//! no Discord I/O; it only reads and writes the topic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::kafka::{self, PlainConsumer, Producer, repeats};
use crate::schema::StaffCard;

/// A ticket's card as remembered: its message, and the version of the ticket it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Card {
    pub message_id: u64,
    pub version: u64,
}

/// How long reading the cards topic may go without a record or an answer before it is given up (and tried again
/// by the caller): a cluster that is gone must not hold a batch for ever, nor stop a shutdown.
const STALL: Duration = Duration::from_secs(30);
/// How long the cluster may take to answer a metadata or watermark request.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`check_topic`] may read before it leaves the answer to the cards' own first read.
const CHECK_WITHIN: Duration = Duration::from_secs(10);
/// The longest a Fetch of the map's reader waits at the end of a partition. The reader reads up to an end it knows
/// and is paused between catch-ups; this only bounds how long a Fetch still in flight when it is paused holds up
/// the metadata and offset requests of the next catch-up on the same connection.
const FETCH_WAIT: Duration = Duration::from_millis(50);
/// A backlog this large is a start worth reporting progress on.
const REPORT_BACKLOG: i64 = 20_000;
/// Cards of an old card file published at once before their acknowledgements are awaited.
const IMPORT_CHUNK: usize = 1_000;

/// The card map of one follower. Reads of the topic run on the blocking pool (librdkafka's calls block); lookups
/// only take a lock. Drop it on the blocking pool too: its reader is a Kafka consumer.
pub struct Cards {
    map: Arc<Mutex<Map>>,
    bootstrap: String,
    topic: String,
    producer: Producer,
}

/// A card in the map, with the version of the record it came from: an edit raises what the card shows, not that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    card: Card,
    /// The ticket's version when the card was posted (its record's `version`); only a record with a higher one
    /// replaces the card.
    posted: u64,
}

/// A card this process posted, with the key it is recorded under.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Posted {
    channel_id: u64,
    ticket_id: String,
    card: Card,
}

/// The map and the reader that keeps it, behind one lock: only the cards' follower uses it, one call at a time.
struct Map {
    consumer: PlainConsumer,
    topic: String,
    /// Keyed by ticket first, so a ticket's cards in every channel are neighbours ([`Cards::elsewhere`]).
    cards: BTreeMap<(String, u64), Known>,
    /// The next offset to read of each partition assigned so far.
    next: BTreeMap<i32, i64>,
    /// The topic's id (Kafka's topic UUID) when it was last read, if the cluster says: another id is a topic
    /// deleted and created again.
    topic_id: Option<Uuid>,
    /// Records read since the map was (re)started, and how many of them were cards or tombstones of cards.
    records: u64,
    entries: u64,
    /// Cards posted here whose records the cluster has not acknowledged yet, oldest first. They are in `cards`
    /// too, and stay there when the topic is read anew: their messages exist whatever the topic says.
    pending: Vec<Posted>,
}

impl std::fmt::Debug for Cards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cards").field("topic", &self.topic).finish_non_exhaustive()
    }
}

/// The reader of a cards topic: assigned by hand, never committed (every start reads the whole map).
fn reader(bootstrap: &str) -> anyhow::Result<PlainConsumer> {
    kafka::consumer_config(bootstrap)
        .set("group.id", "franz-discord-cards")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Records removed under the reader (the topic should keep them for ever) are passed from the oldest on.
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", FETCH_WAIT.as_millis().to_string())
        .create_with_context(kafka::Quiet)
        .context("cannot create the reader of the staff cards")
}

impl Cards {
    /// A map of the cards on `topic` at `bootstrap`, empty until [`Cards::catch_up`]; `producer` records new cards.
    pub fn open(bootstrap: &str, topic: &str, producer: Producer) -> anyhow::Result<Cards> {
        let map = Map::new(reader(bootstrap)?, topic);
        Ok(Cards { map: Arc::new(Mutex::new(map)), bootstrap: bootstrap.to_owned(), topic: topic.to_owned(), producer })
    }

    /// Reads the topic up to the end it has now, so that every card recorded before this call is known (another
    /// process's included); `Ok(false)` if `shutdown` came first. Fails when the topic does not exist or the cluster
    /// gives nothing for [`STALL`]; what was read stays read, so trying again goes on from there. A topic whose id
    /// changed since the last read was created again: the map forgets what it read of the old one and reads it anew.
    pub async fn catch_up(&self, shutdown: &CancellationToken) -> anyhow::Result<bool> {
        let reading = async {
            let topic_id = self.topic_id().await;
            let (map, stop) = (self.map.clone(), shutdown.clone());
            tokio::task::spawn_blocking(move || lock(&map).catch_up(&stop, topic_id))
                .await
                .context("reading the staff cards ended abnormally")?
        };
        // A metadata or watermark request can wait for a cluster that is gone for up to `TIMEOUT`; shutdown does not
        // wait for it. The read ends by itself on the blocking pool, and the map is dropped there.
        tokio::select! {
            read = reading => read,
            _ = shutdown.cancelled() => Ok(false),
        }
    }

    /// The topic's id now, or `None` when the cluster does not say (too old a broker, or no answer: then only a
    /// topic that ends before what was read tells a recreation).
    async fn topic_id(&self) -> Option<Uuid> {
        match kafka::identity::fetch(&self.bootstrap, &self.topic, TIMEOUT).await {
            Ok(identity) => identity.topic_id,
            Err(error) => {
                tracing::debug!("staff cards: the id of {} is unknown: {error:#}", self.topic);
                None
            }
        }
    }

    /// The card of `ticket_id` in `channel_id`, as far as the map has read.
    pub fn get(&self, channel_id: u64, ticket_id: &str) -> Option<Card> {
        lock(&self.map).cards.get(&(ticket_id.to_owned(), channel_id)).map(|known| known.card)
    }

    /// The cards of `ticket_id` in channels other than `channel_id`: a ticket moved to another team's channel
    /// leaves its card behind in the one it came from until [`Cards::forget`].
    pub fn elsewhere(&self, channel_id: u64, ticket_id: &str) -> Vec<(u64, Card)> {
        let map = lock(&self.map);
        let of_ticket = (ticket_id.to_owned(), 0)..=(ticket_id.to_owned(), u64::MAX);
        map.cards
            .range(of_ticket)
            .filter(|((_, channel), _)| *channel != channel_id)
            .map(|((_, channel), known)| (*channel, known.card))
            .collect()
    }

    /// Forgets the card of `ticket_id` in `channel_id` (its message is deleted): a tombstone on the topic, so every
    /// process forgets it, and then here; `Ok` once the cluster acknowledged it. A failure leaves the card known,
    /// and trying again deletes (a message that is gone already) and forgets once more.
    pub async fn forget(&self, channel_id: u64, ticket_id: &str) -> anyhow::Result<()> {
        let key = StaffCard::key(channel_id, ticket_id);
        kafka::tombstone(&self.producer, &self.topic, &key).await.with_context(|| {
            format!("cannot forget the card of {ticket_id} in channel {channel_id} on {}", self.topic)
        })?;
        let mut map = lock(&self.map);
        map.cards.remove(&(ticket_id.to_owned(), channel_id));
        map.pending.retain(|posted| (posted.channel_id, posted.ticket_id.as_str()) != (channel_id, ticket_id));
        Ok(())
    }

    /// How many cards the map knows.
    pub fn len(&self) -> usize {
        lock(&self.map).cards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Why the topic is no card map, when what was read of it says so: it holds records and none of them is a card
    /// (or a tombstone of one). Nothing may be written to such a topic; ask after a [`Cards::catch_up`].
    pub fn foreign(&self) -> Option<String> {
        let map = lock(&self.map);
        (map.records > 0 && map.entries == 0).then(|| not_a_card_map(&map.topic, map.records))
    }

    /// Remembers here that the card shows `card.version` now (after an edit). Not recorded on the topic: another
    /// process that draws the ticket later edits the card once more at worst.
    pub fn shown(&self, channel_id: u64, ticket_id: &str, card: Card) {
        let mut map = lock(&self.map);
        let known = map.cards.entry((ticket_id.to_owned(), channel_id)).or_insert(Known { card, posted: 0 });
        known.card = card;
    }

    /// Records a card that was just posted. It is known here at once, so that nothing here posts that ticket's card
    /// again, and then recorded on the topic; `Ok` once the cluster acknowledged the record. A record that fails
    /// stays pending: [`Cards::flush`] tries it again, and no process other than this one knows the card until then.
    pub async fn record(&self, channel_id: u64, ticket_id: &str, card: Card) -> anyhow::Result<()> {
        {
            let mut map = lock(&self.map);
            map.cards.insert((ticket_id.to_owned(), channel_id), Known { card, posted: card.version });
            map.pending.push(Posted { channel_id, ticket_id: ticket_id.to_owned(), card });
        }
        self.flush().await
    }

    /// Records every card posted here whose record the cluster has not acknowledged yet, oldest first; `Ok` once
    /// none is left. A card that the topic has a newer one for meanwhile (another process posted the ticket's card
    /// again) is left out: its record would only stand in the newer one's way once the topic is compacted.
    pub async fn flush(&self) -> anyhow::Result<()> {
        loop {
            let (posted, superseded) = {
                let map = lock(&self.map);
                let Some(posted) = map.pending.first().cloned() else { return Ok(()) };
                let key = (posted.ticket_id.clone(), posted.channel_id);
                let superseded = map.cards.get(&key).is_some_and(|known| {
                    known.posted > posted.card.version && known.card.message_id != posted.card.message_id
                });
                (posted, superseded)
            };
            if !superseded {
                let (key, value) = record(posted.channel_id, &posted.ticket_id, posted.card);
                kafka::publish(&self.producer, &self.topic, Some(&key), &value)
                    .await
                    .with_context(|| format!("cannot record the card of {} on {}", posted.ticket_id, self.topic))?;
            }
            let mut map = lock(&self.map);
            if let Some(at) = map.pending.iter().position(|p| *p == posted) {
                map.pending.remove(at);
            }
        }
    }

    /// How many cards posted here wait for their record to be acknowledged.
    pub fn pending(&self) -> usize {
        lock(&self.map).pending.len()
    }

    /// Imports the card file of franz before the cards topic, once: every card in it that the topic does not know
    /// yet is recorded there, and then the file is renamed to `<file>.imported`, so an upgrade posts no second card
    /// for the tickets of before. Call after [`Cards::catch_up`]. `None` when there is no such file. A row that names
    /// no Discord message or channel (an id of 0) or no ticket is left out ([`Imported::skipped`]). A failure that
    /// may pass (the file locked by another franz, no file descriptor left, an I/O error, the cluster) leaves the
    /// file where it is, and trying again records only what the topic still lacks. A file that is no card file
    /// SQLite can read (not a database, corrupt, another schema, values of the wrong type) never will be: it is
    /// renamed to `<file>.unreadable` and said so ([`Imported::unreadable`]), rather than hold up the cards for ever.
    pub async fn import(&self, path: &Path) -> anyhow::Result<Option<Imported>> {
        let read = {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || legacy_rows(&path)).await.context("reading the old card file ended")?
        };
        let rows = match read {
            Ok(None) => return Ok(None),
            Ok(Some(rows)) => rows,
            Err(error) if passes(&error) => {
                return Err(error).with_context(|| format!("cannot read the old card file {}", path.display()));
            }
            Err(error) => {
                let path = path.to_owned();
                let renamed_to = tokio::task::spawn_blocking(move || set_aside(&path, "unreadable"))
                    .await
                    .context("renaming the old card file ended")??;
                let unreadable = Some(error.to_string());
                return Ok(Some(Imported { rows: 0, recorded: 0, skipped: 0, renamed_to, unreadable }));
            }
        };
        let all = rows.len();
        let rows: Vec<(u64, String, Card)> = rows
            .into_iter()
            .filter(|(channel, ticket, card)| *channel != 0 && card.message_id != 0 && !ticket.is_empty())
            .collect();
        let missing: Vec<&(u64, String, Card)> =
            rows.iter().filter(|(channel, ticket, _)| self.get(*channel, ticket).is_none()).collect();
        for chunk in missing.chunks(IMPORT_CHUNK) {
            let sends = chunk.iter().map(|(channel, ticket, card)| async move {
                let (key, value) = record(*channel, ticket, *card);
                kafka::publish(&self.producer, &self.topic, Some(&key), &value).await
            });
            for sent in futures::future::join_all(sends).await {
                sent.with_context(|| format!("cannot record the cards of {} on {}", path.display(), self.topic))?;
            }
            let mut map = lock(&self.map);
            for (channel, ticket, card) in chunk {
                map.learn(*channel, ticket, *card);
            }
        }
        let renamed_to = {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || set_aside(&path, "imported"))
                .await
                .context("renaming the old card file ended")??
        };
        let (recorded, skipped) = (missing.len(), all - rows.len());
        Ok(Some(Imported { rows: all, recorded, skipped, renamed_to, unreadable: None }))
    }
}

/// What [`Cards::import`] did with an old card file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The cards in the file.
    pub rows: usize,
    /// The ones the topic did not know yet, now recorded there.
    pub recorded: usize,
    /// Rows left out because they name no Discord message or channel (an id of 0) or no ticket.
    pub skipped: usize,
    /// Where the file is now.
    pub renamed_to: PathBuf,
    /// Why the file could not be read, when it was set aside unread: its tickets may get a second card.
    pub unreadable: Option<String>,
}

/// Refuses a cards topic (`topics.cards`) that is something else: one that holds records, none of which is a card
/// or a tombstone of one (another application's topic, another deployment's `ticket-events`), which franz must not
/// write its cards into. Reads from the start until the first card, so a card map costs one record; a topic that
/// cannot be read, or not within [`CHECK_WITHIN`], is left to the cards' own first read ([`Cards::foreign`]).
pub async fn check_topic(bootstrap: &str, topic: &str) -> anyhow::Result<()> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    let checked = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<String>> {
        let mut map = Map::new(reader(&bootstrap)?, &topic);
        let ends = map.ends_to_read()?;
        let limit = Limit { deadline: Some(Instant::now() + CHECK_WITHIN), first_entry: true };
        let read = map.read(&ends, &CancellationToken::new(), limit)?;
        Ok(match read {
            Reading::Done if map.records > 0 && map.entries == 0 => Some(not_a_card_map(&topic, map.records)),
            Reading::Done | Reading::Enough => None,
            Reading::Stopped | Reading::OutOfTime => {
                tracing::info!(
                    "staff cards: {topic} holds no card in what was read of it within {CHECK_WITHIN:?}; the cards \
                     read the rest before they write to it"
                );
                None
            }
        })
    })
    .await
    .context("checking the staff cards' topic ended abnormally")?;
    match checked {
        Ok(None) => Ok(()),
        Ok(Some(foreign)) => Err(anyhow::anyhow!(foreign)),
        Err(error) => {
            tracing::debug!("staff cards: could not check the topic at start ({error:#}); the cards check it later");
            Ok(())
        }
    }
}

/// Why a topic is refused as the card map.
fn not_a_card_map(topic: &str, records: u64) -> String {
    format!(
        "the staff cards' topic {topic} holds {records} record(s) and none of them is a staff card, so it is some \
         other topic and no card is written to it; set topics.cards (FRANZ_TOPIC_CARDS) to the cards' own topic \
         (default discord-cards)"
    )
}

fn lock(map: &Mutex<Map>) -> std::sync::MutexGuard<'_, Map> {
    // A panic while holding the lock leaves a map that is at worst behind the topic, which the next catch-up fixes.
    map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The key and value of the record of a card.
fn record(channel_id: u64, ticket_id: &str, card: Card) -> (String, Vec<u8>) {
    let value = StaffCard {
        ticket_id: ticket_id.to_owned(),
        channel_id: channel_id.to_string(),
        message_id: card.message_id.to_string(),
        version: card.version,
    };
    (StaffCard::key(channel_id, ticket_id), serde_json::to_vec(&value).expect("a staff card serializes"))
}

/// What one record of the cards topic says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// This card shows the ticket in the channel.
    Card(u64, String, Card),
    /// The card of the ticket in the channel is forgotten (a tombstone).
    Forget(u64, String),
}

/// Why a record is no card: a reason that never quotes the record (so that records wrong the same way are one kind
/// of warning to `repeats`), and what serde said, for the debug log.
struct Skip {
    why: &'static str,
    detail: Option<String>,
}

impl From<&'static str> for Skip {
    fn from(why: &'static str) -> Skip {
        Skip { why, detail: None }
    }
}

/// Reads a record of the cards topic; `Err` says why it is no card (such a record is skipped, never fatal: the
/// topic is written by any client of the cluster). The reason alone, as the log's warning has it.
#[cfg(test)]
fn entry(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Entry, String> {
    read_entry(key, value).map_err(|skip| skip.why.to_owned())
}

/// Reads a record of the cards topic; `Err` says why it is no card (such a record is skipped, never fatal: the
/// topic is written by any client of the cluster), and what serde said of a value that is no card.
fn read_entry(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Entry, Skip> {
    let key = key.ok_or("it has no key")?;
    let key = std::str::from_utf8(key).map_err(|_| "its key is not text")?;
    let Some(value) = value else {
        // A tombstone is read by the same rule as a card: only the key franz writes forgets a card. `007/t-1` is
        // another key to Kafka, whose compaction keeps the card of `7/t-1` beside it.
        let (channel, ticket) = key.split_once('/').ok_or("its key is not <channel id>/<ticket id>")?;
        let channel: u64 = channel.parse().map_err(|_| "its key's channel id is not a number")?;
        if channel == 0 || ticket.is_empty() || key != StaffCard::key(channel, ticket) {
            return Err("its key is not <channel id>/<ticket id> as franz writes it".into());
        }
        return Ok(Entry::Forget(channel, ticket.to_owned()));
    };
    let card: StaffCard = serde_json::from_slice(value)
        .map_err(|error| Skip { why: "its value is not a card", detail: Some(error.to_string()) })?;
    let channel: u64 = card.channel_id.parse().map_err(|_| "its channel_id is not a number")?;
    let message_id: u64 = card.message_id.parse().map_err(|_| "its message_id is not a number")?;
    // Discord has no channel or message 0 (serenity's ids cannot even hold one).
    if channel == 0 {
        return Err("its channel_id is 0, which is no Discord id".into());
    }
    if message_id == 0 {
        return Err("its message_id is 0, which is no Discord id".into());
    }
    if card.ticket_id.is_empty() {
        return Err("its ticket_id is empty".into());
    }
    if key != StaffCard::key(channel, &card.ticket_id) {
        return Err("its key does not name its channel and ticket".into());
    }
    Ok(Entry::Card(channel, card.ticket_id, Card { message_id, version: card.version }))
}

/// How far a read of the topic goes.
#[derive(Debug, Clone, Copy)]
struct Limit {
    /// Give up (without an error) at this time.
    deadline: Option<Instant>,
    /// Stop at the first record that is a card or a tombstone of one.
    first_entry: bool,
}

/// How a read of the topic ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Up to the end it was asked to read to.
    Done,
    /// At the first card, as asked.
    Enough,
    /// Shutdown came first.
    Stopped,
    /// The deadline came first.
    OutOfTime,
}

impl Map {
    fn new(consumer: PlainConsumer, topic: &str) -> Map {
        Map {
            consumer,
            topic: topic.to_owned(),
            cards: BTreeMap::new(),
            next: BTreeMap::new(),
            topic_id: None,
            records: 0,
            entries: 0,
            pending: Vec::new(),
        }
    }

    fn catch_up(&mut self, shutdown: &CancellationToken, topic_id: Option<Uuid>) -> anyhow::Result<bool> {
        if let (Some(now), Some(before)) = (topic_id, self.topic_id)
            && now != before
        {
            tracing::warn!(
                "staff cards: {} was created again (its topic id changed from {before} to {now}); reading it anew",
                self.topic
            );
            self.start_over();
        }
        if topic_id.is_some() {
            self.topic_id = topic_id;
        }
        let ends = self.ends_to_read()?;
        let limit = Limit { deadline: None, first_entry: false };
        Ok(self.read(&ends, shutdown, limit)? != Reading::Stopped)
    }

    /// Forgets what was read of the topic, to read it again from its start; the cards posted here whose records
    /// are still pending stay known.
    fn start_over(&mut self) {
        self.cards.clear();
        self.next.clear();
        (self.records, self.entries) = (0, 0);
        for posted in &self.pending {
            let known = Known { card: posted.card, posted: posted.card.version };
            self.cards.insert((posted.ticket_id.clone(), posted.channel_id), known);
        }
    }

    /// The ends to read to, now, with the reader assigned to every partition (paused): a topic that now ends before
    /// what was read of it was created again, and is read anew.
    fn ends_to_read(&mut self) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
        let ends = ends(&self.consumer, &self.topic)?;
        if let Some((partition, read)) =
            self.next.iter().find(|(p, next)| ends.get(p).is_none_or(|&(_, high)| **next > high))
        {
            tracing::warn!(
                "staff cards: {}/{partition} ends before offset {read}, which was read already: the topic was created \
                 again; reading it anew",
                self.topic
            );
            self.start_over();
        }
        if ends.keys().any(|p| !self.next.contains_key(p)) {
            // A partition never read (all of them at first, or ones added to the topic) is read from its beginning;
            // the others go on where they are.
            let mut assignment = TopicPartitionList::new();
            for partition in ends.keys() {
                let from = self.next.get(partition).map_or(Offset::Beginning, |next| Offset::Offset(*next));
                assignment.add_partition_offset(&self.topic, *partition, from)?;
                self.next.entry(*partition).or_insert(0);
            }
            self.consumer.assign(&assignment).with_context(|| format!("cannot read {}", self.topic))?;
            self.pause(ends.keys().copied());
        }
        for (partition, &(low, _)) in &ends {
            let next = self.next.entry(*partition).or_insert(0);
            *next = (*next).max(low);
        }
        Ok(ends)
    }

    /// Reads every partition up to `ends` (or as far as `limit` lets it). Only the partitions with records to read
    /// are resumed, and all are paused again after: an assigned reader keeps a long-poll Fetch open at each leader,
    /// and the metadata and offset requests of the next catch-up would queue behind it on the same connection.
    fn read(
        &mut self,
        ends: &BTreeMap<i32, (i64, i64)>,
        shutdown: &CancellationToken,
        limit: Limit,
    ) -> anyhow::Result<Reading> {
        let behind_of = |next: &BTreeMap<i32, i64>, partition: i32| -> i64 {
            let high = ends.get(&partition).map_or(0, |&(_, high)| high);
            (high - next.get(&partition).copied().unwrap_or(0)).max(0)
        };
        let behind = |next: &BTreeMap<i32, i64>| -> i64 { ends.keys().map(|p| behind_of(next, *p)).sum() };
        let backlog = behind(&self.next);
        if backlog == 0 {
            return Ok(Reading::Done);
        }
        let to_read: Vec<i32> = ends.keys().copied().filter(|p| behind_of(&self.next, *p) > 0).collect();
        let resumed = self.partitions(to_read.iter().copied());
        self.consumer.resume(&resumed).with_context(|| format!("cannot read {}", self.topic))?;
        let mut report = (backlog >= REPORT_BACKLOG).then(|| Progress::new(&self.topic, backlog));
        let mut heard = Instant::now();
        let (entries, mut skipped) = (self.entries, Skipped::default());
        let reading = loop {
            if behind(&self.next) == 0 {
                break Ok(Reading::Done);
            }
            if limit.first_entry && self.entries > entries {
                break Ok(Reading::Enough);
            }
            if shutdown.is_cancelled() {
                break Ok(Reading::Stopped);
            }
            if limit.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                break Ok(Reading::OutOfTime);
            }
            if heard.elapsed() > STALL {
                let short = behind(&self.next);
                break Err(anyhow::anyhow!(
                    "reading {} got nothing for {STALL:?}, {short} records short of its end",
                    self.topic
                ));
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    heard = Instant::now();
                    let applied = apply(&mut self.cards, &mut self.next, &message);
                    self.records += 1;
                    match applied {
                        Ok(()) => self.entries += 1,
                        Err(why) => skipped.note(why, message.partition(), message.offset()),
                    }
                    if let Some(report) = &mut report {
                        report.advance(backlog - behind(&self.next), self.cards.len());
                    }
                }
                Some(Err(error)) => repeats::note(
                    repeats::Level::Warn,
                    &format!("reading {} failed; librdkafka retries by itself: {error}", self.topic),
                ),
                None => self.note_positions(),
            }
        };
        self.pause(to_read.into_iter());
        skipped.log(&self.topic);
        if let (Some(report), Ok(Reading::Done)) = (report, &reading) {
            report.finish(self.cards.len());
        }
        reading
    }

    /// The list of these partitions of the topic.
    fn partitions(&self, partitions: impl Iterator<Item = i32>) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for partition in partitions {
            list.add_partition(&self.topic, partition);
        }
        list
    }

    /// Stops fetching these partitions until they are resumed. Failing only costs time, so it is logged.
    fn pause(&self, partitions: impl Iterator<Item = i32>) {
        if let Err(error) = self.consumer.pause(&self.partitions(partitions)) {
            tracing::debug!("staff cards: could not pause the reader of {}: {error:#}", self.topic);
        }
    }

    /// Takes librdkafka's read positions into account: a position can pass offsets that hold no record for a
    /// consumer (a transaction's markers, written by some other client), which no message would move `next` past.
    fn note_positions(&mut self) {
        let Ok(positions) = self.consumer.position() else { return };
        for element in positions.elements() {
            if let (Offset::Offset(position), Some(next)) = (element.offset(), self.next.get_mut(&element.partition()))
            {
                *next = (*next).max(position);
            }
        }
    }

    /// Takes a card read from the topic (or imported) into the map, by the rule every process reads by: a card
    /// replaces the one known only if it was posted at a higher version of its ticket. A key's records can sit in
    /// two partitions (partitions added to the topic move keys), read in any order.
    fn learn(&mut self, channel_id: u64, ticket_id: &str, card: Card) {
        learn(&mut self.cards, (ticket_id.to_owned(), channel_id), card);
    }
}

/// [`Map::learn`], on the map's cards alone.
fn learn(cards: &mut BTreeMap<(String, u64), Known>, key: (String, u64), card: Card) {
    let known = cards.entry(key).or_insert(Known { card, posted: card.version });
    if card.version > known.posted {
        known.posted = card.version;
        if card.message_id == known.card.message_id {
            known.card.version = known.card.version.max(card.version);
        } else {
            known.card = card;
        }
    }
}

/// Each partition's oldest and next offsets, now: a metadata request and two offset lists (one per leader each),
/// however many partitions there are, since this is asked before every batch of cards.
fn ends(consumer: &PlainConsumer, topic: &str) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .with_context(|| format!("cannot read the metadata of {topic}"))?;
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    if partitions == 0 {
        anyhow::bail!("topic {topic} does not exist; `franz up` creates it, or create it on the cluster");
    }
    // ListOffsets takes -2 and -1 as the times of the oldest offset and of the end.
    let offsets = |at: Offset| -> anyhow::Result<BTreeMap<i32, i64>> {
        let asked = kafka::partitions_at(topic, partitions, at);
        let answer = consumer
            .offsets_for_times(asked, TIMEOUT)
            .with_context(|| format!("cannot read the offsets of {topic}"))?;
        answer
            .elements()
            .iter()
            .map(|element| {
                let partition = element.partition();
                element.error().with_context(|| format!("cannot read the offsets of {topic}/{partition}"))?;
                match element.offset() {
                    Offset::Offset(offset) => Ok((partition, offset)),
                    other => anyhow::bail!("{topic}/{partition} answered {other:?} for its offsets"),
                }
            })
            .collect()
    };
    let (lows, highs) = (offsets(Offset::Beginning)?, offsets(Offset::End)?);
    Ok((0..partitions)
        .map(|p| (p, (lows.get(&p).copied().unwrap_or(0), highs.get(&p).copied().unwrap_or(0))))
        .collect())
}

/// Applies one record of the cards topic to the map (a field of [`Map`] each: the message borrows the consumer);
/// `Err` says why it was skipped.
fn apply(
    cards: &mut BTreeMap<(String, u64), Known>,
    next: &mut BTreeMap<i32, i64>,
    message: &BorrowedMessage<'_>,
) -> Result<(), &'static str> {
    let (partition, offset) = (message.partition(), message.offset());
    let read = next.entry(partition).or_insert(0);
    *read = (*read).max(offset + 1);
    match read_entry(message.key(), message.payload()) {
        Ok(Entry::Card(channel, ticket, card)) => learn(cards, (ticket, channel), card),
        Ok(Entry::Forget(channel, ticket)) => {
            cards.remove(&(ticket, channel));
        }
        Err(Skip { why, detail }) => {
            // The record itself only at debug: a topic full of records wrong the same way must read as one kind of
            // warning, which `repeats` counts.
            let key = message.key().map(|key| crate::discord::clip(&String::from_utf8_lossy(key), 100));
            tracing::debug!(?key, ?detail, "staff cards: skipped the record at {partition}/{offset}: {why}");
            return Err(why);
        }
    }
    Ok(())
}

/// The records one read skipped, told as one warning per reason: where the first was, and how many.
#[derive(Default)]
struct Skipped(BTreeMap<&'static str, (i32, i64, u64)>);

impl Skipped {
    fn note(&mut self, why: &'static str, partition: i32, offset: i64) {
        self.0.entry(why).or_insert((partition, offset, 0)).2 += 1;
    }

    fn log(self, topic: &str) {
        for (why, (partition, offset, count)) in self.0 {
            let more =
                if count > 1 { format!(" (and {} more that are no card for it)", count - 1) } else { String::new() };
            repeats::note(
                repeats::Level::Warn,
                &format!("staff cards: skipped the record at {topic}/{partition} offset {offset}{more}: {why}"),
            );
        }
    }
}

/// The cards of an old card file, as (channel, ticket, card); `None` when there is no file.
fn legacy_rows(path: &Path) -> rusqlite::Result<Option<Vec<(u64, String, Card)>>> {
    use rusqlite::{Connection, OpenFlags};
    if !path.exists() {
        return Ok(None);
    }
    // Read and write, never create: closing the last connection folds a write-ahead log into the file, so the
    // renamed file is whole.
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let tables: i64 =
        conn.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'cards'", [], |row| {
            row.get(0)
        })?;
    if tables == 0 {
        return Ok(Some(Vec::new()));
    }
    let mut statement = conn.prepare("SELECT ticket_id, channel_id, message_id, version FROM cards")?;
    let rows = statement
        .query_map([], |row| {
            // The file kept the snowflakes as SQLite's signed integers (`as i64`); this is the way back.
            let card = Card { message_id: row.get::<_, i64>(2)? as u64, version: row.get::<_, i64>(3)?.max(0) as u64 };
            Ok((row.get::<_, i64>(1)? as u64, row.get::<_, String>(0)?, card))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(rows))
}

/// Whether a failure to read an old card file may pass by itself: anything but the file's own fault. Another
/// connection may hold it (a franz of before still running on the same data dir), or the process may be out of file
/// descriptors (SQLite's `CANTOPEN`; franz sizes its partitions to the open-file limit), memory or I/O for a moment.
fn passes(error: &rusqlite::Error) -> bool {
    !the_files_fault(error)
}

/// Whether a failure to read an old card file is the file itself, which no retry changes: it is no database, a
/// corrupt one, one without the card table's columns, or one whose values are not a card's.
fn the_files_fault(error: &rusqlite::Error) -> bool {
    use rusqlite::{Error, ErrorCode};
    match error {
        Error::SqliteFailure(failure, message) => match failure.code {
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt | ErrorCode::TypeMismatch => true,
            // SQLITE_ERROR, for a statement that does not fit the file's schema.
            ErrorCode::Unknown => message.as_deref().is_some_and(|m| m.starts_with("no such ")),
            _ => false,
        },
        // The statement (always the same one) does not fit the file's schema.
        Error::SqlInputError { .. } => true,
        Error::InvalidColumnType(..)
        | Error::FromSqlConversionFailure(..)
        | Error::IntegralValueOutOfRange(..)
        | Error::Utf8Error(..)
        | Error::InvalidColumnIndex(_)
        | Error::InvalidColumnName(_) => true,
        _ => false,
    }
}

/// Renames an old card file that was dealt with (and a write-ahead log beside it, if any) to the first free
/// `<file>.<why>[.N]`, so that nothing imports it again and nothing of it is lost.
fn set_aside(path: &Path, why: &str) -> anyhow::Result<PathBuf> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let target = (1..)
        .map(|n| match n {
            1 => path.with_file_name(format!("{name}.{why}")),
            n => path.with_file_name(format!("{name}.{why}.{n}")),
        })
        .find(|candidate| !candidate.exists())
        .expect("some name is free");
    match std::fs::rename(path, &target) {
        Ok(()) => {}
        // Another franz on the same data dir imported it meanwhile.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(target),
        Err(error) => return Err(error).with_context(|| format!("cannot rename {}", path.display())),
    }
    for suffix in ["-wal", "-shm"] {
        let beside = PathBuf::from(format!("{}{suffix}", path.display()));
        if beside.exists() {
            let _ = std::fs::rename(&beside, PathBuf::from(format!("{}{suffix}", target.display())));
        }
    }
    Ok(target)
}

/// Progress of a long read of the cards topic, logged every few seconds.
struct Progress {
    topic: String,
    total: i64,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(topic: &str, total: i64) -> Progress {
        tracing::info!("staff cards: reading {total} records of {topic}");
        Progress { topic: topic.to_owned(), total, started: Instant::now(), last: Instant::now() }
    }

    fn advance(&mut self, done: i64, cards: usize) {
        if self.last.elapsed() >= Duration::from_secs(2) {
            self.last = Instant::now();
            tracing::info!(
                "staff cards: {done} of {} records of {} read ({}%), {cards} cards",
                self.total,
                self.topic,
                done * 100 / self.total.max(1)
            );
        }
    }

    fn finish(self, cards: usize) {
        let seconds = self.started.elapsed().as_secs_f64();
        tracing::info!("staff cards: read {} records of {} in {seconds:.1} s, {cards} cards", self.total, self.topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_the_card_it_records() {
        let card = Card { message_id: 1579299211210391559, version: 4 };
        let (key, value) = record(1177000000000000077, "t-1", card);
        assert_eq!(entry(Some(key.as_bytes()), Some(&value)), Ok(Entry::Card(1177000000000000077, "t-1".into(), card)));
    }

    #[test]
    fn a_tombstone_forgets_the_card_of_its_key() {
        assert_eq!(entry(Some(b"7/t-1"), None), Ok(Entry::Forget(7, "t-1".into())));
    }

    /// The topic is written by any client of the cluster: what is no card is skipped with a reason, never a panic.
    #[test]
    fn garbage_is_no_card_and_says_why() {
        let card = |channel: &str, message: &str| {
            serde_json::json!({"ticket_id": "t-1", "channel_id": channel, "message_id": message, "version": 1})
                .to_string()
                .into_bytes()
        };
        /// A record's key and value, and what the reason must say.
        type Case<'a> = (Option<&'a [u8]>, Option<Vec<u8>>, &'a str);
        let cases: [Case<'_>; 8] = [
            (None, Some(card("7", "9")), "no key"),
            (Some(&[0xff, 0xfe]), Some(card("7", "9")), "not text"),
            (Some(b"7/t-1"), Some(b"{".to_vec()), "not a card"),
            (Some(b"7/t-1"), Some(b"[1, 2]".to_vec()), "not a card"),
            (Some(b"7/t-1"), Some(card("seven", "9")), "channel_id is not a number"),
            (Some(b"7/t-1"), Some(card("7", "-9")), "message_id is not a number"),
            (Some(b"8/t-1"), Some(card("7", "9")), "does not name its channel and ticket"),
            (Some(b"no slash"), None, "not <channel id>/<ticket id>"),
        ];
        for (key, value, why) in cases {
            let read = entry(key, value.as_deref());
            assert!(read.as_ref().is_err_and(|e| e.contains(why)), "{key:?}: {read:?}, wanted {why}");
        }
    }

    proptest::proptest! {
        #[test]
        fn props_any_bytes_are_a_card_or_a_reason(
            key in proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..40)),
            value in proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..200)),
        ) {
            let _ = entry(key.as_deref(), value.as_deref());
        }
    }

    /// The file franz wrote before the cards topic, as it wrote it.
    fn old_card_file(path: &Path, rows: &[(&str, u64, u64, u64)]) {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE cards (ticket_id TEXT PRIMARY KEY, channel_id INTEGER NOT NULL,
                                 message_id INTEGER NOT NULL, version INTEGER NOT NULL);",
        )
        .unwrap();
        for (ticket, channel, message, version) in rows {
            conn.execute(
                "INSERT INTO cards VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![ticket, *channel as i64, *message as i64, *version as i64],
            )
            .unwrap();
        }
    }

    #[test]
    fn an_old_card_file_reads_back_every_card_and_is_set_aside_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("discord-cards.sqlite");
        assert_eq!(legacy_rows(&path).unwrap(), None, "no file, nothing to import");
        // Snowflakes above i64::MAX come back as they went in.
        old_card_file(&path, &[("t-1", 7, u64::MAX - 1, 3), ("t-2", 7, 1579299211210391559, 1)]);
        let mut rows = legacy_rows(&path).unwrap().unwrap();
        rows.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            rows,
            [
                (7, "t-1".to_owned(), Card { message_id: u64::MAX - 1, version: 3 }),
                (7, "t-2".to_owned(), Card { message_id: 1579299211210391559, version: 1 }),
            ]
        );
        assert_eq!(set_aside(&path, "imported").unwrap(), dir.path().join("discord-cards.sqlite.imported"));
        assert!(!path.exists());
        assert_eq!(legacy_rows(&dir.path().join("discord-cards.sqlite.imported")).unwrap().unwrap().len(), 2);
        // An old franz run again writes a new file; its import keeps the first one.
        old_card_file(&path, &[]);
        assert_eq!(legacy_rows(&path).unwrap(), Some(Vec::new()));
        assert_eq!(set_aside(&path, "imported").unwrap(), dir.path().join("discord-cards.sqlite.imported.2"));
    }

    /// A file that is no card file never will be: that is not a failure to try again (the cards would wait for
    /// ever), while a file another franz holds is.
    #[test]
    fn an_unreadable_card_file_is_told_apart_from_one_held_by_another_franz() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.sqlite");
        std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
        let error = legacy_rows(&garbage).unwrap_err();
        assert!(!passes(&error), "{error}");
        let other = dir.path().join("other.sqlite");
        rusqlite::Connection::open(&other).unwrap().execute_batch("CREATE TABLE cards (ticket_id INTEGER)").unwrap();
        let error = legacy_rows(&other).unwrap_err();
        assert!(!passes(&error), "another schema: {error}");

        let held = dir.path().join("held.sqlite");
        old_card_file(&held, &[("t-1", 7, 9, 1)]);
        let holder = rusqlite::Connection::open(&held).unwrap();
        holder.execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;").unwrap();
        let error = std::thread::spawn(move || legacy_rows(&held).unwrap_err()).join().unwrap();
        assert!(passes(&error), "{error}");
        drop(holder);
    }

    /// Found by an attack (#33): a record of the cards topic whose message id is 0 (any client of the cluster can
    /// write one) was taken for a card. Discord has no message 0, and serenity's `MessageId::new(0)` (what
    /// `card.message_id.into()` in `follow::Poster::show` called) panics, which killed the cards' follower task at
    /// the next change of that ticket.
    #[test]
    fn a_card_naming_message_or_channel_zero_is_no_card() {
        let card = |channel: &str, message: &str| {
            serde_json::json!({"ticket_id": "t-1", "channel_id": channel, "message_id": message, "version": 1})
                .to_string()
                .into_bytes()
        };
        let read = entry(Some(b"7/t-1"), Some(&card("7", "0")));
        assert!(read.is_err(), "message id 0 was taken for a card: {read:?}");
        let read = entry(Some(b"0/t-1"), Some(&card("0", "9")));
        assert!(read.is_err(), "channel id 0 was taken for a card: {read:?}");
    }

    /// Found by an attack (#33): a tombstone was not read by the same rule as a card, whose key must be the key
    /// franz writes. `007/t-1` or `+7/t-1` is another key to Kafka (compaction keeps the card of `7/t-1` beside it),
    /// but the map forgot the card of `7/t-1` for it, so processes that read the tombstone and ones that start after
    /// it was compacted away disagreed.
    #[test]
    fn a_tombstone_with_a_key_franz_never_writes_forgets_nothing() {
        for key in [&b"007/t-1"[..], b"+7/t-1"] {
            let read = entry(Some(key), None);
            assert!(read.is_err(), "{:?} was read as {read:?}", String::from_utf8_lossy(key));
        }
    }

    /// Found by an attack (#33): skipped records are logged through `repeats::note`, whose kind of message is the
    /// text without digits. The reason named the record's key (and serde's reason quoted the bad value), so a topic
    /// full of records wrong the same way logged one warning per record at every start, instead of one and a count.
    #[test]
    fn records_wrong_the_same_way_are_one_kind_of_warning() {
        let card = serde_json::json!({"ticket_id": "t-1", "channel_id": "7", "message_id": "9", "version": 1})
            .to_string()
            .into_bytes();
        let line =
            |offset: i64, why: String| format!("staff cards: skipped the record at cards/0 offset {offset}: {why}");
        let kind = |key: &[u8], value: Vec<u8>, offset: i64| {
            repeats::kind(repeats::Level::Warn, &line(offset, entry(Some(key), Some(&value)).unwrap_err()))
        };
        assert_eq!(kind(b"abc", card.clone(), 1), kind(b"xyz", card.clone(), 2), "a wrong key");
        let version =
            |v: &str| format!(r#"{{"ticket_id": "t-1", "channel_id": "7", "message_id": "9", "version": "{v}"}}"#);
        assert_eq!(
            kind(b"7/t-1", version("abc").into_bytes(), 1),
            kind(b"7/t-1", version("xyz").into_bytes(), 2),
            "a version that is text"
        );
    }

    /// Found by an attack (#33): only what the file itself is (not a card file, another schema, corrupt) is a reason
    /// to set it aside for good. SQLite says `CANTOPEN` when the process is out of file descriptors (franz sizes its
    /// partitions to the open-file limit) and `IOERR`/`NOMEM` for a passing I/O or memory problem; `import` renamed a
    /// good card file to `.unreadable` for those, and every ticket of before got a second card.
    #[test]
    fn a_file_that_cannot_be_opened_for_now_is_not_set_aside_as_unreadable() {
        use rusqlite::ffi;
        for code in [ffi::SQLITE_CANTOPEN, ffi::SQLITE_IOERR, ffi::SQLITE_NOMEM] {
            let error = rusqlite::Error::SqliteFailure(ffi::Error::new(code), None);
            assert!(passes(&error), "{error} is taken for the file's own fault");
        }
    }

    /// A card is replaced only by one posted at a higher version of its ticket, whatever order two records of a key
    /// are read in; an edit raises what the card shows, not the version it was posted at.
    #[test]
    fn a_card_is_replaced_only_by_one_posted_at_a_higher_version() {
        let key = || ("t-1".to_owned(), 7);
        let (old, new) = (Card { message_id: 1, version: 1 }, Card { message_id: 2, version: 2 });
        for order in [[old, new], [new, old]] {
            let mut cards = BTreeMap::new();
            for card in order {
                learn(&mut cards, key(), card);
            }
            assert_eq!(cards[&key()].card, new, "read in the order {order:?}");
        }
        let mut cards = BTreeMap::new();
        learn(&mut cards, key(), old);
        cards.get_mut(&key()).unwrap().card.version = 5; // edited up to version 5
        learn(&mut cards, key(), old);
        assert_eq!(cards[&key()].card, Card { message_id: 1, version: 5 }, "its own record read again");
        learn(&mut cards, key(), new);
        assert_eq!(cards[&key()].card, new, "a card posted after the first was deleted");
    }
}
