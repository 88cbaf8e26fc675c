//! The team's numbers as the desk serves them: the status counts, fresh at every change of the store, and the rest
//! of the stats (charts, times to claim and close, breakdowns), computed off the request path.
//!
//! The stats read every ticket of the last 30 days, which takes seconds with a million tickets, so no request waits
//! for them but the first: a request gets the last computed stats at once, and when the store has changed since
//! (or a minute has passed) a refresh starts in the background, at most one at a time and at most every
//! [`REFRESH_EVERY`]. When it ends, open pages hear of it on `/live` and fetch the new numbers. The status counts
//! are cheap enough to count once per store change, however many pages ask.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, watch};

use crate::store::Store;
use crate::store::query::{self, Stats};

/// Open, claimed, waiting and closed tickets.
pub type Counts = (u64, u64, u64, u64);

/// The shortest time between two computations of the stats.
const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// Stats older than this are refreshed even when the store did not change (the hours and days move on).
const MAX_AGE: Duration = Duration::from_secs(60);

/// The numbers, shared by the desk's handlers.
pub struct Numbers {
    store: Store,
    counts: Mutex<Option<(i64, Counts)>>,
    stats: Arc<Mutex<Cached>>,
    /// The shortest time between two computations of the stats.
    refresh_every: Duration,
    /// Bumped when a refresh of the stats ends, so open pages update.
    refreshed: watch::Sender<u64>,
}

#[derive(Default)]
struct Cached {
    /// The stats, the store's progress they were computed at, and when.
    last: Option<(Arc<Stats>, i64, Instant)>,
    refreshing: bool,
}

/// Computed stats and when.
pub struct Snapshot {
    pub stats: Arc<Stats>,
    pub as_of: chrono::DateTime<chrono::Utc>,
}

impl Numbers {
    pub fn new(store: Store) -> Numbers {
        Numbers::refreshing_every(store, REFRESH_EVERY)
    }

    fn refreshing_every(store: Store, refresh_every: Duration) -> Numbers {
        let refreshed = watch::Sender::new(0);
        Numbers { store, counts: Mutex::default(), stats: Arc::default(), refresh_every, refreshed }
    }

    /// Wakes when a refresh of the stats ends.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.refreshed.subscribe()
    }

    /// The store's progress: the sum of its next offsets, which grows with every applied batch.
    fn version(&self) -> i64 {
        self.store.progress().borrow().next.values().sum()
    }

    /// Open, claimed and closed tickets now: counted once per change of the store, however many pages ask.
    pub async fn counts(&self) -> anyhow::Result<Counts> {
        let mut cached = self.counts.lock().await;
        let version = self.version();
        if let Some((at, counts)) = *cached {
            if at == version {
                return Ok(counts);
            }
        }
        let store = self.store.clone();
        let counts = tokio::task::spawn_blocking(move || -> anyhow::Result<Counts> {
            let conn = store.reader()?;
            Ok(query::status_counts(&conn)?)
        })
        .await??;
        *cached = Some((version, counts));
        Ok(counts)
    }

    /// The last computed stats; the first call computes them, later ones start a refresh when they are stale.
    pub async fn stats(&self) -> anyhow::Result<Snapshot> {
        let mut cached = self.stats.lock().await;
        let version = self.version();
        let Some((stats, at_version, at)) = cached.last.clone() else {
            let stats = Arc::new(compute(&self.store).await?);
            cached.last = Some((stats.clone(), version, Instant::now()));
            return Ok(Snapshot { stats, as_of: chrono::Utc::now() });
        };
        let stale = at_version != version || at.elapsed() >= MAX_AGE;
        if stale && !cached.refreshing {
            cached.refreshing = true;
            let (store, shared, refreshed) = (self.store.clone(), self.stats.clone(), self.refreshed.clone());
            let wait = self.refresh_every.saturating_sub(at.elapsed());
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let version: i64 = store.progress().borrow().next.values().sum();
                let computed = compute(&store).await;
                let mut cached = shared.lock().await;
                cached.refreshing = false;
                match computed {
                    Ok(stats) => cached.last = Some((Arc::new(stats), version, Instant::now())),
                    Err(error) => tracing::warn!("the desk could not refresh the team's numbers: {error:#}"),
                }
                drop(cached);
                refreshed.send_modify(|n| *n += 1);
            });
        }
        let as_of = chrono::Utc::now() - chrono::Duration::from_std(at.elapsed()).unwrap_or_default();
        Ok(Snapshot { stats, as_of })
    }
}

async fn compute(store: &Store) -> anyhow::Result<Stats> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Stats> {
        let conn = store.reader()?;
        Ok(query::stats(&conn, chrono::Utc::now())?)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::lifecycle::Command;
    use crate::store::tests::{apply_all, decided, open_temp, payloads, ticket};

    #[tokio::test]
    async fn stale_stats_are_served_at_once_and_refreshed_in_the_background_then_pages_hear_of_it() {
        let events = decided(&[Command::create(ticket("t1", "a")), Command::create(ticket("t2", "b"))]);
        let payloads = payloads(&events);
        let (_dir, store, mut writer) = open_temp();
        apply_all(&mut writer, &payloads[..1], 0, 10);
        let numbers = Numbers::refreshing_every(store, Duration::from_millis(100));
        let mut refreshed = numbers.subscribe();
        assert_eq!(numbers.counts().await.unwrap(), (1, 0, 0, 0));
        assert_eq!(numbers.stats().await.unwrap().stats.by_origin[0].tickets, 1, "the first call computes");

        apply_all(&mut writer, &payloads[1..], 1, 10);
        assert_eq!(numbers.counts().await.unwrap(), (2, 0, 0, 0), "the counts follow every change");
        assert_eq!(numbers.stats().await.unwrap().stats.by_origin[0].tickets, 1, "stale, served at once");
        tokio::time::timeout(Duration::from_secs(10), refreshed.changed()).await.unwrap().unwrap();
        assert_eq!(numbers.stats().await.unwrap().stats.by_origin[0].tickets, 2, "refreshed");
    }
}
