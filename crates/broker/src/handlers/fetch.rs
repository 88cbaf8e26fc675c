//! Fetch: partitions read from the requested offsets within the request's byte limits and what
//! `max_answer_bytes` leaves, as a long poll that waits for `min_bytes` or `max_wait_ms` and reads the log once,
//! when the connection's writer polls the answer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt as _;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::*;

use super::Pending;
use crate::Core;
use crate::code;

/// One partition of a fetch: from where, and at most how much.
struct FetchAt {
    partition: i32,
    offset: i64,
    max_bytes: usize,
}

/// The most a fetch answers with, whatever the client asks for (Kafka's `fetch.max.bytes` default, 55 MiB).
const MAX_FETCH_BYTES: usize = 55 << 20;

impl Core {
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
}
