//! The log of one partition: append-only segment files of v2 batches, recovery, reads, retention.
//!
//! A partition directory holds `<base offset>.log` segments (batches back to back, exactly as produced, with the
//! base offset rewritten), `<base offset>.snapshot` files (idempotent-producer state as of that offset) and
//! `<base offset>.index` files (the saved sparse index of a closed segment, a rebuildable cache). Only
//! the last segment is written to. This module does the file work under its owner's lock; it knows nothing of
//! the network, of fsync scheduling (see `flush.rs`) or of when data becomes visible beyond `high_watermark`.

pub mod batch;
pub mod producers;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use batch::{BatchHeader, HEADER_LEN, LENGTH_PREFIX};
use producers::Producers;

/// How a partition's log is kept.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A segment is closed and a new one started once it would grow past this many bytes.
    pub segment_bytes: u64,
    /// Whole old segments are deleted while the partition holds more than this (`None`: no size limit).
    pub retention_bytes: Option<u64>,
    /// Whole old segments are deleted once their last write is older than this (`None`: kept forever).
    pub retention_age: Option<Duration>,
    /// One sparse index entry per this many bytes of log.
    pub index_interval: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 64 << 20,
            retention_bytes: Some(1 << 30),
            retention_age: Some(Duration::from_secs(7 * 24 * 3600)),
            index_interval: 4096,
        }
    }
}

/// One entry of a segment's sparse index: where the batch holding `offset` starts, and the largest timestamp of
/// every batch before it in the segment (so a search by time can skip to within one index interval).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    offset: i64,
    position: u64,
    max_timestamp_before: i64,
}

/// The first bytes of a saved index file; files without them (written by older versions) are rebuilt.
const INDEX_MAGIC: &[u8; 8] = b"FRZIDX2\n";
const INDEX_ENTRY_LEN: usize = 24;

/// One segment file.
struct Segment {
    base: i64,
    /// The open file, kept only for the active segment. A closed segment is opened for each read, so the open
    /// files of the broker do not grow with the data it retains.
    file: Option<Arc<File>>,
    path: PathBuf,
    /// Bytes in the file (all of them whole batches).
    size: u64,
    /// The offset after the segment's last batch.
    next_offset: i64,
    /// Sparse index, built on first read for old segments.
    index: Option<Vec<IndexEntry>>,
    /// File position of the last index entry.
    last_indexed: u64,
    /// The largest timestamp of any batch in the segment (valid once `index` is built).
    max_timestamp: i64,
}

impl Segment {
    fn log_path(dir: &Path, base: i64) -> PathBuf {
        dir.join(format!("{base:020}.log"))
    }

    fn snapshot_path(dir: &Path, base: i64) -> PathBuf {
        dir.join(format!("{base:020}.snapshot"))
    }

    fn index_path(dir: &Path, base: i64) -> PathBuf {
        dir.join(format!("{base:020}.index"))
    }

    fn create(dir: &Path, base: i64) -> io::Result<Segment> {
        let path = Segment::log_path(dir, base);
        let file = OpenOptions::new().create(true).read(true).append(true).open(&path)?;
        Ok(Segment {
            base,
            file: Some(Arc::new(file)),
            path,
            size: 0,
            next_offset: base,
            index: Some(Vec::new()),
            last_indexed: 0,
            max_timestamp: -1,
        })
    }

    /// The segment's file: the kept one when active, else opened now.
    fn open_file(&self) -> io::Result<Arc<File>> {
        match &self.file {
            Some(file) => Ok(file.clone()),
            None => Ok(Arc::new(File::open(&self.path)?)),
        }
    }

    /// Adds a batch just written at `position` to the index.
    fn index_batch(&mut self, header: &BatchHeader, position: u64, interval: u64) {
        if let Some(index) = self.index.as_mut()
            && (index.is_empty() || position >= self.last_indexed + interval)
        {
            index.push(IndexEntry { offset: header.base_offset, position, max_timestamp_before: self.max_timestamp });
            self.last_indexed = position;
        }
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
    }

