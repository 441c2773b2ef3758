//! Request decoding and dispatch: the input is one request frame body (header + body,
//! without the length prefix), handed to `strata::api::handle_frame` exactly as the
//! connection's read loop does, against a real broker state in a temporary directory.
//! Deferred responses (acks=all, long polls, group joins) get 50 ms, then are dropped.
//! The broker state lives in `fuzz/state/request-<pid>`; directories of processes that
//! are gone are removed at start (statics are never dropped, so a temp dir would leak).
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strata::api::{handle_frame, Reply, RequestContext};
use strata::broker::Broker;
use strata::group::{GroupService, GroupServiceConfig};
use strata::Config;

struct State {
    runtime: tokio::runtime::Runtime,
    ctx: RequestContext,
    _shutdown: tokio::sync::watch::Sender<bool>,
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
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let bound = "127.0.0.1:9092".parse().unwrap();
        let config = Config::with_defaults(bound, &dir);
        let broker: Arc<Broker> = Broker::open(config, bound).unwrap();
        let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
        let groups = runtime
            .block_on(GroupService::start(
                GroupServiceConfig::default(),
                broker.state_dir(),
                shutdown.clone(),
            ))
            .unwrap();
        let ctx = RequestContext {
            broker,
            shutdown,
            groups,
            peer: None,
        };
        State {
            runtime,
            ctx,
            _shutdown: shutdown_tx,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let state = state();
    let _guard = state.runtime.enter();
    if let Ok(Reply::Later(response)) = handle_frame(Bytes::copy_from_slice(data), &state.ctx) {
        state.runtime.block_on(async {
            let _ = tokio::time::timeout(Duration::from_millis(50), response).await;
        });
    }
});
