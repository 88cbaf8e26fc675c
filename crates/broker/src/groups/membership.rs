//! The group state machine: members join (a rebalance waits for every known member, or its timeout, and the
//! initial delay of an empty group), the leader's SyncGroup hands out its assignment, heartbeats keep members and
//! tell them to rejoin, and members that leave or stop heartbeating start a rebalance. Also the checks a commit
//! passes (member and generation) and what ListGroups and DescribeGroups show.
//!
//! The broker never assigns partitions itself: the leader does, the broker relays. Membership is in memory only.
//! Committed offsets are `offsets`' job.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Coordinator, Group, GroupState, MAX_GROUP_ID_BYTES, MAX_NAME_BYTES, MAX_PROTOCOLS};
use crate::code;

/// Session timeouts the coordinator accepts, in milliseconds.
const SESSION_TIMEOUTS: std::ops::RangeInclusive<i32> = 1_000..=1_800_000;

/// A member's request to join.
pub struct Join {
    pub group: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
}

/// A member as the leader sees it in the join answer.
#[derive(Clone)]
pub struct MemberMetadata {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// The answer to a join.
#[derive(Clone, Default)]
pub struct Joined {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member with its metadata for the chosen protocol; only the leader gets them.
    pub members: Vec<MemberMetadata>,
}

/// The answer to a sync.
#[derive(Clone, Default)]
pub struct Synced {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

pub(super) struct Member {
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    joining: Option<oneshot::Sender<Joined>>,
    syncing: Option<oneshot::Sender<Synced>>,
}

/// A group as DescribeGroups shows it.
pub struct Description {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

impl Coordinator {
    /// Handles a JoinGroup: the answer arrives when the rebalance completes.
    pub fn join(&self, join: Join) -> oneshot::Receiver<Joined> {
        let (answer, receiver) = oneshot::channel();
        let fail = |error: i16| {
            let (answer, receiver) = oneshot::channel();
            let _ = answer.send(Joined { error, member_id: join.member_id.clone(), ..Joined::default() });
            receiver
        };
        if !valid_group_id(&join.group) {
            return fail(code::INVALID_GROUP_ID);
        }
        if !SESSION_TIMEOUTS.contains(&join.session_timeout_ms) {
            return fail(code::INVALID_SESSION_TIMEOUT);
        }
        let names = [Some(&join.client_id), join.group_instance_id.as_ref(), Some(&join.protocol_type)];
        let metadata: usize = join.protocols.iter().map(|(_, metadata)| metadata.len()).sum();
        if names.into_iter().flatten().any(|name| name.len() > MAX_NAME_BYTES)
            || join.protocols.len() > MAX_PROTOCOLS
            || join.protocols.iter().any(|(name, _)| name.len() > MAX_NAME_BYTES)
            || metadata > self.limits.max_member_metadata_bytes
        {
            return fail(code::INVALID_REQUEST);
        }
        let now = Instant::now();
        let mut groups = self.lock();
        if !self.room_for_a_group(&groups, &join.group) {
            return fail(code::POLICY_VIOLATION);
        }
        let group = groups.entry(join.group.clone()).or_insert_with(Group::new);
        if !group.members.is_empty() {
            let same_type = group.protocol_type.as_deref() == Some(join.protocol_type.as_str());
            let shared = join
                .protocols
                .iter()
                .any(|(name, _)| group.members.values().all(|m| m.protocols.iter().any(|(other, _)| other == name)));
            if !same_type || !shared {
                return fail(code::INCONSISTENT_GROUP_PROTOCOL);
            }
        }
        let member_id = if join.member_id.is_empty() {
            if group.members.len() >= self.limits.max_group_members {
                return fail(code::GROUP_MAX_SIZE_REACHED);
            }
            format!("{}-{}", join.client_id, uuid::Uuid::new_v4())
        } else if group.members.contains_key(&join.member_id) {
            join.member_id.clone()
        } else {
            return fail(code::UNKNOWN_MEMBER_ID);
        };
        let others: usize = group
            .members
            .iter()
            .filter(|(id, _)| **id != member_id)
            .flat_map(|(_, member)| member.protocols.iter().map(|(_, metadata)| metadata.len()))
            .sum();
        if others + metadata > self.limits.max_group_metadata_bytes {
            return fail(code::GROUP_MAX_SIZE_REACHED);
        }
        group.protocol_type = Some(join.protocol_type.clone());
        let member = group.members.entry(member_id.clone()).or_insert_with(|| Member {
            group_instance_id: None,
            client_id: String::new(),
            client_host: String::new(),
            session_timeout: Duration::ZERO,
            rebalance_timeout: Duration::ZERO,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_seen: now,
            joining: None,
            syncing: None,
        });
        member.group_instance_id = join.group_instance_id;
        member.client_id = join.client_id;
        member.client_host = join.client_host;
        member.session_timeout = Duration::from_millis(join.session_timeout_ms as u64);
        member.rebalance_timeout = Duration::from_millis(join.rebalance_timeout_ms.max(join.session_timeout_ms) as u64);
        // Copied: the request's bytes are a slice of its whole frame, which a member would otherwise pin for as
        // long as it stays in the group.
        member.protocols =
            join.protocols.into_iter().map(|(name, metadata)| (name, Bytes::copy_from_slice(&metadata))).collect();
        member.last_seen = now;
        member.joining = Some(answer);
        if group.state != GroupState::PreparingRebalance {
            let initial = group.state == GroupState::Empty;
            prepare_rebalance(group, now, initial.then_some(self.initial_delay));
        }
        try_complete_join(group, now);
        receiver
    }

