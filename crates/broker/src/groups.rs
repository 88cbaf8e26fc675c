//! The group coordinator: the classic consumer-group protocol and committed offsets.
//!
//! A group moves Empty → PreparingRebalance (members join) → CompletingRebalance (the leader computes the
//! assignment) → Stable (every member has its assignment), and back to PreparingRebalance whenever a member
//! joins, leaves or stops heartbeating. The broker never assigns partitions itself: the leader does, the broker
//! relays. Committed offsets are appended to `groups/offsets.jsonl` and fsynced before the commit is answered (the
//! file is compacted at start-up and whenever most of it is stale); each line names the topic's id, so offsets of
//! a topic deleted and created again never come back, and offsets beyond a partition's log end are clamped to it
//! at start-up. Membership is in memory only (after a restart, members simply rejoin). Wire encoding lives in
//! `handlers.rs`.
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

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

/// Kafka error codes the coordinator answers with.
pub mod code {
    pub const NONE: i16 = 0;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_REQUEST: i16 = 42;
    pub const POLICY_VIOLATION: i16 = 44;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
}

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

/// Session timeouts the coordinator accepts, in milliseconds.
const SESSION_TIMEOUTS: std::ops::RangeInclusive<i32> = 1_000..=1_800_000;

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

struct Member {
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

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub metadata: Option<String>,
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

/// A committed offset as the coordinator keeps it: with the id of the topic it was committed to, so that it is
/// never taken for an offset of a later topic of the same name. Offsets read from lines written before ids were
/// recorded have none.
#[derive(Debug, Clone)]
struct Stored {
    committed: Committed,
    topic_id: Option<Uuid>,
}

/// One partition's offset to commit, with the id of the topic as the commit was checked against it.
pub struct Commit {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub committed: Committed,
}

/// Why nothing of a commit (or a deleted topic's tombstone) was stored.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("cannot write the committed-offsets file: {0}")]
    Storage(#[from] io::Error),
    /// An earlier failed write could not be undone; the reason was logged when it happened.
    #[error("the committed-offsets file ends in a failed write that could not be undone; restart the broker")]
    Unwritable,
    #[error("the broker holds max_groups groups already")]
    TooManyGroups,
}

impl CommitError {
    /// The Kafka error code every partition of the refused commit is answered with.
    pub fn code(&self) -> i16 {
        match self {
            CommitError::Storage(_) | CommitError::Unwritable => code::KAFKA_STORAGE_ERROR,
            CommitError::TooManyGroups => code::POLICY_VIOLATION,
        }
    }
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

/// A group as DescribeGroups shows it.
pub struct Description {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

/// One line of the offsets file.
#[derive(Serialize, Deserialize)]
struct OffsetLine {
    group: String,
    topic: String,
    partition: i32,
    offset: i64,
    metadata: Option<String>,
    /// The id of the topic committed to; absent in lines written by older versions, and in tombstones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topic_id: Option<Uuid>,
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
    /// Loads committed offsets from `dir` (compacting the file) and starts with no members.
    ///
    /// `topic_id` names the current id of a topic (`None`: no such topic) and `log_end` the offset after the last
    /// record of a partition: offsets committed to a topic that is gone or was created again are dropped, and
    /// offsets beyond the end of their partition's log (possible after a power cut, when the log lost what the
    /// page cache held) are clamped to it, so a consumer neither inherits them nor skips records written later.
    pub fn open(
        dir: &Path,
        initial_delay: Duration,
        limits: Limits,
        topic_id: impl Fn(&str) -> Option<Uuid>,
        log_end: impl Fn(&str, i32) -> Option<i64>,
    ) -> io::Result<Coordinator> {
        fs::create_dir_all(dir)?;
        let path = dir.join("offsets.jsonl");
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        let mut stale = 0usize;
        if let Ok(file) = File::open(&path) {
            for line in io::BufReader::new(file).lines() {
                // A torn last line (crash mid-write) was never acknowledged: skip it.
                let Ok(line) = line else { break };
                let Ok(entry) = serde_json::from_str::<OffsetLine>(&line) else { continue };
                if entry.partition < 0 {
                    // A deleted topic's tombstone.
                    for group in groups.values_mut() {
                        group.offsets.retain(|(t, _), _| *t != entry.topic);
                    }
                    continue;
                }
                if entry.topic_id.is_some() && entry.topic_id != topic_id(&entry.topic) {
                    stale += 1;
                    continue;
                }
                groups.entry(entry.group).or_insert_with(Group::new).offsets.insert(
                    (entry.topic, entry.partition),
                    Stored {
                        committed: Committed { offset: entry.offset, metadata: entry.metadata },
                        topic_id: entry.topic_id,
                    },
                );
            }
        }
        if stale > 0 {
            tracing::info!(lines = stale, "dropped committed offsets of deleted or recreated topics");
        }
        for (name, group) in groups.iter_mut() {
            for ((topic, partition), stored) in group.offsets.iter_mut() {
                let Some(end) = log_end(topic, *partition) else { continue };
                if stored.committed.offset > end {
                    tracing::warn!(
                        group = %name,
                        topic = %topic,
                        partition,
                        committed = stored.committed.offset,
                        log_end = end,
                        "a committed offset lies beyond the end of its partition's log (records lost in a power cut?); clamped it to the log end"
                    );
                    stored.committed.offset = end;
                }
            }
        }
        let (file, len) = compact(&path, &offset_lines(&groups))?;
        let lines = live_offsets(&groups);
        let offsets_file = OffsetsFile {
            file,
            path,
            lines,
            len,
            torn: false,
            #[cfg(test)]
            faults: Faults::default(),
        };
        Ok(Coordinator {
            groups: Mutex::new(groups),
            offsets_file: Arc::new(Mutex::new(offsets_file)),
            initial_delay,
            limits,
            refusal_logged: Default::default(),
        })
    }

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

