//! What the broker counts about itself, for a Prometheus scrape: requests by API and error code, their latency,
//! bytes in and out, fsync latency, and what happened to connections; plus, read only when scraped, open
//! connections and the log's bytes per topic.
//!
//! The counters live in the broker's shared state and are moved where the work happens (`server` for requests,
//! bytes and connections, `flush` for fsyncs); they are atomics or a short lock, cheap next to the work they
//! count. Partitions are not among them: a program reads those from metadata, whatever broker it runs. [`Meter::register`] hands them to a `prometheus_client` registry (franz prefixes them `franz_broker_`).
//! A request's error code is the first non-zero one its answer carries, at the top or for any partition, topic,
//! group or member, so a produce refused for one partition of three counts as refused.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::Core;

/// A Kafka API, by its name in the protocol (`Produce`, `Fetch`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    pub api: String,
}

/// A Kafka API and the error code its answer carried, by Kafka's name for it (`NONE`, `NOT_LEADER_OR_FOLLOWER`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub api: String,
    pub error: String,
}

/// Why the broker closed a connection its client did not close.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// What an evicted connection was doing: `idle` (idle, half-way through a request, or not reading its answers) or
/// `busy` (waiting for an answer: every connection was, which means real load beyond `max_connections`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// A topic's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabel {
    topic: String,
}

/// Why the broker dropped a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// The client sent something the broker will not serve: malformed, oversized, an unsupported API or version.
    BadRequest,
    /// A request did not arrive whole within `frame_timeout`, or an answer was not taken within `write_timeout`.
    Timeout,
}

/// The counters of one API, made on its first request.
struct ApiMeter {
    name: String,
    answered_ok: Counter,
    seconds: Histogram,
}

/// Everything the broker counts as it works.
pub struct Meter {
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<ApiLabel, Histogram, fn() -> Histogram>,
    /// Indexed by API key.
    apis: Vec<OnceLock<ApiMeter>>,
    /// Request bytes read, size prefixes included.
    pub received_bytes: Counter,
    /// Answer bytes written, size prefixes included.
    pub sent_bytes: Counter,
    /// How long each fsync of a partition's log took.
    pub fsync_seconds: Histogram,
    /// Connections admitted.
    pub accepted: Counter,
    /// Open connections closed to make room for a new one at `max_connections`, by what they were doing.
    evicted: Family<KindLabel, Counter>,
    dropped: Family<ReasonLabel, Counter>,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter").finish_non_exhaustive()
    }
}

/// 100 µs to about 15 s: a produce fsynced on a fast disk to a fetch that waited out a long poll.
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.5, 14))
}

/// 50 µs to about 6.5 s: an fsync of the page cache on an SSD to one on a struggling disk.
fn fsync_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.2, 16))
}

impl Default for Meter {
    fn default() -> Self {
        let apis = (0..=super::apis::SUPPORTED.iter().map(|(key, ..)| *key as usize).max().unwrap_or(0))
            .map(|_| OnceLock::new())
            .collect();
        Meter {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(request_histogram as fn() -> Histogram),
            apis,
            received_bytes: Counter::default(),
            sent_bytes: Counter::default(),
            fsync_seconds: fsync_histogram(),
            accepted: Counter::default(),
            evicted: Family::default(),
            dropped: Family::default(),
        }
    }
}

impl Meter {
    /// Counts an answered request of `key` whose answer carried `error_code`, `elapsed` after it arrived.
    pub fn answered(&self, key: ApiKey, error_code: i16, elapsed: Duration) {
        let Some(slot) = self.apis.get(key as usize) else { return };
        let api = slot.get_or_init(|| {
            let name = format!("{key:?}");
            ApiMeter {
                answered_ok: self
                    .requests
                    .get_or_create(&RequestLabels { api: name.clone(), error: "NONE".into() })
                    .clone(),
                seconds: self.request_seconds.get_or_create(&ApiLabel { api: name.clone() }).clone(),
                name,
            }
        });
        api.seconds.observe(elapsed.as_secs_f64());
        match ResponseError::try_from_code(error_code) {
            None => {
                api.answered_ok.inc();
            }
            Some(error) => {
                let labels = RequestLabels { api: api.name.clone(), error: error_name(error) };
                self.requests.get_or_create(&labels).inc();
            }
        }
    }

