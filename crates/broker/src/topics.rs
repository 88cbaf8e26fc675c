//! The broker's topics and partitions: creating, deleting and loading them, and each partition's visible end.
//!
//! On disk a topic is `<data dir>/topics/<name>/` with `topic.json` (its id, partition count and own settings,
//! such as its retention) and one directory per partition holding that partition's log. A topic appears and
//! disappears by renaming its directory, so a crash never leaves half a topic. Topics being created are staged in
//! `<data dir>/staging/` and deleted ones wait for removal in `<data dir>/trash/`, outside `topics/`, so no topic
//! name a client chooses can collide with the broker's own work. The number of partitions is bounded broker-wide,
//! since each one holds an open file. This module owns no sockets and no fsync schedule.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use super::log::{Log, LogConfig, Recovery};
use super::topic_config::TopicConfig;

/// Most partitions one topic may have.
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
    /// The settings it was created with; its partitions' logs are kept by them (see [`TopicConfig::apply`]).
    pub config: TopicConfig,
}

/// `topic.json`. Fields added after the first version are optional, so a file written by an older franz reads
/// as it is (and an older franz ignores fields it does not know).
#[derive(Serialize, Deserialize)]
struct TopicFile {
    id: Uuid,
    partitions: i32,
    /// The topic's own settings, absent when it has none (and in files from before per-topic settings).
    #[serde(default, skip_serializing_if = "TopicConfig::is_default")]
    config: TopicConfig,
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
    #[error(
        "the broker holds {current} partitions and allows {limit} (each keeps a file open); delete topics or raise max_partitions"
    )]
    TooManyPartitions { current: usize, limit: usize },
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
    /// `<data dir>/topics`: one directory per topic, named after it.
    root: PathBuf,
    /// `<data dir>/staging`: topics being created.
    staging: PathBuf,
    /// `<data dir>/trash`: deleted topics whose files are being removed.
    trash: PathBuf,
    config: LogConfig,
    /// Most partitions of all topics together.
    max_partitions: usize,
    by_name: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Topics being created, with their partitions: reserved under the `by_name` lock, made without any lock.
    creating: Mutex<BTreeMap<String, usize>>,
}

/// What `franz` before version 0.2 named a topic being created or deleted, inside `topics/` itself.
const LEGACY_PREFIXES: [&str; 2] = [".creating-", ".deleted-"];