    /// Makes commits durable (appended and fsynced), then visible. Runs on a blocking thread.
    ///
    /// A partition named more than once is written once, with its last value. `topic_id` is asked, under the file
    /// lock, for each topic's current id: a commit checked against a topic that has since been deleted (or deleted
    /// and created again) is not stored, and its partitions are returned, to be answered as unknown.
    pub fn commit(
        &self,
        group_id: &str,
        offsets: Vec<Commit>,
        topic_id: impl Fn(&str) -> Option<Uuid>,
    ) -> Result<BTreeSet<(String, i32)>, CommitError> {
        let mut file = self.offsets_file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut latest: BTreeMap<(String, i32), (Uuid, Committed)> = BTreeMap::new();
        for commit in offsets {
            latest.insert((commit.topic, commit.partition), (commit.topic_id, commit.committed));
        }
        let mut gone = BTreeSet::new();
        latest.retain(|(topic, partition), (id, _)| {
            let current = topic_id(topic) == Some(*id);
            if !current {
                gone.insert((topic.clone(), *partition));
            }
            current
        });
        if latest.is_empty() {
            return Ok(gone);
        }
        if !self.room_for_a_group(&self.lock(), group_id) {
            return Err(CommitError::TooManyGroups);
        }
        let mut lines = Vec::new();
        for ((topic, partition), (id, committed)) in &latest {
            let line = OffsetLine {
                group: group_id.to_string(),
                topic: topic.clone(),
                partition: *partition,
                offset: committed.offset,
                metadata: committed.metadata.clone(),
                topic_id: Some(*id),
            };
            serde_json::to_writer(&mut lines, &line).map_err(io::Error::other)?;
            lines.push(b'\n');
        }
        // The file lock is held until memory is updated too, so two commits of one partition land in the same
        // order in both.
        file.append(&lines)?;
        file.lines += latest.len();
        let mut groups = self.lock();
        let group = groups.entry(group_id.to_string()).or_insert_with(Group::new);
        for ((topic, partition), (id, committed)) in latest {
            group.offsets.insert((topic, partition), Stored { committed, topic_id: Some(id) });
        }
        // Consumers commit every few seconds for as long as they run: rewrite the file once most of it is stale.
        // The rewrite works from a copy, so only the file lock (which orders commits) is held meanwhile.
        if file.lines > COMPACT_AFTER_LINES && file.lines > 4 * live_offsets(&groups) {
            let lines = offset_lines(&groups);
            drop(groups);
            match compact(&file.path, &lines) {
                Ok((compacted, len)) => {
                    file.file = compacted;
                    file.len = len;
                    file.lines = lines.len();
                }
                // The commit itself is durable; compaction is retried after the next COMPACT_AFTER_LINES lines.
                Err(error) => {
                    tracing::warn!("cannot compact the committed-offsets file: {error}");
                    file.lines = lines.len();
                }
            }
        }
        Ok(gone)
    }

