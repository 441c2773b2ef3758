//! The clock that timers run on: monotonic, so a step of the wall clock (NTP, an operator)
//! neither fires every timer at once nor holds them back.

/// Milliseconds since the Unix epoch as the wall clock read when the clock started, plus
/// the monotonic time elapsed since (tokio's clock, which tests can pause and advance).
/// For deadlines (group sessions, rebalances, transaction timeouts) and the timestamps
/// compared with them; it stays within the wall clock's drift since start, so the
/// timestamps it stamps on stored state read as wall time. Timestamps stored for their
/// own sake (record and commit times) take the wall clock itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MonotonicClock {
    wall_at_start_ms: i64,
    started: tokio::time::Instant,
}

impl MonotonicClock {
    pub(crate) fn start() -> MonotonicClock {
        MonotonicClock {
            wall_at_start_ms: crate::broker::now_ms(),
            started: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.wall_at_start_ms.saturating_add(elapsed)
    }

    /// [`MonotonicClock::now_ms`] for the group coordinator's unsigned times.
    pub(crate) fn now_unsigned_ms(&self) -> u64 {
        u64::try_from(self.now_ms()).unwrap_or(0)
    }
}
