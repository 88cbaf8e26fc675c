//! The group coordinator: the classic consumer-group protocol and committed offsets.
//!
//! A group moves Empty → PreparingRebalance (members join) → CompletingRebalance (the leader computes the
//! assignment) → Stable (every member has its assignment), and back to PreparingRebalance whenever a member
//! joins, leaves or stops heartbeating. The broker never assigns partitions itself: the leader does, the broker
//! relays. Committed offsets are appended to `groups/offsets.jsonl` and fsynced before the commit is answered (the
//! file is compacted at start-up and whenever most of it is stale); each line names the topic's id, so offsets of
//! a topic deleted and created again never come back, and offsets beyond a partition's log end are clamped to it
//! at start-up. Membership is in memory only (after a restart, members simply rejoin). Wire encoding lives in
//! `handlers`.
//!
//! Clients are untrusted, so what they can make the coordinator hold is bounded: group ids of at most
//! [`MAX_GROUP_ID_BYTES`] (INVALID_GROUP_ID beyond); client ids, instance ids, protocol types and names of at most
//! [`MAX_NAME_BYTES`] and at most [`MAX_PROTOCOLS`] protocols per join (INVALID_REQUEST beyond); a member's
//! protocol metadata (all protocols together) and each assignment of at most `Limits::max_member_metadata_bytes`
//! (INVALID_REQUEST beyond), copied out of the request frame so a small value never pins a large frame; at most
//! `Limits::max_group_members` members per group, whose metadata together (and assignments together) is at most
//! `Limits::max_group_metadata_bytes` (GROUP_MAX_SIZE_REACHED), and `Limits::max_groups` groups
//! (POLICY_VIOLATION for a new one). A commit writes one line per distinct partition however often the request
//! repeats it (the last value wins).
//!
//! Two parts share the coordinator's state (its groups, each with members and committed offsets): `membership`, the
//! group state machine (join, sync, heartbeat, leave, session expiry, and the checks on a commit's member and
//! generation), and `offsets`, the committed offsets and their file (loaded at open, appended, compacted,
//! tombstoned). This file holds the state, the limits and the group count they both enforce.

mod membership;
mod offsets;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use membership::Member;
pub use membership::{Join, Joined, Synced};
pub use offsets::{Commit, CommitError, Committed};
use offsets::{OffsetsFile, Stored};

/// The longest group id, in bytes. Kafka sets no limit; every committed offset's line repeats the group id, so a
/// long one multiplies disk writes, and 255 bytes is far beyond any real group's name.
pub const MAX_GROUP_ID_BYTES: usize = 255;
/// The longest client id, group instance id, protocol type or protocol name a member may bring, in bytes. Member
/// ids are the broker's own (`<client id>-<uuid>`), so they are bounded through the client id.
pub const MAX_NAME_BYTES: usize = 255;
/// Most protocols (assignors) one JoinGroup may offer; real consumers offer one to three.
pub const MAX_PROTOCOLS: usize = 16;

/// What the coordinator holds at most, from `Settings`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A member's protocol metadata (all its protocols together), and each assignment, in bytes.
    pub max_member_metadata_bytes: usize,
    /// Members of one group (Kafka's `group.max.size`).
    pub max_group_members: usize,
    /// The metadata of all members of one group together, and their assignments together, in bytes: what a
    /// DescribeGroups or the leader's JoinGroup answer carries for the group.
    pub max_group_metadata_bytes: usize,
    /// Groups, with members or committed offsets.
    pub max_groups: usize,
}

/// Where a group is in a rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// When the current rebalance gives up on members that have not rejoined.
    rebalance_deadline: Option<Instant>,
    /// A rebalance of an empty group waits this long for more members before completing.
    not_before: Option<Instant>,
    offsets: BTreeMap<(String, i32), Stored>,
}

impl Group {
    fn new() -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            rebalance_deadline: None,
            not_before: None,
            offsets: BTreeMap::new(),
        }
    }
}

