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

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
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
    // A reused buffer already fits; a new one starts small and grows as bytes arrive.
    let mut body =
        body_pool::take(length).unwrap_or_else(|| Vec::with_capacity(length.min(64 * 1024)));
    while body.len() < length {
        if body.capacity() == body.len() {
            body.reserve((length - body.len()).min(1 << 20));
        }
        let want = length - body.len();
        let n = {
            let spare = body.capacity() - body.len();
            let take = spare.min(want);
            let mut limited = (&mut *reader).take(take as u64);
            limited.read_buf(&mut body).await?
        };
        if n == 0 {
            body_pool::give_back(body);
            return Err(FrameReadError::Truncated);
        }
    }
    Ok(Some((body_pool::into_bytes(body), permit)))
}

/// Reusable buffers for large request bodies (a Produce of 1 MiB batches).
///
/// A new multi-MiB buffer per request is memory the allocator takes from and returns to
/// the kernel each time: every page of it is faulted in and zeroed again as the socket
/// read fills it, and growing it copies what was read so far (together about a tenth of
/// the broker's CPU under a 1 MiB-batch produce load). A body is filled into spare
/// capacity (never zeroed) and handed out as `Bytes` that give the buffer back when the
/// request is done with it. Bodies under `MIN_BYTES` use the allocator as before; the
/// pool keeps at most `MAX_POOLED_BYTES` of capacity in all, so an idle broker holds at
/// most that much.
mod body_pool {
    use std::sync::Mutex;

    use bytes::Bytes;

    const MIN_BYTES: usize = 64 * 1024;
    pub(super) const MAX_POOLED_BYTES: usize = 16 << 20;

    static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

    fn pool() -> std::sync::MutexGuard<'static, Vec<Vec<u8>>> {
        // Plain buffers: a panic while it was locked leaves nothing torn.
        POOL.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty buffer with capacity for `len` bytes, the smallest pooled one that fits.
    pub(super) fn take(len: usize) -> Option<Vec<u8>> {
        if len < MIN_BYTES {
            return None;
        }
        let mut pool = pool();
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i)?;
        let mut buf = pool.swap_remove(best);
        buf.clear();
        Some(buf)
    }

    /// Keeps `buf` for reuse if it is large enough and the pool has room.
    pub(super) fn give_back(buf: Vec<u8>) {
        if buf.capacity() < MIN_BYTES {
            return;
        }
        let mut pool = pool();
        let held: usize = pool.iter().map(Vec::capacity).sum();
        if held + buf.capacity() <= MAX_POOLED_BYTES {
            pool.push(buf);
        }
    }

    /// `buf` as `Bytes`; a large one goes back to the pool when the last of them drops.
    pub(super) fn into_bytes(buf: Vec<u8>) -> Bytes {
        if buf.capacity() < MIN_BYTES {
            return Bytes::from(buf);
        }
        Bytes::from_owner(Pooled(buf))
    }

    struct Pooled(Vec<u8>);

    impl AsRef<[u8]> for Pooled {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl Drop for Pooled {
        fn drop(&mut self) {
            give_back(std::mem::take(&mut self.0));
        }
    }

    #[cfg(test)]
    pub(super) fn pooled_bytes() -> usize {
        pool().iter().map(Vec::capacity).sum()
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
            Pending::Task(handle) => {
                // Earlier responses go out before waiting for this one.
                if let Err(e) = write_parts(&mut out, &mut parts).await {
                    debug!(%peer, error = %e, "write failed");
                    return;
                }
                (queued, permits) = (0, Vec::new());
                match handle.await {
                    Ok(frame) => (frame, None),
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
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), server.unwrap().0)
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    #[tokio::test]
    async fn pooled_bodies_carry_each_frame_exactly_and_are_reused() {
        let (mut client, server) = pair().await;
        let (read_half, _w) = server.into_split();
        let mut reader = BufReader::with_capacity(64 * 1024, read_half);
        let budget = RequestBudget::new(-1);
        let first: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let second = vec![7u8; 200_000];
        let small = b"tiny".to_vec();
        let writer = tokio::spawn(async move {
            for body in [&first, &second, &small] {
                client.write_all(&frame(body)).await.unwrap();
            }
            client
                .write_all(&frame(&[1u8; 100_000])[..50_000])
                .await
                .unwrap();
            (client, first, second, small)
        });
        let (a, _) = read_frame(&mut reader, 1 << 20, &budget)
            .await
            .unwrap()
            .unwrap();
        let capacity_in_use = a.len();
        let copy = a.to_vec();
        drop(a); // back to the pool: the next, smaller body reuses it
        assert!(body_pool::pooled_bytes() >= capacity_in_use);
        let (b, _) = read_frame(&mut reader, 1 << 20, &budget)
            .await
            .unwrap()
            .unwrap();
        let (c, _) = read_frame(&mut reader, 1 << 20, &budget)
            .await
            .unwrap()
            .unwrap();
        let (client, first, second, small) = writer.await.unwrap();
        assert_eq!(copy, first);
        // A reused buffer shows only this frame's bytes, none of the earlier, longer one.
        assert_eq!(&b[..], &second[..]);
        assert_eq!(&c[..], &small[..]);
        drop(client); // mid-frame
        assert!(matches!(
            read_frame(&mut reader, 1 << 20, &budget).await,
            Err(FrameReadError::Truncated)
        ));
        assert!(body_pool::pooled_bytes() <= body_pool::MAX_POOLED_BYTES);
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
