//! One client connection: reads length-prefixed request frames, handles them in arrival
//! order, and writes responses strictly in request order.
//!
//! The read loop runs each request's synchronous part itself (so appends happen in the
//! order requests arrived) and queues the response, or a task computing it, on a bounded
//! channel; the writer task drains the channel in order. Two bounds keep a connection's
//! memory in check: the channel holds at most `max_in_flight` requests, and responses
//! already computed may hold at most `QUEUED_RESPONSE_BYTES` until written. A client that
//! does not read its responses stops being read from. Across connections, request bodies
//! are read only within the broker's `queued.max.request.bytes` budget (`limits.rs`), and
//! a connection with no request read and no response outstanding or written for
//! `connections.max.idle.ms` is closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::limits::RequestBudget;

use crate::api::{self, Frame, Reply, RequestContext, ResponseFrame};

/// Why a connection's read side stopped.
#[derive(Debug, thiserror::Error)]
pub enum FrameReadError {
    #[error("frame length {length} outside 0..={max} (socket.request.max.bytes)")]
    BadLength { length: i32, max: u32 },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
}

/// Bytes of computed-but-unwritten responses one connection may hold. A single larger
/// response is still sent (it takes the whole budget), after everything before it.
const QUEUED_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A response in the connection's ordered queue.
enum Pending {
    /// Computed; the permit holds its share of `QUEUED_RESPONSE_BYTES` until written.
    Ready(Frame, OwnedSemaphorePermit),
    /// Computed later (acks=all, long poll). Not charged to the budget: it may resolve
    /// only after later responses were queued, and waiting for their permits would
    /// deadlock the in-order writer.
    Task(JoinHandle<ResponseFrame>),
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
    /// The broker-wide budget of request bytes read but not answered.
    pub budget: RequestBudget,
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

/// Serves one connection until the client closes it, sends an unparseable frame, stays
/// idle too long, or the broker shuts down (then requests already read are still answered).
pub async fn serve(stream: TcpStream, peer: SocketAddr, ctx: RequestContext, settings: Settings) {
    let Settings {
        max_frame,
        max_in_flight,
        max_idle,
        budget: request_budget,
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
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let mut shutdown = ctx.shutdown.clone();
    let budget = Arc::new(Semaphore::new(QUEUED_RESPONSE_BYTES));
    'requests: loop {
        let frame = {
            // The read survives idle-timer wake-ups: cancelling it mid-frame would lose
            // bytes already taken from the socket.
            let read = read_frame(&mut reader, max_frame, &request_budget);
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
        let (frame, request_permit) = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                debug!(%peer, error = %e, "closing connection");
                break;
            }
        };
        let pending = match api::handle_frame(frame, &ctx) {
            Ok(Reply::Now(Some(frame))) => {
                let share = frame.len().clamp(1, QUEUED_RESPONSE_BYTES) as u32;
                // Waits while earlier responses are unwritten (the semaphore is never
                // closed, so this only fails if it were).
                let Ok(permit) = budget.clone().acquire_many_owned(share).await else {
                    break;
                };
                Pending::Ready(frame, permit)
            }
            Ok(Reply::Now(None)) => break,
            Ok(Reply::Nothing) => continue,
            // The request's share of the broker-wide budget is held until its response
            // is computed.
            Ok(Reply::Later(future)) => Pending::Task(tokio::spawn(async move {
                let response = future.await;
                drop(request_permit);
                response
            })),
            Err(e) => {
                warn!(%peer, error = %e, "unparseable request; closing connection");
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

/// A request frame body and its share of the broker-wide request budget (None when the
/// budget is unbounded).
type ReadFrame = (Bytes, Option<OwnedSemaphorePermit>);

/// Reads one frame body. `Ok(None)`: the client closed the connection between frames.
/// A length outside `0..=max_frame` is refused before anything is allocated; then the
/// frame's share of `budget` is acquired (waiting while other requests hold it) before the
/// body is read. The body buffer grows as bytes arrive, so an announced size is never
/// allocated up front.
async fn read_frame(
    reader: &mut BufReader<OwnedReadHalf>,
    max_frame: u32,
    budget: &RequestBudget,
) -> Result<Option<ReadFrame>, FrameReadError> {
    let mut len_buf = [0u8; 4];
    let mut filled = 0;
    while filled < 4 {
        let n = reader.read(&mut len_buf[filled..]).await?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(FrameReadError::Truncated)
            };
        }
        filled += n;
    }
    let length = i32::from_be_bytes(len_buf);
    if length < 0 || length as u32 > max_frame {
        return Err(FrameReadError::BadLength {
            length,
            max: max_frame,
        });
    }
    let length = length as usize;
    let permit = budget.acquire(length).await;
    let mut body = BytesMut::with_capacity(length.min(64 * 1024));
    while body.len() < length {
        if body.capacity() == body.len() {
            body.reserve((length - body.len()).min(1 << 20));
        }
        let want = length - body.len();
        let n = {
            let spare = body.spare_capacity_mut();
            let take = spare.len().min(want);
            let mut limited = (&mut *reader).take(take as u64);
            limited.read_buf(&mut body).await?
        };
        if n == 0 {
            return Err(FrameReadError::Truncated);
        }
    }
    Ok(Some((body.freeze(), permit)))
}

/// Writes responses in queue order, flushing whenever the queue runs empty.
async fn write_responses(
    write_half: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Pending>,
    peer: SocketAddr,
    activity: Arc<Activity>,
) {
    let mut out = BufWriter::with_capacity(64 * 1024, write_half);
    while let Some(pending) = rx.recv().await {
        let (frame, _permit) = match pending {
            Pending::Ready(frame, permit) => (Some(frame), Some(permit)),
            Pending::Task(handle) => match handle.await {
                Ok(frame) => (frame, None),
                Err(e) => {
                    warn!(%peer, error = %e, "request task failed; closing connection");
                    (None, None)
                }
            },
        };
        activity.touch();
        activity.outstanding.fetch_sub(1, Ordering::Relaxed);
        let Some(frame) = frame else { break };
        // Parts larger than the buffer (shared record sets) go to the socket directly.
        for part in frame.parts() {
            if let Err(e) = out.write_all(part).await {
                debug!(%peer, error = %e, "write failed");
                return;
            }
        }
        if rx.is_empty() {
            if let Err(e) = out.flush().await {
                debug!(%peer, error = %e, "flush failed");
                return;
            }
        }
    }
    let _ = out.flush().await;
    let _ = out.shutdown().await;
}
