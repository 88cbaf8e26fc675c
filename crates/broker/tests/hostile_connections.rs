//! Clients that misbehave on purpose (half-sent frames, lengths announced and never sent, idle sockets, answers
//! never read, pipelined fetches and descriptions never read, oversized or padded requests) cannot crowd out real
//! clients or make the broker hold more than its configured limits.
//! Each test is a regression test for a defect a reviewer reproduced against the broker, named in its comment.

mod common;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{Client, PATIENCE, batch, create_topic, frame, one_batch_request, produce, wait_until};
use franz_broker::{Durability, EmbeddedBroker, Settings};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout, timeout_at};

/// A broker with its defaults changed by `configure`, writing without fsyncs (these tests are about connections,
/// not durability), and its data directory.
async fn start(configure: impl FnOnce(&mut Settings)) -> (EmbeddedBroker, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let mut settings = common::settings(data.path());
    settings.durability = Durability::Os;
    configure(&mut settings);
    (common::start(settings).await, data)
}

fn api_versions(correlation_id: i32) -> BytesMut {
    frame(ApiKey::ApiVersions, 0, correlation_id, &ApiVersionsRequest::default())
}

/// Reads one answer: its correlation id and the rest of its frame.
async fn answer(stream: &mut TcpStream) -> io::Result<(i32, Vec<u8>)> {
    let length = stream.read_i32().await?;
    let correlation_id = stream.read_i32().await?;
    let mut rest = vec![0u8; length as usize - 4];
    stream.read_exact(&mut rest).await?;
    Ok((correlation_id, rest))
}

/// Whether a fresh connection gets an ApiVersions answer within a second.
async fn answered(address: SocketAddr) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(address).await?;
        stream.write_all(&api_versions(7)).await?;
        answer(&mut stream).await
    };
    matches!(timeout(Duration::from_secs(1), attempt).await, Ok(Ok((7, _))))
}

