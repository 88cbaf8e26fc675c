//! Which Discord message is each ticket's staff card: a map from staff channel and ticket to the message and the
//! ticket version it shows, kept in memory and read from the cards topic (`discord-cards`, a [`StaffCard`] per
//! record), which every franz on the cluster reads and writes. A card is recorded there when it is posted; edits
//! only change what this process remembers.
//!
//! Not in the data dir, on purpose: the cards' consumer group is shared, so after a rebalance another process draws
//! the cards of a partition, and a memory of its own would not know the cards posted before (Discord's nonce stops
//! a repeated post for a few minutes only). Not in the ticket store either: the store is a cache rebuilt from
//! `ticket-events`, and the message ids are facts about Discord that no event holds. The card file of franz before
//! the topic (`discord-cards.sqlite` beside the store) is imported once ([`Cards::import`]). This module does no
//! Discord I/O; it only reads and writes the topic.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

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
/// A backlog this large is a start worth reporting progress on.
const REPORT_BACKLOG: i64 = 20_000;
/// Cards of an old card file published at once before their acknowledgements are awaited.
const IMPORT_CHUNK: usize = 1_000;

/// The card map of one follower. Reads of the topic run on the blocking pool (librdkafka's calls block); lookups
/// only take a lock. Drop it on the blocking pool too: its reader is a Kafka consumer.
pub struct Cards {
    map: Arc<Mutex<Map>>,
    topic: String,
    producer: Producer,
}

/// The map and the reader that keeps it, behind one lock: only the cards' follower uses it, one call at a time.
struct Map {
    consumer: PlainConsumer,
    topic: String,
    cards: HashMap<(u64, String), Card>,
    /// The next offset to read of each partition assigned so far.
    next: BTreeMap<i32, i64>,
}

impl std::fmt::Debug for Cards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cards").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl Cards {
    /// A map of the cards on `topic` at `bootstrap`, empty until [`Cards::catch_up`]; `producer` records new cards.
    pub fn open(bootstrap: &str, topic: &str, producer: Producer) -> anyhow::Result<Cards> {
        let consumer: PlainConsumer = kafka::consumer_config(bootstrap)
            // Assigned by hand and never committed: every start reads the whole map.
            .set("group.id", "franz-discord-cards")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Records removed under the reader (the topic should keep them for ever) are passed from the oldest on.
            .set("auto.offset.reset", "earliest")
            .create_with_context(kafka::Quiet)
            .context("cannot create the reader of the staff cards")?;
        let map = Map { consumer, topic: topic.to_owned(), cards: HashMap::new(), next: BTreeMap::new() };
        Ok(Cards { map: Arc::new(Mutex::new(map)), topic: topic.to_owned(), producer })
    }

    /// Reads the topic up to the end it has now, so that every card recorded before this call is known (another
    /// process's included); `Ok(false)` if `shutdown` came first. Fails when the topic does not exist or the cluster
    /// gives nothing for [`STALL`]; what was read stays read, so trying again goes on from there.
    pub async fn catch_up(&self, shutdown: &CancellationToken) -> anyhow::Result<bool> {
        let (map, stop) = (self.map.clone(), shutdown.clone());
        let reading = tokio::task::spawn_blocking(move || lock(&map).catch_up(&stop));
        // A metadata or watermark request can wait for a cluster that is gone for up to `TIMEOUT`; shutdown does not
        // wait for it. The read ends by itself on the blocking pool, and the map is dropped there.
        tokio::select! {
            read = reading => read.context("reading the staff cards ended abnormally")?,
            _ = shutdown.cancelled() => Ok(false),
        }
    }

    /// The card of `ticket_id` in `channel_id`, as far as the map has read.
    pub fn get(&self, channel_id: u64, ticket_id: &str) -> Option<Card> {
        lock(&self.map).cards.get(&(channel_id, ticket_id.to_owned())).copied()
    }

    /// How many cards the map knows.
    pub fn len(&self) -> usize {
        lock(&self.map).cards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remembers here that the card shows `card.version` now (after an edit). Not recorded on the topic: another
    /// process that draws the ticket later edits the card once more at worst.
    pub fn shown(&self, channel_id: u64, ticket_id: &str, card: Card) {
        lock(&self.map).cards.insert((channel_id, ticket_id.to_owned()), card);
    }

    /// Records a card that was just posted: on the topic first, acknowledged by the cluster, then in the map, so
    /// that no process can draw the ticket without knowing the card once this returns.
    pub async fn record(&self, channel_id: u64, ticket_id: &str, card: Card) -> anyhow::Result<()> {
        let (key, value) = record(channel_id, ticket_id, card);
        kafka::publish(&self.producer, &self.topic, Some(&key), &value)
            .await
            .with_context(|| format!("cannot record the card of {ticket_id} on {}", self.topic))?;
        self.shown(channel_id, ticket_id, card);
        Ok(())
    }

    /// Imports the card file of franz before the cards topic, once: every card in it that the topic does not know
    /// yet is recorded there, and then the file is renamed to `<file>.imported`, so an upgrade posts no second card
    /// for the tickets of before. Call after [`Cards::catch_up`]. `None` when there is no such file. A failure that
    /// may pass (the file locked by another franz, the cluster) leaves the file where it is, and trying again records
    /// only what the topic still lacks. A file that is no card file SQLite can read (corrupt, another schema) never
    /// will be: it is renamed to `<file>.unreadable` and said so ([`Imported::unreadable`]), rather than hold up the
    /// cards for ever.
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
                return Ok(Some(Imported { rows: 0, recorded: 0, renamed_to, unreadable: Some(error.to_string()) }));
            }
        };
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
            for (channel, ticket, card) in chunk {
                self.shown(*channel, ticket, *card);
            }
        }
        let renamed_to = {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || set_aside(&path, "imported"))
                .await
                .context("renaming the old card file ended")??
        };
        Ok(Some(Imported { rows: rows.len(), recorded: missing.len(), renamed_to, unreadable: None }))
    }
}

