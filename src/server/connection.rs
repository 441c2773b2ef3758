//! One client connection: reads length-prefixed request frames, handles them in arrival
//! order, and writes responses strictly in request order.
//!
//! The read loop runs each request's synchronous part itself (so appends happen in the
//! order requests arrived) and queues the response, or a task computing it, on a bounded
//! channel; the writer task drains the channel in order. Two bounds keep a connection's
//! memory in check: the channel holds at most `max_in_flight` requests, and responses
//! already computed (now, or later by a deferred task) may hold at most
//! `QUEUED_RESPONSE_BYTES` until written. A client that does not read its responses stops
//! being read from. Across connections, request bodies are read only within the broker's
//! `queued.max.request.bytes` budget and a per-frame read deadline (`frame_reader.rs`),
//! and a connection with no request read and no response outstanding or written for
//! `connections.max.idle.ms` is closed.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::frame_reader::{FrameReader, RequestFrame};
use super::limits::{RequestBudget, WarnThrottle};

use crate::api::{self, Frame, Reply, RequestContext, ResponseFrame};

/// Bytes of computed-but-unwritten responses one connection may hold. A single larger
/// response is still sent (it takes the whole budget), after everything before it.
const QUEUED_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A response in the connection's ordered queue.
enum Pending {
    /// Computed; the permit holds its share of `QUEUED_RESPONSE_BYTES` until written.
    Ready(Frame, OwnedSemaphorePermit),
    /// Computed later (acks=all, long poll), by a task that charges the response to the
    /// budget once computed. Waiting for its share could deadlock (later responses hold
    /// it and are written only after this one), so the writer tells the task when this
    /// response is next to be written, and the task then hands it over uncharged: at most
    /// one such response, the one being written, is outside the budget.
    Task {
        task: JoinHandle<(ResponseFrame, Option<OwnedSemaphorePermit>)>,
        next_to_write: oneshot::Sender<()>,
    },
}

/// Per-connection settings, the same for every connection of a broker.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest frame body accepted, in bytes (socket.request.max.bytes).
    pub max_frame: u32,
    /// Requests read ahead while earlier responses are pending.
    pub max_in_flight: usize,
    /// Close after this long without activity (connections.max.idle.ms); None: never.
    pub max_idle: Option<Duration>,
    /// A frame must arrive whole within this long of its first byte
    /// (request.read.timeout.ms); None: no limit.
    pub read_timeout: Option<Duration>,
    /// The broker-wide budget of request bytes read but not answered.
    pub budget: RequestBudget,
    /// Rate limit of the warning logged for an unparseable request, broker-wide.
    pub unparseable_warnings: Arc<WarnThrottle>,
}

/// What the idle check looks at: the last request read or response written, and the
/// responses queued but not yet written.
struct Activity {
    start: Instant,
    /// Milliseconds since `start` of the last frame read or response written.
    last_ms: AtomicU64,
    /// Responses queued for the writer and not yet written.
    outstanding: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// When the connection becomes idle if nothing happens, or None while responses are
    /// outstanding (the client is waiting, e.g. on a long poll).
    fn idle_deadline(&self, max_idle: Duration) -> Option<Instant> {
        if self.outstanding.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Some(self.start + last + max_idle)
    }
}

/// A response's share of `QUEUED_RESPONSE_BYTES`.
fn response_share(frame: &Frame) -> u32 {
    frame.len().clamp(1, QUEUED_RESPONSE_BYTES) as u32
}

