//! The group coordinator against hostile or unlucky clients, over raw sockets: requests that repeat themselves,
//! oversized member metadata, full groups, deleted and recreated topics, offsets beyond the log, and restarts.

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::{Client, PATIENCE, start};
use franz_broker::Settings;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn settings(data: &Path) -> Settings {
    let mut settings = common::settings(data);
    settings.initial_rebalance_delay = Duration::from_millis(10);
    settings
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// What these tests ask of a raw connection, on top of framing requests and decoding answers (`common::Client`).
impl Client {
    async fn create_topic(&mut self, name: &str) {
        common::create_topic(self, name, 1).await;
    }

    async fn delete_topic(&mut self, name: &str) {
        let request = DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s(name))]).with_timeout_ms(10_000);
        let response: DeleteTopicsResponse = self.call(ApiKey::DeleteTopics, 4, &request).await;
        assert_eq!(response.responses[0].error_code, 0);
    }

    /// Produces `count` records to partition 0 of `topic` and waits until they are acknowledged.
    async fn produce(&mut self, topic: &str, count: i64) {
        let values: Vec<String> = (0..count).map(|offset| format!("record {offset}")).collect();
        let records: Vec<(i64, &str)> = values.iter().map(|value| (1_700_000_000_000, value.as_str())).collect();
        let (error, _) = common::produce(self, topic, common::batch(&records, (-1, -1, -1)), -1).await;
        assert_eq!(error, 0);
    }

    /// Commits `(partition, offset, metadata)` entries of `topic` outside any generation; the error of each.
    async fn commit(&mut self, group: &str, topic: &str, entries: &[(i32, i64, &str)]) -> Vec<i16> {
        let partitions = entries
            .iter()
            .map(|(partition, offset, metadata)| {
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset)
                    .with_committed_metadata(Some(s(metadata)))
            })
            .collect();
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                OffsetCommitRequestTopic::default().with_name(TopicName(s(topic))).with_partitions(partitions),
            ]);
        let response: OffsetCommitResponse = self.call(ApiKey::OffsetCommit, 8, &request).await;
        response.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
    }

    /// The committed offsets and metadata of the given partitions of `topic`, as answered (-1: none).
    async fn committed(&mut self, group: &str, topic: &str, partitions: Vec<i32>) -> Vec<(i32, i64, String)> {
        let request = OffsetFetchRequest::default().with_group_id(GroupId(s(group))).with_topics(Some(vec![
            OffsetFetchRequestTopic::default().with_name(TopicName(s(topic))).with_partition_indexes(partitions),
        ]));
        let response: OffsetFetchResponse = self.call(ApiKey::OffsetFetch, 7, &request).await;
        response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.partition_index, p.committed_offset, p.metadata.as_deref().unwrap_or_default().to_string()))
            .collect()
    }
}

fn join_request(group: &str, metadata: Bytes) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(""))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(metadata)])
}

fn offsets_file(data: &Path) -> String {
    std::fs::read_to_string(data.join("groups").join("offsets.jsonl")).unwrap()
}

/// Regression: every duplicate entry appended (and fsynced) a line of its own, group id included.
#[tokio::test(flavor = "multi_thread")]
async fn an_offset_commit_naming_one_partition_2000_times_writes_one_line_and_answers_every_entry() {
    let data = tempfile::tempdir().unwrap();
    let broker = start(settings(data.path())).await;
    let mut client = Client::connect(broker.address()).await;
    client.create_topic("t").await;
    client.produce("t", 3).await;
    let group = "g".repeat(255);
    let metadata: Vec<String> = (0..2000).map(|i| format!("m{i}")).collect();
    let entries: Vec<(i32, i64, &str)> =
        metadata.iter().enumerate().map(|(i, m)| (0, (i % 5) as i64, m.as_str())).collect();
    let errors = client.commit(&group, "t", &entries).await;
    assert_eq!(errors.len(), 2000);
    // Offsets 0 to 4 cycle; 4 is beyond the high watermark (3), so every fifth entry is refused on its own.
    let refused = errors.iter().filter(|&&e| e == ResponseError::OffsetOutOfRange.code()).count();
    assert_eq!((refused, errors.iter().filter(|&&e| e == 0).count()), (400, 1600));
    assert_eq!(offsets_file(data.path()).lines().count(), 1);
    // The last accepted entry wins: entry 1998 (offset 3).
    assert_eq!(client.committed(&group, "t", vec![0]).await, vec![(0, 3, "m1998".to_string())]);
    broker.stop().await;
}

