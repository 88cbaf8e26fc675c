//! A property over whole sessions of requests: any sequence of creates, produces, deletes, commits and restarts,
//! with names that look like the broker's own files and with repeats, loses no acknowledged record and no
//! committed offset, and the broker always starts again on its data.
//!
//! The model is what the broker acknowledged; after every restart and at the end, the broker must show exactly
//! that. Cases default to 64 (each starts brokers); `PROPTEST_CASES` asks for more (`cargo xtask props`).

mod common;

use std::collections::BTreeMap;

use common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use proptest::prelude::*;

/// Names a client may pick, including ones that collided with the broker's own work before.
const NAMES: [&str; 5] = ["a", ".deleted-a", ".creating-b", "topics", "staging"];
const GROUPS: [&str; 2] = ["g", ".deleted-g"];

#[derive(Debug, Clone)]
enum Op {
    Create { name: usize, partitions: i32 },
    Produce { name: usize, partition: i32, count: usize },
    Delete { name: usize },
    Commit { group: usize, name: usize, partition: i32, fraction: u8 },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..NAMES.len(), 1..3i32).prop_map(|(name, partitions)| Op::Create { name, partitions }),
        4 => (0..NAMES.len(), 0..3i32, 1..4usize).prop_map(|(name, partition, count)| Op::Produce { name, partition, count }),
        1 => (0..NAMES.len()).prop_map(|name| Op::Delete { name }),
        2 => (0..GROUPS.len(), 0..NAMES.len(), 0..3i32, any::<u8>())
            .prop_map(|(group, name, partition, fraction)| Op::Commit { group, name, partition, fraction }),
        1 => Just(Op::Restart),
    ]
}

/// What the broker has acknowledged.
#[derive(Default, Debug)]
struct Model {
    /// Topic → the values of each partition, in offset order.
    topics: BTreeMap<String, Vec<Vec<String>>>,
    /// (group, topic, partition) → committed offset.
    committed: BTreeMap<(String, String, i32), i64>,
    written: usize,
}

async fn apply(client: &mut Client, model: &mut Model, op: &Op) {
    match op {
        Op::Create { name, partitions } => {
            let name = NAMES[*name];
            let request = CreateTopicsRequest::default().with_timeout_ms(5_000).with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(topic(name))
                    .with_num_partitions(*partitions)
                    .with_replication_factor(1)
                    .with_assignments(vec![])
                    .with_configs(vec![]),
            ]);
            let answer: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 5, &request).await;
            match answer.topics[0].error_code {
                0 => {
                    assert!(!model.topics.contains_key(name), "{name} created twice");
                    model.topics.insert(name.to_string(), vec![Vec::new(); *partitions as usize]);
                }
                36 => assert!(model.topics.contains_key(name), "{name} said to exist"),
                other => panic!("create {name}: {other}"),
            }
        }
        Op::Produce { name, partition, count } => {
            let name = NAMES[*name];
            let values: Vec<String> =
                (0..*count).map(|i| format!("{name}/{partition}/{}", model.written + i)).collect();
            model.written += count;
            let records: Vec<(i64, &str)> = values.iter().map(|v| (1_700_000_000_000, v.as_str())).collect();
            let request = one_batch_request(name, *partition, batch(&records, (-1, -1, -1)), -1);
            let answer: ProduceResponse = client.call(ApiKey::Produce, 7, &request).await;
            let result = &answer.responses[0].partition_responses[0];
            let known = model.topics.get_mut(name).and_then(|p| p.get_mut(*partition as usize));
            match (result.error_code, known) {
                (0, Some(log)) => {
                    assert_eq!(result.base_offset, log.len() as i64, "{name}/{partition} offsets follow on");
                    log.extend(values);
                }
                (3, None) => {}
                (code, log) => panic!("produce to {name}/{partition}: error {code}, model has it: {}", log.is_some()),
            }
        }
        Op::Delete { name } => {
            let name = NAMES[*name];
            let request = DeleteTopicsRequest::default().with_timeout_ms(5_000).with_topic_names(vec![topic(name)]);
            let answer: DeleteTopicsResponse = client.call(ApiKey::DeleteTopics, 4, &request).await;
            match answer.responses[0].error_code {
                0 => {
                    assert!(model.topics.remove(name).is_some(), "{name} deleted but never created");
                    model.committed.retain(|(_, t, _), _| t != name);
                }
                3 => assert!(!model.topics.contains_key(name)),
                other => panic!("delete {name}: {other}"),
            }
        }
        Op::Commit { group, name, partition, fraction } => {
            let (group, name) = (GROUPS[*group], NAMES[*name]);
            let end = model.topics.get(name).and_then(|p| p.get(*partition as usize)).map(|log| log.len() as i64);
            let offset = end.map_or(0, |end| end * i64::from(*fraction) / 255);
            let request = OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str(group)))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default().with_name(topic(name)).with_partitions(
                        vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(*partition)
                                .with_committed_offset(offset),
                        ],
                    ),
                ]);
            let answer: OffsetCommitResponse = client.call(ApiKey::OffsetCommit, 5, &request).await;
            match (answer.topics[0].partitions[0].error_code, end) {
                (0, Some(_)) => {
                    model.committed.insert((group.to_string(), name.to_string(), *partition), offset);
                }
                (3, None) => {}
                (code, end) => panic!("commit {group} {name}/{partition}@{offset}: error {code}, end {end:?}"),
            }
        }
        Op::Restart => unreachable!("restarts are the caller's"),
    }
}

