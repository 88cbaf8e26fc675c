//! aufbereitung against the in-process broker: what comes out for what goes in, and what happens to offsets.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use franz::kafka::relay::{RelayStats, RetryPolicy};

use crate::util::TOPIC_AUTHORIZATION_FAILED;
use franz::schema::{SourceRef, ticket_id_for_source};
use franz::services::aufbereitung::{self, Settings};
use rdkafka::message::Message as _;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::util::{Harness, valid, wait_until};

/// A running aufbereitung instance.
struct Instance {
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<RelayStats>>,
    settings: Settings,
}

impl Instance {
    fn start(settings: Settings) -> Instance {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(aufbereitung::run(settings.clone(), shutdown.clone()));
        Instance { shutdown, task, settings }
    }

    async fn stop(self) -> RelayStats {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task).await.expect("stops in time").unwrap().unwrap()
    }

    fn assigned(&self) -> usize {
        self.settings.membership.assigned.load(Ordering::SeqCst)
    }
}

fn settings(harness: &Harness) -> Settings {
    Settings::new(harness.bootstrap.clone(), harness.topics.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_ticket_is_normalized_into_tickets_formatted_with_its_key() {
    let harness = Harness::new(3).await;
    let instance = Instance::start(settings(&harness));
    harness.produce(&harness.topics.intake, &[(1, valid("  my account is locked "))]).await;

    let ticket = harness.read(&harness.topics.tickets, 1).await.remove(0);
    assert_eq!(ticket.key(), Some("key-1".as_bytes()));
    let value: Value = serde_json::from_slice(ticket.payload().unwrap()).unwrap();
    let source = SourceRef { topic: harness.topics.intake.clone(), partition: 1, offset: 0 };
    assert_eq!(
        value,
        serde_json::json!({
            "id": ticket_id_for_source(&source),
            "contact": "pontatot",
            "origin": "Discord",
            "body": "my account is locked",
            "date": "2026-02-24T08:32:23.255Z",
        })
    );
    instance.stop().await;
    assert_eq!(harness.count(&harness.topics.dead_letters).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_kind_of_bad_input_becomes_a_dead_letter_with_its_type_and_source() {
    let harness = Harness::new(1).await;
    let huge = vec![b'a'; 1_000_000];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{broken".to_vec(), "json_decode_error"),
        (b"[\"not\", \"an object\"]".to_vec(), "validation_error"),
        (br#"{"message": 42, "username": "u", "timestamp": "2026-02-24T08:32:23Z"}"#.to_vec(), "validation_error"),
        (br#"{"message": "", "username": "u", "timestamp": "2026-02-24T08:32:23Z"}"#.to_vec(), "validation_error"),
        (
            format!(r#"{{"message": "{}", "username": "u", "timestamp": "2026-02-24T08:32:23Z"}}"#, "x".repeat(4001))
                .into_bytes(),
            "validation_error",
        ),
        (br#"{"message": "m", "username": "u", "timestamp": "last tuesday"}"#.to_vec(), "validation_error"),
        (Vec::new(), "json_decode_error"),
        (vec![0xc3, 0x28, 0xff], "json_decode_error"),
        (huge.clone(), "validation_error"),
    ];
    // The 1 MB record needs a producer that allows it; the broker holds it like any other.
    let producer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &harness.bootstrap)
        .set("message.max.bytes", "2000000")
        .create::<rdkafka::producer::FutureProducer>()
        .unwrap();
    for (value, _) in &cases {
        let record =
            rdkafka::producer::FutureRecord::<str, [u8]>::to(&harness.topics.intake).partition(0).payload(value);
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    }
    let instance = Instance::start(settings(&harness));

    let letters = harness.read_json(&harness.topics.dead_letters, cases.len() as i64).await;
    assert_eq!(letters.len(), cases.len());
    for (offset, ((raw, error_type), letter)) in cases.iter().zip(&letters).enumerate() {
        assert_eq!(letter["error_type"], *error_type, "offset {offset}: {letter}");
        assert_eq!(
            letter["source"],
            serde_json::json!({"topic": harness.topics.intake, "partition": 0, "offset": offset})
        );
        assert_eq!(letter["raw_size"], raw.len());
        assert!(letter["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    assert_eq!(letters[0]["raw_value"], "{broken");
    assert_eq!(letters[7]["raw_value_b64"], "wyj/");
    assert_eq!(letters[8]["raw_truncated"], true);
    instance.stop().await;
    assert_eq!(harness.count(&harness.topics.tickets).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_after_a_clean_shutdown_reprocesses_nothing() {
    let harness = Harness::new(3).await;
    let first: Vec<(i32, Vec<u8>)> = (0..60).map(|i| (i % 3, valid(&format!("ticket {i}")))).collect();
    harness.produce(&harness.topics.intake, &first).await;
    let instance = Instance::start(settings(&harness));
    harness.read(&harness.topics.tickets, 60).await;
    assert_eq!(instance.stop().await.delivered.values().sum::<u64>(), 60);

    let instance = Instance::start(settings(&harness));
    // One new record per partition: once all three are out, each partition's backlog has been looked at.
    let second: Vec<(i32, Vec<u8>)> = (0..3).map(|p| (p, valid(&format!("after restart {p}")))).collect();
    harness.produce(&harness.topics.intake, &second).await;
    harness.read(&harness.topics.tickets, 63).await;
    let stats = instance.stop().await;
    assert_eq!(stats.delivered.values().sum::<u64>(), 3, "the restarted instance only handled the new records");
    assert_eq!(harness.count(&harness.topics.tickets).await, 63);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_input_of_a_mixed_stream_appears_exactly_once_across_tickets_and_dead_letters() {
    const N: i32 = 10_000;
    let harness = Harness::new(3).await;
    let records: Vec<(i32, Vec<u8>)> = (0..N)
        .map(|i| {
            let value = match i % 5 {
                0 => b"not json at all".to_vec(),
                1 => br#"{"message": "", "username": "u", "timestamp": "2026-02-24T08:32:23Z"}"#.to_vec(),
                _ => valid(&format!("ticket {i}")),
            };
            (i % 3, value)
        })
        .collect();
    harness.produce(&harness.topics.intake, &records).await;
    let instance = Instance::start(settings(&harness));
    wait_until("all outputs", || async {
        harness.count(&harness.topics.tickets).await + harness.count(&harness.topics.dead_letters).await >= N as i64
    })
    .await;
    instance.stop().await;

    let tickets = harness.read_json(&harness.topics.tickets, 0).await;
    let letters = harness.read_json(&harness.topics.dead_letters, 0).await;
    assert_eq!(tickets.len() + letters.len(), N as usize, "no input lost or repeated");
    // Every input position, derived from the outputs, is present once.
    let mut seen = BTreeSet::new();
    let mut offsets = [0i64; 3];
    let mut expected_ids = BTreeSet::new();
    for (partition, value) in &records {
        let offset = offsets[*partition as usize];
        offsets[*partition as usize] += 1;
        if value.starts_with(b"{\"message\":\"ticket") {
            let source = SourceRef { topic: harness.topics.intake.clone(), partition: *partition, offset };
            expected_ids.insert(ticket_id_for_source(&source));
        }
    }
    let ids: BTreeSet<String> = tickets.iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), tickets.len(), "no ticket twice");
    assert_eq!(ids, expected_ids);
    for letter in &letters {
        assert!(seen.insert((letter["source"]["partition"].as_i64(), letter["source"]["offset"].as_i64())), "{letter}");
    }
    assert_eq!(letters.len(), (N as usize) * 2 / 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_split_the_partitions_and_produce_each_ticket_once() {
    let harness = Harness::new(3).await;
    let a = Instance::start(settings(&harness));
    let b = Instance::start(settings(&harness));
    wait_until("both instances to own partitions", || async {
        a.assigned() >= 1 && b.assigned() >= 1 && a.assigned() + b.assigned() == 3
    })
    .await;

    let records: Vec<(i32, Vec<u8>)> = (0..3000).map(|i| (i % 3, valid(&format!("ticket {i}")))).collect();
    harness.produce(&harness.topics.intake, &records).await;
    harness.read(&harness.topics.tickets, 3000).await;
    let (stats_a, stats_b) = (a.stop().await, b.stop().await);

    let from_a = stats_a.delivered.values().sum::<u64>();
    let from_b = stats_b.delivered.values().sum::<u64>();
    assert!(from_a > 0 && from_b > 0, "both did work: {from_a} and {from_b}");
    assert_eq!(from_a + from_b, 3000);
    assert_eq!(harness.count(&harness.topics.tickets).await, 3000);
}

#[tokio::test(flavor = "multi_thread")]
async fn undeliverable_output_is_reported_to_errors_and_its_record_is_not_skipped() {
    let harness = Harness::new(1).await;
    harness.produce(&harness.topics.intake, &[(0, valid("keeps failing"))]).await;

    // The first attempt and both retries are refused; the error event after them goes through.
    harness.broker.refuse_next_produces(TOPIC_AUTHORIZATION_FAILED, 3);
    let mut failing = settings(&harness);
    failing.retry = RetryPolicy { retries: 2, backoff: Duration::from_millis(20) };
    let outcome =
        tokio::time::timeout(Duration::from_secs(60), aufbereitung::run(failing, CancellationToken::new())).await;
    let error = outcome.expect("stops by itself").expect_err("reports the failure");
    assert!(error.to_string().contains("kept rejecting"), "{error}");

    let events = harness.read_json(&harness.topics.errors, 1).await;
    assert_eq!(events[0]["service"], "aufbereitung");
    assert_eq!(events[0]["level"], "error");
    assert_eq!(events[0]["context"]["source"]["offset"], 0);
    assert_eq!(harness.count(&harness.topics.tickets).await, 0);

    // The record's offset was not committed: a new instance delivers it.
    let instance = Instance::start(settings(&harness));
    let tickets = harness.read_json(&harness.topics.tickets, 1).await;
    assert_eq!(tickets[0]["body"], "keeps failing");
    instance.stop().await;
}
