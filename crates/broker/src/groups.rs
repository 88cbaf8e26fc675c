//! The group coordinator: the classic consumer-group protocol and committed offsets.
//!
//! A group moves Empty → PreparingRebalance (members join) → CompletingRebalance (the leader computes the
//! assignment) → Stable (every member has its assignment), and back to PreparingRebalance whenever a member
//! joins, leaves or stops heartbeating. The broker never assigns partitions itself: the leader does, the broker
//! relays. Committed offsets are appended to `groups/offsets.jsonl` and fsynced before the commit is answered (the
//! file is compacted at start-up and whenever most of it is stale);
//! membership is in memory only (after a restart, members simply rejoin). Wire encoding lives in `handlers.rs`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Kafka error codes the coordinator answers with.
pub mod code {
    pub const NONE: i16 = 0;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
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
    offsets: BTreeMap<(String, i32), Committed>,
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
}

/// The group coordinator of the broker.
pub struct Coordinator {
    groups: Mutex<BTreeMap<String, Group>>,
    offsets_file: Arc<Mutex<OffsetsFile>>,
    initial_delay: Duration,
}

impl Coordinator {
    /// Loads committed offsets from `dir` (compacting the file) and starts with no members.
    pub fn open(dir: &Path, initial_delay: Duration) -> io::Result<Coordinator> {
        fs::create_dir_all(dir)?;
        let path = dir.join("offsets.jsonl");
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
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
                groups.entry(entry.group).or_insert_with(Group::new).offsets.insert(
                    (entry.topic, entry.partition),
                    Committed { offset: entry.offset, metadata: entry.metadata },
                );
            }
        }
        let file = compact(&path, &offset_lines(&groups))?;
        let lines = live_offsets(&groups);
        let offsets_file = OffsetsFile { file, path, lines };
        Ok(Coordinator { groups: Mutex::new(groups), offsets_file: Arc::new(Mutex::new(offsets_file)), initial_delay })
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
        if join.group.is_empty() {
            return fail(code::INVALID_GROUP_ID);
        }
        if !SESSION_TIMEOUTS.contains(&join.session_timeout_ms) {
            return fail(code::INVALID_SESSION_TIMEOUT);
        }
        let now = Instant::now();
        let mut groups = self.lock();
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
            format!("{}-{}", join.client_id, uuid::Uuid::new_v4())
        } else if group.members.contains_key(&join.member_id) {
            join.member_id.clone()
        } else {
            return fail(code::UNKNOWN_MEMBER_ID);
        };
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
        member.protocols = join.protocols;
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
                        member.assignment = assignments.remove(id).unwrap_or_default();
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
        if group_id.is_empty() {
            return code::INVALID_GROUP_ID;
        }
        let mut groups = self.lock();
        let group = groups.entry(group_id.to_string()).or_insert_with(Group::new);
        if generation < 0 && member_id.is_empty() {
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
    /// `exists` is asked, under the file lock, whether each topic still exists: a topic deleted since the commit
    /// was checked has written its tombstone already, and its offsets must not come back after it.
    pub fn commit(
        &self,
        group_id: &str,
        offsets: Vec<(String, i32, Committed)>,
        exists: impl Fn(&str) -> bool,
    ) -> io::Result<()> {
        let mut file = self.offsets_file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let offsets: Vec<_> = offsets.into_iter().filter(|(topic, _, _)| exists(topic)).collect();
        let mut lines = Vec::new();
        for (topic, partition, committed) in &offsets {
            let line = OffsetLine {
                group: group_id.to_string(),
                topic: topic.clone(),
                partition: *partition,
                offset: committed.offset,
                metadata: committed.metadata.clone(),
            };
            serde_json::to_writer(&mut lines, &line).map_err(io::Error::other)?;
            lines.push(b'\n');
        }
        // The file lock is held until memory is updated too, so two commits of one partition land in the same
        // order in both.
        file.file.write_all(&lines)?;
        file.file.sync_data()?;
        file.lines += offsets.len();
        let mut groups = self.lock();
        let group = groups.entry(group_id.to_string()).or_insert_with(Group::new);
        for (topic, partition, committed) in offsets {
            group.offsets.insert((topic, partition), committed);
        }
        // Consumers commit every few seconds for as long as they run: rewrite the file once most of it is stale.
        // The rewrite works from a copy, so only the file lock (which orders commits) is held meanwhile.
        if file.lines > COMPACT_AFTER_LINES && file.lines > 4 * live_offsets(&groups) {
            let lines = offset_lines(&groups);
            drop(groups);
            match compact(&file.path, &lines) {
                Ok(compacted) => {
                    file.file = compacted;
                    file.lines = lines.len();
                }
                // The commit itself is durable; compaction is retried after the next COMPACT_AFTER_LINES lines.
                Err(error) => {
                    tracing::warn!("cannot compact the committed-offsets file: {error}");
                    file.lines = lines.len();
                }
            }
        }
        Ok(())
    }

    /// The committed offsets of a group: of the given partitions, or all of them.
    pub fn committed(&self, group_id: &str, only: Option<&[(String, i32)]>) -> Vec<(String, i32, Option<Committed>)> {
        let groups = self.lock();
        let offsets = groups.get(group_id).map(|g| &g.offsets);
        match only {
            Some(partitions) => partitions
                .iter()
                .map(|(t, p)| (t.clone(), *p, offsets.and_then(|o| o.get(&(t.clone(), *p)).cloned())))
                .collect(),
            None => offsets.into_iter().flatten().map(|((t, p), c)| (t.clone(), *p, Some(c.clone()))).collect(),
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

    /// Forgets the committed offsets of a deleted topic, durably: a tombstone line (partition -1) is appended, so
    /// a topic created later under the same name does not inherit them after a restart.
    pub fn forget_topic(&self, topic: &str) -> io::Result<()> {
        let tombstone =
            OffsetLine { group: String::new(), topic: topic.to_string(), partition: -1, offset: -1, metadata: None };
        let mut line = serde_json::to_vec(&tombstone).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut file = self.offsets_file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Memory forgets in any case; only the file can fail to.
        for group in self.lock().values_mut() {
            group.offsets.retain(|(t, _), _| t != topic);
        }
        file.file.write_all(&line)?;
        file.file.sync_data()?;
        file.lines += 1;
        Ok(())
    }
}

/// The committed-offsets file and how many lines it holds.
struct OffsetsFile {
    file: File,
    path: PathBuf,
    lines: usize,
}

/// The file is compacted once it holds more than this many lines and four times the live offsets.
const COMPACT_AFTER_LINES: usize = 10_000;

fn live_offsets(groups: &BTreeMap<String, Group>) -> usize {
    groups.values().map(|g| g.offsets.len()).sum()
}

/// Rewrites the offsets file with only the latest commit of each partition, atomically.
fn compact(path: &Path, lines: &[OffsetLine]) -> io::Result<File> {
    let temporary: PathBuf = path.with_extension("jsonl.tmp");
    let mut out = io::BufWriter::new(File::create(&temporary)?);
    for line in lines {
        serde_json::to_writer(&mut out, line).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    // The handle is opened before the rename, so it is the file that ends up at `path`: nothing after the rename
    // can leave commits going to the replaced one.
    let file = OpenOptions::new().append(true).open(&temporary)?;
    fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(file)
}

/// Every committed offset, as the lines a compacted file holds.
fn offset_lines(groups: &BTreeMap<String, Group>) -> Vec<OffsetLine> {
    groups
        .iter()
        .flat_map(|(name, group)| {
            group.offsets.iter().map(|((topic, partition), committed)| OffsetLine {
                group: name.clone(),
                topic: topic.clone(),
                partition: *partition,
                offset: committed.offset,
                metadata: committed.metadata.clone(),
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

    fn join(coordinator: &Coordinator, member_id: &str) -> oneshot::Receiver<Joined> {
        coordinator.join(Join {
            group: "g".into(),
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "test".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        })
    }

    #[tokio::test]
    async fn two_members_share_a_generation_and_get_the_leaders_assignment() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = Coordinator::open(dir.path(), Duration::from_millis(20)).unwrap();
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
        let coordinator = Coordinator::open(dir.path(), Duration::ZERO).unwrap();
        for offset in 0..(COMPACT_AFTER_LINES as i64 + 10) {
            let commits = vec![("t".into(), (offset % 2) as i32, Committed { offset, metadata: None })];
            coordinator.commit("g", commits, |_| true).unwrap();
        }
        let lines = fs::read_to_string(dir.path().join("offsets.jsonl")).unwrap().lines().count();
        assert!(lines < 100, "{lines} lines after compaction");
        drop(coordinator);
        let coordinator = Coordinator::open(dir.path(), Duration::ZERO).unwrap();
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
        let coordinator = Coordinator::open(dir.path(), Duration::ZERO).unwrap();
        coordinator.commit("g", vec![("t".into(), 0, Committed { offset: 5, metadata: None })], |_| true).unwrap();
        coordinator.forget_topic("t").unwrap();
        drop(coordinator);
        let coordinator = Coordinator::open(dir.path(), Duration::ZERO).unwrap();
        assert_eq!(coordinator.committed("g", None), vec![]);
    }

    #[tokio::test]
    async fn committed_offsets_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let coordinator = Coordinator::open(dir.path(), Duration::ZERO).unwrap();
        assert_eq!(coordinator.check_commit("g", "", -1), code::NONE);
        coordinator.commit("g", vec![("t".into(), 0, Committed { offset: 5, metadata: None })], |_| true).unwrap();
        coordinator
            .commit("g", vec![("t".into(), 0, Committed { offset: 9, metadata: Some("m".into()) })], |_| true)
            .unwrap();
        drop(coordinator);
        let coordinator = Coordinator::open(dir.path(), Duration::ZERO).unwrap();
        let committed = coordinator.committed("g", None);
        assert_eq!(committed, vec![("t".into(), 0, Some(Committed { offset: 9, metadata: Some("m".into()) }))]);
    }
}
