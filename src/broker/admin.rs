//! Topic administration: creating topics, adding partitions and deleting topics, each
//! for a whole request at once (one metadata write however many topics it names), and
//! altering a topic's configs.
//!
//! The batch operations run on the admin thread: request handlers submit them with
//! [`Broker::submit_admin`]; [`Broker::create_topic`] and [`Broker::delete_topic`] are
//! blocking conveniences that go through it as well. A batch checks every topic first
//! (caps, quota, names, configs), then opens all new partitions in parallel without any
//! lock, then writes the metadata once and publishes every topic it created. A topic whose
//! partitions could not all be opened is not created and leaves no directory behind.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use strata_storage::{Log, LogConfig};
use tracing::{info, warn};
use uuid::Uuid;

use super::mutation_quota::QuotaMode;
use super::partition_limits::{MAX_PARTITIONS_PER_REQUEST, MAX_PARTITIONS_PER_TOPIC};
use super::topic_name::{has_collision_chars, unify_collision_chars, validate_topic_name};
use super::{
    log_config_for, open_in_parallel, partition_dir, Broker, Topic, TopicError, TopicTable,
    TOO_LARGE_BATCH, TOO_MANY_PARTITIONS_PER_REQUEST,
};

/// One topic a creation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    /// Requested partition count (checked: 1..=10000 and the broker-wide cap).
    pub partitions: i32,
    /// Config overrides (Kafka key -> value).
    pub configs: BTreeMap<String, String>,
}

/// A topic checked and admitted, whose partitions `first..end` are to be opened.
struct Planned {
    /// Index of the topic in the request (and in the results).
    index: usize,
    name: String,
    configs: BTreeMap<String, String>,
    log_config: LogConfig,
    first: u32,
    end: u32,
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

