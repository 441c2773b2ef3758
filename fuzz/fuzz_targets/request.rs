//! Request decoding and dispatch: the input is one request frame body (header + body,
//! without the length prefix), handed to `strata::api::handle_frame` exactly as the
//! connection's read loop does, against a real broker state in a temporary directory.
//! Deferred responses (acks=all, long polls, group joins) get 50 ms, then are dropped.
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
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let bound = "127.0.0.1:9092".parse().unwrap();
        let config = Config::with_defaults(bound, dir.path());
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
            _dir: dir,
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
