//! Shared harness for whole-broker tests: a real broker started in-process on
//! 127.0.0.1:0 with a temporary data dir, and rdkafka (librdkafka) clients pointed at it.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use strata::{Config, RunningBroker};
use tempfile::TempDir;

pub mod legacy;
pub mod process;
pub mod raw;

/// Generous upper bound for anything a test waits on (never asserted as a duration).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A broker running in this process, with its data dir.
pub struct TestBroker {
    running: Option<RunningBroker>,
    data_dir: PathBuf,
    /// Keeps the temporary directory alive (None when the caller owns the directory).
    _temp: Option<TempDir>,
}

impl TestBroker {
    /// A broker with default settings and a fresh temporary data dir.
    pub async fn start() -> TestBroker {
        Self::start_with(|_| {}).await
    }

    /// A broker on a fresh temporary data dir, with `adjust` applied to the defaults.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestBroker {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().to_path_buf();
        let mut broker = Self::start_in(&dir, adjust).await;
        broker._temp = Some(temp);
        broker
    }

    /// A broker on `data_dir` (which may hold a previous broker's data).
    pub async fn start_in(data_dir: &Path, adjust: impl FnOnce(&mut Config)) -> TestBroker {
        init_tracing();
        let mut config = Config::with_defaults("127.0.0.1:0".parse().unwrap(), data_dir);
        adjust(&mut config);
        let running = strata::start(config).await.expect("broker starts");
        TestBroker {
            running: Some(running),
            data_dir: data_dir.to_path_buf(),
            _temp: None,
        }
    }

    pub fn bootstrap(&self) -> String {
        self.running().local_addr().to_string()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.running().local_addr()
    }

    pub fn running(&self) -> &RunningBroker {
        self.running.as_ref().expect("broker running")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Graceful shutdown, then a new broker on the same data dir (same settings).
    pub async fn restart(mut self, adjust: impl FnOnce(&mut Config)) -> TestBroker {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        let mut next = Self::start_in(&self.data_dir, adjust).await;
        next._temp = self._temp.take();
        next
    }

    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

/// Logs from the broker under test when RUST_LOG is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A FutureProducer for `bootstrap` with librdkafka's defaults plus `extra` settings.
pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "5");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("producer")
}

/// A consumer whose partitions are assigned explicitly (librdkafka needs a group.id for
/// `assign`, but nothing is committed and no group is joined).
pub fn consumer(bootstrap: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "strata-test-assign")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("consumer")
}

/// Reads partitions `0..partitions` of `topic` from the beginning until `count` messages
/// have arrived (panics after PATIENCE). Returns them in arrival order.
pub fn consume(bootstrap: &str, topic: &str, partitions: i32, count: usize) -> Vec<OwnedMessage> {
    let consumer = consumer(bootstrap, &[]);
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} messages from {topic} arrived",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => out.push(message.detach()),
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    out
}

/// Values of `messages` grouped by partition, each in offset order, as UTF-8 strings.
pub fn values_by_partition(messages: &[OwnedMessage]) -> HashMap<i32, Vec<(i64, String)>> {
    let mut out: HashMap<i32, Vec<(i64, String)>> = HashMap::new();
    for m in messages {
        let value = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
        out.entry(m.partition())
            .or_default()
            .push((m.offset(), value));
    }
    out
}
