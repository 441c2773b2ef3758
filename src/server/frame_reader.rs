//! Request framing: reads `[length: i32][body]` frames from one connection's socket,
//! within the broker's request budget (`limits::RequestBudget`) and a read deadline.
//!
//! - Between frames a connection holds no read buffer: one is allocated when bytes arrive
//!   and dropped once every byte received has been handed out.
//! - A length outside `0..=socket.request.max.bytes` closes the connection before anything
//!   is allocated; no allocation is ever sized from a length the client sent alone.
//! - A small frame (`limits::SMALL_FRAME`) is received whole into the connection's buffer
//!   and charged to the budget once complete.
//! - A large frame is received into its own (pooled) buffer and charged as it arrives: the
//!   socket must be readable before budget is taken for the next chunk, and what a chunk
//!   did not fill is given back. A client silent after its length prefix holds nothing; a
//!   trickling one holds what it sent.
//! - Once a frame's first byte has been received, the whole frame must arrive within
//!   `request.read.timeout.ms` (time spent waiting for the budget does not count), so a
//!   client trickling a frame is closed long before `connections.max.idle.ms`.

use std::future::Future;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::net::tcp::OwnedReadHalf;
use tokio::time::Instant;

use super::limits::{Charge, RequestBudget, SMALL_FRAME};

/// Why a connection's read side stopped.
#[derive(Debug, thiserror::Error)]
pub enum FrameReadError {
    #[error("frame length {length} outside 0..={max} (socket.request.max.bytes)")]
    BadLength { length: i32, max: u32 },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("frame not received within {0:?} of its first byte (request.read.timeout.ms)")]
    Timeout(Duration),
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
}

/// Least room offered to one read into the connection's buffer.
const READ_CHUNK: usize = 16 * 1024;

/// Most of a large frame charged, and read, at a time.
const LARGE_CHUNK: usize = 1 << 20;

/// One request frame's body and its share of the request budget, held until the request
/// is answered.
#[derive(Debug)]
pub struct RequestFrame {
    pub body: Bytes,
    pub charge: Charge,
}

/// Reads the frames of one connection.
pub struct FrameReader {
    socket: OwnedReadHalf,
    /// Bytes received and not yet handed out: at most one small frame and what arrived
    /// with it. Unallocated while empty.
    buf: BytesMut,
    max_frame: u32,
    read_timeout: Option<Duration>,
    budget: RequestBudget,
}

impl FrameReader {
    pub fn new(
        socket: OwnedReadHalf,
        max_frame: u32,
        read_timeout: Option<Duration>,
        budget: RequestBudget,
    ) -> FrameReader {
        FrameReader {
            socket,
            buf: BytesMut::new(),
            max_frame,
            read_timeout,
            budget,
        }
    }

    /// Reads the next frame. `Ok(None)`: the client closed the connection between frames.
    /// Cancel-safe only between frames: dropping it mid-frame loses the bytes read.
    pub async fn next_frame(&mut self) -> Result<Option<RequestFrame>, FrameReadError> {
        if self.buf.is_empty() && self.fill(4, &Deadline::none()).await? == 0 {
            self.buf = BytesMut::new();
            return Ok(None);
        }
        let mut deadline = Deadline::after(self.read_timeout);
        while self.buf.len() < 4 {
            if self.fill(4 - self.buf.len(), &deadline).await? == 0 {
                return Err(FrameReadError::Truncated);
            }
        }
        let length = self.buf.get_i32();
        if length < 0 || length as u32 > self.max_frame {
            return Err(FrameReadError::BadLength {
                length,
                max: self.max_frame,
            });
        }
        let length = length as usize;
        let frame = if length <= SMALL_FRAME {
            self.read_small(length, &deadline).await?
        } else {
            self.read_large(length, &mut deadline).await?
        };
        if self.buf.is_empty() {
            // Frees the buffer once the frame handed out is dropped.
            self.buf = BytesMut::new();
        }
        Ok(Some(frame))
    }

