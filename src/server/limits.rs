//! Broker-wide resource limits on connections (Kafka's names):
//!
//! - `max.connections` / `max.connections.per.ip`: a connection accepted beyond either
//!   limit is closed at once, before anything is read from it, and logged (at most one
//!   warning per second, with the count refused since the last one).
//! - `queued.max.request.bytes`: the bytes of request frames read but not yet answered,
//!   summed over every connection. A connection acquires its frame's size (capped at the
//!   limit, so one maximal frame still fits) after reading the length prefix and before
//!   reading the body; the share is released when the request's response is computed.
//!   A connection that cannot get its share stops reading until others release theirs.
//!
//! `connections.max.idle.ms` is enforced by the connection itself (`connection.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("max.connections ({limit}) reached")]
    Total { limit: usize },
    #[error("max.connections.per.ip ({limit}) reached for this address")]
    PerIp { limit: usize },
}

/// Counts open connections, in total and per client IP address.
#[derive(Debug)]
pub struct ConnectionLimits {
    /// Largest number of open connections (Kafka: max.connections).
    max_total: usize,
    /// Largest number of open connections from one IP address (max.connections.per.ip).
    max_per_ip: usize,
    /// Open connections per IP; an entry is removed when its count returns to zero, so
    /// the map holds only addresses with open connections.
    open: Mutex<HashMap<IpAddr, usize>>,
    total: AtomicUsize,
    /// Connections refused since the last warning was logged.
    refused_unlogged: AtomicU64,
    /// Milliseconds since `epoch` when the last refusal warning was logged.
    last_warning_ms: AtomicU64,
    epoch: Instant,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl ConnectionLimits {
    /// Limits of `max_total` connections and `max_per_ip` per address (both ≥ 1 are
    /// meaningful; 0 refuses everything).
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_ip,
            open: Mutex::new(HashMap::new()),
            total: AtomicUsize::new(0),
            refused_unlogged: AtomicU64::new(0),
            last_warning_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// Admits a connection from `ip`, or says which limit refuses it (and logs the
    /// refusal, rate-limited to one warning per second).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refused> {
        let result = {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            let total = self.total.load(Ordering::Relaxed);
            let from_ip = open.get(&ip).copied().unwrap_or(0);
            if total >= self.max_total {
                Err(Refused::Total {
                    limit: self.max_total,
                })
            } else if from_ip >= self.max_per_ip {
                Err(Refused::PerIp {
                    limit: self.max_per_ip,
                })
            } else {
                *open.entry(ip).or_insert(0) += 1;
                self.total.store(total + 1, Ordering::Relaxed);
                Ok(ConnectionSlot {
                    limits: self.clone(),
                    ip,
                })
            }
        };
        if let Err(reason) = &result {
            self.log_refusal(ip, reason);
        }
        result
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    fn log_refusal(&self, ip: IpAddr, reason: &Refused) {
        let refused = self.refused_unlogged.fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if (now_ms.saturating_sub(last) >= 1000 || last == 0)
            && self
                .last_warning_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.refused_unlogged.store(0, Ordering::Relaxed);
            warn!(%ip, %reason, refused_since_last_warning = refused, "connection refused");
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self
            .limits
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
        self.limits.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The broker-wide budget of request bytes read but not yet answered
/// (Kafka: queued.max.request.bytes). `None` inside means unbounded.
#[derive(Debug, Clone)]
pub struct RequestBudget {
    bytes: Option<(Arc<Semaphore>, u32)>,
}

impl RequestBudget {
    /// A budget of `limit` bytes; a negative limit means unbounded (Kafka's -1).
    pub fn new(limit: i64) -> RequestBudget {
        let bytes = u32::try_from(limit)
            .ok()
            .filter(|l| *l > 0)
            .map(|l| (Arc::new(Semaphore::new(l as usize)), l));
        RequestBudget { bytes }
    }

    /// Waits for `frame_len` bytes of budget (capped at the whole budget). `None` when
    /// unbounded. The semaphore is never closed, so acquiring only waits.
    pub async fn acquire(&self, frame_len: usize) -> Option<OwnedSemaphorePermit> {
        let (semaphore, limit) = self.bytes.as_ref()?;
        let share = (frame_len as u64).clamp(1, u64::from(*limit)) as u32;
        semaphore.clone().acquire_many_owned(share).await.ok()
    }

    /// Bytes of budget free now (`None` when unbounded).
    pub fn available(&self) -> Option<usize> {
        self.bytes.as_ref().map(|(s, _)| s.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_total_limits_and_release() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Refused::PerIp { limit: 2 });
        let _b1 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).unwrap_err(), Refused::Total { limit: 3 });
        assert_eq!(limits.open_connections(), 3);
        drop(a1);
        assert_eq!(limits.open_connections(), 2);
        let _a3 = limits.admit(a).unwrap();
    }

    #[tokio::test]
    async fn request_budget_caps_a_share_at_the_limit() {
        let budget = RequestBudget::new(100);
        let big = budget.acquire(1_000_000).await.unwrap();
        assert_eq!(big.num_permits(), 100);
        assert_eq!(budget.available(), Some(0));
        drop(big);
        assert_eq!(budget.available(), Some(100));
        assert!(RequestBudget::new(-1).acquire(10).await.is_none());
    }
}