/// Checks that the broker shows exactly what the model says was acknowledged.
async fn check(client: &mut Client, model: &Model) {
    for (name, partitions) in &model.topics {
        for (index, values) in partitions.iter().enumerate() {
            let request = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![
                fetch_request::FetchTopic::default().with_topic(topic(name)).with_partitions(vec![
                    fetch_request::FetchPartition::default()
                        .with_partition(index as i32)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
            ]);
            let answer: FetchResponse = client.call(ApiKey::Fetch, 11, &request).await;
            let data = &answer.responses[0].partitions[0];
            assert_eq!(data.error_code, 0, "fetch {name}/{index}");
            assert_eq!(data.high_watermark, values.len() as i64, "{name}/{index} keeps every acknowledged record");
            let mut bytes = data.records.clone().unwrap_or_default();
            let mut seen = Vec::new();
            while !bytes.is_empty() {
                let set = RecordBatchDecoder::decode(&mut bytes).expect("batches decode");
                seen.extend(set.records.into_iter().map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap()));
            }
            assert_eq!(&seen, values, "{name}/{index} in order");
        }
    }
    for group in GROUPS {
        let request =
            OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_static_str(group))).with_topics(None);
        let answer: OffsetFetchResponse = client.call(ApiKey::OffsetFetch, 7, &request).await;
        let mut shown = BTreeMap::new();
        for topic in &answer.topics {
            for partition in &topic.partitions {
                if partition.committed_offset >= 0 {
                    shown.insert(
                        (group.to_string(), topic.name.to_string(), partition.partition_index),
                        partition.committed_offset,
                    );
                }
            }
        }
        let expected: BTreeMap<_, _> =
            model.committed.iter().filter(|((g, _, _), _)| g == group).map(|(k, v)| (k.clone(), *v)).collect();
        assert_eq!(shown, expected, "group {group} keeps exactly its committed offsets");
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn props_no_acknowledged_record_or_committed_offset_is_lost_and_the_broker_always_restarts(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut broker = start(settings(dir.path())).await;
            let mut client = Client::connect(broker.address()).await;
            let mut model = Model::default();
            for op in &ops {
                if let Op::Restart = op {
                    drop(client);
                    broker.stop().await;
                    broker = start(settings(dir.path())).await;
                    client = Client::connect(broker.address()).await;
                    check(&mut client, &model).await;
                } else {
                    apply(&mut client, &mut model, op).await;
                }
            }
            drop(client);
            broker.stop().await;
            let broker = start(settings(dir.path())).await;
            let mut client = Client::connect(broker.address()).await;
            check(&mut client, &model).await;
            broker.stop().await;
        });
    }
}
