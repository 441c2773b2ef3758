//! The machine's ceiling for what a broker does, measured with plain blocking sockets and
//! files: a loopback TCP receiver that appends what it gets to a file in the data
//! directory (without and with fdatasync after every batch-sized chunk), and a sender that
//! streams that file back over loopback to a reader. Broker figures are reported as ratios
//! to these rates.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::report::Baseline;
use super::{BenchError, Result};

/// Removes the scratch file when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn join<T>(handle: std::thread::JoinHandle<Result<T>>) -> Result<T> {
    handle
        .join()
        .map_err(|_| BenchError::Protocol("baseline thread panicked".into()))?
}

/// Sends repeated `chunk`s, up to `total` bytes or for `duration`, to a receiver that
/// appends them to `path` (fdatasync after every `chunk.len()` bytes when `sync`).
/// Returns the bytes moved and bytes/s.
fn socket_to_file(
    path: &Path,
    chunk: &[u8],
    total: u64,
    duration: Duration,
    sync: bool,
) -> Result<(u64, f64)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let file_path = path.to_path_buf();
    let sync_every = chunk.len().max(1) as u64;
    let start = Instant::now();
    let receiver = std::thread::spawn(move || -> Result<u64> {
        let (mut sock, _) = listener.accept()?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file_path)?;
        let mut buf = vec![0u8; 1 << 20];
        let (mut got, mut unsynced) = (0u64, 0u64);
        loop {
            let n = sock.read(&mut buf)?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n])?;
            got += n as u64;
            unsynced += n as u64;
            if sync && unsynced >= sync_every {
                file.sync_data()?;
                unsynced = 0;
            }
        }
        if sync && unsynced > 0 {
            file.sync_data()?;
        }
        Ok(got)
    });
    let mut sock = TcpStream::connect(addr)?;
    sock.set_nodelay(true)?;
    let mut sent = 0u64;
    while sent < total && start.elapsed() < duration {
        sock.write_all(chunk)?;
        sent += chunk.len() as u64;
    }
    sock.shutdown(Shutdown::Write)?;
    let got = join(receiver)?;
    Ok((got, got as f64 / start.elapsed().as_secs_f64().max(1e-9)))
}

/// Streams the file at `path` over loopback to a reader that discards it. Returns bytes/s.
fn file_to_socket(path: &Path) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let start = Instant::now();
    let receiver = std::thread::spawn(move || -> Result<u64> {
        let (mut sock, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        loop {
            let n = sock.read(&mut buf)?;
            if n == 0 {
                return Ok(got);
            }
            got += n as u64;
        }
    });
    let mut sock = TcpStream::connect(addr)?;
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sock.write_all(&buf[..n])?;
    }
    sock.shutdown(Shutdown::Write)?;
    let got = join(receiver)?;
    Ok(got as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// Measures all three rates, each write test moving at most `total` bytes for at most
/// `duration` (a sustained rate: the page cache absorbs short bursts much faster than the
/// disk drains them, so compare runs of equal length), using `chunk` (one encoded record
/// batch as the broker would receive it) as the unit sent and synced. The read test
/// streams back what the first write test wrote.
pub fn measure(
    data_dir: &Path,
    chunk: &[u8],
    total: u64,
    duration: Duration,
    wire_bytes_per_record: f64,
) -> Result<Baseline> {
    std::fs::create_dir_all(data_dir)?;
    let pid = std::process::id();
    let plain = Scratch(data_dir.join(format!("strata-bench-baseline-{pid}.log")));
    let synced = Scratch(data_dir.join(format!("strata-bench-baseline-{pid}-sync.log")));
    let _ = std::fs::remove_file(&plain.0);
    let _ = std::fs::remove_file(&synced.0);
    let (moved, write) = socket_to_file(&plain.0, chunk, total, duration, false)?;
    let read = file_to_socket(&plain.0)?;
    drop(plain);
    let (_, write_sync) = socket_to_file(&synced.0, chunk, total, duration, true)?;
    Ok(Baseline {
        socket_to_file_bytes_per_s: write,
        socket_to_file_fdatasync_bytes_per_s: write_sync,
        file_to_socket_bytes_per_s: read,
        wire_bytes_per_record,
        bytes_moved: moved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_every_byte_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let b = measure(dir.path(), &chunk, 4 << 20, Duration::from_secs(60), 1030.0).unwrap();
        assert!(b.socket_to_file_bytes_per_s > 0.0);
        assert_eq!(b.bytes_moved, 4 << 20);
        assert!(b.socket_to_file_fdatasync_bytes_per_s > 0.0);
        assert!(b.file_to_socket_bytes_per_s > 0.0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
