//! Produce: one batch per partition checked and appended (idempotent retries answered with their first offset,
//! out-of-order and fenced producers refused), and the answer given once the data is durable under `fsync`
//! durability, at once under `os`, or never (`acks=0`). The test seams for refused produces and lost answers act
//! here.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt as _;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;

use super::{NO_TRANSACTIONS, Pending, s};
use crate::Core;
use crate::code;
use crate::log::batch::{self, BatchError};
use crate::log::producers::Verdict;

/// A produce written to one partition.
struct Appended {
    base_offset: i64,
    log_start: i64,
    /// For `acks=all`: the watermark to wait on and the offset it must reach.
    durable_at: Option<(tokio::sync::watch::Receiver<i64>, i64)>,
}

impl Core {
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
        let fsync = self.settings.durability == crate::flush::Durability::Fsync;
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
