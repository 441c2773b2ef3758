//! API versions: what a broker advertised in ApiVersions, and negotiation.

use std::collections::HashMap;

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// The inclusive version range `(min, max)` of each API a broker advertised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiVersionTable(HashMap<i16, (i16, i16)>);

impl ApiVersionTable {
    /// The table of an ApiVersions response (its error code is the caller's to check).
    pub fn from_response(response: &ApiVersionsResponse) -> ApiVersionTable {
        ApiVersionTable(
            response
                .api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect(),
        )
    }

    /// The broker's range for `api_key`, if it offers the API.
    pub fn range(&self, api_key: i16) -> Option<(i16, i16)> {
        self.0.get(&api_key).copied()
    }

    /// How many APIs the broker offers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the broker offered no API (or ApiVersions was never asked).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The highest version in both inclusive ranges `(min, max)`, if they overlap.
pub fn negotiate(client: (i16, i16), broker: (i16, i16)) -> Option<i16> {
    let version = client.1.min(broker.1);
    (version >= client.0.max(broker.0)).then_some(version)
}

/// The API's name for messages (`Metadata`).
pub fn api_name(api_key: i16) -> &'static str {
    ApiKey::try_from(api_key)
        .ok()
        .map_or("an unknown API", api_key_name)
}

fn api_key_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::AddPartitionsToTxn => "AddPartitionsToTxn",
        ApiKey::EndTxn => "EndTxn",
        ApiKey::WriteTxnMarkers => "WriteTxnMarkers",
        ApiKey::TxnOffsetCommit => "TxnOffsetCommit",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::DescribeTransactions => "DescribeTransactions",
        ApiKey::ListTransactions => "ListTransactions",
        _ => "an API",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        assert_eq!(negotiate((4, 12), (4, 13)), Some(12)); // Fetch vs Strata
        assert_eq!(negotiate((4, 12), (4, 17)), Some(12)); // Fetch vs Kafka 4
        assert_eq!(negotiate((1, 12), (0, 7)), Some(7)); // Metadata vs Kafka 2.x
        assert_eq!(negotiate((2, 7), (1, 1)), None);
        assert_eq!(negotiate((3, 9), (0, 2)), None);
        assert_eq!(negotiate((0, 3), (3, 4)), Some(3));
    }
}