    /// Handles a SyncGroup: the leader's call carries every assignment; the others wait for it.
    pub fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> oneshot::Receiver<Synced> {
        let (answer, receiver) = oneshot::channel();
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            let _ = answer.send(Synced { error: code::UNKNOWN_MEMBER_ID, ..Synced::default() });
            return receiver;
        };
        if assignments.iter().any(|(_, assignment)| assignment.len() > self.limits.max_member_metadata_bytes)
            || assignments.iter().map(|(_, assignment)| assignment.len()).sum::<usize>()
                > self.limits.max_group_metadata_bytes
        {
            let _ = answer.send(Synced { error: code::INVALID_REQUEST, ..Synced::default() });
            return receiver;
        }
        let error = check_member(group, member_id, generation);
        if error != code::NONE {
            let _ = answer.send(Synced { error, ..Synced::default() });
            return receiver;
        }
        let now = Instant::now();
        match group.state {
            GroupState::PreparingRebalance | GroupState::Empty => {
                let _ = answer.send(Synced { error: code::REBALANCE_IN_PROGRESS, ..Synced::default() });
            }
            GroupState::Stable => {
                let member = group.members.get_mut(member_id).expect("checked");
                member.last_seen = now;
                let _ = answer.send(Synced {
                    error: code::NONE,
                    protocol_type: group.protocol_type.clone(),
                    protocol: group.protocol.clone(),
                    assignment: member.assignment.clone(),
                });
            }
            GroupState::CompletingRebalance => {
                let member = group.members.get_mut(member_id).expect("checked");
                member.last_seen = now;
                member.syncing = Some(answer);
                if group.leader.as_deref() == Some(member_id) {
                    let mut assignments: BTreeMap<String, Bytes> = assignments.into_iter().collect();
                    for (id, member) in group.members.iter_mut() {
                        // Copied for the same reason as protocol metadata: kept for the whole generation.
                        member.assignment =
                            assignments.remove(id).map(|a| Bytes::copy_from_slice(&a)).unwrap_or_default();
                    }
                    group.state = GroupState::Stable;
                    for member in group.members.values_mut() {
                        if let Some(waiting) = member.syncing.take() {
                            let _ = waiting.send(Synced {
                                error: code::NONE,
                                protocol_type: group.protocol_type.clone(),
                                protocol: group.protocol.clone(),
                                assignment: member.assignment.clone(),
                            });
                        }
                    }
                }
            }
        }
        receiver
    }

    /// Handles a Heartbeat: keeps the member alive and tells it when to rejoin.
    pub fn heartbeat(&self, group_id: &str, member_id: &str, generation: i32) -> i16 {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else { return code::UNKNOWN_MEMBER_ID };
        let error = check_member(group, member_id, generation);
        if error != code::NONE {
            return error;
        }
        group.members.get_mut(member_id).expect("checked").last_seen = Instant::now();
        match group.state {
            GroupState::PreparingRebalance => code::REBALANCE_IN_PROGRESS,
            _ => code::NONE,
        }
    }

    /// Handles a LeaveGroup for one member.
    pub fn leave(&self, group_id: &str, member_id: &str) -> i16 {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else { return code::UNKNOWN_MEMBER_ID };
        if group.members.remove(member_id).is_none() {
            return code::UNKNOWN_MEMBER_ID;
        }
        member_gone(group, Instant::now());
        code::NONE
    }

