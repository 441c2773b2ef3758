//! `transactions list` and `transactions describe`: the transactions the coordinators know
//! (ListTransactions on every broker, DescribeTransactions at each transactional id's
//! coordinator) and, for every partition a transaction has written to, how far its last
//! stable offset (ListOffsets latest, read_committed) trails its high watermark (ListOffsets
//! latest, read_uncommitted).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use kafka_protocol::messages::{
    DescribeTransactionsRequest, ListTransactionsRequest, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;
use serde_json::json;

use super::client::{Cluster, LATEST, READ_COMMITTED, READ_UNCOMMITTED};
use super::error::{Result, ToolError};
use super::output::{format_ms, opt, print_json, Table};

/// Kafka's TRANSACTIONAL_ID_NOT_FOUND: the coordinator has no such transactional id.
const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;

/// States in which a transaction is over (or never began): it holds nothing back. Every
/// other state (Ongoing, PrepareCommit, PrepareAbort, PrepareEpochFence, or one this tool
/// does not know) counts as open.
const CLOSED_STATES: [&str; 4] = ["Empty", "CompleteCommit", "CompleteAbort", "Dead"];

/// Whether a transaction in `state` is open (may hold back last stable offsets).
pub fn is_open(state: &str) -> bool {
    !CLOSED_STATES.contains(&state)
}

/// One partition of a transaction and the offsets that show what it holds back.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TxnPartition {
    pub topic: String,
    pub partition: i32,
    /// ListOffsets latest with read_uncommitted; `None` when the partition no longer exists.
    pub high_watermark: Option<i64>,
    /// ListOffsets latest with read_committed; `None` when the partition no longer exists.
    pub last_stable_offset: Option<i64>,
    /// `high_watermark - last_stable_offset` (never below 0): offsets a read_committed
    /// consumer cannot read yet. The oldest open transaction of the partition decides the
    /// last stable offset, which is not necessarily this one.
    pub held_back: Option<i64>,
}

/// A transaction as DescribeTransactions reports it, with its partitions' offsets.
#[derive(Debug, Clone, Serialize)]
pub struct Transaction {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub state: String,
    /// When the transaction began (ms since the epoch), -1 when none is running.
    pub start_time_ms: i64,
    /// `now - start_time_ms` in ms (never below 0), `None` when `start_time_ms` is -1.
    pub age_ms: Option<i64>,
    /// The transaction's `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// Address of its transaction coordinator.
    pub coordinator: String,
    pub partitions: Vec<TxnPartition>,
}

/// `held_back` of a partition: the distance from the last stable offset up to the high
/// watermark, clamped at 0.
pub fn held_back(high_watermark: i64, last_stable_offset: i64) -> i64 {
    (high_watermark - last_stable_offset).max(0)
}

/// `transactions list`: the open transactions of the cluster (every transaction with `all`).
pub async fn list(
    cluster: &mut Cluster,
    all: bool,
    json_out: bool,
    out: &mut impl Write,
) -> Result<()> {
    cluster.metadata(Some(&[])).await?;
    let mut ids: BTreeSet<String> = BTreeSet::new();
    for addr in cluster.broker_addrs() {
        let conn = cluster.conn(&addr).await?;
        let (response, _) = conn.send(&ListTransactionsRequest::default()).await?;
        ToolError::check(response.error_code, || {
            format!("listing transactions on {addr}")
        })?;
        for t in response.transaction_states {
            if all || is_open(t.transaction_state.as_str()) {
                ids.insert(t.transactional_id.0.to_string());
            }
        }
    }
    let described = describe_ids(cluster, &ids, false).await?;
    // The state may have moved on between ListTransactions and DescribeTransactions.
    let transactions: Vec<Transaction> = described
        .into_iter()
        .filter(|t| all || is_open(&t.state))
        .collect();
    let transactions = with_offsets(cluster, transactions).await?;
    print(&transactions, json_out, out)
}

/// `transactions describe ID...`: the named transactions in any state; an unknown
/// transactional id is an error.
pub async fn describe(
    cluster: &mut Cluster,
    ids: &[String],
    json_out: bool,
    out: &mut impl Write,
) -> Result<()> {
    cluster.metadata(Some(&[])).await?;
    let ids: BTreeSet<String> = ids.iter().cloned().collect();
    let described = describe_ids(cluster, &ids, true).await?;
    let transactions = with_offsets(cluster, described).await?;
    print(&transactions, json_out, out)
}

