//! The ticket store: a SQLite view of `ticket-events`, the one place the desk, the API, the CLI and akte read
//! tickets from.
//!
//! It is a cache: every row follows from the events, and a store deleted at any time rebuilds itself from the
//! topic. Each batch of events is applied in one transaction together with the consumed offsets, so an event is
//! applied exactly once even across crashes; an event whose command was applied already (a duplicate: same ticket,
//! same command id) is skipped. Rows are computed with `lifecycle::apply`, the same function akte decides with, so
//! a row always equals the fold of its ticket's events. The database runs in WAL mode: readers never wait for the
//! writer, and the writer's transactions are short. Readers come in two small pools, one for lookups and one for
//! lists and searches, and akte has a connection of its own, so what one kind of read costs never keeps the others
//! waiting. `apply` is the writing half, `query` the reading half, `follow` the loop that feeds it from Kafka.

pub mod follow;
pub mod opened;
pub mod query;
mod schema;

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OptionalExtension as _, params};
use tokio::sync::watch;

use crate::lifecycle::{self, TicketState};
use crate::schema::lifecycle::{Change, Clock, Delivery, Event, Person, Priority, Status};

/// Reading connections for lookups of one ticket or answer (pages, commands, cards, metrics), which are quick.
const LOOKUP_READERS: u32 = 4;
/// Reading connections for lists and searches, whose cost the person asking chooses: kept apart, so that searches
/// can never take the connections a command's answer needs. akte has a connection of its own
/// ([`Store::own_reader`]), so no reader can keep it from deciding.
const SEARCH_READERS: u32 = 6;
/// How long a read waits for a free connection before the store is called busy.
const POOL_WAIT: Duration = Duration::from_secs(5);
/// How many virtual-machine steps SQLite takes between two looks at a read's deadline (a few milliseconds).
const DEADLINE_STEPS: i32 = 10_000;

/// The reading side of the store, cheap to clone.
#[derive(Clone)]
pub struct Store {
    lookups: r2d2::Pool<SqliteConnectionManager>,
    searches: r2d2::Pool<SqliteConnectionManager>,
    path: PathBuf,
    /// Bumped after every applied batch, so waiters (read-your-writes, akte's catch-up) wake up.
    applied: watch::Receiver<Progress>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

/// How far the store has applied `ticket-events`: the next offset of each partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub next: HashMap<i32, i64>,
    /// Whether the store has reached the end of the topic as it was when the store started.
    pub caught_up: bool,
}

/// The writing side: one per store, owned by the loop that follows the topic.
pub struct Writer {
    conn: Connection,
    progress: watch::Sender<Progress>,
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub events: u64,
    /// Events of commands applied before (redelivered), skipped.
    pub duplicates: u64,
    /// Records that are not franz events, skipped with a log line.
    pub unreadable: u64,
}

/// One record of `ticket-events` as the writer takes it.
pub struct Record<'a> {
    pub partition: i32,
    pub offset: i64,
    pub payload: &'a [u8],
}

/// A record of `ticket-events` read and parsed, so that parsing can happen on another thread than the writing.
pub struct Parsed {
    pub partition: i32,
    pub offset: i64,
    pub payload: Vec<u8>,
    /// The event, or why the record is none.
    pub event: Result<Event, String>,
}

impl Parsed {
    pub fn new(partition: i32, offset: i64, payload: Vec<u8>) -> Parsed {
        let event = serde_json::from_slice(&payload).map_err(|error: serde_json::Error| error.to_string());
        Parsed { partition, offset, payload, event }
    }
}

/// Which topic a store follows. A name alone does not say it: another cluster, or the same one after the topic was
/// deleted and created again, has a topic of that name with other events. So the store also records the cluster's
/// id and the topic's id (Kafka's topic UUID), each `None` when the cluster could not tell (see
/// `kafka::identity`); an unknown part is not compared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub topic: String,
    pub cluster_id: Option<String>,
    pub topic_id: Option<uuid::Uuid>,
}

impl Identity {
    /// A topic known by its name only.
    pub fn named(topic: &str) -> Identity {
        Identity { topic: topic.to_owned(), ..Identity::default() }
    }
}

