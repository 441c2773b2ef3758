//! Unit tests of `records`: every rule, each codec, and the inflation bounds.

use proptest::prelude::*;

use super::build::{self, RawRecord};
use super::*;
use crate::batch::{check_batch, put_varlong};

const CODECS: [Codec; 4] = [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd];

fn rules() -> RecordRules {
    RecordRules {
        keys_required: false,
        max_inflated_bytes: 8 << 20,
    }
}

fn check(batch: &[u8], rules: &RecordRules) -> Result<(), RecordFault> {
    let header = check_batch(batch).expect("the builders write valid headers and CRCs");
    validate_records(batch, &header, rules)
}

fn sample() -> Vec<RawRecord> {
    vec![
        RawRecord::new(Some(b"k0"), b"first value"),
        RawRecord {
            timestamp_delta: -5,
            key: Some(Vec::new()),
            value: None,
            headers: vec![(b"h".to_vec(), Some(b"x".to_vec())), (Vec::new(), None)],
        },
        RawRecord::new(None, &[7u8; 300]),
    ]
}

fn invalid(fault: Result<(), RecordFault>) -> (i32, Problem) {
    match fault {
        Err(RecordFault::Invalid { index, problem }) => (index, problem),
        other => panic!("expected an invalid record, got {other:?}"),
    }
}

#[test]
fn well_formed_batches_of_every_codec_pass() {
    let records = sample();
    for codec in [
        None,
        Some(Codec::Gzip),
        Some(Codec::Snappy),
        Some(Codec::Lz4),
        Some(Codec::Zstd),
    ] {
        assert_eq!(
            check(&build::batch_of(&records, codec), &rules()),
            Ok(()),
            "{codec:?}"
        );
    }
    // snappy-java framing, as Java and kafka-python write it, with several blocks.
    let raw = build::encode_records(&records);
    let xerial = build::compress_xerial(&raw, 100);
    assert_eq!(check(&build::batch(&xerial, 3, 2), &rules()), Ok(()));
}

#[test]
fn the_record_count_must_match_the_records() {
    let raw = build::encode_records(&sample());
    assert_eq!(
        invalid(check(&build::batch(&raw, 4, 0), &rules())),
        (3, Problem::Truncated)
    );
    assert_eq!(
        invalid(check(&build::batch(&raw, 2, 0), &rules())),
        (2, Problem::TrailingBytes)
    );
    for codec in CODECS {
        let payload = build::compress(codec, &raw);
        let id = build::codec_id(Some(codec));
        assert_eq!(
            invalid(check(&build::batch(&payload, 5, id), &rules())),
            (3, Problem::Truncated),
            "{codec}"
        );
        assert_eq!(
            invalid(check(&build::batch(&payload, 1, id), &rules())),
            (1, Problem::TrailingBytes),
            "{codec}"
        );
    }
}

#[test]
fn offset_deltas_must_count_from_zero() {
    let records = sample();
    let mut raw = Vec::new();
    build::encode_record(&mut raw, 0, &records[0]);
    build::encode_record(&mut raw, 0, &records[1]);
    assert_eq!(
        invalid(check(&build::batch(&raw, 2, 0), &rules())),
        (1, Problem::OffsetDelta(0))
    );
    let zstd = build::compress(Codec::Zstd, &raw);
    assert_eq!(
        invalid(check(&build::batch(&zstd, 2, 4), &rules())),
        (1, Problem::OffsetDelta(0))
    );
}

/// A record body with every field given as raw varints, for lengths that lie.
fn record_with(length: Option<i64>, fields: &[i64], tail: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8]; // attributes
    put_varlong(&mut body, 0); // timestamp delta
    put_varlong(&mut body, 0); // offset delta
    for f in fields {
        put_varlong(&mut body, *f);
    }
    body.extend_from_slice(tail);
    let mut out = Vec::new();
    put_varlong(&mut out, length.unwrap_or(body.len() as i64));
    out.extend_from_slice(&body);
    out
}

