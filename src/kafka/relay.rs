//! The at-least-once consume→produce loop that services build on.
//!
//! Each input record is turned into at most one output record by the caller's [`Transform`]; the input's offset
//! is stored only after the broker acknowledged that output, in input order, so a crash can repeat an output but
//! never lose one. Outputs are pipelined (many in flight at once) for throughput. A transform that keeps state
//! can ask to prepare a partition before its records are transformed (akte catches up with its events there).
//! This module knows nothing of tickets: what an output is belongs to the service.

use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::FuturesOrdered;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::OutputLabels;
use crate::schema::SourceRef;

/// What one input record becomes.
#[derive(Debug, Clone)]
pub struct Output {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// The partition to write to; `None` lets the producer's partitioner choose by key.
    pub partition: Option<i32>,
}

/// One input record, as a transform sees it.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

impl Input<'_> {
    /// Where the record is, for dead letters and error reports.
    pub fn source(&self) -> SourceRef {
        SourceRef { topic: self.topic.to_owned(), partition: self.partition, offset: self.offset }
    }
}

impl<'a, M: Message> From<&'a M> for Input<'a> {
    fn from(message: &'a M) -> Self {
        Input {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key(),
            payload: message.payload().unwrap_or_default(),
        }
    }
}

/// What a service does with each input record.
pub trait Transform {
    /// Whether records of `partition` must wait for [`Transform::prepare`] before being transformed.
    fn needs_prepare(&self, _partition: i32) -> bool {
        false
    }

    /// Makes the transform ready for records of `partition`. An error stops the loop, without storing the
    /// offset of the record that waited.
    fn prepare(&mut self, _partition: i32) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }

    /// The record's output, or `None` when it needs none (its offset then counts as done, in order). An error
    /// stops the loop without storing the record's offset.
    fn transform(&mut self, input: &Input<'_>) -> anyhow::Result<Option<Output>>;
}

/// A plain function from a record to its output is a transform.
impl<F: FnMut(&Input<'_>) -> Output> Transform for F {
    fn transform(&mut self, input: &Input<'_>) -> anyhow::Result<Option<Output>> {
        Ok(Some(self(input)))
    }
}

/// How hard to try before giving up on an output.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts after the first failed delivery (each of which librdkafka already retried internally).
    pub retries: u32,
    /// The wait before the first retry; it doubles each time.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { retries: 3, backoff: Duration::from_secs(1) }
    }
}

/// Where a relay loop counts what it does (see `crate::metrics`). The default counts into handles nobody reads.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    /// The service the loop belongs to: the `service` label of its outputs.
    pub service: String,
    pub records_in: Counter,
    pub retries: Counter,
    pub records_out: Family<OutputLabels, Counter>,
    /// Where a retried delivery is reported.
    pub troubles: crate::troubles::Troubles,
}

impl Meter {
    /// The handles in `metrics` that a relay loop of `service` counts on.
    pub fn of(metrics: &crate::metrics::Metrics, service: &str) -> Meter {
        let label = crate::metrics::ServiceLabel { service: service.to_owned() };
        Meter {
            service: service.to_owned(),
            records_in: metrics.records_in.get_or_create(&label).clone(),
            retries: metrics.relay_retries.get_or_create(&label).clone(),
            records_out: metrics.records_out.clone(),
            troubles: metrics.troubles.clone(),
        }
    }

    fn delivered(&self, topic: &str) {
        self.records_out.get_or_create(&OutputLabels { service: self.service.clone(), topic: topic.to_owned() }).inc();
    }
}

/// Records in flight at once; past this the loop waits for acknowledgements before reading more.
const MAX_IN_FLIGHT: usize = 10_000;