/// Opens (or creates) the store at `path`, for the events of the topic `identity` names. A store built from
/// another topic (by name, cluster id or topic id), or by an incompatible franz, is emptied to be rebuilt.
pub fn open(path: &Path, identity: &Identity) -> anyhow::Result<(Store, Writer)> {
    if let Some(dir) = path.parent() {
        crate::files::private_dir(dir)?;
    }
    let mut conn =
        Connection::open(path).with_context(|| format!("cannot open the ticket store {}", path.display()))?;
    schema::prepare(&mut conn, identity)
        .with_context(|| format!("cannot prepare the ticket store {}", path.display()))?;
    let next = schema::offsets(&conn)?;
    let (progress, applied) = watch::channel(Progress { next, caught_up: false });
    // Readers never create the file: a store deleted while franz runs makes reads fail (and the next start
    // rebuild it) instead of answering from an empty database.
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let manager = || SqliteConnectionManager::file(path).with_flags(flags).with_init(schema::reader);
    let pool = |size: u32| {
        r2d2::Pool::builder()
            .max_size(size)
            .connection_timeout(POOL_WAIT)
            .max_lifetime(None)
            .idle_timeout(None)
            .build(manager())
            .with_context(|| format!("cannot open readers of {}", path.display()))
    };
    let (lookups, searches) = (pool(LOOKUP_READERS)?, pool(SEARCH_READERS)?);
    Ok((Store { lookups, searches, path: path.to_owned(), applied }, Writer { conn, progress }))
}

impl Store {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A reading connection (waits for one when all are busy).
    pub fn reader(&self) -> anyhow::Result<r2d2::PooledConnection<SqliteConnectionManager>> {
        self.lookups.get().context("no connection to the ticket store")
    }

    /// A reading connection of `kind` that stops whatever it runs once it has run for `limit`: the desk's reads, so
    /// that no request holds a connection for longer than that, whatever it asks for. Waits at most a few seconds
    /// for a free connection, then says the store is busy.
    pub fn reader_within(&self, kind: Reads, limit: Duration) -> Result<TimedReader, ReadError> {
        let pool = match kind {
            Reads::Lookups => &self.lookups,
            Reads::Searches => &self.searches,
        };
        let conn = pool.get().map_err(|_| ReadError::Busy)?;
        let stopped = Arc::new(AtomicBool::new(false));
        let (deadline, flag) = (Instant::now() + limit, stopped.clone());
        conn.progress_handler(
            DEADLINE_STEPS,
            Some(move || {
                let late = Instant::now() >= deadline;
                if late {
                    flag.store(true, Ordering::Relaxed);
                }
                late
            }),
        )
        .map_err(|error| ReadError::Failed(error.into()))?;
        Ok(TimedReader { conn, stopped, limit })
    }

    /// A reading connection outside the pool, for akte alone: what the desk's readers do never keeps akte from
    /// deciding a command.
    pub fn own_reader(&self) -> anyhow::Result<Connection> {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&self.path, flags)
            .with_context(|| format!("cannot open a reader of {}", self.path.display()))?;
        schema::reader(&mut conn).with_context(|| format!("cannot prepare a reader of {}", self.path.display()))?;
        Ok(conn)
    }

    /// What has been applied so far.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.applied.clone()
    }

    /// Waits until the store holds the event that answers command `command_id` of ticket `ticket_id` (akte's
    /// decision), or `timeout` passes (then `None`).
    pub async fn answer(
        &self,
        ticket_id: &str,
        command_id: &str,
        timeout: std::time::Duration,
    ) -> anyhow::Result<Option<Event>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut progress = self.applied.clone();
        loop {
            progress.borrow_and_update();
            let (store, ticket, id) = (self.clone(), ticket_id.to_owned(), command_id.to_owned());
            let found = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<Event>> {
                let conn = store.reader()?;
                Ok(query::answer(&conn, &ticket, &id)?)
            })
            .await
            .context("a read of the ticket store ended abnormally")??;
            if found.is_some() {
                return Ok(found);
            }
            match tokio::time::timeout_at(deadline, progress.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Ok(None),
            }
        }
    }

    /// Waits until `ready` holds for the store's progress, or `timeout` passes (then `false`).
    pub async fn wait_for(&self, timeout: std::time::Duration, ready: impl FnMut(&Progress) -> bool) -> bool {
        let mut progress = self.applied.clone();
        tokio::time::timeout(timeout, progress.wait_for(ready)).await.is_ok_and(|r| r.is_ok())
    }
}

