//! Where each ticket's card is: the Discord message id per ticket, and the ticket version the card shows, in a
//! small SQLite file of its own beside the ticket store.
//!
//! Not in the ticket store, on purpose: the store is a cache that is emptied and rebuilt from `ticket-events`
//! whenever it disagrees with the topic, and a rebuild that forgot the message ids would post a second card for
//! every ticket. This file records something no topic holds (what Discord has), so nothing rebuilds it. It does no
//! Discord I/O itself.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension as _, params};

/// A ticket's card as remembered: its message, and the version of the ticket it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Card {
    pub message_id: u64,
    pub version: u64,
}

/// The memory of cards, cheap to clone. Calls are short local writes; they run on a blocking thread.
#[derive(Clone)]
pub struct Cards {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Cards {
    /// Opens (or creates) the file at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Cards> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let conn = Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // Another connection to the file (a franz started twice on one data dir) waits its turn rather than fail.
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .with_context(|| format!("cannot prepare {}", path.display()))?;
        // Switching to WAL answers "locked" at once, without the busy handler, while another connection opens the
        // same new file; such a refusal passes within moments, so it is tried again for as long as the busy timeout.
        let prepare = || {
            conn.execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE IF NOT EXISTS cards (
                     ticket_id  TEXT PRIMARY KEY,
                     channel_id INTEGER NOT NULL,
                     message_id INTEGER NOT NULL,
                     version    INTEGER NOT NULL
                 );",
            )
        };
        let patience = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut prepared = prepare();
        while let Err(rusqlite::Error::SqliteFailure(failure, _)) = &prepared
            && failure.code == rusqlite::ErrorCode::DatabaseBusy
            && std::time::Instant::now() < patience
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
            prepared = prepare();
        }
        prepared.with_context(|| format!("cannot prepare {}", path.display()))?;
        Ok(Cards { conn: Arc::new(Mutex::new(conn)), path: path.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The card of `ticket_id` in `channel_id`, if one was posted there.
    pub async fn get(&self, channel_id: u64, ticket_id: &str) -> anyhow::Result<Option<Card>> {
        let ticket_id = ticket_id.to_owned();
        self.run(move |conn| {
            conn.query_row(
                "SELECT message_id, version FROM cards WHERE ticket_id = ?1 AND channel_id = ?2",
                params![ticket_id, channel_id as i64],
                |row| Ok(Card { message_id: row.get::<_, i64>(0)? as u64, version: row.get::<_, i64>(1)? as u64 }),
            )
            .optional()
        })
        .await
    }

    /// Remembers that `card` shows `ticket_id` in `channel_id` now.
    pub async fn put(&self, channel_id: u64, ticket_id: &str, card: Card) -> anyhow::Result<()> {
        let ticket_id = ticket_id.to_owned();
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO cards (ticket_id, channel_id, message_id, version) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (ticket_id) DO UPDATE SET channel_id = ?2, message_id = ?3, version = ?4",
                params![ticket_id, channel_id as i64, card.message_id as i64, card.version as i64],
            )
            .map(drop)
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (conn, path) = (self.conn.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&conn).with_context(|| format!("the card memory {} failed", path.display()))
        })
        .await
        .context("a write of the card memory ended abnormally")?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the two followers (cards, direct messages) once both prepared the file at start, and one of
    /// them failed with "database is locked", stopping the bot.
    #[test]
    fn connections_preparing_the_file_at_once_wait_for_each_other() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..50 {
            let path = dir.path().join(format!("cards-{round}.sqlite"));
            let opened: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8).map(|_| scope.spawn(|| Cards::open(&path).map(drop))).collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for result in opened {
                result.unwrap();
            }
        }
    }

    #[tokio::test]
    async fn a_remembered_card_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("discord").join("cards.sqlite");
        let cards = Cards::open(&path).unwrap();
        assert_eq!(cards.get(7, "t-1").await.unwrap(), None);
        cards.put(7, "t-1", Card { message_id: 99, version: 1 }).await.unwrap();
        cards.put(7, "t-1", Card { message_id: 99, version: 3 }).await.unwrap();
        drop(cards);
        let again = Cards::open(&path).unwrap();
        assert_eq!(again.get(7, "t-1").await.unwrap(), Some(Card { message_id: 99, version: 3 }));
        assert_eq!(again.get(8, "t-1").await.unwrap(), None, "another staff channel has no card yet");
    }
}
