//! The controller's decisions: from a request and the current image to the records that
//! carry it out, and to each item's answer. No I/O, no clock (the caller passes the
//! mutation-quota admission in): the admin thread (`broker::admin`) runs these, then
//! stages partitions, appends the records and waits until they are applied.
//!
//! Checks run in Kafka's order (see `broker::admin` for the order per request).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

use strata_storage::LogConfig;
use uuid::Uuid;

use super::image::MetadataImage;
use super::record::{
    ConfigRecord, ConfigResource, MetadataRecord, PartitionRecord, ProducerIdsRecord,
    RemoveTopicRecord, TopicRecord,
};
use crate::broker::partition_limits::{
    BrokerPartitionCap, MAX_PARTITIONS_PER_REQUEST, MAX_PARTITIONS_PER_TOPIC,
};
use crate::broker::topic_name::{has_collision_chars, unify_collision_chars, validate_topic_name};
use crate::broker::{
    log_config_for, NewTopic, TopicError, TOO_LARGE_BATCH, TOO_MANY_PARTITIONS_PER_REQUEST,
};

/// What every decision is checked against besides the image.
#[derive(Debug, Clone)]
pub struct Limits {
    pub node_id: i32,
    /// Broker-wide log settings (static and dynamic); topic overrides apply on top.
    pub defaults: LogConfig,
    pub partition_cap: BrokerPartitionCap,
}

/// The mutation quota's answer for adding or removing `n` partitions.
pub type Admit<'a> = dyn FnMut(u64) -> Result<(), TopicError> + 'a;

/// Partitions `first..end` of a topic to create (a new topic: `first` = 0).
#[derive(Debug, Clone)]
pub struct Planned {
    /// Index of the topic in the request (and in the results).
    pub index: usize,
    pub name: String,
    pub id: Uuid,
    pub configs: BTreeMap<String, String>,
    pub log_config: LogConfig,
    pub first: u32,
    pub end: u32,
    /// Whether the topic itself is new (a `TopicRecord` and its configs come first).
    pub new_topic: bool,
}

impl Planned {
    /// The records that create what is planned, placing each partition on `node_id`.
    pub fn records(&self, node_id: i32) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        if self.new_topic {
            records.push(MetadataRecord::Topic(TopicRecord {
                name: self.name.clone(),
                topic_id: self.id,
            }));
        }
        records.extend((self.first..self.end).map(|p| {
            MetadataRecord::Partition(PartitionRecord {
                topic_id: self.id,
                partition_id: p,
                replicas: vec![node_id],
                isr: vec![node_id],
                leader: node_id,
                leader_epoch: 0,
                partition_epoch: 0,
            })
        }));
        if self.new_topic {
            records.extend(self.configs.iter().map(|(name, value)| {
                MetadataRecord::Config(ConfigRecord {
                    resource: ConfigResource::Topic(self.name.clone()),
                    name: name.clone(),
                    value: Some(value.clone()),
                })
            }));
        }
        records
    }
}

/// One answer per request item, and what to create for the valid ones.
#[derive(Debug)]
pub struct Decision {
    /// `Ok` for an item that is valid (and, unless validate-only, planned).
    pub results: Vec<Result<(), TopicError>>,
    pub planned: Vec<Planned>,
}