/// Regression: both answered every duplicate entry, so a small request bought a large answer.
#[tokio::test(flavor = "multi_thread")]
async fn offset_fetch_and_describe_groups_answer_each_distinct_key_once() {
    let data = tempfile::tempdir().unwrap();
    let broker = start(settings(data.path())).await;
    let mut client = Client::connect(broker.address()).await;
    client.create_topic("t").await;
    assert_eq!(client.commit("g", "t", &[(0, 0, "m")]).await, vec![0]);
    assert_eq!(client.committed("g", "t", vec![0; 2000]).await, vec![(0, 0, "m".to_string())]);
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g")); 2000]);
    let response: DescribeGroupsResponse = client.call(ApiKey::DescribeGroups, 5, &request).await;
    assert_eq!(response.groups.len(), 1);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_id_longer_than_255_bytes_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let broker = start(settings(data.path())).await;
    let mut client = Client::connect(broker.address()).await;
    client.create_topic("t").await;
    assert_eq!(client.commit(&"g".repeat(256), "t", &[(0, 0, "")]).await, vec![ResponseError::InvalidGroupId.code()]);
    let response: JoinGroupResponse =
        client.call(ApiKey::JoinGroup, 5, &join_request(&"g".repeat(256), Bytes::new())).await;
    assert_eq!(response.error_code, ResponseError::InvalidGroupId.code());
    assert!(offsets_file(data.path()).is_empty());
    broker.stop().await;
}

