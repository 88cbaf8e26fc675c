//! One function per Kafka API, in a file per family: decoded request in, response (now or later) out.
//!
//! Handlers translate between kafka-protocol's message types and the broker's parts (`topics`, `log`, `groups`,
//! `flush`). Every state change a request makes happens synchronously, in the order requests arrive on a
//! connection; only waiting (for an fsync, for data, for a rebalance) happens in the returned future. Framing,
//! version checks and encoding are `server`'s job.
//!
//! Each family is a file of `impl Core` methods: `metadata` (ApiVersions, Metadata, ListOffsets), `topics`
//! (CreateTopics, DeleteTopics), `produce`, `fetch`, `producer_ids` (InitProducerId), `groups` (FindCoordinator,
//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, ListGroups, DescribeGroups) and `offsets` (OffsetCommit,
//! OffsetFetch). This file holds only what they share.

mod fetch;
mod groups;
mod metadata;
mod offsets;
mod produce;
mod producer_ids;
mod topics;

use futures::future::BoxFuture;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

pub use metadata::api_versions;

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
