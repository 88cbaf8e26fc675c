//! What every franz Kafka client shares: the client settings, the producer and consumer constructors, and the
//! helpers built on them.
//!
//! The delivery guarantees live here as settings (idempotence, `acks=all`, manual offset store) so that no
//! service can quietly weaken them. This module holds no service logic; `relay` is the at-least-once loop,
//! `admin` the topic operations and `identity` the cluster and topic ids the ticket store is checked against.

pub mod admin;
pub mod identity;
pub mod relay;
pub mod repeats;
pub mod tickets;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, TopicPartitionList};

use crate::schema::{ErrorEvent, Level, now_rfc3339};

/// How long a producer keeps retrying one record before reporting it failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The settings every client starts from.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        // librdkafka logs every failed connection attempt; franz reports reachability itself.
        .set("log.connection.close", "false");
    config
}

/// The settings every consumer starts from.
pub fn consumer_config(bootstrap: &str) -> ClientConfig {
    client_config(bootstrap)
}

/// The client context of every franz Kafka client that needs no other: librdkafka's log lines and errors go
/// through [`repeats`], so a cluster that is gone is said once per kind of error and interval, not dozens of times
/// a second by every client.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_quietly(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        error_quietly(&error, reason);
    }
}

impl ConsumerContext for Quiet {}

/// librdkafka's log line through [`repeats`], at the level the `log` crate would have given it.
fn log_quietly(level: RDKafkaLogLevel, facility: &str, message: &str) {
    let level = match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            repeats::Level::Error
        }
        RDKafkaLogLevel::Warning => repeats::Level::Warn,
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => repeats::Level::Info,
        // Asked for explicitly (librdkafka's `debug` setting): every line is wanted.
        RDKafkaLogLevel::Debug => return tracing::debug!("librdkafka: {facility} {message}"),
    };
    repeats::note(level, &format!("librdkafka: {facility} {message}"));
}

/// librdkafka's client-wide error (`AllBrokersDown`, `BrokerTransportFailure`, …) through [`repeats`].
fn error_quietly(error: &KafkaError, reason: &str) {
    repeats::note(repeats::Level::Error, &format!("librdkafka: {error}: {reason}"));
}

/// The producer franz's services use.
pub type Producer = FutureProducer<Quiet>;

/// A plain consumer (no group logic of its own) whose librdkafka logs go through [`repeats`].
pub type PlainConsumer = BaseConsumer<Quiet>;

/// The producer every service and `franz ticket` use: idempotent, `acks=all`, so an acknowledged record is
/// on the broker exactly once.
pub fn producer(bootstrap: &str) -> KafkaResult<Producer> {
    client_config(bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string())
        .create_with_context(Quiet)
}

/// A group member that stores offsets only when told to (`store_offset` after the output is acknowledged) and
/// commits them when it loses partitions, so the next owner starts where this one stopped.
pub fn group_consumer(
    bootstrap: &str,
    group: &str,
    context: CommitOnRevoke,
) -> KafkaResult<StreamConsumer<CommitOnRevoke>> {
    group_consumer_config(bootstrap, group).create_with_context(context)
}

/// The settings of `group_consumer`, for a service that must change one before creating it.
pub fn group_consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut config = consumer_config(bootstrap);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000");
    config
}

/// Commits the stored offsets before partitions are taken away in a rebalance, and keeps count of the
/// partitions this member owns and of the rebalances it has seen.
#[derive(Debug, Clone, Default)]
pub struct CommitOnRevoke {
    /// How many partitions this member owns now.
    pub assigned: Arc<AtomicUsize>,
    /// Bumped after every rebalance: what a member knew of its partitions before may be stale now.
    pub generation: Arc<AtomicUsize>,
}

impl ClientContext for CommitOnRevoke {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_quietly(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        error_quietly(&error, reason);
    }
}