    /// The committed offsets of a group: of the given partitions, or all of them.
    pub fn committed(&self, group_id: &str, only: Option<&[(String, i32)]>) -> Vec<(String, i32, Option<Committed>)> {
        let groups = self.lock();
        let offsets = groups.get(group_id).map(|g| &g.offsets);
        match only {
            Some(partitions) => partitions
                .iter()
                .map(|(t, p)| {
                    (t.clone(), *p, offsets.and_then(|o| o.get(&(t.clone(), *p))).map(|s| s.committed.clone()))
                })
                .collect(),
            None => {
                offsets.into_iter().flatten().map(|((t, p), s)| (t.clone(), *p, Some(s.committed.clone()))).collect()
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

    /// Forgets the committed offsets of a deleted topic.
    ///
    /// Offsets committed with the topic's id cannot come back after a restart (their id is no topic's any more),
    /// so memory simply drops them. Offsets read from older lines carry no id: for them a tombstone line (partition
    /// -1) is appended and fsynced first, and only then are they dropped from memory, so memory never claims
    /// forgotten what the file would bring back. An error means the tombstone was not written and those offsets
    /// are still there.
    pub fn forget_topic(&self, topic: &str) -> Result<(), CommitError> {
        let mut file = self.offsets_file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for group in self.lock().values_mut() {
            group.offsets.retain(|(t, _), stored| t != topic || stored.topic_id.is_none());
        }
        let without_id = self.lock().values().any(|g| g.offsets.keys().any(|(t, _)| t == topic));
        if !without_id {
            return Ok(());
        }
        let tombstone = OffsetLine {
            group: String::new(),
            topic: topic.to_string(),
            partition: -1,
            offset: -1,
            metadata: None,
            topic_id: None,
        };
        let mut line = serde_json::to_vec(&tombstone).map_err(io::Error::other)?;
        line.push(b'\n');
        file.append(&line)?;
        file.lines += 1;
        for group in self.lock().values_mut() {
            group.offsets.retain(|(t, _), _| t != topic);
        }
        Ok(())
    }
}

/// The committed-offsets file and how many lines it holds.
struct OffsetsFile {
    file: File,
    path: PathBuf,
    lines: usize,
    /// The file's length after its last complete line: a failed write is cut back to it, because a torn line
    /// left at the end would swallow the next line appended (the two would read as one malformed line).
    len: u64,
    /// A failed write could not be cut back: nothing more is appended until a restart, which drops the torn line.
    torn: bool,
    #[cfg(test)]
    faults: Faults,
}

/// Failures a test can make the offsets file suffer.
#[cfg(test)]
#[derive(Default)]
struct Faults {
    /// The next write stops halfway and fails.
    tear_next_write: bool,
    /// Cutting the file back after a failed write fails too.
    truncate_fails: bool,
}

impl OffsetsFile {
    /// Appends whole lines and fsyncs them, or leaves the file as it was.
    fn append(&mut self, bytes: &[u8]) -> Result<(), CommitError> {
        if self.torn {
            return Err(CommitError::Unwritable);
        }
        match self.write_synced(bytes) {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(error) => {
                if let Err(undo) = self.cut_back() {
                    self.torn = true;
                    tracing::error!(
                        path = %self.path.display(),
                        "cannot cut a failed write off the committed-offsets file ({undo}); refusing commits until the broker restarts"
                    );
                }
                Err(CommitError::Storage(error))
            }
        }
    }

    fn write_synced(&mut self, bytes: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if std::mem::take(&mut self.faults.tear_next_write) {
            self.file.write_all(&bytes[..bytes.len() / 2])?;
            return Err(io::Error::other("simulated failed write"));
        }
        self.file.write_all(bytes)?;
        self.file.sync_data()
    }

    fn cut_back(&mut self) -> io::Result<()> {
        #[cfg(test)]
        if self.faults.truncate_fails {
            return Err(io::Error::other("simulated failed truncation"));
        }
        // The file is in append mode: after this, the next write lands at `len` again.
        self.file.set_len(self.len)?;
        self.file.sync_data()
    }
}

/// Whether `group_id` may name a group.
fn valid_group_id(group_id: &str) -> bool {
    !group_id.is_empty() && group_id.len() <= MAX_GROUP_ID_BYTES
}

/// The file is compacted once it holds more than this many lines and four times the live offsets.
const COMPACT_AFTER_LINES: usize = 10_000;

fn live_offsets(groups: &BTreeMap<String, Group>) -> usize {
    groups.values().map(|g| g.offsets.len()).sum()
}

/// Rewrites the offsets file with only the latest commit of each partition, atomically. Returns the file, open
/// for appending, and its length.
fn compact(path: &Path, lines: &[OffsetLine]) -> io::Result<(File, u64)> {
    let temporary: PathBuf = path.with_extension("jsonl.tmp");
    let mut out = io::BufWriter::new(File::create(&temporary)?);
    for line in lines {
        serde_json::to_writer(&mut out, line).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
    }
    let written = out.into_inner().map_err(|e| e.into_error())?;
    written.sync_all()?;
    let len = written.metadata()?.len();
    // The handle is opened before the rename, so it is the file that ends up at `path`: nothing after the rename
    // can leave commits going to the replaced one.
    let file = OpenOptions::new().append(true).open(&temporary)?;
    fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok((file, len))
}

/// Every committed offset, as the lines a compacted file holds.
fn offset_lines(groups: &BTreeMap<String, Group>) -> Vec<OffsetLine> {
    groups
        .iter()
        .flat_map(|(name, group)| {
            group.offsets.iter().map(|((topic, partition), stored)| OffsetLine {
                group: name.clone(),
                topic: topic.clone(),
                partition: *partition,
                offset: stored.committed.offset,
                metadata: stored.committed.metadata.clone(),
                topic_id: stored.topic_id,
            })
        })
        .collect()
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

    const TOPIC_ID: Uuid = Uuid::from_u128(1);
    const LIMITS: Limits =
        Limits { max_member_metadata_bytes: 1024, max_group_members: 3, max_group_metadata_bytes: 2048, max_groups: 4 };

    /// A coordinator whose only topic is "t", with id `TOPIC_ID` and logs without end.
    fn open(dir: &Path, delay: Duration) -> Coordinator {
        Coordinator::open(dir, delay, LIMITS, |_| Some(TOPIC_ID), |_, _| None).unwrap()
    }

    fn offset(partition: i32, offset: i64) -> Commit {
        Commit { topic: "t".into(), topic_id: TOPIC_ID, partition, committed: Committed { offset, metadata: None } }
    }

    fn commit(
        coordinator: &Coordinator,
        group: &str,
        offsets: Vec<Commit>,
    ) -> Result<BTreeSet<(String, i32)>, CommitError> {
        coordinator.commit(group, offsets, |_| Some(TOPIC_ID))
    }

    fn request(group: &str, member_id: &str, client_id: &str, protocols: Vec<(String, Bytes)>) -> Join {
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

    fn join(coordinator: &Coordinator, member_id: &str) -> oneshot::Receiver<Joined> {
        coordinator.join(request("g", member_id, "test", vec![("range".into(), Bytes::from_static(b"meta"))]))
    }

    fn file_lines(dir: &Path) -> Vec<String> {
        fs::read_to_string(dir.join("offsets.jsonl")).unwrap().lines().map(str::to_string).collect()
    }

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

    #[test]
    fn the_offsets_file_is_compacted_while_running_and_keeps_the_latest_commits() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = open(dir.path(), Duration::ZERO);
        for value in 0..(COMPACT_AFTER_LINES as i64 + 10) {
            commit(&coordinator, "g", vec![offset((value % 2) as i32, value)]).unwrap();
        }
        let lines = file_lines(dir.path()).len();
        assert!(lines < 100, "{lines} lines after compaction");
        drop(coordinator);
        let coordinator = open(dir.path(), Duration::ZERO);
        let last = COMPACT_AFTER_LINES as i64 + 9;
        let expected = vec![
            ("t".to_string(), 0, Some(Committed { offset: last - 1, metadata: None })),
            ("t".to_string(), 1, Some(Committed { offset: last, metadata: None })),
        ];
        assert_eq!(coordinator.committed("g", None), expected);
    }

    #[test]
    fn a_deleted_topics_offsets_stay_forgotten_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = open(dir.path(), Duration::ZERO);
        commit(&coordinator, "g", vec![offset(0, 5)]).unwrap();
        coordinator.forget_topic("t").unwrap();
        assert_eq!(coordinator.committed("g", None), vec![]);
        drop(coordinator);
        // The topic was created again under the same name: a new id.
        let coordinator =
            Coordinator::open(dir.path(), Duration::ZERO, LIMITS, |_| Some(Uuid::from_u128(2)), |_, _| None).unwrap();
        assert_eq!(coordinator.committed("g", None), vec![]);
    }

    #[tokio::test]
    async fn committed_offsets_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = open(dir.path(), Duration::ZERO);
        assert_eq!(coordinator.check_commit("g", "", -1), code::NONE);
        commit(&coordinator, "g", vec![offset(0, 5)]).unwrap();
        let mut second = offset(0, 9);
        second.committed.metadata = Some("m".into());
        commit(&coordinator, "g", vec![second]).unwrap();
        drop(coordinator);
        let coordinator = open(dir.path(), Duration::ZERO);
        let committed = coordinator.committed("g", None);
        assert_eq!(committed, vec![("t".into(), 0, Some(Committed { offset: 9, metadata: Some("m".into()) }))]);
    }

    /// Regression: each duplicate entry of a commit used to append (and fsync) a line of its own.
    #[test]
    fn a_partition_named_many_times_in_one_commit_is_written_once_with_its_last_value() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = open(dir.path(), Duration::ZERO);
        commit(&coordinator, "g", (0..2000).map(|value| offset(0, value)).collect()).unwrap();
        assert_eq!(file_lines(dir.path()).len(), 1);
        assert_eq!(
            coordinator.committed("g", None),
            vec![("t".into(), 0, Some(Committed { offset: 1999, metadata: None }))]
        );
    }