    /// Creates `topics` (CreateTopics, auto-creation), one result per topic in order:
    /// `Ok(Some(topic))` when created, `Ok(None)` when `validate_only` found it valid.
    /// Checks, in Kafka's order: the request's total against
    /// [`MAX_PARTITIONS_PER_REQUEST`] (every topic fails), then per topic the name,
    /// existence, collisions, the partition count and the per-topic cap, the configs, the
    /// broker-wide cap, and the mutation quota (not charged for `validate_only`). Every
    /// created topic is persisted by one metadata write. Runs on the admin thread.
    pub(crate) fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
        quota: QuotaMode,
    ) -> Vec<Result<Option<Arc<Topic>>, TopicError>> {
        let requested = topics.iter().fold(0u64, |sum, t| {
            sum.saturating_add(u64::try_from(t.partitions).unwrap_or(0))
        });
        if requested > MAX_PARTITIONS_PER_REQUEST {
            return topics
                .iter()
                .map(|_| Err(TopicError::RequestTooLarge(TOO_MANY_PARTITIONS_PER_REQUEST)))
                .collect();
        }
        let now = Instant::now();
        let defaults = self.default_log_config();
        let mut held = self.partition_count();
        // Names admitted by this request, by collision key.
        let mut admitted: HashMap<String, String> = HashMap::new();
        let mut results = Vec::with_capacity(topics.len());
        let mut planned = Vec::new();
        for (index, topic) in topics.into_iter().enumerate() {
            let checked = self
                .check_new_topic(&self.read_table(), &admitted, &topic, &defaults, held)
                .and_then(|(count, log_config)| {
                    if !validate_only {
                        self.mutation_quota.admit(quota, count, now)?;
                    }
                    Ok((count, log_config))
                });
            let (count, log_config) = match checked {
                Ok(checked) => checked,
                Err(e) => {
                    results.push(Err(e));
                    continue;
                }
            };
            held += count;
            admitted.insert(unify_collision_chars(&topic.name), topic.name.clone());
            results.push(Ok(None));
            if !validate_only {
                planned.push(Planned {
                    index,
                    name: topic.name,
                    configs: topic.configs,
                    log_config,
                    first: 0,
                    // `count` <= MAX_PARTITIONS_PER_TOPIC.
                    end: count as u32,
                });
            }
        }
        if planned.is_empty() {
            return results;
        }
        let mut created = Vec::new();
        let opened = self.open_new_partitions(&planned);
        for (plan, outcome) in planned.into_iter().zip(opened) {
            match outcome {
                Ok(logs) => created.push((
                    plan.index,
                    Arc::new(Topic {
                        name: plan.name,
                        id: Uuid::new_v4(),
                        partitions: logs,
                        configs: plan.configs,
                    }),
                )),
                Err(e) => results[plan.index] = Err(e),
            }
        }
        if created.is_empty() {
            return results;
        }
        let saved = {
            let _guard = self.lock_admin();
            let mut doc = self.document();
            doc.topics.extend(created.iter().map(|(_, t)| t.record()));
            self.store.save(&doc).map(|()| {
                let mut table = self.write_table();
                for (_, topic) in &created {
                    table.insert(topic.clone());
                }
            })
        };
        match saved {
            Ok(()) => {
                for (index, topic) in created {
                    results[index] = Ok(Some(topic));
                }
            }
            Err(e) => {
                warn!(error = %e, topics = created.len(), "cannot persist created topics");
                for (index, topic) in created {
                    discard_logs(&topic.partitions);
                    results[index] = Err(TopicError::Unpersisted(e.to_string()));
                }
            }
        }
        results
    }

    /// What `create_topics` checks for one topic, given the topics admitted so far by the
    /// same request and the partitions held with them. Returns the partition count and
    /// the topic's log config.
    fn check_new_topic(
        &self,
        table: &TopicTable,
        admitted: &HashMap<String, String>,
        topic: &NewTopic,
        defaults: &LogConfig,
        held: u64,
    ) -> Result<(u64, LogConfig), TopicError> {
        let name = topic.name.as_str();
        validate_topic_name(name)?;
        let admitted_already = admitted
            .get(&unify_collision_chars(name))
            .is_some_and(|n| n == name);
        if table.by_name.contains_key(name) || admitted_already {
            return Err(TopicError::AlreadyExists(name.to_owned()));
        }
        let collision = table.collision(name).map(str::to_owned).or_else(|| {
            has_collision_chars(name)
                .then(|| admitted.get(&unify_collision_chars(name)).cloned())
                .flatten()
        });
        if let Some(existing) = collision {
            return Err(TopicError::Collides {
                name: name.to_owned(),
                existing,
            });
        }
        let count = u64::try_from(topic.partitions)
            .ok()
            .filter(|count| *count >= 1)
            .ok_or_else(|| {
                TopicError::InvalidPartitions(format!(
                    "Number of partitions must be larger than 0, got {}.",
                    topic.partitions
                ))
            })?;
        if count > MAX_PARTITIONS_PER_TOPIC {
            return Err(TopicError::TopicPartitionCap {
                topic: name.to_owned(),
                requested: count,
            });
        }
        let log_config = log_config_for(defaults, &topic.configs)?;
        self.check_partition_cap(held, count)?;
        Ok((count, log_config))
    }

    /// Err when holding `adding` more partitions than `held` exceeds the broker's cap.
    pub(crate) fn check_partition_cap(&self, held: u64, adding: u64) -> Result<(), TopicError> {
        let (limit, _) = self.partition_cap.limit();
        if held.saturating_add(adding) > limit {
            return Err(TopicError::BrokerPartitionCap {
                adding,
                held,
                cap: self.partition_cap,
            });
        }
        Ok(())
    }

    /// Grows each named topic to the given partition count (CreatePartitions), one result
    /// per request entry. Checks, in Kafka's order: the partitions the whole request adds
    /// against [`MAX_PARTITIONS_PER_REQUEST`] (every topic fails), then per topic
    /// existence, growth, the per-topic and broker-wide caps and the mutation quota (not
    /// charged for `validate_only`). One metadata write. Runs on the admin thread.
    pub(crate) fn add_partitions(
        &self,
        requests: Vec<(String, i32)>,
        validate_only: bool,
        quota: QuotaMode,
    ) -> Vec<Result<Arc<Topic>, TopicError>> {
        let adding_in_all = requests.iter().fold(0u64, |sum, (name, count)| {
            let current = self.topic(name).map_or(0, |t| t.partitions.len() as u64);
            sum.saturating_add(u64::try_from(*count).unwrap_or(0).saturating_sub(current))
        });
        if adding_in_all > MAX_PARTITIONS_PER_REQUEST {
            return requests
                .iter()
                .map(|_| Err(TopicError::RequestTooLarge(TOO_LARGE_BATCH)))
                .collect();
        }
        let now = Instant::now();
        let defaults = self.default_log_config();
        let mut held = self.partition_count();
        let mut results = Vec::with_capacity(requests.len());
        let mut planned = Vec::new();
        for (index, (name, count)) in requests.into_iter().enumerate() {
            let checked = self
                .topic(&name)
                .ok_or_else(|| TopicError::Unknown(name.clone()))
                .and_then(|topic| {
                    let current = topic.partitions.len() as u64;
                    let wanted = u64::try_from(count).unwrap_or(0);
                    if wanted <= current {
                        return Err(TopicError::InvalidPartitions(format!(
                            "Topic currently has {current} partitions, which is higher than or \
                             equal to the requested {count}."
                        )));
                    }
                    if wanted > MAX_PARTITIONS_PER_TOPIC {
                        return Err(TopicError::TopicPartitionCap {
                            topic: name.clone(),
                            requested: wanted,
                        });
                    }
                    let log_config = log_config_for(&defaults, &topic.configs)?;
                    self.check_partition_cap(held, wanted - current)?;
                    if !validate_only {
                        self.mutation_quota.admit(quota, wanted - current, now)?;
                    }
                    Ok((topic, current, wanted, log_config))
                });
            match checked {
                Err(e) => results.push(Err(e)),
                Ok((topic, current, wanted, log_config)) => {
                    held += wanted - current;
                    if !validate_only {
                        planned.push(Planned {
                            index,
                            name: topic.name.clone(),
                            configs: topic.configs.clone(),
                            log_config,
                            // Both <= MAX_PARTITIONS_PER_TOPIC.
                            first: current as u32,
                            end: wanted as u32,
                        });
                    }
                    results.push(Ok(topic));
                }
            }
        }
        if planned.is_empty() {
            return results;
        }
        let opened = self.open_new_partitions(&planned);
        let mut grown: Vec<(usize, String, Vec<Arc<Log>>)> = Vec::new();
        for (plan, outcome) in planned.into_iter().zip(opened) {
            match outcome {
                Ok(logs) => grown.push((plan.index, plan.name, logs)),
                Err(e) => results[plan.index] = Err(e),
            }
        }
        if grown.is_empty() {
            return results;
        }
        let _guard = self.lock_admin();
        // The topics as they are now (their configs may have been altered meanwhile),
        // with the new partitions.
        let updated: Vec<(usize, Arc<Topic>)> = grown
            .into_iter()
            .filter_map(|(index, name, logs)| {
                let Some(current) = self.topic(&name) else {
                    discard_logs(&logs);
                    results[index] = Err(TopicError::Unknown(name));
                    return None;
                };
                if let Ok(config) = log_config_for(&defaults, &current.configs) {
                    for log in &logs {
                        log.set_config(config.clone());
                    }
                }
                let mut partitions = current.partitions.clone();
                partitions.extend(logs);
                Some((
                    index,
                    Arc::new(Topic {
                        name,
                        id: current.id,
                        partitions,
                        configs: current.configs.clone(),
                    }),
                ))
            })
            .collect();
        let mut doc = self.document();
        for record in &mut doc.topics {
            if let Some((_, topic)) = updated.iter().find(|(_, t)| t.name == record.name) {
                *record = topic.record();
            }
        }
        match self.store.save(&doc) {
            Ok(()) => {
                let mut table = self.write_table();
                for (index, topic) in updated {
                    table.insert(topic.clone());
                    results[index] = Ok(topic);
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot persist added partitions");
                for (index, topic) in updated {
                    let before = self.topic(&topic.name).map_or(0, |t| t.partitions.len());
                    discard_logs(topic.partitions.get(before..).unwrap_or_default());
                    results[index] = Err(TopicError::Unpersisted(e.to_string()));
                }
            }
        }
        results
    }

    /// Deletes the named topics (DeleteTopics), one result per name: the removal of all of
    /// them is made durable by one metadata write, then their files are removed. Each
    /// topic's partitions count against the mutation quota. Runs on the admin thread.
    pub(crate) fn delete_topics(
        &self,
        names: Vec<String>,
        quota: QuotaMode,
    ) -> Vec<Result<Arc<Topic>, TopicError>> {
        let now = Instant::now();
        let mut seen = std::collections::HashSet::new();
        let mut results: Vec<Result<Arc<Topic>, TopicError>> = names
            .into_iter()
            .map(|name| {
                // Named twice (by name and by id): deleted by its first mention.
                let topic = self
                    .topic(&name)
                    .filter(|_| seen.insert(name.clone()))
                    .ok_or(TopicError::Unknown(name))?;
                self.mutation_quota
                    .admit(quota, topic.partitions.len() as u64, now)?;
                Ok(topic)
            })
            .collect();
        if !results.iter().any(Result::is_ok) {
            return results;
        }
        let saved = {
            let _guard = self.lock_admin();
            let mut doc = self.document();
            let doomed: std::collections::HashSet<&str> = results
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .map(|t| t.name.as_str())
                .collect();
            doc.topics.retain(|t| !doomed.contains(t.name.as_str()));
            self.store.save(&doc).map(|()| {
                let mut table = self.write_table();
                for name in doomed {
                    table.remove(name);
                }
            })
        };
        if let Err(e) = saved {
            warn!(error = %e, "cannot persist deleted topics");
            for result in &mut results {
                if result.is_ok() {
                    *result = Err(TopicError::Unpersisted(e.to_string()));
                }
            }
            return results;
        }
        for topic in results.iter().filter_map(|r| r.as_ref().ok()) {
            for (p, log) in topic.partitions.iter().enumerate() {
                if let Err(e) = log.delete() {
                    warn!(topic = %topic.name, partition = p, error = %e,
                          "could not remove partition files; removed at next start");
                }
            }
            info!(topic = %topic.name, "deleted topic");
        }
        results
    }

    /// Opens partitions `first..end` of every planned topic, all in parallel; one outcome
    /// per plan. A topic is created only if all its partitions open: otherwise the ones
    /// that did are removed again, and so are the directories of the ones that failed
    /// half-way (a failure stops the request's remaining opens; their topics fail too).
    fn open_new_partitions(&self, planned: &[Planned]) -> Vec<Result<Vec<Arc<Log>>, TopicError>> {
        let jobs: Vec<(usize, u32)> = planned
            .iter()
            .enumerate()
            .flat_map(|(t, plan)| (plan.first..plan.end).map(move |p| (t, p)))
            .collect();
        let data_dir = &self.config.data_dir;
        let outcomes = open_in_parallel(jobs.len(), |i| {
            let (t, p) = jobs[i];
            let plan = &planned[t];
            let dir = partition_dir(data_dir, &plan.name, p);
            // A directory here is a leftover of an unfinished create or delete (the
            // metadata, which is authoritative, does not list it): start empty.
            if dir.exists() {
                if let Err(source) = std::fs::remove_dir_all(&dir) {
                    return Err(TopicError::StaleDir { path: dir, source });
                }
            }
            Log::open(dir, plan.log_config.clone(), &self.flusher).map_err(TopicError::from)
        });
        let mut opened: Vec<Vec<Arc<Log>>> = planned.iter().map(|_| Vec::new()).collect();
        let mut errors: Vec<Option<TopicError>> = planned.iter().map(|_| None).collect();
        let mut incomplete = vec![false; planned.len()];
        let mut failed_dirs: Vec<PathBuf> = Vec::new();
        let mut first_failure: Option<String> = None;
        for (&(t, p), outcome) in jobs.iter().zip(outcomes) {
            match outcome {
                Some(Ok(log)) => opened[t].push(log),
                Some(Err(e)) => {
                    let dir = partition_dir(data_dir, &planned[t].name, p);
                    first_failure.get_or_insert_with(|| format!("{}: {e}", dir.display()));
                    failed_dirs.push(dir);
                    errors[t].get_or_insert(e);
                }
                None => incomplete[t] = true,
            }
        }
        let outcomes: Vec<Result<Vec<Arc<Log>>, TopicError>> = opened
            .into_iter()
            .zip(errors)
            .zip(incomplete)
            .map(|((logs, error), incomplete)| match (error, incomplete) {
                (None, false) => Ok(logs),
                (error, _) => {
                    discard_logs(&logs);
                    Err(error.unwrap_or_else(|| {
                        TopicError::Aborted(format!(
                            "another partition of the same request failed: {}",
                            first_failure.as_deref().unwrap_or("unknown error")
                        ))
                    }))
                }
            })
            .collect();
        // After the logs above are closed, so their descriptors are free again.
        for dir in failed_dirs {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => warn!(dir = %dir.display(), error = %e,
                                "could not remove the directory of a failed creation; \
                                 removed at next start"),
            }
        }
        outcomes
    }

    /// Read-modify-write of a topic's config overrides under the metadata lock, so two
    /// concurrent alterations cannot lose each other's change. `change` gets the current
    /// overrides and returns the complete new set (validated again here); the result is
    /// persisted and applied live to every partition. With `validate_only` nothing
    /// changes. Blocking (file I/O).
    pub fn update_topic_configs<F>(
        &self,
        name: &str,
        validate_only: bool,
        change: F,
    ) -> Result<Arc<Topic>, TopicError>
    where
        F: FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, TopicError>,
    {
        let _guard = self.lock_admin();
        let topic = self
            .topic(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let configs = change(&topic.configs)?;
        let log_config = log_config_for(&self.default_log_config(), &configs)?;
        if validate_only {
            return Ok(topic);
        }
        let updated = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            partitions: topic.partitions.clone(),
            configs,
        });
        self.replace_topic(updated.clone())?;
        for log in &updated.partitions {
            log.set_config(log_config.clone());
        }
        Ok(updated)
    }
}

