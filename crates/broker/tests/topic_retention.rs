//! Per-topic retention over a raw socket: a topic created with `retention.ms` or `retention.bytes` keeps its data by
//! its own limits, across restarts, while every other topic keeps the broker-wide ones; configs the broker does not
//! take are refused with `INVALID_CONFIG` and create nothing.
//!
//! Retention runs every 30 s in the broker; these tests run it at once through `EmbeddedBroker::enforce_retention`
//! with a time in the future, so "two days later" takes no waiting.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use franz_broker::{EmbeddedBroker, LogConfig, Settings};
use kafka_protocol::ResponseError;

const HOUR: Duration = Duration::from_secs(3600);

/// Small segments (about three batches each), and the broker-wide retention given.
fn small_segments(dir: &std::path::Path, retention_age: Option<Duration>, retention_bytes: Option<u64>) -> Settings {
    let mut settings = settings(dir);
    settings.log = LogConfig { segment_bytes: 1024, retention_age, retention_bytes, ..LogConfig::default() };
    settings
}

/// Produces `count` batches of about 300 bytes to partition 0 of `name`: several closed segments.
async fn fill(client: &mut Client, name: &str, count: i64) {
    let value = "x".repeat(250);
    for i in 0..count {
        let (error, _) = produce(client, name, batch(&[(1_700_000_000_000 + i, &value)], (-1, -1, -1)), -1).await;
        assert_eq!(error, 0, "produce to {name}");
    }
}

/// The first offset partition 0 of `name` still holds.
async fn earliest(client: &mut Client, name: &str) -> i64 {
    let (error, offset) = list_offset(client, name, -2).await;
    assert_eq!(error, 0, "earliest offset of {name}");
    offset
}

/// Creates a topic with configs and asserts it worked: the configs its creation reports as (name, value, source).
async fn create_with(client: &mut Client, name: &str, configs: &[(&str, Option<&str>)]) -> Vec<(String, String, i8)> {
    let result = try_create_topic_with_configs(client, name, 1, configs, false).await;
    assert_eq!(result.error_code, 0, "create {name}: {:?}", result.error_message);
    let reported = result.configs.expect("v5 reports the configs");
    reported
        .iter()
        .map(|c| (c.name.to_string(), c.value.as_deref().unwrap_or("").to_string(), c.config_source))
        .collect()
}

fn later(by: Duration) -> SystemTime {
    SystemTime::now() + by
}

async fn restart(broker: EmbeddedBroker, settings: Settings) -> EmbeddedBroker {
    broker.stop().await;
    start(settings).await
}

#[tokio::test]
async fn a_topic_kept_forever_keeps_the_old_segments_that_broker_wide_retention_deletes_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let settings = small_segments(dir.path(), Some(HOUR), Some(2048));
    let broker = start(settings.clone()).await;
    let mut client = Client::connect(broker.address()).await;
    let forever = [("retention.ms", Some("-1")), ("retention.bytes", Some("-1")), ("cleanup.policy", Some("delete"))];
    let reported = create_with(&mut client, "ticket-events", &forever).await;
    // Kafka's config sources: 1 is the topic's own setting, 4 the broker's, 5 a fixed default.
    assert_eq!(
        reported,
        [
            ("retention.ms".to_string(), "-1".to_string(), 1),
            ("retention.bytes".to_string(), "-1".to_string(), 1),
            ("cleanup.policy".to_string(), "delete".to_string(), 5),
        ]
    );
    let reported = create_with(&mut client, "ordinary", &[]).await;
    assert_eq!(reported[0], ("retention.ms".to_string(), "3600000".to_string(), 4));
    assert_eq!(reported[1], ("retention.bytes".to_string(), "2048".to_string(), 4));
    fill(&mut client, "ticket-events", 12).await;
    fill(&mut client, "ordinary", 12).await;

    broker.enforce_retention(later(48 * HOUR));
    assert_eq!(earliest(&mut client, "ticket-events").await, 0, "the topic's own retention keeps everything");
    let ordinary_start = earliest(&mut client, "ordinary").await;
    assert!(ordinary_start > 0, "the broker-wide retention deleted old segments of the other topic");

    drop(client);
    let broker = restart(broker, settings).await;
    let mut client = Client::connect(broker.address()).await;
    fill(&mut client, "ticket-events", 12).await;
    fill(&mut client, "ordinary", 12).await;
    broker.enforce_retention(later(30 * 24 * HOUR));
    assert_eq!(earliest(&mut client, "ticket-events").await, 0, "the setting survived the restart");
    assert_eq!(list_offset(&mut client, "ticket-events", -1).await, (0, 24), "every record is still there");
    assert!(earliest(&mut client, "ordinary").await > ordinary_start);
    broker.stop().await;
}

