//! The embedded broker seen through rdkafka and raw sockets: durability across restarts, groups, idempotence and
//! what it does with bad input.

use std::path::Path;
use std::time::Duration;

use franz::kafka::{self, admin, consumer_config, partitions_at};
use franz_broker::{EmbeddedBroker, Settings};
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::util::{PATIENCE, wait_until};

async fn start(data: &Path) -> EmbeddedBroker {
    let settings = Settings::new("127.0.0.1:0".parse().unwrap(), data.to_path_buf());
    EmbeddedBroker::start(settings).await.expect("the broker starts")
}

async fn produce<C: rdkafka::ClientContext + 'static>(
    producer: &FutureProducer<C>,
    topic: &str,
    partition: i32,
    values: impl IntoIterator<Item = String>,
) {
    let mut pending = Vec::new();
    for value in values {
        let record = FutureRecord::<(), _>::to(topic).partition(partition).payload(value.as_bytes());
        pending.push(producer.send_result(record).map_err(|(e, _)| e).expect("queued"));
    }
    for delivery in pending {
        delivery.await.unwrap().expect("acknowledged");
    }
}

/// Reads every record of one partition from the start: (offset, value).
async fn read_partition(bootstrap: &str, topic: &str, partition: i32, expected: usize) -> Vec<(i64, String)> {
    let consumer: StreamConsumer = consumer_config(bootstrap).set("group.id", "reader").create().unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    let mut records = Vec::new();
    while records.len() < expected {
        let message = tokio::time::timeout(PATIENCE, consumer.recv()).await.expect("records arrive").unwrap();
        records.push((message.offset(), String::from_utf8(message.payload().unwrap().to_vec()).unwrap()));
    }
    records
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_records_are_read_back_in_order_with_contiguous_offsets_after_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let broker = start(data.path()).await;
    let bootstrap = broker.address().to_string();
    admin::ensure_topics(&bootstrap, &["orders"], 2, 1).await.unwrap();
    let producer = kafka::producer(&bootstrap).unwrap();
    produce(&producer, "orders", 1, (0..2000).map(|i| format!("record {i}"))).await;
    drop(producer);
    broker.stop().await;

    let broker = start(data.path()).await;
    let bootstrap = broker.address().to_string();
    let records = read_partition(&bootstrap, "orders", 1, 2000).await;
    let expected: Vec<(i64, String)> = (0..2000).map(|i| (i, format!("record {i}"))).collect();
    assert_eq!(records, expected);
    // New records continue the offsets.
    let producer = kafka::producer(&bootstrap).unwrap();
    produce(&producer, "orders", 1, ["after restart".to_string()]).await;
    let records = read_partition(&bootstrap, "orders", 1, 2001).await;
    assert_eq!(records.last().unwrap(), &(2000, "after restart".to_string()));
    broker.stop().await;
}

fn group_member(bootstrap: &str, group: &str) -> StreamConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("session.timeout.ms", "6000")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap()
}

