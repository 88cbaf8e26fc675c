//! The network side: accepting connections, framing, version negotiation, dispatch, and writing answers in order.
//!
//! Each connection has a reader (frames in, handlers called in arrival order) and a writer (answers out in the
//! same order, each awaited in turn), joined by a bounded queue so a slow client slows only itself. What clients
//! can make the broker hold is bounded by configuration and by what they send, not by their patience:
//! - at most `max_connections` connections; at the limit the least recently active one that is idle, stalled
//!   part-way through sending a request, or not reading (its writer waited over a second for it to take an
//!   answer) is closed to admit a new one;
//! - a started frame must arrive whole within `frame_timeout`, an answer must be taken by its client within
//!   `write_timeout`, and a connection with nothing in flight is closed after `idle_timeout`;
//! - request bytes being read or dispatched, across all connections, stay within `max_inflight_request_bytes`,
//!   and a frame's permits (and buffer) are taken as its bytes arrive, so holding N bytes of them costs sending
//!   N bytes: a length announced and never sent holds nothing (and frames that together announce more than the
//!   bound are read in turn, never each holding a share that none can finish with);
//! - answers to requests that change no state (Fetch, Metadata that creates nothing, ListOffsets, OffsetFetch,
//!   FindCoordinator, ListGroups, DescribeGroups, ApiVersions) are built only when the writer is ready to send
//!   them, so however many a client pipelines without reading, its connection holds one of them built at a time.
//!
//! A frame over the size limits is refused before anything is allocated for it; a malformed request, including
//! one with bytes left over after its body, closes that connection with a log line. Nothing a client sends can
//! panic the broker: decoding runs under `catch_unwind` as a last line of defence. This module decides nothing
//! about what requests mean: that is `handlers`. It counts what passes through it (answers by API and error code
//! with their latency, bytes, connections admitted, evicted and dropped) on the broker's `meter`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::apis::{SUPPORTED, supported};
use super::handlers::Pending;
use super::meter::{Dropped, ErrorCode, Meter};
use super::{Core, Settings};

/// Answers queued per connection before its reader waits for the writer. A queued answer to a request that changes
/// no state holds no answer yet (a fetch reads the log, a description is built, only when the writer polls it), so
/// a client that pipelines those and never reads pins one answer, not eight; but it does hold its decoded request,
/// which can take several times the request's bytes. Eight covers what clients pipeline (librdkafka and the Java
/// client keep at most five produce requests in flight) and bounds that cost; Kafka itself reads one request of a
/// connection at a time. The answers of requests that change state are built when the change is made and are sized
/// by their request (acknowledgements, per-topic results).
const QUEUED_ANSWERS: usize = 8;
/// The most request bytes read (and granted permits) at a time. A frame's permits are taken as its bytes arrive,
/// in steps no larger than what it has already sent (and at least 8 KiB), so holding permits, and buffer space, for
/// N bytes costs a client sending about N bytes, however large the length it announced.
const BODY_STEP: usize = 1 << 20;
const FIRST_BODY_STEP: usize = 8 << 10;
/// How long a connection's writer may wait for its client to take an answer before the connection counts as not
/// reading and may be closed to admit a new one at the connection limit.
const STUCK_WRITER: Duration = Duration::from_secs(1);
const UNSUPPORTED_VERSION: i16 = 35;

/// What all connections share: who is connected and how busy, the request bytes in flight, and gauges for tests.
pub struct Network {
    connections: Registry,
    /// The request bytes being read or dispatched, across all connections (Kafka's `queued.max.request.bytes`).
    inflight: Budget,
    inflight_limit: usize,
    /// Answers built (encoded; for fetches, read from the log) and not yet written out (or dropped with their
    /// connection).
    answers_held: AtomicUsize,
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
    fn no_room(&self, length: usize) -> Room<'_> {
        let mut budget = self.inflight.lock();
        budget.next_frame += 1;
        Room { network: self, frame: budget.next_frame, length, held: 0 }
    }

    /// Waits until `room` can grow by `bytes` (at most what its frame still needs) without the budget running into
    /// a deadlock: frames that each hold part of it and wait for more, none able to finish.
    async fn room_for(&self, room: &mut Room<'_>, bytes: usize) {
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
struct Room<'a> {
    network: &'a Network,
    frame: u64,
    length: usize,
    held: usize,
}