/// Whether the broker closes `stream` within `within`, discarding whatever it sends first.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buffer = [0u8; 4096];
    loop {
        match timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Creates a topic of one partition over a connection of its own, closed once the topic exists.
async fn create_one_partition_topic(address: SocketAddr, name: &str) {
    create_topic(&mut Client::connect(address).await, name, 1).await;
}

/// A batch of one record of `value_bytes` bytes, from no producer id.
fn record_of(value_bytes: usize) -> Bytes {
    batch(&[(0, &"x".repeat(value_bytes))], (-1, -1, -1))
}

/// Produces one record of `value_bytes` bytes to partition 0 of `topic` (acks=1) over a connection of its own,
/// and waits for the acknowledgement.
async fn produce_one(address: SocketAddr, topic: &str, value_bytes: usize) {
    produce(&mut Client::connect(address).await, topic, record_of(value_bytes), 1).await;
}

fn fetch(topic: &'static str, max_wait_ms: i32, min_bytes: i32, max_bytes: i32) -> FetchRequest {
    let partition = fetch_request::FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(0)
        .with_partition_max_bytes(max_bytes);
    let topic = fetch_request::FetchTopic::default()
        .with_topic(TopicName(StrBytes::from_static_str(topic)))
        .with_partitions(vec![partition]);
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(max_bytes)
        .with_topics(vec![topic])
}

// Regression: 1,100 sockets that each sent a 4-byte length and nothing more filled the connection limit, and
// from then on every new client was refused, forever.
#[tokio::test(flavor = "multi_thread")]
async fn half_sent_connections_beyond_the_limit_cannot_lock_out_a_new_client() {
    // With the default frame_timeout of 30 s: the newcomer gets in by evicting a stalled sender, not by waiting.
    let (broker, _data) = start(|s| s.max_connections = 32).await;
    let address = broker.address();
    let mut hogs = Vec::new();
    for _ in 0..40 {
        let mut hog = TcpStream::connect(address).await.unwrap();
        // Refused ones may already be closed: a failed write is fine.
        let _ = hog.write_all(&1000i32.to_be_bytes()).await;
        hogs.push(hog);
    }
    let started = Instant::now();
    assert!(answered(address).await, "a new client is answered");
    assert!(started.elapsed() < Duration::from_secs(10), "at once, not after frame_timeout: {:?}", started.elapsed());
    assert!(broker.connections() <= 32, "the limit holds: {}", broker.connections());
    drop(hogs);
    broker.stop().await;
}

// Regression: nothing evicted idle connections, so the limit was reached by sockets doing nothing.
#[tokio::test(flavor = "multi_thread")]
async fn at_the_limit_the_least_recently_active_idle_connection_makes_room() {
    let (broker, _data) = start(|s| s.max_connections = 4).await;
    let address = broker.address();
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(TcpStream::connect(address).await.unwrap());
    }
    // Each asks something, the first one last: the second is then the least recently active.
    for index in [1, 2, 3, 0] {
        open[index].write_all(&api_versions(index as i32)).await.unwrap();
        assert_eq!(timeout(PATIENCE, answer(&mut open[index])).await.unwrap().unwrap().0, index as i32);
    }
    wait_until("all four are idle", PATIENCE, || async { broker.connections() == 4 && broker.busy_connections() == 0 })
        .await;
    let mut newcomer = TcpStream::connect(address).await.unwrap();
    newcomer.write_all(&api_versions(9)).await.unwrap();
    assert_eq!(timeout(PATIENCE, answer(&mut newcomer)).await.unwrap().unwrap().0, 9, "the newcomer is answered");
    assert!(closed_within(&mut open[1], PATIENCE).await, "the least recently active connection was closed");
    for index in [0, 2, 3] {
        open[index].write_all(&api_versions(20 + index as i32)).await.unwrap();
        let (id, _) = timeout(PATIENCE, answer(&mut open[index])).await.unwrap().unwrap();
        assert_eq!(id, 20 + index as i32, "connection {index} still works");
    }
    broker.stop().await;
}

// Regression: connections waiting in a JoinGroup for a member that never returns (a rebalance timeout of 2^31 ms)
// were never closed to admit a newcomer, so they locked every new client out. When every connection is owed an
// answer, the least recently active one now makes room (idle and half-sent ones go first, see the tests above).
#[tokio::test(flavor = "multi_thread")]
async fn connections_waiting_forever_in_a_join_cannot_lock_out_a_new_client() {
    let (broker, _data) = start(|s| {
        s.max_connections = 2;
        s.initial_rebalance_delay = Duration::ZERO;
    })
    .await;
    let address = broker.address();
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("stuck")))
        .with_session_timeout_ms(1_800_000)
        .with_rebalance_timeout_ms(i32::MAX)
        .with_member_id(StrBytes::from_static_str(""))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"m")),
        ]);
    // A member joins and goes away without leaving: the group waits for it for its whole session.
    let mut gone = TcpStream::connect(address).await.unwrap();
    gone.write_all(&frame(ApiKey::JoinGroup, 5, 1, &join)).await.unwrap();
    assert_eq!(timeout(PATIENCE, answer(&mut gone)).await.unwrap().unwrap().0, 1, "the first member joined");
    drop(gone);
    wait_until("the first member's connection is gone", PATIENCE, || async { broker.connections() == 0 }).await;
    let mut waiting = Vec::new();
    for id in 2..4 {
        let mut waiter = TcpStream::connect(address).await.unwrap();
        waiter.write_all(&frame(ApiKey::JoinGroup, 5, id, &join)).await.unwrap();
        waiting.push(waiter);
    }
    wait_until("both joins wait", PATIENCE, || async { broker.busy_connections() == 2 }).await;
    let mut newcomer = TcpStream::connect(address).await.unwrap();
    newcomer.write_all(&api_versions(9)).await.unwrap();
    assert_eq!(timeout(PATIENCE, answer(&mut newcomer)).await.unwrap().unwrap().0, 9, "the newcomer is served");
    let mut closed = 0;
    for waiter in &mut waiting {
        closed += usize::from(closed_within(waiter, Duration::from_secs(2)).await);
    }
    assert_eq!(closed, 1, "one waiting join made room, the other still waits");
    // Counted apart from idle evictions: this is the one that says the limit is too low for real load.
    let mut registry = prometheus_client::registry::Registry::default();
    broker.probe().register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("connections_evicted_total{kind=\"busy\"} 1\n"), "{text}");
    broker.stop().await;
}

