//! Shared helpers for the broker's own integration tests: an in-process broker on a free port, a raw Kafka client
//! that speaks the wire protocol frame by frame (as a hostile or careless client would), and record batches.
//!
//! Nothing here knows what a test asserts; each test file starts its own brokers.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use franz_broker::{EmbeddedBroker, Settings};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single wait in these tests may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The default settings for a broker with its data in `dir`, on a free loopback port.
pub fn settings(dir: &Path) -> Settings {
    Settings::new("127.0.0.1:0".parse().unwrap(), dir.to_path_buf())
}

pub async fn start(settings: Settings) -> EmbeddedBroker {
    EmbeddedBroker::start(settings).await.expect("the broker starts")
}

/// Polls `condition` until it holds, failing the test with `what` after `within`.
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "waited {within:?} for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw connection: requests framed by hand, answers read in order and decoded with kafka-protocol.
pub struct Client {
    pub stream: TcpStream,
    correlation: i32,
    /// Correlation ids of the requests sent and not yet answered, oldest first.
    waiting: std::collections::VecDeque<i32>,
}

impl Client {
    pub async fn connect(address: SocketAddr) -> Client {
        let stream = tokio::time::timeout(PATIENCE, TcpStream::connect(address)).await.unwrap().unwrap();
        Client { stream, correlation: 0, waiting: Default::default() }
    }

    /// Sends a request without waiting for its answer.
    pub async fn send<R: Encodable + HeaderVersion>(&mut self, key: ApiKey, version: i16, request: &R) {
        self.correlation += 1;
        self.waiting.push_back(self.correlation);
        let frame = frame(key, version, self.correlation, request);
        self.stream.write_all(&frame).await.unwrap();
    }

    /// Reads the next answer's body bytes (after its header); it must answer the oldest request sent.
    pub async fn receive_raw(&mut self, key: ApiKey, version: i16) -> Bytes {
        let mut length = [0u8; 4];
        tokio::time::timeout(PATIENCE, self.stream.read_exact(&mut length)).await.expect("an answer in time").unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(length) as usize];
        tokio::time::timeout(PATIENCE, self.stream.read_exact(&mut body)).await.expect("a whole answer").unwrap();
        let mut body = Bytes::from(body);
        assert_eq!(Some(body.get_i32()), self.waiting.pop_front(), "answers come in order");
        if key.response_header_version(version) >= 1 {
            // Tagged fields of a flexible response header: none are sent.
            assert_eq!(body.get_u8(), 0);
        }
        body
    }

    pub async fn receive<A: Decodable>(&mut self, key: ApiKey, version: i16) -> A {
        let mut body = self.receive_raw(key, version).await;
        A::decode(&mut body, version).expect("the answer decodes")
    }

    /// Sends a request and returns the answer's body bytes.
    pub async fn call_raw<R: Encodable + HeaderVersion>(&mut self, key: ApiKey, version: i16, request: &R) -> Bytes {
        self.send(key, version, request).await;
        self.receive_raw(key, version).await
    }

    pub async fn call<R: Encodable + HeaderVersion, A: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &R,
    ) -> A {
        self.send(key, version, request).await;
        self.receive(key, version).await
    }
}

/// A request frame: size, header, body.
pub fn frame<R: Encodable + HeaderVersion>(key: ApiKey, version: i16, correlation: i32, request: &R) -> BytesMut {
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("hostile")))
        .encode(&mut body, R::header_version(version))
        .unwrap();
    request.encode(&mut body, version).unwrap();
    let mut framed = BytesMut::with_capacity(body.len() + 4);
    framed.put_i32(body.len() as i32);
    framed.extend_from_slice(&body);
    framed
}

pub fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Asks to create a topic: the error code and message.
pub async fn try_create_topic(client: &mut Client, name: &str, partitions: i32) -> (i16, String) {
    let result = try_create_topic_with_configs(client, name, partitions, &[], false).await;
    (result.error_code, result.error_message.as_deref().unwrap_or_default().to_string())
}

/// Asks (CreateTopics v5) to create a topic with per-topic configs, given as (name, value) in request order, or
/// only to check that it could be created (`validate_only`): the topic's whole result.
pub async fn try_create_topic_with_configs(
    client: &mut Client,
    name: &str,
    partitions: i32,
    configs: &[(&str, Option<&str>)],
    validate_only: bool,
) -> create_topics_response::CreatableTopicResult {
    let configs = configs
        .iter()
        .map(|(name, value)| {
            create_topics_request::CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(name.to_string()))
                .with_value(value.map(|v| StrBytes::from_string(v.to_string())))
        })
        .collect();
    let request =
        CreateTopicsRequest::default().with_timeout_ms(5_000).with_validate_only(validate_only).with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(topic(name))
                .with_num_partitions(partitions)
                .with_replication_factor(1)
                .with_configs(configs),
        ]);
    let mut answer: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 5, &request).await;
    answer.topics.swap_remove(0)
}

/// Creates a topic and asserts it worked.
pub async fn create_topic(client: &mut Client, name: &str, partitions: i32) {
    let (error, message) = try_create_topic(client, name, partitions).await;
    assert_eq!(error, 0, "create {name}: {message}");
}

/// A fresh producer id from InitProducerId.
pub async fn producer_id(client: &mut Client) -> i64 {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let answer: InitProducerIdResponse = client.call(ApiKey::InitProducerId, 4, &request).await;
    assert_eq!(answer.error_code, 0);
    answer.producer_id.0
}

/// A v2 record batch of `values` with the given timestamps and producer (id, epoch, first sequence).
pub fn batch(values: &[(i64, &str)], producer: (i64, i16, i32)) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, (timestamp, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: producer.0,
            producer_epoch: producer.1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch only while offset minus sequence stays the same.
            sequence: producer.2.wrapping_add(i as i32),
            timestamp: *timestamp,
            key: None,
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(&mut out, &records, &RecordEncodeOptions { version: 2, compression: Compression::None })
        .unwrap();
    out.freeze()
}

/// A Produce request of one batch to `partition` of `name` with `acks`, to send as it is or framed by hand.
pub fn one_batch_request(name: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default().with_acks(acks).with_timeout_ms(10_000).with_topic_data(vec![
        produce_request::TopicProduceData::default().with_name(topic(name)).with_partition_data(vec![
            produce_request::PartitionProduceData::default().with_index(partition).with_records(Some(records)),
        ]),
    ])
}

/// Produces one batch to partition 0 of `name` with `acks`, returning (error code, base offset).
pub async fn produce(client: &mut Client, name: &str, records: Bytes, acks: i16) -> (i16, i64) {
    let request = one_batch_request(name, 0, records, acks);
    let answer: ProduceResponse = client.call(ApiKey::Produce, 7, &request).await;
    let partition = &answer.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

/// The latest (-1), earliest (-2) or by-timestamp offset of partition 0 of `name`.
pub async fn list_offset(client: &mut Client, name: &str, timestamp: i64) -> (i16, i64) {
    let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default().with_name(topic(name)).with_partitions(vec![
            list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(timestamp),
        ]),
    ]);
    let answer: ListOffsetsResponse = client.call(ApiKey::ListOffsets, 5, &request).await;
    let partition = &answer.topics[0].partitions[0];
    (partition.error_code, partition.offset)
}
