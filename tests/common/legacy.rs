//! Writers of the broker state files of the version before the metadata log (commit
//! 9afad0f): `_strata/topics.bin`, `_strata/broker_configs.bin` and
//! `_strata/producer_ids`, byte for byte as that version wrote them (a bincode 1.x
//! document, or a text, followed by its CRC-32C as u32 big-endian). Checked against files
//! written by that version's binary.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use uuid::Uuid;

/// One topic of `topics.bin`.
#[derive(Serialize)]
pub struct LegacyTopic {
    pub name: String,
    pub id: Uuid,
    pub partitions: u32,
    pub configs: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct TopicsDocument<'a> {
    format_version: u32,
    cluster_id: &'a str,
    topics: &'a [LegacyTopic],
}

#[derive(Serialize)]
struct BrokerConfigsDocument<'a> {
    format_version: u32,
    node_id: i32,
    node: &'a BTreeMap<String, String>,
    cluster_default: &'a BTreeMap<String, String>,
}

fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&body);
    body.extend_from_slice(&crc.to_be_bytes());
    body
}

/// `topics.bin` (format 2).
pub fn topics_bin(cluster_id: &str, topics: &[LegacyTopic]) -> Vec<u8> {
    let doc = TopicsDocument {
        format_version: 2,
        cluster_id,
        topics,
    };
    with_crc(bincode::serialize(&doc).expect("encodes"))
}

/// `broker_configs.bin` (format 2): dynamic configs of node `node_id` and the
/// cluster-wide defaults.
pub fn broker_configs_bin(
    node_id: i32,
    node: &BTreeMap<String, String>,
    cluster_default: &BTreeMap<String, String>,
) -> Vec<u8> {
    let doc = BrokerConfigsDocument {
        format_version: 2,
        node_id,
        node,
        cluster_default,
    };
    with_crc(bincode::serialize(&doc).expect("encodes"))
}

/// `producer_ids`: the end of the last recorded block.
pub fn producer_ids(next_block_start: i64) -> Vec<u8> {
    with_crc(format!("strata-producer-ids 2\nnext_block_start {next_block_start}\n").into_bytes())
}

/// Writes `bytes` to `<data_dir>/_strata/<name>`.
pub fn write(data_dir: &Path, name: &str, bytes: &[u8]) {
    let state = data_dir.join("_strata");
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::write(state.join(name), bytes).expect("legacy file written");
}
