//! Auto-creation (`auto.create.topics.enable`): a Metadata or Produce request naming an
//! unknown topic queues it and answers without waiting on the request path; the admin
//! thread creates every queued topic in one batch with one metadata append, so a request
//! naming thousands of unknown topics costs one batch and never blocks other requests.
//!
//! Invariants:
//! - A name queued or being created is not queued again: concurrent requests for a new
//!   topic create it once. No request sees the topic before it is whole (it is published
//!   with every partition open, see `admin.rs`).
//! - The queue and the batch being created hold at most
//!   [`MAX_PARTITIONS_PER_REQUEST`] partitions (beyond, a name is not queued and the
//!   client retries), and never more than the broker-wide cap allows.
//! - Batches take from the mutation quota like strict requests: a topic is not created
//!   while the bucket is empty (its client retries later).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::admin::NewTopic;
use super::metadata::controller::check_partition_cap;
use super::mutation_quota::QuotaMode;
use super::partition_limits::MAX_PARTITIONS_PER_REQUEST;
use super::topic_name::validate_topic_name;
use super::{Broker, Topic, TopicError};

/// What an auto-creating request learns about a topic.
#[derive(Debug)]
pub enum AutoCreate {
    /// The topic exists.
    Exists(Arc<Topic>),
    /// Queued or being created: the receiver turns true once its batch is done (the topic
    /// created, or refused by a cap or the quota).
    Creating(watch::Receiver<bool>),
    /// Auto-creation is disabled.
    Disabled,
    /// Not queued now (the queue is full or the mutation quota is exhausted): the client
    /// should retry.
    Busy,
}

/// The topics waiting for or in auto-creation.
#[derive(Debug, Default)]
pub(super) struct AutoCreation {
    /// Every name queued or being created, with its batch's done signal.
    pending: HashMap<String, watch::Receiver<bool>>,
    /// Names of the next batch, in arrival order.
    queued: Vec<String>,
    /// The next batch's done signal; None when no batch is queued.
    next_batch: Option<watch::Sender<bool>>,
    /// Partitions of every pending name.
    partitions: u64,
}

impl Broker {
    /// The topic if it exists; otherwise, when auto-creation is enabled, starts creating
    /// it and returns None (the caller answers with a retriable error). Err when the name
    /// is illegal, collides with an existing topic, or the broker may not hold its
    /// partitions. Never blocks.
    pub fn topic_or_auto_create(&self, name: &str) -> Result<Option<Arc<Topic>>, TopicError> {
        match self.auto_create(name)? {
            AutoCreate::Exists(topic) => Ok(Some(topic)),
            AutoCreate::Creating(_) | AutoCreate::Disabled | AutoCreate::Busy => Ok(None),
        }
    }

    /// Looks `name` up and, when it does not exist and auto-creation is enabled, queues
    /// it for creation with `num.partitions` partitions. Never blocks.
    pub fn auto_create(&self, name: &str) -> Result<AutoCreate, TopicError> {
        if let Some(topic) = self.topic(name) {
            return Ok(AutoCreate::Exists(topic));
        }
        if !self.config.auto_create_topics {
            return Ok(AutoCreate::Disabled);
        }
        validate_topic_name(name)?;
        let count = u64::try_from(self.config.num_partitions).unwrap_or(1);
        let mut auto = self.lock_auto_creation();
        if let Some(done) = auto.pending.get(name) {
            return Ok(AutoCreate::Creating(done.clone()));
        }
        // The metadata image knows every topic, published or still being opened.
        let image = self.image();
        {
            let table = self.read_table();
            if let Some(topic) = table.by_name.get(name) {
                return Ok(AutoCreate::Exists(topic.clone()));
            }
            if let Some(existing) = image.topics.collision(name) {
                return Err(TopicError::Collides {
                    name: name.to_owned(),
                    existing: existing.to_owned(),
                });
            }
            check_partition_cap(
                &self.partition_cap,
                table.partitions.saturating_add(auto.partitions),
                count,
            )?;
        }
        if auto.partitions.saturating_add(count) > MAX_PARTITIONS_PER_REQUEST
            || self.mutation_quota.exhausted(Instant::now())
        {
            return Ok(AutoCreate::Busy);
        }
        let (done, first_of_batch) = match &auto.next_batch {
            Some(batch) => (batch.subscribe(), false),
            None => {
                let (batch, done) = watch::channel(false);
                auto.next_batch = Some(batch);
                (done, true)
            }
        };
        auto.queued.push(name.to_owned());
        auto.pending.insert(name.to_owned(), done.clone());
        auto.partitions += count;
        drop(auto);
        if first_of_batch {
            let job: super::admin_queue::AdminJob = Box::new(Broker::create_queued_topics);
            if self.admin_queue.submit(job).is_err() {
                // Closing: nothing will be created; release the waiters.
                self.finish_batch(&self.take_batch().0, None);
            }
        }
        Ok(AutoCreate::Creating(done))
    }

    /// The admin job of one batch: creates every queued topic with one metadata write.
    fn create_queued_topics(&self) {
        let (names, done) = self.take_batch();
        let partitions = self.config.num_partitions;
        let topics = names
            .iter()
            .map(|name| NewTopic {
                name: name.clone(),
                partitions,
                configs: BTreeMap::new(),
            })
            .collect();
        let results = self.create_topics(topics, false, QuotaMode::Strict);
        let created = results.iter().filter(|r| r.is_ok()).count();
        let throttled = results
            .iter()
            .filter(|r| matches!(r, Err(TopicError::Throttled(_))))
            .count();
        // Created meanwhile by a CreateTopics queued before this batch: there, not failed.
        let existing = results
            .iter()
            .filter(|r| matches!(r, Err(TopicError::AlreadyExists(_))))
            .count();
        // One line per batch, however many topics a client named.
        let failed = names.iter().zip(&results).find_map(|(name, r)| match r {
            Err(TopicError::Throttled(_) | TopicError::AlreadyExists(_)) | Ok(_) => None,
            Err(e) => Some((name, e)),
        });
        if let Some((name, error)) = failed {
            warn!(failed = names.len() - created - throttled - existing, first = %name, %error,
                  "auto-creation failed");
        }
        if throttled > 0 {
            debug!(throttled, "auto-creation throttled; clients retry");
        }
        match names.as_slice() {
            [name] if created == 1 => info!(topic = %name, partitions, "auto-created topic"),
            _ if created > 0 => info!(created, partitions, "auto-created topics"),
            _ => {}
        }
        self.finish_batch(&names, done);
    }

    /// Takes the queued names and their done signal for creation.
    fn take_batch(&self) -> (Vec<String>, Option<watch::Sender<bool>>) {
        let mut auto = self.lock_auto_creation();
        (std::mem::take(&mut auto.queued), auto.next_batch.take())
    }

    /// Forgets `names` (created or not) and tells their waiters.
    fn finish_batch(&self, names: &[String], done: Option<watch::Sender<bool>>) {
        let count = u64::try_from(self.config.num_partitions).unwrap_or(1);
        let mut auto = self.lock_auto_creation();
        for name in names {
            if auto.pending.remove(name).is_some() {
                auto.partitions = auto.partitions.saturating_sub(count);
            }
        }
        drop(auto);
        if let Some(done) = done {
            let _ = done.send(true);
        }
    }

    fn lock_auto_creation(&self) -> std::sync::MutexGuard<'_, AutoCreation> {
        // Updated field by field under the lock by code that does not panic between them.
        self.auto_creation.lock().unwrap_or_else(|e| e.into_inner())
    }
}