    /// Expires members whose session ran out and completes rebalances whose time is up. Called every tick.
    pub fn tick(&self) {
        let now = Instant::now();
        let mut groups = self.lock();
        for (name, group) in groups.iter_mut() {
            let expired: Vec<String> = group
                .members
                .iter()
                // A member waiting in JoinGroup or SyncGroup is alive by definition; the rebalance timeout and
                // the leader's own session bound those waits.
                .filter(|(_, m)| {
                    m.joining.is_none() && m.syncing.is_none() && now.duration_since(m.last_seen) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                tracing::info!(group = %name, member = %id, "member's session expired; rebalancing");
                group.members.remove(id);
            }
            if !expired.is_empty() {
                member_gone(group, now);
            }
            if group.state == GroupState::PreparingRebalance {
                if group.rebalance_deadline.is_some_and(|deadline| now >= deadline) {
                    // Members that did not rejoin in time are out.
                    group.members.retain(|_, m| m.joining.is_some());
                    group.not_before = None;
                }
                try_complete_join(group, now);
            }
        }
        groups.retain(|_, g| !(g.state == GroupState::Empty && g.members.is_empty() && g.offsets.is_empty()));
    }

    /// Validates a commit from `member_id` of `generation` (or a standalone commit with generation -1).
    pub fn check_commit(&self, group_id: &str, member_id: &str, generation: i32) -> i16 {
        if !valid_group_id(group_id) {
            return code::INVALID_GROUP_ID;
        }
        let mut groups = self.lock();
        let standalone = generation < 0 && member_id.is_empty();
        let Some(group) = groups.get_mut(group_id) else {
            return match standalone {
                // The group is created when the commit is stored.
                true if self.room_for_a_group(&groups, group_id) => code::NONE,
                true => code::POLICY_VIOLATION,
                false => code::UNKNOWN_MEMBER_ID,
            };
        };
        if standalone {
            return match group.members.is_empty() {
                true => code::NONE,
                // A standalone commit into a group with live members would fight them.
                false => code::UNKNOWN_MEMBER_ID,
            };
        }
        let error = check_member(group, member_id, generation);
        if error != code::NONE {
            return error;
        }
        match group.state {
            GroupState::CompletingRebalance => code::REBALANCE_IN_PROGRESS,
            _ => {
                group.members.get_mut(member_id).expect("checked").last_seen = Instant::now();
                code::NONE
            }
        }
    }

    /// Every group: (name, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        self.lock()
            .iter()
            .map(|(name, g)| (name.clone(), g.protocol_type.clone().unwrap_or_default(), g.state))
            .collect()
    }