    /// Saves the sparse index of a segment being closed, so its first read after a restart need not scan it.
    /// The file is only a cache: a missing or implausible one is rebuilt from the segment.
    fn save_index(&self, dir: &Path) -> io::Result<()> {
        let Some(index) = &self.index else { return Ok(()) };
        let mut bytes = Vec::with_capacity(16 + index.len() * INDEX_ENTRY_LEN);
        bytes.extend_from_slice(INDEX_MAGIC);
        bytes.extend_from_slice(&self.max_timestamp.to_be_bytes());
        for entry in index {
            bytes.extend_from_slice(&entry.offset.to_be_bytes());
            bytes.extend_from_slice(&entry.position.to_be_bytes());
            bytes.extend_from_slice(&entry.max_timestamp_before.to_be_bytes());
        }
        let path = Segment::index_path(dir, self.base);
        let temporary = path.with_extension("index.tmp");
        fs::write(&temporary, bytes)?;
        fs::rename(temporary, path)
    }

    /// The saved index of this segment and its largest timestamp, if the file exists and fits the segment:
    /// offsets, positions and timestamps rising, every position inside the file, the first entry at the start.
    fn load_index(&self, dir: &Path) -> Option<(Vec<IndexEntry>, i64)> {
        let bytes = fs::read(Segment::index_path(dir, self.base)).ok()?;
        let body = bytes.strip_prefix(INDEX_MAGIC.as_slice())?;
        if body.len() < 8 + INDEX_ENTRY_LEN || (body.len() - 8) % INDEX_ENTRY_LEN != 0 {
            return None;
        }
        let word = |b: &[u8]| i64::from_be_bytes(b.try_into().expect("8 bytes"));
        let max_timestamp = word(&body[..8]);
        let index: Vec<IndexEntry> = body[8..]
            .chunks_exact(INDEX_ENTRY_LEN)
            .map(|e| IndexEntry {
                offset: word(&e[..8]),
                position: word(&e[8..16]) as u64,
                max_timestamp_before: word(&e[16..]),
            })
            .collect();
        let first = index[0];
        let plausible = (first.offset, first.position) == (self.base, 0)
            && index.windows(2).all(|w| {
                w[0].offset < w[1].offset
                    && w[0].position < w[1].position
                    && w[0].max_timestamp_before <= w[1].max_timestamp_before
            })
            && index.iter().all(|e| {
                e.offset < self.next_offset && e.position < self.size && e.max_timestamp_before <= max_timestamp
            });
        plausible.then_some((index, max_timestamp))
    }

    /// Builds the sparse index of a closed segment: from its saved index, or from its batch headers.
    fn ensure_index(&mut self, dir: &Path, interval: u64) -> io::Result<()> {
        if self.index.is_some() {
            return Ok(());
        }
        if let Some((index, max_timestamp)) = self.load_index(dir) {
            self.last_indexed = index.last().map_or(0, |e| e.position);
            self.index = Some(index);
            self.max_timestamp = max_timestamp;
            return Ok(());
        }
        let file = self.open_file()?;
        self.index = Some(Vec::new());
        self.max_timestamp = -1;
        scan_headers(&file, self.size, |position, header| {
            self.index_batch(header, position, interval);
            true
        })
    }

    /// The index entry to start a scan from for `offset`.
    fn position_of(&mut self, dir: &Path, offset: i64, interval: u64) -> io::Result<(Arc<File>, u64)> {
        self.ensure_index(dir, interval)?;
        let index = self.index.as_ref().expect("built above");
        let start = match index.partition_point(|e| e.offset <= offset) {
            0 => 0,
            i => index[i - 1].position,
        };
        let file = self.open_file()?;
        let mut found = self.size;
        scan_headers_from(&file, start, self.size, |position, header| {
            if header.last_offset() >= offset {
                found = position;
                return false;
            }
            true
        })?;
        Ok((file, found))
    }

