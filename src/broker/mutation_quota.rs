//! The controller mutation quota of KIP-599: a token bucket of partition mutations
//! (partitions created by CreateTopics, CreatePartitions and auto-creation, partitions
//! removed by DeleteTopics).
//!
//! Kafka's rules: the bucket holds at most `rate × 11 s` tokens (its quota window, 11
//! samples of 1 s) and refills at `rate` per second. A mutation of N partitions is
//! admitted while the bucket is not empty (tokens ≥ 0) and takes N tokens, which may
//! leave it negative; the time to wait is then `-tokens / rate`. Strict requests
//! (CreateTopics v6+, CreatePartitions v3+, DeleteTopics v5+) are refused a topic with
//! THROTTLING_QUOTA_EXCEEDED while the bucket is empty; older versions are always
//! admitted and their response is delayed by the time to wait instead.
//!
//! Kafka keeps one bucket per (user, client id). Strata has no users and client ids are
//! whatever a client says, so one bucket serves the whole broker: it bounds what all
//! clients together make this node do.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Kafka's quota window: `quota.window.num` (11) samples of `quota.window.size.seconds`
/// (1): the burst a full bucket allows, in seconds of the rate.
pub const QUOTA_WINDOW: Duration = Duration::from_secs(11);

/// How a request is held to the quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaMode {
    /// Refuse mutations while the bucket is empty (THROTTLING_QUOTA_EXCEEDED).
    Strict,
    /// Admit every mutation; the caller delays its response by the throttle time.
    Permissive,
    /// Not counted (the broker's own creations).
    Exempt,
}

impl QuotaMode {
    /// How a request of `version` is held: strict from `strict_since`, the first version
    /// whose response can carry THROTTLING_QUOTA_EXCEEDED (KIP-599), permissive before.
    pub fn for_version(version: i16, strict_since: i16) -> QuotaMode {
        if version >= strict_since {
            QuotaMode::Strict
        } else {
            QuotaMode::Permissive
        }
    }

    /// A permissive request's response waits out its throttle time (an older client
    /// cannot be told to back off); other modes answer at once.
    pub async fn delay_response(self, throttle_time_ms: i32) {
        if self == QuotaMode::Permissive && throttle_time_ms > 0 {
            let throttle = u64::try_from(throttle_time_ms).unwrap_or(0);
            tokio::time::sleep(std::time::Duration::from_millis(throttle)).await;
        }
    }
}

/// The bucket is empty: the mutation is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("The throttling quota has been exceeded.")]
pub struct QuotaExceeded;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

/// A token bucket of partition mutations, shared by every client.
#[derive(Debug)]
pub struct MutationQuota {
    /// Tokens per second.
    rate: f64,
    /// Most tokens the bucket holds.
    burst: f64,
    bucket: Mutex<Bucket>,
}

impl MutationQuota {
    /// A full bucket refilling at `rate` partitions per second (positive, finite).
    pub fn new(rate: f64) -> MutationQuota {
        let burst = rate * QUOTA_WINDOW.as_secs_f64();
        MutationQuota {
            rate,
            burst,
            bucket: Mutex::new(Bucket {
                tokens: burst,
                refilled_at: Instant::now(),
            }),
        }
    }

    /// Takes `partitions` tokens under `mode` (at `now`): Err for a strict mutation while
    /// the bucket is empty.
    pub fn admit(
        &self,
        mode: QuotaMode,
        partitions: u64,
        now: Instant,
    ) -> Result<(), QuotaExceeded> {
        if mode == QuotaMode::Exempt {
            return Ok(());
        }
        let mut bucket = self.refilled(now);
        if mode == QuotaMode::Strict && bucket.tokens < 0.0 {
            return Err(QuotaExceeded);
        }
        bucket.tokens -= partitions as f64;
        Ok(())
    }

    /// Whether a strict mutation would be refused now.
    pub fn exhausted(&self, now: Instant) -> bool {
        self.refilled(now).tokens < 0.0
    }

    /// How long until the bucket is no longer empty (zero when it is not).
    pub fn throttle_time(&self, now: Instant) -> Duration {
        let tokens = self.refilled(now).tokens;
        if tokens >= 0.0 {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(-tokens / self.rate).unwrap_or(Duration::MAX)
    }

    /// The bucket, refilled up to `now`.
    fn refilled(&self, now: Instant) -> std::sync::MutexGuard<'_, Bucket> {
        // The bucket is two numbers updated together; a panic cannot leave it torn.
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(bucket.refilled_at);
        bucket.tokens = (bucket.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        bucket.refilled_at = bucket.refilled_at.max(now);
        bucket
    }
}

/// `duration` in milliseconds, rounded up, for a response's `throttle_time_ms`.
pub fn throttle_ms(duration: Duration) -> i32 {
    i32::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own example (KIP-599): rate 5, so a burst of 55 over its 11-second window.
    #[test]
    fn admits_while_not_empty_then_refuses_strict_until_refilled() {
        let quota = MutationQuota::new(5.0);
        let start = Instant::now();
        // The first mutation may be bigger than the bucket: it was not empty.
        assert_eq!(quota.admit(QuotaMode::Strict, 50, start), Ok(()));
        assert_eq!(quota.admit(QuotaMode::Strict, 10, start), Ok(()));
        // -5 tokens: one second to wait.
        assert!(quota.exhausted(start));
        assert_eq!(quota.admit(QuotaMode::Strict, 1, start), Err(QuotaExceeded));
        assert_eq!(quota.throttle_time(start), Duration::from_secs(1));
        // Permissive mutations go through and deepen the debt.
        assert_eq!(quota.admit(QuotaMode::Permissive, 5, start), Ok(()));
        assert_eq!(quota.throttle_time(start), Duration::from_secs(2));
        let later = start + Duration::from_secs(2);
        assert!(!quota.exhausted(later));
        assert_eq!(quota.admit(QuotaMode::Strict, 1, later), Ok(()));
        // Refills stop at the burst.
        let much_later = later + Duration::from_secs(3600);
        assert_eq!(quota.admit(QuotaMode::Strict, 55, much_later), Ok(()));
        assert!(!quota.exhausted(much_later));
        assert_eq!(quota.admit(QuotaMode::Strict, 1, much_later), Ok(()));
        assert!(quota.exhausted(much_later));
        // The broker's own creations are not counted.
        assert_eq!(quota.admit(QuotaMode::Exempt, 1_000, much_later), Ok(()));
        let wait = quota.throttle_time(much_later);
        assert!(wait > Duration::from_millis(199) && wait < Duration::from_millis(201));
    }

    #[test]
    fn throttle_ms_saturates() {
        assert_eq!(throttle_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(throttle_ms(Duration::from_micros(1)), 1);
        assert_eq!(throttle_ms(Duration::MAX), i32::MAX);
    }
}