/// What [`Cards::import`] did with an old card file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The cards in the file.
    pub rows: usize,
    /// The ones the topic did not know yet, now recorded there.
    pub recorded: usize,
    /// Where the file is now.
    pub renamed_to: PathBuf,
    /// Why the file could not be read, when it was set aside unread: its tickets may get a second card.
    pub unreadable: Option<String>,
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

/// Reads a record of the cards topic; `Err` says why it is no card (such a record is skipped, never fatal: the
/// topic is written by any client of the cluster).
fn entry(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Entry, String> {
    let key = key.ok_or("it has no key")?;
    let key = std::str::from_utf8(key).map_err(|_| "its key is not text")?;
    let Some(value) = value else {
        let (channel, ticket) = key.split_once('/').ok_or("its key is not <channel id>/<ticket id>")?;
        let channel = channel.parse().map_err(|_| "its key's channel id is not a number")?;
        return Ok(Entry::Forget(channel, ticket.to_owned()));
    };
    let card: StaffCard =
        serde_json::from_slice(value).map_err(|error| format!("its value is not a card ({error})"))?;
    let channel: u64 = card.channel_id.parse().map_err(|_| "its channel_id is not a number")?;
    let message_id: u64 = card.message_id.parse().map_err(|_| "its message_id is not a number")?;
    if key != StaffCard::key(channel, &card.ticket_id) {
        return Err(format!("its key {key:?} does not name its channel and ticket"));
    }
    Ok(Entry::Card(channel, card.ticket_id, Card { message_id, version: card.version }))
}

impl Map {
    fn catch_up(&mut self, shutdown: &CancellationToken) -> anyhow::Result<bool> {
        let ends = self.ends()?;
        if let Some((partition, read)) =
            self.next.iter().find(|(p, next)| ends.get(p).is_none_or(|&(_, high)| **next > high))
        {
            tracing::warn!(
                "staff cards: {}/{partition} ends before offset {read}, which was read already: the topic was created \
                 again; reading it anew",
                self.topic
            );
            self.cards.clear();
            self.next.clear();
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
        }
        for (partition, &(low, _)) in &ends {
            let next = self.next.entry(*partition).or_insert(0);
            *next = (*next).max(low);
        }
        let behind = |next: &BTreeMap<i32, i64>| -> i64 {
            ends.iter().map(|(p, &(_, high))| (high - next.get(p).copied().unwrap_or(0)).max(0)).sum()
        };
        let backlog = behind(&self.next);
        let mut report = (backlog >= REPORT_BACKLOG).then(|| Progress::new(&self.topic, backlog));
        let mut heard = Instant::now();
        while behind(&self.next) > 0 {
            if shutdown.is_cancelled() {
                return Ok(false);
            }
            if heard.elapsed() > STALL {
                let short = behind(&self.next);
                anyhow::bail!("reading {} got nothing for {STALL:?}, {short} records short of its end", self.topic);
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    heard = Instant::now();
                    apply(&mut self.cards, &mut self.next, &self.topic, &message);
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
        }
        if let Some(report) = report {
            report.finish(self.cards.len());
        }
        Ok(true)
    }

    /// Each partition's oldest and next offsets, now: a metadata request and two offset lists (one per leader
    /// each), however many partitions there are, since this is asked before every batch of cards.
    fn ends(&self) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.topic), TIMEOUT)
            .with_context(|| format!("cannot read the metadata of {}", self.topic))?;
        let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32;
        if partitions == 0 {
            anyhow::bail!("topic {} does not exist; `franz up` creates it, or create it on the cluster", self.topic);
        }
        // ListOffsets takes -2 and -1 as the times of the oldest offset and of the end.
        let offsets = |at: Offset| -> anyhow::Result<BTreeMap<i32, i64>> {
            let asked = kafka::partitions_at(&self.topic, partitions, at);
            let answer = self
                .consumer
                .offsets_for_times(asked, TIMEOUT)
                .with_context(|| format!("cannot read the offsets of {}", self.topic))?;
            answer
                .elements()
                .iter()
                .map(|element| {
                    let partition = element.partition();
                    element
                        .error()
                        .with_context(|| format!("cannot read the offsets of {}/{partition}", self.topic))?;
                    match element.offset() {
                        Offset::Offset(offset) => Ok((partition, offset)),
                        other => anyhow::bail!("{}/{partition} answered {other:?} for its offsets", self.topic),
                    }
                })
                .collect()
        };
        let (lows, highs) = (offsets(Offset::Beginning)?, offsets(Offset::End)?);
        Ok((0..partitions)
            .map(|p| (p, (lows.get(&p).copied().unwrap_or(0), highs.get(&p).copied().unwrap_or(0))))
            .collect())
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
}

/// Applies one record of the cards topic to the map (a field of [`Map`] each: the message borrows the consumer).
fn apply(
    cards: &mut HashMap<(u64, String), Card>,
    next: &mut BTreeMap<i32, i64>,
    topic: &str,
    message: &BorrowedMessage<'_>,
) {
    let (partition, offset) = (message.partition(), message.offset());
    let read = next.entry(partition).or_insert(0);
    *read = (*read).max(offset + 1);
    match entry(message.key(), message.payload()) {
        Ok(Entry::Card(channel, ticket, card)) => {
            cards.insert((channel, ticket), card);
        }
        Ok(Entry::Forget(channel, ticket)) => {
            cards.remove(&(channel, ticket));
        }
        Err(why) => repeats::note(
            repeats::Level::Warn,
            &format!("staff cards: skipped the record at {topic}/{partition} offset {offset}: {why}"),
        ),
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

/// Whether a failure to read an old card file may pass by itself: another connection holds it (a franz of before
/// still running on the same data dir). Anything else is the file itself.
fn passes(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(failure, _)
        if matches!(failure.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
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
}
