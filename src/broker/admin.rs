//! Topic administration, executed on the admin thread: creating topics, adding
//! partitions, deleting topics, altering topic configs, and handing out producer-id
//! blocks, each for a whole request at once.
//!
//! Each operation is the controller's decision ([`controller`]: request + image →
//! answers and records), then its I/O: new partitions are staged (opened in parallel,
//! without any lock), the records of everything that can be done are appended to the
//! metadata log as one batch (one write, one fsync, however many topics), and the answer
//! waits until the applier has applied them. A topic whose partitions could not all be
//! opened is not recorded and leaves no directory behind.
//!
//! Request handlers submit the operations with [`Broker::submit_admin`];
//! [`Broker::create_topic`], [`Broker::delete_topic`] and
//! [`Broker::update_topic_configs`] are blocking conveniences that go through it as well.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tracing::warn;

use super::metadata::controller::{self, Limits, Planned};
use super::metadata::ConfigResource;
use super::mutation_quota::QuotaMode;
use super::{log_config_for, Broker, Topic, TopicError};

/// One topic a creation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    /// Requested partition count (checked: 1..=10000 and the broker-wide cap).
    pub partitions: i32,
    /// Config overrides (Kafka key -> value).
    pub configs: BTreeMap<String, String>,
}

impl Broker {
    /// Creates a topic with `partitions` partitions and the given config overrides (not
    /// counted by the mutation quota); durable when this returns Ok. Blocking: runs on
    /// the admin thread and waits for it.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, TopicError> {
        let topic = NewTopic {
            name: name.to_owned(),
            partitions,
            configs,
        };
        let created = self
            .run_admin(move |broker| broker.create_topics(vec![topic], false, QuotaMode::Exempt))?;
        match created.into_iter().next() {
            Some(Ok(Some(topic))) => Ok(topic),
            Some(Err(e)) => Err(e),
            Some(Ok(None)) | None => Err(TopicError::AdminUnavailable),
        }
    }

    /// Deletes a topic: its removal is made durable first, then its files are removed
    /// (not counted by the mutation quota). Returns the deleted topic. Blocking: runs on
    /// the admin thread and waits for it.
    pub fn delete_topic(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        let name = name.to_owned();
        let deleted =
            self.run_admin(move |broker| broker.delete_topics(vec![name], QuotaMode::Exempt))?;
        deleted
            .into_iter()
            .next()
            .unwrap_or(Err(TopicError::AdminUnavailable))
    }

    /// What the controller checks against besides the image.
    fn limits(&self) -> Limits {
        Limits {
            node_id: self.node_id(),
            defaults: self.default_log_config(),
            partition_cap: self.partition_cap,
        }
    }

    /// Creates `topics` (CreateTopics, auto-creation), one result per topic in order:
    /// `Ok(Some(topic))` when created, `Ok(None)` when `validate_only` found it valid.
    /// Checks as [`controller::create_topics`]; the mutation quota is not charged for
    /// `validate_only`. Every created topic is recorded by one append. The admin thread.
    pub(crate) fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
        quota: QuotaMode,
    ) -> Vec<Result<Option<Arc<Topic>>, TopicError>> {
        let now = Instant::now();
        let decision = controller::create_topics(
            &self.image(),
            &self.limits(),
            topics,
            validate_only,
            &mut |count| Ok(self.mutation_quota.admit(quota, count, now)?),
        );
        let mut results: Vec<Result<Option<Arc<Topic>>, TopicError>> = decision
            .results
            .into_iter()
            .map(|r| r.map(|()| None))
            .collect();
        self.carry_out(decision.planned, &mut results, Some);
        results
    }

    /// Grows each named topic to the given partition count (CreatePartitions), one result
    /// per request entry. Checks as [`controller::add_partitions`]; the mutation quota is
    /// not charged for `validate_only`. One append. The admin thread.
    pub(crate) fn add_partitions(
        &self,
        requests: Vec<(String, i32)>,
        validate_only: bool,
        quota: QuotaMode,
    ) -> Vec<Result<Arc<Topic>, TopicError>> {
        let now = Instant::now();
        let names: Vec<String> = requests.iter().map(|(name, _)| name.clone()).collect();
        let decision = controller::add_partitions(
            &self.image(),
            &self.limits(),
            requests,
            validate_only,
            &mut |count| Ok(self.mutation_quota.admit(quota, count, now)?),
        );
        let mut results: Vec<Result<Arc<Topic>, TopicError>> = decision
            .results
            .into_iter()
            .zip(&names)
            .map(|(r, name)| {
                r.and_then(|()| {
                    self.topic(name)
                        .ok_or_else(|| TopicError::Unknown(name.clone()))
                })
            })
            .collect();
        self.carry_out(decision.planned, &mut results, |topic| topic);
        results
    }

    /// Stages the partitions of `planned`, appends the records of those that opened as one
    /// batch and waits until they are applied; `results[plan.index]` becomes
    /// `created(topic)` or the error.
    fn carry_out<T>(
        &self,
        planned: Vec<Planned>,
        results: &mut [Result<T, TopicError>],
        created: impl Fn(Arc<Topic>) -> T,
    ) {
        if planned.is_empty() {
            return;
        }
        let staged = self.stage_partitions(&planned);
        let mut ready = Vec::with_capacity(planned.len());
        for (plan, outcome) in planned.into_iter().zip(staged) {
            match outcome {
                Ok(()) => ready.push(plan),
                Err(e) => results[plan.index] = Err(e),
            }
        }
        if ready.is_empty() {
            return;
        }
        let node_id = self.node_id();
        let records = ready
            .iter()
            .flat_map(|plan| plan.records(node_id))
            .collect();
        if let Err(e) = self.commit(records) {
            warn!(error = %e, topics = ready.len(), "cannot record created topics or partitions");
            self.discard_staged(&ready);
            for plan in &ready {
                results[plan.index] = Err(TopicError::Unpersisted(e.to_string()));
            }
            return;
        }
        for plan in &ready {
            results[plan.index] = match self.topic_by_id(plan.id) {
                Some(topic) if topic.partitions.len() as u32 >= plan.end => Ok(created(topic)),
                _ => Err(TopicError::Aborted(format!(
                    "the partitions of {} could not be opened",
                    plan.name
                ))),
            };
        }
    }

    /// Deletes the named topics (DeleteTopics), one result per name: the removal of all of
    /// them is recorded by one append, then the applier removes their files. Each topic's
    /// partitions count against the mutation quota. The admin thread.
    pub(crate) fn delete_topics(
        &self,
        names: Vec<String>,
        quota: QuotaMode,
    ) -> Vec<Result<Arc<Topic>, TopicError>> {
        let now = Instant::now();
        let (decided, records) = controller::delete_topics(&self.image(), &names, &mut |count| {
            Ok(self.mutation_quota.admit(quota, count, now)?)
        });
        let mut results: Vec<Result<Arc<Topic>, TopicError>> = decided
            .into_iter()
            .zip(&names)
            .map(|(r, name)| {
                r.and_then(|id| {
                    self.topic_by_id(id)
                        .ok_or_else(|| TopicError::Unknown(name.clone()))
                })
            })
            .collect();
        if records.is_empty() {
            return results;
        }
        if let Err(e) = self.commit(records) {
            warn!(error = %e, "cannot record deleted topics");
            for result in &mut results {
                if result.is_ok() {
                    *result = Err(TopicError::Unpersisted(e.to_string()));
                }
            }
        }
        results
    }

    /// Read-modify-write of a topic's config overrides: `change` gets the current
    /// overrides and returns the complete new set (validated again here); the difference
    /// is recorded and the applier applies it live to every partition. With
    /// `validate_only` nothing changes. Blocking: runs on the admin thread (so two
    /// alterations cannot lose each other's change) and waits for it.
    pub fn update_topic_configs<F>(
        &self,
        name: &str,
        validate_only: bool,
        change: F,
    ) -> Result<Arc<Topic>, TopicError>
    where
        F: FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, TopicError>
            + Send
            + 'static,
    {
        let name = name.to_owned();
        self.run_admin(move |broker| broker.alter_topic_configs(&name, validate_only, change))?
    }

    /// [`Broker::update_topic_configs`] on the admin thread.
    pub(crate) fn alter_topic_configs(
        &self,
        name: &str,
        validate_only: bool,
        change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, TopicError>,
    ) -> Result<Arc<Topic>, TopicError> {
        let image = self.image();
        if image.topics.by_name(name).is_none() {
            return Err(TopicError::Unknown(name.to_owned()));
        }
        let current = image.configs.topic(name);
        let configs = change(&current)?;
        log_config_for(&self.default_log_config(), &configs)?;
        if !validate_only {
            let resource = ConfigResource::Topic(name.to_owned());
            let records = controller::config_changes(&resource, &current, &configs);
            if !records.is_empty() {
                self.commit(records)
                    .map_err(|e| TopicError::Unpersisted(e.to_string()))?;
            }
        }
        self.topic(name)
            .ok_or_else(|| TopicError::Unknown(name.to_owned()))
    }

    /// Records the next producer-id block and hands it to the allocator (or tells it the
    /// block could not be recorded). The admin thread.
    fn allocate_producer_id_block(&self) {
        let image = self.image();
        let epoch = image
            .brokers
            .get(&self.node_id())
            .map_or(-1, |registration| registration.epoch);
        let Some((block, record)) = controller::producer_id_block(&image, self.node_id(), epoch)
        else {
            self.producer_ids
                .block_failed("every producer id has been used".to_owned());
            return;
        };
        match self.commit(vec![record]) {
            Ok(_) => {
                tracing::debug!(
                    start = block.start,
                    end = block.end,
                    "producer id block recorded"
                );
                self.producer_ids.add_block(block);
            }
            Err(e) => {
                warn!(error = %e, "cannot record a producer id block");
                self.producer_ids.block_failed(e.to_string());
            }
        }
    }

    /// Asks the admin thread for the next producer-id block. Never blocks.
    pub(crate) fn request_producer_id_block(&self) {
        let job: super::admin_queue::AdminJob = Box::new(Broker::allocate_producer_id_block);
        if self.admin_queue.submit(job).is_err() {
            self.producer_ids
                .block_failed("the broker is shutting down".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::describe_configs::fixture::TestBroker;

    fn new_topics(prefix: &str, count: usize, partitions: i32) -> Vec<NewTopic> {
        (0..count)
            .map(|i| NewTopic {
                name: format!("{prefix}{i}"),
                partitions,
                configs: BTreeMap::new(),
            })
            .collect()
    }

    /// A request appends to the metadata log once, however many topics it creates, grows
    /// or deletes (the cost of a request is linear in what it names).
    #[test]
    fn one_metadata_append_per_request() {
        let t = TestBroker::open();
        let before = t.broker.metadata.appends();
        let created = t
            .broker
            .run_admin(|b| b.create_topics(new_topics("t", 50, 2), false, QuotaMode::Exempt))
            .unwrap();
        assert!(created.iter().all(|r| matches!(r, Ok(Some(_)))));
        assert_eq!(t.broker.metadata.appends(), before + 1);
        assert_eq!(t.broker.partition_count(), 100);
        let grow = (0..50).map(|i| (format!("t{i}"), 3)).collect();
        let grown = t
            .broker
            .run_admin(|b| b.add_partitions(grow, false, QuotaMode::Exempt))
            .unwrap();
        assert!(grown.iter().all(Result::is_ok));
        assert_eq!(t.broker.metadata.appends(), before + 2);
        assert_eq!(t.broker.partition_count(), 150);
        let doomed = (0..50).map(|i| format!("t{i}")).collect();
        let deleted = t
            .broker
            .run_admin(|b| b.delete_topics(doomed, QuotaMode::Exempt))
            .unwrap();
        assert!(deleted.iter().all(Result::is_ok));
        assert_eq!(t.broker.metadata.appends(), before + 3);
        assert_eq!(t.broker.partition_count(), 0);
        // Nothing valid to do: nothing written.
        let none = t
            .broker
            .run_admin(|b| b.create_topics(new_topics("bad name ", 3, 1), false, QuotaMode::Exempt))
            .unwrap();
        assert!(none.iter().all(Result::is_err));
        assert_eq!(t.broker.metadata.appends(), before + 3);
    }

    /// Names colliding with each other inside one request, or with an existing topic, are
    /// refused like Kafka's (`.` and `_` are the same in metric names); the first wins.
    #[test]
    fn collisions_within_a_request_and_with_existing_topics() {
        let t = TestBroker::open();
        t.broker.create_topic("a.b", 1, BTreeMap::new()).unwrap();
        let topics = ["a_b", "c.d", "c_d", "c.d"]
            .iter()
            .map(|name| NewTopic {
                name: (*name).to_owned(),
                partitions: 1,
                configs: BTreeMap::new(),
            })
            .collect();
        let results = t
            .broker
            .run_admin(|b| b.create_topics(topics, false, QuotaMode::Exempt))
            .unwrap();
        let codes: Vec<i16> = results
            .iter()
            .map(|r| r.as_ref().map_or_else(TopicError::error_code, |_| 0))
            .collect();
        assert_eq!(codes, vec![17, 0, 17, 36]);
        assert!(t.broker.topic("c.d").is_some());
        assert!(t.broker.topic("c_d").is_none());
    }
}
