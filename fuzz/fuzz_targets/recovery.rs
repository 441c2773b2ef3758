//! Segment recovery: the input is the whole `.log` file of a partition with no checkpoint
//! (so every batch is validated). `Log::open` must not panic or fail, and everything it
//! then serves must be whole batches that pass their CRC, with dense offsets from 0, equal
//! to the file's own bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_storage::batch::check_batch;
use strata_storage::{Flusher, Log, LogConfig};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("p-0");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::write(part.join("00000000000000000000.log"), data).unwrap();
    let flusher = Flusher::start();
    let log = Log::open(&part, LogConfig::default(), &flusher).expect("open recovers");
    let end = log.log_end_offset();
    let mut served = Vec::new();
    let mut offset = 0i64;
    while offset < end {
        let read = log.read(offset, 1 << 20, end).expect("read");
        let mut rest = &read.records[..];
        assert!(!rest.is_empty());
        while !rest.is_empty() {
            let h = check_batch(rest).expect("every served batch is valid");
            assert_eq!(h.base_offset, offset, "dense offsets");
            served.extend_from_slice(&rest[..h.size()]);
            offset = h.last_offset() + 1;
            rest = &rest[h.size()..];
        }
    }
    assert_eq!(&served[..], &data[..served.len()]);
});
