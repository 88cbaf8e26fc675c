//! One function per Kafka API: decoded request in, response (now or later) out.
//!
//! Handlers translate between kafka-protocol's message types and the broker's parts (`topics`, `log`, `groups`,
//! `flush`). Every state change a request makes happens synchronously, in the order requests arrive on a
//! connection; only waiting (for an fsync, for data, for a rebalance) happens in the returned future. Framing,
//! version checks and encoding are `server.rs`'s job.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::Core;
use super::groups::{self, Commit, Committed, Join};
use super::log::batch::{self, BatchError};
use super::log::producers::Verdict;
use super::topic_config::{Origin, TopicConfig};
use super::topics::{CreateError, MAX_PARTITIONS, valid_name};

/// Kafka error codes the handlers answer with.
mod code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_CONFIG: i16 = 40;
    pub const INVALID_REQUEST: i16 = 42;
    pub const INVALID_RECORD: i16 = 87;
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const UNKNOWN_PRODUCER_ID: i16 = 59;
}

/// One partition of a fetch: from where, and at most how much.
struct FetchAt {
    partition: i32,
    offset: i64,
    max_bytes: usize,
}

/// A produce written to one partition.
struct Appended {
    base_offset: i64,
    log_start: i64,
    /// For `acks=all`: the watermark to wait on and the offset it must reach.
    durable_at: Option<(tokio::sync::watch::Receiver<i64>, i64)>,
}