    /// One group as DescribeGroups shows it (`None`: unknown, shown as Dead).
    pub fn describe(&self, group_id: &str) -> Option<Description> {
        let groups = self.lock();
        let group = groups.get(group_id)?;
        let protocol = group.protocol.clone().unwrap_or_default();
        Some(Description {
            state: group.state,
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: group
                .members
                .iter()
                .map(|(id, m)| {
                    let metadata = m
                        .protocols
                        .iter()
                        .find(|(name, _)| *name == protocol)
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default();
                    let assignment = match group.state {
                        GroupState::Stable => m.assignment.clone(),
                        _ => Bytes::new(),
                    };
                    (
                        id.clone(),
                        m.group_instance_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        metadata,
                        assignment,
                    )
                })
                .collect(),
        })
    }
}

/// Whether `group_id` may name a group.
fn valid_group_id(group_id: &str) -> bool {
    !group_id.is_empty() && group_id.len() <= MAX_GROUP_ID_BYTES
}

fn check_member(group: &Group, member_id: &str, generation: i32) -> i16 {
    if !group.members.contains_key(member_id) {
        code::UNKNOWN_MEMBER_ID
    } else if generation != group.generation {
        code::ILLEGAL_GENERATION
    } else {
        code::NONE
    }
}

/// Starts a rebalance: members must rejoin within the longest rebalance timeout. `initial` delays completion so
/// that members starting together land in one generation.
fn prepare_rebalance(group: &mut Group, now: Instant, initial: Option<Duration>) {
    if group.state == GroupState::CompletingRebalance {
        for member in group.members.values_mut() {
            if let Some(waiting) = member.syncing.take() {
                let _ = waiting.send(Synced { error: code::REBALANCE_IN_PROGRESS, ..Synced::default() });
            }
        }
    }
    group.state = GroupState::PreparingRebalance;
    let timeout = group.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default();
    group.rebalance_deadline = Some(now + timeout);
    group.not_before = initial.map(|delay| now + delay);
}

/// After a member left or died: rebalance the rest, or fall back to Empty.
fn member_gone(group: &mut Group, now: Instant) {
    if group.leader.as_ref().is_some_and(|leader| !group.members.contains_key(leader)) {
        group.leader = None;
    }
    if group.members.is_empty() {
        group.state = GroupState::Empty;
        group.generation += 1;
        group.protocol = None;
        group.rebalance_deadline = None;
        group.not_before = None;
        return;
    }
    if group.state != GroupState::PreparingRebalance {
        prepare_rebalance(group, now, None);
    }
    try_complete_join(group, now);
}

/// Completes the rebalance once every member has rejoined (and any initial delay has passed): a new generation,
/// a protocol every member supports, a leader, and an answer to every waiting join.
fn try_complete_join(group: &mut Group, now: Instant) {
    if group.state != GroupState::PreparingRebalance {
        return;
    }
    if group.members.is_empty() {
        group.state = GroupState::Empty;
        group.generation += 1;
        return;
    }
    // A member whose JoinGroup connection closed will never read the answer: it is not part of this generation.
    group.members.retain(|_, m| m.joining.as_ref().is_none_or(|answer| !answer.is_closed()));
    if group.members.is_empty() {
        group.state = GroupState::Empty;
        group.generation += 1;
        return;
    }
    if group.members.values().any(|m| m.joining.is_none()) || group.not_before.is_some_and(|t| now < t) {
        return;
    }
    group.generation += 1;
    let first = group.members.values().next().expect("not empty");
    let protocol = first
        .protocols
        .iter()
        .map(|(name, _)| name.clone())
        .find(|name| group.members.values().all(|m| m.protocols.iter().any(|(other, _)| other == name)));
    group.protocol = protocol.clone();
    if group.leader.as_ref().is_none_or(|leader| !group.members.contains_key(leader)) {
        group.leader = group.members.keys().next().cloned();
    }
    let leader = group.leader.clone().expect("set above");
    let protocol_name = protocol.clone().unwrap_or_default();
    let everyone: Vec<MemberMetadata> = group
        .members
        .iter()
        .map(|(id, m)| MemberMetadata {
            member_id: id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            metadata: m.protocols.iter().find(|(n, _)| *n == protocol_name).map(|(_, b)| b.clone()).unwrap_or_default(),
        })
        .collect();
    for (id, member) in group.members.iter_mut() {
        member.last_seen = now;
        member.assignment = Bytes::new();
        if let Some(waiting) = member.joining.take() {
            let _ = waiting.send(Joined {
                error: code::NONE,
                generation: group.generation,
                protocol_type: group.protocol_type.clone(),
                protocol: protocol.clone(),
                leader: leader.clone(),
                member_id: id.clone(),
                members: if *id == leader { everyone.clone() } else { Vec::new() },
            });
        }
    }
    group.state = GroupState::CompletingRebalance;
    group.rebalance_deadline = None;
    group.not_before = None;
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::tests::{LIMITS, join, open, request};

    #[tokio::test]
    async fn two_members_share_a_generation_and_get_the_leaders_assignment() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = open(dir.path(), Duration::from_millis(20));
        let first = join(&coordinator, "");
        let second = join(&coordinator, "");
        tokio::time::sleep(Duration::from_millis(30)).await;
        coordinator.tick();
        let (a, b) = (first.await.unwrap(), second.await.unwrap());
        assert_eq!((a.error, b.error, a.generation, b.generation), (0, 0, 1, 1));
        let (leader, follower) = if a.members.is_empty() { (b, a) } else { (a, b) };
        assert_eq!(leader.members.len(), 2);
        let waiting = coordinator.sync("g", &follower.member_id, 1, vec![]);
        let assignments = vec![
            (leader.member_id.clone(), Bytes::from_static(b"L")),
            (follower.member_id.clone(), Bytes::from_static(b"F")),
        ];
        let mine = coordinator.sync("g", &leader.member_id, 1, assignments).await.unwrap();
        assert_eq!(mine.assignment, Bytes::from_static(b"L"));
        assert_eq!(waiting.await.unwrap().assignment, Bytes::from_static(b"F"));
        assert_eq!(coordinator.heartbeat("g", &follower.member_id, 1), code::NONE);
        assert_eq!(coordinator.leave("g", &leader.member_id), code::NONE);
        assert_eq!(coordinator.heartbeat("g", &follower.member_id, 1), code::REBALANCE_IN_PROGRESS);
        let rejoined = join(&coordinator, &follower.member_id).await.unwrap();
        assert_eq!((rejoined.generation, rejoined.leader), (2, follower.member_id));
    }

