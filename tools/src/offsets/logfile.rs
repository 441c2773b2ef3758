//! `log dump` and `log verify`: offline reading of Strata's partition directories (Kafka's
//! segment format: `<base offset, 20 digits>.log` of RecordBatch v2, `.index`,
//! `.timeindex`, see strata-storage's README). Headers are checked with
//! `strata_storage::batch`; records are decoded with kafka-protocol.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use strata_storage::batch::{check_header, compute_crc, BatchHeader, HEADER_LEN};

use super::error::{Result, ToolError};
use super::output::{format_ms, print_json, Table};
use super::records::{decode_batch, BatchRecord};

/// Bytes per `.index` entry: relative offset u32 BE, position u32 BE.
const OFFSET_ENTRY: usize = 8;
/// Bytes per `.timeindex` entry: timestamp i64 BE, relative offset u32 BE.
const TIME_ENTRY: usize = 12;
const CHECKPOINT_FILE: &str = "partition.checkpoint";
const CHECKPOINT_MAGIC: &str = "strata-partition-checkpoint 1";

/// One batch found by a scan, with the header fields the storage crate does not parse.
#[derive(Debug, Clone)]
pub struct ScannedBatch {
    /// Byte position of the batch in its `.log`.
    pub position: u64,
    pub header: BatchHeader,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub crc_ok: bool,
    pub computed_crc: u32,
}

/// The batches of one `.log` file and, if the scan stopped early, where and why.
pub struct Scan {
    pub batches: Vec<ScannedBatch>,
    pub fault: Option<(u64, String)>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| ToolError::File {
        path: path.to_path_buf(),
        source,
    })
}

/// Walks `bytes` batch by batch: header rules (magic, length, counts) and each CRC. Stops
/// at the first batch whose header is bad (its length cannot be trusted).
pub fn scan(bytes: &[u8]) -> Scan {
    let mut batches = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let available = bytes.len() - pos;
        let head = &bytes[pos..pos + available.min(HEADER_LEN)];
        let header = match check_header(head, available) {
            Ok(h) => h,
            Err(fault) => {
                return Scan {
                    batches,
                    fault: Some((pos as u64, fault.to_string())),
                }
            }
        };
        let batch = &bytes[pos..pos + header.size()];
        let computed = compute_crc(batch);
        batches.push(ScannedBatch {
            position: pos as u64,
            header,
            producer_id: i64::from_be_bytes(arr(&batch[43..51])),
            producer_epoch: i16::from_be_bytes([batch[51], batch[52]]),
            base_sequence: i32::from_be_bytes(arr(&batch[53..57])),
            crc_ok: computed == header.crc,
            computed_crc: computed,
        });
        pos += header.size();
    }
    Scan {
        batches,
        fault: None,
    }
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

