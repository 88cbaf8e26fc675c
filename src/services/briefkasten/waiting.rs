//! Replies the mail server could not take yet, each tried again on its own schedule while the replies to other
//! tickets go on, and how far each partition's events may be committed while some wait.
//!
//! The replies of one ticket wait in one lane, in the order they were written: only the first is tried, and the
//! next is due the moment it is done, so a customer never reads a reply before the one it follows. A server that
//! could not be reached at all closes the gate for every lane (one connection tells whether it is back, not one per
//! waiting reply), for a pause that doubles while it stays down.
//!
//! A reply that waits keeps its event's offset from being committed: a franz that stops (or loses the partition)
//! before the reply is sent reads it again and sends it then. Events after it that were handled are committed once
//! every reply before them is, so they may be read again too, which the delivery recorded on the ticket makes
//! harmless. Pure bookkeeping: the caller says what time it is.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// The first pause before a reply is tried again; each failure doubles it up to [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The longest pause between two tries of one reply, or of a server that cannot be reached.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// A reply waiting to be tried again.
#[derive(Debug)]
pub struct Deferred<T> {
    pub partition: i32,
    pub offset: i64,
    /// The lane it waits in: its ticket.
    pub lane: String,
    pub item: T,
    /// How long it waited before this try.
    pub backoff: Duration,
    next: Instant,
}

impl<T> Deferred<T> {
    /// The pause after this try if it fails too: twice the last, at most [`BACKOFF_MAX`].
    pub fn following(&self) -> Duration {
        (self.backoff * 2).min(BACKOFF_MAX)
    }
}

/// The replies waiting, by lane, and the offsets handled, by partition.
#[derive(Debug)]
pub struct Waiting<T> {
    /// Each lane's replies in the order they were written; only the first is tried.
    lanes: HashMap<String, Lane<T>>,
    partitions: HashMap<i32, Partition>,
    /// No reply is tried before this: the server could not be reached at the last try.
    gate: Option<Instant>,
    /// The pause the gate was closed for last.
    gate_pause: Duration,
}

/// The replies of one ticket.
#[derive(Debug)]
struct Lane<T> {
    queue: VecDeque<Deferred<T>>,
    /// Its first is being tried (taken out of `queue`): the rest wait for its end.
    trying: bool,
}

impl<T> Default for Lane<T> {
    fn default() -> Self {
        Lane { queue: VecDeque::new(), trying: false }
    }
}

#[derive(Debug, Default)]
struct Partition {
    /// Offsets whose reply waits (deferred, or being tried now).
    waiting: BTreeSet<i64>,
    /// The highest offset read.
    last: Option<i64>,
}

impl Partition {
    fn read(&mut self, offset: i64) {
        self.last = Some(self.last.map_or(offset, |last| last.max(offset)));
    }
}

