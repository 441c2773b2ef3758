//! Record validation (`strata_storage::records::validate_records`), structure-aware: the
//! input describes records (keys, values, headers, timestamp deltas, offset deltas), a
//! codec, a declared record count that may lie, edits to the encoded records before
//! compression and to the compressed payload after it, the compacted-topic rule and an
//! inflated-size budget. The batch is built with a valid CRC, so every input reaches the
//! record walk and the decoders.
//!
//! Checked, besides never panicking (and, under libFuzzer's -malloc_limit_mb, never making
//! a huge allocation):
//! - a batch built without any lie (no edits, offset deltas 0..n, the true count, keys
//!   where required, inflated size within the budget) is accepted;
//! - an accepted batch is readable by an independent decoder (kafka-protocol's
//!   `RecordBatchDecoder`): as many records as the batch declares, at offsets 0..n, each
//!   with a key when keys are required;
//! - a refusal carries INVALID_RECORD, CORRUPT_MESSAGE or MESSAGE_TOO_LARGE.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use strata_storage::batch::check_batch;
use strata_storage::records::build::{self, RawRecord};
use strata_storage::records::{validate_records, Codec, RecordRules};

#[derive(Arbitrary, Debug)]
struct Input {
    records: Vec<FuzzRecord>,
    codec: FuzzCodec,
    /// Added to the true record count in the header.
    count_lie: i8,
    keys_required: bool,
    /// Applied to the encoded records before compression.
    record_edits: Vec<Edit>,
    /// Applied to the compressed payload.
    payload_edits: Vec<Edit>,
    /// The inflated-size budget, in KiB (1 to 1,024).
    budget_kib: u16,
}

#[derive(Arbitrary, Debug)]
struct FuzzRecord {
    timestamp_delta: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Overrides the offset delta (otherwise the record's index).
    offset_delta: Option<i32>,
    /// Repeats the value this many times (compressible bulk, to reach the budget).
    repeat: u8,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzCodec {
    None,
    Gzip,
    Snappy,
    /// snappy-java framing with blocks of at most this many input bytes (+1).
    SnappyJava(u8),
    Lz4,
    Zstd,
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Set { at: u16, byte: u8 },
    Insert { at: u16, bytes: Vec<u8> },
    Remove { at: u16, len: u8 },
    Truncate { keep: u16 },
}

fn apply(edits: &[Edit], bytes: &mut Vec<u8>) {
    for edit in edits {
        let len = bytes.len();
        match edit {
            Edit::Set { at, byte } if len > 0 => bytes[usize::from(*at) % len] = *byte,
            Edit::Insert { at, bytes: new } => {
                let at = usize::from(*at) % (len + 1);
                bytes.splice(at..at, new.iter().copied());
            }
            Edit::Remove { at, len: n } if len > 0 => {
                let at = usize::from(*at) % len;
                let end = (at + usize::from(*n)).min(len);
                bytes.drain(at..end);
            }
            Edit::Truncate { keep } => bytes.truncate(usize::from(*keep)),
            _ => {}
        }
    }
}

fuzz_target!(|input: Input| {
    let mut raw = Vec::new();
    let mut lied = !input.record_edits.is_empty() || !input.payload_edits.is_empty();
    lied |= input.count_lie != 0;
    for (i, r) in input.records.iter().enumerate() {
        let value = r
            .value
            .as_ref()
            .map(|v| v.repeat(usize::from(r.repeat) + 1));
        let record = RawRecord {
            timestamp_delta: r.timestamp_delta,
            key: r.key.clone(),
            value,
            headers: r.headers.clone(),
        };
        let delta = r.offset_delta.unwrap_or(i as i32);
        lied |= delta != i as i32;
        lied |= input.keys_required && r.key.is_none();
        build::encode_record(&mut raw, delta, &record);
    }
    let budget = (u64::from(input.budget_kib) % 1024 + 1) * 1024;
    let inflated = raw.len() as u64;
    apply(&input.record_edits, &mut raw);
    let (codec, mut payload) = match input.codec {
        FuzzCodec::None => (None, raw),
        FuzzCodec::Gzip => (Some(Codec::Gzip), build::compress(Codec::Gzip, &raw)),
        FuzzCodec::Snappy => (Some(Codec::Snappy), build::compress(Codec::Snappy, &raw)),
        FuzzCodec::SnappyJava(block) => (
            Some(Codec::Snappy),
            build::compress_xerial(&raw, usize::from(block) + 1),
        ),
        FuzzCodec::Lz4 => (Some(Codec::Lz4), build::compress(Codec::Lz4, &raw)),
        FuzzCodec::Zstd => (Some(Codec::Zstd), build::compress(Codec::Zstd, &raw)),
    };
    lied |= codec.is_some() && inflated > budget;
    apply(&input.payload_edits, &mut payload);
    let count = (input.records.len() as i32).saturating_add(i32::from(input.count_lie));
    if count <= 0 {
        return; // the header check refuses it before records matter
    }
    let batch = build::batch(&payload, count, build::codec_id(codec));
    let header = check_batch(&batch).expect("the builder writes a valid header and CRC");
    let rules = RecordRules {
        keys_required: input.keys_required,
        max_inflated_bytes: budget,
    };
    let verdict = validate_records(&batch, &header, &rules);
    match &verdict {
        Ok(()) => read_back(&batch, &payload, count, input.keys_required),
        Err(fault) => {
            assert!([2, 10, 87].contains(&fault.error_code()), "{fault:?}");
            assert!(lied, "a batch without a lie was refused: {fault}");
        }
    }
});

/// An accepted batch must decode with kafka-protocol into `count` records at offsets
/// 0..count.
fn read_back(batch: &[u8], payload: &[u8], count: i32, keys_required: bool) {
    // kafka-protocol reads snappy-java framing only with versions 1/1 in its header;
    // Strata (like librdkafka) needs only the magic.
    if payload.starts_with(b"\x82SNAPPY\x00")
        && !payload.starts_with(b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01")
    {
        return;
    }
    let mut bytes = bytes::Bytes::copy_from_slice(batch);
    let records = match kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes) {
        Ok(set) => set.records,
        // kafka-protocol requires UTF-8 header keys; Kafka does not.
        Err(e) if format!("{e:#}").to_lowercase().contains("utf") => return,
        Err(e) => panic!("accepted, but kafka-protocol cannot decode it: {e:#}"),
    };
    assert_eq!(records.len(), count as usize, "records decoded");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, i as i64, "offset of record {i}");
        assert!(!keys_required || r.key.is_some(), "record {i} has no key");
    }
}