/// Which readers a read takes its connection from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// One ticket, one answer: quick, and what a command's answer waits for.
    Lookups,
    /// Lists and searches, whose cost the caller chooses.
    Searches,
}

/// Why a read with a time limit did not answer.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Every connection was in use for as long as a read may wait for one.
    #[error("the ticket store is busy (every connection is in use); try again in a moment")]
    Busy,
    /// The read ran for its whole time limit and was stopped.
    #[error(
        "the ticket store stopped this read after {0:?}; narrow it down (longer search words, a status, a label or \
         an assignee)"
    )]
    TooLong(Duration),
    #[error("the ticket store failed: {0:#}")]
    Failed(anyhow::Error),
}

/// A pooled reading connection with a deadline (see [`Store::reader_within`]); back in the pool without it.
pub struct TimedReader {
    conn: r2d2::PooledConnection<SqliteConnectionManager>,
    stopped: Arc<AtomicBool>,
    limit: Duration,
}

impl TimedReader {
    /// Whether a statement on this connection was stopped at the deadline.
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Why the read did not answer: [`ReadError::TooLong`] when it was stopped, else the error itself.
    pub fn explain(&self, error: impl Into<anyhow::Error>) -> ReadError {
        if self.stopped() { ReadError::TooLong(self.limit) } else { ReadError::Failed(error.into()) }
    }
}

impl std::ops::Deref for TimedReader {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Drop for TimedReader {
    fn drop(&mut self) {
        // The connection goes back to the pool: the next read sets its own deadline.
        let _ = self.conn.progress_handler(0, None::<fn() -> bool>);
    }
}

/// A ticket's row as the writer keeps it during a batch.
struct Row {
    seq: Option<i64>,
    /// `None` until the ticket's `created` event.
    state: Option<TicketState>,
    stored_labels: BTreeSet<String>,
    new_comments: Vec<String>,
    dirty: bool,
}

impl Writer {
    /// The next offset to read, per partition (absent: from the start).
    pub fn next_offsets(&self) -> HashMap<i32, i64> {
        self.progress.borrow().next.clone()
    }

    /// Empties the store, to rebuild it from the start of the topic.
    pub fn reset(&mut self, why: &str) -> anyhow::Result<()> {
        tracing::warn!("ticket store {}: {why}; rebuilding it from the events", self.conn.path().unwrap_or("?"));
        schema::clear(&self.conn)?;
        self.progress.send_replace(Progress::default());
        Ok(())
    }

    /// Starts a bulk rebuild: an empty store about to apply a large backlog builds its filter indexes at the end.
    pub fn begin_bulk(&mut self) -> anyhow::Result<()> {
        Ok(schema::drop_filter_indexes(&self.conn)?)
    }

    /// Ends a bulk rebuild: builds the filter indexes.
    pub fn end_bulk(&mut self) -> anyhow::Result<()> {
        Ok(schema::create_indexes(&self.conn)?)
    }

    /// Marks the store as caught up with the topic (the first time it reaches the end after starting).
    pub fn caught_up(&self) {
        self.progress.send_if_modified(|p| !std::mem::replace(&mut p.caught_up, true));
    }

