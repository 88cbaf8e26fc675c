//! What the broker takes in, and what makes room: at most `max_connections` connections (at the limit, the least
//! recently active one that can go without loss is closed to admit a new one), request bytes within
//! `max_inflight_request_bytes` (taken as they arrive, granted only while every frame holding some can still
//! finish), and built answers counted until written, so fetches read no more than `max_answer_bytes` leaves.
//!
//! This module only keeps the counts and the registry; reading frames and writing answers is `connection`'s job.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::meter::Meter;
use crate::{Core, Settings};

/// How long a connection's writer may wait for its client to take an answer before the connection counts as not
/// reading and may be closed to admit a new one at the connection limit.
const STUCK_WRITER: Duration = Duration::from_secs(1);

/// What all connections share: who is connected and how busy, the request bytes in flight, and gauges for tests.
pub struct Network {
    pub(super) connections: Registry,
    /// The request bytes being read or dispatched, across all connections (Kafka's `queued.max.request.bytes`).
    inflight: Budget,
    pub(super) inflight_limit: usize,
    /// Answers built (encoded; for fetches, read from the log) and not yet written out (or dropped with their
    /// connection).
    pub(super) answers_held: AtomicUsize,
    /// The most answers ever held at once.
    answers_held_peak: AtomicUsize,
    /// The bytes of the answers held, across all connections, and the most fetches may add to them
    /// (`max_answer_bytes`): a fetch reads no more than what is left, so connections that do not read their
    /// answers cannot make the broker hold more than about that much record data together.
    answer_bytes_held: AtomicUsize,
    answer_bytes_peak: AtomicUsize,
    answer_bytes_limit: usize,
    /// How many partition reads fetches have made: tests check that the log is read once, when answering.
    pub(crate) fetch_log_reads: AtomicU64,
}

impl Network {
    pub fn new(settings: &Settings) -> Network {
        let inflight_limit = settings.max_inflight_request_bytes;
        Network {
            connections: Registry::new(),
            inflight: Budget {
                state: Mutex::new(BudgetState { available: inflight_limit, holders: HashMap::new(), next_frame: 0 }),
                released: Notify::new(),
            },
            inflight_limit,
            answers_held: AtomicUsize::new(0),
            answers_held_peak: AtomicUsize::new(0),
            answer_bytes_held: AtomicUsize::new(0),
            answer_bytes_peak: AtomicUsize::new(0),
            answer_bytes_limit: settings.max_answer_bytes,
            fetch_log_reads: AtomicU64::new(0),
        }
    }

    /// Request bytes being read, or read and not yet dispatched, across all connections.
    pub fn inflight_request_bytes(&self) -> usize {
        self.inflight_limit - self.inflight.lock().available
    }

    /// Room for no bytes yet of a frame of `length` bytes (at most `inflight_limit`), grown as its bytes arrive.
    pub(super) fn no_room(&self, length: usize) -> Room<'_> {
        let mut budget = self.inflight.lock();
        budget.next_frame += 1;
        Room { network: self, frame: budget.next_frame, length, held: 0 }
    }

    /// Waits until `room` can grow by `bytes` (at most what its frame still needs) without the budget running into
    /// a deadlock: frames that each hold part of it and wait for more, none able to finish.
    pub(super) async fn room_for(&self, room: &mut Room<'_>, bytes: usize) {
        loop {
            // Registered before looking, so a release in between still wakes this waiter.
            let released = self.inflight.released.notified();
            let mut released = std::pin::pin!(released);
            released.as_mut().enable();
            if self.inflight.lock().grant(room, bytes) {
                return;
            }
            released.await;
        }
    }

    /// The most answers that were ever built and not yet written, at the same time.
    pub fn answers_held_peak(&self) -> usize {
        self.answers_held_peak.load(Ordering::SeqCst)
    }

    /// The most bytes of answers that were ever built and not yet written, at the same time.
    pub fn answer_bytes_peak(&self) -> usize {
        self.answer_bytes_peak.load(Ordering::SeqCst)
    }

    /// How many more bytes of records fetch answers may take now (0 when `max_answer_bytes` are held).
    pub fn answer_room(&self) -> usize {
        self.answer_bytes_limit.saturating_sub(self.answer_bytes_held.load(Ordering::SeqCst))
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.connections.lock().len()
    }

    /// Open connections reading a request or with an answer pending.
    pub fn busy_connections(&self) -> usize {
        self.connections.lock().values().filter(|activity| !activity.is_idle()).count()
    }
}

