//! Producer ids and epochs for idempotent producers: which ids this data directory handed out, and which epoch of
//! each id is the current one.
//!
//! Ids are reserved on disk a block at a time, so an id is never given out twice, even across crashes, and carry
//! random low bits, so they cannot be guessed. An epoch
//! rises when a client that holds the id asks to bump it (KIP-360), naming the id and its current epoch, or when
//! the producer raises it itself with a batch that starts its sequences again (as Kafka allows and librdkafka
//! does). The newest epoch of each id is remembered, so a batch that jumps far past it is refused and no client
//! can fence another for good with one made-up epoch. This module does no network I/O and knows nothing of
//! partitions beyond the epochs handed to it.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Ids are reserved on disk this many at a time.
const BLOCK: i64 = 1000;
/// An id is a sequence number (reserved on disk) above this many random bits. Without them ids would be 0, 1,
/// 2, ..., and any client could write as another by guessing its id (the protocol has no authentication): the
/// broker checks only the sequence part, so an id with other random bits is another producer, not the owner.
const RANDOM_BITS: u32 = 31;
/// Most ids whose epoch (above 0) is remembered; beyond it the smallest ids are forgotten, and their producers
/// are treated as at epoch 0 (a bump then gets a fresh id, and a batch with the old epoch is refused).
const MAX_BUMPED: usize = 100_000;

/// The ids handed out and the current epoch of each.
pub struct ProducerIds {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    /// The next id to hand out, and the end of the block reserved on disk.
    next: i64,
    reserved_end: i64,
    /// The current epoch of each id whose epoch is above 0.
    epochs: HashMap<i64, i16>,
}

/// What an InitProducerId gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub id: i64,
    pub epoch: i16,
}

