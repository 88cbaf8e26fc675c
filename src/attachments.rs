//! Files franz keeps for tickets (a mail's attachments, the whole text of a mail the ticket shows cut): on the files
//! topic (`topics.files`), in chunks any Kafka cluster takes, and in a cache beside the desk that the topic rebuilds.
//!
//! A file is named by its SHA-256 (64 lower-case hex digits), so the same file sent twice is one file, and the
//! event that carries it names it so. Each chunk is one record: its key is `SHA256:INDEX:COUNT`, its value the
//! chunk's bytes, at most [`CHUNK_BYTES`] (well under the 1 MB a record may be on Kafka and Redpanda by default). A
//! chunk read twice replaces itself, chunks may arrive in any order and on any partition, and compaction (where the
//! cluster has it) drops the repeats. The writer publishes every chunk of a file, acknowledged, before the record
//! that names the file, so no ticket names a file the topic lacks.
//!
//! The cache ([`Cache`], `<desk dir>/files`) holds each complete file as `SHA256`, checked against its name before
//! it is kept, the chunks of files not yet complete under `parts/`, and the offsets it has read up to with the
//! number of files it completed. It is a copy, read again from the topic whenever it lacks what it should have:
//! deleted whole, missing files at start, or a file asked for that is gone or no longer matches its name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::kafka::{self, Producer};

/// The largest chunk of a file: one record.
pub const CHUNK_BYTES: usize = 512 * 1024;
/// The most chunks a file has: files up to 32 MiB.
pub const CHUNKS_MAX: usize = 64;
/// How long a broker may take to answer the metadata request at start.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Chunks read between two saves of the offsets (they are saved too whenever the topic is read to its end).
const SAVE_EVERY: usize = 64;
/// The shortest time between two readings of the whole topic asked for by downloads.
const REREAD_EVERY: Duration = Duration::from_secs(60);

/// The name of a file: the SHA-256 of its bytes, in lower-case hex.
pub fn name_of(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Whether `text` is a file's name: 64 lower-case hex digits.
pub fn is_name(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A chunk's key: which file, which chunk of how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    pub index: usize,
    pub count: usize,
}

impl Key {
    /// The key of a record on the files topic, if it is one.
    pub fn parse(key: &str) -> Option<Key> {
        let mut parts = key.split(':');
        let (name, index, count) = (parts.next()?, parts.next()?, parts.next()?);
        let (index, count) = (index.parse().ok()?, count.parse().ok()?);
        (parts.next().is_none() && is_name(name) && index < count && count <= CHUNKS_MAX).then(|| Key {
            name: name.to_owned(),
            index,
            count,
        })
    }

    fn text(&self) -> String {
        format!("{}:{}:{}", self.name, self.index, self.count)
    }
}

/// The records a file is published as: each chunk with its key. An empty file is one empty chunk.
pub fn chunks(bytes: &[u8]) -> anyhow::Result<Vec<(Key, &[u8])>> {
    let name = name_of(bytes);
    let count = bytes.len().div_ceil(CHUNK_BYTES).max(1);
    anyhow::ensure!(
        count <= CHUNKS_MAX,
        "a file of {} bytes is over the {} MiB franz keeps",
        bytes.len(),
        (CHUNKS_MAX * CHUNK_BYTES) >> 20
    );
    if bytes.is_empty() {
        return Ok(vec![(Key { name, index: 0, count: 1 }, bytes)]);
    }
    Ok(bytes
        .chunks(CHUNK_BYTES)
        .enumerate()
        .map(|(index, chunk)| (Key { name: name.clone(), index, count }, chunk))
        .collect())
}

/// Publishes `bytes` on `topic` and returns its name once the broker acknowledged every chunk.
pub async fn publish(producer: &Producer, topic: &str, bytes: &[u8]) -> anyhow::Result<String> {
    let chunks = chunks(bytes)?;
    let name = chunks[0].0.name.clone();
    let keys: Vec<String> = chunks.iter().map(|(key, _)| key.text()).collect();
    let sending = keys.iter().zip(&chunks).map(|(key, (_, chunk))| kafka::publish(producer, topic, Some(key), chunk));
    futures::future::try_join_all(sending).await.with_context(|| format!("the broker did not take file {name}"))?;
    Ok(name)
}

/// The desk's copy of the files topic.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    /// Asked to read the topic again from its start, and when that was last asked.
    reread: Arc<(AtomicBool, std::sync::Mutex<Option<Instant>>)>,
}