/// DescribeTransactions of `ids` at their coordinators, in transactional id order. An id
/// the coordinator does not know is an error when `strict`, skipped otherwise (it expired
/// between ListTransactions and DescribeTransactions).
async fn describe_ids(
    cluster: &mut Cluster,
    ids: &BTreeSet<String>,
    strict: bool,
) -> Result<Vec<Transaction>> {
    let mut by_coordinator: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in ids {
        let coordinator = cluster.transaction_coordinator(id).await?;
        by_coordinator
            .entry(coordinator)
            .or_default()
            .push(id.clone());
    }
    let now = chrono::Utc::now().timestamp_millis();
    let mut out = Vec::with_capacity(ids.len());
    for (coordinator, ids) in by_coordinator {
        let request = DescribeTransactionsRequest::default().with_transactional_ids(
            ids.iter()
                .map(|id| TransactionalId(StrBytes::from_string(id.clone())))
                .collect(),
        );
        let (response, _) = cluster.conn(&coordinator).await?.send(&request).await?;
        for t in response.transaction_states {
            let id = t.transactional_id.0.to_string();
            if t.error_code == TRANSACTIONAL_ID_NOT_FOUND {
                if strict {
                    return Err(ToolError::UnknownTransaction(id));
                }
                continue;
            }
            ToolError::check(t.error_code, || format!("describing transaction '{id}'"))?;
            let mut partitions: Vec<TxnPartition> = t
                .topics
                .iter()
                .flat_map(|topic| {
                    topic.partitions.iter().map(|p| TxnPartition {
                        topic: topic.topic.0.to_string(),
                        partition: *p,
                        high_watermark: None,
                        last_stable_offset: None,
                        held_back: None,
                    })
                })
                .collect();
            partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            partitions.dedup();
            let start = t.transaction_start_time_ms;
            out.push(Transaction {
                transactional_id: id,
                producer_id: t.producer_id.0,
                producer_epoch: t.producer_epoch,
                state: t.transaction_state.to_string(),
                start_time_ms: start,
                age_ms: (start >= 0).then(|| (now - start).max(0)),
                timeout_ms: t.transaction_timeout_ms,
                coordinator: coordinator.clone(),
                partitions,
            });
        }
    }
    if strict {
        for id in ids {
            if !out.iter().any(|t| &t.transactional_id == id) {
                return Err(ToolError::UnknownTransaction(id.clone()));
            }
        }
    }
    out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
    Ok(out)
}

/// Fills in high watermark, last stable offset and held-back count of every partition.
/// Partitions of topics that no longer exist keep `None`.
async fn with_offsets(
    cluster: &mut Cluster,
    mut transactions: Vec<Transaction>,
) -> Result<Vec<Transaction>> {
    let wanted: BTreeSet<(String, i32)> = transactions
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (p.topic.clone(), p.partition)))
        .collect();
    if wanted.is_empty() {
        return Ok(transactions);
    }
    let leaders = cluster.metadata(None).await?;
    let live: Vec<(String, i32)> = wanted
        .into_iter()
        .filter(|(t, p)| {
            leaders
                .get(t)
                .is_some_and(|info| info.partitions.contains_key(p))
        })
        .collect();
    let hw = cluster
        .list_offsets_isolated(&live, LATEST, READ_UNCOMMITTED, &leaders)
        .await?;
    let lso = cluster
        .list_offsets_isolated(&live, LATEST, READ_COMMITTED, &leaders)
        .await?;
    for t in &mut transactions {
        for p in &mut t.partitions {
            let key = (p.topic.clone(), p.partition);
            p.high_watermark = hw.get(&key).map(|o| o.unwrap_or(0));
            p.last_stable_offset = lso.get(&key).map(|o| o.unwrap_or(0));
            p.held_back = p
                .high_watermark
                .zip(p.last_stable_offset)
                .map(|(h, l)| held_back(h, l));
        }
    }
    Ok(transactions)
}

/// `1.5s`, `2m05s`, `3h02m` for a duration in milliseconds.
pub fn human_duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 60_000 {
        format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

fn print(transactions: &[Transaction], json_out: bool, out: &mut impl Write) -> Result<()> {
    if json_out {
        return print_json(out, &json!({ "transactions": transactions }));
    }
    if transactions.is_empty() {
        writeln!(out, "No open transactions.")?;
        return Ok(());
    }
    let mut table = Table::new(&[
        "TRANSACTIONAL-ID",
        "PRODUCER-ID",
        "EPOCH",
        "STATE",
        "STARTED",
        "AGE",
        "TIMEOUT",
        "PARTITIONS",
        "COORDINATOR",
    ]);
    for t in transactions {
        table.row(vec![
            t.transactional_id.clone(),
            t.producer_id.to_string(),
            t.producer_epoch.to_string(),
            t.state.clone(),
            format_ms(t.start_time_ms),
            t.age_ms.map_or_else(|| "-".to_string(), human_duration),
            human_duration(i64::from(t.timeout_ms)),
            t.partitions.len().to_string(),
            t.coordinator.clone(),
        ]);
    }
    table.print(out)?;
    let mut table = Table::new(&[
        "TRANSACTIONAL-ID",
        "TOPIC",
        "PARTITION",
        "HIGH-WATERMARK",
        "LAST-STABLE",
        "HELD-BACK",
    ]);
    for t in transactions {
        for p in &t.partitions {
            table.row(vec![
                t.transactional_id.clone(),
                p.topic.clone(),
                p.partition.to_string(),
                opt(p.high_watermark),
                opt(p.last_stable_offset),
                opt(p.held_back),
            ]);
        }
    }
    if !table.is_empty() {
        writeln!(out)?;
        table.print(out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_states() {
        for s in [
            "Ongoing",
            "PrepareCommit",
            "PrepareAbort",
            "PrepareEpochFence",
        ] {
            assert!(is_open(s), "{s}");
        }
        for s in ["Empty", "CompleteCommit", "CompleteAbort", "Dead"] {
            assert!(!is_open(s), "{s}");
        }
    }

    #[test]
    fn held_back_is_the_distance_to_the_high_watermark() {
        assert_eq!(held_back(10, 4), 6);
        assert_eq!(held_back(10, 10), 0);
        assert_eq!(held_back(3, 5), 0);
    }

    #[test]
    fn durations_read_like_a_person_would_write_them() {
        assert_eq!(human_duration(0), "0.0s");
        assert_eq!(human_duration(1_540), "1.5s");
        assert_eq!(human_duration(60_000), "1m00s");
        assert_eq!(human_duration(125_000), "2m05s");
        assert_eq!(human_duration(3 * 3_600_000 + 120_000), "3h02m");
        assert_eq!(human_duration(-5), "0.0s");
    }
}