fn assigned(consumer: &StreamConsumer) -> usize {
    consumer.assignment().map(|a| a.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_of_two_splits_the_partitions_and_the_survivor_takes_all_when_one_leaves() {
    let data = tempfile::tempdir().unwrap();
    let broker = start(data.path()).await;
    let bootstrap = broker.address().to_string();
    admin::ensure_topics(&bootstrap, &["shared"], 4, 1).await.unwrap();
    let first = group_member(&bootstrap, "pair");
    let second = group_member(&bootstrap, "pair");
    first.subscribe(&["shared"]).unwrap();
    second.subscribe(&["shared"]).unwrap();
    // Polling drives the rebalance; nothing is produced, so recv only ever times out.
    let poll = |c: &StreamConsumer| {
        let _ = futures::FutureExt::now_or_never(c.recv());
    };
    wait_until("both members own two partitions", || {
        poll(&first);
        poll(&second);
        let counts = (assigned(&first), assigned(&second));
        async move { counts == (2, 2) }
    })
    .await;
    first.unsubscribe();
    drop(first);
    wait_until("the survivor owns all four partitions", || {
        poll(&second);
        let count = assigned(&second);
        async move { count == 4 }
    })
    .await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_offsets_survive_a_broker_restart() {
    let data = tempfile::tempdir().unwrap();
    let broker = start(data.path()).await;
    let bootstrap = broker.address().to_string();
    admin::ensure_topics(&bootstrap, &["progress"], 1, 1).await.unwrap();
    // A commit must be within the log (the broker refuses one past its end), so the log gets 50 records first.
    let producer = kafka::producer(&bootstrap).unwrap();
    produce(&producer, "progress", 0, (0..50).map(|i| format!("record {i}"))).await;
    drop(producer);
    let consumer = group_member(&bootstrap, "keeper");
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset("progress", 0, Offset::Offset(42)).unwrap();
    consumer.commit(&offsets, CommitMode::Sync).unwrap();
    drop(consumer);
    broker.stop().await;

    let broker = start(data.path()).await;
    let consumer = group_member(&broker.address().to_string(), "keeper");
    let committed = consumer.committed_offsets(partitions_at("progress", 1, Offset::Invalid), PATIENCE).unwrap();
    assert_eq!(committed.find_partition("progress", 0).unwrap().offset(), Offset::Offset(42));
    drop(consumer);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_retried_after_its_answer_was_lost_is_written_once() {
    let data = tempfile::tempdir().unwrap();
    let broker = start(data.path()).await;
    let bootstrap = broker.address().to_string();
    admin::ensure_topics(&bootstrap, &["once"], 1, 1).await.unwrap();
    let producer = kafka::producer(&bootstrap).unwrap();
    produce(&producer, "once", 0, ["warm-up".to_string()]).await;
    // The next two produce requests are written, but the connection drops before each answer: the producer
    // resends the same batches with the same sequence numbers.
    broker.lose_next_produce_answers(2);
    produce(&producer, "once", 0, (0..50).map(|i| format!("retried {i}"))).await;
    producer.flush(PATIENCE).unwrap();
    let records = read_partition(&bootstrap, "once", 0, 51).await;
    let values: Vec<&str> = records.iter().map(|(_, v)| v.as_str()).collect();
    let expected: Vec<String> =
        std::iter::once("warm-up".to_string()).chain((0..50).map(|i| format!("retried {i}"))).collect();
    assert_eq!(values, expected);
    let end = admin::describe(&bootstrap, PATIENCE).await.unwrap();
    assert_eq!(end.iter().find(|t| t.name == "once").unwrap().end_offsets, vec![51], "no duplicate was written");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transactional_producer_is_told_transactions_are_not_supported() {
    let data = tempfile::tempdir().unwrap();
    let broker = start(data.path()).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.address().to_string())
        .set("transactional.id", "tx")
        .create()
        .unwrap();
    let error = producer.init_transactions(Duration::from_secs(20)).expect_err("refused");
    assert!(!error.to_string().is_empty());
    drop(producer);
    broker.stop().await;
}

/// Sends raw bytes and says whether the broker closed the connection (instead of waiting for more).
async fn closes_after(address: std::net::SocketAddr, bytes: &[u8]) -> bool {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut buffer = [0u8; 64];
    matches!(tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await, Ok(Ok(0)) | Ok(Err(_)))
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_frames_close_only_their_own_connection() {
    let data = tempfile::tempdir().unwrap();
    let broker = start(data.path()).await;
    let address = broker.address();
    let bootstrap = address.to_string();
    // A client that stays connected throughout.
    let bystander = kafka::producer(&bootstrap).unwrap();
    admin::ensure_topics(&bootstrap, &["calm"], 1, 1).await.unwrap();
    produce(&bystander, "calm", 0, ["before".to_string()]).await;

    assert!(closes_after(address, &i32::MAX.to_be_bytes()).await, "a 2 GiB frame is refused before it arrives");
    assert!(closes_after(address, &(-5i32).to_be_bytes()).await, "a negative length is refused");
    let mut garbage = 12i32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[0x00, 0x03, 0x00, 0x01, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff]);
    assert!(closes_after(address, &garbage).await, "a malformed Metadata request is refused");
    let mut unknown = 8i32.to_be_bytes().to_vec();
    unknown.extend_from_slice(&[0x7f, 0x00, 0x00, 0x00, 0, 0, 0, 1]);
    assert!(closes_after(address, &unknown).await, "an unknown API key is refused");

    produce(&bystander, "calm", 0, ["after".to_string()]).await;
    assert_eq!(read_partition(&bootstrap, "calm", 0, 2).await.len(), 2);
    broker.stop().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn the_broker_keeps_its_logs_readable_by_its_own_user_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("broker");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let broker = EmbeddedBroker::start(Settings::new("127.0.0.1:0".parse().unwrap(), data.clone())).await.unwrap();
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "tickets and internal notes are in the logs");
    broker.stop().await;
}

/// The staff cards' topic is a map, created compacted where the cluster can compact. The embedded broker cannot
/// (it refuses `cleanup.policy=compact` with `INVALID_CONFIG`), so franz creates it again without compaction and
/// with no retention, keeping every record; the other topics of the same request are created as asked.
#[tokio::test(flavor = "multi_thread")]
async fn a_compacted_topic_the_broker_cannot_compact_is_created_keeping_every_record() {
    let data = tempfile::tempdir().unwrap();
    let broker = start(data.path()).await;
    let bootstrap = broker.address().to_string();
    let topics = admin::ensure_topics_with(&bootstrap, &["plain", "map"], 2, 1, &["map"], &["map"]).await.unwrap();
    let made: Vec<(&str, i32, bool)> = topics.iter().map(|t| (t.name.as_str(), t.partitions, t.created)).collect();
    assert_eq!(made, [("plain", 2, true), ("map", 2, true)]);
    let config = |name: &str| {
        let file = std::fs::read_to_string(data.path().join("topics").join(name).join("topic.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&file).unwrap()["config"].clone()
    };
    assert_eq!(config("map"), serde_json::json!({"retention.ms": -1, "retention.bytes": -1}));
    assert_eq!(config("plain"), serde_json::Value::Null);
    broker.stop().await;
}
