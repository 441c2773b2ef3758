//! The metadata image: everything the metadata log says, as of one offset, as an
//! immutable value (Kafka's `MetadataImage`). A new image is built by applying a batch of
//! records to a copy of the previous one; parts a batch does not touch are shared
//! (`Arc`), so a producer-id block does not copy the topics.
//!
//! Applying is deterministic and checks each record against the image: a record that
//! does not fit (a partition of an unknown topic, a gap in partition ids, a topic name
//! already taken, producer ids going backwards) is an [`ApplyError`], which at replay
//! means the log is damaged and at append that the batch is refused unwritten.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use super::record::{
    BrokerEndpoint, ConfigRecord, ConfigResource, MetadataRecord, PartitionChangeRecord,
    PartitionRecord, ProducerIdsRecord, RegisterBrokerRecord, RemoveTopicRecord, TopicRecord,
};
use crate::broker::topic_name;

/// A record that does not fit the image it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("record at offset {offset}: topic name {name} is already taken")]
    TopicExists { offset: u64, name: String },
    #[error("record at offset {offset}: topic id {id} is already taken")]
    TopicIdExists { offset: u64, id: Uuid },
    #[error("record at offset {offset}: no topic has id {id}")]
    UnknownTopic { offset: u64, id: Uuid },
    #[error("record at offset {offset}: partition {partition} of topic {id} is not the next one ({expected})")]
    PartitionGap {
        offset: u64,
        id: Uuid,
        partition: u32,
        expected: u32,
    },
    #[error("record at offset {offset}: topic {id} has no partition {partition}")]
    UnknownPartition {
        offset: u64,
        id: Uuid,
        partition: u32,
    },
    #[error("record at offset {offset}: next producer id {next} is not above {current}")]
    ProducerIdsBackwards {
        offset: u64,
        next: i64,
        current: i64,
    },
    #[error("record at offset {offset}: the cluster id is already {current}")]
    ClusterIdSet { offset: u64, current: String },
}

/// A broker as it last registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub broker_id: i32,
    pub incarnation_id: Uuid,
    /// The offset of its registration record.
    pub epoch: i64,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
}

/// One partition's replicas, leader and epochs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionImage {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// One topic: its name, id and partitions (index = partition id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionImage>,
}

/// Every topic, by id and by name, and what creation checks against.
#[derive(Debug, Clone, Default)]
pub struct TopicsImage {
    by_id: HashMap<Uuid, Arc<TopicImage>>,
    by_name: HashMap<String, Uuid>,
    /// `unify_collision_chars(name)` -> name (Kafka's `.` / `_` rule).
    by_collision_key: HashMap<String, String>,
    /// Partitions of every topic.
    partitions: u64,
}

impl TopicsImage {
    pub fn get(&self, id: &Uuid) -> Option<&Arc<TopicImage>> {
        self.by_id.get(id)
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.by_name.get(name).and_then(|id| self.by_id.get(id))
    }

    /// The existing topic `name` collides with (differs from only by `.` versus `_`).
    pub fn collision(&self, name: &str) -> Option<&str> {
        if !topic_name::has_collision_chars(name) {
            return None;
        }
        self.by_collision_key
            .get(&topic_name::unify_collision_chars(name))
            .map(String::as_str)
            .filter(|existing| *existing != name)
    }

    /// Partitions of every topic.
    pub fn partition_count(&self) -> u64 {
        self.partitions
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every topic, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<TopicImage>> {
        self.by_id.values()
    }

    fn insert(&mut self, topic: TopicImage) {
        self.partitions += topic.partitions.len() as u64;
        self.by_name.insert(topic.name.clone(), topic.id);
        self.by_collision_key.insert(
            topic_name::unify_collision_chars(&topic.name),
            topic.name.clone(),
        );
        self.by_id.insert(topic.id, Arc::new(topic));
    }

    fn remove(&mut self, id: &Uuid) -> Option<Arc<TopicImage>> {
        let topic = self.by_id.remove(id)?;
        self.partitions -= topic.partitions.len() as u64;
        self.by_name.remove(&topic.name);
        let key = topic_name::unify_collision_chars(&topic.name);
        if self.by_collision_key.get(&key) == Some(&topic.name) {
            self.by_collision_key.remove(&key);
        }
        Some(topic)
    }

    /// The topic `id` for changing (copied if shared).
    fn topic_mut(&mut self, id: &Uuid) -> Option<&mut TopicImage> {
        self.by_id.get_mut(id).map(Arc::make_mut)
    }
}

/// Config overrides per resource (only keys that are set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigsImage {
    resources: HashMap<ConfigResource, BTreeMap<String, String>>,
}

