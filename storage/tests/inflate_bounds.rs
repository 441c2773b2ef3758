//! Decompression bombs (issue 14): a batch of about 1 MB whose records inflate to 1 GiB
//! is refused with MESSAGE_TOO_LARGE once its inflated bytes pass the budget (100 MiB,
//! the broker's default `socket.request.max.bytes`), and validating it never holds more
//! than a few MiB: a counting global allocator records the peak of live heap bytes.
//! The C decoders (zstd, lz4) allocate with malloc, which that allocator does not see, so
//! the test also reads the process's peak resident size (`VmHWM`, reset through
//! `/proc/self/clear_refs`). One test function, so no other test allocates at the same
//! time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use strata_storage::batch::{check_batch, put_varlong};
use strata_storage::records::build;
use strata_storage::records::{validate_records, Codec, RecordFault, RecordRules};

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// The only unsafe code here: forwarding to the system allocator unchanged.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: usize = 1 << 20;
const BUDGET: u64 = 100 * MIB as u64;

/// The start of one record whose value is `value_len` zero bytes (the zeros follow).
fn record_prefix(value_len: usize) -> Vec<u8> {
    let mut body = vec![0u8]; // attributes
    put_varlong(&mut body, 0); // timestamp delta
    put_varlong(&mut body, 0); // offset delta
    put_varlong(&mut body, -1); // null key
    put_varlong(&mut body, value_len as i64);
    let mut out = Vec::new();
    // The record's length counts the zeros and the header count after them.
    put_varlong(&mut out, (body.len() + value_len + 1) as i64);
    out.extend_from_slice(&body);
    out
}

/// The process's peak resident set (`VmHWM`) in bytes.
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Peak heap bytes (Rust allocations) and peak resident growth during one validation.
struct Peaks {
    heap: usize,
    rss: usize,
}

/// Validates `batch` with the broker's default budget.
fn validate_measured(batch: &[u8]) -> (Result<(), RecordFault>, Peaks) {
    let header = check_batch(batch).expect("valid header and CRC");
    let rules = RecordRules {
        keys_required: false,
        max_inflated_bytes: BUDGET,
    };
    // "5" resets the peak resident set to the current one (Linux 4.0+).
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    let rss_before = peak_rss();
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let result = validate_records(batch, &header, &rules);
    let peaks = Peaks {
        heap: PEAK.load(Ordering::Relaxed) - before,
        rss: peak_rss().saturating_sub(rss_before),
    };
    (result, peaks)
}

#[test]
fn bombs_are_refused_without_inflating_them_into_memory() {
    // gzip: 1 GiB of zeros as 1,024 members of 1 MiB each (Java's GZIPInputStream, like
    // this decoder, reads members back to back).
    let gib = 1 << 30;
    let zeros = vec![0u8; MIB];
    let mut gzip = build::compress(Codec::Gzip, &record_prefix(gib));
    // (Deflate's best ratio, about 1000:1, needs the best compression level.)
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&zeros).unwrap();
    let member = e.finish().unwrap();
    for _ in 0..1024 {
        gzip.extend_from_slice(&member);
    }
    // zstd: the same with frames.
    let mut zstd = build::compress(Codec::Zstd, &record_prefix(gib));
    let frame = build::compress(Codec::Zstd, &zeros);
    for _ in 0..1024 {
        zstd.extend_from_slice(&frame);
    }
    // lz4: one frame (its ratio is at most ~250, so 256 MiB fits in about 1 MB), with
    // the largest blocks a frame may declare (4 MiB).
    let mut encoder = lz4::EncoderBuilder::new()
        .block_size(lz4::BlockSize::Max4MB)
        .build(Vec::new())
        .unwrap();
    encoder.write_all(&record_prefix(256 * MIB)).unwrap();
    for _ in 0..256 {
        encoder.write_all(&zeros).unwrap();
    }
    let (lz4, done) = encoder.finish();
    done.unwrap();

    // zstd again, with the largest window accepted (2^27, zstd's and Kafka's default
    // limit) and no content size: the decoder's window buffer is the one thing that
    // grows with the inflated bytes, up to the window.
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    encoder.window_log(27).unwrap();
    encoder.include_contentsize(false).unwrap();
    encoder.write_all(&record_prefix(256 * MIB)).unwrap();
    for _ in 0..256 {
        encoder.write_all(&zeros).unwrap();
    }
    let zstd_wide = encoder.finish().unwrap();
    drop(zeros);

    for (what, codec, payload, rss_limit) in [
        ("gzip", Codec::Gzip, gzip, 8 * MIB),
        ("zstd", Codec::Zstd, zstd, 8 * MIB),
        ("lz4, 4 MiB blocks", Codec::Lz4, lz4, 16 * MIB),
        ("zstd, 2^27 window", Codec::Zstd, zstd_wide, 136 * MIB),
    ] {
        let batch = build::batch(&payload, 1, build::codec_id(Some(codec)));
        assert!(
            batch.len() < 2 * MIB,
            "{what}: a {} byte batch",
            batch.len()
        );
        let started = std::time::Instant::now();
        let (result, peaks) = validate_measured(&batch);
        assert_eq!(
            result,
            Err(RecordFault::TooLarge { codec, max: BUDGET }),
            "{what}"
        );
        eprintln!(
            "{what}: batch {} bytes, refused after {:?}; peak heap {} KiB, peak resident \
             growth {} KiB",
            batch.len(),
            started.elapsed(),
            peaks.heap >> 10,
            peaks.rss >> 10
        );
        assert!(peaks.heap < 2 * MIB, "{what}: {} heap bytes", peaks.heap);
        assert!(
            peaks.rss < rss_limit,
            "{what}: resident set grew by {} bytes",
            peaks.rss
        );
    }

    // snappy: no block inflates to more than 22 times its size, so a raw block that
    // claims 1 GiB is refused before anything is allocated for it...
    let mut claim = Vec::new();
    let mut n = 1u64 << 30;
    while n >= 0x80 {
        claim.push(n as u8 | 0x80);
        n >>= 7;
    }
    claim.push(n as u8);
    claim.extend_from_slice(&[0; 64]);
    let (result, peaks) = validate_measured(&build::batch(&claim, 1, 2));
    assert_eq!(result.map_err(|f| f.error_code()), Err(2));
    assert!(peaks.heap < MIB, "snappy claim: {} bytes", peaks.heap);
    // ...and snappy-java blocks are inflated one at a time.
    let mut raw = record_prefix(64 * MIB);
    raw.resize(raw.len() + 64 * MIB, 0);
    raw.push(0); // no headers
    let framed = build::compress_xerial(&raw, 32 << 10);
    drop(raw);
    let (result, peaks) = validate_measured(&build::batch(&framed, 1, 2));
    assert_eq!(result, Ok(()), "64 MiB is within the budget");
    assert!(peaks.heap < 2 * MIB, "xerial: {} bytes", peaks.heap);
}