impl Room<'_> {
    /// Returns `bytes` of the room, which the frame asked for but did not get from the socket.
    fn give_back(&mut self, bytes: usize) {
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
    fn new(core: Arc<Core>, bytes: usize) -> Held {
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
struct Registry {
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
    fn admit(&self, limit: usize, peer: SocketAddr, meter: &Meter) -> Option<(u64, Arc<Activity>)> {
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

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }
}

/// How busy one connection is. Updated with atomics on every request and answer, read under the registry's lock
/// only when the connection limit is reached.
struct Activity {
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
    close: CancellationToken,
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

    fn writing(&self, started: bool) {
        self.writing_since.store(if started { self.now() } else { NOT_WRITING }, Ordering::SeqCst);
    }

    /// Whether the writer has been waiting longer than [`STUCK_WRITER`] for the client to take an answer.
    fn not_reading(&self) -> bool {
        let since = self.writing_since.load(Ordering::SeqCst);
        since != NOT_WRITING && self.now().saturating_sub(since) > STUCK_WRITER.as_micros() as u64
    }

    fn last_active(&self) -> Instant {
        self.epoch + Duration::from_micros(self.last_active.load(Ordering::SeqCst))
    }

    fn request_started(&self) {
        self.reading.store(1, Ordering::SeqCst);
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.touch();
    }

    /// The request being read was dispatched: what remains is an answer owed.
    fn request_read(&self) {
        self.reading.store(0, Ordering::SeqCst);
    }

    /// Whether closing the connection loses no answer the broker owes, or none its client would take: it is
    /// idle, only part-way through sending a request, or not reading the answer being written to it (which
    /// would otherwise hold its slot until `write_timeout`).
    fn evictable(&self) -> bool {
        self.busy.load(Ordering::SeqCst) <= self.reading.load(Ordering::SeqCst) || self.not_reading()
    }

    /// Touched before the count drops, so a scan that sees the connection idle also sees when it became so.
    fn answered(&self) {
        self.touch();
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }

    fn is_idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }
}

/// `at + duration`, or a year later if that is past what an `Instant` holds (a timeout configured as "never").
fn after(at: Instant, duration: Duration) -> Instant {
    at.checked_add(duration).unwrap_or_else(|| at + Duration::from_secs(365 * 24 * 3600))
}

/// Accepts connections until `shutdown`, at most `max_connections` at a time.
pub async fn serve(listener: TcpListener, core: Arc<Core>, shutdown: CancellationToken, tracker: TaskTracker) {
    let limit = core.settings.max_connections;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("cannot accept a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Some((id, activity)) = core.network.connections.admit(limit, peer, &core.meter) else {
            tracing::warn!(%peer, limit, "connection limit reached and no connection can make room; closing the new connection");
            continue;
        };
        core.meter.accepted.inc();
        let _ = stream.set_nodelay(true);
        let core = core.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                result = connection(stream, peer, core.clone(), &activity) => match result {
                    Ok(()) => {}
                    Err(Closed::Idle(idle)) => tracing::debug!(%peer, "closing a connection idle for {idle:?} (idle_timeout)"),
                    Err(Closed::Refused(reason)) => {
                        core.meter.dropped(Dropped::BadRequest);
                        tracing::warn!(%peer, "closing the connection: {reason}");
                    }
                    Err(Closed::Slow(reason)) => {
                        core.meter.dropped(Dropped::Timeout);
                        tracing::warn!(%peer, "closing the connection: {reason}");
                    }
                    Err(Closed::Broken(reason)) => tracing::warn!(%peer, "closing the connection: {reason}"),
                },
                // Logged by the registry, which knows why.
                _ = activity.close.cancelled() => {}
                _ = shutdown.cancelled() => {}
            }
            core.network.connections.remove(id);
        });
    }
}