// Regression: a started frame could stay unfinished forever, holding its connection slot.
#[tokio::test(flavor = "multi_thread")]
async fn a_frame_not_finished_within_frame_timeout_closes_the_connection() {
    let (broker, _data) = start(|s| s.frame_timeout = Duration::from_millis(300)).await;
    let mut slow = TcpStream::connect(broker.address()).await.unwrap();
    let started = Instant::now();
    slow.write_all(&100i32.to_be_bytes()).await.unwrap();
    slow.write_all(&[0u8; 10]).await.unwrap();
    assert!(closed_within(&mut slow, PATIENCE).await, "the unfinished frame closes its connection");
    assert!(started.elapsed() >= Duration::from_millis(300), "not before frame_timeout");
    assert!(answered(broker.address()).await, "whole frames are still answered");
    broker.stop().await;
}

// Regression: an idle connection was never closed (Kafka closes it after `connections.max.idle.ms`).
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_idle_for_idle_timeout_is_closed() {
    let (broker, _data) = start(|s| s.idle_timeout = Duration::from_millis(300)).await;
    let mut stream = TcpStream::connect(broker.address()).await.unwrap();
    stream.write_all(&api_versions(1)).await.unwrap();
    let (id, _) = timeout(PATIENCE, answer(&mut stream)).await.unwrap().unwrap();
    assert_eq!(id, 1);
    let answered_at = Instant::now();
    assert!(closed_within(&mut stream, PATIENCE).await, "the idle connection is closed");
    assert!(answered_at.elapsed() >= Duration::from_millis(250), "not before idle_timeout");
    wait_until("the closed connection is unregistered", PATIENCE, || async { broker.connections() == 0 }).await;
    broker.stop().await;
}

// The other half of idle closing: a connection waiting longer than idle_timeout for an answer is not idle.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_waiting_for_an_answer_is_not_closed_as_idle() {
    let (broker, _data) = start(|s| s.idle_timeout = Duration::from_millis(200)).await;
    let address = broker.address();
    create_one_partition_topic(address, "quiet").await;
    let mut polling = TcpStream::connect(address).await.unwrap();
    let started = Instant::now();
    polling.write_all(&frame(ApiKey::Fetch, 4, 5, &fetch("quiet", 1000, 1, 1024))).await.unwrap();
    let (id, _) = timeout(PATIENCE, answer(&mut polling)).await.unwrap().unwrap();
    assert_eq!(id, 5);
    assert!(started.elapsed() >= Duration::from_millis(900), "the long poll ran its course");
    // Its idle time starts once the answer is out.
    polling.write_all(&api_versions(6)).await.unwrap();
    assert_eq!(timeout(PATIENCE, answer(&mut polling)).await.unwrap().unwrap().0, 6);
    assert!(closed_within(&mut polling, PATIENCE).await, "closed once idle");
    broker.stop().await;
}