    /// Regression: a write that failed halfway left a torn line that swallowed the next commit at restart.
    #[test]
    fn a_torn_write_is_cut_back_and_does_not_swallow_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = open(dir.path(), Duration::ZERO);
        commit(&coordinator, "g", vec![offset(0, 1)]).unwrap();
        coordinator.offsets_file.lock().unwrap().faults.tear_next_write = true;
        assert!(matches!(commit(&coordinator, "g", vec![offset(0, 2)]), Err(CommitError::Storage(_))));
        assert_eq!(coordinator.committed("g", None)[0].2, Some(Committed { offset: 1, metadata: None }));
        commit(&coordinator, "g", vec![offset(0, 3)]).unwrap();
        drop(coordinator);
        let coordinator = open(dir.path(), Duration::ZERO);
        assert_eq!(
            coordinator.committed("g", None),
            vec![("t".into(), 0, Some(Committed { offset: 3, metadata: None }))]
        );
    }

    #[test]
    fn when_a_failed_write_cannot_be_cut_back_commits_are_refused_until_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = open(dir.path(), Duration::ZERO);
        commit(&coordinator, "g", vec![offset(0, 1)]).unwrap();
        {
            let mut file = coordinator.offsets_file.lock().unwrap();
            file.faults.tear_next_write = true;
            file.faults.truncate_fails = true;
        }
        assert!(matches!(commit(&coordinator, "g", vec![offset(0, 2)]), Err(CommitError::Storage(_))));
        let refused = commit(&coordinator, "g", vec![offset(0, 3)]).unwrap_err();
        assert_eq!(refused.code(), code::KAFKA_STORAGE_ERROR);
        drop(coordinator);
        let coordinator = open(dir.path(), Duration::ZERO);
        assert_eq!(
            coordinator.committed("g", None),
            vec![("t".into(), 0, Some(Committed { offset: 1, metadata: None }))]
        );
        commit(&coordinator, "g", vec![offset(0, 4)]).unwrap();
    }