#[test]
fn lengths_that_lie_are_invalid_records() {
    let cases: Vec<(Vec<u8>, Problem)> = vec![
        // A record length of 2^31 does not fit the varint's i32.
        (
            record_with(Some(1 << 31), &[-1, -1, 0], b""),
            Problem::Varint,
        ),
        (
            record_with(Some(i64::from(i32::MAX)), &[-1, -1, 0], b""),
            Problem::Length {
                declared: i32::MAX,
                read: 6,
            },
        ),
        (
            record_with(Some(-3), &[-1, -1, 0], b""),
            Problem::NegativeLength(-3),
        ),
        (
            record_with(Some(4), &[-1, -1, 0], b""),
            Problem::Length {
                declared: 4,
                read: 6,
            },
        ),
        // Key length -2 (only -1 means null).
        (
            record_with(None, &[-2, -1, 0], b""),
            Problem::FieldLength(-2),
        ),
        // A key longer than the record.
        (
            record_with(None, &[50, -1, 0], b"abc"),
            Problem::Length {
                declared: 9,
                read: 54,
            },
        ),
        (
            record_with(None, &[-1, -1, -1], b""),
            Problem::HeaderCount(-1),
        ),
        (
            record_with(None, &[-1, -1, 1_000_000], b""),
            Problem::HeaderCount(1_000_000),
        ),
        // A null header key.
        (
            record_with(None, &[-1, -1, 1, -1, -1], b""),
            Problem::HeaderKeyLength(-1),
        ),
        // Six continuation bytes are no varint.
        (vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x01], Problem::Varint),
        // 'g' as a varint is -52.
        (b"garbage!".to_vec(), Problem::NegativeLength(-52)),
        (vec![0x7e, 0], Problem::Truncated),
    ];
    for (raw, problem) in cases {
        let got = invalid(check(&build::batch(&raw, 1, 0), &rules()));
        assert_eq!(got, (0, problem), "{raw:02x?}");
        let lz4 = build::compress(Codec::Lz4, &raw);
        let got = invalid(check(&build::batch(&lz4, 1, 3), &rules()));
        assert_eq!(got, (0, problem), "lz4 {raw:02x?}");
    }
}

#[test]
fn compacted_topics_need_a_key_in_every_record() {
    let required = RecordRules {
        keys_required: true,
        ..rules()
    };
    for codec in [None, Some(Codec::Snappy), Some(Codec::Zstd)] {
        let batch = build::batch_of(&sample(), codec);
        let fault = check(&batch, &required).unwrap_err();
        assert_eq!(
            fault,
            RecordFault::KeyRequired { indexes: vec![2] },
            "{codec:?}"
        );
        assert_eq!(fault.error_code(), 87);
        // Every keyless record is reported, as Kafka does.
        let mut records = sample();
        records.push(RawRecord::new(None, b"also keyless"));
        records.push(RawRecord::new(Some(b"k"), b"keyed"));
        let fault = check(&build::batch_of(&records, codec), &required).unwrap_err();
        let indexes: Vec<i32> = fault.record_errors().iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, [2, 3], "{codec:?}");
        // An empty key is a key.
        let keyed = build::batch_of(&sample()[..2], codec);
        assert_eq!(check(&keyed, &required), Ok(()));
    }
}

#[test]
fn an_idempotent_batch_needs_a_base_sequence() {
    let batch = crate::testing::with_producer(build::batch_of(&sample(), None), 7, 0, -1);
    let fault = check(&batch, &rules()).unwrap_err();
    assert!(matches!(
        fault,
        RecordFault::Sequence {
            producer_id: 7,
            base_sequence: -1
        }
    ));
    assert_eq!(fault.error_code(), 87);
}

#[test]
fn corrupt_payloads_are_corrupt_messages() {
    let raw = build::encode_records(&sample());
    for codec in CODECS {
        let good = build::compress(codec, &raw);
        let id = build::codec_id(Some(codec));
        let mut variants = vec![
            ("truncated", good[..good.len() - 3].to_vec()),
            ("trailing byte", [&good[..], &[0]].concat()),
            ("garbage", b"certainly not compressed data".to_vec()),
            ("empty", Vec::new()),
        ];
        if codec == Codec::Gzip {
            // gzip checks a CRC-32 of what it inflates.
            let mut flipped = good.clone();
            let middle = flipped.len() / 2;
            flipped[middle] ^= 0xff;
            variants.push(("byte flipped", flipped));
        }
        for (what, payload) in variants {
            let fault = check(&build::batch(&payload, 3, id), &rules());
            let code = fault.as_ref().map_err(RecordFault::error_code);
            assert_eq!(code, Err(CORRUPT_MESSAGE), "{codec} {what}: {fault:?}");
        }
    }
    let fault = check(&build::batch(&raw, 3, 5), &rules()).unwrap_err();
    assert_eq!(fault, RecordFault::UnknownCodec(5));
    assert_eq!(fault.error_code(), CORRUPT_MESSAGE);
}

