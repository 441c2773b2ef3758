//! Broker-wide resource limits on connections (Kafka's names):
//!
//! - `max.connections` / `max.connections.per.ip`: a connection accepted beyond either
//!   limit is closed at once, before anything is read from it, and logged (at most one
//!   warning per second, with the count refused since the last one).
//! - `queued.max.request.bytes`: the bytes of request frames read but not yet answered,
//!   summed over every connection (`RequestBudget`). A large frame is charged as its bytes
//!   arrive, never from its declared length, so a connection that sends a length prefix and
//!   then nothing holds nothing, and a slow one holds what it sent. A small frame
//!   (`SMALL_FRAME`) is charged once complete, from a part of the budget the large ones
//!   cannot take. Large frames that together hold the budget and all wait for more cannot
//!   wait forever: one of them at a time reads on a broker-wide overdraft. A share is
//!   released when the request's response is computed.
//! - Unparseable frames and refused connections are logged through `WarnThrottle`.
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
    /// Refusals are logged at most once per second.
    refusal_warnings: WarnThrottle,
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
            refusal_warnings: WarnThrottle::new(),
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
        if let Some(refused) = self.refusal_warnings.admit() {
            warn!(%ip, %reason, refused_since_last_warning = refused, "connection refused");
        }
    }
}

/// Lets one warning of a kind through per second and counts the ones held back, so a
/// client repeating what causes it cannot flood the log.
#[derive(Debug)]
pub struct WarnThrottle {
    /// Occurrences since the last warning was logged.
    unlogged: AtomicU64,
    /// Milliseconds since `epoch` when the last warning was logged (0: never).
    last_ms: AtomicU64,
    epoch: Instant,
}

impl Default for WarnThrottle {
    fn default() -> Self {
        Self::new()
    }
}

