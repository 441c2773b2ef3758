//! Topic-administration primitives built on the broker's own ones (kept apart from
//! `mod.rs` so the admin API handlers own them).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{log_config_for, Broker, Topic, TopicError};

impl Broker {
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