/// Why the loop stopped without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the broker kept rejecting the output of {}/{} offset {} ({attempts} attempts): {error}", input.topic, input.partition, input.offset)]
    OutputRejected { input: SourceRef, attempts: u32, error: KafkaError },
    #[error("the consumer failed: {0}")]
    Consumer(#[from] KafkaError),
    #[error("cannot go on at {}/{} offset {}: {error:#}", input.topic, input.partition, input.offset)]
    NotReady { input: SourceRef, error: anyhow::Error },
}

/// What the loop did before it stopped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RelayStats {
    /// Acknowledged outputs, by output topic.
    pub delivered: std::collections::BTreeMap<String, u64>,
}

type Delivered = Result<rdkafka::producer::future_producer::OwnedDeliveryResult, futures::channel::oneshot::Canceled>;

/// An input whose output settled (or that had none).
type Settled = (SourceRef, Option<(Output, Delivered)>);

/// Runs until `shutdown` is cancelled (then finishes what is in flight, commits and returns `Ok`) or an output
/// cannot be delivered (then returns the error without storing that record's offset). Either way the consumer is
/// closed, leaving its group, before this returns.
pub async fn run<C, F>(
    consumer: StreamConsumer<C>,
    producer: &super::Producer,
    shutdown: &CancellationToken,
    retry: &RetryPolicy,
    meter: &Meter,
    mut transform: F,
) -> Result<RelayStats, RelayError>
where
    C: ConsumerContext + 'static,
    F: Transform,
{
    let mut relay = Relay {
        consumer: &consumer,
        producer,
        retry,
        meter,
        stats: RelayStats::default(),
        in_flight: FuturesOrdered::new(),
    };
    let result = relay.pump(shutdown, &mut transform).await;
    let stats = relay.stats;
    // Committing and closing block until the broker answers, so they run on the blocking pool. After a failure,
    // the offsets stored so far are still good: offsets are stored in input order, only after acknowledgement,
    // and never past a record whose output is still in flight.
    let committed = tokio::task::spawn_blocking(move || {
        let committed = super::commit_stored(&consumer);
        drop(consumer);
        committed
    })
    .await
    .map_err(|_| KafkaError::Canceled)?;
    result?;
    committed?;
    Ok(stats)
}

struct Relay<'a, C: ConsumerContext + 'static> {
    consumer: &'a StreamConsumer<C>,
    producer: &'a super::Producer,
    retry: &'a RetryPolicy,
    meter: &'a Meter,
    stats: RelayStats,
    in_flight: FuturesOrdered<futures::future::BoxFuture<'static, Settled>>,
}

impl<C: ConsumerContext + 'static> Relay<'_, C> {
    async fn pump<F>(&mut self, shutdown: &CancellationToken, transform: &mut F) -> Result<(), RelayError>
    where
        F: Transform,
    {
        loop {
            let accepting = !shutdown.is_cancelled() && self.in_flight.len() < MAX_IN_FLIGHT;
            if !accepting && self.in_flight.is_empty() {
                return Ok(());
            }
            tokio::select! {
                biased;
                Some(settled) = self.in_flight.next() => self.settle(settled).await?,
                _ = shutdown.cancelled(), if accepting => {}
                message = self.consumer.recv(), if accepting => {
                    let message = match message {
                        Ok(message) => message,
                        Err(error) if super::consumer_error_is_fatal(&error) => return Err(error.into()),
                        Err(_) => continue,
                    };
                    self.meter.records_in.inc();
                    let input = Input::from(&message);
                    let source = input.source();
                    let output = if transform.needs_prepare(input.partition) {
                        // The message borrows the consumer and cannot be held across the wait: keep a copy.
                        let owned = message.detach();
                        drop(message);
                        if let Err(error) = transform.prepare(owned.partition()).await {
                            return Err(RelayError::NotReady { input: source, error });
                        }
                        transform.transform(&Input::from(&owned))
                    } else {
                        let output = transform.transform(&input);
                        drop(message);
                        output
                    };
                    let output = output.map_err(|error| RelayError::NotReady { input: source.clone(), error })?;
                    match output {
                        Some(output) => self.send(source, output).await?,
                        None => self.in_flight.push_back(Box::pin(async move { (source, None) })),
                    }
                }
            }
        }
    }