    /// Receives the whole frame into the connection's buffer, then charges it.
    async fn read_small(
        &mut self,
        length: usize,
        deadline: &Deadline,
    ) -> Result<RequestFrame, FrameReadError> {
        while self.buf.len() < length {
            if self.fill(length - self.buf.len(), deadline).await? == 0 {
                return Err(FrameReadError::Truncated);
            }
        }
        let body = self.buf.split_to(length).freeze();
        let charge = self.budget.charge_complete(length).await;
        Ok(RequestFrame { body, charge })
    }

    /// Receives a large frame into its own buffer, charging the budget as bytes arrive.
    async fn read_large(
        &mut self,
        length: usize,
        deadline: &mut Deadline,
    ) -> Result<RequestFrame, FrameReadError> {
        // A reused buffer already fits; a new one starts at one chunk and grows as bytes
        // arrive, so an announced size is never allocated up front.
        let mut body =
            body_pool::take(length).unwrap_or_else(|| Vec::with_capacity(length.min(LARGE_CHUNK)));
        let mut charge = Charge::default();
        match self
            .receive_large(&mut body, &mut charge, length, deadline)
            .await
        {
            Ok(()) => Ok(RequestFrame {
                body: body_pool::into_bytes(body),
                charge,
            }),
            Err(e) => {
                body_pool::give_back(body);
                Err(e)
            }
        }
    }