/// The operations every client may perform on a topic, as Kafka's ACL operation bits: there are no ACLs, so
/// read (3), write (4), create (5), delete (6), alter (7), describe (8), describe configs (10), alter configs (11).
const TOPIC_OPERATIONS: i32 = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
/// The same for the cluster: create (5), alter (7), describe (8), cluster action (9), describe configs (10),
/// alter configs (11), idempotent write (12).
const CLUSTER_OPERATIONS: i32 = (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

/// The most a fetch answers with, whatever the client asks for (Kafka's `fetch.max.bytes` default, 55 MiB).
const MAX_FETCH_BYTES: usize = 55 << 20;
/// The longest metadata a committed offset may carry (Kafka's `offset.metadata.max.bytes`).
const MAX_OFFSET_METADATA: usize = 4096;

/// What the broker says to transactional requests.
pub const NO_TRANSACTIONS: &str = "transactions are not supported by franz's embedded broker";

/// A response now, a response later, none at all (`acks=0`: the response is kept only to be counted), or a closed
/// connection instead of a response.
pub enum Pending<T> {
    Now(T),
    Later(BoxFuture<'static, T>),
    Silent(T),
    HangUp,
}

fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

fn topic_name(text: &str) -> TopicName {
    TopicName(s(text))
}

impl Core {
    pub fn metadata(&self, request: MetadataRequest, version: i16) -> MetadataResponse {
        let brokers = vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(0))
                .with_host(s(self.advertised.0.clone()))
                .with_port(self.advertised.1),
        ];
        let wanted: Option<Vec<Option<String>>> = match request.topics {
            None => None,
            Some(list) if list.is_empty() && version == 0 => None,
            // Each topic is answered once however often it is named (as Kafka does): the answer's size is bounded
            // by the topics that exist, not by the request.
            Some(list) => {
                let mut seen = std::collections::HashSet::new();
                Some(
                    list.into_iter()
                        .map(|t| t.name.map(|n| n.to_string()))
                        .filter(|n| seen.insert(n.clone()))
                        .collect(),
                )
            }
        };
        let auto_create = self.settings.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
        let mut topics = Vec::new();
        match wanted {
            None => topics.extend(self.topics.all().iter().map(|t| describe_topic(t, version))),
            Some(names) => {
                for name in names {
                    let Some(name) = name else {
                        topics.push(MetadataResponseTopic::default().with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION));
                        continue;
                    };
                    let found = match self.topics.get(&name) {
                        Some(topic) => Ok(topic),
                        None if !valid_name(&name) => Err(code::INVALID_TOPIC_EXCEPTION),
                        None if auto_create => {
                            match self.topics.create(&name, self.settings.default_partitions, TopicConfig::default()) {
                                Ok(topic) => {
                                    tracing::info!(topic = %name, "created a topic on first use");
                                    Ok(topic)
                                }
                                Err(CreateError::Exists) => {
                                    self.topics.get(&name).ok_or(code::UNKNOWN_TOPIC_OR_PARTITION)
                                }
                                Err(_) => Err(code::UNKNOWN_TOPIC_OR_PARTITION),
                            }
                        }
                        None => Err(code::UNKNOWN_TOPIC_OR_PARTITION),
                    };
                    topics.push(match found {
                        Ok(topic) => describe_topic(&topic, version),
                        Err(error) => {
                            MetadataResponseTopic::default().with_name(Some(topic_name(&name))).with_error_code(error)
                        }
                    });
                }
            }
        }
        if version >= 8 && request.include_topic_authorized_operations {
            for topic in &mut topics {
                topic.topic_authorized_operations = TOPIC_OPERATIONS;
            }
        }
        let mut response = MetadataResponse::default().with_brokers(brokers).with_topics(topics);
        if (8..=10).contains(&version) && request.include_cluster_authorized_operations {
            response.cluster_authorized_operations = CLUSTER_OPERATIONS;
        }
        if version >= 1 {
            response.controller_id = BrokerId(0);
        }
        if version >= 2 {
            response.cluster_id = Some(s(self.cluster_id.clone()));
        }
        response
    }

    /// Creates topics on a blocking thread: a create of thousands of partitions takes thousands of file creations
    /// and fsyncs, which must hold up neither the runtime's threads nor other clients.
    pub fn create_topics(
        self: &Arc<Self>,
        request: CreateTopicsRequest,
        version: i16,
    ) -> Pending<CreateTopicsResponse> {
        let core = self.clone();
        Pending::Later(
            async move {
                let creating = tokio::task::spawn_blocking(move || core.create_topics_now(request, version));
                creating.await.unwrap_or_else(|_| {
                    tracing::error!("creating topics failed unexpectedly");
                    CreateTopicsResponse::default()
                })
            }
            .boxed(),
        )
    }

    fn create_topics_now(&self, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
        let mut results = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for topic in request.topics {
            let name = topic.name.to_string();
            let partitions = if !topic.assignments.is_empty() {
                topic.assignments.len() as i32
            } else if topic.num_partitions == -1 {
                self.settings.default_partitions
            } else {
                topic.num_partitions
            };
            // The topic's own settings (retention.ms, retention.bytes, cleanup.policy=delete); a config named twice
            // takes its last value, as Kafka does.
            let config = TopicConfig::from_request(topic.configs.iter().map(|c| (&*c.name, c.value.as_deref())));
            let refusal: Option<(i16, String)> = if !matches!(topic.replication_factor, -1 | 1) {
                Some((
                    code::INVALID_REPLICATION_FACTOR,
                    "franz's embedded broker is a single node: replication factor 1".into(),
                ))
            } else if topic.assignments.iter().any(|a| a.broker_ids.iter().any(|b| b.0 != 0)) {
                Some((code::INVALID_REQUEST, "franz's embedded broker is node 0 and the only one".into()))
            } else if let Err(refused) = &config {
                Some((code::INVALID_CONFIG, refused.to_string()))
            } else if !valid_name(&name) {
                Some((code::INVALID_TOPIC_EXCEPTION, "topic names are 1 to 249 of [a-zA-Z0-9._-]".into()))
            } else if !(1..=MAX_PARTITIONS).contains(&partitions) {
                Some((code::INVALID_PARTITIONS, "a topic has 1 to 1000 partitions".into()))
            } else if self.topics.get(&name).is_some() {
                Some((code::TOPIC_ALREADY_EXISTS, "the topic already exists".into()))
            } else if !seen.insert(name.clone()) {
                Some((code::INVALID_REQUEST, "the request names this topic more than once".into()))
            } else {
                None
            };
            let room = self.topics.max_partitions().saturating_sub(self.topics.partition_count());
            let refusal = match refusal {
                None if partitions as usize > room => Some((
                    code::INVALID_PARTITIONS,
                    "the broker's partition limit (max_partitions, bounded by the open-file limit) leaves no room for this topic".into(),
                )),
                refusal => refusal,
            };
            let config = config.unwrap_or_default();
            let outcome = match refusal {
                Some((error, message)) => Err((error, message)),
                None if request.validate_only => Ok((uuid::Uuid::nil(), config)),
                None => match self.topics.create(&name, partitions, config) {
                    Ok(created) => {
                        tracing::info!(topic = %name, partitions, config = ?created.config, "created a topic");
                        Ok((created.id, created.config))
                    }
                    Err(CreateError::Exists) => Err((code::TOPIC_ALREADY_EXISTS, "the topic already exists".into())),
                    Err(error @ CreateError::TooManyPartitions { .. }) => {
                        Err((code::INVALID_PARTITIONS, error.to_string()))
                    }
                    Err(error) => {
                        tracing::error!(topic = %name, "cannot create the topic: {error}");
                        Err((code::KAFKA_STORAGE_ERROR, error.to_string()))
                    }
                },
            };
            let mut result = CreatableTopicResult::default().with_name(topic.name);
            match outcome {
                Ok((id, config)) => {
                    if version >= 5 {
                        result.num_partitions = partitions;
                        result.replication_factor = 1;
                        result.configs = Some(self.topic_configs(&config));
                    }
                    if version >= 7 {
                        result.topic_id = id;
                    }
                }
                Err((error, message)) => {
                    result.error_code = error;
                    result.error_message = Some(s(message));
                }
            }
            results.push(result);
        }
        CreateTopicsResponse::default().with_topics(results)
    }

    /// The configs a CreateTopics answer (v5 and later) reports for a topic created with `config`: the retention
    /// in force and the cleanup policy, each marked as the topic's own setting or the broker's.
    fn topic_configs(&self, config: &TopicConfig) -> Vec<CreatableTopicConfigs> {
        config
            .effective(&self.settings.log)
            .into_iter()
            .map(|(name, value, origin)| {
                // Kafka's ConfigSource: DYNAMIC_TOPIC_CONFIG, STATIC_BROKER_CONFIG, DEFAULT_CONFIG.
                let source = match origin {
                    Origin::Topic => 1,
                    Origin::Broker => 4,
                    Origin::Fixed => 5,
                };
                CreatableTopicConfigs::default()
                    .with_name(StrBytes::from_static_str(name))
                    .with_value(Some(s(value)))
                    .with_config_source(source)
            })
            .collect()
    }

    pub fn delete_topics(&self, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
        let responses = request
            .topic_names
            .into_iter()
            .map(|name| {
                let outcome = match self.topics.delete(&name) {
                    Ok(true) => match self.groups.forget_topic(&name) {
                        Ok(()) => {
                            tracing::info!(topic = %name.as_str(), "deleted a topic");
                            Ok(())
                        }
                        // The topic is gone, but offsets committed to it by older versions (without its id) would
                        // come back after a restart, even into a topic created later under the same name.
                        Err(error) => {
                            tracing::error!(topic = %name.as_str(), "deleted the topic but cannot forget its committed offsets: {error}");
                            Err((code::KAFKA_STORAGE_ERROR, "the topic was deleted, but offsets committed to it by older versions could not be forgotten durably (see the broker's log)"))
                        }
                    },
                    Ok(false) => Err((code::UNKNOWN_TOPIC_OR_PARTITION, "no such topic")),
                    Err(error) => {
                        tracing::error!(topic = %name.as_str(), "cannot delete the topic: {error}");
                        Err((code::KAFKA_STORAGE_ERROR, "the topic's files could not be removed"))
                    }
                };
                let mut result = DeletableTopicResult::default().with_name(Some(name));
                if let Err((error, message)) = outcome {
                    result.error_code = error;
                    if version >= 5 {
                        result.error_message = Some(s(message));
                    }
                }
                result
            })
            .collect();
        DeleteTopicsResponse::default().with_responses(responses)
    }

    pub fn produce(self: &Arc<Self>, request: ProduceRequest, version: i16) -> Pending<ProduceResponse> {
        let acks = request.acks;
        let injected = self.refusals.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        let refusal = if let Some(code) = injected {
            Some((code, "refused on purpose (test seam)"))
        } else if request.transactional_id.is_some() {
            Some((code::INVALID_REQUEST, NO_TRANSACTIONS))
        } else if !matches!(acks, -1..=1) {
            Some((code::INVALID_REQUIRED_ACKS, "acks must be 0, 1 or -1 (all)"))
        } else {
            None
        };
        let fsync = self.settings.durability == super::flush::Durability::Fsync;
        let mut waits = Vec::new();
        let mut responses = Vec::new();
        for topic in request.topic_data {
            let mut partitions = Vec::new();
            for data in topic.partition_data {
                let mut response = PartitionProduceResponse::default().with_index(data.index);
                let outcome = match refusal {
                    Some((error, message)) => Err((error, message.to_string())),
                    None => self.append(&topic.name, data.index, data.records.as_deref(), fsync),
                };
                match outcome {
                    Ok(appended) => {
                        response.base_offset = appended.base_offset;
                        if version >= 5 {
                            response.log_start_offset = appended.log_start;
                        }
                        waits.extend(appended.durable_at);
                    }
                    Err((error, message)) => {
                        tracing::debug!(topic = %topic.name.as_str(), partition = data.index, error, "produce refused: {message}");
                        response.error_code = error;
                        response.base_offset = -1;
                        if version >= 8 {
                            response.error_message = Some(s(message));
                        }
                    }
                }
                partitions.push(response);
            }
            responses.push(TopicProduceResponse::default().with_name(topic.name).with_partition_responses(partitions));
        }
        let response = ProduceResponse::default().with_responses(responses);
        let lose = self.lost_answers.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if lose {
            return Pending::HangUp;
        }
        match acks {
            0 => Pending::Silent(response),
            // On a single node the leader is every replica, so `acks=1` means what `acks=all` means: under the
            // fsync policy, answered once the data is on disk.
            -1 | 1 if fsync && !waits.is_empty() => {
                let timeout = Duration::from_millis(request.timeout_ms.clamp(1, 300_000) as u64);
                Pending::Later(
                    async move {
                        let durable = async {
                            for (mut watch, needed) in waits {
                                let _ = watch.wait_for(|high_watermark| *high_watermark >= needed).await;
                            }
                        };
                        match tokio::time::timeout(timeout, durable).await {
                            Ok(()) => response,
                            Err(_) => timed_out(response),
                        }
                    }
                    .boxed(),
                )
            }
            _ => Pending::Now(response),
        }
    }

    /// Appends a produced record set to one partition.
    fn append(&self, topic: &str, index: i32, records: Option<&[u8]>, fsync: bool) -> Result<Appended, (i16, String)> {
        let Some(partition) = self.topics.partition(topic, index) else {
            return Err((code::UNKNOWN_TOPIC_OR_PARTITION, "no such topic or partition".into()));
        };
        let records = records.unwrap_or_default();
        if records.len() > self.settings.max_batch_bytes {
            return Err((
                code::MESSAGE_TOO_LARGE,
                format!("{} bytes is more than the {} a batch may have", records.len(), self.settings.max_batch_bytes),
            ));
        }
        let header = batch::single_produced(records).map_err(|error| {
            let code = match error {
                BatchError::UnsupportedMagic(_) => code::UNSUPPORTED_FOR_MESSAGE_FORMAT,
                BatchError::Transactional => code::INVALID_REQUEST,
                BatchError::NotOneBatch | BatchError::BadCount { .. } | BatchError::TooManyRecords { .. } => {
                    code::INVALID_RECORD
                }
                _ => code::CORRUPT_MESSAGE,
            };
            (code, error.to_string())
        })?;
        if header.is_idempotent() && !self.producer_ids.issued(header.producer_id) {
            return Err((
                code::UNKNOWN_PRODUCER_ID,
                "this producer id was never handed out; ask for one (InitProducerId)".into(),
            ));
        }
        let mut log = partition.log();
        let granted_epoch = if header.is_idempotent() { self.producer_ids.epoch(header.producer_id) } else { 0 };
        let (base_offset, needed) = match log.producers.judge(&header, granted_epoch) {
            Verdict::Append => {
                if header.is_idempotent() && header.producer_epoch > granted_epoch {
                    // The producer bumped its own epoch (librdkafka does after some errors): later jumps are
                    // measured from here, in every partition.
                    self.producer_ids.observe(header.producer_id, header.producer_epoch);
                }
                let written = log.append(records, !fsync).map_err(|error| {
                    tracing::error!(%topic, partition = index, "cannot write to the log: {error}");
                    (code::KAFKA_STORAGE_ERROR, "the broker cannot write to its disk".to_string())
                })?;
                (written.base_offset, written.next_offset())
            }
            // Already written; the producer only missed the answer. It is acknowledged once durable.
            Verdict::Duplicate { base_offset } => (base_offset, log.end_offset()),
            Verdict::OutOfOrder { expected } => {
                return Err((
                    code::OUT_OF_ORDER_SEQUENCE_NUMBER,
                    format!("expected sequence {expected}, got {}", header.base_sequence),
                ));
            }
            Verdict::Conflict => {
                return Err((
                    code::INVALID_RECORD,
                    "another batch with these sequence numbers of this producer id is already in the log".into(),
                ));
            }
            Verdict::Fenced => {
                return Err((code::INVALID_PRODUCER_EPOCH, "a newer epoch of this producer id exists".into()));
            }
            Verdict::EpochJump => {
                return Err((
                    code::INVALID_PRODUCER_EPOCH,
                    "this epoch jumps too far past the producer id's current one; ask for a producer id (InitProducerId)"
                        .into(),
                ));
            }
        };
        let (high_watermark, start) = (log.high_watermark(), log.start_offset());
        drop(log);
        partition.publish(high_watermark);
        let wait = if fsync && needed > high_watermark {
            self.flusher.request(partition.clone());
            Some((partition.watch(), needed))
        } else {
            None
        };
        Ok(Appended { base_offset, log_start: start, durable_at: wait })
    }

    pub fn fetch(self: &Arc<Self>, request: FetchRequest, version: i16) -> Pending<FetchResponse> {
        let core = self.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(request.max_wait_ms.clamp(0, 60_000) as u64);
        let min_bytes = request.min_bytes.max(0) as usize;
        let wanted: Vec<(TopicName, Vec<FetchAt>)> = request
            .topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| FetchAt {
                        partition: p.partition,
                        offset: p.fetch_offset,
                        max_bytes: (p.partition_max_bytes.max(0) as usize).min(MAX_FETCH_BYTES),
                    })
                    .collect();
                (t.topic, partitions)
            })
            .collect();
        let max_bytes = match request.max_bytes {
            bytes if bytes <= 0 => MAX_FETCH_BYTES,
            bytes => (bytes as usize).min(MAX_FETCH_BYTES),
        };
        // Subscribed before the first look, so a watermark that moves in between still wakes the long poll.
        let mut watches: Vec<_> = wanted
            .iter()
            .flat_map(|(t, ps)| ps.iter().filter_map(|at| core.topics.partition(t, at.partition)))
            .map(|p| p.watch())
            .collect();
        // Nothing is read here. The connection's writer polls answers one at a time, in order, when it is ready to
        // send each, so reading in the future makes pipelined fetches hold no records while they queue. Fetch
        // changes no state, so answering from the log as it is then keeps the order guarantees. While waiting
        // for `min_bytes`, what is available comes from read plans, not reads: the log is read once, to answer.
        Pending::Later(
            async move {
                loop {
                    // Bounded by what answers of all connections may still hold (see `max_answer_bytes`).
                    let room = max_bytes.min(core.network.answer_room());
                    let (available, errored) = core.fetch_available(&wanted, room);
                    if available >= min_bytes
                        || errored
                        || watches.is_empty()
                        || tokio::time::Instant::now() >= deadline
                    {
                        break;
                    }
                    let changed = futures::future::select_all(watches.iter_mut().map(|w| w.changed().boxed()));
                    let outcome = match tokio::time::timeout_at(deadline, changed).await {
                        Err(_) => break,
                        Ok((result, index, _)) => result.map_err(|_| index),
                    };
                    if let Err(gone) = outcome {
                        // The partition is gone (its topic was deleted): stop watching it; the next look says so.
                        watches.remove(gone);
                    }
                }
                core.fetch_once(&wanted, max_bytes.min(core.network.answer_room()), version)
            }
            .boxed(),
        )
    }

    /// The record bytes a fetch would answer with now, from read plans (the log's positions, not its data), and
    /// whether any partition errored. It can overestimate by the part of a batch that does not fit a budget;
    /// like Kafka's, `min_bytes` is a hint to wait, not a promise about the answer.
    fn fetch_available(&self, wanted: &[(TopicName, Vec<FetchAt>)], max_bytes: usize) -> (usize, bool) {
        let mut total = 0usize;
        let mut errored = false;
        for (name, partitions) in wanted {
            for at in partitions {
                let Some(partition) = self.topics.partition(name, at.partition) else {
                    errored = true;
                    continue;
                };
                let plan = partition.log().plan_read(at.offset);
                match plan {
                    Err(_) => errored = true,
                    Ok(None) => {}
                    Ok(Some(plan)) => {
                        // The same budget as `fetch_once`'s, so both agree on what would be answered.
                        let budget = at.max_bytes.min(max_bytes.saturating_sub(total));
                        let budget = if total == 0 && max_bytes > 0 { budget.max(1) } else { budget };
                        let planned = usize::try_from(plan.bytes_planned()).unwrap_or(usize::MAX);
                        total = total.saturating_add(planned.min(budget));
                    }
                }
            }
        }
        (total, errored)
    }

    /// Reads the fetched partitions and builds the answer: the one pass that reads the log.
    fn fetch_once(&self, wanted: &[(TopicName, Vec<FetchAt>)], max_bytes: usize, version: i16) -> FetchResponse {
        let mut total = 0usize;
        let mut topics = Vec::new();
        for (name, partitions) in wanted {
            let mut out = Vec::new();
            for FetchAt { partition: index, offset, max_bytes: partition_max } in partitions {
                let mut data = PartitionData::default().with_partition_index(*index);
                let Some(partition) = self.topics.partition(name, *index) else {
                    out.push(data.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION).with_high_watermark(-1));
                    continue;
                };
                let mut log = partition.log();
                let (high_watermark, start) = (log.high_watermark(), log.start_offset());
                let plan = log.plan_read(*offset);
                drop(log);
                data.high_watermark = high_watermark;
                data.last_stable_offset = high_watermark;
                if version >= 5 {
                    data.log_start_offset = start;
                }
                match plan {
                    Err(_) => {
                        data.error_code = code::OFFSET_OUT_OF_RANGE;
                    }
                    Ok(None) => data.records = Some(Bytes::new()),
                    Ok(Some(plan)) => {
                        // The first partition with data gets at least one batch, whatever max_bytes says.
                        let budget = (*partition_max).min(max_bytes.saturating_sub(total));
                        let budget = if total == 0 && max_bytes > 0 { budget.max(1) } else { budget };
                        if budget == 0 {
                            data.records = Some(Bytes::new());
                        } else {
                            self.network.fetch_log_reads.fetch_add(1, Ordering::Relaxed);
                            match plan.read(budget) {
                                Ok(bytes) => {
                                    total += bytes.len();
                                    data.records = Some(Bytes::from(bytes));
                                }
                                Err(error) => {
                                    tracing::error!(topic = %name.as_str(), partition = index, "cannot read the log: {error}");
                                    data.error_code = code::KAFKA_STORAGE_ERROR;
                                }
                            }
                        }
                    }
                }
                out.push(data);
            }
            topics.push(FetchableTopicResponse::default().with_topic(name.clone()).with_partitions(out));
        }
        FetchResponse::default().with_responses(topics)
    }

    pub fn list_offsets(&self, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
        // A partition named twice is answered with INVALID_REQUEST the second time, as Kafka does, so repeating
        // a partition cannot repeat the work.
        let mut seen = std::collections::HashSet::new();
        let topics = request
            .topics
            .into_iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let mut out = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                        if !seen.insert((topic.name.clone(), p.partition_index)) {
                            return out.with_error_code(code::INVALID_REQUEST);
                        }
                        let Some(partition) = self.topics.partition(&topic.name, p.partition_index) else {
                            return out.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
                        };
                        let mut log = partition.log();
                        let found = match p.timestamp {
                            -1 => Ok(Some((log.high_watermark(), -1))),
                            -2 => Ok(Some((log.start_offset(), -1))),
                            t if t >= 0 => log.offset_for_timestamp(t),
                            _ => Err(std::io::Error::other("unsupported special timestamp")),
                        };
                        match found {
                            Ok(Some((offset, timestamp))) => {
                                out.offset = offset;
                                out.timestamp = timestamp;
                            }
                            Ok(None) => {
                                out.offset = -1;
                                out.timestamp = -1;
                            }
                            Err(_) => out.error_code = code::INVALID_REQUEST,
                        }
                        if version >= 4 {
                            out.leader_epoch = 0;
                        }
                        out
                    })
                    .collect();
                ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions)
            })
            .collect();
        ListOffsetsResponse::default().with_topics(topics)
    }

    pub fn find_coordinator(&self, request: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
        let (host, port) = (s(self.advertised.0.clone()), self.advertised.1);
        let refusal = (request.key_type != 0).then(|| s(NO_TRANSACTIONS));
        if version >= 4 {
            let coordinators = request
                .coordinator_keys
                .into_iter()
                .map(|key| match &refusal {
                    Some(message) => Coordinator::default()
                        .with_key(key)
                        .with_node_id(BrokerId(-1))
                        .with_error_code(code::INVALID_REQUEST)
                        .with_error_message(Some(message.clone())),
                    None => Coordinator::default()
                        .with_key(key)
                        .with_node_id(BrokerId(0))
                        .with_host(host.clone())
                        .with_port(port),
                })
                .collect();
            return FindCoordinatorResponse::default().with_coordinators(coordinators);
        }
        match refusal {
            Some(message) => {
                let mut response = FindCoordinatorResponse::default()
                    .with_error_code(code::INVALID_REQUEST)
                    .with_node_id(BrokerId(-1));
                if version >= 1 {
                    response.error_message = Some(message);
                }
                response
            }
            None => FindCoordinatorResponse::default().with_node_id(BrokerId(0)).with_host(host).with_port(port),
        }
    }

    pub fn init_producer_id(&self, request: InitProducerIdRequest) -> InitProducerIdResponse {
        if request.transactional_id.is_some() {
            tracing::warn!("a client asked for a transactional producer: {NO_TRANSACTIONS}");
            return InitProducerIdResponse::default()
                .with_error_code(code::INVALID_REQUEST)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
        }
        let asked = (request.producer_id.0 >= 0 && request.producer_epoch >= 0)
            .then_some((request.producer_id.0, request.producer_epoch));
        match self.producer_ids.grant(asked) {
            Ok(granted) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(granted.id))
                .with_producer_epoch(granted.epoch),
            Err(error) => {
                tracing::error!("cannot allocate a producer id: {error}");
                InitProducerIdResponse::default()
                    .with_error_code(code::KAFKA_STORAGE_ERROR)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
            }
        }
    }

    pub fn join_group(&self, request: JoinGroupRequest, client_id: String) -> Pending<JoinGroupResponse> {
        let answer = self.groups.join(Join {
            group: request.group_id.to_string(),
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.map(|i| i.to_string()),
            client_id,
            client_host: format!("/{}", self.advertised.0),
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: if request.rebalance_timeout_ms > 0 {
                request.rebalance_timeout_ms
            } else {
                request.session_timeout_ms
            },
            protocol_type: request.protocol_type.to_string(),
            protocols: request.protocols.into_iter().map(|p| (p.name.to_string(), p.metadata)).collect(),
        });
        Pending::Later(
            async move {
                let joined = answer.await.unwrap_or_else(|_| groups::Joined {
                    error: groups::code::REBALANCE_IN_PROGRESS,
                    ..Default::default()
                });
                JoinGroupResponse::default()
                    .with_error_code(joined.error)
                    .with_generation_id(if joined.error == 0 { joined.generation } else { -1 })
                    .with_protocol_type(joined.protocol_type.map(s))
                    .with_protocol_name(joined.protocol.map(s))
                    .with_leader(s(joined.leader))
                    .with_member_id(s(joined.member_id))
                    .with_members(
                        joined
                            .members
                            .into_iter()
                            .map(|m| {
                                JoinGroupResponseMember::default()
                                    .with_member_id(s(m.member_id))
                                    .with_group_instance_id(m.group_instance_id.map(s))
                                    .with_metadata(m.metadata)
                            })
                            .collect(),
                    )
            }
            .boxed(),
        )
    }

    pub fn sync_group(&self, request: SyncGroupRequest) -> Pending<SyncGroupResponse> {
        let assignments = request.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect();
        let answer = self.groups.sync(&request.group_id, &request.member_id, request.generation_id, assignments);
        Pending::Later(
            async move {
                let synced = answer.await.unwrap_or_else(|_| groups::Synced {
                    error: groups::code::REBALANCE_IN_PROGRESS,
                    ..Default::default()
                });
                SyncGroupResponse::default()
                    .with_error_code(synced.error)
                    .with_protocol_type(synced.protocol_type.map(s))
                    .with_protocol_name(synced.protocol.map(s))
                    .with_assignment(synced.assignment)
            }
            .boxed(),
        )
    }

    pub fn heartbeat(&self, request: HeartbeatRequest) -> HeartbeatResponse {
        let error = self.groups.heartbeat(&request.group_id, &request.member_id, request.generation_id);
        HeartbeatResponse::default().with_error_code(error)
    }

    pub fn leave_group(&self, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        if version < 3 {
            let error = self.groups.leave(&request.group_id, &request.member_id);
            return LeaveGroupResponse::default().with_error_code(error);
        }
        let members = request
            .members
            .into_iter()
            .map(|m| {
                let error = self.groups.leave(&request.group_id, &m.member_id);
                MemberResponse::default()
                    .with_member_id(m.member_id)
                    .with_group_instance_id(m.group_instance_id)
                    .with_error_code(error)
            })
            .collect();
        LeaveGroupResponse::default().with_members(members)
    }

    /// Commits offsets. A partition named more than once is stored once, with the last value accepted, and every
    /// entry is answered (so a request's duplicates cost one line of `offsets.jsonl`, not one each). An offset
    /// below 0 or above the partition's high watermark is refused with OFFSET_OUT_OF_RANGE: a consumer commits
    /// only offsets it has been shown, and one beyond them would skip records not yet written.
    pub fn offset_commit(self: &Arc<Self>, request: OffsetCommitRequest) -> Pending<OffsetCommitResponse> {
        let group = request.group_id.to_string();
        let check = self.groups.check_commit(&group, &request.member_id, request.generation_id_or_member_epoch);
        let mut answers: Vec<(TopicName, Vec<(i32, i16)>)> = Vec::new();
        let mut accepted = Vec::new();
        for topic in request.topics {
            let mut partitions = Vec::new();
            let found = self.topics.get(&topic.name);
            for p in topic.partitions {
                let partition = found
                    .as_ref()
                    .and_then(|t| usize::try_from(p.partition_index).ok().and_then(|i| t.partitions.get(i)));
                let error = if check != code::NONE {
                    check
                } else if let (Some(found), Some(partition)) = (&found, partition) {
                    if p.committed_metadata.as_ref().is_some_and(|m| m.len() > MAX_OFFSET_METADATA) {
                        code::OFFSET_METADATA_TOO_LARGE
                    } else if p.committed_offset < 0 || p.committed_offset > partition.log().high_watermark() {
                        code::OFFSET_OUT_OF_RANGE
                    } else {
                        accepted.push(Commit {
                            topic: found.name.clone(),
                            topic_id: found.id,
                            partition: p.partition_index,
                            committed: Committed {
                                offset: p.committed_offset,
                                metadata: p.committed_metadata.map(|m| m.to_string()),
                            },
                        });
                        code::NONE
                    }
                } else {
                    code::UNKNOWN_TOPIC_OR_PARTITION
                };
                partitions.push((p.partition_index, error));
            }
            answers.push((topic.name, partitions));
        }
        let core = self.clone();
        Pending::Later(
            async move {
                let stored = if accepted.is_empty() {
                    Ok(Default::default())
                } else {
                    let committing = core.clone();
                    let committed = move || {
                        let topics = &committing.topics;
                        committing.groups.commit(&group, accepted, |topic| topics.get(topic).map(|t| t.id))
                    };
                    match tokio::task::spawn_blocking(committed).await {
                        Ok(Ok(gone)) => Ok(gone),
                        Ok(Err(error)) => {
                            // Refusals for an unwritable file or for max_groups are logged once per episode by
                            // the coordinator, not once per request: a client repeating them cannot fill the log.
                            if let groups::CommitError::Storage(error) = &error {
                                tracing::error!("cannot store committed offsets: {error}");
                            }
                            Err(error.code())
                        }
                        Err(_) => Err(code::KAFKA_STORAGE_ERROR),
                    }
                };
                let topics = answers
                    .into_iter()
                    .map(|(name, partitions)| {
                        let topic = name.to_string();
                        let partitions = partitions
                            .into_iter()
                            .map(|(index, error)| {
                                let error = match &stored {
                                    _ if error != code::NONE => error,
                                    Err(refused) => *refused,
                                    // Deleted, or deleted and created again, since the check above.
                                    Ok(gone) if gone.contains(&(topic.clone(), index)) => {
                                        code::UNKNOWN_TOPIC_OR_PARTITION
                                    }
                                    Ok(_) => code::NONE,
                                };
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(index)
                                    .with_error_code(error)
                            })
                            .collect();
                        OffsetCommitResponseTopic::default().with_name(name).with_partitions(partitions)
                    })
                    .collect();
                OffsetCommitResponse::default().with_topics(topics)
            }
            .boxed(),
        )
    }

    /// Answers each distinct group and partition once, however often the request names it.
    pub fn offset_fetch(&self, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        if version >= 8 {
            let mut seen = std::collections::HashSet::new();
            let groups = request
                .groups
                .into_iter()
                .filter(|g| seen.insert(g.group_id.clone()))
                .map(|g| {
                    let only = g.topics.map(|topics| {
                        distinct(
                            topics.iter().flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p))),
                        )
                    });
                    let committed = self.groups.committed(&g.group_id, only.as_deref());
                    let topics = group_by_topic(committed)
                        .into_iter()
                        .map(|(name, partitions)| {
                            OffsetFetchResponseTopics::default().with_name(topic_name(&name)).with_partitions(
                                partitions
                                    .into_iter()
                                    .map(|(index, c)| {
                                        let (offset, metadata) = split_committed(c);
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(index)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(-1)
                                            .with_metadata(Some(s(metadata)))
                                    })
                                    .collect(),
                            )
                        })
                        .collect();
                    OffsetFetchResponseGroup::default().with_group_id(g.group_id).with_topics(topics)
                })
                .collect();
            return OffsetFetchResponse::default().with_groups(groups);
        }
        let only = request.topics.map(|topics| {
            distinct(topics.iter().flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p))))
        });
        let committed = self.groups.committed(&request.group_id, only.as_deref());
        let topics = group_by_topic(committed)
            .into_iter()
            .map(|(name, partitions)| {
                OffsetFetchResponseTopic::default().with_name(topic_name(&name)).with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, c)| {
                            let (offset, metadata) = split_committed(c);
                            let mut out = OffsetFetchResponsePartition::default()
                                .with_partition_index(index)
                                .with_committed_offset(offset)
                                .with_metadata(Some(s(metadata)));
                            if version >= 5 {
                                out.committed_leader_epoch = -1;
                            }
                            out
                        })
                        .collect(),
                )
            })
            .collect();
        OffsetFetchResponse::default().with_topics(topics)
    }

    pub fn list_groups(&self, request: ListGroupsRequest, version: i16) -> ListGroupsResponse {
        let groups = self
            .groups
            .list()
            .into_iter()
            .filter(|(_, _, state)| {
                request.states_filter.is_empty()
                    || request.states_filter.iter().any(|f| f.eq_ignore_ascii_case(state.name()))
            })
            .map(|(name, protocol_type, state)| {
                let mut listed =
                    ListedGroup::default().with_group_id(GroupId(s(name))).with_protocol_type(s(protocol_type));
                if version >= 4 {
                    listed.group_state = s(state.name());
                }
                listed
            })
            .collect();
        ListGroupsResponse::default().with_groups(groups)
    }

    /// Describes each distinct group once, however often the request names it.
    pub fn describe_groups(&self, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
        let mut seen = std::collections::HashSet::new();
        let groups = request
            .groups
            .into_iter()
            .filter(|id| seen.insert(id.clone()))
            .map(|id| match self.groups.describe(&id) {
                None => DescribedGroup::default().with_group_id(id).with_group_state(s("Dead")),
                Some(description) => DescribedGroup::default()
                    .with_group_id(id)
                    .with_group_state(s(description.state.name()))
                    .with_protocol_type(s(description.protocol_type))
                    .with_protocol_data(s(description.protocol))
                    .with_members(
                        description
                            .members
                            .into_iter()
                            .map(|(member, instance, client, host, metadata, assignment)| {
                                DescribedGroupMember::default()
                                    .with_member_id(s(member))
                                    .with_group_instance_id(instance.map(s))
                                    .with_client_id(s(client))
                                    .with_client_host(s(host))
                                    .with_member_metadata(metadata)
                                    .with_member_assignment(assignment)
                            })
                            .collect(),
                    ),
            })
            .collect();
        DescribeGroupsResponse::default().with_groups(groups)
    }
}