/// CreateTopics and auto-creation: the request's total against
/// [`MAX_PARTITIONS_PER_REQUEST`] (every topic fails), then per topic the name,
/// existence, collisions, the partition count and the per-topic cap, the configs, the
/// broker-wide cap, and the mutation quota (not asked for `validate_only`).
pub fn create_topics(
    image: &MetadataImage,
    limits: &Limits,
    topics: Vec<NewTopic>,
    validate_only: bool,
    admit: &mut Admit<'_>,
) -> Decision {
    let requested = topics.iter().fold(0u64, |sum, t| {
        sum.saturating_add(u64::try_from(t.partitions).unwrap_or(0))
    });
    if requested > MAX_PARTITIONS_PER_REQUEST {
        return Decision {
            results: topics
                .iter()
                .map(|_| Err(TopicError::RequestTooLarge(TOO_MANY_PARTITIONS_PER_REQUEST)))
                .collect(),
            planned: Vec::new(),
        };
    }
    let mut held = image.topics.partition_count();
    // Names admitted by this request, by collision key.
    let mut admitted: HashMap<String, String> = HashMap::new();
    let mut results = Vec::with_capacity(topics.len());
    let mut planned = Vec::new();
    for (index, topic) in topics.into_iter().enumerate() {
        let checked = check_new_topic(image, limits, &admitted, &topic, held).and_then(
            |(count, log_config)| {
                if !validate_only {
                    admit(count)?;
                }
                Ok((count, log_config))
            },
        );
        let (count, log_config) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                results.push(Err(e));
                continue;
            }
        };
        held += count;
        admitted.insert(unify_collision_chars(&topic.name), topic.name.clone());
        results.push(Ok(()));
        if !validate_only {
            planned.push(Planned {
                index,
                name: topic.name,
                id: Uuid::new_v4(),
                configs: topic.configs,
                log_config,
                first: 0,
                // `count` <= MAX_PARTITIONS_PER_TOPIC.
                end: count as u32,
                new_topic: true,
            });
        }
    }
    Decision { results, planned }
}

/// What [`create_topics`] checks for one topic, given the topics admitted so far by the
/// same request and the partitions held with them. Returns the partition count and the
/// topic's log config.
fn check_new_topic(
    image: &MetadataImage,
    limits: &Limits,
    admitted: &HashMap<String, String>,
    topic: &NewTopic,
    held: u64,
) -> Result<(u64, LogConfig), TopicError> {
    let name = topic.name.as_str();
    validate_topic_name(name)?;
    let admitted_already = admitted
        .get(&unify_collision_chars(name))
        .is_some_and(|n| n == name);
    if image.topics.by_name(name).is_some() || admitted_already {
        return Err(TopicError::AlreadyExists(name.to_owned()));
    }
    let collision = image.topics.collision(name).map(str::to_owned).or_else(|| {
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
    let log_config = log_config_for(&limits.defaults, &topic.configs)?;
    check_partition_cap(&limits.partition_cap, held, count)?;
    Ok((count, log_config))
}

/// Err when holding `adding` more partitions than `held` exceeds the broker's cap.
pub fn check_partition_cap(
    cap: &BrokerPartitionCap,
    held: u64,
    adding: u64,
) -> Result<(), TopicError> {
    let (limit, _) = cap.limit();
    if held.saturating_add(adding) > limit {
        return Err(TopicError::BrokerPartitionCap {
            adding,
            held,
            cap: *cap,
        });
    }
    Ok(())
}

/// CreatePartitions: the partitions the whole request adds against
/// [`MAX_PARTITIONS_PER_REQUEST`] (every topic fails), then per topic existence, growth,
/// the per-topic and broker-wide caps and the mutation quota (not asked for
/// `validate_only`).
pub fn add_partitions(
    image: &MetadataImage,
    limits: &Limits,
    requests: Vec<(String, i32)>,
    validate_only: bool,
    admit: &mut Admit<'_>,
) -> Decision {
    let current = |name: &str| {
        image
            .topics
            .by_name(name)
            .map_or(0, |t| t.partitions.len() as u64)
    };
    let adding_in_all = requests.iter().fold(0u64, |sum, (name, count)| {
        sum.saturating_add(
            u64::try_from(*count)
                .unwrap_or(0)
                .saturating_sub(current(name)),
        )
    });
    if adding_in_all > MAX_PARTITIONS_PER_REQUEST {
        return Decision {
            results: requests
                .iter()
                .map(|_| Err(TopicError::RequestTooLarge(TOO_LARGE_BATCH)))
                .collect(),
            planned: Vec::new(),
        };
    }
    let mut held = image.topics.partition_count();
    let mut results = Vec::with_capacity(requests.len());
    let mut planned = Vec::new();
    for (index, (name, count)) in requests.into_iter().enumerate() {
        let checked = image
            .topics
            .by_name(&name)
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
                let configs = image.configs.topic(&name);
                let log_config = log_config_for(&limits.defaults, &configs)?;
                check_partition_cap(&limits.partition_cap, held, wanted - current)?;
                if !validate_only {
                    admit(wanted - current)?;
                }
                Ok((topic.id, current, wanted, configs, log_config))
            });
        match checked {
            Err(e) => results.push(Err(e)),
            Ok((id, current, wanted, configs, log_config)) => {
                held += wanted - current;
                if !validate_only {
                    planned.push(Planned {
                        index,
                        name,
                        id,
                        configs,
                        log_config,
                        // Both <= MAX_PARTITIONS_PER_TOPIC.
                        first: current as u32,
                        end: wanted as u32,
                        new_topic: false,
                    });
                }
                results.push(Ok(()));
            }
        }
    }
    Decision { results, planned }
}

