//! The background retention task: every `log.retention.check.interval.ms` it applies each
//! partition's retention (time and size, whole sealed segments only) through
//! `Log::apply_retention`, and forgets idempotent producers idle for longer than
//! `producer.id.expiration.ms`: their per-partition state (`Log::expire_producers`) and
//! the epochs InitProducerId remembers (`ProducerIds::expire`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::Broker;

/// Starts the retention loop; it ends when `shutdown` turns true.
pub fn spawn(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    let interval = Duration::from_millis(broker.config().log_retention_check_interval_ms);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate; the first check waits one interval
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = crate::server::shutdown::requested(&mut shutdown) => return,
            }
            let broker = broker.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || run_once(&broker)).await {
                warn!(error = %e, "retention pass panicked");
            }
        }
    })
}

/// One retention pass over every partition. Blocking (deletes files).
pub fn run_once(broker: &Broker) {
    let now_ms = crate::broker::now_ms();
    let producer_expiration_ms = broker.config().producer_id_expiration_ms;
    let forgotten = broker.producer_ids().expire(now_ms);
    if forgotten > 0 {
        debug!(forgotten, "forgot the epochs of idle producers");
    }
    for topic in broker.topics() {
        for (p, log) in topic.partitions.iter().enumerate() {
            let expired = log.expire_producers(now_ms, producer_expiration_ms);
            if expired > 0 {
                debug!(topic = %topic.name, partition = p, expired, "expired idle producer ids");
            }
            match log.apply_retention(now_ms) {
                Ok(outcome) if outcome.segments_deleted > 0 => info!(
                    topic = %topic.name, partition = p,
                    segments = outcome.segments_deleted, bytes = outcome.bytes_deleted,
                    log_start_offset = outcome.log_start_offset, "retention deleted segments"
                ),
                Ok(_) => debug!(topic = %topic.name, partition = p, "retention: nothing to delete"),
                Err(e) => warn!(topic = %topic.name, partition = p, error = %e, "retention failed"),
            }
        }
    }
}