fn describe_topic(topic: &super::topics::Topic, version: i16) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            let mut partition = MetadataResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_id(BrokerId(0))
                .with_replica_nodes(vec![BrokerId(0)])
                .with_isr_nodes(vec![BrokerId(0)]);
            if version >= 7 {
                partition.leader_epoch = 0;
            }
            partition
        })
        .collect();
    let mut out = MetadataResponseTopic::default().with_name(Some(topic_name(&topic.name))).with_partitions(partitions);
    if version >= 10 {
        out.topic_id = topic.id;
    }
    out
}

fn timed_out(mut response: ProduceResponse) -> ProduceResponse {
    for topic in &mut response.responses {
        for partition in &mut topic.partition_responses {
            if partition.error_code == code::NONE {
                partition.error_code = code::REQUEST_TIMED_OUT;
            }
        }
    }
    response
}

fn group_by_topic(committed: Vec<(String, i32, Option<Committed>)>) -> BTreeMap<String, Vec<(i32, Option<Committed>)>> {
    let mut by_topic: BTreeMap<String, Vec<(i32, Option<Committed>)>> = BTreeMap::new();
    for (topic, partition, c) in committed {
        by_topic.entry(topic).or_default().push((partition, c));
    }
    by_topic
}

/// The items in first-seen order, each once.
fn distinct<T: Clone + Eq + std::hash::Hash>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    items.into_iter().filter(|item| seen.insert(item.clone())).collect()
}

fn split_committed(committed: Option<Committed>) -> (i64, String) {
    match committed {
        Some(c) => (c.offset, c.metadata.unwrap_or_default()),
        None => (-1, String::new()),
    }
}
