//! The broker's metrics, read as a scraper reads them (the text a registry encodes) while a raw client works it:
//! requests by API and error code, bytes, latencies, fsyncs, log bytes per topic, and what happened to
//! connections (accepted, evicted, dropped for a bad request or a timeout).

mod common;

use std::time::Duration;

use common::*;
use franz_broker::{Durability, EmbeddedBroker};
use kafka_protocol::ResponseError;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The broker's metrics as text.
fn scrape(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

/// The value of the sample `series` (name and labels as written), if the text has it.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn registered(broker: &EmbeddedBroker) -> Registry {
    let mut registry = Registry::default();
    broker.probe().register_metrics(&mut registry);
    registry
}

/// Polls the scrape until `condition` holds, failing with `what` and the last scrape after [`PATIENCE`].
async fn wait_for(registry: &Registry, what: &str, condition: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = scrape(registry);
        if condition(&text) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "waited {PATIENCE:?} for: {what}\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_counted_by_api_and_error_with_their_bytes_latency_fsyncs_and_log_size() {
    let data = tempfile::tempdir().unwrap();
    let mut settings = settings(data.path());
    settings.durability = Durability::Fsync;
    let broker = start(settings).await;
    let registry = registered(&broker);
    let mut client = Client::connect(broker.address()).await;
    create_topic(&mut client, "metered", 1).await;

    let before = scrape(&registry);
    let received = |text: &str| value(text, "received_bytes_total").unwrap();
    let records = batch(&[(1, "one"), (2, "two")], (-1, -1, -1));
    assert_eq!(produce(&mut client, "metered", records.clone(), -1).await.0, 0);
    assert_eq!(produce(&mut client, "metered", records.clone(), -1).await.0, 0);
    broker.refuse_next_produces(ResponseError::NotLeaderOrFollower.code(), 1);
    assert_eq!(produce(&mut client, "metered", records.clone(), -1).await.0, ResponseError::NotLeaderOrFollower.code());
    let text = scrape(&registry);

    assert_eq!(value(&text, r#"requests_total{api="Produce",error="NONE"}"#), Some(2.0), "{text}");
    assert_eq!(value(&text, r#"requests_total{api="Produce",error="NOT_LEADER_OR_FOLLOWER"}"#), Some(1.0), "{text}");
    assert_eq!(value(&text, r#"requests_total{api="CreateTopics",error="NONE"}"#), Some(1.0), "{text}");
    assert_eq!(value(&text, r#"request_duration_seconds_count{api="Produce"}"#), Some(3.0), "{text}");
    assert!(
        received(&text) - received(&before) >= 3.0 * records.len() as f64,
        "three produce requests carried the batch three times\n{text}"
    );
    assert!(value(&text, "sent_bytes_total").unwrap() > 0.0, "{text}");
    assert!(value(&text, "fsync_duration_seconds_count").unwrap() >= 1.0, "acks=all waited for an fsync\n{text}");
    assert_eq!(
        value(&text, r#"log_bytes{topic="metered"}"#),
        Some(2.0 * records.len() as f64),
        "the log holds the two batches written\n{text}"
    );
    assert_eq!(value(&text, "connections"), Some(1.0), "{text}");
    assert_eq!(value(&text, "connections_accepted_total"), Some(1.0), "{text}");

    drop(client);
    broker.stop().await;
    let text = scrape(&registry);
    assert_eq!(value(&text, "connections"), None, "a stopped broker shows no gauges\n{text}");
    assert_eq!(value(&text, r#"requests_total{api="Produce",error="NONE"}"#), Some(2.0), "counters stay\n{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_directory_with_an_illegal_name_is_not_served_nor_put_into_a_label() {
    let data = tempfile::tempdir().unwrap();
    let broker = start(settings(data.path())).await;
    let mut client = Client::connect(broker.address()).await;
    create_topic(&mut client, "good", 1).await;
    drop(client);
    broker.stop().await;
    // Copied in by hand under a name no client could create: a quote and a line break would end the label early.
    let topics = data.path().join("topics");
    let copy = std::process::Command::new("cp").arg("-r").arg(topics.join("good")).arg(topics.join("a\"b\nc")).status();
    assert!(copy.unwrap().success());

    let broker = start(settings(data.path())).await;
    let registry = registered(&broker);
    let text = scrape(&registry);
    let labels: Vec<&str> = text.lines().filter(|line| line.starts_with("log_bytes{")).collect();
    assert_eq!(labels, ["log_bytes{topic=\"good\"} 0"], "{text}");
    let mut client = Client::connect(broker.address()).await;
    let (error, _) = try_create_topic(&mut client, "good", 1).await;
    assert_eq!(error, 36, "the legal topic is still served (TOPIC_ALREADY_EXISTS)");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acks_0_produce_refused_counts_under_its_error() {
    let data = tempfile::tempdir().unwrap();
    let broker = start(settings(data.path())).await;
    let registry = registered(&broker);
    let mut client = Client::connect(broker.address()).await;
    create_topic(&mut client, "quiet", 1).await;
    broker.refuse_next_produces(ResponseError::NotLeaderOrFollower.code(), 1);
    let request = one_batch_request("quiet", 0, batch(&[(1, "unheard")], (-1, -1, -1)), 0);
    client.send(kafka_protocol::messages::ApiKey::Produce, 7, &request).await;
    wait_for(&registry, "the silent refusal counted", |text| {
        value(text, r#"requests_total{api="Produce",error="NOT_LEADER_OR_FOLLOWER"}"#) == Some(1.0)
    })
    .await;
    let succeeded = value(&scrape(&registry), r#"requests_total{api="Produce",error="NONE"}"#);
    assert_eq!(succeeded.unwrap_or(0.0), 0.0, "the refusal is no success");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn evicted_and_dropped_connections_are_counted_by_reason() {
    let data = tempfile::tempdir().unwrap();
    let mut settings = settings(data.path());
    settings.max_connections = 1;
    settings.frame_timeout = Duration::from_millis(300);
    let broker = start(settings).await;
    let registry = registered(&broker);
    let address = broker.address();

    // The one slot is taken by an idle connection; a newcomer makes it go.
    let mut first = Client::connect(address).await;
    create_topic(&mut first, "t", 1).await;
    // The client may read the answer before the broker marks the connection idle again; until then it is busy.
    wait_until("the first connection to go idle", PATIENCE, || async { broker.busy_connections() == 0 }).await;
    let mut second = TcpStream::connect(address).await.unwrap();
    wait_for(&registry, "the idle connection evicted for the newcomer", |text| {
        value(text, r#"connections_evicted_total{kind="idle"}"#) == Some(1.0)
    })
    .await;
    let mut buffer = [0u8; 1];
    let closed = tokio::time::timeout(PATIENCE, first.stream.read(&mut buffer)).await.unwrap();
    assert!(matches!(closed, Ok(0) | Err(_)), "the evicted connection is closed");

    // A frame announcing 4 bytes is no request.
    second.write_all(&4i32.to_be_bytes()).await.unwrap();
    second.write_all(&[0, 0, 0, 0]).await.unwrap();
    wait_for(&registry, "a bad request counted", |text| {
        value(text, r#"connections_dropped_total{reason="bad_request"}"#) == Some(1.0)
    })
    .await;

    // A frame that never arrives whole.
    let mut third = TcpStream::connect(address).await.unwrap();
    third.write_all(&100i32.to_be_bytes()).await.unwrap();
    third.write_all(&[0, 18]).await.unwrap();
    wait_for(&registry, "a frame timeout counted", |text| {
        value(text, r#"connections_dropped_total{reason="timeout"}"#) == Some(1.0)
    })
    .await;
    let text = scrape(&registry);
    assert_eq!(value(&text, "connections_accepted_total"), Some(3.0), "{text}");
    assert_eq!(value(&text, r#"connections_evicted_total{kind="busy"}"#), Some(0.0), "{text}");
    broker.stop().await;
}