    /// Applies a batch in one transaction with its offsets. Records below a partition's stored offset (read
    /// again after a crash) are skipped.
    pub fn apply(&mut self, records: &[Record<'_>]) -> anyhow::Result<Applied> {
        let parsed: Vec<Parsed> =
            records.iter().map(|r| Parsed::new(r.partition, r.offset, r.payload.to_vec())).collect();
        self.apply_parsed(&parsed)
    }

    /// [`Writer::apply`] of records parsed already.
    pub fn apply_parsed(&mut self, records: &[Parsed]) -> anyhow::Result<Applied> {
        let mut applied = Applied::default();
        let mut next = self.progress.borrow().next.clone();
        let tx = self.conn.transaction()?;
        let mut rows: HashMap<String, Row> = HashMap::new();
        // Rows are saved in the order their tickets first appear, so new tickets get their seq (the list's
        // newest-first order) in event order.
        let mut order: Vec<String> = Vec::new();
        for record in records {
            let expected = next.get(&record.partition).copied().unwrap_or(0);
            if record.offset < expected {
                continue;
            }
            next.insert(record.partition, record.offset + 1);
            let event: &Event = match &record.event {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(partition = record.partition, offset = record.offset, %error, "not a ticket event; skipped");
                    applied.unreadable += 1;
                    continue;
                }
            };
            let inserted = tx.prepare_cached(
                "INSERT OR IGNORE INTO events (event_id, ticket_id, caused_by, version, type, at, actor, json, partition, offset)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                event.event_id,
                event.ticket_id,
                event.caused_by,
                event.version.map(|v| v as i64),
                event.change.name(),
                event.at,
                event.actor.name,
                std::str::from_utf8(&record.payload).unwrap_or_default(),
                record.partition,
                record.offset,
            ])?;
            if inserted == 0 {
                applied.duplicates += 1;
                continue;
            }
            applied.events += 1;
            if event.version.is_none() {
                continue;
            }
            let row = match rows.entry(event.ticket_id.clone()) {
                Entry::Occupied(row) => row.into_mut(),
                Entry::Vacant(slot) => {
                    order.push(event.ticket_id.clone());
                    let loaded = load(&tx, &event.ticket_id)?;
                    slot.insert(Row {
                        seq: loaded.as_ref().map(|(seq, _)| *seq),
                        stored_labels: loaded.as_ref().map(|(_, s)| s.labels.clone()).unwrap_or_default(),
                        state: loaded.map(|(_, state)| state),
                        new_comments: Vec::new(),
                        dirty: false,
                    })
                }
            };
            let version = |state: &Option<TicketState>| state.as_ref().map_or(0, |s| s.version);
            let before = version(&row.state);
            let clocks_before = row.state.as_ref().map(|s| s.clocks.clone()).unwrap_or_default();
            row.state = lifecycle::apply(row.state.take(), event);
            if version(&row.state) != before {
                if let Some(state) = &row.state {
                    record_outcomes(&tx, event, &clocks_before, state)?;
                }
                match &event.change {
                    Change::Commented { body, .. } => row.new_comments.push(body.clone()),
                    Change::SubmitterWrote { body, message_id, .. } => {
                        row.new_comments.push(body.clone());
                        // A message recorded, so that it is never taken again (`query::written`).
                        if let Some(message) = message_id {
                            tx.prepare_cached("INSERT OR IGNORE INTO written (message_id, ticket_id) VALUES (?1, ?2)")?
                                .execute(params![message, event.ticket_id])?;
                        }
                    }
                    // The message that opened the ticket (a mail), so an answer to it finds the ticket too.
                    Change::Created { message_id: Some(message), .. } => {
                        tx.prepare_cached("INSERT OR IGNORE INTO written (message_id, ticket_id) VALUES (?1, ?2)")?
                            .execute(params![message, event.ticket_id])?;
                    }
                    // A message franz sent, so that an answer to it finds its ticket.
                    Change::Delivery(Delivery { message_id: Some(message), delivered: true, channel_id, .. }) => {
                        tx.prepare_cached("INSERT OR IGNORE INTO sent (message_id, ticket_id) VALUES (?1, ?2)")?
                            .execute(params![message, event.ticket_id])?;
                        // The ticket's own thread: its conversation goes on there (the first one opened counts).
                        if let Some(channel) = channel_id {
                            tx.prepare_cached("INSERT OR IGNORE INTO threads (ticket_id, channel_id) VALUES (?1, ?2)")?
                                .execute(params![event.ticket_id, channel])?;
                        }
                    }
                    _ => {}
                }
                row.dirty = true;
            }
        }
        for id in order {
            if let Some(row) = rows.remove(&id).filter(|row| row.dirty) {
                save(&tx, row)?;
            }
        }
        for (partition, next) in &next {
            tx.prepare_cached("INSERT OR REPLACE INTO offsets (partition, next) VALUES (?1, ?2)")?
                .execute(params![partition, next])?;
        }
        tx.commit()?;
        self.progress.send_modify(|p| p.next = next);
        Ok(applied)
    }
}