// Regression: nothing bounded request bytes in flight; 1,024 connections could each be part-way through a
// 100 MiB request.
#[tokio::test(flavor = "multi_thread")]
async fn request_bytes_in_flight_stay_within_max_inflight_request_bytes() {
    const BOUND: usize = 1 << 20;
    let (broker, _data) = start(|s| {
        s.max_inflight_request_bytes = BOUND;
        // The hogs still being read when they are dropped are closed at their deadline; keep it short.
        s.frame_timeout = Duration::from_secs(2);
    })
    .await;
    let address = broker.address();
    let frame = 900 << 10;
    let sent = 64 << 10;
    let mut hogs = Vec::new();
    for _ in 0..6 {
        let mut hog = TcpStream::connect(address).await.unwrap();
        hog.write_all(&(frame as i32).to_be_bytes()).await.unwrap();
        hog.write_all(&vec![0u8; sent]).await.unwrap();
        hogs.push(hog);
    }
    // Permits follow the bytes that arrived, not the lengths announced (and only as many frames hold a part as can
    // all finish within the bound: two of these).
    wait_until("what the hogs sent is read", PATIENCE, || async { broker.inflight_request_bytes() >= 2 * sent }).await;
    let inflight = broker.inflight_request_bytes();
    assert!(inflight <= 6 * sent, "{inflight} bytes in flight, more than the {} sent", 6 * sent);
    // Then all of them send the rest, 5 MiB together: watched for a while, the total never exceeds the bound.
    let senders: Vec<_> = hogs
        .into_iter()
        .map(|mut hog| {
            tokio::spawn(async move {
                let _ = hog.write_all(&vec![0u8; frame - sent]).await;
                hog
            })
        })
        .collect();
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_millis(300) {
        let inflight = broker.inflight_request_bytes();
        assert!(inflight <= BOUND, "{inflight} bytes in flight, over the bound of {BOUND}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A frame larger than the bound could never be admitted: it is refused at once.
    let mut huge = TcpStream::connect(address).await.unwrap();
    huge.write_all(&((2 * BOUND) as i32).to_be_bytes()).await.unwrap();
    assert!(closed_within(&mut huge, PATIENCE).await, "a frame over the bound is refused");
    for sender in senders {
        sender.abort();
    }
    wait_until("the hogs' bytes are released", PATIENCE, || async { broker.inflight_request_bytes() == 0 }).await;
    assert!(answered(address).await, "a real request completes once they are gone");
    broker.stop().await;
}

// Regression: once permits were taken as bytes arrived, frames that together announced more than the bound and
// arrived at once each took part of it and waited for the rest, none finishing, until frame_timeout closed them all.
#[tokio::test(flavor = "multi_thread")]
async fn frames_that_together_exceed_the_in_flight_bound_are_all_served_in_turn() {
    const BOUND: usize = 1 << 20;
    let (broker, _data) = start(|s| s.max_inflight_request_bytes = BOUND).await;
    let address = broker.address();
    create_one_partition_topic(address, "wide").await;
    // Three produce requests of 60% of the bound each: any two together are over it. Each sends its first half,
    // then, once all have started, the rest.
    let (go, started) = tokio::sync::watch::channel(false);
    let producers: Vec<_> = (0..3)
        .map(|id| {
            let mut started = started.clone();
            tokio::spawn(async move {
                let whole = frame(ApiKey::Produce, 3, id, &one_batch_request("wide", 0, record_of(BOUND * 6 / 10), 1));
                let mut stream = TcpStream::connect(address).await.unwrap();
                stream.write_all(&whole[..BOUND * 3 / 10]).await.unwrap();
                started.wait_for(|go| *go).await.unwrap();
                stream.write_all(&whole[BOUND * 3 / 10..]).await.unwrap();
                timeout(PATIENCE, answer(&mut stream)).await
            })
        })
        .collect();
    wait_until("all three are being read", PATIENCE, || async { broker.busy_connections() == 3 }).await;
    wait_until("two first halves are in", PATIENCE, || async { broker.inflight_request_bytes() >= BOUND * 6 / 10 })
        .await;
    // Watched for a while, in which the third half arrives too.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_millis(300) {
        let inflight = broker.inflight_request_bytes();
        assert!(inflight <= BOUND, "{inflight} bytes in flight, over the bound of {BOUND}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    go.send(true).unwrap();
    for (id, producer) in producers.into_iter().enumerate() {
        let answered = producer.await.unwrap();
        assert!(matches!(answered, Ok(Ok((got, _))) if got == id as i32), "producer {id} is answered: {answered:?}");
    }
    broker.stop().await;
}

// Regression: fetch answers were read and encoded on arrival and up to 64 queued per connection, so a client
// pipelining fetches without reading pinned gigabytes.
#[tokio::test(flavor = "multi_thread")]
async fn pipelined_fetches_from_a_client_that_does_not_read_hold_one_answer_at_a_time() {
    let (broker, _data) = start(|_| {}).await;
    let address = broker.address();
    create_one_partition_topic(address, "big").await;
    produce_one(address, "big", 512 << 10).await;
    // A tiny receive window, so the broker's writes stall almost at once.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut greedy = socket.connect(address).await.unwrap();
    let fetches = 40;
    let mut requests = Vec::new();
    for id in 0..fetches {
        requests.extend(frame(ApiKey::Fetch, 4, id, &fetch("big", 0, 1, 1 << 20)));
    }
    greedy.write_all(&requests).await.unwrap();
    wait_until("the first answer is read", PATIENCE, || async { broker.answers_held_peak() >= 1 }).await;
    // Watched for a while, in which every request arrives: an eager broker would have read all of their answers.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_millis(300) {
        assert_eq!(broker.answers_held_peak(), 1, "at most one read fetch answer is held for the connection");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Checked after the peak: this answer is held too while it is written.
    assert!(answered(address).await, "the broker serves others meanwhile");
    for id in 0..fetches {
        let (got, body) = timeout(PATIENCE, answer(&mut greedy)).await.unwrap().unwrap();
        assert_eq!(got, id, "answers come in order");
        assert!(body.len() > 512 << 10, "answer {id} carries the record");
    }
    assert!(broker.answers_held_peak() <= 2, "never more than one read answer at a time, besides the other client's");
    broker.stop().await;
}

// Regression: bytes after a decoded request were ignored; a body must fill its frame exactly.
#[tokio::test(flavor = "multi_thread")]
async fn trailing_bytes_after_a_request_close_the_connection() {
    let (broker, _data) = start(|_| {}).await;
    let address = broker.address();
    let metadata = frame(ApiKey::Metadata, 1, 3, &MetadataRequest::default().with_topics(Some(vec![])));
    let mut exact = TcpStream::connect(address).await.unwrap();
    exact.write_all(&metadata).await.unwrap();
    assert_eq!(timeout(PATIENCE, answer(&mut exact)).await.unwrap().unwrap().0, 3, "the exact request is answered");
    let mut padded = metadata.clone();
    padded.extend_from_slice(&[0, 0, 0]);
    let size = (padded.len() - 4) as i32;
    padded[..4].copy_from_slice(&size.to_be_bytes());
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(&padded).await.unwrap();
    let mut buffer = [0u8; 64];
    let read = timeout(PATIENCE, stream.read(&mut buffer)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "closed without an answer, got {read:?}");
    broker.stop().await;
}

/// A connection with a receive window so small that the broker's writes to it stall almost at once.
async fn not_reading(address: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(address).await.unwrap()
}

/// Whether a fresh client is answered, trying once a second (a refused newcomer is closed at once) for `within`.
async fn answered_within(address: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if answered(address).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

// Regression (attack t5_permit_slowloris): three connections that each sent a 100 MB length and one byte held or
// queued for 200 MB of in-flight permits, and every other client's request waited behind them for frame_timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_frame_that_stops_after_its_length_holds_no_request_byte_permits() {
    const BOUND: usize = 2 << 20;
    let (broker, _data) = start(|s| s.max_inflight_request_bytes = BOUND).await;
    let address = broker.address();
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(&((BOUND as i32) * 3 / 4).to_be_bytes()).await.unwrap();
        stream.write_all(&[0]).await.unwrap();
        stalled.push(stream);
    }
    wait_until("the three stalled frames are being read", PATIENCE, || async { broker.busy_connections() == 3 }).await;
    // Permits follow the bytes that arrived: one each, not the 1.5 MB each frame announced.
    wait_until("each stalled frame holds the permits of the byte it sent", PATIENCE, || async {
        broker.inflight_request_bytes() == 3
    })
    .await;
    for _ in 0..3 {
        let started = Instant::now();
        assert!(answered(address).await, "another client is answered while the stalled frames are open");
        assert!(started.elapsed() < Duration::from_secs(1), "at once: {:?}", started.elapsed());
    }
    assert_eq!(broker.inflight_request_bytes(), 3, "the stalled frames still hold only what they sent");
    drop(stalled);
    wait_until("their permits are released", PATIENCE, || async { broker.inflight_request_bytes() == 0 }).await;
    broker.stop().await;
}

// Regression (attacks t2_nonreader_lockout, t10_fetch_pin): a connection owed an answer was never evicted at the
// connection limit and writing an answer had no deadline, so clients that sent fetches and never read the answers
// locked every other client out and pinned the answers' memory, for as long as they liked.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_does_not_read_its_answers_is_closed_after_write_timeout_and_makes_room_at_the_limit() {
    const WRITE_TIMEOUT: Duration = Duration::from_secs(4);
    let (broker, _data) = start(|s| {
        s.max_connections = 2;
        s.write_timeout = WRITE_TIMEOUT;
    })
    .await;
    let address = broker.address();
    create_one_partition_topic(address, "big").await;
    produce_one(address, "big", 1 << 20).await;
    wait_until("the setup connections are gone", PATIENCE, || async { broker.connections() == 0 }).await;
    // More answer bytes than the socket buffers between the broker and each client hold.
    let mut fetches = Vec::new();
    for id in 0..16 {
        fetches.extend(frame(ApiKey::Fetch, 4, id, &fetch("big", 0, 1, 2 << 20)));
    }
    let sent = Instant::now();
    let mut hogs = Vec::new();
    for _ in 0..2 {
        let mut hog = not_reading(address).await;
        hog.write_all(&fetches).await.unwrap();
        hogs.push(hog);
    }
    wait_until("both hogs are owed answers", PATIENCE, || async { broker.busy_connections() == 2 }).await;
    // Both slots are taken by connections owed answers; one whose writer is stuck makes room.
    assert!(answered_within(address, PATIENCE).await, "a newcomer is answered while the hogs hold the limit");
    assert!(sent.elapsed() < WRITE_TIMEOUT, "by eviction, not after write_timeout: {:?}", sent.elapsed());
    // The other hog is closed once an answer has waited write_timeout to be written.
    wait_until("the hog left is closed", PATIENCE, || async { broker.connections() == 0 }).await;
    assert!(sent.elapsed() >= WRITE_TIMEOUT, "not before write_timeout: {:?}", sent.elapsed());
    drop(hogs);
    assert!(answered(address).await, "the broker serves others afterwards");
    broker.stop().await;
}

// Regression (attacks t1_describe_amp, t12_offsetfetch_amp): answers to small read-only requests were built on
// arrival and up to 64 queued per connection, so 60 DescribeGroups of 24 bytes, never read, made the broker hold
// 60 copies of a large group's description.
#[tokio::test(flavor = "multi_thread")]
async fn pipelined_read_only_requests_from_a_client_that_does_not_read_hold_one_built_answer() {
    let (broker, _data) = start(|s| {
        s.initial_rebalance_delay = Duration::ZERO;
        s.max_member_metadata_bytes = 1 << 20;
    })
    .await;
    let address = broker.address();
    let metadata = Bytes::from(vec![b'm'; 512 << 10]);
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_session_timeout_ms(60_000)
        .with_member_id(StrBytes::from_static_str(""))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(StrBytes::from_static_str("range")).with_metadata(metadata),
        ]);
    let mut member = TcpStream::connect(address).await.unwrap();
    member.write_all(&frame(ApiKey::JoinGroup, 0, 1, &join)).await.unwrap();
    assert_eq!(timeout(PATIENCE, answer(&mut member)).await.unwrap().unwrap().0, 1, "the member joined");
    wait_until("the join answer is written", PATIENCE, || async { broker.busy_connections() == 0 }).await;
    // Each description carries the member's 512 KiB of metadata; list answers are small, but built on arrival all
    // the same.
    let describe = DescribeGroupsRequest::default().with_groups(vec![GroupId(StrBytes::from_static_str("g"))]);
    let mut requests = Vec::new();
    for id in 0..60 {
        requests.extend(match id % 2 {
            0 => frame(ApiKey::DescribeGroups, 0, id, &describe),
            _ => frame(ApiKey::ListGroups, 0, id, &ListGroupsRequest::default()),
        });
    }
    let mut greedy = not_reading(address).await;
    greedy.write_all(&requests).await.unwrap();
    wait_until("the first answer is built", PATIENCE, || async { broker.busy_connections() == 1 }).await;
    // Watched for a while, in which every request arrives: an eager broker would have built all of their answers.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_millis(500) {
        let peak = broker.answers_held_peak();
        assert!(peak <= 1, "{peak} answers were built and held at once for a client that does not read");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for id in 0..60 {
        let (got, body) = timeout(PATIENCE, answer(&mut greedy)).await.unwrap().unwrap();
        assert_eq!(got, id, "answers come in order");
        if id % 2 == 0 {
            assert!(body.len() > 512 << 10, "description {id} carries the member's metadata");
        }
    }
    assert_eq!(broker.answers_held_peak(), 1, "never more than one built answer at a time");
    broker.stop().await;
}