/// What goes back for one request.
pub enum Reply {
    /// A response frame, counted as held until written.
    Frame(Bytes, Held),
    /// No answer (`acks=0`).
    Nothing,
    /// Close the connection instead of answering.
    HangUp,
}

/// An answer in the making.
type Answer = BoxFuture<'static, Reply>;

/// Why a connection was closed by the broker.
enum Closed {
    /// Nothing in flight for this long.
    Idle(Duration),
    /// What the client sent is refused: the reason, for the log.
    Refused(String),
    /// The client took too long to send a request or to take an answer: the reason, for the log.
    Slow(String),
    /// Reading from the socket failed: the error, for the log.
    Broken(String),
}

impl From<String> for Closed {
    fn from(reason: String) -> Closed {
        Closed::Refused(reason)
    }
}

/// A client going away, politely or not, is not worth a warning.
fn gone(error: &std::io::Error) -> bool {
    matches!(error.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset)
}

async fn connection(stream: TcpStream, peer: SocketAddr, core: Arc<Core>, activity: &Activity) -> Result<(), Closed> {
    let (mut reader, mut writer) = stream.into_split();
    let (queue, mut answers) = mpsc::channel::<Answer>(QUEUED_ANSWERS);
    let write_timeout = core.settings.write_timeout;
    let meter = core.meter.clone();
    let write = async move {
        while let Some(answer) = answers.recv().await {
            let written = match answer.await {
                // The guard goes once the frame is in the socket, ending the answer's hold on memory.
                Reply::Frame(frame, _held) => {
                    activity.writing(true);
                    // A client that stops reading would otherwise hold the answer, and its connection, forever.
                    let written = tokio::time::timeout(write_timeout, writer.write_all(&frame)).await;
                    activity.writing(false);
                    match written {
                        Err(_) => {
                            return Err(Closed::Slow(format!(
                                "the client took no answer for {write_timeout:?} (write_timeout); it is not reading"
                            )));
                        }
                        Ok(Ok(())) => {
                            meter.sent_bytes.inc_by(frame.len() as u64);
                            true
                        }
                        Ok(Err(_)) => false,
                    }
                }
                Reply::Nothing => true,
                Reply::HangUp => false,
            };
            activity.answered();
            if !written {
                return Ok(());
            }
        }
        Ok(())
    };
    let read = async move {
        let settings = &core.settings;
        let network = &core.network;
        loop {
            let mut length = [0u8; 4];
            let first = match next_request(&mut reader, &mut length, activity, settings.idle_timeout).await? {
                Ok(0) => return Ok(()),
                Ok(first) => first,
                Err(error) if gone(&error) => return Ok(()),
                Err(error) => return Err(Closed::Broken(format!("read failed: {error}"))),
            };
            activity.request_started();
            // The deadline runs from the frame's first byte, so a frame trickled in byte by byte cannot hold its
            // connection (and its permits) for longer than `frame_timeout`.
            let deadline = after(Instant::now(), settings.frame_timeout);
            let timed_out =
                || format!("a request did not arrive whole within {:?} (frame_timeout)", settings.frame_timeout);
            match tokio::time::timeout_at(deadline, reader.read_exact(&mut length[first..])).await {
                Err(_) => return Err(Closed::Slow(timed_out())),
                Ok(Ok(_)) => {}
                Ok(Err(error)) if gone(&error) => return Ok(()),
                Ok(Err(error)) => return Err(Closed::Broken(format!("read failed: {error}"))),
            }
            let length = i32::from_be_bytes(length);
            let limit = settings.max_frame_bytes.min(network.inflight_limit);
            // A frame that could never fit the in-flight bound is refused rather than left to wait for it forever.
            if length < 8 || length as usize > limit {
                return Err(format!(
                    "a request of {length} bytes is outside 8..={limit} (max_frame_bytes, max_inflight_request_bytes)"
                )
                .into());
            }
            let length = length as usize;
            // Permits and buffer space are taken as the body arrives, never for bytes merely announced: a frame
            // that stops after its length holds nothing, so a few bytes cannot hold (or queue for) the bound and
            // stall every other client until `frame_timeout`. The wait for room counts against the frame's
            // deadline too. Frames that together announce more than the bound are read in turn (see `Budget`).
            let mut room = network.no_room(length);
            // Read into uninitialised capacity: zeroing megabytes of produce data first would cost as much as
            // reading it.
            let mut frame = BytesMut::new();
            let body = async {
                while frame.len() < length {
                    // Bytes first, then room for them: a client that sends nothing more asks for nothing.
                    if let Err(error) = reader.readable().await {
                        return Err(format!("request cut short: {error}"));
                    }
                    let step = (length - frame.len()).min(BODY_STEP).min(frame.len().max(FIRST_BODY_STEP));
                    network.room_for(&mut room, step).await;
                    frame.reserve(step);
                    // No await between taking the room and reading: what the socket did not have goes back at once.
                    match reader.try_read_buf(&mut (&mut frame).limit(step)) {
                        Ok(0) => return Err("request cut short: the connection closed".to_string()),
                        Ok(read) => room.give_back(step - read),
                        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => room.give_back(step),
                        Err(error) => return Err(format!("request cut short: {error}")),
                    }
                }
                Ok(())
            };
            match tokio::time::timeout_at(deadline, body).await {
                Err(_) => return Err(Closed::Slow(timed_out())),
                Ok(result) => result.map_err(Closed::Broken)?,
            }
            core.meter.received_bytes.inc_by(length as u64 + 4);
            let answer = dispatch(&core, frame.freeze(), peer)?;
            activity.request_read();
            // Handlers take what they need from the frame while dispatching, so its bytes are no longer in flight.
            drop(room);
            if queue.send(answer).await.is_err() {
                return Ok(());
            }
        }
    };
    // The connection ends when either side does: a reader error, or the writer hanging up.
    tokio::select! {
        result = read => result,
        result = write => result,
    }
}