/// Regression: a member's metadata was kept as a slice of its request, however large.
#[tokio::test(flavor = "multi_thread")]
async fn a_join_group_with_metadata_over_the_limit_is_refused_and_nothing_of_it_is_kept() {
    let data = tempfile::tempdir().unwrap();
    let mut settings = settings(data.path());
    settings.max_member_metadata_bytes = 64 << 10;
    let broker = start(settings).await;
    let mut client = Client::connect(broker.address()).await;
    let huge = Bytes::from(vec![1u8; (64 << 10) + 1]);
    let response: JoinGroupResponse = client.call(ApiKey::JoinGroup, 5, &join_request("g", huge)).await;
    assert_eq!(response.error_code, ResponseError::InvalidRequest.code());
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]);
    let response: DescribeGroupsResponse = client.call(ApiKey::DescribeGroups, 5, &request).await;
    assert!(response.groups[0].members.is_empty());
    // Metadata within the limit joins, and is kept at its own size.
    let fits = Bytes::from(vec![2u8; 64 << 10]);
    let response: JoinGroupResponse = client.call(ApiKey::JoinGroup, 5, &join_request("g", fits.clone())).await;
    assert_eq!(response.error_code, 0);
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]);
    let response: DescribeGroupsResponse = client.call(ApiKey::DescribeGroups, 5, &request).await;
    assert_eq!(response.groups[0].members[0].member_metadata, fits);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_at_max_group_members_refuses_another_member_with_group_max_size_reached() {
    let data = tempfile::tempdir().unwrap();
    let mut settings = settings(data.path());
    settings.max_group_members = 2;
    let broker = start(settings).await;
    let (mut first, mut second, mut third) = (
        Client::connect(broker.address()).await,
        Client::connect(broker.address()).await,
        Client::connect(broker.address()).await,
    );
    // The two joins may land in one generation or two; either way both are members until their sessions end,
    // and only membership matters here.
    first.send(ApiKey::JoinGroup, 5, &join_request("g", Bytes::from_static(b"m"))).await;
    second.send(ApiKey::JoinGroup, 5, &join_request("g", Bytes::from_static(b"m"))).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]);
        let response: DescribeGroupsResponse = third.call(ApiKey::DescribeGroups, 5, &request).await;
        if response.groups[0].members.len() == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the two members never both joined");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let c: JoinGroupResponse = third.call(ApiKey::JoinGroup, 5, &join_request("g", Bytes::from_static(b"m"))).await;
    assert_eq!(c.error_code, ResponseError::GroupMaxSizeReached.code());
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_group_beyond_max_groups_is_refused_while_existing_groups_keep_committing() {
    let data = tempfile::tempdir().unwrap();
    let mut settings = settings(data.path());
    settings.max_groups = 2;
    let broker = start(settings).await;
    let mut client = Client::connect(broker.address()).await;
    client.create_topic("t").await;
    assert_eq!(client.commit("a", "t", &[(0, 0, "")]).await, vec![0]);
    assert_eq!(client.commit("b", "t", &[(0, 0, "")]).await, vec![0]);
    assert_eq!(client.commit("c", "t", &[(0, 0, "")]).await, vec![ResponseError::PolicyViolation.code()]);
    let response: JoinGroupResponse = client.call(ApiKey::JoinGroup, 5, &join_request("c", Bytes::new())).await;
    assert_eq!(response.error_code, ResponseError::PolicyViolation.code());
    assert_eq!(client.commit("a", "t", &[(0, 0, "again")]).await, vec![0]);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_above_the_high_watermark_is_refused_with_offset_out_of_range() {
    let data = tempfile::tempdir().unwrap();
    let broker = start(settings(data.path())).await;
    let mut client = Client::connect(broker.address()).await;
    client.create_topic("t").await;
    client.produce("t", 3).await;
    assert_eq!(client.commit("g", "t", &[(0, 4, "")]).await, vec![ResponseError::OffsetOutOfRange.code()]);
    assert_eq!(client.committed("g", "t", vec![0]).await, vec![(0, -1, String::new())]);
    assert_eq!(client.commit("g", "t", &[(0, 3, "")]).await, vec![0]);
    assert_eq!(client.commit("g", "t", &[(1, 0, "")]).await, vec![ResponseError::UnknownTopicOrPartition.code()]);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_then_recreated_topic_does_not_inherit_offsets_across_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let broker = start(settings(data.path())).await;
    let mut client = Client::connect(broker.address()).await;
    client.create_topic("t").await;
    client.produce("t", 3).await;
    assert_eq!(client.commit("g", "t", &[(0, 2, "old")]).await, vec![0]);
    client.delete_topic("t").await;
    client.create_topic("t").await;
    assert_eq!(client.committed("g", "t", vec![0]).await, vec![(0, -1, String::new())]);
    broker.stop().await;
    let broker = start(settings(data.path())).await;
    let mut client = Client::connect(broker.address()).await;
    assert_eq!(client.committed("g", "t", vec![0]).await, vec![(0, -1, String::new())]);
    broker.stop().await;
}

/// Regression: offsets were keyed by topic name alone, so a broker that died after deleting a topic but before
/// writing the tombstone gave its offsets to the next topic of that name.
#[tokio::test(flavor = "multi_thread")]
async fn a_topic_recreated_after_a_crash_between_its_deletion_and_its_tombstone_does_not_inherit_offsets() {
    let data = tempfile::tempdir().unwrap();
    let broker = start(settings(data.path())).await;
    let mut client = Client::connect(broker.address()).await;
    client.create_topic("t").await;
    client.produce("t", 3).await;
    assert_eq!(client.commit("g", "t", &[(0, 2, "old")]).await, vec![0]);
    broker.stop().await;
    // What a deletion leaves when the broker dies right after renaming the topic away.
    let topics = data.path().join("topics");
    std::fs::rename(topics.join("t"), topics.join(".deleted-crashed")).unwrap();
    let broker = start(settings(data.path())).await;
    let mut client = Client::connect(broker.address()).await;
    client.create_topic("t").await;
    assert_eq!(client.committed("g", "t", vec![0]).await, vec![(0, -1, String::new())]);
    broker.stop().await;
}

/// Regression: a committed offset beyond the log (records lost to a power cut under `os` durability) was handed
/// back as is, so consumers skipped every record written after the restart up to it.
#[tokio::test(flavor = "multi_thread")]
async fn a_committed_offset_beyond_the_log_end_is_clamped_to_it_at_start() {
    let data = tempfile::tempdir().unwrap();
    let broker = start(settings(data.path())).await;
    let mut client = Client::connect(broker.address()).await;
    client.create_topic("t").await;
    client.produce("t", 3).await;
    assert_eq!(client.commit("g", "t", &[(0, 3, "m")]).await, vec![0]);
    broker.stop().await;
    // The offsets file survived a power cut that the log's last records did not.
    let file = offsets_file(data.path());
    assert!(file.contains("\"offset\":3"), "{file}");
    std::fs::write(data.path().join("groups").join("offsets.jsonl"), file.replace("\"offset\":3", "\"offset\":500"))
        .unwrap();
    let broker = start(settings(data.path())).await;
    let mut client = Client::connect(broker.address()).await;
    assert_eq!(client.committed("g", "t", vec![0]).await, vec![(0, 3, "m".to_string())]);
    broker.stop().await;
}
