//! What the broker tells clients about itself and its topics: ApiVersions (the APIs in `SUPPORTED`), Metadata
//! (the one broker, its topics and partitions, creating a topic on first use where allowed) and ListOffsets (where a
//! partition's log starts and ends, or the first offset at a time).

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;

use super::{s, topic_name};
use crate::Core;
use crate::apis::SUPPORTED;
use crate::code;
use crate::topic_config::TopicConfig;
use crate::topics::{CreateError, Topic, valid_name};

/// The operations every client may perform on a topic, as Kafka's ACL operation bits: there are no ACLs, so
/// read (3), write (4), create (5), delete (6), alter (7), describe (8), describe configs (10), alter configs (11).
const TOPIC_OPERATIONS: i32 = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
/// The same for the cluster: create (5), alter (7), describe (8), cluster action (9), describe configs (10),
/// alter configs (11), idempotent write (12).
const CLUSTER_OPERATIONS: i32 = (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

/// The answer to ApiVersions: every API in `SUPPORTED` with its versions, and `error_code`.
pub fn api_versions(error_code: i16) -> ApiVersionsResponse {
    let keys = SUPPORTED
        .iter()
        .map(|(key, min, max)| {
            api_versions_response::ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect();
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(keys)
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
}

fn describe_topic(topic: &Topic, version: i16) -> MetadataResponseTopic {
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