impl ProducerIds {
    /// Opens the reservation file at `path`; `epochs` are the epochs the logs' producer state remembers.
    pub fn open(path: &Path, epochs: HashMap<i64, i16>) -> io::Result<ProducerIds> {
        let next = match fs::read_to_string(path) {
            Ok(text) => text
                .trim()
                .parse::<i64>()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => 0,
            Err(error) => return Err(error),
        };
        let mut epochs: HashMap<i64, i16> =
            epochs.into_iter().filter(|(id, epoch)| *epoch > 0 && issued_below(*id, next)).collect();
        cap(&mut epochs);
        Ok(ProducerIds { path: path.to_path_buf(), state: Mutex::new(State { next, reserved_end: next, epochs }) })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `id` could have been handed out by this data directory: its sequence part was reserved. (Ids of
    /// franz before random bits were small numbers, whose sequence part is 0.)
    pub fn issued(&self, id: i64) -> bool {
        issued_below(id, self.lock().next)
    }

    /// The newest epoch granted or accepted for `id` (0 if none above 0).
    pub fn epoch(&self, id: i64) -> i16 {
        self.lock().epochs.get(&id).copied().unwrap_or(0)
    }

    /// Records that a batch of `id` at `epoch` was accepted: a producer may raise its own epoch (Kafka allows it
    /// for idempotent producers, and librdkafka does it), and later jumps are measured from the newest.
    pub fn observe(&self, id: i64, epoch: i16) {
        let mut state = self.lock();
        let current = state.epochs.entry(id).or_insert(0);
        *current = epoch.max(*current);
        cap(&mut state.epochs);
    }

    /// Answers an InitProducerId. A request naming an id this directory handed out, with that id's current epoch,
    /// bumps the epoch (KIP-360: a producer recovering from an error keeps its id). Anything else, including a
    /// request that names an id it does not hold or an epoch that is not current, or an epoch about to run out,
    /// gets a fresh id at epoch 0.
    pub fn grant(&self, asked: Option<(i64, i16)>) -> io::Result<Grant> {
        let mut state = self.lock();
        if let Some((id, epoch)) = asked
            && issued_below(id, state.next)
            && epoch == state.epochs.get(&id).copied().unwrap_or(0)
            && epoch < i16::MAX - 1
        {
            state.epochs.insert(id, epoch + 1);
            cap(&mut state.epochs);
            return Ok(Grant { id, epoch: epoch + 1 });
        }
        if state.next == state.reserved_end {
            let end = state.reserved_end + BLOCK;
            let temporary = self.path.with_extension("tmp");
            let mut file = fs::File::create(&temporary)?;
            file.write_all(end.to_string().as_bytes())?;
            file.sync_all()?;
            fs::rename(&temporary, &self.path)?;
            if let Some(dir) = self.path.parent() {
                fs::File::open(dir)?.sync_all()?;
            }
            state.reserved_end = end;
        }
        let sequence = state.next;
        state.next += 1;
        let random = (uuid::Uuid::new_v4().as_u128() as i64) & ((1 << RANDOM_BITS) - 1);
        Ok(Grant { id: (sequence << RANDOM_BITS) | random, epoch: 0 })
    }
}

/// Whether `id`'s sequence part is below `next` (reserved, so possibly handed out).
fn issued_below(id: i64, next: i64) -> bool {
    id >= 0 && (id >> RANDOM_BITS) < next
}

/// Keeps the remembered epochs within [`MAX_BUMPED`], forgetting the oldest (smallest) ids first.
fn cap(epochs: &mut HashMap<i64, i16>) {
    if epochs.len() > MAX_BUMPED {
        let mut ids: Vec<i64> = epochs.keys().copied().collect();
        ids.sort_unstable();
        for id in &ids[..ids.len() - MAX_BUMPED] {
            epochs.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_handed_out_twice_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("producer-ids");
        let ids = ProducerIds::open(&path, HashMap::new()).unwrap();
        let first = ids.grant(None).unwrap();
        let second = ids.grant(None).unwrap();
        assert_eq!((first.id >> RANDOM_BITS, second.id >> RANDOM_BITS, first.epoch), (0, 1, 0));
        assert!(ids.issued(first.id) && ids.issued(second.id));
        assert!(!ids.issued(2 << RANDOM_BITS) && !ids.issued(-1));
        drop(ids);
        let ids = ProducerIds::open(&path, HashMap::new()).unwrap();
        assert!(ids.grant(None).unwrap().id >> RANDOM_BITS >= 2);
    }

    #[test]
    fn ids_carry_random_bits_so_no_client_can_guess_another_ones() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(&dir.path().join("producer-ids"), HashMap::new()).unwrap();
        let granted: std::collections::HashSet<i64> =
            (0..50).map(|_| ids.grant(None).unwrap().id & ((1 << RANDOM_BITS) - 1)).collect();
        assert!(granted.len() > 40, "the low bits differ from id to id: {granted:?}");
    }

    #[test]
    fn only_the_current_epoch_of_a_handed_out_id_is_bumped() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(&dir.path().join("producer-ids"), HashMap::new()).unwrap();
        let mine = ids.grant(None).unwrap();
        assert_eq!(ids.grant(Some((mine.id, 0))).unwrap(), Grant { id: mine.id, epoch: 1 });
        assert_eq!(ids.epoch(mine.id), 1);
        // A stale epoch, a made-up one, or an id never handed out: a fresh id instead.
        for asked in [(mine.id, 0), (mine.id, 7), (mine.id, i16::MAX - 1), (999_999 << RANDOM_BITS, 0)] {
            let granted = ids.grant(Some(asked)).unwrap();
            assert_ne!(granted.id, mine.id, "{asked:?}");
            assert_eq!(granted.epoch, 0);
        }
        assert_eq!(ids.epoch(mine.id), 1, "refused asks change nothing");
    }

    #[test]
    fn epochs_remembered_by_the_logs_stay_current_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("producer-ids");
        let ids = ProducerIds::open(&path, HashMap::new()).unwrap();
        let mine = ids.grant(None).unwrap();
        drop(ids);
        let never = 5_000_000 << RANDOM_BITS;
        let ids = ProducerIds::open(&path, HashMap::from([(mine.id, 3), (never, 9)])).unwrap();
        assert_eq!(ids.epoch(mine.id), 3);
        assert_eq!(ids.epoch(never), 0, "an id never handed out has no epoch");
        assert_eq!(ids.grant(Some((mine.id, 3))).unwrap(), Grant { id: mine.id, epoch: 4 });
    }
}
