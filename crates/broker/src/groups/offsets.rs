//! Committed offsets and their file, `groups/offsets.jsonl`: loaded (and compacted) when the coordinator opens,
//! appended and fsynced before a commit is answered, compacted whenever most of it is stale, and given a tombstone
//! when a topic is deleted. Each line names the topic's id, so offsets of a topic deleted and created again never
//! come back, and offsets beyond a partition's log end are clamped to it at open.
//!
//! A failed write is cut back, so a torn line never swallows the next commit; if it cannot be, commits are refused
//! until a restart. Whether a member may commit is `membership`'s job.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Coordinator, Group, Limits};
use crate::code;

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub metadata: Option<String>,
}

/// A committed offset as the coordinator keeps it: with the id of the topic it was committed to, so that it is
/// never taken for an offset of a later topic of the same name. Offsets read from lines written before ids were
/// recorded have none.
#[derive(Debug, Clone)]
pub(super) struct Stored {
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
pub(super) struct OffsetsFile {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::tests::{LIMITS, TOPIC_ID, commit, file_lines, offset, open};

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
}
