//! Group commit: one thread fsyncs the partitions that were written to and then lets readers and `acks=all`
//! producers see the new data.
//!
//! Writes land in the page cache under the partition lock; the flusher takes what is pending, fsyncs outside any
//! lock, and publishes the new high watermark. Everything written while one fsync runs is covered by the next,
//! so many producers share each fsync. Under the `os` policy data is visible at once and fsynced every second.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use super::log::SyncTarget;
use super::topics::Partition;

/// When produced data counts as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Readers and `acks=all` producers wait until the data is fsynced (group-committed). A crash loses nothing
    /// anyone was told about.
    Fsync,
    /// Data is visible once in the page cache and fsynced every second: faster, but an OS crash or power loss
    /// can lose the last second. A `kill -9` of franz alone loses nothing.
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
    pub fn start(durability: Durability, all: impl Fn() -> Vec<Arc<Partition>> + Send + 'static) -> Flusher {
        let (queue, pending) = mpsc::channel::<Arc<Partition>>();
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
                            sync_all(all());
                            return;
                        }
                    };
                    batch.extend(pending.try_iter());
                    sync_all(batch);
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

/// How many fsyncs of one round run at once.
const PARALLEL_SYNCS: usize = 16;

/// Fsyncs the partitions of a round in parallel (up to [`PARALLEL_SYNCS`] threads), so a round takes about as long
/// as its slowest fsync rather than the sum of them, then publishes each new watermark.
fn sync_all(batch: Vec<Arc<Partition>>) {
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
    for chunk in due.chunks(PARALLEL_SYNCS) {
        std::thread::scope(|scope| {
            for (partition, target) in chunk {
                let spawned = std::thread::Builder::new().spawn_scoped(scope, move || sync_one(partition, target));
                if spawned.is_err() {
                    // No thread to spare: do it here, only slower.
                    sync_one(partition, target);
                }
            }
        });
    }
}

fn sync_one(partition: &Partition, target: &SyncTarget) {
    match target.file.sync_data() {
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
                "fsync failed; the partition takes no writes until franz restarts: {error}"
            );
        }
    }
}