/// DeleteTopics: per name, the topic's id (a topic named twice is deleted by its first
/// mention; the others are UNKNOWN_TOPIC_OR_PARTITION), each asking the mutation quota
/// for its partitions; and the records removing them.
pub fn delete_topics(
    image: &MetadataImage,
    names: &[String],
    admit: &mut Admit<'_>,
) -> (Vec<Result<Uuid, TopicError>>, Vec<MetadataRecord>) {
    let mut seen = HashSet::new();
    let results: Vec<Result<Uuid, TopicError>> = names
        .iter()
        .map(|name| {
            let topic = image
                .topics
                .by_name(name)
                .filter(|_| seen.insert(name.clone()))
                .ok_or_else(|| TopicError::Unknown(name.clone()))?;
            admit(topic.partitions.len() as u64)?;
            Ok(topic.id)
        })
        .collect();
    let records = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|id| MetadataRecord::RemoveTopic(RemoveTopicRecord { topic_id: *id }))
        .collect();
    (results, records)
}

/// The config records that turn `resource`'s set `current` into `wanted`: each key set
/// to a new value, each key no longer there removed.
pub fn config_changes(
    resource: &ConfigResource,
    current: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> Vec<MetadataRecord> {
    let set = wanted
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k, Some(v.clone())));
    let removed = current
        .keys()
        .filter(|k| !wanted.contains_key(*k))
        .map(|k| (k, None));
    set.chain(removed)
        .map(|(name, value)| {
            MetadataRecord::Config(ConfigRecord {
                resource: resource.clone(),
                name: name.clone(),
                value,
            })
        })
        .collect()
}

