//! aufbereitung: the service that turns raw intake records into tickets or dead letters.
//!
//! It consumes the intake topic in consumer group `aufbereitung` and produces exactly one output per input
//! through the at-least-once relay. What counts as valid is `normalize`'s business; this module only wires
//! Kafka to it and reports a delivery failure to the errors topic before stopping.

pub mod normalize;

use std::sync::Arc;

use futures::FutureExt as _;
use rdkafka::consumer::Consumer as _;
use tokio_util::sync::CancellationToken;

use crate::config::Topics;
use crate::kafka::relay::{self, Input, Output, RelayError, RetryPolicy};
use crate::kafka::{self, CommitOnRevoke, group_consumer, report_error};
use crate::metrics::{ErrorTypeLabel, Metrics};
use crate::schema::{DeadLetter, ErrorType, SourceRef, now_rfc3339};

/// The service's name in logs and error events.
pub const NAME: &str = "aufbereitung";

/// The consumer group of every aufbereitung instance: instances share the intake partitions.
pub const GROUP: &str = "aufbereitung";

/// What aufbereitung needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bootstrap: String,
    pub topics: Topics,
    pub group: String,
    pub retry: RetryPolicy,
    /// Observes the consumer's rebalances (how many partitions this instance owns).
    pub membership: CommitOnRevoke,
    /// Where it counts records and dead letters.
    pub metrics: Arc<Metrics>,
}

impl Settings {
    /// The settings `franz up` uses: the shared group, the default retry policy.
    pub fn new(bootstrap: String, topics: Topics) -> Self {
        Settings {
            bootstrap,
            topics,
            group: GROUP.to_owned(),
            retry: RetryPolicy::default(),
            membership: CommitOnRevoke::default(),
            metrics: Arc::default(),
        }
    }
}

/// `franz up`'s aufbereitung: always runs.
pub fn plan(context: &super::Context<'_>) -> anyhow::Result<super::Plan> {
    let topics = &context.config.topics;
    let status = format!("{} -> {}, {}", topics.intake, topics.tickets, topics.dead_letters);
    let settings =
        Settings { metrics: context.metrics.clone(), ..Settings::new(context.bootstrap.clone(), topics.clone()) };
    Ok(super::Plan::run(status, run(settings, context.shutdown.clone()).map(|r| r.map(drop)).boxed()))
}

/// Runs until `shutdown` is cancelled, or until an output cannot be delivered: then it publishes an event to the
/// errors topic and returns the error, leaving that record's offset uncommitted so nothing is skipped.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<relay::RelayStats> {
    let consumer = group_consumer(&settings.bootstrap, &settings.group, settings.membership.clone())?;
    consumer.subscribe(&[&settings.topics.intake])?;
    let producer = kafka::producer(&settings.bootstrap)?;
    let topics = settings.topics.clone();
    let meter = crate::kafka::relay::Meter::of(&settings.metrics, NAME);
    let metrics = &settings.metrics;
    let result = relay::run(consumer, &producer, &shutdown, &settings.retry, &meter, |message: &Input<'_>| {
        transform(&topics, metrics, message)
    })
    .await;
    match result {
        Ok(stats) => {
            tracing::info!(?stats.delivered, "aufbereitung stopped");
            Ok(stats)
        }
        Err(error) => {
            let mut context = serde_json::Map::new();
            if let RelayError::OutputRejected { input, .. } = &error {
                context.insert("source".into(), serde_json::to_value(input).unwrap_or_default());
            }
            report_error(&producer, &topics.errors, NAME, format!("{error}; aufbereitung stopped consuming"), context)
                .await;
            Err(error.into())
        }
    }
}

/// One intake record's output: its ticket on the tickets topic, or a dead letter. The key is kept.
fn transform(topics: &Topics, metrics: &Metrics, message: &Input<'_>) -> Output {
    let source = message.source();
    let value = message.payload;
    let key = message.key.map(<[u8]>::to_vec);
    let (topic, payload) = match normalize::normalize(value, &source).map(|ticket| serde_json::to_vec(&ticket)) {
        Ok(Ok(ticket)) => (&topics.tickets, ticket),
        Ok(Err(error)) => {
            (&topics.dead_letters, dead_letter(metrics, ErrorType::UnexpectedError, error.to_string(), value, source))
        }
        Err(rejection) => {
            (&topics.dead_letters, dead_letter(metrics, rejection.error_type, rejection.error, value, source))
        }
    };
    Output { topic: topic.clone(), key, payload, partition: None }
}

fn dead_letter(metrics: &Metrics, error_type: ErrorType, error: String, value: &[u8], source: SourceRef) -> Vec<u8> {
    let label = serde_json::to_value(error_type).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    metrics.dead_letters.get_or_create(&ErrorTypeLabel { error_type: label }).inc();
    let letter = DeadLetter::new(error_type, error, value, source, now_rfc3339());
    serde_json::to_vec(&letter).unwrap_or_default()
}
