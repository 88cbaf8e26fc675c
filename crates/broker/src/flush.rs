//! Group commit: one thread fsyncs the partitions that were written to and then lets readers and `acks=all`
//! producers see the new data.
//!
//! Writes land in the page cache under the partition lock; the flusher takes what is pending, fsyncs outside any
//! lock (the partitions of a round in parallel, on a small pool of threads kept for that), and publishes the new
//! high watermark. Everything written while one fsync runs is covered by the next,
//! so many producers share each fsync. Under the `os` policy data is visible at once and fsynced every second.

use std::collections::HashSet;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::log::SyncTarget;
use super::meter::Meter;
use super::topics::Partition;

/// When produced data counts as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Readers and `acks=all` producers wait until the data is fsynced (group-committed). A crash loses nothing
    /// anyone was told about.
    Fsync,
    /// Data is visible once in the page cache and fsynced every second: faster, but an OS crash or power loss
    /// can lose the last second. A `kill -9` of the process alone loses nothing.
    Os,
}

/// How often the `os` policy fsyncs.
const OS_INTERVAL: Duration = Duration::from_secs(1);

/// The handle producers use to ask for an fsync.
#[derive(Clone)]
pub struct Flusher {
    queue: mpsc::Sender<Arc<Partition>>,
}

impl Flusher {
    /// Starts the flusher thread. `all` lists every partition, for the periodic fsync of the `os` policy and for
    /// the final one at shutdown. The thread ends when every `Flusher` clone is dropped.
    pub fn start(
        durability: Durability,
        meter: Arc<Meter>,
        all: impl Fn() -> Vec<Arc<Partition>> + Send + 'static,
    ) -> Flusher {
        let (queue, pending) = mpsc::channel::<Arc<Partition>>();
        let pool = Pool::start(&meter);
        std::thread::Builder::new()
            .name("franz-flusher".into())
            .spawn(move || {
                loop {
                    let first = match durability {
                        Durability::Fsync => pending.recv().map_err(|_| RecvTimeoutError::Disconnected),
                        Durability::Os => pending.recv_timeout(OS_INTERVAL),
                    };
                    let mut batch = match first {
                        Ok(partition) => vec![partition],
                        Err(RecvTimeoutError::Timeout) => all(),
                        Err(RecvTimeoutError::Disconnected) => {
                            sync_all(all(), &pool, &meter);
                            return;
                        }
                    };
                    batch.extend(pending.try_iter());
                    sync_all(batch, &pool, &meter);
                }
            })
            .expect("the flusher thread starts");
        Flusher { queue }
    }

    /// Asks for `partition` to be fsynced soon; its watermark moves when that is done.
    pub fn request(&self, partition: Arc<Partition>) {
        let _ = self.queue.send(partition);
    }
}

/// Threads that fsync the partitions of one round at once.
const SYNC_THREADS: usize = 8;

/// One fsync for the pool: the partition, what to sync, and where to say it is done.
type Job = (Arc<Partition>, SyncTarget, mpsc::Sender<()>);

/// The fsync threads, started once: spawning threads for every round would cost more than the fsyncs.
struct Pool {
    jobs: Option<mpsc::Sender<Job>>,
}

impl Pool {
    fn start(meter: &Arc<Meter>) -> Pool {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let mut started = 0;
        for i in 0..SYNC_THREADS {
            let queue = queue.clone();
            let meter = meter.clone();
            let spawned = std::thread::Builder::new().name(format!("franz-fsync-{i}")).spawn(move || {
                loop {
                    let job = queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv();
                    let Ok((partition, target, done)) = job else { return };
                    sync_one(&partition, &target, &meter);
                    let _ = done.send(());
                }
            });
            started += usize::from(spawned.is_ok());
        }
        // Without a single thread the flusher does every fsync itself, one after the other.
        Pool { jobs: (started > 0).then_some(jobs) }
    }
}

/// Fsyncs the partitions of a round, in parallel on the pool when there are several, so a round takes about as
/// long as its slowest fsync rather than the sum of them; each partition's watermark is published as it is done.
fn sync_all(batch: Vec<Arc<Partition>>, pool: &Pool, meter: &Meter) {
    let mut seen = HashSet::new();
    let mut due = Vec::new();
    for partition in batch {
        if !seen.insert(Arc::as_ptr(&partition)) {
            continue;
        }
        let target = partition.log().sync_target();
        if let Some(target) = target {
            due.push((partition, target));
        }
    }
    let Some(jobs) = pool.jobs.as_ref().filter(|_| due.len() > 1) else {
        for (partition, target) in &due {
            sync_one(partition, target, meter);
        }
        return;
    };
    let (done, finished) = mpsc::channel();
    let mut handed_out = 0;
    for (partition, target) in due {
        match jobs.send((partition, target, done.clone())) {
            Ok(()) => handed_out += 1,
            Err(mpsc::SendError((partition, target, _))) => sync_one(&partition, &target, meter),
        }
    }
    drop(done);
    for _ in 0..handed_out {
        if finished.recv().is_err() {
            break;
        }
    }
}

fn sync_one(partition: &Partition, target: &SyncTarget, meter: &Meter) {
    let started = Instant::now();
    let synced = target.file.sync_data();
    meter.fsync_seconds.observe(started.elapsed().as_secs_f64());
    match synced {
        Ok(()) => {
            let mut log = partition.log();
            log.synced(target);
            let high_watermark = log.high_watermark();
            drop(log);
            partition.publish(high_watermark);
        }
        Err(error) => {
            // The data stays invisible and unacknowledged (producers time out and retry elsewhere or later), and
            // the partition takes no more writes until a restart recovers it from what the disk really holds.
            partition.log().sync_failed();
            tracing::error!(
                topic = %partition.topic,
                partition = partition.index,
                "fsync failed; the partition takes no writes until the broker restarts: {error}"
            );
        }
    }
}
