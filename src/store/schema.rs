//! The ticket store's tables, and what happens when a store on disk was built by another franz or from another
//! topic (another cluster's, or one deleted and created again under the same name): it is emptied and rebuilt,
//! never trusted.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension as _};

use super::Identity;

/// Bumped whenever the tables change; a store with another version is rebuilt from the events.
/// 4: `tickets.guild_id` and `tickets.channel_id`.
/// 5: `tickets.assignee` and `tickets.closed_by` hold identity keys (`staff:ana`, `discord:42`), and
/// `assignee_name`, `closed_by_name` their names.
/// 6: `tickets.answered` and `tickets.follows`; `sent`, the messages sent to submitters, by message id.
/// 7: `written`, the submitters' messages recorded, by message id; `tickets_by_updated`.
/// 8: `threads`, each ticket's own Discord thread.
/// 9: `tickets.clocks` (the service-level clocks, JSON) and `tickets.next_check` (their next point), indexed.
/// 10: `tickets.due_at`, when the earliest target of the team is due, indexed.
/// 11: `outcomes`, each service-level target met or missed.
/// 12: `tickets.team`, indexed.
/// 13: `outcomes.team`.
/// 14: `tickets.rule`, the routing rule that matched a ticket.
/// 15: `tickets.rating`, `rating_comment` and `rated_at`, the submitter's rating, indexed by when.
const SCHEMA_VERSION: i64 = 15;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS offsets (partition INTEGER PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tickets (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    assignee TEXT,
    assignee_name TEXT,
    priority TEXT NOT NULL,
    labels TEXT NOT NULL,
    contact TEXT NOT NULL,
    contact_id TEXT,
    origin TEXT NOT NULL,
    body TEXT NOT NULL,
    submitted TEXT NOT NULL,
    created_at TEXT NOT NULL,
    first_claimed_at TEXT,
    closed_at TEXT,
    closed_by TEXT,
    closed_by_name TEXT,
    close_reason TEXT,
    updated_at TEXT NOT NULL,
    comments INTEGER NOT NULL,
    guild_id TEXT,
    channel_id TEXT,
    answered INTEGER NOT NULL,
    follows TEXT,
    clocks TEXT,
    next_check TEXT,
    due_at TEXT,
    team TEXT,
    rule TEXT,
    rating INTEGER,
    rating_comment TEXT,
    rated_at TEXT
);
CREATE INDEX IF NOT EXISTS tickets_by_status ON tickets (status, seq);
CREATE INDEX IF NOT EXISTS tickets_by_assignee ON tickets (assignee, seq);
CREATE INDEX IF NOT EXISTS tickets_by_priority ON tickets (priority, seq);
CREATE INDEX IF NOT EXISTS tickets_by_origin ON tickets (origin, seq);
CREATE INDEX IF NOT EXISTS tickets_by_created ON tickets (created_at);
CREATE INDEX IF NOT EXISTS tickets_by_contact_id ON tickets (contact_id, seq);
CREATE INDEX IF NOT EXISTS tickets_by_answered ON tickets (answered, seq);
CREATE INDEX IF NOT EXISTS tickets_by_follows ON tickets (follows, seq);
CREATE INDEX IF NOT EXISTS tickets_by_team ON tickets (team, seq);
CREATE INDEX IF NOT EXISTS tickets_by_next_check ON tickets (next_check) WHERE next_check IS NOT NULL;
CREATE INDEX IF NOT EXISTS tickets_by_due ON tickets (due_at, seq) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS tickets_by_rated ON tickets (rated_at) WHERE rated_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS sent (message_id TEXT PRIMARY KEY, ticket_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS written (message_id TEXT PRIMARY KEY, ticket_id TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tickets_by_updated ON tickets (updated_at);
CREATE TABLE IF NOT EXISTS threads (ticket_id TEXT PRIMARY KEY, channel_id TEXT NOT NULL UNIQUE) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outcomes (
    ticket_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    target TEXT NOT NULL,
    at TEXT NOT NULL,
    priority TEXT NOT NULL,
    person TEXT,
    person_name TEXT,
    team TEXT,
    met INTEGER NOT NULL,
    PRIMARY KEY (ticket_id, version, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outcomes_by_at ON outcomes (at);
CREATE TABLE IF NOT EXISTS labels (label TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (label, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    caused_by TEXT NOT NULL,
    version INTEGER,
    type TEXT NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    json TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_command ON events (ticket_id, caused_by);
CREATE VIRTUAL TABLE IF NOT EXISTS search USING fts5 (body, contact, comments, tokenize = 'unicode61 remove_diacritics 2');
INSERT INTO search (search, rank) VALUES ('automerge', 8);
CREATE VIRTUAL TABLE IF NOT EXISTS search_terms USING fts5vocab (search, 'row');
";

/// Settings of every connection: WAL so readers never wait for the writer; a busy timeout for the rare moment a
/// checkpoint needs the file.
fn common(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    Ok(())
}

/// The writer's connection: creates the tables, and empties a store that is not ours to continue: one of another
/// schema version, or built from another topic than `identity` names.
pub fn prepare(conn: &mut Connection, identity: &Identity) -> rusqlite::Result<()> {
    common(conn)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // The store is rebuilt from the topic after a crash at worst, so a commit need not wait for fsync.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // The writer touches the id, status and command indexes at random places: a cache that holds them for a
    // million tickets keeps a rebuild from waiting on page reads.
    conn.pragma_update(None, "cache_size", -256_000)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Checkpoints (each an fsync) every 64 MiB of log rather than every 4 MiB; the log is cut back after each.
    conn.pragma_update(None, "wal_autocheckpoint", 16_384)?;
    conn.pragma_update(None, "journal_size_limit", 64 << 20)?;
    conn.execute_batch("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);")?;
    let version: Option<String> = meta(conn, "schema_version")?;
    let same_version = version.as_deref() == Some(&SCHEMA_VERSION.to_string());
    if !same_version {
        // Another franz's tables (or none): dropped before this franz's are made, whose indexes may name columns
        // the old tables lack.
        conn.execute_batch(
            "DROP TABLE IF EXISTS tickets; DROP TABLE IF EXISTS labels; DROP TABLE IF EXISTS events;
             DROP TABLE IF EXISTS search; DROP TABLE IF EXISTS offsets; DROP TABLE IF EXISTS sent;
             DROP TABLE IF EXISTS written; DROP TABLE IF EXISTS threads; DROP TABLE IF EXISTS outcomes;
             DROP TABLE IF EXISTS search_terms;",
        )?;
    }
    conn.execute_batch(TABLES)?;
    let built_from = Recorded {
        topic: meta(conn, "topic")?,
        cluster_id: meta(conn, "cluster_id")?,
        topic_id: meta(conn, "topic_id")?,
    };
    let changes = changes(&built_from, identity);
    let store = conn.path().unwrap_or("?").to_owned();
    let topic = &identity.topic;
    if identity.cluster_id.is_none() || identity.topic_id.is_none() {
        tracing::debug!(
            "ticket store {store}: the cluster id ({}) or the id of {topic} ({}) is unknown; the store is checked \
             against what is known",
            identity.cluster_id.as_deref().unwrap_or("unknown"),
            identity.topic_id.map_or("unknown".to_owned(), |id| id.to_string())
        );
    }
    if same_version && changes.is_empty() {
        return Ok(());
    }
    match &version {
        None => {}
        Some(old) if !same_version => tracing::warn!(
            "ticket store {store} was built by another franz (store version {old}, this franz writes \
             {SCHEMA_VERSION}); rebuilding it from {topic}"
        ),
        Some(_) => tracing::warn!(
            "ticket store {store} was built from another cluster or topic ({}); rebuilding it from {topic}",
            changes.join(", ")
        ),
    }
    clear(conn)?;
    let tx = conn.transaction()?;
    let remember = |key: &str, value: Option<String>| match value {
        Some(value) => {
            tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", rusqlite::params![key, value])
        }
        None => tx.execute("DELETE FROM meta WHERE key = ?1", [key]),
    };
    remember("schema_version", Some(SCHEMA_VERSION.to_string()))?;
    remember("topic", Some(topic.clone()))?;
    remember("cluster_id", identity.cluster_id.clone())?;
    remember("topic_id", identity.topic_id.map(|id| id.to_string()))?;
    tx.commit()
}

/// The identity a store records, as text.
struct Recorded {
    topic: Option<String>,
    cluster_id: Option<String>,
    topic_id: Option<String>,
}

/// How the store's recorded identity differs from `now`, one phrase per part (old → new); empty when the store
/// may be continued. A part unknown now is not compared: a broker that cannot say, or did not answer, never gets
/// a store wiped. A part known now that the store does not record is a difference, since nothing vouches that the
/// store was built from it (a store written before franz recorded ids, or while the cluster did not answer).
fn changes(recorded: &Recorded, now: &Identity) -> Vec<String> {
    let mut changes = Vec::new();
    let mut compare = |what: &str, old: Option<&str>, new: Option<String>| {
        if let Some(new) = new.filter(|new| old != Some(new.as_str())) {
            changes.push(format!("{what} {} → {new}", old.unwrap_or("not recorded")));
        }
    };
    compare("cluster id", recorded.cluster_id.as_deref(), now.cluster_id.clone());
    compare("topic", recorded.topic.as_deref(), Some(now.topic.clone()));
    compare("topic id", recorded.topic_id.as_deref(), now.topic_id.map(|id| id.to_string()));
    changes
}

/// The indexes that only the desk's filters (and the bot's `/tickets`) use: a rebuild from an empty store drops them and builds them once at
/// the end, which is much cheaper than keeping them up to date row by row.
const FILTER_INDEXES: [&str; 10] = [
    "tickets_by_status",
    "tickets_by_assignee",
    "tickets_by_priority",
    "tickets_by_origin",
    "tickets_by_created",
    "tickets_by_contact_id",
    "tickets_by_answered",
    "tickets_by_follows",
    "tickets_by_updated",
    "tickets_by_team",
];

/// Drops the filter indexes for a bulk rebuild.
pub fn drop_filter_indexes(conn: &Connection) -> rusqlite::Result<()> {
    for index in FILTER_INDEXES {
        conn.execute_batch(&format!("DROP INDEX IF EXISTS {index}"))?;
    }
    Ok(())
}

/// Builds whatever index is missing (after a bulk rebuild, or one cut short by a crash).
pub fn create_indexes(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(TABLES)
}

/// A reading connection.
pub fn reader(conn: &mut Connection) -> rusqlite::Result<()> {
    common(conn)?;
    conn.pragma_update(None, "query_only", true)
}

/// Empties every table the events fill.
pub fn clear(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "BEGIN; DELETE FROM tickets; DELETE FROM labels; DELETE FROM events; DELETE FROM search;
         DELETE FROM offsets; DELETE FROM sent; DELETE FROM written; DELETE FROM threads;
         DELETE FROM outcomes; COMMIT;",
    )
}

/// The next offset to apply, per partition.
pub fn offsets(conn: &Connection) -> rusqlite::Result<HashMap<i32, i64>> {
    let mut statement = conn.prepare("SELECT partition, next FROM offsets")?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    rows.collect()
}

fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0)).optional()
}
