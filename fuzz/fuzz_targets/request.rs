//! Request framing, decoding and dispatch: the input is the byte stream a client sends on
//! one connection (length-prefixed request frames, possibly truncated, oversized or
//! negative), written to a real broker started with `strata::start` on 127.0.0.1:0, so
//! it goes through the connection's frame reader (socket.request.max.bytes, the request
//! byte budget), `handle_frame` and the in-order response writer.
//!
//! Per input: connect, write the input, half-close, then read responses until the broker
//! closes the connection or `RESPONSE_WAIT` passes (deferred responses such as acks=all,
//! long polls and group joins may take longer; they are then dropped with the connection).
//! Checked: the broker accepts every connection (it never stops serving), never panics
//! (libFuzzer aborts on a panic in any thread), and the responses received are whole
//! length-prefixed frames whose correlation ids follow the request order (a subsequence
//! of the ids of the complete frames sent: acks=0 produces get no response).
//!
//! The broker's data dir is `fuzz/state/request-<pid>`; directories of processes that are
//! gone are removed at start (the broker lives in a static that is never dropped).
#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use strata::{Config, RunningBroker};

/// Frame bodies above this are refused (socket.request.max.bytes), small enough that
/// inputs reach both sides of the limit.
const MAX_FRAME: u32 = 3000;
/// How long one input waits for the broker to answer and close the connection.
const RESPONSE_WAIT: Duration = Duration::from_millis(100);

struct State {
    _runtime: tokio::runtime::Runtime,
    _broker: RunningBroker,
    addr: SocketAddr,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let state = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("state");
        if let Ok(entries) = std::fs::read_dir(&state) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let gone = name
                    .strip_prefix("request-")
                    .is_some_and(|pid| !std::path::Path::new("/proc").join(pid).exists());
                if gone {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = state.join(format!("request-{}", std::process::id()));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut config = Config::with_defaults("127.0.0.1:0".parse().unwrap(), &dir);
        config.socket_request_max_bytes = MAX_FRAME;
        // Joins complete at once instead of holding their connection for 3 s.
        config.group_initial_rebalance_delay_ms = 0;
        let broker = runtime.block_on(strata::start(config)).unwrap();
        let addr = broker.local_addr();
        State {
            _runtime: runtime,
            _broker: broker,
            addr,
        }
    })
}

/// The correlation ids of the complete frames at the start of `stream` (a frame body
/// shorter than a header's first 8 bytes ends it: the broker closes the connection there).
fn request_ids(mut stream: &[u8]) -> Vec<i32> {
    let mut ids = Vec::new();
    while stream.len() >= 4 {
        let len = i32::from_be_bytes([stream[0], stream[1], stream[2], stream[3]]);
        let Ok(len) = usize::try_from(len) else { break };
        if len > MAX_FRAME as usize || len < 8 || stream.len() < 4 + len {
            break;
        }
        let body = &stream[4..4 + len];
        ids.push(i32::from_be_bytes([body[4], body[5], body[6], body[7]]));
        stream = &stream[4 + len..];
    }
    ids
}

fuzz_target!(|data: &[u8]| {
    let state = state();
    let mut stream = TcpStream::connect(state.addr).expect("the broker accepts connections");
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    // The broker may close the connection before reading everything (a refused frame).
    let _ = stream.write_all(data);
    let _ = stream.shutdown(Shutdown::Write);

    let mut received = Vec::new();
    let deadline = Instant::now() + RESPONSE_WAIT;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }

    let sent = request_ids(data);
    let mut next = sent.iter();
    let mut rest = &received[..];
    while rest.len() >= 4 {
        let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let len = usize::try_from(len).expect("response length is not negative");
        if rest.len() < 4 + len {
            break; // cut off by the deadline
        }
        assert!(
            len >= 4,
            "a response frame holds at least its correlation id"
        );
        let id = i32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        assert!(
            next.any(|sent| *sent == id),
            "response correlation id {id} out of request order (sent {sent:?})"
        );
        rest = &rest[4 + len..];
    }
});