impl ConfigsImage {
    /// The keys set on `resource` (empty when none).
    pub fn get(&self, resource: &ConfigResource) -> Option<&BTreeMap<String, String>> {
        self.resources.get(resource)
    }

    /// A topic's config overrides.
    pub fn topic(&self, name: &str) -> BTreeMap<String, String> {
        self.get(&ConfigResource::Topic(name.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// A broker resource's dynamic configs (`"<node id>"` or `""`).
    pub fn broker(&self, name: &str) -> BTreeMap<String, String> {
        self.get(&ConfigResource::Broker(name.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    fn apply(&mut self, record: &ConfigRecord) {
        match &record.value {
            Some(value) => {
                self.resources
                    .entry(record.resource.clone())
                    .or_default()
                    .insert(record.name.clone(), value.clone());
            }
            None => {
                if let Some(keys) = self.resources.get_mut(&record.resource) {
                    keys.remove(&record.name);
                    if keys.is_empty() {
                        self.resources.remove(&record.resource);
                    }
                }
            }
        }
    }
}

/// The metadata as of one offset.
#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    /// Offset of the next record: every record below it is applied.
    pub next_offset: u64,
    /// None only before the log's first record.
    pub cluster_id: Option<String>,
    pub brokers: Arc<BTreeMap<i32, BrokerRegistration>>,
    pub topics: Arc<TopicsImage>,
    pub configs: Arc<ConfigsImage>,
    /// The first producer id no block has been given out from.
    pub next_producer_id: i64,
}

impl MetadataImage {
    /// The image after `records`, the first at offset `self.next_offset`; unchanged on
    /// error.
    pub fn apply_batch(&self, records: &[MetadataRecord]) -> Result<MetadataImage, ApplyError> {
        let mut next = self.clone();
        for record in records {
            next.apply(record)?;
        }
        Ok(next)
    }

    /// Applies one record at offset `self.next_offset`.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), ApplyError> {
        let offset = self.next_offset;
        match record {
            MetadataRecord::Cluster(r) => match &self.cluster_id {
                Some(current) if *current != r.cluster_id => {
                    return Err(ApplyError::ClusterIdSet {
                        offset,
                        current: current.clone(),
                    })
                }
                _ => self.cluster_id = Some(r.cluster_id.clone()),
            },
            MetadataRecord::RegisterBroker(r) => self.register(r, offset),
            MetadataRecord::Topic(r) => self.add_topic(r, offset)?,
            MetadataRecord::Partition(r) => self.add_partition(r, offset)?,
            MetadataRecord::PartitionChange(r) => self.change_partition(r, offset)?,
            MetadataRecord::Config(r) => Arc::make_mut(&mut self.configs).apply(r),
            MetadataRecord::ProducerIds(r) => self.producer_ids(r, offset)?,
            MetadataRecord::RemoveTopic(r) => self.remove_topic(r, offset)?,
        }
        self.next_offset += 1;
        Ok(())
    }

    fn register(&mut self, r: &RegisterBrokerRecord, offset: u64) {
        Arc::make_mut(&mut self.brokers).insert(
            r.broker_id,
            BrokerRegistration {
                broker_id: r.broker_id,
                incarnation_id: r.incarnation_id,
                epoch: i64::try_from(offset).unwrap_or(i64::MAX),
                endpoints: r.endpoints.clone(),
                rack: r.rack.clone(),
            },
        );
    }

    fn add_topic(&mut self, r: &TopicRecord, offset: u64) -> Result<(), ApplyError> {
        if self.topics.by_name.contains_key(&r.name) {
            return Err(ApplyError::TopicExists {
                offset,
                name: r.name.clone(),
            });
        }
        if self.topics.by_id.contains_key(&r.topic_id) {
            return Err(ApplyError::TopicIdExists {
                offset,
                id: r.topic_id,
            });
        }
        Arc::make_mut(&mut self.topics).insert(TopicImage {
            name: r.name.clone(),
            id: r.topic_id,
            partitions: Vec::new(),
        });
        Ok(())
    }

    fn add_partition(&mut self, r: &PartitionRecord, offset: u64) -> Result<(), ApplyError> {
        let topics = Arc::make_mut(&mut self.topics);
        let topic = topics
            .topic_mut(&r.topic_id)
            .ok_or(ApplyError::UnknownTopic {
                offset,
                id: r.topic_id,
            })?;
        let expected = topic.partitions.len() as u32;
        if r.partition_id != expected {
            return Err(ApplyError::PartitionGap {
                offset,
                id: r.topic_id,
                partition: r.partition_id,
                expected,
            });
        }
        topic.partitions.push(PartitionImage {
            replicas: r.replicas.clone(),
            isr: r.isr.clone(),
            leader: r.leader,
            leader_epoch: r.leader_epoch,
            partition_epoch: r.partition_epoch,
        });
        topics.partitions += 1;
        Ok(())
    }

    fn change_partition(
        &mut self,
        r: &PartitionChangeRecord,
        offset: u64,
    ) -> Result<(), ApplyError> {
        let topics = Arc::make_mut(&mut self.topics);
        let topic = topics
            .topic_mut(&r.topic_id)
            .ok_or(ApplyError::UnknownTopic {
                offset,
                id: r.topic_id,
            })?;
        let partition = usize::try_from(r.partition_id)
            .ok()
            .and_then(|p| topic.partitions.get_mut(p))
            .ok_or(ApplyError::UnknownPartition {
                offset,
                id: r.topic_id,
                partition: r.partition_id,
            })?;
        if let Some(leader) = r.leader {
            if leader != partition.leader {
                partition.leader = leader;
                partition.leader_epoch += 1;
            }
        }
        if let Some(isr) = &r.isr {
            partition.isr = isr.clone();
        }
        if let Some(replicas) = &r.replicas {
            partition.replicas = replicas.clone();
        }
        partition.partition_epoch += 1;
        Ok(())
    }

    fn producer_ids(&mut self, r: &ProducerIdsRecord, offset: u64) -> Result<(), ApplyError> {
        if r.next_producer_id <= self.next_producer_id {
            return Err(ApplyError::ProducerIdsBackwards {
                offset,
                next: r.next_producer_id,
                current: self.next_producer_id,
            });
        }
        self.next_producer_id = r.next_producer_id;
        Ok(())
    }

    fn remove_topic(&mut self, r: &RemoveTopicRecord, offset: u64) -> Result<(), ApplyError> {
        let removed = Arc::make_mut(&mut self.topics).remove(&r.topic_id).ok_or(
            ApplyError::UnknownTopic {
                offset,
                id: r.topic_id,
            },
        )?;
        // Kafka's controller drops a deleted topic's config overrides with it.
        let resource = ConfigResource::Topic(removed.name.clone());
        if self.configs.get(&resource).is_some() {
            Arc::make_mut(&mut self.configs).resources.remove(&resource);
        }
        Ok(())
    }

    /// Records that rebuild this image from an empty one (a snapshot): the cluster, the
    /// brokers, each topic with its partitions and configs (by name), the other config
    /// resources and the producer-id high-water mark. Broker epochs are not kept (they
    /// are offsets of records a snapshot no longer has): a broker's epoch restarts at its
    /// next registration.
    pub fn to_records(&self, node_id: i32) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        if let Some(cluster_id) = &self.cluster_id {
            records.push(MetadataRecord::Cluster(super::record::ClusterRecord {
                cluster_id: cluster_id.clone(),
            }));
        }
        for broker in self.brokers.values() {
            records.push(MetadataRecord::RegisterBroker(RegisterBrokerRecord {
                broker_id: broker.broker_id,
                incarnation_id: broker.incarnation_id,
                endpoints: broker.endpoints.clone(),
                rack: broker.rack.clone(),
            }));
        }
        let mut topics: Vec<&Arc<TopicImage>> = self.topics.iter().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        for topic in topics {
            records.push(MetadataRecord::Topic(TopicRecord {
                name: topic.name.clone(),
                topic_id: topic.id,
            }));
            for (p, partition) in topic.partitions.iter().enumerate() {
                records.push(MetadataRecord::Partition(PartitionRecord {
                    topic_id: topic.id,
                    partition_id: p as u32,
                    replicas: partition.replicas.clone(),
                    isr: partition.isr.clone(),
                    leader: partition.leader,
                    leader_epoch: partition.leader_epoch,
                    partition_epoch: partition.partition_epoch,
                }));
            }
        }
        let mut resources: Vec<(&ConfigResource, &BTreeMap<String, String>)> =
            self.configs.resources.iter().collect();
        resources.sort();
        for (resource, keys) in resources {
            for (name, value) in keys {
                records.push(MetadataRecord::Config(ConfigRecord {
                    resource: resource.clone(),
                    name: name.clone(),
                    value: Some(value.clone()),
                }));
            }
        }
        if self.next_producer_id > 0 {
            records.push(MetadataRecord::ProducerIds(ProducerIdsRecord {
                broker_id: node_id,
                broker_epoch: -1,
                next_producer_id: self.next_producer_id,
            }));
        }
        records
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::ClusterRecord;
    use super::*;

    fn topic(name: &str, id: Uuid) -> MetadataRecord {
        MetadataRecord::Topic(TopicRecord {
            name: name.into(),
            topic_id: id,
        })
    }

    fn partition(id: Uuid, p: u32) -> MetadataRecord {
        MetadataRecord::Partition(PartitionRecord {
            topic_id: id,
            partition_id: p,
            replicas: vec![0],
            isr: vec![0],
            leader: 0,
            leader_epoch: 0,
            partition_epoch: 0,
        })
    }

    fn config(resource: ConfigResource, name: &str, value: Option<&str>) -> MetadataRecord {
        MetadataRecord::Config(ConfigRecord {
            resource,
            name: name.into(),
            value: value.map(str::to_owned),
        })
    }

    fn cluster() -> MetadataRecord {
        MetadataRecord::Cluster(ClusterRecord {
            cluster_id: "c".into(),
        })
    }

    #[test]
    fn topics_partitions_configs_and_removal() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let t = |n: &str| ConfigResource::Topic(n.into());
        let image = MetadataImage::default()
            .apply_batch(&[
                cluster(),
                topic("a.b", a),
                partition(a, 0),
                partition(a, 1),
                config(t("a.b"), "retention.ms", Some("10")),
                topic("other", b),
                partition(b, 0),
                config(
                    ConfigResource::Broker("".into()),
                    "log.retention.ms",
                    Some("5"),
                ),
            ])
            .unwrap();
        assert_eq!(image.next_offset, 8);
        assert_eq!(image.topics.partition_count(), 3);
        assert_eq!(image.topics.by_name("a.b").unwrap().partitions.len(), 2);
        assert_eq!(image.topics.collision("a_b"), Some("a.b"));
        assert_eq!(image.configs.topic("a.b")["retention.ms"], "10");
        assert_eq!(image.configs.broker("")["log.retention.ms"], "5");

        let later = image
            .apply_batch(&[
                config(t("a.b"), "retention.ms", None),
                MetadataRecord::RemoveTopic(RemoveTopicRecord { topic_id: b }),
            ])
            .unwrap();
        assert!(later.configs.get(&t("a.b")).is_none());
        assert!(later.topics.by_name("other").is_none());
        assert_eq!(later.topics.partition_count(), 2);
        // The earlier image is unchanged (shared parts are copied on write).
        assert_eq!(image.topics.partition_count(), 3);
        assert_eq!(image.configs.topic("a.b").len(), 1);

        // Removing a topic drops its configs; a new topic of the same name starts clean.
        let again = later
            .apply_batch(&[
                config(t("a.b"), "segment.ms", Some("7")),
                MetadataRecord::RemoveTopic(RemoveTopicRecord { topic_id: a }),
                topic("a.b", b),
            ])
            .unwrap();
        assert!(again.configs.topic("a.b").is_empty());
        assert_eq!(again.topics.by_name("a.b").unwrap().id, b);
    }

    #[test]
    fn records_that_do_not_fit_are_refused_and_change_nothing() {
        let a = Uuid::new_v4();
        let image = MetadataImage::default()
            .apply_batch(&[cluster(), topic("t", a), partition(a, 0)])
            .unwrap();
        let unknown = Uuid::new_v4();
        let cases: Vec<(MetadataRecord, &str)> = vec![
            (topic("t", Uuid::new_v4()), "already taken"),
            (topic("u", a), "already taken"),
            (partition(unknown, 0), "no topic"),
            (partition(a, 3), "not the next one"),
            (
                MetadataRecord::RemoveTopic(RemoveTopicRecord { topic_id: unknown }),
                "no topic",
            ),
            (
                MetadataRecord::ProducerIds(ProducerIdsRecord {
                    broker_id: 0,
                    broker_epoch: 0,
                    next_producer_id: 0,
                }),
                "not above",
            ),
            (
                MetadataRecord::Cluster(ClusterRecord {
                    cluster_id: "d".into(),
                }),
                "already c",
            ),
        ];
        for (record, message) in cases {
            let err = image
                .apply_batch(&[partition(a, 1), record.clone()])
                .unwrap_err();
            assert!(err.to_string().contains(message), "{record:?}: {err}");
        }
        assert_eq!(image.topics.partition_count(), 1);
        assert_eq!(image.next_offset, 3);
    }

    #[test]
    fn partition_change_bumps_epochs() {
        let a = Uuid::new_v4();
        let change = |leader, isr: Option<Vec<i32>>| {
            MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: a,
                partition_id: 0,
                leader,
                isr,
                replicas: None,
            })
        };
        let image = MetadataImage::default()
            .apply_batch(&[
                topic("t", a),
                partition(a, 0),
                change(Some(1), None),
                change(None, Some(vec![0, 1])),
                change(Some(1), None),
            ])
            .unwrap();
        let p = &image.topics.get(&a).unwrap().partitions[0];
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 1, 3));
        assert_eq!(p.isr, vec![0, 1]);
    }

    #[test]
    fn an_image_rebuilt_from_its_records_is_the_same() {
        let a = Uuid::new_v4();
        let image = MetadataImage::default()
            .apply_batch(&[
                cluster(),
                MetadataRecord::RegisterBroker(RegisterBrokerRecord {
                    broker_id: 0,
                    incarnation_id: Uuid::new_v4(),
                    endpoints: Vec::new(),
                    rack: None,
                }),
                topic("t", a),
                partition(a, 0),
                partition(a, 1),
                config(ConfigResource::Topic("t".into()), "k", Some("v")),
                config(ConfigResource::Broker("0".into()), "n", Some("w")),
                MetadataRecord::ProducerIds(ProducerIdsRecord {
                    broker_id: 0,
                    broker_epoch: 1,
                    next_producer_id: 2000,
                }),
            ])
            .unwrap();
        let rebuilt = MetadataImage::default()
            .apply_batch(&image.to_records(0))
            .unwrap();
        assert_eq!(rebuilt.cluster_id, image.cluster_id);
        assert_eq!(rebuilt.configs, image.configs);
        assert_eq!(rebuilt.next_producer_id, 2000);
        assert_eq!(rebuilt.topics.get(&a), image.topics.get(&a));
        assert_eq!(
            rebuilt.brokers[&0].incarnation_id,
            image.brokers[&0].incarnation_id
        );
    }
}