/// The group coordinator of the broker.
pub struct Coordinator {
    groups: Mutex<BTreeMap<String, Group>>,
    offsets_file: Arc<Mutex<OffsetsFile>>,
    initial_delay: Duration,
    limits: Limits,
    /// Whether refusing a new group for `max_groups` has been logged since the count was last below it: one line
    /// per episode, not one per refused request, so refusals cannot fill the log.
    refusal_logged: std::sync::atomic::AtomicBool,
}

impl Coordinator {
    /// Whether a group that does not exist yet may be created; logs the first refusal of an episode.
    fn room_for_a_group(&self, groups: &BTreeMap<String, Group>, group_id: &str) -> bool {
        use std::sync::atomic::Ordering;
        if groups.contains_key(group_id) || groups.len() < self.limits.max_groups {
            self.refusal_logged.store(false, Ordering::Relaxed);
            return true;
        }
        if !self.refusal_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                max_groups = self.limits.max_groups,
                "refusing new consumer groups: the broker holds max_groups groups (with members or committed offsets); raise max_groups"
            );
        }
        false
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::fs;
    use std::path::Path;

    use bytes::Bytes;
    use tokio::sync::oneshot;
    use uuid::Uuid;

    use super::*;
    use crate::code;

    pub(super) const TOPIC_ID: Uuid = Uuid::from_u128(1);
    pub(super) const LIMITS: Limits =
        Limits { max_member_metadata_bytes: 1024, max_group_members: 3, max_group_metadata_bytes: 2048, max_groups: 4 };

    /// A coordinator whose only topic is "t", with id `TOPIC_ID` and logs without end.
    pub(super) fn open(dir: &Path, delay: Duration) -> Coordinator {
        Coordinator::open(dir, delay, LIMITS, |_| Some(TOPIC_ID), |_, _| None).unwrap()
    }

    pub(super) fn offset(partition: i32, offset: i64) -> Commit {
        Commit { topic: "t".into(), topic_id: TOPIC_ID, partition, committed: Committed { offset, metadata: None } }
    }

    pub(super) fn commit(
        coordinator: &Coordinator,
        group: &str,
        offsets: Vec<Commit>,
    ) -> Result<BTreeSet<(String, i32)>, CommitError> {
        coordinator.commit(group, offsets, |_| Some(TOPIC_ID))
    }

    pub(super) fn request(group: &str, member_id: &str, client_id: &str, protocols: Vec<(String, Bytes)>) -> Join {
        Join {
            group: group.into(),
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: client_id.into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols,
        }
    }

    pub(super) fn join(coordinator: &Coordinator, member_id: &str) -> oneshot::Receiver<Joined> {
        coordinator.join(request("g", member_id, "test", vec![("range".into(), Bytes::from_static(b"meta"))]))
    }

    pub(super) fn file_lines(dir: &Path) -> Vec<String> {
        fs::read_to_string(dir.join("offsets.jsonl")).unwrap().lines().map(str::to_string).collect()
    }

    #[tokio::test]
    async fn a_new_group_beyond_max_groups_is_refused_and_existing_ones_still_work() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = open(dir.path(), Duration::ZERO);
        for i in 0..LIMITS.max_groups {
            assert_eq!(coordinator.check_commit(&format!("g{i}"), "", -1), code::NONE);
            commit(&coordinator, &format!("g{i}"), vec![offset(0, 1)]).unwrap();
        }
        assert_eq!(coordinator.check_commit("another", "", -1), code::POLICY_VIOLATION);
        assert!(matches!(commit(&coordinator, "another", vec![offset(0, 1)]), Err(CommitError::TooManyGroups)));
        let joined = coordinator.join(request("another", "", "test", vec![])).await.unwrap();
        assert_eq!(joined.error, code::POLICY_VIOLATION);
        assert_eq!(coordinator.list().len(), LIMITS.max_groups);
        commit(&coordinator, "g0", vec![offset(0, 2)]).unwrap();
    }
}