/// The request bytes in flight, shared by the frames being read. Frames take it as their bytes arrive, so a frame
/// can hold part of it while waiting for more; the budget grants a part only if, afterwards, the frames holding
/// parts can still all finish in some order (each taking what it lacks from what is free plus what those before
/// it gave back): the banker's algorithm. Frames that together announce more than the budget are then read in
/// turn, rather than each holding a share and none finishing.
struct Budget {
    state: Mutex<BudgetState>,
    /// Notified whenever bytes are given back.
    released: Notify,
}

struct BudgetState {
    available: usize,
    /// Frames holding part of the budget: what each holds, and what it lacks to be whole.
    holders: HashMap<u64, (usize, usize)>,
    next_frame: u64,
}

impl Budget {
    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl BudgetState {
    /// Grows `room` by `bytes` if that leaves the budget safe. The check sorts the holders, at most one per
    /// connection, by what they lack: a frame that can finish with what is free finishes first and frees its part.
    fn grant(&mut self, room: &mut Room<'_>, bytes: usize) -> bool {
        if bytes > self.available {
            return false;
        }
        let held = room.held + bytes;
        let mut frames: Vec<(usize, usize)> = self
            .holders
            .iter()
            .filter(|(frame, _)| **frame != room.frame)
            .map(|(_, (held, lacking))| (*lacking, *held))
            .chain(std::iter::once((room.length - held, held)))
            .collect();
        frames.sort_unstable();
        let mut free = self.available - bytes;
        for (lacking, held) in frames {
            if lacking > free {
                return false;
            }
            free += held;
        }
        self.available -= bytes;
        self.holders.insert(room.frame, (held, room.length - held));
        room.held = held;
        true
    }
}

/// Room for one frame's bytes among those in flight, returned when dropped.
pub(super) struct Room<'a> {
    network: &'a Network,
    frame: u64,
    length: usize,
    held: usize,
}

impl Room<'_> {
    /// Returns `bytes` of the room, which the frame asked for but did not get from the socket.
    pub(super) fn give_back(&mut self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let budget = &self.network.inflight;
        {
            let mut state = budget.lock();
            state.available += bytes;
            self.held -= bytes;
            if self.held == 0 {
                state.holders.remove(&self.frame);
            } else {
                state.holders.insert(self.frame, (self.held, self.length - self.held));
            }
        }
        budget.released.notify_waiters();
    }
}

impl Drop for Room<'_> {
    fn drop(&mut self) {
        self.give_back(self.held);
    }
}

/// An answer counted as held from when it is built (encoded; a fetch's records read) until it is dropped, after
/// it is written.
pub struct Held(Arc<Core>, usize);

impl Held {
    pub(super) fn new(core: Arc<Core>, bytes: usize) -> Held {
        let network = &core.network;
        let now = network.answers_held.fetch_add(1, Ordering::SeqCst) + 1;
        network.answers_held_peak.fetch_max(now, Ordering::SeqCst);
        let held = network.answer_bytes_held.fetch_add(bytes, Ordering::SeqCst) + bytes;
        network.answer_bytes_peak.fetch_max(held, Ordering::SeqCst);
        Held(core, bytes)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.network.answers_held.fetch_sub(1, Ordering::SeqCst);
        self.0.network.answer_bytes_held.fetch_sub(self.1, Ordering::SeqCst);
    }
}

