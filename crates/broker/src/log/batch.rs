//! The v2 record batch as it sits on the wire and on disk: header parsing, validation and offset assignment.
//!
//! The broker stores batches exactly as producers send them. It reads only the fixed 61-byte header, checks the
//! CRC-32C over everything after the CRC field, and rewrites the base offset (which the CRC does not cover). It
//! never decompresses or re-encodes records; that is the clients' business.

/// Bytes of the fixed batch header, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` ends: base offset (8) and the length field (4). `batchLength` counts what follows.
pub const LENGTH_PREFIX: usize = 12;
/// Where the bytes covered by the CRC start (the attributes field).
const CRC_START: usize = 21;
/// Attribute bit of a transactional batch.
const TRANSACTIONAL: i16 = 0x10;
/// Attribute bit of a control batch (transaction markers).
const CONTROL: i16 = 0x20;

/// The fields of a batch header the broker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// The whole batch in bytes, header included.
    pub size: usize,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

/// Why bytes are not an acceptable batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("the batch is cut short")]
    Truncated,
    #[error("the batch length {0} is not a valid length")]
    BadLength(i32),
    #[error("magic byte {0}: only v2 record batches are supported")]
    UnsupportedMagic(i8),
    #[error("the CRC-32C does not match the batch")]
    CrcMismatch,
    #[error("the batch claims {count} records over {delta} offsets")]
    BadCount { count: i32, delta: i32 },
    #[error("transactional and control batches are not supported by franz's embedded broker")]
    Transactional,
    #[error("a produce request must carry exactly one record batch per partition")]
    NotOneBatch,
    #[error("the batch claims {count} records, more than its {bytes} bytes can hold")]
    TooManyRecords { count: i32, bytes: usize },
}

impl BatchHeader {
    /// The last offset in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The offset after the batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// The sequence number of the batch's last record (sequences wrap at `i32::MAX`).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return self.base_sequence;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        (last % (i64::from(i32::MAX) + 1)) as i32
    }

    /// Whether a producer that asked for idempotence wrote this batch.
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }
}