impl Topics {
    /// Loads every topic under `<data_dir>/topics`, recovering each partition's log, and clears what an interrupted
    /// create or delete left in `staging/` and `trash/`. `config` is the broker-wide way logs are kept; a topic's
    /// own settings take the place of its retention. Returns the partitions whose logs had a torn tail cut off.
    pub fn load(data_dir: &Path, config: LogConfig, max_partitions: usize) -> io::Result<(Topics, Vec<Repaired>)> {
        let root = data_dir.join("topics");
        let (staging, trash) = (data_dir.join("staging"), data_dir.join("trash"));
        for dir in [&root, &staging, &trash] {
            fs::create_dir_all(dir)?;
        }
        for dir in [&staging, &trash] {
            for entry in fs::read_dir(dir)? {
                remove_tree(&entry?.path())?;
            }
        }
        let mut by_name = BTreeMap::new();
        let mut repaired = Vec::new();
        for entry in fs::read_dir(&root)? {
            let entry = entry?;
            let path = entry.path();
            // Paths are logged with `?` (escaped): only a person puts a file here, and its name may hold anything.
            if !path.is_dir() {
                tracing::warn!(
                    ?path,
                    "skipping what is no directory among the topics; the broker keeps only topic directories there"
                );
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            // Only a person puts such a directory here (the broker creates legal names only); serving it would
            // hand clients a name they cannot ask for, and put it unescaped into metric labels.
            if !valid_name(&name) {
                tracing::warn!(
                    ?path,
                    "skipping a topic directory whose name is no legal topic name; rename it to letters, digits, '.', '_' and '-' to serve it"
                );
                continue;
            }
            let meta = match fs::read(path.join("topic.json")) {
                Ok(bytes) => Some(serde_json::from_slice::<TopicFile>(&bytes).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("{:?}: {e}", path.join("topic.json")))
                })?),
                Err(error) if error.kind() == io::ErrorKind::NotFound => None,
                Err(error) => return Err(error),
            };
            if is_legacy_leftover(&name, meta.as_ref()) {
                tracing::info!(?path, "removing what an interrupted create or delete of an older franz left behind");
                let parked = trash.join(Uuid::new_v4().to_string());
                fs::rename(&path, &parked)?;
                remove_tree(&parked)?;
                continue;
            }
            let Some(meta) = meta else { continue };
            let kept = meta.config.apply(&config);
            let mut partitions = Vec::new();
            for index in 0..meta.partitions {
                let (log, recovery) = Log::open(&path.join(index.to_string()), kept.clone())?;
                if recovery.truncated_bytes > 0 {
                    repaired.push(Repaired { topic: name.clone(), partition: index, recovery });
                }
                partitions.push(Arc::new(new_partition(&name, index, log)));
            }
            by_name.insert(name.clone(), Arc::new(Topic { name, id: meta.id, partitions, config: meta.config }));
        }
        let held: usize = by_name.values().map(|t: &Arc<Topic>| t.partitions.len()).sum();
        if held > max_partitions {
            // The broker always starts on its own data; it only refuses to create more.
            tracing::warn!(
                partitions = held,
                limit = max_partitions,
                "the data holds more partitions than max_partitions allows; no topic can be created until some are deleted"
            );
        }
        let creating = Mutex::default();
        Ok((Topics { root, staging, trash, config, max_partitions, by_name: RwLock::new(by_name), creating }, repaired))
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

    /// Partitions of all topics together, those being created included.
    pub fn partition_count(&self) -> usize {
        let by_name = self.read();
        let creating: usize = self.creating.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).values().sum();
        by_name.values().map(|t| t.partitions.len()).sum::<usize>() + creating
    }

    /// Most partitions of all topics together.
    pub fn max_partitions(&self) -> usize {
        self.max_partitions
    }

    /// Creates a topic: written completely in `staging/`, then renamed into place. If its partitions cannot be
    /// opened, the topic is removed again: a failed create leaves nothing behind. The name and the partitions are
    /// reserved under the topics lock, but the files (thousands of creations and fsyncs for a large topic) are
    /// made without it, so other requests go on meanwhile. `config` is stored in `topic.json` with the topic and
    /// keeps its partitions from then on, restarts included.
    pub fn create(&self, name: &str, partitions: i32, config: TopicConfig) -> Result<Arc<Topic>, CreateError> {
        if !valid_name(name) {
            return Err(CreateError::InvalidName);
        }
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(CreateError::InvalidPartitions);
        }
        {
            let by_name = self.read();
            let mut creating = self.creating.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if by_name.contains_key(name) || creating.contains_key(name) {
                return Err(CreateError::Exists);
            }
            let current: usize =
                by_name.values().map(|t| t.partitions.len()).sum::<usize>() + creating.values().sum::<usize>();
            if current + partitions as usize > self.max_partitions {
                return Err(CreateError::TooManyPartitions { current, limit: self.max_partitions });
            }
            creating.insert(name.to_string(), partitions as usize);
        }
        let made = self.make(name, partitions, config);
        let mut by_name = self.by_name.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.creating.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(name);
        let topic = made?;
        by_name.insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    /// Makes a reserved topic's files and opens its partitions.
    fn make(&self, name: &str, partitions: i32, config: TopicConfig) -> Result<Arc<Topic>, CreateError> {
        let id = Uuid::new_v4();
        let staged = self.staging.join(id.to_string());
        let target = self.root.join(name);
        let staged_and_moved = (|| {
            fs::create_dir_all(&staged)?;
            let meta = TopicFile { id, partitions, config };
            fs::write(staged.join("topic.json"), serde_json::to_vec(&meta).map_err(io::Error::other)?)?;
            fs::File::open(staged.join("topic.json"))?.sync_all()?;
            for index in 0..partitions {
                fs::create_dir(staged.join(index.to_string()))?;
            }
            fs::File::open(&staged)?.sync_all()?;
            fs::rename(&staged, &target)?;
            fs::File::open(&self.root)?.sync_all()
        })();
        if let Err(error) = staged_and_moved {
            let _ = remove_tree(&staged);
            return Err(error.into());
        }
        let kept = config.apply(&self.config);
        let opened: io::Result<Vec<Arc<Partition>>> = (0..partitions)
            .map(|index| {
                let (log, _) = Log::open(&target.join(index.to_string()), kept.clone())?;
                Ok(Arc::new(new_partition(name, index, log)))
            })
            .collect();
        match opened {
            Ok(list) => Ok(Arc::new(Topic { name: name.to_string(), id, partitions: list, config })),
            Err(error) => {
                // The logs opened so far were dropped with `opened`, closing their files.
                let parked = self.trash.join(id.to_string());
                match fs::rename(&target, &parked).and_then(|()| fs::File::open(&self.root)?.sync_all()) {
                    Ok(()) => {
                        let _ = remove_tree(&parked);
                    }
                    Err(cleanup) => {
                        tracing::error!(topic = %name, "cannot remove a topic that failed to open: {cleanup}")
                    }
                }
                Err(error.into())
            }
        }
    }

    /// Deletes a topic: moved to `trash/` at once (so it is gone even after a crash), its files removed after.
    /// Returns `false` if there was no such topic.
    pub fn delete(&self, name: &str) -> io::Result<bool> {
        let mut by_name = self.by_name.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(topic) = by_name.get(name).cloned() else { return Ok(false) };
        let parked = self.trash.join(topic.id.to_string());
        fs::rename(self.root.join(name), &parked)?;
        by_name.remove(name);
        fs::File::open(&self.root)?.sync_all()?;
        drop(by_name);
        std::thread::spawn(move || {
            if let Err(error) = remove_tree(&parked) {
                tracing::warn!(path = %parked.display(), "cannot remove a deleted topic's files: {error}");
            }
        });
        Ok(true)
    }
}