/// The open connections, by id, with how busy each is: what the accept loop looks at to make room.
pub(super) struct Registry {
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Registry {
    fn new() -> Registry {
        Registry { epoch: Instant::now(), next_id: AtomicU64::new(0), open: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new connection. At the limit, the least recently active connection that the broker owes no
    /// answer, or whose client is not reading the one being written, is closed to make room: an idle one, one
    /// stalled part-way through sending a request, or one whose writer has waited over [`STUCK_WRITER`] for its
    /// client to take an answer (neither half-sent frames nor unread answers may lock others out until
    /// `frame_timeout` or `write_timeout`). Only if every connection is waiting for an answer is one of those
    /// closed: the least recently active, since connections that wait forever (joins to a group whose member
    /// never returns) must not lock every newcomer out either. `None` only with a limit of 0.
    ///
    /// An idle connection can start a request between the scan and its cancellation; it is then closed with that
    /// request half-read, which its client sees as any closed connection and retries. Closing idle ones first
    /// keeps a broker full of slow but real work from dropping it for newcomers.
    pub(super) fn admit(&self, limit: usize, peer: SocketAddr, meter: &Meter) -> Option<(u64, Arc<Activity>)> {
        let mut open = self.lock();
        if open.len() >= limit {
            let least_recent = |gentle: bool| {
                open.iter()
                    .filter(|(_, activity)| !gentle || activity.evictable())
                    .min_by_key(|(_, activity)| activity.last_active.load(Ordering::SeqCst))
                    .map(|(id, _)| *id)
            };
            if let Some(victim) = least_recent(true) {
                let evicted = open.remove(&victim).expect("the victim is registered");
                evicted.close.cancel();
                meter.evicted(false);
                tracing::info!(peer = %evicted.peer, new = %peer, limit, "connection limit reached; closed the least recently active connection that was idle, half-way through a request or not reading its answers, to admit a new one");
            } else {
                // Every connection is owed an answer: waiting in a long poll, a JoinGroup or an fsync. Refusing the
                // newcomer would let connections that wait forever (joins to a group whose member never returns)
                // lock every client out, so the one waiting longest goes instead; its client reconnects and asks
                // again (a produce is retried idempotently).
                let victim = least_recent(false)?;
                let evicted = open.remove(&victim).expect("the victim is registered");
                evicted.close.cancel();
                meter.evicted(true);
                tracing::warn!(peer = %evicted.peer, new = %peer, limit, "connection limit reached with every connection waiting for an answer; closed the one waiting longest to admit a new one (raise max_connections if this is real load)");
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity {
            epoch: self.epoch,
            peer,
            last_active: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            reading: AtomicUsize::new(0),
            writing_since: AtomicU64::new(NOT_WRITING),
            close: CancellationToken::new(),
        });
        activity.touch();
        open.insert(id, activity.clone());
        Some((id, activity))
    }

    pub(super) fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }
}

/// How busy one connection is. Updated with atomics on every request and answer, read under the registry's lock
/// only when the connection limit is reached.
pub(super) struct Activity {
    epoch: Instant,
    peer: SocketAddr,
    /// When the connection last started a request or finished an answer, in microseconds since `epoch`.
    last_active: AtomicU64,
    /// Requests being read plus answers not yet written: the connection is idle when this is 0. A request counts
    /// from its first byte until its answer is written, so there is no idle gap in between.
    busy: AtomicUsize,
    /// 1 while a request is being read (from its first byte until it is dispatched), else 0.
    reading: AtomicUsize,
    /// When the writer started writing the answer it is writing, in microseconds since `epoch`, or
    /// [`NOT_WRITING`]. A write that does not finish means the client is not reading.
    writing_since: AtomicU64,
    /// Cancelled to close the connection.
    pub(super) close: CancellationToken,
}

/// `Activity::writing_since` while no answer is being written.
const NOT_WRITING: u64 = u64::MAX;

impl Activity {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn touch(&self) {
        self.last_active.store(self.now(), Ordering::SeqCst);
    }

    pub(super) fn writing(&self, started: bool) {
        self.writing_since.store(if started { self.now() } else { NOT_WRITING }, Ordering::SeqCst);
    }

    /// Whether the writer has been waiting longer than [`STUCK_WRITER`] for the client to take an answer.
    fn not_reading(&self) -> bool {
        let since = self.writing_since.load(Ordering::SeqCst);
        since != NOT_WRITING && self.now().saturating_sub(since) > STUCK_WRITER.as_micros() as u64
    }

    pub(super) fn last_active(&self) -> Instant {
        self.epoch + Duration::from_micros(self.last_active.load(Ordering::SeqCst))
    }

    pub(super) fn request_started(&self) {
        self.reading.store(1, Ordering::SeqCst);
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.touch();
    }

    /// The request being read was dispatched: what remains is an answer owed.
    pub(super) fn request_read(&self) {
        self.reading.store(0, Ordering::SeqCst);
    }

    /// Whether closing the connection loses no answer the broker owes, or none its client would take: it is
    /// idle, only part-way through sending a request, or not reading the answer being written to it (which
    /// would otherwise hold its slot until `write_timeout`).
    fn evictable(&self) -> bool {
        self.busy.load(Ordering::SeqCst) <= self.reading.load(Ordering::SeqCst) || self.not_reading()
    }

    /// Touched before the count drops, so a scan that sees the connection idle also sees when it became so.
    pub(super) fn answered(&self) {
        self.touch();
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }

    pub(super) fn is_idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }
}