    async fn receive_large(
        &mut self,
        body: &mut Vec<u8>,
        charge: &mut Charge,
        length: usize,
        deadline: &mut Deadline,
    ) -> Result<(), FrameReadError> {
        // Bytes that arrived together with the length prefix.
        let buffered = self.buf.len().min(length);
        if buffered > 0 {
            self.charge(charge, buffered, deadline).await;
            body.extend_from_slice(&self.buf[..buffered]);
            self.buf.advance(buffered);
        }
        while body.len() < length {
            deadline.wait(self.socket.readable()).await??;
            let want = (length - body.len()).min(LARGE_CHUNK);
            let taken = self.charge(charge, want, deadline).await;
            if body.capacity() - body.len() < want {
                // Grows geometrically, never past the frame's length.
                let target = (body.capacity() * 2).max(body.len() + want).min(length);
                body.reserve_exact(target - body.len());
            }
            match self.socket.try_read_buf(&mut (&mut *body).limit(want)) {
                Ok(0) => {
                    charge.refund(taken);
                    return Err(FrameReadError::Truncated);
                }
                Ok(n) => charge.refund(taken.saturating_sub(n)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => charge.refund(taken),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// `RequestBudget::charge_more`, with the time spent waiting for the budget added to
    /// the frame's deadline (the client is not late while the broker makes it wait).
    async fn charge(&self, charge: &mut Charge, want: usize, deadline: &mut Deadline) -> usize {
        let started = Instant::now();
        let taken = self.budget.charge_more(charge, want).await;
        deadline.extend(started.elapsed());
        taken
    }

    /// Waits until the socket is readable (within `deadline`), then reads what it holds
    /// into the connection's buffer, offering room for at least `want` bytes. Returns the
    /// bytes read; 0 at end of stream.
    async fn fill(&mut self, want: usize, deadline: &Deadline) -> Result<usize, FrameReadError> {
        loop {
            deadline.wait(self.socket.readable()).await??;
            self.buf.reserve(want.max(READ_CHUNK));
            match self.socket.try_read_buf(&mut self.buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// When the frame being read must be complete; none between frames.
struct Deadline {
    at: Option<(Instant, Duration)>,
}

impl Deadline {
    fn none() -> Deadline {
        Deadline { at: None }
    }

    fn after(timeout: Option<Duration>) -> Deadline {
        Deadline {
            at: timeout.map(|t| (Instant::now() + t, t)),
        }
    }

    fn extend(&mut self, by: Duration) {
        if let Some((at, _)) = &mut self.at {
            *at += by;
        }
    }

    async fn wait<F: Future>(&self, f: F) -> Result<F::Output, FrameReadError> {
        match self.at {
            None => Ok(f.await),
            Some((at, timeout)) => tokio::time::timeout_at(at, f)
                .await
                .map_err(|_| FrameReadError::Timeout(timeout)),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

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

    fn reader(server: TcpStream, timeout: Option<Duration>, budget: &RequestBudget) -> FrameReader {
        // Dropping the write half only shuts down the server's sending side.
        let (read_half, _write_half) = server.into_split();
        FrameReader::new(read_half, 1 << 20, timeout, budget.clone())
    }

    #[tokio::test]
    async fn pooled_bodies_carry_each_frame_exactly_and_are_reused() {
        let (mut client, server) = pair().await;
        let budget = RequestBudget::new(-1);
        let mut reader = reader(server, None, &budget);
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
        let a = reader.next_frame().await.unwrap().unwrap().body;
        let capacity_in_use = a.len();
        let copy = a.to_vec();
        drop(a); // back to the pool: the next, smaller body reuses it
        assert!(body_pool::pooled_bytes() >= capacity_in_use);
        let b = reader.next_frame().await.unwrap().unwrap().body;
        let c = reader.next_frame().await.unwrap().unwrap().body;
        let (client, first, second, small) = writer.await.unwrap();
        assert_eq!(copy, first);
        // A reused buffer shows only this frame's bytes, none of the earlier, longer one.
        assert_eq!(&b[..], &second[..]);
        assert_eq!(&c[..], &small[..]);
        drop(client); // mid-frame
        assert!(matches!(
            reader.next_frame().await,
            Err(FrameReadError::Truncated)
        ));
        assert!(body_pool::pooled_bytes() <= body_pool::MAX_POOLED_BYTES);
    }

    /// Waits until `budget` has `free` bytes available (the reader runs in another task).
    async fn until_available(budget: &RequestBudget, free: usize) {
        for _ in 0..1000 {
            if budget.available() == Some(free) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("budget free {:?}, expected {free}", budget.available());
    }

    #[tokio::test]
    async fn a_large_frame_is_charged_as_its_bytes_arrive() {
        let (mut client, server) = pair().await;
        let budget = RequestBudget::new(10_000_000);
        let full = budget.available().unwrap();
        let mut reader = reader(server, None, &budget);
        let body: Vec<u8> = (0..500_000u32).map(|i| i as u8).collect();
        let bytes = frame(&body);
        let read = tokio::spawn(async move { (reader.next_frame().await, reader) });
        // The prefix alone, declaring 500 kB: nothing is charged.
        client.write_all(&bytes[..4]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(budget.available(), Some(full));
        // 100 kB of it: that much is charged, no more.
        client.write_all(&bytes[4..100_004]).await.unwrap();
        until_available(&budget, full - 100_000).await;
        client.write_all(&bytes[100_004..]).await.unwrap();
        let (frame, _reader) = read.await.unwrap();
        let frame = frame.unwrap().unwrap();
        assert_eq!(&frame.body[..], &body[..]);
        assert_eq!(frame.charge.bytes(), 500_000);
        drop(frame);
        assert_eq!(budget.available(), Some(full));
    }

    #[tokio::test]
    async fn a_frame_not_complete_within_the_read_timeout_closes_the_connection() {
        let (mut client, server) = pair().await;
        let budget = RequestBudget::new(10_000_000);
        let mut reader = reader(server, Some(Duration::from_millis(300)), &budget);
        // Silence between frames is not timed.
        client.write_all(&frame(b"first")).await.unwrap();
        assert_eq!(
            &reader.next_frame().await.unwrap().unwrap().body[..],
            b"first"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let bytes = frame(&[3u8; 200_000]);
        client.write_all(&bytes[..1000]).await.unwrap();
        let trickle = tokio::spawn(async move {
            for chunk in bytes[1000..].chunks(100).take(20) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if client.write_all(chunk).await.is_err() {
                    break;
                }
            }
            client
        });
        assert!(matches!(
            reader.next_frame().await,
            Err(FrameReadError::Timeout(_))
        ));
        drop(reader);
        assert_eq!(budget.available(), Some(10_000_000));
        drop(trickle.await.unwrap());
    }
}