impl WarnThrottle {
    pub fn new() -> WarnThrottle {
        WarnThrottle {
            unlogged: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Counts one occurrence. `Some(n)`: log it now, `n` occurrences (this one included)
    /// since the last warning; `None`: held back.
    pub fn admit(&self) -> Option<u64> {
        let count = self.unlogged.fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_ms.load(Ordering::Relaxed);
        if (now_ms.saturating_sub(last) >= 1000 || last == 0)
            && self
                .last_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.unlogged.store(0, Ordering::Relaxed);
            return Some(count);
        }
        None
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

/// Frames of at most this many bytes are read whole into the connection's own buffer and
/// charged to the request budget only once complete (from the shared part or, when that is
/// spent, the part kept for them), so clients holding the shared budget cannot stop small
/// requests (ApiVersions, Metadata, a small Produce) from being read.
pub const SMALL_FRAME: usize = 64 * 1024;

/// Largest part of the budget kept for small frames (an eighth of it, at most this).
const SMALL_RESERVE_MAX: u32 = 16 << 20;

/// The broker-wide budget of request bytes read but not yet answered
/// (Kafka: queued.max.request.bytes). `None` inside means unbounded.
///
/// Invariant: request bytes held by the broker are at most the budget, plus one frame read
/// on the overdraft (at most socket.request.max.bytes), plus what each connection holds of
/// one incomplete small frame (at most `SMALL_FRAME`).
#[derive(Debug, Clone)]
pub struct RequestBudget {
    pools: Option<Arc<Pools>>,
}

#[derive(Debug)]
struct Pools {
    /// Bytes any frame may take; a large frame takes them as its bytes arrive.
    shared: Arc<Semaphore>,
    shared_limit: u32,
    /// Bytes only complete small frames may take, once `shared` is spent (may be 0).
    small: Arc<Semaphore>,
    small_limit: u32,
    /// One token. Large frames that each hold part of the shared budget and all wait for
    /// more would wait forever; the first of them to wait that gets this token reads the
    /// rest of its body uncharged, and holds the token until its request is answered.
    overdraft: Arc<Semaphore>,
}

/// What one request holds of the budget, released when dropped.
#[derive(Debug, Default)]
pub struct Charge {
    shared: Option<OwnedSemaphorePermit>,
    small: Option<OwnedSemaphorePermit>,
    overdraft: Option<OwnedSemaphorePermit>,
}

impl Charge {
    /// Bytes charged (the overdraft not counted).
    pub fn bytes(&self) -> usize {
        self.shared.as_ref().map_or(0, |p| p.num_permits())
            + self.small.as_ref().map_or(0, |p| p.num_permits())
    }

    /// True when the frame reads on the broker's one overdraft.
    pub fn overdrawn(&self) -> bool {
        self.overdraft.is_some()
    }

    fn add_shared(&mut self, permit: OwnedSemaphorePermit) {
        match &mut self.shared {
            Some(held) => held.merge(permit),
            None => self.shared = Some(permit),
        }
    }

    /// Gives back `n` bytes of the shared budget taken by the last `charge_more`.
    pub fn refund(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if let Some(held) = &mut self.shared {
            if n >= held.num_permits() {
                self.shared = None;
            } else {
                drop(held.split(n));
            }
        }
    }
}

impl RequestBudget {
    /// A budget of `limit` bytes; a negative limit means unbounded (Kafka's -1).
    pub fn new(limit: i64) -> RequestBudget {
        let pools = u32::try_from(limit).ok().filter(|l| *l > 0).map(|limit| {
            let small_limit = (limit / 8).min(SMALL_RESERVE_MAX);
            let shared_limit = limit - small_limit;
            Arc::new(Pools {
                shared: Arc::new(Semaphore::new(shared_limit as usize)),
                shared_limit,
                small: Arc::new(Semaphore::new(small_limit as usize)),
                small_limit,
                overdraft: Arc::new(Semaphore::new(1)),
            })
        });
        RequestBudget { pools }
    }

    /// Charges a complete small frame of `len` bytes (capped at the pool it comes from, so
    /// any frame fits): from the shared budget, else from the part kept for small frames,
    /// waiting for whichever frees first.
    pub async fn charge_complete(&self, len: usize) -> Charge {
        let Some(pools) = &self.pools else {
            return Charge::default();
        };
        let shared_share = share(len, pools.shared_limit);
        if let Ok(p) = pools.shared.clone().try_acquire_many_owned(shared_share) {
            return Charge {
                shared: Some(p),
                ..Charge::default()
            };
        }
        if pools.small_limit == 0 {
            return Charge {
                shared: pools
                    .shared
                    .clone()
                    .acquire_many_owned(shared_share)
                    .await
                    .ok(),
                ..Charge::default()
            };
        }
        let small_share = share(len, pools.small_limit);
        // Neither semaphore is ever closed, so acquiring only waits.
        tokio::select! {
            p = pools.shared.clone().acquire_many_owned(shared_share) => Charge {
                shared: p.ok(),
                ..Charge::default()
            },
            p = pools.small.clone().acquire_many_owned(small_share) => Charge {
                small: p.ok(),
                ..Charge::default()
            },
        }
    }

    /// Charges `want` more bytes of a large frame that are about to be read, waiting while
    /// the shared budget is spent; returns the bytes newly taken (for `Charge::refund` of
    /// what was not read). Takes nothing once the frame holds the whole shared budget (a
    /// frame larger than the budget still passes, alone) or reads on the overdraft.
    pub async fn charge_more(&self, charge: &mut Charge, want: usize) -> usize {
        let Some(pools) = &self.pools else {
            return 0;
        };
        if charge.overdrawn() {
            return 0;
        }
        let held = charge.shared.as_ref().map_or(0, |p| p.num_permits());
        let n = (pools.shared_limit as usize).saturating_sub(held).min(want) as u32;
        if n == 0 {
            return 0;
        }
        if let Ok(p) = pools.shared.clone().try_acquire_many_owned(n) {
            charge.add_shared(p);
            return n as usize;
        }
        tokio::select! {
            biased;
            p = pools.shared.clone().acquire_many_owned(n) => match p {
                Ok(p) => {
                    charge.add_shared(p);
                    n as usize
                }
                Err(_) => 0,
            },
            token = pools.overdraft.clone().acquire_owned() => {
                charge.overdraft = token.ok();
                0
            }
        }
    }

    /// Charges `bytes` that a request decoded to and holds until it is answered (a
    /// deferred reply), as far as the shared budget has them free now. It never waits:
    /// the request already holds its frame's share, and holders waiting for more are how
    /// budgets deadlock. Then the broker holds up to `api::decode_limit` of its frame
    /// beyond the budget for such a request (its frame's share still counts).
    pub fn charge_decoded(&self, charge: &mut Charge, bytes: usize) {
        let Some(pools) = &self.pools else {
            return;
        };
        let held = charge.shared.as_ref().map_or(0, |p| p.num_permits());
        let n = (pools.shared_limit as usize)
            .saturating_sub(held)
            .min(bytes)
            .min(pools.shared.available_permits()) as u32;
        if n == 0 {
            return;
        }
        if let Ok(p) = pools.shared.clone().try_acquire_many_owned(n) {
            charge.add_shared(p);
        }
    }

    /// Bytes of budget free now, shared and kept for small frames (`None` when unbounded).
    pub fn available(&self) -> Option<usize> {
        self.pools
            .as_ref()
            .map(|p| p.shared.available_permits() + p.small.available_permits())
    }
}

/// `len` as a number of permits of a pool of `limit`: at least 1, at most the whole pool.
fn share(len: usize, limit: u32) -> u32 {
    (len as u64).clamp(1, u64::from(limit.max(1))) as u32
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

    #[test]
    fn a_throttled_warning_is_let_through_once_per_second_with_the_count_held_back() {
        let throttle = WarnThrottle::new();
        assert_eq!(throttle.admit(), Some(1));
        for _ in 0..1000 {
            assert_eq!(throttle.admit(), None);
        }
        std::thread::sleep(std::time::Duration::from_millis(1_050));
        assert_eq!(throttle.admit(), Some(1001));
        assert_eq!(throttle.admit(), None);
    }

    #[tokio::test]
    async fn a_small_frame_gets_the_reserve_when_the_shared_budget_is_spent() {
        let budget = RequestBudget::new(800); // 700 shared, 100 kept for small frames
        let mut big = Charge::default();
        assert_eq!(budget.charge_more(&mut big, 1_000_000).await, 700);
        assert_eq!(budget.available(), Some(100));
        let small = budget.charge_complete(60).await;
        assert_eq!(small.bytes(), 60);
        assert_eq!(budget.available(), Some(40));
        // Capped at the pool it comes from: any frame fits.
        drop(small);
        assert_eq!(budget.charge_complete(5_000).await.bytes(), 100);
        drop(big);
        assert_eq!(budget.available(), Some(800));
        assert_eq!(RequestBudget::new(-1).charge_complete(10).await.bytes(), 0);
    }

    #[tokio::test]
    async fn large_frames_waiting_for_each_other_get_the_overdraft_one_at_a_time() {
        let budget = RequestBudget::new(800);
        let (mut a, mut b) = (Charge::default(), Charge::default());
        assert_eq!(budget.charge_more(&mut a, 400).await, 400);
        assert_eq!(budget.charge_more(&mut b, 300).await, 300);
        // Both want more than is free: the first to wait reads on the overdraft.
        assert_eq!(budget.charge_more(&mut a, 400).await, 0);
        assert!(a.overdrawn());
        assert_eq!(budget.charge_more(&mut a, 400).await, 0);
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move {
                let taken = budget.charge_more(&mut b, 400).await;
                (taken, b)
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(a); // answered: its bytes and the overdraft are free again
        let (taken, b) = waiting.await.unwrap();
        assert!(taken == 400 || b.overdrawn());
    }

    #[tokio::test]
    async fn a_refund_returns_what_was_not_read() {
        let budget = RequestBudget::new(800);
        let mut c = Charge::default();
        let taken = budget.charge_more(&mut c, 500).await;
        c.refund(taken - 120);
        assert_eq!(c.bytes(), 120);
        assert_eq!(budget.available(), Some(680));
    }
}
