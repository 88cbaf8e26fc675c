//! The tickets a service opened for a submitter that the ticket store may not have yet: a new ticket reaches the
//! store only once it went through the topics, so a limit on open tickets per submitter (`open_tickets_max`) counted
//! in the store alone lets a burst of new tickets through (three `/ticket` at once, five mails in one batch). The
//! services count these too, until the store has them or [`PATIENCE`] passed since they were published.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// How long a ticket published here is counted while the store lacks it (a store that never gets it, say the
/// pipeline being down, limits nobody for longer).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// One ticket of a submitter: its id, and when it was published (`None`: about to be, reserved).
type Entry = (String, Option<Instant>);

/// The tickets opened here per submitter (contact id) that the store may not have yet; shared by clones.
#[derive(Debug, Clone, Default)]
pub struct Opened(Arc<Mutex<HashMap<String, Vec<Entry>>>>);

impl Opened {
    /// Runs `work` under this one lock with `contact`'s tickets opened here that `conn` does not have (those it has,
    /// and those published more than [`PATIENCE`] ago, forgotten): `work` may add to them, so a count and what
    /// follows from it are one step for concurrent callers.
    pub fn with<T>(
        &self,
        conn: &Connection,
        contact: &str,
        work: impl FnOnce(&mut Vec<Entry>) -> T,
    ) -> rusqlite::Result<T> {
        let mut all = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut theirs = all.remove(contact).unwrap_or_default();
        let mut kept = Vec::with_capacity(theirs.len());
        for (id, published) in theirs.drain(..) {
            let stale = published.is_some_and(|at| at.elapsed() > PATIENCE);
            if !stale && super::query::ticket(conn, &id)?.is_none() {
                kept.push((id, published));
            }
        }
        let answer = work(&mut kept);
        if !kept.is_empty() {
            all.insert(contact.to_owned(), kept);
        }
        Ok(answer)
    }

    /// Ticket `id` of `contact` was published now (it counts until the store has it); `false` to forget a
    /// reservation that was never published.
    pub fn published(&self, contact: &str, id: &str, published: bool) {
        let mut all = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let theirs = all.entry(contact.to_owned()).or_default();
        theirs.retain(|(known, _)| known != id);
        if published {
            theirs.push((id.to_owned(), Some(Instant::now())));
        }
        if theirs.is_empty() {
            all.remove(contact);
        }
    }
}
