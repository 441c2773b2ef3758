//! The TCP server: the accept loop, one task per connection, and orderly shutdown.
//!
//! Shutdown order (`RunningBroker::shutdown`): stop accepting; tell every connection to
//! stop reading; wait until every request already read is answered; stop the retention
//! task; close every log (flush + clean-shutdown marker) and stop the flusher.

pub mod connection;
pub mod frame_reader;
pub mod limits;
pub mod memory;
pub mod shutdown;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{error, info, warn};

use crate::api::RequestContext;
use crate::broker::{retention, Broker, BrokerError};
use crate::config::Config;
use crate::group::{CoordinatorConfig, GroupLimits, GroupService, GroupServiceConfig};
use crate::txn::{TxnConfig, TxnCoordinator};

/// Failures starting the broker.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("cannot open the committed offsets: {0}")]
    Offsets(#[from] crate::group::offsets::OffsetLogError),
    #[error("cannot open the transaction log: {0}")]
    Transactions(#[from] crate::txn::log::TxnLogError),
    #[error("broker start-up task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A started broker. Dropping it without `shutdown` leaves the tasks running until the
/// runtime ends (like a crash: the storage recovers at the next start).
pub struct RunningBroker {
    local_addr: SocketAddr,
    broker: Arc<Broker>,
    shutdown_tx: watch::Sender<bool>,
    accept: JoinHandle<()>,
    retention: JoinHandle<()>,
}

/// Binds the listener, opens the data dir and starts serving.
pub async fn start(config: Config) -> Result<RunningBroker, StartError> {
    memory::configure_allocator();
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let broker = tokio::task::spawn_blocking(move || Broker::open(config, local_addr)).await??;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let retention = retention::spawn(broker.clone(), shutdown_rx.clone());
    let groups = GroupService::start(
        group_service_config(broker.config()),
        broker.state_dir(),
        shutdown_rx.clone(),
    )
    .await?;
    // Before the transaction coordinator's start-up sweeps, so none of them decides a
    // pending offset of a topic that is gone. A failure leaves those offsets (as a failed
    // removal in DeleteTopics does); they would be handed to a topic created again.
    if let Err(e) = groups
        .forget_deleted_topics(|topic| broker.topic(topic).is_some())
        .await
    {
        error!(error = ?e, "cannot remove the group offsets of deleted topics; they stay");
    }
    let txns = TxnCoordinator::start(
        txn_config(broker.config()),
        broker.clone(),
        groups.clone(),
        shutdown_rx.clone(),
    )
    .await?;
    let ctx = RequestContext {
        broker: broker.clone(),
        shutdown: shutdown_rx,
        groups,
        txns,
        peer: None,
    };
    let accept = tokio::spawn(accept_loop(listener, ctx));
    info!(%local_addr, advertised = %format!("{}:{}", broker.advertised_host(), broker.advertised_port()),
          "strata listening");
    Ok(RunningBroker {
        local_addr,
        broker,
        shutdown_tx,
        accept,
        retention,
    })
}

impl RunningBroker {
    /// The address the listener is bound to (the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The broker state (for tests and embedding).
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Graceful shutdown: stop accepting, answer in-flight requests, close the storage
    /// cleanly (flush and clean-shutdown marker).
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        if let Err(e) = self.accept.await {
            warn!(error = %e, "accept loop failed");
        }
        if let Err(e) = self.retention.await {
            warn!(error = %e, "retention task failed");
        }
        let broker = self.broker;
        if let Err(e) = tokio::task::spawn_blocking(move || broker.close()).await {
            warn!(error = %e, "closing storage failed");
        }
        info!("strata stopped");
    }
}

/// How long a graceful shutdown waits for connections to answer what they have read.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts connections until shutdown, then waits for every connection to finish.
async fn accept_loop(listener: TcpListener, ctx: RequestContext) {
    let config = ctx.broker.config();
    let settings = connection::Settings {
        max_frame: config.socket_request_max_bytes,
        max_in_flight: config.max_in_flight_requests as usize,
        max_idle: u64::try_from(config.connections_max_idle_ms)
            .ok()
            .map(std::time::Duration::from_millis),
        read_timeout: u64::try_from(config.request_read_timeout_ms)
            .ok()
            .filter(|ms| *ms > 0)
            .map(std::time::Duration::from_millis),
        budget: limits::RequestBudget::new(config.queued_max_request_bytes),
        unparseable_warnings: Arc::new(limits::WarnThrottle::new()),
    };
    let limits = limits::ConnectionLimits::new(
        config.max_connections as usize,
        config.max_connections_per_ip as usize,
    );
    let mut shutdown = ctx.shutdown.clone();
    let mut connections = JoinSet::new();
    let mut trim = memory::TrimSchedule::new();
    let mut trim_tick = tokio::time::interval(memory::TICK);
    trim_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = crate::server::shutdown::requested(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match limits.admit(peer.ip()) {
                    Ok(slot) => {
                        let serve = connection::serve(stream, peer, ctx.clone(), settings.clone());
                        connections.spawn(async move {
                            serve.await;
                            drop(slot);
                        });
                    }
                    // Refused (and logged): dropping the stream closes it unread.
                    Err(_) => drop(stream),
                },
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {
                trim.connection_closed();
            }
            _ = trim_tick.tick() => {
                if trim.due(std::time::Instant::now()) {
                    tokio::task::spawn_blocking(memory::release_free_memory);
                }
            }
        }
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        // Clients that never read their responses cannot hold the shutdown hostage.
        warn!(
            remaining = connections.len(),
            "connections still busy after the shutdown grace period; closing them"
        );
        connections.shutdown().await;
    }
}

/// The group coordinator's settings from the broker configuration.
fn group_service_config(config: &Config) -> GroupServiceConfig {
    GroupServiceConfig {
        coordinator: CoordinatorConfig {
            min_session_timeout_ms: config.group_min_session_timeout_ms,
            max_session_timeout_ms: config.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            limits: GroupLimits {
                id_max_bytes: config.id_max_bytes as usize,
                group_max_size: config.group_max_size as usize,
                group_max_bytes: config.group_max_bytes,
                state_max_bytes: config.group_state_max_bytes,
                offset_metadata_max_bytes: config.offset_metadata_max_bytes as usize,
            },
            ..CoordinatorConfig::default()
        },
        offsets_retention_ms: (config.offsets_retention_minutes as i64).saturating_mul(60_000),
        ..GroupServiceConfig::default()
    }
}

/// The transaction coordinator's settings from the broker configuration.
fn txn_config(config: &Config) -> TxnConfig {
    TxnConfig {
        max_timeout_ms: config.transaction_max_timeout_ms,
        cleanup_interval_ms: config.transaction_abort_timed_out_transaction_cleanup_interval_ms,
        id_expiration_ms: config.transactional_id_expiration_ms,
        id_max_bytes: config.id_max_bytes as usize,
        state_max_bytes: config.transaction_state_max_bytes,
        ..TxnConfig::default()
    }
}
