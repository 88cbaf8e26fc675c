//! Replies the mail server could not take yet, each tried again on its own schedule while the replies after it go
//! on, and how far each partition's events may be committed while some wait.
//!
//! A reply that waits keeps its event's offset from being committed: a franz that stops (or loses the partition)
//! before the reply is sent reads it again and sends it then. Events after it that were handled are committed once
//! every reply before them is, so they may be read again too, which the delivery recorded on the ticket makes
//! harmless. Pure bookkeeping: the caller says what time it is.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

/// The first pause before a reply is tried again; each failure doubles it up to [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The longest pause between two tries of one reply.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// A reply waiting to be tried again.
#[derive(Debug)]
pub struct Deferred<T> {
    pub partition: i32,
    pub offset: i64,
    pub item: T,
    /// How long it waited before this try.
    pub backoff: Duration,
    next: Instant,
}

/// The replies waiting, and the offsets handled, by partition.
#[derive(Debug)]
pub struct Waiting<T> {
    deferred: Vec<Deferred<T>>,
    partitions: HashMap<i32, Partition>,
}

#[derive(Debug, Default)]
struct Partition {
    /// Offsets whose reply waits (deferred, or being tried now).
    waiting: BTreeSet<i64>,
    /// The highest offset read.
    last: Option<i64>,
}

impl<T> Deferred<T> {
    /// The pause after this try if it fails too: twice the last, at most [`BACKOFF_MAX`].
    pub fn following(&self) -> Duration {
        (self.backoff * 2).min(BACKOFF_MAX)
    }
}

impl<T> Default for Waiting<T> {
    fn default() -> Self {
        Waiting { deferred: Vec::new(), partitions: HashMap::new() }
    }
}

impl<T> Waiting<T> {
    /// How many replies wait.
    pub fn len(&self) -> usize {
        self.partitions.values().map(|partition| partition.waiting.len()).sum()
    }

    /// Whether the event at `offset` waits already (it was read again after a rebalance).
    pub fn is_waiting(&self, partition: i32, offset: i64) -> bool {
        self.partitions.get(&partition).is_some_and(|p| p.waiting.contains(&offset))
    }

    /// The event at `offset` was handled at once: the offset to store now, if any may be.
    pub fn done(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let state = self.partitions.entry(partition).or_default();
        state.last = Some(state.last.map_or(offset, |last| last.max(offset)));
        match state.waiting.first() {
            Some(first) if *first < offset => None,
            _ => Some(offset),
        }
    }

    /// The reply of the event at `offset` could not be sent: tried again after [`BACKOFF_FIRST`].
    pub fn defer(&mut self, partition: i32, offset: i64, item: T, now: Instant) {
        let state = self.partitions.entry(partition).or_default();
        state.last = Some(state.last.map_or(offset, |last| last.max(offset)));
        state.waiting.insert(offset);
        self.deferred.push(Deferred { partition, offset, item, backoff: BACKOFF_FIRST, next: now + BACKOFF_FIRST });
    }

    /// When the next reply is due to be tried, if any waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.deferred.iter().map(|deferred| deferred.next).min()
    }

    /// The reply due first, if it is due at `now`; it still holds its offset until [`Waiting::resolved`] or
    /// [`Waiting::again`].
    pub fn take_due(&mut self, now: Instant) -> Option<Deferred<T>> {
        let (index, _) = self.deferred.iter().enumerate().filter(|(_, d)| d.next <= now).min_by_key(|(_, d)| d.next)?;
        Some(self.deferred.swap_remove(index))
    }

    /// The reply failed again: tried after [`Deferred::following`].
    pub fn again(&mut self, mut deferred: Deferred<T>, now: Instant) {
        deferred.backoff = deferred.following();
        deferred.next = now + deferred.backoff;
        self.deferred.push(deferred);
    }

    /// The reply of `offset` is done (sent, or refused for good): the offset to store now, if any may be.
    pub fn resolved(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let state = self.partitions.get_mut(&partition)?;
        state.waiting.remove(&offset);
        match state.waiting.first() {
            Some(first) => Some(first - 1),
            None => state.last,
        }
    }

    /// Forgets the partitions this member no longer owns, with their replies: their new owner sends them.
    pub fn keep_only(&mut self, owned: &HashSet<i32>) {
        self.deferred.retain(|deferred| owned.contains(&deferred.partition));
        self.partitions.retain(|partition, _| owned.contains(partition));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_after_a_waiting_reply_are_stored_only_once_it_is_done() {
        let mut waiting = Waiting::default();
        let now = Instant::now();
        assert_eq!(waiting.done(0, 4), Some(4));
        waiting.defer(0, 5, "five", now);
        assert_eq!(waiting.done(0, 6), None, "6 may not be committed while 5 waits");
        assert_eq!(waiting.done(1, 9), Some(9), "other partitions go on");
        waiting.defer(0, 7, "seven", now + Duration::from_millis(1));
        assert_eq!(waiting.done(0, 8), None);
        assert_eq!(waiting.len(), 2);
        assert!(waiting.is_waiting(0, 7) && !waiting.is_waiting(0, 8));
        assert_eq!(waiting.resolved(0, 7), Some(4), "5 still waits");
        assert_eq!(waiting.resolved(0, 5), Some(8), "all done up to the last read");
        assert_eq!(waiting.done(0, 9), Some(9));
    }

    #[test]
    fn each_waiting_reply_is_tried_on_its_own_schedule_with_a_growing_pause() {
        let mut waiting = Waiting::default();
        let start = Instant::now();
        waiting.defer(0, 1, "slow", start);
        assert!(waiting.take_due(start).is_none(), "not due before its pause");
        let slow = waiting.take_due(start + BACKOFF_FIRST).expect("due after its pause");
        assert_eq!((slow.offset, slow.item), (1, "slow"));
        waiting.again(slow, start + BACKOFF_FIRST);
        waiting.defer(0, 2, "fresh", start + BACKOFF_FIRST);
        assert_eq!(waiting.next_due(), Some(start + BACKOFF_FIRST * 2), "the fresh one is due first");
        let fresh = waiting.take_due(start + BACKOFF_FIRST * 3).unwrap();
        assert_eq!(fresh.item, "fresh", "the one due first comes first");
        assert_eq!(waiting.resolved(0, fresh.offset), Some(0), "the slow one still holds its offset");
        let mut slow = waiting.take_due(start + BACKOFF_FIRST * 3).unwrap();
        for _ in 0..10 {
            waiting.again(slow, start);
            slow = waiting.take_due(start + BACKOFF_MAX).unwrap();
        }
        assert_eq!(slow.backoff, BACKOFF_MAX, "the pause grows to its limit and no further");
    }

    #[test]
    fn a_partition_taken_away_takes_its_waiting_replies_with_it() {
        let mut waiting = Waiting::default();
        let now = Instant::now();
        waiting.defer(0, 1, "a", now);
        waiting.defer(1, 1, "b", now);
        waiting.keep_only(&HashSet::from([1]));
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting.take_due(now + BACKOFF_MAX).unwrap().item, "b");
        assert!(waiting.take_due(now + BACKOFF_MAX).is_none());
        assert_eq!(waiting.done(0, 3), Some(3), "the partition, if it comes back, starts afresh");
    }
}
