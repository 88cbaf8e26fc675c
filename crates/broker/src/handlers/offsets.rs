//! The committed-offset APIs: OffsetCommit (checked against the group's generation and each partition's high
//! watermark, stored by the coordinator on a blocking thread, each partition once) and OffsetFetch (each group and
//! partition once, in both the per-group and the older single-group form).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::FutureExt as _;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;

use super::{Pending, s, topic_name};
use crate::Core;
use crate::code;
use crate::groups::{self, Commit, Committed};

/// The longest metadata a committed offset may carry (Kafka's `offset.metadata.max.bytes`).
const MAX_OFFSET_METADATA: usize = 4096;

impl Core {
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
