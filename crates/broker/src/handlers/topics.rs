//! CreateTopics and DeleteTopics: names, partition counts and per-topic configs checked (with Kafka's refusal
//! messages), topics made on a blocking thread, and a deleted topic's committed offsets forgotten.

use std::sync::Arc;

use futures::FutureExt as _;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{Pending, s};
use crate::Core;
use crate::code;
use crate::topic_config::{Origin, TopicConfig};
use crate::topics::{CreateError, MAX_PARTITIONS, valid_name};

impl Core {
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
}