#[test]
fn snappy_blocks_may_not_declare_more_than_they_can_hold() {
    // A raw block declaring 1 GiB in a few bytes: refused before anything is allocated.
    let mut bomb = Vec::new();
    put_uvarint(&mut bomb, 1 << 30);
    bomb.extend_from_slice(&[0; 8]);
    let fault = check(&build::batch(&bomb, 1, 2), &rules()).unwrap_err();
    assert_eq!(fault.error_code(), CORRUPT_MESSAGE, "{fault}");
    // A block that really holds more than the budget: too large.
    let zeros = vec![0u8; 9 << 20];
    let one_block = build::compress(Codec::Snappy, &zeros);
    let fault = check(&build::batch(&one_block, 1, 2), &rules()).unwrap_err();
    assert_eq!(
        fault,
        RecordFault::TooLarge {
            codec: Codec::Snappy,
            max: 8 << 20
        }
    );
    // xerial blocks that add up to more than the budget.
    let mut raw = Vec::new();
    build::encode_record(&mut raw, 0, &RawRecord::new(None, &zeros));
    let framed = build::compress_xerial(&raw, 32 << 10);
    let fault = check(&build::batch(&framed, 1, 2), &rules()).unwrap_err();
    assert_eq!(fault.error_code(), MESSAGE_TOO_LARGE, "{fault}");
}

/// Snappy's length preamble: an unsigned little-endian base-128 varint.
fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[test]
fn inflating_stops_at_the_budget() {
    // One record whose value is 64 MiB of zeros: every codec but snappy compresses it
    // to a few hundred KiB; the budget stops the walk at 8 MiB with MESSAGE_TOO_LARGE.
    let mut raw = Vec::new();
    build::encode_record(&mut raw, 0, &RawRecord::new(None, &vec![0u8; 64 << 20]));
    for codec in [Codec::Gzip, Codec::Lz4, Codec::Zstd] {
        let payload = build::compress(codec, &raw);
        assert!(payload.len() < 1 << 20, "{codec}: {} bytes", payload.len());
        let fault = check(
            &build::batch(&payload, 1, build::codec_id(Some(codec))),
            &rules(),
        );
        assert_eq!(
            fault,
            Err(RecordFault::TooLarge {
                codec,
                max: 8 << 20
            })
        );
        // The same batch with a budget above its size passes.
        let roomy = RecordRules {
            max_inflated_bytes: 65 << 20,
            ..rules()
        };
        assert_eq!(
            check(
                &build::batch(&payload, 1, build::codec_id(Some(codec))),
                &roomy
            ),
            Ok(())
        );
    }
}

#[test]
fn zstd_windows_follow_the_budget() {
    assert_eq!(inflate_window_log(1), 10);
    assert_eq!(inflate_window_log(8 << 20), 23);
    assert_eq!(inflate_window_log((8 << 20) + 1), 24);
    assert_eq!(inflate_window_log(100 << 20), 27);
    assert_eq!(inflate_window_log(u64::MAX), 27);
}

fn inflate_window_log(max: u64) -> u32 {
    inflate::zstd_window_log(max)
}

fn arb_record() -> impl Strategy<Value = RawRecord> {
    let bytes = || proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40));
    (
        any::<i64>(),
        bytes(),
        bytes(),
        proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..8), bytes()),
            0..3,
        ),
    )
        .prop_map(|(timestamp_delta, key, value, headers)| RawRecord {
            timestamp_delta,
            key,
            value,
            headers,
        })
}

proptest! {
    /// What a client encodes correctly passes, whatever the codec.
    #[test]
    fn any_well_formed_batch_passes(
        records in proptest::collection::vec(arb_record(), 1..20),
        codec in proptest::option::of(proptest::sample::select(CODECS.to_vec())),
    ) {
        prop_assert_eq!(check(&build::batch_of(&records, codec), &rules()), Ok(()));
    }

    /// Any change to an uncompressed batch's record bytes is either refused or leaves
    /// records that the test decoder reads back, as many as the batch declares.
    #[test]
    fn mutated_records_are_refused_or_readable(
        records in proptest::collection::vec(arb_record(), 1..6),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut raw = build::encode_records(&records);
        for (at, byte) in edits {
            let i = at.index(raw.len());
            raw[i] = byte;
        }
        let batch = build::batch(&raw, records.len() as i32, 0);
        if check(&batch, &rules()).is_ok() {
            let decoded = crate::testing::decode_records(&batch);
            prop_assert_eq!(decoded.len(), records.len());
            for (i, r) in decoded.iter().enumerate() {
                prop_assert_eq!(r.offset, i as i64);
            }
        }
    }
}
