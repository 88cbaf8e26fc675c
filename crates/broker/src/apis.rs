//! The Kafka APIs and versions the broker implements: what ApiVersions advertises, what the server dispatches, and
//! what the meter counts requests by. Below all three, so none of them imports another for it.

use kafka_protocol::messages::ApiKey;

/// The APIs and versions the broker implements, and advertises through ApiVersions.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::InitProducerId, 0, 4),
];

/// Whether the broker answers `key` at `version`.
pub fn supported(key: ApiKey, version: i16) -> bool {
    SUPPORTED.iter().any(|(k, min, max)| *k == key && (*min..=*max).contains(&version))
}