    /// Counts a connection closed to make room at `max_connections`; `busy` when it was owed an answer.
    pub fn evicted(&self, busy: bool) {
        let kind = if busy { "busy" } else { "idle" };
        self.evicted.get_or_create(&KindLabel { kind: kind.into() }).inc();
    }

    /// Counts a connection the broker closed because of its client.
    pub fn dropped(&self, why: Dropped) {
        let reason = match why {
            Dropped::BadRequest => "bad_request",
            Dropped::Timeout => "timeout",
        };
        self.dropped.get_or_create(&ReasonLabel { reason: reason.into() }).inc();
    }

    /// Registers every metric in `registry`, the scrape-time gauges read from `core` for as long as it exists.
    pub(crate) fn register(&self, registry: &mut Registry, core: Weak<Core>) {
        registry.register(
            "requests",
            "Requests answered, by API and the error code of the answer",
            self.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its answer, by API (a fetch's includes its long poll)",
            self.request_seconds.clone(),
        );
        registry.register("received_bytes", "Request bytes read from clients", self.received_bytes.clone());
        registry.register("sent_bytes", "Answer bytes written to clients", self.sent_bytes.clone());
        registry.register(
            "fsync_duration_seconds",
            "Time one fsync of a partition's log took",
            self.fsync_seconds.clone(),
        );
        registry.register("connections_accepted", "Client connections admitted", self.accepted.clone());
        registry.register(
            "connections_evicted",
            "Open connections closed to make room for a new one at max_connections (busy: every one was owed an answer)",
            self.evicted.clone(),
        );
        registry.register(
            "connections_dropped",
            "Connections closed for a bad request or a timeout (frame_timeout, write_timeout)",
            self.dropped.clone(),
        );
        for reason in ["bad_request", "timeout"] {
            let _ = self.dropped.get_or_create(&ReasonLabel { reason: reason.into() });
        }
        for kind in ["idle", "busy"] {
            let _ = self.evicted.get_or_create(&KindLabel { kind: kind.into() });
        }
        registry.register_collector(Box::new(Gauges(core)));
    }
}

/// `UnknownTopicOrPartition` as Kafka writes it: `UNKNOWN_TOPIC_OR_PARTITION`; a code Kafka has no name for, as
/// its number.
fn error_name(error: ResponseError) -> String {
    if let ResponseError::Unknown(code) = error {
        return code.to_string();
    }
    let mut name = String::new();
    for (i, c) in error.to_string().chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// What is read when scraped rather than tracked: open connections and log bytes per topic. It holds
/// the broker weakly, so a stopped broker is not kept alive by a registry; it then shows nothing.
struct Gauges(Weak<Core>);

impl std::fmt::Debug for Gauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gauges").finish_non_exhaustive()
    }
}

impl Collector for Gauges {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(core) = self.0.upgrade() else { return Ok(()) };
        let gauge = |value: usize| ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
        gauge(core.network.connections()).encode(encoder.encode_descriptor(
            "connections",
            "Open client connections",
            None,
            MetricType::Gauge,
        )?)?;
        let sizes = log_bytes(&core);
        let mut family = encoder.encode_descriptor(
            "log_bytes",
            "Bytes of log segments on disk, by topic",
            None,
            MetricType::Gauge,
        )?;
        for (topic, bytes) in sizes {
            let label = TopicLabel { topic };
            ConstGauge::new(i64::try_from(bytes).unwrap_or(i64::MAX)).encode(family.encode_family(&label)?)?;
        }
        Ok(())
    }
}

/// Each topic's segment bytes, all partitions together.
fn log_bytes(core: &Arc<Core>) -> Vec<(String, u64)> {
    core.topics
        .all()
        .iter()
        .map(|topic| (topic.name.clone(), topic.partitions.iter().map(|p| p.log().size()).sum()))
        .collect()
}

/// The first non-zero error code an answer carries, at its top or in any of its parts; 0 when there is none.
pub trait ErrorCode {
    fn error_code(&self) -> i16;
}

/// The first non-zero code of `codes`, or 0.
fn first(codes: impl IntoIterator<Item = i16>) -> i16 {
    codes.into_iter().find(|code| *code != 0).unwrap_or(0)
}