impl<T> Default for Waiting<T> {
    fn default() -> Self {
        Waiting { lanes: HashMap::new(), partitions: HashMap::new(), gate: None, gate_pause: BACKOFF_FIRST }
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

    /// Whether a reply of `lane` waits: a new one must wait behind it.
    pub fn holds(&self, lane: &str) -> bool {
        self.lanes.contains_key(lane)
    }

    /// Whether the server is taken to be down at `now`: a new reply waits instead of being tried.
    pub fn closed(&self, now: Instant) -> bool {
        self.gate.is_some_and(|gate| gate > now)
    }

    /// The event at `offset` was handled at once: the offset to store now, if any may be.
    pub fn done(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let state = self.partitions.entry(partition).or_default();
        state.read(offset);
        match state.waiting.first() {
            Some(first) if *first < offset => None,
            _ => Some(offset),
        }
    }

    /// The reply of the event at `offset` could not be sent, or may not be tried yet: it waits at the end of its
    /// lane, tried [`BACKOFF_FIRST`] from `now` if it is the first there.
    pub fn defer(&mut self, partition: i32, offset: i64, lane: &str, item: T, now: Instant) {
        let state = self.partitions.entry(partition).or_default();
        state.read(offset);
        state.waiting.insert(offset);
        let deferred = Deferred {
            partition,
            offset,
            lane: lane.to_owned(),
            item,
            backoff: BACKOFF_FIRST,
            next: now + BACKOFF_FIRST,
        };
        self.lanes.entry(lane.to_owned()).or_default().queue.push_back(deferred);
    }

    /// When the next reply is due to be tried, if any waits.
    pub fn next_due(&self) -> Option<Instant> {
        let first = self.lanes.values().filter(|l| !l.trying).filter_map(|l| l.queue.front()).map(|d| d.next).min()?;
        Some(self.gate.map_or(first, |gate| gate.max(first)))
    }

    /// The reply due first, if one is due at `now`; it still holds its offset and its lane until
    /// [`Waiting::resolved`] or [`Waiting::again`].
    pub fn take_due(&mut self, now: Instant) -> Option<Deferred<T>> {
        if self.closed(now) {
            return None;
        }
        let lane = self
            .lanes
            .iter()
            .filter(|(_, lane)| !lane.trying)
            .filter_map(|(name, lane)| lane.queue.front().map(|first| (name, first.next)))
            .filter(|(_, next)| *next <= now)
            .min_by_key(|(_, next)| *next)
            .map(|(name, _)| name.clone())?;
        let lane = self.lanes.get_mut(&lane)?;
        lane.trying = true;
        lane.queue.pop_front()
    }

    /// The reply failed again: first in its lane, tried after [`Deferred::following`].
    pub fn again(&mut self, mut deferred: Deferred<T>, now: Instant) {
        deferred.backoff = deferred.following();
        deferred.next = now + deferred.backoff;
        let lane = self.lanes.entry(deferred.lane.clone()).or_default();
        lane.trying = false;
        lane.queue.push_front(deferred);
    }

    /// The reply is done (sent, or refused for good): the next of its lane is due at once; the offset to store
    /// now, if any may be.
    pub fn resolved(&mut self, deferred: &Deferred<T>, now: Instant) -> Option<i64> {
        match self.lanes.get_mut(&deferred.lane) {
            Some(lane) if lane.queue.is_empty() => {
                self.lanes.remove(&deferred.lane);
            }
            Some(lane) => {
                lane.trying = false;
                lane.queue.iter_mut().take(1).for_each(|next| next.next = now);
            }
            None => {}
        }
        let state = self.partitions.get_mut(&deferred.partition)?;
        state.waiting.remove(&deferred.offset);
        match state.waiting.first() {
            Some(first) => Some(first - 1),
            None => state.last,
        }
    }

    /// A try ended at `now`: the server answered (`reached`), which opens the gate, or could not be reached.
    pub fn answered(&mut self, reached: bool, now: Instant) {
        if reached { self.server_up() } else { self.server_down(now) }
    }

    /// The server could not be reached at `now`: no reply is tried for a pause that doubles while it stays so.
    pub fn server_down(&mut self, now: Instant) {
        self.gate_pause = if self.gate.is_some() { (self.gate_pause * 2).min(BACKOFF_MAX) } else { BACKOFF_FIRST };
        self.gate = Some(now + self.gate_pause);
    }

    /// The server answered: the gate is open.
    pub fn server_up(&mut self) {
        self.gate = None;
        self.gate_pause = BACKOFF_FIRST;
    }

    /// Forgets the partitions this member no longer owns, with their replies: their new owner sends them.
    pub fn keep_only(&mut self, owned: &HashSet<i32>) {
        for lane in self.lanes.values_mut() {
            lane.queue.retain(|deferred| owned.contains(&deferred.partition));
        }
        self.lanes.retain(|_, lane| lane.trying || !lane.queue.is_empty());
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
        waiting.defer(0, 5, "a", "five", now);
        assert_eq!(waiting.done(0, 6), None, "6 may not be committed while 5 waits");
        assert_eq!(waiting.done(1, 9), Some(9), "other partitions go on");
        waiting.defer(0, 7, "b", "seven", now + Duration::from_millis(1));
        assert_eq!(waiting.done(0, 8), None);
        assert_eq!(waiting.len(), 2);
        assert!(waiting.is_waiting(0, 7) && !waiting.is_waiting(0, 8));
        let later = now + BACKOFF_MAX;
        let five = waiting.take_due(later).unwrap();
        let seven = waiting.take_due(later).unwrap();
        assert_eq!(waiting.resolved(&seven, later), Some(4), "5 still waits");
        assert_eq!(waiting.resolved(&five, later), Some(8), "all done up to the last read");
        assert_eq!(waiting.done(0, 9), Some(9));
    }

    #[test]
    fn each_waiting_reply_is_tried_on_its_own_schedule_with_a_growing_pause() {
        let mut waiting = Waiting::default();
        let start = Instant::now();
        waiting.defer(0, 1, "a", "slow", start);
        assert!(waiting.take_due(start).is_none(), "not due before its pause");
        let slow = waiting.take_due(start + BACKOFF_FIRST).expect("due after its pause");
        assert_eq!((slow.offset, slow.item), (1, "slow"));
        waiting.again(slow, start + BACKOFF_FIRST);
        waiting.defer(0, 2, "b", "fresh", start + BACKOFF_FIRST);
        assert_eq!(waiting.next_due(), Some(start + BACKOFF_FIRST * 2), "the fresh one is due first");
        let fresh = waiting.take_due(start + BACKOFF_FIRST * 3).unwrap();
        assert_eq!(fresh.item, "fresh", "the one due first comes first");
        assert_eq!(waiting.resolved(&fresh, start), Some(0), "the slow one still holds its offset");
        let mut slow = waiting.take_due(start + BACKOFF_FIRST * 3).unwrap();
        for _ in 0..10 {
            waiting.again(slow, start);
            slow = waiting.take_due(start + BACKOFF_MAX).unwrap();
        }
        assert_eq!(slow.backoff, BACKOFF_MAX, "the pause grows to its limit and no further");
    }

    /// Found by an attack (#34, replies), failing first: the first of two replies to one ticket was deferred once,
    /// and the second went out at once: the customer read "see my mail before" before that mail.
    #[test]
    fn the_replies_of_one_ticket_are_tried_in_the_order_they_were_written() {
        let mut waiting = Waiting::default();
        let start = Instant::now();
        waiting.defer(0, 1, "ticket", "first", start);
        assert!(waiting.holds("ticket") && !waiting.holds("other"), "a new reply to the ticket must wait behind");
        waiting.defer(0, 2, "ticket", "second", start);
        let later = start + BACKOFF_MAX;
        let first = waiting.take_due(later).unwrap();
        assert_eq!(first.item, "first");
        assert!(waiting.take_due(later).is_none(), "the second is not tried while the first is");
        waiting.again(first, later);
        assert!(waiting.take_due(later + BACKOFF_FIRST).is_none(), "nor while the first waits again");
        let first = waiting.take_due(later + BACKOFF_MAX).unwrap();
        assert_eq!(first.item, "first");
        assert_eq!(waiting.resolved(&first, later + BACKOFF_MAX), Some(1), "the second still waits");
        let second = waiting.take_due(later + BACKOFF_MAX).expect("due the moment the first is done");
        assert_eq!(second.item, "second");
        assert_eq!(waiting.resolved(&second, later + BACKOFF_MAX), Some(2));
        assert!(!waiting.holds("ticket"));
    }

    /// Found by an attack (#34, replies), failing first: with the SMTP server down and 30 replies waiting, each
    /// reply connected on its own schedule: 72 connections in 30 s where one reply backing off alone makes about 5.
    #[test]
    fn a_server_that_cannot_be_reached_is_tried_by_one_reply_at_a_time_with_a_growing_pause() {
        let mut waiting = Waiting::default();
        let start = Instant::now();
        for n in 0..30 {
            waiting.defer(0, n, &format!("ticket-{n}"), n, start);
        }
        let mut tries = 0;
        let mut now = start;
        while now < start + Duration::from_secs(30) {
            while let Some(deferred) = waiting.take_due(now) {
                tries += 1;
                waiting.server_down(now);
                waiting.again(deferred, now);
            }
            assert!(waiting.closed(now) || waiting.next_due().is_some_and(|due| due > now));
            now += Duration::from_millis(100);
        }
        assert!(tries <= 6, "{tries} tries in 30 s of a server that cannot be reached");
        waiting.server_up();
        assert!(!waiting.closed(now), "an answer opens the gate");
        assert_eq!(waiting.take_due(now + BACKOFF_MAX).map(|d| d.lane.starts_with("ticket-")), Some(true));
    }

    #[test]
    fn a_partition_taken_away_takes_its_waiting_replies_with_it() {
        let mut waiting = Waiting::default();
        let now = Instant::now();
        waiting.defer(0, 1, "a", "a", now);
        waiting.defer(1, 1, "b", "b", now);
        waiting.keep_only(&HashSet::from([1]));
        assert_eq!(waiting.len(), 1);
        assert!(!waiting.holds("a"));
        assert_eq!(waiting.take_due(now + BACKOFF_MAX).unwrap().item, "b");
        assert!(waiting.take_due(now + BACKOFF_MAX).is_none());
        assert_eq!(waiting.done(0, 3), Some(3), "the partition, if it comes back, starts afresh");
    }
}
