//! Which sealed segments retention deletes. Pure functions over segment facts, so the rules
//! can be tested without files; `Log::apply_retention` performs the deletion.
//!
//! As in Kafka, only a prefix of the log (oldest segments first) is ever deleted, never the
//! active segment:
//! - `retention.ms`: a segment whose newest timestamp (its largest batch maxTimestamp, or its
//!   creation time when it holds no timestamps) is more than `retention.ms` before now.
//! - `retention.bytes`: while the partition would still hold at least `retention.bytes`
//!   after deleting the oldest segment, delete it.
//! - log start offset: a segment whose every offset is below the log start offset.

/// The facts retention looks at for one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentFacts {
    pub size: u64,
    /// Largest batch maxTimestamp, or the creation time when no batch has a timestamp;
    /// `None` when neither is known.
    pub newest_ms: Option<i64>,
    /// Offset after the segment's last record.
    pub next_offset: i64,
}

/// How many of the oldest segments to delete. `segments` is oldest first and includes the
/// active segment last, which is never counted.
pub(crate) fn deletable_prefix(
    segments: &[SegmentFacts],
    retention_ms: Option<u64>,
    retention_bytes: Option<u64>,
    log_start_offset: i64,
    now_ms: i64,
) -> usize {
    let sealed = segments.len().saturating_sub(1);
    let by_time = match retention_ms {
        Some(ms) => segments[..sealed]
            .iter()
            .take_while(|s| {
                s.newest_ms.is_some_and(|t| {
                    now_ms.saturating_sub(t) > i64::try_from(ms).unwrap_or(i64::MAX)
                })
            })
            .count(),
        None => 0,
    };
    let by_size = match retention_bytes {
        Some(limit) => {
            let total: u64 = segments.iter().map(|s| s.size).sum();
            let mut excess = total.saturating_sub(limit);
            segments[..sealed]
                .iter()
                .take_while(|s| {
                    if s.size <= excess {
                        excess -= s.size;
                        true
                    } else {
                        false
                    }
                })
                .count()
        }
        None => 0,
    };
    let by_start = segments[..sealed]
        .iter()
        .take_while(|s| s.next_offset <= log_start_offset)
        .count();
    by_time.max(by_size).max(by_start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(sizes_and_times: &[(u64, i64)]) -> Vec<SegmentFacts> {
        let mut next = 0;
        sizes_and_times
            .iter()
            .map(|&(size, t)| {
                next += 10;
                SegmentFacts {
                    size,
                    newest_ms: Some(t),
                    next_offset: next,
                }
            })
            .collect()
    }

    #[test]
    fn time_deletes_old_prefix_but_never_active() {
        let s = facts(&[(100, 1000), (100, 2000), (100, 5000), (100, 1000)]);
        assert_eq!(deletable_prefix(&s, Some(1000), None, 0, 3500), 2);
        // Everything is old, but the active (last) one stays.
        assert_eq!(deletable_prefix(&s, Some(1), None, 0, 1_000_000), 3);
        // A young segment stops the prefix even if older ones follow.
        let s = facts(&[(100, 9000), (100, 1000), (100, 1000)]);
        assert_eq!(deletable_prefix(&s, Some(1000), None, 0, 9500), 0);
    }

    #[test]
    fn size_deletes_until_under_limit() {
        let s = facts(&[(100, 0), (100, 0), (100, 0), (50, 0)]);
        assert_eq!(deletable_prefix(&s, None, Some(350), 0, 0), 0);
        assert_eq!(deletable_prefix(&s, None, Some(250), 0, 0), 1);
        assert_eq!(deletable_prefix(&s, None, Some(249), 0, 0), 1);
        assert_eq!(deletable_prefix(&s, None, Some(150), 0, 0), 2);
        assert_eq!(deletable_prefix(&s, None, Some(0), 0, 0), 3);
    }

    #[test]
    fn start_offset_deletes_segments_below_it() {
        let s = facts(&[(100, 0), (100, 0), (100, 0)]);
        assert_eq!(deletable_prefix(&s, None, None, 19, 0), 1);
        assert_eq!(deletable_prefix(&s, None, None, 20, 0), 2);
        assert_eq!(deletable_prefix(&s, None, None, 1000, 0), 2);
    }
}
