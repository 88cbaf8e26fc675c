//! Idempotent-producer state of one partition: which sequence numbers each producer id has written.
//!
//! A retried batch whose sequences match one of the producer's last five batches is a duplicate: the broker
//! answers with the offset it already has and writes nothing. A batch that skips sequences is refused. The state
//! is rebuilt on start-up from a snapshot written at each segment roll plus the headers of the active segment, so
//! it survives restarts and crashes without a separate write per batch.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::batch::BatchHeader;

/// How many recent batches per producer are remembered for duplicate detection (the client's in-flight limit).
const REMEMBERED: usize = 5;
/// Most producers remembered per partition; beyond it, those that wrote longest ago are forgotten.
pub const MAX_PRODUCERS: usize = 1_000;

/// One batch a producer wrote: its sequence range and where it landed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Written {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
    /// The batch's CRC-32C, so a retry (the same bytes) is told from another batch that claims the same
    /// sequences. 0 in snapshots written before it was kept: such a batch is taken for a retry, as then.
    #[serde(default)]
    pub crc: u32,
}

/// What the broker knows about one producer id in one partition.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Producer {
    pub epoch: i16,
    pub recent: VecDeque<Written>,
}

/// The verdict on a produced batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New data: append it.
    Append,
    /// A retry of a batch already in the log at this base offset: answer success, write nothing.
    Duplicate { base_offset: i64 },
    /// The batch does not follow the producer's last sequence.
    OutOfOrder { expected: i32 },
    /// The producer's epoch is older than one already seen: a newer instance took over.
    Fenced,
    /// Another batch with these very sequences is already in the log: not a retry of it (its bytes differ), so
    /// a client wrote under this producer's id. Acknowledging it as a retry would lose it silently.
    Conflict,
    /// The epoch is more than [`MAX_EPOCH_STEP`] past the newest one the broker granted or accepted for the id: a
    /// forged or confused batch, refused so that one batch cannot fence the producer that owns the id for good.
    EpochJump,
}

/// How far past the newest granted or accepted epoch a batch may raise a producer's epoch. Kafka lets an
/// idempotent producer raise its own epoch with a batch that starts its sequences again, and librdkafka does so by
/// one after some errors, each time it retries; a step this size covers that many refused retries in a row.
pub const MAX_EPOCH_STEP: i16 = 64;

/// Every producer that wrote to a partition.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Producers {
    pub by_id: HashMap<i64, Producer>,
}

/// Whether `epoch` is a valid epoch at most [`MAX_EPOCH_STEP`] past `current`.
fn within_step(epoch: i16, current: i16) -> bool {
    (0..=current.saturating_add(MAX_EPOCH_STEP)).contains(&epoch)
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX { 0 } else { sequence + 1 }
}

impl Producers {
    /// Judges a batch before it is appended. Batches without a producer id are always appended. `granted` is the
    /// newest epoch the broker granted or accepted for the batch's producer id in any partition (0 if none).
    pub fn judge(&self, header: &BatchHeader, granted: i16) -> Verdict {
        if !header.is_idempotent() {
            return Verdict::Append;
        }
        let Some(producer) = self.by_id.get(&header.producer_id) else {
            // Unknown producer (new, or its history was deleted by retention): any starting sequence is accepted,
            // but only with an epoch the broker hands out.
            return if within_step(header.producer_epoch, granted) { Verdict::Append } else { Verdict::EpochJump };
        };
        if header.producer_epoch < producer.epoch {
            return Verdict::Fenced;
        }
        if header.producer_epoch > producer.epoch {
            // A newer epoch starts its sequences again, and may not jump far past the newest one known.
            return match (within_step(header.producer_epoch, granted.max(producer.epoch)), header.base_sequence) {
                (false, _) => Verdict::EpochJump,
                (true, 0) => Verdict::Append,
                (true, _) => Verdict::OutOfOrder { expected: 0 },
            };
        }
        if let Some(written) = producer
            .recent
            .iter()
            .find(|w| w.first_sequence == header.base_sequence && w.last_sequence == header.last_sequence())
        {
            return match written.crc == header.crc || written.crc == 0 {
                true => Verdict::Duplicate { base_offset: written.base_offset },
                false => Verdict::Conflict,
            };
        }
        let expected = producer.recent.back().map_or(0, |w| next_sequence(w.last_sequence));
        if header.base_sequence == expected { Verdict::Append } else { Verdict::OutOfOrder { expected } }
    }

    /// Forgets producers whose last batch is no longer in the log (deleted by retention), and the oldest ones
    /// beyond [`MAX_PRODUCERS`], so the state cannot grow without bound. A forgotten producer that writes again is
    /// treated as new.
    pub fn prune(&mut self, log_start: i64) {
        let last = |p: &Producer| p.recent.back().map_or(i64::MIN, |w| w.base_offset);
        self.by_id.retain(|_, p| last(p) >= log_start);
        self.cap();
    }

    /// Forgets the producers that wrote longest ago beyond [`MAX_PRODUCERS`].
    fn cap(&mut self) {
        let last = |p: &Producer| p.recent.back().map_or(i64::MIN, |w| w.base_offset);
        if self.by_id.len() > MAX_PRODUCERS {
            let mut by_age: Vec<(i64, i64)> = self.by_id.iter().map(|(id, p)| (last(p), *id)).collect();
            by_age.sort_unstable();
            for (_, id) in &by_age[..by_age.len() - MAX_PRODUCERS] {
                self.by_id.remove(id);
            }
        }
    }