    #[test]
    fn a_commit_checked_against_a_topic_since_deleted_or_recreated_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = open(dir.path(), Duration::ZERO);
        let recreated = Uuid::from_u128(2);
        let gone = coordinator.commit("g", vec![offset(0, 1), offset(1, 1)], |_| Some(recreated)).unwrap();
        assert_eq!(gone, BTreeSet::from([("t".to_string(), 0), ("t".to_string(), 1)]));
        assert_eq!(coordinator.committed("g", None), vec![]);
        assert!(file_lines(dir.path()).is_empty());
    }

    #[test]
    fn committed_offsets_beyond_the_log_end_are_clamped_to_it_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = open(dir.path(), Duration::ZERO);
        commit(&coordinator, "g", vec![offset(0, 100), offset(1, 10)]).unwrap();
        drop(coordinator);
        let log_end = |_: &str, partition: i32| Some(if partition == 0 { 40 } else { 50 });
        let coordinator = Coordinator::open(dir.path(), Duration::ZERO, LIMITS, |_| Some(TOPIC_ID), log_end).unwrap();
        let expected = vec![
            ("t".to_string(), 0, Some(Committed { offset: 40, metadata: None })),
            ("t".to_string(), 1, Some(Committed { offset: 10, metadata: None })),
        ];
        assert_eq!(coordinator.committed("g", None), expected);
        drop(coordinator);
        // The clamped value is what the compacted file holds.
        assert_eq!(open(dir.path(), Duration::ZERO).committed("g", None), expected);
    }

    #[test]
    fn lines_without_a_topic_id_are_kept_until_a_tombstone_written_before_memory_forgets_them() {
        let dir = tempfile::tempdir().unwrap();
        let old = r#"{"group":"g","topic":"t","partition":0,"offset":7,"metadata":null}"#;
        fs::write(dir.path().join("offsets.jsonl"), format!("{old}\n")).unwrap();
        let coordinator = open(dir.path(), Duration::ZERO);
        let kept = vec![("t".to_string(), 0, Some(Committed { offset: 7, metadata: None }))];
        assert_eq!(coordinator.committed("g", None), kept);
        // The tombstone cannot be written: the older offset stays, in memory as on disk.
        coordinator.offsets_file.lock().unwrap().faults.tear_next_write = true;
        assert!(coordinator.forget_topic("t").is_err());
        assert_eq!(coordinator.committed("g", None), kept);
        coordinator.forget_topic("t").unwrap();
        assert_eq!(coordinator.committed("g", None), vec![]);
        drop(coordinator);
        assert_eq!(open(dir.path(), Duration::ZERO).committed("g", None), vec![]);
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