/// Removes a directory tree; one already gone (another remover got there first) is fine.
fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Whether a directory in `topics/` is a create or delete that an older franz (which staged them there) left
/// unfinished, rather than a topic: its name is a legacy prefix plus a UUID, and it has no `topic.json` or one
/// with that very id. A real topic called `.deleted-events` or `.creating-x` is a topic.
fn is_legacy_leftover(name: &str, meta: Option<&TopicFile>) -> bool {
    let Some(suffix) = LEGACY_PREFIXES.iter().find_map(|prefix| name.strip_prefix(prefix)) else { return false };
    let Ok(id) = Uuid::parse_str(suffix) else { return false };
    meta.is_none_or(|meta| meta.id == id)
}

fn new_partition(topic: &str, index: i32, log: Log) -> Partition {
    let (watermark, _) = watch::channel(log.high_watermark());
    Partition { topic: topic.to_string(), index, log: Mutex::new(log), watermark }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(dir: &Path, max_partitions: usize) -> Topics {
        Topics::load(dir, LogConfig::default(), max_partitions).unwrap().0
    }

    fn names(topics: &Topics) -> Vec<String> {
        topics.all().iter().map(|t| t.name.clone()).collect()
    }

    #[test]
    fn topics_survive_a_reload_and_deleted_ones_stay_gone() {
        let dir = tempfile::tempdir().unwrap();
        let topics = load(dir.path(), 100);
        topics.create("kept", 3, TopicConfig::default()).unwrap();
        topics.create("dropped", 1, TopicConfig::default()).unwrap();
        assert!(matches!(topics.create("kept", 1, TopicConfig::default()), Err(CreateError::Exists)));
        assert!(matches!(topics.create("bad/name", 1, TopicConfig::default()), Err(CreateError::InvalidName)));
        assert!(matches!(topics.create("zero", 0, TopicConfig::default()), Err(CreateError::InvalidPartitions)));
        assert!(topics.delete("dropped").unwrap());
        drop(topics);
        let topics = load(dir.path(), 100);
        assert_eq!(names(&topics), ["kept"]);
        assert_eq!(topics.get("kept").unwrap().partitions.len(), 3);
    }

    /// Regression: topics named `.deleted-…` or `.creating-…` (legal Kafka names) were deleted at start-up, with
    /// their acknowledged records, because the broker staged its own work under those names in `topics/`.
    #[test]
    fn topics_named_like_the_brokers_own_work_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let topics = load(dir.path(), 100);
        let victim = topics.create("victim", 1, TopicConfig::default()).unwrap();
        let lookalikes = [".deleted-events".to_string(), ".creating-x".to_string(), format!(".deleted-{}", victim.id)];
        for name in &lookalikes {
            topics.create(name, 1, TopicConfig::default()).unwrap();
        }
        // Deleting a topic must not touch another topic named after where an older franz parked deleted ones.
        assert!(topics.delete("victim").unwrap());
        drop(topics);
        let topics = load(dir.path(), 100);
        let mut expected = lookalikes.to_vec();
        expected.sort();
        assert_eq!(names(&topics), expected);
    }

    #[test]
    fn leftovers_of_an_older_franz_are_removed_and_real_topics_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("topics");
        let write_topic = |dir_name: &str, id: Uuid| {
            fs::create_dir_all(root.join(dir_name)).unwrap();
            let meta = serde_json::to_vec(&TopicFile { id, partitions: 1, config: TopicConfig::default() }).unwrap();
            fs::write(root.join(dir_name).join("topic.json"), meta).unwrap();
        };
        let id = Uuid::new_v4();
        write_topic(&format!(".deleted-{id}"), id);
        write_topic(&format!(".creating-{}", Uuid::new_v4()), Uuid::new_v4());
        let stale = Uuid::new_v4();
        write_topic(&format!(".creating-{stale}"), stale);
        let topics = load(dir.path(), 100);
        assert_eq!(topics.all().len(), 1, "{:?}", names(&topics));
        assert!(names(&topics)[0].starts_with(".creating-") && !names(&topics)[0].contains(&stale.to_string()));
        assert_eq!(fs::read_dir(&root).unwrap().count(), 1);
    }

    #[test]
    fn stray_files_and_directories_with_illegal_names_do_not_stop_the_broker_from_starting() {
        let dir = tempfile::tempdir().unwrap();
        load(dir.path(), 100).create("kept", 1, TopicConfig::default()).unwrap();
        let root = dir.path().join("topics");
        fs::write(root.join("notes.txt"), "a person's notes").unwrap();
        fs::write(root.join("looks-like-a-topic"), "").unwrap();
        let illegal = root.join("bad name\u{1b}[2J");
        fs::create_dir_all(&illegal).unwrap();
        fs::write(illegal.join("topic.json"), "not json").unwrap();
        let topics = load(dir.path(), 100);
        assert_eq!(names(&topics), ["kept"]);
        assert!(root.join("notes.txt").exists() && illegal.exists(), "what a person put there is left alone");
    }

    #[test]
    fn a_topics_own_retention_is_stored_with_it_and_kept_after_a_reload() {
        use crate::topic_config::Limit;
        let dir = tempfile::tempdir().unwrap();
        let topics = load(dir.path(), 100);
        let forever = TopicConfig { retention_ms: Some(Limit::Unlimited), retention_bytes: Some(Limit::Unlimited) };
        topics.create("ticket-events", 2, forever).unwrap();
        topics.create("ordinary", 1, TopicConfig::default()).unwrap();
        let kept_forever = |topics: &Topics| {
            let topic = topics.get("ticket-events").unwrap();
            assert_eq!(topic.config, forever);
            for partition in &topic.partitions {
                let log = partition.log();
                assert_eq!((log.config().retention_age, log.config().retention_bytes), (None, None));
            }
            let ordinary = topics.partition("ordinary", 0).unwrap();
            let broker = LogConfig::default();
            let log = ordinary.log();
            assert_eq!(
                (log.config().retention_age, log.config().retention_bytes),
                (broker.retention_age, broker.retention_bytes)
            );
        };
        kept_forever(&topics);
        drop(topics);
        let json = fs::read_to_string(dir.path().join("topics/ticket-events/topic.json")).unwrap();
        assert!(json.contains(r#""retention.ms":-1"#) && json.contains(r#""retention.bytes":-1"#), "{json}");
        let plain = fs::read_to_string(dir.path().join("topics/ordinary/topic.json")).unwrap();
        assert!(!plain.contains("config"), "a topic without settings writes the old format: {plain}");
        kept_forever(&load(dir.path(), 100));
    }

    #[test]
    fn a_topic_json_of_an_older_franz_loads_with_the_broker_wide_retention() {
        let dir = tempfile::tempdir().unwrap();
        let topic = dir.path().join("topics").join("old");
        fs::create_dir_all(&topic).unwrap();
        let id = Uuid::new_v4();
        fs::write(topic.join("topic.json"), format!(r#"{{"id":"{id}","partitions":2}}"#)).unwrap();
        let broker = LogConfig { retention_bytes: Some(12345), ..LogConfig::default() };
        let topics = Topics::load(dir.path(), broker.clone(), 100).unwrap().0;
        let old = topics.get("old").unwrap();
        assert_eq!((old.id, old.partitions.len(), old.config), (id, 2, TopicConfig::default()));
        let log = old.partitions[1].log();
        assert_eq!((log.config().retention_age, log.config().retention_bytes), (broker.retention_age, Some(12345)));
    }

    #[test]
    fn a_topic_json_with_an_impossible_retention_is_refused_naming_the_topic() {
        let dir = tempfile::tempdir().unwrap();
        let topic = dir.path().join("topics").join("edited");
        fs::create_dir_all(&topic).unwrap();
        let json = format!(r#"{{"id":"{}","partitions":1,"config":{{"retention.ms":0}}}}"#, Uuid::new_v4());
        fs::write(topic.join("topic.json"), json).unwrap();
        let Err(error) = Topics::load(dir.path(), LogConfig::default(), 100) else { panic!("refused") };
        assert!(error.to_string().contains("edited") && error.to_string().contains("-1"), "{error}");
    }

    #[test]
    fn the_partition_limit_holds_for_all_topics_together_and_a_refused_create_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let topics = load(dir.path(), 5);
        topics.create("a", 3, TopicConfig::default()).unwrap();
        let Err(refused) = topics.create("b", 3, TopicConfig::default()) else {
            panic!("a create past the limit is refused")
        };
        assert!(matches!(refused, CreateError::TooManyPartitions { current: 3, limit: 5 }), "{refused}");
        assert!(refused.to_string().contains("max_partitions"), "{refused}");
        topics.create("c", 2, TopicConfig::default()).unwrap();
        assert_eq!(topics.partition_count(), 5);
        assert!(!dir.path().join("topics").join("b").exists());
        assert_eq!(fs::read_dir(dir.path().join("staging")).unwrap().count(), 0);
    }
}