/// Serves one connection until the client closes it, sends an unparseable frame, stays
/// idle too long, or the broker shuts down (then requests already read are still answered).
pub async fn serve(stream: TcpStream, peer: SocketAddr, ctx: RequestContext, settings: Settings) {
    let Settings {
        max_frame,
        max_in_flight,
        max_idle,
        read_timeout,
        budget: request_budget,
        unparseable_warnings,
    } = settings;
    if let Err(e) = stream.set_nodelay(true) {
        debug!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
    let ctx = RequestContext {
        peer: Some(peer),
        ..ctx
    };
    let (read_half, write_half) = stream.into_split();
    let (tx, rx) = mpsc::channel::<Pending>(max_in_flight.max(1));
    // Aborted if this task is (a shutdown that outlived its grace period).
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
        outstanding: AtomicUsize::new(0),
    });
    let mut writer = AbortOnDrop(tokio::spawn(write_responses(
        write_half,
        rx,
        peer,
        activity.clone(),
    )));
    let mut reader = FrameReader::new(read_half, max_frame, read_timeout, request_budget.clone());
    let mut shutdown = ctx.shutdown.clone();
    let budget = Arc::new(Semaphore::new(QUEUED_RESPONSE_BYTES));
    'requests: loop {
        // A client that does not read its responses stops being read from: no request is
        // read while resolved responses fill this connection's budget (a deferred task
        // waiting for its share is ahead of this in the semaphore's queue).
        tokio::select! {
            biased;
            _ = crate::server::shutdown::requested(&mut shutdown) => break 'requests,
            room = budget.acquire() => drop(room),
        }
        let frame = {
            // The read survives idle-timer wake-ups: cancelling it mid-frame would lose
            // bytes already taken from the socket.
            let read = reader.next_frame();
            tokio::pin!(read);
            loop {
                let deadline = max_idle.and_then(|idle| activity.idle_deadline(idle));
                let idle_timer = async {
                    match (deadline, max_idle) {
                        (Some(at), _) => tokio::time::sleep_until(at.into()).await,
                        // Responses outstanding: look again a little later.
                        (None, Some(idle)) => {
                            tokio::time::sleep(idle.min(Duration::from_secs(1))).await
                        }
                        (None, None) => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    _ = crate::server::shutdown::requested(&mut shutdown) => break 'requests,
                    frame = &mut read => break frame,
                    _ = idle_timer => {
                        let still_idle = max_idle
                            .and_then(|idle| activity.idle_deadline(idle))
                            .is_some_and(|at| at <= Instant::now());
                        if still_idle {
                            info!(%peer, max_idle_ms = max_idle.map(|d| d.as_millis()),
                                  "closing idle connection (connections.max.idle.ms)");
                            break 'requests;
                        }
                    }
                }
            }
        };
        activity.touch();
        let RequestFrame {
            body,
            charge: mut request_charge,
        } = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                debug!(%peer, error = %e, "closing connection");
                break;
            }
        };
        let handled = match api::handle_frame_counted(body, &ctx) {
            // Storage work this request needs before the next one is read runs off the
            // async workers; this connection waits for it (others do not).
            Ok((Reply::InOrder(first), decoded)) => Ok((first.await, decoded)),
            other => other,
        };
        let pending = match handled {
            Ok((Reply::Now(Some(frame)), _)) => {
                // Waits while earlier responses are unwritten (the semaphore is never
                // closed, so this only fails if it were).
                let Ok(permit) = budget
                    .clone()
                    .acquire_many_owned(response_share(&frame))
                    .await
                else {
                    break;
                };
                Pending::Ready(frame, permit)
            }
            Ok((Reply::Now(None), _)) => break,
            Ok((Reply::Nothing, _)) => continue,
            // `api` never nests them (`flatten`).
            Ok((Reply::InOrder(_), _)) => break,
            // The request's share of the broker-wide budget, and what it decoded to, are
            // held until its response is computed; the response then takes its share of
            // this connection's.
            Ok((Reply::Later(future), decoded)) => {
                request_budget.charge_decoded(&mut request_charge, decoded);
                let (next_to_write, my_turn) = oneshot::channel();
                let budget = budget.clone();
                let task = tokio::spawn(async move {
                    let response = future.await;
                    drop(request_charge);
                    let Some(frame) = response else {
                        return (None, None);
                    };
                    let share = response_share(&frame);
                    let permit = tokio::select! {
                        biased;
                        permit = budget.acquire_many_owned(share) => permit.ok(),
                        // Next to be written (or the writer is gone): no need to wait.
                        _ = my_turn => None,
                    };
                    (Some(frame), permit)
                });
                Pending::Task {
                    task,
                    next_to_write,
                }
            }
            Err(e) => {
                if let Some(count) = unparseable_warnings.admit() {
                    warn!(%peer, error = %e, unparseable_since_last_warning = count,
                          "unparseable request; closing connection");
                } else {
                    debug!(%peer, error = %e, "unparseable request; closing connection");
                }
                break;
            }
        };
        activity.outstanding.fetch_add(1, Ordering::Relaxed);
        if tx.send(pending).await.is_err() {
            break; // the writer stopped: the client is gone
        }
    }
    drop(tx);
    if let Err(e) = (&mut writer.0).await {
        warn!(%peer, error = %e, "response writer panicked");
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Most slices handed to one `writev` (well under IOV_MAX).
const MAX_IOVECS: usize = 64;

/// Responses taken from the queue are written once this many bytes are waiting (or the
/// queue runs empty, or the next response is not computed yet).
const WRITE_AT_BYTES: usize = 64 * 1024;

/// Writes responses in queue order. The parts of the responses taken from the queue are
/// written with `writev`, straight from their buffers: a Fetch response's record sets
/// (slices of the page cache or pooled read buffers) are not copied in user space, and
/// one system call carries a whole response (or several small ones, while requests
/// queue) instead of one per part.
async fn write_responses(
    mut out: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Pending>,
    peer: SocketAddr,
    activity: Arc<Activity>,
) {
    let mut parts: VecDeque<Bytes> = VecDeque::new();
    let mut queued = 0usize;
    // Budget shares of the responses in `parts`, released once they are written.
    let mut permits: Vec<OwnedSemaphorePermit> = Vec::new();
    while let Some(pending) = rx.recv().await {
        let (frame, permit) = match pending {
            Pending::Ready(frame, permit) => (Some(frame), Some(permit)),
            Pending::Task {
                task,
                next_to_write,
            } => {
                // Earlier responses go out before waiting for this one.
                if let Err(e) = write_parts(&mut out, &mut parts).await {
                    debug!(%peer, error = %e, "write failed");
                    return;
                }
                (queued, permits) = (0, Vec::new());
                let _ = next_to_write.send(());
                match task.await {
                    Ok((frame, permit)) => (frame, permit),
                    Err(e) => {
                        warn!(%peer, error = %e, "request task failed; closing connection");
                        (None, None)
                    }
                }
            }
        };
        activity.touch();
        activity.outstanding.fetch_sub(1, Ordering::Relaxed);
        let Some(frame) = frame else { break };
        for part in frame.parts().iter().filter(|p| !p.is_empty()) {
            queued += part.len();
            parts.push_back(part.clone());
        }
        permits.extend(permit);
        if rx.is_empty() || queued >= WRITE_AT_BYTES || parts.len() >= MAX_IOVECS {
            if let Err(e) = write_parts(&mut out, &mut parts).await {
                debug!(%peer, error = %e, "write failed");
                return;
            }
            (queued, permits) = (0, Vec::new());
        }
    }
    let _ = write_parts(&mut out, &mut parts).await;
    let _ = out.shutdown().await;
}

/// Writes every byte of `parts` (emptying it) with as few `writev` calls as the socket
/// takes.
async fn write_parts(out: &mut OwnedWriteHalf, parts: &mut VecDeque<Bytes>) -> std::io::Result<()> {
    while !parts.is_empty() {
        let mut n = {
            let slices: Vec<IoSlice<'_>> = parts
                .iter()
                .take(MAX_IOVECS)
                .map(|p| IoSlice::new(p))
                .collect();
            out.write_vectored(&slices).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let Some(front) = parts.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                parts.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), server.unwrap().0)
    }

    #[tokio::test]
    async fn write_parts_sends_every_part_in_order() {
        let (client, mut server) = pair().await;
        let (_r, mut write_half) = client.into_split();
        // More parts than one writev takes, and more bytes than the socket buffers hold,
        // so writes are partial and resume inside a part.
        let mut parts: VecDeque<Bytes> = (0..200u32)
            .map(|i| Bytes::from(vec![(i % 256) as u8; 1 + (i as usize * 977) % 70_000]))
            .collect();
        let expected: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        let total = expected.len();
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; total];
            server.read_exact(&mut got).await.unwrap();
            got
        });
        write_parts(&mut write_half, &mut parts).await.unwrap();
        assert!(parts.is_empty());
        assert_eq!(reader.await.unwrap(), expected);
    }
}
