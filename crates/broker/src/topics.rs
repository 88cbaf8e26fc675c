//! The broker's topics and partitions: creating, deleting and loading them, and each partition's visible end.
//!
//! On disk a topic is `<data dir>/topics/<name>/` with `topic.json` (its id and partition count) and one
//! directory per partition holding that partition's log. A topic appears and disappears by renaming its
//! directory, so a crash never leaves half a topic. This module owns no sockets and no fsync schedule.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use super::log::{Log, LogConfig, Recovery};

/// Most partitions one topic may have; each holds open files.
pub const MAX_PARTITIONS: i32 = 1000;

/// One partition: its log and a channel announcing its high watermark to waiting fetches.
pub struct Partition {
    pub topic: String,
    pub index: i32,
    log: Mutex<Log>,
    watermark: watch::Sender<i64>,
}

impl Partition {
    /// The log, locked. A panic elsewhere while holding the lock leaves the log consistent (every mutation is
    /// completed or undone before returning), so a poisoned lock is taken over rather than propagated.
    pub fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A receiver that wakes when the high watermark moves.
    pub fn watch(&self) -> watch::Receiver<i64> {
        self.watermark.subscribe()
    }

    /// Tells waiting fetches and producers that readers may now see up to `high_watermark`.
    pub fn publish(&self, high_watermark: i64) {
        self.watermark.send_if_modified(|current| {
            let moved = high_watermark > *current;
            if moved {
                *current = high_watermark;
            }
            moved
        });
    }
}

/// A topic and its partitions.
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<Arc<Partition>>,
}

#[derive(Serialize, Deserialize)]
struct TopicFile {
    id: Uuid,
    partitions: i32,
}

/// Why a topic cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("topic names are 1 to 249 characters of ASCII letters, digits, '.', '_' and '-', and not '.' or '..'")]
    InvalidName,
    #[error("a topic has 1 to {MAX_PARTITIONS} partitions")]
    InvalidPartitions,
    #[error("the topic already exists")]
    Exists,
    #[error("cannot write the topic to disk: {0}")]
    Io(#[from] io::Error),
}

/// Whether `name` is a legal Kafka topic name.
pub fn valid_name(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// A partition whose log had a torn tail cut off when it was opened.
pub struct Repaired {
    pub topic: String,
    pub partition: i32,
    pub recovery: Recovery,
}

/// Every topic of the broker.
pub struct Topics {
    root: PathBuf,
    config: LogConfig,
    by_name: RwLock<BTreeMap<String, Arc<Topic>>>,
}

impl Topics {
    /// Loads every topic under `root`, recovering each partition's log. Leftovers of an interrupted create or
    /// delete are removed. Returns the partitions whose logs had a torn tail cut off.
    pub fn load(root: &Path, config: LogConfig) -> io::Result<(Topics, Vec<Repaired>)> {
        fs::create_dir_all(root)?;
        let mut by_name = BTreeMap::new();
        let mut repaired = Vec::new();
        for entry in fs::read_dir(root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".creating-") || name.starts_with(".deleted-") {
                // Another remover (a delete's background thread) may get there first.
                match fs::remove_dir_all(entry.path()) {
                    Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                    _ => continue,
                }
            }
            let Ok(bytes) = fs::read(entry.path().join("topic.json")) else { continue };
            let meta: TopicFile = serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", entry.path().display())))?;
            let mut partitions = Vec::new();
            for index in 0..meta.partitions {
                let (log, recovery) = Log::open(&entry.path().join(index.to_string()), config.clone())?;
                if recovery.truncated_bytes > 0 {
                    repaired.push(Repaired { topic: name.clone(), partition: index, recovery });
                }
                partitions.push(Arc::new(new_partition(&name, index, log)));
            }
            by_name.insert(name.clone(), Arc::new(Topic { name, id: meta.id, partitions }));
        }
        Ok((Topics { root: root.to_path_buf(), config, by_name: RwLock::new(by_name) }, repaired))
    }

    /// The topic called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.read().get(name).cloned()
    }

    /// One partition of a topic.
    pub fn partition(&self, name: &str, index: i32) -> Option<Arc<Partition>> {
        self.get(name).and_then(|t| usize::try_from(index).ok().and_then(|i| t.partitions.get(i).cloned()))
    }

    /// Every topic, by name.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.read().values().cloned().collect()
    }

    /// Every partition of every topic.
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.read().values().flat_map(|t| t.partitions.iter().cloned()).collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Topic>>> {
        self.by_name.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates a topic: written completely under a temporary name, then renamed into place.
    pub fn create(&self, name: &str, partitions: i32) -> Result<Arc<Topic>, CreateError> {
        if !valid_name(name) {
            return Err(CreateError::InvalidName);
        }
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(CreateError::InvalidPartitions);
        }
        let mut by_name = self.by_name.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if by_name.contains_key(name) {
            return Err(CreateError::Exists);
        }
        let id = Uuid::new_v4();
        let staging = self.root.join(format!(".creating-{id}"));
        fs::create_dir_all(&staging)?;
        let meta = TopicFile { id, partitions };
        fs::write(staging.join("topic.json"), serde_json::to_vec(&meta).map_err(io::Error::other)?)?;
        fs::File::open(staging.join("topic.json"))?.sync_all()?;
        let target = self.root.join(name);
        fs::rename(&staging, &target)?;
        fs::File::open(&self.root)?.sync_all()?;
        let mut list = Vec::new();
        for index in 0..partitions {
            let (log, _) = Log::open(&target.join(index.to_string()), self.config.clone())?;
            list.push(Arc::new(new_partition(name, index, log)));
        }
        let topic = Arc::new(Topic { name: name.to_string(), id, partitions: list });
        by_name.insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    /// Deletes a topic: renamed away at once (so it is gone even after a crash), its files removed after.
    /// Returns `false` if there was no such topic.
    pub fn delete(&self, name: &str) -> io::Result<bool> {
        let mut by_name = self.by_name.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(topic) = by_name.remove(name) else { return Ok(false) };
        let graveyard = self.root.join(format!(".deleted-{}", topic.id));
        fs::rename(self.root.join(name), &graveyard)?;
        fs::File::open(&self.root)?.sync_all()?;
        drop(by_name);
        std::thread::spawn(move || {
            if let Err(error) = fs::remove_dir_all(&graveyard) {
                tracing::warn!(path = %graveyard.display(), "cannot remove a deleted topic's files: {error}");
            }
        });
        Ok(true)
    }
}

fn new_partition(topic: &str, index: i32, log: Log) -> Partition {
    let (watermark, _) = watch::channel(log.high_watermark());
    Partition { topic: topic.to_string(), index, log: Mutex::new(log), watermark }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_survive_a_reload_and_deleted_ones_stay_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (topics, _) = Topics::load(dir.path(), LogConfig::default()).unwrap();
        topics.create("kept", 3).unwrap();
        topics.create("dropped", 1).unwrap();
        assert!(matches!(topics.create("kept", 1), Err(CreateError::Exists)));
        assert!(matches!(topics.create("bad/name", 1), Err(CreateError::InvalidName)));
        assert!(matches!(topics.create("zero", 0), Err(CreateError::InvalidPartitions)));
        assert!(topics.delete("dropped").unwrap());
        drop(topics);
        let (topics, _) = Topics::load(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(topics.all().iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["kept"]);
        assert_eq!(topics.get("kept").unwrap().partitions.len(), 3);
    }
}