/// The service-level targets `event` decided on its ticket, now `state` (`levels::outcomes`): when, for which
/// priority, and for whom: who met it (an answer, a close), or whose ticket it was when missed. Kept by the
/// ticket's version and the target, so an event applied again counts nothing twice.
fn record_outcomes(tx: &Connection, event: &Event, before: &[Clock], state: &TicketState) -> rusqlite::Result<()> {
    for outcome in crate::lifecycle::levels::outcomes(before, &state.clocks, &event.change) {
        let by_actor = outcome.met && event.actor.source != crate::schema::lifecycle::ActorSource::Franz;
        let person = if by_actor { Some(event.actor.person()) } else { state.assignee.clone() };
        tx.prepare_cached(
            "INSERT OR IGNORE INTO outcomes (ticket_id, version, target, at, priority, person, person_name, met, team)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            event.ticket_id,
            state.version as i64,
            outcome.target.name(),
            event.at,
            state.priority.name(),
            person.as_ref().map(Person::key),
            person.as_ref().map(|p| p.name.as_str()),
            outcome.met,
            state.team,
        ])?;
    }
    Ok(())
}

/// The columns `load` and the queries read, in order.
pub(crate) const TICKET_COLUMNS: &str = "seq, id, version, status, assignee, priority, labels, contact, contact_id, \
    origin, body, submitted, created_at, first_claimed_at, closed_at, closed_by, close_reason, updated_at, comments, \
    guild_id, channel_id, assignee_name, closed_by_name, answered, follows, clocks, team, rule, rating, \
    rating_comment, rated_at";

/// A ticket row as a state, with its seq.
pub(crate) fn ticket_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, TicketState)> {
    let status: String = row.get(3)?;
    let priority: String = row.get(5)?;
    let labels: String = row.get(6)?;
    Ok((
        row.get(0)?,
        TicketState {
            id: row.get(1)?,
            version: row.get::<_, i64>(2)? as u64,
            status: Status::parse(&status).unwrap_or_default(),
            assignee: person(row, 4, 21)?,
            priority: Priority::parse(&priority).unwrap_or_default(),
            labels: labels.split('\n').filter(|l| !l.is_empty()).map(str::to_owned).collect(),
            contact: row.get(7)?,
            contact_id: row.get(8)?,
            origin: row.get(9)?,
            body: row.get(10)?,
            submitted: row.get(11)?,
            created_at: row.get(12)?,
            first_claimed_at: row.get(13)?,
            closed_at: row.get(14)?,
            closed_by: person(row, 15, 22)?,
            close_reason: row.get(16)?,
            updated_at: row.get(17)?,
            comments: row.get::<_, i64>(18)? as u64,
            guild_id: row.get(19)?,
            channel_id: row.get(20)?,
            answered: row.get(23)?,
            follows: row.get(24)?,
            clocks: row
                .get::<_, Option<String>>(25)?
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default(),
            team: row.get(26)?,
            rule: row.get(27)?,
            rating: match (row.get::<_, Option<u8>>(28)?, row.get::<_, Option<String>>(30)?) {
                (Some(rating), Some(at)) => Some(crate::lifecycle::Rating { rating, comment: row.get(29)?, at }),
                _ => None,
            },
        },
    ))
}

/// The person whose identity key is in column `key` and name in column `name`, if any.
fn person(row: &rusqlite::Row<'_>, key: usize, name: usize) -> rusqlite::Result<Option<Person>> {
    let key: Option<String> = row.get(key)?;
    let name: Option<String> = row.get(name)?;
    Ok(key.map(|key| {
        let name = name.unwrap_or_else(|| key.clone());
        Person::from_key(&key, &name)
    }))
}