/// Producer ids reserved per block (Kafka's `PRODUCER_ID_BLOCK_SIZE`).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// The next block of producer ids for `broker_id` and the record that hands it out; None
/// when the ids are exhausted.
pub fn producer_id_block(
    image: &MetadataImage,
    broker_id: i32,
    broker_epoch: i64,
) -> Option<(Range<i64>, MetadataRecord)> {
    let start = image.next_producer_id;
    let end = start.checked_add(PRODUCER_ID_BLOCK_SIZE)?;
    let record = MetadataRecord::ProducerIds(ProducerIdsRecord {
        broker_id,
        broker_epoch,
        next_producer_id: end,
    });
    Some((start..end, record))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::partition_limits::BrokerPartitionCap;

    fn limits(cap: u64) -> Limits {
        Limits {
            node_id: 0,
            defaults: LogConfig::default(),
            partition_cap: BrokerPartitionCap::new(cap, None, 0),
        }
    }

    fn new_topic(name: &str, partitions: i32) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions,
            configs: BTreeMap::new(),
        }
    }

    fn image_with(topics: &[(&str, u32)]) -> MetadataImage {
        let planned = create_topics(
            &MetadataImage::default(),
            &limits(u64::MAX),
            topics
                .iter()
                .map(|(n, p)| new_topic(n, *p as i32))
                .collect(),
            false,
            &mut |_| Ok(()),
        )
        .planned;
        let records: Vec<MetadataRecord> = planned.iter().flat_map(|p| p.records(0)).collect();
        MetadataImage::default().apply_batch(&records).unwrap()
    }

    fn codes<T>(results: &[Result<T, TopicError>]) -> Vec<i16> {
        results
            .iter()
            .map(|r| r.as_ref().map_or_else(TopicError::error_code, |_| 0))
            .collect()
    }

    /// (request, codes): existence, collisions within the request and with the image,
    /// counts, the per-topic and broker caps (the cap is 10 partitions; 3 are held).
    /// (topics with partition counts, expected error codes).
    type CreateCase<'a> = (&'a [(&'a str, i32)], &'a [i16]);

    #[test]
    fn create_checks_in_kafkas_order() {
        let image = image_with(&[("a.b", 2), ("held", 1)]);
        let cases: &[CreateCase<'_>] = &[
            (
                &[("a_b", 1), ("c.d", 1), ("c_d", 1), ("c.d", 1)],
                &[17, 0, 17, 36],
            ),
            (&[("held", 1), ("bad name", 1)], &[36, 17]),
            (&[("zero", 0), ("negative", -1)], &[37, 37]),
            (&[("fits", 7), ("over", 1)], &[0, 44]),
        ];
        for (request, want) in cases {
            let topics = request.iter().map(|(n, p)| new_topic(n, *p)).collect();
            let decision = create_topics(&image, &limits(10), topics, false, &mut |_| Ok(()));
            assert_eq!(codes(&decision.results), *want, "{request:?}");
            assert_eq!(
                decision.planned.len(),
                want.iter().filter(|c| **c == 0).count()
            );
        }
        // The request's total beyond 10,000: every topic fails, nothing is planned.
        let topics = vec![new_topic("x", 6_000), new_topic("y", 6_000)];
        let decision = create_topics(&image, &limits(u64::MAX), topics, false, &mut |_| Ok(()));
        assert_eq!(codes(&decision.results), [44, 44]);
        assert!(decision.planned.is_empty());
    }

    #[test]
    fn validate_only_plans_nothing_and_asks_no_quota() {
        let image = image_with(&[]);
        let mut asked = 0;
        let decision = create_topics(
            &image,
            &limits(100),
            vec![new_topic("t", 3)],
            true,
            &mut |n| {
                asked += n;
                Ok(())
            },
        );
        assert_eq!(codes(&decision.results), [0]);
        assert!(decision.planned.is_empty());
        assert_eq!(asked, 0);
    }

    #[test]
    fn growth_deletion_and_config_changes_become_records() {
        let image = image_with(&[("t", 2)]);
        let grown = add_partitions(
            &image,
            &limits(100),
            vec![("t".into(), 5), ("t".into(), 1), ("gone".into(), 3)],
            false,
            &mut |_| Ok(()),
        );
        assert_eq!(codes(&grown.results), [0, 37, 3]);
        let records = grown.planned[0].records(0);
        assert_eq!(records.len(), 3, "partitions 2, 3 and 4 only");
        let image = image.apply_batch(&records).unwrap();
        assert_eq!(image.topics.by_name("t").unwrap().partitions.len(), 5);

        let names = vec!["t".to_owned(), "t".to_owned(), "gone".to_owned()];
        let (results, records) = delete_topics(&image, &names, &mut |_| Ok(()));
        assert_eq!(codes(&results), [0, 3, 3]);
        assert_eq!(records.len(), 1);

        let current = BTreeMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ]);
        let wanted = BTreeMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("c".to_owned(), "3".to_owned()),
        ]);
        let resource = ConfigResource::Topic("t".into());
        let changes = config_changes(&resource, &current, &wanted);
        let pairs: Vec<(String, Option<String>)> = changes
            .iter()
            .map(|r| match r {
                MetadataRecord::Config(c) => (c.name.clone(), c.value.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            pairs,
            [
                ("c".to_owned(), Some("3".to_owned())),
                ("b".to_owned(), None)
            ]
        );
    }

    #[test]
    fn producer_id_blocks_follow_each_other_until_exhausted() {
        let mut image = image_with(&[]);
        let (first, record) = producer_id_block(&image, 0, 1).unwrap();
        assert_eq!(first, 0..PRODUCER_ID_BLOCK_SIZE);
        image.apply(&record).unwrap();
        let (second, _) = producer_id_block(&image, 0, 1).unwrap();
        assert_eq!(second.start, first.end);
        image.next_producer_id = i64::MAX - 10;
        assert!(producer_id_block(&image, 0, 1).is_none());
    }
}
