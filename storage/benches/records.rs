//! Record validation (`strata_storage::records`) alone, on one batch of 1,024 records of
//! ~1 KiB (8-byte key, 1,000-byte value of text-like bytes that compress about 2:1), beside
//! what the produce path already paid before it: the batch's CRC-32C.
//!
//! - `crc32c`: `batch::check_batch` (header + CRC), the baseline.
//! - `validate/none`: `check_batch` + `validate_records` of the uncompressed batch.
//! - `validate/<codec>`: `check_batch` + `validate_records` of the batch compressed with
//!   gzip, snappy (raw and snappy-java framed), lz4 or zstd, as clients compress.
//!
//! Throughput is counted in uncompressed record bytes, so the figures compare directly.
//!
//! Run: `cargo bench -p strata-storage --bench records -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata_storage::batch::check_batch;
use strata_storage::records::build::{self, RawRecord};
use strata_storage::records::{validate_records, Codec, RecordRules};

const RECORDS: usize = 1024;
const VALUE: usize = 1000;

fn records() -> Vec<RawRecord> {
    let mut state: u32 = 0x1234_5678;
    (0..RECORDS)
        .map(|i| {
            let value: Vec<u8> = (0..VALUE)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    b"abcdefghijklmnop"[(state >> 28) as usize]
                })
                .collect();
            RawRecord::new(Some(format!("key{i:05}").as_bytes()), &value)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let records = records();
    let raw = build::encode_records(&records);
    let rules = RecordRules {
        keys_required: false,
        max_inflated_bytes: 100 << 20,
    };
    let mut group = c.benchmark_group("records");
    group.throughput(Throughput::Bytes(raw.len() as u64));

    let plain = build::batch_of(&records, None);
    group.bench_function("crc32c", |b| {
        b.iter(|| check_batch(&plain).unwrap());
    });
    let mut batches = vec![("none", plain.clone())];
    for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
        batches.push((codec_name(codec), build::batch_of(&records, Some(codec))));
    }
    let xerial = build::compress_xerial(&raw, 32 << 10);
    batches.push(("snappy-java", build::batch(&xerial, RECORDS as i32, 2)));
    for (name, batch) in &batches {
        group.bench_with_input(BenchmarkId::new("validate", name), batch, |b, batch| {
            b.iter(|| {
                let header = check_batch(batch).unwrap();
                validate_records(batch, &header, &rules).unwrap();
            });
        });
    }
    group.finish();
}

fn codec_name(codec: Codec) -> &'static str {
    match codec {
        Codec::Gzip => "gzip",
        Codec::Snappy => "snappy",
        Codec::Lz4 => "lz4",
        Codec::Zstd => "zstd",
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