// Regression: 30 connections that each asked for one fetch of up to 55 MiB and never read made the broker hold
// 1.88 GB: each connection held one answer, as designed, but nothing bounded them together. Fetches now read only
// what `max_answer_bytes` leaves, so together they hold about that much, and others still get answers.
#[tokio::test(flavor = "multi_thread")]
async fn fetch_answers_held_for_clients_that_do_not_read_stay_within_max_answer_bytes() {
    let (broker, _data) = start(|s| s.max_answer_bytes = 2 << 20).await;
    let address = broker.address();
    create_one_partition_topic(address, "big").await;
    for _ in 0..12 {
        produce_one(address, "big", 512 << 10).await;
    }
    let mut greedy = Vec::new();
    for id in 0..10 {
        let mut stream = not_reading(address).await;
        stream.write_all(&frame(ApiKey::Fetch, 4, id, &fetch("big", 500, 1, 4 << 20))).await.unwrap();
        greedy.push(stream);
    }
    wait_until("fetch answers are built", PATIENCE, || async { broker.answer_bytes_peak() >= 1 << 20 }).await;
    // Watched for a while, in which every greedy fetch is answered: unbounded, they would hold 10 x 4 MiB.
    // One record batch (512 KiB) may go past what is left, and two runtime threads may read at once.
    let bound = (2 << 20) + 2 * (600 << 10);
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(1) {
        let peak = broker.answer_bytes_peak();
        assert!(peak <= bound, "answers held {peak} bytes together");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A reading client is still answered (with what room is left, or nothing once its long poll ends).
    let mut reader = TcpStream::connect(address).await.unwrap();
    reader.write_all(&frame(ApiKey::Fetch, 4, 99, &fetch("big", 200, 1, 4 << 20))).await.unwrap();
    assert_eq!(timeout(PATIENCE, answer(&mut reader)).await.unwrap().unwrap().0, 99);
    assert!(broker.answer_bytes_peak() <= bound);
    drop(greedy);
    broker.stop().await;
}
