//! The accept loop and each connection: a reader that takes frames off the socket (bounded by the in-flight budget
//! and `frame_timeout`) and dispatches them in arrival order, and a writer that sends their answers in the same
//! order (each within `write_timeout`), joined by a bounded queue so a slow client slows only itself.
//!
//! What a frame means is `dispatch`'s job; who is let in and how much they may hold is `admission`'s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admission::Activity;
use super::dispatch::{Answer, Reply, dispatch};
use crate::Core;
use crate::meter::Dropped;

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