/// The `.log` files of a partition directory as `(base offset, path)`, by base offset.
pub fn segment_logs(dir: &Path) -> Result<Vec<(i64, PathBuf)>> {
    let entries = std::fs::read_dir(dir).map_err(|source| ToolError::File {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ToolError::File {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(base) = segment_base(&name, "log") {
            out.push((base, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Base offset of `<20 digits>.<suffix>`.
fn segment_base(name: &str, suffix: &str) -> Option<i64> {
    let (stem, ext) = name.split_once('.')?;
    if ext != suffix || stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

fn codec_name(c: i16) -> &'static str {
    match c {
        0 => "none",
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "unknown",
    }
}

fn batch_json(path: &Path, b: &ScannedBatch) -> Value {
    let h = &b.header;
    json!({
        "file": path.display().to_string(),
        "position": b.position,
        "base_offset": h.base_offset,
        "last_offset": h.last_offset(),
        "record_count": h.record_count,
        "size": h.size(),
        "base_timestamp": h.base_timestamp,
        "max_timestamp": h.max_timestamp,
        "timestamp_type": if h.is_log_append_time() { "LogAppendTime" } else { "CreateTime" },
        "compression": codec_name(h.compression()),
        "producer_id": b.producer_id,
        "producer_epoch": b.producer_epoch,
        "base_sequence": b.base_sequence,
        "transactional": h.attributes & 0x10 != 0,
        "control": h.is_control(),
        "crc": format!("{:#010x}", h.crc),
        "crc_ok": b.crc_ok,
    })
}

/// Decoded records of a batch (an error when the CRC is bad or decoding fails).
fn batch_records(bytes: &[u8], b: &ScannedBatch) -> std::result::Result<Vec<BatchRecord>, String> {
    if !b.crc_ok {
        return Err("CRC mismatch; records not decoded".to_string());
    }
    let start = b.position as usize;
    let batch = bytes::Bytes::copy_from_slice(&bytes[start..start + b.header.size()]);
    decode_batch(&batch).map(|(_, records)| records)
}

/// `log dump PATH`: every batch of a segment file, or of every segment of a directory.
/// Prints what it can, then fails on the first unreadable batch.
pub fn dump(path: &Path, records: bool, json_out: bool, out: &mut impl Write) -> Result<()> {
    let files = if path.is_dir() {
        segment_logs(path)?.into_iter().map(|(_, p)| p).collect()
    } else {
        vec![path.to_path_buf()]
    };
    for (n, file) in files.into_iter().enumerate() {
        let bytes = read(&file)?;
        let scan = scan(&bytes);
        if !json_out {
            if n > 0 {
                writeln!(out)?;
            }
            writeln!(
                out,
                "{}: {} bytes, {} batch(es)",
                file.display(),
                bytes.len(),
                scan.batches.len()
            )?;
        }
        let mut table = Table::new(&[
            "POSITION",
            "OFFSETS",
            "COUNT",
            "SIZE",
            "FIRST-TIMESTAMP",
            "MAX-TIMESTAMP",
            "CODEC",
            "PRODUCER",
            "EPOCH",
            "SEQ",
            "FLAGS",
            "CRC",
        ]);
        for b in &scan.batches {
            let h = &b.header;
            if json_out {
                let mut v = batch_json(&file, b);
                if records {
                    let recs = match batch_records(&bytes, b) {
                        Ok(rs) => {
                            Value::Array(rs.iter().map(|r| r.view(None, None).to_json()).collect())
                        }
                        Err(e) => json!({ "error": e }),
                    };
                    if let Value::Object(o) = &mut v {
                        o.insert("records".into(), recs);
                    }
                }
                print_json(out, &v)?;
                continue;
            }
            let mut flags = Vec::new();
            if h.is_log_append_time() {
                flags.push("logappend");
            }
            if h.attributes & 0x10 != 0 {
                flags.push("txn");
            }
            if h.is_control() {
                flags.push("control");
            }
            let row = vec![
                b.position.to_string(),
                format!("{}..{}", h.base_offset, h.last_offset()),
                h.record_count.to_string(),
                h.size().to_string(),
                format_ms(h.base_timestamp),
                format_ms(h.max_timestamp),
                codec_name(h.compression()).to_string(),
                b.producer_id.to_string(),
                b.producer_epoch.to_string(),
                b.base_sequence.to_string(),
                if flags.is_empty() {
                    "-".to_string()
                } else {
                    flags.join(",")
                },
                if b.crc_ok {
                    "ok".to_string()
                } else {
                    format!("BAD({:#010x}!={:#010x})", h.crc, b.computed_crc)
                },
            ];
            if records {
                writeln!(
                    out,
                    "batch position={} offsets={} count={} size={} first={} max={} codec={} producer={} epoch={} seq={} flags={} crc={}",
                    row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10], row[11]
                )?;
                match batch_records(&bytes, b) {
                    Ok(rs) => {
                        for r in &rs {
                            writeln!(out, "    {}", r.view(None, None).to_text())?;
                        }
                    }
                    Err(e) => writeln!(out, "    ({e})")?,
                }
            } else {
                table.row(row);
            }
        }
        if !json_out && !records && !table.is_empty() {
            table.print(out)?;
        }
        if let Some((position, reason)) = scan.fault {
            return Err(ToolError::Corrupt {
                path: file,
                position,
                reason,
            });
        }
        if let Some(bad) = scan.batches.iter().find(|b| !b.crc_ok) {
            return Err(ToolError::Corrupt {
                path: file,
                position: bad.position,
                reason: format!(
                    "CRC-32C mismatch: stored {:#010x}, computed {:#010x}",
                    bad.header.crc, bad.computed_crc
                ),
            });
        }
    }
    Ok(())
}

/// Summary of a verified partition directory.
#[derive(Debug, Default, serde::Serialize)]
pub struct VerifySummary {
    pub segments: usize,
    pub batches: usize,
    pub records: i64,
    pub first_offset: Option<i64>,
    /// Offset after the last record (the log end offset).
    pub next_offset: Option<i64>,
    pub index_entries: usize,
    pub time_index_entries: usize,
}

/// `log verify DIR`: every batch (header, CRC, offset order within and across segments)
/// and every `.index` / `.timeindex` entry of a partition directory. Fails on the first
/// problem with the file and byte position.
pub fn verify(dir: &Path, json_out: bool, out: &mut impl Write) -> Result<()> {
    if !dir.is_dir() {
        return Err(ToolError::Usage(format!(
            "{} is not a partition directory",
            dir.display()
        )));
    }
    let logs = segment_logs(dir)?;
    if logs.is_empty() {
        return Err(ToolError::Usage(format!(
            "{} holds no segment (<20-digit base offset>.log) files",
            dir.display()
        )));
    }
    let corrupt = |path: &Path, position: u64, reason: String| ToolError::Corrupt {
        path: path.to_path_buf(),
        position,
        reason,
    };
    let mut summary = VerifySummary {
        segments: logs.len(),
        ..VerifySummary::default()
    };
    let mut next_expected: Option<i64> = None;
    for (i, (base, path)) in logs.iter().enumerate() {
        let next_base = logs.get(i + 1).map(|(b, _)| *b);
        let bytes = read(path)?;
        let scan = scan(&bytes);
        for b in &scan.batches {
            let h = &b.header;
            if !b.crc_ok {
                return Err(corrupt(
                    path,
                    b.position,
                    format!(
                        "CRC-32C mismatch: stored {:#010x}, computed {:#010x}",
                        h.crc, b.computed_crc
                    ),
                ));
            }
            if h.base_offset < *base {
                return Err(corrupt(
                    path,
                    b.position,
                    format!(
                        "batch base offset {} below the segment base {base}",
                        h.base_offset
                    ),
                ));
            }
            if let Some(n) = next_expected {
                if h.base_offset < n {
                    return Err(corrupt(
                        path,
                        b.position,
                        format!(
                            "batch base offset {} overlaps the previous batch (which ends at {})",
                            h.base_offset,
                            n - 1
                        ),
                    ));
                }
            }
            if let Some(nb) = next_base {
                if h.last_offset() >= nb {
                    return Err(corrupt(
                        path,
                        b.position,
                        format!(
                            "batch last offset {} reaches the next segment's base {nb}",
                            h.last_offset()
                        ),
                    ));
                }
            }
            next_expected = Some(h.next_offset());
            summary.first_offset.get_or_insert(h.base_offset);
            summary.batches += 1;
            summary.records += i64::from(h.record_count);
        }
        if let Some((position, reason)) = scan.fault {
            return Err(corrupt(path, position, reason));
        }
        summary.index_entries +=
            verify_offset_index(&path.with_extension("index"), *base, &scan.batches)?;
        summary.time_index_entries +=
            verify_time_index(&path.with_extension("timeindex"), *base, &scan.batches)?;
    }
    summary.next_offset = next_expected;
    verify_checkpoint(&dir.join(CHECKPOINT_FILE), summary.next_offset)?;
    if json_out {
        return print_json(
            out,
            &json!({"dir": dir.display().to_string(), "ok": true, "summary": summary}),
        );
    }
    writeln!(
        out,
        "{}: OK: {} segment(s), {} batch(es), {} record(s), offsets {}..{}, {} index and {} time index entries checked",
        dir.display(),
        summary.segments,
        summary.batches,
        summary.records,
        summary.first_offset.map_or("-".to_string(), |o| o.to_string()),
        summary.next_offset.map_or("-".to_string(), |o| (o - 1).to_string()),
        summary.index_entries,
        summary.time_index_entries,
    )?;
    Ok(())
}

/// Checks a `.index` file (absent is fine: the active segment's index is written when the
/// segment is sealed). Every entry must name the start position of a batch whose last
/// offset is `base + relative offset`, in increasing order. Returns the entry count.
fn verify_offset_index(path: &Path, base: i64, batches: &[ScannedBatch]) -> Result<usize> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(0);
    };
    let whole = bytes.len() - bytes.len() % OFFSET_ENTRY;
    if whole != bytes.len() {
        return Err(ToolError::Corrupt {
            path: path.to_path_buf(),
            position: whole as u64,
            reason: format!("torn entry: {} trailing byte(s)", bytes.len() - whole),
        });
    }
    let mut previous: Option<(u32, u32)> = None;
    for (i, entry) in bytes.chunks_exact(OFFSET_ENTRY).enumerate() {
        let rel = u32::from_be_bytes(arr(&entry[0..4]));
        let pos = u32::from_be_bytes(arr(&entry[4..8]));
        let at = (i * OFFSET_ENTRY) as u64;
        let bad = |reason: String| ToolError::Corrupt {
            path: path.to_path_buf(),
            position: at,
            reason,
        };
        if let Some((prel, ppos)) = previous {
            if rel <= prel || pos <= ppos {
                return Err(bad(format!(
                    "entry ({rel}, {pos}) does not follow ({prel}, {ppos}) in increasing order"
                )));
            }
        }
        previous = Some((rel, pos));
        let batch = batches
            .iter()
            .find(|b| b.position == u64::from(pos))
            .ok_or_else(|| {
                bad(format!(
                    "position {pos} is not the start of a batch in the .log"
                ))
            })?;
        if batch.header.last_offset() != base + i64::from(rel) {
            return Err(bad(format!(
                "relative offset {rel} (offset {}) but the batch at position {pos} ends at offset {}",
                base + i64::from(rel),
                batch.header.last_offset()
            )));
        }
    }
    Ok(bytes.len() / OFFSET_ENTRY)
}

/// Checks a `.timeindex` file (absent is fine): timestamps and offsets never decrease,
/// every offset lies in a batch of the segment, and no timestamp exceeds the largest batch
/// max timestamp up to and including that batch. Returns the entry count.
fn verify_time_index(path: &Path, base: i64, batches: &[ScannedBatch]) -> Result<usize> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(0);
    };
    let whole = bytes.len() - bytes.len() % TIME_ENTRY;
    if whole != bytes.len() {
        return Err(ToolError::Corrupt {
            path: path.to_path_buf(),
            position: whole as u64,
            reason: format!("torn entry: {} trailing byte(s)", bytes.len() - whole),
        });
    }
    let mut previous: Option<(i64, u32)> = None;
    for (i, entry) in bytes.chunks_exact(TIME_ENTRY).enumerate() {
        let ts = i64::from_be_bytes(arr(&entry[0..8]));
        let rel = u32::from_be_bytes(arr(&entry[8..12]));
        let at = (i * TIME_ENTRY) as u64;
        let bad = |reason: String| ToolError::Corrupt {
            path: path.to_path_buf(),
            position: at,
            reason,
        };
        if let Some((pts, prel)) = previous {
            if ts < pts || rel < prel {
                return Err(bad(format!(
                    "entry ({ts}, {rel}) goes back from ({pts}, {prel})"
                )));
            }
        }
        previous = Some((ts, rel));
        let offset = base + i64::from(rel);
        let mut max_so_far = i64::MIN;
        let mut found = false;
        for b in batches {
            max_so_far = max_so_far.max(b.header.max_timestamp);
            if b.header.base_offset <= offset && offset <= b.header.last_offset() {
                found = true;
                break;
            }
        }
        if !found {
            return Err(bad(format!(
                "offset {offset} is in no batch of the segment"
            )));
        }
        if ts > max_so_far {
            return Err(bad(format!(
                "timestamp {ts} is later than every batch up to offset {offset} (max {max_so_far})"
            )));
        }
    }
    Ok(bytes.len() / TIME_ENTRY)
}

/// Checks `partition.checkpoint` (absent is fine): its format, and that the log start
/// offset does not lie beyond the log end.
fn verify_checkpoint(path: &Path, next_offset: Option<i64>) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let bad = |position: usize, reason: String| ToolError::Corrupt {
        path: path.to_path_buf(),
        position: position as u64,
        reason,
    };
    let mut lines = text.lines();
    if lines.next() != Some(CHECKPOINT_MAGIC) {
        return Err(bad(0, format!("first line is not '{CHECKPOINT_MAGIC}'")));
    }
    let mut position = CHECKPOINT_MAGIC.len() + 1;
    for line in lines {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        let value: i64 = value
            .trim()
            .parse()
            .map_err(|_| bad(position, format!("'{line}' is not '<name> <integer>'")))?;
        if key == "log_start_offset" {
            if let Some(end) = next_offset {
                if value > end {
                    return Err(bad(
                        position,
                        format!("log_start_offset {value} is beyond the log end {end}"),
                    ));
                }
            }
        }
        position += line.len() + 1;
    }
    Ok(())
}