    /// Records a batch that is now in the log (its header carries the assigned base offset).
    pub fn record(&mut self, header: &BatchHeader) {
        if !header.is_idempotent() {
            return;
        }
        let producer = self.by_id.entry(header.producer_id).or_default();
        if header.producer_epoch != producer.epoch {
            producer.epoch = header.producer_epoch;
            producer.recent.clear();
        }
        producer.recent.push_back(Written {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            base_offset: header.base_offset,
            crc: header.crc,
        });
        while producer.recent.len() > REMEMBERED {
            producer.recent.pop_front();
        }
        // Bounded as it grows, not only at a segment roll; the slack makes the sort that caps it rare.
        if self.by_id.len() > MAX_PRODUCERS + MAX_PRODUCERS / 10 {
            self.cap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            size: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            records_count: count,
        }
    }

    #[test]
    fn a_retried_batch_is_a_duplicate_with_its_original_offset() {
        let mut producers = Producers::default();
        producers.record(&header(1, 0, 0, 3, 10));
        producers.record(&header(1, 0, 3, 2, 13));
        assert_eq!(producers.judge(&header(1, 0, 0, 3, 99), 0), Verdict::Duplicate { base_offset: 10 });
        assert_eq!(producers.judge(&header(1, 0, 5, 1, 99), 0), Verdict::Append);
    }

    /// Regression: a client that read a producer's id from the log wrote that producer's next sequence first; the
    /// producer's own batch was then taken for a retry, acknowledged and never written.
    #[test]
    fn a_different_batch_with_remembered_sequences_is_a_conflict_not_a_retry() {
        let mut producers = Producers::default();
        let mut forged = header(1, 0, 1, 1, 10);
        forged.crc = 0xbad;
        producers.record(&header(1, 0, 0, 1, 9));
        producers.record(&forged);
        let mut own = header(1, 0, 1, 1, 99);
        own.crc = 0x600d;
        assert_eq!(producers.judge(&own, 0), Verdict::Conflict);
        assert_eq!(producers.judge(&forged, 0), Verdict::Duplicate { base_offset: 10 }, "a real retry still is one");
    }

    #[test]
    fn producers_whose_batches_were_deleted_are_forgotten() {
        let mut producers = Producers::default();
        producers.record(&header(1, 0, 0, 1, 5));
        producers.record(&header(2, 0, 0, 1, 50));
        producers.prune(10);
        assert_eq!(producers.by_id.keys().copied().collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn a_sequence_gap_is_out_of_order() {
        let mut producers = Producers::default();
        producers.record(&header(1, 0, 0, 3, 0));
        assert_eq!(producers.judge(&header(1, 0, 4, 1, 0), 0), Verdict::OutOfOrder { expected: 3 });
    }

    #[test]
    fn an_older_epoch_is_fenced() {
        let mut producers = Producers::default();
        producers.record(&header(1, 2, 0, 1, 0));
        assert_eq!(producers.judge(&header(1, 1, 1, 1, 0), 2), Verdict::Fenced);
        assert_eq!(producers.judge(&header(1, 3, 0, 1, 0), 0), Verdict::Append, "a newer epoch starts at 0");
        assert_eq!(producers.judge(&header(1, 3, 5, 1, 0), 0), Verdict::OutOfOrder { expected: 0 });
    }

    /// Regression: a batch naming another producer's id with epoch 32767 raised that id's epoch, fencing the real
    /// producer (franz's own services included).
    #[test]
    fn a_forged_epoch_far_past_the_current_one_is_refused_and_does_not_fence_the_owner() {
        let mut producers = Producers::default();
        producers.record(&header(1, 0, 0, 1, 0));
        assert_eq!(producers.judge(&header(1, i16::MAX, 0, 1, 1), 0), Verdict::EpochJump);
        assert_eq!(producers.judge(&header(2, MAX_EPOCH_STEP + 1, 0, 1, 1), 0), Verdict::EpochJump);
        assert_eq!(producers.judge(&header(1, 0, 1, 1, 1), 0), Verdict::Append, "the owner writes on");
        // A producer's own bump (librdkafka raises its epoch by one when it retries after some errors) is fine.
        assert_eq!(producers.judge(&header(1, 3, 0, 1, 1), 0), Verdict::Append);
        assert_eq!(producers.judge(&header(2, 70, 0, 1, 1), 10), Verdict::Append, "measured from what was seen");
    }

    /// Regression: producer state was bounded only at a segment roll, so one segment's worth of distinct producer
    /// ids grew it without limit.
    #[test]
    fn producer_state_stays_bounded_between_rolls() {
        let mut producers = Producers::default();
        for id in 0..(MAX_PRODUCERS as i64 * 3) {
            producers.record(&header(id, 0, 0, 1, id));
            assert!(producers.by_id.len() <= MAX_PRODUCERS + MAX_PRODUCERS / 10 + 1);
        }
        assert!(producers.by_id.contains_key(&(MAX_PRODUCERS as i64 * 3 - 1)), "the newest is kept");
    }
}