/// Waits for the first bytes of the next request into `length`, or gives up with [`Closed::Idle`] once the
/// connection has had nothing in flight and no new request for `idle_timeout`.
async fn next_request(
    reader: &mut OwnedReadHalf,
    length: &mut [u8; 4],
    activity: &Activity,
    idle_timeout: Duration,
) -> Result<std::io::Result<usize>, Closed> {
    // While answers are pending the connection is not idle, however old its last request; its idle time starts
    // again when the last answer is written (which touches `last_active`).
    let mut not_before = Instant::now();
    loop {
        let deadline = after(activity.last_active(), idle_timeout).max(not_before);
        tokio::select! {
            // Cancel-safe: a read that loses the race has taken no bytes.
            read = reader.read(&mut length[..]) => return Ok(read),
            () = tokio::time::sleep_until(deadline) => {
                let now = Instant::now();
                if activity.is_idle() && after(activity.last_active(), idle_timeout) <= now {
                    return Err(Closed::Idle(idle_timeout));
                }
                not_before = after(now, idle_timeout.max(Duration::from_millis(1)));
            }
        }
    }
}

/// Decodes one request and starts handling it. An `Err` closes the connection.
pub fn dispatch(core: &Arc<Core>, mut frame: Bytes, _peer: SocketAddr) -> Result<Answer, String> {
    let arrived = Instant::now();
    let raw_key = frame.slice(0..2).get_i16();
    let version = frame.slice(2..4).get_i16();
    let key = ApiKey::try_from(raw_key).map_err(|_| format!("unknown API key {raw_key}"))?;
    if key == ApiKey::ApiVersions && !supported(key, version) {
        // A client newer than us: answer in version 0 with the error and our versions, so it can retry lower.
        // Only the correlation id is read: the rest of a newer header is not ours to understand.
        let correlation_id = frame.slice(4..8).get_i32();
        let body = api_versions(UNSUPPORTED_VERSION);
        let asked = Asked { id: correlation_id, key, version: 0, arrived };
        return Ok(ready(core, answer(core, asked, &body)));
    }
    if !supported(key, version) {
        return Err(format!("{key:?} version {version} is not supported (see ApiVersions)"));
    }
    if key != ApiKey::Produce && frame.len() > core.settings.max_request_bytes {
        return Err(format!(
            "a {key:?} request of {} bytes is over the {} allowed for requests other than Produce (max_request_bytes)",
            frame.len(),
            core.settings.max_request_bytes
        ));
    }
    let header_version = key.request_header_version(version);
    let header = decode_guarded(|| RequestHeader::decode(&mut frame, header_version))?;
    let asked = Asked { id: header.correlation_id, key, version, arrived };
    let client_id = header.client_id.map(|c| c.to_string()).unwrap_or_default();
    // A body must fill its frame exactly: bytes left over mean the client and the broker disagree about the
    // request's layout, and guessing what the client meant is worse than telling it, by closing, that it erred.
    macro_rules! decode {
        ($type:ty) => {{
            let body = decode_guarded(|| <$type>::decode(&mut frame, version))?;
            if frame.has_remaining() && !known_padding(key, version, &frame) {
                return Err(format!(
                    "malformed request: {} bytes left over after the {key:?} v{version} body",
                    frame.remaining()
                ));
            }
            body
        }};
    }
    let answer = match key {
        ApiKey::ApiVersions => {
            let _ = decode!(ApiVersionsRequest);
            lazily(core, asked, |_| api_versions(0))
        }
        ApiKey::Metadata => {
            let request = decode!(MetadataRequest);
            if metadata_creates_nothing(core, &request, version) {
                lazily(core, asked, move |core| core.metadata(request, version))
            } else {
                // Creating topics is a change of state, made in arrival order like every other.
                ready(core, answer(core, asked, &core.metadata(request, version)))
            }
        }
        ApiKey::CreateTopics => pending(core, asked, core.create_topics(decode!(CreateTopicsRequest), version)),
        ApiKey::DeleteTopics => {
            ready(core, answer(core, asked, &core.delete_topics(decode!(DeleteTopicsRequest), version)))
        }
        ApiKey::Produce => pending(core, asked, core.produce(decode!(ProduceRequest), version)),
        ApiKey::Fetch => pending(core, asked, core.fetch(decode!(FetchRequest), version)),
        ApiKey::ListOffsets => {
            let request = decode!(ListOffsetsRequest);
            lazily(core, asked, move |core| core.list_offsets(request, version))
        }
        ApiKey::FindCoordinator => {
            let request = decode!(FindCoordinatorRequest);
            lazily(core, asked, move |core| core.find_coordinator(request, version))
        }
        ApiKey::InitProducerId => {
            ready(core, answer(core, asked, &core.init_producer_id(decode!(InitProducerIdRequest))))
        }
        ApiKey::JoinGroup => pending(core, asked, core.join_group(decode!(JoinGroupRequest), client_id)),
        ApiKey::SyncGroup => pending(core, asked, core.sync_group(decode!(SyncGroupRequest))),
        ApiKey::Heartbeat => ready(core, answer(core, asked, &core.heartbeat(decode!(HeartbeatRequest)))),
        ApiKey::LeaveGroup => ready(core, answer(core, asked, &core.leave_group(decode!(LeaveGroupRequest), version))),
        ApiKey::OffsetCommit => pending(core, asked, core.offset_commit(decode!(OffsetCommitRequest))),
        ApiKey::OffsetFetch => {
            let request = decode!(OffsetFetchRequest);
            lazily(core, asked, move |core| core.offset_fetch(request, version))
        }
        ApiKey::ListGroups => {
            let request = decode!(ListGroupsRequest);
            lazily(core, asked, move |core| core.list_groups(request, version))
        }
        ApiKey::DescribeGroups => {
            let request = decode!(DescribeGroupsRequest);
            lazily(core, asked, move |core| core.describe_groups(request))
        }
        other => return Err(format!("{other:?} is not supported")),
    };
    Ok(answer)
}

