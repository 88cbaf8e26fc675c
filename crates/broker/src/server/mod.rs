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
//!
//! Three parts, each with one job: `admission` decides what the broker takes in (connections up to the limit,
//! request bytes within the in-flight budget, answer bytes within `max_answer_bytes`) and what makes room;
//! `connection` accepts sockets and runs each connection's reader and writer; `dispatch` turns one frame into an
//! answer in the making (checks, decoding, calling a handler) and encodes the answer.

mod admission;
mod connection;
mod dispatch;

pub use admission::Network;
pub use connection::serve;