#[tokio::test]
async fn a_topics_own_limits_delete_where_the_broker_wide_retention_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(small_segments(dir.path(), None, None)).await;
    let mut client = Client::connect(broker.address()).await;
    create_with(&mut client, "an-hour", &[("retention.ms", Some("3600000"))]).await;
    create_with(&mut client, "two-kib", &[("retention.bytes", Some("2048"))]).await;
    create_with(&mut client, "ordinary", &[]).await;
    for name in ["an-hour", "two-kib", "ordinary"] {
        fill(&mut client, name, 12).await;
    }

    broker.enforce_retention(SystemTime::now());
    assert!(earliest(&mut client, "two-kib").await > 0, "the topic's size limit applies at once");
    assert_eq!(earliest(&mut client, "an-hour").await, 0, "nothing is an hour old yet");

    broker.enforce_retention(later(2 * HOUR));
    assert!(earliest(&mut client, "an-hour").await > 0, "the topic's time limit applies");
    assert_eq!(earliest(&mut client, "ordinary").await, 0, "the broker keeps everything of a topic without limits");
    broker.stop().await;
}

#[tokio::test]
async fn unknown_configs_and_bad_values_are_refused_with_invalid_config_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(settings(dir.path())).await;
    let mut client = Client::connect(broker.address()).await;
    let refused: &[(&str, Option<&str>)] = &[
        ("segment.bytes", Some("1048576")),
        ("retention.hours", Some("1")),
        ("retention.ms", Some("forever")),
        ("retention.ms", Some("0")),
        ("retention.ms", Some("-2")),
        ("retention.ms", Some("99999999999999999999")),
        ("retention.ms", None),
        ("retention.bytes", Some("1 GiB")),
        ("retention.bytes", Some("0")),
        ("cleanup.policy", Some("compact")),
        ("cleanup.policy", Some("delete,compact")),
        ("cleanup.policy", Some("archive")),
    ];
    for &(name, value) in refused {
        for validate_only in [false, true] {
            let result =
                try_create_topic_with_configs(&mut client, "refused", 1, &[(name, value)], validate_only).await;
            let message = result.error_message.as_deref().unwrap_or_default();
            assert_eq!(result.error_code, ResponseError::InvalidConfig.code(), "{name}={value:?}: {message}");
            assert!(message.contains(name), "the message names {name}: {message}");
        }
    }
    let compact =
        try_create_topic_with_configs(&mut client, "refused", 1, &[("cleanup.policy", Some("compact"))], false);
    let compact = compact.await.error_message.unwrap_or_default();
    assert!(compact.contains("does not compact"), "{compact}");
    // A valid create that only validates creates nothing either.
    let checked = try_create_topic_with_configs(&mut client, "refused", 1, &[("retention.ms", Some("-1"))], true).await;
    assert_eq!(checked.error_code, 0, "{:?}", checked.error_message);

    assert!(!broker.data_dir().join("topics").join("refused").exists());
    assert_eq!(std::fs::read_dir(broker.data_dir().join("staging")).unwrap().count(), 0);
    assert_eq!(try_create_topic(&mut client, "refused", 1).await.0, 0, "no earlier request created the topic");
    broker.stop().await;
}

#[tokio::test]
async fn a_config_named_twice_takes_its_last_value_as_kafka_does_and_repeats_cost_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(small_segments(dir.path(), Some(HOUR), None)).await;
    let mut client = Client::connect(broker.address()).await;
    let reported =
        create_with(&mut client, "last-wins", &[("retention.ms", Some("1000")), ("retention.ms", Some("-1"))]).await;
    assert_eq!(reported[0], ("retention.ms".to_string(), "-1".to_string(), 1));
    // Ten thousand repeats are read once each and leave one setting.
    let repeated = vec![("retention.bytes", Some("-1")); 10_000];
    let reported = create_with(&mut client, "repeated", &repeated).await;
    assert_eq!(reported[1], ("retention.bytes".to_string(), "-1".to_string(), 1));
    fill(&mut client, "last-wins", 12).await;
    fill(&mut client, "repeated", 12).await;
    broker.enforce_retention(later(48 * HOUR));
    assert_eq!(earliest(&mut client, "last-wins").await, 0, "kept forever: the last value won");
    assert!(earliest(&mut client, "repeated").await > 0, "the broker-wide time limit still applies");
    broker.stop().await;
}