    /// The first batch below `visible` whose largest timestamp is at or after `timestamp`: skips the segment
    /// when its largest timestamp is older, else scans from the last index entry before which every batch is
    /// older, which is at most one index interval (and one batch) from the answer.
    fn find_timestamp(
        &mut self,
        dir: &Path,
        timestamp: i64,
        visible: i64,
        interval: u64,
    ) -> io::Result<Option<(i64, i64)>> {
        self.ensure_index(dir, interval)?;
        if self.max_timestamp < timestamp || self.base >= visible {
            return Ok(None);
        }
        let index = self.index.as_ref().expect("built above");
        let start = match index.partition_point(|e| e.max_timestamp_before < timestamp) {
            0 => 0,
            i => index[i - 1].position,
        };
        let file = self.open_file()?;
        let mut found = None;
        scan_headers_from(&file, start, self.size, |_, header| {
            if header.base_offset >= visible {
                return false;
            }
            if header.max_timestamp >= timestamp {
                found = Some((header.base_offset, header.max_timestamp));
                return false;
            }
            true
        })?;
        Ok(found)
    }
}

/// Writes a batch as its base offset followed by the rest of its bytes, retrying short writes.
fn write_batch(file: &File, base: i64, rest: &[u8]) -> io::Result<()> {
    let offset = base.to_be_bytes();
    let (mut head, mut tail): (&[u8], &[u8]) = (&offset, rest);
    while !head.is_empty() || !tail.is_empty() {
        match (&*file).write_vectored(&[io::IoSlice::new(head), io::IoSlice::new(tail)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => {
                let from_head = written.min(head.len());
                head = &head[from_head..];
                tail = &tail[written - from_head..];
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Calls `visit(position, header)` for each batch header of a file up to `end`, until it returns false.
fn scan_headers(file: &File, end: u64, visit: impl FnMut(u64, &BatchHeader) -> bool) -> io::Result<()> {
    scan_headers_from(file, 0, end, visit)
}

fn scan_headers_from(
    file: &File,
    start: u64,
    end: u64,
    mut visit: impl FnMut(u64, &BatchHeader) -> bool,
) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(64 << 10, file);
    reader.seek(SeekFrom::Start(start))?;
    let mut position = start;
    let mut header = [0u8; HEADER_LEN];
    while position + HEADER_LEN as u64 <= end {
        reader.read_exact(&mut header)?;
        let parsed = batch::parse_header(&header).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if !visit(position, &parsed) {
            break;
        }
        reader.seek_relative(parsed.size as i64 - HEADER_LEN as i64)?;
        position += parsed.size as u64;
    }
    Ok(())
}

/// Where a read of the log starts and how far it may go.
pub struct ReadPlan {
    file: Arc<File>,
    start: u64,
    end: u64,
}

/// A fetch offset the log does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange;

/// The log of one partition.
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    segments: Vec<Segment>,
    /// Sequence state of idempotent producers, as of the end of the log.
    pub producers: Producers,
    /// Readers see offsets below this; everything below it is as durable as the policy promises.
    high_watermark: i64,
    /// File position of `high_watermark` in the active segment.
    high_watermark_position: u64,
    /// Whether the active segment has writes that are not yet fsynced.
    dirty: bool,
    /// Set after a failed write or fsync: what is on disk is unknown, so the partition takes no more writes and its
    /// watermark stays put until a restart recovers it from the file.
    failed: bool,
}

/// What recovery found in a partition directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Bytes cut from the end of the active segment because they were not whole, valid batches.
    pub truncated_bytes: u64,
}

impl Log {
    /// Opens (or creates) the log in `dir`, checking the active segment batch by batch and cutting any torn or
    /// corrupt tail. Older segments were fsynced when they were closed and are trusted.
    pub fn open(dir: &Path, config: LogConfig) -> io::Result<(Log, Recovery)> {
        if !dir.exists() {
            fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent() {
                File::open(parent)?.sync_all()?;
            }
        }
        let mut bases = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(base) = name.strip_suffix(".log").and_then(|b| b.parse::<i64>().ok()) {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let mut segments = Vec::new();
        for (i, base) in bases.iter().enumerate() {
            let path = Segment::log_path(dir, *base);
            let active = i + 1 == bases.len();
            // Only the active segment keeps its file open; closed ones are opened when read.
            let (file, size) = if active {
                let file = OpenOptions::new().read(true).append(true).open(&path)?;
                let size = file.metadata()?.len();
                (Some(Arc::new(file)), size)
            } else {
                (None, fs::metadata(&path)?.len())
            };
            let next_offset = bases.get(i + 1).copied().unwrap_or(*base);
            segments.push(Segment {
                base: *base,
                file,
                path,
                size,
                next_offset,
                index: None,
                last_indexed: 0,
                max_timestamp: -1,
            });
        }
        if segments.is_empty() {
            segments.push(Segment::create(dir, 0)?);
            File::open(dir)?.sync_all()?;
        }
        let mut producers = match fs::read(Segment::snapshot_path(dir, segments.last().expect("one").base)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => Producers::default(),
        };
        let active = segments.last_mut().expect("at least one segment");
        // The active segment's index is rebuilt below; a saved one can only be left over from a roll a crash
        // interrupted, and is removed so it is never mistaken for the segment's index later.
        let _ = fs::remove_file(Segment::index_path(dir, active.base));
        let recovery = recover_active(active, &config, &mut producers)?;
        let (end, position) = (active.next_offset, active.size);
        Ok((
            Log {
                dir: dir.to_path_buf(),
                config,
                segments,
                producers,
                high_watermark: end,
                high_watermark_position: position,
                dirty: false,
                failed: false,
            },
            recovery,
        ))
    }

    /// How this log is kept: its segment size and retention (the broker's, with its topic's own limits applied).
    #[cfg(test)]
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The first offset still in the log.
    pub fn start_offset(&self) -> i64 {
        self.segments.first().map_or(0, |s| s.base)
    }

    /// The offset the next batch will get.
    pub fn end_offset(&self) -> i64 {
        self.segments.last().map_or(0, |s| s.next_offset)
    }

    /// Offsets below this are visible to readers.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Bytes in all segments.
    pub fn size(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Appends one checked batch, assigning it the next offsets, and returns its header with the assigned base
    /// offset. The write reaches the page cache; durability comes from [`Log::sync_target`] and a later fsync.
    /// With `visible_now`, readers see it at once (the policy that does not wait for fsync).
    pub fn append(&mut self, bytes: &[u8], visible_now: bool) -> io::Result<BatchHeader> {
        if self.failed {
            return Err(io::Error::other("an earlier write or fsync of this partition failed; restart to recover"));
        }
        let active = self.segments.last().expect("at least one segment");
        if active.size > 0 && active.size + bytes.len() as u64 > self.config.segment_bytes {
            self.roll()?;
        }
        let active = self.segments.last_mut().expect("at least one segment");
        let base = active.next_offset;
        let mut header = batch::parse_header(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        header.base_offset = base;
        let position = active.size;
        let file = active.file.as_ref().expect("the active segment keeps its file open");
        // The batch goes to disk with its new base offset in front of the producer's bytes, in one write and
        // without copying them.
        if let Err(error) = write_batch(file, base, &bytes[8..]) {
            // A short write would leave a torn batch in the middle of the log: cut it off before anything follows,
            // and if even that fails, take no more writes (recovery will cut it at the next start).
            if file.set_len(position).is_err() {
                self.failed = true;
            }
            return Err(error);
        }
        active.size += bytes.len() as u64;
        active.next_offset = header.next_offset();
        active.index_batch(&header, position, self.config.index_interval);
        self.producers.record(&header);
        self.dirty = true;
        if visible_now {
            self.high_watermark = active.next_offset;
            self.high_watermark_position = active.size;
        }
        Ok(header)
    }

    /// Closes the active segment (fsynced, so recovery can trust it) and starts a new one, writing the producer
    /// snapshot the new segment's recovery starts from.
    fn roll(&mut self) -> io::Result<()> {
        let active = self.segments.last().expect("at least one segment");
        let file = active.file.as_ref().expect("the active segment keeps its file open");
        if let Err(error) = file.sync_data() {
            // As in the flusher: after a failed fsync the disk's state is unknown, so take no more writes.
            self.failed = true;
            return Err(error);
        }
        if let Err(error) = active.save_index(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), "cannot save a segment index (it will be rebuilt when needed): {error}");
        }
        let base = active.next_offset;
        self.producers.prune(self.start_offset());
        let snapshot = Segment::snapshot_path(&self.dir, base);
        let temporary = snapshot.with_extension("snapshot.tmp");
        let mut file = File::create(&temporary)?;
        file.write_all(&serde_json::to_vec(&self.producers).map_err(io::Error::other)?)?;
        file.sync_all()?;
        fs::rename(&temporary, &snapshot)?;
        let next = Segment::create(&self.dir, base)?;
        // From now on the closed segment is opened when read; its file closes once no read or fsync holds it.
        self.segments.last_mut().expect("at least one segment").file = None;
        self.segments.push(next);
        File::open(&self.dir)?.sync_all()?;
        // Everything in the closed segment is on disk now, and the new one is empty.
        self.high_watermark = base;
        self.high_watermark_position = 0;
        self.dirty = false;
        Ok(())
    }

    /// What an fsync must cover for the log to be durable up to its end: `None` when it already is.
    pub fn sync_target(&self) -> Option<SyncTarget> {
        let active = self.segments.last().expect("at least one segment");
        (self.dirty && !self.failed).then(|| SyncTarget {
            file: active.file.clone().expect("the active segment keeps its file open"),
            base: active.base,
            end_offset: active.next_offset,
            position: active.size,
        })
    }

    /// Records that an fsync failed. Linux reports a writeback error only once, so a later fsync could succeed
    /// without the lost pages: the partition is fenced instead of retried.
    pub fn sync_failed(&mut self) {
        self.failed = true;
    }

    /// Records that `target` was fsynced: readers may see up to its end. Returns whether the watermark moved.
    pub fn synced(&mut self, target: &SyncTarget) -> bool {
        let active = self.segments.last().expect("at least one segment");
        if active.base != target.base {
            // The segment was closed meanwhile; closing synced it and moved the watermark.
            return false;
        }
        if active.next_offset == target.end_offset {
            self.dirty = false;
        }
        if target.end_offset <= self.high_watermark {
            return false;
        }
        self.high_watermark = target.end_offset;
        self.high_watermark_position = target.position;
        true
    }

    /// Plans a read starting at `offset`, up to the high watermark. `Ok(None)` when there is nothing to read yet.
    pub fn plan_read(&mut self, offset: i64) -> Result<Option<ReadPlan>, OutOfRange> {
        if offset < self.start_offset() || offset > self.end_offset() {
            return Err(OutOfRange);
        }
        if offset >= self.high_watermark {
            // Written but not yet durable (or exactly at the end): nothing to read yet, as Kafka answers.
            return Ok(None);
        }
        let interval = self.config.index_interval;
        let last = self.segments.len() - 1;
        let mut i = self.segments.partition_point(|s| s.base <= offset).saturating_sub(1);
        while i < last && offset >= self.segments[i].next_offset {
            i += 1;
        }
        let end = if i == last { self.high_watermark_position } else { self.segments[i].size };
        let segment = &mut self.segments[i];
        let (file, start) = segment.position_of(&self.dir, offset, interval).map_err(|_| OutOfRange)?;
        if start >= end {
            return Ok(None);
        }
        Ok(Some(ReadPlan { file, start, end }))
    }

    /// The offset (and largest timestamp) of the first visible batch whose records may have a timestamp at or
    /// after `timestamp`. Precision is one batch: records are never decompressed to look inside. Segments whose
    /// timestamps are all older are skipped without reading them, and within a segment the time index bounds
    /// the scan to about one index interval.
    pub fn offset_for_timestamp(&mut self, timestamp: i64) -> io::Result<Option<(i64, i64)>> {
        let visible = self.high_watermark;
        let interval = self.config.index_interval;
        for segment in &mut self.segments {
            if let Some(found) = segment.find_timestamp(&self.dir, timestamp, visible, interval)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Deletes whole closed segments past the size or age limit of this log's config (its topic's own limits where
    /// the topic has them, the broker-wide ones otherwise), oldest first, judging age as of `now`. Returns how many
    /// were deleted.
    pub fn enforce_retention(&mut self, now: SystemTime) -> io::Result<usize> {
        let mut deleted = 0;
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let too_big = self.config.retention_bytes.is_some_and(|limit| self.size() > limit);
            let modified = fs::metadata(&oldest.path)?.modified()?;
            let too_old =
                self.config.retention_age.is_some_and(|age| now.duration_since(modified).unwrap_or_default() > age);
            if !too_big && !too_old {
                break;
            }
            let oldest = self.segments.remove(0);
            fs::remove_file(&oldest.path)?;
            let _ = fs::remove_file(Segment::snapshot_path(&self.dir, oldest.base));
            let _ = fs::remove_file(Segment::index_path(&self.dir, oldest.base));
            deleted += 1;
        }
        Ok(deleted)
    }
}

/// The part of a log an fsync makes durable.
pub struct SyncTarget {
    pub file: Arc<File>,
    base: i64,
    end_offset: i64,
    position: u64,
}

/// Validates the active segment batch by batch, cuts what is not a whole valid batch, and replays producer state.
fn recover_active(active: &mut Segment, config: &LogConfig, producers: &mut Producers) -> io::Result<Recovery> {
    let file = active.file.clone().expect("the active segment keeps its file open");
    let file_size = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, &*file);
    reader.seek(SeekFrom::Start(0))?;
    let mut position = 0u64;
    let mut expected = active.base;
    let mut buffer = Vec::new();
    active.index = Some(Vec::new());
    active.last_indexed = 0;
    active.max_timestamp = -1;
    loop {
        let mut prefix = [0u8; LENGTH_PREFIX];
        if position + LENGTH_PREFIX as u64 > file_size || reader.read_exact(&mut prefix).is_err() {
            break;
        }
        let Ok(size) = batch::batch_size(&prefix) else { break };
        if position + size as u64 > file_size {
            break;
        }
        buffer.clear();
        buffer.extend_from_slice(&prefix);
        buffer.resize(size, 0);
        if reader.read_exact(&mut buffer[LENGTH_PREFIX..]).is_err() {
            break;
        }
        let header = match batch::check(&buffer) {
            Ok(header) if header.base_offset == expected => header,
            _ => break,
        };
        active.index_batch(&header, position, config.index_interval);
        producers.record(&header);
        expected = header.next_offset();
        position += size as u64;
    }
    let truncated_bytes = file_size - position;
    if truncated_bytes > 0 {
        file.set_len(position)?;
    }
    // What survived a crash may still be only in the page cache: make it durable before anyone can read it or be
    // told (as the answer to a retry) that it is written.
    file.sync_all()?;
    active.size = position;
    active.next_offset = expected;
    Ok(Recovery { truncated_bytes })
}

impl ReadPlan {
    /// The bytes between the planned start and the end of what may be read, without reading them.
    pub fn bytes_planned(&self) -> u64 {
        self.end - self.start
    }

    /// Reads whole batches from the planned start, at most `max_bytes` of them unless the first batch alone is
    /// bigger (then that batch, so a consumer can always make progress).
    pub fn read(&self, max_bytes: usize) -> io::Result<Vec<u8>> {
        let available = (self.end - self.start) as usize;
        let mut wanted = available.min(max_bytes.max(HEADER_LEN));
        let mut bytes = vec![0u8; wanted];
        self.file.read_exact_at(&mut bytes, self.start)?;
        let mut whole = 0;
        while whole + LENGTH_PREFIX <= bytes.len() {
            let size = batch::batch_size(&bytes[whole..]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if whole + size > bytes.len() {
                break;
            }
            whole += size;
        }
        if whole == 0 {
            // The first batch is larger than max_bytes: send it whole.
            let size = batch::batch_size(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            wanted = size.min(available);
            bytes.resize(wanted, 0);
            self.file.read_exact_at(&mut bytes, self.start)?;
            whole = wanted;
        }
        bytes.truncate(whole);
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::batch::tests::make_batch;
    use super::*;

    fn small() -> LogConfig {
        LogConfig { segment_bytes: 300, retention_bytes: None, retention_age: None, index_interval: 100 }
    }

    fn read_all(log: &mut Log, from: i64) -> Vec<BatchHeader> {
        let mut headers = Vec::new();
        let mut offset = from;
        while let Some(plan) = log.plan_read(offset).unwrap() {
            let bytes = plan.read(1 << 20).unwrap();
            let (_, found) = batch::valid_prefix(&bytes, bytes_base(&bytes));
            offset = found.last().unwrap().next_offset();
            headers.extend(found);
        }
        headers
    }

    fn bytes_base(bytes: &[u8]) -> i64 {
        i64::from_be_bytes(bytes[0..8].try_into().unwrap())
    }

    #[test]
    fn appended_batches_survive_reopening_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), small()).unwrap();
        for i in 0..20 {
            let batch = make_batch(0, &[format!("record {i}").as_bytes(), b"second"], (-1, -1, -1));
            log.append(&batch, true).unwrap();
        }
        assert!(log.segments.len() > 3, "small segments roll");
        drop(log);
        let (mut log, recovery) = Log::open(dir.path(), small()).unwrap();
        assert_eq!(recovery.truncated_bytes, 0);
        assert_eq!(log.end_offset(), 40);
        let headers = read_all(&mut log, 0);
        assert_eq!(headers.iter().map(|h| h.base_offset).collect::<Vec<_>>(), (0..40).step_by(2).collect::<Vec<_>>());
        assert_eq!(read_all(&mut log, 25).first().unwrap().base_offset, 24);
        // The closed segments' indexes were saved; a damaged one is rebuilt instead of trusted.
        let first_index = Segment::index_path(dir.path(), 0);
        assert!(first_index.exists());
        fs::write(&first_index, [0u8; 16 * 3]).unwrap();
        drop(log);
        let (mut log, _) = Log::open(dir.path(), small()).unwrap();
        assert_eq!(read_all(&mut log, 3).first().unwrap().base_offset, 2);
    }

    #[test]
    fn a_torn_tail_is_cut_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
        for _ in 0..3 {
            log.append(&make_batch(0, &[b"abc"], (-1, -1, -1)), true).unwrap();
        }
        let path = Segment::log_path(dir.path(), 0);
        let size = fs::metadata(&path).unwrap().len();
        drop(log);
        OpenOptions::new().write(true).open(&path).unwrap().set_len(size - 5).unwrap();
        let (log, recovery) = Log::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(log.end_offset(), 2);
        assert!(recovery.truncated_bytes > 0);
        assert_eq!(fs::metadata(&path).unwrap().len(), size * 2 / 3);
    }

    #[test]
    fn producer_state_survives_a_reopen_across_a_roll() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), small()).unwrap();
        for sequence in 0..10 {
            log.append(&make_batch(0, &[b"0123456789"], (5, 0, sequence)), true).unwrap();
        }
        drop(log);
        let (log, _) = Log::open(dir.path(), small()).unwrap();
        let retry = batch::parse_header(&make_batch(0, &[b"0123456789"], (5, 0, 9))).unwrap();
        assert_eq!(log.producers.judge(&retry, 0), producers::Verdict::Duplicate { base_offset: 9 });
    }

    #[test]
    fn retention_deletes_old_segments_but_never_the_active_one() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { retention_bytes: Some(400), ..small() };
        let (mut log, _) = Log::open(dir.path(), config).unwrap();
        for _ in 0..20 {
            log.append(&make_batch(0, &[b"0123456789"], (-1, -1, -1)), true).unwrap();
        }
        log.enforce_retention(SystemTime::now()).unwrap();
        assert!(log.size() <= 400 + 300);
        assert!(log.start_offset() > 0);
        assert_eq!(log.plan_read(0).err(), Some(OutOfRange));
        let start = log.start_offset();
        assert_eq!(read_all(&mut log, start).last().unwrap().next_offset(), 20);
    }

    #[test]
    fn unsynced_writes_stay_invisible_until_synced() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
        log.append(&make_batch(0, &[b"x"], (-1, -1, -1)), false).unwrap();
        assert!(log.plan_read(0).unwrap().is_none());
        let target = log.sync_target().unwrap();
        target.file.sync_data().unwrap();
        assert!(log.synced(&target));
        assert!(log.plan_read(0).unwrap().is_some());
    }
}