/// Where the cache has read the topic up to, and how many files it completed: fewer there at start means some are
/// gone, and the topic is read again.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Progress {
    offsets: BTreeMap<i32, i64>,
    #[serde(default)]
    files: u64,
}

impl Cache {
    /// The cache in `dir`, created (readable by its owner only: the files are the customers') if needed.
    pub fn open(dir: &Path) -> anyhow::Result<Cache> {
        crate::files::private_dir(dir)?;
        crate::files::private_dir(&dir.join("parts"))?;
        Ok(Cache { dir: dir.to_owned(), reread: Arc::default() })
    }

    /// Asks the follower to read the whole topic again, at most once a minute: a file asked for is gone or damaged.
    pub fn reread(&self) {
        let mut last = self.reread.1.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|at| at.elapsed() >= REREAD_EVERY) {
            *last = Some(Instant::now());
            self.reread.0.store(true, Ordering::SeqCst);
        }
    }

    /// The bytes of the complete file `name`, checked against its name: `None` when the cache does not have it, or
    /// has it damaged (then it is dropped, and the topic read again).
    pub fn read(&self, name: &str) -> Option<Vec<u8>> {
        let bytes = self.path(name).and_then(|path| std::fs::read(path).ok());
        match bytes {
            Some(bytes) if name_of(&bytes) == name => Some(bytes),
            damaged => {
                if damaged.is_some() {
                    tracing::error!("the desk's copy of file {name} no longer matches its name; reading it again");
                    let _ = std::fs::remove_file(self.dir.join(name));
                }
                self.reread();
                None
            }
        }
    }

    /// How many complete files the cache holds.
    fn count(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|entries| entries.flatten().filter(|e| is_name(&e.file_name().to_string_lossy())).count() as u64)
            .unwrap_or(0)
    }

    /// Where the complete file `name` is, if the cache has it.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        let path = self.dir.join(name);
        (is_name(name) && path.is_file()).then_some(path)
    }

    /// Keeps one chunk; returns the file's name once the chunk completes it. A file whose chunks do not add up to
    /// its name is dropped with an error (a chunk of it read again later completes it anew).
    pub fn put(&self, key: &Key, chunk: &[u8]) -> anyhow::Result<Option<String>> {
        if self.path(&key.name).is_some() {
            return Ok(None);
        }
        let parts = self.dir.join("parts").join(format!("{}-{}", key.name, key.count));
        std::fs::create_dir_all(&parts).with_context(|| format!("cannot create {}", parts.display()))?;
        write_new(&parts.join(key.index.to_string()), chunk)?;
        let present = (0..key.count).filter(|index| parts.join(index.to_string()).is_file()).count();
        if present < key.count {
            return Ok(None);
        }
        let mut whole = Vec::new();
        for index in 0..key.count {
            let path = parts.join(index.to_string());
            whole.extend(std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?);
        }
        let name = name_of(&whole);
        if name != key.name {
            let _ = std::fs::remove_dir_all(&parts);
            anyhow::bail!("the {} chunks of file {} add up to a file named {name}; dropped", key.count, key.name);
        }
        // The whole file first: stopped in between, the parts are still there to make it.
        write_new(&self.dir.join(&key.name), &whole)?;
        let _ = std::fs::remove_dir_all(&parts);
        Ok(Some(name))
    }

    /// How far the cache has read, as it last saved it.
    fn progress(&self) -> Progress {
        std::fs::read(self.dir.join("offsets.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Saves how far it has read; a failure (the directory deleted, the disk full) is said and tried again at the
    /// next save, never the end of the follower.
    fn save(&self, offsets: &BTreeMap<i32, i64>) {
        let progress = Progress { offsets: offsets.clone(), files: self.count() };
        let saved = serde_json::to_vec(&progress)
            .map_err(anyhow::Error::from)
            .and_then(|json| write_new(&self.dir.join("offsets.json"), &json));
        if let Err(error) = saved {
            tracing::error!("the desk cannot save how far it read the files kept for tickets: {error:#}");
        }
    }

    /// Follows `topic` into the cache until `shutdown` is cancelled, from where it stopped last.
    pub async fn follow(self, bootstrap: String, topic: String, shutdown: CancellationToken) -> anyhow::Result<()> {
        tokio::task::spawn_blocking(move || self.follow_blocking(&bootstrap, &topic, &shutdown))
            .await
            .context("the desk's file follower ended abnormally")?
    }

    fn follow_blocking(&self, bootstrap: &str, topic: &str, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let consumer: kafka::PlainConsumer = kafka::consumer_config(bootstrap)
            .set("group.id", "franz-desk-files")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Offsets saved beyond the topic's end (its broker started empty): from its start.
            .set("auto.offset.reset", "earliest")
            .create_with_context(kafka::Quiet)
            .context("cannot create the desk's file reader")?;
        let metadata = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .with_context(|| format!("cannot read the metadata of {topic}"))?;
        let partitions: Vec<i32> = metadata.topics().iter().flat_map(|t| t.partitions()).map(|p| p.id()).collect();
        let progress = self.progress();
        let mut offsets = progress.offsets;
        if self.count() < progress.files {
            tracing::warn!("files are gone from the desk's copy of {topic}; reading it again from its start");
            offsets.clear();
        }
        let assign = |offsets: &BTreeMap<i32, i64>| -> anyhow::Result<()> {
            let mut assignment = TopicPartitionList::new();
            for &partition in &partitions {
                let from = offsets.get(&partition).map_or(Offset::Beginning, |&next| Offset::Offset(next));
                assignment.add_partition_offset(topic, partition, from)?;
            }
            consumer.assign(&assignment).with_context(|| format!("cannot read {topic}"))
        };
        assign(&offsets)?;
        let mut unsaved = 0;
        while !shutdown.is_cancelled() {
            if self.reread.0.swap(false, Ordering::SeqCst) {
                tracing::info!("a file the desk was asked for is missing from its copy; reading {topic} again");
                offsets.clear();
                assign(&offsets)?;
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    let key = message.key().and_then(|key| std::str::from_utf8(key).ok()).and_then(Key::parse);
                    match key {
                        Some(key) => {
                            if let Err(error) = self.put(&key, message.payload().unwrap_or_default()) {
                                tracing::error!("the desk cannot keep a chunk of file {}: {error:#}", key.name);
                            }
                        }
                        None => tracing::warn!(
                            "{topic} partition {} offset {} is no chunk of a file (its key is not \
                             SHA256:INDEX:COUNT); skipped",
                            message.partition(),
                            message.offset()
                        ),
                    }
                    offsets.insert(message.partition(), message.offset() + 1);
                    unsaved += 1;
                    if unsaved >= SAVE_EVERY {
                        self.save(&offsets);
                        unsaved = 0;
                    }
                }
                Some(Err(error)) => tracing::debug!(%error, "reading {topic} failed; librdkafka retries"),
                None if unsaved > 0 => {
                    self.save(&offsets);
                    unsaved = 0;
                }
                None => {}
            }
        }
        if unsaved > 0 {
            self.save(&offsets);
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` whole or not at all (through a temporary file renamed over it), making its directory
/// again if it was deleted.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|dir| !dir.is_dir()) {
        crate::files::private_dir(dir)?;
    }
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, bytes).with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("files")).unwrap();
        (dir, cache)
    }

    #[test]
    fn a_file_is_chunks_under_a_record_each_and_its_keys_name_it() {
        let bytes: Vec<u8> = (0..CHUNK_BYTES * 2 + 5).map(|i| (i % 251) as u8).collect();
        let records = chunks(&bytes).unwrap();
        assert_eq!(records.iter().map(|(_, c)| c.len()).collect::<Vec<_>>(), [CHUNK_BYTES, CHUNK_BYTES, 5]);
        for (index, (key, _)) in records.iter().enumerate() {
            assert_eq!(Key::parse(&key.text()), Some(Key { name: name_of(&bytes), index, count: 3 }));
        }
        assert_eq!(chunks(b"").unwrap().len(), 1, "an empty file is one empty chunk");
        let over = vec![0; CHUNKS_MAX * CHUNK_BYTES + 1];
        assert!(chunks(&over).unwrap_err().to_string().contains("over the 32 MiB"));
    }

    #[test]
    fn a_key_that_is_no_chunk_is_refused() {
        let name = name_of(b"x");
        for bad in [
            String::new(),
            format!("{name}:1:1"),
            format!("{name}:0:0"),
            format!("{name}:0:{}", CHUNKS_MAX + 1),
            format!("{name}:0:1:2"),
            format!("{}:0:1", name.to_uppercase()),
            "../../etc/passwd:0:1".to_owned(),
            format!("{name}:-1:1"),
        ] {
            assert_eq!(Key::parse(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn chunks_in_any_order_and_repeated_make_the_file_once() {
        let (_dir, cache) = cache();
        let bytes: Vec<u8> = (0..CHUNK_BYTES * 2 + 1).map(|i| (i % 7) as u8).collect();
        let mut records = chunks(&bytes).unwrap();
        records.reverse();
        let name = records[0].0.name.clone();
        assert_eq!(cache.put(&records[0].0, records[0].1).unwrap(), None);
        assert_eq!(cache.put(&records[0].0, records[0].1).unwrap(), None, "a repeat changes nothing");
        assert!(cache.path(&name).is_none(), "not there until every chunk is");
        assert_eq!(cache.put(&records[1].0, records[1].1).unwrap(), None);
        assert_eq!(cache.put(&records[2].0, records[2].1).unwrap(), Some(name.clone()));
        assert_eq!(std::fs::read(cache.path(&name).unwrap()).unwrap(), bytes);
        assert_eq!(cache.put(&records[2].0, records[2].1).unwrap(), None, "a chunk of a kept file is a repeat");
        assert!(std::fs::read_dir(cache.dir.join("parts")).unwrap().next().is_none(), "no parts left behind");
    }

    #[test]
    fn chunks_that_do_not_add_up_to_their_name_are_dropped() {
        let (_dir, cache) = cache();
        let key = Key { name: name_of(b"the real file"), index: 0, count: 1 };
        let error = cache.put(&key, b"something else").unwrap_err().to_string();
        assert!(error.contains("dropped"), "{error}");
        assert!(cache.path(&key.name).is_none());
        assert_eq!(cache.put(&key, b"the real file").unwrap(), Some(key.name.clone()), "the right chunk completes it");
    }

    #[test]
    fn the_offsets_read_and_the_files_kept_are_known_across_a_restart() {
        let (dir, cache) = cache();
        let key = Key { name: name_of(b"x"), index: 0, count: 1 };
        cache.put(&key, b"x").unwrap();
        cache.save(&BTreeMap::from([(0, 7), (2, 3)]));
        let again = Cache::open(&dir.path().join("files")).unwrap();
        assert_eq!(again.progress(), Progress { offsets: BTreeMap::from([(0, 7), (2, 3)]), files: 1 });
        assert!(again.path("offsets.json").is_none(), "only a file's name is a file");
    }

    #[test]
    fn a_damaged_file_is_not_served_and_asks_for_the_topic_again() {
        let (_dir, cache) = cache();
        let key = Key { name: name_of(b"the invoice"), index: 0, count: 1 };
        cache.put(&key, b"the invoice").unwrap();
        assert_eq!(cache.read(&key.name).as_deref(), Some(&b"the invoice"[..]));
        std::fs::write(cache.dir.join(&key.name), b"tampered").unwrap();
        assert_eq!(cache.read(&key.name), None);
        assert!(cache.path(&key.name).is_none(), "dropped");
        assert!(cache.reread.0.load(Ordering::SeqCst), "the topic is read again");
    }
}