/// Leftover bytes that a real client is known to send and Kafka ignores. librdkafka (franz's own client) sends a
/// flexible Metadata request for all topics (a null topic array) three bytes longer than its body: the array count
/// is written into a 4-byte placeholder of which the compact count uses one. Refusing those would cut franz off
/// from itself; three bytes are all it may leave, so the exception holds no more than the frame already did.
fn known_padding(key: ApiKey, version: i16, leftover: &[u8]) -> bool {
    key == ApiKey::Metadata && version >= 9 && leftover.len() <= 3
}

/// Runs a decoder, turning both its errors and any panic inside it into a message.
fn decode_guarded<T>(decode: impl FnOnce() -> anyhow::Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(decode)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(format!("malformed request: {error:#}")),
        Err(_) => Err("malformed request (the decoder gave up)".into()),
    }
}

fn api_versions(error_code: i16) -> ApiVersionsResponse {
    let keys = SUPPORTED
        .iter()
        .map(|(key, min, max)| {
            api_versions_response::ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect();
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(keys)
}

/// A built answer, counted as held until written; `None` (an answer that could not be encoded) hangs up.
fn built(core: &Arc<Core>, frame: Option<Bytes>) -> Reply {
    frame.map_or(Reply::HangUp, |frame| {
        let bytes = frame.len();
        Reply::Frame(frame, Held::new(core.clone(), bytes))
    })
}

fn ready(core: &Arc<Core>, frame: Option<Bytes>) -> Answer {
    futures::future::ready(built(core, frame)).boxed()
}

/// The answer to a request that changes no state, built only when the connection's writer polls it, that is once
/// every earlier answer is written: however many such requests a client pipelines without reading, the connection
/// holds at most one of their answers built (like fetches, whose long polls are the same kind of future). The
/// answer shows the broker's state when it is built, which may include changes made by the connection's later
/// requests, dispatched meanwhile; answering a request later than it arrived is what any busy broker may do.
fn lazily<T, F>(core: &Arc<Core>, asked: Asked, build: F) -> Answer
where
    T: Encodable + ErrorCode,
    F: FnOnce(&Core) -> T + Send + 'static,
{
    let core = core.clone();
    async move {
        let body = build(&core);
        built(&core, answer(&core, asked, &body))
    }
    .boxed()
}

/// Whether a Metadata request creates no topic (auto-creation is off for it, or every topic it names exists), so
/// answering it changes no state and can wait until the writer is ready for the answer.
fn metadata_creates_nothing(core: &Core, request: &MetadataRequest, version: i16) -> bool {
    let auto_create = core.settings.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    !auto_create
        || request.topics.as_ref().is_none_or(|topics| {
            topics.iter().all(|topic| topic.name.as_ref().is_none_or(|name| core.topics.get(name).is_some()))
        })
}

/// An answer a handler gives now or later. A fetch's is read from the log when the writer first polls it (see
/// `Core::fetch`), and counted as held from then until it is written.
fn pending<T: Encodable + ErrorCode + HeaderVersion + Send + 'static>(
    core: &Arc<Core>,
    asked: Asked,
    pending: Pending<T>,
) -> Answer {
    match pending {
        Pending::Now(body) => ready(core, answer(core, asked, &body)),
        Pending::Later(future) => {
            let core = core.clone();
            future.map(move |body| built(&core, answer(&core, asked, &body))).boxed()
        }
        Pending::Silent(body) => {
            // acks=0: the client is told nothing, but a refusal still counts as one.
            core.meter.answered(asked.key, body.error_code(), asked.arrived.elapsed());
            futures::future::ready(Reply::Nothing).boxed()
        }
        Pending::HangUp => futures::future::ready(Reply::HangUp).boxed(),
    }
}

/// Which request an answer is for, and when it arrived.
#[derive(Clone, Copy)]
struct Asked {
    id: i32,
    key: ApiKey,
    version: i16,
    arrived: Instant,
}

/// Counts the answer to `asked` (its API, its error code, how long it took) and encodes it.
fn answer<T: Encodable + ErrorCode>(core: &Core, asked: Asked, body: &T) -> Option<Bytes> {
    core.meter.answered(asked.key, body.error_code(), asked.arrived.elapsed());
    encode(asked.id, asked.key, asked.version, body)
}

/// Encodes a response with its header and size prefix. `None` (and a log line) if the body cannot be encoded
/// in this version, which would be a bug in a handler; the connection is then closed, so the client retries
/// rather than waits forever.
fn encode<T: Encodable>(correlation_id: i32, key: ApiKey, version: i16, body: &T) -> Option<Bytes> {
    let mut frame = BytesMut::with_capacity(64);
    frame.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let result =
        header.encode(&mut frame, key.response_header_version(version)).and_then(|()| body.encode(&mut frame, version));
    if let Err(error) = result {
        tracing::error!("cannot encode the {key:?} v{version} response: {error:#}");
        return None;
    }
    let size = (frame.len() - 4) as i32;
    frame[0..4].copy_from_slice(&size.to_be_bytes());
    Some(frame.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn core(dir: &std::path::Path) -> Arc<Core> {
        let settings = super::super::Settings::new("127.0.0.1:9092".parse().unwrap(), dir.to_path_buf());
        Arc::new(super::super::open(settings, "127.0.0.1:9092".parse().unwrap()).unwrap())
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    #[test]
    fn a_client_asking_for_a_newer_api_versions_gets_version_0_with_the_error_and_our_versions() {
        let dir = tempfile::tempdir().unwrap();
        let core = core(dir.path());
        let mut frame = BytesMut::new();
        frame.put_i16(ApiKey::ApiVersions as i16);
        frame.put_i16(99);
        frame.put_i32(7);
        frame.put_i16(-1);
        let Reply::Frame(answer, _) = futures::executor::block_on(dispatch(&core, frame.freeze(), peer()).unwrap())
        else {
            panic!("ApiVersions is answered");
        };
        let mut body = answer.slice(4..);
        assert_eq!(body.get_i32(), 7, "correlation id");
        let response = ApiVersionsResponse::decode(&mut body, 0).unwrap();
        assert_eq!(response.error_code, UNSUPPORTED_VERSION);
        assert_eq!(response.api_keys.len(), SUPPORTED.len());
    }

    #[test]
    fn an_array_claiming_two_billion_elements_is_refused_without_allocating_them() {
        let dir = tempfile::tempdir().unwrap();
        let core = core(dir.path());
        let mut frame = BytesMut::new();
        frame.put_i16(ApiKey::Metadata as i16);
        frame.put_i16(1);
        frame.put_i32(1);
        frame.put_i16(-1);
        frame.put_i32(i32::MAX);
        frame.extend_from_slice(&[0u8; 16]);
        assert!(dispatch(&core, frame.freeze(), peer()).is_err());
    }

    fn fetch_frame(topic: &str, max_wait_ms: i32, min_bytes: i32) -> Bytes {
        let partition = fetch_request::FetchPartition::default().with_partition(0).with_partition_max_bytes(1 << 20);
        let topic = fetch_request::FetchTopic::default()
            .with_topic(TopicName(kafka_protocol::protocol::StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![partition]);
        let request = FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(min_bytes)
            .with_max_bytes(1 << 20)
            .with_topics(vec![topic]);
        let mut frame = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(4)
            .with_correlation_id(1);
        header.encode(&mut frame, ApiKey::Fetch.request_header_version(4)).unwrap();
        request.encode(&mut frame, 4).unwrap();
        frame.freeze()
    }

    /// Appends one small batch to the partition, visible at once, and wakes its watchers.
    fn append(partition: &crate::topics::Partition) {
        let batch = crate::log::batch::tests::make_batch(0, &[b"hello"], (-1, -1, -1));
        let header = partition.log().append(&batch, true).unwrap();
        partition.publish(header.next_offset());
    }

    fn log_reads(core: &Core) -> u64 {
        core.network.fetch_log_reads.load(Ordering::SeqCst)
    }

    // Regression: fetch answers were read when the request arrived, so queued answers of a client that does not
    // read pinned their records.
    #[tokio::test]
    async fn a_queued_fetch_answer_reads_the_log_only_when_polled() {
        let dir = tempfile::tempdir().unwrap();
        let core = core(dir.path());
        let partition = core.topics.create("t", 1, Default::default()).unwrap().partitions[0].clone();
        append(&partition);
        let answer = dispatch(&core, fetch_frame("t", 0, 1), peer()).unwrap();
        assert_eq!(log_reads(&core), 0, "dispatching a fetch reads nothing");
        let Reply::Frame(frame, _held) = answer.await else { panic!("the fetch is answered") };
        assert_eq!(log_reads(&core), 1, "answering reads the log once");
        assert_eq!(core.network.answers_held.load(Ordering::SeqCst), 1, "held until written");
        assert!(frame.len() > 60, "the answer carries the batch");
    }

    // Regression: a long poll whose min_bytes was never reached re-read up to max_bytes on every watermark change.
    #[tokio::test]
    async fn a_long_poll_for_more_than_arrives_reads_the_log_once() {
        let dir = tempfile::tempdir().unwrap();
        let core = core(dir.path());
        let partition = core.topics.create("t", 1, Default::default()).unwrap().partitions[0].clone();
        append(&partition);
        let mut answer = dispatch(&core, fetch_frame("t", 300, i32::MAX), peer()).unwrap();
        for _ in 0..5 {
            append(&partition);
            // Each poll sees the watermark move, looks at what is available, and goes back to waiting.
            assert!(futures::poll!(&mut answer).is_pending(), "min_bytes is not reached");
        }
        assert_eq!(log_reads(&core), 0, "waiting reads nothing");
        let Reply::Frame(frame, _held) = answer.await else { panic!("the fetch is answered at max_wait") };
        assert_eq!(log_reads(&core), 1, "the log is read once, to answer");
        let mut body = frame.slice(8..);
        let response = FetchResponse::decode(&mut body, 4).unwrap();
        let records = response.responses[0].partitions[0].records.clone().unwrap();
        let one = crate::log::batch::tests::make_batch(0, &[b"hello"], (-1, -1, -1)).len();
        assert_eq!(records.len(), 6 * one, "the answer has all six batches");
    }

    #[test]
    fn bytes_after_a_request_body_are_a_malformed_request() {
        let dir = tempfile::tempdir().unwrap();
        let core = core(dir.path());
        let mut frame = BytesMut::new();
        frame.put_i16(ApiKey::ApiVersions as i16);
        frame.put_i16(0);
        frame.put_i32(7);
        frame.put_i16(-1);
        assert!(dispatch(&core, frame.clone().freeze(), peer()).is_ok(), "the exact request is answered");
        frame.put_u8(0);
        let refused = dispatch(&core, frame.freeze(), peer()).err().expect("one extra byte is refused");
        assert!(refused.contains("left over"), "{refused}");
    }

    #[test]
    fn librdkafkas_padded_all_topics_metadata_request_is_answered_but_more_padding_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let core = core(dir.path());
        // Metadata v12 for all topics exactly as librdkafka 2.x sends it: the body (null topics, two false flags,
        // no tags) and then three zero bytes.
        let mut frame = vec![0, 3, 0, 12, 0, 0, 0, 3, 0, 7];
        frame.extend_from_slice(b"rdkafka");
        frame.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(dispatch(&core, Bytes::from(frame.clone()), peer()).is_ok(), "librdkafka's request is answered");
        frame.push(0);
        assert!(dispatch(&core, Bytes::from(frame), peer()).is_err(), "a fourth byte is not padding we know");
    }

    proptest! {
        #[test]
        fn props_any_request_bytes_are_answered_or_refused_never_a_panic(
            key in prop::sample::select(SUPPORTED.iter().map(|(k, _, _)| *k as i16).collect::<Vec<_>>()),
            version in 0i16..14,
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let core = core(dir.path());
            let mut frame = BytesMut::new();
            frame.put_i16(key);
            frame.put_i16(version);
            frame.put_i32(1);
            frame.extend_from_slice(&body);
            if let Ok(answer) = dispatch(&core, frame.freeze(), peer()) {
                drop(answer);
            }
        }
    }
}