fn i16_at(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn i32_at(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

/// The size of the batch starting at `bytes` (its first 12 bytes are enough), or why it cannot be one.
pub fn batch_size(bytes: &[u8]) -> Result<usize, BatchError> {
    if bytes.len() < LENGTH_PREFIX {
        return Err(BatchError::Truncated);
    }
    let length = i32_at(bytes, 8);
    if length < (HEADER_LEN - LENGTH_PREFIX) as i32 {
        return Err(BatchError::BadLength(length));
    }
    Ok(LENGTH_PREFIX + length as usize)
}

/// Parses the header at the start of `bytes` without checking the CRC; `bytes` must hold at least the header.
pub fn parse_header(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let size = batch_size(bytes)?;
    if bytes.len() < HEADER_LEN {
        return Err(BatchError::Truncated);
    }
    let magic = bytes[16] as i8;
    if magic != 2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    Ok(BatchHeader {
        base_offset: i64_at(bytes, 0),
        size,
        magic,
        crc: u32::from_be_bytes(bytes[17..21].try_into().expect("four bytes")),
        attributes: i16_at(bytes, 21),
        last_offset_delta: i32_at(bytes, 23),
        base_timestamp: i64_at(bytes, 27),
        max_timestamp: i64_at(bytes, 35),
        producer_id: i64_at(bytes, 43),
        producer_epoch: i16_at(bytes, 51),
        base_sequence: i32_at(bytes, 53),
        records_count: i32_at(bytes, 57),
    })
}

/// Parses and fully checks the batch at the start of `bytes`: complete, v2, CRC-32C matching, counts sane.
pub fn check(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = parse_header(bytes)?;
    if bytes.len() < header.size {
        return Err(BatchError::Truncated);
    }
    if crc32c::crc32c(&bytes[CRC_START..header.size]) != header.crc {
        return Err(BatchError::CrcMismatch);
    }
    if header.records_count < 0
        || header.last_offset_delta < 0
        || i64::from(header.records_count) > i64::from(header.last_offset_delta) + 1
    {
        return Err(BatchError::BadCount { count: header.records_count, delta: header.last_offset_delta });
    }
    Ok(header)
}

/// Checks a produced batch: everything [`check`] does, and no transactional or control batch.
pub fn check_produced(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = check(bytes)?;
    if header.attributes & (TRANSACTIONAL | CONTROL) != 0 {
        return Err(BatchError::Transactional);
    }
    // A produced batch holds exactly one record per offset (only compaction, which franz does not do, leaves gaps).
    if header.last_offset_delta.checked_add(1) != Some(header.records_count) {
        return Err(BatchError::BadCount { count: header.records_count, delta: header.last_offset_delta });
    }
    // The count takes offsets, so it must be one the batch's bytes can hold: a record takes at least
    // MIN_RECORD_BYTES uncompressed, and compression is allowed MAX_COMPRESSION times that. Otherwise 61 bytes could
    // claim two billion records and move the partition's offsets by as much.
    let body = (header.size - HEADER_LEN) as u64;
    let room = match header.attributes & COMPRESSION {
        0 => body / MIN_RECORD_BYTES,
        _ => body * MAX_COMPRESSION / MIN_RECORD_BYTES,
    };
    if header.records_count < 1 || header.records_count as u64 > room {
        return Err(BatchError::TooManyRecords { count: header.records_count, bytes: header.size });
    }
    Ok(header)
}

/// The compression bits of a batch's attributes.
const COMPRESSION: i16 = 0x07;
/// The fewest bytes an uncompressed record takes: its length, attributes, timestamp and offset deltas, key and
/// value lengths, and header count, one byte each at least.
const MIN_RECORD_BYTES: u64 = 7;
/// How many times smaller than its records a compressed batch may be.
const MAX_COMPRESSION: u64 = 1024;

/// Checks a produce request's record set for one partition: exactly one whole, valid batch, as Kafka requires
/// of v2 record sets.
pub fn single_produced(records: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = check_produced(records)?;
    if header.size != records.len() {
        return Err(BatchError::NotOneBatch);
    }
    Ok(header)
}

/// The length of the longest prefix of `bytes` made of whole, valid batches with contiguous offsets starting at
/// `first_offset`, with the headers of those batches. Recovery keeps exactly this prefix (reading the file batch by
/// batch, in `log/mod.rs`); the tests hold logs and reads to this whole-buffer form.
#[cfg(test)]
pub fn valid_prefix(bytes: &[u8], first_offset: i64) -> (usize, Vec<BatchHeader>) {
    let mut at = 0;
    let mut expected = first_offset;
    let mut headers = Vec::new();
    while at < bytes.len() {
        match check(&bytes[at..]) {
            Ok(header) if header.base_offset == expected => {
                expected = header.next_offset();
                at += header.size;
                headers.push(header);
            }
            _ => break,
        }
    }
    (at, headers)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Regression: a 61-byte batch claiming 2^31-1 records (with a valid CRC) was accepted and moved the
    /// partition's offsets by two billion.
    #[test]
    fn a_batch_claiming_more_records_than_its_bytes_hold_is_refused() {
        let mut batch = make_batch(0, &[b"x"], (-1, -1, -1));
        assert!(single_produced(&batch).is_ok());
        batch[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
        batch[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(single_produced(&batch), Err(BatchError::TooManyRecords { .. })));
    }

    /// Builds a valid uncompressed batch of `count` records with the given values, as a producer would.
    pub fn make_batch(base_offset: i64, values: &[&[u8]], producer: (i64, i16, i32)) -> Vec<u8> {
        let mut records = Vec::new();
        for (delta, value) in values.iter().enumerate() {
            let mut body = Vec::new();
            body.push(0u8); // attributes
            put_varint(&mut body, 0); // timestamp delta
            put_varint(&mut body, delta as i64); // offset delta
            put_varint(&mut body, -1); // null key
            put_varint(&mut body, value.len() as i64);
            body.extend_from_slice(value);
            put_varint(&mut body, 0); // no headers
            put_varint(&mut records, body.len() as i64);
            records.extend_from_slice(&body);
        }
        let mut batch = Vec::new();
        batch.extend_from_slice(&base_offset.to_be_bytes());
        batch.extend_from_slice(&((HEADER_LEN - LENGTH_PREFIX + records.len()) as i32).to_be_bytes());
        batch.extend_from_slice(&0i32.to_be_bytes()); // leader epoch
        batch.push(2); // magic
        batch.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
        batch.extend_from_slice(&0i16.to_be_bytes());
        batch.extend_from_slice(&(values.len() as i32 - 1).to_be_bytes());
        batch.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        batch.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        batch.extend_from_slice(&producer.0.to_be_bytes());
        batch.extend_from_slice(&producer.1.to_be_bytes());
        batch.extend_from_slice(&producer.2.to_be_bytes());
        batch.extend_from_slice(&(values.len() as i32).to_be_bytes());
        batch.extend_from_slice(&records);
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    fn put_varint(out: &mut Vec<u8>, value: i64) {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        while zigzag >= 0x80 {
            out.push((zigzag as u8) | 0x80);
            zigzag >>= 7;
        }
        out.push(zigzag as u8);
    }

    #[test]
    fn a_well_formed_batch_passes_and_keeps_its_crc_after_offset_assignment() {
        let mut batch = make_batch(0, &[b"a", b"bc"], (-1, -1, -1));
        // The log writes its own base offset over the first 8 bytes; the CRC does not cover them.
        batch[0..8].copy_from_slice(&42i64.to_be_bytes());
        let header = check_produced(&batch).unwrap();
        assert_eq!((header.base_offset, header.next_offset(), header.records_count), (42, 44, 2));
    }

    #[test]
    fn a_flipped_bit_fails_the_crc() {
        let mut batch = make_batch(0, &[b"hello"], (-1, -1, -1));
        let last = batch.len() - 1;
        batch[last] ^= 1;
        assert_eq!(check(&batch), Err(BatchError::CrcMismatch));
    }

    #[test]
    fn transactional_batches_are_refused() {
        let mut batch = make_batch(0, &[b"x"], (7, 0, 0));
        batch[22] |= 0x10;
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(check_produced(&batch), Err(BatchError::Transactional));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        // Sequences i32::MAX - 1, i32::MAX, 0, as Kafka's DefaultRecordBatch.incrementSequence counts.
        let batch = make_batch(0, &[b"a", b"b", b"c"], (1, 0, i32::MAX - 1));
        assert_eq!(parse_header(&batch).unwrap().last_sequence(), 0);
    }

    proptest! {
        #[test]
        fn props_batch_checks_never_panic_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = check_produced(&bytes);
            let _ = single_produced(&bytes);
            let _ = valid_prefix(&bytes, 0);
        }

        #[test]
        fn props_a_log_cut_at_any_byte_keeps_exactly_its_whole_batches(
            sizes in proptest::collection::vec(1usize..5, 1..6),
            cut_fraction in 0.0f64..1.0,
        ) {
            let mut log = Vec::new();
            let mut ends = vec![0usize];
            let mut offset = 0i64;
            for count in &sizes {
                let values: Vec<Vec<u8>> = (0..*count).map(|i| vec![b'v'; i * 7 + 1]).collect();
                let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
                log.extend(make_batch(offset, &refs, (-1, -1, -1)));
                offset += *count as i64;
                ends.push(log.len());
            }
            let cut = (log.len() as f64 * cut_fraction) as usize;
            let (kept, headers) = valid_prefix(&log[..cut], 0);
            let whole = ends.iter().copied().filter(|end| *end <= cut).max().unwrap();
            prop_assert_eq!(kept, whole);
            prop_assert_eq!(headers.len(), ends.iter().filter(|end| **end <= cut).count() - 1);
        }
    }
}