/// Answers with one error code at the top and nothing below it.
macro_rules! top_level {
    ($($response:ty),*) => {$(
        impl ErrorCode for $response {
            fn error_code(&self) -> i16 {
                self.error_code
            }
        }
    )*};
}

top_level!(ApiVersionsResponse, InitProducerIdResponse, JoinGroupResponse, SyncGroupResponse, HeartbeatResponse);
top_level!(ListGroupsResponse);

impl ErrorCode for MetadataResponse {
    fn error_code(&self) -> i16 {
        let topics = self
            .topics
            .iter()
            .flat_map(|t| std::iter::once(t.error_code).chain(t.partitions.iter().map(|p| p.error_code)));
        first(std::iter::once(self.error_code).chain(topics))
    }
}

impl ErrorCode for CreateTopicsResponse {
    fn error_code(&self) -> i16 {
        first(self.topics.iter().map(|t| t.error_code))
    }
}

impl ErrorCode for DeleteTopicsResponse {
    fn error_code(&self) -> i16 {
        first(self.responses.iter().map(|t| t.error_code))
    }
}

impl ErrorCode for ProduceResponse {
    fn error_code(&self) -> i16 {
        first(self.responses.iter().flat_map(|t| t.partition_responses.iter().map(|p| p.error_code)))
    }
}

impl ErrorCode for FetchResponse {
    fn error_code(&self) -> i16 {
        let partitions = self.responses.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code));
        first(std::iter::once(self.error_code).chain(partitions))
    }
}

impl ErrorCode for ListOffsetsResponse {
    fn error_code(&self) -> i16 {
        first(self.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)))
    }
}

impl ErrorCode for FindCoordinatorResponse {
    fn error_code(&self) -> i16 {
        first(std::iter::once(self.error_code).chain(self.coordinators.iter().map(|c| c.error_code)))
    }
}

impl ErrorCode for LeaveGroupResponse {
    fn error_code(&self) -> i16 {
        first(std::iter::once(self.error_code).chain(self.members.iter().map(|m| m.error_code)))
    }
}

impl ErrorCode for OffsetCommitResponse {
    fn error_code(&self) -> i16 {
        first(self.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)))
    }
}

impl ErrorCode for OffsetFetchResponse {
    fn error_code(&self) -> i16 {
        let topics = self.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code));
        let groups = self.groups.iter().flat_map(|g| {
            std::iter::once(g.error_code).chain(g.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)))
        });
        first(std::iter::once(self.error_code).chain(topics).chain(groups))
    }
}

impl ErrorCode for DescribeGroupsResponse {
    fn error_code(&self) -> i16 {
        first(self.groups.iter().map(|g| g.error_code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_named_as_kafka_names_them() {
        assert_eq!(error_name(ResponseError::try_from_code(6).unwrap()), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(ResponseError::try_from_code(3).unwrap()), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(ResponseError::try_from_code(-1).unwrap()), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(ResponseError::try_from_code(9_999).unwrap()), "9999");
    }

    #[test]
    fn a_produce_refused_for_one_partition_of_several_counts_as_refused() {
        let partition = |code| produce_response::PartitionProduceResponse::default().with_error_code(code);
        let topic = produce_response::TopicProduceResponse::default().with_partition_responses(vec![
            partition(0),
            partition(6),
            partition(0),
        ]);
        assert_eq!(ProduceResponse::default().with_responses(vec![topic]).error_code(), 6);
        assert_eq!(ProduceResponse::default().error_code(), 0);
    }

    #[test]
    fn answers_are_counted_by_api_and_error_with_their_latency() {
        let meter = Meter::default();
        meter.answered(ApiKey::Produce, 0, Duration::from_millis(2));
        meter.answered(ApiKey::Produce, 0, Duration::from_millis(3));
        meter.answered(ApiKey::Produce, 6, Duration::from_millis(1));
        let ok = RequestLabels { api: "Produce".into(), error: "NONE".into() };
        let refused = RequestLabels { api: "Produce".into(), error: "NOT_LEADER_OR_FOLLOWER".into() };
        assert_eq!(meter.requests.get_or_create(&ok).get(), 2);
        assert_eq!(meter.requests.get_or_create(&refused).get(), 1);
        let mut registry = Registry::default();
        registry.register("seconds", "", meter.request_seconds.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("seconds_count{api=\"Produce\"} 3\n"), "{text}");
    }
}