impl ConsumerContext for CommitOnRevoke {
    /// Counts from the rebalance itself and never asks the consumer: this callback also runs while the consumer is
    /// dropped (its close serves the last rebalance), when a question to librdkafka (`assignment()`) waits for an
    /// answer that never comes, and the drop, and the runtime thread that runs it, hang for ever. With the eager
    /// protocol franz's consumers use, an assignment is all the member owns and a revocation leaves it nothing.
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                self.assigned.store(partitions.count(), Ordering::SeqCst);
                let names: Vec<String> =
                    partitions.elements().iter().map(|p| format!("{}/{}", p.topic(), p.partition())).collect();
                tracing::info!("assigned partitions: {}", names.join(", "));
            }
            Rebalance::Revoke(_) => self.assigned.store(0, Ordering::SeqCst),
            Rebalance::Error(_) => {}
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            tracing::debug!(count = partitions.count(), "partitions revoked; committing stored offsets");
            // Asynchronous: this callback runs inside `recv()` on a runtime thread, which must not block on the
            // broker. librdkafka sends the commit before it leaves the group, on the same connection.
            match consumer.commit_consumer_state(CommitMode::Async) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(error) => tracing::warn!(
                    %error,
                    "could not commit offsets before a rebalance; some records may be processed twice"
                ),
            }
        }
    }
}

/// Whether an error from `recv()` ends a consumer. librdkafka reports passing trouble (a broker restarting, a
/// connection dropped) as errors too, and recovers from them by itself; only fatal ones are final.
pub fn consumer_error_is_fatal(error: &KafkaError) -> bool {
    let fatal = matches!(error, KafkaError::MessageConsumptionFatal(_));
    if !fatal {
        // Every poll reports it again while the cluster is gone: said once per interval.
        repeats::note(
            repeats::Level::Warn,
            &format!("the consumer reports a problem; librdkafka retries by itself: {error}"),
        );
    }
    fatal
}

/// Commits stored offsets synchronously. Having nothing to commit is not an error.
pub fn commit_stored<C: Consumer<X>, X: ConsumerContext>(consumer: &C) -> KafkaResult<()> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
        other => other,
    }
}

/// Publishes one record and waits for the broker's acknowledgement.
pub async fn publish<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    topic: &str,
    key: Option<&str>,
    payload: &[u8],
) -> KafkaResult<(i32, i64)> {
    let mut record = FutureRecord::<str, [u8]>::to(topic).payload(payload);
    if let Some(key) = key {
        record = record.key(key);
    }
    match producer.send(record, DELIVERY_TIMEOUT).await {
        Ok(delivery) => Ok((delivery.partition, delivery.offset)),
        Err((error, _)) => Err(error),
    }
}

/// Publishes a tombstone (`key` with no value), which forgets the key on a compacted topic, and waits for the
/// broker's acknowledgement.
pub async fn tombstone<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    topic: &str,
    key: &str,
) -> KafkaResult<(i32, i64)> {
    match producer.send(FutureRecord::<str, [u8]>::to(topic).key(key), DELIVERY_TIMEOUT).await {
        Ok(delivery) => Ok((delivery.partition, delivery.offset)),
        Err((error, _)) => Err(error),
    }
}

/// Publishes an operational event to the errors topic, retrying a few times; if even that fails, the log is the
/// last resort.
pub async fn report_error<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    errors_topic: &str,
    service: &str,
    message: String,
    context: serde_json::Map<String, serde_json::Value>,
) {
    tracing::error!(service, %message, "reporting to {errors_topic}");
    let event = ErrorEvent { service: service.to_owned(), level: Level::Error, message, time: now_rfc3339(), context };
    let payload = serde_json::to_vec(&event).unwrap_or_default();
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..=REPORT_ATTEMPTS {
        match publish(producer, errors_topic, Some(service), &payload).await {
            Ok(_) => return,
            Err(error) if attempt == REPORT_ATTEMPTS => {
                tracing::error!(%error, "could not publish the event above to {errors_topic}")
            }
            Err(error) => tracing::warn!(%error, attempt, "publishing an error event failed; retrying in {backoff:?}"),
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
}

/// How often `report_error` tries before it gives up on the errors topic.
const REPORT_ATTEMPTS: u32 = 5;

/// The partitions of `topic` as a list, each at `offset`.
pub fn partitions_at(topic: &str, partitions: i32, offset: rdkafka::Offset) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition_offset(topic, partition, offset).expect("a fresh list accepts any offset");
    }
    list
}