    /// Regression: stored metadata was a slice of the request frame, pinning all of it.
    #[tokio::test]
    async fn member_metadata_and_assignments_are_copied_out_of_the_request_frame() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = open(dir.path(), Duration::ZERO);
        let frame = Bytes::from(vec![7u8; 4096]);
        let metadata = frame.slice(0..10);
        let joined =
            coordinator.join(request("g", "", "test", vec![("range".into(), metadata.clone())])).await.unwrap();
        assert_eq!(joined.error, code::NONE);
        let stored = coordinator.describe("g").unwrap().members[0].4.clone();
        assert_eq!(stored, metadata);
        assert!(!frame.as_ptr_range().contains(&stored.as_ptr()), "the stored metadata shares the frame");
        let assignment = vec![(joined.member_id.clone(), frame.slice(100..110))];
        let synced = coordinator.sync("g", &joined.member_id, joined.generation, assignment).await.unwrap();
        assert_eq!(synced.error, code::NONE);
        let stored = coordinator.describe("g").unwrap().members[0].5.clone();
        assert_eq!(stored.len(), 10);
        assert!(!frame.as_ptr_range().contains(&stored.as_ptr()), "the stored assignment shares the frame");
    }

    #[tokio::test]
    async fn oversized_metadata_too_many_protocols_and_long_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = open(dir.path(), Duration::ZERO);
        let big = Bytes::from(vec![0u8; LIMITS.max_member_metadata_bytes + 1]);
        let half = Bytes::from(vec![0u8; LIMITS.max_member_metadata_bytes / 2 + 1]);
        let refused = [
            request("g", "", "test", vec![("range".into(), big.clone())]),
            // The bound is on a member's metadata for all its protocols together.
            request("g", "", "test", vec![("range".into(), half.clone()), ("sticky".into(), half)]),
            request("g", "", "test", (0..=MAX_PROTOCOLS).map(|i| (format!("p{i}"), Bytes::new())).collect()),
            request("g", "", &"c".repeat(MAX_NAME_BYTES + 1), vec![("range".into(), Bytes::new())]),
            request("g", "", "test", vec![("r".repeat(MAX_NAME_BYTES + 1), Bytes::new())]),
        ];
        for join in refused {
            assert_eq!(coordinator.join(join).await.unwrap().error, code::INVALID_REQUEST);
        }
        let long_group = "g".repeat(MAX_GROUP_ID_BYTES + 1);
        let joined = coordinator.join(request(&long_group, "", "test", vec![])).await.unwrap();
        assert_eq!(joined.error, code::INVALID_GROUP_ID);
        assert_eq!(coordinator.check_commit(&long_group, "", -1), code::INVALID_GROUP_ID);
        assert!(coordinator.list().is_empty());
        let joined = join(&coordinator, "").await.unwrap();
        let synced = coordinator.sync("g", &joined.member_id, joined.generation, vec![(joined.member_id.clone(), big)]);
        assert_eq!(synced.await.unwrap().error, code::INVALID_REQUEST);
    }

    #[tokio::test]
    async fn a_groups_members_together_bring_at_most_max_group_metadata_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = open(dir.path(), Duration::from_secs(60));
        let metadata = Bytes::from(vec![0u8; LIMITS.max_member_metadata_bytes]);
        let first = coordinator.join(request("g", "", "test", vec![("range".into(), metadata.clone())]));
        let second = coordinator.join(request("g", "", "test", vec![("range".into(), metadata.clone())]));
        let mut third = coordinator.join(request("g", "", "test", vec![("range".into(), metadata)]));
        assert_eq!(third.try_recv().unwrap().error, code::GROUP_MAX_SIZE_REACHED, "2 KiB of 1 KiB members is full");
        assert_eq!(coordinator.describe("g").unwrap().members.len(), 2);
        drop((first, second));
    }

    #[tokio::test]
    async fn a_group_takes_at_most_max_group_members() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = open(dir.path(), Duration::from_secs(60));
        let joining: Vec<_> = (0..LIMITS.max_group_members).map(|_| join(&coordinator, "")).collect();
        let mut refused = join(&coordinator, "");
        assert_eq!(refused.try_recv().unwrap().error, code::GROUP_MAX_SIZE_REACHED);
        assert_eq!(coordinator.describe("g").unwrap().members.len(), LIMITS.max_group_members);
        drop(joining);
    }
}