fn load(conn: &Connection, id: &str) -> rusqlite::Result<Option<(i64, TicketState)>> {
    conn.prepare_cached(&format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?1"))?
        .query_row([id], ticket_from_row)
        .optional()
}

fn save(conn: &Connection, row: Row) -> rusqlite::Result<()> {
    let Some(t) = &row.state else { return Ok(()) };
    let labels = t.labels.iter().map(String::as_str).collect::<Vec<_>>().join("\n");
    let clocks = (!t.clocks.is_empty()).then(|| serde_json::to_string(&t.clocks).unwrap_or_default());
    let next_check = crate::lifecycle::levels::next_check(&t.clocks);
    let due_at = crate::lifecycle::levels::due_at(&t.clocks);
    let values = params![
        t.id,
        t.version as i64,
        t.status.name(),
        t.assignee.as_ref().map(Person::key),
        t.priority.name(),
        labels,
        t.contact,
        t.contact_id,
        t.origin,
        t.body,
        t.submitted,
        t.created_at,
        t.first_claimed_at,
        t.closed_at,
        t.closed_by.as_ref().map(Person::key),
        t.close_reason,
        t.updated_at,
        t.comments as i64,
        t.guild_id,
        t.channel_id,
        t.assignee.as_ref().map(|p| p.name.as_str()),
        t.closed_by.as_ref().map(|p| p.name.as_str()),
        t.answered,
        t.follows,
        clocks,
        next_check,
        due_at,
        t.team,
        t.rule,
        t.rating.as_ref().map(|r| r.rating),
        t.rating.as_ref().and_then(|r| r.comment.as_deref()),
        t.rating.as_ref().map(|r| r.at.as_str()),
    ];
    let seq = match row.seq {
        Some(seq) => {
            conn.prepare_cached(
                "UPDATE tickets SET id = ?1, version = ?2, status = ?3, assignee = ?4, priority = ?5, labels = ?6,
                 contact = ?7, contact_id = ?8, origin = ?9, body = ?10, submitted = ?11, created_at = ?12,
                 first_claimed_at = ?13, closed_at = ?14, closed_by = ?15, close_reason = ?16, updated_at = ?17,
                 comments = ?18, guild_id = ?19, channel_id = ?20, assignee_name = ?21, closed_by_name = ?22,
                 answered = ?23, follows = ?24, clocks = ?25, next_check = ?26, due_at = ?27, team = ?28,
                 rule = ?29, rating = ?30, rating_comment = ?31, rated_at = ?32 WHERE seq = ?33",
            )?
            .execute(rusqlite::params_from_iter(values.iter().copied().chain([&seq as &dyn rusqlite::ToSql])))?;
            if !row.new_comments.is_empty() {
                conn.prepare_cached("UPDATE search SET comments = comments || char(10) || ?1 WHERE rowid = ?2")?
                    .execute(params![row.new_comments.join("\n"), seq])?;
            }
            seq
        }
        None => {
            conn.prepare_cached(
                "INSERT INTO tickets (id, version, status, assignee, priority, labels, contact, contact_id, origin,
                 body, submitted, created_at, first_claimed_at, closed_at, closed_by, close_reason, updated_at,
                 comments, guild_id, channel_id, assignee_name, closed_by_name, answered, follows, clocks, next_check,
                 due_at, team, rule, rating, rating_comment, rated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,
                 ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32)",
            )?
            .execute(values)?;
            let seq = conn.last_insert_rowid();
            conn.prepare_cached("INSERT INTO search (rowid, body, contact, comments) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![seq, t.body, t.contact, row.new_comments.join("\n")])?;
            seq
        }
    };
    if row.stored_labels != t.labels {
        for gone in row.stored_labels.difference(&t.labels) {
            conn.prepare_cached("DELETE FROM labels WHERE label = ?1 AND seq = ?2")?.execute(params![gone, seq])?;
        }
        for new in t.labels.difference(&row.stored_labels) {
            conn.prepare_cached("INSERT OR IGNORE INTO labels (label, seq) VALUES (?1, ?2)")?
                .execute(params![new, seq])?;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