/// Closes and removes the partitions of a topic that is not created after all.
fn discard_logs(logs: &[Arc<Log>]) {
    for log in logs {
        if let Err(e) = log.delete() {
            warn!(dir = %log.dir().display(), error = %e, "could not remove partition files");
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

    /// A request writes the metadata document once, however many topics it creates,
    /// grows or deletes (the cost of a request is linear in what it names).
    #[test]
    fn one_metadata_write_per_request() {
        let t = TestBroker::open();
        let before = t.broker.store.saves();
        let created = t
            .broker
            .run_admin(|b| b.create_topics(new_topics("t", 50, 2), false, QuotaMode::Exempt))
            .unwrap();
        assert!(created.iter().all(|r| matches!(r, Ok(Some(_)))));
        assert_eq!(t.broker.store.saves(), before + 1);
        assert_eq!(t.broker.partition_count(), 100);
        let grow = (0..50).map(|i| (format!("t{i}"), 3)).collect();
        let grown = t
            .broker
            .run_admin(|b| b.add_partitions(grow, false, QuotaMode::Exempt))
            .unwrap();
        assert!(grown.iter().all(Result::is_ok));
        assert_eq!(t.broker.store.saves(), before + 2);
        assert_eq!(t.broker.partition_count(), 150);
        let doomed = (0..50).map(|i| format!("t{i}")).collect();
        let deleted = t
            .broker
            .run_admin(|b| b.delete_topics(doomed, QuotaMode::Exempt))
            .unwrap();
        assert!(deleted.iter().all(Result::is_ok));
        assert_eq!(t.broker.store.saves(), before + 3);
        assert_eq!(t.broker.partition_count(), 0);
        // Nothing valid to do: nothing written.
        let none = t
            .broker
            .run_admin(|b| b.create_topics(new_topics("bad name ", 3, 1), false, QuotaMode::Exempt))
            .unwrap();
        assert!(none.iter().all(Result::is_err));
        assert_eq!(t.broker.store.saves(), before + 3);
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
