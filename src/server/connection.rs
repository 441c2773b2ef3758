//! One client connection: reads length-prefixed request frames, handles them in arrival
//! order, and writes responses strictly in request order.
//!
//! The read loop runs each request's synchronous part itself (so appends happen in the
//! order requests arrived) and queues the response, or a task computing it, on a bounded
//! channel; the writer task drains the channel in order. Two bounds keep a connection's
//! memory in check: the channel holds at most `max_in_flight` requests, and responses
//! already computed may hold at most `QUEUED_RESPONSE_BYTES` until written. A client that
//! does not read its responses stops being read from.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

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

/// Serves one connection until the client closes it, sends an unparseable frame, or the
/// broker shuts down (then requests already read are still answered).
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: RequestContext,
    max_frame: u32,
    max_in_flight: usize,
) {
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
    let mut writer = AbortOnDrop(tokio::spawn(write_responses(write_half, rx, peer)));
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let mut shutdown = ctx.shutdown.clone();
    let budget = Arc::new(Semaphore::new(QUEUED_RESPONSE_BYTES));
    loop {
        let frame = tokio::select! {
            biased;
            _ = crate::server::shutdown::requested(&mut shutdown) => break,
            frame = read_frame(&mut reader, max_frame) => frame,
        };
        let frame = match frame {
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
            Ok(Reply::Later(future)) => Pending::Task(tokio::spawn(future)),
            Err(e) => {
                warn!(%peer, error = %e, "unparseable request; closing connection");
                break;
            }
        };
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

/// Reads one frame body. `Ok(None)`: the client closed the connection between frames.
/// A length outside `0..=max_frame` is refused before anything is allocated; the body
/// buffer grows as bytes arrive, so an announced size is never allocated up front.
async fn read_frame(
    reader: &mut BufReader<OwnedReadHalf>,
    max_frame: u32,
) -> Result<Option<Bytes>, FrameReadError> {
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
    Ok(Some(body.freeze()))
}

/// Writes responses in queue order, flushing whenever the queue runs empty.
async fn write_responses(
    write_half: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Pending>,
    peer: SocketAddr,
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
