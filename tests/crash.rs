//! The crash test: the broker as a child process, killed with SIGKILL at random moments while an idempotent
//! `acks=all` producer streams records; after every restart each acknowledged record must be there, in order, at
//! the offset it was acknowledged with, and every partition's offsets must be contiguous with no torn batch.
//!
//! `FRANZ_CRASH_ROUNDS` sets the number of kills (5 in the test suite; `cargo xtask crash` runs 20 or more).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use franz::kafka::{admin, consumer_config};
use futures::StreamExt as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::util::{PATIENCE, franz, scratch, wait_until};

const TOPIC: &str = "crash";
const PARTITIONS: i32 = 3;

/// A broker process on a fixed port and data directory.
fn start_broker(dir: &Path, port: u16) -> Child {
    let mut child = franz(dir, None)
        .args(["broker", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.join("data"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::options().create(true).append(true).open(dir.join("broker.log")).unwrap())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut ready = String::new();
    stdout.read_line(&mut ready).unwrap();
    assert!(ready.starts_with("ready "), "the broker starts: {ready:?}");
    // Keep draining, so the broker never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    child
}

/// What the producer was told: (partition, offset) → value, for every acknowledged record.
type Acknowledged = Arc<Mutex<BTreeMap<(i32, i64), String>>>;

/// Streams records until `stop`, at most 500 in flight, recording each acknowledgement.
async fn stream(
    producer: FutureProducer,
    round: usize,
    acknowledged: Acknowledged,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut sequence = 0u64;
    loop {
        while in_flight.len() < 500 && !*stop.borrow() {
            let value = format!("r{round}-{sequence:08}");
            let partition = (sequence % PARTITIONS as u64) as i32;
            sequence += 1;
            let record = FutureRecord::<(), _>::to(TOPIC).partition(partition).payload(value.as_bytes());
            match producer.send_result(record) {
                Ok(delivery) => in_flight.push(async move { (value, delivery.await) }),
                Err(_) => break,
            }
            // About 25,000 records a second: enough to be mid-write at any kill, few enough to check quickly.
            if sequence % 25 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        if in_flight.is_empty() {
            return;
        }
        if let Some((value, Ok(Ok(delivered)))) = in_flight.next().await {
            acknowledged.lock().unwrap().insert((delivered.partition, delivered.offset), value);
        }
    }
}

/// What has been checked so far: per partition, the offset checked up to and each producer round's last sequence.
#[derive(Default)]
struct Checked {
    end: BTreeMap<i32, i64>,
    last_sequence: BTreeMap<(i32, String), String>,
}

/// Reads each partition from where the last check stopped (or from the start) to its end and checks it against
/// what was acknowledged. Returns the number of records in the topic.
async fn verify(bootstrap: &str, acknowledged: &BTreeMap<(i32, i64), String>, checked: &mut Checked) -> usize {
    let consumer: StreamConsumer = consumer_config(bootstrap).set("group.id", "verifier").create().unwrap();
    let mut total = 0;
    for partition in 0..PARTITIONS {
        let (low, high) = consumer.fetch_watermarks(TOPIC, partition, PATIENCE).unwrap();
        assert_eq!(low, 0, "nothing was deleted");
        let from = checked.end.get(&partition).copied().unwrap_or(0);
        assert!(high >= from, "partition {partition} shrank from {from} to {high} records");
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(TOPIC, partition, Offset::Offset(from)).unwrap();
        consumer.assign(&assignment).unwrap();
        let mut expected_offset = from;
        while expected_offset < high {
            let message = tokio::time::timeout(PATIENCE, consumer.recv())
                .await
                .expect("the log can be read to its end")
                .expect("every batch is whole and valid");
            assert_eq!(message.offset(), expected_offset, "offsets are contiguous in partition {partition}");
            let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
            if let Some(promised) = acknowledged.get(&(partition, message.offset())) {
                assert_eq!(&value, promised, "the acknowledged record is at its offset");
            }
            let (round, sequence) = value.split_once('-').unwrap();
            let key = (partition, round.to_string());
            if let Some(previous) = checked.last_sequence.insert(key, sequence.to_string()) {
                assert!(previous.as_str() < sequence, "records of one producer keep their order");
            }
            expected_offset += 1;
        }
        for ((p, offset), value) in acknowledged.range((partition, 0)..(partition + 1, 0)) {
            assert!(*offset < high, "acknowledged record {value} at {p}/{offset} survived (end is {high})");
        }
        checked.end.insert(partition, high);
        total += high as usize;
    }
    total
}

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_record_survives_kill_9_in_order_with_contiguous_offsets() {
    let rounds: usize = std::env::var("FRANZ_CRASH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let dir = scratch();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bootstrap = format!("127.0.0.1:{port}");
    let mut broker = start_broker(dir.path(), port);
    admin::ensure_topics(&bootstrap, &[TOPIC], PARTITIONS, 1).await.unwrap();
    let acknowledged: Acknowledged = Arc::default();
    let mut checked = Checked::default();
    let started = Instant::now();
    for round in 0..rounds {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            // Records in flight at the kill fail fast, so the round can move on to the restart.
            .set("message.timeout.ms", "1500")
            .create()
            .unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let writer = tokio::spawn(stream(producer, round, acknowledged.clone(), stopped));
        let before = acknowledged.lock().unwrap().len();
        // Kill at a random moment once writes are flowing (a new idempotent producer needs a moment to start).
        wait_until("the first acknowledgement of the round", || {
            let now = acknowledged.lock().unwrap().len();
            async move { now > before }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..1000))).await;
        broker.kill().unwrap();
        broker.wait().unwrap();
        stop.send(true).unwrap();
        writer.await.unwrap();
        let during = acknowledged.lock().unwrap().len() - before;
        broker = start_broker(dir.path(), port);
        let snapshot = acknowledged.lock().unwrap().clone();
        let total = verify(&bootstrap, &snapshot, &mut checked).await;
        println!(
            "round {round}: killed after {during} acknowledgements; {total} records, all {} acknowledged ones present",
            snapshot.len()
        );
        assert!(during > 0, "round {round} acknowledged something before the kill");
    }
    // Finally, everything once more from the start: a restart must not have changed what was checked before.
    let everything = acknowledged.lock().unwrap().clone();
    let total = verify(&bootstrap, &everything, &mut Checked::default()).await;
    println!("final check: {total} records from offset 0, every acknowledged one in place");
    broker.kill().unwrap();
    broker.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("broker.log")).unwrap_or_default();
    let repaired = log.lines().filter(|l| l.contains("cut an incomplete batch")).count();
    println!("{rounds} kills in {:.1}s; torn tails cut on restart: {repaired}", started.elapsed().as_secs_f64());
}