    /// Hands an output to the producer, waiting for room when its queue is full.
    async fn send(&mut self, source: SourceRef, output: Output) -> Result<(), RelayError> {
        loop {
            match self.producer.send_result(record(&output)) {
                Ok(delivery) => {
                    self.in_flight.push_back(Box::pin(async move {
                        let delivered = delivery.await;
                        (source, Some((output, delivered)))
                    }));
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    match self.in_flight.next().await {
                        Some(settled) => self.settle(settled).await?,
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                // Refused before it was queued (too large, unknown topic). Everything before it settles first, so
                // no offset is stored past a record that is still in flight.
                Err((error, _)) => {
                    while let Some(settled) = self.in_flight.next().await {
                        self.settle(settled).await?;
                    }
                    return self.retry_or_fail(source, output, error).await;
                }
            }
        }
    }

    /// Stores the offset of an acknowledged output, or retries a failed one.
    async fn settle(&mut self, (source, settled): Settled) -> Result<(), RelayError> {
        let Some((output, result)) = settled else {
            self.store(&source);
            return Ok(());
        };
        match result {
            Ok(Ok(_)) => {
                self.delivered(&source, &output.topic);
                Ok(())
            }
            Ok(Err((error, _))) => self.retry_or_fail(source, output, error).await,
            Err(_canceled) => self.retry_or_fail(source, output, KafkaError::Canceled).await,
        }
    }

    /// Re-sends one output with backoff until it is acknowledged or the retries run out. Later records wait:
    /// their offsets must not be stored past this one.
    async fn retry_or_fail(
        &mut self,
        source: SourceRef,
        output: Output,
        mut error: KafkaError,
    ) -> Result<(), RelayError> {
        let mut backoff = self.retry.backoff;
        for attempt in 1..=self.retry.retries {
            tracing::warn!(%error, attempt, topic = %output.topic, "delivery failed; retrying in {backoff:?}");
            self.meter.retries.inc();
            let problem = format!("delivery to {} failed ({error}); retry {attempt}", output.topic);
            self.meter.troubles.report(&self.meter.service, problem);
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            let outcome = match self.producer.send_result(record(&output)) {
                Ok(delivery) => delivery.await.unwrap_or(Err((KafkaError::Canceled, empty_message()))),
                Err((e, _)) => Err((e, empty_message())),
            };
            match outcome {
                Ok(_) => {
                    self.delivered(&source, &output.topic);
                    return Ok(());
                }
                Err((e, _)) => error = e,
            }
        }
        Err(RelayError::OutputRejected { input: source, attempts: self.retry.retries + 1, error })
    }

    fn delivered(&mut self, source: &SourceRef, output_topic: &str) {
        *self.stats.delivered.entry(output_topic.to_owned()).or_default() += 1;
        self.meter.delivered(output_topic);
        self.store(source);
    }

    fn store(&mut self, source: &SourceRef) {
        // Fails only if the partition was revoked meanwhile; its next owner repeats the record (at-least-once).
        if let Err(error) = self.consumer.store_offset(&source.topic, source.partition, source.offset) {
            tracing::debug!(%error, ?source, "offset not stored; the partition moved to another member");
        }
    }
}

fn record(output: &Output) -> FutureRecord<'_, [u8], [u8]> {
    let mut record = FutureRecord::to(&output.topic).payload(output.payload.as_slice());
    if let Some(partition) = output.partition {
        record = record.partition(partition);
    }
    match &output.key {
        Some(key) => record.key(key.as_slice()),
        None => record,
    }
}

fn empty_message() -> rdkafka::message::OwnedMessage {
    rdkafka::message::OwnedMessage::new(None, None, String::new(), rdkafka::Timestamp::NotAvailable, 0, 0, None)
}
